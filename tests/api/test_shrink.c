/*
 * test_shrink.c — shrinkers and memory pressure (include/spbmalloc.h,
 * lib/shrink.c, lib/pressure.c): the API's contract, a pass's walk from
 * the gentlest priority, the demand and high-water triggers driven through
 * the engine (tainted SPBs below their reserve), callbacks on the
 * spb-shrink thread, unregister waiting for a call in flight, realloc
 * keeping a RECLAIMABLE block's class, fork, and a pressure event (a pipe
 * standing in for PSI: SPBMALLOC_PRESSURE_TEST_FD) giving memory back.
 */
#include <pthread.h>
#include <sys/prctl.h>

#include "mtest.h"

/* A cache of RECLAIMABLE entries: small records or whole pageblocks. */
struct cache {
	pthread_mutex_t lock;
	void **v;
	size_t head, n, cap;        /* live entries: v[head .. head+n) */
	bool pages;                 /* entries from spb_pages_alloc */
	bool lifo;                  /* scan frees the newest first */
	size_t max_scan;            /* frees at most this many per call (0: nr) */
	unsigned scans, prio_seen;  /* bit p set: priority p was asked */
	size_t first_nr;            /* nr_to_scan of the first call */
	char thread[16];            /* name of the thread of the last call */
	unsigned sleep_ms;          /* each scan sleeps this long */
	int in_scan;
};

static void cache_init(struct cache *c, size_t cap, bool pages)
{
	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->lock, NULL);
	c->v = T_MALLOC(cap * sizeof *c->v);
	REQUIRE(c->v != NULL);
	c->cap = cap;
	c->pages = pages;
}

static void *cache_add(struct cache *c, size_t size)
{
	void *p = c->pages ? spb_pages_alloc(size, 0, SPB_RECLAIMABLE, 0)
			   : T_MALLOC_CLASS(size, SPB_RECLAIMABLE, 0);
	if (!p)
		return NULL;
	if (!c->pages)
		memset(p, 0x5a, size);
	pthread_mutex_lock(&c->lock);
	REQUIRE(c->head + c->n < c->cap);
	c->v[c->head + c->n++] = p;
	pthread_mutex_unlock(&c->lock);
	return p;
}

static size_t cache_count(void *ctx)
{
	struct cache *c = ctx;
	pthread_mutex_lock(&c->lock);
	size_t n = c->n;
	pthread_mutex_unlock(&c->lock);
	return n;
}

static size_t cache_scan(void *ctx, size_t nr, int prio)
{
	struct cache *c = ctx;
	__atomic_store_n(&c->in_scan, 1, __ATOMIC_RELEASE);
	if (c->sleep_ms)
		usleep(c->sleep_ms * 1000);
	pthread_mutex_lock(&c->lock);
	if (!c->scans++)
		c->first_nr = nr;
	c->prio_seen |= 1u << prio;
	prctl(PR_GET_NAME, c->thread, 0, 0, 0);
	size_t k = 0;
	if (c->max_scan && nr > c->max_scan)
		nr = c->max_scan;
	while (k < nr && c->n) { /* oldest first, or newest */
		void *p;
		if (c->lifo) {
			p = c->v[c->head + --c->n];
		} else {
			p = c->v[c->head++];
			c->n--;
		}
		if (c->pages)
			spb_pages_free(p);
		else
			T_FREE(p);
		k++;
	}
	pthread_mutex_unlock(&c->lock);
	__atomic_store_n(&c->in_scan, 0, __ATOMIC_RELEASE);
	return k;
}

static size_t zero_count(void *ctx)
{
	(void)ctx;
	return 0;
}

static bool thread_named(const char *name)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "grep -qx %s /proc/%d/task/*/comm", name, (int)getpid());
	return system(cmd) == 0;
}

static bool wait_counter(const char *name, uint64_t above, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (mt_counter(name) > above)
			return true;
		usleep(10000);
	}
	return mt_counter(name) > above;
}

