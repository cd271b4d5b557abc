/*
 * mtest.h — the harness of the malloc-layer tests (tests/api, tests/cxx,
 * tests/stress), on top of tests/check.h (CHECK, REQUIRE, check_done,
 * check_death): the public counters, RSS from /proc/self/statm, timing,
 * and stamped fills. Public API only (include/spbmalloc.h).
 * Tests are plain programs: exit 0 = pass, 1 = fail, 77 = skipped.
 *
 * SPB_TEST_ENGINE (sanitizer builds): the sanitizer runtime owns malloc,
 * so a test linked against spbmalloc_engine reaches the malloc layer
 * through its internal entry points (spb__malloc, spb__free_ptr) instead:
 * T_MALLOC/T_FREE/T_REALLOC name whichever applies.
 */
#ifndef SPB_MTEST_H
#define SPB_MTEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spbmalloc.h"
#include "../check.h"

#define MT_SKIP 77

#ifdef SPB_TEST_ENGINE
void *spb__malloc(size_t size);
void *spb__realloc(void *p, size_t size);
void spb__free_ptr(void *p);
static inline void *T_MALLOC(size_t n) { return spb__malloc(n); }
static inline void *T_REALLOC(void *p, size_t n) { return spb__realloc(p, n); }
static inline void T_FREE(void *p) { if (p) spb__free_ptr(p); }
void *spb__malloc_class(size_t size, unsigned cls, unsigned flags);
static inline void *T_MALLOC_CLASS(size_t n, spb_class_t cls, unsigned flags)
{
	return spb__malloc_class(n, cls, flags);
}
#else
#define T_MALLOC_CLASS spb_malloc_class
#define T_MALLOC malloc
#define T_REALLOC realloc
#define T_FREE free
#endif

static inline uint64_t mt_counter(const char *name)
{
	uint64_t v = spb_counter_get(name);
	if (v == UINT64_MAX) {
		fprintf(stderr, "no counter named %s\n", name);
		exit(1);
	}
	return v;
}

/* Resident set size in bytes (/proc/self/statm, second field). */
static inline size_t mt_rss(void)
{
	char buf[128];
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, res = 0;
	if (!f)
		return 0;
	if (fgets(buf, sizeof buf, f))
		sscanf(buf, "%lu %lu", &size, &res);
	fclose(f);
	return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static inline double mt_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Every live handle of hs[0..n) (0: none) still holds its own value in
 * its first 8 bytes (the compaction tests stamp objects so). */
static inline bool mt_handles_stamped(const spb_handle_t *hs, size_t n)
{
	bool ok = true;
	spb_read_lock();
	for (size_t i = 0; i < n; i++)
		if (hs[i] && *(const uint64_t *)spb_hget(hs[i]) != hs[i])
			ok = false;
	spb_read_unlock();
	return ok;
}

/* xorshift64*: per-thread deterministic randomness. */
static inline uint64_t mt_rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Fill / verify a block with a pattern derived from a seed: catches blocks
 * handed out twice and writes through stale pointers. */
static inline void mt_fill(void *p, size_t n, uint64_t seed)
{
	unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		c[i] = (unsigned char)(seed + i * 7);
}

static inline int mt_verify(const void *p, size_t n, uint64_t seed)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i] != (unsigned char)(seed + i * 7))
			return 0;
	return 1;
}

/* Big blocks: fill and verify a sample (64 bytes at both ends and 8 bytes
 * every 4 KiB in between; small blocks whole). */
static inline void mt_stamp(void *p, size_t n, uint64_t seed)
{
	unsigned char *c = p;
	if (n <= 256) {
		mt_fill(c, n, seed);
		return;
	}
	mt_fill(c, 64, seed);
	mt_fill(c + n - 64, 64, seed ^ 0x55);
	for (size_t off = 4096; off + 8 <= n - 64; off += 4096)
		memcpy(c + off, &seed, 8);
}

static inline int mt_stamp_ok(const void *p, size_t n, uint64_t seed)
{
	const unsigned char *c = p;
	if (n <= 256)
		return mt_verify(c, n, seed);
	if (!mt_verify(c, 64, seed) || !mt_verify(c + n - 64, 64, seed ^ 0x55))
		return 0;
	for (size_t off = 4096; off + 8 <= n - 64; off += 4096)
		if (memcmp(c + off, &seed, 8))
			return 0;
	return 1;
}

#endif
