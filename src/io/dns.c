/* dns.c: asynchronous DNS (c-ares on libevent) with coalescing and a TTL-honouring cache. */
#include "config.h"

#include "io/dns.h"

#include <arpa/inet.h>
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <ares.h>
#include <event2/event.h>

#include "base/hash.h"
#include "base/log.h"
#include "base/pool.h"
#include "base/xmalloc.h"
#include "io/dnsmsg.h"

/* Presentation form without the trailing dot (RFC 1035 §2.3.4 minus the root label). */
#define DNS_NAME_MAX    253
#define DNS_BUCKETS_MIN 64
/* DNS flag day 2020: big enough for TXT policies, small enough not to fragment over UDP. */
#define DNS_EDNS_PAYLOAD 1232
#define DNS_PARTS_MAX    2

/* An intrusive circular list with a sentinel, so a member unlinks itself without the head. */
struct dns_link {
	struct dns_link *prev;
	struct dns_link *next;
};

/*
 * A result, shared by the cache entry and every query it answers; freed with the last ref.
 * One block from the module's pool holds it with its arrays and TXT bytes (dns_answer_new).
 */
struct dns_answer {
	unsigned refs;
	enum dns_status status;
	uint32_t ttl;  /* how long it may be cached, already capped by the options */
	uint32_t size; /* of the block */
	struct pool *pool;
	struct dns_txt *txt;
	size_t ntxt;
	char **addrs; /* each pointing to INET6_ADDRSTRLEN bytes of the block */
	size_t naddrs;
	struct dns_mx *mx;
	size_t nmx;
};

enum dns_query_state {
	DNS_Q_NEW,        /* inside dns_lookup() */
	DNS_Q_WAITING,    /* on a flight's waiter list */
	DNS_Q_READY,      /* has its answer, on the delivery queue */
	DNS_Q_DELIVERING, /* its callback is running; freed when it returns */
};

struct dns_query {
	struct dns_link link;
	struct dns *dns;
	enum dns_query_state state;
	dns_cb cb;
	void *arg;
	struct dns_answer *ans;
	uint32_t ttl;
	bool from_cache;
};

struct dns_flight;

/* One c-ares query of a flight; its address is the c-ares callback argument. */
struct dns_part {
	struct dns_flight *flight;
	int rrtype;
	struct dns_answer *ans;
};

/* The packets in progress for one (name, type); every lookup meanwhile waits on it. */
struct dns_flight {
	struct dns *dns;
	struct dns_entry *entry;
	struct dns_link waiters;
	struct dns_part parts[DNS_PARTS_MAX];
	unsigned nparts;
	unsigned pending;
	bool nocache; /* dns_cache_forget() ran meanwhile: deliver, but don't keep */
	uint64_t started_us;
};

/* A hash table slot for (name, type): a cached answer, a flight, or both in turn. */
struct dns_entry {
	struct dns_entry *hnext;
	struct dns_link age; /* on dns->aged while ans != NULL, oldest first */
	uint32_t hash;
	enum dns_type type;
	struct dns_answer *ans;
	uint64_t expires_ms;
	struct dns_flight *flight;
	char name[];
};

struct dns_sock {
	struct dns_sock *next;
	ares_socket_t fd;
	struct event *ev;
};

struct dns {
	struct event_base *base;
	ares_channel ch;
	struct dns_opts opts;
	struct dns_sock *socks;
	struct event *timer;
	struct event *deliver;
	struct dns_link ready;
	struct dns_entry **buckets;
	size_t nbuckets;
	size_t nentries;
	struct dns_link aged;
	size_t ncached;
	uint32_t seed;
	struct dnsmsg *msg; /* parser scratch: c-ares hands us one answer at a time */
	struct pool *pool;  /* answers and cache entries */
	struct dns_stats stats;
	bool destroying;
};

static const char *const dns_status_names[] = {
	[DNS_OK] = "ok",           [DNS_NXDOMAIN] = "nxdomain",
	[DNS_NODATA] = "nodata",   [DNS_SERVFAIL] = "servfail",
	[DNS_TIMEOUT] = "timeout", [DNS_ERROR] = "error",
};