static void test_contract(void)
{
	errno = 0;
	CHECK(spb_shrinker_register(NULL, zero_count, NULL) == -1 && errno == EINVAL);
	CHECK(spb_shrinker_unregister(0) == -1 && errno == EINVAL);
	CHECK(spb_shrinker_unregister(65) == -1 && errno == EINVAL);
	int ids[64];
	int n = 0;
	while (n < 64 && (ids[n] = spb_shrinker_register(cache_scan, zero_count, NULL)) > 0)
		n++;
	CHECK(n == 64);
	errno = 0;
	CHECK(spb_shrinker_register(cache_scan, zero_count, NULL) == -1 && errno == ENOSPC);
	for (int i = 0; i < n; i++)
		CHECK(spb_shrinker_unregister(ids[i]) == 0);
	CHECK(spb_shrinker_unregister(ids[0]) == -1 && errno == EINVAL);
	CHECK(thread_named("spb-shrink"));
}

/* spb_shrink: gentle first (1/64 of the cache, at least 32), on the
 * calling thread, stopping once a pageblock's worth came back; ALL empties. */
static void test_sync_pass(void)
{
	static struct cache c;
	cache_init(&c, 1 << 16, false);
	for (int i = 0; i < 40000; i++) /* 40000 x 1 KiB: about 20 pageblocks */
		REQUIRE(cache_add(&c, 1000));
	int id = spb_shrinker_register(cache_scan, cache_count, &c);
	REQUIRE(id > 0);
	uint64_t ran = mt_counter("shrink_ran"), p3 = mt_counter("shrink_prio3");
	size_t freed = spb_shrink(0);
	CHECK(mt_counter("shrink_ran") > ran && mt_counter("shrink_prio3") > p3);
	CHECK(c.first_nr == 40000 / 64);
	CHECK(c.prio_seen & 8);
	char me[16];
	prctl(PR_GET_NAME, me, 0, 0, 0);
	CHECK(strcmp(c.thread, me) == 0);
	/* Stopped before the whole cache went: a pageblock's worth or so. */
	CHECK(freed > 0 && freed < 40000 && c.n == 40000 - freed);
	printf("spb_shrink(0): freed %zu of 40000 1 KiB records, priorities seen 0x%x\n", freed,
	       c.prio_seen);
	freed = spb_shrink(SPB_SHRINK_ALL);
	CHECK(c.n == 0 && (c.prio_seen & 1));
	CHECK(spb_shrinker_unregister(id) == 0);
}

static void *shrink_thread(void *arg)
{
	(void)arg;
	spb_shrink(SPB_SHRINK_ALL);
	return NULL;
}

/* unregister returns only once a call in flight has returned. */
static void test_unregister_waits(void)
{
	static struct cache c;
	cache_init(&c, 1024, false);
	for (int i = 0; i < 100; i++)
		REQUIRE(cache_add(&c, 64));
	c.sleep_ms = 300;
	int id = spb_shrinker_register(cache_scan, cache_count, &c);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, shrink_thread, NULL) == 0);
	while (!__atomic_load_n(&c.in_scan, __ATOMIC_ACQUIRE))
		usleep(1000);
	CHECK(spb_shrinker_unregister(id) == 0);
	CHECK(__atomic_load_n(&c.in_scan, __ATOMIC_ACQUIRE) == 0);
	pthread_join(t, NULL);
}

/* realloc moves a RECLAIMABLE block within its class. */
static void test_realloc_class(void)
{
	void *p = T_MALLOC_CLASS(100, SPB_RECLAIMABLE, 0);
	REQUIRE(p);
	CHECK(spb_class_of(p) == SPB_RECLAIMABLE);
	memset(p, 7, 100);
	void *q = T_REALLOC(p, 200000); /* a page run now */
	REQUIRE(q);
	CHECK(spb_class_of(q) == SPB_RECLAIMABLE);
	CHECK(((unsigned char *)q)[99] == 7);
	void *r = T_REALLOC(q, 3000); /* back to a span */
	CHECK(r && spb_class_of(r) == SPB_RECLAIMABLE);
	void *m = T_MALLOC(100);
	CHECK(spb_class_of(m) == SPB_UNMOVABLE);
	T_FREE(r);
	T_FREE(m);
}

