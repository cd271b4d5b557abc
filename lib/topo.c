/*
 * topo.c — topology: how many NUMA nodes, which one a thread runs on, and
 * binding an SPB to its zone's node.
 *
 * The allocator itself reads sysfs and uses the raw getcpu system call
 * here (mbind through os.c), rather than libnuma or hwloc, because both
 * of those allocate (and libnuma's constructor may run after our first
 * malloc): a malloc cannot call an allocating library on its own slow
 * path. libnuma and hwloc are used by the tools and benchmarks that only
 * observe.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "platform.h"

static int nr_nodes_cached;

/* Parse "0-3,5" (sysfs node list) and return the highest node + 1. */
static int parse_node_list(const char *s)
{
	int hi = -1, v = -1;
	for (; *s; s++) {
		if (*s >= '0' && *s <= '9')
			v = (v < 0 ? 0 : v * 10) + (*s - '0');
		else {
			if (v > hi)
				hi = v;
			v = -1;
		}
	}
	if (v > hi)
		hi = v;
	return hi + 1;
}

int spb__topo_nr_nodes(void)
{
	int n = __atomic_load_n(&nr_nodes_cached, __ATOMIC_RELAXED);
	if (n)
		return n;
	n = 1;
	int fd = open("/sys/devices/system/node/online", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char buf[256];
		ssize_t len = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (len > 0) {
			buf[len] = 0;
			n = parse_node_list(buf);
			if (n < 1)
				n = 1;
		}
	}
	__atomic_store_n(&nr_nodes_cached, n, __ATOMIC_RELAXED);
	return n;
}

int spb__topo_current_node(void)
{
	unsigned cpu = 0, node = 0;
	if (syscall(SYS_getcpu, &cpu, &node, NULL) != 0)
		return 0;
	return (int)node;
}

bool spb__topo_bind(void *p, size_t size, int node)
{
	/* The call itself is os.c's (the fault injection seam); a test may
	 * ask for it on a single-node machine too. */
	if (!__atomic_load_n(&spb__os_inject.mbind_always, __ATOMIC_RELAXED) &&
	    (spb__topo_nr_nodes() <= 1 || node < 0 || node >= 64))
		return true;
	return spb__os_mbind(p, size, node);
}
