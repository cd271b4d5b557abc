/*
 * test_subrelease.c — the free pages inside sparse pageblocks go back to
 * the OS (subrelease.c).
 *
 * A pageblock of page runs whose free pages make up at least
 * SPBMALLOC_SUBRELEASE_PCT of it, for the decay delay, gives them back:
 * mincore shows them gone, the runs still in use keep their memory and
 * contents, the pageblock leaves huge pages (MADV_NOHUGEPAGE, rung 4k),
 * and the counters say how much. Below the threshold, or with the setting
 * 0, nothing goes; spb_trim gives back every free page at once. New runs
 * go to pageblocks still on huge pages first; a given-back page handed
 * out again is counted; a pageblock that empties is claimed again on huge
 * pages. A refused madvise keeps the pages (counted) and retries after the
 * delay. Last, a thread churns runs in the same pageblocks while the main
 * thread runs decay passes with a 0 ms delay: every run keeps its stamp
 * and the engine's invariants hold throughout.
 */
#include <pthread.h>

#include "spbmalloc_stats.h"
#include "zone_check.h"

#define PB SPB_PB_SIZE
#define PG SPB_PAGE_SIZE
#define RUN (16 * PG) /* 64 KiB runs: 32 fill a pageblock */
#define NRUNS (PB / RUN)

static void stamp(char *p, size_t len, unsigned v)
{
	for (size_t o = 0; o < len; o += PG)
		*(unsigned *)(p + o) = v + (unsigned)(o / PG);
}

static bool stamped(const char *p, size_t len, unsigned v)
{
	for (size_t o = 0; o < len; o += PG)
		if (*(const unsigned *)(p + o) != v + (unsigned)(o / PG))
			return false;
	return true;
}

/* Fill one fresh pageblock with NRUNS runs of class cls. */
static void fill_pb(char **r, unsigned cls)
{
	for (unsigned i = 0; i < NRUNS; i++) {
		r[i] = spb_pages_alloc(RUN, 0, cls, 0);
		REQUIRE(r[i]);
		stamp(r[i], RUN, i * 1000);
	}
	for (unsigned i = 1; i < NRUNS; i++)
		REQUIRE(pb_of(r[i]) == pb_of(r[0]));
}

static struct {
	char *runs[64];
	int stop;           /* atomic */
	unsigned long ops;  /* atomic */
} churn;

