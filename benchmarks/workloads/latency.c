/*
 * latency.c — per-call latency of malloc and free while the allocator gives
 * memory back to the OS.
 *
 * Each thread runs the same phases, in step with the others (a barrier
 * between stages, outside the timed calls):
 *   grow   allocate up to heap_mb/threads live bytes: sizes follow a power
 *          law from min= to max= (16 B..256 KiB, small ones common), and
 *          about big_share= of the bytes are big blocks of big_min..big_max
 *          (2..8 MiB). A churn= share of the steps frees a random live object
 *          instead, so frees are timed while the heap grows too. Each new
 *          object gets one byte written per 4 KiB page (untimed), so there is
 *          resident memory for the allocator to release later.
 *   drain  free, in random order, all but keep= of this phase's objects and
 *          every survivor of the phase before; every full_every=-th phase
 *          (and the last) frees everything, so whole superpageblocks empty.
 *   idle   sleep idle_ms=: longer than the allocator's decay delay (run
 *          spbmalloc with SPBMALLOC_DECAY_MS=20, say), so releases come due
 *          while the program is not allocating, and the next grow finds them.
 * With low_mb= set, every other phase grows only to low_mb: a heap that
 * shrinks below one superpageblock (1 GiB) for a phase can leave one empty
 * for spbmalloc to unmap (heap_mb=1536 low_mb=256 full_every=1; whether it
 * does depends on where the allocator places the smaller heap).
 * With respawn=1 each phase is run by new threads: the threads of the phase
 * before have exited, leaving their heaps to the allocator's thread-exit
 * path, and the survivors they allocated are freed by the new threads.
 * Every malloc and free is timed on its own. The histograms are log-scale
 * (32 sub-buckets per power of two: a percentile is within ~3 %; max and the
 * over-10us/100us/1ms counts are exact) and preallocated, per thread, merged
 * at the end; nothing is allocated inside the timed loop but the objects.
 *
 * Timer (timer=auto|tsc|clock): on x86-64 with an invariant TSC
 * (constant_tsc and nonstop_tsc in /proc/cpuinfo) it is "lfence; rdtsc;
 * lfence" on both sides of the call (rdtscp is not available on every
 * virtual CPU; the fences keep the call inside the two reads), converted to
 * ns with a frequency calibrated against CLOCK_MONOTONIC over 200 ms at
 * start (tsc_ghz; tsc_ghz_run is the same ratio over the whole run, a check).
 * A timed empty pair costs ~10-20 ns (timer_overhead_ns, not subtracted).
 * Otherwise clock_gettime(CLOCK_MONOTONIC), a vDSO call (~20-50 ns; with a
 * clocksource the vDSO cannot read it becomes a system call and the figures
 * mean little: timer_overhead_ns says so).
 *
 * Output: key=value lines on stdout for scripts (benchmarks/latency/run.sh):
 * for each of malloc, free (all sizes), malloc_small, free_small (<= max=,
 * the calls that should never need a system call) and malloc_big, free_big:
 * <op>_count, _p50_ns, _p90_ns, _p99_ns, _p999_ns, _p9999_ns, _max_ns,
 * _over_10us, _over_100us, _over_1ms; <op>_preempted, the calls during which
 * the thread was switched out involuntarily, and the same figures over the
 * other calls as <op>_np_* (on a loaded machine a preemption, not the
 * allocator, makes many of the slowest calls). With preempt=1 (default) the
 * thread's count of involuntary switches is read (getrusage RUSAGE_THREAD,
 * a system call) before each call and again after a call over 10 us, both
 * outside the timed region, or only after a context switch where rseq
 * tells (see pre_thread_init); preempt_method says which. preempt=2 forces
 * getrusage around every call, preempt=0 drops the tagging (_np_ = all).
 * Then worker_tids (every timed thread, to split a strace log by thread:
 * they make no mmap, munmap, madvise, mprotect or brk of their own, so
 * those they make are made inside malloc or free, or at their exit),
 * main_tid, worker_nivcsw and the memory lines of wl_report_end. On stderr (unless quiet=1): tables, and the slowest calls
 * not preempted, with the phase, stage and position in the stage where they
 * happened (call 0 of a grow = the first call after the idle).
 *
 * Arguments: threads= (1) heap_mb= (384, all threads together) low_mb= (0)
 * phases= (16)
 * keep= (0.1) full_every= (3) churn= (0.3) min= (16) max= (262144) skew= (3)
 * big_share= (0.25) big_min= (2 MiB) big_max= (8 MiB) idle_ms= (100)
 * touch= (1) slow_us= (100: calls kept for the slowest-calls list) top= (12)
 * timer= (auto) preempt= (1) respawn= (0) seed= (1) quiet= (0).
 * One op = one malloc or free; seconds includes the idle sleeps.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__has_include)
#if __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#define HAVE_RSEQ 1
#endif
#endif

#include "wl_common.h"

/* ---- timer ------------------------------------------------------------ */

