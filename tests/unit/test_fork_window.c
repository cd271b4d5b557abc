/*
 * test_fork_window.c — fork while another thread is inside one of the
 * engine's unlocked windows (the system calls it makes with the zone lock
 * dropped): a decay pass releasing pageblocks (tagged BUSY meanwhile), an
 * SPB reservation (counted in flight), an SPB unmap and a large mapping's
 * unmap (half gone).
 *
 * A test hook in os.c's fault injection seam holds the other thread inside
 * the window's system call until the fork is under way (prefork says so
 * with fork_pending) or done. The child must come up consistent: the zone
 * invariants hold (zone_check.h), no pageblock is BUSY, nothing counts as
 * in flight, an SPB is either live or dead and unmapped, large_bytes is
 * what the address map holds; the child can reserve up to
 * SPBMALLOC_MAX_SPBS, and after it frees everything the decay gives every
 * SPB back. Before the fix (fork took the zone locks only) the child kept
 * the BUSY pageblocks for ever, its unmap queue stopped at their SPB, the
 * reservation counted against the limit for ever, and a half-unmapped SPB
 * or large mapping was neither live nor gone.
 */
#include <pthread.h>

#include "heap.h"
#include "zone_check.h"

#define PB SPB_PB_SIZE
#define PG SPB_PAGE_SIZE
#define GB SPB_SPB_SIZE

