/*
 * test_heap_hardening.c — regressions for defects of the malloc layer's
 * thread paths (issue "Correctness and hardening"), each a case that
 * failed before its fix:
 *   abandoned_class   an exiting thread's RECLAIMABLE span was adopted by
 *                     an UNMOVABLE heap (abandoned lists were per bin only);
 *   late_free_batch   a free after the thread's key destructors made a
 *                     heap that was never retired, and the block waited in
 *                     its cross-thread batch for ever;
 *   idle_xfree        a thread that frees one remote block and sleeps
 *                     pinned it in its batch for ever (later: until the
 *                     background thread pushed it; now a cross-thread
 *                     free is flagged in the owner's span at once and no
 *                     thread holds a batch);
 *   corrupt_link      a write after free into a block's link made a later
 *                     malloc return an arbitrary address (now: one line);
 *   xthread_double    a block freed twice by another thread.
 * Drives the malloc layer through its internal entry points.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "heap.h"
#include "tap.h"

static unsigned pb_class_of(const void *p)
{
	struct spb_region *r = spb__region_of(p);
	REQUIRE(r && r->kind == SPB_REGION_SPB);
	struct spb *s = (struct spb *)r;
	return s->pb[((uintptr_t)p >> SPB_PB_SHIFT) & (SPB_PB_PER_SPB - 1)].cls;
}

/* ---- abandoned spans keep their class ---- */

#define NB 600
static void *recl_blocks[NB], *unm_blocks[NB];

static void *mixed_then_exit(void *arg)
{
	(void)arg;
	for (int i = 0; i < NB; i++) {
		recl_blocks[i] = spb__malloc_class(64, SPB_RECLAIMABLE, 0);
		unm_blocks[i] = spb__malloc(64);
	}
	/* Every other block stays live: the spans are abandoned, not freed. */
	for (int i = 0; i < NB; i += 2) {
		spb__free_ptr(recl_blocks[i]);
		spb__free_ptr(unm_blocks[i]);
		recl_blocks[i] = unm_blocks[i] = NULL;
	}
	return NULL;
}

struct cls_probe {
	unsigned cls;
	int wrong;
	void *got[2 * NB];
};

static void *probe_class(void *arg)
{
	struct cls_probe *pr = arg;
	for (int i = 0; i < 2 * NB; i++) {
		void *p = pr->cls == SPB_UNMOVABLE ? spb__malloc(64)
						   : spb__malloc_class(64, pr->cls, 0);
		REQUIRE(p);
		pr->wrong += pb_class_of(p) != pr->cls;
		pr->got[i] = p;
	}
	for (int i = 0; i < 2 * NB; i++)
		spb__free_ptr(pr->got[i]);
	return NULL;
}

static void test_abandoned_class(void)
{
	pthread_t t;
	uint64_t ab0 = ctr(MALLOC_SPAN_ABANDON), ad0 = ctr(MALLOC_SPAN_ADOPT);
	REQUIRE(pthread_create(&t, NULL, mixed_then_exit, NULL) == 0);
	pthread_join(t, NULL);
	CHECK(ctr(MALLOC_SPAN_ABANDON) - ab0 >= 2);
	static struct cls_probe pu = {.cls = SPB_UNMOVABLE}, pr = {.cls = SPB_RECLAIMABLE};
	REQUIRE(pthread_create(&t, NULL, probe_class, &pu) == 0);
	pthread_join(t, NULL);
	REQUIRE(pthread_create(&t, NULL, probe_class, &pr) == 0);
	pthread_join(t, NULL);
	printf("abandoned_class: %llu spans adopted, wrong class: unmovable %d, reclaimable %d\n",
	       (unsigned long long)(ctr(MALLOC_SPAN_ADOPT) - ad0), pu.wrong, pr.wrong);
	CHECK(ctr(MALLOC_SPAN_ADOPT) - ad0 >= 2); /* both probes adopted */
	CHECK_EQ(pu.wrong, 0);
	CHECK_EQ(pr.wrong, 0);
	for (int i = 0; i < NB; i++) {
		if (recl_blocks[i])
			CHECK_EQ(pb_class_of(recl_blocks[i]), SPB_RECLAIMABLE);
		if (recl_blocks[i])
			spb__free_ptr(recl_blocks[i]);
		if (unm_blocks[i])
			spb__free_ptr(unm_blocks[i]);
	}
}

/* ---- a free after the last key destructor round ---- */

