/*
 * test_fault_sweep.c — fault injection at every OS call site, swept.
 *
 * One fixed workload drives every kind of system call the allocator makes
 * (os.c's seam, platform.h: mmap of reservations, hugetlb pages, MAP_FIXED
 * remaps and metadata, munmap, madvise HUGEPAGE / NOHUGEPAGE / COLLAPSE /
 * DONTNEED, mbind): page runs and pageblock runs of every class (the 2 MiB
 * hugetlb rung and MADV_COLLAPSE tried on some), a whole SPB, two
 * dedicated mappings over 1 GiB, releases and SPB unmaps by the decay as
 * things are freed, malloc/calloc/realloc/aligned of many sizes through
 * the malloc layer in a thread of its own, and a final spb_trim.
 *
 * A dry run counts the calls of each kind and the distinct call sites
 * (return addresses into os.c's callers). Then, for each kind, the
 * workload runs again in a fresh forked child for N = 1 .. calls with call
 * N failing (ENOMEM, the call not made), and once with every call of that
 * kind failing. Each child checks: every NULL came with errno ENOMEM;
 * every injected failure was either such a NULL or counted by the engine
 * counter that absorbs it (pb_release_fail, spb_unmap_fail, ...; a refused
 * MADV_NOHUGEPAGE on metadata is advice only); the zone invariants
 * (tests/unit/zone_check.h) hold after each phase; memory handed out is
 * intact; and once the injection stops and spb_trim retries what was
 * refused, nothing is left: no SPB, no large mapping, no dirty pageblock,
 * claims/runs/maps/mallocs balanced, no 1 GiB range left mapped. A crash
 * or a hang (20 s) of a child fails the run. The coverage is printed.
 */
#include <pthread.h>

#include "heap.h"
#include "zone_check.h"

#define PB SPB_PB_SIZE
#define PG SPB_PAGE_SIZE
#define GB SPB_SPB_SIZE
#define MAX_SITES 32

/* What a child reports to the parent (a shared mapping). */
struct report {
	uint64_t calls[SPB_OS_NR_CALLS];  /* seam counts after the workload */
	uint64_t failed[SPB_OS_NR_CALLS]; /* calls the seam failed */
	uint64_t nulls, bad_errno, counted;
	const void *sites[SPB_OS_NR_CALLS][MAX_SITES]; /* dry run: distinct callers */
	unsigned nsites[SPB_OS_NR_CALLS];
	const void *failed_site; /* the caller of call N */
	int checks, checks_failed;
	int done;
};

static struct report *R;
static uint64_t child_checks;
static struct spb_zone *Z;
static int target_kind = -1;
static uint64_t target_nth;

/* Counters that absorb (count) a refused call of each kind. */
static const int absorbed_by[SPB_OS_NR_CALLS][6] = {
	[SPB_OS_MMAP_RESERVE] = {SPB_RESERVE_FAIL, -1},
	[SPB_OS_MMAP_HUGETLB_1G] = {SPB_BACK_1G_FALLBACK, -1},
	[SPB_OS_MMAP_HUGETLB_2M] = {PB_BACK_2M_FALLBACK, -1},
	[SPB_OS_MMAP_FIXED] = {PB_RELEASE_FAIL, META_RELEASE_FAIL, -1},
	[SPB_OS_MMAP_META] = {SPB_RESERVE_FAIL, LARGE_MAP_FAIL, -1},
	[SPB_OS_MUNMAP] = {SPB_RESERVE_FAIL, SPB_UNMAP_FAIL, LARGE_UNMAP_FAIL,
			   META_RELEASE_FAIL, LARGE_MAP_FAIL, -1},
	[SPB_OS_MADV_HUGEPAGE] = {THP_ADVISE_FAIL, -1},
	/* advice on metadata (not counted) and before a subrelease */
	[SPB_OS_MADV_NOHUGEPAGE] = {SUBRELEASE_FAIL, -1},
	[SPB_OS_MADV_COLLAPSE] = {PB_COLLAPSE_FAIL, -1},
	[SPB_OS_MADV_DONTNEED] = {PB_RELEASE_FAIL, META_RELEASE_FAIL, SUBRELEASE_FAIL, -1},
	[SPB_OS_MBIND] = {NUMA_BIND_FAIL, -1},
	/* the sweep's workload makes no secret memory (tests/api/test_secret) */
	[SPB_OS_SECRET] = {SECRET_MEMFD_FAIL, SECRET_FLIP_FAIL, -1},
};

