/* test_store_sqlite.c: the sqlite store keeps, coalesces and refuses exactly what it should. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <sqlite3.h>

#include "base/log.h"
#include "config/config.h"
#include "store/store.h"
#include "store/store_sqlite.h"

#define CRLF_TEXT "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmax_age: 86400\r\n"
#define LF_TEXT   "version: STSv1\nmode: testing\nmx: *.example.net\nmax_age: 604800\n"
#define BIG_LEN   65536

static char tmpdir[] = "/tmp/mtastsd-test-sqlite-XXXXXX";
static const struct store_ops *ops = &store_sqlite_ops;

/* ---- helpers ---- */

struct rec {
	char domain[256];
	char id[33];
	char *text;
	size_t text_len;
	uint32_t fetched_at, expires_at, last_used;
};

struct recs {
	struct rec r[256];
	size_t n;
};

static void
recs_add(struct recs *rs, const struct store_record *r)
{
	struct rec *x;

	assert_true(rs->n < sizeof(rs->r) / sizeof(rs->r[0]));
	x = &rs->r[rs->n++];
	snprintf(x->domain, sizeof(x->domain), "%s", r->domain);
	snprintf(x->id, sizeof(x->id), "%s", r->id);
	/* The promise: text_len bytes plus a NUL. */
	assert_int_equal(r->text[r->text_len], '\0');
	x->text = malloc(r->text_len + 1);
	assert_non_null(x->text);
	memcpy(x->text, r->text, r->text_len + 1);
	x->text_len = r->text_len;
	x->fetched_at = r->fetched_at;
	x->expires_at = r->expires_at;
	x->last_used = r->last_used;
}

static void
recs_free(struct recs *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		free(rs->r[i].text);
	rs->n = 0;
}

static const struct rec *
recs_find(const struct recs *rs, const char *domain)
{
	for (size_t i = 0; i < rs->n; i++)
		if (strcmp(rs->r[i].domain, domain) == 0)
			return &rs->r[i];
	return NULL;
}

static void
on_load(void *arg, const struct store_record *r)
{
	recs_add(arg, r);
}

static void
assert_same(const struct rec *got, const struct store_record *want)
{
	assert_non_null(got);
	assert_string_equal(got->domain, want->domain);
	assert_string_equal(got->id, want->id);
	assert_int_equal(got->text_len, want->text_len);
	assert_memory_equal(got->text, want->text, want->text_len);
	assert_int_equal(got->fetched_at, want->fetched_at);
	assert_int_equal(got->expires_at, want->expires_at);
	assert_int_equal(got->last_used, want->last_used);
}

static uint32_t
now32(void)
{
	return (uint32_t)time(NULL);
}

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static char *
db_path(const char *name)
{
	static char buf[512];

	snprintf(buf, sizeof(buf), "%s/%s", tmpdir, name);
	return buf;
}

static struct config
make_cfg(const char *path, unsigned interval_ms)
{
	struct config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.cache.backend = CONFIG_CACHE_SQLITE;
	cfg.sqlite.path = path;
	cfg.sqlite.write_interval_ms = interval_ms;
	return cfg;
}

static void *
open_ok(struct event_base *base, const char *path, unsigned interval_ms)
{
	struct config cfg = make_cfg(path, interval_ms);
	char *err = NULL;
	void *s = store_sqlite_open(base, &cfg, &err);

	if (s == NULL)
		fail_msg("open %s: %s", path, err != NULL ? err : "(no message)");
	assert_null(err);
	return s;
}

static char *
open_fails(struct event_base *base, const char *path)
{
	struct config cfg = make_cfg(path, 50);
	char *err = NULL;
	void *s = store_sqlite_open(base, &cfg, &err);

	if (s != NULL) {
		ops->close(s);
		fail_msg("open %s succeeded but should not have", path);
	}
	assert_non_null(err);
	print_message("# %s\n", err);
	return err;
}

static void
load_all(void *s, uint32_t now, struct recs *rs)
{
	char err[512];

	assert_int_equal(ops->load(s, now, on_load, rs, err, sizeof(err)), 0);
}

/* Opens, loads every unexpired record, closes. */
static void
reload(struct event_base *base, const char *path, struct recs *rs)
{
	void *s = open_ok(base, path, 50);

	recs_free(rs);
	load_all(s, now32(), rs);
	ops->close(s);
}

