/* probe.h: SMTP STARTTLS probe of one MX address (libevent + OpenSSL), as a sender connects. */
#ifndef MTASTS_CHECK_PROBE_H
#define MTASTS_CHECK_PROBE_H

#include "check/report.h"

struct event_base;
struct probe;
struct probe_req;

struct probe_opts {
	const char *ca_file; /* NULL = system store */
	unsigned timeout_ms; /* whole probe: connect, banner, EHLO, STARTTLS, handshake */
	unsigned port;       /* 0 = 25 */
	const char *helo;    /* EHLO name; NULL = "mtasts-check.invalid" */
};

/* NULL with *err set when the CA file cannot be loaded. */
struct probe *probe_new(struct event_base *base, const struct probe_opts *opts, const char **err);
void probe_free(struct probe *p);

typedef void (*probe_cb)(void *arg, const struct report_probe *res);

/*
 * Connects to addr (numeric), reads the banner, sends EHLO, STARTTLS, and handshakes with SNI
 * host, verifying the certificate for host with the sender's rules (DNS-ID only, whole-label
 * wildcard). The handshake completes even when verification fails, so the result can name
 * the problem. cb runs once from the event loop, never inside probe_start(), unless cancelled.
 */
struct probe_req *probe_start(struct probe *p, const char *host, const char *addr, probe_cb cb,
                              void *arg);
void probe_cancel(struct probe_req *req);

#endif
