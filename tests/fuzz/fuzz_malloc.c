/*
 * fuzz_malloc.c — libFuzzer target: the input bytes are a program of
 * operations over the whole malloc family and the spb_* API, run by 1-4
 * threads that hand blocks to each other, checked against a shadow model.
 *
 * How it links (the choice). The binary is linked with spbmalloc's
 * override (lib/override.c) as the process malloc: malloc, free, ... of
 * the whole process, libFuzzer's own C++ allocations included, are
 * spbmalloc's. That is what a user program gets, and it is the only way to
 * test override.c itself (posix_memalign's return codes and errno
 * preservation, pvalloc's rounding, reallocarray's overflow check,
 * free_sized, malloc_trim), which the internal entry points
 * (spb__malloc, ...) would bypass. It works because only UBSan is on: ASan,
 * MSan or TSan would replace malloc themselves (as in the SPB_SANITIZE
 * builds of tests/api), UBSan does not, and libFuzzer's malloc hooks
 * (-malloc_limit_mb, -trace_malloc) are simply inactive without a
 * sanitizer allocator. The price: libFuzzer's own allocations share the
 * heap of the main thread between inputs, so allocator state carries from
 * one input to the next. The fuzz threads are created for each input and
 * exit at its end (their heaps retire, their spans are abandoned and
 * adopted), and every block the input made is freed before it ends, so an
 * input's behaviour depends little on what came before; a crash found
 * after a long run is replayed alone (./spbfuzz crash-file) and normally
 * reproduces. The allocator sources are compiled with
 * -fsanitize=fuzzer-no-link,undefined, so coverage guides into lib/.
 *
 * Determinism. Byte 0 of the input picks the number of threads (1-4), the
 * schedule, and a final trim. Operations go to the "current" thread; a
 * SWITCH operation changes it. In lockstep mode (the default) the threads
 * run the input's segments one at a time in input order, passing a token
 * (semaphores), and exit one by one in index order: the sequence of calls,
 * and every cross-thread free, is a function of the input alone (the
 * allocator's background thread is the only free-running part). In
 * concurrent mode (bit 2 of byte 0) each thread runs its operations freely
 * at the same time: real races between owners and remote freers, at the
 * price of runs that are not exactly repeatable.
 *
 * Operations (decode() has the byte format; gen-corpus.py writes seeds in
 * it): malloc, calloc (overflowing n*size too), realloc (absolute sizes,
 * or x2, /2, +-n of the block: grow, shrink, to 0, to sizes that must
 * fail), reallocarray, free / free_sized / free_aligned_sized / cfree,
 * posix_memalign, aligned_alloc, memalign, valloc, pvalloc (alignments
 * 1 B - 1 GiB, invalid and over 1 GiB), glibc's __libc_* names of all of
 * them, malloc_usable_size, spb_malloc_class and spb_set_thread_class
 * (every class: MOVABLE and out-of-range ones must give EINVAL; SECRET is
 * asked as UNMOVABLE: a forked child loses secret memory by design, which
 * the model does not know; tests/api/test_secret covers it),
 * spb_pages_alloc / spb_pages_free / spb_pages_usable_size, spb_trim,
 * malloc_trim, spb_decay, mallinfo/mallinfo2, mallopt, the counters;
 * objects behind handles (misc 12-15: spb_halloc with and without
 * SPB_F_ZERO, spb_hrealloc, a size that must fail, resizing a pinned
 * object (EBUSY), pins that nest and hold the address across compaction,
 * spb_compact, and spb_compact refusing inside a read section);
 * bursts of up to 64 blocks freed in four orders, and a per-thread bulk of
 * up to 512 small blocks (full spans) sent to other threads in batches
 * through a mailbox of 1024 (cross-thread frees and reallocs, the xfreed
 * flags and their collect, the full-span notification); blocks freed and allocated by a
 * thread's key destructor after its heaps are retired (the late paths);
 * fork() with the child checking and using what it inherited. Sizes: 0 to
 * a few MiB near the size classes, page and pageblock boundaries, rarely a
 * few hundred MiB or just over 1 GiB (a dedicated mapping), and near
 * SIZE_MAX.
 *
 * Shadow model. Each live block (a thread's slot, or the shared mailbox)
 * records pointer, requested size, usable size, alignment, and an id; its
 * bytes hold a pattern derived from the id and the offset (the whole usable
 * size up to 128 KiB, beyond that a sample: first and last 4 KiB and 64
 * bytes every stride). Checked: alignment (16 always, more when asked),
 * usable size >= size and stable, calloc / SPB_F_ZERO memory zero, the
 * whole pattern on every free, realloc keeping min(old, new) bytes, every
 * failure's errno (posix_memalign: its return value, errno untouched),
 * failed reallocs leaving the block intact, and no two live blocks
 * overlapping (a global sorted interval table: a block leaves it before it
 * is freed and enters it after it is allocated, so every entry is live
 * even in concurrent mode); in lockstep mode mallinfo2's bytes in use
 * cover the input's live blocks. Sizes >= 2^47 must fail with ENOMEM,
 * sizes from 4 GiB may; the others must succeed, within a budget of live
 * memory (LIVE_BUDGET, at most two blocks over 16 MiB per input) that keeps
 * an input to milliseconds.
 * The SPBMALLOC_* settings apply (SPBMALLOC_DECAY_MS=0, SPBMALLOC_THP=0,
 * ... fuzz other configurations); the first malloc of this binary comes
 * from ld.so before libc has set environ (crashes/README.md).
 *
 * A failed check prints one line ("spbfuzz: ...") with the block and the
 * last operations of the thread, then aborts: libFuzzer saves the input.
 * SPBFUZZ_TRACE=1 in the environment prints every operation as it runs;
 * SPBFUZZ_IGNORE=mallinfo,free_sized skips the mallinfo2 checks and the
 * sized frees, to fuzz on past known bugs (tests/fuzz/crashes/README.md).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spbmalloc.h"

/* Names glibc's headers may not declare (C23, glibc 2.38, removed cfree). */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);
void cfree(void *p);
void *__libc_malloc(size_t size);
void __libc_free(void *p);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void *__libc_memalign(size_t align, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);
int __posix_memalign(void **out, size_t align, size_t size);

#define KiB ((size_t)1024)
#define MiB (KiB * 1024)
#define GiB (MiB * 1024)

#define MAX_THREADS 4
#define NSLOTS 32
#define MBOX 1024
#define BURST_MAX 64
#define BULK_MAX 512             /* blocks a thread keeps from bursts (fills spans) */
#define LIVE_BUDGET (384 * MiB)  /* requested bytes live at once, all threads */
#define HUGE_SIZE (16 * MiB)     /* a block above this is "huge" */
#define GIANT_SIZE (256 * MiB)   /* above this: sampled sparsely, charged GIANT_CHARGE,
				    never grown by realloc (the copy would touch it all) */
#define GIANT_CHARGE (128 * MiB)
#define HUGE_PER_INPUT 2
#define BIGALIGN_PER_INPUT 4     /* alignments >= 64 MiB (may reserve an SPB each) */
#define FAIL_SIZE ((size_t)1 << 47) /* beyond the user address space: must fail */
#define MAYFAIL_SIZE (4 * GiB)   /* above this (and below FAIL_SIZE) a request may fail
				    with ENOMEM: address space, overcommit, the
				    allocator's own limit (2^46) */
#define FULL_CHECK (128 * KiB)   /* blocks up to this are stamped whole */
#define MAX_OPS 2048

/* The pattern loops are hot and their comparisons say nothing about the
 * allocator: no coverage instrumentation there (it made them 5x slower). */
#define NOCOV __attribute__((no_sanitize("coverage")))

/* ---------------------------------------------------------------- ops */

enum opcode {
	OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_REALLOCARRAY, OP_FREE, OP_ALIGNED,
	OP_USABLE, OP_CLASS_ALLOC, OP_SET_CLASS, OP_PAGES, OP_SEND, OP_RECV,
	OP_TRIM, OP_SWITCH, OP_MISC, OP_BURST, OP_NR,
	OP_CLEANUP = 100 /* synthetic: the end of a thread's stream */
};
static const char *const op_names[OP_NR] = {
	"malloc", "calloc", "realloc", "reallocarray", "free", "aligned",
	"usable", "class_alloc", "set_class", "pages", "send", "recv",
	"trim", "switch", "misc", "burst",
};

struct op {
	uint8_t code, mod, slot, x;
	size_t a, b, c;
};

enum bkind { K_NONE = 0, K_MALLOC, K_PAGES };
/* Where a malloc block came from: the sized frees take only what C23
 * allows (free_sized: malloc/calloc/realloc; free_aligned_sized:
 * aligned_alloc and the other aligned calls). */
enum borigin { O_PLAIN = 0, O_ALIGNED, O_CLASS };

struct blk {
	unsigned char *p;
	size_t size, usable, align;
	uint64_t id;
	uint8_t kind;
	uint8_t origin;
};

/* An object behind a handle: its bytes are the pattern of id over size;
 * pins counts this thread's pins, at is the address they hold still. */
#define NHSLOTS 16
struct hslot {
	spb_handle_t h;
	size_t size;
	uint64_t id;
	unsigned pins;
	unsigned char *at;
};

