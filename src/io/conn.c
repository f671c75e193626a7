/* conn.c: one Postfix client connection: framing, pipelined requests, in-order replies. */
#include "config.h"

#include "io/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/log.h"
#include "base/strbuf.h"
#include "base/xmalloc.h"
#include "proto/netstring.h"
#include "proto/socketmap.h"
#include "proto/tcptable.h"

struct conn_req {
	struct conn *conn;
	struct conn_req *next;
	void *udata;
	bool done;
	struct strbuf reply; /* only used when answered while an earlier request is pending */
};

struct conn {
	struct event_base *base;
	int fd;
	enum conn_proto proto;
	char peer[64];
	struct conn_handler h;
	size_t request_max;
	unsigned max_pending;
	struct timeval idle;
	time_t last_read; /* loop time of the last input; the idle timer checks it lazily */
	char *tcptable_map;

	struct event *ev_read;
	struct event *ev_write;
	struct event *ev_idle;
	struct event *ev_close; /* destruction deferred out of callers' stacks */

	char *in;
	size_t in_len;
	size_t in_cap;
	char *key; /* decoded tcp_table key */

	struct strbuf out;
	size_t out_off;

	struct conn_req *head;
	struct conn_req *tail;
	size_t npending;
	struct conn_req *spare; /* free list: Postfix keeps one request in flight per conn */

	unsigned busy; /* > 0 while dispatching: destruction waits */
	bool dead;
	bool draining;
	bool reading;
};

static void conn_destroy(struct conn *c);
static void conn_flush(struct conn *c);

static void
conn_kill(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	event_del(c->ev_read);
	event_del(c->ev_write);
	event_active(c->ev_close, 0, 0);
}

static void
conn_set_reading(struct conn *c, bool on)
{
	if (on == c->reading || c->dead)
		return;
	c->reading = on;
	if (on)
		event_add(c->ev_read, NULL);
	else
		event_del(c->ev_read);
}

static struct conn_req *
conn_req_alloc(struct conn *c)
{
	struct conn_req *r = c->spare;

	if (r != NULL)
		c->spare = r->next;
	else
		r = xmalloc(sizeof(*r));
	r->conn = c;
	r->next = NULL;
	r->udata = NULL;
	r->done = false;
	strbuf_init(&r->reply, SOCKETMAP_REPLY_MAX + NETSTRING_LEN_DIGITS_MAX + 2);
	if (c->tail != NULL)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	c->npending++;
	return r;
}

static void
conn_req_release(struct conn *c, struct conn_req *r)
{
	strbuf_release(&r->reply);
	r->next = c->spare;
	c->spare = r;
}

/* Formats one reply in the connection's protocol; falls back to TEMP if it cannot fit. */
static void
conn_format(struct conn *c, struct strbuf *sb, enum conn_reply kind, const char *data, size_t len)
{
	static const char too_long[] = "reply too long";
	static const enum socketmap_status sm[] = {
		[CONN_REPLY_OK] = SOCKETMAP_OK,
		[CONN_REPLY_NOTFOUND] = SOCKETMAP_NOTFOUND,
		[CONN_REPLY_TEMP] = SOCKETMAP_TEMP,
		[CONN_REPLY_PERM] = SOCKETMAP_PERM,
	};
	static const enum tcptable_code tc[] = {
		[CONN_REPLY_OK] = TCPTABLE_CODE_OK,
		[CONN_REPLY_NOTFOUND] = TCPTABLE_CODE_NOTFOUND,
		[CONN_REPLY_TEMP] = TCPTABLE_CODE_ERROR,
		[CONN_REPLY_PERM] = TCPTABLE_CODE_ERROR,
	};
	int rc;

	if (c->proto == CONN_SOCKETMAP) {
		if (kind == CONN_REPLY_NOTFOUND)
			data = NULL, len = 0;
		rc = socketmap_format_reply(sb, sm[kind], data, len);
		if (rc == -1) {
			log_warnx("conn peer=%s reply of %zu bytes too long; answering TEMP",
			          c->peer, len);
			socketmap_format_reply(sb, SOCKETMAP_TEMP, too_long, sizeof(too_long) - 1);
		}
	} else {
		if (kind == CONN_REPLY_NOTFOUND && len == 0)
			data = "not found", len = 9;
		rc = tcptable_format_reply(sb, tc[kind], data, len);
		if (rc == -1) {
			log_warnx("conn peer=%s reply of %zu bytes too long; answering 400",
			          c->peer, len);
			tcptable_format_reply(sb, TCPTABLE_CODE_ERROR, too_long,
			                      sizeof(too_long) - 1);
		}
	}
}