static const char *const dns_type_names[] = {
	[DNS_TYPE_TXT] = "TXT",
	[DNS_TYPE_ADDR] = "ADDR",
	[DNS_TYPE_MX] = "MX",
};

/* The packets each lookup type sends, in the order their answers are merged. */
static const struct {
	unsigned n;
	int rrtype[DNS_PARTS_MAX];
} dns_type_parts[] = {
	[DNS_TYPE_TXT] = { 1, { DNSMSG_TYPE_TXT } },
	[DNS_TYPE_ADDR] = { 2, { DNSMSG_TYPE_A, DNSMSG_TYPE_AAAA } },
	[DNS_TYPE_MX] = { 1, { DNSMSG_TYPE_MX } },
};

/*
 * c-ares failures that come without a message to parse. c-ares 1.18 retries SERVFAIL, REFUSED
 * and NOTIMP answers on the next server and, once every try is spent, reports ECONNREFUSED
 * (its initial error), the same as for ICMP port unreachable: both count as a server failure.
 */
static const struct {
	int ares;
	enum dns_status status;
} dns_ares_status[] = {
	{ ARES_ETIMEOUT, DNS_TIMEOUT },   { ARES_ECONNREFUSED, DNS_SERVFAIL },
	{ ARES_ESERVFAIL, DNS_SERVFAIL }, { ARES_EREFUSED, DNS_SERVFAIL },
	{ ARES_ENOTIMP, DNS_SERVFAIL },   { ARES_EFORMERR, DNS_SERVFAIL },
	{ ARES_ENOTFOUND, DNS_NXDOMAIN }, { ARES_ENODATA, DNS_NODATA },
};

/* Merge order for A + AAAA: the lower rank wins; a failure beats a definite "nothing". */
static const unsigned dns_merge_rank[] = {
	[DNS_OK] = 0,    [DNS_SERVFAIL] = 1, [DNS_TIMEOUT] = 2,
	[DNS_ERROR] = 3, [DNS_NODATA] = 4,   [DNS_NXDOMAIN] = 5,
};

const char *
dns_status_str(enum dns_status st)
{
	if ((size_t)st >= sizeof(dns_status_names) / sizeof(dns_status_names[0]))
		return "unknown";
	return dns_status_names[st];
}

static uint64_t
dns_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint32_t
dns_min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static void
dns_link_init(struct dns_link *l)
{
	l->prev = l->next = l;
}

static bool
dns_link_empty(const struct dns_link *head)
{
	return head->next == head;
}

