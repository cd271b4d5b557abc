/*
 * rcu.c — the read side of the handle layer, on liburcu's memb flavour
 * (read sections cost a thread-local counter; the writer side pays with
 * membarrier). A library cannot make application threads report quiescent
 * states, which is why memb and not qsbr. The read side is liburcu's
 * static inline API (_LGPL_SOURCE): no call into liburcu per section.
 *
 * A thread registers with liburcu at its first spb_read_lock (registration
 * takes liburcu's registry mutex and allocates nothing) and unregisters at
 * exit, from a pthread key destructor of its own, so a thread that never
 * allocated still leaves the registry. Nesting is counted here too, so a
 * section can be checked (spb__rcu_in_section) without asking liburcu.
 *
 * fork (liburcu's memb flavour has no fork handlers of its own): only the
 * forking thread lives on in the child, but every other registered thread
 * is still in liburcu's registry there, perhaps inside a read section that
 * will never end, and a grace period in the child would wait for it
 * forever. So the threads we registered are on a list of ours (a node in
 * each thread's TLS, whose memory the child still has), and the child
 * handler unregisters each one but itself, as that thread would have.
 * liburcu's own mutexes must not be held across fork either: prefork takes
 * ours around registration (reg_lock) and around synchronize_rcu
 * (sync_lock). The forking thread waits for a grace period in flight only
 * a bounded time (100 ms), and not at all from inside a read section: it
 * may be, or hold a lock of, the reader the grace period waits for. If a
 * mover is still in synchronize_rcu then, the child's grace periods are
 * unsafe and compaction is off in the child (spb__rcu_usable), counted in
 * rcu_fork_unsafe.
 */
#define _LGPL_SOURCE
#include <time.h>
#include <urcu/urcu-memb.h>

#include "handle.h"

#define SPB_EXPORT __attribute__((visibility("default")))

/* ThreadSanitizer does not see membarrier: tell it what a grace period
 * means. Every read section's end happens before the end of a grace
 * period (the edge TSan needs: a section's end releases, the end of
 * synchronize_rcu acquires). Sections that end after the grace period
 * began get the edge too, which TSan cannot tell apart; the stamp and
 * lost-write checks of tests/api/test_compact cover those. */
#if defined(__SANITIZE_THREAD__)
#define SPB_TSAN_GP 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SPB_TSAN_GP 1
#endif
#endif
#ifdef SPB_TSAN_GP
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static char tsan_gp;
#define TSAN_SECTION_END() __tsan_release(&tsan_gp)
#define TSAN_GP_END() __tsan_acquire(&tsan_gp)
#else
#define TSAN_SECTION_END() ((void)0)
#define TSAN_GP_END() ((void)0)
#endif

struct rcu_thread {
	struct urcu_reader *reader; /* this thread's liburcu TLS */
	struct rcu_thread *next, **pprev;
};

static pthread_key_t rcu_key;
static pthread_once_t rcu_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t sync_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rcu_thread *threads; /* under reg_lock */
/* Per forking thread: two threads may fork at once, and one whose bounded
 * wait for sync_lock failed must not tell the other's postfork that the
 * lock it holds is not held (it would never be unlocked). */
static SPB_TLS bool sync_held_for_fork;
static bool rcu_unusable;
static SPB_TLS int registered; /* 0 no, 1 yes */
static SPB_TLS unsigned nesting;
static SPB_TLS struct rcu_thread self;

static void unlink_thread(struct rcu_thread *t)
{
	*t->pprev = t->next;
	if (t->next)
		t->next->pprev = t->pprev;
	t->next = NULL;
	t->pprev = NULL;
}

static void rcu_thread_exit(void *arg)
{
	(void)arg;
	if (registered == 1) {
		if (nesting)
			spb__fatal("spb_read_lock(): thread exits inside a read section",
				   (void *)(uintptr_t)nesting);
		pthread_mutex_lock(&reg_lock);
		urcu_memb_unregister_thread();
		unlink_thread(&self);
		pthread_mutex_unlock(&reg_lock);
		registered = 0;
	}
}

