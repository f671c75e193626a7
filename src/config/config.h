/* config.h: the mtastsd.conf schema table and its loader into an immutable typed struct. */
#ifndef MTASTS_CONFIG_CONFIG_H
#define MTASTS_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "base/log.h"
#include "base/strbuf.h"

/* Hard limits on list lengths, checked while loading. */
#define CONFIG_LISTENERS_MAX   32
#define CONFIG_MAPS_MAX        64
#define CONFIG_DNS_SERVERS_MAX 16
/* Map names: [A-Za-z0-9_.-]{1,CONFIG_MAP_NAME_MAX}. */
#define CONFIG_MAP_NAME_MAX 64

enum config_protocol {
	CONFIG_PROTOCOL_SOCKETMAP, /* each request names its map */
	CONFIG_PROTOCOL_TCP_TABLE, /* requests carry no map name: the listener names it */
};

enum config_family {
	CONFIG_FAMILY_INET,
	CONFIG_FAMILY_INET6,
	CONFIG_FAMILY_UNIX,
};

/* dns.on_failure: the answer when the TXT lookup fails and no policy is cached (TXT-10). */
enum config_dns_failure {
	CONFIG_DNS_FAILURE_NOTFOUND,
	CONFIG_DNS_FAILURE_TEMP,
};

/* cache.backend: each store backend adds a value here and a name in config.c's table. */
enum config_cache_backend {
	CONFIG_CACHE_MEMORY,
	CONFIG_CACHE_SQLITE,
	CONFIG_CACHE_REDIS,
};

/* A parsed address; the daemon never parses address strings itself. */
struct config_address {
	enum config_family family;
	/* Canonical form: "127.0.0.1:8461", "[::1]:8461" or "unix:/run/x.sock"; two addresses
	 * are the same socket exactly when their texts are equal. */
	const char *text;
	const char *host; /* numeric, as inet_ntop(3) prints it, no brackets; NULL for unix */
	unsigned port;    /* 1..65535; 0 for unix */
	const char *path; /* unix socket path; NULL for inet */
};

struct config_listener {
	enum config_protocol protocol;
	struct config_address address;
	mode_t mode;      /* unix sockets: chmod(2) after bind; unused for inet */
	const char *map;  /* tcp_table: the map every request uses; "" for socketmap */
	size_t map_index; /* tcp_table: index of that map in config->maps; 0 for socketmap */
};

/* One socketmap name Postfix may use, with its rendering options. */
struct config_map {
	const char *name;
	bool strict_testing;
	bool tlsrpt;
};

struct config_servers {
	const struct config_address *list; /* inet families only; port 53 unless given */
	size_t count;                      /* 0: use /etc/resolv.conf */
	const char *csv;                   /* "ip:port,[ip6]:port" for c-ares; "" when count 0 */
};

struct config_daemon {
	enum log_level log_level;
	const char *user;        /* "" = keep the user the daemon was started as */
	const char *group;       /* "" = the user's primary group (or keep, if user is "") */
	bool allow_root;         /* keep running as root when user is "" */
	const char *pid_file;    /* "" = write none */
	const char *state_dir;   /* absolute */
	const char *runtime_dir; /* absolute */
};

struct config_limits {
	unsigned request_size; /* bytes: netstring payload / tcp_table line cap */
	unsigned max_connections;
	unsigned max_connections_per_ip;
	unsigned idle_timeout_s;
	unsigned lookup_timeout_ms;
	unsigned max_pending_per_connection;
	unsigned shutdown_timeout_ms;
};

struct config_dns {
	struct config_servers servers;
	unsigned timeout_ms; /* per try */
	unsigned tries;
	unsigned max_ttl_s;
	unsigned negative_ttl_s;
	unsigned servfail_ttl_s;
	unsigned cache_size; /* entries */
	enum config_dns_failure on_failure;
};

struct config_fetch {
	unsigned timeout_ms;
	const char *ca_file; /* "" = the system CA store; else absolute */
	unsigned backoff_s;
	unsigned max_parallel;
	const char *user_agent;
};

struct config_cache {
	enum config_cache_backend backend;
	unsigned max_entries;
	unsigned recheck_interval_s;
};

struct config_sqlite {
	const char *path;           /* absolute */
	unsigned write_interval_ms; /* the write-behind batch window */
};