static void
dns_link_append(struct dns_link *head, struct dns_link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

static void
dns_link_remove(struct dns_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	dns_link_init(l);
}

/* Moves every member of from onto the empty list to. */
static void
dns_link_move(struct dns_link *from, struct dns_link *to)
{
	dns_link_init(to);
	if (dns_link_empty(from))
		return;
	to->next = from->next;
	to->prev = from->prev;
	to->next->prev = to;
	to->prev->next = to;
	dns_link_init(from);
}

#define dns_link_owner(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- answers ---- */

static size_t
dns_align(size_t n)
{
	return (n + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
}

/*
 * The answer, its arrays and then txtbytes for TXT data (*txtdata) in one block from the pool:
 * a cached answer is one object of a size class, so the churn of a full cache reuses slots
 * instead of scattering small allocations over the heap. Counts come from one parsed message
 * (at most 64 KiB), so the size fits easily.
 */
static struct dns_answer *
dns_answer_new(struct pool *pool, enum dns_status status, uint32_t ttl, size_t ntxt,
               size_t txtbytes, size_t naddrs, size_t nmx, unsigned char **txtdata)
{
	size_t o_txt = dns_align(sizeof(struct dns_answer));
	size_t o_mx = o_txt + dns_align(ntxt * sizeof(struct dns_txt));
	size_t o_addrs = o_mx + dns_align(nmx * sizeof(struct dns_mx));
	size_t o_buf = o_addrs + dns_align(naddrs * sizeof(char *));
	size_t o_data = o_buf + naddrs * INET6_ADDRSTRLEN;
	size_t size = o_data + txtbytes;
	char *blk = pool_alloc(pool, size);
	struct dns_answer *a = (struct dns_answer *)(void *)blk;

	memset(blk, 0, size);
	a->refs = 1;
	a->status = status;
	a->ttl = ttl;
	a->size = (uint32_t)size;
	a->pool = pool;
	a->ntxt = ntxt;
	a->txt = ntxt > 0 ? (struct dns_txt *)(void *)(blk + o_txt) : NULL;
	a->nmx = nmx;
	a->mx = nmx > 0 ? (struct dns_mx *)(void *)(blk + o_mx) : NULL;
	a->naddrs = naddrs;
	a->addrs = naddrs > 0 ? (char **)(void *)(blk + o_addrs) : NULL;
	for (size_t i = 0; i < naddrs; i++)
		a->addrs[i] = blk + o_buf + i * INET6_ADDRSTRLEN;
	if (txtdata != NULL)
		*txtdata = (unsigned char *)blk + o_data;
	return a;
}

static struct dns_answer *
dns_answer_status(struct pool *pool, enum dns_status status, uint32_t ttl)
{
	return dns_answer_new(pool, status, ttl, 0, 0, 0, 0, NULL);
}

static struct dns_answer *
dns_answer_ref(struct dns_answer *a)
{
	a->refs++;
	return a;
}

static void
dns_answer_unref(struct dns_answer *a)
{
	if (a == NULL || --a->refs > 0)
		return;
	pool_free(a->pool, a, a->size);
}

/* The cache lifetime of a parsed message under the options' caps. */
static uint32_t
dns_cache_ttl(const struct dns_opts *o, enum dns_status st, uint32_t ttl, bool ttl_known)
{
	switch (st) {
	case DNS_OK:
		return dns_min_u32(ttl, o->max_ttl);
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		return ttl_known ? dns_min_u32(ttl, o->negative_ttl) : 0;
	case DNS_SERVFAIL:
	case DNS_TIMEOUT:
		return o->servfail_ttl;
	case DNS_ERROR:
		break;
	}
	return 0;
}

/* Copies what the message holds into an answer that outlives the c-ares buffer. */
static struct dns_answer *
dns_answer_from_msg(struct pool *pool, const struct dns_opts *o, const struct dnsmsg *m)
{
	uint32_t ttl = dns_cache_ttl(o, m->status, m->ttl, m->ttl_known);
	struct dns_answer *a;
	unsigned char *data;
	size_t total = 0, off = 0;

	if (m->status != DNS_OK)
		return dns_answer_status(pool, m->status, ttl);
	for (size_t i = 0; i < m->ntxt; i++)
		total += m->txt[i].len;
	a = dns_answer_new(pool, m->status, ttl, m->ntxt, total, m->na + m->naaaa, m->nmx, &data);
	for (size_t i = 0; i < m->ntxt; i++) {
		if (m->txt[i].len > 0)
			memcpy(data + off, m->txt[i].data, m->txt[i].len);
		a->txt[i].data = data + off;
		a->txt[i].len = m->txt[i].len;
		a->txt[i].record_start = m->txt[i].record_start;
		off += m->txt[i].len;
	}
	for (size_t i = 0; i < m->na; i++)
		inet_ntop(AF_INET, m->a[i], a->addrs[i], INET6_ADDRSTRLEN);
	for (size_t i = 0; i < m->naaaa; i++)
		inet_ntop(AF_INET6, m->aaaa[i], a->addrs[m->na + i], INET6_ADDRSTRLEN);
	if (m->nmx > 0)
		memcpy(a->mx, m->mx, m->nmx * sizeof(*a->mx));
	return a;
}

/* A + AAAA into one answer, A first; it lives as long as the shorter-lived half. */
static struct dns_answer *
dns_answer_merge(struct pool *pool, const struct dns_answer *x, const struct dns_answer *y)
{
	enum dns_status st =
	        dns_merge_rank[x->status] <= dns_merge_rank[y->status] ? x->status : y->status;
	struct dns_answer *a = dns_answer_new(pool, st, dns_min_u32(x->ttl, y->ttl), 0, 0,
	                                      x->naddrs + y->naddrs, 0, NULL);

	for (size_t i = 0; i < x->naddrs; i++)
		memcpy(a->addrs[i], x->addrs[i], INET6_ADDRSTRLEN);
	for (size_t i = 0; i < y->naddrs; i++)
		memcpy(a->addrs[x->naddrs + i], y->addrs[i], INET6_ADDRSTRLEN);
	return a;
}

/* ---- queries and delivery ---- */

static void
dns_query_set_state(struct dns_query *q, enum dns_query_state st)
{
	static const char *const names[] = {
		[DNS_Q_NEW] = "new",
		[DNS_Q_WAITING] = "waiting",
		[DNS_Q_READY] = "ready",
		[DNS_Q_DELIVERING] = "delivering",
	};

	/* Only forward: new -> waiting -> ready -> delivering; a cache hit skips waiting. */
	assert(st > q->state);
	if (log_debug_enabled())
		log_debug("dns query=%p state=%s->%s", (void *)q, names[q->state], names[st]);
	q->state = st;
}

/* Queues q for delivery on the next loop turn: never inside dns_lookup() or c-ares. */
static void
dns_query_ready(struct dns_query *q, struct dns_answer *ans, uint32_t ttl, bool from_cache)
{
	struct dns *dns = q->dns;

	dns_query_set_state(q, DNS_Q_READY);
	q->ans = dns_answer_ref(ans);
	q->from_cache = from_cache;
	/* The header promises ttl 0 for results that say nothing about the name. */
	q->ttl = ans->status == DNS_TIMEOUT || ans->status == DNS_ERROR ? 0 : ttl;
	dns_link_append(&dns->ready, &q->link);
	event_active(dns->deliver, 0, 0);
}

static void
dns_on_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct dns *dns = arg;
	struct dns_link batch;

	/* Queries made by these callbacks wait for the next turn; cancels still find theirs. */
	dns_link_move(&dns->ready, &batch);
	while (!dns_link_empty(&batch)) {
		struct dns_query *q = dns_link_owner(batch.next, struct dns_query, link);
		struct dns_answer *a = q->ans;
		struct dns_result res = {
			.status = a->status,
			.ttl = q->ttl,
			.from_cache = q->from_cache,
			.txt = a->txt,
			.ntxt = a->ntxt,
			.addrs = (const char *const *)a->addrs,
			.naddrs = a->naddrs,
			.mx = a->mx,
			.nmx = a->nmx,
		};

		dns_link_remove(&q->link);
		dns_query_set_state(q, DNS_Q_DELIVERING);
		q->cb(q->arg, &res);
		dns_answer_unref(a);
		free(q);
	}
}

void
dns_cancel(struct dns_query *q)
{
	if (q == NULL)
		return;
	switch (q->state) {
	/* A flight without waiters goes on: its answer still fills the cache. */
	case DNS_Q_NEW:
	case DNS_Q_WAITING:
	case DNS_Q_READY:
		dns_link_remove(&q->link);
		dns_answer_unref(q->ans);
		free(q);
		break;
	case DNS_Q_DELIVERING:
		/* From its own callback: dns_on_deliver() frees it once that returns. */
		break;
	}
}

/* ---- the cache ---- */

/* Lower-case, one trailing dot dropped; -1 for names no query can carry. */
static int
dns_key(const char *name, char key[DNS_NAME_MAX + 1])
{
	size_t n = strnlen(name, DNS_NAME_MAX + 2);

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > DNS_NAME_MAX)
		return -1;
	for (size_t i = 0; i < n; i++)
		key[i] = name[i] >= 'A' && name[i] <= 'Z' ? (char)(name[i] + ('a' - 'A')) : name[i];
	key[n] = '\0';
	return 0;
}

