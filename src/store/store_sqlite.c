/* store_sqlite.c: the embedded store: one sqlite file, WAL mode, written behind by a thread. */
#include "config.h"

#include "store/store_sqlite.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "base/bgthread.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "config/config.h"
#include "sts/domain.h"
#include "sts/policy.h"
#include "sts/txt.h"

/*
 * Threads and ownership. The event loop owns the "loop" connection (load, get) and the
 * counters it alone touches; the writer thread owns the "writer" connection. They share only
 * what sits under mu: the pending set, the batch being written (inflight), the write state
 * and the writer's counters. WAL lets the loop read while the writer commits, so the loop
 * never waits on the disk beyond its own indexed reads; put and del only take mu.
 *
 * Changes are coalesced by domain in a pending set; every write_interval the writer swaps
 * the whole set out and writes it in one transaction. A failed batch is merged back under
 * whatever arrived meanwhile and retried, so nothing is dropped while the disk misbehaves.
 * The thread starts with the first change (see sq_writer_start).
 */

/* Lookups wait this long for a lock another process holds, the writer this long. */
#define SQ_LOOP_BUSY_MS   200
#define SQ_WRITER_BUSY_MS 5000
/* The writer thread's nice value relative to the daemon (see sq_writer_main). */
#define SQ_WRITER_NICE 10
/* sqlite's page cache per connection, in KiB (see sq_open_db). */
#define SQ_PAGE_CACHE_KIB "256"
/* Expired rows are deleted this often. */
#define SQ_SWEEP_INTERVAL_S 60
/*
 * The pending set is coalesced by domain, so it stays as big as the set of domains changed
 * in one window; this caps it in bytes for when the disk fails for long and many domains
 * change (puts beyond it are refused and logged; deletes are always kept).
 */
#define SQ_PENDING_BYTES_MAX (64u * 1024 * 1024)
#define SQ_REASON_MAX        256

/* One queued change (a put or a delete), or a record read back; one allocation. */
struct sq_entry {
	struct sq_entry *hnext;
	uint32_t hash;
	bool del;       /* a delete of domain, not a put */
	bool del_first; /* a put queued after a delete of the same domain: delete, then insert */
	uint32_t fetched_at;
	uint32_t expires_at;
	uint32_t last_used;
	size_t size;     /* of the allocation, for SQ_PENDING_BYTES_MAX */
	size_t text_len; /* text holds text_len bytes plus a NUL */
	char *id;
	char *text;
	char domain[];
};

/* Changes keyed by domain. del_all: every row is deleted before the entries are applied. */
struct sq_set {
	struct sq_entry **buckets;
	size_t mask;
	size_t count;
	size_t bytes;
	bool del_all;
};

struct store_get {
	struct store_sqlite *s;
	struct store_get *prev, *next; /* on s->gets until delivered or cancelled */
	struct event *ev;
	store_get_cb cb;
	void *arg;
	struct sq_entry *rec; /* NULL: a miss */
};

struct store_sqlite {
	struct event_base *base;
	char *path;
	unsigned interval_ms;

	/* Loop thread only. */
	sqlite3 *loop_db;
	sqlite3_stmt *st_get;
	sqlite3_stmt *st_load;
	struct store_get *gets;
	bool refusing; /* puts are being refused: the pending set is full */
	bool started;  /* the writer thread runs */
	uint64_t loaded, puts, ngets, get_hits;
	char detail[SQ_REASON_MAX + 32];

	/* Writer thread only (after open). */
	sqlite3 *writer_db;
	sqlite3_stmt *st_begin, *st_commit, *st_rollback;
	sqlite3_stmt *st_upsert, *st_del, *st_del_all, *st_sweep;

	/* Under mu. */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct sq_set *pending;
	struct sq_set *inflight; /* being written; read-only until mu is retaken */
	bool stop;
	bool failing;
	char reason[SQ_REASON_MAX]; /* why writes fail, while failing */
	uint64_t written, write_errors;
};

/* ---- entries and sets ---- */

static uint32_t
sq_hash(const char *s)
{
	return hash_fnv1a(0, s, strlen(s));
}

static struct sq_entry *
sq_entry_new(const char *domain, const char *id, const char *text, size_t text_len)
{
	size_t dlen = strlen(domain), ilen = strlen(id);
	size_t size = sizeof(struct sq_entry) + dlen + 1 + ilen + 1 + text_len + 1;
	struct sq_entry *e = xmalloc(size);

	memset(e, 0, sizeof(*e));
	e->size = size;
	e->hash = sq_hash(domain);
	memcpy(e->domain, domain, dlen + 1);
	e->id = e->domain + dlen + 1;
	memcpy(e->id, id, ilen + 1);
	e->text = e->id + ilen + 1;
	if (text_len > 0)
		memcpy(e->text, text, text_len);
	e->text[text_len] = '\0';
	e->text_len = text_len;
	return e;
}

static struct sq_entry *
sq_entry_from_record(const struct store_record *r)
{
	struct sq_entry *e = sq_entry_new(r->domain, r->id, r->text, r->text_len);

	e->fetched_at = r->fetched_at;
	e->expires_at = r->expires_at;
	e->last_used = r->last_used;
	return e;
}

static struct sq_entry *
sq_entry_copy(const struct sq_entry *e)
{
	struct sq_entry *c = xmalloc(e->size);

	memcpy(c, e, e->size);
	c->hnext = NULL;
	c->id = c->domain + (e->id - e->domain);
	c->text = c->domain + (e->text - e->domain);
	return c;
}

static void
sq_entry_to_record(const struct sq_entry *e, struct store_record *r)
{
	r->domain = e->domain;
	r->id = e->id;
	r->text = e->text;
	r->text_len = e->text_len;
	r->fetched_at = e->fetched_at;
	r->expires_at = e->expires_at;
	r->last_used = e->last_used;
}

