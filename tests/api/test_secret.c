/*
 * test_secret.c — the SECRET class (spb_secret_alloc/free): contents
 * unreadable through /proc/PID/mem (memfd_secret), out of core dumps
 * (VmFlags dd), absent in a forked child (reads zero, its free ignored),
 * wiped on free and on reuse, free()/realloc() of a secret pointer, death
 * of spb_secret_free on a pointer that is not secret, several threads,
 * small and large sizes, and a clean ENOMEM under RLIMIT_MEMLOCK.
 * Run twice by ctest: with memfd_secret (skipping its checks with a
 * reason where the kernel has none) and with SPBMALLOC_SECRET_MEMFD=0
 * (the mlock fallback).
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "mtest.h"

static bool memfd_mode; /* pageblocks are memfd_secret in this run */

/* The VmFlags line of the VMA holding p (/proc/self/smaps), or "". */
static void vmflags_of(const void *p, char *out, size_t cap)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false;
	out[0] = 0;
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			snprintf(out, cap, "%s", line + 8);
			break;
		}
	}
	fclose(f);
}

static bool has_flag(const char *flags, const char *f)
{
	char pat[8];
	snprintf(pat, sizeof pat, " %s ", f);
	char buf[600];
	snprintf(buf, sizeof buf, " %s", flags);
	for (char *c = buf; *c; c++)
		if (*c == '\n')
			*c = ' ';
	return strstr(buf, pat) != NULL;
}

static bool all_zero(const void *p, size_t off, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = off; i < n; i++)
		if (c[i])
			return false;
	return true;
}

static void test_basic(void)
{
	static const size_t sizes[] = {1, 16, 100, 1000, 4096, 40000, 128 * 1024,
				       300 * 1024, 2u << 20, 5u << 20};
	void *p[sizeof sizes / sizeof sizes[0]];
	uint64_t m0 = mt_counter("secret_pb_memfd"), a0 = mt_counter("secret_pb_anon");
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		p[i] = spb_secret_alloc(sizes[i]);
		REQUIRE(p[i] != NULL);
		CHECK(all_zero(p[i], 0, sizes[i]));
		mt_stamp(p[i], sizes[i], i + 1);
		char fl[512];
		vmflags_of(p[i], fl, sizeof fl);
		CHECK(has_flag(fl, "dd")); /* out of core dumps */
		if (!memfd_mode) {
			CHECK(has_flag(fl, "lo")); /* mlocked */
			CHECK(has_flag(fl, "wf")); /* MADV_WIPEONFORK */
		}
		if (!has_flag(fl, "dd"))
			fprintf(stderr, "size %zu: VmFlags%s", sizes[i], fl);
	}
	uint64_t m1 = mt_counter("secret_pb_memfd"), a1 = mt_counter("secret_pb_anon");
	if (memfd_mode) {
		CHECK(m1 > m0);
		CHECK_EQ(a1, a0);
	} else {
		CHECK(a1 > a0);
		CHECK_EQ(m1, m0);
	}
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
		CHECK(mt_stamp_ok(p[i], sizes[i], i + 1));
	/* Wiped on free: a small block keeps only its free-list link (its
	 * first 8 bytes); a page run reads zero. (Reads of freed memory on
	 * purpose: the pageblock stays mapped until the decay delay.) */
	uint64_t f0 = mt_counter("secret_free");
	spb_secret_free(p[3]);
	CHECK(all_zero(p[3], 8, 1000));
	T_FREE(p[5]); /* free() works too */
	CHECK(all_zero(p[5], 8, 40000));
	T_FREE(p[7]);
	CHECK(all_zero(p[7], 0, 300 * 1024));
	spb_secret_free(p[8]);
	CHECK(all_zero(p[8], 0, 2u << 20));
	CHECK(mt_counter("secret_free") >= f0 + 4);
	/* Reuse reads zero. */
	void *q = spb_secret_alloc(1000);
	REQUIRE(q);
	CHECK(all_zero(q, 0, 1000));
	void *r = spb_secret_alloc(40000);
	REQUIRE(r);
	CHECK(all_zero(r, 0, 40000));
	/* realloc keeps it secret (spb_secret_free accepts the result). */
	void *g = T_REALLOC(q, 20000);
	REQUIRE(g);
	g = T_REALLOC(g, 500000);
	REQUIRE(g);
	spb_secret_free(g);
	spb_secret_free(r);
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
		if (i != 3 && i != 5 && i != 7 && i != 8)
			spb_secret_free(p[i]);
	spb_secret_free(NULL);
	/* The engine's entry points take SECRET too. */
	void *pg = spb_pages_alloc(3 * 4096, 0, SPB_SECRET, SPB_F_ZERO);
	REQUIRE(pg);
	CHECK(spb_secret_alloc((size_t)2 << 30) == NULL && errno == ENOMEM);
	memset(pg, 0x5a, 3 * 4096);
	spb_pages_free(pg);
	CHECK(all_zero(pg, 0, 3 * 4096));
