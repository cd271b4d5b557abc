/*
 * handle.c — movable objects behind handles: the handle table and the
 * spb_h* calls (include/spbmalloc.h).
 *
 * A handle is a place, an index and a generation (handle.h). Entry
 * `index` of one table, reserved once (SPB_HANDLE_MAX entries of 8
 * bytes, touched as used), is one word: the object's address and its pin
 * count; a free entry's word keeps the generation its next handle gets
 * and the free list's link instead. Objects are MOVABLE-class blocks with
 * a 16-byte header in front holding their tag (the handle, keyed), so the
 * mover can go from a block back to its entry, and a handle is checked
 * against the object it names. The place is where the header was when the
 * handle was made (its offset in the handle arena, lib/arena.c; 0 outside
 * it): while the object stays there, spb_hget (inline) loads that header,
 * compares, and is done, without the table. Every byte of the arena can
 * be read, so a place that no longer holds the object reads as something
 * else (zeros, or another object's header) and the table says where it
 * went.
 *
 * The protocol between readers and the mover (lib/compact.c) lives in
 * the header word, because the inline spb_hget looks at nothing else:
 *   tag         the object is here and settled.
 *   tag^MARK    the mover has chosen it (CAS from tag, after checking the
 *               entry names this place with no pins) and waits for a
 *               grace period (synchronize_rcu): readers that saw tag
 *               before are leaving their read sections; readers that come
 *               now fail the inline compare. Whoever finds tag^MARK
 *               through the table (spb__hget_slow, a pinner, a freer)
 *               cancels: CAS back to tag, and goes on with the place.
 *   tag^COPY    the grace period is over and nobody cancelled (the
 *               mover's CAS tag^MARK -> tag^COPY succeeded): nobody holds
 *               the place. The mover then reads the entry: pinned since
 *               (a pin taken after its check) or changed, it reverts (CAS
 *               back to tag). Else it copies the contents to the new
 *               place, whose header says tag^COPY too (that place may be
 *               the one the handle names), CASes the entry from (old
 *               place, no pins) to the new one (failing: 0 in the new
 *               header, the old one back to tag), then stores tag at the
 *               new place and scrubs the old header (0) before freeing
 *               it. Whoever finds tag^COPY waits (one object's copy): no
 *               write is lost, no read is torn, the copy never races a
 *               user's write.
 * A pin is +1 in the entry; the pinner then looks at the header (tag:
 * done; tag^MARK: cancel; tag^COPY: wait until the mover, which sees the
 * pin either at its look at the entry or at its final CAS, reverts). The
 * pinner's CAS on the entry and its look at the header, the mover's CAS
 * on the header and its look at the entry, are sequentially consistent:
 * one of the two sees the other. A free scrubs the header (CAS from tag
 * or tag^MARK to 0; it waits out tag^COPY) before the entry goes FREE:
 * no place answers for a freed handle; it looks inside a read section, so
 * that an object moved away and back between two of its reads is not
 * taken for a stale handle. SPIN checks all of it (tests/model/handle.pml,
 * which found the two rules just given missing in a first version). spb_hrealloc pins, copies, moves
 * the entry to the new place and scrubs the old header.
 *
 * The other calls check the header (is this h's object, or a later one
 * of the same index?) only where that place cannot move meanwhile: in a
 * read section (spb__hget_slow), while pinned, or in the CAS that frees.
 * A handle whose object moved (by the mover or spb_hrealloc) keeps its old
 * place: its spb_hget goes through the table from then on.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "handle.h"

#define SPB_EXPORT __attribute__((visibility("default")))

#define HDR SPB_HANDLE_HDR

_Static_assert(SPB_HANDLE_MAX == SPB_HANDLE_MAX_PUBLIC, "spbmalloc.h's inline spb_hget bound");

struct spb_hentry *spb__htab;
SPB_EXPORT uint64_t spb__hkey;       /* a header holds handle ^ key (index bits 0) */
static uint32_t htab_hwm;            /* indices handed out at least once */
/* The global free list of indices, first in first out (0 = none): an
 * index is handed out again only once HQUARANTINE others were freed after
 * it (fresh indices meanwhile), so its 6-bit generation wraps only after
 * that many frees 64 times over, and a stale handle is caught even where
 * a size is allocated and freed over and over (the same place again). */
