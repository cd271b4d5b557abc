/*
 * os.c — the only file that calls mmap, munmap and madvise.
 *
 * Each call passes through spb__os_inject first, the seam through which a
 * test makes the kernel "refuse" a rung of the backing ladder or a
 * reservation. Nothing here allocates or takes a lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>
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

struct spb_os_inject spb__os_inject;

/* True when the test seam says this call fails (errno set to ENOMEM). */
static bool injected(int *knob)
{
	int v = __atomic_load_n(knob, __ATOMIC_RELAXED);
	if (v == 0)
		return false;
	if (v > 0)
		__atomic_fetch_sub(knob, 1, __ATOMIC_RELAXED);
	errno = ENOMEM;
	return true;
}

static void *map_anon(void *hint, size_t size, int extra)
{
	void *p = mmap(hint, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void *spb__os_reserve_aligned(size_t size, size_t align)
{
	if (injected(&spb__os_inject.fail_reserve))
		return NULL;
	if (size + align < size)
		return NULL;
	/* Over-reserve by align, then trim both ends: one mmap, two munmaps,
	 * and the result is aligned whatever the kernel picked. */
	size_t span = size + align;
	char *p = map_anon(NULL, span, MAP_NORESERVE);
	if (!p)
		return NULL;
	uintptr_t a = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
	size_t head = a - (uintptr_t)p, tail = span - head - size;
	if (head)
		munmap(p, head);
	if (tail)
		munmap((char *)a + size, tail);
	return (void *)a;
}

void *spb__os_map_hugetlb_1g(void)
{
	if (injected(&spb__os_inject.fail_hugetlb_1g))
		return NULL;
	return map_anon(NULL, SPB_SPB_SIZE, MAP_HUGETLB | MAP_HUGE_1GB);
}

bool spb__os_map_hugetlb_2m_at(void *p)
{
	if (injected(&spb__os_inject.fail_hugetlb_2m))
		return false;
	/* Without MAP_NORESERVE the pool pages are reserved now, so a short
	 * pool is an ENOMEM here rather than a SIGBUS at first touch. On
	 * failure the old (plain) mapping is left in place by the kernel. */
	return map_anon(p, SPB_PB_SIZE, MAP_FIXED | MAP_HUGETLB | MAP_HUGE_2MB) == p;
}

bool spb__os_remap_plain_at(void *p, size_t size)
{
	return map_anon(p, size, MAP_FIXED | MAP_NORESERVE) == p;
}

bool spb__os_advise_hugepage(void *p, size_t size)
{
	if (injected(&spb__os_inject.fail_thp))
		return false;
	return madvise(p, size, MADV_HUGEPAGE) == 0;
}

bool spb__os_advise_nohugepage(void *p, size_t size)
{
	return madvise(p, size, MADV_NOHUGEPAGE) == 0;
}

bool spb__os_collapse(void *p, size_t size)
{
	if (injected(&spb__os_inject.fail_collapse))
		return false;
	return madvise(p, size, MADV_COLLAPSE) == 0;
}

bool spb__os_dontneed(void *p, size_t size)
{
	return madvise(p, size, MADV_DONTNEED) == 0;
}

void spb__os_unmap(void *p, size_t size)
{
	munmap(p, size);
}

void *spb__os_meta_alloc(size_t size)
{
	if (injected(&spb__os_inject.fail_meta))
		return NULL;
	size = (size + SPB_PAGE_SIZE - 1) & ~(SPB_PAGE_SIZE - 1);
	void *p = map_anon(NULL, size, MAP_NORESERVE);
	/* Metadata is touched sparsely: keep it off huge pages so a 560 KiB
	 * descriptor costs only the pages it uses. */
	if (p)
		madvise(p, size, MADV_NOHUGEPAGE);
	return p;
}

void spb__os_meta_free(void *p, size_t size)
{
	size = (size + SPB_PAGE_SIZE - 1) & ~(SPB_PAGE_SIZE - 1);
	munmap(p, size);
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
