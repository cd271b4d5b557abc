/*
 * engine.h — the region engine: superpageblocks (spb.c), pageblocks
 * (pageblock.c), zones and their decay (zone.c), the free pages of sparse
 * pageblocks given back (subrelease.c), the address map (spbmap.c),
 * allocation steering (steer.c), dedicated large mappings (large.c) and
 * counters (counters.c).
 *
 * Memory layout. An SPB is a 1 GiB-aligned 1 GiB data area; its descriptor
 * (struct spb, with 512 struct pageblock) lives in a separate metadata
 * mapping so the data area can be a single 1 GiB page. spb__map[addr >> 30]
 * points at the descriptor of the region owning addr (an SPB or a dedicated
 * large mapping); (addr >> 21) & 511 is the pageblock, (addr >> 12) & 511
 * the 4 KiB page inside it.
 *
 * A pageblock is FREE or holds one lifetime class (never two: the kernel's
 * defrag_mode no-fallback rule). A class pageblock is either in RUNS mode
 * (page runs of 1..511 pages, a 512-bit free map, the run lengths) or part
 * of a MULTI allocation (a run of whole pageblocks, the head records the
 * length). An SPB is EMPTY (every pageblock free), CLEAN (no non-movable
 * pageblock) or TAINTED (at least one) and sits on its zone's list for its
 * category and fullness bucket. Everything here is under the zone lock.
 *
 * Calls down to the platform layer only.
 */
#ifndef SPB_ENGINE_H
#define SPB_ENGINE_H

#include <pthread.h>

#include "platform.h"
#include "spbmalloc.h"

enum spb_counter {
#define SPB_COUNTER(e, name, desc) e,
#include "spbmalloc_counters.def"
#undef SPB_COUNTER
	SPB_NR_COUNTERS
};
extern const char *const spb__counter_names[SPB_NR_COUNTERS] SPB_HIDDEN;
extern const char *const spb__counter_descs[SPB_NR_COUNTERS] SPB_HIDDEN;

#define SPB_NR_ZONES_MAX 64
#define SPB_MAP_SLOTS ((size_t)1 << (47 - SPB_SPB_SHIFT)) /* 128 TiB / 1 GiB */

/* Pageblock class tag: a lifetime class, or one of these. */
#define SPB_PB_FREE 0xff
#define SPB_PB_BUSY 0xfe /* being released to the OS: not allocatable */

enum spb_pb_mode { SPB_PB_MODE_NONE = 0, SPB_PB_MODE_RUNS, SPB_PB_MODE_MULTI_HEAD,
		   SPB_PB_MODE_MULTI_TAIL };

enum spb_category { SPB_CAT_EMPTY = 0, SPB_CAT_CLEAN, SPB_CAT_TAINTED, SPB_NR_CATS };
#define SPB_NR_FULLNESS 4 /* buckets of used pages: [0,25%) .. [75%,100%] */

struct spb_zone;

struct spb_pageblock {
	uint8_t cls;         /* SPB_PB_FREE, SPB_PB_BUSY or a spb_class_t */
	uint8_t mode;        /* enum spb_pb_mode */
	uint8_t rung;        /* enum spb_rung; NONE = no memory behind it */
	uint8_t dirty;       /* free but may hold memory: on the zone's decay list */
	uint8_t zero;        /* FREE: known to read as zero (fresh or released) */
	uint16_t zero_hwm;   /* RUNS: pages at or above this were never handed out */
	uint16_t nr_free;    /* RUNS: free pages */
	uint16_t longest;    /* RUNS: longest free run (pages) */
	uint16_t nr_released; /* RUNS: free pages given back to the OS (subrelease.c) */
	uint16_t nr_span_rel; /* RUNS: pages inside spans their owner gave back (span trim) */
	uint8_t nohuge;      /* MADV_NOHUGEPAGE since a subrelease, or a lazy claim */
	uint8_t lazy;        /* RUNS: claimed on 4 KiB pages (1: small zone, 2: a sparse-
				prone run, 3: a span of big blocks): huge pages once
				resident enough (subrelease.c) */
	uint8_t lazy_looked; /* lazy: looks armed since the claim (subrelease.c) */
	uint8_t holding;     /* RUNS: free pages held out of free_map for a subrelease */
	uint8_t sparse;      /* RUNS: 1 on the zone's sparse FIFO, 2 on its dense list,
				3 on a pass's local list (subrelease.c) */
	uint8_t subrel_gen;  /* RUNS: bumped by each subrelease of it */
	uint8_t evac;        /* MOVABLE: being emptied by compaction: no new runs here */
	uint8_t secret;      /* enum spb_secret_backing: secret memory is mapped here
				(SECRET, or FREE until released or claimed) */
	uint32_t multi_npb;  /* MULTI_HEAD: pageblocks in the run */
	uint64_t freed_at;   /* ms, when it went free (decay) */
	uint64_t sparse_since; /* ms, when it became sparse (subrelease) */
	struct spb *owner;
	struct spb_link link;  /* RUNS: spb->partial[cls]; free+dirty: zone->dirty */
	struct spb_link sparse_link; /* RUNS: zone->sparse or zone->dense */
	/* The page maps and run lengths are in struct spb (spb__pbm,
	 * spb__run_len): 1.2 KiB a pageblock, kept apart so that setting up
	 * an SPB touches 512 small descriptors, not 660 KiB of them. */
};

