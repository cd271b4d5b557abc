/*
 * topo.c — topology: which NUMA nodes the machine has, which one a thread
 * runs on, and binding an SPB to its zone's node.
 *
 * Two sources fill one fixed-size structure (struct spb_topo, platform.h):
 *  - sysfs, read here with open/read only (no allocation), at engine init:
 *    the allocator must serve mallocs before anything else can run, so this
 *    is what the zones start from, and the fallback whenever hwloc fails or
 *    is off (SPBMALLOC_HWLOC=0, or SPBMALLOC_BG=0: no thread to run it);
 *  - hwloc (hwtopo.c, which opens it with dlopen), once, from the
 *    background thread SPBMALLOC_HWLOC_DELAY_MS after it started: hwloc
 *    allocates, so it runs where no allocator lock is held and malloc
 *    already works,
 *    with a thread-local guard against starting a second discovery from
 *    inside it; its result replaces sysfs's (packages, nodes, caches,
 *    cores, PUs, node distances). hwloc honours HWLOC_SYNTHETIC and
 *    HWLOC_XMLFILE: the tests present 2- and 4-node machines that way, so
 *    a thread's node comes from the topology's CPU -> node map (the CPU
 *    from sched_getcpu), not from the kernel's getcpu node.
 * The engine counts which source was used (zone.c, topo_* counters).
 *
 * Binding: mbind(MPOL_PREFERRED) through os.c (libnuma's numaif wrapper,
 * a system call; libnuma's numa_* functions allocate and are never used),
 * unless the process was started under a policy of its own (numactl
 * --interleave / --membind / --preferred: read once with get_mempolicy),
 * which is kept. A node the kernel has not (a synthetic topology) is
 * refused by the kernel: the caller counts it and uses the memory unbound.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "platform.h"

#define MPOL_LOCAL_MODE 4 /* numaif.h's MPOL_LOCAL: like the default here */

static struct spb_topo sysfs_topo, hwloc_topo;
static const struct spb_topo *cur; /* published with release */
static int sysfs_state;            /* 0 unread, 1 reading, 2 done */
static int hw_state;               /* 0 not run, 1 running, 2 done, 3 failed */
static int policy_mode = -2;       /* -2: not read yet */
static SPB_TLS bool in_hwloc;

/* ---- sysfs, without allocating ---- */

static ssize_t read_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t len = read(fd, buf, cap - 1);
	close(fd);
	if (len < 0)
		return -1;
	buf[len] = 0;
	return len;
}

/* Call fn for each number of a sysfs list ("0-3,5"); returns the highest + 1. */
static unsigned parse_list(const char *s, void (*fn)(unsigned, void *), void *arg)
{
	unsigned hi = 0;
	while (*s) {
		if (*s < '0' || *s > '9') {
			s++;
			continue;
		}
		unsigned a = 0, b;
		while (*s >= '0' && *s <= '9')
			a = a * 10 + (unsigned)(*s++ - '0');
		b = a;
		if (*s == '-') {
			s++;
			b = 0;
			while (*s >= '0' && *s <= '9')
				b = b * 10 + (unsigned)(*s++ - '0');
		}
		for (unsigned i = a; i <= b && i < 1u << 20; i++)
			if (fn)
				fn(i, arg);
		if (b + 1 > hi)
			hi = b + 1;
	}
	return hi;
}

static uint64_t parse_u64(const char *s)
{
	uint64_t v = 0;
	while (*s == ' ')
		s++;
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (uint64_t)(*s++ - '0');
	if (*s == 'K')
		v <<= 10;
	else if (*s == 'M')
		v <<= 20;
	return v;
}

struct cpu_mark {
	struct spb_topo *t;
	unsigned node;
};

static void mark_cpu(unsigned cpu, void *arg)
{
	struct cpu_mark *m = arg;
	if (cpu < SPB_TOPO_MAX_CPUS) {
		m->t->cpu_node[cpu] = (uint8_t)m->node;
		if (cpu + 1 > m->t->nr_cpus)
			m->t->nr_cpus = cpu + 1;
	}
}

