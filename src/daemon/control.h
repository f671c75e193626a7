/* control.h: the local control channel of mtasts-ctl (doc/control-protocol.md). */
#ifndef MTASTS_DAEMON_CONTROL_H
#define MTASTS_DAEMON_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "base/strbuf.h"

struct event_base;
struct engine;
struct lookup;
struct control;

/* What only the daemon's composition knows; each hook fills out (text or JSON). */
struct control_hooks {
	void (*status)(void *arg, bool json, struct strbuf *out);
	void (*stats)(void *arg, bool json, struct strbuf *out);
	/* 0 with a summary in out, or -1 with the reason; the old config stays on -1. */
	int (*reload)(void *arg, struct strbuf *out);
	void *arg;
};

struct control_opts {
	const char *path;
	mode_t mode;
	gid_t group; /* members (and root and the daemon's uid) may connect */
	unsigned max_clients;
};

/* Binds the socket (paused until control_start); NULL with a message in err on failure. */
struct control *control_new(struct event_base *base, const struct control_opts *opts,
                            struct engine *eng, struct lookup *lk, const struct control_hooks *h,
                            char *err, size_t errlen);
void control_start(struct control *c);
/* Closes the socket and every client (pending refreshes are cancelled). */
void control_free(struct control *c);
/* The engine changed nothing; the path, mode and group in use, for reload comparisons. */
const char *control_path(const struct control *c);

#endif
