/* fake_io.c: scripted stand-ins for io/dns.h and io/fetch.h, for engine tests. */
#include "config.h"

#include "fake_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fake_dns_call fake_dns_calls[FAKE_CALLS_MAX];
size_t fake_dns_ncalls;
struct fake_fetch_call fake_fetch_calls[FAKE_CALLS_MAX];
size_t fake_fetch_ncalls;

/* Handles are 1-based indexes disguised as pointers; never dereferenced. */
struct dns {
	int unused;
};
struct fetch {
	int unused;
};

void
fake_io_reset(void)
{
	memset(fake_dns_calls, 0, sizeof(fake_dns_calls));
	memset(fake_fetch_calls, 0, sizeof(fake_fetch_calls));
	fake_dns_ncalls = 0;
	fake_fetch_ncalls = 0;
}

size_t
fake_dns_last(void)
{
	return fake_dns_ncalls - 1;
}

size_t
fake_fetch_last(void)
{
	return fake_fetch_ncalls - 1;
}

struct dns *
dns_new(struct event_base *base, const struct dns_opts *opts, const char **errstr)
{
	return calloc(1, sizeof(struct dns));
}

void
dns_free(struct dns *dns)
{
	free(dns);
}

struct dns_query *
dns_lookup(struct dns *dns, const char *name, enum dns_type type, dns_cb cb, void *arg)
{
	struct fake_dns_call *c = &fake_dns_calls[fake_dns_ncalls++];

	if (fake_dns_ncalls > FAKE_CALLS_MAX)
		abort();
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->type = type;
	c->cb = cb;
	c->arg = arg;
	c->pending = true;
	return (struct dns_query *)(uintptr_t)fake_dns_ncalls;
}

void
dns_cancel(struct dns_query *q)
{
	fake_dns_calls[(uintptr_t)q - 1].pending = false;
}

void
dns_cache_forget(struct dns *dns, const char *name)
{
}

void
dns_get_stats(const struct dns *dns, struct dns_stats *st)
{
	memset(st, 0, sizeof(*st));
}

const char *
dns_status_str(enum dns_status st)
{
	static const char *const names[] = { "ok",       "nxdomain", "nodata",
		                             "servfail", "timeout",  "error" };

	return names[st];
}

void
fake_dns_txt(size_t i, enum dns_status st, uint32_t ttl, const char *const *records, size_t n)
{
	struct fake_dns_call *c = &fake_dns_calls[i];
	struct dns_txt txt[16];
	struct dns_result res = { .status = st, .ttl = ttl, .txt = txt, .ntxt = n };

	if (!c->pending || c->type != DNS_TYPE_TXT || n > 16)
		abort();
	for (size_t k = 0; k < n; k++) {
		txt[k].data = (const unsigned char *)records[k];
		txt[k].len = strlen(records[k]);
		txt[k].record_start = true;
	}
	c->pending = false;
	c->cb(c->arg, &res);
}

void
fake_dns_addr(size_t i, enum dns_status st, const char *addr)
{
	struct fake_dns_call *c = &fake_dns_calls[i];
	const char *addrs[1] = { addr };
	struct dns_result res = {
		.status = st, .ttl = 300, .addrs = addrs, .naddrs = st == DNS_OK ? 1 : 0
	};

	if (!c->pending || c->type != DNS_TYPE_ADDR)
		abort();
	c->pending = false;
	c->cb(c->arg, &res);
}

struct fetch *
fetch_new(struct event_base *base, const struct fetch_opts *opts)
{
	return calloc(1, sizeof(struct fetch));
}

void
fetch_free(struct fetch *f)
{
	free(f);
}

struct fetch_req *
fetch_start(struct fetch *f, const char *host, unsigned port, const char *path,
            const char *const *addrs, size_t naddrs, fetch_cb cb, void *arg)
{
	struct fake_fetch_call *c = &fake_fetch_calls[fake_fetch_ncalls++];

	if (fake_fetch_ncalls > FAKE_CALLS_MAX || port != 443 ||
	    strcmp(path, "/.well-known/mta-sts.txt") != 0 || naddrs == 0)
		abort();
	snprintf(c->host, sizeof(c->host), "%s", host);
	snprintf(c->addr, sizeof(c->addr), "%s", addrs[0]);
	c->cb = cb;
	c->arg = arg;
	c->pending = true;
	return (struct fetch_req *)(uintptr_t)fake_fetch_ncalls;
}

void
fetch_cancel(struct fetch_req *req)
{
	fake_fetch_calls[(uintptr_t)req - 1].pending = false;
}

const char *
fetch_status_str(enum fetch_status st)
{
	static const char *const names[] = { "ok",  "too-large", "timeout",   "connect",
		                             "tls", "cert",      "truncated", "error" };

	return names[st];
}

void
fake_fetch_answer(size_t i, enum fetch_status st, long http, const char *content_type,
                  const char *body)
{
	struct fake_fetch_call *c = &fake_fetch_calls[i];
	struct fetch_result res = {
		.status = st,
		.http_status = http,
		.content_type = content_type,
		.body = body != NULL ? body : "",
		.body_len = body != NULL ? strlen(body) : 0,
		.error = st == FETCH_OK ? "" : "scripted failure",
		.remote_addr = c->addr,
		.cert_subject = "",
		.cert_issuer = "",
		.cert_not_after = "",
	};

	if (!c->pending)
		abort();
	c->pending = false;
	c->cb(c->arg, &res);
}
