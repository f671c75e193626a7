/* engine.c: per-domain MTA-STS discovery, coalescing and the policy lifecycle (CACHE-8). */
#include "config.h"

#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>

#include "base/log.h"
#include "base/strbuf.h"
#include "base/xmalloc.h"
#include "engine/cache.h"
#include "io/dns.h"
#include "io/fetch.h"
#include "sts/domain.h"
#include "sts/mediatype.h"
#include "sts/txt.h"

#define POLICY_PATH "/.well-known/mta-sts.txt"
#define POLICY_PORT 443
/* TXT strings converted on the stack; a larger answer gets a heap array, never a cut one. */
#define TXT_CHUNKS_STACK 64

enum disc_state {
	DISC_TXT,   /* waiting for _mta-sts.<domain> TXT */
	DISC_ADDR,  /* waiting for the addresses of mta-sts.<domain> */
	DISC_FETCH, /* waiting for the HTTPS GET */
};

static const char *const disc_state_names[] = {
	[DISC_TXT] = "txt",
	[DISC_ADDR] = "addr",
	[DISC_FETCH] = "fetch",
};

struct engine_wait {
	struct discovery *disc;
	struct engine_wait *prev;
	struct engine_wait *next;
	engine_cb cb;
	void *arg;
};

/* One running discovery per domain; every lookup for the domain meanwhile waits on it. */
struct discovery {
	struct engine *eng;
	struct discovery *prev;
	struct discovery *next;
	enum disc_state state;
	struct dns_query *dq;
	struct fetch_req *fr;
	struct engine_wait *waiters;
	struct event *deadline;
	bool late;    /* the lookup deadline passed: new lookups answer from cache at once */
	bool fetched; /* a policy was fetched: waiters get it even when max_age is 0 */
	uint32_t txt_ttl;
	char id[TXT_ID_MAX + 1];
	char domain[DOMAIN_NAME_MAX + 1];
	char host[DOMAIN_NAME_MAX + 16]; /* "mta-sts." or "_mta-sts." + domain */
};

struct engine {
	struct event_base *base;
	struct dns *dns;
	struct fetch *fetch;
	struct engine_opts opts;
	struct timeval lookup_timeout;
	struct cache *cache;
	struct discovery *discs;
	struct engine_stats stats;
};

static uint32_t
engine_now(const struct engine *eng)
{
	struct timeval tv;

	if (eng->opts.clock != NULL)
		return eng->opts.clock(eng->opts.clock_arg);
	event_base_gettimeofday_cached(eng->base, &tv);
	return (uint32_t)tv.tv_sec;
}

static uint32_t
min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* "mx1.example.com,*.example.com" for log lines. */
static void
engine_mx_list(const struct policy *p, char *out, size_t outlen)
{
	size_t off = 0;

	out[0] = '\0';
	for (const char *mx = policy_mx_next(p, NULL); mx != NULL; mx = policy_mx_next(p, mx)) {
		int n = snprintf(out + off, outlen - off, "%s%s", off > 0 ? "," : "", mx);

		if (n < 0 || (size_t)n >= outlen - off) {
			if (outlen > 4)
				memcpy(out + outlen - 4, "...", 4);
			return;
		}
		off += (size_t)n;
	}
}

/* The answer the cache gives now for e; fetched overrides the lifetime (max_age 0). */
static void
engine_answer_from(struct engine *eng, struct cache_entry *e, uint32_t now, bool fetched,
                   struct engine_answer *ans)
{
	memset(ans, 0, sizeof(*ans));
	ans->domain = e->domain;
	if (e->policy != NULL && (fetched || cache_entry_valid(e, now))) {
		ans->result = ENGINE_POLICY;
		ans->policy = e->policy;
		ans->text = e->text;
		ans->text_len = e->text_len;
		return;
	}
	if (e->policy != NULL && !e->expiry_logged) {
		e->expiry_logged = true;
		log_info("policy domain=%s id=%s mode=%s max_age=%u result=expired", e->domain,
		         e->id, policy_mode_str(e->policy->mode), e->policy->max_age);
	}
	if (e->txt == CACHE_TXT_DNSFAIL && eng->opts.dns_failure_temp) {
		ans->result = ENGINE_TEMP;
		ans->reason = "DNS lookup of the _mta-sts record failed";
		return;
	}
	ans->result = ENGINE_NONE;
	ans->failure = e->txt == CACHE_TXT_CHANGED || e->txt == CACHE_TXT_MATCH
	                       ? (enum answer_failure)e->failure
	                       : ANSWER_FAILURE_NONE;
}

