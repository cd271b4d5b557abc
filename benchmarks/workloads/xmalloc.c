/*
 * xmalloc.c — xmalloc-style producer/consumer.
 *
 * Each pair has one producer thread that allocates objects and one consumer
 * thread that frees them; objects travel through a bounded single-producer
 * single-consumer ring. Every free is a cross-thread free, and the
 * producer's allocator cache only refills from memory freed elsewhere.
 * Arguments: pairs= (max(1, nproc/2)) objects= per pair (2000000)
 * ring= slots (4096) min= (16) max= (512) seed= (1).
 * One op = one malloc + one free.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "wl_common.h"

struct ring {
	_Alignas(64) _Atomic long head;	/* next slot the consumer reads */
	_Alignas(64) _Atomic long tail;	/* next slot the producer writes */
	_Alignas(64) unsigned char **slot;
	long size;
	long objects;
	long index;
	unsigned long check;
	pthread_t prod, cons;
};

static long minsz, maxsz, seed;

static void *producer(void *arg)
{
	struct ring *q = arg;
	struct wl_rng r;
	long tail = 0;

	wl_rng_seed(&r, (uint64_t)seed, (uint64_t)q->index + 1);
	for (long i = 0; i < q->objects; i++) {
		size_t sz = (size_t)minsz + wl_rand(&r) % (size_t)(maxsz - minsz + 1);
		unsigned char *p = wl_check(malloc(sz), sz);

		p[0] = (unsigned char)i;
		p[sz - 1] = 1;
		while (tail - atomic_load_explicit(&q->head, memory_order_acquire)
		       >= q->size)
			sched_yield();
		q->slot[tail % q->size] = p;
		atomic_store_explicit(&q->tail, ++tail, memory_order_release);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct ring *q = arg;
	unsigned long check = 0;
	long head = 0;

	while (head < q->objects) {
		long tail = atomic_load_explicit(&q->tail, memory_order_acquire);

		if (tail == head) {
			sched_yield();
			continue;
		}
		/* Free a batch, then publish: one release per batch. */
		while (head < tail) {
			unsigned char *p = q->slot[head % q->size];

			check += p[0];
			free(p);
			head++;
		}
		atomic_store_explicit(&q->head, head, memory_order_release);
	}
	q->check = check;
	return NULL;
}

int main(int argc, char **argv)
{
	wl_args_init(argc, argv);
	long pairs = wl_arg_long("pairs", wl_nproc() / 2 > 0 ? wl_nproc() / 2 : 1);
	long objects = wl_arg_long("objects", 2000000);
	long ringsz = wl_arg_long("ring", 4096);
	unsigned long check = 0;

	minsz = wl_arg_long("min", 16);
	maxsz = wl_arg_long("max", 512);
	seed = wl_arg_long("seed", 1);
	if (pairs < 1 || objects < 1 || ringsz < 1 || minsz < 1 || maxsz < minsz) {
		fprintf(stderr, "xmalloc: bad arguments\n");
		return 2;
	}
	struct ring *q = wl_check(aligned_alloc(64, sizeof(*q) * (size_t)pairs),
				  sizeof(*q) * (size_t)pairs);

	double t0 = wl_now();
	for (long i = 0; i < pairs; i++) {
		atomic_init(&q[i].head, 0);
		atomic_init(&q[i].tail, 0);
		q[i].size = ringsz;
		q[i].objects = objects;
		q[i].index = i;
		q[i].slot = wl_check(calloc((size_t)ringsz, sizeof(void *)),
				     (size_t)ringsz * sizeof(void *));
		if (pthread_create(&q[i].cons, NULL, consumer, &q[i]) ||
		    pthread_create(&q[i].prod, NULL, producer, &q[i])) {
			perror("pthread_create");
			return 1;
		}
	}
	for (long i = 0; i < pairs; i++) {
		pthread_join(q[i].prod, NULL);
		wl_peak_note();
		pthread_join(q[i].cons, NULL);
		check += q[i].check;
		free(q[i].slot);
	}
	double secs = wl_now() - t0;

	free(q);
	wl_report_main("xmalloc", pairs * 2, (double)(pairs * objects), secs);
	wl_kv_long("check", (long)(check & 0xffff));
	wl_report_end();
	return 0;
}