void
conn_reply(struct conn_req *r, enum conn_reply kind, const char *data, size_t len)
{
	struct conn *c = r->conn;

	if (r != c->head) {
		/* An earlier request is still pending: park the reply to keep the order. */
		conn_format(c, &r->reply, kind, data, len);
		r->done = true;
		return;
	}
	conn_format(c, &c->out, kind, data, len);
	c->head = r->next;
	c->npending--;
	conn_req_release(c, r);
	while (c->head != NULL && c->head->done) {
		r = c->head;
		if (strbuf_append(&c->out, r->reply.data, r->reply.len) == -1)
			fatalx("conn peer=%s output buffer overflow", c->peer);
		c->head = r->next;
		c->npending--;
		conn_req_release(c, r);
	}
	if (c->head == NULL)
		c->tail = NULL;
	if (c->busy == 0)
		conn_flush(c);
}

static void
conn_flush(struct conn *c)
{
	if (c->dead)
		return;
	while (c->out_off < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
		                 MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				event_add(c->ev_write, NULL);
				return;
			}
			log_debug("conn peer=%s write failed: %s", c->peer, strerror(errno));
			conn_kill(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	strbuf_reset(&c->out);
	c->out_off = 0;
	if (c->draining && c->npending == 0) {
		conn_kill(c);
		return;
	}
	/* Replies went out: reading may resume if pipelining had paused it. */
	if (!c->draining && c->npending < c->max_pending)
		conn_set_reading(c, true);
}

static void
conn_dispatch(struct conn *c, const char *name, size_t name_len, const char *key, size_t key_len)
{
	struct conn_req *r = conn_req_alloc(c);

	c->h.request(c->h.arg, r, name, name_len, key, key_len);
}

/* Decodes one frame at in[off..); returns bytes consumed, 0 for need-more, -1 to close. */
static ssize_t
conn_decode_one(struct conn *c, size_t off)
{
	const char *buf = c->in + off;
	size_t len = c->in_len - off, consumed = 0;

	if (c->proto == CONN_SOCKETMAP) {
		enum netstring_error err;
		const char *payload;
		size_t plen;
		struct socketmap_request req;

		switch (netstring_decode(buf, len, c->request_max, &payload, &plen, &consumed,
		                         &err)) {
		case NETSTRING_NEED_MORE:
			return 0;
		case NETSTRING_ERROR:
			log_warnx("conn peer=%s result=framing-error reason=\"%s\"; closing",
			          c->peer, netstring_error_str(err));
			return -1;
		case NETSTRING_FRAME:
			break;
		}
		if (socketmap_parse_request(payload, plen, &req) == -1) {
			static const char msg[] = "malformed request: expected \"name key\"";
			struct conn_req *r = conn_req_alloc(c);

			log_info("conn peer=%s result=perm reason=\"request without a space\"",
			         c->peer);
			conn_reply(r, CONN_REPLY_PERM, msg, sizeof(msg) - 1);
		} else {
			conn_dispatch(c, req.name, req.name_len, req.key, req.key_len);
		}
		return (ssize_t)consumed;
	}

	enum tcptable_error err;
	size_t klen;

	switch (tcptable_decode(buf, len, c->key, TCPTABLE_LINE_MAX, &klen, &consumed, &err)) {
	case TCPTABLE_NEED_MORE:
		return 0;
	case TCPTABLE_ERROR:
		log_warnx("conn peer=%s result=framing-error reason=\"%s\"; closing", c->peer,
		          tcptable_error_str(err));
		return -1;
	case TCPTABLE_BAD: {
		struct conn_req *r = conn_req_alloc(c);
		const char *why = tcptable_error_str(err);

		log_info("conn peer=%s result=perm reason=\"%s\"", c->peer, why);
		conn_reply(r, CONN_REPLY_PERM, why, strlen(why));
		return (ssize_t)consumed;
	}
	case TCPTABLE_REQUEST:
		conn_dispatch(c, c->tcptable_map, strlen(c->tcptable_map), c->key, klen);
		return (ssize_t)consumed;
	}
	return -1;
}

static void
conn_process(struct conn *c)
{
	size_t off = 0;

	c->busy++;
	while (!c->dead && !c->draining && c->npending < c->max_pending && off < c->in_len) {
		ssize_t n = conn_decode_one(c, off);

		if (n < 0) {
			conn_kill(c);
			break;
		}
		if (n == 0) {
			if (c->in_len == c->in_cap) {
				/* Cannot happen with the caps above; closing beats spinning. */
				log_warnx("conn peer=%s result=framing-error reason=\"input full\"",
				          c->peer);
				conn_kill(c);
			}
			break;
		}
		off += (size_t)n;
	}
	if (off > 0) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
	c->busy--;
	if (c->dead)
		return;
	conn_flush(c);
	if (c->npending >= c->max_pending)
		conn_set_reading(c, false);
}

/* The loop's cached clock: no system call per request. */
static time_t
conn_now(struct conn *c)
{
	struct timeval tv;

	event_base_gettimeofday_cached(c->base, &tv);
	return tv.tv_sec;
}

static void
conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	ssize_t n;

	n = recv(fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
	if (n == 0) {
		log_debug("conn peer=%s closed by client", c->peer);
		conn_kill(c);
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			log_debug("conn peer=%s read failed: %s", c->peer, strerror(errno));
			conn_kill(c);
		}
		return;
	}
	c->in_len += (size_t)n;
	c->last_read = conn_now(c);
	conn_process(c);
}

