/*
 * tls_floor.c: the CPU floor of one policy fetch, for bench.py's cold scenario.
 *
 * A bare OpenSSL client does what the daemon must do per new policy host at the very least:
 * TCP connect, a full TLS handshake with certificate and name verification, one GET, read the
 * reply. No DNS, no HTTP parsing, no event loop, one SSL_CTX for the whole run (the cheapest
 * possible use of OpenSSL). Its CPU per fetch is the floor beside the daemon's cold figure,
 * as the fixed-answer server is the ceiling beside the cached figures.
 *
 *   tls_floor -a ADDR -C CAFILE -k HOSTS_FILE [-n MAX]
 *
 * HOSTS_FILE holds one policy domain per line; each is fetched once as mta-sts.<domain>.
 * Prints one JSON line: {"fetches": N, "ok": N, "cpu_ms_per_fetch": X, "elapsed_s": Y}.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HOSTS_MAX 100000

static double
cpu_seconds(void)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	return (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec / 1e6 +
	       (double)r.ru_stime.tv_sec + (double)r.ru_stime.tv_usec / 1e6;
}

static double
wall_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One fetch of https://host/.well-known/mta-sts.txt at addr:443; 1 when it got a 200. */
static int
fetch_one(SSL_CTX *ctx, const struct sockaddr_in *sa, const char *host)
{
	char req[512], buf[16384];
	int fd, n, ok = 0, first = 1;
	SSL *ssl;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd == -1 || connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == -1) {
		perror("tls_floor: connect");
		exit(1);
	}
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	SSL_set_tlsext_host_name(ssl, host);
	SSL_set1_host(ssl, host);
	if (SSL_connect(ssl) == 1) {
		n = snprintf(req, sizeof(req),
		             "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: %s\r\n"
		             "Connection: close\r\n\r\n",
		             host);
		SSL_write(ssl, req, n);
		while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) {
			if (first)
				ok = n >= 12 && memcmp(buf, "HTTP/1.1 200", 12) == 0;
			first = 0;
		}
	} else {
		ERR_print_errors_fp(stderr);
	}
	SSL_free(ssl);
	close(fd);
	return ok;
}

int
main(int argc, char **argv)
{
	const char *addr = "127.0.0.1", *ca = NULL, *keys = NULL;
	long max = HOSTS_MAX;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(443) };
	char line[300], host[320];
	int ch;

	while ((ch = getopt(argc, argv, "a:C:k:n:")) != -1) {
		switch (ch) {
		case 'a':
			addr = optarg;
			break;
		case 'C':
			ca = optarg;
			break;
		case 'k':
			keys = optarg;
			break;
		case 'n':
			max = strtol(optarg, NULL, 10);
			break;
		default:
			fprintf(stderr,
			        "usage: tls_floor -a ADDR -C CAFILE -k HOSTS_FILE [-n MAX]\n");
			return 2;
		}
	}
	if (ca == NULL || keys == NULL || inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || max < 1 ||
	    max > HOSTS_MAX) {
		fprintf(stderr, "usage: tls_floor -a ADDR -C CAFILE -k HOSTS_FILE [-n MAX]\n");
		return 2;
	}
	FILE *f = fopen(keys, "r");

	if (f == NULL) {
		perror(keys);
		return 1;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	/* What the daemon asks of a policy host: TLS 1.2 or later, a verified chain and name. */
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);

	long fetches = 0, ok = 0;
	double c0 = cpu_seconds(), w0 = wall_seconds();

	while (fetches < max && fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0')
			continue;
		snprintf(host, sizeof(host), "mta-sts.%s", line);
		ok += fetch_one(ctx, &sa, host);
		fetches++;
	}
	double cpu = cpu_seconds() - c0, wall = wall_seconds() - w0;

	fclose(f);
	SSL_CTX_free(ctx);
	printf("{\"fetches\": %ld, \"ok\": %ld, \"cpu_ms_per_fetch\": %.4f, \"elapsed_s\": %.3f}\n",
	       fetches, ok, fetches > 0 ? cpu * 1000.0 / (double)fetches : 0.0, wall);
	return fetches > 0 && ok == fetches ? 0 : 1;
}
