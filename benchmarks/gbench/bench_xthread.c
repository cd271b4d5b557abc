/*
 * bench_xthread.c — cross-thread free: thread 0 allocates and passes each
 * block through a small lock-free single-producer/single-consumer ring to
 * thread 1, which frees it (the xmalloc producer/consumer pattern, where
 * every free is remote). Both threads run the same number of iterations
 * (Google Benchmark gives every thread of a run the same count), so the
 * ring drains exactly. Calls only libc and spb_bench.h.
 */
#include <sched.h>
#include <stdlib.h>

#include "benches.h"
#include "spb_bench.h"

#define RING_SLOTS 256 /* power of two */
#define XFER_BATCH 32

static struct {
	_Alignas(64) size_t head; /* written by the producer */
	_Alignas(64) size_t tail; /* written by the consumer */
	_Alignas(64) void *slot[RING_SLOTS];
} ring;

static void backoff(unsigned *spins)
{
	/* The machine may have fewer cores than runnable threads: after a short
	 * spin, yield so the other side can run. */
	if (++*spins < 64)
		__builtin_ia32_pause();
	else
		sched_yield();
}

static void ring_push(void *p)
{
	size_t h = __atomic_load_n(&ring.head, __ATOMIC_RELAXED);
	unsigned spins = 0;
	while (h - __atomic_load_n(&ring.tail, __ATOMIC_ACQUIRE) >= RING_SLOTS)
		backoff(&spins);
	ring.slot[h & (RING_SLOTS - 1)] = p;
	__atomic_store_n(&ring.head, h + 1, __ATOMIC_RELEASE);
}

static void *ring_pop(void)
{
	size_t t = __atomic_load_n(&ring.tail, __ATOMIC_RELAXED);
	unsigned spins = 0;
	while (__atomic_load_n(&ring.head, __ATOMIC_ACQUIRE) == t)
		backoff(&spins);
	void *p = ring.slot[t & (RING_SLOTS - 1)];
	__atomic_store_n(&ring.tail, t + 1, __ATOMIC_RELEASE);
	return p;
}

static void bm_xthread_free(spb_bench_state_t *st, void *arg)
{
	size_t size = (size_t)spb_bench_get_range(st, 0);
	bool producer = spb_bench_thread_index(st) == 0;
	(void)arg;
	if (spb_bench_thread_count(st) != 2) {
		spb_bench_skip_with_error(st, "needs exactly 2 threads");
		while (spb_bench_keep_running(st))
			;
		return;
	}
	while (spb_bench_keep_running_batch(st, XFER_BATCH)) {
		for (int i = 0; i < XFER_BATCH; i++) {
			if (producer) {
				char *p = malloc(size);
				p[0] = (char)i;
				ring_push(p);
			} else {
				free(ring_pop());
			}
		}
	}
	if (producer) { /* counted once: one item is one block moved and freed */
		spb_bench_set_items_processed(st, spb_bench_iterations(st));
		spb_bench_set_bytes_processed(st, spb_bench_iterations(st) * (int64_t)size);
	}
}

void bench_xthread_register(void)
{
	spb_bench_t *b = spb_bench_register("xthread_free", bm_xthread_free, NULL);
	spb_bench_arg_name(spb_bench_range(b, 16, 1 << 16, 16), "size");
	spb_bench_use_real_time(spb_bench_threads(b, 2));
}
