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
 * 4. A second spb_compact(): C, the only SPB with handles left, is not
 *    drained (no fuller SPB to drain into): nothing of whole pageblocks
 *    moves.
 */
#include <stdbool.h>
#include <string.h>

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

int main(void)
{
	spb_handle_t big[4];
	for (int i = 0; i < 4; i++) {
		big[i] = spb_halloc(BIG, 0);
		REQUIRE(big[i]);
		stamp(big[i], BIG, 100 + (uint64_t)i);
	}
	for (size_t i = 0; i < NSMALL; i++) {
		small[i] = spb_halloc(SMALL, 0);
		REQUIRE(small[i]);
		stamp(small[i], SMALL, i);
	}
	uintptr_t b = spb_of(big[0]);
	for (int i = 1; i < 4; i++)
		CHECK_EQ(spb_of(big[i]), b);

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
	size_t moved = spb_compact(0);
	uint64_t whole = mt_counter("compact_whole_moved") - w0;
	printf("test_movebig: %zu bytes moved, %" PRIu64 " objects of whole pageblocks, "
	       "%zu small survivors\n", moved, whole, nsurv);
	CHECK_EQ(whole, 4);
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

	/* Control: C is now the only SPB with handles and the fullest; a
	 * second compaction finds nothing of whole pageblocks to move. */
	w0 = mt_counter("compact_whole_moved");
	spb_compact(0);
	CHECK_EQ(mt_counter("compact_whole_moved") - w0, 0);
	for (int i = 0; i < 4; i++)
		CHECK(stamp_ok(big[i], BIG, 100 + (uint64_t)i));

	for (int i = 0; i < 4; i++)
		spb_hfree(big[i]);
	for (size_t i = 0; i < nsurv; i++)
		spb_hfree(small[i]);
	for (unsigned i = 0; i < kept_fill; i++)
		spb_hfree(fill[i]);
	return check_done("test_movebig");
}
