/* main.c: mtasts-ctl, the control client of mtastsd: options, socket choice, exit codes. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/strbuf.h"
#include "base/xmalloc.h"
#include "config/config.h"
#include "ctl/client.h"
#include "ctl/command.h"
#include "ctl/reply.h"

#define CTL_DEFAULT_CONFIG    "/etc/mtastsd/mtastsd.conf"
#define CTL_DEFAULT_SOCKET    "/run/mtastsd/control.sock"
#define CTL_TIMEOUT_DEFAULT_S 30
#define CTL_TIMEOUT_MAX_S     86400
/* refresh: slack on top of the daemon's own DNS and fetch deadlines. */
#define CTL_REFRESH_SLACK_S 5
/* Bytes of a bad reply quoted in the error message. */
#define CTL_EXCERPT_MAX 64
/* What a daemon that refused our credentials says (doc/control-protocol.md). */
#define CTL_DENIED "permission denied"

/* Exit codes, as unbound-control has them (STYLE 13). */
enum ctl_exit {
	CTL_EXIT_OK = 0,          /* the daemon answered OK */
	CTL_EXIT_ERROR = 1,       /* it answered ERR, or the exchange failed */
	CTL_EXIT_USAGE = 2,       /* bad options or arguments; nothing was sent */
	CTL_EXIT_UNREACHABLE = 3, /* no daemon to talk to */
};

struct ctl {
	const char *socket;      /* the path connected to */
	const char *origin;      /* where that path came from, for messages */
	char *origin_buf;        /* owns origin when it names the config file */
	const char *config_path; /* -c, or the default */
	bool config_given;
	unsigned timeout_s; /* 0 until chosen */
	bool json;
	const struct command *cmd;
};

/* connect(2) errors that mean there is no daemon to reach, and what to check for each. */
static const struct {
	int err;
	const char *hint;
} ctl_unreachable[] = {
	{ ENOENT, "is mtastsd running, with control.socket set to this path? (see -s and -c)" },
	{ ENOTDIR, "is mtastsd running, with control.socket set to this path? (see -s and -c)" },
	{ ECONNREFUSED, "is mtastsd running? A socket file left behind by a daemon that died "
	                "refuses connections" },
	{ EACCES, "are you root or in mtastsd's control.group? The socket file and its "
	          "directory must let you in" },
	{ EPERM, "are you root or in mtastsd's control.group? The socket file and its "
	         "directory must let you in" },
};

static void
ctl_help(FILE *out)
{
	size_t n;
	const struct command *cmds = command_table(&n);

	fprintf(out,
	        "usage: mtasts-ctl [-s SOCKET] [-c CONFIG] [--json] [-t SECONDS] COMMAND "
	        "[ARGS...]\n"
	        "  -s SOCKET   control socket (default: control.socket of CONFIG, else\n"
	        "              " CTL_DEFAULT_SOCKET ")\n"
	        "  -c CONFIG   mtastsd configuration file (default " CTL_DEFAULT_CONFIG ")\n"
	        "  --json      ask for a JSON reply (also accepted after COMMAND)\n"
	        "  -t SECONDS  give up after SECONDS (default %d; refresh: long enough for the\n"
	        "              daemon's DNS and fetch timeouts)\n"
	        "  -V          print the version\n"
	        "  -h, --help  print this help\n"
	        "commands:\n",
	        CTL_TIMEOUT_DEFAULT_S);
	for (size_t i = 0; i < n; i++) {
		fprintf(out, "  %s%s%s\n      %s\n", cmds[i].name,
		        cmds[i].args[0] != '\0' ? " " : "", cmds[i].args, cmds[i].help);
	}
	fprintf(out, "exit status: 0 OK, 1 ERR or a failed exchange, 2 usage error, "
	             "3 mtastsd not reachable\n");
}

static int ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
ctl_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("mtasts-ctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("; see mtasts-ctl --help\n", stderr);
	return CTL_EXIT_USAGE;
}

/* Seconds: digits only, 1..CTL_TIMEOUT_MAX_S. */
static int
ctl_parse_timeout(const char *s, unsigned *out)
{
	unsigned long n = 0;
	size_t i;

	for (i = 0; s[i] >= '0' && s[i] <= '9' && n <= CTL_TIMEOUT_MAX_S; i++)
		n = n * 10 + (unsigned long)(s[i] - '0');
	if (i == 0 || s[i] != '\0' || n == 0 || n > CTL_TIMEOUT_MAX_S)
		return -1;
	*out = (unsigned)n;
	return 0;
}

/*
 * The daemon's configuration, for control.socket and the refresh deadline. A missing default
 * file is normal on a client-only host; any other failure is said, since the socket may then
 * not be the daemon's.
 */