/* RUNS: the page maps of a pageblock. */
struct spb_pb_maps {
	spb_map512_t free_map;     /* bit set = page free */
	spb_map512_t released_map; /* free and given back (subset of free_map) */
	spb_map512_t held_map;     /* being given back, out of free_map meanwhile */
	/* bit set at a run's first page = the program freed the run into a
	 * thread's run cache (runcache.c): allocated to the engine, free to
	 * the program. Set and cleared by atomic bit operations, no lock. */
	spb_map512_t cached_map;
};

/* Common header of what spb__map points at. */
enum spb_region_kind { SPB_REGION_SPB = 1, SPB_REGION_LARGE = 2 };
struct spb_region {
	uint8_t kind;
	uint8_t cls;
	uint8_t rung;
	uintptr_t base;
	size_t size; /* data bytes */
};

struct spb {
	struct spb_region r;
	struct spb_zone *zone;
	uint8_t category;  /* enum spb_category */
	uint8_t fullness;  /* bucket */
	uint8_t rung;      /* SPB-level rung: HUGETLB_1G, THP or 4K */
	uint8_t dead;      /* unmapped: descriptor waits for reuse */
	uint16_t nr_free_pb;           /* pageblocks tagged FREE */
	uint16_t nr_busy_pb;           /* pageblocks being released */
	uint16_t nr_class_pb[SPB_NR_CLASSES];
	uint32_t nr_used_pages;        /* pages handed out (runs + multi) */
	uint32_t nr_partial_free[SPB_NR_CLASSES]; /* free pages in RUNS pbs */
	uint32_t tainted_contrib;      /* what this SPB adds to zone->tainted_free_pb */
	uint64_t empty_since;          /* ms, for the unmap decay */
	struct spb_link link;          /* zone->lists[category][fullness] */
	struct spb_link empty_link;    /* zone->emptyq while empty */
	struct spb_link partial[SPB_NR_CLASSES]; /* RUNS pbs with free pages */
	spb_map512_t partial_map[SPB_NR_CLASSES]; /* the same, by index: lowest first */
	spb_map512_t free_pb_map;      /* bit set = pageblock FREE */
	spb_map512_t dirty_pb_map;     /* bit set = FREE and still holding memory */
	struct spb_pageblock pb[SPB_PB_PER_SPB];
	/* The malloc layer's owner of each 4 KiB page (its span), or NULL for
	 * page runs handed out directly. 2 MiB of address space per SPB,
	 * touched only where spans live. */
	void *_Atomic pagemap[SPB_PB_PER_SPB * SPB_PAGES_PER_PB];
	/* RUNS: pages in the run starting at each page of each pageblock
	 * (0 = no run starts there). 512 KiB per SPB, touched only for
	 * pageblocks that held page runs. */
	uint16_t run_len[SPB_PB_PER_SPB][SPB_PAGES_PER_PB];
	struct spb_pb_maps pb_maps[SPB_PB_PER_SPB]; /* RUNS; 96 KiB, touched likewise */
};

/* The page maps of pageblock pb. */
static inline struct spb_pb_maps *spb__pbm(const struct spb_pageblock *pb)
{
	return &pb->owner->pb_maps[pb - pb->owner->pb];
}