static void count_one(unsigned i, void *arg)
{
	(void)i;
	(*(uint32_t *)arg)++;
}

static size_t node_path(char *buf, unsigned node, const char *leaf)
{
	size_t n = spb__fmt_str(buf, 0, 128, "/sys/devices/system/node/node");
	n += spb__fmt_u64(buf + n, node);
	n = spb__fmt_str(buf, n, 128, leaf);
	buf[n] = 0;
	return n;
}

struct online {
	uint8_t id[SPB_TOPO_MAX_NODES];
	unsigned n;
};

static void add_online(unsigned node, void *arg)
{
	struct online *o = arg;
	if (node < SPB_TOPO_MAX_NODES && o->n < SPB_TOPO_MAX_NODES)
		o->id[o->n++] = (uint8_t)node;
}

static void read_node(struct spb_topo *t, unsigned node, const struct online *o)
{
	char path[128], buf[1024]; /* small: a first malloc may run on a small stack */
	node_path(path, node, "/cpulist");
	struct cpu_mark m = {t, node};
	if (read_file(path, buf, sizeof buf) > 0)
		parse_list(buf, mark_cpu, &m);
	node_path(path, node, "/distance"); /* one column per online node, in order */
	if (read_file(path, buf, sizeof buf) > 0) {
		const char *s = buf;
		for (unsigned j = 0; j < o->n && *s; j++) {
			while (*s == ' ')
				s++;
			if (*s < '0' || *s > '9')
				break;
			uint64_t d = parse_u64(s);
			t->dist[node][o->id[j]] = (uint8_t)(d > 255 ? 255 : d);
			while (*s >= '0' && *s <= '9')
				s++;
		}
	}
	node_path(path, node, "/meminfo"); /* "Node 0 MemTotal:   123 kB" */
	if (read_file(path, buf, sizeof buf) > 0) {
		const char *s = strstr(buf, "MemTotal:");
		if (s)
			t->node_mem[node] = parse_u64(s + 9) << 10;
	}
}

