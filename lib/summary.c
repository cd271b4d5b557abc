/*
 * summary.c — what happens at normal exit: the SPBMALLOC_STATS=1 summary
 * on stderr, and the removal of the stats segment.
 *
 * Runs from a destructor, so it works for LD_PRELOAD and static linking
 * alike (statseg.c calls spb__summary_arm, which pulls this file into a
 * static link). Written with write(2) into a stack buffer: no stdio, no
 * malloc, since it runs inside a process whose malloc is ours.
 * May call: statseg.c (collect, exit), the engine's names, error.c.
 */
#include <unistd.h>

#include <fcntl.h>

#include "engine.h"
#include "spbmalloc_stats.h"

static int armed;
static uint64_t armed_at_ms;

static const char *const class_names[SPB_STATS_NR_ROWS] = {
	"movable", "unmovable", "reclaimable", "secret", "free", "busy",
};

struct out {
	int fd;
	size_t len;
	char buf[512];
};

static void flush(struct out *o)
{
	size_t off = 0;
	while (off < o->len) {
		ssize_t r = write(o->fd, o->buf + off, o->len - off);
		if (r <= 0)
			break;
		off += (size_t)r;
	}
	o->len = 0;
}

static void put(struct out *o, const char *s)
{
	for (; *s; s++) {
		if (o->len == sizeof o->buf)
			flush(o);
		o->buf[o->len++] = *s;
	}
}

static void put_u64(struct out *o, uint64_t v)
{
	char tmp[24];
	tmp[spb__fmt_u64(tmp, v)] = 0;
	put(o, tmp);
}

/* v / div with one decimal. */
static void put_dec1(struct out *o, uint64_t v, uint64_t div)
{
	uint64_t tenths = div ? (v * 10 + div / 2) / div : 0;
	put_u64(o, tenths / 10);
	char d[3] = {'.', (char)('0' + tenths % 10), 0};
	put(o, d);
}

static void put_bytes(struct out *o, uint64_t b)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	unsigned u = 0;
	uint64_t div = 1;
	while (u < 4 && b >= div * 1024) {
		div *= 1024;
		u++;
	}
	if (u == 0)
		put_u64(o, b);
	else
		put_dec1(o, b, div);
	put(o, " ");
	put(o, units[u]);
}

static void line_start(struct out *o, const char *what)
{
	put(o, "spbmalloc: ");
	put(o, what);
}

/* "name value, name value, ..." for n named values. */
static void put_named(struct out *o, const char *const *names, const uint64_t *v, unsigned n)
{
	for (unsigned r = 0; r < n; r++) {
		put(o, r ? ", " : "");
		put(o, names[r]);
		put(o, " ");
		put_u64(o, v[r]);
	}
}

/* A line of counters, each after its label (the first label starts the
 * line). */
struct counted {
	const char *label;
	enum spb_counter c;
};
static void put_counted_line(struct out *o, const struct counted *v, size_t n,
			     const uint64_t *c)
{
	line_start(o, v[0].label);
	put_u64(o, c[v[0].c]);
	for (size_t i = 1; i < n; i++) {
		put(o, v[i].label);
		put_u64(o, c[v[i].c]);
	}
	put(o, "\n");
}

static void print_pageblocks(struct out *o, const struct spb_stats_gauges *g,
			     const uint64_t *c)
{
	line_start(o, "pageblocks   ");
	put_named(o, class_names, g->pb_by_class, SPB_STATS_NR_ROWS);
	put(o, "\n");
	line_start(o, "backing rung ");
	put_named(o, spb__rung_names, g->pb_by_rung, SPB_NR_RUNGS);
	put(o, " (pageblocks)\n");
	/* pageblock.c's choice at claim, and the background thread's looks */
	static const struct counted claimed[] = {
		{"claimed      huge ", PB_BACK_THP}, {"; 4k until dense: small heap ", PB_LAZY_SMALL},
		{", sparse use ", PB_LAZY_SPARSE}, {", learnt huge ", PB_LAZY_LEARNED},
		{"; looks ", PB_LAZY_CHECK}, {", made huge ", PB_LAZY_HUGE},
	};
	put_counted_line(o, claimed, sizeof claimed / sizeof claimed[0], c);
	/* runcache.c: 128-256 KiB runs kept by the threads that freed them */
	static const struct counted runs[] = {
		{"run cache    hits ", RUNCACHE_HIT}, {", misses ", RUNCACHE_MISS},
		{"; kept ", RUNCACHE_PUT}, {", full ", RUNCACHE_FULL},
		{", given back ", RUNCACHE_DRAINED},
	};
	put_counted_line(o, runs, sizeof runs / sizeof runs[0], c);
}

