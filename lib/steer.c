/*
 * steer.c — where a request goes: the allocation passes, the no-fallback
 * rule, the refusal gate, and freeing back through them.
 *
 * MOVABLE: fullest clean SPB first (pack, so sparse SPBs drain), then an
 * empty SPB, then a new one, and a tainted SPB only above its reserve
 * (the reserve is for non-movable demand; a movable claim that could only
 * be met from the reserve fails, counted in spb_movable_reserve_kept).
 * Non-movable: a partial pageblock of its class (these live only in
 * tainted SPBs), then a free pageblock of a tainted SPB (fullest first),
 * and only then an empty SPB, a new one, or (last) the emptiest clean SPB,
 * which taints it. A pageblock never holds two classes.
 * Refusal gate (seed 001): a non-movable SPB_F_OPTIONAL request gets NULL
 * instead of tainting fresh capacity while a tainted SPB still has free
 * pages or a free pageblock that evacuation could make usable.
 */
#include <errno.h>
#include <string.h>

#include "engine.h"

/* What the walk over tainted SPBs saw (the kernel's spb_tainted_walk):
 * only space that could serve the request counts: free pages in runs
 * pageblocks of its class (for a request of page runs), free pages in
 * MOVABLE pageblocks (evacuation turns them into free pageblocks), any
 * free pageblock. Free pages of another non-movable class cannot: a
 * RECLAIMABLE request is not refused for UNMOVABLE pages, nor the reverse. */
struct tainted_walk {
	unsigned cls;
	bool runs;
	bool saw_free_pages;
	bool saw_free_pb;
};

enum claim_result { CLAIM_OK, CLAIM_REFUSED, CLAIM_NOSPACE, CLAIM_DEFRAG };

void *(*spb__defrag_hook)(struct spb_zone *z, unsigned cls, unsigned npages, unsigned align,
			  unsigned npb);

/* MOVABLE pageblocks in tainted SPBs: what evacuation could free there. */
static uint32_t tainted_movable_pb(const struct spb_zone *z)
{
	uint32_t n = 0;
	for (int f = 0; f < SPB_NR_FULLNESS; f++) {
		const struct spb_link *h = &z->lists[SPB_CAT_TAINTED][f];
		for (const struct spb_link *l = h->next; l != h; l = l->next)
			n += spb__container_of(l, struct spb, link)->nr_class_pb[SPB_MOVABLE];
	}
	return n;
}

/* Seeds 003 and 000: before a non-movable claim taints fresh capacity (an
 * empty, new or clean SPB) or fails, ask the compaction layer to evacuate
 * MOVABLE pageblocks of the tainted SPBs; after a request that gained
 * nothing, skip the next 2^n - 1 (n up to 6) instead of storming. */
static bool want_defrag(struct spb_zone *z, unsigned flags)
{
	if ((flags & SPB_F_NO_DEFRAG) || !__atomic_load_n(&spb__defrag_hook, __ATOMIC_ACQUIRE) ||
	    !tainted_movable_pb(z))
		return false;
	if (z->defrag_defer) {
		z->defrag_defer--;
		z->counters[SPB_DEFRAG_DEFERRED]++;
		return false;
	}
	return true;
}

static uint32_t spb_free_pages(const struct spb *s)
{
	uint32_t n = (uint32_t)s->nr_free_pb * SPB_PAGES_PER_PB;
	for (unsigned c = 0; c < SPB_NR_CLASSES; c++)
		n += s->nr_partial_free[c];
	return n;
}

/* One pageblock of a 1 GiB page cannot be made secret: a SECRET claim
 * passes such an SPB over (counted). */
static bool secret_skips(struct spb_zone *z, const struct spb *s, unsigned cls)
{
	if (cls != SPB_SECRET || s->rung != SPB_RUNG_HUGETLB_1G)
		return false;
	z->counters[SECRET_SKIP_1G]++;
	return true;
}

/* npb free pageblocks in a row in s: pageblocks that still hold memory
 * first (reusing them costs no page fault and keeps RSS from growing while
 * freed ones wait for their decay), then any. */
