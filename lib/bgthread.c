/*
 * bgthread.c — the one background thread, in the style of jemalloc's:
 * each round it runs the decay (which says when its next release is due),
 * the compaction layer's hook if one is installed, and publishes the stats
 * segment once per SPBMALLOC_STATS_INTERVAL_MS; then it sleeps on a futex
 * until the earliest deadline, and spb__bg_wake() cuts the sleep short.
 *
 * Started lazily by spb__bg_maybe_start() (from a malloc slow path: the
 * thread is created with every signal blocked, named "spb-bg"), not
 * inherited by fork (spb__bg_atfork_child marks it stopped so the child
 * restarts its own). Inside the thread nothing allocates, with two
 * exceptions, both run with no allocator lock held, in a process whose
 * malloc is ready by then: once SPBMALLOC_HWLOC_DELAY_MS have passed, a
 * round opens hwloc and runs its topology discovery, once
 * (spb__engine_topo_discover: dlopen and hwloc allocate); and a request
 * of spbstat's it answers, each round, runs through spb_ctl: an action
 * such as compact or shrink runs on this thread and may allocate.
 * May call: the engine (spb_decay, the topology discovery), statseg.c,
 * os.c, libc's pthread (pthread_create only in spb__bg_maybe_start).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"

enum { BG_STOPPED = 0, BG_STARTING, BG_RUNNING, BG_OFF };

static int bg_state;
static uint32_t bg_futex; /* bumped by every wake */
/* The word the thread sleeps on: bg_futex, or, once the stats segment
 * exists, the control slot's wake word in it (a shared futex: spbstat
 * wakes the thread for a request, from another process). Switched by the
 * thread alone, at the top of a round: a waker that still found the old
 * word woke nobody, but its news comes before the round that follows. */
static uint32_t *_Atomic bg_word = &bg_futex;
static int atfork_registered;
uint64_t (*_Atomic spb__bg_hook)(uint64_t now_ms);

static int futex_op(const uint32_t *w, int op)
{
	return w == &bg_futex ? op | FUTEX_PRIVATE_FLAG : op;
}

static void bg_sleep(uint32_t *w, uint32_t seen, uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
			      .tv_nsec = (long)(ms % 1000) * 1000000L};
	/* Returns at the timeout, on a wake, or at once if the word moved
	 * since `seen` (a wake that came before we slept is not lost). */
	syscall(SYS_futex, w, futex_op(w, FUTEX_WAIT), seen, &ts, NULL, 0);
}

/* Cleared by the thread at the start of each round: the kicks of many
 * slow paths between two rounds cost one futex wake. */
static int kick_pending;

