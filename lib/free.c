/*
 * free.c — the free paths: a block of the calling thread's span goes back
 * on that span's free list (no lock, no atomic); a block of another
 * thread's span goes on its atomic xfree stack; page runs, pageblocks and
 * large mappings go back to the engine. Every pointer is checked before it
 * is trusted: foreign, interior and double frees end the process with one
 * line naming the fault and the address.
 */
#include "heap.h"

/* Blocks this thread freed into one other thread's span, pushed there in
 * one compare-and-swap when the batch is full, when a block of another
 * span comes, on this thread's malloc slow path, and at thread exit: a
 * producer/consumer pair pays one atomic per REMOTE_BATCH frees, not one
 * per free. The blocks stay counted as used by their span meanwhile. */
#define REMOTE_BATCH 32
struct remote_batch {
	struct spb_span *span;
	struct spb_block *head, *tail;
	uint32_t n;
};
static SPB_TLS struct remote_batch remote;

void spb__remote_flush(void)
{
	struct spb_span *s = remote.span;
	if (!s)
		return;
	remote.span = NULL;
	struct spb_block *head = __atomic_load_n(&s->xfree, __ATOMIC_RELAXED);
	do
		remote.tail->next = head;
	while (!__atomic_compare_exchange_n(&s->xfree, &head, remote.head, true,
					    __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
	/* Paired with mark_full (heap.c): either the owner's second look at
	 * xfree sees these blocks, or this load sees the span flagged full.
	 * (s may be recycled by now; descriptors are never unmapped, and a
	 * recycled one is not FULL-then-ours: see spb__heap_notify.) */
	if (__atomic_load_n(&s->full, __ATOMIC_SEQ_CST) == SPB_SPAN_FULL)
		spb__heap_notify(s);
}

/* Counters of a free off the fast path; a thread that only frees gets a
 * heap for them. */
static void count_free(struct spb_heap *h, size_t bytes, bool xthread)
{
	if (h == &spb__empty_heap)
		h = spb__heap_get();
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
	b->tag = spb__free_cookie ^ (uintptr_t)b;
	if (remote.span != s) {
		spb__remote_flush();
		b->next = NULL;
		remote.tail = b;
		remote.n = 0;
		remote.span = s;
	} else {
		b->next = remote.head;
	}
	remote.head = b;
	if (++remote.n >= REMOTE_BATCH)
		spb__remote_flush();
	count_free(h, bsize, true);
}

/* Not a span block: a page run or pageblocks of an SPB, a large mapping,
 * or not ours at all. */
static __attribute__((noinline)) void free_pages(void *p, struct spb_region *r)
{
	if (!r || !r->kind)
		spb__fatal("free(): invalid pointer (not allocated by spbmalloc)", p);
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
	enum spb_block_fault f = spb__block_check(s, p, spb__free_cookie);
	if (SPB_UNLIKELY(f != SPB_BLOCK_OK))
		spb__block_fault(f, false, p);
	struct spb_block *b = p;
	struct spb_heap *h = spb__tls_heap;
	if (SPB_LIKELY(__atomic_load_n(&s->heap, __ATOMIC_RELAXED) == h)) {
		b->next = s->free;
		b->tag = spb__free_cookie ^ (uintptr_t)b;
		s->free = b;
		s->free_zero = 0;
		h->counters[MALLOC_FREE]++;
		h->counters[MALLOC_FREE_BYTES] += s->bsize;
		if (SPB_UNLIKELY(--s->used == 0 ||
				 __atomic_load_n(&s->full, __ATOMIC_RELAXED) != SPB_SPAN_AVAIL))
			spb__heap_span_empty(h, s);
		return;
	}
	free_xthread(h, s, b);
}

void spb__block_fault(enum spb_block_fault f, bool realloc, const void *p)
{
	static const char *const what[2][4] = {
		{NULL, "free(): invalid pointer (inside a block, not its start)",
		 "free(): invalid pointer (not allocated by spbmalloc)",
		 "free(): double free detected"},
		{NULL, "realloc(): invalid pointer (inside a block, not its start)",
		 "realloc(): invalid pointer (not allocated by spbmalloc)",
		 "realloc(): invalid pointer (block is free: double free?)"},
	};
	spb__fatal(what[realloc][f], p);
}
