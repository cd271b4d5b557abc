/*
 * test_topo_bg.c — hwloc's discovery as a program gets it: on the
 * background thread, with every allocation hwloc makes served by
 * spbmalloc itself (this program's malloc), while other threads allocate
 * and the process forks. Then, when HWLOC_SYNTHETIC presents more nodes
 * than the kernel has (tests/api/CMakeLists.txt registers a 4-node run):
 * the zones are there, a thread on CPU 1 allocates from zone 1, whose
 * binding the kernel refuses (counted), and the memory is still there:
 * written, and on node 0 according to move_pages.
 */
#define _GNU_SOURCE
#include <numaif.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>

#include "mtest.h"

static int kernel_nodes(void)
{
	int n = 0;
	char path[64];
	struct stat st;
	for (;; n++) {
		snprintf(path, sizeof path, "/sys/devices/system/node/node%d", n);
		if (n >= 64 || stat(path, &st) != 0)
			break;
	}
	return n ? n : 1;
}

static volatile int stop;

static void *churn(void *arg)
{
	uint64_t seed = (uintptr_t)arg;
	void *v[64] = {0};
	while (!stop) {
		unsigned i = (unsigned)(mt_rand(&seed) % 64);
		free(v[i]);
		v[i] = malloc(mt_rand(&seed) % 4096 + 1);
	}
	for (int i = 0; i < 64; i++)
		free(v[i]);
	return NULL;
}

/* The node of every page of [p, p+len), if all agree; -2 otherwise. */
static int pages_node(char *p, size_t len)
{
	enum { N = 256 };
	void *pages[N];
	int status[N];
	unsigned long n = len / 4096 < N ? len / 4096 : N;
	for (unsigned long i = 0; i < n; i++)
		pages[i] = p + i * 4096;
	if (move_pages(0, n, pages, NULL, status, 0) != 0)
		return -3;
	for (unsigned long i = 1; i < n; i++)
		if (status[i] != status[0])
			return -2;
	return status[0];
}

struct on1 {
	char *p;
	int cpu;
};

static void *alloc_on_cpu1(void *v)
{
	struct on1 *o = v;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(1, &set);
	if (sched_setaffinity(0, sizeof set, &set) != 0)
		return NULL;
	o->cpu = sched_getcpu();
	o->p = malloc(1 << 20);
	if (o->p)
		memset(o->p, 0x77, 1 << 20);
	return NULL;
}

int main(void)
{
	/* Threads allocating while the background thread, started by the
	 * first malloc, runs hwloc. */
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		REQUIRE(pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1)) == 0);
	/* A fork while the discovery may be under way: the child allocates
	 * and exits cleanly (its topology is sysfs's, or the parent's). */
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		void *p = malloc(12345);
		_exit(p && spb_counter_get("topo_sysfs") == 1 ? 0 : 1);
	}
	int st = 0;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* The discovery is done once (a liveness wait, not a timing check). */
	double until = mt_now() + 60;
	while (mt_counter("topo_hwloc") + mt_counter("topo_hwloc_fail") == 0 && mt_now() < until)
		usleep(10000);
	stop = 1;
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(mt_counter("topo_hwloc"), 1);
	CHECK_EQ(mt_counter("topo_hwloc_fail"), 0);
	CHECK_EQ(mt_counter("topo_sysfs"), 1);

	const char *syn = getenv("HWLOC_SYNTHETIC");
	if (!syn) {
		CHECK_EQ(mt_counter("topo_zone_add"), 0);
		return check_done("test_topo_bg");
	}
	int want = atoi(getenv("SPB_TEST_NODES") ? getenv("SPB_TEST_NODES") : "0");
	REQUIRE(want > 1);
	int kn = kernel_nodes();
	CHECK_EQ(mt_counter("topo_zone_add"), (uint64_t)(want > kn ? want - kn : 0));
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) != 0 || !CPU_ISSET(1, &set)) {
		printf("# SKIP CPU 1 is not allowed here: no allocation on node 1\n");
		return check_done("test_topo_bg");
	}
	struct on1 o = {0};
	pthread_t th;
	REQUIRE(pthread_create(&th, NULL, alloc_on_cpu1, &o) == 0);
	pthread_join(th, NULL);
	REQUIRE(o.cpu == 1 && o.p);
	CHECK(o.p[0] == 0x77 && o.p[(1 << 20) - 1] == 0x77);
	if (kn < 2) { /* node 1 is hwloc's, not the kernel's */
		/* Zone 1's SPB was refused its binding (by this allocation, or
		 * by a churn thread's on CPU 1 before it): counted, and the
		 * range has no policy of ours; its pages are on node 0. */
		CHECK(mt_counter("numa_bind_fail") >= 1);
		int mode = -1;
		CHECK(get_mempolicy(&mode, NULL, 0, o.p, MPOL_F_ADDR) == 0 && mode == MPOL_DEFAULT);
		CHECK_EQ(pages_node(o.p, 1 << 20), 0);
	}
	free(o.p);
	return check_done("test_topo_bg");
}