struct thr {
	int idx;
	pthread_t tid;
	sem_t sem;
	struct op *ops;
	size_t nops;
	uint64_t next_id;
	spb_class_t cls; /* what spb_thread_class() must say */
	struct blk slot[NSLOTS];
	struct blk burst[BURST_MAX];
	struct blk bulk[BULK_MAX];
	unsigned nbulk;
	struct blk late; /* freed by the key destructor, after the allocator's */
	struct hslot hs[NHSLOTS]; /* objects behind handles (misc 12-15) */
	/* the last operations, for the diagnosis */
	struct op hist[8];
	unsigned nhist;
};

struct seg {
	int t;
	size_t first, count;
};

static struct {
	int nthreads;
	bool concurrent, trim_end, trace;
	/* SPBFUZZ_IGNORE=mallinfo,free_sized: known bugs (crashes/README.md)
	 * not checked, to fuzz on past them */
	bool ignore_mallinfo, ignore_free_sized;
	struct thr th[MAX_THREADS];
	struct op opbuf[MAX_THREADS][MAX_OPS + 1];
	struct seg segs[MAX_OPS + MAX_THREADS + 1];
	size_t nsegs, seg_idx;
	pthread_barrier_t start;
	/* the mailbox: blocks in flight between threads */
	pthread_mutex_t mbox_lock;
	struct blk mbox[MBOX];
	unsigned nmbox;
	/* budgets */
	size_t _Atomic live;
	unsigned _Atomic nhuge, nbigalign;
} G = { .mbox_lock = PTHREAD_MUTEX_INITIALIZER };

/* ------------------------------------------------------------ failure */

static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void print_op(FILE *f, const char *pfx, int t, const struct op *o)
{
	fprintf(f, "%sT%d %s mod=%u slot=%u x=%u a=%#zx b=%#zx c=%#zx\n", pfx, t,
		o->code < OP_NR ? op_names[o->code] : "cleanup", o->mod, o->slot, o->x,
		o->a, o->b, o->c);
}

__attribute__((noreturn, format(printf, 3, 4))) static void fail(struct thr *t,
								   const struct blk *b,
								   const char *fmt, ...)
{
	pthread_mutex_lock(&fail_lock);
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "spbfuzz: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (b)
		fprintf(stderr, " [block id=%#llx p=%p size=%#zx usable=%#zx align=%#zx %s]",
			(unsigned long long)b->id, (void *)b->p, b->size, b->usable, b->align,
			b->kind == K_PAGES ? "spb_pages" : "malloc");
	fprintf(stderr, "\n");
	if (t) {
		fprintf(stderr, "spbfuzz: thread %d of %d (%s), its last operations:\n", t->idx,
			G.nthreads, G.concurrent ? "concurrent" : "lockstep");
		unsigned n = t->nhist < 8 ? t->nhist : 8;
		for (unsigned i = t->nhist - n; i < t->nhist; i++)
			print_op(stderr, "spbfuzz:   ", t->idx, &t->hist[i % 8]);
	}
	abort();
}

#define CHECK(t, b, cond, ...)                                                 \
	do {                                                                   \
		if (__builtin_expect(!(cond), 0))                              \
			fail(t, b, __VA_ARGS__);                               \
	} while (0)

/* ------------------------------------------------------------ pattern */

static inline NOCOV uint64_t pat_word(uint64_t id, size_t w)
{
	uint64_t x = id * 0x9E3779B97F4A7C15ull + (uint64_t)w * 0xD1B54A32D192ED03ull;
	x ^= x >> 29;
	return x | 0x0101010101010101ull; /* no zero byte: tells from zeroed memory */
}

static inline NOCOV unsigned char pat_byte(uint64_t id, size_t i)
{
	return (unsigned char)(pat_word(id, i >> 3) >> ((i & 7) * 8));
}

static NOCOV void fill_range(unsigned char *p, uint64_t id, size_t from, size_t to)
{
	size_t i = from;
	for (; i < to && (i & 7); i++)
		p[i] = pat_byte(id, i);
	for (; i + 8 <= to; i += 8) {
		uint64_t w = pat_word(id, i >> 3);
		__builtin_memcpy(p + i, &w, 8);
	}
	for (; i < to; i++)
		p[i] = pat_byte(id, i);
}

/* Offset of the first byte in [from, to) that is not the pattern (zero:
 * not zero), or SIZE_MAX. */
static NOCOV size_t check_range(const unsigned char *p, uint64_t id, size_t from, size_t to, bool zero)
{
	size_t i = from;
	if (zero) {
		for (; i < to && (i & 7); i++)
			if (p[i])
				return i;
		for (; i + 8 <= to; i += 8) {
			uint64_t w;
			__builtin_memcpy(&w, p + i, 8);
			if (w)
				break;
		}
		for (; i < to; i++)
			if (p[i])
				return i;
		return SIZE_MAX;
	}
	for (; i < to && (i & 7); i++)
		if (p[i] != pat_byte(id, i))
			return i;
	for (; i + 8 <= to; i += 8) {
		uint64_t w;
		__builtin_memcpy(&w, p + i, 8);
		if (w != pat_word(id, i >> 3))
			break;
	}
	for (; i < to; i++)
		if (p[i] != pat_byte(id, i))
			return i;
	return SIZE_MAX;
}

/* The sampled byte set of a block of usable size u: all of it up to
 * FULL_CHECK, else the first and last 4 KiB and 64 bytes every stride. The
 * callback gets each piece within [0, lim). */
typedef size_t (*range_fn)(unsigned char *p, uint64_t id, size_t from, size_t to, bool zero);

static NOCOV size_t sample_stride(size_t u)
{
	size_t s = 16 * KiB, most = u > 64 * MiB ? 64 : 2048;
	while (u / s > most)
		s <<= 1;
	return s;
}

static NOCOV size_t f_fill(unsigned char *p, uint64_t id, size_t from, size_t to, bool zero)
{
	(void)zero;
	fill_range(p, id, from, to);
	return SIZE_MAX;
}

static NOCOV size_t f_check(unsigned char *p, uint64_t id, size_t from, size_t to, bool zero)
{
	return check_range(p, id, from, to, zero);
}

static NOCOV size_t each_sample(unsigned char *p, uint64_t id, size_t u, size_t lim, bool zero,
			  range_fn fn)
{
	if (lim > u)
		lim = u;
	if (u <= FULL_CHECK)
		return fn(p, id, 0, lim, zero);
	size_t r, head = 4 * KiB < lim ? 4 * KiB : lim;
	if ((r = fn(p, id, 0, head, zero)) != SIZE_MAX)
		return r;
	size_t stride = sample_stride(u);
	for (size_t o = stride; o + 64 <= u - 4 * KiB; o += stride) {
		if (o >= lim)
			return SIZE_MAX;
		if ((r = fn(p, id, o, o + 64 < lim ? o + 64 : lim, zero)) != SIZE_MAX)
			return r;
	}
	if (lim > u - 4 * KiB)
		return fn(p, id, u - 4 * KiB, lim, zero);
	return SIZE_MAX;
}

static void stamp(struct blk *b)
{
	each_sample(b->p, b->id, b->usable, b->usable, false, f_fill);
}

/* Whole pattern (within the first lim bytes) or fail. */
static void verify(struct thr *t, const struct blk *b, size_t lim, const char *when)
{
	size_t off = each_sample(b->p, b->id, b->usable, lim, false, f_check);
	CHECK(t, b, off == SIZE_MAX,
	      "%s: contents corrupted at offset %#zx (%p): byte %#x, expected %#x", when, off,
	      (void *)(b->p + off), b->p[off], pat_byte(b->id, off));
}

/* ---------------------------------------------------- interval table */

static pthread_mutex_t iv_lock = PTHREAD_MUTEX_INITIALIZER;
#define IV_MAX (MAX_THREADS * (NSLOTS + BURST_MAX + BULK_MAX + 1) + MBOX + 16)
static struct iv {
	uintptr_t lo, hi;
	uint64_t id;
	bool pages; /* spb_pages_alloc: not in the malloc counters */
} iv[IV_MAX];
static size_t niv;

static NOCOV size_t iv_find(uintptr_t lo) /* first entry with .lo >= lo */
{
	size_t a = 0, z = niv;
	while (a < z) {
		size_t m = (a + z) / 2;
		if (iv[m].lo < lo)
			a = m + 1;
		else
			z = m;
	}
	return a;
}

static size_t blk_span(const struct blk *b)
{
	return b->usable > b->size ? b->usable : (b->size ? b->size : 1);
}

static void iv_insert(struct thr *t, const struct blk *b)
{
	uintptr_t lo = (uintptr_t)b->p, hi = lo + blk_span(b);
	CHECK(t, b, hi > lo, "block wraps around the address space");
	pthread_mutex_lock(&iv_lock);
	size_t i = iv_find(lo);
	struct iv clash = { 0, 0, 0, false };
	if (i > 0 && iv[i - 1].hi > lo)
		clash = iv[i - 1];
	else if (i < niv && iv[i].lo < hi)
		clash = iv[i];
	if (clash.hi) {
		pthread_mutex_unlock(&iv_lock);
		fail(t, b, "new block [%#lx, %#lx) overlaps live block id=%#llx [%#lx, %#lx)",
		     (unsigned long)lo, (unsigned long)hi, (unsigned long long)clash.id,
		     (unsigned long)clash.lo, (unsigned long)clash.hi);
	}
	if (niv == IV_MAX) {
		pthread_mutex_unlock(&iv_lock);
		fail(t, b, "harness: interval table full");
	}
	__builtin_memmove(&iv[i + 1], &iv[i], (niv - i) * sizeof iv[0]);
	iv[i] = (struct iv){ lo, hi, b->id, b->kind == K_PAGES };
	niv++;
	pthread_mutex_unlock(&iv_lock);
}

