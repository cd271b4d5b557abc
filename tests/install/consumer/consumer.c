/*
 * consumer.c — a program outside the project, built against an installed
 * spbmalloc (tests/install). It checks that the library it runs on is the
 * one it was meant to link (argv[1]: the installed .so, or "static" for the
 * copy linked into the executable), that the installed counter list matches
 * the library, that page allocation works through the public API, and that
 * the process's malloc is spbmalloc's.
 *
 * That last check names no function of the malloc family here: a program
 * that never calls malloc itself, only through libc (strdup, stdio), must
 * still get spbmalloc's from libspbmalloc.a (the static target's -u malloc
 * pulls override.o in). Calling malloc directly would pull it in anyway
 * and prove nothing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spbmalloc.h>

static const char *const def_names[] = {
#define SPB_COUNTER(e, name, desc) name,
#include <spbmalloc_counters.def>
#undef SPB_COUNTER
};

static int failures;

#define CHECK(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "consumer: %s:%d: check failed: %s\n", \
				__FILE__, __LINE__, #cond);                \
			failures++;                                        \
		}                                                          \
	} while (0)

/* Which file holds the library's code: the .so, or the executable itself. */
static int check_origin(const char *want)
{
	Dl_info info;
	char got[PATH_MAX], exp[PATH_MAX];

	/* A string the library returns lies in the library's own image. */
	if (!dladdr(spb_counter_name(0), &info) || !info.dli_fname) {
		fprintf(stderr, "consumer: dladdr found no object\n");
		return -1;
	}
	if (!realpath(info.dli_fname[0] ? info.dli_fname : "/proc/self/exe", got) ||
	    !realpath(strcmp(want, "static") ? want : "/proc/self/exe", exp)) {
		perror("consumer: realpath");
		return -1;
	}
	printf("library image: %s\n", got);
	if (strcmp(got, exp)) {
		fprintf(stderr, "consumer: runs on %s, expected %s\n", got, exp);
		return -1;
	}
	return 0;
}

/* The malloc the process runs on is spbmalloc's: the malloc and free that
 * dynamic lookups find (what libc's own calls bind to) live in the library
 * image, and memory libc allocates for us (strdup) is counted by
 * malloc_alloc and lies in an SPB: a 1 MiB block is a page run the engine
 * knows (spb_pages_usable_size, 0 for any other pointer). */
static int check_malloc_is_ours(const char *want)
{
	int bad = 0;
	const char *names[] = {"malloc", "free", "calloc", "realloc"};
	char got[PATH_MAX], exp[PATH_MAX];
	if (!realpath(strcmp(want, "static") ? want : "/proc/self/exe", exp))
		return -1;
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		Dl_info info;
		void *fn = dlsym(RTLD_DEFAULT, names[i]);
		if (!fn || !dladdr(fn, &info) || !info.dli_fname ||
		    !realpath(info.dli_fname[0] ? info.dli_fname : "/proc/self/exe", got)) {
			fprintf(stderr, "consumer: %s: no symbol or no object\n", names[i]);
			bad++;
			continue;
		}
		if (strcmp(got, exp)) {
			fprintf(stderr, "consumer: %s comes from %s, expected %s\n", names[i],
				got, exp);
			bad++;
		}
	}
	void (*xfree)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "free");
	size_t n = (size_t)1 << 20;
	static char text[(1 << 20) + 1];
	memset(text, 'x', n);
	uint64_t a0 = spb_counter_get("malloc_alloc"), f0 = spb_counter_get("malloc_free");
	/* Through a volatile pointer: the compiler may not turn strdup into
	 * malloc + memcpy here (a direct malloc reference pulls override.o). */
	char *(*volatile xstrdup)(const char *) = strdup;
	char *small = xstrdup("spbmalloc");
	char *big = xstrdup(text);
	uint64_t a1 = spb_counter_get("malloc_alloc");
	if (!small || !big || a1 < a0 + 2) {
		fprintf(stderr, "consumer: strdup did not go through spbmalloc "
			"(malloc_alloc %llu -> %llu)\n", (unsigned long long)a0,
			(unsigned long long)a1);
		bad++;
	}
	size_t u = big ? spb_pages_usable_size(big) : 0;
	if (u < n + 1) {
		fprintf(stderr, "consumer: a %zu-byte strdup at %p is not in an SPB "
			"(spb_pages_usable_size %zu)\n", n + 1, (void *)big, u);
		bad++;
	}
	if (xfree) {
		xfree(small);
		xfree(big);
		uint64_t f1 = spb_counter_get("malloc_free");
		if (f1 < f0 + 2) {
			fprintf(stderr, "consumer: free did not go through spbmalloc "
				"(malloc_free %llu -> %llu)\n", (unsigned long long)f0,
				(unsigned long long)f1);
			bad++;
		}
	}
	if (!bad)
		printf("malloc: spbmalloc's (%s)\n", exp);
	return bad ? -1 : 0;
}

int main(int argc, char **argv)
{
	size_t ndef = sizeof(def_names) / sizeof(def_names[0]);

	if (argc != 2) {
		fprintf(stderr, "usage: %s LIBRARY.so|static\n", argv[0]);
		return 2;
	}
	if (check_origin(argv[1]))
		failures++;
	if (check_malloc_is_ours(argv[1]))
		failures++;

	/* The installed .def and the library agree. */
	CHECK(spb_counter_count() == ndef);
	for (size_t i = 0; i < ndef && i < spb_counter_count(); i++)
		CHECK(strcmp(spb_counter_name(i), def_names[i]) == 0);
	CHECK(spb_counter_get("no_such_counter") == UINT64_MAX);

	/* A page run of a non-movable class. */
	uint64_t runs = spb_counter_get("run_alloc");
	char *p = spb_pages_alloc(3 * 4096, 0, SPB_UNMOVABLE, 0);
	CHECK(p != NULL);
	if (p) {
		memset(p, 0x5a, 3 * 4096);
		CHECK(((uintptr_t)p & 4095) == 0);
		CHECK(spb_pages_usable_size(p) >= 3 * 4096);
		/* >=: the program's own mallocs (stdio buffers) take page runs too */
		CHECK(spb_counter_get("run_alloc") >= runs + 1);
		spb_pages_free(p);
	}

	/* Whole pageblocks of the movable class: 2 MiB aligned. */
	char *q = spb_pages_alloc(4 << 20, 0, SPB_MOVABLE, SPB_F_ZERO);
	CHECK(q != NULL);
	if (q) {
		CHECK(((uintptr_t)q & ((2u << 20) - 1)) == 0);
		CHECK(q[0] == 0 && q[(4 << 20) - 1] == 0);
		memset(q, 1, 4 << 20);
		CHECK(spb_pages_usable_size(q) >= (size_t)4 << 20);
		spb_pages_free(q);
	}

	/* Bad alignment is refused with EINVAL. */
	errno = 0;
	CHECK(spb_pages_alloc(4096, 3, SPB_UNMOVABLE, 0) == NULL && errno == EINVAL);

	if (failures) {
		fprintf(stderr, "consumer: %d check(s) failed\n", failures);
		return 1;
	}
	printf("consumer: ok (%zu counters)\n", ndef);
	return 0;
}
