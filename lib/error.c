/*
 * error.c — fatal faults and warnings, written with write(2) alone: no
 * stdio, no allocation, safe with any lock held.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "platform.h"

size_t spb__fmt_u64(char *buf, uint64_t v)
{
	char tmp[20];
	size_t n = 0, i;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return n;
}

size_t spb__fmt_hex(char *buf, uint64_t v)
{
	static const char digits[] = "0123456789abcdef";
	char tmp[16];
	size_t n = 0, i;
	do {
		tmp[n++] = digits[v & 15];
		v >>= 4;
	} while (v);
	buf[0] = '0';
	buf[1] = 'x';
	for (i = 0; i < n; i++)
		buf[2 + i] = tmp[n - 1 - i];
	return n + 2;
}

size_t spb__fmt_str(char *buf, size_t len, size_t cap, const char *s)
{
	size_t n = strlen(s);
	if (n > cap - len)
		n = cap - len;
	memcpy(buf + len, s, n);
	return len + n;
}

void (*spb__fatal_hook)(void);

void spb__fatal(const char *what, const void *addr)
{
	char buf[256];
	size_t len = spb__fmt_str(buf, 0, sizeof buf - 24, "spbmalloc: ");
	len = spb__fmt_str(buf, len, sizeof buf - 24, what);
	len = spb__fmt_str(buf, len, sizeof buf - 24, ": ");
	len += spb__fmt_hex(buf + len, (uintptr_t)addr);
	buf[len++] = '\n';
	ssize_t r = write(2, buf, len);
	(void)r;
	void (*hook)(void) = spb__fatal_hook;
	if (hook)
		hook();
	abort();
}

void spb__warn(const char *a, const char *b, const char *c)
{
	char buf[512];
	size_t len = spb__fmt_str(buf, 0, sizeof buf - 1, "spbmalloc: warning: ");
	len = spb__fmt_str(buf, len, sizeof buf - 1, a);
	len = spb__fmt_str(buf, len, sizeof buf - 1, "=");
	len = spb__fmt_str(buf, len, sizeof buf - 1, b);
	len = spb__fmt_str(buf, len, sizeof buf - 1, " ");
	len = spb__fmt_str(buf, len, sizeof buf - 1, c);
	buf[len++] = '\n';
	ssize_t r = write(2, buf, len);
	(void)r;
}
