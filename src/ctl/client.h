/* client.h: one request and its reply over mtastsd's unix control socket, under one deadline. */
#ifndef MTASTS_CTL_CLIENT_H
#define MTASTS_CTL_CLIENT_H

#include <stddef.h>

#include "ctl/reply.h"

enum client_status {
	CLIENT_REPLY,     /* a complete reply */
	CLIENT_CLOSED,    /* the daemon closed the connection before a complete reply */
	CLIENT_MALFORMED, /* what arrived is not a reply */
	CLIENT_TIMEOUT,   /* the deadline passed first */
	CLIENT_IO,        /* a socket call failed */
};

/*
 * A client owns its socket and everything it received. The deadline starts at client_new()
 * and covers connecting, sending and the whole reply.
 */
struct client;

struct client *client_new(const char *path, unsigned timeout_s);
void client_free(struct client *c);

/*
 * Connects to the socket. Returns 0, or -1 with errno: connect(2)'s (ENOENT, ECONNREFUSED,
 * EACCES... the daemon is not reachable), ENAMETOOLONG when the path does not fit a socket
 * address, or EAGAIN when the daemon's listen queue stayed full until the deadline.
 */
int client_connect(struct client *c);

/*
 * Sends line[0..len) (one request, LF included) and reads one reply, at most REPLY_CAP_DEFAULT
 * bytes of body. On CLIENT_REPLY *reply points into the client's buffer, valid until
 * client_free(); bytes after it are ignored. A daemon that refuses a peer may answer and close
 * before reading the request, so a failed send still reads what was already sent.
 */
enum client_status client_exchange(struct client *c, const char *line, size_t len,
                                   struct reply *reply);

/* One phrase saying why the last call failed; "" when it did not. */
const char *client_error(const struct client *c);

/* Every byte received so far, whether or not it made a reply. */
const char *client_received(const struct client *c, size_t *len);

#endif
