/*
 * handle.c — movable objects behind handles: the handle table and the
 * spb_h* calls (include/spbmalloc.h).
 *
 * A handle is (generation << 32) | index. Entry `index` of one table,
 * reserved once (SPB_HANDLE_MAX entries of 8 bytes, touched as used), is
 * one word: the object's address, its state in the low 4 bits and its pin
 * count in the top 16; a free entry's word keeps the generation its next
 * handle gets and the free list's link instead. Objects are MOVABLE-class
 * blocks with a 16-byte header in front that holds their handle, so the
 * mover can go from a block back to its entry, and a handle is checked
 * against the object it names (a stale one whose index was reused differs).
 *
 * The protocol between readers and the mover (lib/compact.c):
 *   NORMAL   the address is good; spb_hget (inline, include/spbmalloc.h)
 *            returns it after two plain loads: the word, and the header
 *            it names, which must hold h.
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
 *
 * The other calls check the header (is this h's object, or a later one
 * of the same index?) only where that place cannot move meanwhile: after
 * their own CAS to FREE or to one more pin, or, unpinning, before their
 * CAS while still pinned (check_header).
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "handle.h"

#define SPB_EXPORT __attribute__((visibility("default")))

#define HDR SPB_HANDLE_HDR

_Static_assert(SPB_HANDLE_MAX == SPB_HANDLE_MAX_PUBLIC, "spbmalloc.h's inline spb_hget bound");

struct spb_hentry *spb__htab;
SPB_EXPORT uint64_t *spb__hwords;    /* the same table, for the inline spb_hget */
static uint32_t htab_hwm;            /* indices handed out at least once */
static uint32_t hfree_head;          /* global free list of indices (0 = none) */
static pthread_mutex_t hlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t htab_once = PTHREAD_ONCE_INIT;

#define HCACHE 64
static SPB_TLS uint32_t hcache[HCACHE];
static SPB_TLS unsigned hcache_n;

#define HTAB_BYTES ((size_t)SPB_HANDLE_MAX * sizeof(struct spb_hentry))
#define HTAB_REGION_ENTRIES ((uint32_t)(SPB_PB_SIZE / sizeof(struct spb_hentry)))
/* The table's nth 2 MiB boundary (the table is 2 MiB-aligned). */
static char *htab_region(unsigned n) { return (char *)spb__htab + (size_t)n * SPB_PB_SIZE; }
static char *htab_end(void) { return (char *)spb__htab + HTAB_BYTES; }

static void htab_init(void)
{
	/* Reserved (nothing touched) with a 2 MiB margin, used 2 MiB-aligned. */
	char *raw = spb__os_meta_alloc(HTAB_BYTES + SPB_PB_SIZE);
	if (!raw)
		return;
	spb__htab = (struct spb_hentry *)(((uintptr_t)raw + SPB_PB_SIZE - 1) &
					  ~(uintptr_t)(SPB_PB_SIZE - 1));
	/* The table is used densely from its start (fresh indices in order,
	 * free ones reused first): past its first 2 MiB (256 Ki handles, on
	 * 4 KiB pages so that a few handles cost a few pages) it is on huge
	 * pages, and the first 2 MiB is collapsed once the handles fill it:
	 * spb_hget's entry load then rarely misses the TLB. */
	if (!spb__os_advise_hugepage(htab_region(1), (size_t)(htab_end() - htab_region(1))))
		spb__heap_count(HANDLE_TABLE_4K, 1);
	__atomic_store_n(&spb__hwords, (uint64_t *)spb__htab, __ATOMIC_RELEASE);
}

/* Index i (its word FREE) onto the global free list. */
static void push_free_locked(uint32_t i)
{
	uint64_t w = __atomic_load_n(&spb__htab[i].word, __ATOMIC_RELAXED);
	__atomic_store_n(&spb__htab[i].word, spb__h_free_word(spb__h_free_gen(w), hfree_head),
			 __ATOMIC_RELAXED);
	hfree_head = i;
}

/* Refill the thread's cache of free indices from the global list, then
 * from fresh ones; false when the table is full (or could not be mapped). */
