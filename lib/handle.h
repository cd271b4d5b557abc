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

/* An entry is one word. Live: address | state (low 4 bits) | pins (top 16
 * bits). FREE: the generation the index's next handle gets (top 32 bits)
 * and the free list's next index (bits 4-31). The object's header holds
 * its whole handle (generation << 32 | index). */
enum { SPB_HS_NORMAL = 0, SPB_HS_MOVING = 1, SPB_HS_COPYING = 2, SPB_HS_FREE = 3 };
#define SPB_HS_MASK 0xfull
#define SPB_HS_PIN_SHIFT 48
#define SPB_HS_PIN_ONE ((uint64_t)1 << SPB_HS_PIN_SHIFT)
#define SPB_HS_PINS_MAX 0xffffu

struct spb_hentry {
	uint64_t word; /* atomic */
};
_Static_assert(sizeof(struct spb_hentry) == 8, "8-byte handle table entries");
_Static_assert(SPB_HANDLE_MAX <= ((uint32_t)1 << 28), "a FREE word's next index has 28 bits");

extern struct spb_hentry *spb__htab SPB_HIDDEN;

static inline uint32_t spb__h_index(spb_handle_t h) { return (uint32_t)h; }
static inline uint32_t spb__h_gen(spb_handle_t h) { return (uint32_t)(h >> 32); }
static inline char *spb__h_addr(uint64_t w)
{
	return (char *)(uintptr_t)(w & ((SPB_HS_PIN_ONE - 1) & ~SPB_HS_MASK));
}
static inline unsigned spb__h_pins(uint64_t w) { return (unsigned)(w >> SPB_HS_PIN_SHIFT); }
static inline uint64_t spb__h_free_word(uint32_t gen, uint32_t next)
{
	return (uint64_t)gen << 32 | (uint64_t)next << 4 | SPB_HS_FREE;
}
static inline uint32_t spb__h_free_gen(uint64_t w) { return (uint32_t)(w >> 32); }
static inline uint32_t spb__h_free_next(uint64_t w) { return (uint32_t)(w >> 4) & 0x0fffffffu; }

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
