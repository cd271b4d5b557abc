/*
 * test_reserve_movable.c — movable claims keep out of the tainted reserve.
 *
 * The free pageblocks of tainted SPBs down to the reserve
 * (spb__zone_reserve: max(SPBMALLOC_TAINTED_RESERVE, 1/32 of the zone))
 * are kept for non-movable demand. With no clean or empty SPB and no
 * growth (the SPB limit, then the OS refusing a reservation), a movable
 * pageblock claim may take a tainted SPB's free pageblock only while
 * tainted_free_pb - npb stays at or above the reserve; otherwise it fails
 * with ENOMEM (or, where growth is allowed, goes to a new SPB), and the
 * tainted free count does not move. A non-movable claim at the reserve
 * still succeeds: that is what the reserve is for.
 *
 * The test before this one (end of test_reserve.c) let the SPB grow, so a
 * new SPB served the movable claim and a find_movable that fell back to
 * the reserve passed it as well.
 */
#include "zone_check.h"

#define PB SPB_PB_SIZE
#define PG SPB_PAGE_SIZE

/* spb_movable_reserve_kept counts the refusals where the library has it;
 * UINT64_MAX where it has not. */
static uint64_t kept_ctr(void)
{
	return spb_counter_get("spb_movable_reserve_kept");
}

/* A movable request that must be refused: NULL, ENOMEM, nothing taken
 * from the tainted SPB. A wrongly granted block is freed again so the
 * checks after this one start from the state they expect. */
static void expect_kept_out(struct spb_zone *z, size_t bytes, const char *why, int line)
{
	uint32_t before = z->tainted_free_pb;
	uint64_t claims = ctr(PB_CLAIM), kept = kept_ctr();
	errno = 0;
	void *m = spb_pages_alloc(bytes, 0, SPB_MOVABLE, 0);
	int e = errno;
	if (m || e != ENOMEM || z->tainted_free_pb != before)
		fprintf(stderr, "line %d: movable %zu bytes (%s), tainted free %u, reserve %u: "
			"got %p errno %d, tainted free now %u\n", line, bytes, why, before,
			spb__zone_reserve(z), m, e, z->tainted_free_pb);
	CHECK(m == NULL);
	CHECK_EQ(e, ENOMEM);
	CHECK_EQ(z->tainted_free_pb, before);
	CHECK_EQ(ctr(PB_CLAIM), claims);
	if (kept != UINT64_MAX)
		CHECK_EQ(kept_ctr(), kept + 1);
	if (m)
		spb_pages_free(m);
}

