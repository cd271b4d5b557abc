/*
 * heap.c — per-thread heaps: creation on a thread's first malloc, the
 * refill slow path (current span -> other spans of the bin -> an abandoned
 * span of the same zone and class -> a new span), full/available span
 * lists, cross-thread notifications, thread exit (spans handed back or
 * abandoned), the shared late heaps of threads that allocate after their
 * heaps were retired, the MALLOC_* counters, and the fork hooks. Heap descriptors are
 * pooled and never unmapped, so a late reader never touches unmapped
 * memory.
 *
 * The full/notify protocol. A span's `full` moves only by compare-and-swap:
 *   AVAIL -> FULL       the owner, finding no free block (mark_full);
 *   FULL -> AVAIL       the owner, taking it back (mark_avail, thread exit);
 *   FULL -> NOTIFIED    a thread that flagged a block xfreed (bitmap and
 *                       xsum, free.c) and then saw it FULL (spb__heap_notify); only that
 *                       thread then reads s->heap and pushes the span on
 *                       that heap's xnotify list;
 *   NOTIFIED -> AVAIL   the owner, after taking the span off its xnotify
 *                       list (drain_notify).
 * Invariants: (1) s->heap changes only while the span is AVAIL (adopt,
 * abandon, release, span_new), so a notifier that won FULL -> NOTIFIED
 * reads the heap that will drain it; (2) a NOTIFIED span is never
 * released or abandoned: thread exit waits until each of its NOTIFIED
 * spans came through its list (the notifier is a few instructions from
 * its push); so (3) a retired heap has an empty xnotify list and no span
 * can be NOTIFIED for it: a heap reused from the pool never receives a
 * stale push. A late notifier whose span was released and reused by
 * another heap can flag the new owner's FULL span: a spurious notification
 * the owner drains like any other (span_ready looks again). fork: the
 * child's thread takes over spans whose notifier did not come with it
 * (heap_fixup_child). tests/model checks these invariants exhaustively.
 */
#include <sched.h>
#include <string.h>

#include "heap.h"

static struct spb_span empty_span;
struct spb_heap spb__empty_heap = {
	.bins = {[0 ... SPB_NR_BINS - 1] = &empty_span},
};
SPB_TLS struct spb_heap *spb__tls_heap = &spb__empty_heap;
SPB_TLS struct spb_heap *spb__tls_primary; /* the thread's UNMOVABLE heap */
SPB_TLS bool spb__thread_gone;
uintptr_t spb__link_key;

static pthread_mutex_t heaps_lock = PTHREAD_MUTEX_INITIALIZER;
static struct spb_link heaps_live = {&heaps_live, &heaps_live};
static struct spb_link heaps_pool = {&heaps_pool, &heaps_pool};
static uint64_t retired_counters[SPB_NR_COUNTERS];

/* Abandoned spans, by zone, lifetime class and bin: a span is adopted only
 * by a heap of its own zone and class (the no-fallback rule holds for
 * blocks as for pageblocks). List heads are set up on a zone's first use,
 * which sets the zone's bit in aband_ready: a flag inside each set would
 * fault in a page of each of the 64 sets (256 KiB of RSS) when the sweep
 * and fork look at them all. */
struct abandoned_set {
	uint32_t n[SPB_NR_CLASSES][SPB_NR_BINS]; /* read unlocked as a hint */
	struct spb_link l[SPB_NR_CLASSES][SPB_NR_BINS];
};
static pthread_mutex_t aband_lock = PTHREAD_MUTEX_INITIALIZER;
static struct abandoned_set abandoned[SPB_NR_ZONES_MAX];
static uint64_t aband_ready; /* bit z: abandoned[z] is set up (under aband_lock) */
_Static_assert(SPB_NR_ZONES_MAX <= 64, "aband_ready has a bit per zone");

/* The late heaps (one per class) and their lock. */
static pthread_mutex_t late_lock = PTHREAD_MUTEX_INITIALIZER;
static struct spb_heap *late_heaps[SPB_NR_CLASSES];
static SPB_TLS bool in_late;

static void heap_init(struct spb_heap *h, unsigned cls)
{
	memset(h->by_class, 0, sizeof h->by_class);
	memset(h->counters, 0, sizeof h->counters);
	for (unsigned b = 0; b < SPB_NR_BINS; b++) {
		h->bins[b] = &empty_span;
		spb__list_init(&h->avail[b]);
		spb__list_init(&h->full[b]);
	}
	h->zone = spb__zone_current();
	h->cls = (uint8_t)cls;
	/* Invariant (3): no push can reach a pooled heap's xnotify. */
	__atomic_store_n(&h->xnotify, NULL, __ATOMIC_RELAXED);
	memset(&h->rc, 0, sizeof h->rc); /* emptied when its thread exited */
	spb__list_init(&h->trimq);
	h->trim_peak = 0;
	h->trim_tick = 0;
}