/*
 * The net effect of older followed by newer (same domain); frees the loser. A put never
 * replaces a put with a later fetched_at, as the upsert in sq_write_batch would not either.
 */
static struct sq_entry *
sq_compose(struct sq_entry *older, struct sq_entry *newer)
{
	if (newer->del || newer->del_first) {
		free(older);
		return newer;
	}
	if (older->del) {
		newer->del_first = true;
		free(older);
		return newer;
	}
	if (older->fetched_at > newer->fetched_at) {
		free(newer);
		return older;
	}
	newer->del_first = older->del_first;
	free(older);
	return newer;
}

static struct sq_set *
sq_set_new(void)
{
	struct sq_set *set = xcalloc(1, sizeof(*set));

	set->mask = 15;
	set->buckets = xcalloc(set->mask + 1, sizeof(*set->buckets));
	return set;
}

static void
sq_set_free(struct sq_set *set)
{
	if (set == NULL)
		return;
	for (size_t i = 0; i <= set->mask; i++) {
		struct sq_entry *e, *next;

		for (e = set->buckets[i]; e != NULL; e = next) {
			next = e->hnext;
			free(e);
		}
	}
	free(set->buckets);
	free(set);
}

static bool
sq_set_empty(const struct sq_set *set)
{
	return set->count == 0 && !set->del_all;
}

static struct sq_entry *
sq_set_find(const struct sq_set *set, const char *domain)
{
	struct sq_entry *e = set->buckets[sq_hash(domain) & set->mask];

	while (e != NULL && strcmp(e->domain, domain) != 0)
		e = e->hnext;
	return e;
}

/* Unlinks and returns the entry for domain, or NULL. */
static struct sq_entry *
sq_set_take(struct sq_set *set, const char *domain)
{
	struct sq_entry **pp = &set->buckets[sq_hash(domain) & set->mask];

	for (; *pp != NULL; pp = &(*pp)->hnext) {
		struct sq_entry *e = *pp;

		if (strcmp(e->domain, domain) == 0) {
			*pp = e->hnext;
			e->hnext = NULL;
			set->count--;
			set->bytes -= e->size;
			return e;
		}
	}
	return NULL;
}

/* Inserts e, whose domain must not be present. */
static void
sq_set_insert(struct sq_set *set, struct sq_entry *e)
{
	if (set->count >= set->mask + 1) {
		size_t n = (set->mask + 1) * 2;
		struct sq_entry **b = xcalloc(n, sizeof(*b));

		for (size_t i = 0; i <= set->mask; i++) {
			struct sq_entry *x, *next;

			for (x = set->buckets[i]; x != NULL; x = next) {
				next = x->hnext;
				x->hnext = b[x->hash & (n - 1)];
				b[x->hash & (n - 1)] = x;
			}
		}
		free(set->buckets);
		set->buckets = b;
		set->mask = n - 1;
	}
	e->hnext = set->buckets[e->hash & set->mask];
	set->buckets[e->hash & set->mask] = e;
	set->count++;
	set->bytes += e->size;
}

/* Queues e after everything already in set. */
static void
sq_set_apply(struct sq_set *set, struct sq_entry *e)
{
	struct sq_entry *old = sq_set_take(set, e->domain);

	sq_set_insert(set, old != NULL ? sq_compose(old, e) : e);
}

/* The net effect of older followed by newer, built in newer; older is consumed. */
static struct sq_set *
sq_set_merge(struct sq_set *older, struct sq_set *newer)
{
	if (newer->del_all) {
		sq_set_free(older);
		return newer;
	}
	for (size_t i = 0; i <= older->mask; i++) {
		struct sq_entry *e, *next;

		for (e = older->buckets[i]; e != NULL; e = next) {
			struct sq_entry *n = sq_set_take(newer, e->domain);

			next = e->hnext;
			e->hnext = NULL;
			sq_set_insert(newer, n != NULL ? sq_compose(e, n) : e);
		}
	}
	newer->del_all = newer->del_all || older->del_all;
	free(older->buckets);
	free(older);
	return newer;
}

/* ---- small helpers ---- */

static char *sq_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
sq_errorf(const char *fmt, ...)
{
	va_list ap;
	int n;
	char *buf;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return xstrdup("sqlite store: cannot format an error message");
	buf = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(buf, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return buf;
}

/* Reasons end up inside one log line's reason="...": no line breaks, no quotes. */
static void
sq_flatten(char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
		else if (*s == '"')
			*s = '\'';
	}
}

/* sqlite's message, plus the OS error where sqlite had one ("unable to open database file"
 * alone does not say why). */
static void
sq_reason(sqlite3 *db, char *buf, size_t len)
{
	int rc = db != NULL ? sqlite3_extended_errcode(db) : SQLITE_NOMEM;
	int sys = db != NULL ? sqlite3_system_errno(db) : 0;
	const char *msg = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);

	if (sys != 0 && ((rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_IOERR))
		snprintf(buf, len, "%s: %s", msg, strerror(sys));
	else
		snprintf(buf, len, "%s", msg);
	sq_flatten(buf);
}

