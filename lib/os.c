/*
 * os.c — the only file that calls mmap, munmap, madvise, mbind, mlock,
 * memfd_secret, get_mempolicy and move_pages.
 *
 * The last three through libnuma's numaif wrappers: plain system calls,
 * no allocation (nothing of libnuma proper: its numa_* functions allocate).
 *
 * Each call passes through the fault injection seam first (spb__os_inject,
 * platform.h): it is counted by kind, and a test can make the kernel
 * "refuse" it: call number N of a kind, every call from N on, or the
 * older per-rung knobs. Nothing here allocates or takes a lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <numaif.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "platform.h"

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#ifndef MAP_HUGE_1GB
#define MAP_HUGE_1GB (30 << MAP_HUGE_SHIFT)
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif
#ifndef SYS_memfd_secret
#if defined(__x86_64__) || defined(__aarch64__) || defined(__riscv)
#define SYS_memfd_secret 447
#endif
#endif

struct spb_os_inject spb__os_inject;

const char *const spb__os_call_names[SPB_OS_NR_CALLS] = {
	[SPB_OS_MMAP_RESERVE] = "mmap-reserve",
	[SPB_OS_MMAP_HUGETLB_1G] = "mmap-hugetlb-1g",
	[SPB_OS_MMAP_HUGETLB_2M] = "mmap-hugetlb-2m",
	[SPB_OS_MMAP_FIXED] = "mmap-fixed",
	[SPB_OS_MMAP_META] = "mmap-meta",
	[SPB_OS_MUNMAP] = "munmap",
	[SPB_OS_MADV_HUGEPAGE] = "madv-hugepage",
	[SPB_OS_MADV_NOHUGEPAGE] = "madv-nohugepage",
	[SPB_OS_MADV_COLLAPSE] = "madv-collapse",
	[SPB_OS_MADV_DONTNEED] = "madv-dontneed",
	[SPB_OS_MBIND] = "mbind",
	[SPB_OS_SECRET] = "secret",
};

void spb__os_inject_reset(void)
{
	__atomic_store_n(&spb__os_inject.hook, NULL, __ATOMIC_RELEASE);
	memset(&spb__os_inject, 0, sizeof spb__os_inject);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* An old-style knob: > 0 fails that many calls, < 0 fails always. */
