/*
 * zone_check.h — recompute a zone's whole state from scratch and compare
 * it with what the engine keeps incrementally: every pageblock's class,
 * mode, free map, longest run and run lengths; every SPB's counts,
 * category, fullness bucket and list; the zone's tainted free count,
 * per-category counts, gauges, decay FIFOs and the counters that must
 * balance. Independent of lib/bitmap.c (it counts bits itself).
 * zone_check() takes the zone lock; it returns the number of violations
 * and prints the first few.
 */
#ifndef SPB_TEST_ZONE_CHECK_H
#define SPB_TEST_ZONE_CHECK_H

#include "tap.h"

struct zc {
	struct spb_zone *z;
	int errs;
	uint64_t class_pb[SPB_NR_CLASSES], rung_pb[SPB_NR_RUNGS];
	uint64_t runs, multis, dirty_flags, tainted_free, spbs, by_cat[SPB_NR_CATS];
	uint64_t released, sparse_flags, dense_flags;
};

#define ZC_FAIL(c, ...)                                                        \
	do {                                                                   \
		if ((c)->errs++ < 25) {                                        \
			fprintf(stderr, "zone_check: " __VA_ARGS__);           \
			fputc('\n', stderr);                                   \
		}                                                              \
	} while (0)

static inline bool zc_bit(const spb_map512_t *m, unsigned i)
{
	return (m->w[i / 64] >> (i % 64)) & 1;
}

/* A RUNS pageblock: free map vs nr_free/longest, run lengths cover every
 * used page exactly once, nothing handed out at or above zero_hwm. */
static uint32_t zc_runs_pb(struct zc *c, struct spb *s, unsigned i)
{
	struct spb_pageblock *pb = &s->pb[i];
	unsigned nfree = 0, longest = 0, cur = 0, released = 0;
	uint32_t used = 0;
	/* Subrelease (subrelease.c): given-back pages are free pages; pages
	 * held for a release in progress are out of the free map, in no run. */
	for (unsigned g = 0; g < SPB_PAGES_PER_PB; g++) {
		bool fr = zc_bit(&spb__pbm(pb)->free_map, g), rel = zc_bit(&spb__pbm(pb)->released_map, g);
		bool held = zc_bit(&spb__pbm(pb)->held_map, g);
		released += rel;
		if (rel && !fr)
			ZC_FAIL(c, "pb %u page %u: given back but not free", i, g);
		if (held && (fr || rel || !pb->holding))
			ZC_FAIL(c, "pb %u page %u: held (holding %u) yet free %d or released %d",
				i, g, pb->holding, fr, rel);
	}
	if (released != pb->nr_released)
		ZC_FAIL(c, "pb %u: nr_released %u, map says %u", i, pb->nr_released, released);
	if (released && pb->rung != SPB_RUNG_THP && pb->rung != SPB_RUNG_4K)
		ZC_FAIL(c, "pb %u: pages given back on rung %u", i, pb->rung);
	c->released += released;
	for (unsigned g = 0; g < SPB_PAGES_PER_PB; g++) {
		if (zc_bit(&spb__pbm(pb)->free_map, g)) {
			nfree++;
			cur++;
			longest = cur > longest ? cur : longest;
		} else {
			cur = 0;
		}
	}
	if (nfree != pb->nr_free)
		ZC_FAIL(c, "pb %u: nr_free %u, map says %u", i, pb->nr_free, nfree);
	if (longest != pb->longest)
		ZC_FAIL(c, "pb %u: longest %u, map says %u", i, pb->longest, longest);
	if (nfree == SPB_PAGES_PER_PB)
		ZC_FAIL(c, "pb %u: RUNS pageblock entirely free but still claimed", i);
	if (pb->zero_hwm > SPB_PAGES_PER_PB)
		ZC_FAIL(c, "pb %u: zero_hwm %u", i, pb->zero_hwm);
	for (unsigned g = 0; g < SPB_PAGES_PER_PB;) {
		if (zc_bit(&spb__pbm(pb)->held_map, g)) {
			g++;
			continue;
		}
		if (zc_bit(&spb__pbm(pb)->free_map, g)) {
			if (spb__run_len(pb)[g])
				ZC_FAIL(c, "pb %u page %u: free but run_len %u", i, g, spb__run_len(pb)[g]);
			g++;
			continue;
		}
		unsigned n = spb__run_len(pb)[g];
		if (n == 0 || g + n > SPB_PAGES_PER_PB) {
			ZC_FAIL(c, "pb %u page %u: used page not the start of a run (len %u)", i, g, n);
			g++;
			continue;
		}
		for (unsigned k = g; k < g + n; k++) {
			if (zc_bit(&spb__pbm(pb)->free_map, k))
				ZC_FAIL(c, "pb %u: run at %u covers free page %u", i, g, k);
			if (k > g && spb__run_len(pb)[k])
				ZC_FAIL(c, "pb %u: run at %u has interior run_len at %u", i, g, k);
		}
		if (g + n > pb->zero_hwm)
			ZC_FAIL(c, "pb %u: run at %u+%u above zero_hwm %u", i, g, n, pb->zero_hwm);
		used += n;
		c->runs++;
		g += n;
	}
	if (pb->dirty)
		ZC_FAIL(c, "pb %u: claimed but on the dirty list", i);
	return used;
}

