/*
 * test_threads.c — the malloc layer under threads: producer/consumer rings
 * where every block is freed by a thread that did not allocate it (random
 * sizes up to 1 MiB, contents verified on the other side); create/join
 * loops of short-lived threads, some leaving live blocks that main frees
 * later, with bounded RSS and bounded span counters; threads that exit
 * while other threads are still freeing their blocks.
 *
 * Proof that spbmalloc served it: malloc_alloc and malloc_xthread_free
 * grow by at least what the test did. In sanitizer builds (SPB_TEST_ENGINE)
 * the same code drives spb__malloc/spb__free_ptr directly; the RSS bound is
 * not checked there (shadow memory).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>

#include "mtest.h"

#define KiB ((size_t)1024)
#define MiB (KiB * 1024)

#ifdef SPB_TEST_ENGINE
#define SCALE 4 /* sanitizers: fewer rounds, same shapes */
#else
#define SCALE 1
#endif

/* Sizes: mostly small, some page runs, a few up to 1 MiB. */
static size_t rand_size(uint64_t *s)
{
	uint64_t r = mt_rand(s);
	switch (r & 15) {
	case 0:
		return 1 + (r >> 8) % MiB;
	case 1: case 2:
		return 1 + (r >> 8) % (256 * KiB);
	default:
		return 1 + (r >> 8) % 1024;
	}
}

/* ---- producer/consumer rings ---- */

#define RING 512
struct item {
	void *p;
	size_t n;
	uint64_t seed;
};
struct ring {
	struct item slot[RING];
	_Atomic uint64_t head, tail; /* head: producer, tail: consumer */
	uint64_t count;
	uint64_t seed;
	uint64_t bad;
	char pad[64];
};