/* The run-length array of pageblock pb. */
static inline uint16_t *spb__run_len(const struct spb_pageblock *pb)
{
	return pb->owner->run_len[pb - pb->owner->pb];
}

/* The word of pb's cached_map holding page pg's flag, and its bit (the run
 * cache's flag: runcache.c sets and clears it, steer.c checks it). */
static inline uint64_t *spb__cached_word(const struct spb_pageblock *pb, unsigned pg,
					 uint64_t *bit)
{
	*bit = (uint64_t)1 << (pg & 63);
	return &spb__pbm(pb)->cached_map.w[pg >> 6];
}

struct spb_zone {
	pthread_mutex_t lock;
	int node;
	uint32_t nr_spbs;
	uint32_t nr_spbs_reserving; /* reservations in flight (lock dropped) */
	/* Unlocked windows (a reservation, a decay pass, an SPB or large
	 * unmap: state that is half-changed while system calls run without
	 * the lock). fork waits for them: prefork sets fork_pending, which
	 * keeps new passes from starting, and sleeps on windows_cv until
	 * nr_windows is 0, so a child never inherits one (zone.c). */
	uint32_t nr_windows;
	bool fork_pending;
	pthread_cond_t windows_cv;
	uint32_t movers;            /* compaction passes reading the zone's spans: no SPB unmap */
	uint32_t tainted_free_pb;   /* free pageblocks in tainted SPBs */
	uint32_t nr_by_cat[SPB_NR_CATS];
	uint32_t total_pb;          /* pageblocks in the zone's SPBs */
	bool below_reserve;         /* tainted_free_pb <= reserve (edge state) */
	bool evac_wanted;           /* signal for the compaction thread */
	uint8_t defrag_defer;       /* defrag requests to skip after failures (backoff) */
	uint8_t defrag_shift;       /* failures in a row, capped: skip 2^shift - 1 */
	uint8_t shrink_armed;       /* shrink.c: triggers count (set by spb-shrink, read here) */
	uint8_t shrink_want;        /* a trigger fired: unlock_signal calls spb__shrink_hook */
	/* What the looks at sparse-prone lazy pageblocks found lately: > 0,
	 * dense (their runs are written whole: new ones are claimed huge,
	 * but for one in 32 that keeps the zone looking); <= 0,
	 * sparse (pageblock.c, subrelease.c). */
	int8_t lazy_learn;
	uint8_t lazy_explore;
	uint64_t next_decay;        /* ms: earliest pending release, or UINT64_MAX */
	struct spb_link lists[SPB_NR_CATS][SPB_NR_FULLNESS];
	struct spb_link dirty;      /* free pageblocks holding memory, oldest first */
	struct spb_link sparse;     /* RUNS pageblocks with free memory to give back, oldest first */
	struct spb_link dense;      /* RUNS pageblocks to go back on huge pages: split ones
				       dense again (due at once, at the head), lazy ones
				       (a residency look due, at the tail) */
	uint64_t released_pages;    /* free pages of RUNS pageblocks given back (gauge) */
	struct spb_link emptyq;     /* empty SPBs, oldest first */
	struct spb_link dead;       /* unmapped SPB descriptors, kept for reuse */
	struct spb_link large_spare; /* descriptors of unmapped large mappings, for reuse */
	struct spb_link large_retry; /* freed large mappings the OS refused to unmap */
	uint64_t counters[SPB_NR_COUNTERS];
	/* gauges */
	uint64_t pb_by_class[SPB_NR_CLASSES];
	uint64_t pb_by_rung[SPB_NR_RUNGS];
	uint64_t large_bytes;
};

/* Pageblock pb (of zone z) now on rung r: the zone's count by rung
 * follows (lock held). */
static inline void spb__pb_set_rung_locked(struct spb_zone *z, struct spb_pageblock *pb,
					   uint8_t r)
{
	if (pb->rung != r) {
		z->pb_by_rung[pb->rung]--;
		z->pb_by_rung[r]++;
		pb->rung = r;
	}
}

/* A hook the compaction thread of a later layer installs: called (without
 * the zone lock) when a zone's tainted reserve is crossed. */
