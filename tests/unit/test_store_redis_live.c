/* test_store_redis_live.c: the redis store against real redis-server processes run by this test. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "base/log.h"
#include "config/config.h"
#include "store/store.h"
#include "store/store_redis.h"

/*
 * Every server listens on a unix socket in a mkdtemp directory (no network namespace needed);
 * one case adds TCP on 127.0.0.1. Nothing persists unless a case asks for SAVE. Servers are
 * stopped by PID; PR_SET_PDEATHSIG takes them down if this test dies.
 */
#define REDIS_PATH  "/usr/bin/redis-server"
#define START_MS    5000
#define STOP_MS     5000
#define ANSWER_MS   3000 /* any single answer from a live server */
#define SERVERS_MAX 8

struct server {
	pid_t pid;
	char sock[128];
	int port; /* 0: unix socket only */
	const char *password;
	char *const *extra; /* more redis-server arguments, NULL-terminated */
};

static struct {
	bool installed;
	char dir[64];
	struct server main; /* shared by the cases that need nothing special */
	struct server *extra[SERVERS_MAX];
	int saved_stderr; /* a case that captures the log restores it, or its teardown does */
} g = { .saved_stderr = -1 };

/* ---- time and processes ---- */

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

static bool
reap(pid_t pid, long ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	do {
		pid_t r = waitpid(pid, NULL, WNOHANG);

		if (r == pid || (r == -1 && errno == ECHILD))
			return true;
		sleep_ms(10);
	} while (now_ms() < end);
	return false;
}

/* A sync client to sv, authenticated when sv has a password; NULL if it does not answer. */
static redisContext *
raw_connect(const struct server *sv)
{
	struct timeval tv = { 1, 0 };
	redisContext *c = redisConnectUnixWithTimeout(sv->sock, tv);
	redisReply *r;

	if (c == NULL || c->err != 0) {
		if (c != NULL)
			redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	if (sv->password != NULL) {
		r = redisCommand(c, "AUTH %s", sv->password);
		if (r == NULL) {
			redisFree(c);
			return NULL;
		}
		freeReplyObject(r);
	}
	return c;
}

static bool
server_answers(const struct server *sv)
{
	redisContext *c = raw_connect(sv);
	redisReply *r;
	bool ok;

	if (c == NULL)
		return false;
	r = redisCommand(c, "PING");
	ok = r != NULL && r->type == REDIS_REPLY_STATUS;
	if (r != NULL)
		freeReplyObject(r);
	redisFree(c);
	return ok;
}

static void
server_stop(struct server *sv, int sig)
{
	if (sv->pid <= 0)
		return;
	kill(sv->pid, SIGCONT);
	kill(sv->pid, sig);
	if (!reap(sv->pid, STOP_MS)) {
		kill(sv->pid, SIGKILL);
		reap(sv->pid, STOP_MS);
	}
	sv->pid = -1;
}

static int
server_exec(struct server *sv)
{
	char port[16], log[192], dump[192];
	const char *argv[32];
	int n = 0;

	snprintf(port, sizeof(port), "%d", sv->port);
	snprintf(log, sizeof(log), "%s.log", sv->sock);
	snprintf(dump, sizeof(dump), "%s.rdb", strrchr(sv->sock, '/') + 1);
	argv[n++] = "redis-server";
	argv[n++] = "--port";
	argv[n++] = port;
	if (sv->port != 0) {
		argv[n++] = "--bind";
		argv[n++] = "127.0.0.1";
	}
	argv[n++] = "--unixsocket";
	argv[n++] = sv->sock;
	argv[n++] = "--unixsocketperm";
	argv[n++] = "700";
	argv[n++] = "--save";
	argv[n++] = "";
	argv[n++] = "--appendonly";
	argv[n++] = "no";
	argv[n++] = "--dir";
	argv[n++] = g.dir;
	argv[n++] = "--dbfilename";
	argv[n++] = dump; /* one per server, named after its socket */
	argv[n++] = "--logfile";
	argv[n++] = log;
	if (sv->password != NULL) {
		argv[n++] = "--requirepass";
		argv[n++] = sv->password;
	}
	for (size_t i = 0; sv->extra != NULL && sv->extra[i] != NULL && n < 30; i++)
		argv[n++] = sv->extra[i];
	argv[n] = NULL;

	sv->pid = fork();
	if (sv->pid == -1)
		return -1;
	if (sv->pid == 0) {
		int null = open("/dev/null", O_RDWR);

		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() == 1)
			_exit(127);
		if (null != -1) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
		}
		execv(REDIS_PATH, (char *const *)argv);
		_exit(127);
	}
	return 0;
}

/* Starts sv (again, on the same socket and port) and waits until it answers PING. */
static int
server_start(struct server *sv)
{
	uint64_t end;

	if (server_exec(sv) == -1)
		return -1;
	end = now_ms() + START_MS;
	while (now_ms() < end) {
		if (waitpid(sv->pid, NULL, WNOHANG) == sv->pid) {
			sv->pid = -1;
			return -1;
		}
		if (server_answers(sv))
			return 0;
		sleep_ms(10);
	}
	server_stop(sv, SIGKILL);
	return -1;
}

/* A port free on 127.0.0.1 right now: bound to 0 and released; the caller retries a clash. */
static int
free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd != -1 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	if (fd != -1)
		close(fd);
	return port;
}

/* A server of this case alone; stopped by the case's teardown even when an assertion fails. */
static struct server *
extra_server(const char *name, bool tcp, const char *password, char *const *extra)
{
	struct server *sv = calloc(1, sizeof(*sv));
	size_t i;

	assert_non_null(sv);
	sv->pid = -1;
	sv->password = password;
	sv->extra = extra;
	snprintf(sv->sock, sizeof(sv->sock), "%s/%s.sock", g.dir, name);
	for (i = 0; i < SERVERS_MAX; i++) {
		if (g.extra[i] == NULL) {
			g.extra[i] = sv;
			break;
		}
	}
	assert_true(i < SERVERS_MAX);
	for (int tries = 0; tries < 5; tries++) {
		sv->port = tcp ? free_port() : 0;
		if (server_start(sv) == 0)
			return sv;
	}
	fail_msg("cannot start %s for %s", REDIS_PATH, name);
	return NULL;
}

static void
stderr_restore(void)
{
	if (g.saved_stderr == -1)
		return;
	fflush(stderr);
	dup2(g.saved_stderr, STDERR_FILENO);
	close(g.saved_stderr);
	g.saved_stderr = -1;
}

