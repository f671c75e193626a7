/* main.c: mtastsd, the MTA-STS policy daemon: composition, signals, start-up and shutdown. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <time.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ares.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "base/log.h"
#include "base/strbuf.h"
#include "base/xmalloc.h"
#include "config/config.h"
#include "base/json.h"
#include "daemon/control.h"
#include "daemon/lookup.h"
#include "daemon/server.h"
#include "engine/engine.h"
#include "io/dns.h"
#include "io/fetch.h"
#include "io/listener.h"
#include "store/store.h"

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#else
/* Without libsystemd: no readiness notification and no inherited sockets. */
#define sd_notify(unset, state) ((void)(unset), (void)(state), 0)
#define sd_listen_fds(unset)    ((void)(unset), 0)
#define SD_LISTEN_FDS_START     3
#endif

#define DEFAULT_CONFIG "/etc/mtastsd/mtastsd.conf"

struct daemon {
	const struct config *cfg;
	struct event_base *base;
	struct dns *dns;
	struct fetch *fetch;
	struct engine *engine;
	struct store *store; /* NULL for the memory backend */
	struct lookup *lookup;
	struct server *server;
	struct control *control;
	time_t started;
	struct event *ev_trim;
	uint64_t trimmed_at; /* discoveries counted at the last malloc_trim */
	struct event *ev_term;
	struct event *ev_int;
	struct event *ev_hup;
	struct event *ev_stop; /* shutdown deadline */
	bool stopping;
};

static int daemon_reload(struct daemon *d, struct strbuf *msg);

static void
usage(FILE *out)
{
	fprintf(out, "usage: mtastsd [-f] [-t] [-c FILE] [-V] [-S]\n"
	             "  -c FILE  configuration file (default " DEFAULT_CONFIG ")\n"
	             "  -f       stay in the foreground and log to stderr (else detach, log to\n"
	             "           syslog facility mail)\n"
	             "  -t       check the configuration file and exit 0 (valid) or 1\n"
	             "  -V       print the version and exit\n"
	             "  -S       print every configuration option (tab-separated) and exit\n");
}

static void
log_versions(void)
{
	const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);

	log_info("mtastsd %s starting: libevent=%s c-ares=%s libcurl=%s openssl=\"%s\"",
	         PACKAGE_VERSION, event_get_version(), ares_version(NULL), cv->version,
	         OpenSSL_version(OPENSSL_VERSION));
}

static void
daemon_on_drained(void *arg)
{
	struct daemon *d = arg;

	log_info("shutdown: every pending answer sent");
	event_base_loopexit(d->base, NULL);
}

static void
daemon_on_stop_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	log_warnx("shutdown: limits.shutdown_timeout passed with answers pending; exiting");
	event_base_loopexit(d->base, NULL);
}

/* Tells systemd (Type=notify) that the daemon serves, with a one-line status. */
static void
daemon_notify_ready(struct daemon *d, const char *event)
{
	struct engine_stats es;
	char msg[256];

	engine_get_stats(d->engine, &es);
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s: %zu listeners, %zu domains cached (%s)",
	         event, d->cfg->nlisteners, es.entries,
	         d->store != NULL ? d->store->ops->name : "memory");
	sd_notify(0, msg);
}

static void
daemon_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	unsigned ms = d->cfg->limits.shutdown_timeout_ms;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (sig == SIGHUP) {
		struct strbuf msg;

		strbuf_init(&msg, 64 * 1024);
		log_info("SIGHUP: reloading %s", d->cfg->path);
		sd_notify(0, "RELOADING=1");
		if (daemon_reload(d, &msg) == -1)
			log_warnx("%s", msg.data != NULL ? msg.data : "reload failed");
		strbuf_release(&msg);
		daemon_notify_ready(d, "reloaded");
		return;
	}
	if (d->stopping)
		return;
	d->stopping = true;
	sd_notify(0, "STOPPING=1");
	log_info("shutdown: signal %s; no new connections, finishing pending answers",
	         sig == SIGTERM ? "TERM" : "INT");
	d->ev_stop = evtimer_new(d->base, daemon_on_stop_deadline, d);
	evtimer_add(d->ev_stop, &tv);
	control_free(d->control);
	d->control = NULL;
	server_drain(d->server, daemon_on_drained, d);
}

/* setgroups, setgid, setuid, then prove root cannot be regained. */
/* Before anything is bound or created: a daemon parsing network input does not stay root. */
static void
refuse_root(const struct config_daemon *dc)
{
	if (geteuid() == 0 && dc->user[0] == '\0' && !dc->allow_root)
		fatalx("refusing to run as root: set daemon.user (e.g. \"mtastsd\") so the daemon "
		       "drops privileges after binding, or daemon.allow_root = true to accept the "
		       "risk");
}

