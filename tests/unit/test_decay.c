/*
 * test_decay.c — giving memory back (zone.c decay).
 *
 * A free pageblock keeps its memory for SPBMALLOC_DECAY_MS, then goes back
 * whole (MADV_DONTNEED): pb_release counts it, its rung becomes NONE and
 * mincore shows no resident page. Decay 0 releases at once. An SPB that
 * stays empty for the delay is unmapped: spb_unmap counts it, its address
 * map slot is cleared, the range is gone (mincore and msync fail with
 * ENOMEM), and its descriptor is reused by the next reservation.
 */
#include "zone_check.h"

#define PB SPB_PB_SIZE
#define PG SPB_PAGE_SIZE

int main(void)
{
	spb__option_set(OPT_DECAY_MS, 200);
	struct spb_zone *z = tap_engine_setup();

	/* ---- whole-pageblock release after the delay ---- */
	void *keep = spb_pages_alloc(PG, 0, SPB_MOVABLE, 0); /* SPB stays non-empty */
	char *p = spb_pages_alloc(PB, 0, SPB_MOVABLE, 0);
	REQUIRE(keep && p);
	struct spb *S = spb_of(p);
	struct spb_pageblock *pb = pb_of(p);
	memset(p, 0xab, PB);
	CHECK_EQ(resident_pages(p, PB), SPB_PAGES_PER_PB);
	uint8_t rung = pb->rung;
	CHECK(rung == SPB_RUNG_THP || rung == SPB_RUNG_4K);
	uint64_t rel = ctr(PB_RELEASE);
	spb_pages_free(p);
	CHECK_EQ(pb->cls, SPB_PB_FREE);
	CHECK_EQ(pb->dirty, 1);
	uint64_t due = spb_decay(); /* too early: nothing goes */
	CHECK(due > 0 && due <= 200);
	CHECK_EQ(ctr(PB_RELEASE), rel);
	CHECK_EQ(pb->rung, rung);
	CHECK_EQ(resident_pages(p, PB), SPB_PAGES_PER_PB);
	sleep_ms(100);
	spb_decay();
	CHECK_EQ(ctr(PB_RELEASE), rel);
	CHECK_EQ(resident_pages(p, PB), SPB_PAGES_PER_PB);
	sleep_ms(150); /* 250 ms after the free */
	uint64_t next = spb_decay();
	CHECK_EQ(ctr(PB_RELEASE), rel + 1);
	CHECK_EQ(pb->rung, SPB_RUNG_NONE);
	CHECK_EQ(pb->dirty, 0);
	CHECK_EQ(pb->zero, 1);
	CHECK_EQ(resident_pages(p, PB), 0);
	CHECK_EQ(next, UINT64_MAX); /* nothing else pending */
	CHECK(ctr(DECAY_RUN) >= 1);
	CHECK_ZONES();
	/* A released pageblock is known zero: SPB_F_ZERO costs no memset and
	 * faults nothing in. */
	char *q = spb_pages_alloc(PB, 0, SPB_MOVABLE, SPB_F_ZERO);
	REQUIRE(q);
	CHECK(q == p);
	CHECK_EQ(resident_pages(q, PB), 0);
	CHECK(q[0] == 0 && q[PB - 1] == 0);
	spb_pages_free(q);

	/* ---- decay 0: released by the free itself ---- */
	spb__option_set(OPT_DECAY_MS, 0);
	spb_decay(); /* q's pageblock is due now too: release it first */
	char *r = spb_pages_alloc(2 * PB, 0, SPB_MOVABLE, 0);
	REQUIRE(r);
	CHECK(spb_of(r) == S); /* keep holds S, so no SPB empties here */
	memset(r, 1, 2 * PB);
	CHECK_EQ(resident_pages(r, 2 * PB), 2 * SPB_PAGES_PER_PB);
	rel = ctr(PB_RELEASE);
	spb_pages_free(r);
	CHECK_EQ(ctr(PB_RELEASE), rel + 2);
	CHECK_EQ(pb_of(r)->rung, SPB_RUNG_NONE);
	CHECK_EQ(pb_of(r + PB)->rung, SPB_RUNG_NONE);
	CHECK_EQ(resident_pages(r, 2 * PB), 0);
	CHECK_ZONES();

	/* ---- empty SPB unmapped after the delay, descriptor reused ---- */
	spb__option_set(OPT_DECAY_MS, 200);
	spb_decay(); /* flush what decay 0 left due */
	char *base = (char *)S->r.base;
	uint64_t unmaps = ctr(SPB_UNMAP);
	spb_pages_free(keep);
	CHECK_EQ(S->category, SPB_CAT_EMPTY);
	due = spb_decay();
	CHECK(due > 0 && due <= 200);
	CHECK_EQ(ctr(SPB_UNMAP), unmaps);
	CHECK(spb__region_of(base) == &S->r);
	CHECK(resident_pages(base, PG) >= 0);
	sleep_ms(250);
	spb_decay();
	CHECK_EQ(ctr(SPB_UNMAP), unmaps + 1);
	CHECK(spb__region_of(base) == NULL);
	CHECK(spb__region_of(base + SPB_SPB_SIZE - 1) == NULL);
	CHECK(spb_test_range_gone(base, PG));
	CHECK(spb_test_range_gone(base + 100 * PB, PG));
	CHECK_EQ(z->nr_spbs, 0);
	CHECK_EQ(z->total_pb, 0);
	CHECK(S->dead);
	CHECK(!spb__list_empty(&z->dead));
	CHECK_EQ(spb_decay(), UINT64_MAX);
	CHECK_ZONES();

	/* The next reservation reuses the dead descriptor. */
	void *n = spb_pages_alloc(PG, 0, SPB_RECLAIMABLE, 0);
	REQUIRE(n);
	CHECK(spb_of(n) == S);
	CHECK(!S->dead);
	CHECK(spb__list_empty(&z->dead));
	CHECK_EQ(z->nr_spbs, 1);
	CHECK_EQ(ctr(SPB_RESERVE), 2);
	CHECK_ZONES();
	spb_pages_free(n);
	CHECK_ZONES();
	return check_done("test_decay");
}