/* Partial list of class cls: exactly the RUNS pbs of cls with free pages. */
static void zc_partial(struct zc *c, struct spb *s, unsigned cls)
{
	unsigned listed = 0, want = 0;
	struct spb_link *h = &s->partial[cls];
	for (struct spb_link *l = h->next; l != h; l = l->next) {
		if (++listed > SPB_PB_PER_SPB) {
			ZC_FAIL(c, "partial[%u] list loops", cls);
			return;
		}
		struct spb_pageblock *pb = spb__container_of(l, struct spb_pageblock, link);
		if (!zc_bit(&s->partial_map[cls], (unsigned)(pb - s->pb)))
			ZC_FAIL(c, "partial[%u]: pb %ld listed, not in the map", cls, (long)(pb - s->pb));
		if (pb->owner != s || pb->mode != SPB_PB_MODE_RUNS || pb->cls != cls ||
		    pb->nr_free == 0)
			ZC_FAIL(c, "partial[%u]: bad entry pb %ld (cls %u mode %u free %u)", cls,
				(long)(pb - s->pb), pb->cls, pb->mode, pb->nr_free);
	}
	for (unsigned i = 0; i < SPB_PB_PER_SPB; i++)
		want += s->pb[i].mode == SPB_PB_MODE_RUNS && s->pb[i].cls == cls &&
			s->pb[i].nr_free > 0;
	if (want != listed)
		ZC_FAIL(c, "partial[%u]: %u listed, %u expected", cls, listed, want);
	unsigned inmap = 0;
	for (unsigned i = 0; i < SPB_PB_PER_SPB; i++)
		inmap += zc_bit(&s->partial_map[cls], i);
	if (inmap != listed)
		ZC_FAIL(c, "partial_map[%u]: %u set, %u listed", cls, inmap, listed);
}

