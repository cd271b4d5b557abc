/*
 * runcache.c — the run cache: page runs of 128-256 KiB a thread freed,
 * kept in its heap for its next mallocs of about that size, so that a mix
 * of small and mid-size blocks churns without the zone lock (tcmalloc's
 * size classes reach 256 KiB for the same reason). Requests are rounded up
 * to eight classes 16 KiB apart (144 .. 256 KiB); a cached run serves the
 * class it covers. Only plain malloc's UNMOVABLE runs are cached (handles
 * have their own runs, RECLAIMABLE and SECRET memory must go back where
 * shrinkers and wipes find it).
 *
 * A cached run stays allocated in the engine; the program sees it free:
 * its bit in the pageblock's cached_map says so, set by the free that put
 * it in (a second free finds the bit and ends the process), cleared by the
 * malloc that takes it out or by whoever gives it back to the engine. The
 * engine's own free and usable size refuse a run whose bit is set, so a
 * double free through any path is caught. The cache holds at most
 * spb__runcache_cap() per thread (SPBMALLOC_RUN_CACHE_KB, or sized from
 * the L2 cache); runs idle in their slot for a whole
 * background round (about a second) go back to the engine, as do all of
 * them at spb_trim and at thread exit.
 */

#include "heap.h"

#define RC_CLASS_SHIFT 14 /* 16 KiB between classes */
#define RC_MIN_PAGES (9u << (RC_CLASS_SHIFT - SPB_PAGE_SHIFT)) /* 144 KiB */
#define RC_MAX_PAGES (SPB_RC_MAX >> SPB_PAGE_SHIFT)

/* The class a request of size bytes is served from. */
static unsigned req_bin(size_t size)
{
	return (unsigned)((size + (1u << RC_CLASS_SHIFT) - 1) >> RC_CLASS_SHIFT) - 9;
}

/* The class a run of n pages serves: the largest it covers. */
static unsigned run_bin(unsigned n)
{
	return (n >> (RC_CLASS_SHIFT - SPB_PAGE_SHIFT)) - 9;
}

static unsigned page_in_pb(const void *p)
{
	return (unsigned)(((uintptr_t)p >> SPB_PAGE_SHIFT) & (SPB_PAGES_PER_PB - 1));
}

/* The pageblock of a cached run (it stays allocated: its SPB is mapped). */
static struct spb_pageblock *run_pb(const void *p)
{
	return spb__pb_of((struct spb *)spb__region_of(p), p);
}

/* The run at p leaves the cache for the program: its flag cleared;
 * returns its pages. */
static unsigned uncache(void *p)
{
	struct spb_pageblock *pb = run_pb(p);
	unsigned pg = page_in_pb(p);
	uint64_t bit, *w = spb__cached_word(pb, pg, &bit);
	if (SPB_UNLIKELY(!(__atomic_fetch_and(w, ~bit, __ATOMIC_ACQ_REL) & bit)))
		spb__fatal("internal error: a cached run was not flagged cached", p);
	return __atomic_load_n(&spb__run_len(pb)[pg], __ATOMIC_RELAXED);
}

void *spb__runcache_get(struct spb_heap *h, size_t size, size_t *usable)
{
	struct spb_runcache *rc = &h->rc;
	/* Its own class, else one up (at most 12.5 % more). */
	unsigned b0 = req_bin(size), b1 = b0 + 1 < SPB_RC_BINS ? b0 + 1 : b0;
	for (unsigned b = b0; b <= b1; b++)
		for (unsigned d = 0; d < SPB_RC_DEPTH; d++) {
			if (!__atomic_load_n(&rc->slot[b][d], __ATOMIC_RELAXED))
				continue;
			void *p = __atomic_exchange_n(&rc->slot[b][d], NULL, __ATOMIC_ACQUIRE);
			if (!p)
				continue; /* the background thread took it meanwhile */
			size_t bytes = (size_t)uncache(p) << SPB_PAGE_SHIFT;
			__atomic_fetch_sub(&rc->bytes, bytes, __ATOMIC_RELAXED);
			h->counters[RUNCACHE_HIT]++;
			*usable = bytes;
			return p;
		}
	h->counters[RUNCACHE_MISS]++;
	return NULL;
}

/* What a thread's cache may hold: SPBMALLOC_RUN_CACHE_KB, or (-1, the
 * default) sized from the machine: twice a core's L2 cache, within 1-8 MiB.
 * A run freed and taken again soon is then likely still in the caches of
 * the core that wrote it, and a machine with bigger private caches (more
 * memory bandwidth per core to feed) keeps more runs off the zone lock.
 * The topology is sysfs's until hwloc's replaces it (same L2 figure). */