/* FNV-1a with a per-instance seed, so nobody can aim names at one bucket. */
static uint32_t
dns_hash(const struct dns *dns, const char *key, enum dns_type type)
{
	return (hash_fnv1a(dns->seed, key, strlen(key)) ^ (uint32_t)type) * 16777619u;
}

static struct dns_entry *
dns_entry_find(const struct dns *dns, const char *key, enum dns_type type, uint32_t hash)
{
	struct dns_entry *e = dns->buckets[hash & (dns->nbuckets - 1)];

	for (; e != NULL; e = e->hnext)
		if (e->hash == hash && e->type == type && strcmp(e->name, key) == 0)
			return e;
	return NULL;
}

static void
dns_table_grow(struct dns *dns)
{
	size_t n = dns->nbuckets * 2;
	struct dns_entry **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < dns->nbuckets; i++) {
		struct dns_entry *e = dns->buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->hnext;
			e->hnext = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(dns->buckets);
	dns->buckets = b;
	dns->nbuckets = n;
}

static struct dns_entry *
dns_entry_add(struct dns *dns, const char *key, enum dns_type type, uint32_t hash)
{
	size_t len = strlen(key);
	struct dns_entry *e = pool_alloc(dns->pool, sizeof(*e) + len + 1);
	struct dns_entry **slot;

	memset(e, 0, sizeof(*e));
	memcpy(e->name, key, len + 1);
	e->hash = hash;
	e->type = type;
	dns_link_init(&e->age);
	if (dns->nentries >= dns->nbuckets)
		dns_table_grow(dns);
	slot = &dns->buckets[hash & (dns->nbuckets - 1)];
	e->hnext = *slot;
	*slot = e;
	dns->nentries++;
	return e;
}

