/*
 * spbstat — watch processes running spbmalloc through their stats segments.
 *
 *   spbstat                       list live processes with a segment
 *   spbstat PID [INTERVAL [COUNT]] one line per interval, like vmstat
 *   spbstat -t PID                full-screen live view (q quits)
 *   spbstat --json PID            one snapshot as JSON
 *   spbstat --text PID            the same snapshot as text
 *   spbstat --openmetrics PID     the same snapshot as OpenMetrics
 *   spbstat --gc                  remove segments whose process is gone
 *   spbstat --listen [ADDR:]PORT  serve all processes' OpenMetrics at /metrics
 *   spbstat --set PID NAME=VALUE  change a setting of a running process
 *   spbstat --get PID NAME        read a setting, counter or figure (spb_ctl)
 *   spbstat --trim PID            give its free memory back now
 *   spbstat --compact PID         compact its handle objects now
 *                                 (control.c: through the segment's
 *                                 control slot, owner only)
 *
 * Exit codes: 0 fine; 1 no segment, permission denied, refused or garbled
 * segment, inconsistent snapshot; 2 unknown layout version or bad usage.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "openmetrics.h"
#include "spbstat.h"

#define SHM_DIR "/dev/shm"
#define SEG_BASENAME "spbmalloc."

static void usage(FILE *f)
{
	fputs("usage: spbstat                         list processes using spbmalloc\n"
	      "       spbstat PID [INTERVAL [COUNT]]  a line per interval (seconds)\n"
	      "       spbstat -t PID                  live view (q quits)\n"
	      "       spbstat --json|--text|--openmetrics PID   one snapshot\n"
	      "       spbstat --gc                    remove segments of dead processes\n"
	      "       spbstat --listen [ADDR:]PORT    serve /metrics (OpenMetrics) of every\n"
	      "                                       process; ADDR defaults to 127.0.0.1\n"
	      "       spbstat --set PID NAME=VALUE    change a setting while it runs (spb_ctl)\n"
	      "       spbstat --get PID NAME          read a setting, counter or figure\n"
	      "       spbstat --trim|--compact PID    give free memory back / compact now\n",
	      f);
}

static int parse_pid(const char *s)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v <= 0 || v > 0x7fffffff)
		return -1;
	return (int)v;
}

/* The pid a /dev/shm entry name belongs to, or -1. */
static int seg_name_pid(const char *name)
{
	if (strncmp(name, SEG_BASENAME, sizeof SEG_BASENAME - 1) != 0)
		return -1;
	return parse_pid(name + sizeof SEG_BASENAME - 1);
}

static void fmt_uptime(char *buf, size_t cap, double s)
{
	unsigned long t = (unsigned long)s;
	if (t >= 86400)
		snprintf(buf, cap, "%lud%02luh", t / 86400, t / 3600 % 24);
	else if (t >= 3600)
		snprintf(buf, cap, "%luh%02lum", t / 3600, t / 60 % 60);
	else
		snprintf(buf, cap, "%lum%02lus", t / 60, t % 60);
}

static int cmd_list(void)
{
	DIR *d = opendir(SHM_DIR);
	if (!d) {
		fprintf(stderr, "spbstat: %s: %s\n", SHM_DIR, strerror(errno));
		return 1;
	}
	printf("%7s %-16s %9s %10s %10s %10s %6s %5s\n", "PID", "COMMAND", "UPTIME", "HEAP",
	       "BACKED", "RSS", "HUGE%", "SPBS");
	struct dirent *de;
	while ((de = readdir(d))) {
		int pid = seg_name_pid(de->d_name);
		if (pid < 0)
			continue;
		char path[300], up[32], heap[32], backed[32], rss[32];
		snprintf(path, sizeof path, SHM_DIR "/%s", de->d_name);
		struct snap s;
		enum seg_err e = seg_read_path(path, pid, &s);
		if (e == SEG_OK && s.alive) {
			fmt_uptime(up, sizeof up, s.uptime_s);
			fmt_bytes(heap, sizeof heap, s.g.live_bytes);
			fmt_bytes(backed, sizeof backed, s.g.mapped_bytes);
			fmt_bytes(rss, sizeof rss, s.g.rss_bytes);
			printf("%7d %-16s %9s %10s %10s %10s %5.1f%% %5u\n", pid, s.comm, up, heap,
			       backed, rss, s.g.huge_permille / 10.0, s.g.nr_spbs);
		} else if (e != SEG_OK && e != SEG_MISSING && proc_matches(pid, 0)) {
			printf("%7d %-16s (%s)\n", pid, "?", s.err);
		}
		snap_free(&s);
	}
	closedir(d);
	return 0;
}