static struct store_record
mkrec(const char *domain, const char *id, const char *text, uint32_t fetched, uint32_t expires,
      uint32_t used)
{
	struct store_record r = { .domain = domain,
		                  .id = id,
		                  .text = text,
		                  .text_len = strlen(text),
		                  .fetched_at = fetched,
		                  .expires_at = expires,
		                  .last_used = used };
	return r;
}

/* Counts rows for domain through a connection of our own, as another process would. */
static int
raw_count(const char *path, const char *domain)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int n = -1;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 2000);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM policies WHERE domain = ?1",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

static void
raw_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	char *msg = NULL;

	assert_int_equal(
	        sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
	        SQLITE_OK);
	sqlite3_busy_timeout(db, 2000);
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
	sqlite3_close(db);
}

static void
assert_integrity_ok(const char *path)
{
	sqlite3 *db;
	sqlite3_stmt *st;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 2000);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static unsigned char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = malloc(1 << 20);
	size_t n;

	assert_non_null(f);
	assert_non_null(buf);
	n = fread(buf, 1, 1 << 20, f);
	fclose(f);
	*len = n;
	return buf;
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
group_setup(void **state)
{
	(void)state;
	umask(022);
	log_set_level(LOG_LEVEL_WARN);
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int
group_teardown(void **state)
{
	(void)state;
	return nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- tests ---- */

/* The round trip keeps every field and the text byte for byte (CRLF and a maximal body);
 * expired records are not loaded; an oversized record is refused rather than stored. */
static void
test_put_close_reload(void **state)
{
	struct event_base *base = event_base_new();
	const char *path = db_path("roundtrip.db");
	uint32_t now = now32();
	char *big = malloc(BIG_LEN + 2);
	struct recs rs = { .n = 0 };
	struct store_status st;

	(void)state;
	for (size_t i = 0; i < BIG_LEN + 1; i++)
		big[i] = (char)(' ' + i % 95);
	big[BIG_LEN + 1] = '\0';
	struct store_record a =
	        mkrec("a.example", "20240101T000000", CRLF_TEXT, now - 10, now + 86400, now - 5);
	struct store_record b = mkrec("b.example.net", "x", LF_TEXT, now - 100, now + 604800, now);
	struct store_record c =
	        mkrec("big.example", "0123456789abcdef0123456789abcdef", big, now, now + 60, now);
	struct store_record old = mkrec("old.example", "1", LF_TEXT, now - 1000, now - 1, now - 1);
	struct store_record huge = mkrec("huge.example", "1", big, now, now + 60, now);

	c.text_len = BIG_LEN;
	huge.text_len = BIG_LEN + 1;

	void *s = open_ok(base, path, 50);

	load_all(s, now, &rs);
	assert_int_equal(rs.n, 0);
	ops->put(s, &a);
	ops->put(s, &b);
	ops->put(s, &c);
	ops->put(s, &old);
	ops->put(s, &huge);
	ops->status(s, &st);
	assert_string_equal(st.backend, "sqlite");
	assert_true(st.connected);
	assert_int_equal(st.puts, 4);
	assert_string_equal(st.detail, "ok");
	ops->close(s);

	reload(base, path, &rs);
	assert_int_equal(rs.n, 3);
	assert_same(recs_find(&rs, "a.example"), &a);
	assert_same(recs_find(&rs, "b.example.net"), &b);
	assert_same(recs_find(&rs, "big.example"), &c);
	assert_null(recs_find(&rs, "old.example"));
	assert_null(recs_find(&rs, "huge.example"));
	/* Loading "now" far ahead: nothing is unexpired any more. */
	s = open_ok(base, path, 50);
	recs_free(&rs);
	load_all(s, now + 700000, &rs);
	assert_int_equal(rs.n, 0);
	ops->close(s);

	recs_free(&rs);
	free(big);
	event_base_free(base);
}

/* A record never replaces one fetched later; the same fetched_at updates last_used. Both in
 * one batch (coalescing in memory) and across batches (the upsert on disk). */
static void
test_fetched_at_order(void **state)
{
	struct event_base *base = event_base_new();
	const char *path = db_path("order.db");
	uint32_t now = now32();
	struct recs rs = { .n = 0 };
	struct store_record newer =
	        mkrec("d.example", "new", CRLF_TEXT, now - 10, now + 1000, now - 10);
	struct store_record older = mkrec("d.example", "old", LF_TEXT, now - 20, now + 2000, now);
	struct store_record touched =
	        mkrec("d.example", "new", CRLF_TEXT, now - 10, now + 1000, now + 5);

	(void)state;
	/* One batch. */
	void *s = open_ok(base, path, 5000);

	ops->put(s, &newer);
	ops->put(s, &older);
	ops->close(s);
	reload(base, path, &rs);
	assert_int_equal(rs.n, 1);
	assert_same(recs_find(&rs, "d.example"), &newer);

	/* Separate batches: the row on disk is newer. */
	s = open_ok(base, path, 5000);
	ops->put(s, &older);
	ops->close(s);
	reload(base, path, &rs);
	assert_int_equal(rs.n, 1);
	assert_same(recs_find(&rs, "d.example"), &newer);

	/* Same fetched_at: last_used moves, on disk and in one batch. */
	s = open_ok(base, path, 5000);
	ops->put(s, &touched);
	ops->close(s);
	reload(base, path, &rs);
	assert_same(recs_find(&rs, "d.example"), &touched);

	touched.last_used = now + 7;
	s = open_ok(base, path, 5000);
	ops->put(s, &older);
	ops->put(s, &touched);
	ops->close(s);
	reload(base, path, &rs);
	assert_int_equal(rs.n, 1);
	assert_same(recs_find(&rs, "d.example"), &touched);

	recs_free(&rs);
	event_base_free(base);
}

/* del(domain) and del(NULL), on disk and against pending puts, in the order they were made. */
static void
test_del(void **state)
{
	struct event_base *base = event_base_new();
	const char *path = db_path("del.db");
	uint32_t now = now32();
	struct recs rs = { .n = 0 };
	struct store_record a = mkrec("a.example", "1", LF_TEXT, now, now + 1000, now);
	struct store_record b = mkrec("b.example", "1", LF_TEXT, now, now + 1000, now);
	struct store_record c = mkrec("c.example", "1", LF_TEXT, now, now + 1000, now);
	struct store_record d = mkrec("d.example", "1", LF_TEXT, now, now + 1000, now);
	struct store_record a2 = mkrec("a.example", "2", CRLF_TEXT, now - 50, now + 500, now);

	(void)state;
	void *s = open_ok(base, path, 5000);

	ops->put(s, &a);
	ops->put(s, &b);
	ops->put(s, &c);
	ops->close(s);

	/* On disk: a goes. Pending: d is put then deleted, so it never lands. */
	s = open_ok(base, path, 5000);
	ops->del(s, "a.example");
	ops->put(s, &d);
	ops->del(s, "d.example");
	ops->del(s, "nothing.example");
	ops->close(s);
	reload(base, path, &rs);
	assert_int_equal(rs.n, 2);
	assert_non_null(recs_find(&rs, "b.example"));
	assert_non_null(recs_find(&rs, "c.example"));

	/* A put after a delete lands even though it is older than the deleted row. */
	s = open_ok(base, path, 5000);
	ops->put(s, &a);
	ops->close(s);
	s = open_ok(base, path, 5000);
	ops->del(s, "a.example");
	ops->put(s, &a2);
	ops->close(s);
	reload(base, path, &rs);
	assert_same(recs_find(&rs, "a.example"), &a2);

	/* del(NULL) forgets everything before it, and only that. */
	s = open_ok(base, path, 5000);
	ops->put(s, &d);
	ops->del(s, NULL);
	ops->put(s, &c);
	ops->close(s);
	reload(base, path, &rs);
	assert_int_equal(rs.n, 1);
	assert_non_null(recs_find(&rs, "c.example"));

	recs_free(&rs);
	event_base_free(base);
}

/* Written behind: visible to another connection within one window without close, and not
 * written by put itself. */
static void
test_write_behind(void **state)
{
	struct event_base *base = event_base_new();
	const char *path = db_path("behind.db");
	uint32_t now = now32();
	struct store_record a = mkrec("a.example", "1", LF_TEXT, now, now + 1000, now);
	struct store_record b = mkrec("b.example", "1", LF_TEXT, now, now + 1000, now);
	struct store_status st;
	uint64_t t0, waited;

	(void)state;
	void *s = open_ok(base, path, 50);

	t0 = mono_ms();
	ops->put(s, &a);
	while (raw_count(path, "a.example") == 0 && mono_ms() - t0 < 2000)
		sleep_ms(5);
	waited = mono_ms() - t0;
	assert_int_equal(raw_count(path, "a.example"), 1);
	/* 50 ms window plus generous scheduling margin. */
	assert_true(waited < 1000);
	ops->status(s, &st);
	assert_int_equal(st.written, 1);
	assert_int_equal(st.pending, 0);
	ops->close(s);

	s = open_ok(base, path, 5000);
	ops->put(s, &b);
	assert_int_equal(raw_count(path, "b.example"), 0);
	sleep_ms(100);
	assert_int_equal(raw_count(path, "b.example"), 0);
	ops->status(s, &st);
	assert_int_equal(st.pending, 1);
	assert_int_equal(st.written, 0);
	ops->close(s);
	assert_int_equal(raw_count(path, "b.example"), 1);

	event_base_free(base);
}

/* A process that dies without close loses at most the last window, and the file stays
 * sound. how: 0 = _exit, 1 = SIGKILL. */
static void
crash_run(const char *name, int how)
{
	const char *path = db_path(name);
	struct event_base *base;
	struct recs rs = { .n = 0 };
	uint32_t now = now32();
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct event_base *cb = event_base_new();
		struct config cfg = make_cfg(path, 50);
		char *err = NULL;
		void *s = store_sqlite_open(cb, &cfg, &err);
		char domain[64];

		if (s == NULL)
			_exit(2);
		for (int i = 0; i < 100; i++) {
			snprintf(domain, sizeof(domain), "d%d.example", i);
			struct store_record r = mkrec(domain, "1", CRLF_TEXT, now, now + 1000, now);

			ops->put(s, &r);
		}
		sleep_ms(300);
		if (how == 1)
			kill(getpid(), SIGKILL);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (how == 1) {
		assert_true(WIFSIGNALED(status));
		assert_int_equal(WTERMSIG(status), SIGKILL);
	} else {
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_integrity_ok(path);
	base = event_base_new();
	reload(base, path, &rs);
	assert_int_equal(rs.n, 100);
	for (size_t i = 0; i < rs.n; i++) {
		assert_int_equal(rs.r[i].text_len, strlen(CRLF_TEXT));
		assert_memory_equal(rs.r[i].text, CRLF_TEXT, rs.r[i].text_len);
	}
	assert_integrity_ok(path);
	recs_free(&rs);
	event_base_free(base);
}

static void
test_crash_exit(void **state)
{
	(void)state;
	crash_run("crash-exit.db", 0);
}

static void
test_crash_sigkill(void **state)
{
	(void)state;
	crash_run("crash-kill.db", 1);
}

struct got {
	int calls;
	bool hit;
	struct recs rs;
};

static int gets_done;

static void
on_get(void *arg, const struct store_record *r)
{
	struct got *g = arg;

	g->calls++;
	g->hit = r != NULL;
	if (r != NULL)
		recs_add(&g->rs, r);
	gets_done++;
}

static void
on_guard(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* Runs the loop until gets_done reaches target, at most 2 s. */
static void
run_until(struct event_base *base, int target)
{
	struct event *guard = evtimer_new(base, on_guard, base);
	struct timeval tv = { 2, 0 };

	evtimer_add(guard, &tv);
	while (gets_done < target && !event_base_got_break(base))
		event_base_loop(base, EVLOOP_ONCE);
	event_free(guard);
	assert_int_equal(gets_done, target);
}

/* get: hit, miss, expired, a change still pending, a pending delete; the callback never
 * runs inside get, and cancel keeps it from running at all. */
static void
test_get(void **state)
{
	struct event_base *base = event_base_new();
	const char *path = db_path("get.db");
	uint32_t now = now32();
	struct store_record a = mkrec("a.example", "1", CRLF_TEXT, now - 10, now + 1000, now);
	struct store_record gone = mkrec("gone.example", "1", LF_TEXT, now - 100, now, now);
	struct store_record p = mkrec("pending.example", "7", LF_TEXT, now, now + 1000, now);
	struct store_record b = mkrec("b.example", "1", LF_TEXT, now, now + 1000, now);
	struct got hit = { 0 }, miss = { 0 }, expired = { 0 }, pend = { 0 }, deleted = { 0 },
	           cancelled = { 0 }, late = { 0 };
	struct store_status st;

	(void)state;
	void *s = open_ok(base, path, 5000);

	ops->put(s, &a);
	ops->put(s, &gone);
	ops->put(s, &b);
	ops->close(s);

	s = open_ok(base, path, 5000);
	ops->put(s, &p);
	ops->del(s, "b.example");
	gets_done = 0;
	assert_non_null(ops->get(s, "a.example", on_get, &hit));
	assert_int_equal(hit.calls, 0); /* not inside get */
	assert_non_null(ops->get(s, "nope.example", on_get, &miss));
	assert_non_null(ops->get(s, "gone.example", on_get, &expired));
	assert_non_null(ops->get(s, "pending.example", on_get, &pend));
	assert_non_null(ops->get(s, "b.example", on_get, &deleted));
	struct store_get *g = ops->get(s, "a.example", on_get, &cancelled);

	assert_non_null(g);
	ops->cancel(s, g);
	assert_int_equal(hit.calls + miss.calls + expired.calls + pend.calls + deleted.calls, 0);
	run_until(base, 5);
	assert_int_equal(hit.calls, 1);
	assert_true(hit.hit);
	assert_same(recs_find(&hit.rs, "a.example"), &a);
	assert_int_equal(miss.calls, 1);
	assert_false(miss.hit);
	assert_int_equal(expired.calls, 1);
	assert_false(expired.hit);
	assert_int_equal(pend.calls, 1);
	assert_same(recs_find(&pend.rs, "pending.example"), &p);
	assert_int_equal(deleted.calls, 1);
	assert_false(deleted.hit);
	assert_int_equal(cancelled.calls, 0);
	/* Nothing else is due: the cancelled one stays silent even after another turn. */
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(cancelled.calls, 0);
	ops->status(s, &st);
	assert_int_equal(st.gets, 6);
	assert_int_equal(st.get_hits, 3);

	/* A get still outstanding at close is freed without its callback. */
	assert_non_null(ops->get(s, "a.example", on_get, &late));
	ops->close(s);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(late.calls, 0);

	recs_free(&hit.rs);
	recs_free(&pend.rs);
	event_base_free(base);
}

/* A file that is not a database is refused with its path named, and left as it was. */
static void
test_corrupt_file(void **state)
{
	struct event_base *base = event_base_new();
	const char *path = db_path("garbage.db");
	unsigned char junk[4096], *after;
	size_t len;
	FILE *f;
	char *err;

	(void)state;
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 131 + 7);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
	fclose(f);

	err = open_fails(base, path);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "not a usable mtastsd cache"));
	assert_non_null(strstr(err, "move it away"));
	free(err);
	after = read_file(path, &len);
	assert_int_equal(len, sizeof(junk));
	assert_memory_equal(after, junk, sizeof(junk));
	free(after);

	/* Someone else's database is not written into either. */
	path = db_path("foreign.db");
	raw_exec(path, "CREATE TABLE t(x); INSERT INTO t VALUES(1);");
	err = open_fails(base, path);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "schema_version"));
	free(err);
	event_base_free(base);
}

