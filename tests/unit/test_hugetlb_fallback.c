/*
 * test_hugetlb_fallback.c — SPBMALLOC_HUGETLB_2M=1 when the kernel says no
 * (no pool, an empty one, or not enough pages): every claimed pageblock is
 * still memory.
 *
 * mmap(MAP_FIXED|MAP_HUGETLB) over a pageblock that the kernel refuses
 * (ENOMEM: the pool is short) has, on current kernels (6.18 here), already
 * unmapped the old range: the pageblock was a hole, and the first write
 * to it a SIGSEGV. os.c now maps the huge page elsewhere and moves it over
 * the pageblock, so a refusal touches nothing. Whatever the pool holds,
 * pageblocks of every class are claimed, written end to end, freed and
 * released, with one rung each (hugetlb-2m, or the fallback counted).
 */
#include "zone_check.h"

#define PB SPB_PB_SIZE

int main(void)
{
	spb__option_set(OPT_DECAY_MS, 0);
	spb__option_set(OPT_HUGETLB_2M, 1);
	tap_engine_setup();
	enum { N = 6 };
	char *p[N];
	for (int i = 0; i < N; i++) {
		size_t len = (size_t)(1 + i % 3) * PB;
		p[i] = spb_pages_alloc(len, 0, (spb_class_t)(i % 3), 0);
		REQUIRE(p[i]);
		/* Every page of it: a hole faults here. */
		for (size_t off = 0; off < len; off += SPB_PAGE_SIZE)
			p[i][off] = (char)i;
		CHECK(p[i][len - 1] == 0);
		for (size_t k = 0; k < len / PB; k++) {
			uint8_t r = pb_of(p[i] + k * PB)->rung;
			CHECK(r == SPB_RUNG_HUGETLB_2M || r == SPB_RUNG_THP || r == SPB_RUNG_4K);
		}
	}
	/* Each claim either got a pool page or counted its fallback. */
	CHECK_EQ(ctr(PB_BACK_HUGETLB_2M) + ctr(PB_BACK_2M_FALLBACK), ctr(PB_CLAIM));
	CHECK_ZONES();
	for (int i = 0; i < N; i++)
		spb_pages_free(p[i]);
	spb_trim();
	CHECK_ZONES();
	CHECK_EQ(spb__zone_current()->nr_spbs, 0);
	return check_done("test_hugetlb_fallback");
}