static void
sq_mono_after(struct timespec *ts, const struct timespec *from, unsigned ms)
{
	ts->tv_sec = from->tv_sec + (time_t)(ms / 1000);
	ts->tv_nsec = from->tv_nsec + (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static bool
sq_mono_reached(const struct timespec *now, const struct timespec *t)
{
	return now->tv_sec > t->tv_sec || (now->tv_sec == t->tv_sec && now->tv_nsec >= t->tv_nsec);
}

static uint32_t
sq_now(void)
{
	time_t t = time(NULL);

	return t < 0 ? 0 : t > (time_t)UINT32_MAX ? UINT32_MAX : (uint32_t)t;
}

static bool
sq_record_ok(const struct store_record *r)
{
	size_t dlen = r->domain != NULL ? strlen(r->domain) : 0;
	size_t ilen = r->id != NULL ? strlen(r->id) : TXT_ID_MAX + 1;

	return dlen > 0 && dlen <= DOMAIN_NAME_MAX && ilen <= TXT_ID_MAX &&
	       r->text_len <= POLICY_BODY_MAX && (r->text != NULL || r->text_len == 0);
}

/*
 * Reads one row (domain, id, fetched_at, expires_at, last_used, text) into e. The file may
 * have been edited by hand or by someone hostile: every field is checked against the limits
 * put enforces, and a row that breaks them is not used.
 */
static struct sq_entry *
sq_entry_from_row(sqlite3_stmt *st)
{
	const char *domain = (const char *)sqlite3_column_text(st, 0);
	size_t dlen = (size_t)sqlite3_column_bytes(st, 0);
	const char *id = (const char *)sqlite3_column_text(st, 1);
	size_t ilen = (size_t)sqlite3_column_bytes(st, 1);
	sqlite3_int64 t[3];
	int ttype = sqlite3_column_type(st, 5);
	const char *text;
	size_t tlen;
	struct sq_entry *e;

	if (domain == NULL || dlen == 0 || dlen > DOMAIN_NAME_MAX || strlen(domain) != dlen)
		return NULL;
	if (id == NULL || ilen > TXT_ID_MAX || strlen(id) != ilen)
		return NULL;
	for (int i = 0; i < 3; i++) {
		if (sqlite3_column_type(st, 2 + i) != SQLITE_INTEGER)
			return NULL;
		t[i] = sqlite3_column_int64(st, 2 + i);
		if (t[i] < 0 || t[i] > (sqlite3_int64)UINT32_MAX)
			return NULL;
	}
	if (ttype != SQLITE_BLOB && ttype != SQLITE_TEXT)
		return NULL;
	/* Text of a BLOB is its bytes unchanged plus a terminator: what store_record wants. */
	text = (const char *)sqlite3_column_text(st, 5);
	tlen = (size_t)sqlite3_column_bytes(st, 5);
	if (tlen > POLICY_BODY_MAX || (text == NULL && tlen > 0))
		return NULL;
	e = sq_entry_new(domain, id, text, tlen);
	e->fetched_at = (uint32_t)t[0];
	e->expires_at = (uint32_t)t[1];
	e->last_used = (uint32_t)t[2];
	return e;
}

/* ---- the writer thread ---- */

/* Runs st to its first row or end; on failure the reason goes to reason (if given). */
static int
sq_step_done(sqlite3_stmt *st, char *reason, size_t len)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE && rc != SQLITE_ROW && reason != NULL)
		sq_reason(sqlite3_db_handle(st), reason, len);
	sqlite3_reset(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

/*
 * Writes batch (may be NULL) and, when sweep_before is not 0, deletes rows that expired
 * before it, all in one transaction: either all of it is on disk or none. Counts the puts
 * written in *nputs. Returns 0, or -1 with the reason in reason.
 */
static int
sq_write_batch(struct store_sqlite *s, const struct sq_set *batch, uint32_t sweep_before,
               uint64_t *nputs, char *reason, size_t len)
{
	sqlite3 *db = s->writer_db;
	int moved = 0;

	*nputs = 0;
	/* A file removed or renamed under us would swallow every write without a word. */
	if (sqlite3_file_control(db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK &&
	    moved) {
		snprintf(reason, len,
		         "the file was removed or renamed since start; restart "
		         "mtastsd to recreate it");
		return -1;
	}
	if (sq_step_done(s->st_begin, reason, len) != 0)
		goto fail;
	if (batch != NULL && batch->del_all && sq_step_done(s->st_del_all, reason, len) != 0)
		goto fail;
	for (size_t i = 0; batch != NULL && i <= batch->mask; i++) {
		for (const struct sq_entry *e = batch->buckets[i]; e != NULL; e = e->hnext) {
			if (e->del || e->del_first) {
				sqlite3_bind_text(s->st_del, 1, e->domain, -1, SQLITE_STATIC);
				if (sq_step_done(s->st_del, reason, len) != 0)
					goto fail;
			}
			if (e->del)
				continue;
			sqlite3_stmt *st = s->st_upsert;

			sqlite3_bind_text(st, 1, e->domain, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, e->id, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, e->fetched_at);
			sqlite3_bind_int64(st, 4, e->expires_at);
			sqlite3_bind_int64(st, 5, e->last_used);
			sqlite3_bind_blob(st, 6, e->text, (int)e->text_len, SQLITE_STATIC);
			if (sq_step_done(st, reason, len) != 0)
				goto fail;
			(*nputs)++;
		}
	}
	if (sweep_before != 0) {
		sqlite3_bind_int64(s->st_sweep, 1, sweep_before);
		if (sq_step_done(s->st_sweep, reason, len) != 0)
			goto fail;
	}
	if (sq_step_done(s->st_commit, reason, len) != 0)
		goto fail;
	return 0;

fail:
	/* Some errors (SQLITE_FULL, IOERR) already rolled back; the rest must be, or the next
	 * BEGIN would fail forever. */
	if (!sqlite3_get_autocommit(db))
		sq_step_done(s->st_rollback, NULL, 0);
	*nputs = 0;
	return -1;
}

static void *
sq_writer_main(void *arg)
{
	struct store_sqlite *s = arg;
	struct timespec now, deadline = { 0, 0 }, sweep_at, wake;
	bool armed = false;

	clock_gettime(CLOCK_MONOTONIC, &sweep_at); /* a first sweep right away */
	pthread_mutex_lock(&s->mu);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		/* The batch window opens with the first change, so an idle daemon never writes
		 * and a change waits at most one window. */
		if (!armed && !sq_set_empty(s->pending)) {
			sq_mono_after(&deadline, &now, s->interval_ms);
			armed = true;
		}
		bool due_write = s->stop || (armed && sq_mono_reached(&now, &deadline));
		bool due_sweep = sq_mono_reached(&now, &sweep_at);

		if (!due_write && !due_sweep) {
			wake = armed && !sq_mono_reached(&deadline, &sweep_at) ? deadline
			                                                       : sweep_at;
			pthread_cond_timedwait(&s->cv, &s->mu, &wake);
			continue;
		}

		struct sq_set *batch = NULL;
		bool stop = s->stop, was_failing = s->failing;

		if (due_write && !sq_set_empty(s->pending)) {
			batch = s->pending;
			s->pending = sq_set_new();
			s->inflight = batch;
		}
		armed = false;
		pthread_mutex_unlock(&s->mu);

		char reason[SQ_REASON_MAX];
		uint64_t nputs = 0;
		uint32_t sweep_before = 0;
		int rc = 0;

		if (due_sweep) {
			sweep_before = sq_now() + 1; /* rows with expires_at <= now */
			sq_mono_after(&sweep_at, &now, SQ_SWEEP_INTERVAL_S * 1000u);
		}
		bool attempted = batch != NULL || sweep_before != 0;

		if (attempted)
			rc = sq_write_batch(s, batch, sweep_before, &nputs, reason, sizeof(reason));

		pthread_mutex_lock(&s->mu);
		s->inflight = NULL;
		size_t left = 0;

		if (attempted && rc == 0) {
			s->written += nputs;
			s->failing = false;
		} else if (attempted) {
			s->write_errors++;
			s->failing = true;
			snprintf(s->reason, sizeof(s->reason), "%s", reason);
			if (batch != NULL)
				s->pending = sq_set_merge(batch, s->pending);
			batch = NULL;
			left = s->pending->count + (s->pending->del_all ? 1 : 0);
		}
		pthread_mutex_unlock(&s->mu);

		/* Logged outside mu so a slow syslog never holds up put. One line per change
		 * of state, not per failed attempt. */
		if (rc != 0 && stop)
			log_warnx("store backend=sqlite path=%s result=write-failed reason=\"%s\" "
			          "lost=%zu action=\"these changes were not saved at exit\"",
			          s->path, reason, left);
		else if (rc != 0 && !was_failing)
			log_warnx("store backend=sqlite path=%s result=write-failed reason=\"%s\" "
			          "pending=%zu action=\"keeping them and retrying every %ums\"",
			          s->path, reason, left, s->interval_ms);
		else if (rc == 0 && was_failing && attempted)
			log_info("store backend=sqlite path=%s result=write-ok records=%llu",
			         s->path, (unsigned long long)nputs);
		sq_set_free(batch);
		pthread_mutex_lock(&s->mu);
		if (stop)
			break;
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* ---- opening ---- */

/* The schema, one step per version: migrations[i] takes version i to i + 1. */
static const char *const sq_migrations[] = {
	"CREATE TABLE meta(key TEXT PRIMARY KEY, value);"
	"CREATE TABLE policies(domain TEXT PRIMARY KEY, id TEXT NOT NULL,"
	" fetched_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
	" last_used INTEGER NOT NULL, text BLOB NOT NULL);"
	/* For the sweep: finding expired rows without reading every row. */
	"CREATE INDEX policies_expires_at ON policies(expires_at);",
};
#define SQ_SCHEMA_VERSION ((int)(sizeof(sq_migrations) / sizeof(sq_migrations[0])))

/* Load reads nearly every row: a table scan beats walking the expiry index. */
static const char sq_sql_load[] = "SELECT domain, id, fetched_at, expires_at, last_used, text "
                                  "FROM policies NOT INDEXED WHERE expires_at > ?1";
static const char sq_sql_get[] = "SELECT domain, id, fetched_at, expires_at, last_used, text "
                                 "FROM policies WHERE domain = ?1";
static const char sq_sql_upsert[] =
        "INSERT INTO policies(domain, id, fetched_at, expires_at, last_used, text) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(domain) DO UPDATE SET id = excluded.id, "
        "fetched_at = excluded.fetched_at, expires_at = excluded.expires_at, "
        "last_used = excluded.last_used, text = excluded.text "
        "WHERE excluded.fetched_at >= policies.fetched_at";

static const char sq_usable_hint[] = "move it away to start with an empty cache";
static const char sq_write_hint[] = "make the file and its directory writable by the daemon's user";

/* Creates the file's directory if it is missing (only the last component). */
static int
sq_make_dir(const char *path, char **err)
{
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	struct stat sb;
	int rc = 0;

	if (slash == NULL || slash == dir) {
		free(dir);
		return 0;
	}
	*slash = '\0';
	if (stat(dir, &sb) == 0) {
		if (!S_ISDIR(sb.st_mode)) {
			*err = sq_errorf(
			        "%s: cannot create the sqlite cache: %s is not a directory", path,
			        dir);
			rc = -1;
		}
	} else if (errno != ENOENT) {
		*err = sq_errorf("%s: cannot create the sqlite cache: %s: %s", path, dir,
		                 strerror(errno));
		rc = -1;
	} else if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
		*err = sq_errorf("%s: cannot create directory %s: %s; create it writable by the "
		                 "daemon's user, or set sqlite.path",
		                 path, dir, strerror(errno));
		rc = -1;
	} else {
		log_info("store backend=sqlite result=created-directory path=%s mode=0750", dir);
	}
	free(dir);
	return rc;
}

/*
 * An open or a write failed for a reason other than the file's contents. sqlite's words
 * ("attempt to write a readonly database") do not say whether the file or its directory is
 * to blame, so this checks both as the daemon's (effective) user.
 */
static char *
sq_access_error(const struct store_sqlite *s, const char *verb, const char *why)
{
	char *dir = xstrdup(s->path), *slash = strrchr(dir, '/');
	char detail[SQ_REASON_MAX + 256] = "";
	char *e;

	if (slash == dir)
		slash[1] = '\0';
	else if (slash != NULL)
		*slash = '\0';
	if (faccessat(AT_FDCWD, s->path, R_OK | W_OK, AT_EACCESS) != 0 && errno != ENOENT)
		snprintf(detail, sizeof(detail), "; the file: %s", strerror(errno));
	else if (slash != NULL && faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0)
		snprintf(detail, sizeof(detail),
		         "; its directory %.*s: %s (sqlite creates the file, "
		         "its -wal and -shm there)",
		         SQ_REASON_MAX, dir, strerror(errno));
	e = sq_errorf("%s: cannot %s (sqlite: %s%s); %s", s->path, verb, why, detail,
	              sq_write_hint);
	free(dir);
	return e;
}

static int
sq_exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* Runs a one-row, one-column query; returns its step result (SQLITE_ROW with *out set). */
static int
sq_query_int(sqlite3 *db, const char *sql, sqlite3_int64 *out, bool *is_int)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*is_int = sqlite3_column_type(st, 0) == SQLITE_INTEGER;
		*out = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	return rc;
}

/* PRAGMA quick_check: sets why to the first complaint, or returns 0 for "ok". */
static int
sq_quick_check(sqlite3 *db, char *why, size_t len)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sq_reason(db, why, len);
		sqlite3_finalize(st);
		return -1;
	}
	const char *res = (const char *)sqlite3_column_text(st, 0);

	rc = res != NULL && strcmp(res, "ok") == 0 ? 0 : -1;
	if (rc != 0) {
		snprintf(why, len, "%s", res != NULL ? res : "quick_check failed");
		sq_flatten(why);
	}
	sqlite3_finalize(st);
	return rc;
}

