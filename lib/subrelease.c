/*
 * subrelease.c — giving back the free pages inside sparse pageblocks.
 *
 * A pageblock of page runs goes back to its SPB, and its memory to the OS,
 * only when it is entirely free. A few long-lived runs left among freed
 * ones (a server's values between its transient buffers) would keep whole
 * 2 MiB huge pages resident for a few KiB each, and RSS would creep up
 * over days of churn while the live bytes stay flat. So a RUNS pageblock
 * whose free pages still holding memory make up SPBMALLOC_SUBRELEASE_PCT
 * of it goes on the zone's sparse FIFO; once it has stayed there for the
 * decay delay, the decay pass gives those pages back (MADV_DONTNEED),
 * after MADV_NOHUGEPAGE on the pageblock so that khugepaged does not fold
 * it into a huge page again. This splits its huge page: the price of
 * bounding RSS, paid only by pageblocks that stayed sparse. The placement
 * (steer.c) then prefers pageblocks still on huge pages, and a later
 * claim of the pageblock advises MADV_HUGEPAGE again (pageblock.c).
 * Hugetlb pageblocks cannot be split and are never queued. A split
 * pageblock that fills up again (at most SPB_DENSE_PCT free) goes on the
 * zone's dense list, and the next pass advises MADV_HUGEPAGE on it again
 * (and MADV_COLLAPSE with SPBMALLOC_COLLAPSE=1): a long-running heap does
 * not drift onto 4 KiB pages for good.
 *
 * While the system calls run without the zone lock, the pages being given
 * back are out of the free map (held_map) and the pageblock is "holding":
 * nobody allocates them, and the pageblock cannot become entirely free and
 * change hands. The pass is a window: fork waits for it.
 */
#include <string.h>

#include "engine.h"

#define SUBRELEASE_BATCH 8 /* pageblocks per round of system calls */
#define SPB_DENSE_PCT 10    /* a split pageblock this full goes back on huge pages */
#define LAZY_MIN_MS 10      /* bounds of the time between two looks at a lazy pageblock */
#define LAZY_MAX_MS 10000

static bool splittable(const struct spb_pageblock *pb)
{
	/* Secret memory is mlocked or memfd_secret: MADV_DONTNEED would be
	 * refused or give nothing back; it is wiped and released whole. */
	return (pb->rung == SPB_RUNG_THP || pb->rung == SPB_RUNG_4K) && !pb->secret;
}

static void sparse_del(struct spb_pageblock *pb)
{
	if (pb->sparse) {
		spb__list_del(&pb->sparse_link);
		pb->sparse = 0;
	}
}

/* The FIFO is in sparse_since order: at the tail with "now", at the head
 * with 0 (spb_trim: due at once). */
static void sparse_add(struct spb_zone *z, struct spb_pageblock *pb, uint64_t since)
{
	pb->sparse = 1;
	pb->sparse_since = since;
	if (since)
		spb__list_add_tail(&z->sparse, &pb->sparse_link);
	else
		spb__list_add_head(&z->sparse, &pb->sparse_link);
	uint64_t due = since + (uint64_t)spb__opt(OPT_DECAY_MS);
	if (due < z->next_decay)
		__atomic_store_n(&z->next_decay, due, __ATOMIC_RELAXED);
}

/* How long a lazy pageblock waits between two looks at its residency:
 * the decay delay, within bounds (a 0 ms delay must not make the thread
 * spin on mincore). */
static uint64_t lazy_interval_ms(void)
{
	uint64_t d = (uint64_t)spb__opt(OPT_DECAY_MS);
	return d < LAZY_MIN_MS ? LAZY_MIN_MS : d > LAZY_MAX_MS ? LAZY_MAX_MS : d;
}

#define LOOKED_EARLY 1 /* pb->lazy_looked: the early look was armed */
#define LOOKED_FULL 2  /* and the one when it first filled */