static int use_tsc;
static double tick_ns = 1.0;	/* ns per tick */

static inline uint64_t ticks(void)
{
#if defined(__x86_64__)
	if (use_tsc) {
		uint32_t lo, hi;

		__asm__ __volatile__("lfence\n\trdtsc\n\tlfence"
				     : "=a"(lo), "=d"(hi) : : "memory");
		return ((uint64_t)hi << 32) | lo;
	}
#endif
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	__asm__ __volatile__("" : : : "memory");
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int tsc_invariant(void)
{
#if defined(__x86_64__)
	char line[4096];
	int c = 0, n = 0;
	FILE *f = fopen("/proc/cpuinfo", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5))
			continue;
		c = strstr(line, " constant_tsc") != NULL;
		n = strstr(line, " nonstop_tsc") != NULL;
		break;
	}
	fclose(f);
	return c && n;
#else
	return 0;
#endif
}

static uint64_t cal_t0, cal_n0;

static void timer_init(const char *mode)
{
	use_tsc = !strcmp(mode, "tsc") || (!strcmp(mode, "auto") && tsc_invariant());
#if !defined(__x86_64__)
	use_tsc = 0;
#endif
	if (!use_tsc)
		return;
	uint64_t n0 = mono_ns(), t0 = ticks();

	wl_sleep(0.2);
	uint64_t n1 = mono_ns(), t1 = ticks();

	tick_ns = (double)(n1 - n0) / (double)(t1 - t0);
	cal_t0 = t0;
	cal_n0 = n0;
}

/* ---- histogram -------------------------------------------------------- */

#define SPB_LIKELY_LAT(x) __builtin_expect(!!(x), 1)
#define SUB_BITS 5
#define SUB (1u << SUB_BITS)
#define LINEAR (2 * SUB)	/* values below are their own bucket */
#define NBUCKETS (LINEAR + (64 - SUB_BITS - 1) * SUB)

struct hist {
	uint64_t n, max, over[3];
	uint64_t b[NBUCKETS];
};
static uint64_t thr[3];	/* 10 us, 100 us, 1 ms in ticks */

static inline unsigned bucket_of(uint64_t v)
{
	if (v < LINEAR)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);	/* >= SUB_BITS + 1 */
	unsigned sub = (unsigned)(v >> (e - SUB_BITS)) & (SUB - 1);

	return LINEAR + (e - SUB_BITS - 1) * SUB + sub;
}

/* Highest value that falls in bucket i. */
static uint64_t bucket_top(unsigned i)
{
	if (i < LINEAR)
		return i;
	unsigned e = (i - LINEAR) / SUB + SUB_BITS + 1;
	uint64_t sub = (i - LINEAR) % SUB;
	uint64_t lo = (SUB + sub) << (e - SUB_BITS);

	return lo + (1ull << (e - SUB_BITS)) - 1;
}

static inline void hist_add(struct hist *h, uint64_t v)
{
	h->b[bucket_of(v)]++;
	h->n++;
	if (v > h->max)
		h->max = v;
	h->over[0] += v > thr[0];
	h->over[1] += v > thr[1];
	h->over[2] += v > thr[2];
}

