/* probe.c: SMTP STARTTLS probe of one MX address (libevent + OpenSSL), as a sender connects. */
#include "config.h"

#include "check/probe.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "io/certinfo.h"

/* RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; allow some slack, no more. */
#define PROBE_LINE_MAX  1024
#define PROBE_LINES_MAX 64

enum probe_state {
	PROBE_S_CONNECT,
	PROBE_S_BANNER,
	PROBE_S_EHLO,
	PROBE_S_STARTTLS,
	PROBE_S_HANDSHAKE,
	PROBE_S_QUIT, /* result decided; QUIT sent, waiting for its reply or the close */
	PROBE_S_DONE,
};

struct probe {
	struct event_base *base;
	SSL_CTX *ctx;
	unsigned timeout_ms;
	unsigned port;
	char *helo;
};

struct probe_req {
	struct probe *p;
	enum probe_state state;
	char host[256];
	struct bufferevent *bev; /* the TCP one, then the TLS filter over it */
	struct event *timer;
	struct event *defer;
	probe_cb cb;
	void *arg;
	unsigned lines;
	bool starttls_offered;
	struct report_probe res;
};

static int probe_verify(X509_STORE_CTX *xs, void *arg);

struct probe *
probe_new(struct event_base *base, const struct probe_opts *opts, const char **err)
{
	struct probe *p = xcalloc(1, sizeof(*p));

	p->base = base;
	p->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 10000;
	p->port = opts->port > 0 ? opts->port : 25;
	p->helo = xstrdup(opts->helo != NULL ? opts->helo : "mtasts-check.invalid");
	p->ctx = SSL_CTX_new(TLS_client_method());
	if (p->ctx == NULL)
		fatalx("probe: cannot create an SSL_CTX");
	/* Report what the server offers down to TLS 1.0; the verdict then says < 1.2 fails. */
	SSL_CTX_set_min_proto_version(p->ctx, TLS1_VERSION);
	SSL_CTX_set_session_cache_mode(p->ctx, SSL_SESS_CACHE_OFF);
	if ((opts->ca_file != NULL ? SSL_CTX_load_verify_file(p->ctx, opts->ca_file)
	                           : SSL_CTX_set_default_verify_paths(p->ctx)) != 1) {
		*err = "cannot load the CA file";
		probe_free(p);
		return NULL;
	}
	SSL_CTX_set_verify(p->ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_cert_verify_callback(p->ctx, probe_verify, NULL);
	return p;
}

void
probe_free(struct probe *p)
{
	if (p == NULL)
		return;
	SSL_CTX_free(p->ctx);
	free(p->helo);
	free(p);
}

/* Verification as a sender does it, recorded; the handshake goes on so it can be reported. */
static int
probe_verify(X509_STORE_CTX *xs, void *arg)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct probe_req *req = ssl != NULL ? SSL_get_app_data(ssl) : NULL;

	(void)X509_verify_cert(xs);
	if (req != NULL) {
		certinfo_note(&req->res.cert, xs, ssl);
		req->res.have_cert = true;
	}
	return 1;
}

static void
probe_on_defer(evutil_socket_t fd, short what, void *arg)
{
	struct probe_req *req = arg;

	req->cb(req->arg, &req->res);
	event_free(req->defer);
	free(req);
}

static void
probe_release(struct probe_req *req)
{
	if (req->bev != NULL)
		bufferevent_free(req->bev);
	req->bev = NULL;
	if (req->timer != NULL)
		event_free(req->timer);
	req->timer = NULL;
}

