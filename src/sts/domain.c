/* domain.c: Postfix lookup key -> MTA-STS Policy Domain (PFX-2, SEL-1..5). */
#include "config.h"

#include "sts/domain.h"

#include "base/utf8.h"

#include <string.h>

#ifdef HAVE_IDN2
#include <idn2.h>
#endif

/*
 * Longest key worth looking at. A 253-octet A-label name has at most 59 code points a label,
 * so as UTF-8 (4 bytes a code point) it stays under 960 bytes; brackets and a port add a few
 * more. Anything longer is refused before any work, and before libidn2 sees it; that only
 * loses keys padded with code points UTS #46 deletes, which no MTA sends.
 */
#define DOMAIN_KEY_MAX 1024

/* Service names are 1-15 characters (RFC 6335 §5.1). */
#define DOMAIN_SERVICE_MAX 15

static const char *const domain_result_names[] = {
	[DOMAIN_OK] = "ok",
	[DOMAIN_EMPTY] = "empty",
	[DOMAIN_PARENT_PROBE] = "parent-probe",
	[DOMAIN_ADDRESS_LITERAL] = "address-literal",
	[DOMAIN_BAD_CHAR] = "bad-char",
	[DOMAIN_BAD_LABEL] = "bad-label",
	[DOMAIN_TOO_LONG] = "too-long",
	[DOMAIN_BAD_PORT] = "bad-port",
	[DOMAIN_BAD_UTF8] = "bad-utf8",
	[DOMAIN_IDN_INVALID] = "idn-invalid",
};

const char *
domain_result_str(enum domain_result r)
{
	if ((size_t)r >= sizeof(domain_result_names) / sizeof(domain_result_names[0]))
		return "unknown";
	return domain_result_names[r];
}

static bool
domain_is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
domain_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
domain_is_alnum(unsigned char c)
{
	return domain_is_alpha(c) || domain_is_digit(c);
}

static char
domain_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/*
 * The LDH check with a reason: domain_is_ldh() for callers that only want yes or no,
 * domain_normalise() to say why a key is refused.
 */
static enum domain_result
domain_check_ldh(const char *name, size_t len)
{
	size_t label = 0;

	if (len == 0)
		return DOMAIN_EMPTY;
	if (len > DOMAIN_NAME_MAX)
		return DOMAIN_TOO_LONG;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c != '.' && c != '-' && !domain_is_alnum(c))
			return DOMAIN_BAD_CHAR;
	}
	for (size_t i = 0; i <= len; i++) {
		if (i < len && name[i] != '.') {
			label++;
			continue;
		}
		/* i ends a label of `label` octets: name[i - label .. i). */
		if (label == 0 || label > DOMAIN_LABEL_MAX)
			return DOMAIN_BAD_LABEL;
		if (name[i - label] == '-' || name[i - 1] == '-')
			return DOMAIN_BAD_LABEL;
		label = 0;
	}
	return DOMAIN_OK;
}

bool
domain_is_ldh(const char *name, size_t len)
{
	return domain_check_ldh(name, len) == DOMAIN_OK;
}

/*
 * Four dot-separated runs of 1-3 digits. The shape is enough: 999.0.0.1 is no address, but an
 * all-numeric top-level label is not a name anyone can register either, so no lookup is lost.
 */
static bool
domain_is_dotted_quad(const char *name, size_t len)
{
	size_t parts = 0, digits = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && domain_is_digit((unsigned char)name[i])) {
			if (++digits > 3)
				return false;
			continue;
		}
		if (i < len && name[i] != '.')
			return false;
		if (digits == 0 || ++parts > 4)
			return false;
		digits = 0;
	}
	return parts == 4;
}

bool
domain_is_ip_literal(const char *name, size_t len)
{
	/* No host name holds a ':', so any one marks an IPv6 (or other tagged) literal. */
	return memchr(name, ':', len) != NULL || domain_is_dotted_quad(name, len);
}

/*
 * The port after "host:" or "[host]:" is thrown away, but it must still look like one, so
 * that a garbled key is refused rather than guessed at: 1-65535, or an RFC 6335 service name
 * (1-15 letters, digits and '-', at least one letter, no '-' at either end or twice in a row).
 */
static bool
domain_port_ok(const char *p, size_t len)
{
	bool letter = false;
	unsigned long value = 0;

	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (domain_is_alpha(c))
			letter = true;
		else if (c == '-' && (i == 0 || i + 1 == len || p[i - 1] == '-'))
			return false;
		else if (c != '-' && !domain_is_digit(c))
			return false;
	}
	if (letter)
		return len <= DOMAIN_SERVICE_MAX;
	if (len > 5)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '-')
			return false;
		value = value * 10 + (unsigned long)(p[i] - '0');
	}
	return value >= 1 && value <= 65535;
}

