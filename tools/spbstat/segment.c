/*
 * segment.c — reading a stats segment without trusting it.
 *
 * The file is opened with O_NOFOLLOW and checked with fstat (a regular
 * file, owned by the caller unless the caller is root, at least a header
 * long); the magic and the layout version are checked before any other
 * field; every size, offset and count is bounds-checked against the file.
 * Everything is read with pread, never mmap: a writer that truncates the
 * file under us gives a short read, not a SIGBUS. The snapshot is copied
 * between two reads of the seqlock and retried a bounded number of times.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spbstat.h"

#define MAX_COUNTERS 4096
#define MAX_SPBS 131072
#define SNAP_TRIES 200 /* x 1 ms: a writer holds the window for microseconds */

int seg_exit_code(enum seg_err e)
{
	return e == SEG_OK ? 0 : e == SEG_VERSION ? 2 : 1;
}

int seg_report(enum seg_err e, struct snap *s)
{
	fprintf(stderr, "spbstat: %s\n", s->err);
	snap_free(s);
	return seg_exit_code(e);
}

static bool read_at(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		done += (size_t)r;
	}
	return true;
}

static uint64_t read_starttime(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	p++;
	for (int field = 3; field < 22 && *p; p++)
		if (*p == ' ')
			field++;
	return strtoull(p, NULL, 10);
}

/* Whether pid still maps its segment: false after it exec'd a program
 * without spbmalloc; true when /proc/pid/maps cannot be read. */
static bool maps_segment(int pid)
{
	char path[64], want[64], line[512];
	snprintf(path, sizeof path, "/proc/%d/maps", pid);
	snprintf(want, sizeof want, SPB_STATS_PATH_PREFIX "%d", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return true;
	bool found = false, any = false;
	while (!found && fgets(line, sizeof line, f)) {
		any = true;
		char *p = strstr(line, want);
		found = p && (p[strlen(want)] == '\n' || p[strlen(want)] == ' ');
	}
	fclose(f);
	return found || !any;
}

bool proc_matches(int pid, uint64_t starttime)
{
	if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM))
		return false;
	uint64_t st = read_starttime(pid);
	if (starttime && st && st != starttime)
		return false; /* the pid was reused */
	return maps_segment(pid);
}

void proc_comm(int pid, char *buf, size_t cap)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/comm", pid);
	buf[0] = 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(buf, (int)cap, f))
		buf[strcspn(buf, "\n")] = 0;
	fclose(f);
	for (char *p = buf; *p; p++)
		if ((unsigned char)*p < 32 || (unsigned char)*p == 127 || *p == '"' ||
		    *p == '\\')
			*p = '?';
}

static enum seg_err fail(struct snap *s, enum seg_err e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static enum seg_err fail(struct snap *s, enum seg_err e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->err, sizeof s->err, fmt, ap);
	va_end(ap);
	return e;
}

/* The header: magic, then version, then everything else. */
static enum seg_err check_header(struct snap *s, const char *path, uint64_t fsize)
{
	const struct spb_stats_header *h = &s->hdr;
	if (h->magic != SPB_STATS_MAGIC)
		return fail(s, SEG_GARBLED, "%s: bad magic: not an spbmalloc segment", path);
	if (h->version != SPB_STATS_VERSION)
		return fail(s, SEG_VERSION, "unknown layout version %u (this spbstat reads %u)",
			    h->version, SPB_STATS_VERSION);
	if (h->header_size != sizeof *h || h->total_size != fsize)
		return fail(s, SEG_GARBLED,
			    "%s: size mismatch: header says %llu bytes, file has %llu (truncated?)",
			    path, (unsigned long long)h->total_size, (unsigned long long)fsize);
	uint64_t nc = h->nr_counters, ms = h->max_spbs;
	bool ok = nc <= MAX_COUNTERS && ms <= MAX_SPBS &&
		  h->nr_classes == SPB_STATS_NR_CLASSES && h->nr_rungs == SPB_STATS_NR_RUNGS &&
		  h->pb_per_spb == SPB_STATS_PB_PER_SPB &&
		  h->gauges_size == sizeof(struct spb_stats_gauges) &&
		  h->spb_rec_size == sizeof(struct spb_stats_spb) &&
		  h->names_off >= h->header_size &&
		  (uint64_t)h->names_off + nc * SPB_STATS_NAME_LEN <= h->gauges_off &&
		  (uint64_t)h->gauges_off + h->gauges_size <= h->counters_off &&
		  (uint64_t)h->counters_off + nc * 8 <= h->spbs_off &&
		  (uint64_t)h->spbs_off + ms * h->spb_rec_size <= fsize;
	if (!ok)
		return fail(s, SEG_GARBLED, "%s: garbled header (sizes or offsets out of range)",
			    path);
	if (h->pid != s->pid)
		return fail(s, SEG_GARBLED, "%s: segment claims pid %d", path, h->pid);
	return SEG_OK;
}

static int cmp_base(const void *a, const void *b)
{
	uint64_t x = ((const struct spb_stats_spb *)a)->base;
	uint64_t y = ((const struct spb_stats_spb *)b)->base;
	return x < y ? -1 : x > y;
}

