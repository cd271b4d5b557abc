/*
 * test_backing.c — the backing ladder falls back rung by rung (backing.c),
 * driven through the OS fault-injection seam spb__os_inject.
 *
 * 1 GiB hugetlb refused -> spb_back_1g_fallback, the SPB on the THP rung;
 * 2 MiB hugetlb refused -> pb_back_2m_fallback per pageblock, THP;
 * MADV_HUGEPAGE refused (or THP off) -> the SPB and its pageblocks on 4K;
 * MADV_COLLAPSE refused -> pb_collapse_fail. Memory stays usable on every
 * rung. Each SPB case takes a whole new SPB (a 512-pageblock request).
 */
#include "zone_check.h"

#define PB SPB_PB_SIZE

static struct spb *whole_spb(void **out)
{
	*out = spb_pages_alloc(SPB_PB_PER_SPB * PB, 0, SPB_MOVABLE, 0);
	REQUIRE(*out);
	return spb_of(*out);
}

static bool pool_1g_empty(void)
{
	char buf[32] = {0};
	int fd = open("/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages", O_RDONLY);
	if (fd < 0)
		return true; /* no 1 GiB pages on this system at all */
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	return n > 0 && atoi(buf) == 0;
}

int main(void)
{
	spb__option_set(OPT_DECAY_MS, 60000);
	tap_engine_setup();
	void *keep[6];

	/* 1 GiB refused by injection: fall back to THP. */
	spb__option_set(OPT_HUGETLB_1G, 1);
	spb__os_inject.fail_hugetlb_1g = -1;
	uint64_t fb1g = ctr(SPB_BACK_1G_FALLBACK), thp = ctr(PB_BACK_THP);
	struct spb *s = whole_spb(&keep[0]);
	CHECK_EQ(ctr(SPB_BACK_1G_FALLBACK), fb1g + 1);
	CHECK_EQ(ctr(SPB_BACK_HUGETLB_1G), 0);
	CHECK_EQ(s->rung, SPB_RUNG_THP);
	CHECK_EQ(s->pb[0].rung, SPB_RUNG_THP);
	CHECK_EQ(s->pb[511].rung, SPB_RUNG_THP);
	CHECK_EQ(ctr(PB_BACK_THP), thp + SPB_PB_PER_SPB);
	((char *)keep[0])[0] = 1;
	((char *)keep[0])[SPB_SPB_SIZE - 1] = 1;
	/* And by the kernel itself when the 1 GiB pool is empty. */
	spb__os_inject.fail_hugetlb_1g = 0;
	if (pool_1g_empty()) {
		s = whole_spb(&keep[1]);
		CHECK_EQ(ctr(SPB_BACK_1G_FALLBACK), fb1g + 2);
		CHECK_EQ(s->rung, SPB_RUNG_THP);
	} else {
		keep[1] = NULL;
	}
	spb__option_set(OPT_HUGETLB_1G, 0);

	/* 2 MiB hugetlb refused per pageblock: THP; a count knob fails that
	 * many calls and then lets them through to the kernel. */
	spb__option_set(OPT_HUGETLB_2M, 1);
	spb__os_inject.fail_hugetlb_2m = -1;
	uint64_t fb2m = ctr(PB_BACK_2M_FALLBACK);
	thp = ctr(PB_BACK_THP);
	char *p = spb_pages_alloc(4 * PB, 0, SPB_UNMOVABLE, 0);
	REQUIRE(p);
	CHECK_EQ(ctr(PB_BACK_2M_FALLBACK), fb2m + 4);
	CHECK_EQ(ctr(PB_BACK_THP), thp + 4);
	CHECK_EQ(ctr(PB_BACK_HUGETLB_2M), 0);
	CHECK_EQ(pb_of(p)->rung, SPB_RUNG_THP);
	memset(p, 2, 4 * PB); /* usable on the fallback rung */
	spb__os_inject.fail_hugetlb_2m = 2;
	char *p2 = spb_pages_alloc(PB, 0, SPB_UNMOVABLE, 0);
	char *p3 = spb_pages_alloc(PB, 0, SPB_UNMOVABLE, 0);
	REQUIRE(p2 && p3);
	CHECK_EQ(spb__os_inject.fail_hugetlb_2m, 0);
	CHECK_EQ(ctr(PB_BACK_2M_FALLBACK), fb2m + 6);
	spb__option_set(OPT_HUGETLB_2M, 0);
	spb_pages_free(p2);
	spb_pages_free(p3);

	/* MADV_HUGEPAGE refused: the SPB and its pageblocks on 4K pages. */
	spb__os_inject.fail_thp = -1;
	uint64_t k4 = ctr(PB_BACK_4K);
	s = whole_spb(&keep[2]);
	CHECK_EQ(s->rung, SPB_RUNG_4K);
	CHECK_EQ(s->pb[7].rung, SPB_RUNG_4K);
	CHECK_EQ(ctr(PB_BACK_4K), k4 + SPB_PB_PER_SPB);
	memset(keep[2], 3, PB);
	spb__os_inject.fail_thp = 0;
	/* THP switched off by the setting: 4K too. */
	spb__option_set(OPT_THP, 0);
	s = whole_spb(&keep[3]);
	CHECK_EQ(s->rung, SPB_RUNG_4K);
	CHECK_EQ(ctr(PB_BACK_4K), k4 + 2 * SPB_PB_PER_SPB);
	spb__option_set(OPT_THP, 1);

	/* MADV_COLLAPSE refused: counted as a failure; allowed: exactly one of
	 * the two counters moves per whole-pageblock allocation. */
	spb__option_set(OPT_COLLAPSE, 1);
	spb__os_inject.fail_collapse = -1;
	uint64_t cf = ctr(PB_COLLAPSE_FAIL), cok = ctr(PB_COLLAPSE);
	char *c1 = spb_pages_alloc(2 * PB, 0, SPB_MOVABLE, 0);
	REQUIRE(c1);
	CHECK_EQ(ctr(PB_COLLAPSE_FAIL), cf + 1);
	CHECK_EQ(ctr(PB_COLLAPSE), cok);
	spb__os_inject.fail_collapse = 0;
	char *c2 = spb_pages_alloc(2 * PB, 0, SPB_MOVABLE, 0);
	REQUIRE(c2);
	CHECK_EQ(ctr(PB_COLLAPSE_FAIL) + ctr(PB_COLLAPSE), cf + cok + 2);
	spb__option_set(OPT_COLLAPSE, 0);
	c1[0] = c2[2 * PB - 1] = 4;

	/* Gauges by rung match the descriptors. */
	CHECK_ZONES();
	spb_pages_free(c1);
	spb_pages_free(c2);
	spb_pages_free(p);
	for (int i = 0; i < 4; i++)
		spb_pages_free(keep[i]);
	CHECK_ZONES();
	return check_done("test_backing");
}
