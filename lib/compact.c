/*
 * compact.c — moving handle objects out of sparse spans: spb_compact().
 *
 * A pass per zone: under the zone lock, the MOVABLE spans at most half
 * live are collected (pageblock by pageblock, from the run map and the
 * page map); the zone's mover count keeps its SPBs mapped until the pass
 * ends. Then, without any lock, each live block of those spans is read
 * for its entry index (a header written by spb_halloc); an entry whose
 * word names exactly that block, NORMAL and unpinned, is CASed to MOVING
 * and batched. One grace period (synchronize_rcu) for the batch, then per
 * object: a new block from the caller's MOVABLE heap (which fills the
 * lowest spans first); CAS MOVING -> COPYING (fails if a reader cancelled);
 * copy; store (new address, NORMAL); free the old block. handle.c has the
 * protocol and why no write is lost. A block that lands in one of the
 * sparse spans being emptied is given back and the move dropped (counted:
 * no better place). Page runs behind handles (objects over 128 KiB) are
 * not moved yet; neither is anything while the caller is inside a read
 * section (the grace period would wait for the caller itself): EDEADLK.
 *
 * Reading a block header may race with its owner freeing it (the free
 * list link overwrites it): the value is only an index, checked against
 * the entry's word before anything is done with it.
 */
#include <errno.h>
#include <string.h>

#include "handle.h"

#define SPB_EXPORT __attribute__((visibility("default")))
#define COMPACT_MAX_SPANS 256
#define COMPACT_BATCH 256

struct move {
	struct spb_hentry *e;
	char *from;
	uint64_t w; /* the NORMAL word it had */
	uint32_t bytes;
};

static uint32_t live_blocks(const struct spb_span *sp)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < sp->capacity; i++)
		n += spb__live_test(sp, (uintptr_t)i * sp->bsize);
	return n;
}

/* Sparse MOVABLE spans of z (lock held), at most max. */
static unsigned collect_spans(struct spb_zone *z, struct spb_span **out, unsigned max)
{
	unsigned k = 0;
	for (unsigned c = SPB_CAT_CLEAN; c <= SPB_CAT_TAINTED; c++)
		for (int f = 0; f < SPB_NR_FULLNESS; f++) {
			struct spb_link *h = &z->lists[c][f];
			for (struct spb_link *l = h->next; l != h; l = l->next) {
				struct spb *s = spb__container_of(l, struct spb, link);
				if (!s->nr_class_pb[SPB_MOVABLE])
					continue;
				for (unsigned i = 0; i < SPB_PB_PER_SPB && k < max; i++) {
					struct spb_pageblock *pb = &s->pb[i];
					if (pb->cls != SPB_MOVABLE || pb->mode != SPB_PB_MODE_RUNS)
						continue;
					char *base = spb__pb_addr(s, i);
					for (unsigned pg = 0; pg < SPB_PAGES_PER_PB && k < max;) {
						unsigned n = pb->run_len[pg];
						if (!n) {
							pg++;
							continue;
						}
						char *a = base + ((size_t)pg << SPB_PAGE_SHIFT);
						struct spb_span *sp = spb__span_of(s, a);
						if (sp && sp->start == (uintptr_t)a && sp->cls == SPB_MOVABLE) {
							uint32_t live = live_blocks(sp);
							if (live && live * 2 <= sp->capacity)
								out[k++] = sp;
						}
						pg += n;
					}
				}
			}
		}
	return k;
}

static bool in_set(struct spb_span *const *set, unsigned n, const struct spb_span *s)
{
	for (unsigned i = 0; i < n; i++)
		if (set[i] == s)
			return true;
	return false;
}

/* Put a chosen object back to NORMAL (unless a reader already did). */
static void unchoose(struct move *m)
{
	uint64_t expect = m->w | SPB_HS_MOVING;
	__atomic_compare_exchange_n(&m->e->word, &expect, m->w, false, __ATOMIC_ACQ_REL,
				    __ATOMIC_ACQUIRE);
}

/* fork: no object may be COPYING in the child (its readers would wait for
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
		 * objects are MOVING (readers cancel), none is COPYING. */
		pthread_mutex_init(&one_pass, NULL);
		copies_in_flight = 0;
	}
	__atomic_store_n(&fork_gate, 0, __ATOMIC_SEQ_CST);
}

