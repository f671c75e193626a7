/* main.c: mtasts-check, the MTA-STS domain checker: options, one event loop, output, exit. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "check/check.h"
#include "check/output.h"
#include "check/probe.h"
#include "check/verdict.h"
#include "engine/engine.h"
#include "io/dns.h"
#include "io/fetch.h"
#include "sts/domain.h"
#include "sts/policy.h"

/* Exit statuses beyond the verdicts' 0-5 (doc/mtasts-check.md). */
#define EXIT_USAGE    64
#define EXIT_INTERNAL 70

#define CHECK_DOMAINS_MAX 64

struct run {
	struct event_base *base;
	size_t left;
};

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: mtasts-check [options] DOMAIN...\n"
	        "  --json              JSON output (doc/mtasts-check.schema.json)\n"
	        "  --probe-mx          connect to port 25 of every MX address: EHLO, STARTTLS,\n"
	        "                      certificate check (off by default)\n"
	        "  --dns SERVER[:PORT] DNS server(s) to ask, comma-separated (default:\n"
	        "                      /etc/resolv.conf)\n"
	        "  --ca-file FILE      trust anchors for HTTPS and the probes (default: system)\n"
	        "  --timeout SECONDS   per network step (default 10)\n"
	        "  --smtp-port PORT    port for --probe-mx (default 25)\n"
	        "  --no-color          never colour the text output\n"
	        "  -h, --help          this help\n"
	        "exit status: 0 enforcing, 1 testing, 2 disabled, 3 not configured, 4 broken,\n"
	        "5 DNS failure; with several domains the highest; 64 usage, 70 internal error\n");
}

static void
on_done(void *arg, struct check *c)
{
	struct run *run = arg;

	if (--run->left == 0)
		event_base_loopbreak(run->base);
}

static bool
parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return false;
	v = strtoul(s, &end, 10);
	if (*end != '\0' || v == 0 || v > max)
		return false;
	*out = v;
	return true;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "probe-mx", no_argument, NULL, 'p' },
		{ "dns", required_argument, NULL, 'd' },
		{ "ca-file", required_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 't' },
		{ "smtp-port", required_argument, NULL, 's' },
		{ "no-color", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false, probe = false, colour;
	const char *dns_servers = NULL, *ca_file = NULL, *err = NULL;
	unsigned long timeout_s = 10, smtp_port = 25, v;
	char domains[CHECK_DOMAINS_MAX][DOMAIN_NAME_MAX + 1];
	struct check *checks[CHECK_DOMAINS_MAX] = { 0 };
	struct report *reports[CHECK_DOMAINS_MAX];
	size_t ndomains = 0;
	int ch, status = 0;
	struct run run = { 0 };
	struct check_env env = { 0 };

	colour = isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'j':
			json = true;
			break;
		case 'p':
			probe = true;
			break;
		case 'd':
			dns_servers = optarg;
			break;
		case 'c':
			ca_file = optarg;
			break;
		case 't':
			if (!parse_uint(optarg, 600, &timeout_s)) {
				fprintf(stderr, "mtasts-check: --timeout wants 1-600 seconds\n");
				return EXIT_USAGE;
			}
			break;
		case 's':
			if (!parse_uint(optarg, 65535, &v)) {
				fprintf(stderr, "mtasts-check: --smtp-port wants 1-65535\n");
				return EXIT_USAGE;
			}
			smtp_port = v;
			break;
		case 'n':
			colour = false;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind == argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	for (int i = optind; i < argc; i++) {
		enum domain_result dr;

		if (ndomains == CHECK_DOMAINS_MAX) {
			fprintf(stderr, "mtasts-check: at most %d domains at once\n",
			        CHECK_DOMAINS_MAX);
			return EXIT_USAGE;
		}
		dr = domain_normalise(argv[i], strlen(argv[i]), domains[ndomains]);
		if (dr != DOMAIN_OK) {
			fprintf(stderr, "mtasts-check: '%s' is not a domain name: %s\n", argv[i],
			        domain_result_str(dr));
			return EXIT_USAGE;
		}
		ndomains++;
	}

	log_init("mtasts-check", true, LOG_LEVEL_ERR);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "mtasts-check: curl_global_init failed\n");
		return EXIT_INTERNAL;
	}
	run.base = event_base_new();
	if (run.base == NULL)
		fatalx("cannot create the event loop");
	env.base = run.base;
	env.dns = dns_new(run.base,
	                  &(struct dns_opts){ .servers = dns_servers,
	                                      .timeout_ms = (unsigned)(timeout_s * 1000 / 3 + 1),
	                                      .tries = 3,
	                                      .max_ttl = 60,
	                                      .negative_ttl = 60,
	                                      .servfail_ttl = 0,
	                                      .cache_max = 4096 },
	                  &err);
	if (env.dns == NULL) {
		fprintf(stderr, "mtasts-check: --dns: %s\n", err != NULL ? err : "bad server list");
		event_base_free(run.base);
		return EXIT_USAGE;
	}
	env.fetch =
	        fetch_new(run.base, &(struct fetch_opts){ .ca_file = ca_file,
	                                                  .timeout_ms = (unsigned)timeout_s * 1000,
	                                                  .body_max = POLICY_BODY_MAX,
	                                                  .user_agent = NULL,
	                                                  .max_parallel = 16,
	                                                  .cert_details = true });
	env.engine = engine_new(run.base, env.dns, env.fetch,
	                        &(struct engine_opts){
	                                .recheck_interval = 60,
	                                .fail_ttl = 60,
	                                .backoff = 60,
	                                .lookup_timeout_ms = (unsigned)timeout_s * 3000,
	                                .max_entries = 1024,
	                        });
	if (probe) {
		env.probe =
		        probe_new(run.base,
		                  &(struct probe_opts){ .ca_file = ca_file,
		                                        .timeout_ms = (unsigned)timeout_s * 1000,
		                                        .port = (unsigned)smtp_port },
		                  &err);
		if (env.probe == NULL) {
			fprintf(stderr, "mtasts-check: --ca-file %s: %s\n", ca_file ? ca_file : "",
			        err);
			status = EXIT_USAGE;
			goto out;
		}
	}
	run.left = ndomains;
	for (size_t i = 0; i < ndomains; i++)
		checks[i] = check_start(&env, domains[i], on_done, &run);
	if (event_base_dispatch(run.base) == -1 || run.left != 0) {
		fprintf(stderr, "mtasts-check: the event loop failed\n");
		status = EXIT_INTERNAL;
		goto out;
	}
	for (size_t i = 0; i < ndomains; i++) {
		int st;

		reports[i] = check_report(checks[i]);
		st = verdict_exit_status(reports[i]);
		if (st > status)
			status = st;
		if (!json) {
			if (i > 0)
				fputc('\n', stdout);
			text_report(stdout, reports[i], colour);
		}
	}
	if (json)
		json_reports(stdout, reports, ndomains);
	if (fflush(stdout) != 0)
		status = EXIT_INTERNAL;
out:
	for (size_t i = 0; i < ndomains; i++)
		check_free(checks[i]);
	probe_free(env.probe);
	engine_free(env.engine);
	dns_free(env.dns);
	fetch_free(env.fetch);
	event_base_free(run.base);
	curl_global_cleanup();
	return status;
}