/* A file from a newer build is refused, naming the version, and not modified. */
static void
test_newer_schema(void **state)
{
	struct event_base *base = event_base_new();
	const char *path = db_path("newer.db");
	unsigned char *before, *after;
	size_t blen, alen;
	char *err;

	(void)state;
	ops->close(open_ok(base, path, 50));
	raw_exec(path, "UPDATE meta SET value = 999 WHERE key = 'schema_version'");
	before = read_file(path, &blen);
	err = open_fails(base, path);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "999"));
	free(err);
	after = read_file(path, &alen);
	assert_int_equal(alen, blen);
	assert_memory_equal(after, before, blen);
	free(before);
	free(after);
	event_base_free(base);
}

/* A file the daemon's user may not write fails at open, naming the file. Root ignores
 * permissions, so as root a child drops to nobody first. */
static void
test_unwritable(void **state)
{
	char dir[600], path[700], msg[1024];
	struct event_base *base = event_base_new();
	int fds[2], status;
	ssize_t n;
	pid_t pid;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/ro", tmpdir);
	snprintf(path, sizeof(path), "%s/cache.db", dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	ops->close(open_ok(base, path, 50));
	event_base_free(base);
	assert_int_equal(chmod(path, 0644), 0);
	/* nobody must be able to reach it: mkdtemp made the top directory 0700. */
	assert_int_equal(chmod(tmpdir, 0755), 0);
	if (geteuid() != 0) {
		assert_int_equal(chmod(path, 0444), 0);
		assert_int_equal(chmod(dir, 0555), 0);
	}
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct event_base *cb;
		struct config cfg = make_cfg(path, 50);
		char *err = NULL;
		void *s;

		close(fds[0]);
		if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(3);
		cb = event_base_new();
		s = store_sqlite_open(cb, &cfg, &err);
		if (s != NULL)
			_exit(1);
		if (err != NULL && write(fds[1], err, strlen(err)) < 0)
			_exit(4);
		_exit(0);
	}
	close(fds[1]);
	n = read(fds[0], msg, sizeof(msg) - 1);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	chmod(dir, 0755);
	chmod(path, 0644);
	chmod(tmpdir, 0700);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(n > 0);
	msg[n] = '\0';
	print_message("# %s\n", msg);
	assert_non_null(strstr(msg, path));
	assert_non_null(strstr(msg, "writable by the daemon's user"));
}

