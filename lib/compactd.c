/*
 * compactd.c — the compaction thread ("spb-compact") and its controller,
 * in the spirit of the kernel's kcompactd and of Anchorage: it looks at
 * the fragmentation of the MOVABLE class every COMPACT_INTERVAL_MS
 * (backed bytes of MOVABLE pageblocks over the live bytes in them, measured
 * under the zone lock by compact.c), starts compacting when that crosses
 * COMPACT_START_PCT and stops below COMPACT_STOP_PCT. Each pass is bounded
 * (PASS_BYTES moved); between passes it yields the core.
 *
 * Budget: a token bucket of CPU time. Tokens accrue at COMPACT_BUDGET_PCT
 * of one core and hold at most COMPACT_BURST_MS, so a big free is cleaned
 * up at once (the burst) while in steady state the thread uses at most the
 * budget; with the tokens spent it sleeps until they are back (counted:
 * compact_throttled). Passes that move nothing (everything pinned, or the
 * waste is not in sparse spans) are futile: after FUTILE_MAX of them it
 * stops and backs off, doubling the wait up to 64 intervals (the lesson of
 * the kernel's deferred compaction: futile compaction is worse than none).
 *
 * Started by the first spb_halloc (spb__compactd_maybe_start), with every
 * signal blocked; SPBMALLOC_COMPACT=0 keeps it off. Not inherited by fork:
 * a child starts its own at its next spb_halloc slow path. The thread
 * allocates (the mover's targets) through its own MOVABLE heap, never
 * under a lock of ours.
 * May call: compact.c, options, os.c's clock, libc's pthread and futex.
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "handle.h"

#define PASS_BYTES ((size_t)64 << 20)
#define FUTILE_MAX 3
#define MIN_WASTE ((uint64_t)4 << 20) /* less than two pageblocks: leave it */

enum { CD_STOPPED = 0, CD_STARTING, CD_RUNNING, CD_OFF };
static int cd_state;
static uint32_t cd_futex;
static SPB_TLS bool cd_self; /* this thread is the compaction thread */

