/*
 * wl_common.h — helpers shared by the whole-program comparison workloads.
 *
 * Owns: argument parsing (key=value words on the command line), the clock,
 * a per-thread random generator and size distributions, memory sampling from
 * /proc/self (VmHWM, smaps_rollup: Anonymous, AnonHugePages), and the
 * key=value report every workload prints for benchmarks/compare.
 * The workloads run under LD_PRELOAD of the allocator being measured, so they
 * use the plain malloc family and never link any allocator themselves.
 */
#ifndef WL_COMMON_H
#define WL_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* key=value arguments; a missing key gives the default. */
void wl_args_init(int argc, char **argv);
long wl_arg_long(const char *key, long def);
double wl_arg_double(const char *key, double def);

int wl_nproc(void);
double wl_now(void);
void wl_sleep(double seconds);

/* xorshift64*: one state per thread, seeded from (seed, thread index). */
struct wl_rng {
	uint64_t s;
};
void wl_rng_seed(struct wl_rng *r, uint64_t seed, uint64_t stream);
static inline uint64_t wl_rand(struct wl_rng *r)
{
	uint64_t x = r->s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545F4914F6CDD1DULL;
}
static inline double wl_unit(struct wl_rng *r)
{
	return (double)(wl_rand(r) >> 11) * (1.0 / 9007199254740992.0);
}
/* Power-law sizes in [lo, hi]: log-uniform of u^skew, small sizes common. */
size_t wl_size_powerlaw(struct wl_rng *r, size_t lo, size_t hi, double skew);

/* Memory of this process, in KiB. */
struct wl_mem {
	long hwm_kb;		/* VmHWM: peak resident set */
	long rss_kb;		/* VmRSS now */
	long anon_kb;		/* smaps_rollup Anonymous */
	long anon_huge_kb;	/* smaps_rollup AnonHugePages */
};
void wl_mem_read(struct wl_mem *m);
/* Sample now and keep the sample if it has the most anonymous memory so far:
 * the coverage reported is the one at the peak working set. Thread-safe. */
void wl_peak_note(void);

/* Report: "key=value" lines on stdout. wl_report_end adds the memory lines
 * (peak_rss_kb, anon_kb, anon_huge_kb, coverage) and flushes. */
void wl_kv_str(const char *key, const char *val);
void wl_kv_long(const char *key, long val);
void wl_kv_double(const char *key, double val);
void wl_report_main(const char *workload, long threads, double ops,
		    double seconds);
void wl_report_end(void);

/* Abort with a message when an allocation fails: a benchmark has no fallback. */
void *wl_check(void *p, size_t size);

#endif
