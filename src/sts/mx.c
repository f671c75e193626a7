/* mx.c: matching an MX host name against MTA-STS mx patterns (MX-3, RFC 8461 §4.1). */
#include "config.h"

#include "sts/mx.h"

#include <string.h>

static char
mx_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* ASCII-only folding: names are compared in A-label form, and the locale must not matter. */
static bool
mx_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (mx_lower(a[i]) != mx_lower(b[i]))
			return false;
	return true;
}

bool
mx_match(const char *pattern, const char *host)
{
	size_t plen, hlen;
	const char *dot;

	if (pattern == NULL || host == NULL)
		return false;
	plen = strlen(pattern);
	hlen = strlen(host);
	/* The MX name may arrive as a DNS owner name, with the root dot. */
	if (hlen > 0 && host[hlen - 1] == '.')
		hlen--;
	if (plen == 0 || hlen == 0)
		return false;
	if (plen < 2 || pattern[0] != '*' || pattern[1] != '.')
		return mx_equal(pattern, plen, host, hlen);
	/*
	 * "*.rest" stands for exactly one non-empty label in front of rest (Appendix B): split the
	 * host at its first dot, so foo.bar.example.com never matches *.example.com.
	 */
	dot = memchr(host, '.', hlen);
	if (plen == 2 || dot == NULL || dot == host)
		return false;
	return mx_equal(pattern + 2, plen - 2, dot + 1, hlen - (size_t)(dot + 1 - host));
}

const char *
mx_policy_match(const struct policy *p, const char *host)
{
	for (const char *mx = policy_mx_next(p, NULL); mx != NULL; mx = policy_mx_next(p, mx))
		if (mx_match(mx, host))
			return mx;
	return NULL;
}
