/* https.c: HTTPS GET through libcurl's multi interface, driven by one libevent base. */
#include "config.h"

#include "io/https.h"

#include <arpa/inet.h>
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/log.h"
#include "base/strbuf.h"
#include "base/xmalloc.h"
#include "io/certinfo.h"

/* A zeroed fetch_opts must not mean "no deadline" (curl's meaning of 0) or "never start". */
#define HTTPS_DEFAULT_TIMEOUT_MS 10000U
#define HTTPS_DEFAULT_AGENT      "mtastsd/" PACKAGE_VERSION

/*
 * Stall detection on top of the total deadline: a transfer that moves fewer than this many
 * bytes per second for half the deadline is given up early, so it frees its slot sooner.
 */
#define HTTPS_LOW_SPEED_BYTES 100L

/* Room for one certificate name or date as OpenSSL prints it; longer ones are cut. */
#define HTTPS_CERT_TEXT_MAX 256

enum https_req_state {
	HTTPS_REQ_NEW,
	HTTPS_REQ_QUEUED,  /* easy handle built, waiting for a slot (max_parallel) */
	HTTPS_REQ_RUNNING, /* in the multi handle */
	HTTPS_REQ_FAILED,  /* failed before curl ran; the callback waits for the next loop turn */
	HTTPS_REQ_DONE,    /* callback running: cancel is a no-op from here on */
};

struct https_req {
	TAILQ_ENTRY(https_req) entry; /* in exactly one of f->queued, f->running, f->failed */
	struct https *f;
	enum https_req_state state;
	fetch_cb cb;
	void *arg;
	uint64_t start_ms;

	char *host;
	char *url;
	struct curl_slist *resolve;
	CURL *easy;
	CURLSH *share;          /* this request's private DNS cache (see https_req_build) */
	struct event *defer_ev; /* FAILED only */
	enum fetch_status fail_status;

	struct strbuf body;
	bool too_large;
	char detail[CURL_ERROR_SIZE]; /* our own reason, preferred over curl's */
	char errbuf[CURL_ERROR_SIZE]; /* curl's CURLOPT_ERRORBUFFER */

	char cert_subject[HTTPS_CERT_TEXT_MAX];
	char cert_issuer[HTTPS_CERT_TEXT_MAX];
	char cert_not_after[HTTPS_CERT_TEXT_MAX];
	int tls_version;
	struct certinfo *cert; /* only with fetch_opts.cert_details */
};

/* curl keeps a pointer to one of these per socket (curl_multi_assign). */
struct https_sock {
	LIST_ENTRY(https_sock) entry;
	struct event *ev;
};

TAILQ_HEAD(https_req_list, https_req);
LIST_HEAD(https_sock_list, https_sock);

struct https {
	struct event_base *base;
	CURLM *multi;
	struct event *timer; /* the one timer curl asks for */
	struct https_sock_list socks;

	char *ca_file;
	X509_STORE *store; /* trust anchors, loaded once; NULL if loading failed */
	char *user_agent;
	unsigned timeout_ms;
	size_t body_max;
	unsigned max_parallel;
	bool cert_details;

	struct https_req_list queued;
	struct https_req_list running;
	struct https_req_list failed;
	unsigned nrunning;

	unsigned busy; /* > 0 while completions are dispatched: https_free waits for it */
	bool dying;
};

/*
 * curl results that mean something more specific than FETCH_ERROR. CURLE_SSL_CACERT is an
 * alias of CURLE_PEER_FAILED_VERIFICATION. CURLE_SSL_CACERT_BADFILE stays FETCH_ERROR on
 * purpose: an unreadable CA bundle is our fault, not the server's certificate.
 * CURLE_RECV_ERROR is TRUNCATED only once a response has started (see https_map).
 */
static const struct {
	CURLcode code;
	enum fetch_status status;
} https_curl_map[] = {
	{ CURLE_OK, FETCH_OK },
	{ CURLE_PEER_FAILED_VERIFICATION, FETCH_CERT },
	{ CURLE_SSL_ISSUER_ERROR, FETCH_CERT },
	{ CURLE_SSL_CONNECT_ERROR, FETCH_TLS },
	{ CURLE_SSL_CIPHER, FETCH_TLS },
	{ CURLE_SSL_SHUTDOWN_FAILED, FETCH_TLS },
	{ CURLE_COULDNT_CONNECT, FETCH_CONNECT },
	{ CURLE_OPERATION_TIMEDOUT, FETCH_TIMEOUT },
	{ CURLE_PARTIAL_FILE, FETCH_TRUNCATED },
};

