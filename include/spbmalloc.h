/*
 * spbmalloc.h — the public spb_* API of spbmalloc.
 *
 * spbmalloc keeps data of different lifetimes in different 2 MiB pageblocks
 * of 1 GiB superpageblocks (SPBs), so whole huge pages stay either full or
 * empty. Plain malloc() memory is UNMOVABLE; the spb_* calls let a program
 * say more. See README.md for the concepts and the SPBMALLOC_* settings.
 */
#ifndef SPBMALLOC_H
#define SPBMALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Lifetime classes (the kernel's migratetypes). A pageblock holds one. */
typedef enum spb_class {
	SPB_MOVABLE = 0,     /* objects behind handles, relocatable */
	SPB_UNMOVABLE = 1,   /* plain pointers: the malloc default */
	SPB_RECLAIMABLE = 2, /* caches the program can drop on request */
	SPB_SECRET = 3,      /* secret memory: spb_secret_alloc */
	SPB_NR_CLASSES = 4
} spb_class_t;

/* Request flags. */
#define SPB_F_OPTIONAL 0x1u /* caller has a cheap fallback: refuse rather
			       than taint a clean SPB (counted) */
#define SPB_F_ZERO 0x2u     /* memory must read as zero */

/* Page-granular allocation straight from the SPB engine: npages of 4 KiB
 * (up to a pageblock) in a pageblock of class cls, or whole pageblocks for
 * larger sizes, or a dedicated mapping over 1 GiB. align is a power of two
 * (0 = natural: 4 KiB for page runs, 2 MiB for whole pageblocks).
 * Returns NULL with errno ENOMEM when the OS refuses, or with errno EAGAIN
 * when SPB_F_OPTIONAL refused to taint a clean SPB. */
void *spb_pages_alloc(size_t bytes, size_t align, spb_class_t cls,
		      unsigned flags);
/* Free what spb_pages_alloc returned. A pointer that is not the start of a
 * live allocation ends the process with a one-line diagnosis. */
void spb_pages_free(void *p);
/* Usable size of an spb_pages_alloc allocation (0 for a foreign pointer). */
size_t spb_pages_usable_size(const void *p);
/* The lifetime class of the pageblock holding p (any pointer into memory
 * spbmalloc handed out), or -1 when p is not in a pageblock of a class. */
int spb_class_of(const void *p);

/* Counters: the list in spbmalloc_counters.def, summed over zones. */
size_t spb_counter_count(void);
const char *spb_counter_name(size_t idx);
const char *spb_counter_desc(size_t idx);
uint64_t spb_counter_value(size_t idx);
/* Value of the counter with this name, or UINT64_MAX if there is none. */
uint64_t spb_counter_get(const char *name);

/* Run the decay now: release free pageblocks and unmap empty SPBs whose
 * delay has passed. Returns ms until the next release is due (UINT64_MAX if
 * nothing is pending). A background thread calls this; so can a program. */
uint64_t spb_decay(void);

/* ---- the malloc layer ---- */

/* malloc() in a pageblock of lifetime class cls (SPB_UNMOVABLE,
 * SPB_RECLAIMABLE or SPB_SECRET; SPB_MOVABLE objects live behind handles:
 * EINVAL). The result is freed with free(). flags:
 * SPB_F_ZERO zeroes; SPB_F_OPTIONAL lets the allocator refuse (NULL,
 * EAGAIN) rather than taint a clean SPB. */
void *spb_malloc_class(size_t size, spb_class_t cls, unsigned flags);
/* The class plain malloc() uses in the calling thread (default
 * SPB_UNMOVABLE; SPB_RECLAIMABLE may be set, other classes give EINVAL).
 * Returns 0, or -1 with errno EINVAL/ENOMEM. */
int spb_set_thread_class(spb_class_t cls);
spb_class_t spb_thread_class(void);
/* Give every free pageblock and empty SPB back to the OS now, whatever the
 * decay delay, and the free pages inside pageblocks that are in use (which
 * splits their huge pages), and collect what exited threads left. Returns
 * pageblocks released plus SPBs unmapped. (malloc_trim() calls this.) */
size_t spb_trim(void);

/* ---- secret memory (README, "Secret memory") ----
 * size bytes (zeroed) in pageblocks of class SPB_SECRET only: memory
 * backed by memfd_secret(2) where the kernel has it (out of the kernel's
 * direct map: not readable through /proc/PID/mem, not even by root), else
 * by anonymous memory that is mlocked, MADV_DONTDUMP and MADV_WIPEONFORK.
 * Never in a core dump, never inherited by a forked child (an inherited
 * pointer reads zero there; freeing it is ignored), wiped when freed.
 * NULL with ENOMEM when no pageblock could be made secret (RLIMIT_MEMLOCK,
 * or no room under SPBMALLOC_MAX_SPBS) or size is over 1 GiB. realloc()
 * of a secret block gives a secret block. */
