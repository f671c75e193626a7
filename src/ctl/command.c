/* command.c: the mtasts-ctl command table: local argument checks and the request line. */
#include "config.h"

#include "ctl/command.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "sts/domain.h"

/* An option of a command, written "--name VALUE" or "--name=VALUE". */
struct command_option {
	const char *name;
	/* Checks value and appends " VALUE" in the form the daemon gets; -1 with why. */
	int (*encode)(const char *value, struct strbuf *line, struct strbuf *why);
};

static const char *const command_modes[] = { "enforce", "testing", "none" };

static int
command_encode_mode(const char *value, struct strbuf *line, struct strbuf *why)
{
	for (size_t i = 0; i < sizeof(command_modes) / sizeof(command_modes[0]); i++) {
		if (strcmp(value, command_modes[i]) == 0)
			return strbuf_appendf(line, " %s", value);
	}
	strbuf_appendf(why, "--mode \"%.80s\" is not enforce, testing or none", value);
	return -1;
}

/* Digits only: a sign, a space or a unit would be read differently by different parsers. */
static int
command_encode_seconds(const char *value, struct strbuf *line, struct strbuf *why)
{
	unsigned long n = 0;
	size_t i;

	for (i = 0; value[i] >= '0' && value[i] <= '9'; i++) {
		n = n * 10 + (unsigned long)(value[i] - '0');
		if (n > COMMAND_EXPIRING_MAX)
			break;
	}
	if (i == 0 || value[i] != '\0') {
		strbuf_appendf(why, "--expiring \"%.80s\" is not a number of seconds from 0 to %lu",
		               value, COMMAND_EXPIRING_MAX);
		return -1;
	}
	/* Canonical digits: "007" goes out as "7". */
	return strbuf_appendf(line, " %lu", n);
}

static const struct command_option command_list_options[] = {
	{ "--mode", command_encode_mode },
	{ "--expiring", command_encode_seconds },
};

#define COMMAND_LIST_NOPTIONS (sizeof(command_list_options) / sizeof(command_list_options[0]))

static int
command_encode_none(int argc, char **args, struct strbuf *line, struct strbuf *why)
{
	if (argc == 0)
		return 0;
	strbuf_appendf(why, "unexpected argument \"%.80s\"", args[0]);
	return -1;
}

static int
command_encode_list(int argc, char **args, struct strbuf *line, struct strbuf *why)
{
	bool seen[COMMAND_LIST_NOPTIONS] = { false };

	for (int i = 0; i < argc; i++) {
		const char *arg = args[i], *eq = strchr(arg, '='), *value;
		size_t nlen = eq != NULL ? (size_t)(eq - arg) : strlen(arg), k;

		for (k = 0; k < COMMAND_LIST_NOPTIONS; k++) {
			if (strlen(command_list_options[k].name) == nlen &&
			    memcmp(command_list_options[k].name, arg, nlen) == 0)
				break;
		}
		if (k == COMMAND_LIST_NOPTIONS) {
			strbuf_appendf(why, "unexpected argument \"%.80s\"", arg);
			return -1;
		}
		if (seen[k]) {
			strbuf_appendf(why, "%s given twice", command_list_options[k].name);
			return -1;
		}
		seen[k] = true;
		if (eq != NULL) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = args[++i];
		} else {
			strbuf_appendf(why, "%s needs a value", command_list_options[k].name);
			return -1;
		}
		if (strbuf_appendf(line, " %s", command_list_options[k].name) == -1 ||
		    command_list_options[k].encode(value, line, why) == -1)
			return -1;
	}
	return 0;
}

/* The daemon keys everything by the normalised name, and the line must stay US-ASCII, so a
 * U-label is sent as its A-label and "Example.COM." as "example.com". */
