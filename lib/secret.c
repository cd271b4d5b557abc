/*
 * secret.c — the SECRET lifetime class (seed 002: secretmem).
 *
 * A pageblock becomes secret as a whole when a SECRET request claims it:
 * memfd_secret(2) memory is mapped over it (its pages leave the kernel's
 * direct map: no other process, not even root through /proc/PID/mem, reads
 * them), or, where the kernel has none or SPBMALLOC_SECRET_MEMFD=0,
 * anonymous memory with mlock, MADV_DONTDUMP and MADV_WIPEONFORK
 * (backing.c, os.c). Both are MADV_DONTFORK: a child never gets them.
 * A secret pageblock holds SECRET memory only (the no-fallback rule), on
 * 4 KiB pages (the rung is 4K: never hugetlb, never THP). Small secret
 * blocks come from per-thread SECRET heaps like any class's; larger ones
 * are page runs or whole pageblocks of class SECRET.
 *
 * Everything secret is wiped when freed: a small block by free() (the
 * free path tests the span's class, which it has at hand), a page run or
 * pageblock run by spb__free; a free secret pageblock stays secret until
 * the decay releases it (wiped again, plain memory mapped over it) or
 * another class claims it (the same). An SPB that is unmapped wipes its
 * secret pageblocks first.
 *
 * fork: a child has holes where the parent's secret pageblocks were. Its
 * atfork handler maps zeroed plain memory there: free ones become plain
 * free pageblocks, pageblocks holding SECRET allocations become LOST
 * (never allocated from again, their frees ignored and counted), and the
 * child's SECRET heaps and abandoned SECRET spans are dropped (their
 * free lists lived in the memory the child did not get). An inherited secret pointer reads zero in the child.
 *
 * SPBs on the 1 GiB hugetlb rung are passed over (steer.c): one pageblock
 * of a 1 GiB page cannot be remapped.
 */
#include <errno.h>
#include <string.h>

#include "heap.h"

/* Pageblocks with secret memory mapped (LOST ones excluded): the child's
 * atfork handler has nothing to do while it is 0. */
static uint32_t nr_backed;

bool spb__secret_flip_locked(struct spb *s, unsigned i, unsigned n)
{
	struct spb_zone *z = s->zone;
	for (unsigned j = i; j < i + n; j++) {
		struct spb_pageblock *pb = &s->pb[j];
		if (pb->secret) /* free and secret still: wiped at each free */
			continue;
		uint8_t b = spb__backing_secret_pb(spb__pb_addr(s, j), z->counters);
		if (b == SPB_SECRET_NONE)
			return false;
		__atomic_store_n(&pb->secret, b, __ATOMIC_RELAXED);
		__atomic_add_fetch(&nr_backed, 1, __ATOMIC_RELAXED);
		spb__pb_set_rung_locked(z, pb, SPB_RUNG_4K);
		pb->zero = 1;
		pb->nohuge = 0;
		/* It holds memory now: released after the delay unless the
		 * claim takes it (the claim takes it off the list again). */
		spb__zone_pb_dirty_locked(z, pb);
	}
	return true;
}

void spb__secret_unflip_locked(struct spb *s, unsigned j)
{
	struct spb_zone *z = s->zone;
	struct spb_pageblock *pb = &s->pb[j];
	/* Another class must never get memory a child would not inherit. */
	if (!spb__backing_unsecret_pb(spb__pb_addr(s, j), s->rung, z->counters))
		spb__fatal("cannot map a free secret pageblock back as plain memory",
			   spb__pb_addr(s, j));
	spb__secret_released_locked(pb);
	spb__pb_set_rung_locked(z, pb, SPB_RUNG_NONE);
	pb->zero = 1;
}

void spb__secret_released_locked(struct spb_pageblock *pb)
{
	__atomic_store_n(&pb->secret, SPB_SECRET_NONE, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&nr_backed, 1, __ATOMIC_RELAXED);
}

unsigned spb__secret_unmap_spb_locked(struct spb *s)
{
	unsigned n = 0;
	for (unsigned j = 0; j < SPB_PB_PER_SPB; j++) {
		struct spb_pageblock *pb = &s->pb[j];
		if (!pb->secret)
			continue;
		spb__os_secret_wipe(spb__pb_addr(s, j), SPB_PB_SIZE);
		if (pb->secret != SPB_SECRET_LOST)
			__atomic_sub_fetch(&nr_backed, 1, __ATOMIC_RELAXED);
		n++;
	}
	return n;
}