/* Usable bytes of the live malloc blocks of this input. */
static size_t iv_malloc_bytes(void)
{
	size_t sum = 0;
	pthread_mutex_lock(&iv_lock);
	for (size_t i = 0; i < niv; i++)
		if (!iv[i].pages)
			sum += iv[i].hi - iv[i].lo;
	pthread_mutex_unlock(&iv_lock);
	return sum;
}

static void iv_remove(struct thr *t, const struct blk *b)
{
	uintptr_t lo = (uintptr_t)b->p;
	pthread_mutex_lock(&iv_lock);
	size_t i = iv_find(lo);
	if (i == niv || iv[i].lo != lo || iv[i].id != b->id) {
		pthread_mutex_unlock(&iv_lock);
		fail(t, b, "harness: block missing from the interval table");
	}
	__builtin_memmove(&iv[i], &iv[i + 1], (niv - i - 1) * sizeof iv[0]);
	niv--;
	pthread_mutex_unlock(&iv_lock);
}

/* ------------------------------------------------------------ budget */

static size_t charge_of(size_t size)
{
	return size < 64 ? 64 : size > GIANT_SIZE ? GIANT_CHARGE : size;
}

/* A failure the harness accepts: ENOMEM for an absurd size. Gives the
 * budget back. */
static bool may_fail(size_t size, const void *p, int e)
{
	if (p || e != ENOMEM || size <= MAYFAIL_SIZE || size >= FAIL_SIZE)
		return false;
	return true;
}

/* Reserve room for a request of size bytes: false = skip the call. */
static bool budget_take(size_t size)
{
	if (size >= FAIL_SIZE)
		return true; /* must fail: nothing to reserve */
	size_t c = charge_of(size);
	if (c > LIVE_BUDGET)
		return false;
	if (size > HUGE_SIZE) {
		unsigned n = atomic_fetch_add(&G.nhuge, 1);
		if (n >= HUGE_PER_INPUT)
			return false;
	}
	size_t old = atomic_fetch_add(&G.live, c);
	if (old + c > LIVE_BUDGET) {
		atomic_fetch_sub(&G.live, c);
		return false;
	}
	return true;
}

static void budget_put(size_t size)
{
	if (size < FAIL_SIZE)
		atomic_fetch_sub(&G.live, charge_of(size));
}

/* -------------------------------------------------- block lifecycle */

