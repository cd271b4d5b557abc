/*
 * test_threads.c — several threads allocating and freeing page runs and
 * pageblock runs of every class at once (one zone, one lock), one of them
 * also running the decay. Each thread stamps its allocations and checks
 * the stamp and the pageblock class on free; at the end every survivor
 * is checked (class, stamp, no two overlapping) and the whole zone is
 * walked by zone_check. Short: a few thousand operations per thread.
 */
#include <pthread.h>

#include "zone_check.h"

#define NTHREADS 4
#define OPS 3000
#define SLOTS 48

struct slot {
	char *p;
	size_t bytes;
	spb_class_t cls;
	uint64_t stamp;
};

struct worker {
	int id;
	int errors;
	struct slot slots[SLOTS];
};

static int cmp_slot(const void *a, const void *b)
{
	const struct slot *x = *(struct slot *const *)a, *y = *(struct slot *const *)b;
	return x->p < y->p ? -1 : x->p > y->p;
}

static bool slot_ok(const struct slot *s)
{
	uint64_t v;
	memcpy(&v, s->p, 8);
	if (v != s->stamp)
		return false;
	memcpy(&v, s->p + s->bytes - 8, 8);
	if (v != ~s->stamp)
		return false;
	struct spb_region *r = spb__region_of(s->p);
	if (!r || r->kind != SPB_REGION_SPB)
		return false;
	struct spb *sp = (struct spb *)r;
	spb__zone_lock(sp->zone);
	bool ok = sp->pb[pb_index_of(s->p)].cls == s->cls &&
		  sp->pb[pb_index_of(s->p + s->bytes - 1)].cls == s->cls;
	spb__zone_unlock(sp->zone);
	return ok;
}

static void *work(void *arg)
{
	static const spb_class_t classes[] = {SPB_MOVABLE, SPB_UNMOVABLE, SPB_RECLAIMABLE};
	struct worker *w = arg;
	unsigned x = 0x1234u * (unsigned)(w->id + 1);
	for (int i = 0; i < OPS; i++) {
		x = x * 1103515245u + 12345u;
		struct slot *s = &w->slots[(x >> 8) % SLOTS];
		if (s->p) {
			if (!slot_ok(s))
				w->errors++;
			spb_pages_free(s->p);
			s->p = NULL;
			continue;
		}
		s->cls = classes[(x >> 16) % 3];
		s->bytes = (x >> 20) % 8 == 0 ? (1 + (x >> 12) % 3) * SPB_PB_SIZE
					      : (1 + (x >> 12) % 40) * SPB_PAGE_SIZE;
		s->p = spb_pages_alloc(s->bytes, 0, s->cls, (x >> 28) % 4 == 0 ? SPB_F_ZERO : 0);
		if (!s->p) {
			w->errors++;
			continue;
		}
		s->stamp = ((uint64_t)w->id << 56) ^ ((uint64_t)i << 20) ^ (uintptr_t)s->p;
		uint64_t inv = ~s->stamp;
		memcpy(s->p, &s->stamp, 8);
		memcpy(s->p + s->bytes - 8, &inv, 8);
		if (w->id == 0 && i % 100 == 0)
			spb_decay();
	}
	return NULL;
}

int main(void)
{
	spb__option_set(OPT_DECAY_MS, 1);
	spb__option_set(OPT_THP, 0);
	tap_engine_setup();
	static struct worker ws[NTHREADS];
	pthread_t th[NTHREADS];
	for (int i = 0; i < NTHREADS; i++) {
		ws[i].id = i;
		REQUIRE(pthread_create(&th[i], NULL, work, &ws[i]) == 0);
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);

	static struct slot *all[NTHREADS * SLOTS];
	unsigned n = 0;
	for (int i = 0; i < NTHREADS; i++) {
		CHECK_EQ(ws[i].errors, 0);
		for (int k = 0; k < SLOTS; k++)
			if (ws[i].slots[k].p) {
				CHECK(slot_ok(&ws[i].slots[k]));
				all[n++] = &ws[i].slots[k];
			}
	}
	qsort(all, n, sizeof *all, cmp_slot);
	for (unsigned k = 1; k < n; k++)
		CHECK(all[k - 1]->p + spb_pages_usable_size(all[k - 1]->p) <= all[k]->p);
	CHECK_ZONES();
	for (unsigned k = 0; k < n; k++)
		spb_pages_free(all[k]->p);
	CHECK_ZONES();
	struct spb_zone *z = spb__zone_current();
	CHECK_EQ(z->pb_by_class[SPB_MOVABLE] + z->pb_by_class[SPB_UNMOVABLE] +
			 z->pb_by_class[SPB_RECLAIMABLE], 0);
	return check_done("test_threads");
}
