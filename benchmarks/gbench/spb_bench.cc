/*
 * spb_bench.cc — the C API of spb_bench.h implemented on Google Benchmark.
 *
 * The only C++ in the benchmarks. The handle types are Google Benchmark's
 * own objects behind opaque C pointers. benchmark::RegisterBenchmark
 * returns benchmark::internal::Benchmark* in 1.7.1 (Debian 12) and
 * benchmark::Benchmark* in newer releases: the pointer type is deduced
 * (decltype/auto), never named, so this file builds against both.
 */
#include "spb_bench.h"

#include <benchmark/benchmark.h>

namespace {

void placeholder_fn(benchmark::State &) {}
using bench_ptr = decltype(benchmark::RegisterBenchmark("", placeholder_fn));

bench_ptr B(spb_bench_t *b)
{
	return reinterpret_cast<bench_ptr>(b);
}

spb_bench_t *H(bench_ptr b)
{
	return reinterpret_cast<spb_bench_t *>(b);
}

benchmark::State &S(spb_bench_state_t *st)
{
	return *reinterpret_cast<benchmark::State *>(st);
}

} // namespace

extern "C" {

spb_bench_t *spb_bench_register(const char *name, spb_bench_fn_t fn, void *arg)
{
	auto *b = benchmark::RegisterBenchmark(name, [fn, arg](benchmark::State &st) {
		fn(reinterpret_cast<spb_bench_state_t *>(&st), arg);
	});
	return H(b);
}

spb_bench_t *spb_bench_arg(spb_bench_t *b, int64_t a)
{
	return H(B(b)->Arg(a));
}

spb_bench_t *spb_bench_args2(spb_bench_t *b, int64_t a0, int64_t a1)
{
	return H(B(b)->Args({a0, a1}));
}

spb_bench_t *spb_bench_range(spb_bench_t *b, int64_t lo, int64_t hi, int mult)
{
	return H(B(b)->RangeMultiplier(mult)->Range(lo, hi));
}

spb_bench_t *spb_bench_arg_name(spb_bench_t *b, const char *name)
{
	return H(B(b)->ArgName(name));
}

spb_bench_t *spb_bench_threads(spb_bench_t *b, int n)
{
	return H(B(b)->Threads(n));
}

spb_bench_t *spb_bench_use_real_time(spb_bench_t *b)
{
	return H(B(b)->UseRealTime());
}

bool spb_bench_keep_running(spb_bench_state_t *st)
{
	return S(st).KeepRunning();
}

bool spb_bench_keep_running_batch(spb_bench_state_t *st, int64_t n)
{
	return S(st).KeepRunningBatch(static_cast<benchmark::IterationCount>(n));
}

int64_t spb_bench_get_range(spb_bench_state_t *st, int idx)
{
	return S(st).range(static_cast<std::size_t>(idx));
}

int spb_bench_thread_index(spb_bench_state_t *st)
{
	return S(st).thread_index();
}

int spb_bench_thread_count(spb_bench_state_t *st)
{
	return S(st).threads();
}

int64_t spb_bench_iterations(spb_bench_state_t *st)
{
	return static_cast<int64_t>(S(st).iterations());
}

void spb_bench_pause_timing(spb_bench_state_t *st)
{
	S(st).PauseTiming();
}

void spb_bench_resume_timing(spb_bench_state_t *st)
{
	S(st).ResumeTiming();
}

void spb_bench_set_items_processed(spb_bench_state_t *st, int64_t items)
{
	S(st).SetItemsProcessed(items);
}

void spb_bench_set_bytes_processed(spb_bench_state_t *st, int64_t bytes)
{
	S(st).SetBytesProcessed(bytes);
}

void spb_bench_counter(spb_bench_state_t *st, const char *name, double value,
		       unsigned flags)
{
	int f = benchmark::Counter::kDefaults;
	if (flags & SPB_BENCH_COUNTER_RATE)
		f |= benchmark::Counter::kIsRate;
	if (flags & SPB_BENCH_COUNTER_AVG_THREADS)
		f |= benchmark::Counter::kAvgThreads;
	if (flags & SPB_BENCH_COUNTER_PER_ITER)
		f |= benchmark::Counter::kAvgIterations;
	S(st).counters[name] =
		benchmark::Counter(value, static_cast<benchmark::Counter::Flags>(f));
}

void spb_bench_skip_with_error(spb_bench_state_t *st, const char *msg)
{
	S(st).SkipWithError(msg);
}

void spb_bench_set_label(spb_bench_state_t *st, const char *label)
{
	S(st).SetLabel(label);
}

int spb_bench_main(int argc, char **argv)
{
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	return 0;
}

} // extern "C"
