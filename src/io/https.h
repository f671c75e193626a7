/*
 * https.h: HTTPS GET through libcurl multi on one libevent base, pinned to given addresses.
 *
 * The transfer engine behind io/fetch.h, which runs it on a worker thread. Everything here
 * belongs to the thread that runs the base: no locking inside.
 */
#ifndef MTASTS_IO_HTTPS_H
#define MTASTS_IO_HTTPS_H

#include "io/fetch.h"

/* Hard caps on caller input, checked before anything is built from it. */
#define HTTPS_HOST_MAX  253
#define HTTPS_PATH_MAX  1024
#define HTTPS_ADDRS_MAX 16 /* further addresses are ignored: the first ones are tried first */

struct https;
struct https_req;

/* Loads the trust anchors from opts->ca_file (or the system's) once, for every transfer. */
struct https *https_new(struct event_base *base, const struct fetch_opts *opts);
/*
 * Cancels every transfer without calling callbacks, then frees (before the event_base).
 * May be called from a callback; no further callbacks run after it.
 */
void https_free(struct https *h);

/* As fetch_start() in io/fetch.h, on h's base. */
struct https_req *https_start(struct https *h, const char *host, unsigned port, const char *path,
                              const char *const *addrs, size_t naddrs, fetch_cb cb, void *arg);
/* No callback runs for req after this; a no-op from inside req's own callback. */
void https_cancel(struct https_req *req);

#endif
