/*
 * spbmap.c — address -> region, in O(1): one pointer per 1 GiB of the
 * 47-bit user address space (1 MiB of BSS, touched only where regions
 * live). A slot is set before a region's memory is handed out and cleared
 * before it is unmapped, so a lookup of any address that is not inside one
 * of our regions finds NULL: a foreign pointer is detected, not trusted.
 */
#include "engine.h"

struct spb_region *_Atomic spb__map[SPB_MAP_SLOTS];

void spb__map_register(uintptr_t base, size_t size, struct spb_region *r)
{
	for (uintptr_t a = base; a < base + size; a += SPB_SPB_SIZE)
		__atomic_store_n(&spb__map[a >> SPB_SPB_SHIFT], r, __ATOMIC_RELEASE);
}

void spb__map_unregister(uintptr_t base, size_t size)
{
	for (uintptr_t a = base; a < base + size; a += SPB_SPB_SIZE)
		__atomic_store_n(&spb__map[a >> SPB_SPB_SHIFT], NULL, __ATOMIC_RELEASE);
}