#ifndef SPB_TEST_ENGINE
	void *mc = spb_malloc_class(64, SPB_SECRET, SPB_F_ZERO);
	REQUIRE(mc);
	spb_secret_free(mc);
	CHECK(spb_set_thread_class(SPB_SECRET) == -1 && errno == EINVAL);
#endif
}

/* Another process (root, same uid) reads our secret through
 * /proc/PID/mem: refused for memfd_secret. */
static void test_proc_mem(void)
{
	if (!memfd_mode) {
		printf("proc_mem: skipped (anonymous fallback: root can read mlocked memory)\n");
		return;
	}
	unsigned char *p = spb_secret_alloc(4096);
	REQUIRE(p);
	memset(p, 0xa7, 4096);
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/mem", (int)parent);
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			_exit(3);
		unsigned char buf[4096];
		ssize_t n = pread(fd, buf, sizeof buf, (off_t)(uintptr_t)p);
		close(fd);
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] == 0xa7)
				_exit(1); /* read the secret */
		_exit(n > 0 ? 2 : 0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fprintf(stderr, "proc_mem child: status %d\n", st);
	/* Sanity: /proc/PID/mem reads other memory fine. */
	unsigned char *plain = T_MALLOC(64);
	REQUIRE(plain);
	memset(plain, 0x3c, 64);
	int fd = open("/proc/self/mem", O_RDONLY);
	unsigned char buf[64] = {0};
	CHECK(fd >= 0 && pread(fd, buf, 64, (off_t)(uintptr_t)plain) == 64 && buf[10] == 0x3c);
	close(fd);
	T_FREE(plain);
	spb_secret_free(p);
}

/* A forked child never sees the parent's secret: an inherited pointer
 * reads zero, its free is ignored, and new secret memory works there. */
static void test_fork(void)
{
	unsigned char *small = spb_secret_alloc(200);
	unsigned char *big = spb_secret_alloc(3u << 20);
	REQUIRE(small && big);
	memset(small, 0xc3, 200);
	memset(big, 0xc3, 3u << 20);
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		int bad = 0;
		if (!all_zero(small, 0, 200) || !all_zero(big, 0, 3u << 20))
			bad |= 1;
		uint64_t ig = spb_counter_get("secret_free_inherited");
		spb_secret_free(small);
		T_FREE(big);
		if (spb_counter_get("secret_free_inherited") != ig + 2)
			bad |= 2;
		if (spb_counter_get("secret_fork_lost") == 0)
			bad |= 4;
		/* New secrets in the child, small and large, and plain malloc. */
		for (int i = 0; i < 2000; i++) {
			unsigned char *x = spb_secret_alloc(16 + (size_t)i % 700);
			if (!x || !all_zero(x, 0, 16 + (size_t)i % 700)) {
				bad |= 8;
				break;
			}
			memset(x, 1, 16 + (size_t)i % 700);
			if (i % 3)
				spb_secret_free(x);
		}
		void *l = spb_secret_alloc(1u << 20);
		if (!l)
			bad |= 16;
		spb_secret_free(l);
		void *m = T_MALLOC(1000);
		if (!m)
			bad |= 32;
		T_FREE(m);
		_exit(bad);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fprintf(stderr, "fork child: status 0x%x\n", st);
	/* The parent's are intact. */
	bool ok = true;
	for (size_t i = 0; i < 200; i++)
		ok &= small[i] == 0xc3;
	for (size_t i = 0; i < (3u << 20); i += 4096)
		ok &= big[i] == 0xc3;
	CHECK(ok);
	spb_secret_free(small);
	spb_secret_free(big);
}

