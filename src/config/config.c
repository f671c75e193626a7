/* config.c: the mtastsd.conf schema table and its loader into an immutable typed struct. */
/* Angle brackets: "config.h" would find this directory's config.h before autoconf's. */
#include <config.h>

#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <libconfig.h>

#include "base/xmalloc.h"

/* Past this many problems a file is more wrong than right; the rest only hide the first. */
#define CONFIG_ERRORS_MAX 50
/* Bytes of a bad string value quoted back in a message. */
#define CONFIG_SHOW_MAX 64
#define CONFIG_TEXT_MAX 256
/* Bytes of a source line read back to find an integer literal (see config_int_literal). */
#define CONFIG_LINE_MAX 4096
#define CONFIG_DNS_PORT 53
/* Message pieces (accepted values, known keys) are short; this only bounds a bug. */
#define CONFIG_MSG_MAX 8192

_Static_assert(sizeof(enum log_level) == sizeof(int), "ENUM fields are stored as int");
_Static_assert(sizeof(enum config_protocol) == sizeof(int), "ENUM fields are stored as int");
_Static_assert(sizeof(enum config_dns_failure) == sizeof(int), "ENUM fields are stored as int");
_Static_assert(sizeof(enum config_cache_backend) == sizeof(int), "ENUM fields are stored as int");

static const char *const config_log_levels[] = {
	[LOG_LEVEL_ERR] = "err",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
	NULL,
};

static const char *const config_protocols[] = {
	[CONFIG_PROTOCOL_SOCKETMAP] = "socketmap",
	[CONFIG_PROTOCOL_TCP_TABLE] = "tcp_table",
	NULL,
};

static const char *const config_dns_failures[] = {
	[CONFIG_DNS_FAILURE_NOTFOUND] = "notfound",
	[CONFIG_DNS_FAILURE_TEMP] = "temp",
	NULL,
};

static const char *const config_cache_backends[] = {
	[CONFIG_CACHE_MEMORY] = "memory",
	[CONFIG_CACHE_SQLITE] = "sqlite",
	[CONFIG_CACHE_REDIS] = "redis",
	NULL,
};

/* A section: one group of options, or a list of groups with one struct per element. */
struct config_section {
	const char *name;
	bool list;
	size_t elem_size;    /* list: sizeof the element struct */
	size_t array_offset; /* list: the element array's pointer in struct config */
	size_t count_offset; /* list: its length (size_t) in struct config */
	unsigned min, max;   /* list: how many elements */
	const char *def;     /* list: the elements when the section is absent, libconfig syntax */
	const char *doc;
};

static const struct config_section config_sections[] = {
	{ .name = "daemon", .doc = "Process settings: logging, privileges, files." },
	{ .name = "listen",
	  .list = true,
	  .elem_size = sizeof(struct config_listener),
	  .array_offset = offsetof(struct config, listeners),
	  .count_offset = offsetof(struct config, nlisteners),
	  .min = 1,
	  .max = CONFIG_LISTENERS_MAX,
	  .def = "( { protocol = \"socketmap\"; address = \"127.0.0.1:8461\"; } )",
	  .doc = "The sockets Postfix connects to, one group per socket." },
	{ .name = "maps",
	  .list = true,
	  .elem_size = sizeof(struct config_map),
	  .array_offset = offsetof(struct config, maps),
	  .count_offset = offsetof(struct config, nmaps),
	  .min = 1,
	  .max = CONFIG_MAPS_MAX,
	  .def = "( { name = \"postfix\"; } )",
	  .doc = "The map names Postfix may ask for (the last part of socketmap:...:NAME), "
	         "each with its own answer options." },
	{ .name = "limits", .doc = "Bounds on clients, requests and time." },
	{ .name = "dns", .doc = "The DNS resolver (c-ares) and its answer cache." },
	{ .name = "fetch", .doc = "HTTPS policy fetches (libcurl)." },
	{ .name = "cache", .doc = "The policy cache." },
	{ .name = "sqlite", .doc = "The sqlite store (cache.backend = \"sqlite\")." },
	{ .name = "redis", .doc = "The Redis store shared by relays (cache.backend = \"redis\")." },
	{ .name = "refresh", .doc = "Background refresh of policies in use before they expire." },
	{ .name = "control", .doc = "The local control socket used by mtasts-ctl." },
};

#define CONFIG_NSECTIONS (sizeof(config_sections) / sizeof(config_sections[0]))

#define IN_CONFIG(sec, key, field)                                                                 \
	.section = (sec), .name = (key), .offset = offsetof(struct config, field)
#define IN_LISTENER(key, field)                                                                    \
	.section = "listen", .name = (key), .offset = offsetof(struct config_listener, field)
#define IN_MAP(key, field)                                                                         \
	.section = "maps", .name = (key), .offset = offsetof(struct config_map, field)

