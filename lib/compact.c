/*
 * compact.c — moving handle objects out of sparse spans: one bounded pass
 * (spb__compact_pass, run by the compaction thread, compactd.c) and
 * spb_compact() (every candidate, on the caller's thread).
 *
 * A pass per zone: under the zone lock, every MOVABLE span is measured
 * (live blocks by popcount of its bitmaps) for the fragmentation figure
 * the controller reads (backed bytes of MOVABLE pageblocks over live
 * bytes), and the ownerless ones (abandoned: heap.c keeps every MOVABLE
 * span but a heap's current one ownerless, so no thread allocates from a
 * source) at most half live become sources, emptiest first. The zone's
 * mover count keeps its SPBs mapped until the pass ends. Then, without
 * any lock, each live block of a source is read for its entry index (a
 * header written by spb_halloc); if its entry's word names exactly that
 * block, unpinned, the header is CASed from the tag to tag^MARK and the
 * object batched. One grace period (synchronize_rcu) for the batch, then
 * per object: a new block from the mover's MOVABLE heap (spb__compacting:
 * it adopts only spans more than half live, never a source, or takes a
 * new one); CAS tag^MARK -> tag^COPY (fails if a reader cancelled); the
 * entry still as chosen (no pin since); copy (the new header tag^COPY);
 * CAS the entry to the new place; the tag at the new place; scrub the old
 * header; free the old block. handle.c has the protocol and why no write
 * is lost. After the pass (the old blocks freed as any other thread's
 * frees: flagged in their spans) the abandoned spans are swept: the emptied spans go back to the engine,
 * whose pageblocks then go free whole (and, once an SPB is empty, decay
 * unmaps it). Objects over 128 KiB (page runs) move when their pageblock
 * is emptied; objects of whole pageblocks (2 MiB and more) when their SPB
 * is evacuated (tainted) or drained (a clean SPB that only MOVABLE
 * pageblocks being emptied hold, with room in a fuller clean SPB): then
 * their new place must be in another SPB, not a tainted one. Nothing
 * moves while the caller is inside a read section (the grace period would
 * wait for the caller itself): EDEADLK.
 *
 * Reading a block header may race with its owner freeing it (the free
 * list link overwrites it), and a source span may be released and its
 * descriptor reused meanwhile: the value read is only an index, checked
 * against the entry's word before anything is done with it.
 */
#include <errno.h>
#include <string.h>

#include "handle.h"

#define SPB_EXPORT __attribute__((visibility("default")))
#define COMPACT_MAX_SPANS 4096 /* sources a pass considers */
#define COMPACT_BATCH 256
struct move {
	struct spb_hentry *e;
	char *from;
	struct spb_span *src;
	uint64_t w; /* the entry's word it had (NORMAL, no pins) */
	uint64_t tag; /* its header's settled value */
	uint32_t bytes;
	bool whole;  /* an object of whole pageblocks: its new place must be
			in another SPB, and not a tainted one */
	struct spb *src_spb;
};

/* Speculative reads. Outside the zone lock a source span may have been
 * released and its descriptor and blocks reused by another thread (the
 * mover holds no lock its owner takes): what is read here is only ever a
 * guess, validated by the entry's word before anything is done with it
 * (a block is moved only if its entry names exactly that address, NORMAL,
 * and the CAS of its header to tag^MARK succeeds). Such reads race by
 * design, like the kernel's compaction scanners; ThreadSanitizer is told
 * not to look at these two, span_evac below, and handle.h's spb__h_peek
 * and spb__h_cas (the header read and CASed the same way), and nothing
 * else. */
#define SPB_SPECULATIVE static __attribute__((noinline, no_sanitize("thread")))

struct span_snap {
	uint32_t capacity, bsize;
	uintptr_t start;
};

SPB_SPECULATIVE void peek_span(const struct spb_span *sp, struct span_snap *sn)
{
	sn->capacity = *(volatile const uint32_t *)&sp->capacity;
	sn->bsize = *(volatile const uint32_t *)&sp->bsize;
	sn->start = *(volatile const uintptr_t *)&sp->start;
}

