/*
 * platform.h — the platform layer: OS memory calls (os.c), the huge-page
 * backing ladder (backing.c), topology (topo.c), options (options.c),
 * fatal errors (error.c) and the small helpers every layer uses.
 * This layer calls only the kernel and libc functions that do not allocate.
 */
#ifndef SPB_PLATFORM_H
#define SPB_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPB_LIKELY(x) __builtin_expect(!!(x), 1)
#define SPB_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SPB_HIDDEN __attribute__((visibility("hidden")))
#define SPB_TLS __thread __attribute__((tls_model("initial-exec")))

#define SPB_PAGE_SHIFT 12
#define SPB_PAGE_SIZE ((size_t)1 << SPB_PAGE_SHIFT)
#define SPB_PB_SHIFT 21
#define SPB_PB_SIZE ((size_t)1 << SPB_PB_SHIFT)
#define SPB_SPB_SHIFT 30
#define SPB_SPB_SIZE ((size_t)1 << SPB_SPB_SHIFT)
#define SPB_PAGES_PER_PB 512
#define SPB_PB_PER_SPB 512

/* ---- os.c: the only caller of mmap/munmap/madvise/mbind ---- */

/*
 * Fault injection seam. Every call os.c makes to the kernel is of one of
 * these kinds, and passes the seam first: the seam counts it (calls, from
 * 1) and may make it fail as the kernel would (errno ENOMEM, the call not
 * made, so a refused munmap leaves the mapping and a refused MADV_DONTNEED
 * leaves the memory). Tests sweep them: fail call number N of a kind, or
 * every call from number N on.
 */
enum spb_os_call {
	SPB_OS_MMAP_RESERVE,    /* mmap NORESERVE: SPB data area, dedicated large mapping */
	SPB_OS_MMAP_HUGETLB_1G, /* mmap MAP_HUGETLB|MAP_HUGE_1GB: an SPB as one page */
	SPB_OS_MMAP_HUGETLB_2M, /* mmap MAP_FIXED|MAP_HUGETLB|MAP_HUGE_2MB over a pageblock */
	SPB_OS_MMAP_FIXED,      /* mmap MAP_FIXED plain: hugetlb pageblock release, re-zeroing */
	SPB_OS_MMAP_META,       /* mmap of metadata (descriptors, heaps, span pools) */
	SPB_OS_MUNMAP,          /* munmap: reservation trims, SPBs, large mappings */
	SPB_OS_MADV_HUGEPAGE,   /* madvise MADV_HUGEPAGE (the THP rung) */
	SPB_OS_MADV_NOHUGEPAGE, /* madvise MADV_NOHUGEPAGE (metadata, a subrelease) */
	SPB_OS_MADV_COLLAPSE,   /* madvise MADV_COLLAPSE */
	SPB_OS_MADV_DONTNEED,   /* madvise MADV_DONTNEED: releases, subreleases, descriptor zeroing */
	SPB_OS_MBIND,           /* mbind MPOL_PREFERRED: an SPB or large mapping to its node */
	SPB_OS_SECRET,          /* memfd_secret + mmap, or mlock: a pageblock made secret */
	SPB_OS_NR_CALLS
};
extern const char *const spb__os_call_names[SPB_OS_NR_CALLS] SPB_HIDDEN;

/* Per kind: the seam's count and its knobs (all updated atomically). */
struct spb_os_fault {
	uint64_t calls;     /* calls of this kind so far, failed or not */
	uint64_t fail_nth;  /* fail call number fail_nth (1-based); 0 = off */
	uint64_t fail_from; /* fail every call from number fail_from on; 0 = off */
	uint64_t failed;    /* calls the seam failed (any knob, old ones included) */
};

/* The older per-rung knobs still work: each counter > 0 fails that many
 * calls (then decrements); < 0 fails always. */
struct spb_os_inject {
	int fail_reserve;     /* plain SPB reservation / dedicated mapping */
	int fail_hugetlb_1g;  /* MAP_HUGETLB|MAP_HUGE_1GB */
	int fail_hugetlb_2m;  /* MAP_HUGETLB|MAP_HUGE_2MB */
	int fail_thp;         /* madvise(MADV_HUGEPAGE) */
	int fail_collapse;    /* madvise(MADV_COLLAPSE) */
	int fail_meta;        /* metadata mappings */
	struct spb_os_fault call[SPB_OS_NR_CALLS];
	/* Test-only: run before each call passes the seam, with the kind, the
	 * range (addr NULL for a new mapping), and the return address into the
	 * caller of os.c (tells call sites apart). May run with a zone lock
	 * held (a pageblock claim maps hugetlb under it). */
	void (*hook)(enum spb_os_call kind, void *addr, size_t size, const void *caller);
	/* Test-only: issue mbind even on a single-node machine, so the
	 * binding call site can be exercised everywhere. */
	bool mbind_always;
	/* Test-only: hwloc's discovery fails (hwloc falls back to its own
	 * discovery on a bad HWLOC_SYNTHETIC, so it cannot be made to fail
	 * from the environment): the sysfs topology stays. */
	bool hwloc_fail;
};
extern struct spb_os_inject spb__os_inject SPB_HIDDEN;
/* Zero every knob, count and the hook. */
void spb__os_inject_reset(void) SPB_HIDDEN;

