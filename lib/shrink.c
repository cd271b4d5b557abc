/*
 * shrink.c — shrinkers: caches in RECLAIMABLE memory the program can drop,
 * asked to by the thread "spb-shrink" (seed 003's SPB-driven slab shrink,
 * and the system's memory pressure, which no malloc answers today).
 *
 * Triggers (engine.h's spb__shrink_trigger_locked, counted each): demand
 * (a non-movable claim is about to taint fresh capacity, or tainted SPBs
 * are below their reserve: steer.c, zone.c), supply (an evacuation pass of
 * the compactor ended: compactd.c) and the proactive high-water mark (a
 * non-movable run from a tainted SPB running low: steer.c). Every trigger
 * is counted; one that finds its zone armed disarms it (single flight: one
 * pass per zone queued or running, later triggers cost a load), sets
 * the zone's pending flag and wakes the thread through an eventfd. A pass
 * that freed a pageblock's worth re-arms the zone at once (passes follow
 * each other while the triggers keep firing), one that freed less 10 ms
 * later (a shrinker that frees a little each time cannot storm); one that
 * freed nothing makes the zone
 * rest SPBMALLOC_SHRINK_REST_MS, doubled each time (up to 64 times): never
 * a storm.
 *
 * A pass walks the shrinkers from priority 3 (1/64 of each cache) down to
 * 0 (all of it), and after each priority pushes the frees it made to their
 * spans (spb__reclaim_hook) and looks at the zone's RECLAIMABLE pages and
 * at the bytes it freed: it stops once a pageblock's worth came back to
 * the engine or was freed, or when nobody freed anything. Callbacks run one at a time with no lock of ours held
 * (they may malloc and free); unregistering waits for a call in flight.
 *
 * Memory pressure (pressure.c): PSI or memory.high events make the thread
 * run every shrinker in full and then give back every free pageblock and
 * empty SPB at once (spb_trim), at most once per PRESSURE_QUIET_MS, and
 * trim again 250 ms and 1 s later (the records' owners give their spans
 * back at their next refill).
 *
 * The thread starts with the first registration (or at once with
 * SPBMALLOC_PRESSURE=2); a forked child starts its own from its next span
 * (spb__shrink_restart) and inherits the registrations.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "heap.h"
#include "pressure.h"
#include "shrink.h"

#define SPB_EXPORT __attribute__((visibility("default")))

#define SHRINKERS_MAX 64
#define PRIO_MAX 3
#define SCAN_MIN 32          /* the smallest slice asked of a cache */
#define PRESSURE_QUIET_MS 250 /* one response per this much, however many events */
#define REST_SHIFT_MAX 6
#define PROGRESS_REST_MS 10 /* after a pass that freed less than a pageblock's worth */

struct shrinker {
	spb_shrink_scan_fn scan;
	spb_shrink_count_fn count;
	void *ctx;
	bool live;
};

static pthread_mutex_t sh_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sh_cv = PTHREAD_COND_INITIALIZER;
static struct shrinker shrinkers[SHRINKERS_MAX];
static int running = -1;     /* shrinker whose callback runs now */
static pthread_t running_on; /* and on which thread */
static unsigned nr_live;
/* One pass at a time, the thread's or spb_shrink's. */
static pthread_mutex_t pass_lock = PTHREAD_MUTEX_INITIALIZER;
static SPB_TLS bool in_pass;

enum { SH_IDLE = 0, SH_STARTING, SH_RUNNING, SH_OFF };
static int sh_state;
static int evfd = -1;
static uint8_t pending[SPB_NR_ZONES_MAX];
static struct spb_pressure pr = {-1, -1, -1, 0}; /* the thread's */

/* ---- the registry ---- */

/* Take shrinker i for a call (false: not live). */
static bool take(int i, struct shrinker *out)
{
	pthread_mutex_lock(&sh_lock);
	bool ok = shrinkers[i].live;
	if (ok) {
		*out = shrinkers[i];
		running = i;
		running_on = pthread_self();
	}
	pthread_mutex_unlock(&sh_lock);
	return ok;
}