static bool aligned_to(const void *p, size_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

/* A block just returned by the allocator: check, register, stamp. */
static void adopt_new(struct thr *t, struct blk *b, void *p, size_t size, size_t align,
		      enum bkind kind, bool zero, const char *what)
{
	b->p = p;
	b->size = size;
	b->align = align < 16 ? 16 : align;
	b->kind = (uint8_t)kind;
	b->origin = O_PLAIN;
	b->id = ((uint64_t)(t ? t->idx + 1 : 0xf) << 56) | (t ? ++t->next_id : 0);
	b->usable = kind == K_PAGES ? spb_pages_usable_size(p) : malloc_usable_size(p);
	CHECK(t, b, aligned_to(p, b->align), "%s: %p not aligned to %#zx", what, p, b->align);
	CHECK(t, b, b->usable >= size, "%s: usable size %#zx < requested %#zx", what, b->usable,
	      size);
	iv_insert(t, b);
	if (zero) {
		size_t off = each_sample(b->p, 0, b->usable, size, true, f_check);
		CHECK(t, b, off == SIZE_MAX, "%s: memory not zero at offset %#zx: %#x", what, off,
		      b->p[off]);
	}
	stamp(b);
}

/* Verify and free a block through the right call. variant: 0 free,
 * 1 free_sized (free_aligned_sized for an aligned block), 2 the sized free
 * of the block's origin, 3 cfree, 4 __libc_free; the sized frees get the
 * size (and alignment) the block was asked for. */
static void release(struct thr *t, struct blk *b, unsigned variant, const char *when)
{
	if (!b->kind)
		return;
	verify(t, b, b->usable, when);
	size_t u = b->kind == K_PAGES ? spb_pages_usable_size(b->p) : malloc_usable_size(b->p);
	CHECK(t, b, u == b->usable, "%s: usable size changed to %#zx while live", when, u);
	iv_remove(t, b);
	if (b->kind == K_PAGES) {
		spb_pages_free(b->p);
	} else {
		switch (variant & 7) {
		case 1:
		case 2:
			if (b->origin == O_PLAIN && !G.ignore_free_sized)
				free_sized(b->p, b->size);
			else if (b->origin == O_ALIGNED && !G.ignore_free_sized)
				free_aligned_sized(b->p, b->align, b->size);
			else
				free(b->p);
			break;
		case 3: cfree(b->p); break;
		case 4: __libc_free(b->p); break;
		default: free(b->p); break;
		}
	}
	budget_put(b->size);
	memset(b, 0, sizeof *b);
}

static void expect_fail(struct thr *t, const void *p, int err, int want, const char *what,
			size_t size)
{
	CHECK(t, NULL, p == NULL, "%s(%#zx) succeeded (%p); it must fail", what, size, p);
	CHECK(t, NULL, err == want, "%s(%#zx) failed with errno %d, expected %d", what, size,
	      err, want);
}

/* ------------------------------------------------------- operations */

static void do_malloc(struct thr *t, struct blk *b, size_t size, unsigned mod)
{
	release(t, b, 0, "free before malloc");
	if (!budget_take(size))
		return;
	errno = 0;
	void *p = (mod & 1) ? __libc_malloc(size) : malloc(size);
	int e = errno;
	if (size >= FAIL_SIZE) {
		expect_fail(t, p, e, ENOMEM, "malloc", size);
		return;
	}
	if (may_fail(size, p, e)) {
		budget_put(size);
		return;
	}
	CHECK(t, NULL, p != NULL, "malloc(%#zx) failed, errno %d", size, e);
	adopt_new(t, b, p, size, 16, K_MALLOC, false, "malloc");
}

static void do_calloc(struct thr *t, struct blk *b, size_t n, size_t sz, unsigned mod)
{
	release(t, b, 0, "free before calloc");
	size_t total;
	bool ovf = __builtin_mul_overflow(n, sz, &total);
	if (!ovf && !budget_take(total))
		return;
	errno = 0;
	void *p = (mod & 4) ? __libc_calloc(n, sz) : calloc(n, sz);
	int e = errno;
	if (ovf || total >= FAIL_SIZE) {
		CHECK(t, NULL, p == NULL, "calloc(%#zx, %#zx) succeeded (%p); it must fail", n, sz, p);
		CHECK(t, NULL, e == ENOMEM, "calloc(%#zx, %#zx): errno %d, expected ENOMEM", n, sz, e);
		return;
	}
	if (may_fail(total, p, e)) {
		budget_put(total);
		return;
	}
	CHECK(t, NULL, p != NULL, "calloc(%#zx, %#zx) failed, errno %d", n, sz, e);
	adopt_new(t, b, p, total, 16, K_MALLOC, true, "calloc");
}

/* realloc / reallocarray of the block in b (maybe empty) to size bytes
 * (ovf: reallocarray's n*size overflowed). */
enum { RE_REALLOC, RE_ARRAY, RE_LIBC };

static void *call_realloc(int how, void *p, size_t size, size_t n, size_t sz)
{
	switch (how) {
	case RE_ARRAY: return reallocarray(p, n, sz);
	case RE_LIBC: return __libc_realloc(p, size);
	default: return realloc(p, size);
	}
}

static void do_realloc(struct thr *t, struct blk *b, size_t size, bool ovf, size_t n,
		       size_t sz, int how)
{
	static const char *const names[] = { "realloc", "reallocarray", "__libc_realloc" };
	const char *what = names[how];
	if (b->kind == K_PAGES) { /* not a malloc block: just free it */
		release(t, b, 0, "spb_pages_free before realloc");
		return;
	}
	/* Growing a giant block copies all of it: not here. */
	if (b->kind && b->size > GIANT_SIZE && size > HUGE_SIZE && size < FAIL_SIZE)
		return;
	if (!b->kind) {
		if (size >= FAIL_SIZE || ovf || size == 0) {
			/* realloc(NULL, ...) is malloc. */
			if (!ovf && !budget_take(size))
				return;
			errno = 0;
			void *p = call_realloc(how, NULL, size, n, sz);
			int e = errno;
			if (ovf || size >= FAIL_SIZE) {
				expect_fail(t, p, e, ENOMEM, what, size);
				return;
			}
			CHECK(t, NULL, p != NULL, "%s(NULL, 0) failed, errno %d", what, e);
			adopt_new(t, b, p, 0, 16, K_MALLOC, false, what);
			return;
		}
		if (!budget_take(size))
			return;
		errno = 0;
		void *p = call_realloc(how, NULL, size, n, sz);
		int e = errno;
		if (may_fail(size, p, e)) {
			budget_put(size);
			return;
		}
		CHECK(t, NULL, p != NULL, "%s(NULL, %#zx) failed, errno %d", what, size, e);
		adopt_new(t, b, p, size, 16, K_MALLOC, false, what);
		return;
	}
	verify(t, b, b->usable, "before realloc");
	if (ovf || size >= FAIL_SIZE) {
		errno = 0;
		void *p = call_realloc(how, b->p, size, n, sz);
		int e = errno;
		expect_fail(t, p, e, ENOMEM, what, size);
		verify(t, b, b->usable, "after a failed realloc");
		size_t u = malloc_usable_size(b->p);
		CHECK(t, b, u == b->usable, "failed %s changed the usable size to %#zx", what, u);
		return;
	}
	if (size == 0) { /* frees, returns NULL (glibc, README) */
		iv_remove(t, b);
		void *p = call_realloc(how, b->p, 0, n, sz);
		CHECK(t, b, p == NULL, "%s(p, 0) returned %p; it frees and returns NULL", what, p);
		budget_put(b->size);
		memset(b, 0, sizeof *b);
		return;
	}
	if (!budget_take(size)) /* both charged until it returns */
		return;
	iv_remove(t, b);
	errno = 0;
	void *p = call_realloc(how, b->p, size, n, sz);
	int e = errno;
	if (may_fail(size, p, e)) { /* the block must be intact */
		budget_put(size);
		iv_insert(t, b);
		verify(t, b, b->usable, "after a failed realloc");
		size_t u = malloc_usable_size(b->p);
		CHECK(t, b, u == b->usable, "failed %s changed the usable size to %#zx", what, u);
		return;
	}
	CHECK(t, b, p != NULL, "%s(p, %#zx) failed, errno %d", what, size, e);
	budget_put(b->size);
	/* The bytes this harness stamped within min(old, new) must have moved. */
	struct blk old = *b;
	old.p = p;
	size_t keep = size < b->size ? size : b->size;
	size_t off = each_sample(old.p, old.id, old.usable, keep, false, f_check);
	CHECK(t, &old, off == SIZE_MAX,
	      "%s(%p, %#zx) -> %p lost contents at offset %#zx: %#x, expected %#x", what,
	      (void *)b->p, size, p, off, ((unsigned char *)p)[off], pat_byte(old.id, off));
	b->p = p;
	b->size = size;
	b->align = 16;
	b->origin = O_PLAIN;
	b->usable = malloc_usable_size(p);
	CHECK(t, b, aligned_to(p, 16), "%s: %p not 16-byte aligned", what, p);
	CHECK(t, b, b->usable >= size, "%s: usable size %#zx < requested %#zx", what, b->usable,
	      size);
	iv_insert(t, b);
	stamp(b);
}

static bool is_pow2(size_t a)
{
	return a && !(a & (a - 1));
}

static void do_aligned(struct thr *t, struct blk *b, unsigned fn, size_t align, size_t size)
{
	static const char *const names[] = { "posix_memalign", "aligned_alloc", "memalign",
					     "valloc", "pvalloc", "__posix_memalign",
					     "__libc_memalign", "__libc_valloc", "__libc_pvalloc" };
	/* fn 5-8: glibc's own names of 0, 2, 3, 4 */
	static const unsigned kind_of[9] = { 0, 1, 2, 3, 4, 0, 2, 3, 4 };
	unsigned call = fn % 9;
	fn = kind_of[call];
	release(t, b, 2, "free before aligned");
	if (fn >= 3)
		align = 4096;
	bool bad_align = !is_pow2(align) || (fn == 0 && align % sizeof(void *));
	bool big_align = !bad_align && align > GiB;
	size_t req = size; /* what the block must hold */
	bool fail_size = size >= FAIL_SIZE;
	if (fn == 4) {
		req = (size + 4095) & ~(size_t)4095;
		if (req < size)
			fail_size = true;
		else if (req == 0)
			req = 4096;
	}
	bool must_fail = bad_align || big_align || fail_size;
	if (!must_fail) {
		if (align >= 64 * MiB && atomic_fetch_add(&G.nbigalign, 1) >= BIGALIGN_PER_INPUT)
			return;
		if (!budget_take(req))
			return;
	}
	void *p = (void *)0x5a5a; /* posix_memalign must leave it alone on failure */
	int rc = 0;
	errno = 4242;
	switch (call) {
	case 0: rc = posix_memalign(&p, align, size); break;
	case 1: p = aligned_alloc(align, size); break;
	case 2: p = memalign(align, size); break;
	case 3: p = valloc(size); break;
	case 4: p = pvalloc(size); break;
	case 5: rc = __posix_memalign(&p, align, size); break;
	case 6: p = __libc_memalign(align, size); break;
	case 7: p = __libc_valloc(size); break;
	default: p = __libc_pvalloc(size); break;
	}
	int e = errno;
	if (fn == 0) {
		CHECK(t, NULL, e == 4242, "posix_memalign(%#zx, %#zx) changed errno to %d", align,
		      size, e);
		if (must_fail) {
			int want = bad_align ? EINVAL : fail_size && !big_align ? ENOMEM : 0;
			CHECK(t, NULL, rc != 0, "posix_memalign(%#zx, %#zx) succeeded; it must fail",
			      align, size);
			CHECK(t, NULL, want ? rc == want : (rc == EINVAL || rc == ENOMEM),
			      "posix_memalign(%#zx, %#zx) returned %d, expected %d", align, size, rc,
			      want);
			CHECK(t, NULL, p == (void *)0x5a5a,
			      "posix_memalign failed but wrote the result pointer");
			return;
		}
		if (rc == ENOMEM && may_fail(req, NULL, ENOMEM)) {
			budget_put(req);
			return;
		}
		CHECK(t, NULL, rc == 0, "posix_memalign(%#zx, %#zx) returned %d", align, size, rc);
	} else if (must_fail) {
		CHECK(t, NULL, p == NULL, "%s(%#zx, %#zx) succeeded (%p); it must fail", names[call],
		      align, size, p);
		if (bad_align)
			CHECK(t, NULL, e == EINVAL, "%s(%#zx, %#zx): errno %d, expected EINVAL",
			      names[call], align, size, e);
		else if (big_align)
			CHECK(t, NULL, e == EINVAL || e == ENOMEM,
			      "%s(%#zx, %#zx): errno %d, expected EINVAL or ENOMEM", names[call],
			      align, size, e);
		else
			CHECK(t, NULL, e == ENOMEM, "%s(%#zx, %#zx): errno %d, expected ENOMEM",
			      names[call], align, size, e);
		return;
	} else {
		if (may_fail(req, p, e)) {
			budget_put(req);
			return;
		}
		CHECK(t, NULL, p != NULL, "%s(%#zx, %#zx) failed, errno %d", names[call], align, size,
		      e);
	}
	adopt_new(t, b, p, req, align, K_MALLOC, false, names[call]);
	b->origin = O_ALIGNED;
}

static void do_class_alloc(struct thr *t, struct blk *b, unsigned clsb, unsigned flags,
			   size_t size)
{
	static const int classes[8] = { SPB_UNMOVABLE, SPB_RECLAIMABLE, SPB_UNMOVABLE,
					SPB_RECLAIMABLE, SPB_MOVABLE, SPB_UNMOVABLE, SPB_NR_CLASSES,
					-1 };
	int cls = classes[clsb & 7];
	flags &= SPB_F_ZERO | SPB_F_OPTIONAL;
	/* SPB_F_ZERO memsets the whole block, fresh from the OS or not (unlike
	 * calloc): not for a block that could be 10 TiB of address space. */
	if (size > HUGE_SIZE)
		flags &= ~SPB_F_ZERO;
	release(t, b, 0, "free before spb_malloc_class");
	bool valid = cls == SPB_UNMOVABLE || cls == SPB_RECLAIMABLE;
	if (valid && !budget_take(size))
		return;
	errno = 0;
	void *p = spb_malloc_class(size, (spb_class_t)cls, flags);
	int e = errno;
	if (!valid) {
		CHECK(t, NULL, p == NULL && e == EINVAL,
		      "spb_malloc_class(%#zx, class %d): %p errno %d, expected NULL EINVAL", size,
		      cls, p, e);
		return;
	}
	if (size >= FAIL_SIZE) {
		expect_fail(t, p, e, ENOMEM, "spb_malloc_class", size);
		return;
	}
	if (!p && (flags & SPB_F_OPTIONAL) && e == EAGAIN) {
		budget_put(size);
		return; /* refused rather than taint a clean SPB: allowed */
	}
	if (may_fail(size, p, e)) {
		budget_put(size);
		return;
	}
	CHECK(t, NULL, p != NULL, "spb_malloc_class(%#zx, %d, %#x) failed, errno %d", size, cls,
	      flags, e);
	adopt_new(t, b, p, size, 16, K_MALLOC, flags & SPB_F_ZERO, "spb_malloc_class");
	b->origin = O_CLASS;
}

static void do_set_class(struct thr *t, unsigned v)
{
	static const int classes[8] = { SPB_UNMOVABLE, SPB_RECLAIMABLE, SPB_UNMOVABLE,
					SPB_RECLAIMABLE, SPB_MOVABLE, SPB_UNMOVABLE, SPB_NR_CLASSES,
					-1 };
	int cls = classes[v & 7];
	errno = 0;
	int rc = spb_set_thread_class((spb_class_t)cls);
	int e = errno;
	if (cls == SPB_UNMOVABLE || cls == SPB_RECLAIMABLE) {
		CHECK(t, NULL, rc == 0, "spb_set_thread_class(%d) = %d, errno %d", cls, rc, e);
		t->cls = (spb_class_t)cls;
	} else {
		CHECK(t, NULL, rc == -1 && e == EINVAL,
		      "spb_set_thread_class(%d) = %d errno %d, expected -1 EINVAL", cls, rc, e);
	}
	CHECK(t, NULL, spb_thread_class() == t->cls, "spb_thread_class() = %d, expected %d",
	      (int)spb_thread_class(), (int)t->cls);
}

static void do_pages(struct thr *t, struct blk *b, unsigned clsb, size_t align, unsigned flags,
		     size_t size)
{
	int cls = (clsb & 7) < 4 ? (int)(clsb & 3) : (clsb & 7) == 4 ? SPB_NR_CLASSES
				 : (clsb & 7) == 5 ? 255 : (int)(clsb & 1);
	if (cls == SPB_SECRET) /* see the top: tests/api/test_secret */
		cls = SPB_UNMOVABLE;
	flags &= SPB_F_ZERO | SPB_F_OPTIONAL;
	release(t, b, 0, "free before spb_pages_alloc");
	bool inval = cls >= SPB_NR_CLASSES || (align & (align - 1)) ||
		     align > GiB;
	if (!inval) {
		if (align >= 64 * MiB && atomic_fetch_add(&G.nbigalign, 1) >= BIGALIGN_PER_INPUT)
			return;
		if (!budget_take(size))
			return;
	}
	errno = 0;
	void *p = spb_pages_alloc(size, align, (spb_class_t)cls, flags);
	int e = errno;
	if (inval) {
		CHECK(t, NULL, p == NULL && e == EINVAL,
		      "spb_pages_alloc(%#zx, %#zx, %d): %p errno %d, expected NULL EINVAL", size,
		      align, cls, p, e);
		return;
	}
	if (size >= FAIL_SIZE) {
		expect_fail(t, p, e, ENOMEM, "spb_pages_alloc", size);
		return;
	}
	if (!p && (flags & SPB_F_OPTIONAL) && e == EAGAIN) {
		budget_put(size);
		return;
	}
	if (may_fail(size, p, e)) {
		budget_put(size);
		return;
	}
	CHECK(t, NULL, p != NULL, "spb_pages_alloc(%#zx, %#zx, %d, %#x) failed, errno %d", size,
	      align, cls, flags, e);
	size_t natural = size > 2 * MiB ? 2 * MiB : 4096;
	adopt_new(t, b, p, size, align > natural ? align : natural, K_PAGES, flags & SPB_F_ZERO,
		  "spb_pages_alloc");
}

static void mbox_put(struct thr *t, struct blk *b)
{
	if (!b->kind)
		return;
	pthread_mutex_lock(&G.mbox_lock);
	if (G.nmbox < MBOX) {
		G.mbox[G.nmbox++] = *b;
		memset(b, 0, sizeof *b);
		pthread_mutex_unlock(&G.mbox_lock);
		return;
	}
	pthread_mutex_unlock(&G.mbox_lock);
	release(t, b, 0, "free (mailbox full)");
}

/* SEND: the slot's block, or (mod bit 0) the last x+1 blocks of the bulk. */
static void do_send(struct thr *t, struct blk *b, unsigned mod, unsigned x)
{
	if (!(mod & 1)) {
		mbox_put(t, b);
		return;
	}
	for (unsigned k = 0; k <= x && t->nbulk; k++)
		mbox_put(t, &t->bulk[--t->nbulk]);
}

/* What a receiver does with a block of the mailbox. action: 0 free it
 * (cross-thread free, variant action >> 2), 1 realloc it to size
 * (cross-thread realloc) and keep it, else keep it as it is. */
static void received(struct thr *t, struct blk *b, unsigned action, size_t size)
{
	switch (action & 3) {
	case 0: release(t, b, action >> 2, "cross-thread free"); break;
	case 1: do_realloc(t, b, size, false, 1, size, RE_REALLOC); break;
	default: verify(t, b, b->usable, "received"); break;
	}
}

/* RECV: one block (mailbox index which) into the slot, or (mod bit 2)
 * the last which+1 blocks, kept in the bulk (freed when it is full). */
static void do_recv(struct thr *t, struct blk *b, unsigned which, unsigned mod, size_t size)
{
	struct blk got;
	if (mod & 4) {
		for (unsigned k = 0; k <= which; k++) {
			pthread_mutex_lock(&G.mbox_lock);
			if (!G.nmbox) {
				pthread_mutex_unlock(&G.mbox_lock);
				return;
			}
			got = G.mbox[--G.nmbox];
			pthread_mutex_unlock(&G.mbox_lock);
			if ((mod & 3) >= 2 && t->nbulk < BULK_MAX) {
				t->bulk[t->nbulk] = got;
				received(t, &t->bulk[t->nbulk++], mod, size);
			} else {
				received(t, &got, mod & 1, size);
				release(t, &got, mod >> 3, "bulk cross-thread free");
			}
		}
		return;
	}
	pthread_mutex_lock(&G.mbox_lock);
	if (!G.nmbox) {
		pthread_mutex_unlock(&G.mbox_lock);
		return;
	}
	which %= G.nmbox;
	got = G.mbox[which];
	G.mbox[which] = G.mbox[--G.nmbox];
	pthread_mutex_unlock(&G.mbox_lock);
	release(t, b, 0, "free before recv");
	*b = got;
	received(t, b, mod, size);
}

/* FREE with mod bit 3: n+1 blocks of the bulk, in one of four orders. */
static void bulk_free(struct thr *t, unsigned n, unsigned mod)
{
	unsigned cnt = n + 1 < t->nbulk ? n + 1 : t->nbulk;
	if (!cnt)
		return;
	unsigned start = t->nbulk - cnt;
	for (unsigned k = 0; k < cnt; k++) {
		unsigned i;
		switch (mod & 3) {
		case 0: i = start + k; break;                          /* oldest first */
		case 1: i = t->nbulk - 1 - k; break;                   /* newest first */
		case 2: i = start + (k * 7) % cnt; break;              /* strided */
		default: i = start + (k < (cnt + 1) / 2 ? 2 * k : 2 * (k - (cnt + 1) / 2) + 1);
		}
		if (i < t->nbulk && t->bulk[i].kind)
			release(t, &t->bulk[i], mod >> 2, "bulk free");
	}
	/* compact: what is left of [start, nbulk) */
	unsigned w = start;
	for (unsigned i = start; i < t->nbulk; i++)
		if (t->bulk[i].kind)
			t->bulk[w++] = t->bulk[i];
	for (unsigned i = w; i < t->nbulk; i++)
		memset(&t->bulk[i], 0, sizeof t->bulk[i]);
	t->nbulk = w;
}

static void verify_all(struct thr *t, const char *when)
{
	for (int i = 0; i < NSLOTS; i++)
		if (t->slot[i].kind)
			verify(t, &t->slot[i], t->slot[i].usable, when);
	for (unsigned i = 0; i < t->nbulk; i++)
		verify(t, &t->bulk[i], t->bulk[i].usable, when);
}

static void do_trim(struct thr *t, unsigned mod)
{
	switch (mod & 3) {
	case 0: (void)spb_trim(); break;
	case 1: {
		int r = malloc_trim(0);
		CHECK(t, NULL, r == 0 || r == 1, "malloc_trim returned %d", r);
		break;
	}
	case 2: (void)spb_decay(); break;
	default: {
		struct mallinfo2 mi = mallinfo2();
		(void)mi;
		break;
	}
	}
	/* Giving memory back must never touch a live block. */
	verify_all(t, "after trim");
}

/* ---- thread exit: the key destructor runs after the allocator's own
 * (its key is older), when the thread's heaps are retired: what it does
 * goes through the late paths. */
static pthread_key_t late_key;

static void late_destructor(void *arg)
{
	struct thr *t = arg;
	struct blk tmp = { 0 };
	if (t->late.kind == K_MALLOC && t->late.size < HUGE_SIZE && budget_take(t->late.size + 100)) {
		/* realloc after the heap is gone, then free */
		size_t want = t->late.size + 100;
		iv_remove(t, &t->late);
		void *p = realloc(t->late.p, want);
		CHECK(t, &t->late, p != NULL, "late realloc failed, errno %d", errno);
		size_t off = each_sample(p, t->late.id, t->late.usable, t->late.size, false, f_check);
		CHECK(t, &t->late, off == SIZE_MAX, "late realloc lost contents at offset %#zx", off);
		budget_put(t->late.size);
		memset(&t->late, 0, sizeof t->late);
		adopt_new(t, &tmp, p, want, 16, K_MALLOC, false, "late realloc");
		release(t, &tmp, 0, "late free");
	}
	release(t, &t->late, 0, "late free");
	static const size_t sizes[] = { 0, 24, 4000, 100000, 300000 };
	for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		if (!budget_take(sizes[i]))
			continue;
		void *p = i & 1 ? calloc(1, sizes[i]) : malloc(sizes[i]);
		CHECK(t, NULL, p != NULL, "late malloc(%zu) failed, errno %d", sizes[i], errno);
		adopt_new(t, &tmp, p, sizes[i], 16, K_MALLOC, i & 1, "late malloc");
		release(t, &tmp, i, "late free");
	}
	if (budget_take(5000)) {
		void *p = NULL;
		int rc = posix_memalign(&p, 256, 5000);
		CHECK(t, NULL, rc == 0, "late posix_memalign failed: %d", rc);
		adopt_new(t, &tmp, p, 5000, 256, K_MALLOC, false, "late posix_memalign");
		release(t, &tmp, 0, "late free");
	}
}

