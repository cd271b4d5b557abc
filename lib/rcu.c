/*
 * rcu.c — the read side of the handle layer, on liburcu's memb flavour
 * (read sections cost a thread-local counter; the writer side pays with
 * membarrier). A library cannot make application threads report quiescent
 * states, which is why memb and not qsbr.
 *
 * A thread registers with liburcu at its first spb_read_lock (registration
 * takes liburcu's registry mutex and allocates nothing) and unregisters at
 * exit, from a pthread key destructor of its own, so a thread that never
 * allocated still leaves the registry. Nesting is counted here too, so a
 * section can be checked (spb__rcu_in_section) without asking liburcu.
 */
#include <urcu/urcu-memb.h>

#include "handle.h"

#define SPB_EXPORT __attribute__((visibility("default")))

static pthread_key_t rcu_key;
static pthread_once_t rcu_once = PTHREAD_ONCE_INIT;
static SPB_TLS int registered; /* 0 no, 1 yes, -1 exited (gone for good) */
static SPB_TLS unsigned nesting;

static void rcu_thread_exit(void *arg)
{
	(void)arg;
	if (registered == 1) {
		if (nesting)
			spb__fatal("spb_read_lock(): thread exits inside a read section",
				   (void *)(uintptr_t)nesting);
		urcu_memb_unregister_thread();
		registered = 0;
	}
}

static void rcu_key_init(void)
{
	pthread_key_create(&rcu_key, rcu_thread_exit);
}

static __attribute__((noinline)) void rcu_register(void)
{
	pthread_once(&rcu_once, rcu_key_init);
	urcu_memb_register_thread();
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
	urcu_memb_read_unlock();
	nesting--;
}

bool spb__rcu_in_section(void)
{
	return nesting > 0;
}

void spb__rcu_synchronize(void)
{
	urcu_memb_synchronize_rcu();
}
