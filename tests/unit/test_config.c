/* test_config.c: unit tests for the mtastsd.conf schema table and loader. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/strbuf.h"
#include "base/xmalloc.h"
#include "config/config.h"

#define CHECK(name, cond)                                                                          \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail_msg("case \"%s\": %s", (name), #cond);                                \
	} while (0)

/* Writes text to a new temporary file and returns its name (to free and unlink). */
static char *
write_temp(const char *text)
{
	const char *dir = getenv("TMPDIR");
	char *path = xasprintf("%s/test_config.XXXXXX", dir != NULL ? dir : "/tmp");
	int fd = mkstemp(path);
	size_t len = strlen(text);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

/* ---- files that load ---- */

static void
check_defaults(const struct config *c)
{
	assert_int_equal(c->daemon.log_level, LOG_LEVEL_INFO);
	assert_string_equal(c->daemon.user, "");
	assert_string_equal(c->daemon.group, "");
	assert_string_equal(c->daemon.pid_file, "");
	assert_string_equal(c->daemon.state_dir, "/var/lib/mtastsd");
	assert_string_equal(c->daemon.runtime_dir, "/run/mtastsd");
	assert_int_equal(c->nlisteners, 1);
	assert_int_equal(c->listeners[0].protocol, CONFIG_PROTOCOL_SOCKETMAP);
	assert_int_equal(c->listeners[0].address.family, CONFIG_FAMILY_INET);
	assert_string_equal(c->listeners[0].address.host, "127.0.0.1");
	assert_int_equal(c->listeners[0].address.port, 8461);
	assert_null(c->listeners[0].address.path);
	assert_string_equal(c->listeners[0].map, "");
	assert_int_equal(c->nmaps, 1);
	assert_string_equal(c->maps[0].name, "postfix");
	assert_false(c->maps[0].strict_testing);
	assert_false(c->maps[0].tlsrpt);
	assert_int_equal(c->limits.request_size, 4096);
	assert_int_equal(c->limits.max_connections, 1024);
	assert_int_equal(c->limits.max_connections_per_ip, 256);
	assert_int_equal(c->limits.idle_timeout_s, 300);
	assert_int_equal(c->limits.lookup_timeout_ms, 3000);
	assert_int_equal(c->limits.max_pending_per_connection, 16);
	assert_int_equal(c->limits.shutdown_timeout_ms, 5000);
	assert_int_equal(c->dns.servers.count, 0);
	assert_string_equal(c->dns.servers.csv, "");
	assert_int_equal(c->dns.timeout_ms, 2000);
	assert_int_equal(c->dns.tries, 2);
	assert_int_equal(c->dns.max_ttl_s, 3600);
	assert_int_equal(c->dns.negative_ttl_s, 300);
	assert_int_equal(c->dns.servfail_ttl_s, 30);
	assert_int_equal(c->dns.cache_size, 10000);
	assert_int_equal(c->dns.on_failure, CONFIG_DNS_FAILURE_NOTFOUND);
	assert_int_equal(c->fetch.timeout_ms, 10000);
	assert_string_equal(c->fetch.ca_file, "");
	assert_int_equal(c->fetch.backoff_s, 300);
	assert_int_equal(c->fetch.max_parallel, 64);
	assert_string_equal(c->fetch.user_agent, "mtastsd/" PACKAGE_VERSION);
	assert_int_equal(c->cache.backend, CONFIG_CACHE_SQLITE);
	assert_int_equal(c->cache.max_entries, 1000000);
	assert_int_equal(c->cache.recheck_interval_s, 300);
	assert_string_equal(c->sqlite.path, "/var/lib/mtastsd/cache.db");
	assert_int_equal(c->sqlite.write_interval_ms, 1000);
	assert_string_equal(c->redis.address.text, "127.0.0.1:6379");
	assert_int_equal(c->redis.database, 0);
	assert_string_equal(c->redis.prefix, "mtasts:");
	assert_string_equal(c->redis.user, "");
	assert_string_equal(c->redis.password, "");
	assert_int_equal(c->redis.timeout_ms, 1000);
	assert_true(c->refresh.enable);
	assert_int_equal(c->refresh.window_s, 3600);
	assert_int_equal(c->refresh.idle_s, 2592000);
	assert_int_equal(c->refresh.concurrency, 4);
	assert_int_equal(c->refresh.scan_interval_s, 60);
}

static const char full_text[] =
        "daemon: {\n"
        "  log_level = \"debug\"; user = \"mtastsd\"; group = \"mtastsd\";\n"
        "  pid_file = \"/run/mtastsd.pid\"; state_dir = \"/srv/state\"; runtime_dir = "
        "\"/srv/run\";\n"
        "};\n"
        "listen = (\n"
        "  { protocol = \"socketmap\"; address = \"127.0.0.1:8461\"; },\n"
        "  { protocol = \"socketmap\"; address = \"unix:/run/mtastsd/socketmap.sock\"; mode = "
        "\"0660\"; },\n"
        "  { protocol = \"tcp_table\"; address = \"[::1]:8462\"; map = \"strict\"; },\n"
        "  { address = \"[0:0::1]:8463\"; }\n"
        ");\n"
        "maps = (\n"
        "  { name = \"postfix\"; },\n"
        "  { name = \"strict\"; strict_testing = true; tlsrpt = true; }\n"
        ");\n"
        "limits: { request_size = 65536; max_connections = 1; max_connections_per_ip = 100000;\n"
        "  idle_timeout = 100; lookup_timeout = 60000; max_pending_per_connection = 1024;\n"
        "  shutdown_timeout = 0; };\n"
        "dns: { servers = [\"192.0.2.1\", \"192.0.2.2:5353\", \"[2001:db8::1]:53\", "
        "\"2001:DB8::2\",\n"
        "  \"[::1]\"]; timeout = 100; tries = 10; max_ttl = 0; negative_ttl = 86400;\n"
        "  servfail_ttl = 3600; cache_size = 0; on_failure = \"temp\"; };\n"
        "fetch: { timeout = 1000; ca_file = \"/etc/ssl/ca.pem\"; backoff = 86400; max_parallel = "
        "10000;\n"
        "  user_agent = \"test agent/1.0\"; };\n"
        "cache: { backend = \"memory\"; max_entries = 100000000; recheck_interval = 0; };\n"
        "sqlite: { path = \"/srv/cache.db\"; write_interval = 10; };\n"
        "redis: { address = \"unix:/run/redis.sock\"; database = 3; prefix = \"\"; user = "
        "\"relay\";\n"
        "  password = \"s3cret\"; timeout = 60000; };\n"
        "refresh: { enable = false; window = 31557600; idle = 60; concurrency = 1000;\n"
        "  scan_interval = 1; };\n";

static void
check_full(const struct config *c)
{
	const struct config_listener *l = c->listeners;

	assert_int_equal(c->daemon.log_level, LOG_LEVEL_DEBUG);
	assert_string_equal(c->daemon.user, "mtastsd");
	assert_string_equal(c->daemon.group, "mtastsd");
	assert_string_equal(c->daemon.pid_file, "/run/mtastsd.pid");
	assert_string_equal(c->daemon.state_dir, "/srv/state");
	assert_string_equal(c->daemon.runtime_dir, "/srv/run");

	assert_int_equal(c->nlisteners, 4);
	assert_int_equal(l[0].protocol, CONFIG_PROTOCOL_SOCKETMAP);
	assert_string_equal(l[0].address.text, "127.0.0.1:8461");
	assert_int_equal(l[1].address.family, CONFIG_FAMILY_UNIX);
	assert_string_equal(l[1].address.path, "/run/mtastsd/socketmap.sock");
	assert_string_equal(l[1].address.text, "unix:/run/mtastsd/socketmap.sock");
	assert_null(l[1].address.host);
	assert_int_equal(l[1].address.port, 0);
	assert_int_equal(l[1].mode, 0660);
	assert_int_equal(l[2].protocol, CONFIG_PROTOCOL_TCP_TABLE);
	assert_int_equal(l[2].address.family, CONFIG_FAMILY_INET6);
	assert_string_equal(l[2].address.host, "::1");
	assert_int_equal(l[2].address.port, 8462);
	assert_string_equal(l[2].address.text, "[::1]:8462");
	assert_string_equal(l[2].map, "strict");
	assert_int_equal(l[2].map_index, 1);
	/* protocol defaults to socketmap; the host is canonicalised. */
	assert_int_equal(l[3].protocol, CONFIG_PROTOCOL_SOCKETMAP);
	assert_string_equal(l[3].address.text, "[::1]:8463");
	assert_int_equal(l[3].mode, 0666);

	assert_int_equal(c->nmaps, 2);
	assert_string_equal(c->maps[0].name, "postfix");
	assert_false(c->maps[0].strict_testing);
	assert_string_equal(c->maps[1].name, "strict");
	assert_true(c->maps[1].strict_testing);
	assert_true(c->maps[1].tlsrpt);

	assert_int_equal(c->limits.request_size, 65536);
	assert_int_equal(c->limits.max_connections, 1);
	assert_int_equal(c->limits.max_connections_per_ip, 100000);
	assert_int_equal(c->limits.idle_timeout_s, 100);
	assert_int_equal(c->limits.lookup_timeout_ms, 60000);
	assert_int_equal(c->limits.max_pending_per_connection, 1024);
	assert_int_equal(c->limits.shutdown_timeout_ms, 0);

	assert_int_equal(c->dns.servers.count, 5);
	assert_string_equal(c->dns.servers.list[0].host, "192.0.2.1");
	assert_int_equal(c->dns.servers.list[0].port, 53);
	assert_int_equal(c->dns.servers.list[1].port, 5353);
	assert_int_equal(c->dns.servers.list[2].family, CONFIG_FAMILY_INET6);
	assert_string_equal(c->dns.servers.list[3].host, "2001:db8::2");
	assert_string_equal(c->dns.servers.csv, "192.0.2.1:53,192.0.2.2:5353,[2001:db8::1]:53,"
	                                        "[2001:db8::2]:53,[::1]:53");
	assert_int_equal(c->dns.timeout_ms, 100);
	assert_int_equal(c->dns.tries, 10);
	assert_int_equal(c->dns.max_ttl_s, 0);
	assert_int_equal(c->dns.negative_ttl_s, 86400);
	assert_int_equal(c->dns.servfail_ttl_s, 3600);
	assert_int_equal(c->dns.cache_size, 0);
	assert_int_equal(c->dns.on_failure, CONFIG_DNS_FAILURE_TEMP);

	assert_int_equal(c->fetch.timeout_ms, 1000);
	assert_string_equal(c->fetch.ca_file, "/etc/ssl/ca.pem");
	assert_int_equal(c->fetch.backoff_s, 86400);
	assert_int_equal(c->fetch.max_parallel, 10000);
	assert_string_equal(c->fetch.user_agent, "test agent/1.0");

	assert_int_equal(c->cache.backend, CONFIG_CACHE_MEMORY);
	assert_string_equal(c->sqlite.path, "/srv/cache.db");
	assert_int_equal(c->sqlite.write_interval_ms, 10);
	assert_string_equal(c->redis.address.path, "/run/redis.sock");
	assert_int_equal(c->redis.database, 3);
	assert_string_equal(c->redis.prefix, "");
	assert_string_equal(c->redis.user, "relay");
	assert_string_equal(c->redis.password, "s3cret");
	assert_int_equal(c->redis.timeout_ms, 60000);
	assert_false(c->refresh.enable);
	assert_int_equal(c->refresh.window_s, 31557600);
	assert_int_equal(c->refresh.idle_s, 60);
	assert_int_equal(c->refresh.concurrency, 1000);
	assert_int_equal(c->refresh.scan_interval_s, 1);
	assert_int_equal(c->cache.max_entries, 100000000);
	assert_int_equal(c->cache.recheck_interval_s, 0);
}

static void
check_maps_only(const struct config *c)
{
	assert_int_equal(c->nlisteners, 1);
	assert_string_equal(c->listeners[0].address.text, "127.0.0.1:8461");
	assert_int_equal(c->nmaps, 1);
	assert_string_equal(c->maps[0].name, "smtp-out");
	assert_true(c->maps[0].tlsrpt);
}

static void
check_listen_only(const struct config *c)
{
	assert_int_equal(c->nlisteners, 1);
	assert_int_equal(c->listeners[0].protocol, CONFIG_PROTOCOL_TCP_TABLE);
	assert_string_equal(c->listeners[0].map, "postfix");
	assert_int_equal(c->listeners[0].map_index, 0);
	assert_int_equal(c->nmaps, 1);
	assert_string_equal(c->maps[0].name, "postfix");
}

/* 64-bit and hexadecimal integer literals are integers too. */
static void
check_int_forms(const struct config *c)
{
	assert_int_equal(c->limits.request_size, 4096);
	assert_int_equal(c->dns.cache_size, 16);
	assert_int_equal(c->cache.max_entries, 100000000);
}

/* A string that names an option elsewhere does not confuse the literal read-back. */
static void
check_same_line(const struct config *c)
{
	assert_int_equal(c->dns.timeout_ms, 150);
	assert_int_equal(c->fetch.timeout_ms, 2000);
}

static void
check_empty_array_list(const struct config *c)
{
	assert_int_equal(c->dns.servers.count, 0);
	assert_string_equal(c->dns.servers.csv, "");
}

static void
check_servers_list(const struct config *c)
{
	assert_int_equal(c->dns.servers.count, 1);
	assert_string_equal(c->dns.servers.csv, "192.0.2.53:53");
}

static void
check_modes(const struct config *c)
{
	assert_int_equal(c->listeners[0].mode, 0600);
	assert_int_equal(c->listeners[1].mode, 0777);
}

struct ok_case {
	const char *name;
	const char *text;
	void (*check)(const struct config *c);
};

static const struct ok_case ok_cases[] = {
	{ "empty file: every default", "", check_defaults },
	{ "comments only", "# nothing\n// still nothing\n/* and more */\n", check_defaults },
	{ "every option set, boundaries and list forms", full_text, check_full },
	{ "maps without listen: the default listener",
	  "maps = ( { name = \"smtp-out\"; tlsrpt = true; } );\n", check_maps_only },
	{ "listen without maps: the default map serves a tcp_table listener",
	  "listen = ( { protocol = \"tcp_table\"; address = \"127.0.0.1:8462\"; map = \"postfix\"; "
	  "} );\n",
	  check_listen_only },
	{ "64-bit and hex integer literals",
	  "limits: { request_size = 4096L; };\ndns: { cache_size = 0x10; };\n"
	  "cache: { max_entries = 100000000L; };\n",
	  check_int_forms },
	{ "same key name in two sections on one line",
	  "dns: { timeout = 150; }; fetch: { timeout = 2000; };\n", check_same_line },
	{ "dns.servers as an empty list", "dns: { servers = (); };\n", check_empty_array_list },
	{ "dns.servers as a list of strings", "dns: { servers = ( \"192.0.2.53\" ); };\n",
	  check_servers_list },
	{ "unix modes 0600 and 0777",
	  "listen = ( { address = \"unix:/tmp/a.sock\"; mode = \"0600\"; },\n"
	  "  { address = \"unix:/tmp/b.sock\"; mode = \"0777\"; } );\n",
	  check_modes },
};

static void
test_ok_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
		const struct ok_case *tc = &ok_cases[i];
		char *path = write_temp(tc->text);
		struct strbuf err;
		const struct config *c;

		strbuf_init(&err, 1 << 16);
		c = config_load(path, &err);
		if (c == NULL)
			fail_msg("case \"%s\": load failed:\n%s", tc->name, err.data);
		CHECK(tc->name, err.len == 0);
		CHECK(tc->name, strcmp(c->path, path) == 0);
		tc->check(c);
		config_free(c);
		strbuf_release(&err);
		unlink(path);
		free(path);
	}
}