/* The handle arena's grace period (arena.c: a released slot is made
 * unreadable only after one). False where none can be had: in a child
 * forked mid grace period, or from inside a read section. */
static bool arena_sync(void)
{
	if (!spb__rcu_usable() || spb__rcu_in_section())
		return false;
	spb__rcu_synchronize();
	return true;
}

static void rcu_key_init(void)
{
	pthread_key_create(&rcu_key, rcu_thread_exit);
	/* Before the first reader can look at the arena (set once, seq_cst:
	 * arena.c reads it after clearing a slot's live flag). */
	__atomic_store_n(&spb__arena_sync_hook, arena_sync, __ATOMIC_SEQ_CST);
}

static __attribute__((noinline)) void rcu_register(void)
{
	pthread_once(&rcu_once, rcu_key_init);
	pthread_mutex_lock(&reg_lock);
	urcu_memb_register_thread();
	self.reader = &URCU_TLS(urcu_memb_reader);
	self.next = threads;
	self.pprev = &threads;
	if (threads)
		threads->pprev = &self.next;
	threads = &self;
	pthread_mutex_unlock(&reg_lock);
	registered = 1;
	/* Any non-NULL value: the destructor runs at thread exit. */
	pthread_setspecific(rcu_key, (void *)1);
	spb__heap_count(RCU_REGISTER, 1);
}

SPB_EXPORT void spb_read_lock(void)
{
	if (SPB_UNLIKELY(registered != 1))
		rcu_register();
	nesting++;
	urcu_memb_read_lock();
}

SPB_EXPORT void spb_read_unlock(void)
{
	if (SPB_UNLIKELY(nesting == 0))
		spb__fatal("spb_read_unlock(): not inside a read section", NULL);
	TSAN_SECTION_END();
	urcu_memb_read_unlock();
	nesting--;
}

bool spb__rcu_in_section(void)
{
	return nesting > 0;
}

bool spb__rcu_usable(void)
{
	return !__atomic_load_n(&rcu_unusable, __ATOMIC_RELAXED);
}

void spb__rcu_synchronize(void)
{
	pthread_mutex_lock(&sync_lock);
	urcu_memb_synchronize_rcu();
	TSAN_GP_END();
	pthread_mutex_unlock(&sync_lock);
}

/* Before every allocator lock: a grace period in progress waits for
 * readers, and a reader may be waiting for an allocator lock. */
void spb__rcu_prefork(void)
{
	/* A grace period in flight may wait for a reader that waits for a
	 * lock the forking thread holds (or for the forking thread itself,
	 * inside a section): wait for it a bounded time only; without
	 * sync_lock the child runs without compaction (rcu_fork_unsafe). */
	sync_held_for_fork = pthread_mutex_trylock(&sync_lock) == 0;
	for (int i = 0; !sync_held_for_fork && !nesting && i < 100; i++) {
		struct timespec ts = {0, 1000000L};
		nanosleep(&ts, NULL);
		sync_held_for_fork = pthread_mutex_trylock(&sync_lock) == 0;
	}
	pthread_mutex_lock(&reg_lock);
}

void spb__rcu_postfork(bool child)
{
	if (!child) {
		pthread_mutex_unlock(&reg_lock);
		if (sync_held_for_fork)
			pthread_mutex_unlock(&sync_lock);
		return;
	}
	/* The child: one thread. Everyone else leaves liburcu's registry as
	 * their own unregister would have taken them out. */
	for (struct rcu_thread *t = threads, *n; t; t = n) {
		n = t->next;
		if (t == &self)
			continue;
		cds_list_del(&t->reader->node);
		t->reader->ctr = 0;
		t->reader->registered = 0;
		unlink_thread(t);
	}
	if (!sync_held_for_fork) {
		rcu_unusable = true;
		spb__heap_count(RCU_FORK_UNSAFE, 1);
	}
	pthread_mutex_init(&reg_lock, NULL);
	pthread_mutex_init(&sync_lock, NULL);
}