static void
drop_privileges(const struct config_daemon *dc)
{
	struct passwd *pw;
	gid_t gid;

	if (dc->user[0] == '\0') {
		if (geteuid() == 0)
			log_warnx("running as root (daemon.allow_root = true)");
		return;
	}
	pw = getpwnam(dc->user);
	if (pw == NULL)
		fatalx("daemon.user: no such user \"%s\"; create it or change the setting",
		       dc->user);
	if (geteuid() != 0) {
		/* Started as that user already, e.g. by systemd's User=. */
		if (geteuid() != pw->pw_uid)
			fatalx("daemon.user: cannot switch to \"%s\" when not started as root "
			       "(running as uid %u)",
			       dc->user, (unsigned)geteuid());
		return;
	}
	gid = pw->pw_gid;
	if (dc->group[0] != '\0') {
		struct group *gr = getgrnam(dc->group);

		if (gr == NULL)
			fatalx("daemon.group: no such group \"%s\"", dc->group);
		gid = gr->gr_gid;
	}
	if (setgroups(1, &gid) == -1 || setgid(gid) == -1 || setuid(pw->pw_uid) == -1)
		fatal("cannot drop privileges to user %s", dc->user);
	if (pw->pw_uid != 0 && (setuid(0) != -1 || seteuid(0) != -1))
		fatalx("privileges regained after dropping them to %s; refusing to run", dc->user);
	log_info("privileges dropped to user=%s uid=%u gid=%u", dc->user, (unsigned)pw->pw_uid,
	         (unsigned)gid);
}

/*
 * Two priorities: Postfix connections (CONN_PRIORITY, 0) and everything else (1). After each
 * lower-priority callback (a DNS answer, a TLS step) the loop looks for ready connections
 * again, so a burst of cold domains costs a cached lookup at most one such step.
 */
static struct event_base *
daemon_event_base(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *base;

	if (ec == NULL || event_config_set_max_dispatch_interval(ec, NULL, 1, 1) == -1)
		fatalx("cannot configure the event loop");
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (base == NULL || event_base_priority_init(base, 2) == -1)
		fatalx("cannot create the event loop");
	return base;
}

#ifdef HAVE_MALLOC_TRIM
/*
 * Fetches churn through TLS and HTTP buffers between the long-lived cache entries; glibc keeps
 * the freed pages. Giving them back after a burst keeps RSS close to what the cache holds.
 */
static void
daemon_on_trim(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	struct engine_stats es;

	engine_get_stats(d->engine, &es);
	if (es.discoveries != d->trimmed_at && es.in_flight == 0) {
		d->trimmed_at = es.discoveries;
		malloc_trim(0);
	}
}
#endif

static void
write_pid_file(const char *path)
{
	FILE *f;

	if (path[0] == '\0')
		return;
	f = fopen(path, "w");
	if (f == NULL)
		fatal("daemon.pid_file: cannot write %s", path);
	fprintf(f, "%ld\n", (long)getpid());
	fclose(f);
}

/* A unix listener under runtime_dir needs the directory; create it as systemd would. */
static void
ensure_socket_dir(const struct config *cfg, const char *path)
{
	size_t n = strlen(cfg->daemon.runtime_dir);

	if (strncmp(path, cfg->daemon.runtime_dir, n) == 0 && path[n] == '/' &&
	    mkdir(cfg->daemon.runtime_dir, 0755) == -1 && errno != EEXIST)
		log_warn("cannot create daemon.runtime_dir %s", cfg->daemon.runtime_dir);
}

/* ---- options from the configuration, shared by start-up and reload ---- */

static struct dns_opts
dns_opts_of(const struct config *cfg)
{
	struct dns_opts o = {
		.servers = cfg->dns.servers.csv,
		.timeout_ms = cfg->dns.timeout_ms,
		.tries = cfg->dns.tries,
		.max_ttl = cfg->dns.max_ttl_s,
		.negative_ttl = cfg->dns.negative_ttl_s,
		.servfail_ttl = cfg->dns.servfail_ttl_s,
		.cache_max = cfg->dns.cache_size,
	};
	return o;
}

static struct fetch_opts
fetch_opts_of(const struct config *cfg)
{
	struct fetch_opts o = {
		.ca_file = cfg->fetch.ca_file[0] != '\0' ? cfg->fetch.ca_file : NULL,
		.timeout_ms = cfg->fetch.timeout_ms,
		.body_max = 65536,
		.user_agent = cfg->fetch.user_agent,
		.max_parallel = cfg->fetch.max_parallel,
	};
	return o;
}

