/*
 * lru.c — a long-running cache whose value sizes shift over time.
 *
 * keys= slots (1 Mi), each holding one value or none; a writer thread sets
 * random keys (a new value replaces the old one, which is freed) and evicts
 * with a CLOCK hand (the approximation of LRU caches use) while the values
 * exceed cap_mb; readers= threads (default: one per core) get random keys
 * and check the value's stamp. Value sizes shift every phase_s seconds:
 * 64-512 B, 1-4 KiB, 128 B-1 KiB, 4-16 KiB, then again. The slot table is
 * guarded by 1,024 striped mutexes in both builds, so the builds differ only
 * in where values live.
 * Built twice: wl_lru (plain malloc/free; run under LD_PRELOAD of each
 * allocator) and wl_lru_handles (spb_halloc/spb_hfree; readers read inside
 * spb_read_lock sections while the compaction thread moves values).
 * Prints: rss_kb.s<second> each second, live_kb.s<second> (bytes the cache
 * holds), rss_kb.max, rss_over_live_end, get_ops, set_ops, the longest get
 * and set (get_max_us, set_max_us), and for handles the compaction counters
 * and compact_cpu_share (compaction CPU over the run's wall time).
 * Arguments: seconds= (40) phase_s= (10) cap_mb= (512) keys= (1048576)
 * readers= (cores) seed= (1).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wl_common.h"
#ifdef WL_HANDLES
#include "spbmalloc.h"
typedef spb_handle_t ref_t;
#define API "handles"
static ref_t val_new(size_t n) { return spb_halloc(n, 0); }
static void val_free(ref_t r) { spb_hfree(r); }
static unsigned char *val_open(ref_t r) { spb_read_lock(); return spb_hget(r); }
static void val_close(void) { spb_read_unlock(); }
#else
typedef unsigned char *ref_t;
#define API "malloc"
static ref_t val_new(size_t n) { return malloc(n); }
static void val_free(ref_t r) { free(r); }
static unsigned char *val_open(ref_t r) { return r; }
static void val_close(void) {}
#endif

#define STRIPES 1024

struct slot {
	ref_t v;
	uint32_t size;
	uint8_t ref; /* CLOCK bit, set by readers */
};

static struct slot *slots;
static pthread_mutex_t stripe[STRIPES];
static unsigned long nkeys;
static int stop;
static size_t live_bytes; /* writer only; read by the sampler (relaxed) */
static double t_start, phase_s;

static const size_t lo[4] = {64, 1024, 128, 4096}, hi[4] = {512, 4096, 1024, 16384};

static double now(void) { return wl_now(); }

struct tstat {
	double ops, max_us;
	long bad;
};

static void *reader(void *arg)
{
	struct tstat *st = arg;
	struct wl_rng r;
	wl_rng_seed(&r, (uint64_t)(uintptr_t)arg, 7);
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		for (int k = 0; k < 256; k++) {
			unsigned long key = wl_rand(&r) % nkeys;
			double t0 = now();
			pthread_mutex_t *m = &stripe[key % STRIPES];
			pthread_mutex_lock(m);
			struct slot *s = &slots[key];
			if (s->v) {
				unsigned char *p = val_open(s->v);
				uint64_t stamp;
				memcpy(&stamp, p, 8);
				uint64_t sum = 0;
				for (uint32_t i = 8; i < s->size; i += 64)
					sum += p[i];
				(void)sum;
				val_close();
				if (stamp != key)
					st->bad++;
				__atomic_store_n(&s->ref, 1, __ATOMIC_RELAXED);
			}
			pthread_mutex_unlock(m);
			double us = (now() - t0) * 1e6;
			if (us > st->max_us)
				st->max_us = us;
			st->ops++;
		}
	}
	return NULL;
}

static void evict(unsigned long *hand, size_t cap)
{
	while (live_bytes > cap) {
		unsigned long key = (*hand)++ % nkeys;
		struct slot *s = &slots[key];
		pthread_mutex_t *m = &stripe[key % STRIPES];
		pthread_mutex_lock(m);
		ref_t old = 0;
		if (s->v && !__atomic_exchange_n(&s->ref, 0, __ATOMIC_RELAXED)) {
			old = s->v;
			__atomic_store_n(&live_bytes, live_bytes - s->size, __ATOMIC_RELAXED);
			s->v = 0;
			s->size = 0;
		}
		pthread_mutex_unlock(m);
		if (old)
			val_free(old);
	}
}

