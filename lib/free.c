/*
 * free.c — the free paths: a block of the calling thread's span goes back
 * on that span's free list (no lock, no atomic, no load from the block); a
 * block of another thread's span joins this thread's batch for that span,
 * pushed to the span's atomic xfree stack in one compare-and-swap; page
 * runs of 128-256 KiB into the thread's run cache (runcache.c); other
 * runs, pageblocks and large mappings back to the engine. Every pointer
 * is checked against metadata before it is trusted: foreign, interior,
 * never-allocated and double frees end the process with one line naming
 * the fault and the address.
 */
#include "heap.h"

/* Blocks this thread freed into one other thread's span are batched in
 * its primary heap (struct spb_remote) and pushed in one CAS when the
 * batch is full, when a block of another span comes, on this thread's
 * malloc slow path and at thread exit: a producer/consumer pair pays one
 * CAS on the consumer's span per REMOTE_BATCH frees. The blocks stay
 * counted as used by their span meanwhile. The head is an atomic that the
 * background thread may take (exchange to NULL) when the batch sits idle,
 * so a thread that frees one block and sleeps pins it for about a second:
 * the owner adds with a compare-and-swap on its own (uncontended) line and
 * starts a new batch when it finds the head taken. */
#define REMOTE_BATCH 32

void spb__xfree_push(struct spb_span *s, struct spb_block *first, struct spb_block *last)
{
	struct spb_block *head = __atomic_load_n(&s->xfree, __ATOMIC_RELAXED);
	do
		last->next_enc = spb__link_enc(head, last);
	while (!__atomic_compare_exchange_n(&s->xfree, &head, first, true, __ATOMIC_SEQ_CST,
					    __ATOMIC_RELAXED));
	/* Paired with mark_full (heap.c): either the owner's second look at
	 * xfree sees these blocks, or this load sees the span flagged full.
	 * (s may be recycled by now: see the protocol in heap.c.) */
	if (__atomic_load_n(&s->full, __ATOMIC_SEQ_CST) == SPB_SPAN_FULL)
		spb__heap_notify(s);
}

void spb__remote_flush(struct spb_heap *h)
{
	struct spb_remote *r = &h->remote;
	if (!__atomic_load_n(&r->head, __ATOMIC_RELAXED))
		return;
	struct spb_block *list = __atomic_exchange_n(&r->head, NULL, __ATOMIC_ACQUIRE);
	if (list) /* else the background thread took it */
		spb__xfree_push(r->span, list, r->tail);
}

/* Counters of a free off the fast path; a thread that only frees gets a
 * heap for them (not once its heaps are retired). */
static void count_free(struct spb_heap *h, size_t bytes, bool xthread)
{
	if (h == &spb__empty_heap) {
		if (spb__thread_gone) {
			spb__heap_count(MALLOC_FREE, 1);
			spb__heap_count(MALLOC_FREE_BYTES, bytes);
			spb__heap_count(MALLOC_XTHREAD_FREE, xthread);
			spb__heap_count(MALLOC_LATE_FREE, 1);
			return;
		}
		h = spb__heap_get();
	}
	if (!h)
		return;
	h->counters[MALLOC_FREE]++;
	h->counters[MALLOC_FREE_BYTES] += bytes;
	h->counters[MALLOC_XTHREAD_FREE] += xthread;
}

static __attribute__((noinline)) void free_xthread(struct spb_heap *h, struct spb_span *s,
						    struct spb_block *b)
{
	uint32_t bsize = s->bsize;
	/* Flag it freed by another thread; a block flagged already is on its
	 * way back (a double free, maybe by two threads at once). */
	uint64_t bit, *w = spb__bit_word(s, (uintptr_t)b - s->start, &bit);
	if (SPB_UNLIKELY(__atomic_fetch_or(&w[1], bit, __ATOMIC_RELAXED) & bit))
		spb__block_fault(SPB_BLOCK_FREE, false, b);
	if (h == &spb__empty_heap && spb__thread_gone) {
		spb__xfree_push(s, b, b); /* no batch: nothing would flush it */
		count_free(h, bsize, true);
		return;
	}
	if (h == &spb__empty_heap)
		h = spb__heap_get();
	struct spb_heap *ph = spb__tls_primary;
	if (!ph) { /* the OS refused a heap: no batch */
		spb__xfree_push(s, b, b);
		return;
	}
	struct spb_remote *r = &ph->remote;
	struct spb_block *head = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
	for (;;) {
		if (head && r->span != s) {
			spb__remote_flush(ph);
			head = NULL;
		}
		if (!head) {
			/* A new batch. Only this thread makes the head non-NULL. */
			r->span = s;
			r->tail = b;
			r->n = 1;
			b->next_enc = spb__link_enc(NULL, b);
			__atomic_store_n(&r->head, b, __ATOMIC_RELEASE);
			break;
		}
		b->next_enc = spb__link_enc(head, b);
		if (__atomic_compare_exchange_n(&r->head, &head, b, false, __ATOMIC_RELEASE,
						__ATOMIC_RELAXED)) {
			if (++r->n >= REMOTE_BATCH)
				spb__remote_flush(ph);
			break;
		}
		/* Taken by the background thread meanwhile: head is NULL now. */
	}
	count_free(h, bsize, true);
}