/* ---- files that must not load ---- */

struct bad_case {
	const char *name;
	const char *text;
	unsigned line;        /* the line the error must name (0: the file, without a line) */
	const char *key;      /* the key the error must name */
	const char *value;    /* the bad value, as the error must quote it */
	const char *accepted; /* what the error must offer instead */
};

#define S64 "0123456789012345678901234567890123456789012345678901234567890123"

static const struct bad_case bad_cases[] = {
	/* Type mismatches, every kind. */
	{ "int given a string", "\ndns: { timeout = \"2000\"; };\n", 2, "dns.timeout", "\"2000\"",
	  "use an integer: 100..30000 (milliseconds)" },
	{ "int given a float", "dns: {\n timeout = 2000.0;\n};\n", 2, "dns.timeout",
	  "2000.0 is a float", "100..30000 (milliseconds)" },
	{ "int given a fraction", "dns: { timeout = 2.5e3; };\n", 1, "dns.timeout", "2500.0",
	  "100..30000" },
	{ "int given a boolean", "limits: { idle_timeout = true; };\n", 1, "limits.idle_timeout",
	  "true is a boolean", "100..86400 (seconds)" },
	{ "int given a group", "cache: { max_entries = { a = 1; }; };\n", 1, "cache.max_entries",
	  "is a group", "1..100000000 (entries)" },
	{ "int given an array", "cache: { max_entries = [1]; };\n", 1, "cache.max_entries",
	  "is an array", "use an integer" },
	{ "bool given a string", "maps = ( { name = \"p\"; tlsrpt = \"yes\"; } );\n", 1,
	  "maps[0].tlsrpt", "\"yes\" is a string", "use a boolean: true or false" },
	{ "bool given an integer", "maps = ( { name = \"p\";\n strict_testing = 1; } );\n", 2,
	  "maps[0].strict_testing", "1 is an integer", "true or false" },
	{ "enum given an integer", "daemon: { log_level = 3; };\n", 1, "daemon.log_level",
	  "3 is an integer", "use a string: one of \"err\", \"warn\", \"info\", \"debug\"" },
	{ "string given a boolean", "daemon: { user = false; };\n", 1, "daemon.user",
	  "false is a boolean", "use a string" },
	{ "mode given an integer", "listen = ( { address = \"unix:/tmp/s\"; mode = 0660; } );\n", 1,
	  "listen[0].mode", "660 is an integer", "an octal string \"0600\"..\"0777\"" },
	{ "servers given a string", "dns: { servers = \"192.0.2.1\"; };\n", 1, "dns.servers",
	  "is a string", "use an array of strings" },
	{ "servers given integers", "dns: { servers = [ 1 ]; };\n", 1, "dns.servers[0]",
	  "1 is an integer", "use a string: \"IP\", \"IPv4:port\" or \"[IPv6]:port\"" },
	{ "section given a scalar", "\n\ndns = 5;\n", 3, "dns", "5 is an integer",
	  "use a group: dns: {" },
	{ "list section given a group", "listen: { address = \"127.0.0.1:1\"; };\n", 1, "listen",
	  "is a group", "use a list of groups: listen = (" },
	{ "list element given a string", "listen = ( \"127.0.0.1:8461\" );\n", 1, "listen[0]",
	  "\"127.0.0.1:8461\" is a string", "use a group" },

	/* Out of range, low and high. */
	{ "int below range", "dns: { timeout = 0; };\n", 1, "dns.timeout", "0 is out of range",
	  "use 100..30000 (milliseconds)" },
	{ "int above range", "dns: { timeout = 30001; };\n", 1, "dns.timeout",
	  "30001 is out of range", "use 100..30000 (milliseconds)" },
	{ "request_size below range", "limits: { request_size = 1023; };\n", 1,
	  "limits.request_size", "1023", "1024..65536 (bytes)" },
	{ "request_size above range", "limits: { request_size = 65537; };\n", 1,
	  "limits.request_size", "65537", "1024..65536 (bytes)" },
	{ "negative int", "fetch: { backoff = -1; };\n", 1, "fetch.backoff", "-1 is out of range",
	  "0..86400 (seconds)" },
	{ "64-bit literal above range", "cache: { max_entries = 99999999999L; };\n", 1,
	  "cache.max_entries", "99999999999 is out of range", "1..100000000 (entries)" },
	/* libconfig 1.5 keeps the low 32 bits: 4294967396 would arrive as 100. */
	{ "int past 32 bits that wraps into range", "dns: { cache_size = 4294967396; };\n", 1,
	  "dns.cache_size", "4294967396 is out of range", "0..10000000 (entries)" },
	{ "int past 64 bits", "dns: { tries = 99999999999999999999999; };\n", 1, "dns.tries",
	  "is out of range", "1..10 (tries)" },

	/* Unknown keys. */
	{ "unknown top-level key, misspelt", "daemon: {};\n\ncahce: { backend = \"memory\"; };\n",
	  3, "unknown key \"cahce\" in the top level",
	  "known keys: daemon, listen, maps, limits, dns, fetch, cache",
	  "did you mean \"cache\"?" },
	{ "unknown nested key, misspelt", "dns: {\n  timeuot = 5;\n};\n", 2,
	  "unknown key \"timeuot\" in dns", "known keys: servers, timeout, tries",
	  "did you mean \"timeout\"?" },
	{ "unknown key in a list element",
	  "listen = ( { address = \"127.0.0.1:1\"; prtocol = \"socketmap\"; } );\n", 1,
	  "unknown key \"prtocol\" in listen[0]", "known keys: protocol, address, mode, map",
	  "did you mean \"protocol\"?" },
	{ "option at the top level", "log_level = \"debug\";\n", 1,
	  "unknown key \"log_level\" in the top level", "known keys: daemon",
	  "did you mean daemon.log_level?" },
	{ "option in the wrong section", "dns: { backoff = 300; };\n", 1,
	  "unknown key \"backoff\" in dns", "known keys: servers", "did you mean fetch.backoff?" },

	/* Bad enum strings. */
	{ "bad log level", "daemon: { log_level = \"verbose\"; };\n", 1, "daemon.log_level",
	  "\"verbose\" is not accepted", "use one of \"err\", \"warn\", \"info\", \"debug\"" },
	{ "bad protocol", "listen = ( { protocol = \"smtp\"; address = \"127.0.0.1:1\"; } );\n", 1,
	  "listen[0].protocol", "\"smtp\"", "one of \"socketmap\", \"tcp_table\"" },
	{ "bad on_failure", "dns: { on_failure = \"TEMP\"; };\n", 1, "dns.on_failure", "\"TEMP\"",
	  "one of \"notfound\", \"temp\"" },
	{ "unknown backend", "cache: { backend = \"mysql\"; };\n", 1, "cache.backend", "\"mysql\"",
	  "one of \"memory\", \"sqlite\", \"redis\"" },
	{ "redis address without port", "redis: { address = \"127.0.0.1\"; };\n", 1,
	  "redis.address", "\"127.0.0.1\" is not accepted: no port",
	  "\"IPv4:port\", \"[IPv6]:port\" or \"unix:/absolute/path\"" },
	{ "sqlite path relative", "sqlite: { path = \"cache.db\"; };\n", 1, "sqlite.path",
	  "\"cache.db\"", "absolute" },
	{ "refresh window zero", "refresh: { window = 0; };\n", 1, "refresh.window", "0",
	  "1..31557600" },
	{ "refresh enable not bool", "refresh: { enable = \"yes\"; };\n", 1, "refresh.enable",
	  "\"yes\"", "true or false" },

	/* Bad addresses. */
	{ "inet address without port", "listen = ( { address = \"127.0.0.1\"; } );\n", 1,
	  "listen[0].address", "\"127.0.0.1\" is not accepted: no port",
	  "\"IPv4:port\", \"[IPv6]:port\" or \"unix:/absolute/path\"" },
	{ "port 0", "listen = ( { address = \"127.0.0.1:0\"; } );\n", 1, "listen[0].address",
	  "the port 0 is out of range 1..65535", "\"IPv4:port\"" },
	{ "port 65536", "listen = ( { address = \"127.0.0.1:65536\"; } );\n", 1,
	  "listen[0].address", "65536", "\"IPv4:port\"" },
	{ "port with junk", "listen = ( { address = \"127.0.0.1:80x\"; } );\n", 1,
	  "listen[0].address", "\"80x\" is not a number", "\"IPv4:port\"" },
	{ "host name instead of an address", "listen = ( { address = \"localhost:8461\"; } );\n", 1,
	  "listen[0].address", "\"localhost\" is not a numeric IPv4 address", "\"IPv4:port\"" },
	{ "IPv6 without brackets", "listen = ( { address = \"::1:8461\"; } );\n", 1,
	  "listen[0].address", "needs brackets", "\"[IPv6]:port\"" },
	{ "IPv6 without port", "listen = ( { address = \"[::1]\"; } );\n", 1, "listen[0].address",
	  "no port", "\"[IPv6]:port\"" },
	{ "IPv6 without closing bracket", "listen = ( { address = \"[::1:8461\"; } );\n", 1,
	  "listen[0].address", "no ']'", "\"[IPv6]:port\"" },
	{ "bad IPv6", "listen = ( { address = \"[1.2.3.4]:8461\"; } );\n", 1, "listen[0].address",
	  "not a numeric IPv6 address", "\"[IPv6]:port\"" },
	{ "relative unix path", "listen = ( { address = \"unix:mtastsd.sock\"; } );\n", 1,
	  "listen[0].address", "not absolute", "\"unix:/absolute/path\"" },
	{ "unix path too long", "listen = ( { address = \"unix:/" S64 S64 "\"; } );\n", 1,
	  "listen[0].address", "longer than 107 bytes", "\"unix:/absolute/path\"" },
	{ "empty address", "listen = ( { address = \"\"; } );\n", 1, "listen[0].address",
	  "no address", "\"IPv4:port\"" },
	{ "dns server port 0", "dns: { servers = [ \"192.0.2.1:0\" ]; };\n", 1, "dns.servers[0]",
	  "out of range 1..65535", "\"IPv4:port\", \"[IPv6]:port\"" },
	{ "dns server by name", "dns: { servers = [\n \"192.0.2.1\",\n \"dns.google\" ]; };\n", 3,
	  "dns.servers[1]", "\"dns.google\" is not a numeric IPv4 address", "\"[IPv6]:port\"" },
	{ "too many dns servers",
	  "dns: { servers = [ \"1.0.0.1\", \"1.0.0.2\", \"1.0.0.3\", \"1.0.0.4\", \"1.0.0.5\", "
	  "\"1.0.0.6\", \"1.0.0.7\", \"1.0.0.8\", \"1.0.0.9\", \"1.0.0.10\", \"1.0.0.11\", "
	  "\"1.0.0.12\", \"1.0.0.13\", \"1.0.0.14\", \"1.0.0.15\", \"1.0.0.16\", \"1.0.0.17\" ]; "
	  "};\n",
	  1, "dns.servers", "17 servers is too many", "at most 16" },

	/* Other string checks. */
	{ "mode without the leading 0",
	  "listen = ( { address = \"unix:/tmp/s\"; mode = \"660\"; } );\n", 1, "listen[0].mode",
	  "\"660\" is not accepted", "\"0600\"..\"0777\"" },
	{ "mode not octal", "listen = ( { address = \"unix:/tmp/s\"; mode = \"0680\"; } );\n", 1,
	  "listen[0].mode", "\"0680\"", "\"0600\"..\"0777\"" },
	{ "mode without owner write",
	  "listen = ( { address = \"unix:/tmp/s\"; mode = \"0466\"; } );\n", 1, "listen[0].mode",
	  "the owner needs read and write", "\"0600\"..\"0777\"" },
	{ "mode on an inet listener",
	  "listen = ( { address = \"127.0.0.1:1\";\n mode = \"0600\"; } );\n", 2, "listen[0].mode",
	  "only to unix: addresses", "remove it for \"127.0.0.1:1\"" },
	{ "map name with a space", "maps = ( { name = \"post fix\"; } );\n", 1, "maps[0].name",
	  "\"post fix\" is not accepted", "1..64 of the characters A-Z a-z 0-9 _ . -" },
	{ "map name too long", "maps = ( { name = \"" S64 "x\"; } );\n", 1, "maps[0].name", "...",
	  "1..64 of the characters" },
	{ "empty map name", "maps = ( { name = \"\"; } );\n", 1, "maps[0].name", "\"\"",
	  "1..64 of the characters" },
	{ "relative CA file", "fetch: { ca_file = \"certs/ca.pem\"; };\n", 1, "fetch.ca_file",
	  "\"certs/ca.pem\" is not accepted: not an absolute path", "an absolute path, or \"\"" },
	{ "empty state_dir", "daemon: { state_dir = \"\"; };\n", 1, "daemon.state_dir", "\"\"",
	  "use an absolute path" },
	{ "user with a space", "daemon: { user = \"mail user\"; };\n", 1, "daemon.user",
	  "space or control character", "a user or group name, or \"\"" },
	{ "user agent with a newline", "fetch: { user_agent = \"a\\nX-Evil: 1\"; };\n", 1,
	  "fetch.user_agent", "\"a\\x0aX-Evil: 1\"", "1..256 printable ASCII characters" },
	{ "empty user agent", "fetch: { user_agent = \"\"; };\n", 1, "fetch.user_agent", "\"\"",
	  "1..256 printable ASCII characters" },

	/* Lists and the checks across them. */
	{ "empty listen list", "\nlisten = ();\n", 2, "listen", "the list is empty",
	  "add at least one group, such as listen = ( { protocol = \"socketmap\"" },
	{ "empty listen array", "listen = [];\n", 1, "listen", "the list is empty", "such as" },
	{ "empty maps list", "maps = ();\n", 1, "maps", "the list is empty",
	  "maps = ( { name = \"postfix\"; } )" },
	{ "listener without address", "listen = (\n { protocol = \"socketmap\"; }\n);\n", 2,
	  "listen[0]", "required key address is missing", "\"IPv4:port\"" },
	{ "map without name", "maps = ( { tlsrpt = true; } );\n", 1, "maps[0]",
	  "required key name is missing", "1..64 of the characters" },
	{ "duplicate listener",
	  "listen = (\n { address = \"127.0.0.1:8461\"; },\n { address = \"127.0.0.1:8461\"; "
	  "}\n);\n",
	  3, "listen[1].address", "\"127.0.0.1:8461\" is already the address of listen[0]",
	  "(line 2); give each listener its own address" },
	{ "duplicate listener, written differently",
	  "listen = ( { address = \"[::1]:1\"; },\n { address = \"[0::1]:1\"; } );\n", 2,
	  "listen[1].address", "already the address of listen[0]", "its own address" },
	{ "listener inside a wildcard",
	  "listen = ( { address = \"0.0.0.0:8461\"; },\n { address = \"127.0.0.1:8461\"; } );\n", 2,
	  "listen[1].address", "overlaps the wildcard address \"0.0.0.0:8461\" of listen[0]",
	  "(line 1); give each listener its own port" },
	{ "duplicate unix listener",
	  "listen = ( { address = \"unix:/tmp/s\"; },\n { address = \"unix:/tmp/s\"; } );\n", 2,
	  "listen[1].address", "\"unix:/tmp/s\" is already the address of listen[0]",
	  "its own address" },
	{ "duplicate map",
	  "maps = (\n { name = \"postfix\"; },\n { name = \"postfix\"; tlsrpt = true; }\n);\n", 3,
	  "maps[1].name", "\"postfix\" is already the name of maps[0] (line 2)",
	  "give each map its own name" },
	{ "tcp_table naming an unknown map",
	  "listen = ( { protocol = \"tcp_table\"; address = \"127.0.0.1:1\";\n map = \"postfx\"; } "
	  ");\n",
	  2, "listen[0].map", "\"postfx\" is not the name of a map",
	  "use one of the maps: \"postfix\"; did you mean \"postfix\"?" },
	{ "tcp_table without map",
	  "\nlisten = ( { protocol = \"tcp_table\"; address = \"127.0.0.1:1\"; } );\n", 2,
	  "listen[0]", "a tcp_table listener needs map = \"NAME\"",
	  "use one of the maps: \"postfix\"" },
	{ "map on a socketmap listener",
	  "listen = ( { protocol = \"socketmap\"; address = \"127.0.0.1:1\";\n"
	  "  map = \"postfix\"; } );\n",
	  2, "listen[0].map", "a socketmap listener takes the map name from each request",
	  "remove map, or use protocol = \"tcp_table\"" },
	{ "too many listeners",
	  "listen = ( {address=\"unix:/a/1\";},{address=\"unix:/a/2\";},{address=\"unix:/a/3\";},"
	  "{address=\"unix:/a/4\";},{address=\"unix:/a/5\";},{address=\"unix:/a/6\";},"
	  "{address=\"unix:/a/7\";},{address=\"unix:/a/8\";},{address=\"unix:/a/9\";},"
	  "{address=\"unix:/a/10\";},{address=\"unix:/a/11\";},{address=\"unix:/a/12\";},"
	  "{address=\"unix:/a/13\";},{address=\"unix:/a/14\";},{address=\"unix:/a/15\";},"
	  "{address=\"unix:/a/16\";},{address=\"unix:/a/17\";},{address=\"unix:/a/18\";},"
	  "{address=\"unix:/a/19\";},{address=\"unix:/a/20\";},{address=\"unix:/a/21\";},"
	  "{address=\"unix:/a/22\";},{address=\"unix:/a/23\";},{address=\"unix:/a/24\";},"
	  "{address=\"unix:/a/25\";},{address=\"unix:/a/26\";},{address=\"unix:/a/27\";},"
	  "{address=\"unix:/a/28\";},{address=\"unix:/a/29\";},{address=\"unix:/a/30\";},"
	  "{address=\"unix:/a/31\";},{address=\"unix:/a/32\";},{address=\"unix:/a/33\";} );\n",
	  1, "listen", "33 groups is too many", "use at most 32" },

	/* libconfig's own errors keep its file:line:text. */
	{ "syntax error", "dns: {\n  timeout = 2000;\n  tries = ;\n};\n", 3, "syntax error",
	  "(libconfig;", "on this line or just before it" },
	{ "duplicate key", "dns: {\n  tries = 2;\n  tries = 3;\n};\n", 3, "duplicate setting name",
	  "(libconfig;", "" },
	/* libconfig notices only at the end of the file. */
	{ "unterminated string", "daemon: {\n user = \"abc;\n};\n", 4, "syntax error",
	  "(libconfig;", "just before it" },
};

