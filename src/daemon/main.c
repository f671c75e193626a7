/* main.c: mtastsd, the MTA-STS policy daemon: composition, signals, start-up and shutdown. */
#include "config.h"

#include <errno.h>
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
#include "daemon/lookup.h"
#include "daemon/server.h"
#include "engine/engine.h"
#include "io/dns.h"
#include "io/fetch.h"

#define DEFAULT_CONFIG "/etc/mtastsd/mtastsd.conf"

struct daemon {
	const struct config *cfg;
	struct event_base *base;
	struct dns *dns;
	struct fetch *fetch;
	struct engine *engine;
	struct lookup *lookup;
	struct server *server;
	struct event *ev_term;
	struct event *ev_int;
	struct event *ev_hup;
	struct event *ev_stop; /* shutdown deadline */
	bool stopping;
};

static void
usage(FILE *out)
{
	fprintf(out, "usage: mtastsd [-f] [-t] [-c FILE] [-V]\n"
	             "  -c FILE  configuration file (default " DEFAULT_CONFIG ")\n"
	             "  -f       stay in the foreground and log to stderr (else detach, log to\n"
	             "           syslog facility mail)\n"
	             "  -t       check the configuration file and exit 0 (valid) or 1\n"
	             "  -V       print the version and exit\n");
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

static void
daemon_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	unsigned ms = d->cfg->limits.shutdown_timeout_ms;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (sig == SIGHUP) {
		/* Reload arrives with the control channel (mtasts-ctl reload); until then the
		 * running configuration stays, and the operator is told so. */
		log_warnx("SIGHUP: configuration reload is not supported by this version; "
		          "restart mtastsd to apply changes to %s",
		          d->cfg->path != NULL ? d->cfg->path : "the configuration");
		return;
	}
	if (d->stopping)
		return;
	d->stopping = true;
	log_info("shutdown: signal %s; no new connections, finishing pending answers",
	         sig == SIGTERM ? "TERM" : "INT");
	d->ev_stop = evtimer_new(d->base, daemon_on_stop_deadline, d);
	evtimer_add(d->ev_stop, &tv);
	server_drain(d->server, daemon_on_drained, d);
}

/* setgroups, setgid, setuid, then prove root cannot be regained. */
static void
drop_privileges(const struct config_daemon *dc)
{
	struct passwd *pw;
	gid_t gid;

	if (dc->user[0] == '\0')
		return;
	pw = getpwnam(dc->user);
	if (pw == NULL)
		fatalx("daemon.user: no such user \"%s\"; create it or change the setting",
		       dc->user);
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

static void
daemon_setup(struct daemon *d)
{
	const struct config *cfg = d->cfg;
	const char *errstr = NULL;
	struct lookup_map maps[CONFIG_MAPS_MAX];
	char err[512];

	struct dns_opts dopts = {
		.servers = cfg->dns.servers.csv,
		.timeout_ms = cfg->dns.timeout_ms,
		.tries = cfg->dns.tries,
		.max_ttl = cfg->dns.max_ttl_s,
		.negative_ttl = cfg->dns.negative_ttl_s,
		.servfail_ttl = cfg->dns.servfail_ttl_s,
		.cache_max = cfg->dns.cache_size,
	};
	d->dns = dns_new(d->base, &dopts, &errstr);
	if (d->dns == NULL)
		fatalx("%s: dns.servers: %s", cfg->path, errstr != NULL ? errstr : "unusable");

	struct fetch_opts fopts = {
		.ca_file = cfg->fetch.ca_file[0] != '\0' ? cfg->fetch.ca_file : NULL,
		.timeout_ms = cfg->fetch.timeout_ms,
		.body_max = 65536,
		.user_agent = cfg->fetch.user_agent,
		.max_parallel = cfg->fetch.max_parallel,
	};
	if (fopts.ca_file != NULL && access(fopts.ca_file, R_OK) == -1)
		fatal("fetch.ca_file: cannot read %s", fopts.ca_file);
	d->fetch = fetch_new(d->base, &fopts);

	struct engine_opts eopts = {
		.recheck_interval = cfg->cache.recheck_interval_s,
		.fail_ttl = cfg->dns.servfail_ttl_s,
		.backoff = cfg->fetch.backoff_s,
		.lookup_timeout_ms = cfg->limits.lookup_timeout_ms,
		.dns_failure_temp = cfg->dns.on_failure == CONFIG_DNS_FAILURE_TEMP,
		.max_entries = cfg->cache.max_entries,
	};
	d->engine = engine_new(d->base, d->dns, d->fetch, &eopts);

	for (size_t i = 0; i < cfg->nmaps; i++) {
		maps[i].name = cfg->maps[i].name;
		maps[i].opts.strict_testing = cfg->maps[i].strict_testing;
		maps[i].opts.tlsrpt = cfg->maps[i].tlsrpt;
	}
	d->lookup = lookup_new(d->engine, maps, cfg->nmaps);

	struct server_opts sopts = {
		.request_max = cfg->limits.request_size,
		.idle_timeout_s = cfg->limits.idle_timeout_s,
		.max_pending = cfg->limits.max_pending_per_connection,
		.max_connections = cfg->limits.max_connections,
		.max_connections_per_ip = cfg->limits.max_connections_per_ip,
	};
	d->server = server_new(d->base, &sopts, d->lookup);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *cl = &cfg->listeners[i];
		struct server_listen sl = {
			.proto = cl->protocol == CONFIG_PROTOCOL_SOCKETMAP ? CONN_SOCKETMAP
			                                                   : CONN_TCPTABLE,
			.host = cl->address.host,
			.port = cl->address.port,
			.path = cl->address.path,
			.mode = cl->mode,
			.map = cl->protocol == CONFIG_PROTOCOL_TCP_TABLE ? cl->map : NULL,
		};

		if (sl.path != NULL)
			ensure_socket_dir(cfg, sl.path);
		if (server_listen(d->server, &sl, err, sizeof(err)) == -1)
			fatalx("%s: listen[%zu]: %s", cfg->path != NULL ? cfg->path : "config", i,
			       err);
	}
}

