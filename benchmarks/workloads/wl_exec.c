/*
 * wl_exec.c — run a program and report its peak RSS from getrusage.
 *
 * Usage: wl_exec OUTFILE [LD_PRELOAD value or ""] PROGRAM ARGS...
 * Forks, sets LD_PRELOAD in the child only, execs PROGRAM with stdin, stdout
 * and stderr untouched, waits, and writes "peak_rss_kb=", "user_s=",
 * "sys_s=" and "status=" to OUTFILE. Exit status: the program's.
 *
 * Why a wrapper: Linux keeps a process's maximum RSS across exec, so a
 * program started straight from the runner (a Python process of tens of MiB)
 * would report at least the runner's RSS. This wrapper is small, and its
 * child starts with a fresh maximum.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct rusage ru;
	int status;
	pid_t pid;
	FILE *f;

	if (argc < 4) {
		fprintf(stderr, "usage: wl_exec OUTFILE PRELOAD PROGRAM ARGS...\n");
		return 2;
	}
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 2;
	}
	if (pid == 0) {
		if (argv[2][0])
			setenv("LD_PRELOAD", argv[2], 1);
		else
			unsetenv("LD_PRELOAD");
		execvp(argv[3], argv + 3);
		fprintf(stderr, "wl_exec: %s: %s\n", argv[3], strerror(errno));
		_exit(127);
	}
	while (wait4(pid, &status, 0, &ru) < 0) {
		if (errno != EINTR) {
			perror("wait4");
			return 2;
		}
	}
	f = fopen(argv[1], "w");
	if (f) {
		fprintf(f, "peak_rss_kb=%ld\nuser_s=%ld.%06ld\nsys_s=%ld.%06ld\n"
			"status=%d\n", ru.ru_maxrss, (long)ru.ru_utime.tv_sec,
			(long)ru.ru_utime.tv_usec, (long)ru.ru_stime.tv_sec,
			(long)ru.ru_stime.tv_usec, status);
		fclose(f);
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