static bool inherited(const struct spb_pageblock *pb)
{
	return __atomic_load_n(&pb->secret, __ATOMIC_RELAXED) == SPB_SECRET_LOST;
}

bool spb__secret_free_pages(struct spb *s, struct spb_pageblock *pb, const void *p)
{
	struct spb_zone *z = s->zone;
	if (SPB_UNLIKELY(inherited(pb))) {
		spb__zone_lock(z);
		z->counters[SECRET_FREE_INHERITED]++;
		spb__zone_unlock(z);
		return false;
	}
	/* 0 unless p starts a live allocation: spb__free then says what is
	 * wrong with it. The allocation is the caller's until freed: wiped
	 * without the lock. */
	size_t n = spb__usable_size(p);
	if (n) {
		spb__os_secret_wipe((void *)p, n);
		spb__zone_lock(z);
		z->counters[SECRET_FREE]++;
		spb__zone_unlock(z);
	}
	return true;
}

bool spb__secret_ptr(const void *p)
{
	struct spb_region *r = spb__region_of(p);
	if (!r || r->kind != SPB_REGION_SPB)
		return false;
	struct spb_pageblock *pb = spb__pb_of((struct spb *)r, p);
	return __atomic_load_n(&pb->cls, __ATOMIC_RELAXED) == SPB_SECRET;
}

bool spb__secret_free_small(struct spb_span *s, void *p)
{
	struct spb_pageblock *pb = spb__pb_of((struct spb *)spb__region_of(p), p);
	if (SPB_UNLIKELY(inherited(pb))) {
		spb__heap_count(SECRET_FREE_INHERITED, 1);
		return true;
	}
	/* The link word is written over the first bytes next. */
	memset(p, 0, s->bsize);
	__asm__ volatile("" : : "r"(p) : "memory");
	spb__heap_count_one(SECRET_FREE);
	return false;
}

/* A pageblock of the parent's that held secret memory: zeroed plain memory
 * in its place (only this thread runs: no lock needed, none taken). */
static void child_fixup_pb(struct spb_zone *z, struct spb *s, unsigned j)
{
	struct spb_pageblock *pb = &s->pb[j];
	void *a = spb__pb_addr(s, j);
	if (!spb__backing_plain_pb(a, s->rung, z->counters))
		spb__fatal("fork: cannot map the parent's secret pageblock back in the child", a);
	if (pb->cls == SPB_PB_FREE) {
		spb__zone_pb_undirty_locked(z, pb);
		pb->secret = SPB_SECRET_NONE;
		spb__pb_set_rung_locked(z, pb, SPB_RUNG_NONE);
		pb->zero = 1;
		return;
	}
	/* SECRET allocations of the parent: never allocated from again. */
	pb->secret = SPB_SECRET_LOST;
	if (pb->mode == SPB_PB_MODE_RUNS && pb->nr_free) {
		spb__partial_del(s, pb);
		s->nr_partial_free[SPB_SECRET] -= pb->nr_free;
	}
	z->counters[SECRET_FORK_LOST]++;
}

void spb__secret_postfork_child(void)
{
	if (!__atomic_load_n(&nr_backed, __ATOMIC_RELAXED))
		return;
	spb__heap_forget_class_child(SPB_SECRET);
	for (int zi = 0; zi < spb__zones_count(); zi++) {
		struct spb_zone *z = &spb__zones[zi];
		for (unsigned c = 0; c < SPB_NR_CATS; c++)
			for (unsigned f = 0; f < SPB_NR_FULLNESS; f++) {
				struct spb_link *h = &z->lists[c][f];
				for (struct spb_link *l = h->next; l != h; l = l->next) {
					struct spb *s = spb__container_of(l, struct spb, link);
					for (unsigned j = 0; j < SPB_PB_PER_SPB; j++)
						if (s->pb[j].secret &&
						    s->pb[j].secret != SPB_SECRET_LOST)
							child_fixup_pb(z, s, j);
				}
			}
	}
	nr_backed = 0;
}

/* ---- the public API ---- */

void *spb_secret_alloc(size_t size)
{
	void *p = spb__malloc_class(size, SPB_SECRET, SPB_F_ZERO);
	if (p)
		spb__heap_count_one(SECRET_ALLOC);
	return p;
}

void spb_secret_free(void *p)
{
	if (!p)
		return;
	if (!spb__secret_ptr(p))
		spb__fatal("spb_secret_free(): invalid pointer (not secret memory)", p);
	spb__free_ptr(p);
}
