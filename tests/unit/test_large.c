/*
 * test_large.c — objects over 1 GiB get a dedicated mapping (large.c), and
 * alignment requests are honoured everywhere.
 *
 * A large allocation is 1 GiB aligned, usable to its 2 MiB-rounded size,
 * writable at both ends, registered in the address map over its whole
 * range, counted (large_map/large_unmap, large_bytes) and unmapped at once
 * on free. Page runs honour alignments up to 1 MiB, pageblock runs up to
 * 1 GiB; bad arguments give EINVAL or ENOMEM.
 */
#include "zone_check.h"

#define PB SPB_PB_SIZE
#define PG SPB_PAGE_SIZE
#define GB SPB_SPB_SIZE

static void check_large(size_t bytes, size_t align, unsigned flags)
{
	struct spb_zone *z = spb__zone_current();
	uint64_t maps = ctr(LARGE_MAP), unmaps = ctr(LARGE_UNMAP);
	size_t usable = (bytes + PB - 1) & ~(PB - 1);
	char *p = spb_pages_alloc(bytes, align, SPB_MOVABLE, flags);
	REQUIRE(p);
	CHECK_EQ(ctr(LARGE_MAP), maps + 1);
	CHECK_EQ((uintptr_t)p & (GB - 1), 0);
	CHECK_EQ(spb_pages_usable_size(p), usable);
	CHECK_EQ(z->large_bytes, usable);
	struct spb_region *r = spb__region_of(p);
	CHECK(r && r->kind == SPB_REGION_LARGE);
	CHECK(spb__region_of(p + usable - 1) == r);
	CHECK(p[0] == 0 && p[bytes - 1] == 0 && p[usable - 1] == 0);
	p[0] = 1;
	p[bytes - 1] = 2;
	p[usable - 1] = 3;
	CHECK(p[0] == 1 && p[bytes - 1] == (bytes == usable ? 3 : 2) && p[usable - 1] == 3);
	spb_pages_free(p);
	CHECK_EQ(ctr(LARGE_UNMAP), unmaps + 1);
	CHECK_EQ(z->large_bytes, 0);
	CHECK(spb__region_of(p) == NULL);
	CHECK(spb__region_of(p + usable - 1) == NULL);
	unsigned char vec;
	errno = 0;
	CHECK(mincore(p, PG, &vec) == -1 && errno == ENOMEM);
	errno = 0;
	CHECK(mincore(p + usable - PG, PG, &vec) == -1 && errno == ENOMEM);
}

static void check_aligned(size_t bytes, size_t align, spb_class_t cls)
{
	char *p = spb_pages_alloc(bytes, align, cls, 0);
	REQUIRE(p);
	size_t natural = bytes >= SPB_PAGES_PER_PB * PG || align >= PB ? PB : PG;
	size_t want = align > natural ? align : natural;
	if (((uintptr_t)p & (want - 1)) != 0)
		fprintf(stderr, "bytes %zu align %zu: %p\n", bytes, align, (void *)p);
	CHECK_EQ((uintptr_t)p & (want - 1), 0);
	CHECK(spb_pages_usable_size(p) >= bytes);
	p[0] = 1;
	p[bytes - 1] = 1;
	spb_pages_free(p);
}

int main(void)
{
	spb__option_set(OPT_DECAY_MS, 0);
	struct spb_zone *z = tap_engine_setup();

	check_large(GB + 1, 0, 0);
	check_large(GB + PG, PG, 0);
	check_large(GB + PB, GB, SPB_F_ZERO);
	check_large(3 * GB + 12345, 0, 0);
	CHECK_EQ(z->nr_spbs, 0); /* large mappings are not SPBs */

	/* Exactly 1 GiB is a whole SPB, not a large mapping. */
	uint64_t maps = ctr(LARGE_MAP);
	void *w = spb_pages_alloc(GB, 0, SPB_RECLAIMABLE, 0);
	REQUIRE(w);
	CHECK_EQ(ctr(LARGE_MAP), maps);
	CHECK_EQ(spb_pages_usable_size(w), GB);
	CHECK_EQ(spb_of(w)->nr_free_pb, 0);
	spb_pages_free(w);

	/* Some data around, so alignment is not the SPB base by luck. */
	void *pad1 = spb_pages_alloc(3 * PG, 0, SPB_MOVABLE, 0);
	void *pad2 = spb_pages_alloc(3 * PB, 0, SPB_MOVABLE, 0);
	void *pad3 = spb_pages_alloc(5 * PG, 0, SPB_UNMOVABLE, 0);
	REQUIRE(pad1 && pad2 && pad3);
	for (size_t a = 2048; a <= GB; a <<= 1) {
		check_aligned(1, a, SPB_MOVABLE);
		check_aligned(3 * PG + 5, a, SPB_UNMOVABLE);
		check_aligned(PB + 1, a, SPB_MOVABLE);
		check_aligned(7 * PB, a, SPB_RECLAIMABLE);
	}
	/* Page runs aligned inside a pageblock: 256-page alignment fits twice. */
	char *r1 = spb_pages_alloc(PG, 256 * PG, SPB_UNMOVABLE, 0);
	char *r2 = spb_pages_alloc(PG, 256 * PG, SPB_UNMOVABLE, 0);
	REQUIRE(r1 && r2);
	CHECK_EQ((uintptr_t)r1 & (256 * PG - 1), 0);
	CHECK_EQ((uintptr_t)r2 & (256 * PG - 1), 0);
	CHECK_EQ(spb_pages_usable_size(r1), PG);
	spb_pages_free(r1);
	spb_pages_free(r2);
	CHECK_ZONES();

	/* Bad arguments. */
	errno = 0;
	CHECK(spb_pages_alloc(PG, 3 * PG, SPB_MOVABLE, 0) == NULL && errno == EINVAL);
	errno = 0;
	CHECK(spb_pages_alloc(PG, 2 * GB, SPB_MOVABLE, 0) == NULL && errno == EINVAL);
	errno = 0;
	CHECK(spb_pages_alloc(2 * GB, 0, SPB_SECRET, 0) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(spb_pages_alloc(PG, 0, (spb_class_t)9, 0) == NULL && errno == EINVAL);
	errno = 0;
	CHECK(spb_pages_alloc((size_t)1 << 47, 0, SPB_MOVABLE, 0) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(spb_pages_alloc(SIZE_MAX, 0, SPB_MOVABLE, 0) == NULL && errno == ENOMEM);
	void *zero = spb_pages_alloc(0, 0, SPB_MOVABLE, 0);
	CHECK(zero != NULL);
	CHECK_EQ(spb_pages_usable_size(zero), PG);
	spb_pages_free(zero);
	CHECK_EQ(spb_pages_usable_size(NULL), 0);
	spb_pages_free(NULL);

	spb_pages_free(pad1);
	spb_pages_free(pad2);
	spb_pages_free(pad3);
	CHECK_ZONES();
	CHECK_EQ(ctr(LARGE_MAP), ctr(LARGE_UNMAP));
	return check_done("test_large");
}
