/* dns.h: asynchronous DNS (c-ares on libevent) with a TTL-honouring answer cache. */
#ifndef MTASTS_IO_DNS_H
#define MTASTS_IO_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct dns;
struct dns_query;

enum dns_status {
	DNS_OK = 0,   /* answer RRs of the asked type present (after CNAMEs) */
	DNS_NXDOMAIN, /* the name does not exist */
	DNS_NODATA,   /* the name exists, no RR of that type */
	DNS_SERVFAIL, /* SERVFAIL, REFUSED or another error rcode */
	DNS_TIMEOUT,  /* no answer from any server within timeout x tries */
	DNS_ERROR,    /* malformed answer, or an internal failure */
};

enum dns_type {
	DNS_TYPE_TXT,
	DNS_TYPE_ADDR, /* A and AAAA together; OK when either has data */
	DNS_TYPE_MX,
};

/* One character-string of a TXT RR; record_start marks the first string of each RR. */
struct dns_txt {
	const unsigned char *data;
	size_t len;
	bool record_start;
};

struct dns_mx {
	uint16_t preference;
	char host[256]; /* presentation form, lower-case, no trailing dot; "" for a null MX */
};

/* Everything points into storage owned by the dns module and valid only during the callback. */
struct dns_result {
	enum dns_status status;
	uint32_t ttl;    /* seconds this result may be reused (0 for TIMEOUT/ERROR) */
	bool from_cache; /* answered from the module's cache, no packet sent */
	const struct dns_txt *txt;
	size_t ntxt;
	const char *const *addrs; /* numeric IPv4/IPv6 strings, A before AAAA */
	size_t naddrs;
	const struct dns_mx *mx;
	size_t nmx;
};

struct dns_opts {
	const char *servers; /* "ip[:port],[ipv6]:port,..."; NULL or "" = /etc/resolv.conf */
	unsigned timeout_ms; /* per try */
	unsigned tries;
	uint32_t max_ttl;      /* positive answers cached at most this long */
	uint32_t negative_ttl; /* NXDOMAIN/NODATA cached min(SOA minimum, this) */
	uint32_t servfail_ttl; /* SERVFAIL/TIMEOUT cached this long (0 = not cached) */
	size_t cache_max;      /* entries; the oldest are dropped beyond it */
};

typedef void (*dns_cb)(void *arg, const struct dns_result *res);

/* Returns NULL and sets *errstr (static or owned by nobody) on a bad server list. */
struct dns *dns_new(struct event_base *base, const struct dns_opts *opts, const char **errstr);
/* Cancels every pending query without calling its callback, then frees. Not from a callback. */
void dns_free(struct dns *dns);

/*
 * Looks up name (absolute; never subject to a search list). The callback runs exactly once,
 * always from the event loop and never inside dns_lookup(), unless the query is cancelled.
 * The handle is valid until the callback returns or dns_cancel() is called.
 */
struct dns_query *dns_lookup(struct dns *dns, const char *name, enum dns_type type, dns_cb cb,
                             void *arg);
void dns_cancel(struct dns_query *q);

/* Drops cached answers for name (all types); used when a policy is flushed or refreshed. */
void dns_cache_forget(struct dns *dns, const char *name);

/* Counters for stats: packets sent, cache hits, and the sum of answer latencies in µs. */
struct dns_stats {
	uint64_t queries_sent;
	uint64_t cache_hits;
	uint64_t answers;
	uint64_t latency_us_total;
	uint64_t latency_us_max;
	size_t cache_entries;
};
void dns_get_stats(const struct dns *dns, struct dns_stats *st);

const char *dns_status_str(enum dns_status st);

#endif