static void https_destroy(struct https *f);
static void https_pump(struct https *f);

static uint64_t
https_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- requests: states, lists, delivery ---- */

static void
https_req_set_state(struct https_req *req, enum https_req_state st)
{
	static const char *const names[] = {
		[HTTPS_REQ_NEW] = "new",         [HTTPS_REQ_QUEUED] = "queued",
		[HTTPS_REQ_RUNNING] = "running", [HTTPS_REQ_FAILED] = "failed",
		[HTTPS_REQ_DONE] = "done",
	};

	/* Only forward: new -> queued -> running -> done, or new/queued -> failed -> done. */
	assert(st > req->state);
	assert(!(req->state == HTTPS_REQ_RUNNING && st == HTTPS_REQ_FAILED));
	if (log_debug_enabled())
		log_debug("fetch req=%p host=%s state=%s->%s", (void *)req, req->host,
		          names[req->state], names[st]);
	req->state = st;
}

static struct https_req_list *
https_req_list(struct https *f, const struct https_req *req)
{
	switch (req->state) {
	case HTTPS_REQ_QUEUED:
		return &f->queued;
	case HTTPS_REQ_RUNNING:
		return &f->running;
	case HTTPS_REQ_FAILED:
		return &f->failed;
	default:
		return NULL;
	}
}

/* Takes req off its list (and out of the multi handle) without freeing it. */
static void
https_req_unlink(struct https_req *req)
{
	struct https *f = req->f;
	struct https_req_list *list = https_req_list(f, req);

	if (list == NULL)
		return;
	TAILQ_REMOVE(list, req, entry);
	if (req->state == HTTPS_REQ_RUNNING) {
		curl_multi_remove_handle(f->multi, req->easy);
		f->nrunning--;
	}
}

static void
https_req_free(struct https_req *req)
{
	/* The easy handle goes before the share it uses, and both before the RESOLVE list. */
	if (req->easy != NULL)
		curl_easy_cleanup(req->easy);
	if (req->share != NULL)
		curl_share_cleanup(req->share);
	curl_slist_free_all(req->resolve);
	if (req->defer_ev != NULL)
		event_free(req->defer_ev);
	strbuf_release(&req->body);
	free(req->host);
	free(req->url);
	free(req->cert);
	free(req);
}

/* Runs the user callback with https_free() held off, then frees req. */
static void
https_req_deliver(struct https_req *req, const struct fetch_result *res)
{
	struct https *f = req->f;

	https_req_set_state(req, HTTPS_REQ_DONE);
	if (log_debug_enabled())
		log_debug("fetch host=%s addr=%s status=%s http=%ld ms=%u reason=\"%s\"", req->host,
		          res->remote_addr, fetch_status_str(res->status), res->http_status,
		          res->elapsed_ms, res->error);
	f->busy++;
	req->cb(req->arg, res);
	f->busy--;
	https_req_free(req);
}

static void
https_on_deferred(evutil_socket_t fd, short what, void *arg)
{
	struct https_req *req = arg;
	struct https *f = req->f;
	struct fetch_result res = {
		.status = req->fail_status,
		.body = "",
		.error = req->detail,
		.remote_addr = "",
		.elapsed_ms = (uint32_t)(https_now_ms() - req->start_ms),
		.cert_subject = "",
		.cert_issuer = "",
		.cert_not_after = "",
	};

	https_req_unlink(req);
	https_req_deliver(req, &res);
	if (f->dying && f->busy == 0)
		https_destroy(f);
}

/* A failure found before curl ran: report it from the loop, never from https_start(). */
static void
https_req_fail(struct https_req *req, enum fetch_status st, const char *detail)
{
	struct https *f = req->f;

	https_req_set_state(req, HTTPS_REQ_FAILED);
	req->fail_status = st;
	snprintf(req->detail, sizeof(req->detail), "%s", detail);
	req->defer_ev = event_new(f->base, -1, 0, https_on_deferred, req);
	if (req->defer_ev == NULL)
		fatalx("fetch: cannot allocate event");
	TAILQ_INSERT_TAIL(&f->failed, req, entry);
	event_active(req->defer_ev, EV_TIMEOUT, 0);
}