extern void (*spb__evac_hook)(struct spb_zone *z) SPB_HIDDEN;
/* The last-chance and direct compaction hook (compactd.c): a non-movable
 * request for npages (runs; npb == 0) or npb pageblocks found no free
 * pageblock in the tainted SPBs while they hold MOVABLE pageblocks. Called
 * without the zone lock; evacuates some of those (bounded, single flight)
 * and returns memory captured for the request (a run of npages, or npb ==
 * 1 pageblock, of class cls), or NULL: the caller then claims again, once,
 * without asking. */
extern void *(*spb__defrag_hook)(struct spb_zone *z, unsigned cls, unsigned npages,
				 unsigned align, unsigned npb) SPB_HIDDEN;
/* The shrinker layer's hook (shrink.c): called (without the zone lock) by
 * spb__zone_unlock_signal after a shrink trigger fired under the lock;
 * queues one pass for the zone (single flight) and wakes its thread. */
extern void (*spb__shrink_hook)(struct spb_zone *z) SPB_HIDDEN;
/* Zones [from, to) were just added (their count published): armed like
 * the others while the shrink thread has the zones armed. */
void spb__shrink_zones_added(int from, int to) SPB_HIDDEN;
/* A shrink trigger (SHRINK_TRIGGER_*; seed 003) under the zone lock:
 * counted while the shrinker layer runs, acted on only while the zone is
 * armed (no pass pending, not resting): a load and an increment otherwise. */
static inline void spb__shrink_trigger_locked(struct spb_zone *z, enum spb_counter why)
{
	if (SPB_LIKELY(!__atomic_load_n(&spb__shrink_hook, __ATOMIC_RELAXED)))
		return;
	z->counters[why]++;
	if (__atomic_load_n(&z->shrink_armed, __ATOMIC_RELAXED))
		z->shrink_want = 1;
}

/* Claim free pageblock idx of s for a request (lock held): a run of
 * npages of class cls in it, or (npb == 1) the whole pageblock. */
void *spb__capture_locked(struct spb *s, unsigned idx, unsigned cls, unsigned npages,
			  unsigned align, unsigned npb) SPB_HIDDEN;
/* Internal flags (beside SPB_F_*): claim without the defrag hook; a
 * sparse-prone request (malloc's direct page runs, spans of big blocks):
 * a pageblock claimed for it starts on 4 KiB pages (SPBMALLOC_SPARSE_4K). */
#define SPB_F_NO_DEFRAG 0x100u
#define SPB_F_SPARSE 0x200u
#define SPB_F_SPAN 0x400u /* with SPB_F_SPARSE: for a span (pb->lazy 3, not 2) */

/* ---- spbmap.c ---- */
extern struct spb_region *_Atomic spb__map[SPB_MAP_SLOTS] SPB_HIDDEN;
static inline struct spb_region *spb__region_of(const void *p)
{
	uintptr_t a = (uintptr_t)p;
	if (SPB_UNLIKELY((a >> SPB_SPB_SHIFT) >= SPB_MAP_SLOTS))
		return NULL;
	return __atomic_load_n(&spb__map[a >> SPB_SPB_SHIFT], __ATOMIC_ACQUIRE);
}
void spb__map_register(uintptr_t base, size_t size, struct spb_region *r) SPB_HIDDEN;
void spb__map_unregister(uintptr_t base, size_t size) SPB_HIDDEN;

/* ---- zone.c ---- */
extern struct spb_zone spb__zones[SPB_NR_ZONES_MAX] SPB_HIDDEN;
extern int spb__nr_zones SPB_HIDDEN;
/* The zones in use: they only grow (hwloc's discovery adds some, zone.c),
 * each set up before the count that shows it is stored (release). */
static inline int spb__zones_count(void)
{
	return __atomic_load_n(&spb__nr_zones, __ATOMIC_ACQUIRE);
}
void spb__engine_init(void) SPB_HIDDEN;
/* The zone of the node the calling thread runs on now (zone 0 with one
 * zone): heaps ask at creation and at each refill (heap.c). */
struct spb_zone *spb__zone_current(void) SPB_HIDDEN;
/* Run hwloc's discovery once (topo.c) where no allocator lock is held:
 * counts the source, adds zones for nodes sysfs did not show. Returns
 * spb__topo_discover's result (1 loaded now, -1 failed now, 0 nothing). */
