/*
 * alloc.c — the allocation paths of the malloc family: the small-object
 * fast path (pop the current span's free list), its slow path, requests
 * above the size classes (page runs and pageblocks from the engine), and
 * calloc, realloc, aligned allocation, usable size. No symbol here is
 * named malloc: override.c maps the C names onto these.
 */
#include <errno.h>
#include <string.h>

#include "heap.h"

static void count_alloc(struct spb_heap *h, size_t bytes)
{
	h->counters[MALLOC_ALLOC]++;
	h->counters[MALLOC_ALLOC_BYTES] += bytes;
}

/* Pop the head of s's free list: its link is checked (spb__link_next)
 * and the block must not be live (a link redirected to a live block). */
static inline struct spb_block *span_pop(struct spb_span *s, struct spb_block *b)
{
	s->free = spb__link_next(s, b);
	uint64_t bit, *w = spb__bit_word(s, (uintptr_t)b - s->start, &bit);
	uint64_t v = __atomic_load_n(w, __ATOMIC_RELAXED);
	if (SPB_UNLIKELY(v & bit))
		spb__link_fault(b);
	__atomic_store_n(w, v | bit, __ATOMIC_RELAXED);
	s->used++;
	return b;
}

static __attribute__((noinline)) void *alloc_small_slow(struct spb_heap *h, size_t size,
							 unsigned bin_hint)
{
	if (h == &spb__empty_heap) {
		if (spb__thread_gone)
			return spb__late_alloc(size, 0, SPB_UNMOVABLE);
		h = spb__heap_get();
		if (!h) {
			errno = ENOMEM;
			return NULL;
		}
	}
	/* The bin the fast path computed may predate the size-class table. */
	unsigned bin = bin_hint < SPB_NR_BINS && spb__bin_size[bin_hint] >= size
			       ? bin_hint : spb__bin_of(size);
	struct spb_span *s = spb__heap_refill(h, bin);
	if (!s) {
		errno = ENOMEM;
		return NULL;
	}
	struct spb_block *b = span_pop(s, s->free);
	count_alloc(h, s->bsize);
	return b;
}

static inline void *heap_alloc_small(struct spb_heap *h, size_t size, unsigned bin)
{
	/* Relaxed atomic (a plain load on x86): the compactor may take a
	 * MOVABLE heap's current span away (heap.c, steal). */
	struct spb_span *s = __atomic_load_n(&h->bins[bin], __ATOMIC_RELAXED);
	struct spb_block *b = s->free;
	if (SPB_LIKELY(b != NULL)) {
		span_pop(s, b);
		h->counters[MALLOC_ALLOC]++;
		h->counters[MALLOC_ALLOC_BYTES] += s->bsize;
		return b;
	}
	return alloc_small_slow(h, size, bin);
}

/* Above the size classes, or aligned beyond what a class gives. */
static void *alloc_pages(struct spb_heap *h, size_t size, size_t align, unsigned flags)
{
	if (h == &spb__empty_heap && spb__thread_gone) {
		void *p = spb__late_alloc(size, align, SPB_UNMOVABLE);
		if (p && (flags & SPB_F_ZERO))
			memset(p, 0, size);
		return p;
	}
	if (h == &spb__empty_heap && !(h = spb__heap_get())) {
		errno = ENOMEM;
		return NULL;
	}
	size_t usable = 0;
	void *p;
	if (size > SPB_SMALL_MAX && size <= SPB_RC_MAX && align <= SPB_PAGE_SIZE &&
	    h->cls == SPB_UNMOVABLE && spb__opt(OPT_RUN_CACHE_KB) != 0) {
		/* 128-256 KiB: the thread's run cache first (runcache.c). */
		p = spb__runcache_get(h, size, &usable);
		if (p) {
			if (flags & SPB_F_ZERO)
				memset(p, 0, size);
			h->counters[MALLOC_LARGE_ALLOC]++;
			count_alloc(h, usable);
			return p;
		}
		size = spb__runcache_round(size);
	}
	/* A direct page run is sparse-prone (pageblock.c): many programs
	 * write a few bytes of a big buffer. */
	spb__heap_follow_node(h); /* a run from the engine is a refill too */
	p = spb__pages_alloc(h->zone, size, align, h->cls, flags | SPB_F_SPARSE);
	if (p) {
		/* A run below a pageblock is exactly the pages asked for (no
		 * need to ask the engine, under its lock, what it gave). */
		if (size < SPB_PB_SIZE && align < SPB_PB_SIZE)
			usable = size ? (size + SPB_PAGE_SIZE - 1) & ~(SPB_PAGE_SIZE - 1) : SPB_PAGE_SIZE;
		else
			usable = spb__usable(p);
		h->counters[MALLOC_LARGE_ALLOC]++;
		count_alloc(h, usable);
		spb__bg_maybe_start();
	}
	return p;
}

