/*
 * pressure.c — where the system's memory pressure is read from, for the
 * spb-shrink thread (shrink.c), which polls the descriptors set up here:
 *
 *   - PSI: a trigger ("some <stall> <window>", see the kernel's
 *     Documentation/accounting/psi.rst) on the memory.pressure file of the
 *     process's cgroup v2, else on /proc/pressure/memory; poll says POLLPRI
 *     when tasks stalled on memory for SPBMALLOC_PRESSURE_STALL_MS within a
 *     second (unprivileged triggers need a 2 s window: tried second);
 *   - the cgroup's memory.events: the kernel notifies a poller (POLLPRI)
 *     whenever a count changes; pressure when "high" grew, i.e. memory.high
 *     was hit and the kernel throttled and reclaimed;
 *   - for tests, SPBMALLOC_PRESSURE_TEST_FD: every byte read is an event.
 * Each source that cannot be set up (no PSI, no cgroup v2 memory
 * controller, no permission) is counted once and left out: the watch is
 * off where nothing is there. Only open/read/write/close: nothing here
 * allocates.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "heap.h"
#include "pressure.h"

#define CGROUP2_ROOT "/sys/fs/cgroup"

/* The process's cgroup v2 directory ("/sys/fs/cgroup/<path>"), from the
 * "0::<path>" line of /proc/self/cgroup; false when there is none. */
static bool cgroup_dir(char *out, size_t len)
{
	char buf[1024];
	int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, "0::", 3) != 0)
			continue;
		char *path = l + 3, *end = strchr(path, '\n');
		size_t plen = end ? (size_t)(end - path) : strlen(path);
		size_t rlen = sizeof CGROUP2_ROOT - 1;
		if (rlen + plen + 1 > len)
			return false;
		memcpy(out, CGROUP2_ROOT, rlen);
		memcpy(out + rlen, path, plen);
		out[rlen + plen] = 0;
		if (plen == 1) /* "/": the root cgroup has no memory.events */
			out[rlen] = 0;
		return true;
	}
	return false;
}

static int open_in(const char *dir, const char *name, int flags)
{
	char path[1200];
	size_t d = strlen(dir), n = strlen(name);
	if (d + n + 2 > sizeof path)
		return -1;
	memcpy(path, dir, d);
	path[d] = '/';
	memcpy(path + d + 1, name, n + 1);
	return open(path, flags | O_CLOEXEC);
}

/* A PSI trigger on fd: stall_ms per 1 s window, or per 2 s (what an
 * unprivileged process may ask for). */
static bool psi_arm(int fd, long stall_ms)
{
	char buf[64];
	for (int w = 1; w <= 2; w++) {
		size_t n = spb__fmt_str(buf, 0, sizeof buf - 24, "some ");
		n += spb__fmt_u64(buf + n, (uint64_t)(stall_ms * w * 1000));
		n = spb__fmt_str(buf, n, sizeof buf - 24, " ");
		n += spb__fmt_u64(buf + n, (uint64_t)w * 1000000u);
		buf[n++] = 0; /* the kernel wants the terminating NUL counted */
		if (write(fd, buf, n) == (ssize_t)n)
			return true;
	}
	return false;
}

/* The "high" count of a memory.events file (0 when absent). */
static uint64_t events_high(int fd)
{
	char buf[512];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	for (char *l = buf; l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, "high ", 5) != 0)
			continue;
		uint64_t v = 0;
		for (const char *c = l + 5; *c >= '0' && *c <= '9'; c++)
			v = v * 10 + (uint64_t)(*c - '0');
		return v;
	}
	return 0;
}

void spb__pressure_open(struct spb_pressure *p)
{
	char dir[1100];
	p->psi_fd = p->events_fd = p->test_fd = -1;
	p->high = 0;
	long tfd = spb__opt(OPT_PRESSURE_TEST_FD);
	if (tfd > 0)
		p->test_fd = (int)tfd;
	bool cg = cgroup_dir(dir, sizeof dir);
	if (cg && dir[sizeof CGROUP2_ROOT - 1]) {
		p->events_fd = open_in(dir, "memory.events", O_RDONLY);
		if (p->events_fd >= 0)
			p->high = events_high(p->events_fd);
		p->psi_fd = open_in(dir, "memory.pressure", O_RDWR | O_NONBLOCK);
	}
	if (p->psi_fd < 0)
		p->psi_fd = open("/proc/pressure/memory", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (p->psi_fd >= 0 && !psi_arm(p->psi_fd, spb__opt(OPT_PRESSURE_STALL_MS))) {
		close(p->psi_fd);
		p->psi_fd = -1;
	}
	if (p->psi_fd < 0)
		spb__heap_count(PRESSURE_UNAVAILABLE, 1);
	if (p->events_fd < 0)
		spb__heap_count(PRESSURE_UNAVAILABLE, 1);
}

void spb__pressure_close(struct spb_pressure *p)
{
	if (p->psi_fd >= 0)
		close(p->psi_fd);
	if (p->events_fd >= 0)
		close(p->events_fd);
	p->psi_fd = p->events_fd = p->test_fd = -1;
}

int spb__pressure_pollfds(const struct spb_pressure *p, struct pollfd *v)
{
	int n = 0;
	if (p->psi_fd >= 0)
		v[n++] = (struct pollfd){.fd = p->psi_fd, .events = POLLPRI};
	if (p->events_fd >= 0)
		v[n++] = (struct pollfd){.fd = p->events_fd, .events = POLLPRI};
	if (p->test_fd >= 0)
		v[n++] = (struct pollfd){.fd = p->test_fd, .events = POLLIN};
	return n;
}

unsigned spb__pressure_read(struct spb_pressure *p, const struct pollfd *v, int n)
{
	unsigned why = 0;
	for (int i = 0; i < n; i++) {
		if (!v[i].revents)
			continue;
		if (v[i].fd == p->psi_fd) {
			if (v[i].revents & POLLERR) { /* the file went away */
				close(p->psi_fd);
				p->psi_fd = -1;
			} else {
				why |= SPB_PRESSURE_PSI;
			}
		} else if (v[i].fd == p->events_fd) {
			uint64_t h = events_high(p->events_fd);
			if (h > p->high)
				why |= SPB_PRESSURE_HIGH;
			p->high = h;
		} else if (v[i].fd == p->test_fd) {
			char buf[64];
			ssize_t r = read(p->test_fd, buf, sizeof buf);
			if (r > 0)
				why |= SPB_PRESSURE_TEST;
			else /* the writer closed it: stop watching */
				p->test_fd = -1;
		}
	}
	return why;
}
