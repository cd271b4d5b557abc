/*
 * wl_common.c — see wl_common.h. Arguments, clock, random sizes, /proc
 * memory sampling and the key=value report of the comparison workloads.
 * May call libc freely (these are programs, not the allocator).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wl_common.h"

static int wl_argc;
static char **wl_argv;

void wl_args_init(int argc, char **argv)
{
	wl_argc = argc;
	wl_argv = argv;
	for (int i = 1; i < argc; i++) {
		if (!strchr(argv[i], '=')) {
			fprintf(stderr, "usage: %s key=value ... (bad word '%s')\n",
				argv[0], argv[i]);
			exit(2);
		}
	}
}

static const char *wl_arg_find(const char *key)
{
	size_t n = strlen(key);

	for (int i = 1; i < wl_argc; i++)
		if (!strncmp(wl_argv[i], key, n) && wl_argv[i][n] == '=')
			return wl_argv[i] + n + 1;
	return NULL;
}

long wl_arg_long(const char *key, long def)
{
	const char *v = wl_arg_find(key);
	char *end;
	long x;

	if (!v)
		return def;
	errno = 0;
	x = strtol(v, &end, 0);
	if (errno || end == v || *end) {
		fprintf(stderr, "bad integer for %s: '%s'\n", key, v);
		exit(2);
	}
	return x;
}

double wl_arg_double(const char *key, double def)
{
	const char *v = wl_arg_find(key);
	char *end;
	double x;

	if (!v)
		return def;
	x = strtod(v, &end);
	if (end == v || *end) {
		fprintf(stderr, "bad number for %s: '%s'\n", key, v);
		exit(2);
	}
	return x;
}

int wl_nproc(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

double wl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void wl_sleep(double seconds)
{
	struct timespec ts;

	if (seconds <= 0)
		return;
	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void wl_rng_seed(struct wl_rng *r, uint64_t seed, uint64_t stream)
{
	/* splitmix64 of (seed, stream): never zero, streams independent. */
	uint64_t z = seed * 0x9E3779B97F4A7C15ULL + stream * 0xBF58476D1CE4E5B9ULL
		+ 0x94D049BB133111EBULL;

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	z ^= z >> 31;
	r->s = z ? z : 1;
}

size_t wl_size_powerlaw(struct wl_rng *r, size_t lo, size_t hi, double skew)
{
	double u = pow(wl_unit(r), skew);
	double s = exp(log((double)lo) + u * (log((double)hi) - log((double)lo)));
	size_t n = (size_t)s;

	if (n < lo)
		n = lo;
	if (n > hi)
		n = hi;
	return n;
}

/* Read "Key:   123 kB" lines of a /proc file into the requested slots. */
static void wl_proc_read(const char *path, const char *const *keys,
			 long *vals, int n)
{
	char line[256];
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		for (int i = 0; i < n; i++) {
			size_t k = strlen(keys[i]);

			if (!strncmp(line, keys[i], k) && line[k] == ':')
				vals[i] = strtol(line + k + 1, NULL, 10);
		}
	}
	fclose(f);
}

void wl_mem_read(struct wl_mem *m)
{
	static const char *const st[] = { "VmHWM", "VmRSS" };
	static const char *const sm[] = { "Anonymous", "AnonHugePages" };
	long a[2] = { -1, -1 }, b[2] = { -1, -1 };

	wl_proc_read("/proc/self/status", st, a, 2);
	wl_proc_read("/proc/self/smaps_rollup", sm, b, 2);
	m->hwm_kb = a[0];
	m->rss_kb = a[1];
	m->anon_kb = b[0];
	m->anon_huge_kb = b[1];
}

static pthread_mutex_t wl_peak_lock = PTHREAD_MUTEX_INITIALIZER;
static struct wl_mem wl_peak = { -1, -1, -1, -1 };

void wl_peak_note(void)
{
	struct wl_mem m;

	wl_mem_read(&m);
	pthread_mutex_lock(&wl_peak_lock);
	if (m.anon_kb > wl_peak.anon_kb)
		wl_peak = m;
	pthread_mutex_unlock(&wl_peak_lock);
}

void wl_kv_str(const char *key, const char *val)
{
	printf("%s=%s\n", key, val);
}

void wl_kv_long(const char *key, long val)
{
	printf("%s=%ld\n", key, val);
}

void wl_kv_double(const char *key, double val)
{
	printf("%s=%.6g\n", key, val);
}

void wl_report_main(const char *workload, long threads, double ops,
		    double seconds)
{
	wl_kv_str("workload", workload);
	wl_kv_long("threads", threads);
	wl_kv_long("nproc", wl_nproc());
	printf("ops=%.0f\n", ops);
	wl_kv_double("seconds", seconds);
	wl_kv_double("ops_per_s", seconds > 0 ? ops / seconds : 0);
}

void wl_report_end(void)
{
	struct wl_mem now;

	wl_mem_read(&now);
	wl_kv_long("peak_rss_kb", now.hwm_kb);
	if (wl_peak.anon_kb >= 0) {
		wl_kv_long("anon_kb", wl_peak.anon_kb);
		wl_kv_long("anon_huge_kb", wl_peak.anon_huge_kb);
		wl_kv_double("coverage", wl_peak.anon_kb > 0 ?
			     (double)wl_peak.anon_huge_kb /
			     (double)wl_peak.anon_kb : 0.0);
	}
	fflush(stdout);
}

void *wl_check(void *p, size_t size)
{
	if (!p && size) {
		fprintf(stderr, "allocation of %zu bytes failed\n", size);
		abort();
	}
	return p;
}
