/*
 * bench_spb.c — microbenchmarks of the spb_* API (built only into
 * gbench_spbmalloc): pageblock claim/release through spb_pages_alloc of
 * 2 MiB, batches of pageblocks, page runs inside pageblocks, and the
 * cheap calls (usable size, counters, an idle decay pass). Calls only the
 * public API in spbmalloc.h and spb_bench.h.
 */
#include "benches.h"
#include "spb_bench.h"
#include "spbmalloc.h"

#define PB_SIZE ((size_t)2 << 20)
#define PB_BATCH 64

static const char *class_name(int64_t cls)
{
	return cls == SPB_MOVABLE ? "MOVABLE" : cls == SPB_UNMOVABLE ? "UNMOVABLE"
					       : "RECLAIMABLE";
}

/* One pageblock claimed and released: spb_pages_alloc(2 MiB) then
 * spb_pages_free, class = range(0). With the default decay the released
 * pageblock stays backed and the next claim reuses it. */
static void bm_pb_claim_release(spb_bench_state_t *st, void *arg)
{
	spb_class_t cls = (spb_class_t)spb_bench_get_range(st, 0);
	(void)arg;
	spb_bench_set_label(st, class_name(cls));
	while (spb_bench_keep_running(st)) {
		void *p = spb_pages_alloc(PB_SIZE, 0, cls, 0);
		if (!p) {
			spb_bench_skip_with_error(st, "spb_pages_alloc(2 MiB) failed");
			break;
		}
		spb_bench_escape(p);
		spb_pages_free(p);
	}
	spb_bench_set_items_processed(st, spb_bench_iterations(st));
}

/* PB_BATCH pageblocks claimed, then all released; items are pageblocks. */
static void bm_pb_batch(spb_bench_state_t *st, void *arg)
{
	spb_class_t cls = (spb_class_t)spb_bench_get_range(st, 0);
	void *p[PB_BATCH];
	(void)arg;
	spb_bench_set_label(st, class_name(cls));
	while (spb_bench_keep_running(st)) {
		for (int i = 0; i < PB_BATCH; i++)
			p[i] = spb_pages_alloc(PB_SIZE, 0, cls, 0);
		spb_bench_clobber();
		for (int i = 0; i < PB_BATCH; i++)
			spb_pages_free(p[i]);
	}
	spb_bench_set_items_processed(st, spb_bench_iterations(st) * PB_BATCH);
}

/* A page run of range(0) bytes (< 2 MiB) inside an UNMOVABLE pageblock. */
static void bm_page_run(spb_bench_state_t *st, void *arg)
{
	size_t size = (size_t)spb_bench_get_range(st, 0);
	(void)arg;
	while (spb_bench_keep_running(st)) {
		void *p = spb_pages_alloc(size, 0, SPB_UNMOVABLE, 0);
		if (!p) {
			spb_bench_skip_with_error(st, "spb_pages_alloc(run) failed");
			break;
		}
		spb_bench_escape(p);
		spb_pages_free(p);
	}
	spb_bench_set_items_processed(st, spb_bench_iterations(st));
	spb_bench_set_bytes_processed(st, spb_bench_iterations(st) * (int64_t)size);
}

static void bm_usable_size(spb_bench_state_t *st, void *arg)
{
	size_t size = (size_t)spb_bench_get_range(st, 0);
	void *p = spb_pages_alloc(size, 0, SPB_UNMOVABLE, 0);
	size_t sum = 0;
	(void)arg;
	while (spb_bench_keep_running(st)) {
		spb_bench_escape(p);
		sum += spb_pages_usable_size(p);
	}
	spb_pages_free(p);
	if (sum < size)
		spb_bench_skip_with_error(st, "spb_pages_usable_size below the request");
	spb_bench_set_items_processed(st, spb_bench_iterations(st));
}

/* spb_counter_get by name: a lookup over the counter list. */
static void bm_counter_get(spb_bench_state_t *st, void *arg)
{
	uint64_t sum = 0;
	(void)arg;
	while (spb_bench_keep_running(st))
		sum += spb_counter_get("pb_claim");
	if (sum == UINT64_MAX)
		spb_bench_skip_with_error(st, "no counter pb_claim");
	spb_bench_set_items_processed(st, spb_bench_iterations(st));
}

/* Every counter read once by index (a stats snapshot). */
static void bm_counter_snapshot(spb_bench_state_t *st, void *arg)
{
	size_t n = spb_counter_count();
	uint64_t sum = 0;
	(void)arg;
	while (spb_bench_keep_running(st))
		for (size_t i = 0; i < n; i++)
			sum += spb_counter_value(i);
	spb_bench_escape(&sum);
	spb_bench_set_items_processed(st, spb_bench_iterations(st) * (int64_t)n);
	spb_bench_counter(st, "counters", (double)n, 0);
}

/* spb_decay() with nothing due: what the background thread pays per wake. */
static void bm_decay_idle(spb_bench_state_t *st, void *arg)
{
	uint64_t sum = 0;
	(void)arg;
	while (spb_bench_keep_running(st))
		sum += spb_decay();
	spb_bench_escape(&sum);
	spb_bench_set_items_processed(st, spb_bench_iterations(st));
}

void bench_spb_register(void)
{
	spb_bench_t *b;

	b = spb_bench_register("spb_pb_claim_release", bm_pb_claim_release, NULL);
	spb_bench_arg_name(b, "class");
	spb_bench_arg(b, SPB_MOVABLE);
	spb_bench_arg(b, SPB_UNMOVABLE);
	b = spb_bench_register("spb_pb_batch64", bm_pb_batch, NULL);
	spb_bench_arg_name(b, "class");
	spb_bench_arg(b, SPB_MOVABLE);
	spb_bench_arg(b, SPB_UNMOVABLE);
	b = spb_bench_register("spb_pb_claim_release_mt", bm_pb_claim_release, NULL);
	spb_bench_arg_name(b, "class");
	spb_bench_arg(b, SPB_UNMOVABLE);
	spb_bench_use_real_time(spb_bench_threads(b, 2));

	b = spb_bench_register("spb_page_run", bm_page_run, NULL);
	spb_bench_arg_name(spb_bench_range(b, 4096, 1 << 20, 4), "size");
	b = spb_bench_register("spb_pages_usable_size", bm_usable_size, NULL);
	spb_bench_arg(b, 16384);
	spb_bench_register("spb_counter_get", bm_counter_get, NULL);
	spb_bench_register("spb_counter_snapshot", bm_counter_snapshot, NULL);
	spb_bench_register("spb_decay_idle", bm_decay_idle, NULL);
}
