/*
 * mstress.c — mixed-size many-thread stress (after mimalloc-bench's mstress).
 *
 * 2*nproc threads each keep a table of live objects; each step picks a
 * random slot and frees, reallocates or allocates there, so lifetimes are
 * random. Sizes follow a power law from 8 B to 64 KiB (small ones common,
 * a long tail of big ones). A shared transfer table moves objects between
 * threads (cross-thread frees) and keeps some alive across rounds; threads
 * end and restart every round.
 * Arguments: threads= (2*nproc) slots= per thread (2000) steps= per thread
 * per round (200000) rounds= (5) min= (8) max= (65536) skew= (3) seed= (1).
 * One op = one malloc, calloc, realloc or free.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wl_common.h"

#define TRANSFER 1024

static _Atomic(unsigned char *) transfer[TRANSFER];
static long per, steps, minsz, maxsz, seed;
static double skew;

struct worker {
	pthread_t tid;
	long index;
	long ops;
	unsigned long check;
};

static unsigned char *object_new(struct wl_rng *r, int zeroed)
{
	size_t sz = wl_size_powerlaw(r, (size_t)minsz, (size_t)maxsz, skew);
	unsigned char *p = zeroed ? calloc(1, sz) : malloc(sz);

	wl_check(p, sz);
	memset(p, (int)sz, sz < 64 ? sz : 64);
	p[sz - 1] = 7;
	return p;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned char **local = wl_check(calloc((size_t)per, sizeof(void *)),
					 (size_t)per * sizeof(void *));
	struct wl_rng r;
	unsigned long check = 0;
	long ops = 0;

	wl_rng_seed(&r, (uint64_t)seed, (uint64_t)w->index + 1);
	for (long i = 0; i < steps; i++) {
		uint64_t x = wl_rand(&r);
		long k = (long)((x >> 8) % (uint64_t)per);
		unsigned pct = (unsigned)(x & 0xff) % 100;

		if (pct < 5) {
			/* Hand an object to whichever thread takes the slot next. */
			long t = (long)((x >> 40) % TRANSFER);
			local[k] = atomic_exchange(&transfer[t], local[k]);
		} else if (local[k] && pct < 10) {
			size_t sz = wl_size_powerlaw(&r, (size_t)minsz,
						     (size_t)maxsz, skew);
			local[k] = wl_check(realloc(local[k], sz), sz);
			local[k][sz - 1] = 3;
			ops++;
		} else if (local[k]) {
			check += local[k][0];
			free(local[k]);
			local[k] = NULL;
			ops++;
		} else {
			local[k] = object_new(&r, pct > 95);
			ops++;
		}
	}
	for (long k = 0; k < per; k++) {
		if (local[k]) {
			free(local[k]);
			ops++;
		}
	}
	free(local);
	w->ops = ops;
	w->check = check;
	return NULL;
}

int main(int argc, char **argv)
{
	wl_args_init(argc, argv);
	long threads = wl_arg_long("threads", 2L * wl_nproc());
	long rounds = wl_arg_long("rounds", 5);
	double ops = 0;
	unsigned long check = 0;

	per = wl_arg_long("slots", 2000);
	steps = wl_arg_long("steps", 200000);
	minsz = wl_arg_long("min", 8);
	maxsz = wl_arg_long("max", 65536);
	skew = wl_arg_double("skew", 3.0);
	seed = wl_arg_long("seed", 1);
	if (threads < 1 || per < 1 || rounds < 1 || minsz < 1 || maxsz < minsz) {
		fprintf(stderr, "mstress: bad arguments\n");
		return 2;
	}
	struct worker *w = wl_check(calloc((size_t)threads, sizeof(*w)),
				    (size_t)threads * sizeof(*w));

	double t0 = wl_now();
	for (long round = 0; round < rounds; round++) {
		for (long t = 0; t < threads; t++) {
			w[t].index = round * threads + t;
			if (pthread_create(&w[t].tid, NULL, worker_main, &w[t])) {
				perror("pthread_create");
				return 1;
			}
		}
		/* Sample mid-round, while every thread holds its table. */
		wl_sleep(0.01);
		wl_peak_note();
		for (long t = 0; t < threads; t++) {
			pthread_join(w[t].tid, NULL);
			ops += (double)w[t].ops;
			check += w[t].check;
		}
	}
	for (long t = 0; t < TRANSFER; t++)
		free(atomic_load(&transfer[t]));
	double secs = wl_now() - t0;

	free(w);
	wl_report_main("mstress", threads, ops, secs);
	wl_kv_long("check", (long)(check & 0xffff));
	wl_report_end();
	return 0;
}
