/* store_redis.c: the fleet store: policies shared through Redis over hiredis's libevent adapter. */
#include "config.h"

#include "store/store_redis.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "base/hash.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "config/config.h"

/*
 * One hiredis async context at a time, on the daemon's loop; hiredis 0.14 has no timeouts, so:
 *  - Replies come in the order commands were sent, so one timer on the oldest command in flight
 *    is every command's timeout (the handshake's deadline is the connect timeout). When it fires
 *    the link is stalled: the context is freed, hiredis answers each command NULL, gets answer
 *    NULL and writes go back to the pending set.
 *  - A command's privdata lives until hiredis calls it back, which it does exactly once (reply,
 *    or NULL when the context goes); a cancelled or answered get only unhooks from it.
 *  - Nothing calls hiredis from a hiredis callback: dropping the link, sending pending writes
 *    and delivering answers run from the kick event on a later turn.
 *  - Writes always go through the pending set (coalesced by domain) and out when the link is
 *    up, so a relay that fetched during an outage still shares it afterwards.
 *
 * One value per policy under the key prefix + domain:
 *
 *     "v1 <fetched_at> <expires_at> <last_used> <id> <text_len>\n<text>"
 *
 * Numbers are decimal uint32 (text_len at most REDIS_TEXT_MAX), the id is 1..32 of
 * [A-Za-z0-9], the text is the policy file verbatim. The domain is the key's, never the value's.
 * Values come from the network (any client of the server may write them), so parsing is strict
 * and bounded; anything else is "no record".
 */
#define REDIS_ID_MAX     32
#define REDIS_TEXT_MAX   65536
#define REDIS_HEADER_MAX 96 /* "v1 " + 4 numbers + id + separators is at most 81 */
#define REDIS_VALUE_MAX  (REDIS_HEADER_MAX + REDIS_TEXT_MAX)
#define REDIS_DOMAIN_MAX 253

/* Writes kept while Redis is away, coalesced by domain; beyond either bound they are dropped. */
#define REDIS_PENDING_MAX   100000
#define REDIS_PENDING_BYTES ((size_t)64 << 20)
/* Writes in flight at once: a backlog drains without queueing megabytes in hiredis. */
#define REDIS_WINDOW 256
/* Keys per SCAN step of del(NULL), and so per UNLINK script. */
#define REDIS_SCAN_COUNT 500

#define REDIS_RETRY_MIN_MS 500
#define REDIS_RETRY_MAX_MS 30000
/* A link up this long was healthy: losing it reconnects at once, quietly, with back-off reset
 * (servers close idle clients after their "timeout"). A shorter-lived link backs off. */
#define REDIS_STABLE_MS  30000
#define REDIS_REASON_MAX 120

/*
 * Newer wins, atomically: the stored value is replaced only by a later fetch, or by the same
 * fetch used more recently (last_used moves forward). A value that is not ours (no "v1" header)
 * is replaced; a key of another type makes the script fail rather than clobber it. EXPIREAT lets
 * Redis drop the policy at its expiry by itself. SET + EXPIREAT, not SET EXAT: Redis < 6.2.
 * KEYS[1] = key; ARGV = value, fetched_at, last_used, expires_at. Returns 1 written, 0 kept.
 */
static const char redis_put_script[] = "local cur = redis.call('GET', KEYS[1])\n"
                                       "if cur then\n"
                                       "  local f, u = string.match(cur, '^v1 (%d+) %d+ (%d+) ')\n"
                                       "  f = tonumber(f); u = tonumber(u)\n"
                                       "  if f and u then\n"
                                       "    local nf, nu = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
                                       "    if f > nf or (f == nf and u >= nu) then return 0 end\n"
                                       "  end\n"
                                       "end\n"
                                       "redis.call('SET', KEYS[1], ARGV[1])\n"
                                       "redis.call('EXPIREAT', KEYS[1], ARGV[4])\n"
                                       "return 1\n";

/* del(NULL): of the keys one SCAN step found, unlinks those holding our values, so even an empty
 * prefix never deletes what other applications keep in the same database. */
static const char redis_unlink_script[] = "local n = 0\n"
                                          "for _, k in ipairs(KEYS) do\n"
                                          "  if redis.call('TYPE', k).ok == 'string' and\n"
                                          "     redis.call('GETRANGE', k, 0, 2) == 'v1 ' then\n"
                                          "    redis.call('UNLINK', k)\n"
                                          "    n = n + 1\n"
                                          "  end\n"
                                          "end\n"
                                          "return n\n";

struct redis_link {
	struct redis_link *prev;
	struct redis_link *next;
};

#define redis_link_owner(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

enum redis_state {
	REDIS_CONNECTING,  /* a context exists; AUTH, SELECT and PING are under way */
	REDIS_UP,          /* PING answered: commands flow */
	REDIS_DOWN,        /* no context; the retry timer runs */
	REDIS_AUTH_FAILED, /* no context; the server refused our credentials; the retry timer runs
	                    */
};

static const char *const redis_state_names[] = {
	[REDIS_CONNECTING] = "connecting",
	[REDIS_UP] = "up",
	[REDIS_DOWN] = "down",
	[REDIS_AUTH_FAILED] = "auth_failed",
};

/* What the log last said, so that a state that persists across retries is logged once. */
enum redis_said {
	REDIS_SAID_NOTHING,
	REDIS_SAID_UP,
	REDIS_SAID_DOWN,
	REDIS_SAID_AUTH,
};

enum redis_kind {
	REDIS_CMD_AUTH,
	REDIS_CMD_SELECT,
	REDIS_CMD_PING, /* last of the handshake: its answer means the link is usable */
	REDIS_CMD_GET,
	REDIS_CMD_PUT,
	REDIS_CMD_DEL,
	REDIS_CMD_SCAN,
	REDIS_CMD_UNLINK,
};

struct store_redis;

/* A write waiting for the link, or in flight (then owned by its command). */
struct redis_pend {
	struct redis_pend *hnext;
	struct redis_link link; /* on s->pend_fifo, oldest first */
	uint32_t hash;
	bool del;
	uint32_t fetched_at;
	uint32_t last_used;
	uint32_t expires_at;
	char *value; /* put: the formatted value */
	size_t value_len;
	size_t domain_len;
	char domain[];
};

/*
 * A command handed to hiredis; its address is the privdata. hiredis calls back exactly once
 * per command, with the reply or, when the context goes away, with NULL, so the command is freed
 * there and nowhere else: a get that times out or is cancelled only unhooks itself (g = NULL).
 */
struct redis_cmd {
	struct redis_link link; /* on s->inflight: sent order, which is reply order */
	struct store_redis *s;
	enum redis_kind kind;
	uint64_t deadline_ms;
	uint64_t gen;
	struct store_get *g;  /* GET: the waiting handle; NULL once cancelled */
	struct redis_pend *p; /* PUT, DEL: the write */
};

enum redis_get_state {
	REDIS_GET_SENT,       /* a GETRANGE is in flight for it */
	REDIS_GET_READY,      /* answered, on s->ready until the deliver turn */
	REDIS_GET_DELIVERING, /* its callback runs; freed when it returns */
};

struct store_get {
	struct redis_link link; /* on s->ready while READY */
	struct store_redis *s;
	enum redis_get_state state;
	struct redis_cmd *cmd; /* while SENT */
	store_get_cb cb;
	void *arg;
	bool hit;
	struct store_record rec;
	char *buf; /* the value; rec's strings point into it */
	char id[REDIS_ID_MAX + 1];
	char domain[];
};

