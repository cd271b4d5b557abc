/*
 * heap.h — the objects layer: size classes (sizeclass.c), spans of one size
 * class carved from page runs of the engine (span.c), per-thread heaps
 * (heap.c), the malloc/free paths (alloc.c, free.c) and process
 * integration (init.c). The override layer (override.c) alone defines
 * malloc and friends on top of the spb__malloc_* functions here.
 *
 * Hot path: a thread's heap holds, per size class ("bin"), a current span;
 * malloc pops that span's free list, free of a block owned by the calling
 * thread pushes it back. No lock, no atomic, no syscall. A block freed by
 * another thread goes on the span's atomic xfree stack; the owner collects
 * it on its slow path. A thread that exits hands its spans back (empty
 * ones to the engine, the rest to an "abandoned" list other threads adopt).
 *
 * Pointer -> span: spb__map[p >> 30] is the SPB, spb->pagemap[page] the
 * span (NULL for page runs handed out directly). Span descriptors live
 * outside the data area, like all metadata.
 */
#ifndef SPB_HEAP_H
#define SPB_HEAP_H

#include "engine.h"

#define SPB_MIN_ALIGN 16
#define SPB_SMALL_MAX ((size_t)128 * 1024) /* largest size class */
#define SPB_NR_BINS 88 /* 16..128 by 16, then 8 classes per doubling to 128 KiB */
#define SPB_INV_SHIFT 40                    /* reciprocal for the interior-pointer check */

struct spb_block {
	struct spb_block *next;
	uintptr_t tag; /* spb__free_cookie ^ address while free: double-free check */
};

enum spb_span_full { SPB_SPAN_AVAIL = 0, SPB_SPAN_FULL = 1, SPB_SPAN_NOTIFIED = 2 };

struct spb_heap;

struct spb_span {
	struct spb_block *free;          /* owner only */
	uint32_t used;                   /* owner only: blocks out, xfree included */
	uint32_t bsize;
	uint64_t inv;                    /* ceil(2^40 / bsize) */
	uintptr_t start;
	struct spb_heap *_Atomic heap;   /* owner; NULL while abandoned */
	struct spb_block *_Atomic xfree; /* frees from other threads */
	uint8_t _Atomic full;            /* enum spb_span_full */
	uint8_t bin;
	uint8_t cls;
	uint8_t zero_run;                /* the page run came from the OS zeroed */
	uint8_t free_zero;               /* every block on free reads as zero past
					    its first 16 bytes (calloc skips) */
	uint32_t capacity;               /* blocks that fit */
	uint32_t extended;               /* blocks put on a free list so far */
	uint32_t npages;
	struct spb_span *notify_next;    /* on heap->xnotify */
	struct spb_span *desc_next;      /* on the descriptor pool's free list */
	struct spb_link link;            /* heap->avail/full[bin] or abandoned[bin] */
};

struct spb_heap {
	struct spb_span *bins[SPB_NR_BINS];   /* current span per bin */
	uint64_t counters[SPB_NR_COUNTERS];   /* MALLOC_* only; folded when read */
	struct spb_zone *zone;
	uint8_t cls;                          /* lifetime class of plain malloc */
	struct spb_span *_Atomic xnotify;     /* full spans that got an xfree */
	struct spb_link avail[SPB_NR_BINS];   /* spans with (maybe) free blocks */
	struct spb_link full[SPB_NR_BINS];    /* spans seen full */
	struct spb_link all_link;             /* all heaps (live or pooled) */
	struct spb_heap *by_class[SPB_NR_CLASSES]; /* primary heap: the thread's heaps */
};

/* ---- sizeclass.c ---- */
extern uint32_t spb__bin_size[SPB_NR_BINS] SPB_HIDDEN;
extern uint16_t spb__bin_pages[SPB_NR_BINS] SPB_HIDDEN;
extern uint8_t spb__small_bin[(1024 / 16) + 1] SPB_HIDDEN; /* (size+15)/16 -> bin */
void spb__sizeclass_init(void) SPB_HIDDEN;
/* Classes: 16..128 in steps of 16, then 8 per doubling (12.5 % apart):
 * (9 + k) << (lg - 3) for the size range (2^lg, 2^(lg+1)]. */
static inline unsigned spb__bin_of(size_t size)
{
	if (SPB_LIKELY(size <= 1024))
		return spb__small_bin[(size + 15) >> 4];
	size_t s = size - 1;
	unsigned lg = 63u - (unsigned)__builtin_clzll(s);
	unsigned k = (unsigned)(s >> (lg - 3)) & 7;
	return 8 + (lg - 7) * 8 + k;
}

