/*
 * larson.c — larson-style server churn.
 *
 * A shared array of object slots stands for a server's live objects. Worker
 * threads replace random slots with new objects of random size, so most
 * objects are freed by a thread other than the one that allocated them.
 * Threads end and new ones start each round (a server's thread churn), so
 * the allocator's thread-exit path is exercised too.
 * Arguments: threads= (nproc) slots= per thread (1000) iters= per thread per
 * round (200000) rounds= (4) min= (8) max= (1000) seed= (1).
 * One op = one malloc + one free.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wl_common.h"

static _Atomic(unsigned char *) *slots;
static long nslots, iters, minsz, maxsz, seed;

struct worker {
	pthread_t tid;
	long index;
	unsigned long check;
};

static unsigned char *new_object(struct wl_rng *r)
{
	size_t sz = (size_t)minsz + wl_rand(r) % (size_t)(maxsz - minsz + 1);
	unsigned char *p = wl_check(malloc(sz), sz);

	/* A server writes what it allocates: header and tail. */
	p[0] = (unsigned char)sz;
	p[sz - 1] = (unsigned char)(sz >> 8);
	return p;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct wl_rng r;
	unsigned long check = 0;

	wl_rng_seed(&r, (uint64_t)seed, (uint64_t)w->index + 1);
	for (long i = 0; i < iters; i++) {
		long k = (long)(wl_rand(&r) % (uint64_t)nslots);
		unsigned char *p = new_object(&r);
		unsigned char *old = atomic_exchange_explicit(&slots[k], p,
							memory_order_acq_rel);

		if (old) {
			check += old[0];
			free(old);
		}
	}
	w->check = check;
	return NULL;
}

int main(int argc, char **argv)
{
	wl_args_init(argc, argv);
	long threads = wl_arg_long("threads", wl_nproc());
	long per = wl_arg_long("slots", 1000);
	long rounds = wl_arg_long("rounds", 4);
	struct wl_rng r;
	unsigned long check = 0;

	iters = wl_arg_long("iters", 200000);
	minsz = wl_arg_long("min", 8);
	maxsz = wl_arg_long("max", 1000);
	seed = wl_arg_long("seed", 1);
	if (threads < 1 || per < 1 || rounds < 1 || minsz < 1 || maxsz < minsz) {
		fprintf(stderr, "larson: bad arguments\n");
		return 2;
	}
	nslots = threads * per;
	slots = wl_check(calloc((size_t)nslots, sizeof(*slots)),
			 (size_t)nslots * sizeof(*slots));
	struct worker *w = wl_check(calloc((size_t)threads, sizeof(*w)),
				    (size_t)threads * sizeof(*w));

	wl_rng_seed(&r, (uint64_t)seed, 0);
	for (long k = 0; k < nslots; k++)
		atomic_store(&slots[k], new_object(&r));

	double t0 = wl_now();
	for (long round = 0; round < rounds; round++) {
		for (long t = 0; t < threads; t++) {
			w[t].index = round * threads + t;
			if (pthread_create(&w[t].tid, NULL, worker_main, &w[t])) {
				perror("pthread_create");
				return 1;
			}
		}
		for (long t = 0; t < threads; t++) {
			pthread_join(w[t].tid, NULL);
			check += w[t].check;
		}
		wl_peak_note();
	}
	double secs = wl_now() - t0;

	for (long k = 0; k < nslots; k++)
		free(atomic_load(&slots[k]));
	free(w);
	free(slots);
	wl_report_main("larson", threads, (double)(threads * iters * rounds), secs);
	wl_kv_long("check", (long)(check & 0xffff));
	wl_report_end();
	return 0;
}