struct store_redis {
	struct event_base *base;

	/* Copies of the configuration: a reload frees the config this was opened with. */
	char *address; /* the canonical text, for logs */
	bool unix_socket;
	char *host; /* or the socket path */
	int port;
	unsigned database;
	char *prefix;
	size_t prefix_len;
	char *user;
	char *password;
	unsigned timeout_ms;

	redisAsyncContext *ac; /* NULL while down */
	enum redis_state state;
	enum redis_said said;
	char reason[REDIS_REASON_MAX]; /* why the link is not up */
	bool hs_failed;                /* a handshake reply failed; the kick drops the link */
	bool hs_auth;                  /* ... and it was about credentials */
	char hs_reason[REDIS_REASON_MAX];
	uint64_t up_since_ms;
	unsigned retry_ms; /* the next back-off delay */
	uint64_t retry_at_ms;
	bool err_logged; /* a write error was logged on this link */

	struct event *retry_ev; /* reconnect after back-off */
	struct event *tmo_ev;   /* the deadline of the oldest command in flight */
	struct event *kick_ev;  /* deferred work: drop, flush, deliver */

	struct redis_link inflight; /* struct redis_cmd */
	unsigned nwrites;           /* PUT and DEL among them */
	struct redis_link ready;    /* struct store_get */

	/* The pending writes: a hash table by domain plus a FIFO. */
	struct redis_pend **buckets;
	size_t nbuckets;
	size_t npend;
	size_t pend_bytes;
	struct redis_link pend_fifo;
	uint32_t seed;
	uint64_t dropped; /* writes dropped since the pending set was last empty */
	uint64_t flushed; /* pending writes sent since the link came up, for one log line */
	bool flushing;

	/* del(NULL): bumps gen, so answers and writes from before it no longer count. */
	uint64_t gen;
	bool delall;
	bool scan_inflight;
	bool scan_done; /* the cursor came back to 0 */
	char cursor[32];
	unsigned unlink_inflight;
	uint64_t unlinked;
	char **batch; /* keys of the last SCAN step, waiting for their UNLINK script */
	size_t *batch_len;
	size_t nbatch;

	bool closing;
	uint64_t puts, written, write_errors, gets, get_hits;
	char detail[REDIS_REASON_MAX + 64];
};

static void redis_on_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* ---- small helpers ---- */

static uint64_t
redis_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint32_t
redis_wall(void)
{
	return (uint32_t)time(NULL);
}

static void
redis_link_init(struct redis_link *l)
{
	l->prev = l->next = l;
}

static bool
redis_link_empty(const struct redis_link *head)
{
	return head->next == head;
}

static void
redis_link_append(struct redis_link *head, struct redis_link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

static void
redis_link_remove(struct redis_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	redis_link_init(l);
}

static void
redis_link_move(struct redis_link *from, struct redis_link *to)
{
	redis_link_init(to);
	if (redis_link_empty(from))
		return;
	to->next = from->next;
	to->prev = from->prev;
	to->next->prev = to;
	to->prev->next = to;
	redis_link_init(from);
}

static struct timeval
redis_tv(uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	return tv;
}

/* Server error strings and errno texts go into logs between quotes: printable, no quotes. */
static void
redis_reason_copy(char *dst, size_t size, const char *src, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len && src[i] != '\0' && o + 1 < size; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[o++] = c < 0x20 || c > 0x7e || c == '"' || c == '\\' ? '?' : (char)c;
	}
	while (o > 0 && dst[o - 1] == ' ')
		o--;
	dst[o] = '\0';
}

/* "0.5s", "4s": a delay as the logs and the status show it, rounded up. */
static void
redis_fmt_delay(char *buf, size_t size, uint64_t ms)
{
	if (ms == 0)
		snprintf(buf, size, "now");
	else if (ms < 1000)
		snprintf(buf, size, "0.%us", (unsigned)((ms + 99) / 100 > 9 ? 9 : (ms + 99) / 100));
	else
		snprintf(buf, size, "%us", (unsigned)((ms + 999) / 1000));
}

/* ---- the value format ---- */

/* A decimal uint32 ending at stop; advances *p past it and the stop character. */
static bool
redis_parse_u32(const char **p, const char *end, char stop, uint32_t *out)
{
	const char *s = *p;
	uint64_t v = 0;
	size_t n = 0;

	while (s < end && *s >= '0' && *s <= '9' && n < 10) {
		v = v * 10 + (uint64_t)(*s - '0');
		s++;
		n++;
	}
	if (n == 0 || v > UINT32_MAX || s >= end || *s != stop)
		return false;
	*out = (uint32_t)v;
	*p = s + 1;
	return true;
}

