/*
 * fragwait.c — free 90 % of a big heap at random, then wait and watch RSS.
 *
 * Build: objects of mixed small sizes (power law 16 B..4 KiB, as frag.c's
 * build phase) up to heap_mb of live bytes, each written whole. Free a
 * random free_pct %. Then the program does nothing (no call into the
 * allocator) for wait= seconds and samples its RSS every sample= seconds.
 * Built twice: wl_fragwait (plain malloc/free; run under LD_PRELOAD of each
 * allocator) and wl_fragwait_handles (spb_halloc/spb_hfree, linked with
 * spbmalloc: its compaction thread is what is measured).
 * Prints key=value lines: live_kb; rss_kb.build (after the build);
 * rss_kb.t<seconds> per sample; seconds_to_1_3 (first sample whose RSS is
 * at most 1.3x live, -1 if none); ratio_end (RSS/live at the end); for the
 * handle build also the compaction counters and spb_unmap.
 * Arguments: heap_mb= (2048) free_pct= (90) wait= (10) sample= (0.5)
 * seed= (1). Also the other wl_report lines (peak RSS, huge pages).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wl_common.h"
#ifdef WL_HANDLES
#include "spbmalloc.h"
typedef spb_handle_t ref_t;
static ref_t obj_alloc(size_t sz)
{
	spb_handle_t h = spb_halloc(sz, 0);
	if (!h) {
		fprintf(stderr, "fragwait: spb_halloc(%zu) failed\n", sz);
		exit(1);
	}
	unsigned char *p = spb_hpin(h);
	memset(p, 0x5a, sz);
	spb_hunpin(h);
	return h;
}
static void obj_free(ref_t r) { spb_hfree(r); }
#define API "handles"
#else
typedef void *ref_t;
static ref_t obj_alloc(size_t sz)
{
	unsigned char *p = wl_check(malloc(sz), sz);
	memset(p, 0x5a, sz);
	return p;
}
static void obj_free(ref_t r) { free(r); }
#define API "malloc"
#endif

struct obj {
	ref_t r;
	size_t size;
};

int main(int argc, char **argv)
{
	wl_args_init(argc, argv);
	long heap_mb = wl_arg_long("heap_mb", 2048);
	double pct = wl_arg_double("free_pct", 90.0);
	double wait = wl_arg_double("wait", 10.0);
	double sample = wl_arg_double("sample", 0.5);
	struct wl_rng r;
	if (heap_mb < 1 || pct < 0 || pct > 100 || wait < 0 || sample <= 0) {
		fprintf(stderr, "fragwait: bad arguments\n");
		return 2;
	}
	wl_rng_seed(&r, (uint64_t)wl_arg_long("seed", 1), 0);
	size_t target = (size_t)heap_mb << 20, live = 0, n = 0, cap = 1 << 20;
	struct obj *objs = wl_check(malloc(cap * sizeof *objs), cap * sizeof *objs);
	double t0 = wl_now();
	while (live < target) {
		if (n == cap) {
			cap *= 2;
			objs = wl_check(realloc(objs, cap * sizeof *objs), cap * sizeof *objs);
		}
		size_t sz = wl_size_powerlaw(&r, 16, 4096, 2.0);
		objs[n].r = obj_alloc(sz);
		objs[n++].size = sz;
		live += sz;
	}
	double t_build = wl_now() - t0;
	wl_peak_note();
	struct wl_mem m;
	wl_mem_read(&m);
	wl_kv_str("api", API);
	wl_kv_long("rss_kb.build", m.rss_kb);
	wl_kv_long("objects_built", (long)n);
	size_t kept = 0;
	for (size_t i = 0; i < n; i++) {
		if (wl_unit(&r) * 100.0 < pct) {
			live -= objs[i].size;
			obj_free(objs[i].r);
		} else {
			objs[kept++] = objs[i];
		}
	}
	n = kept;
	/* The program's own table shrinks with its heap (it is not live data:
	 * every allocator pays it alike, but it should not weigh on the ratio
	 * more than the program needs). */
	objs = wl_check(realloc(objs, (n ? n : 1) * sizeof *objs), (n ? n : 1) * sizeof *objs);
	wl_kv_long("live_kb", (long)(live >> 10));
	wl_kv_long("objects_live", (long)n);
	double t_free = wl_now();
	double to13 = -1, ratio = 0;
	char key[64];
	for (double t = 0; t <= wait + 1e-9; t += sample) {
		double due = t_free + t, now = wl_now();
		if (due > now)
			wl_sleep(due - now);
		wl_mem_read(&m);
		ratio = (double)m.rss_kb * 1024.0 / (double)live;
		if (to13 < 0 && ratio <= 1.3)
			to13 = t;
		snprintf(key, sizeof key, "rss_kb.t%.1f", t);
		wl_kv_long(key, m.rss_kb);
	}
	wl_kv_double("seconds_to_1_3", to13);
	wl_kv_double("ratio_end", ratio);
	wl_kv_double("build_seconds", t_build);
#ifdef WL_HANDLES
	static const char *const counters[] = {
		"compact_moved", "compact_moved_bytes", "compact_passes", "compact_spans_freed",
		"compact_spans_stolen", "compact_grace", "compact_grace_us", "compact_cpu_us",
		"compact_ctl_start", "compact_ctl_stop", "compact_futile", "compact_throttled",
		"spb_reserve", "spb_unmap"};
	for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
		wl_kv_long(counters[i], (long)spb_counter_get(counters[i]));
#endif
	for (size_t i = 0; i < n; i++)
		obj_free(objs[i].r);
	free(objs);
	wl_report_main("fragwait", 1, (double)n, t_build);
	wl_kv_long("heap_mb", heap_mb);
	wl_report_end();
	return 0;
}