/* Reserve size bytes of address space aligned to align (a power of two
 * >= 4 KiB), readable and writable, MAP_NORESERVE. NULL (ENOMEM) on
 * failure, nothing left mapped (unless the kernel also refuses to unmap
 * the over-reservation, then that untouched range stays). */
void *spb__os_reserve_aligned(size_t size, size_t align) SPB_HIDDEN;
/* Address space only (PROT_NONE, nothing committed): the handle arena
 * (arena.c). Not through the fault-injection seam. */
void *spb__os_reserve_none(size_t size, size_t align) SPB_HIDDEN;
bool spb__os_protect_none(void *p, size_t size) SPB_HIDDEN;
/* Read-write again (through the seam, as an SPB reservation). */
bool spb__os_protect_rw(void *p, size_t size) SPB_HIDDEN;
/* Give [p, p+size) back but keep the range readable (a fresh read-only
 * mapping over it, MAP_FIXED: there is never a moment it is unmapped). */
bool spb__os_unmap_readonly(void *p, size_t size) SPB_HIDDEN;
/* arena.c: the handle arena. Reserved at engine start (or not); an SPB's
 * 1 GiB from a free slot, mapped read-write (NULL: none free, or *refused
 * when the mapping was); back as read-only zeros (false: refused). */
void spb__arena_init(void) SPB_HIDDEN;
bool spb__arena_contains(uintptr_t p) SPB_HIDDEN;
void *spb__arena_take(bool *refused) SPB_HIDDEN;
bool spb__arena_give_back(void *base) SPB_HIDDEN;
/* No lock held: released slots to PROT_NONE after a grace period
 * (spb__arena_sync_hook; only if may_wait once a reader registered);
 * returns slots done. */
unsigned spb__arena_quiesce(bool may_wait) SPB_HIDDEN;
void spb__arena_atfork_child(void) SPB_HIDDEN;
extern bool (*spb__arena_sync_hook)(void) SPB_HIDDEN;
/* One 1 GiB hugetlb page (it is 1 GiB-aligned by the kernel). */
void *spb__os_map_hugetlb_1g(void) SPB_HIDDEN;
/* Replace [p, p+2 MiB) with a 2 MiB hugetlb page (MAP_FIXED). On failure
 * the old mapping stays. */
bool spb__os_map_hugetlb_2m_at(void *p) SPB_HIDDEN;
/* Replace [p, p+size) with fresh plain anonymous memory (MAP_FIXED). */
bool spb__os_remap_plain_at(void *p, size_t size) SPB_HIDDEN;
bool spb__os_advise_hugepage(void *p, size_t size) SPB_HIDDEN;
bool spb__os_advise_nohugepage(void *p, size_t size) SPB_HIDDEN;
bool spb__os_collapse(void *p, size_t size) SPB_HIDDEN;
/* Pages of [p, p+size) (at most a pageblock) resident (mincore), or -1. */
int spb__os_resident_pages(const void *p, size_t size) SPB_HIDDEN;
/* Give the memory back; it reads as zero afterwards. False: it stays. */
bool spb__os_dontneed(void *p, size_t size) SPB_HIDDEN;
/* False: the kernel refused, the range is still mapped. */
bool spb__os_unmap(void *p, size_t size) SPB_HIDDEN;
/* Zeroed memory for metadata, never handed to the program. */
void *spb__os_meta_alloc(size_t size) SPB_HIDDEN;
bool spb__os_meta_free(void *p, size_t size) SPB_HIDDEN;
/* Make metadata read as zero again, giving its pages back: MADV_DONTNEED,
 * else a fresh mapping over it, else (never failing) memset. Returns false
 * when the first way was refused (the caller counts it). */
bool spb__os_meta_zero(void *p, size_t size) SPB_HIDDEN;
/* mbind(MPOL_PREFERRED, node) of [p, p+size) (libnuma's numaif wrapper:
 * a system call, no allocation); false when refused. */