/* Validates name[0..len) as LDH and writes it lower-cased to out. */
static enum domain_result
domain_finish(const char *name, size_t len, char out[DOMAIN_NAME_MAX + 1])
{
	enum domain_result r = domain_check_ldh(name, len);

	if (r != DOMAIN_OK)
		return r;
	for (size_t i = 0; i < len; i++)
		out[i] = domain_lower(name[i]);
	out[len] = '\0';
	return DOMAIN_OK;
}

/* host[0..len) holds a byte >= 0x80 and is valid UTF-8: convert to A-labels (SEL-4). */
static enum domain_result
domain_from_utf8(const char *host, size_t len, char out[DOMAIN_NAME_MAX + 1])
{
#ifdef HAVE_IDN2
	char buf[DOMAIN_KEY_MAX + 1];
	char *alabel = NULL;
	enum domain_result r;
	int rc;

	/* libidn2 wants a C string; the caller has bounded len and refused NUL bytes. */
	memcpy(buf, host, len);
	buf[len] = '\0';
	rc = idn2_to_ascii_8z(buf, &alabel, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
	if (rc != IDN2_OK) {
		idn2_free(alabel);
		/* libidn2 enforces 63 and 253 itself; keep those reasons the ASCII path gives. */
		if (rc == IDN2_TOO_BIG_DOMAIN)
			return DOMAIN_TOO_LONG;
		if (rc == IDN2_TOO_BIG_LABEL || rc == IDN2_PUNYCODE_BIG_OUTPUT)
			return DOMAIN_BAD_LABEL;
		return DOMAIN_IDN_INVALID;
	}
	/*
	 * UTS #46 maps look-alikes to ASCII: U+00B2 or fullwidth digits can turn the key into
	 * 192.0.2.1 (SEL-2), U+3002 into a '.' that leaves an empty label; and it lets through
	 * what LDH does not ('_' is "disallowed_STD3_valid"). So the A-label form is checked again.
	 */
	if (domain_is_ip_literal(alabel, strlen(alabel)))
		r = DOMAIN_ADDRESS_LITERAL;
	else
		r = domain_finish(alabel, strlen(alabel), out);
	idn2_free(alabel);
	return r;
#else
	(void)host;
	(void)len;
	(void)out;
	return DOMAIN_IDN_INVALID;
#endif
}

enum domain_result
domain_normalise(const char *key, size_t len, char out[DOMAIN_NAME_MAX + 1])
{
	const char *host = key, *colon;
	size_t hlen = len;
	bool bracketed = false, utf8 = false;

	out[0] = '\0';
	if (len == 0)
		return DOMAIN_EMPTY;
	if (len > DOMAIN_KEY_MAX)
		return DOMAIN_TOO_LONG;
	/* SP, HTAB, NUL and every other control byte, anywhere in the key (SEL-5). */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];

		if (c <= 0x20 || c == 0x7F)
			return DOMAIN_BAD_CHAR;
		if (c >= 0x80)
			utf8 = true;
	}

	if (key[0] == '[') {
		/* [host] or [host]:port, a smart host or an address literal (SEL-1, SEL-2). */
		const char *close = memchr(key, ']', len);
		size_t rest;

		if (close == NULL)
			return DOMAIN_BAD_CHAR;
		host = key + 1;
		hlen = (size_t)(close - host);
		rest = len - (size_t)(close + 1 - key);
		if (rest > 0 && close[1] != ':')
			return DOMAIN_BAD_CHAR;
		if (rest > 0 && !domain_port_ok(close + 2, rest - 1))
			return DOMAIN_BAD_PORT;
		bracketed = true;
	} else if ((colon = memchr(key, ':', len)) != NULL) {
		/* A second ':' cannot be host:port; a bare IPv6 address has at least two. */
		if (memchr(colon + 1, ':', len - (size_t)(colon + 1 - key)) != NULL)
			return DOMAIN_ADDRESS_LITERAL;
		if (!domain_port_ok(colon + 1, len - (size_t)(colon + 1 - key)))
			return DOMAIN_BAD_PORT;
		hlen = (size_t)(colon - key);
	}

	if (hlen > 0 && host[hlen - 1] == '.')
		hlen--;
	if (hlen == 0)
		return DOMAIN_EMPTY;
	/* Postfix's ".example.com" after a NOTFOUND for a subdomain (PFX-2, SEL-3). */
	if (host[0] == '.' && !bracketed)
		return DOMAIN_PARENT_PROBE;
	if (domain_is_ip_literal(host, hlen))
		return DOMAIN_ADDRESS_LITERAL;
	/* All after host was checked as ASCII above, so the bytes >= 0x80 seen are in host. */
	if (utf8) {
		if (!utf8_valid((const unsigned char *)host, hlen))
			return DOMAIN_BAD_UTF8;
		return domain_from_utf8(host, hlen, out);
	}
	return domain_finish(host, hlen, out);
}
