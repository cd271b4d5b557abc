/*
 * test_spantrim.c — span trim (lib/span.c, lib/heap.c): after a mass free,
 * the pages of partly used spans that no live block touches go back to
 * the OS, so a refill with another size costs new memory only for what
 * it holds; the span's own size class takes them back when it needs them.
 *
 * Run with SPBMALLOC_DECAY_MS=50 (ctest).
 * 1. 32 MiB of 2 KiB blocks, each stamped; 90 % freed at random: the
 *    spans are queued (malloc_span_trim_queue).
 * 2. After the decay delay, 28 MiB of 24 KiB blocks (another size class):
 *    the refills trim the 2 KiB spans (malloc_span_trim, _pages), and RSS
 *    grows by less than half of the new bytes (without the trim it grows
 *    by all of them: the freed 2 KiB blocks cannot hold 24 KiB ones).
 *    Every kept 2 KiB block still holds its stamp.
 * 3. A second free of a freed block on a given-back page is still
 *    detected ("double free"): the span's bitmap, not the page, says so.
 * 4. 2 KiB blocks again, as many as were freed: the given-back pages are
 *    taken back (malloc_span_untrim_pages), every block (old and new)
 *    holds its stamp.
 * 5. spb_trim() trims the calling thread's queued spans at once, due or
 *    not (1 KiB blocks, no wait).
 * 6. opt.span_trim_pct = 0: new spans are never queued.
 * 7. A heap that did not shrink by half (a new thread: 4 KiB blocks, 40 %
 *    freed, then a refill of another size) splits no huge page for a
 *    span trim (span_trim_split does not move), though its spans are
 *    looked at (malloc_span_trim_queue, and a trim or a skip each).
 */
#include <pthread.h>
#include "mtest.h"

#define MIB ((size_t)1 << 20)

static void *freed_block;

static void free_again(void *arg)
{
	(void)arg;
	T_FREE(freed_block);
}

static long set_opt(const char *name, long v)
{
	long old = -1;
	size_t len = sizeof old;
	REQUIRE(spb_ctl(name, &old, &len, &v, sizeof v) == 0);
	return old;
}

/* n blocks of size bytes, stamped with their index; 90 % freed at random
 * (the kept ones stay in v, the rest NULL). Returns blocks kept. */
static size_t build_and_free(void **v, size_t n, size_t size, uint64_t *rng, void **one_freed)
{
	for (size_t i = 0; i < n; i++) {
		v[i] = T_MALLOC(size);
		REQUIRE(v[i] != NULL);
		mt_fill(v[i], size, i);
	}
	size_t kept = 0;
	for (size_t i = 0; i < n; i++) {
		if (mt_rand(rng) % 10 == 0) {
			kept++;
			continue;
		}
		if (one_freed && !*one_freed)
			*one_freed = v[i];
		T_FREE(v[i]);
		v[i] = NULL;
	}
	return kept;
}

static void *churn_thread(void *arg)
{
	uint64_t *res = arg, rng = 0x77aa55ull;
	const size_t n = 16 * MIB / 4096, nb = 4 * MIB / (24 * 1024);
	void **v = calloc(n, sizeof *v), **w = calloc(nb, sizeof *w);
	REQUIRE(v && w);
	uint64_t split0 = mt_counter("span_trim_split");
	uint64_t looked0 = mt_counter("malloc_span_trim") + mt_counter("malloc_span_trim_skip");
	for (size_t i = 0; i < n; i++) {
		v[i] = T_MALLOC(4096);
		REQUIRE(v[i] != NULL);
		mt_fill(v[i], 4096, i);
	}
	for (size_t i = 0; i < n; i++)
		if (mt_rand(&rng) % 10 < 4) {
			T_FREE(v[i]);
			v[i] = NULL;
		}
	usleep(150 * 1000);
	for (size_t i = 0; i < nb; i++) {
		w[i] = T_MALLOC(24 * 1024);
		REQUIRE(w[i] != NULL);
		mt_fill(w[i], 24 * 1024, i);
	}
	res[0] = mt_counter("span_trim_split") - split0;
	res[1] = mt_counter("malloc_span_trim") + mt_counter("malloc_span_trim_skip") - looked0;
	res[2] = 1;
	for (size_t i = 0; i < n; i++) {
		if (v[i] && !mt_verify(v[i], 4096, i))
			res[2] = 0;
		T_FREE(v[i]);
	}
	for (size_t i = 0; i < nb; i++)
		T_FREE(w[i]);
	free(v);
	free(w);
	return NULL;
}

static bool verify_all(void **v, size_t n, size_t size)
{
	bool ok = true;
	for (size_t i = 0; i < n; i++)
		if (v[i] && !mt_verify(v[i], size, i))
			ok = false;
	return ok;
}

