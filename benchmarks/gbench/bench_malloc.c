/*
 * bench_malloc.c — microbenchmarks of the malloc family, measuring
 * whatever malloc the binary resolves to: malloc/free pairs per size
 * (one and two threads), batch allocation then batch free, realloc
 * growth, calloc, aligned allocation. Each reports items/s, and bytes/s
 * where the bytes mean something. Calls only libc and spb_bench.h.
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "benches.h"
#include "spb_bench.h"

#define PAIR_BATCH 64            /* malloc/free pairs per call into C++ */
#define BATCH_MAX_OBJS 1024
#define BATCH_MAX_BYTES ((size_t)64 << 20)

/* malloc(size) then free, size = range(0). */
static void bm_malloc_free(spb_bench_state_t *st, void *arg)
{
	size_t size = (size_t)spb_bench_get_range(st, 0);
	(void)arg;
	while (spb_bench_keep_running_batch(st, PAIR_BATCH)) {
		for (int i = 0; i < PAIR_BATCH; i++) {
			void *p = malloc(size);
			spb_bench_escape(p);
			free(p);
		}
	}
	spb_bench_set_items_processed(st, spb_bench_iterations(st));
	spb_bench_set_bytes_processed(st, spb_bench_iterations(st) * (int64_t)size);
}

/* malloc(size) then free with the first byte written: the pair as a real
 * program sees it, where the object's first cache line is touched. */
static void bm_malloc_touch_free(spb_bench_state_t *st, void *arg)
{
	size_t size = (size_t)spb_bench_get_range(st, 0);
	(void)arg;
	while (spb_bench_keep_running_batch(st, PAIR_BATCH)) {
		for (int i = 0; i < PAIR_BATCH; i++) {
			char *p = malloc(size);
			if (p)
				p[0] = (char)i;
			spb_bench_escape(p);
			free(p);
		}
	}
	spb_bench_set_items_processed(st, spb_bench_iterations(st));
}

static size_t batch_count(size_t size)
{
	size_t n = BATCH_MAX_BYTES / size;
	return n > BATCH_MAX_OBJS ? BATCH_MAX_OBJS : (n ? n : 1);
}

/* n objects of range(0) bytes allocated, then all freed (in allocation
 * order: the FIFO pattern that defeats a pure LIFO free list). One
 * iteration is the whole batch; items are objects. */
static void bm_batch(spb_bench_state_t *st, void *arg)
{
	size_t size = (size_t)spb_bench_get_range(st, 0);
	size_t n = batch_count(size);
	void *ptrs[BATCH_MAX_OBJS];
	(void)arg;
	while (spb_bench_keep_running(st)) {
		for (size_t i = 0; i < n; i++)
			ptrs[i] = malloc(size);
		spb_bench_clobber();
		for (size_t i = 0; i < n; i++)
			free(ptrs[i]);
	}
	spb_bench_set_items_processed(st, spb_bench_iterations(st) * (int64_t)n);
	spb_bench_set_bytes_processed(st, spb_bench_iterations(st) * (int64_t)(n * size));
	spb_bench_counter(st, "objs_per_batch", (double)n, 0);
}

/* Grow one block from 16 bytes to range(0) by realloc; arg selects the
 * growth: geometric (x1.5, a vector) or by 64 bytes (a string append). */
enum grow_mode { GROW_GEOMETRIC, GROW_STEP64 };

static void bm_realloc_grow(spb_bench_state_t *st, void *arg)
{
	size_t final = (size_t)spb_bench_get_range(st, 0);
	enum grow_mode mode = (enum grow_mode)(uintptr_t)arg;
	int64_t calls = 0;
	while (spb_bench_keep_running(st)) {
		size_t size = 16;
		char *p = malloc(size);
		p[0] = 1;
		while (size < final) {
			size = mode == GROW_GEOMETRIC ? size + size / 2 : size + 64;
			if (size > final)
				size = final;
			char *q = realloc(p, size);
			if (!q)
				break;
			p = q;
			p[size - 1] = 1; /* the appended tail is written, like a user would */
			calls++;
		}
		spb_bench_escape(p);
		free(p);
	}
	spb_bench_set_items_processed(st, calls);
	spb_bench_set_bytes_processed(st, spb_bench_iterations(st) * (int64_t)final);
	spb_bench_counter(st, "reallocs_per_iter", (double)calls, SPB_BENCH_COUNTER_PER_ITER);
}

