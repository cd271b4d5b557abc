/*
 * pageblock.c — one 2 MiB pageblock: claiming it for a lifetime class,
 * returning it to its SPB, and page runs inside it.
 *
 * A RUNS pageblock keeps a 512-bit map of free pages and the length of the
 * run that starts at each page, so a free can tell a run's start from an
 * interior pointer or a second free. A pageblock that becomes entirely free
 * goes back to its SPB at once; its memory goes back to the OS only after
 * the decay delay (zone.c). Everything here runs under the zone lock.
 */
#include "engine.h"

/* A subrelease (subrelease.c) left the pageblock MADV_NOHUGEPAGE: on a
 * THP SPB, ask for huge pages again; if the kernel refuses, it stays on
 * 4 KiB pages (counted). A hugetlb page mapped over it made it moot. */
static void readvise_huge_locked(struct spb_zone *z, struct spb *s,
				 struct spb_pageblock *pb, unsigned j)
{
	if (pb->rung == SPB_RUNG_HUGETLB_2M || pb->rung == SPB_RUNG_HUGETLB_1G ||
	    s->rung != SPB_RUNG_THP) {
		pb->nohuge = 0;
		return;
	}
	uint8_t r = SPB_RUNG_4K;
	if (spb__os_advise_hugepage(spb__pb_addr(s, j), SPB_PB_SIZE)) {
		r = SPB_RUNG_THP;
		pb->nohuge = 0;
	} else {
		z->counters[THP_ADVISE_FAIL]++;
	}
	spb__pb_set_rung_locked(z, pb, r);
}

/* Pageblocks of the zone that hold a class (its heap, in pageblocks). */
static uint64_t zone_claimed_pb(const struct spb_zone *z)
{
	uint64_t n = 0;
	for (unsigned c = 0; c < SPB_NR_CLASSES; c++)
		n += z->pb_by_class[c];
	return n;
}

/* "4 KiB until dense" (khugepaged's max_ptes_none, decided by us): a
 * pageblock claimed for page runs while the zone is small, or for a
 * sparse-prone request, starts on 4 KiB pages, so a small program or a
 * sparsely written buffer faults in the pages it touches, not 2 MiB; the
 * background thread looks at its residency and puts it on huge pages
 * once it is dense (subrelease.c, the dense list). Only where a THP
 * claim would be made: a THP SPB, no 2 MiB hugetlb pool asked for, not
 * secret, and no huge page in place already (a free pageblock that still
 * holds its memory keeps it). Without the background thread nobody
 * would look again: huge pages at claim, as before. Returns the counter
 * of the reason, or SPB_NR_COUNTERS for none. */
static enum spb_counter lazy_reason(struct spb_zone *z, const struct spb *s,
				    const struct spb_pageblock *pb, unsigned cls,
				    unsigned mode, unsigned flags)
{
	if (mode != SPB_PB_MODE_RUNS || s->rung != SPB_RUNG_THP || cls == SPB_SECRET ||
	    pb->secret || spb__opt(OPT_HUGETLB_2M) || !spb__opt(OPT_BG) ||
	    (pb->rung != SPB_RUNG_NONE && !(pb->rung == SPB_RUNG_4K && pb->nohuge)))
		return SPB_NR_COUNTERS;
	if ((flags & SPB_F_SPARSE) && spb__opt(OPT_SPARSE_4K)) {
		/* The zone's recent looks found such pageblocks written whole:
		 * huge at claim, but one in 32 still lazy, to keep learning. */
		if (z->lazy_learn > 0 && (++z->lazy_explore & 31)) {
			z->counters[PB_LAZY_LEARNED]++;
			return SPB_NR_COUNTERS;
		}
		return PB_LAZY_SPARSE;
	}
	if (zone_claimed_pb(z) * SPB_PB_SIZE < ((uint64_t)spb__opt(OPT_SMALL_HEAP_MB) << 20))
		return PB_LAZY_SMALL;
	return SPB_NR_COUNTERS;
}

/* Claim pageblock j on 4 KiB pages for the lazy policy; false when the
 * kernel refused MADV_NOHUGEPAGE (counted: claimed as usual). */
