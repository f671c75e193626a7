/* listener.h: a bound, listening TCP or unix socket that hands accepted fds upward. */
#ifndef MTASTS_IO_LISTENER_H
#define MTASTS_IO_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct event_base;
struct listener;

/* fd is non-blocking and owned by the callee; peer is "ip:port" or "unix". */
typedef void (*listener_cb)(void *arg, int fd, const char *peer);

/*
 * Binds and listens. For TCP pass host (numeric IPv4/IPv6) and port, path NULL; for a unix
 * socket pass path (a stale socket file is replaced) and mode (chmod after bind). Returns
 * NULL and a message in err (errlen bytes) on failure. The listener starts paused: call
 * listener_resume() once the daemon is ready to serve.
 */
struct listener *listener_new(struct event_base *base, const char *host, unsigned port,
                              const char *path, mode_t mode, listener_cb cb, void *arg, char *err,
                              size_t errlen);
/* Wraps an already listening fd (socket activation); name is used in logs. */
struct listener *listener_adopt(struct event_base *base, int fd, const char *name, listener_cb cb,
                                void *arg);
/* Stops accepting, closes the socket and removes a unix socket file this listener created. */
void listener_free(struct listener *l);
void listener_pause(struct listener *l);
void listener_resume(struct listener *l);
const char *listener_name(const struct listener *l);
/* fd's bound address as listen entries write it ("127.0.0.1:8461", "[::1]:25", "unix:/p",
 * "unix" when unnamed); false if it cannot be read. Matches systemd's sockets to listen[]. */
bool listener_fd_name(int fd, char *out, size_t outlen);

#endif