static struct spb_heap *heap_new(unsigned cls)
{
	struct spb_heap *h = NULL;
	pthread_mutex_lock(&heaps_lock);
	if (!spb__list_empty(&heaps_pool)) {
		h = spb__container_of(heaps_pool.next, struct spb_heap, all_link);
		spb__list_del(&h->all_link);
	}
	pthread_mutex_unlock(&heaps_lock);
	if (!h)
		h = spb__os_meta_alloc(sizeof *h);
	if (!h)
		return NULL;
	heap_init(h, cls);
	pthread_mutex_lock(&heaps_lock);
	spb__list_add_tail(&heaps_live, &h->all_link);
	pthread_mutex_unlock(&heaps_lock);
	return h;
}

struct spb_heap *spb__heap_get(void)
{
	struct spb_heap *h = spb__tls_heap;
	if (SPB_LIKELY(h != &spb__empty_heap))
		return h;
	spb__process_init();
	h = spb__tls_heap; /* init may have allocated, and made a heap */
	if (h != &spb__empty_heap)
		return h;
	h = heap_new(SPB_UNMOVABLE);
	if (!h)
		return NULL;
	h->by_class[SPB_UNMOVABLE] = h;
	h->counters[MALLOC_THREAD_INIT]++;
	spb__tls_primary = h;
	spb__tls_heap = h;
	pthread_setspecific(spb__thread_key, h);
	return h;
}

struct spb_heap *spb__heap_for_class(unsigned cls)
{
	if (!spb__tls_primary && !spb__heap_get())
		return NULL;
	struct spb_heap *p = spb__tls_primary;
	if (!p->by_class[cls])
		p->by_class[cls] = heap_new(cls);
	return p->by_class[cls];
}

int spb__heap_set_default(unsigned cls)
{
	struct spb_heap *h = spb__heap_for_class(cls);
	if (!h)
		return -1;
	spb__tls_heap = h;
	return 0;
}

/* A span's full state moves AVAIL -> FULL (owner), FULL -> NOTIFIED (a
 * cross-thread freer, which then puts it on the owner's xnotify list) and
 * NOTIFIED -> AVAIL (the owner's drain, which takes it off that list).
 * Every owner transition is a compare-and-swap from the state it expects,
 * so NOTIFIED is never overwritten: a span on an xnotify list is never
 * pushed a second time (which would make the list a cycle). */
static bool full_cas(struct spb_span *s, uint8_t from, uint8_t to)
{
	return __atomic_compare_exchange_n(&s->full, &from, to, false, __ATOMIC_SEQ_CST,
					   __ATOMIC_SEQ_CST);
}

static void move_to(struct spb_link *list, struct spb_span *s)
{
	spb__list_del(&s->link);
	spb__list_add_tail(list, &s->link);
}

static void mark_full(struct spb_heap *h, struct spb_span *s)
{
	move_to(&h->full[s->bin], s);
	full_cas(s, SPB_SPAN_AVAIL, SPB_SPAN_FULL);
}

static void mark_avail(struct spb_heap *h, struct spb_span *s)
{
	full_cas(s, SPB_SPAN_FULL, SPB_SPAN_AVAIL);
	move_to(&h->avail[s->bin], s);
}

/* Spans that got a cross-thread free while their owner saw them full:
 * each is AVAIL again, and (relink) back on the available list. */
static void drain_notify(struct spb_heap *h, bool relink)
{
	struct spb_span *s = __atomic_exchange_n(&h->xnotify, NULL, __ATOMIC_ACQUIRE);
	while (s) {
		struct spb_span *next = s->notify_next;
		if (__atomic_load_n(&s->heap, __ATOMIC_RELAXED) != h ||
		    !full_cas(s, SPB_SPAN_NOTIFIED, SPB_SPAN_AVAIL))
			spb__fatal("internal error: cross-thread notification protocol", s);
		if (relink)
			move_to(&h->avail[s->bin], s);
		s = next;
	}
}

/* Owner: make s AVAIL (it may be FULL or NOTIFIED) so that no notifier
 * can flag it any more: the step before abandoning or releasing it. A
 * NOTIFIED span is on its way to our xnotify list: drain until it came. */
static void make_avail_for_exit(struct spb_heap *h, struct spb_span *s)
{
	for (;;) {
		uint8_t st = __atomic_load_n(&s->full, __ATOMIC_SEQ_CST);
		if (st == SPB_SPAN_AVAIL ||
		    (st == SPB_SPAN_FULL && full_cas(s, SPB_SPAN_FULL, SPB_SPAN_AVAIL)))
			return;
		if (st == SPB_SPAN_NOTIFIED) {
			drain_notify(h, false);
			if (__atomic_load_n(&s->full, __ATOMIC_SEQ_CST) == SPB_SPAN_NOTIFIED)
				sched_yield();
		}
	}
}

/* Span trim. A free by the owner that leaves a span with at most trim_at
 * blocks used (half its capacity, then half of what it had at its last
 * look) queues it; the owner looks at it on a refill after the decay delay (a
 * refill is its slow path, and only it may rewrite the span's free list)
 * and gives back the pages no live block touches when they are at least
 * SPBMALLOC_SPAN_TRIM_PCT of the span (span.c). A heap that shrank keeps
 * its address space per size class but not the memory: new sizes are
 * served from new spans while the old spans' holes cost nothing. The
 * span's own size class takes the pages back when it has no other free
 * block (span_ready). At most TRIM_BATCH spans every TRIM_EVERY-th refill. */