static void
conn_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	conn_flush(c);
	/* Input left over when pipelining paused reading can now be served. */
	if (!c->dead && c->in_len > 0 && c->npending < c->max_pending)
		conn_process(c);
}

static void
conn_on_idle(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	time_t idle_for = conn_now(c) - c->last_read;

	/* Re-armed here rather than on every read: a timer per request costs a heap update. */
	if (c->npending > 0 || idle_for < c->idle.tv_sec) {
		struct timeval rest = { c->npending > 0 ? c->idle.tv_sec
			                                : c->idle.tv_sec - idle_for,
			                0 };

		event_add(c->ev_idle, &rest);
		return;
	}
	log_debug("conn peer=%s idle timeout; closing", c->peer);
	conn_kill(c);
}

static void
conn_on_close(evutil_socket_t fd, short what, void *arg)
{
	conn_destroy(arg);
}

struct conn *
conn_new(struct event_base *base, int fd, enum conn_proto proto, const char *peer,
         const struct conn_opts *opts, const struct conn_handler *h)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	int flags = fcntl(fd, F_GETFL);

	if (flags != -1)
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	c->base = base;
	c->fd = fd;
	c->proto = proto;
	strbuf_init(&c->out, (size_t)(opts->max_pending + 1) *
	                             (SOCKETMAP_REPLY_MAX + NETSTRING_LEN_DIGITS_MAX + 2));
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->h = *h;
	c->request_max = opts->request_max;
	c->max_pending = opts->max_pending > 0 ? opts->max_pending : 1;
	c->idle.tv_sec = opts->idle_timeout_s;
	if (proto == CONN_SOCKETMAP) {
		c->in_cap = opts->request_max + NETSTRING_LEN_DIGITS_MAX + 2;
	} else {
		c->in_cap = TCPTABLE_LINE_MAX;
		c->key = xmalloc(TCPTABLE_LINE_MAX);
		c->tcptable_map = xstrdup(opts->tcptable_map != NULL ? opts->tcptable_map : "");
	}
	c->in = xmalloc(c->in_cap);
	c->ev_read = event_new(base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
	c->ev_write = event_new(base, fd, EV_WRITE, conn_on_write, c);
	c->ev_idle = evtimer_new(base, conn_on_idle, c);
	c->ev_close = event_new(base, -1, 0, conn_on_close, c);
	if (c->ev_read == NULL || c->ev_write == NULL || c->ev_idle == NULL || c->ev_close == NULL)
		fatalx("conn: cannot allocate events");
	/* Postfix's requests come before DNS and HTTPS work (CONN_PRIORITY in conn.h). */
	event_priority_set(c->ev_read, CONN_PRIORITY);
	event_priority_set(c->ev_write, CONN_PRIORITY);
	event_priority_set(c->ev_idle, CONN_PRIORITY);
	event_priority_set(c->ev_close, CONN_PRIORITY);
	conn_set_reading(c, true);
	c->last_read = conn_now(c);
	event_add(c->ev_idle, &c->idle);
	return c;
}

static void
conn_destroy(struct conn *c)
{
	struct conn_req *r;

	while ((r = c->head) != NULL) {
		c->head = r->next;
		if (!r->done)
			c->h.cancel(c->h.arg, r);
		strbuf_release(&r->reply);
		free(r);
	}
	while ((r = c->spare) != NULL) {
		c->spare = r->next;
		free(r);
	}
	event_free(c->ev_read);
	event_free(c->ev_write);
	event_free(c->ev_idle);
	event_free(c->ev_close);
	close(c->fd);
	if (c->h.closed != NULL)
		c->h.closed(c->h.arg, c);
	strbuf_release(&c->out);
	free(c->in);
	free(c->key);
	free(c->tcptable_map);
	free(c);
}

void
conn_req_set_udata(struct conn_req *req, void *udata)
{
	req->udata = udata;
}

void *
conn_req_get_udata(const struct conn_req *req)
{
	return req->udata;
}

void
conn_drain(struct conn *c)
{
	c->draining = true;
	conn_set_reading(c, false);
	if (c->npending == 0 && c->out_off >= c->out.len)
		conn_kill(c);
}

void
conn_close(struct conn *c)
{
	if (c->busy > 0) {
		conn_kill(c);
		return;
	}
	c->dead = true;
	conn_destroy(c);
}

const char *
conn_peer(const struct conn *c)
{
	return c->peer;
}

size_t
conn_pending(const struct conn *c)
{
	return c->npending;
}