void spb__bg_wake(void)
{
	uint32_t *w = __atomic_load_n(&bg_word, __ATOMIC_ACQUIRE);
	__atomic_fetch_add(w, 1, __ATOMIC_RELEASE);
	if (__atomic_load_n(&bg_state, __ATOMIC_ACQUIRE) == BG_RUNNING)
		syscall(SYS_futex, w, futex_op(w, FUTEX_WAKE), 1, NULL, NULL, 0);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* When hwloc's discovery is due (0: done). */
static uint64_t topo_due;

/* One round: everything due now; returns ms until the next deadline. */
static uint64_t bg_round(uint64_t *next_publish)
{
	uint64_t wait = spb_decay();
	/* Handle-arena slots released by the decay: PROT_NONE at once while
	 * no handle reader ever registered (arena.c; else the compaction
	 * thread does it, after a grace period). */
	spb__arena_quiesce(false);
	if (topo_due) {
		uint64_t t = spb__os_now_ms();
		if (t >= topo_due) {
			spb__engine_topo_discover(); /* hwloc, once; sysfs until then */
			topo_due = 0;
		} else {
			wait = min_u64(wait, topo_due - t);
		}
	}
	uint64_t (*hook)(uint64_t) = __atomic_load_n(&spb__bg_hook, __ATOMIC_ACQUIRE);
	if (hook)
		wait = min_u64(wait, hook(spb__os_now_ms()));
	uint64_t now = spb__os_now_ms();
	if (now >= *next_publish) {
		void (*reclaim)(bool) = spb__reclaim_hook;
		if (reclaim) /* spans exited threads left; idle cached runs */
			reclaim(false);
		spb__statseg_init(); /* a forked child's, once it is due */
		spb__statseg_publish();
		*next_publish = now + (uint64_t)spb__opt(OPT_STATS_INTERVAL_MS);
	}
	wait = min_u64(wait, *next_publish - now);
	/* spbstat --set/--trim/--compact: looked at each round, and the
	 * rounds are at most SPB_CTL_POLL_MS apart while there is a slot. */
	if (spb__statseg_serve_ctl())
		wait = min_u64(wait, SPB_CTL_POLL_MS);
	/* Keep at least a millisecond between rounds (a refused release is
	 * due again only after the delay, but nothing here may spin). */
	return wait ? wait : 1;
}

static void *bg_main(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "spb-bg", 0, 0, 0);
	/* hwloc once, after SPBMALLOC_HWLOC_DELAY_MS (bg_round). */
	topo_due = spb__os_now_ms() + (uint64_t)spb__opt(OPT_HWLOC_DELAY_MS);
	if (!topo_due)
		topo_due = 1;
	spb__statseg_init();
	uint64_t next_publish = 0;
	for (;;) {
		uint32_t *w = __atomic_load_n(&bg_word, __ATOMIC_RELAXED);
		if (w == &bg_futex) { /* the segment's word once it exists */
			uint32_t *seg = spb__statseg_wake_word();
			if (seg)
				__atomic_store_n(&bg_word, w = seg, __ATOMIC_RELEASE);
		}
		uint32_t seen = __atomic_load_n(w, __ATOMIC_ACQUIRE);
		__atomic_store_n(&kick_pending, 0, __ATOMIC_RELEASE);
		uint64_t wait = bg_round(&next_publish);
		bg_sleep(w, seen, wait);
	}
	return NULL;
}

static void bg_atfork_child_hook(void)
{
	spb__statseg_atfork_child();
	spb__bg_atfork_child();
}

bool spb__bg_running(void)
{
	return __atomic_load_n(&bg_state, __ATOMIC_ACQUIRE) == BG_RUNNING;
}

void spb__bg_kick(void)
{
	if (!__atomic_exchange_n(&kick_pending, 1, __ATOMIC_ACQ_REL))
		spb__bg_wake();
}

void spb__bg_maybe_start(void)
{
	if (SPB_LIKELY(__atomic_load_n(&bg_state, __ATOMIC_ACQUIRE) != BG_STOPPED))
		return;
	int st = BG_STOPPED;
	if (!__atomic_compare_exchange_n(&bg_state, &st, BG_STARTING, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return;
	spb__engine_init();
	spb__statseg_init();
	/* Until init.c's fork hooks call the two atfork functions, register
	 * them here (both are idempotent, so a second call is harmless). */
	if (!__atomic_exchange_n(&atfork_registered, 1, __ATOMIC_ACQ_REL))
		pthread_atfork(NULL, NULL, bg_atfork_child_hook);
	if (!spb__opt(OPT_BG)) {
		__atomic_store_n(&bg_state, BG_OFF, __ATOMIC_RELEASE);
		return;
	}
	/* On failure, stay off: retrying on every slow path would cost a
	 * failed clone each time. */
	__atomic_store_n(&bg_state, spb__thread_spawn(bg_main, NULL) ? BG_RUNNING : BG_OFF,
			 __ATOMIC_RELEASE);
}

void spb__bg_atfork_child(void)
{
	spb__topo_atfork_child(); /* a discovery under way was the thread's */
	/* The parent's segment is not the child's (statseg.c unmaps it). */
	__atomic_store_n(&bg_word, &bg_futex, __ATOMIC_RELEASE);
	__atomic_store_n(&bg_futex, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&bg_state, BG_STOPPED, __ATOMIC_RELEASE);
}