SPB_TLS void *spb__lazy_look;
static SPB_TLS uint8_t lazy_look_gen;

/* Arm the look at pageblock pb (lock held): its address and generation,
 * not a pointer to trust later (see spb__lazy_look_now). */
static void lazy_look_arm(struct spb_pageblock *pb)
{
	spb__lazy_look = spb__pb_addr(pb->owner, spb__pb_index(pb->owner, pb));
	lazy_look_gen = pb->subrel_gen;
}

/* A sparse-prone lazy pageblock with at least LAZY_LEARN_PAGES handed
 * out, res of its pages resident: its runs written whole (half of what
 * was handed out resident: the newest run may not be written yet, and
 * there is rounding and tails) or sparsely (a buffer written at its
 * start: a page in tens). The zone's score moves by one. */
#define LAZY_LEARN_PAGES 192
static void lazy_learn_locked(struct spb_zone *z, const struct spb_pageblock *pb, int res)
{
	unsigned out = SPB_PAGES_PER_PB - pb->nr_free;
	if (out < LAZY_LEARN_PAGES)
		return;
	int l = z->lazy_learn + ((unsigned)res * 2 >= out ? 1 : -1);
	z->lazy_learn = (int8_t)(l > 8 ? 8 : l < -8 ? -8 : l);
}

/* On the dense list, where sparse_since is when it is due (after ms): due
 * now at the head, later at the tail, so the list stays in due order. */
static void dense_add(struct spb_zone *z, struct spb_pageblock *pb, uint64_t ms)
{
	sparse_del(pb);
	pb->sparse = 2;
	pb->sparse_since = spb__os_now_ms() + ms;
	if (ms)
		spb__list_add_tail(&z->dense, &pb->sparse_link);
	else
		spb__list_add_head(&z->dense, &pb->sparse_link);
	if (pb->sparse_since < z->next_decay)
		__atomic_store_n(&z->next_decay, pb->sparse_since, __ATOMIC_RELAXED);
}

void spb__sparse_update_locked(struct spb_zone *z, struct spb_pageblock *pb)
{
	if (pb->holding)
		return; /* the pass that holds it decides when it is done */
	unsigned pct = (unsigned)spb__opt(OPT_SUBRELEASE_PCT);
	unsigned resident_free = (unsigned)pb->nr_free - pb->nr_released;
	bool runs = pb->cls < SPB_NR_CLASSES && pb->mode == SPB_PB_MODE_RUNS &&
		    pb->nr_free < SPB_PAGES_PER_PB;
	bool sparse = runs && pct && splittable(pb) &&
		      resident_free * 100 >= pct * SPB_PAGES_PER_PB;
	/* A split pageblock is dense again when its runs fill it (pages
	 * given back inside spans count as free: khugepaged would fill them
	 * again); a lazy one
	 * only when its pages are resident (the look, rehuge_locked): a
	 * sparsely written buffer fills a pageblock with runs and little
	 * memory. */
	bool dense = runs && pb->nohuge &&
		     (pb->lazy || ((unsigned)pb->nr_free + pb->nr_span_rel) * 100u <=
				  SPB_DENSE_PCT * SPB_PAGES_PER_PB);
	if (sparse && pb->sparse != 1) {
		sparse_del(pb);
		sparse_add(z, pb, spb__os_now_ms());
	} else if (!sparse && dense && pb->sparse != 2) {
		/* A split pageblock at once, a lazy one after the interval. */
		dense_add(z, pb, pb->lazy ? lazy_interval_ms() : 0);
	} else if (!sparse && dense && pb->lazy && !(pb->lazy_looked & LOOKED_FULL) &&
		   pb->nr_free * 100u <= (100u - (unsigned)spb__opt(OPT_DENSE_PCT)) *
						 SPB_PAGES_PER_PB &&
		   pb->sparse_since > spb__os_now_ms()) {
		/* Lazy and full of runs for the first time since its claim:
		 * looked at at once (written whole, or only at their starts,
		 * the look says which); later looks keep the interval. */
		pb->lazy_looked |= LOOKED_FULL;
		dense_add(z, pb, 0);
		if (pb->lazy == 2 && z->lazy_learn <= 0)
			lazy_look_arm(pb);
	} else if (!sparse && !dense) {
		sparse_del(pb);
	}
}

