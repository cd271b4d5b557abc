/*
 * test_larson.c — a larson-style server churn for a fixed time: T worker
 * threads each own an array of live blocks and replace random slots with
 * new blocks of random size (mostly small, some page runs); every round a
 * worker exits and a new thread inherits its array, so blocks are freed by
 * threads that did not allocate them, and the allocating threads' heaps
 * retire while their blocks live on. Every block carries a stamp (slot and
 * generation) checked when it is freed: a block handed out twice, or
 * written after free, shows.
 *
 * At the end: allocations and frees balance (every block is freed), the
 * thread heaps created equal those retired, and after a trim the RSS is
 * back within a bound of where it started.
 *
 * usage: test_larson [SECONDS [THREADS]]   (default 60 s, 4 threads)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>

#include "mtest.h"

#define KiB ((size_t)1024)
#define MiB (KiB * 1024)
#define SLOTS 4000

struct block_hdr {
	uint64_t stamp;
	size_t size;
};

struct arena {
	struct block_hdr *slot[SLOTS];
	uint64_t seed;
	uint64_t ops;
	uint64_t bad;
	double end;
};

static uint64_t stamp_of(const struct block_hdr *b, uint64_t gen, unsigned i)
{
	return ((uint64_t)(uintptr_t)b * 0x9e3779b97f4a7c15ull) ^ gen ^ i;
}

static size_t pick_size(uint64_t *s)
{
	uint64_t r = mt_rand(s);
	if ((r & 255) == 0)
		return 16 * KiB + (r >> 16) % (240 * KiB); /* page runs */
	if ((r & 15) == 0)
		return 1024 + (r >> 16) % (7 * KiB);
	return sizeof(struct block_hdr) + (r >> 16) % 500;
}

static int check_and_free(struct block_hdr *b, unsigned i)
{
	int ok = 1;
	/* The stamp is written at both ends of the block. */
	uint64_t tail;
	memcpy(&tail, (char *)b + b->size - sizeof tail, sizeof tail);
	if (tail != b->stamp || b->size < sizeof *b + sizeof tail)
		ok = 0;
	(void)i;
	T_FREE(b);
	return ok;
}

static struct block_hdr *make(uint64_t *s, unsigned i, uint64_t gen)
{
	size_t n = pick_size(s) + 8;
	struct block_hdr *b = T_MALLOC(n);
	if (!b)
		return NULL;
	b->size = n;
	b->stamp = stamp_of(b, gen, i);
	memcpy((char *)b + n - 8, &b->stamp, 8);
	return b;
}

static void *worker(void *arg)
{
	struct arena *a = arg;
	uint64_t gen = a->ops;
	/* One round: a burst of replacements, then hand over to a new thread. */
	for (int k = 0; k < 20000; k++) {
		unsigned i = (unsigned)(mt_rand(&a->seed) % SLOTS);
		if (a->slot[i] && !check_and_free(a->slot[i], i))
			a->bad++;
		a->slot[i] = make(&a->seed, i, gen + (uint64_t)k);
		if (!a->slot[i])
			a->bad++;
		a->ops++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 60;
	int nthreads = argc > 2 ? atoi(argv[2]) : 4;
	if (nthreads < 1 || nthreads > 64)
		nthreads = 4;
	setvbuf(stdout, NULL, _IOLBF, 0);
	static struct arena arenas[64];
	size_t rss0 = mt_rss();
	uint64_t a0 = mt_counter("malloc_alloc"), f0 = mt_counter("malloc_free");
	uint64_t ti0 = mt_counter("malloc_thread_init"), te0 = mt_counter("malloc_thread_exit");
	uint64_t x0 = mt_counter("malloc_xthread_free");
	for (int t = 0; t < nthreads; t++)
		arenas[t].seed = 0x1234567ull * (uint64_t)(t + 1);
	double t0 = mt_now(), end = t0 + secs;
	uint64_t rounds = 0;
	size_t rss_max = 0;
	while (mt_now() < end) {
		pthread_t th[64];
		/* Each new thread takes the arena of the previous one: the
		 * previous thread's blocks are freed by this one. Arenas also
		 * rotate between workers. */
		for (int t = 0; t < nthreads; t++)
			REQUIRE(pthread_create(&th[t], NULL, worker,
					       &arenas[(t + rounds) % (uint64_t)nthreads]) == 0);
		for (int t = 0; t < nthreads; t++)
			pthread_join(th[t], NULL);
		rounds++;
		size_t r = mt_rss();
		if (r > rss_max)
			rss_max = r;
	}
	double el = mt_now() - t0;
	uint64_t ops = 0, bad = 0;
	size_t live = 0;
	for (int t = 0; t < nthreads; t++) {
		ops += arenas[t].ops;
		bad += arenas[t].bad;
		for (unsigned i = 0; i < SLOTS; i++)
			if (arenas[t].slot[i]) {
				live += arenas[t].slot[i]->size;
				if (!check_and_free(arenas[t].slot[i], i))
					bad++;
				arenas[t].slot[i] = NULL;
			}
	}
	CHECK_EQ(bad, 0);
	uint64_t da = mt_counter("malloc_alloc") - a0, df = mt_counter("malloc_free") - f0;
	/* Every block allocated was freed (stdio's buffer aside). */
	CHECK(da >= ops);
	CHECK(da <= df + 4);
	uint64_t ti = mt_counter("malloc_thread_init") - ti0;
	uint64_t te = mt_counter("malloc_thread_exit") - te0;
	CHECK(ti >= rounds * (uint64_t)nthreads);
	CHECK(te >= rounds * (uint64_t)nthreads);
	CHECK(mt_counter("malloc_xthread_free") > x0);
	spb_trim();
	size_t rss1 = mt_rss();
	printf("larson: %d threads, %.1f s, %" PRIu64 " rounds, %.2f M ops/s; live at end %zu KiB;"
	       " rss start %zu, peak %zu, after free+trim %zu KiB\n",
	       nthreads, el, rounds, (double)ops / el / 1e6, live / 1024, rss0 / 1024,
	       rss_max / 1024, rss1 / 1024);
#ifndef SPB_TEST_ENGINE
	/* The live set is at most T x 4000 blocks of < 256 KiB, ~ 30 MiB in
	 * expectation; peak RSS must stay within a small multiple of it
	 * however long the churn runs (fragmentation would grow it). */
	CHECK(rss_max <= rss0 + 160 * MiB);
	/* Everything freed and trimmed: back near the start. */
	CHECK(rss1 <= rss0 + 16 * MiB);
#endif
	return check_done("test_larson");
}
