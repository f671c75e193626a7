/* client.c: one request and its reply over mtastsd's unix control socket, under one deadline. */
#include "config.h"

#include "ctl/client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/strbuf.h"
#include "base/xmalloc.h"

/* Bytes read per call; also the slack in the buffer's limit, so one read never overflows it
 * before the decoder has seen a complete reply or refused an over-cap length. */
#define CLIENT_CHUNK (64 * 1024)

struct client {
	char *path;
	unsigned timeout_s;
	int64_t deadline_ms; /* CLOCK_MONOTONIC */
	int fd;
	struct strbuf in;
	struct strbuf why;
};

static int64_t
client_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
client_remaining_ms(const struct client *c)
{
	int64_t left = c->deadline_ms - client_now_ms();

	return left > 0 ? left : 0;
}

struct client *
client_new(const char *path, unsigned timeout_s)
{
	struct client *c = xcalloc(1, sizeof(*c));

	c->path = xstrdup(path);
	c->timeout_s = timeout_s;
	c->deadline_ms = client_now_ms() + (int64_t)timeout_s * 1000;
	c->fd = -1;
	strbuf_init(&c->in, REPLY_CAP_DEFAULT + REPLY_HEADER_MAX + CLIENT_CHUNK);
	strbuf_init(&c->why, 1024);
	return c;
}

void
client_free(struct client *c)
{
	if (c == NULL)
		return;
	if (c->fd != -1)
		close(c->fd);
	strbuf_release(&c->in);
	strbuf_release(&c->why);
	free(c->path);
	free(c);
}

int
client_connect(struct client *c)
{
	struct sockaddr_un sun;
	struct timeval tv;
	int64_t left = client_remaining_ms(c);
	size_t plen = strlen(c->path);
	int saved;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (plen >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun.sun_path, c->path, plen);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd == -1)
		return -1;
	/* A blocking connect(2) to a unix socket waits while the listen queue is full; the send
	 * timeout bounds that wait (zero would mean forever). */
	if (left == 0)
		left = 1;
	tv.tv_sec = (time_t)(left / 1000);
	tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
	    connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    fcntl(c->fd, F_SETFL, O_NONBLOCK) == -1)
		goto fail;
	return 0;
fail:
	saved = errno;
	close(c->fd);
	c->fd = -1;
	errno = saved;
	return -1;
}

/* Waits for events until the deadline: 1 ready (or hung up: the next call says how), 0 timed
 * out, -1 error. */
static int
client_wait(struct client *c, short events)
{
	struct pollfd pfd = { .fd = c->fd, .events = events };

	for (;;) {
		int64_t left = client_remaining_ms(c);
		int n;

		if (left == 0)
			return 0;
		n = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
		if (n == -1 && errno == EINTR)
			continue;
		return n;
	}
}

static enum client_status
client_fail(struct client *c, enum client_status st, const char *what, int err)
{
	if (st == CLIENT_TIMEOUT)
		strbuf_appendf(&c->why, "no complete reply within %u s (raise it with -t)",
		               c->timeout_s);
	else if (err != 0)
		strbuf_appendf(&c->why, "%s: %s", what, strerror(err));
	else
		strbuf_appends(&c->why, what);
	return st;
}

/* Sends the request. Returns 0 when it all went, or when the daemon hung up first (then *hung
 * is send(2)'s errno: what it already sent is still there to read); -1 with *st otherwise. */
static int
client_send(struct client *c, const char *line, size_t len, int *hung, enum client_status *st)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n;
		int w = client_wait(c, POLLOUT);

		if (w <= 0) {
			*st = client_fail(c, w == 0 ? CLIENT_TIMEOUT : CLIENT_IO, "poll", errno);
			return -1;
		}
		n = send(c->fd, line + off, len - off, MSG_NOSIGNAL);
		if (n >= 0) {
			off += (size_t)n;
		} else if (errno == EPIPE || errno == ECONNRESET) {
			*hung = errno;
			return 0;
		} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			*st = client_fail(c, CLIENT_IO, "send", errno);
			return -1;
		}
	}
	return 0;
}

/* The daemon is gone: say so, and how far the reply had come. */
static enum client_status
client_closed(struct client *c, int hung)
{
	if (c->in.len == 0)
		strbuf_appends(&c->why, "mtastsd closed the connection before replying");
	else
		strbuf_appendf(&c->why, "mtastsd closed the connection after %zu bytes of a reply",
		               c->in.len);
	if (hung != 0)
		strbuf_appendf(&c->why, " (send: %s)", strerror(hung));
	return CLIENT_CLOSED;
}

enum client_status
client_exchange(struct client *c, const char *line, size_t len, struct reply *reply)
{
	char chunk[CLIENT_CHUNK];
	enum client_status st;
	int hung = 0;

	strbuf_reset(&c->in);
	strbuf_reset(&c->why);
	if (client_send(c, line, len, &hung, &st) == -1)
		return st;
	for (;;) {
		enum reply_error err;
		ssize_t n;
		int w;

		switch (reply_decode(c->in.data, c->in.len, REPLY_CAP_DEFAULT, reply, &err)) {
		case REPLY_COMPLETE:
			return CLIENT_REPLY;
		case REPLY_ERROR:
			return client_fail(c, CLIENT_MALFORMED, reply_error_str(err), 0);
		case REPLY_NEED_MORE:
			break;
		}
		w = client_wait(c, POLLIN);
		if (w <= 0)
			return client_fail(c, w == 0 ? CLIENT_TIMEOUT : CLIENT_IO, "poll", errno);
		n = read(c->fd, chunk, sizeof(chunk));
		if (n == 0 || (n == -1 && errno == ECONNRESET))
			return client_closed(c, hung);
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				continue;
			return client_fail(c, CLIENT_IO, "read", errno);
		}
		if (strbuf_append(&c->in, chunk, (size_t)n) == -1)
			return client_fail(c, CLIENT_MALFORMED, "reply over the size limit", 0);
	}
}

const char *
client_error(const struct client *c)
{
	return c->why.data != NULL ? c->why.data : "";
}

const char *
client_received(const struct client *c, size_t *len)
{
	*len = c->in.len;
	return c->in.data != NULL ? c->in.data : "";
}
