/* cache.c: the in-memory policy cache: one compact allocation per domain, hashed by name. */
#include "config.h"

#include "engine/cache.h"

#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "base/log.h"
#include "base/pool.h"
#include "base/xmalloc.h"

/*
 * Open addressing with linear probing over a power-of-two array of entry pointers, kept at
 * most 3/4 full; deletion shifts back instead of leaving tombstones. Eight bytes a slot keeps
 * the table's share of an entry's memory small.
 */
struct cache {
	struct cache_entry **slots;
	size_t mask;
	size_t count;
	size_t max_entries;
	size_t cursor; /* where the next eviction scan starts, so scans rotate */
	size_t evictions;
	struct pool *pool; /* the entries: see pool.h for why not malloc */
};

_Static_assert(sizeof(struct cache_entry) == 40,
               "the entry header is sized for millions of entries");

/* Entries sampled per eviction before the scan widens (see cache_evict_one). */
#define CACHE_EVICT_SAMPLE 16

static size_t
cache_entry_size(const struct cache_entry *e)
{
	const struct policy *p = cache_policy(e);

	return sizeof(*e) + cache_policy_off(e) + (p != NULL ? sizeof(*p) + p->mx_size : 0);
}

static void
cache_entry_free(struct cache *c, struct cache_entry *e)
{
	pool_free(c->pool, e, cache_entry_size(e));
}

static uint64_t
cache_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	return h ^ (h >> 29);
}

uint32_t
cache_id_hash(const char *id)
{
	return hash_fnv1a(0, id, strlen(id));
}

struct cache *
cache_new(size_t max_entries)
{
	struct cache *c = xcalloc(1, sizeof(*c));

	c->max_entries = max_entries > 0 ? max_entries : 1;
	c->mask = 63;
	c->slots = xcalloc(c->mask + 1, sizeof(*c->slots));
	c->pool = pool_new();
	return c;
}

void
cache_free(struct cache *c)
{
	if (c == NULL)
		return;
	pool_free_all(c->pool);
	free(c->slots);
	free(c);
}

static size_t
cache_find_slot(const struct cache *c, const char *domain)
{
	size_t i = (size_t)cache_hash(domain) & c->mask;

	while (c->slots[i] != NULL && strcmp(cache_domain(c->slots[i]), domain) != 0)
		i = (i + 1) & c->mask;
	return i;
}

struct cache_entry *
cache_get(struct cache *c, const char *domain)
{
	return c->slots[cache_find_slot(c, domain)];
}

static void
cache_grow(struct cache *c)
{
	struct cache_entry **old = c->slots;
	size_t oldn = c->mask + 1;

	c->mask = oldn * 2 - 1;
	c->slots = xcalloc(c->mask + 1, sizeof(*c->slots));
	for (size_t i = 0; i < oldn; i++)
		if (old[i] != NULL)
			c->slots[cache_find_slot(c, cache_domain(old[i]))] = old[i];
	free(old);
}

bool
cache_entry_valid(const struct cache_entry *e, uint32_t now)
{
	const struct policy *p = cache_policy(e);

	return p != NULL && (uint64_t)now < (uint64_t)e->fetched_at + p->max_age;
}

/*
 * Eviction rank: entries without a usable policy go first, then valid testing/none
 * policies, and valid enforce policies last, because dropping one reopens the downgrade
 * window MTA-STS closes. Within a rank the least recently used goes.
 */
static int
cache_rank(const struct cache_entry *e, uint32_t now)
{
	if (!cache_entry_valid(e, now))
		return 0;
	return cache_policy(e)->mode == POLICY_MODE_ENFORCE ? 2 : 1;
}

static void
cache_unlink_slot(struct cache *c, size_t i)
{
	size_t j = i;

	c->slots[i] = NULL;
	c->count--;
	/* Backward shift: move later members of the probe run into the hole. */
	for (;;) {
		j = (j + 1) & c->mask;
		if (c->slots[j] == NULL)
			return;
		size_t home = (size_t)cache_hash(cache_domain(c->slots[j])) & c->mask;

		if (((j - home) & c->mask) >= ((j - i) & c->mask)) {
			c->slots[i] = c->slots[j];
			c->slots[j] = NULL;
			i = j;
		}
	}
}

/*
 * Samples CACHE_EVICT_SAMPLE entries from a rotating cursor; if the best of them is a valid
 * enforce policy, keeps scanning the whole table for anything of a lower rank, so a valid
 * enforce policy is evicted only when every evictable entry is one.
 */
