/*
 * openmetrics.c — the exposition spbstat --listen serves: every process's
 * snapshot in one text, family by family (a family's samples for all the
 * processes together, as the format requires), each sample labelled with
 * the process (pid, and comm when known).
 *
 * Two flavours from the same walk: OpenMetrics 1.0.0 (counter families
 * named without _total, samples with it, # UNIT lines, # EOF at the end)
 * and the Prometheus text format 0.0.4 (counter families named with
 * _total, no UNIT, no EOF) for scrapers that do not ask for OpenMetrics.
 *
 * Counters keep the names the segment gives them (spbmalloc_<name>); their
 * help comes from spbmalloc_counters.def when this spbstat knows the name.
 * The gauges are named here, with units in the name where there is one.
 * The per-SPB map is not exported (its cardinality is the heap's size).
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "openmetrics.h"

struct om {
	FILE *f;
	bool om; /* OpenMetrics 1.0.0, else text 0.0.4 */
	const struct snap *s;
	size_t n;
};

/* Label values escape \\, \n and "; so does HELP in OpenMetrics, while
 * HELP in 0.0.4 leaves " as it is. */
static void put_escaped(FILE *f, const char *v, bool quote)
{
	for (; *v; v++) {
		if (*v == '\\')
			fputs("\\\\", f);
		else if (*v == '\n')
			fputs("\\n", f);
		else if (*v == '"' && quote)
			fputs("\\\"", f);
		else
			fputc(*v, f);
	}
}

/* # TYPE, # UNIT, # HELP of a family. A counter family's name in 0.0.4
 * carries the _total its samples have. */
static void family(struct om *o, const char *name, const char *type, const char *unit,
		   const char *help)
{
	bool counter = !strcmp(type, "counter");
	const char *sfx = counter && !o->om ? "_total" : "";
	fprintf(o->f, "# TYPE %s%s %s\n", name, sfx, type);
	if (o->om && unit)
		fprintf(o->f, "# UNIT %s %s\n", name, unit);
	fprintf(o->f, "# HELP %s%s ", name, sfx);
	put_escaped(o->f, help, o->om);
	fputc('\n', o->f);
}

/* name{pid="..",comm=".."[,extra]} — extra is "k=\"v\"" pairs of ours. */
static void sample_start(struct om *o, const char *name, const char *suffix,
			 const struct snap *s, const char *extra)
{
	fprintf(o->f, "%s%s{pid=\"%d\"", name, suffix, s->pid);
	if (s->comm[0]) {
		fputs(",comm=\"", o->f);
		put_escaped(o->f, s->comm, true);
		fputc('"', o->f);
	}
	if (extra && *extra)
		fprintf(o->f, ",%s", extra);
	fputs("} ", o->f);
}

static void sample_u64(struct om *o, const char *name, const char *suffix,
		       const struct snap *s, const char *extra, uint64_t v)
{
	sample_start(o, name, suffix, s, extra);
	fprintf(o->f, "%" PRIu64 "\n", v);
}

static void sample_dbl(struct om *o, const char *name, const struct snap *s, double v)
{
	sample_start(o, name, "", s, NULL);
	fprintf(o->f, "%.3f\n", v);
}

/* ---- the gauges ---- */

enum scale { RAW, NS_TO_S, MS_TO_S, PERMILLE };

struct gauge {
	const char *name; /* without the spbmalloc_ prefix */
	size_t off;       /* in struct spb_stats_gauges, or ~0: header field */
	bool u32;
	enum scale scale;
	const char *type, *unit, *help;
};

