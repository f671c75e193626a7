/* dnsmsg.h: pure parser for DNS response messages: outcome, CNAME chain, TXT/A/AAAA/MX, TTLs. */
#ifndef MTASTS_IO_DNSMSG_H
#define MTASTS_IO_DNSMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/dns.h"

/* RR types and the class this parser knows about (RFC 1035, RFC 3596). */
#define DNSMSG_TYPE_A     1
#define DNSMSG_TYPE_CNAME 5
#define DNSMSG_TYPE_SOA   6
#define DNSMSG_TYPE_MX    15
#define DNSMSG_TYPE_TXT   16
#define DNSMSG_TYPE_AAAA  28
#define DNSMSG_CLASS_IN   1

/* Longer chains are treated as loops; resolvers stop well before this too. */
#define DNSMSG_CNAME_MAX 16
/* Hard caps on collected answers; a message with more is rejected, never cut short. */
#define DNSMSG_TXT_MAX  1024 /* character-strings over all TXT RRs */
#define DNSMSG_ADDR_MAX 64
#define DNSMSG_MX_MAX   64
/* A name in presentation form with every octet escaped as \DDD, plus the NUL. */
#define DNSMSG_NAME_STR_MAX (255 * 4 + 1)

enum dnsmsg_err {
	DNSMSG_OK = 0,
	DNSMSG_E_SHORT,        /* the message ends before a header, count or length says */
	DNSMSG_E_NAME,         /* bad label type, pointer out of range or forward, name > 255 */
	DNSMSG_E_RDATA,        /* RDATA does not fit its type or its RDLENGTH */
	DNSMSG_E_NOT_RESPONSE, /* QR bit clear */
	DNSMSG_E_QUESTION,     /* not exactly one question, or not the type/class asked */
	DNSMSG_E_TOO_MANY,     /* more answers than the caps above */
	DNSMSG_E_CNAME_LOOP,   /* CNAME chain longer than DNSMSG_CNAME_MAX */
	DNSMSG_E_TRUNCATED,    /* TC bit: RRs may be missing, so neither data nor absence holds */
};

/*
 * The parsed message. txt[].data points into the message buffer handed to dnsmsg_parse(), so
 * it is valid only as long as that buffer is. Large (tens of KiB): allocate it, don't stack it.
 */
struct dnsmsg {
	uint16_t id;
	unsigned rcode;         /* header RCODE (4 bits) */
	enum dns_status status; /* OK, NXDOMAIN, NODATA or SERVFAIL; ERROR when parsing failed */
	/*
	 * OK: minimum TTL over the CNAMEs followed and the answer RRs collected.
	 * NXDOMAIN/NODATA: min(SOA TTL, SOA MINIMUM, CNAME TTLs) (RFC 2308 §5); ttl_known is false
	 * without a SOA in the authority section, and RFC 2308 says not to cache such an answer.
	 */
	uint32_t ttl;
	bool ttl_known;
	char qname[DNSMSG_NAME_STR_MAX];  /* presentation form, as sent, no trailing dot */
	char target[DNSMSG_NAME_STR_MAX]; /* end of the CNAME chain; qname when there is none */
	unsigned ncname;                  /* CNAMEs followed */
	struct dns_txt txt[DNSMSG_TXT_MAX];
	size_t ntxt;
	uint8_t a[DNSMSG_ADDR_MAX][4];
	size_t na;
	uint8_t aaaa[DNSMSG_ADDR_MAX][16];
	size_t naaaa;
	struct dns_mx mx[DNSMSG_MX_MAX];
	size_t nmx;
};

/*
 * Parses a response to a query for qtype (class IN). Only the header, the question, the answer
 * section and, for a negative answer, the authority section are read; every length is checked
 * against len and compression pointers must point backwards, so no input loops or reads out of
 * bounds. On an error *out is left with status DNS_ERROR and nothing collected.
 */
enum dnsmsg_err dnsmsg_parse(const uint8_t *msg, size_t len, uint16_t qtype, struct dnsmsg *out);
const char *dnsmsg_err_str(enum dnsmsg_err err);

#endif