struct config_redis {
	struct config_address address; /* TCP host:port or unix:/path */
	unsigned database;
	const char *prefix;   /* key prefix; keys are prefix + domain */
	const char *user;     /* "" = AUTH with the password only (or no AUTH) */
	const char *password; /* "" = no AUTH */
	unsigned timeout_ms;  /* connect and command timeout */
};

struct config_refresh {
	bool enable;
	unsigned window_s;        /* refresh when expiry is this close */
	unsigned idle_s;          /* not looked up this long: no refresh, drops out at expiry */
	unsigned concurrency;     /* background refreshes at once */
	unsigned scan_interval_s; /* how often the cache is scanned for due refreshes */
};

struct config_control {
	const char *socket; /* "" = no control channel; else absolute */
	mode_t mode;
	const char *group; /* "" = the daemon's group */
	unsigned max_clients;
};

/*
 * A loaded configuration. config_load() and config_defaults() build it whole; nothing changes
 * it afterwards, so one may be shared freely and a reload swaps the pointer. Every string and
 * array belongs to the struct and lives until config_free().
 */
struct config {
	const char *path; /* the file it was loaded from; NULL for config_defaults() */
	struct config_daemon daemon;
	const struct config_listener *listeners; /* at least one */
	size_t nlisteners;
	const struct config_map *maps; /* at least one; names unique */
	size_t nmaps;
	struct config_limits limits;
	struct config_dns dns;
	struct config_fetch fetch;
	struct config_cache cache;
	struct config_sqlite sqlite;
	struct config_redis redis;
	struct config_refresh refresh;
	struct config_control control;
};

/*
 * Loads and validates path. On failure returns NULL and appends one line per problem to err
 * (at most 50), each "FILE:LINE: " and then the key, the bad value and what is accepted
 * instead. List elements are named from 0: "listen[1].address". An absent section or key takes its
 * default; an absent listen is one socketmap listener on 127.0.0.1:8461 and an absent maps is one
 * map named "postfix".
 */
const struct config *config_load(const char *path, struct strbuf *err);
/* Every default, as if the file were empty. */
const struct config *config_defaults(void);
void config_free(const struct config *cfg);

/* mtastsd -t: loads path and prints the errors or "configuration file PATH test is
 * successful" to out. Returns 0 when the file is valid, 1 otherwise. */
int config_check(const char *path, FILE *out);

/* ---- the schema, for documentation and tests ---- */

enum config_kind {
	CONFIG_KIND_INT,      /* unsigned, min..max */
	CONFIG_KIND_BOOL,     /* bool */
	CONFIG_KIND_ENUM,     /* an int-sized enum: the index of the string in values */
	CONFIG_KIND_NAME,     /* const char *: a user or group name */
	CONFIG_KIND_PATH,     /* const char *: an absolute path */
	CONFIG_KIND_TEXT,     /* const char *: printable ASCII, fit for an HTTP header */
	CONFIG_KIND_MAP_NAME, /* const char *: [A-Za-z0-9_.-]{1,CONFIG_MAP_NAME_MAX} */
	CONFIG_KIND_MODE,     /* mode_t, written as an octal string "0600".."0777" */
	CONFIG_KIND_ADDRESS,  /* struct config_address: a listening address */
	CONFIG_KIND_SERVERS,  /* struct config_servers: an array of DNS server addresses */
};

/* One row of the schema: one option. */
struct config_option {
	const char *section; /* "daemon", "limits", ...; "listen" or "maps" for list elements */
	const char *name;    /* the key inside its section */
	enum config_kind kind;
	const char *def;           /* the default in libconfig syntax ("2000", "\"info\""); NULL =
	                            * required */
	long long min, max;        /* CONFIG_KIND_INT */
	const char *unit;          /* CONFIG_KIND_INT: "milliseconds", "seconds", ... */
	const char *const *values; /* CONFIG_KIND_ENUM: NULL-terminated; the index is the value */
	bool empty_ok;             /* string kinds: "" is accepted (the doc says what it means) */
	size_t offset;             /* of the field in struct config, or in the list element */
	const char *doc;           /* one line */
};

/* Every option, section by section, in the order the documentation lists them. */
const struct config_option *config_schema(size_t *count);

/*
 * Prints every section and option as tab-separated lines "PATH TYPE DEFAULT ACCEPTED DOC"
 * (list elements as "listen[].address"), after one "#" header line. The man page is checked
 * against this output.
 */
void config_dump_schema(FILE *out);

#endif
