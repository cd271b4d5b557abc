/*
 * hwtopo.c — the one caller of hwloc: the machine's topology, loaded once
 * and copied into the fixed-size struct spb_topo.
 *
 * hwloc is not linked: it is opened (dlopen of SPB_HWLOC_SONAME, the
 * library the build found) by the first discovery, on the background
 * thread, SPBMALLOC_HWLOC_DELAY_MS after the process started. Linked, it
 * and what it needs (libudev, libm) cost every process they are mapped
 * into about 600 KiB of resident memory and their relocations at start,
 * `sort` of one line 2.1 -> 2.7 MiB; a program that ends sooner than the
 * delay now never loads it. Only functions of hwloc's ABI are called,
 * through pointers looked up once (the inline helpers of hwloc.h call
 * others by name, so this file has its own few). An hwloc whose API
 * version's major differs from the headers' is not used (counted as a
 * failed discovery; sysfs stays).
 *
 * What is copied: packages, NUMA nodes and their memory, caches, cores,
 * PUs, the CPU -> node map, node distances; the hwloc topology is
 * destroyed before spb__hwtopo_load returns.
 *
 * hwloc allocates (through our malloc when we are the process's malloc):
 * topo.c calls this only from spb__topo_discover, which runs on the
 * background thread (or a test's thread) with no allocator lock held and a
 * thread-local guard set. hwloc reads HWLOC_SYNTHETIC and HWLOC_XMLFILE
 * from the environment: then the topology is not this machine's
 * (synthetic = 1), and its nodes may not exist for the kernel.
 */
#include <dlfcn.h>
#include <hwloc.h>
#include <string.h>

#include "platform.h"

#ifndef SPB_HWLOC_SONAME
#define SPB_HWLOC_SONAME "libhwloc.so.15"
#endif

#define HWLOC_FNS(X)                                                                    \
	X(hwloc_get_api_version) X(hwloc_topology_init) X(hwloc_topology_load)          \
	X(hwloc_topology_destroy) X(hwloc_topology_is_thissystem)                        \
	X(hwloc_get_type_depth) X(hwloc_get_nbobjs_by_depth) X(hwloc_get_obj_by_depth) \
	X(hwloc_bitmap_first) X(hwloc_bitmap_next) X(hwloc_distances_get_by_type)       \
	X(hwloc_distances_release)

static struct {
#define X(f) __typeof__(f) *f;
	HWLOC_FNS(X)
#undef X
} hw;