/* Learn at once from a pageblock that just filled (the background thread
 * looks later, and collapses): a heap whose big blocks are written whole
 * stops claiming them on 4 KiB pages after one pageblock, not after every
 * pageblock of its build. One mincore, outside the lock. */
void spb__lazy_look_now(void)
{
	void *addr = spb__lazy_look;
	if (!addr)
		return;
	spb__lazy_look = NULL;
	/* Armed on whatever path took or freed a run (an in-place resize, a
	 * free, a capture), and looked at by this thread's next allocation
	 * from the engine, maybe much later: the pageblock may have gone free
	 * and its SPB unmapped (its descriptor zeroed) meanwhile. Everything
	 * is found again from the address and checked under the lock. */
	struct spb_region *r = spb__region_of(addr);
	if (!r || r->kind != SPB_REGION_SPB)
		return;
	struct spb *s = (struct spb *)r;
	struct spb_zone *z = __atomic_load_n(&s->zone, __ATOMIC_RELAXED);
	if (!z) /* being zeroed by an unmap */
		return;
	int res = spb__os_resident_pages(addr, SPB_PB_SIZE); /* reads nothing */
	spb__zone_lock(z);
	struct spb_pageblock *pb = spb__pb_of(s, addr);
	/* Still in the address map under this zone's lock: not being
	 * unmapped (an unmap leaves the map before it drops the lock). */
	if (spb__region_of(addr) == r && s->zone == z && !s->dead && pb->owner == s) {
		z->counters[PB_LAZY_CHECK]++;
		if (res < 0)
			z->counters[PB_LAZY_FAIL]++;
		else if (pb->subrel_gen == lazy_look_gen && pb->lazy == 2)
			lazy_learn_locked(z, pb, res);
	}
	spb__zone_unlock(z);
}

void spb__sparse_run_taken_locked(struct spb_zone *z, struct spb_pageblock *pb,
				  unsigned pg, unsigned n)
{
	/* The early look: a few runs in, while the zone has not learnt. */
	if (pb->lazy == 2 && !(pb->lazy_looked & LOOKED_EARLY) && z->lazy_learn <= 0 &&
	    SPB_PAGES_PER_PB - pb->nr_free >= LAZY_LEARN_PAGES) {
		pb->lazy_looked |= LOOKED_EARLY;
		lazy_look_arm(pb);
	}
	if (pb->nr_released) {
		unsigned r = spb__map_count_range(&spb__pbm(pb)->released_map, pg, n);
		if (r) {
			spb__map_clear_range(&spb__pbm(pb)->released_map, pg, n);
			pb->nr_released = (uint16_t)(pb->nr_released - r);
			z->released_pages -= r;
			z->counters[SUBRELEASE_REUSE] += r;
		}
	}
	spb__sparse_update_locked(z, pb);
}

void spb__sparse_reset_locked(struct spb_zone *z, struct spb_pageblock *pb)
{
	sparse_del(pb);
	pb->subrel_gen++; /* a look or advice under way is about its old life */
	z->released_pages -= pb->nr_released;
	pb->nr_released = 0;
	memset(&spb__pbm(pb)->released_map, 0, sizeof spb__pbm(pb)->released_map);
}

static uint64_t sparse_due(const struct spb_zone *z)
{
	const struct spb_pageblock *pb =
		spb__container_of(z->sparse.next, struct spb_pageblock, sparse_link);
	return pb->sparse_since + (uint64_t)spb__opt(OPT_DECAY_MS);
}