static int find_pbs(const struct spb *s, unsigned npb, unsigned align)
{
	int i = spb__map_find_run(&s->dirty_pb_map, npb, align);
	return i >= 0 ? i : spb__map_find_run(&s->free_pb_map, npb, align);
}

#define SCAN_FULLEST_MAX 16 /* SPBs of a bucket compared for the fullest */

/* An SPB of category cat with npb free pageblocks in a row at a multiple
 * of align: from the fullest bucket (or the emptiest) on; fullest first
 * also within the bucket (fewest free pageblocks among the first
 * SCAN_FULLEST_MAX that fit: a bucket spans a quarter of an SPB, and
 * packing the fuller one is what lets the emptier drain). */
static struct spb *scan_for_pbs(struct spb_zone *z, unsigned cat, bool fullest_first,
				unsigned npb, unsigned align, int *idx,
				struct tainted_walk *w, unsigned cls)
{
	for (int k = 0; k < SPB_NR_FULLNESS; k++) {
		int f = fullest_first ? SPB_NR_FULLNESS - 1 - k : k;
		struct spb_link *h = &z->lists[cat][f];
		struct spb *best = NULL;
		unsigned seen = 0;
		for (struct spb_link *l = h->next; l != h; l = l->next) {
			struct spb *s = spb__container_of(l, struct spb, link);
			if (w) {
				w->saw_free_pb |= s->nr_free_pb > 0;
				w->saw_free_pages |= (w->runs && s->nr_partial_free[w->cls] > 0) ||
						     s->nr_partial_free[SPB_MOVABLE] > 0;
			}
			if (s->nr_free_pb < npb)
				continue;
			if (SPB_UNLIKELY(secret_skips(z, s, cls)))
				continue;
			int i = find_pbs(s, npb, align);
			if (i < 0)
				continue;
			if (!best || s->nr_free_pb < best->nr_free_pb) {
				best = s;
				*idx = i;
			}
			if (!fullest_first || ++seen == SCAN_FULLEST_MAX)
				break;
		}
		if (best)
			return best;
	}
	return NULL;
}

static struct spb *grow_for_pbs(struct spb_zone *z, unsigned npb, unsigned align, int *idx,
				unsigned cls)
{
	struct spb *s = spb__spb_grow_locked(z);
	if (!s)
		return NULL;
	if (secret_skips(z, s, cls))
		return NULL;
	*idx = spb__map_find_run(&s->free_pb_map, npb, align);
	return *idx >= 0 ? s : NULL;
}

static struct spb *find_movable(struct spb_zone *z, unsigned npb, unsigned align, int *idx)
{
	const unsigned cls = SPB_MOVABLE;
	struct spb *s = scan_for_pbs(z, SPB_CAT_CLEAN, true, npb, align, idx, NULL, cls);
	if (!s)
		s = scan_for_pbs(z, SPB_CAT_EMPTY, true, npb, align, idx, NULL, cls);
	if (!s)
		s = grow_for_pbs(z, npb, align, idx, cls);
	/* Tainted SPBs only for what lies above their reserve: the reserve's
	 * pageblocks are kept for non-movable demand (a movable claim there
	 * would make the next non-movable one taint a clean SPB). Movable
	 * memory can wait for the compactor; the non-movable cannot move. */
	if (!s && z->tainted_free_pb >= spb__zone_reserve(z) + npb)
		s = scan_for_pbs(z, SPB_CAT_TAINTED, true, npb, align, idx, NULL, cls);
	if (!s && z->tainted_free_pb >= npb)
		z->counters[SPB_MOVABLE_RESERVE_KEPT]++;
	return s;
}