static bool
redis_id_valid(const char *id, size_t len)
{
	if (len == 0 || len > REDIS_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

/*
 * Parses value (len bytes, with one writable byte after them) into rec, in place: rec's text
 * points into value, the id is copied to id. Returns NULL when well formed, else the reason.
 */
static const char *
redis_value_parse(char *value, size_t len, char id[REDIS_ID_MAX + 1], struct store_record *rec)
{
	const char *p = value, *end = value + len, *idp;
	uint32_t text_len;

	if (len > REDIS_VALUE_MAX)
		return "too long";
	if (len < 3 || memcmp(p, "v1 ", 3) != 0)
		return "no v1 header";
	p += 3;
	if (!redis_parse_u32(&p, end, ' ', &rec->fetched_at) ||
	    !redis_parse_u32(&p, end, ' ', &rec->expires_at) ||
	    !redis_parse_u32(&p, end, ' ', &rec->last_used))
		return "bad number";
	idp = p;
	while (p < end && *p != ' ')
		p++;
	if (p >= end || !redis_id_valid(idp, (size_t)(p - idp)))
		return "bad id";
	memcpy(id, idp, (size_t)(p - idp));
	id[p - idp] = '\0';
	p++;
	if (!redis_parse_u32(&p, end, '\n', &text_len))
		return "bad length";
	if (text_len > REDIS_TEXT_MAX || text_len != (size_t)(end - p))
		return "length mismatch";
	if (memchr(p, '\0', text_len) != NULL)
		return "NUL in text";
	if (rec->expires_at < rec->fetched_at)
		return "expires before fetched";
	value[len] = '\0';
	rec->id = id;
	rec->text = p;
	rec->text_len = text_len;
	return NULL;
}

/* The value for r; NULL (and a reason) for a record this format cannot carry. */
static char *
redis_value_format(const struct store_record *r, size_t *len, const char **why)
{
	char head[REDIS_HEADER_MAX];
	size_t id_len = r->id != NULL ? strlen(r->id) : 0;
	int n;
	char *v;

	if (!redis_id_valid(r->id, id_len)) {
		*why = "id is not 1..32 letters and digits";
		return NULL;
	}
	if (r->text_len > REDIS_TEXT_MAX || memchr(r->text, '\0', r->text_len) != NULL) {
		*why = "text longer than 65536 bytes or holding NUL";
		return NULL;
	}
	n = snprintf(head, sizeof(head), "v1 %" PRIu32 " %" PRIu32 " %" PRIu32 " %s %zu\n",
	             r->fetched_at, r->expires_at, r->last_used, r->id, r->text_len);
	assert(n > 0 && (size_t)n < sizeof(head));
	*len = (size_t)n + r->text_len;
	v = xmalloc(*len + 1);
	memcpy(v, head, (size_t)n);
	memcpy(v + n, r->text, r->text_len);
	v[*len] = '\0';
	return v;
}

/* ---- pending writes ---- */

static uint32_t
redis_hash(const struct store_redis *s, const char *d, size_t len)
{
	return hash_fnv1a(s->seed, d, len);
}

static struct redis_pend **
redis_pend_slot(struct store_redis *s, const char *domain, size_t len, uint32_t hash)
{
	struct redis_pend **pp = &s->buckets[hash & (s->nbuckets - 1)];

	for (; *pp != NULL; pp = &(*pp)->hnext)
		if ((*pp)->hash == hash && (*pp)->domain_len == len &&
		    memcmp((*pp)->domain, domain, len) == 0)
			break;
	return pp;
}

static struct redis_pend *
redis_pend_find(struct store_redis *s, const char *domain)
{
	size_t len = strlen(domain);

	return *redis_pend_slot(s, domain, len, redis_hash(s, domain, len));
}

static size_t
redis_pend_size(const struct redis_pend *p)
{
	return sizeof(*p) + p->domain_len + p->value_len;
}

static void
redis_pend_free(struct redis_pend *p)
{
	if (p == NULL)
		return;
	free(p->value);
	free(p);
}

static struct redis_pend *
redis_pend_new(const char *domain, bool del)
{
	size_t len = strlen(domain);
	struct redis_pend *p = xcalloc(1, sizeof(*p) + len + 1);

	memcpy(p->domain, domain, len + 1);
	p->domain_len = len;
	p->del = del;
	redis_link_init(&p->link);
	return p;
}

static void
redis_pend_grow(struct store_redis *s)
{
	size_t n = s->nbuckets * 2;
	struct redis_pend **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < s->nbuckets; i++) {
		struct redis_pend *p = s->buckets[i], *next;

		for (; p != NULL; p = next) {
			next = p->hnext;
			p->hnext = b[p->hash & (n - 1)];
			b[p->hash & (n - 1)] = p;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
}

static void
redis_pend_insert(struct store_redis *s, struct redis_pend *p, bool front)
{
	struct redis_pend **slot;

	if (s->npend >= s->nbuckets)
		redis_pend_grow(s);
	p->hash = redis_hash(s, p->domain, p->domain_len);
	slot = &s->buckets[p->hash & (s->nbuckets - 1)];
	p->hnext = *slot;
	*slot = p;
	if (front) {
		p->link.next = s->pend_fifo.next;
		p->link.prev = &s->pend_fifo;
		s->pend_fifo.next->prev = &p->link;
		s->pend_fifo.next = &p->link;
	} else {
		redis_link_append(&s->pend_fifo, &p->link);
	}
	s->npend++;
	s->pend_bytes += redis_pend_size(p);
}

/* Unhooks p from the table and the FIFO; the caller owns it. */
static void
redis_pend_unhook(struct store_redis *s, struct redis_pend *p)
{
	struct redis_pend **pp = redis_pend_slot(s, p->domain, p->domain_len, p->hash);

	assert(*pp == p);
	*pp = p->hnext;
	p->hnext = NULL;
	redis_link_remove(&p->link);
	s->npend--;
	s->pend_bytes -= redis_pend_size(p);
}

/* True when write a should win over write b for the same domain (newer wins, as in Lua). */
static bool
redis_pend_newer(const struct redis_pend *a, const struct redis_pend *b)
{
	return a->fetched_at > b->fetched_at ||
	       (a->fetched_at == b->fetched_at && a->last_used >= b->last_used);
}

/*
 * Queues a fresh write, coalesced with what the domain already has pending: a delete replaces
 * anything, a put replaces a delete or an older put. A requeued write (its command failed) is
 * older than anything pending for its domain, so it only fills a gap or beats an older put.
 */
static void
redis_pend_add(struct store_redis *s, struct redis_pend *p, bool requeued)
{
	struct redis_pend **slot = redis_pend_slot(s, p->domain, p->domain_len,
	                                           redis_hash(s, p->domain, p->domain_len));
	struct redis_pend *old = *slot;

	if (old != NULL) {
		bool replace = requeued ? !p->del && !old->del && redis_pend_newer(p, old) &&
		                                  !redis_pend_newer(old, p)
		                        : p->del || old->del || redis_pend_newer(p, old);

		if (!replace) {
			redis_pend_free(p);
			return;
		}
		redis_pend_unhook(s, old);
		redis_pend_free(old);
		redis_pend_insert(s, p, requeued);
		return;
	}
	if (!requeued && (s->npend >= REDIS_PENDING_MAX ||
	                  s->pend_bytes + redis_pend_size(p) > REDIS_PENDING_BYTES)) {
		if (s->dropped++ == 0)
			log_warnx("store backend=redis address=%s domain=%s result=dropped "
			          "reason=\"pending writes full\" pending=%zu bytes=%zu",
			          s->address, p->domain, s->npend, s->pend_bytes);
		s->write_errors++;
		redis_pend_free(p);
		return;
	}
	redis_pend_insert(s, p, requeued);
}

static void
redis_pend_clear(struct store_redis *s)
{
	while (!redis_link_empty(&s->pend_fifo)) {
		struct redis_pend *p = redis_link_owner(s->pend_fifo.next, struct redis_pend, link);

		redis_pend_unhook(s, p);
		redis_pend_free(p);
	}
}

/* Once the pending set is empty and written, says what a reconnect flushed (and dropped). */
static void
redis_pend_drained(struct store_redis *s)
{
	if (s->npend != 0 || s->nwrites != 0)
		return;
	if (s->flushing && s->flushed > 0)
		log_info("store backend=redis address=%s result=written_pending records=%" PRIu64,
		         s->address, s->flushed);
	if (s->dropped > 0)
		log_warnx("store backend=redis address=%s result=pending_drained dropped=%" PRIu64,
		          s->address, s->dropped);
	s->flushing = false;
	s->dropped = 0;
}

/* ---- the del(NULL) scan ---- */

static void
redis_batch_clear(struct store_redis *s)
{
	for (size_t i = 0; i < s->nbatch; i++)
		free(s->batch[i]);
	free(s->batch);
	free(s->batch_len);
	s->batch = NULL;
	s->batch_len = NULL;
	s->nbatch = 0;
}

static void
redis_scan_reset(struct store_redis *s)
{
	redis_batch_clear(s);
	snprintf(s->cursor, sizeof(s->cursor), "0");
	s->scan_done = false;
}

/* ---- the link ---- */

static void
redis_kick(struct store_redis *s)
{
	event_active(s->kick_ev, 0, 0);
}

/* Arms the timeout for the oldest command in flight, or disarms it. */
static void
redis_tmo_rearm(struct store_redis *s)
{
	struct redis_cmd *c;
	uint64_t now;
	struct timeval tv;

	if (s->closing || redis_link_empty(&s->inflight)) {
		evtimer_del(s->tmo_ev);
		return;
	}
	c = redis_link_owner(s->inflight.next, struct redis_cmd, link);
	now = redis_now_ms();
	tv = redis_tv(c->deadline_ms > now ? c->deadline_ms - now : 0);
	evtimer_add(s->tmo_ev, &tv);
}

/* The one transition function: asserts the edge and logs what an operator needs, once. */
static void
redis_set_state(struct store_redis *s, enum redis_state st, bool quiet)
{
	enum redis_said said = st == REDIS_UP            ? REDIS_SAID_UP
	                       : st == REDIS_DOWN        ? REDIS_SAID_DOWN
	                       : st == REDIS_AUTH_FAILED ? REDIS_SAID_AUTH
	                                                 : s->said;
	char delay[16];

	switch (st) {
	case REDIS_CONNECTING:
		assert(s->state == REDIS_DOWN || s->state == REDIS_AUTH_FAILED);
		break;
	case REDIS_UP:
	case REDIS_AUTH_FAILED:
		assert(s->state == REDIS_CONNECTING);
		break;
	case REDIS_DOWN:
		assert(s->state == REDIS_CONNECTING || s->state == REDIS_UP);
		break;
	}
	if (log_debug_enabled())
		log_debug("store backend=redis address=%s state=%s->%s reason=\"%s\"", s->address,
		          redis_state_names[s->state], redis_state_names[st], s->reason);
	s->state = st;
	if (quiet || said == s->said)
		return;
	s->said = said;
	redis_fmt_delay(delay, sizeof(delay), s->retry_at_ms - redis_now_ms());
	switch (said) {
	case REDIS_SAID_UP:
		log_info("store backend=redis address=%s result=connected db=%u", s->address,
		         s->database);
		break;
	case REDIS_SAID_DOWN:
		log_warnx("store backend=redis address=%s result=down reason=\"%s\" retry_in=%s",
		          s->address, s->reason, delay);
		break;
	case REDIS_SAID_AUTH:
		log_warnx("store backend=redis address=%s result=auth_failed reason=\"%s\" "
		          "retry_in=%s user=%s",
		          s->address, s->reason, delay, s->user[0] != '\0' ? s->user : "default");
		break;
	case REDIS_SAID_NOTHING:
		break;
	}
}

/*
 * The link or an attempt is gone (s->ac is already NULL): wait and retry. Called from hiredis's
 * connect and disconnect callbacks too, so it only arms our timer, never calls hiredis.
 */
static void
redis_fail(struct store_redis *s, const char *reason, bool auth)
{
	uint64_t now = redis_now_ms(), delay;
	bool quiet = false;

	assert(s->ac == NULL);
	if (s->closing)
		return;
	if (reason != s->reason)
		redis_reason_copy(s->reason, sizeof(s->reason), reason, strlen(reason));
	if (s->state == REDIS_UP && now - s->up_since_ms >= REDIS_STABLE_MS) {
		/* A long healthy link: try again at once; only a failing retry is news. */
		s->retry_ms = REDIS_RETRY_MIN_MS;
		delay = 0;
		quiet = true;
	} else {
		delay = s->retry_ms;
		s->retry_ms =
		        s->retry_ms * 2 > REDIS_RETRY_MAX_MS ? REDIS_RETRY_MAX_MS : s->retry_ms * 2;
	}
	s->retry_at_ms = now + delay;
	s->hs_failed = false;
	evtimer_del(s->tmo_ev);
	s->err_logged = false;
	redis_set_state(s, auth ? REDIS_AUTH_FAILED : REDIS_DOWN, quiet);
	struct timeval tv = redis_tv(delay);

	evtimer_add(s->retry_ev, &tv);
	/* Gets that were waiting on the link have their NULL answers queued: deliver them. */
	redis_kick(s);
}

/* Tears our context down from outside hiredis: every command in flight is answered NULL. */
static void
redis_drop(struct store_redis *s, const char *reason, bool auth)
{
	redisAsyncContext *ac = s->ac;

	assert(ac != NULL);
	/* Unhooked first, so the disconnect callback sees a context that is no longer ours. */
	s->ac = NULL;
	redisAsyncFree(ac);
	redis_fail(s, reason, auth);
}

static void
redis_on_connect(const redisAsyncContext *ac, int status)
{
	struct store_redis *s = ac->data;

	if (status == REDIS_OK || s == NULL || s->ac != ac)
		return;
	/* hiredis frees ac when this returns, answering our commands with NULL. Its error is in
	 * the inner context: ac->err is only copied from it after this callback. */
	s->ac = NULL;
	redis_fail(s, ac->c.err != 0 ? ac->c.errstr : "connect failed", false);
}

static void
redis_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct store_redis *s = ac->data;

	if (s == NULL || s->ac != ac)
		return;
	s->ac = NULL;
	redis_fail(s, status == REDIS_OK || ac->c.err == 0 ? "connection closed" : ac->c.errstr,
	           false);
}

/* Hands one command to hiredis; -1 when it refuses (the context is going away). */
static int
redis_send(struct store_redis *s, enum redis_kind kind, int argc, const char **argv,
           const size_t *lens, struct store_get *g, struct redis_pend *p)
{
	struct redis_cmd *c = xcalloc(1, sizeof(*c));
	bool first = redis_link_empty(&s->inflight);

	assert(s->ac != NULL);
	c->s = s;
	c->kind = kind;
	c->gen = s->gen;
	c->g = g;
	c->p = p;
	c->deadline_ms = redis_now_ms() + s->timeout_ms;
	if (redisAsyncCommandArgv(s->ac, redis_on_reply, c, argc, argv, lens) != REDIS_OK) {
		free(c);
		return -1;
	}
	redis_link_append(&s->inflight, &c->link);
	if (kind == REDIS_CMD_PUT || kind == REDIS_CMD_DEL)
		s->nwrites++;
	if (g != NULL)
		g->cmd = c;
	if (first)
		redis_tmo_rearm(s);
	return 0;
}

/* Starts an attempt: connect, then AUTH, SELECT and PING queued behind it. */
static void
redis_connect(struct store_redis *s)
{
	redisAsyncContext *ac;
	char db[16];
	const char *argv[3];
	size_t lens[3];

	assert(s->ac == NULL);
	redis_set_state(s, REDIS_CONNECTING, false);
	ac = s->unix_socket ? redisAsyncConnectUnix(s->host) : redisAsyncConnect(s->host, s->port);
	if (ac == NULL)
		fatalx("store backend=redis: out of memory");
	if (ac->err != 0) {
		/* Refused or no socket file: known before the loop turns. */
		char reason[REDIS_REASON_MAX];

		redis_reason_copy(reason, sizeof(reason), ac->errstr, strlen(ac->errstr));
		redisAsyncFree(ac);
		redis_fail(s, reason, false);
		return;
	}
	ac->data = s;
	if (redisLibeventAttach(ac, s->base) != REDIS_OK)
		fatalx("store backend=redis: cannot attach to the event loop");
	redisAsyncSetConnectCallback(ac, redis_on_connect);
	redisAsyncSetDisconnectCallback(ac, redis_on_disconnect);
	if (!s->unix_socket)
		redisEnableKeepAlive(&ac->c);
	s->ac = ac;
	s->hs_failed = false;

	if (s->password[0] != '\0') {
		/* AUTH user pass is Redis 6 ACL; AUTH pass alone works with requirepass anywhere.
		 */
		int argc = 0;

		argv[argc] = "AUTH";
		lens[argc++] = 4;
		if (s->user[0] != '\0') {
			argv[argc] = s->user;
			lens[argc] = strlen(s->user);
			argc++;
		}
		argv[argc] = s->password;
		lens[argc] = strlen(s->password);
		argc++;
		redis_send(s, REDIS_CMD_AUTH, argc, argv, lens, NULL, NULL);
	}
	if (s->database != 0) {
		snprintf(db, sizeof(db), "%u", s->database);
		argv[0] = "SELECT";
		lens[0] = 6;
		argv[1] = db;
		lens[1] = strlen(db);
		redis_send(s, REDIS_CMD_SELECT, 2, argv, lens, NULL, NULL);
	}
	argv[0] = "PING";
	lens[0] = 4;
	redis_send(s, REDIS_CMD_PING, 1, argv, lens, NULL, NULL);
}

static void
redis_on_retry(evutil_socket_t fd, short what, void *arg)
{
	redis_connect(arg);
}

static void
redis_on_tmo(evutil_socket_t fd, short what, void *arg)
{
	struct store_redis *s = arg;
	struct redis_cmd *c;
	char reason[64];

	if (redis_link_empty(&s->inflight) || s->ac == NULL)
		return;
	c = redis_link_owner(s->inflight.next, struct redis_cmd, link);
	if (c->deadline_ms > redis_now_ms()) {
		redis_tmo_rearm(s);
		return;
	}
	/* Replies come in order: nothing behind the oldest command can arrive first. */
	snprintf(reason, sizeof(reason), "%s timeout after %ums",
	         s->state == REDIS_UP ? "command" : "connect", s->timeout_ms);
	redis_drop(s, reason, false);
}

/* ---- gets ---- */

static void
redis_get_ready(struct store_get *g)
{
	struct store_redis *s = g->s;

	g->cmd = NULL;
	g->state = REDIS_GET_READY;
	redis_link_append(&s->ready, &g->link);
	redis_kick(s);
}

static void
redis_get_free(struct store_get *g)
{
	if (g == NULL)
		return;
	free(g->buf);
	free(g);
}

/* Copies value into g and parses it; a miss unless it is a well-formed, unexpired record. */
static void
redis_get_fill(struct store_get *g, const char *value, size_t len)
{
	const char *why;

	if (len == 0)
		return;
	if (len > REDIS_VALUE_MAX) {
		log_debug("store backend=redis domain=%s result=malformed reason=\"too long\"",
		          g->domain);
		return;
	}
	g->buf = xmalloc(len + 1);
	memcpy(g->buf, value, len);
	why = redis_value_parse(g->buf, len, g->id, &g->rec);
	if (why == NULL && g->rec.expires_at <= redis_wall())
		why = "expired";
	if (why != NULL) {
		log_debug("store backend=redis domain=%s result=malformed reason=\"%s\"", g->domain,
		          why);
		free(g->buf);
		g->buf = NULL;
		return;
	}
	g->rec.domain = g->domain;
	g->hit = true;
}

/* ---- replies ---- */

static void
redis_handshake_failed(struct store_redis *s, const redisReply *r, const char *what, bool auth)
{
	char msg[REDIS_REASON_MAX];

	if (s->hs_failed)
		return;
	redis_reason_copy(msg, sizeof(msg), r->str, r->len);
	/* A server that wants a password we do not send says NOAUTH to whatever comes first. */
	auth = auth || strncmp(msg, "NOAUTH", 6) == 0 || strncmp(msg, "NOPERM", 6) == 0 ||
	       strncmp(msg, "WRONGPASS", 9) == 0;
	snprintf(s->hs_reason, sizeof(s->hs_reason), "%.8s: %.100s", what, msg);
	s->hs_failed = true;
	s->hs_auth = auth;
	/* Dropped from the kick: never free a context inside its own callback. */
	redis_kick(s);
}

static void
redis_reply_handshake(struct store_redis *s, struct redis_cmd *c, const redisReply *r)
{
	static const char *const what[] = {
		[REDIS_CMD_AUTH] = "AUTH",
		[REDIS_CMD_SELECT] = "SELECT",
		[REDIS_CMD_PING] = "PING",
	};

	if (r == NULL || s->ac == NULL)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		redis_handshake_failed(s, r, what[c->kind], c->kind == REDIS_CMD_AUTH);
		return;
	}
	if (c->kind != REDIS_CMD_PING || s->hs_failed)
		return;
	s->up_since_ms = redis_now_ms();
	s->reason[0] = '\0';
	s->flushed = 0;
	s->flushing = s->npend > 0;
	redis_set_state(s, REDIS_UP, false);
	/* Pending writes and a del(NULL) go out from the kick. */
	redis_kick(s);
}

static void
redis_reply_get(struct store_redis *s, struct redis_cmd *c, const redisReply *r)
{
	struct store_get *g = c->g;

	if (g == NULL)
		return; /* cancelled or timed out meanwhile */
	if (s->closing) {
		redis_get_free(g);
		return;
	}
	if (r != NULL && r->type == REDIS_REPLY_STRING && c->gen == s->gen && !s->delall) {
		redis_get_fill(g, r->str, r->len);
	} else if (r != NULL && r->type == REDIS_REPLY_ERROR && log_debug_enabled()) {
		char why[REDIS_REASON_MAX];

		redis_reason_copy(why, sizeof(why), r->str, r->len);
		log_debug("store backend=redis domain=%s result=error reason=\"%s\"", g->domain,
		          why);
	}
	if (g->hit)
		s->get_hits++;
	redis_get_ready(g);
}

static void
redis_reply_write(struct store_redis *s, struct redis_cmd *c, const redisReply *r)
{
	struct redis_pend *p = c->p;

	s->nwrites--;
	if (r == NULL) {
		/* Unknown whether it arrived: write it again after reconnecting (idempotent). */
		if (c->gen == s->gen)
			redis_pend_add(s, p, true);
		else
			redis_pend_free(p);
		return;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		/* Counted always, logged once per link: a full or read-only server says it to every
		 * write. */
		s->write_errors++;
		if (!s->err_logged) {
			char why[REDIS_REASON_MAX];

			s->err_logged = true;
			redis_reason_copy(why, sizeof(why), r->str, r->len);
			log_warnx("store backend=redis address=%s domain=%s result=write_error "
			          "reason=\"%s\"",
			          s->address, p->domain, why);
		}
	} else {
		s->written++;
		if (log_debug_enabled())
			log_debug("store backend=redis domain=%s result=%s", p->domain,
			          p->del ? "deleted"
			          : r->type == REDIS_REPLY_INTEGER && r->integer == 1
			                  ? "written"
			                  : "kept_newer");
	}
	redis_pend_free(p);
	redis_pend_drained(s);
	redis_kick(s);
}

static void
redis_reply_scan(struct store_redis *s, struct redis_cmd *c, const redisReply *r)
{
	const redisReply *keys;

	s->scan_inflight = false;
	if (r == NULL || c->gen != s->gen) {
		/* The link went (or a newer del(NULL) started): scan again from the start. */
		redis_scan_reset(s);
		redis_kick(s);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len == 0 ||
	    r->element[0]->len >= sizeof(s->cursor) || r->element[1]->type != REDIS_REPLY_ARRAY) {
		char why[REDIS_REASON_MAX] = "bad SCAN reply";

		if (r->type == REDIS_REPLY_ERROR)
			redis_reason_copy(why, sizeof(why), r->str, r->len);
		log_warnx("store backend=redis address=%s result=flush_failed reason=\"%s\"",
		          s->address, why);
		s->delall = false;
		redis_scan_reset(s);
		redis_kick(s);
		return;
	}
	memcpy(s->cursor, r->element[0]->str, r->element[0]->len);
	s->cursor[r->element[0]->len] = '\0';
	s->scan_done = strcmp(s->cursor, "0") == 0;
	keys = r->element[1];
	for (size_t i = 0; i < keys->elements; i++) {
		const redisReply *k = keys->element[i];

		if (k->type != REDIS_REPLY_STRING)
			continue;
		s->batch = xreallocarray(s->batch, s->nbatch + 1, sizeof(*s->batch));
		s->batch_len = xreallocarray(s->batch_len, s->nbatch + 1, sizeof(*s->batch_len));
		s->batch[s->nbatch] = xmalloc(k->len + 1);
		memcpy(s->batch[s->nbatch], k->str, k->len);
		s->batch[s->nbatch][k->len] = '\0';
		s->batch_len[s->nbatch++] = k->len;
	}
	redis_kick(s);
}

static void
redis_on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct redis_cmd *c = privdata;
	struct store_redis *s = c->s;
	const redisReply *r = reply;

	/* In order: this is the oldest command in flight. */
	assert(s->inflight.next == &c->link);
	redis_link_remove(&c->link);
	switch (c->kind) {
	case REDIS_CMD_AUTH:
	case REDIS_CMD_SELECT:
	case REDIS_CMD_PING:
		redis_reply_handshake(s, c, r);
		break;
	case REDIS_CMD_GET:
		redis_reply_get(s, c, r);
		break;
	case REDIS_CMD_PUT:
	case REDIS_CMD_DEL:
		redis_reply_write(s, c, r);
		break;
	case REDIS_CMD_SCAN:
		redis_reply_scan(s, c, r);
		break;
	case REDIS_CMD_UNLINK:
		s->unlink_inflight--;
		if (r != NULL && r->type == REDIS_REPLY_INTEGER)
			s->unlinked += (uint64_t)r->integer;
		redis_kick(s);
		break;
	}
	free(c);
	if (s->ac != NULL)
		redis_tmo_rearm(s);
}

