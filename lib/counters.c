/*
 * counters.c — the counter names (from spbmalloc_counters.def) and their
 * sums. Counters are kept per zone and bumped under the zone lock the
 * event already holds, so they cost the hot path nothing.
 */
#include "engine.h"

const char *const spb__counter_names[SPB_NR_COUNTERS] = {
#define SPB_COUNTER(e, name, desc) [e] = name,
#include "spbmalloc_counters.def"
#undef SPB_COUNTER
};

const char *const spb__counter_descs[SPB_NR_COUNTERS] = {
#define SPB_COUNTER(e, name, desc) [e] = desc,
#include "spbmalloc_counters.def"
#undef SPB_COUNTER
};

uint64_t (*spb__counter_extra)(enum spb_counter c);

/* Events counted where neither a zone lock nor the malloc layer is at
 * hand (spb_ctl, in any build: also where a sanitizer owns malloc and the
 * malloc layer never starts). */
static uint64_t loose[SPB_NR_COUNTERS];

void spb__counter_add(enum spb_counter c, uint64_t n)
{
	__atomic_fetch_add(&loose[c], n, __ATOMIC_RELAXED);
}

uint64_t spb__counter_sum(enum spb_counter c)
{
	uint64_t (*extra)(enum spb_counter) = spb__counter_extra;
	uint64_t v = (extra ? extra(c) : 0) + __atomic_load_n(&loose[c], __ATOMIC_RELAXED);
	for (int i = 0; i < spb__zones_count(); i++)
		v += __atomic_load_n(&spb__zones[i].counters[c], __ATOMIC_RELAXED);
	return v;
}