static struct spb *find_unmovable(struct spb_zone *z, unsigned npb, unsigned align,
				  unsigned cls, unsigned flags, unsigned mode, int *idx,
				  enum claim_result *res)
{
	struct tainted_walk w = {cls, mode == SPB_PB_MODE_RUNS, false, false};
	struct spb *s = scan_for_pbs(z, SPB_CAT_TAINTED, true, npb, align, idx, &w, cls);
	if (s)
		return s;
	/* Seed 003's demand trigger: fresh capacity is about to be tainted
	 * (or the claim fails); RECLAIMABLE caches should make room. */
	spb__shrink_trigger_locked(z, SHRINK_TRIGGER_DEMAND);
	if ((flags & SPB_F_OPTIONAL) && (w.saw_free_pages || w.saw_free_pb)) {
		z->counters[SPB_HIGHORDER_REFUSED]++;
		z->evac_wanted = true;
		*res = CLAIM_REFUSED;
		return NULL;
	}
	/* The last-chance defrag: evacuation of a tainted SPB before fresh
	 * capacity is tainted. */
	if (want_defrag(z, flags)) {
		*res = CLAIM_DEFRAG;
		return NULL;
	}
	s = scan_for_pbs(z, SPB_CAT_EMPTY, true, npb, align, idx, NULL, cls);
	if (!s)
		s = grow_for_pbs(z, npb, align, idx, cls);
	if (!s) /* emptiest clean SPB: the cheapest to evacuate later */
		s = scan_for_pbs(z, SPB_CAT_CLEAN, false, npb, align, idx, NULL, cls);
	return s;
}

static enum claim_result claim(struct spb_zone *z, unsigned npb, unsigned align,
			       unsigned cls, unsigned flags, unsigned mode,
			       struct spb **out, unsigned *idx, bool *zero)
{
	enum claim_result res = CLAIM_NOSPACE;
	int i = -1;
	struct spb *s = cls == SPB_MOVABLE ? find_movable(z, npb, align, &i)
					   : find_unmovable(z, npb, align, cls, flags, mode, &i, &res);
	if (!s) {
		if (res == CLAIM_NOSPACE) {
			z->counters[SPB_NOSPACE]++;
			z->counters[SECRET_NOMEM] += cls == SPB_SECRET;
		}
		return res;
	}
	if (cls == SPB_SECRET && !spb__secret_flip_locked(s, (unsigned)i, npb)) {
		z->counters[SECRET_NOMEM]++;
		return CLAIM_NOSPACE;
	}
	*zero = spb__pb_claim_locked(s, (unsigned)i, npb, cls, mode, flags);
	*out = s;
	*idx = (unsigned)i;
	return CLAIM_OK;
}

/* Pass 1 for page runs: a partial pageblock of the class, fullest SPB
 * first (movable looks at clean SPBs before tainted ones), and in an SPB
 * the lowest pageblock first, as jemalloc takes its lowest extents: new
 * runs gather at the bottom, so pageblocks higher up drain and go back
 * whole. Pageblocks a subrelease split (subrelease.c) come last: their
 * free pages fault in one by one and they are off huge pages, while
 * filling the others keeps the huge pages dense. */
static void *run_from_partials_pass(struct spb_zone *z, unsigned npages, unsigned align,
				    unsigned cls, bool split_ok, bool *saw_split, bool *zero)
{
	static const unsigned movable_cats[] = {SPB_CAT_CLEAN, SPB_CAT_TAINTED};
	static const unsigned other_cats[] = {SPB_CAT_TAINTED};
	const unsigned *cats = cls == SPB_MOVABLE ? movable_cats : other_cats;
	unsigned ncats = cls == SPB_MOVABLE ? 2 : 1;
	for (unsigned c = 0; c < ncats; c++)
		for (int f = SPB_NR_FULLNESS - 1; f >= 0; f--) {
			struct spb_link *h = &z->lists[cats[c]][f];
			for (struct spb_link *l = h->next; l != h; l = l->next) {
				struct spb *s = spb__container_of(l, struct spb, link);
				if (s->nr_partial_free[cls] < npages)
					continue;
				for (unsigned w = 0; w < SPB_MAP_WORDS; w++) {
					for (uint64_t m = s->partial_map[cls].w[w]; m; m &= m - 1) {
						unsigned i = w * 64 + (unsigned)__builtin_ctzll(m);
						struct spb_pageblock *pb = &s->pb[i];
						if (pb->longest < npages || pb->evac)
							continue;
						if (pb->nohuge != split_ok) {
							*saw_split |= pb->nohuge;
							continue;
						}
						int at = spb__pb_run_alloc_locked(s, pb, npages, align,
										  zero);
						if (at >= 0)
							return (char *)spb__pb_addr(s, i) +
							       ((size_t)at << SPB_PAGE_SHIFT);
					}
				}
			}
		}
	return NULL;
}