#define GF(f) offsetof(struct spb_stats_gauges, f), sizeof(((struct spb_stats_gauges *)0)->f) == 4
static const struct gauge gauges[] = {
	{"publish_time_seconds", GF(publish_realtime_ns), NS_TO_S, "gauge", "seconds",
	 "when the process wrote the snapshot these figures come from (Unix time)"},
	{"publishes", GF(publish_count), RAW, "counter", NULL,
	 "snapshots the process has published into its stats segment"},
	{"live_bytes", GF(live_bytes), RAW, "gauge", "bytes",
	 "bytes allocated and not freed (malloc_alloc_bytes - malloc_free_bytes)"},
	{"peak_live_bytes", GF(peak_live_bytes), RAW, "gauge", "bytes",
	 "highest live_bytes seen by a snapshot"},
	{"reserved_bytes", GF(reserved_bytes), RAW, "gauge", "bytes",
	 "address space reserved: superpageblocks and large mappings"},
	{"mapped_bytes", GF(mapped_bytes), RAW, "gauge", "bytes",
	 "memory backed: pageblocks with memory behind them and large mappings"},
	{"large_bytes", GF(large_bytes), RAW, "gauge", "bytes",
	 "dedicated mappings for objects over 1 GiB"},
	{"rss_bytes", GF(rss_bytes), RAW, "gauge", "bytes",
	 "resident set size of the process (smaps_rollup Rss)"},
	{"anon_bytes", GF(anon_bytes), RAW, "gauge", "bytes",
	 "anonymous memory of the process (smaps_rollup Anonymous)"},
	{"anon_huge_bytes", GF(anon_huge_bytes), RAW, "gauge", "bytes",
	 "anonymous memory on huge pages (smaps_rollup AnonHugePages)"},
	{"huge_page_coverage_ratio", GF(huge_permille), PERMILLE, "gauge", "ratio",
	 "anon_huge_bytes / anon_bytes: the share of anonymous memory on huge pages"},
	{"next_decay_seconds", GF(next_decay_ms), MS_TO_S, "gauge", "seconds",
	 "time until the next release of free memory is due (absent: none due)"},
	{"zones", GF(nr_zones), RAW, "gauge", NULL, "zones (NUMA nodes) of the allocator"},
	{"superpageblocks", GF(nr_spbs), RAW, "gauge", NULL,
	 "superpageblocks (1 GiB reservations)"},
	{"superpageblocks_in_map", GF(nr_spbs_mapped), RAW, "gauge", NULL,
	 "superpageblocks described in the segment's map"},
	{"tainted_free_pageblocks", GF(tainted_free_pb), RAW, "gauge", NULL,
	 "free pageblocks in tainted superpageblocks"},
	{"tainted_reserve_pageblocks", GF(tainted_reserve), RAW, "gauge", NULL,
	 "reserve of free pageblocks kept in tainted superpageblocks"},
};
#define NR_GAUGES (sizeof gauges / sizeof gauges[0])

static void emit_gauge(struct om *o, const struct gauge *g)
{
	char name[96];
	snprintf(name, sizeof name, "spbmalloc_%s", g->name);
	family(o, name, g->type, g->unit, g->help);
	bool counter = !strcmp(g->type, "counter");
	for (size_t i = 0; i < o->n; i++) {
		const struct snap *s = &o->s[i];
		uint64_t v = spbstat_gauge_at(&s->g, g->off, g->u32);
		switch (g->scale) {
		case RAW:
			sample_u64(o, name, counter ? "_total" : "", s, NULL, v);
			break;
		case NS_TO_S:
			sample_dbl(o, name, s, (double)v / 1e9);
			break;
		case MS_TO_S:
			if (v != UINT64_MAX) /* nothing due: no sample */
				sample_dbl(o, name, s, (double)v / 1e3);
			break;
		case PERMILLE:
			sample_dbl(o, name, s, (double)v / 1e3);
			break;
		}
	}
}