/* ---- the kick: deferred work ---- */

/* Sends one pending write; -1 when hiredis refused it (it went back to the front). */
static int
redis_send_write(struct store_redis *s, struct redis_pend *p)
{
	char key[1024];
	char *k = key;
	size_t klen = s->prefix_len + p->domain_len;
	int rc;

	if (klen > sizeof(key))
		k = xmalloc(klen);
	memcpy(k, s->prefix, s->prefix_len);
	memcpy(k + s->prefix_len, p->domain, p->domain_len);
	if (p->del) {
		const char *argv[2] = { "DEL", k };
		size_t lens[2] = { 3, klen };

		rc = redis_send(s, REDIS_CMD_DEL, 2, argv, lens, NULL, p);
	} else {
		char fetched[16], used[16], expires[16];

		snprintf(fetched, sizeof(fetched), "%" PRIu32, p->fetched_at);
		snprintf(used, sizeof(used), "%" PRIu32, p->last_used);
		snprintf(expires, sizeof(expires), "%" PRIu32, p->expires_at);
		/* KEYS[1] = key; ARGV = value, fetched_at, last_used, expires_at */
		const char *argv[8] = { "EVAL",   redis_put_script, "1",  k,
			                p->value, fetched,          used, expires };
		size_t lens[8] = { 4,
			           sizeof(redis_put_script) - 1,
			           1,
			           klen,
			           p->value_len,
			           strlen(fetched),
			           strlen(used),
			           strlen(expires) };

		rc = redis_send(s, REDIS_CMD_PUT, 8, argv, lens, NULL, p);
	}
	if (k != key)
		free(k);
	if (rc == -1)
		redis_pend_add(s, p, true);
	return rc;
}