int spb__engine_topo_discover(void) SPB_HIDDEN;
/* Count a binding's outcome (spb__topo_bind) into a counter array. */
static inline void spb__count_bind(uint64_t *c, enum spb_bind b)
{
	if (b == SPB_BIND_DONE)
		c[NUMA_BIND]++;
	else if (b == SPB_BIND_KEPT)
		c[NUMA_BIND_KEPT]++;
	else if (b == SPB_BIND_REFUSED)
		c[NUMA_BIND_FAIL]++;
}
void spb__zone_lock(struct spb_zone *z) SPB_HIDDEN;
void spb__zone_unlock(struct spb_zone *z) SPB_HIDDEN;
/* Free pageblocks the zone keeps in tainted SPBs for non-movable demand. */
uint32_t spb__zone_reserve(const struct spb_zone *z) SPB_HIDDEN;
/* After any change to the zone's pageblocks: recompute the reserve edge
 * (counting a crossing, setting evac_wanted), unlock, and run the
 * evacuation hook without the lock when the reserve was just crossed. */
void spb__zone_unlock_signal(struct spb_zone *z) SPB_HIDDEN;
/* Queue a free pageblock for release after the decay delay. */
void spb__zone_pb_dirty_locked(struct spb_zone *z, struct spb_pageblock *pb) SPB_HIDDEN;
void spb__zone_pb_undirty_locked(struct spb_zone *z, struct spb_pageblock *pb) SPB_HIDDEN;
/* Release what is due; returns ms until the next item is due. */
uint64_t spb__zone_decay(struct spb_zone *z, uint64_t now) SPB_HIDDEN;
/* Cheap check from the slow path: wakes the background thread when a
 * release is overdue; without one, runs a bounded share of the decay. */
void spb__zone_decay_tick(struct spb_zone *z) SPB_HIDDEN;
/* An unlocked window: enter with the lock held (drops it), exit retakes
 * it. prefork waits until no window is open; postfork undoes it. */
void spb__zone_window_enter(struct spb_zone *z) SPB_HIDDEN;
void spb__zone_window_exit(struct spb_zone *z) SPB_HIDDEN;
/* Close a window with the lock held (a pass that opened one). */
void spb__zone_window_close_locked(struct spb_zone *z) SPB_HIDDEN;
void spb__zone_prefork(struct spb_zone *z) SPB_HIDDEN;
void spb__zone_postfork(struct spb_zone *z, bool child) SPB_HIDDEN;

/* ---- spb.c ---- */
/* Reserve and add a new SPB to z. Called and returns with the lock held
 * (dropped around the mmap). NULL if the OS refused or the limit is hit. */
struct spb *spb__spb_grow_locked(struct spb_zone *z) SPB_HIDDEN;
/* Recompute category and fullness; move between lists in O(1). */
void spb__spb_update_locked(struct spb *s) SPB_HIDDEN;
/* Unlink an empty SPB and unmap it (lock dropped around munmap). False
 * when the OS refused: the SPB is back, empty, retried after the delay. */
bool spb__spb_unmap_locked(struct spb *s) SPB_HIDDEN;
static inline unsigned spb__pb_index(const struct spb *s, const struct spb_pageblock *pb)
{
	return (unsigned)(pb - s->pb);
}
/* The pageblock holding p (an address inside an SPB). */
static inline struct spb_pageblock *spb__pb_of(struct spb *s, const void *p)
{
	return &s->pb[((uintptr_t)p >> SPB_PB_SHIFT) & (SPB_PB_PER_SPB - 1)];
}

/* p (an address in an SPB) lies in a pageblock compaction is emptying:
 * a hint, read without the zone lock (the flag is set and cleared under
 * it). False for an address outside every SPB. */
static inline bool spb__addr_evac(const void *p)
{
	struct spb_region *r = spb__region_of(p);
	return r && r->kind == SPB_REGION_SPB &&
	       __atomic_load_n(&spb__pb_of((struct spb *)r, p)->evac, __ATOMIC_RELAXED);
}

