/*
 * test_evacbig.c — an evacuation is bounded in pageblocks, objects of
 * whole pageblocks included.
 *
 * One SPB (SPBMALLOC_MAX_SPBS=1, no tainted reserve, the compaction
 * thread never starts compacting by itself): a malloc taints it, and a
 * handle object of 80 MiB (40 pageblocks) lands in it. Then two SPBs are
 * allowed (opt.max_spbs = 2) and 2 MiB non-movable requests take the free
 * pageblocks until one lands outside the first SPB. The request that
 * finds the tainted SPB full asks for a direct compaction, which may
 * empty DIRECT_PBS (4) pageblocks: the object, ten times that, must stay
 * where it is (compact_whole_moved 0; it was copied whole into a second
 * SPB), and keeps its contents.
 */
#include <stdbool.h>
#include <string.h>

#include "mtest.h"

#define MiB ((size_t)1 << 20)
#define BIG (80 * MiB)

static bool same_spb(const void *a, const void *b)
{
	return ((uintptr_t)a >> 30) == ((uintptr_t)b >> 30);
}

int main(void)
{
	void *p0 = T_MALLOC(100); /* taints the one SPB */
	REQUIRE(p0);
	spb_handle_t big = spb_halloc(BIG, 0);
	REQUIRE(big);
	char *b = spb_hpin(big);
	REQUIRE(same_spb(p0, b));
	for (size_t i = 0; i < BIG; i += 4096)
		b[i] = (char)(i >> 12);
	spb_hunpin(big);

	long two = 2, old = 0;
	size_t len = sizeof old;
	REQUIRE(spb_ctl("opt.max_spbs", &old, &len, &two, sizeof two) == 0);
	uint64_t moved0 = mt_counter("compact_whole_moved");
	uint64_t stall0 = mt_counter("compact_direct_stall");
	void *blocks[600];
	unsigned nb = 0;
	bool outside = false;
	while (nb < 600 && !outside) {
		void *q = spb_pages_alloc(2 * MiB, 2 * MiB, SPB_UNMOVABLE, 0);
		REQUIRE(q);
		blocks[nb++] = q;
		outside = !same_spb(p0, q);
	}
	CHECK(outside);
	/* The direct compaction was asked for (the object was a candidate)... */
	CHECK(mt_counter("compact_direct_stall") > stall0);
	/* ...and did not copy 40 pageblocks for a bound of 4. */
	CHECK_EQ(mt_counter("compact_whole_moved"), moved0);
	b = spb_hpin(big);
	CHECK(same_spb(p0, b));
	bool ok = true;
	for (size_t i = 0; i < BIG; i += 4096)
		ok = ok && b[i] == (char)(i >> 12);
	CHECK(ok);
	spb_hunpin(big);
	printf("test_evacbig: %u pageblocks claimed; whole objects moved: %" PRIu64 "\n", nb,
	       mt_counter("compact_whole_moved") - moved0);
	for (unsigned i = 0; i < nb; i++)
		spb_pages_free(blocks[i]);
	spb_hfree(big);
	T_FREE(p0);
	return check_done("test_evacbig");
}
