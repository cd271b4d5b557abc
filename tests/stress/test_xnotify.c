/*
 * test_xnotify.c — regression test for cross-thread frees into spans their
 * owner saw full: the owner's notification list once became a cycle (a
 * span flagged again while still on the list) and the owner's next refill
 * spun forever. A producer mallocs, a fresh consumer thread per round
 * frees through a ring, sizes cycling across classes; a watchdog turns a
 * hang into a failure, and the blocks' stamps are checked on the way.
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <spbmalloc.h>

#define SLOTS 256
static size_t head, tail;
static void *slot[SLOTS];
static long per_round;
static size_t cur_size;
static int bad;

static void *consumer(void *a)
{
	(void)a;
	for (long i = 0; i < per_round; i++) {
		size_t t = __atomic_load_n(&tail, __ATOMIC_RELAXED);
		while (__atomic_load_n(&head, __ATOMIC_ACQUIRE) == t)
			sched_yield();
		unsigned char *p = slot[t % SLOTS];
		__atomic_store_n(&tail, t + 1, __ATOMIC_RELEASE);
		if (p[0] != (unsigned char)t || p[cur_size - 1] != (unsigned char)(t >> 8))
			__atomic_store_n(&bad, 1, __ATOMIC_RELAXED);
		free(p);
	}
	return NULL;
}

/* The watchdog looks for progress, not for speed: a loaded machine makes
 * the ring slow (each hand-off may wait for a time slice), a hang makes
 * it stop. No block handed over for 20 s is a hang. */
static size_t last_tail = (size_t)-1;

static void on_alarm(int sig)
{
	(void)sig;
	size_t t = __atomic_load_n(&tail, __ATOMIC_RELAXED);
	if (t != last_tail) {
		last_tail = t;
		alarm(20);
		return;
	}
	static const char msg[] = "test_xnotify: FAILED: hung (no progress for 20 s)\n";
	ssize_t r = write(2, msg, sizeof msg - 1);
	(void)r;
	_exit(1);
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = {16, 256, 4096, 65536};
	int rounds = argc > 1 ? atoi(argv[1]) : 40;
	per_round = argc > 2 ? atol(argv[2]) : 50000;
	signal(SIGALRM, on_alarm);
	alarm(20);
	uint64_t x0 = spb_counter_get("malloc_xthread_free");
	for (int r = 0; r < rounds; r++) {
		cur_size = sizes[r % 4];
		pthread_t t;
		if (pthread_create(&t, NULL, consumer, NULL))
			return 2;
		for (long i = 0; i < per_round; i++) {
			unsigned char *p = malloc(cur_size);
			size_t h = __atomic_load_n(&head, __ATOMIC_RELAXED);
			p[0] = (unsigned char)h;
			p[cur_size - 1] = (unsigned char)(h >> 8);
			while (h - __atomic_load_n(&tail, __ATOMIC_ACQUIRE) >= SLOTS)
				sched_yield();
			slot[h % SLOTS] = p;
			__atomic_store_n(&head, h + 1, __ATOMIC_RELEASE);
		}
		pthread_join(t, NULL);
	}
	uint64_t xfrees = spb_counter_get("malloc_xthread_free") - x0;
	printf("test_xnotify: %d rounds x %ld cross-thread frees, counted %llu\n", rounds,
	       per_round, (unsigned long long)xfrees);
	if (bad || xfrees < (uint64_t)rounds * (uint64_t)per_round) {
		printf("test_xnotify: FAILED (stamps %s)\n", bad ? "bad" : "ok");
		return 1;
	}
	printf("test_xnotify: ok\n");
	return 0;
}
