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
 * another thread is flagged in the span's xfreed bitmap (and its word in
 * the span's xsum); the owner collects it on its slow path. A thread that exits hands its spans back (empty
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

/* A free block. Its link is stored encoded (spb__link_enc): a stray or
 * hostile write into a free block turns into a pointer that fails the
 * range check where the link is popped, instead of an address malloc
 * hands out. Nothing else of a free block is read or written. */
struct spb_block {
	uintptr_t next_enc;
};

enum spb_span_full { SPB_SPAN_AVAIL = 0, SPB_SPAN_FULL = 1, SPB_SPAN_NOTIFIED = 2 };

struct spb_heap;

/* Three cache lines, by who writes them: a cross-thread free reads the
 * first (written when the span is set up, and at its rare full/owner
 * transitions), sets a bit in the third (xsum), and touches the second, which the
 * owner's malloc and free write all the time, only to queue a span seen
 * full on its owner's notification list (notify_next). On one line, each
 * cross-thread free took the owner's hottest line away from it. The
 * bitmaps follow (live and xfreed words side by side: a cross-thread
 * free reads one and sets the other, one line of the owner's). */
struct spb_span {
	/* Read-mostly. */
	uint32_t bsize;
	uint32_t limit;                  /* capacity * bsize: where blocks end */
	uint64_t inv;                    /* ceil(2^40 / bsize) */
	uintptr_t start;
	struct spb_heap *_Atomic heap;   /* owner; NULL while abandoned */
	uint8_t gshift;                  /* log2 of the largest power of two <= bsize */
	uint8_t bin;
	uint8_t cls;
	uint8_t zero_run;                /* the page run came from the OS zeroed */
	uint8_t _Atomic full;            /* enum spb_span_full */
	uint8_t words_order;             /* live bitmap: 1 << words_order words */
	uint8_t zone_idx;                /* zone of the span's SPB */
	uint8_t compact_src;             /* a source of the compaction pass running (compact.c) */
	uint8_t trim_q;                  /* owner only: on its heap's trimq */
	uint16_t trim_at;                /* owner only: a free that leaves at most this
					    many blocks used queues it for a trim (0: never) */
	uint32_t capacity;               /* blocks that fit */
	uint32_t npages;
	/* The owner's. */
	struct spb_block *free __attribute__((aligned(64))); /* owner only (decoded head) */
	uint32_t used;                   /* owner only: blocks out, flagged xfreed included */
	uint32_t extended;               /* blocks put on a free list so far */
	uint8_t free_zero;               /* every block on free reads as zero past
					    its link word (calloc skips) */
	struct spb_span *notify_next;    /* on heap->xnotify */
	struct spb_span *desc_next;      /* on the descriptor pool's free list */
	struct spb_link link;            /* heap->avail/full[bin] or abandoned list */
	/* Span trim (span.c): pages no live block touches given back to the
	 * OS. Their blocks are on no free list (the free list's links would
	 * be gone with the pages) until the size class takes them back. */
	uint64_t rel;                    /* bit i: page i given back (spans <= 64 pages) */
	uint64_t trim_due;               /* ms: on the trimq, looked at from then on */
	struct spb_link trim_link;       /* heap->trimq */
	/* Other threads'. */
	/* Blocks freed by other threads are flagged in the xfreed words of
	 * the bitmap; bit k here says that word pair k (k >> xsum_shift of
	 * a bitmap over 64 words) may hold some the owner has not collected
	 * (span.c, spb__span_collect). Nothing is written in the blocks. */
	uint64_t _Atomic xsum __attribute__((aligned(64)));
};

/* The run cache (runcache.c): page runs of 128-256 KiB the thread freed,
 * kept for its next mallocs of about that size. Eight classes 12.5 %
 * apart (144 KiB .. 256 KiB, 36 .. 64 pages); a slot holds one run. The
 * owner takes and puts with one atomic exchange or CAS on its own line;
 * the background thread and spb_trim take idle runs the same way (so a
 * thread that stops allocating pins them for a bounded time). */
