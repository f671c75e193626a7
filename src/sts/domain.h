/* domain.h: Postfix lookup key -> MTA-STS Policy Domain (PFX-2, SEL-1..5). */
#ifndef MTASTS_STS_DOMAIN_H
#define MTASTS_STS_DOMAIN_H

#include <stdbool.h>
#include <stddef.h>

/* Longest name in presentation form without the root dot (RFC 1035). */
#define DOMAIN_NAME_MAX  253
#define DOMAIN_LABEL_MAX 63

enum domain_result {
	DOMAIN_OK = 0,
	DOMAIN_EMPTY,           /* empty key, or "[]", or only a trailing dot */
	DOMAIN_PARENT_PROBE,    /* leading dot: Postfix parent-domain probe (SEL-3) */
	DOMAIN_ADDRESS_LITERAL, /* [192.0.2.1], [ipv6:...], bare IPv4/IPv6 (SEL-2) */
	DOMAIN_BAD_CHAR,        /* whitespace, control, non-LDH or '_' */
	DOMAIN_BAD_LABEL,       /* empty label, label over 63 octets, leading/trailing '-' */
	DOMAIN_TOO_LONG,        /* name over 253 octets */
	DOMAIN_BAD_PORT,        /* "host:" or a port that is not a number or service name */
	DOMAIN_BAD_UTF8,        /* a byte >= 0x80 that is not valid UTF-8 */
	DOMAIN_IDN_INVALID,     /* valid UTF-8 that IDNA2008/UTS#46 refuses, or no IDN support */
};

/*
 * Turns a lookup key into a Policy Domain: lower-case A-label form, no trailing dot, no
 * brackets, no port. out receives the NUL-terminated result on DOMAIN_OK; on any other result
 * the key is not a policy domain and must be answered NOTFOUND with no lookup at all. key need
 * not be NUL-terminated and may contain any byte.
 */
enum domain_result domain_normalise(const char *key, size_t len, char out[DOMAIN_NAME_MAX + 1]);

const char *domain_result_str(enum domain_result r);

/*
 * True when name[0..len) is an LDH host name under RFC 5321 Domain: labels of 1-63 letters,
 * digits and '-', not starting or ending with '-', total at most 253, no trailing dot. Case
 * is not folded or checked. Used for policy mx patterns as well as keys.
 */
bool domain_is_ldh(const char *name, size_t len);

/* True when name[0..len) is a dotted-quad IPv4 address or contains ':' like an IPv6 one. */
bool domain_is_ip_literal(const char *name, size_t len);

#endif