static int
command_encode_domain(const char *arg, struct strbuf *line, struct strbuf *why)
{
	char name[DOMAIN_NAME_MAX + 1];
	enum domain_result r;

	if (strncmp(arg, "--", 2) == 0) {
		strbuf_appendf(why, "unexpected option \"%.80s\"", arg);
		return -1;
	}
	r = domain_normalise(arg, strlen(arg), name);
	if (r != DOMAIN_OK) {
		strbuf_appendf(why, "\"%.80s\" is not a policy domain (%s)", arg,
		               domain_result_str(r));
		return -1;
	}
	return strbuf_appendf(line, " %s", name);
}

static int
command_encode_one_domain(int argc, char **args, struct strbuf *line, struct strbuf *why)
{
	if (argc != 1) {
		strbuf_appends(why, argc == 0 ? "missing DOMAIN" : "one DOMAIN only");
		return -1;
	}
	return command_encode_domain(args[0], line, why);
}

static int
command_encode_flush(int argc, char **args, struct strbuf *line, struct strbuf *why)
{
	if (argc != 1) {
		strbuf_appends(why, argc == 0 ? "missing DOMAIN or --all" : "one DOMAIN or --all");
		return -1;
	}
	if (strcmp(args[0], "--all") == 0)
		return strbuf_appends(line, " --all");
	return command_encode_domain(args[0], line, why);
}

static int
command_encode_log_level(int argc, char **args, struct strbuf *line, struct strbuf *why)
{
	enum log_level level;

	if (argc != 1) {
		strbuf_appends(why, argc == 0 ? "missing LEVEL" : "one LEVEL only");
		return -1;
	}
	if (log_level_parse(args[0], &level) == -1) {
		strbuf_appendf(why, "\"%.80s\" is not err, warn, info or debug", args[0]);
		return -1;
	}
	return strbuf_appendf(line, " %s", log_level_name(level));
}

static const struct command command_commands[] = {
	{ "status", "", "version, pid, uptime, config, listeners, maps and cache", false,
	  command_encode_none },
	{ "stats", "", "counters: lookups, cache, discoveries, DNS and HTTP latency, connections",
	  false, command_encode_none },
	{ "list", "[--mode enforce|testing|none] [--expiring SECONDS]",
	  "one line per cached policy, optionally only one mode or those expiring soon", false,
	  command_encode_list },
	{ "show", "DOMAIN", "everything known about one domain and the answer Postfix gets now",
	  false, command_encode_one_domain },
	{ "flush", "DOMAIN|--all", "drop one domain's cache entry, or every entry", false,
	  command_encode_flush },
	{ "refresh", "DOMAIN", "run a discovery now and wait for its result", true,
	  command_encode_one_domain },
	{ "reload", "", "re-read the configuration file; on any error the old one stays", false,
	  command_encode_none },
	{ "log-level", "err|warn|info|debug", "change the daemon's log level", false,
	  command_encode_log_level },
};

const struct command *
command_table(size_t *count)
{
	*count = sizeof(command_commands) / sizeof(command_commands[0]);
	return command_commands;
}

const struct command *
command_find(const char *name)
{
	for (size_t i = 0; i < sizeof(command_commands) / sizeof(command_commands[0]); i++) {
		if (strcmp(name, command_commands[i].name) == 0)
			return &command_commands[i];
	}
	return NULL;
}

int
command_request(const struct command *cmd, int argc, char **args, bool json, struct strbuf *line,
                struct strbuf *why)
{
	char **rest = xreallocarray(NULL, (size_t)argc + 1, sizeof(*rest));
	int nrest = 0, rc = -1;

	for (int i = 0; i < argc; i++) {
		if (strcmp(args[i], "--json") == 0)
			json = true;
		else
			rest[nrest++] = args[i];
	}
	if (strbuf_appendf(line, "%s %s", COMMAND_PROTOCOL, cmd->name) == -1 ||
	    cmd->encode(nrest, rest, line, why) == -1)
		goto fail;
	if ((json && strbuf_appends(line, " --json") == -1) || strbuf_appendc(line, '\n') == -1)
		goto fail;
	rc = 0;
fail:
	if (rc == -1 && why->len == 0)
		strbuf_appendf(why, "request longer than %d bytes", COMMAND_LINE_MAX);
	free(rest);
	return rc;
}
