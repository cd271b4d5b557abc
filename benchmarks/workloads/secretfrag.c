/*
 * secretfrag.c — secret memory on a fragmented heap (the kernel seed 002's
 * secretmem-vs-fragmentation test, in user space). Links libspbmalloc.
 *
 * Under a fixed cap (run it with SPBMALLOC_MAX_SPBS=1: one 1 GiB SPB), fill
 * fill_mb of the heap with a mix of movable objects (spb_halloc) and plain
 * unmovable ones (malloc), free all but keep_pct % of them at random (every
 * pageblock is left sparse), then allocate secret objects of secret_size
 * bytes until spb_secret_alloc fails (or secret_max_mb is reached). Each
 * new secret pageblock needs a whole free pageblock: with compaction on,
 * direct compaction evacuates sparse MOVABLE pageblocks and captures one;
 * with SPBMALLOC_COMPACT=0 only the pageblocks that happened to be free
 * remain. Prints key=value lines.
 *
 *   SPBMALLOC_MAX_SPBS=1 wl_secretfrag [fill_mb=900] [movable_pct=70]
 *       [keep_pct=20] [secret_size=256] [secret_max_mb=1024] [seed=1]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spbmalloc.h"
#include "wl_common.h"

static uint64_t ctr(const char *n)
{
	uint64_t v = spb_counter_get(n);
	return v == UINT64_MAX ? 0 : v;
}

int main(int argc, char **argv)
{
	wl_args_init(argc, argv);
	size_t fill = (size_t)wl_arg_long("fill_mb", 900) << 20;
	long movable_pct = wl_arg_long("movable_pct", 70);
	long keep_pct = wl_arg_long("keep_pct", 20);
	size_t secret_size = (size_t)wl_arg_long("secret_size", 256);
	size_t secret_max = (size_t)wl_arg_long("secret_max_mb", 1024) << 20;
	struct wl_rng r;
	wl_rng_seed(&r, (uint64_t)wl_arg_long("seed", 1), 0);

	size_t cap = fill / 256 + 16, n = 0, bytes = 0, fill_fail = 0;
	spb_handle_t *hs = calloc(cap, sizeof *hs);
	void **ps = calloc(cap, sizeof *ps);
	/* The list of secret objects, whole before the heap fills up: under
	 * the cap a list grown on the way would fail first. */
	size_t scap = secret_max / (secret_size ? secret_size : 1) + 1;
	void **ss = calloc(scap, sizeof *ss);
	if (!hs || !ps || !ss)
		return 1;
	double t0 = wl_now();
	while (bytes < fill && n < cap) {
		size_t sz = wl_size_powerlaw(&r, 256, 4096, 2.0);
		if ((long)(wl_rand(&r) % 100) < movable_pct)
			hs[n] = spb_halloc(sz, 0);
		else
			ps[n] = malloc(sz);
		if (!hs[n] && !ps[n]) {
			fill_fail++;
			break;
		}
		n++;
		bytes += sz;
	}
	size_t kept = 0, kept_bytes = 0;
	for (size_t i = 0; i < n; i++) {
		if ((long)(wl_rand(&r) % 100) < keep_pct) {
			kept++;
			kept_bytes += hs[i] ? spb_hsize(hs[i]) : 0;
			continue;
		}
		if (hs[i])
			spb_hfree(hs[i]);
		free(ps[i]);
		hs[i] = 0;
		ps[i] = NULL;
	}
	double t1 = wl_now();
	uint64_t cap0 = ctr("compact_direct_captured"), evac0 = ctr("compact_evac_pb");
	uint64_t moved0 = ctr("compact_moved_bytes");
	uint64_t pb0 = ctr("secret_pb_memfd") + ctr("secret_pb_anon");
	size_t sbytes = 0, scount = 0;
	int err = 0;
	while (sbytes < secret_max && scount < scap) {
		void *p = spb_secret_alloc(secret_size);
		if (!p) {
			err = errno;
			break;
		}
		ss[scount++] = p;
		sbytes += secret_size;
	}
	double t2 = wl_now();
	printf("workload=secretfrag\n");
	printf("compact=%s\n", getenv("SPBMALLOC_COMPACT") ? getenv("SPBMALLOC_COMPACT") : "1");
	printf("max_spbs=%s\n", getenv("SPBMALLOC_MAX_SPBS") ? getenv("SPBMALLOC_MAX_SPBS") : "0");
	printf("fill_objects=%zu\nfill_mb=%zu\nfill_fail=%zu\n", n, bytes >> 20, fill_fail);
	printf("kept_objects=%zu\nkept_movable_mb=%zu\n", kept, kept_bytes >> 20);
	printf("secret_objects=%zu\nsecret_bytes=%zu\nsecret_mb=%.1f\n", scount, sbytes,
	       (double)sbytes / (1 << 20));
	printf("secret_stop=%s\n", sbytes >= secret_max ? "cap" : err == ENOMEM ? "ENOMEM" : "other");
	printf("secret_pb=%llu\n",
	       (unsigned long long)(ctr("secret_pb_memfd") + ctr("secret_pb_anon") - pb0));
	printf("secret_pb_memfd=%llu\nsecret_pb_anon=%llu\nsecret_nomem=%llu\n",
	       (unsigned long long)ctr("secret_pb_memfd"), (unsigned long long)ctr("secret_pb_anon"),
	       (unsigned long long)ctr("secret_nomem"));
	printf("compact_direct_captured=%llu\ncompact_evac_pb=%llu\ncompact_moved_mb=%.1f\n",
	       (unsigned long long)(ctr("compact_direct_captured") - cap0),
	       (unsigned long long)(ctr("compact_evac_pb") - evac0),
	       (double)(ctr("compact_moved_bytes") - moved0) / (1 << 20));
	printf("fill_s=%.3f\nsecret_s=%.3f\n", t1 - t0, t2 - t1);
	/* What the last-chance / direct compactions did, since the start. */
	static const char *const more[] = {
		"compact_lastchance", "compact_direct_stall", "compact_direct_success",
		"compact_direct_fail", "compact_direct_timeout", "compact_direct_piled",
		"spb_defrag_deferred", "compact_no_target", "spb_nospace"};
	for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
		printf("%s=%llu\n", more[i], (unsigned long long)ctr(more[i]));
	for (size_t i = 0; i < scount; i++)
		spb_secret_free(ss[i]);
	free(ss);
	return 0;
}