/* Sends the next step of a del(NULL): the UNLINK script for the last keys, then the next SCAN. */
static void
redis_flush_all(struct store_redis *s)
{
	if (s->nbatch > 0) {
		size_t n = s->nbatch + 3;
		const char **argv = xreallocarray(NULL, n, sizeof(*argv));
		size_t *lens = xreallocarray(NULL, n, sizeof(*lens));
		char num[16];

		snprintf(num, sizeof(num), "%zu", s->nbatch);
		argv[0] = "EVAL";
		lens[0] = 4;
		argv[1] = redis_unlink_script;
		lens[1] = sizeof(redis_unlink_script) - 1;
		argv[2] = num;
		lens[2] = strlen(num);
		for (size_t i = 0; i < s->nbatch; i++) {
			argv[3 + i] = s->batch[i];
			lens[3 + i] = s->batch_len[i];
		}
		if (redis_send(s, REDIS_CMD_UNLINK, (int)n, argv, lens, NULL, NULL) == 0)
			s->unlink_inflight++;
		free(argv);
		free(lens);
		redis_batch_clear(s);
	}
	if (!s->scan_inflight && !s->scan_done) {
		size_t plen = s->prefix_len * 2 + 2;
		char *pat = xmalloc(plen), count[16];
		size_t o = 0;

		/* The prefix matched literally: glob characters escaped. */
		for (size_t i = 0; i < s->prefix_len; i++) {
			if (strchr("*?[]\\", s->prefix[i]) != NULL)
				pat[o++] = '\\';
			pat[o++] = s->prefix[i];
		}
		pat[o++] = '*';
		snprintf(count, sizeof(count), "%d", REDIS_SCAN_COUNT);
		const char *argv[6] = { "SCAN", s->cursor, "MATCH", pat, "COUNT", count };
		size_t lens[6] = { 4, strlen(s->cursor), 5, o, 5, strlen(count) };

		if (redis_send(s, REDIS_CMD_SCAN, 6, argv, lens, NULL, NULL) == 0)
			s->scan_inflight = true;
		free(pat);
	}
	if (s->scan_done && !s->scan_inflight && s->unlink_inflight == 0) {
		log_info("store backend=redis address=%s result=flushed_all keys=%" PRIu64,
		         s->address, s->unlinked);
		s->delall = false;
		redis_scan_reset(s);
	}
}