static uint32_t hfree_head, hfree_tail, hfree_n;
#define HQUARANTINE 8192 /* 64 KiB of table */
static pthread_mutex_t hlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t htab_once = PTHREAD_ONCE_INIT;

#define HCACHE 64
static SPB_TLS uint32_t hcache[HCACHE];  /* indices to hand out */
static SPB_TLS unsigned hcache_n;
static SPB_TLS uint32_t hfreed[HCACHE / 2]; /* freed, for the list's tail */
static SPB_TLS unsigned hfreed_n;

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
	/* The key makes a header that holds a tag unlikely to be anything
	 * else by chance (data a program wrote where an object was). */
	uint64_t k = 0;
	if (syscall(SYS_getrandom, &k, sizeof k, GRND_NONBLOCK) != sizeof k)
		k = __builtin_ia32_rdtsc() * 0x9e3779b97f4a7c15ull ^ (uintptr_t)&k;
	/* Its index bits 0: a tag's index bits are the handle's index,
	 * never 0, so no tag is 0 (a scrubbed header). */
	spb__hkey = k & ~((uint64_t)(SPB_HANDLE_MAX - 1) << SPB_H_INDEX_SHIFT);
}

/* Index i (its word FREE) onto the global free list's tail. */
static void push_free_locked(uint32_t i)
{
	uint64_t w = __atomic_load_n(&spb__htab[i].word, __ATOMIC_RELAXED);
	__atomic_store_n(&spb__htab[i].word, spb__h_free_word(spb__h_free_gen(w), 0),
			 __ATOMIC_RELAXED);
	if (hfree_tail) {
		uint64_t t = __atomic_load_n(&spb__htab[hfree_tail].word, __ATOMIC_RELAXED);
		__atomic_store_n(&spb__htab[hfree_tail].word,
				 spb__h_free_word(spb__h_free_gen(t), i), __ATOMIC_RELAXED);
	} else {
		hfree_head = i;
	}
	hfree_tail = i;
	hfree_n++;
}

