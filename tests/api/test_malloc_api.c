/*
 * test_malloc_api.c — conformance of the whole malloc family as a program
 * linked normally against libspbmalloc.so sees it: glibc-compatible
 * results, errno values, zero and huge sizes, every power-of-two alignment
 * from 1 byte to 1 GiB, realloc across size classes, page runs and whole
 * pageblocks with contents preserved, and the spb_* class API.
 *
 * Proof that spbmalloc served the calls: dladdr() names libspbmalloc as the
 * home of the malloc the program binds to, and the public counter
 * malloc_alloc grows with each call checked.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>

#include "mtest.h"

/* C23 / glibc 2.38 names the glibc of the build host may not declare. */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);
void *__libc_memalign(size_t align, size_t size);
void *__libc_malloc(size_t size);
void __libc_free(void *p);

#define KiB ((size_t)1024)
#define MiB (KiB * 1024)
#define GiB (MiB * 1024)
#define SPB_TEST_SMALL_MAX (128 * KiB) /* the largest size class */

static int aligned(const void *p, size_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

static void test_proof(void)
{
	Dl_info info;
	void *fn = dlsym(RTLD_DEFAULT, "malloc");
	REQUIRE(fn != NULL);
	REQUIRE(dladdr(fn, &info) && info.dli_fname);
	CHECK(strstr(info.dli_fname, "libspbmalloc") != NULL);
	uint64_t before = mt_counter("malloc_alloc");
	void *p[100];
	for (int i = 0; i < 100; i++)
		p[i] = malloc((size_t)i * 8 + 1);
	CHECK(mt_counter("malloc_alloc") >= before + 100);
	uint64_t fb = mt_counter("malloc_free");
	for (int i = 0; i < 100; i++)
		free(p[i]);
	CHECK(mt_counter("malloc_free") >= fb + 100);
}

static void test_malloc_sizes(void)
{
	/* Every size up to 4 KiB, then every class boundary region. */
	static void *keep[4200];
	for (size_t n = 0; n < 4200; n++) {
		unsigned char *p = malloc(n);
		keep[n] = p;
		CHECK(p != NULL);
		if (!p)
			continue;
		CHECK(aligned(p, 16));
		size_t u = malloc_usable_size(p);
		CHECK(u >= n);
		memset(p, (int)(n & 0xff), u);
	}
	for (size_t n = 0; n < 4200; n++) {
		unsigned char *p = keep[n];
		size_t u = malloc_usable_size(p);
		int ok = 1;
		for (size_t i = 0; i < u; i++)
			ok &= p[i] == (unsigned char)(n & 0xff);
		CHECK(ok);
		free(p);
	}
	/* Sizes around every power of two up to 64 MiB: small, page runs,
	 * pageblocks. */
	for (size_t s = 16; s <= 64 * MiB; s <<= 1)
		for (long d = -1; d <= 1; d++) {
			size_t n = s + (size_t)d;
			unsigned char *p = malloc(n);
			CHECK(p != NULL);
			if (!p)
				continue;
			CHECK(malloc_usable_size(p) >= n);
			p[0] = 1;
			p[n - 1] = 2;
			CHECK(p[0] == 1 && p[n - 1] == 2);
			free(p);
		}
	/* malloc(0) is a unique, freeable pointer, like glibc. */
	void *a = malloc(0), *b = malloc(0);
	CHECK(a && b && a != b);
	free(a);
	free(b);
	free(NULL);
}

static void *free_all_blocks(void *arg)
{
	void **v = arg;
	for (int i = 0; v[i]; i++)
		free(v[i]);
	return NULL;
}

/* Blocks dirtied here and freed by another thread come back through the
 * span's cross-thread stack: calloc must still zero them (the "fresh
 * free list" shortcut must not survive that). */
static void test_calloc_xthread(void)
{
	enum { N = 3000 };
	static void *v[N + 1];
	for (int i = 0; i < N; i++) {
		v[i] = malloc(48);
		REQUIRE(v[i]);
		memset(v[i], 0xc3, 48);
	}
	v[N] = NULL;
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, free_all_blocks, v) == 0);
	pthread_join(t, NULL);
	size_t bad = 0;
	for (int i = 0; i < N; i++) {
		unsigned char *z = calloc(1, 48);
		REQUIRE(z);
		for (int k = 0; k < 48; k++)
			bad += z[k] != 0;
		v[i] = z;
	}
	CHECK_EQ(bad, 0);
	for (int i = 0; i < N; i++)
		free(v[i]);
}

static void test_calloc(void)
{
	/* Dirty a block, free it, and calloc the same size: must read zero,
	 * for small blocks, page runs and whole pageblocks. */
	size_t sizes[] = {8, 100, 4000, 100 * KiB, 200 * KiB, 1 * MiB, 3 * MiB, 9 * MiB};
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		for (int round = 0; round < 3; round++) {
			unsigned char *d = malloc(sizes[i]);
			REQUIRE(d);
			memset(d, 0xa5, malloc_usable_size(d));
			free(d);
			unsigned char *z = calloc(1, sizes[i]);
			REQUIRE(z);
			size_t bad = 0;
			for (size_t k = 0; k < sizes[i]; k++)
				bad += z[k] != 0;
			CHECK_EQ(bad, 0);
			memset(z, 0x5a, sizes[i]);
			free(z);
		}
	}
	unsigned char *z = calloc(1000, 1000);
	CHECK(z && z[0] == 0 && z[999999] == 0);
	free(z);
	void *e = calloc(0, 16), *f = calloc(16, 0);
	CHECK(e && f);
	free(e);
	free(f);
	errno = 0;
	CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(calloc((size_t)1 << 33, (size_t)1 << 33) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(calloc(1, SIZE_MAX) == NULL && errno == ENOMEM);
}