#define SPB_RC_BINS 8
#define SPB_RC_DEPTH 4
#define SPB_RC_MAX ((size_t)256 * 1024)
struct spb_runcache {
	void *_Atomic slot[SPB_RC_BINS][SPB_RC_DEPTH];
	void *seen[SPB_RC_BINS][SPB_RC_DEPTH]; /* stealer only (heaps_lock) */
	size_t _Atomic bytes;                  /* held in the slots */
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
	uint32_t reclaim_seen;                /* RECLAIMABLE: spb__reclaim_epoch at the last sweep */
	struct spb_runcache rc;               /* UNMOVABLE heaps: freed page runs */
	struct spb_link trimq;                /* spans to trim, in trim_due order (heap.c) */
	uint64_t trim_peak;                   /* most live bytes seen at a new span (heap.c) */
	uint32_t trim_tick;                   /* refills, for the trim queue's looks (heap.c) */
};

/* Bumped by the shrinker layer after a pass that freed something: at the
 * next refill of any of a thread's heaps, its RECLAIMABLE heap collects the
 * cross-thread frees of all its spans and gives the emptied ones back
 * (heap.c): what a shrinker freed on its thread comes back as pages. */
extern uint32_t spb__reclaim_epoch SPB_HIDDEN;

/* ---- free-list link protection (key set once at process init) ---- */
extern uintptr_t spb__link_key SPB_HIDDEN;
static inline uintptr_t spb__link_enc(const void *next, const void *slot)
{
	return (uintptr_t)next ^ spb__link_key ^ (uintptr_t)slot;
}
static inline struct spb_block *spb__link_dec(uintptr_t enc, const void *slot)
{
	return (struct spb_block *)(enc ^ spb__link_key ^ (uintptr_t)slot);
}
/* The link read from a free block, checked: NULL or a block start inside
 * the span (a corrupt link ends the process with one line). */
__attribute__((noreturn, cold)) void spb__link_fault(const void *slot) SPB_HIDDEN;
static inline struct spb_block *spb__link_next(const struct spb_span *s, const struct spb_block *b)
{
	struct spb_block *n = spb__link_dec(b->next_enc, b);
	if (SPB_UNLIKELY((uintptr_t)n - s->start >= s->limit && n != NULL))
		spb__link_fault(b);
	return n;
}

/* The span's bitmaps follow its descriptor, two words per 64 blocks: the
 * live word (bit set: handed out) and the xfreed word (bit set: freed by
 * another thread, not collected yet). A block's bit is found without a
 * division (block starts are at least 2^gshift apart). Only the span's
 * owner (or whoever collects an ownerless span under the abandoned lock)
 * writes live words, other threads read them: relaxed atomics, plain moves
 * on x86. xfreed bits are set by fetch_or (several threads may free into
 * one span at once) and taken by the owner's collect (exchange of the
 * word), which finds the words to look at in the span's xsum. A block is
 * free (live 0), live (1, xfreed 0), or freed by another thread and on
 * its way back (1, 1). */
static inline uint64_t *spb__bit_word(const struct spb_span *s, uintptr_t off, uint64_t *bit)
{
	uintptr_t i = off >> s->gshift;
	*bit = (uint64_t)1 << (i & 63);
	return (uint64_t *)(s + 1) + ((i >> 6) << 1); /* live; [1] is xfreed */
}
/* The offset in s of the block whose bit is bit j of word pair k: bit
 * (k * 64 + j) covers offsets [that << gshift, + 2^gshift), where the
 * first multiple of bsize at or after its start is the block (the
 * reciprocal is exact over a span: the interior check relies on it). */
static inline uintptr_t spb__bit_off(const struct spb_span *s, uint32_t k, unsigned j)
{
	uintptr_t lo = ((uintptr_t)k * 64 + j) << s->gshift;
	return (((lo + s->bsize - 1) * s->inv) >> SPB_INV_SHIFT) * s->bsize;
}
/* xsum: one bit per word pair, per 2^shift of them past 64 pairs. */
static inline unsigned spb__xsum_shift(const struct spb_span *s)
{
	return s->words_order > 6 ? s->words_order - 6u : 0u;
}
/* The xsum bit of the bitmap's word pair wi (wi = off >> gshift >> 6). */
static inline uint64_t spb__xsum_bit(const struct spb_span *s, uintptr_t wi)
{
	return (uint64_t)1 << ((wi >> spb__xsum_shift(s)) & 63);
}
static inline bool spb__live_test(const struct spb_span *s, uintptr_t off)
{
	uint64_t bit, *w = spb__bit_word(s, off, &bit);
	return (__atomic_load_n(&w[0], __ATOMIC_RELAXED) & bit) &&
	       !(__atomic_load_n(&w[1], __ATOMIC_RELAXED) & bit);
}

