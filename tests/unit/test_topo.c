/*
 * test_topo.c — topology (sysfs, then hwloc), zones per node, the
 * thread-to-zone mapping, remote frees going home, and where pages land
 * (move_pages in its query form), on this machine and on 2- and 4-node
 * machines that hwloc presents from HWLOC_SYNTHETIC (tests/CMakeLists.txt
 * runs this program once per mode):
 *
 *   host       the real machine: sysfs first, hwloc agrees with it, pages
 *              land on the zone's node (an SPB bound even on one node)
 *   nohwloc    SPBMALLOC_HWLOC=0, and hwloc failing: sysfs stays, counted
 *   synth N    HWLOC_SYNTHETIC with N nodes: zones added, CPU 1's thread
 *              maps to zone 1 (hwloc's map, not the kernel's getcpu node),
 *              binding to a node the kernel has not is refused, counted and
 *              absorbed, remote frees go back to zone 1, a thread that moves
 *              follows its node at its next refill
 *   xml        HWLOC_XMLFILE: a 2-node machine with node distances (the
 *              test writes it with hwloc itself): distances and node
 *              memory copied as hwloc gives them
 *   policy M   the process started under set_mempolicy(M) (as numactl
 *              --interleave / --membind would): the program re-executes
 *              itself under it; no binding overrides it (counted)
 *
 * A check that cannot apply here (a CPU 1 this process may not run on, a
 * node the kernel has after all) is skipped with its reason.
 */
#define _GNU_SOURCE
#include <hwloc.h>
#include <numaif.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "handle.h"
#include "heap.h"
#include "tap.h"

#define KIB ((size_t)1024)
#define MIB ((size_t)1 << 20)

static int skipped;
static void skip(const char *why)
{
	printf("# SKIP %s\n", why);
	skipped++;
}

/* The node of each page of [p, p+len) (move_pages, nodes NULL: a query,
 * nothing moves): returns the node all of them are on, -2 if they differ,
 * or the negative errno of the first page that has none. */
static int pages_node(void *p, size_t len)
{
	enum { MAXP = 1024 };
	static void *pages[MAXP];
	static int status[MAXP];
	unsigned long n = len / SPB_PAGE_SIZE;
	if (n > MAXP)
		n = MAXP;
	for (unsigned long i = 0; i < n; i++)
		pages[i] = (char *)p + i * SPB_PAGE_SIZE;
	REQUIRE(spb__os_page_nodes(pages, n, status));
	for (unsigned long i = 1; i < n; i++)
		if (status[i] != status[0])
			return status[i] < 0 ? status[i] : -2;
	return status[0];
}

static bool kernel_has_node(int node)
{
	char path[64];
	struct stat st;
	snprintf(path, sizeof path, "/sys/devices/system/node/node%d", node);
	return stat(path, &st) == 0;
}

static int kernel_nodes(void)
{
	int n = 0;
	while (n < 64 && kernel_has_node(n))
		n++;
	return n ? n : 1;
}

static bool may_run_on(int cpu)
{
	cpu_set_t set;
	return sched_getaffinity(0, sizeof set, &set) == 0 && CPU_ISSET(cpu, &set);
}

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	REQUIRE(sched_setaffinity(0, sizeof set, &set) == 0);
	REQUIRE(sched_getcpu() == cpu);
}

/* Run fn(arg) on a new thread pinned to cpu (a fresh heap of its own). */
struct on_cpu {
	int cpu;
	void (*fn)(void *);
	void *arg;
};
static void *on_cpu_main(void *v)
{
	struct on_cpu *o = v;
	pin(o->cpu);
	o->fn(o->arg);
	return NULL;
}
static void run_on(int cpu, void (*fn)(void *), void *arg)
{
	struct on_cpu o = {cpu, fn, arg};
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, on_cpu_main, &o) == 0);
	REQUIRE(pthread_join(t, NULL) == 0);
}

static void setup(void)
{
	spb__option_set(OPT_BG, 0);
	spb__option_set(OPT_STATSEG, 0);
	spb__option_set(OPT_DECAY_MS, 600000); /* nothing released behind our back */
	spb__engine_init();
}

/* ---- host: the machine itself ---- */

