/*
 * test_compact.c — spb_compact() moves handle objects and loses nothing.
 *
 * 1. 60,000 objects of 16-2,000 bytes, each stamped with its handle; a
 *    random 80 % freed; spb_compact() moves some (bytes and counters
 *    agree), every survivor keeps its stamp and its handle, pinned ones
 *    keep their address (counted as skipped); inside a read section
 *    spb_compact() refuses with EDEADLK.
 * 2. Readers and writers on every core while the main thread compacts in
 *    a loop: each writer owns a set of objects and increments a counter
 *    in each inside read sections (and through pins, now and then);
 *    readers check every object's stamp. At the end each counter equals
 *    the increments its writer made: no write was lost, no read torn.
 *    A churner meanwhile reallocates, frees and allocates objects of its
 *    own (each filled with a byte pattern of its handle, checked at every
 *    step), so the mover races hrealloc and hfree too.
 * 3. fork while the writers run, readers sit in read sections and
 *    compaction loops: the child reads every object and compacts itself
 *    (the parent's readers are gone from liburcu's registry there).
 */
#include <pthread.h>
#include <stdbool.h>

#include "mtest.h"

#define N 60000

struct obj {
	uint64_t stamp; /* the handle */
	uint64_t count; /* writer's increments */
};

static spb_handle_t hs[N];
static int stop;

static struct obj *get(spb_handle_t h) { return spb_hget(h); }

#define NW 2
static uint64_t made[N];

static void *writer(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg, seed = id + 1;
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		for (unsigned i = id; i < N; i += NW) {
			if (!hs[i])
				continue;
			seed = seed * 1103515245u + 12345u;
			if ((seed >> 16) % 64 == 0) {
				struct obj *o = spb_hpin(hs[i]);
				o->count++;
				spb_hunpin(hs[i]);
			} else {
				spb_read_lock();
				get(hs[i])->count++;
				spb_read_unlock();
			}
			made[i]++;
		}
	}
	return NULL;
}

static long bad_reads;

#define NC 512
static long bad_churn;

static bool pattern_ok(spb_handle_t h, size_t n)
{
	const unsigned char *p = spb_hget(h);
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(h + i))
			return false;
	return true;
}

static void fill(spb_handle_t h, size_t n)
{
	unsigned char *p = spb_hget(h);
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(h + i);
}

static void *churner(void *arg)
{
	(void)arg;
	static spb_handle_t c[NC];
	static size_t len[NC];
	unsigned seed = 99;
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		seed = seed * 1103515245u + 12345u;
		unsigned i = (seed >> 8) % NC;
		size_t n = 16 + (seed >> 4) % 3000;
		spb_read_lock();
		if (c[i] && !pattern_ok(c[i], len[i]))
			__atomic_fetch_add(&bad_churn, 1, __ATOMIC_RELAXED);
		spb_read_unlock();
		switch (seed % 3) {
		case 0:
			spb_hfree(c[i]);
			c[i] = spb_halloc(n, 0);
			len[i] = n;
			break;
		case 1:
			if (!c[i])
				continue;
			if (spb_hrealloc(c[i], n) != 0)
				__atomic_fetch_add(&bad_churn, 1, __ATOMIC_RELAXED);
			spb_read_lock();
			if (!pattern_ok(c[i], n < len[i] ? n : len[i]))
				__atomic_fetch_add(&bad_churn, 1, __ATOMIC_RELAXED);
			spb_read_unlock();
			len[i] = n;
			break;
		default:
			if (!c[i])
				continue;
			if (spb_hsize(c[i]) < len[i])
				__atomic_fetch_add(&bad_churn, 1, __ATOMIC_RELAXED);
			break;
		}
		spb_read_lock();
		fill(c[i], len[i]);
		spb_read_unlock();
	}
	for (unsigned i = 0; i < NC; i++)
		spb_hfree(c[i]);
	return NULL;
}

static void *reader(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		spb_read_lock();
		for (unsigned i = 0; i < N; i++)
			if (hs[i] && get(hs[i])->stamp != hs[i])
				__atomic_fetch_add(&bad_reads, 1, __ATOMIC_RELAXED);
		spb_read_unlock();
	}
	return NULL;
}

static bool all_stamped(void)
{
	bool ok = true;
	spb_read_lock();
	for (unsigned i = 0; i < N; i++)
		if (hs[i] && get(hs[i])->stamp != hs[i])
			ok = false;
	spb_read_unlock();
	return ok;
}