static struct spb_zone *Z;
static int armed_kind = -1; /* enum spb_os_call the hook holds, once */
static size_t armed_size;
static int entered, forked, saw_pending;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void hook(enum spb_os_call kind, void *addr, size_t size, const void *caller)
{
	(void)addr;
	(void)caller;
	int k = (int)kind;
	if (k != __atomic_load_n(&armed_kind, __ATOMIC_ACQUIRE) || size != armed_size)
		return;
	if (!__atomic_compare_exchange_n(&armed_kind, &k, -1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return;
	__atomic_store_n(&entered, 1, __ATOMIC_RELEASE);
	/* Until fork is under way (prefork waits for this window: fixed) or
	 * has happened (it did not wait: the child got the window). */
	uint64_t t0 = now_ms();
	while (!__atomic_load_n(&forked, __ATOMIC_ACQUIRE) && now_ms() - t0 < 10000) {
		if (__atomic_load_n(&Z->fork_pending, __ATOMIC_ACQUIRE)) {
			__atomic_store_n(&saw_pending, 1, __ATOMIC_RELEASE);
			break;
		}
		sleep_ms(1);
	}
}

enum win { WIN_RELEASE, WIN_RESERVE, WIN_UNMAP_SPB, WIN_UNMAP_LARGE, NR_WIN };
static const char *const win_names[NR_WIN] = {"decay release", "SPB reservation",
					       "SPB unmap", "large unmap"};
static void *large_p;
static void *reserve_result;

static void *window_thread(void *arg)
{
	switch ((enum win)(uintptr_t)arg) {
	case WIN_RELEASE:
	case WIN_UNMAP_SPB:
		spb_trim(); /* everything due, whatever the delay */
		break;
	case WIN_RESERVE:
		reserve_result = spb_pages_alloc(PB, 0, SPB_MOVABLE, 0);
		break;
	case WIN_UNMAP_LARGE:
		spb_pages_free(large_p);
		break;
	default:
		break;
	}
	return NULL;
}

/* Free every live allocation of the zone by walking it (the child does
 * not know what the other thread was handed), then the large mappings. */
static void free_everything(void)
{
	for (int again = 1; again;) {
		again = 0;
		spb__zone_lock(Z);
		void *victim = NULL;
		for (unsigned c = 0; c < SPB_NR_CATS && !victim; c++)
			for (unsigned f = 0; f < SPB_NR_FULLNESS && !victim; f++) {
				struct spb_link *h = &Z->lists[c][f];
				for (struct spb_link *l = h->next; l != h && !victim; l = l->next) {
					struct spb *s = spb__container_of(l, struct spb, link);
					for (unsigned i = 0; i < SPB_PB_PER_SPB && !victim; i++) {
						struct spb_pageblock *pb = &s->pb[i];
						if (pb->cls >= SPB_NR_CLASSES)
							continue;
						if (pb->mode == SPB_PB_MODE_MULTI_HEAD)
							victim = spb__pb_addr(s, i);
						if (pb->mode == SPB_PB_MODE_RUNS)
							for (unsigned g = 0; g < SPB_PAGES_PER_PB; g++)
								if (spb__run_len(pb)[g]) {
									victim = (char *)spb__pb_addr(s, i) + g * PG;
									break;
								}
					}
				}
			}
		spb__zone_unlock(Z);
		if (victim) {
			spb_pages_free(victim);
			again = 1;
		}
	}
	for (size_t slot = 0; slot < SPB_MAP_SLOTS; slot++) {
		struct spb_region *r = spb__map[slot];
		if (r && r->kind == SPB_REGION_LARGE && (r->base >> SPB_SPB_SHIFT) == slot)
			spb_pages_free((void *)r->base);
	}
}

/* What must hold in any process that did not fork inside a window. */
static void check_consistent(struct spb *known, uintptr_t known_base)
{
	CHECK_ZONES();
	spb__zone_lock(Z);
	unsigned busy = 0;
	for (unsigned c = 0; c < SPB_NR_CATS; c++)
		for (unsigned f = 0; f < SPB_NR_FULLNESS; f++) {
			struct spb_link *h = &Z->lists[c][f];
			for (struct spb_link *l = h->next; l != h; l = l->next) {
				struct spb *s = spb__container_of(l, struct spb, link);
				busy += s->nr_busy_pb;
				for (unsigned i = 0; i < SPB_PB_PER_SPB; i++)
					busy += s->pb[i].cls == SPB_PB_BUSY;
			}
		}
	CHECK_EQ(busy, 0);
	CHECK_EQ(Z->nr_spbs_reserving, 0);
	CHECK_EQ(Z->nr_windows, 0);
	CHECK(!Z->fork_pending);
	/* The SPB a window was unmapping: live, or dead and gone. */
	if (known) {
		bool dead = false;
		for (struct spb_link *l = Z->dead.next; l != &Z->dead; l = l->next)
			dead |= spb__container_of(l, struct spb, link) == known;
		bool live = !known->dead && spb__region_of((void *)known_base) == &known->r;
		CHECK(live != dead);
		if (dead) {
			CHECK(spb_test_range_gone((void *)known_base, PG));
		}
	}
	/* large_bytes is what the address map holds, and it is all mapped. */
	uint64_t large = 0;
	for (size_t slot = 0; slot < SPB_MAP_SLOTS; slot++) {
		struct spb_region *r = spb__map[slot];
		if (r && r->kind == SPB_REGION_LARGE && (r->base >> SPB_SPB_SHIFT) == slot) {
			unsigned char vec;
			large += r->size;
			CHECK(mincore((void *)r->base, PG, &vec) == 0);
		}
	}
	CHECK_EQ(Z->large_bytes, large);
	CHECK(spb__list_empty(&Z->large_retry));
	spb__zone_unlock(Z);
}

/* The child: consistent, can reserve up to the limit, gives all back. */
static int child_main(struct spb *known, uintptr_t known_base)
{
	alarm(30);
	check_consistent(known, known_base);
	/* Reservations: the limit is reachable, exactly. */
	spb__option_set(OPT_MAX_SPBS, Z->nr_spbs + 2);
	unsigned got = 0;
	while (got < 8 && spb_pages_alloc(SPB_PB_PER_SPB * PB, 0, SPB_MOVABLE, 0))
		got++;
	CHECK_EQ(Z->nr_spbs, spb__opt(OPT_MAX_SPBS));
	CHECK(got >= 2);
	CHECK_ZONES();
	/* Everything back: the decay and the unmap queue work. */
	free_everything();
	spb__option_set(OPT_DECAY_MS, 0);
	spb_trim();
	CHECK_EQ(Z->nr_spbs, 0);
	CHECK_EQ(Z->total_pb, 0);
	CHECK_EQ(Z->large_bytes, 0);
	CHECK(spb__list_empty(&Z->dirty));
	CHECK(spb__list_empty(&Z->emptyq));
	CHECK_ZONES();
	fflush(NULL);
	return check_failures ? 1 : 0;
}

static void run_case(enum win w)
{
	struct spb *known = NULL;
	uintptr_t known_base = 0;
	void *keep = NULL;
	/* Start from nothing: every SPB unmapped. */
	spb__option_set(OPT_DECAY_MS, 0);
	spb_trim();
	REQUIRE(Z->nr_spbs == 0);
	spb__option_set(OPT_DECAY_MS, 60000);
	switch (w) {
	case WIN_RELEASE: {
		/* A dirty pageblock in an SPB kept non-empty, due now. */
		keep = spb_pages_alloc(PG, 0, SPB_MOVABLE, 0);
		char *p = spb_pages_alloc(PB, 0, SPB_MOVABLE, 0);
		REQUIRE(keep && p);
		memset(p, 1, PG);
		spb_pages_free(p);
		armed_size = PB;
		__atomic_store_n(&armed_kind, SPB_OS_MADV_DONTNEED, __ATOMIC_RELEASE);
		break;
	}
	case WIN_RESERVE:
		/* An SPB: 1 GiB over-reserved by its alignment, or 1 GiB
		 * mapped in the handle arena. */
		armed_size = spb__hmask ? GB : 2 * GB;
		__atomic_store_n(&armed_kind, SPB_OS_MMAP_RESERVE, __ATOMIC_RELEASE);
		break;
	case WIN_UNMAP_SPB: {
		/* An empty SPB, due now. */
		void *p = spb_pages_alloc(PG, 0, SPB_UNMOVABLE, 0);
		REQUIRE(p);
		known = spb_of(p);
		known_base = known->r.base;
		spb_pages_free(p);
		armed_size = GB;
		__atomic_store_n(&armed_kind, SPB_OS_MUNMAP, __ATOMIC_RELEASE);
		break;
	}
	case WIN_UNMAP_LARGE:
		/* Something in an SPB too, so the child has both kinds. */
		keep = spb_pages_alloc(3 * PB, 0, SPB_RECLAIMABLE, 0);
		large_p = spb_pages_alloc(GB + PB, 0, SPB_MOVABLE, 0);
		REQUIRE(keep && large_p);
		armed_size = 2 * GB;
		__atomic_store_n(&armed_kind, SPB_OS_MUNMAP, __ATOMIC_RELEASE);
		break;
	default:
		break;
	}
	spb__option_set(OPT_DECAY_MS, 0);
	__atomic_store_n(&entered, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&forked, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&saw_pending, 0, __ATOMIC_RELAXED);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, window_thread, (void *)(uintptr_t)w) == 0);
	uint64_t t0 = now_ms();
	while (!__atomic_load_n(&entered, __ATOMIC_ACQUIRE) && now_ms() - t0 < 10000)
		sleep_ms(1);
	CHECK(__atomic_load_n(&entered, __ATOMIC_ACQUIRE));
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		_exit(child_main(known, known_base));
	__atomic_store_n(&forked, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	__atomic_store_n(&armed_kind, -1, __ATOMIC_RELEASE);
	int st = 0;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
	printf("fork inside the %s window: fork %s for it, child %s\n", win_names[w],
	       __atomic_load_n(&saw_pending, __ATOMIC_ACQUIRE) ? "waited" : "did not wait",
	       ok ? "consistent" : "INCONSISTENT");
	CHECK(ok);
	/* The fork waited for the window (the hook saw prefork waiting). */
	CHECK(__atomic_load_n(&saw_pending, __ATOMIC_ACQUIRE));
	/* And the parent is whole too. */
	check_consistent(known, known_base);
	if (w == WIN_RESERVE)
		CHECK(reserve_result != NULL);
	free_everything();
	spb_trim();
	CHECK_EQ(Z->nr_spbs, 0);
	CHECK_ZONES();
	(void)keep;
}

int main(void)
{
	Z = tap_engine_setup();
	spb__process_init(); /* the fork handlers (init.c) */
	spb__os_inject.hook = hook;
	for (int w = 0; w < NR_WIN; w++)
		run_case((enum win)w);
	spb__os_inject.hook = NULL;
	return check_done("test_fork_window");
}