/*
 * The file's schema version: 0 for an empty file. A file that holds tables but no version
 * belongs to something else, and one from a newer build may hold what this one cannot
 * read: both are refused rather than written into.
 */
static int
sq_schema_version(struct store_sqlite *s, sqlite3 *db, sqlite3_int64 *version, char **err)
{
	char why[SQ_REASON_MAX];
	sqlite3_int64 n = 0;
	bool is_int = false;
	int rc;

	rc = sq_query_int(db, "SELECT count(*) FROM sqlite_master", &n, &is_int);
	if (rc != SQLITE_ROW)
		goto fail;
	if (n == 0) {
		*version = 0;
		return 0;
	}
	rc = sq_query_int(db, "SELECT value FROM meta WHERE key = 'schema_version'", version,
	                  &is_int);
	if (rc == SQLITE_ROW && is_int && *version > SQ_SCHEMA_VERSION) {
		*err = sq_errorf("%s: written by a newer mtastsd (schema version %lld, this build "
		                 "knows up to %d); upgrade mtastsd or move the file away",
		                 s->path, (long long)*version, SQ_SCHEMA_VERSION);
		return -1;
	}
	if (rc == SQLITE_ROW && is_int && *version >= 1)
		return 0;
	/* SQLITE_ERROR here is "no such table: meta". */
	if (rc == SQLITE_ROW || rc == SQLITE_DONE || (rc & 0xff) == SQLITE_ERROR) {
		*err = sq_errorf("%s: not a usable mtastsd cache (it holds tables but no valid "
		                 "meta.schema_version); %s",
		                 s->path, sq_usable_hint);
		return -1;
	}
fail:
	sq_reason(db, why, sizeof(why));
	*err = sq_errorf("%s: not a usable mtastsd cache (sqlite: %s); %s", s->path, why,
	                 sq_usable_hint);
	return -1;
}

