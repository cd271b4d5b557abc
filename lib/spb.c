/*
 * spb.c — superpageblocks: reserving one, keeping it on the right
 * category/fullness list, and unmapping it when it has stayed empty.
 *
 * Category: EMPTY (no pageblock holds a class), CLEAN (only MOVABLE
 * pageblocks), TAINTED (at least one non-movable pageblock). Fullness: the
 * share of its pages handed out, in SPB_NR_FULLNESS buckets. Every change
 * to an SPB's counts ends in spb__spb_update_locked, which moves it between
 * lists in O(1) and keeps the zone's tainted free-pageblock count exact.
 * Reserving and unmapping drop the zone lock around their system calls
 * (a window, zone.c); what the kernel refuses leaves nothing half done: a
 * refused reservation keeps its descriptor for the next try, a refused
 * unmap puts the SPB back, empty, to be tried again after the delay.
 */
#include <string.h>
#include <unistd.h>

#include "engine.h"

static uint8_t category_of(const struct spb *s)
{
	for (unsigned c = 0; c < SPB_NR_CLASSES; c++)
		if (spb__class_taints(c) && s->nr_class_pb[c])
			return SPB_CAT_TAINTED;
	return s->nr_class_pb[SPB_MOVABLE] ? SPB_CAT_CLEAN : SPB_CAT_EMPTY;
}

static uint8_t fullness_of(const struct spb *s)
{
	uint32_t f = (uint32_t)(((uint64_t)s->nr_used_pages * SPB_NR_FULLNESS) /
				(SPB_PB_PER_SPB * SPB_PAGES_PER_PB));
	return f >= SPB_NR_FULLNESS ? SPB_NR_FULLNESS - 1 : (uint8_t)f;
}

void spb__spb_update_locked(struct spb *s)
{
	struct spb_zone *z = s->zone;
	uint8_t cat = category_of(s), full = fullness_of(s);

	/* The zone's count of free pageblocks in tainted SPBs, exact. */
	uint32_t contrib = cat == SPB_CAT_TAINTED ? s->nr_free_pb : 0;
	z->tainted_free_pb += contrib - s->tainted_contrib;
	s->tainted_contrib = contrib;

	if (cat != s->category) {
		if (cat == SPB_CAT_TAINTED)
			z->counters[SPB_TAINT]++;
		else if (s->category == SPB_CAT_TAINTED)
			z->counters[SPB_UNTAINT]++;
		z->nr_by_cat[s->category]--;
		z->nr_by_cat[cat]++;
		if (cat == SPB_CAT_EMPTY) {
			s->empty_since = spb__os_now_ms();
			spb__list_add_tail(&z->emptyq, &s->empty_link);
			uint64_t due = s->empty_since + (uint64_t)spb__opt(OPT_DECAY_MS);
			if (due < z->next_decay)
				__atomic_store_n(&z->next_decay, due, __ATOMIC_RELAXED);
		} else if (s->category == SPB_CAT_EMPTY) {
			spb__list_del(&s->empty_link);
		}
	}
	if (cat != s->category || full != s->fullness) {
		spb__list_del(&s->link);
		/* Head of its bucket: the SPB touched last is tried first, which
		 * keeps a working set on few SPBs. */
		spb__list_add_head(&z->lists[cat][full], &s->link);
		s->category = cat;
		s->fullness = full;
	}
}

static void spb_init_locked(struct spb_zone *z, struct spb *s, void *base,
			    uint8_t rung)
{
	s->r.kind = SPB_REGION_SPB;
	s->r.base = (uintptr_t)base;
	s->r.size = SPB_SPB_SIZE;
	s->r.rung = rung;
	s->zone = z;
	s->rung = rung;
	s->dead = 0;
	s->category = SPB_CAT_EMPTY;
	s->fullness = 0;
	s->nr_free_pb = SPB_PB_PER_SPB;
	for (unsigned c = 0; c < SPB_NR_CLASSES; c++)
		spb__list_init(&s->partial[c]);
	spb__map_set_range(&s->free_pb_map, 0, SPB_PB_PER_SPB);
	for (unsigned i = 0; i < SPB_PB_PER_SPB; i++) {
		struct spb_pageblock *pb = &s->pb[i];
		pb->cls = SPB_PB_FREE;
		pb->owner = s;
		pb->zero = 1;
		pb->rung = rung == SPB_RUNG_HUGETLB_1G ? rung : SPB_RUNG_NONE;
		pb->nohuge = 0; /* a fresh mapping: the SPB's advice holds */
		pb->secret = SPB_SECRET_NONE;
	}
	z->pb_by_rung[rung == SPB_RUNG_HUGETLB_1G ? rung : SPB_RUNG_NONE] +=
		SPB_PB_PER_SPB;
	z->nr_by_cat[SPB_CAT_EMPTY]++;
	spb__list_add_head(&z->lists[SPB_CAT_EMPTY][0], &s->link);
	s->empty_since = spb__os_now_ms();
	spb__list_add_tail(&z->emptyq, &s->empty_link);
	z->nr_spbs++;
	z->total_pb += SPB_PB_PER_SPB;
	z->counters[SPB_RESERVE]++;
	spb__map_register(s->r.base, SPB_SPB_SIZE, &s->r);
}