static void cd_wake(void)
{
	__atomic_fetch_add(&cd_futex, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, &cd_futex, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* ---- Evacuation (seed 001): the tainted reserve was crossed. ---- */
#define EVAC_PBS 32    /* pageblocks one evacuation pass empties, at most */
static int evac_req[SPB_NR_ZONES_MAX];

static void cd_evac_hook(struct spb_zone *z)
{
	__atomic_store_n(&evac_req[z - spb__zones], 1, __ATOMIC_RELEASE);
	cd_wake();
}

static void run_evacuations(void)
{
	for (int i = 0; i < spb__zones_count(); i++) {
		if (!__atomic_exchange_n(&evac_req[i], 0, __ATOMIC_ACQ_REL))
			continue;
		struct spb_zone *z = &spb__zones[i];
		struct spb_compact_stat st;
		spb__heap_count(COMPACT_EVACUATIONS, 1);
		/* Until the reserve is met again or nothing more comes free. */
		for (int round = 0; round < 8; round++) {
			if (!spb__compact_evacuate(z, EVAC_PBS, NULL, &st))
				break;
			spb__zone_lock(z);
			bool met = z->tainted_free_pb > spb__zone_reserve(z);
			spb__zone_unlock(z);
			if (met)
				break;
		}
		/* Seed 003's supply trigger: shrink RECLAIMABLE caches after the
		 * pass, to keep headroom for the next burst. */
		spb__zone_lock(z);
		spb__shrink_trigger_locked(z, SHRINK_TRIGGER_SUPPLY);
		spb__zone_unlock_signal(z);
	}
}

/* ---- Last-chance and direct compaction with capture (seeds 003, 000) ----
 * A non-movable claim that would taint fresh capacity (or fail) asks the
 * thread for one bounded evacuation of the zone's tainted SPBs and waits
 * for it; the first pageblock it frees is captured for the asker. One at a
 * time: an asker that finds one in flight waits for that one and then
 * claims again (its chance is as good), instead of piling on.
 * The wait is bounded (COMPACT_DIRECT_WAIT_MS): the pass waits for a grace period,
 * and a reader inside a read section may be blocked on a lock the asker
 * holds (a program's own mutex around a malloc). Then the asker gives up
 * (the request becomes an orphan the thread finishes without capturing:
 * cancelled under the zone lock, where the capture happens) and claims
 * again without asking. A thread inside a read section never asks. */
#define DIRECT_PBS 4
enum { REQ_IDLE = 0, REQ_PENDING, REQ_RUNNING, REQ_DONE, REQ_ORPHAN };
static pthread_mutex_t req_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	struct spb_zone *z;
	struct spb_capture cap;
	unsigned pb_freed;
	uint32_t state; /* futex word */
} req;
static uint32_t req_gen; /* bumped when a request is done (futex word) */

/* Sleep on a futex word until it moves from seen, a wake, or ms pass. */
static void wait_word(uint32_t *w, uint32_t seen, uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
}

static uint64_t now_ms(void)
{
	return spb__os_now_ns() / 1000000u;
}

/* The asker's bounded wait for REQ_DONE; false when it gave up (then the
 * request is cancelled or orphaned, and what it captured, if anything, is
 * in req.cap.result). */
static bool wait_done(void)
{
	uint64_t until = now_ms() + (uint64_t)spb__opt(OPT_COMPACT_DIRECT_WAIT_MS);
	uint32_t st;
	while ((st = __atomic_load_n(&req.state, __ATOMIC_ACQUIRE)) != REQ_DONE) {
		uint64_t t = now_ms();
		if (t >= until)
			break;
		wait_word(&req.state, st, until - t);
	}
	if (st == REQ_DONE)
		return true;
	spb__zone_lock(req.z);
	req.cap.cancelled = true; /* the pass captures under this lock only */
	spb__zone_unlock(req.z);
	uint32_t e = REQ_PENDING;
	if (__atomic_compare_exchange_n(&req.state, &e, REQ_IDLE, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		return false; /* never started */
	e = REQ_RUNNING;
	if (__atomic_compare_exchange_n(&req.state, &e, REQ_ORPHAN, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		return false; /* the thread finishes it alone */
	return true; /* it was done meanwhile */
}

static void *cd_defrag(struct spb_zone *z, unsigned cls, unsigned npages, unsigned align,
		       unsigned npb)
{
	if (cd_self || spb__rcu_in_section() ||
	    __atomic_load_n(&cd_state, __ATOMIC_ACQUIRE) != CD_RUNNING)
		return NULL;
	bool busy = pthread_mutex_trylock(&req_lock) != 0;
	if (!busy && __atomic_load_n(&req.state, __ATOMIC_ACQUIRE) != REQ_IDLE) {
		pthread_mutex_unlock(&req_lock); /* an orphan still finishing */
		busy = true;
	}
	if (busy) {
		/* One in flight: wait for it (bounded), then claim again. */
		spb__heap_count(COMPACT_DIRECT_PILED, 1);
		uint32_t g = __atomic_load_n(&req_gen, __ATOMIC_ACQUIRE);
		wait_word(&req_gen, g, (uint64_t)spb__opt(OPT_COMPACT_DIRECT_WAIT_MS));
		return NULL;
	}
	spb__heap_count(COMPACT_LASTCHANCE, 1);
	spb__heap_count(COMPACT_DIRECT_STALL, 1);
	req.z = z;
	req.cap = (struct spb_capture){cls, npages, align, npb, NULL, false};
	req.pb_freed = 0;
	__atomic_store_n(&req.state, REQ_PENDING, __ATOMIC_RELEASE);
	cd_wake();
	bool done = wait_done();
	void *p = req.cap.result;
	bool gained = done && req.pb_freed > 0;
	if (done)
		__atomic_store_n(&req.state, REQ_IDLE, __ATOMIC_RELEASE);
	else
		spb__heap_count(COMPACT_DIRECT_TIMEOUT, 1);
	spb__heap_count(gained || p ? COMPACT_DIRECT_SUCCESS : COMPACT_DIRECT_FAIL, 1);
	if (p)
		spb__heap_count(COMPACT_DIRECT_CAPTURED, 1);
	spb__zone_lock(z);
	if (gained || p) {
		z->defrag_shift = 0;
	} else {
		if (z->defrag_shift < 6)
			z->defrag_shift++;
		z->defrag_defer = (uint8_t)((1u << z->defrag_shift) - 1);
	}
	spb__zone_unlock(z);
	__atomic_fetch_add(&req_gen, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, &req_gen, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
	pthread_mutex_unlock(&req_lock);
	return p;
}

static void serve_request(void)
{
	uint32_t pending = REQ_PENDING;
	if (!__atomic_compare_exchange_n(&req.state, &pending, REQ_RUNNING, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return;
	struct spb_compact_stat st;
	req.pb_freed = spb__compact_evacuate(req.z, DIRECT_PBS, &req.cap, &st);
	uint32_t running = REQ_RUNNING;
	if (!__atomic_compare_exchange_n(&req.state, &running, REQ_DONE, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		/* An orphan: its asker left; the next one may come. */
		__atomic_store_n(&req.state, REQ_IDLE, __ATOMIC_RELEASE);
		__atomic_fetch_add(&req_gen, 1, __ATOMIC_RELEASE);
		syscall(SYS_futex, &req_gen, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
		return;
	}
	syscall(SYS_futex, &req.state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static uint64_t thread_cpu_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Fragmentation in % (backed over live); 0 when there is nothing to gain. */
static uint64_t frag_pct(const struct spb_compact_stat *st)
{
	if (st->backed <= st->live || st->backed - st->live < MIN_WASTE)
		return 0;
	return st->live ? st->backed * 100 / st->live : UINT64_MAX;
}

/* SPBMALLOC_VERBOSE=1: each decision of the controller on stderr. */
static void cd_log(const char *what, const struct spb_compact_stat *st)
{
	if (!spb__opt(OPT_VERBOSE))
		return;
	char buf[256];
	size_t n = spb__fmt_str(buf, 0, 64, "spbmalloc: compaction ");
	n = spb__fmt_str(buf, n, n + 32, what);
	n = spb__fmt_str(buf, n, n + 16, ": backed ");
	n += spb__fmt_u64(buf + n, st->backed >> 20);
	n = spb__fmt_str(buf, n, n + 16, " MiB, live ");
	n += spb__fmt_u64(buf + n, st->live >> 20);
	n = spb__fmt_str(buf, n, n + 16, " MiB");
	if (st->sources) {
		n = spb__fmt_str(buf, n, n + 16, "; pass: ");
		n += spb__fmt_u64(buf + n, st->evac_pbs);
		n = spb__fmt_str(buf, n, n + 32, " pageblocks emptied, ");
		n += spb__fmt_u64(buf + n, st->sources);
		n = spb__fmt_str(buf, n, n + 32, " spans, ");
		n += spb__fmt_u64(buf + n, st->moved >> 10);
		n = spb__fmt_str(buf, n, n + 32, " KiB moved, ");
		n += spb__fmt_u64(buf + n, st->spans_freed);
		n = spb__fmt_str(buf, n, n + 32, " spans freed");
	}
	buf[n++] = '\n';
	ssize_t r = write(2, buf, n);
	(void)r;
}

static void *cd_main(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "spb-compact", 0, 0, 0);
	cd_self = true;
	int64_t tokens = (int64_t)spb__opt(OPT_COMPACT_BURST_MS) * 1000;
	uint64_t last = spb__os_now_ms(), backoff = 1;
	unsigned futile = 0;
	bool active = false, fresh = false; /* st measured just now, after a pass */
	struct spb_compact_stat st;
	for (;;) {
		uint32_t seen = __atomic_load_n(&cd_futex, __ATOMIC_ACQUIRE);
		/* Read each round: spb_ctl may change them (ctl.def). */
		const uint64_t burst_us = (uint64_t)spb__opt(OPT_COMPACT_BURST_MS) * 1000;
		const uint64_t budget = (uint64_t)spb__opt(OPT_COMPACT_BUDGET_PCT);
		const uint64_t interval = (uint64_t)spb__opt(OPT_COMPACT_INTERVAL_MS);
		serve_request();
		run_evacuations();
		/* Released arena slots made unreadable after a grace period
		 * (arena.c): this thread may wait for one. */
		spb__arena_quiesce(true);
		uint64_t now = spb__os_now_ms();
		tokens += (int64_t)((now - last) * 10 * budget); /* us of CPU per ms */
		if (tokens > (int64_t)burst_us)
			tokens = (int64_t)burst_us;
		last = now;
		/* Straight after a pass the figures it left are still true: no
		 * second scan under the zone lock for them. */
		if (!fresh)
			spb__compact_measure(&st);
		fresh = false;
		uint64_t pct = frag_pct(&st);
		if (!active && pct >= (uint64_t)spb__opt(OPT_COMPACT_START_PCT)) {
			active = true;
			spb__heap_count(COMPACT_CTL_START, 1);
			cd_log("start", &st);
		} else if (active && pct < (uint64_t)spb__opt(OPT_COMPACT_STOP_PCT)) {
			active = false;
			backoff = 1;
			spb__heap_count(COMPACT_CTL_STOP, 1);
			cd_log("stop", &st);
		}
		uint64_t wait = interval * backoff;
		if (active && tokens <= 0) {
			spb__heap_count(COMPACT_THROTTLED, 1);
			wait = (uint64_t)(-tokens) / (10 * budget) + 1;
		} else if (active) {
			uint64_t c0 = thread_cpu_us();
			spb__compact_pass(PASS_BYTES, &st);
			uint64_t used = thread_cpu_us() - c0;
			tokens -= (int64_t)used;
			spb__heap_count(COMPACT_CPU_US, used);
			struct spb_compact_stat after;
			spb__compact_measure(&after);
			if (spb__opt(OPT_VERBOSE) >= 2)
				cd_log("pass", &st);
			/* Progress is memory given back, not bytes moved: moves
			 * that free nothing would go round in circles. */
			if (after.backed < st.backed) {
				futile = 0;
				backoff = 1;
				wait = 0;
				st = after;
				fresh = true;
			} else if (++futile >= FUTILE_MAX) {
				futile = 0;
				active = false;
				backoff = backoff < 64 ? backoff * 2 : 64;
				wait = interval * backoff;
				spb__heap_count(COMPACT_FUTILE, 1);
				cd_log("futile, backing off", &after);
			} else {
				wait = interval / 10 + 1;
			}
		}
		if (wait)
			wait_word(&cd_futex, seen, wait);
		else
			sched_yield();
	}
	return NULL;
}

static void cd_atfork_child_hook(void)
{
	spb__compactd_atfork_child();
}

void spb__compactd_maybe_start(void)
{
	if (SPB_LIKELY(__atomic_load_n(&cd_state, __ATOMIC_ACQUIRE) != CD_STOPPED))
		return;
	int st = CD_STOPPED;
	if (!__atomic_compare_exchange_n(&cd_state, &st, CD_STARTING, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return;
	spb__engine_init(); /* the thread reads the zones at once */
	static int atfork_registered;
	if (!__atomic_exchange_n(&atfork_registered, 1, __ATOMIC_ACQ_REL))
		pthread_atfork(NULL, NULL, cd_atfork_child_hook);
	if (!spb__opt(OPT_COMPACT)) {
		__atomic_store_n(&cd_state, CD_OFF, __ATOMIC_RELEASE);
		return;
	}
	bool ok = spb__thread_spawn(cd_main, NULL);
	/* On failure, stay off: a failed clone on every call would cost. */
	__atomic_store_n(&cd_state, ok ? CD_RUNNING : CD_OFF, __ATOMIC_RELEASE);
	if (ok) {
		spb__evac_hook = cd_evac_hook;
		__atomic_store_n(&spb__defrag_hook, cd_defrag, __ATOMIC_RELEASE);
	}
}

void spb__compactd_kick(void)
{
	if (__atomic_load_n(&cd_state, __ATOMIC_ACQUIRE) == CD_RUNNING)
		cd_wake();
}

void spb__compactd_atfork_child(void)
{
	/* No thread to serve them until the child's own starts. */
	pthread_mutex_init(&req_lock, NULL);
	__atomic_store_n(&req.state, REQ_IDLE, __ATOMIC_RELAXED);
	__atomic_store_n(&cd_futex, 0, __ATOMIC_RELAXED);
	if (__atomic_load_n(&cd_state, __ATOMIC_ACQUIRE) != CD_OFF)
		__atomic_store_n(&cd_state, CD_STOPPED, __ATOMIC_RELEASE);
}
