/*
 * thread.c — how the allocator starts a thread of its own (spb-bg,
 * spb-compact, spb-shrink): detached, a small stack, and born with every
 * signal blocked, so that no handler of the program ever runs on it.
 * pthread_create may call malloc (glibc's DTV): callers start threads only
 * where that cannot recurse into a held lock.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>

#include "platform.h"

bool spb__thread_spawn(void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t t;
	if (pthread_attr_init(&attr) != 0)
		return false;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&t, &attr, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return rc == 0;
}