/* Smallest class at least size whose blocks are multiples of align
 * (span starts are page aligned), or SPB_NR_BINS. */
static unsigned aligned_bin(size_t size, size_t align)
{
	unsigned b = spb__bin_of(size < align ? align : size);
	while (b < SPB_NR_BINS && spb__bin_size[b] % align)
		b++;
	return b;
}

/* A thread whose heaps were retired (frees and mallocs run after its key
 * destructor: glibc frees its per-thread state late in thread exit) is
 * served by the shared late heap of the class, under its lock: nothing
 * is left behind in a heap that is never retired. */
void *spb__late_alloc(size_t size, size_t align, unsigned cls)
{
	struct spb_heap *h = spb__late_heap_enter(cls);
	if (!h) {
		errno = ENOMEM;
		return NULL;
	}
	void *p = NULL;
	unsigned b = SPB_NR_BINS;
	if (size <= SPB_SMALL_MAX && align <= SPB_PAGE_SIZE)
		b = align <= SPB_MIN_ALIGN ? spb__bin_of(size) : aligned_bin(size, align);
	if (b < SPB_NR_BINS)
		p = heap_alloc_small(h, spb__bin_size[b], b);
	else if (align <= SPB_SPB_SIZE && (p = spb__pages_alloc(h->zone, size, align, cls, 0)))
		count_alloc(h, spb__usable(p));
	h->counters[MALLOC_LATE_ALLOC]++;
	spb__late_heap_leave();
	return p;
}

void *spb__malloc(size_t size)
{
	struct spb_heap *h = spb__tls_heap;
	if (SPB_LIKELY(size <= SPB_SMALL_MAX))
		return heap_alloc_small(h, size, spb__bin_of(size));
	return alloc_pages(h, size, 0, 0);
}

static void *malloc_in_class(size_t size, unsigned cls, unsigned flags)
{
	void *p;
	if (spb__thread_gone && spb__tls_heap == &spb__empty_heap) {
		p = spb__late_alloc(size, 0, cls);
		if (p && (flags & SPB_F_ZERO))
			memset(p, 0, size);
		return p;
	}
	struct spb_heap *h = spb__heap_for_class(cls);
	if (!h) {
		errno = ENOMEM;
		return NULL;
	}
	if (size <= SPB_SMALL_MAX && !(flags & SPB_F_OPTIONAL)) {
		p = heap_alloc_small(h, size, spb__bin_of(size));
		if (p && (flags & SPB_F_ZERO))
			memset(p, 0, size);
	} else {
		/* The engine knows which pages are fresh: it zeroes the rest. */
		p = alloc_pages(h, size, 0, flags);
	}
	return p;
}

void *spb__malloc_class(size_t size, unsigned cls, unsigned flags)
{
	if (cls != SPB_UNMOVABLE && cls != SPB_RECLAIMABLE && cls != SPB_SECRET) {
		errno = EINVAL; /* MOVABLE needs handles */
		return NULL;
	}
	return malloc_in_class(size, cls, flags);
}

void *spb__malloc_movable(size_t size)
{
	return malloc_in_class(size, SPB_MOVABLE, 0);
}

void *spb__calloc(size_t n, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	if (total <= SPB_SMALL_MAX) {
		/* A block from a span whose free list is still fresh from a
		 * zeroed run needs only its two link words cleared. */
		struct spb_heap *h = spb__tls_heap;
		unsigned bin = spb__bin_of(total);
		struct spb_span *s = h->bins[bin];
		bool fresh = s->free != NULL && s->free_zero;
		void *p = heap_alloc_small(h, total, bin);
		if (p)
			memset(p, 0, fresh && total > sizeof(struct spb_block)
					     ? sizeof(struct spb_block) : total);
		return p;
	}
	/* The engine knows which pages are fresh from the OS: no memset there. */
	return alloc_pages(spb__tls_heap, total, 0, SPB_F_ZERO);
}

size_t spb__usable(const void *p)
{
	struct spb_region *r = spb__region_of(p);
	if (!r || !r->kind)
		return 0;
	if (r->kind == SPB_REGION_SPB) {
		struct spb_span *s = spb__span_of((struct spb *)r, p);
		if (s)
			return s->bsize;
	}
	return spb__usable_size(p);
}

