/*
 * arena.c — the handle arena: 32 GiB of address space, reserved read-only
 * when the engine starts, in which SPBs are placed (1 GiB each, slot by
 * slot), so that a handle can carry its object's place in 31 bits: the
 * header's byte offset from the arena's start (a multiple of 16)
 * (include/spbmalloc.h, spb_hget; lib/handle.c has the protocol).
 *
 * Every byte of the arena can be read at any time, whatever a handle
 * says: slot 0 is never an SPB (a handle whose object lies outside the
 * arena names offset 0 there, which reads as zeros), a slot not yet used
 * is read-only zeros, and an SPB that goes back to the OS gets a fresh
 * read-only mapping over it in one mmap(MAP_FIXED) (never a hole). So the
 * inline spb_hget can load the header at the place a handle names without
 * any check first: a stale or invalid handle reads zeros or another
 * object's header, never faults.
 *
 * Reserving nothing commits nothing (a read-only private mapping is not
 * charged, and MAP_NORESERVE); it costs one VMA and 32 GiB of the
 * process's address space (VmSize). Without an arena (SPBMALLOC_
 * HANDLE_ARENA=0, a finite RLIMIT_AS, or mmap refused) SPBs are reserved
 * anywhere as before and spb_hget goes through the handle table: same
 * behaviour, one dependent load more. When the arena's 31 slots are full,
 * further SPBs go outside it (counted): their handles go through the
 * table.
 */
#include <sys/resource.h>

#include "engine.h"

#define SPB_EXPORT __attribute__((visibility("default")))
#define ARENA_SLOTS 32u
#define ARENA_BYTES ((size_t)ARENA_SLOTS << SPB_SPB_SHIFT)

_Static_assert(ARENA_BYTES == (size_t)SPB_H_PLACE_MASK_PUBLIC + 16,
	       "the arena is what a handle's place can name");

/* What a handle's place is read against before (or without) the arena:
 * zeros, which no object's header ever is. */
static const uint64_t no_arena[2];
static uintptr_t arena;
/* The arena's start + 16 (a place names a header; the data is 16 bytes
 * on), and the mask of a handle's place: 0 without an arena, so that
 * every handle reads no_arena. */
SPB_EXPORT uintptr_t spb__harena16 = (uintptr_t)no_arena + 16;
SPB_EXPORT uint64_t spb__hmask;
static uint32_t slots_free;     /* bit k: slot k free (never slot 0) */

void spb__arena_init(void)
{
	if (!spb__opt(OPT_HANDLE_ARENA))
		return;
	/* A program under an address-space limit keeps its 32 GiB. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		return;
	void *a = spb__os_reserve_readonly(ARENA_BYTES, SPB_SPB_SIZE);
	if (!a)
		return;
	__atomic_store_n(&slots_free, ~(uint32_t)1, __ATOMIC_RELAXED);
	__atomic_store_n(&arena, (uintptr_t)a, __ATOMIC_RELAXED);
	__atomic_store_n(&spb__harena16, (uintptr_t)a + 16, __ATOMIC_RELAXED);
	__atomic_store_n(&spb__hmask, (uint64_t)SPB_H_PLACE_MASK_PUBLIC, __ATOMIC_RELEASE);
}

bool spb__arena_contains(uintptr_t p)
{
	return __atomic_load_n(&spb__hmask, __ATOMIC_ACQUIRE) && p - arena < ARENA_BYTES;
}

void *spb__arena_take(bool *refused)
{
	*refused = false;
	uint32_t f = __atomic_load_n(&slots_free, __ATOMIC_ACQUIRE);
	while (f) {
		unsigned k = (unsigned)__builtin_ctz(f);
		if (__atomic_compare_exchange_n(&slots_free, &f, f & ~((uint32_t)1 << k), false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			void *p = (void *)(arena + ((size_t)k << SPB_SPB_SHIFT));
			if (spb__os_map_at(p, SPB_SPB_SIZE))
				return p;
			__atomic_fetch_or(&slots_free, (uint32_t)1 << k, __ATOMIC_ACQ_REL);
			*refused = true;
			return NULL;
		}
	}
	return NULL;
}

bool spb__arena_give_back(void *base)
{
	if (!spb__os_unmap_readonly(base, SPB_SPB_SIZE))
		return false;
	unsigned k = (unsigned)(((uintptr_t)base - arena) >> SPB_SPB_SHIFT);
	__atomic_fetch_or(&slots_free, (uint32_t)1 << k, __ATOMIC_ACQ_REL);
	return true;
}