static void probe_finish(struct probe_req *req, enum probe_status st, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Delivers the result already in req->res (from the event loop, never inside a call). */
static void
probe_done(struct probe_req *req)
{
	req->state = PROBE_S_DONE;
	probe_release(req);
	event_active(req->defer, EV_TIMEOUT, 0);
}

static void
probe_set(struct probe_req *req, enum probe_status st, const char *fmt, va_list ap)
{
	req->res.status = st;
	if (fmt != NULL)
		vsnprintf(req->res.detail, sizeof(req->res.detail), fmt, ap);
}

static void
probe_finish(struct probe_req *req, enum probe_status st, const char *fmt, ...)
{
	va_list ap;

	if (req->state == PROBE_S_DONE)
		return;
	if (req->state == PROBE_S_QUIT) {
		/* Whatever goes wrong after QUIT, the result was decided before it. */
		probe_done(req);
		return;
	}
	va_start(ap, fmt);
	probe_set(req, st, fmt, ap);
	va_end(ap);
	probe_done(req);
}

static void probe_quit(struct probe_req *req, enum probe_status st, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/*
 * Decides the result, then ends the session politely: QUIT, and the reply or the close
 * awaited (within the probe's deadline). Hanging up at once would cut the TLS handshake's
 * last flight and leave "lost connection after STARTTLS" in the MX operator's logs.
 */
static void
probe_quit(struct probe_req *req, enum probe_status st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	probe_set(req, st, fmt, ap);
	va_end(ap);
	evbuffer_add_printf(bufferevent_get_output(req->bev), "QUIT\r\n");
	req->state = PROBE_S_QUIT;
}

/* Peer text into detail: printable ASCII only, the rest as '?'. */
static void
probe_note_line(struct probe_req *req, const char *line)
{
	size_t n = 0;

	for (; line[n] != '\0' && n + 1 < sizeof(req->res.detail); n++)
		req->res.detail[n] = line[n] >= 0x20 && line[n] < 0x7F ? line[n] : '?';
	req->res.detail[n] = '\0';
}

static void probe_on_event(struct bufferevent *bev, short what, void *arg);
static void probe_on_read(struct bufferevent *bev, void *arg);

static void
probe_start_tls(struct probe_req *req)
{
	SSL *ssl = SSL_new(req->p->ctx);
	X509_VERIFY_PARAM *param;
	struct bufferevent *tls;

	if (ssl == NULL)
		fatalx("probe: cannot create an SSL");
	SSL_set_app_data(ssl, req);
	SSL_set_tlsext_host_name(ssl, req->host);
	param = SSL_get0_param(ssl);
	/* RFC 8461 §4.2 / RFC 6125: DNS-ID only, whole left-most label wildcards. */
	X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
	                                               X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	X509_VERIFY_PARAM_set1_host(param, req->host, 0);
	tls = bufferevent_openssl_filter_new(req->p->base, req->bev, ssl,
	                                     BUFFEREVENT_SSL_CONNECTING,
	                                     BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tls == NULL) {
		SSL_free(ssl);
		probe_finish(req, PROBE_TLS, "cannot start TLS");
		return;
	}
	req->bev = tls;
	req->state = PROBE_S_HANDSHAKE;
	bufferevent_setcb(tls, probe_on_read, NULL, probe_on_event, req);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
}

/* One complete reply line: code in line[0..2], '-' continues, ' ' (or end) ends the reply. */
static void
probe_on_line(struct probe_req *req, const char *line)
{
	size_t len = strlen(line);
	bool last;
	int code;

	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
	    line[2] < '0' || line[2] > '9' || (len > 3 && line[3] != ' ' && line[3] != '-')) {
		probe_note_line(req, line);
		probe_finish(req, PROBE_SMTP, "malformed SMTP reply: %.200s", req->res.detail);
		return;
	}
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	last = len == 3 || line[3] == ' ';
	switch (req->state) {
	case PROBE_S_BANNER:
		if (code != 220) {
			probe_note_line(req, line);
			probe_finish(req, PROBE_SMTP, "banner: %.200s", req->res.detail);
			return;
		}
		if (!last)
			return;
		probe_note_line(req, line);
		evbuffer_add_printf(bufferevent_get_output(req->bev), "EHLO %s\r\n", req->p->helo);
		req->state = PROBE_S_EHLO;
		return;
	case PROBE_S_EHLO:
		if (code != 250) {
			probe_finish(req, PROBE_SMTP, "EHLO refused (%d)", code);
			return;
		}
		if (len >= 12 && strncasecmp(line + 4, "STARTTLS", 8) == 0 &&
		    (line[12] == '\0' || line[12] == ' '))
			req->starttls_offered = true;
		if (!last)
			return;
		if (!req->starttls_offered) {
			probe_quit(req, PROBE_NO_STARTTLS, "EHLO does not offer STARTTLS");
			return;
		}
		evbuffer_add_printf(bufferevent_get_output(req->bev), "STARTTLS\r\n");
		req->state = PROBE_S_STARTTLS;
		return;
	case PROBE_S_STARTTLS:
		if (!last)
			return;
		if (code != 220) {
			probe_finish(req, PROBE_NO_STARTTLS, "STARTTLS refused (%d)", code);
			return;
		}
		/* Anything already buffered after the 220 would be a STARTTLS injection: refuse. */
		if (evbuffer_get_length(bufferevent_get_input(req->bev)) > 0) {
			probe_finish(req, PROBE_SMTP, "data after the STARTTLS reply");
			return;
		}
		probe_start_tls(req);
		return;
	case PROBE_S_QUIT:
		if (last)
			probe_done(req);
		return;
	default:
		return;
	}
}

static void
probe_on_read(struct bufferevent *bev, void *arg)
{
	struct probe_req *req = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	char *line;

	while (req->state != PROBE_S_DONE && req->state != PROBE_S_HANDSHAKE &&
	       (line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
		bool too_long = n > PROBE_LINE_MAX, too_many = ++req->lines > PROBE_LINES_MAX;

		if (too_long || too_many || memchr(line, '\0', n) != NULL) {
			free(line);
			probe_finish(req, PROBE_SMTP, "%s",
			             too_long   ? "reply line too long"
			             : too_many ? "too many reply lines"
			                        : "NUL in a reply line");
			return;
		}
		probe_on_line(req, line);
		free(line);
	}
	if (req->state != PROBE_S_DONE && evbuffer_get_length(in) > PROBE_LINE_MAX)
		probe_finish(req, PROBE_SMTP, "reply line too long");
}

static void
probe_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct probe_req *req = arg;

	if (what & BEV_EVENT_CONNECTED) {
		if (req->state == PROBE_S_CONNECT) {
			req->state = PROBE_S_BANNER;
			return;
		}
		if (req->state == PROBE_S_HANDSHAKE) {
			SSL *ssl = bufferevent_openssl_get_ssl(bev);
			const SSL_CIPHER *c = SSL_get_current_cipher(ssl);

			req->res.tls_version = SSL_version(ssl);
			if (c != NULL)
				snprintf(req->res.cert.cipher, sizeof(req->res.cert.cipher), "%s",
				         SSL_CIPHER_get_name(c));
			probe_quit(req, PROBE_OK, NULL);
		}
		return;
	}
	if (req->state == PROBE_S_QUIT) {
		/* The server closing after QUIT, or failing then: the result stands. */
		probe_done(req);
		return;
	}
	if (req->state == PROBE_S_HANDSHAKE) {
		unsigned long e = bufferevent_get_openssl_error(bev);
		char buf[200] = "connection closed during the handshake";

		if (e != 0)
			ERR_error_string_n(e, buf, sizeof(buf));
		probe_finish(req, PROBE_TLS, "TLS handshake failed: %s", buf);
		return;
	}
	if (req->state == PROBE_S_CONNECT)
		probe_finish(req, PROBE_CONNECT, "cannot connect to port %u: %s", req->p->port,
		             evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	else
		probe_finish(req, PROBE_SMTP, "connection closed by the server");
}

static void
probe_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	static const char *const where[] = {
		[PROBE_S_CONNECT] = "connecting",
		[PROBE_S_BANNER] = "waiting for the banner",
		[PROBE_S_EHLO] = "waiting for EHLO",
		[PROBE_S_STARTTLS] = "waiting for STARTTLS",
		[PROBE_S_HANDSHAKE] = "in the TLS handshake",
	};
	struct probe_req *req = arg;

	if (req->state == PROBE_S_QUIT) {
		probe_done(req);
		return;
	}
	probe_finish(req, PROBE_TIMEOUT, "timed out %s",
	             req->state < PROBE_S_DONE ? where[req->state] : "");
}

struct probe_req *
probe_start(struct probe *p, const char *host, const char *addr, probe_cb cb, void *arg)
{
	struct probe_req *req = xcalloc(1, sizeof(*req));
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	char spec[96];
	struct timeval tv = { .tv_sec = p->timeout_ms / 1000,
		              .tv_usec = (p->timeout_ms % 1000) * 1000 };

	req->p = p;
	req->cb = cb;
	req->arg = arg;
	snprintf(req->host, sizeof(req->host), "%s", host);
	snprintf(req->res.addr, sizeof(req->res.addr), "%s", addr);
	req->defer = event_new(p->base, -1, 0, probe_on_defer, req);
	req->timer = evtimer_new(p->base, probe_on_timeout, req);
	if (req->defer == NULL || req->timer == NULL)
		fatalx("probe: cannot allocate events");
	snprintf(spec, sizeof(spec), strchr(addr, ':') != NULL ? "[%s]:%u" : "%s:%u", addr,
	         p->port);
	if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &sslen) != 0) {
		probe_finish(req, PROBE_CONNECT, "not an address: %.64s", addr);
		return req;
	}
	req->bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (req->bev == NULL)
		fatalx("probe: cannot allocate a bufferevent");
	bufferevent_setcb(req->bev, probe_on_read, NULL, probe_on_event, req);
	bufferevent_enable(req->bev, EV_READ | EV_WRITE);
	evtimer_add(req->timer, &tv);
	if (bufferevent_socket_connect(req->bev, (struct sockaddr *)&ss, sslen) != 0)
		probe_finish(req, PROBE_CONNECT, "cannot connect to port %u", p->port);
	return req;
}

void
probe_cancel(struct probe_req *req)
{
	if (req == NULL)
		return;
	probe_release(req);
	event_free(req->defer);
	free(req);
}