/* ---- fork: the child checks what it inherited and allocates; it uses
 * no lock of this harness (another thread may have held one at fork). */
static void do_fork(struct thr *t)
{
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return; /* the system refused: not the allocator's business */
	if (pid == 0) {
		for (int i = 0; i < NSLOTS; i++) {
			struct blk *b = &t->slot[i];
			if (!b->kind)
				continue;
			verify(t, b, b->usable, "in a forked child");
			if (i & 1) {
				if (b->kind == K_PAGES)
					spb_pages_free(b->p);
				else
					free(b->p);
			}
		}
		for (size_t sz = 8; sz <= 4 * MiB; sz *= 5) {
			struct blk nb = { .size = sz, .id = 0xc41d0000u + sz };
			nb.p = malloc(sz);
			CHECK(t, NULL, nb.p != NULL, "malloc(%zu) in a forked child failed", sz);
			nb.usable = malloc_usable_size(nb.p);
			CHECK(t, &nb, nb.usable >= sz, "usable size in a forked child");
			stamp(&nb);
			verify(t, &nb, nb.usable, "forked child's own block");
			free(nb.p);
		}
		_exit(0);
	}
	int st = 0;
	while (waitpid(pid, &st, 0) < 0)
		;
	CHECK(t, NULL, WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "forked child failed (status %#x): see its message above", st);
}

