/*
 * test_refuse.c — the refusal gate (seed 001's ALLOC_HIGHORDER_OPTIONAL).
 *
 * A non-movable SPB_F_OPTIONAL request that would have to taint a clean,
 * empty or new SPB gets NULL with errno EAGAIN while some tainted SPB has
 * free pages or a free pageblock (evacuation could make it usable); the
 * refusal is counted (spb_highorder_refused) and wants evacuation. The
 * same request without the flag succeeds; movable requests and requests
 * made while no tainted SPB has room are never refused.
 */
#include "zone_check.h"

#define PB SPB_PB_SIZE
#define PG SPB_PAGE_SIZE

static struct spb_zone *z;

/* Expect a refusal: NULL, EAGAIN, counted, evacuation wanted, nothing
 * reserved or tainted. */
static void expect_refused(size_t bytes, spb_class_t cls, int line)
{
	uint64_t refused = ctr(SPB_HIGHORDER_REFUSED), reserve = ctr(SPB_RESERVE);
	uint64_t taint = ctr(SPB_TAINT), claims = ctr(PB_CLAIM);
	z->evac_wanted = false;
	errno = 0;
	void *p = spb_pages_alloc(bytes, 0, cls, SPB_F_OPTIONAL);
	if (p) {
		fprintf(stderr, "line %d: optional request not refused\n", line);
		spb_pages_free(p);
	}
	CHECK(p == NULL);
	CHECK_EQ(errno, EAGAIN);
	CHECK_EQ(ctr(SPB_HIGHORDER_REFUSED), refused + 1);
	CHECK_EQ(ctr(SPB_RESERVE), reserve);
	CHECK_EQ(ctr(SPB_TAINT), taint);
	CHECK_EQ(ctr(PB_CLAIM), claims);
	CHECK(z->evac_wanted);
}

static void *expect_served(size_t bytes, spb_class_t cls, unsigned flags)
{
	uint64_t refused = ctr(SPB_HIGHORDER_REFUSED);
	void *p = spb_pages_alloc(bytes, 0, cls, flags);
	CHECK(p != NULL);
	CHECK_EQ(ctr(SPB_HIGHORDER_REFUSED), refused);
	return p;
}

/* An optional request that nothing in the tainted SPBs could serve: not
 * refused, served outside the clean SPB `clean`, then freed. */
static void served_and_freed(size_t bytes, spb_class_t cls, struct spb *clean)
{
	void *p = expect_served(bytes, cls, SPB_F_OPTIONAL);
	CHECK(spb_of(p) != clean);
	spb_pages_free(p);
}

int main(void)
{
	spb__option_set(OPT_DECAY_MS, 60000);
	z = tap_engine_setup();

	/* No tainted SPB: nothing to refuse for. */
	void *u = expect_served(PG, SPB_UNMOVABLE, SPB_F_OPTIONAL);
	struct spb *B = spb_of(u);
	CHECK_EQ(B->category, SPB_CAT_TAINTED);
	void *bfill = expect_served(511 * PB, SPB_UNMOVABLE, 0);
	CHECK(spb_of(bfill) == B);
	CHECK_EQ(B->nr_free_pb, 0);
	/* A clean SPB exists too: it must not be tainted either. */
	void *mov = expect_served(10 * PB, SPB_MOVABLE, SPB_F_OPTIONAL);
	struct spb *A = spb_of(mov);
	CHECK(A != B);

	/* B has free pages (511 in u's UNMOVABLE pageblock) but no free
	 * pageblock: they cannot serve a RECLAIMABLE page or any pageblock, so
	 * such optional requests are not refused (the gate counts only space
	 * that could serve the request): served by fresh capacity (a new SPB,
	 * freed again at once), never by the clean A. */
	served_and_freed(PG, SPB_RECLAIMABLE, A);
	served_and_freed(PB, SPB_UNMOVABLE, A);
	served_and_freed(3 * PB, SPB_RECLAIMABLE, A);
	CHECK_EQ(A->category, SPB_CAT_CLEAN);
	/* A page of u's own class fits B's partial pageblock: served there. */
	void *u2 = expect_served(PG, SPB_UNMOVABLE, SPB_F_OPTIONAL);
	CHECK(pb_of(u2) == pb_of(u));
	/* Movable optional requests are never refused. */
	void *m2 = expect_served(PB, SPB_MOVABLE, SPB_F_OPTIONAL);
	CHECK(spb_of(m2) == A);
	/* Without the flag the same request succeeds, in a new SPB C. */
	uint64_t taint = ctr(SPB_TAINT);
	void *c1 = expect_served(PB, SPB_UNMOVABLE, 0);
	struct spb *C = spb_of(c1);
	CHECK(C != A && C != B);
	CHECK_EQ(ctr(SPB_TAINT), taint + 1);

	/* Only a free pageblock in a tainted SPB (no free pages): fill B's
	 * partial pageblock, leave C with exactly one free pageblock. */
	void *u3 = expect_served(510 * PG, SPB_UNMOVABLE, 0);
	CHECK(pb_of(u3) == pb_of(u));
	void *cfill = expect_served(510 * PB, SPB_UNMOVABLE, 0);
	CHECK(spb_of(cfill) == C);
	CHECK_EQ(C->nr_free_pb, 1);
	CHECK_EQ(B->nr_partial_free[SPB_UNMOVABLE] + C->nr_partial_free[SPB_UNMOVABLE], 0);
	expect_refused(2 * PB, SPB_UNMOVABLE, __LINE__);
	expect_refused(512 * PB, SPB_RECLAIMABLE, __LINE__);
	/* A request that fits the free pageblock is served from it. */
	void *c2 = expect_served(PG, SPB_RECLAIMABLE, SPB_F_OPTIONAL);
	CHECK(spb_of(c2) == C);

	/* Fill C's last pageblock's pages: the reclaimable pageblock still has
	 * 511 free pages, but an unmovable page cannot go there: not refused... */
	served_and_freed(PG, SPB_UNMOVABLE, A);
	/* ...while a reclaimable one is served there. */
	void *c3 = expect_served(511 * PG, SPB_RECLAIMABLE, 0);
	CHECK(pb_of(c3) == pb_of(c2));
	/* ...and with no room at all in any tainted SPB, optional requests are
	 * served by tainting fresh capacity (no refusal, counted as a taint). */
	taint = ctr(SPB_TAINT);
	void *d1 = expect_served(PB, SPB_UNMOVABLE, SPB_F_OPTIONAL);
	struct spb *D = spb_of(d1);
	CHECK(D != A && D != B && D != C);
	CHECK_EQ(ctr(SPB_TAINT), taint + 1);
	CHECK_EQ(A->category, SPB_CAT_CLEAN);
	CHECK_ZONES();

	void *all[] = {u, bfill, mov, u2, m2, c1, u3, cfill, c2, c3, d1};
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		spb_pages_free(all[i]);
	CHECK_ZONES();
	return check_done("test_refuse");
}
