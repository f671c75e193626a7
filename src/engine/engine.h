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
struct engine;
struct engine_wait;

struct engine_opts {
	uint32_t recheck_interval; /* seconds a TXT verdict is reused at most (CACHE-8's G) */
	uint32_t fail_ttl;         /* seconds a DNS failure verdict is reused */
	uint32_t backoff;          /* seconds without fetch per (domain, id) after a failure */
	unsigned lookup_timeout_ms;
	bool dns_failure_temp; /* TXT-10 knob: TEMP instead of NOTFOUND, no cached policy */
	size_t max_entries;
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
	uint64_t fail_tls;
	uint64_t fail_parse;
	uint64_t in_flight;
	size_t entries;
	size_t evictions;
};
void engine_get_stats(const struct engine *eng, struct engine_stats *st);

#endif
