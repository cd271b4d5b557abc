/*
 * zone.c — zones (one per NUMA node), their locks, the tainted reserve,
 * and the decay that gives free pageblocks and empty SPBs back to the OS.
 *
 * Pageblock traffic takes one zone's lock, never a global one. The decay
 * keeps two FIFOs per zone (free pageblocks that still hold memory, and
 * empty SPBs), so a pass costs O(items released) and knows exactly when
 * its next item is due: the background thread of a later layer sleeps
 * until then (spb_decay() returns the delay). System calls run with the
 * lock dropped; what is being released is tagged BUSY meanwhile. Such an
 * unlocked stretch is a "window"; fork waits until none is open
 * (spb__zone_prefork), so a child never inherits a half-done release,
 * reservation or unmap. A release the kernel refuses is counted and
 * tried again after the delay; the memory stays accounted meanwhile.
 */
#include <string.h>

#include "engine.h"

struct spb_zone spb__zones[SPB_NR_ZONES_MAX];
int spb__nr_zones;
void (*spb__evac_hook)(struct spb_zone *z);

static int engine_state; /* 0 none, 1 initialising, 2 ready */

static void zone_init(struct spb_zone *z, int node)
{
	memset(z, 0, sizeof *z);
	pthread_mutex_init(&z->lock, NULL);
	pthread_cond_init(&z->windows_cv, NULL);
	z->node = node;
	z->next_decay = UINT64_MAX;
	for (int c = 0; c < SPB_NR_CATS; c++)
		for (int f = 0; f < SPB_NR_FULLNESS; f++)
			spb__list_init(&z->lists[c][f]);
	spb__list_init(&z->dirty);
	spb__list_init(&z->sparse);
	spb__list_init(&z->dense);
	spb__list_init(&z->emptyq);
	spb__list_init(&z->dead);
	spb__list_init(&z->large_spare);
	spb__list_init(&z->large_retry);
}

