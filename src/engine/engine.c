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

/* RFC 8460 result types, for logs and show; NONE has none. */
static const char *const failure_names[] = {
	[ANSWER_FAILURE_NONE] = "",
	[ANSWER_FAILURE_FETCH] = "sts-policy-fetch-error",
	[ANSWER_FAILURE_INVALID] = "sts-policy-invalid",
	[ANSWER_FAILURE_WEBPKI] = "sts-webpki-invalid",
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
	bool force;   /* refresh: fetch even when the id is unchanged or backing off */
	bool fetched; /* a policy was fetched: waiters get it even when max_age is 0 */
	uint32_t txt_ttl;
	char id[TXT_ID_MAX + 1];
	char domain[DOMAIN_NAME_MAX + 1];
	char host[DOMAIN_NAME_MAX + 16]; /* "mta-sts." or "_mta-sts." + domain */
};

/* Recent fetch details for the control channel's show; a ring, newest overwriting oldest. */
#define FETCH_NOTES_MAX 512

struct fetch_note_slot {
	char domain[DOMAIN_NAME_MAX + 1];
	struct engine_fetch_note note; /* at == 0 until the first fetch */
	uint32_t txt_at;
	char txt[256]; /* the STS TXT record last seen, cut to fit */
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
	struct fetch_note_slot *notes; /* FETCH_NOTES_MAX slots */
	size_t notes_next;
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
	if (e->flush_pending)
		cache_remove(eng->cache, e);
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

static struct fetch_note_slot *
engine_note_find(const struct engine *eng, const char *domain)
{
	for (size_t i = 0; i < FETCH_NOTES_MAX; i++)
		if (strcmp(eng->notes[i].domain, domain) == 0)
			return &eng->notes[i];
	return NULL;
}

/* Finds or takes over the oldest slot for domain. */
static struct fetch_note_slot *
engine_note_get(struct engine *eng, const char *domain)
{
	struct fetch_note_slot *slot = engine_note_find(eng, domain);

	if (slot == NULL) {
		slot = &eng->notes[eng->notes_next];
		eng->notes_next = (eng->notes_next + 1) % FETCH_NOTES_MAX;
		memset(slot, 0, sizeof(*slot));
		snprintf(slot->domain, sizeof(slot->domain), "%s", domain);
	}
	return slot;
}

/* A fresh fetch record for domain, stamped now. */
static struct engine_fetch_note *
engine_note_fetch(struct engine *eng, const char *domain)
{
	struct fetch_note_slot *slot = engine_note_get(eng, domain);

	memset(&slot->note, 0, sizeof(slot->note));
	slot->note.at = engine_now(eng);
	return &slot->note;
}

/* A failed fetch for (domain, d->id): back off, keep any cached policy (FETCH-5, -7, -8). */
static void
disc_fail(struct discovery *d, enum answer_failure failure, const char *kind, const char *detail)
{
	struct engine *eng = d->eng;
	struct cache_entry *e = cache_get(eng->cache, d->domain);
	uint32_t now = engine_now(eng);

	/* A failed fetch keeps what the response said; an earlier failure starts a record. */
	struct engine_fetch_note *note = d->state == DISC_FETCH
	                                         ? &engine_note_get(eng, d->domain)->note
	                                         : engine_note_fetch(eng, d->domain);

	snprintf(note->result, sizeof(note->result), "%s: %s: %s", kind, failure_names[failure],
	         detail);
	e->backoff_until = now + eng->opts.backoff;
	e->backoff_id_hash = cache_id_hash(d->id);
	e->failure = (uint8_t)failure;
	e->txt = e->policy != NULL && strcmp(e->id, d->id) == 0 ? CACHE_TXT_MATCH
	                                                        : CACHE_TXT_CHANGED;
	if (cache_entry_valid(e, now))
		log_warnx("policy domain=%s id=%s result=fail reason=%s type=%s detail=\"%s\" "
		          "cached_id=%s cached_mode=%s kept=yes backoff=%u",
		          d->domain, d->id, kind, failure_names[failure], detail, e->id,
		          policy_mode_str(e->policy->mode), eng->opts.backoff);
	else
		log_warnx("policy domain=%s id=%s result=fail reason=%s type=%s detail=\"%s\" "
		          "cached=none backoff=%u",
		          d->domain, d->id, kind, failure_names[failure], detail,
		          eng->opts.backoff);
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

	d->fr = NULL;
	eng->stats.fetch_requests++;
	eng->stats.fetch_ms_total += res->elapsed_ms;
	if (res->elapsed_ms > eng->stats.fetch_ms_max)
		eng->stats.fetch_ms_max = res->elapsed_ms;
	/* Filled now; disc_fail() overwrites result with the failure. */
	struct engine_fetch_note *note = engine_note_fetch(eng, d->domain);

	note->http_status = res->http_status;
	note->elapsed_ms = res->elapsed_ms;
	note->tls_version = res->tls_version;
	snprintf(note->result, sizeof(note->result), "ok");
	snprintf(note->content_type, sizeof(note->content_type), "%s",
	         res->content_type != NULL ? res->content_type : "");
	snprintf(note->cert_subject, sizeof(note->cert_subject), "%s",
	         res->cert_subject != NULL ? res->cert_subject : "");
	snprintf(note->cert_issuer, sizeof(note->cert_issuer), "%s",
	         res->cert_issuer != NULL ? res->cert_issuer : "");
	snprintf(note->cert_not_after, sizeof(note->cert_not_after), "%s",
	         res->cert_not_after != NULL ? res->cert_not_after : "");
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
		if (res->http_status >= 100 && res->http_status < 600)
			eng->stats.fail_http_class[res->http_status / 100]++;
		snprintf(detail, sizeof(detail), "HTTP status %ld (only 200 is valid)",
		         res->http_status);
		disc_fail(d, ANSWER_FAILURE_FETCH, "http", detail);
		return;
	}
	if (!mediatype_is_text_plain(res->content_type)) {
		eng->stats.fail_http++;
		snprintf(detail, sizeof(detail), "Content-Type '%.60s' is not text/plain",
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
	/* "changed" only when the policy differs: a refresh of the same one is not news. */
	const char *what = e->policy == NULL ? "fetched"
	                   : strcmp(e->id, d->id) != 0 || e->text_len != res->body_len ||
	                                   memcmp(e->text, res->body, res->body_len) != 0
	                           ? "changed"
	                           : "refreshed";
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
	         policy_mode_str(p->mode), p->max_age, mx, what);
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

/* Remembers the STS record(s) seen, joined as DNS strings are (TXT-8), for show. */
static void
engine_note_txt(struct engine *eng, const char *domain, const struct txt_chunk *chunks, size_t n,
                uint32_t now)
{
	struct fetch_note_slot *slot = engine_note_get(eng, domain);
	size_t off = 0;

	for (size_t i = 0; i < n && off + 1 < sizeof(slot->txt); i++) {
		size_t k = chunks[i].len;

		if (chunks[i].record_start && i > 0 && off + 3 < sizeof(slot->txt)) {
			memcpy(slot->txt + off, " | ", 3);
			off += 3;
		}
		if (k > sizeof(slot->txt) - 1 - off)
			k = sizeof(slot->txt) - 1 - off;
		for (size_t j = 0; j < k; j++) {
			unsigned char c = chunks[i].data[j];

			/* Shown to people and in JSON: printable ASCII only. */
			slot->txt[off++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
		}
	}
	slot->txt[off] = '\0';
	slot->txt_at = now;
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

	if (tr != TXT_NONE)
		engine_note_txt(eng, d->domain, chunks, n, now);

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
	if (d->force)
		return true;
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
	eng->notes = xcalloc(FETCH_NOTES_MAX, sizeof(*eng->notes));
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
	free(eng->notes);
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
			eng->stats.limit_cache_full++;
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

uint32_t
engine_now_wall(const struct engine *eng)
{
	return engine_now(eng);
}

static const char *const cache_txt_names[] = {
	[CACHE_TXT_UNKNOWN] = "unknown", [CACHE_TXT_MATCH] = "match",
	[CACHE_TXT_CHANGED] = "changed", [CACHE_TXT_NONE] = "none",
	[CACHE_TXT_INVALID] = "invalid", [CACHE_TXT_MULTIPLE] = "multiple",
	[CACHE_TXT_DNSFAIL] = "dnsfail",
};

static void
engine_view(struct engine *eng, struct cache_entry *e, uint32_t now, struct engine_entry *v)
{
	memset(v, 0, sizeof(*v));
	v->domain = e->domain;
	v->policy = e->policy;
	v->id = e->id;
	v->text = e->text;
	v->text_len = e->text_len;
	v->fetched_at = e->fetched_at;
	if (e->policy != NULL)
		v->expires_at = e->fetched_at + e->policy->max_age;
	v->valid = cache_entry_valid(e, now);
	v->txt = cache_txt_names[e->txt];
	v->txt_until = e->txt_until;
	v->backoff_until = e->backoff_until;
	v->last_used = e->last_used;
	v->last_error = failure_names[e->failure];
	v->discovering = e->disc != NULL;
	const struct fetch_note_slot *slot = engine_note_find(eng, e->domain);

	if (slot != NULL) {
		v->last_fetch = slot->note.at != 0 ? &slot->note : NULL;
		v->last_txt = slot->txt_at != 0 ? slot->txt : NULL;
		v->last_txt_at = slot->txt_at;
	}
	engine_answer_from(eng, e, now, false, &v->answer);
}

bool
engine_get(struct engine *eng, const char *domain, struct engine_entry *out)
{
	struct cache_entry *e = cache_get(eng->cache, domain);

	if (e == NULL)
		return false;
	engine_view(eng, e, engine_now(eng), out);
	return true;
}

struct engine_foreach_ctx {
	struct engine *eng;
	uint32_t now;
	void (*fn)(void *arg, const struct engine_entry *e);
	void *arg;
};

static void
engine_foreach_one(void *arg, struct cache_entry *e)
{
	struct engine_foreach_ctx *ctx = arg;
	struct engine_entry v;

	engine_view(ctx->eng, e, ctx->now, &v);
	ctx->fn(ctx->arg, &v);
}

void
engine_foreach(struct engine *eng, void (*fn)(void *arg, const struct engine_entry *e), void *arg)
{
	struct engine_foreach_ctx ctx = { eng, engine_now(eng), fn, arg };

	cache_foreach(eng->cache, engine_foreach_one, &ctx);
}

static void
engine_forget_dns(struct engine *eng, const char *domain)
{
	char name[DOMAIN_NAME_MAX + 16];

	snprintf(name, sizeof(name), "_mta-sts.%s", domain);
	dns_cache_forget(eng->dns, name);
	snprintf(name, sizeof(name), "mta-sts.%s", domain);
	dns_cache_forget(eng->dns, name);
}

struct engine_flush_ctx {
	struct cache_entry **victims;
	size_t n;
	size_t cap;
};

static void
engine_flush_collect(void *arg, struct cache_entry *e)
{
	struct engine_flush_ctx *ctx = arg;

	if (ctx->n == ctx->cap) {
		ctx->cap = ctx->cap > 0 ? ctx->cap * 2 : 64;
		ctx->victims = xreallocarray(ctx->victims, ctx->cap, sizeof(*ctx->victims));
	}
	ctx->victims[ctx->n++] = e;
}

static void
engine_flush_entry(struct engine *eng, struct cache_entry *e)
{
	engine_forget_dns(eng, e->domain);
	log_info("policy domain=%s id=%s result=flushed", e->domain, e->id);
	if (e->disc != NULL)
		e->flush_pending = true;
	else
		cache_remove(eng->cache, e);
}

size_t
engine_flush(struct engine *eng, const char *domain)
{
	struct engine_flush_ctx ctx = { NULL, 0, 0 };

	if (domain != NULL) {
		struct cache_entry *e = cache_get(eng->cache, domain);

		if (e == NULL)
			return 0;
		engine_flush_entry(eng, e);
		return 1;
	}
	/* Collected first: removal reshuffles the table under cache_foreach. */
	cache_foreach(eng->cache, engine_flush_collect, &ctx);
	for (size_t i = 0; i < ctx.n; i++)
		engine_flush_entry(eng, ctx.victims[i]);
	free(ctx.victims);
	return ctx.n;
}

struct engine_wait *
engine_refresh(struct engine *eng, const char *domain, engine_cb cb, void *arg)
{
	uint32_t now = engine_now(eng);
	struct cache_entry *e = cache_get(eng->cache, domain);

	engine_forget_dns(eng, domain);
	if (e == NULL) {
		e = cache_insert_empty(eng->cache, domain, now);
		if (e == NULL)
			return NULL;
	}
	e->flush_pending = false;
	if (e->disc != NULL) {
		/* Still before the fetch decision: make it fetch. */
		if (e->disc->state == DISC_TXT)
			e->disc->force = true;
		return disc_join(e->disc, cb, arg);
	}
	struct discovery *d = disc_start(eng, e);

	d->force = true;
	return disc_join(d, cb, arg);
}

void
engine_set_opts(struct engine *eng, const struct engine_opts *opts)
{
	eng->opts = *opts;
	eng->lookup_timeout.tv_sec = opts->lookup_timeout_ms / 1000;
	eng->lookup_timeout.tv_usec = (opts->lookup_timeout_ms % 1000) * 1000;
	cache_set_max(eng->cache, opts->max_entries);
}

void
engine_set_io(struct engine *eng, struct dns *dns, struct fetch *fetch)
{
	uint32_t now = engine_now(eng);

	while (eng->discs != NULL) {
		struct discovery *d = eng->discs;
		struct cache_entry *e = cache_get(eng->cache, d->domain);

		log_info("discovery domain=%s stage=%s result=restarted reason=\"dns or fetch "
		         "settings reloaded\"",
		         d->domain, disc_state_names[d->state]);
		e->disc = NULL;
		disc_wake(d, e, now);
		disc_free(d);
		if (e->flush_pending)
			cache_remove(eng->cache, e);
	}
	eng->dns = dns;
	eng->fetch = fetch;
}
