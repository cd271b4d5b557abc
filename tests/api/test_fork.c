/*
 * test_fork.c — fork while other threads allocate: many forks, each child
 * allocates and frees (small blocks in every class, page runs, pageblocks,
 * a thread of its own), checks its heap hands out distinct blocks and its
 * counters balance, takes every allocator lock (spb_trim, counters) and
 * exits 0 within a timeout; a child that deadlocks on a lock held at fork
 * time is killed and reported. Then forks while threads allocate and free
 * handles (the handle table's free-index lock), each child allocating
 * handles itself. Then posix_spawn and fork+exec of /bin/true from the
 * threaded program.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>

#include "mtest.h"

extern char **environ;

#define KiB ((size_t)1024)
#define MiB (KiB * 1024)

static atomic_int stop;
static atomic_ulong churn_ops;

/* Allocates and frees constantly, small and large, some cross-thread. */
static void *churn(void *arg)
{
	uint64_t s = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
	void *keep[256] = {0};
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		unsigned i = (unsigned)(mt_rand(&s) % 256);
		T_FREE(keep[i]);
		uint64_t r = mt_rand(&s);
		size_t n = (r & 63) == 0 ? 1 + (r >> 8) % (3 * MiB) : 1 + (r >> 8) % 4096;
		keep[i] = T_MALLOC(n);
		if (keep[i])
			memset(keep[i], (int)i, n < 128 ? n : 128);
		/* Leave the CPU to the children now and then (2 shared cores). */
		if ((atomic_fetch_add_explicit(&churn_ops, 1, memory_order_relaxed) & 1023) == 0)
			usleep(200);
	}
	for (int i = 0; i < 256; i++)
		T_FREE(keep[i]);
	return NULL;
}

static void *child_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2000; i++) {
		void *p = T_MALLOC((size_t)(i % 500) + 1);
		if (!p)
			return (void *)1;
		T_FREE(p);
	}
	return NULL;
}

/* What a child does: returns its exit code (0 = consistent). */
static int child_work(int iter)
{
	enum { N = 2000 };
	static void *blk[N];
	static size_t len[N];
	uint64_t s = (uint64_t)iter * 31 + 7;
	uint64_t a0 = spb_counter_get("malloc_alloc_bytes");
	uint64_t f0 = spb_counter_get("malloc_free_bytes");
	uint64_t n0 = spb_counter_get("malloc_alloc");
	/* Every small class (adopting the spans the parent's threads left),
	 * page runs, and a few pageblocks; each block stamped with its index
	 * so two blocks handed out twice would show. */
	for (int i = 0; i < N; i++) {
		uint64_t r = mt_rand(&s);
		len[i] = i % 100 == 99 ? 200 * KiB + (r % (3 * MiB)) : 8 + r % (128 * KiB / 8);
		blk[i] = T_MALLOC(len[i]);
		if (!blk[i])
			return 2;
		mt_stamp(blk[i], len[i], (uint64_t)i);
	}
	for (int i = 0; i < N; i++)
		if (!mt_stamp_ok(blk[i], len[i], (uint64_t)i))
			return 3;
#ifndef __SANITIZE_THREAD__
	/* ThreadSanitizer cannot start threads in the child of a threaded
	 * fork ("dup thread with used id"): the TSan build skips this, and
	 * runs with SPBMALLOC_BG=0 (tests/api/CMakeLists.txt). */
	pthread_t t;
	void *tr = (void *)1;
	if (pthread_create(&t, NULL, child_thread, NULL) || pthread_join(t, &tr) || tr)
		return 4;
#else
	if (child_thread(NULL))
		return 4;
#endif
	for (int i = 0; i < N; i++)
		T_FREE(blk[i]);
	/* The child's own traffic balances: what it allocated it freed. */
	uint64_t da = spb_counter_get("malloc_alloc_bytes") - a0;
	uint64_t df = spb_counter_get("malloc_free_bytes") - f0;
	if (da != df || spb_counter_get("malloc_alloc") - n0 < N + 2000)
		return 5;
	spb_trim(); /* every zone lock, the abandoned list, the heaps list */
	spb_decay();
	return 0;
}

/* Wait for pid at most secs; kill it if it hangs. Returns wait status or -1. */
static int wait_timeout(pid_t pid, double secs)
{
	double end = mt_now() + secs;
	int st;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0)
			return -1;
		if (mt_now() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(1000);
	}
}

