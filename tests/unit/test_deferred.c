/*
 * test_deferred.c — the decay's system calls (MADV_DONTNEED of freed
 * pageblocks, munmap of empty SPBs) stay out of the application's malloc
 * and free: with the background thread running, every such call is made
 * by that thread; without it (SPBMALLOC_BG=0) a malloc or free does a
 * bounded share (at most one SPB unmap and one batch of releases).
 * Before the fix the decay ran whole inside whichever malloc or free found
 * it due. The OS seam's hook sees every call and which thread made it.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "heap.h"
#include "tap.h"

static pthread_t app_thread;
static _Atomic int in_app_call;     /* the app thread is inside malloc/free */
static _Atomic long app_calls;      /* release calls made inside them */
static _Atomic long other_calls;    /* release calls made elsewhere */
static _Atomic long call_now;       /* in the current app call */
static _Atomic long worst_call;     /* most in one app call */

static void hook(enum spb_os_call kind, void *addr, size_t size, const void *caller)
{
	(void)addr;
	(void)size;
	(void)caller;
	if (kind != SPB_OS_MADV_DONTNEED && kind != SPB_OS_MUNMAP)
		return;
	if (pthread_equal(pthread_self(), app_thread) && atomic_load(&in_app_call)) {
		atomic_fetch_add(&app_calls, 1);
		atomic_fetch_add(&call_now, 1);
	} else {
		atomic_fetch_add(&other_calls, 1);
	}
}

static void begin(void)
{
	atomic_store(&call_now, 0);
	atomic_store(&in_app_call, 1);
}

static void end(void)
{
	atomic_store(&in_app_call, 0);
	long n = atomic_load(&call_now);
	if (n > atomic_load(&worst_call))
		atomic_store(&worst_call, n);
}

/* Grow to ~192 MiB of 4 MiB blocks and of small blocks, free it all, wait
 * past the decay, and churn a little so the slow paths run: rounds times. */
static void workload(int rounds)
{
	enum { NBIG = 48, NSMALL = 4000 };
	static void *big[NBIG], *small[NSMALL];
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < NBIG; i++) {
			begin();
			big[i] = spb__malloc(4u << 20);
			end();
			REQUIRE(big[i]);
			memset(big[i], 1, 4096);
		}
		for (int i = 0; i < NSMALL; i++) {
			begin();
			small[i] = spb__malloc(200 + (size_t)i % 3000);
			end();
		}
		for (int i = 0; i < NBIG; i++) {
			begin();
			spb__free_ptr(big[i]);
			end();
		}
		for (int i = 0; i < NSMALL; i++) {
			begin();
			spb__free_ptr(small[i]);
			end();
		}
		/* Past the decay delay (20 ms), with slow paths in between. */
		for (int k = 0; k < 20; k++) {
			usleep(5000);
			begin();
			void *p = spb__malloc(300 * 1024);
			end();
			begin();
			spb__free_ptr(p);
			end();
		}
	}
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	bool bg = !(argc > 1 && strcmp(argv[1], "nobg") == 0);
	spb__option_set(OPT_STATSEG, 0);
	spb__option_set(OPT_DECAY_MS, 20);
	spb__option_set(OPT_BG, bg);
	spb__option_set(OPT_STATS_INTERVAL_MS, 50);
	app_thread = pthread_self();
	spb__os_inject.hook = hook;
	spb__free_ptr(spb__malloc(16)); /* init; starts the thread when bg */
	if (bg) {
		for (int i = 0; i < 100 && !spb__bg_running(); i++)
			usleep(10000);
		REQUIRE(spb__bg_running());
	}
	uint64_t inl0 = ctr(DECAY_INLINE), rel0 = ctr(PB_RELEASE), un0 = ctr(SPB_UNMAP);
	workload(4);
	/* Let the background thread (or the next slow paths) finish. */
	for (int k = 0; k < 40; k++) {
		usleep(10000);
		if (!bg) {
			begin();
			spb__free_ptr(spb__malloc(300 * 1024));
			end();
		}
	}
	long in_app = atomic_load(&app_calls), elsewhere = atomic_load(&other_calls);
	printf("%s: releases %llu, SPB unmaps %llu, inline decay passes %llu; "
	       "DONTNEED/munmap calls inside malloc/free %ld (worst single call %ld), "
	       "elsewhere %ld\n",
	       bg ? "background thread" : "SPBMALLOC_BG=0",
	       (unsigned long long)(ctr(PB_RELEASE) - rel0),
	       (unsigned long long)(ctr(SPB_UNMAP) - un0),
	       (unsigned long long)(ctr(DECAY_INLINE) - inl0), in_app,
	       atomic_load(&worst_call), elsewhere);
	CHECK(ctr(PB_RELEASE) - rel0 > 0); /* the workload did make work */
	if (bg) {
		CHECK_EQ(in_app, 0);
		CHECK_EQ(ctr(DECAY_INLINE) - inl0, 0);
		CHECK(elsewhere > 0);
	} else {
		/* One SPB unmap (munmap of the data area, of its trims), one
		 * batch of 32 releases and 32 subrelease calls at most, per
		 * call. */
		CHECK(atomic_load(&worst_call) <= 32 + 4 + 32);
		CHECK(ctr(DECAY_INLINE) - inl0 > 0);
	}
	return check_done(bg ? "test_deferred" : "test_deferred nobg");
}