/* Live blocks of a span (handed out, not freed by another thread), by
 * popcount of its bitmaps: a reader's figure, a few blocks stale at worst. */
static inline uint32_t spb__span_live(const struct spb_span *s)
{
	const uint64_t *w = (const uint64_t *)(s + 1);
	uint32_t n = 0;
	for (uint32_t k = 0; k < (1u << s->words_order); k++)
		n += (uint32_t)__builtin_popcountll(__atomic_load_n(&w[2 * k], __ATOMIC_RELAXED) &
						    ~__atomic_load_n(&w[2 * k + 1], __ATOMIC_RELAXED));
	return n;
}

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
/* Blocks flagged xfreed (the words xsum names) onto the free list;
 * returns blocks collected. */
uint32_t spb__span_collect(struct spb_span *s) SPB_HIDDEN;
/* Span trim: give back the pages of s (its owner's) that no live block
 * touches; blocks on them leave the free list. Only when, with those
 * given back already, they make up at least pct % of it, or its heap
 * shrank (shrunk) and its pageblock is split already (on 4 KiB pages);
 * a pageblock on a huge page is split only for pct % in a heap that
 * shrank. Returns pages given back now (0: left as it is). */
unsigned spb__span_trim(struct spb_span *s, unsigned pct, bool shrunk,
			uint64_t *counters) SPB_HIDDEN;
/* Take s's given-back pages back: their blocks on the free list. False
 * when it had none. */
bool spb__span_untrim(struct spb_span *s, uint64_t *counters) SPB_HIDDEN;
/* The trim_at a span starts with (0: never trimmed). */
static inline uint16_t spb__span_trim_start(const struct spb_span *s)
{
	return (s->cls == SPB_UNMOVABLE || s->cls == SPB_RECLAIMABLE) && s->npages <= 64
		       ? (uint16_t)(s->capacity / 2) : 0;
}
void spb__span_prefork(void) SPB_HIDDEN;
/* Set by the shrinker layer while its thread is wanted but not running (a
 * forked child, or SPBMALLOC_PRESSURE=2 before the first span): called
 * where a new span is set up, the place the background thread starts too
 * (starting a thread may malloc), and it clears itself. */
extern void (*spb__shrink_restart)(void) SPB_HIDDEN;
void spb__span_postfork(bool child) SPB_HIDDEN;
static inline struct spb_span *spb__span_of(const struct spb *sp, const void *p)
{
	return __atomic_load_n(&sp->pagemap[((uintptr_t)p >> SPB_PAGE_SHIFT) &
					    (SPB_PB_PER_SPB * SPB_PAGES_PER_PB - 1)],
			       __ATOMIC_ACQUIRE);
}

/* The checks every pointer into a span passes before it is trusted (free
 * and realloc): a block's start, handed out and not freed since. From the
 * span's metadata only: the block itself (usually cold) is not read. */
enum spb_block_fault { SPB_BLOCK_OK, SPB_BLOCK_INTERIOR, SPB_BLOCK_NEVER, SPB_BLOCK_FREE };
static inline enum spb_block_fault spb__block_check(const struct spb_span *s, const void *p)
{
	uintptr_t off = (uintptr_t)p - s->start;
	if (SPB_UNLIKELY(((off * s->inv) >> SPB_INV_SHIFT) * s->bsize != off))
		return SPB_BLOCK_INTERIOR;
	if (SPB_UNLIKELY(!spb__live_test(s, off)))
		/* Never put on a free list (its memory may hold anything), or
		 * free now. */
		return off >= (uintptr_t)__atomic_load_n(&s->extended, __ATOMIC_RELAXED) * s->bsize
			       ? SPB_BLOCK_NEVER : SPB_BLOCK_FREE;
	return SPB_BLOCK_OK;
}
__attribute__((noreturn, cold)) void spb__block_fault(enum spb_block_fault f, bool realloc,
						      const void *p) SPB_HIDDEN;

