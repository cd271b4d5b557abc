/*
 * sizeclass.c — the size classes and how many pages a span of each holds.
 * 16..128 bytes in steps of 16, then eight classes per power of two
 * (12.5 % apart) up to 128 KiB: 88 classes. Spans are at least 64 KiB and
 * hold at least 8 blocks; larger requests go to the engine as page runs.
 */
#include "heap.h"

uint32_t spb__bin_size[SPB_NR_BINS];
uint16_t spb__bin_pages[SPB_NR_BINS];
uint8_t spb__small_bin[(1024 / 16) + 1];

static unsigned bin_formula(size_t size)
{
	if (size <= 128)
		return size ? (unsigned)((size - 1) >> 4) : 0;
	size_t s = size - 1;
	unsigned lg = 63u - (unsigned)__builtin_clzll(s);
	unsigned k = (unsigned)(s >> (lg - 3)) & 7;
	return 8 + (lg - 7) * 8 + k;
}

static uint32_t class_size(unsigned bin)
{
	if (bin < 8)
		return 16u * (bin + 1);
	unsigned lg = 7 + (bin - 8) / 8, k = (bin - 8) % 8;
	return (9u + k) << (lg - 3);
}

void spb__sizeclass_init(void)
{
	for (unsigned b = 0; b < SPB_NR_BINS; b++) {
		uint32_t sz = class_size(b);
		size_t bytes = (size_t)sz * 8;
		if (bytes < 64 * 1024)
			bytes = 64 * 1024;
		spb__bin_pages[b] = (uint16_t)((bytes + SPB_PAGE_SIZE - 1) >> SPB_PAGE_SHIFT);
		spb__bin_size[b] = sz;
	}
	for (unsigned i = 0; i <= 1024 / 16; i++)
		spb__small_bin[i] = (uint8_t)bin_formula((size_t)i * 16);
	/* The table and the formula must agree on every size, and the last
	 * class must be SPB_SMALL_MAX. */
	if (class_size(SPB_NR_BINS - 1) != SPB_SMALL_MAX ||
	    bin_formula(SPB_SMALL_MAX) != SPB_NR_BINS - 1)
		spb__fatal("size class table is inconsistent", (void *)(uintptr_t)SPB_NR_BINS);
}
