/*
 * handle.h — the handle layer's internal interface: the table entry and
 * its word (handle.c has the protocol), and the read side (rcu.c).
 */
#ifndef SPB_HANDLE_H
#define SPB_HANDLE_H

#include "heap.h"
#include "spbmalloc.h"

#define SPB_HANDLE_MAX ((uint32_t)1 << 26) /* entries in the table (512 MiB reserved) */
#define SPB_HANDLE_HDR 16 /* object header: its handle; data 16-byte aligned */

/* A handle: place (bits 4-34: the header's byte offset in the handle
 * arena, a multiple of 16; 0 outside it), index (bits 37-62),
 * generation (6 bits: bits 0-3 and 35-36); bit 63 is 0. The place is
 * where spb_hget's inline masks it out, with one AND. The object's
 * 16-byte header holds its tag, the handle xor spb__hkey (whose index
 * bits, 37-62, are 0, so a tag is never 0), and says what the mover is doing to
 * it (handle.c has the protocol):
 *   tag           settled: the object is here and nobody moves it;
 *   tag ^ MARK    a mover chose it and waits for a grace period;
 *   tag ^ COPY    the mover copies it (it stores tag at the new place).
 * An entry is one word. Live: the object's address | pins (top 16 bits)
 * | NORMAL (low 4 bits 0). FREE: the generation the index's next handle
 * gets (bits 32-37) and the free list's next index (bits 4-31). */
enum { SPB_HS_NORMAL = 0, SPB_HS_FREE = 3 };
#define SPB_HS_MASK 0xfull
#define SPB_HS_PIN_SHIFT 48
#define SPB_HS_PIN_ONE ((uint64_t)1 << SPB_HS_PIN_SHIFT)
#define SPB_HS_PINS_MAX 0xffffu
#define SPB_H_INDEX_SHIFT 37
#define SPB_H_GEN_MASK 0x3fu
#define SPB_HDR_MARK ((uint64_t)1 << 63)
#define SPB_HDR_COPY ((uint64_t)3 << 62)

struct spb_hentry {
	uint64_t word; /* atomic */
};
_Static_assert(sizeof(struct spb_hentry) == 8, "8-byte handle table entries");
_Static_assert(SPB_HANDLE_MAX <= ((uint32_t)1 << 28), "a FREE word's next index has 28 bits");
_Static_assert((uint64_t)SPB_HANDLE_MAX << SPB_H_INDEX_SHIFT == SPB_HDR_MARK, "the index ends below bit 63");

extern struct spb_hentry *spb__htab SPB_HIDDEN;

static inline uint32_t spb__h_index(spb_handle_t h)
{
	return (uint32_t)(h >> SPB_H_INDEX_SHIFT) & (SPB_HANDLE_MAX - 1);
}
static inline uint32_t spb__h_gen(spb_handle_t h)
{
	return (uint32_t)(h & 15) | (uint32_t)(h >> 35 & 3) << 4;
}
/* The handle of index idx, generation gen, whose header is at place. */
static inline spb_handle_t spb__h_make(uint64_t place, uint32_t gen, uint32_t idx)
{
	return place | (uint64_t)idx << SPB_H_INDEX_SHIFT | (gen & 15) | (uint64_t)(gen >> 4 & 3) << 35;
}
static inline uint64_t spb__h_tag(spb_handle_t h) { return h ^ spb__hkey; }
/* The header of the object whose data is at p. */
static inline uint64_t *spb__h_hdr(const char *p) { return (uint64_t *)(uintptr_t)(p - SPB_HANDLE_HDR); }
/* The place a handle names for a header at hdr: 0 outside the arena. */
static inline uint64_t spb__h_place(const char *hdr)
{
	uintptr_t off = (uintptr_t)hdr + 16 - spb__harena16;
	return off <= SPB_H_PLACE_MASK_PUBLIC ? off & spb__hmask : 0;
}
static inline char *spb__h_addr(uint64_t w)
{
	return (char *)(uintptr_t)(w & ((SPB_HS_PIN_ONE - 1) & ~SPB_HS_MASK));
}
static inline unsigned spb__h_pins(uint64_t w) { return (unsigned)(w >> SPB_HS_PIN_SHIFT); }
static inline uint64_t spb__h_free_word(uint32_t gen, uint32_t next)
{
	return (uint64_t)gen << 32 | (uint64_t)next << 4 | SPB_HS_FREE;
}
static inline uint32_t spb__h_free_gen(uint64_t w) { return (uint32_t)(w >> 32) & SPB_H_GEN_MASK; }
static inline uint32_t spb__h_free_next(uint64_t w) { return (uint32_t)(w >> 4) & 0x0fffffffu; }

