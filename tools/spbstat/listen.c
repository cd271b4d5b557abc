/*
 * listen.c — spbstat --listen [ADDR:]PORT: an HTTP endpoint for Prometheus.
 *
 * Every scrape of /metrics reads /dev/shm afresh: each spbmalloc.<pid>
 * segment the caller may read (its own, or any as root) whose process is
 * alive, through segment.c's reader (pread between two reads of the
 * writer's seqlock, retried: a snapshot being rewritten is never exported
 * torn), and answers with openmetrics.c's exposition. A process that exits
 * between scrapes is simply not there the next time.
 *
 * The HTTP side is libmicrohttpd (one internal polling thread; requests
 * are served one at a time, which a scraper never notices). Without it at
 * build time, --listen says so and exits 2.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "openmetrics.h"

#ifdef SPBSTAT_HAVE_MHD
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define SHM_DIR "/dev/shm"
#define SEG_BASENAME "spbmalloc."

#define CT_OPENMETRICS "application/openmetrics-text; version=1.0.0; charset=utf-8"
#define CT_TEXT "text/plain; version=0.0.4; charset=utf-8"

static int cmp_pid(const void *a, const void *b)
{
	int x = ((const struct snap *)a)->pid, y = ((const struct snap *)b)->pid;
	return x < y ? -1 : x > y;
}

static int name_pid(const char *name)
{
	if (strncmp(name, SEG_BASENAME, sizeof SEG_BASENAME - 1) != 0)
		return -1;
	const char *p = name + sizeof SEG_BASENAME - 1;
	char *end;
	errno = 0;
	long v = strtol(p, &end, 10);
	if (!*p || errno || *end || v <= 0 || v > 0x7fffffff)
		return -1;
	return (int)v;
}

static enum om_outcome outcome_of(enum seg_err e)
{
	switch (e) {
	case SEG_OK:
		return OM_READ;
	case SEG_REFUSED:
		return OM_REFUSED;
	case SEG_GARBLED:
	case SEG_VERSION:
		return OM_GARBLED;
	case SEG_INCONSISTENT:
		return OM_INCONSISTENT;
	case SEG_MISSING:
		return OM_STALE;
	case SEG_SYSERR:
		break;
	}
	return OM_ERROR;
}

/* Read every segment we may read; *n snapshots of live processes, sorted
 * by pid (the caller frees them). */
