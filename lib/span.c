/*
 * span.c — spans: a page run of the engine cut into blocks of one size
 * class. Blocks are put on the free list lazily, a page's worth at a time,
 * so a span costs RSS only for what was used. Span descriptors come from a
 * metadata pool outside the data area. Calls the engine (steer.c) for page
 * runs and os.c for the pool's memory.
 */
#include <string.h>

#include "heap.h"

#define DESC_CHUNK ((size_t)256 * 1024)
#define DESC_ORDERS 8 /* live bitmaps of 1..128 words */

/* Descriptors come with their live and xfreed bitmaps right after them,
 * sized for the size class (1 << order words each); one free list per
 * order. */
static pthread_mutex_t desc_lock = PTHREAD_MUTEX_INITIALIZER;
static struct spb_span *desc_free[DESC_ORDERS];
static char *desc_cur, *desc_end;

/* Whole cache lines (heap.h): the bitmaps after the descriptor do not
 * share the line of its xsum.*/
_Static_assert(sizeof(struct spb_span) % 64 == 0, "span descriptor: whole cache lines");

static size_t desc_bytes(unsigned order)
{
	return (sizeof(struct spb_span) + ((size_t)16 << order) + 63) & ~(size_t)63;
}

static struct spb_span *desc_alloc(unsigned order)
{
	struct spb_span *s;
	size_t bytes = desc_bytes(order);
	pthread_mutex_lock(&desc_lock);
	s = desc_free[order];
	if (s) {
		desc_free[order] = s->desc_next;
	} else {
		if ((size_t)(desc_end - desc_cur) < bytes) {
			/* The tail of the old chunk is lost: under one descriptor. */
			char *c = spb__os_meta_alloc(DESC_CHUNK);
			if (!c) {
				pthread_mutex_unlock(&desc_lock);
				return NULL;
			}
			desc_cur = c;
			desc_end = c + DESC_CHUNK;
		}
		s = (struct spb_span *)desc_cur;
		desc_cur += bytes;
		s->words_order = (uint8_t)order;
		/* A fresh descriptor is zero, its state AVAIL and heap NULL. */
	}
	pthread_mutex_unlock(&desc_lock);
	memset(s + 1, 0, (size_t)16 << order); /* live and xfreed words */
	s->free = NULL;
	s->used = s->extended = 0;
	__atomic_store_n(&s->xsum, 0, __ATOMIC_RELAXED);
	s->notify_next = NULL;
	s->link.next = s->link.prev = NULL;
	return s;
}

/* The descriptor goes back to the pool. The span is AVAIL (a NOTIFIED
 * span is never released: heap.c's protocol) and nothing points at it but
 * a late cross-thread notifier, which finds it AVAIL and does nothing. */
static void desc_free_one(struct spb_span *s)
{
	if (__atomic_load_n(&s->full, __ATOMIC_SEQ_CST) != SPB_SPAN_AVAIL)
		spb__fatal("internal error: span released while flagged full", s);
	__atomic_store_n(&s->heap, NULL, __ATOMIC_RELEASE);
	pthread_mutex_lock(&desc_lock);
	s->desc_next = desc_free[s->words_order];
	desc_free[s->words_order] = s;
	pthread_mutex_unlock(&desc_lock);
}

static void pagemap_set(uintptr_t start, uint32_t npages, struct spb_span *v)
{
	struct spb *sp = (struct spb *)spb__region_of((void *)start);
	size_t first = (start >> SPB_PAGE_SHIFT) & (SPB_PB_PER_SPB * SPB_PAGES_PER_PB - 1);
	for (uint32_t i = 0; i < npages; i++)
		__atomic_store_n(&sp->pagemap[first + i], v, __ATOMIC_RELEASE);
}

/* Bitmap geometry of a size class: blocks are at least 2^gshift bytes
 * apart, so off >> gshift tells them apart without a division. */
static unsigned class_gshift(uint32_t bsize)
{
	return 31u - (unsigned)__builtin_clz(bsize);
}