/* The file's directory is created (0750) when missing; a missing grandparent is an error
 * naming the directory. */
static void
test_missing_dir(void **state)
{
	struct event_base *base = event_base_new();
	char dir[600], path[700];
	struct stat sb;
	char *err;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/newdir", tmpdir);
	snprintf(path, sizeof(path), "%s/cache.db", dir);
	ops->close(open_ok(base, path, 50));
	assert_int_equal(stat(dir, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0750);
	assert_int_equal(stat(path, &sb), 0);

	snprintf(path, sizeof(path), "%s/no/such/cache.db", tmpdir);
	err = open_fails(base, path);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "/no/such"));
	free(err);
	event_base_free(base);
}

/* A failing write keeps the batch, counts the error, says so in status and recovers. The
 * failure: the file renamed away under the open store. */
static void
test_write_failure_retried(void **state)
{
	struct event_base *base = event_base_new();
	const char *path = db_path("moved.db");
	char moved[600];
	uint32_t now = now32();
	struct store_record a = mkrec("a.example", "1", LF_TEXT, now, now + 1000, now);
	struct store_status st;
	uint64_t t0;

	(void)state;
	snprintf(moved, sizeof(moved), "%s.away", path);
	void *s = open_ok(base, path, 20);

	sleep_ms(50); /* let the first sweep pass */
	assert_int_equal(rename(path, moved), 0);
	ops->put(s, &a);
	t0 = mono_ms();
	do {
		sleep_ms(10);
		ops->status(s, &st);
	} while (st.write_errors == 0 && mono_ms() - t0 < 2000);
	assert_true(st.write_errors >= 1);
	assert_int_equal(st.pending, 1);
	assert_int_equal(st.written, 0);
	assert_non_null(strstr(st.detail, "write failing"));
	/* Still served from the pending set while the disk is away. */
	gets_done = 0;
	struct got g = { 0 };

	ops->get(s, "a.example", on_get, &g);
	run_until(base, 1);
	assert_true(g.hit);
	recs_free(&g.rs);

	assert_int_equal(rename(moved, path), 0);
	t0 = mono_ms();
	do {
		sleep_ms(10);
		ops->status(s, &st);
	} while (st.written == 0 && mono_ms() - t0 < 2000);
	assert_int_equal(st.written, 1);
	assert_int_equal(st.pending, 0);
	assert_string_equal(st.detail, "ok");
	assert_int_equal(raw_count(path, "a.example"), 1);
	ops->close(s);
	event_base_free(base);
}