static void hist_merge(struct hist *d, const struct hist *s)
{
	d->n += s->n;
	if (s->max > d->max)
		d->max = s->max;
	for (int k = 0; k < 3; k++)
		d->over[k] += s->over[k];
	for (unsigned i = 0; i < NBUCKETS; i++)
		d->b[i] += s->b[i];
}

static double hist_pct_ns(const struct hist *h, double q)
{
	if (!h->n)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999);
	uint64_t cum = 0;

	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < NBUCKETS; i++) {
		cum += h->b[i];
		if (cum >= rank) {
			uint64_t v = bucket_top(i);
			return (double)(v < h->max ? v : h->max) * tick_ns;
		}
	}
	return (double)h->max * tick_ns;
}

/* ---- was the thread preempted during a call? ----------------------------
 * The count of involuntary context switches of the thread (getrusage
 * RUSAGE_THREAD, a system call) must be known just before the call and
 * read again after it. Reading it before every call costs ~100 ns of cold
 * cache in the call that follows (measured: p50 of glibc's malloc 120 ->
 * 220 ns), so where glibc has registered rseq the kernel tells us when a
 * switch happened instead: it clears rseq->rseq_cs on the way back to user
 * space after any context switch, migration or signal when the thread is
 * not inside the critical section that rseq_cs describes. We keep rseq_cs
 * pointing at a descriptor of a few bytes of code never executed; while it
 * stays set, no switch happened and the count is still the one read last.
 * Only after a switch (rare) is the count read again, outside the timed
 * region. A self-test (a 1 ms sleep must clear it) picks the getrusage
 * fallback on kernels that do not clear it. */
enum { PRE_OFF, PRE_RSEQ, PRE_GETRUSAGE };
static long tag_preempt = 1;	/* preempt=: 0 off, 1 rseq or getrusage, 2 getrusage */

#if HAVE_RSEQ
__asm__(".pushsection .text\n"
	".balign 16\n"
	"latency_rseq_start:\n\tnop\n"
	".long 0x53053053\n"	/* RSEQ_SIG, just before the abort address */
	"latency_rseq_abort:\n\tud2\n"
	".popsection\n");
extern const char latency_rseq_start[], latency_rseq_abort[];
static struct rseq_cs rseq_desc __attribute__((aligned(32)));
static __thread volatile uint64_t *rseq_cs_word;
#endif

static inline long nivcsw_read(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_THREAD, &ru))
		return 0;
	return ru.ru_nivcsw;
}

#if HAVE_RSEQ
/* Once, before the threads start: the kernel reads it after each switch. */
static void rseq_desc_init(void)
{
	rseq_desc.version = 0;
	rseq_desc.flags = 0;
	rseq_desc.start_ip = (uint64_t)(uintptr_t)latency_rseq_start;
	rseq_desc.post_commit_offset = 1;	/* the nop */
	rseq_desc.abort_ip = (uint64_t)(uintptr_t)latency_rseq_abort;
}

static inline void rseq_arm(void)
{
	*rseq_cs_word = (uint64_t)(uintptr_t)&rseq_desc;
	__asm__ __volatile__("" : : : "memory");
}

static inline int rseq_switched(void)
{
	__asm__ __volatile__("" : : : "memory");
	return *rseq_cs_word != (uint64_t)(uintptr_t)&rseq_desc;
}
#endif

/* This thread's method: rseq if the self-test passes, else getrusage. */
static int pre_thread_init(void)
{
	if (!tag_preempt)
		return PRE_OFF;
#if HAVE_RSEQ
	if (tag_preempt == 1 && __rseq_size > 0) {
		char *tp;

		__asm__("mov %%fs:0, %0" : "=r"(tp));
		struct rseq *rs = (struct rseq *)(tp + __rseq_offset);

		rseq_cs_word = (volatile uint64_t *)&rs->rseq_cs;
		if (*rseq_cs_word == 0) {	/* nobody else uses it */
			rseq_arm();
			wl_sleep(0.001);
			if (rseq_switched())
				return PRE_RSEQ;
			*rseq_cs_word = 0;
		}
	}
#endif
	return PRE_GETRUSAGE;
}