/* ---- curl callbacks: they only record; nothing here calls back into curl or the user ---- */

static size_t
https_on_header(char *buf, size_t size, size_t nitems, void *arg)
{
	static const char name[] = "content-length:";
	struct https_req *req = arg;
	size_t len = size * nitems, i = sizeof(name) - 1;
	uint64_t n = 0;

	if (len < i || strncasecmp(buf, name, i) != 0)
		return len;
	while (i < len && (buf[i] == ' ' || buf[i] == '\t'))
		i++;
	/* Only the comparison with body_max matters, so stop counting once past it. */
	for (; i < len && buf[i] >= '0' && buf[i] <= '9' && n <= req->body.max; i++)
		n = n * 10 + (uint64_t)(buf[i] - '0');
	if (n > req->body.max) {
		req->too_large = true;
		snprintf(req->detail, sizeof(req->detail), "Content-Length over %zu bytes",
		         req->body.max);
		return 0; /* curl aborts with CURLE_WRITE_ERROR */
	}
	return len;
}

static size_t
https_on_body(char *buf, size_t size, size_t nitems, void *arg)
{
	struct https_req *req = arg;
	size_t len = size * nitems;

	/* The strbuf's max is body_max, so exactly body_max bytes still fit. */
	if (strbuf_append(&req->body, buf, len) == -1) {
		req->too_large = true;
		snprintf(req->detail, sizeof(req->detail), "body over %zu bytes", req->body.max);
		return 0; /* curl aborts with CURLE_WRITE_ERROR */
	}
	return len;
}

static void
https_print_bio(BIO *bio, char *out, size_t outlen)
{
	int n = BIO_read(bio, out, (int)outlen - 1);

	out[n > 0 ? n : 0] = '\0';
}

static void
https_req_note_cert(struct https_req *req, X509 *leaf)
{
	/* RFC 2253 with escaping: no control characters or quotes from the peer reach the logs. */
	static const unsigned long name_flags = XN_FLAG_RFC2253;
	BIO *bio = BIO_new(BIO_s_mem());

	if (bio == NULL)
		fatalx("fetch: out of memory");
	X509_NAME_print_ex(bio, X509_get_subject_name(leaf), 0, name_flags);
	https_print_bio(bio, req->cert_subject, sizeof(req->cert_subject));
	(void)BIO_reset(bio);
	X509_NAME_print_ex(bio, X509_get_issuer_name(leaf), 0, name_flags);
	https_print_bio(bio, req->cert_issuer, sizeof(req->cert_issuer));
	(void)BIO_reset(bio);
	ASN1_TIME_print(bio, X509_get0_notAfter(leaf));
	https_print_bio(bio, req->cert_not_after, sizeof(req->cert_not_after));
	BIO_free(bio);
}

/*
 * OpenSSL's chain verification, wrapped so the leaf is seen before the verdict: the result
 * then names the certificate even when it was rejected. Sessions are never resumed, so every
 * handshake passes through here.
 */
static int
https_on_verify(X509_STORE_CTX *xs, void *arg)
{
	struct https_req *req = arg;
	X509 *leaf = X509_STORE_CTX_get0_cert(xs);
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	int ok;

	if (ssl != NULL)
		req->tls_version = SSL_version(ssl);
	if (leaf != NULL)
		https_req_note_cert(req, leaf);
	ok = X509_verify_cert(xs);
	if (req->cert != NULL)
		certinfo_note(req->cert, xs, ssl);
	return ok;
}

/*
 * Runs once per connection, after curl has set up its SSL_CTX and before the handshake.
 * The name check moves into chain verification with RFC 6125 rules: DNS-ID (SAN dNSName)
 * only, never the subject CN, which curl 7.88 still falls back to when there is no SAN;
 * a wildcard must be a whole left-most label.
 */
