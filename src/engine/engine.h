/* engine.h: per-domain MTA-STS discovery, coalescing and the policy lifecycle (CACHE-8). */
#ifndef MTASTS_ENGINE_ENGINE_H
#define MTASTS_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sts/answer.h"
#include "sts/policy.h"

struct event_base;
struct dns;
struct fetch;
struct store;
struct engine;
struct engine_wait;

struct engine_opts {
	uint32_t recheck_interval; /* seconds a TXT verdict is reused at most (CACHE-8's G) */
	uint32_t fail_ttl;         /* seconds a DNS failure verdict is reused */
	uint32_t backoff;          /* seconds without fetch per (domain, id) after a failure */
	unsigned lookup_timeout_ms;
	bool dns_failure_temp; /* TXT-10 knob: TEMP instead of NOTFOUND, no cached policy */
	size_t max_entries;
	/* Proactive refresh: policies in use are refetched before they expire. */
	bool refresh;
	uint32_t refresh_window;      /* seconds before expiry a refresh is due at the latest */
	uint32_t refresh_idle;        /* no lookup this long: no refresh */
	unsigned refresh_concurrency; /* background refreshes at once */
	unsigned refresh_scan_s;      /* seconds between scans for due refreshes */
	/* Wall clock in seconds; NULL = the event loop's cached time. Tests set their own. */
	uint32_t (*clock)(void *arg);
	void *clock_arg;
};

enum engine_result {
	ENGINE_POLICY, /* apply policy (any mode; rendering decides) */
	ENGINE_NONE,   /* no policy applies */
	ENGINE_TEMP,   /* internal failure, or a DNS failure with dns_failure_temp */
};

/* Everything points into engine storage, valid until control returns to the event loop. */
struct engine_answer {
	enum engine_result result;
	const char *domain;
	const struct policy *policy; /* ENGINE_POLICY */
	const char *text;            /* the policy verbatim */
	size_t text_len;
	enum answer_failure failure; /* ENGINE_NONE: why, for TLSRPT attributes */
	const char *reason;          /* ENGINE_TEMP: a short phrase */
};

typedef void (*engine_cb)(void *arg, const struct engine_answer *ans);

struct engine *engine_new(struct event_base *base, struct dns *dns, struct fetch *fetch,
                          const struct engine_opts *opts);
/* Cancels discoveries (no callbacks) and frees; call before dns_free/fetch_free. */
void engine_free(struct engine *eng);

/*
 * Looks up a normalised policy domain. When the cache can answer now, fills *ans and returns
 * NULL without calling cb. Otherwise returns a wait handle and cb runs once later (after the
 * shared discovery finishes or the lookup deadline passes), unless engine_cancel() first.
 */
struct engine_wait *engine_lookup(struct engine *eng, const char *domain, struct engine_answer *ans,
                                  engine_cb cb, void *arg);
void engine_cancel(struct engine_wait *w);

struct engine_stats {
	uint64_t lookups;
	uint64_t cache_hits;    /* answered without waiting */
	uint64_t cache_misses;  /* had to wait for a discovery */
	uint64_t deadline_hits; /* answered from cache because the deadline passed */
	uint64_t discoveries;
	uint64_t fetch_ok;
	uint64_t fetch_unchanged; /* TXT id unchanged: no fetch needed */
	uint64_t fail_dns;
	uint64_t fail_http;
	uint64_t fail_http_class[6]; /* non-200 responses by status / 100 (1xx..5xx) */
	uint64_t limit_cache_full;   /* lookups answered TEMP: cache full of discoveries */
	uint64_t fail_tls;
	uint64_t fail_parse;
	uint64_t in_flight;
	uint64_t fetch_requests;
	uint64_t store_loaded;    /* policies loaded from the store at start */
	uint64_t store_hits;      /* policies taken from the store instead of a fetch */
	uint64_t refresh_started; /* background refreshes begun */
	uint64_t refresh_ok;
	uint64_t refresh_failed;
	uint64_t refresh_running;
	uint64_t fetch_ms_total;
	uint32_t fetch_ms_max;
	size_t entries;
	size_t evictions;
};
void engine_get_stats(const struct engine *eng, struct engine_stats *st);

/* The last fetch of a domain, as the control channel's show reports it. */
struct engine_fetch_note {
	uint32_t at;
	long http_status;
	uint32_t elapsed_ms;
	int tls_version;
	char result[160]; /* "ok" or the failure: kind, RFC 8460 type, detail */
	char content_type[64];
	char cert_subject[160];
	char cert_issuer[160];
	char cert_not_after[40];
};

/* A read-only view of one cache entry; valid until control returns to the event loop. */
struct engine_entry {
	const char *domain;
	const struct policy *policy; /* NULL when none was ever fetched */
	const char *id;              /* the policy's TXT id, "" without policy */
	const char *text;            /* the policy verbatim */
	size_t text_len;
	uint32_t fetched_at;
	uint32_t expires_at; /* fetched_at + max_age */
	bool valid;          /* now < expires_at */
	const char *txt;     /* the TXT verdict: match, changed, none, invalid, multiple, dnsfail */
	uint32_t txt_until;
	uint32_t backoff_until;
	uint32_t last_used;
	const char *last_error; /* RFC 8460 result type of the last failed fetch, or "" */
	bool discovering;
	uint32_t refresh_at; /* when a proactive refresh is due; 0: none (off, idle or none) */
	const struct engine_fetch_note *last_fetch; /* NULL when not remembered */
	const char *last_txt;                       /* STS TXT record(s) last seen, or NULL */
	uint32_t last_txt_at;
	struct engine_answer answer; /* what a lookup gets now */
};

uint32_t engine_now_wall(const struct engine *eng);
bool engine_get(struct engine *eng, const char *domain, struct engine_entry *out);
void engine_foreach(struct engine *eng, void (*fn)(void *arg, const struct engine_entry *e),
                    void *arg);
/* Drops domain's entry (NULL: every entry); one with a running discovery goes when it ends.
 * Returns the number of entries dropped or marked. */
size_t engine_flush(struct engine *eng, const char *domain);
/*
 * Runs a discovery for domain now, fetching the policy even when the TXT id is unchanged or a
 * back-off is active. cb runs once with the resulting answer (never inside this call).
 */
struct engine_wait *engine_refresh(struct engine *eng, const char *domain, engine_cb cb, void *arg);
/*
 * From now on writes every fetched policy to st, drops flushed ones from it and asks it for
 * policies memory lacks (NULL: memory only). The store outlives the engine's use of it.
 */
void engine_set_store(struct engine *eng, struct store *st);
/*
 * Loads every unexpired policy of the store into the cache, as if its TXT id had just been
 * checked. Returns the number loaded, or -1 with a message in err.
 */
long engine_load_store(struct engine *eng, char *err, size_t errlen);
/* Runs one proactive-refresh scan now (the timer runs them every refresh_scan_s). */
void engine_refresh_scan(struct engine *eng);

/* Applies new options (reload); the cache is kept. */
void engine_set_opts(struct engine *eng, const struct engine_opts *opts);
/*
 * Switches to new DNS and fetch instances (reload with changed dns or fetch settings).
 * Running discoveries answer their waiters from the cache and stop; the caller frees the
 * old instances afterwards.
 */
void engine_set_io(struct engine *eng, struct dns *dns, struct fetch *fetch);

#endif
