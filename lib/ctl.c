/*
 * ctl.c — run-time control: spb_ctl(), in the manner of jemalloc's
 * mallctl, over the names ctl.def declares (settings, engine figures,
 * actions) and "stats.<counter>" for every counter, and the checks of a
 * request spbstat leaves in the stats segment's control slot.
 *
 * A name is looked up, the sizes and the value checked, and only then is
 * anything read, written or run: a refusal (ENOENT, EINVAL, EPERM) changes
 * nothing, prints one warning line (error.c: write(2), no allocation) and
 * is counted. A write is an atomic store into spb__options[] (options.c);
 * every reader of a writable setting reads it where it uses it.
 * May call: options, counters, the public spb_* calls, statseg, bgthread,
 * the heaps (thread.flush), compactd (a wake).
 */
#include <errno.h>
#include <string.h>

#include "engine.h"
#include "handle.h"
#include "heap.h"
#include "spbmalloc.h"
#include "spbmalloc_stats.h"

#define SPB_EXPORT __attribute__((visibility("default")))
#define CTL_VALUE_SIZE sizeof(uint64_t)
_Static_assert(sizeof(long) == CTL_VALUE_SIZE, "spb_ctl values are 8 bytes");

static const struct {
	long lo, hi;
} opt_range[SPB_NR_OPTIONS] = {
#define SPB_OPTION(e, env, def, lo, hi, desc) [e] = {lo, hi},
#include "options.def"
#undef SPB_OPTION
};

#define SPB_CTL_FIG(e, name, meaning)
#define SPB_CTL_ACT(e, name, meaning)
static const struct ctl_opt {
	enum spb_option opt;
	const char *name;
	bool writable;
} ctl_opts[] = {
#define SPB_CTL_OPT(o, name, w, why) {o, name, w},
#include "ctl.def"
#undef SPB_CTL_OPT
};
#undef SPB_CTL_FIG
#undef SPB_CTL_ACT
#define NR_OPTS (sizeof ctl_opts / sizeof ctl_opts[0])
_Static_assert(NR_OPTS == SPB_NR_OPTIONS, "ctl.def: one SPB_CTL_OPT line per option");

#define SPB_CTL_OPT(o, name, w, why)
enum ctl_fig {
#define SPB_CTL_FIG(e, name, meaning) e,
#define SPB_CTL_ACT(e, name, meaning)
#include "ctl.def"
#undef SPB_CTL_FIG
#undef SPB_CTL_ACT
	CTL_NR_FIGS
};
static const char *const fig_names[CTL_NR_FIGS] = {
#define SPB_CTL_FIG(e, name, meaning) [e] = name,
#define SPB_CTL_ACT(e, name, meaning)
#include "ctl.def"
#undef SPB_CTL_FIG
#undef SPB_CTL_ACT
};
enum ctl_act {
#define SPB_CTL_FIG(e, name, meaning)
#define SPB_CTL_ACT(e, name, meaning) e,
#include "ctl.def"
#undef SPB_CTL_FIG
#undef SPB_CTL_ACT
	CTL_NR_ACTS
};
static const char *const act_names[CTL_NR_ACTS] = {
#define SPB_CTL_FIG(e, name, meaning)
#define SPB_CTL_ACT(e, name, meaning) [e] = name,
#include "ctl.def"
#undef SPB_CTL_FIG
#undef SPB_CTL_ACT
};
#undef SPB_CTL_OPT

enum ctl_kind { K_OPT, K_COUNTER, K_FIG, K_ACT };
struct ctl_ref {
	enum ctl_kind kind;
	unsigned idx;
};

#define STATS_PREFIX "stats."

/* "stats.<name>" of every counter, made by the compiler. */
static const char *const stats_names[SPB_NR_COUNTERS] = {
#define SPB_COUNTER(e, name, desc) [e] = STATS_PREFIX name,
#include "spbmalloc_counters.def"
#undef SPB_COUNTER
};

