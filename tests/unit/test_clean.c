/*
 * test_clean.c — clean SPBs stay clean while a tainted SPB has room.
 *
 * A clean SPB (movable data) and a tainted one; thousands of non-movable
 * allocations and frees of both non-movable classes that together fit in
 * the tainted SPB never taint the clean one (spb_taint stays 1, the clean
 * SPB holds no non-movable pageblock, pb_claim_clean stays 0, categories
 * stay put). Only when the tainted SPB is full and no SPB can be added
 * does the clean one take non-movable data, and that is counted.
 */
#include "zone_check.h"

#define LIVE 256

int main(void)
{
	spb__option_set(OPT_MAX_SPBS, 2);
	spb__option_set(OPT_THP, 0);
	spb__option_set(OPT_DECAY_MS, 0);
	struct spb_zone *z = tap_engine_setup();

	void *mov = spb_pages_alloc(100 * SPB_PB_SIZE, 0, SPB_MOVABLE, 0);
	void *movp = spb_pages_alloc(3 * SPB_PAGE_SIZE, 0, SPB_MOVABLE, 0);
	REQUIRE(mov && movp);
	struct spb *A = spb_of(mov);
	CHECK(spb_of(movp) == A);
	void *seed_u = spb_pages_alloc(SPB_PAGE_SIZE, 0, SPB_UNMOVABLE, 0);
	REQUIRE(seed_u);
	struct spb *B = spb_of(seed_u);
	CHECK(A != B);
	CHECK_EQ(ctr(SPB_TAINT), 1);

	void *live[LIVE] = {0};
	unsigned x = 777;
	for (unsigned i = 0; i < 6000; i++) {
		x = x * 1103515245u + 12345u;
		unsigned k = (x >> 8) % LIVE;
		if (live[k]) {
			spb_pages_free(live[k]);
			live[k] = NULL;
			continue;
		}
		spb_class_t cls = (x >> 20) & 1 ? SPB_UNMOVABLE : SPB_RECLAIMABLE;
		size_t bytes = (x >> 12) % 8 == 0 ? (1 + (x >> 16) % 3) * SPB_PB_SIZE
						  : (1 + (x >> 16) % 64) * SPB_PAGE_SIZE;
		live[k] = spb_pages_alloc(bytes, 0, cls, (x >> 24) & 1 ? SPB_F_OPTIONAL : 0);
		REQUIRE(live[k]);
		if (spb_of(live[k]) != B) {
			CHECK(spb_of(live[k]) == B);
			break;
		}
		/* movable churn alongside stays in the clean SPB */
		if (i % 50 == 0) {
			void *m = spb_pages_alloc(SPB_PAGE_SIZE * (1 + i % 7), 0, SPB_MOVABLE, 0);
			REQUIRE(m);
			CHECK(spb_of(m) == A);
			spb_pages_free(m);
		}
	}
	CHECK_EQ(ctr(SPB_TAINT), 1);
	CHECK_EQ(A->category, SPB_CAT_CLEAN);
	CHECK_EQ(B->category, SPB_CAT_TAINTED);
	CHECK_EQ(A->nr_class_pb[SPB_UNMOVABLE] + A->nr_class_pb[SPB_RECLAIMABLE], 0);
	CHECK_EQ(z->nr_by_cat[SPB_CAT_CLEAN], 1);
	CHECK_EQ(z->nr_by_cat[SPB_CAT_TAINTED], 1);
	CHECK_ZONES();

	/* Fill every free pageblock of B; the next non-movable claim must
	 * taint A (the limit forbids a third SPB), and is counted. */
	uint64_t clean_claims = ctr(PB_CLAIM_CLEAN);
	static void *fill[SPB_PB_PER_SPB];
	unsigned nfill = 0;
	while (B->nr_free_pb) { /* B's free pageblocks are scattered: one at a time */
		fill[nfill] = spb_pages_alloc(SPB_PB_SIZE, 0, SPB_UNMOVABLE, 0);
		REQUIRE(fill[nfill]);
		CHECK(spb_of(fill[nfill++]) == B);
	}
	CHECK_EQ(ctr(SPB_TAINT), 1);
	void *t = spb_pages_alloc(SPB_PB_SIZE, 0, SPB_RECLAIMABLE, 0);
	REQUIRE(t);
	CHECK(spb_of(t) == A);
	CHECK_EQ(ctr(SPB_TAINT), 2);
	CHECK_EQ(ctr(PB_CLAIM_CLEAN), clean_claims + 1);
	CHECK_EQ(A->category, SPB_CAT_TAINTED);
	CHECK_ZONES();

	spb_pages_free(t);
	for (unsigned k = 0; k < nfill; k++)
		spb_pages_free(fill[k]);
	for (unsigned k = 0; k < LIVE; k++)
		spb_pages_free(live[k]);
	spb_pages_free(seed_u);
	spb_pages_free(mov);
	spb_pages_free(movp);
	CHECK_ZONES();
	return check_done("test_clean");
}