static void *producer(void *arg)
{
	struct ring *r = arg;
	uint64_t s = r->seed;
	for (uint64_t i = 0; i < r->count; i++) {
		size_t n = rand_size(&s);
		unsigned char *p = T_MALLOC(n);
		REQUIRE(p != NULL);
		uint64_t seed = mt_rand(&s);
		if (n <= 4096)
			mt_fill(p, n, seed);
		else
			mt_stamp(p, n, seed);
		while (atomic_load_explicit(&r->head, memory_order_relaxed) -
			       atomic_load_explicit(&r->tail, memory_order_acquire) >= RING)
			sched_yield();
		uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
		r->slot[h % RING] = (struct item){p, n, seed};
		atomic_store_explicit(&r->head, h + 1, memory_order_release);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct ring *r = arg;
	uint64_t got = 0;
	while (got < r->count) {
		uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
		if (t == atomic_load_explicit(&r->head, memory_order_acquire)) {
			sched_yield();
			continue;
		}
		struct item it = r->slot[t % RING];
		atomic_store_explicit(&r->tail, t + 1, memory_order_release);
		int ok = it.n <= 4096 ? mt_verify(it.p, it.n, it.seed)
				      : mt_stamp_ok(it.p, it.n, it.seed);
		if (!ok)
			r->bad++; /* the consumer alone writes it */
		T_FREE(it.p);
		got++;
	}
	return NULL;
}

static void test_rings(void)
{
	enum { PAIRS = 2 };
	static struct ring rings[PAIRS];
	pthread_t tp[PAIRS], tc[PAIRS];
	uint64_t per = 150000 / SCALE;
	uint64_t a0 = mt_counter("malloc_alloc"), x0 = mt_counter("malloc_xthread_free");
	double t0 = mt_now();
	for (int i = 0; i < PAIRS; i++) {
		rings[i].count = per;
		rings[i].seed = 0x1234567ull * (uint64_t)(i + 1);
		REQUIRE(pthread_create(&tc[i], NULL, consumer, &rings[i]) == 0);
		REQUIRE(pthread_create(&tp[i], NULL, producer, &rings[i]) == 0);
	}
	for (int i = 0; i < PAIRS; i++) {
		pthread_join(tp[i], NULL);
		pthread_join(tc[i], NULL);
		CHECK_EQ(rings[i].bad, 0);
		CHECK_EQ(atomic_load(&rings[i].head), per);
		CHECK_EQ(atomic_load(&rings[i].tail), per);
	}
	uint64_t xf = mt_counter("malloc_xthread_free") - x0;
	CHECK(mt_counter("malloc_alloc") - a0 >= PAIRS * per);
	/* Every small block crossed threads (page runs count as plain frees). */
	CHECK(xf >= PAIRS * per / 2);
	printf("rings: %d pairs x %" PRIu64 " blocks in %.2f s, %" PRIu64 " cross-thread frees\n",
	       PAIRS, per, mt_now() - t0, xf);
}

/* ---- create/join loops ---- */

#define LEFT_PER_THREAD 4
static void *left[4000 * LEFT_PER_THREAD];

struct worker {
	int id;
	uint64_t bad;
};

static void *short_lived(void *arg)
{
	struct worker *w = arg;
	uint64_t s = 0x9e3779b97f4a7c15ull ^ (uint64_t)w->id;
	void *mine[64];
	size_t sz[64];
	for (int i = 0; i < 64; i++) {
		sz[i] = (i % 16 == 15) ? 40 * KiB + (mt_rand(&s) % (100 * KiB)) : 1 + mt_rand(&s) % 2048;
		mine[i] = T_MALLOC(sz[i]);
		if (!mine[i]) {
			w->bad++;
			return NULL;
		}
		mt_fill(mine[i], sz[i] < 256 ? sz[i] : 256, (uint64_t)w->id + (uint64_t)i);
	}
	for (int i = 0; i < 64; i++) {
		if (!mt_verify(mine[i], sz[i] < 256 ? sz[i] : 256, (uint64_t)w->id + (uint64_t)i))
			w->bad++;
		/* Every 3rd thread leaves a few small blocks for main to free. */
		if (w->id % 3 == 0 && i < LEFT_PER_THREAD && sz[i] <= 2048)
			left[(size_t)w->id * LEFT_PER_THREAD + (size_t)i] = mine[i];
		else
			T_FREE(mine[i]);
	}
	return NULL;
}

static void run_threads(int from, int to, struct worker *ws)
{
	/* Two at a time: thread start and exit overlap with other threads. */
	for (int i = from; i < to; i += 2) {
		pthread_t t[2];
		int n = i + 1 < to ? 2 : 1;
		for (int k = 0; k < n; k++) {
			ws[i + k].id = i + k;
			REQUIRE(pthread_create(&t[k], NULL, short_lived, &ws[i + k]) == 0);
		}
		for (int k = 0; k < n; k++)
			pthread_join(t[k], NULL);
	}
}

static void test_create_join(void)
{
	int total = 2000 / SCALE, warm = 200 / SCALE;
	static struct worker ws[4000];
	uint64_t ti0 = mt_counter("malloc_thread_init");
	uint64_t te0 = mt_counter("malloc_thread_exit");
	double t0 = mt_now();
	run_threads(0, warm, ws);
	size_t rss_warm = mt_rss();
	uint64_t sa_warm = mt_counter("malloc_span_alloc");
	uint64_t sf_warm = mt_counter("malloc_span_free");
	uint64_t ab_warm = mt_counter("malloc_span_abandon");
	uint64_t ad_warm = mt_counter("malloc_span_adopt");
	run_threads(warm, total, ws);
	size_t rss_end = mt_rss();
	uint64_t bad = 0;
	for (int i = 0; i < total; i++)
		bad += ws[i].bad;
	CHECK_EQ(bad, 0);
	/* Each thread made one heap and retired it. */
	CHECK(mt_counter("malloc_thread_init") - ti0 >= (uint64_t)total);
	CHECK(mt_counter("malloc_thread_exit") - te0 >= (uint64_t)total);
	/* Spans: a thread's spans go back at exit (freed or abandoned), and
	 * abandoned spans are adopted by later threads; the number alive
	 * (allocated - freed - still abandoned) must not grow with the thread
	 * count. Left-behind blocks pin at most one span per small bin used:
	 * 1800 threads x 4 blocks fit in a few dozen spans. */
	uint64_t sa = mt_counter("malloc_span_alloc") - sa_warm;
	uint64_t sf = mt_counter("malloc_span_free") - sf_warm;
	uint64_t ab = mt_counter("malloc_span_abandon") - ab_warm;
	uint64_t ad = mt_counter("malloc_span_adopt") - ad_warm;
	printf("create/join: %d threads in %.2f s; spans +%" PRIu64 " -%" PRIu64
	       ", abandoned %" PRIu64 ", adopted %" PRIu64 "; rss %zu -> %zu KiB\n",
	       total, mt_now() - t0, sa, sf, ab, ad, rss_warm / 1024, rss_end / 1024);
	CHECK(sa <= sf + 200);
#ifndef SPB_TEST_ENGINE
	/* RSS bound. Each thread touches ~110 KiB of small blocks and ~4
	 * page runs of 40..140 KiB; if a thread's spans or runs were not
	 * handed back, 1800 threads would add >= 1800 x 4 KiB = 7 MiB even at
	 * one page each, and ~200 MiB at the full footprint. Stacks are
	 * reused by glibc's stack cache. 6 MiB of slack covers the heap
	 * descriptors (pooled), the left-behind blocks (600 threads x 4 x
	 * <= 2 KiB = 4.7 MiB at worst, less as they share spans) and noise. */
	CHECK(rss_end <= rss_warm + 6 * MiB);
#endif
	/* Main frees what the threads left: cross-thread frees into
	 * abandoned spans, which a trim then collects. */
	size_t n = 0;
	for (size_t i = 0; i < sizeof left / sizeof *left; i++)
		if (left[i]) {
			T_FREE(left[i]);
			left[i] = NULL;
			n++;
		}
	CHECK(n >= (size_t)(total / 3) * 2);
	spb_trim();
	uint64_t live_spans = mt_counter("malloc_span_alloc") - mt_counter("malloc_span_free");
	printf("after freeing %zu left blocks and trim: spans alive (alloc - free) %" PRIu64
	       ", rss %zu KiB\n", n, live_spans, mt_rss() / 1024);
	/* Only main's own spans and the rings' leftovers stay; a sweep that
	 * releases spans must count them. */
	CHECK(live_spans <= 400);
}

/* ---- threads that exit while others free their blocks ---- */

#define HANDOFF 256
struct handoff {
	void *blk[HANDOFF];
	size_t n[HANDOFF];
	_Atomic int ready;
	uint64_t bad;
	int round;
};

static void *alloc_and_exit(void *arg)
{
	struct handoff *h = arg;
	uint64_t s = (uint64_t)h->round * 77 + 1;
	for (int i = 0; i < HANDOFF; i++) {
		h->n[i] = rand_size(&s) % 20000 + 1;
		h->blk[i] = T_MALLOC(h->n[i]);
		if (h->blk[i])
			mt_fill(h->blk[i], h->n[i] < 64 ? h->n[i] : 64, (uint64_t)i);
		else
			h->bad++;
	}
	atomic_store(&h->ready, 1);
	return NULL; /* exits at once: the freer races with the heap's exit */
}

static void *free_handed(void *arg)
{
	struct handoff *h = arg;
	while (!atomic_load(&h->ready))
		sched_yield();
	for (int i = 0; i < HANDOFF; i++) {
		if (!h->blk[i])
			continue;
		if (!mt_verify(h->blk[i], h->n[i] < 64 ? h->n[i] : 64, (uint64_t)i))
			h->bad++;
		T_FREE(h->blk[i]);
	}
	return NULL;
}

static void test_exit_while_freeing(void)
{
	int rounds = 300 / SCALE;
	uint64_t bad = 0;
	uint64_t a0 = mt_counter("malloc_alloc"), f0 = mt_counter("malloc_free");
	double t0 = mt_now();
	for (int r = 0; r < rounds; r++) {
		static struct handoff h[2];
		pthread_t a[2], f[2];
		for (int k = 0; k < 2; k++) {
			memset(&h[k], 0, sizeof h[k]);
			h[k].round = r * 2 + k;
			REQUIRE(pthread_create(&f[k], NULL, free_handed, &h[k]) == 0);
			REQUIRE(pthread_create(&a[k], NULL, alloc_and_exit, &h[k]) == 0);
		}
		for (int k = 0; k < 2; k++) {
			pthread_join(a[k], NULL);
			pthread_join(f[k], NULL);
			bad += h[k].bad;
		}
	}
	CHECK_EQ(bad, 0);
	uint64_t da = mt_counter("malloc_alloc") - a0, df = mt_counter("malloc_free") - f0;
	CHECK(da >= (uint64_t)rounds * 2 * HANDOFF);
	/* All handed-off blocks were freed: allocations and frees balance
	 * (printf's buffer, if any, is the only other traffic). */
	CHECK(da <= df + 8);
	printf("exit-while-freeing: %d rounds in %.2f s, %" PRIu64 " allocs, %" PRIu64 " frees\n",
	       rounds, mt_now() - t0, da, df);
}

/* ---- malloc from another TLS destructor, after ours has run ---- */

static pthread_key_t late_key;

static void late_dtor(void *v)
{
	/* Runs after (or before) spbmalloc's own key destructor: either way
	 * the blocks are served and the heap this may re-create is retired. */
	T_FREE(v);
	void *p = T_MALLOC(200);
	void *q = T_MALLOC(50000);
	if (p)
		memset(p, 1, 200);
	T_FREE(q);
	T_FREE(p);
}

static void *late_thread(void *arg)
{
	(void)arg;
	pthread_setspecific(late_key, T_MALLOC(64));
	return NULL;
}

static void test_tls_destructor_malloc(void)
{
	REQUIRE(pthread_key_create(&late_key, late_dtor) == 0);
	int n = 400 / SCALE;
	uint64_t ti0 = mt_counter("malloc_thread_init"), te0 = mt_counter("malloc_thread_exit");
	uint64_t a0 = mt_counter("malloc_alloc"), f0 = mt_counter("malloc_free");
	for (int i = 0; i < n; i++) {
		pthread_t t;
		REQUIRE(pthread_create(&t, NULL, late_thread, NULL) == 0);
		pthread_join(t, NULL);
	}
	uint64_t ti = mt_counter("malloc_thread_init") - ti0, te = mt_counter("malloc_thread_exit") - te0;
	uint64_t da = mt_counter("malloc_alloc") - a0, df = mt_counter("malloc_free") - f0;
	printf("tls-destructor malloc: %d threads, heaps created %" PRIu64 ", retired %" PRIu64 "\n",
	       n, ti, te);
	/* Every heap a thread made, including one re-made by a late
	 * destructor, is retired: none stays live with its spans. */
	CHECK_EQ(ti, te);
	CHECK(da >= (uint64_t)n * 3);
	CHECK(da <= df + 4);
	pthread_key_delete(late_key);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("test_threads%s\n", SCALE > 1 ? " (sanitizer build: engine entry points)" : "");
	test_rings();
	test_exit_while_freeing();
	test_create_join();
	test_tls_destructor_malloc();
	return check_done("test_threads");
}
