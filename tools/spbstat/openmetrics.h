/*
 * openmetrics.h — the exposition of many processes' snapshots
 * (openmetrics.c) and the HTTP endpoint that serves it (listen.c).
 */
#ifndef SPBSTAT_OPENMETRICS_H
#define SPBSTAT_OPENMETRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "spbstat.h"

/* What one scrape found in /dev/shm, by outcome. */
enum om_outcome {
	OM_READ,         /* exported */
	OM_STALE,        /* the process is gone (spbstat --gc removes these) */
	OM_REFUSED,      /* not ours, not a regular file, a link */
	OM_GARBLED,      /* bad magic, sizes, unknown layout version */
	OM_INCONSISTENT, /* the seqlock never settled */
	OM_ERROR,        /* open/read failed otherwise */
	OM_NR_OUTCOMES,
};

struct om_scrape {
	unsigned segments[OM_NR_OUTCOMES];
	double duration_s;
};

/* The exposition of n snapshots: OpenMetrics 1.0.0 when openmetrics, else
 * the Prometheus text format 0.0.4; sc (optional) adds spbstat's own
 * figures about the scrape. */
void om_write(FILE *f, bool openmetrics, const struct snap *snaps, size_t n,
	      const struct om_scrape *sc);

/* spbstat --listen [ADDR:]PORT: serve /metrics until SIGINT or SIGTERM;
 * returns the exit code (2 for bad usage or a build without
 * libmicrohttpd, 1 when the address cannot be bound). */
int listen_run(const char *spec);

#endif