static void
daemon_teardown(struct daemon *d)
{
	/* Upper layers first; the multi and channel go before the event_base (curl, c-ares). */
	server_free(d->server);
	lookup_free(d->lookup);
	engine_free(d->engine);
	fetch_free(d->fetch);
	dns_free(d->dns);
	if (d->ev_stop != NULL)
		event_free(d->ev_stop);
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
	int ch;

	while ((ch = getopt(argc, argv, "c:ftVh")) != -1) {
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
	log_init("mtastsd", foreground, d.cfg->daemon.log_level);
	log_versions();

	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatalx("libcurl initialisation failed");
	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
		fatalx("c-ares initialisation failed");
	d.base = event_base_new();
	if (d.base == NULL)
		fatalx("cannot create the event loop");
	daemon_setup(&d);
	if (!foreground) {
		/* Detach only after binding, so a bad listener still fails on the terminal. */
		if (daemon(0, 0) == -1)
			fatal("cannot detach from the terminal");
		if (event_reinit(d.base) == -1)
			fatalx("cannot re-initialise the event loop after detaching");
	}
	write_pid_file(d.cfg->daemon.pid_file);
	drop_privileges(&d.cfg->daemon);

	d.ev_term = evsignal_new(d.base, SIGTERM, daemon_on_signal, &d);
	d.ev_int = evsignal_new(d.base, SIGINT, daemon_on_signal, &d);
	d.ev_hup = evsignal_new(d.base, SIGHUP, daemon_on_signal, &d);
	evsignal_add(d.ev_term, NULL);
	evsignal_add(d.ev_int, NULL);
	evsignal_add(d.ev_hup, NULL);

	server_start(d.server);
	log_info("mtastsd ready: config=%s listeners=%zu maps=%zu cache=memory", path,
	         d.cfg->nlisteners, d.cfg->nmaps);
	event_base_dispatch(d.base);

	daemon_teardown(&d);
	if (d.cfg->daemon.pid_file[0] != '\0')
		unlink(d.cfg->daemon.pid_file);
	config_free(d.cfg);
	ares_library_cleanup();
	curl_global_cleanup();
	log_info("mtastsd stopped");
	return 0;
}
