/*
 * reclaim.c — wl_reclaim: a cache of parsed records in RECLAIMABLE memory
 * under a shrinker, beside growing non-movable demand (issue 10's real use).
 *
 * One thread serves "requests": each parses a record (a text line of 200
 * B-3 KiB, made from the seed) into a struct with its fields copied out,
 * kept in a RECLAIMABLE cache (spb_malloc_class(.., SPB_RECLAIMABLE, 0))
 * that nothing bounds but the shrinker, and every `session_every`
 * requests opens a session (plain malloc, UNMOVABLE, 4-64 KiB, written)
 * that is kept to the end: non-movable demand that keeps growing. With
 * shrinker=1 a shrinker drops the oldest records when the allocator asks;
 * with shrinker=0 nobody does. A cache lookup reparses a record it misses
 * (the cost of shrinking, reported as misses).
 *
 * Prints key=value lines: spb_taint (SPBs that went clean/empty ->
 * tainted), spb_reserve (SPBs reserved), rss_kb.end, peak_rss_kb,
 * cache_records and cache_mb at the end, sessions_mb, misses, requests/s,
 * and the shrink_* counters.
 * Arguments: requests= (3000000) session_every= (40) shrinker= (1)
 * lookups= (1: one lookup of a random earlier record per request) seed= (1)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spbmalloc.h"
#include "wl_common.h"

struct record {
	uint64_t key;
	uint32_t nfields;
	uint32_t len;
	char text[]; /* the fields, NUL-separated */
};

static struct {
	pthread_mutex_t lock;
	struct record **slot; /* by key; NULL when dropped */
	uint64_t head;        /* oldest key that may be cached */
	uint64_t next;        /* next key */
	size_t live, bytes;
} cache = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0, 0};

static struct record *parse(uint64_t key)
{
	struct wl_rng r;
	wl_rng_seed(&r, key, 7);
	uint32_t len = (uint32_t)wl_size_powerlaw(&r, 200, 3072, 1.5);
	char line[3100];
	uint32_t n = 0, fields = 0;
	while (n + 1 < len) { /* "field=value,field=value,..." */
		uint32_t f = 4 + (uint32_t)(wl_rand(&r) % 24);
		for (uint32_t i = 0; i < f && n + 1 < len; i++)
			line[n++] = (char)('a' + wl_rand(&r) % 26);
		line[n++] = ',';
	}
	struct record *rec = spb_malloc_class(sizeof *rec + n, SPB_RECLAIMABLE, 0);
	if (!rec) {
		fprintf(stderr, "reclaim: spb_malloc_class failed\n");
		exit(1);
	}
	rec->key = key;
	rec->len = n;
	for (uint32_t i = 0; i < n; i++) {
		rec->text[i] = line[i] == ',' ? 0 : line[i];
		fields += line[i] == ',';
	}
	rec->nfields = fields;
	return rec;
}

static size_t cache_count(void *ctx)
{
	(void)ctx;
	pthread_mutex_lock(&cache.lock);
	size_t n = cache.live;
	pthread_mutex_unlock(&cache.lock);
	return n;
}

static size_t cache_scan(void *ctx, size_t nr, int prio)
{
	(void)ctx;
	(void)prio;
	size_t k = 0;
	pthread_mutex_lock(&cache.lock);
	while (k < nr && cache.head < cache.next) {
		struct record *rec = cache.slot[cache.head];
		cache.slot[cache.head++] = NULL;
		if (!rec)
			continue;
		cache.live--;
		cache.bytes -= sizeof *rec + rec->len;
		free(rec);
		k++;
	}
	pthread_mutex_unlock(&cache.lock);
	return k;
}