static void read_caches(struct spb_topo *t)
{
	char path[128], buf[64];
	for (unsigned i = 0; i < 8; i++) {
		size_t n = spb__fmt_str(path, 0, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index");
		n += spb__fmt_u64(path + n, i);
		size_t base = n;
		n = spb__fmt_str(path, base, sizeof path, "/level");
		path[n] = 0;
		if (read_file(path, buf, sizeof buf) <= 0)
			break;
		unsigned level = (unsigned)parse_u64(buf);
		n = spb__fmt_str(path, base, sizeof path, "/type");
		path[n] = 0;
		if (read_file(path, buf, sizeof buf) <= 0 || buf[0] == 'I') /* Instruction */
			continue;
		n = spb__fmt_str(path, base, sizeof path, "/size");
		path[n] = 0;
		uint64_t size = read_file(path, buf, sizeof buf) > 0 ? parse_u64(buf) : 0;
		if (level == 1) {
			t->cache_l1d = size;
			n = spb__fmt_str(path, base, sizeof path, "/coherency_line_size");
			path[n] = 0;
			if (read_file(path, buf, sizeof buf) > 0)
				t->cache_line = (uint32_t)parse_u64(buf);
		} else if (level == 2) {
			t->cache_l2 = size;
		} else if (level == 3) {
			t->cache_l3 = size;
		}
	}
}

static void read_sysfs(struct spb_topo *t)
{
	char buf[1024];
	memset(t->cpu_node, SPB_TOPO_NO_NODE, sizeof t->cpu_node);
	t->source = SPB_TOPO_SYSFS;
	t->nr_nodes = 1;
	if (read_file("/sys/devices/system/node/online", buf, sizeof buf) > 0) {
		struct online o = {.n = 0};
		unsigned n = parse_list(buf, add_online, &o);
		t->nr_nodes = n < 1 ? 1 : n > SPB_TOPO_MAX_NODES ? SPB_TOPO_MAX_NODES : n;
		for (unsigned i = 0; i < o.n; i++)
			read_node(t, o.id[i], &o);
	}
	if (read_file("/sys/devices/system/cpu/online", buf, sizeof buf) > 0) {
		parse_list(buf, count_one, &t->nr_pus);
		if (t->nr_cpus == 0) { /* no node directories: all on node 0 */
			struct cpu_mark m = {t, 0};
			parse_list(buf, mark_cpu, &m);
		}
	}
	if (t->dist[0][0] == 0)
		t->dist[0][0] = 10;
	read_caches(t);
}

const struct spb_topo *spb__topo_get(void)
{
	const struct spb_topo *t = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
	if (SPB_LIKELY(t != NULL))
		return t;
	int st = 0;
	if (__atomic_compare_exchange_n(&sysfs_state, &st, 1, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE)) {
		read_sysfs(&sysfs_topo);
		__atomic_store_n(&policy_mode, spb__os_get_mempolicy(), __ATOMIC_RELAXED);
		__atomic_store_n(&sysfs_state, 2, __ATOMIC_RELEASE);
	} else {
		while (__atomic_load_n(&sysfs_state, __ATOMIC_ACQUIRE) != 2)
			__builtin_ia32_pause();
	}
	const struct spb_topo *expect = NULL;
	__atomic_compare_exchange_n(&cur, &expect, &sysfs_topo, false, __ATOMIC_ACQ_REL,
				    __ATOMIC_ACQUIRE);
	return __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
}

int spb__topo_nr_nodes(void)
{
	return (int)spb__topo_get()->nr_nodes;
}

int spb__topo_policy(void)
{
	spb__topo_get();
	return __atomic_load_n(&policy_mode, __ATOMIC_RELAXED);
}

int spb__topo_current_node(void)
{
	const struct spb_topo *t = spb__topo_get();
	int cpu = sched_getcpu(); /* rseq or vDSO: no system call */
	if (cpu >= 0 && (unsigned)cpu < t->nr_cpus && t->cpu_node[cpu] != SPB_TOPO_NO_NODE)
		return t->cpu_node[cpu];
	unsigned c = 0, node = 0;
	if (syscall(SYS_getcpu, &c, &node, NULL) != 0)
		return 0;
	return (int)node;
}

int spb__topo_discover(void)
{
	spb__topo_get();
	if (in_hwloc || !spb__opt(OPT_HWLOC))
		return 0;
	int st = 0;
	if (!__atomic_compare_exchange_n(&hw_state, &st, 1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return 0;
	in_hwloc = true;
	bool ok = !__atomic_load_n(&spb__os_inject.hwloc_fail, __ATOMIC_RELAXED) &&
		  spb__hwtopo_load(&hwloc_topo);
	in_hwloc = false;
	if (ok)
		__atomic_store_n(&cur, &hwloc_topo, __ATOMIC_RELEASE);
	__atomic_store_n(&hw_state, ok ? 2 : 3, __ATOMIC_RELEASE);
	return ok ? 1 : -1;
}

void spb__topo_atfork_child(void)
{
	/* The parent's discovery ran on its background thread, which the
	 * child has not: hwloc's own state may be half-way (a lock of
	 * hwloc's held). Not tried again: the child keeps sysfs. */
	int st = 1;
	__atomic_compare_exchange_n(&hw_state, &st, 3, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	in_hwloc = false;
}

enum spb_bind spb__topo_bind(void *p, size_t size, int node)
{
	/* The call itself is os.c's (the fault injection seam); a test may
	 * ask for it on a single-node machine too. */
	if (!__atomic_load_n(&spb__os_inject.mbind_always, __ATOMIC_RELAXED) &&
	    (spb__topo_nr_nodes() <= 1 || !spb__opt(OPT_NUMA) || node < 0 ||
	     node >= SPB_TOPO_MAX_NODES))
		return SPB_BIND_SKIPPED; /* SPBMALLOC_NUMA=0: one zone, no node */
	int pol = spb__topo_policy();
	if (pol > 0 && pol != MPOL_LOCAL_MODE)
		return SPB_BIND_KEPT; /* numactl --interleave/--membind/--preferred */
	return spb__os_mbind(p, size, node) ? SPB_BIND_DONE : SPB_BIND_REFUSED;
}
