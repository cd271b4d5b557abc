/*
 * override.c — the only definitions of malloc and friends (and the glibc
 * entry points real programs reach), with glibc-compatible semantics, on
 * top of the spb__* functions of alloc.c and free.c. Linking
 * libspbmalloc.a or preloading libspbmalloc.so makes these the process's
 * allocator. Also the spb_* calls that belong to the malloc layer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "heap.h"

#define SPB_EXPORT __attribute__((visibility("default")))

static bool is_pow2(size_t a)
{
	return a && !(a & (a - 1));
}

SPB_EXPORT void *malloc(size_t size)
{
	return spb__malloc(size);
}

SPB_EXPORT void free(void *p)
{
	if (SPB_LIKELY(p != NULL))
		spb__free_ptr(p);
}

SPB_EXPORT void *calloc(size_t n, size_t size)
{
	return spb__calloc(n, size);
}

SPB_EXPORT void *realloc(void *p, size_t size)
{
	return spb__realloc(p, size);
}

SPB_EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return spb__realloc(p, total);
}

SPB_EXPORT void *memalign(size_t align, size_t size)
{
	if (!is_pow2(align)) {
		errno = EINVAL;
		return NULL;
	}
	return spb__aligned(align, size);
}

SPB_EXPORT void *aligned_alloc(size_t align, size_t size)
{
	return memalign(align, size);
}

SPB_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
	if (!is_pow2(align) || align % sizeof(void *))
		return EINVAL;
	int saved = errno;
	void *p = spb__aligned(align, size);
	if (!p) {
		int e = errno == EINVAL ? EINVAL : ENOMEM;
		errno = saved;
		return e;
	}
	*out = p;
	return 0;
}

SPB_EXPORT void *valloc(size_t size)
{
	return spb__aligned(SPB_PAGE_SIZE, size);
}

SPB_EXPORT void *pvalloc(size_t size)
{
	size_t r = (size + SPB_PAGE_SIZE - 1) & ~(SPB_PAGE_SIZE - 1);
	if (r < size) {
		errno = ENOMEM;
		return NULL;
	}
	return spb__aligned(SPB_PAGE_SIZE, r ? r : SPB_PAGE_SIZE);
}

SPB_EXPORT size_t malloc_usable_size(void *p)
{
	return p ? spb__usable(p) : 0;
}

/* Sized frees (C23 free_sized, C++ sized delete): the size must be one
 * the block could have been asked for: at most its usable size and at
 * least half of it (realloc keeps a block in place down to half its
 * size; a smaller request gets a smaller block). A mismatch is a delete
 * of new[] memory, or of another type, or a wrong size: one line, like
 * any other bad free. A pointer that is not a block is left to free(). */
static void sized_free(void *p, size_t size, const char *what)
{
	if (!p)
		return;
	size_t u = spb__usable(p);
	if (u && (size > u || (size < u / 2 && u > SPB_MIN_ALIGN)))
		spb__fatal(what, p);
	spb__free_ptr(p);
}

/* Aligned: the block may be far larger than asked (an alignment picks a
 * class or a page run), so only the upper bound and the alignment. */
static void aligned_sized_free(void *p, size_t align, size_t size, const char *what)
{
	if (!p)
		return;
	size_t u = spb__usable(p);
	if (u && (size > u || !is_pow2(align) || ((uintptr_t)p & (align - 1))))
		spb__fatal(what, p);
	spb__free_ptr(p);
}

SPB_EXPORT void free_sized(void *p, size_t size)
{
	sized_free(p, size, "free_sized(): size does not match the block");
}

SPB_EXPORT void free_aligned_sized(void *p, size_t align, size_t size)
{
	aligned_sized_free(p, align, size,
			   "free_aligned_sized(): size or alignment does not match the block");
}

/* The C++ sized deletes (operator delete(void*, size_t) and delete[], with
 * and without std::align_val_t), under their mangled names: the compiler
 * passes the size of what it deletes, so a scalar delete of new[] memory
 * or a delete through the wrong type shows. Unsized deletes and every
 * operator new stay libstdc++'s, which call malloc and free. */
SPB_EXPORT void _ZdlPvm(void *p, size_t size);
SPB_EXPORT void _ZdaPvm(void *p, size_t size);
SPB_EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t size, size_t align);
SPB_EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t size, size_t align);

SPB_EXPORT void _ZdlPvm(void *p, size_t size)
{
	sized_free(p, size, "operator delete(): size does not match the block "
			    "(delete of new[] memory, or through the wrong type?)");
}