struct pre_state {
	int method;
	long base;	/* involuntary switches counted before the call */
};

/* Just before the timed call. */
static inline void pre_before(struct pre_state *ps)
{
#if HAVE_RSEQ
	if (ps->method == PRE_RSEQ) {
		if (SPB_LIKELY_LAT(!rseq_switched()))
			return;
		rseq_arm();
		ps->base = nivcsw_read();
		return;
	}
#endif
	if (ps->method == PRE_GETRUSAGE)
		ps->base = nivcsw_read();
}

/* Just after it: 1 if the thread was switched out involuntarily. */
static inline int pre_after(struct pre_state *ps, uint64_t t)
{
#if HAVE_RSEQ
	if (ps->method == PRE_RSEQ) {
		if (SPB_LIKELY_LAT(!rseq_switched()))
			return 0;
		rseq_arm();
		long now = nivcsw_read(), old = ps->base;

		ps->base = now;
		return now != old;
	}
#endif
	/* A call under 10 us cannot hold a switch out and back. */
	if (ps->method == PRE_GETRUSAGE && t > thr[0])
		return nivcsw_read() != ps->base;
	return 0;
}

/* ---- workload --------------------------------------------------------- */

enum { H_MALLOC_SMALL, H_FREE_SMALL, H_MALLOC_BIG, H_FREE_BIG, NH };
/* Reported views: the sums, then the four histograms in the order above. */
enum { V_MALLOC, V_FREE, V_SMALL, NV = V_SMALL + NH };
static const char *const view_name[NV] = {
	"malloc", "free", "malloc_small", "free_small", "malloc_big", "free_big" };
static const char *const view_label[NV] = {
	"malloc", "free", "malloc<=max", "free<=max", "malloc big", "free big" };
enum { ST_GROW, ST_DRAIN };
static const char *const stage_name[] = { "grow", "drain" };

struct slow {
	uint64_t t;		/* ticks */
	size_t size;
	uint32_t seq;		/* position of the call in its stage */
	uint16_t phase;
	uint8_t is_free, stage, preempted;
	uint16_t thread;
};
#define SLOW_CAP 4096

struct obj {
	unsigned char *p;
	size_t size;
	long phase;
};

struct worker {
	pthread_t tid;
	long index;
	long nivcsw;
	struct hist *h;		/* NH of them: calls not preempted */
	struct hist *hp;	/* NH: calls the thread was preempted in */
	struct slow *slow;
	unsigned nslow;
	uint64_t slow_dropped;
	size_t peak_live;
	long objects;
	struct pre_state ps;
	/* Kept across the threads of a respawn=1 run: */
	struct obj *objs;	/* live objects, mapped by main */
	size_t n, live;
	struct wl_rng r;
	long ph0, ph1;		/* this thread's phases */
	long *tids;		/* every thread that ran as this worker */
	long ntids;
	int method;		/* preemption tagging: the weakest seen */
};

static long threads, phases, full_every, touch, seed, respawn;
static double keep, churn, skew, big_share;
static size_t heap_bytes, low_bytes, minsz, maxsz, big_min, big_max;
static double idle_s;
static uint64_t slow_thr;
static pthread_barrier_t barrier;

static void *map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED) {
		perror("latency: mmap");
		exit(1);
	}
	return p;
}

static inline void note(struct worker *w, int h, uint64_t t, int pre,
			size_t size, long phase, int stage, uint32_t seq)
{
	hist_add(pre ? &w->hp[h] : &w->h[h], t);
	if (t < slow_thr)
		return;
	if (w->nslow == SLOW_CAP) {
		w->slow_dropped++;
		return;
	}
	struct slow *s = &w->slow[w->nslow++];

	s->t = t;
	s->size = size;
	s->seq = seq;
	s->phase = (uint16_t)phase;
	s->is_free = h == H_FREE_SMALL || h == H_FREE_BIG;
	s->stage = (uint8_t)stage;
	s->preempted = (uint8_t)pre;
	s->thread = (uint16_t)w->index;
}