/* ------------------------------------------------------------ handles */

static size_t hsize_of(unsigned x)
{
	if (x >= 250) /* a page run behind a handle (not moved) */
		return 128 * KiB + (size_t)(x - 249) * 3000;
	return 1 + ((size_t)x * 37) % 3000;
}

static void hverify(struct thr *t, struct hslot *s, const char *when)
{
	spb_read_lock();
	unsigned char *p = spb_hget(s->h);
	size_t bad = check_range(p, s->id, 0, s->size, false);
	spb_read_unlock();
	CHECK(t, NULL, bad == SIZE_MAX, "%s: handle %#llx (%zu bytes) differs at %zu", when,
	      (unsigned long long)s->h, s->size, bad);
	CHECK(t, NULL, spb_hsize(s->h) >= s->size, "%s: spb_hsize below the size asked", when);
	if (s->pins)
		CHECK(t, NULL, spb_hpin(s->h) == s->at, "%s: a pinned object moved", when);
	if (s->pins)
		spb_hunpin(s->h);
}

static void hrelease(struct thr *t, struct hslot *s)
{
	if (!s->h)
		return;
	hverify(t, s, "handle free");
	while (s->pins) {
		spb_hunpin(s->h);
		s->pins--;
	}
	spb_hfree(s->h);
	budget_put(s->size);
	s->h = 0;
}

static void do_handle(struct thr *t, unsigned slot, unsigned mod, unsigned x)
{
	struct hslot *s = &t->hs[slot % NHSLOTS];
	switch (mod & 3) {
	case 0: { /* allocate (zeroed when x is odd) */
		hrelease(t, s);
		size_t n = hsize_of(x);
		if (!budget_take(n))
			return;
		errno = 0;
		spb_handle_t h = spb_halloc(n, (x & 1) ? SPB_F_ZERO : 0);
		CHECK(t, NULL, h != 0, "spb_halloc(%zu) failed: errno %d", n, errno);
		spb_read_lock();
		unsigned char *p = spb_hget(h);
		if (x & 1)
			CHECK(t, NULL, check_range(p, 0, 0, n, true) == SIZE_MAX,
			      "spb_halloc(SPB_F_ZERO) not zero");
		fill_range(p, t->next_id, 0, n);
		spb_read_unlock();
		*s = (struct hslot){h, n, t->next_id++, 0, NULL};
		break;
	}
	case 1: { /* resize: the kept bytes stay; a size that cannot be fails */
		if (!s->h)
			return;
		size_t n = x == 255 ? SIZE_MAX - 8 : hsize_of(x);
		if (!budget_take(n))
			return;
		errno = 0;
		int rc = spb_hrealloc(s->h, n);
		budget_put(rc == 0 ? s->size : n);
		if (x == 255) { /* pinned: EBUSY may come first */
			CHECK(t, NULL, rc == -1 && (errno == ENOMEM || (s->pins && errno == EBUSY)),
			      "spb_hrealloc(huge): rc %d errno %d", rc, errno);
		} else if (s->pins) {
			CHECK(t, NULL, rc == -1 && errno == EBUSY,
			      "spb_hrealloc of a pinned object: rc %d errno %d", rc, errno);
		} else {
			CHECK(t, NULL, rc == 0, "spb_hrealloc(%zu) failed: errno %d", n, errno);
			spb_read_lock();
			unsigned char *p = spb_hget(s->h);
			size_t keep = n < s->size ? n : s->size;
			size_t bad = check_range(p, s->id, 0, keep, false);
			CHECK(t, NULL, bad == SIZE_MAX, "spb_hrealloc lost byte %zu", bad);
			fill_range(p, s->id, keep, n);
			spb_read_unlock();
			s->size = n;
		}
		hverify(t, s, "after spb_hrealloc");
		break;
	}
	case 2: /* pin (nests) or unpin */
		if (!s->h)
			return;
		if ((x & 1) && s->pins < 3) {
			unsigned char *p = spb_hpin(s->h);
			CHECK(t, NULL, !s->pins || p == s->at, "a second pin gave another address");
			s->at = p;
			s->pins++;
		} else if (s->pins) {
			spb_hunpin(s->h);
			s->pins--;
		}
		break;
	default: /* compact now; inside a read section it must refuse */
		if (x & 1) {
			spb_read_lock();
			errno = 0;
			size_t m = spb_compact(0);
			int e = errno;
			spb_read_unlock();
			CHECK(t, NULL, m == 0 && e == EDEADLK, "spb_compact in a read section: %zu, %d",
			      m, e);
		} else {
			(void)spb_compact(0);
		}
		for (int i = 0; i < NHSLOTS; i++)
			if (t->hs[i].h)
				hverify(t, &t->hs[i], "after spb_compact");
		break;
	}
}

static void do_misc(struct thr *t, struct blk *b, unsigned mod, unsigned x)
{
	if ((mod & 15) >= 12) {
		do_handle(t, (unsigned)(b - t->slot), mod, x);
		return;
	}
	switch (mod & 15) {
	case 0:
		free(NULL);
		spb_pages_free(NULL);
		cfree(NULL);
		free_sized(NULL, 0);
		break;
	case 1:
		CHECK(t, NULL, malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) != 0");
		CHECK(t, NULL, spb_pages_usable_size(NULL) == 0, "spb_pages_usable_size(NULL) != 0");
		break;
	case 2: {
		size_t n = spb_counter_count();
		CHECK(t, NULL, n > 0, "no counters");
		CHECK(t, NULL, spb_counter_name(n) == NULL && spb_counter_desc(n) == NULL &&
				       spb_counter_value(n) == 0,
		      "counter index %zu out of range answered", n);
		for (size_t i = 0; i < n; i++) {
			const char *name = spb_counter_name(i);
			CHECK(t, NULL, name && spb_counter_desc(i), "counter %zu has no name", i);
			CHECK(t, NULL, spb_counter_get(name) != UINT64_MAX, "counter %s not found",
			      name);
		}
		CHECK(t, NULL, spb_counter_get("no such counter") == UINT64_MAX,
		      "spb_counter_get of an unknown name");
		break;
	}
	case 3:
		CHECK(t, NULL, spb_thread_class() == t->cls, "spb_thread_class() = %d, expected %d",
		      (int)spb_thread_class(), (int)t->cls);
		break;
	case 4:
		CHECK(t, NULL, mallopt(M_ARENA_MAX, 1) == 1, "mallopt(M_ARENA_MAX) != 1");
		break;
	case 5: {
		/* In lockstep mode nothing else allocates meanwhile: the
		 * counters behind mallinfo2 must add up. In concurrent mode
		 * the sums race: only no wrap-around. */
		struct mallinfo2 mi = mallinfo2();
		if (G.ignore_mallinfo)
			break;
		CHECK(t, NULL, mi.uordblks < ((size_t)1 << 62),
		      "mallinfo2: in use %#zx: negative (freed bytes counted > allocated)",
		      mi.uordblks);
		if (G.concurrent)
			break;
		size_t mine = iv_malloc_bytes();
		CHECK(t, NULL, mi.uordblks >= mine,
		      "mallinfo2: in use %zu < %zu bytes this input alone holds", mi.uordblks, mine);
		CHECK(t, NULL, mi.uordblks <= mi.arena + mi.hblkhd + (64 * MiB),
		      "mallinfo2: in use %zu > arena %zu + mapped %zu", mi.uordblks, mi.arena,
		      mi.hblkhd);
		break;
	}
	case 7: {
		struct mallinfo mi = mallinfo();
		CHECK(t, NULL, mi.arena >= 0 && mi.uordblks >= 0 && mi.fordblks >= 0,
		      "mallinfo: negative field");
		break;
	}
	case 8: /* the slot's block is freed by the thread's key destructor */
		if (t->late.kind)
			release(t, &t->late, 0, "late stash replaced");
		t->late = *b;
		memset(b, 0, sizeof *b);
		pthread_setspecific(late_key, t);
		break;
	case 9:
		if (x < 16)
			do_fork(t);
		break;
	case 10: {
		int r = malloc_trim(x);
		CHECK(t, NULL, r == 0 || r == 1, "malloc_trim(%u) returned %d", x, r);
		verify_all(t, "after malloc_trim");
		break;
	}
	case 11:
		CHECK(t, NULL, mallopt(M_MMAP_THRESHOLD, (int)x) == 1 && mallopt(12345, 1) == 0,
		      "mallopt: known parameter refused or unknown one accepted");
		break;
	default:
		verify_all(t, "misc verify");
		break;
	}
}