static void put(void)
{
	pthread_mutex_lock(&sh_lock);
	running = -1;
	pthread_cond_broadcast(&sh_cv);
	pthread_mutex_unlock(&sh_lock);
}

/* ---- a pass ---- */

/* The zone's RECLAIMABLE pages handed out, and its RECLAIMABLE pageblocks. */
static void recl_usage(struct spb_zone *z, uint64_t *pages, uint64_t *pbs)
{
	spb__zone_lock(z);
	uint64_t n = z->pb_by_class[SPB_RECLAIMABLE];
	*pbs = n;
	n *= SPB_PAGES_PER_PB;
	for (int c = 0; c < SPB_NR_CATS; c++)
		for (int f = 0; f < SPB_NR_FULLNESS; f++) {
			const struct spb_link *h = &z->lists[c][f];
			for (const struct spb_link *l = h->next; l != h; l = l->next)
				n -= spb__container_of(l, struct spb, link)
					     ->nr_partial_free[SPB_RECLAIMABLE];
		}
	spb__zone_unlock(z);
	*pages = n;
}

/* Bytes the calling thread freed so far (its own counter: no atomic). */
static uint64_t freed_bytes_here(void)
{
	struct spb_heap *h = spb__tls_primary;
	return h ? h->counters[MALLOC_FREE_BYTES] : 0;
}

/* One round over the shrinkers at prio; returns objects freed. */
static size_t round_at(int prio)
{
	size_t freed = 0;
	for (int i = 0; i < SHRINKERS_MAX; i++) {
		struct shrinker sh;
		if (!__atomic_load_n(&shrinkers[i].live, __ATOMIC_RELAXED) || !take(i, &sh))
			continue;
		size_t cnt = sh.count(sh.ctx);
		if (cnt) {
			size_t nr = cnt >> (2 * prio);
			if (nr < SCAN_MIN)
				nr = cnt < SCAN_MIN ? cnt : SCAN_MIN;
			freed += sh.scan(sh.ctx, nr, prio);
			spb__heap_count((enum spb_counter)(SHRINK_PRIO3 + (PRIO_MAX - prio)), 1);
		}
		put();
	}
	return freed;
}

/* A pass for zone z (NULL: every zone; full: every priority down to 0,
 * whatever came free). Returns objects freed. */
static size_t run_pass(struct spb_zone *z, bool full, int first_prio, bool *met)
{
	bool dummy;
	if (!met)
		met = &dummy;
	*met = false;
	struct spb_zone *zz = z ? z : &spb__zones[0];
	uint64_t pg0, pb0;
	size_t freed = 0;
	pthread_mutex_lock(&pass_lock);
	in_pass = true;
	recl_usage(zz, &pg0, &pb0);
	uint64_t pg = pg0, pb = pb0; /* after the last round that freed anything */
	uint64_t b0 = freed_bytes_here();
	for (int prio = first_prio; prio >= 0; prio--) {
		size_t f = round_at(prio);
		freed += f;
		if (!f)
			break;
		/* The frees of this round go to their spans now, so emptied
		 * spans (and then pageblocks) go back to the engine. */
		if (spb__reclaim_hook)
			spb__reclaim_hook(true);
		recl_usage(zz, &pg, &pb);
		/* A pageblock's worth: pages back in the engine, or bytes this
		 * thread freed (blocks of another thread's spans go back when
		 * that thread next refills: heap.c, reclaim_sweep). */
		if (pg0 >= pg + SPB_PAGES_PER_PB || freed_bytes_here() - b0 >= SPB_PB_SIZE) {
			*met = true;
			if (!full)
				break;
		}
	}
	if (freed) /* the owners of what was freed sweep their spans (heap.h) */
		__atomic_fetch_add(&spb__reclaim_epoch, 1, __ATOMIC_RELEASE);
	in_pass = false;
	pthread_mutex_unlock(&pass_lock);
	spb__heap_count(SHRINK_RAN, 1);
	spb__heap_count(SHRINK_FREED, freed);
	if (pb0 > pb)
		spb__heap_count(SHRINK_PB_RECOVERED, pb0 - pb);
	if (!freed)
		spb__heap_count(SHRINK_NO_PROGRESS, 1);
	return freed;
}