static void hook(enum spb_os_call kind, void *addr, size_t size, const void *caller)
{
	(void)addr;
	(void)size;
	/* Runs before the seam counts the call: this is call calls + 1. */
	uint64_t n = __atomic_load_n(&spb__os_inject.call[kind].calls, __ATOMIC_RELAXED) + 1;
	if ((int)kind == target_kind && n == target_nth)
		R->failed_site = caller;
	unsigned k = R->nsites[kind];
	for (unsigned i = 0; i < k; i++)
		if (R->sites[kind][i] == caller)
			return;
	if (k < MAX_SITES) {
		R->sites[kind][k] = caller;
		R->nsites[kind] = k + 1;
	}
}

/* An allocation's result: a NULL must say ENOMEM. */
static void *got(void *p)
{
	if (!p) {
		R->nulls++;
		if (errno != ENOMEM) {
			R->bad_errno++;
			fprintf(stderr, "NULL with errno %d\n", errno);
		}
	}
	return p;
}

static void stamp(void *p, size_t len, unsigned v)
{
	if (p) {
		((unsigned char *)p)[0] = (unsigned char)v;
		((unsigned char *)p)[len - 1] = (unsigned char)(v + 1);
	}
}

static void check_stamp(void *p, size_t len, unsigned v)
{
	if (p)
		CHECK(((unsigned char *)p)[0] == (unsigned char)v &&
		      ((unsigned char *)p)[len - 1] == (unsigned char)(v + 1));
}

/* The engine's account against the kernel's: a free pageblock said to
 * hold no memory (rung none) has no resident page; every live SPB and
 * large mapping is mapped; large_bytes is what the address map and the
 * retry list hold. */
static void check_no_lies(void)
{
	uint64_t large = 0;
	unsigned char vec;
	spb__zone_lock(Z);
	for (unsigned c = 0; c < SPB_NR_CATS; c++)
		for (unsigned f = 0; f < SPB_NR_FULLNESS; f++) {
			struct spb_link *h = &Z->lists[c][f];
			for (struct spb_link *l = h->next; l != h; l = l->next) {
				struct spb *s = spb__container_of(l, struct spb, link);
				CHECK(mincore((void *)s->r.base, PG, &vec) == 0);
				for (unsigned i = 0; i < SPB_PB_PER_SPB; i++)
					if (s->pb[i].cls == SPB_PB_FREE &&
					    s->pb[i].rung == SPB_RUNG_NONE)
						CHECK_EQ(resident_pages(spb__pb_addr(s, i), PB), 0);
			}
		}
	for (size_t slot = 0; slot < SPB_MAP_SLOTS; slot++) {
		struct spb_region *r = spb__map[slot];
		if (r && r->kind == SPB_REGION_LARGE && (r->base >> SPB_SPB_SHIFT) == slot) {
			large += r->size;
			CHECK(mincore((void *)r->base, PG, &vec) == 0);
		}
	}
	for (struct spb_link *l = Z->large_retry.next; l != &Z->large_retry; l = l->next) {
		const struct spb_large *lr = spb__container_of(l, struct spb_large, link);
		large += lr->r.size;
		CHECK(mincore((void *)lr->r.base, PG, &vec) == 0);
	}
	CHECK_EQ(Z->large_bytes, large);
	spb__zone_unlock(Z);
}

#define CHECK_ALL()                                                            \
	do {                                                                   \
		CHECK_ZONES();                                                 \
		check_no_lies();                                               \
	} while (0)

static void *xalloc(size_t bytes, size_t align, spb_class_t cls, unsigned flags)
{
	errno = 0;
	void *p = got(spb_pages_alloc(bytes, align, cls, flags));
	if (p && (flags & SPB_F_ZERO))
		CHECK(((char *)p)[0] == 0 && ((char *)p)[bytes - 1] == 0);
	return p;
}