/*
 * Brings the schema to SQ_SCHEMA_VERSION in one transaction, which also proves the file
 * writable: a failure surfaces at start, not at the first batch. The version is read again
 * under the write lock, in case another process upgraded the file meanwhile.
 */
static int
sq_migrate(struct store_sqlite *s, sqlite3 *db, char **err)
{
	char why[SQ_REASON_MAX], sql[256];
	sqlite3_int64 version = 0;

	if (sq_exec(db, "BEGIN IMMEDIATE") != 0)
		goto fail;
	if (sq_schema_version(s, db, &version, err) != 0) {
		sq_exec(db, "ROLLBACK");
		return -1;
	}
	for (sqlite3_int64 v = version; v < SQ_SCHEMA_VERSION; v++)
		if (sq_exec(db, sq_migrations[v]) != 0)
			goto fail;
	snprintf(sql, sizeof(sql),
	         "INSERT INTO meta(key, value) VALUES('schema_version', %d), ('opened_at', %lu) "
	         "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
	         SQ_SCHEMA_VERSION, (unsigned long)sq_now());
	if (sq_exec(db, sql) != 0 || sq_exec(db, "COMMIT") != 0)
		goto fail;
	if (version < SQ_SCHEMA_VERSION)
		log_info("store backend=sqlite path=%s result=schema-upgraded from=%lld to=%d",
		         s->path, (long long)version, SQ_SCHEMA_VERSION);
	return 0;

fail:
	sq_reason(db, why, sizeof(why));
	if (!sqlite3_get_autocommit(db))
		sq_exec(db, "ROLLBACK");
	*err = sq_access_error(s, "write", why);
	return -1;
}