int main(void)
{
	unsigned seed = 7;
	for (unsigned i = 0; i < N; i++) {
		seed = seed * 1103515245u + 12345u;
		hs[i] = spb_halloc(16 + (seed >> 8) % 2000, SPB_F_ZERO);
		REQUIRE(hs[i]);
		spb_read_lock();
		get(hs[i])->stamp = hs[i];
		spb_read_unlock();
	}
	for (unsigned i = 0; i < N; i++) {
		seed = seed * 1103515245u + 12345u;
		if ((seed >> 8) % 10 < 8) {
			spb_hfree(hs[i]);
			hs[i] = 0;
		}
	}
	/* Objects over 128 KiB (page runs) among them move too. */
	enum { NBIG = 48 };
	spb_handle_t big[NBIG];
	void *big_at[NBIG];
	for (unsigned i = 0; i < NBIG; i++) {
		seed = seed * 1103515245u + 12345u;
		big[i] = spb_halloc(130 * 1024 + (seed >> 8) % (400 * 1024), 0);
		REQUIRE(big[i]);
		struct obj *o = spb_hpin(big[i]);
		o->stamp = big[i];
		spb_hunpin(big[i]);
		/* small ones between, then mostly freed: sparse pageblocks */
		for (unsigned k = 0; k < 200; k++)
			spb_hfree(spb_halloc(16 + k * 8, 0));
	}
	for (unsigned i = 0; i < NBIG; i += 2) {
		spb_hfree(big[i]);
		big[i] = 0;
	}
	for (unsigned i = 0; i < NBIG; i++)
		big_at[i] = big[i] ? spb_hpin(big[i]) : NULL;
	for (unsigned i = 0; i < NBIG; i++)
		if (big[i])
			spb_hunpin(big[i]);

	/* A few pinned survivors stay where they are. */
	spb_handle_t pinned[16];
	void *where[16];
	unsigned np = 0;
	for (unsigned i = 0; i < N && np < 16; i++)
		if (hs[i]) {
			pinned[np] = hs[i];
			where[np++] = spb_hpin(hs[i]);
		}
	spb_read_lock();
	errno = 0;
	CHECK_EQ(spb_compact(0), 0);
	CHECK_EQ(errno, EDEADLK);
	spb_read_unlock();
	uint64_t m0 = mt_counter("compact_moved"), b0 = mt_counter("compact_moved_bytes");
	uint64_t s0 = mt_counter("compact_pinned_skipped");
	size_t moved = spb_compact(0);
	printf("test_compact: first pass moved %zu bytes (%" PRIu64 " objects)\n", moved,
	       mt_counter("compact_moved") - m0);
	CHECK(moved > 0);
	CHECK_EQ(mt_counter("compact_moved_bytes") - b0, moved);
	CHECK(mt_counter("compact_pinned_skipped") > s0);
	CHECK(all_stamped());
	unsigned big_moved = 0;
	for (unsigned i = 0; i < NBIG; i++)
		if (big[i]) {
			struct obj *o = spb_hpin(big[i]);
			CHECK_EQ(o->stamp, big[i]);
			big_moved += (void *)o != big_at[i];
			spb_hunpin(big[i]);
		}
	printf("test_compact: %u of %u objects over 128 KiB moved\n", big_moved, NBIG / 2);
	CHECK(big_moved > 0);
	for (unsigned k = 0; k < np; k++) {
		CHECK(spb_hpin(pinned[k]) == where[k]);
		spb_hunpin(pinned[k]);
		spb_hunpin(pinned[k]);
	}

	/* ---- writers and readers against the mover ---- */
	pthread_t w[NW], r, ch;
	for (unsigned i = 0; i < NW; i++)
		REQUIRE(pthread_create(&w[i], NULL, writer, (void *)(uintptr_t)i) == 0);
	REQUIRE(pthread_create(&r, NULL, reader, NULL) == 0);
	REQUIRE(pthread_create(&ch, NULL, churner, NULL) == 0);
	size_t total = 0;
	double t0 = mt_now();
	int passes = 0;
	while (mt_now() - t0 < 3.0 || passes < 20) {
		/* Churn so there is always something sparse to move. */
		for (unsigned k = 0; k < 200; k++) {
			seed = seed * 1103515245u + 12345u;
			spb_handle_t t = spb_halloc(16 + (seed >> 8) % 2000, 0);
			REQUIRE(t);
			spb_hfree(t);
		}
		total += spb_compact(0);
		passes++;
		if (passes == 10) {
			fflush(NULL);
			pid_t pid = fork();
			if (pid == 0) {
				bool ok = all_stamped();
				spb_compact(0);
				_exit(ok && all_stamped() ? 0 : 3);
			}
			int st = 0;
			waitpid(pid, &st, 0);
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		}
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < NW; i++)
		pthread_join(w[i], NULL);
	pthread_join(r, NULL);
	pthread_join(ch, NULL);
	CHECK_EQ(bad_reads, 0);
	CHECK_EQ(bad_churn, 0);
	unsigned lost = 0;
	spb_read_lock();
	for (unsigned i = 0; i < N; i++)
		if (hs[i] && get(hs[i])->count != made[i])
			lost++;
	spb_read_unlock();
	CHECK_EQ(lost, 0);
	CHECK(all_stamped());
	printf("test_compact: %d passes under load moved %zu bytes; %" PRIu64
	       " moves cancelled by readers, %" PRIu64 " grace periods\n",
	       passes, total, mt_counter("compact_cancelled"), mt_counter("compact_grace"));
	for (unsigned i = 0; i < N; i++)
		spb_hfree(hs[i]);
	for (unsigned i = 0; i < NBIG; i++)
		spb_hfree(big[i]);
	return check_done("test_compact");
}
