/*
 * test_movebig.c — objects of whole pageblocks (2 MiB and more) behind
 * handles move when that lets their SPB go back.
 *
 * 1. In one clean SPB (B): four objects of 3 MiB (two pageblocks each)
 *    and 16 MiB of 4,000-byte objects, all stamped.
 * 2. Fillers of 64 MiB (32 pageblocks, only their header written) until
 *    some land in a second clean SPB (C); then those in B are freed, and
 *    90 % of the small objects. B now holds only sparse MOVABLE
 *    pageblocks and the four big objects; C is fuller and has room.
 * 3. spb_compact(): the small survivors and the four big objects move to
 *    C (compact_whole_moved counts the big ones), every stamp survives,
 *    and B, empty, goes back to the OS at spb_trim() (spb_unmap).
 *    A fifth big object, 8 MiB with only its first page written, moves
 *    without becoming resident: its pageblocks that had no page resident
 *    are not copied (compact_whole_sparse_pb) and read as zeros.
 * 4. A second spb_compact(): C, the only SPB with handles left, is not
 *    drained (no fuller SPB to drain into): nothing of whole pageblocks
 *    moves.
 * Run with "blocked": B also holds 4 MiB of MOVABLE pageblocks from
 * spb_pages_alloc, which no compaction can move, so B cannot empty and
 * is not drained: no object of whole pageblocks moves out of it (the
 * small survivors still leave its sparse pageblocks), and it stays.
 */
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include <unistd.h>

#include "mtest.h"

#define MiB ((size_t)1 << 20)
#define BIG (3 * MiB)
#define FILL (64 * MiB - 16)
#define SMALL 4000
#define NSMALL (16 * MiB / SMALL)
#define NFILL 64

static uintptr_t spb_of(spb_handle_t h)
{
	spb_read_lock();
	uintptr_t a = (uintptr_t)spb_hget(h) >> 30;
	spb_read_unlock();
	return a;
}

static void stamp(spb_handle_t h, size_t n, uint64_t seed)
{
	void *p = spb_hpin(h);
	mt_stamp(p, n, seed);
	spb_hunpin(h);
}

static bool stamp_ok(spb_handle_t h, size_t n, uint64_t seed)
{
	spb_read_lock();
	bool ok = mt_stamp_ok(spb_hget(h), n, seed);
	spb_read_unlock();
	return ok;
}

static spb_handle_t small[NSMALL], fill[NFILL];

/* The permissions /proc/self/maps gives the mapping holding addr ("" if
 * none). */
static const char *maps_perms(uintptr_t addr)
{
	static char perms[8];
	perms[0] = 0;
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return perms;
	unsigned long lo, hi;
	char p[8];
	while (fscanf(f, "%lx-%lx %7s%*[^\n]", &lo, &hi, p) == 3)
		if (addr >= lo && addr < hi) {
			strcpy(perms, p);
			break;
		}
	fclose(f);
	return perms;
}

/* Everything the test made: the big objects, the sparse one, the small
 * survivors and the fillers kept in C. */
static void free_all(const spb_handle_t *big, spb_handle_t sparse, size_t nsurv, unsigned nfill)
{
	for (int i = 0; i < 4; i++)
		spb_hfree(big[i]);
	spb_hfree(sparse);
	for (size_t i = 0; i < nsurv; i++)
		spb_hfree(small[i]);
	for (unsigned i = 0; i < nfill; i++)
		spb_hfree(fill[i]);
}

#define SPARSE (8 * MiB - 16)
/* Pages of [p, p+n) resident (n a multiple of 4 KiB, p page-aligned). */
static size_t resident(const void *p, size_t n)
{
	static unsigned char vec[(8 * MiB) >> 12];
	REQUIRE(n <= sizeof vec << 12);
	REQUIRE(mincore((void *)p, n, vec) == 0);
	size_t r = 0;
	for (size_t i = 0; i < n >> 12; i++)
		r += vec[i] & 1;
	return r;
}

