/*
 * statseg.c — the shared-memory stats segment /dev/shm/spbmalloc.<pid>
 * that spbstat reads (layout: include/spbmalloc_stats.h).
 *
 * The hot path pays nothing: counters and gauges already live in the zones
 * (bumped under the zone lock the event holds). A snapshot is collected
 * zone by zone into a private staging buffer, each zone's lock held only
 * while its figures are copied, then written into the segment inside one
 * seqlock window, so a reader copies a consistent snapshot and the lock
 * hold never includes a page fault on the shared file. The background
 * thread (bgthread.c) publishes once per SPBMALLOC_STATS_INTERVAL_MS, and
 * answers the requests spbstat leaves in the header's control slot.
 *
 * Never allocates: open/ftruncate/read/unlink and os.c's mappings only, so
 * it can run inside the first malloc and in a forked child.
 * May call: the engine (zones, counters), os.c, error.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "spbmalloc_stats.h"

_Static_assert(SPB_STATS_NR_CLASSES == SPB_NR_CLASSES, "class count");
_Static_assert(SPB_STATS_NR_RUNGS == SPB_NR_RUNGS, "rung count");
_Static_assert(SPB_STATS_NR_CATS == SPB_NR_CATS, "category count");
_Static_assert(SPB_STATS_NR_FULLNESS == SPB_NR_FULLNESS, "fullness buckets");
_Static_assert(SPB_STATS_PB_PER_SPB == SPB_PB_PER_SPB, "pageblocks per SPB");
_Static_assert(SPB_STATS_PB_FREE == SPB_PB_FREE && SPB_STATS_PB_BUSY == SPB_PB_BUSY,
	       "pageblock tags");

enum { SEG_NONE = 0, SEG_BUSY, SEG_READY, SEG_OFF, SEG_EXITED };

static struct {
	int state;                         /* SEG_* */
	pid_t pid;                         /* who created the mapping */
	struct spb_stats_header *hdr;      /* the shared mapping */
	size_t size;
	void *stage;                       /* private copy of the snapshot */
	size_t stage_size;
	uint64_t publish_count;
	uint64_t not_before_ms;            /* no segment before (0: not set yet) */
	char path[48];
} seg;