size_t spb__runcache_cap(void)
{
	long kb = spb__opt(OPT_RUN_CACHE_KB);
	if (kb >= 0)
		return (size_t)kb << 10;
	uint64_t l2 = spb__topo_get()->cache_l2;
	uint64_t cap = l2 ? 2 * l2 : (uint64_t)2 << 20;
	if (cap < ((uint64_t)1 << 20))
		cap = (uint64_t)1 << 20;
	if (cap > ((uint64_t)8 << 20))
		cap = (uint64_t)8 << 20;
	return (size_t)cap;
}

bool spb__runcache_put(struct spb *s, void *p, size_t *bytes)
{
	struct spb_heap *h = spb__tls_primary;
	size_t cap = spb__runcache_cap();
	if (!h || !cap || ((uintptr_t)p & (SPB_PAGE_SIZE - 1)) || s->zone != h->zone)
		return false;
	/* Read without the zone lock: for a run the program owns, nobody
	 * changes these (its pageblock stays claimed, its length is its own).
	 * Anything else (not a run start, the wrong class) takes the engine's
	 * locked path, which says what is wrong. */
	struct spb_pageblock *pb = spb__pb_of(s, p);
	if (__atomic_load_n(&pb->cls, __ATOMIC_RELAXED) != SPB_UNMOVABLE ||
	    __atomic_load_n(&pb->mode, __ATOMIC_RELAXED) != SPB_PB_MODE_RUNS)
		return false;
	unsigned pg = page_in_pb(p);
	uint64_t bit, *w = spb__cached_word(pb, pg, &bit);
	if (SPB_UNLIKELY(__atomic_load_n(w, __ATOMIC_RELAXED) & bit))
		spb__fatal("free(): double free detected", p);
	unsigned n = __atomic_load_n(&spb__run_len(pb)[pg], __ATOMIC_RELAXED);
	if (n < RC_MIN_PAGES || n > RC_MAX_PAGES)
		return false;
	struct spb_runcache *rc = &h->rc;
	size_t nb = (size_t)n << SPB_PAGE_SHIFT;
	if (__atomic_load_n(&rc->bytes, __ATOMIC_RELAXED) + nb > cap) {
		h->counters[RUNCACHE_FULL]++;
		return false;
	}
	unsigned b = run_bin(n);
	for (unsigned d = 0; d < SPB_RC_DEPTH; d++) {
		void *expect = NULL;
		if (__atomic_load_n(&rc->slot[b][d], __ATOMIC_RELAXED))
			continue;
		/* Flagged before it is visible in the slot: whoever takes it
		 * finds the flag set. Two frees at once: one finds the other's. */
		if (SPB_UNLIKELY(__atomic_fetch_or(w, bit, __ATOMIC_ACQ_REL) & bit))
			spb__fatal("free(): double free detected", p);
		if (__atomic_compare_exchange_n(&rc->slot[b][d], &expect, p, false,
						__ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
			__atomic_fetch_add(&rc->bytes, nb, __ATOMIC_RELAXED);
			h->counters[RUNCACHE_PUT]++;
			*bytes = nb;
			return true;
		}
		__atomic_fetch_and(w, ~bit, __ATOMIC_RELEASE);
	}
	h->counters[RUNCACHE_FULL]++;
	return false;
}

unsigned spb__runcache_take(struct spb_runcache *rc, bool all, void **out, unsigned max)
{
	unsigned n = 0;
	for (unsigned b = 0; b < SPB_RC_BINS; b++)
		for (unsigned d = 0; d < SPB_RC_DEPTH && n < max; d++) {
			void *p = __atomic_load_n(&rc->slot[b][d], __ATOMIC_RELAXED);
			if (!all) { /* seen is the background stealer's (heaps_lock) */
				void *seen = rc->seen[b][d];
				rc->seen[b][d] = p;
				if (p != seen)
					continue; /* used since the last look */
			}
			if (!p || !__atomic_compare_exchange_n(&rc->slot[b][d], &p, NULL, false,
							       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
				continue;
			/* Still flagged cached: spb__free_cached clears the flag
			 * under the zone lock, with the free. */
			unsigned pages = __atomic_load_n(&spb__run_len(run_pb(p))[page_in_pb(p)],
							 __ATOMIC_RELAXED);
			__atomic_fetch_sub(&rc->bytes, (size_t)pages << SPB_PAGE_SHIFT,
					   __ATOMIC_RELAXED);
			out[n++] = p;
		}
	return n;
}

void spb__runcache_release(void **v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		spb__free_cached(v[i]);
	spb__heap_count(RUNCACHE_DRAINED, n);
}