static const struct config_option config_options[] = {
	{ IN_CONFIG("daemon", "log_level", daemon.log_level), .kind = CONFIG_KIND_ENUM,
	  .def = "\"info\"", .values = config_log_levels,
	  .doc = "Least severe messages logged; debug logs every lookup." },
	{ IN_CONFIG("daemon", "user", daemon.user), .kind = CONFIG_KIND_NAME, .def = "\"\"",
	  .empty_ok = true,
	  .doc = "User to switch to after binding the listeners; \"\" stays the starting user." },
	{ IN_CONFIG("daemon", "group", daemon.group), .kind = CONFIG_KIND_NAME, .def = "\"\"",
	  .empty_ok = true,
	  .doc = "Group to switch to after binding; \"\" is the user's primary group." },
	{ IN_CONFIG("daemon", "allow_root", daemon.allow_root), .kind = CONFIG_KIND_BOOL,
	  .def = "false",
	  .doc = "Keep running as root when user is \"\"; off, the daemon refuses to, since it "
	         "parses input from the network." },
	{ IN_CONFIG("daemon", "pid_file", daemon.pid_file), .kind = CONFIG_KIND_PATH, .def = "\"\"",
	  .empty_ok = true, .doc = "File to write the process id to; \"\" writes none." },
	{ IN_CONFIG("daemon", "state_dir", daemon.state_dir), .kind = CONFIG_KIND_PATH,
	  .def = "\"/var/lib/mtastsd\"",
	  .doc = "Directory for persistent state (store backends that keep files)." },
	{ IN_CONFIG("daemon", "runtime_dir", daemon.runtime_dir), .kind = CONFIG_KIND_PATH,
	  .def = "\"/run/mtastsd\"",
	  .doc = "Directory for runtime files such as the control socket." },

	{ IN_LISTENER("protocol", protocol), .kind = CONFIG_KIND_ENUM, .def = "\"socketmap\"",
	  .values = config_protocols, .doc = "Postfix table protocol spoken on this socket." },
	{ IN_LISTENER("address", address), .kind = CONFIG_KIND_ADDRESS,
	  .doc = "Numeric address and port, or unix: and an absolute socket path." },
	{ IN_LISTENER("mode", mode), .kind = CONFIG_KIND_MODE, .def = "\"0666\"",
	  .doc = "Permissions of a unix socket; the default lets Postfix connect, as the "
	         "127.0.0.1 listener does; only for unix: addresses." },
	{ IN_LISTENER("map", map), .kind = CONFIG_KIND_MAP_NAME, .def = "\"\"", .empty_ok = true,
	  .doc = "tcp_table only (its requests name no map): the map from maps that answers "
	         "here; required for tcp_table, not allowed for socketmap." },

	{ IN_MAP("name", name), .kind = CONFIG_KIND_MAP_NAME,
	  .doc = "The map name, as after the last colon of socketmap:inet:HOST:PORT:NAME." },
	{ IN_MAP("strict_testing", strict_testing), .kind = CONFIG_KIND_BOOL, .def = "false",
	  .doc = "Enforce mode: testing policies as if they were mode: enforce." },
	{ IN_MAP("tlsrpt", tlsrpt), .kind = CONFIG_KIND_BOOL, .def = "false",
	  .doc = "Add the TLSRPT attributes Postfix 3.10 and later understand." },

	{ IN_CONFIG("limits", "request_size", limits.request_size), .kind = CONFIG_KIND_INT,
	  .def = "4096", .min = 1024, .max = 65536, .unit = "bytes",
	  .doc = "Largest request accepted; a longer one closes the connection." },
	{ IN_CONFIG("limits", "max_connections", limits.max_connections), .kind = CONFIG_KIND_INT,
	  .def = "1024", .min = 1, .max = 100000, .unit = "connections",
	  .doc = "Client connections open at once over all listeners; more are refused." },
	{ IN_CONFIG("limits", "max_connections_per_ip", limits.max_connections_per_ip),
	  .kind = CONFIG_KIND_INT, .def = "256", .min = 1, .max = 100000, .unit = "connections",
	  .doc = "Client connections open at once from one IP address." },
	{ IN_CONFIG("limits", "idle_timeout", limits.idle_timeout_s), .kind = CONFIG_KIND_INT,
	  .def = "300", .min = 100, .max = 86400, .unit = "seconds",
	  .doc = "Close a connection idle this long; Postfix keeps idle table connections up "
	         "to 100 s." },
	{ IN_CONFIG("limits", "lookup_timeout", limits.lookup_timeout_ms), .kind = CONFIG_KIND_INT,
	  .def = "3000", .min = 100, .max = 60000, .unit = "milliseconds",
	  .doc = "Answer from the cache, or NOTFOUND, when discovery takes longer; it goes on "
	         "in the background." },
	{ IN_CONFIG("limits", "max_pending_per_connection", limits.max_pending_per_connection),
	  .kind = CONFIG_KIND_INT, .def = "16", .min = 1, .max = 1024, .unit = "requests",
	  .doc = "Pipelined requests waiting on one connection before reading pauses." },
	{ IN_CONFIG("limits", "shutdown_timeout", limits.shutdown_timeout_ms),
	  .kind = CONFIG_KIND_INT, .def = "5000", .min = 0, .max = 60000, .unit = "milliseconds",
	  .doc = "On SIGTERM, time allowed to finish the answers in flight." },

	{ IN_CONFIG("dns", "servers", dns.servers), .kind = CONFIG_KIND_SERVERS, .def = "[]",
	  .doc = "DNS servers to ask; [] uses the nameservers of /etc/resolv.conf." },
	{ IN_CONFIG("dns", "timeout", dns.timeout_ms), .kind = CONFIG_KIND_INT, .def = "2000",
	  .min = 100, .max = 30000, .unit = "milliseconds",
	  .doc = "Wait for one DNS answer this long before the next try." },
	{ IN_CONFIG("dns", "tries", dns.tries), .kind = CONFIG_KIND_INT, .def = "2", .min = 1,
	  .max = 10, .unit = "tries", .doc = "Times each DNS query is sent before it fails." },
	{ IN_CONFIG("dns", "max_ttl", dns.max_ttl_s), .kind = CONFIG_KIND_INT, .def = "3600",
	  .min = 0, .max = 86400, .unit = "seconds",
	  .doc = "Cap on how long a positive DNS answer is cached, whatever its TTL." },
	{ IN_CONFIG("dns", "negative_ttl", dns.negative_ttl_s), .kind = CONFIG_KIND_INT,
	  .def = "300", .min = 0, .max = 86400, .unit = "seconds",
	  .doc = "Cap on how long NXDOMAIN and NODATA answers are cached." },
	{ IN_CONFIG("dns", "servfail_ttl", dns.servfail_ttl_s), .kind = CONFIG_KIND_INT,
	  .def = "30", .min = 0, .max = 3600, .unit = "seconds",
	  .doc = "How long a SERVFAIL or timeout is cached, so a dead zone is not hammered." },
	{ IN_CONFIG("dns", "cache_size", dns.cache_size), .kind = CONFIG_KIND_INT, .def = "10000",
	  .min = 0, .max = 10000000, .unit = "entries",
	  .doc = "DNS answers cached at most; 0 caches none. The policy cache keeps each "
	         "domain's TXT verdict itself, so this need not grow with the number of domains." },
	{ IN_CONFIG("dns", "on_failure", dns.on_failure), .kind = CONFIG_KIND_ENUM,
	  .def = "\"notfound\"", .values = config_dns_failures,
	  .doc = "Answer when the TXT lookup fails and no policy is cached: notfound lets mail go "
	         "out, temp defers it (TXT-10)." },

	{ IN_CONFIG("fetch", "timeout", fetch.timeout_ms), .kind = CONFIG_KIND_INT, .def = "10000",
	  .min = 1000, .max = 60000, .unit = "milliseconds",
	  .doc = "Deadline for one policy fetch: connect, TLS, headers and body." },
	{ IN_CONFIG("fetch", "ca_file", fetch.ca_file), .kind = CONFIG_KIND_PATH, .def = "\"\"",
	  .empty_ok = true,
	  .doc = "PEM file of CAs that policy servers are verified against; \"\" uses the system "
	         "store." },
	{ IN_CONFIG("fetch", "backoff", fetch.backoff_s), .kind = CONFIG_KIND_INT, .def = "300",
	  .min = 0, .max = 86400, .unit = "seconds",
	  .doc = "No new fetch for a (domain, id) this long after one failed; RFC 8461 asks for "
	         "300 or more (FETCH-5)." },
	{ IN_CONFIG("fetch", "max_parallel", fetch.max_parallel), .kind = CONFIG_KIND_INT,
	  .def = "64", .min = 1, .max = 10000, .unit = "transfers",
	  .doc = "Fetches running at once; the rest wait their turn." },
	{ IN_CONFIG("fetch", "user_agent", fetch.user_agent), .kind = CONFIG_KIND_TEXT,
	  .def = "\"mtastsd/" PACKAGE_VERSION "\"",
	  .doc = "User-Agent header sent with each fetch." },

	{ IN_CONFIG("cache", "backend", cache.backend), .kind = CONFIG_KIND_ENUM,
	  .def = "\"sqlite\"", .values = config_cache_backends,
	  .doc = "Where policies outlive a restart: sqlite (a local file), redis (shared by "
	         "relays) or memory (forgotten on restart)." },
	{ IN_CONFIG("cache", "max_entries", cache.max_entries), .kind = CONFIG_KIND_INT,
	  .def = "1000000", .min = 1, .max = 100000000, .unit = "entries",
	  .doc = "Domains kept at most; the least recently used go first." },
	{ IN_CONFIG("cache", "recheck_interval", cache.recheck_interval_s), .kind = CONFIG_KIND_INT,
	  .def = "300", .min = 0, .max = 86400, .unit = "seconds",
	  .doc = "How long a cached policy's TXT id check stays fresh before DNS is asked again "
	         "(CACHE-8)." },

	{ IN_CONFIG("sqlite", "path", sqlite.path), .kind = CONFIG_KIND_PATH,
	  .def = "\"/var/lib/mtastsd/cache.db\"",
	  .doc = "The database file; its directory must be writable by the daemon's user." },
	{ IN_CONFIG("sqlite", "write_interval", sqlite.write_interval_ms), .kind = CONFIG_KIND_INT,
	  .def = "1000", .min = 10, .max = 60000, .unit = "milliseconds",
	  .doc = "Changes are written in one batch this often; a crash loses at most this much." },

	{ IN_CONFIG("redis", "address", redis.address), .kind = CONFIG_KIND_ADDRESS,
	  .def = "\"127.0.0.1:6379\"",
	  .doc = "Numeric address and port of the Redis server, or unix: and a socket path." },
	{ IN_CONFIG("redis", "database", redis.database), .kind = CONFIG_KIND_INT, .def = "0",
	  .min = 0, .max = 1000, .unit = "index", .doc = "Database number (SELECT)." },
	{ IN_CONFIG("redis", "prefix", redis.prefix), .kind = CONFIG_KIND_TEXT,
	  .def = "\"mtasts:\"", .empty_ok = true,
	  .doc = "Prefix of every key; relays sharing policies use the same one." },
	{ IN_CONFIG("redis", "user", redis.user), .kind = CONFIG_KIND_TEXT, .def = "\"\"",
	  .empty_ok = true,
	  .doc = "ACL user for AUTH; \"\" authenticates with the password only." },
	{ IN_CONFIG("redis", "password", redis.password), .kind = CONFIG_KIND_TEXT, .def = "\"\"",
	  .empty_ok = true, .doc = "Password for AUTH; \"\" sends no AUTH." },
	{ IN_CONFIG("redis", "timeout", redis.timeout_ms), .kind = CONFIG_KIND_INT, .def = "1000",
	  .min = 10, .max = 60000, .unit = "milliseconds",
	  .doc = "Connect and command timeout; a lookup never waits longer on Redis." },

	{ IN_CONFIG("refresh", "enable", refresh.enable), .kind = CONFIG_KIND_BOOL, .def = "true",
	  .doc = "Refetch policies in use before they expire, so lookups do not wait." },
	{ IN_CONFIG("refresh", "window", refresh.window_s), .kind = CONFIG_KIND_INT, .def = "3600",
	  .min = 1, .max = 31557600, .unit = "seconds",
	  .doc = "A policy is refreshed when older than max(1 day, max_age/2) or when it expires "
	         "within this window, whichever comes first." },
	{ IN_CONFIG("refresh", "idle", refresh.idle_s), .kind = CONFIG_KIND_INT, .def = "2592000",
	  .min = 60, .max = 31557600, .unit = "seconds",
	  .doc = "Domains not looked up this long are not refreshed and drop out at expiry." },
	{ IN_CONFIG("refresh", "concurrency", refresh.concurrency), .kind = CONFIG_KIND_INT,
	  .def = "4", .min = 1, .max = 1000, .unit = "refreshes",
	  .doc = "Background refreshes running at once." },
	{ IN_CONFIG("refresh", "scan_interval", refresh.scan_interval_s), .kind = CONFIG_KIND_INT,
	  .def = "60", .min = 1, .max = 3600, .unit = "seconds",
	  .doc = "How often the cache is scanned for policies due for refresh." },

	{ IN_CONFIG("control", "socket", control.socket), .kind = CONFIG_KIND_PATH,
	  .def = "\"/run/mtastsd/control.sock\"", .empty_ok = true,
	  .doc = "Unix socket for mtasts-ctl; \"\" turns the control channel off. Never TCP." },
	{ IN_CONFIG("control", "mode", control.mode), .kind = CONFIG_KIND_MODE, .def = "\"0660\"",
	  .doc = "Permissions of the control socket file." },
	{ IN_CONFIG("control", "group", control.group), .kind = CONFIG_KIND_NAME, .def = "\"\"",
	  .empty_ok = true,
	  .doc = "Group whose members may use the control socket besides root and the daemon's "
	         "own user; \"\" = the daemon's group." },
	{ IN_CONFIG("control", "max_clients", control.max_clients), .kind = CONFIG_KIND_INT,
	  .def = "16", .min = 1, .max = 256, .unit = "connections",
	  .doc = "Control connections served at once; more are refused." },
};