static void zc_spb(struct zc *c, struct spb *s, unsigned cat, unsigned full)
{
	unsigned nfree = 0, nbusy = 0, ncls[SPB_NR_CLASSES] = {0};
	uint32_t used = 0, pfree[SPB_NR_CLASSES] = {0};
	if (s->zone != c->z || s->dead || s->r.kind != SPB_REGION_SPB)
		ZC_FAIL(c, "spb %p: zone/dead/kind wrong", (void *)s);
	if (spb__region_of((void *)s->r.base) != &s->r)
		ZC_FAIL(c, "spb %p: address map slot does not point at it", (void *)s);
	for (unsigned i = 0; i < SPB_PB_PER_SPB; i++) {
		struct spb_pageblock *pb = &s->pb[i];
		c->rung_pb[pb->rung < SPB_NR_RUNGS ? pb->rung : 0]++;
		c->sparse_flags += pb->sparse == 1;
		c->dense_flags += pb->sparse == 2;
		if (pb->mode != SPB_PB_MODE_RUNS &&
		    (pb->nr_released || pb->sparse || pb->holding))
			ZC_FAIL(c, "pb %u: mode %u with released %u sparse %u holding %u", i,
				pb->mode, pb->nr_released, pb->sparse, pb->holding);
		if (pb->sparse && pb->holding)
			ZC_FAIL(c, "pb %u: on the sparse FIFO while held", i);
		if (pb->lazy && (!pb->nohuge || pb->rung != SPB_RUNG_4K ||
				 pb->mode != SPB_PB_MODE_RUNS))
			ZC_FAIL(c, "pb %u: lazy but nohuge %u rung %u mode %u", i, pb->nohuge,
				pb->rung, pb->mode);
		if (pb->owner != s)
			ZC_FAIL(c, "pb %u: owner wrong", i);
		if (zc_bit(&s->free_pb_map, i) != (pb->cls == SPB_PB_FREE))
			ZC_FAIL(c, "pb %u: free_pb_map bit disagrees with cls %u", i, pb->cls);
		if (zc_bit(&s->dirty_pb_map, i) != (pb->dirty != 0))
			ZC_FAIL(c, "pb %u: dirty_pb_map bit disagrees with dirty %u", i, pb->dirty);
		if (pb->cls == SPB_PB_FREE || pb->cls == SPB_PB_BUSY) {
			nfree += pb->cls == SPB_PB_FREE;
			nbusy += pb->cls == SPB_PB_BUSY;
			if (pb->mode != SPB_PB_MODE_NONE)
				ZC_FAIL(c, "pb %u: free with mode %u", i, pb->mode);
			bool want_dirty = pb->cls == SPB_PB_FREE && pb->rung != SPB_RUNG_NONE &&
					  pb->rung != SPB_RUNG_HUGETLB_1G;
			if (pb->rung != SPB_RUNG_HUGETLB_1G && pb->dirty != want_dirty)
				ZC_FAIL(c, "pb %u: free, rung %u, dirty %u", i, pb->rung, pb->dirty);
			if (pb->zero && pb->rung != SPB_RUNG_NONE && pb->rung != SPB_RUNG_HUGETLB_1G)
				ZC_FAIL(c, "pb %u: free, backed (rung %u) yet marked zero", i, pb->rung);
			c->dirty_flags += pb->dirty;
			continue;
		}
		if (pb->cls >= SPB_NR_CLASSES) {
			ZC_FAIL(c, "pb %u: bad cls %u", i, pb->cls);
			continue;
		}
		ncls[pb->cls]++;
		if (pb->rung == SPB_RUNG_NONE)
			ZC_FAIL(c, "pb %u: claimed but not backed", i);
		if (pb->mode == SPB_PB_MODE_RUNS) {
			used += zc_runs_pb(c, s, i);
			pfree[pb->cls] += pb->nr_free;
		} else if (pb->mode == SPB_PB_MODE_MULTI_HEAD) {
			unsigned n = pb->multi_npb;
			if (n == 0 || i + n > SPB_PB_PER_SPB) {
				ZC_FAIL(c, "pb %u: multi head with %u pageblocks", i, n);
				continue;
			}
			for (unsigned k = i + 1; k < i + n; k++)
				if (s->pb[k].mode != SPB_PB_MODE_MULTI_TAIL || s->pb[k].cls != pb->cls ||
				    s->pb[k].dirty)
					ZC_FAIL(c, "pb %u: tail of head %u wrong (mode %u cls %u)", k, i,
						s->pb[k].mode, s->pb[k].cls);
			if (pb->dirty)
				ZC_FAIL(c, "pb %u: multi head on the dirty list", i);
			used += n * SPB_PAGES_PER_PB;
			c->multis++;
		} else if (pb->mode == SPB_PB_MODE_MULTI_TAIL) {
			unsigned h = i;
			while (h > 0 && s->pb[h].mode == SPB_PB_MODE_MULTI_TAIL)
				h--;
			if (s->pb[h].mode != SPB_PB_MODE_MULTI_HEAD || h + s->pb[h].multi_npb <= i)
				ZC_FAIL(c, "pb %u: tail not covered by a head", i);
		} else {
			ZC_FAIL(c, "pb %u: class %u with mode %u", i, pb->cls, pb->mode);
		}
	}
	for (unsigned k = 0; k < SPB_NR_CLASSES; k++) {
		c->class_pb[k] += ncls[k];
		if (ncls[k] != s->nr_class_pb[k])
			ZC_FAIL(c, "spb %p: nr_class_pb[%u] %u, walk %u", (void *)s, k,
				s->nr_class_pb[k], ncls[k]);
		if (pfree[k] != s->nr_partial_free[k])
			ZC_FAIL(c, "spb %p: nr_partial_free[%u] %u, walk %u", (void *)s, k,
				s->nr_partial_free[k], pfree[k]);
		zc_partial(c, s, k);
	}
	if (nfree != s->nr_free_pb || nbusy != s->nr_busy_pb)
		ZC_FAIL(c, "spb %p: nr_free_pb %u/%u busy %u/%u", (void *)s, s->nr_free_pb,
			nfree, s->nr_busy_pb, nbusy);
	if (used != s->nr_used_pages)
		ZC_FAIL(c, "spb %p: nr_used_pages %u, walk %u", (void *)s, s->nr_used_pages, used);
	unsigned want_cat = SPB_CAT_EMPTY;
	for (unsigned k = 0; k < SPB_NR_CLASSES; k++)
		if (ncls[k])
			want_cat = k == SPB_MOVABLE && want_cat != SPB_CAT_TAINTED
					   ? SPB_CAT_CLEAN : SPB_CAT_TAINTED;
	unsigned want_full = (unsigned)(((uint64_t)used * SPB_NR_FULLNESS) /
					(SPB_PB_PER_SPB * SPB_PAGES_PER_PB));
	if (want_full >= SPB_NR_FULLNESS)
		want_full = SPB_NR_FULLNESS - 1;
	if (want_cat != cat || s->category != cat)
		ZC_FAIL(c, "spb %p: on list cat %u, field %u, walk %u", (void *)s, cat,
			s->category, want_cat);
	if (want_full != full || s->fullness != full)
		ZC_FAIL(c, "spb %p: on list bucket %u, field %u, walk %u", (void *)s, full,
			s->fullness, want_full);
	uint32_t contrib = want_cat == SPB_CAT_TAINTED ? nfree : 0;
	if (contrib != s->tainted_contrib)
		ZC_FAIL(c, "spb %p: tainted_contrib %u, walk %u", (void *)s, s->tainted_contrib,
			contrib);
	c->tainted_free += contrib;
	if (spb__list_linked(&s->empty_link) != (want_cat == SPB_CAT_EMPTY))
		ZC_FAIL(c, "spb %p: on emptyq %d but category %u", (void *)s,
			spb__list_linked(&s->empty_link), want_cat);
	c->by_cat[want_cat]++;
	c->spbs++;
}