static void do_burst(struct thr *t, unsigned n, size_t size, unsigned pattern)
{
	if (pattern & 8) { /* keep: n+1 blocks of up to 16 KiB into the bulk */
		size %= 16 * KiB + 1;
		for (unsigned i = 0; i <= n && t->nbulk < BULK_MAX; i++) {
			if (!budget_take(size))
				break;
			void *p = (pattern & 4) ? calloc(1, size) : malloc(size);
			CHECK(t, NULL, p != NULL, "burst: malloc(%#zx) failed, errno %d", size, errno);
			adopt_new(t, &t->bulk[t->nbulk++], p, size, 16, K_MALLOC, pattern & 4,
				  "burst");
		}
		return;
	}
	n = 1 + n % BURST_MAX;
	size %= 64 * KiB + 1;
	unsigned got = 0;
	for (unsigned i = 0; i < n; i++) {
		if (!budget_take(size))
			break;
		void *p = (pattern & 4) ? calloc(1, size) : malloc(size);
		CHECK(t, NULL, p != NULL, "burst: malloc(%#zx) failed, errno %d", size, errno);
		adopt_new(t, &t->burst[i], p, size, 16, K_MALLOC, pattern & 4, "burst");
		got++;
	}
	/* free order: forward, backward, odd then even, or from the middle */
	for (unsigned k = 0; k < got; k++) {
		unsigned i;
		switch (pattern & 3) {
		case 0: i = k; break;
		case 1: i = got - 1 - k; break;
		case 2: i = k < (got + 1) / 2 ? 2 * k : 2 * (k - (got + 1) / 2) + 1; break;
		default: i = (k + got / 2) % got; break;
		}
		release(t, &t->burst[i], pattern >> 3, "burst free");
	}
}

static void run_op(struct thr *t, const struct op *o)
{
	t->hist[t->nhist++ % 8] = *o;
	if (G.trace)
		print_op(stderr, "spbfuzz: ", t->idx, o);
	struct blk *b = &t->slot[o->slot % NSLOTS];
	switch (o->code) {
	case OP_MALLOC: do_malloc(t, b, o->a, o->mod); break;
	case OP_CALLOC: do_calloc(t, b, o->a, o->b, o->mod); break;
	case OP_REALLOC: {
		/* mod 0-3: to an absolute size; 4-7: relative to the block */
		size_t sz = o->a;
		if ((o->mod & 7) >= 4 && b->kind == K_MALLOC) {
			switch (o->mod & 3) {
			case 0: sz = b->size * 2 + (o->b & 1); break;
			case 1: sz = b->size / 2; break;
			case 2: sz = b->size + o->b; break;
			default: sz = b->size > o->b ? b->size - o->b : 1; break;
			}
		}
		do_realloc(t, b, sz, false, 1, sz, (o->mod & 8) ? RE_LIBC : RE_REALLOC);
		break;
	}
	case OP_REALLOCARRAY: {
		size_t total;
		bool ovf = __builtin_mul_overflow(o->a, o->b, &total);
		do_realloc(t, b, ovf ? SIZE_MAX : total, ovf, o->a, o->b, RE_ARRAY);
		break;
	}
	case OP_FREE:
		if (o->mod & 8)
			bulk_free(t, o->slot, o->mod);
		else
			release(t, b, o->mod, "free");
		break;
	case OP_ALIGNED: do_aligned(t, b, o->mod, o->b, o->a); break;
	case OP_USABLE:
		if (b->kind) {
			size_t u = b->kind == K_PAGES ? spb_pages_usable_size(b->p)
						      : malloc_usable_size(b->p);
			CHECK(t, b, u == b->usable, "usable size changed to %#zx while live", u);
			verify(t, b, b->usable, "usable");
		}
		break;
	case OP_CLASS_ALLOC: do_class_alloc(t, b, o->mod, o->x, o->a); break;
	case OP_SET_CLASS: do_set_class(t, o->x); break;
	case OP_PAGES: do_pages(t, b, o->mod, o->b, o->x, o->a); break;
	case OP_SEND: do_send(t, b, o->mod, o->x); break;
	case OP_RECV: do_recv(t, b, o->x, o->mod, o->a); break;
	case OP_TRIM: do_trim(t, o->mod); break;
	case OP_MISC: do_misc(t, b, o->mod, o->x); break;
	case OP_BURST: do_burst(t, o->x, o->a, o->mod); break;
	case OP_CLEANUP:
		for (int i = 0; i < NSLOTS; i++)
			release(t, &t->slot[i], (unsigned)i, "cleanup");
		for (int i = 0; i < NHSLOTS; i++)
			hrelease(t, &t->hs[i]);
		bulk_free(t, BULK_MAX, 0);
		break;
	default: break;
	}
}

/* ---------------------------------------------------------- decoding */

struct cursor {
	const uint8_t *p;
	size_t n, i;
};

static unsigned get8(struct cursor *c)
{
	return c->i < c->n ? c->p[c->i++] : 0;
}

static size_t get16(struct cursor *c)
{
	size_t v = get8(c);
	return v | (size_t)get8(c) << 8;
}

static size_t get24(struct cursor *c)
{
	size_t v = get16(c);
	return v | (size_t)get8(c) << 16;
}

static size_t class_size(unsigned i) /* the documented size classes (heap.h) */
{
	i %= 88;
	if (i < 8)
		return 16 * (i + 1);
	unsigned lg = 7 + (i - 8) / 8, k = (i - 8) % 8;
	return (size_t)(9 + k) << (lg - 3);
}

static size_t adj(size_t base, long d)
{
	return d < 0 && (size_t)-d > base ? 0 : base + (size_t)d;
}

/* Sizes, by the low 4 bits of the first byte: mostly small (class
 * boundaries, the documented classes of heap.h, +-2), then page runs,
 * pageblock runs, a few MiB; 1 in 16 must fail (>= 2^47, near SIZE_MAX);
 * 1 in 256 a few hundred MiB, 1 in 256 just over 1 GiB. */
static size_t get_size(struct cursor *c)
{
	static const size_t failing[8] = {
		SIZE_MAX, SIZE_MAX - 100, SIZE_MAX - 4095, SIZE_MAX / 2 + 1,
		(size_t)1 << 47, ((size_t)1 << 63) + 1, SIZE_MAX - 2 * MiB, (size_t)1 << 52,
	};
	static const long dpage[8] = { -17, -2, -1, 0, 0, 1, 2, 17 };
	static const long dpb[8] = { -4096, -1, 0, 0, 0, 1, 4096, -(long)(2 * MiB) + 1 };
	unsigned b = get8(c), kind = b & 15, rest = b >> 4;
	switch (kind) {
	case 0: case 1: case 2: case 3:
		return get8(c);
	case 4: case 5: case 6: case 7:
		return adj(class_size(get8(c)), (long)(rest % 5) - 2);
	case 8:
		return get16(c);
	case 9: case 10:
		return adj((1 + get16(c) % 600) * 4096, dpage[rest & 7]);
	case 11:
		return adj((1 + get8(c) % 8) * 2 * MiB, dpb[rest & 7]);
	case 12:
		return get24(c) % ((rest & 1) ? 8 * MiB : 256 * KiB);
	case 13:
		return failing[rest & 7];
	case 14:
		if (rest == 15)
			return 32 * MiB + get8(c) * (3 * MiB / 2); /* up to ~410 MiB */
		if (rest == 14) /* over 1 GiB: a dedicated mapping */
			return GiB + get8(c) * 4 * MiB;
		return 2 * MiB + get24(c) % (14 * MiB);
	default:
		if (rest & 1)
			return 0;
		return adj((size_t)1 << (get8(c) % 24), (long)((rest >> 1) % 3) - 1);
	}
}

static size_t get_align(struct cursor *c)
{
	static const size_t invalid[8] = { 0, 3, 24, 48, 4097, SIZE_MAX, ((size_t)1 << 31) + 1,
					   96 };
	unsigned a = get8(c);
	if (a < 200)
		return (size_t)1 << (a % 22); /* 1 .. 2 MiB */
	if (a < 240)
		return (size_t)1 << (22 + a % 9); /* 4 MiB .. 1 GiB */
	if (a < 248)
		return invalid[a & 7];
	return (size_t)1 << (31 + (a & 7) * 4); /* 2 GiB .. 2^59 */
}

