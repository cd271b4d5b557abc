/*
 * bitmap.c — 512-bit maps: the free pages of a pageblock and the free
 * pageblocks of an SPB. Runs are found word by word with ctz, so a search
 * costs at most a few dozen instructions per run of set bits.
 */
#include "platform.h"

#define NBITS (SPB_MAP_WORDS * 64)

static inline uint64_t mask_range(unsigned lo, unsigned hi) /* bits [lo,hi) of one word */
{
	uint64_t m = hi >= 64 ? ~0ull : ((1ull << hi) - 1);
	return m & ~((1ull << lo) - 1);
}

void spb__map_set_range(spb_map512_t *m, unsigned start, unsigned n)
{
	unsigned end = start + n;
	while (start < end) {
		unsigned w = start >> 6, lo = start & 63;
		unsigned hi = (end - (w << 6)) > 64 ? 64 : end - (w << 6);
		m->w[w] |= mask_range(lo, hi);
		start = (w << 6) + hi;
	}
}

void spb__map_clear_range(spb_map512_t *m, unsigned start, unsigned n)
{
	unsigned end = start + n;
	while (start < end) {
		unsigned w = start >> 6, lo = start & 63;
		unsigned hi = (end - (w << 6)) > 64 ? 64 : end - (w << 6);
		m->w[w] &= ~mask_range(lo, hi);
		start = (w << 6) + hi;
	}
}

bool spb__map_range_all_set(const spb_map512_t *m, unsigned start, unsigned n)
{
	unsigned end = start + n;
	while (start < end) {
		unsigned w = start >> 6, lo = start & 63;
		unsigned hi = (end - (w << 6)) > 64 ? 64 : end - (w << 6);
		uint64_t mk = mask_range(lo, hi);
		if ((m->w[w] & mk) != mk)
			return false;
		start = (w << 6) + hi;
	}
	return true;
}

bool spb__map_range_any_set(const spb_map512_t *m, unsigned start, unsigned n)
{
	unsigned end = start + n;
	while (start < end) {
		unsigned w = start >> 6, lo = start & 63;
		unsigned hi = (end - (w << 6)) > 64 ? 64 : end - (w << 6);
		if (m->w[w] & mask_range(lo, hi))
			return true;
		start = (w << 6) + hi;
	}
	return false;
}

/* Index of the first set bit at or after pos, or NBITS. */
static unsigned next_set(const spb_map512_t *m, unsigned pos)
{
	while (pos < NBITS) {
		unsigned w = pos >> 6;
		uint64_t v = m->w[w] & (~0ull << (pos & 63));
		if (v)
			return (w << 6) + (unsigned)__builtin_ctzll(v);
		pos = (w + 1) << 6;
	}
	return NBITS;
}

/* Index of the first clear bit at or after pos, or NBITS. */
static unsigned next_clear(const spb_map512_t *m, unsigned pos)
{
	while (pos < NBITS) {
		unsigned w = pos >> 6;
		uint64_t v = ~m->w[w] & (~0ull << (pos & 63));
		if (v)
			return (w << 6) + (unsigned)__builtin_ctzll(v);
		pos = (w + 1) << 6;
	}
	return NBITS;
}

int spb__map_find_run(const spb_map512_t *m, unsigned n, unsigned align)
{
	unsigned pos = 0;
	if (n == 0 || n > NBITS)
		return -1;
	if (align == 0)
		align = 1;
	while (pos < NBITS) {
		unsigned s = next_set(m, pos);
		if (s >= NBITS)
			return -1;
		unsigned e = next_clear(m, s);
		unsigned a = (s + align - 1) & ~(align - 1);
		if (a + n <= e)
			return (int)a;
		pos = e;
	}
	return -1;
}

unsigned spb__map_longest_run(const spb_map512_t *m)
{
	unsigned best = 0, pos = 0;
	while (pos < NBITS) {
		unsigned s = next_set(m, pos);
		if (s >= NBITS)
			break;
		unsigned e = next_clear(m, s);
		if (e - s > best)
			best = e - s;
		pos = e;
	}
	return best;
}

unsigned spb__map_count_range(const spb_map512_t *m, unsigned start, unsigned n)
{
	unsigned c = 0, end = start + n;
	while (start < end) {
		unsigned w = start >> 6, lo = start & 63;
		unsigned hi = (end - (w << 6)) < 64 ? end - (w << 6) : 64;
		c += (unsigned)__builtin_popcountll(m->w[w] & mask_range(lo, hi));
		start = (w << 6) + hi;
	}
	return c;
}

unsigned spb__map_next_run(const spb_map512_t *m, unsigned *pos)
{
	unsigned s = next_set(m, *pos);
	if (s >= NBITS) {
		*pos = NBITS;
		return NBITS;
	}
	*pos = next_clear(m, s);
	return s;
}
