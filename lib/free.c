/*
 * free.c — the free paths: a block of the calling thread's span goes back
 * on that span's free list (no lock, no atomic, no load from the block); a
 * block of another thread's span is flagged in that span's xfreed bitmap
 * (one fetch_or, which also catches a double free) and its word in the
 * span's xsum, nothing written in the block; page
 * runs of 128-256 KiB into the thread's run cache (runcache.c); other
 * runs, pageblocks and large mappings back to the engine. Every pointer
 * is checked against metadata before it is trusted: foreign, interior,
 * never-allocated and double frees end the process with one line naming
 * the fault and the address.
 */
#include "heap.h"

/* Tell the owner of s that word pair wi of its bitmap holds a block
 * flagged xfreed (the flag is set already), and notify it if it had seen
 * s full. The xsum bit is set only when not set already: a collect that
 * takes it afterwards (exchange) looks at the word after our flag was
 * set (both sequentially consistent), so a block is never left behind.
 * s may be recycled by now (see the protocol in heap.c). */
static void xfree_note(struct spb_span *s, uintptr_t wi)
{
	uint64_t sb = spb__xsum_bit(s, wi);
	if (!(__atomic_load_n(&s->xsum, __ATOMIC_SEQ_CST) & sb))
		__atomic_fetch_or(&s->xsum, sb, __ATOMIC_SEQ_CST);
	/* Paired with mark_full (heap.c): either the owner's second look at
	 * xsum sees this block, or this load sees the span flagged full. */
	if (__atomic_load_n(&s->full, __ATOMIC_SEQ_CST) == SPB_SPAN_FULL)
		spb__heap_notify(s);
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
	uintptr_t wi = ((uintptr_t)b - s->start) >> s->gshift >> 6;
	uint64_t bit, *w = spb__bit_word(s, (uintptr_t)b - s->start, &bit);
	if (SPB_UNLIKELY(__atomic_fetch_or(&w[1], bit, __ATOMIC_SEQ_CST) & bit))
		spb__block_fault(SPB_BLOCK_FREE, false, b);
	xfree_note(s, wi);
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