static void
test_bad_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *tc = &bad_cases[i];
		char *path = write_temp(tc->text);
		char *where = tc->line > 0 ? xasprintf("%s:%u: ", path, tc->line)
		                           : xasprintf("%s: ", path);
		struct strbuf err;
		const struct config *c;
		size_t lines;

		strbuf_init(&err, 1 << 16);
		c = config_load(path, &err);
		if (c != NULL)
			fail_msg("case \"%s\": loaded", tc->name);
		if (strstr(err.data, where) == NULL || strstr(err.data, tc->key) == NULL ||
		    strstr(err.data, tc->value) == NULL || strstr(err.data, tc->accepted) == NULL)
			fail_msg("case \"%s\": want \"%s\", \"%s\", \"%s\", \"%s\" in:\n%s",
			         tc->name, where, tc->key, tc->value, tc->accepted, err.data);
		lines = 0;
		for (const char *e = err.data; *e != '\0'; e++)
			lines += *e == '\n';
		/* One error per case, so none is a follow-on of another. */
		CHECK(tc->name, lines == 1);
		strbuf_release(&err);
		unlink(path);
		free(path);
		free(where);
	}
}

/* All problems are reported in one go, each on its own line. */
static void
test_many_errors(void **state)
{
	char *path = write_temp("cahce: {};\n"
	                        "dns: { timeout = 0; tries = \"2\"; };\n"
	                        "listen = ( { address = \"localhost:1\"; } );\n");
	struct strbuf err;
	size_t lines = 0;

	(void)state;
	strbuf_init(&err, 1 << 16);
	assert_null(config_load(path, &err));
	for (const char *c = err.data; *c != '\0'; c++)
		lines += *c == '\n';
	assert_int_equal(lines, 4);
	assert_non_null(strstr(err.data, ":1: unknown key \"cahce\""));
	assert_non_null(strstr(err.data, ":2: dns.timeout: 0 is out of range"));
	assert_non_null(strstr(err.data, ":2: dns.tries: wrong type"));
	assert_non_null(strstr(err.data, ":3: listen[0].address"));
	strbuf_release(&err);
	unlink(path);
	free(path);
}

