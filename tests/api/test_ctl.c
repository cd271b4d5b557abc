/*
 * test_ctl.c — spb_ctl(): run-time control by name.
 *
 * 1. Every name of spb_ctl_name() answers: settings read what the
 *    environment set (ctest sets SPBMALLOC_DECAY_MS=600000 and
 *    SPBMALLOC_DENSE_PCT=90), counters equal spb_counter_get, figures
 *    are plausible, a size query gives 8.
 * 2. Each writable setting is written (the old value comes back, the new
 *    one reads back, ctl_write counts each), each read-only one refuses
 *    with EPERM and keeps its value.
 * 3. Refusals change nothing and print exactly one warning line: unknown
 *    names (ENOENT), wrong sizes, values out of range, a value given to an
 *    action (EINVAL), a counter written (EPERM); ctl_refused counts each.
 * 4. A write has its effect: opt.run_cache_kb=0 keeps a freed 200 KiB run
 *    out of the run cache, 2048 lets it in again.
 * 5. Actions act: trim gives back the pageblocks of a freed 64 MiB
 *    (engine.mapped_bytes falls, pb_release grows), compact moves handle
 *    objects (compact_moved grows, stamps intact) and refuses inside a
 *    read section (EDEADLK), shrink runs a registered shrinker,
 *    thread.flush empties this thread's run cache, stats.publish writes
 *    a snapshot.
 * 6. Writers change settings while threads allocate and free through
 *    every path those settings steer, and a reader reads figures and
 *    counters (the TSan build runs this: no data race).
 */
#include <fcntl.h>
#include <pthread.h>

#include "mtest.h"

static long get(const char *name)
{
	long v = -12345;
	size_t len = sizeof v;
	REQUIRE(spb_ctl(name, &v, &len, NULL, 0) == 0);
	REQUIRE(len == 8);
	return v;
}

static long set(const char *name, long v)
{
	long old = -12345;
	size_t len = sizeof old;
	int rc = spb_ctl(name, &old, &len, &v, sizeof v);
	if (rc)
		fprintf(stderr, "set %s=%ld: %s\n", name, v, strerror(errno));
	REQUIRE(rc == 0);
	return old;
}

static bool is_action(const char *n)
{
	return !strcmp(n, "trim") || !strcmp(n, "compact") || !strcmp(n, "shrink") ||
	       !strcmp(n, "thread.flush") || !strcmp(n, "stats.publish");
}

/* Run fn with stderr in a file; returns the lines it wrote (the first in
 * line). */
static int stderr_lines(void (*fn)(void *), void *arg, char *line, size_t cap)
{
	char path[] = "/tmp/spb_test_ctl.XXXXXX";
	int fd = mkstemp(path);
	REQUIRE(fd >= 0);
	unlink(path);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	fn(arg);
	dup2(saved, 2);
	close(saved);
	char buf[4096];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	close(fd);
	if (n < 0)
		n = 0;
	buf[n] = 0;
	int lines = 0;
	for (ssize_t i = 0; i < n; i++)
		lines += buf[i] == '\n';
	snprintf(line, cap, "%s", buf);
	return lines;
}

/* ---- 1 and 2 ---- */

static void test_names(void)
{
	size_t n = spb_ctl_count();
	CHECK(n > spb_counter_count() + 40);
	CHECK(spb_ctl_name(n) == NULL);
	size_t opts = 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = spb_ctl_name(i);
		REQUIRE(name);
		if (is_action(name))
			continue; /* test_actions runs them */
		size_t len = 0;
		CHECK(spb_ctl(name, NULL, &len, NULL, 0) == 0);
		CHECK_EQ(len, 8);
		uint64_t v;
		len = sizeof v;
		CHECK(spb_ctl(name, &v, &len, NULL, 0) == 0);
		if (!strncmp(name, "opt.", 4))
			opts++;
		if (!strncmp(name, "stats.", 6) && strcmp(name, "stats.ctl_read")) {
			uint64_t c = spb_counter_get(name + 6);
			CHECK(c != UINT64_MAX);
			CHECK(c >= v); /* read again just after: counters only grow */
		}
	}
	CHECK(opts >= 33);
	CHECK_EQ(get("opt.decay_ms"), 600000);
	CHECK_EQ(get("opt.dense_pct"), 90);
	CHECK_EQ(get("opt.subrelease_pct"), 25); /* the default */
	CHECK(get("engine.zones") >= 1);
	CHECK(get("engine.spbs") >= 1);
	CHECK(get("engine.reserved_bytes") >= (1l << 30));
	CHECK(get("engine.rss_bytes") > 0);
	uint64_t r0 = mt_counter("ctl_read");
	get("stats.malloc_alloc");
	get("opt.thp");
	CHECK_EQ(mt_counter("ctl_read") - r0, 2);
}