/* The labelled families: one sample per process and label value. */
static void emit_labelled(struct om *o)
{
	static const char *const fullness[SPB_STATS_NR_FULLNESS] = {
		"0-25%", "25-50%", "50-75%", "75-100%"};
	char lab[128];
	const char *n;

	n = "spbmalloc_start_time_seconds";
	family(o, n, "gauge", "seconds", "when the process made its stats segment (Unix time)");
	for (size_t i = 0; i < o->n; i++)
		sample_dbl(o, n, &o->s[i], (double)o->s[i].hdr.start_realtime_ns / 1e9);
	n = "spbmalloc_publish_interval_seconds";
	family(o, n, "gauge", "seconds", "period of the process's background publisher");
	for (size_t i = 0; i < o->n; i++)
		sample_dbl(o, n, &o->s[i], o->s[i].hdr.publish_interval_ms / 1e3);
	n = "spbmalloc_rung_enabled";
	family(o, n, "gauge", NULL, "1 if the settings allow this backing rung");
	for (size_t i = 0; i < o->n; i++)
		for (int r = 1; r < SPB_STATS_NR_RUNGS; r++) {
			snprintf(lab, sizeof lab, "rung=\"%s\"", rung_names[r]);
			sample_u64(o, n, "", &o->s[i], lab, (o->s[i].hdr.rungs_enabled >> r) & 1);
		}

	n = "spbmalloc_superpageblocks_by_category";
	family(o, n, "gauge", NULL, "superpageblocks by category (empty, clean, tainted)");
	for (size_t i = 0; i < o->n; i++)
		for (int c = 0; c < SPB_STATS_NR_CATS; c++) {
			snprintf(lab, sizeof lab, "category=\"%s\"", cat_names[c]);
			sample_u64(o, n, "", &o->s[i], lab, o->s[i].g.spbs_by_cat[c]);
		}
	n = "spbmalloc_superpageblocks_by_fullness";
	family(o, n, "gauge", NULL, "superpageblocks by category and share of pages in use");
	for (size_t i = 0; i < o->n; i++)
		for (int c = 0; c < SPB_STATS_NR_CATS; c++)
			for (int f = 0; f < SPB_STATS_NR_FULLNESS; f++) {
				snprintf(lab, sizeof lab, "category=\"%s\",fullness=\"%s\"",
					 cat_names[c], fullness[f]);
				sample_u64(o, n, "", &o->s[i], lab, o->s[i].g.spbs_by_cat_full[c][f]);
			}
	n = "spbmalloc_pageblocks";
	family(o, n, "gauge", NULL,
	       "pageblocks (2 MiB) by lifetime class, free, or busy being released");
	for (size_t i = 0; i < o->n; i++)
		for (int r = 0; r < SPB_STATS_NR_ROWS; r++) {
			snprintf(lab, sizeof lab, "class=\"%s\"", class_row_names[r]);
			sample_u64(o, n, "", &o->s[i], lab, o->s[i].g.pb_by_class[r]);
		}
	n = "spbmalloc_pageblocks_by_rung";
	family(o, n, "gauge", NULL, "pageblocks by backing rung (none: no memory behind)");
	for (size_t i = 0; i < o->n; i++)
		for (int r = 0; r < SPB_STATS_NR_RUNGS; r++) {
			snprintf(lab, sizeof lab, "rung=\"%s\"", rung_names[r]);
			sample_u64(o, n, "", &o->s[i], lab, o->s[i].g.pb_by_rung[r]);
		}
	n = "spbmalloc_backed_bytes";
	family(o, n, "gauge", "bytes", "memory behind pageblocks, by class and backing rung");
	for (size_t i = 0; i < o->n; i++)
		for (int r = 0; r < SPB_STATS_NR_ROWS; r++)
			for (int k = 1; k < SPB_STATS_NR_RUNGS; k++) {
				snprintf(lab, sizeof lab, "class=\"%s\",rung=\"%s\"",
					 class_row_names[r], rung_names[k]);
				sample_u64(o, n, "", &o->s[i], lab,
					   o->s[i].g.bytes_by_class_rung[r][k]);
			}
}

/* ---- the counters ---- */

static const struct {
	const char *name, *help;
} known[] = {
#define SPB_COUNTER(e, name, help) {name, help},
#include "spbmalloc_counters.def"
#undef SPB_COUNTER
};

static const char *counter_help(const char *name)
{
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (!strcmp(known[i].name, name))
			return known[i].help;
	return name; /* a newer library's counter: its name is all we have */
}

static bool ends_with(const char *s, const char *sfx)
{
	size_t a = strlen(s), b = strlen(sfx);
	return a >= b && !strcmp(s + a - b, sfx);
}

/* Index of counter name in s, or -1; i is the likely index (the order is
 * the same in every process of one library version). */
static int counter_index(const struct snap *s, const char *name, uint32_t i)
{
	if (i < s->nr_counters && !strcmp(s->names[i], name))
		return (int)i;
	for (uint32_t j = 0; j < s->nr_counters; j++)
		if (!strcmp(s->names[j], name))
			return (int)j;
	return -1;
}