static unsigned class_words_order(unsigned bin)
{
	size_t bytes = (size_t)spb__bin_pages[bin] << SPB_PAGE_SHIFT;
	size_t bits = bytes >> class_gshift(spb__bin_size[bin]);
	size_t words = (bits + 63) / 64;
	unsigned order = 0;
	while (((size_t)1 << order) < words)
		order++;
	return order;
}

struct spb_span *spb__span_new(struct spb_heap *h, unsigned bin)
{
	unsigned order = class_words_order(bin);
	if (order >= DESC_ORDERS)
		spb__fatal("internal error: live bitmap too large for size class",
			   (void *)(uintptr_t)bin);
	struct spb_span *s = desc_alloc(order);
	if (!s)
		return NULL;
	uint32_t npages = spb__bin_pages[bin];
	bool zero = false;
	/* Blocks over a page are often written in part (a buffer): their
	 * pageblock is sparse-prone (pageblock.c, "4 KiB until dense"). */
	unsigned flags = spb__bin_size[bin] > SPB_PAGE_SIZE ? SPB_F_SPARSE | SPB_F_SPAN : 0;
	void *mem = spb__alloc_pages(h->zone, npages, 1, h->cls, flags, &zero);
	if (!mem) {
		desc_free_one(s);
		return NULL;
	}
	s->bsize = spb__bin_size[bin];
	s->inv = (((uint64_t)1 << SPB_INV_SHIFT) + s->bsize - 1) / s->bsize;
	s->gshift = (uint8_t)class_gshift(s->bsize);
	s->start = (uintptr_t)mem;
	s->npages = npages;
	s->capacity = (uint32_t)(((size_t)npages << SPB_PAGE_SHIFT) / s->bsize);
	s->limit = s->capacity * s->bsize;
	s->bin = (uint8_t)bin;
	s->cls = h->cls;
	s->zone_idx = (uint8_t)(h->zone - spb__zones);
	__atomic_store_n(&s->compact_src, 0, __ATOMIC_RELAXED); /* a reused descriptor */
	s->zero_run = zero;
	s->free_zero = zero;
	s->rel = 0;
	s->trim_q = 0;
	s->trim_at = spb__opt(OPT_SPAN_TRIM_PCT) ? spb__span_trim_start(s) : 0;
	__atomic_store_n(&s->heap, h, __ATOMIC_RELAXED);
	pagemap_set(s->start, npages, s);
	h->counters[MALLOC_SPAN_ALLOC]++;
	spb__bg_maybe_start(); /* once; pthread_create may malloc: it is guarded */
	void (*restart)(void) = __atomic_load_n(&spb__shrink_restart, __ATOMIC_ACQUIRE);
	if (SPB_UNLIKELY(restart != NULL)) /* heap.h */
		restart();
	return s;
}

void (*spb__shrink_restart)(void);

void spb__span_release(struct spb_span *s)
{
	pagemap_set(s->start, s->npages, NULL);
	if (s->rel)
		spb__free_trimmed((void *)s->start, s->rel);
	else
		spb__free((void *)s->start);
	desc_free_one(s);
}

bool spb__span_extend(struct spb_span *s)
{
	if (s->extended >= s->capacity)
		return false;
	/* At least one block, else up to the end of the next 4 KiB page. */
	uintptr_t from = s->start + (uintptr_t)s->extended * s->bsize;
	uintptr_t to = (from + SPB_PAGE_SIZE) & ~(uintptr_t)(SPB_PAGE_SIZE - 1);
	uint32_t n = (uint32_t)((to - from) / s->bsize);
	if (n == 0)
		n = 1;
	if (n > s->capacity - s->extended)
		n = s->capacity - s->extended;
	struct spb_block *head = (struct spb_block *)from, *b = head;
	for (uint32_t i = 1; i < n; i++) {
		struct spb_block *nx = (struct spb_block *)((char *)b + s->bsize);
		b->next_enc = spb__link_enc(nx, b);
		b = nx;
	}
	b->next_enc = spb__link_enc(s->free, b);
	/* Fresh blocks of a zeroed run keep the list "zero past the link
	 * words" only if what was on it already was. */
	s->free_zero = s->zero_run && (s->free == NULL || s->free_zero);
	s->free = head;
	/* Atomic: a cross-thread free reads it (free.c). */
	__atomic_store_n(&s->extended, s->extended + n, __ATOMIC_RELAXED);
	return true;
}

