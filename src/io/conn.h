/* conn.h: one Postfix client connection: framing, pipelined requests, in-order replies. */
#ifndef MTASTS_IO_CONN_H
#define MTASTS_IO_CONN_H

#include <stddef.h>

struct event_base;
struct conn;

/*
 * libevent priority of every connection and listener event: the highest. A daemon that
 * creates its base with two priorities and a dispatch limit on the lower one (see
 * src/daemon/main.c) answers cached lookups between any two DNS or TLS callbacks, so a stream
 * of new domains cannot stall them.
 */
#define CONN_PRIORITY 0
struct conn_req;

enum conn_proto {
	CONN_SOCKETMAP, /* netstring-framed "name key" requests (PFX-1) */
	CONN_TCPTABLE,  /* "get key" LF requests; the listener supplies the map name */
};

enum conn_reply {
	CONN_REPLY_OK,
	CONN_REPLY_NOTFOUND,
	CONN_REPLY_TEMP,
	CONN_REPLY_PERM,
};

/*
 * The upper layer's callbacks. request() runs once per complete request; name and key point
 * into the connection's input buffer and are valid only during the call. The upper layer
 * answers with conn_reply(), during the call or later; until then req stays valid. If the
 * connection closes first, cancel() runs for each unanswered request, after which req is gone.
 */
struct conn_handler {
	void (*request)(void *arg, struct conn_req *req, const char *name, size_t name_len,
	                const char *key, size_t key_len);
	void (*cancel)(void *arg, struct conn_req *req);
	/* Runs once when the connection is gone (after any cancels), for accounting. */
	void (*closed)(void *arg, struct conn *c);
	void *arg;
};

struct conn_opts {
	size_t request_max;       /* netstring payload cap (NETSTRING_CAP_MIN..) */
	unsigned idle_timeout_s;  /* close after this long with no request and none pending */
	unsigned max_pending;     /* pipelined requests in flight before reading pauses */
	const char *tcptable_map; /* map name given to request() for tcp_table connections */
};

/* Takes ownership of fd (non-blocking is set here). peer is for log lines ("1.2.3.4:5"). */
struct conn *conn_new(struct event_base *base, int fd, enum conn_proto proto, const char *peer,
                      const struct conn_opts *opts, const struct conn_handler *h);

/*
 * Answers req. Replies leave in request order whatever order they are given in. data is
 * copied. A reply too long for the protocol (100000 bytes socketmap, a 4096-byte line for
 * tcp_table) is replaced by TEMP so Postfix retries rather than acting on a cut answer.
 */
void conn_reply(struct conn_req *req, enum conn_reply kind, const char *data, size_t len);

/* Per-request slot for the upper layer (e.g. its wait handle for cancel). */
void conn_req_set_udata(struct conn_req *req, void *udata);
void *conn_req_get_udata(const struct conn_req *req);

/* Stops reading; closes once every pending reply is written (shutdown), or now if none. */
void conn_drain(struct conn *c);
/* Closes now, cancelling pending requests. */
void conn_close(struct conn *c);

const char *conn_peer(const struct conn *c);
size_t conn_pending(const struct conn *c);

#endif
