/*
 * top.c — spbstat -t PID: a full-screen live view in plain ANSI, redrawn
 * each second: the gauges, every counter with its rate, and a map of the
 * SPBs, one character per pageblock (or per group of pageblocks when the
 * terminal is narrow), coloured by lifetime class. q quits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "spbstat.h"

static volatile sig_atomic_t stop;
static struct termios saved_tio;
static bool tio_saved;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void term_enter(void)
{
	if (isatty(0) && tcgetattr(0, &saved_tio) == 0) {
		struct termios t = saved_tio;
		t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		t.c_cc[VMIN] = 0;
		t.c_cc[VTIME] = 0;
		tcsetattr(0, TCSANOW, &t);
		tio_saved = true;
	}
	fputs("\033[?1049h\033[?25l", stdout); /* alternate screen, hide cursor */
}

static void term_leave(void)
{
	fputs("\033[0m\033[?25h\033[?1049l", stdout);
	fflush(stdout);
	if (tio_saved)
		tcsetattr(0, TCSANOW, &saved_tio);
}

static void term_size(int *rows, int *cols)
{
	struct winsize ws;
	*rows = 24;
	*cols = 80;
	if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	}
}

static const char *class_color(char c)
{
	switch (c) {
	case 'M': return "\033[42;30m";
	case 'U': return "\033[41;37m";
	case 'R': return "\033[43;30m";
	case 'S': return "\033[45;37m";
	case 'b': return "\033[44;37m";
	default: return "\033[2m";
	}
}

/* A group of pageblocks shows its most telling class: a non-movable
 * class (it taints), else movable, else busy, else free. */
static char group_char(const struct spb_stats_spb *r, int from, int to)
{
	static const char rank[] = "SURMb.";
	int best = (int)sizeof rank - 2;
	for (int i = from; i < to; i++) {
		const char *p = strchr(rank, pb_class_char(r->pb_cls[i]));
		if (p && p - rank < best)
			best = (int)(p - rank);
	}
	return rank[best];
}

static void draw_map(const struct snap *s, int rows, int cols)
{
	int width = cols - 24;
	if (width < 8)
		width = 8;
	int per = (SPB_STATS_PB_PER_SPB + width - 1) / width;
	printf("\033[1mmap\033[0m (%d pageblock%s per char)  legend: %sM\033[0m movable "
	       "%sU\033[0m unmovable %sR\033[0m reclaimable %sS\033[0m secret %sb\033[0m busy "
	       "%s.\033[0m free\033[K\n",
	       per, per > 1 ? "s" : "", class_color('M'), class_color('U'), class_color('R'),
	       class_color('S'), class_color('b'), class_color('.'));
	rows--;
	for (uint32_t k = 0; k < s->nr_spbs; k++) {
		if (rows <= 1 && k + 1 < s->nr_spbs) {
			printf("... %u more SPBs\033[K\n", s->nr_spbs - k);
			return;
		}
		const struct spb_stats_spb *r = &s->spbs[k];
		printf("%-7s %-4s %3u%% ",
		       r->category < SPB_STATS_NR_CATS ? cat_names[r->category] : "?",
		       r->rung < SPB_STATS_NR_RUNGS ? rung_names[r->rung] : "?",
		       (unsigned)(r->nr_used_pages * 100ull / (512u * 512u)));
		char prev = 0;
		for (int i = 0; i < SPB_STATS_PB_PER_SPB; i += per) {
			int to = i + per < SPB_STATS_PB_PER_SPB ? i + per : SPB_STATS_PB_PER_SPB;
			char c = group_char(r, i, to);
			if (c != prev)
				fputs(class_color(c), stdout);
			putchar(c);
			prev = c;
		}
		fputs("\033[0m\033[K\n", stdout);
		rows--;
	}
}