uint32_t spb__span_collect(struct spb_span *s)
{
	/* Sequentially consistent: mark_full's second look (heap.c) pairs
	 * with the freer's load of the full flag (free.c), and a freer that
	 * found its xsum bit set already flagged its block before this
	 * exchange took the bit. */
	uint64_t sum = __atomic_exchange_n(&s->xsum, 0, __ATOMIC_SEQ_CST);
	if (!sum)
		return 0;
	unsigned sh = spb__xsum_shift(s);
	uint32_t nwords = 1u << s->words_order, n = 0;
	uint64_t *w = (uint64_t *)(s + 1);
	struct spb_block *head = s->free;
	/* Each word named: its xfreed bits taken at once; each such block
	 * must be live (anything else is a double free) and is free from
	 * now on, in front of the free list. The blocks themselves are
	 * written (their links), never read: no miss waits for another. */
	while (sum) {
		uint32_t k = (uint32_t)__builtin_ctzll(sum) << sh, kend = k + (1u << sh);
		sum &= sum - 1;
		for (; k < kend && k < nwords; k++) {
			/* Sequentially consistent too: a freer that skipped
			 * setting xsum (found its bit set) flagged its block
			 * before our exchange of xsum, in that order only. */
			if (!__atomic_load_n(&w[2 * k + 1], __ATOMIC_SEQ_CST))
				continue;
			uint64_t x = __atomic_exchange_n(&w[2 * k + 1], 0, __ATOMIC_SEQ_CST);
			uint64_t lv = __atomic_load_n(&w[2 * k], __ATOMIC_RELAXED);
			/* Flagged but not live: freed twice (the first
			 * collected meanwhile), or never handed out. */
			if (SPB_UNLIKELY((lv & x) != x))
				spb__fatal("free(): double free detected",
					   (void *)(s->start + spb__bit_off(s, k, (unsigned)__builtin_ctzll(x & ~lv))));
			__atomic_store_n(&w[2 * k], lv & ~x, __ATOMIC_RELAXED);
			n += (uint32_t)__builtin_popcountll(x);
			do {
				struct spb_block *b = (struct spb_block *)(s->start +
					spb__bit_off(s, k, (unsigned)__builtin_ctzll(x)));
				b->next_enc = spb__link_enc(head, b);
				head = b;
				x &= x - 1;
			} while (x);
		}
	}
	if (n) {
		s->free = head;
		s->free_zero = 0;
		s->used -= n;
	}
	return n;
}

/* Pages [first, last] of the span that bytes [off, off + len) touch. */
static inline uint64_t page_bits(uintptr_t off, uint32_t len)
{
	unsigned a = (unsigned)(off >> SPB_PAGE_SHIFT);
	unsigned b = (unsigned)((off + len - 1) >> SPB_PAGE_SHIFT);
	uint64_t hi = b >= 63 ? ~(uint64_t)0 : ((uint64_t)1 << (b + 1)) - 1;
	return hi & ~(((uint64_t)1 << a) - 1);
}

/* Pages of s a live block (or one on its way back from another thread,
 * flagged xfreed and not collected yet) touches. */
static uint64_t busy_pages(const struct spb_span *s)
{
	const uint64_t *w = (const uint64_t *)(s + 1);
	uint64_t busy = 0;
	for (uint32_t k = 0; k < (1u << s->words_order); k++) {
		uint64_t v = __atomic_load_n(&w[2 * k], __ATOMIC_RELAXED);
		while (v) {
			busy |= page_bits(spb__bit_off(s, k, (unsigned)__builtin_ctzll(v)), s->bsize);
			v &= v - 1;
		}
	}
	return busy;
}

/* Free blocks below extended that touch (want_rel) or avoid (!want_rel)
 * the pages in rel, in address order, put in front of the free list. */