/* A statement failing inside the batch (a trigger stands in for a full disk) rolls the
 * whole batch back, keeps it, and writes all of it once the cause is gone. */
static void
test_batch_atomic_retry(void **state)
{
	struct event_base *base = event_base_new();
	const char *path = db_path("trigger.db");
	uint32_t now = now32();
	struct store_record ok = mkrec("ok.example", "1", LF_TEXT, now, now + 1000, now);
	struct store_record bad = mkrec("bad.example", "1", LF_TEXT, now, now + 1000, now);
	struct store_status st;
	uint64_t t0;

	(void)state;
	ops->close(open_ok(base, path, 50));
	raw_exec(path, "CREATE TRIGGER fail BEFORE INSERT ON policies "
	               "WHEN NEW.domain = 'bad.example' BEGIN SELECT RAISE(ABORT, 'simulated "
	               "failure'); END");
	void *s = open_ok(base, path, 20);

	ops->put(s, &ok);
	ops->put(s, &bad);
	t0 = mono_ms();
	do {
		sleep_ms(10);
		ops->status(s, &st);
	} while (st.write_errors < 2 && mono_ms() - t0 < 2000);
	assert_true(st.write_errors >= 2); /* retried */
	assert_int_equal(st.pending, 2);
	assert_int_equal(st.written, 0);
	assert_non_null(strstr(st.detail, "simulated failure"));
	assert_int_equal(raw_count(path, "ok.example"), 0);

	raw_exec(path, "DROP TRIGGER fail");
	t0 = mono_ms();
	do {
		sleep_ms(10);
		ops->status(s, &st);
	} while (st.written < 2 && mono_ms() - t0 < 2000);
	assert_int_equal(st.written, 2);
	assert_int_equal(st.pending, 0);
	assert_string_equal(st.detail, "ok");
	assert_int_equal(raw_count(path, "ok.example"), 1);
	assert_int_equal(raw_count(path, "bad.example"), 1);
	ops->close(s);
	assert_integrity_ok(path);
	event_base_free(base);
}

