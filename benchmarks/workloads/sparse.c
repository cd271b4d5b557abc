/*
 * sparse.c — wl_sparse: sparse buffers, issue 11's "capacity reserved
 * ahead of use". One thread allocates buffers of log-uniform sizes in
 * [min_kb, max_kb] KiB (1 KiB-1 MiB) until `mb` MiB are reserved, and
 * writes only two bytes of each (the first and one at random), as a vector
 * grown ahead of its contents or an I/O buffer sized for the largest
 * message does. The buffers stay live; then for `rounds` rounds a random
 * `free_pct` % of them is freed and new buffers are allocated (new sizes,
 * written the same way) until `mb` MiB are reserved again. What is
 * measured is the RSS this costs: an allocator that backs a mostly
 * untouched buffer with whole (huge) pages, or reuses blocks whose old
 * pages stay resident, shows peak RSS far above the bytes written.
 * One op = one malloc or free.
 * Arguments: mb= (512) rounds= (4) free_pct= (50) min_kb= (1) max_kb=
 * (1024) seed= (1). Prints key=value lines: ops_per_s, peak_rss_kb,
 * reserved_kb (the most bytes reserved at once), touched_kb (4 KiB per
 * written page of the buffers live at the end: about what a 4 KiB-page
 * allocator must keep resident for them), buffers.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wl_common.h"

struct buf {
	unsigned char *p;
	size_t size;
	size_t k; /* the random byte written */
};

static struct buf *bufs;
static size_t nbufs, capbufs;
static size_t reserved, reserved_peak;
static double ops;

static unsigned long page_of(const void *p)
{
	return (unsigned long)((uintptr_t)p >> 12);
}

static void one(struct wl_rng *r, size_t lo, size_t hi)
{
	size_t sz = wl_size_powerlaw(r, lo, hi, 1.0); /* log-uniform */
	unsigned char *p = wl_check(malloc(sz), sz);
	size_t k = (size_t)(wl_rand(r) % sz);

	p[0] = 1; /* the header a vector or buffer writes first */
	p[k] = 2; /* and one byte somewhere in the capacity */
	if (nbufs == capbufs) {
		capbufs = capbufs ? 2 * capbufs : 1024;
		bufs = wl_check(realloc(bufs, capbufs * sizeof *bufs),
				capbufs * sizeof *bufs);
	}
	bufs[nbufs].p = p;
	bufs[nbufs].size = sz;
	bufs[nbufs].k = k;
	nbufs++;
	reserved += sz;
	if (reserved > reserved_peak)
		reserved_peak = reserved;
	ops++;
}

static void fill(struct wl_rng *r, size_t target, size_t lo, size_t hi)
{
	while (reserved < target)
		one(r, lo, hi);
}

int main(int argc, char **argv)
{
	wl_args_init(argc, argv);
	long mb = wl_arg_long("mb", 512);
	long rounds = wl_arg_long("rounds", 4);
	long free_pct = wl_arg_long("free_pct", 50);
	long min_kb = wl_arg_long("min_kb", 1);
	long max_kb = wl_arg_long("max_kb", 1024);
	long seed = wl_arg_long("seed", 1);
	if (mb < 1 || rounds < 0 || free_pct < 0 || free_pct > 100 ||
	    min_kb < 1 || max_kb < min_kb) {
		fprintf(stderr, "sparsebuf: bad arguments\n");
		return 2;
	}
	size_t target = (size_t)mb << 20, lo = (size_t)min_kb << 10,
	       hi = (size_t)max_kb << 10;
	struct wl_rng r;
	wl_rng_seed(&r, (uint64_t)seed, 1);

	double t0 = wl_now();
	fill(&r, target, lo, hi);
	wl_peak_note();
	for (long round = 0; round < rounds; round++) {
		/* Free a random free_pct %: keep the rest, compacted in place. */
		size_t kept = 0;
		for (size_t i = 0; i < nbufs; i++) {
			if ((long)(wl_rand(&r) % 100) < free_pct) {
				reserved -= bufs[i].size;
				free(bufs[i].p);
				ops++;
			} else {
				bufs[kept++] = bufs[i];
			}
		}
		nbufs = kept;
		fill(&r, target, lo, hi);
		wl_peak_note();
	}
	double secs = wl_now() - t0;
	/* The live buffers' written pages: what is still needed at the end. */
	size_t live_touched = 0;
	for (size_t i = 0; i < nbufs; i++)
		live_touched += 1 + (page_of(bufs[i].p) !=
				     page_of(bufs[i].p + bufs[i].k));
	wl_report_main("sparse", 1, ops, secs);
	wl_kv_long("reserved_kb", (long)(reserved_peak >> 10));
	wl_kv_long("touched_kb", (long)live_touched * 4);
	wl_kv_long("buffers", (long)nbufs);
	wl_kv_long("rounds", rounds);
	wl_report_end();
	for (size_t i = 0; i < nbufs; i++)
		free(bufs[i].p);
	free(bufs);
	return 0;
}