static void
redis_flush(struct store_redis *s)
{
	if (s->delall) {
		redis_flush_all(s);
		/* Writes after the del(NULL) wait until it is done, so it cannot remove them. */
		if (s->delall)
			return;
	}
	while (s->nwrites < REDIS_WINDOW && !redis_link_empty(&s->pend_fifo) && s->ac != NULL) {
		struct redis_pend *p = redis_link_owner(s->pend_fifo.next, struct redis_pend, link);

		redis_pend_unhook(s, p);
		s->flushed++;
		if (redis_send_write(s, p) == -1)
			break;
	}
	redis_pend_drained(s);
}

static void
redis_deliver(struct store_redis *s)
{
	struct redis_link batch;

	/* Gets made by these callbacks wait for the next turn; cancels still find theirs. */
	redis_link_move(&s->ready, &batch);
	while (!redis_link_empty(&batch)) {
		struct store_get *g = redis_link_owner(batch.next, struct store_get, link);

		redis_link_remove(&g->link);
		g->state = REDIS_GET_DELIVERING;
		g->cb(g->arg, g->hit ? &g->rec : NULL);
		redis_get_free(g);
	}
}

static void
redis_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct store_redis *s = arg;

	if (s->hs_failed && s->ac != NULL)
		redis_drop(s, s->hs_reason, s->hs_auth);
	if (s->state == REDIS_UP && s->ac != NULL)
		redis_flush(s);
	redis_deliver(s);
}

/* ---- the store_ops ---- */

