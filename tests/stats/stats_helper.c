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
 *                  segments, as JSON
 * Linked against the static library to reach spb__statseg_publish.
 */
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

static void layout(void)
{
	printf("{\"magic\": %zu, \"version\": %zu, \"seq\": %zu, \"total_size\": %zu, "
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