static struct engine_opts
engine_opts_of(const struct config *cfg)
{
	struct engine_opts o = {
		.recheck_interval = cfg->cache.recheck_interval_s,
		.fail_ttl = cfg->dns.servfail_ttl_s,
		.backoff = cfg->fetch.backoff_s,
		.lookup_timeout_ms = cfg->limits.lookup_timeout_ms,
		.dns_failure_temp = cfg->dns.on_failure == CONFIG_DNS_FAILURE_TEMP,
		.max_entries = cfg->cache.max_entries,
		.refresh = cfg->refresh.enable,
		.refresh_window = cfg->refresh.window_s,
		.refresh_idle = cfg->refresh.idle_s,
		.refresh_concurrency = cfg->refresh.concurrency,
		.refresh_scan_s = cfg->refresh.scan_interval_s,
	};
	return o;
}

static struct server_opts
server_opts_of(const struct config *cfg)
{
	struct server_opts o = {
		.request_max = cfg->limits.request_size,
		.idle_timeout_s = cfg->limits.idle_timeout_s,
		.max_pending = cfg->limits.max_pending_per_connection,
		.max_connections = cfg->limits.max_connections,
		.max_connections_per_ip = cfg->limits.max_connections_per_ip,
	};
	return o;
}

static size_t
maps_of(const struct config *cfg, struct lookup_map maps[CONFIG_MAPS_MAX])
{
	for (size_t i = 0; i < cfg->nmaps; i++) {
		maps[i].name = cfg->maps[i].name;
		maps[i].opts.strict_testing = cfg->maps[i].strict_testing;
		maps[i].opts.tlsrpt = cfg->maps[i].tlsrpt;
	}
	return cfg->nmaps;
}

static size_t
listens_of(const struct config *cfg, struct server_listen specs[CONFIG_LISTENERS_MAX])
{
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *cl = &cfg->listeners[i];

		specs[i] = (struct server_listen){
			.name = cl->address.text,
			.proto = cl->protocol == CONFIG_PROTOCOL_SOCKETMAP ? CONN_SOCKETMAP
			                                                   : CONN_TCPTABLE,
			.host = cl->address.host,
			.port = cl->address.port,
			.path = cl->address.path,
			.mode = cl->mode,
			.map = cl->protocol == CONFIG_PROTOCOL_TCP_TABLE ? cl->map : NULL,
		};
		if (specs[i].path != NULL)
			ensure_socket_dir(cfg, specs[i].path);
	}
	return cfg->nlisteners;
}

static bool
dns_opts_equal(const struct config *a, const struct config *b)
{
	return strcmp(a->dns.servers.csv, b->dns.servers.csv) == 0 &&
	       a->dns.timeout_ms == b->dns.timeout_ms && a->dns.tries == b->dns.tries &&
	       a->dns.max_ttl_s == b->dns.max_ttl_s &&
	       a->dns.negative_ttl_s == b->dns.negative_ttl_s &&
	       a->dns.servfail_ttl_s == b->dns.servfail_ttl_s &&
	       a->dns.cache_size == b->dns.cache_size;
}

static bool
fetch_opts_equal(const struct config *a, const struct config *b)
{
	return strcmp(a->fetch.ca_file, b->fetch.ca_file) == 0 &&
	       a->fetch.timeout_ms == b->fetch.timeout_ms &&
	       a->fetch.max_parallel == b->fetch.max_parallel &&
	       strcmp(a->fetch.user_agent, b->fetch.user_agent) == 0;
}

/* The store is opened once; a reload cannot switch it under a running cache. */
static bool
store_opts_equal(const struct config *a, const struct config *b)
{
	if (a->cache.backend != b->cache.backend)
		return false;
	switch (a->cache.backend) {
	case CONFIG_CACHE_SQLITE:
		return strcmp(a->sqlite.path, b->sqlite.path) == 0 &&
		       a->sqlite.write_interval_ms == b->sqlite.write_interval_ms;
	case CONFIG_CACHE_REDIS:
		return strcmp(a->redis.address.text, b->redis.address.text) == 0 &&
		       a->redis.database == b->redis.database &&
		       strcmp(a->redis.prefix, b->redis.prefix) == 0 &&
		       strcmp(a->redis.user, b->redis.user) == 0 &&
		       strcmp(a->redis.password, b->redis.password) == 0 &&
		       a->redis.timeout_ms == b->redis.timeout_ms;
	case CONFIG_CACHE_MEMORY:
		break;
	}
	return true;
}

static bool
control_opts_equal(const struct config *a, const struct config *b)
{
	return strcmp(a->control.socket, b->control.socket) == 0 &&
	       a->control.mode == b->control.mode &&
	       strcmp(a->control.group, b->control.group) == 0 &&
	       a->control.max_clients == b->control.max_clients;
}

/* ---- control hooks ---- */

struct listener_fmt {
	struct strbuf *sb;
	bool json;
	size_t n; /* listeners written so far, for JSON commas */
};