static void bad_secret_free(void *arg)
{
	(void)arg;
	void *p = T_MALLOC(100);
	spb_secret_free(p);
}

static void test_bad_free(void)
{
	char out[512];
	int st = check_death(bad_secret_free, NULL, out, sizeof out);
	CHECK(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	CHECK(strstr(out, "spb_secret_free(): invalid pointer (not secret memory)") != NULL);
	int lines = 0;
	for (char *c = out; *c; c++)
		lines += *c == '\n';
	CHECK_EQ(lines, 1);
}

struct thr {
	uint64_t seed, salt;
	int bad;
};

static void *thread_main(void *arg)
{
	struct thr *t = arg;
	enum { N = 256 };
	unsigned char *v[N] = {0};
	size_t sz[N] = {0};
	for (int it = 0; it < 20000; it++) {
		unsigned k = (unsigned)(mt_rand(&t->seed) % N);
		if (v[k]) {
			if (!mt_stamp_ok(v[k], sz[k], k + t->salt))
				t->bad++;
			spb_secret_free(v[k]);
			v[k] = NULL;
			continue;
		}
		uint64_t r = mt_rand(&t->seed);
		sz[k] = r % 64 == 0 ? 4096 + r % (600 * 1024) : 1 + r % 2000;
		v[k] = spb_secret_alloc(sz[k]);
		if (!v[k] || !all_zero(v[k], 0, sz[k])) {
			t->bad++;
			continue;
		}
		mt_stamp(v[k], sz[k], k + t->salt);
	}
	for (int k = 0; k < N; k++)
		if (v[k])
			T_FREE(v[k]);
	return NULL;
}

static void test_threads(void)
{
	enum { T = 4 };
	pthread_t th[T];
	struct thr t[T];
	for (int i = 0; i < T; i++) {
		t[i].seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
		t[i].salt = (uint64_t)i * 1000;
		t[i].bad = 0;
		REQUIRE(pthread_create(&th[i], NULL, thread_main, &t[i]) == 0);
	}
	for (int i = 0; i < T; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ(t[i].bad, 0);
	}
}

/* Without CAP_IPC_LOCK and with RLIMIT_MEMLOCK at 0, no pageblock can be
 * made secret: a clean ENOMEM, counted (in a child: the limit stays). */
static void test_memlock(void)
{
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		struct {
			uint32_t version;
			int pid;
		} hdr = {0x20080522, 0}; /* _LINUX_CAPABILITY_VERSION_3 */
		struct {
			uint32_t effective, permitted, inheritable;
		} data[2];
		if (syscall(SYS_capget, &hdr, data) == 0) {
			data[0].effective &= ~(1u << 14); /* CAP_IPC_LOCK */
			syscall(SYS_capset, &hdr, data);
		}
		struct rlimit rl = {0, 0};
		if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
			_exit(3);
		uint64_t f0 = spb_counter_get("secret_flip_fail");
		errno = 0;
		void *p = spb_secret_alloc(100);
		if (p) /* still allowed (a capability we could not drop) */
			_exit(77);
		if (errno != ENOMEM)
			_exit(1);
		if (spb_counter_get("secret_flip_fail") <= f0 ||
		    spb_counter_get("secret_nomem") == 0)
			_exit(2);
		void *m = T_MALLOC(100); /* the rest of the allocator still works */
		T_FREE(m);
		_exit(m ? 0 : 4);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
		printf("memlock: skipped (could not drop CAP_IPC_LOCK)\n");
		return;
	}
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fprintf(stderr, "memlock child: status 0x%x\n", st);
}

int main(void)
{
	const char *e = getenv("SPBMALLOC_SECRET_MEMFD");
	memfd_mode = !(e && e[0] == '0');
	if (memfd_mode) {
#ifdef SYS_memfd_secret
		int fd = (int)syscall(SYS_memfd_secret, 0);
#else
		int fd = (int)syscall(447, 0);
#endif
		if (fd < 0) {
			printf("SKIPPED: memfd_secret unavailable (%s); the fallback runs as "
			       "api.test_secret_anon\n", strerror(errno));
			return MT_SKIP;
		}
		close(fd);
	}
	test_basic();
	test_proc_mem();
	test_fork();
	test_bad_free();
	test_threads();
	test_memlock();
	return check_done(memfd_mode ? "test_secret (memfd_secret)" : "test_secret (anon)");
}