/* A misspelt required key is two problems: an unknown key, and a missing one. */
static void
test_misspelt_required(void **state)
{
	char *path = write_temp("listen = (\n { adress = \"127.0.0.1:1\"; }\n);\n");
	struct strbuf err;
	char *want;

	(void)state;
	strbuf_init(&err, 1 << 16);
	assert_null(config_load(path, &err));
	want = xasprintf("%s:2: unknown key \"adress\" in listen[0]; known keys: protocol, "
	                 "address, mode, map; did you mean \"address\"?\n"
	                 "%s:2: listen[0]: required key address is missing; set it to "
	                 "\"IPv4:port\", \"[IPv6]:port\" or \"unix:/absolute/path\"\n",
	                 path, path);
	assert_string_equal(err.data, want);
	free(want);
	strbuf_release(&err);
	unlink(path);
	free(path);
}

static void
test_missing_file(void **state)
{
	struct strbuf err;

	(void)state;
	strbuf_init(&err, 1 << 16);
	assert_null(config_load("/nonexistent/mtastsd.conf", &err));
	assert_non_null(strstr(err.data, "/nonexistent/mtastsd.conf: cannot open: "));
	strbuf_reset(&err);
	assert_null(config_load("/", &err));
	assert_non_null(strstr(err.data, "/: is a directory"));
	strbuf_release(&err);
}