#define CONFIG_NOPTIONS (sizeof(config_options) / sizeof(config_options[0]))

/* One load in progress. */
struct config_parse {
	const char *path;
	struct strbuf *err;
	unsigned nerrors;
	struct config *cfg;
	/* List sections: each element's group, for line numbers in the cross checks. */
	const config_setting_t **elems[CONFIG_NSECTIONS];
	/* List sections left out of the file: their default elements, parsed. */
	config_t list_default[CONFIG_NSECTIONS];
	bool has_list_default[CONFIG_NSECTIONS];
};

struct config_kind_ops {
	const char *type; /* "integer", "string": for messages and the schema dump */
	/* Checks s (type and value) and stores it in field; reports its own errors. */
	int (*load)(struct config_parse *p, const struct config_option *o,
	            const config_setting_t *s, const char *key, void *field);
	/* String kinds: checks v and stores it; -1 with the reason in why. */
	int (*parse)(const struct config_option *o, const char *v, void *field, struct strbuf *why);
	/* Appends what the option accepts, completing "use ...". */
	void (*accepted)(const struct config_option *o, struct strbuf *out);
	void (*release)(void *field);
};

static const struct config_kind_ops *config_kind(enum config_kind kind);

/* ---- messages ---- */

static void config_report(struct config_parse *p, const config_setting_t *s, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void
config_report(struct config_parse *p, const config_setting_t *s, const char *fmt, ...)
{
	const char *file = p->path;
	unsigned line = 0;
	va_list ap;
	char *msg;
	int n;

	p->nerrors++;
	if (p->nerrors > CONFIG_ERRORS_MAX) {
		if (p->nerrors == CONFIG_ERRORS_MAX + 1)
			strbuf_appendf(p->err, "%s: more errors not shown; fix these first\n",
			               p->path);
		return;
	}
	if (s != NULL) {
		/* A default is parsed from a string, which has no file. */
		file = config_setting_source_file(s);
		if (file == NULL)
			file = "(built-in default)";
		line = config_setting_source_line(s);
	}
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	msg = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(msg, (size_t)n + 1, fmt, ap);
	va_end(ap);
	if (line > 0)
		strbuf_appendf(p->err, "%s:%u: %s\n", file, line, msg);
	else
		strbuf_appendf(p->err, "%s: %s\n", file, msg);
	free(msg);
}

static const char *const config_type_names[] = {
	[CONFIG_TYPE_NONE] = "nothing",   [CONFIG_TYPE_GROUP] = "a group",
	[CONFIG_TYPE_INT] = "an integer", [CONFIG_TYPE_INT64] = "an integer",
	[CONFIG_TYPE_FLOAT] = "a float",  [CONFIG_TYPE_STRING] = "a string",
	[CONFIG_TYPE_BOOL] = "a boolean", [CONFIG_TYPE_ARRAY] = "an array",
	[CONFIG_TYPE_LIST] = "a list",
};

static void
config_show_string(struct strbuf *out, const char *s)
{
	size_t i;

	strbuf_appendc(out, '"');
	for (i = 0; i < CONFIG_SHOW_MAX && s[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			strbuf_appendf(out, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			strbuf_appendf(out, "\\x%02x", c);
		else
			strbuf_appendc(out, (char)c);
	}
	strbuf_appends(out, s[i] != '\0' ? "\"..." : "\"");
}

/* Appends s's value as the file would write it, so the user can find it. */
static void
config_show_value(struct strbuf *out, const config_setting_t *s)
{
	double d;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		strbuf_appendf(out, "%d", config_setting_get_int(s));
		break;
	case CONFIG_TYPE_INT64:
		strbuf_appendf(out, "%lldL", config_setting_get_int64(s));
		break;
	case CONFIG_TYPE_FLOAT:
		/* "%g" would print 2000.0 as 2000 and the message would look wrong. */
		d = config_setting_get_float(s);
		if (d == (double)(long long)d && d > -1e15 && d < 1e15)
			strbuf_appendf(out, "%.1f", d);
		else
			strbuf_appendf(out, "%g", d);
		break;
	case CONFIG_TYPE_STRING:
		config_show_string(out, config_setting_get_string(s));
		break;
	case CONFIG_TYPE_BOOL:
		strbuf_appends(out, config_setting_get_bool(s) ? "true" : "false");
		break;
	case CONFIG_TYPE_GROUP:
		strbuf_appends(out, "{ ... }");
		break;
	case CONFIG_TYPE_ARRAY:
		strbuf_appends(out, "[ ... ]");
		break;
	case CONFIG_TYPE_LIST:
		strbuf_appends(out, "( ... )");
		break;
	default:
		strbuf_appends(out, "(no value)");
		break;
	}
}

/* "KEY: wrong type: VALUE is a string; use an integer: 100..30000 (milliseconds)" */
static void
config_wrong_type(struct config_parse *p, const config_setting_t *s, const char *key,
                  const char *want)
{
	struct strbuf v;

	strbuf_init(&v, CONFIG_MSG_MAX);
	config_show_value(&v, s);
	config_report(p, s, "%s: wrong type: %s is %s; use %s", key, v.data,
	              config_type_names[config_setting_type(s)], want);
	strbuf_release(&v);
}

static void
config_wrong_kind(struct config_parse *p, const struct config_option *o, const config_setting_t *s,
                  const char *key)
{
	const struct config_kind_ops *k = config_kind(o->kind);
	struct strbuf want;

	strbuf_init(&want, CONFIG_MSG_MAX);
	strbuf_appendf(&want, "%s %s: ", strchr("aeiou", k->type[0]) != NULL ? "an" : "a", k->type);
	k->accepted(o, &want);
	config_wrong_type(p, s, key, want.data);
	strbuf_release(&want);
}

/* Levenshtein distance, for "did you mean"; names past CONFIG_MAP_NAME_MAX are never close. */
static size_t
config_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[CONFIG_MAP_NAME_MAX + 1];

	if (la > CONFIG_MAP_NAME_MAX || lb > CONFIG_MAP_NAME_MAX)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] == b[j - 1] ? 0 : 1);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* A misspelling is at most two edits away, and not a whole short word away. */
