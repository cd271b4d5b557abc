/*
 * handle.c — movable objects behind handles: the handle table and the
 * spb_h* calls (include/spbmalloc.h).
 *
 * A handle is (generation << 32) | index. Entry `index` of one table,
 * reserved once (SPB_HANDLE_MAX entries of 16 bytes, touched as used),
 * holds the generation and one word: the object's address, its state in
 * the low 4 bits and its pin count in the top 16. Objects are MOVABLE-class
 * blocks with a 16-byte header in front that names their index, so the
 * mover can go from a block back to its entry.
 *
 * The protocol between readers and the mover (lib/compact.c):
 *   NORMAL   the address is good; spb_hget returns it with two loads.
 *   MOVING   the mover has chosen the object and waits for a grace period
 *            (synchronize_rcu): readers that loaded the address before are
 *            leaving their read sections. A reader, pinner, resizer or
 *            freer that finds MOVING cancels the move: it CASes the word
 *            back to NORMAL and goes on with the old address; the mover's
 *            CAS to COPYING then fails and it drops the move.
 *   COPYING  the grace period is over and nobody cancelled: nobody holds
 *            the old address. The mover copies and stores (new address,
 *            NORMAL). Whoever finds COPYING waits for that store (a copy
 *            of one object; it yields after a while), so no one touches
 *            the old place while it is read: no write is lost, no read is
 *            torn, and the copy never races a user's write.
 * The old place is freed after the store. Pins keep the mover off (it
 * takes NORMAL with no pins only). The rare cancel is the only atomic
 * read-modify-write a reader ever does.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "handle.h"

#define SPB_EXPORT __attribute__((visibility("default")))

#define HDR SPB_HANDLE_HDR

struct spb_hentry *spb__htab;
static uint32_t htab_hwm;            /* indices handed out at least once */
static uint32_t hfree_head;          /* global free list of indices (0 = none) */
static pthread_mutex_t hlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t htab_once = PTHREAD_ONCE_INIT;

#define HCACHE 64
static SPB_TLS uint32_t hcache[HCACHE];
static SPB_TLS unsigned hcache_n;

static void htab_init(void)
{
	spb__htab = spb__os_meta_alloc((size_t)SPB_HANDLE_MAX * sizeof(struct spb_hentry));
}

/* Refill the thread's cache of free indices from the global list, then
 * from fresh ones; false when the table is full (or could not be mapped). */
static bool hcache_refill(void)
{
	pthread_once(&htab_once, htab_init);
	if (!spb__htab)
		return false;
	pthread_mutex_lock(&hlock);
	while (hcache_n < HCACHE / 2) {
		uint32_t i = hfree_head;
		if (i) {
			hfree_head = spb__htab[i].next_free;
		} else if (htab_hwm + 1 < SPB_HANDLE_MAX) {
			i = htab_hwm + 1;
			__atomic_store_n(&spb__htab[i].gen, 1, __ATOMIC_RELAXED);
			__atomic_store_n(&htab_hwm, i, __ATOMIC_RELEASE);
		} else {
			break;
		}
		hcache[hcache_n++] = i;
	}
	pthread_mutex_unlock(&hlock);
	/* No lock of ours held: the thread's creation may allocate. */
	spb__compactd_maybe_start();
	return hcache_n > 0;
}

static void hcache_put(uint32_t idx)
{
	if (hcache_n == HCACHE) {
		pthread_mutex_lock(&hlock);
		while (hcache_n > HCACHE / 2) {
			uint32_t i = hcache[--hcache_n];
			spb__htab[i].next_free = hfree_head;
			hfree_head = i;
		}
		pthread_mutex_unlock(&hlock);
	}
	hcache[hcache_n++] = idx;
}

void spb__handle_thread_exit(void)
{
	if (!hcache_n)
		return;
	pthread_mutex_lock(&hlock);
	while (hcache_n) {
		uint32_t i = hcache[--hcache_n];
		spb__htab[i].next_free = hfree_head;
		hfree_head = i;
	}
	pthread_mutex_unlock(&hlock);
}

uint32_t spb__handle_hwm(void)
{
	return __atomic_load_n(&htab_hwm, __ATOMIC_ACQUIRE);
}

__attribute__((noreturn, cold, noinline)) void spb__handle_fault(const char *what,
								  spb_handle_t h)
{
	spb__fatal(what, (const void *)(uintptr_t)h);
}