static void
hook_listener(void *arg, const char *name, enum conn_proto proto, const char *map)
{
	struct listener_fmt *lf = arg;
	struct strbuf *sb = lf->sb;
	const char *p = proto == CONN_SOCKETMAP ? "socketmap" : "tcp_table";

	if (lf->json) {
		strbuf_appends(sb, lf->n++ > 0 ? ", {\"address\": " : "{\"address\": ");
		json_cstr(sb, name);
		strbuf_appendf(sb, ", \"protocol\": \"%s\", \"map\": ", p);
		json_cstr(sb, map != NULL ? map : "");
		strbuf_appendc(sb, '}');
	} else {
		strbuf_appendf(sb, "listener:     %s %s%s%s\n", name, p, map != NULL ? " map=" : "",
		               map != NULL ? map : "");
	}
}

static void
daemon_store_status(struct daemon *d, struct store_status *st)
{
	memset(st, 0, sizeof(*st));
	if (d->store != NULL) {
		d->store->ops->status(d->store->impl, st);
		return;
	}
	st->backend = "memory";
	st->connected = true;
	st->detail = "not persisted";
}

static void
hook_status(void *arg, bool json, struct strbuf *sb)
{
	struct daemon *d = arg;
	struct engine_stats es;
	struct listener_fmt lf = { sb, json, 0 };
	long uptime = (long)(time(NULL) - d->started);
	struct store_status st;

	daemon_store_status(d, &st);
	engine_get_stats(d->engine, &es);
	if (json) {
		strbuf_appendf(sb,
		               "{\"version\": \"%s\", \"pid\": %ld, \"uptime\": %ld, \"config\": ",
		               PACKAGE_VERSION, (long)getpid(), uptime);
		json_cstr(sb, d->cfg->path);
		strbuf_appends(sb, ", \"listeners\": [");
		server_foreach_listener(d->server, hook_listener, &lf);
		strbuf_appends(sb, "], \"maps\": [");
		for (size_t i = 0; i < d->cfg->nmaps; i++) {
			strbuf_appends(sb, i > 0 ? ", " : "");
			json_cstr(sb, d->cfg->maps[i].name);
		}
		strbuf_appends(sb, "], \"cache\": {\"backend\": ");
		json_cstr(sb, st.backend);
		strbuf_appendf(sb, ", \"entries\": %zu, \"store_connected\": %s, \"store_state\": ",
		               es.entries, st.connected ? "true" : "false");
		json_cstr(sb, st.detail);
		strbuf_appends(sb, "}}\n");
		return;
	}
	strbuf_appendf(sb, "version:      mtastsd %s\npid:          %ld\nuptime:       %ld s\n",
	               PACKAGE_VERSION, (long)getpid(), uptime);
	strbuf_appendf(sb, "config:       %s\n", d->cfg->path);
	server_foreach_listener(d->server, hook_listener, &lf);
	strbuf_appends(sb, "maps:        ");
	for (size_t i = 0; i < d->cfg->nmaps; i++)
		strbuf_appendf(sb, " %s", d->cfg->maps[i].name);
	strbuf_appendf(sb, "\ncache:        %s, %zu entries", st.backend, es.entries);
	if (d->store != NULL)
		strbuf_appendf(sb, "; store %s", st.detail);
	strbuf_appendc(sb, '\n');
}

/* One figure of stats: JSON "section": {"name": value}, text "section:  name=value". */
struct stat_row {
	const char *section;
	const char *name;
	double value;
	bool decimal; /* milliseconds with fractions */
};

static void
stats_print(const struct stat_row *rows, size_t n, bool json, struct strbuf *sb)
{
	for (size_t i = 0; i < n; i++) {
		bool first = i == 0 || strcmp(rows[i].section, rows[i - 1].section) != 0;
		bool last = i + 1 == n || strcmp(rows[i].section, rows[i + 1].section) != 0;
		int prec = rows[i].decimal ? 3 : 0;

		if (json) {
			if (first)
				strbuf_appendf(sb, "%s\"%s\": {", i == 0 ? "{" : " ",
				               rows[i].section);
			strbuf_appendf(sb, "%s\"%s\": ", first ? "" : ", ", rows[i].name);
			strbuf_appendf(sb, "%.*f", prec, rows[i].value);
			if (last)
				strbuf_appends(sb, i + 1 == n ? "}}\n" : "},\n");
		} else {
			if (first)
				strbuf_appendf(sb, "%-13s", rows[i].section);
			strbuf_appendf(sb, " %s=", rows[i].name);
			strbuf_appendf(sb, "%.*f", prec, rows[i].value);
			if (last)
				strbuf_appendc(sb, '\n');
		}
	}
}