static bool legacy_knob(int *knob)
{
	if (!knob)
		return false;
	int v = __atomic_load_n(knob, __ATOMIC_RELAXED);
	while (v > 0 && !__atomic_compare_exchange_n(knob, &v, v - 1, false,
						     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	return v != 0;
}

/* The seam: true when this call is to fail (errno set to ENOMEM). */
static bool injected(enum spb_os_call kind, int *knob, void *addr, size_t size,
		     const void *caller)
{
	struct spb_os_fault *f = &spb__os_inject.call[kind];
	void (*hook)(enum spb_os_call, void *, size_t, const void *) =
		__atomic_load_n(&spb__os_inject.hook, __ATOMIC_ACQUIRE);
	if (SPB_UNLIKELY(hook != NULL))
		hook(kind, addr, size, caller);
	uint64_t n = __atomic_add_fetch(&f->calls, 1, __ATOMIC_RELAXED);
	uint64_t nth = __atomic_load_n(&f->fail_nth, __ATOMIC_RELAXED);
	uint64_t from = __atomic_load_n(&f->fail_from, __ATOMIC_RELAXED);
	bool fail = legacy_knob(knob) || (nth && n == nth) || (from && n >= from);
	if (SPB_LIKELY(!fail))
		return false;
	__atomic_add_fetch(&f->failed, 1, __ATOMIC_RELAXED);
	errno = ENOMEM;
	return true;
}

#define CALLER __builtin_return_address(0)

static void *map_anon_prot(void *hint, size_t size, int prot, int extra)
{
	void *p = mmap(hint, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void *map_anon(void *hint, size_t size, int extra)
{
	return map_anon_prot(hint, size, PROT_READ | PROT_WRITE, extra);
}

static bool do_unmap(void *p, size_t size, const void *caller)
{
	if (injected(SPB_OS_MUNMAP, NULL, p, size, caller))
		return false;
	return munmap(p, size) == 0;
}

static bool do_advise(enum spb_os_call kind, int *knob, void *p, size_t size,
		      int advice, const void *caller)
{
	if (injected(kind, knob, p, size, caller))
		return false;
	return madvise(p, size, advice) == 0;
}

static bool trim(void *p, size_t size, bool seam, const void *caller)
{
	return seam ? do_unmap(p, size, caller) : munmap(p, size) == 0;
}

/* Over-reserve by align, then trim both ends: one mmap, two munmaps, and
 * the result is aligned whatever the kernel picked. seam: through the
 * fault-injection seam (an SPB's reservation), or not (the handle arena's,
 * made once at engine start before any test can arm the seam: a refusal
 * only means no arena). */
static void *map_aligned(size_t size, size_t align, int prot, bool seam, const void *caller)
{
	if (size + align < size) {
		errno = ENOMEM;
		return NULL;
	}
	size_t span = size + align;
	if (seam && injected(SPB_OS_MMAP_RESERVE, &spb__os_inject.fail_reserve, NULL, span, caller))
		return NULL;
	char *p = map_anon_prot(NULL, span, prot, MAP_NORESERVE);
	if (!p)
		return NULL;
	uintptr_t a = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
	size_t head = a - (uintptr_t)p, tail = span - head - size;
	if (head && !trim(p, head, seam, caller))
		goto undo;
	if (tail && !trim((char *)a + size, tail, seam, caller)) {
		p = (char *)a;
		span = size + tail;
		goto undo;
	}
	return (void *)a;
undo:
	/* A trim refused (a VMA split over the map count): give the whole
	 * untouched range back rather than keep more than we account. */
	trim(p, span, seam, caller);
	errno = ENOMEM;
	return NULL;
}

__attribute__((noinline)) void *spb__os_reserve_aligned(size_t size, size_t align)
{
	return map_aligned(size, align, PROT_READ | PROT_WRITE, true, CALLER);
}

__attribute__((noinline)) void *spb__os_reserve_none(size_t size, size_t align)
{
	return map_aligned(size, align, PROT_NONE, false, CALLER);
}

__attribute__((noinline)) bool spb__os_unmap_readonly(void *p, size_t size)
{
	if (injected(SPB_OS_MUNMAP, NULL, p, size, CALLER))
		return false;
	if (map_anon_prot(p, size, PROT_READ, MAP_FIXED | MAP_NORESERVE) == p)
		return true;
	/* Some kernels unmap the old range before they refuse: never leave
	 * a hole in the arena (another mapping could land there). */
	unsigned char vec;
	if (mincore(p, SPB_PAGE_SIZE, &vec) != 0 && errno == ENOMEM &&
	    map_anon_prot(p, size, PROT_NONE, MAP_FIXED | MAP_NORESERVE) != p)
		spb__fatal("cannot map an arena slot back after a refused release", p);
	return false;
}

__attribute__((noinline)) bool spb__os_protect_rw(void *p, size_t size)
{
	if (injected(SPB_OS_MMAP_RESERVE, &spb__os_inject.fail_reserve, p, size, CALLER))
		return false;
	return mprotect(p, size, PROT_READ | PROT_WRITE) == 0;
}

__attribute__((noinline)) bool spb__os_protect_none(void *p, size_t size)
{
	return mprotect(p, size, PROT_NONE) == 0;
}

__attribute__((noinline)) void *spb__os_map_hugetlb_1g(void)
{
	if (injected(SPB_OS_MMAP_HUGETLB_1G, &spb__os_inject.fail_hugetlb_1g, NULL,
		     SPB_SPB_SIZE, CALLER))
		return NULL;
	return map_anon(NULL, SPB_SPB_SIZE, MAP_HUGETLB | MAP_HUGE_1GB);
}

__attribute__((noinline)) bool spb__os_map_hugetlb_2m_at(void *p)
{
	if (injected(SPB_OS_MMAP_HUGETLB_2M, &spb__os_inject.fail_hugetlb_2m, p,
		     SPB_PB_SIZE, CALLER))
		return false;
	/* Never MAP_FIXED|MAP_HUGETLB over p: when the pool is short the
	 * kernel has already unmapped the old range when it says ENOMEM, and
	 * leaves a hole where the pageblock was (seen on 6.18). Map the page
	 * anywhere (without MAP_NORESERVE the pool page is reserved now, so a
	 * short pool is an ENOMEM here rather than a SIGBUS at first touch),
	 * then move it over p. */
	void *q = map_anon(NULL, SPB_PB_SIZE, MAP_HUGETLB | MAP_HUGE_2MB);
	if (!q)
		return false;
	if (mremap(q, SPB_PB_SIZE, SPB_PB_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, p) == p)
		return true;
	munmap(q, SPB_PB_SIZE);
	/* mremap unmaps the target before it moves: never leave a hole. */
	unsigned char vec;
	if (mincore(p, SPB_PAGE_SIZE, &vec) != 0 && errno == ENOMEM &&
	    map_anon(p, SPB_PB_SIZE, MAP_FIXED | MAP_NORESERVE) != p)
		spb__fatal("cannot map a pageblock back after a refused hugetlb move", p);
	return false;
}

static bool remap_plain(void *p, size_t size, const void *caller)
{
	if (injected(SPB_OS_MMAP_FIXED, NULL, p, size, caller))
		return false;
	return map_anon(p, size, MAP_FIXED | MAP_NORESERVE) == p;
}

__attribute__((noinline)) bool spb__os_remap_plain_at(void *p, size_t size)
{
	return remap_plain(p, size, CALLER);
}

__attribute__((noinline)) bool spb__os_advise_hugepage(void *p, size_t size)
{
	return do_advise(SPB_OS_MADV_HUGEPAGE, &spb__os_inject.fail_thp, p, size,
			 MADV_HUGEPAGE, CALLER);
}

__attribute__((noinline)) bool spb__os_advise_nohugepage(void *p, size_t size)
{
	return do_advise(SPB_OS_MADV_NOHUGEPAGE, NULL, p, size, MADV_NOHUGEPAGE, CALLER);
}

__attribute__((noinline)) bool spb__os_collapse(void *p, size_t size)
{
	return do_advise(SPB_OS_MADV_COLLAPSE, &spb__os_inject.fail_collapse, p, size,
			 MADV_COLLAPSE, CALLER);
}

int spb__os_resident_pages(const void *p, size_t size)
{
	unsigned char vec[SPB_PAGES_PER_PB];
	size_t np = (size + SPB_PAGE_SIZE - 1) >> SPB_PAGE_SHIFT;
	if (np > SPB_PAGES_PER_PB || mincore((void *)(uintptr_t)p, size, vec) != 0)
		return -1;
	int n = 0;
	for (size_t i = 0; i < np; i++)
		n += vec[i] & 1;
	return n;
}

__attribute__((noinline)) bool spb__os_dontneed(void *p, size_t size)
{
	return do_advise(SPB_OS_MADV_DONTNEED, NULL, p, size, MADV_DONTNEED, CALLER);
}

__attribute__((noinline)) bool spb__os_unmap(void *p, size_t size)
{
	return do_unmap(p, size, CALLER);
}

__attribute__((noinline)) void *spb__os_meta_alloc(size_t size)
{
	const void *caller = CALLER;
	size = (size + SPB_PAGE_SIZE - 1) & ~(SPB_PAGE_SIZE - 1);
	if (injected(SPB_OS_MMAP_META, &spb__os_inject.fail_meta, NULL, size, caller))
		return NULL;
	void *p = map_anon(NULL, size, MAP_NORESERVE);
	/* Metadata is touched sparsely: keep it off huge pages so a 560 KiB
	 * descriptor costs only the pages it uses. Advice only: if refused,
	 * the metadata may cost a few huge pages, nothing else. */
	if (p)
		do_advise(SPB_OS_MADV_NOHUGEPAGE, NULL, p, size, MADV_NOHUGEPAGE, caller);
	return p;
}

__attribute__((noinline)) bool spb__os_meta_free(void *p, size_t size)
{
	size = (size + SPB_PAGE_SIZE - 1) & ~(SPB_PAGE_SIZE - 1);
	return do_unmap(p, size, CALLER);
}

__attribute__((noinline)) bool spb__os_meta_zero(void *p, size_t size)
{
	const void *caller = CALLER;
	size = (size + SPB_PAGE_SIZE - 1) & ~(SPB_PAGE_SIZE - 1);
	if (do_advise(SPB_OS_MADV_DONTNEED, NULL, p, size, MADV_DONTNEED, caller))
		return true;
	/* A fresh mapping over it reads as zero too (a concurrent stale
	 * reader sees the old or the new mapping, never a hole); as a last
	 * resort, zero it by hand (it then costs its pages). */
	if (remap_plain(p, size, caller))
		do_advise(SPB_OS_MADV_NOHUGEPAGE, NULL, p, size, MADV_NOHUGEPAGE, caller);
	else
		memset(p, 0, size);
	return false;
}

__attribute__((noinline)) bool spb__os_mbind(void *p, size_t size, int node)
{
	if (injected(SPB_OS_MBIND, NULL, p, size, CALLER))
		return false;
	if (node < 0 || node >= 64)
		return false;
	unsigned long mask = 1ul << node;
	/* Preferred, not bound: a full node spills instead of failing.
	 * maxnode is the mask's bits + 1: the kernel reads maxnode - 1 bits
	 * (with 64, node 63's bit was dropped and the empty mask taken as a
	 * local allocation, "bound"). */
	return mbind(p, size, MPOL_PREFERRED, &mask, 8 * sizeof mask + 1, 0u) == 0;
}

int spb__os_get_mempolicy(void)
{
	int mode = 0;
	if (get_mempolicy(&mode, NULL, 0, NULL, 0) != 0)
		return -1;
	return mode;
}

bool spb__os_page_nodes(void *const *pages, unsigned long n, int *status)
{
	return move_pages(0, n, (void **)(uintptr_t)pages, NULL, status, 0) == 0;
}

/* Move the mapping q (size bytes, set up) over p. mremap unmaps the target
 * before it moves: on a refusal, never leave a hole at p. */
static bool move_over(void *q, void *p, size_t size)
{
	if (mremap(q, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, p) == p)
		return true;
	munmap(q, size);
	unsigned char vec;
	if (mincore(p, SPB_PAGE_SIZE, &vec) != 0 && errno == ENOMEM &&
	    map_anon(p, size, MAP_FIXED | MAP_NORESERVE) != p)
		spb__fatal("cannot map a pageblock back after a refused secret move", p);
	return false;
}

/* Set once the kernel said it has no memfd_secret: not asked again. */
static int no_memfd_secret;

__attribute__((noinline)) bool spb__os_secret_memfd_at(void *p, size_t size)
{
#ifdef SYS_memfd_secret
	if (__atomic_load_n(&no_memfd_secret, __ATOMIC_RELAXED) ||
	    injected(SPB_OS_SECRET, NULL, p, size, CALLER))
		return false;
	int fd = (int)syscall(SYS_memfd_secret, (unsigned)O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOSYS)
			__atomic_store_n(&no_memfd_secret, 1, __ATOMIC_RELAXED);
		return false;
	}
	void *q = MAP_FAILED;
	if (ftruncate(fd, (off_t)size) == 0)
		/* Charged to RLIMIT_MEMLOCK (the mapping is VM_LOCKED). */
		q = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd); /* the mapping keeps the file */
	if (q == MAP_FAILED)
		return false;
	/* The kernel sets VM_DONTDUMP on secretmem already; say it anyway.
	 * DONTFORK: a MAP_SHARED mapping would be shared with a child. */
	if (madvise(q, size, MADV_DONTFORK) != 0 || madvise(q, size, MADV_DONTDUMP) != 0) {
		munmap(q, size);
		return false;
	}
	return move_over(q, p, size);
#else
	(void)p;
	(void)size;
	errno = ENOSYS;
	return false;
#endif
}

__attribute__((noinline)) bool spb__os_secret_anon_at(void *p, size_t size)
{
	if (injected(SPB_OS_SECRET, NULL, p, size, CALLER))
		return false;
	void *q = map_anon(NULL, size, 0);
	if (!q)
		return false;
	/* mlock: never swapped out (charged to RLIMIT_MEMLOCK); the rest
	 * keeps it out of core dumps and out of a child (WIPEONFORK would
	 * give a child zeros; DONTFORK gives it nothing, like memfd_secret). */
	/* The system call itself: a sanitizer runtime (ASan) intercepts
	 * mlock() and makes it a no-op. */
	if (syscall(SYS_mlock, q, size) != 0 || madvise(q, size, MADV_DONTDUMP) != 0 ||
	    madvise(q, size, MADV_WIPEONFORK) != 0 || madvise(q, size, MADV_DONTFORK) != 0) {
		munmap(q, size);
		return false;
	}
	return move_over(q, p, size);
}

void spb__os_secret_wipe(void *p, size_t size)
{
	unsigned char vec[SPB_PAGES_PER_PB];
	for (size_t off = 0; off < size; off += SPB_PB_SIZE) {
		char *c = (char *)p + off;
		size_t n = size - off < SPB_PB_SIZE ? size - off : SPB_PB_SIZE;
		size_t np = (n + SPB_PAGE_SIZE - 1) >> SPB_PAGE_SHIFT;
		if (mincore(c, n, vec) != 0) {
			memset(c, 0, n);
			continue;
		}
		for (size_t i = 0; i < np; i++)
			if (vec[i] & 1)
				memset(c + (i << SPB_PAGE_SHIFT), 0, SPB_PAGE_SIZE);
	}
	/* Not optimised away: the memory stays mapped and is read again. */
	__asm__ volatile("" : : "r"(p) : "memory");
}

uint64_t spb__os_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t spb__os_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The stats segment's mappings (statseg.c): the file fd shared, or, when
 * fd < 0, private zeroed memory (its staging copy). Outside the fault
 * injection seam, so a test that makes the OS refuse metadata is not
 * disturbed by the segment. */
void *spb__os_map_shared(int fd, size_t size)
{
	void *p = fd >= 0 ? mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
			  : map_anon(NULL, size, MAP_NORESERVE);
	return p == MAP_FAILED ? NULL : p;
}
