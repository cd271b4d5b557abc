/*
 * test_reserve.c — the tainted reserve (seed 001's spb_tainted_reserve).
 *
 * When the free pageblocks of tainted SPBs fall to the reserve
 * (max(SPBMALLOC_TAINTED_RESERVE, 1/32 of the zone)), the crossing is
 * counted once per edge (spb_tainted_reserve_crossed), the zone wants
 * evacuation (evac_wanted), and spb__evac_hook runs, whether an
 * allocation or a free caused the crossing. Staying below does not count
 * again; going back above re-arms the edge.
 */
#include "zone_check.h"

#define PB SPB_PB_SIZE

static int hook_calls;
static struct spb_zone *hook_zone;

static void test_hook(struct spb_zone *z)
{
	hook_calls++;
	hook_zone = z;
	/* The hook runs without the zone lock: taking it must not deadlock. */
	spb__zone_lock(z);
	spb__zone_unlock(z);
}

int main(void)
{
	spb__option_set(OPT_DECAY_MS, 60000);
	spb__option_set(OPT_RESERVE_MIN, 4);
	spb__evac_hook = test_hook;
	struct spb_zone *z = tap_engine_setup();

	void *u = spb_pages_alloc(PB, 0, SPB_UNMOVABLE, 0);
	REQUIRE(u);
	CHECK_EQ(spb__zone_reserve(z), 16); /* 512 pageblocks / 32 */
	CHECK_EQ(z->tainted_free_pb, 511);
	CHECK_EQ(ctr(SPB_RESERVE_CROSSED), 0);
	CHECK_EQ(hook_calls, 0);
	CHECK(!z->evac_wanted);

	/* Down to exactly the reserve: one crossing. */
	void *big = spb_pages_alloc(495 * PB, 0, SPB_UNMOVABLE, 0);
	REQUIRE(big);
	CHECK_EQ(z->tainted_free_pb, 16);
	CHECK_EQ(ctr(SPB_RESERVE_CROSSED), 1);
	CHECK(z->evac_wanted);
	CHECK_EQ(hook_calls, 1);
	CHECK(hook_zone == z);

	/* Further below: no new edge. */
	z->evac_wanted = false;
	void *more = spb_pages_alloc(PB, 0, SPB_RECLAIMABLE, 0);
	REQUIRE(more);
	CHECK_EQ(z->tainted_free_pb, 15);
	CHECK_EQ(ctr(SPB_RESERVE_CROSSED), 1);
	CHECK_EQ(hook_calls, 1);
	CHECK(!z->evac_wanted);

	/* Back above re-arms; crossing again counts again. */
	spb_pages_free(big);
	CHECK_EQ(z->tainted_free_pb, 510);
	CHECK(!z->below_reserve);
	CHECK_EQ(ctr(SPB_RESERVE_CROSSED), 1);
	big = spb_pages_alloc(495 * PB, 0, SPB_UNMOVABLE, 0);
	REQUIRE(big);
	CHECK_EQ(z->tainted_free_pb, 15);
	CHECK_EQ(ctr(SPB_RESERVE_CROSSED), 2);
	CHECK_EQ(hook_calls, 2);
	CHECK(z->evac_wanted);

	/* A second tainted SPB lifts the tainted free count above the
	 * reserve (now 1024 / 32 = 32)... */
	void *e = spb_pages_alloc(20 * PB, 0, SPB_UNMOVABLE, 0);
	REQUIRE(e);
	CHECK(spb_of(e) != spb_of(u));
	CHECK_EQ(spb__zone_reserve(z), 32);
	CHECK_EQ(z->tainted_free_pb, 15 + 492);
	CHECK(!z->below_reserve);
	CHECK_EQ(ctr(SPB_RESERVE_CROSSED), 2);
	/* ...and freeing it empties that SPB: its free pageblocks stop
	 * counting, so a free crosses the reserve: counted, and the hook
	 * runs for it as for an allocation. */
	z->evac_wanted = false;
	spb_pages_free(e);
	CHECK_EQ(z->tainted_free_pb, 15);
	CHECK_EQ(ctr(SPB_RESERVE_CROSSED), 3);
	CHECK(z->evac_wanted);
	CHECK_EQ(hook_calls, 3);

	/* Movable data prefers an empty SPB (e's, still mapped: decay is
	 * 60 s) to the tainted one. This cannot show that the reserve itself
	 * is kept: the movable pass takes an empty or new SPB before any
	 * tainted one. test_reserve_movable.c does that, with growth refused. */
	void *m = spb_pages_alloc(PB, 0, SPB_MOVABLE, 0);
	REQUIRE(m);
	CHECK(spb_of(m) != spb_of(u));
	CHECK_EQ(z->tainted_free_pb, 15);

	spb_pages_free(m);
	spb_pages_free(big);
	spb_pages_free(more);
	spb_pages_free(u);
	CHECK_EQ(hook_calls, 3);
	CHECK_ZONES();
	return check_done("test_reserve");
}