static void
hook_stats(void *arg, bool json, struct strbuf *sb)
{
	struct daemon *d = arg;
	struct engine_stats es;
	struct lookup_stats ls;
	struct dns_stats ds;
	struct server_stats ss;
	struct store_status st;

	daemon_store_status(d, &st);
	engine_get_stats(d->engine, &es);
	lookup_get_stats(d->lookup, &ls);
	dns_get_stats(d->dns, &ds);
	server_get_stats(d->server, &ss);
	const struct stat_row rows[] = {
		{ "lookups", "secure", (double)ls.secure, false },
		{ "lookups", "notfound", (double)ls.notfound, false },
		{ "lookups", "temp", (double)ls.temp, false },
		{ "lookups", "perm", (double)ls.perm, false },
		{ "lookups", "not_policy_domain", (double)ls.not_policy_domain, false },
		{ "cache", "hits", (double)es.cache_hits, false },
		{ "cache", "misses", (double)es.cache_misses, false },
		{ "cache", "deadline", (double)es.deadline_hits, false },
		{ "cache", "entries", (double)es.entries, false },
		{ "cache", "evictions", (double)es.evictions, false },
		{ "discoveries", "started", (double)es.discoveries, false },
		{ "discoveries", "in_flight", (double)es.in_flight, false },
		{ "discoveries", "fetched", (double)es.fetch_ok, false },
		{ "discoveries", "unchanged", (double)es.fetch_unchanged, false },
		{ "discoveries", "fail_dns", (double)es.fail_dns, false },
		{ "discoveries", "fail_http", (double)es.fail_http, false },
		{ "discoveries", "fail_http_3xx", (double)es.fail_http_class[3], false },
		{ "discoveries", "fail_http_4xx", (double)es.fail_http_class[4], false },
		{ "discoveries", "fail_http_5xx", (double)es.fail_http_class[5], false },
		{ "discoveries", "fail_tls", (double)es.fail_tls, false },
		{ "discoveries", "fail_parse", (double)es.fail_parse, false },
		{ "dns", "queries", (double)ds.queries_sent, false },
		{ "dns", "cache_hits", (double)ds.cache_hits, false },
		{ "dns", "latency_avg_ms",
		  ds.answers > 0 ? (double)ds.latency_us_total / (double)ds.answers / 1000.0 : 0,
		  true },
		{ "dns", "latency_max_ms", (double)ds.latency_us_max / 1000.0, true },
		{ "refresh", "started", (double)es.refresh_started, false },
		{ "refresh", "ok", (double)es.refresh_ok, false },
		{ "refresh", "failed", (double)es.refresh_failed, false },
		{ "refresh", "running", (double)es.refresh_running, false },
		{ "store", "connected", st.connected ? 1.0 : 0.0, false },
		{ "store", "loaded", (double)es.store_loaded, false },
		{ "store", "shared_hits", (double)es.store_hits, false },
		{ "store", "puts", (double)st.puts, false },
		{ "store", "written", (double)st.written, false },
		{ "store", "write_errors", (double)st.write_errors, false },
		{ "store", "pending", (double)st.pending, false },
		{ "store", "gets", (double)st.gets, false },
		{ "store", "get_hits", (double)st.get_hits, false },
		{ "fetch", "requests", (double)es.fetch_requests, false },
		{ "fetch", "latency_avg_ms",
		  es.fetch_requests > 0 ? (double)es.fetch_ms_total / (double)es.fetch_requests : 0,
		  true },
		{ "fetch", "latency_max_ms", (double)es.fetch_ms_max, true },
		{ "connections", "open", (double)ss.connections, false },
		{ "connections", "accepted", (double)ss.accepted, false },
		{ "limits", "max_connections", (double)ss.refused_total, false },
		{ "limits", "max_connections_per_ip", (double)ss.refused_per_ip, false },
		{ "limits", "cache_full", (double)es.limit_cache_full, false },
	};

	stats_print(rows, sizeof(rows) / sizeof(rows[0]), json, sb);
}