static int
case_teardown(void **state)
{
	stderr_restore();
	for (size_t i = 0; i < SERVERS_MAX; i++) {
		if (g.extra[i] == NULL)
			continue;
		server_stop(g.extra[i], SIGTERM);
		free(g.extra[i]);
		g.extra[i] = NULL;
	}
	return 0;
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
group_setup(void **state)
{
	signal(SIGPIPE, SIG_IGN);
	if (access(REDIS_PATH, X_OK) == -1)
		return 0;
	g.installed = true;
	snprintf(g.dir, sizeof(g.dir), "/tmp/mtastsd-redis-XXXXXX");
	if (mkdtemp(g.dir) == NULL)
		return -1;
	g.main.pid = -1;
	snprintf(g.main.sock, sizeof(g.main.sock), "%s/main.sock", g.dir);
	return server_start(&g.main);
}

static int
group_teardown(void **state)
{
	case_teardown(state);
	server_stop(&g.main, SIGTERM);
	if (g.dir[0] != '\0')
		nftw(g.dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* ---- raw access, as another tool or relay sees the server ---- */

static redisReply *
raw(const struct server *sv, const char *fmt, ...)
{
	redisContext *c = raw_connect(sv);
	redisReply *r;
	va_list ap;

	assert_non_null(c);
	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	assert_non_null(r);
	return r;
}

static long long
raw_int(const struct server *sv, const char *fmt, const char *key)
{
	redisReply *r = raw(sv, fmt, key);
	long long v;

	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	v = r->integer;
	freeReplyObject(r);
	return v;
}

static void
raw_set(const struct server *sv, const char *key, const char *value, size_t len)
{
	freeReplyObject(raw(sv, "SET %s %b", key, value, len));
}

/* ---- one store under test ---- */

struct tstore {
	struct event_base *base;
	struct config cfg;
	char address[160];
	void *impl;
};

static const struct store_ops *const ops = &store_redis_ops;

static void
ts_open_cfg(struct tstore *t, struct event_base *base)
{
	char *err = NULL;

	t->base = base;
	t->impl = store_redis_open(base, &t->cfg, &err);
	if (t->impl == NULL)
		fail_msg("store_redis_open: %s", err != NULL ? err : "?");
	assert_null(err);
}

static void
ts_config(struct tstore *t, const struct server *sv, const char *prefix, unsigned timeout_ms)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->address, sizeof(t->address), "unix:%s", sv->sock);
	t->cfg.redis.address.family = CONFIG_FAMILY_UNIX;
	t->cfg.redis.address.text = t->address;
	t->cfg.redis.address.path = sv->sock;
	t->cfg.redis.prefix = prefix;
	t->cfg.redis.user = "";
	t->cfg.redis.password = sv->password != NULL ? sv->password : "";
	t->cfg.redis.timeout_ms = timeout_ms;
}

static void
ts_open(struct tstore *t, struct event_base *base, const struct server *sv, const char *prefix,
        unsigned timeout_ms)
{
	ts_config(t, sv, prefix, timeout_ms);
	ts_open_cfg(t, base);
}

static void
ts_close(struct tstore *t)
{
	if (t->impl != NULL)
		ops->close(t->impl);
	t->impl = NULL;
}

static struct store_status
ts_status(const struct tstore *t)
{
	struct store_status st;

	ops->status(t->impl, &st);
	return st;
}

/* ---- the loop, always bounded ---- */

typedef bool (*pred_fn)(void *arg);

struct waiter {
	struct event_base *base;
	pred_fn pred;
	void *arg;
	uint64_t end;
	bool ok;
};

static void
waiter_tick(evutil_socket_t fd, short what, void *arg)
{
	struct waiter *w = arg;

	if (w->pred != NULL && w->pred(w->arg))
		w->ok = true;
	if (w->ok || now_ms() >= w->end)
		event_base_loopbreak(w->base);
}

/* Runs the loop until pred holds (checked every 2 ms) or ms pass; returns whether it held. */
static bool
run_until(struct event_base *base, pred_fn pred, void *arg, long ms)
{
	struct waiter w = { base, pred, arg, now_ms() + (uint64_t)ms, false };
	struct event *ev = event_new(base, -1, EV_PERSIST, waiter_tick, &w);
	struct timeval tv = { 0, 2000 };

	assert_non_null(ev);
	if (pred != NULL && pred(arg))
		w.ok = true;
	else {
		event_add(ev, &tv);
		event_base_dispatch(base);
	}
	event_free(ev);
	return w.ok;
}

static void
run_for(struct event_base *base, long ms)
{
	run_until(base, NULL, NULL, ms);
}

static bool
is_connected(void *arg)
{
	return ts_status(arg).connected;
}

static bool
is_flushed(void *arg)
{
	struct store_status st = ts_status(arg);

	return st.connected && st.pending == 0;
}

static bool
is_idle(void *arg)
{
	struct store_status st = ts_status(arg);

	return st.connected && st.pending == 0 && strcmp(st.detail, "connected") == 0;
}

static void
wait_connected(struct tstore *t)
{
	if (!run_until(t->base, is_connected, t, ANSWER_MS))
		fail_msg("not connected: %s", ts_status(t).detail);
}

static void
wait_flushed(struct tstore *t)
{
	if (!run_until(t->base, is_flushed, t, ANSWER_MS))
		fail_msg("not flushed: %s, pending %llu", ts_status(t).detail,
		         (unsigned long long)ts_status(t).pending);
}

/* ---- records and answers ---- */

struct answer {
	int calls;
	bool inside; /* the callback ran inside get() */
	bool hit;
	uint64_t at_ms; /* when the callback ran */
	char domain[256];
	char id[64];
	char *text;
	size_t text_len;
	uint32_t fetched_at, expires_at, last_used;
	void *cancel_impl; /* cancels cancel_g from this callback */
	struct store_get *cancel_g;
};

static bool in_get;

static void
on_answer(void *arg, const struct store_record *rec)
{
	struct answer *a = arg;

	a->calls++;
	a->inside = a->inside || in_get;
	a->at_ms = now_ms();
	a->hit = rec != NULL;
	if (rec != NULL) {
		snprintf(a->domain, sizeof(a->domain), "%s", rec->domain);
		snprintf(a->id, sizeof(a->id), "%s", rec->id);
		free(a->text);
		a->text = malloc(rec->text_len + 1);
		assert_non_null(a->text);
		memcpy(a->text, rec->text, rec->text_len + 1);
		a->text_len = rec->text_len;
		a->fetched_at = rec->fetched_at;
		a->expires_at = rec->expires_at;
		a->last_used = rec->last_used;
	}
	if (a->cancel_g != NULL) {
		ops->cancel(a->cancel_impl, a->cancel_g);
		a->cancel_g = NULL;
	}
}

static void
answer_reset(struct answer *a)
{
	free(a->text);
	memset(a, 0, sizeof(*a));
}

static struct store_get *
get(struct tstore *t, const char *domain, struct answer *a)
{
	struct store_get *sg;

	in_get = true;
	sg = ops->get(t->impl, domain, on_answer, a);
	in_get = false;
	assert_non_null(sg);
	assert_int_equal(a->calls, 0);
	return sg;
}

static bool
answered(void *arg)
{
	return ((struct answer *)arg)->calls > 0;
}

/* A get run to its answer; the answer is reset first. */
static void
get_wait(struct tstore *t, const char *domain, struct answer *a)
{
	answer_reset(a);
	get(t, domain, a);
	if (!run_until(t->base, answered, a, ANSWER_MS))
		fail_msg("no answer for %s", domain);
	assert_int_equal(a->calls, 1);
	assert_false(a->inside);
}

static struct store_record
rec_make(const char *domain, const char *id, const char *text, uint32_t fetched, uint32_t expires,
         uint32_t used)
{
	struct store_record r = {
		.domain = domain,
		.id = id,
		.text = text,
		.text_len = strlen(text),
		.fetched_at = fetched,
		.expires_at = expires,
		.last_used = used,
	};

	return r;
}

static uint32_t
wall(void)
{
	return (uint32_t)time(NULL);
}

static const char policy_text[] = "version: STSv1\r\n"
                                  "mode: enforce\r\n"
                                  "mx: mail.example.com\r\n"
                                  "mx: *.backup.example.com\r\n"
                                  "max_age: 86400\r\n"
                                  "# caf\xc3\xa9 \"quotes\" and a trailing line without CRLF";

static void
skip_unless_installed(void)
{
	if (!g.installed)
		skip();
}

/* ---- cases ---- */

/* One fetch by any relay serves all: A writes, B reads the identical record. */
static void
test_share(void **state)
{
	struct event_base *base;
	struct tstore a, b;
	struct answer ans = { 0 };
	uint32_t now = wall();
	struct store_record r = rec_make("share.example", "20240101T000000", policy_text, now - 5,
	                                 now + 86400, now - 1);
	struct store_status st;

	skip_unless_installed();
	base = event_base_new();
	assert_non_null(base);
	ts_open(&a, base, &g.main, "share:", 1000);
	ts_open(&b, base, &g.main, "share:", 1000);
	wait_connected(&a);
	wait_connected(&b);
	st = ts_status(&a);
	assert_string_equal(st.backend, "redis");
	assert_string_equal(st.detail, "connected");

	ops->put(a.impl, &r);
	wait_flushed(&a);
	st = ts_status(&a);
	assert_int_equal(st.puts, 1);
	assert_int_equal(st.written, 1);
	assert_int_equal(st.write_errors, 0);

	get_wait(&b, "share.example", &ans);
	assert_true(ans.hit);
	assert_string_equal(ans.domain, "share.example");
	assert_string_equal(ans.id, "20240101T000000");
	assert_int_equal(ans.text_len, strlen(policy_text));
	assert_memory_equal(ans.text, policy_text, strlen(policy_text));
	assert_int_equal(ans.text[ans.text_len], '\0');
	assert_int_equal(ans.fetched_at, now - 5);
	assert_int_equal(ans.expires_at, now + 86400);
	assert_int_equal(ans.last_used, now - 1);
	st = ts_status(&b);
	assert_int_equal(st.gets, 1);
	assert_int_equal(st.get_hits, 1);
	assert_int_equal(ts_status(&b).puts, 0);

	answer_reset(&ans);
	ts_close(&a);
	ts_close(&b);
	event_base_free(base);
}

/* Newer wins in Redis, across relays; the same fetch only moves last_used forward. */
static void
test_newer_wins(void **state)
{
	struct event_base *base;
	struct tstore a, b;
	struct answer ans = { 0 };
	uint32_t now = wall();
	struct store_record one =
	        rec_make("nw.example", "one", "text one", now - 100, now + 3600, now - 100);
	struct store_record old =
	        rec_make("nw.example", "old", "text old", now - 200, now + 7200, now);
	struct store_record two =
	        rec_make("nw.example", "two", "text two", now - 50, now + 3600, now - 50);
	struct store_record used = two, stale = two;

	used.last_used = now - 10;
	stale.last_used = now - 40;
	skip_unless_installed();
	base = event_base_new();
	assert_non_null(base);
	ts_open(&a, base, &g.main, "nw:", 1000);
	ts_open(&b, base, &g.main, "nw:", 1000);
	wait_connected(&a);
	wait_connected(&b);

	ops->put(a.impl, &one);
	wait_flushed(&a);
	/* Another relay writes an older fetch (a longer max_age does not make it newer). */
	ops->put(b.impl, &old);
	wait_flushed(&b);
	get_wait(&a, "nw.example", &ans);
	assert_true(ans.hit);
	assert_string_equal(ans.id, "one");
	assert_string_equal(ans.text, "text one");

	ops->put(b.impl, &two);
	wait_flushed(&b);
	get_wait(&a, "nw.example", &ans);
	assert_true(ans.hit);
	assert_string_equal(ans.id, "two");
	assert_int_equal(ans.last_used, now - 50);

	ops->put(a.impl, &used);
	wait_flushed(&a);
	get_wait(&b, "nw.example", &ans);
	assert_string_equal(ans.id, "two");
	assert_int_equal(ans.last_used, now - 10);

	/* last_used never moves back. */
	ops->put(b.impl, &stale);
	wait_flushed(&b);
	get_wait(&a, "nw.example", &ans);
	assert_int_equal(ans.fetched_at, now - 50);
	assert_int_equal(ans.last_used, now - 10);

	/* In one relay's pending set the same rule holds: written while A is busy. */
	ops->put(a.impl, &one);
	ops->put(a.impl, &used);
	ops->put(a.impl, &old);
	get_wait(&a, "nw.example", &ans); /* answered from A's own pending write */
	assert_string_equal(ans.id, "two");
	assert_int_equal(ans.last_used, now - 10);
	wait_flushed(&a);
	get_wait(&b, "nw.example", &ans);
	assert_string_equal(ans.id, "two");

	answer_reset(&ans);
	ts_close(&a);
	ts_close(&b);
	event_base_free(base);
}

/* Redis itself drops a policy at its expiry: the key's TTL is expires_at. */
static void
test_ttl(void **state)
{
	struct event_base *base;
	struct tstore a;
	uint32_t now = wall();
	struct store_record r = rec_make("ttl.example", "t", "text", now, now + 3600, now);
	struct store_record gone = rec_make("gone.example", "t", "text", now - 100, now - 1, now);
	long long ttl;
	redisReply *rep;

	skip_unless_installed();
	base = event_base_new();
	assert_non_null(base);
	ts_open(&a, base, &g.main, "ttl:", 1000);
	wait_connected(&a);
	ops->put(a.impl, &r);
	ops->put(a.impl, &gone); /* already expired: not written at all */
	wait_flushed(&a);
	ttl = raw_int(&g.main, "TTL %s", "ttl:ttl.example");
	assert_true(ttl > 3590 && ttl <= 3600);
	rep = raw(&g.main, "EXPIRETIME %s", "ttl:ttl.example"); /* Redis >= 7.0 */
	if (rep->type == REDIS_REPLY_INTEGER)
		assert_int_equal(rep->integer, now + 3600);
	freeReplyObject(rep);
	assert_int_equal(raw_int(&g.main, "EXISTS %s", "ttl:gone.example"), 0);

	ts_close(&a);
	event_base_free(base);
}

/* Missing and malformed values are "no record"; a hand-written well-formed one is read. */
static void
test_missing_malformed(void **state)
{
	struct event_base *base;
	struct tstore a;
	struct answer ans = { 0 };
	uint32_t now = wall();
	char good[256], key[64], *big;
	const char *bad[] = {
		"garbage",
		"",
		"v1",
		"v2 1 4000000000 1 id 2\nab",
		"v1 1 4000000000 1 id 5\nab",                                /* length mismatch */
		"v1 1 4000000000 1 id 1\nab",                                /* length mismatch */
		"v1 x 4000000000 1 id 2\nab",                                /* not a number */
		"v1 -1 4000000000 1 id 2\nab",                               /* signed */
		"v1 1 4294967296 1 id 2\nab",                                /* over uint32 */
		"v1 1 4000000000 1 i-d 2\nab",                               /* id alphabet */
		"v1 1 4000000000 1  2\nab",                                  /* empty id */
		"v1 1 4000000000 1 id 2 \nab",                               /* stray space */
		"v1 1 4000000000 1 id\nab",                                  /* no length */
		"v1 1 4000000000 1 012345678901234567890123456789012 2\nab", /* id of 33 */
		"v1 1 2 1 id 2\nab",                                         /* expired */
		"v1 100 50 1 id 2\nab", /* expires before fetched */
	};
	const char nul[] = "v1 1 4000000000 1 id 3\na\0b";
	size_t hdr;

	skip_unless_installed();
	base = event_base_new();
	assert_non_null(base);
	ts_open(&a, base, &g.main, "mal:", 1000);
	wait_connected(&a);

	get_wait(&a, "missing.example", &ans);
	assert_false(ans.hit);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(key, sizeof(key), "mal:bad%zu.example", i);
		raw_set(&g.main, key, bad[i], strlen(bad[i]));
		snprintf(key, sizeof(key), "bad%zu.example", i);
		get_wait(&a, key, &ans);
		if (ans.hit)
			fail_msg("value \"%s\" was taken for a record", bad[i]);
	}
	raw_set(&g.main, "mal:nul.example", nul, sizeof(nul) - 1);
	get_wait(&a, "nul.example", &ans);
	assert_false(ans.hit);

	/* Too long: a 70000-byte text; GETRANGE brings back only the first bytes of it. */
	big = malloc(80000);
	assert_non_null(big);
	hdr = (size_t)snprintf(big, 80000, "v1 1 4000000000 1 id 70000\n");
	memset(big + hdr, 'a', 70000);
	raw_set(&g.main, "mal:big.example", big, hdr + 70000);
	get_wait(&a, "big.example", &ans);
	assert_false(ans.hit);
	/* The largest text allowed still reads. */
	hdr = (size_t)snprintf(big, 80000, "v1 1 4000000000 1 id 65536\n");
	memset(big + hdr, 'b', 65536);
	raw_set(&g.main, "mal:max.example", big, hdr + 65536);
	get_wait(&a, "max.example", &ans);
	assert_true(ans.hit);
	assert_int_equal(ans.text_len, 65536);
	free(big);

	/* Another type under the key. */
	freeReplyObject(raw(&g.main, "RPUSH %s %s", "mal:list.example", "x"));
	get_wait(&a, "list.example", &ans);
	assert_false(ans.hit);

	/* The format, written by hand (another tool can seed the fleet). */
	snprintf(good, sizeof(good), "v1 %u %u %u abcXYZ019 9\nversion:1", now - 10, now + 600,
	         now - 5);
	raw_set(&g.main, "mal:good.example", good, strlen(good));
	get_wait(&a, "good.example", &ans);
	assert_true(ans.hit);
	assert_string_equal(ans.id, "abcXYZ019");
	assert_string_equal(ans.text, "version:1");
	assert_int_equal(ans.fetched_at, now - 10);
	assert_int_equal(ans.expires_at, now + 600);
	assert_int_equal(ans.last_used, now - 5);
	assert_true(ts_status(&a).connected);

	/* Our put replaces a value that is not ours, never a key of another type. */
	{
		struct store_record r = rec_make("bad0.example", "x", "t", now, now + 60, now);
		struct store_record l = rec_make("list.example", "x", "t", now, now + 60, now);

		ops->put(a.impl, &r);
		ops->put(a.impl, &l);
		wait_flushed(&a);
		get_wait(&a, "bad0.example", &ans);
		assert_true(ans.hit);
		assert_int_equal(ts_status(&a).write_errors, 1);
		assert_int_equal(raw_int(&g.main, "LLEN %s", "mal:list.example"), 1);
	}

	answer_reset(&ans);
	ts_close(&a);
	event_base_free(base);
}