void *spb_secret_alloc(size_t size);
/* Wipe and free. free() does the same; spb_secret_free of a pointer that
 * is not secret memory ends the process with one line. */
void spb_secret_free(void *p);

/* ---- movable objects behind handles ----
 * A handle names a MOVABLE object that the allocator may relocate to
 * compact memory. Its address is good only inside a read section
 * (spb_hget) or while pinned (spb_hpin). A stale handle (freed, or never
 * allocated) passed to any call ends the process with one line naming it.
 * The compaction thread (spb-compact) moves them in the background (README,
 * Status and "Compaction"). */
typedef uint64_t spb_handle_t; /* 0 is never a valid handle */
/* A new object of size bytes (SPB_F_ZERO: zeroed); 0 and errno on failure. */
spb_handle_t spb_halloc(size_t size, unsigned flags);
/* Free the object; spb_hfree(0) does nothing. Freeing a pinned handle is
 * an error (the process ends). */
void spb_hfree(spb_handle_t h);
/* Resize; the handle stays the same. 0, or -1 and errno (ENOMEM; EBUSY
 * while the handle is pinned). */
int spb_hrealloc(spb_handle_t h, size_t size);
/* Usable size of the object. */
size_t spb_hsize(spb_handle_t h);
/* A read section (liburcu, memb flavour): addresses from spb_hget stay
 * good until the matching spb_read_unlock. Sections nest. Reads and writes
 * through such an address are safe while the compactor runs. */
void spb_read_lock(void);
void spb_read_unlock(void);
/* The object's address, valid until spb_read_unlock(). Inline below:
 * (spb_hget)(h) or &spb_hget is the same as a call. */
void *spb_hget(spb_handle_t h);
/* The object's address, valid (and the object never moved) until the
 * matching spb_hunpin(): for long access, system calls, and code that
 * knows nothing of handles. Pins nest (up to 65535). */
void *spb_hpin(spb_handle_t h);
void spb_hunpin(spb_handle_t h);
/* spb_hget's common path, inline. A handle names its object's place (the
 * header's offset in the handle arena, lib/arena.c) as well as its table
 * entry; the header at that place holds the handle (keyed). One load and
 * a compare, and the address is the handle's own arithmetic: a chase
 * through handles waits on the same loads as a chase through pointers.
 * Anything else (moved since, being moved, outside the arena, stale) goes
 * to spb__hget_slow and the table. Internal names, here for the inline
 * only; define SPB_NO_INLINE_HGET for a plain call. */
/* The header load may read a place the object left, reused since: its
 * value is only compared (a keyed tag does not come about by chance).
 * ThreadSanitizer would call that a race, and would not see the
 * acquire a reader needs after a move was undone: in a build with it,
 * spb_hget is the out-of-line call, which reads the place speculatively
 * and then again with an acquire. */
#if defined(__SANITIZE_THREAD__)
#define SPB__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SPB__TSAN 1
#endif
#endif
#define SPB_HANDLE_MAX_PUBLIC (1u << 26)
#define SPB_H_PLACE_MASK_PUBLIC 0x7fffffff0ull /* bits 4-34: a byte offset */
extern uintptr_t spb__harena16; /* fixed before the first handle */
extern uint64_t spb__hmask;
extern uint64_t spb__hkey;
extern uint8_t spb__hlive[32]; /* the arena's 1 GiB slots that can be read */
void *spb__hget_slow(spb_handle_t h);
static inline void *spb__hget_inline(spb_handle_t h)
{
#ifndef SPB__TSAN
	char *a = (char *)spb__harena16 + (h & spb__hmask);
	if (__builtin_expect(spb__hlive[(h & spb__hmask) >> 30] != 0, 1) &&
	    __builtin_expect(__atomic_load_n((const uint64_t *)(void *)(a - 16), __ATOMIC_RELAXED) ==
				     (h ^ spb__hkey), 1))
		return a;
#endif
	return spb__hget_slow(h);
}
#ifndef SPB_NO_INLINE_HGET
#define spb_hget(h) spb__hget_inline(h)
#endif
/* Compact now, synchronously, on the calling thread: move the handle
 * objects of spans at most half live into denser places. Returns bytes
 * moved. flags: 0. Inside a read section it cannot wait for the grace
 * period: 0 with errno EDEADLK. Objects of 2 MiB and more move only out
 * of an SPB that can then go back (drained) or out of a tainted one. */
