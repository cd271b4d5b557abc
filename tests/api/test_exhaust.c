/*
 * test_exhaust.c — when the engine cannot get more memory, the malloc
 * family fails cleanly: NULL with ENOMEM (posix_memalign: ENOMEM returned,
 * errno untouched), no crash, earlier blocks intact, a failed realloc
 * leaves its block valid; and once memory is freed, allocation works again.
 *
 * The limit is SPBMALLOC_MAX_SPBS=1 (one 1 GiB SPB per zone, set by
 * CMake for this test); the test re-executes itself with it if started
 * without.
 */
#define _GNU_SOURCE
#include <malloc.h>

#include "mtest.h"

#define MiB ((size_t)1 << 20)

int main(int argc, char **argv)
{
	(void)argc;
	if (!getenv("SPBMALLOC_MAX_SPBS")) {
		setenv("SPBMALLOC_MAX_SPBS", "1", 1);
		setenv("SPBMALLOC_NUMA", "0", 1);
		execv("/proc/self/exe", argv);
		perror("execv");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* Fill the SPB with 64 MiB blocks (whole pageblocks), stamped. */
	enum { MAXB = 64 };
	unsigned char *big[MAXB];
	int n = 0;
	errno = 0;
	for (; n < MAXB; n++) {
		big[n] = malloc(64 * MiB);
		if (!big[n])
			break;
		big[n][0] = (unsigned char)n;
		big[n][64 * MiB - 1] = (unsigned char)n;
	}
	printf("64 MiB blocks before exhaustion: %d\n", n);
	CHECK(n >= 8 && n < 16);     /* 1 GiB, less what small blocks hold */
	CHECK(n < MAXB && errno == ENOMEM);
	/* Fill what is left with smaller blocks until those fail too. */
	enum { MAXS = 40000 };
	static void *small[MAXS];
	int ns = 0;
	errno = 0;
	for (; ns < MAXS; ns++) {
		small[ns] = malloc(ns % 2 ? 100 * 1024 : 200000);
		if (!small[ns])
			break;
	}
	printf("page-run blocks before exhaustion: %d\n", ns);
	CHECK(ns < MAXS && errno == ENOMEM);
	/* Every entry point fails cleanly. */
	errno = 0;
	CHECK(malloc(8 * MiB) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(calloc(1, 8 * MiB) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(aligned_alloc(2 * MiB, 4 * MiB) == NULL && errno == ENOMEM);
	void *out = (void *)0x1;
	errno = 777;
	CHECK_EQ(posix_memalign(&out, 4096, 16 * MiB), ENOMEM);
	CHECK(errno == 777 && out == (void *)0x1);
	errno = 0;
	unsigned char *g = realloc(big[0], 128 * MiB);
	CHECK(g == NULL && errno == ENOMEM);
	/* Nothing was damaged. */
	for (int i = 0; i < n; i++)
		CHECK(big[i][0] == (unsigned char)i && big[i][64 * MiB - 1] == (unsigned char)i);
	/* Free everything: allocation works again. */
	for (int i = 0; i < n; i++)
		free(big[i]);
	for (int i = 0; i < ns; i++)
		free(small[i]);
	void *again = malloc(64 * MiB);
	CHECK(again != NULL);
	free(again);
	int m = 0;
	for (; m < n; m++) {
		big[m] = malloc(64 * MiB);
		if (!big[m])
			break;
	}
	CHECK(m == n); /* the same room again: nothing leaked */
	for (int i = 0; i < m; i++)
		free(big[i]);
	return check_done("test_exhaust");
}