/* True when the entry's last TXT verdict still stands and needs no fetch (CACHE-3, -5). */
static bool
engine_can_answer(const struct engine *eng, const struct cache_entry *e, uint32_t now)
{
	bool backoff;

	if (now >= e->txt_until)
		return false;
	backoff = now < e->backoff_until;
	switch ((enum cache_txt)e->txt) {
	case CACHE_TXT_MATCH:
		/* An unchanged id never extends an expired policy: only a fetch renews it. */
		return cache_entry_valid(e, now) ||
		       (backoff && e->backoff_id_hash == cache_id_hash(e->id));
	case CACHE_TXT_CHANGED:
		return backoff;
	case CACHE_TXT_UNKNOWN:
		return false;
	default:
		return true;
	}
}

static void
disc_free(struct discovery *d)
{
	struct engine *eng = d->eng;
	struct engine_wait *w;

	if (d->dq != NULL)
		dns_cancel(d->dq);
	if (d->fr != NULL)
		fetch_cancel(d->fr);
	while ((w = d->waiters) != NULL) {
		d->waiters = w->next;
		free(w);
	}
	event_free(d->deadline);
	if (d->prev != NULL)
		d->prev->next = d->next;
	else
		eng->discs = d->next;
	if (d->next != NULL)
		d->next->prev = d->prev;
	eng->stats.in_flight--;
	free(d);
}

/* Answers and releases every waiter; the discovery itself goes on if still running. */
static void
disc_wake(struct discovery *d, struct cache_entry *e, uint32_t now)
{
	struct engine_answer ans;
	struct engine_wait *w;

	while ((w = d->waiters) != NULL) {
		d->waiters = w->next;
		if (d->waiters != NULL)
			d->waiters->prev = NULL;
		/* Recomputed per waiter: a callback may not rely on another's answer storage. */
		engine_answer_from(d->eng, e, now, d->fetched, &ans);
		w->cb(w->arg, &ans);
		free(w);
	}
}

static void
disc_finish(struct discovery *d)
{
	struct engine *eng = d->eng;
	struct cache_entry *e = cache_get(eng->cache, d->domain);
	uint32_t now = engine_now(eng);

	e->disc = NULL;
	disc_wake(d, e, now);
	disc_free(d);
}

static void
disc_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct discovery *d = arg;
	struct engine *eng = d->eng;
	size_t n = 0;

	for (struct engine_wait *w = d->waiters; w != NULL; w = w->next)
		n++;
	d->late = true;
	eng->stats.deadline_hits += n;
	log_info("discovery domain=%s stage=%s waiters=%zu result=deadline; answering from cache "
	         "while it goes on",
	         d->domain, disc_state_names[d->state], n);
	disc_wake(d, cache_get(eng->cache, d->domain), engine_now(eng));
}