static void *churner(void *arg)
{
	(void)arg;
	unsigned seed = 12345;
	while (!__atomic_load_n(&churn.stop, __ATOMIC_ACQUIRE)) {
		seed = seed * 1103515245u + 12345u;
		unsigned i = (seed >> 8) % 64;
		if (churn.runs[i]) {
			size_t len = spb_pages_usable_size(churn.runs[i]);
			if (!stamped(churn.runs[i], len, i * 7919u)) {
				fprintf(stderr, "test_subrelease: run %u lost its stamp\n", i);
				abort();
			}
			spb_pages_free(churn.runs[i]);
			churn.runs[i] = NULL;
		} else {
			size_t len = (size_t)(1 + (seed >> 20) % 40) * PG;
			char *p = spb_pages_alloc(len, 0, SPB_UNMOVABLE, 0);
			if (!p)
				abort();
			stamp(p, spb_pages_usable_size(p), i * 7919u);
			churn.runs[i] = p;
		}
		__atomic_fetch_add(&churn.ops, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

int main(void)
{
	spb__option_set(OPT_DECAY_MS, 200);
	spb__option_set(OPT_SUBRELEASE_PCT, 25);
	struct spb_zone *z = tap_engine_setup();
	char *a[NRUNS], *b[NRUNS];

	/* ---- 3/4 of a pageblock freed: its free pages go after the delay ---- */
	fill_pb(a, SPB_MOVABLE);
	struct spb_pageblock *pa = pb_of(a[0]);
	char *pa_addr = (char *)spb__pb_addr(spb_of(a[0]), pb_index_of(a[0]));
	uint8_t rung = pa->rung;
	CHECK(rung == SPB_RUNG_THP || rung == SPB_RUNG_4K);
	CHECK_EQ(resident_pages(pa_addr, PB), SPB_PAGES_PER_PB);
	uint64_t sub = ctr(SUBRELEASE), pages = ctr(SUBRELEASE_PAGES);
	for (unsigned i = 0; i < NRUNS; i++)
		if (i % 4) {
			spb_pages_free(a[i]);
			a[i] = NULL;
		}
	CHECK_EQ(pa->nr_free, 24 * 16);
	CHECK_EQ(pa->sparse, 1);
	uint64_t due = spb_decay(); /* too early */
	CHECK(due > 0 && due <= 200);
	CHECK_EQ(ctr(SUBRELEASE), sub);
	CHECK_EQ(resident_pages(pa_addr, PB), SPB_PAGES_PER_PB);
	CHECK_ZONES();
	sleep_ms(250);
	CHECK_EQ(spb_decay(), UINT64_MAX);
	CHECK_EQ(ctr(SUBRELEASE), sub + 1);
	CHECK_EQ(ctr(SUBRELEASE_PAGES), pages + 24 * 16);
	CHECK_EQ(pa->nr_released, 24 * 16);
	CHECK_EQ(pa->sparse, 0);
	CHECK_EQ(z->released_pages, 24 * 16);
	CHECK_EQ(resident_pages(pa_addr, PB), 8 * 16);
	for (unsigned i = 0; i < NRUNS; i += 4) {
		CHECK_EQ(resident_pages(a[i], RUN), 16);
		CHECK(stamped(a[i], RUN, i * 1000));
	}
	if (rung == SPB_RUNG_THP) {
		CHECK_EQ(pa->nohuge, 1);
		CHECK_EQ(pa->rung, SPB_RUNG_4K);
	}
	/* The stats gauge counts what is still backed. */
	struct spb_stats_gauges g;
	uint64_t cs[SPB_NR_COUNTERS];
	spb__stats_collect(&g, cs, NULL, 0);
	CHECK_EQ(g.mapped_bytes, (uint64_t)z->pb_by_class[SPB_MOVABLE] * PB - 24 * 16 * PG);
	CHECK_ZONES();

	/* ---- placement: a pageblock still on huge pages first ---- */
	for (unsigned i = 0; i < NRUNS; i++)
		b[i] = NULL;
	/* Too long for pa's holes (48 pages each): a new pageblock, with
	 * one run's room left. */
	char *big = spb_pages_alloc(PB - RUN, 0, SPB_MOVABLE, 0);
	REQUIRE(big);
	CHECK(pb_of(big) != pa);
	char *b0 = spb_pages_alloc(RUN, 0, SPB_MOVABLE, 0);
	REQUIRE(b0);
	CHECK(pb_of(b0) == pb_of(big)); /* not into pa's given-back holes */
	/* When only the split pageblock has room, it is used (before a new
	 * pageblock: what RSS it adds is one page at a time), and the pages
	 * it takes back are counted. */
	uint64_t reuse = ctr(SUBRELEASE_REUSE), claims = ctr(PB_CLAIM);
	char *c = spb_pages_alloc(RUN, 0, SPB_MOVABLE, 0);
	REQUIRE(c);
	CHECK(pb_of(c) == pa);
	CHECK_EQ(ctr(PB_CLAIM), claims);
	CHECK_EQ(ctr(SUBRELEASE_REUSE), reuse + 16);
	CHECK_EQ(pa->nr_released, 23 * 16);
	CHECK_EQ(z->released_pages, 23 * 16);
	stamp(c, RUN, 77);
	CHECK_ZONES();

	/* ---- a split pageblock full again goes back on huge pages ---- */
	if (rung == SPB_RUNG_THP) {
		char *f[NRUNS];
		unsigned nf = 0;
		CHECK_EQ(pa->sparse, 0); /* its free pages are all given back */
		while (pa->nr_free * 100u > 10u * SPB_PAGES_PER_PB) {
			f[nf] = spb_pages_alloc(RUN, 0, SPB_MOVABLE, 0);
			REQUIRE(f[nf] && pb_of(f[nf]) == pa);
			nf++;
		}
		CHECK_EQ(pa->sparse, 2);
		CHECK_EQ(pa->nohuge, 1);
		CHECK_ZONES();
		uint64_t rh = ctr(SUBRELEASE_REHUGE);
		spb_decay(); /* due at once */
		CHECK_EQ(ctr(SUBRELEASE_REHUGE), rh + 1);
		CHECK_EQ(pa->nohuge, 0);
		CHECK_EQ(pa->rung, SPB_RUNG_THP);
		CHECK_EQ(pa->sparse, 0);
		CHECK_ZONES();
		/* Sparse again: split again after the delay. */
		for (unsigned i = 0; i < nf; i++)
			spb_pages_free(f[i]);
		CHECK_EQ(pa->sparse, 1);
		sleep_ms(250);
		spb_decay();
		CHECK_EQ(pa->nohuge, 1);
		CHECK_EQ(pa->rung, SPB_RUNG_4K);
		CHECK_EQ(pa->nr_released, pa->nr_free);
		CHECK_ZONES();
	}

	/* ---- an emptied split pageblock is claimed on huge pages again ---- */
	spb_pages_free(c);
	for (unsigned i = 0; i < NRUNS; i += 4)
		spb_pages_free(a[i]);
	CHECK_EQ(pa->cls, SPB_PB_FREE);
	CHECK_EQ(pa->nr_released, 0);
	CHECK_EQ(z->released_pages, 0);
	CHECK_ZONES();
	spb_pages_free(big);
	spb_pages_free(b0);
	sleep_ms(250);
	spb_decay();
	CHECK_ZONES();
	if (rung == SPB_RUNG_THP) {
		/* Every pageblock is free and released now: the first claim of
		 * the SPB takes the first free pageblock, pa's (lowest index). */
		char *d = spb_pages_alloc(PB, 0, SPB_MOVABLE, 0);
		REQUIRE(d);
		CHECK(pb_of(d) == pa);
		CHECK_EQ(pa->nohuge, 0);
		CHECK_EQ(pa->rung, SPB_RUNG_THP);
		spb_pages_free(d);
	}

	/* ---- below the threshold nothing goes; SUBRELEASE_PCT=0 is off ---- */
	fill_pb(a, SPB_UNMOVABLE);
	pa = pb_of(a[0]);
	for (unsigned i = 0; i < 7; i++) { /* 7/32 = 22 % free */
		spb_pages_free(a[i]);
		a[i] = NULL;
	}
	CHECK_EQ(pa->sparse, 0);
	spb__option_set(OPT_SUBRELEASE_PCT, 0);
	spb_pages_free(a[7]); /* 25 %, but off */
	a[7] = NULL;
	CHECK_EQ(pa->sparse, 0);
	spb__option_set(OPT_SUBRELEASE_PCT, 25);
	spb_pages_free(a[8]); /* 28 %: queued */
	a[8] = NULL;
	CHECK_EQ(pa->sparse, 1);
	b[0] = spb_pages_alloc(2 * RUN, 0, SPB_UNMOVABLE, 0); /* back to 22 %: off the queue */
	REQUIRE(b[0] && pb_of(b[0]) == pa);
	CHECK_EQ(pa->sparse, 0);
	sleep_ms(250);
	spb_decay();
	CHECK_EQ(pa->nr_released, 0);
	CHECK_ZONES();

	/* ---- spb_trim gives back every free page, whatever the threshold ---- */
	sub = ctr(SUBRELEASE);
	spb_trim();
	CHECK_EQ(ctr(SUBRELEASE), sub + 1);
	CHECK_EQ(pa->nr_released, 7 * 16); /* 9 runs freed, 2 taken again */
	CHECK_EQ(resident_pages((char *)spb__pb_addr(spb_of(a[9]), pb_index_of(a[9])), PB),
		 SPB_PAGES_PER_PB - 7 * 16);
	for (unsigned i = 9; i < NRUNS; i++)
		CHECK(stamped(a[i], RUN, i * 1000));
	CHECK_ZONES();

	/* ---- a refused madvise keeps the pages, counted, retried later ---- */
	for (unsigned i = 9; i < 20; i++) {
		spb_pages_free(a[i]);
		a[i] = NULL;
	}
	CHECK_EQ(pa->sparse, 1);
	uint64_t fails = ctr(SUBRELEASE_FAIL);
	spb__os_inject.call[SPB_OS_MADV_DONTNEED].fail_from = 1;
	spb__os_inject.call[SPB_OS_MADV_DONTNEED].calls = 0;
	sleep_ms(250);
	spb_decay();
	spb__os_inject.call[SPB_OS_MADV_DONTNEED].fail_from = 0;
	CHECK(ctr(SUBRELEASE_FAIL) > fails);
	CHECK_EQ(pa->nr_released, 7 * 16);
	CHECK_EQ(pa->sparse, 1); /* queued again, due after the delay */
	CHECK(spb_decay() > 0);
	CHECK_ZONES();
	sleep_ms(250);
	spb_decay();
	CHECK_EQ(pa->nr_released, 18 * 16);
	CHECK_EQ(pa->sparse, 0);
	for (unsigned i = 20; i < NRUNS; i++)
		CHECK(stamped(a[i], RUN, i * 1000));
	CHECK_ZONES();
	for (unsigned i = 20; i < NRUNS; i++)
		spb_pages_free(a[i]);
	spb_pages_free(b[0]);
	CHECK_ZONES();

	/* ---- churn in the pageblocks while decay passes run ---- */
	spb__option_set(OPT_DECAY_MS, 0);
	/* The SPB never empties: zone_check cannot run while an unmap has it
	 * off the lists (the churner's inline decay could unmap it). */
	void *keeper = spb_pages_alloc(PG, 0, SPB_UNMOVABLE, 0);
	REQUIRE(keeper);
	uint64_t sub0 = ctr(SUBRELEASE); /* counters: read with no other thread */
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, churner, NULL) == 0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int k = 0;; k++) {
		spb_decay();
		if (k % 2000 == 0)
			CHECK_ZONES();
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (t1.tv_sec - t0.tv_sec >= 2 &&
		    __atomic_load_n(&churn.ops, __ATOMIC_RELAXED) > 20000)
			break;
	}
	__atomic_store_n(&churn.stop, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	CHECK(ctr(SUBRELEASE) > sub0);
	for (unsigned i = 0; i < 64; i++)
		if (churn.runs[i]) {
			CHECK(stamped(churn.runs[i], spb_pages_usable_size(churn.runs[i]), i * 7919u));
			spb_pages_free(churn.runs[i]);
		}
	spb_pages_free(keeper);
	spb_decay();
	CHECK_EQ(z->released_pages, 0);
	CHECK_ZONES();
	printf("test_subrelease: churn %lu ops, %llu subreleases, %llu pages given back, "
	       "%llu handed out again\n", churn.ops,
	       (unsigned long long)(ctr(SUBRELEASE) - sub0),
	       (unsigned long long)ctr(SUBRELEASE_PAGES),
	       (unsigned long long)ctr(SUBRELEASE_REUSE));
	return check_done("test_subrelease");
}
