/* fuzz_policy.c: libFuzzer target for the policy parser, MX matching and answer rendering. */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "base/xmalloc.h"
#include "sts/answer.h"
#include "sts/domain.h"
#include "sts/mx.h"
#include "sts/policy.h"

/* Duplicate checks are quadratic; past this many patterns they are skipped. */
#define FUZZ_DUP_CHECK_MAX 256

/* Reply limits worth rendering into: socketmap, tcp_table, and small enough to overflow. */
static const size_t fuzz_limits[] = { 100000, 4096, 80, 0 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_check(bool ok)
{
	if (!ok)
		abort();
}

static bool
fuzz_is_wildcard(const char *mx)
{
	return mx[0] == '*' && mx[1] == '.';
}

/* What the parser promises for each stored pattern (MX-1, MX-4) and what matching makes of it. */
static void
fuzz_check_pattern(const struct policy *p, const char *mx)
{
	size_t len = strlen(mx);
	char *host = xmalloc(len + 2);

	for (size_t i = 0; i < len; i++)
		fuzz_check(!(mx[i] >= 'A' && mx[i] <= 'Z'));
	fuzz_check(len > 0 && mx[len - 1] != '.');
	if (fuzz_is_wildcard(mx)) {
		fuzz_check(domain_is_ldh(mx + 2, len - 2));
		/* One label in front of the rest matches; the rest alone does not (MX-3). */
		host[0] = 'A';
		memcpy(host + 1, mx + 1, len);
		fuzz_check(mx_match(mx, host));
		fuzz_check(!mx_match(mx, mx + 2));
	} else {
		fuzz_check(domain_is_ldh(mx, len));
		fuzz_check(!domain_is_ip_literal(mx, len));
		fuzz_check(mx_match(mx, mx));
		for (size_t i = 0; i < len; i++)
			host[i] = mx[i] >= 'a' && mx[i] <= 'z' ? (char)(mx[i] - 'a' + 'A') : mx[i];
		host[len] = '.';
		host[len + 1] = '\0';
		fuzz_check(mx_match(mx, host));
		fuzz_check(mx_policy_match(p, mx) != NULL);
	}
	free(host);
}

static void
fuzz_check_policy(const struct policy *p)
{
	uint32_t n = 0, size = 0;

	fuzz_check(p->mode == POLICY_MODE_ENFORCE || p->mode == POLICY_MODE_TESTING ||
	           p->mode == POLICY_MODE_NONE);
	fuzz_check(p->max_age <= POLICY_MAX_AGE_MAX);
	fuzz_check(p->mode == POLICY_MODE_NONE || p->nmx > 0);
	for (const char *mx = policy_mx_next(p, NULL); mx != NULL; mx = policy_mx_next(p, mx)) {
		fuzz_check_pattern(p, mx);
		n++;
		size += (uint32_t)strlen(mx) + 1;
		if (p->nmx <= FUZZ_DUP_CHECK_MAX)
			for (const char *o = policy_mx_next(p, NULL); o != mx;
			     o = policy_mx_next(p, o))
				fuzz_check(strcmp(o, mx) != 0);
	}
	fuzz_check(n == p->nmx && size == p->mx_size);
}

/* An LDH name, optionally behind a prefix that the caller allows. */
static bool
fuzz_ldh_after(const char *v, size_t len, const char *prefix)
{
	size_t plen = strlen(prefix);

	if (len > plen && memcmp(v, prefix, plen) == 0)
		return domain_is_ldh(v + plen, len - plen);
	return domain_is_ldh(v, len);
}

/* One "name=value" token outside braces; returns the name's index in names[] or aborts. */
static size_t
fuzz_check_attr(const char *tok, size_t len)
{
	static const char *const names[] = { "match", "servername", "policy_type", "policy_domain",
		                             "mx_host_pattern" };
	const char *eq = memchr(tok, '=', len);
	size_t nlen, vlen;
	const char *v;

	fuzz_check(eq != NULL);
	nlen = (size_t)(eq - tok);
	v = eq + 1;
	vlen = len - nlen - 1;
	fuzz_check(vlen > 0 && memchr(v, '=', vlen) == NULL);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strlen(names[i]) != nlen || memcmp(tok, names[i], nlen) != 0)
			continue;
		switch (i) {
		case 0:
			/* Postfix splits match= on ':' (PFX-3): every element is a name. */
			for (size_t s = 0, e; s <= vlen; s = e + 1) {
				const char *c = memchr(v + s, ':', vlen - s);

				e = c != NULL ? (size_t)(c - v) : vlen;
				fuzz_check(e > s && fuzz_ldh_after(v + s, e - s, "."));
			}
			break;
		case 1:
			fuzz_check(vlen == 8 && memcmp(v, "hostname", 8) == 0);
			break;
		case 2:
			fuzz_check(vlen == 3 && memcmp(v, "sts", 3) == 0);
			break;
		case 3:
			fuzz_check(domain_is_ldh(v, vlen));
			break;
		default:
			fuzz_check(fuzz_ldh_after(v, vlen, "*."));
			break;
		}
		return i;
	}
	abort();
}

