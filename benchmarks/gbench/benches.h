/*
 * benches.h — the registration functions of the C microbenchmarks, called
 * from main.c. Each bench_*.c file registers its own benchmarks through
 * spb_bench.h and calls nothing else of the project; bench_spb.c (the
 * spb_* API) is built only into the binary linked with spbmalloc.
 */
#ifndef SPB_BENCHES_H
#define SPB_BENCHES_H

void bench_malloc_register(void);  /* bench_malloc.c: the malloc family */
void bench_xthread_register(void); /* bench_xthread.c: cross-thread free */
#ifdef SPB_BENCH_HAVE_SPB
void bench_spb_register(void);     /* bench_spb.c: spb_* calls */
#endif

#endif
