/*
 * test_defrag.c — spb_defrag_hint / spb_defrag_move on a program that
 * rewrites its own pointers (the way Redis's activedefrag does).
 *
 * 160 MiB of plain malloc blocks (16-2,000 bytes, each filled with a
 * pattern of its index), a random 90 % freed. Then one sweep over the
 * survivors: where spb_defrag_hint says so, p = spb_defrag_move(p). Every
 * block keeps its contents; a moved block is never where it was; hints
 * are 0 for bad pointers (freed, interior, stack, NULL) and move refuses
 * them with EINVAL; after spb_trim() the RSS is at most half of what it
 * was after the free, and far fewer hints say yes on a second sweep.
 */
#include <stdbool.h>
#include <string.h>

#include "mtest.h"

#define TOTAL ((size_t)160 << 20)

int main(void)
{
	uint64_t seed = 5;
	size_t cap = TOTAL / 64, n = 0, bytes = 0;
	unsigned char **p = calloc(cap, sizeof *p);
	size_t *len = calloc(cap, sizeof *len);
	REQUIRE(p && len);
	size_t rss0 = mt_rss();
	while (bytes < TOTAL && n < cap) {
		len[n] = 16 + mt_rand(&seed) % 1985;
		p[n] = T_MALLOC(len[n]);
		REQUIRE(p[n]);
		mt_fill(p[n], len[n], n);
		bytes += len[n++];
	}
	size_t kept = 0;
	for (size_t i = 0; i < n; i++)
		if (mt_rand(&seed) % 10) {
			T_FREE(p[i]);
			p[i] = NULL;
		} else {
			kept++;
		}
	spb_trim();
	size_t rss1 = mt_rss();

	/* Bad pointers: no hint, no move, no crash. */
	int on_stack;
	unsigned char *freed = T_MALLOC(64);
	T_FREE(freed);
	CHECK_EQ(spb_defrag_hint(NULL), 0);
	CHECK_EQ(spb_defrag_hint(&on_stack), 0);
	CHECK_EQ(spb_defrag_hint(freed), 0);
	for (size_t i = 0; i < n; i++)
		if (p[i] && len[i] > 32) {
			CHECK_EQ(spb_defrag_hint(p[i] + 16), 0); /* interior */
			break;
		}
	errno = 0;
	CHECK(spb_defrag_move(&on_stack) == NULL);
	CHECK_EQ(errno, EINVAL);

	size_t yes = 0, moved = 0, refused = 0, bad = 0;
	for (size_t i = 0; i < n; i++) {
		if (!p[i] || !spb_defrag_hint(p[i]))
			continue;
		yes++;
		unsigned char *q = spb_defrag_move(p[i]);
		if (!q) {
			refused += errno == EAGAIN;
			continue;
		}
		if (q == p[i])
			bad++;
		p[i] = q;
		moved++;
	}
	CHECK_EQ(bad, 0);
	for (size_t i = 0; i < n; i++)
		if (p[i] && !mt_verify(p[i], len[i], i))
			bad++;
	CHECK_EQ(bad, 0);
	spb_trim();
	size_t rss2 = mt_rss();
	size_t yes2 = 0;
	for (size_t i = 0; i < n; i++)
		yes2 += p[i] && spb_defrag_hint(p[i]);
	printf("test_defrag: %zu blocks live of %zu; %zu hints said move, %zu moved, %zu refused; "
	       "RSS %zu MiB at start, %zu after the free, %zu after the moves; %zu hints on a "
	       "second sweep\n",
	       kept, n, yes, moved, refused, rss0 >> 20, rss1 >> 20, rss2 >> 20, yes2);
	CHECK(moved > kept / 2);
	CHECK_EQ(mt_counter("defrag_move"), moved);
	CHECK(yes2 < yes / 4);
#ifndef SPB_TEST_ENGINE /* sanitizer builds: their shadow memory is the RSS */
	CHECK(rss2 < rss1 / 2);
#endif
	for (size_t i = 0; i < n; i++)
		T_FREE(p[i]);
	free(p);
	free(len);
	return check_done("test_defrag");
}