int main(void)
{
	spb__option_set(OPT_DECAY_MS, 60000);
	spb__option_set(OPT_RESERVE_MIN, 4);
	spb__option_set(OPT_MAX_SPBS, 1); /* growth refused: one SPB */
	struct spb_zone *z = tap_engine_setup();

	/* One tainted SPB, 18 free pageblocks: two above its reserve. */
	void *u = spb_pages_alloc(PB, 0, SPB_UNMOVABLE, 0);
	REQUIRE(u);
	struct spb *s = spb_of(u);
	CHECK_EQ(spb__zone_reserve(z), 16); /* 512 pageblocks / 32 */
	void *big = spb_pages_alloc(493 * PB, 0, SPB_UNMOVABLE, 0);
	REQUIRE(big);
	REQUIRE(spb_of(big) == s);
	CHECK_EQ(z->nr_spbs, 1);
	CHECK_EQ(z->nr_by_cat[SPB_CAT_TAINTED], 1);
	CHECK_EQ(z->tainted_free_pb, 18);

	/* Above the reserve a movable claim may use the tainted SPB (nothing
	 * else is there), as long as it leaves the reserve whole. */
	void *m1 = spb_pages_alloc(PB, 0, SPB_MOVABLE, 0);
	CHECK(m1 != NULL);
	CHECK(m1 && spb_of(m1) == s);
	CHECK_EQ(z->tainted_free_pb, 17);
	/* Two pageblocks would leave 15 < 16: refused. */
	expect_kept_out(z, 2 * PB, "would dip below the reserve", __LINE__);
	void *m2 = spb_pages_alloc(PB, 0, SPB_MOVABLE, 0);
	CHECK(m2 != NULL);
	CHECK_EQ(z->tainted_free_pb, 16);

	/* At the reserve: no movable pageblock claim, whole pageblocks or a
	 * page run (no movable pageblock has free pages to serve it), zeroed
	 * or not. */
	CHECK_EQ(z->tainted_free_pb, spb__zone_reserve(z));
	uint64_t ns = ctr(SPB_NOSPACE);
	expect_kept_out(z, PB, "at the reserve, SPB limit", __LINE__);
	expect_kept_out(z, 3 * PB, "at the reserve, SPB limit", __LINE__);
	expect_kept_out(z, 4 * PG, "page run at the reserve, SPB limit", __LINE__);
	CHECK_EQ(ctr(SPB_NOSPACE), ns + 3);

	/* The same with the OS refusing the reservation instead of the limit. */
	spb__option_set(OPT_MAX_SPBS, 0);
	spb__os_inject.fail_reserve = -1;
	uint64_t rf = ctr(SPB_RESERVE_FAIL);
	expect_kept_out(z, PB, "at the reserve, OS refuses a new SPB", __LINE__);
	expect_kept_out(z, 4 * PG, "page run at the reserve, OS refuses a new SPB", __LINE__);
	CHECK(ctr(SPB_RESERVE_FAIL) >= rf + 2); /* growth was tried, and failed */
	CHECK_EQ(z->nr_spbs, 1);
	spb__os_inject.fail_reserve = 0;
	spb__option_set(OPT_MAX_SPBS, 1);

	/* Non-movable demand still gets the reserve: whole pageblocks of
	 * both non-movable classes and a page run, all in the tainted SPB. */
	void *n1 = spb_pages_alloc(PB, 0, SPB_UNMOVABLE, 0);
	CHECK(n1 != NULL);
	CHECK(n1 && spb_of(n1) == s);
	CHECK_EQ(z->tainted_free_pb, 15);
	void *n2 = spb_pages_alloc(2 * PB, 0, SPB_RECLAIMABLE, 0);
	CHECK(n2 != NULL);
	CHECK(n2 && spb_of(n2) == s);
	CHECK_EQ(z->tainted_free_pb, 13);
	void *n3 = spb_pages_alloc(4 * PG, 0, SPB_RECLAIMABLE, 0);
	CHECK(n3 != NULL);
	CHECK(n3 && spb_of(n3) == s);
	CHECK_EQ(z->tainted_free_pb, 12);
	/* Below the reserve: movable still kept out. */
	expect_kept_out(z, PB, "below the reserve", __LINE__);

	/* Back above the reserve, movable may use the tainted SPB again:
	 * refusals above were the reserve's doing, not the SPB's. */
	spb_pages_free(big);
	CHECK_EQ(z->tainted_free_pb, 12 + 493);
	void *m4 = spb_pages_alloc(PB, 0, SPB_MOVABLE, 0);
	CHECK(m4 != NULL);
	CHECK(m4 && spb_of(m4) == s);
	CHECK_EQ(z->tainted_free_pb, 12 + 492);

	spb_pages_free(m4);
	big = spb_pages_alloc(493 * PB, 0, SPB_UNMOVABLE, 0);
	REQUIRE(big);
	CHECK_EQ(z->tainted_free_pb, 12);

	/* Where growth is allowed, the movable claim goes to a new SPB and the
	 * tainted SPB keeps what it has. */
	spb__option_set(OPT_MAX_SPBS, 2);
	void *m3 = spb_pages_alloc(PB, 0, SPB_MOVABLE, 0);
	CHECK(m3 != NULL);
	CHECK(m3 && spb_of(m3) != s);
	CHECK_EQ(z->tainted_free_pb, 12);
	CHECK_EQ(z->nr_spbs, 2);
	spb_pages_free(m3);

	spb_pages_free(big);
	spb_pages_free(n3);
	spb_pages_free(n2);
	spb_pages_free(n1);
	spb_pages_free(m2);
	spb_pages_free(m1);
	spb_pages_free(u);
	CHECK_ZONES();
	return check_done("test_reserve_movable");
}