SPB_EXPORT void _ZdaPvm(void *p, size_t size)
{
	sized_free(p, size, "operator delete[](): size does not match the block "
			    "(delete[] of new memory, or through the wrong type?)");
}

SPB_EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t size, size_t align)
{
	aligned_sized_free(p, align, size,
			   "operator delete(): size or alignment does not match the block");
}

SPB_EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t size, size_t align)
{
	aligned_sized_free(p, align, size,
			   "operator delete[](): size or alignment does not match the block");
}

SPB_EXPORT void cfree(void *p)
{
	free(p);
}

/* glibc's own names, reached by some programs and by glibc internals. */
SPB_EXPORT void *__libc_malloc(size_t size) { return malloc(size); }
SPB_EXPORT void __libc_free(void *p) { free(p); }
SPB_EXPORT void *__libc_calloc(size_t n, size_t size) { return calloc(n, size); }
SPB_EXPORT void *__libc_realloc(void *p, size_t size) { return realloc(p, size); }
SPB_EXPORT void *__libc_memalign(size_t align, size_t size) { return memalign(align, size); }
SPB_EXPORT void *__libc_valloc(size_t size) { return valloc(size); }
SPB_EXPORT void *__libc_pvalloc(size_t size) { return pvalloc(size); }
SPB_EXPORT int __posix_memalign(void **out, size_t align, size_t size)
{
	return posix_memalign(out, align, size);
}

/* The tuning knobs of glibc's allocator have no meaning here: accepted
 * (1 = success) and ignored, except M_PURGE-like trimming below. */
SPB_EXPORT int mallopt(int param, int value)
{
	(void)value;
	switch (param) {
	case M_TRIM_THRESHOLD: case M_TOP_PAD: case M_MMAP_THRESHOLD:
	case M_MMAP_MAX: case M_ARENA_MAX: case M_ARENA_TEST: case M_PERTURB:
	case M_CHECK_ACTION: case M_MXFAST:
		return 1;
	default:
		return 0;
	}
}

/* Give back everything free now, whatever the decay delay. */
SPB_EXPORT int malloc_trim(size_t pad)
{
	(void)pad;
	return spb_trim() > 0;
}

static struct mallinfo2 info2(void)
{
	struct mallinfo2 mi;
	memset(&mi, 0, sizeof mi);
	uint64_t live;
	uint64_t claimed = 0, large = 0;
	for (int i = 0; i < spb__zones_count(); i++) {
		for (int c = 0; c < SPB_NR_CLASSES; c++)
			claimed += __atomic_load_n(&spb__zones[i].pb_by_class[c], __ATOMIC_RELAXED);
		large += __atomic_load_n(&spb__zones[i].large_bytes, __ATOMIC_RELAXED);
	}
	mi.arena = claimed << SPB_PB_SHIFT;
	mi.hblkhd = large;
	/* Two sums read while other threads allocate and free: clamp. */
	uint64_t a = spb__counter_sum(MALLOC_ALLOC_BYTES), f = spb__counter_sum(MALLOC_FREE_BYTES);
	live = a > f ? a - f : 0;
	mi.uordblks = live;
	mi.fordblks = mi.arena + large > live ? mi.arena + large - live : 0;
	mi.usmblks = 0;
	return mi;
}

SPB_EXPORT struct mallinfo2 mallinfo2(void)
{
	return info2();
}

static int clamp_int(size_t v)
{
	return v > (size_t)__INT_MAX__ ? __INT_MAX__ : (int)v;
}

SPB_EXPORT struct mallinfo mallinfo(void)
{
	struct mallinfo2 m2 = info2();
	struct mallinfo m;
	memset(&m, 0, sizeof m);
	m.arena = clamp_int(m2.arena);
	m.hblkhd = clamp_int(m2.hblkhd);
	m.uordblks = clamp_int(m2.uordblks);
	m.fordblks = clamp_int(m2.fordblks);
	return m;
}

/* ---- the malloc layer's spb_* API ---- */

SPB_EXPORT void *spb_malloc_class(size_t size, spb_class_t cls, unsigned flags)
{
	return spb__malloc_class(size, (unsigned)cls, flags);
}

SPB_EXPORT int spb_set_thread_class(spb_class_t cls)
{
	if (cls != SPB_UNMOVABLE && cls != SPB_RECLAIMABLE) {
		errno = EINVAL;
		return -1;
	}
	return spb__heap_set_default((unsigned)cls);
}

SPB_EXPORT spb_class_t spb_thread_class(void)
{
	struct spb_heap *h = spb__tls_heap;
	return h == &spb__empty_heap ? SPB_UNMOVABLE : (spb_class_t)h->cls;
}