static pthread_key_t late_key;
static void *late_victim;       /* main's block, freed by the exiting thread */
static void *late_alloc_ptr;    /* allocated by the exiting thread, late */
static int late_rounds;

static void late_dtor(void *v)
{
	/* glibc runs destructors up to PTHREAD_DESTRUCTOR_ITERATIONS (4)
	 * rounds while values are set again: spbmalloc's own destructor ran in
	 * round 1; the free and malloc here come in the last round, after
	 * which no destructor runs. */
	if (++late_rounds < 4) {
		pthread_setspecific(late_key, v);
		return;
	}
	spb__free_ptr(late_victim);
	late_alloc_ptr = spb__malloc(200);
	spb__free_ptr(late_alloc_ptr);
}

static void *late_thread(void *arg)
{
	(void)arg;
	spb__free_ptr(spb__malloc(32)); /* this thread has a heap */
	pthread_setspecific(late_key, (void *)1);
	return NULL;
}

static void test_late_free_batch(void)
{
	REQUIRE(pthread_key_create(&late_key, late_dtor) == 0);
	uint64_t ti0 = ctr(MALLOC_THREAD_INIT), te0 = ctr(MALLOC_THREAD_EXIT);
	uint64_t lf0 = ctr(MALLOC_LATE_FREE), la0 = ctr(MALLOC_LATE_ALLOC);
	/* A span of main's with one block that the exiting thread frees. */
	void *keep[64];
	for (int i = 0; i < 64; i++)
		keep[i] = spb__malloc(96);
	late_victim = keep[17];
	keep[17] = NULL;
	pthread_t t;
	late_rounds = 0;
	REQUIRE(pthread_create(&t, NULL, late_thread, NULL) == 0);
	pthread_join(t, NULL);
	CHECK_EQ(late_rounds, 4);
	uint64_t ti = ctr(MALLOC_THREAD_INIT) - ti0, te = ctr(MALLOC_THREAD_EXIT) - te0;
	printf("late_free_batch: heaps made %llu, retired %llu, late frees %llu, late allocs %llu\n",
	       (unsigned long long)ti, (unsigned long long)te,
	       (unsigned long long)(ctr(MALLOC_LATE_FREE) - lf0),
	       (unsigned long long)(ctr(MALLOC_LATE_ALLOC) - la0));
	CHECK_EQ(ti, te); /* no heap left live by the late free */
	CHECK(ctr(MALLOC_LATE_FREE) - lf0 >= 2);
	CHECK(ctr(MALLOC_LATE_ALLOC) - la0 >= 1);
	/* The block is back in its span at once (no batch holds it): the
	 * owner's own frees and mallocs of that size get it again. */
	struct spb_region *r = spb__region_of(late_victim);
	struct spb_span *s = spb__span_of((struct spb *)r, late_victim);
	CHECK(spb__span_collect(s) == 1 || !spb__live_test(s, (uintptr_t)late_victim - s->start));
	for (int i = 0; i < 64; i++)
		if (keep[i])
			spb__free_ptr(keep[i]);
	pthread_key_delete(late_key);
}

/* ---- a remote free by a thread that then sleeps ---- */

struct idle_arg {
	void *victim;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int freed, release;
};