SPB_SPECULATIVE bool peek_live(const struct spb_span *sp, uintptr_t off)
{
	uintptr_t i = off >> *(volatile const uint8_t *)&sp->gshift;
	const volatile uint64_t *w = (const volatile uint64_t *)(sp + 1) + ((i >> 6) << 1);
	uint64_t bit = (uint64_t)1 << (i & 63);
	return (w[0] & bit) && !(w[1] & bit);
}

/* A span to empty, or (span NULL) a page run that may be one object
 * behind a handle (over 128 KiB), or (whole) the pageblocks of one. */
struct source {
	struct spb_span *span;
	uint32_t live, capacity;
	uintptr_t run;
	uint32_t run_bytes;
	struct spb *whole; /* the SPB of an object of whole pageblocks */
};

/* A MOVABLE pageblock to empty whole: at most half live (or any, for an
 * evacuation), or (npb > 0) the first of npb holding one object of whole
 * pageblocks, in a tainted SPB (evacuation) or in an SPB that only
 * MOVABLE pageblocks to be emptied hold (draining it lets it go back). */
struct pb_source {
	struct spb *spb;
	uint32_t idx;
	uint32_t npb;
	uint64_t live;
};

struct scan {
	struct source *spans; /* sparse ownerless spans */
	unsigned nspans, max_spans;
	struct pb_source *pbs;
	unsigned npbs, max_pbs;
	bool evac;            /* evacuation: tainted SPBs only, any density */
};

/* The runs of a RUNS pageblock in address order (lock held): *pg is the
 * cursor; the next run's first page and length, or false at the end. */
static bool next_run(const struct spb_pageblock *pb, unsigned *pg, unsigned *at, unsigned *n)
{
	while (*pg < SPB_PAGES_PER_PB && !spb__run_len(pb)[*pg])
		(*pg)++;
	if (*pg >= SPB_PAGES_PER_PB)
		return false;
	*at = *pg;
	*n = spb__run_len(pb)[*pg];
	*pg += *n;
	return true;
}

/* The entry of the handle object at p (a block, page run or whole
 * pageblocks, header first), with its word in *wp: the header is read
 * speculatively (the SPB is kept mapped: zone lock or mover count) and
 * the entry must name exactly that place; NULL otherwise. */
static struct spb_hentry *entry_at(const char *p, uint32_t hwm, uint64_t *wp, uint64_t *vp)
{
	if (!spb__htab)
		return NULL;
	uint64_t v = *vp = spb__h_peek(p);
	uint32_t idx = spb__h_index(v ^ spb__hkey); /* whatever the mark bits */
	if (idx == 0 || idx > hwm)
		return NULL;
	struct spb_hentry *e = &spb__htab[idx];
	uint64_t w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
	if (spb__h_addr(w) != p + SPB_HANDLE_HDR)
		return NULL;
	*wp = w;
	return e;
}

/* Does p hold a handle object? What else may be there (spb_pages_alloc
 * in MOVABLE) cannot move, and keeps its SPB. */
static bool handle_at(const char *p, uint32_t hwm)
{
	uint64_t w, v;
	return entry_at(p, hwm, &w, &v) != NULL;
}

/* A clean SPB other than s, fuller than s, with free pageblocks for all
 * of s's used ones (lock held): where draining s moves its objects (the
 * MOVABLE claim takes the fullest clean SPB first). Without one, moving
 * would only take a new SPB for an old one. */
static bool room_elsewhere(struct spb_zone *z, const struct spb *s)
{
	unsigned need = SPB_PB_PER_SPB - s->nr_free_pb;
	for (int f = 0; f < SPB_NR_FULLNESS; f++) {
		struct spb_link *h = &z->lists[SPB_CAT_CLEAN][f];
		for (struct spb_link *l = h->next; l != h; l = l->next) {
			const struct spb *t = spb__container_of(l, struct spb, link);
			if (t != s && t->nr_free_pb >= need && t->nr_free_pb < s->nr_free_pb)
				return true;
		}
	}
	return false;
}