/* Parse and validate everything, bind new listeners, then swap; any failure keeps the old. */
static int
daemon_reload(struct daemon *d, struct strbuf *msg)
{
	struct server_listen specs[CONFIG_LISTENERS_MAX];
	struct lookup_map maps[CONFIG_MAPS_MAX];
	const struct config *nc;
	struct strbuf err;
	char lerr[512];

	strbuf_init(&err, 64 * 1024);
	nc = config_load(d->cfg->path, &err);
	if (nc == NULL) {
		strbuf_appendf(msg,
		               "reload failed; still running on the previous configuration:\n%s",
		               err.data != NULL ? err.data : "");
		log_warnx("reload result=failed config=%s reason=\"invalid configuration\"; "
		          "keeping the previous one",
		          d->cfg->path);
		strbuf_release(&err);
		return -1;
	}
	strbuf_release(&err);
	if (server_apply(d->server, specs, listens_of(nc, specs), lerr, sizeof(lerr)) == -1) {
		strbuf_appendf(msg,
		               "reload failed; still running on the previous configuration:\n"
		               "listen: %s\n",
		               lerr);
		log_warnx("reload result=failed reason=\"%s\"; keeping the previous configuration",
		          lerr);
		config_free(nc);
		return -1;
	}
	if (!dns_opts_equal(d->cfg, nc) || !fetch_opts_equal(d->cfg, nc)) {
		struct dns_opts dopts = dns_opts_of(nc);
		struct fetch_opts fopts = fetch_opts_of(nc);
		const char *errstr = NULL;
		struct dns *ndns = dns_new(d->base, &dopts, &errstr);

		if (ndns == NULL) {
			/* config_load validated the list, so this is c-ares refusing it. */
			strbuf_appendf(msg,
			               "reload: dns.servers refused by c-ares (%s); DNS "
			               "settings unchanged\n",
			               errstr != NULL ? errstr : "?");
		} else {
			struct fetch *nfetch = fetch_new(d->base, &fopts);

			engine_set_io(d->engine, ndns, nfetch);
			fetch_free(d->fetch);
			dns_free(d->dns);
			d->dns = ndns;
			d->fetch = nfetch;
		}
	}
	struct engine_opts eopts = engine_opts_of(nc);
	struct server_opts sopts = server_opts_of(nc);

	engine_set_opts(d->engine, &eopts);
	server_set_opts(d->server, &sopts);
	lookup_set_maps(d->lookup, maps, maps_of(nc, maps));
	log_set_level(nc->daemon.log_level);
	if (!control_opts_equal(d->cfg, nc))
		strbuf_appends(msg, "control.* settings take effect at the next restart\n");
	if (!store_opts_equal(d->cfg, nc))
		strbuf_appends(msg,
		               "cache.backend, sqlite.* and redis.* settings take effect at the "
		               "next restart\n");
	config_free(d->cfg);
	d->cfg = nc;
	struct engine_stats es;

	engine_get_stats(d->engine, &es);
	strbuf_appendf(msg, "reloaded %s: %zu listeners, %zu maps; cache kept (%zu entries)\n",
	               nc->path, nc->nlisteners, nc->nmaps, es.entries);
	log_info("reload result=ok config=%s listeners=%zu maps=%zu", nc->path, nc->nlisteners,
	         nc->nmaps);
	return 0;
}

static int
hook_reload(void *arg, struct strbuf *out)
{
	return daemon_reload(arg, out);
}

/* The socket systemd passed for the listener named name (socket activation), or -1. */
static int
take_inherited(const char *name, int ninherited, bool taken[])
{
	char have[128];

	for (int i = 0; i < ninherited; i++) {
		int fd = SD_LISTEN_FDS_START + i;

		if (!taken[i] && listener_fd_name(fd, have, sizeof(have)) &&
		    strcmp(have, name) == 0) {
			taken[i] = true;
			return fd;
		}
	}
	return -1;
}

static void
daemon_setup(struct daemon *d)
{
	const struct config *cfg = d->cfg;
	struct server_listen specs[CONFIG_LISTENERS_MAX];
	struct lookup_map maps[CONFIG_MAPS_MAX];
	const char *errstr = NULL;
	char err[512];
	size_t n;

	struct dns_opts dopts = dns_opts_of(cfg);
	d->dns = dns_new(d->base, &dopts, &errstr);
	if (d->dns == NULL)
		fatalx("%s: dns.servers: %s", cfg->path, errstr != NULL ? errstr : "unusable");

	struct fetch_opts fopts = fetch_opts_of(cfg);
	if (fopts.ca_file != NULL && access(fopts.ca_file, R_OK) == -1)
		fatal("fetch.ca_file: cannot read %s", fopts.ca_file);
	d->fetch = fetch_new(d->base, &fopts);

	struct engine_opts eopts = engine_opts_of(cfg);
	d->engine = engine_new(d->base, d->dns, d->fetch, &eopts);
	d->lookup = lookup_new(d->engine, maps, maps_of(cfg, maps));

	struct server_opts sopts = server_opts_of(cfg);
	d->server = server_new(d->base, &sopts, d->lookup);
	n = listens_of(cfg, specs);
	int ninherited = sd_listen_fds(1);
	bool taken[CONFIG_LISTENERS_MAX] = { false };

	if (ninherited < 0 || ninherited > CONFIG_LISTENERS_MAX)
		fatalx("systemd passed %d sockets; at most %d are usable", ninherited,
		       CONFIG_LISTENERS_MAX);
	for (size_t i = 0; i < n; i++) {
		int fd = take_inherited(specs[i].name, ninherited, taken);

		if (fd != -1)
			server_adopt(d->server, &specs[i], fd);
		else if (server_listen(d->server, &specs[i], err, sizeof(err)) == -1)
			fatalx("%s: listen[%zu]: %s", cfg->path != NULL ? cfg->path : "config", i,
			       err);
	}
	for (int i = 0; i < ninherited; i++) {
		char name[128];

		if (!taken[i])
			fatalx("%s: systemd passed a socket (%s) that no listen entry names; add "
			       "{ address = \"%s\"; } to listen, or remove it from mtastsd.socket",
			       cfg->path,
			       listener_fd_name(SD_LISTEN_FDS_START + i, name, sizeof(name)) ? name
			                                                                     : "?",
			       name);
	}

	if (cfg->control.socket[0] != '\0') {
		struct control_hooks h = { hook_status, hook_stats, hook_reload, d };
		struct control_opts co = {
			.path = cfg->control.socket,
			.mode = cfg->control.mode,
			.group = getegid(),
			.max_clients = cfg->control.max_clients,
		};
		const char *gname =
		        cfg->control.group[0] != '\0' ? cfg->control.group : cfg->daemon.group;

		if (gname[0] != '\0') {
			struct group *gr = getgrnam(gname);

			if (gr == NULL)
				fatalx("%s: control.group: no such group \"%s\"", cfg->path, gname);
			co.group = gr->gr_gid;
		} else if (cfg->daemon.user[0] != '\0') {
			struct passwd *pw = getpwnam(cfg->daemon.user);

			if (pw != NULL)
				co.group = pw->pw_gid;
		}
		ensure_socket_dir(cfg, co.path);
		d->control = control_new(d->base, &co, d->engine, d->lookup, &h, err, sizeof(err));
		if (d->control == NULL)
			fatalx("%s: control.socket: %s", cfg->path, err);
	}
}