bool spb__os_mbind(void *p, size_t size, int node) SPB_HIDDEN;
/* The calling thread's memory policy mode (get_mempolicy), or -1. */
int spb__os_get_mempolicy(void) SPB_HIDDEN;
/* The node of each of n pages (move_pages with nodes NULL: a query, it
 * moves nothing): status[i] is a node, or a negative errno (-ENOENT: not
 * faulted in). False when the call failed. */
bool spb__os_page_nodes(void *const *pages, unsigned long n, int *status) SPB_HIDDEN;
/* Secret memory (secret.c via backing.c). Both map the new memory away
 * from p first and move it over p only once it is set up (mremap), so a
 * refusal leaves the old mapping as it was. Both ranges are MADV_DONTFORK
 * (a child gets a hole there, which it maps back: secret.c) and
 * MADV_DONTDUMP. */
/* memfd_secret(2): the pages leave the kernel's direct map; false when
 * the kernel has no memfd_secret or refuses it (RLIMIT_MEMLOCK). */
bool spb__os_secret_memfd_at(void *p, size_t size) SPB_HIDDEN;
/* Anonymous memory, mlocked (never swapped), MADV_WIPEONFORK; false when
 * mlock is refused (RLIMIT_MEMLOCK). */
bool spb__os_secret_anon_at(void *p, size_t size) SPB_HIDDEN;
/* Zero [p, p+size): only its resident pages (mincore), so a wipe does not
 * fault in (and a memfd_secret wipe does not allocate) untouched pages. */
void spb__os_secret_wipe(void *p, size_t size) SPB_HIDDEN;
/* Milliseconds on CLOCK_MONOTONIC_COARSE (vDSO, no syscall). */
uint64_t spb__os_now_ms(void) SPB_HIDDEN;
uint64_t spb__os_now_ns(void) SPB_HIDDEN; /* CLOCK_MONOTONIC, precise */
/* thread.c: a detached thread with every signal blocked (may malloc). */
bool spb__thread_spawn(void *(*fn)(void *), void *arg) SPB_HIDDEN;

/* ---- backing.c: the huge-page ladder ---- */
/* How a pageblock is made secret (struct spb_pageblock.secret). LOST: in
 * a forked child, a pageblock the parent had made secret (not inherited);
 * zeroed memory is mapped there and it is never allocated from again. */
enum spb_secret_backing { SPB_SECRET_NONE = 0, SPB_SECRET_MEMFD, SPB_SECRET_ANON,
			  SPB_SECRET_LOST };
enum spb_rung {
	SPB_RUNG_NONE = 0,   /* not backed yet / released */
	SPB_RUNG_HUGETLB_1G, /* the whole SPB is one 1 GiB page */
	SPB_RUNG_HUGETLB_2M, /* this pageblock is one 2 MiB hugetlb page */
	SPB_RUNG_THP,        /* MADV_HUGEPAGE: the kernel faults 2 MiB pages */
	SPB_RUNG_4K,         /* plain pages */
	SPB_NR_RUNGS
};
extern const char *const spb__rung_names[SPB_NR_RUNGS] SPB_HIDDEN;

/* Reserve one SPB's data area, best rung first. Returns the base (1 GiB
 * aligned) and the SPB-level rung in *rung (1G, THP or 4K), or NULL. */
void *spb__backing_reserve_spb(uint8_t *rung, uint64_t *counters) SPB_HIDDEN;
/* Back a pageblock of an SPB whose rung is spb_rung before it is handed
 * out; returns the pageblock's rung. */
uint8_t spb__backing_claim_pb(void *pb, uint8_t spb_rung,
			      uint64_t *counters) SPB_HIDDEN;
/* Give a free pageblock's memory back to the OS; returns the rung it has
 * afterwards (NONE), or its old rung if it cannot be released (1 GiB).
 * secret: it is secret memory (enum spb_secret_backing): wiped first,
 * then plain memory mapped over it. */
uint8_t spb__backing_release_pb(void *pb, uint8_t rung, uint8_t spb_rung,
				uint8_t secret, uint64_t *counters) SPB_HIDDEN;
/* Make a pageblock secret: memfd_secret when SPBMALLOC_SECRET_MEMFD allows
 * and the kernel has it, else anonymous mlocked memory. Returns the
 * backing (SPB_SECRET_MEMFD or _ANON; counted), or SPB_SECRET_NONE when
 * both were refused (counted; the old mapping stays). */
