/*
 * frag.c — fragmentation run.
 *
 * Phase build: allocate a heap of mixed small sizes (power law 16 B..4 KiB)
 * up to heap_mb of live bytes. Phase free90: free a random 90 %. Phase
 * refill: allocate a different size mix (log-uniform 1 KiB..32 KiB) back to
 * heap_mb live bytes; an allocator that cannot reuse the holes left by the
 * small objects grows. Phase freeall: free everything. After each phase the
 * run pauses (pause= seconds) so background purging can work, then records
 * RSS and live bytes: phase.<name>.rss_kb, .live_kb, .anon_huge_kb, .seconds.
 * Arguments: heap_mb= (1024) pause= (2) free_pct= (90) seed= (1).
 * One op = one malloc or free; seconds excludes the pauses.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wl_common.h"

struct obj {
	unsigned char *p;
	size_t size;
};

static struct obj *objs;
static size_t nobjs, capobjs;
static size_t live;
static double ops;

static void push(unsigned char *p, size_t size)
{
	if (nobjs == capobjs) {
		capobjs = capobjs ? capobjs * 2 : 65536;
		objs = wl_check(realloc(objs, capobjs * sizeof(*objs)),
				capobjs * sizeof(*objs));
	}
	objs[nobjs].p = p;
	objs[nobjs].size = size;
	nobjs++;
}

static void fill(struct wl_rng *r, size_t target, size_t lo, size_t hi,
		 double skew)
{
	while (live < target) {
		size_t sz = wl_size_powerlaw(r, lo, hi, skew);
		unsigned char *p = wl_check(malloc(sz), sz);

		memset(p, 0x5a, sz);
		push(p, sz);
		live += sz;
		ops++;
	}
}

/* Free each object with probability pct/100; compact the table. */
static void free_random(struct wl_rng *r, double pct)
{
	size_t kept = 0;

	for (size_t i = 0; i < nobjs; i++) {
		if (pct >= 100.0 || wl_unit(r) * 100.0 < pct) {
			live -= objs[i].size;
			free(objs[i].p);
			ops++;
		} else {
			objs[kept++] = objs[i];
		}
	}
	nobjs = kept;
}

static void phase_end(const char *name, double t0, double pause, double *active)
{
	struct wl_mem m;
	char key[64];
	double dt = wl_now() - t0;

	*active += dt;
	wl_peak_note();
	wl_sleep(pause);
	wl_mem_read(&m);
	snprintf(key, sizeof(key), "phase.%s.seconds", name);
	wl_kv_double(key, dt);
	snprintf(key, sizeof(key), "phase.%s.rss_kb", name);
	wl_kv_long(key, m.rss_kb);
	snprintf(key, sizeof(key), "phase.%s.live_kb", name);
	wl_kv_long(key, (long)(live / 1024));
	snprintf(key, sizeof(key), "phase.%s.anon_huge_kb", name);
	wl_kv_long(key, m.anon_huge_kb);
}

int main(int argc, char **argv)
{
	wl_args_init(argc, argv);
	long heap_mb = wl_arg_long("heap_mb", 1024);
	double pause = wl_arg_double("pause", 2.0);
	double pct = wl_arg_double("free_pct", 90.0);
	struct wl_rng r;
	double active = 0, t0;

	if (heap_mb < 1 || pct < 0 || pct > 100) {
		fprintf(stderr, "frag: bad arguments\n");
		return 2;
	}
	wl_rng_seed(&r, (uint64_t)wl_arg_long("seed", 1), 0);
	size_t target = (size_t)heap_mb << 20;

	t0 = wl_now();
	fill(&r, target, 16, 4096, 2.0);
	phase_end("build", t0, pause, &active);

	t0 = wl_now();
	free_random(&r, pct);
	phase_end("free90", t0, pause, &active);

	t0 = wl_now();
	fill(&r, target, 1024, 32768, 1.0);
	phase_end("refill", t0, pause, &active);

	t0 = wl_now();
	free_random(&r, 100.0);
	free(objs);
	objs = NULL;
	phase_end("freeall", t0, pause, &active);

	wl_report_main("frag", 1, ops, active);
	wl_kv_long("heap_mb", heap_mb);
	wl_report_end();
	return 0;
}