static bool
dels_done(void *arg)
{
	return is_idle(arg);
}

/* A prefix is a namespace: other prefixes and other applications' keys are never touched. */
static void
test_prefix_isolation(void **state)
{
	struct event_base *base;
	struct tstore a, c;
	struct answer ans = { 0 };
	uint32_t now = wall();
	struct store_record d1 = rec_make("d1.example", "a1", "A one", now, now + 600, now);
	struct store_record d2 = rec_make("d2.example", "a2", "A two", now, now + 600, now);
	struct store_record c1 = rec_make("d1.example", "c1", "C one", now, now + 600, now);
	struct store_record d3 = rec_make("d3.example", "a3", "A three", now, now + 600, now);
	char key[64];

	skip_unless_installed();
	base = event_base_new();
	assert_non_null(base);
	ts_open(&a, base, &g.main, "p*a:", 1000); /* a glob character, matched literally */
	ts_open(&c, base, &g.main, "pc:", 1000);
	wait_connected(&a);
	wait_connected(&c);
	ops->put(a.impl, &d1);
	ops->put(a.impl, &d2);
	ops->put(c.impl, &c1);
	wait_flushed(&a);
	wait_flushed(&c);
	raw_set(&g.main, "p*a:foreign", "not a policy", 12);
	raw_set(&g.main, "p*a:foreign2", "v2 something else", 17);
	raw_set(&g.main, "pxa:lookalike", "v1 1 4000000000 1 id 1\nx", 24);
	/* Enough keys for several SCAN steps. */
	for (int i = 0; i < 1200; i++) {
		struct store_record r = rec_make(key, "m", "many", now, now + 600, now);

		snprintf(key, sizeof(key), "m%d.example", i);
		ops->put(a.impl, &r);
	}
	wait_flushed(&a);
	assert_int_equal(ts_status(&a).written, 1202);

	get_wait(&c, "d2.example", &ans);
	assert_false(ans.hit);
	get_wait(&c, "d1.example", &ans);
	assert_true(ans.hit);
	assert_string_equal(ans.text, "C one");

	ops->del(a.impl, "d1.example");
	wait_flushed(&a);
	assert_int_equal(raw_int(&g.main, "EXISTS %s", "p*a:d1.example"), 0);
	assert_int_equal(raw_int(&g.main, "EXISTS %s", "pc:d1.example"), 1);
	assert_int_equal(raw_int(&g.main, "EXISTS %s", "p*a:d2.example"), 1);

	ops->del(a.impl, NULL);
	/* A put after del(NULL) survives it. */
	ops->put(a.impl, &d3);
	assert_true(run_until(base, dels_done, &a, 5000));
	assert_int_equal(raw_int(&g.main, "EXISTS %s", "p*a:d2.example"), 0);
	assert_int_equal(raw_int(&g.main, "EXISTS %s", "p*a:m0.example"), 0);
	assert_int_equal(raw_int(&g.main, "EXISTS %s", "p*a:m1199.example"), 0);
	assert_int_equal(raw_int(&g.main, "EXISTS %s", "p*a:d3.example"), 1);
	assert_int_equal(raw_int(&g.main, "EXISTS %s", "p*a:foreign"), 1);
	assert_int_equal(raw_int(&g.main, "EXISTS %s", "p*a:foreign2"), 1);
	assert_int_equal(raw_int(&g.main, "EXISTS %s", "pxa:lookalike"), 1);
	assert_int_equal(raw_int(&g.main, "EXISTS %s", "pc:d1.example"), 1);
	get_wait(&a, "d2.example", &ans);
	assert_false(ans.hit);
	get_wait(&a, "d3.example", &ans);
	assert_true(ans.hit);

	answer_reset(&ans);
	ts_close(&a);
	ts_close(&c);
	event_base_free(base);
}