static void
test_shipped_conf(void **state)
{
	const char *srcdir = getenv("srcdir");
	char *path = xasprintf("%s/conf/mtastsd.conf", srcdir != NULL ? srcdir : ".");
	struct strbuf err;
	const struct config *c;

	(void)state;
	strbuf_init(&err, 1 << 16);
	c = config_load(path, &err);
	if (c == NULL)
		fail_msg("%s:\n%s", path, err.data);
	/* The README's quick start: socketmap on a unix socket and on 127.0.0.1:8461, map
	 * postfix, sqlite cache. */
	assert_int_equal(c->nlisteners, 2);
	assert_int_equal(c->listeners[0].protocol, CONFIG_PROTOCOL_SOCKETMAP);
	assert_string_equal(c->listeners[0].address.text, "unix:/run/mtastsd/socketmap.sock");
	assert_int_equal(c->listeners[1].protocol, CONFIG_PROTOCOL_SOCKETMAP);
	assert_string_equal(c->listeners[1].address.text, "127.0.0.1:8461");
	assert_string_equal(c->maps[0].name, "postfix");
	assert_int_equal(c->cache.backend, CONFIG_CACHE_SQLITE);
	assert_string_equal(c->sqlite.path, "/var/lib/mtastsd/cache.db");
	config_free(c);
	strbuf_release(&err);
	free(path);
}