static bool
cache_evict_one(struct cache *c, uint32_t now)
{
	size_t n = c->mask + 1, best = n, seen = 0;
	int best_rank = 3;

	for (size_t k = 0; k < n; k++) {
		size_t i = (c->cursor + k) & c->mask;
		struct cache_entry *e = c->slots[i];

		if (e == NULL || e->disc != NULL)
			continue;
		int r = cache_rank(e, now);

		if (r < best_rank || (r == best_rank && e->last_used < c->slots[best]->last_used)) {
			best = i;
			best_rank = r;
		}
		if (++seen >= CACHE_EVICT_SAMPLE && best_rank < 2)
			break;
	}
	if (best == n)
		return false;
	c->cursor = (best + 1) & c->mask;
	struct cache_entry *victim = c->slots[best];

	log_debug("cache result=evicted domain=%s rank=%d", cache_domain(victim), best_rank);
	cache_unlink_slot(c, best);
	cache_entry_free(c, victim);
	c->evictions++;
	return true;
}

/* Lays out one entry: header, then domain, id and text strings, then the aligned policy. */
static struct cache_entry *
cache_entry_build(struct cache *c, const char *domain, const struct policy *p, const char *id,
                  const char *text, size_t text_len)
{
	size_t dlen = strlen(domain), ilen = id != NULL ? strlen(id) : 0;
	size_t text_off = dlen + 1 + ilen + 1;
	size_t poff = (text_off + text_len + 1 + 7) & ~(size_t)7;
	size_t size = sizeof(struct cache_entry) + poff + (p != NULL ? sizeof(*p) + p->mx_size : 0);
	struct cache_entry *e = pool_alloc(c->pool, size);
	char *s = e->data;

	memset(e, 0, sizeof(*e));
	memcpy(s, domain, dlen + 1);
	e->id_off = (uint8_t)(dlen + 1);
	if (ilen > 0)
		memcpy(s + e->id_off, id, ilen);
	s[e->id_off + ilen] = '\0';
	e->text_off = (uint16_t)text_off;
	if (text_len > 0)
		memcpy(s + text_off, text, text_len);
	s[text_off + text_len] = '\0';
	e->text_len = (uint32_t)text_len;
	if (p != NULL) {
		memcpy(s + poff, p, sizeof(*p) + p->mx_size);
		e->has_policy = true;
	}
	return e;
}

struct cache_entry *
cache_insert_empty(struct cache *c, const char *domain, uint32_t now)
{
	struct cache_entry *e;

	while (c->count >= c->max_entries)
		if (!cache_evict_one(c, now))
			return NULL;
	if ((c->count + 1) * 4 > (c->mask + 1) * 3)
		cache_grow(c);
	e = cache_entry_build(c, domain, NULL, NULL, NULL, 0);
	e->last_used = now;
	c->slots[cache_find_slot(c, domain)] = e;
	c->count++;
	return e;
}

struct cache_entry *
cache_set_policy(struct cache *c, struct cache_entry *old, const struct policy *p, const char *id,
                 const char *text, size_t text_len, uint32_t fetched_at)
{
	size_t i = cache_find_slot(c, cache_domain(old));
	struct cache_entry *e = cache_entry_build(c, cache_domain(old), p, id, text, text_len);

	e->disc = old->disc;
	e->txt = old->txt;
	e->txt_until = old->txt_until;
	e->backoff_until = old->backoff_until;
	e->backoff_id_hash = old->backoff_id_hash;
	e->last_used = old->last_used;
	e->store_checked = old->store_checked;
	e->fetched_at = fetched_at;
	c->slots[i] = e;
	cache_entry_free(c, old);
	return e;
}

void
cache_remove(struct cache *c, struct cache_entry *e)
{
	size_t i = cache_find_slot(c, cache_domain(e));

	if (c->slots[i] == e) {
		cache_unlink_slot(c, i);
		cache_entry_free(c, e);
	}
}

void
cache_set_max(struct cache *c, size_t max_entries)
{
	c->max_entries = max_entries > 0 ? max_entries : 1;
}

size_t
cache_count(const struct cache *c)
{
	return c->count;
}

size_t
cache_evictions(const struct cache *c)
{
	return c->evictions;
}

void
cache_foreach(struct cache *c, void (*fn)(void *arg, struct cache_entry *e), void *arg)
{
	for (size_t i = 0; i <= c->mask; i++)
		if (c->slots[i] != NULL)
			fn(arg, c->slots[i]);
}