static int
sq_prepare(struct store_sqlite *s, sqlite3 *db, const char *sql, sqlite3_stmt **st, char **err)
{
	char why[SQ_REASON_MAX];

	if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) == SQLITE_OK)
		return 0;
	sq_reason(db, why, sizeof(why));
	*err = sq_errorf("%s: not a usable mtastsd cache (sqlite: %s); %s", s->path, why,
	                 sq_usable_hint);
	return -1;
}

static int
sq_open_db(struct store_sqlite *s, int flags, unsigned busy_ms, sqlite3 **dbp, char **err)
{
	char why[SQ_REASON_MAX];

	/* Each connection is used by one thread at a time, so sqlite's own mutexes can go. */
	if (sqlite3_open_v2(s->path, dbp, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		sq_reason(*dbp, why, sizeof(why));
		*err = sq_access_error(s, "open", why);
		return -1;
	}
	sqlite3_extended_result_codes(*dbp, 1);
	sqlite3_busy_timeout(*dbp, (int)busy_ms);
	/* Lookups are answered from the daemon's own cache; sqlite's page cache only serves
	 * batch writes and rare point reads, so its 2 MiB default per connection is waste. */
	(void)sq_exec(*dbp, "PRAGMA cache_size=-" SQ_PAGE_CACHE_KIB);
	return 0;
}

/* Opens the writer connection and brings the file to a checked, current, writable state. */
static int
sq_open_writer(struct store_sqlite *s, char **err)
{
	sqlite3 *db;
	char why[SQ_REASON_MAX];
	sqlite3_int64 version = 0;

	if (sq_open_db(s, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, SQ_WRITER_BUSY_MS,
	               &s->writer_db, err) != 0)
		return -1;
	db = s->writer_db;
	/* Nothing is written before the file is known to be ours, sound and not too new. */
	if (sq_quick_check(db, why, sizeof(why)) != 0) {
		int rc = sqlite3_errcode(db) & 0xff;

		/* Only these say the bytes are bad; the rest (CANTOPEN for a -shm that cannot be
		 * created, IOERR, BUSY) are about access, and moving the file would not help. */
		if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_NOTADB ||
		    rc == SQLITE_CORRUPT)
			*err = sq_errorf("%s: not a usable mtastsd cache (sqlite: %s); %s", s->path,
			                 why, sq_usable_hint);
		else
			*err = sq_access_error(s, "open", why);
		return -1;
	}
	if (sq_schema_version(s, db, &version, err) != 0)
		return -1;
	/* sqlite quietly falls back to read-only when it may not write the file. */
	if (sqlite3_db_readonly(db, "main") == 1) {
		*err = sq_access_error(s, "write", "opened read-only");
		return -1;
	}
	/* WAL: readers and the writer do not block each other, and a crash at any moment
	 * leaves the last committed batch. NORMAL syncs at checkpoints only: a power loss may
	 * lose recent batches, a killed process none. */
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
	bool wal = false;

	if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
		const char *mode = (const char *)sqlite3_column_text(st, 0);

		wal = mode != NULL && strcmp(mode, "wal") == 0;
	}
	if (!wal)
		sq_reason(db, why, sizeof(why));
	sqlite3_finalize(st);
	if (!wal) {
		*err = sq_errorf("%s: cannot switch to WAL mode (sqlite: %s); %s", s->path, why,
		                 sq_write_hint);
		return -1;
	}
	if (sq_exec(db, "PRAGMA synchronous=NORMAL") != 0) {
		sq_reason(db, why, sizeof(why));
		*err = sq_errorf("%s: cannot set synchronous=NORMAL (sqlite: %s)", s->path, why);
		return -1;
	}
	if (sq_migrate(s, db, err) != 0)
		return -1;
	if (sq_prepare(s, db, "BEGIN IMMEDIATE", &s->st_begin, err) != 0 ||
	    sq_prepare(s, db, "COMMIT", &s->st_commit, err) != 0 ||
	    sq_prepare(s, db, "ROLLBACK", &s->st_rollback, err) != 0 ||
	    sq_prepare(s, db, sq_sql_upsert, &s->st_upsert, err) != 0 ||
	    sq_prepare(s, db, "DELETE FROM policies WHERE domain = ?1", &s->st_del, err) != 0 ||
	    sq_prepare(s, db, "DELETE FROM policies", &s->st_del_all, err) != 0 ||
	    sq_prepare(s, db, "DELETE FROM policies WHERE expires_at < ?1", &s->st_sweep, err) != 0)
		return -1;
	return 0;
}

static void sq_free(struct store_sqlite *s);

void *
store_sqlite_open(struct event_base *base, const struct config *cfg, char **err)
{
	struct store_sqlite *s = xcalloc(1, sizeof(*s));

	assert(base != NULL);
	*err = NULL;
	s->base = base;
	s->path = xstrdup(cfg->sqlite.path);
	s->interval_ms = cfg->sqlite.write_interval_ms > 0 ? cfg->sqlite.write_interval_ms : 1;
	s->pending = sq_set_new();
	if (sq_make_dir(s->path, err) != 0 || sq_open_writer(s, err) != 0)
		goto fail;
	if (sq_open_db(s, SQLITE_OPEN_READWRITE, SQ_LOOP_BUSY_MS, &s->loop_db, err) != 0 ||
	    sq_prepare(s, s->loop_db, sq_sql_get, &s->st_get, err) != 0 ||
	    sq_prepare(s, s->loop_db, sq_sql_load, &s->st_load, err) != 0)
		goto fail;
	pthread_mutex_init(&s->mu, NULL);
	/* The window is measured on the monotonic clock, so a wall-clock step cannot stall
	 * or hurry the writer. */
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	log_info("store backend=sqlite path=%s result=open schema_version=%d write_interval_ms=%u",
	         s->path, SQ_SCHEMA_VERSION, s->interval_ms);
	return s;

fail:
	sq_free(s);
	return NULL;
}