/* Copy gauges, counters and the map between two reads of seq. */
static enum seg_err copy_snapshot(int fd, struct snap *s, const char *path)
{
	const struct spb_stats_header *h = &s->hdr;
	size_t snap_len = h->spbs_off - h->gauges_off;
	char *buf = malloc(snap_len);
	s->spbs = malloc((size_t)h->max_spbs * sizeof *s->spbs + 1);
	if (!buf || !s->spbs) {
		free(buf);
		return fail(s, SEG_SYSERR, "%s: out of memory", path);
	}
	uint64_t off_seq = offsetof(struct spb_stats_header, seq);
	for (int tries = 0; tries < SNAP_TRIES; tries++) {
		uint64_t s1, s2;
		if (tries)
			nanosleep(&(struct timespec){0, 1000000}, NULL);
		if (!read_at(fd, &s1, 8, off_seq) || !read_at(fd, buf, snap_len, h->gauges_off))
			break;
		if (s1 & 1)
			continue;
		struct spb_stats_gauges g;
		memcpy(&g, buf, sizeof g);
		if (g.nr_spbs_mapped > h->max_spbs)
			continue; /* torn or garbled: the seq check decides */
		size_t mlen = (size_t)g.nr_spbs_mapped * sizeof *s->spbs;
		if (!read_at(fd, s->spbs, mlen, h->spbs_off) || !read_at(fd, &s2, 8, off_seq))
			break;
		if (s1 != s2)
			continue;
		s->g = g;
		memcpy(s->counters, buf + (h->counters_off - h->gauges_off),
		       (size_t)s->nr_counters * 8);
		s->nr_spbs = g.nr_spbs_mapped;
		qsort(s->spbs, s->nr_spbs, sizeof *s->spbs, cmp_base);
		free(buf);
		return SEG_OK;
	}
	free(buf);
	return fail(s, SEG_INCONSISTENT, "%s: segment inconsistent (writer died mid-update?)",
		    path);
}

static enum seg_err read_fd(int fd, const char *path, struct snap *s)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return fail(s, SEG_SYSERR, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(s, SEG_REFUSED, "%s: not a regular file: refused", path);
	if (geteuid() != 0 && st.st_uid != geteuid())
		return fail(s, SEG_REFUSED, "%s: owned by uid %u, not by you: refused", path,
			    (unsigned)st.st_uid);
	if ((uint64_t)st.st_size < sizeof s->hdr)
		return fail(s, SEG_GARBLED, "%s: truncated (%lld bytes, the header alone is %zu)",
			    path, (long long)st.st_size, sizeof s->hdr);
	if (!read_at(fd, &s->hdr, sizeof s->hdr, 0))
		return fail(s, SEG_GARBLED, "%s: truncated while reading", path);
	enum seg_err e = check_header(s, path, (uint64_t)st.st_size);
	if (e)
		return e;
	s->nr_counters = s->hdr.nr_counters;
	s->names = calloc(s->nr_counters + 1, SPB_STATS_NAME_LEN);
	s->counters = calloc(s->nr_counters + 1, 8);
	if (!s->names || !s->counters)
		return fail(s, SEG_SYSERR, "%s: out of memory", path);
	if (!read_at(fd, s->names, (size_t)s->nr_counters * SPB_STATS_NAME_LEN,
		     s->hdr.names_off))
		return fail(s, SEG_GARBLED, "%s: truncated while reading", path);
	for (uint32_t i = 0; i < s->nr_counters; i++) {
		s->names[i][SPB_STATS_NAME_LEN - 1] = 0;
		for (char *p = s->names[i]; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
				*p = '_'; /* names go into JSON keys and metric names */
	}
	return copy_snapshot(fd, s, path);
}

enum seg_err seg_read_path(const char *path, int pid, struct snap *s)
{
	memset(s, 0, sizeof *s);
	s->pid = pid;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT)
			return fail(s, SEG_MISSING, "no spbmalloc segment for pid %d", pid);
		if (errno == ELOOP)
			return fail(s, SEG_REFUSED, "%s: is a symbolic link: refused", path);
		return fail(s, SEG_SYSERR, "%s: %s", path, strerror(errno));
	}
	enum seg_err e = read_fd(fd, path, s);
	close(fd);
	if (e)
		return e;
	s->alive = proc_matches(pid, s->hdr.proc_starttime);
	if (s->alive)
		proc_comm(pid, s->comm, sizeof s->comm);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	double t = (double)now.tv_sec + now.tv_nsec / 1e9;
	s->uptime_s = t - (double)s->hdr.start_realtime_ns / 1e9;
	if (s->uptime_s < 0)
		s->uptime_s = 0;
	return SEG_OK;
}

enum seg_err seg_read(int pid, struct snap *s)
{
	char path[64];
	snprintf(path, sizeof path, SPB_STATS_PATH_PREFIX "%d", pid);
	return seg_read_path(path, pid, s);
}

void snap_free(struct snap *s)
{
	free(s->names);
	free(s->counters);
	free(s->spbs);
	s->names = NULL;
	s->counters = NULL;
	s->spbs = NULL;
}

uint64_t snap_counter(const struct snap *s, const char *name)
{
	for (uint32_t i = 0; i < s->nr_counters; i++)
		if (strcmp(s->names[i], name) == 0)
			return s->counters[i];
	return 0;
}