static bool
config_close(const char *typed, const char *name)
{
	size_t d = config_distance(typed, name);

	return d <= 2 && d < strlen(name);
}

/* ---- the schema ---- */

static const struct config_section *
config_find_section(const char *name)
{
	for (size_t i = 0; i < CONFIG_NSECTIONS; i++)
		if (strcmp(config_sections[i].name, name) == 0)
			return &config_sections[i];
	return NULL;
}

static const struct config_option *
config_find_option(const char *section, const char *name)
{
	for (size_t i = 0; i < CONFIG_NOPTIONS; i++)
		if (strcmp(config_options[i].section, section) == 0 &&
		    strcmp(config_options[i].name, name) == 0)
			return &config_options[i];
	return NULL;
}

/* How the documentation spells an option: "dns.timeout", "listen[].address". */
static void
config_option_path(const struct config_option *o, struct strbuf *out)
{
	strbuf_appendf(out, "%s%s.%s", o->section,
	               config_find_section(o->section)->list ? "[]" : "", o->name);
}

/*
 * Reports a key that is not in the schema where it was found: the known keys there, and a
 * guess: a key of that name elsewhere (it was put in the wrong section), or a near spelling.
 */
static void
config_unknown_key(struct config_parse *p, const config_setting_t *s, const char *section,
                   const char *where)
{
	const char *typed = config_setting_name(s);
	struct strbuf known, guess;

	strbuf_init(&known, CONFIG_MSG_MAX);
	strbuf_init(&guess, CONFIG_MSG_MAX);
	if (section == NULL) {
		for (size_t i = 0; i < CONFIG_NSECTIONS; i++) {
			strbuf_appendf(&known, "%s%s", i > 0 ? ", " : "", config_sections[i].name);
			if (guess.len == 0 && config_close(typed, config_sections[i].name))
				strbuf_appendf(&guess, "\"%s\"", config_sections[i].name);
		}
	} else {
		for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
			if (strcmp(config_options[i].section, section) != 0)
				continue;
			strbuf_appendf(&known, "%s%s", known.len > 0 ? ", " : "",
			               config_options[i].name);
			if (guess.len == 0 && config_close(typed, config_options[i].name))
				strbuf_appendf(&guess, "\"%s\"", config_options[i].name);
		}
	}
	for (size_t i = 0; i < CONFIG_NOPTIONS && guess.len == 0; i++) {
		if (strcmp(config_options[i].name, typed) == 0)
			config_option_path(&config_options[i], &guess);
	}
	config_report(p, s, "unknown key \"%s\" in %s; known keys: %s%s%s%s", typed, where,
	              known.data, guess.len > 0 ? "; did you mean " : "",
	              guess.len > 0 ? guess.data : "", guess.len > 0 ? "?" : "");
	strbuf_release(&known);
	strbuf_release(&guess);
}

/* ---- kinds ---- */

static void
config_store_string(void *field, const char *v)
{
	const char *copy = xstrdup(v);

	memcpy(field, &copy, sizeof(copy));
}

/* Control characters in names and paths would break log lines and confuse the admin. */
static bool
config_has_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static void
config_release_string(void *field)
{
	const char *s;

	memcpy(&s, field, sizeof(s));
	free((char *)s);
}

/* Finds "NAME = literal" or "NAME: literal" in line whose low 32 bits are expect. */
static bool
config_int_in_line(const char *line, const char *name, int expect, long long *value, char *text,
                   size_t textlen)
{
	size_t namelen = strlen(name);

	for (const char *at = strstr(line, name); at != NULL; at = strstr(at + 1, name)) {
		const char *q = at + namelen;
		char *end;
		long long v;

		/* Part of a longer name, as timeout is of lookup_timeout. */
		if (at > line && (isalnum((unsigned char)at[-1]) || strchr("_-*", at[-1]) != NULL))
			continue;
		q += strspn(q, " \t");
		if (*q != '=' && *q != ':')
			continue;
		q += 1 + strspn(q + 1, " \t");
		/* Past 64 bits strtoll saturates, which every range check still rejects. */
		v = strtoll(q, &end,
		            strncasecmp(q + (*q == '-' || *q == '+'), "0x", 2) == 0 ? 16 : 10);
		if (end == q || (uint32_t)v != (uint32_t)expect)
			continue;
		*value = v;
		snprintf(text, textlen, "%.*s", (int)(end - q), q);
		return true;
	}
	return false;
}

/*
 * libconfig 1.5 reads an integer literal that does not fit 32 bits (and has no L suffix) the
 * way atoi does, keeping the low 32 bits, so 4294967396 arrives as 100 and would pass a range
 * check. This reads the literal back from s's source line; false (keep libconfig's value) when
 * the line cannot be read or holds no literal for s.
 */
static bool
config_int_literal(const config_setting_t *s, long long *value, char *text, size_t textlen)
{
	const char *file = config_setting_source_file(s);
	unsigned want = config_setting_source_line(s), n = 1;
	char line[CONFIG_LINE_MAX];
	bool found = false;
	FILE *fp;

	if (file == NULL || want == 0 || (fp = fopen(file, "r")) == NULL)
		return false;
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (n == want) {
			found = config_int_in_line(line, config_setting_name(s),
			                           config_setting_get_int(s), value, text, textlen);
			break;
		}
		/* A line longer than the buffer comes in pieces; count only real ends. */
		if (strchr(line, '\n') != NULL)
			n++;
	}
	fclose(fp);
	return found;
}

