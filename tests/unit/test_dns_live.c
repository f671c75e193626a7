/* test_dns_live.c: the dns module against a real unbound on 127.0.0.1, run by this test. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "io/dns.h"

/*
 * unbound serves the zone below as an auth-zone (for-downstream), so it answers with AA set and,
 * like any authoritative server, puts the in-zone CNAME chain and its target's TXT into one
 * answer. local-data does not do that: a local-data CNAME comes back alone, unfollowed (checked
 * with unbound 1.17.1). "test." is one of unbound's default local zones, hence nodefault.
 */
#define UNBOUND_PATH "/usr/sbin/unbound"
#define START_MS     5000 /* unbound answering after exec */
#define STOP_MS      5000 /* unbound gone after SIGTERM, before SIGKILL */
#define ANSWER_MS    3000 /* any single lookup against the live server */
#define START_TRIES  3    /* a port found free may be taken before unbound binds it */

static const char zone_text[] = "$ORIGIN test.\n"
                                "@ 3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 30\n"
                                "@ 3600 IN NS ns.test.\n"
                                "ns 3600 IN A 127.0.0.1\n"
                                "_mta-sts.multi 300 IN TXT \"v=STSv1; id=\" \"abc\"\n"
                                "_mta-sts.multi 300 IN TXT \"other record\"\n"
                                "_mta-sts.alias 200 IN CNAME _mta-sts.hop.test.\n"
                                "_mta-sts.hop 150 IN CNAME _mta-sts.target.test.\n"
                                "_mta-sts.target 100 IN TXT \"v=STSv1; id=cname\"\n"
                                "mx 300 IN MX 10 mail.test.\n"
                                "mx 300 IN MX 20 Mail2.test.\n"
                                "nullmx 300 IN MX 0 .\n"
                                "host 300 IN A 192.0.2.1\n"
                                "host 300 IN AAAA 2001:db8::1\n"
                                "v4only 300 IN A 192.0.2.2\n"
                                "short 1 IN TXT \"short-lived\"\n"
                                "e1 300 IN TXT \"one\"\n"
                                "e2 300 IN TXT \"two\"\n"
                                "e3 300 IN TXT \"three\"\n";

/* Six 250-octet strings: over the 1232-octet EDNS payload, so c-ares must retry over TCP. */
#define BIG_STRINGS 6
#define BIG_LEN     250

static const char conf_fmt[] = "server:\n"
                               "\tinterface: 127.0.0.1@%d\n"
                               "\tport: %d\n"
                               "\tdo-ip6: no\n"
                               "\tnum-threads: 1\n"
                               "\tchroot: \"\"\n"
                               "\tusername: \"\"\n"
                               "\tdirectory: \"%s\"\n"
                               "\tpidfile: \"%s/unbound.pid\"\n"
                               "\tlogfile: \"%s/unbound.log\"\n"
                               "\tuse-syslog: no\n"
                               "\tverbosity: 1\n"
                               "\tmodule-config: \"iterator\"\n"
                               "\tlocal-zone: \"test.\" nodefault\n"
                               "\tlocal-zone: \"refused.test.\" refuse\n"
                               "auth-zone:\n"
                               "\tname: \"test.\"\n"
                               "\tzonefile: \"%s/test.zone\"\n"
                               "\tfor-downstream: yes\n"
                               "\tfor-upstream: no\n"
                               "\tfallback-enabled: no\n";

static struct {
	bool up;
	pid_t pid;
	int port;
	char dir[64];
	char servers[64];
	int silent_fd; /* bound UDP socket nobody reads: queries to it time out */
	char silent[64];
} srv = { .pid = -1, .silent_fd = -1 };

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int
write_file(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "w")) == NULL)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static int
write_zone(void)
{
	char path[256];
	FILE *f;

	if (write_file(srv.dir, "test.zone", zone_text) == -1)
		return -1;
	snprintf(path, sizeof(path), "%s/test.zone", srv.dir);
	if ((f = fopen(path, "a")) == NULL)
		return -1;
	fputs("big 300 IN TXT", f);
	for (int i = 0; i < BIG_STRINGS; i++) {
		fputs(" \"", f);
		for (int j = 0; j < BIG_LEN; j++)
			fputc('a' + i, f);
		fputc('"', f);
	}
	fputc('\n', f);
	return fclose(f);
}

/* A port free for UDP and TCP right now; unbound binds it a moment later. */
static int
free_port(void)
{
	for (int tries = 0; tries < 20; tries++) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		socklen_t len = sizeof(sin);
		int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0), port;

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (u == -1 || t == -1 || bind(u, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
		    getsockname(u, (struct sockaddr *)&sin, &len) == -1 ||
		    bind(t, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
			if (u != -1)
				close(u);
			if (t != -1)
				close(t);
			continue;
		}
		port = ntohs(sin.sin_port);
		close(u);
		close(t);
		return port;
	}
	return -1;
}