/* ---- the malloc layer, in a thread: its spans go back at thread exit ---- */
#define NM 150
static void *malloc_phase(void *arg)
{
	(void)arg;
	static void *m[NM];
	static size_t len[NM];
	for (unsigned i = 0; i < NM; i++) {
		size_t n = i < 100 ? 2 + (size_t)(i * i * 7u) % 2048u
				   : (size_t)1 << (10 + i % 9); /* up to 256 KiB */
		if (i == NM - 1)
			n = 3 * PB + 123; /* whole pageblocks */
		len[i] = n;
		errno = 0;
		m[i] = got(i % 10 == 0 ? spb__calloc(1, n) : spb__malloc(n));
		if (m[i] && i % 10 == 0)
			CHECK(((char *)m[i])[0] == 0 && ((char *)m[i])[n - 1] == 0);
		stamp(m[i], n, i);
	}
	for (unsigned i = 0; i < NM; i += 7) {
		if (!m[i])
			continue;
		size_t n = len[i] * 3 + 100;
		errno = 0;
		unsigned char *q = got(spb__realloc(m[i], n));
		if (!q) /* the old block stays */
			continue;
		CHECK(q[0] == (unsigned char)i);
		m[i] = q;
		len[i] = n;
		stamp(q, n, i);
	}
	errno = 0;
	void *a1 = got(spb__aligned(4096, 5000));
	errno = 0;
	void *a2 = got(spb__aligned(PB, 100));
	CHECK(((uintptr_t)a1 & 4095) == 0 && ((uintptr_t)a2 & (PB - 1)) == 0);
	if (a1)
		spb__free_ptr(a1);
	if (a2)
		spb__free_ptr(a2);
	for (unsigned i = 0; i < NM; i++) {
		check_stamp(m[i], len[i], i);
		if (m[i])
			spb__free_ptr(m[i]);
	}
	return NULL;
}

/* ---- the engine workload ---- */
#define NP 48
static void *pr[NP];
static size_t prlen[NP];
static const unsigned npbs[] = {1, 2, 3, 5, 8, 13};
#define NPB (sizeof npbs / sizeof npbs[0])
static void *pbr[NPB];
static void *whole, *big1, *big2;
#define BIG1 (GB + PB)
#define BIG2 (2 * GB + 5 * PG)

static void verify_live(void)
{
	for (unsigned i = 0; i < NP; i++)
		check_stamp(pr[i], prlen[i], i);
	for (unsigned j = 0; j < NPB; j++)
		check_stamp(pbr[j], npbs[j] * PB, 100 + j);
	check_stamp(whole, SPB_PB_PER_SPB * PB, 200);
	check_stamp(big1, BIG1, 210);
	check_stamp(big2, BIG2, 220);
}

static void workload(void)
{
	spb__option_set(OPT_DECAY_MS, 60000);
	spb__option_set(OPT_HUGETLB_1G, 1); /* the 1 GiB rung is tried per SPB */
	/* Page runs of every class, some aligned, some zeroed. */
	for (unsigned i = 0; i < NP; i++) {
		prlen[i] = (1 + (i * 37) % 300) * PG;
		pr[i] = xalloc(prlen[i], i % 7 == 3 ? 16 * PG : 0, (spb_class_t)(i % 3),
			       i % 5 == 0 ? SPB_F_ZERO : 0);
		stamp(pr[i], prlen[i], i);
	}
	CHECK_ALL();
	/* Pageblock runs: the 2 MiB hugetlb rung tried on the first ones,
	 * MADV_COLLAPSE on the first two. */
	for (unsigned j = 0; j < NPB; j++) {
		spb__option_set(OPT_HUGETLB_2M, j < 3);
		spb__option_set(OPT_COLLAPSE, j < 2);
		pbr[j] = xalloc(npbs[j] * PB, 0, (spb_class_t)(j % 3), 0);
		stamp(pbr[j], npbs[j] * PB, 100 + j);
	}
	spb__option_set(OPT_HUGETLB_2M, 0);
	spb__option_set(OPT_COLLAPSE, 0);
	whole = xalloc(SPB_PB_PER_SPB * PB, 0, SPB_MOVABLE, 0);
	stamp(whole, SPB_PB_PER_SPB * PB, 200);
	big1 = xalloc(BIG1, 0, SPB_MOVABLE, 0);
	stamp(big1, BIG1, 210);
	big2 = xalloc(BIG2, 0, SPB_UNMOVABLE, 0);
	stamp(big2, BIG2, 220);
	CHECK_ALL();
	verify_live();

	/* Free half: with decay 0 each free releases its pageblocks and
	 * unmaps what empties (decay_tick), under the injection. */
	spb__option_set(OPT_DECAY_MS, 0);
	for (unsigned i = 1; i < NP; i += 2) {
		spb_pages_free(pr[i]);
		pr[i] = NULL;
	}
	spb_pages_free(pbr[1]);
	spb_pages_free(pbr[4]);
	spb_pages_free(whole);
	spb_pages_free(big1);
	pbr[1] = pbr[4] = whole = big1 = NULL;
	spb_decay();
	CHECK_ALL();
	verify_live();

	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, malloc_phase, NULL) == 0);
	pthread_join(t, NULL);
	CHECK_ALL();
	verify_live();

	for (unsigned i = 0; i < NP; i++)
		spb_pages_free(pr[i]);
	for (unsigned j = 0; j < NPB; j++)
		spb_pages_free(pbr[j]);
	spb_pages_free(big2);
	spb_trim();
	CHECK_ALL();
}