/* A failed fetch for (domain, d->id): back off, keep any cached policy (FETCH-5, -7, -8). */
static void
disc_fail(struct discovery *d, enum answer_failure failure, const char *kind, const char *detail)
{
	struct engine *eng = d->eng;
	struct cache_entry *e = cache_get(eng->cache, d->domain);
	uint32_t now = engine_now(eng);
	static const char *const rpt[] = {
		[ANSWER_FAILURE_NONE] = "none",
		[ANSWER_FAILURE_FETCH] = "sts-policy-fetch-error",
		[ANSWER_FAILURE_INVALID] = "sts-policy-invalid",
		[ANSWER_FAILURE_WEBPKI] = "sts-webpki-invalid",
	};

	e->backoff_until = now + eng->opts.backoff;
	e->backoff_id_hash = cache_id_hash(d->id);
	e->failure = (uint8_t)failure;
	e->txt = e->policy != NULL && strcmp(e->id, d->id) == 0 ? CACHE_TXT_MATCH
	                                                        : CACHE_TXT_CHANGED;
	if (cache_entry_valid(e, now))
		log_warnx("policy domain=%s id=%s result=fail reason=%s type=%s detail=\"%s\" "
		          "cached_id=%s cached_mode=%s kept=yes backoff=%u",
		          d->domain, d->id, kind, rpt[failure], detail, e->id,
		          policy_mode_str(e->policy->mode), eng->opts.backoff);
	else
		log_warnx("policy domain=%s id=%s result=fail reason=%s type=%s detail=\"%s\" "
		          "cached=none backoff=%u",
		          d->domain, d->id, kind, rpt[failure], detail, eng->opts.backoff);
	disc_finish(d);
}

static void
disc_on_fetch(void *arg, const struct fetch_result *res)
{
	struct discovery *d = arg;
	struct engine *eng = d->eng;
	struct cache_entry *e;
	enum policy_error perr;
	size_t pline;
	struct policy *p;
	char detail[160], mx[512];
	uint32_t now;
	bool had;

	d->fr = NULL;
	if (res->status != FETCH_OK) {
		bool pki = res->status == FETCH_CERT;

		if (pki || res->status == FETCH_TLS)
			eng->stats.fail_tls++;
		else
			eng->stats.fail_http++;
		disc_fail(d, pki ? ANSWER_FAILURE_WEBPKI : ANSWER_FAILURE_FETCH,
		          pki ? "tls" : fetch_status_str(res->status), res->error);
		return;
	}
	if (res->http_status != 200) {
		eng->stats.fail_http++;
		snprintf(detail, sizeof(detail), "HTTP status %ld (only 200 is valid)",
		         res->http_status);
		disc_fail(d, ANSWER_FAILURE_FETCH, "http", detail);
		return;
	}
	if (!mediatype_is_text_plain(res->content_type)) {
		eng->stats.fail_http++;
		snprintf(detail, sizeof(detail), "Content-Type \"%.60s\" is not text/plain",
		         res->content_type != NULL ? res->content_type : "");
		disc_fail(d, ANSWER_FAILURE_FETCH, "http", detail);
		return;
	}
	p = policy_parse(res->body, res->body_len, &perr, &pline);
	if (p == NULL) {
		eng->stats.fail_parse++;
		snprintf(detail, sizeof(detail), "%s at line %zu", policy_error_str(perr), pline);
		disc_fail(d, ANSWER_FAILURE_INVALID, "parse", detail);
		return;
	}
	now = engine_now(eng);
	e = cache_get(eng->cache, d->domain);
	had = e->policy != NULL;
	e = cache_set_policy(eng->cache, e, p, d->id, res->body, res->body_len, now);
	e->txt = CACHE_TXT_MATCH;
	e->txt_until = now + d->txt_ttl;
	e->backoff_until = 0;
	e->failure = ANSWER_FAILURE_NONE;
	e->expiry_logged = false;
	d->fetched = true;
	eng->stats.fetch_ok++;
	engine_mx_list(p, mx, sizeof(mx));
	log_info("policy domain=%s id=%s mode=%s max_age=%u mx=%s result=%s", d->domain, d->id,
	         policy_mode_str(p->mode), p->max_age, mx, had ? "changed" : "fetched");
	policy_free(p);
	disc_finish(d);
}

static void
disc_on_addr(void *arg, const struct dns_result *res)
{
	struct discovery *d = arg;
	char detail[320];

	d->dq = NULL;
	if (res->status != DNS_OK || res->naddrs == 0) {
		d->eng->stats.fail_dns++;
		snprintf(detail, sizeof(detail), "%s: %s", d->host, dns_status_str(res->status));
		disc_fail(d, ANSWER_FAILURE_FETCH, "dns", detail);
		return;
	}
	d->state = DISC_FETCH;
	d->fr = fetch_start(d->eng->fetch, d->host, POLICY_PORT, POLICY_PATH, res->addrs,
	                    res->naddrs, disc_on_fetch, d);
}