static int
config_load_int(struct config_parse *p, const struct config_option *o, const config_setting_t *s,
                const char *key, void *field)
{
	char text[32];
	long long v;
	unsigned u;

	if (config_setting_type(s) == CONFIG_TYPE_INT64) {
		v = config_setting_get_int64(s);
		snprintf(text, sizeof(text), "%lld", v);
	} else if (config_setting_type(s) == CONFIG_TYPE_INT) {
		v = config_setting_get_int(s);
		snprintf(text, sizeof(text), "%lld", v);
		config_int_literal(s, &v, text, sizeof(text));
	} else {
		config_wrong_kind(p, o, s, key);
		return -1;
	}
	if (v < o->min || v > o->max) {
		config_report(p, s, "%s: %s is out of range; use %lld..%lld (%s)", key, text,
		              o->min, o->max, o->unit);
		return -1;
	}
	u = (unsigned)v;
	memcpy(field, &u, sizeof(u));
	return 0;
}

static void
config_accepted_int(const struct config_option *o, struct strbuf *out)
{
	strbuf_appendf(out, "%lld..%lld (%s)", o->min, o->max, o->unit);
}

static int
config_load_bool(struct config_parse *p, const struct config_option *o, const config_setting_t *s,
                 const char *key, void *field)
{
	bool b;

	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		config_wrong_kind(p, o, s, key);
		return -1;
	}
	b = config_setting_get_bool(s) != 0;
	memcpy(field, &b, sizeof(b));
	return 0;
}

static void
config_accepted_bool(const struct config_option *o, struct strbuf *out)
{
	strbuf_appends(out, "true or false");
}

/* "KEY: "VALUE" is not accepted: WHY; use ACCEPTED", for a string that failed its checks. */
static void
config_not_accepted(struct config_parse *p, const struct config_option *o,
                    const config_setting_t *s, const char *key, const struct strbuf *why)
{
	struct strbuf msg;

	strbuf_init(&msg, CONFIG_MSG_MAX);
	config_show_string(&msg, config_setting_get_string(s));
	strbuf_appends(&msg, " is not accepted");
	if (why->len > 0)
		strbuf_appendf(&msg, ": %s", why->data);
	strbuf_appends(&msg, "; use ");
	config_kind(o->kind)->accepted(o, &msg);
	config_report(p, s, "%s: %s", key, msg.data);
	strbuf_release(&msg);
}

/* Shared by every kind written as one string: type check, then the kind's parse. */
static int
config_load_string(struct config_parse *p, const struct config_option *o, const config_setting_t *s,
                   const char *key, void *field)
{
	struct strbuf why;
	int rc;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		config_wrong_kind(p, o, s, key);
		return -1;
	}
	strbuf_init(&why, CONFIG_MSG_MAX);
	rc = config_kind(o->kind)->parse(o, config_setting_get_string(s), field, &why);
	if (rc == -1)
		config_not_accepted(p, o, s, key, &why);
	strbuf_release(&why);
	return rc;
}

static int
config_parse_enum(const struct config_option *o, const char *v, void *field, struct strbuf *why)
{
	for (int i = 0; o->values[i] != NULL; i++) {
		if (strcmp(o->values[i], v) == 0) {
			memcpy(field, &i, sizeof(i));
			return 0;
		}
	}
	return -1;
}

static void
config_accepted_enum(const struct config_option *o, struct strbuf *out)
{
	strbuf_appends(out, "one of ");
	for (size_t i = 0; o->values[i] != NULL; i++)
		strbuf_appendf(out, "%s\"%s\"", i > 0 ? ", " : "", o->values[i]);
}

/* No user or group name holds a space; one here is a typo or a missing quote. */
static int
config_parse_name(const struct config_option *o, const char *v, void *field, struct strbuf *why)
{
	if (v[0] == '\0' && !o->empty_ok)
		return -1;
	if (strlen(v) > CONFIG_TEXT_MAX) {
		strbuf_appendf(why, "longer than %d bytes", CONFIG_TEXT_MAX);
		return -1;
	}
	if (config_has_control(v) || strchr(v, ' ') != NULL) {
		strbuf_appends(why, "it holds a space or control character");
		return -1;
	}
	config_store_string(field, v);
	return 0;
}

static void
config_accepted_name(const struct config_option *o, struct strbuf *out)
{
	strbuf_appendf(out, "a user or group name%s", o->empty_ok ? ", or \"\"" : "");
}

static int
config_parse_path(const struct config_option *o, const char *v, void *field, struct strbuf *why)
{
	if (v[0] == '\0' && o->empty_ok) {
		config_store_string(field, v);
		return 0;
	}
	if (v[0] != '/') {
		strbuf_appends(why, "not an absolute path");
		return -1;
	}
	if (strlen(v) >= PATH_MAX) {
		strbuf_appendf(why, "longer than %d bytes", PATH_MAX - 1);
		return -1;
	}
	if (config_has_control(v)) {
		strbuf_appends(why, "it holds a control character");
		return -1;
	}
	config_store_string(field, v);
	return 0;
}

static void
config_accepted_path(const struct config_option *o, struct strbuf *out)
{
	strbuf_appendf(out, "an absolute path%s", o->empty_ok ? ", or \"\"" : "");
}

/* Sent as an HTTP header value: CR or LF would let the value add headers. */
static int
config_parse_text(const struct config_option *o, const char *v, void *field, struct strbuf *why)
{
	size_t len = strlen(v);

	if ((len == 0 && !o->empty_ok) || len > CONFIG_TEXT_MAX)
		return -1;
	for (const char *c = v; *c != '\0'; c++) {
		if (*c < 0x20 || *c > 0x7e) {
			strbuf_appends(why, "it holds a character that is not printable ASCII");
			return -1;
		}
	}
	config_store_string(field, v);
	return 0;
}

static void
config_accepted_text(const struct config_option *o, struct strbuf *out)
{
	strbuf_appendf(out, "%d..%d printable ASCII characters", o->empty_ok ? 0 : 1,
	               CONFIG_TEXT_MAX);
}

static int
config_parse_map_name(const struct config_option *o, const char *v, void *field, struct strbuf *why)
{
	size_t len = strlen(v);

	if (len == 0 && !o->empty_ok)
		return -1;
	if (len > CONFIG_MAP_NAME_MAX ||
	    strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != len)
		return -1;
	config_store_string(field, v);
	return 0;
}

static void
config_accepted_map_name(const struct config_option *o, struct strbuf *out)
{
	strbuf_appendf(out, "1..%d of the characters A-Z a-z 0-9 _ . -%s", CONFIG_MAP_NAME_MAX,
	               o->empty_ok ? ", or \"\"" : "");
}

/* The owner must keep read and write, or the daemon could not use its own socket. */
static int
config_parse_mode(const struct config_option *o, const char *v, void *field, struct strbuf *why)
{
	mode_t m;

	if (strlen(v) != 4 || v[0] != '0' || strspn(v + 1, "01234567") != 3)
		return -1;
	m = (mode_t)strtoul(v, NULL, 8);
	if (m < 0600) {
		strbuf_appends(why, "the owner needs read and write");
		return -1;
	}
	memcpy(field, &m, sizeof(m));
	return 0;
}

static void
config_accepted_mode(const struct config_option *o, struct strbuf *out)
{
	strbuf_appends(out, "an octal string \"0600\"..\"0777\", such as \"0660\"");
}

static void
config_release_address(void *field)
{
	struct config_address *a = field;

	free((char *)a->text);
	free((char *)a->host);
	free((char *)a->path);
}

/* 1..65535, decimal digits only (strtoul would take signs and spaces). */
static int
config_parse_port(const char *s, unsigned *port, struct strbuf *why)
{
	unsigned long v;

	if (s[0] == '\0' || strlen(s) > 5 || strspn(s, "0123456789") != strlen(s)) {
		strbuf_appendf(why, "the port \"%s\" is not a number 1..65535", s);
		return -1;
	}
	v = strtoul(s, NULL, 10);
	if (v < 1 || v > 65535) {
		strbuf_appendf(why, "the port %lu is out of range 1..65535", v);
		return -1;
	}
	*port = (unsigned)v;
	return 0;
}