static void test_writes(void)
{
	size_t n = spb_ctl_count();
	unsigned writable = 0, ro = 0;
	uint64_t w0 = mt_counter("ctl_write");
	for (size_t i = 0; i < n; i++) {
		const char *name = spb_ctl_name(i);
		if (strncmp(name, "opt.", 4))
			continue;
		long cur = get(name);
		if (spb_ctl_writable(name)) {
			/* Its own value again, then one step away and back. */
			CHECK_EQ(set(name, cur), cur);
			long other = cur > 0 ? cur - 1 : cur + 1;
			if (!strcmp(name, "opt.max_spbs"))
				other = 1000; /* 0 is no limit: 1 would refuse new SPBs */
			CHECK_EQ(set(name, other), cur);
			CHECK_EQ(get(name), other);
			CHECK_EQ(set(name, cur), other);
			CHECK_EQ(get(name), cur);
			writable++;
		} else {
			long v = cur ? 0 : 1;
			size_t len = 0;
			errno = 0;
			CHECK(spb_ctl(name, NULL, &len, &v, sizeof v) == -1);
			CHECK_EQ(errno, EPERM);
			CHECK_EQ(get(name), cur);
			ro++;
		}
	}
	CHECK(writable >= 20);
	CHECK(ro >= 10);
	CHECK_EQ(mt_counter("ctl_write") - w0, 3 * writable);
	CHECK(spb_ctl_writable("opt.decay_ms") == 1);
	CHECK(spb_ctl_writable("opt.numa") == 0);
	CHECK(spb_ctl_writable("stats.malloc_alloc") == 0);
}

/* ---- 3 ---- */

struct bad {
	const char *name;
	bool give_old;
	size_t oldlen;
	bool give_new;
	long newv;
	size_t newlen;
	int want;
};
static int bad_rc, bad_errno;
static long bad_old;

static void do_bad(void *arg)
{
	const struct bad *b = arg;
	size_t len = b->oldlen;
	bad_old = -777;
	errno = 0;
	bad_rc = spb_ctl(b->name, b->give_old ? &bad_old : NULL, b->give_old ? &len : NULL,
			 b->give_new ? &b->newv : NULL, b->newlen);
	bad_errno = errno;
}