static inline void *spb__pb_addr(const struct spb *s, unsigned i)
{
	return (void *)(s->r.base + ((uintptr_t)i << SPB_PB_SHIFT));
}
static inline bool spb__class_taints(unsigned cls) { return cls != SPB_MOVABLE; }
/* A RUNS pageblock onto / off its SPB's partial list and map. */
static inline void spb__partial_add(struct spb *s, struct spb_pageblock *pb)
{
	unsigned i = spb__pb_index(s, pb);
	spb__list_add_tail(&s->partial[pb->cls], &pb->link);
	s->partial_map[pb->cls].w[i >> 6] |= 1ull << (i & 63);
}
static inline void spb__partial_del(struct spb *s, struct spb_pageblock *pb)
{
	unsigned i = spb__pb_index(s, pb);
	spb__list_del(&pb->link);
	s->partial_map[pb->cls].w[i >> 6] &= ~(1ull << (i & 63));
}

/* ---- pageblock.c ---- */
/* Tag n free pageblocks starting at i with cls (backing them first).
 * flags: SPB_F_SPARSE (above). Returns true when all of them are known
 * to read as zero. */
bool spb__pb_claim_locked(struct spb *s, unsigned i, unsigned n, unsigned cls,
			  unsigned mode, unsigned flags) SPB_HIDDEN;
/* Return n class pageblocks starting at i to FREE. */
void spb__pb_unclaim_locked(struct spb *s, unsigned i, unsigned n) SPB_HIDDEN;
/* Page run of n pages aligned to align pages in a RUNS pageblock, or -1. */
int spb__pb_run_alloc_locked(struct spb *s, struct spb_pageblock *pb, unsigned n,
			     unsigned align, bool *zero) SPB_HIDDEN;
/* Free the run at page index pg; returns pages freed. Faults on bad input. */
unsigned spb__pb_run_free_locked(struct spb *s, struct spb_pageblock *pb,
				 unsigned pg, const void *p) SPB_HIDDEN;

/* Grow or shrink the run at page pg to n_new pages (>= 1) in place;
 * false when the pages after it are not free. */
bool spb__pb_run_resize_locked(struct spb *s, struct spb_pageblock *pb, unsigned pg,
			       unsigned n_new) SPB_HIDDEN;

/* ---- subrelease.c ---- */
/* After a RUNS pageblock's free pages changed: queue it for a subrelease
 * when enough of them hold memory, or take it off the queue. */
void spb__sparse_update_locked(struct spb_zone *z, struct spb_pageblock *pb) SPB_HIDDEN;
/* A run [pg, pg+n) was handed out: the given-back pages in it are memory
 * again (counted), and the pageblock's queue state follows. */
void spb__sparse_run_taken_locked(struct spb_zone *z, struct spb_pageblock *pb,
				  unsigned pg, unsigned n) SPB_HIDDEN;
/* A RUNS pageblock is claimed (fresh state) or was claimed back to FREE. */
void spb__sparse_reset_locked(struct spb_zone *z, struct spb_pageblock *pb) SPB_HIDDEN;
/* Give back the free pages of the sparse pageblocks that are due, in at
 * most max_calls system calls, the lock dropped around them (one window). */
void spb__subrelease_due_locked(struct spb_zone *z, uint64_t now, uint32_t max_calls) SPB_HIDDEN;
/* spb_trim: queue every RUNS pageblock with free memory, due at once. */
void spb__subrelease_all_locked(struct spb_zone *z) SPB_HIDDEN;
/* Span trim (heap.c, span.c): the owner of the span at run gives back n
 * (> 0) of its pages no live block touches, or takes n back (< 0). For
 * n > 0: SPB_TRIM_NO when the pageblock cannot be split (hugetlb,
 * secret), or is on a huge page and !may_split: nothing changed;
 * SPB_TRIM_ADVISE when the caller must advise
 * MADV_NOHUGEPAGE on the pageblock first (it was on a huge page: it is
 * on 4 KiB pages from now on), else SPB_TRIM_OK. A pageblock holding
 * such pages is not put on huge pages again while they are many. */
enum { SPB_TRIM_NO, SPB_TRIM_OK, SPB_TRIM_ADVISE };
int spb__span_pages_given(void *run, int n, bool may_split) SPB_HIDDEN;
/* spb__free of a span's run (at run) whose given-back pages are rel (bit
 * i: page i of the run): they become free pages known to be released. */
size_t spb__free_trimmed(void *run, uint64_t rel) SPB_HIDDEN;
/* Under the lock, after the run at page pg of pb was freed: its pages in
 * rel are marked given back (pb still holds runs). */
void spb__trimmed_run_freed_locked(struct spb_zone *z, struct spb_pageblock *pb, unsigned pg,
				   uint64_t rel) SPB_HIDDEN;