static inline void timed_free(struct worker *w, struct obj *o, long phase,
			      int stage, uint32_t seq)
{
	pre_before(&w->ps);
	uint64_t t0 = ticks();
	free(o->p);
	uint64_t t1 = ticks();
	int pre = pre_after(&w->ps, t1 - t0);

	note(w, o->size > maxsz ? H_FREE_BIG : H_FREE_SMALL, t1 - t0, pre,
	     o->size, phase, stage, seq);
}

/* Live bytes stay below target + one object: at most this many objects. */
static size_t table_cap(void)
{
	return (heap_bytes / (size_t)threads + big_max) / minsz + 16;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct obj *objs = w->objs;
	size_t n = w->n, live = w->live;
	struct wl_rng r = w->r;

	w->tids[w->ntids++] = (long)syscall(SYS_gettid);
	w->ps.method = pre_thread_init();
	w->ps.base = w->ps.method == PRE_OFF ? 0 : nivcsw_read();
	if (w->ps.method > w->method)
		w->method = w->ps.method;
	pthread_barrier_wait(&barrier);
	for (long ph = w->ph0; ph < w->ph1; ph++) {
		/* grow */
		size_t target = (low_bytes && ph % 2 ? low_bytes : heap_bytes) /
				(size_t)threads;
		size_t big_bytes = 0, all_bytes = 0;
		uint32_t seq = 0;

		while (live < target) {
			if (n && wl_unit(&r) < churn) {
				size_t k = (size_t)(wl_rand(&r) % n);

				live -= objs[k].size;
				timed_free(w, &objs[k], ph, ST_GROW, seq++);
				objs[k] = objs[--n];
				continue;
			}
			size_t sz;
			int big = big_share > 0 &&
				  (double)big_bytes < big_share * (double)all_bytes;

			if (big)
				sz = big_min + (size_t)(wl_rand(&r) %
							(big_max - big_min + 1));
			else
				sz = wl_size_powerlaw(&r, minsz, maxsz, skew);
			pre_before(&w->ps);
			uint64_t t0 = ticks();
			unsigned char *p = malloc(sz);
			uint64_t t1 = ticks();
			int pre = pre_after(&w->ps, t1 - t0);

			note(w, big ? H_MALLOC_BIG : H_MALLOC_SMALL, t1 - t0, pre,
			     sz, ph, ST_GROW, seq++);
			wl_check(p, sz);
			if (touch)
				for (size_t off = 0; off < sz; off += 4096)
					p[off] = (unsigned char)off;
			p[sz - 1] = 1;
			objs[n].p = p;
			objs[n].size = sz;
			objs[n].phase = ph;
			n++;
			live += sz;
			all_bytes += sz;
			if (big)
				big_bytes += sz;
			w->objects++;
		}
		if (live > w->peak_live)
			w->peak_live = live;
		if (w->index == 0)
			wl_peak_note();
		pthread_barrier_wait(&barrier);

		/* drain, in random order */
		for (size_t i = n; i > 1; i--) {
			size_t k = (size_t)(wl_rand(&r) % i);
			struct obj t = objs[i - 1];

			objs[i - 1] = objs[k];
			objs[k] = t;
		}
		int all = ph == phases - 1 || (full_every > 0 &&
					       ph % full_every == full_every - 1);
		size_t kept = 0;

		seq = 0;
		for (size_t i = 0; i < n; i++) {
			if (!all && objs[i].phase == ph && wl_unit(&r) < keep) {
				objs[kept++] = objs[i];
				continue;
			}
			live -= objs[i].size;
			timed_free(w, &objs[i], ph, ST_DRAIN, seq++);
		}
		n = kept;
		pthread_barrier_wait(&barrier);

		/* idle: releases come due */
		wl_sleep(idle_s);
		pthread_barrier_wait(&barrier);
	}
#if HAVE_RSEQ
	if (w->ps.method == PRE_RSEQ)
		*rseq_cs_word = 0;
#endif
	w->nivcsw += nivcsw_read();
	w->n = n;
	w->live = live;
	w->r = r;
	return NULL;
}