static void *writer(void *arg)
{
	struct tstat *st = arg;
	struct wl_rng r;
	wl_rng_seed(&r, 99, 3);
	size_t cap = (size_t)wl_arg_long("cap_mb", 512) << 20;
	unsigned long hand = 0;
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		int ph = (int)((now() - t_start) / phase_s) % 4;
		for (int k = 0; k < 64; k++) {
			unsigned long key = wl_rand(&r) % nkeys;
			size_t n = wl_size_powerlaw(&r, lo[ph], hi[ph], 1.0);
			double t0 = now();
			ref_t v = val_new(n);
			if (!v) {
				fprintf(stderr, "lru: allocation of %zu failed\n", n);
				exit(1);
			}
			unsigned char *p = val_open(v);
			memcpy(p, &key, 8);
			memset(p + 8, (int)(key & 0xff), n - 8);
			val_close();
			pthread_mutex_t *m = &stripe[key % STRIPES];
			pthread_mutex_lock(m);
			struct slot *s = &slots[key];
			ref_t old = s->v;
			__atomic_store_n(&live_bytes, live_bytes - s->size + n, __ATOMIC_RELAXED);
			s->v = v;
			s->size = (uint32_t)n;
			s->ref = 1;
			pthread_mutex_unlock(m);
			if (old)
				val_free(old);
			evict(&hand, cap);
			double us = (now() - t0) * 1e6;
			if (us > st->max_us)
				st->max_us = us;
			st->ops++;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	wl_args_init(argc, argv);
	double seconds = wl_arg_double("seconds", 40);
	phase_s = wl_arg_double("phase_s", 10);
	nkeys = (unsigned long)wl_arg_long("keys", 1 << 20);
	long nr = wl_arg_long("readers", wl_nproc());
	if (seconds <= 0 || phase_s <= 0 || nkeys < 1024 || nr < 0 || nr > 256) {
		fprintf(stderr, "lru: bad arguments\n");
		return 2;
	}
	slots = wl_check(calloc(nkeys, sizeof *slots), nkeys * sizeof *slots);
	for (int i = 0; i < STRIPES; i++)
		pthread_mutex_init(&stripe[i], NULL);
	struct tstat wst = {0}, rst[256];
	memset(rst, 0, sizeof rst);
	pthread_t w, rd[256];
	t_start = now();
	pthread_create(&w, NULL, writer, &wst);
	for (long i = 0; i < nr; i++)
		pthread_create(&rd[i], NULL, reader, &rst[i]);
	wl_kv_str("api", API);
	char key[64];
	long rss_max = 0;
	struct wl_mem m;
	for (int s = 1; s <= (int)seconds; s++) {
		double due = t_start + s, t = now();
		if (due > t)
			wl_sleep(due - t);
		wl_mem_read(&m);
		if (m.rss_kb > rss_max)
			rss_max = m.rss_kb;
		snprintf(key, sizeof key, "rss_kb.s%d", s);
		wl_kv_long(key, m.rss_kb);
		snprintf(key, sizeof key, "live_kb.s%d", s);
		wl_kv_long(key, (long)(__atomic_load_n(&live_bytes, __ATOMIC_RELAXED) >> 10));
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	pthread_join(w, NULL);
	double gets = 0, gmax = 0;
	long bad = 0;
	for (long i = 0; i < nr; i++) {
		pthread_join(rd[i], NULL);
		gets += rst[i].ops;
		bad += rst[i].bad;
		if (rst[i].max_us > gmax)
			gmax = rst[i].max_us;
	}
	double wall = now() - t_start;
	wl_kv_long("rss_kb.max", rss_max);
	wl_kv_double("rss_over_live_end", (double)m.rss_kb * 1024.0 / (double)live_bytes);
	wl_kv_double("get_ops", gets);
	wl_kv_double("set_ops", wst.ops);
	wl_kv_double("get_max_us", gmax);
	wl_kv_double("set_max_us", wst.max_us);
	wl_kv_long("bad_reads", bad);
#ifdef WL_HANDLES
	static const char *const counters[] = {"compact_moved", "compact_moved_bytes",
					       "compact_passes", "compact_spans_freed",
					       "compact_ctl_start", "compact_ctl_stop",
					       "compact_futile", "compact_throttled",
					       "compact_cancelled", "compact_cpu_us"};
	for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
		wl_kv_long(counters[i], (long)spb_counter_get(counters[i]));
	wl_kv_double("compact_cpu_share",
		     (double)spb_counter_get("compact_cpu_us") / 1e6 / wall);
#endif
	wl_report_main("lru", nr + 1, gets + wst.ops, wall);
	wl_report_end();
	return bad ? 1 : 0;
}