/* A header read where the object may have left meanwhile and the place
 * been reused (the caller validates what it read: the entry read again,
 * or the entry's CAS), and a CAS of such a header, which fails (as it
 * should) if the place was freed and reused since: the keyed tag is not
 * there by chance. handle.c and the mover's (compact.c). */
uint64_t spb__h_peek(const void *hp) SPB_HIDDEN;
bool spb__h_cas(void *hp, uint64_t from, uint64_t to) SPB_HIDDEN;
__attribute__((noreturn, cold)) void spb__handle_fault(const char *what, spb_handle_t h) SPB_HIDDEN;
/* Indices handed out so far (entries above are unused). */
uint32_t spb__handle_hwm(void) SPB_HIDDEN;
/* rcu.c */
bool spb__rcu_in_section(void) SPB_HIDDEN;
void spb__rcu_synchronize(void) SPB_HIDDEN;
bool spb__rcu_usable(void) SPB_HIDDEN; /* false in a child forked mid grace period */
void spb__rcu_prefork(void) SPB_HIDDEN;
void spb__rcu_postfork(bool child) SPB_HIDDEN;
/* compact.c: one pass over every zone, at most max_bytes moved (0: no
 * bound); the figures of the MOVABLE class it measured on the way. */
struct spb_compact_stat {
	uint64_t backed;      /* bytes of MOVABLE pageblocks */
	uint64_t live;        /* live bytes in them */
	uint64_t moved;       /* bytes moved */
	uint32_t sources;     /* spans to empty */
	uint32_t evac_pbs;    /* pageblocks among them emptied whole */
	uint32_t spans_freed; /* spans released by the sweep after the pass */
	uint32_t pb_freed;    /* pageblocks emptied whole that went free */
};
/* A non-movable request waiting for a compaction (compactd.c), served from
 * a pageblock the pass freed in a tainted SPB (spb__capture_locked). */
struct spb_capture {
	unsigned cls, npages, align, npb;
	void *result;
	bool cancelled; /* the asker gave up: capture nothing (zone lock) */
};
/* Evacuation: empty up to max_pbs MOVABLE pageblocks of z's tainted SPBs
 * (emptiest first), capturing for cap if given; returns pageblocks freed. */
unsigned spb__compact_evacuate(struct spb_zone *z, unsigned max_pbs, struct spb_capture *cap,
				struct spb_compact_stat *st) SPB_HIDDEN;
size_t spb__compact_pass(size_t max_bytes, struct spb_compact_stat *st) SPB_HIDDEN;
/* The figures alone (backed and live), nothing moved. */
void spb__compact_measure(struct spb_compact_stat *st) SPB_HIDDEN;
/* compactd.c: the compaction thread, started by the first spb_halloc. */
void spb__compactd_maybe_start(void) SPB_HIDDEN;
/* Wake the compaction thread (if it runs) to re-read its settings. */
void spb__compactd_kick(void) SPB_HIDDEN;
void spb__compactd_atfork_child(void) SPB_HIDDEN;
/* compact.c: fork waits for the copies in flight. */
void spb__compact_prefork(void) SPB_HIDDEN;
void spb__compact_postfork(bool child) SPB_HIDDEN;
/* fork: the table's free-index lock (init.c, after every other lock). */
void spb__handle_prefork(void) SPB_HIDDEN;
void spb__handle_postfork(bool child) SPB_HIDDEN;
/* Thread exit: the thread's cache of free indices goes back. */
void spb__handle_thread_exit(void) SPB_HIDDEN;

#endif