/*
 * "IPv4:port", "[IPv6]:port"; and when def_port is not 0 also "IPv4", "[IPv6]" and a bare
 * IPv6 address. Fills a with the canonical text, so equal sockets compare equal.
 */
static int
config_parse_inet(const char *v, unsigned def_port, struct config_address *a, struct strbuf *why)
{
	char host[INET6_ADDRSTRLEN + 1], canon[INET6_ADDRSTRLEN];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *port = NULL, *colon = strchr(v, ':');
	size_t hostlen;
	int af;

	if (v[0] == '[') {
		const char *close = strchr(v, ']');

		if (close == NULL) {
			strbuf_appends(why, "no ']' after the IPv6 address");
			return -1;
		}
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0') {
			strbuf_appends(why, "expected ':' and a port after ']'");
			return -1;
		}
		v++;
		hostlen = (size_t)(close - v);
		af = AF_INET6;
	} else if (colon != NULL && strchr(colon + 1, ':') != NULL) {
		if (def_port == 0) {
			strbuf_appends(why, "an IPv6 address needs brackets: [address]:port");
			return -1;
		}
		hostlen = strlen(v);
		af = AF_INET6;
	} else {
		hostlen = colon != NULL ? (size_t)(colon - v) : strlen(v);
		port = colon != NULL ? colon + 1 : NULL;
		af = AF_INET;
	}
	if (hostlen == 0 || hostlen >= sizeof(host)) {
		strbuf_appends(why, hostlen == 0 ? "no address" : "the address is too long");
		return -1;
	}
	memcpy(host, v, hostlen);
	host[hostlen] = '\0';
	if (inet_pton(af, host, bin) != 1) {
		strbuf_appendf(why, "\"%s\" is not a numeric %s address", host,
		               af == AF_INET ? "IPv4" : "IPv6");
		return -1;
	}
	if (port == NULL && def_port == 0) {
		strbuf_appends(why, "no port");
		return -1;
	}
	a->port = def_port;
	if (port != NULL && config_parse_port(port, &a->port, why) == -1)
		return -1;
	inet_ntop(af, bin, canon, sizeof(canon));
	a->family = af == AF_INET ? CONFIG_FAMILY_INET : CONFIG_FAMILY_INET6;
	a->host = xstrdup(canon);
	a->text = af == AF_INET ? xasprintf("%s:%u", canon, a->port)
	                        : xasprintf("[%s]:%u", canon, a->port);
	return 0;
}

static int
config_parse_address(const struct config_option *o, const char *v, void *field, struct strbuf *why)
{
	struct config_address *a = field;
	const char *path;

	if (strncmp(v, "unix:", 5) != 0)
		return config_parse_inet(v, 0, a, why);
	path = v + 5;
	if (path[0] != '/') {
		strbuf_appends(why, "the socket path is not absolute");
		return -1;
	}
	/* Longer paths do not fit struct sockaddr_un; bind(2) would fail at start. */
	if (strlen(path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
		strbuf_appendf(why, "the socket path is longer than %zu bytes",
		               sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
		return -1;
	}
	if (config_has_control(path)) {
		strbuf_appends(why, "the socket path holds a control character");
		return -1;
	}
	a->family = CONFIG_FAMILY_UNIX;
	a->text = xstrdup(v);
	a->path = xstrdup(path);
	return 0;
}

static void
config_accepted_address(const struct config_option *o, struct strbuf *out)
{
	strbuf_appends(out, "\"IPv4:port\", \"[IPv6]:port\" or \"unix:/absolute/path\"");
}

static int
config_load_servers(struct config_parse *p, const struct config_option *o,
                    const config_setting_t *s, const char *key, void *field)
{
	struct config_servers *sv = field;
	struct config_address *list;
	struct strbuf csv, why;
	unsigned n;
	int rc = 0;

	if (config_setting_type(s) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(s) != CONFIG_TYPE_LIST) {
		config_wrong_kind(p, o, s, key);
		return -1;
	}
	n = (unsigned)config_setting_length(s);
	if (n > CONFIG_DNS_SERVERS_MAX) {
		config_report(p, s, "%s: %u servers is too many; use at most %d", key, n,
		              CONFIG_DNS_SERVERS_MAX);
		return -1;
	}
	list = xcalloc(n, sizeof(*list));
	sv->list = list;
	sv->count = n;
	strbuf_init(&csv, SIZE_MAX);
	strbuf_init(&why, CONFIG_MSG_MAX);
	for (unsigned i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, i);
		char *ekey = xasprintf("%s[%u]", key, i);

		strbuf_reset(&why);
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			config_wrong_type(p, e, ekey,
			                  "a string: \"IP\", \"IPv4:port\" or \"[IPv6]:port\"");
			rc = -1;
		} else if (config_parse_inet(config_setting_get_string(e), CONFIG_DNS_PORT,
		                             &list[i], &why) == -1) {
			config_not_accepted(p, o, e, ekey, &why);
			rc = -1;
		} else {
			strbuf_appendf(&csv, "%s%s", i > 0 ? "," : "", list[i].text);
		}
		free(ekey);
	}
	strbuf_release(&why);
	sv->csv = xstrdup(csv.data != NULL ? csv.data : "");
	strbuf_release(&csv);
	return rc;
}

static void
config_accepted_servers(const struct config_option *o, struct strbuf *out)
{
	strbuf_appendf(
	        out, "up to %d of \"IP\", \"IPv4:port\", \"[IPv6]:port\"; [] for /etc/resolv.conf",
	        CONFIG_DNS_SERVERS_MAX);
}

static void
config_release_servers(void *field)
{
	struct config_servers *sv = field;

	for (size_t i = 0; i < sv->count; i++)
		config_release_address((void *)&sv->list[i]);
	free((void *)sv->list);
	free((char *)sv->csv);
}

static const struct config_kind_ops config_kinds[] = {
	[CONFIG_KIND_INT] = { "integer", config_load_int, NULL, config_accepted_int, NULL },
	[CONFIG_KIND_BOOL] = { "boolean", config_load_bool, NULL, config_accepted_bool, NULL },
	[CONFIG_KIND_ENUM] = { "string", config_load_string, config_parse_enum,
	                       config_accepted_enum, NULL },
	[CONFIG_KIND_NAME] = { "string", config_load_string, config_parse_name,
	                       config_accepted_name, config_release_string },
	[CONFIG_KIND_PATH] = { "string", config_load_string, config_parse_path,
	                       config_accepted_path, config_release_string },
	[CONFIG_KIND_TEXT] = { "string", config_load_string, config_parse_text,
	                       config_accepted_text, config_release_string },
	[CONFIG_KIND_MAP_NAME] = { "string", config_load_string, config_parse_map_name,
	                           config_accepted_map_name, config_release_string },
	[CONFIG_KIND_MODE] = { "string", config_load_string, config_parse_mode,
	                       config_accepted_mode, NULL },
	[CONFIG_KIND_ADDRESS] = { "string", config_load_string, config_parse_address,
	                          config_accepted_address, config_release_address },
	[CONFIG_KIND_SERVERS] = { "array of strings", config_load_servers, NULL,
	                          config_accepted_servers, config_release_servers },
};

static const struct config_kind_ops *
config_kind(enum config_kind kind)
{
	return &config_kinds[kind];
}

/* ---- walking the tree ---- */

/* Parses "v = TEXT;" into cf, so defaults pass the same checks as values in the file. */
static const config_setting_t *
config_parse_default(config_t *cf, const char *text)
{
	char *doc = xasprintf("v = %s;", text);
	const config_setting_t *v = NULL;

	config_init(cf);
	if (config_read_string(cf, doc) == CONFIG_TRUE)
		v = config_setting_get_member(config_root_setting(cf), "v");
	free(doc);
	return v;
}