/* ---- runcache.c ---- */
/* Bytes a malloc of size (128 KiB < size <= 256 KiB) is served with: the
 * size rounded up to its run-cache class. */
static inline size_t spb__runcache_round(size_t size)
{
	return (size + 16383) & ~(size_t)16383;
}
/* A run of at least size bytes from h's cache, or NULL (a miss: the
 * caller asks the engine for spb__runcache_round(size)). *usable: the
 * run's bytes. */
void *spb__runcache_get(struct spb_heap *h, size_t size, size_t *usable) SPB_HIDDEN;
/* Bytes a thread's run cache may hold (SPBMALLOC_RUN_CACHE_KB, or from
 * the machine's L2 size); 0: no cache. */
size_t spb__runcache_cap(void) SPB_HIDDEN;
/* free() of p, in SPB s and not in a span: true when the run went into
 * the calling thread's cache (*bytes: its size). A second free of a
 * cached run ends the process like any double free. */
bool spb__runcache_put(struct spb *s, void *p, size_t *bytes) SPB_HIDDEN;
/* Take the runs of rc that sat in their slot since the last call (all:
 * every run) into out[0..max); returns how many. */
unsigned spb__runcache_take(struct spb_runcache *rc, bool all, void **out, unsigned max) SPB_HIDDEN;
/* Give taken runs back to the engine (takes the zone lock). */
void spb__runcache_release(void **v, unsigned n) SPB_HIDDEN;

/* ---- heap.c ---- */
extern SPB_TLS struct spb_heap *spb__tls_heap SPB_HIDDEN;
/* The thread's primary (UNMOVABLE) heap, which holds its other classes'
 * heaps and its run cache; NULL before its first malloc. */
extern SPB_TLS struct spb_heap *spb__tls_primary SPB_HIDDEN;
extern struct spb_heap spb__empty_heap SPB_HIDDEN;
/* The calling thread's heap, created on first use (NULL only if the OS
 * refused the metadata). */
struct spb_heap *spb__heap_get(void) SPB_HIDDEN;
/* The calling thread's heap for a lifetime class (created on demand). */
struct spb_heap *spb__heap_for_class(unsigned cls) SPB_HIDDEN;
/* Make cls the class of the calling thread's plain malloc. */
int spb__heap_set_default(unsigned cls) SPB_HIDDEN;
/* A thread that moved to another node allocates from that node's zone
 * from its next refill: new spans, adopted spans and page runs come from
 * h->zone. The spans it holds stay its own (their blocks go back to their
 * own zone when freed: a span knows its zone, a page run its SPB's). One
 * zone: one load. Several: sched_getcpu (rseq, no system call) and the
 * topology's CPU -> node map, on this slow path only. */
static inline void spb__heap_follow_node(struct spb_heap *h)
{
	if (SPB_LIKELY(__atomic_load_n(&spb__nr_zones, __ATOMIC_RELAXED) <= 1))
		return;
	struct spb_zone *z = spb__zone_current();
	if (SPB_UNLIKELY(z != h->zone)) {
		h->zone = z;
		h->counters[MALLOC_ZONE_MOVE]++;
	}
}

/* Refill bin from the heap's spans, abandoned spans, or a new span. */
struct spb_span *spb__heap_refill(struct spb_heap *h, unsigned bin) SPB_HIDDEN;
/* A span's last block came back (owner path). */
void spb__heap_span_empty(struct spb_heap *h, struct spb_span *s) SPB_HIDDEN;
/* An xfree landed on a span its owner saw full. */
void spb__heap_notify(struct spb_span *s) SPB_HIDDEN;
void spb__heap_thread_exit(struct spb_heap *h) SPB_HIDDEN;
/* Sweep abandoned spans: collect their xfrees, free the empty ones. */
unsigned spb__heap_sweep_abandoned(void) SPB_HIDDEN; /* spans released */
/* Set while the thread runs a compaction pass: MOVABLE refills adopt only
 * spans more than half live (heap.c, refill_movable). */
extern SPB_TLS bool spb__compacting SPB_HIDDEN;
/* Take the current spans of other threads' MOVABLE heaps that want()
 * picks; after a grace period, _end abandons them (heap.c says why). */