static int draw_counters(const struct snap *s, const uint64_t *prev, double dt, int cols,
			 int max_rows)
{
	int colw = 40, ncol = cols / colw;
	if (ncol < 1)
		ncol = 1;
	int nrow = ((int)s->nr_counters + ncol - 1) / ncol;
	if (nrow > max_rows)
		nrow = max_rows;
	printf("\033[1m%-*s\033[0m\033[K\n", colw, "counter              value      /s");
	for (int row = 0; row < nrow; row++) {
		for (int c = 0; c < ncol; c++) {
			int i = c * nrow + row;
			if (i >= (int)s->nr_counters)
				break;
			uint64_t v = s->counters[i];
			double rate = prev && dt > 0 && v >= prev[i] ? (double)(v - prev[i]) / dt : 0;
			printf("%-20.20s %10llu %6.0f  ", s->names[i], (unsigned long long)v, rate);
		}
		fputs("\033[K\n", stdout);
	}
	return nrow + 1;
}

/* One screen line: cut to the width. */
static void screen_line(const char *line, int cols)
{
	printf("%.*s\033[K\n", cols > 1 ? cols - 1 : 1, line);
}

/* A screen line of counters, each after its label, then tail. */
struct counted {
	const char *label, *name;
};
static void counted_line(const struct snap *s, int cols, const struct counted *v, size_t n,
			 const char *tail)
{
	char line[256];
	size_t len = 0;
	for (size_t i = 0; i < n && len < sizeof line; i++)
		len += (size_t)snprintf(line + len, sizeof line - len, "%s%llu", v[i].label,
					(unsigned long long)snap_counter(s, v[i].name));
	if (len < sizeof line)
		snprintf(line + len, sizeof line - len, "%s", tail);
	screen_line(line, cols);
}

static void draw(const struct snap *s, const uint64_t *prev, double dt)
{
	int rows, cols;
	term_size(&rows, &cols);
	char live[32], peak[32], backed[32], resv[32], rss[32];
	fmt_bytes(live, sizeof live, s->g.live_bytes);
	fmt_bytes(peak, sizeof peak, s->g.peak_live_bytes);
	fmt_bytes(backed, sizeof backed, s->g.mapped_bytes);
	fmt_bytes(resv, sizeof resv, s->g.reserved_bytes);
	fmt_bytes(rss, sizeof rss, s->g.rss_bytes);
	const struct spb_stats_gauges *g = &s->g;
	fputs("\033[H", stdout);
	printf("\033[7m spbstat  pid %d (%s)  up %.0fs  layout v%u  %s  q quits \033[0m\033[K\n",
	       s->pid, s->comm, s->uptime_s, s->hdr.version, s->alive ? "" : "[process gone]");
	printf("heap %s  peak %s  backed %s  reserved %s  rss %s  huge %.1f%%\033[K\n", live,
	       peak, backed, resv, rss, g->huge_permille / 10.0);
	printf("SPBs %u: empty %u clean %u tainted %u   tainted free pageblocks %u (reserve %u)"
	       "\033[K\n", g->nr_spbs, g->spbs_by_cat[0], g->spbs_by_cat[1], g->spbs_by_cat[2],
	       g->tainted_free_pb, g->tainted_reserve);
	printf("pageblocks:");
	for (int r = 0; r < SPB_STATS_NR_ROWS; r++)
		printf(" %s %llu", class_row_names[r], (unsigned long long)g->pb_by_class[r]);
	printf("\033[K\nrungs:     ");
	for (int r = 0; r < SPB_STATS_NR_RUNGS; r++)
		printf(" %s %llu", rung_names[r], (unsigned long long)g->pb_by_rung[r]);
	fputs("\033[K\n", stdout);
	char cl[256];
	topo_summary(cl, sizeof cl, &g->topo, g->nr_zones);
	printf("topology: ");
	screen_line(cl, cols > 10 ? cols - 10 : cols);
	snprintf(cl, sizeof cl,
		 "compaction: moved %llu (%.1f MiB), %llu passes, freed %llu spans %llu pb, "
		 "cpu %llu ms, ctl +%llu -%llu, direct %llu/%llu captured",
		 (unsigned long long)snap_counter(s, "compact_moved"),
		 (double)snap_counter(s, "compact_moved_bytes") / (1 << 20),
		 (unsigned long long)snap_counter(s, "compact_passes"),
		 (unsigned long long)snap_counter(s, "compact_spans_freed"),
		 (unsigned long long)snap_counter(s, "compact_evac_pb"),
		 (unsigned long long)snap_counter(s, "compact_cpu_us") / 1000,
		 (unsigned long long)snap_counter(s, "compact_ctl_start"),
		 (unsigned long long)snap_counter(s, "compact_ctl_stop"),
		 (unsigned long long)snap_counter(s, "compact_direct_captured"),
		 (unsigned long long)snap_counter(s, "compact_direct_stall"));
	screen_line(cl, cols);
	static const struct counted secret[] = {
		{"secret: pageblocks memfd_secret ", "secret_pb_memfd"},
		{", mlock fallback ", "secret_pb_anon"}, {", released ", "secret_unflip"},
		{", ENOMEM ", "secret_nomem"}, {", skipped 1G SPBs ", "secret_skip_1g"},
	};
	counted_line(s, cols, secret, sizeof secret / sizeof secret[0], "");
	static const struct counted shrink[] = {
		{"shrink: triggers demand ", "shrink_trigger_demand"},
		{" supply ", "shrink_trigger_supply"}, {" high-water ", "shrink_trigger_highwater"},
		{", passes ", "shrink_ran"}, {", freed ", "shrink_freed"},
		{" objects ", "shrink_pb_recovered"}, {" pb; pressure ", "pressure_events"},
		{" events, ", "pressure_released"},
	};
	counted_line(s, cols, shrink, sizeof shrink / sizeof shrink[0], " released");
	static const struct counted huge[] = {
		{"huge pages: at claim ", "pb_back_thp"},
		{"; 4k until dense: small heap ", "pb_lazy_small"},
		{", sparse use ", "pb_lazy_sparse"}, {", learnt huge ", "pb_lazy_learned"},
		{", looks ", "pb_lazy_check"}, {", made huge ", "pb_lazy_huge"},
		{"; collapse ", "pb_collapse"}, {" ok ", "pb_collapse_fail"},
	};
	counted_line(s, cols, huge, sizeof huge / sizeof huge[0], " refused");
	static const struct counted runs[] = {
		{"run cache (128-256 KiB): hits ", "runcache_hit"}, {", misses ", "runcache_miss"},
		{", kept ", "runcache_put"}, {", full ", "runcache_full"},
		{", given back ", "runcache_drained"},
	};
	counted_line(s, cols, runs, sizeof runs / sizeof runs[0], "");
	fputs("\033[K\n", stdout);
	int used = 12; /* the lines above */
	int crow = rows - used - 4 - (int)(s->nr_spbs < 8 ? s->nr_spbs : 8);
	used += draw_counters(s, prev, dt, cols, crow > 4 ? crow : 4);
	fputs("\033[K\n", stdout);
	used++;
	if (rows - used > 1)
		draw_map(s, rows - used, cols);
	fputs("\033[J", stdout);
	fflush(stdout);
}