static void
disc_start_fetch(struct discovery *d)
{
	d->state = DISC_ADDR;
	snprintf(d->host, sizeof(d->host), "mta-sts.%s", d->domain);
	d->dq = dns_lookup(d->eng->dns, d->host, DNS_TYPE_ADDR, disc_on_addr, d);
}

/* Applies a TXT answer to the entry; returns true when a fetch must follow. */
static bool
disc_txt_verdict(struct discovery *d, struct cache_entry *e, const struct dns_result *res,
                 uint32_t now)
{
	struct engine *eng = d->eng;
	struct txt_chunk stack[TXT_CHUNKS_STACK], *chunks = stack;
	struct txt_record rec;
	const char *reason = "";
	size_t n;

	switch (res->status) {
	case DNS_OK:
		break;
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		e->txt = CACHE_TXT_NONE;
		e->txt_until = now + min_u32(res->ttl, eng->opts.recheck_interval);
		return false;
	default:
		eng->stats.fail_dns++;
		e->txt = CACHE_TXT_DNSFAIL;
		e->txt_until = now + eng->opts.fail_ttl;
		if (cache_entry_valid(e, now))
			log_warnx("policy domain=%s id=%s result=dns-failure reason=%s "
			          "cached_mode=%s kept=yes",
			          d->domain, e->id, dns_status_str(res->status),
			          policy_mode_str(e->policy->mode));
		else
			log_debug("txt domain=%s result=dns-failure reason=%s", d->domain,
			          dns_status_str(res->status));
		return false;
	}
	/* Every string counts: dropping one could hide a second STS record (TXT-6). */
	n = res->ntxt;
	if (n > TXT_CHUNKS_STACK)
		chunks = xreallocarray(NULL, n, sizeof(*chunks));
	for (size_t i = 0; i < n; i++) {
		chunks[i].data = res->txt[i].data;
		chunks[i].len = res->txt[i].len;
		chunks[i].record_start = res->txt[i].record_start;
	}
	e->txt_until = now + min_u32(res->ttl, eng->opts.recheck_interval);
	d->txt_ttl = e->txt_until - now;
	enum txt_result tr = txt_select(chunks, n, &rec, &reason);

	if (chunks != stack)
		free(chunks);

	switch (tr) {
	case TXT_NONE:
		e->txt = CACHE_TXT_NONE;
		if (cache_entry_valid(e, now))
			log_info("txt domain=%s result=missing cached_id=%s kept=yes", d->domain,
			         e->id);
		return false;
	case TXT_MULTIPLE:
	case TXT_INVALID:
		e->txt = tr == TXT_INVALID ? CACHE_TXT_INVALID : CACHE_TXT_MULTIPLE;
		log_info("txt domain=%s result=%s reason=\"%s\"%s", d->domain, txt_result_str(tr),
		         tr == TXT_INVALID && reason != NULL ? reason : "several STS records",
		         cache_entry_valid(e, now) ? " kept=yes" : "");
		return false;
	case TXT_OK:
		break;
	}
	memcpy(d->id, rec.id, sizeof(d->id));
	if (e->policy != NULL && strcmp(rec.id, e->id) == 0 && cache_entry_valid(e, now)) {
		e->txt = CACHE_TXT_MATCH;
		eng->stats.fetch_unchanged++;
		return false;
	}
	if (now < e->backoff_until && e->backoff_id_hash == cache_id_hash(rec.id)) {
		e->txt = e->policy != NULL && strcmp(rec.id, e->id) == 0 ? CACHE_TXT_MATCH
		                                                         : CACHE_TXT_CHANGED;
		log_debug("txt domain=%s id=%s result=backoff until=%u", d->domain, rec.id,
		          e->backoff_until);
		return false;
	}
	return true;
}