static void test_fork_under_churn(void)
{
	enum { THREADS = 2 };
#ifdef SPB_TEST_ENGINE
	int forks = 20; /* sanitizers: each fork copies the shadow mappings */
#else
	int forks = 40;
#endif
	pthread_t t[THREADS];
	for (uintptr_t i = 0; i < THREADS; i++)
		REQUIRE(pthread_create(&t[i], NULL, churn, (void *)(i + 1)) == 0);
	int hung = 0, failed = 0;
	double t0 = mt_now();
	for (int i = 0; i < forks; i++) {
		/* Let the threads get going between forks. */
		unsigned long ops = atomic_load(&churn_ops);
		while (atomic_load(&churn_ops) < ops + 2000)
			sched_yield();
		fflush(NULL);
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			int rc = child_work(i);
			if (i & 1)
				_exit(rc);
			exit(rc); /* runs the library's destructors too */
		}
		int st = wait_timeout(pid, 15);
		if (st == -1) {
			hung++;
			fprintf(stderr, "fork %d: child hung (killed after 15 s)\n", i);
		} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			failed++;
			fprintf(stderr, "fork %d: child %s %d\n", i,
				WIFEXITED(st) ? "exited" : "killed by signal",
				WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		}
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(hung, 0);
	CHECK_EQ(failed, 0);
	CHECK(atomic_load(&churn_ops) > (unsigned long)forks * 2000);
	printf("fork: %d forks under %d churning threads in %.2f s (%lu churn ops)\n", forks,
	       THREADS, mt_now() - t0, atomic_load(&churn_ops));
}

/* Handles allocated and freed in bursts: the thread's cache of free
 * indices refills from, and spills to, the table's global list under its
 * lock every 32 calls. */
static void *churn_handles(void *arg)
{
	(void)arg;
	enum { B = 200 };
	spb_handle_t h[B];
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (int i = 0; i < B; i++)
			h[i] = spb_halloc(32, 0);
		for (int i = 0; i < B; i++)
			spb_hfree(h[i]);
		atomic_fetch_add_explicit(&churn_ops, 1, memory_order_relaxed);
	}
	return NULL;
}

static int child_handles(void)
{
	enum { N = 500 };
	static spb_handle_t h[N];
	for (int i = 0; i < N; i++) {
		h[i] = spb_halloc(64, 0);
		if (!h[i])
			return 2;
		spb_read_lock();
		*(int *)spb_hget(h[i]) = i;
		spb_read_unlock();
	}
	for (int i = 0; i < N; i++) {
		spb_read_lock();
		int v = *(int *)spb_hget(h[i]);
		spb_read_unlock();
		if (v != i)
			return 3;
		spb_hfree(h[i]);
	}
	return 0;
}

static void test_fork_handles(void)
{
	atomic_store(&stop, 0);
	spb_hfree(spb_halloc(16, 0)); /* the table exists before any fork */
	pthread_t t[2];
	for (uintptr_t i = 0; i < 2; i++)
		REQUIRE(pthread_create(&t[i], NULL, churn_handles, NULL) == 0);
	int hung = 0, failed = 0, forks = 0;
	double t0 = mt_now();
	for (; forks < 200 && !hung; forks++) {
		unsigned long ops = atomic_load(&churn_ops);
		while (atomic_load(&churn_ops) < ops + 2)
			sched_yield();
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0)
			_exit(child_handles());
		int st = wait_timeout(pid, 10);
		if (st == -1) {
			hung++;
			fprintf(stderr, "handle fork %d: child hung (killed after 10 s)\n", forks);
		} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			failed++;
		}
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(hung, 0);
	CHECK_EQ(failed, 0);
	printf("handle fork: %d forks under 2 threads churning handles in %.2f s\n", forks,
	       mt_now() - t0);
}

static void test_spawn_exec(void)
{
	atomic_store(&stop, 0);
	pthread_t t[2];
	for (uintptr_t i = 0; i < 2; i++)
		REQUIRE(pthread_create(&t[i], NULL, churn, (void *)(i + 10)) == 0);
	int bad = 0;
	double t0 = mt_now();
	for (int i = 0; i < 40; i++) {
		char *argv[] = {"/bin/true", NULL};
		pid_t pid;
		if (i & 1) {
			CHECK_EQ(posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ), 0);
		} else {
			pid = fork();
			if (pid == 0) {
				execve("/bin/true", argv, environ);
				_exit(127);
			}
		}
		int st = wait_timeout(pid, 15);
		if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			bad++;
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(bad, 0);
	printf("spawn/exec: 40 runs of /bin/true in %.2f s\n", mt_now() - t0);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	uint64_t a0 = spb_counter_get("malloc_alloc");
	test_fork_under_churn();
	test_fork_handles();
	test_spawn_exec();
	/* The parent's threads went through spbmalloc. */
	CHECK(spb_counter_get("malloc_alloc") - a0 > atomic_load(&churn_ops) / 2);
	return check_done("test_fork");
}