/* True once unbound answers an A query for ns.test over UDP. */
static bool
server_answers(int port)
{
	static const uint8_t q[] = { 0xbe, 0xef, 0x01, 0x00, 0,   1,   0,   0, 0, 0, 0, 0, 2,
		                     'n',  's',  4,    't',  'e', 's', 't', 0, 0, 1, 0, 1 };
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	uint8_t buf[512];
	struct pollfd pfd;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	bool ok = false;

	if (fd == -1)
		return false;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (sendto(fd, q, sizeof(q), 0, (struct sockaddr *)&sin, sizeof(sin)) == sizeof(q)) {
		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 200) == 1 && recv(fd, buf, sizeof(buf), 0) > 12)
			ok = buf[0] == 0xbe && buf[1] == 0xef && (buf[3] & 0x0f) == 0;
	}
	close(fd);
	return ok;
}

static void
show_log(void)
{
	char path[256], line[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/unbound.log", srv.dir);
	if ((f = fopen(path, "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		print_message("# unbound: %s", line);
	fclose(f);
}

/* Waits for our child, by PID only, for at most ms; true when it has been reaped. */
static bool
reap(pid_t pid, long ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	do {
		pid_t r = waitpid(pid, NULL, WNOHANG);

		if (r == pid || (r == -1 && errno == ECHILD))
			return true;
		sleep_ms(20);
	} while (now_ms() < end);
	return false;
}

static void
stop_server(void)
{
	if (srv.pid <= 0)
		return;
	kill(srv.pid, SIGTERM);
	if (!reap(srv.pid, STOP_MS)) {
		kill(srv.pid, SIGKILL);
		reap(srv.pid, STOP_MS);
	}
	srv.pid = -1;
}

static int
start_server(void)
{
	char conf[2048], confpath[256];
	uint64_t end;

	if ((srv.port = free_port()) == -1)
		return -1;
	snprintf(conf, sizeof(conf), conf_fmt, srv.port, srv.port, srv.dir, srv.dir, srv.dir,
	         srv.dir);
	if (write_file(srv.dir, "unbound.conf", conf) == -1)
		return -1;
	snprintf(confpath, sizeof(confpath), "%s/unbound.conf", srv.dir);
	srv.pid = fork();
	if (srv.pid == -1)
		return -1;
	if (srv.pid == 0) {
		int null = open("/dev/null", O_RDWR);

		/* If this test dies on an assertion or a sanitizer, unbound goes with it. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 || getppid() == 1)
			_exit(127);
		/* unbound logs to its logfile; our stdout/stderr stay the test's alone. */
		if (null != -1) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
		}
		execl(UNBOUND_PATH, "unbound", "-d", "-c", confpath, (char *)NULL);
		_exit(127);
	}
	end = now_ms() + START_MS;
	while (now_ms() < end) {
		if (waitpid(srv.pid, NULL, WNOHANG) == srv.pid) {
			srv.pid = -1;
			show_log();
			return -1;
		}
		if (server_answers(srv.port))
			return 0;
		sleep_ms(50);
	}
	stop_server();
	return -1;
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
group_setup(void **state)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);

	signal(SIGPIPE, SIG_IGN);
	if (access(UNBOUND_PATH, X_OK) == -1)
		return 0;
	snprintf(srv.dir, sizeof(srv.dir), "/tmp/mtastsd-dns-XXXXXX");
	if (mkdtemp(srv.dir) == NULL || write_zone() == -1)
		return -1;
	for (int i = 0; i < START_TRIES && !srv.up; i++)
		srv.up = start_server() == 0;
	if (!srv.up)
		return -1;
	snprintf(srv.servers, sizeof(srv.servers), "127.0.0.1:%d", srv.port);

	srv.silent_fd = socket(AF_INET, SOCK_DGRAM, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (srv.silent_fd == -1 ||
	    bind(srv.silent_fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    getsockname(srv.silent_fd, (struct sockaddr *)&sin, &len) == -1)
		return -1;
	snprintf(srv.silent, sizeof(srv.silent), "127.0.0.1:%d", ntohs(sin.sin_port));
	return 0;
}

static int
group_teardown(void **state)
{
	stop_server();
	if (srv.silent_fd != -1)
		close(srv.silent_fd);
	if (srv.dir[0] != '\0')
		nftw(srv.dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* ---- helpers around one dns instance ---- */

#define REC_TXT_MAX 4096

/* A copy of one result, since the dns_result dies with the callback. */
struct rec {
	int calls;
	bool during_lookup; /* set if the callback ran inside dns_lookup() */
	enum dns_status status;
	uint32_t ttl;
	bool from_cache;
	char txt[REC_TXT_MAX]; /* strings of one RR joined, RRs separated by '|' */
	size_t ntxt;
	char addrs[8][64];
	size_t naddrs;
	struct dns_mx mx[8];
	size_t nmx;
};

struct ctx {
	struct event_base *base;
	struct dns *dns;
	bool in_lookup;
};

static struct ctx *cur_ctx;

static void
on_result(void *arg, const struct dns_result *r)
{
	struct rec *rec = arg;
	size_t o = 0;

	rec->calls++;
	rec->during_lookup = cur_ctx != NULL && cur_ctx->in_lookup;
	rec->status = r->status;
	rec->ttl = r->ttl;
	rec->from_cache = r->from_cache;
	rec->ntxt = r->ntxt;
	for (size_t i = 0; i < r->ntxt; i++) {
		if (r->txt[i].record_start && i > 0 && o + 1 < REC_TXT_MAX)
			rec->txt[o++] = '|';
		for (size_t j = 0; j < r->txt[i].len && o + 1 < REC_TXT_MAX; j++)
			rec->txt[o++] = (char)r->txt[i].data[j];
	}
	rec->txt[o] = '\0';
	rec->naddrs = r->naddrs;
	for (size_t i = 0; i < r->naddrs && i < 8; i++)
		snprintf(rec->addrs[i], sizeof(rec->addrs[i]), "%s", r->addrs[i]);
	rec->nmx = r->nmx;
	for (size_t i = 0; i < r->nmx && i < 8; i++)
		rec->mx[i] = r->mx[i];
}

static void
ctx_open(struct ctx *c, const char *servers, unsigned timeout_ms, uint32_t servfail_ttl,
         size_t cache_max)
{
	struct dns_opts o = {
		.servers = servers,
		.timeout_ms = timeout_ms,
		.tries = 1,
		.max_ttl = 86400,
		.negative_ttl = 3600,
		.servfail_ttl = servfail_ttl,
		.cache_max = cache_max,
	};
	const char *err = NULL;

	c->base = event_base_new();
	assert_non_null(c->base);
	c->dns = dns_new(c->base, &o, &err);
	if (c->dns == NULL)
		fail_msg("dns_new: %s", err);
	c->in_lookup = false;
	cur_ctx = c;
}

static void
ctx_open_live(struct ctx *c)
{
	if (!srv.up)
		skip();
	ctx_open(c, srv.servers, 1000, 0, 1000);
}

static void
ctx_close(struct ctx *c)
{
	dns_free(c->dns);
	event_base_free(c->base);
	cur_ctx = NULL;
}

static struct dns_query *
lookup(struct ctx *c, const char *name, enum dns_type type, struct rec *rec)
{
	struct dns_query *q;

	c->in_lookup = true;
	q = dns_lookup(c->dns, name, type, on_result, rec);
	c->in_lookup = false;
	assert_non_null(q);
	return q;
}

static void
on_guard(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Runs the loop until *calls reaches want or ms pass; every wait in this file is bounded. */
static void
run_until(struct ctx *c, const int *calls, int want, long ms)
{
	bool expired = false;
	struct event *guard = evtimer_new(c->base, on_guard, &expired);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	assert_non_null(guard);
	evtimer_add(guard, &tv);
	while ((calls == NULL || *calls < want) && !expired)
		event_base_loop(c->base, EVLOOP_ONCE);
	event_free(guard);
}

static void
run_for(struct ctx *c, long ms)
{
	run_until(c, NULL, 0, ms);
}

/* Runs the loop until the module has seen n answers in all, for at most ANSWER_MS. */
static void
run_until_answers(struct ctx *c, uint64_t n)
{
	struct dns_stats st;
	uint64_t end = now_ms() + ANSWER_MS;

	do {
		run_for(c, 10);
		dns_get_stats(c->dns, &st);
	} while (st.answers < n && now_ms() < end);
	assert_true(st.answers >= n);
}

static struct rec *
rec_new(void)
{
	struct rec *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	return r;
}

static void
lookup_wait(struct ctx *c, const char *name, enum dns_type type, struct rec *rec)
{
	int before = rec->calls;

	lookup(c, name, type, rec);
	assert_int_equal(rec->calls, before);
	run_until(c, &rec->calls, before + 1, ANSWER_MS);
	assert_int_equal(rec->calls, before + 1);
	assert_false(rec->during_lookup);
}

static struct dns_stats
stats(struct ctx *c)
{
	struct dns_stats st;

	dns_get_stats(c->dns, &st);
	return st;
}

/* ---- answers ---- */

static void
test_txt_multi_string(void **state)
{
	struct ctx c;
	struct rec *r;

	ctx_open_live(&c);
	r = rec_new();
	lookup_wait(&c, "_mta-sts.multi.test", DNS_TYPE_TXT, r);
	assert_int_equal(r->status, DNS_OK);
	assert_false(r->from_cache);
	assert_int_equal(r->ttl, 300);
	assert_int_equal(r->ntxt, 3);
	/* TXT-8: the strings of one RR are joined with nothing; RR order is the server's. */
	if (strcmp(r->txt, "v=STSv1; id=abc|other record") != 0 &&
	    strcmp(r->txt, "other record|v=STSv1; id=abc") != 0)
		fail_msg("txt: %s", r->txt);
	ctx_close(&c);
	free(r);
}

static void
test_txt_cname_chain(void **state)
{
	struct ctx c;
	struct rec *r;

	ctx_open_live(&c);
	r = rec_new();
	lookup_wait(&c, "_mta-sts.ALIAS.test.", DNS_TYPE_TXT, r);
	assert_int_equal(r->status, DNS_OK);
	assert_string_equal(r->txt, "v=STSv1; id=cname");
	assert_int_equal(r->ttl, 100); /* min(200, 150, 100) over the chain and the TXT */

	/*
	 * unbound's auth-zone answers NODATA at the end of a chain without a SOA, and RFC 2308
	 * says such an answer is not cached.
	 */
	lookup_wait(&c, "_mta-sts.alias.test", DNS_TYPE_MX, r);
	assert_int_equal(r->status, DNS_NODATA);
	assert_int_equal(r->ttl, 0);
	lookup_wait(&c, "_mta-sts.alias.test", DNS_TYPE_MX, r);
	assert_false(r->from_cache);
	ctx_close(&c);
	free(r);
}

static void
test_txt_large_over_tcp(void **state)
{
	struct ctx c;
	struct rec *r;

	ctx_open_live(&c);
	r = rec_new();
	lookup_wait(&c, "big.test", DNS_TYPE_TXT, r);
	assert_int_equal(r->status, DNS_OK);
	assert_int_equal(r->ntxt, BIG_STRINGS);
	assert_int_equal(strlen(r->txt), BIG_STRINGS * BIG_LEN);
	assert_int_equal(r->txt[BIG_LEN], 'b');
	ctx_close(&c);
	free(r);
}

static void
test_mx(void **state)
{
	struct ctx c;
	struct rec *r;
	int first;

	ctx_open_live(&c);
	r = rec_new();
	lookup_wait(&c, "mx.test", DNS_TYPE_MX, r);
	assert_int_equal(r->status, DNS_OK);
	assert_int_equal(r->nmx, 2);
	first = r->mx[0].preference == 10 ? 0 : 1;
	assert_int_equal(r->mx[first].preference, 10);
	assert_string_equal(r->mx[first].host, "mail.test");
	assert_int_equal(r->mx[1 - first].preference, 20);
	assert_string_equal(r->mx[1 - first].host, "mail2.test");

	lookup_wait(&c, "nullmx.test", DNS_TYPE_MX, r);
	assert_int_equal(r->status, DNS_OK);
	assert_int_equal(r->nmx, 1);
	assert_int_equal(r->mx[0].preference, 0);
	assert_string_equal(r->mx[0].host, "");
	ctx_close(&c);
	free(r);
}

static void
test_addr(void **state)
{
	struct ctx c;
	struct rec *r;

	ctx_open_live(&c);
	r = rec_new();
	lookup_wait(&c, "host.test", DNS_TYPE_ADDR, r);
	assert_int_equal(r->status, DNS_OK);
	assert_int_equal(r->naddrs, 2);
	assert_string_equal(r->addrs[0], "192.0.2.1");
	assert_string_equal(r->addrs[1], "2001:db8::1");
	assert_int_equal(stats(&c).queries_sent, 2);

	/* No AAAA: still OK with the A, for as long as the NODATA half may live (SOA: 30). */
	lookup_wait(&c, "v4only.test", DNS_TYPE_ADDR, r);
	assert_int_equal(r->status, DNS_OK);
	assert_int_equal(r->naddrs, 1);
	assert_string_equal(r->addrs[0], "192.0.2.2");
	assert_int_equal(r->ttl, 30);

	lookup_wait(&c, "missing.test", DNS_TYPE_ADDR, r);
	assert_int_equal(r->status, DNS_NXDOMAIN);
	assert_int_equal(r->naddrs, 0);
	ctx_close(&c);
	free(r);
}

static void
test_nxdomain_cached(void **state)
{
	struct ctx c;
	struct rec *r;
	struct dns_stats st;

	ctx_open_live(&c);
	r = rec_new();
	lookup_wait(&c, "_mta-sts.nothing.test", DNS_TYPE_TXT, r);
	assert_int_equal(r->status, DNS_NXDOMAIN);
	assert_int_equal(r->ttl, 30); /* min(SOA TTL as served, SOA MINIMUM 30) */
	assert_false(r->from_cache);
	lookup_wait(&c, "_mta-sts.nothing.test", DNS_TYPE_TXT, r);
	assert_int_equal(r->status, DNS_NXDOMAIN);
	assert_true(r->from_cache);
	assert_in_range(r->ttl, 29, 30);
	st = stats(&c);
	assert_int_equal(st.queries_sent, 1);
	assert_int_equal(st.cache_hits, 1);
	assert_int_equal(st.answers, 1);
	assert_int_equal(st.cache_entries, 1);
	ctx_close(&c);
	free(r);
}

static void
test_nodata(void **state)
{
	struct ctx c;
	struct rec *r;

	ctx_open_live(&c);
	r = rec_new();
	lookup_wait(&c, "host.test", DNS_TYPE_TXT, r);
	assert_int_equal(r->status, DNS_NODATA);
	assert_int_equal(r->ttl, 30);
	assert_int_equal(r->ntxt, 0);
	lookup_wait(&c, "host.test", DNS_TYPE_TXT, r);
	assert_true(r->from_cache);
	assert_int_equal(r->status, DNS_NODATA);
	ctx_close(&c);
	free(r);
}

static void
test_negative_ttl_capped(void **state)
{
	struct ctx c;
	struct rec *r;
	struct dns_opts o = {
		.timeout_ms = 1000, .tries = 1, .max_ttl = 60, .negative_ttl = 5, .cache_max = 10
	};
	const char *err;

	if (!srv.up)
		skip();
	r = rec_new();
	o.servers = srv.servers;
	c.base = event_base_new();
	c.dns = dns_new(c.base, &o, &err);
	c.in_lookup = false;
	cur_ctx = &c;
	assert_non_null(c.dns);
	lookup_wait(&c, "_mta-sts.nothing.test", DNS_TYPE_TXT, r);
	assert_int_equal(r->ttl, 5);
	lookup_wait(&c, "_mta-sts.multi.test", DNS_TYPE_TXT, r);
	assert_int_equal(r->ttl, 60);
	ctx_close(&c);
	free(r);
}

static void
test_refused_is_servfail(void **state)
{
	struct ctx c;
	struct rec *r;

	ctx_open_live(&c);
	r = rec_new();
	lookup_wait(&c, "x.refused.test", DNS_TYPE_TXT, r);
	assert_int_equal(r->status, DNS_SERVFAIL);
	assert_int_equal(r->ttl, 0); /* servfail_ttl 0: not cached */
	lookup_wait(&c, "x.refused.test", DNS_TYPE_TXT, r);
	assert_false(r->from_cache);
	assert_int_equal(stats(&c).queries_sent, 2);
	ctx_close(&c);
	free(r);
}

/* ---- the cache ---- */

static void
test_cache_hit(void **state)
{
	struct ctx c;
	struct rec *r;
	struct dns_stats st;

	ctx_open_live(&c);
	r = rec_new();
	lookup_wait(&c, "_mta-sts.alias.test", DNS_TYPE_TXT, r);
	assert_false(r->from_cache);
	/* Another spelling of the same name hits the same entry. */
	lookup_wait(&c, "_MTA-STS.Alias.Test.", DNS_TYPE_TXT, r);
	assert_true(r->from_cache);
	assert_int_equal(r->status, DNS_OK);
	assert_string_equal(r->txt, "v=STSv1; id=cname");
	assert_in_range(r->ttl, 99, 100);
	/* Same name, other type: its own entry (NODATA, with a SOA). */
	lookup_wait(&c, "_mta-sts.multi.test", DNS_TYPE_TXT, r);
	lookup_wait(&c, "_mta-sts.multi.test", DNS_TYPE_MX, r);
	assert_int_equal(r->status, DNS_NODATA);
	assert_false(r->from_cache);
	lookup_wait(&c, "_mta-sts.multi.test", DNS_TYPE_MX, r);
	assert_true(r->from_cache);
	st = stats(&c);
	assert_int_equal(st.queries_sent, 3);
	assert_int_equal(st.cache_hits, 2);
	assert_int_equal(st.cache_entries, 3);
	assert_true(st.latency_us_total > 0);
	assert_true(st.latency_us_max <= st.latency_us_total);
	ctx_close(&c);
	free(r);
}

static void
test_ttl_expiry(void **state)
{
	struct ctx c;
	struct rec *r;

	ctx_open_live(&c);
	r = rec_new();
	lookup_wait(&c, "short.test", DNS_TYPE_TXT, r);
	assert_int_equal(r->ttl, 1);
	lookup_wait(&c, "short.test", DNS_TYPE_TXT, r);
	assert_true(r->from_cache);
	assert_in_range(r->ttl, 0, 1); /* what is left, rounded down */
	run_for(&c, 1100);
	lookup_wait(&c, "short.test", DNS_TYPE_TXT, r);
	assert_false(r->from_cache);
	assert_string_equal(r->txt, "short-lived");
	assert_int_equal(stats(&c).queries_sent, 2);
	ctx_close(&c);
	free(r);
}

static void
test_forget(void **state)
{
	struct ctx c;
	struct rec *r;

	ctx_open_live(&c);
	r = rec_new();
	lookup_wait(&c, "_mta-sts.multi.test", DNS_TYPE_TXT, r);
	lookup_wait(&c, "_mta-sts.multi.test", DNS_TYPE_MX, r);
	assert_int_equal(stats(&c).cache_entries, 2);
	dns_cache_forget(c.dns, "_MTA-STS.multi.test.");
	assert_int_equal(stats(&c).cache_entries, 0);
	lookup_wait(&c, "_mta-sts.multi.test", DNS_TYPE_TXT, r);
	assert_false(r->from_cache);
	dns_cache_forget(c.dns, "not-cached.test");
	ctx_close(&c);
	free(r);
}

/* Forgetting a name while its query is out: the answer is delivered but not kept. */
static void
test_forget_in_flight(void **state)
{
	struct ctx c;
	struct rec *r;

	ctx_open_live(&c);
	r = rec_new();
	lookup(&c, "e1.test", DNS_TYPE_TXT, r);
	dns_cache_forget(c.dns, "e1.test");
	run_until(&c, &r->calls, 1, ANSWER_MS);
	assert_int_equal(r->status, DNS_OK);
	assert_int_equal(stats(&c).cache_entries, 0);
	lookup_wait(&c, "e1.test", DNS_TYPE_TXT, r);
	assert_false(r->from_cache);
	ctx_close(&c);
	free(r);
}

static void
test_evict_oldest(void **state)
{
	struct ctx c;
	struct rec *r;

	if (!srv.up)
		skip();
	r = rec_new();
	ctx_open(&c, srv.servers, 1000, 0, 2);
	lookup_wait(&c, "e1.test", DNS_TYPE_TXT, r);
	lookup_wait(&c, "e2.test", DNS_TYPE_TXT, r);
	lookup_wait(&c, "e3.test", DNS_TYPE_TXT, r);
	assert_int_equal(stats(&c).cache_entries, 2);
	lookup_wait(&c, "e3.test", DNS_TYPE_TXT, r);
	assert_true(r->from_cache);
	lookup_wait(&c, "e2.test", DNS_TYPE_TXT, r);
	assert_true(r->from_cache);
	lookup_wait(&c, "e1.test", DNS_TYPE_TXT, r);
	assert_false(r->from_cache);
	assert_string_equal(r->txt, "one");
	ctx_close(&c);
	free(r);
}

static void
test_no_cache(void **state)
{
	struct ctx c;
	struct rec *r;

	if (!srv.up)
		skip();
	r = rec_new();
	ctx_open(&c, srv.servers, 1000, 0, 0);
	lookup_wait(&c, "e1.test", DNS_TYPE_TXT, r);
	lookup_wait(&c, "e1.test", DNS_TYPE_TXT, r);
	assert_false(r->from_cache);
	assert_int_equal(stats(&c).queries_sent, 2);
	assert_int_equal(stats(&c).cache_entries, 0);
	ctx_close(&c);
	free(r);
}

/* ---- coalescing and cancellation ---- */

static void
test_coalesce(void **state)
{
	struct ctx c;
	struct rec *a, *b, *x, *y;

	ctx_open_live(&c);
	a = rec_new();
	b = rec_new();
	x = rec_new();
	y = rec_new();
	lookup(&c, "_mta-sts.multi.test", DNS_TYPE_TXT, a);
	lookup(&c, "_mta-sts.multi.test.", DNS_TYPE_TXT, b);
	lookup(&c, "host.test", DNS_TYPE_ADDR, x);
	lookup(&c, "HOST.test", DNS_TYPE_ADDR, y);
	assert_int_equal(stats(&c).queries_sent, 3); /* one TXT, one A, one AAAA */
	run_until(&c, &a->calls, 1, ANSWER_MS);
	run_until(&c, &b->calls, 1, ANSWER_MS);
	run_until(&c, &x->calls, 1, ANSWER_MS);
	run_until(&c, &y->calls, 1, ANSWER_MS);
	assert_int_equal(a->calls + b->calls + x->calls + y->calls, 4);
	assert_false(a->from_cache);
	assert_false(b->from_cache);
	assert_string_equal(a->txt, b->txt);
	assert_int_equal(y->naddrs, 2);
	assert_string_equal(y->addrs[0], "192.0.2.1");
	assert_int_equal(stats(&c).answers, 3);
	ctx_close(&c);
	free(a);
	free(b);
	free(x);
	free(y);
}

static void
test_cancel(void **state)
{
	struct ctx c;
	struct rec *a, *b, *h, *s;
	struct dns_query *qa;

	ctx_open_live(&c);
	a = rec_new();
	b = rec_new();
	h = rec_new();
	s = rec_new();
	/* One of two waiters on a flight. */
	qa = lookup(&c, "e2.test", DNS_TYPE_TXT, a);
	lookup(&c, "e2.test", DNS_TYPE_TXT, b);
	dns_cancel(qa);
	run_until(&c, &b->calls, 1, ANSWER_MS);
	assert_int_equal(b->calls, 1);
	assert_int_equal(a->calls, 0);

	/* A cache hit, cancelled before the loop turns. */
	dns_cancel(lookup(&c, "e2.test", DNS_TYPE_TXT, h));

	/* The only waiter: the flight still fills the cache. */
	dns_cancel(lookup(&c, "e3.test", DNS_TYPE_TXT, a));
	run_until_answers(&c, 2);
	assert_int_equal(a->calls, 0);
	assert_int_equal(h->calls, 0);
	lookup_wait(&c, "e3.test", DNS_TYPE_TXT, s);
	assert_true(s->from_cache);
	assert_string_equal(s->txt, "three");
	dns_cancel(NULL);
	ctx_close(&c);
	free(a);
	free(b);
	free(h);
	free(s);
}

struct self_cancel {
	struct dns_query *q;
	int calls;
};

static void
on_self_cancel(void *arg, const struct dns_result *r)
{
	struct self_cancel *sc = arg;

	sc->calls++;
	dns_cancel(sc->q); /* a no-op: the handle dies when this returns */
}

/* Callbacks may start lookups and cancel others still queued. */
struct chain {
	struct ctx *c;
	struct rec *next;
	struct dns_query *victim;
	int calls;
};

static void
on_chain(void *arg, const struct dns_result *r)
{
	struct chain *ch = arg;

	ch->calls++;
	dns_cancel(ch->victim);
	lookup(ch->c, "host.test", DNS_TYPE_ADDR, ch->next);
}

static void
test_callbacks_reenter(void **state)
{
	struct ctx c;
	struct rec *next, *victim;
	struct self_cancel sc = { NULL, 0 };
	struct chain ch = { &c, NULL, NULL, 0 };

	ctx_open_live(&c);
	next = rec_new();
	victim = rec_new();
	ch.next = next;
	lookup_wait(&c, "e1.test", DNS_TYPE_TXT, victim);
	/* Both answered from the cache in the same loop turn; the first cancels the second. */
	dns_lookup(c.dns, "e1.test", DNS_TYPE_TXT, on_chain, &ch);
	ch.victim = lookup(&c, "e1.test", DNS_TYPE_TXT, victim);
	run_until(&c, &next->calls, 1, ANSWER_MS);
	assert_int_equal(ch.calls, 1);
	assert_int_equal(victim->calls, 1); /* only the first, waited-for lookup */
	assert_int_equal(next->status, DNS_OK);
	assert_int_equal(next->naddrs, 2);

	sc.q = dns_lookup(c.dns, "e1.test", DNS_TYPE_TXT, on_self_cancel, &sc);
	run_until(&c, &sc.calls, 1, ANSWER_MS);
	assert_int_equal(sc.calls, 1);
	ctx_close(&c);
	free(next);
	free(victim);
}

/* ---- failures ---- */

static void
test_timeout(void **state)
{
	struct ctx c;
	struct rec *r;
	uint64_t t0;

	if (!srv.up)
		skip();
	r = rec_new();
	ctx_open(&c, srv.silent, 200, 5, 100);
	t0 = now_ms();
	lookup_wait(&c, "e1.test", DNS_TYPE_TXT, r);
	assert_int_equal(r->status, DNS_TIMEOUT);
	assert_int_equal(r->ttl, 0);
	assert_in_range(now_ms() - t0, 150, 2000);
	/* servfail_ttl 5: the failure is kept, so a dead server is not asked again at once. */
	lookup_wait(&c, "e1.test", DNS_TYPE_TXT, r);
	assert_int_equal(r->status, DNS_TIMEOUT);
	assert_true(r->from_cache);
	assert_int_equal(stats(&c).queries_sent, 1);

	lookup_wait(&c, "host.test", DNS_TYPE_ADDR, r);
	assert_int_equal(r->status, DNS_TIMEOUT);
	assert_int_equal(r->naddrs, 0);
	ctx_close(&c);
	free(r);
}

/* dns_free with queries out (one to a silent server, one queued from the cache): no callback. */
static void
test_free_pending(void **state)
{
	struct ctx c;
	struct rec *r, *w;

	if (!srv.up)
		skip();
	r = rec_new();
	w = rec_new();
	ctx_open(&c, srv.servers, 1000, 0, 10);
	lookup_wait(&c, "e1.test", DNS_TYPE_TXT, r);
	lookup(&c, "e1.test", DNS_TYPE_TXT, w);
	lookup(&c, "e2.test", DNS_TYPE_TXT, w);
	lookup(&c, "host.test", DNS_TYPE_ADDR, w);
	ctx_close(&c);
	assert_int_equal(w->calls, 0);

	ctx_open(&c, srv.silent, 5000, 0, 10);
	lookup(&c, "e1.test", DNS_TYPE_TXT, w);
	run_for(&c, 50);
	ctx_close(&c);
	assert_int_equal(w->calls, 0);
	free(r);
	free(w);
}

static void
test_bad_name(void **state)
{
	struct ctx c;
	struct rec *r;
	char name[300];

	r = rec_new();
	ctx_open(&c, "127.0.0.1:9", 200, 0, 10);
	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	lookup_wait(&c, name, DNS_TYPE_TXT, r);
	assert_int_equal(r->status, DNS_ERROR);
	assert_int_equal(r->ttl, 0);
	lookup_wait(&c, ".", DNS_TYPE_TXT, r);
	assert_int_equal(r->status, DNS_ERROR);
	/* A label over 63 octets: c-ares refuses it inside ares_query(), still no re-entry. */
	memset(name, 'b', 70);
	memcpy(name + 70, ".test", 6);
	lookup_wait(&c, name, DNS_TYPE_TXT, r);
	assert_int_equal(r->status, DNS_ERROR);
	assert_int_equal(stats(&c).cache_entries, 0);
	ctx_close(&c);
	free(r);
}

static void
test_bad_servers(void **state)
{
	struct event_base *base = event_base_new();
	struct dns_opts o = { .servers = "not an address", .cache_max = 1 };
	const char *err = NULL;
	struct dns *dns;

	assert_null(dns_new(base, &o, &err));
	assert_non_null(err);
	o.servers = "[::1]:5353,127.0.0.1:53,192.0.2.1";
	dns = dns_new(base, &o, &err);
	assert_non_null(dns);
	dns_free(dns);
	dns_free(NULL);
	event_base_free(base);
	assert_string_equal(dns_status_str(DNS_NXDOMAIN), "nxdomain");
	assert_string_equal(dns_status_str((enum dns_status)42), "unknown");
}

/* ---- cost of a cached answer ---- */

static int bench_calls;

static void
on_bench(void *arg, const struct dns_result *r)
{
	bench_calls++;
}

static void
bench(struct ctx *c, const char *name, const char *label)
{
	enum { N = 20000, BATCH = 100 };
	uint64_t t0;
	struct timespec a, b;

	bench_calls = 0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	t0 = now_ms();
	for (int i = 0; i < N; i += BATCH) {
		int want = bench_calls + BATCH;

		for (int j = 0; j < BATCH; j++)
			dns_lookup(c->dns, name, DNS_TYPE_TXT, on_bench, NULL);
		run_until(c, &bench_calls, want, ANSWER_MS);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_int_equal(bench_calls, N);
	assert_true(now_ms() - t0 < 60000);
	print_message("# cached %s: %.0f ns per lookup, callback included\n", label,
	              ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / N);
}

static void
test_cached_cost(void **state)
{
	struct ctx c;
	struct rec *r;

	ctx_open_live(&c);
	r = rec_new();
	lookup_wait(&c, "_mta-sts.nothing.test", DNS_TYPE_TXT, r);
	lookup_wait(&c, "_mta-sts.multi.test", DNS_TYPE_TXT, r);
	bench(&c, "_mta-sts.nothing.test", "NXDOMAIN");
	bench(&c, "_mta-sts.multi.test", "TXT");
	assert_int_equal(stats(&c).queries_sent, 2);
	ctx_close(&c);
	free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_txt_multi_string),
		cmocka_unit_test(test_txt_cname_chain),
		cmocka_unit_test(test_txt_large_over_tcp),
		cmocka_unit_test(test_mx),
		cmocka_unit_test(test_addr),
		cmocka_unit_test(test_nxdomain_cached),
		cmocka_unit_test(test_nodata),
		cmocka_unit_test(test_negative_ttl_capped),
		cmocka_unit_test(test_refused_is_servfail),
		cmocka_unit_test(test_cache_hit),
		cmocka_unit_test(test_ttl_expiry),
		cmocka_unit_test(test_forget),
		cmocka_unit_test(test_forget_in_flight),
		cmocka_unit_test(test_evict_oldest),
		cmocka_unit_test(test_no_cache),
		cmocka_unit_test(test_coalesce),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_callbacks_reenter),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_free_pending),
		cmocka_unit_test(test_bad_name),
		cmocka_unit_test(test_bad_servers),
		cmocka_unit_test(test_cached_cost),
	};

	return cmocka_run_group_tests_name("dns_live", tests, group_setup, group_teardown);
}