/*
 * Redis is read on demand: every relay asks it (get) when memory has no usable policy, which
 * serves what any relay fetched since this one started. Loading the whole prefix at start would
 * mean a SCAN of the fleet's keyspace before the first lookup, blocking or racing it.
 */
static int
redis_load(void *impl, uint32_t now, store_load_cb fn, void *arg, char *err, size_t errlen)
{
	return 0;
}

static void
redis_put(void *impl, const struct store_record *r)
{
	struct store_redis *s = impl;
	struct redis_pend *p;
	const char *why = NULL;
	char *value;
	size_t len = 0;

	s->puts++;
	if (r->expires_at <= redis_wall()) {
		log_debug("store backend=redis domain=%s result=skipped reason=\"expired\"",
		          r->domain);
		return;
	}
	if ((value = redis_value_format(r, &len, &why)) == NULL) {
		s->write_errors++;
		log_warnx("store backend=redis domain=%s result=not_written reason=\"%s\"",
		          r->domain, why);
		return;
	}
	p = redis_pend_new(r->domain, false);
	p->value = value;
	p->value_len = len;
	p->fetched_at = r->fetched_at;
	p->last_used = r->last_used;
	p->expires_at = r->expires_at;
	redis_pend_add(s, p, false);
	redis_kick(s);
}

static void
redis_del(void *impl, const char *domain)
{
	struct store_redis *s = impl;

	if (domain != NULL) {
		redis_pend_add(s, redis_pend_new(domain, true), false);
		redis_kick(s);
		return;
	}
	/* Everything pending is forgotten too; writes in flight land before the SCAN starts. */
	redis_pend_clear(s);
	s->gen++;
	s->delall = true;
	s->unlinked = 0;
	if (!s->scan_inflight)
		redis_scan_reset(s);
	redis_kick(s);
}

static struct store_get *
redis_get(void *impl, const char *domain, store_get_cb cb, void *arg)
{
	struct store_redis *s = impl;
	size_t dlen = strlen(domain);
	struct store_get *g = xcalloc(1, sizeof(*g) + dlen + 1);
	struct redis_pend *p;
	/* The first attempt after open, or a quiet reconnect after a healthy link, is worth
	 * waiting for (bounded by the timeout); an attempt while known down is not. */
	bool hopeful = s->state == REDIS_UP ||
	               (s->state == REDIS_CONNECTING && s->ac != NULL &&
	                (s->said == REDIS_SAID_NOTHING || s->said == REDIS_SAID_UP));

	memcpy(g->domain, domain, dlen + 1);
	g->s = s;
	g->cb = cb;
	g->arg = arg;
	redis_link_init(&g->link);
	s->gets++;
	if (s->delall || dlen > REDIS_DOMAIN_MAX) {
		redis_get_ready(g);
		return g;
	}
	if ((p = redis_pend_find(s, domain)) != NULL) {
		/* Our own write not yet in Redis is the freshest this relay can know. */
		if (!p->del)
			redis_get_fill(g, p->value, p->value_len);
		if (g->hit)
			s->get_hits++;
		redis_get_ready(g);
		return g;
	}
	if (hopeful) {
		char key[1024], *k = key;
		size_t klen = s->prefix_len + dlen;
		char end[16];
		int rc;

		if (klen > sizeof(key))
			k = xmalloc(klen);
		memcpy(k, s->prefix, s->prefix_len);
		memcpy(k + s->prefix_len, domain, dlen);
		/* GETRANGE, not GET: a huge value stays on the server instead of in our memory. */
		snprintf(end, sizeof(end), "%d", REDIS_VALUE_MAX);
		const char *argv[4] = { "GETRANGE", k, "0", end };
		size_t lens[4] = { 8, klen, 1, strlen(end) };

		g->state = REDIS_GET_SENT;
		rc = redis_send(s, REDIS_CMD_GET, 4, argv, lens, g, NULL);
		if (k != key)
			free(k);
		if (rc == 0)
			return g;
	}
	redis_get_ready(g);
	return g;
}

static void
redis_cancel(void *impl, struct store_get *g)
{
	if (g == NULL)
		return;
	switch (g->state) {
	case REDIS_GET_SENT:
		/* Its command stays with hiredis until the reply or the disconnect frees it. */
		g->cmd->g = NULL;
		redis_get_free(g);
		break;
	case REDIS_GET_READY:
		redis_link_remove(&g->link);
		redis_get_free(g);
		break;
	case REDIS_GET_DELIVERING:
		/* From its own callback: redis_deliver() frees it once that returns. */
		break;
	}
}

static void
redis_status(void *impl, struct store_status *st)
{
	struct store_redis *s = impl;
	uint64_t now = redis_now_ms();
	char delay[16];

	memset(st, 0, sizeof(*st));
	st->backend = "redis";
	st->connected = s->state == REDIS_UP;
	st->puts = s->puts;
	st->written = s->written;
	st->write_errors = s->write_errors;
	st->gets = s->gets;
	st->get_hits = s->get_hits;
	st->pending = s->npend + s->nwrites;
	redis_fmt_delay(delay, sizeof(delay), s->retry_at_ms > now ? s->retry_at_ms - now : 0);
	switch (s->state) {
	case REDIS_UP:
		snprintf(s->detail, sizeof(s->detail), "%s",
		         s->delall ? "connected, deleting every record" : "connected");
		break;
	case REDIS_CONNECTING:
		if (s->said == REDIS_SAID_NOTHING || s->said == REDIS_SAID_UP)
			snprintf(s->detail, sizeof(s->detail), "connecting");
		else
			snprintf(s->detail, sizeof(s->detail), "%s: %s, reconnecting",
			         s->said == REDIS_SAID_AUTH ? "auth failed" : "down", s->reason);
		break;
	case REDIS_DOWN:
		snprintf(s->detail, sizeof(s->detail), "down: %s, retry in %s", s->reason, delay);
		break;
	case REDIS_AUTH_FAILED:
		snprintf(s->detail, sizeof(s->detail), "auth failed: %s, retry in %s", s->reason,
		         delay);
		break;
	}
	st->detail = s->detail;
}

/*
 * At close, what is pending goes out over a blocking connection, bounded by the timeout: the
 * loop is ending, and a relay's fetches during its last outage are still worth sharing.
 * Only tried when the link was up; a server known down would only cost the timeout.
 */