static void calloc_args(struct cursor *c, unsigned mod, size_t *n, size_t *sz)
{
	switch (mod & 3) {
	case 0: *n = 1; *sz = get_size(c); break;
	case 1: *n = get_size(c); *sz = 1; break;
	case 2: *n = get8(c); *sz = get_size(c) % (256 * KiB); break;
	default: {
		unsigned k = get8(c);
		switch (k & 3) {
		case 0: *n = (size_t)1 << 32; *sz = (size_t)1 << 32; break; /* overflows */
		case 1: *n = SIZE_MAX / (16 + (k >> 2)) + 1; *sz = 16 + (k >> 2); break;
		case 2: *n = get_size(c); *sz = get_size(c); break;
		default: *n = (size_t)1 << 24; *sz = (size_t)1 << 24; break; /* 2^48: fails */
		}
	}
	}
}

static size_t decode(const uint8_t *data, size_t size)
{
	struct cursor c = { data, size, 0 };
	unsigned h = get8(&c);
	G.nthreads = 1 + (int)(h & 3);
	G.concurrent = (h & 4) != 0;
	G.trim_end = (h & 8) != 0;
	for (int i = 0; i < G.nthreads; i++) {
		G.th[i].ops = G.opbuf[i];
		G.th[i].nops = 0;
	}
	G.nsegs = 0;
	int cur = 0;
	size_t total = 0;
	while (c.i < c.n && total < MAX_OPS) {
		unsigned b = get8(&c);
		struct op o = { .code = (uint8_t)(b & 15), .mod = (uint8_t)(b >> 4) };
		switch (o.code) {
		case OP_MALLOC: o.slot = (uint8_t)get8(&c); o.a = get_size(&c); break;
		case OP_CALLOC: o.slot = (uint8_t)get8(&c); calloc_args(&c, o.mod, &o.a, &o.b); break;
		case OP_REALLOC:
			o.slot = (uint8_t)get8(&c);
			if ((o.mod & 7) >= 4)
				o.b = get8(&c);
			else
				o.a = get_size(&c);
			break;
		case OP_REALLOCARRAY:
			o.slot = (uint8_t)get8(&c);
			calloc_args(&c, o.mod, &o.a, &o.b);
			break;
		case OP_FREE: o.slot = (uint8_t)get8(&c); break;
		case OP_ALIGNED:
			o.slot = (uint8_t)get8(&c);
			o.b = get_align(&c);
			o.a = get_size(&c);
			break;
		case OP_USABLE: o.slot = (uint8_t)get8(&c); break;
		case OP_CLASS_ALLOC:
			o.slot = (uint8_t)get8(&c);
			o.x = (uint8_t)get8(&c);
			o.a = get_size(&c);
			break;
		case OP_SET_CLASS: o.x = (uint8_t)get8(&c); break;
		case OP_PAGES: {
			o.slot = (uint8_t)get8(&c);
			o.x = (uint8_t)get8(&c);
			unsigned a = o.x >> 2;
			o.b = a < 48 ? 0 : get_align(&c);
			o.a = get_size(&c);
			break;
		}
		case OP_SEND:
			o.slot = (uint8_t)get8(&c);
			if (o.mod & 1)
				o.x = (uint8_t)get8(&c);
			break;
		case OP_RECV:
			o.slot = (uint8_t)get8(&c);
			o.x = (uint8_t)get8(&c);
			if ((o.mod & 3) == 1)
				o.a = get_size(&c);
			break;
		case OP_TRIM: break;
		case OP_SWITCH: {
			int nt = (int)(get8(&c) % (unsigned)G.nthreads);
			if (nt != cur) {
				cur = nt;
				if (G.nsegs && G.segs[G.nsegs - 1].count == 0)
					G.nsegs--; /* an empty segment: replace */
			}
			continue;
		}
		case OP_MISC:
			o.slot = (uint8_t)get8(&c);
			o.x = (uint8_t)get8(&c);
			break;
		default: /* OP_BURST */
			o.x = (uint8_t)get8(&c);
			o.a = get_size(&c);
			break;
		}
		struct thr *t = &G.th[cur];
		if (!G.nsegs || G.segs[G.nsegs - 1].t != cur)
			G.segs[G.nsegs++] = (struct seg){ cur, t->nops, 0 };
		t->ops[t->nops++] = o;
		G.segs[G.nsegs - 1].count++;
		total++;
	}
	/* Each thread's clean-up, in index order. */
	for (int i = 0; i < G.nthreads; i++) {
		struct thr *t = &G.th[i];
		G.segs[G.nsegs++] = (struct seg){ i, t->nops, 1 };
		t->ops[t->nops++] = (struct op){ .code = OP_CLEANUP };
	}
	return total;
}

/* ---------------------------------------------------------- running */

/* Wait for the token: a few yields first (a token handed over by a
 * running thread comes in microseconds; on a loaded machine a sleep and
 * wake-up costs a scheduling round), then sleep. */
static void token_wait(sem_t *s)
{
	for (int i = 0; i < 200; i++) {
		if (sem_trywait(s) == 0)
			return;
		sched_yield();
	}
	while (sem_wait(s) != 0)
		;
}

static void *lockstep_main(void *arg)
{
	struct thr *t = arg;
	for (;;) {
		token_wait(&t->sem);
		if (G.seg_idx >= G.nsegs)
			break;
		const struct seg *s = &G.segs[G.seg_idx];
		for (size_t i = 0; i < s->count; i++)
			run_op(t, &t->ops[s->first + i]);
		G.seg_idx++;
		if (G.seg_idx < G.nsegs)
			sem_post(&G.th[G.segs[G.seg_idx].t].sem);
		else
			sem_post(&G.th[0].sem); /* wakes the main thread's join chain */
	}
	return NULL;
}

static void *concurrent_main(void *arg)
{
	struct thr *t = arg;
	pthread_barrier_wait(&G.start);
	for (size_t i = 0; i < t->nops; i++)
		run_op(t, &t->ops[i]);
	return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (pthread_key_create(&late_key, late_destructor))
		abort();
	const char *tr = getenv("SPBFUZZ_TRACE");
	G.trace = tr && *tr && *tr != '0';
	const char *ign = getenv("SPBFUZZ_IGNORE");
	G.ignore_mallinfo = ign && strstr(ign, "mallinfo");
	G.ignore_free_sized = ign && strstr(ign, "free_sized");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	decode(data, size);
	G.seg_idx = 0;
	G.nmbox = 0;
	atomic_store(&G.live, 0);
	atomic_store(&G.nhuge, 0);
	atomic_store(&G.nbigalign, 0);
	if (G.trace)
		fprintf(stderr, "spbfuzz: input of %zu bytes: %d threads, %s%s\n", size, G.nthreads,
			G.concurrent ? "concurrent" : "lockstep", G.trim_end ? ", trim at end" : "");
	for (int i = 0; i < G.nthreads; i++) {
		struct thr *t = &G.th[i];
		t->idx = i;
		t->next_id = 0;
		t->nhist = 0;
		t->cls = SPB_UNMOVABLE;
		memset(t->slot, 0, sizeof t->slot);
		memset(t->burst, 0, sizeof t->burst);
		memset(t->bulk, 0, sizeof t->bulk);
		memset(&t->late, 0, sizeof t->late);
		t->nbulk = 0;
	}
	if (G.concurrent) {
		pthread_barrier_init(&G.start, NULL, (unsigned)G.nthreads);
		for (int i = 0; i < G.nthreads; i++)
			if (pthread_create(&G.th[i].tid, NULL, concurrent_main, &G.th[i]))
				fail(NULL, NULL, "pthread_create failed");
		for (int i = 0; i < G.nthreads; i++)
			pthread_join(G.th[i].tid, NULL);
		pthread_barrier_destroy(&G.start);
	} else {
		for (int i = 0; i < G.nthreads; i++) {
			sem_init(&G.th[i].sem, 0, 0);
			if (pthread_create(&G.th[i].tid, NULL, lockstep_main, &G.th[i]))
				fail(NULL, NULL, "pthread_create failed");
		}
		sem_post(&G.th[G.segs[0].t].sem);
		/* Thread 0 is posted once more when the last segment is done;
		 * the threads leave one at a time, in index order. */
		for (int i = 0; i < G.nthreads; i++) {
			if (i > 0)
				sem_post(&G.th[i].sem);
			pthread_join(G.th[i].tid, NULL);
		}
		for (int i = 0; i < G.nthreads; i++)
			sem_destroy(&G.th[i].sem);
	}
	/* What is left in the mailbox: freed by the main thread, whose
	 * allocating threads are gone (abandoned spans). */
	for (unsigned i = 0; i < G.nmbox; i++)
		release(NULL, &G.mbox[i], i, "mailbox drain");
	G.nmbox = 0;
	if (niv != 0 || atomic_load(&G.live) != 0)
		fail(NULL, NULL, "harness: %zu blocks / %zu bytes still accounted at the end", niv,
		     atomic_load(&G.live));
	if (G.trim_end)
		(void)spb_trim();
	return 0;
}