static CURLcode
https_on_ssl_ctx(CURL *easy, void *sslctx, void *arg)
{
	struct https_req *req = arg;
	SSL_CTX *ctx = sslctx;
	X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);

	/* The store built once in https_new(): curl would re-read the CA file for every
	 * connection, which for the system bundle costs ~20 ms of CPU per fetch. */
	if (req->f->store == NULL)
		return CURLE_SSL_CACERT_BADFILE;
	SSL_CTX_set1_cert_store(ctx, req->f->store);

	X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
	                                               X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (X509_VERIFY_PARAM_set1_host(param, req->host, 0) != 1)
		return CURLE_SSL_CONNECT_ERROR;
	SSL_CTX_set_cert_verify_callback(ctx, https_on_verify, req);
	return CURLE_OK;
}

/* ---- the multi handle on libevent ---- */

static enum fetch_status
https_map(CURLcode rc, const struct https_req *req, long http_status)
{
	if (req->too_large)
		return FETCH_TOO_LARGE;
	if (rc == CURLE_RECV_ERROR)
		return http_status != 0 ? FETCH_TRUNCATED : FETCH_ERROR;
	for (size_t i = 0; i < sizeof(https_curl_map) / sizeof(https_curl_map[0]); i++)
		if (https_curl_map[i].code == rc)
			return https_curl_map[i].status;
	return FETCH_ERROR;
}

static void
https_req_finish(struct https_req *req, CURLcode rc)
{
	struct fetch_result res = { .remote_addr = "" };
	char *ct = NULL, *ip = NULL;

	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &res.http_status);
	curl_easy_getinfo(req->easy, CURLINFO_CONTENT_TYPE, &ct);
	curl_easy_getinfo(req->easy, CURLINFO_PRIMARY_IP, &ip);
	res.status = https_map(rc, req, res.http_status);
	res.content_type = ct;
	if (ip != NULL)
		res.remote_addr = ip;
	/* Never hand out part of a body: a truncated policy could still parse. */
	if (res.status == FETCH_OK && req->body.data != NULL) {
		res.body = req->body.data;
		res.body_len = req->body.len;
	} else {
		res.body = "";
	}
	if (res.status == FETCH_OK)
		res.error = "";
	else if (req->detail[0] != '\0')
		res.error = req->detail;
	else if (req->errbuf[0] != '\0')
		res.error = req->errbuf;
	else
		res.error = curl_easy_strerror(rc);
	res.elapsed_ms = (uint32_t)(https_now_ms() - req->start_ms);
	res.cert_subject = req->cert_subject;
	res.cert_issuer = req->cert_issuer;
	res.cert_not_after = req->cert_not_after;
	res.tls_version = req->tls_version;
	if (req->cert != NULL && req->cert->verify[0] != '\0')
		res.cert = req->cert;
	https_req_deliver(req, &res);
}

/* Completed transfers: the slot is refilled before the callback, so queue order holds. */
static void
https_drain(struct https *f)
{
	CURLMsg *msg;
	int left;

	f->busy++;
	while (!f->dying && (msg = curl_multi_info_read(f->multi, &left)) != NULL) {
		struct https_req *req;
		char *priv = NULL;
		CURLcode rc;

		if (msg->msg != CURLMSG_DONE)
			continue;
		/* msg dies with curl_multi_remove_handle(): copy what is needed first. */
		rc = msg->data.result;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		req = (struct https_req *)priv;
		https_req_unlink(req);
		https_pump(f);
		https_req_finish(req, rc);
	}
	f->busy--;
	if (f->dying && f->busy == 0)
		https_destroy(f);
}

static void
https_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct https *f = arg;
	int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) |
	             ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
	int running;

	curl_multi_socket_action(f->multi, fd, action, &running);
	https_drain(f);
}

static void
https_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct https *f = arg;
	int running;

	curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	https_drain(f);
}

static void
https_sock_free(struct https_sock *fs)
{
	LIST_REMOVE(fs, entry);
	event_free(fs->ev);
	free(fs);
}