/* The decay FIFOs: dirty holds free, backed pageblocks oldest first;
 * emptyq holds the empty SPBs oldest first. */
static void zc_fifos(struct zc *c)
{
	struct spb_zone *z = c->z;
	uint64_t n = 0, last = 0;
	for (struct spb_link *l = z->dirty.next; l != &z->dirty; l = l->next) {
		struct spb_pageblock *pb = spb__container_of(l, struct spb_pageblock, link);
		if (++n > c->spbs * SPB_PB_PER_SPB + 1) {
			ZC_FAIL(c, "dirty list loops");
			return;
		}
		if (!pb->dirty || pb->cls != SPB_PB_FREE || pb->rung == SPB_RUNG_NONE ||
		    !pb->owner || pb->owner->zone != z || pb->owner->dead)
			ZC_FAIL(c, "dirty list: bad entry (dirty %u cls %u rung %u)", pb->dirty,
				pb->cls, pb->rung);
		if (pb->freed_at < last)
			ZC_FAIL(c, "dirty list not oldest first");
		last = pb->freed_at;
		if (n == 1 && z->next_decay > pb->freed_at + (uint64_t)spb__opt(OPT_DECAY_MS))
			ZC_FAIL(c, "next_decay later than the oldest dirty pageblock");
	}
	if (n != c->dirty_flags)
		ZC_FAIL(c, "dirty list has %llu entries, %llu pageblocks flagged",
			(unsigned long long)n, (unsigned long long)c->dirty_flags);
	n = 0;
	last = 0;
	for (struct spb_link *l = z->emptyq.next; l != &z->emptyq; l = l->next) {
		struct spb *s = spb__container_of(l, struct spb, empty_link);
		if (++n > c->spbs + 1) {
			ZC_FAIL(c, "emptyq loops");
			return;
		}
		if (s->category != SPB_CAT_EMPTY || s->empty_since < last)
			ZC_FAIL(c, "emptyq: bad entry or order");
		last = s->empty_since;
		if (n == 1 && z->next_decay > s->empty_since + (uint64_t)spb__opt(OPT_DECAY_MS))
			ZC_FAIL(c, "next_decay later than the oldest empty SPB");
	}
	if (n != c->by_cat[SPB_CAT_EMPTY])
		ZC_FAIL(c, "emptyq has %llu, %llu SPBs empty", (unsigned long long)n,
			(unsigned long long)c->by_cat[SPB_CAT_EMPTY]);
	/* The sparse FIFO (subrelease.c): RUNS pageblocks flagged sparse,
	 * oldest first. */
	n = 0;
	last = 0;
	for (struct spb_link *l = z->sparse.next; l != &z->sparse; l = l->next) {
		struct spb_pageblock *pb = spb__container_of(l, struct spb_pageblock, sparse_link);
		if (++n > c->spbs * SPB_PB_PER_SPB + 1) {
			ZC_FAIL(c, "sparse list loops");
			return;
		}
		if (pb->sparse != 1 || pb->mode != SPB_PB_MODE_RUNS || pb->cls >= SPB_NR_CLASSES ||
		    pb->nr_free == SPB_PAGES_PER_PB || !pb->owner || pb->owner->zone != z)
			ZC_FAIL(c, "sparse list: bad entry (sparse %u mode %u cls %u free %u)",
				pb->sparse, pb->mode, pb->cls, pb->nr_free);
		if (pb->sparse_since < last)
			ZC_FAIL(c, "sparse list not oldest first");
		last = pb->sparse_since;
		if (n == 1 && z->next_decay > pb->sparse_since + (uint64_t)spb__opt(OPT_DECAY_MS))
			ZC_FAIL(c, "next_decay later than the oldest sparse pageblock");
	}
	if (n != c->sparse_flags)
		ZC_FAIL(c, "sparse list has %llu entries, %llu pageblocks flagged",
			(unsigned long long)n, (unsigned long long)c->sparse_flags);
	/* The dense list: split pageblocks full again, due at once. */
	n = 0;
	for (struct spb_link *l = z->dense.next; l != &z->dense; l = l->next) {
		struct spb_pageblock *pb = spb__container_of(l, struct spb_pageblock, sparse_link);
		if (++n > c->spbs * SPB_PB_PER_SPB + 1) {
			ZC_FAIL(c, "dense list loops");
			return;
		}
		if (pb->sparse != 2 || !pb->nohuge || pb->mode != SPB_PB_MODE_RUNS ||
		    pb->cls >= SPB_NR_CLASSES || !pb->owner || pb->owner->zone != z)
			ZC_FAIL(c, "dense list: bad entry (sparse %u nohuge %u mode %u cls %u)",
				pb->sparse, pb->nohuge, pb->mode, pb->cls);
		if (n == 1 && z->next_decay > pb->sparse_since)
			ZC_FAIL(c, "next_decay later than the first dense pageblock");
	}
	if (n != c->dense_flags)
		ZC_FAIL(c, "dense list has %llu entries, %llu pageblocks flagged",
			(unsigned long long)n, (unsigned long long)c->dense_flags);
	if (c->released != z->released_pages)
		ZC_FAIL(c, "released_pages %llu, walk %llu", (unsigned long long)z->released_pages,
			(unsigned long long)c->released);
}