static void test_refusals(void)
{
	static const struct bad cases[] = {
		{"opt.nope", true, 8, false, 0, 0, ENOENT},
		{"", true, 8, false, 0, 0, ENOENT},
		{NULL, true, 8, false, 0, 0, ENOENT},
		{"stats.no_such_counter", true, 8, false, 0, 0, ENOENT},
		{"opt.decay_ms\n", true, 8, false, 0, 0, ENOENT},
		{"opt.decay_ms", true, 4, false, 0, 0, EINVAL},     /* oldlen */
		{"opt.decay_ms", true, 16, false, 0, 0, EINVAL},
		{"opt.decay_ms", false, 0, true, 5, 4, EINVAL},     /* newlen */
		{"opt.decay_ms", false, 0, false, 0, 8, EINVAL},    /* newlen, no newp */
		{"opt.decay_ms", true, 8, true, 3600001, 8, EINVAL}, /* over max */
		{"opt.decay_ms", true, 8, true, -1, 8, EINVAL},     /* under min */
		{"opt.dense_pct", true, 8, true, 49, 8, EINVAL},
		{"opt.dense_pct", true, 8, true, 101, 8, EINVAL},
		{"opt.compact_budget_pct", true, 8, true, 0, 8, EINVAL},
		{"trim", true, 8, true, 1, 8, EINVAL},              /* an action takes no value */
		{"stats.malloc_alloc", true, 8, true, 0, 8, EPERM},
		{"engine.spbs", true, 8, true, 0, 8, EPERM},
		{"opt.numa", true, 8, true, 0, 8, EPERM},
	};
	long decay = get("opt.decay_ms"), dense = get("opt.dense_pct");
	long budget = get("opt.compact_budget_pct"), numa = get("opt.numa");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint64_t r0 = mt_counter("ctl_refused");
		uint64_t w0 = mt_counter("ctl_write"), a0 = mt_counter("ctl_action");
		char line[512];
		int lines = stderr_lines(do_bad, (void *)&cases[i], line, sizeof line);
		if (bad_rc != -1 || bad_errno != cases[i].want)
			fprintf(stderr, "case %zu (%s): rc %d errno %d\n", i,
				cases[i].name ? cases[i].name : "NULL", bad_rc, bad_errno);
		CHECK_EQ(bad_rc, -1);
		CHECK_EQ(bad_errno, cases[i].want);
		CHECK_EQ(bad_old, -777); /* nothing written to oldp */
		CHECK_EQ(lines, 1);
		CHECK(!strncmp(line, "spbmalloc: warning: spb_ctl=", 28));
		CHECK_EQ(mt_counter("ctl_refused") - r0, 1);
		CHECK_EQ(mt_counter("ctl_write"), w0);
		CHECK_EQ(mt_counter("ctl_action"), a0);
	}
	CHECK_EQ(get("opt.decay_ms"), decay);
	CHECK_EQ(get("opt.dense_pct"), dense);
	CHECK_EQ(get("opt.compact_budget_pct"), budget);
	CHECK_EQ(get("opt.numa"), numa);
	/* The warning names the value and the range. */
	char line[512];
	struct bad b = {"opt.decay_ms", false, 0, true, 3600001, 8, EINVAL};
	stderr_lines(do_bad, &b, line, sizeof line);
	CHECK(strstr(line, "3600001 is out of 0..3600000") != NULL);
}

/* ---- 4 ---- */

static void test_write_effect(void)
{
	long kb = get("opt.run_cache_kb");
	set("opt.run_cache_kb", 0);
	uint64_t put0 = mt_counter("runcache_put");
	void *p = T_MALLOC(200 << 10);
	REQUIRE(p);
	memset(p, 1, 4096);
	T_FREE(p);
	CHECK_EQ(mt_counter("runcache_put"), put0);
	set("opt.run_cache_kb", 2048);
	p = T_MALLOC(200 << 10);
	REQUIRE(p);
	memset(p, 1, 4096);
	T_FREE(p);
	CHECK_EQ(mt_counter("runcache_put"), put0 + 1);
	set("opt.run_cache_kb", kb);
}

/* ---- 5 ---- */

static size_t shrink_objects = 100, shrink_calls;
static size_t sh_count(void *ctx)
{
	(void)ctx;
	return shrink_objects;
}
static size_t sh_scan(void *ctx, size_t nr, int prio)
{
	(void)ctx;
	(void)prio;
	size_t f = nr < shrink_objects ? nr : shrink_objects;
	shrink_objects -= f;
	shrink_calls++;
	return f;
}

#define NH 20000