static void
dns_entry_free(struct dns *dns, struct dns_entry *e)
{
	pool_free(dns->pool, e, sizeof(*e) + strlen(e->name) + 1);
}

/* Unhooks and frees an entry that holds neither an answer nor a flight. */
static void
dns_entry_remove(struct dns *dns, struct dns_entry *e)
{
	struct dns_entry **pp = &dns->buckets[e->hash & (dns->nbuckets - 1)];

	assert(e->ans == NULL && e->flight == NULL);
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	dns->nentries--;
	dns_entry_free(dns, e);
}

static void
dns_entry_drop_answer(struct dns *dns, struct dns_entry *e)
{
	dns_link_remove(&e->age);
	dns_answer_unref(e->ans);
	e->ans = NULL;
	dns->ncached--;
}

/* Drops the cached answer, and the entry with it unless a flight still uses it. */
static void
dns_entry_forget(struct dns *dns, struct dns_entry *e)
{
	if (e->ans != NULL)
		dns_entry_drop_answer(dns, e);
	if (e->flight == NULL)
		dns_entry_remove(dns, e);
}

static void
dns_entry_store(struct dns *dns, struct dns_entry *e, struct dns_answer *ans, uint64_t now_ms)
{
	e->ans = dns_answer_ref(ans);
	e->expires_ms = now_ms + (uint64_t)ans->ttl * 1000u;
	dns_link_append(&dns->aged, &e->age);
	dns->ncached++;
	/* Oldest first; expired ones at the head go too, since they are dead weight anyway. */
	while (!dns_link_empty(&dns->aged)) {
		struct dns_entry *old = dns_link_owner(dns->aged.next, struct dns_entry, age);

		if (dns->ncached <= dns->opts.cache_max && old->expires_ms > now_ms)
			break;
		dns_entry_forget(dns, old);
	}
}

/* ---- c-ares on libevent ---- */

/* Re-armed after every call into c-ares, which is the only time its next deadline moves. */
static void
dns_timer_arm(struct dns *dns)
{
	struct timeval tv, *tvp;

	tvp = ares_timeout(dns->ch, NULL, &tv);
	if (tvp == NULL)
		evtimer_del(dns->timer);
	else
		evtimer_add(dns->timer, tvp);
}

static void
dns_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dns *dns = arg;

	ares_process_fd(dns->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_timer_arm(dns);
}