/* Measure z's MOVABLE memory (lock held) and note the candidates. */
static void scan_zone(struct spb_zone *z, struct scan *sc, struct spb_compact_stat *st)
{
	bool evac = sc && sc->evac;
	uint32_t hwm = spb__handle_hwm();
	for (unsigned c = evac ? SPB_CAT_TAINTED : SPB_CAT_CLEAN; c <= SPB_CAT_TAINTED; c++)
		for (int f = 0; f < SPB_NR_FULLNESS; f++) {
			struct spb_link *h = &z->lists[c][f];
			for (struct spb_link *l = h->next; l != h; l = l->next) {
				struct spb *s = spb__container_of(l, struct spb, link);
				if (!s->nr_class_pb[SPB_MOVABLE])
					continue;
				/* An SPB that only MOVABLE pageblocks to be
				 * emptied hold drains: its objects of whole
				 * pageblocks are sources too (below). */
				unsigned first_pb = sc ? sc->npbs : 0, nwhole = 0;
				bool drains = sc && !evac && c == SPB_CAT_CLEAN &&
					      s->nr_class_pb[SPB_MOVABLE] + s->nr_free_pb +
							      s->nr_busy_pb == SPB_PB_PER_SPB;
				for (unsigned i = 0; i < SPB_PB_PER_SPB; i++) {
					struct spb_pageblock *pb = &s->pb[i];
					if (pb->cls != SPB_MOVABLE)
						continue;
					st->backed += SPB_PB_SIZE;
					if (pb->mode != SPB_PB_MODE_RUNS) {
						st->live += SPB_PB_SIZE; /* whole pageblocks */
						if (pb->mode != SPB_PB_MODE_MULTI_HEAD || !sc ||
						    !(evac || drains))
							continue;
						if (!handle_at(spb__pb_addr(s, i), hwm)) {
							drains = false; /* it stays: so does the SPB */
							continue;
						}
						if (sc->npbs < sc->max_pbs) {
							sc->pbs[sc->npbs++] = (struct pb_source){
								s, i, pb->multi_npb,
								(uint64_t)pb->multi_npb * SPB_PB_SIZE};
							nwhole++;
						}
						continue;
					}
					st->backed -= (uint64_t)pb->nr_released << SPB_PAGE_SHIFT;
					uint64_t pb_live = 0;
					bool movable = true;
					char *base = spb__pb_addr(s, i);
					for (unsigned pg = 0, at, n; next_run(pb, &pg, &at, &n);) {
						char *a = base + ((size_t)at << SPB_PAGE_SHIFT);
						struct spb_span *sp = spb__span_of(s, a);
						if (!sp || sp->start != (uintptr_t)a) {
							/* A page run: an object behind a
							 * handle moves like a block; what
							 * else it may be (spb_pages_alloc
							 * in MOVABLE) stays, and so does
							 * its pageblock. */
							pb_live += (uint64_t)n << SPB_PAGE_SHIFT;
							if (drains && !handle_at(a, hwm))
								drains = false;
							continue;
						}
						uint32_t live = spb__span_live(sp);
						pb_live += (uint64_t)live * sp->bsize;
						/* Owned: a thread's current span (heap.c
						 * keeps no other). It moves too: the pass
						 * takes it (steal) if its pageblock is
						 * emptied; the mover dropped its own. */
						bool owned = __atomic_load_n(&sp->heap, __ATOMIC_RELAXED);
						if (sc && !evac && sc->nspans < sc->max_spans &&
						    live * 2 <= sp->capacity && !owned)
							sc->spans[sc->nspans++] =
								(struct source){sp, live, sp->capacity, 0, 0, NULL};
					}
					st->live += pb_live;
					bool src = movable && (evac || pb_live * 2 <= SPB_PB_SIZE);
					if (sc && src && sc->npbs < sc->max_pbs)
						sc->pbs[sc->npbs++] = (struct pb_source){s, i, 0, pb_live};
					else
						drains = false;
				}
				/* Not draining after all (a pageblock stays): its
				 * whole-pageblock objects stay where they are. */
				if (sc && nwhole && !evac && (!drains || !room_elsewhere(z, s))) {
					unsigned k = first_pb;
					for (unsigned j = first_pb; j < sc->npbs; j++)
						if (!sc->pbs[j].npb)
							sc->pbs[k++] = sc->pbs[j];
					sc->npbs = k;
				}
			}
		}
}

/* Shell sorts (Ciura's gaps): glibc's qsort may malloc, and these run
 * under the zone lock. Pageblocks by live bytes; spans by fill
 * (live/capacity), emptiest first: the fewest moves free the most. */