static void test_actions(void)
{
	long v;
	size_t len = sizeof v;

	/* trim: 64 MiB freed sits mapped (decay 600 s) until trim. */
	void *big = T_MALLOC(64 << 20);
	REQUIRE(big);
	memset(big, 1, 64 << 20);
	T_FREE(big);
	long mapped0 = get("engine.mapped_bytes");
	uint64_t rel0 = mt_counter("pb_release");
	uint64_t a0 = mt_counter("ctl_action");
	CHECK(spb_ctl("trim", &v, &len, NULL, 0) == 0);
	CHECK(v >= 16);
	CHECK(mt_counter("pb_release") >= rel0 + 16);
	CHECK(get("engine.mapped_bytes") <= mapped0 - (32l << 20));
	CHECK_EQ(mt_counter("ctl_action") - a0, 1);
	CHECK(spb_ctl("trim", NULL, NULL, NULL, 0) == 0); /* oldp is optional */

	/* compact: stamped handle objects, 80 % freed. */
	static spb_handle_t hs[NH];
	uint64_t seed = 7;
	for (size_t i = 0; i < NH; i++) {
		hs[i] = spb_halloc(64 + mt_rand(&seed) % 512, 0);
		REQUIRE(hs[i]);
		spb_read_lock();
		*(uint64_t *)spb_hget(hs[i]) = hs[i];
		spb_read_unlock();
	}
	for (size_t i = 0; i < NH; i++)
		if (mt_rand(&seed) % 5) {
			spb_hfree(hs[i]);
			hs[i] = 0;
		}
	uint64_t moved0 = mt_counter("compact_moved");
	len = sizeof v;
	spb_read_lock();
	errno = 0;
	char line[512];
	struct bad in_section = {"compact", true, 8, false, 0, 0, EDEADLK};
	int lines = stderr_lines(do_bad, &in_section, line, sizeof line);
	spb_read_unlock();
	CHECK_EQ(bad_rc, -1);
	CHECK_EQ(bad_errno, EDEADLK);
	CHECK_EQ(lines, 1);
	CHECK_EQ(mt_counter("compact_moved"), moved0);
	len = sizeof v;
	CHECK(spb_ctl("compact", &v, &len, NULL, 0) == 0);
	CHECK(v > 0);
	CHECK(mt_counter("compact_moved") > moved0);
	CHECK(mt_handles_stamped(hs, NH));
	for (size_t i = 0; i < NH; i++)
		spb_hfree(hs[i]);

	/* shrink */
	int id = spb_shrinker_register(sh_scan, sh_count, NULL);
	REQUIRE(id > 0);
	len = sizeof v;
	uint64_t f0 = mt_counter("shrink_freed");
	CHECK(spb_ctl("shrink", &v, &len, NULL, 0) == 0);
	CHECK(shrink_calls > 0);
	CHECK_EQ(v, 100 - shrink_objects);
	CHECK(v > 0);
	CHECK_EQ(mt_counter("shrink_freed") - f0, (uint64_t)v);
	CHECK(spb_shrinker_unregister(id) == 0);

	/* thread.flush: a freed 200 KiB run sits in this thread's cache. */
	uint64_t put0 = mt_counter("runcache_put"), dr0 = mt_counter("runcache_drained");
	void *p = T_MALLOC(200 << 10);
	REQUIRE(p);
	T_FREE(p);
	CHECK_EQ(mt_counter("runcache_put"), put0 + 1);
	len = sizeof v;
	CHECK(spb_ctl("thread.flush", &v, &len, NULL, 0) == 0);
	CHECK(v >= 1);
	CHECK(mt_counter("runcache_drained") >= dr0 + 1);
	len = sizeof v;
	CHECK(spb_ctl("thread.flush", &v, &len, NULL, 0) == 0);
	CHECK_EQ(v, 0); /* nothing left */

	/* stats.publish: the segment exists (SPBMALLOC_STATSEG_DELAY_MS=0). */
	len = sizeof v;
	CHECK(spb_ctl("stats.publish", &v, &len, NULL, 0) == 0);
	const char *delay = getenv("SPBMALLOC_STATSEG_DELAY_MS");
	if (delay && !strcmp(delay, "0"))
		CHECK_EQ(v, 1);
}

/* ---- 6 ---- */

#define ROUNDS 3000
static int stop;
static unsigned loops[2]; /* rounds each allocator made */

