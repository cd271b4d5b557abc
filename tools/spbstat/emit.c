/*
 * emit.c — the one emitter (in the manner of jemalloc's emitter.h): a
 * single walk over the snapshot's fields (emit_snapshot) drives three
 * back ends — indented text, JSON, OpenMetrics — so a value has one name
 * and cannot disagree between them. The gauges are a table (name, offset,
 * help); the counters come with their names from the segment itself.
 */
#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include "spbstat.h"

const char *const class_row_names[SPB_STATS_NR_ROWS] = {
	"movable", "unmovable", "reclaimable", "secret", "free", "busy",
};
const char *const rung_names[SPB_STATS_NR_RUNGS] = {
	"none", "hugetlb_1g", "hugetlb_2m", "thp", "4k",
};
const char *const cat_names[SPB_STATS_NR_CATS] = {"empty", "clean", "tainted"};

char pb_class_char(uint8_t cls)
{
	static const char c[SPB_STATS_NR_CLASSES] = {'M', 'U', 'R', 'S'};
	if (cls < SPB_STATS_NR_CLASSES)
		return c[cls];
	return cls == SPB_STATS_PB_FREE ? '.' : cls == SPB_STATS_PB_BUSY ? 'b' : '?';
}

char pb_rung_char(uint8_t rung)
{
	static const char c[SPB_STATS_NR_RUNGS] = {'-', 'G', 'H', 'T', '4'};
	return rung < SPB_STATS_NR_RUNGS ? c[rung] : '?';
}

void fmt_bytes(char *buf, size_t cap, uint64_t b)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)b;
	int u = 0;
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, cap, "%" PRIu64 " B", b);
	else
		snprintf(buf, cap, "%.1f %s", v, units[u]);
}

/* ---- the emitter ---- */

#define EM_DEPTH 8
struct emitter {
	FILE *f;
	enum emit_fmt fmt;
	int depth;
	bool first[EM_DEPTH];
	bool array[EM_DEPTH];   /* this level is an array */
	const char *path[EM_DEPTH];
	int pid;
};

static void json_sep(struct emitter *e)
{
	if (!e->first[e->depth])
		fputc(',', e->f);
	e->first[e->depth] = false;
	fprintf(e->f, "\n%*s", 2 * e->depth, "");
}

static void json_key(struct emitter *e, const char *name)
{
	json_sep(e);
	if (name && !e->array[e->depth])
		fprintf(e->f, "\"%s\": ", name);
}

static bool om_skip(const struct emitter *e)
{
	for (int d = 1; d <= e->depth; d++)
		if (e->array[d])
			return true; /* the per-SPB map is not a metric */
	return false;
}

static void om_name(struct emitter *e, const char *name)
{
	fputs("spbmalloc", e->f);
	for (int d = 1; d <= e->depth; d++)
		if (e->path[d])
			fprintf(e->f, "_%s", e->path[d]);
	fprintf(e->f, "_%s", name);
}

static void em_push(struct emitter *e, const char *name, bool array)
{
	switch (e->fmt) {
	case EMIT_JSON:
		json_key(e, name);
		fputc(array ? '[' : '{', e->f);
		break;
	case EMIT_TEXT:
		fprintf(e->f, "%*s%s:\n", 2 * e->depth, "", name ? name : "-");
		break;
	case EMIT_OPENMETRICS:
		break;
	}
	e->depth++;
	e->first[e->depth] = true;
	e->array[e->depth] = array;
	e->path[e->depth] = name;
}

static void em_pop(struct emitter *e)
{
	bool array = e->array[e->depth];
	bool empty = e->first[e->depth];
	e->depth--;
	if (e->fmt == EMIT_JSON) {
		if (!empty)
			fprintf(e->f, "\n%*s", 2 * e->depth, "");
		fputc(array ? ']' : '}', e->f);
	}
}