static void *run_from_partials(struct spb_zone *z, unsigned npages, unsigned align,
			       unsigned cls, bool *zero)
{
	bool saw_split = false;
	void *p = run_from_partials_pass(z, npages, align, cls, false, &saw_split, zero);
	if (!p && saw_split)
		p = run_from_partials_pass(z, npages, align, cls, true, &saw_split, zero);
	return p;
}

/* Seed 003's proactive high-water trigger: a non-movable run came from a
 * tainted SPB whose free pages are below the reserve's worth (lock held). */
static void highwater_check(struct spb_zone *z, const void *p)
{
	if (SPB_LIKELY(!__atomic_load_n(&spb__shrink_hook, __ATOMIC_RELAXED)))
		return;
	const struct spb *s = (const struct spb *)spb__region_of(p);
	if (s->category == SPB_CAT_TAINTED &&
	    spb_free_pages(s) < spb__zone_reserve(z) * SPB_PAGES_PER_PB)
		spb__shrink_trigger_locked(z, SHRINK_TRIGGER_HIGHWATER);
}

/* Unlock (running the evacuation hook if the reserve was crossed), set errno. */
static void *finish(struct spb_zone *z, void *p, enum claim_result res, bool zero,
		    size_t bytes, unsigned flags)
{
	spb__zone_unlock_signal(z);
	if (!p) {
		/* A refusal asks for evacuation (seed 001): once the tainted
		 * SPBs have whole free pageblocks again, the request succeeds. */
		if (res == CLAIM_REFUSED && spb__evac_hook)
			spb__evac_hook(z);
		errno = res == CLAIM_REFUSED ? EAGAIN : ENOMEM;
		return NULL;
	}
	if ((flags & SPB_F_ZERO) && !zero)
		memset(p, 0, bytes);
	return p;
}

/* The claim asked for defrag: the zone is unlocked; run the hook (which
 * may capture memory for us; it keeps the zone's backoff itself). */
static void *defrag(struct spb_zone *z, unsigned cls, unsigned npages, unsigned align,
		    unsigned npb)
{
	void *(*hook)(struct spb_zone *, unsigned, unsigned, unsigned, unsigned) =
		__atomic_load_n(&spb__defrag_hook, __ATOMIC_ACQUIRE);
	return hook ? hook(z, cls, npages, align, npb) : NULL;
}

void *spb__capture_locked(struct spb *s, unsigned idx, unsigned cls, unsigned npages,
			  unsigned align, unsigned npb)
{
	if (npb > 1 || s->pb[idx].cls != SPB_PB_FREE)
		return NULL;
	if (cls == SPB_SECRET && (s->rung == SPB_RUNG_HUGETLB_1G ||
				  !spb__secret_flip_locked(s, idx, 1)))
		return NULL; /* the requester claims again, without */
	bool zero;
	if (npb == 1) {
		spb__pb_claim_locked(s, idx, 1, cls, SPB_PB_MODE_MULTI_HEAD, 0);
		s->pb[idx].multi_npb = 1;
		s->nr_used_pages += SPB_PAGES_PER_PB;
		s->zone->counters[MULTI_ALLOC]++;
		spb__spb_update_locked(s);
		return spb__pb_addr(s, idx);
	}
	spb__pb_claim_locked(s, idx, 1, cls, SPB_PB_MODE_RUNS, 0);
	int at = spb__pb_run_alloc_locked(s, &s->pb[idx], npages, align, &zero);
	if (at < 0)
		return NULL; /* cannot be: the pageblock is whole and free */
	return (char *)spb__pb_addr(s, idx) + ((size_t)at << SPB_PAGE_SHIFT);
}