/* The family name of a counter. One in ms, us or ns is exported in
 * seconds, as Prometheus wants base units (compact_cpu_us ->
 * spbmalloc_compact_cpu_seconds_total); returns the decimals of a second
 * its value has, 0 for a counter exported as it is. */
static int time_digits(const char *name, char *out, size_t cap)
{
	static const struct {
		const char *sfx;
		int digits; /* decimals of a second */
	} t[] = {{"_ms", 3}, {"_us", 6}, {"_ns", 9}};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (ends_with(name, t[i].sfx)) {
			snprintf(out, cap, "spbmalloc_%.*s_seconds",
				 (int)(strlen(name) - strlen(t[i].sfx)), name);
			return t[i].digits;
		}
	/* a name that ends in _total already: the family is named without it,
	 * its samples as the segment names it */
	size_t len = strlen(name);
	if (ends_with(name, "_total"))
		len -= strlen("_total");
	snprintf(out, cap, "spbmalloc_%.*s", (int)len, name);
	return 0;
}

/* Every counter name any process has, once, in the order first seen. */
static void emit_counters(struct om *o)
{
	size_t cap = 0, nr = 0;
	const char **names = NULL;
	for (size_t i = 0; i < o->n; i++)
		cap += o->s[i].nr_counters;
	names = calloc(cap + 1, sizeof *names);
	if (!names)
		return;
	for (size_t i = 0; i < o->n; i++)
		for (uint32_t c = 0; c < o->s[i].nr_counters; c++) {
			const char *nm = o->s[i].names[c];
			bool seen = false;
			if (!*nm)
				continue;
			for (size_t k = 0; k < nr && !seen; k++)
				seen = !strcmp(names[k], nm);
			if (!seen)
				names[nr++] = nm;
		}
	for (size_t k = 0; k < nr; k++) {
		char name[96], help[320];
		int scale = time_digits(names[k], name, sizeof name);
		if (scale)
			snprintf(help, sizeof help, "%s (the segment's %s, in seconds)",
				 counter_help(names[k]), names[k]);
		family(o, name, "counter",
		       scale ? "seconds" : ends_with(name, "_bytes") ? "bytes" : NULL,
		       scale ? help : counter_help(names[k]));
		for (size_t i = 0; i < o->n; i++) {
			const struct snap *s = &o->s[i];
			int c = counter_index(s, names[k], (uint32_t)k);
			if (c < 0)
				continue;
			if (!scale) {
				sample_u64(o, name, "_total", s, NULL, s->counters[c]);
				continue;
			}
			/* exact: integer seconds, then the fraction's digits */
			uint64_t div = scale == 3 ? 1000 : scale == 6 ? 1000000 : 1000000000;
			sample_start(o, name, "_total", s, NULL);
			fprintf(o->f, "%" PRIu64 ".%0*" PRIu64 "\n", s->counters[c] / div, scale,
				s->counters[c] % div);
		}
	}
	free(names);
}

void om_write(FILE *f, bool openmetrics, const struct snap *snaps, size_t n,
	      const struct om_scrape *sc)
{
	struct om o = {.f = f, .om = openmetrics, .s = snaps, .n = n};
	for (size_t i = 0; i < NR_GAUGES; i++)
		emit_gauge(&o, &gauges[i]);
	emit_labelled(&o);
	emit_counters(&o);
	if (sc) {
		static const char *const what[OM_NR_OUTCOMES] = {
			"read", "stale", "refused", "garbled", "inconsistent", "error"};
		const char *nm = "spbstat_segments";
		family(&o, nm, "gauge", NULL,
		       "stats segments this scrape found, by outcome (read: exported; stale: "
		       "the process is gone)");
		for (int k = 0; k < OM_NR_OUTCOMES; k++)
			fprintf(f, "%s{outcome=\"%s\"} %u\n", nm, what[k], sc->segments[k]);
		nm = "spbstat_scrape_duration_seconds";
		family(&o, nm, "gauge", "seconds", "time spbstat took to read the segments");
		fprintf(f, "%s %.6f\n", nm, sc->duration_s);
	}
	if (openmetrics)
		fputs("# EOF\n", f);
}
