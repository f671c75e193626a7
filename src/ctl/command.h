/* command.h: the mtasts-ctl command table: local argument checks and the request line. */
#ifndef MTASTS_CTL_COMMAND_H
#define MTASTS_CTL_COMMAND_H

#include <stdbool.h>
#include <stddef.h>

#include "base/strbuf.h"

/* The first token of every request (doc/control-protocol.md, version 1). */
#define COMMAND_PROTOCOL "MTASTS/1"
/* The daemon closes a connection whose request line (LF included) is longer. */
#define COMMAND_LINE_MAX 4096
/* list --expiring: the largest SECONDS sent, so that any daemon-side integer holds it. */
#define COMMAND_EXPIRING_MAX 2147483647UL

/* One command; the table is static and lives for the whole program. */
struct command {
	const char *name;
	const char *args; /* synopsis of the arguments, "" for none */
	const char *help; /* one line for --help */
	/* The reply comes only when a discovery finishes, so the default timeout must cover
	 * the daemon's DNS and fetch timeouts. */
	bool waits_for_discovery;
	/* Checks args[0..argc) (--json already removed) and appends them to line as
	 * " TOKEN..."; on a usage error returns -1 with one phrase in why. */
	int (*encode)(int argc, char **args, struct strbuf *line, struct strbuf *why);
};

/* Every command, in --help order. */
const struct command *command_table(size_t *count);
/* NULL when name is not a command. */
const struct command *command_find(const char *name);

/*
 * Builds the request for cmd with the arguments args[0..argc): "MTASTS/1 NAME ARGS... [--json]"
 * and LF, into line. "--json" may appear anywhere in args; json asks for it too. Returns 0, or
 * -1 for a usage error with one phrase saying why in why (the caller adds the synopsis).
 */
int command_request(const struct command *cmd, int argc, char **args, bool json,
                    struct strbuf *line, struct strbuf *why);

#endif