/* The demand and high-water triggers, through the engine: RECLAIMABLE
 * pageblocks fill the tainted SPB until it is below its reserve and a
 * second SPB is tainted; the spb-shrink thread runs the shrinker (newest
 * entries first), pageblocks come back. Then, with nobody shrinking, a
 * non-movable run from a tainted SPB short of free pages is the
 * high-water mark. */
static void test_triggers(void)
{
	static struct cache c;
	cache_init(&c, 2048, true);
	c.lifo = true;
	int id = spb_shrinker_register(cache_scan, cache_count, &c);
	REQUIRE(id > 0);
	uint64_t dem = mt_counter("shrink_trigger_demand"), ran = mt_counter("shrink_ran");
	uint64_t rec = mt_counter("shrink_pb_recovered"), q = mt_counter("shrink_queued");
	uint64_t taint = mt_counter("spb_taint"), hw = mt_counter("shrink_trigger_highwater");
	int n = 0;
	/* Each step: a RECLAIMABLE pageblock, and a non-movable run (from the
	 * fullest tainted SPB: the high-water mark once it runs short). */
	while ((mt_counter("shrink_trigger_demand") == dem || mt_counter("spb_taint") == taint) &&
	       n < 1500) {
		REQUIRE(cache_add(&c, 2 << 20));
		n++;
	}
	CHECK(mt_counter("shrink_trigger_demand") > dem);
	CHECK(wait_counter("shrink_ran", ran, 5000));
	CHECK(mt_counter("shrink_queued") > q);
	CHECK(strcmp(c.thread, "spb-shrink") == 0);
	CHECK(wait_counter("shrink_pb_recovered", rec, 5000));
	printf("demand: after %d RECLAIMABLE pageblocks; the pass freed %zu, %" PRIu64
	       " pageblocks recovered\n", n, (size_t)n - cache_count(&c),
	       mt_counter("shrink_pb_recovered") - rec);
	/* High-water: with nobody shrinking (triggers are counted while the
	 * thread runs), fill the tainted SPBs; a non-movable run from the
	 * fullest, once it is short of free pages, is the mark. */
	CHECK(spb_shrinker_unregister(id) == 0);
	for (int i = 0; mt_counter("shrink_trigger_highwater") == hw && i < 1100; i++) {
		if (!cache_add(&c, 2 << 20))
			break;
		void *r = spb_pages_alloc(8192, 0, SPB_UNMOVABLE, 0);
		REQUIRE(r);
		spb_pages_free(r);
	}
	CHECK(mt_counter("shrink_trigger_highwater") > hw);
	pthread_mutex_lock(&c.lock);
	while (c.n)
		spb_pages_free(c.v[c.head + --c.n]);
	pthread_mutex_unlock(&c.lock);
}

/* A forked child keeps the registrations and gets its own spb-shrink. */
static void test_fork(void)
{
	static struct cache c;
	cache_init(&c, 1024, false);
	int id = spb_shrinker_register(cache_scan, cache_count, &c);
	for (int i = 0; i < 100; i++)
		REQUIRE(cache_add(&c, 64));
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		size_t n0 = cache_count(&c);
		bool ok = spb_shrink(SPB_SHRINK_ALL) == n0 && c.n == 0;
		for (int i = 0; i < 2000; i++) /* new spans: the thread restarts */
			T_FREE(T_MALLOC(64 + (size_t)i * 16));
		void *keep[64];
		for (int i = 0; i < 64; i++)
			keep[i] = T_MALLOC(20000);
		for (int i = 0; i < 64; i++)
			T_FREE(keep[i]);
#ifndef __SANITIZE_THREAD__ /* TSan starts no thread in a threaded fork's child */
		ok = ok && thread_named("spb-shrink");
#endif
		_exit(ok ? 0 : 1);
	}
	int st;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK(spb_shrinker_unregister(id) == 0);
	spb_shrink(0);
}