/* ---- span.c ---- */
struct spb_span *spb__span_new(struct spb_heap *h, unsigned bin) SPB_HIDDEN;
void spb__span_release(struct spb_span *s) SPB_HIDDEN;
/* Put up to a page's worth of never-used blocks on the free list. */
bool spb__span_extend(struct spb_span *s) SPB_HIDDEN;
/* Move the xfree stack onto the free list; returns blocks collected. */
uint32_t spb__span_collect(struct spb_span *s) SPB_HIDDEN;
void spb__span_prefork(void) SPB_HIDDEN;
void spb__span_postfork(bool child) SPB_HIDDEN;
static inline struct spb_span *spb__span_of(const struct spb *sp, const void *p)
{
	return __atomic_load_n(&sp->pagemap[((uintptr_t)p >> SPB_PAGE_SHIFT) &
					    (SPB_PB_PER_SPB * SPB_PAGES_PER_PB - 1)],
			       __ATOMIC_ACQUIRE);
}

/* The checks every pointer into a span passes before it is trusted (free
 * and realloc): a block's start, handed out at some point, not free now.
 * who is "free()" or "realloc()" for the one-line diagnosis. */
enum spb_block_fault { SPB_BLOCK_OK, SPB_BLOCK_INTERIOR, SPB_BLOCK_NEVER, SPB_BLOCK_FREE };
static inline enum spb_block_fault spb__block_check(const struct spb_span *s, const void *p,
						    uintptr_t cookie)
{
	uintptr_t off = (uintptr_t)p - s->start;
	if (SPB_UNLIKELY(((off * s->inv) >> SPB_INV_SHIFT) * s->bsize != off))
		return SPB_BLOCK_INTERIOR;
	/* Past what the span has put on a free list so far: never handed out,
	 * and its tag is whatever the memory held (accepting it would let
	 * extend hand the block out twice). */
	if (SPB_UNLIKELY(off >= (uintptr_t)__atomic_load_n(&s->extended, __ATOMIC_RELAXED) *
				       s->bsize))
		return SPB_BLOCK_NEVER;
	if (SPB_UNLIKELY(((const struct spb_block *)p)->tag == (cookie ^ (uintptr_t)p)))
		return SPB_BLOCK_FREE;
	return SPB_BLOCK_OK;
}
__attribute__((noreturn, cold)) void spb__block_fault(enum spb_block_fault f, bool realloc,
						      const void *p) SPB_HIDDEN;

/* ---- heap.c ---- */
extern SPB_TLS struct spb_heap *spb__tls_heap SPB_HIDDEN;
extern struct spb_heap spb__empty_heap SPB_HIDDEN;
extern uintptr_t spb__free_cookie SPB_HIDDEN;
/* The calling thread's heap, created on first use (NULL only if the OS
 * refused the metadata). */
struct spb_heap *spb__heap_get(void) SPB_HIDDEN;
/* The calling thread's heap for a lifetime class (created on demand). */
struct spb_heap *spb__heap_for_class(unsigned cls) SPB_HIDDEN;
/* Make cls the class of the calling thread's plain malloc. */
int spb__heap_set_default(unsigned cls) SPB_HIDDEN;
/* Refill bin from the heap's spans, abandoned spans, or a new span. */
struct spb_span *spb__heap_refill(struct spb_heap *h, unsigned bin) SPB_HIDDEN;
/* A span's last block came back (owner path). */
void spb__heap_span_empty(struct spb_heap *h, struct spb_span *s) SPB_HIDDEN;
/* An xfree landed on a span its owner saw full. */
void spb__heap_notify(struct spb_span *s) SPB_HIDDEN;
void spb__heap_thread_exit(struct spb_heap *h) SPB_HIDDEN;
/* Sweep abandoned spans: collect their xfrees, free the empty ones. */
void spb__heap_sweep_abandoned(void) SPB_HIDDEN;
/* spb__reclaim_hook: this thread's batched frees out, abandoned swept. */
void spb__heap_reclaim(void) SPB_HIDDEN;
/* Sum of MALLOC_* counters over live and retired heaps. */
uint64_t spb__heap_counter_sum(enum spb_counter c) SPB_HIDDEN;
void spb__heap_prefork(void) SPB_HIDDEN;
void spb__heap_postfork_parent(void) SPB_HIDDEN;
void spb__heap_postfork_child(void) SPB_HIDDEN;

/* ---- alloc.c / free.c: the malloc family, minus symbol names ---- */
void *spb__malloc(size_t size) SPB_HIDDEN;
void *spb__malloc_class(size_t size, unsigned cls, unsigned flags) SPB_HIDDEN;
void *spb__calloc(size_t n, size_t size) SPB_HIDDEN;
void *spb__realloc(void *p, size_t size) SPB_HIDDEN;
void *spb__aligned(size_t align, size_t size) SPB_HIDDEN;
void spb__free_ptr(void *p) SPB_HIDDEN;
/* Push this thread's batch of cross-thread frees to its span (free.c). */
void spb__remote_flush(void) SPB_HIDDEN;
size_t spb__usable(const void *p) SPB_HIDDEN;

/* ---- init.c ---- */
extern pthread_key_t spb__thread_key SPB_HIDDEN;
void spb__process_init(void) SPB_HIDDEN;
void spb__heap_init_once(void) SPB_HIDDEN;

#endif
