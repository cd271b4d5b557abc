/*
 * spb_bench.h — a C API over Google Benchmark, so every microbenchmark of
 * this project is written in C (the shape of IREE's
 * runtime/src/iree/testing/benchmark.h).
 *
 * A benchmark is a C function run with an opaque state; it loops on
 * spb_bench_keep_running() (or the batched form, which amortises the call
 * into the C++ side over n iterations) and reports counters. Registration
 * returns an opaque handle on which arguments, ranges and thread counts are
 * set. spb_bench_main() parses the usual --benchmark_* flags and runs.
 * Implemented in spb_bench.cc on benchmark::RegisterBenchmark; nothing here
 * needs C++.
 */
#ifndef SPB_BENCH_H
#define SPB_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct spb_bench_state spb_bench_state_t; /* benchmark::State */
typedef struct spb_bench spb_bench_t;             /* a registered benchmark */
typedef void (*spb_bench_fn_t)(spb_bench_state_t *st, void *arg);

/* ---- registration (before spb_bench_main) ---- */
/* Register fn under name; arg is handed to every run. name is copied. */
spb_bench_t *spb_bench_register(const char *name, spb_bench_fn_t fn, void *arg);
/* One run per call with this argument (several calls: several runs). */
spb_bench_t *spb_bench_arg(spb_bench_t *b, int64_t a);
/* One run with two arguments (range(0), range(1)). */
spb_bench_t *spb_bench_args2(spb_bench_t *b, int64_t a0, int64_t a1);
/* Runs for lo..hi, multiplying by mult (lo, lo*mult, ..., hi). */
spb_bench_t *spb_bench_range(spb_bench_t *b, int64_t lo, int64_t hi, int mult);
/* Names the arguments in the output (name/size:64 rather than name/64). */
spb_bench_t *spb_bench_arg_name(spb_bench_t *b, const char *name);
/* Run with this many threads (several calls: several runs). */
spb_bench_t *spb_bench_threads(spb_bench_t *b, int n);
/* Report wall-clock time rather than the calling thread's CPU time. */
spb_bench_t *spb_bench_use_real_time(spb_bench_t *b);

/* ---- inside a benchmark ---- */
/* True while the benchmark should run one more iteration. */
bool spb_bench_keep_running(spb_bench_state_t *st);
/* True while it should run n more iterations (counted as n). */
bool spb_bench_keep_running_batch(spb_bench_state_t *st, int64_t n);
int64_t spb_bench_get_range(spb_bench_state_t *st, int idx);
int spb_bench_thread_index(spb_bench_state_t *st);
int spb_bench_thread_count(spb_bench_state_t *st);
int64_t spb_bench_iterations(spb_bench_state_t *st);
void spb_bench_pause_timing(spb_bench_state_t *st);
void spb_bench_resume_timing(spb_bench_state_t *st);
/* items/s and bytes/s over the whole run (call once, after the loop). */
void spb_bench_set_items_processed(spb_bench_state_t *st, int64_t items);
void spb_bench_set_bytes_processed(spb_bench_state_t *st, int64_t bytes);
/* A named counter; flags are SPB_BENCH_COUNTER_* (0 = plain value). */
#define SPB_BENCH_COUNTER_RATE 0x1u        /* value divided by the time */
#define SPB_BENCH_COUNTER_AVG_THREADS 0x2u /* averaged over threads */
#define SPB_BENCH_COUNTER_PER_ITER 0x4u    /* value divided by iterations */
void spb_bench_counter(spb_bench_state_t *st, const char *name, double value,
		       unsigned flags);
/* Stop this run with an error message (the loop must then end). */
void spb_bench_skip_with_error(spb_bench_state_t *st, const char *msg);
void spb_bench_set_label(spb_bench_state_t *st, const char *label);

/* Parse --benchmark_* flags, run what was registered; returns the exit code
 * (1 on an unrecognised flag). */
int spb_bench_main(int argc, char **argv);

/* Keep the compiler from proving p unused (and eliding a malloc/free pair). */
static inline void spb_bench_escape(void *p)
{
	__asm__ volatile("" : : "g"(p) : "memory");
}
/* Make the compiler assume all memory was read and written. */
static inline void spb_bench_clobber(void)
{
	__asm__ volatile("" : : : "memory");
}

#ifdef __cplusplus
}
#endif
#endif
