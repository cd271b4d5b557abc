/*
 * test_cxx.cpp — C++ on spbmalloc: new/delete, arrays, sized delete,
 * aligned new/delete (std::align_val_t 64 .. 4096, scalar and array,
 * sized and unsized), nothrow new, and std::vector / std::map /
 * std::string / std::shared_ptr churn under 4 threads with results checked.
 *
 * Built twice by CMake: linked normally against libspbmalloc.so, and
 * linked against nothing of ours and run with LD_PRELOAD. Either way the
 * proof is the same: spb_counter_get is looked up with dlsym in the
 * running process (it exists only if libspbmalloc is loaded) and its
 * malloc_alloc / malloc_free counters must grow by at least the number of
 * news and deletes the test did.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <atomic>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

static int failures, checks;
#define CHECK(c)                                                                       \
	do {                                                                           \
		checks++;                                                              \
		if (!(c)) {                                                            \
			failures++;                                                    \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); \
		}                                                                      \
	} while (0)

typedef uint64_t (*counter_fn)(const char *);
static counter_fn counter;

static uint64_t ctr(const char *name)
{
	return counter(name);
}

struct Obj {
	uint64_t v[5];
	explicit Obj(uint64_t x) { for (auto &e : v) e = x; }
	bool ok(uint64_t x) const { for (auto e : v) if (e != x) return false; return true; }
};

template <size_t A> struct alignas(A) Over {
	unsigned char b[A + 8];
};

template <size_t A> static void aligned_news()
{
	for (int i = 0; i < 50; i++) {
		auto *p = new Over<A>;
		CHECK(((uintptr_t)p & (A - 1)) == 0);
		p->b[0] = 1;
		p->b[A + 7] = 2;
		delete p; /* sized aligned delete */
		auto *arr = new Over<A>[3];
		CHECK(((uintptr_t)arr & (A - 1)) == 0);
		arr[2].b[A + 7] = 3;
		delete[] arr;
		void *raw = ::operator new(A * 3 + 1, std::align_val_t(A));
		CHECK(((uintptr_t)raw & (A - 1)) == 0);
		static_cast<unsigned char *>(raw)[A * 3] = 4;
		if (i & 1)
			::operator delete(raw, std::align_val_t(A));
		else
			::operator delete(raw, A * 3 + 1, std::align_val_t(A));
		void *nt = ::operator new[](A, std::align_val_t(A), std::nothrow);
		CHECK(nt && ((uintptr_t)nt & (A - 1)) == 0);
		::operator delete[](nt, std::align_val_t(A));
	}
}

static void test_basic()
{
	uint64_t a0 = ctr("malloc_alloc"), f0 = ctr("malloc_free");
	std::vector<Obj *> objs;
	for (int i = 0; i < 1000; i++)
		objs.push_back(new Obj((uint64_t)i));
	for (int i = 0; i < 1000; i++) {
		CHECK(objs[i]->ok((uint64_t)i));
		delete objs[i]; /* sized delete (-fsized-deallocation) */
	}
	int *arr = new int[10000]();
	for (int i = 0; i < 10000; i++)
		CHECK(arr[i] == 0);
	delete[] arr;
	void *s = ::operator new(1000);
	::operator delete(s, 1000);
	void *big = ::operator new(5u << 20);
	::operator delete(big);
	CHECK(ctr("malloc_alloc") >= a0 + 1003);
	CHECK(ctr("malloc_free") >= f0 + 1003);

	/* nothrow new of an impossible size is NULL; plain new throws. */
	void *nt = ::operator new(SIZE_MAX / 2, std::nothrow);
	CHECK(nt == nullptr);
	bool threw = false;
	try {
		void *x = ::operator new(SIZE_MAX / 2);
		::operator delete(x);
	} catch (const std::bad_alloc &) {
		threw = true;
	}
	CHECK(threw);

	uint64_t a1 = ctr("malloc_alloc");
	aligned_news<64>();
	aligned_news<128>();
	aligned_news<256>();
	aligned_news<512>();
	aligned_news<1024>();
	aligned_news<2048>();
	aligned_news<4096>();
	CHECK(ctr("malloc_alloc") >= a1 + 7 * 50 * 4);
}