static void
dns_on_sock(evutil_socket_t fd, short what, void *arg)
{
	struct dns *dns = arg;

	/* arg is dns, not the dns_sock: c-ares may close this socket while processing it. */
	ares_process_fd(dns->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	                (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	dns_timer_arm(dns);
}

static void
dns_on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *dns = data;
	struct dns_sock **pp = &dns->socks, *s;

	while (*pp != NULL && (*pp)->fd != fd)
		pp = &(*pp)->next;
	s = *pp;
	if (!readable && !writable) {
		if (s != NULL) {
			*pp = s->next;
			event_free(s->ev);
			free(s);
		}
		return;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->fd = fd;
		s->next = dns->socks;
		dns->socks = s;
	} else {
		event_free(s->ev);
	}
	s->ev = event_new(
	        dns->base, fd,
	        (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0) | EV_PERSIST),
	        dns_on_sock, dns);
	if (s->ev == NULL || event_add(s->ev, NULL) == -1)
		fatalx("dns: cannot watch socket %d", fd);
}

/* ---- flights ---- */

static struct dns_answer *
dns_answer_from_reply(struct dns *dns, const struct dns_part *p, int status,
                      const unsigned char *abuf, int alen)
{
	const char *name = p->flight->entry->name;
	enum dnsmsg_err err;

	/* c-ares passes the message along for NOERROR/NXDOMAIN; the rcode there is the truth. */
	if (abuf != NULL && alen > 0) {
		err = dnsmsg_parse(abuf, (size_t)alen, (uint16_t)p->rrtype, dns->msg);
		if (err == DNSMSG_OK)
			return dns_answer_from_msg(dns->pool, &dns->opts, dns->msg);
		log_warnx("dns name=%s rrtype=%d result=malformed reason=\"%s\"", name, p->rrtype,
		          dnsmsg_err_str(err));
		return dns_answer_status(dns->pool, DNS_ERROR, 0);
	}
	for (size_t i = 0; i < sizeof(dns_ares_status) / sizeof(dns_ares_status[0]); i++) {
		if (dns_ares_status[i].ares == status) {
			enum dns_status st = dns_ares_status[i].status;

			return dns_answer_status(dns->pool, st,
			                         dns_cache_ttl(&dns->opts, st, 0, false));
		}
	}
	log_warnx("dns name=%s rrtype=%d result=error reason=\"%s\"", name, p->rrtype,
	          ares_strerror(status));
	return dns_answer_status(dns->pool, DNS_ERROR, 0);
}

/* Called inside c-ares: caches and queues the waiters, but calls nobody and nothing back. */
static void
dns_flight_finish(struct dns *dns, struct dns_flight *f, struct dns_answer *ans)
{
	struct dns_entry *e = f->entry;
	uint64_t now_ms = dns_now_us() / 1000u;

	if (log_debug_enabled())
		log_debug("dns name=%s type=%s status=%s ttl=%u", e->name, dns_type_names[e->type],
		          dns_status_str(ans->status), ans->ttl);
	e->flight = NULL;
	if (!f->nocache && ans->ttl > 0 && dns->opts.cache_max > 0)
		dns_entry_store(dns, e, ans, now_ms);
	while (!dns_link_empty(&f->waiters)) {
		struct dns_query *q = dns_link_owner(f->waiters.next, struct dns_query, link);

		dns_link_remove(&q->link);
		dns_query_ready(q, ans, ans->ttl, false);
	}
	if (e->ans == NULL)
		dns_entry_remove(dns, e);
	dns_answer_unref(ans);
	free(f);
}

static void
dns_on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_part *p = arg;
	struct dns_flight *f = p->flight;
	struct dns *dns = f->dns;
	struct dns_answer *ans;
	uint64_t lat;

	/* ares_destroy() runs every pending callback; dns_free() owns the flights then. */
	if (status == ARES_EDESTRUCTION || dns->destroying)
		return;
	lat = dns_now_us() - f->started_us;
	dns->stats.answers++;
	dns->stats.latency_us_total += lat;
	if (lat > dns->stats.latency_us_max)
		dns->stats.latency_us_max = lat;
	p->ans = dns_answer_from_reply(dns, p, status, abuf, alen);
	if (--f->pending > 0)
		return;
	if (f->nparts == 2) {
		ans = dns_answer_merge(dns->pool, f->parts[0].ans, f->parts[1].ans);
		dns_answer_unref(f->parts[0].ans);
		dns_answer_unref(f->parts[1].ans);
	} else {
		ans = f->parts[0].ans;
	}
	dns_flight_finish(dns, f, ans);
}

