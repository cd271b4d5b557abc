/*
 * test_steer.c — the allocation passes (steer.c).
 *
 * MOVABLE goes to the fullest clean SPB (never a tainted one with room
 * elsewhere). Non-movable goes to a partial pageblock of its class, then a
 * free pageblock of a tainted SPB, then an empty SPB, then a new one, and
 * only when the SPB limit forbids growing, to the emptiest clean SPB.
 * Nothing is touched, so the SPBs cost address space only.
 */
#include "zone_check.h"

#define PB SPB_PB_SIZE
#define PG SPB_PAGE_SIZE

static void *must(size_t bytes, spb_class_t cls)
{
	void *p = spb_pages_alloc(bytes, 0, cls, 0);
	REQUIRE(p != NULL);
	return p;
}

int main(void)
{
	spb__option_set(OPT_MAX_SPBS, 4);
	spb__option_set(OPT_DECAY_MS, 60000); /* nothing decays during the test */
	struct spb_zone *z = tap_engine_setup();

	/* Two clean SPBs: A 400/512 pageblocks used (fullest bucket), D 200. */
	void *m1 = must(400 * PB, SPB_MOVABLE);
	struct spb *A = spb_of(m1);
	void *m2 = must(200 * PB, SPB_MOVABLE);
	struct spb *D = spb_of(m2);
	CHECK(A != D);
	CHECK_EQ(A->category, SPB_CAT_CLEAN);
	CHECK_EQ(D->category, SPB_CAT_CLEAN);
	CHECK(A->fullness > D->fullness);

	/* Movable: the fullest clean SPB first, page runs and pageblocks. */
	void *mv = must(PB, SPB_MOVABLE);
	CHECK(spb_of(mv) == A);
	void *mp = must(3 * PG, SPB_MOVABLE);
	CHECK(spb_of(mp) == A);
	void *mp2 = must(PG, SPB_MOVABLE);
	CHECK(pb_of(mp2) == pb_of(mp)); /* the partial movable pageblock */

	/* Non-movable, no tainted SPB, no empty one: a new SPB B, not A or D. */
	uint64_t reserve = ctr(SPB_RESERVE), claim_empty = ctr(PB_CLAIM_EMPTY);
	void *u1 = must(PG, SPB_UNMOVABLE);
	struct spb *B = spb_of(u1);
	CHECK(B != A && B != D);
	CHECK_EQ(ctr(SPB_RESERVE), reserve + 1);
	CHECK_EQ(ctr(PB_CLAIM_EMPTY), claim_empty + 1);
	CHECK_EQ(B->category, SPB_CAT_TAINTED);
	CHECK_EQ(ctr(SPB_TAINT), 1);

	/* Partial pageblock of its class first: same pageblock, no claim. */
	uint64_t claims = ctr(PB_CLAIM);
	void *u2 = must(PG, SPB_UNMOVABLE);
	void *u3 = must(510 * PG, SPB_UNMOVABLE); /* fills u1's pageblock */
	CHECK(pb_of(u2) == pb_of(u1));
	CHECK(pb_of(u3) == pb_of(u1));
	CHECK_EQ(ctr(PB_CLAIM), claims);
	CHECK_EQ(pb_of(u1)->nr_free, 0);

	/* Then a free pageblock of the tainted SPB. */
	uint64_t claim_tainted = ctr(PB_CLAIM_TAINTED);
	void *u4 = must(PG, SPB_UNMOVABLE);
	CHECK(spb_of(u4) == B);
	CHECK(pb_of(u4) != pb_of(u1));
	CHECK_EQ(ctr(PB_CLAIM_TAINTED), claim_tainted + 1);
	/* Another class: its own pageblock, also in the tainted SPB. */
	void *r1 = must(PG, SPB_RECLAIMABLE);
	CHECK(spb_of(r1) == B);
	CHECK(pb_of(r1) != pb_of(u4));
	CHECK_EQ(pb_of(r1)->cls, SPB_RECLAIMABLE);
	/* Movable stays off the tainted SPB while a clean one has room. */
	void *mv2 = must(PB, SPB_MOVABLE);
	CHECK(spb_of(mv2) == A);
	/* Whole pageblocks of a non-movable class: the tainted SPB too. */
	void *ub = must(509 * PB, SPB_UNMOVABLE);
	CHECK(spb_of(ub) == B);
	CHECK_EQ(B->nr_free_pb, 0);
	CHECK_EQ(z->tainted_free_pb, 0);

	/* No tainted free pageblock, none empty: grow a new SPB C. */
	reserve = ctr(SPB_RESERVE);
	void *c1 = must(PB, SPB_UNMOVABLE);
	struct spb *C = spb_of(c1);
	CHECK(C != A && C != B && C != D);
	CHECK_EQ(ctr(SPB_RESERVE), reserve + 1);
	CHECK_EQ(z->nr_spbs, 4);

	/* An empty SPB is preferred to growing (and to a clean one). */
	spb_pages_free(c1);
	CHECK_EQ(C->category, SPB_CAT_EMPTY);
	claim_empty = ctr(PB_CLAIM_EMPTY);
	void *c2 = must(PB, SPB_RECLAIMABLE);
	CHECK(spb_of(c2) == C);
	CHECK_EQ(ctr(SPB_RESERVE), reserve + 1);
	CHECK_EQ(ctr(PB_CLAIM_EMPTY), claim_empty + 1);

	/* Fill C; with the limit reached, the emptiest clean SPB (D, not the
	 * fuller A) is tainted, and only then. */
	void *cfill = must(511 * PB, SPB_UNMOVABLE);
	CHECK(spb_of(cfill) == C);
	/* B, C (u1, c1), C again after c1 emptied it (c2) */
	CHECK_EQ(ctr(SPB_TAINT), 3);
	CHECK_EQ(ctr(SPB_UNTAINT), 1);
	CHECK(A->category == SPB_CAT_CLEAN && D->category == SPB_CAT_CLEAN);
	uint64_t claim_clean = ctr(PB_CLAIM_CLEAN);
	void *t = must(PB, SPB_UNMOVABLE);
	CHECK(spb_of(t) == D);
	CHECK_EQ(D->category, SPB_CAT_TAINTED);
	CHECK_EQ(A->category, SPB_CAT_CLEAN);
	CHECK_EQ(ctr(SPB_TAINT), 4);
	CHECK_EQ(ctr(PB_CLAIM_CLEAN), claim_clean + 1);
	/* Once D is tainted, the next non-movable request stays in D. */
	void *t2 = must(2 * PB, SPB_RECLAIMABLE);
	CHECK(spb_of(t2) == D);
	CHECK_EQ(A->category, SPB_CAT_CLEAN);
	CHECK_ZONES();

	/* Freeing D's last non-movable pageblock makes it clean again. */
	spb_pages_free(t);
	spb_pages_free(t2);
	CHECK_EQ(D->category, SPB_CAT_CLEAN);
	CHECK_EQ(ctr(SPB_UNTAINT), 2);
	void *frees[] = {m1, m2, mv, mp, mp2, u1, u2, u3, u4, r1, mv2, ub, c2, cfill};
	for (size_t i = 0; i < sizeof frees / sizeof *frees; i++)
		spb_pages_free(frees[i]);
	CHECK_EQ(z->nr_by_cat[SPB_CAT_EMPTY], 4);
	CHECK_EQ(z->tainted_free_pb, 0);
	CHECK_ZONES();
	return check_done("test_steer");
}