void spb__engine_init(void)
{
	int st = __atomic_load_n(&engine_state, __ATOMIC_ACQUIRE);
	if (SPB_LIKELY(st == 2))
		return;
	st = 0;
	if (__atomic_compare_exchange_n(&engine_state, &st, 1, false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		spb__options_init();
		spb__arena_init();
		int n = spb__opt(OPT_NUMA) ? spb__topo_nr_nodes() : 1; /* sysfs */
		if (n > SPB_NR_ZONES_MAX)
			n = SPB_NR_ZONES_MAX;
		for (int i = 0; i < n; i++)
			zone_init(&spb__zones[i], i);
		spb__zones[0].counters[TOPO_SYSFS]++;
		__atomic_store_n(&spb__nr_zones, n, __ATOMIC_RELEASE);
		__atomic_store_n(&engine_state, 2, __ATOMIC_RELEASE);
		spb__statseg_init(); /* statseg.c: no allocation */
		return;
	}
	while (__atomic_load_n(&engine_state, __ATOMIC_ACQUIRE) != 2)
		__builtin_ia32_pause();
}

struct spb_zone *spb__zone_current(void)
{
	spb__engine_init();
	int nz = __atomic_load_n(&spb__nr_zones, __ATOMIC_ACQUIRE);
	if (SPB_LIKELY(nz <= 1))
		return &spb__zones[0];
	int node = spb__topo_current_node();
	if (node < 0 || node >= nz)
		node = 0;
	return &spb__zones[node];
}

/* hwloc's topology, once (spb__topo_discover): counted, and zones added
 * for nodes sysfs did not show (a synthetic or XML topology). Zones only
 * grow, each set up before the count that makes it visible is published,
 * under zone 0's lock: fork takes that lock first and then reads the
 * count (init.c), so it never sees a zone it did not lock. */
int spb__engine_topo_discover(void)
{
	spb__engine_init();
	int r = spb__topo_discover();
	if (r == 0)
		return r;
	struct spb_zone *z0 = &spb__zones[0];
	spb__zone_lock(z0);
	z0->counters[r > 0 ? TOPO_HWLOC : TOPO_HWLOC_FAIL]++;
	int n = spb__opt(OPT_NUMA) ? spb__topo_nr_nodes() : 1;
	if (n > SPB_NR_ZONES_MAX)
		n = SPB_NR_ZONES_MAX;
	if (n > spb__nr_zones) {
		int old = spb__nr_zones;
		for (int i = old; i < n; i++)
			zone_init(&spb__zones[i], i);
		z0->counters[TOPO_ZONE_ADD] += (uint64_t)(n - old);
		__atomic_store_n(&spb__nr_zones, n, __ATOMIC_SEQ_CST);
		/* The shrink thread's triggers: armed here too if it runs
		 * (it arms the zones once, when it starts). */
		spb__shrink_zones_added(old, n);
	}
	spb__zone_unlock(z0);
	return r;
}

void spb__zone_lock(struct spb_zone *z)
{
	pthread_mutex_lock(&z->lock);
}

void spb__zone_unlock(struct spb_zone *z)
{
	pthread_mutex_unlock(&z->lock);
}

void spb__zone_window_enter(struct spb_zone *z)
{
	z->nr_windows++;
	spb__zone_unlock(z);
}

void spb__zone_window_close_locked(struct spb_zone *z)
{
	if (--z->nr_windows == 0 && z->fork_pending)
		pthread_cond_broadcast(&z->windows_cv);
}

void spb__zone_window_exit(struct spb_zone *z)
{
	spb__zone_lock(z);
	spb__zone_window_close_locked(z);
}

/* fork: take the lock, and wait (lock released meanwhile) until no thread
 * is inside a window, so the child never inherits pageblocks tagged BUSY,
 * a reservation counted in flight, or an SPB or large mapping half
 * unmapped. fork_pending stops decay passes from opening new windows;
 * a reservation still may, but each is one mmap. The malloc fast path
 * never comes here; the zone lock is the only lock involved. */
void spb__zone_prefork(struct spb_zone *z)
{
	spb__zone_lock(z);
	/* Atomic: a test hook inside a window reads it without the lock. */
	__atomic_store_n(&z->fork_pending, true, __ATOMIC_RELEASE);
	while (z->nr_windows)
		pthread_cond_wait(&z->windows_cv, &z->lock);
}

void spb__zone_postfork(struct spb_zone *z, bool child)
{
	__atomic_store_n(&z->fork_pending, false, __ATOMIC_RELEASE);
	if (child) {
		/* Only the forking thread exists: no window can be open. */
		pthread_mutex_init(&z->lock, NULL);
		pthread_cond_init(&z->windows_cv, NULL);
		z->nr_windows = 0;
		z->movers = 0; /* a compaction pass of the parent is not here */
	} else {
		spb__zone_unlock(z);
	}
}

uint32_t spb__zone_reserve(const struct spb_zone *z)
{
	/* In the spirit of the kernel's spb_tainted_reserve: a floor, or
	 * 1/32 of the zone's pageblocks, whichever is larger. */
	uint32_t r = z->total_pb / 32;
	uint32_t min = (uint32_t)spb__opt(OPT_RESERVE_MIN);
	return r > min ? r : min;
}

static bool check_reserve_locked(struct spb_zone *z)
{
	bool below = z->nr_by_cat[SPB_CAT_TAINTED] > 0 &&
		     z->tainted_free_pb <= spb__zone_reserve(z);
	bool crossed = below && !z->below_reserve;
	z->below_reserve = below;
	if (crossed) {
		z->counters[SPB_RESERVE_CROSSED]++;
		z->evac_wanted = true;
	}
	if (below) /* seed 003: the walk sees tainted SPBs below their reserve */
		spb__shrink_trigger_locked(z, SHRINK_TRIGGER_DEMAND);
	return crossed;
}

void (*spb__shrink_hook)(struct spb_zone *z);

void spb__zone_unlock_signal(struct spb_zone *z)
{
	bool crossed = check_reserve_locked(z);
	bool shrink = z->shrink_want;
	z->shrink_want = 0;
	spb__zone_unlock(z);
	if (crossed && spb__evac_hook)
		spb__evac_hook(z);
	if (shrink) {
		void (*hook)(struct spb_zone *) = __atomic_load_n(&spb__shrink_hook, __ATOMIC_ACQUIRE);
		if (hook)
			hook(z);
	}
}

static uint64_t due_at(uint64_t since)
{
	return since + (uint64_t)spb__opt(OPT_DECAY_MS);
}

void spb__zone_pb_dirty_locked(struct spb_zone *z, struct spb_pageblock *pb)
{
	if (pb->dirty)
		return;
	pb->dirty = 1;
	spb__map_set_range(&pb->owner->dirty_pb_map, spb__pb_index(pb->owner, pb), 1);
	pb->freed_at = spb__os_now_ms();
	spb__list_add_tail(&z->dirty, &pb->link);
	if (due_at(pb->freed_at) < z->next_decay)
		__atomic_store_n(&z->next_decay, due_at(pb->freed_at), __ATOMIC_RELAXED);
}

void spb__zone_pb_undirty_locked(struct spb_zone *z, struct spb_pageblock *pb)
{
	(void)z;
	if (!pb->dirty)
		return;
	spb__list_del(&pb->link);
	spb__map_clear_range(&pb->owner->dirty_pb_map, spb__pb_index(pb->owner, pb), 1);
	pb->dirty = 0;
}

#define RELEASE_BATCH 32
/* How late a release may be before a slow path wakes the background
 * thread (it sleeps until the deadline it knew of). */
#define DECAY_KICK_LATE_MS 20

/* Take up to RELEASE_BATCH due pageblocks off the dirty FIFO and tag them
 * BUSY so nobody allocates them while the lock is dropped. */
static unsigned collect_due_locked(struct spb_zone *z, uint64_t now,
				   struct spb_pageblock **batch)
{
	unsigned n = 0;
	while (n < RELEASE_BATCH && !spb__list_empty(&z->dirty)) {
		struct spb_pageblock *pb =
			spb__container_of(z->dirty.next, struct spb_pageblock, link);
		if (due_at(pb->freed_at) > now)
			break;
		spb__zone_pb_undirty_locked(z, pb);
		struct spb *s = pb->owner;
		if (pb->rung == SPB_RUNG_HUGETLB_1G) {
			z->counters[PB_RELEASE_SKIP_1G]++;
			continue;
		}
		unsigned i = spb__pb_index(s, pb);
		pb->cls = SPB_PB_BUSY;
		spb__map_clear_range(&s->free_pb_map, i, 1);
		s->nr_free_pb--;
		s->nr_busy_pb++;
		spb__spb_update_locked(s);
		batch[n++] = pb;
	}
	return n;
}

/* A BUSY pageblock goes back to FREE with the rung the release left it;
 * if it still holds memory (the release was refused) it goes back on the
 * dirty FIFO, due again after the delay. */
static void unbusy_locked(struct spb_zone *z, struct spb_pageblock *pb, uint8_t rung)
{
	struct spb *s = pb->owner;
	unsigned i = spb__pb_index(s, pb);
	spb__pb_set_rung_locked(z, pb, rung);
	pb->cls = SPB_PB_FREE;
	pb->zero = rung == SPB_RUNG_NONE;
	if (rung == SPB_RUNG_NONE && pb->secret)
		spb__secret_released_locked(pb);
	spb__map_set_range(&s->free_pb_map, i, 1);
	s->nr_free_pb++;
	s->nr_busy_pb--;
	if (rung != SPB_RUNG_NONE)
		spb__zone_pb_dirty_locked(z, pb);
	spb__spb_update_locked(s);
}

/* One pass over what is due, RELEASE_BATCH pageblocks per system-call
 * round with the lock dropped. The whole pass is one window (fork waits
 * for it). A pageblock whose release the kernel refused stays BUSY, on a
 * list of the pass, until the pass ends: taken back now, it would be due
 * again at once and a pass with "now" in the far future (spb_trim) would
 * never end. */
static void release_due_locked(struct spb_zone *z, uint64_t now, unsigned max_rounds)
{
	struct spb_pageblock *batch[RELEASE_BATCH];
	uint8_t rungs[RELEASE_BATCH];
	struct spb_link failed;
	bool in_window = false;
	unsigned n;
	spb__list_init(&failed);
	while (max_rounds-- && !z->fork_pending && (n = collect_due_locked(z, now, batch)) > 0) {
		uint64_t local[SPB_NR_COUNTERS] = {0};
		if (!in_window)
			z->nr_windows++;
		in_window = true;
		spb__zone_unlock(z);
		for (unsigned k = 0; k < n; k++) {
			struct spb *s = batch[k]->owner;
			rungs[k] = spb__backing_release_pb(
				spb__pb_addr(s, spb__pb_index(s, batch[k])),
				batch[k]->rung, s->rung, batch[k]->secret, local);
		}
		spb__zone_lock(z);
		for (unsigned k = 0; k < n; k++) {
			if (rungs[k] == SPB_RUNG_NONE)
				unbusy_locked(z, batch[k], rungs[k]);
			else /* refused: link is free while BUSY */
				spb__list_add_tail(&failed, &batch[k]->link);
		}
		for (int c = 0; c < SPB_NR_COUNTERS; c++)
			z->counters[c] += local[c];
	}
	while (!spb__list_empty(&failed)) {
		struct spb_pageblock *pb =
			spb__container_of(failed.next, struct spb_pageblock, link);
		spb__list_del(&pb->link);
		unbusy_locked(z, pb, pb->rung);
	}
	if (in_window)
		spb__zone_window_close_locked(z);
}

static void unmap_due_locked(struct spb_zone *z, uint64_t now, unsigned max)
{
	while (max-- && !z->fork_pending && !z->movers && !spb__list_empty(&z->emptyq)) {
		struct spb *s = spb__container_of(z->emptyq.next, struct spb, empty_link);
		if (due_at(s->empty_since) > now || s->nr_busy_pb)
			break;
		/* Refused: it went back to the tail, due after the delay. */
		if (!spb__spb_unmap_locked(s))
			break;
	}
}

static void recompute_next_locked(struct spb_zone *z)
{
	uint64_t next = UINT64_MAX;
	if (!spb__list_empty(&z->dirty)) {
		struct spb_pageblock *pb =
			spb__container_of(z->dirty.next, struct spb_pageblock, link);
		next = due_at(pb->freed_at);
	}
	if (!spb__list_empty(&z->emptyq)) {
		struct spb *s = spb__container_of(z->emptyq.next, struct spb, empty_link);
		if (due_at(s->empty_since) < next)
			next = due_at(s->empty_since);
	}
	if (spb__subrelease_due(z) < next)
		next = spb__subrelease_due(z);
	if (!spb__list_empty(&z->large_retry)) {
		uint64_t l = spb__large_retry_due(z);
		if (l < next)
			next = l;
	}
	__atomic_store_n(&z->next_decay, next, __ATOMIC_RELAXED);
}

/* A pass over what is due: at most max_unmaps SPB unmaps, max_rounds
 * rounds of RELEASE_BATCH pageblock releases and as many subrelease
 * system calls (UINT_MAX: everything). */
static uint64_t decay_pass(struct spb_zone *z, uint64_t now, unsigned max_unmaps,
			   unsigned max_rounds)
{
	spb__zone_lock(z);
	/* The lists are walked whatever next_decay says (they stop at the
	 * first item not due, so this is cheap): next_decay was computed
	 * with the delay of its time, and the delay can change. */
	if (z->next_decay <= now)
		z->counters[DECAY_RUN]++;
	if (max_unmaps == 1) /* the bounded share of a malloc or free */
		z->counters[DECAY_INLINE]++;
	/* Whole SPBs first: unmapping one is cheaper than releasing its
	 * pageblocks one by one and then unmapping it. */
	unmap_due_locked(z, now, max_unmaps);
	release_due_locked(z, now, max_rounds);
	spb__subrelease_due_locked(z, now, max_rounds == UINT32_MAX ? UINT32_MAX
								  : max_rounds * RELEASE_BATCH);
	if (!spb__list_empty(&z->large_retry))
		spb__large_retry_locked(z, now);
	recompute_next_locked(z);
	uint64_t next = z->next_decay;
	spb__zone_unlock(z);
	return next == UINT64_MAX ? UINT64_MAX : (next > now ? next - now : 0);
}

uint64_t spb__zone_decay(struct spb_zone *z, uint64_t now)
{
	return decay_pass(z, now, UINT32_MAX, UINT32_MAX);
}

/* From malloc's and free's slow paths. The system calls of the decay
 * (madvise batches, 1 GiB munmaps) belong to the background thread: it
 * sleeps until the earliest release is due, so here it is only woken when
 * a release is overdue (it slept on an older deadline). Without it
 * (SPBMALLOC_BG=0, or a forked child before its thread restarts) the
 * caller does a bounded share: one SPB unmap, one batch of releases and
 * as many subrelease calls. */
void spb__zone_decay_tick(struct spb_zone *z)
{
	uint64_t next = __atomic_load_n(&z->next_decay, __ATOMIC_RELAXED);
	if (next == UINT64_MAX)
		return;
	uint64_t now = spb__os_now_ms();
	if (now < next)
		return;
	if (spb__bg_running()) {
		if (now >= next + DECAY_KICK_LATE_MS)
			spb__bg_kick();
		return;
	}
	decay_pass(z, now, 1, 1);
}