/* Counts lines of the file at path that contain needle. */
static int
count_lines(const char *path, const char *needle)
{
	char line[1024];
	int n = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, needle) != NULL)
			n++;
	fclose(f);
	return n;
}

/* Asserts that n lines of the captured log at path contain needle; shows the log if not. */
static void
assert_log_count(const char *path, const char *needle, int n)
{
	char line[1024];
	FILE *f;
	int got = count_lines(path, needle);

	if (got == n)
		return;
	if ((f = fopen(path, "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL)
			print_message("# log: %s", line);
		fclose(f);
	}
	fail_msg("%d log lines with \"%s\", not %d", got, needle, n);
}

/* Sends the log (stderr) to path until stderr_restore(). */
static void
stderr_capture(const char *path)
{
	int fd;

	fflush(stderr);
	g.saved_stderr = dup(STDERR_FILENO);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(g.saved_stderr != -1 && fd != -1);
	dup2(fd, STDERR_FILENO);
	close(fd);
}

static bool
auth_failed(void *arg)
{
	struct store_status st = ts_status(arg);

	return !st.connected && strncmp(st.detail, "auth failed", 11) == 0;
}

/* requirepass and an ACL user: the right credentials work, wrong ones are a state. */
static void
test_auth(void **state)
{
	struct event_base *base;
	struct server *sv;
	struct tstore t;
	struct answer ans = { 0 };
	uint32_t now = wall();
	struct store_record r = rec_make("auth.example", "a", "auth text", now, now + 600, now);
	redisReply *rep;
	char logpath[192], detail[256];

	skip_unless_installed();
	base = event_base_new();
	assert_non_null(base);
	sv = extra_server("auth", false, "s3cret pass", NULL);
	rep = raw(sv, "ACL SETUSER relay on >relaypw ~relay:* +@all");
	assert_int_equal(rep->type, REDIS_REPLY_STATUS);
	freeReplyObject(rep);

	/* The password alone: the default user. */
	ts_open(&t, base, sv, "relay:", 1000);
	wait_connected(&t);
	ops->put(t.impl, &r);
	wait_flushed(&t);
	ts_close(&t);

	/* An ACL user reads what the default user wrote. */
	ts_config(&t, sv, "relay:", 1000);
	t.cfg.redis.user = "relay";
	t.cfg.redis.password = "relaypw";
	ts_open_cfg(&t, base);
	wait_connected(&t);
	get_wait(&t, "auth.example", &ans);
	assert_true(ans.hit);
	assert_string_equal(ans.text, "auth text");
	ts_close(&t);

	/* Wrong password for the user: the log says so once, however often it retries. */
	snprintf(logpath, sizeof(logpath), "%s/auth-stderr.log", g.dir);
	stderr_capture(logpath);
	ts_config(&t, sv, "relay:", 1000);
	t.cfg.redis.user = "relay";
	t.cfg.redis.password = "wrong";
	ts_open_cfg(&t, base);
	assert_true(run_until(base, auth_failed, &t, ANSWER_MS));
	assert_non_null(strstr(ts_status(&t).detail, "AUTH"));
	get_wait(&t, "auth.example", &ans);
	assert_false(ans.hit);
	run_for(base, 1700); /* retries after 0.5 s and 1 s */
	assert_true(auth_failed(&t));
	snprintf(detail, sizeof(detail), "%s", ts_status(&t).detail);
	ts_close(&t);
	stderr_restore();
	print_message("# status: %s\n", detail);
	assert_log_count(logpath, "result=auth_failed", 1);
	assert_log_count(logpath, "result=connected", 0);
	assert_log_count(logpath, "s3cret", 0);
	assert_log_count(logpath, "wrong", 0);

	/* No password at all against requirepass: NOAUTH is an auth failure too. */
	ts_config(&t, sv, "relay:", 1000);
	t.cfg.redis.password = "";
	ts_open_cfg(&t, base);
	assert_true(run_until(base, auth_failed, &t, ANSWER_MS));
	assert_non_null(strstr(ts_status(&t).detail, "NOAUTH"));
	get_wait(&t, "auth.example", &ans);
	assert_false(ans.hit);
	ts_close(&t);

	answer_reset(&ans);
	event_base_free(base);
}

static bool
not_connected(void *arg)
{
	return !ts_status(arg).connected;
}

/*
 * Redis dies: gets answer NULL at once, writes wait (coalesced), the store logs "down" once while
 * it retries with back-off, reconnects by itself when the server is back on the same socket, and
 * the writes made meanwhile reach the other relays.
 */
static void
test_outage(void **state)
{
	struct event_base *base;
	struct server *sv;
	struct tstore a, b;
	struct answer ans = { 0 };
	uint32_t now = wall();
	struct store_record kept = rec_make("kept.example", "k", "kept", now, now + 600, now);
	struct store_record p1 =
	        rec_make("out.example", "o1", "outage one", now - 20, now + 600, now);
	struct store_record p2 =
	        rec_make("out.example", "o2", "outage two", now - 10, now + 600, now);
	struct store_status st;
	char logpath[192];
	uint64_t t0;
	redisReply *rep;

	skip_unless_installed();
	base = event_base_new();
	assert_non_null(base);
	sv = extra_server("outage", false, NULL, NULL);
	ts_open(&a, base, sv, "out:", 300);
	wait_connected(&a);
	ops->put(a.impl, &kept);
	wait_flushed(&a);
	/* The dump survives the kill, so the restarted server still holds "kept". */
	rep = raw(sv, "SAVE");
	freeReplyObject(rep);

	snprintf(logpath, sizeof(logpath), "%s/outage-stderr.log", g.dir);
	stderr_capture(logpath);
	server_stop(sv, SIGKILL);
	t0 = now_ms();
	answer_reset(&ans);
	get(&a, "kept.example", &ans);
	assert_true(run_until(base, answered, &ans, 300 + 500));
	assert_false(ans.hit);
	assert_false(ans.inside);
	assert_true(ans.at_ms - t0 < 300 + 500);
	assert_true(run_until(base, not_connected, &a, 1000));

	/* Writes meanwhile: coalesced by domain, newest kept, and a delete. */
	ops->put(a.impl, &p2);
	ops->put(a.impl, &p1);
	ops->del(a.impl, "kept.example");
	st = ts_status(&a);
	assert_int_equal(st.pending, 2);
	assert_false(st.connected);
	assert_true(strncmp(st.detail, "down: ", 6) == 0);
	get_wait(&a, "out.example", &ans); /* this relay still answers its own write */
	assert_true(ans.hit);
	assert_string_equal(ans.id, "o2");
	get_wait(&a, "other.example", &ans);
	assert_false(ans.hit);
	/* Several retries (0.5 s, 1 s, 2 s) while it stays down. */
	run_for(base, 2500);
	assert_false(ts_status(&a).connected);

	assert_int_equal(server_start(sv), 0);
	if (!run_until(base, is_flushed, &a, 10000))
		fail_msg("no reconnect: %s", ts_status(&a).detail);

	stderr_restore();
	assert_log_count(logpath, "result=down", 1);
	assert_log_count(logpath, "result=connected", 1);
	assert_log_count(logpath, "result=written_pending records=2", 1);

	ts_open(&b, base, sv, "out:", 1000);
	wait_connected(&b);
	get_wait(&b, "out.example", &ans);
	assert_true(ans.hit);
	assert_string_equal(ans.id, "o2");
	assert_string_equal(ans.text, "outage two");
	get_wait(&b, "kept.example", &ans);
	assert_false(ans.hit);

	answer_reset(&ans);
	ts_close(&a);
	ts_close(&b);
	event_base_free(base);
}

static bool
all_answered(void *arg)
{
	int *left = arg;

	return *left == 0;
}

struct counted {
	int *left;
	int calls;
	bool inside;
};

static void
on_counted(void *arg, const struct store_record *rec)
{
	struct counted *c = arg;

	c->calls++;
	c->inside = c->inside || in_get;
	(*c->left)--;
}

/* Callbacks never run inside get(); cancel prevents them in every state. */
static void
test_cancel(void **state)
{
	struct event_base *base;
	struct tstore a, d;
	struct answer ans = { 0 }, other = { 0 };
	struct store_get *sg, *sg2;
	struct server nowhere = { .pid = -1 };
	uint32_t now = wall();
	struct store_record r = rec_make("cancel.example", "c", "cancel", now, now + 600, now);
	static struct counted many[1000];
	int left;

	skip_unless_installed();
	base = event_base_new();
	assert_non_null(base);
	ts_open(&a, base, &g.main, "cancel:", 1000);
	wait_connected(&a);

	/* In flight. */
	answer_reset(&ans);
	sg = get(&a, "x.example", &ans);
	ops->cancel(a.impl, sg);
	/* Answered from the pending set, queued for the next turn. */
	ops->put(a.impl, &r);
	sg = get(&a, "cancel.example", &ans);
	ops->cancel(a.impl, sg);
	run_for(base, 200);
	assert_int_equal(ans.calls, 0);

	/* From another get's callback: the second is in flight or already answered. */
	answer_reset(&ans);
	answer_reset(&other);
	get(&a, "y.example", &ans);
	sg2 = get(&a, "z.example", &other);
	ans.cancel_impl = a.impl;
	ans.cancel_g = sg2;
	assert_true(run_until(base, answered, &ans, ANSWER_MS));
	run_for(base, 100);
	assert_int_equal(ans.calls, 1);
	assert_int_equal(other.calls, 0);

	/* Half of a thousand. */
	left = 500;
	for (int i = 0; i < 1000; i++) {
		char dom[32];

		snprintf(dom, sizeof(dom), "c%d.example", i);
		many[i] = (struct counted){ &left, 0, false };
		in_get = true;
		sg = ops->get(a.impl, dom, on_counted, &many[i]);
		in_get = false;
		if (i % 2 == 1)
			ops->cancel(a.impl, sg);
	}
	assert_true(run_until(base, all_answered, &left, ANSWER_MS));
	run_for(base, 50);
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(many[i].calls, i % 2 == 0 ? 1 : 0);
		assert_false(many[i].inside);
	}

	/* A store that cannot connect answers NULL on a later turn, or not at all if cancelled. */
	snprintf(nowhere.sock, sizeof(nowhere.sock), "%s/nowhere.sock", g.dir);
	ts_open(&d, base, &nowhere, "cancel:", 1000);
	answer_reset(&ans);
	answer_reset(&other);
	sg = get(&d, "x.example", &ans);
	get(&d, "x.example", &other);
	ops->cancel(d.impl, sg);
	assert_true(run_until(base, answered, &other, ANSWER_MS));
	assert_false(other.hit);
	assert_false(other.inside);
	assert_int_equal(ans.calls, 0);
	assert_false(ts_status(&d).connected);
	print_message("# status: %s\n", ts_status(&d).detail);

	answer_reset(&ans);
	answer_reset(&other);
	ts_close(&a);
	ts_close(&d);
	event_base_free(base);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	(*(int *)arg)++;
}

static bool
flushed_or_not(void *arg)
{
	return is_flushed(arg);
}

/*
 * A server that stops answering (SIGSTOP) costs a get timeout_ms, never the loop: a 10 ms timer
 * keeps firing meanwhile. When it answers again, the store comes back by itself.
 */
static void
test_loop_never_blocks(void **state)
{
	struct event_base *base;
	struct server *sv;
	struct tstore a, b;
	struct answer ans = { 0 };
	int ticks = 0;
	struct event *tick;
	struct timeval tv = { 0, 10000 };
	uint64_t t0, took;
	uint32_t now = wall();
	struct store_record r = rec_make("stop.example", "s", "stopped", now, now + 600, now);

	skip_unless_installed();
	base = event_base_new();
	assert_non_null(base);
	sv = extra_server("stopped", false, NULL, NULL);
	ts_open(&a, base, sv, "stop:", 300);
	wait_connected(&a);
	tick = event_new(base, -1, EV_PERSIST, on_tick, &ticks);
	event_add(tick, &tv);

	kill(sv->pid, SIGSTOP);
	t0 = now_ms();
	answer_reset(&ans);
	get(&a, "stop.example", &ans);
	ops->put(a.impl, &r);
	assert_true(run_until(base, answered, &ans, 300 + 700));
	took = ans.at_ms - t0;
	print_message("# get against a stopped server: NULL after %llu ms, %d ticks of 10 ms\n",
	              (unsigned long long)took, ticks);
	assert_false(ans.hit);
	assert_true(took >= 290 && took < 300 + 500);
	assert_true(ticks >= (int)(took / 10) / 2);
	assert_false(ts_status(&a).connected);
	print_message("# status: %s\n", ts_status(&a).detail);

	/* Reconnect attempts meet a stopped server too (its backlog accepts): still no block. */
	ticks = 0;
	run_for(base, 1000);
	assert_true(ticks >= 50);

	kill(sv->pid, SIGCONT);
	if (!run_until(base, flushed_or_not, &a, 10000))
		fail_msg("no reconnect: %s", ts_status(&a).detail);
	ts_open(&b, base, sv, "stop:", 1000);
	wait_connected(&b);
	get_wait(&b, "stop.example", &ans);
	assert_true(ans.hit);

	event_free(tick);
	answer_reset(&ans);
	ts_close(&a);
	ts_close(&b);
	event_base_free(base);
}

/* TCP on 127.0.0.1 and a database other than 0. */
static void
test_tcp_select(void **state)
{
	struct event_base *base;
	struct server *sv;
	struct tstore t;
	struct answer ans = { 0 };
	uint32_t now = wall();
	struct store_record r = rec_make("tcp.example", "t", "over tcp", now, now + 600, now);
	redisContext *c;
	redisReply *rep;

	skip_unless_installed();
	base = event_base_new();
	assert_non_null(base);
	sv = extra_server("tcp", true, NULL, NULL);
	memset(&t, 0, sizeof(t));
	snprintf(t.address, sizeof(t.address), "127.0.0.1:%d", sv->port);
	t.cfg.redis.address.family = CONFIG_FAMILY_INET;
	t.cfg.redis.address.text = t.address;
	t.cfg.redis.address.host = "127.0.0.1";
	t.cfg.redis.address.port = (unsigned)sv->port;
	t.cfg.redis.database = 3;
	t.cfg.redis.prefix = "tcp:";
	t.cfg.redis.user = "";
	t.cfg.redis.password = "";
	t.cfg.redis.timeout_ms = 1000;
	ts_open_cfg(&t, base);
	wait_connected(&t);
	ops->put(t.impl, &r);
	wait_flushed(&t);
	get_wait(&t, "tcp.example", &ans);
	assert_true(ans.hit);
	assert_string_equal(ans.text, "over tcp");

	c = raw_connect(sv);
	assert_non_null(c);
	rep = redisCommand(c, "EXISTS tcp:tcp.example");
	assert_int_equal(rep->integer, 0);
	freeReplyObject(rep);
	freeReplyObject(redisCommand(c, "SELECT 3"));
	rep = redisCommand(c, "EXISTS tcp:tcp.example");
	assert_int_equal(rep->integer, 1);
	freeReplyObject(rep);
	redisFree(c);

	/* A database the server does not have: a state like any other, logged once. */
	ts_close(&t);
	t.cfg.redis.database = 999;
	ts_open_cfg(&t, base);
	run_for(base, 300);
	assert_false(ts_status(&t).connected);
	print_message("# status: %s\n", ts_status(&t).detail);
	assert_non_null(strstr(ts_status(&t).detail, "SELECT"));
	ts_close(&t);

	/* Nothing listens on the port any more: refused, a NULL answer on a later turn. */
	server_stop(sv, SIGTERM);
	t.cfg.redis.database = 0;
	ts_open_cfg(&t, base);
	get_wait(&t, "tcp.example", &ans);
	assert_false(ans.hit);
	run_for(base, 100);
	assert_false(ts_status(&t).connected);
	print_message("# status: %s\n", ts_status(&t).detail);
	assert_non_null(strstr(ts_status(&t).detail, "refused"));

	answer_reset(&ans);
	ts_close(&t);
	event_base_free(base);
}

/* close frees everything: gets in flight are never answered, pending writes are written. */
static void
test_close(void **state)
{
	struct event_base *base;
	struct tstore a, d;
	struct answer ans[4] = { 0 };
	struct server nowhere = { .pid = -1 };
	uint32_t now = wall();
	struct store_record r = rec_make("close.example", "c", "at close", now, now + 600, now);

	skip_unless_installed();
	base = event_base_new();
	assert_non_null(base);
	ts_open(&a, base, &g.main, "close:", 1000);
	wait_connected(&a);
	get(&a, "x.example", &ans[0]);
	get(&a, "y.example", &ans[1]);
	ops->put(a.impl, &r);
	get(&a, "close.example", &ans[2]); /* answered from pending, not yet delivered */
	ts_close(&a);
	run_for(base, 100);
	for (int i = 0; i < 3; i++)
		assert_int_equal(ans[i].calls, 0);
	assert_int_equal(raw_int(&g.main, "EXISTS %s", "close:close.example"), 1);

	/* Never connected: what is pending is dropped (and freed). */
	snprintf(nowhere.sock, sizeof(nowhere.sock), "%s/nowhere.sock", g.dir);
	ts_open(&d, base, &nowhere, "close:", 1000);
	ops->put(d.impl, &r);
	get(&d, "x.example", &ans[3]);
	/* The pending set is bounded: one write too many is dropped and counted. */
	for (int i = 0; i < 100000; i++) {
		char dom[32];
		struct store_record m = rec_make(dom, "m", "many", now, now + 600, now);

		snprintf(dom, sizeof(dom), "m%d.example", i);
		ops->put(d.impl, &m);
	}
	assert_int_equal(ts_status(&d).pending, 100000);
	assert_int_equal(ts_status(&d).write_errors, 1);
	ops->put(d.impl, &r); /* a domain already pending still coalesces */
	assert_int_equal(ts_status(&d).write_errors, 1);
	ts_close(&d);
	run_for(base, 50);
	assert_int_equal(ans[3].calls, 0);

	/* A config that can never work fails open, with the value named. */
	{
		struct tstore bad;
		char *err = NULL;
		char longpath[200];

		memset(longpath, 'x', sizeof(longpath) - 1);
		longpath[0] = '/';
		longpath[sizeof(longpath) - 1] = '\0';
		nowhere.sock[0] = '\0';
		ts_config(&bad, &nowhere, "", 1000);
		bad.cfg.redis.address.path = longpath;
		assert_null(store_redis_open(base, &bad.cfg, &err));
		assert_non_null(err);
		print_message("# %s\n", err);
		free(err);
	}
	event_base_free(base);
}

/* 10,000 gets pipelined over one connection, and 10,000 writes: the cost on the loop. */
static void
test_pipeline_timing(void **state)
{
	struct event_base *base;
	struct tstore a;
	static struct counted c[10000];
	int left = 10000, hits = 0;
	uint32_t now = wall();
	uint64_t t0, tput, tget;
	char dom[32];

	skip_unless_installed();
	base = event_base_new();
	assert_non_null(base);
	ts_open(&a, base, &g.main, "bench:", 2000);
	wait_connected(&a);
	t0 = now_ms();
	for (int i = 0; i < 10000; i += 2) {
		struct store_record r = rec_make(dom, "b", policy_text, now, now + 600, now);

		snprintf(dom, sizeof(dom), "b%d.example", i);
		ops->put(a.impl, &r);
	}
	if (!run_until(base, is_flushed, &a, 20000))
		fail_msg("puts not flushed");
	tput = now_ms() - t0;

	t0 = now_ms();
	for (int i = 0; i < 10000; i++) {
		snprintf(dom, sizeof(dom), "b%d.example", i);
		c[i] = (struct counted){ &left, 0, false };
		in_get = true;
		ops->get(a.impl, dom, on_counted, &c[i]);
		in_get = false;
	}
	assert_true(run_until(base, all_answered, &left, 20000));
	tget = now_ms() - t0;
	hits = (int)ts_status(&a).get_hits;
	print_message("# 5,000 puts written in %llu ms; 10,000 gets pipelined answered in %llu ms "
	              "(%d hits)\n",
	              (unsigned long long)tput, (unsigned long long)tget, hits);
	assert_int_equal(hits, 5000);
	for (int i = 0; i < 10000; i++)
		assert_int_equal(c[i].calls, 1);

	ts_close(&a);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_share, case_teardown),
		cmocka_unit_test_teardown(test_newer_wins, case_teardown),
		cmocka_unit_test_teardown(test_ttl, case_teardown),
		cmocka_unit_test_teardown(test_missing_malformed, case_teardown),
		cmocka_unit_test_teardown(test_prefix_isolation, case_teardown),
		cmocka_unit_test_teardown(test_auth, case_teardown),
		cmocka_unit_test_teardown(test_outage, case_teardown),
		cmocka_unit_test_teardown(test_cancel, case_teardown),
		cmocka_unit_test_teardown(test_loop_never_blocks, case_teardown),
		cmocka_unit_test_teardown(test_tcp_select, case_teardown),
		cmocka_unit_test_teardown(test_close, case_teardown),
		cmocka_unit_test_teardown(test_pipeline_timing, case_teardown),
	};

	/* MTASTS_TEST_DEBUG=1 shows every state change and command outcome. */
	if (getenv("MTASTS_TEST_DEBUG") != NULL)
		log_set_level(LOG_LEVEL_DEBUG);
	return cmocka_run_group_tests_name("store_redis_live", tests, group_setup, group_teardown);
}
