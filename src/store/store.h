/*
 * store.h: where policies outlive the process, behind one interface.
 *
 * The in-memory cache stays the hot path: the engine writes every fetched policy behind
 * (put), drops flushed ones (del), loads every unexpired record once at start (load) and
 * asks the store (get) only when memory has no usable policy. Backends never block the event
 * loop for longer than a local file read: sqlite writes from its own thread, redis talks over
 * hiredis's libevent adapter. Every callback runs from the event loop, never inside the call
 * that started it.
 */
#ifndef MTASTS_STORE_STORE_H
#define MTASTS_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct config;

/* One persisted policy. Strings are NUL-terminated; text holds text_len bytes plus a NUL. */
struct store_record {
	const char *domain; /* normalised policy domain, the key */
	const char *id;     /* the TXT id the policy was fetched under */
	const char *text;   /* the policy file verbatim */
	size_t text_len;
	uint32_t fetched_at; /* wall seconds */
	uint32_t expires_at; /* fetched_at + max_age: backends drop records after it */
	uint32_t last_used;  /* wall seconds of the last lookup, for the refresh idle rule */
};

/* Called once per get: rec is NULL when the store has no record or cannot be reached. rec
 * and its strings are valid only during the call. */
typedef void (*store_get_cb)(void *arg, const struct store_record *rec);
/* Called once per record by load; the same lifetime rule as store_get_cb. */
typedef void (*store_load_cb)(void *arg, const struct store_record *rec);

struct store_get; /* a get in flight */

struct store_status {
	const char *backend; /* "sqlite", "redis" */
	bool connected;      /* redis: the link is up; sqlite: the file is open */
	const char *detail;  /* a short state phrase for show/stats, e.g. "reconnecting in 4s" */
	uint64_t loaded;     /* records loaded at start */
	uint64_t puts;       /* records handed to put */
	uint64_t written;    /* records the backend has durably written */
	uint64_t write_errors;
	uint64_t gets;
	uint64_t get_hits;
	uint64_t pending; /* records waiting to be written */
};

struct store_ops {
	const char *name;
	/*
	 * Other daemons write to it too (redis). A store only this daemon writes (sqlite) holds
	 * nothing memory lacks unless memory evicted it, so it is asked only after evictions.
	 */
	bool shared;
	/* Calls fn for every record with expires_at > now; 0, or -1 with a message in err. */
	int (*load)(void *impl, uint32_t now, store_load_cb fn, void *arg, char *err,
	            size_t errlen);
	/* Copies r; written behind. A record never replaces one with a later fetched_at. */
	void (*put)(void *impl, const struct store_record *r);
	/* Forgets domain; NULL forgets every record. */
	void (*del)(void *impl, const char *domain);
	/* Looks domain up; returns a handle for cancel, and cb runs later exactly once
	 * (unless cancelled). */
	struct store_get *(*get)(void *impl, const char *domain, store_get_cb cb, void *arg);
	/* cb will not run; the handle is freed. */
	void (*cancel)(void *impl, struct store_get *g);
	void (*status)(void *impl, struct store_status *st);
	/* Writes what is pending (bounded in time), then frees everything. */
	void (*close)(void *impl);
};

struct store {
	const struct store_ops *ops;
	void *impl;
};

/*
 * Opens the backend cfg->cache.backend names. Returns NULL for the memory backend (nothing
 * persists) and sets *err NULL; on failure returns NULL and sets *err to a malloc'd message
 * that names the file or address and what to do.
 */
struct store *store_open(struct event_base *base, const struct config *cfg, char **err);
void store_close(struct store *s);

#endif
