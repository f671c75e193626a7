/* answer.c: rendering a policy as the Postfix TLS policy a lookup returns (APPLY-5). */
#include "config.h"

#include "sts/answer.h"

#include <string.h>

#include "sts/domain.h"

/*
 * The answer, one space between tokens (Postfix splits on "\t\n\r ," and brace-quotes, PFX-3):
 *
 *   secure match=<p1>:<p2>... servername=hostname
 *       [policy_type=sts policy_domain=<d> mx_host_pattern=<m1>...
 *        { policy_string = <line1> }...]
 *
 * The bracketed part is the Postfix >= 3.10 TLSRPT set (TLSRPT_README, "MTA-STS Support via
 * smtp_tls_policy_maps"), in the shape postfix-tlspol sends. policy_ttl is left out: it is a
 * remaining lifetime, and rendering has no clock.
 */
#define ANSWER_SECURE     "secure match="
#define ANSWER_SERVERNAME " servername=hostname"

static char
answer_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool
answer_is_wildcard(const char *mx)
{
	return mx[0] == '*' && mx[1] == '.';
}

/*
 * A pattern fit to reach Postfix: LDH after its optional "*.", so it holds no whitespace,
 * ',', ':', '=', '{' or '}'. An address is refused too: in match= OpenSSL would check it as
 * an IP address (MX-1). The parser already guarantees all this; a cached or stored policy
 * must not be trusted to.
 */
static bool
answer_pattern_ok(const char *mx)
{
	size_t len = strlen(mx);

	if (answer_is_wildcard(mx))
		return domain_is_ldh(mx + 2, len - 2);
	return domain_is_ldh(mx, len) && !domain_is_ip_literal(mx, len);
}

/*
 * policy_domain must pass Postfix's valid_hostname(), or Postfix calls the whole policy
 * invalid and defers the mail: LDH, and not all digits.
 */
static bool
answer_domain_ok(const char *domain)
{
	size_t len;

	if (domain == NULL)
		return false;
	len = strlen(domain);
	if (!domain_is_ldh(domain, len))
		return false;
	for (size_t i = 0; i < len; i++)
		if (domain[i] != '.' && domain[i] != '-' && (domain[i] < '0' || domain[i] > '9'))
			return true;
	return false;
}

static int
answer_append_lower(struct strbuf *out, const char *s, size_t len)
{
	size_t at = out->len;

	if (strbuf_append(out, s, len) == -1)
		return -1;
	for (size_t i = at; i < out->len; i++)
		out->data[i] = answer_lower(out->data[i]);
	return 0;
}

/* match=: "*.d" becomes ".d", Postfix's spelling of "any name below d" (PFX-4). */
static int
answer_append_match(struct strbuf *out, const struct policy *p)
{
	bool first = true;

	for (const char *mx = policy_mx_next(p, NULL); mx != NULL; mx = policy_mx_next(p, mx)) {
		const char *s = answer_is_wildcard(mx) ? mx + 1 : mx;

		if (!answer_pattern_ok(mx))
			continue;
		if (!first && strbuf_appendc(out, ':') == -1)
			return -1;
		if (answer_append_lower(out, s, strlen(s)) == -1)
			return -1;
		first = false;
	}
	return 0;
}

/*
 * One policy line as "name: value" for { policy_string = ... }, or false to leave it out.
 * Only printable ASCII without '{' and '}' passes: a brace would end or nest Postfix's
 * quoting and let the rest of the line become attributes, and CTLs or non-ASCII bytes gain
 * nothing in a report but risk mangling on the way to the TLSRPT library. Leaving a line out
 * only thins the report; rejecting would cost the enforce answer.
 */
static bool
answer_policy_line(const char *line, size_t len, size_t *name_len, size_t *value_at,
                   size_t *value_end)
{
	size_t n = 0, v;

	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c == '\t')
			continue;
		if (c < 0x20 || c > 0x7E || c == '{' || c == '}')
			return false;
	}
	while (n < len && line[n] != ':' && line[n] != ' ' && line[n] != '\t')
		n++;
	if (n == 0 || n == len || line[n] != ':')
		return false;
	v = n + 1;
	while (v < len && (line[v] == ' ' || line[v] == '\t'))
		v++;
	if (v == len || memchr(line + v, '\t', len - v) != NULL)
		return false;
	*name_len = n;
	*value_at = v;
	*value_end = len;
	return true;
}