static void
test_defaults(void **state)
{
	const struct config *c = config_defaults();

	(void)state;
	assert_null(c->path);
	check_defaults(c);
	config_free(c);
	config_free(NULL);
}

/* Every row is documented and its default is accepted by its own checks. */
static void
test_schema_rows(void **state)
{
	size_t n;
	const struct config_option *o = config_schema(&n);
	const struct config *c = config_defaults();

	(void)state;
	assert_true(n > 0);
	for (size_t i = 0; i < n; i++) {
		const char *name = o[i].name;

		CHECK(name, o[i].section != NULL && o[i].name != NULL);
		CHECK(name, o[i].doc != NULL && strlen(o[i].doc) > 10);
		CHECK(name, strchr(o[i].doc, '\n') == NULL && strchr(o[i].doc, '\t') == NULL);
		/* Only list elements may have required keys: a group section can be absent. */
		CHECK(name, o[i].def != NULL || strcmp(o[i].section, "listen") == 0 ||
		                    strcmp(o[i].section, "maps") == 0);
		for (size_t j = 0; j < i; j++)
			CHECK(name, strcmp(o[i].section, o[j].section) != 0 ||
			                    strcmp(o[i].name, o[j].name) != 0);
		if (o[i].kind == CONFIG_KIND_INT) {
			char *end;
			long long d = strtoll(o[i].def, &end, 10);

			CHECK(name, *end == '\0');
			CHECK(name, o[i].min <= d && d <= o[i].max);
			CHECK(name, o[i].unit != NULL);
			CHECK(name, o[i].max <= UINT32_MAX);
			/* And config_defaults() holds exactly that value. */
			if (strcmp(o[i].section, "listen") != 0 &&
			    strcmp(o[i].section, "maps") != 0) {
				unsigned v;

				memcpy(&v, (const char *)c + o[i].offset, sizeof(v));
				CHECK(name, v == (unsigned long long)d);
			}
		}
		if (o[i].kind == CONFIG_KIND_ENUM) {
			bool found = false;

			CHECK(name, o[i].values != NULL);
			for (size_t k = 0; o[i].values[k] != NULL; k++) {
				char *quoted = xasprintf("\"%s\"", o[i].values[k]);

				found = found || strcmp(quoted, o[i].def) == 0;
				free(quoted);
			}
			CHECK(name, found);
		}
	}
	config_free(c);
}

