/*
 * arena.c — the handle arena: 32 GiB of address space, reserved (PROT_NONE,
 * nothing committed) when the engine starts, in which SPBs are placed
 * (1 GiB each, slot by slot), so that a handle can carry its object's
 * place in 31 bits: the header's byte offset from the arena's start (a
 * multiple of 16) (include/spbmalloc.h, spb_hget; lib/handle.c has the
 * protocol).
 *
 * The inline spb_hget loads the header at the place a handle names after
 * one check: spb__hlive[slot], set while the slot can be read. Slot 0 is
 * never an SPB (a handle whose object lies outside the arena names offset
 * 0 there), so such handles, and every handle without an arena, go
 * through the table. A slot's life:
 *   NONE       PROT_NONE, not live: mlockall(MCL_CURRENT) and core dumps
 *              skip it, and a never-made handle naming it goes through
 *              the table to its one-line death;
 *   USED       an SPB, read-write, live;
 *   RELEASED   the SPB went back: a fresh read-only mapping over it in
 *              one mmap(MAP_FIXED), never a hole (memory gone, reads see
 *              zeros), still live: a reader may be reading an old place
 *              there. Taken again as it is (MAP_FIXED read-write over it:
 *              again no hole);
 *   QUIESCING  taken by the compaction thread (by the background thread
 *              while no reader ever registered: then no grace period is
 *              needed): not live any more, then a grace period (no reader
 *              still holds the earlier answer), then PROT_NONE, and NONE
 *              again.
 * Reads of a slot that is live can never fault. A released slot stays
 * readable (nothing resident) until the compaction thread runs, or until
 * it is reused. Taking a slot is an mprotect (read-write), giving it back
 * a fresh read-only mapping over it in one mmap(MAP_FIXED) (which also
 * ends a hugetlb or secret pageblock's own mapping there), checked for a
 * hole when refused.
 * Without an arena (SPBMALLOC_HANDLE_ARENA=0, a finite RLIMIT_AS, or mmap
 * refused) SPBs are reserved anywhere as before and spb_hget goes through
 * the table: same behaviour, one dependent load more. When the arena's 31
 * slots are in use, further SPBs go outside it (counted).
 */
#include <sys/resource.h>

#include "engine.h"

#define SPB_EXPORT __attribute__((visibility("default")))
#define ARENA_SLOTS 32u
#define ARENA_BYTES ((size_t)ARENA_SLOTS << SPB_SPB_SHIFT)

_Static_assert(ARENA_BYTES == (size_t)SPB_H_PLACE_MASK_PUBLIC + 16,
	       "the arena is what a handle's place can name");

enum { SLOT_NONE, SLOT_USED, SLOT_RELEASED, SLOT_QUIESCING, SLOT_TAKING };
static uint8_t slot_state[ARENA_SLOTS];
static uintptr_t arena;
/* The arena's start + 16 (a place names a header; the data is 16 bytes
 * on), the mask of a handle's place (0 without an arena), and which slots
 * can be read. */
SPB_EXPORT uintptr_t spb__harena16 = 16;
SPB_EXPORT uint64_t spb__hmask;
SPB_EXPORT uint8_t spb__hlive[ARENA_SLOTS];
/* A grace period of the handle layer's readers (rcu.c sets it when the
 * first reader registers): false when none can be waited for now. */
bool (*spb__arena_sync_hook)(void);

