/*
 * hwtopo.c — the one caller of hwloc: the machine's topology, loaded once
 * and copied into the fixed-size struct spb_topo.
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
#include <hwloc.h>
#include <string.h>

#include "platform.h"

static uint64_t first_cache(hwloc_topology_t topo, hwloc_obj_type_t type, uint32_t *line)
{
	for (hwloc_obj_t o = NULL; (o = hwloc_get_next_obj_by_type(topo, type, o)) != NULL;) {
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
	int n = hwloc_get_nbobjs_by_type(topo, type);
	return n > 0 ? (uint32_t)n : 0;
}

static void copy_distances(hwloc_topology_t topo, struct spb_topo *t)
{
	struct hwloc_distances_s *d = NULL;
	unsigned nr = 1;
	if (hwloc_distances_get_by_type(topo, HWLOC_OBJ_NUMANODE, &nr, &d, 0, 0) == 0 && nr) {
		for (unsigned i = 0; i < d->nbobjs; i++)
			for (unsigned j = 0; j < d->nbobjs; j++) {
				unsigned a = d->objs[i]->os_index, b = d->objs[j]->os_index;
				hwloc_uint64_t v = d->values[i * d->nbobjs + j];
				if (a < SPB_TOPO_MAX_NODES && b < SPB_TOPO_MAX_NODES)
					t->dist[a][b] = (uint8_t)(v > 255 ? 255 : v);
			}
		hwloc_distances_release(topo, d);
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
	if (hwloc_topology_init(&topo) != 0)
		return false;
	if (hwloc_topology_load(topo) != 0) {
		hwloc_topology_destroy(topo);
		return false;
	}
	t->source = SPB_TOPO_HWLOC;
	t->synthetic = !hwloc_topology_is_thissystem(topo);
	t->nr_packages = count(topo, HWLOC_OBJ_PACKAGE);
	t->nr_cores = count(topo, HWLOC_OBJ_CORE);
	t->nr_pus = count(topo, HWLOC_OBJ_PU);
	for (hwloc_obj_t n = NULL; (n = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE, n));) {
		unsigned node = n->os_index;
		if (node >= SPB_TOPO_MAX_NODES)
			continue;
		if (node + 1 > t->nr_nodes)
			t->nr_nodes = node + 1;
		t->node_mem[node] = n->attr->numanode.local_memory;
		int cpu;
		hwloc_bitmap_foreach_begin(cpu, n->cpuset)
		{
			if (cpu >= 0 && cpu < SPB_TOPO_MAX_CPUS) {
				t->cpu_node[cpu] = (uint8_t)node;
				if ((uint32_t)cpu + 1 > t->nr_cpus)
					t->nr_cpus = (uint32_t)cpu + 1;
			}
		}
		hwloc_bitmap_foreach_end();
	}
	if (t->nr_nodes == 0)
		t->nr_nodes = 1; /* no NUMA node reported: one, node 0 */
	t->cache_l1d = first_cache(topo, HWLOC_OBJ_L1CACHE, &t->cache_line);
	t->cache_l2 = first_cache(topo, HWLOC_OBJ_L2CACHE, NULL);
	t->cache_l3 = first_cache(topo, HWLOC_OBJ_L3CACHE, NULL);
	copy_distances(topo, t);
	hwloc_topology_destroy(topo);
	return true;
}