uint64_t spb__subrelease_due(const struct spb_zone *z)
{
	uint64_t due = spb__list_empty(&z->sparse) ? UINT64_MAX : sparse_due(z);
	if (!spb__list_empty(&z->dense)) {
		const struct spb_pageblock *pb =
			spb__container_of(z->dense.next, struct spb_pageblock, sparse_link);
		if (pb->sparse_since < due)
			due = pb->sparse_since;
	}
	return due;
}

/* The dense list: MADV_HUGEPAGE again on split pageblocks that filled up,
 * and a look at the residency of lazy ones (mincore), MADV_HUGEPAGE and
 * MADV_COLLAPSE on those SPBMALLOC_DENSE_PCT resident, what is due by
 * now, at most *budget pageblocks. Nothing is held: neither touches the
 * data. A pageblock that was split again or changed hands meanwhile
 * (subrel_gen moved) keeps its flags: its MADV_NOHUGEPAGE may have come
 * after this advice. A lazy one not dense yet is looked at again after
 * the interval. */
static void rehuge_locked(struct spb_zone *z, uint64_t now, uint32_t *budget)
{
	struct spb_pageblock *batch[SUBRELEASE_BATCH];
	uint8_t gen[SUBRELEASE_BATCH];
	uint8_t lazy[SUBRELEASE_BATCH];
	bool ok[SUBRELEASE_BATCH];
	int res[SUBRELEASE_BATCH];
	struct spb_link again; /* lazy ones not dense yet (sparse = 3) */
	spb__list_init(&again);
	const int need = (spb__opt(OPT_DENSE_PCT) * SPB_PAGES_PER_PB + 99) / 100;
	while (*budget && !z->fork_pending && !spb__list_empty(&z->dense)) {
		unsigned n = 0;
		while (n < SUBRELEASE_BATCH && n < *budget && !spb__list_empty(&z->dense)) {
			struct spb_pageblock *pb = spb__container_of(
				z->dense.next, struct spb_pageblock, sparse_link);
			if (pb->sparse_since > now)
				break;
			sparse_del(pb);
			gen[n] = pb->subrel_gen;
			lazy[n] = pb->lazy;
			batch[n++] = pb;
		}
		if (n == 0)
			break;
		*budget -= n;
		uint64_t local[SPB_NR_COUNTERS] = {0};
		z->nr_windows++;
		spb__zone_unlock(z);
		for (unsigned k = 0; k < n; k++) {
			struct spb *s = batch[k]->owner;
			void *a = spb__pb_addr(s, spb__pb_index(s, batch[k]));
			bool collapse = spb__opt(OPT_COLLAPSE);
			res[k] = 0;
			if (lazy[k]) {
				local[PB_LAZY_CHECK]++;
				res[k] = spb__os_resident_pages(a, SPB_PB_SIZE);
				if (res[k] < 0)
					local[PB_LAZY_FAIL]++;
				ok[k] = false;
				if (res[k] < need)
					continue;
				collapse = true; /* its pages are 4 KiB ones until collapsed */
			}
			ok[k] = spb__os_advise_hugepage(a, SPB_PB_SIZE);
			if (!ok[k])
				local[THP_ADVISE_FAIL]++;
			else if (collapse)
				local[spb__os_collapse(a, SPB_PB_SIZE) ? PB_COLLAPSE : PB_COLLAPSE_FAIL]++;
		}
		spb__zone_lock(z);
		spb__zone_window_close_locked(z);
		for (unsigned k = 0; k < n; k++) {
			struct spb_pageblock *pb = batch[k];
			if (pb->subrel_gen != gen[k] || !pb->nohuge || pb->lazy != lazy[k])
				continue;
			/* A sparse-prone one full of runs teaches the zone: dense
			 * or not (pageblock.c, lazy_reason). */
			if (lazy[k] == 2 && res[k] >= 0)
				lazy_learn_locked(z, pb, res[k]);
			if (!ok[k]) {
				if (lazy[k] && !pb->sparse) { /* not dense yet: looked at again */
					pb->sparse = 3;
					spb__list_add_tail(&again, &pb->sparse_link);
				}
				continue;
			}
			pb->nohuge = 0;
			pb->lazy = 0;
			z->counters[lazy[k] ? PB_LAZY_HUGE : SUBRELEASE_REHUGE]++;
			if (pb->rung == SPB_RUNG_4K)
				spb__pb_set_rung_locked(z, pb, SPB_RUNG_THP);
			spb__sparse_update_locked(z, pb);
		}
		for (int c = 0; c < SPB_NR_COUNTERS; c++)
			z->counters[c] += local[c];
	}
	/* After the interval, not within this pass (spb_trim's "now" is far
	 * ahead). An update meanwhile (the lock was dropped) took some off
	 * this list already: sparse_del knows state 3. */
	while (!spb__list_empty(&again)) {
		struct spb_pageblock *pb =
			spb__container_of(again.next, struct spb_pageblock, sparse_link);
		sparse_del(pb);
		spb__sparse_update_locked(z, pb);
	}
}