#define TRIM_BATCH 32
#define TRIM_EVERY 8

static void trim_unqueue(struct spb_span *s)
{
	if (s->trim_q) {
		spb__list_del(&s->trim_link);
		s->trim_q = 0;
	}
}

static void trim_queue(struct spb_heap *h, struct spb_span *s)
{
	s->trim_at = 0; /* until it is looked at */
	if (s->trim_q)
		return;
	s->trim_q = 1;
	s->trim_due = spb__os_now_ms() + (uint64_t)spb__opt(OPT_DECAY_MS);
	spb__list_add_tail(&h->trimq, &s->trim_link);
	h->counters[MALLOC_SPAN_TRIM_QUEUE]++;
}

/* Bytes out of the heap: allocated minus freed through it (a block
 * freed by another thread counts on that thread's heap: a hint). */
static uint64_t heap_live(const struct spb_heap *h)
{
	uint64_t a = h->counters[MALLOC_ALLOC_BYTES], f = h->counters[MALLOC_FREE_BYTES];
	return a > f ? a - f : 0;
}

/* The queued spans due by now (all: every one), at most max. The heap
 * "shrank" when it holds at most half the most it held when it took a
 * new span. */
static void trim_due(struct spb_heap *h, bool all, unsigned max)
{
	uint64_t now = all ? UINT64_MAX : spb__os_now_ms();
	unsigned pct = (unsigned)spb__opt(OPT_SPAN_TRIM_PCT);
	bool shrunk = heap_live(h) * 2 <= h->trim_peak;
	while (max-- && !spb__list_empty(&h->trimq)) {
		struct spb_span *s = spb__container_of(h->trimq.next, struct spb_span, trim_link);
		if (s->trim_due > now)
			break;
		trim_unqueue(s);
		if (s == h->bins[s->bin] || !spb__span_trim(s, pct, shrunk, h->counters))
			h->counters[MALLOC_SPAN_TRIM_SKIP]++;
		/* Looked at again when half of what is left was freed. */
		s->trim_at = (uint16_t)(s->used / 2);
	}
}

/* Make s usable for allocation, or move it to the full list. */
static inline __attribute__((always_inline)) bool span_ready(struct spb_heap *h, struct spb_span *s)
{
	spb__span_collect(s);
	if (s->free || spb__span_extend(s) || (s->rel && spb__span_untrim(s, h->counters)))
		return true;
	mark_full(h, s);
	/* A cross-thread free may have landed before the flag was visible
	 * (its pusher then did not notify): look once more. */
	if (spb__span_collect(s)) {
		mark_avail(h, s);
		return true;
	}
	return false;
}

static struct abandoned_set *aband_set(unsigned zone_idx)
{
	struct abandoned_set *a = &abandoned[zone_idx];
	if (!(aband_ready & (1ull << zone_idx))) { /* under aband_lock */
		for (unsigned c = 0; c < SPB_NR_CLASSES; c++)
			for (unsigned b = 0; b < SPB_NR_BINS; b++)
				spb__list_init(&a->l[c][b]);
		aband_ready |= 1ull << zone_idx;
	}
	return a;
}