static void
config_load_option(struct config_parse *p, const struct config_option *o, const config_setting_t *s,
                   const char *key, void *field)
{
	config_t def;
	const config_setting_t *v;

	if (s != NULL) {
		config_kind(o->kind)->load(p, o, s, key, field);
		return;
	}
	v = config_parse_default(&def, o->def);
	if (v == NULL)
		config_report(p, NULL, "%s: the built-in default %s does not parse", key, o->def);
	else
		config_kind(o->kind)->load(p, o, v, key, field);
	config_destroy(&def);
}

/* Loads group (NULL when absent: every default) into base, the section's struct. */
static void
config_walk_group(struct config_parse *p, const struct config_section *sec,
                  const config_setting_t *group, const char *where, char *base)
{
	if (group != NULL) {
		for (int i = 0; i < config_setting_length(group); i++) {
			const config_setting_t *m = config_setting_get_elem(group, (unsigned)i);

			if (config_find_option(sec->name, config_setting_name(m)) == NULL)
				config_unknown_key(p, m, sec->name, where);
		}
	}
	for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
		const struct config_option *o = &config_options[i];
		const config_setting_t *m;
		char *key;

		if (strcmp(o->section, sec->name) != 0)
			continue;
		m = group != NULL ? config_setting_get_member(group, o->name) : NULL;
		key = xasprintf("%s.%s", where, o->name);
		if (m == NULL && o->def == NULL) {
			struct strbuf want;

			strbuf_init(&want, CONFIG_MSG_MAX);
			config_kind(o->kind)->accepted(o, &want);
			config_report(p, group, "%s: required key %s is missing; set it to %s",
			              where, o->name, want.data);
			strbuf_release(&want);
		} else {
			config_load_option(p, o, m, key, base + o->offset);
		}
		free(key);
	}
}

static void
config_walk_list(struct config_parse *p, size_t si, const config_setting_t *list)
{
	const struct config_section *sec = &config_sections[si];
	char *arr;
	size_t n;

	if (list == NULL) {
		list = config_parse_default(&p->list_default[si], sec->def);
		p->has_list_default[si] = true;
		if (list == NULL) {
			config_report(p, NULL, "%s: the built-in default %s does not parse",
			              sec->name, sec->def);
			return;
		}
	}
	/* libconfig reads () as a list but [] as an array: both are an empty list here. */
	if (config_setting_type(list) != CONFIG_TYPE_LIST &&
	    !(config_setting_type(list) == CONFIG_TYPE_ARRAY && config_setting_length(list) == 0)) {
		char *want = xasprintf("a list of groups: %s = %s;", sec->name, sec->def);

		config_wrong_type(p, list, sec->name, want);
		free(want);
		return;
	}
	n = (size_t)config_setting_length(list);
	if (n < sec->min) {
		config_report(p, list,
		              "%s: the list is empty; add at least one group, such as %s = %s;",
		              sec->name, sec->name, sec->def);
		return;
	}
	if (n > sec->max) {
		config_report(p, list, "%s: %zu groups is too many; use at most %u", sec->name, n,
		              sec->max);
		return;
	}
	arr = xcalloc(n, sec->elem_size);
	memcpy((char *)p->cfg + sec->array_offset, &arr, sizeof(arr));
	memcpy((char *)p->cfg + sec->count_offset, &n, sizeof(n));
	p->elems[si] = xcalloc(n, sizeof(*p->elems[si]));
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
		char *where = xasprintf("%s[%zu]", sec->name, i);

		p->elems[si][i] = e;
		if (config_setting_type(e) != CONFIG_TYPE_GROUP)
			config_wrong_type(p, e, where, "a group: { key = value; ... }");
		else
			config_walk_group(p, sec, e, where, arr + i * sec->elem_size);
		free(where);
	}
}

static void
config_walk_root(struct config_parse *p, const config_setting_t *root)
{
	for (int i = 0; i < config_setting_length(root); i++) {
		const config_setting_t *m = config_setting_get_elem(root, (unsigned)i);

		if (config_find_section(config_setting_name(m)) == NULL)
			config_unknown_key(p, m, NULL, "the top level");
	}
	for (size_t si = 0; si < CONFIG_NSECTIONS; si++) {
		const struct config_section *sec = &config_sections[si];
		const config_setting_t *s = config_setting_get_member(root, sec->name);

		if (sec->list) {
			config_walk_list(p, si, s);
		} else if (s != NULL && config_setting_type(s) != CONFIG_TYPE_GROUP) {
			char *want = xasprintf("a group: %s: { key = value; ... };", sec->name);

			config_wrong_type(p, s, sec->name, want);
			free(want);
		} else {
			config_walk_group(p, sec, s, sec->name, (char *)p->cfg);
		}
	}
}

/* ---- checks across options ---- */

static size_t
config_section_index(const char *name)
{
	return (size_t)(config_find_section(name) - config_sections);
}

/* A member of element i of a list section, or the element itself, for a line number. */
static const config_setting_t *
config_elem_member(struct config_parse *p, size_t si, size_t i, const char *name)
{
	const config_setting_t *m = config_setting_get_member(p->elems[si][i], name);

	return m != NULL ? m : p->elems[si][i];
}

static void
config_check_maps(struct config_parse *p)
{
	const struct config *cfg = p->cfg;
	size_t si = config_section_index("maps");

	for (size_t i = 0; i < cfg->nmaps; i++) {
		for (size_t j = 0; j < i && cfg->maps[i].name != NULL; j++) {
			if (cfg->maps[j].name == NULL ||
			    strcmp(cfg->maps[i].name, cfg->maps[j].name) != 0)
				continue;
			config_report(
			        p, config_elem_member(p, si, i, "name"),
			        "maps[%zu].name: \"%s\" is already the name of maps[%zu] (line "
			        "%u); give each map its own name",
			        i, cfg->maps[i].name, j,
			        config_setting_source_line(config_elem_member(p, si, j, "name")));
			break;
		}
	}
}

/* A wildcard takes its port on every address of its family, so a second bind would fail. */
static bool
config_same_socket(const struct config_address *a, const struct config_address *b)
{
	if (strcmp(a->text, b->text) == 0)
		return true;
	if (a->family != b->family || a->family == CONFIG_FAMILY_UNIX || a->port != b->port)
		return false;
	return strcmp(a->host, "0.0.0.0") == 0 || strcmp(a->host, "::") == 0 ||
	       strcmp(b->host, "0.0.0.0") == 0 || strcmp(b->host, "::") == 0;
}

static void
config_check_listener_map(struct config_parse *p, size_t si, size_t i)
{
	/* The array is still this load's to fill in: it is const only to the config's users. */
	struct config_listener *l = (struct config_listener *)&p->cfg->listeners[i];
	const struct config *cfg = p->cfg;
	struct strbuf known;
	const char *guess = NULL;

	if (l->map == NULL)
		return;
	if (l->protocol == CONFIG_PROTOCOL_SOCKETMAP) {
		if (config_setting_get_member(p->elems[si][i], "map") != NULL)
			config_report(
			        p, config_elem_member(p, si, i, "map"),
			        "listen[%zu].map: a socketmap listener takes the map name from "
			        "each request; remove map, or use protocol = \"tcp_table\"",
			        i);
		return;
	}
	strbuf_init(&known, CONFIG_MSG_MAX);
	for (size_t j = 0; j < cfg->nmaps; j++) {
		if (cfg->maps[j].name == NULL)
			continue;
		if (strcmp(cfg->maps[j].name, l->map) == 0) {
			l->map_index = j;
			strbuf_release(&known);
			return;
		}
		strbuf_appendf(&known, "%s\"%s\"", known.len > 0 ? ", " : "", cfg->maps[j].name);
		if (guess == NULL && config_close(l->map, cfg->maps[j].name))
			guess = cfg->maps[j].name;
	}
	if (l->map[0] == '\0')
		config_report(p, p->elems[si][i],
		              "listen[%zu]: a tcp_table listener needs map = \"NAME\" (tcp_table "
		              "requests carry no map name); use one of the maps: %s",
		              i, known.data != NULL ? known.data : "(none)");
	else
		config_report(p, config_elem_member(p, si, i, "map"),
		              "listen[%zu].map: \"%s\" is not the name of a map; use one of the "
		              "maps: %s%s%s%s",
		              i, l->map, known.data != NULL ? known.data : "(none)",
		              guess != NULL ? "; did you mean \"" : "", guess != NULL ? guess : "",
		              guess != NULL ? "\"?" : "");
	strbuf_release(&known);
}

