/*
 * test_runcache.c — the run cache (lib/runcache.c): page runs of
 * 128-256 KiB a thread freed serve its next mallocs of about that size
 * without the engine; they are rounded to classes 16 KiB apart; the cache
 * holds at most SPBMALLOC_RUN_CACHE_KB; idle runs go back by themselves,
 * all of them at spb_trim and thread exit; a zeroed request is zeroed;
 * threads passing runs to each other keep every byte. Registered twice:
 * the second time with SPBMALLOC_RUN_CACHE_KB=0 (nothing is cached).
 * (Double frees of cached runs: tests/api/test_badfree.)
 */
#include <pthread.h>

#include "mtest.h"

#define KiB ((size_t)1024)

static bool cache_on;

static uint64_t c(const char *name)
{
	return mt_counter(name);
}

static void reuse(void)
{
	uint64_t runs0 = c("run_alloc"), hit0 = c("runcache_hit"), put0 = c("runcache_put");
	char *p = T_MALLOC(200 * KiB);
	REQUIRE(p);
	size_t u = spb_pages_usable_size(p);
	/* 200 KiB is served as its class, 208 KiB (52 pages). */
	CHECK_EQ(u, cache_on ? 208 * KiB : 200 * KiB);
	void *keep = T_MALLOC(64 * KiB * 4); /* keeps the pageblock claimed */
	T_FREE(p);
	CHECK_EQ(c("runcache_put") - put0, cache_on ? 1u : 0u);
	/* 190 KiB asks for the 192 KiB class; a run one class up serves it. */
	char *q = T_MALLOC(190 * KiB);
	REQUIRE(q);
	if (cache_on) {
		CHECK(q == p);
		CHECK_EQ(c("runcache_hit") - hit0, 1u);
		CHECK_EQ(spb_pages_usable_size(q), 208 * KiB); /* the run's own size */
		/* Two runs from the engine (p, keep), none for q. */
		CHECK_EQ(c("run_alloc") - runs0, 2u);
	} else {
		CHECK_EQ(c("runcache_hit"), 0u);
	}
	mt_stamp(q, 190 * KiB, 1);
	T_FREE(q);
	/* A zeroed request from the cache is zeroed. */
	unsigned char *z = T_MALLOC_CLASS(150 * KiB, SPB_UNMOVABLE, SPB_F_ZERO);
	REQUIRE(z);
	size_t nz = 0;
	for (size_t i = 0; i < 150 * KiB; i++)
		nz += z[i] != 0;
	CHECK_EQ(nz, 0u);
	T_FREE(z);
	T_FREE(keep);
}

static size_t cap; /* engine.run_cache_bytes */

/* A core's L2 cache as sysfs gives it ("1024K"), 0 if unknown. */
static size_t sysfs_l2(void)
{
	for (int i = 0; i < 8; i++) {
		char path[96], buf[32];
		snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
		FILE *f = fopen(path, "r");
		if (!f)
			break;
		int level = fgets(buf, sizeof buf, f) ? atoi(buf) : 0;
		fclose(f);
		snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
		f = fopen(path, "r");
		bool insn = f && fgets(buf, sizeof buf, f) && !strncmp(buf, "Instruction", 11);
		if (f)
			fclose(f);
		if (level != 2 || insn)
			continue;
		snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
		f = fopen(path, "r");
		size_t v = 0;
		if (f && fgets(buf, sizeof buf, f)) {
			char *end;
			v = strtoul(buf, &end, 10);
			v <<= *end == 'M' ? 20 : *end == 'K' ? 10 : 0;
		}
		if (f)
			fclose(f);
		return v;
	}
	return 0;
}

/* At most engine.run_cache_bytes is held (SPBMALLOC_RUN_CACHE_KB, or from
 * the L2 size: at least 1 MiB), and the cache has 4 slots per class. */
static void bounded(void)
{
	enum { N = 20 };
	void *v[N];
	uint64_t put0 = c("runcache_put"), full0 = c("runcache_full");
	for (int i = 0; i < N; i++)
		REQUIRE((v[i] = T_MALLOC(256 * KiB)));
	for (int i = 0; i < N; i++)
		T_FREE(v[i]);
	uint64_t put = c("runcache_put") - put0, full = c("runcache_full") - full0;
	if (cache_on) {
		CHECK(put >= 1 && put <= 4); /* one class: 4 slots */
		CHECK_EQ(put + full, (uint64_t)N);
	} else {
		CHECK_EQ(put + full, 0u);
	}
	/* Several classes: bounded by bytes. */
	put0 = c("runcache_put");
	spb_trim();
	for (int i = 0; i < N; i++)
		REQUIRE((v[i] = T_MALLOC(144 * KiB + (size_t)(i % 8) * 16 * KiB)));
	for (int i = 0; i < N; i++)
		T_FREE(v[i]);
	put = c("runcache_put") - put0;
	if (cache_on)
		CHECK(put >= 6 && put * 144 * KiB <= cap);
}