/* The log level names match base/log's, so both parse the same words. */
static void
test_log_level_names(void **state)
{
	size_t n;
	const struct config_option *o = config_schema(&n);

	(void)state;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(o[i].name, "log_level") != 0)
			continue;
		for (size_t k = 0; o[i].values[k] != NULL; k++) {
			enum log_level lv;

			assert_int_equal(log_level_parse(o[i].values[k], &lv), 0);
			assert_int_equal((size_t)lv, k);
		}
		return;
	}
	fail_msg("no log_level row");
}

/* The dump lists every section and row, five tab-separated fields each. */
static void
test_dump_schema(void **state)
{
	char *buf = NULL;
	size_t len = 0, n;
	FILE *out = open_memstream(&buf, &len);
	const struct config_option *o = config_schema(&n);

	(void)state;
	assert_non_null(out);
	config_dump_schema(out);
	fclose(out);
	for (size_t i = 0; i < n; i++) {
		bool list =
		        strcmp(o[i].section, "listen") == 0 || strcmp(o[i].section, "maps") == 0;
		char *line = xasprintf("\n%s%s.%s\t", o[i].section, list ? "[]" : "", o[i].name);

		CHECK(line + 1, strstr(buf, line) != NULL);
		free(line);
	}
	for (const char *l = strchr(buf, '\n') + 1; *l != '\0'; l = strchr(l, '\n') + 1) {
		size_t tabs = 0;

		for (const char *c = l; *c != '\n'; c++)
			tabs += *c == '\t';
		assert_int_equal(tabs, 4);
	}
	assert_non_null(strstr(buf, "\nlisten\tlist of groups\t"));
	assert_non_null(strstr(buf, "\ndns.timeout\tinteger\t2000\t100..30000 (milliseconds)\t"));
	free(buf);
}