void *spb__alloc_pages(struct spb_zone *z, size_t npages, size_t align_pages,
		       unsigned cls, unsigned flags, bool *was_zero)
{
	bool zero = false;
	enum claim_result res = CLAIM_OK;
	spb__zone_decay_tick(z);
	spb__zone_lock(z);
	void *p = run_from_partials(z, (unsigned)npages, (unsigned)align_pages, cls, &zero);
	if (!p) {
		struct spb *s;
		unsigned i;
		bool pbzero;
		res = claim(z, 1, 1, cls, flags, SPB_PB_MODE_RUNS, &s, &i, &pbzero);
		if (res == CLAIM_OK) {
			int at = spb__pb_run_alloc_locked(s, &s->pb[i], (unsigned)npages,
							  (unsigned)align_pages, &zero);
			p = (char *)spb__pb_addr(s, i) + ((size_t)at << SPB_PAGE_SHIFT);
		}
	}
	if (res == CLAIM_DEFRAG) {
		spb__zone_unlock_signal(z);
		p = defrag(z, cls, (unsigned)npages, (unsigned)align_pages, 0);
		if (p) {
			if (was_zero)
				*was_zero = false;
			if (flags & SPB_F_ZERO)
				memset(p, 0, npages << SPB_PAGE_SHIFT);
			return p;
		}
		return spb__alloc_pages(z, npages, align_pages, cls, flags | SPB_F_NO_DEFRAG,
					was_zero);
	}
	if (p && cls != SPB_MOVABLE)
		highwater_check(z, p);
	if (was_zero)
		*was_zero = zero;
	p = finish(z, p, res, zero, npages << SPB_PAGE_SHIFT, flags);
	spb__lazy_look_now();
	return p;
}

void *spb__alloc_pageblocks(struct spb_zone *z, size_t npb, size_t align_pb,
			    unsigned cls, unsigned flags)
{
	bool zero = false;
	struct spb *s = NULL;
	unsigned i = 0;
	void *p = NULL;
	spb__zone_decay_tick(z);
	spb__zone_lock(z);
	enum claim_result res = claim(z, (unsigned)npb, (unsigned)align_pb, cls, flags,
				      SPB_PB_MODE_MULTI_HEAD, &s, &i, &zero);
	if (res == CLAIM_DEFRAG) {
		spb__zone_unlock_signal(z);
		p = defrag(z, cls, 0, 1, (unsigned)npb);
		if (p) {
			if (flags & SPB_F_ZERO)
				memset(p, 0, npb << SPB_PB_SHIFT);
			return p;
		}
		return spb__alloc_pageblocks(z, npb, align_pb, cls, flags | SPB_F_NO_DEFRAG);
	}
	if (res == CLAIM_OK) {
		s->pb[i].multi_npb = (uint32_t)npb;
		s->nr_used_pages += (uint32_t)(npb * SPB_PAGES_PER_PB);
		z->counters[MULTI_ALLOC]++;
		spb__spb_update_locked(s);
		p = spb__pb_addr(s, i);
		if (cls != SPB_MOVABLE)
			highwater_check(z, p);
	}
	p = finish(z, p, res, zero, npb << SPB_PB_SHIFT, flags);
	if (p && spb__opt(OPT_COLLAPSE) && s->rung == SPB_RUNG_THP) {
		bool ok = spb__os_collapse(p, npb << SPB_PB_SHIFT);
		spb__zone_lock(z);
		z->counters[ok ? PB_COLLAPSE : PB_COLLAPSE_FAIL]++;
		spb__zone_unlock(z);
	}
	return p;
}

/* A run the run cache held (runcache.c): its cached flag is cleared
 * under the zone lock, with the free, so a second free of it is caught
 * whichever side it comes from. */
static void uncache_locked(struct spb_pageblock *pb, unsigned pg, bool cached, const void *p)
{
	uint64_t bit, *w = spb__cached_word(pb, pg, &bit);
	/* A plain load for the common case (not cached, and not flagged). */
	if (!cached && !(__atomic_load_n(w, __ATOMIC_RELAXED) & bit))
		return;
	if (SPB_UNLIKELY(((__atomic_fetch_and(w, ~bit, __ATOMIC_ACQ_REL) & bit) != 0) != cached))
		spb__fatal(cached ? "internal error: a cached run was not flagged cached"
				  : "free(): double free detected", p);
}