/* The daemon opens and loads the store before it detaches, and threads do not survive
 * fork(): changes made in the child are still written. */
static void
test_open_before_fork(void **state)
{
	struct event_base *base = event_base_new();
	const char *path = db_path("fork.db");
	uint32_t now = now32();
	struct store_record a = mkrec("a.example", "1", LF_TEXT, now, now + 1000, now);
	struct recs rs = { .n = 0 };
	int status;

	(void)state;
	void *s = open_ok(base, path, 20);

	load_all(s, now, &rs);
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		uint64_t t0;

		event_reinit(base);
		ops->put(s, &a);
		t0 = mono_ms();
		while (raw_count(path, "a.example") == 0 && mono_ms() - t0 < 2000)
			sleep_ms(5);
		_exit(raw_count(path, "a.example") == 1 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	ops->close(s);
	reload(base, path, &rs);
	assert_int_equal(rs.n, 1);
	recs_free(&rs);
	event_base_free(base);
}

/* The periodic sweep deletes rows that expired; unexpired ones stay. */
static void
test_sweep(void **state)
{
	struct event_base *base = event_base_new();
	const char *path = db_path("sweep.db");
	uint32_t now = now32();
	struct store_record b = mkrec("b.example", "1", LF_TEXT, now, now + 1000, now);

	(void)state;
	void *s = open_ok(base, path, 5000);

	ops->put(s, &b);
	ops->close(s);
	/* Behind the store's back, so no sweep can run before the row is there. */
	raw_exec(path, "INSERT INTO policies VALUES('a.example', '1', 1, 2, 2, x'41')");
	assert_int_equal(raw_count(path, "a.example"), 1);
	/* The writer sweeps once as soon as it starts, with the first change. */
	s = open_ok(base, path, 5000);
	ops->del(s, "unrelated.example");
	uint64_t t0 = mono_ms();

	while (raw_count(path, "a.example") != 0 && mono_ms() - t0 < 2000)
		sleep_ms(10);
	assert_int_equal(raw_count(path, "a.example"), 0);
	assert_int_equal(raw_count(path, "b.example"), 1);
	ops->close(s);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_close_reload),
		cmocka_unit_test(test_fetched_at_order),
		cmocka_unit_test(test_del),
		cmocka_unit_test(test_write_behind),
		cmocka_unit_test(test_crash_exit),
		cmocka_unit_test(test_crash_sigkill),
		cmocka_unit_test(test_get),
		cmocka_unit_test(test_corrupt_file),
		cmocka_unit_test(test_newer_schema),
		cmocka_unit_test(test_unwritable),
		cmocka_unit_test(test_missing_dir),
		cmocka_unit_test(test_write_failure_retried),
		cmocka_unit_test(test_batch_atomic_retry),
		cmocka_unit_test(test_sweep),
		cmocka_unit_test(test_open_before_fork),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