static const unsigned gaps[] = {701, 301, 132, 57, 23, 10, 4, 1};

static void sort_pbs(struct pb_source *v, unsigned n)
{
	for (unsigned g = 0; g < sizeof gaps / sizeof gaps[0]; g++)
		for (unsigned i = gaps[g]; i < n; i++) {
			struct pb_source t = v[i];
			unsigned j = i;
			for (; j >= gaps[g] && v[j - gaps[g]].live > t.live; j -= gaps[g])
				v[j] = v[j - gaps[g]];
			v[j] = t;
		}
}

static bool fuller(const struct source *a, const struct source *b)
{
	return (uint64_t)a->live * b->capacity > (uint64_t)b->live * a->capacity;
}

static void sort_spans(struct source *v, unsigned n)
{
	for (unsigned g = 0; g < sizeof gaps / sizeof gaps[0]; g++)
		for (unsigned i = gaps[g]; i < n; i++) {
			struct source t = v[i];
			unsigned j = i;
			for (; j >= gaps[g] && fuller(&v[j - gaps[g]], &t); j -= gaps[g])
				v[j] = v[j - gaps[g]];
			v[j] = t;
		}
}

/* Its header back to settled from `from` (tag^MARK: chosen, not yet
 * copied; tag^COPY: copying stopped), unless someone else changed it (a
 * reader cancelled, a free scrubbed it). */