/* Open hwloc and look its functions up (once; false if it cannot be used). */
static bool hw_open(void)
{
	static int state; /* 0 not tried, 1 usable, 2 not */
	if (state)
		return state == 1;
	state = 2;
	void *lib = dlopen(SPB_HWLOC_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		return false;
#define X(f)                                             \
	if (!(*(void **)&hw.f = dlsym(lib, #f)))         \
		return false;
	HWLOC_FNS(X)
#undef X
	if ((hw.hwloc_get_api_version() >> 16) != (HWLOC_API_VERSION >> 16))
		return false;
	state = 1;
	return true;
}

/* hwloc.h's inline hwloc_get_nbobjs_by_type and _next_obj_by_type,
 * through the pointers. */
static int nbobjs_by_type(hwloc_topology_t topo, hwloc_obj_type_t type)
{
	int depth = hw.hwloc_get_type_depth(topo, type);
	if (depth == HWLOC_TYPE_DEPTH_UNKNOWN || depth == HWLOC_TYPE_DEPTH_MULTIPLE)
		return 0;
	return (int)hw.hwloc_get_nbobjs_by_depth(topo, depth);
}

static hwloc_obj_t next_obj_by_type(hwloc_topology_t topo, hwloc_obj_type_t type,
				    hwloc_obj_t prev)
{
	int depth = hw.hwloc_get_type_depth(topo, type);
	if (depth == HWLOC_TYPE_DEPTH_UNKNOWN || depth == HWLOC_TYPE_DEPTH_MULTIPLE)
		return NULL;
	if (!prev)
		return hw.hwloc_get_obj_by_depth(topo, depth, 0);
	return prev->depth == depth ? prev->next_cousin : NULL;
}

static uint64_t first_cache(hwloc_topology_t topo, hwloc_obj_type_t type, uint32_t *line)
{
	for (hwloc_obj_t o = NULL; (o = next_obj_by_type(topo, type, o)) != NULL;) {
		if (o->attr->cache.type == HWLOC_OBJ_CACHE_INSTRUCTION)
			continue;
		if (line && o->attr->cache.linesize)
			*line = o->attr->cache.linesize;
		return o->attr->cache.size;
	}
	return 0;
}

static uint32_t count(hwloc_topology_t topo, hwloc_obj_type_t type)
{
	int n = nbobjs_by_type(topo, type);
	return n > 0 ? (uint32_t)n : 0;
}

static void copy_distances(hwloc_topology_t topo, struct spb_topo *t)
{
	struct hwloc_distances_s *d = NULL;
	unsigned nr = 1;
	if (hw.hwloc_distances_get_by_type(topo, HWLOC_OBJ_NUMANODE, &nr, &d, 0, 0) == 0 && nr) {
		for (unsigned i = 0; i < d->nbobjs; i++)
			for (unsigned j = 0; j < d->nbobjs; j++) {
				unsigned a = d->objs[i]->os_index, b = d->objs[j]->os_index;
				hwloc_uint64_t v = d->values[i * d->nbobjs + j];
				if (a < SPB_TOPO_MAX_NODES && b < SPB_TOPO_MAX_NODES)
					t->dist[a][b] = (uint8_t)(v > 255 ? 255 : v);
			}
		hw.hwloc_distances_release(topo, d);
	}
	/* None given (one node, or a synthetic machine without them): the
	 * ACPI convention, 10 to itself; others stay unknown (0). */
	for (unsigned i = 0; i < t->nr_nodes; i++)
		if (!t->dist[i][i])
			t->dist[i][i] = 10;
}

bool spb__hwtopo_load(struct spb_topo *t)
{
	hwloc_topology_t topo;
	memset(t, 0, sizeof *t);
	memset(t->cpu_node, SPB_TOPO_NO_NODE, sizeof t->cpu_node);
	if (!hw_open() || hw.hwloc_topology_init(&topo) != 0)
		return false;
	if (hw.hwloc_topology_load(topo) != 0) {
		hw.hwloc_topology_destroy(topo);
		return false;
	}
	t->source = SPB_TOPO_HWLOC;
	t->synthetic = !hw.hwloc_topology_is_thissystem(topo);
	t->nr_packages = count(topo, HWLOC_OBJ_PACKAGE);
	t->nr_cores = count(topo, HWLOC_OBJ_CORE);
	t->nr_pus = count(topo, HWLOC_OBJ_PU);
	for (hwloc_obj_t n = NULL; (n = next_obj_by_type(topo, HWLOC_OBJ_NUMANODE, n));) {
		unsigned node = n->os_index;
		if (node >= SPB_TOPO_MAX_NODES)
			continue;
		if (node + 1 > t->nr_nodes)
			t->nr_nodes = node + 1;
		t->node_mem[node] = n->attr->numanode.local_memory;
		for (int cpu = hw.hwloc_bitmap_first(n->cpuset); cpu >= 0;
		     cpu = hw.hwloc_bitmap_next(n->cpuset, cpu)) {
			if (cpu < SPB_TOPO_MAX_CPUS) {
				t->cpu_node[cpu] = (uint8_t)node;
				if ((uint32_t)cpu + 1 > t->nr_cpus)
					t->nr_cpus = (uint32_t)cpu + 1;
			}
		}
	}
	if (t->nr_nodes == 0)
		t->nr_nodes = 1; /* no NUMA node reported: one, node 0 */
	t->cache_l1d = first_cache(topo, HWLOC_OBJ_L1CACHE, &t->cache_line);
	t->cache_l2 = first_cache(topo, HWLOC_OBJ_L2CACHE, NULL);
	t->cache_l3 = first_cache(topo, HWLOC_OBJ_L3CACHE, NULL);
	copy_distances(topo, t);
	hw.hwloc_topology_destroy(topo);
	return true;
}
