/*
 * init.c — process integration: first-use initialisation (safe before
 * main, inside other libraries' constructors, and re-entrantly: what init
 * calls may itself call malloc), thread exit (a pthread key destructor
 * hands the thread's heaps back), and fork (every allocator lock is taken
 * before fork and released — or re-created — on both sides, so the child
 * gets a consistent heap even while other threads were allocating).
 */
#define _GNU_SOURCE
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "handle.h"
#include "shrink.h"

pthread_key_t spb__thread_key;
static int init_state; /* 0 none, 1 running, 2 done */
static SPB_TLS int in_init;

static void thread_exit_cb(void *h)
{
	spb__heap_thread_exit(h);
}

/* Zones locked by prefork: the count is read after zone 0's lock is
 * held (zones are added under it, zone.c), and postfork unlocks those. */
static int fork_nr_zones;

static void prefork(void)
{
	spb__rcu_prefork(); /* first: a grace period may wait for a reader in malloc */
	spb__shrink_prefork();
	spb__compact_prefork(); /* no handle left being copied in the child */
	spb__heap_prefork();
	spb__zone_prefork(&spb__zones[0]); /* waits for unlocked windows */
	fork_nr_zones = __atomic_load_n(&spb__nr_zones, __ATOMIC_ACQUIRE);
	for (int i = 1; i < fork_nr_zones; i++)
		spb__zone_prefork(&spb__zones[i]);
	spb__span_prefork();
	spb__handle_prefork(); /* a leaf: its holders take no other lock */
}

static void postfork_parent(void)
{
	spb__handle_postfork(false);
	spb__span_postfork(false);
	for (int i = 0; i < fork_nr_zones; i++)
		spb__zone_postfork(&spb__zones[i], false);
	spb__heap_postfork_parent();
	spb__compact_postfork(false);
	spb__rcu_postfork(false);
	spb__shrink_postfork(false);
}

static void postfork_child(void)
{
	spb__handle_postfork(true);
	spb__span_postfork(true);
	for (int i = 0; i < fork_nr_zones; i++)
		spb__zone_postfork(&spb__zones[i], true);
	spb__heap_postfork_child();
	spb__secret_postfork_child(); /* after the heaps and zones are usable */
	spb__compact_postfork(true);
	spb__rcu_postfork(true);
	spb__arena_atfork_child();
	spb__shrink_postfork(true);
	/* The child has its own stats segment, and no background thread
	 * until its next slow path starts one. */
	spb__statseg_atfork_child();
	spb__bg_atfork_child();
}

static uintptr_t make_cookie(void)
{
	uintptr_t c = 0;
	if (syscall(SYS_getrandom, &c, sizeof c, GRND_NONBLOCK) != sizeof c)
		c = (uintptr_t)__builtin_ia32_rdtsc() * 0x9e3779b97f4a7c15ull;
	return c | 1;
}

void spb__process_init(void)
{
	if (SPB_LIKELY(__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == 2) || in_init)
		return;
	int st = 0;
	if (!__atomic_compare_exchange_n(&init_state, &st, 1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		while (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != 2)
			__builtin_ia32_pause();
		return;
	}
	in_init = 1;
	spb__engine_init();
	spb__sizeclass_init();
	spb__link_key = make_cookie();
	spb__counter_extra = spb__heap_counter_sum;
	spb__reclaim_hook = spb__heap_reclaim;
	pthread_key_create(&spb__thread_key, thread_exit_cb);
	spb__shrink_init();
	__atomic_store_n(&init_state, 2, __ATOMIC_RELEASE);
	/* May allocate (glibc keeps the handlers in a growable array): the
	 * allocator is ready by now. */
	pthread_atfork(prefork, postfork_parent, postfork_child);
	in_init = 0;
}
