/*
 * large.c — objects too big for one SPB get a dedicated mapping: 1 GiB
 * aligned (so no other region shares its address-map slots), advised for
 * huge pages like an SPB, registered in the address map, counted, and
 * unmapped at once when freed.
 */
#include "engine.h"

struct large_region {
	struct spb_region r;
	struct spb_zone *zone;
	size_t mapped;
};

void *spb__large_alloc(struct spb_zone *z, size_t bytes, size_t align, unsigned cls)
{
	(void)align; /* 1 GiB alignment covers every alignment we accept */
	size_t size = (bytes + SPB_PB_SIZE - 1) & ~(SPB_PB_SIZE - 1);
	size_t mapped = (size + SPB_SPB_SIZE - 1) & ~(SPB_SPB_SIZE - 1);
	if (size < bytes || mapped < size)
		return NULL;
	struct large_region *lr = spb__os_meta_alloc(sizeof *lr);
	if (!lr)
		return NULL;
	void *p = spb__os_reserve_aligned(mapped, SPB_SPB_SIZE);
	if (!p) {
		spb__os_meta_free(lr, sizeof *lr);
		spb__zone_lock(z);
		z->counters[SPB_RESERVE_FAIL]++;
		spb__zone_unlock(z);
		return NULL;
	}
	uint8_t rung = SPB_RUNG_4K;
	if (spb__opt(OPT_THP) && spb__os_advise_hugepage(p, size))
		rung = SPB_RUNG_THP;
	spb__topo_bind(p, size, z->node);
	lr->r.kind = SPB_REGION_LARGE;
	lr->r.cls = (uint8_t)cls;
	lr->r.rung = rung;
	lr->r.base = (uintptr_t)p;
	lr->r.size = size;
	lr->zone = z;
	lr->mapped = mapped;
	spb__map_register(lr->r.base, mapped, &lr->r);
	spb__zone_lock(z);
	z->counters[LARGE_MAP]++;
	z->large_bytes += size;
	spb__zone_unlock(z);
	return p;
}

void spb__large_free(struct spb_region *r, const void *p)
{
	struct large_region *lr = (struct large_region *)r;
	if ((uintptr_t)p != r->base)
		spb__fatal("free(): invalid pointer (inside an allocation, not its start)", p);
	struct spb_zone *z = lr->zone;
	/* Claim the region before anything else: a second free racing with
	 * this one finds kind 0 and reports a double free. */
	uint8_t kind = SPB_REGION_LARGE;
	if (!__atomic_compare_exchange_n(&lr->r.kind, &kind, 0, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		spb__fatal("free(): double free", p);
	spb__map_unregister(r->base, lr->mapped);
	spb__os_unmap((void *)r->base, lr->mapped);
	spb__zone_lock(z);
	z->counters[LARGE_UNMAP]++;
	z->large_bytes -= r->size;
	spb__zone_unlock(z);
	/* The descriptor stays mapped (zeroed) so a stale lookup never faults. */
	spb__os_dontneed(lr, sizeof *lr);
}