static int
answer_append_policy_strings(struct strbuf *out, const char *text, size_t text_len)
{
	size_t pos = 0;

	while (pos < text_len) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', text_len - pos);
		size_t n = nl != NULL ? (size_t)(nl - line) : text_len - pos;
		size_t name_len, v, end;

		pos += n + (nl != NULL ? 1 : 0);
		if (nl != NULL && n > 0 && line[n - 1] == '\r')
			n--;
		if (!answer_policy_line(line, n, &name_len, &v, &end))
			continue;
		if (strbuf_appends(out, " { policy_string = ") == -1 ||
		    strbuf_append(out, line, name_len) == -1 || strbuf_appends(out, ": ") == -1 ||
		    strbuf_append(out, line + v, end - v) == -1 || strbuf_appends(out, " }") == -1)
			return -1;
	}
	return 0;
}

/* Appends the TLSRPT set, shedding what does not fit (see answer.h). */
static void
answer_append_tlsrpt(struct strbuf *out, const struct policy *p, const char *domain,
                     const char *text, size_t text_len)
{
	size_t base = out->len, mid;

	if (!answer_domain_ok(domain))
		return;
	if (strbuf_appends(out, " policy_type=sts policy_domain=") == -1 ||
	    answer_append_lower(out, domain, strlen(domain)) == -1)
		goto drop_all;
	/* mx_host_pattern keeps "*.": Postfix matches MX names against it (APPLY-5). */
	for (const char *mx = policy_mx_next(p, NULL); mx != NULL; mx = policy_mx_next(p, mx)) {
		if (!answer_pattern_ok(mx))
			continue;
		if (strbuf_appends(out, " mx_host_pattern=") == -1 ||
		    answer_append_lower(out, mx, strlen(mx)) == -1)
			goto drop_all;
	}
	mid = out->len;
	/* All lines or none: a partial list would misstate the policy in the report. */
	if (text != NULL && answer_append_policy_strings(out, text, text_len) == -1)
		strbuf_truncate(out, mid);
	return;
drop_all:
	strbuf_truncate(out, base);
}

enum answer_kind
answer_render(const struct policy *p, const char *domain, const char *text, size_t text_len,
              const struct answer_opts *opts, struct strbuf *out)
{
	bool strict = opts != NULL && opts->strict_testing;
	bool usable = false;

	strbuf_reset(out);
	if (p == NULL)
		return ANSWER_NOTFOUND;
	/* none, and testing unless asked otherwise, are "no active policy" (APPLY-5, POL-8). */
	if (p->mode != POLICY_MODE_ENFORCE && !(p->mode == POLICY_MODE_TESTING && strict))
		return ANSWER_NOTFOUND;
	for (const char *mx = policy_mx_next(p, NULL); mx != NULL && !usable;
	     mx = policy_mx_next(p, mx))
		usable = answer_pattern_ok(mx);
	/* An empty match= makes Postfix defer all mail to the domain (APPLY-5). */
	if (!usable)
		return ANSWER_NOTFOUND;
	if (strbuf_appends(out, ANSWER_SECURE) == -1 || answer_append_match(out, p) == -1 ||
	    strbuf_appends(out, ANSWER_SERVERNAME) == -1) {
		strbuf_reset(out);
		return ANSWER_TOO_LONG;
	}
	if (opts != NULL && opts->tlsrpt)
		answer_append_tlsrpt(out, p, domain, text, text_len);
	return ANSWER_OK;
}

enum answer_kind
answer_render_none(const char *domain, enum answer_failure failure, const struct answer_opts *opts,
                   struct strbuf *out)
{
	(void)domain;
	(void)failure;
	(void)opts;
	strbuf_reset(out);
	return ANSWER_NOTFOUND;
}