/* Bytes in anonymous mappings that are 1 GiB-aligned, whole GiBs, at most
 * 64 GiB and in the upper half of the address space, where mmap puts what
 * it chooses (SPB data areas and large mappings are; a leaked one shows
 * here; the sanitizers' shadow mappings live lower). */
static uint64_t big_anon_bytes(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	uint64_t total = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi, ino;
		char perms[8], dev[16];
		unsigned long long off;
		int pathpos = 0;
		if (sscanf(line, "%lx-%lx %7s %llx %15s %lu %n", &lo, &hi, perms, &off, dev, &ino,
			   &pathpos) < 6)
			continue;
		if (ino == 0 && lo >= (1ul << 46) && hi - lo >= GB && hi - lo <= 64 * GB &&
		    lo % GB == 0 && (hi - lo) % GB == 0 &&
		    (line[pathpos] == '\n' || line[pathpos] == 0))
			total += hi - lo;
	}
	fclose(f);
	return total;
}

static int child(int kind, uint64_t nth, uint64_t from, int bg)
{
	alarm(20);
	check_failures = check_checks = 0; /* the parent's tally is not this run's */
	uint64_t big0 = big_anon_bytes();
	spb__os_inject.mbind_always = true; /* the binding call site, everywhere */
	target_kind = kind;
	target_nth = nth;
	spb__os_inject.hook = hook;
	if (bg >= 0) /* refused throughout, so that kind's sites are reached */
		spb__os_inject.call[bg].fail_from = 1;
	if (kind >= 0) {
		spb__os_inject.call[kind].fail_nth = nth;
		spb__os_inject.call[kind].fail_from = from;
	}
	workload();
	for (int k = 0; k < SPB_OS_NR_CALLS; k++) {
		R->calls[k] = spb__os_inject.call[k].calls;
		R->failed[k] = spb__os_inject.call[k].failed;
		spb__os_inject.call[k].fail_nth = 0;
		spb__os_inject.call[k].fail_from = 0;
	}
	if (kind >= 0)
		for (int i = 0; absorbed_by[kind][i] >= 0; i++)
			R->counted += ctr((enum spb_counter)absorbed_by[kind][i]);

	/* The OS says yes again: the retries go through, nothing is left. */
	spb__os_inject.hook = NULL;
	spb_trim();
	CHECK_ALL();
	CHECK_EQ(Z->nr_spbs, 0);
	CHECK_EQ(Z->total_pb, 0);
	CHECK_EQ(Z->nr_spbs_reserving, 0);
	CHECK_EQ(Z->nr_windows, 0);
	CHECK_EQ(Z->large_bytes, 0);
	CHECK(spb__list_empty(&Z->dirty));
	CHECK(spb__list_empty(&Z->emptyq));
	CHECK(spb__list_empty(&Z->large_retry));
	for (unsigned c = 0; c < SPB_NR_CLASSES; c++)
		CHECK_EQ(Z->pb_by_class[c], 0);
	CHECK_EQ(ctr(PB_CLAIM), ctr(PB_UNCLAIM));
	CHECK_EQ(ctr(RUN_ALLOC), ctr(RUN_FREE));
	CHECK_EQ(ctr(MULTI_ALLOC), ctr(MULTI_FREE));
	CHECK_EQ(ctr(LARGE_MAP), ctr(LARGE_UNMAP));
	CHECK_EQ(ctr(SPB_RESERVE), ctr(SPB_UNMAP));
	CHECK_EQ(ctr(MALLOC_ALLOC), ctr(MALLOC_FREE));
	CHECK_EQ(ctr(MALLOC_ALLOC_BYTES), ctr(MALLOC_FREE_BYTES));
	/* No 1 GiB range left behind (every munmap refused: a reservation's
	 * over-reserved range may stay, it is documented). */
	if (!(kind == SPB_OS_MUNMAP && from))
		CHECK(big_anon_bytes() <= big0);
	/* Each failure: a NULL with ENOMEM, or absorbed and counted. */
	CHECK_EQ(R->bad_errno, 0);
	if (kind < 0)
		CHECK_EQ(R->nulls, 0);
	else if (kind != SPB_OS_MADV_NOHUGEPAGE)
		CHECK(R->failed[kind] <= R->counted + R->nulls);
	if (kind >= 0 && nth)
		CHECK_EQ(R->failed[kind], 1);
	R->checks = check_checks;
	R->checks_failed = check_failures;
	R->done = 1;
	fflush(NULL);
	return check_failures ? 1 : 0;
}

