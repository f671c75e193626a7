/* answer.h: rendering a policy as the Postfix TLS policy a lookup returns (APPLY-5). */
#ifndef MTASTS_STS_ANSWER_H
#define MTASTS_STS_ANSWER_H

#include <stdbool.h>
#include <stddef.h>

#include "base/strbuf.h"
#include "sts/policy.h"

/* Per-map rendering options. */
struct answer_opts {
	bool strict_testing; /* render testing like enforce */
	bool tlsrpt;         /* append Postfix >= 3.10 TLSRPT attributes */
};

/* Why there is no policy to apply, for the TLSRPT policy_failure attribute. */
enum answer_failure {
	ANSWER_FAILURE_NONE = 0, /* no MTA-STS at all: no TXT candidate */
	ANSWER_FAILURE_FETCH,    /* sts-policy-fetch-error */
	ANSWER_FAILURE_INVALID,  /* sts-policy-invalid */
	ANSWER_FAILURE_WEBPKI,   /* sts-webpki-invalid */
};

enum answer_kind {
	ANSWER_NOTFOUND, /* reply "NOTFOUND " (socketmap) / 500 (tcp_table) */
	ANSWER_OK,       /* reply "OK <out>" / "200 <out>" */
	ANSWER_TOO_LONG, /* a policy applies but its answer exceeds out's max; out is empty */
};

/*
 * Renders the answer for domain (a normalised policy domain) and policy p into out (which it
 * resets first). text/text_len is the raw policy body, used only for TLSRPT policy_string
 * attributes. Every value written is re-validated so that no policy content can add Postfix
 * attributes: a pattern that is not LDH (after "*." -> ".") is skipped, and a policy with no
 * pattern left renders NOTFOUND, never an empty match=. Returns ANSWER_NOTFOUND with out empty
 * for mode none, for testing without strict_testing, or when no pattern survives.
 * Returns ANSWER_TOO_LONG with out empty when "secure match=... servername=hostname" alone
 * does not fit out's max (possible with a tcp_table line limit, never with socketmap's
 * 100000 and a 64 KiB body): the caller must not pass that off as a silent NOTFOUND, since
 * an enforce policy exists; log it and answer TEMP (or NOTFOUND with a warning). TLSRPT
 * attributes that do not fit are left out instead: first every policy_string, then the
 * whole TLSRPT set, so the enforce answer itself is never lost to them.
 */
enum answer_kind answer_render(const struct policy *p, const char *domain, const char *text,
                               size_t text_len, const struct answer_opts *opts, struct strbuf *out);

/*
 * The answer when no policy applies: always ANSWER_NOTFOUND with out empty, whatever
 * opts->tlsrpt and failure say. On NOTFOUND Postfix >= 3.10 reports "no-policy-found" to
 * TLSRPT by itself (smtp_tlsrpt_set_tls_policy() falls back to TLSRPT_NO_POLICY_FOUND when
 * the map gave no policy_type). Any OK answer would have to name a security level, which
 * overrides smtp_tls_security_level (a "may" would downgrade a configured dane or encrypt),
 * and policy_failure=... makes Postfix fail the delivery, which FETCH-7 forbids: with no
 * valid policy the mail goes out as though the domain had no MTA-STS. failure is kept in
 * the interface for logging by callers and a future Postfix that can report it safely.
 */
enum answer_kind answer_render_none(const char *domain, enum answer_failure failure,
                                    const struct answer_opts *opts, struct strbuf *out);

#endif
