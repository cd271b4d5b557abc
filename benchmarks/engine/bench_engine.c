/*
 * bench_engine.c — the SPB engine benchmark of issue 2 (prints figures; not
 * a test).
 *
 *   bench_engine throughput [--reps N] [--ms MS] [--touch]
 *	pageblock claim/release and page-run throughput under 1 and 2
 *	threads, MOVABLE and UNMOVABLE, with the default decay (a release
 *	leaves the pageblock backed and the next claim reuses it) and with
 *	SPBMALLOC_DECAY_MS=0 (every release is a MADV_DONTNEED). Each thread
 *	allocates a batch of 64, frees the 64, and so on; ops/s counts
 *	allocations plus frees. Each configuration runs in a fresh process
 *	(the engine reads its settings once), the repetitions are interleaved
 *	across configurations, and the median is printed.
 *   bench_engine coverage --mode spb_pages|malloc [--mib N]
 *	huge-page coverage of a working set of N MiB (default 4096) built from
 *	2 MiB allocations, touched in full, as AnonHugePages / Anonymous of
 *	/proc/self/smaps_rollup. Mode malloc uses plain malloc, so the binary
 *	can run under LD_PRELOAD of any allocator (coverage.sh does that with
 *	bench_engine_malloc, the build of this file without spbmalloc).
 *
 * Output lines are "key=value" pairs so scripts can read them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SPB_ENGINE_BENCH_MALLOC_ONLY
#include "spbmalloc.h"
#endif

#define MIB ((size_t)1 << 20)
#define PB_SIZE (2 * MIB)
#define BATCH 64
#define MAX_REPS 31

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_engine: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* ---------------------------------------------------------------- coverage */

struct smaps {
	long anon_huge_kb, anon_kb, rss_kb;
};

/* Read /proc/self/smaps_rollup with read(2) into a stack buffer: no
 * allocation while the working set is being measured. */
static int read_smaps_rollup(struct smaps *m)
{
	char buf[8192];
	int fd = open("/proc/self/smaps_rollup", O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	m->anon_huge_kb = m->anon_kb = m->rss_kb = -1;
	for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (!strncmp(l, "AnonHugePages:", 14))
			m->anon_huge_kb = strtol(l + 14, NULL, 10);
		else if (!strncmp(l, "Anonymous:", 10))
			m->anon_kb = strtol(l + 10, NULL, 10);
		else if (!strncmp(l, "Rss:", 4))
			m->rss_kb = strtol(l + 4, NULL, 10);
	}
	return m->anon_kb < 0 || m->rss_kb < 0 || m->anon_huge_kb < 0 ? -1 : 0;
}

static void *cov_alloc(const char *mode, size_t size)
{
#ifndef SPB_ENGINE_BENCH_MALLOC_ONLY
	if (!strcmp(mode, "spb_pages"))
		return spb_pages_alloc(size, 0, SPB_UNMOVABLE, 0);
#endif
	(void)mode;
	return malloc(size);
}

static void cov_free(const char *mode, void *p)
{
#ifndef SPB_ENGINE_BENCH_MALLOC_ONLY
	if (!strcmp(mode, "spb_pages")) {
		spb_pages_free(p);
		return;
	}
#endif
	(void)mode;
	free(p);
}

static int run_coverage(const char *mode, size_t mib)
{
	size_t n = mib * MIB / PB_SIZE;
	void **p = calloc(n, sizeof *p);
	struct smaps base, m;
	if (!p || read_smaps_rollup(&base))
		die("coverage setup");
	double t0 = now_s();
	for (size_t i = 0; i < n; i++)
		if (!(p[i] = cov_alloc(mode, PB_SIZE)))
			die("allocation");
	double t1 = now_s();
	for (size_t i = 0; i < n; i++)
		memset(p[i], (int)(i | 1), PB_SIZE);
	double t2 = now_s();
	if (read_smaps_rollup(&m))
		die("smaps_rollup");
	for (size_t i = 0; i < n; i++)
		cov_free(mode, p[i]);
	free(p);
	const char *pre = getenv("LD_PRELOAD");
	printf("coverage mode=%s preload=%s working_set_mib=%zu allocs=%zu "
	       "alloc_ms=%.1f touch_ms=%.1f anon_huge_kb=%ld anon_kb=%ld rss_kb=%ld "
	       "base_rss_kb=%ld coverage=%.4f\n",
	       mode, pre && *pre ? pre : "none", mib, n, (t1 - t0) * 1e3, (t2 - t1) * 1e3,
	       m.anon_huge_kb, m.anon_kb, m.rss_kb, base.rss_kb,
	       m.anon_kb > 0 ? (double)m.anon_huge_kb / (double)m.anon_kb : 0.0);
#ifndef SPB_ENGINE_BENCH_MALLOC_ONLY
	if (!strcmp(mode, "spb_pages"))
		printf("counters pb_back_thp=%llu pb_back_4k=%llu pb_claim=%llu spb_reserve=%llu\n",
		       (unsigned long long)spb_counter_get("pb_back_thp"),
		       (unsigned long long)spb_counter_get("pb_back_4k"),
		       (unsigned long long)spb_counter_get("pb_claim"),
		       (unsigned long long)spb_counter_get("spb_reserve"));
#endif
	return 0;
}

