/*
 * test_badfree.c — bad input to free and realloc ends the process: each
 * case runs in a forked child with stderr captured, and must die of
 * SIGABRT after writing exactly one line
 *     spbmalloc: <fault>: 0x<address>
 * where <address> is the pointer the program passed and <fault> names the
 * kind of fault. Cases: a stack pointer, a global, an mmap'ed page, an
 * address inside an SPB that was never handed out, interior pointers (small
 * block, page run, pageblocks, large mapping), double frees (small, small
 * freed twice across threads, page run, pageblocks, large), realloc of a
 * foreign, interior or freed pointer.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <sys/mman.h>

#include "mtest.h"

#define KiB ((size_t)1024)
#define MiB (KiB * 1024)
#define GiB (MiB * 1024)

static char global_buf[64];
static int announce_fd = -1; /* the child writes the address it passes here */

struct bad_case {
	const char *name;
	void (*fn)(void *);
	const char *fault; /* substring the line's fault must contain */
	const char *alt;   /* or this one (NULL: none) */
};

/* Tell the parent which address the bad call passes, just before it. */
static void announce(const void *p)
{
	uintptr_t v = (uintptr_t)p;
	ssize_t r = write(announce_fd, &v, sizeof v);
	(void)r;
}

static void do_free(void *p)
{
	announce(p);
	free(p);
}

static void do_realloc(void *p, size_t n)
{
	announce(p);
	void *volatile r = realloc(p, n);
	(void)r;
}

static void c_stack(void *a)
{
	char local[32];
	(void)a;
	do_free(local + 0);
}

static void c_global(void *a)
{
	(void)a;
	do_free(global_buf);
}

static void c_mmap(void *a)
{
	(void)a;
	void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	do_free(m);
}

static void c_wild(void *a)
{
	(void)a;
	do_free((void *)(uintptr_t)0x10000000000ull); /* 1 TiB: no mapping */
}

static void c_spb_unallocated(void *a)
{
	(void)a;
	/* 700 MiB into the SPB of a fresh small block: a free pageblock. */
	char *p = malloc(64);
	uintptr_t spb = (uintptr_t)p & ~(uintptr_t)(GiB - 1);
	do_free((void *)(spb + 700 * MiB));
}

static void c_interior_small(void *a)
{
	(void)a;
	char *p = malloc(64);
	do_free(p + 16);
}

static void c_interior_small_odd(void *a)
{
	(void)a;
	char *p = malloc(1000);
	do_free(p + 1);
}

static void c_never_allocated_block(void *a)
{
	(void)a;
	/* Block-aligned, inside the span of a fresh 48-byte block, far past
	 * what the span has handed out so far. */
	char *p = malloc(48);
	do_free(p + 48 * 300);
}

static void c_never_allocated_block_realloc(void *a)
{
	(void)a;
	char *p = malloc(48);
	do_realloc(p + 48 * 300, 40);
}

static void c_interior_run(void *a)
{
	(void)a;
	char *p = malloc(200 * KiB);
	do_free(p + 8 * KiB);
}

static void c_interior_run_unaligned(void *a)
{
	(void)a;
	char *p = malloc(200 * KiB);
	do_free(p + 24);
}

static void c_interior_pageblocks(void *a)
{
	(void)a;
	char *p = malloc(7 * MiB);
	do_free(p + 2 * MiB);
}

static void c_interior_pageblocks_page(void *a)
{
	(void)a;
	char *p = malloc(7 * MiB);
	do_free(p + 4 * KiB);
}

static void c_interior_large(void *a)
{
	(void)a;
	char *p = malloc(GiB + GiB / 2);
	do_free(p + 4 * KiB);
}

static void c_double_small(void *a)
{
	(void)a;
	void *p = malloc(32);
	void *keep = malloc(32); /* the span is not emptied by the first free */
	free(p);
	do_free(p);
	free(keep);
}