/* The entry of h, or death with one line naming h. */
static struct spb_hentry *entry_of(spb_handle_t h, const char *call)
{
	uint32_t idx = spb__h_index(h);
	if (SPB_UNLIKELY(!spb__htab || idx == 0 ||
			 idx > __atomic_load_n(&htab_hwm, __ATOMIC_ACQUIRE) ||
			 __atomic_load_n(&spb__htab[idx].gen, __ATOMIC_RELAXED) != spb__h_gen(h)))
		spb__handle_fault(call, h);
	return &spb__htab[idx];
}

/* A block of the thread's MOVABLE heap, allocated inside a read section:
 * the compactor may take that heap's current span away, and waits for a
 * grace period before anyone else touches it (heap.c, steal). */
static void *movable_block(size_t bytes)
{
	spb_read_lock();
	void *p = spb__malloc_movable(bytes);
	spb_read_unlock();
	return p;
}

SPB_EXPORT spb_handle_t spb_halloc(size_t size, unsigned flags)
{
	if (size > SIZE_MAX - HDR || (flags & ~(unsigned)SPB_F_ZERO)) {
		errno = size > SIZE_MAX - HDR ? ENOMEM : EINVAL;
		return 0;
	}
	if (!hcache_n && !hcache_refill()) {
		errno = ENOMEM;
		return 0;
	}
	char *base = movable_block(size + HDR);
	if (!base)
		return 0; /* errno from the allocation */
	uint32_t idx = hcache[--hcache_n];
	struct spb_hentry *e = &spb__htab[idx];
	*(uint64_t *)base = idx;
	if (flags & SPB_F_ZERO)
		memset(base + HDR, 0, size);
	/* Release: a reader in another thread that got h from us sees the
	 * header and the contents. */
	__atomic_store_n(&e->word, (uint64_t)(uintptr_t)(base + HDR) | SPB_HS_NORMAL,
			 __ATOMIC_RELEASE);
	spb__heap_count_one(HANDLE_ALLOC);
	return ((spb_handle_t)__atomic_load_n(&e->gen, __ATOMIC_RELAXED) << 32) | idx;
}

/* Take the word back to NORMAL, cancelling a move in progress; returns
 * the word as it is after. Death if the entry is free. */
uint64_t spb__h_settle(struct spb_hentry *e, spb_handle_t h, const char *call)
{
	uint64_t w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
	for (unsigned spins = 0;; spins++) {
		unsigned st = (unsigned)(w & SPB_HS_MASK);
		if (st == SPB_HS_NORMAL)
			return w;
		if (st == SPB_HS_FREE)
			spb__handle_fault(call, h);
		if (st == SPB_HS_COPYING) { /* the mover's store comes soon */
			if (spins < 1000)
				__builtin_ia32_pause();
			else
				sched_yield();
			w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
			continue;
		}
		uint64_t nw = (w & ~(uint64_t)SPB_HS_MASK) | SPB_HS_NORMAL;
		if (__atomic_compare_exchange_n(&e->word, &w, nw, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE)) {
			spb__heap_count(COMPACT_CANCELLED, 1);
			return nw;
		}
	}
}

static __attribute__((noinline)) void *hget_slow(spb_handle_t h)
{
	static const char why[] = "spb_hget(): stale or invalid handle";
	return spb__h_addr(spb__h_settle(entry_of(h, why), h, why));
}

/* Two plain loads on the common path: the generation (is h live?) and
 * the word (NORMAL: the address). Anything else, including a handle out
 * of range, takes the slow path, which cancels a move or dies. */
SPB_EXPORT void *spb_hget(spb_handle_t h)
{
	uint32_t idx = spb__h_index(h);
	struct spb_hentry *t = spb__htab;
	if (SPB_LIKELY(t && idx - 1 < SPB_HANDLE_MAX - 1)) {
		struct spb_hentry *e = &t[idx];
		uint64_t w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
		if (SPB_LIKELY((w & SPB_HS_MASK) == SPB_HS_NORMAL &&
			       __atomic_load_n(&e->gen, __ATOMIC_RELAXED) == spb__h_gen(h) &&
			       w))
			return spb__h_addr(w);
	}
	return hget_slow(h);
}