static int mode_host(void)
{
	setup();
	const struct spb_topo *sys = spb__topo_get();
	CHECK_EQ(sys->source, SPB_TOPO_SYSFS);
	CHECK_EQ(ctr(TOPO_SYSFS), 1);
	CHECK_EQ((int)sys->nr_nodes, kernel_nodes());
	CHECK_EQ(spb__nr_zones, kernel_nodes());
	CHECK_EQ((long)sys->nr_pus, sysconf(_SC_NPROCESSORS_ONLN));
	int cpu = sched_getcpu();
	REQUIRE(cpu >= 0 && (unsigned)cpu < sys->nr_cpus);
	CHECK(sys->cpu_node[cpu] != SPB_TOPO_NO_NODE);
	CHECK_EQ(sys->dist[0][0], 10);
	CHECK(spb__topo_policy() == MPOL_DEFAULT);

	/* hwloc, where nothing is locked: the same machine. */
	CHECK_EQ(spb__engine_topo_discover(), 1);
	CHECK_EQ(spb__engine_topo_discover(), 0); /* once */
	const struct spb_topo *hw = spb__topo_get();
	CHECK_EQ(hw->source, SPB_TOPO_HWLOC);
	CHECK_EQ(ctr(TOPO_HWLOC), 1);
	CHECK_EQ(ctr(TOPO_ZONE_ADD), 0);
	CHECK_EQ(hw->synthetic, 0);
	CHECK_EQ(hw->nr_nodes, sys->nr_nodes);
	CHECK_EQ(hw->nr_pus, sys->nr_pus);
	CHECK(hw->nr_packages >= 1 && hw->nr_cores >= 1 && hw->nr_cores <= hw->nr_pus);
	CHECK_EQ(hw->nr_cpus, sys->nr_cpus);
	for (unsigned c = 0; c < hw->nr_cpus; c++)
		CHECK_EQ(hw->cpu_node[c], sys->cpu_node[c]);
	if (sys->cache_l1d)
		CHECK_EQ(hw->cache_l1d, sys->cache_l1d);
	for (unsigned i = 0; i < hw->nr_nodes; i++)
		CHECK_EQ(hw->dist[i][i], 10);
	CHECK_EQ(spb__zone_current(), &spb__zones[hw->cpu_node[sched_getcpu()]]);

	/* Placement: bind even on one node (the call the kernel accepts for
	 * a node it has), then ask the kernel where each page is. */
	__atomic_store_n(&spb__os_inject.mbind_always, true, __ATOMIC_RELAXED);
	struct spb_zone *z = spb__zone_current();
	uint64_t bound = ctr(NUMA_BIND);
	size_t len = 4 * MIB;
	char *p = spb__malloc(len);
	REQUIRE(p);
	memset(p, 0x5a, len);
	CHECK_EQ(spb_of(p)->zone, z);
	CHECK_EQ(ctr(NUMA_BIND), bound + 1);
	CHECK_EQ(ctr(NUMA_BIND_FAIL), 0);
	int mode = -1;
	CHECK(get_mempolicy(&mode, NULL, 0, p, MPOL_F_ADDR) == 0 && mode == MPOL_PREFERRED);
	CHECK_EQ(pages_node(p, len), z->node);
	spb__free_ptr(p);
	__atomic_store_n(&spb__os_inject.mbind_always, false, __ATOMIC_RELAXED);

	/* The mask's last node (63), which this machine has not: refused by
	 * the kernel like node 62 (a maxnode one short dropped its bit, and
	 * the empty mask "succeeded" as a local allocation). */
	if (sys->nr_nodes < 63) {
		void *q = mmap(NULL, 2 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		REQUIRE(q != MAP_FAILED);
		CHECK(!spb__os_mbind(q, 2 * MIB, 62));
		CHECK(!spb__os_mbind(q, 2 * MIB, 63));
		munmap(q, 2 * MIB);
	}
	return check_done("test_topo host");
}

/* ---- nohwloc: SPBMALLOC_HWLOC=0, and hwloc failing ---- */

static int mode_nohwloc(void)
{
	setup();
	if (spb__opt(OPT_HWLOC) == 0) { /* SPBMALLOC_HWLOC=0 in the environment */
		CHECK_EQ(spb__engine_topo_discover(), 0);
		CHECK_EQ(spb__topo_get()->source, SPB_TOPO_SYSFS);
		CHECK_EQ(ctr(TOPO_HWLOC) + ctr(TOPO_HWLOC_FAIL), 0);
		spb__option_set(OPT_HWLOC, 1);
	}
	__atomic_store_n(&spb__os_inject.hwloc_fail, true, __ATOMIC_RELAXED);
	CHECK_EQ(spb__engine_topo_discover(), -1);
	CHECK_EQ(spb__engine_topo_discover(), 0); /* not tried again */
	CHECK_EQ(ctr(TOPO_HWLOC_FAIL), 1);
	CHECK_EQ(ctr(TOPO_HWLOC), 0);
	CHECK_EQ(ctr(TOPO_SYSFS), 1);
	CHECK_EQ(spb__topo_get()->source, SPB_TOPO_SYSFS);
	CHECK_EQ(spb__nr_zones, kernel_nodes());
	void *p = spb__malloc(100);
	CHECK(p != NULL);
	spb__free_ptr(p);
	return check_done("test_topo nohwloc");
}

/* ---- synth N: a synthetic N-node machine ---- */

struct allocs {
	char *small[64];
	char *run;  /* 200 KiB: a run-cache size */
	char *big;  /* 1 MiB page run */
	struct spb *big_spb;
	unsigned small_zone_ok, zone_idx;
};

static void alloc_on_node1(void *v)
{
	struct allocs *a = v;
	CHECK_EQ(spb__topo_current_node(), 1);
	CHECK_EQ(spb__zone_current(), &spb__zones[1]);
	for (int i = 0; i < 64; i++) {
		a->small[i] = spb__malloc(64);
		REQUIRE(a->small[i]);
		memset(a->small[i], i, 64);
		struct spb_span *s = spb__span_of(spb_of(a->small[i]), a->small[i]);
		a->small_zone_ok += s && s->zone_idx == 1;
	}
	a->run = spb__malloc(200 * KIB);
	a->big = spb__malloc(MIB);
	REQUIRE(a->run && a->big);
	memset(a->run, 1, 200 * KIB);
	memset(a->big, 2, MIB); /* written: the memory is there, bound or not */
	a->big_spb = spb_of(a->big);
}

static void free_on_node0(void *v)
{
	struct allocs *a = v;
	CHECK_EQ(spb__zone_current(), &spb__zones[0]);
	for (int i = 0; i < 64; i++)
		spb__free_ptr(a->small[i]);
	spb__free_ptr(a->run);
	spb__free_ptr(a->big);
	/* The 200 KiB run went home, not into this thread's run cache: this
	 * thread's next run of that size is from its own zone. */
	char *q = spb__malloc(200 * KIB);
	REQUIRE(q);
	CHECK_EQ(spb_of(q)->zone, &spb__zones[0]);
	spb__free_ptr(q);
}

static void migrate(void *v)
{
	(void)v;
	REQUIRE(sched_getcpu() == 0);
	char *a = spb__malloc(MIB);
	REQUIRE(a);
	CHECK_EQ(spb_of(a)->zone, &spb__zones[0]);
	uint64_t moves = ctr(MALLOC_ZONE_MOVE);
	pin(1); /* the thread moves to node 1 */
	char *b = spb__malloc(MIB);
	REQUIRE(b);
	CHECK_EQ(spb_of(b)->zone, &spb__zones[1]);
	char *c = spb__malloc(3000); /* a bin not used yet: a refill */
	REQUIRE(c);
	CHECK_EQ(spb__span_of(spb_of(c), c)->zone_idx, 1);
	CHECK_EQ(ctr(MALLOC_ZONE_MOVE), moves + 1);
	spb__free_ptr(a);
	spb__free_ptr(b);
	spb__free_ptr(c);
}

/* Handle objects of 4,000 bytes, 9 in 10 freed: sparse MOVABLE spans of
 * the calling thread's zone (the thread exits: they are ownerless). */
#define NH 4000
struct hset {
	spb_handle_t h[NH];
};
static void sparse_handles(void *v)
{
	struct hset *s = v;
	for (int i = 0; i < NH; i++) {
		s->h[i] = spb_halloc(4000, 0);
		REQUIRE(s->h[i]);
		*(int *)spb_hpin(s->h[i]) = i;
		spb_hunpin(s->h[i]);
	}
	for (int i = 0; i < NH; i++)
		if (i % 10) {
			spb_hfree(s->h[i]);
			s->h[i] = 0;
		}
}

static size_t shrink_scan_none(void *ctx, size_t n, int prio)
{
	(void)ctx, (void)n, (void)prio;
	return 0;
}

static size_t shrink_count_none(void *ctx)
{
	(void)ctx;
	return 0;
}

static int mode_synth(int want)
{
	const char *env = getenv("HWLOC_SYNTHETIC");
	if (!env) {
		printf("# SKIP HWLOC_SYNTHETIC not set (the test registration sets it)\n");
		return TAP_SKIP;
	}
	setup();
	int sys_nodes = spb__nr_zones;
	CHECK_EQ(spb__topo_get()->source, SPB_TOPO_SYSFS);
	/* The shrinker layer running (a shrinker registered; no pressure
	 * watch) before the zones are added: its triggers armed in every
	 * zone, the added ones too. */
	spb__option_set(OPT_PRESSURE, 0);
	spb__option_set(OPT_COMPACT, 0); /* no compaction thread: the pass below is ours */
	int sid = spb_shrinker_register(shrink_scan_none, shrink_count_none, NULL);
	REQUIRE(sid >= 0);
	for (int i = 0; i < 10000 && !__atomic_load_n(&spb__zones[0].shrink_armed, __ATOMIC_ACQUIRE);
	     i++)
		usleep(1000);
	REQUIRE(__atomic_load_n(&spb__zones[0].shrink_armed, __ATOMIC_ACQUIRE));
	CHECK_EQ(spb__engine_topo_discover(), 1);
	for (int i = sys_nodes; i < spb__nr_zones; i++)
		CHECK_EQ(__atomic_load_n(&spb__zones[i].shrink_armed, __ATOMIC_ACQUIRE), 1);
	CHECK_EQ(spb_shrinker_unregister(sid), 0);
	const struct spb_topo *t = spb__topo_get();
	CHECK_EQ(t->source, SPB_TOPO_HWLOC);
	CHECK_EQ(t->synthetic, 1);
	REQUIRE((int)t->nr_nodes == want);
	/* Zones: one per node, the ones sysfs did not show added. */
	CHECK_EQ(spb__nr_zones, want);
	CHECK_EQ(ctr(TOPO_ZONE_ADD), (uint64_t)(want > sys_nodes ? want - sys_nodes : 0));
	for (int i = 0; i < want; i++)
		CHECK_EQ(spb__zones[i].node, i);
	CHECK_EQ(t->cpu_node[0], 0);
	CHECK_EQ(t->cpu_node[1], 1);

	/* A zone of a node the kernel has not: its SPB's binding is refused
	 * (counted), the memory is used unbound: it lands where the kernel
	 * puts it (node 0 here). */
	int last = want - 1;
	uint64_t refused = ctr(NUMA_BIND_FAIL), bound = ctr(NUMA_BIND);
	char *p = spb__pages_alloc(&spb__zones[last], 2 * MIB, 0, SPB_UNMOVABLE, 0);
	REQUIRE(p);
	memset(p, 3, 2 * MIB);
	CHECK_EQ(spb_of(p)->zone, &spb__zones[last]);
	if (!kernel_has_node(last)) {
		CHECK_EQ(ctr(NUMA_BIND_FAIL), refused + 1);
		CHECK_EQ(ctr(NUMA_BIND), bound);
		int mode = -1;
		CHECK(get_mempolicy(&mode, NULL, 0, p, MPOL_F_ADDR) == 0 && mode == MPOL_DEFAULT);
		if (kernel_nodes() == 1)
			CHECK_EQ(pages_node(p, 2 * MIB), 0);
	} else {
		CHECK_EQ(ctr(NUMA_BIND), bound + 1);
		CHECK_EQ(pages_node(p, 2 * MIB), last);
	}
	spb_pages_free(p);

	/* Zone 0's SPBs are bound (node 0 exists): MPOL_PREFERRED. */
	bound = ctr(NUMA_BIND);
	p = spb__pages_alloc(&spb__zones[0], 2 * MIB, 0, SPB_MOVABLE, 0);
	REQUIRE(p);
	memset(p, 4, 2 * MIB);
	CHECK_EQ(ctr(NUMA_BIND), bound + 1);
	int mode = -1;
	CHECK(get_mempolicy(&mode, NULL, 0, p, MPOL_F_ADDR) == 0 && mode == MPOL_PREFERRED);
	CHECK_EQ(pages_node(p, 2 * MIB), 0);
	spb_pages_free(p);

	if (!may_run_on(0) || !may_run_on(1)) {
		skip("CPUs 0 and 1 are not both allowed: no thread-to-zone checks");
		return check_done("test_topo synth");
	}
	/* CPU 1 is node 1 in hwloc's map (the kernel says node 0): the
	 * thread there allocates from zone 1. */
	struct allocs a = {0};
	refused = ctr(NUMA_BIND_FAIL);
	run_on(1, alloc_on_node1, &a);
	CHECK_EQ(a.small_zone_ok, 64);
	CHECK_EQ(a.big_spb->zone, &spb__zones[1]);
	if (!kernel_has_node(1)) { /* zone 1's SPB: binding refused, memory unbound */
		CHECK(ctr(NUMA_BIND_FAIL) > refused || want == 2); /* synth 2: counted above */
		mode = -1;
		CHECK(get_mempolicy(&mode, NULL, 0, a.big, MPOL_F_ADDR) == 0 && mode == MPOL_DEFAULT);
		if (kernel_nodes() == 1)
			CHECK_EQ(pages_node(a.big, MIB), 0);
	}
	uint32_t used = a.big_spb->nr_used_pages;
	CHECK(used >= (MIB + 200 * KIB) / SPB_PAGE_SIZE);
	/* A thread of node 0 frees it all: it goes back to zone 1. Once the
	 * cross-thread frees are pushed and the abandoned spans (the node-1
	 * thread has exited) swept, zone 1's SPB holds nothing. */
	run_on(0, free_on_node0, &a);
	spb__heap_reclaim(true);
	CHECK_EQ(a.big_spb->zone, &spb__zones[1]);
	CHECK_EQ(a.big_spb->nr_used_pages, 0);
	CHECK_EQ(spb__zones[1].pb_by_class[SPB_UNMOVABLE], 0);

	/* A thread that moves from node 0 to node 1 follows at its next refill. */
	run_on(0, migrate, NULL);

	/* A compaction pass's byte budget is the whole pass's: once zone 0's
	 * moves have spent it, zone 1 is left alone (its share was the
	 * budget minus what was moved: 0, "no bound", or wrapped around). */
	static struct hset h0, h1;
	run_on(0, sparse_handles, &h0);
	run_on(1, sparse_handles, &h1);
	char *at[NH];
	for (int i = 0; i < NH; i++)
		if (h1.h[i]) {
			at[i] = spb_hpin(h1.h[i]);
			spb_hunpin(h1.h[i]);
			CHECK_EQ(spb_of(at[i])->zone, &spb__zones[1]);
		}
	struct spb_compact_stat cst;
	size_t moved = spb__compact_pass(256 * KIB, &cst);
	CHECK(moved >= 256 * KIB);
	unsigned z1_moved = 0;
	for (int i = 0; i < NH; i++)
		if (h1.h[i]) {
			char *q = spb_hpin(h1.h[i]);
			z1_moved += q != at[i];
			CHECK_EQ(*(int *)q, i);
			spb_hunpin(h1.h[i]);
		}
	CHECK_EQ(z1_moved, 0);
	for (int i = 0; i < NH; i++) {
		spb_hfree(h0.h[i]);
		spb_hfree(h1.h[i]);
	}
	return check_done("test_topo synth");
}

/* ---- xml: HWLOC_XMLFILE, with distances ---- */

/* A 2-node synthetic machine with NUMA distances 10/21, written as XML by
 * hwloc (this process's malloc is glibc's: the test may call hwloc). */
static bool write_xml(const char *path)
{
	hwloc_topology_t t;
	if (hwloc_topology_init(&t) || hwloc_topology_set_synthetic(t, "node:2(memory=2GB) core:1 pu:1") ||
	    hwloc_topology_load(t))
		return false;
	hwloc_obj_t objs[2] = {hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, 0),
			       hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, 1)};
	hwloc_uint64_t v[4] = {10, 21, 21, 10};
	hwloc_distances_add_handle_t h = hwloc_distances_add_create(
		t, "test", HWLOC_DISTANCES_KIND_FROM_USER | HWLOC_DISTANCES_KIND_MEANS_LATENCY, 0);
	bool ok = h && objs[0] && objs[1] && hwloc_distances_add_values(t, h, 2, objs, v, 0) == 0 &&
		  hwloc_distances_add_commit(t, h, 0) == 0 && hwloc_topology_export_xml(t, path, 0) == 0;
	hwloc_topology_destroy(t);
	return ok;
}