static bool lookup(const char *name, struct ctl_ref *r)
{
	for (unsigned i = 0; i < CTL_NR_ACTS; i++)
		if (!strcmp(name, act_names[i])) {
			*r = (struct ctl_ref){K_ACT, i};
			return true;
		}
	for (unsigned i = 0; i < NR_OPTS; i++)
		if (!strcmp(name, ctl_opts[i].name)) {
			*r = (struct ctl_ref){K_OPT, i};
			return true;
		}
	for (unsigned i = 0; i < CTL_NR_FIGS; i++)
		if (!strcmp(name, fig_names[i])) {
			*r = (struct ctl_ref){K_FIG, i};
			return true;
		}
	if (!strncmp(name, STATS_PREFIX, sizeof STATS_PREFIX - 1))
		for (unsigned i = 0; i < SPB_NR_COUNTERS; i++)
			if (!strcmp(name, stats_names[i])) {
				*r = (struct ctl_ref){K_COUNTER, i};
				return true;
			}
	return false;
}

/* A name fit for a warning line: printable, at most 63 bytes. */
static void safe_name(char *out, size_t cap, const char *name)
{
	size_t n = 0;
	if (!name)
		name = "(null)";
	for (; name[n] && n + 1 < cap; n++) {
		unsigned char ch = (unsigned char)name[n];
		out[n] = ch > 32 && ch < 127 ? (char)ch : '?';
	}
	out[n] = 0;
}

static size_t fmt_long(char *buf, long v)
{
	if (v >= 0)
		return spb__fmt_u64(buf, (uint64_t)v);
	buf[0] = '-';
	return 1 + spb__fmt_u64(buf + 1, -(uint64_t)v);
}

static const char *errno_name(int e)
{
	switch (e) {
	case ENOENT: return "ENOENT";
	case EINVAL: return "EINVAL";
	case EPERM: return "EPERM";
	case EPROTO: return "EPROTO";
	case EDEADLK: return "EDEADLK";
	default: return "error";
	}
}

/* One warning line, counted; -1 with errno e. */
static int refuse_why(const char *who, const char *name, int e, const char *why)
{
	char nm[64], line[256];
	safe_name(nm, sizeof nm, name);
	size_t n = spb__fmt_str(line, 0, sizeof line, why);
	n = spb__fmt_str(line, n, sizeof line, " (");
	n = spb__fmt_str(line, n, sizeof line, errno_name(e));
	n = spb__fmt_str(line, n, sizeof line, "): nothing changed");
	line[n < sizeof line ? n : sizeof line - 1] = 0;
	spb__warn(who, nm, line);
	spb__counter_add(CTL_REFUSED, 1);
	errno = e;
	return -1;
}

static int refuse(const char *name, int e, const char *why)
{
	return refuse_why("spb_ctl", name, e, why);
}

static uint64_t figure(enum ctl_fig f)
{
	if (f == CTL_FIG_RUN_CACHE_BYTES)
		return spb__runcache_cap(); /* no snapshot needed */
	struct spb_stats_gauges g;
	uint64_t counters[SPB_NR_COUNTERS];
	spb__stats_collect(&g, counters, NULL, 0);
	switch (f) {
	case CTL_FIG_ZONES: return g.nr_zones;
	case CTL_FIG_SPBS: return g.nr_spbs;
	case CTL_FIG_RESERVED_BYTES: return g.reserved_bytes;
	case CTL_FIG_MAPPED_BYTES: return g.mapped_bytes;
	case CTL_FIG_LIVE_BYTES: return g.live_bytes;
	case CTL_FIG_TAINTED_FREE_PB: return g.tainted_free_pb;
	case CTL_FIG_RSS_BYTES: return g.rss_bytes;
	case CTL_FIG_HUGE_BYTES: return g.anon_huge_bytes;
	case CTL_FIG_RUN_CACHE_BYTES:
	case CTL_NR_FIGS: break;
	}
	return 0;
}