uint8_t spb__backing_secret_pb(void *pb, uint64_t *counters) SPB_HIDDEN;
/* Plain memory mapped over a pageblock that was hugetlb or secret (or, in
 * a forked child, a hole where the parent's secret pageblock was), with
 * the SPB's MADV_HUGEPAGE again; if the kernel refuses that advice
 * (counted), the next claim advises once more. False: the mapping was
 * refused. */
bool spb__backing_plain_pb(void *pb, uint8_t spb_rung, uint64_t *counters) SPB_HIDDEN;
/* A free secret pageblock becomes plain memory (another class claims it):
 * wiped, plain memory mapped over it. False: refused, it stays secret. */
bool spb__backing_unsecret_pb(void *pb, uint8_t spb_rung, uint64_t *counters) SPB_HIDDEN;
/* False when the kernel refused (the data area is still mapped). */
bool spb__backing_unmap_spb(void *base, uint8_t rung) SPB_HIDDEN;

/* ---- topo.c, hwtopo.c: topology (the only places that ask about NUMA) ---- */
#define SPB_TOPO_MAX_NODES 64   /* = SPB_NR_ZONES_MAX: a zone per node */
#define SPB_TOPO_MAX_CPUS 1024
#define SPB_TOPO_NO_NODE 0xffu
enum spb_topo_source { SPB_TOPO_NONE = 0, SPB_TOPO_SYSFS, SPB_TOPO_HWLOC };
/* The machine, in a fixed-size structure that never allocates: filled
 * once from sysfs (at engine init), then once from hwloc (hwtopo.c, from
 * the background thread), and published by pointer. Counts of 0 are
 * unknown. Nodes are numbered by their OS index (hwloc's os_index, the
 * kernel's node number): zone i serves node i. */
struct spb_topo {
	uint32_t source;        /* enum spb_topo_source */
	uint32_t nr_nodes;      /* highest node number + 1 */
	uint32_t nr_packages, nr_cores, nr_pus;
	uint32_t nr_cpus;       /* entries of cpu_node: highest CPU number + 1 */
	uint32_t synthetic;     /* hwloc read HWLOC_SYNTHETIC / HWLOC_XMLFILE:
				   not this machine (its nodes need not exist) */
	uint32_t cache_line;    /* bytes */
	uint64_t cache_l1d, cache_l2, cache_l3; /* bytes, of one instance */
	uint64_t node_mem[SPB_TOPO_MAX_NODES];  /* bytes local to each node */
	uint8_t dist[SPB_TOPO_MAX_NODES][SPB_TOPO_MAX_NODES]; /* 0: unknown */
	uint8_t cpu_node[SPB_TOPO_MAX_CPUS];    /* SPB_TOPO_NO_NODE: none */
};
/* The topology in use: hwloc's once it has run, else sysfs's (read on the
 * first call: open/read only, no allocation). Never NULL. */
const struct spb_topo *spb__topo_get(void) SPB_HIDDEN;
int spb__topo_nr_nodes(void) SPB_HIDDEN;
/* The NUMA node of the calling thread's CPU (sched_getcpu, then the
 * topology's CPU -> node map: hwloc's on a synthetic topology, so a test
 * can present nodes the kernel does not have); 0 when unknown. */
int spb__topo_current_node(void) SPB_HIDDEN;
/* Run hwloc once (SPBMALLOC_HWLOC=1), where no allocator lock is held
 * and the allocator serves its own mallocs (the background thread, or a
 * test): on success its topology replaces sysfs's. Returns the source in
 * use afterwards. A second call, or a call from inside hwloc (the
 * thread-local guard), returns at once. */
int spb__topo_discover(void) SPB_HIDDEN;
/* In a forked child: a discovery the parent's background thread had
 * under way is not finished here (sysfs stays). */
void spb__topo_atfork_child(void) SPB_HIDDEN;
/* hwtopo.c: the one caller of hwloc. Fills *t; false when hwloc failed. */
bool spb__hwtopo_load(struct spb_topo *t) SPB_HIDDEN;
/* The memory policy the process was started with (get_mempolicy at
 * engine init: MPOL_DEFAULT 0, PREFERRED 1, BIND 2, INTERLEAVE 3, LOCAL 4,
 * ...); -1 when it could not be read. */
int spb__topo_policy(void) SPB_HIDDEN;
enum spb_bind {
	SPB_BIND_SKIPPED,  /* one node (nothing to choose) or no node */
	SPB_BIND_DONE,     /* mbind(MPOL_PREFERRED, node) */
	SPB_BIND_KEPT,     /* the process runs under a policy of its own
			      (numactl --interleave, --membind, ...): kept */
	SPB_BIND_REFUSED,  /* the kernel said no (a node it has not: the
			      memory is used unbound) */
};
/* Prefer node for [p, p+size), unless the process policy says otherwise;
 * the caller counts the outcome. */