/* Take pb's resident free pages out of its free map: they are held until
 * the system calls are done. */
static void hold_locked(struct spb_pageblock *pb)
{
	struct spb *s = pb->owner;
	unsigned held = 0;
	for (unsigned w = 0; w < SPB_MAP_WORDS; w++) {
		spb__pbm(pb)->held_map.w[w] = spb__pbm(pb)->free_map.w[w] & ~spb__pbm(pb)->released_map.w[w];
		spb__pbm(pb)->free_map.w[w] &= ~spb__pbm(pb)->held_map.w[w];
		held += (unsigned)__builtin_popcountll(spb__pbm(pb)->held_map.w[w]);
	}
	pb->holding = 1;
	pb->nr_free = (uint16_t)(pb->nr_free - held);
	s->nr_partial_free[pb->cls] -= held;
	pb->longest = (uint16_t)spb__map_longest_run(&spb__pbm(pb)->free_map);
	if (pb->nr_free == 0)
		spb__partial_del(s, pb);
}

/* Without the lock: MADV_NOHUGEPAGE on the pageblock (a THP one, once),
 * then MADV_DONTNEED on each held run; *given gets the runs the OS took
 * (a refused one stays resident). Returns whether NOHUGEPAGE took. */
static bool give_back(struct spb_pageblock *pb, spb_map512_t *given, uint64_t *counters,
		      uint32_t *budget)
{
	struct spb *s = pb->owner;
	char *base = spb__pb_addr(s, spb__pb_index(s, pb));
	bool nohuge = pb->nohuge;
	if (pb->rung == SPB_RUNG_THP && !nohuge && *budget) {
		--*budget;
		nohuge = spb__os_advise_nohugepage(base, SPB_PB_SIZE);
		if (!nohuge) /* given back anyway: khugepaged may fold it again */
			counters[SUBRELEASE_FAIL]++;
	}
	unsigned pos = 0, start;
	while (*budget && (start = spb__map_next_run(&spb__pbm(pb)->held_map, &pos)) < SPB_PAGES_PER_PB) {
		unsigned n = pos - start;
		--*budget;
		if (spb__os_dontneed(base + ((size_t)start << SPB_PAGE_SHIFT),
				     (size_t)n << SPB_PAGE_SHIFT)) {
			counters[SUBRELEASE_PAGES] += n;
			spb__map_set_range(given, start, n);
		} else {
			counters[SUBRELEASE_FAIL]++;
		}
	}
	return nohuge;
}

/* Back under the lock: every held page is free again, the given-back ones
 * marked so. True when some were kept (the OS refused, or the pass ran
 * out of budget): the caller queues it again. */