static void kv_hist(const char *name, const struct hist *h)
{
	char key[64];
	static const struct { const char *k; double q; } q[] = {
		{ "p50", 0.5 }, { "p90", 0.9 }, { "p99", 0.99 },
		{ "p999", 0.999 }, { "p9999", 0.9999 } };
	static const char *const over[] = { "over_10us", "over_100us", "over_1ms" };

	snprintf(key, sizeof(key), "%s_count", name);
	wl_kv_long(key, (long)h->n);
	for (unsigned i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		snprintf(key, sizeof(key), "%s_%s_ns", name, q[i].k);
		printf("%s=%.0f\n", key, hist_pct_ns(h, q[i].q));
	}
	snprintf(key, sizeof(key), "%s_max_ns", name);
	printf("%s=%.0f\n", key, (double)h->max * tick_ns);
	for (int k = 0; k < 3; k++) {
		snprintf(key, sizeof(key), "%s_%s", name, over[k]);
		wl_kv_long(key, (long)h->over[k]);
	}
}

static void table_row(const char *name, const struct hist *h)
{
	fprintf(stderr, "%-13s %9lu %7.0f %7.0f %7.0f %8.0f %8.0f %9.0f %7lu %7lu %6lu\n",
		name, (unsigned long)h->n, hist_pct_ns(h, 0.5), hist_pct_ns(h, 0.9),
		hist_pct_ns(h, 0.99), hist_pct_ns(h, 0.999), hist_pct_ns(h, 0.9999),
		(double)h->max * tick_ns, (unsigned long)h->over[0],
		(unsigned long)h->over[1], (unsigned long)h->over[2]);
}

static int slow_cmp(const void *a, const void *b)
{
	const struct slow *x = a, *y = b;

	return x->t < y->t ? 1 : x->t > y->t ? -1 : 0;
}

static double timer_overhead_ns(void)
{
	static struct hist h;

	memset(&h, 0, sizeof(h));
	for (int i = 0; i < 200000; i++) {
		uint64_t t0 = ticks();
		uint64_t t1 = ticks();

		hist_add(&h, t1 - t0);
	}
	return hist_pct_ns(&h, 0.5);
}

int main(int argc, char **argv)
{
	wl_args_init(argc, argv);
	threads = wl_arg_long("threads", 1);
	heap_bytes = (size_t)wl_arg_long("heap_mb", 384) << 20;
	low_bytes = (size_t)wl_arg_long("low_mb", 0) << 20;
	phases = wl_arg_long("phases", 16);
	keep = wl_arg_double("keep", 0.1);
	full_every = wl_arg_long("full_every", 3);
	churn = wl_arg_double("churn", 0.3);
	minsz = (size_t)wl_arg_long("min", 16);
	maxsz = (size_t)wl_arg_long("max", 262144);
	skew = wl_arg_double("skew", 3);
	big_share = wl_arg_double("big_share", 0.25);
	big_min = (size_t)wl_arg_long("big_min", 2l << 20);
	big_max = (size_t)wl_arg_long("big_max", 8l << 20);
	idle_s = wl_arg_double("idle_ms", 100) / 1000.0;
	touch = wl_arg_long("touch", 1);
	tag_preempt = wl_arg_long("preempt", 1);
	seed = wl_arg_long("seed", 1);
	respawn = wl_arg_long("respawn", 0);
	long top = wl_arg_long("top", 12), quiet = wl_arg_long("quiet", 0);
	double slow_us = wl_arg_double("slow_us", 100);
	const char *tmode = "auto";

	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], "timer=", 6))
			tmode = argv[i] + 6;
	if (threads < 1 || threads > 1024 || phases < 1 || phases > 65535 ||
	    minsz < 1 || maxsz < minsz || big_min <= maxsz || big_max < big_min ||
	    churn < 0 || churn >= 0.5 || keep < 0 || keep > 1 ||
	    heap_bytes < big_max || low_bytes > heap_bytes) {
		fprintf(stderr, "latency: bad arguments (threads 1..1024, min <= max "
			"< big_min <= big_max <= heap_mb, 0 <= churn < 0.5, "
			"0 <= keep <= 1)\n");
		return 2;
	}

	timer_init(tmode);
	thr[0] = (uint64_t)(10e3 / tick_ns);
	thr[1] = (uint64_t)(100e3 / tick_ns);
	thr[2] = (uint64_t)(1e6 / tick_ns);
	slow_thr = (uint64_t)(slow_us * 1e3 / tick_ns);
	double ovh = timer_overhead_ns();
