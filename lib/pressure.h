/*
 * pressure.h — where the system's memory pressure is read from (pressure.c),
 * for the spb-shrink thread (shrink.c), which polls these descriptors.
 */
#ifndef SPB_PRESSURE_H
#define SPB_PRESSURE_H

#include <poll.h>

#include "engine.h"

#define SPB_PRESSURE_PSI 0x1u
#define SPB_PRESSURE_HIGH 0x2u
#define SPB_PRESSURE_TEST 0x4u
struct spb_pressure {
	int psi_fd;    /* PSI trigger (POLLPRI), or -1 */
	int events_fd; /* the cgroup's memory.events (POLLPRI on change), or -1 */
	int test_fd;   /* SPBMALLOC_PRESSURE_TEST_FD (POLLIN), or -1 */
	uint64_t high; /* memory.events "high" at the last look */
};
/* Set up what the machine offers (counts each source that is missing). */
void spb__pressure_open(struct spb_pressure *p) SPB_HIDDEN;
void spb__pressure_close(struct spb_pressure *p) SPB_HIDDEN;
/* The pollfds to wait on (at most 3); returns how many. */
int spb__pressure_pollfds(const struct spb_pressure *p, struct pollfd *v) SPB_HIDDEN;
/* After poll(v, n): SPB_PRESSURE_* bits of the sources that report pressure. */
unsigned spb__pressure_read(struct spb_pressure *p, const struct pollfd *v, int n) SPB_HIDDEN;

#endif