/* calloc(1, size) then free; bytes/s counts the zeroed bytes delivered. */
static void bm_calloc(spb_bench_state_t *st, void *arg)
{
	size_t size = (size_t)spb_bench_get_range(st, 0);
	(void)arg;
	while (spb_bench_keep_running(st)) {
		void *p = calloc(1, size);
		spb_bench_escape(p);
		free(p);
	}
	spb_bench_set_items_processed(st, spb_bench_iterations(st));
	spb_bench_set_bytes_processed(st, spb_bench_iterations(st) * (int64_t)size);
}

/* posix_memalign(align = range(0), size = range(1)) then free. */
static void bm_memalign(spb_bench_state_t *st, void *arg)
{
	size_t align = (size_t)spb_bench_get_range(st, 0);
	size_t size = (size_t)spb_bench_get_range(st, 1);
	(void)arg;
	while (spb_bench_keep_running(st)) {
		void *p = NULL;
		if (posix_memalign(&p, align, size) != 0 || ((uintptr_t)p & (align - 1))) {
			spb_bench_skip_with_error(st, "posix_memalign failed or misaligned");
			break;
		}
		spb_bench_escape(p);
		free(p);
	}
	spb_bench_set_items_processed(st, spb_bench_iterations(st));
}

/* aligned_alloc(align, size) for C11 callers, size a multiple of align. */
static void bm_aligned_alloc(spb_bench_state_t *st, void *arg)
{
	size_t align = (size_t)spb_bench_get_range(st, 0);
	(void)arg;
	while (spb_bench_keep_running(st)) {
		void *p = aligned_alloc(align, align);
		if (!p || ((uintptr_t)p & (align - 1))) {
			spb_bench_skip_with_error(st, "aligned_alloc failed or misaligned");
			break;
		}
		spb_bench_escape(p);
		free(p);
	}
	spb_bench_set_items_processed(st, spb_bench_iterations(st));
}

/* malloc_usable_size on a live block: the query a container does. */
static void bm_usable_size(spb_bench_state_t *st, void *arg)
{
	size_t size = (size_t)spb_bench_get_range(st, 0);
	void *p = malloc(size);
	size_t sum = 0;
	(void)arg;
	while (spb_bench_keep_running_batch(st, PAIR_BATCH))
		for (int i = 0; i < PAIR_BATCH; i++) {
			spb_bench_escape(p);
			sum += malloc_usable_size(p);
		}
	free(p);
	if (sum < size)
		spb_bench_skip_with_error(st, "malloc_usable_size below the request");
	spb_bench_set_items_processed(st, spb_bench_iterations(st));
}

void bench_malloc_register(void)
{
	spb_bench_t *b;

	b = spb_bench_register("malloc_free", bm_malloc_free, NULL);
	spb_bench_arg_name(spb_bench_range(b, 16, 1 << 20, 4), "size");
	b = spb_bench_register("malloc_touch_free", bm_malloc_touch_free, NULL);
	spb_bench_arg_name(spb_bench_range(b, 16, 1 << 20, 16), "size");
	/* two threads each running pairs: contention on shared state */
	b = spb_bench_register("malloc_free_mt", bm_malloc_free, NULL);
	spb_bench_arg_name(spb_bench_range(b, 16, 1 << 16, 16), "size");
	spb_bench_use_real_time(spb_bench_threads(b, 2));

	b = spb_bench_register("batch_alloc_free", bm_batch, NULL);
	spb_bench_arg_name(spb_bench_range(b, 16, 1 << 20, 4), "size");

	b = spb_bench_register("realloc_grow_geometric", bm_realloc_grow,
			       (void *)(uintptr_t)GROW_GEOMETRIC);
	spb_bench_arg_name(spb_bench_range(b, 4096, 1 << 20, 16), "final");
	b = spb_bench_register("realloc_grow_step64", bm_realloc_grow,
			       (void *)(uintptr_t)GROW_STEP64);
	spb_bench_arg_name(spb_bench_range(b, 1024, 1 << 16, 8), "final");

	b = spb_bench_register("calloc_free", bm_calloc, NULL);
	spb_bench_arg_name(spb_bench_range(b, 16, 1 << 20, 4), "size");

	b = spb_bench_register("posix_memalign_free", bm_memalign, NULL);
	spb_bench_args2(b, 64, 256);
	spb_bench_args2(b, 4096, 256);
	spb_bench_args2(b, 65536, 256);
	spb_bench_args2(b, 2 << 20, 256);
	spb_bench_args2(b, 4096, 1 << 20);
	b = spb_bench_register("aligned_alloc_free", bm_aligned_alloc, NULL);
	spb_bench_arg_name(spb_bench_range(b, 64, 2 << 20, 32), "align");

	b = spb_bench_register("malloc_usable_size", bm_usable_size, NULL);
	spb_bench_arg_name(spb_bench_range(b, 16, 1 << 16, 64), "size");
}