/*
 * Splits an answer the way Postfix does (tokens on SP, "{ ... }" kept whole) and checks that
 * every value is clean: nothing a policy holds can add or break an attribute (PFX-3).
 */
static void
fuzz_check_answer(const char *s, size_t len)
{
	static const char brace_open[] = "{ policy_string = ";
	size_t pos, ntok = 0, last = 0;
	bool braces = false;

	fuzz_check(strlen(s) == len);
	fuzz_check(len > 7 && memcmp(s, "secure ", 7) == 0);
	pos = 7;
	while (pos < len) {
		const char *tok = s + pos;
		const char *sp;
		size_t tlen;

		if (tok[0] == '{') {
			const char *close = memchr(tok, '}', len - pos);

			fuzz_check(last >= 2 && close != NULL);
			braces = true;
			tlen = (size_t)(close - tok) + 1;
			fuzz_check(tlen > sizeof(brace_open) + 1);
			fuzz_check(memcmp(tok, brace_open, sizeof(brace_open) - 1) == 0);
			fuzz_check(close[-1] == ' ' && close[-2] != ' ');
			for (size_t i = sizeof(brace_open) - 1; i < tlen - 2; i++)
				fuzz_check(tok[i] >= 0x20 && tok[i] <= 0x7E && tok[i] != '{');
		} else {
			size_t idx;

			sp = memchr(tok, ' ', len - pos);
			tlen = sp != NULL ? (size_t)(sp - tok) : len - pos;
			fuzz_check(tlen > 0);
			for (size_t i = 0; i < tlen; i++)
				fuzz_check(tok[i] > 0x20 && tok[i] < 0x7F && tok[i] != ',' &&
				           tok[i] != '{' && tok[i] != '}');
			idx = fuzz_check_attr(tok, tlen);
			fuzz_check(!braces);
			/* match, servername, then the TLSRPT set in order, policy strings last. */
			fuzz_check(ntok != 0 || idx == 0);
			fuzz_check(ntok != 1 || idx == 1);
			fuzz_check(ntok < 2 || (idx >= 2 && idx >= last));
			fuzz_check(idx != 2 || ntok == 2);
			fuzz_check(idx != 3 || ntok == 3);
			last = idx;
		}
		ntok++;
		pos += tlen;
		/* Exactly one SP between tokens, none at the end. */
		if (pos < len) {
			fuzz_check(s[pos] == ' ' && pos + 1 < len && s[pos + 1] != ' ');
			pos++;
		}
	}
	fuzz_check(ntok >= 2);
}

static void
fuzz_render(const struct policy *p, const uint8_t *data, size_t size)
{
	struct strbuf out;

	for (size_t l = 0; l < sizeof(fuzz_limits) / sizeof(fuzz_limits[0]); l++) {
		for (int o = 0; o < 4; o++) {
			struct answer_opts opts = { .strict_testing = o & 1, .tlsrpt = o & 2 };
			bool applies = p->mode == POLICY_MODE_ENFORCE ||
			               (p->mode == POLICY_MODE_TESTING && opts.strict_testing);
			enum answer_kind kind;

			strbuf_init(&out, fuzz_limits[l]);
			kind = answer_render(p, "example.com", (const char *)data, size, &opts,
			                     &out);
			if (kind == ANSWER_OK) {
				fuzz_check(applies);
				fuzz_check_answer(out.data, out.len);
			} else {
				fuzz_check(out.len == 0);
				fuzz_check(kind == ANSWER_NOTFOUND || kind == ANSWER_TOO_LONG);
				/* A parsed policy always fits a socketmap reply (PFX-1). */
				fuzz_check(kind == ANSWER_NOTFOUND || fuzz_limits[l] < 100000);
				fuzz_check(!applies || kind == ANSWER_TOO_LONG);
			}
			strbuf_release(&out);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum policy_error err;
	size_t line;
	struct policy *p = policy_parse((const char *)data, size, &err, &line);

	if (p == NULL) {
		fuzz_check(err != POLICY_ERR_NONE);
		fuzz_check(size <= POLICY_BODY_MAX || err == POLICY_ERR_TOO_LARGE);
		return 0;
	}
	fuzz_check(err == POLICY_ERR_NONE && line == 0 && size <= POLICY_BODY_MAX);
	fuzz_check_policy(p);
	fuzz_render(p, data, size);
	policy_free(p);
	return 0;
}