/* Remove /dev/shm/spbmalloc.<pid> when <pid> is gone (or is another
 * process now). Only regular files and links we own (any, as root). */
static int cmd_gc(void)
{
	DIR *d = opendir(SHM_DIR);
	if (!d) {
		fprintf(stderr, "spbstat: %s: %s\n", SHM_DIR, strerror(errno));
		return 1;
	}
	int dfd = dirfd(d), rc = 0, removed = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		int pid = seg_name_pid(de->d_name);
		struct stat st;
		if (pid < 0 || fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (geteuid() != 0 && st.st_uid != geteuid())
			continue;
		uint64_t starttime = 0;
		int fd = openat(dfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		struct spb_stats_header h;
		if (fd >= 0 && S_ISREG(st.st_mode) &&
		    pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h &&
		    h.magic == SPB_STATS_MAGIC && h.version == SPB_STATS_VERSION)
			starttime = h.proc_starttime;
		if (fd >= 0)
			close(fd);
		if (proc_matches(pid, starttime))
			continue;
		if (unlinkat(dfd, de->d_name, 0) == 0) {
			printf("removed %s/%s (process %d is gone)\n", SHM_DIR, de->d_name, pid);
			removed++;
		} else {
			fprintf(stderr, "spbstat: %s/%s: %s\n", SHM_DIR, de->d_name,
				strerror(errno));
			rc = 1;
		}
	}
	closedir(d);
	if (!removed)
		printf("no stale segments\n");
	return rc;
}

static int cmd_snapshot(int pid, enum emit_fmt fmt)
{
	struct snap s;
	enum seg_err e = seg_read(pid, &s);
	if (e)
		return seg_report(e, &s);
	emit_snapshot(stdout, fmt, &s);
	snap_free(&s);
	return 0;
}

/* ---- vmstat-like lines ---- */

static const char *const rate_counters[] = {
	"malloc_alloc", "malloc_free", "pb_claim", "spb_taint", "spb_highorder_refused",
	"pb_release", "compact_moved", "compact_evac_pb", "shrink_freed",
};
#define NR_RATES (sizeof rate_counters / sizeof rate_counters[0])

static void vm_header(void)
{
	printf("%-10s %-10s %6s %4s %4s %4s %9s %9s %7s %6s %6s %7s %7s %6s %8s\n", "heap",
	       "backed", "huge%", "spbs", "cln", "tnt", "allocs/s", "frees/s", "claim/s", "taint/s",
	       "refus/s", "relse/s", "moved/s", "evac/s", "shrunk/s");
}

static void vm_line(const struct snap *s, const uint64_t *prev, double dt)
{
	char heap[32], backed[32];
	fmt_bytes(heap, sizeof heap, s->g.live_bytes);
	fmt_bytes(backed, sizeof backed, s->g.mapped_bytes);
	printf("%-10s %-10s %5.1f%% %4u %4u %4u", heap, backed, s->g.huge_permille / 10.0,
	       s->g.nr_spbs, s->g.spbs_by_cat[1], s->g.spbs_by_cat[2]);
	static const int widths[NR_RATES] = {9, 9, 7, 7, 7, 7, 7, 6, 8};
	for (size_t i = 0; i < NR_RATES; i++) {
		uint64_t v = snap_counter(s, rate_counters[i]);
		uint64_t dv = v >= prev[i] ? v - prev[i] : 0;
		printf(" %*.0f", widths[i], dt > 0 ? (double)dv / dt : 0.0);
	}
	putchar('\n');
	fflush(stdout);
}

static int cmd_vmstat(int pid, double interval, long count)
{
	uint64_t prev[NR_RATES] = {0};
	double prev_t = 0;
	for (long n = 0; count < 0 || n < count; n++) {
		struct snap s;
		enum seg_err e = seg_read(pid, &s);
		if (e == SEG_MISSING && n > 0) {
			printf("spbstat: process %d exited\n", pid);
			snap_free(&s);
			return 0;
		}
		if (e)
			return seg_report(e, &s);
		if (n % 20 == 0)
			vm_header();
		/* The first line: averages since the segment was made. */
		double t = (double)s.g.publish_realtime_ns / 1e9;
		double dt = n == 0 ? s.uptime_s : t - prev_t;
		vm_line(&s, prev, dt);
		for (size_t i = 0; i < NR_RATES; i++)
			prev[i] = snap_counter(&s, rate_counters[i]);
		prev_t = t;
		bool alive = s.alive;
		snap_free(&s);
		if (!alive) {
			printf("spbstat: process %d is gone (stale segment: spbstat --gc)\n", pid);
			return 0;
		}
		if (count >= 0 && n + 1 >= count)
			break;
		struct timespec ts = {(time_t)interval,
				      (long)((interval - (double)(time_t)interval) * 1e9)};
		nanosleep(&ts, NULL);
	}
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_DFL);
	if (argc == 1)
		return cmd_list();
	const char *a = argv[1];
	if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(a, "--gc") && argc == 2)
		return cmd_gc();
	if (!strcmp(a, "--listen") && argc == 3)
		return listen_run(argv[2]);
	if (argc >= 3 && (!strcmp(a, "--set") || !strcmp(a, "--get") || !strcmp(a, "--trim") ||
			  !strcmp(a, "--compact"))) {
		int pid = parse_pid(argv[2]);
		bool act = !strcmp(a, "--trim") || !strcmp(a, "--compact");
		if (pid > 0 && act && argc == 3)
			return cmd_control(pid, SPB_STATS_CTL_ACT, a + 2, 0);
		if (pid > 0 && !strcmp(a, "--get") && argc == 4)
			return cmd_control(pid, SPB_STATS_CTL_GET, argv[3], 0);
		if (pid > 0 && !strcmp(a, "--set") && argc == 4) {
			char name[SPB_STATS_CTL_NAME_LEN + 1], *end;
			const char *eq = strchr(argv[3], '=');
			size_t nl = eq ? (size_t)(eq - argv[3]) : 0;
			errno = 0;
			long v = eq ? strtol(eq + 1, &end, 10) : 0;
			if (eq && nl && nl < sizeof name && eq[1] && !*end && !errno) {
				memcpy(name, argv[3], nl);
				name[nl] = 0;
				return cmd_control(pid, SPB_STATS_CTL_SET, name, v);
			}
			fprintf(stderr, "spbstat: --set wants NAME=VALUE (a decimal integer), not '%s'\n",
				argv[3]);
			return 2;
		}
	}
	if (argc == 3) {
		int pid = parse_pid(argv[2]);
		enum emit_fmt fmt = EMIT_TEXT;
		bool snapshot = true;
		if (!strcmp(a, "--json"))
			fmt = EMIT_JSON;
		else if (!strcmp(a, "--openmetrics"))
			fmt = EMIT_OPENMETRICS;
		else if (strcmp(a, "--text"))
			snapshot = false;
		if (pid > 0 && snapshot)
			return cmd_snapshot(pid, fmt);
		if (pid > 0 && !strcmp(a, "-t"))
			return top_run(pid);
	}
	int pid = parse_pid(a);
	if (pid > 0 && argc <= 4) {
		double interval = argc > 2 ? strtod(argv[2], NULL) : 0;
		long count = argc > 3 ? strtol(argv[3], NULL, 10) : (argc > 2 ? -1 : 1);
		if (argc > 2 && !(interval > 0 && interval < 86400)) {
			fprintf(stderr, "spbstat: bad interval '%s'\n", argv[2]);
			return 2;
		}
		if (argc > 3 && count <= 0) {
			fprintf(stderr, "spbstat: bad count '%s'\n", argv[3]);
			return 2;
		}
		return cmd_vmstat(pid, interval, count);
	}
	usage(stderr);
	return 2;
}
