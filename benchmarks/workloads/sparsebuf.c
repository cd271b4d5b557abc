/*
 * sparsebuf.c — buffers allocated big and written little (wl_sparsebuf).
 *
 * Allocates buffers of min..max bytes (log-uniform) until their sizes add
 * up to total_mb, writes touch bytes at the start of each (a header, a
 * short message in a big receive buffer), keeps them all for hold
 * seconds (the allocator's background work has its turn), then frees
 * them. A general allocator leaves the untouched pages unbacked; one that
 * backs them with huge pages pays up to 2 MiB for each. Self-contained
 * (no wl_common): prints key=value lines, the peak RSS (VmHWM), the RSS
 * and AnonHugePages while the buffers are held, the pages written.
 * Arguments: total_mb= (256) min= (1024) max= (1048576) touch= (64)
 * hold= (2.0) seed= (1).
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double arg(int argc, char **argv, const char *key, double def)
{
	size_t n = strlen(key);
	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], key, n) && argv[i][n] == '=')
			return atof(argv[i] + n + 1);
	return def;
}

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* KiB of a "Key:" line of a /proc/self file, or -1. */
static long proc_kb(const char *file, const char *key)
{
	FILE *f = fopen(file, "r");
	char line[256];
	long v = -1;
	size_t n = strlen(key);
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, key, n)) {
			v = atol(line + n);
			break;
		}
	fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	size_t total = (size_t)(arg(argc, argv, "total_mb", 256) * 1048576.0);
	double lo = arg(argc, argv, "min", 1024), hi = arg(argc, argv, "max", 1048576);
	size_t touch = (size_t)arg(argc, argv, "touch", 64);
	double hold = arg(argc, argv, "hold", 2.0);
	uint64_t seed = (uint64_t)arg(argc, argv, "seed", 1) * 0x9e3779b97f4a7c15ull + 1;
	if (lo < 16 || hi < lo || total == 0) {
		fprintf(stderr, "sparsebuf: bad arguments\n");
		return 2;
	}
	size_t cap = 1024, n = 0, bytes = 0, written = 0;
	char **v = malloc(cap * sizeof *v);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (v && bytes < total) {
		double u = (double)(rng(&seed) >> 11) / 9007199254740992.0;
		size_t sz = (size_t)exp(log(lo) + u * (log(hi) - log(lo)));
		if (n == cap) {
			cap *= 2;
			v = realloc(v, cap * sizeof *v);
			if (!v)
				break;
		}
		v[n] = malloc(sz);
		if (!v[n]) {
			fprintf(stderr, "sparsebuf: malloc(%zu) failed\n", sz);
			return 1;
		}
		size_t w = touch < sz ? touch : sz;
		memset(v[n], (int)(n & 0xff) | 1, w);
		written += w;
		bytes += sz;
		n++;
	}
	if (!v) {
		fprintf(stderr, "sparsebuf: out of memory\n");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long rss_built = proc_kb("/proc/self/status", "VmRSS:");
	struct timespec ts = {(time_t)hold, (long)((hold - (double)(time_t)hold) * 1e9)};
	nanosleep(&ts, NULL);
	long rss_held = proc_kb("/proc/self/status", "VmRSS:");
	long huge_held = proc_kb("/proc/self/smaps_rollup", "AnonHugePages:");
	long hwm = proc_kb("/proc/self/status", "VmHWM:");
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	printf("workload=sparsebuf\n");
	printf("buffers=%zu\n", n);
	printf("allocated_mb=%.1f\n", (double)bytes / 1048576.0);
	printf("written_kb=%.1f\n", (double)written / 1024.0);
	printf("build_seconds=%.4f\n",
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	printf("rss_built_kb=%ld\n", rss_built);
	printf("rss_held_kb=%ld\n", rss_held);
	printf("anon_huge_held_kb=%ld\n", huge_held);
	printf("peak_rss_kb=%ld\n", hwm);
	return 0;
}