static bool unhold_locked(struct spb_zone *z, struct spb_pageblock *pb, unsigned held,
			  const spb_map512_t *ok, bool nohuge)
{
	struct spb *s = pb->owner;
	unsigned given = 0;
	for (unsigned w = 0; w < SPB_MAP_WORDS; w++) {
		spb__pbm(pb)->free_map.w[w] |= spb__pbm(pb)->held_map.w[w];
		spb__pbm(pb)->released_map.w[w] |= ok->w[w];
		given += (unsigned)__builtin_popcountll(ok->w[w]);
		spb__pbm(pb)->held_map.w[w] = 0;
	}
	if (pb->nr_free == 0)
		spb__partial_add(s, pb);
	pb->nr_free = (uint16_t)(pb->nr_free + held);
	s->nr_partial_free[pb->cls] += held;
	pb->nr_released = (uint16_t)(pb->nr_released + given);
	z->released_pages += given;
	if (nohuge && !pb->nohuge) {
		pb->nohuge = 1;
		if (pb->rung == SPB_RUNG_THP)
			spb__pb_set_rung_locked(z, pb, SPB_RUNG_4K);
	}
	pb->holding = 0;
	if (given) {
		z->counters[SUBRELEASE]++;
		pb->subrel_gen++;
	}
	if (pb->nr_free == SPB_PAGES_PER_PB) {
		/* Its last runs were freed meanwhile: back to the SPB. */
		spb__partial_del(s, pb);
		s->nr_partial_free[pb->cls] -= SPB_PAGES_PER_PB;
		spb__sparse_reset_locked(z, pb);
		spb__pb_unclaim_locked(s, spb__pb_index(s, pb), 1);
		return false;
	}
	pb->longest = (uint16_t)spb__map_longest_run(&spb__pbm(pb)->free_map);
	spb__spb_update_locked(s);
	return given < held;
}

void spb__subrelease_due_locked(struct spb_zone *z, uint64_t now, uint32_t max_calls)
{
	struct spb_pageblock *batch[SUBRELEASE_BATCH];
	unsigned held[SUBRELEASE_BATCH];
	bool nohuge[SUBRELEASE_BATCH];
	spb_map512_t ok[SUBRELEASE_BATCH];
	struct spb_link refused;
	bool in_window = false;
	spb__list_init(&refused);
	rehuge_locked(z, now, &max_calls);
	while (max_calls && !z->fork_pending && !spb__list_empty(&z->sparse)) {
		unsigned n = 0;
		while (n < SUBRELEASE_BATCH && !spb__list_empty(&z->sparse)) {
			struct spb_pageblock *pb = spb__container_of(
				z->sparse.next, struct spb_pageblock, sparse_link);
			if (sparse_due(z) > now)
				break;
			sparse_del(pb);
			if (pb->nr_free == pb->nr_released)
				continue; /* nothing resident to give back */
			unsigned before = pb->nr_free;
			hold_locked(pb);
			held[n] = before - pb->nr_free;
			batch[n++] = pb;
		}
		if (n == 0)
			break;
		uint64_t local[SPB_NR_COUNTERS] = {0};
		if (!in_window)
			z->nr_windows++;
		in_window = true;
		spb__zone_unlock(z);
		memset(ok, 0, sizeof ok);
		for (unsigned k = 0; k < n; k++)
			nohuge[k] = give_back(batch[k], &ok[k], local, &max_calls);
		spb__zone_lock(z);
		for (unsigned k = 0; k < n; k++)
			if (unhold_locked(z, batch[k], held[k], &ok[k], nohuge[k]) &&
			    !batch[k]->sparse) {
				/* state 3: an update while the lock is dropped for
				 * the next batch takes it off this list properly */
				batch[k]->sparse = 3;
				spb__list_add_tail(&refused, &batch[k]->sparse_link);
			}
		for (int c = 0; c < SPB_NR_COUNTERS; c++)
			z->counters[c] += local[c];
	}
	/* Refused, or past the budget: due again after the delay, not within this pass (a pass
	 * with "now" far ahead, spb_trim's, would never end). */
	while (!spb__list_empty(&refused)) {
		struct spb_pageblock *pb =
			spb__container_of(refused.next, struct spb_pageblock, sparse_link);
		sparse_del(pb);
		if (pb->cls < SPB_NR_CLASSES && pb->mode == SPB_PB_MODE_RUNS)
			sparse_add(z, pb, spb__os_now_ms());
	}
	if (in_window)
		spb__zone_window_close_locked(z);
}