static void *free_then_sleep(void *arg)
{
	struct idle_arg *a = arg;
	spb__free_ptr(a->victim);
	pthread_mutex_lock(&a->mu);
	a->freed = 1;
	pthread_cond_broadcast(&a->cv);
	while (!a->release)
		pthread_cond_wait(&a->cv, &a->mu);
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

static struct spb_span *span_of(void *p)
{
	struct spb_region *r = spb__region_of(p);
	return spb__span_of((struct spb *)r, p);
}

/* The block's state in its span: flagged by another thread's free (live,
 * xfreed) and its word named in the span's xsum. */
static bool victim_flagged(void *victim)
{
	struct spb_span *s = span_of(victim);
	uintptr_t off = (uintptr_t)victim - s->start;
	uint64_t bit, *w = spb__bit_word(s, off, &bit);
	return (__atomic_load_n(&w[0], __ATOMIC_ACQUIRE) & bit) &&
	       (__atomic_load_n(&w[1], __ATOMIC_ACQUIRE) & bit) &&
	       (__atomic_load_n(&s->xsum, __ATOMIC_ACQUIRE) &
		spb__xsum_bit(s, off >> s->gshift >> 6));
}

static void test_idle_xfree(void)
{
	void *keep[32];
	for (int i = 0; i < 32; i++) /* a size of its own: nothing flagged yet */
		keep[i] = spb__malloc(400);
	struct idle_arg a = {.victim = keep[5], .mu = PTHREAD_MUTEX_INITIALIZER,
			     .cv = PTHREAD_COND_INITIALIZER};
	keep[5] = NULL;
	struct spb_span *s = span_of(a.victim);
	CHECK(__atomic_load_n(&s->xsum, __ATOMIC_ACQUIRE) == 0);
	uint32_t used0 = s->used;
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, free_then_sleep, &a) == 0);
	pthread_mutex_lock(&a.mu);
	while (!a.freed)
		pthread_cond_wait(&a.cv, &a.mu);
	pthread_mutex_unlock(&a.mu);
	/* The freeing thread sleeps: nothing of it holds the block. */
	CHECK(victim_flagged(a.victim));
	CHECK(s->used == used0); /* counted until the owner collects it */
	/* The owner (this thread) collects it: free, off the xsum. */
	CHECK(spb__span_collect(s) == 1);
	uint64_t bit, *w = spb__bit_word(s, (uintptr_t)a.victim - s->start, &bit);
	CHECK(!(__atomic_load_n(&w[0], __ATOMIC_RELAXED) & bit));
	CHECK(!(__atomic_load_n(&w[1], __ATOMIC_RELAXED) & bit));
	CHECK(__atomic_load_n(&s->xsum, __ATOMIC_RELAXED) == 0);
	CHECK(s->used == used0 - 1);
	CHECK(spb__span_collect(s) == 0);
	/* ... and hands it out again (first on the free list). */
	void *again = spb__malloc(400);
	printf("idle_xfree: flagged at once, collected, handed out again: %s\n",
	       again == a.victim ? "yes" : "no");
	CHECK(again == a.victim);
	spb__free_ptr(again);
	pthread_mutex_lock(&a.mu);
	a.release = 1;
	pthread_cond_broadcast(&a.cv);
	pthread_mutex_unlock(&a.mu);
	pthread_join(t, NULL);
	for (int i = 0; i < 32; i++)
		if (keep[i])
			spb__free_ptr(keep[i]);
}

/* ---- death cases ---- */

static void c_corrupt_link(void *arg)
{
	(void)arg;
	char *p[8];
	for (int i = 0; i < 8; i++)
		p[i] = spb__malloc(64);
	spb__free_ptr(p[3]);
	spb__free_ptr(p[4]);
	/* Use after free: overwrite p[4]'s link with a plausible address. */
	*(void **)p[4] = p[0];
	spb__malloc(64); /* pops p[4]: its link is checked here */
	spb__malloc(64);
	_exit(0);
}

static void *free_arg(void *p)
{
	spb__free_ptr(p);
	return NULL;
}

static void c_xthread_double(void *arg)
{
	(void)arg;
	void *p = spb__malloc(48), *keep = spb__malloc(48);
	pthread_t t;
	pthread_create(&t, NULL, free_arg, p);
	pthread_join(t, NULL);
	pthread_create(&t, NULL, free_arg, p); /* again, from another thread */
	pthread_join(t, NULL);
	spb__free_ptr(keep);
	_exit(0);
}

/* The call must end the process by SIGABRT with one line containing
 * expect. */
static void death(const char *name, void (*fn)(void *), const char *expect)
{
	char out[1024];
	int st = check_death(fn, NULL, out, sizeof out);
	bool ok = WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(out, expect) &&
		  strchr(out, '\n') == out + strlen(out) - 1;
	printf("%-16s %s  %s", name, ok ? "ok" : "FAIL", out[0] ? out : "(no output)\n");
	CHECK(ok);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	spb__option_set(OPT_STATSEG, 0);
	spb__option_set(OPT_STATS_INTERVAL_MS, 1000);
	spb__free_ptr(spb__malloc(16)); /* process init, background thread */
	test_abandoned_class();
#ifdef __SANITIZE_THREAD__
	/* ThreadSanitizer tears its thread state down before glibc's last
	 * destructor round: a call into the allocator from there faults in
	 * the sanitizer's runtime, not in ours. */
	printf("late_free_batch: skipped under ThreadSanitizer\n");
#else
	test_late_free_batch();
#endif
	test_idle_xfree();
#ifndef __SANITIZE_THREAD__ /* no threads in the child of a threaded fork */
	death("corrupt_link", c_corrupt_link, "free list corrupted");
	death("xthread_double", c_xthread_double, "double free");
#endif
	return check_done("test_heap_hardening");
}