static void
dns_flight_start(struct dns *dns, struct dns_entry *e, struct dns_query *q)
{
	struct dns_flight *f = xcalloc(1, sizeof(*f));
	unsigned n = dns_type_parts[e->type].n;

	f->dns = dns;
	f->entry = e;
	f->nparts = n;
	f->pending = n;
	f->started_us = dns_now_us();
	dns_link_init(&f->waiters);
	dns_query_set_state(q, DNS_Q_WAITING);
	dns_link_append(&f->waiters, &q->link);
	e->flight = f;
	for (unsigned i = 0; i < n; i++) {
		f->parts[i].flight = f;
		f->parts[i].rrtype = dns_type_parts[e->type].rrtype[i];
	}
	/*
	 * c-ares may call back inside ares_query() (a bad name, no servers); pending only reaches
	 * zero on the last call, so f stays valid until then and is not touched after it.
	 */
	for (unsigned i = 0; i < n; i++) {
		dns->stats.queries_sent++;
		ares_query(dns->ch, e->name, DNSMSG_CLASS_IN, dns_type_parts[e->type].rrtype[i],
		           dns_on_answer, &f->parts[i]);
	}
	dns_timer_arm(dns);
}

/* ---- the API ---- */

struct dns_query *
dns_lookup(struct dns *dns, const char *name, enum dns_type type, dns_cb cb, void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));
	char key[DNS_NAME_MAX + 1];
	struct dns_entry *e;
	uint32_t hash;
	uint64_t now_ms;

	q->dns = dns;
	q->cb = cb;
	q->arg = arg;
	q->state = DNS_Q_NEW;
	dns_link_init(&q->link);
	assert((size_t)type < sizeof(dns_type_parts) / sizeof(dns_type_parts[0]));
	if (dns_key(name, key) == -1) {
		struct dns_answer *bad = dns_answer_status(dns->pool, DNS_ERROR, 0);

		log_warnx("dns name=\"%.*s\" result=error reason=\"bad name\"", DNS_NAME_MAX, name);
		dns_query_ready(q, bad, 0, false);
		dns_answer_unref(bad);
		return q;
	}
	hash = dns_hash(dns, key, type);
	e = dns_entry_find(dns, key, type, hash);
	if (e != NULL && e->ans != NULL) {
		now_ms = dns_now_us() / 1000u;
		if (now_ms < e->expires_ms) {
			dns->stats.cache_hits++;
			dns_query_ready(q, e->ans, (uint32_t)((e->expires_ms - now_ms) / 1000u),
			                true);
			return q;
		}
		dns_entry_drop_answer(dns, e);
	}
	if (e != NULL && e->flight != NULL) {
		dns_query_set_state(q, DNS_Q_WAITING);
		dns_link_append(&e->flight->waiters, &q->link);
		return q;
	}
	if (e == NULL)
		e = dns_entry_add(dns, key, type, hash);
	dns_flight_start(dns, e, q);
	return q;
}

void
dns_cache_forget(struct dns *dns, const char *name)
{
	char key[DNS_NAME_MAX + 1];

	if (dns_key(name, key) == -1)
		return;
	for (size_t t = 0; t < sizeof(dns_type_parts) / sizeof(dns_type_parts[0]); t++) {
		uint32_t hash = dns_hash(dns, key, (enum dns_type)t);
		struct dns_entry *e = dns_entry_find(dns, key, (enum dns_type)t, hash);

		if (e == NULL)
			continue;
		if (e->flight != NULL)
			e->flight->nocache = true;
		dns_entry_forget(dns, e);
	}
}

void
dns_get_stats(const struct dns *dns, struct dns_stats *st)
{
	*st = dns->stats;
	st->cache_entries = dns->ncached;
}

