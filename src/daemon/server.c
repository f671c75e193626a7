/* server.c: the daemon's listeners and client connections, with limits and graceful drain. */
#include "config.h"

#include "daemon/server.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "daemon/lookup.h"
#include "io/listener.h"

/* Per-IP connection counts: a small chained hash, only TCP peers are counted. */
#define IPCOUNT_BUCKETS 256

struct ipcount {
	struct ipcount *next;
	unsigned n;
	char ip[48];
};

struct server_conn {
	struct server *srv;
	struct conn *conn;
	struct server_conn *prev;
	struct server_conn *next;
	struct ipcount *ipc;
};

struct server_listener {
	struct server *srv;
	struct listener *l;
	enum conn_proto proto;
	char *name;
	char *path; /* unix sockets, for chmod on reload */
	mode_t mode;
	char *map;
	struct server_listener *next;
};

struct server {
	struct event_base *base;
	struct server_opts opts;
	struct lookup *lk;
	struct server_listener *listeners;
	struct server_conn *conns;
	struct ipcount *ips[IPCOUNT_BUCKETS];
	struct server_stats stats;
	time_t last_limit_log;
	bool draining;
	bool started;
	void (*drained)(void *arg);
	void *drained_arg;
};

static struct ipcount **
ipcount_slot(struct server *s, const char *ip)
{
	unsigned h = 5381;

	for (const char *p = ip; *p != '\0'; p++)
		h = h * 33 + (unsigned char)*p;
	struct ipcount **pp = &s->ips[h % IPCOUNT_BUCKETS];

	while (*pp != NULL && strcmp((*pp)->ip, ip) != 0)
		pp = &(*pp)->next;
	return pp;
}

static void
ipcount_release(struct server *s, struct ipcount *ipc)
{
	if (ipc == NULL || --ipc->n > 0)
		return;
	struct ipcount **pp = ipcount_slot(s, ipc->ip);

	*pp = ipc->next;
	free(ipc);
}

/* Limit lines at most once a second, so a connection flood cannot flood the log. */
static void
server_log_limit(struct server *s, const char *what, const char *peer)
{
	time_t now = time(NULL);

	if (now == s->last_limit_log)
		return;
	s->last_limit_log = now;
	log_warnx("server result=limit limit=%s peer=%s connections=%zu; refusing connections",
	          what, peer, s->stats.connections);
}

static void
server_on_closed(void *arg, struct conn *c)
{
	struct server_conn *sc = arg;
	struct server *s = sc->srv;

	if (sc->prev != NULL)
		sc->prev->next = sc->next;
	else
		s->conns = sc->next;
	if (sc->next != NULL)
		sc->next->prev = sc->prev;
	ipcount_release(s, sc->ipc);
	s->stats.connections--;
	free(sc);
	if (s->draining && s->conns == NULL && s->drained != NULL) {
		void (*done)(void *) = s->drained;

		s->drained = NULL;
		done(s->drained_arg);
	}
}

/* conn_handler forwards to lookup; the closed hook carries our per-connection record. */
static void
server_on_request(void *arg, struct conn_req *req, const char *name, size_t name_len,
                  const char *key, size_t key_len)
{
	struct server_conn *sc = arg;

	lookup_request(sc->srv->lk, req, name, name_len, key, key_len);
}

static void
server_on_cancel(void *arg, struct conn_req *req)
{
	struct server_conn *sc = arg;

	lookup_cancel(sc->srv->lk, req);
}

static void
server_on_accept(void *arg, int fd, const char *peer)
{
	struct server_listener *sl = arg;
	struct server *s = sl->srv;
	struct ipcount *ipc = NULL;

	if (s->draining) {
		close(fd);
		return;
	}
	if (s->stats.connections >= s->opts.max_connections) {
		s->stats.refused_total++;
		server_log_limit(s, "max_connections", peer);
		close(fd);
		return;
	}
	if (strcmp(peer, "unix") != 0) {
		char ip[48];
		const char *colon = strrchr(peer, ':');
		size_t n = colon != NULL ? (size_t)(colon - peer) : strlen(peer);

		if (n >= sizeof(ip))
			n = sizeof(ip) - 1;
		memcpy(ip, peer, n);
		ip[n] = '\0';
		struct ipcount **pp = ipcount_slot(s, ip);

		if (*pp != NULL && (*pp)->n >= s->opts.max_connections_per_ip) {
			s->stats.refused_per_ip++;
			server_log_limit(s, "max_connections_per_ip", peer);
			close(fd);
			return;
		}
		if (*pp == NULL) {
			*pp = xcalloc(1, sizeof(**pp));
			memcpy((*pp)->ip, ip, n + 1);
		}
		ipc = *pp;
		ipc->n++;
	}

	struct server_conn *sc = xcalloc(1, sizeof(*sc));
	struct conn_handler h = {
		.request = server_on_request,
		.cancel = server_on_cancel,
		.closed = server_on_closed,
		.arg = sc,
	};
	struct conn_opts co = {
		.request_max = s->opts.request_max,
		.idle_timeout_s = s->opts.idle_timeout_s,
		.max_pending = s->opts.max_pending,
		.tcptable_map = sl->map,
	};

	sc->srv = s;
	sc->ipc = ipc;
	sc->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = sc;
	s->conns = sc;
	s->stats.connections++;
	s->stats.accepted++;
	sc->conn = conn_new(s->base, fd, sl->proto, peer, &co, &h);
}

struct server *
server_new(struct event_base *base, const struct server_opts *opts, struct lookup *lk)
{
	struct server *s = xcalloc(1, sizeof(*s));

	s->base = base;
	s->opts = *opts;
	s->lk = lk;
	return s;
}

