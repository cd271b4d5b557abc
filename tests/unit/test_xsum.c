/*
 * test_xsum.c — cross-thread frees flagged in the owner's bitmap and named
 * in the span's xsum (lib/free.c xfree_note, lib/span.c spb__span_collect).
 *
 * One owner thread allocates blocks of eight sizes (16 B .. 9 KiB, so
 * spans of one to 64 bitmap words) and hands most of them round robin to
 * three freer threads, so that blocks of one span are freed by every
 * freer at once, while the owner keeps refilling (collect, mark_full and
 * its second look, notifications of full spans) and frees some of its
 * own. When the freers are done and joined:
 *   - no span of the owner holds an xfreed flag whose word's xsum bit is
 *     clear (a block nobody would ever collect: the lost wake-up of the
 *     new protocol);
 *   - after a collect of every span, no xfreed flag is left, every span's
 *     `used` equals its live bits, and their sum equals the blocks the
 *     owner still holds (no block lost, none collected twice);
 *   - every byte of a kept block still holds its stamp (a collect never
 *     linked a live block onto a free list).
 * Arguments: seconds (default 2).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "heap.h"
#include "tap.h"

#define NF 3
#define RING 4096
#define KEEP 20000

struct ring {
	void *_Atomic slot[RING];
	unsigned head, tail;
	int _Atomic done;
};
static struct ring rings[NF];
static const size_t sizes[] = {16, 32, 48, 112, 400, 1024, 3000, 9000};
#define NSIZES (sizeof sizes / sizeof sizes[0])
static void *kept[KEEP];
static size_t kept_size[KEEP];

static void *freer(void *arg)
{
	struct ring *r = arg;
	for (;;) {
		void *p = __atomic_load_n(&r->slot[r->tail % RING], __ATOMIC_ACQUIRE);
		if (!p) {
			if (__atomic_load_n(&r->done, __ATOMIC_ACQUIRE) &&
			    !__atomic_load_n(&r->slot[r->tail % RING], __ATOMIC_ACQUIRE))
				break;
			sched_yield();
			continue;
		}
		__atomic_store_n(&r->slot[r->tail % RING], NULL, __ATOMIC_RELAXED);
		r->tail++;
		memset(p, 0x5a, 8); /* the freer writes it last, as a program does */
		spb__free_ptr(p);
	}
	return NULL;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static bool stamped(const unsigned char *p, size_t n, unsigned char v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* Every span of the owner's heap: avail and full lists (the current spans
 * are on the avail lists). */
#define FOR_SPANS(h, s)                                                                   \
	for (unsigned b_ = 0; b_ < SPB_NR_BINS; b_++)                                     \
		for (int k_ = 0; k_ < 2; k_++)                                            \
			for (struct spb_link *l_ = (k_ ? &(h)->full[b_] : &(h)->avail[b_])->next, \
					     *e_ = k_ ? &(h)->full[b_] : &(h)->avail[b_];           \
			     l_ != e_ && ((s) = spb__container_of(l_, struct spb_span, link)); \
			     l_ = l_->next)

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	double secs = argc > 1 ? atof(argv[1]) : 2.0;
	/* No stats segment: its publisher reads the heaps' counters, which
	 * the owner and the freers write plainly (a benign race TSan would
	 * report; the api tests suppress it). */
	spb__option_set(OPT_STATSEG, 0);
	spb__free_ptr(spb__malloc(16)); /* process init */
	pthread_t t[NF];
	for (int i = 0; i < NF; i++)
		REQUIRE(pthread_create(&t[i], NULL, freer, &rings[i]) == 0);
	unsigned long handed = 0, local = 0, rr = 0;
	unsigned seed = 1, nk = 0;
	double t0 = now_s();
	for (unsigned long it = 0;; it++) {
		if (!(it & 1023) && now_s() - t0 > secs)
			break;
		seed = seed * 1103515245u + 12345u;
		size_t sz = sizes[(seed >> 16) % NSIZES];
		unsigned char *p = spb__malloc(sz);
		REQUIRE(p);
		memset(p, 1, 8);
		if (((seed >> 8) & 7) == 0) { /* kept a while, then freed here */
			memset(p, (int)(sz & 0xff) | 1, sz);
			if (nk < KEEP) {
				kept_size[nk] = sz;
				kept[nk++] = p;
			} else {
				unsigned j = (seed >> 3) % KEEP;
				CHECK(stamped(kept[j], kept_size[j], (unsigned char)(kept_size[j] & 0xff) | 1));
				spb__free_ptr(kept[j]);
				kept[j] = p;
				kept_size[j] = sz;
				local++;
			}
			continue;
		}
		struct ring *r = &rings[rr++ % NF];
		while (__atomic_load_n(&r->slot[r->head % RING], __ATOMIC_ACQUIRE))
			sched_yield(); /* full: wait for the freer */
		__atomic_store_n(&r->slot[r->head % RING], p, __ATOMIC_RELEASE);
		r->head++;
		handed++;
	}
	for (int i = 0; i < NF; i++)
		__atomic_store_n(&rings[i].done, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < NF; i++)
		pthread_join(t[i], NULL);

	struct spb_heap *h = spb__tls_primary;
	REQUIRE(h);
	struct spb_span *s;
	unsigned spans = 0, lost = 0, mismatched = 0;
	/* At rest: every flagged block is named by its word's xsum bit. */
	FOR_SPANS(h, s) {
		const uint64_t *w = (const uint64_t *)(s + 1);
		uint64_t sum = __atomic_load_n(&s->xsum, __ATOMIC_ACQUIRE);
		spans++;
		for (uint32_t k = 0; k < (1u << s->words_order); k++)
			if (__atomic_load_n(&w[2 * k + 1], __ATOMIC_ACQUIRE) &&
			    !(sum & spb__xsum_bit(s, k)))
				lost++;
	}
	/* Collected: nothing flagged is left, used = live bits = kept. */
	unsigned long used = 0, xleft = 0;
	FOR_SPANS(h, s) {
		spb__span_collect(s);
		const uint64_t *w = (const uint64_t *)(s + 1);
		uint32_t live = 0;
		for (uint32_t k = 0; k < (1u << s->words_order); k++) {
			xleft += __atomic_load_n(&w[2 * k + 1], __ATOMIC_RELAXED) != 0;
			live += (uint32_t)__builtin_popcountll(__atomic_load_n(&w[2 * k], __ATOMIC_RELAXED));
		}
		mismatched += live != s->used;
		used += s->used;
	}
	unsigned bad_stamp = 0;
	for (unsigned i = 0; i < nk; i++)
		bad_stamp += !stamped(kept[i], kept_size[i], (unsigned char)(kept_size[i] & 0xff) | 1);
	printf("test_xsum: %.1f s, %lu blocks freed by %d other threads, %lu by the owner, "
	       "%u kept, %u spans; flagged without xsum %u, used after collect %lu, "
	       "flags left %lu, spans used != live %u, stamps broken %u\n",
	       now_s() - t0, handed, NF, local, nk, spans, lost, used, xleft, mismatched,
	       bad_stamp);
	CHECK(handed > 10000);
	CHECK_EQ(lost, 0);
	CHECK_EQ(xleft, 0);
	CHECK_EQ(mismatched, 0);
	CHECK_EQ(used, nk);
	CHECK_EQ(bad_stamp, 0);
	for (unsigned i = 0; i < nk; i++)
		spb__free_ptr(kept[i]);
	return check_done("test_xsum");
}