int main(int argc, char **argv)
{
	wl_args_init(argc, argv);
	long requests = wl_arg_long("requests", 3000000);
	long every = wl_arg_long("session_every", 40);
	long use_shrinker = wl_arg_long("shrinker", 1);
	long lookups = wl_arg_long("lookups", 1);
	long progress = wl_arg_long("progress", 0); /* a line every N requests */
	struct wl_rng r;
	wl_rng_seed(&r, (uint64_t)wl_arg_long("seed", 1), 0);
	cache.slot = wl_check(calloc((size_t)requests, sizeof *cache.slot),
			      (size_t)requests * sizeof *cache.slot);
	size_t nsess = (size_t)(requests / (every > 0 ? every : 1)) + 1, ns = 0, sess_bytes = 0;
	void **sessions = wl_check(malloc(nsess * sizeof *sessions), nsess * sizeof *sessions);
	if (use_shrinker && spb_shrinker_register(cache_scan, cache_count, NULL) <= 0) {
		perror("spb_shrinker_register");
		return 1;
	}
	long misses = 0;
	uint64_t sum = 0;
	double t0 = wl_now();
	for (long i = 0; i < requests; i++) {
		struct record *rec = parse((uint64_t)i);
		pthread_mutex_lock(&cache.lock);
		cache.slot[cache.next++] = rec;
		cache.live++;
		cache.bytes += sizeof *rec + rec->len;
		pthread_mutex_unlock(&cache.lock);
		for (long l = 0; l < lookups && i > 0; l++) {
			uint64_t key = wl_rand(&r) % (uint64_t)i;
			pthread_mutex_lock(&cache.lock);
			struct record *hit = cache.slot[key];
			if (hit)
				sum += (uint64_t)hit->text[0] + hit->nfields;
			pthread_mutex_unlock(&cache.lock);
			if (!hit) { /* a miss: parse it again (not cached again) */
				struct record *again = parse(key);
				sum += (uint64_t)again->text[0] + again->nfields;
				free(again);
				misses++;
			}
		}
		if (progress > 0 && i % progress == 0) {
			struct wl_mem pm;
			wl_mem_read(&pm);
			fprintf(stderr, "req %ld cache %zu MiB sessions %zu MiB rss %ld MiB taint %llu "
				"crossed %llu shrink_ran %llu demand %llu highwater %llu\n", i,
				cache.bytes >> 20, sess_bytes >> 20, pm.rss_kb >> 10,
				(unsigned long long)spb_counter_get("spb_taint"),
				(unsigned long long)spb_counter_get("spb_tainted_reserve_crossed"),
				(unsigned long long)spb_counter_get("shrink_ran"),
				(unsigned long long)spb_counter_get("shrink_trigger_demand"),
				(unsigned long long)spb_counter_get("shrink_trigger_highwater"));
		}
		if (every > 0 && i % every == 0 && ns < nsess) {
			size_t sz = wl_size_powerlaw(&r, 4096, 65536, 1.0);
			unsigned char *s = wl_check(malloc(sz), sz);
			memset(s, (int)(i & 0xff), sz);
			sessions[ns++] = s;
			sess_bytes += sz;
		}
	}
	double secs = wl_now() - t0;
	wl_peak_note();
	struct wl_mem m;
	wl_mem_read(&m);
	wl_kv_long("shrinker", use_shrinker);
	wl_kv_long("rss_kb.end", m.rss_kb);
	wl_kv_long("cache_records", (long)cache.live);
	wl_kv_long("cache_mb", (long)(cache.bytes >> 20));
	wl_kv_long("sessions_mb", (long)(sess_bytes >> 20));
	wl_kv_long("misses", misses);
	wl_kv_long("checksum", (long)(sum & 0xffff));
	static const char *const counters[] = {
		"spb_taint", "spb_reserve", "spb_tainted_reserve_crossed", "shrink_trigger_demand",
		"shrink_trigger_supply", "shrink_trigger_highwater", "shrink_queued", "shrink_ran",
		"shrink_freed", "shrink_pb_recovered", "shrink_no_progress", "shrink_prio3",
		"shrink_prio2", "shrink_prio1", "shrink_prio0"};
	for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
		wl_kv_long(counters[i], (long)spb_counter_get(counters[i]));
	wl_report_main("reclaim", 1, (double)requests, secs);
	wl_report_end();
	return 0;
}