static void zc_zone_totals(struct zc *c)
{
	struct spb_zone *z = c->z;
	uint64_t live_pb = 0;
	if (c->spbs != z->nr_spbs || z->total_pb != z->nr_spbs * SPB_PB_PER_SPB)
		ZC_FAIL(c, "nr_spbs %u total_pb %u, lists hold %llu", z->nr_spbs, z->total_pb,
			(unsigned long long)c->spbs);
	for (unsigned k = 0; k < SPB_NR_CATS; k++)
		if (c->by_cat[k] != z->nr_by_cat[k])
			ZC_FAIL(c, "nr_by_cat[%u] %u, walk %llu", k, z->nr_by_cat[k],
				(unsigned long long)c->by_cat[k]);
	if (c->tainted_free != z->tainted_free_pb)
		ZC_FAIL(c, "tainted_free_pb %u, walk %llu", z->tainted_free_pb,
			(unsigned long long)c->tainted_free);
	for (unsigned k = 0; k < SPB_NR_CLASSES; k++) {
		live_pb += c->class_pb[k];
		if (c->class_pb[k] != z->pb_by_class[k])
			ZC_FAIL(c, "pb_by_class[%u] %llu, walk %llu", k,
				(unsigned long long)z->pb_by_class[k],
				(unsigned long long)c->class_pb[k]);
	}
	for (unsigned r = 0; r < SPB_NR_RUNGS; r++)
		if (c->rung_pb[r] != z->pb_by_rung[r])
			ZC_FAIL(c, "pb_by_rung[%u] %llu, walk %llu", r,
				(unsigned long long)z->pb_by_rung[r],
				(unsigned long long)c->rung_pb[r]);
	const uint64_t *k = z->counters;
	if (k[PB_CLAIM] - k[PB_UNCLAIM] != live_pb)
		ZC_FAIL(c, "pb_claim %llu - pb_unclaim %llu != %llu class pageblocks",
			(unsigned long long)k[PB_CLAIM], (unsigned long long)k[PB_UNCLAIM],
			(unsigned long long)live_pb);
	if (k[PB_CLAIM] != k[PB_CLAIM_CLEAN] + k[PB_CLAIM_TAINTED] + k[PB_CLAIM_EMPTY])
		ZC_FAIL(c, "pb_claim is not the sum of its clean/tainted/empty parts");
	if (k[RUN_ALLOC] - k[RUN_FREE] != c->runs)
		ZC_FAIL(c, "run_alloc - run_free = %llu, %llu live runs",
			(unsigned long long)(k[RUN_ALLOC] - k[RUN_FREE]), (unsigned long long)c->runs);
	if (k[MULTI_ALLOC] - k[MULTI_FREE] != c->multis)
		ZC_FAIL(c, "multi_alloc - multi_free = %llu, %llu live multis",
			(unsigned long long)(k[MULTI_ALLOC] - k[MULTI_FREE]),
			(unsigned long long)c->multis);
	if (k[SPB_RESERVE] - k[SPB_UNMAP] != z->nr_spbs)
		ZC_FAIL(c, "spb_reserve - spb_unmap != nr_spbs %u", z->nr_spbs);
	if (k[SPB_TAINT] - k[SPB_UNTAINT] != z->nr_by_cat[SPB_CAT_TAINTED])
		ZC_FAIL(c, "spb_taint - spb_untaint != tainted SPBs %u", z->nr_by_cat[SPB_CAT_TAINTED]);
}