static void em_u64(struct emitter *e, const char *name, uint64_t v, const char *help,
		   bool counter)
{
	switch (e->fmt) {
	case EMIT_JSON:
		json_key(e, name);
		fprintf(e->f, "%" PRIu64, v);
		break;
	case EMIT_TEXT:
		fprintf(e->f, "%*s%-28s %" PRIu64 "\n", 2 * e->depth, "",
			name ? name : "-", v);
		break;
	case EMIT_OPENMETRICS:
		if (om_skip(e))
			break;
		fputs("# TYPE ", e->f);
		om_name(e, name);
		fprintf(e->f, " %s\n# HELP ", counter ? "counter" : "gauge");
		om_name(e, name);
		fprintf(e->f, " %s\n", help ? help : name);
		om_name(e, name);
		fprintf(e->f, "%s{pid=\"%d\"} %" PRIu64 "\n", counter ? "_total" : "", e->pid, v);
		break;
	}
}

/* Strings here are ours (names, hex, map characters): no escaping needed
 * beyond what the segment reader already sanitised. */
static void em_str(struct emitter *e, const char *name, const char *v)
{
	switch (e->fmt) {
	case EMIT_JSON:
		json_key(e, name);
		fprintf(e->f, "\"%s\"", v);
		break;
	case EMIT_TEXT:
		fprintf(e->f, "%*s%-28s %s\n", 2 * e->depth, "", name, v);
		break;
	case EMIT_OPENMETRICS:
		break;
	}
}

/* ---- the fields ---- */

struct gauge_field {
	const char *name;
	size_t off;
	bool u32;
	const char *help;
};

#define G64(f, h) {#f, offsetof(struct spb_stats_gauges, f), false, h}
#define G32(f, h) {#f, offsetof(struct spb_stats_gauges, f), true, h}
static const struct gauge_field gauge_fields[] = {
	G64(publish_count, "snapshots the process has published"),
	G64(live_bytes, "bytes allocated and not freed (malloc layer)"),
	G64(peak_live_bytes, "highest live_bytes seen by a snapshot"),
	G64(reserved_bytes, "address space reserved: SPBs and large mappings"),
	G64(mapped_bytes, "memory behind pageblocks and large mappings"),
	G64(large_bytes, "dedicated mappings for objects over 1 GiB"),
	G64(rss_bytes, "resident set size (smaps_rollup Rss)"),
	G64(anon_bytes, "anonymous memory (smaps_rollup Anonymous)"),
	G64(anon_huge_bytes, "anonymous memory on huge pages (AnonHugePages)"),
	G32(huge_permille, "anon_huge_bytes per thousand anon_bytes"),
	G32(nr_zones, "zones (NUMA nodes)"),
	G32(nr_spbs, "superpageblocks"),
	G32(nr_spbs_mapped, "superpageblocks in the map"),
	G32(tainted_free_pb, "free pageblocks in tainted SPBs"),
	G32(tainted_reserve, "reserve of free pageblocks kept in tainted SPBs"),
};

static void emit_gauges(struct emitter *e, const struct snap *s)
{
	const struct spb_stats_gauges *g = &s->g;
	em_push(e, "gauges", false);
	for (size_t i = 0; i < sizeof gauge_fields / sizeof gauge_fields[0]; i++)
		em_u64(e, gauge_fields[i].name, spbstat_gauge_at(g, gauge_fields[i].off, gauge_fields[i].u32),
		       gauge_fields[i].help, false);
	em_push(e, "spbs_by_category", false);
	for (int c = 0; c < SPB_STATS_NR_CATS; c++)
		em_u64(e, cat_names[c], g->spbs_by_cat[c], "superpageblocks in this category",
		       false);
	em_pop(e);
	em_push(e, "pageblocks_by_class", false);
	for (int r = 0; r < SPB_STATS_NR_ROWS; r++)
		em_u64(e, class_row_names[r], g->pb_by_class[r], "pageblocks of this class",
		       false);
	em_pop(e);
	em_push(e, "pageblocks_by_rung", false);
	for (int r = 0; r < SPB_STATS_NR_RUNGS; r++)
		em_u64(e, rung_names[r], g->pb_by_rung[r], "pageblocks on this backing rung",
		       false);
	em_pop(e);
	em_push(e, "backed_bytes", false);
	for (int r = 0; r < SPB_STATS_NR_ROWS; r++) {
		em_push(e, class_row_names[r], false);
		for (int k = 1; k < SPB_STATS_NR_RUNGS; k++)
			em_u64(e, rung_names[k], g->bytes_by_class_rung[r][k],
			       "memory behind pageblocks of this class on this rung", false);
		em_pop(e);
	}
	em_pop(e);
	em_pop(e);
}