/* Pressure (the child of an exec, with SPBMALLOC_PRESSURE_TEST_FD): a
 * 96 MiB cache and 64 MiB of free pageblocks waiting for their decay (60
 * s); one event runs the shrinker in full and gives the free pageblocks
 * back at once. (The records the shrinker freed on spb-shrink go back to
 * the spans of this thread, which allocated them: they are reused by its
 * next allocations, or go back to the engine when it exits. README.) */
static int pressure_child(int wfd)
{
	static struct cache c;
	cache_init(&c, 1 << 20, false);
	int id = spb_shrinker_register(cache_scan, cache_count, &c);
	REQUIRE(id > 0);
	for (int i = 0; i < 96 * 1024; i++)
		REQUIRE(cache_add(&c, 1000));
	void *big = T_MALLOC(64 << 20);
	REQUIRE(big);
	memset(big, 1, 64 << 20);
	T_FREE(big); /* free pageblocks, held for SPBMALLOC_DECAY_MS (60 s) */
	size_t before = mt_rss();
	uint64_t ev = mt_counter("pressure_events"), rel = mt_counter("pressure_released");
	double t0 = mt_now();
	REQUIRE(write(wfd, "!", 1) == 1);
	/* The free pageblocks go back at once; the records, freed on
	 * spb-shrink into this thread's spans, at this thread's next refill
	 * (a server goes on serving: a few allocations between looks). */
	double t_pb = -1, t_done = -1;
	void *work[64] = {0};
	for (unsigned k = 0; mt_now() - t0 < 3; k++) {
		size_t rss = mt_rss();
		if (t_pb < 0 && rss + (60u << 20) <= before && cache_count(&c) == 0)
			t_pb = mt_now() - t0;
		if (rss + (140u << 20) <= before && cache_count(&c) == 0) {
			t_done = mt_now() - t0;
			break;
		}
		for (unsigned j = 0; j < 64; j++) {
			T_FREE(work[j]);
			/* requests and their I/O buffers */
			work[j] = T_MALLOC(j % 8 ? 64 + ((k * 64 + j) % 512) * 64 : 100000);
		}
		usleep(2000);
	}
	for (unsigned j = 0; j < 64; j++)
		T_FREE(work[j]);
	size_t after = mt_rss();
	printf("pressure: RSS %zu -> %zu MiB: free pageblocks back in %.3f s, the cache's "
	       "records in %.3f s (cache %zu records left); pressure_events %" PRIu64
	       ", released %" PRIu64 "\n", before >> 20, after >> 20, t_pb, t_done, c.n, mt_counter("pressure_events") - ev,
	       mt_counter("pressure_released") - rel);
	CHECK(mt_counter("pressure_events") > ev);
	CHECK(mt_counter("pressure_released") - rel >= 30);
	CHECK(c.n == 0);
#if !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__) /* shadow memory */
	CHECK(t_pb >= 0 && t_done >= 0);
#endif
	CHECK(spb_shrinker_unregister(id) == 0);
	return check_done("test_shrink pressure");
}

static void test_pressure(const char *self)
{
	int p[2];
	REQUIRE(pipe(p) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		char fd[16], wfd[16];
		snprintf(fd, sizeof fd, "%d", p[0]);
		snprintf(wfd, sizeof wfd, "%d", p[1]);
		setenv("SPBMALLOC_PRESSURE_TEST_FD", fd, 1);
		setenv("SPBMALLOC_DECAY_MS", "60000", 1);
		execl(self, self, "pressure-child", wfd, (char *)NULL);
		_exit(127);
	}
	close(p[0]);
	close(p[1]);
	int st;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "pressure-child") == 0)
		return pressure_child(atoi(argv[2]));
	test_contract();
	test_sync_pass();
	test_unregister_waits();
	test_realloc_class();
	test_triggers();
	test_fork();
	test_pressure("/proc/self/exe");
	return check_done("test_shrink");
}