/* Grow a block through every regime and back, checking the contents. */
static void test_realloc_chain(void)
{
	size_t steps[] = {1, 8, 16, 17, 100, 1000, 1024, 1025, 5000, 65536, 128 * KiB,
			  128 * KiB + 1, 300 * KiB, 2 * MiB - 4 * KiB, 2 * MiB, 2 * MiB + 1,
			  5 * MiB, 17 * MiB, 5 * MiB, 2 * MiB, 1 * MiB, 128 * KiB, 129 * KiB,
			  4000, 33, 16, 1};
	size_t n = sizeof steps / sizeof *steps;
	unsigned char *p = realloc(NULL, steps[0]);
	REQUIRE(p);
	size_t cur = steps[0];
	mt_fill(p, cur, 11);
	for (size_t i = 1; i < n; i++) {
		size_t want = steps[i];
		unsigned char *q = realloc(p, want);
		CHECK(q != NULL);
		if (!q)
			break;
		CHECK(malloc_usable_size(q) >= want);
		size_t keep = cur < want ? cur : want;
		CHECK(mt_verify(q, keep, 11));
		p = q;
		mt_fill(p, want, 11);
		cur = want;
	}
	free(p);

	/* Growing a small block one byte at a time stays correct. */
	p = NULL;
	for (size_t s = 1; s <= 70000; s += 97) {
		unsigned char *q = realloc(p, s);
		REQUIRE(q);
		if (p && s > 97)
			CHECK(q[s - 98] == (unsigned char)((s - 97) & 0xff));
		q[s - 1] = (unsigned char)(s & 0xff);
		p = q;
	}
	free(p);
}

/* In-place resizing of page runs and pageblock runs (the engine grows a
 * run into free neighbours and gives a shrunk tail back): the tail handed
 * to someone else must not overlap, contents must survive both ways. */
static void test_realloc_in_place_runs(void)
{
	size_t sizes[][3] = {
		{1 * MiB, 300 * KiB, 600 * KiB},  /* page runs */
		{9 * MiB, 4 * MiB, 4 * MiB},      /* pageblock runs */
	};
	for (int k = 0; k < 2; k++) {
		size_t big = sizes[k][0], small = sizes[k][1], other = sizes[k][2];
		unsigned char *p = malloc(big);
		REQUIRE(p);
		mt_stamp(p, big, 21);
		unsigned char *q = realloc(p, small);
		REQUIRE(q);
		CHECK(mt_verify(q, 64, 21));
		for (size_t off = 4096; off + 8 <= small - 64; off += 4096) {
			uint64_t seed = 21;
			CHECK(memcmp(q + off, &seed, 8) == 0);
		}
		mt_stamp(q, small, 22);
		/* Whatever takes the freed tail must not overlap q. */
		unsigned char *r = malloc(other);
		REQUIRE(r);
		CHECK(r >= q + small || r + other <= q);
		memset(r, 0xcd, other);
		CHECK(mt_stamp_ok(q, small, 22));
		/* Growing again: in place or moved, contents kept. */
		unsigned char *g = realloc(q, big);
		REQUIRE(g);
		CHECK(mt_stamp_ok(g, small, 22));
		CHECK(malloc_usable_size(g) >= big);
		g[big - 1] = 1;
		CHECK(r[0] == 0xcd && r[other - 1] == 0xcd);
		free(r);
		/* With the neighbour gone it can grow in place. */
		unsigned char *h = realloc(g, big + big / 2);
		REQUIRE(h);
		CHECK(mt_stamp_ok(h, small, 22));
		free(h);
	}
}