static uint32_t pop_free_locked(void)
{
	uint32_t i = hfree_head;
	hfree_head = spb__h_free_next(__atomic_load_n(&spb__htab[i].word, __ATOMIC_RELAXED));
	if (!hfree_head)
		hfree_tail = 0;
	hfree_n--;
	return i;
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
		uint32_t i;
		if (hfree_n > HQUARANTINE || (hfree_n && htab_hwm + 1 >= SPB_HANDLE_MAX)) {
			i = pop_free_locked();
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

/* A freed index, to the global list's tail in batches (never straight
 * back to this thread's next spb_halloc). */
static void hcache_put(uint32_t idx)
{
	hfreed[hfreed_n++] = idx;
	if (hfreed_n == HCACHE / 2) {
		pthread_mutex_lock(&hlock);
		for (unsigned k = 0; k < hfreed_n; k++)
			push_free_locked(hfreed[k]);
		pthread_mutex_unlock(&hlock);
		hfreed_n = 0;
	}
}

void spb__handle_thread_exit(void)
{
	if (!hcache_n && !hfreed_n)
		return;
	pthread_mutex_lock(&hlock);
	for (unsigned k = 0; k < hfreed_n; k++)
		push_free_locked(hfreed[k]);
	hfreed_n = 0;
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

/* The speculative header accesses (handle.h): a race by design, like
 * the inline spb_hget's load; ThreadSanitizer is told not to look. */
__attribute__((noinline, no_sanitize("thread"))) uint64_t spb__h_peek(const void *hp)
{
	return __atomic_load_n((const uint64_t *)hp, __ATOMIC_SEQ_CST);
}

__attribute__((noinline, no_sanitize("thread"))) bool spb__h_cas(void *hp, uint64_t from, uint64_t to)
{
	return __atomic_compare_exchange_n((uint64_t *)hp, &from, to, false, __ATOMIC_SEQ_CST,
					   __ATOMIC_SEQ_CST);
}

/* h's entry; death with one line naming h if its index is out of range
 * or was never handed out. */
static struct spb_hentry *entry_of(spb_handle_t h, const char *call)
{
	uint32_t idx = spb__h_index(h);
	if (SPB_UNLIKELY(!spb__htab || idx == 0 || (h & SPB_HDR_MARK) ||
			 idx > __atomic_load_n(&htab_hwm, __ATOMIC_ACQUIRE)))
		spb__handle_fault(call, h);
	return &spb__htab[idx];
}

static void backoff(unsigned *spins)
{
	if ((*spins)++ < 1000)
		__builtin_ia32_pause();
	else
		sched_yield();
}

/* Seen at h's place: cancel a move chosen there (tag^MARK -> tag). True
 * when the place is settled for the caller, false to look again. */
static bool settle_hdr(uint64_t *hp, uint64_t v, uint64_t t)
{
	if (v == t)
		return true;
	if (v != (t ^ SPB_HDR_MARK))
		return false;
	if (!__atomic_compare_exchange_n(hp, &v, t, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		return false;
	spb__heap_count(COMPACT_CANCELLED, 1);
	return true;
}

/* Where h's object is, for a caller in a read section: the entry's place
 * once its header holds h's tag (a move chosen there cancelled, a copy
 * under way waited for); death if the index is free, or names another
 * handle's object while the entry stays the same. */
static char *locate(spb_handle_t h, const char *why)
{
	struct spb_hentry *e = entry_of(h, why);
	uint64_t t = spb__h_tag(h);
	for (unsigned spins = 0;;) {
		uint64_t w = __atomic_load_n(&e->word, __ATOMIC_SEQ_CST);
		if ((w & SPB_HS_MASK) == SPB_HS_FREE)
			spb__handle_fault(why, h);
		char *p = spb__h_addr(w);
		uint64_t *hp = spb__h_hdr(p);
		uint64_t v = spb__h_peek(hp);
		/* Settled, or a move chosen and now cancelled: h's object, here
		 * for the rest of the read section (a new choice waits for it).
		 * Read again for a real acquire (ThreadSanitizer sees it). */
		if (v == t || (v == (t ^ SPB_HDR_MARK) && spb__h_cas(hp, v, t))) {
			if (v != t)
				spb__heap_count(COMPACT_CANCELLED, 1);
			(void)__atomic_load_n(hp, __ATOMIC_SEQ_CST);
			return p;
		}
		if (v == (t ^ SPB_HDR_COPY) || v == (t ^ SPB_HDR_MARK)) {
			backoff(&spins);
			continue;
		}
		/* Moved meanwhile (the old place scrubbed, maybe reused), or
		 * the index names another handle's object. */
		if (__atomic_load_n(&e->word, __ATOMIC_SEQ_CST) != w)
			continue;
		spb__handle_fault(why, h);
	}
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
	spb_handle_t h = spb__h_make(spb__h_place(base), gen, idx);
	if (flags & SPB_F_ZERO)
		memset(base + HDR, 0, size);
	/* Release: a reader in another thread that got h from us sees the
	 * header and the contents (through the table or the place). */
	__atomic_store_n((uint64_t *)base, spb__h_tag(h), __ATOMIC_RELEASE);
	__atomic_store_n(&e->word, (uint64_t)(uintptr_t)(base + HDR) | SPB_HS_NORMAL,
			 __ATOMIC_RELEASE);
	spb__heap_count_one(HANDLE_ALLOC);
	return h;
}

/* The inline spb_hget's way out: an object not at its handle's place
 * (moved, outside the arena), a move to cancel or wait for, a handle out
 * of range, stale or 0 (death). */
SPB_EXPORT __attribute__((noinline)) void *spb__hget_slow(spb_handle_t h)
{
	/* The place first (again, or for the first time in a build with
	 * ThreadSanitizer, whose inline comes straight here): a header
	 * there holding h's tag is h's, read again with an acquire. */
	char *a = (char *)spb__harena16 + (h & spb__hmask);
	uint64_t t = spb__h_tag(h);
	if (__atomic_load_n(&spb__hlive[(h & spb__hmask) >> 30], __ATOMIC_ACQUIRE) &&
	    spb__h_peek(spb__h_hdr(a)) == t &&
	    __atomic_load_n(spb__h_hdr(a), __ATOMIC_SEQ_CST) == t)
		return a;
	/* In the caller's read section: the place stays put until it ends. */
	spb__heap_count_one(HANDLE_GET_SLOW);
	return locate(h, "spb_hget(): stale or invalid handle");
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
	struct spb_hentry *e = entry_of(h, why);
	uint64_t t = spb__h_tag(h);
	uint32_t next_gen = (spb__h_gen(h) + 1) & SPB_H_GEN_MASK;
	/* The look happens in a read section: the object may be moved away
	 * and back between two reads of the entry (the same word both times,
	 * a scrubbed header between), and only a grace period between the
	 * two moves keeps that from reading as a stale handle (SPIN found it:
	 * tests/model/handle.pml). No grace period is waited for while a
	 * header is tag^COPY, so the waits below cannot hold the mover up. */
	spb_read_lock();
	for (unsigned spins = 0;;) {
		uint64_t w = __atomic_load_n(&e->word, __ATOMIC_SEQ_CST);
		if ((w & SPB_HS_MASK) == SPB_HS_FREE)
			spb__handle_fault(why, h);
		uint64_t *hp = spb__h_hdr(spb__h_addr(w));
		uint64_t v = spb__h_peek(hp);
		if (v == (t ^ SPB_HDR_COPY)) { /* the mover's copy: it ends soon */
			backoff(&spins);
			continue;
		}
		if (v != t && v != (t ^ SPB_HDR_MARK)) {
			if (__atomic_load_n(&e->word, __ATOMIC_SEQ_CST) != w)
				continue; /* moved meanwhile */
			spb__handle_fault(why, h);
		}
		if (spb__h_pins(w))
			spb__handle_fault("spb_hfree(): handle is pinned", h);
		/* Scrubbed, the place answers for h no more and a move chosen
		 * there fails its CAS to COPY. */
		if (!spb__h_cas(hp, v, 0))
			continue; /* a move finished meanwhile, or a reader cancelled */
		/* h's block, ours now: a real acquire for ThreadSanitizer (the
		 * mover's store of the tag there happens before the free). */
		(void)__atomic_load_n(hp, __ATOMIC_ACQUIRE);
		if (v != t)
			spb__heap_count(COMPACT_CANCELLED, 1);
		/* FREE, and the index's next generation. Only a pin taken
		 * meanwhile (a call on h racing its free) can change it. */
		if (!__atomic_compare_exchange_n(&e->word, &w, spb__h_free_word(next_gen, 0), false,
						 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			spb__handle_fault("spb_hfree(): handle pinned or used during its free", h);
		spb_read_unlock();
		spb__free_ptr((char *)hp);
		spb__heap_count_one(HANDLE_FREE);
		hcache_put(spb__h_index(h));
		return;
	}
}

static void *pin(spb_handle_t h, const char *why)
{
	struct spb_hentry *e = entry_of(h, why);
	uint64_t t = spb__h_tag(h);
	for (;;) {
		uint64_t w = __atomic_load_n(&e->word, __ATOMIC_SEQ_CST);
		if ((w & SPB_HS_MASK) == SPB_HS_FREE)
			spb__handle_fault(why, h);
		if (spb__h_pins(w) == SPB_HS_PINS_MAX)
			spb__handle_fault("spb_hpin(): too many pins on one handle", h);
		if (!__atomic_compare_exchange_n(&e->word, &w, w + SPB_HS_PIN_ONE, false,
						 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			continue;
		/* Pinned: the place cannot be moved away now (the mover's final
		 * CAS wants no pins). Is it h's, and settled? */
		char *p = spb__h_addr(w);
		uint64_t *hp = spb__h_hdr(p);
		for (unsigned spins = 0;;) {
			uint64_t v = __atomic_load_n(hp, __ATOMIC_SEQ_CST);
			if (settle_hdr(hp, v, t))
				return p;
			if (v != (t ^ SPB_HDR_COPY) && v != (t ^ SPB_HDR_MARK))
				break;
			backoff(&spins); /* the mover sees the pin and reverts */
		}
		__atomic_fetch_sub(&e->word, SPB_HS_PIN_ONE, __ATOMIC_SEQ_CST);
		spb__handle_fault(why, h); /* the index names another handle */
	}
}

static void unpin(spb_handle_t h, const char *why)
{
	struct spb_hentry *e = entry_of(h, why);
	uint64_t t = spb__h_tag(h);
	uint64_t w = __atomic_load_n(&e->word, __ATOMIC_SEQ_CST);
	do {
		if ((w & SPB_HS_MASK) == SPB_HS_FREE)
			spb__handle_fault(why, h);
		if (!spb__h_pins(w)) {
			/* Not pinned: is it h's at all? */
			spb_read_lock();
			locate(h, why);
			spb_read_unlock();
			spb__handle_fault("spb_hunpin(): handle is not pinned", h);
		}
		/* Checked while still pinned: once the pins reach 0 the
		 * mover may take the place and free it. */
		uint64_t v = __atomic_load_n(spb__h_hdr(spb__h_addr(w)), __ATOMIC_SEQ_CST);
		if (v != t && v != (t ^ SPB_HDR_MARK) && v != (t ^ SPB_HDR_COPY))
			spb__handle_fault(why, h);
	} while (!__atomic_compare_exchange_n(&e->word, &w, w - SPB_HS_PIN_ONE, false,
					      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
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
	uint64_t w = __atomic_load_n(&e->word, __ATOMIC_SEQ_CST);
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
	/* The new header says COPY until the entry names it (the new block
	 * may be at the place the handle names: the inline spb_hget must not
	 * take it before), as the mover's does. */
	uint64_t t = spb__h_tag(h);
	__atomic_store_n((uint64_t *)base, t ^ SPB_HDR_COPY, __ATOMIC_SEQ_CST);
	memcpy(base + HDR, old, size < have ? size : have);
	uint64_t nw = (uint64_t)(uintptr_t)(base + HDR) | SPB_HS_NORMAL;
	if (!__atomic_compare_exchange_n(&e->word, &w, nw, false, __ATOMIC_SEQ_CST,
					 __ATOMIC_SEQ_CST)) {
		/* A pin taken since the look above (spb_hsize, spb_hpin on
		 * another thread): the object stays; EBUSY as promised. */
		__atomic_store_n((uint64_t *)base, 0, __ATOMIC_SEQ_CST);
		spb__free_ptr(base);
		spb_hunpin(h);
		errno = EBUSY;
		return -1;
	}
	__atomic_store_n((uint64_t *)base, t, __ATOMIC_SEQ_CST);
	/* The old place answers for h no more (a mover that chose it while
	 * the pin was being taken finds this and drops it). */
	__atomic_store_n(spb__h_hdr(old), 0, __ATOMIC_SEQ_CST);
	spb__free_ptr(old - HDR);
	return 0;
}