static bool claim_lazy_locked(struct spb_zone *z, struct spb *s, struct spb_pageblock *pb,
			      unsigned j, enum spb_counter why, unsigned flags)
{
	if (!pb->nohuge && !spb__os_advise_nohugepage(spb__pb_addr(s, j), SPB_PB_SIZE)) {
		z->counters[PB_LAZY_FAIL]++;
		return false;
	}
	pb->nohuge = 1;
	/* 2: for a direct run, whose look teaches the zone (subrelease.c); a
	 * span's pages are touched as its blocks go out, which says nothing
	 * of how its blocks are written (3). */
	pb->lazy = why != PB_LAZY_SPARSE ? 1 : (flags & SPB_F_SPAN) ? 3 : 2;
	pb->lazy_looked = 0;
	spb__pb_set_rung_locked(z, pb, SPB_RUNG_4K);
	z->counters[why]++;
	return true;
}

bool spb__pb_claim_locked(struct spb *s, unsigned i, unsigned n, unsigned cls,
			  unsigned mode, unsigned flags)
{
	bool all_zero = true;
	struct spb_zone *z = s->zone;
	static const enum spb_counter by_cat[SPB_NR_CATS] = {
		[SPB_CAT_EMPTY] = PB_CLAIM_EMPTY, [SPB_CAT_CLEAN] = PB_CLAIM_CLEAN,
		[SPB_CAT_TAINTED] = PB_CLAIM_TAINTED,
	};
	z->counters[PB_CLAIM] += n;
	z->counters[by_cat[s->category]] += n;
	for (unsigned j = i; j < i + n; j++) {
		struct spb_pageblock *pb = &s->pb[j];
		spb__zone_pb_undirty_locked(z, pb);
		if (SPB_UNLIKELY(pb->secret) && cls != SPB_SECRET)
			spb__secret_unflip_locked(s, j);
		enum spb_counter why = lazy_reason(z, s, pb, cls, mode, flags);
		if (why == SPB_NR_COUNTERS || !claim_lazy_locked(z, s, pb, j, why, flags)) {
			if (pb->rung == SPB_RUNG_NONE)
				spb__pb_set_rung_locked(z, pb, spb__backing_claim_pb(
							spb__pb_addr(s, j), s->rung, z->counters));
			if (pb->nohuge)
				readvise_huge_locked(z, s, pb, j);
		}
		all_zero = all_zero && pb->zero;
		pb->zero = 0;
		pb->cls = (uint8_t)cls;
		pb->mode = (uint8_t)(j == i ? mode : SPB_PB_MODE_MULTI_TAIL);
		s->nr_class_pb[cls]++;
		z->pb_by_class[cls]++;
	}
	spb__map_clear_range(&s->free_pb_map, i, n);
	s->nr_free_pb -= n;
	if (mode == SPB_PB_MODE_RUNS) {
		struct spb_pageblock *pb = &s->pb[i];
		spb__map_set_range(&spb__pbm(pb)->free_map, 0, SPB_PAGES_PER_PB);
		pb->nr_free = SPB_PAGES_PER_PB;
		pb->longest = SPB_PAGES_PER_PB;
		pb->zero_hwm = all_zero ? 0 : SPB_PAGES_PER_PB;
		s->nr_partial_free[cls] += SPB_PAGES_PER_PB;
		spb__partial_add(s, pb);
	}
	spb__spb_update_locked(s);
	return all_zero;
}

void spb__pb_unclaim_locked(struct spb *s, unsigned i, unsigned n)
{
	struct spb_zone *z = s->zone;
	z->counters[PB_UNCLAIM] += n;
	for (unsigned j = i; j < i + n; j++) {
		struct spb_pageblock *pb = &s->pb[j];
		spb__sparse_reset_locked(z, pb);
		s->nr_class_pb[pb->cls]--;
		z->pb_by_class[pb->cls]--;
		pb->cls = SPB_PB_FREE;
		pb->mode = SPB_PB_MODE_NONE;
		pb->multi_npb = 0;
		pb->lazy = 0; /* decided again at the next claim */
		if (pb->rung != SPB_RUNG_NONE)
			spb__zone_pb_dirty_locked(z, pb);
	}
	spb__map_set_range(&s->free_pb_map, i, n);
	s->nr_free_pb += n;
	spb__spb_update_locked(s);
}

