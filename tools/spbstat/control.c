/*
 * control.c — spbstat --set/--get/--trim/--compact PID: a request left in
 * the control slot of the process's stats segment (spbmalloc_stats.h,
 * struct spb_stats_ctl), answered by its background thread through
 * spb_ctl.
 *
 * Owner only: the segment is 0600, and spbstat checks that the file and
 * the header's uid are the caller's before it opens the file for writing
 * (root included: a control request is the owner's to make). The segment
 * is validated first by seg_read (magic, version, sizes, a live writer).
 * The wait is bounded (SPBSTAT_CTL_TIMEOUT_MS, default 3000): a process
 * run with SPBMALLOC_BG=0 never answers, and spbstat says so.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "spbstat.h"

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void nap(void)
{
	nanosleep(&(struct timespec){0, 10 * 1000000}, NULL);
}

static uint64_t timeout_ms(void)
{
	const char *s = getenv("SPBSTAT_CTL_TIMEOUT_MS");
	char *end;
	unsigned long v = s ? strtoul(s, &end, 10) : 0;
	return s && *s && !*end && v > 0 && v <= 600000 ? v : 3000;
}

static const char *what_result(const char *name)
{
	if (!strcmp(name, "trim"))
		return " pageblocks and SPBs given back";
	if (!strcmp(name, "compact"))
		return " bytes moved";
	if (!strcmp(name, "shrink"))
		return " objects freed";
	if (!strcmp(name, "thread.flush"))
		return " runs given back (the background thread's own)";
	if (!strcmp(name, "stats.publish"))
		return " (1: published)";
	return "";
}

int cmd_control(int pid, enum spb_stats_ctl_op op, const char *name, long value)
{
	if (strlen(name) >= SPB_STATS_CTL_NAME_LEN) {
		fprintf(stderr, "spbstat: name '%.80s' is too long (%d bytes at most)\n", name,
			SPB_STATS_CTL_NAME_LEN - 1);
		return 2;
	}
	struct snap s;
	enum seg_err e = seg_read(pid, &s);
	if (e)
		return seg_report(e, &s);
	bool alive = s.alive;
	snap_free(&s);
	if (!alive) {
		fprintf(stderr, "spbstat: process %d is gone (stale segment: spbstat --gc)\n", pid);
		return 1;
	}
	char path[64];
	snprintf(path, sizeof path, SPB_STATS_PATH_PREFIX "%d", pid);
	int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		fprintf(stderr, "spbstat: %s: %s\n", path, strerror(errno));
		return 1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    (size_t)st.st_size < sizeof(struct spb_stats_header)) {
		fprintf(stderr, "spbstat: %s: refused: only its owner may send it requests\n", path);
		close(fd);
		return 1;
	}
	struct spb_stats_header *h =
		mmap(NULL, sizeof *h, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (h == MAP_FAILED) {
		fprintf(stderr, "spbstat: %s: mmap: %s\n", path, strerror(errno));
		return 1;
	}
	int rc = 1;
	struct spb_stats_ctl *c = &h->ctl;
	if (h->magic != SPB_STATS_MAGIC || h->version != SPB_STATS_VERSION || h->pid != pid ||
	    h->uid != (uint32_t)geteuid()) {
		fprintf(stderr, "spbstat: %s: refused: not a segment of yours for pid %d\n", path,
			pid);
		goto out;
	}
	uint64_t deadline = now_ms() + timeout_ms();
	int32_t me = (int32_t)getpid();
	for (;;) { /* the slot's lock: one request at a time */
		int32_t cur = 0;
		if (__atomic_compare_exchange_n(&c->lock, &cur, me, false, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			break;
		if (cur != me && kill(cur, 0) != 0 && errno == ESRCH &&
		    __atomic_compare_exchange_n(&c->lock, &cur, me, false, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			break; /* its holder died */
		if (now_ms() > deadline) {
			fprintf(stderr, "spbstat: pid %d: control slot busy (held by pid %d)\n", pid,
				cur);
			goto out;
		}
		nap();
	}
	/* The slot idle first: a request that an earlier requester gave up
	 * on may still be running (the process took it before the give-up;
	 * nothing can withdraw it then). Its number is the one this request
	 * would take, so its late answer would be read as ours, and ours
	 * never run; and the process may still be copying the slot. */
	uint64_t ack;
	while ((ack = __atomic_load_n(&c->ack_seq, __ATOMIC_ACQUIRE)) !=
	       __atomic_load_n(&c->req_seq, __ATOMIC_ACQUIRE)) {
		if (now_ms() > deadline) {
			__atomic_store_n(&c->lock, 0, __ATOMIC_RELEASE);
			fprintf(stderr,
				"spbstat: pid %d has not answered an earlier request yet "
				"(is its background thread off, SPBMALLOC_BG=0, or busy?)\n",
				pid);
			goto out;
		}
		nap();
	}
	uint64_t seq = ack + 1;
	c->op = (uint32_t)op;
	c->value = value;
	memset(c->name, 0, sizeof c->name);
	memcpy(c->name, name, strlen(name));
	__atomic_store_n(&c->req_seq, seq, __ATOMIC_RELEASE);
	/* The background thread sleeps on this word (a shared futex). */
	__atomic_fetch_add(&c->wake, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, &c->wake, FUTEX_WAKE, 1, NULL, NULL, 0);
	while (__atomic_load_n(&c->ack_seq, __ATOMIC_ACQUIRE) != seq) {
		if (now_ms() > deadline) {
			/* Left in the slot: the process may have taken it
			 * already (a cancel it cannot see would let the next
			 * requester reuse this number). It may still run. */
			__atomic_store_n(&c->lock, 0, __ATOMIC_RELEASE);
			fprintf(stderr,
				"spbstat: pid %d did not acknowledge the request within %llu ms "
				"(is its background thread off, SPBMALLOC_BG=0?); it may "
				"still run when the process gets to it\n",
				pid, (unsigned long long)timeout_ms());
			goto out;
		}
		nap();
	}
	int status = __atomic_load_n(&c->status, __ATOMIC_RELAXED);
	long result = (long)__atomic_load_n(&c->result, __ATOMIC_RELAXED);
	__atomic_store_n(&c->lock, 0, __ATOMIC_RELEASE);
	if (status) {
		if (op == SPB_STATS_CTL_SET)
			fprintf(stderr, "spbstat: pid %d refused %s=%ld: %s\n", pid, name, value,
				strerror(status));
		else
			fprintf(stderr, "spbstat: pid %d refused %s: %s\n", pid, name,
				strerror(status));
		goto out;
	}
	rc = 0;
	if (op == SPB_STATS_CTL_SET)
		printf("pid %d: %s = %ld (was %ld)\n", pid, name, value, result);
	else if (op == SPB_STATS_CTL_GET)
		printf("pid %d: %s = %ld\n", pid, name, result);
	else
		printf("pid %d: %s: %ld%s\n", pid, name, result, what_result(name));
out:
	munmap(h, sizeof *h);
	return rc;
}
