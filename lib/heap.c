/*
 * heap.c — per-thread heaps: creation on a thread's first malloc, the
 * refill slow path (current span -> other spans of the bin -> an abandoned
 * span -> a new span), full/available span lists, cross-thread
 * notifications, thread exit (spans handed back or abandoned), the MALLOC_*
 * counters, and the fork hooks. Heap descriptors are pooled and never
 * unmapped, so a late cross-thread notifier never touches unmapped memory.
 */
#include <string.h>

#include "heap.h"

static struct spb_span empty_span;
struct spb_heap spb__empty_heap = {
	.bins = {[0 ... SPB_NR_BINS - 1] = &empty_span},
};
SPB_TLS struct spb_heap *spb__tls_heap = &spb__empty_heap;
static SPB_TLS struct spb_heap *tls_primary; /* the thread's UNMOVABLE heap */
uintptr_t spb__free_cookie;

static pthread_mutex_t heaps_lock = PTHREAD_MUTEX_INITIALIZER;
static struct spb_link heaps_live = {&heaps_live, &heaps_live};
static struct spb_link heaps_pool = {&heaps_pool, &heaps_pool};
static uint64_t retired_counters[SPB_NR_COUNTERS];

static pthread_mutex_t aband_lock = PTHREAD_MUTEX_INITIALIZER;
static struct spb_link abandoned[SPB_NR_BINS];
static uint32_t nr_abandoned[SPB_NR_BINS];


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
	__atomic_store_n(&h->xnotify, NULL, __ATOMIC_RELAXED);
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
	tls_primary = h;
	spb__tls_heap = h;
	pthread_setspecific(spb__thread_key, h);
	return h;
}