static pthread_mutex_t publish_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t ctl_last; /* the last req_seq answered (background thread) */
static uint64_t peak_live;

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Read a small /proc file into buf (NUL terminated); bytes read or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	while (len < cap - 1) {
		ssize_t r = read(fd, buf + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = 0;
	return (ssize_t)len;
}

static uint64_t parse_u64(const char *s, const char **end)
{
	uint64_t v = 0;
	while (*s == ' ' || *s == '\t')
		s++;
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (uint64_t)(*s++ - '0');
	if (end)
		*end = s;
	return v;
}

/* Field 22 of /proc/self/stat (start time in clock ticks after boot). */
static uint64_t proc_starttime(void)
{
	char buf[1024];
	if (read_small("/proc/self/stat", buf, sizeof buf) <= 0)
		return 0;
	const char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	p++; /* fields from 3 on */
	for (int field = 3; field < 22 && *p; p++)
		if (*p == ' ')
			field++;
	return parse_u64(p, NULL);
}

/* "Key:   123 kB" in /proc/self/smaps_rollup, in bytes. */
static uint64_t smaps_field(const char *buf, const char *key)
{
	size_t kl = strlen(key);
	for (const char *p = buf; p; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (strncmp(p, key, kl) == 0)
			return parse_u64(p + kl, NULL) * 1024;
	}
	return 0;
}

static void read_smaps(struct spb_stats_gauges *g)
{
	char buf[2048];
	if (read_small("/proc/self/smaps_rollup", buf, sizeof buf) <= 0)
		return;
	g->rss_bytes = smaps_field(buf, "Rss:");
	g->anon_bytes = smaps_field(buf, "Anonymous:");
	g->anon_huge_bytes = smaps_field(buf, "AnonHugePages:");
	g->huge_permille = g->anon_bytes
		? (uint32_t)(g->anon_huge_bytes * 1000 / g->anon_bytes) : 0;
}

static unsigned row_of(uint8_t cls)
{
	if (cls < SPB_NR_CLASSES)
		return cls;
	return cls == SPB_PB_FREE ? SPB_STATS_ROW_FREE : SPB_STATS_ROW_BUSY;
}

/* One SPB's pageblocks into the gauges and (when rec) its map record. */
static void collect_spb_locked(const struct spb *s, struct spb_stats_gauges *g,
			       struct spb_stats_spb *rec, uint16_t zone)
{
	g->pb_by_class[SPB_STATS_ROW_FREE] += s->nr_free_pb;
	g->pb_by_class[SPB_STATS_ROW_BUSY] += s->nr_busy_pb;
	for (unsigned i = 0; i < SPB_PB_PER_SPB; i++) {
		const struct spb_pageblock *pb = &s->pb[i];
		uint8_t rung = pb->rung < SPB_NR_RUNGS ? pb->rung : SPB_RUNG_NONE;
		if (rung != SPB_RUNG_NONE)
			g->bytes_by_class_rung[row_of(pb->cls)][rung] += SPB_PB_SIZE;
		if (!rec)
			continue;
		rec->pb_cls[i] = pb->cls;
		rec->pb_rung[i] = rung;
		if (pb->mode == SPB_PB_MODE_RUNS)
			rec->pb_used[i] = (uint16_t)(SPB_PAGES_PER_PB - pb->nr_free);
		else if (pb->mode == SPB_PB_MODE_MULTI_HEAD ||
			 pb->mode == SPB_PB_MODE_MULTI_TAIL)
			rec->pb_used[i] = SPB_PAGES_PER_PB;
		else
			rec->pb_used[i] = 0;
	}
	if (!rec)
		return;
	rec->base = s->r.base;
	rec->nr_used_pages = s->nr_used_pages;
	rec->zone = zone;
	rec->nr_free_pb = s->nr_free_pb;
	rec->category = s->category;
	rec->fullness = s->fullness;
	rec->rung = s->rung;
}

/* One zone, under its lock: its gauges, then every SPB on its lists. */
static uint32_t collect_zone(struct spb_zone *z, uint16_t zi,
			     struct spb_stats_gauges *g, uint64_t *released,
			     struct spb_stats_spb *spbs, uint32_t n, uint32_t max)
{
	spb__zone_lock(z);
	g->nr_spbs += z->nr_spbs;
	g->tainted_free_pb += z->tainted_free_pb;
	g->tainted_reserve += spb__zone_reserve(z);
	g->large_bytes += z->large_bytes;
	*released += z->released_pages;
	for (int c = 0; c < SPB_NR_CLASSES; c++)
		g->pb_by_class[c] += z->pb_by_class[c];
	for (int r = 0; r < SPB_NR_RUNGS; r++)
		g->pb_by_rung[r] += z->pb_by_rung[r];
	for (int c = 0; c < SPB_NR_CATS; c++) {
		g->spbs_by_cat[c] += z->nr_by_cat[c];
		for (int f = 0; f < SPB_NR_FULLNESS; f++) {
			struct spb_link *h = &z->lists[c][f];
			for (struct spb_link *l = h->next; l != h; l = l->next) {
				struct spb *s = spb__container_of(l, struct spb, link);
				struct spb_stats_spb *rec =
					spbs && n < max ? &spbs[n++] : NULL;
				g->spbs_by_cat_full[c][f]++;
				collect_spb_locked(s, g, rec, zi);
			}
		}
	}
	spb__zone_unlock(z);
	return n;
}

static void collect_topo(struct spb_stats_topo *o)
{
	const struct spb_topo *t = spb__topo_get();
	o->source = t->source;
	o->synthetic = t->synthetic;
	o->nr_nodes = t->nr_nodes;
	o->nr_packages = t->nr_packages;
	o->nr_cores = t->nr_cores;
	o->nr_pus = t->nr_pus;
	o->mem_policy = spb__topo_policy();
	o->cache_line = t->cache_line;
	o->cache_l1d = t->cache_l1d;
	o->cache_l2 = t->cache_l2;
	o->cache_l3 = t->cache_l3;
	for (int i = 0; i < SPB_STATS_TOPO_NODES; i++) {
		o->node_mem[i] = t->node_mem[i];
		for (int j = 0; j < SPB_STATS_TOPO_NODES; j++)
			o->dist[i][j] = t->dist[i][j];
	}
}

void spb__stats_collect(struct spb_stats_gauges *g, uint64_t *counters,
			struct spb_stats_spb *spbs, uint32_t max)
{
	memset(g, 0, sizeof *g);
	uint32_t n = 0;
	uint64_t released = 0; /* pages of RUNS pageblocks given back */
	int nz = __atomic_load_n(&spb__nr_zones, __ATOMIC_ACQUIRE);
	for (int i = 0; i < nz; i++)
		n = collect_zone(&spb__zones[i], (uint16_t)i, g, &released, spbs, n, max);
	g->nr_zones = (uint32_t)nz;
	g->nr_spbs_mapped = n;
	uint64_t mapped_pb = 0;
	for (int r = 0; r < SPB_NR_RUNGS; r++)
		if (r != SPB_RUNG_NONE)
			mapped_pb += g->pb_by_rung[r];
	g->mapped_bytes = mapped_pb * SPB_PB_SIZE - released * SPB_PAGE_SIZE + g->large_bytes;
	g->reserved_bytes = (uint64_t)g->nr_spbs * SPB_SPB_SIZE + g->large_bytes;
	for (int c = 0; c < SPB_NR_COUNTERS; c++)
		counters[c] = spb__counter_sum((enum spb_counter)c);
	uint64_t a = counters[MALLOC_ALLOC_BYTES], f = counters[MALLOC_FREE_BYTES];
	g->live_bytes = a > f ? a - f : 0;
	uint64_t peak = __atomic_load_n(&peak_live, __ATOMIC_RELAXED);
	while (g->live_bytes > peak &&
	       !__atomic_compare_exchange_n(&peak_live, &peak, g->live_bytes, false,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	g->peak_live_bytes = g->live_bytes > peak ? g->live_bytes : peak;
	g->next_decay_ms = UINT64_MAX;
	uint64_t now = spb__os_now_ms();
	for (int i = 0; i < nz; i++) {
		uint64_t due = __atomic_load_n(&spb__zones[i].next_decay, __ATOMIC_RELAXED);
		if (due != UINT64_MAX) {
			uint64_t in = due > now ? due - now : 0;
			if (in < g->next_decay_ms)
				g->next_decay_ms = in;
		}
	}
	collect_topo(&g->topo);
	read_smaps(g);
	g->publish_realtime_ns = realtime_ns();
}

/* ---- the segment file ---- */

static size_t align64(size_t v)
{
	return (v + 63) & ~(size_t)63;
}

static void make_path(pid_t pid)
{
	static const char prefix[] = SPB_STATS_PATH_PREFIX;
	memcpy(seg.path, prefix, sizeof prefix - 1);
	size_t n = sizeof prefix - 1;
	n += spb__fmt_u64(seg.path + n, (uint64_t)pid);
	seg.path[n] = 0;
}

/* A file already at our path was left by an earlier process that had our
 * pid (we are alive, so it is not live): remove it if it is ours to remove. */
static bool remove_stale(void)
{
	int fd = open(seg.path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	bool ok = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		  st.st_uid == geteuid();
	if (fd >= 0)
		close(fd);
	return ok && unlink(seg.path) == 0;
}

static int create_file(void)
{
	for (int tries = 0; tries < 2; tries++) {
		int fd = open(seg.path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			      0600);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST || !remove_stale())
			return -1;
	}
	return -1;
}

static uint32_t rungs_enabled(void)
{
	uint32_t r = 1u << SPB_RUNG_4K;
	if (spb__opt(OPT_HUGETLB_1G))
		r |= 1u << SPB_RUNG_HUGETLB_1G;
	if (spb__opt(OPT_HUGETLB_2M))
		r |= 1u << SPB_RUNG_HUGETLB_2M;
	if (spb__opt(OPT_THP))
		r |= 1u << SPB_RUNG_THP;
	return r;
}

static void fill_header(struct spb_stats_header *h, uint32_t max_spbs)
{
	h->version = SPB_STATS_VERSION;
	h->header_size = sizeof *h;
	h->total_size = seg.size;
	h->pid = seg.pid;
	h->uid = (uint32_t)geteuid();
	h->start_realtime_ns = realtime_ns();
	h->proc_starttime = proc_starttime();
	h->page_size = SPB_PAGE_SIZE;
	h->pb_size = SPB_PB_SIZE;
	h->spb_size = SPB_SPB_SIZE;
	h->rungs_enabled = rungs_enabled();
	h->nr_counters = SPB_NR_COUNTERS;
	h->nr_classes = SPB_NR_CLASSES;
	h->nr_rungs = SPB_NR_RUNGS;
	h->pb_per_spb = SPB_PB_PER_SPB;
	h->max_spbs = max_spbs;
	h->names_off = (uint32_t)align64(sizeof *h);
	h->gauges_off = (uint32_t)align64(h->names_off +
					  (size_t)SPB_NR_COUNTERS * SPB_STATS_NAME_LEN);
	h->counters_off = (uint32_t)align64(h->gauges_off + sizeof(struct spb_stats_gauges));
	h->spbs_off = (uint32_t)align64(h->counters_off + SPB_NR_COUNTERS * sizeof(uint64_t));
	h->gauges_size = sizeof(struct spb_stats_gauges);
	h->spb_rec_size = sizeof(struct spb_stats_spb);
	h->publish_interval_ms = (uint32_t)spb__opt(OPT_STATS_INTERVAL_MS);
	char *names = (char *)h + h->names_off;
	for (int c = 0; c < SPB_NR_COUNTERS; c++) {
		size_t l = strlen(spb__counter_names[c]);
		if (l >= SPB_STATS_NAME_LEN)
			l = SPB_STATS_NAME_LEN - 1;
		memcpy(names + (size_t)c * SPB_STATS_NAME_LEN, spb__counter_names[c], l);
	}
	/* Last: a reader that sees the magic sees a complete header. */
	__atomic_store_n(&h->magic, SPB_STATS_MAGIC, __ATOMIC_RELEASE);
}

/* Create, size and map the file; false (and nothing left behind) on error. */
static bool seg_create(void)
{
	uint32_t max_spbs = (uint32_t)spb__opt(OPT_STATSEG_MAX_SPBS);
	size_t snap_start = align64(align64(sizeof(struct spb_stats_header)) +
				    (size_t)SPB_NR_COUNTERS * SPB_STATS_NAME_LEN);
	size_t spbs_off = align64(align64(snap_start + sizeof(struct spb_stats_gauges)) +
				  SPB_NR_COUNTERS * sizeof(uint64_t));
	seg.size = spbs_off + (size_t)max_spbs * sizeof(struct spb_stats_spb);
	seg.size = (seg.size + SPB_PAGE_SIZE - 1) & ~(SPB_PAGE_SIZE - 1);
	seg.stage_size = seg.size - snap_start;
	seg.pid = getpid();
	make_path(seg.pid);
	int fd = create_file();
	if (fd < 0)
		return false;
	void *p = NULL;
	if (fchmod(fd, 0600) == 0 && ftruncate(fd, (off_t)seg.size) == 0)
		p = spb__os_map_shared(fd, seg.size);
	close(fd);
	if (p && !seg.stage)
		seg.stage = spb__os_map_shared(-1, seg.stage_size);
	if (!p || !seg.stage) {
		if (p)
			spb__os_unmap(p, seg.size);
		unlink(seg.path);
		return false;
	}
	seg.hdr = p;
	fill_header(seg.hdr, max_spbs);
	/* A process that dies of a detected fault (abort, no destructors)
	 * removes its segment too. */
	spb__fatal_hook = spb__statseg_exit;
	return true;
}

void spb__statseg_init(void)
{
	int st = __atomic_load_n(&seg.state, __ATOMIC_ACQUIRE);
	if (SPB_LIKELY(st != SEG_NONE))
		return;
	/* A process (and a forked child) gets its segment only once it has
	 * run SPBMALLOC_STATSEG_DELAY_MS; the background thread retries each
	 * round. Shell children, compilers' helpers and forked workers that
	 * end with _exit() (no destructor runs) would otherwise each leave a
	 * file in /dev/shm. */
	spb__options_init();
	spb__summary_arm(); /* the exit summary does not wait for the segment */
	uint64_t now = spb__os_now_ms();
	uint64_t nb = __atomic_load_n(&seg.not_before_ms, __ATOMIC_RELAXED);
	if (!nb) {
		uint64_t want = now + (uint64_t)spb__opt(OPT_STATSEG_DELAY_MS);
		if (__atomic_compare_exchange_n(&seg.not_before_ms, &nb, want, false,
						__ATOMIC_RELAXED, __ATOMIC_RELAXED))
			nb = want;
	}
	if (now < nb)
		return;
	if (!__atomic_compare_exchange_n(&seg.state, &st, SEG_BUSY, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return; /* another thread is creating it */
	spb__options_init();
	spb__summary_arm();
	if (!spb__opt(OPT_STATSEG) || !seg_create()) {
		if (spb__opt(OPT_STATSEG) && spb__opt(OPT_VERBOSE))
			spb__warn("stats segment", seg.path, "could not be created");
		__atomic_store_n(&seg.state, SEG_OFF, __ATOMIC_RELEASE);
		return;
	}
	__atomic_store_n(&seg.state, SEG_READY, __ATOMIC_RELEASE);
	spb__statseg_publish();
}

void spb__statseg_publish(void)
{
	if (__atomic_load_n(&seg.state, __ATOMIC_ACQUIRE) != SEG_READY)
		return;
	pthread_mutex_lock(&publish_lock);
	struct spb_stats_header *h = seg.hdr;
	/* spb_ctl may have changed them since the header was written. */
	__atomic_store_n(&h->publish_interval_ms, (uint32_t)spb__opt(OPT_STATS_INTERVAL_MS),
			 __ATOMIC_RELAXED);
	__atomic_store_n(&h->rungs_enabled, rungs_enabled(), __ATOMIC_RELAXED);
	char *stage = seg.stage;
	size_t snap_start = h->gauges_off;
	struct spb_stats_gauges *g = (void *)(stage + (h->gauges_off - snap_start));
	uint64_t *counters = (void *)(stage + (h->counters_off - snap_start));
	struct spb_stats_spb *spbs = (void *)(stage + (h->spbs_off - snap_start));
	spb__stats_collect(g, counters, spbs, h->max_spbs);
	g->publish_count = ++seg.publish_count;
	size_t len = h->spbs_off - snap_start +
		     (size_t)g->nr_spbs_mapped * sizeof(struct spb_stats_spb);

	/* The seqlock window: nothing in it but the copy. */
	uint64_t s = __atomic_load_n(&h->seq, __ATOMIC_RELAXED);
	__atomic_store_n(&h->seq, s + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memcpy((char *)h + snap_start, stage, len);
	__atomic_store_n(&h->seq, s + 2, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&publish_lock);
}

void spb__statseg_atfork_child(void)
{
	/* A forked child runs alone: whoever held the lock is gone. */
	pthread_mutex_init(&publish_lock, NULL);
	int st = __atomic_load_n(&seg.state, __ATOMIC_ACQUIRE);
	if (st == SEG_EXITED || seg.pid == getpid())
		return;
	if (seg.hdr) /* the parent's: the child must never write it */
		spb__os_unmap(seg.hdr, seg.size);
	seg.hdr = NULL;
	seg.publish_count = 0;
	ctl_last = 0; /* the child's own segment starts at 0 */
	__atomic_store_n(&seg.not_before_ms,
			 spb__os_now_ms() + (uint64_t)spb__opt(OPT_STATSEG_DELAY_MS),
			 __ATOMIC_RELAXED);
	__atomic_store_n(&seg.state, SEG_NONE, __ATOMIC_RELEASE);
}

bool spb__statseg_ready(void)
{
	return __atomic_load_n(&seg.state, __ATOMIC_ACQUIRE) == SEG_READY &&
	       seg.pid == getpid();
}

/* ---- the control slot (spbmalloc_stats.h, struct spb_stats_ctl) ---- */

uint32_t *spb__statseg_wake_word(void)
{
	return spb__statseg_ready() ? &seg.hdr->ctl.wake : NULL;
}

bool spb__statseg_serve_ctl(void)
{
	if (!spb__statseg_ready())
		return false;
	struct spb_stats_ctl *c = &seg.hdr->ctl;
	uint64_t r = __atomic_load_n(&c->req_seq, __ATOMIC_ACQUIRE);
	if (r == ctl_last)
		return true;
	/* Another process writes the slot: act on a copy only. */
	struct spb_stats_ctl req;
	memcpy(&req, c, sizeof req);
	bool seq_ok = r == ctl_last + 1;
	ctl_last = r; /* a wrong number is answered too: the next is r + 1 */
	int64_t result;
	int st = spb__ctl_remote(seq_ok, &req, &result);
	__atomic_store_n(&c->result, result, __ATOMIC_RELAXED);
	__atomic_store_n(&c->status, st, __ATOMIC_RELAXED);
	__atomic_store_n(&c->ack_seq, r, __ATOMIC_RELEASE);
	return true;
}

void spb__statseg_exit(void)
{
	int st = __atomic_exchange_n(&seg.state, SEG_EXITED, __ATOMIC_ACQ_REL);
	/* Only the process that created the file removes it (a forked child
	 * that never made its own must not remove its parent's). */
	if (st == SEG_READY && seg.pid == getpid())
		unlink(seg.path);
}
