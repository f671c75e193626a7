/* listener.c: a bound, listening TCP or unix socket that hands accepted fds upward. */
#include "config.h"

#include "io/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "io/conn.h"

/* Accepts per readiness event, so one busy listener cannot starve the others. */
#define LISTENER_ACCEPT_BATCH 32

struct listener {
	int fd;
	bool is_unix;
	bool active;
	char name[128];
	char *path; /* unix socket file to remove on free */
	struct event *ev;
	listener_cb cb;
	void *arg;
};

/*
 * An address as configuration and logs write it: "127.0.0.1:8461", "[::1]:8461",
 * "unix:/path"; "unix" for an unnamed unix socket (an accepted Postfix client).
 */
static void
listener_addr_text(const struct sockaddr_storage *ss, socklen_t sslen, char *out, size_t outlen)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(out, outlen, "%s:%u", ip, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(out, outlen, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else if (ss->ss_family == AF_UNIX && sslen > offsetof(struct sockaddr_un, sun_path) &&
	           ((const struct sockaddr_un *)ss)->sun_path[0] != '\0') {
		const struct sockaddr_un *un = (const struct sockaddr_un *)ss;

		snprintf(out, outlen, "unix:%.*s",
		         (int)(sslen - offsetof(struct sockaddr_un, sun_path)), un->sun_path);
	} else {
		snprintf(out, outlen, "unix");
	}
}

bool
listener_fd_name(int fd, char *out, size_t outlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);

	out[0] = '\0';
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == -1)
		return false;
	listener_addr_text(&ss, sslen, out, outlen);
	return true;
}

static void
listener_on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct listener *l = arg;

	for (int i = 0; i < LISTENER_ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t sslen = sizeof(ss);
		char peer[64];
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE)
				log_warnx("listener %s result=limit reason=\"out of file "
				          "descriptors\"",
				          l->name);
			else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			         errno != ECONNABORTED)
				log_warn("listener %s accept", l->name);
			return;
		}
		if (!l->is_unix) {
			int one = 1;

			/* Replies are single small writes; Nagle would only add latency. */
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		}
		listener_addr_text(&ss, sslen, peer, sizeof(peer));
		l->cb(l->arg, fd, peer);
	}
}

static struct listener *
listener_wrap(struct event_base *base, int fd, const char *name, listener_cb cb, void *arg)
{
	struct listener *l = xcalloc(1, sizeof(*l));

	l->fd = fd;
	l->cb = cb;
	l->arg = arg;
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->ev = event_new(base, fd, EV_READ | EV_PERSIST, listener_on_accept, l);
	if (l->ev == NULL)
		fatalx("listener: cannot allocate event");
	event_priority_set(l->ev, CONN_PRIORITY);
	return l;
}

struct listener *
listener_new(struct event_base *base, const char *host, unsigned port, const char *path,
             mode_t mode, listener_cb cb, void *arg, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	char name[128];
	int fd, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (path != NULL) {
		struct sockaddr_un *un = (struct sockaddr_un *)&ss;

		if (strlen(path) >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "unix socket path %s is longer than %zu bytes", path,
			         sizeof(un->sun_path) - 1);
			return NULL;
		}
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, path, strlen(path) + 1);
		sslen = sizeof(*un);
		snprintf(name, sizeof(name), "unix:%s", path);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
			in->sin_family = AF_INET;
			in->sin_port = htons((uint16_t)port);
			sslen = sizeof(*in);
			snprintf(name, sizeof(name), "%s:%u", host, port);
		} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
			in6->sin6_family = AF_INET6;
			in6->sin6_port = htons((uint16_t)port);
			sslen = sizeof(*in6);
			snprintf(name, sizeof(name), "[%s]:%u", host, port);
		} else {
			snprintf(err, errlen, "%s is not a numeric IPv4 or IPv6 address", host);
			return NULL;
		}
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "%s: socket: %s", name, strerror(errno));
		return NULL;
	}
	if (path != NULL) {
		struct stat st;

		/* Replace a socket left by an earlier run, never a regular file. */
		if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(path);
	} else {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (bind(fd, (struct sockaddr *)&ss, sslen) == -1) {
		snprintf(err, errlen, "%s: bind: %s", name, strerror(errno));
		close(fd);
		return NULL;
	}
	if (path != NULL && chmod(path, mode) == -1) {
		snprintf(err, errlen, "%s: chmod %04o: %s", name, (unsigned)mode, strerror(errno));
		unlink(path);
		close(fd);
		return NULL;
	}
	if (listen(fd, SOMAXCONN) == -1) {
		snprintf(err, errlen, "%s: listen: %s", name, strerror(errno));
		if (path != NULL)
			unlink(path);
		close(fd);
		return NULL;
	}
	struct listener *l = listener_wrap(base, fd, name, cb, arg);

	l->is_unix = path != NULL;
	if (path != NULL)
		l->path = xstrdup(path);
	return l;
}

struct listener *
listener_adopt(struct event_base *base, int fd, const char *name, listener_cb cb, void *arg)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	struct listener *l;
	int flags = fcntl(fd, F_GETFL);

	if (flags != -1)
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	l = listener_wrap(base, fd, name, cb, arg);
	l->is_unix =
	        getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0 && ss.ss_family == AF_UNIX;
	return l;
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	event_free(l->ev);
	close(l->fd);
	if (l->path != NULL) {
		unlink(l->path);
		free(l->path);
	}
	free(l);
}

void
listener_pause(struct listener *l)
{
	if (l->active) {
		event_del(l->ev);
		l->active = false;
	}
}

void
listener_resume(struct listener *l)
{
	if (!l->active) {
		event_add(l->ev, NULL);
		l->active = true;
	}
}

const char *
listener_name(const struct listener *l)
{
	return l->name;
}