SPB_EXPORT void spb_hfree(spb_handle_t h)
{
	if (!h)
		return;
	static const char why[] = "spb_hfree(): stale or invalid handle (double free?)";
	struct spb_hentry *e = entry_of(h, why);
	uint64_t w = spb__h_settle(e, h, why);
	for (;;) {
		if ((w & SPB_HS_MASK) == SPB_HS_FREE)
			spb__handle_fault(why, h);
		if (spb__h_pins(w))
			spb__handle_fault("spb_hfree(): handle is pinned", h);
		if ((w & SPB_HS_MASK) == SPB_HS_COPYING) {
			w = spb__h_settle(e, h, why);
			continue;
		}
		/* FREE from NORMAL or MOVING: a chosen move fails its CAS. */
		if (__atomic_compare_exchange_n(&e->word, &w, (uint64_t)SPB_HS_FREE, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			break;
	}
	uint32_t g = __atomic_load_n(&e->gen, __ATOMIC_RELAXED) + 1;
	__atomic_store_n(&e->gen, g ? g : 1, __ATOMIC_RELAXED); /* 0 is never valid */
	spb__free_ptr(spb__h_addr(w) - HDR);
	spb__heap_count_one(HANDLE_FREE);
	hcache_put(spb__h_index(h));
}

SPB_EXPORT size_t spb_hsize(spb_handle_t h)
{
	entry_of(h, "spb_hsize(): stale or invalid handle");
	/* Pinned for the look: a move could free the place it names. */
	char *p = spb_hpin(h);
	size_t n = spb__usable(p - HDR) - HDR;
	spb_hunpin(h);
	return n;
}

SPB_EXPORT void *spb_hpin(spb_handle_t h)
{
	static const char why[] = "spb_hpin(): stale or invalid handle";
	struct spb_hentry *e = entry_of(h, why);
	uint64_t w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
	for (;;) {
		if ((w & SPB_HS_MASK) == SPB_HS_FREE)
			spb__handle_fault(why, h);
		if ((w & SPB_HS_MASK) == SPB_HS_COPYING) {
			w = spb__h_settle(e, h, why);
			continue;
		}
		if (spb__h_pins(w) == SPB_HS_PINS_MAX)
			spb__handle_fault("spb_hpin(): too many pins on one handle", h);
		uint64_t nw = ((w & ~(uint64_t)SPB_HS_MASK) | SPB_HS_NORMAL) + SPB_HS_PIN_ONE;
		if (__atomic_compare_exchange_n(&e->word, &w, nw, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE)) {
			if ((w & SPB_HS_MASK) != SPB_HS_NORMAL)
				spb__heap_count(COMPACT_CANCELLED, 1);
			return spb__h_addr(nw);
		}
	}
}

SPB_EXPORT void spb_hunpin(spb_handle_t h)
{
	static const char why[] = "spb_hunpin(): stale or invalid handle";
	struct spb_hentry *e = entry_of(h, why);
	uint64_t w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
	for (;;) {
		if ((w & SPB_HS_MASK) == SPB_HS_FREE)
			spb__handle_fault(why, h);
		if (!spb__h_pins(w))
			spb__handle_fault("spb_hunpin(): handle is not pinned", h);
		if (__atomic_compare_exchange_n(&e->word, &w, w - SPB_HS_PIN_ONE, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return;
	}
}

SPB_EXPORT int spb_hrealloc(spb_handle_t h, size_t size)
{
	/* Pinned for the call: the mover keeps off while the data is copied. */
	char *old = spb_hpin(h);
	struct spb_hentry *e = &spb__htab[spb__h_index(h)];
	uint64_t w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
	if (spb__h_pins(w) != 1) {
		spb_hunpin(h);
		errno = EBUSY; /* someone else holds the address: it cannot change */
		return -1;
	}
	size_t have = spb__usable(old - HDR) - HDR;
	if (size <= have && size >= have / 2) {
		spb_hunpin(h);
		return 0; /* in place: the usable size says what is there */
	}
	char *base = size <= SIZE_MAX - HDR ? movable_block(size + HDR) : NULL;
	if (!base) {
		spb_hunpin(h);
		errno = ENOMEM;
		return -1;
	}
	*(uint64_t *)base = spb__h_index(h);
	memcpy(base + HDR, old, size < have ? size : have);
	uint64_t nw = (uint64_t)(uintptr_t)(base + HDR) | SPB_HS_NORMAL;
	if (!__atomic_compare_exchange_n(&e->word, &w, nw, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		spb__handle_fault("spb_hrealloc(): handle pinned, unpinned or freed during the call", h);
	spb__free_ptr(old - HDR);
	return 0;
}
