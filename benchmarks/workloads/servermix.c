/*
 * servermix.c — wl_servermix: the server-mix churn of issue 11. Each of
 * `threads` threads keeps `live` blocks: 70 % of 16-256 B, 25 % of
 * 256 B-8 KiB, 5 % of 8-256 KiB; each step frees one at random and
 * allocates another in its place, touching every page of it (a server
 * writes what it allocates). One op = one free + one malloc (a pair),
 * timed after every thread has filled its table (the churn alone).
 * Plain malloc/free: run it under LD_PRELOAD to compare allocators.
 * Arguments: threads= (nproc) live= (20000) steps= per thread (2000000)
 * seed= (1) touch_pages= (1; 0: only the first and last byte, which
 * leaves the allocator's own cost bare). Prints key=value lines (pairs/s as ops_per_s).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wl_common.h"

static long live, steps, seed, touch_pages;
static pthread_barrier_t bar;
static double t_start, t_end; /* the churn alone, after every thread filled */

static size_t pick_size(struct wl_rng *r)
{
	uint64_t c = wl_rand(r) % 100, x = wl_rand(r);
	if (c < 70)
		return 16 + x % (256 - 16 + 1);
	if (c < 95)
		return 256 + x % (8192 - 256 + 1);
	return 8192 + x % (262144 - 8192 + 1);
}

static void *block(struct wl_rng *r)
{
	size_t sz = pick_size(r);
	unsigned char *p = wl_check(malloc(sz), sz);
	if (touch_pages)
		for (size_t o = 0; o < sz; o += 4096) /* every page */
			p[o] = (unsigned char)o;
	p[0] = 1;
	p[sz - 1] = 1;
	return p;
}

static void *worker(void *arg)
{
	long t = (long)(intptr_t)arg;
	struct wl_rng r;
	wl_rng_seed(&r, (uint64_t)seed, (uint64_t)t + 1);
	void **v = wl_check(malloc((size_t)live * sizeof *v), (size_t)live * sizeof *v);
	for (long i = 0; i < live; i++)
		v[i] = block(&r);
	pthread_barrier_wait(&bar);
	if (t == 0)
		t_start = wl_now();
	for (long s = 0; s < steps; s++) {
		long k = (long)(wl_rand(&r) % (uint64_t)live);
		free(v[k]);
		v[k] = block(&r);
	}
	pthread_barrier_wait(&bar);
	if (t == 0) { /* the steady state: time, huge-page coverage and RSS */
		t_end = wl_now();
		wl_peak_note();
	}
	for (long i = 0; i < live; i++)
		free(v[i]);
	free(v);
	return NULL;
}

int main(int argc, char **argv)
{
	wl_args_init(argc, argv);
	long threads = wl_arg_long("threads", wl_nproc());
	live = wl_arg_long("live", 20000);
	steps = wl_arg_long("steps", 2000000);
	seed = wl_arg_long("seed", 1);
	touch_pages = wl_arg_long("touch_pages", 1);
	if (threads < 1 || live < 1 || steps < 0) {
		fprintf(stderr, "servermix: bad arguments\n");
		return 2;
	}
	pthread_t *tid = wl_check(malloc((size_t)threads * sizeof *tid), (size_t)threads * sizeof *tid);
	pthread_barrier_init(&bar, NULL, (unsigned)threads);
	for (long t = 0; t < threads; t++)
		if (pthread_create(&tid[t], NULL, worker, (void *)(intptr_t)t)) {
			perror("pthread_create");
			return 1;
		}
	for (long t = 0; t < threads; t++)
		pthread_join(tid[t], NULL);
	double secs = t_end - t_start;
	free(tid);
	wl_kv_long("live", live);
	wl_report_main("servermix", threads, (double)threads * (double)steps, secs);
	wl_report_end();
	return 0;
}