static void test_realloc_edges(void)
{
	/* realloc(p, 0) frees and returns NULL (glibc). */
	void *p = malloc(100);
	REQUIRE(p);
	uint64_t f0 = mt_counter("malloc_free");
	CHECK(realloc(p, 0) == NULL);
	CHECK(mt_counter("malloc_free") == f0 + 1);
	p = realloc(NULL, 0); /* = malloc(0): a pointer */
	CHECK(p != NULL);
	free(p);

	/* Failure leaves the block intact. */
	unsigned char *b = malloc(500);
	REQUIRE(b);
	mt_fill(b, 500, 3);
	errno = 0;
	CHECK(realloc(b, SIZE_MAX) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(realloc(b, SIZE_MAX / 2) == NULL && errno == ENOMEM);
	CHECK(mt_verify(b, 500, 3));
	free(b);

	/* reallocarray: overflow -> NULL + ENOMEM, block intact. */
	b = reallocarray(NULL, 10, 10);
	REQUIRE(b);
	mt_fill(b, 100, 5);
	errno = 0;
	CHECK(reallocarray(b, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
	CHECK(mt_verify(b, 100, 5));
	unsigned char *c = reallocarray(b, 1000, 20);
	CHECK(c && malloc_usable_size(c) >= 20000 && mt_verify(c, 100, 5));
	free(c ? c : b);
}

/* realloc within what the block already has, and realloc of a run whose
 * neighbouring pages are free, must be served in place: the same pointer
 * back, contents kept, and malloc_realloc_inplace counts each one. (A
 * realloc that always moved, or forgot the counter, passed every test
 * above.) */
static unsigned char *check_inplace(const char *what, unsigned char *p, size_t size,
				    size_t keep, uint64_t seed)
{
	uint64_t c0 = mt_counter("malloc_realloc_inplace");
	unsigned char *q = realloc(p, size);
	uint64_t c1 = mt_counter("malloc_realloc_inplace");
	if (q != p || c1 != c0 + 1)
		fprintf(stderr, "realloc in place, %s: %p -> %p (size %zu), "
			"malloc_realloc_inplace %" PRIu64 " -> %" PRIu64 "\n",
			what, (void *)p, (void *)q, size, c0, c1);
	CHECK(q == p);
	CHECK_EQ(c1, c0 + 1);
	REQUIRE(q != NULL);
	CHECK(malloc_usable_size(q) >= size);
	CHECK(mt_stamp_ok(q, keep, seed));
	return q; /* moved (a failure): the caller goes on with the new block */
}

static void test_realloc_inplace_identity(void)
{
	/* A small class: 50 bytes live in a 64-byte block; anything from
	 * half the block to all of it is served where it is. */
	unsigned char *p = malloc(50);
	REQUIRE(p);
	size_t u = malloc_usable_size(p);
	CHECK(u >= 50 && u < 128);
	mt_stamp(p, 50, 31);
	p = check_inplace("small grow to usable", p, u, 50, 31);
	p = check_inplace("small shrink", p, u / 2 + 1, u / 2 + 1 < 50 ? u / 2 + 1 : 50, 31);
	free(p);

	/* A large class (104 KiB blocks): 100 KiB -> 104 KiB -> 60 KiB. */
	p = malloc(100 * KiB);
	REQUIRE(p);
	u = malloc_usable_size(p);
	CHECK(u >= 100 * KiB && u <= SPB_TEST_SMALL_MAX);
	mt_stamp(p, 100 * KiB, 32);
	p = check_inplace("large class grow to usable", p, u, 100 * KiB, 32);
	mt_stamp(p, u, 33);
	p = check_inplace("large class shrink", p, u / 2 + 4096, 0, 33);
	CHECK(mt_verify(p, 64, 33)); /* the head survives the shrink */
	free(p);

	/* A page run (200 KiB, rounded up to the run cache's class of
	 * 208 KiB = 52 pages): within its pages... */
	size_t pr = 200 * KiB;
	p = malloc(pr);
	REQUIRE(p);
	CHECK(malloc_usable_size(p) >= pr && malloc_usable_size(p) <= pr + 16 * KiB);
	mt_stamp(p, pr, 34);
	p = check_inplace("page run shrink within its pages", p, 150 * KiB, 0, 34);
	CHECK(mt_verify(p, 64, 34));
	free(p);
	/* ...and beyond them: a 1 MiB run shrunk to 200 KiB gives its tail
	 * back (in place), and growing to 900 KiB takes the free tail again
	 * (in place: nothing was allocated in between). */
	p = malloc(1 * MiB);
	REQUIRE(p);
	mt_stamp(p, 1 * MiB, 35);
	mt_stamp(p, pr, 36);
	p = check_inplace("page run shrink 1 MiB -> 200 KiB", p, pr, pr, 36);
	CHECK_EQ(malloc_usable_size(p), pr);
	p = check_inplace("page run grow 200 KiB -> 900 KiB into free pages", p, 900 * KiB,
		      pr, 36);
	CHECK_EQ(malloc_usable_size(p), 900 * KiB);
	mt_stamp(p, 900 * KiB, 37);
	p = check_inplace("page run grow 900 KiB -> 1 MiB into free pages", p, 1 * MiB,
		      900 * KiB, 37);
	free(p);

	/* Pageblock runs: 10 MiB (5 pageblocks) -> 4 MiB -> 10 MiB. */
	p = malloc(10 * MiB);
	REQUIRE(p);
	mt_stamp(p, 4 * MiB, 38);
	p = check_inplace("pageblock run shrink 10 MiB -> 4 MiB", p, 4 * MiB, 4 * MiB, 38);
	CHECK_EQ(malloc_usable_size(p), 4 * MiB);
	p = check_inplace("pageblock run grow 4 MiB -> 10 MiB into free pageblocks", p,
		      10 * MiB, 4 * MiB, 38);
	CHECK_EQ(malloc_usable_size(p), 10 * MiB);
	p = check_inplace("pageblock run shrink within its pageblocks", p, 9 * MiB, 4 * MiB, 38);
	free(p);
}

/* Huge requests on a block of every size range: realloc and reallocarray
 * to sizes no allocator can give must fail with NULL and ENOMEM and leave
 * the block exactly as it was, still the caller's: same usable size, same
 * contents, not handed out to anyone else, freed once without complaint.
 * (Page-count rounding that wraps near SIZE_MAX once resized a run to 0
 * pages "in place": the run was freed behind the caller's back.) Each
 * range runs in a child so a crash (a double-free abort) fails that range
 * alone, by name. */
static const size_t huge_sizes[] = {
	SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 100, SIZE_MAX - 4095, SIZE_MAX - 4096,
	SIZE_MAX - 2 * MiB + 1, SIZE_MAX - 2 * MiB, SIZE_MAX - GiB,
	SIZE_MAX / 2 + 1, SIZE_MAX / 2, (size_t)1 << 63, (size_t)1 << 62,
	(size_t)1 << 48, ((size_t)1 << 47) + 1};
#define NHUGE (sizeof huge_sizes / sizeof *huge_sizes)

/* Sparse stamps (ends, and 8 bytes every stride): a 1 GiB block gets a
 * stamp every 64 MiB, not one per page (each touch may fault in a whole
 * 2 MiB huge page). */
static void sp_stamp(unsigned char *p, size_t n, uint64_t seed)
{
	size_t stride = n > 64 * MiB ? 64 * MiB : 4096;
	mt_fill(p, n < 64 ? n : 64, seed);
	if (n <= 128)
		return;
	mt_fill(p + n - 64, 64, seed ^ 0x55);
	for (size_t off = stride; off + 8 <= n - 64; off += stride)
		memcpy(p + off, &seed, 8);
}

static int sp_ok(const unsigned char *p, size_t n, uint64_t seed)
{
	size_t stride = n > 64 * MiB ? 64 * MiB : 4096;
	if (!mt_verify(p, n < 64 ? n : 64, seed))
		return 0;
	if (n <= 128)
		return 1;
	if (!mt_verify(p + n - 64, 64, seed ^ 0x55))
		return 0;
	for (size_t off = stride; off + 8 <= n - 64; off += stride)
		if (memcmp(p + off, &seed, 8))
			return 0;
	return 1;
}

/* reallocarray: products that overflow, and products that do not but are
 * as hopeless. */
static const size_t huge_arr[][2] = {
	{SIZE_MAX / 2, 3}, {3, SIZE_MAX / 2}, {(size_t)1 << 32, (size_t)1 << 32},
	{SIZE_MAX, SIZE_MAX}, {2, SIZE_MAX / 2 + 1}, {SIZE_MAX - 100, 1},
	{1, SIZE_MAX}, {(size_t)1 << 31, (size_t)1 << 31}};
#define NHUGE_ARR (sizeof huge_arr / sizeof *huge_arr)

/* One huge request on a fresh block of the given size (op < NHUGE:
 * realloc to huge_sizes[op], else reallocarray with huge_arr[op - NHUGE]),
 * then the proof that the block is still the caller's. */
static void huge_realloc_one(const char *name, size_t size, size_t op)
{
	unsigned char *b = malloc(size);
	REQUIRE(b);
	size_t u = malloc_usable_size(b);
	REQUIRE(u >= size);
	sp_stamp(b, u, 41);
	char call[96];
	errno = 0;
	void *q;
	if (op < NHUGE) {
		snprintf(call, sizeof call, "realloc(b, %#zx)", huge_sizes[op]);
		q = realloc(b, huge_sizes[op]);
	} else {
		snprintf(call, sizeof call, "reallocarray(b, %#zx, %#zx)",
			 huge_arr[op - NHUGE][0], huge_arr[op - NHUGE][1]);
		q = reallocarray(b, huge_arr[op - NHUGE][0], huge_arr[op - NHUGE][1]);
	}
	int e = errno;
	size_t u2 = malloc_usable_size(b);
	int kept = sp_ok(b, u, 41);
	if (q || e != ENOMEM || u2 != u || !kept)
		fprintf(stderr, "%s block (%zu bytes): %s = %p, errno %d, usable %zu -> %zu, "
			"contents %s\n", name, size, call, q, e, u, u2, kept ? "kept" : "LOST");
	CHECK(q == NULL);
	CHECK_EQ(e, ENOMEM);
	CHECK_EQ(u2, u);
	CHECK(kept);
	/* Still ours: blocks of the same size allocated now do not overlap
	 * it, and writing them all leaves it intact. */
	unsigned char *o[3];
	for (int k = 0; k < 3; k++) {
		o[k] = malloc(size);
		REQUIRE(o[k]);
		size_t uo = malloc_usable_size(o[k]);
		int apart = o[k] + uo <= b || b + u <= o[k];
		if (!apart)
			fprintf(stderr, "%s block (%zu bytes): after %s, %p was handed out "
				"again as %p\n", name, size, call, (void *)b, (void *)o[k]);
		CHECK(apart);
		sp_stamp(o[k], uo, 50 + (uint64_t)k);
	}
	CHECK(sp_ok(b, u, 41));
	for (int k = 0; k < 3; k++) {
		CHECK(sp_ok(o[k], malloc_usable_size(o[k]), 50 + (uint64_t)k));
		free(o[k]);
	}
	/* Freed once, without a double-free abort (which fails the child). */
	free(b);
}

static void test_realloc_huge_every_range(void)
{
	static const struct {
		const char *name;
		size_t size;
	} ranges[] = {
		{"small class", 64},
		{"large class", 100 * KiB},
		{"page run", 200 * KiB},
		{"pageblock run", 4 * MiB},
		{"dedicated mapping", GiB + 2 * MiB},
	};
	/* Each (range, request) in its own child: a crash fails that pair
	 * alone, by name, and the others still run. */
	for (size_t r = 0; r < sizeof ranges / sizeof *ranges; r++) {
		int bad = 0;
		for (size_t op = 0; op < NHUGE + NHUGE_ARR; op++) {
			fflush(NULL);
			pid_t pid = fork();
			REQUIRE(pid >= 0);
			if (pid == 0) {
				alarm(60);
				int f0 = check_failures;
				huge_realloc_one(ranges[r].name, ranges[r].size, op);
				fflush(NULL);
				_exit(check_failures != f0);
			}
			int st = 0;
			REQUIRE(waitpid(pid, &st, 0) == pid);
			if (WIFSIGNALED(st))
				fprintf(stderr, "  %s block, request %zu: the child died of signal %d\n",
					ranges[r].name, op, WTERMSIG(st));
			bad += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		}
		if (bad)
			fprintf(stderr, "huge realloc/reallocarray on a %s block (%zu bytes): "
				"%d of %zu requests failed\n", ranges[r].name, ranges[r].size,
				bad, NHUGE + NHUGE_ARR);
		CHECK_EQ(bad, 0);
	}
}

/* The allocating calls with sizes (and size products) no allocator can
 * give: NULL and ENOMEM, never a block; posix_memalign returns ENOMEM and
 * touches neither *out nor errno. Alignments 4 KiB, 2 MiB and 1 GiB with
 * sizes close enough to SIZE_MAX that any rounding up to the alignment
 * wraps. */
static void test_huge_family(void)
{
	static const size_t cal[][2] = {
		{SIZE_MAX / 2, 3}, {3, SIZE_MAX / 2}, {(size_t)1 << 33, (size_t)1 << 33},
		{SIZE_MAX, SIZE_MAX}, {SIZE_MAX, 2}, {2, SIZE_MAX / 2 + 1},
		{1, SIZE_MAX}, {SIZE_MAX, 1}, {SIZE_MAX - 100, 1}, {1, SIZE_MAX - 4096},
		{(size_t)1 << 31, (size_t)1 << 31}, {65537, ((size_t)1 << 48) / 65536}};
	for (size_t i = 0; i < sizeof cal / sizeof *cal; i++) {
		errno = 0;
		void *p = calloc(cal[i][0], cal[i][1]);
		int e = errno;
		if (p || e != ENOMEM)
			fprintf(stderr, "calloc(%#zx, %#zx) = %p, errno %d\n", cal[i][0],
				cal[i][1], p, e);
		CHECK(p == NULL);
		CHECK_EQ(e, ENOMEM);
	}
	static const size_t aligns[] = {16, 64, 4096, 2 * MiB, GiB};
	for (size_t a = 0; a < sizeof aligns / sizeof *aligns; a++) {
		size_t al = aligns[a];
		size_t sizes[NHUGE + 3];
		memcpy(sizes, huge_sizes, sizeof huge_sizes);
		sizes[NHUGE] = SIZE_MAX - al + 1;   /* rounds up to exactly 2^64 */
		sizes[NHUGE + 1] = SIZE_MAX - al;
		sizes[NHUGE + 2] = SIZE_MAX - 2 * al + 2;
		for (size_t i = 0; i < NHUGE + 3; i++) {
			size_t s = sizes[i];
			errno = 0;
			void *p = memalign(al, s);
			int e1 = errno;
			errno = 0;
			void *q = aligned_alloc(al, s);
			int e2 = errno;
			void *out = (void *)0x1234;
			errno = 777;
			int rc = posix_memalign(&out, al, s);
			int e3 = errno;
			if (p || e1 != ENOMEM || q || e2 != ENOMEM || rc != ENOMEM ||
			    out != (void *)0x1234 || e3 != 777)
				fprintf(stderr, "align %#zx size %#zx: memalign %p errno %d, "
					"aligned_alloc %p errno %d, posix_memalign %d out %p "
					"errno %d\n", al, s, p, e1, q, e2, rc, out, e3);
			CHECK(p == NULL);
			CHECK_EQ(e1, ENOMEM);
			CHECK(q == NULL);
			CHECK_EQ(e2, ENOMEM);
			CHECK_EQ(rc, ENOMEM);
			CHECK(out == (void *)0x1234);
			CHECK_EQ(e3, 777);
		}
	}
	/* Alignments no address space holds, with a small size: refused
	 * (EINVAL like glibc above SIZE_MAX / 2, or ENOMEM), never a block. */
	static const size_t huge_al[] = {(size_t)1 << 63, (size_t)1 << 62, (size_t)1 << 50};
	for (size_t a = 0; a < sizeof huge_al / sizeof *huge_al; a++) {
		errno = 0;
		void *p = memalign(huge_al[a], 64);
		CHECK(p == NULL && (errno == EINVAL || errno == ENOMEM));
		void *out = (void *)0x1234;
		int rc = posix_memalign(&out, huge_al[a], 64);
		CHECK((rc == EINVAL || rc == ENOMEM) && out == (void *)0x1234);
	}
	/* valloc and pvalloc near SIZE_MAX: pvalloc's rounding to a page
	 * wraps for the top 4095 sizes. */
	static const size_t vs[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4094, SIZE_MAX - 4095,
				    SIZE_MAX - 4096, SIZE_MAX - 8191, SIZE_MAX / 2 + 1,
				    SIZE_MAX / 2, (size_t)1 << 62, (size_t)1 << 48};
	for (size_t i = 0; i < sizeof vs / sizeof *vs; i++) {
		errno = 0;
		void *p = valloc(vs[i]);
		int e1 = errno;
		errno = 0;
		void *q = pvalloc(vs[i]);
		int e2 = errno;
		if (p || e1 != ENOMEM || q || e2 != ENOMEM)
			fprintf(stderr, "size %#zx: valloc %p errno %d, pvalloc %p errno %d\n",
				vs[i], p, e1, q, e2);
		CHECK(p == NULL);
		CHECK_EQ(e1, ENOMEM);
		CHECK(q == NULL);
		CHECK_EQ(e2, ENOMEM);
	}
}

static void check_aligned_block(void *p, size_t align, size_t size)
{
	CHECK(p != NULL);
	if (!p)
		return;
	CHECK(aligned(p, align));
	CHECK(malloc_usable_size(p) >= size);
	unsigned char *c = p;
	c[size - 1] = 0x22;
	c[0] = 0x11;
	CHECK(c[0] == 0x11 && c[size - 1] == (size == 1 ? 0x11 : 0x22));
}

/* Every power-of-two alignment from 1 byte to 1 GiB, through memalign,
 * aligned_alloc, posix_memalign and __libc_memalign, small and large. */
static void test_alignments(void)
{
	for (unsigned k = 0; k <= 30; k++) {
		size_t a = (size_t)1 << k;
		size_t sizes[] = {1, 24, a, a + 1, 3 * a};
		for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
			size_t s = sizes[i];
			if (s > 3 * GiB / 2 && k == 30 && i == 4)
				continue; /* a 3 GiB mapping adds nothing */
			uint64_t before = mt_counter("malloc_alloc");
			void *p = memalign(a, s);
			check_aligned_block(p, a, s);
			void *q = aligned_alloc(a, s);
			check_aligned_block(q, a, s);
			void *r = NULL;
			int rc = posix_memalign(&r, a < sizeof(void *) ? sizeof(void *) : a, s);
			CHECK_EQ(rc, 0);
			check_aligned_block(r, a, s);
			void *t = __libc_memalign(a, s);
			check_aligned_block(t, a, s);
			CHECK(mt_counter("malloc_alloc") >= before + 4);
			free(p);
			free(q);
			free(r);
			free(t);
		}
	}
	/* Many live aligned blocks at once stay distinct. */
	void *many[64];
	for (int i = 0; i < 64; i++) {
		many[i] = memalign(256, 200);
		CHECK(many[i] && aligned(many[i], 256));
		if (many[i])
			memset(many[i], i, 200);
	}
	for (int i = 0; i < 64; i++) {
		unsigned char *c = many[i];
		CHECK(c && c[0] == i && c[199] == i);
		free(c);
	}
}

static void test_bad_alignments(void)
{
	size_t bad[] = {3, 5, 6, 24, 48, 100, 4097, ((size_t)1 << 20) + 16};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		errno = 0;
		CHECK(memalign(bad[i], 64) == NULL && errno == EINVAL);
		errno = 0;
		CHECK(aligned_alloc(bad[i], 64) == NULL && errno == EINVAL);
		/* posix_memalign returns the error and leaves errno and *out. */
		void *out = (void *)0x1234;
		errno = 777;
		CHECK_EQ(posix_memalign(&out, bad[i], 64), EINVAL);
		CHECK(errno == 777 && out == (void *)0x1234);
	}
	/* posix_memalign: 0, and powers of two below sizeof(void *). */
	size_t small[] = {0, 1, 2, 4};
	for (size_t i = 0; i < sizeof small / sizeof *small; i++) {
		void *out = (void *)0x1234;
		errno = 777;
		CHECK_EQ(posix_memalign(&out, small[i], 64), EINVAL);
		CHECK(errno == 777 && out == (void *)0x1234);
	}
	/* Success leaves errno alone too. */
	void *out = NULL;
	errno = 777;
	CHECK_EQ(posix_memalign(&out, 64, 64), 0);
	CHECK(errno == 777 && out && aligned(out, 64));
	free(out);
	/* Too big: ENOMEM, returned, errno untouched. */
	out = (void *)0x1234;
	errno = 777;
	CHECK_EQ(posix_memalign(&out, 64, SIZE_MAX), ENOMEM);
	CHECK(errno == 777 && out == (void *)0x1234);
	CHECK_EQ(posix_memalign(&out, 4096, SIZE_MAX / 2), ENOMEM);
	/* Zero sizes: a freeable pointer. */
	void *z = memalign(64, 0), *y = aligned_alloc(4096, 0);
	CHECK(z && aligned(z, 64) && y && aligned(y, 4096));
	free(z);
	free(y);
	CHECK_EQ(posix_memalign(&out, 64, 0), 0);
	free(out);
}

static void test_valloc(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t sizes[] = {0, 1, 4095, 4096, 4097, 100000, 3 * MiB};
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		size_t s = sizes[i];
		unsigned char *v = valloc(s);
		CHECK(v && aligned(v, (size_t)pg));
		if (v && s) {
			v[0] = 1;
			v[s - 1] = 1;
		}
		CHECK(v && malloc_usable_size(v) >= s);
		free(v);
		unsigned char *pv = pvalloc(s);
		size_t round = s ? (s + (size_t)pg - 1) & ~((size_t)pg - 1) : (size_t)pg;
		CHECK(pv && aligned(pv, (size_t)pg));
		CHECK(pv && malloc_usable_size(pv) >= round);
		if (pv)
			memset(pv, 7, round); /* the whole rounded size is ours */
		free(pv);
	}
	errno = 0;
	CHECK(valloc(SIZE_MAX) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(pvalloc(SIZE_MAX) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(pvalloc(SIZE_MAX - 4095) == NULL && errno == ENOMEM);
}

static void test_huge(void)
{
	size_t huge[] = {SIZE_MAX, SIZE_MAX - 4096, SIZE_MAX / 2, SIZE_MAX / 2 + 1,
			 (size_t)1 << 62, (size_t)1 << 48};
	for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
		errno = 0;
		CHECK(malloc(huge[i]) == NULL && errno == ENOMEM);
		errno = 0;
		CHECK(calloc(1, huge[i]) == NULL && errno == ENOMEM);
		errno = 0;
		CHECK(memalign(64, huge[i]) == NULL && errno == ENOMEM);
		errno = 0;
		CHECK(aligned_alloc(1 << 21, huge[i]) == NULL && errno == ENOMEM);
		errno = 0;
		CHECK(realloc(NULL, huge[i]) == NULL && errno == ENOMEM);
	}
	/* A large (> 1 GiB) allocation: a dedicated mapping, both ends
	 * writable, freed back. */
	uint64_t maps = mt_counter("large_map");
	unsigned char *p = malloc(GiB + GiB / 2);
	CHECK(p != NULL);
	if (p) {
		p[0] = 1;
		p[GiB + GiB / 2 - 1] = 2;
		CHECK(malloc_usable_size(p) >= GiB + GiB / 2);
		free(p);
	}
	CHECK(mt_counter("large_map") == maps + 1);
	CHECK(mt_counter("large_unmap") >= 1);
}

static void test_usable_and_sized(void)
{
	CHECK_EQ(malloc_usable_size(NULL), 0);
	for (size_t s = 1; s < 300 * KiB; s = s * 3 / 2 + 1) {
		void *p = malloc(s);
		CHECK(p && malloc_usable_size(p) >= s);
		uint64_t f0 = mt_counter("malloc_free");
		if (s & 1)
			free_sized(p, s);
		else
			free_aligned_sized(p, 16, s);
		CHECK(mt_counter("malloc_free") == f0 + 1);
	}
	void *a = aligned_alloc(256, 1000);
	REQUIRE(a);
	uint64_t f0 = mt_counter("malloc_free");
	free_aligned_sized(a, 256, 1000);
	CHECK(mt_counter("malloc_free") == f0 + 1);
	/* glibc's own names bind to us too. */
	uint64_t a0 = mt_counter("malloc_alloc");
	void *g = __libc_malloc(77);
	CHECK(g && mt_counter("malloc_alloc") == a0 + 1);
	__libc_free(g);
}

static void test_mallopt_trim_info(void)
{
	CHECK_EQ(mallopt(M_MMAP_THRESHOLD, 1 << 20), 1);
	CHECK_EQ(mallopt(M_TRIM_THRESHOLD, 1 << 20), 1);
	CHECK_EQ(mallopt(M_ARENA_MAX, 2), 1);
	CHECK_EQ(mallopt(12345, 1), 0);

	struct mallinfo2 m0 = mallinfo2();
	size_t n = 40 * MiB;
	unsigned char *big = malloc(n);
	REQUIRE(big);
	memset(big, 1, n);
	struct mallinfo2 m1 = mallinfo2();
	CHECK(m1.uordblks >= m0.uordblks + n);
	CHECK(m1.arena + m1.hblkhd >= n);
	CHECK(m1.uordblks <= m1.arena + m1.hblkhd);
	free(big);
	struct mallinfo2 m2 = mallinfo2();
	CHECK(m2.uordblks + n <= m1.uordblks);
	/* Old mallinfo agrees within int range. */
	struct mallinfo old = mallinfo();
	CHECK(old.uordblks > 0 && (size_t)old.uordblks <= m2.uordblks + 1 * MiB);

	/* The freed 40 MiB sits in free pageblocks (decay delay): trim gives
	 * them back now, and says so. */
	uint64_t rel = mt_counter("pb_release");
	size_t rss0 = mt_rss();
	CHECK_EQ(malloc_trim(0), 1);
	CHECK(mt_counter("pb_release") >= rel + 16);
	size_t rss1 = mt_rss();
	CHECK(rss1 + 16 * MiB <= rss0);
	printf("malloc_trim: rss %zu -> %zu KiB\n", rss0 / 1024, rss1 / 1024);
}

static void *thread_class_default(void *arg)
{
	(void)arg;
	return (void *)(uintptr_t)spb_thread_class();
}

static int pageblock_sets_disjoint(void **a, int na, void **b, int nb)
{
	for (int i = 0; i < na; i++)
		for (int j = 0; j < nb; j++)
			if (((uintptr_t)a[i] >> 21) == ((uintptr_t)b[j] >> 21))
				return 0;
	return 1;
}

static void test_classes(void)
{
	enum { N = 64 };
	void *un[N], *re[N], *th[N];
	CHECK(spb_thread_class() == SPB_UNMOVABLE);
	for (int i = 0; i < N; i++) {
		size_t s = i < N / 2 ? 48 : 200 * KiB;
		un[i] = malloc(s);
		re[i] = spb_malloc_class(s, SPB_RECLAIMABLE, 0);
		CHECK(un[i] && re[i]);
		memset(re[i], 0xee, s);
	}
	/* No pageblock holds two classes. */
	CHECK(pageblock_sets_disjoint(un, N, re, N));
	/* SPB_F_ZERO reads zero even over a dirty recycled block. */
	for (int i = 0; i < N; i++)
		free(re[i]);
	for (int i = 0; i < N; i++) {
		size_t s = i < N / 2 ? 48 : 200 * KiB;
		unsigned char *z = spb_malloc_class(s, SPB_RECLAIMABLE, SPB_F_ZERO);
		CHECK(z != NULL);
		size_t bad = 0;
		for (size_t k = 0; z && k < s; k++)
			bad += z[k] != 0;
		CHECK_EQ(bad, 0);
		re[i] = z;
	}
	unsigned char *u = spb_malloc_class(1000, SPB_UNMOVABLE, SPB_F_ZERO);
	CHECK(u && u[0] == 0 && u[999] == 0);
	free(u);
	void *opt = spb_malloc_class(64, SPB_RECLAIMABLE, SPB_F_OPTIONAL);
	CHECK(opt != NULL || errno == EAGAIN);
	free(opt);
	/* MOVABLE needs handles: EINVAL (SECRET: tests/api/test_secret.c). */
	spb_class_t badc[] = {SPB_MOVABLE, SPB_NR_CLASSES, (spb_class_t)99};
	for (size_t i = 0; i < sizeof badc / sizeof *badc; i++) {
		errno = 0;
		CHECK(spb_malloc_class(64, badc[i], 0) == NULL && errno == EINVAL);
		errno = 0;
		CHECK_EQ(spb_set_thread_class(badc[i]), -1);
		CHECK(errno == EINVAL);
	}
	CHECK(spb_thread_class() == SPB_UNMOVABLE);
	errno = 0;
	CHECK_EQ(spb_set_thread_class(SPB_SECRET), -1); /* not a default class */
	CHECK(errno == EINVAL);

	/* The thread default moves plain malloc to the reclaimable class. */
	CHECK_EQ(spb_set_thread_class(SPB_RECLAIMABLE), 0);
	CHECK(spb_thread_class() == SPB_RECLAIMABLE);
	for (int i = 0; i < N; i++) {
		th[i] = malloc(i < N / 2 ? 48 : 200 * KiB);
		CHECK(th[i] != NULL);
	}
	CHECK(pageblock_sets_disjoint(un, N, th, N));
	/* Another thread starts on the default. */
	pthread_t t;
	void *ret = NULL;
	REQUIRE(pthread_create(&t, NULL, thread_class_default, NULL) == 0);
	pthread_join(t, &ret);
	CHECK((spb_class_t)(uintptr_t)ret == SPB_UNMOVABLE);
	CHECK_EQ(spb_set_thread_class(SPB_UNMOVABLE), 0);
	CHECK(spb_thread_class() == SPB_UNMOVABLE);
	void *back = malloc(48);
	CHECK(back != NULL);
	void *one[1] = {back};
	CHECK(pageblock_sets_disjoint(one, 1, th, N));
	free(back);
	for (int i = 0; i < N; i++) {
		free(un[i]);
		free(re[i]);
		free(th[i]);
	}
}

int main(void)
{
	double t0 = mt_now();
	test_proof();
	test_malloc_sizes();
	test_calloc();
	test_calloc_xthread();
	test_realloc_chain();
	test_realloc_edges();
	test_realloc_in_place_runs();
	test_realloc_inplace_identity();
	test_realloc_huge_every_range();
	test_huge_family();
	test_alignments();
	test_bad_alignments();
	test_valloc();
	test_huge();
	test_usable_and_sized();
	test_classes();
	test_mallopt_trim_info();
	printf("served %" PRIu64 " allocations in %.2f s\n", mt_counter("malloc_alloc"),
	       mt_now() - t0);
	return check_done("test_malloc_api");
}