int main(int argc, char **argv)
{
	bool blocked = argc > 1 && !strcmp(argv[1], "blocked");
	spb_handle_t big[4];
	for (int i = 0; i < 4; i++) {
		big[i] = spb_halloc(BIG, 0);
		REQUIRE(big[i]);
		stamp(big[i], BIG, 100 + (uint64_t)i);
	}
	/* Only its first page written: its other pageblocks never resident. */
	spb_handle_t sparse = spb_halloc(SPARSE, 0);
	REQUIRE(sparse);
	stamp(sparse, 4000, 777);
	char *sp0 = spb_hpin(sparse);
	/* The object starts 16 bytes into its first pageblock: from the
	 * second pageblock on (2 MiB - 16 into the object). */
	size_t tail_off = 2 * MiB - 16, tail_len = 6 * MiB;
	size_t before = resident(sp0 + tail_off, tail_len);
	spb_hunpin(sparse);
	for (size_t i = 0; i < NSMALL; i++) {
		small[i] = spb_halloc(SMALL, 0);
		REQUIRE(small[i]);
		stamp(small[i], SMALL, i);
	}
	uintptr_t b = spb_of(big[0]);
	for (int i = 1; i < 4; i++)
		CHECK_EQ(spb_of(big[i]), b);
	void *pinned_pages = NULL;
	if (blocked) {
		pinned_pages = spb_pages_alloc(4 * MiB, 2 * MiB, SPB_MOVABLE, 0);
		REQUIRE(pinned_pages);
		memset(pinned_pages, 0x11, 4096);
		REQUIRE(((uintptr_t)pinned_pages >> 30) == b);
	}

	/* Fillers until three are in another SPB. */
	unsigned nf = 0, in_c = 0;
	uintptr_t c = 0;
	while (nf < NFILL && in_c < 3) {
		fill[nf] = spb_halloc(FILL, 0);
		REQUIRE(fill[nf]);
		uintptr_t s = spb_of(fill[nf]);
		if (s != b) {
			if (!c)
				c = s;
			CHECK_EQ(s, c);
			in_c++;
		}
		nf++;
	}
	REQUIRE(in_c == 3);
	unsigned kept_fill = 0;
	for (unsigned i = 0; i < nf; i++) {
		if (spb_of(fill[i]) == b)
			spb_hfree(fill[i]);
		else
			fill[kept_fill++] = fill[i];
	}
	uint64_t rng = 42;
	size_t nsurv = 0;
	for (size_t i = 0; i < NSMALL; i++) {
		if (mt_rand(&rng) % 10) {
			spb_hfree(small[i]);
		} else {
			/* A survivor: checked, then stamped by its new index. */
			CHECK(stamp_ok(small[i], SMALL, i));
			small[nsurv] = small[i];
			stamp(small[nsurv], SMALL, 1000000 + nsurv);
			nsurv++;
		}
	}

	uint64_t w0 = mt_counter("compact_whole_moved"), u0 = mt_counter("spb_unmap");
	uint64_t sp0c = mt_counter("compact_whole_sparse_pb");
	size_t moved = spb_compact(0);
	uint64_t whole = mt_counter("compact_whole_moved") - w0;
	printf("test_movebig: %zu bytes moved, %" PRIu64 " objects of whole pageblocks, "
	       "%zu small survivors\n", moved, whole, nsurv);
	if (blocked) {
		/* B cannot empty: nothing of whole pageblocks leaves it. */
		CHECK_EQ(whole, 0);
		for (int i = 0; i < 4; i++) {
			CHECK_EQ(spb_of(big[i]), b);
			CHECK(stamp_ok(big[i], BIG, 100 + (uint64_t)i));
		}
		CHECK(stamp_ok(sparse, 4000, 777));
		for (size_t i = 0; i < nsurv; i++)
			CHECK(stamp_ok(small[i], SMALL, 1000000 + i));
		CHECK_EQ(*(unsigned char *)pinned_pages, 0x11);
		spb_pages_free(pinned_pages);
		free_all(big, sparse, nsurv, kept_fill);
		return check_done("test_movebig (blocked)");
	}
	CHECK_EQ(whole, 5);
	/* The sparse one: moved, its untouched pageblocks not made resident. */
	CHECK(spb_of(sparse) != b);
	CHECK(stamp_ok(sparse, 4000, 777));
	char *sp1 = spb_hpin(sparse);
	size_t after = resident(sp1 + tail_off, tail_len);
	printf("test_movebig: sparse object: %zu pages resident past its first pageblock "
	       "before the move, %zu after; %" PRIu64 " pageblocks not copied\n", before, after,
	       mt_counter("compact_whole_sparse_pb") - sp0c);
	if (before == 0) {
		CHECK_EQ(after, 0);
		CHECK_EQ(mt_counter("compact_whole_sparse_pb") - sp0c, 3);
	}
	for (size_t o = tail_off; o < tail_off + tail_len; o += 4096)
		if (sp1[o]) {
			CHECK(!"a pageblock not copied reads other than zero");
			break;
		}
	spb_hunpin(sparse);
	for (int i = 0; i < 4; i++) {
		CHECK(spb_of(big[i]) != b);
		CHECK(stamp_ok(big[i], BIG, 100 + (uint64_t)i));
	}
	size_t left_in_b = 0;
	for (size_t i = 0; i < nsurv; i++) {
		left_in_b += spb_of(small[i]) == b;
		CHECK(stamp_ok(small[i], SMALL, 1000000 + i));
	}
	CHECK_EQ(left_in_b, 0);
	/* B is empty: trimming gives it back. */
	spb_trim();
	CHECK(mt_counter("spb_unmap") > u0);
	(void)c;
	/* The moved handles still name places in B: read through them while
	 * B's arena slot is released (read-only zeros), and once the
	 * compaction thread has made it unreadable (PROT_NONE after a grace
	 * period, here at spb_compact): both times the place is passed over
	 * for the table. */
	uintptr_t b_addr = b << 30;
	const char *bg = getenv("SPBMALLOC_BG");
	if (mt_counter("spb_arena") > 0 && !(bg && bg[0] == '0')) {
		printf("test_movebig: B's slot after the trim: %s\n", maps_perms(b_addr));
		CHECK(!strcmp(maps_perms(b_addr), "r--p") || !strcmp(maps_perms(b_addr), "---p"));
		for (size_t i = 0; i < nsurv; i++)
			CHECK(stamp_ok(small[i], SMALL, 1000000 + i));
		/* The compaction thread makes it unreadable; here (its
		 * thread off) spb_compact does, after a grace period. */
		spb_compact(0);
		CHECK_EQ(strcmp(maps_perms(b_addr), "---p"), 0);
	}
	uint64_t slow0 = mt_counter("handle_get_slow");
	for (size_t i = 0; i < nsurv; i++)
		CHECK(stamp_ok(small[i], SMALL, 1000000 + i));
	CHECK(mt_counter("handle_get_slow") - slow0 >= nsurv);

	/* Control: C is now the only SPB with handles and the fullest; a
	 * second compaction finds nothing of whole pageblocks to move. */
	w0 = mt_counter("compact_whole_moved");
	spb_compact(0);
	CHECK_EQ(mt_counter("compact_whole_moved") - w0, 0);
	for (int i = 0; i < 4; i++)
		CHECK(stamp_ok(big[i], BIG, 100 + (uint64_t)i));

	free_all(big, sparse, nsurv, kept_fill);
	return check_done("test_movebig");
}
