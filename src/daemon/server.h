/* server.h: the daemon's listeners and client connections, with limits and graceful drain. */
#ifndef MTASTS_DAEMON_SERVER_H
#define MTASTS_DAEMON_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "io/conn.h"

struct event_base;
struct lookup;
struct server;

struct server_listen {
	const char *name; /* canonical address text; identifies the listener across reloads */
	enum conn_proto proto;
	const char *host; /* numeric, for TCP */
	unsigned port;
	const char *path; /* unix socket, or NULL */
	mode_t mode;
	const char *map; /* tcp_table only */
};

struct server_opts {
	size_t request_max;
	unsigned idle_timeout_s;
	unsigned max_pending;
	unsigned max_connections;
	unsigned max_connections_per_ip;
};

struct server *server_new(struct event_base *base, const struct server_opts *opts,
                          struct lookup *lk);
/* Binds one listener (paused until server_start); -1 with a message in err on failure. */
int server_listen(struct server *s, const struct server_listen *spec, char *err, size_t errlen);
/* Like server_listen, for a socket already listening (systemd socket activation). */
void server_adopt(struct server *s, const struct server_listen *spec, int fd);
void server_start(struct server *s);
/*
 * Reload: makes the listeners exactly specs. New addresses are bound first; if one fails,
 * nothing changes and -1 returns with the reason in err. Then listeners no longer wanted
 * close, and the rest take their new protocol, map and mode. Open connections stay.
 */
int server_apply(struct server *s, const struct server_listen *specs, size_t n, char *err,
                 size_t errlen);
/* New limits for connections accepted from now on. */
void server_set_opts(struct server *s, const struct server_opts *opts);
/* Calls fn for every listener (for status). */
void server_foreach_listener(const struct server *s,
                             void (*fn)(void *arg, const char *name, enum conn_proto proto,
                                        const char *map),
                             void *arg);
/* Stops accepting and lets connections finish their pending answers; done runs when none
 * are left (possibly from inside this call). */
void server_drain(struct server *s, void (*done)(void *arg), void *arg);
/* Closes every connection and listener now. */
void server_free(struct server *s);

struct server_stats {
	size_t connections;
	uint64_t accepted;
	uint64_t refused_total; /* max_connections reached */
	uint64_t refused_per_ip;
	size_t listeners;
};
void server_get_stats(const struct server *s, struct server_stats *st);

#endif