/* ms when the next sparse or dense pageblock is due (UINT64_MAX: none). */
uint64_t spb__subrelease_due(const struct spb_zone *z) SPB_HIDDEN;
/* A sparse-prone lazy pageblock the calling thread just filled with runs,
 * while its zone has not learnt they are written whole: looked at
 * (mincore) by spb__lazy_look_now once the zone lock is dropped. */
extern SPB_TLS void *spb__lazy_look SPB_HIDDEN; /* the pageblock's address */
void spb__lazy_look_now(void) SPB_HIDDEN;
/* ---- steer.c ---- */
/* was_zero (may be NULL): set when the run is known to read as zero. */
void *spb__alloc_pages(struct spb_zone *z, size_t npages, size_t align_pages,
		       unsigned cls, unsigned flags, bool *was_zero) SPB_HIDDEN;
void *spb__alloc_pageblocks(struct spb_zone *z, size_t npb, size_t align_pb,
			    unsigned cls, unsigned flags) SPB_HIDDEN;
/* Free a page run, pageblock run or large mapping; returns its size. */
size_t spb__free(void *p) SPB_HIDDEN;
/* spb__free of a run the malloc layer's run cache held (flagged cached). */
size_t spb__free_cached(void *p) SPB_HIDDEN;
size_t spb__usable_size(const void *p) SPB_HIDDEN;
/* Resize a page run or pageblock run in place to hold bytes; returns the
 * new usable size, or 0 when it cannot (the caller moves the data). */
size_t spb__resize_in_place(void *p, size_t bytes) SPB_HIDDEN;
/* Page-granular allocation of any size (api.c): page run, pageblocks or a
 * dedicated mapping. align: a power of two <= 1 GiB (0 = natural). */
void *spb__pages_alloc(struct spb_zone *z, size_t bytes, size_t align,
		       unsigned cls, unsigned flags) SPB_HIDDEN;

/* Run by spb_trim() before the release (all = true), and by the
 * background thread once a second (all = false): the malloc layer sweeps
 * the spans exited threads left, so their pageblocks can go, and takes
 * back cached page runs (every one, or those idle since the last round). */
extern void (*spb__reclaim_hook)(bool all) SPB_HIDDEN;

/* ---- large.c ---- */
/* A dedicated mapping's descriptor: kept for reuse once unmapped, never
 * given back (a stale lookup never faults). */
struct spb_large {
	struct spb_region r;
	struct spb_zone *zone;
	size_t mapped;
	uint64_t retry_since;  /* on zone->large_retry: when the unmap was refused */
	struct spb_link link;  /* zone->large_spare or zone->large_retry */
};
void *spb__large_alloc(struct spb_zone *z, size_t bytes, size_t align,
		       unsigned cls) SPB_HIDDEN;
void spb__large_free(struct spb_region *r, const void *p) SPB_HIDDEN;
/* Decay: retry the unmaps the OS refused that are due (lock held), and
 * when the oldest is due (ms; lock held, list not empty). */
void spb__large_retry_locked(struct spb_zone *z, uint64_t now) SPB_HIDDEN;
uint64_t spb__large_retry_due(const struct spb_zone *z) SPB_HIDDEN;

/* ---- secret.c (engine side) ---- */
/* Make pageblocks [i, i+n) of s secret before a SECRET claim (lock held;
 * the system calls run under it, like a hugetlb claim's). False when the
 * OS refused (counted): the claim fails with ENOMEM; pageblocks made
 * secret on the way stay so, free, released after the decay delay. */
bool spb__secret_flip_locked(struct spb *s, unsigned i, unsigned n) SPB_HIDDEN;
/* A free secret pageblock is claimed by another class: wiped, plain
 * memory mapped over it (lock held). */
void spb__secret_unflip_locked(struct spb *s, unsigned j) SPB_HIDDEN;
/* The decay released a secret pageblock (wiped, plain again). */
void spb__secret_released_locked(struct spb_pageblock *pb) SPB_HIDDEN;
/* spb__free of p, which lies in a SECRET pageblock: wipes the page run or
 * pageblocks (lock not held). False: p is a pointer a forked child
 * inherited from its parent: the free is ignored (counted). */