static void c_double_small_alone(void *a)
{
	(void)a;
	void *p = malloc(3000);
	free(p);
	do_free(p);
}

static void *thread_free(void *p)
{
	free(p);
	return NULL;
}

static void *thread_malloc(void *n)
{
	return malloc((size_t)n);
}

static void c_double_xthread(void *a)
{
	(void)a;
	void *p = malloc(48);
	void *keep = malloc(48);
	pthread_t t;
	pthread_create(&t, NULL, thread_free, p);
	pthread_join(t, NULL);
	do_free(p); /* main owns the span; the thread's free flagged it (xfreed) */
	free(keep);
}

static void c_double_xthread_owner_gone(void *a)
{
	(void)a;
	void *p;
	pthread_t t;
	pthread_create(&t, NULL, thread_malloc, (void *)(uintptr_t)80);
	pthread_join(t, &p); /* the owner exited: its span is abandoned */
	void *q;
	pthread_create(&t, NULL, thread_malloc, (void *)(uintptr_t)80);
	pthread_join(t, &q);
	free(q);
	free(p);
	do_free(p);
}

static void c_double_run(void *a)
{
	(void)a;
	void *p = malloc(200 * KiB);
	void *keep = malloc(200 * KiB); /* keeps the pageblock claimed */
	free(p);
	do_free(p);
	free(keep);
}

/* The run cache (lib/runcache.c): a run of 128-256 KiB freed into a
 * thread's cache is free to the program and allocated to the engine; a
 * second free is caught whichever path it takes. */
static void c_double_run_cached_locked(void *a)
{
	(void)a;
	void *p = malloc(200 * KiB);
	void *keep = malloc(200 * KiB);
	free(p); /* into this thread's run cache */
	announce(p);
	pthread_t t; /* a thread without a heap frees through the engine's lock */
	pthread_create(&t, NULL, thread_free, p);
	pthread_join(t, NULL);
	free(keep);
}

static void *thread_malloc_free(void *p)
{
	free(malloc(16)); /* a heap, so the free goes to this thread's cache */
	free(p);
	return NULL;
}

static void c_double_run_other_cache(void *a)
{
	(void)a;
	void *p = malloc(200 * KiB);
	pthread_t t;
	pthread_create(&t, NULL, thread_malloc_free, p);
	pthread_join(t, NULL);
	do_free(p);
}

static void c_double_run_after_trim(void *a)
{
	(void)a;
	void *p = malloc(160 * KiB);
	void *keep = malloc(160 * KiB);
	free(p);
	malloc_trim(0); /* the cached run back to the engine */
	do_free(p);
	free(keep);
}

static void c_realloc_freed_run(void *a)
{
	(void)a;
	void *p = malloc(200 * KiB);
	void *keep = malloc(200 * KiB);
	free(p);
	do_realloc(p, 150 * KiB); /* fits in place: must not succeed */
	free(keep);
}

static void c_double_run_alone(void *a)
{
	(void)a;
	void *p = malloc(1 * MiB);
	free(p);
	do_free(p);
}

static void c_double_pageblocks(void *a)
{
	(void)a;
	void *p = malloc(4 * MiB);
	free(p);
	do_free(p);
}

static void c_double_large(void *a)
{
	(void)a;
	void *p = malloc(GiB + GiB / 2);
	free(p);
	do_free(p);
}

static void c_realloc_foreign(void *a)
{
	(void)a;
	do_realloc(global_buf, 100);
}

static void c_realloc_stack(void *a)
{
	char local[16];
	(void)a;
	do_realloc(local, 100);
}

static void c_realloc_interior_shrink(void *a)
{
	(void)a;
	char *p = malloc(64);
	/* Smaller than the block: the in-place path must still check. */
	do_realloc(p + 16, 40);
}

static void c_realloc_interior_grow(void *a)
{
	(void)a;
	char *p = malloc(64);
	do_realloc(p + 16, 4000);
}