static void
test_check(void **state)
{
	char *good = write_temp("dns: { tries = 3; };\n");
	char *bad = write_temp("dns: { tries = 30; };\n");
	char *buf = NULL;
	size_t len = 0;
	FILE *out;
	char *want;

	(void)state;
	out = open_memstream(&buf, &len);
	assert_int_equal(config_check(good, out), 0);
	fclose(out);
	want = xasprintf("configuration file %s test is successful\n", good);
	assert_string_equal(buf, want);
	free(want);
	free(buf);

	buf = NULL;
	out = open_memstream(&buf, &len);
	assert_int_equal(config_check(bad, out), 1);
	fclose(out);
	want = xasprintf("%s:1: dns.tries: 30 is out of range; use 1..10 (tries)\n"
	                 "configuration file %s test failed\n",
	                 bad, bad);
	assert_string_equal(buf, want);
	free(want);
	free(buf);

	unlink(good);
	unlink(bad);
	free(good);
	free(bad);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ok_table),        cmocka_unit_test(test_bad_table),
		cmocka_unit_test(test_many_errors),     cmocka_unit_test(test_misspelt_required),
		cmocka_unit_test(test_missing_file),    cmocka_unit_test(test_shipped_conf),
		cmocka_unit_test(test_defaults),        cmocka_unit_test(test_schema_rows),
		cmocka_unit_test(test_log_level_names), cmocka_unit_test(test_dump_schema),
		cmocka_unit_test(test_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