SPB_EXPORT size_t spb_shrink(unsigned flags)
{
	if (in_pass) {
		errno = EDEADLK;
		return 0;
	}
	bool all = flags & SPB_SHRINK_ALL;
	return run_pass(NULL, all, all ? 0 : PRIO_MAX, NULL);
}

/* ---- triggers ---- */

static void wake(void)
{
	uint64_t one = 1;
	int fd = __atomic_load_n(&evfd, __ATOMIC_ACQUIRE);
	if (fd >= 0 && write(fd, &one, sizeof one) < 0) {
		/* the counter is full: the thread has a wake pending anyway */
	}
}

/* spb__shrink_hook: the zone was armed when its trigger fired. */
static void shrink_hook(struct spb_zone *z)
{
	int i = (int)(z - spb__zones);
	if (!__atomic_exchange_n(&z->shrink_armed, 0, __ATOMIC_ACQ_REL))
		return; /* another trigger of the same round won */
	__atomic_store_n(&pending[i], 1, __ATOMIC_RELEASE);
	spb__heap_count(SHRINK_QUEUED, 1);
	wake();
}

/* What arm_all last set: a zone added later (hwloc's discovery, zone.c)
 * is armed like the others (spb__shrink_zones_added). The flag is stored
 * before the count is read here, the count before the flag is read
 * there (both sequentially consistent): one of the two arms it. */
static bool arm_on;

static void arm_all(bool on)
{
	__atomic_store_n(&arm_on, on, __ATOMIC_SEQ_CST);
	int n = __atomic_load_n(&spb__nr_zones, __ATOMIC_SEQ_CST);
	for (int i = 0; i < n; i++)
		__atomic_store_n(&spb__zones[i].shrink_armed, on, __ATOMIC_RELEASE);
}

void spb__shrink_zones_added(int from, int to)
{
	if (__atomic_load_n(&arm_on, __ATOMIC_SEQ_CST))
		for (int i = from; i < to; i++)
			__atomic_store_n(&spb__zones[i].shrink_armed, 1, __ATOMIC_RELEASE);
}

/* ---- the thread ---- */

static void on_pressure(unsigned why)
{
	spb__heap_count(PRESSURE_EVENTS, 1);
	if (why & SPB_PRESSURE_PSI)
		spb__heap_count(PRESSURE_PSI, 1);
	if (why & SPB_PRESSURE_HIGH)
		spb__heap_count(PRESSURE_HIGH, 1);
	if (spb__opt(OPT_SHRINK) && __atomic_load_n(&nr_live, __ATOMIC_RELAXED))
		run_pass(NULL, true, PRIO_MAX, NULL);
	spb__heap_count(PRESSURE_RELEASED, spb_trim());
}

