/*
 * test_handles.c — movable objects behind handles, as a program sees them
 * (the spb_h* calls and the read side; the mover is not there yet).
 *
 * Allocation, contents, usable size, SPB_F_ZERO, resize keeping the handle
 * and the data, pins (nesting, realloc refused with EBUSY while pinned),
 * handles recycled with a new generation so the old one is stale, read
 * sections nesting, threads
 * allocating and freeing handles across each other, and a stale or foreign
 * handle in every call ending the process with one line naming it.
 */
#include <pthread.h>
#include <stdbool.h>

#include "mtest.h"

static void stamp(char *p, size_t n, unsigned v)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (char)(v + i * 7);
}

static bool stamped(const char *p, size_t n, unsigned v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (char)(v + i * 7))
			return false;
	return true;
}

static spb_handle_t victim;

/* spb_hsize on another thread (it pins for its look) while spb_hrealloc
 * moves the object: EBUSY or done, never a death. */
static spb_handle_t sized;
static int sizer_stop;
static void *sizer(void *a)
{
	(void)a;
	while (!__atomic_load_n(&sizer_stop, __ATOMIC_ACQUIRE))
		if (spb_hsize(sized) < 100)
			abort();
	return NULL;
}

static void do_hget(void *a) { (void)a; spb_read_lock(); (void)spb_hget(victim); }
static void do_hget_call(void *a) { (void)a; spb_read_lock(); (void)(spb_hget)(victim); }
static void do_hfree(void *a) { (void)a; spb_hfree(victim); }
static void do_hsize(void *a) { (void)a; (void)spb_hsize(victim); }
static void do_hpin(void *a) { (void)a; (void)spb_hpin(victim); }
static void do_hunpin(void *a) { (void)a; spb_hunpin(victim); }
static void do_hrealloc(void *a) { (void)a; (void)spb_hrealloc(victim, 100); }
static void do_unlock(void *a) { (void)a; spb_read_unlock(); }
static void do_free_pinned(void *a)
{
	(void)a;
	spb_handle_t h = spb_halloc(32, 0);
	spb_hpin(h);
	spb_hfree(h);
}

struct death {
	const char *name;
	void (*fn)(void *);
	const char *want;
};

static void expect_death(const struct death *d)
{
	char out[512];
	int st = check_death(d->fn, NULL, out, sizeof out);
	bool ok = st > 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(out, d->want);
	if (!ok)
		fprintf(stderr, "death %s: status %d, stderr: %s\n", d->name, st, out);
	CHECK(ok);
	/* One line, naming the handle. */
	char *nl = strchr(out, '\n');
	CHECK(nl && nl[1] == '\0');
}

#define NT 4
#define PER 20000
static spb_handle_t shared[NT][256];

static void *worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	unsigned seed = id * 2654435761u + 1;
	spb_handle_t mine[256] = {0};
	for (int k = 0; k < PER; k++) {
		seed = seed * 1103515245u + 12345u;
		unsigned i = (seed >> 8) & 255;
		spb_read_lock();
		if (mine[i]) {
			CHECK(stamped(spb_hget(mine[i]), 24, i + id * 1000));
			spb_read_unlock();
			if (seed & 0x10000) {
				spb_hfree(mine[i]);
			} else {
				/* Hand it to the next thread, which frees it. */
				spb_handle_t old = __atomic_exchange_n(&shared[(id + 1) % NT][i],
								       mine[i], __ATOMIC_ACQ_REL);
				if (old)
					spb_hfree(old);
			}
			mine[i] = 0;
		} else {
			spb_read_unlock();
			size_t sz = 24 + (seed >> 20) % 3000;
			mine[i] = spb_halloc(sz, 0);
			CHECK(mine[i] != 0);
			spb_read_lock();
			stamp(spb_hget(mine[i]), 24, i + id * 1000);
			spb_read_unlock();
		}
	}
	for (int i = 0; i < 256; i++)
		spb_hfree(mine[i]);
	return NULL;
}