#ifndef SPB_ENGINE_BENCH_MALLOC_ONLY
/* -------------------------------------------------------------- throughput */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct tp_config {
	const char *unit;  /* "pageblock" (2 MiB) or "run16k" */
	spb_class_t cls;
	int threads;
	int decay0;        /* SPBMALLOC_DECAY_MS=0 */
};

struct tp_thread {
	pthread_t tid;
	size_t size;
	spb_class_t cls;
	int touch;
	double ms;
	pthread_barrier_t *start;
	uint64_t ops;
	int failed;
};

static void *tp_worker(void *arg)
{
	struct tp_thread *t = arg;
	void *p[BATCH];
	pthread_barrier_wait(t->start);
	double end = now_s() + t->ms / 1e3;
	do {
		for (int i = 0; i < BATCH; i++) {
			p[i] = spb_pages_alloc(t->size, 0, t->cls, 0);
			if (!p[i]) {
				t->failed = 1;
				return NULL;
			}
			if (t->touch)
				*(volatile char *)p[i] = 1;
		}
		for (int i = 0; i < BATCH; i++)
			spb_pages_free(p[i]);
		t->ops += 2 * BATCH;
	} while (now_s() < end);
	return NULL;
}

/* The child process: one measurement, printed as "ops_per_s=X". */
static int tp_child(const char *unit, int cls, int threads, double ms, int touch)
{
	struct tp_thread t[2];
	pthread_barrier_t start;
	size_t size = !strcmp(unit, "pageblock") ? PB_SIZE : 16384;
	if (threads < 1 || threads > 2)
		return 2;
	/* Warm up: reserve the SPB and back the pageblocks outside the timing. */
	for (int i = 0; i < threads; i++) {
		void *w[BATCH];
		for (int k = 0; k < BATCH; k++)
			w[k] = spb_pages_alloc(size, 0, (spb_class_t)cls, 0);
		for (int k = 0; k < BATCH; k++)
			spb_pages_free(w[k]);
	}
	pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
	for (int i = 0; i < threads; i++) {
		t[i] = (struct tp_thread){.size = size, .cls = (spb_class_t)cls, .touch = touch,
					  .ms = ms, .start = &start};
		if (pthread_create(&t[i].tid, NULL, tp_worker, &t[i]))
			die("pthread_create");
	}
	double t0 = now_s();
	pthread_barrier_wait(&start);
	uint64_t ops = 0;
	int failed = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i].tid, NULL);
		ops += t[i].ops;
		failed |= t[i].failed;
	}
	double el = now_s() - t0;
	printf("ops_per_s=%.0f releases=%llu unmaps=%llu\n", failed ? 0.0 : (double)ops / el,
	       (unsigned long long)spb_counter_get("pb_release"),
	       (unsigned long long)spb_counter_get("spb_unmap"));
	return failed;
}

/* Run one configuration in a fresh process (settings are read once). */
static double tp_spawn(const struct tp_config *c, double ms, int touch, uint64_t *releases,
		       uint64_t *unmaps)
{
	int fd[2];
	char cls[8], thr[8], msb[32], tch[4];
	if (pipe(fd))
		die("pipe");
	snprintf(cls, sizeof cls, "%d", (int)c->cls);
	snprintf(thr, sizeof thr, "%d", c->threads);
	snprintf(msb, sizeof msb, "%.0f", ms);
	snprintf(tch, sizeof tch, "%d", touch);
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		dup2(fd[1], 1);
		close(fd[0]);
		close(fd[1]);
		if (c->decay0)
			setenv("SPBMALLOC_DECAY_MS", "0", 1);
		else
			unsetenv("SPBMALLOC_DECAY_MS");
		char *argv[] = {"bench_engine", "--tp-child", (char *)c->unit, cls, thr, msb,
				tch, NULL};
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	close(fd[1]);
	char buf[256];
	ssize_t n = read(fd[0], buf, sizeof buf - 1), k;
	while (n >= 0 && n < (ssize_t)sizeof buf - 1 &&
	       (k = read(fd[0], buf + n, sizeof buf - 1 - (size_t)n)) > 0)
		n += k;
	close(fd[0]);
	int st;
	waitpid(pid, &st, 0);
	if (n <= 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "bench_engine: a throughput run failed\n");
		exit(1);
	}
	buf[n] = 0;
	unsigned long long rel = 0, unm = 0;
	double ops = 0;
	if (sscanf(buf, "ops_per_s=%lf releases=%llu unmaps=%llu", &ops, &rel, &unm) != 3)
		die("child output");
	*releases = rel;
	*unmaps = unm;
	return ops;
}