void spb__stats_print_summary(int fd)
{
	struct spb_stats_gauges g;
	uint64_t c[SPB_NR_COUNTERS];
	struct out o = {.fd = fd};
	spb__stats_collect(&g, c, NULL, 0);

	line_start(&o, "summary of pid ");
	put_u64(&o, (uint64_t)getpid());
	put(&o, ", ran ");
	put_dec1(&o, spb__os_now_ms() - armed_at_ms, 1000);
	put(&o, " s\n");
	static const struct counted allocs[] = {
		{"allocations  ", MALLOC_ALLOC}, {" served, ", MALLOC_FREE},
		{" freed; page runs ", RUN_ALLOC}, {", pageblock runs ", MULTI_ALLOC},
	};
	put_counted_line(&o, allocs, sizeof allocs / sizeof allocs[0], c);
	line_start(&o, "bytes        current ");
	put_bytes(&o, g.live_bytes);
	put(&o, ", peak ");
	put_bytes(&o, g.peak_live_bytes);
	put(&o, " (sampled); backed ");
	put_bytes(&o, g.mapped_bytes);
	put(&o, ", reserved ");
	put_bytes(&o, g.reserved_bytes);
	put(&o, "\n");
	line_start(&o, "SPBs         ");
	put_u64(&o, g.nr_spbs);
	put(&o, " (empty ");
	put_u64(&o, g.spbs_by_cat[SPB_CAT_EMPTY]);
	put(&o, ", clean ");
	put_u64(&o, g.spbs_by_cat[SPB_CAT_CLEAN]);
	put(&o, ", tainted ");
	put_u64(&o, g.spbs_by_cat[SPB_CAT_TAINTED]);
	put(&o, "); claims ");
	put_u64(&o, c[PB_CLAIM]);
	put(&o, ", taints ");
	put_u64(&o, c[SPB_TAINT]);
	put(&o, ", refusals ");
	put_u64(&o, c[SPB_HIGHORDER_REFUSED]);
	put(&o, ", releases ");
	put_u64(&o, c[PB_RELEASE]);
	put(&o, "\n");
	print_pageblocks(&o, &g, c);
	line_start(&o, "huge pages   ");
	put_bytes(&o, g.anon_huge_bytes);
	put(&o, " of ");
	put_bytes(&o, g.anon_bytes);
	put(&o, " anonymous memory (");
	put_dec1(&o, g.huge_permille, 10);
	put(&o, "%), rss ");
	put_bytes(&o, g.rss_bytes);
	put(&o, "\n");
	flush(&o);
}

/* Our own copy of stderr, taken when the summary is wanted: programs that
 * close fd 2 in their exit handlers (coreutils, xz) run those before our
 * destructor, and the summary would be lost. */
static int summary_fd = 2;

void spb__summary_arm(void)
{
	if (__atomic_exchange_n(&armed, 1, __ATOMIC_ACQ_REL))
		return;
	armed_at_ms = spb__os_now_ms();
	if (spb__opt(OPT_STATS)) {
		int fd = fcntl(2, F_DUPFD_CLOEXEC, 64);
		if (fd >= 0)
			summary_fd = fd;
	}
}

/* Normal exit (exit() or return from main), in the shared library and in
 * a static link alike. A program that never initialised the allocator has
 * nothing to report and no segment to remove. */
__attribute__((destructor)) static void stats_at_exit(void)
{
	if (!__atomic_load_n(&armed, __ATOMIC_ACQUIRE))
		return;
	if (spb__opt(OPT_STATS))
		spb__stats_print_summary(summary_fd);
	spb__statseg_exit();
}
