/* server.c: the daemon's listeners and client connections, with limits and graceful drain. */
#include "config.h"

#include "daemon/server.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
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

int
server_listen(struct server *s, const struct server_listen *spec, char *err, size_t errlen)
{
	struct server_listener *sl = xcalloc(1, sizeof(*sl));

	sl->srv = s;
	sl->proto = spec->proto;
	sl->map = spec->map != NULL ? xstrdup(spec->map) : NULL;
	sl->l = listener_new(s->base, spec->host, spec->port, spec->path, spec->mode,
	                     server_on_accept, sl, err, errlen);
	if (sl->l == NULL) {
		free(sl->map);
		free(sl);
		return -1;
	}
	sl->next = s->listeners;
	s->listeners = sl;
	s->stats.listeners++;
	log_info("server listening on %s protocol=%s%s%s", listener_name(sl->l),
	         spec->proto == CONN_SOCKETMAP ? "socketmap" : "tcp_table",
	         sl->map != NULL ? " map=" : "", sl->map != NULL ? sl->map : "");
	return 0;
}

void
server_start(struct server *s)
{
	for (struct server_listener *sl = s->listeners; sl != NULL; sl = sl->next)
		listener_resume(sl->l);
}

static void
server_close_listeners(struct server *s)
{
	struct server_listener *sl;

	while ((sl = s->listeners) != NULL) {
		s->listeners = sl->next;
		listener_free(sl->l);
		free(sl->map);
		free(sl);
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