static const char *const topo_sources[] = {"none", "sysfs", "hwloc"};
static const char *const policy_names[] = {"default", "preferred", "bind", "interleave",
					   "local", "preferred-many", "weighted-interleave"};

static void size_short(char *buf, size_t cap, uint64_t v)
{
	if (v && v % (1u << 20) == 0)
		snprintf(buf, cap, "%lluM", (unsigned long long)(v >> 20));
	else if (v && v % 1024 == 0)
		snprintf(buf, cap, "%lluK", (unsigned long long)(v >> 10));
	else
		snprintf(buf, cap, "%llu", (unsigned long long)v);
}

const char *topo_policy_name(int32_t mode)
{
	if (mode < 0)
		return "unknown";
	return (size_t)mode < sizeof policy_names / sizeof policy_names[0] ? policy_names[mode] : "?";
}

void topo_summary(char *buf, size_t cap, const struct spb_stats_topo *t, uint32_t nr_zones)
{
	char l1[24], l2[24], l3[24];
	size_short(l1, sizeof l1, t->cache_l1d);
	size_short(l2, sizeof l2, t->cache_l2);
	size_short(l3, sizeof l3, t->cache_l3);
	snprintf(buf, cap,
		 "%s%s: %u packages, %u nodes, %u cores, %u PUs; L1d %s L2 %s L3 %s; "
		 "zones %u; policy %s",
		 t->source < 3 ? topo_sources[t->source] : "?", t->synthetic ? " (synthetic)" : "",
		 t->nr_packages, t->nr_nodes, t->nr_cores, t->nr_pus, l1, l2, l3, nr_zones,
		 topo_policy_name(t->mem_policy));
}

static void emit_topology(struct emitter *e, const struct snap *s)
{
	const struct spb_stats_topo *t = &s->g.topo;
	char line[256];
	em_push(e, "topology", false);
	topo_summary(line, sizeof line, t, s->g.nr_zones);
	em_str(e, "summary", line);
	em_str(e, "source", t->source < 3 ? topo_sources[t->source] : "?");
	em_u64(e, "synthetic", t->synthetic, "hwloc read HWLOC_SYNTHETIC or HWLOC_XMLFILE", false);
	em_u64(e, "nodes", t->nr_nodes, "NUMA nodes", false);
	em_u64(e, "packages", t->nr_packages, "packages (0: unknown)", false);
	em_u64(e, "cores", t->nr_cores, "cores (0: unknown)", false);
	em_u64(e, "pus", t->nr_pus, "logical CPUs", false);
	em_u64(e, "cache_line", t->cache_line, "cache line bytes", false);
	em_u64(e, "cache_l1d_bytes", t->cache_l1d, "L1 data cache bytes (one instance)", false);
	em_u64(e, "cache_l2_bytes", t->cache_l2, "L2 cache bytes (one instance)", false);
	em_u64(e, "cache_l3_bytes", t->cache_l3, "L3 cache bytes (one instance)", false);
	em_str(e, "mem_policy", topo_policy_name(t->mem_policy));
	unsigned n = t->nr_nodes < SPB_STATS_TOPO_NODES ? t->nr_nodes : SPB_STATS_TOPO_NODES;
	if (e->fmt == EMIT_TEXT) { /* a row per node */
		for (unsigned i = 0; i < n; i++) {
			char key[32], row[8 * SPB_STATS_TOPO_NODES + 32];
			size_t len = (size_t)snprintf(row, sizeof row, "mem %llu MiB, distances",
						      (unsigned long long)(t->node_mem[i] >> 20));
			for (unsigned j = 0; j < n && len < sizeof row; j++)
				len += (size_t)snprintf(row + len, sizeof row - len, " %u", t->dist[i][j]);
			snprintf(key, sizeof key, "node%u", i);
			em_str(e, key, row);
		}
	} else if (e->fmt == EMIT_JSON) {
		em_push(e, "node_mem_bytes", true);
		for (unsigned i = 0; i < n; i++)
			em_u64(e, NULL, t->node_mem[i], NULL, false);
		em_pop(e);
		em_push(e, "distances", true);
		for (unsigned i = 0; i < n; i++) {
			em_push(e, NULL, true);
			for (unsigned j = 0; j < n; j++)
				em_u64(e, NULL, t->dist[i][j], NULL, false);
			em_pop(e);
		}
		em_pop(e);
	}
	em_pop(e);
}

