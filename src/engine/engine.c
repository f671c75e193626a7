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
#include "store/store.h"

#define POLICY_PATH "/.well-known/mta-sts.txt"
#define POLICY_PORT 443
/* TXT strings converted on the stack; a larger answer gets a heap array, never a cut one. */
#define TXT_CHUNKS_STACK 64

enum disc_state {
	DISC_TXT,   /* waiting for _mta-sts.<domain> TXT */
	DISC_STORE, /* waiting for the store's record of the domain */
	DISC_ADDR,  /* waiting for the addresses of mta-sts.<domain> */
	DISC_FETCH, /* waiting for the HTTPS GET */
};

static const char *const disc_state_names[] = {
	[DISC_TXT] = "txt",
	[DISC_STORE] = "store",
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
	struct store_get *sg;
	struct engine_wait *waiters;
	struct event *deadline;
	bool late;       /* the lookup deadline passed: new lookups answer from cache at once */
	bool force;      /* refresh: fetch even when the id is unchanged or backing off */
	bool fetched;    /* a policy was fetched: waiters get it even when max_age is 0 */
	bool refresh;    /* proactive: fetch even when the id is unchanged, unless backing off */
	bool want_fetch; /* DISC_STORE: the TXT verdict asked for a fetch */
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
	struct store *store;         /* NULL: memory only */
	struct event *refresh_timer; /* NULL while refresh is off */
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
	ans->domain = cache_domain(e);
	if (cache_policy(e) != NULL && (fetched || cache_entry_valid(e, now))) {
		ans->result = ENGINE_POLICY;
		ans->policy = cache_policy(e);
		ans->text = cache_text(e);
		ans->text_len = e->text_len;
		return;
	}
	if (cache_policy(e) != NULL && !e->expiry_logged) {
		e->expiry_logged = true;
		log_info("policy domain=%s id=%s mode=%s max_age=%u result=expired",
		         cache_domain(e), cache_id(e), policy_mode_str(cache_policy(e)->mode),
		         cache_policy(e)->max_age);
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
		       (backoff && e->backoff_id_hash == cache_id_hash(cache_id(e)));
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
	if (d->sg != NULL)
		eng->store->ops->cancel(eng->store->impl, d->sg);
	if (d->refresh)
		eng->stats.refresh_running--;
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
	if (d->refresh)
		eng->stats.refresh_failed++;
	e->backoff_until = now + eng->opts.backoff;
	e->backoff_id_hash = cache_id_hash(d->id);
	e->failure = (uint8_t)failure;
	e->txt = cache_policy(e) != NULL && strcmp(cache_id(e), d->id) == 0 ? CACHE_TXT_MATCH
	                                                                    : CACHE_TXT_CHANGED;
	if (cache_entry_valid(e, now))
		log_warnx("policy domain=%s id=%s result=fail reason=%s type=%s detail=\"%s\" "
		          "cached_id=%s cached_mode=%s kept=yes backoff=%u",
		          d->domain, d->id, kind, failure_names[failure], detail, cache_id(e),
		          policy_mode_str(cache_policy(e)->mode), eng->opts.backoff);
	else
		log_warnx("policy domain=%s id=%s result=fail reason=%s type=%s detail=\"%s\" "
		          "cached=none backoff=%u",
		          d->domain, d->id, kind, failure_names[failure], detail,
		          eng->opts.backoff);
	disc_finish(d);
}

/* Writes e's policy behind to the store, if there is one. */
static void
engine_store_put(struct engine *eng, const struct cache_entry *e)
{
	if (eng->store == NULL || cache_policy(e) == NULL)
		return;
	struct store_record r = {
		.domain = cache_domain(e),
		.id = cache_id(e),
		.text = cache_text(e),
		.text_len = e->text_len,
		.fetched_at = e->fetched_at,
		.expires_at = e->fetched_at + cache_policy(e)->max_age,
		.last_used = e->last_used,
	};

	eng->store->ops->put(eng->store->impl, &r);
}

/*
 * Installs a stored policy in e (which it replaces); returns the new entry, or NULL when the
 * record's text does not parse (it came from a file or another host: never trusted blindly).
 */
static struct cache_entry *
engine_adopt(struct engine *eng, struct cache_entry *e, const struct store_record *rec)
{
	enum policy_error perr;
	size_t pline;
	struct policy *p = policy_parse(rec->text, rec->text_len, &perr, &pline);

	if (p == NULL) {
		log_warnx("store backend=%s domain=%s id=%s result=unusable reason=\"%s at line "
		          "%zu\"",
		          eng->store->ops->name, rec->domain, rec->id, policy_error_str(perr),
		          pline);
		return NULL;
	}
	e = cache_set_policy(eng->cache, e, p, rec->id, rec->text, rec->text_len, rec->fetched_at);
	if (rec->last_used > e->last_used)
		e->last_used = rec->last_used;
	e->failure = ANSWER_FAILURE_NONE;
	e->expiry_logged = false;
	policy_free(p);
	return e;
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
	const char *what = cache_policy(e) == NULL ? "fetched"
	                   : strcmp(cache_id(e), d->id) != 0 || e->text_len != res->body_len ||
	                                   memcmp(cache_text(e), res->body, res->body_len) != 0
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
	if (d->refresh)
		eng->stats.refresh_ok++;
	engine_store_put(eng, e);
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
	/* Zeroed: GCC cannot see that txt_select reads only the n filled in. */
	struct txt_chunk stack[TXT_CHUNKS_STACK] = { 0 }, *chunks = stack;
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
			          d->domain, cache_id(e), dns_status_str(res->status),
			          policy_mode_str(cache_policy(e)->mode));
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
			         cache_id(e));
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
	if (d->refresh && !(now < e->backoff_until && e->backoff_id_hash == cache_id_hash(rec.id)))
		return true;
	if (cache_policy(e) != NULL && strcmp(rec.id, cache_id(e)) == 0 &&
	    cache_entry_valid(e, now)) {
		e->txt = CACHE_TXT_MATCH;
		eng->stats.fetch_unchanged++;
		return false;
	}
	if (now < e->backoff_until && e->backoff_id_hash == cache_id_hash(rec.id)) {
		e->txt = cache_policy(e) != NULL && strcmp(rec.id, cache_id(e)) == 0
		                 ? CACHE_TXT_MATCH
		                 : CACHE_TXT_CHANGED;
		log_debug("txt domain=%s id=%s result=backoff until=%u", d->domain, rec.id,
		          e->backoff_until);
		return false;
	}
	return true;
}

