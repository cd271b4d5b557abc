/*
 * cache_scratch.c — passive false sharing (Hoard's cache-scratch).
 *
 * The main thread allocates one small object per worker, back to back, so
 * they likely share cache lines, and hands one to each worker. A worker
 * frees it and then repeatedly allocates an object of the same size, writes
 * it many times and frees it. An allocator that gives the worker back the
 * freed object (a line the other workers also write) makes the workers
 * fight over cache lines: the run is slow in proportion to the sharing.
 * Arguments: threads= (nproc) size= bytes (8) iters= per thread (20000)
 * writes= per object (500).
 * One op = one byte-write pass over the object.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "wl_common.h"

static long objsize, iters, writes;

struct worker {
	pthread_t tid;
	volatile char *handed;
	long check;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	long check = 0;

	free((void *)w->handed);
	for (long i = 0; i < iters; i++) {
		volatile char *p = wl_check(malloc((size_t)objsize), (size_t)objsize);

		for (long k = 0; k < writes; k++)
			for (long b = 0; b < objsize; b++)
				p[b] = (char)(p[b] + 1);
		check += p[0];
		free((void *)p);
	}
	w->check = check;
	return NULL;
}

int main(int argc, char **argv)
{
	wl_args_init(argc, argv);
	long threads = wl_arg_long("threads", wl_nproc());
	long check = 0;

	objsize = wl_arg_long("size", 8);
	iters = wl_arg_long("iters", 20000);
	writes = wl_arg_long("writes", 500);
	if (threads < 1 || objsize < 1 || iters < 1 || writes < 1) {
		fprintf(stderr, "cache_scratch: bad arguments\n");
		return 2;
	}
	struct worker *w = wl_check(calloc((size_t)threads, sizeof(*w)),
				    (size_t)threads * sizeof(*w));

	for (long t = 0; t < threads; t++)
		w[t].handed = wl_check(malloc((size_t)objsize), (size_t)objsize);
	double t0 = wl_now();
	for (long t = 0; t < threads; t++) {
		if (pthread_create(&w[t].tid, NULL, worker_main, &w[t])) {
			perror("pthread_create");
			return 1;
		}
	}
	for (long t = 0; t < threads; t++) {
		pthread_join(w[t].tid, NULL);
		check += w[t].check;
	}
	double secs = wl_now() - t0;

	wl_peak_note();
	free(w);
	wl_report_main("cache-scratch", threads,
		       (double)threads * (double)iters * (double)writes, secs);
	wl_kv_long("check", check & 0xffff);
	wl_report_end();
	return 0;
}