static int mode_xml(void)
{
	char path[] = "/tmp/spb-topo-XXXXXX";
	int fd = mkstemp(path);
	REQUIRE(fd >= 0);
	close(fd);
	bool ok = write_xml(path);
	if (!ok) {
		unlink(path);
		printf("# SKIP this hwloc could not write a synthetic XML topology with distances\n");
		return TAP_SKIP;
	}
	setenv("HWLOC_XMLFILE", path, 1);
	unsetenv("HWLOC_SYNTHETIC");
	setup();
	CHECK_EQ(spb__engine_topo_discover(), 1);
	unlink(path);
	const struct spb_topo *t = spb__topo_get();
	CHECK_EQ(t->source, SPB_TOPO_HWLOC);
	CHECK_EQ(t->synthetic, 1);
	CHECK_EQ(t->nr_nodes, 2);
	CHECK_EQ(spb__nr_zones, 2);
	CHECK_EQ(t->dist[0][0], 10);
	CHECK_EQ(t->dist[0][1], 21);
	CHECK_EQ(t->dist[1][0], 21);
	CHECK_EQ(t->dist[1][1], 10);
	CHECK_EQ(t->node_mem[0], 2000000000); /* hwloc: 2GB = 2e9 bytes */
	CHECK_EQ(t->node_mem[1], 2000000000);
	CHECK_EQ(t->cpu_node[0], 0);
	CHECK_EQ(t->cpu_node[1], 1);
	return check_done("test_topo xml");
}