static void
disc_on_store(void *arg, const struct store_record *rec)
{
	struct discovery *d = arg;
	struct engine *eng = d->eng;
	struct cache_entry *e = cache_get(eng->cache, d->domain), *n;
	uint32_t now = engine_now(eng);
	char mx[512];

	d->sg = NULL;
	/*
	 * Taken when it is what a fetch would get (the TXT id, and newer than what memory
	 * holds: another relay fetched or refreshed it), or when memory has no valid policy
	 * at all: the answer never gets weaker than a valid policy any relay knows.
	 */
	bool take = rec != NULL && rec->expires_at > now &&
	            (d->want_fetch
	                     ? strcmp(rec->id, d->id) == 0 && (!cache_entry_valid(e, now) ||
	                                                       strcmp(cache_id(e), rec->id) != 0 ||
	                                                       rec->fetched_at > e->fetched_at)
	                     : !cache_entry_valid(e, now));

	if (take && (n = engine_adopt(eng, e, rec)) != NULL) {
		e = n;
		if (d->want_fetch) {
			e->txt = CACHE_TXT_MATCH;
			e->backoff_until = 0;
		}
		eng->stats.store_hits++;
		if (d->refresh)
			eng->stats.refresh_ok++;
		engine_mx_list(cache_policy(e), mx, sizeof(mx));
		log_info("policy domain=%s id=%s mode=%s max_age=%u mx=%s result=shared from=%s",
		         d->domain, cache_id(e), policy_mode_str(cache_policy(e)->mode),
		         cache_policy(e)->max_age, mx, eng->store->ops->name);
		disc_finish(d);
		return;
	}
	if (d->want_fetch)
		disc_start_fetch(d);
	else
		disc_finish(d);
}

/*
 * Asks the store before a fetch (another relay may have fetched it), and once per entry when
 * memory has no valid policy (a relay may know one while TXT is missing or failing). Returns
 * true when the question is under way.
 */
static bool
disc_ask_store(struct discovery *d, struct cache_entry *e, bool fetch, uint32_t now)
{
	struct engine *eng = d->eng;

	if (eng->store == NULL || d->force ||
	    (!eng->store->ops->shared && cache_evictions(eng->cache) == 0))
		return false;
	if (!fetch && (cache_entry_valid(e, now) || e->store_checked))
		return false;
	e->store_checked = true;
	d->want_fetch = fetch;
	d->state = DISC_STORE;
	d->sg = eng->store->ops->get(eng->store->impl, d->domain, disc_on_store, d);
	return true;
}