/* CURLMOPT_SOCKETFUNCTION: mirror curl's interest in a socket onto one libevent event. */
static int
https_on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct https *f = userp;
	struct https_sock *fs = socketp;
	short events = EV_PERSIST;

	if (what == CURL_POLL_REMOVE) {
		if (fs != NULL)
			https_sock_free(fs);
		return 0;
	}
	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	if (fs == NULL) {
		fs = xcalloc(1, sizeof(*fs));
		fs->ev = event_new(f->base, s, events, https_on_event, f);
		if (fs->ev == NULL)
			fatalx("fetch: cannot allocate event");
		LIST_INSERT_HEAD(&f->socks, fs, entry);
		curl_multi_assign(f->multi, s, fs);
	} else {
		event_del(fs->ev);
		event_assign(fs->ev, f->base, s, events, https_on_event, f);
	}
	event_add(fs->ev, NULL);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: only (re)arm the timer; curl is driven from the loop. */
static int
https_on_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct https *f = userp;
	struct timeval tv;

	if (timeout_ms < 0) {
		evtimer_del(f->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(f->timer, &tv);
	return 0;
}

/* Starts queued transfers while slots are free. */
static void
https_pump(struct https *f)
{
	struct https_req *req;

	while (f->nrunning < f->max_parallel && (req = TAILQ_FIRST(&f->queued)) != NULL) {
		TAILQ_REMOVE(&f->queued, req, entry);
		if (curl_multi_add_handle(f->multi, req->easy) != CURLM_OK) {
			https_req_fail(req, FETCH_ERROR, "curl_multi_add_handle failed");
			continue;
		}
		https_req_set_state(req, HTTPS_REQ_RUNNING);
		TAILQ_INSERT_TAIL(&f->running, req, entry);
		f->nrunning++;
	}
}

/* ---- building a request ---- */

/* Letters, digits, '-' and '_' in dot-separated non-empty labels: nothing curl would rewrite. */
static bool
https_host_valid(const char *host)
{
	size_t len = strlen(host), label = 0;

	if (len == 0 || len > HTTPS_HOST_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)host[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		           (c >= '0' && c <= '9') || c == '-' || c == '_') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0;
}

static bool
https_path_valid(const char *path)
{
	size_t len = strlen(path);

	if (len == 0 || len > HTTPS_PATH_MAX || path[0] != '/')
		return false;
	for (size_t i = 0; i < len; i++)
		if (path[i] <= ' ' || path[i] >= 0x7f)
			return false;
	return true;
}

/* "host:port:addr1,[v6addr],..." for CURLOPT_RESOLVE; -1 if an address is not numeric. */
static int
https_resolve_entry(struct strbuf *sb, const char *host, unsigned port, const char *const *addrs,
                    size_t naddrs)
{
	unsigned char bin[sizeof(struct in6_addr)];

	strbuf_appendf(sb, "%s:%u:", host, port);
	for (size_t i = 0; i < naddrs && i < HTTPS_ADDRS_MAX; i++) {
		const char *sep = i > 0 ? "," : "";

		if (inet_pton(AF_INET, addrs[i], bin) == 1)
			strbuf_appendf(sb, "%s%s", sep, addrs[i]);
		else if (inet_pton(AF_INET6, addrs[i], bin) == 1)
			strbuf_appendf(sb, "%s[%s]", sep, addrs[i]);
		else
			return -1;
	}
	return 0;
}

static const struct {
	CURLoption opt;
	long val;
} https_long_opts[] = {
	{ CURLOPT_NOSIGNAL, 1L },
	{ CURLOPT_FOLLOWLOCATION, 0L },
	/* A reused connection would skip CURLOPT_RESOLVE and the certificate check. */
	{ CURLOPT_FORBID_REUSE, 1L },
	{ CURLOPT_FRESH_CONNECT, 1L },
	/* A resumed session skips chain verification, so the result would name no cert. */
	{ CURLOPT_SSL_SESSIONID_CACHE, 0L },
	/* One small GET per connection: HTTP/2 would add nothing but code paths. */
	{ CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1 },
	{ CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2 },
	{ CURLOPT_SSL_VERIFYPEER, 1L },
	{ CURLOPT_SSL_VERIFYHOST, 2L },
	{ CURLOPT_LOW_SPEED_LIMIT, HTTPS_LOW_SPEED_BYTES },
};

/* Returns NULL on success, else what went wrong. */
static const char *
https_req_build(struct https_req *req, unsigned port, const char *path, const char *const *addrs,
                size_t naddrs)
{
	struct https *f = req->f;
	struct strbuf sb;
	long low_speed_s = f->timeout_ms >= 2000 ? (long)(f->timeout_ms / 2000) : 1L;
	const char *why = NULL;

	if (!https_host_valid(req->host))
		return "invalid host name";
	if (port == 0 || port > 65535)
		return "invalid port";
	if (!https_path_valid(path))
		return "invalid path";
	if (naddrs == 0)
		return "no addresses to connect to";

	strbuf_init(&sb, 8192);
	if (https_resolve_entry(&sb, req->host, port, addrs, naddrs) == -1) {
		strbuf_release(&sb);
		return "address is not a numeric IPv4 or IPv6 address";
	}
	req->resolve = curl_slist_append(NULL, sb.data);
	strbuf_release(&sb);
	req->url = xasprintf("https://%s:%u%s", req->host, port, path);
	req->easy = curl_easy_init();
	/*
	 * A private DNS cache per request, so its RESOLVE entry goes away with it: in the multi
	 * handle's shared cache such entries are permanent and would pile up, one per host ever
	 * fetched. Concurrent fetches of one name with other addresses cannot see it either.
	 */
	req->share = curl_share_init();
	if (req->resolve == NULL || req->easy == NULL || req->share == NULL)
		fatalx("fetch: out of memory");
	if (curl_share_setopt(req->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK)
		return "curl_share_setopt failed";

	for (size_t i = 0; i < sizeof(https_long_opts) / sizeof(https_long_opts[0]); i++)
		if (curl_easy_setopt(req->easy, https_long_opts[i].opt, https_long_opts[i].val) !=
		    CURLE_OK)
			return "curl_easy_setopt failed";
	if (curl_easy_setopt(req->easy, CURLOPT_URL, req->url) != CURLE_OK ||
	    curl_easy_setopt(req->easy, CURLOPT_SHARE, req->share) != CURLE_OK ||
	    curl_easy_setopt(req->easy, CURLOPT_RESOLVE, req->resolve) != CURLE_OK ||
	    curl_easy_setopt(req->easy, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK ||
	    curl_easy_setopt(req->easy, CURLOPT_NOPROXY, "*") != CURLE_OK ||
	    curl_easy_setopt(req->easy, CURLOPT_USERAGENT, f->user_agent) != CURLE_OK ||
	    curl_easy_setopt(req->easy, CURLOPT_TIMEOUT_MS, (long)f->timeout_ms) != CURLE_OK ||
	    curl_easy_setopt(req->easy, CURLOPT_LOW_SPEED_TIME, low_speed_s) != CURLE_OK ||
	    curl_easy_setopt(req->easy, CURLOPT_PRIVATE, req) != CURLE_OK ||
	    curl_easy_setopt(req->easy, CURLOPT_ERRORBUFFER, req->errbuf) != CURLE_OK ||
	    curl_easy_setopt(req->easy, CURLOPT_HEADERFUNCTION, https_on_header) != CURLE_OK ||
	    curl_easy_setopt(req->easy, CURLOPT_HEADERDATA, req) != CURLE_OK ||
	    curl_easy_setopt(req->easy, CURLOPT_WRITEFUNCTION, https_on_body) != CURLE_OK ||
	    curl_easy_setopt(req->easy, CURLOPT_WRITEDATA, req) != CURLE_OK ||
	    curl_easy_setopt(req->easy, CURLOPT_SSL_CTX_DATA, req) != CURLE_OK)
		return "curl_easy_setopt failed";
	/* Fails unless libcurl uses OpenSSL; fetching with weaker name checks is not an option. */
	if (curl_easy_setopt(req->easy, CURLOPT_SSL_CTX_FUNCTION, https_on_ssl_ctx) != CURLE_OK)
		why = "libcurl is not built with OpenSSL";
	/* No CA file or path for curl: the callback supplies the store (https_on_ssl_ctx). */
	else if (curl_easy_setopt(req->easy, CURLOPT_CAINFO, NULL) != CURLE_OK ||
	         curl_easy_setopt(req->easy, CURLOPT_CAPATH, NULL) != CURLE_OK)
		why = "cannot clear curl's CA locations";
	return why;
}

struct https_req *
https_start(struct https *f, const char *host, unsigned port, const char *path,
            const char *const *addrs, size_t naddrs, fetch_cb cb, void *arg)
{
	struct https_req *req = xcalloc(1, sizeof(*req));
	const char *why;

	req->f = f;
	req->cb = cb;
	req->arg = arg;
	req->start_ms = https_now_ms();
	req->host = xstrndup(host, HTTPS_HOST_MAX + 1);
	if (f->cert_details)
		req->cert = xcalloc(1, sizeof(*req->cert));
	strbuf_init(&req->body, f->body_max);
	why = https_req_build(req, port, path, addrs, naddrs);
	if (why != NULL) {
		https_req_fail(req, FETCH_ERROR, why);
		return req;
	}
	https_req_set_state(req, HTTPS_REQ_QUEUED);
	TAILQ_INSERT_TAIL(&f->queued, req, entry);
	https_pump(f);
	return req;
}

void
https_cancel(struct https_req *req)
{
	struct https *f;

	/* Its own callback is running: the request is complete and freed on return. */
	if (req == NULL || req->state == HTTPS_REQ_DONE)
		return;
	f = req->f;
	https_req_unlink(req);
	https_req_free(req);
	https_pump(f);
}

/* ---- the module ---- */

/* Loads the trust anchors once; NULL (and every fetch fails closed) if that fails. */
static X509_STORE *
https_load_store(const char *ca_file)
{
	X509_STORE *store = X509_STORE_new();
	int ok;

	if (store == NULL)
		fatalx("fetch: cannot allocate a certificate store");
	ok = ca_file != NULL ? X509_STORE_load_file(store, ca_file)
	                     : X509_STORE_set_default_paths(store);
	if (ok != 1) {
		log_warnx("fetch: cannot load trust anchors from %s; every policy fetch will fail "
		          "until this is fixed",
		          ca_file != NULL ? ca_file : "the system's default CA locations");
		X509_STORE_free(store);
		return NULL;
	}
	return store;
}

struct https *
https_new(struct event_base *base, const struct fetch_opts *opts)
{
	struct https *f;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatalx("fetch: curl_global_init failed");
	f = xcalloc(1, sizeof(*f));
	f->base = base;
	f->ca_file = opts->ca_file != NULL ? xstrdup(opts->ca_file) : NULL;
	f->store = https_load_store(f->ca_file);
	f->user_agent = xstrdup(opts->user_agent != NULL ? opts->user_agent : HTTPS_DEFAULT_AGENT);
	f->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : HTTPS_DEFAULT_TIMEOUT_MS;
	f->body_max = opts->body_max;
	f->max_parallel = opts->max_parallel > 0 ? opts->max_parallel : 1;
	f->cert_details = opts->cert_details;
	LIST_INIT(&f->socks);
	TAILQ_INIT(&f->queued);
	TAILQ_INIT(&f->running);
	TAILQ_INIT(&f->failed);

	f->multi = curl_multi_init();
	f->timer = evtimer_new(base, https_on_timeout, f);
	if (f->multi == NULL || f->timer == NULL)
		fatalx("fetch: cannot set up curl multi handle");
	if (curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, https_on_socket) != CURLM_OK ||
	    curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f) != CURLM_OK ||
	    curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, https_on_timer) != CURLM_OK ||
	    curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f) != CURLM_OK)
		fatalx("fetch: cannot set curl multi callbacks");
	return f;
}

static void
https_cancel_list(struct https_req_list *list)
{
	struct https_req *req;

	while ((req = TAILQ_FIRST(list)) != NULL) {
		https_req_unlink(req);
		https_req_free(req);
	}
}

static void
https_destroy(struct https *f)
{
	struct https_sock *fs;

	curl_multi_cleanup(f->multi);
	/* Sockets curl did not report as removed while cleaning up. */
	while ((fs = LIST_FIRST(&f->socks)) != NULL)
		https_sock_free(fs);
	event_free(f->timer);
	free(f->ca_file);
	X509_STORE_free(f->store);
	free(f->user_agent);
	free(f);
	curl_global_cleanup();
}

void
https_free(struct https *f)
{
	if (f == NULL)
		return;
	https_cancel_list(&f->queued);
	https_cancel_list(&f->running);
	https_cancel_list(&f->failed);
	/* Called from a fetch callback: the dispatcher on the stack frees f when it returns. */
	if (f->busy > 0) {
		f->dying = true;
		return;
	}
	https_destroy(f);
}
