/*
 * defrag.c — cooperative defragmentation for plain pointers: programs that
 * own their pointers (Redis and Valkey's activedefrag, Dragonfly) move
 * blocks themselves if the allocator says which ones sit in sparse places,
 * as jemalloc's experimental.utilization.query does.
 *
 * spb_defrag_hint(p): p is a live small block whose span is at most half
 * live (the compactor's threshold for a source span) and is not the span
 * the calling thread allocates that size from: moving it lets the span
 * drain and go back. spb_defrag_move(p): a block of the same size class
 * and lifetime class from the calling thread's heap (its current span,
 * refilled lowest-first: allocation gathers in the low spans), p's bytes
 * copied, p freed; never the same span (then NULL and EAGAIN, p kept).
 * Page runs and whole pageblocks are not worth a copy here (the engine
 * gives their free pages back already): hint 0, move EINVAL. Handle
 * objects (MOVABLE) are the compactor's: hint 0, move EINVAL.
 */
#include <errno.h>
#include <string.h>

#include "heap.h"

#define SPB_EXPORT __attribute__((visibility("default")))

/* p's span when p is a live block of one, else NULL (never dies: a hint
 * may be asked of anything). */
static struct spb_span *live_block_span(const void *p)
{
	struct spb_region *r = spb__region_of(p);
	if (!r || r->kind != SPB_REGION_SPB)
		return NULL;
	struct spb_span *s = spb__span_of((struct spb *)r, p);
	if (!s || s->cls == SPB_MOVABLE || spb__block_check(s, p) != SPB_BLOCK_OK)
		return NULL;
	return s;
}

SPB_EXPORT int spb_defrag_hint(const void *p)
{
	spb__heap_count_one(DEFRAG_HINT);
	struct spb_span *s = live_block_span(p);
	if (!s)
		return 0;
	struct spb_heap *h = spb__tls_primary ? spb__tls_primary->by_class[s->cls] : NULL;
	if (h && __atomic_load_n(&h->bins[s->bin], __ATOMIC_RELAXED) == s)
		return 0; /* where a move would land */
	if (spb__span_live(s) * 2 > s->capacity)
		return 0;
	spb__heap_count_one(DEFRAG_HINT_YES);
	return 1;
}

SPB_EXPORT void *spb_defrag_move(void *p)
{
	struct spb_span *s = live_block_span(p);
	if (!s) {
		errno = EINVAL;
		return NULL;
	}
	size_t n = s->bsize;
	void *q = spb__malloc_class(n, s->cls, 0);
	if (!q)
		return NULL;
	struct spb_region *r = spb__region_of(q);
	if (r->kind == SPB_REGION_SPB && spb__span_of((struct spb *)r, q) == s) {
		spb__free_ptr(q);
		spb__heap_count_one(DEFRAG_MOVE_REFUSED);
		errno = EAGAIN;
		return NULL;
	}
	memcpy(q, p, n);
	spb__free_ptr(p);
	spb__heap_count_one(DEFRAG_MOVE);
	return q;
}