static bool hcache_refill(void)
{
	pthread_once(&htab_once, htab_init);
	if (!spb__htab)
		return false;
	pthread_mutex_lock(&hlock);
	uint32_t hwm_before = htab_hwm;
	while (hcache_n < HCACHE / 2) {
		uint32_t i = hfree_head;
		if (i) {
			hfree_head = spb__h_free_next(
				__atomic_load_n(&spb__htab[i].word, __ATOMIC_RELAXED));
		} else if (htab_hwm + 1 < SPB_HANDLE_MAX) {
			i = htab_hwm + 1;
			__atomic_store_n(&spb__htab[i].word, spb__h_free_word(1, 0),
					 __ATOMIC_RELAXED);
			__atomic_store_n(&htab_hwm, i, __ATOMIC_RELEASE);
		} else {
			break;
		}
		hcache[hcache_n++] = i;
	}
	uint32_t hwm_after = htab_hwm;
	pthread_mutex_unlock(&hlock);
	/* The handles have filled the table up to its first huge page's end:
	 * the 4 KiB pages below go to one huge page (once; counted). */
	if (hwm_before < HTAB_REGION_ENTRIES && hwm_after >= HTAB_REGION_ENTRIES) {
		if (spb__os_advise_hugepage(htab_region(0), SPB_PB_SIZE) &&
		    spb__os_collapse(htab_region(0), SPB_PB_SIZE))
			spb__heap_count(HANDLE_TABLE_COLLAPSED, 1);
		else
			spb__heap_count(HANDLE_TABLE_4K, 1);
	}
	/* No lock of ours held: the thread's creation may allocate. */
	spb__compactd_maybe_start();
	return hcache_n > 0;
}

static void hcache_put(uint32_t idx)
{
	if (hcache_n == HCACHE) {
		pthread_mutex_lock(&hlock);
		while (hcache_n > HCACHE / 2)
			push_free_locked(hcache[--hcache_n]);
		pthread_mutex_unlock(&hlock);
	}
	hcache[hcache_n++] = idx;
}

void spb__handle_thread_exit(void)
{
	if (!hcache_n)
		return;
	pthread_mutex_lock(&hlock);
	while (hcache_n)
		push_free_locked(hcache[--hcache_n]);
	pthread_mutex_unlock(&hlock);
}

/* fork: the free-index lock held across it (taken last: nothing is
 * waited for while it is held), so the child never inherits it locked by
 * a thread it has not; the child's copy is made anew. */
void spb__handle_prefork(void)
{
	pthread_mutex_lock(&hlock);
}

void spb__handle_postfork(bool child)
{
	if (child)
		pthread_mutex_init(&hlock, NULL);
	else
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

/* The word of h's index back at NORMAL, cancelling a move in progress
 * (waiting for a copy under way); death with one line naming h if the
 * index is free or was never handed out. Whether the object there is h's
 * (not a later handle's of the same index) is check_header's. *ep: the
 * entry, for the caller's CAS. */
static uint64_t settle(spb_handle_t h, const char *call, struct spb_hentry **ep)
{
	uint32_t idx = spb__h_index(h);
	if (SPB_UNLIKELY(!spb__htab || idx == 0 ||
			 idx > __atomic_load_n(&htab_hwm, __ATOMIC_ACQUIRE)))
		spb__handle_fault(call, h);
	struct spb_hentry *e = *ep = &spb__htab[idx];
	uint64_t w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
	for (unsigned spins = 0;; spins++) {
		unsigned st = (unsigned)(w & SPB_HS_MASK);
		if (st == SPB_HS_NORMAL)
			break;
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
			w = nw;
			break;
		}
	}
	return w;
}

/* Is the object at w's address h's? Read only where that place cannot be
 * moved and freed meanwhile: inside a read section after the word was
 * seen NORMAL, while the word is pinned, or after the caller's own CAS
 * from that word to FREE or to more pins succeeded (no move can complete
 * from there; unpinning checks before its CAS, still pinned). A
 * stale handle whose index names a later object dies here; what the CAS
 * did to that object no longer matters then. */
static void check_header(uint64_t w, spb_handle_t h, const char *call)
{
	if (SPB_UNLIKELY(*(const uint64_t *)(spb__h_addr(w) - HDR) != h))
		spb__handle_fault(call, h); /* the index now names another handle */
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
	uint32_t gen = spb__h_free_gen(__atomic_load_n(&e->word, __ATOMIC_RELAXED));
	spb_handle_t h = (spb_handle_t)gen << 32 | idx;
	*(uint64_t *)base = h;
	if (flags & SPB_F_ZERO)
		memset(base + HDR, 0, size);
	/* Release: a reader in another thread that got h from us sees the
	 * header and the contents. */
	__atomic_store_n(&e->word, (uint64_t)(uintptr_t)(base + HDR) | SPB_HS_NORMAL,
			 __ATOMIC_RELEASE);
	spb__heap_count_one(HANDLE_ALLOC);
	return h;
}