static void
redis_close_flush(struct store_redis *s)
{
	struct timeval tv = redis_tv(s->timeout_ms);
	uint64_t deadline = redis_now_ms() + s->timeout_ms;
	size_t hs = 0, sent = 0, total = s->npend;
	void *reply = NULL;
	char why[REDIS_REASON_MAX] = "timeout";
	redisContext *c = s->unix_socket ? redisConnectUnixWithTimeout(s->host, tv)
	                                 : redisConnectWithTimeout(s->host, s->port, tv);

	if (c == NULL || c->err != 0 || redisSetTimeout(c, tv) != REDIS_OK)
		goto fail;
	if (s->password[0] != '\0') {
		if (s->user[0] != '\0')
			redisAppendCommand(c, "AUTH %s %s", s->user, s->password);
		else
			redisAppendCommand(c, "AUTH %s", s->password);
		hs++;
	}
	if (s->database != 0) {
		redisAppendCommand(c, "SELECT %u", s->database);
		hs++;
	}
	for (size_t i = 0; i < hs; i++) {
		if (redisGetReply(c, &reply) != REDIS_OK)
			goto fail;
		if (((redisReply *)reply)->type == REDIS_REPLY_ERROR) {
			redis_reason_copy(why, sizeof(why), ((redisReply *)reply)->str,
			                  ((redisReply *)reply)->len);
			freeReplyObject(reply);
			goto fail;
		}
		freeReplyObject(reply);
	}
	/* In chunks, so that the deadline is looked at between them. */
	while (!redis_link_empty(&s->pend_fifo) && redis_now_ms() < deadline) {
		size_t n = 0;

		while (n < REDIS_WINDOW && !redis_link_empty(&s->pend_fifo)) {
			struct redis_pend *p =
			        redis_link_owner(s->pend_fifo.next, struct redis_pend, link);
			size_t klen = s->prefix_len + p->domain_len;
			char *k = xmalloc(klen);

			memcpy(k, s->prefix, s->prefix_len);
			memcpy(k + s->prefix_len, p->domain, p->domain_len);
			if (p->del)
				redisAppendCommand(c, "DEL %b", k, klen);
			else
				redisAppendCommand(c, "EVAL %s 1 %b %b %u %u %u", redis_put_script,
				                   k, klen, p->value, p->value_len, p->fetched_at,
				                   p->last_used, p->expires_at);
			free(k);
			redis_pend_unhook(s, p);
			redis_pend_free(p);
			n++;
		}
		for (size_t i = 0; i < n; i++) {
			if (redisGetReply(c, &reply) != REDIS_OK)
				goto fail;
			if (((redisReply *)reply)->type == REDIS_REPLY_ERROR)
				s->write_errors++;
			else
				s->written++;
			freeReplyObject(reply);
			sent++;
		}
	}
	redisFree(c);
	if (s->npend > 0)
		log_warnx("store backend=redis address=%s result=close_dropped records=%zu "
		          "reason=\"timeout\"",
		          s->address, s->npend);
	else
		log_info("store backend=redis address=%s result=written_at_close records=%zu",
		         s->address, sent);
	return;
fail:
	if (c != NULL && c->err != 0)
		redis_reason_copy(why, sizeof(why), c->errstr, strlen(c->errstr));
	log_warnx("store backend=redis address=%s result=close_dropped records=%zu reason=\"%s\"",
	          s->address, total - sent, c == NULL ? "out of memory" : why);
	if (c != NULL)
		redisFree(c);
}

/* Not from a store callback: the daemon closes the store at teardown, after the engine. */
static void
redis_close(void *impl)
{
	struct store_redis *s = impl;
	bool was_up;

	if (s == NULL)
		return;
	was_up = s->state == REDIS_UP;
	/* Answered gets that were never delivered: their callbacks will not run. */
	while (!redis_link_empty(&s->ready)) {
		struct store_get *g = redis_link_owner(s->ready.next, struct store_get, link);

		redis_link_remove(&g->link);
		redis_get_free(g);
	}
	s->closing = true;
	if (s->ac != NULL) {
		redisAsyncContext *ac = s->ac;

		/* Commands in flight come back NULL: gets are freed, writes return to pending. */
		s->ac = NULL;
		redisAsyncFree(ac);
	}
	assert(redis_link_empty(&s->inflight));
	if (s->npend > 0) {
		if (was_up && !s->delall)
			redis_close_flush(s);
		else
			log_warnx("store backend=redis address=%s result=close_dropped records=%zu "
			          "reason=\"%s\"",
			          s->address, s->npend,
			          s->delall              ? "a delete of every record was unfinished"
			          : s->reason[0] != '\0' ? s->reason
			                                 : "not connected");
	}
	redis_pend_clear(s);
	redis_batch_clear(s);
	event_free(s->retry_ev);
	event_free(s->tmo_ev);
	event_free(s->kick_ev);
	free(s->buckets);
	free(s->address);
	free(s->host);
	free(s->prefix);
	free(s->user);
	free(s->password);
	free(s);
}

const struct store_ops store_redis_ops = {
	.name = "redis",
	.shared = true,
	.load = redis_load,
	.put = redis_put,
	.del = redis_del,
	.get = redis_get,
	.cancel = redis_cancel,
	.status = redis_status,
	.close = redis_close,
};

void *
store_redis_open(struct event_base *base, const struct config *cfg, char **err)
{
	const struct config_redis *rc = &cfg->redis;
	const struct config_address *a = &rc->address;
	struct store_redis *s;

	*err = NULL;
	if (a->family == CONFIG_FAMILY_UNIX) {
		if (a->path == NULL || a->path[0] == '\0' ||
		    strlen(a->path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
			*err = xasprintf(
			        "redis.address \"unix:%.40s...\": a unix socket path is 1..%zu "
			        "bytes, this one %zu; use a shorter path",
			        a->path != NULL ? a->path : "",
			        sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1,
			        a->path != NULL ? strlen(a->path) : 0);
			return NULL;
		}
	} else if (a->host == NULL || a->port == 0 || a->port > 65535) {
		*err = xasprintf("redis.address \"%s\": needs a numeric host and a port 1..65535",
		                 a->text != NULL ? a->text : "");
		return NULL;
	}
	if (rc->timeout_ms == 0) {
		*err = xstrdup("redis.timeout 0 would fail every command; use 10..60000 ms");
		return NULL;
	}

	s = xcalloc(1, sizeof(*s));
	s->base = base;
	s->unix_socket = a->family == CONFIG_FAMILY_UNIX;
	s->host = xstrdup(s->unix_socket ? a->path : a->host);
	s->port = (int)a->port;
	s->address = a->text != NULL  ? xstrdup(a->text)
	             : s->unix_socket ? xasprintf("unix:%s", a->path)
	                              : xasprintf("%s:%u", a->host, a->port);
	s->database = rc->database;
	s->prefix = xstrdup(rc->prefix != NULL ? rc->prefix : "");
	s->prefix_len = strlen(s->prefix);
	s->user = xstrdup(rc->user != NULL ? rc->user : "");
	s->password = xstrdup(rc->password != NULL ? rc->password : "");
	s->timeout_ms = rc->timeout_ms;
	s->retry_ms = REDIS_RETRY_MIN_MS;
	s->state = REDIS_DOWN;
	redis_link_init(&s->inflight);
	redis_link_init(&s->ready);
	redis_link_init(&s->pend_fifo);
	s->nbuckets = 64;
	s->buckets = xcalloc(s->nbuckets, sizeof(*s->buckets));
	if (getrandom(&s->seed, sizeof(s->seed), GRND_NONBLOCK) != sizeof(s->seed))
		s->seed = (uint32_t)time(NULL) ^ (uint32_t)(uintptr_t)s;
	redis_scan_reset(s);
	s->retry_ev = evtimer_new(base, redis_on_retry, s);
	s->tmo_ev = evtimer_new(base, redis_on_tmo, s);
	s->kick_ev = event_new(base, -1, 0, redis_on_kick, s);
	if (s->retry_ev == NULL || s->tmo_ev == NULL || s->kick_ev == NULL)
		fatalx("store backend=redis: cannot create events");
	if (s->prefix_len == 0)
		log_info("store backend=redis address=%s prefix=\"\" note=\"keys are bare domain "
		         "names; del of every record still removes only values in this format\"",
		         s->address);
	/* hiredis writes with write(2): the daemon ignores SIGPIPE, or a dead server kills it. */
	redis_connect(s);
	return s;
}