static void c_realloc_interior_run(void *a)
{
	(void)a;
	char *p = malloc(300 * KiB);
	do_realloc(p + 4 * KiB, 200 * KiB);
}

static void c_realloc_interior_run_unaligned(void *a)
{
	(void)a;
	char *p = malloc(300 * KiB);
	do_realloc(p + 24, 200 * KiB); /* would fit in place */
}

static void c_realloc_interior_pageblocks(void *a)
{
	(void)a;
	char *p = malloc(7 * MiB);
	do_realloc(p + 4 * KiB, 5 * MiB);
}

static void c_realloc_interior_large(void *a)
{
	(void)a;
	char *p = malloc(GiB + GiB / 2);
	do_realloc(p + 4 * KiB, GiB + GiB / 4);
}

static void c_realloc_freed_pageblocks(void *a)
{
	(void)a;
	char *p = malloc(7 * MiB);
	free(p);
	do_realloc(p, 6 * MiB);
}

static void c_realloc_freed(void *a)
{
	(void)a;
	char *p = malloc(64);
	void *keep = malloc(64);
	free(p);
	do_realloc(p, 50); /* fits in place: must not succeed */
	free(keep);
}

static void c_free_sized_foreign(void *a)
{
	(void)a;
	void free_sized(void *, size_t);
	announce(global_buf);
	free_sized(global_buf, 64);
}

/* Sized frees whose size cannot be the block's: a size smaller than half
 * its class, and one larger than the block. */
static void c_free_sized_small(void *a)
{
	(void)a;
	void free_sized(void *, size_t);
	char *p = malloc(1000);
	announce(p);
	free_sized(p, 10);
}

static void c_free_sized_large(void *a)
{
	(void)a;
	void free_sized(void *, size_t);
	char *p = malloc(300 * KiB);
	announce(p);
	free_sized(p, 400 * KiB);
}

static void c_free_aligned_sized_large(void *a)
{
	(void)a;
	void free_aligned_sized(void *, size_t, size_t);
	char *p = aligned_alloc(64, 256);
	announce(p);
	free_aligned_sized(p, 64, 100000); /* larger than the block */
}

static const struct bad_case cases[] = {
	{"stack", c_stack, "invalid pointer", NULL},
	{"global", c_global, "invalid pointer", NULL},
	{"mmap", c_mmap, "invalid pointer", NULL},
	{"wild", c_wild, "invalid pointer", NULL},
	{"spb_unallocated", c_spb_unallocated, "invalid pointer", NULL},
	{"interior_small", c_interior_small, "invalid pointer", NULL},
	{"interior_small_odd", c_interior_small_odd, "invalid pointer", NULL},
	{"never_allocated_block", c_never_allocated_block, "invalid pointer", NULL},
	{"never_allocated_block_realloc", c_never_allocated_block_realloc, "invalid pointer", NULL},
	{"interior_run", c_interior_run, "invalid pointer", NULL},
	{"interior_run_unaligned", c_interior_run_unaligned, "invalid pointer", NULL},
	{"interior_pageblocks", c_interior_pageblocks, "invalid pointer", NULL},
	{"interior_pageblocks_page", c_interior_pageblocks_page, "invalid pointer", NULL},
	{"interior_large", c_interior_large, "invalid pointer", NULL},
	{"double_small", c_double_small, "double free", NULL},
	{"double_small_alone", c_double_small_alone, "double free", NULL},
	{"double_xthread", c_double_xthread, "double free", NULL},
	{"double_xthread_owner_gone", c_double_xthread_owner_gone, "double free", NULL},
	{"double_run", c_double_run, "double free", NULL},
	{"double_run_alone", c_double_run_alone, "double free", NULL},
	{"double_run_cached_locked", c_double_run_cached_locked, "double free", NULL},
	{"double_run_other_cache", c_double_run_other_cache, "double free", NULL},
	{"double_run_after_trim", c_double_run_after_trim, "double free", NULL},
	{"realloc_freed_run", c_realloc_freed_run, "invalid pointer", NULL},
	{"double_pageblocks", c_double_pageblocks, "double free", NULL},
	/* A freed large mapping is unmapped and forgotten: the second free
	 * finds a foreign address. Either diagnosis names the address. */
	{"double_large", c_double_large, "double free", "invalid pointer"},
	{"realloc_foreign", c_realloc_foreign, "realloc(): invalid pointer", NULL},
	{"realloc_stack", c_realloc_stack, "realloc(): invalid pointer", NULL},
	{"realloc_interior_shrink", c_realloc_interior_shrink, "invalid pointer", NULL},
	{"realloc_interior_grow", c_realloc_interior_grow, "invalid pointer", NULL},
	{"realloc_interior_run", c_realloc_interior_run, "invalid pointer", NULL},
	{"realloc_interior_run_unaligned", c_realloc_interior_run_unaligned, "invalid pointer", NULL},
	{"realloc_interior_pageblocks", c_realloc_interior_pageblocks, "invalid pointer", NULL},
	{"realloc_interior_large", c_realloc_interior_large, "invalid pointer", NULL},
	{"realloc_freed_pageblocks", c_realloc_freed_pageblocks, "invalid pointer", "double free"},
	{"realloc_freed", c_realloc_freed, "double free", "invalid pointer"},
	{"free_sized_foreign", c_free_sized_foreign, "invalid pointer", NULL},
	{"free_sized_small", c_free_sized_small, "free_sized(): size does not match", NULL},
	{"free_sized_large", c_free_sized_large, "free_sized(): size does not match", NULL},
	{"free_aligned_sized_large", c_free_aligned_sized_large,
	 "free_aligned_sized(): size or alignment does not match", NULL},
};