/* Containers under threads: each thread builds, mutates and checks its
 * own containers and hands strings to its neighbour (freed there). */
static std::atomic<int> thread_failures;

struct Mailbox {
	std::atomic<std::string *> slot{nullptr};
};
static Mailbox boxes[4];

static void worker(int id)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(id + 1);
	auto rnd = [&]() {
		seed ^= seed >> 12; seed ^= seed << 25; seed ^= seed >> 27;
		return seed * 0x2545f4914f6cdd1dull;
	};
	for (int round = 0; round < 30; round++) {
		std::map<int, std::string> m;
		std::vector<std::vector<int>> vv;
		for (int i = 0; i < 2000; i++) {
			int k = (int)(rnd() % 5000);
			m[k] = std::string((size_t)(k % 300), (char)('a' + k % 26));
			if (i % 10 == 0)
				vv.emplace_back((size_t)(rnd() % 2000), i);
		}
		for (auto &kv : m)
			if (kv.second.size() != (size_t)(kv.first % 300) ||
			    (!kv.second.empty() && kv.second[0] != (char)('a' + kv.first % 26)))
				thread_failures++;
		for (size_t i = 0; i < vv.size(); i++)
			for (int x : vv[i])
				if (x != (int)(i * 10)) {
					thread_failures++;
					break;
				}
		auto sp = std::make_shared<std::vector<std::string>>(100, std::string(40, 'x'));
		if ((*sp)[99] != std::string(40, 'x'))
			thread_failures++;
		/* Cross-thread: give a string to the next thread, take ours. */
		auto *gift = new std::string(1000 + (size_t)round, (char)('A' + id));
		std::string *old = boxes[(id + 1) % 4].slot.exchange(gift);
		if (old) {
			if (old->size() < 1000)
				thread_failures++;
			delete old;
		}
		std::string *mine = boxes[id].slot.exchange(nullptr);
		if (mine) {
			if (mine->empty() || (*mine)[0] != (char)('A' + (id + 3) % 4))
				thread_failures++;
			delete mine;
		}
	}
}

static void test_threads()
{
	uint64_t a0 = ctr("malloc_alloc"), x0 = ctr("malloc_xthread_free");
	std::vector<std::thread> ts;
	for (int i = 0; i < 4; i++)
		ts.emplace_back(worker, i);
	for (auto &t : ts)
		t.join();
	for (auto &b : boxes)
		delete b.slot.exchange(nullptr);
	CHECK(thread_failures.load() == 0);
	CHECK(ctr("malloc_alloc") >= a0 + 4 * 30 * 2000);
	CHECK(ctr("malloc_xthread_free") > x0);
}

/* Bad input: a sized delete whose size cannot be the block's (the scalar
 * delete of new[] memory). Must end the process with one line; the test
 * registration checks the line (tests/cxx/CMakeLists.txt). */
static int mismatch(const char *how)
{
	void *volatile p;
	if (how[0] == 'a') { /* delete of new[] */
		p = ::operator new[](100 * sizeof(int));
		::operator delete(p, sizeof(int));
	} else { /* delete[] of new, through a bigger type */
		p = ::operator new(16);
		::operator delete[](p, 4096);
	}
	fprintf(stderr, "survived a mismatched sized delete\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		return mismatch(argv[1]);
	counter = (counter_fn)dlsym(RTLD_DEFAULT, "spb_counter_get");
	if (!counter) {
		fprintf(stderr, "spbmalloc is not loaded in this process (no spb_counter_get)\n");
		return 1;
	}
	test_basic();
	test_threads();
	printf("test_cxx: %d checks, %d failed; malloc_alloc %llu\n", checks, failures,
	       (unsigned long long)ctr("malloc_alloc"));
	return failures ? 1 : 0;
}