static size_t run_batch(struct move *b, unsigned n, struct spb_span *const *spans,
			unsigned nspans)
{
	size_t moved = 0;
	spb__rcu_synchronize();
	spb__heap_count(COMPACT_GRACE, 1);
	for (unsigned k = 0; k < n; k++) {
		struct move *m = &b[k];
		char *nb = spb__malloc_movable(m->bytes);
		if (!nb) {
			unchoose(m);
			continue;
		}
		struct spb *sp = (struct spb *)spb__region_of(nb);
		if (!sp || sp->r.kind != SPB_REGION_SPB || in_set(spans, nspans, spb__span_of(sp, nb))) {
			spb__free_ptr(nb);
			unchoose(m);
			spb__heap_count(COMPACT_NO_TARGET, 1);
			continue;
		}
		__atomic_fetch_add(&copies_in_flight, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&fork_gate, __ATOMIC_SEQ_CST)) {
			__atomic_fetch_sub(&copies_in_flight, 1, __ATOMIC_SEQ_CST);
			spb__free_ptr(nb);
			unchoose(m);
			continue;
		}
		uint64_t expect = m->w | SPB_HS_MOVING;
		uint64_t copying = (m->w & ~SPB_HS_MASK) | SPB_HS_COPYING;
		if (!__atomic_compare_exchange_n(&m->e->word, &expect, copying, false,
						 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			__atomic_fetch_sub(&copies_in_flight, 1, __ATOMIC_SEQ_CST);
			spb__free_ptr(nb); /* cancelled by a reader, pinner or freer */
			continue;
		}
		/* Nobody holds the old place now, and whoever comes waits. */
		uint64_t idx = (uint64_t)(m->e - spb__htab);
		__atomic_store_n((uint64_t *)nb, idx, __ATOMIC_RELAXED);
		memcpy(nb + SPB_HANDLE_HDR, m->from, m->bytes - SPB_HANDLE_HDR);
		__atomic_store_n(&m->e->word,
				 (uint64_t)(uintptr_t)(nb + SPB_HANDLE_HDR) | SPB_HS_NORMAL,
				 __ATOMIC_RELEASE);
		__atomic_fetch_sub(&copies_in_flight, 1, __ATOMIC_SEQ_CST);
		spb__free_ptr(m->from - SPB_HANDLE_HDR);
		moved += m->bytes;
		spb__heap_count(COMPACT_MOVED, 1);
	}
	spb__heap_count(COMPACT_MOVED_BYTES, moved);
	return moved;
}

static size_t compact_zone(struct spb_zone *z)
{
	static struct spb_span *spans[COMPACT_MAX_SPANS];
	static struct move batch[COMPACT_BATCH];
	size_t moved = 0;
	/* One pass at a time (the arrays are shared): single flight. */
	pthread_mutex_lock(&one_pass);
	spb__zone_lock(z);
	z->movers++;
	unsigned ns = collect_spans(z, spans, COMPACT_MAX_SPANS);
	spb__zone_unlock(z);
	uint32_t hwm = spb__handle_hwm();
	unsigned nb = 0;
	for (unsigned k = 0; k < ns; k++) {
		struct spb_span *sp = spans[k];
		for (uint32_t i = 0; i < sp->capacity; i++) {
			uintptr_t off = (uintptr_t)i * sp->bsize;
			if (!spb__live_test(sp, off))
				continue;
			char *blk = (char *)sp->start + off;
			uint64_t idx = __atomic_load_n((uint64_t *)blk, __ATOMIC_RELAXED);
			if (idx == 0 || idx > hwm)
				continue;
			struct spb_hentry *e = &spb__htab[idx];
			uint64_t w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
			if (spb__h_addr(w) != blk + SPB_HANDLE_HDR || (w & SPB_HS_MASK) != SPB_HS_NORMAL)
				continue;
			if (spb__h_pins(w)) {
				spb__heap_count(COMPACT_PINNED_SKIPPED, 1);
				continue;
			}
			if (!__atomic_compare_exchange_n(&e->word, &w, w | SPB_HS_MOVING, false,
							 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				continue;
			batch[nb++] = (struct move){e, blk + SPB_HANDLE_HDR, w, sp->bsize};
			if (nb == COMPACT_BATCH) {
				moved += run_batch(batch, nb, spans, ns);
				nb = 0;
			}
		}
	}
	if (nb)
		moved += run_batch(batch, nb, spans, ns);
	spb__zone_lock(z);
	z->movers--;
	spb__zone_unlock(z);
	pthread_mutex_unlock(&one_pass);
	return moved;
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
	if (!spb__htab)
		return 0;
	if (!spb__rcu_usable()) {
		errno = ENOTSUP; /* forked inside a read section mid grace period */
		return 0;
	}
	size_t moved = 0;
	for (int i = 0; i < spb__nr_zones; i++)
		moved += compact_zone(&spb__zones[i]);
	return moved;
}