static void emit_spb(struct emitter *e, const struct spb_stats_spb *r)
{
	char hex[24], cls[SPB_STATS_PB_PER_SPB + 1], rung[SPB_STATS_PB_PER_SPB + 1];
	uint64_t count[SPB_STATS_NR_ROWS] = {0};
	for (int i = 0; i < SPB_STATS_PB_PER_SPB; i++) {
		cls[i] = pb_class_char(r->pb_cls[i]);
		rung[i] = pb_rung_char(r->pb_rung[i]);
		uint8_t c = r->pb_cls[i];
		count[c < SPB_STATS_NR_CLASSES ? c
		      : c == SPB_STATS_PB_FREE ? SPB_STATS_ROW_FREE : SPB_STATS_ROW_BUSY]++;
	}
	cls[SPB_STATS_PB_PER_SPB] = rung[SPB_STATS_PB_PER_SPB] = 0;
	snprintf(hex, sizeof hex, "0x%" PRIx64, r->base);
	em_push(e, NULL, false);
	em_str(e, "base", hex);
	em_u64(e, "zone", r->zone, NULL, false);
	em_str(e, "category", r->category < SPB_STATS_NR_CATS ? cat_names[r->category] : "?");
	em_u64(e, "fullness", r->fullness, NULL, false);
	em_str(e, "rung", r->rung < SPB_STATS_NR_RUNGS ? rung_names[r->rung] : "?");
	em_u64(e, "used_pages", r->nr_used_pages, NULL, false);
	em_u64(e, "free_pageblocks", r->nr_free_pb, NULL, false);
	em_push(e, "pageblocks_by_class", false);
	for (int k = 0; k < SPB_STATS_NR_ROWS; k++)
		em_u64(e, class_row_names[k], count[k], NULL, false);
	em_pop(e);
	em_str(e, "pb_class", cls);
	em_str(e, "pb_rung", rung);
	em_push(e, "pb_used_pages", true);
	for (int i = 0; i < SPB_STATS_PB_PER_SPB; i++)
		em_u64(e, NULL, r->pb_used[i], NULL, false);
	em_pop(e);
	em_pop(e);
}

void emit_snapshot(FILE *f, enum emit_fmt fmt, const struct snap *s)
{
	struct emitter e = {.f = f, .fmt = fmt, .pid = s->pid};
	e.first[0] = true;
	if (fmt == EMIT_JSON)
		fputc('{', f);
	em_u64(&e, "pid", (uint64_t)s->pid, "process id", false);
	em_str(&e, "command", s->comm);
	em_u64(&e, "alive", s->alive, "the process still runs", false);
	em_u64(&e, "layout_version", s->hdr.version, "segment layout version", false);
	em_u64(&e, "uptime_ms", (uint64_t)(s->uptime_s * 1000), "ms since the segment was made",
	       false);
	em_u64(&e, "publish_interval_ms", s->hdr.publish_interval_ms, NULL, false);
	em_u64(&e, "rungs_enabled", s->hdr.rungs_enabled, "bit per backing rung allowed", false);
	emit_gauges(&e, s);
	emit_topology(&e, s);
	em_push(&e, "counters", false);
	for (uint32_t i = 0; i < s->nr_counters; i++)
		em_u64(&e, s->names[i], s->counters[i], s->names[i], true);
	em_pop(&e);
	em_push(&e, "spbs", true);
	for (uint32_t i = 0; i < s->nr_spbs; i++)
		emit_spb(&e, &s->spbs[i]);
	em_pop(&e);
	if (fmt == EMIT_JSON)
		fputs("\n}\n", f);
	if (fmt == EMIT_OPENMETRICS)
		fputs("# EOF\n", f);
}