/*
 * The sqlite file's directory is made for the daemon's user before privileges go, so the
 * store can still create its journal files afterwards.
 */
static void
prepare_store_dir(const struct config *cfg)
{
	char dir[PATH_MAX];
	char *slash;
	struct passwd *pw;

	if (cfg->cache.backend != CONFIG_CACHE_SQLITE)
		return;
	snprintf(dir, sizeof(dir), "%s", cfg->sqlite.path);
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return;
	*slash = '\0';
	if (mkdir(dir, 0750) == -1) {
		if (errno != EEXIST)
			fatal("sqlite.path: cannot create the directory %s", dir);
		return;
	}
	if (cfg->daemon.user[0] != '\0' && (pw = getpwnam(cfg->daemon.user)) != NULL &&
	    chown(dir, pw->pw_uid, (gid_t)-1) == -1)
		fatal("sqlite.path: cannot hand %s to user %s", dir, cfg->daemon.user);
}

/* Opens the store and loads its policies: the cache is whole before the first lookup. */
static void
daemon_open_store(struct daemon *d)
{
	const struct config *cfg = d->cfg;
	char *serr = NULL, lerr[512];
	long n;

	d->store = store_open(d->base, cfg, &serr);
	if (d->store == NULL && serr != NULL)
		fatalx("%s: cache.backend: %s", cfg->path, serr);
	engine_set_store(d->engine, d->store);
	n = engine_load_store(d->engine, lerr, sizeof(lerr));
	if (n < 0)
		fatalx("%s: cache.backend: %s", cfg->path, lerr);
	if (d->store != NULL)
		log_info("store backend=%s result=loaded policies=%ld", d->store->ops->name, n);
}

/*
 * Forks for the background. The parent waits until the child reports ready (exit 0) or dies
 * (exit 1), so start-up errors such as an unusable cache file still reach the terminal and
 * the exit status. Returns the child's end of the pipe.
 */
static int
detach_begin(void)
{
	int p[2];
	pid_t pid;
	char c;
	ssize_t n;

	if (pipe(p) == -1)
		fatal("cannot create a pipe to detach");
	pid = fork();
	if (pid == -1)
		fatal("cannot detach from the terminal");
	if (pid > 0) {
		/* The parent only waits: the event loop's signal handling is the child's. */
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		close(p[1]);
		while ((n = read(p[0], &c, 1)) == -1 && errno == EINTR)
			;
		_exit(n == 1 ? 0 : 1);
	}
	close(p[0]);
	if (setsid() == -1)
		fatal("cannot detach from the terminal");
	if (chdir("/") == -1)
		fatal("cannot change to /");
	return p[1];
}

/* Ready in the background: syslog from now on, stdio to /dev/null, the parent released. */
static void
detach_finish(int ready_fd, const struct config *cfg)
{
	int null = open("/dev/null", O_RDWR);

	log_init("mtastsd", false, cfg->daemon.log_level);
	if (null != -1) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	if (write(ready_fd, "r", 1) != 1)
		log_warn("cannot tell the starting process that the daemon is ready");
	close(ready_fd);
}

