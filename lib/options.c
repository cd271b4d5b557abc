/*
 * options.c — the SPBMALLOC_* settings, read once from the environment
 * (getenv does not allocate, so this is safe before main and inside other
 * libraries' constructors). A malloc before libc has set environ (ld.so
 * allocating for a .preinit_array function) reads /proc/self/environ
 * instead, with read(2) into a stack buffer. The table is options.def.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "platform.h"

extern char **environ;

struct option_desc {
	const char *env;
	long def, lo, hi;
};

static const struct option_desc option_table[SPB_NR_OPTIONS] = {
#define SPB_OPTION(e, env, def, lo, hi, desc) [e] = {"SPBMALLOC_" env, def, lo, hi},
#include "options.def"
#undef SPB_OPTION
};

long spb__options[SPB_NR_OPTIONS] = {
#define SPB_OPTION(e, env, def, lo, hi, desc) [e] = def,
#include "options.def"
#undef SPB_OPTION
};

static int options_done;

/* Decimal only; returns false on anything else (and on overflow). */
static bool parse_long(const char *s, long *out)
{
	long v = 0;
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (__LONG_MAX__ - 9) / 10)
			return false;
		v = v * 10 + (*s - '0');
	}
	*out = v;
	return true;
}

/* SPBMALLOC_VERBOSE: one line per setting, "spbmalloc: NAME=value". */
static void print_settings(void)
{
	for (int i = 0; i < SPB_NR_OPTIONS; i++) {
		char buf[96];
		size_t n = spb__fmt_str(buf, 0, sizeof buf - 24, "spbmalloc: ");
		n = spb__fmt_str(buf, n, sizeof buf - 24, option_table[i].env);
		buf[n++] = '=';
		n += spb__fmt_u64(buf + n, (uint64_t)spb__opt((enum spb_option)i));
		buf[n++] = '\n';
		ssize_t r = write(2, buf, n);
		(void)r;
	}
}

static void apply(int i, const char *s)
{
	const struct option_desc *d = &option_table[i];
	long v;
	if (parse_long(s, &v) && v >= d->lo && v <= d->hi)
		__atomic_store_n(&spb__options[i], v, __ATOMIC_RELAXED);
	else
		spb__warn(d->env, s, "is not valid: using the default");
}

/* One NAME=value entry of /proc/self/environ. */
static void apply_entry(const char *e)
{
	if (strncmp(e, "SPBMALLOC_", 10) != 0)
		return;
	for (int i = 0; i < SPB_NR_OPTIONS; i++) {
		size_t n = strlen(option_table[i].env);
		if (strncmp(e, option_table[i].env, n) == 0 && e[n] == '=')
			apply(i, e + n + 1);
	}
}

static void read_proc_environ(void)
{
	int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[4096], entry[256];
	size_t len = 0;
	bool skip = false; /* the entry is longer than ours can be */
	ssize_t r;
	while ((r = read(fd, buf, sizeof buf)) > 0)
		for (ssize_t k = 0; k < r; k++) {
			if (buf[k] == '\0') {
				entry[len] = '\0';
				if (!skip)
					apply_entry(entry);
				len = 0;
				skip = false;
			} else if (len + 1 < sizeof entry) {
				entry[len++] = buf[k];
			} else {
				skip = true;
			}
		}
	close(fd);
}

void spb__options_init(void)
{
	if (__atomic_load_n(&options_done, __ATOMIC_ACQUIRE))
		return;
	if (!environ) {
		read_proc_environ();
	} else {
		for (int i = 0; i < SPB_NR_OPTIONS; i++) {
			const char *s = getenv(option_table[i].env);
			if (s)
				apply(i, s);
		}
	}
	__atomic_store_n(&options_done, 1, __ATOMIC_RELEASE);
	if (spb__opt(OPT_VERBOSE))
		print_settings();
}

void spb__option_set(enum spb_option o, long v)
{
	spb__options_init();
	__atomic_store_n(&spb__options[o], v, __ATOMIC_RELAXED);
}
