/*
 * check.h — what every test program shares: CHECK and CHECK_EQ count a
 * failure and keep going, REQUIRE stops the program; counts are atomic, so
 * threads may check too. check_done() prints the tally and gives the exit
 * status; check_death() runs a call in a forked child and captures its
 * stderr. Tests are plain programs: exit 0 = pass, 1 = fail, 77 = skipped.
 * tests/unit/tap.h (engine internals) and tests/api/mtest.h (public API)
 * add their own helpers on top.
 */
#ifndef SPB_TEST_CHECK_H
#define SPB_TEST_CHECK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int check_failures, check_checks;

#define CHECK(cond)                                                            \
	do {                                                                   \
		__atomic_fetch_add(&check_checks, 1, __ATOMIC_RELAXED);        \
		if (!(cond)) {                                                 \
			__atomic_fetch_add(&check_failures, 1, __ATOMIC_RELAXED); \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,  \
				__LINE__, #cond);                              \
		}                                                              \
	} while (0)

#define CHECK_EQ(a, b)                                                         \
	do {                                                                   \
		unsigned long long check_a = (unsigned long long)(a);          \
		unsigned long long check_b = (unsigned long long)(b);          \
		__atomic_fetch_add(&check_checks, 1, __ATOMIC_RELAXED);        \
		if (check_a != check_b) {                                      \
			__atomic_fetch_add(&check_failures, 1, __ATOMIC_RELAXED); \
			fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%llu vs %llu)\n", \
				__FILE__, __LINE__, #a, #b, check_a, check_b); \
		}                                                              \
	} while (0)

#define REQUIRE(cond)                                                          \
	do {                                                                   \
		__atomic_fetch_add(&check_checks, 1, __ATOMIC_RELAXED);        \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: REQUIRE failed: %s\n",          \
				__FILE__, __LINE__, #cond);                    \
			exit(1);                                               \
		}                                                              \
	} while (0)

static inline int check_done(const char *name)
{
	printf("%s: %d checks, %d failed\n", name, check_checks, check_failures);
	return check_failures ? 1 : 0;
}

/* Death test: run fn(arg) in a forked child with stderr on a pipe (20 s
 * at most). Returns the wait status, or -1; *out gets what the child wrote
 * to stderr (NUL-ended, cut at cap). */
static inline int check_death(void (*fn)(void *), void *arg, char *out, size_t cap)
{
	int fds[2];
	fflush(NULL);
	if (pipe(fds))
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], 2);
		close(fds[1]);
		signal(SIGABRT, SIG_DFL);
		alarm(20);
		fn(arg);
		_exit(0); /* survived: the parent reports it */
	}
	close(fds[1]);
	size_t len = 0;
	ssize_t r;
	while (len + 1 < cap && (r = read(fds[0], out + len, cap - 1 - len)) > 0)
		len += (size_t)r;
	char sink[256];
	while (read(fds[0], sink, sizeof sink) > 0)
		;
	out[len] = 0;
	close(fds[0]);
	int st = 0;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return st;
}

#endif
