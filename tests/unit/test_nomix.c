/*
 * test_nomix.c — the no-fallback rule: a pageblock never holds two
 * lifetime classes. All classes are allocated interleaved, in page runs
 * and pageblock runs, with frees in between so freed pageblocks change
 * class; then every live pointer is checked against the class of each
 * pageblock it covers, and every pageblock against every pointer in it.
 */
#include "zone_check.h"

#define N 3000

struct rec {
	char *p;
	size_t bytes;
	spb_class_t cls;
};
static struct rec recs[N];

/* Pageblock key -> class seen there (one slot per pageblock of 4 SPBs). */
struct seen {
	uintptr_t pb; /* address >> 21, 0 = empty */
	int cls;
};
static struct seen seen[8192];

static int *seen_cls(uintptr_t pbkey)
{
	size_t h = (size_t)(pbkey * 0x9e3779b97f4a7c15ull) % 8192;
	while (seen[h].pb && seen[h].pb != pbkey)
		h = (h + 1) % 8192;
	if (!seen[h].pb) {
		seen[h].pb = pbkey;
		seen[h].cls = -1;
	}
	return &seen[h].cls;
}

int main(void)
{
	static const spb_class_t classes[] = {SPB_MOVABLE, SPB_UNMOVABLE, SPB_RECLAIMABLE};
	spb__option_set(OPT_THP, 0);
	spb__option_set(OPT_DECAY_MS, 0); /* freed pageblocks recycle at once */
	struct spb_zone *z = tap_engine_setup();
	unsigned n = 0, seed = 12345;
	for (unsigned i = 0; i < N; i++) {
		seed = seed * 1103515245u + 12345u;
		unsigned r = seed >> 8;
		struct rec *x = &recs[n];
		x->cls = classes[i % 3];
		if (r % 10 < 7)
			x->bytes = (1 + r % 37) * SPB_PAGE_SIZE - r % 100;
		else if (r % 10 < 9)
			x->bytes = (1 + r % 300) * SPB_PAGE_SIZE;
		else
			x->bytes = (1 + r % 5) * SPB_PB_SIZE;
		x->p = spb_pages_alloc(x->bytes, 0, x->cls, 0);
		REQUIRE(x->p);
		x->p[0] = (char)x->cls; /* touch one page */
		n++;
		if (r % 4 == 0 && n > 1) { /* free a random older one */
			unsigned k = (r >> 4) % (n - 1);
			spb_pages_free(recs[k].p);
			recs[k] = recs[--n];
		}
	}
	/* Every pageblock a live pointer covers has the pointer's class. */
	unsigned mixed = 0;
	for (unsigned i = 0; i < n; i++) {
		uintptr_t a = (uintptr_t)recs[i].p;
		uintptr_t end = a + spb_pages_usable_size(recs[i].p);
		CHECK(end > a);
		for (uintptr_t b = a & ~(SPB_PB_SIZE - 1); b < end; b += SPB_PB_SIZE) {
			CHECK_EQ(pb_of((void *)b)->cls, recs[i].cls);
			int *c = seen_cls(b >> SPB_PB_SHIFT);
			if (*c >= 0 && *c != (int)recs[i].cls)
				mixed++;
			*c = (int)recs[i].cls;
		}
		CHECK_EQ(*recs[i].p, (char)recs[i].cls);
	}
	CHECK_EQ(mixed, 0);
	/* Every class pageblock of every SPB: its runs all belong to one class
	 * (the walker checks the run structure; here, one class per pb). */
	uint64_t class_pbs = 0;
	for (unsigned k = 0; k < 3; k++)
		class_pbs += z->pb_by_class[classes[k]];
	CHECK(class_pbs > 0);
	CHECK(z->pb_by_class[SPB_MOVABLE] > 0 && z->pb_by_class[SPB_UNMOVABLE] > 0 &&
	      z->pb_by_class[SPB_RECLAIMABLE] > 0);
	CHECK_ZONES();
	for (unsigned i = 0; i < n; i++)
		spb_pages_free(recs[i].p);
	CHECK_ZONES();
	CHECK_EQ(z->pb_by_class[SPB_MOVABLE] + z->pb_by_class[SPB_UNMOVABLE] +
			 z->pb_by_class[SPB_RECLAIMABLE], 0);
	return check_done("test_nomix");
}