size_t spb_compact(unsigned flags);

/* Cooperative defragmentation for plain pointers (programs that own their
 * pointers and can rewrite them, like Redis's activedefrag).
 * spb_defrag_hint: 1 if p is a live small block in a span at most half
 * live that this thread does not allocate from (moving it lets that span
 * drain and go back), else 0 (any pointer may be asked).
 * spb_defrag_move: a copy of p's block (same size and lifetime class) in
 * the place this thread allocates from, p freed; never the same span:
 * NULL with EAGAIN then (p kept), EINVAL if p is no live small block. */
int spb_defrag_hint(const void *p);
void *spb_defrag_move(void *p);

/* ---- reclaimable memory: shrinkers ----
 * A program keeps a cache it can rebuild (parsed records, decoded pages) in
 * RECLAIMABLE memory (spb_malloc_class(size, SPB_RECLAIMABLE, 0), or plain
 * malloc after spb_set_thread_class(SPB_RECLAIMABLE)) and registers a
 * shrinker: the allocator calls it when that memory stands in the way of
 * non-movable demand (seed 003's triggers: a claim about to taint a clean
 * SPB, tainted SPBs below their reserve, a tainted SPB running low; and
 * after each evacuation pass of the compactor) and under the system's
 * memory pressure (PSI, memory.high).
 * count(ctx): how many objects the cache could free now (0: skip it).
 * scan(ctx, nr_to_scan, priority): free up to nr_to_scan of them (its
 * least valuable first) and return how many it freed. priority runs from
 * 3 (gentlest: about 1/64 of the cache) down to 0 (all of it).
 * Both run on the allocator's thread "spb-shrink" (or on the caller of
 * spb_shrink), one call at a time, with none of the allocator's locks held:
 * they may call malloc, free and the spb_* calls (not spb_shrink). Take
 * your own cache's lock inside them. A pass stops once a pageblock's worth
 * of RECLAIMABLE memory has come free or no shrinker freed anything. */
typedef size_t (*spb_shrink_scan_fn)(void *ctx, size_t nr_to_scan, int priority);
typedef size_t (*spb_shrink_count_fn)(void *ctx);
/* Returns an id > 0, or -1 with errno EINVAL (a NULL callback) or ENOSPC
 * (64 registered already), EAGAIN (the thread could not be started). */
int spb_shrinker_register(spb_shrink_scan_fn scan, spb_shrink_count_fn count, void *ctx);
/* 0, or -1 with EINVAL (not a registered id). When it returns, no call of
 * that shrinker runs or will run (it waits for one in flight, unless it
 * is called from inside that very call), so ctx may be freed. */
int spb_shrinker_unregister(int id);
/* Run every shrinker now, on the calling thread, from the gentlest priority
 * to a full scan (flags 0) or a full scan at once (SPB_SHRINK_ALL). Returns
 * objects freed; 0 with errno EDEADLK when called from a shrinker. */
#define SPB_SHRINK_ALL 0x1u
size_t spb_shrink(unsigned flags);

/* ---- run-time control (README, "Run-time control") ----
 * In the manner of jemalloc's mallctl. name: a setting ("opt.decay_ms"),
 * a counter ("stats.<counter name>", summed like spb_counter_value), an
 * engine figure ("engine.rss_bytes") or an action ("trim", "compact",
 * "shrink", "thread.flush", "stats.publish"); lib/ctl.def lists them.
 * Every value is 8 bytes (long for settings, uint64_t otherwise).
 * oldp/oldlenp: when oldp is given, *oldlenp must be 8 and *oldp gets the
 * value (before the write, for a write; an action's result); *oldlenp is
 * set to 8 (oldp NULL: a size query). newp/newlen: the new value of a
 * writable setting (newlen 8); NULL and 0 to read or to run an action.
 * Returns 0, or -1 with errno ENOENT (no such name), EINVAL (a size, a
 * value outside the setting's range, a value given to an action), EPERM
 * (a read-only name written), EDEADLK (compact inside a read section,
 * shrink from a shrinker); a refusal changes nothing and prints one
 * warning line on stderr. Safe while other threads run. */
int spb_ctl(const char *name, void *oldp, size_t *oldlenp, const void *newp,
	    size_t newlen);
/* The names spb_ctl knows: idx from 0 to spb_ctl_count() - 1 (settings,
 * figures, actions, then the counters); NULL past the end. */
size_t spb_ctl_count(void);
const char *spb_ctl_name(size_t idx);
/* 1 if name is a setting spb_ctl may write, else 0. */
int spb_ctl_writable(const char *name);

#ifdef __cplusplus
}
#endif
#endif