static struct spb_span *adopt(struct spb_heap *h, unsigned bin)
{
	struct spb_span *s = NULL;
	unsigned zi = (unsigned)(h->zone - spb__zones);
	struct abandoned_set *a = &abandoned[zi];
	if (!__atomic_load_n(&a->n[h->cls][bin], __ATOMIC_RELAXED))
		return NULL;
	pthread_mutex_lock(&aband_lock);
	a = aband_set(zi);
	struct spb_link *hd = &a->l[h->cls][bin];
	if (!spb__list_empty(hd)) {
		s = spb__container_of(hd->next, struct spb_span, link);
		spb__list_del(&s->link);
		/* Atomic (under the lock): adopt() reads it unlocked as a hint,
		 * and a plain write racing with that read is a data race
		 * (ThreadSanitizer, tests/api/test_threads). */
		__atomic_fetch_sub(&a->n[h->cls][bin], 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&aband_lock);
	if (!s)
		return NULL;
	/* Abandoned spans are AVAIL (abandon_span) and stay so: nobody owns
	 * them to flag them full. Invariant (1): the heap changes while AVAIL. */
	__atomic_store_n(&s->heap, h, __ATOMIC_RELEASE);
	spb__list_add_tail(&h->avail[bin], &s->link);
	h->counters[MALLOC_SPAN_ADOPT]++;
	return s;
}

/* Of the first REFILL_SCAN spans on the bin's available list, the one
 * lowest in memory (jemalloc's slab order): allocation gathers in the
 * low spans, so the others drain and go back, and long-running heaps do
 * not spread over ever more pageblocks. */
#define REFILL_SCAN 16
static struct spb_span *lowest_avail(struct spb_heap *h, unsigned bin)
{
	struct spb_link *hd = &h->avail[bin];
	struct spb_span *best = NULL;
	unsigned n = 0;
	for (struct spb_link *l = hd->next; l != hd && n < REFILL_SCAN; l = l->next, n++) {
		struct spb_span *s = spb__container_of(l, struct spb_span, link);
		if (!best || s->start < best->start)
			best = s;
	}
	return best;
}

/* MOVABLE heaps (handle objects) keep only their current span per bin: a
 * span they cannot allocate from any more is abandoned at once, so every
 * other MOVABLE span is ownerless and the compactor may empty it and the
 * sweep release it, whoever allocated from it. Nothing is lost by it: a
 * MOVABLE heap is never a thread's default, so even its owner's frees are
 * cross-thread frees. Refill adopts the fullest of the first ADOPT_SCAN
 * abandoned spans with room (fullest first: allocation fills the dense
 * spans, the sparse ones drain); a thread inside a compaction pass takes
 * only spans more than half live, then a fresh span, and only when there
 * is no room for one a sparse span the pass is not emptying (flagged
 * compact_src): its targets are never its sources. Spans found empty on the way go back to
 * the engine; full ones go to the tail, so the head keeps spans with room
 * (the sweep moves spans that got room back to the head). */
#define ADOPT_SCAN 32
SPB_TLS bool spb__compacting;
static void abandon_span(struct spb_span *s);

/* Release a list of empty spans (linked by desc_next); returns how many. */
static unsigned release_list(struct spb_span *empty)
{
	unsigned n = 0;
	for (; empty; n++) {
		struct spb_span *next = empty->desc_next;
		spb__span_release(empty);
		empty = next;
	}
	return n;
}

static struct spb_span *adopt_movable(struct spb_heap *h, unsigned bin, bool sparse_ok)
{
	unsigned zi = (unsigned)(h->zone - spb__zones);
	struct abandoned_set *a = &abandoned[zi];
	if (!__atomic_load_n(&a->n[h->cls][bin], __ATOMIC_RELAXED))
		return NULL;
	struct spb_span *best = NULL, *empty = NULL, *full = NULL;
	pthread_mutex_lock(&aband_lock);
	a = aband_set(zi);
	struct spb_link *hd = &a->l[h->cls][bin];
	unsigned n = 0;
	for (struct spb_link *l = hd->next, *nx; l != hd && n < ADOPT_SCAN; l = nx, n++) {
		nx = l->next;
		struct spb_span *s = spb__container_of(l, struct spb_span, link);
		spb__span_collect(s); /* we own it while the lock is held */
		if (s->used == 0 || s->used == s->capacity) {
			spb__list_del(&s->link);
			if (s->used == 0) {
				__atomic_fetch_sub(&a->n[h->cls][bin], 1, __ATOMIC_RELAXED);
				s->desc_next = empty;
				empty = s;
			} else {
				s->desc_next = full;
				full = s;
			}
			continue;
		}
		/* A pass never moves objects into its own sources: its
		 * targets are spans more than half live (which it never
		 * empties), then fresh spans, and only when there is no room
		 * for one (a heap where every span is sparse, under a cap) the
		 * fullest sparse spans it does not empty (refill_movable). */
		if (spb__addr_evac((void *)s->start) ||
		    (spb__compacting && (__atomic_load_n(&s->compact_src, __ATOMIC_RELAXED) ||
					 (!sparse_ok && s->used * 2 <= s->capacity))))
			continue;
		if (!best || s->used > best->used)
			best = s;
	}
	for (struct spb_span *f = full; f; f = f->desc_next)
		spb__list_add_tail(hd, &f->link);
	if (best) {
		spb__list_del(&best->link);
		__atomic_fetch_sub(&a->n[h->cls][bin], 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&aband_lock);
	h->counters[MALLOC_SPAN_FREE] += release_list(empty);
	if (!best)
		return NULL;
	__atomic_store_n(&best->heap, h, __ATOMIC_RELEASE); /* AVAIL: invariant (1) */
	h->counters[MALLOC_SPAN_ADOPT]++;
	return best;
}

/* An adopted span with room to allocate from, or NULL. */
static struct spb_span *adopt_ready(struct spb_heap *h, unsigned bin, bool sparse_ok)
{
	struct spb_span *s = adopt_movable(h, bin, sparse_ok);
	if (!s)
		return NULL;
	spb__span_collect(s);
	if (s->free || spb__span_extend(s))
		return s;
	/* It had room under the lock and only frees came since: cannot
	 * happen, but never loop on it. */
	abandon_span(s);
	return NULL;
}

static struct spb_span *refill_movable(struct spb_heap *h, unsigned bin)
{
	struct spb_span *s = __atomic_load_n(&h->bins[bin], __ATOMIC_RELAXED);
	if (s != &empty_span) {
		spb__span_collect(s);
		if (s->free || spb__span_extend(s))
			return s;
		/* Full: ownerless from now on (never flagged FULL, so AVAIL and
		 * on no notification list), unless the compactor took it
		 * already (it abandons it after a grace period). */
		if (__atomic_compare_exchange_n(&h->bins[bin], &s, &empty_span, false,
						__ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
			h->counters[MALLOC_SPAN_ABANDON]++;
			abandon_span(s);
		}
	}
	if ((s = adopt_ready(h, bin, false)) != NULL)
		goto found;
	s = spb__span_new(h, bin);
	if (!s && spb__compacting && (s = adopt_ready(h, bin, true)) != NULL)
		goto found;
	if (!s)
		return NULL;
	spb__span_extend(s);
found:
	/* On no list of the heap: its current spans are all it has. */
	__atomic_store_n(&h->bins[bin], s, __ATOMIC_RELAXED);
	return s;
}

/* The compactor takes current spans of MOVABLE heaps that it wants (in a
 * pageblock it empties): a compare-and-swap of the heap's bin to the
 * empty span, under heaps_lock (heaps stay live meanwhile). The owner
 * allocates inside a read section (spb_halloc), so after a grace period
 * no owner is still popping from a span taken: then it is abandoned like
 * any full span (spb__heap_steal_end). The compactor's own heap is left. */
unsigned spb__heap_steal_begin(bool (*want)(const struct spb_span *), struct spb_span **out,
			       unsigned max)
{
	unsigned n = 0;
	struct spb_heap *self = spb__tls_primary ? spb__tls_primary->by_class[SPB_MOVABLE] : NULL;
	pthread_mutex_lock(&heaps_lock);
	for (struct spb_link *l = heaps_live.next; l != &heaps_live && n < max; l = l->next) {
		struct spb_heap *h = spb__container_of(l, struct spb_heap, all_link);
		if (h->cls != SPB_MOVABLE || h == self)
			continue;
		for (unsigned b = 0; b < SPB_NR_BINS && n < max; b++) {
			struct spb_span *s = __atomic_load_n(&h->bins[b], __ATOMIC_RELAXED);
			if (s == &empty_span || !want(s))
				continue;
			if (__atomic_compare_exchange_n(&h->bins[b], &s, &empty_span, false,
							__ATOMIC_RELAXED, __ATOMIC_RELAXED))
				out[n++] = s;
		}
	}
	pthread_mutex_unlock(&heaps_lock);
	return n;
}

/* A span its heap lets go of (AVAIL): collected, then back to the engine
 * when empty, else abandoned. */
static void let_go(struct spb_heap *h, struct spb_span *s)
{
	trim_unqueue(s);
	spb__span_collect(s);
	if (s->used == 0) {
		h->counters[MALLOC_SPAN_FREE]++;
		spb__span_release(s);
	} else {
		h->counters[MALLOC_SPAN_ABANDON]++;
		abandon_span(s);
	}
}

/* A MOVABLE heap's spans are its current ones (refill_movable): each let
 * go, unless the compactor took it already. */
static void movable_let_go(struct spb_heap *h)
{
	for (unsigned b = 0; b < SPB_NR_BINS; b++) {
		struct spb_span *s = __atomic_exchange_n(&h->bins[b], &empty_span, __ATOMIC_RELAXED);
		if (s != &empty_span)
			let_go(h, s);
	}
}

/* The calling thread's MOVABLE heap lets its current spans go (a
 * compaction pass starts: its pageblocks may be emptied too). */
void spb__heap_drop_movable(void)
{
	struct spb_heap *h = spb__tls_primary ? spb__tls_primary->by_class[SPB_MOVABLE] : NULL;
	if (h)
		movable_let_go(h);
}

void spb__heap_steal_end(struct spb_span **v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		abandon_span(v[i]);
}

uint32_t spb__reclaim_epoch;

/* A RECLAIMABLE heap after a shrink pass: every span's cross-thread frees
 * collected, the spans that emptied given back (not the bins' current
 * ones). O(spans of the heap), once per pass. */
static void reclaim_sweep(struct spb_heap *h)
{
	h->reclaim_seen = __atomic_load_n(&spb__reclaim_epoch, __ATOMIC_ACQUIRE);
	drain_notify(h, true);
	for (unsigned bin = 0; bin < SPB_NR_BINS; bin++) {
		struct spb_link *hd = &h->avail[bin];
		for (struct spb_link *l = hd->next, *next; l != hd; l = next) {
			next = l->next;
			struct spb_span *s = spb__container_of(l, struct spb_span, link);
			if (s != h->bins[bin] && spb__span_collect(s) && !s->used)
				spb__heap_span_empty(h, s);
		}
	}
}

struct spb_span *spb__heap_refill(struct spb_heap *h, unsigned bin)
{
	spb__heap_follow_node(h);
	if (h->cls == SPB_MOVABLE)
		return refill_movable(h, bin);
	/* After a shrink pass: the thread's RECLAIMABLE heap, whichever of
	 * its heaps is refilling (plain malloc refills far more often). */
	struct spb_heap *rh = spb__tls_primary ? spb__tls_primary->by_class[SPB_RECLAIMABLE] : NULL;
	if (rh &&
	    SPB_UNLIKELY(rh->reclaim_seen != __atomic_load_n(&spb__reclaim_epoch, __ATOMIC_RELAXED)))
		reclaim_sweep(rh);
	drain_notify(h, true);
	/* Every TRIM_EVERY-th refill (a clock read each time would cost a
	 * heap that refills often). */
	if (SPB_UNLIKELY(!spb__list_empty(&h->trimq)) && !(++h->trim_tick & (TRIM_EVERY - 1)))
		trim_due(h, false, TRIM_BATCH);
	struct spb_span *s = h->bins[bin];
	if (s != &empty_span && span_ready(h, s))
		return s;
	while ((s = lowest_avail(h, bin)) != NULL)
		if (span_ready(h, s))
			goto found;
	while ((s = adopt(h, bin)) != NULL)
		if (span_ready(h, s))
			goto found;
	/* The heap grows: the most it held, for the trim (trim_due). */
	uint64_t live = heap_live(h);
	if (live > h->trim_peak)
		h->trim_peak = live;
	s = spb__span_new(h, bin);
	if (!s)
		return NULL;
	spb__list_add_tail(&h->avail[bin], &s->link);
	spb__span_extend(s);
found:
	h->bins[bin] = s;
	return s;
}

void spb__heap_span_empty(struct spb_heap *h, struct spb_span *s)
{
	if (SPB_UNLIKELY(s->used != 0 && s->used <= s->trim_at))
		trim_queue(h, s); /* trim_at is 0 until it is looked at */
	uint8_t full = __atomic_load_n(&s->full, __ATOMIC_ACQUIRE);
	if (full == SPB_SPAN_FULL)
		mark_avail(h, s);
	/* Keep the bin's current span (no thrash at a size used in bursts);
	 * a span on a notification list stays until drained. */
	if (s->used || s == h->bins[s->bin] ||
	    __atomic_load_n(&s->full, __ATOMIC_ACQUIRE) == SPB_SPAN_NOTIFIED)
		return;
	spb__list_del(&s->link);
	trim_unqueue(s);
	h->counters[MALLOC_SPAN_FREE]++;
	spb__span_release(s);
}

void spb__heap_notify(struct spb_span *s)
{
	uint8_t expect = SPB_SPAN_FULL;
	if (!__atomic_compare_exchange_n(&s->full, &expect, SPB_SPAN_NOTIFIED, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		return;
	struct spb_heap *h = __atomic_load_n(&s->heap, __ATOMIC_ACQUIRE);
	if (!h)
		return;
	struct spb_span *head = __atomic_load_n(&h->xnotify, __ATOMIC_RELAXED);
	do
		s->notify_next = head;
	while (!__atomic_compare_exchange_n(&h->xnotify, &head, s, true,
					    __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}

static void abandon_span(struct spb_span *s)
{
	/* AVAIL already (make_avail_for_exit): invariant (1). */
	__atomic_store_n(&s->heap, NULL, __ATOMIC_RELEASE);
	pthread_mutex_lock(&aband_lock);
	struct abandoned_set *a = aband_set(s->zone_idx);
	spb__list_add_tail(&a->l[s->cls][s->bin], &s->link);
	__atomic_fetch_add(&a->n[s->cls][s->bin], 1, __ATOMIC_RELAXED); /* see adopt() */
	pthread_mutex_unlock(&aband_lock);
}

/* Hand every span of h back: empty ones to the engine, the rest to the
 * abandoned lists. */
static void heap_release_spans(struct spb_heap *h)
{
	drain_notify(h, true);
	if (h->cls == SPB_MOVABLE)
		movable_let_go(h);
	for (unsigned b = 0; b < SPB_NR_BINS; b++) {
		struct spb_link *lists[2] = {&h->avail[b], &h->full[b]};
		for (int k = 0; k < 2; k++)
			while (!spb__list_empty(lists[k])) {
				struct spb_span *s =
					spb__container_of(lists[k]->next, struct spb_span, link);
				spb__list_del(&s->link);
				make_avail_for_exit(h, s);
				let_go(h, s);
			}
		__atomic_store_n(&h->bins[b], &empty_span, __ATOMIC_RELAXED);
	}
	/* Invariant (3): nothing is NOTIFIED for h any more. */
	drain_notify(h, false);
}

static void heap_retire_locked(struct spb_heap *h)
{
	for (int c = 0; c < SPB_NR_COUNTERS; c++)
		spb__heap_count((enum spb_counter)c, h->counters[c]);
	spb__list_del(&h->all_link);
	spb__list_add_tail(&heaps_pool, &h->all_link);
}

void spb__heap_thread_exit(struct spb_heap *primary)
{
	if (!primary || primary == &spb__empty_heap)
		return;
	primary->counters[MALLOC_THREAD_EXIT]++;
	spb__handle_thread_exit();
	spb__tls_heap = &spb__empty_heap;
	spb__tls_primary = NULL;
	/* From now on this thread's mallocs go to the late heaps and its
	 * frees of other threads' blocks straight to their spans: a heap made
	 * now would never be retired (glibc frees its per-thread state after
	 * the key destructors ran). */
	spb__thread_gone = true;
	/* Its cached runs back (no put reaches it now: it needs tls_primary). */
	void *runs[SPB_RC_BINS * SPB_RC_DEPTH];
	spb__runcache_release(runs, spb__runcache_take(&primary->rc, true, runs,
						       SPB_RC_BINS * SPB_RC_DEPTH));
	/* Copy first: once the primary (class UNMOVABLE, before RECLAIMABLE)
	 * is retired it is back in the pool, and a thread starting now may
	 * reuse it and clear by_class while this loop still reads it; the
	 * thread's reclaimable heap then leaked with its spans. */
	struct spb_heap *by_class[SPB_NR_CLASSES];
	memcpy(by_class, primary->by_class, sizeof by_class);
	for (unsigned c = 0; c < SPB_NR_CLASSES; c++) {
		struct spb_heap *h = by_class[c];
		if (!h || (h == primary && c != SPB_UNMOVABLE))
			continue;
		heap_release_spans(h);
		pthread_mutex_lock(&heaps_lock);
		heap_retire_locked(h);
		pthread_mutex_unlock(&heaps_lock);
	}
}

/* Sweep: collect the xfrees of abandoned spans and release the empty
 * ones, outside the lock (the release takes the zone lock). */
unsigned spb__heap_sweep_abandoned(void)
{
	struct spb_span *empty = NULL;
	pthread_mutex_lock(&aband_lock);
	for (unsigned z = 0; z < SPB_NR_ZONES_MAX; z++) {
		struct abandoned_set *a = &abandoned[z];
		if (!(aband_ready & (1ull << z)))
			continue;
		for (unsigned c = 0; c < SPB_NR_CLASSES; c++)
			for (unsigned b = 0; b < SPB_NR_BINS; b++) {
				struct spb_link *hd = &a->l[c][b];
				for (struct spb_link *l = hd->next, *nx; l != hd; l = nx) {
					nx = l->next;
					struct spb_span *s =
						spb__container_of(l, struct spb_span, link);
					spb__span_collect(s);
					if (s->used == 0) {
						spb__list_del(&s->link);
						__atomic_fetch_sub(&a->n[c][b], 1, __ATOMIC_RELAXED);
						s->desc_next = empty;
						empty = s;
					} else if (c == SPB_MOVABLE && s->used < s->capacity) {
						/* Room again: to the head, where
						 * adopt_movable looks. */
						spb__list_del(&s->link);
						spb__list_add_head(hd, &s->link);
					}
				}
			}
	}
	pthread_mutex_unlock(&aband_lock);
	return release_list(empty);
}

void spb__heap_count(enum spb_counter c, uint64_t n)
{
	if (n)
		__atomic_fetch_add(&retired_counters[c], n, __ATOMIC_RELAXED);
}

unsigned spb__heap_steal_runs(bool all)
{
	void *v[64];
	unsigned n, total = 0;
	do {
		n = 0;
		pthread_mutex_lock(&heaps_lock);
		for (struct spb_link *l = heaps_live.next; l != &heaps_live && n < 64; l = l->next)
			n += spb__runcache_take(&spb__container_of(l, struct spb_heap, all_link)->rc,
						all, v + n, 64 - n);
		pthread_mutex_unlock(&heaps_lock);
		/* The zone lock outside heaps_lock. */
		spb__runcache_release(v, n);
		total += n;
		/* Idle runs are looked at once a round (a second look would
		 * find every run just seen idle); all of them until none. */
	} while (all && n == 64);
	return total;
}

void spb__heap_reclaim(bool all)
{
	struct spb_heap *p = spb__tls_primary;
	/* spb_trim: the calling thread's queued spans, due or not (only
	 * their owner may trim them). */
	if (p && all)
		for (unsigned c = SPB_UNMOVABLE; c <= SPB_RECLAIMABLE; c++)
			if (p->by_class[c])
				trim_due(p->by_class[c], true, UINT32_MAX);
	spb__heap_steal_runs(all);
	spb__heap_sweep_abandoned();
}

struct spb_heap *spb__late_heap_enter(unsigned cls)
{
	if (in_late)
		return NULL;
	in_late = true;
	pthread_mutex_lock(&late_lock);
	if (!late_heaps[cls])
		late_heaps[cls] = heap_new(cls);
	if (!late_heaps[cls]) {
		pthread_mutex_unlock(&late_lock);
		in_late = false;
	}
	return late_heaps[cls];
}

void spb__late_heap_leave(void)
{
	pthread_mutex_unlock(&late_lock);
	in_late = false;
}

uint64_t spb__heap_counter_sum(enum spb_counter c)
{
	uint64_t v = __atomic_load_n(&retired_counters[c], __ATOMIC_RELAXED);
	pthread_mutex_lock(&heaps_lock);
	for (struct spb_link *l = heaps_live.next; l != &heaps_live; l = l->next)
		v += __atomic_load_n(&spb__container_of(l, struct spb_heap, all_link)->counters[c],
				     __ATOMIC_RELAXED);
	pthread_mutex_unlock(&heaps_lock);
	return v;
}

/* Lock order: late_lock (its heap_new takes heaps_lock), heaps_lock,
 * aband_lock. */
void spb__heap_prefork(void)
{
	pthread_mutex_lock(&late_lock);
	pthread_mutex_lock(&heaps_lock);
	pthread_mutex_lock(&aband_lock);
}

void spb__heap_postfork_parent(void)
{
	pthread_mutex_unlock(&aband_lock);
	pthread_mutex_unlock(&heaps_lock);
	pthread_mutex_unlock(&late_lock);
}

/* In a forked child: a span of the forking thread's heap flagged NOTIFIED
 * by a thread that was between its flag and its push has lost its
 * notifier (that thread is gone), and one flagged FULL with blocks flagged
 * xfreed (xsum) may have lost it between the flag and the look at `full`:
 * both become AVAIL here, or the child's thread exit would wait for ever
 * (make_avail_for_exit) and the span's frees would never be noticed.
 * Found by the model (tests/model, variant FORK). A thread that was
 * between its flag (the bitmap) and its xsum bit left a block no collect
 * looks for: every span's xsum is set again from its xfreed words. */
static void xsum_rearm(struct spb_span *s)
{
	const uint64_t *w = (const uint64_t *)(s + 1);
	uint64_t sum = 0;
	for (uint32_t k = 0; k < (1u << s->words_order); k++)
		if (__atomic_load_n(&w[2 * k + 1], __ATOMIC_RELAXED))
			sum |= spb__xsum_bit(s, k);
	if (sum)
		__atomic_fetch_or(&s->xsum, sum, __ATOMIC_RELAXED);
}

static void heap_fixup_child(struct spb_heap *h)
{
	drain_notify(h, true);
	for (unsigned b = 0; b < SPB_NR_BINS; b++) {
		for (struct spb_link *l = h->full[b].next; l != &h->full[b]; l = l->next)
			xsum_rearm(spb__container_of(l, struct spb_span, link));
		for (struct spb_link *l = h->avail[b].next; l != &h->avail[b]; l = l->next)
			xsum_rearm(spb__container_of(l, struct spb_span, link));
		if (h->bins[b] != &empty_span)
			xsum_rearm(h->bins[b]);
		struct spb_link *hd = &h->full[b];
		for (struct spb_link *l = hd->next, *nx; l != hd; l = nx) {
			nx = l->next;
			struct spb_span *s = spb__container_of(l, struct spb_span, link);
			uint8_t st = __atomic_load_n(&s->full, __ATOMIC_RELAXED);
			if (st == SPB_SPAN_NOTIFIED ||
			    (st == SPB_SPAN_FULL && __atomic_load_n(&s->xsum, __ATOMIC_RELAXED))) {
				__atomic_store_n(&s->full, SPB_SPAN_AVAIL, __ATOMIC_RELAXED);
				move_to(&h->avail[b], s);
			}
		}
		hd = &h->avail[b];
		for (struct spb_link *l = hd->next; l != hd; l = l->next) {
			struct spb_span *s = spb__container_of(l, struct spb_span, link);
			if (__atomic_load_n(&s->full, __ATOMIC_RELAXED) == SPB_SPAN_NOTIFIED)
				__atomic_store_n(&s->full, SPB_SPAN_AVAIL, __ATOMIC_RELAXED);
		}
	}
}

void spb__heap_postfork_child(void)
{
	pthread_mutex_init(&aband_lock, NULL);
	pthread_mutex_init(&heaps_lock, NULL);
	pthread_mutex_init(&late_lock, NULL);
	/* Only this thread runs: plain stores are safe (the protocol's CAS
	 * rule is about concurrent notifiers, and there are none). */
	struct spb_heap *p = spb__tls_primary;
	if (p)
		for (unsigned c = 0; c < SPB_NR_CLASSES; c++)
			if (p->by_class[c] && (p->by_class[c] != p || c == SPB_UNMOVABLE))
				heap_fixup_child(p->by_class[c]);
	/* Only the forking thread exists in the child. The other threads'
	 * heaps are left as they are: fork may have caught one of them in the
	 * middle of its lock-free fast path or of a list move, so nothing in
	 * them can be trusted to walk. Their spans stay owned by heaps that
	 * never run again; a block the child frees into one is flagged
	 * xfreed there. A bounded leak (what their caches held at fork), as in
	 * jemalloc and mimalloc, instead of a corrupted heap. */
}

void spb__heap_forget_class_child(unsigned cls)
{
	/* The forking thread's heap of the class: left on the live list (its
	 * counters still count), never allocated from again. */
	struct spb_heap *p = spb__tls_primary;
	if (p && p->by_class[cls] && p->by_class[cls] != p)
		p->by_class[cls] = NULL;
	late_heaps[cls] = NULL;
	for (unsigned z = 0; z < SPB_NR_ZONES_MAX; z++) {
		struct abandoned_set *a = &abandoned[z];
		if (!(aband_ready & (1ull << z)))
			continue;
		for (unsigned b = 0; b < SPB_NR_BINS; b++) {
			spb__list_init(&a->l[cls][b]);
			a->n[cls][b] = 0;
		}
	}
}
