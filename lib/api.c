/*
 * api.c — the engine's part of the public spb_* API (include/spbmalloc.h):
 * page-granular allocation by lifetime class, counters, decay.
 * Validates arguments, picks the zone, and hands over to steer.c/large.c.
 */
#include <errno.h>
#include <string.h>

#include "engine.h"

void *spb_pages_alloc(size_t bytes, size_t align, spb_class_t cls, unsigned flags)
{
	if ((unsigned)cls >= SPB_NR_CLASSES ||
	    (align & (align - 1)) || align > SPB_SPB_SIZE) {
		errno = EINVAL;
		return NULL;
	}
	spb__bg_maybe_start(); /* bgthread.c: once; until the malloc layer does it */
	return spb__pages_alloc(spb__zone_current(), bytes, align, cls, flags);
}

void *spb__pages_alloc(struct spb_zone *z, size_t bytes, size_t align, unsigned cls,
		       unsigned flags)
{
	if (bytes > ((size_t)1 << 46)) {
		errno = ENOMEM;
		return NULL;
	}
	if (bytes == 0)
		bytes = 1;
	size_t npages = (bytes + SPB_PAGE_SIZE - 1) >> SPB_PAGE_SHIFT;
	size_t apages = align > SPB_PAGE_SIZE ? align >> SPB_PAGE_SHIFT : 1;
	if (npages < SPB_PAGES_PER_PB && apages < SPB_PAGES_PER_PB)
		return spb__alloc_pages(z, npages, apages, cls, flags, NULL);
	size_t npb = (bytes + SPB_PB_SIZE - 1) >> SPB_PB_SHIFT;
	size_t apb = align > SPB_PB_SIZE ? align >> SPB_PB_SHIFT : 1;
	if (npb <= SPB_PB_PER_SPB)
		return spb__alloc_pageblocks(z, npb, apb, cls, flags);
	if (cls == SPB_SECRET) { /* secret memory lives in SPBs only */
		spb__zone_lock(z);
		z->counters[SECRET_NOMEM]++;
		spb__zone_unlock(z);
		errno = ENOMEM;
		return NULL;
	}
	void *p = spb__large_alloc(z, bytes, align, cls);
	if (!p)
		errno = ENOMEM;
	return p; /* a fresh mapping reads as zero: SPB_F_ZERO holds */
}

void spb_pages_free(void *p)
{
	if (p)
		spb__free(p);
}

size_t spb_pages_usable_size(const void *p)
{
	return p ? spb__usable_size(p) : 0;
}

int spb_class_of(const void *p)
{
	struct spb_region *r = spb__region_of(p);
	if (!r || !r->kind)
		return -1;
	if (r->kind != SPB_REGION_SPB)
		return r->cls;
	unsigned c = __atomic_load_n(&spb__pb_of((struct spb *)r, p)->cls, __ATOMIC_RELAXED);
	return c < SPB_NR_CLASSES ? (int)c : -1;
}

size_t spb_counter_count(void)
{
	return SPB_NR_COUNTERS;
}

const char *spb_counter_name(size_t idx)
{
	return idx < SPB_NR_COUNTERS ? spb__counter_names[idx] : NULL;
}

const char *spb_counter_desc(size_t idx)
{
	return idx < SPB_NR_COUNTERS ? spb__counter_descs[idx] : NULL;
}

uint64_t spb_counter_value(size_t idx)
{
	return idx < SPB_NR_COUNTERS ? spb__counter_sum((enum spb_counter)idx) : 0;
}

uint64_t spb_counter_get(const char *name)
{
	for (size_t i = 0; i < SPB_NR_COUNTERS; i++)
		if (strcmp(name, spb__counter_names[i]) == 0)
			return spb__counter_sum((enum spb_counter)i);
	return UINT64_MAX;
}

uint64_t spb_decay(void)
{
	spb__engine_init();
	uint64_t now = spb__os_now_ms(), next = UINT64_MAX;
	for (int i = 0; i < spb__zones_count(); i++) {
		uint64_t d = spb__zone_decay(&spb__zones[i], now);
		if (d < next)
			next = d;
	}
	return next;
}

size_t spb_trim(void)
{
	spb__engine_init();
	if (spb__reclaim_hook)
		spb__reclaim_hook(true);
	uint64_t before = spb__counter_sum(PB_RELEASE) + spb__counter_sum(SPB_UNMAP);
	/* "Now" far in the future: every pending release is due. */
	uint64_t far = UINT64_MAX / 2;
	for (int i = 0; i < spb__zones_count(); i++) {
		struct spb_zone *z = &spb__zones[i];
		spb__zone_lock(z);
		spb__subrelease_all_locked(z);
		spb__zone_unlock(z);
		spb__zone_decay(z, far);
	}
	return (size_t)(spb__counter_sum(PB_RELEASE) + spb__counter_sum(SPB_UNMAP) - before);
}

void (*spb__reclaim_hook)(bool all);