/* SPBMALLOC_VERBOSE: "spbmalloc: SPB 0x... reserved, zone N, rung R". */
static void log_reserve(const struct spb *s)
{
	char buf[128];
	size_t n = spb__fmt_str(buf, 0, 64, "spbmalloc: SPB ");
	n += spb__fmt_hex(buf + n, s->r.base);
	n = spb__fmt_str(buf, n, n + 24, " reserved, zone ");
	n += spb__fmt_u64(buf + n, (uint64_t)s->zone->node);
	n = spb__fmt_str(buf, n, sizeof buf - 1, ", rung ");
	n = spb__fmt_str(buf, n, sizeof buf - 1, spb__rung_names[s->rung]);
	buf[n++] = '\n';
	ssize_t r = write(2, buf, n);
	(void)r;
}

struct spb *spb__spb_grow_locked(struct spb_zone *z)
{
	long max = spb__opt(OPT_MAX_SPBS);
	if (max && z->nr_spbs + z->nr_spbs_reserving >= (uint64_t)max)
		return NULL;
	struct spb *s = NULL;
	if (!spb__list_empty(&z->dead)) {
		s = spb__container_of(z->dead.next, struct spb, link);
		spb__list_del(&s->link);
	}
	z->nr_spbs_reserving++;
	spb__zone_window_enter(z);

	/* The descriptor first: if it cannot be had, there is no data area
	 * to give back (an munmap the kernel could refuse). */
	uint64_t local[SPB_NR_COUNTERS] = {0};
	uint8_t rung = SPB_RUNG_NONE;
	void *base = NULL;
	if (!s)
		s = spb__os_meta_alloc(sizeof *s);
	if (s)
		base = spb__backing_reserve_spb(&rung, local);
	if (base)
		spb__count_bind(local, spb__topo_bind(base, SPB_SPB_SIZE, z->node));

	spb__zone_window_exit(z);
	z->nr_spbs_reserving--;
	for (int c = 0; c < SPB_NR_COUNTERS; c++)
		z->counters[c] += local[c];
	if (!base) {
		z->counters[SPB_RESERVE_FAIL]++;
		if (s) /* keep the clean descriptor for the next try */
			spb__list_add_head(&z->dead, &s->link);
		return NULL;
	}
	spb_init_locked(z, s, base, rung);
	if (spb__opt(OPT_VERBOSE))
		log_reserve(s);
	return s;
}

/* The kernel refused the munmap: the SPB comes back as it was, empty and
 * still holding what its pageblocks hold, due for another try after the
 * delay. */
static void unmap_undo_locked(struct spb_zone *z, struct spb *s)
{
	uint64_t now = spb__os_now_ms();
	spb__map_register(s->r.base, SPB_SPB_SIZE, &s->r);
	spb__list_add_head(&z->lists[SPB_CAT_EMPTY][0], &s->link);
	s->empty_since = now;
	spb__list_add_tail(&z->emptyq, &s->empty_link);
	if (now + (uint64_t)spb__opt(OPT_DECAY_MS) < z->next_decay)
		__atomic_store_n(&z->next_decay, now + (uint64_t)spb__opt(OPT_DECAY_MS),
				 __ATOMIC_RELAXED);
	for (unsigned i = 0; i < SPB_PB_PER_SPB; i++)
		if (s->pb[i].rung != SPB_RUNG_NONE && s->pb[i].rung != SPB_RUNG_HUGETLB_1G)
			spb__zone_pb_dirty_locked(z, &s->pb[i]);
	z->counters[SPB_UNMAP_FAIL]++;
}

bool spb__spb_unmap_locked(struct spb *s)
{
	struct spb_zone *z = s->zone;
	/* Off every list and out of the address map while the lock is
	 * dropped: nobody allocates from it, the decay does not release its
	 * pageblocks, a stale pointer into it is reported, not trusted. */
	uint32_t by_rung[SPB_NR_RUNGS] = {0};
	spb__list_del(&s->link);
	spb__list_del(&s->empty_link);
	for (unsigned i = 0; i < SPB_PB_PER_SPB; i++) {
		spb__zone_pb_undirty_locked(z, &s->pb[i]);
		by_rung[s->pb[i].rung]++;
	}
	spb__map_unregister(s->r.base, SPB_SPB_SIZE);
	void *base = (void *)s->r.base;
	uint8_t rung = s->rung;
	/* Free secret pageblocks are wiped before the memory goes back. */
	spb__secret_unmap_spb_locked(s);
	spb__zone_window_enter(z);
	bool unmapped = spb__backing_unmap_spb(base, rung);
	/* Zero the descriptor without touching it (it stays mapped, so a
	 * stale lookup of a bad pointer reads zeros, never unmapped memory). */
	bool zeroed = !unmapped || spb__os_meta_zero(s, sizeof *s);
	spb__zone_window_exit(z);
	if (!unmapped) {
		unmap_undo_locked(z, s);
		return false;
	}
	for (unsigned r = 0; r < SPB_NR_RUNGS; r++)
		z->pb_by_rung[r] -= by_rung[r];
	z->nr_by_cat[SPB_CAT_EMPTY]--;
	z->nr_spbs--;
	z->total_pb -= SPB_PB_PER_SPB;
	z->counters[SPB_UNMAP]++;
	if (!zeroed)
		z->counters[META_RELEASE_FAIL]++;
	s->dead = 1; /* set after the zeroing, which would clear it */
	spb__list_add_head(&z->dead, &s->link);
	return true;
}