enum spb_bind spb__topo_bind(void *p, size_t size, int node) SPB_HIDDEN;

/* ---- options.c ---- */
enum spb_option {
#define SPB_OPTION(e, env, def, lo, hi, desc) e,
#include "options.def"
#undef SPB_OPTION
	SPB_NR_OPTIONS
};
extern long spb__options[SPB_NR_OPTIONS] SPB_HIDDEN;
/* Read SPBMALLOC_* once (idempotent, safe before main). */
void spb__options_init(void) SPB_HIDDEN;
/* Options are read where they are used, each time (spb_ctl, ctl.c, may
 * change the writable ones while threads run: ctl.def says which), so
 * every read and write is atomic (a plain load on x86-64). */
static inline long spb__opt(enum spb_option o)
{
	return __atomic_load_n(&spb__options[o], __ATOMIC_RELAXED);
}
/* spb_ctl and tests change options at run time through this. */
void spb__option_set(enum spb_option o, long v) SPB_HIDDEN;

/* ---- error.c: never allocates ---- */
/* "spbmalloc: <what>: <addr>" on stderr, then abort(). */
__attribute__((noreturn, cold)) void spb__fatal(const char *what,
						const void *addr) SPB_HIDDEN;
/* Run by spb__fatal before abort() (async-signal-safe work only): the
 * stats segment removes its file. */
extern void (*spb__fatal_hook)(void) SPB_HIDDEN;
__attribute__((cold)) void spb__warn(const char *a, const char *b,
				     const char *c) SPB_HIDDEN;
/* Append decimal / hex to buf (no allocation, no stdio). */
size_t spb__fmt_u64(char *buf, uint64_t v) SPB_HIDDEN;
size_t spb__fmt_hex(char *buf, uint64_t v) SPB_HIDDEN;
/* Append s to buf[len..cap); returns the new length (truncates). */
size_t spb__fmt_str(char *buf, size_t len, size_t cap, const char *s) SPB_HIDDEN;

/* ---- bitmap.c: 512-bit maps (pages of a pageblock, pageblocks of an SPB) ---- */
#define SPB_MAP_WORDS 8
typedef struct spb_map512 {
	uint64_t w[SPB_MAP_WORDS];
} spb_map512_t;
void spb__map_set_range(spb_map512_t *m, unsigned start, unsigned n) SPB_HIDDEN;
void spb__map_clear_range(spb_map512_t *m, unsigned start, unsigned n) SPB_HIDDEN;
bool spb__map_range_all_set(const spb_map512_t *m, unsigned start,
			    unsigned n) SPB_HIDDEN;
bool spb__map_range_any_set(const spb_map512_t *m, unsigned start,
			    unsigned n) SPB_HIDDEN;
/* First index i, a multiple of align, with bits [i, i+n) all set; -1 if none. */
int spb__map_find_run(const spb_map512_t *m, unsigned n, unsigned align) SPB_HIDDEN;
/* Length of the longest run of set bits. */
unsigned spb__map_longest_run(const spb_map512_t *m) SPB_HIDDEN;
/* Set bits in [start, start+n). */
unsigned spb__map_count_range(const spb_map512_t *m, unsigned start, unsigned n) SPB_HIDDEN;
/* The first run of set bits at or after *pos: returns its start (and sets
 * *pos past its end), or 512 when there is none. */
unsigned spb__map_next_run(const spb_map512_t *m, unsigned *pos) SPB_HIDDEN;
static inline bool spb__map_test(const spb_map512_t *m, unsigned i)
{
	return (m->w[i >> 6] >> (i & 63)) & 1;
}

/* ---- intrusive doubly linked lists ---- */
struct spb_link {
	struct spb_link *prev, *next;
};
static inline void spb__list_init(struct spb_link *h) { h->prev = h->next = h; }
static inline bool spb__list_empty(const struct spb_link *h) { return h->next == h; }
static inline bool spb__list_linked(const struct spb_link *n) { return n->next != NULL; }
static inline void spb__list_add_tail(struct spb_link *h, struct spb_link *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}
static inline void spb__list_add_head(struct spb_link *h, struct spb_link *n)
{
	n->next = h->next;
	n->prev = h;
	h->next->prev = n;
	h->next = n;
}
static inline void spb__list_del(struct spb_link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
}
#define spb__container_of(p, type, member) \
	((type *)((char *)(p) - __builtin_offsetof(type, member)))

#endif
