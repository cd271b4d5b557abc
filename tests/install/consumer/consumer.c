/*
 * consumer.c — a program outside the project, built against an installed
 * spbmalloc (tests/install). It checks that the library it runs on is the
 * one it was meant to link (argv[1]: the installed .so, or "static" for the
 * copy linked into the executable), that the installed counter list matches
 * the library, and that page allocation works through the public API.
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

int main(int argc, char **argv)
{
	size_t ndef = sizeof(def_names) / sizeof(def_names[0]);

	if (argc != 2) {
		fprintf(stderr, "usage: %s LIBRARY.so|static\n", argv[0]);
		return 2;
	}
	if (check_origin(argv[1]))
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