int spb__pb_run_alloc_locked(struct spb *s, struct spb_pageblock *pb, unsigned n,
			     unsigned align, bool *zero)
{
	if (pb->longest < n)
		return -1;
	int at = spb__map_find_run(&spb__pbm(pb)->free_map, n, align);
	if (at < 0)
		return -1;
	unsigned pg = (unsigned)at;
	spb__map_clear_range(&spb__pbm(pb)->free_map, pg, n);
	spb__run_len(pb)[pg] = (uint16_t)n;
	*zero = pg >= pb->zero_hwm;
	if (pg + n > pb->zero_hwm)
		pb->zero_hwm = (uint16_t)(pg + n);
	pb->nr_free -= n;
	pb->longest = (uint16_t)spb__map_longest_run(&spb__pbm(pb)->free_map);
	s->nr_partial_free[pb->cls] -= n;
	s->nr_used_pages += n;
	if (pb->nr_free == 0)
		spb__partial_del(s, pb);
	s->zone->counters[RUN_ALLOC]++;
	spb__sparse_run_taken_locked(s->zone, pb, pg, n);
	spb__spb_update_locked(s);
	return at;
}

unsigned spb__pb_run_free_locked(struct spb *s, struct spb_pageblock *pb,
				 unsigned pg, const void *p)
{
	unsigned n = spb__run_len(pb)[pg];
	if (n == 0) {
		if (spb__map_test(&spb__pbm(pb)->free_map, pg))
			spb__fatal("free(): double free detected", p);
		spb__fatal("free(): invalid pointer (inside an allocation, not its start)", p);
	}
	spb__run_len(pb)[pg] = 0;
	spb__map_set_range(&spb__pbm(pb)->free_map, pg, n);
	if (pb->nr_free == 0)
		spb__partial_add(s, pb);
	pb->nr_free += n;
	pb->longest = (uint16_t)spb__map_longest_run(&spb__pbm(pb)->free_map);
	s->nr_partial_free[pb->cls] += n;
	s->nr_used_pages -= n;
	s->zone->counters[RUN_FREE]++;
	if (pb->nr_free == SPB_PAGES_PER_PB) {
		/* Entirely free: back to the SPB, so another class may have it. */
		spb__partial_del(s, pb);
		s->nr_partial_free[pb->cls] -= SPB_PAGES_PER_PB;
		spb__pb_unclaim_locked(s, spb__pb_index(s, pb), 1);
	} else {
		spb__sparse_update_locked(s->zone, pb);
		spb__spb_update_locked(s);
	}
	return n;
}

bool spb__pb_run_resize_locked(struct spb *s, struct spb_pageblock *pb, unsigned pg,
			       unsigned n_new)
{
	unsigned n = spb__run_len(pb)[pg];
	if (n_new == n)
		return true;
	if (n_new > n) {
		unsigned d = n_new - n;
		if (pg + n_new > SPB_PAGES_PER_PB ||
		    !spb__map_range_all_set(&spb__pbm(pb)->free_map, pg + n, d))
			return false;
		spb__map_clear_range(&spb__pbm(pb)->free_map, pg + n, d);
		pb->nr_free -= d;
		s->nr_partial_free[pb->cls] -= d;
		s->nr_used_pages += d;
		if (pb->nr_free == 0)
			spb__partial_del(s, pb);
		if (pg + n_new > pb->zero_hwm)
			pb->zero_hwm = (uint16_t)(pg + n_new);
		spb__sparse_run_taken_locked(s->zone, pb, pg + n, d);
	} else {
		unsigned d = n - n_new;
		spb__map_set_range(&spb__pbm(pb)->free_map, pg + n_new, d);
		if (pb->nr_free == 0)
			spb__partial_add(s, pb);
		pb->nr_free += d;
		s->nr_partial_free[pb->cls] += d;
		s->nr_used_pages -= d;
		spb__sparse_update_locked(s->zone, pb);
	}
	spb__run_len(pb)[pg] = (uint16_t)n_new;
	pb->longest = (uint16_t)spb__map_longest_run(&spb__pbm(pb)->free_map);
	spb__spb_update_locked(s);
	return true;
}