static struct snap *scan(size_t *n, struct om_scrape *sc)
{
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	memset(sc, 0, sizeof *sc);
	*n = 0;
	size_t cap = 16;
	struct snap *v = malloc(cap * sizeof *v);
	DIR *d = opendir(SHM_DIR);
	if (!v || !d) {
		if (d)
			closedir(d);
		sc->segments[OM_ERROR]++;
		return v;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		int pid = name_pid(de->d_name);
		struct stat st;
		if (pid < 0 || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (!S_ISREG(st.st_mode) || (geteuid() != 0 && st.st_uid != geteuid())) {
			sc->segments[OM_REFUSED]++; /* not ours to read */
			continue;
		}
		if (kill(pid, 0) != 0 && errno == ESRCH) {
			/* gone: not even read (a writer that died mid-update
			 * would cost the reader's retries on every scrape) */
			sc->segments[OM_STALE]++;
			continue;
		}
		if (*n == cap) {
			struct snap *w = realloc(v, 2 * cap * sizeof *v);
			if (!w)
				break;
			v = w;
			cap *= 2;
		}
		char path[300];
		snprintf(path, sizeof path, SHM_DIR "/%s", de->d_name);
		struct snap *s = &v[*n];
		enum seg_err e = seg_read_path(path, pid, s);
		enum om_outcome o = e == SEG_OK && !s->alive ? OM_STALE : outcome_of(e);
		sc->segments[o]++;
		if (o == OM_READ)
			(*n)++;
		else
			snap_free(s);
	}
	closedir(d);
	qsort(v, *n, sizeof *v, cmp_pid);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	sc->duration_s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	return v;
}

/* The q of a media range in an Accept header entry ("type/sub; q=0.5"). */
static double entry_q(const char *e, size_t len)
{
	const char *p = memchr(e, ';', len);
	while (p && p < e + len) {
		p++;
		while (p < e + len && (*p == ' ' || *p == '\t'))
			p++;
		if (p + 2 <= e + len && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
			return strtod(p + 2, NULL);
		p = memchr(p, ';', (size_t)(e + len - p));
	}
	return 1.0;
}

static bool type_is(const char *e, size_t len, const char *type)
{
	while (len && (*e == ' ' || *e == '\t')) {
		e++;
		len--;
	}
	size_t tl = strlen(type);
	return len >= tl && !strncasecmp(e, type, tl) &&
	       (len == tl || e[tl] == ';' || e[tl] == ' ' || e[tl] == '\t');
}

/* OpenMetrics when the scraper asks for it at least as much as for plain
 * text (Prometheus sends application/openmetrics-text first, q=1). */
static bool wants_openmetrics(const char *accept)
{
	double om = 0, text = 0;
	if (!accept)
		return false;
	for (const char *e = accept; *e;) {
		size_t len = strcspn(e, ",");
		double q = entry_q(e, len);
		if (type_is(e, len, "application/openmetrics-text") && q > om)
			om = q;
		if (type_is(e, len, "text/plain") && q > text)
			text = q;
		e += len;
		if (*e == ',')
			e++;
	}
	return om > 0 && om >= text;
}

typedef enum MHD_Result mhd_result;

static mhd_result reply(struct MHD_Connection *c, unsigned status, const char *type,
			char *body, size_t len, bool must_free)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!r) {
		if (must_free)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	mhd_result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static mhd_result reply_const(struct MHD_Connection *c, unsigned status, const char *type,
			      const char *body)
{
	return reply(c, status, type, (char *)body, strlen(body), false);
}

static mhd_result serve_metrics(struct MHD_Connection *c)
{
	bool om = wants_openmetrics(
		MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT));
	struct om_scrape sc;
	size_t n;
	struct snap *v = scan(&n, &sc);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (f) {
		om_write(f, om, v, n, &sc);
		if (fclose(f) != 0) {
			free(buf);
			buf = NULL;
		}
	}
	for (size_t i = 0; i < n; i++)
		snap_free(&v[i]);
	free(v);
	if (!buf)
		return reply_const(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain",
				   "out of memory\n");
	return reply(c, MHD_HTTP_OK, om ? CT_OPENMETRICS : CT_TEXT, buf, len, true);
}

static const char index_page[] =
	"<!DOCTYPE html>\n<html><head><title>spbstat</title></head><body>\n"
	"<h1>spbstat</h1>\n<p>spbmalloc processes: <a href=\"/metrics\">/metrics</a>"
	" (OpenMetrics)</p>\n</body></html>\n";

static mhd_result handler(void *cls, struct MHD_Connection *c, const char *url,
			  const char *method, const char *version, const char *upload_data,
			  size_t *upload_data_size, void **req_cls)
{
	(void)cls, (void)version, (void)upload_data, (void)upload_data_size, (void)req_cls;
	bool get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
	if (!strcmp(url, "/metrics"))
		return get ? serve_metrics(c)
			   : reply_const(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
					 "only GET /metrics\n");
	if (!strcmp(url, "/") && get)
		return reply_const(c, MHD_HTTP_OK, "text/html; charset=utf-8", index_page);
	return reply_const(c, MHD_HTTP_NOT_FOUND, "text/plain", "not found: try /metrics\n");
}

/* [ADDR:]PORT, ADDR a numeric IPv4 or [IPv6] address or a host name;
 * without ADDR, 127.0.0.1. */
static bool parse_spec(const char *spec, struct sockaddr_storage *ss)
{
	char host[256];
	const char *port = spec, *colon = strrchr(spec, ':');
	strcpy(host, "127.0.0.1");
	if (colon) {
		size_t hl = (size_t)(colon - spec);
		if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']') {
			spec++;
			hl -= 2;
		}
		if (hl == 0 || hl >= sizeof host)
			return false;
		memcpy(host, spec, hl);
		host[hl] = 0;
		port = colon + 1;
	}
	char *end;
	errno = 0;
	long p = strtol(port, &end, 10);
	if (!*port || *end || errno || p < 0 || p > 65535)
		return false;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV | AI_PASSIVE},
			*ai = NULL;
	if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
		return false;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	return true;
}

int listen_run(const char *spec)
{
	struct sockaddr_storage ss;
	if (!parse_spec(spec, &ss)) {
		fprintf(stderr, "spbstat: --listen '%s': expected [ADDR:]PORT, e.g. 9464, "
				"127.0.0.1:9464, 0.0.0.0:9464 or [::1]:9464\n", spec);
		return 2;
	}
	bool v6 = ss.ss_family == AF_INET6;
	uint16_t port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
				 : ((struct sockaddr_in *)&ss)->sin_port);
	/* The daemon's thread inherits this mask: the signals come to sigwait. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0),
		port, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned)64, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "spbstat: cannot serve on %s (in use? not an address of this "
				"host?)\n", spec);
		return 1;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (di && di->port)
		port = di->port;
	char addr[INET6_ADDRSTRLEN] = "?";
	inet_ntop(ss.ss_family,
		  v6 ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
		     : (void *)&((struct sockaddr_in *)&ss)->sin_addr,
		  addr, sizeof addr);
	printf("spbstat: serving http://%s%s%s:%u/metrics (libmicrohttpd %s)\n", v6 ? "[" : "",
	       addr, v6 ? "]" : "", port, MHD_get_version());
	fflush(stdout);
	int sig = 0;
	sigwait(&set, &sig);
	MHD_stop_daemon(d);
	return 0;
}

#else /* !SPBSTAT_HAVE_MHD */

int listen_run(const char *spec)
{
	(void)spec;
	fprintf(stderr, "spbstat: --listen: this spbstat was built without libmicrohttpd "
			"(install libmicrohttpd-dev and rebuild)\n");
	return 2;
}

#endif