/* The calling thread's cached runs back. */
static uint64_t thread_flush(void)
{
	struct spb_heap *h = spb__tls_primary;
	if (!h)
		return 0;
	void *v[64];
	unsigned n;
	uint64_t total = 0;
	do { /* all: the slots are taken by compare-and-swap alone */
		n = spb__runcache_take(&h->rc, true, v, 64);
		spb__runcache_release(v, n);
		total += n;
	} while (n == 64);
	return total;
}

/* Runs the action; false (errno set) when it could not run. */
static bool run_action(enum ctl_act a, uint64_t *out)
{
	int saved = errno;
	errno = 0;
	switch (a) {
	case CTL_ACT_TRIM: *out = spb_trim(); break;
	case CTL_ACT_COMPACT: *out = spb_compact(0); break;
	case CTL_ACT_SHRINK: *out = spb_shrink(0); break;
	case CTL_ACT_THREAD_FLUSH: *out = thread_flush(); break;
	case CTL_ACT_STATS_PUBLISH:
		spb__statseg_init();
		*out = spb__statseg_ready();
		spb__statseg_publish();
		break;
	case CTL_NR_ACTS: break;
	}
	int e = errno;
	if (*out == 0 && (e == EDEADLK || e == ENOTSUP))
		return false;
	errno = saved;
	return true;
}

/* What a write changes besides the value: the threads that sleep on a
 * deadline computed from the old one are woken. */
static void after_write(enum spb_option o)
{
	switch (o) {
	case OPT_DECAY_MS:
	case OPT_STATS_INTERVAL_MS:
		spb__bg_wake();
		break;
	case OPT_COMPACT_START_PCT:
	case OPT_COMPACT_STOP_PCT:
	case OPT_COMPACT_BUDGET_PCT:
	case OPT_COMPACT_BURST_MS:
	case OPT_COMPACT_INTERVAL_MS:
		spb__compactd_kick();
		break;
	default:
		break;
	}
}

SPB_EXPORT int spb_ctl(const char *name, void *oldp, size_t *oldlenp, const void *newp,
		       size_t newlen)
{
	spb__options_init();
	struct ctl_ref r;
	if (!name || !lookup(name, &r))
		return refuse(name, ENOENT, "is not a spb_ctl name");
	if (oldp && (!oldlenp || *oldlenp != CTL_VALUE_SIZE))
		return refuse(name, EINVAL, "wants *oldlenp == 8");
	if (newp && newlen != CTL_VALUE_SIZE)
		return refuse(name, EINVAL, "wants newlen == 8");
	if (!newp && newlen)
		return refuse(name, EINVAL, "has newlen but no newp");
	uint64_t out = 0;
	switch (r.kind) {
	case K_OPT: {
		const struct ctl_opt *c = &ctl_opts[r.idx];
		if (!newp) {
			out = (uint64_t)spb__opt(c->opt);
			spb__counter_add(CTL_READ, 1);
			break;
		}
		if (!c->writable)
			return refuse(name, EPERM, "is read only (lib/ctl.def says why)");
		long v;
		memcpy(&v, newp, sizeof v);
		long lo = opt_range[c->opt].lo, hi = opt_range[c->opt].hi;
		if (v < lo || v > hi) {
			char why[96];
			size_t n = spb__fmt_str(why, 0, sizeof why, "value ");
			n += fmt_long(why + n, v);
			n = spb__fmt_str(why, n, sizeof why - 48, " is out of ");
			n += fmt_long(why + n, lo);
			why[n++] = '.';
			why[n++] = '.';
			n += fmt_long(why + n, hi);
			why[n] = 0;
			return refuse(name, EINVAL, why);
		}
		out = (uint64_t)__atomic_exchange_n(&spb__options[c->opt], v, __ATOMIC_RELAXED);
		after_write(c->opt);
		spb__counter_add(CTL_WRITE, 1);
		break;
	}
	case K_COUNTER:
	case K_FIG:
		if (newp)
			return refuse(name, EPERM, "is read only");
		out = r.kind == K_COUNTER ? spb__counter_sum((enum spb_counter)r.idx)
					  : figure((enum ctl_fig)r.idx);
		spb__counter_add(CTL_READ, 1);
		break;
	case K_ACT:
		if (newp)
			return refuse(name, EINVAL, "is an action: it takes no value");
		if (!run_action((enum ctl_act)r.idx, &out)) {
			int e = errno;
			return refuse(name, e, "could not run here");
		}
		spb__counter_add(CTL_ACTION, 1);
		break;
	}
	if (oldp)
		memcpy(oldp, &out, sizeof out);
	if (oldlenp)
		*oldlenp = CTL_VALUE_SIZE;
	return 0;
}