struct dns *
dns_new(struct event_base *base, const struct dns_opts *opts, const char **errstr)
{
	struct dns *dns = xcalloc(1, sizeof(*dns));
	struct ares_options ao;
	int mask, rc;

	dns->base = base;
	dns->opts = *opts;
	dns->opts.servers = NULL; /* not kept: the caller owns the string */
	dns_link_init(&dns->ready);
	dns_link_init(&dns->aged);
	dns->nbuckets = DNS_BUCKETS_MIN;
	dns->buckets = xcalloc(dns->nbuckets, sizeof(*dns->buckets));
	dns->msg = xmalloc(sizeof(*dns->msg));
	dns->pool = pool_new();
	if (getrandom(&dns->seed, sizeof(dns->seed), GRND_NONBLOCK) != sizeof(dns->seed))
		dns->seed = (uint32_t)dns_now_us();
	dns->timer = evtimer_new(base, dns_on_timer, dns);
	dns->deliver = event_new(base, -1, 0, dns_on_deliver, dns);
	if (dns->timer == NULL || dns->deliver == NULL)
		fatalx("dns: cannot allocate events");

	if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		*errstr = ares_strerror(rc);
		goto fail;
	}
	memset(&ao, 0, sizeof(ao));
	/* ares_query() never applies the search list; NOSEARCH says so for anything else too. */
	ao.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_EDNS;
	ao.ednspsz = DNS_EDNS_PAYLOAD;
	ao.sock_state_cb = dns_on_sock_state;
	ao.sock_state_cb_data = dns;
	mask = ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ | ARES_OPT_SOCK_STATE_CB;
	if (opts->timeout_ms > 0) {
		ao.timeout = (int)opts->timeout_ms;
		mask |= ARES_OPT_TIMEOUTMS;
	}
	if (opts->tries > 0) {
		ao.tries = (int)opts->tries;
		mask |= ARES_OPT_TRIES;
	}
	if ((rc = ares_init_options(&dns->ch, &ao, mask)) != ARES_SUCCESS) {
		ares_library_cleanup();
		*errstr = ares_strerror(rc);
		goto fail;
	}
	if (opts->servers != NULL && opts->servers[0] != '\0' &&
	    ares_set_servers_ports_csv(dns->ch, opts->servers) != ARES_SUCCESS) {
		ares_destroy(dns->ch);
		ares_library_cleanup();
		*errstr = "invalid DNS server list";
		goto fail;
	}
	return dns;
fail:
	event_free(dns->timer);
	event_free(dns->deliver);
	pool_free_all(dns->pool);
	free(dns->msg);
	free(dns->buckets);
	free(dns);
	return NULL;
}

static void
dns_free_queries(struct dns_link *head)
{
	struct dns_link *l, *next;

	for (l = head->next; l != head; l = next) {
		struct dns_query *q = dns_link_owner(l, struct dns_query, link);

		next = l->next;
		dns_answer_unref(q->ans);
		free(q);
	}
	dns_link_init(head);
}

void
dns_free(struct dns *dns)
{
	if (dns == NULL)
		return;
	/* c-ares first: its callbacks (ARES_EDESTRUCTION) still see every flight alive. */
	dns->destroying = true;
	ares_destroy(dns->ch);
	ares_library_cleanup();
	while (dns->socks != NULL) {
		struct dns_sock *s = dns->socks;

		dns->socks = s->next;
		event_free(s->ev);
		free(s);
	}
	event_free(dns->timer);
	event_free(dns->deliver);
	dns_free_queries(&dns->ready);
	for (size_t i = 0; i < dns->nbuckets; i++) {
		struct dns_entry *e = dns->buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->hnext;
			if (e->flight != NULL) {
				dns_free_queries(&e->flight->waiters);
				for (unsigned p = 0; p < e->flight->nparts; p++)
					dns_answer_unref(e->flight->parts[p].ans);
				free(e->flight);
			}
			dns_answer_unref(e->ans);
			dns_entry_free(dns, e);
		}
	}
	pool_free_all(dns->pool);
	free(dns->buckets);
	free(dns->msg);
	free(dns);
}