static const struct config *
ctl_load_config(const struct ctl *ctl)
{
	const struct config *cfg;
	struct strbuf err;

	strbuf_init(&err, 64 * 1024);
	cfg = config_load(ctl->config_path, &err);
	if (cfg == NULL && (ctl->config_given || access(ctl->config_path, F_OK) == 0)) {
		const char *nl = err.data != NULL ? strchr(err.data, '\n') : NULL;
		int len = nl != NULL ? (int)(nl - err.data) : (int)err.len;

		fprintf(stderr, "mtasts-ctl: warning: %s not loaded: %.*s\n", ctl->config_path, len,
		        err.data != NULL ? err.data : "");
	}
	strbuf_release(&err);
	return cfg;
}

/* A refresh replies when its discovery ends: TXT, then the address of mta-sts.DOMAIN, each
 * up to timeout x tries, then the fetch. */
static unsigned
ctl_refresh_timeout(const struct config *cfg)
{
	unsigned long ms = 2UL * cfg->dns.timeout_ms * cfg->dns.tries + cfg->fetch.timeout_ms;
	unsigned long s = (ms + 999) / 1000 + CTL_REFRESH_SLACK_S;

	return s > CTL_TIMEOUT_DEFAULT_S ? (unsigned)s : CTL_TIMEOUT_DEFAULT_S;
}

/* Chooses the socket and the timeout; -1 (with the message printed) when the configuration
 * turns the control channel off. *cfg_out keeps the socket string alive. */
static int
ctl_resolve(struct ctl *ctl, const struct config **cfg_out)
{
	const struct config *cfg = NULL;
	bool need_cfg =
	        ctl->socket == NULL || (ctl->timeout_s == 0 && ctl->cmd->waits_for_discovery);

	if (need_cfg)
		cfg = ctl_load_config(ctl);
	*cfg_out = cfg;
	if (ctl->socket != NULL) {
		ctl->origin = "given with -s";
	} else if (cfg != NULL && cfg->control.socket[0] == '\0') {
		fprintf(stderr,
		        "mtasts-ctl: the control channel is off in %s (control.socket is \"\"); "
		        "set it and restart mtastsd, or give -s\n",
		        ctl->config_path);
		return -1;
	} else if (cfg != NULL) {
		ctl->socket = cfg->control.socket;
		ctl->origin_buf = xasprintf("control.socket in %s", ctl->config_path);
		ctl->origin = ctl->origin_buf;
	} else {
		ctl->socket = CTL_DEFAULT_SOCKET;
		ctl->origin = "the built-in default";
	}
	if (ctl->timeout_s == 0)
		ctl->timeout_s = ctl->cmd->waits_for_discovery && cfg != NULL
		                         ? ctl_refresh_timeout(cfg)
		                         : CTL_TIMEOUT_DEFAULT_S;
	return 0;
}

static int
ctl_connect_failed(const struct ctl *ctl, int err)
{
	fprintf(stderr, "mtasts-ctl: cannot connect to mtastsd at %s (%s): %s\n", ctl->socket,
	        ctl->origin,
	        err == EAGAIN ? "its listen queue stayed full until the timeout" : strerror(err));
	for (size_t i = 0; i < sizeof(ctl_unreachable) / sizeof(ctl_unreachable[0]); i++) {
		if (ctl_unreachable[i].err == err) {
			fprintf(stderr, "mtasts-ctl: %s\n", ctl_unreachable[i].hint);
			return CTL_EXIT_UNREACHABLE;
		}
	}
	return CTL_EXIT_ERROR;
}

/* Writes body, adding the final LF a text body should have had. */
static int
ctl_write_body(FILE *out, const char *body, size_t len)
{
	if (len > 0 && fwrite(body, 1, len, out) != len)
		return -1;
	if (len > 0 && body[len - 1] != '\n' && fputc('\n', out) == EOF)
		return -1;
	return fflush(out) == EOF ? -1 : 0;
}