static void *sh_main(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "spb-shrink", 0, 0, 0);
	if (spb__opt(OPT_PRESSURE))
		spb__pressure_open(&pr);
	uint64_t rest_until[SPB_NR_ZONES_MAX] = {0};
	unsigned rest_shift[SPB_NR_ZONES_MAX] = {0};
	uint64_t quiet_until = 0;
	/* After a pressure response, trims again: what the records' owners give
	 * back at their next refill (heap.h, spb__reclaim_epoch) goes to the
	 * OS within a second too. */
	uint64_t retrim[2] = {0, 0};
	const bool shrink_on = spb__opt(OPT_SHRINK);
	arm_all(shrink_on);
	for (;;) {
		struct pollfd v[4];
		v[0] = (struct pollfd){.fd = evfd, .events = POLLIN};
		int n = 1 + spb__pressure_pollfds(&pr, v + 1);
		uint64_t now = spb__os_now_ms(), next = UINT64_MAX;
		for (int i = 0; i < spb__zones_count(); i++)
			if (rest_until[i] && rest_until[i] < next)
				next = rest_until[i];
		for (int i = 0; i < 2; i++)
			if (retrim[i] && retrim[i] < next)
				next = retrim[i];
		int timeout = next == UINT64_MAX ? -1 : next <= now ? 0 : (int)(next - now);
		if (poll(v, (nfds_t)n, timeout) < 0)
			v[0].revents = 0; /* EINTR cannot be (signals blocked); be safe */
		if (v[0].revents & POLLIN) {
			uint64_t x;
			if (read(evfd, &x, sizeof x) < 0) {
				/* nothing to drain */
			}
		}
		unsigned why = spb__pressure_read(&pr, v + 1, n - 1);
		/* Read each round: spb_ctl may change it (ctl.def). */
		const uint64_t rest = (uint64_t)spb__opt(OPT_SHRINK_REST_MS);
		now = spb__os_now_ms();
		if (why && now >= quiet_until) {
			on_pressure(why);
			quiet_until = spb__os_now_ms() + PRESSURE_QUIET_MS;
			retrim[0] = quiet_until;
			retrim[1] = quiet_until + 750;
		}
		for (int i = 0; i < 2; i++)
			if (retrim[i] && now >= retrim[i]) {
				retrim[i] = 0;
				spb__heap_count(PRESSURE_RELEASED, spb_trim());
			}
		for (int i = 0; i < spb__zones_count(); i++) {
			if (__atomic_exchange_n(&pending[i], 0, __ATOMIC_ACQ_REL)) {
				bool met;
				size_t f = run_pass(&spb__zones[i], false, PRIO_MAX, &met);
				/* A pageblock's worth freed: armed again at once (the
				 * triggers say whether more is wanted); less: after
				 * PROGRESS_REST_MS; nothing: rest, longer each time. */
				rest_shift[i] = f ? 0 : rest_shift[i] < REST_SHIFT_MAX ? rest_shift[i] + 1
										: REST_SHIFT_MAX;
				rest_until[i] = spb__os_now_ms() +
						(met ? 0 : f ? PROGRESS_REST_MS : rest << rest_shift[i]);
				if (met && shrink_on) {
					rest_until[i] = 0;
					__atomic_store_n(&spb__zones[i].shrink_armed, 1,
							 __ATOMIC_RELEASE);
				}
			} else if (rest_until[i] && spb__os_now_ms() >= rest_until[i]) {
				rest_until[i] = 0;
				if (shrink_on)
					__atomic_store_n(&spb__zones[i].shrink_armed, 1, __ATOMIC_RELEASE);
			}
		}
	}
	return NULL;
}

