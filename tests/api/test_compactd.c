/*
 * test_compactd.c — the compaction thread compacts with no call from the
 * program, and SPBMALLOC_COMPACT=0 keeps it off.
 *
 * 1. 96 MiB of handle objects (16-2,000 bytes, each stamped with its
 *    handle through a pin), a random 90 % freed; then the program only
 *    sleeps. Within 15 s a thread named spb-compact exists, its
 *    controller started (compact_ctl_start), moved objects
 *    (compact_moved), emptied spans (compact_spans_freed) and went idle
 *    again (compact_ctl_stop under its stop mark, or compact_futile when a
 *    pass gained nothing more), and the process's RSS fell by at least half
 *    of what the free
 *    left behind. Every survivor keeps its stamp.
 * 2. fork: the child (its parent's thread is not inherited) allocates and
 *    frees handles of its own; its own spb-compact comes up and moves
 *    them, and the parent's objects it inherited keep their stamps.
 * 3. The same program again (re-executed) with SPBMALLOC_COMPACT=0: no
 *    thread, nothing moved.
 */
#include <dirent.h>
#include <stdbool.h>
#include <string.h>

#include "mtest.h"

#define TOTAL ((size_t)96 << 20)

static bool has_thread(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	bool found = false;
	if (!d)
		return false;
	while (!found && (de = readdir(d)) != NULL) {
		char path[300], comm[64] = "";
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/self/task/%s/comm", de->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof comm, f))
			comm[strcspn(comm, "\n")] = 0;
		fclose(f);
		found = strcmp(comm, name) == 0;
	}
	closedir(d);
	return found;
}

static spb_handle_t *hs;
static size_t n;

static void build_and_free(void)
{
	uint64_t seed = 42;
	size_t bytes = 0, cap = TOTAL / 64;
	hs = calloc(cap, sizeof *hs);
	REQUIRE(hs);
	while (bytes < TOTAL && n < cap) {
		size_t sz = 16 + mt_rand(&seed) % 1985;
		spb_handle_t h = spb_halloc(sz, 0);
		REQUIRE(h);
		uint64_t *p = spb_hpin(h);
		p[0] = h;
		spb_hunpin(h);
		hs[n++] = h;
		bytes += sz;
	}
	for (size_t i = 0; i < n; i++)
		if (mt_rand(&seed) % 10) {
			spb_hfree(hs[i]);
			hs[i] = 0;
		}
}

static bool stamps_ok(void)
{
	return mt_handles_stamped(hs, n);
}

static int off_mode(void)
{
	build_and_free();
	sleep(2);
	CHECK(!has_thread("spb-compact"));
	CHECK_EQ(mt_counter("compact_moved"), 0);
	CHECK(stamps_ok());
	return check_done("test_compactd (SPBMALLOC_COMPACT=0)");
}

int main(int argc, char **argv)
{
	(void)argc;
	if (getenv("SPBMALLOC_COMPACT") && strcmp(getenv("SPBMALLOC_COMPACT"), "0") == 0)
		return off_mode();

	size_t rss0 = mt_rss();
	build_and_free();
	size_t rss1 = mt_rss();
	double t0 = mt_now(), t_done = 0;
	size_t rss = rss1;
	while (mt_now() - t0 < 15) {
		usleep(250 * 1000);
		rss = mt_rss();
		bool rss_ok = rss < rss1 && rss1 - rss > (rss1 - rss0) / 2;
#ifdef SPB_TEST_ENGINE
		rss_ok = true;
#endif
		/* The controller went idle: under its stop mark, or it found
		 * nothing more to gain (a heap this small ends near both). */
		bool idle = mt_counter("compact_ctl_stop") + mt_counter("compact_futile") > 0;
		if (!t_done && idle && rss_ok)
			t_done = mt_now() - t0;
		if (t_done)
			break;
	}
	printf("test_compactd: RSS %zu MiB before, %zu after the free, %zu after %.1f s; "
	       "moved %" PRIu64 " objects (%" PRIu64 " KiB), %" PRIu64 " spans freed, %" PRIu64
	       " passes, %" PRIu64 " grace periods, %" PRIu64 " ms CPU\n",
	       rss0 >> 20, rss1 >> 20, rss >> 20, mt_now() - t0, mt_counter("compact_moved"),
	       mt_counter("compact_moved_bytes") >> 10, mt_counter("compact_spans_freed"),
	       mt_counter("compact_passes"), mt_counter("compact_grace"),
	       mt_counter("compact_cpu_us") / 1000);
	CHECK(has_thread("spb-compact"));
	CHECK(mt_counter("compact_ctl_start") >= 1);
	CHECK(mt_counter("compact_moved") > 0);
	CHECK(mt_counter("compact_spans_freed") > 0);
	CHECK(mt_counter("compact_ctl_stop") + mt_counter("compact_futile") >= 1);
#ifndef SPB_TEST_ENGINE /* sanitizer builds: their shadow memory is the RSS */
	CHECK(rss < rss1 && rss1 - rss > (rss1 - rss0) / 2);
#endif
	CHECK(stamps_ok());

	/* A forked child comes up with a working compaction thread of its own
	 * (the parent's is not inherited; the child's first handles start it).
	 * Not under a sanitizer: TSan cannot start threads in the child of a
	 * threaded fork. */
#ifndef SPB_TEST_ENGINE
	fflush(NULL);
	pid_t kid = fork();
	if (kid == 0) {
		uint64_t m0 = mt_counter("compact_moved");
		uint64_t seed2 = 77;
		size_t k = 0, cap = (32u << 20) / 200;
		spb_handle_t *v = calloc(cap, sizeof *v);
		if (!v)
			_exit(2);
		for (size_t b = 0; b < (32u << 20) && k < cap; k++) {
			size_t sz = 16 + mt_rand(&seed2) % 400;
			v[k] = spb_halloc(sz, 0);
			*(uint64_t *)spb_hpin(v[k]) = v[k];
			spb_hunpin(v[k]);
			b += sz;
		}
		for (size_t i = 0; i < k; i++)
			if (mt_rand(&seed2) % 10) {
				spb_hfree(v[i]);
				v[i] = 0;
			}
		for (int i = 0; i < 100 && mt_counter("compact_moved") == m0; i++)
			usleep(100 * 1000);
		bool ok = has_thread("spb-compact") && mt_counter("compact_moved") > m0 &&
			  mt_handles_stamped(v, k) && stamps_ok();
		printf("test_compactd: forked child: thread %s, moved %" PRIu64 " objects\n",
		       has_thread("spb-compact") ? "up" : "missing", mt_counter("compact_moved") - m0);
		fflush(NULL);
		_exit(ok ? 0 : 3);
	}
	int kst = 0;
	waitpid(kid, &kst, 0);
	CHECK(WIFEXITED(kst) && WEXITSTATUS(kst) == 0);
#endif

	/* The same with the thread off. */
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		setenv("SPBMALLOC_COMPACT", "0", 1);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	for (size_t i = 0; i < n; i++)
		spb_hfree(hs[i]);
	free(hs);
	return check_done("test_compactd");
}