#if HAVE_RSEQ
	rseq_desc_init();
#endif

	/* Everything the workers use is mapped here: the timed threads make
	 * no mmap or munmap of their own. */
	struct worker *ws = map((size_t)threads * sizeof(*ws));
	long rounds = respawn ? phases : 1;

	pthread_barrier_init(&barrier, NULL, (unsigned)threads + 1);
	for (long i = 0; i < threads; i++) {
		ws[i].index = i;
		ws[i].h = map(NH * sizeof(struct hist));
		ws[i].hp = map(NH * sizeof(struct hist));
		ws[i].slow = map(SLOW_CAP * sizeof(struct slow));
		ws[i].objs = map(table_cap() * sizeof(struct obj));
		ws[i].tids = map((size_t)rounds * sizeof(long));
		wl_rng_seed(&ws[i].r, (uint64_t)seed, (uint64_t)i + 1);
	}
	/* The main thread keeps step with the workers at each barrier. With
	 * respawn=1 each phase is run by new threads (the ones before have
	 * exited: their heaps are left to the allocator's thread-exit path). */
	double t0 = 0;
	for (long rd = 0; rd < rounds; rd++) {
		for (long i = 0; i < threads; i++) {
			ws[i].ph0 = respawn ? rd : 0;
			ws[i].ph1 = respawn ? rd + 1 : phases;
			if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i])) {
				fprintf(stderr, "latency: pthread_create failed\n");
				return 1;
			}
		}
		pthread_barrier_wait(&barrier);
		if (rd == 0)
			t0 = wl_now();
		for (long ph = ws[0].ph0; ph < ws[0].ph1; ph++)
			for (int k = 0; k < 3; k++)
				pthread_barrier_wait(&barrier);
		for (long i = 0; i < threads; i++)
			pthread_join(ws[i].tid, NULL);
	}
	double secs = wl_now() - t0;
	uint64_t run_n1 = mono_ns(), run_t1 = ticks();

	/* Six views (malloc, free, then each split by size), each over all
	 * calls and over the calls not preempted. */
	struct hist *all = map(NV * sizeof(struct hist));
	struct hist *np = map(NV * sizeof(struct hist));
	size_t nslow = 0, peak_live = 0;
	uint64_t dropped = 0;
	long nivcsw = 0, objects = 0;

	for (long i = 0; i < threads; i++) {
		for (int h = 0; h < NH; h++) {
			hist_merge(&np[V_SMALL + h], &ws[i].h[h]);
			hist_merge(&all[V_SMALL + h], &ws[i].h[h]);
			hist_merge(&all[V_SMALL + h], &ws[i].hp[h]);
		}
		nslow += ws[i].nslow;
		dropped += ws[i].slow_dropped;
		nivcsw += ws[i].nivcsw;
		peak_live += ws[i].peak_live;
		objects += ws[i].objects;
	}
	for (struct hist *v = all; v; v = v == all ? np : NULL) {
		hist_merge(&v[V_MALLOC], &v[V_SMALL + H_MALLOC_SMALL]);
		hist_merge(&v[V_MALLOC], &v[V_SMALL + H_MALLOC_BIG]);
		hist_merge(&v[V_FREE], &v[V_SMALL + H_FREE_SMALL]);
		hist_merge(&v[V_FREE], &v[V_SMALL + H_FREE_BIG]);
	}
	struct hist *mal = &all[V_MALLOC], *fre = &all[V_FREE];

	wl_report_main("latency", threads, (double)(mal->n + fre->n), secs);
	wl_kv_str("timer", use_tsc ? "tsc" : "clock_monotonic");
	if (use_tsc) {
		wl_kv_double("tsc_ghz", 1.0 / tick_ns);
		wl_kv_double("tsc_ghz_run", (double)(run_t1 - cal_t0) /
			     (double)(run_n1 - cal_n0));
	}
	wl_kv_double("timer_overhead_ns", ovh);
	wl_kv_long("phases", phases);
	wl_kv_long("objects", objects);
	wl_kv_long("peak_live_kb", (long)(peak_live >> 10));
	int method = 0;

	for (long i = 0; i < threads; i++)
		if (ws[i].method > method)
			method = ws[i].method;	/* mixed: say the weaker one */
	static const char *const pre_names[] = { "off", "rseq", "getrusage" };
	wl_kv_str("preempt_method", pre_names[method]);
	for (int v = 0; v < NV; v++) {
		char key[64];

		kv_hist(view_name[v], &all[v]);
		snprintf(key, sizeof(key), "%s_preempted", view_name[v]);
		wl_kv_long(key, (long)(all[v].n - np[v].n));
		snprintf(key, sizeof(key), "%s_np", view_name[v]);
		kv_hist(key, &np[v]);
	}
	printf("worker_tids=");
	for (long i = 0, k = 0; i < threads; i++)
		for (long j = 0; j < ws[i].ntids; j++)
			printf("%s%ld", k++ ? "," : "", ws[i].tids[j]);
	printf("\n");
	wl_kv_long("main_tid", (long)getpid());
	wl_kv_long("worker_nivcsw", nivcsw);
	wl_kv_long("slow_calls", (long)(nslow + dropped));
	wl_report_end();

	if (quiet)
		return 0;
	fprintf(stderr, "latency: threads=%ld%s heap=%zu MiB phases=%ld %.2f s, "
		"timer %s (overhead %.0f ns), worker involuntary switches %ld\n",
		threads, respawn ? " (new each phase)" : "", heap_bytes >> 20, phases, secs,
		use_tsc ? "tsc" : "clock_monotonic", ovh, nivcsw);
	for (struct hist *v = all; v; v = v == all && tag_preempt ? np : NULL) {
		fprintf(stderr, "%-13s %9s %7s %7s %7s %8s %8s %9s %7s %7s %6s\n",
			v == all ? "ns, all calls" : "not preempted",
			"count", "p50", "p90", "p99", "p99.9", "p99.99", "max",
			">10us", ">100us", ">1ms");
		for (int i = 0; i < NV; i++)
			table_row(view_label[i], &v[i]);
	}
	if (nslow && top > 0) {
		struct slow *s = map(nslow * sizeof(*s));
		size_t k = 0, npre = 0;

		for (long i = 0; i < threads; i++)
			for (unsigned j = 0; j < ws[i].nslow; j++) {
				s[k] = ws[i].slow[j];
				npre += s[k++].preempted;
			}
		qsort(s, nslow, sizeof(*s), slow_cmp);
		fprintf(stderr, "%zu calls over %.0f us%s, %zu of them preempted; the "
			"slowest%s:\n", nslow + dropped, slow_us,
			dropped ? " (list truncated)" : "", npre,
			tag_preempt ? " not preempted" : "");
		k = 0;
		for (size_t i = 0; i < nslow && (long)k < top; i++) {
			if (s[i].preempted)
				continue;
			k++;
			fprintf(stderr, "  %9.0f ns  %-6s %9zu B  thread %u phase %u %s call %u\n",
				(double)s[i].t * tick_ns, s[i].is_free ? "free" : "malloc",
				s[i].size, s[i].thread, s[i].phase,
				stage_name[s[i].stage], s[i].seq);
		}
	}
	return 0;
}