/* The first bytes of what arrived, escaped onto one line. */
static void
ctl_excerpt(struct strbuf *out, const char *data, size_t len)
{
	size_t i;

	strbuf_appends(out, "; received \"");
	for (i = 0; i < len && i < CTL_EXCERPT_MAX; i++) {
		unsigned char ch = (unsigned char)data[i];

		if (ch == '\n')
			strbuf_appends(out, "\\n");
		else if (ch == '\\' || ch == '"')
			strbuf_appendf(out, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			strbuf_appendf(out, "\\x%02x", ch);
		else
			strbuf_appendc(out, (char)ch);
	}
	strbuf_appends(out, i < len ? "\"..." : "\"");
}

static int
ctl_exchange_failed(const struct ctl *ctl, struct client *c, enum client_status st)
{
	struct strbuf msg;
	size_t len;
	const char *got = client_received(c, &len);

	/* A refused peer may be told so in any shape, then closed: trust the words, not the
	 * framing. */
	if ((st == CLIENT_CLOSED || st == CLIENT_MALFORMED) &&
	    memmem(got, len, CTL_DENIED, strlen(CTL_DENIED)) != NULL) {
		fprintf(stderr, "mtasts-ctl: permission denied by mtastsd (not root or in "
		                "control.group)\n");
		return CTL_EXIT_ERROR;
	}
	strbuf_init(&msg, 1024);
	strbuf_appendf(&msg, "mtasts-ctl: %s: %s", ctl->socket, client_error(c));
	if (len > 0)
		ctl_excerpt(&msg, got, len);
	fprintf(stderr, "%s\n", msg.data);
	strbuf_release(&msg);
	return CTL_EXIT_ERROR;
}

static int
ctl_run(const struct ctl *ctl, const struct strbuf *line)
{
	struct client *c = client_new(ctl->socket, ctl->timeout_s);
	struct reply reply;
	enum client_status st;
	int rc;

	if (client_connect(c) == -1) {
		rc = ctl_connect_failed(ctl, errno);
		goto done;
	}
	st = client_exchange(c, line->data, line->len, &reply);
	if (st != CLIENT_REPLY) {
		rc = ctl_exchange_failed(ctl, c, st);
		goto done;
	}
	if (reply.kind == REPLY_OK) {
		rc = CTL_EXIT_OK;
		if (ctl_write_body(stdout, reply.body, reply.body_len) == -1) {
			fprintf(stderr, "mtasts-ctl: writing the reply: %s\n", strerror(errno));
			rc = CTL_EXIT_ERROR;
		}
	} else {
		rc = CTL_EXIT_ERROR;
		ctl_write_body(stderr, reply.body, reply.body_len);
		if (memmem(reply.body, reply.body_len, CTL_DENIED, strlen(CTL_DENIED)) != NULL)
			fprintf(stderr, "mtasts-ctl: permission denied by mtastsd (not root or in "
			                "control.group)\n");
	}
done:
	client_free(c);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl ctl = { .config_path = CTL_DEFAULT_CONFIG };
	const struct config *cfg = NULL;
	struct strbuf line, why;
	int ch, rc;

	log_init("mtasts-ctl", true, LOG_LEVEL_WARN);
	opterr = 0;
	/* "+": options end at COMMAND, whose own arguments may start with "--". */
	while ((ch = getopt_long(argc, argv, "+s:c:t:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			ctl.socket = optarg;
			break;
		case 'c':
			ctl.config_path = optarg;
			ctl.config_given = true;
			break;
		case 't':
			if (ctl_parse_timeout(optarg, &ctl.timeout_s) == -1)
				return ctl_usage_error(
				        "-t needs whole seconds from 1 to %d, not \"%s\"",
				        CTL_TIMEOUT_MAX_S, optarg);
			break;
		case 'j':
			ctl.json = true;
			break;
		case 'h':
			ctl_help(stdout);
			return CTL_EXIT_OK;
		case 'V':
			printf("mtasts-ctl %s\n", PACKAGE_VERSION);
			return CTL_EXIT_OK;
		default:
			return ctl_usage_error("bad option or missing value: %s", argv[optind - 1]);
		}
	}
	if (optind == argc)
		return ctl_usage_error("%s", "no COMMAND");
	ctl.cmd = command_find(argv[optind]);
	if (ctl.cmd == NULL)
		return ctl_usage_error("unknown command \"%s\"", argv[optind]);

	strbuf_init(&line, COMMAND_LINE_MAX);
	strbuf_init(&why, 1024);
	if (command_request(ctl.cmd, argc - optind - 1, argv + optind + 1, ctl.json, &line, &why) ==
	    -1) {
		fprintf(stderr, "mtasts-ctl: %s: %s; usage: mtasts-ctl %s%s%s\n", ctl.cmd->name,
		        why.data, ctl.cmd->name, ctl.cmd->args[0] != '\0' ? " " : "",
		        ctl.cmd->args);
		rc = CTL_EXIT_USAGE;
	} else if (ctl_resolve(&ctl, &cfg) == -1) {
		rc = CTL_EXIT_UNREACHABLE;
	} else {
		rc = ctl_run(&ctl, &line);
	}
	config_free(cfg);
	strbuf_release(&line);
	strbuf_release(&why);
	free(ctl.origin_buf);
	return rc;
}