void spb__subrelease_all_locked(struct spb_zone *z)
{
	for (int c = 0; c < SPB_NR_CATS; c++)
		for (int f = 0; f < SPB_NR_FULLNESS; f++) {
			struct spb_link *h = &z->lists[c][f];
			for (struct spb_link *l = h->next; l != h; l = l->next) {
				struct spb *s = spb__container_of(l, struct spb, link);
				for (unsigned cls = 0; cls < SPB_NR_CLASSES; cls++) {
					struct spb_link *ph = &s->partial[cls];
					for (struct spb_link *q = ph->next; q != ph; q = q->next) {
						struct spb_pageblock *pb = spb__container_of(
							q, struct spb_pageblock, link);
						if (pb->holding || !splittable(pb) ||
						    pb->nr_free == pb->nr_released)
							continue;
						sparse_del(pb);
						sparse_add(z, pb, 0);
					}
				}
			}
		}
}

/* Span trim: pages inside a span its owner gave back (span.c). The
 * pageblock leaves its huge page here, under the lock (the owner advises
 * MADV_NOHUGEPAGE right after, so that khugepaged does not fill the holes
 * again), and counts them: while they and its free pages are many, it is
 * not put on huge pages again (spb__sparse_update_locked). subrel_gen
 * moves, so a rehuge pass that looked at it meanwhile keeps its flags. */
int spb__span_pages_given(void *run, int n, bool may_split)
{
	struct spb *s = (struct spb *)spb__region_of(run);
	struct spb_zone *z = s->zone;
	int ret = SPB_TRIM_OK;
	spb__zone_lock(z);
	struct spb_pageblock *pb = spb__pb_of(s, run);
	if (n > 0) {
		if (!splittable(pb) || (!may_split && pb->rung == SPB_RUNG_THP && !pb->nohuge)) {
			ret = SPB_TRIM_NO;
		} else {
			if (pb->rung == SPB_RUNG_THP && !pb->nohuge) {
				pb->nohuge = 1;
				spb__pb_set_rung_locked(z, pb, SPB_RUNG_4K);
				z->counters[SPAN_TRIM_SPLIT]++;
				ret = SPB_TRIM_ADVISE;
			}
			pb->subrel_gen++;
			pb->nr_span_rel = (uint16_t)(pb->nr_span_rel + (unsigned)n);
		}
	} else {
		unsigned m = (unsigned)-n;
		pb->nr_span_rel = (uint16_t)(pb->nr_span_rel > m ? pb->nr_span_rel - m : 0);
	}
	if (ret != SPB_TRIM_NO)
		spb__sparse_update_locked(z, pb);
	spb__zone_unlock(z);
	return ret;
}

void spb__trimmed_run_freed_locked(struct spb_zone *z, struct spb_pageblock *pb, unsigned pg,
				   uint64_t rel)
{
	if (pb->cls >= SPB_NR_CLASSES || pb->mode != SPB_PB_MODE_RUNS)
		return; /* entirely free: back to its SPB, released whole later */
	unsigned n = 0;
	while (rel) {
		unsigned i = pg + (unsigned)__builtin_ctzll(rel);
		rel &= rel - 1;
		if (!spb__map_test(&spb__pbm(pb)->released_map, i)) {
			spb__map_set_range(&spb__pbm(pb)->released_map, i, 1);
			n++;
		}
	}
	pb->nr_released = (uint16_t)(pb->nr_released + n);
	z->released_pages += n;
	spb__sparse_update_locked(z, pb);
}