void spb__arena_init(void)
{
	if (!spb__opt(OPT_HANDLE_ARENA))
		return;
	/* A program under an address-space limit keeps its 32 GiB. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		return;
	void *a = spb__os_reserve_none(ARENA_BYTES, SPB_SPB_SIZE);
	if (!a)
		return;
	__atomic_store_n(&arena, (uintptr_t)a, __ATOMIC_RELAXED);
	__atomic_store_n(&spb__harena16, (uintptr_t)a + 16, __ATOMIC_RELAXED);
	__atomic_store_n(&spb__hmask, (uint64_t)SPB_H_PLACE_MASK_PUBLIC, __ATOMIC_RELEASE);
}

bool spb__arena_contains(uintptr_t p)
{
	return __atomic_load_n(&spb__hmask, __ATOMIC_ACQUIRE) && p - arena < ARENA_BYTES;
}

static void *slot_addr(unsigned k) { return (void *)(arena + ((size_t)k << SPB_SPB_SHIFT)); }

void *spb__arena_take(bool *refused)
{
	*refused = false;
	if (!__atomic_load_n(&spb__hmask, __ATOMIC_ACQUIRE))
		return NULL;
	/* A released slot first (already readable), then a fresh one. */
	for (unsigned pass = 0; pass < 2; pass++) {
		uint8_t want = pass ? SLOT_NONE : SLOT_RELEASED;
		for (unsigned k = 1; k < ARENA_SLOTS; k++) {
			uint8_t st = want;
			if (!__atomic_compare_exchange_n(&slot_state[k], &st, SLOT_TAKING, false,
							 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				continue;
			/* mprotect, not a fresh mapping over it: a refusal (commit
			 * refused under vm.overcommit_memory=2) leaves the range
			 * as it was, never a hole. */
			if (!spb__os_protect_rw(slot_addr(k), SPB_SPB_SIZE)) {
				__atomic_store_n(&slot_state[k], want, __ATOMIC_RELEASE);
				*refused = true;
				return NULL;
			}
			__atomic_store_n(&spb__hlive[k], 1, __ATOMIC_RELEASE);
			__atomic_store_n(&slot_state[k], SLOT_USED, __ATOMIC_RELEASE);
			return slot_addr(k);
		}
	}
	return NULL;
}

/* fork: a slot the parent's compaction thread was quiescing stays
 * readable in the child, not live, and is looked at again there. */
void spb__arena_atfork_child(void)
{
	for (unsigned k = 1; k < ARENA_SLOTS; k++)
		if (__atomic_load_n(&slot_state[k], __ATOMIC_RELAXED) == SLOT_QUIESCING)
			__atomic_store_n(&slot_state[k], SLOT_RELEASED, __ATOMIC_RELAXED);
}

bool spb__arena_give_back(void *base)
{
	if (!spb__os_unmap_readonly(base, SPB_SPB_SIZE))
		return false;
	unsigned k = (unsigned)(((uintptr_t)base - arena) >> SPB_SPB_SHIFT);
	__atomic_store_n(&slot_state[k], SLOT_RELEASED, __ATOMIC_RELEASE);
	return true;
}

unsigned spb__arena_quiesce(bool may_wait)
{
	unsigned done = 0;
	if (!__atomic_load_n(&spb__hmask, __ATOMIC_ACQUIRE))
		return 0;
	/* Readers exist once one registered: then only a thread that may
	 * wait for a grace period does this (the compaction thread), never
	 * the background thread, which a long read section must not hold up
	 * (its decay, statistics and control requests). */
	if (!may_wait && __atomic_load_n(&spb__arena_sync_hook, __ATOMIC_SEQ_CST))
		return 0;
	for (unsigned k = 1; k < ARENA_SLOTS; k++) {
		/* A look first: this runs every round of two threads, and a
		 * released slot is rare. */
		uint8_t st = __atomic_load_n(&slot_state[k], __ATOMIC_ACQUIRE);
		if (st != SLOT_RELEASED ||
		    !__atomic_compare_exchange_n(&slot_state[k], &st, SLOT_QUIESCING, false,
						 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			continue;
		__atomic_store_n(&spb__hlive[k], 0, __ATOMIC_SEQ_CST);
		/* Loaded after the store: a reader registering later sees 0. */
		bool (*sync)(void) = __atomic_load_n(&spb__arena_sync_hook, __ATOMIC_SEQ_CST);
		if ((sync && !sync()) || !spb__os_protect_none(slot_addr(k), SPB_SPB_SIZE)) {
			/* No grace period to be had (or mprotect refused): readable
			 * as it was, for another look later. */
			__atomic_store_n(&spb__hlive[k], 1, __ATOMIC_SEQ_CST);
			__atomic_store_n(&slot_state[k], SLOT_RELEASED, __ATOMIC_RELEASE);
			break;
		}
		__atomic_store_n(&slot_state[k], SLOT_NONE, __ATOMIC_RELEASE);
		done++;
	}
	return done;
}
