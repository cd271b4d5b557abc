/*
 * test_hugetlb.c — real 2 MiB hugetlb backing (needs root).
 *
 * The parent raises vm.nr_hugepages by a few pages, runs the test in a
 * child, and restores the old value whatever the child did (crash
 * included). The child checks that with SPBMALLOC_HUGETLB_2M=1 a claimed
 * pageblock is a pool page (pb_back_hugetlb_2m, rung hugetlb-2m, the pool's
 * free count drops when it is touched) and that releasing it gives the page
 * back to the pool (free count restored, pb_release, rung NONE).
 * Exit 77 (skip) when not root or when the pool cannot be had.
 */
#include "zone_check.h"

#define PB SPB_PB_SIZE
#define NR_PATH "/proc/sys/vm/nr_hugepages"
#define FREE_PATH "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"

static long read_long(const char *path)
{
	char buf[32] = {0};
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	return n > 0 ? atol(buf) : -1;
}

static bool write_long(const char *path, long v)
{
	char buf[32];
	int len = snprintf(buf, sizeof buf, "%ld\n", v);
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return false;
	bool ok = write(fd, buf, (size_t)len) == len;
	close(fd);
	return ok;
}

static int child_main(void)
{
	spb__option_set(OPT_HUGETLB_2M, 1);
	spb__option_set(OPT_DECAY_MS, 0);
	tap_engine_setup();
	long free0 = read_long(FREE_PATH);
	char *p = spb_pages_alloc(PB, 0, SPB_MOVABLE, 0);
	REQUIRE(p);
	CHECK_EQ(ctr(PB_BACK_HUGETLB_2M), 1);
	CHECK_EQ(ctr(PB_BACK_2M_FALLBACK), 0);
	CHECK_EQ(pb_of(p)->rung, SPB_RUNG_HUGETLB_2M);
	memset(p, 0x5a, PB);
	CHECK_EQ(read_long(FREE_PATH), free0 - 1);
	CHECK_EQ(resident_pages(p, PB), SPB_PAGES_PER_PB);
	/* A page run in another hugetlb pageblock of the same SPB (it keeps
	 * the SPB from emptying, which would unmap it whole instead). */
	char *q = spb_pages_alloc(3 * SPB_PAGE_SIZE, 0, SPB_MOVABLE, 0);
	REQUIRE(q);
	CHECK(spb_of(q) == spb_of(p) && pb_of(q) != pb_of(p));
	CHECK_EQ(pb_of(q)->rung, SPB_RUNG_HUGETLB_2M);
	q[0] = 1;
	CHECK_EQ(read_long(FREE_PATH), free0 - 2);
	CHECK_ZONES();
	/* Release (decay 0: at once) hands the pool pages back. */
	uint64_t rel = ctr(PB_RELEASE);
	spb_pages_free(p);
	CHECK_EQ(ctr(PB_RELEASE), rel + 1);
	CHECK_EQ(pb_of(q)->rung, SPB_RUNG_HUGETLB_2M);
	CHECK_EQ(read_long(FREE_PATH), free0 - 1);
	spb_pages_free(q); /* the SPB empties: unmapped whole (decay 0) */
	CHECK_EQ(ctr(SPB_UNMAP), 1);
	CHECK_EQ(read_long(FREE_PATH), free0);
	CHECK_ZONES();
	return check_done("test_hugetlb");
}

int main(void)
{
	if (geteuid() != 0) {
		printf("test_hugetlb: not root, skipped\n");
		return TAP_SKIP;
	}
	long orig = read_long(NR_PATH);
	if (orig < 0 || !write_long(NR_PATH, orig + 4)) {
		printf("test_hugetlb: cannot raise %s, skipped\n", NR_PATH);
		return TAP_SKIP;
	}
	int rc;
	if (read_long(FREE_PATH) < 2) {
		printf("test_hugetlb: no free 2 MiB pages after raising the pool, skipped\n");
		rc = TAP_SKIP;
	} else {
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0) {
			int r = child_main();
			fflush(NULL);
			_exit(r);
		}
		int st = 0;
		rc = pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) ? WEXITSTATUS(st) : 1;
		if (pid > 0 && WIFSIGNALED(st))
			fprintf(stderr, "test_hugetlb: child died of signal %d\n", WTERMSIG(st));
	}
	/* Restore the pool whatever happened above. */
	if (!write_long(NR_PATH, orig) || read_long(NR_PATH) != orig) {
		fprintf(stderr, "test_hugetlb: could not restore %s to %ld\n", NR_PATH, orig);
		rc = 1;
	}
	return rc;
}