static void run_case(void *arg)
{
	const struct bad_case *c = arg;
	c->fn(NULL);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	void *probe = malloc(16);
	if (spb_counter_get("malloc_alloc") == 0) {
		printf("SKIPPED: malloc is not spbmalloc's in this process\n");
		return MT_SKIP;
	}
	free(probe);
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		const struct bad_case *c = &cases[i];
		int fds[2];
		REQUIRE(pipe(fds) == 0);
		announce_fd = fds[1];
		char out[1024];
		int st = check_death(run_case, (void *)c, out, sizeof out);
		close(fds[1]);
		announce_fd = -1;
		uintptr_t addr = 0;
		ssize_t got = read(fds[0], &addr, sizeof addr);
		close(fds[0]);
		int ok = 1;
		char want_tail[40];
		snprintf(want_tail, sizeof want_tail, ": 0x%" PRIxPTR "\n", addr);
		size_t len = strlen(out), tl = strlen(want_tail);
		if (st == -1 || !WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT) {
			fprintf(stderr, "%s: not killed by SIGABRT (status 0x%x)\n", c->name, st);
			ok = 0;
		}
		if (got != sizeof addr) {
			fprintf(stderr, "%s: the child did not announce its address\n", c->name);
			ok = 0;
		}
		/* Exactly one line: "spbmalloc: <fault>: 0x<addr>\n". */
		const char *nl = strchr(out, '\n');
		if (strncmp(out, "spbmalloc: ", 11) || !nl || nl[1] != 0 || len < tl ||
		    strcmp(out + len - tl, want_tail)) {
			fprintf(stderr, "%s: stderr is not one line naming 0x%" PRIxPTR ": \"%s\"\n",
				c->name, addr, out);
			ok = 0;
		} else if (!strstr(out, c->fault) && !(c->alt && strstr(out, c->alt))) {
			fprintf(stderr, "%s: fault does not say \"%s\": %s", c->name, c->fault, out);
			ok = 0;
		}
		CHECK(ok);
		printf("%-32s %s%s", c->name, ok ? "ok   " : "FAIL ", out[0] ? out : "(no output)\n");
	}
	return check_done("test_badfree");
}
