/*
 * main.c — registers the C microbenchmarks and hands over to Google
 * Benchmark (spb_bench_main takes the usual --benchmark_* flags).
 * The same sources build gbench_glibc (whatever malloc the C library has)
 * and gbench_spbmalloc (linked with spbmalloc, plus the spb_* benchmarks).
 */
#include "benches.h"
#include "spb_bench.h"

int main(int argc, char **argv)
{
	bench_malloc_register();
	bench_xthread_register();
#ifdef SPB_BENCH_HAVE_SPB
	bench_spb_register();
#endif
	return spb_bench_main(argc, argv);
}
