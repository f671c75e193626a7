/* cache.h: the in-memory policy cache: one compact allocation per domain, hashed by name. */
#ifndef MTASTS_ENGINE_CACHE_H
#define MTASTS_ENGINE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sts/answer.h"
#include "sts/policy.h"

struct discovery;

/* What the last TXT lookup said, for as long as txt_until allows it to be reused. */
enum cache_txt {
	CACHE_TXT_UNKNOWN = 0, /* never looked up, or the result went stale */
	CACHE_TXT_MATCH,       /* one valid record whose id equals the cached policy's */
	CACHE_TXT_CHANGED,     /* one valid record with another id: fetch failed, backing off */
	CACHE_TXT_NONE,        /* NXDOMAIN, NODATA, or no STS candidate */
	CACHE_TXT_INVALID,     /* one candidate breaking the ABNF */
	CACHE_TXT_MULTIPLE,    /* several candidates */
	CACHE_TXT_DNSFAIL,     /* SERVFAIL, timeout or a malformed answer */
};

/*
 * Times are wall-clock seconds (uint32 lasts until 2106) so entries can be persisted as they
 * are. One allocation holds the header and, in data[], the domain, the policy's TXT id and
 * the policy text (each NUL-terminated), then the parsed policy (if any) 8-byte aligned.
 * Offsets instead of pointers keep the header at 40 bytes: a cache holds millions of these.
 */
struct cache_entry {
	struct discovery *disc; /* the running discovery, if any (owned by the engine) */
	uint32_t text_len;
	uint32_t fetched_at;
	uint32_t txt_until;     /* the TXT verdict below may be reused until then */
	uint32_t backoff_until; /* no fetch for backoff_id_hash before then (FETCH-5) */
	uint32_t backoff_id_hash;
	uint32_t last_used;
	uint16_t text_off; /* of the text in data[]; the id starts at id_off */
	uint8_t id_off;
	uint8_t txt;     /* enum cache_txt */
	uint8_t failure; /* enum answer_failure of the last failed fetch */
	bool has_policy : 1;
	bool expiry_logged : 1;
	bool flush_pending : 1; /* flushed while discovering: dropped when the discovery ends */
	bool store_checked : 1; /* the store was asked for a policy this entry lacked */
	_Alignas(8) char data[];
};

static inline const char *
cache_domain(const struct cache_entry *e)
{
	return e->data;
}

/* The policy's TXT id; "" without policy. */
static inline const char *
cache_id(const struct cache_entry *e)
{
	return e->data + e->id_off;
}

/* The policy text verbatim, text_len bytes, NUL-terminated. */
static inline const char *
cache_text(const struct cache_entry *e)
{
	return e->data + e->text_off;
}

static inline size_t
cache_policy_off(const struct cache_entry *e)
{
	return ((size_t)e->text_off + e->text_len + 1 + 7) & ~(size_t)7;
}

/* The parsed policy, or NULL. */
static inline const struct policy *
cache_policy(const struct cache_entry *e)
{
	return e->has_policy ? (const struct policy *)(e->data + cache_policy_off(e)) : NULL;
}

struct cache;

struct cache *cache_new(size_t max_entries);
void cache_free(struct cache *c);

struct cache_entry *cache_get(struct cache *c, const char *domain);

/*
 * Inserts a policy-less entry for domain (which must not be present). When the cache is full
 * it first evicts one entry by the rule in cache.c; entries with a running discovery are
 * never evicted. Returns NULL only when nothing could be evicted.
 */
struct cache_entry *cache_insert_empty(struct cache *c, const char *domain, uint32_t now);

/*
 * Replaces domain's entry with one holding policy p (copied), id and text; the TXT verdict,
 * back-off, discovery and use time carry over from the old entry. Returns the new entry; old
 * pointers to the entry are invalid afterwards.
 */
struct cache_entry *cache_set_policy(struct cache *c, struct cache_entry *old,
                                     const struct policy *p, const char *id, const char *text,
                                     size_t text_len, uint32_t fetched_at);

void cache_remove(struct cache *c, struct cache_entry *e);
/* Changes the entry limit; entries over it go at the next insertions. */
void cache_set_max(struct cache *c, size_t max_entries);
size_t cache_count(const struct cache *c);
size_t cache_evictions(const struct cache *c);

/* True while now is inside the policy's lifetime (CACHE-1); false without a policy. */
bool cache_entry_valid(const struct cache_entry *e, uint32_t now);

/* Calls fn for every entry; fn must not insert or remove. */
void cache_foreach(struct cache *c, void (*fn)(void *arg, struct cache_entry *e), void *arg);

/* FNV-1a, for back-off ids: a collision only delays a fetch by one back-off period. */
uint32_t cache_id_hash(const char *id);

#endif