static size_t free_in_spb(struct spb *s, void *p, bool cached, uint64_t rel);

size_t spb__free_cached(void *p)
{
	return free_in_spb((struct spb *)spb__region_of(p), p, true, 0);
}

size_t spb__free(void *p)
{
	struct spb_region *r = spb__region_of(p);
	if (SPB_UNLIKELY(!r || !r->kind))
		spb__fatal("free(): invalid pointer (not allocated by spbmalloc)", p);
	if (r->kind == SPB_REGION_LARGE) {
		size_t size = r->size;
		spb__large_free(r, p);
		return size;
	}
	return free_in_spb((struct spb *)r, p, false, 0);
}

size_t spb__free_trimmed(void *run, uint64_t rel)
{
	return free_in_spb((struct spb *)spb__region_of(run), run, false, rel);
}

static size_t free_in_spb(struct spb *s, void *p, bool cached, uint64_t rel)
{
	struct spb_zone *z = s->zone;
	unsigned i = (unsigned)(((uintptr_t)p >> SPB_PB_SHIFT) & (SPB_PB_PER_SPB - 1));
	struct spb_pageblock *pb = &s->pb[i];
	size_t freed;
	if (SPB_UNLIKELY(__atomic_load_n(&pb->cls, __ATOMIC_RELAXED) == SPB_SECRET) &&
	    !spb__secret_free_pages(s, pb, p))
		return 0; /* a forked child's inherited secret pointer: ignored */
	spb__zone_lock(z);
	if (pb->cls == SPB_PB_FREE || pb->cls == SPB_PB_BUSY)
		spb__fatal("free(): double free or invalid pointer (pageblock is free)", p);
	switch (pb->mode) {
	case SPB_PB_MODE_RUNS:
	{
		if ((uintptr_t)p & (SPB_PAGE_SIZE - 1))
			spb__fatal("free(): invalid pointer (inside an allocation, not its start)", p);
		unsigned pg = (unsigned)(((uintptr_t)p >> SPB_PAGE_SHIFT) & (SPB_PAGES_PER_PB - 1));
		uncache_locked(pb, pg, cached, p);
		if (rel) { /* a trimmed span's run (span.c) */
			unsigned r = (unsigned)__builtin_popcountll(rel);
			pb->nr_span_rel = (uint16_t)(pb->nr_span_rel > r ? pb->nr_span_rel - r : 0);
		}
		freed = (size_t)spb__pb_run_free_locked(s, pb, pg, p) << SPB_PAGE_SHIFT;
		if (rel)
			spb__trimmed_run_freed_locked(z, pb, pg, rel);
		break;
	}
	case SPB_PB_MODE_MULTI_HEAD:
		if ((uintptr_t)p & (SPB_PB_SIZE - 1))
			spb__fatal("free(): invalid pointer (inside an allocation, not its start)", p);
		freed = (size_t)pb->multi_npb << SPB_PB_SHIFT;
		s->nr_used_pages -= pb->multi_npb * SPB_PAGES_PER_PB;
		z->counters[MULTI_FREE]++;
		spb__pb_unclaim_locked(s, i, pb->multi_npb);
		break;
	default:
		spb__fatal("free(): invalid pointer (inside an allocation, not its start)", p);
	}
	/* A free can cross the reserve too: when a tainted SPB loses its last
	 * non-movable pageblock, its free pageblocks stop counting. */
	spb__zone_unlock_signal(z);
	spb__zone_decay_tick(z);
	return freed;
}

