/*
 * fetch.h: asynchronous HTTPS GET, pinned to given addresses.
 *
 * The transfers (libcurl multi, io/https.c) run on a worker thread with its own event loop,
 * started with the first fetch; requests and callbacks stay on the caller's loop and thread.
 */
#ifndef MTASTS_IO_FETCH_H
#define MTASTS_IO_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct fetch;
struct fetch_req;
struct certinfo;

enum fetch_status {
	FETCH_OK = 0,    /* a complete HTTP response arrived (any status code) */
	FETCH_TOO_LARGE, /* body (or Content-Length) over body_max: aborted while receiving */
	FETCH_TIMEOUT,   /* total deadline passed */
	FETCH_CONNECT,   /* could not connect to any address */
	FETCH_TLS,       /* TLS handshake or protocol failure (incl. version below 1.2) */
	FETCH_CERT,      /* certificate verification failed: chain, expiry or name */
	FETCH_TRUNCATED, /* connection closed before the body was complete */
	FETCH_ERROR,     /* anything else (curl's message in error) */
};

/* Valid only during the callback. */
struct fetch_result {
	enum fetch_status status;
	long http_status;         /* 0 if no response */
	const char *content_type; /* as sent, or NULL */
	const char *body;         /* NUL-terminated for convenience; body_len excludes the NUL */
	size_t body_len;
	const char *error;       /* human-readable detail when status != FETCH_OK, else "" */
	const char *remote_addr; /* address actually used, or "" */
	uint32_t elapsed_ms;     /* since fetch_start(), queueing included */
	/* Server certificate, when the handshake got that far ("" otherwise). */
	const char *cert_subject;
	const char *cert_issuer;
	const char *cert_not_after; /* as OpenSSL prints it, e.g. "Jan  1 00:00:00 2030 GMT" */
	int tls_version;            /* e.g. 0x0303 for TLS 1.2, 0 if unknown */
	/* With fetch_opts.cert_details, once chain verification ran: SAN, verification result,
	 * missing intermediate, cipher (io/certinfo.h). NULL otherwise. */
	const struct certinfo *cert;
};

struct fetch_opts {
	const char *ca_file; /* PEM bundle; NULL = the system default store */
	/* Total for connect + TLS + headers + body, from when the transfer leaves the queue. */
	unsigned timeout_ms;    /* 0 = 10000 */
	size_t body_max;        /* e.g. 65536; exactly body_max is accepted */
	const char *user_agent; /* NULL = "mtastsd/<version>" */
	unsigned max_parallel;  /* transfers running at once; the rest queue; 0 = 1 */
	/* Collect struct certinfo for each result (mtasts-check); off for the daemon, which
	 * needs only the subject, issuer and expiry it already gets. */
	bool cert_details;
};

typedef void (*fetch_cb)(void *arg, const struct fetch_result *res);

struct fetch *fetch_new(struct event_base *base, const struct fetch_opts *opts);
/*
 * Cancels every transfer without calling callbacks, then frees (before the event_base).
 * May be called from a fetch callback; no further callbacks run after it.
 */
void fetch_free(struct fetch *f);

/*
 * GET https://host:port/path, connecting only to addrs (numeric, tried in order); curl never
 * resolves host itself. SNI and certificate name are host. TLS >= 1.2, no redirects, no
 * proxies, no HTTP caching headers, no connection reuse across requests. The callback runs
 * exactly once from the event loop, never inside fetch_start(), unless cancelled.
 */
struct fetch_req *fetch_start(struct fetch *f, const char *host, unsigned port, const char *path,
                              const char *const *addrs, size_t naddrs, fetch_cb cb, void *arg);
void fetch_cancel(struct fetch_req *req);

const char *fetch_status_str(enum fetch_status st);

#endif
