/*
 * stats_helper.c — a process that allocates in a pattern the test driver
 * (test_stats.py) controls, line by line on stdin, and answers on stdout:
 *   pattern N M K  N pageblocks MOVABLE (one run), M single pageblocks
 *                  RECLAIMABLE, K 4 KiB pages UNMOVABLE; prints
 *                  "pattern <movable base> <reclaimable bases...>"
 *   publish        write a snapshot into the segment now; prints "ok"
 *   fork           fork a child that allocates, publishes, prints
 *                  "child <pid>", lives 3 s and exits normally
 *   wait           reap the child; prints "ok"
 *   exec           exec /bin/sleep 20 (a program without spbmalloc)
 *   exit           exit(0) (the segment must go away)
 *   layout         print the header offsets the driver needs to forge
 *                  segments (and to write the control slot), as JSON
 *   ctl NAME       spb_ctl(NAME) read in this process: "ctl <value>" or
 *                  "ctl err <errno>"
 *   big MIB        MIB MiB of whole pageblocks (spb_pages_alloc), touched
 *                  and freed; prints "ok"
 *   handles N      N stamped handle objects, 4 in 5 freed; prints "ok"
 *   stamped        whether every live one keeps its stamp: "ok 1" / "ok 0"
 *   rlock          enter a read section (spb_read_lock) and stay in it: a
 *                  compaction's grace period waits; prints "ok"
 *   runlock        leave it; prints "ok"
 * Linked against the static library to reach spb__statseg_publish.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "spbmalloc_stats.h"

static void *must(void *p)
{
	if (!p) {
		fprintf(stderr, "stats_helper: allocation failed\n");
		exit(3);
	}
	return p;
}

static void pattern(unsigned n, unsigned m, unsigned k)
{
	printf("pattern %p", n ? must(spb_pages_alloc((size_t)n << 21, 0, SPB_MOVABLE, 0))
			       : NULL);
	for (unsigned i = 0; i < m; i++)
		printf(" %p", must(spb_pages_alloc((size_t)1 << 21, 0, SPB_RECLAIMABLE, 0)));
	for (unsigned i = 0; i < k; i++)
		must(spb_pages_alloc(4096, 0, SPB_UNMOVABLE, 0));
	printf("\n");
}

#define NH_MAX 100000
static spb_handle_t hs[NH_MAX];
static unsigned nh;

static void handles(unsigned n)
{
	uint64_t seed = 7;
	nh = n < NH_MAX ? n : NH_MAX;
	for (unsigned i = 0; i < nh; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		hs[i] = spb_halloc(64 + (seed >> 33) % 512, 0);
		must((void *)(uintptr_t)hs[i]);
		spb_read_lock();
		*(uint64_t *)spb_hget(hs[i]) = hs[i];
		spb_read_unlock();
	}
	for (unsigned i = 0; i < nh; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		if ((seed >> 33) % 5) {
			spb_hfree(hs[i]);
			hs[i] = 0;
		}
	}
}

static int stamped(void)
{
	int ok = 1;
	spb_read_lock();
	for (unsigned i = 0; i < nh; i++)
		if (hs[i] && *(uint64_t *)spb_hget(hs[i]) != hs[i])
			ok = 0;
	spb_read_unlock();
	return ok;
}

static void layout(void)
{
	printf("{\"ctl\": %zu, \"ctl_req_seq\": %zu, \"ctl_ack_seq\": %zu, \"ctl_lock\": %zu, "
	       "\"ctl_op\": %zu, \"ctl_value\": %zu, \"ctl_result\": %zu, \"ctl_status\": %zu, "
	       "\"ctl_name\": %zu, \"ctl_size\": %zu, ",
	       offsetof(struct spb_stats_header, ctl),
	       offsetof(struct spb_stats_ctl, req_seq), offsetof(struct spb_stats_ctl, ack_seq),
	       offsetof(struct spb_stats_ctl, lock), offsetof(struct spb_stats_ctl, op),
	       offsetof(struct spb_stats_ctl, value), offsetof(struct spb_stats_ctl, result),
	       offsetof(struct spb_stats_ctl, status), offsetof(struct spb_stats_ctl, name),
	       sizeof(struct spb_stats_ctl));
	printf("\"magic\": %zu, \"version\": %zu, \"seq\": %zu, \"total_size\": %zu, "
	       "\"pid\": %zu, \"header_size\": %zu, \"max_spbs\": %zu}\n",
	       offsetof(struct spb_stats_header, magic),
	       offsetof(struct spb_stats_header, version),
	       offsetof(struct spb_stats_header, seq),
	       offsetof(struct spb_stats_header, total_size),
	       offsetof(struct spb_stats_header, pid), sizeof(struct spb_stats_header),
	       offsetof(struct spb_stats_header, max_spbs));
}

int main(void)
{
	char line[256];
	pid_t child = -1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* The first allocation makes the segment and starts the thread. */
	spb_pages_free(must(spb_pages_alloc(4096, 0, SPB_MOVABLE, 0)));
	printf("ready %d\n", (int)getpid());
	while (fgets(line, sizeof line, stdin)) {
		unsigned n, m, k;
		if (sscanf(line, "pattern %u %u %u", &n, &m, &k) == 3) {
			pattern(n, m, k);
		} else if (!strncmp(line, "publish", 7)) {
			spb__statseg_publish();
			printf("ok\n");
		} else if (!strncmp(line, "fork", 4)) {
			fflush(stdout);
			child = fork();
			if (child == 0) {
				must(spb_pages_alloc((size_t)2 << 21, 0, SPB_RECLAIMABLE, 0));
				spb__statseg_publish();
				printf("child %d\n", (int)getpid());
				fflush(stdout);
				sleep(3);
				exit(0);
			}
		} else if (!strncmp(line, "wait", 4)) {
			int st = 0;
			waitpid(child, &st, 0);
			printf("ok %d\n", st);
		} else if (!strncmp(line, "layout", 6)) {
			layout();
		} else if (!strncmp(line, "ctl ", 4)) {
			char name[128];
			long v = 0;
			size_t len = sizeof v;
			if (sscanf(line + 4, "%127s", name) == 1 &&
			    spb_ctl(name, &v, &len, NULL, 0) == 0)
				printf("ctl %ld\n", v);
			else
				printf("ctl err %d\n", errno);
		} else if (sscanf(line, "big %u", &n) == 1) {
			/* The engine's whole pageblocks (malloc is a sanitizer's
			 * in sanitizer builds). */
			char *p = must(spb_pages_alloc((size_t)n << 20, 0, SPB_UNMOVABLE, 0));
			memset(p, 1, (size_t)n << 20);
			spb_pages_free(p);
			printf("ok\n");
		} else if (sscanf(line, "handles %u", &n) == 1) {
			handles(n);
			printf("ok\n");
		} else if (!strncmp(line, "rlock", 5)) {
			spb_read_lock();
			printf("ok\n");
		} else if (!strncmp(line, "runlock", 7)) {
			spb_read_unlock();
			printf("ok\n");
		} else if (!strncmp(line, "stamped", 7)) {
			printf("ok %d\n", stamped());
		} else if (!strncmp(line, "exec", 4)) {
			/* becomes a program without spbmalloc: the segment stays */
			execl("/bin/sleep", "sleep", "20", (char *)NULL);
			exit(4);
		} else if (!strncmp(line, "exit", 4)) {
			exit(0);
		}
	}
	return 0;
}