bool spb__secret_free_pages(struct spb *s, struct spb_pageblock *pb, const void *p) SPB_HIDDEN;
/* p lies in a SECRET pageblock (a hint without the lock: true for a live
 * secret allocation). */
bool spb__secret_ptr(const void *p) SPB_HIDDEN;
/* Wipe the secret pageblocks of an SPB about to be unmapped (lock held,
 * they are all free); returns how many were secret. */
unsigned spb__secret_unmap_spb_locked(struct spb *s) SPB_HIDDEN;

/* ---- counters.c ---- */
uint64_t spb__counter_sum(enum spb_counter c) SPB_HIDDEN;
/* Count an event with an atomic add (off the hot path only). */
void spb__counter_add(enum spb_counter c, uint64_t n) SPB_HIDDEN;
/* Set by the malloc layer: its per-thread counters, folded in on read. */
extern uint64_t (*spb__counter_extra)(enum spb_counter c) SPB_HIDDEN;

/* ---- statseg.c, bgthread.c, summary.c (and os.c's shared mapping) ---- */
struct spb_stats_gauges;
struct spb_stats_spb;
/* mmap(MAP_SHARED) of a file, or private memory when fd < 0 (os.c). */
void *spb__os_map_shared(int fd, size_t size) SPB_HIDDEN;
/* Create and map /dev/shm/spbmalloc.<pid> (idempotent, never allocates). */
void spb__statseg_init(void) SPB_HIDDEN;
/* Write a snapshot into the segment under its seqlock. */
void spb__statseg_publish(void) SPB_HIDDEN;
/* In a forked child: drop the parent's mapping; the child makes its own
 * segment at its next spb__statseg_init (from spb__bg_maybe_start). */
void spb__statseg_atfork_child(void) SPB_HIDDEN;
/* Normal exit: unlink the segment (the mapping stays until the end). */
void spb__statseg_exit(void) SPB_HIDDEN;
/* Whether this process's segment exists (made and not removed). */
bool spb__statseg_ready(void) SPB_HIDDEN;
/* The background thread, each round: answer a request spbstat left in
 * the segment's control slot (copied, checked, run by spb__ctl_remote).
 * Returns whether there is a slot to watch. */
bool spb__statseg_serve_ctl(void) SPB_HIDDEN;
/* ctl.c: run a copied request (seq_ok: its sequence number was the one
 * due); returns 0 or an errno, the value in *result. Counted. */
struct spb_stats_ctl;
int spb__ctl_remote(bool seq_ok, const struct spb_stats_ctl *req, int64_t *result) SPB_HIDDEN;
/* The slot's wake word (NULL while there is no segment): the background
 * thread sleeps on it, a shared futex spbstat wakes. */
uint32_t *spb__statseg_wake_word(void) SPB_HIDDEN;
/* How often, at most, the background thread looks at the slot (should a
 * wake be missed). */
#define SPB_CTL_POLL_MS 1000
/* Gauges and counters (and the SPB map when spbs != NULL, up to max
 * records) from the zones, each zone's lock held briefly. */
void spb__stats_collect(struct spb_stats_gauges *g, uint64_t *counters,
			struct spb_stats_spb *spbs, uint32_t max) SPB_HIDDEN;
/* Start the background thread once (may call malloc: pthread_create). */
void spb__bg_maybe_start(void) SPB_HIDDEN;
/* In a forked child: the thread is gone; the next maybe_start restarts it. */
void spb__bg_atfork_child(void) SPB_HIDDEN;
/* Wake the background thread early (e.g. the reserve was crossed). */
void spb__bg_wake(void) SPB_HIDDEN;
/* Wake it for overdue decay work, at most once per round of it. */
void spb__bg_kick(void) SPB_HIDDEN;
/* Whether the background thread runs (so deferred work has a home). */
bool spb__bg_running(void) SPB_HIDDEN;
/* The compaction layer's hook: run once per round of the background
 * thread; returns ms until it wants to run again (UINT64_MAX: idle). */
extern uint64_t (*_Atomic spb__bg_hook)(uint64_t now_ms) SPB_HIDDEN;
/* The SPBMALLOC_STATS=1 exit summary, write(2) only. */
void spb__stats_print_summary(int fd) SPB_HIDDEN;
/* Arms the exit summary and segment removal (links summary.c in). */
void spb__summary_arm(void) SPB_HIDDEN;

#endif