int main(void)
{
	uint64_t rng = 0x5eed1234abcdull;
	const size_t small = 2048, n = 32 * MIB / 2048;
	const size_t big = 24 * 1024, nbig = 28 * MIB / (24 * 1024);
	void **v = calloc(n, sizeof *v), **w = calloc(nbig, sizeof *w);
	REQUIRE(v && w);

	/* 1. */
	uint64_t q0 = mt_counter("malloc_span_trim_queue");
	uint64_t t0 = mt_counter("malloc_span_trim"), p0 = mt_counter("malloc_span_trim_pages");
	void *one = NULL;
	size_t rss_built;
	T_FREE(T_MALLOC(big)); /* the big class's first span before the RSS mark */
	for (size_t i = 0; i < n; i++) {
		v[i] = T_MALLOC(small);
		REQUIRE(v[i] != NULL);
		mt_fill(v[i], small, i);
	}
	rss_built = mt_rss();
	uintptr_t *gone = calloc(n, sizeof *gone);
	REQUIRE(gone != NULL);
	for (size_t i = 0; i < n; i++)
		if (mt_rand(&rng) % 10 != 0) {
			gone[i] = (uintptr_t)v[i];
			T_FREE(v[i]);
			v[i] = NULL;
		}
	/* A freed block whose page holds no kept block (given back in 2). */
	for (size_t i = 0; i < n && !one; i++) {
		bool alone = gone[i] != 0;
		for (size_t j = 0; j < n && alone; j++)
			if (v[j] && ((uintptr_t)v[j] >> 12) == (gone[i] >> 12))
				alone = false;
		if (alone)
			one = (void *)gone[i];
	}
	free(gone);
	REQUIRE(one != NULL);
	CHECK(mt_counter("malloc_span_trim_queue") > q0);

	/* 2. */
	usleep(150 * 1000); /* past SPBMALLOC_DECAY_MS */
	for (size_t i = 0; i < nbig; i++) {
		w[i] = T_MALLOC(big);
		REQUIRE(w[i] != NULL);
		mt_fill(w[i], big, i);
	}
	size_t rss_refill = mt_rss();
	uint64_t trims = mt_counter("malloc_span_trim") - t0;
	uint64_t pages = mt_counter("malloc_span_trim_pages") - p0;
	fprintf(stderr, "built %zu KiB, after refill %zu KiB (+%zu KiB for %zu KiB of new blocks); "
		"%llu spans trimmed, %llu pages\n", rss_built >> 10, rss_refill >> 10,
		(rss_refill - rss_built) >> 10, (nbig * big) >> 10, (unsigned long long)trims,
		(unsigned long long)pages);
	CHECK(trims > 0);
	/* 2 KiB blocks, 10 % kept at random: about 0.9^2 of the pages are
	 * free (each holds two blocks); at least half of them given back. */
	CHECK(pages * 4096 >= 32 * MIB * 81 / 100 / 2);
	CHECK(rss_refill < rss_built + nbig * big / 2);
	CHECK(verify_all(v, n, small));
	CHECK(verify_all(w, nbig, big));

	/* 3. */
	{
		char out[512] = "";
		freed_block = one;
		int st = check_death(free_again, NULL, out, sizeof out);
		CHECK(st != 0 && strstr(out, "double free") != NULL);
	}

	/* 4. */
	uint64_t u0 = mt_counter("malloc_span_untrim_pages");
	for (size_t i = 0; i < n; i++)
		if (!v[i]) {
			v[i] = T_MALLOC(small);
			REQUIRE(v[i] != NULL);
			mt_fill(v[i], small, i);
		}
	CHECK(mt_counter("malloc_span_untrim_pages") > u0);
	CHECK(verify_all(v, n, small));
	CHECK(verify_all(w, nbig, big));
	for (size_t i = 0; i < n; i++)
		T_FREE(v[i]);
	for (size_t i = 0; i < nbig; i++)
		T_FREE(w[i]);

	/* 5. */
	{
		const size_t n5 = 8 * MIB / 1024;
		void **x = calloc(n5, sizeof *x);
		REQUIRE(x != NULL);
		set_opt("opt.decay_ms", 600000); /* nothing due by itself */
		uint64_t t5 = mt_counter("malloc_span_trim");
		build_and_free(x, n5, 1024, &rng, NULL);
		spb_trim();
		CHECK(mt_counter("malloc_span_trim") > t5);
		CHECK(verify_all(x, n5, 1024));
		for (size_t i = 0; i < n5; i++)
			T_FREE(x[i]);
		set_opt("opt.decay_ms", 50);

		/* 6. */
		set_opt("opt.span_trim_pct", 0);
		uint64_t q6 = mt_counter("malloc_span_trim_queue");
		build_and_free(x, n5, 768, &rng, NULL);
		CHECK(mt_counter("malloc_span_trim_queue") == q6);
		CHECK(verify_all(x, n5, 768));
		for (size_t i = 0; i < n5; i++)
			T_FREE(x[i]);
		set_opt("opt.span_trim_pct", 25);
		free(x);
	}

	/* 7. */
	{
		uint64_t res[3] = {0};
		pthread_t th;
		REQUIRE(pthread_create(&th, NULL, churn_thread, res) == 0);
		pthread_join(th, NULL);
		fprintf(stderr, "heap at its size: %llu pageblocks split, %llu spans looked at\n",
			(unsigned long long)res[0], (unsigned long long)res[1]);
		CHECK(res[0] == 0);
		CHECK(res[1] > 0);
		CHECK(res[2] == 1);
	}
	free(v);
	free(w);
	return check_done("test_spantrim");
}
