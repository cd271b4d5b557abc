/*
 * spbstat.h — spbstat's pieces: reading a segment safely (segment.c), the
 * one emitter that renders text, JSON and OpenMetrics from one walk of the
 * fields (emit.c), the live view (top.c) and the commands (spbstat.c).
 */
#ifndef SPBSTAT_H
#define SPBSTAT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "spbmalloc_stats.h"

/* Outcome of reading a segment; each maps to a message and an exit code. */
enum seg_err {
	SEG_OK = 0,
	SEG_MISSING,      /* no file: exit 1 "no spbmalloc segment for pid N" */
	SEG_SYSERR,       /* open/read failed: exit 1, strerror */
	SEG_REFUSED,      /* symlink, not a regular file, not ours: exit 1 */
	SEG_GARBLED,      /* bad magic, truncated, bad sizes: exit 1 */
	SEG_VERSION,      /* unknown layout version: exit 2 */
	SEG_INCONSISTENT, /* seq odd forever: exit 1 */
};

struct snap {
	int pid;
	struct spb_stats_header hdr;
	struct spb_stats_gauges g;
	uint32_t nr_counters;
	char (*names)[SPB_STATS_NAME_LEN];
	uint64_t *counters;
	uint32_t nr_spbs;           /* records in spbs (sorted by base) */
	struct spb_stats_spb *spbs;
	bool alive;                 /* the writer process still runs */
	char comm[64];
	double uptime_s;            /* since the segment was made */
	char err[256];              /* message for a non-OK outcome */
};

/* Read a consistent snapshot of /dev/shm/spbmalloc.<pid>. */
enum seg_err seg_read(int pid, struct snap *s);
/* The same, from an explicit path (list and gc scan /dev/shm). */
enum seg_err seg_read_path(const char *path, int pid, struct snap *s);
void snap_free(struct snap *s);
/* Exit code for an outcome (0, 1 or 2). */
int seg_exit_code(enum seg_err e);
/* A failed read: its reason on stderr, the snapshot freed; the exit code. */
int seg_report(enum seg_err e, struct snap *s);
/* Process pid is alive and is the one that made the segment. */
bool proc_matches(int pid, uint64_t starttime);
void proc_comm(int pid, char *buf, size_t cap);
uint64_t snap_counter(const struct snap *s, const char *name);

/* The emitter. */
enum emit_fmt { EMIT_TEXT, EMIT_JSON, EMIT_OPENMETRICS };
struct emitter;
/* Render the whole snapshot in one format. */
void emit_snapshot(FILE *f, enum emit_fmt fmt, const struct snap *s);
/* One line on the topology the process built its zones for. */
void topo_summary(char *buf, size_t cap, const struct spb_stats_topo *t, uint32_t nr_zones);
const char *topo_policy_name(int32_t mode);
/* Names for classes, rungs, categories; map characters. */
extern const char *const class_row_names[SPB_STATS_NR_ROWS];
extern const char *const rung_names[SPB_STATS_NR_RUNGS];
extern const char *const cat_names[SPB_STATS_NR_CATS];
char pb_class_char(uint8_t cls);
char pb_rung_char(uint8_t rung);
void fmt_bytes(char *buf, size_t cap, uint64_t b);

/* The live view; returns the exit code. */
int top_run(int pid);

/* A gauge of a snapshot by offset: 4 or 8 bytes (emit.c, openmetrics.c). */
static inline uint64_t spbstat_gauge_at(const struct spb_stats_gauges *g, size_t off, bool u32)
{
	const char *p = (const char *)g + off;
	if (u32) {
		uint32_t v;
		memcpy(&v, p, 4);
		return v;
	}
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* control.c: a request through the segment's control slot (--set, --get,
 * --trim, --compact); returns the exit code. */
int cmd_control(int pid, enum spb_stats_ctl_op op, const char *name, long value);

#endif
