/*
 * test_foreign.c — pointers that are not ours are detected, not trusted.
 *
 * spb__region_of finds no region for stack, global, glibc-heap, mmap'd,
 * NULL and non-canonical addresses. spb_pages_free of a foreign pointer,
 * a double free and an interior pointer each end the process (SIGABRT)
 * after one line on stderr naming the fault and the address; each case
 * runs in a forked child whose stderr is captured through a pipe.
 */
#include <sys/resource.h>

#include "zone_check.h"

#define PB SPB_PB_SIZE
#define PG SPB_PAGE_SIZE

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);

static int global_var;

static void child_free(void *p)
{
	struct rlimit no_core = {0, 0};
	setrlimit(RLIMIT_CORE, &no_core); /* no core file for the expected abort */
	spb_pages_free(p);
}

static void expect_death(void *p, const char *what, int line)
{
	char out[512], want[256];
	int st = check_death(child_free, p, out, sizeof out);
	REQUIRE(st != -1);
	int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
	snprintf(want, sizeof want, "spbmalloc: %s: %p\n", what, p);
	if (sig != SIGABRT || strcmp(out, want) != 0)
		fprintf(stderr, "line %d: signal %d, stderr \"%s\", expected \"%s\"\n", line, sig,
			out, want);
	CHECK_EQ(sig, SIGABRT);
	CHECK(strcmp(out, want) == 0);
}

#define NOT_OURS "free(): invalid pointer (not allocated by spbmalloc)"
#define INTERIOR "free(): invalid pointer (inside an allocation, not its start)"
#define PB_FREE "free(): double free or invalid pointer (pageblock is free)"
#define DOUBLE "free(): double free detected"

int main(void)
{
	struct spb_zone *z = tap_engine_setup();
	int stack_var = 0;
	void *heap = __libc_malloc(100);
	void *m = mmap(NULL, 2 * PB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(heap && m != MAP_FAILED);

	/* Live allocations so the map is populated around the foreign ones. */
	char *run = spb_pages_alloc(2 * PG, 0, SPB_UNMOVABLE, 0);
	char *other = spb_pages_alloc(PG, 0, SPB_UNMOVABLE, 0);
	char *multi = spb_pages_alloc(3 * PB, 0, SPB_MOVABLE, 0);
	char *large = spb_pages_alloc(SPB_SPB_SIZE + PG, 0, SPB_MOVABLE, 0);
	REQUIRE(run && other && multi && large);
	CHECK(pb_of(run) == pb_of(other));

	CHECK(spb__region_of(&stack_var) == NULL);
	CHECK(spb__region_of(&global_var) == NULL);
	CHECK(spb__region_of(heap) == NULL);
	CHECK(spb__region_of(m) == NULL);
	CHECK(spb__region_of((char *)m + PB) == NULL);
	CHECK(spb__region_of(NULL) == NULL);
	CHECK(spb__region_of((void *)0xffff800000001000ull) == NULL);
	CHECK(spb__region_of((void *)((uintptr_t)1 << 47)) == NULL);
	CHECK(spb__region_of(run) != NULL);
	CHECK(spb__region_of(large) != NULL);
	CHECK_EQ(spb_pages_usable_size(&stack_var), 0);
	CHECK_EQ(spb_pages_usable_size(heap), 0);
	CHECK_EQ(spb_pages_usable_size(m), 0);

	/* Foreign pointers. */
	expect_death(&stack_var, NOT_OURS, __LINE__);
	expect_death(&global_var, NOT_OURS, __LINE__);
	expect_death(heap, NOT_OURS, __LINE__);
	expect_death(m, NOT_OURS, __LINE__);
	expect_death((void *)((uintptr_t)1 << 47), NOT_OURS, __LINE__);

	/* Interior pointers: of a page run, of a pageblock run, of a large
	 * mapping, and not page aligned. */
	expect_death(run + PG, INTERIOR, __LINE__);
	expect_death(run + 8, INTERIOR, __LINE__);
	expect_death(multi + PB, INTERIOR, __LINE__);
	expect_death(multi + 2 * PB + PG, INTERIOR, __LINE__);
	expect_death(multi + PG, INTERIOR, __LINE__);
	expect_death(large + PG, INTERIOR, __LINE__);
	expect_death(large + SPB_SPB_SIZE, INTERIOR, __LINE__);

	/* Double frees: a run in a pageblock still in use, a pageblock run
	 * whose pageblocks went free. */
	spb_pages_free(run);
	expect_death(run, DOUBLE, __LINE__);
	spb_pages_free(multi);
	expect_death(multi, PB_FREE, __LINE__);
	/* A page that was never handed out in a live pageblock. */
	expect_death(other + 5 * PG, DOUBLE, __LINE__);
	/* A freed large mapping is no longer ours at all. */
	spb_pages_free(large);
	expect_death(large, NOT_OURS, __LINE__);

	/* The children's aborts left the parent's engine intact. */
	CHECK_ZONES();
	spb_pages_free(other);
	CHECK_ZONES();
	CHECK_EQ(z->nr_by_cat[SPB_CAT_TAINTED], 0);
	__libc_free(heap);
	munmap(m, 2 * PB);
	return check_done("test_foreign");
}
