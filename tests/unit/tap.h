/*
 * tap.h — what the engine unit tests share on top of tests/check.h (CHECK,
 * REQUIRE, check_done, check_death): engine setup, counter and descriptor
 * shortcuts, resident-page counts.
 * Tests are plain programs: exit 0 = pass, 1 = fail, 77 = skipped.
 */
#ifndef SPB_TEST_TAP_H
#define SPB_TEST_TAP_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "../check.h"

#define TAP_SKIP 77

/*
 * Before the first allocation: no background thread (it would run the
 * decay behind the test's back), no stats segment. The library also
 * defines malloc, so a test must not call anything that mallocs (stdio on
 * stdout, calloc, fopen) while it expects exact engine state: the object
 * layer would take unmovable pageblocks from the same zone. The engine must
 * be untouched when a test starts.
 */
static inline struct spb_zone *tap_engine_setup(void)
{
	spb__option_set(OPT_BG, 0);
	spb__option_set(OPT_STATSEG, 0);
	struct spb_zone *z = spb__zone_current();
	REQUIRE(z->nr_spbs == 0);
	return z;
}

static inline uint64_t ctr(enum spb_counter c)
{
	return spb__counter_sum(c);
}

/* The SPB descriptor owning p (REQUIREs that p is in an SPB). */
static inline struct spb *spb_of(const void *p)
{
	struct spb_region *r = spb__region_of(p);
	REQUIRE(r && r->kind == SPB_REGION_SPB);
	return (struct spb *)r;
}

static inline unsigned pb_index_of(const void *p)
{
	return (unsigned)(((uintptr_t)p >> SPB_PB_SHIFT) & (SPB_PB_PER_SPB - 1));
}

static inline struct spb_pageblock *pb_of(const void *p)
{
	return &spb_of(p)->pb[pb_index_of(p)];
}

static inline void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Pages of [p, p+len) resident according to mincore; -1 if unmapped. */
static inline long resident_pages(void *p, size_t len)
{
	size_t n = (len + SPB_PAGE_SIZE - 1) / SPB_PAGE_SIZE;
	unsigned char vec[SPB_PAGES_PER_PB * 2];
	long res = 0;
	for (size_t off = 0; off < n; off += sizeof vec) {
		size_t k = n - off < sizeof vec ? n - off : sizeof vec;
		if (mincore((char *)p + off * SPB_PAGE_SIZE, k * SPB_PAGE_SIZE, vec) != 0)
			return -1;
		for (size_t i = 0; i < k; i++)
			res += vec[i] & 1;
	}
	return res;
}

/* An SPB's memory gone back to the OS: unmapped, or (in the handle arena,
 * lib/arena.c) mapped again read-only with nothing resident. read(2) into
 * a page that cannot be written fails with EFAULT. */
#include <sys/mman.h>
#include <unistd.h>
static inline bool spb_test_range_gone(const void *p, size_t len)
{
	unsigned char vec;
	errno = 0;
	if (mincore((void *)p, 4096, &vec) == -1)
		return errno == ENOMEM;
	if (!spb__arena_contains((uintptr_t)p) || (vec & 1))
		return false;
	int fd[2];
	if (pipe(fd) != 0)
		return false;
	ssize_t w = write(fd[1], "x", 1);
	ssize_t r = read(fd[0], (char *)p + len - 1, 1);
	bool ro = w == 1 && r == -1 && errno == EFAULT;
	close(fd[0]);
	close(fd[1]);
	return ro;
}

#endif