size_t spb__usable_size(const void *p)
{
	struct spb_region *r = spb__region_of(p);
	if (!r || !r->kind)
		return 0;
	/* 0 unless p starts an allocation: realloc trusts a non-zero size
	 * (an interior pointer got the whole size before; test_badfree). */
	if (r->kind == SPB_REGION_LARGE)
		return (uintptr_t)p == r->base ? r->size : 0;
	struct spb *s = (struct spb *)r;
	struct spb_pageblock *pb =
		&s->pb[((uintptr_t)p >> SPB_PB_SHIFT) & (SPB_PB_PER_SPB - 1)];
	size_t n = 0;
	spb__zone_lock(s->zone);
	unsigned pg = (unsigned)(((uintptr_t)p >> SPB_PAGE_SHIFT) & (SPB_PAGES_PER_PB - 1));
	uint64_t bit, *cw = spb__cached_word(pb, pg, &bit);
	if (pb->mode == SPB_PB_MODE_RUNS && !((uintptr_t)p & (SPB_PAGE_SIZE - 1)) &&
	    !(__atomic_load_n(cw, __ATOMIC_RELAXED) & bit)) /* a cached run is free to the program */
		n = (size_t)spb__run_len(pb)[pg] << SPB_PAGE_SHIFT;
	else if (pb->mode == SPB_PB_MODE_MULTI_HEAD && !((uintptr_t)p & (SPB_PB_SIZE - 1)))
		n = (size_t)pb->multi_npb << SPB_PB_SHIFT;
	spb__zone_unlock(s->zone);
	return n;
}

/* Pageblock run at i of npb pageblocks -> npb_new, in place. */
static bool multi_resize_locked(struct spb *s, unsigned i, unsigned npb_new)
{
	struct spb_pageblock *head = &s->pb[i];
	unsigned npb = head->multi_npb;
	if (npb_new > npb) {
		unsigned d = npb_new - npb;
		if (i + npb_new > SPB_PB_PER_SPB ||
		    !spb__map_range_all_set(&s->free_pb_map, i + npb, d))
			return false;
		spb__pb_claim_locked(s, i + npb, d, head->cls, SPB_PB_MODE_MULTI_TAIL, 0);
		s->nr_used_pages += d * SPB_PAGES_PER_PB;
	} else if (npb_new < npb) {
		unsigned d = npb - npb_new;
		s->nr_used_pages -= d * SPB_PAGES_PER_PB;
		spb__pb_unclaim_locked(s, i + npb_new, d);
	}
	head->multi_npb = npb_new;
	spb__spb_update_locked(s);
	return true;
}

size_t spb__resize_in_place(void *p, size_t bytes)
{
	struct spb_region *r = spb__region_of(p);
	/* Nothing in an SPB is larger than the SPB: checked before any
	 * rounding, which wraps near SIZE_MAX (a 0-page resize used to pass
	 * the range checks and free a live run: realloc(p, SIZE_MAX - 100)). */
	if (!r || r->kind != SPB_REGION_SPB || bytes == 0 || bytes > SPB_SPB_SIZE)
		return 0;
	struct spb *s = (struct spb *)r;
	struct spb_zone *z = s->zone;
	unsigned i = (unsigned)(((uintptr_t)p >> SPB_PB_SHIFT) & (SPB_PB_PER_SPB - 1));
	struct spb_pageblock *pb = &s->pb[i];
	size_t got = 0;
	spb__zone_lock(z);
	if (pb->cls == SPB_SECRET) {
		/* Not in place: a shrink would free the tail unwiped. */
	} else if (pb->mode == SPB_PB_MODE_RUNS && !((uintptr_t)p & (SPB_PAGE_SIZE - 1))) {
		unsigned pg = (unsigned)(((uintptr_t)p >> SPB_PAGE_SHIFT) & (SPB_PAGES_PER_PB - 1));
		size_t n = (bytes + SPB_PAGE_SIZE - 1) >> SPB_PAGE_SHIFT;
		if (spb__run_len(pb)[pg] && n < SPB_PAGES_PER_PB &&
		    spb__pb_run_resize_locked(s, pb, pg, (unsigned)n))
			got = n << SPB_PAGE_SHIFT;
	} else if (pb->mode == SPB_PB_MODE_MULTI_HEAD && !((uintptr_t)p & (SPB_PB_SIZE - 1))) {
		size_t n = (bytes + SPB_PB_SIZE - 1) >> SPB_PB_SHIFT;
		if (n <= SPB_PB_PER_SPB && multi_resize_locked(s, i, (unsigned)n))
			got = n << SPB_PB_SHIFT;
	}
	spb__zone_unlock_signal(z);
	return got;
}