int main(void)
{
	uint64_t a0 = mt_counter("handle_alloc"), f0 = mt_counter("handle_free");

	/* ---- basics ---- */
	spb_handle_t h = spb_halloc(100, 0);
	CHECK(h != 0);
	CHECK(spb_hsize(h) >= 100);
	spb_read_lock();
	spb_read_lock(); /* nests */
	char *p = spb_hget(h);
	CHECK(p && ((uintptr_t)p & 15) == 0);
	stamp(p, 100, 1);
	spb_read_unlock();
	CHECK(spb_hget(h) == p);
	spb_read_unlock();

	/* ---- the handle names its object's place: spb_hget reads the
	 * header there and needs no table, until the object moves ---- */
	const char *arena_env = getenv("SPBMALLOC_HANDLE_ARENA");
	bool arena = !(arena_env && arena_env[0] == '0');
	CHECK_EQ(mt_counter("spb_arena") > 0, arena);
	CHECK_EQ((h & SPB_H_PLACE_MASK_PUBLIC) != 0, arena);
	uint64_t slow0 = mt_counter("handle_get_slow");
	spb_read_lock();
	for (int i = 0; i < 1000; i++)
		CHECK(spb_hget(h) == p);
	spb_read_unlock();
	CHECK_EQ(mt_counter("handle_get_slow") - slow0, arena ? 0 : 1000);

	spb_handle_t z = spb_halloc(5000, SPB_F_ZERO);
	CHECK(z != 0 && z != h);
	spb_read_lock();
	char *zp = spb_hget(z);
	bool zero = true;
	for (int i = 0; i < 5000; i++)
		zero = zero && zp[i] == 0;
	CHECK(zero);
	spb_read_unlock();

	errno = 0;
	CHECK(spb_halloc(SIZE_MAX - 8, 0) == 0 && errno == ENOMEM);
	errno = 0;
	CHECK(spb_halloc(16, 0x100) == 0 && errno == EINVAL);
	spb_hfree(0); /* nothing */

	/* ---- resize keeps the handle and the data ---- */
	CHECK_EQ(spb_hrealloc(h, 20000), 0);
	CHECK(spb_hsize(h) >= 20000);
	slow0 = mt_counter("handle_get_slow");
	spb_read_lock();
	CHECK(stamped(spb_hget(h), 100, 1));
	CHECK(spb_hget(h) != p); /* moved: its old place answers no more */
	spb_read_unlock();
	CHECK_EQ(mt_counter("handle_get_slow") - slow0, 2);
	CHECK_EQ(spb_hrealloc(h, 50), 0);
	CHECK(spb_hsize(h) >= 50 && spb_hsize(h) < 20000);
	spb_read_lock();
	CHECK(stamped(spb_hget(h), 50, 1));
	spb_read_unlock();
	errno = 0;
	CHECK_EQ(spb_hrealloc(h, SIZE_MAX - 4), -1);
	CHECK_EQ(errno, ENOMEM);

	/* ---- resize racing another thread's spb_hsize ---- */
	sized = spb_halloc(100, 0);
	REQUIRE(sized);
	spb_read_lock();
	stamp(spb_hget(sized), 100, 9);
	spb_read_unlock();
	pthread_t st;
	REQUIRE(pthread_create(&st, NULL, sizer, NULL) == 0);
	int done = 0, busy = 0;
	for (int i = 0; i < 4000; i++) {
		errno = 0;
		int r = spb_hrealloc(sized, i & 1 ? 200 : 300000);
		done += r == 0;
		busy += r == -1 && errno == EBUSY;
	}
	__atomic_store_n(&sizer_stop, 1, __ATOMIC_RELEASE);
	pthread_join(st, NULL);
	CHECK_EQ(done + busy, 4000);
	/* How many got through depends on the scheduler (under
	 * ThreadSanitizer on a loaded machine, none may): alone, it does. */
	errno = 0;
	CHECK_EQ(spb_hrealloc(sized, 300000), 0);
	CHECK_EQ(spb_hsize(sized) >= 300000, 1);
	spb_read_lock();
	CHECK(stamped(spb_hget(sized), 100, 9));
	spb_read_unlock();
	spb_hfree(sized);
	printf("test_handles: 4000 resizes against spb_hsize: %d done, %d EBUSY\n", done, busy);

	/* ---- pins ---- */
	char *pp = spb_hpin(h);
	CHECK(spb_hpin(h) == pp); /* nests */
	errno = 0;
	CHECK_EQ(spb_hrealloc(h, 4000), -1);
	CHECK_EQ(errno, EBUSY);
	spb_hunpin(h);
	spb_hunpin(h);
	CHECK_EQ(spb_hrealloc(h, 4000), 0);

	/* ---- recycled: a new generation, the old handle stale ---- */
	spb_hfree(h);
	spb_handle_t h2 = spb_halloc(64, 0);
	CHECK(h2 != h);
	/* A freed index waits behind 8,192 others before it is handed out
	 * again (its 6-bit generation would otherwise wrap after 64 reuses of
	 * one size at one place): h2 has another index (bits 37-62). */
	CHECK(h2 >> 37 != h >> 37);
	victim = h; /* freed: stale although its index is h2's */
	static const struct death deaths[] = {
		{"hget stale", do_hget, "spb_hget(): stale or invalid handle"},
		{"hget stale, out of line", do_hget_call, "spb_hget(): stale or invalid handle"},
		{"hfree stale (double free)", do_hfree, "spb_hfree(): stale or invalid handle"},
		{"hsize stale", do_hsize, "spb_hsize(): stale or invalid handle"},
		{"hpin stale", do_hpin, "spb_hpin(): stale or invalid handle"},
		{"hunpin stale", do_hunpin, "spb_hunpin(): stale or invalid handle"},
		{"hrealloc stale", do_hrealloc, "spb_hrealloc(): stale or invalid handle"},
	};
	for (size_t i = 0; i < sizeof deaths / sizeof deaths[0]; i++)
		expect_death(&deaths[i]);
	/* One size allocated and freed 19,200 times over (the same place
	 * again and again), then once more and kept: the first handle is
	 * still stale. Were its index handed out again at once, the 6-bit
	 * generation would have wrapped (19,200 = 64 x 300) and the last
	 * handle would equal the first. */
	spb_handle_t first = spb_halloc(1000, 0);
	spb_hfree(first);
	for (int i = 1; i < 19200; i++)
		spb_hfree(spb_halloc(1000, 0));
	spb_handle_t last = spb_halloc(1000, 0);
	CHECK(last != first);
	victim = first;
	expect_death(&deaths[0]);
	expect_death(&deaths[2]);
	spb_hfree(last);
	victim = ((spb_handle_t)123456789u << 37) | 0x7650; /* never allocated */
	expect_death(&deaths[0]);
	expect_death(&deaths[1]);
	victim = 1; /* index 1, generation 0, no place: never made */
	expect_death(&deaths[0]);
	victim = h2;
	static const struct death more[] = {
		{"unpin of an unpinned handle", do_hunpin, "spb_hunpin(): handle is not pinned"},
		{"free of a pinned handle", do_free_pinned, "spb_hfree(): handle is pinned"},
		{"unlock outside a section", do_unlock, "spb_read_unlock(): not inside a read section"},
	};
	for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
		expect_death(&more[i]);
	spb_hfree(h2);
	spb_hfree(z);

	/* ---- threads: allocate, read, free, hand over ---- */
	pthread_t t[NT];
	for (unsigned i = 0; i < NT; i++)
		REQUIRE(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) == 0);
	for (unsigned i = 0; i < NT; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < NT; i++)
		for (int j = 0; j < 256; j++)
			spb_hfree(shared[i][j]);
	uint64_t a = mt_counter("handle_alloc") - a0, f = mt_counter("handle_free") - f0;
	CHECK(a > 4);
	CHECK_EQ(a, f); /* every handle freed */
	CHECK(mt_counter("rcu_register") >= NT + 1);

	/* ---- the table's first 2 MiB goes to one huge page once full ---- */
	CHECK_EQ(mt_counter("handle_table_collapsed") + mt_counter("handle_table_4k"), 0);
	enum { MANY = 300000 }; /* > 256 Ki entries of 8 bytes */
	spb_handle_t *many = malloc(MANY * sizeof *many);
	REQUIRE(many);
	for (unsigned i = 0; i < MANY; i++) {
		many[i] = spb_halloc(16, 0);
		REQUIRE(many[i]);
		spb_read_lock();
		*(uint32_t *)spb_hget(many[i]) = i;
		spb_read_unlock();
	}
	/* Once, collapsed or refused (the kernel may have no huge page). */
	CHECK_EQ(mt_counter("handle_table_collapsed") + mt_counter("handle_table_4k"), 1);
	spb_read_lock();
	for (unsigned i = 0; i < MANY; i++)
		CHECK_EQ(*(uint32_t *)spb_hget(many[i]), i);
	spb_read_unlock();
	for (unsigned i = 0; i < MANY; i++)
		spb_hfree(many[i]);
	free(many);
	printf("test_handles: %" PRIu64 " handles allocated and freed; table collapsed: %" PRIu64 "\n",
	       a, mt_counter("handle_table_collapsed"));
	return check_done("test_handles");
}