static void
disc_on_txt(void *arg, const struct dns_result *res)
{
	struct discovery *d = arg;
	struct engine *eng = d->eng;
	struct cache_entry *e = cache_get(eng->cache, d->domain);
	uint32_t now = engine_now(eng);
	bool fetch;

	d->dq = NULL;
	fetch = disc_txt_verdict(d, e, res, now);
	if (disc_ask_store(d, e, fetch, now))
		return;
	if (fetch)
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
	snprintf(d->domain, sizeof(d->domain), "%s", cache_domain(e));
	snprintf(d->host, sizeof(d->host), "_mta-sts.%s", cache_domain(e));
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

/*
 * When e's policy is due for a proactive refresh: when older than max(1 day, max_age/2) or
 * within the window before expiry, whichever is first, but never before half its life (a
 * window wider than max_age would refresh it all the time). Up to a tenth earlier by a hash
 * of the domain, so policies fetched together are not refreshed together.
 */
static uint32_t
engine_refresh_due(const struct engine *eng, const struct cache_entry *e)
{
	uint64_t fetched = e->fetched_at, max_age = cache_policy(e)->max_age;
	uint64_t by_age = fetched + (max_age / 2 > 86400 ? max_age / 2 : 86400);
	uint64_t expiry = fetched + max_age;
	uint64_t by_window =
	        expiry > eng->opts.refresh_window ? expiry - eng->opts.refresh_window : 0;
	uint64_t at = by_age < by_window ? by_age : by_window;

	if (at < fetched + max_age / 2)
		at = fetched + max_age / 2;
	at -= cache_id_hash(cache_domain(e)) % ((at - fetched) / 10 + 1);
	return (uint32_t)at;
}

/* Whether e takes part in proactive refresh at all; 0 or its due time. */
static uint32_t
engine_refresh_at(const struct engine *eng, const struct cache_entry *e, uint32_t now)
{
	if (!eng->opts.refresh || !cache_entry_valid(e, now) ||
	    now - e->last_used >= eng->opts.refresh_idle)
		return 0;
	return engine_refresh_due(eng, e);
}

struct engine_scan_ctx {
	struct engine *eng;
	uint32_t now;
	char (*due)[DOMAIN_NAME_MAX + 1];
	size_t n;
	size_t max;
};

static void
engine_scan_one(void *arg, struct cache_entry *e)
{
	struct engine_scan_ctx *ctx = arg;
	uint32_t at;

	if (ctx->n >= ctx->max || e->disc != NULL)
		return;
	at = engine_refresh_at(ctx->eng, e, ctx->now);
	if (at == 0 || ctx->now < at)
		return;
	/* A failed refresh backs off like any fetch (FETCH-5); the old policy stays. */
	if (ctx->now < e->backoff_until && e->backoff_id_hash == cache_id_hash(cache_id(e)))
		return;
	snprintf(ctx->due[ctx->n++], sizeof(ctx->due[0]), "%s", cache_domain(e));
}

void
engine_refresh_scan(struct engine *eng)
{
	struct engine_scan_ctx ctx = { .eng = eng, .now = engine_now(eng) };

	if (!eng->opts.refresh || eng->stats.refresh_running >= eng->opts.refresh_concurrency)
		return;
	ctx.max = eng->opts.refresh_concurrency - eng->stats.refresh_running;
	ctx.due = xreallocarray(NULL, ctx.max, sizeof(*ctx.due));
	/* Collected first: starting a discovery must not happen under cache_foreach. */
	cache_foreach(eng->cache, engine_scan_one, &ctx);
	for (size_t i = 0; i < ctx.n; i++) {
		struct cache_entry *e = cache_get(eng->cache, ctx.due[i]);
		struct discovery *d = disc_start(eng, e);

		d->refresh = true;
		eng->stats.refresh_started++;
		eng->stats.refresh_running++;
		log_debug("refresh domain=%s id=%s result=started", cache_domain(e), cache_id(e));
	}
	free(ctx.due);
}

static void
engine_on_refresh_timer(evutil_socket_t fd, short what, void *arg)
{
	engine_refresh_scan(arg);
}

/* (Re)starts or stops the scan timer after the options changed. */
static void
engine_arm_refresh(struct engine *eng)
{
	struct timeval tv = { .tv_sec = eng->opts.refresh_scan_s > 0 ? eng->opts.refresh_scan_s
		                                                     : 60 };

	if (eng->refresh_timer != NULL) {
		event_free(eng->refresh_timer);
		eng->refresh_timer = NULL;
	}
	if (!eng->opts.refresh)
		return;
	eng->refresh_timer = event_new(eng->base, -1, EV_PERSIST, engine_on_refresh_timer, eng);
	if (eng->refresh_timer == NULL || event_add(eng->refresh_timer, &tv) != 0)
		fatalx("engine: cannot arm the refresh timer");
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
	engine_arm_refresh(eng);
	return eng;
}

void
engine_free(struct engine *eng)
{
	if (eng == NULL)
		return;
	while (eng->discs != NULL)
		disc_free(eng->discs);
	if (eng->refresh_timer != NULL)
		event_free(eng->refresh_timer);
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
		/* A background refresh is checking this policy right now: while it is valid,
		 * lookups use it instead of waiting on the network too. */
		bool now_ok = e->disc == NULL    ? engine_can_answer(eng, e, now)
		              : e->disc->refresh ? cache_entry_valid(e, now) || e->disc->late
		                                 : e->disc->late;

		if (now_ok) {
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
	v->domain = cache_domain(e);
	v->policy = cache_policy(e);
	v->id = cache_id(e);
	v->text = cache_text(e);
	v->text_len = e->text_len;
	v->fetched_at = e->fetched_at;
	if (cache_policy(e) != NULL)
		v->expires_at = e->fetched_at + cache_policy(e)->max_age;
	v->valid = cache_entry_valid(e, now);
	v->txt = cache_txt_names[e->txt];
	v->txt_until = e->txt_until;
	v->backoff_until = e->backoff_until;
	v->last_used = e->last_used;
	v->last_error = failure_names[e->failure];
	v->discovering = e->disc != NULL;
	v->refresh_at = engine_refresh_at(eng, e, now);
	const struct fetch_note_slot *slot = engine_note_find(eng, cache_domain(e));

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
	engine_forget_dns(eng, cache_domain(e));
	log_info("policy domain=%s id=%s result=flushed", cache_domain(e), cache_id(e));
	if (e->disc != NULL)
		e->flush_pending = true;
	else
		cache_remove(eng->cache, e);
}

size_t
engine_flush(struct engine *eng, const char *domain)
{
	struct engine_flush_ctx ctx = { NULL, 0, 0 };

	/* The store too, even for a domain memory no longer holds. */
	if (eng->store != NULL)
		eng->store->ops->del(eng->store->impl, domain);
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
	engine_arm_refresh(eng);
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

void
engine_set_store(struct engine *eng, struct store *st)
{
	eng->store = st;
}

struct engine_load_ctx {
	struct engine *eng;
	uint32_t now;
	long loaded;
};

static void
engine_load_one(void *arg, const struct store_record *rec)
{
	struct engine_load_ctx *ctx = arg;
	struct engine *eng = ctx->eng;
	struct cache_entry *e = cache_get(eng->cache, rec->domain);

	if (rec->expires_at <= ctx->now || (e != NULL && e->fetched_at >= rec->fetched_at))
		return;
	bool fresh = e == NULL;

	if (fresh && (e = cache_insert_empty(eng->cache, rec->domain, ctx->now)) == NULL)
		return;
	struct cache_entry *n = engine_adopt(eng, e, rec);

	if (n == NULL) {
		if (fresh)
			cache_remove(eng->cache, e);
		return;
	}
	e = n;
	/* As fresh as before the restart: answered at once, TXT checked again after
	 * recheck_interval, so lookups need no network even while DNS is unreachable. */
	e->txt = CACHE_TXT_MATCH;
	e->txt_until = ctx->now + eng->opts.recheck_interval;
	e->last_used = rec->last_used;
	ctx->loaded++;
}

long
engine_load_store(struct engine *eng, char *err, size_t errlen)
{
	struct engine_load_ctx ctx = { eng, engine_now(eng), 0 };

	if (eng->store == NULL)
		return 0;
	if (eng->store->ops->load(eng->store->impl, ctx.now, engine_load_one, &ctx, err, errlen) !=
	    0)
		return -1;
	eng->stats.store_loaded += (uint64_t)ctx.loaded;
	return ctx.loaded;
}