unsigned spb__heap_steal_begin(bool (*want)(const struct spb_span *), struct spb_span **out,
			       unsigned max) SPB_HIDDEN;
void spb__heap_steal_end(struct spb_span **v, unsigned n) SPB_HIDDEN;
/* The calling thread's MOVABLE heap abandons its current spans. */
void spb__heap_drop_movable(void) SPB_HIDDEN;
/* Every thread's idle cached runs (all: every cached run) back to the
 * engine; returns runs given back. */
unsigned spb__heap_steal_runs(bool all) SPB_HIDDEN;
/* spb__reclaim_hook: abandoned spans swept, idle cached runs back. */
void spb__heap_reclaim(bool all) SPB_HIDDEN;
/* Add to a MALLOC_* counter from where no heap is at hand (atomic). */
void spb__heap_count(enum spb_counter c, uint64_t n) SPB_HIDDEN;
/* One event on the calling thread's own counters (no atomic), or on the
 * shared ones when it has no heap. */
static inline void spb__heap_count_one(enum spb_counter c)
{
	struct spb_heap *h = spb__tls_primary;
	if (SPB_LIKELY(h != NULL))
		h->counters[c]++;
	else
		spb__heap_count(c, 1);
}
/* Set once the thread's heaps are retired (its key destructor ran): its
 * later mallocs are served by a shared heap under a lock, its frees of
 * other threads' blocks go to their spans at once, unbatched. */
extern SPB_TLS bool spb__thread_gone SPB_HIDDEN;
/* The shared late heap of class cls, locked (NULL and nothing locked
 * when the OS refused its metadata, or on re-entry from inside it). */
struct spb_heap *spb__late_heap_enter(unsigned cls) SPB_HIDDEN;
void spb__late_heap_leave(void) SPB_HIDDEN;
/* ---- alloc.c: allocation for a thread whose heaps are retired ---- */
void *spb__late_alloc(size_t size, size_t align, unsigned cls) SPB_HIDDEN;
/* Sum of MALLOC_* counters over live and retired heaps. */
uint64_t spb__heap_counter_sum(enum spb_counter c) SPB_HIDDEN;
void spb__heap_prefork(void) SPB_HIDDEN;
void spb__heap_postfork_parent(void) SPB_HIDDEN;
void spb__heap_postfork_child(void) SPB_HIDDEN;

/* ---- alloc.c / free.c: the malloc family, minus symbol names ---- */
void *spb__malloc(size_t size) SPB_HIDDEN;
void *spb__malloc_class(size_t size, unsigned cls, unsigned flags) SPB_HIDDEN;
/* handle.c: the thread's cache of free handle indices goes back. */
void spb__handle_thread_exit(void) SPB_HIDDEN;
/* A block in a MOVABLE pageblock, for the handle layer (handle.c). */
void *spb__malloc_movable(size_t size) SPB_HIDDEN;
void *spb__calloc(size_t n, size_t size) SPB_HIDDEN;
void *spb__realloc(void *p, size_t size) SPB_HIDDEN;
void *spb__aligned(size_t align, size_t size) SPB_HIDDEN;
void spb__free_ptr(void *p) SPB_HIDDEN;
size_t spb__usable(const void *p) SPB_HIDDEN;

/* ---- secret.c (malloc side) ---- */
/* free() of block p of span s, whose class is SECRET: wipes it. True
 * when p is a pointer a forked child inherited (the free is ignored). */
bool spb__secret_free_small(struct spb_span *s, void *p) SPB_HIDDEN;
/* In a forked child (after the heap and zone hooks): the parent's secret
 * pageblocks were not inherited; map zeroed memory there and retire
 * every heap, span and batch that referred to them. */
void spb__secret_postfork_child(void) SPB_HIDDEN;
/* heap.c: in a forked child, drop every heap and abandoned span of class
 * cls (their memory is gone). */
void spb__heap_forget_class_child(unsigned cls) SPB_HIDDEN;

/* ---- init.c ---- */
extern pthread_key_t spb__thread_key SPB_HIDDEN;
void spb__process_init(void) SPB_HIDDEN;

#endif