static void
disc_on_txt(void *arg, const struct dns_result *res)
{
	struct discovery *d = arg;
	struct engine *eng = d->eng;
	struct cache_entry *e = cache_get(eng->cache, d->domain);

	d->dq = NULL;
	if (disc_txt_verdict(d, e, res, engine_now(eng)))
		disc_start_fetch(d);
	else
		disc_finish(d);
}

static struct engine_wait *
disc_join(struct discovery *d, engine_cb cb, void *arg)
{
	struct engine_wait *w = xmalloc(sizeof(*w));

	w->disc = d;
	w->cb = cb;
	w->arg = arg;
	w->prev = NULL;
	w->next = d->waiters;
	if (d->waiters != NULL)
		d->waiters->prev = w;
	d->waiters = w;
	return w;
}

static struct discovery *
disc_start(struct engine *eng, struct cache_entry *e)
{
	struct discovery *d = xcalloc(1, sizeof(*d));

	d->eng = eng;
	d->state = DISC_TXT;
	snprintf(d->domain, sizeof(d->domain), "%s", e->domain);
	snprintf(d->host, sizeof(d->host), "_mta-sts.%s", e->domain);
	d->deadline = evtimer_new(eng->base, disc_on_deadline, d);
	if (d->deadline == NULL)
		fatalx("engine: cannot allocate a timer");
	evtimer_add(d->deadline, &eng->lookup_timeout);
	d->next = eng->discs;
	if (eng->discs != NULL)
		eng->discs->prev = d;
	eng->discs = d;
	e->disc = d;
	eng->stats.discoveries++;
	eng->stats.in_flight++;
	d->dq = dns_lookup(eng->dns, d->host, DNS_TYPE_TXT, disc_on_txt, d);
	return d;
}

struct engine *
engine_new(struct event_base *base, struct dns *dns, struct fetch *fetch,
           const struct engine_opts *opts)
{
	struct engine *eng = xcalloc(1, sizeof(*eng));

	eng->base = base;
	eng->dns = dns;
	eng->fetch = fetch;
	eng->opts = *opts;
	eng->lookup_timeout.tv_sec = opts->lookup_timeout_ms / 1000;
	eng->lookup_timeout.tv_usec = (opts->lookup_timeout_ms % 1000) * 1000;
	eng->cache = cache_new(opts->max_entries);
	return eng;
}

void
engine_free(struct engine *eng)
{
	if (eng == NULL)
		return;
	while (eng->discs != NULL)
		disc_free(eng->discs);
	cache_free(eng->cache);
	free(eng);
}

struct engine_wait *
engine_lookup(struct engine *eng, const char *domain, struct engine_answer *ans, engine_cb cb,
              void *arg)
{
	uint32_t now = engine_now(eng);
	struct cache_entry *e = cache_get(eng->cache, domain);

	eng->stats.lookups++;
	if (e != NULL) {
		e->last_used = now;
		if (e->disc == NULL ? engine_can_answer(eng, e, now) : e->disc->late) {
			eng->stats.cache_hits++;
			engine_answer_from(eng, e, now, false, ans);
			return NULL;
		}
		if (e->disc != NULL) {
			eng->stats.cache_misses++;
			return disc_join(e->disc, cb, arg);
		}
	} else {
		e = cache_insert_empty(eng->cache, domain, now);
		if (e == NULL) {
			memset(ans, 0, sizeof(*ans));
			ans->result = ENGINE_TEMP;
			ans->domain = domain;
			ans->reason = "policy cache full of running discoveries";
			log_warnx("engine domain=%s result=limit reason=\"%s\"", domain,
			          ans->reason);
			return NULL;
		}
	}
	eng->stats.cache_misses++;
	return disc_join(disc_start(eng, e), cb, arg);
}

void
engine_cancel(struct engine_wait *w)
{
	struct discovery *d = w->disc;

	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		d->waiters = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	free(w);
}

void
engine_get_stats(const struct engine *eng, struct engine_stats *st)
{
	*st = eng->stats;
	st->entries = cache_count(eng->cache);
	st->evictions = cache_evictions(eng->cache);
}