static void maybe_start(void)
{
	int st = SH_IDLE;
	if (!__atomic_compare_exchange_n(&sh_state, &st, SH_STARTING, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return;
	spb__engine_init();
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	bool ok = fd >= 0;
	if (ok) {
		__atomic_store_n(&evfd, fd, __ATOMIC_RELEASE);
		__atomic_store_n(&spb__shrink_hook, shrink_hook, __ATOMIC_RELEASE);
		ok = spb__thread_spawn(sh_main, NULL);
	}
	if (!ok) {
		__atomic_store_n(&spb__shrink_hook, NULL, __ATOMIC_RELEASE);
		if (fd >= 0)
			close(fd);
		__atomic_store_n(&evfd, -1, __ATOMIC_RELEASE);
	}
	/* A failed start stays off: a failed clone on every call would cost. */
	__atomic_store_n(&sh_state, ok ? SH_RUNNING : SH_OFF, __ATOMIC_RELEASE);
}

static void restart(void)
{
	if (__atomic_exchange_n(&spb__shrink_restart, NULL, __ATOMIC_ACQ_REL))
		maybe_start();
}

/* ---- the API ---- */

SPB_EXPORT int spb_shrinker_register(spb_shrink_scan_fn scan, spb_shrink_count_fn count,
				     void *ctx)
{
	if (!scan || !count) {
		errno = EINVAL;
		return -1;
	}
	spb__process_init();
	int id = -1;
	pthread_mutex_lock(&sh_lock);
	for (int i = 0; i < SHRINKERS_MAX; i++)
		if (!shrinkers[i].live) {
			/* live is read without the lock (round_at's hint): only
			 * ever written atomically. */
			shrinkers[i].scan = scan;
			shrinkers[i].count = count;
			shrinkers[i].ctx = ctx;
			__atomic_store_n(&shrinkers[i].live, true, __ATOMIC_RELEASE);
			nr_live++;
			id = i + 1;
			break;
		}
	pthread_mutex_unlock(&sh_lock);
	if (id < 0) {
		errno = ENOSPC;
		return -1;
	}
	maybe_start(); /* no lock of ours held: the thread's creation may allocate */
	if (__atomic_load_n(&sh_state, __ATOMIC_ACQUIRE) == SH_OFF) {
		spb_shrinker_unregister(id);
		errno = EAGAIN;
		return -1;
	}
	return id;
}

SPB_EXPORT int spb_shrinker_unregister(int id)
{
	int i = id - 1;
	pthread_mutex_lock(&sh_lock);
	if (id < 1 || id > SHRINKERS_MAX || !shrinkers[i].live) {
		pthread_mutex_unlock(&sh_lock);
		errno = EINVAL;
		return -1;
	}
	__atomic_store_n(&shrinkers[i].live, false, __ATOMIC_RELEASE);
	nr_live--;
	while (running == i && !pthread_equal(running_on, pthread_self()))
		pthread_cond_wait(&sh_cv, &sh_lock);
	pthread_mutex_unlock(&sh_lock);
	return 0;
}

/* ---- process integration (init.c) ---- */

void spb__shrink_init(void)
{
	if (spb__opt(OPT_PRESSURE) == 2)
		__atomic_store_n(&spb__shrink_restart, restart, __ATOMIC_RELEASE);
}

/* Only the registry's lock is taken around fork (held for a few stores,
 * never while waiting): a pass in flight is not waited for (a shrinker may
 * wait for a lock the forking thread holds); the child has none running. */
void spb__shrink_prefork(void)
{
	pthread_mutex_lock(&sh_lock);
}

void spb__shrink_postfork(bool child)
{
	if (!child) {
		pthread_mutex_unlock(&sh_lock);
		return;
	}
	pthread_mutex_init(&sh_lock, NULL);
	pthread_mutex_init(&pass_lock, NULL);
	pthread_cond_init(&sh_cv, NULL);
	running = -1;
	/* The thread is the parent's, so are the eventfd and the pressure
	 * triggers (the child's thread opens its own). */
	if (evfd >= 0)
		close(evfd);
	spb__pressure_close(&pr);
	__atomic_store_n(&evfd, -1, __ATOMIC_RELAXED);
	__atomic_store_n(&spb__shrink_hook, NULL, __ATOMIC_RELAXED);
	for (int i = 0; i < SPB_NR_ZONES_MAX; i++)
		pending[i] = 0;
	arm_all(false);
	int st = __atomic_load_n(&sh_state, __ATOMIC_RELAXED);
	__atomic_store_n(&sh_state, st == SH_OFF ? SH_OFF : SH_IDLE, __ATOMIC_RELAXED);
	if (st == SH_RUNNING)
		__atomic_store_n(&spb__shrink_restart, restart, __ATOMIC_RELEASE);
}