static void
server_listener_free(struct server_listener *sl)
{
	listener_free(sl->l);
	free(sl->name);
	free(sl->path);
	free(sl->map);
	free(sl);
}

/* Binds spec's address, or wraps fd when it is not -1 (an inherited listening socket). */
static struct server_listener *
server_listener_new(struct server *s, const struct server_listen *spec, int fd, char *err,
                    size_t errlen)
{
	struct server_listener *sl = xcalloc(1, sizeof(*sl));

	sl->srv = s;
	sl->proto = spec->proto;
	sl->mode = spec->mode;
	sl->map = spec->map != NULL ? xstrdup(spec->map) : NULL;
	sl->l = fd != -1 ? listener_adopt(s->base, fd, spec->name, server_on_accept, sl)
	                 : listener_new(s->base, spec->host, spec->port, spec->path, spec->mode,
	                                server_on_accept, sl, err, errlen);
	if (sl->l == NULL) {
		free(sl->map);
		free(sl);
		return NULL;
	}
	sl->name = xstrdup(spec->name != NULL ? spec->name : listener_name(sl->l));
	sl->path = spec->path != NULL ? xstrdup(spec->path) : NULL;
	log_info("server listening on %s protocol=%s%s%s", listener_name(sl->l),
	         spec->proto == CONN_SOCKETMAP ? "socketmap" : "tcp_table",
	         sl->map != NULL ? " map=" : "", sl->map != NULL ? sl->map : "");
	return sl;
}

static void
server_add_listener(struct server *s, struct server_listener *sl)
{
	sl->next = s->listeners;
	s->listeners = sl;
	s->stats.listeners++;
	if (s->started)
		listener_resume(sl->l);
}

void
server_adopt(struct server *s, const struct server_listen *spec, int fd)
{
	server_add_listener(s, server_listener_new(s, spec, fd, NULL, 0));
}

int
server_listen(struct server *s, const struct server_listen *spec, char *err, size_t errlen)
{
	struct server_listener *sl = server_listener_new(s, spec, -1, err, errlen);

	if (sl == NULL)
		return -1;
	server_add_listener(s, sl);
	return 0;
}

static const struct server_listen *
server_find_spec(const struct server_listen *specs, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(specs[i].name, name) == 0)
			return &specs[i];
	return NULL;
}

static struct server_listener *
server_find_listener(const struct server *s, const char *name)
{
	for (struct server_listener *sl = s->listeners; sl != NULL; sl = sl->next)
		if (strcmp(sl->name, name) == 0)
			return sl;
	return NULL;
}

int
server_apply(struct server *s, const struct server_listen *specs, size_t n, char *err,
             size_t errlen)
{
	struct server_listener *added = NULL, *sl, **pp;

	for (size_t i = 0; i < n; i++) {
		if (server_find_listener(s, specs[i].name) != NULL)
			continue;
		sl = server_listener_new(s, &specs[i], -1, err, errlen);
		if (sl == NULL) {
			while ((sl = added) != NULL) {
				added = sl->next;
				server_listener_free(sl);
			}
			return -1;
		}
		sl->next = added;
		added = sl;
	}
	for (pp = &s->listeners; (sl = *pp) != NULL;) {
		const struct server_listen *spec = server_find_spec(specs, n, sl->name);

		if (spec == NULL) {
			log_info("server closed listener %s (no longer configured)", sl->name);
			*pp = sl->next;
			server_listener_free(sl);
			s->stats.listeners--;
			continue;
		}
		sl->proto = spec->proto;
		free(sl->map);
		sl->map = spec->map != NULL ? xstrdup(spec->map) : NULL;
		if (sl->path != NULL && sl->mode != spec->mode && chmod(sl->path, spec->mode) == 0)
			sl->mode = spec->mode;
		pp = &sl->next;
	}
	while ((sl = added) != NULL) {
		added = sl->next;
		sl->next = s->listeners;
		s->listeners = sl;
		s->stats.listeners++;
		if (s->started)
			listener_resume(sl->l);
	}
	return 0;
}

void
server_set_opts(struct server *s, const struct server_opts *opts)
{
	s->opts = *opts;
}

void
server_foreach_listener(const struct server *s,
                        void (*fn)(void *arg, const char *name, enum conn_proto proto,
                                   const char *map),
                        void *arg)
{
	for (const struct server_listener *sl = s->listeners; sl != NULL; sl = sl->next)
		fn(arg, sl->name, sl->proto, sl->map);
}

void
server_start(struct server *s)
{
	s->started = true;
	for (struct server_listener *sl = s->listeners; sl != NULL; sl = sl->next)
		listener_resume(sl->l);
}

static void
server_close_listeners(struct server *s)
{
	struct server_listener *sl;

	while ((sl = s->listeners) != NULL) {
		s->listeners = sl->next;
		server_listener_free(sl);
	}
	s->stats.listeners = 0;
}

void
server_drain(struct server *s, void (*done)(void *arg), void *arg)
{
	s->draining = true;
	server_close_listeners(s);
	if (s->conns == NULL) {
		done(arg);
		return;
	}
	s->drained = done;
	s->drained_arg = arg;
	for (struct server_conn *sc = s->conns, *next; sc != NULL; sc = next) {
		next = sc->next;
		conn_drain(sc->conn);
	}
}

void
server_free(struct server *s)
{
	if (s == NULL)
		return;
	s->drained = NULL;
	server_close_listeners(s);
	while (s->conns != NULL)
		conn_close(s->conns->conn);
	free(s);
}

void
server_get_stats(const struct server *s, struct server_stats *st)
{
	*st = s->stats;
}