/* ---- the operations (event loop thread) ---- */

/*
 * The writer starts with the first change, not at open: the daemon opens and loads the
 * store before it detaches, and a thread does not survive fork().
 */
static void
sq_writer_start(struct store_sqlite *s)
{
	if (s->started)
		return;
	/* Disk writes yield to the event loop when they share a core: a batch must not delay
	 * Postfix's lookups. */
	bgthread_start(&s->thread, "store backend=sqlite writer", SQ_WRITER_NICE, sq_writer_main,
	               s);
	s->started = true;
}

static int
sq_load(void *impl, uint32_t now, store_load_cb fn, void *arg, char *err, size_t errlen)
{
	struct store_sqlite *s = impl;
	sqlite3_stmt *st = s->st_load;
	uint64_t bad = 0;
	int rc;

	sqlite3_bind_int64(st, 1, now);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct sq_entry *e = sq_entry_from_row(st);
		struct store_record r;

		if (e == NULL) {
			bad++;
			continue;
		}
		sq_entry_to_record(e, &r);
		fn(arg, &r);
		free(e);
		s->loaded++;
	}
	if (rc != SQLITE_DONE) {
		char why[SQ_REASON_MAX];

		sq_reason(s->loop_db, why, sizeof(why));
		sqlite3_reset(st);
		snprintf(err, errlen, "%s: cannot read the cached policies (sqlite: %s); %s",
		         s->path, why, sq_usable_hint);
		return -1;
	}
	sqlite3_reset(st);
	if (bad > 0)
		log_warnx("store backend=sqlite path=%s result=rows-skipped count=%llu "
		          "reason=\"fields out of range or of the wrong type\"",
		          s->path, (unsigned long long)bad);
	log_info("store backend=sqlite path=%s result=loaded records=%llu", s->path,
	         (unsigned long long)s->loaded);
	return 0;
}

static void
sq_put(void *impl, const struct store_record *r)
{
	struct store_sqlite *s = impl;
	struct sq_entry *e;
	bool refuse, wake;

	if (!sq_record_ok(r)) {
		log_warnx("store backend=sqlite result=put-refused domain=%.253s "
		          "reason=\"a field is empty or over its limit\"",
		          r->domain != NULL ? r->domain : "");
		return;
	}
	sq_writer_start(s);
	e = sq_entry_from_record(r);
	s->puts++;
	pthread_mutex_lock(&s->mu);
	const struct sq_entry *old = sq_set_find(s->pending, e->domain);
	size_t bytes = s->pending->bytes - (old != NULL ? old->size : 0) + e->size;

	refuse = bytes > SQ_PENDING_BYTES_MAX;
	if (refuse)
		s->write_errors++;
	wake = sq_set_empty(s->pending);
	if (!refuse)
		sq_set_apply(s->pending, e);
	pthread_mutex_unlock(&s->mu);
	if (wake)
		pthread_cond_signal(&s->cv);
	if (refuse && !s->refusing)
		log_warnx("store backend=sqlite path=%s result=put-refused domain=%s "
		          "reason=\"over %u bytes already wait to be written\"",
		          s->path, e->domain, SQ_PENDING_BYTES_MAX);
	else if (!refuse && s->refusing)
		log_info("store backend=sqlite path=%s result=put-accepted", s->path);
	s->refusing = refuse;
	if (refuse)
		free(e);
}

static void
sq_del(void *impl, const char *domain)
{
	struct store_sqlite *s = impl;
	struct sq_entry *e = NULL;
	bool wake;

	if (domain != NULL) {
		if (*domain == '\0' || strlen(domain) > DOMAIN_NAME_MAX)
			return; /* put never accepted such a key */
		e = sq_entry_new(domain, "", NULL, 0);
		e->del = true;
	}
	sq_writer_start(s);
	pthread_mutex_lock(&s->mu);
	wake = sq_set_empty(s->pending);
	if (e != NULL) {
		sq_set_apply(s->pending, e);
	} else {
		/* Everything queued so far is moot: the delete covers it. */
		sq_set_free(s->pending);
		s->pending = sq_set_new();
		s->pending->del_all = true;
	}
	pthread_mutex_unlock(&s->mu);
	if (wake)
		pthread_cond_signal(&s->cv);
}

/* Of two records for a domain, the one the upsert keeps: on a tie the newer layer. */
static struct sq_entry *
sq_newest(struct sq_entry *newer, struct sq_entry *older)
{
	if (newer == NULL)
		return older;
	if (older == NULL || older->fetched_at <= newer->fetched_at) {
		free(older);
		return newer;
	}
	free(newer);
	return older;
}

/*
 * What domain will hold once every queued change is written: the pending set, then the
 * batch being written, then the file, newest first, stopping at a layer that deletes.
 */