struct spb_heap *spb__heap_for_class(unsigned cls)
{
	if (!tls_primary && !spb__heap_get())
		return NULL;
	struct spb_heap *p = tls_primary;
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

/* Spans that got a cross-thread free while their owner saw them full. */
static void drain_notify(struct spb_heap *h)
{
	struct spb_span *s = __atomic_exchange_n(&h->xnotify, NULL, __ATOMIC_ACQUIRE);
	while (s) {
		struct spb_span *next = s->notify_next;
		if (__atomic_load_n(&s->heap, __ATOMIC_RELAXED) == h &&
		    full_cas(s, SPB_SPAN_NOTIFIED, SPB_SPAN_AVAIL))
			move_to(&h->avail[s->bin], s);
		s = next;
	}
}

/* Make s usable for allocation, or move it to the full list. */
static bool span_ready(struct spb_heap *h, struct spb_span *s)
{
	spb__span_collect(s);
	if (s->free || spb__span_extend(s))
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

static struct spb_span *adopt(struct spb_heap *h, unsigned bin)
{
	struct spb_span *s = NULL;
	if (!__atomic_load_n(&nr_abandoned[bin], __ATOMIC_RELAXED))
		return NULL;
	pthread_mutex_lock(&aband_lock);
	if (!spb__list_empty(&abandoned[bin])) {
		s = spb__container_of(abandoned[bin].next, struct spb_span, link);
		spb__list_del(&s->link);
		/* Atomic (under the lock): adopt() reads it unlocked as a hint,
		 * and a plain write racing with that read is a data race
		 * (ThreadSanitizer, tests/api/test_threads). */
		__atomic_fetch_sub(&nr_abandoned[bin], 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&aband_lock);
	if (!s)
		return NULL;
	__atomic_store_n(&s->full, SPB_SPAN_AVAIL, __ATOMIC_RELAXED);
	__atomic_store_n(&s->heap, h, __ATOMIC_RELEASE);
	spb__list_add_tail(&h->avail[bin], &s->link);
	h->counters[MALLOC_SPAN_ADOPT]++;
	return s;
}

struct spb_span *spb__heap_refill(struct spb_heap *h, unsigned bin)
{
	drain_notify(h);
	struct spb_span *s = h->bins[bin];
	if (s != &empty_span && span_ready(h, s))
		return s;
	while (!spb__list_empty(&h->avail[bin])) {
		s = spb__container_of(h->avail[bin].next, struct spb_span, link);
		if (span_ready(h, s))
			goto found;
	}
	while ((s = adopt(h, bin)) != NULL)
		if (span_ready(h, s))
			goto found;
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
	uint8_t full = __atomic_load_n(&s->full, __ATOMIC_ACQUIRE);
	if (full == SPB_SPAN_FULL)
		mark_avail(h, s);
	/* Keep the bin's current span (no thrash at a size used in bursts);
	 * a span on a notification list stays until drained. */
	if (s->used || s == h->bins[s->bin] ||
	    __atomic_load_n(&s->full, __ATOMIC_ACQUIRE) == SPB_SPAN_NOTIFIED)
		return;
	spb__list_del(&s->link);
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
	__atomic_store_n(&s->heap, NULL, __ATOMIC_RELEASE);
	__atomic_store_n(&s->full, SPB_SPAN_AVAIL, __ATOMIC_RELAXED);
	pthread_mutex_lock(&aband_lock);
	spb__list_add_tail(&abandoned[s->bin], &s->link);
	__atomic_fetch_add(&nr_abandoned[s->bin], 1, __ATOMIC_RELAXED); /* see adopt() */
	pthread_mutex_unlock(&aband_lock);
}

/* Hand every span of h back: empty ones to the engine, the rest to the
 * abandoned lists. */
static void heap_release_spans(struct spb_heap *h)
{
	drain_notify(h);
	for (unsigned b = 0; b < SPB_NR_BINS; b++) {
		struct spb_link *lists[2] = {&h->avail[b], &h->full[b]};
		for (int k = 0; k < 2; k++)
			while (!spb__list_empty(lists[k])) {
				struct spb_span *s =
					spb__container_of(lists[k]->next, struct spb_span, link);
				spb__list_del(&s->link);
				spb__span_collect(s);
				if (s->used == 0) {
					h->counters[MALLOC_SPAN_FREE]++;
					spb__span_release(s);
				} else {
					h->counters[MALLOC_SPAN_ABANDON]++;
					abandon_span(s);
				}
			}
		h->bins[b] = &empty_span;
	}
}

static void heap_retire_locked(struct spb_heap *h)
{
	for (int c = 0; c < SPB_NR_COUNTERS; c++)
		retired_counters[c] += h->counters[c];
	spb__list_del(&h->all_link);
	spb__list_add_tail(&heaps_pool, &h->all_link);
}

void spb__heap_thread_exit(struct spb_heap *primary)
{
	if (!primary || primary == &spb__empty_heap)
		return;
	primary->counters[MALLOC_THREAD_EXIT]++;
	spb__remote_flush();
	spb__tls_heap = &spb__empty_heap;
	tls_primary = NULL;
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

void spb__heap_sweep_abandoned(void)
{
	pthread_mutex_lock(&aband_lock);
	for (unsigned b = 0; b < SPB_NR_BINS; b++) {
		struct spb_link *hd = &abandoned[b];
		for (struct spb_link *l = hd->next, *nx; l != hd; l = nx) {
			nx = l->next;
			struct spb_span *s = spb__container_of(l, struct spb_span, link);
			spb__span_collect(s);
			if (s->used == 0) {
				spb__list_del(&s->link);
				__atomic_fetch_sub(&nr_abandoned[b], 1, __ATOMIC_RELAXED);
				spb__span_release(s);
			}
		}
	}
	pthread_mutex_unlock(&aband_lock);
}

void spb__heap_reclaim(void)
{
	spb__remote_flush();
	spb__heap_sweep_abandoned();
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

void spb__heap_init_once(void)
{
	for (unsigned b = 0; b < SPB_NR_BINS; b++)
		spb__list_init(&abandoned[b]);
}

void spb__heap_prefork(void)
{
	pthread_mutex_lock(&heaps_lock);
	pthread_mutex_lock(&aband_lock);
}

void spb__heap_postfork_parent(void)
{
	pthread_mutex_unlock(&aband_lock);
	pthread_mutex_unlock(&heaps_lock);
}

void spb__heap_postfork_child(void)
{
	pthread_mutex_init(&aband_lock, NULL);
	pthread_mutex_init(&heaps_lock, NULL);
	/* Only the forking thread exists in the child. The other threads'
	 * heaps are left as they are: fork may have caught one of them in the
	 * middle of its lock-free fast path or of a list move, so nothing in
	 * them can be trusted to walk. Their spans stay owned by heaps that
	 * never run again; a block the child frees into one lands on its
	 * xfree stack. A bounded leak (what their caches held at fork), as in
	 * jemalloc and mimalloc, instead of a corrupted heap. */
}