/* spb_trim gives every cached run back; the pages come back to the engine. */
static void trim(void)
{
	spb_trim();
	void *v[6];
	for (int i = 0; i < 6; i++)
		REQUIRE((v[i] = T_MALLOC(176 * KiB)));
	uint64_t freed0 = c("run_free"), drained0 = c("runcache_drained");
	for (int i = 0; i < 6; i++)
		T_FREE(v[i]);
	uint64_t held = cache_on ? 4 : 0; /* one class: 4 slots */
	CHECK_EQ(c("run_free") - freed0, 6 - held);
	spb_trim();
	CHECK_EQ(c("runcache_drained") - drained0, held);
	CHECK_EQ(c("run_free") - freed0, 6u);
}

/* Runs left idle go back without a call (the background thread looks
 * once a round and takes what sat there since the last look). */
static void idle(void)
{
	const char *bg = getenv("SPBMALLOC_BG");
	if (!cache_on || (bg && !strcmp(bg, "0"))) {
		printf("idle: skipped (%s)\n", cache_on ? "no background thread" : "no cache");
		return;
	}
	spb_trim();
	void *v[3];
	for (int i = 0; i < 3; i++)
		REQUIRE((v[i] = T_MALLOC(240 * KiB)));
	uint64_t drained0 = c("runcache_drained");
	for (int i = 0; i < 3; i++)
		T_FREE(v[i]);
	double t0 = mt_now();
	while (c("runcache_drained") - drained0 < 3 && mt_now() - t0 < 10)
		usleep(50 * 1000);
	double t = mt_now() - t0;
	CHECK_EQ(c("runcache_drained") - drained0, 3u);
	printf("idle: 3 cached runs back in %.2f s\n", t);
}

/* A thread's cache goes back when it exits. */
static void *exiting(void *a)
{
	(void)a;
	void *v[3];
	for (int i = 0; i < 3; i++)
		v[i] = T_MALLOC(160 * KiB + (size_t)i * 32 * KiB);
	for (int i = 0; i < 3; i++)
		T_FREE(v[i]);
	return NULL;
}

static void thread_exit(void)
{
	spb_trim();
	uint64_t drained0 = c("runcache_drained"), put0 = c("runcache_put");
	pthread_t t;
	pthread_create(&t, NULL, exiting, NULL);
	pthread_join(t, NULL);
	uint64_t put = c("runcache_put") - put0;
	CHECK_EQ(put, cache_on ? 3u : 0u);
	/* The background thread may have taken some first: at least put. */
	CHECK(c("runcache_drained") - drained0 >= put);
}

/* Two threads allocate runs of every class, stamp them, and hand half of
 * them to each other to free (runs cross caches): every byte checked. */
#define SLOTS 64
struct xchg {
	char *_Atomic slot[SLOTS];
	unsigned bad;
};
static struct xchg box;

static void *churn(void *a)
{
	uint64_t rng = (uintptr_t)a * 7919 + 1;
	unsigned bad = 0;
	for (int i = 0; i < 20000; i++) {
		size_t n = 129 * KiB + mt_rand(&rng) % (127 * KiB);
		char *p = T_MALLOC(n);
		if (!p) {
			bad++;
			continue;
		}
		memcpy(p, &n, sizeof n); /* its size first, its stamp after */
		mt_stamp(p + 8, n - 8, n);
		/* Swap with a slot: free what was there (another thread's, maybe). */
		char *old = __atomic_exchange_n(&box.slot[mt_rand(&rng) % SLOTS],
						p, __ATOMIC_ACQ_REL);
		if (old) {
			size_t on;
			memcpy(&on, old, sizeof on);
			if (on <= 128 * KiB || on > 256 * KiB || !mt_stamp_ok(old + 8, on - 8, on))
				bad++;
			T_FREE(old);
		}
	}
	__atomic_fetch_add(&box.bad, bad, __ATOMIC_RELAXED);
	return NULL;
}

static void threads(void)
{
	pthread_t t[2];
	for (uintptr_t i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, churn, (void *)i);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(box.bad, 0u);
	for (int i = 0; i < SLOTS; i++)
		T_FREE(box.slot[i]);
}

int main(void)
{
	const char *kb = getenv("SPBMALLOC_RUN_CACHE_KB");
	cache_on = !kb || atol(kb) != 0;
	uint64_t got = 0;
	size_t len = sizeof got;
	REQUIRE(spb_ctl("engine.run_cache_bytes", &got, &len, NULL, 0) == 0);
	cap = (size_t)got;
	if (!kb || atol(kb) == -1) {
		/* Sized from the machine: twice a core's L2 (sysfs), 1-8 MiB. */
		size_t l2 = sysfs_l2();
		size_t want = l2 ? 2 * l2 : 2048 * KiB;
		want = want < 1024 * KiB ? 1024 * KiB : want > 8192 * KiB ? 8192 * KiB : want;
		printf("run cache: %zu KiB a thread (L2 %zu KiB)\n", cap / KiB, l2 / KiB);
		CHECK_EQ(cap, want);
	} else {
		CHECK_EQ(cap, (size_t)atol(kb) * KiB);
	}
	if (cache_on && cap < 1024 * KiB) {
		printf("SKIPPED: the test expects a cache of at least 1 MiB\n");
		return MT_SKIP;
	}
	/* The first page run starts the background thread (which allocates):
	 * before the counters are looked at. */
	T_FREE(T_MALLOC(1024 * KiB));
	usleep(100 * 1000);
	reuse();
	bounded();
	trim();
	idle();
	thread_exit();
	threads();
	return check_done("test_runcache");
}
