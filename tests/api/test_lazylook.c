/*
 * test_lazylook.c — a look at a lazy pageblock armed on a path that does
 * not take it (an in-place realloc that grows a run past the early-look
 * mark), then the pageblock freed and its SPB unmapped by a trim, then an
 * allocation from the engine, which takes the look: it must find the
 * pageblock gone and do nothing (it used to follow the zeroed
 * descriptor: SIGSEGV). Found by review (2026-12-03).
 */
#include <stdbool.h>

#include "mtest.h"

#define GIB ((uintptr_t)1 << 30)
#define PB ((size_t)2 << 20)

int main(void)
{
	void *first = T_MALLOC(16);
	REQUIRE(first);
	uintptr_t spb1 = (uintptr_t)first & ~(GIB - 1);
	/* Fill the first SPB with untouched pageblock runs until one lands in
	 * a second SPB. */
	void *big[600];
	int nb = 0;
	void *b = NULL;
	for (; nb < 600; nb++) {
		big[nb] = b = T_MALLOC(PB);
		REQUIRE(b);
		if (((uintptr_t)b & ~(GIB - 1)) != spb1)
			break;
	}
	uintptr_t spb2 = (uintptr_t)b & ~(GIB - 1);
	if (spb2 == spb1) {
		printf("SKIPPED: no second SPB\n");
		return MT_SKIP;
	}
	/* 700 KiB runs until one starts a fresh pageblock of the second SPB. */
	void *runs[4000];
	int nr = 0;
	void *a = NULL;
	for (; nr < 4000; nr++) {
		runs[nr] = a = T_MALLOC(700 << 10);
		REQUIRE(a);
		if (((uintptr_t)a & ~(GIB - 1)) == spb2 && !((uintptr_t)a & (PB - 1)))
			break;
	}
	REQUIRE(nr < 4000);
	/* Grow in place past 192 pages: the early look is armed, not taken. */
	void *a2 = T_REALLOC(a, 1 << 20);
	REQUIRE(a2);
	bool in_place = a2 == a;
	/* Nothing between here and the last malloc may allocate from the
	 * engine (a printf's first buffer would take the look early). */
	uint64_t unmap0 = mt_counter("spb_unmap");
	T_FREE(a2);
	T_FREE(b); /* the second SPB is empty */
	spb_trim();
	uint64_t unmapped = mt_counter("spb_unmap") - unmap0;
	void *c = T_MALLOC(140 << 10); /* a run from the engine: takes the look */
	CHECK(c != NULL);
	printf("realloc %s; SPBs unmapped by the trim: %" PRIu64 "\n",
	       in_place ? "in place" : "moved (the look was not armed: a weaker test)", unmapped);
	CHECK(unmapped >= 1);
	T_FREE(c);
	for (int i = 0; i < nr; i++)
		T_FREE(runs[i]);
	for (int i = 0; i < nb; i++)
		T_FREE(big[i]);
	T_FREE(first);
	return check_done("test_lazylook");
}