/* One run in a fresh child; returns true when it passed. */
static bool run(int kind, uint64_t nth, uint64_t from, int bg)
{
	memset(R, 0, sizeof *R);
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		_exit(child(kind, nth, from, bg));
	int st = 0;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && R->done;
	child_checks += (uint64_t)R->checks;
	if (!ok)
		fprintf(stderr, "FAILED: %s %s %llu%s%s: %s %d\n",
			kind >= 0 ? spb__os_call_names[kind] : "dry run", nth ? "call" : "from call",
			(unsigned long long)(nth ? nth : from), bg >= 0 ? ", every " : "",
			bg >= 0 ? spb__os_call_names[bg] : "",
			WIFSIGNALED(st) ? "signal" : "exit", WIFSIGNALED(st) ? WTERMSIG(st)
									 : WEXITSTATUS(st));
	return ok;
}

int main(void)
{
	/* The parent never allocates: each child starts from nothing (and
	 * initialises the malloc layer itself, so no fork handler runs). */
	Z = tap_engine_setup();
	R = mmap(NULL, sizeof *R, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	REQUIRE(R != MAP_FAILED);

	/* A kind whose sites are reached only when another kind is refused:
	 * swept with that one refused throughout (the plain remap that zeroes
	 * a descriptor when MADV_DONTNEED is refused). */
	REQUIRE(run(-1, 0, 0, -1));
	struct report dry = *R;
	uint64_t total_runs = 0, total_sites = 0, total_failed_sites = 0, total_n = 0;
	printf("%-16s %6s %6s %6s %8s %8s\n", "call kind", "calls", "runs", "sites",
	       "failed@", "NULLs");
	for (int k = 0; k < SPB_OS_NR_CALLS; k++) {
		int bg = k == SPB_OS_MMAP_FIXED ? SPB_OS_MADV_DONTNEED : -1;
		uint64_t calls = dry.calls[k];
		unsigned nsites = dry.nsites[k];
		uint64_t nulls = 0, runs = 0;
		if (bg >= 0) {
			REQUIRE(run(-1, 0, 0, bg));
			calls = R->calls[k];
			nsites = R->nsites[k];
			runs++;
		}
		const void *hit[MAX_SITES];
		unsigned nhit = 0;
		for (uint64_t n = 1; n <= calls; n++) {
			CHECK(run(k, n, 0, bg));
			runs++;
			nulls += R->nulls;
			bool seen = false;
			for (unsigned i = 0; i < nhit; i++)
				seen |= hit[i] == R->failed_site;
			if (!seen && nhit < MAX_SITES && R->failed_site)
				hit[nhit++] = R->failed_site;
		}
		if (calls) { /* and every call of the kind refused */
			CHECK(run(k, 0, 1, bg));
			runs++;
		}
		printf("%-16s %6llu %6llu %6u %8u %8llu%s%s%s\n", spb__os_call_names[k],
		       (unsigned long long)calls, (unsigned long long)runs, nsites, nhit,
		       (unsigned long long)nulls, bg >= 0 ? "  (every " : "",
		       bg >= 0 ? spb__os_call_names[bg] : "", bg >= 0 ? " refused)" : "");
		total_runs += runs;
		total_n += calls;
		total_sites += nsites;
		total_failed_sites += nhit;
	}
	printf("fault sweep: %llu OS call sites reached, %llu of them failed; N swept over "
	       "%llu calls (one run each) plus every-call-fails runs: %llu runs, %llu checks "
	       "in the children\n",
	       (unsigned long long)total_sites, (unsigned long long)total_failed_sites,
	       (unsigned long long)total_n, (unsigned long long)total_runs,
	       (unsigned long long)child_checks);
	CHECK(child_checks > 0);
	return check_done("test_fault_sweep");
}
