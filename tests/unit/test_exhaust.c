/*
 * test_exhaust.c — running out, and recovering.
 *
 * The OS refusing reservations (spb__os_inject.fail_reserve, fail_meta)
 * gives NULL with errno ENOMEM and counts spb_reserve_fail and spb_nospace;
 * a count knob fails that many calls only. Reaching SPBMALLOC_MAX_SPBS
 * gives NULL/ENOMEM and counts spb_nospace but no OS failure. Each time,
 * clearing the cause (injection off, a free, a higher limit) lets the
 * same request succeed.
 */
#include "zone_check.h"

#define PB SPB_PB_SIZE
#define PG SPB_PAGE_SIZE

static void expect_enomem(size_t bytes, spb_class_t cls, bool os_fail, int line)
{
	uint64_t rf = ctr(SPB_RESERVE_FAIL), ns = ctr(SPB_NOSPACE);
	errno = 0;
	void *p = spb_pages_alloc(bytes, 0, cls, 0);
	if (p)
		fprintf(stderr, "line %d: allocation succeeded\n", line);
	CHECK(p == NULL);
	CHECK_EQ(errno, ENOMEM);
	CHECK_EQ(ctr(SPB_RESERVE_FAIL), rf + (os_fail ? 1 : 0));
	if (bytes <= SPB_SPB_SIZE) /* engine requests; large ones have no "space" */
		CHECK_EQ(ctr(SPB_NOSPACE), ns + 1);
}

int main(void)
{
	spb__option_set(OPT_DECAY_MS, 60000);
	struct spb_zone *z = tap_engine_setup();

	/* The OS refuses every reservation. */
	spb__os_inject.fail_reserve = -1;
	expect_enomem(PG, SPB_UNMOVABLE, true, __LINE__);
	expect_enomem(3 * PB, SPB_MOVABLE, true, __LINE__);
	expect_enomem(SPB_SPB_SIZE + PG, SPB_MOVABLE, true, __LINE__);
	CHECK_EQ(z->nr_spbs, 0);
	CHECK_EQ(z->nr_spbs_reserving, 0);
	spb__os_inject.fail_reserve = 0;
	void *a = spb_pages_alloc(PG, 0, SPB_UNMOVABLE, 0);
	CHECK(a != NULL);
	CHECK_EQ(z->nr_spbs, 1);

	/* Fails once, then succeeds. */
	spb__os_inject.fail_reserve = 1;
	expect_enomem(SPB_PB_PER_SPB * PB, SPB_MOVABLE, true, __LINE__);
	CHECK_EQ(spb__os_inject.fail_reserve, 0);
	void *whole = spb_pages_alloc(SPB_PB_PER_SPB * PB, 0, SPB_MOVABLE, 0);
	CHECK(whole != NULL);

	/* The descriptor cannot be had: the reservation is undone. */
	spb__os_inject.fail_meta = -1;
	expect_enomem(SPB_PB_PER_SPB * PB, SPB_RECLAIMABLE, true, __LINE__);
	spb__os_inject.fail_meta = 0;
	CHECK_EQ(z->nr_spbs, 2);
	CHECK_ZONES();

	/* The SPB limit: no OS failure, spb_nospace counts. */
	spb__option_set(OPT_MAX_SPBS, 2);
	expect_enomem(SPB_PB_PER_SPB * PB, SPB_MOVABLE, false, __LINE__);
	/* Fill what is left, one pageblock at a time, until refused. */
	static void *fill[2 * SPB_PB_PER_SPB];
	unsigned n = 0;
	while (n < 2 * SPB_PB_PER_SPB && (fill[n] = spb_pages_alloc(PB, 0, SPB_UNMOVABLE, 0)))
		n++;
	CHECK_EQ(n, SPB_PB_PER_SPB - 1); /* all of a's SPB but a's pageblock */
	CHECK_EQ(errno, ENOMEM);
	expect_enomem(PG, SPB_RECLAIMABLE, false, __LINE__);
	expect_enomem(PB, SPB_MOVABLE, false, __LINE__);
	CHECK_EQ(z->nr_spbs, 2);
	/* Recovery: a free makes room... */
	spb_pages_free(fill[--n]);
	void *b = spb_pages_alloc(PB, 0, SPB_RECLAIMABLE, 0);
	CHECK(b != NULL);
	expect_enomem(PB, SPB_MOVABLE, false, __LINE__);
	/* ...and so does a higher limit. */
	spb__option_set(OPT_MAX_SPBS, 3);
	void *c = spb_pages_alloc(PB, 0, SPB_MOVABLE, 0);
	CHECK(c != NULL);
	CHECK_EQ(z->nr_spbs, 3);
	CHECK_ZONES();

	while (n)
		spb_pages_free(fill[--n]);
	spb_pages_free(a);
	spb_pages_free(b);
	spb_pages_free(c);
	spb_pages_free(whole);
	CHECK_ZONES();
	return check_done("test_exhaust");
}