static void *allocator(void *arg)
{
	uint64_t seed = (uintptr_t)arg + 1;
	void *keep[64] = {0};
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		for (int i = 0; i < 64; i++) {
			T_FREE(keep[i]);
			uint64_t r = mt_rand(&seed) % 100;
			size_t sz = r < 70 ? 16 + r * 40 : r < 90 ? (128 << 10) + r * 1000
								  : (2 << 20) + r * 4096;
			keep[i] = T_MALLOC(sz);
			REQUIRE(keep[i]);
			memset(keep[i], (int)i, sz < 8192 ? sz : 8192);
		}
		spb_handle_t h = spb_halloc(100, 0);
		spb_hfree(h);
		__atomic_fetch_add(&loops[(uintptr_t)arg], 1, __ATOMIC_RELAXED);
	}
	for (int i = 0; i < 64; i++)
		T_FREE(keep[i]);
	return NULL;
}

static void *reader(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		get("engine.mapped_bytes");
		get("stats.malloc_alloc");
		get("opt.run_cache_kb");
	}
	return NULL;
}

static void test_concurrent(void)
{
	static const struct {
		const char *name;
		long a, b;
	} knobs[] = {
		{"opt.run_cache_kb", 0, 2048},   {"opt.decay_ms", 0, 600000},
		{"opt.dense_pct", 60, 90},       {"opt.sparse_4k", 0, 1},
		{"opt.small_heap_mb", 0, 8},     {"opt.subrelease_pct", 0, 25},
		{"opt.collapse", 1, 0},          {"opt.thp", 0, 1},
		{"opt.compact_budget_pct", 50, 5}, {"opt.compact_interval_ms", 10, 1000},
		{"opt.tainted_reserve", 0, 4},   {"opt.stats_interval_ms", 10, 1000},
		{"opt.shrink_rest_ms", 1, 100},
	};
	const size_t nk = sizeof knobs / sizeof knobs[0];
	long saved[sizeof knobs / sizeof knobs[0]];
	for (size_t k = 0; k < nk; k++)
		saved[k] = get(knobs[k].name);
	/* Counters are read before the threads start and after they end: a
	 * read while they run races their plain increments by design
	 * (tsan.supp), and TSan may lose the stack that matches the
	 * suppression. The reader thread reads them all the time. */
	uint64_t w0 = mt_counter("ctl_write");
	pthread_t t[3];
	for (uintptr_t i = 0; i < 2; i++)
		REQUIRE(pthread_create(&t[i], NULL, allocator, (void *)i) == 0);
	REQUIRE(pthread_create(&t[2], NULL, reader, NULL) == 0);
	/* At least ROUNDS rounds of writes, and on until both allocators made
	 * 50 rounds each under them (a count, not a time). */
	unsigned r = 0;
	for (; r < ROUNDS || __atomic_load_n(&loops[0], __ATOMIC_RELAXED) < 50 ||
	       __atomic_load_n(&loops[1], __ATOMIC_RELAXED) < 50;
	     r++)
		for (size_t k = 0; k < nk; k++)
			set(knobs[k].name, r & 1 ? knobs[k].a : knobs[k].b);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(mt_counter("ctl_write") - w0, (uint64_t)r * nk);
	printf("concurrent: %u rounds of %zu writes; allocators made %u and %u rounds\n", r, nk,
	       loops[0], loops[1]);
	for (size_t k = 0; k < nk; k++) {
		set(knobs[k].name, saved[k]);
		CHECK_EQ(get(knobs[k].name), saved[k]);
	}
	/* The heap is whole: trim and a last round of allocations. */
	CHECK(spb_ctl("trim", NULL, NULL, NULL, 0) == 0);
	void *p = T_MALLOC(1000);
	REQUIRE(p);
	T_FREE(p);
}

int main(void)
{
	T_FREE(T_MALLOC(16)); /* the heap and the engine exist */
	test_names();
	test_writes();
	test_refusals();
	test_write_effect();
	test_actions();
	test_concurrent();
	return check_done("test_ctl");
}