static void
daemon_teardown(struct daemon *d)
{
	/* Upper layers first; the multi and channel go before the event_base (curl, c-ares). */
	control_free(d->control);
	server_free(d->server);
	lookup_free(d->lookup);
	/* The engine cancels its store gets; then the store writes what is pending. */
	engine_free(d->engine);
	store_close(d->store);
	fetch_free(d->fetch);
	dns_free(d->dns);
	if (d->ev_stop != NULL)
		event_free(d->ev_stop);
	if (d->ev_trim != NULL)
		event_free(d->ev_trim);
	event_free(d->ev_term);
	event_free(d->ev_int);
	event_free(d->ev_hup);
	event_base_free(d->base);
}

int
main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	bool foreground = false, check = false;
	struct daemon d;
	struct strbuf err;
	int ch, ready_fd = -1;

	while ((ch = getopt(argc, argv, "c:ftVhS")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 't':
			check = true;
			break;
		case 'V':
			printf("mtastsd %s\n", PACKAGE_VERSION);
			return 0;
		case 'S':
			/* The option table, for doc/man/check-conf-man.py: docs cannot drift. */
			config_dump_schema(stdout);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (check)
		return config_check(path, stdout);
	/* Absolute, so a reload still finds it after detaching changed to /. */
	char *abs_path = realpath(path, NULL);

	if (abs_path != NULL)
		path = abs_path;

	memset(&d, 0, sizeof(d));
	strbuf_init(&err, 64 * 1024);
	d.cfg = config_load(path, &err);
	if (d.cfg == NULL) {
		fprintf(stderr, "mtastsd: %s",
		        err.data != NULL ? err.data : "cannot load config\n");
		strbuf_release(&err);
		return 1;
	}
	strbuf_release(&err);
	/* Errors before the daemon is ready go to the terminal even when it detaches. */
	log_init("mtastsd", true, d.cfg->daemon.log_level);
	log_versions();
	refuse_root(&d.cfg->daemon);

	signal(SIGPIPE, SIG_IGN);
#ifdef HAVE_MALLOC_TRIM
	/*
	 * TLS record and transfer buffers (16 KiB and up, a few per fetch) get their own
	 * mappings, returned when the fetch ends, instead of heap pages that long-lived small
	 * allocations (DNS answers) would pin between them. glibc's default threshold rises to
	 * 32 MiB once buffers are freed; a fixed one keeps it here.
	 */
	mallopt(M_MMAP_THRESHOLD, 16 * 1024);
#endif
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatalx("libcurl initialisation failed");
	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
		fatalx("c-ares initialisation failed");
	d.base = daemon_event_base();
	/* Caught from the start (handled once the loop runs): a SIGTERM while the store loads
	 * still ends in a clean exit, not death by signal. */
	d.ev_term = evsignal_new(d.base, SIGTERM, daemon_on_signal, &d);
	d.ev_int = evsignal_new(d.base, SIGINT, daemon_on_signal, &d);
	d.ev_hup = evsignal_new(d.base, SIGHUP, daemon_on_signal, &d);
	evsignal_add(d.ev_term, NULL);
	evsignal_add(d.ev_int, NULL);
	evsignal_add(d.ev_hup, NULL);
	daemon_setup(&d);
	if (!foreground) {
		ready_fd = detach_begin();
		if (event_reinit(d.base) == -1)
			fatalx("cannot re-initialise the event loop after detaching");
	}
	write_pid_file(d.cfg->daemon.pid_file);
	prepare_store_dir(d.cfg);
	drop_privileges(&d.cfg->daemon);
	/* After the fork (sqlite connections and threads do not survive one) and as the
	 * daemon's user, so every file the store creates is the user's. */
	daemon_open_store(&d);

#ifdef HAVE_MALLOC_TRIM
	struct timeval trim_every = { 2, 0 };

	d.ev_trim = event_new(d.base, -1, EV_PERSIST, daemon_on_trim, &d);
	event_add(d.ev_trim, &trim_every);
#endif
	d.started = time(NULL);
	server_start(d.server);
	if (d.control != NULL)
		control_start(d.control);
	log_info("mtastsd ready: config=%s listeners=%zu maps=%zu cache=%s", path,
	         d.cfg->nlisteners, d.cfg->nmaps, d.store != NULL ? d.store->ops->name : "memory");
	if (ready_fd != -1)
		detach_finish(ready_fd, d.cfg);
	daemon_notify_ready(&d, "serving");
	event_base_dispatch(d.base);

	daemon_teardown(&d);
	if (d.cfg->daemon.pid_file[0] != '\0')
		unlink(d.cfg->daemon.pid_file);
	config_free(d.cfg);
	free(abs_path);
	ares_library_cleanup();
	curl_global_cleanup();
	log_info("mtastsd stopped");
	return 0;
}
