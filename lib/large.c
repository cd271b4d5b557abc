/*
 * large.c — objects too big for one SPB get a dedicated mapping: 1 GiB
 * aligned (so no other region shares its address-map slots), advised for
 * huge pages like an SPB, registered in the address map, counted, and
 * unmapped at once when freed.
 *
 * A mapping and its unmap are windows of the zone (zone.c): fork waits
 * for them, so a child never inherits one half made or half gone. An
 * unmap the kernel refuses keeps the mapping counted in large_bytes and
 * on the zone's retry list, which the decay works off. Descriptors are
 * kept for reuse, never unmapped: a stale lookup never faults.
 */
#include <errno.h>

#include "engine.h"

void *spb__large_alloc(struct spb_zone *z, size_t bytes, size_t align, unsigned cls)
{
	(void)align; /* 1 GiB alignment covers every alignment we accept */
	size_t size = (bytes + SPB_PB_SIZE - 1) & ~(SPB_PB_SIZE - 1);
	size_t mapped = (size + SPB_SPB_SIZE - 1) & ~(SPB_SPB_SIZE - 1);
	if (size < bytes || mapped < size) {
		errno = ENOMEM;
		return NULL;
	}
	uint64_t local[SPB_NR_COUNTERS] = {0};
	struct spb_large *lr = NULL;
	void *p = NULL;
	spb__zone_lock(z);
	if (!spb__list_empty(&z->large_spare)) {
		lr = spb__container_of(z->large_spare.next, struct spb_large, link);
		spb__list_del(&lr->link);
	}
	spb__zone_window_enter(z);
	if (!lr)
		lr = spb__os_meta_alloc(sizeof *lr);
	if (lr) {
		p = spb__os_reserve_aligned(mapped, SPB_SPB_SIZE);
		if (!p)
			local[SPB_RESERVE_FAIL]++;
	}
	uint8_t rung = SPB_RUNG_4K;
	if (p && spb__opt(OPT_THP)) {
		if (spb__os_advise_hugepage(p, size))
			rung = SPB_RUNG_THP;
		else
			local[THP_ADVISE_FAIL]++;
	}
	if (p)
		spb__count_bind(local, spb__topo_bind(p, size, z->node));
	if (p) {
		lr->r.cls = (uint8_t)cls;
		lr->r.rung = rung;
		lr->r.base = (uintptr_t)p;
		lr->r.size = size;
		lr->zone = z;
		lr->mapped = mapped;
		__atomic_store_n(&lr->r.kind, SPB_REGION_LARGE, __ATOMIC_RELEASE);
		spb__map_register(lr->r.base, mapped, &lr->r);
	}
	spb__zone_window_exit(z);
	for (int c = 0; c < SPB_NR_COUNTERS; c++)
		z->counters[c] += local[c];
	if (p) {
		z->counters[LARGE_MAP]++;
		z->large_bytes += size;
	} else {
		z->counters[LARGE_MAP_FAIL]++;
		if (lr)
			spb__list_add_head(&z->large_spare, &lr->link);
	}
	spb__zone_unlock(z);
	if (!p)
		errno = ENOMEM;
	return p;
}

/* After the unmap (lock held): the mapping is gone, or kept for a retry. */
static void unmap_done_locked(struct spb_zone *z, struct spb_large *lr, bool ok)
{
	if (ok) {
		z->counters[LARGE_UNMAP]++;
		z->large_bytes -= lr->r.size;
		spb__list_add_head(&z->large_spare, &lr->link);
		return;
	}
	z->counters[LARGE_UNMAP_FAIL]++;
	lr->retry_since = spb__os_now_ms();
	spb__list_add_tail(&z->large_retry, &lr->link);
	uint64_t due = lr->retry_since + (uint64_t)spb__opt(OPT_DECAY_MS);
	if (due < z->next_decay)
		__atomic_store_n(&z->next_decay, due, __ATOMIC_RELAXED);
}

void spb__large_free(struct spb_region *r, const void *p)
{
	struct spb_large *lr = (struct spb_large *)r;
	if ((uintptr_t)p != r->base)
		spb__fatal("free(): invalid pointer (inside an allocation, not its start)", p);
	struct spb_zone *z = lr->zone;
	/* Claim the region before anything else: a second free racing with
	 * this one finds kind 0 and reports a double free. */
	uint8_t kind = SPB_REGION_LARGE;
	if (!__atomic_compare_exchange_n(&lr->r.kind, &kind, 0, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		spb__fatal("free(): double free", p);
	spb__zone_lock(z);
	spb__zone_window_enter(z);
	spb__map_unregister(r->base, lr->mapped);
	bool ok = spb__os_unmap((void *)r->base, lr->mapped);
	spb__zone_window_exit(z);
	unmap_done_locked(z, lr, ok);
	spb__zone_unlock(z);
}

uint64_t spb__large_retry_due(const struct spb_zone *z)
{
	const struct spb_large *lr =
		spb__container_of(z->large_retry.next, struct spb_large, link);
	return lr->retry_since + (uint64_t)spb__opt(OPT_DECAY_MS);
}

void spb__large_retry_locked(struct spb_zone *z, uint64_t now)
{
	while (!z->fork_pending && !spb__list_empty(&z->large_retry)) {
		struct spb_large *lr =
			spb__container_of(z->large_retry.next, struct spb_large, link);
		if (lr->retry_since + (uint64_t)spb__opt(OPT_DECAY_MS) > now)
			break;
		spb__list_del(&lr->link);
		spb__zone_window_enter(z);
		bool ok = spb__os_unmap((void *)lr->r.base, lr->mapped);
		spb__zone_window_exit(z);
		unmap_done_locked(z, lr, ok);
		if (!ok) /* back at the tail, due after the delay: not in this pass */
			break;
	}
}