static void unchoose(struct move *m, uint64_t from)
{
	if (from == (m->tag ^ SPB_HDR_MARK)) /* the block may have been freed since */
		spb__h_cas(spb__h_hdr(m->from), from, m->tag);
	else /* ours while copying: nobody frees it; a waiter acquires this */
		__atomic_compare_exchange_n(spb__h_hdr(m->from), &from, m->tag, false,
					    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

/* fork: no object may be tag^COPY in the child (its readers would wait for
 * a mover that is not there). prefork closes the gate and waits for the
 * copies in flight; a mover takes a slot first, then looks at the gate. */
static int fork_gate, copies_in_flight;
static pthread_mutex_t one_pass = PTHREAD_MUTEX_INITIALIZER;

void spb__compact_prefork(void)
{
	__atomic_store_n(&fork_gate, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&copies_in_flight, __ATOMIC_SEQ_CST))
		__builtin_ia32_pause();
}

void spb__compact_postfork(bool child)
{
	if (child) {
		/* A pass in the parent is not in the child: its chosen
		 * objects are tag^MARK (readers cancel), none is tag^COPY. */
		pthread_mutex_init(&one_pass, NULL);
		copies_in_flight = 0;
	}
	__atomic_store_n(&fork_gate, 0, __ATOMIC_SEQ_CST);
}

/* An object of whole pageblocks, header included, pageblock by pageblock:
 * one with no page resident (never written, or given back) reads as
 * zeros, so its new place is made to read as zeros too (MADV_DONTNEED)
 * instead of being written: moving a big, sparsely used object must not
 * make it resident. Both places are pageblock-aligned. */
static void copy_whole(char *to, const char *from, size_t bytes)
{
	for (size_t o = 0; o < bytes; o += SPB_PB_SIZE) {
		size_t len = bytes - o < SPB_PB_SIZE ? bytes - o : SPB_PB_SIZE;
		if (o && spb__os_resident_pages(from + o, len) == 0 && spb__os_dontneed(to + o, len)) {
			spb__heap_count(COMPACT_WHOLE_SPARSE_PB, 1);
			continue;
		}
		memcpy(to + o, from + o, len);
	}
}

/* A move given up after its header went to COPY: the header back to the
 * tag, the copy no longer in flight (fork may go on), the new block (if
 * any) back. */
static void give_up_copy(struct move *m, char *nb)
{
	unchoose(m, m->tag ^ SPB_HDR_COPY);
	__atomic_fetch_sub(&copies_in_flight, 1, __ATOMIC_SEQ_CST);
	if (nb)
		spb__free_ptr(nb);
}

static size_t run_batch(struct move *b, unsigned n)
{
	size_t moved = 0;
	uint64_t t0 = spb__os_now_ns();
	spb__rcu_synchronize();
	spb__heap_count(COMPACT_GRACE, 1);
	spb__heap_count(COMPACT_GRACE_US, (spb__os_now_ns() - t0) / 1000);
	for (unsigned k = 0; k < n; k++) {
		struct move *m = &b[k];
		uint64_t marked = m->tag ^ SPB_HDR_MARK, copying = m->tag ^ SPB_HDR_COPY;
		uint64_t *hp = spb__h_hdr(m->from);
		char *nb = spb__malloc_movable(m->bytes);
		if (!nb) {
			unchoose(m, marked);
			continue;
		}
		struct spb *sp = (struct spb *)spb__region_of(nb);
		if (!sp || sp->r.kind != SPB_REGION_SPB || (m->src && spb__span_of(sp, nb) == m->src) ||
		    spb__addr_evac(nb) ||
		    (m->whole && (sp == m->src_spb ||
				  __atomic_load_n(&sp->category, __ATOMIC_RELAXED) == SPB_CAT_TAINTED))) {
			spb__free_ptr(nb);
			unchoose(m, marked);
			spb__heap_count(COMPACT_NO_TARGET, 1);
			continue;
		}
		__atomic_fetch_add(&copies_in_flight, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&fork_gate, __ATOMIC_SEQ_CST)) {
			__atomic_fetch_sub(&copies_in_flight, 1, __ATOMIC_SEQ_CST);
			spb__free_ptr(nb);
			unchoose(m, marked);
			continue;
		}
		if (!spb__h_cas(hp, marked, copying)) {
			__atomic_fetch_sub(&copies_in_flight, 1, __ATOMIC_SEQ_CST);
			spb__free_ptr(nb); /* cancelled by a reader, pinner or freer */
			continue;
		}
		/* Nobody holds the old place now, and whoever comes through the
		 * table waits. A pin taken after the choice (the entry was read
		 * before it) is seen here, or fails the final CAS. */
		uint64_t w = __atomic_load_n(&m->e->word, __ATOMIC_SEQ_CST);
		if (w != m->w) {
			if (spb__h_pins(w))
				spb__heap_count(COMPACT_PINNED_SKIPPED, 1);
			give_up_copy(m, nb);
			continue;
		}
		/* The block size was a speculative read (a descriptor being
		 * reused can give a torn one): the block's own metadata says,
		 * now that the object can be neither freed nor moved by anyone
		 * else. */
		size_t real = spb__usable(m->from - SPB_HANDLE_HDR);
		if (SPB_UNLIKELY(real > spb__usable(nb))) {
			spb__free_ptr(nb);
			nb = spb__malloc_movable(real);
			spb__heap_count(COMPACT_RESIZED, 1);
			if (!nb) {
				give_up_copy(m, NULL);
				continue;
			}
		}
		/* The contents, the new header saying COPY until the entry names
		 * the new place: that place may be the one the handle names (the
		 * object has moved before), where the inline spb_hget must not
		 * find the tag of a copy that may yet be thrown away (SPIN found
		 * this: tests/model/handle.pml). */
		if (m->whole) {
			copy_whole(nb, m->from - SPB_HANDLE_HDR, real); /* header: COPY */
		} else {
			__atomic_store_n((uint64_t *)nb, copying, __ATOMIC_SEQ_CST);
			memcpy(nb + SPB_HANDLE_HDR, m->from, real - SPB_HANDLE_HDR);
		}
		uint64_t expect = m->w;
		if (!__atomic_compare_exchange_n(&m->e->word, &expect,
						 (uint64_t)(uintptr_t)(nb + SPB_HANDLE_HDR) | SPB_HS_NORMAL,
						 false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
			/* Pinned while copying: the pinner waits for this. The new
			 * block goes back with no tag in it. */
			spb__heap_count(COMPACT_PINNED_SKIPPED, 1);
			__atomic_store_n((uint64_t *)nb, 0, __ATOMIC_SEQ_CST);
			give_up_copy(m, nb);
			continue;
		}
		/* Settled at the new place; the old one answers for the handle
		 * no more. */
		__atomic_store_n((uint64_t *)nb, m->tag, __ATOMIC_SEQ_CST);
		__atomic_store_n(hp, 0, __ATOMIC_SEQ_CST);
		__atomic_fetch_sub(&copies_in_flight, 1, __ATOMIC_SEQ_CST);
		spb__free_ptr(m->from - SPB_HANDLE_HDR);
		moved += real;
		spb__heap_count(COMPACT_MOVED, 1);
		if (m->whole)
			spb__heap_count(COMPACT_WHOLE_MOVED, 1);
	}
	spb__heap_count(COMPACT_MOVED_BYTES, moved);
	return moved;
}

#define COMPACT_MAX_PBS 2048
struct pass_opts {
	size_t max_bytes;        /* live bytes planned, at most (0: no bound) */
	unsigned max_pbs;        /* pageblocks emptied, at most (0: no bound) */
	bool evac;               /* tainted SPBs' MOVABLE pageblocks, any density */
	struct spb_capture *cap; /* a request to serve from a freed pageblock */
};
static struct source sources[COMPACT_MAX_SPANS], sparse[COMPACT_MAX_SPANS];
static struct pb_source pbs[COMPACT_MAX_PBS];
static struct move batch[COMPACT_BATCH];
#define COMPACT_MAX_STEAL 1024
static struct spb_span *stolen[COMPACT_MAX_STEAL];

/* A hint on another thread's current span, which may be released and its
 * descriptor reused under our feet (the steal's CAS on the heap's bin is
 * what counts): a speculative read. */
SPB_SPECULATIVE bool span_evac(const struct spb_span *sp)
{
	return spb__addr_evac((void *)*(volatile const uintptr_t *)&sp->start);
}

/* Choose sources (lock held): the emptiest movable pageblocks first, up
 * to max_bytes of live data, flagged evac so no new run lands there and
 * every span of theirs a source; then the sparse spans elsewhere,
 * emptiest first. Returns the number of sources; *nevac entries of pbs[]
 * chosen, which empty *nevac_pbs pageblocks (an object of whole
 * pageblocks empties all of its own, and counts so against max_pbs). */
static unsigned choose_locked(struct spb_zone *z, const struct pass_opts *o,
			      struct spb_compact_stat *st, unsigned *nevac, unsigned *nevac_pbs)
{
	struct scan sc = {sparse, 0, COMPACT_MAX_SPANS, pbs, 0, COMPACT_MAX_PBS, o->evac};
	scan_zone(z, &sc, st);
	sort_pbs(pbs, sc.npbs);
	unsigned k = 0, np = 0, npbs = 0;
	uint64_t planned = 0;
	for (; np < sc.npbs; np++) {
		if ((o->max_bytes && planned >= o->max_bytes) || (o->max_pbs && npbs >= o->max_pbs))
			break;
		struct pb_source *p = &pbs[np];
		struct spb_pageblock *pb = &p->spb->pb[p->idx];
		char *base = spb__pb_addr(p->spb, p->idx);
		if (p->npb) { /* one object of whole pageblocks */
			/* The bound is pageblocks: an evacuation of 32 must
			 * not copy a 1 GiB object (sorted by size, the rest
			 * are no smaller). */
			if (k == COMPACT_MAX_SPANS || (o->max_pbs && npbs + p->npb > o->max_pbs))
				break;
			npbs += p->npb;
			for (unsigned j = 0; j < p->npb; j++)
				__atomic_store_n(&p->spb->pb[p->idx + j].evac, 1, __ATOMIC_RELAXED);
			planned += p->live;
			sources[k++] = (struct source){NULL, 1, 1, (uintptr_t)base,
						       p->npb << SPB_PB_SHIFT, p->spb};
			continue;
		}
		unsigned need = 0;
		for (unsigned pg = 0, at, n; next_run(pb, &pg, &at, &n);)
			need++;
		if (k + need > COMPACT_MAX_SPANS)
			break;
		__atomic_store_n(&pb->evac, 1, __ATOMIC_RELAXED);
		planned += p->live;
		npbs++;
		for (unsigned pg = 0, at, n; next_run(pb, &pg, &at, &n);) {
			char *a = base + ((size_t)at << SPB_PAGE_SHIFT);
			struct spb_span *sp = spb__span_of(p->spb, a);
			/* A span released since the scan (its pagemap is cleared
			 * before its run goes back, outside the lock) looks like a
			 * page run: its header check below finds nothing. */
			if (sp && sp->start == (uintptr_t)a) {
				__atomic_store_n(&sp->compact_src, 1, __ATOMIC_RELAXED);
				sources[k++] = (struct source){sp, 0, sp->capacity, 0, 0, NULL};
			} else {
				sources[k++] = (struct source){NULL, 1, 1, (uintptr_t)a,
							       n << SPB_PAGE_SHIFT, NULL};
			}
		}
	}
	*nevac = np;
	*nevac_pbs = npbs;
	/* Evacuation (and capture) empties pageblocks only: every sparse span
	 * a source too would leave no target where all are sparse. */
	if (o->evac)
		return k;
	sort_spans(sparse, sc.nspans);
	for (unsigned i = 0; i < sc.nspans && k < COMPACT_MAX_SPANS; i++) {
		if (!spb__addr_evac((void *)sparse[i].span->start)) {
			__atomic_store_n(&sparse[i].span->compact_src, 1, __ATOMIC_RELAXED);
			sources[k++] = sparse[i];
		}
	}
	return k;
}

static size_t compact_zone(struct spb_zone *z, const struct pass_opts *o,
			   struct spb_compact_stat *st)
{
	size_t moved = 0, max_bytes = o->max_bytes;
	unsigned nevac = 0, nevac_pbs = 0;
	spb__zone_lock(z);
	z->movers++;
	unsigned ns = choose_locked(z, o, st, &nevac, &nevac_pbs);
	spb__zone_unlock(z);
	st->sources += ns;
	st->evac_pbs += nevac_pbs;
	/* Other threads' current spans in those pageblocks: taken, and
	 * abandoned after a grace period (heap.c), so they can go back. */
	unsigned nstolen = spb__heap_steal_begin(span_evac, stolen, COMPACT_MAX_STEAL);
	if (nstolen) {
		spb__rcu_synchronize();
		spb__heap_count(COMPACT_GRACE, 1);
		spb__heap_steal_end(stolen, nstolen);
		spb__heap_count(COMPACT_SPANS_STOLEN, nstolen);
	}	uint32_t hwm = spb__handle_hwm();
	unsigned nb = 0;
	for (unsigned k = 0; k < ns && (!max_bytes || moved < max_bytes); k++) {
		struct spb_span *sp = sources[k].span;
		/* The descriptor may have been released and reused since the
		 * scan: every block is checked against its entry below. */
		struct span_snap sn;
		if (sp)
			peek_span(sp, &sn);
		else
			sn = (struct span_snap){1, sources[k].run_bytes, sources[k].run};
		for (uint32_t i = 0; i < sn.capacity; i++) {
			uintptr_t off = (uintptr_t)i * sn.bsize;
			if (sp && !peek_live(sp, off))
				continue;
			char *blk = (char *)sn.start + off;
			uint64_t w, v;
			struct spb_hentry *e = entry_at(blk, hwm, &w, &v);
			if (!e || (w & SPB_HS_MASK) != SPB_HS_NORMAL || ((v ^ spb__hkey) & SPB_HDR_MARK))
				continue; /* not a handle object, or being moved */
			if (spb__h_pins(w)) {
				spb__heap_count(COMPACT_PINNED_SKIPPED, 1);
				continue;
			}
			/* Chosen: a CAS on a header read speculatively (the block
			 * may have been freed since: then it no longer holds v). */
			if (!spb__h_cas(blk, v, v ^ SPB_HDR_MARK))
				continue;
			batch[nb++] = (struct move){e, blk + SPB_HANDLE_HDR, sp, w, v, sn.bsize,
						    sources[k].whole != NULL, sources[k].whole};
			if (nb == COMPACT_BATCH) {
				moved += run_batch(batch, nb);
				nb = 0;
			}
		}
	}
	if (nb)
		moved += run_batch(batch, nb);
	/* Sources may be targets of the next pass (a descriptor released
	 * meanwhile and reused has the flag cleared by span_new anyway). */
	for (unsigned k = 0; k < ns; k++)
		if (sources[k].span)
			__atomic_store_n(&sources[k].span->compact_src, 0, __ATOMIC_RELAXED);
	/* The old blocks went back as cross-thread frees: release the spans
	 * that emptied. */
	unsigned freed = spb__heap_sweep_abandoned();
	st->spans_freed += freed;
	spb__heap_count(COMPACT_SPANS_FREED, freed);
	spb__zone_lock(z);
	for (unsigned i = 0; i < nevac; i++) {
		struct spb_pageblock *pb = &pbs[i].spb->pb[pbs[i].idx];
		for (unsigned j = 1; j < pbs[i].npb; j++) {
			__atomic_store_n(&pb[j].evac, 0, __ATOMIC_RELAXED);
			if (pb[j].cls == SPB_PB_FREE)
				st->pb_freed++;
		}
		__atomic_store_n(&pb->evac, 0, __ATOMIC_RELAXED);
		if (pb->cls != SPB_PB_FREE)
			continue;
		st->pb_freed++;
		/* Capture (seed 000): the first pageblock freed goes to the
		 * request that asked for this pass, before anyone races for it. */
		struct spb_capture *c = o->cap;
		if (c && !c->result && !c->cancelled && pbs[i].spb->tainted_contrib)
			c->result = spb__capture_locked(pbs[i].spb, pbs[i].idx, c->cls, c->npages,
							c->align, c->npb);
	}
	z->movers--;
	spb__zone_unlock_signal(z);
	return moved;
}

void spb__compact_measure(struct spb_compact_stat *st)
{
	memset(st, 0, sizeof *st);
	for (int i = 0; i < spb__zones_count(); i++) {
		struct spb_zone *z = &spb__zones[i];
		spb__zone_lock(z);
		scan_zone(z, NULL, st);
		spb__zone_unlock(z);
	}
}


/* A pass may start: handles exist, grace periods work, and the caller is
 * in no read section (the grace period would wait for it). Then one pass
 * at a time (the arrays are shared): single flight; the mover's own
 * current spans are no exception (their pageblocks may be emptied). */
static bool pass_begin(struct spb_compact_stat *st)
{
	memset(st, 0, sizeof *st);
	if (!spb__htab || !spb__rcu_usable() || spb__rcu_in_section())
		return false;
	pthread_mutex_lock(&one_pass);
	spb__compacting = true;
	spb__heap_drop_movable();
	return true;
}

static void pass_end(void)
{
	spb__compacting = false;
	pthread_mutex_unlock(&one_pass);
	spb__heap_count(COMPACT_PASSES, 1);
}

size_t spb__compact_pass(size_t max_bytes, struct spb_compact_stat *st)
{
	if (!pass_begin(st))
		return 0;
	size_t moved = 0;
	/* A bounded pass starts where the last one stopped (under one_pass):
	 * a zone whose work always spends the budget starves no other. */
	static unsigned first;
	int nz = spb__zones_count();
	unsigned start = max_bytes ? first % (unsigned)nz : 0;
	for (int n = 0; n < nz; n++) {
		/* The budget is the pass's: spent (a batch, or one object of
		 * whole pageblocks, may overshoot it), the other zones wait
		 * for the next pass (a share of 0 would mean no bound). */
		if (max_bytes && moved >= max_bytes)
			break;
		unsigned i = (start + (unsigned)n) % (unsigned)nz;
		struct pass_opts o = {max_bytes ? max_bytes - moved : 0, 0, false, NULL};
		moved += compact_zone(&spb__zones[i], &o, st);
		first = i + 1;
	}
	pass_end();
	st->moved = moved;
	return moved;
}

unsigned spb__compact_evacuate(struct spb_zone *z, unsigned max_pbs, struct spb_capture *cap,
				struct spb_compact_stat *st)
{
	if (!pass_begin(st))
		return 0;
	struct pass_opts o = {0, max_pbs, true, cap};
	st->moved = compact_zone(z, &o, st);
	pass_end();
	spb__heap_count(COMPACT_EVAC_PB, st->pb_freed);
	return st->pb_freed;
}

SPB_EXPORT size_t spb_compact(unsigned flags)
{
	if (flags) {
		errno = EINVAL;
		return 0;
	}
	if (spb__rcu_in_section()) {
		errno = EDEADLK; /* the grace period would wait for the caller */
		return 0;
	}
	if (spb__htab && !spb__rcu_usable()) {
		errno = ENOTSUP; /* forked inside a read section mid grace period */
		return 0;
	}
	struct spb_compact_stat st;
	size_t moved = spb__compact_pass(0, &st);
	/* Arena slots released since: unreadable now (one grace period). */
	spb__arena_quiesce(true);
	return moved;
}