static uint32_t relink(struct spb_span *s, uint64_t rel, bool want_rel)
{
	struct spb_block *head = NULL, *tail = NULL;
	uint32_t n = 0;
	uintptr_t off = 0;
	for (uint32_t i = 0; i < s->extended; i++, off += s->bsize) {
		uint64_t bit, *w = spb__bit_word(s, off, &bit);
		if (__atomic_load_n(&w[0], __ATOMIC_RELAXED) & bit)
			continue;
		if (((page_bits(off, s->bsize) & rel) != 0) != want_rel)
			continue;
		struct spb_block *b = (struct spb_block *)(s->start + off);
		if (tail)
			tail->next_enc = spb__link_enc(b, tail);
		else
			head = b;
		tail = b;
		n++;
	}
	if (tail) {
		tail->next_enc = spb__link_enc(want_rel ? s->free : NULL, tail);
		if (want_rel)
			s->free = head;
	}
	if (!want_rel)
		s->free = head;
	s->free_zero = 0;
	return n;
}

unsigned spb__span_trim(struct spb_span *s, unsigned pct, bool shrunk, uint64_t *counters)
{
	if (s->npages > 64 || !pct)
		return 0;
	spb__span_collect(s);
	/* Only pages whose blocks all went on a free list once: the blocks
	 * past extended are put there by span_extend, which writes them. */
	unsigned elig = s->extended == s->capacity
				? s->npages
				: (unsigned)(((uintptr_t)s->extended * s->bsize) >> SPB_PAGE_SHIFT);
	if (elig == 0)
		return 0;
	uint64_t all = elig >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << elig) - 1;
	uint64_t give = all & ~busy_pages(s) & ~s->rel;
	unsigned n = (unsigned)__builtin_popcountll(give);
	if (!n)
		return 0;
	/* A huge page is split only for enough pages of a heap that shrank
	 * (a heap that churns at its size would split its huge pages for
	 * pages it takes back soon after); where the pageblock is split
	 * already, either is enough. */
	bool enough = (unsigned)__builtin_popcountll(give | s->rel) * 100u >= pct * s->npages;
	if (!enough && !shrunk)
		return 0;
	int how = spb__span_pages_given((void *)s->start, (int)n, enough && shrunk);
	if (how == SPB_TRIM_NO)
		return 0;
	if (how == SPB_TRIM_ADVISE &&
	    !spb__os_advise_nohugepage((void *)(s->start & ~(uintptr_t)(SPB_PB_SIZE - 1)),
				       SPB_PB_SIZE))
		counters[MALLOC_SPAN_TRIM_FAIL]++; /* khugepaged may fold it again */
	s->rel |= give;
	/* The free list without the blocks on given-back pages: their links
	 * go with the pages. */
	relink(s, s->rel, false);
	for (uint64_t g = give; g;) {
		unsigned pos = (unsigned)__builtin_ctzll(g);
		uint64_t run = g >> pos;
		unsigned len = ~run ? (unsigned)__builtin_ctzll(~run) : 64 - pos;
		if (!spb__os_dontneed((void *)(s->start + ((uintptr_t)pos << SPB_PAGE_SHIFT)),
				      (size_t)len << SPB_PAGE_SHIFT))
			counters[MALLOC_SPAN_TRIM_FAIL]++;
		g = len + pos >= 64 ? 0 : g & ~((((uint64_t)1 << len) - 1) << pos);
	}
	counters[MALLOC_SPAN_TRIM]++;
	counters[MALLOC_SPAN_TRIM_PAGES] += n;
	return n;
}

bool spb__span_untrim(struct spb_span *s, uint64_t *counters)
{
	if (!s->rel)
		return false;
	uint64_t rel = s->rel;
	unsigned n = (unsigned)__builtin_popcountll(rel);
	relink(s, rel, true);
	s->rel = 0;
	spb__span_pages_given((void *)s->start, -(int)n, true);
	counters[MALLOC_SPAN_UNTRIM_PAGES] += n;
	return s->free != NULL;
}

void spb__span_prefork(void)
{
	pthread_mutex_lock(&desc_lock);
}

void spb__span_postfork(bool child)
{
	if (child)
		pthread_mutex_init(&desc_lock, NULL);
	else
		pthread_mutex_unlock(&desc_lock);
}