static void
config_check_listeners(struct config_parse *p)
{
	const struct config *cfg = p->cfg;
	size_t si = config_section_index("listen");

	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_address *a = &cfg->listeners[i].address;

		if (config_setting_type(p->elems[si][i]) != CONFIG_TYPE_GROUP)
			continue;
		config_check_listener_map(p, si, i);
		if (a->text == NULL)
			continue;
		if (a->family != CONFIG_FAMILY_UNIX &&
		    config_setting_get_member(p->elems[si][i], "mode") != NULL)
			config_report(
			        p, config_elem_member(p, si, i, "mode"),
			        "listen[%zu].mode: mode applies only to unix: addresses; remove "
			        "it for \"%s\"",
			        i, a->text);
		for (size_t j = 0; j < i; j++) {
			const struct config_address *b = &cfg->listeners[j].address;
			unsigned line;

			if (b->text == NULL || !config_same_socket(a, b))
				continue;
			line = config_setting_source_line(config_elem_member(p, si, j, "address"));
			if (strcmp(a->text, b->text) == 0)
				config_report(
				        p, config_elem_member(p, si, i, "address"),
				        "listen[%zu].address: \"%s\" is already the address of "
				        "listen[%zu] (line %u); give each listener its own address",
				        i, a->text, j, line);
			else
				config_report(
				        p, config_elem_member(p, si, i, "address"),
				        "listen[%zu].address: \"%s\" overlaps the wildcard address "
				        "\"%s\" of listen[%zu] (line %u); give each listener its "
				        "own port",
				        i, a->text, b->text, j, line);
			break;
		}
	}
}

/* ---- the API ---- */

/* Builds a struct config from a parsed tree; NULL with the errors in err. */
static struct config *
config_build(config_t *cf, const char *path, struct strbuf *err)
{
	struct config_parse p = { .path = path, .err = err };

	p.cfg = xcalloc(1, sizeof(*p.cfg));
	config_walk_root(&p, config_root_setting(cf));
	config_check_maps(&p);
	config_check_listeners(&p);
	for (size_t si = 0; si < CONFIG_NSECTIONS; si++) {
		free(p.elems[si]);
		if (p.has_list_default[si])
			config_destroy(&p.list_default[si]);
	}
	if (p.nerrors > 0) {
		config_free(p.cfg);
		return NULL;
	}
	return p.cfg;
}

const struct config *
config_load(const char *path, struct strbuf *err)
{
	struct config *cfg;
	struct stat st;
	config_t cf;
	FILE *fp;

	/* libconfig says only "file I/O error"; say why. */
	fp = fopen(path, "r");
	if (fp == NULL) {
		strbuf_appendf(err, "%s: cannot open: %s\n", path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
		strbuf_appendf(err, "%s: is a directory; give the configuration file\n", path);
		fclose(fp);
		return NULL;
	}
	fclose(fp);
	config_init(&cf);
	if (config_read_file(&cf, path) == CONFIG_FALSE) {
		const char *file = config_error_file(&cf);

		if (config_error_type(&cf) == CONFIG_ERR_FILE_IO)
			strbuf_appendf(err, "%s: cannot read: %s\n", file != NULL ? file : path,
			               config_error_text(&cf));
		else
			strbuf_appendf(
			        err,
			        "%s:%d: %s (libconfig; the mistake may be on this line or just "
			        "before it)\n",
			        file != NULL ? file : path, config_error_line(&cf),
			        config_error_text(&cf));
		config_destroy(&cf);
		return NULL;
	}
	cfg = config_build(&cf, path, err);
	config_destroy(&cf);
	if (cfg != NULL)
		cfg->path = xstrdup(path);
	return cfg;
}

const struct config *
config_defaults(void)
{
	struct config *cfg;
	struct strbuf err;
	config_t cf;

	strbuf_init(&err, CONFIG_MSG_MAX);
	config_init(&cf);
	cfg = config_build(&cf, "(built-in defaults)", &err);
	config_destroy(&cf);
	if (cfg == NULL)
		fatalx("config: the built-in defaults are invalid: %s", err.data);
	strbuf_release(&err);
	return cfg;
}

static void
config_release_section(const struct config_section *sec, char *base)
{
	for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
		const struct config_option *o = &config_options[i];

		if (strcmp(o->section, sec->name) == 0 && config_kind(o->kind)->release != NULL)
			config_kind(o->kind)->release(base + o->offset);
	}
}

void
config_free(const struct config *cfg)
{
	char *base = (char *)cfg;

	if (cfg == NULL)
		return;
	for (size_t si = 0; si < CONFIG_NSECTIONS; si++) {
		const struct config_section *sec = &config_sections[si];
		char *arr;
		size_t n;

		if (!sec->list) {
			config_release_section(sec, base);
			continue;
		}
		memcpy(&arr, base + sec->array_offset, sizeof(arr));
		memcpy(&n, base + sec->count_offset, sizeof(n));
		for (size_t i = 0; i < n; i++)
			config_release_section(sec, arr + i * sec->elem_size);
		free(arr);
	}
	free((char *)cfg->path);
	free(base);
}

int
config_check(const char *path, FILE *out)
{
	const struct config *cfg;
	struct strbuf err;

	strbuf_init(&err, SIZE_MAX);
	cfg = config_load(path, &err);
	if (cfg == NULL) {
		fputs(err.data != NULL ? err.data : "", out);
		fprintf(out, "configuration file %s test failed\n", path);
		strbuf_release(&err);
		return 1;
	}
	config_free(cfg);
	strbuf_release(&err);
	fprintf(out, "configuration file %s test is successful\n", path);
	return 0;
}

const struct config_option *
config_schema(size_t *count)
{
	*count = CONFIG_NOPTIONS;
	return config_options;
}

void
config_dump_schema(FILE *out)
{
	struct strbuf sb;

	strbuf_init(&sb, SIZE_MAX);
	fputs("# path\ttype\tdefault\taccepted\tdescription\n", out);
	for (size_t si = 0; si < CONFIG_NSECTIONS; si++) {
		const struct config_section *sec = &config_sections[si];

		if (sec->list)
			fprintf(out, "%s\tlist of groups\t%s\t%u..%u groups\t%s\n", sec->name,
			        sec->def, sec->min, sec->max, sec->doc);
		else
			fprintf(out, "%s\tgroup\t-\t-\t%s\n", sec->name, sec->doc);
		for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
			const struct config_option *o = &config_options[i];

			if (strcmp(o->section, sec->name) != 0)
				continue;
			strbuf_reset(&sb);
			config_option_path(o, &sb);
			strbuf_appendf(&sb, "\t%s\t%s\t", config_kind(o->kind)->type,
			               o->def != NULL ? o->def : "(required)");
			config_kind(o->kind)->accepted(o, &sb);
			fprintf(out, "%s\t%s\n", sb.data, o->doc);
		}
	}
	strbuf_release(&sb);
}