void *spb__aligned(size_t align, size_t size)
{
	if (align <= SPB_MIN_ALIGN)
		return spb__malloc(size);
	if (size <= SPB_SMALL_MAX && align <= SPB_PAGE_SIZE) {
		struct spb_heap *h = spb__tls_heap;
		if (h == &spb__empty_heap && spb__thread_gone)
			return spb__late_alloc(size, align, SPB_UNMOVABLE);
		if (h == &spb__empty_heap && !(h = spb__heap_get())) {
			errno = ENOMEM;
			return NULL;
		}
		unsigned b = aligned_bin(size, align);
		if (b < SPB_NR_BINS)
			return heap_alloc_small(h, spb__bin_size[b], b);
	}
	if (align > SPB_SPB_SIZE) {
		errno = EINVAL;
		return NULL;
	}
	return alloc_pages(spb__tls_heap, size, align, 0);
}

/* A block that is not in a span (a page run or pageblocks): resize it in
 * place when the neighbouring pages allow. */
static bool realloc_pages_in_place(void *p, size_t old, size_t size)
{
	struct spb_region *r = spb__region_of(p);
	if (size <= SPB_SMALL_MAX || !r || r->kind != SPB_REGION_SPB ||
	    spb__span_of((struct spb *)r, p))
		return false;
	/* Pageblock runs resize by whole pageblocks: one that would keep
	 * more than twice what is asked moves to a page run instead (a block
	 * is never more than twice its size: free_sized checks that). */
	if (old >= SPB_PB_SIZE && size < SPB_PB_SIZE / 2)
		return false;
	size_t got = spb__resize_in_place(p, size);
	if (!got)
		return false;
	/* Counted like any other allocation and free, also for a thread
	 * without a heap (its free would count the new size). */
	struct spb_heap *h = spb__tls_heap;
	if (h != &spb__empty_heap) {
		h->counters[MALLOC_REALLOC_INPLACE]++;
		if (got > old)
			h->counters[MALLOC_ALLOC_BYTES] += got - old;
		else
			h->counters[MALLOC_FREE_BYTES] += old - got;
	} else {
		spb__heap_count(MALLOC_REALLOC_INPLACE, 1);
		spb__heap_count(got > old ? MALLOC_ALLOC_BYTES : MALLOC_FREE_BYTES,
				got > old ? got - old : old - got);
	}
	return true;
}

/* The usable size of the block realloc was handed, checked the way free()
 * checks it (tests/api/test_badfree found both holes): an interior pointer
 * or a block already freed used to be "resized" in place and returned, so a
 * free block could be handed out twice. Non-span pointers: the engine's
 * usable size is 0 unless p starts a live allocation. *cls: the block's
 * lifetime class (a moved block keeps it). */
static size_t realloc_old_size(void *p, unsigned *cls)
{
	struct spb_region *r = spb__region_of(p);
	*cls = SPB_UNMOVABLE;
	if (!r || r->kind != SPB_REGION_SPB) {
		if (r && r->kind == SPB_REGION_LARGE)
			*cls = r->cls;
		return spb__usable(p);
	}
	struct spb_span *s = spb__span_of((struct spb *)r, p);
	if (!s) {
		unsigned c = spb__pb_of((struct spb *)r, p)->cls;
		*cls = c < SPB_NR_CLASSES ? c : SPB_UNMOVABLE;
		return spb__usable_size(p);
	}
	enum spb_block_fault f = spb__block_check(s, p);
	if (f != SPB_BLOCK_OK)
		spb__block_fault(f, true, p);
	*cls = s->cls;
	return s->bsize;
}

void *spb__realloc(void *p, size_t size)
{
	if (!p)
		return spb__malloc(size);
	if (size == 0) { /* glibc: frees and returns NULL */
		spb__free_ptr(p);
		return NULL;
	}
	unsigned cls;
	size_t old = realloc_old_size(p, &cls);
	if (!old)
		spb__fatal("realloc(): invalid pointer (not allocated by spbmalloc)", p);
	/* In place while it fits and no more than half would be wasted. */
	if (size <= old && size >= old / 2) {
		struct spb_heap *h = spb__tls_heap;
		if (h != &spb__empty_heap)
			h->counters[MALLOC_REALLOC_INPLACE]++;
		else
			spb__heap_count(MALLOC_REALLOC_INPLACE, 1);
		return p;
	}
	if (realloc_pages_in_place(p, old, size))
		return p;
	/* The copy stays in the block's class (a RECLAIMABLE block stays
	 * where shrinkers can find it); a block behind a handle is not
	 * realloc's to move: it goes where plain malloc goes. */
	void *q = cls == SPB_MOVABLE || cls == spb__tls_heap->cls ? spb__malloc(size)
								   : malloc_in_class(size, cls, 0);
	if (!q)
		return NULL; /* p stays valid, as C requires */
	memcpy(q, p, old < size ? old : size);
	spb__free_ptr(p);
	return q;
}