/* A block of one of the calling thread's own spans back on its free list. */
static inline void free_local(struct spb_heap *h, struct spb_span *s, void *p, uint64_t *w,
			      uint64_t bit, uint64_t v)
{
	struct spb_block *b = p;
	if (SPB_UNLIKELY(__atomic_load_n(&w[1], __ATOMIC_RELAXED) & bit))
		spb__block_fault(SPB_BLOCK_FREE, false, p);
	__atomic_store_n(&w[0], v & ~bit, __ATOMIC_RELAXED);
	b->next_enc = spb__link_enc(s->free, b);
	s->free = b;
	s->free_zero = 0;
	h->counters[MALLOC_FREE]++;
	h->counters[MALLOC_FREE_BYTES] += s->bsize;
	/* Empty or down to its trim mark (trim_at >= 0: one compare; heap.c,
	 * span trim), or flagged full. A span holds at most 4096 blocks: the
	 * low 16 bits of used are used (a wrap would only call the slow
	 * path, which looks at used itself). */
	if (SPB_UNLIKELY((uint16_t)--s->used <= s->trim_at ||
			 __atomic_load_n(&s->full, __ATOMIC_RELAXED) != SPB_SPAN_AVAIL))
		spb__heap_span_empty(h, s);
}

/* Not the default heap's span: one of the thread's heaps of another class
 * (a RECLAIMABLE block freed by the thread that allocated it goes back at
 * once, like any local free), or another thread's. */
static __attribute__((noinline)) void free_other(struct spb_heap *h, struct spb_span *s, void *p,
						  uint64_t *w, uint64_t bit, uint64_t v)
{
	struct spb_heap *ph = spb__tls_primary, *sh = __atomic_load_n(&s->heap, __ATOMIC_RELAXED);
	/* (MOVABLE spans keep the cross-thread path: the compactor may take a
	 * MOVABLE heap's spans, heap.c.) */
	if (ph && sh && s->cls != SPB_MOVABLE && s->cls < SPB_NR_CLASSES &&
	    ph->by_class[s->cls] == sh) {
		free_local(sh, s, p, w, bit, v);
		return;
	}
	free_xthread(h, s, p);
}

/* Not a span block: a page run or pageblocks of an SPB, a large mapping,
 * or not ours at all. */
static __attribute__((noinline)) void free_pages(void *p, struct spb_region *r)
{
	if (!r || !r->kind)
		spb__fatal("free(): invalid pointer (not allocated by spbmalloc)", p);
	size_t bytes;
	if (r->kind == SPB_REGION_SPB && spb__runcache_put((struct spb *)r, p, &bytes)) {
		count_free(spb__tls_heap, bytes, false);
		return;
	}
	count_free(spb__tls_heap, spb__free(p), false);
}

void spb__free_ptr(void *p)
{
	struct spb_region *r = spb__region_of(p);
	if (SPB_UNLIKELY(!r || r->kind != SPB_REGION_SPB)) {
		free_pages(p, r);
		return;
	}
	struct spb_span *s = spb__span_of((struct spb *)r, p);
	if (SPB_UNLIKELY(!s)) {
		free_pages(p, r);
		return;
	}
	uintptr_t off = (uintptr_t)p - s->start;
	if (SPB_UNLIKELY(((off * s->inv) >> SPB_INV_SHIFT) * s->bsize != off))
		spb__block_fault(SPB_BLOCK_INTERIOR, false, p);
	uint64_t bit, *w = spb__bit_word(s, off, &bit);
	uint64_t v = __atomic_load_n(&w[0], __ATOMIC_RELAXED);
	if (SPB_UNLIKELY(!(v & bit)))
		spb__block_fault(spb__block_check(s, p), false, p);
	/* Secret blocks are wiped (the span's class is at hand: one compare
	 * for the other classes). */
	if (SPB_UNLIKELY(s->cls == SPB_SECRET) && spb__secret_free_small(s, p))
		return;
	struct spb_heap *h = spb__tls_heap;
	if (SPB_LIKELY(__atomic_load_n(&s->heap, __ATOMIC_RELAXED) == h)) {
		free_local(h, s, p, w, bit, v);
		return;
	}
	free_other(h, s, p, w, bit, v);
}

void spb__block_fault(enum spb_block_fault f, bool realloc, const void *p)
{
	static const char *const what[2][4] = {
		{"free(): internal error (block check passed)",
		 "free(): invalid pointer (inside a block, not its start)",
		 "free(): invalid pointer (not allocated by spbmalloc)",
		 "free(): double free detected"},
		{"realloc(): internal error (block check passed)",
		 "realloc(): invalid pointer (inside a block, not its start)",
		 "realloc(): invalid pointer (not allocated by spbmalloc)",
		 "realloc(): invalid pointer (block is free: double free?)"},
	};
	spb__fatal(what[realloc][f], p);
}

void spb__link_fault(const void *slot)
{
	spb__fatal("malloc(): free list corrupted (a write after free or past the end of a "
		   "block?) at", slot);
}
