/*
 * hugecov.c — huge-page coverage of a large heap of small objects.
 *
 * Allocates ws_mb of objects of 64..4096 bytes (log-uniform), writes them
 * all, links them into one random cycle, then chases the cycle for a fixed
 * time (seconds=): each access is a dependent load plus a store in a random
 * object, so it pays a TLB miss whenever the heap is not on huge pages.
 * Reports accesses/s as ops_per_s and the coverage (AnonHugePages /
 * Anonymous from /proc/self/smaps_rollup) with the heap built.
 * Arguments: ws_mb= (2048) seconds= (3) min= (64) max= (4096) seed= (1).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wl_common.h"

struct node {
	struct node *next;
	unsigned long hits;
};

int main(int argc, char **argv)
{
	wl_args_init(argc, argv);
	long ws_mb = wl_arg_long("ws_mb", 2048);
	double run = wl_arg_double("seconds", 3.0);
	size_t lo = (size_t)wl_arg_long("min", 64);
	size_t hi = (size_t)wl_arg_long("max", 4096);
	struct wl_rng r;
	size_t n = 0, cap = 1 << 16, bytes = 0;

	if (ws_mb < 1 || run <= 0 || lo < sizeof(struct node) || hi < lo) {
		fprintf(stderr, "hugecov: bad arguments\n");
		return 2;
	}
	wl_rng_seed(&r, (uint64_t)wl_arg_long("seed", 1), 0);
	struct node **v = wl_check(malloc(cap * sizeof(*v)), cap * sizeof(*v));

	double tb = wl_now();
	while (bytes < ((size_t)ws_mb << 20)) {
		size_t sz = wl_size_powerlaw(&r, lo, hi, 1.0);

		if (n == cap) {
			cap *= 2;
			v = wl_check(realloc(v, cap * sizeof(*v)), cap * sizeof(*v));
		}
		v[n] = wl_check(malloc(sz), sz);
		memset(v[n], 0, sz);
		bytes += sz;
		n++;
	}
	/* Random cyclic order: shuffle, then link each to the next. */
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)(wl_rand(&r) % (i + 1));
		struct node *t = v[i];

		v[i] = v[j];
		v[j] = t;
	}
	for (size_t i = 0; i < n; i++)
		v[i]->next = v[(i + 1) % n];
	struct node *p = v[0];
	double build = wl_now() - tb;

	wl_peak_note();
	double t0 = wl_now(), t = t0;
	unsigned long acc = 0;

	while (t - t0 < run) {
		for (int k = 0; k < 4096; k++) {
			p->hits++;
			p = p->next;
		}
		acc += 4096;
		t = wl_now();
	}
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	wl_report_main("hugecov", 1, (double)acc, t - t0);
	wl_kv_double("build_seconds", build);
	wl_kv_long("objects", (long)n);
	wl_kv_long("ws_mb", ws_mb);
	wl_report_end();
	return 0;
}