/* The inline spb_hget's way out: a move to cancel or wait for, a handle
 * out of range, stale or 0 (death). */
SPB_EXPORT __attribute__((noinline)) void *spb__hget_slow(spb_handle_t h)
{
	static const char why[] = "spb_hget(): stale or invalid handle";
	/* In the caller's read section: the place stays put until it ends. */
	struct spb_hentry *e;
	uint64_t w = settle(h, why, &e);
	check_header(w, h, why);
	return spb__h_addr(w);
}

#undef spb_hget
SPB_EXPORT void *spb_hget(spb_handle_t h)
{
	return spb__hget_inline(h);
}

SPB_EXPORT void spb_hfree(spb_handle_t h)
{
	if (!h)
		return;
	static const char why[] = "spb_hfree(): stale or invalid handle (double free?)";
	struct spb_hentry *e;
	uint32_t next_gen = spb__h_gen(h) + 1 ? spb__h_gen(h) + 1 : 1;
	uint64_t w;
	do {
		w = settle(h, why, &e);
		if (spb__h_pins(w)) {
			check_header(w, h, why); /* pinned: the place stays */
			spb__handle_fault("spb_hfree(): handle is pinned", h);
		}
		/* FREE, and the index's next generation (0 is never valid); a
		 * move chosen meanwhile fails its CAS to COPYING. */
	} while (!__atomic_compare_exchange_n(&e->word, &w, spb__h_free_word(next_gen, 0), false,
					      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
	check_header(w, h, why);
	spb__free_ptr(spb__h_addr(w) - HDR);
	spb__heap_count_one(HANDLE_FREE);
	hcache_put(spb__h_index(h));
}

static void *pin(spb_handle_t h, const char *why)
{
	struct spb_hentry *e;
	uint64_t w;
	do {
		w = settle(h, why, &e);
		if (spb__h_pins(w) == SPB_HS_PINS_MAX) {
			check_header(w, h, why); /* pinned: the place stays */
			spb__handle_fault("spb_hpin(): too many pins on one handle", h);
		}
	} while (!__atomic_compare_exchange_n(&e->word, &w, w + SPB_HS_PIN_ONE, false,
					      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
	check_header(w, h, why);
	return spb__h_addr(w);
}

static void unpin(spb_handle_t h, const char *why)
{
	struct spb_hentry *e;
	uint64_t w;
	do {
		w = settle(h, why, &e);
		if (!spb__h_pins(w)) {
			/* Not pinned: is it h's at all? Looked at in a read
			 * section (a move may be chosen meanwhile). */
			spb_read_lock();
			check_header(settle(h, why, &e), h, why);
			spb_read_unlock();
			spb__handle_fault("spb_hunpin(): handle is not pinned", h);
		}
		/* Checked while still pinned: once the pins reach 0 the
		 * mover may take the place and free it. */
		check_header(w, h, why);
	} while (!__atomic_compare_exchange_n(&e->word, &w, w - SPB_HS_PIN_ONE, false,
					      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
}

SPB_EXPORT void *spb_hpin(spb_handle_t h)
{
	return pin(h, "spb_hpin(): stale or invalid handle");
}

SPB_EXPORT void spb_hunpin(spb_handle_t h)
{
	unpin(h, "spb_hunpin(): stale or invalid handle");
}

SPB_EXPORT size_t spb_hsize(spb_handle_t h)
{
	/* Pinned for the look: a move could free the place it names. */
	static const char why[] = "spb_hsize(): stale or invalid handle";
	char *p = pin(h, why);
	size_t n = spb__usable(p - HDR) - HDR;
	unpin(h, why);
	return n;
}

SPB_EXPORT int spb_hrealloc(spb_handle_t h, size_t size)
{
	/* Pinned for the call: the mover keeps off while the data is copied. */
	char *old = pin(h, "spb_hrealloc(): stale or invalid handle");
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
	*(uint64_t *)base = h;
	memcpy(base + HDR, old, size < have ? size : have);
	uint64_t nw = (uint64_t)(uintptr_t)(base + HDR) | SPB_HS_NORMAL;
	if (!__atomic_compare_exchange_n(&e->word, &w, nw, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		spb__handle_fault("spb_hrealloc(): handle pinned, unpinned or freed during the call", h);
	spb__free_ptr(old - HDR);
	return 0;
}