/* ---- policy M: started under a memory policy ---- */

static int mode_policy(int argc, char **argv)
{
	int m = strcmp(argv[2], "interleave") == 0 ? MPOL_INTERLEAVE : MPOL_BIND;
	if (argc < 4) { /* set it, then start again under it, as numactl does */
		unsigned long mask = 1; /* node 0 */
		REQUIRE(set_mempolicy(m, &mask, 64) == 0);
		char *args[] = {argv[0], argv[1], argv[2], "child", NULL};
		execv("/proc/self/exe", args);
		perror("execv");
		return 1;
	}
	setup();
	CHECK_EQ(spb__topo_policy(), m);
	if (getenv("HWLOC_SYNTHETIC")) /* two nodes: zone 1's SPB would be bound */
		CHECK_EQ(spb__engine_topo_discover(), 1);
	__atomic_store_n(&spb__os_inject.mbind_always, true, __ATOMIC_RELAXED);
	struct spb_zone *z = &spb__zones[spb__nr_zones - 1];
	char *p = spb__pages_alloc(z, 2 * MIB, 0, SPB_UNMOVABLE, 0);
	REQUIRE(p);
	memset(p, 5, 2 * MIB);
	CHECK_EQ(ctr(NUMA_BIND_KEPT), 1);
	CHECK_EQ(ctr(NUMA_BIND), 0);
	CHECK_EQ(ctr(NUMA_BIND_FAIL), 0);
	/* No policy of ours on the range (the kernel reports MPOL_DEFAULT
	 * for a range without one): the process's, still m, governs it. */
	int mode = -1;
	CHECK(get_mempolicy(&mode, NULL, 0, p, MPOL_F_ADDR) == 0);
	CHECK_EQ(mode, MPOL_DEFAULT);
	CHECK(get_mempolicy(&mode, NULL, 0, NULL, 0) == 0);
	CHECK_EQ(mode, m);
	CHECK_EQ(pages_node(p, 2 * MIB), 0); /* node 0, the only one the policy allows */
	spb_pages_free(p);
	return check_done(m == MPOL_INTERLEAVE ? "test_topo policy interleave"
					       : "test_topo policy bind");
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "host";
	if (strcmp(mode, "host") == 0)
		return mode_host();
	if (strcmp(mode, "nohwloc") == 0)
		return mode_nohwloc();
	if (strcmp(mode, "synth") == 0 && argc > 2)
		return mode_synth(atoi(argv[2]));
	if (strcmp(mode, "xml") == 0)
		return mode_xml();
	if (strcmp(mode, "policy") == 0 && argc > 2)
		return mode_policy(argc, argv);
	fprintf(stderr, "usage: test_topo [host|nohwloc|synth N|xml|policy interleave|bind]\n");
	return 2;
}