SPB_EXPORT size_t spb_ctl_count(void)
{
	return NR_OPTS + CTL_NR_FIGS + CTL_NR_ACTS + SPB_NR_COUNTERS;
}

SPB_EXPORT const char *spb_ctl_name(size_t idx)
{
	if (idx < NR_OPTS)
		return ctl_opts[idx].name;
	idx -= NR_OPTS;
	if (idx < CTL_NR_FIGS)
		return fig_names[idx];
	idx -= CTL_NR_FIGS;
	if (idx < CTL_NR_ACTS)
		return act_names[idx];
	idx -= CTL_NR_ACTS;
	return idx < SPB_NR_COUNTERS ? stats_names[idx] : NULL;
}

SPB_EXPORT int spb_ctl_writable(const char *name)
{
	if (!name)
		return 0;
	for (unsigned i = 0; i < NR_OPTS; i++)
		if (!strcmp(name, ctl_opts[i].name))
			return ctl_opts[i].writable;
	return 0;
}

/* ---- a request from spbstat (statseg.c copied it out of the segment) ---- */

static bool name_chars_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '.' ||
		      *s == '_'))
			return false;
	return true;
}

int spb__ctl_remote(bool seq_ok, const struct spb_stats_ctl *req, int64_t *result)
{
	spb__counter_add(CTL_REMOTE, 1);
	*result = 0;
	int st = 0;
	char name[SPB_STATS_CTL_NAME_LEN];
	memcpy(name, req->name, sizeof name);
	bool terminated = memchr(name, 0, sizeof name) != NULL;
	name[sizeof name - 1] = 0;
	if (!seq_ok) {
		refuse_why("spbstat request", name, EPROTO, "has a wrong sequence number");
		st = EPROTO;
	} else if (!terminated) {
		refuse_why("spbstat request", name, EINVAL, "has no NUL in its name");
		st = EINVAL;
	} else if (!name_chars_ok(name)) {
		refuse_why("spbstat request", name, EINVAL, "has a name outside [a-z0-9._]");
		st = EINVAL;
	} else {
		uint64_t out = 0;
		size_t len = sizeof out;
		long v = (long)req->value;
		struct ctl_ref r;
		int rc;
		switch (req->op) {
		case SPB_STATS_CTL_GET:
			if (lookup(name, &r) && r.kind == K_ACT)
				rc = refuse(name, EINVAL, "is an action, not a value to read");
			else
				rc = spb_ctl(name, &out, &len, NULL, 0);
			break;
		case SPB_STATS_CTL_SET:
			rc = spb_ctl(name, &out, &len, &v, sizeof v);
			break;
		case SPB_STATS_CTL_ACT:
			if (lookup(name, &r) && r.kind != K_ACT)
				rc = refuse(name, EINVAL, "is not an action");
			else
				rc = spb_ctl(name, &out, &len, NULL, 0);
			break;
		default:
			rc = refuse_why("spbstat request", name, EINVAL, "has an unknown operation");
			break;
		}
		if (rc)
			st = errno ? errno : EINVAL;
		*result = (int64_t)out;
	}
	if (st)
		spb__counter_add(CTL_REMOTE_REFUSED, 1);
	return st;
}