/* Wait up to ms for a key; true when it was q. */
static bool wait_quit(int ms)
{
	struct pollfd p = {.fd = 0, .events = POLLIN};
	if (poll(&p, 1, ms) <= 0 || !(p.revents & POLLIN))
		return false;
	char buf[16];
	ssize_t n = read(0, buf, sizeof buf);
	if (n == 0)
		return false;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == 'q' || buf[i] == 'Q' || buf[i] == 3)
			return true;
	return false;
}

int top_run(int pid)
{
	struct snap s;
	enum seg_err e = seg_read(pid, &s);
	if (e)
		return seg_report(e, &s);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	term_enter();
	uint64_t *prev = NULL;
	double prev_t = 0;
	int rc = 0;
	while (!stop) {
		double t = (double)s.g.publish_realtime_ns / 1e9;
		draw(&s, prev, t - prev_t);
		free(prev);
		prev = malloc((s.nr_counters + 1) * sizeof *prev);
		if (prev)
			memcpy(prev, s.counters, s.nr_counters * sizeof *prev);
		prev_t = t;
		snap_free(&s);
		if (wait_quit(1000))
			break;
		e = seg_read(pid, &s);
		if (e) {
			term_leave();
			free(prev);
			int code = seg_report(e, &s);
			return e == SEG_MISSING ? 0 : code;
		}
	}
	term_leave();
	free(prev);
	return rc;
}