/* Walk everything; busy pageblocks only exist while a decay pass runs. */
static inline int zone_check(struct spb_zone *z)
{
	struct zc c;
	memset(&c, 0, sizeof c);
	c.z = z;
	spb__zone_lock(z);
	for (unsigned cat = 0; cat < SPB_NR_CATS; cat++)
		for (unsigned f = 0; f < SPB_NR_FULLNESS; f++) {
			struct spb_link *h = &z->lists[cat][f];
			unsigned n = 0;
			for (struct spb_link *l = h->next; l != h; l = l->next) {
				if (++n > 100000) {
					ZC_FAIL(&c, "list %u/%u loops", cat, f);
					break;
				}
				zc_spb(&c, spb__container_of(l, struct spb, link), cat, f);
			}
		}
	zc_fifos(&c);
	zc_zone_totals(&c);
	spb__zone_unlock(z);
	return c.errs;
}

/* zone_check over every zone, as one CHECK. */
#define CHECK_ZONES()                                                          \
	do {                                                                   \
		int zc_errs = 0;                                               \
		for (int zc_i = 0; zc_i < spb__nr_zones; zc_i++)               \
			zc_errs += zone_check(&spb__zones[zc_i]);              \
		CHECK_EQ(zc_errs, 0);                                          \
	} while (0)

#endif