static struct sq_entry *
sq_lookup(struct store_sqlite *s, const char *domain)
{
	struct sq_entry *best = NULL;
	bool stop = false;
	int rc;

	pthread_mutex_lock(&s->mu);
	const struct sq_set *layers[] = { s->pending, s->inflight };

	for (size_t i = 0; i < 2 && !stop && layers[i] != NULL; i++) {
		const struct sq_entry *e = sq_set_find(layers[i], domain);

		if (e != NULL && !e->del)
			best = sq_newest(best, sq_entry_copy(e));
		stop = e != NULL ? e->del || e->del_first || layers[i]->del_all
		                 : layers[i]->del_all;
	}
	pthread_mutex_unlock(&s->mu);
	if (stop)
		return best;

	sqlite3_bind_text(s->st_get, 1, domain, -1, SQLITE_STATIC);
	rc = sqlite3_step(s->st_get);
	if (rc == SQLITE_ROW) {
		struct sq_entry *e = sq_entry_from_row(s->st_get);

		if (e == NULL)
			log_warnx("store backend=sqlite path=%s result=row-skipped domain=%s "
			          "reason=\"fields out of range or of the wrong type\"",
			          s->path, domain);
		best = sq_newest(best, e);
	} else if (rc != SQLITE_DONE) {
		char why[SQ_REASON_MAX];

		sq_reason(s->loop_db, why, sizeof(why));
		log_warnx("store backend=sqlite path=%s result=read-failed domain=%s reason=\"%s\"",
		          s->path, domain, why);
	}
	sqlite3_reset(s->st_get);
	return best;
}

static void
sq_get_unlink(struct store_get *g)
{
	struct store_sqlite *s = g->s;

	if (g->prev != NULL)
		g->prev->next = g->next;
	else
		s->gets = g->next;
	if (g->next != NULL)
		g->next->prev = g->prev;
	g->prev = g->next = NULL;
}

static void
sq_get_free(struct store_get *g)
{
	event_free(g->ev);
	free(g->rec);
	free(g);
}

static void
sq_get_fire(evutil_socket_t fd, short what, void *arg)
{
	struct store_get *g = arg;
	struct store_record r;

	(void)fd;
	(void)what;
	/* Off the list first: the callback may cancel other gets or close the store. */
	sq_get_unlink(g);
	if (g->rec != NULL)
		sq_entry_to_record(g->rec, &r);
	g->cb(g->arg, g->rec != NULL ? &r : NULL);
	sq_get_free(g);
}

static struct store_get *
sq_get(void *impl, const char *domain, store_get_cb cb, void *arg)
{
	struct store_sqlite *s = impl;
	struct store_get *g = xcalloc(1, sizeof(*g));
	static const struct timeval zero = { 0, 0 };

	s->ngets++;
	if (domain != NULL && *domain != '\0' && strlen(domain) <= DOMAIN_NAME_MAX)
		g->rec = sq_lookup(s, domain);
	if (g->rec != NULL && g->rec->expires_at <= sq_now()) {
		free(g->rec);
		g->rec = NULL;
	}
	if (g->rec != NULL)
		s->get_hits++;
	g->s = s;
	g->cb = cb;
	g->arg = arg;
	/* The answer is ready now, but callers are promised it on a later loop turn. */
	g->ev = evtimer_new(s->base, sq_get_fire, g);
	if (g->ev == NULL)
		fatalx("store backend=sqlite result=evtimer_new-failed");
	evtimer_add(g->ev, &zero);
	g->next = s->gets;
	if (s->gets != NULL)
		s->gets->prev = g;
	s->gets = g;
	return g;
}

static void
sq_cancel(void *impl, struct store_get *g)
{
	(void)impl;
	if (g == NULL)
		return;
	sq_get_unlink(g);
	sq_get_free(g);
}

static void
sq_status(void *impl, struct store_status *st)
{
	struct store_sqlite *s = impl;

	memset(st, 0, sizeof(*st));
	st->backend = "sqlite";
	st->connected = s->writer_db != NULL && s->loop_db != NULL;
	st->loaded = s->loaded;
	st->puts = s->puts;
	st->gets = s->ngets;
	st->get_hits = s->get_hits;
	pthread_mutex_lock(&s->mu);
	st->written = s->written;
	st->write_errors = s->write_errors;
	st->pending = s->pending->count + (s->inflight != NULL ? s->inflight->count : 0);
	if (s->failing)
		snprintf(s->detail, sizeof(s->detail), "write failing: %s", s->reason);
	else if (s->refusing)
		snprintf(s->detail, sizeof(s->detail), "pending full: refusing puts");
	else
		snprintf(s->detail, sizeof(s->detail), "ok");
	pthread_mutex_unlock(&s->mu);
	st->detail = s->detail;
}

/* Frees what open built, thread excluded. */
static void
sq_free(struct store_sqlite *s)
{
	sqlite3_stmt *stmts[] = { s->st_get,    s->st_load,     s->st_begin,
		                  s->st_commit, s->st_rollback, s->st_upsert,
		                  s->st_del,    s->st_del_all,  s->st_sweep };

	while (s->gets != NULL) {
		struct store_get *g = s->gets;

		/* The owner should have cancelled these; their callbacks will not run. */
		sq_get_unlink(g);
		sq_get_free(g);
	}
	for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
		sqlite3_finalize(stmts[i]);
	/* The loop connection first: the last one to close checkpoints and removes the WAL. */
	sqlite3_close(s->loop_db);
	sqlite3_close(s->writer_db);
	sq_set_free(s->pending);
	free(s->path);
	free(s);
}

static void
sq_close(void *impl)
{
	struct store_sqlite *s = impl;

	if (s == NULL)
		return;
	if (s->started) {
		pthread_mutex_lock(&s->mu);
		s->stop = true;
		pthread_mutex_unlock(&s->mu);
		pthread_cond_signal(&s->cv);
		pthread_join(s->thread, NULL);
	}
	/* Without a writer nothing was ever queued: put and del start it. */
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	log_info("store backend=sqlite path=%s result=closed written=%llu write_errors=%llu",
	         s->path, (unsigned long long)s->written, (unsigned long long)s->write_errors);
	sq_free(s);
}

const struct store_ops store_sqlite_ops = {
	.name = "sqlite",
	.load = sq_load,
	.put = sq_put,
	.del = sq_del,
	.get = sq_get,
	.cancel = sq_cancel,
	.status = sq_status,
	.close = sq_close,
};