static int run_throughput(int reps, double ms, int touch)
{
	static const char *units[] = {"pageblock", "run16k"};
	static const spb_class_t classes[] = {SPB_MOVABLE, SPB_UNMOVABLE};
	struct tp_config cfg[16];
	double res[16][MAX_REPS];
	uint64_t rel[16] = {0}, unm[16] = {0};
	int nc = 0;
	for (int u = 0; u < 2; u++)
		for (int d = 0; d < 2; d++)
			for (int c = 0; c < 2; c++)
				for (int t = 1; t <= 2; t++)
					cfg[nc++] = (struct tp_config){units[u], classes[c], t, d};
	printf("# claim/release throughput: batches of %d allocations then %d frees, "
	       "%d reps x %.0f ms, median; ops = allocations + frees%s;\n"
	       "# pb_release, spb_unmap: the engine's counters in the last repetition\n",
	       BATCH, BATCH, reps, ms, touch ? "; first byte of each allocation written" : "");
	for (int r = 0; r < reps; r++) /* interleaved: each rep visits every config */
		for (int i = 0; i < nc; i++)
			res[i][r] = tp_spawn(&cfg[i], ms, touch, &rel[i], &unm[i]);
	printf("%-10s %-10s %-8s %-7s %14s %14s %14s %10s %10s\n", "unit", "class", "decay",
	       "threads", "median_ops/s", "min_ops/s", "max_ops/s", "pb_release", "spb_unmap");
	for (int i = 0; i < nc; i++) {
		double lo = res[i][0], hi = res[i][0];
		for (int r = 1; r < reps; r++) {
			lo = res[i][r] < lo ? res[i][r] : lo;
			hi = res[i][r] > hi ? res[i][r] : hi;
		}
		printf("%-10s %-10s %-8s %-7d %14.0f %14.0f %14.0f %10llu %10llu\n", cfg[i].unit,
		       cfg[i].cls == SPB_MOVABLE ? "MOVABLE" : "UNMOVABLE",
		       cfg[i].decay0 ? "0" : "default", cfg[i].threads,
		       median(res[i], reps), lo, hi, (unsigned long long)rel[i],
		       (unsigned long long)unm[i]);
	}
	return 0;
}
#endif /* !SPB_ENGINE_BENCH_MALLOC_ONLY */

static int usage(void)
{
	fprintf(stderr,
		"usage: bench_engine throughput [--reps N] [--ms MS] [--touch]\n"
		"       bench_engine coverage --mode spb_pages|malloc [--mib N]\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *mode = "malloc";
	int reps = 5, touch = 0;
	double ms = 300;
	size_t mib = 4096;
	if (argc < 2)
		return usage();
#ifndef SPB_ENGINE_BENCH_MALLOC_ONLY
	if (!strcmp(argv[1], "--tp-child") && argc == 7)
		return tp_child(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]),
				atoi(argv[6]));
#endif
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ms") && i + 1 < argc)
			ms = atof(argv[++i]);
		else if (!strcmp(argv[i], "--touch"))
			touch = 1;
		else if (!strcmp(argv[i], "--mode") && i + 1 < argc)
			mode = argv[++i];
		else if (!strcmp(argv[i], "--mib") && i + 1 < argc)
			mib = (size_t)atol(argv[++i]);
		else
			return usage();
	}
	if (reps < 1 || reps > MAX_REPS || ms <= 0 || mib < 2)
		return usage();
	if (!strcmp(argv[1], "coverage")) {
		if (strcmp(mode, "malloc")
#ifndef SPB_ENGINE_BENCH_MALLOC_ONLY
		    && strcmp(mode, "spb_pages")
#endif
		)
			return usage();
		return run_coverage(mode, mib);
	}
#ifndef SPB_ENGINE_BENCH_MALLOC_ONLY
	if (!strcmp(argv[1], "throughput"))
		return run_throughput(reps, ms, touch);
#else
	(void)touch;
#endif
	return usage();
}
