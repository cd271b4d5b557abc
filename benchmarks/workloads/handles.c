/*
 * handles.c — what a handle costs against a raw pointer (issue: a handle
 * access in a pointer-chasing read loop within 1.15x of the raw-pointer
 * loop; the cost of spb_halloc/spb_hfree against malloc/free).
 *
 * nodes=N objects of 64 bytes linked into one random cycle, twice: by raw
 * pointers (malloc) and by handles (spb_halloc). The chase reads each
 * node's value and follows its link for steps=S steps: raw, then by
 * spb_hget inside one read section per 1024 steps ("handle"), then with a
 * section around every single access ("handle_lock_each"). Each variant
 * runs reps=R times, interleaved, and the medians (ns per step) and the
 * ratios to raw are printed. Then pairs of allocate/free of 16-256 bytes:
 * malloc/free against spb_halloc/spb_hfree, interleaved the same way.
 * Links against libspbmalloc (the spb_* API), so malloc is spbmalloc's too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "spbmalloc.h"
#include "wl_common.h"

struct rnode {
	struct rnode *next;
	uint64_t val;
	char pad[48];
};

struct hnode {
	spb_handle_t next;
	uint64_t val;
	char pad[48];
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static volatile uint64_t sink;

int main(int argc, char **argv)
{
	wl_args_init(argc, argv);
	long n = wl_arg_long("nodes", 1 << 20), steps = wl_arg_long("steps", 20000000);
	int reps = (int)wl_arg_long("reps", 5);
	long pairs = wl_arg_long("pairs", 5000000);
	if (reps > 64)
		reps = 64;
	struct wl_rng rng;
	wl_rng_seed(&rng, 1, 0);
	long *perm = wl_check(malloc((size_t)n * sizeof *perm), (size_t)n * sizeof *perm);
	for (long i = 0; i < n; i++)
		perm[i] = i;
	for (long i = n - 1; i > 0; i--) {
		long j = (long)(wl_rand(&rng) % (uint64_t)(i + 1)), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	struct rnode **rn = wl_check(malloc((size_t)n * sizeof *rn), (size_t)n * sizeof *rn);
	spb_handle_t *hn = wl_check(malloc((size_t)n * sizeof *hn), (size_t)n * sizeof *hn);
	for (long i = 0; i < n; i++) {
		rn[i] = wl_check(malloc(sizeof(struct rnode)), sizeof(struct rnode));
		hn[i] = spb_halloc(sizeof(struct hnode), 0);
		if (!hn[i]) {
			perror("spb_halloc");
			return 1;
		}
	}
	spb_read_lock();
	for (long i = 0; i < n; i++) {
		long a = perm[i], b = perm[(i + 1) % n];
		rn[a]->next = rn[b];
		rn[a]->val = (uint64_t)a;
		struct hnode *h = spb_hget(hn[a]);
		h->next = hn[b];
		h->val = (uint64_t)a;
	}
	spb_read_unlock();

	double t_raw[64], t_h[64], t_hl[64];
	for (int r = 0; r < reps; r++) {
		uint64_t sum = 0;
		double t0 = wl_now();
		struct rnode *p = rn[perm[0]];
		for (long s = 0; s < steps; s++) {
			sum += p->val;
			p = p->next;
		}
		double t1 = wl_now();
		spb_handle_t h = hn[perm[0]];
		for (long s = 0; s < steps;) {
			spb_read_lock();
			for (long e = s + 1024 < steps ? s + 1024 : steps; s < e; s++) {
				const struct hnode *x = spb_hget(h);
				sum += x->val;
				h = x->next;
			}
			spb_read_unlock();
		}
		double t2 = wl_now();
		h = hn[perm[0]];
		for (long s = 0; s < steps; s++) {
			spb_read_lock();
			const struct hnode *x = spb_hget(h);
			sum += x->val;
			h = x->next;
			spb_read_unlock();
		}
		double t3 = wl_now();
		sink = sum;
		t_raw[r] = (t1 - t0) * 1e9 / (double)steps;
		t_h[r] = (t2 - t1) * 1e9 / (double)steps;
		t_hl[r] = (t3 - t2) * 1e9 / (double)steps;
	}
	double raw = median(t_raw, reps), hd = median(t_h, reps), hl = median(t_hl, reps);

	/* Allocate/free pairs, LIFO over a window of 256 slots. */
	double t_m[64], t_ha[64];
	static void *slot[256];
	static spb_handle_t hslot[256];
	for (int r = 0; r < reps; r++) {
		double t0 = wl_now();
		for (long i = 0; i < pairs; i++) {
			unsigned k = (unsigned)(i * 2654435761u) & 255;
			free(slot[k]);
			slot[k] = malloc(16 + (size_t)(i & 15) * 16);
		}
		double t1 = wl_now();
		for (long i = 0; i < pairs; i++) {
			unsigned k = (unsigned)(i * 2654435761u) & 255;
			spb_hfree(hslot[k]);
			hslot[k] = spb_halloc(16 + (size_t)(i & 15) * 16, 0);
		}
		double t2 = wl_now();
		t_m[r] = (t1 - t0) * 1e9 / (double)pairs;
		t_ha[r] = (t2 - t1) * 1e9 / (double)pairs;
	}
	double m = median(t_m, reps), ha = median(t_ha, reps);

	printf("workload=handles\nnodes=%ld\nsteps=%ld\nreps=%d\n", n, steps, reps);
	printf("chase_raw_ns=%.2f\nchase_handle_ns=%.2f\nchase_handle_lock_each_ns=%.2f\n", raw, hd, hl);
	printf("chase_handle_ratio=%.3f\nchase_handle_lock_each_ratio=%.3f\n", hd / raw, hl / raw);
	printf("pair_malloc_free_ns=%.2f\npair_halloc_hfree_ns=%.2f\npair_ratio=%.3f\n", m, ha, ha / m);
	for (long i = 0; i < n; i++) {
		free(rn[i]);
		spb_hfree(hn[i]);
	}
	for (int k = 0; k < 256; k++) {
		free(slot[k]);
		spb_hfree(hslot[k]);
	}
	free(rn);
	free(hn);
	free(perm);
	return 0;
}
