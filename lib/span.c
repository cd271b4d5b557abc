/*
 * span.c — spans: a page run of the engine cut into blocks of one size
 * class. Blocks are put on the free list lazily, a page's worth at a time,
 * so a span costs RSS only for what was used. Span descriptors come from a
 * metadata pool outside the data area. Calls the engine (steer.c) for page
 * runs and os.c for the pool's memory.
 */
#include "heap.h"

#define DESC_CHUNK ((size_t)256 * 1024)

static pthread_mutex_t desc_lock = PTHREAD_MUTEX_INITIALIZER;
static struct spb_span *desc_free;
static char *desc_cur, *desc_end;

static struct spb_span *desc_alloc(void)
{
	struct spb_span *s;
	pthread_mutex_lock(&desc_lock);
	s = desc_free;
	if (s) {
		desc_free = s->desc_next;
	} else {
		if (desc_cur == desc_end) {
			char *c = spb__os_meta_alloc(DESC_CHUNK);
			if (!c) {
				pthread_mutex_unlock(&desc_lock);
				return NULL;
			}
			desc_cur = c;
			desc_end = c + DESC_CHUNK;
		}
		s = (struct spb_span *)desc_cur;
		desc_cur += sizeof *s;
		if ((size_t)(desc_end - desc_cur) < sizeof *s)
			desc_cur = desc_end;
	}
	pthread_mutex_unlock(&desc_lock);
	s->free = NULL;
	s->used = s->extended = 0;
	__atomic_store_n(&s->xfree, NULL, __ATOMIC_RELAXED);
	s->notify_next = NULL;
	s->link.next = s->link.prev = NULL;
	return s;
}

static void desc_free_one(struct spb_span *s)
{
	/* A cross-thread notifier that is late (it pushed its block before the
	 * span emptied) must find nothing to flag here. */
	__atomic_store_n(&s->full, SPB_SPAN_AVAIL, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->heap, NULL, __ATOMIC_RELEASE);
	pthread_mutex_lock(&desc_lock);
	s->desc_next = desc_free;
	desc_free = s;
	pthread_mutex_unlock(&desc_lock);
}

static void pagemap_set(uintptr_t start, uint32_t npages, struct spb_span *v)
{
	struct spb *sp = (struct spb *)spb__region_of((void *)start);
	size_t first = (start >> SPB_PAGE_SHIFT) & (SPB_PB_PER_SPB * SPB_PAGES_PER_PB - 1);
	for (uint32_t i = 0; i < npages; i++)
		__atomic_store_n(&sp->pagemap[first + i], v, __ATOMIC_RELEASE);
}

struct spb_span *spb__span_new(struct spb_heap *h, unsigned bin)
{
	struct spb_span *s = desc_alloc();
	if (!s)
		return NULL;
	uint32_t npages = spb__bin_pages[bin];
	bool zero = false;
	void *mem = spb__alloc_pages(h->zone, npages, 1, h->cls, 0, &zero);
	if (!mem) {
		desc_free_one(s);
		return NULL;
	}
	s->bsize = spb__bin_size[bin];
	s->inv = (((uint64_t)1 << SPB_INV_SHIFT) + s->bsize - 1) / s->bsize;
	s->start = (uintptr_t)mem;
	s->npages = npages;
	s->capacity = (uint32_t)(((size_t)npages << SPB_PAGE_SHIFT) / s->bsize);
	s->bin = (uint8_t)bin;
	s->cls = h->cls;
	s->zero_run = zero;
	s->free_zero = zero;
	__atomic_store_n(&s->heap, h, __ATOMIC_RELAXED);
	pagemap_set(s->start, npages, s);
	h->counters[MALLOC_SPAN_ALLOC]++;
	spb__bg_maybe_start(); /* once; pthread_create may malloc: it is guarded */
	return s;
}

void spb__span_release(struct spb_span *s)
{
	pagemap_set(s->start, s->npages, NULL);
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
		b->next = nx;
		b->tag = spb__free_cookie ^ (uintptr_t)b;
		b = nx;
	}
	b->next = s->free;
	b->tag = spb__free_cookie ^ (uintptr_t)b;
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
	struct spb_block *list = __atomic_exchange_n(&s->xfree, NULL, __ATOMIC_ACQUIRE);
	if (!list)
		return 0;
	uint32_t n = 1;
	struct spb_block *last = list;
	while (last->next) {
		last = last->next;
		n++;
	}
	last->next = s->free;
	s->free = list;
	s->free_zero = 0;
	s->used -= n;
	return n;
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
