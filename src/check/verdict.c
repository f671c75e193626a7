/* verdict.c: the checker's verdict from a filled report (RFC-NOTES section 12); pure. */
#include "config.h"

#include "check/verdict.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sts/mx.h"

#define DAY 86400u

/* Second-level labels that registries sell under (co.uk, com.au, ...): enough for a warning. */
static const char *const verdict_registry_labels[] = {
	"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go",
};

bool
verdict_pattern_too_broad(const char *pattern)
{
	const char *rest, *dot;

	if (strncmp(pattern, "*.", 2) != 0)
		return false;
	rest = pattern + 2;
	dot = strchr(rest, '.');
	if (dot == NULL)
		return true;
	if (strchr(dot + 1, '.') != NULL)
		return false;
	for (size_t i = 0; i < sizeof(verdict_registry_labels) / sizeof(verdict_registry_labels[0]);
	     i++) {
		size_t n = strlen(verdict_registry_labels[i]);

		if ((size_t)(dot - rest) == n && strncmp(rest, verdict_registry_labels[i], n) == 0)
			return true;
	}
	return false;
}

static void
verdict_reset(struct report *r)
{
	struct report_msgs *lists[] = { &r->reasons, &r->alerts, &r->warnings };

	for (size_t l = 0; l < 3; l++) {
		for (size_t i = 0; i < lists[l]->n; i++)
			free(lists[l]->v[i]);
		lists[l]->n = 0;
	}
}

/* "v=STSv1" somewhere, or a case-folded "v=stsv" start: senders ignore it (TXT-6). */
static bool
verdict_near_miss(const char *text)
{
	const char *p = text;

	while (*p == ' ' || *p == '\t')
		p++;
	return strstr(text, "v=STSv1") != NULL || strncasecmp(p, "v=stsv", 6) == 0;
}

static void
verdict_policy_warnings(struct report *r)
{
	const struct policy *p = r->policy;
	const char *ct = r->content_type, *cs;

	if (p->warnings & POLICY_WARN_MAX_AGE_CLAMPED)
		report_msg(&r->warnings, "max_age is over %u seconds (a year): clamped to %u",
		           POLICY_MAX_AGE_MAX, POLICY_MAX_AGE_MAX);
	if (p->max_age == 0)
		report_msg(&r->warnings, "max_age is 0: senders cannot cache the policy, so it "
		                         "protects nothing between fetches");
	else if (p->max_age < DAY)
		report_msg(&r->warnings,
		           "max_age %u is under a day (RFC 8461 §3.2 expects weeks or more)",
		           p->max_age);
	if (p->warnings & POLICY_WARN_TRAILING_DOT)
		report_msg(&r->warnings,
		           "an mx pattern ends with a dot (stripped; not in the grammar)");
	if (p->warnings & POLICY_WARN_IP_DROPPED)
		report_msg(&r->warnings, "an mx pattern that is an IP address was dropped");
	if (p->warnings & POLICY_WARN_EMPTY_LINE)
		report_msg(&r->warnings, "empty lines in the policy were ignored");
	if (p->warnings & POLICY_WARN_DUPLICATE)
		report_msg(&r->warnings, "a repeated field was ignored (the first one counts)");
	if (p->warnings & POLICY_WARN_DUPLICATE_MX)
		report_msg(&r->warnings, "a repeated mx pattern was dropped");
	for (const char *pat = policy_mx_next(p, NULL); pat != NULL; pat = policy_mx_next(p, pat))
		if (verdict_pattern_too_broad(pat))
			report_msg(&r->warnings, "mx pattern '%s' is as broad as a public suffix",
			           pat);
	cs = ct != NULL ? strcasestr(ct, "charset=") : NULL;
	if (cs != NULL) {
		cs += 8;
		if (*cs == '"')
			cs++;
		if (strncasecmp(cs, "utf-8", 5) != 0 && strncasecmp(cs, "us-ascii", 8) != 0)
			report_msg(&r->warnings,
			           "Content-Type charset is not utf-8 or us-ascii: %s", ct);
	}
}

static void
verdict_probes(struct report *r, bool loud)
{
	for (size_t i = 0; i < r->nmx; i++) {
		struct report_mx *m = &r->mx[i];

		for (size_t j = 0; j < m->nprobes; j++) {
			struct report_probe *pr = &m->probes[j];
			const char *why = NULL;

			pr->accepted = false;
			if (pr->status != PROBE_OK)
				why = probe_status_str(pr->status);
			else if (pr->tls_version < 0x0303)
				why = "TLS version below 1.2";
			else if (!pr->have_cert || pr->cert.verify_error != 0)
				why = pr->have_cert ? pr->cert.verify : "no certificate";
			else if (m->pattern == NULL)
				why = "host not covered by the policy";
			else
				pr->accepted = true;
			if (why == NULL || r->policy == NULL || r->policy->mode == POLICY_MODE_NONE)
				continue;
			report_msg(loud ? &r->alerts : &r->warnings,
			           "MX %s (%s) would fail MTA-STS validation: %s", m->host,
			           pr->addr, why);
		}
	}
}

void
verdict_decide(struct report *r)
{
	size_t covered = 0;

	verdict_reset(r);
	for (size_t i = 0; i < r->nmx; i++) {
		r->mx[i].pattern =
		        r->policy != NULL ? mx_policy_match(r->policy, r->mx[i].host) : NULL;
		if (r->mx[i].pattern != NULL)
			covered++;
	}
	r->dns_temperror = false;
	if (r->txt_status == DNS_SERVFAIL || r->txt_status == DNS_TIMEOUT ||
	    r->txt_status == DNS_ERROR) {
		r->verdict = VERDICT_BROKEN;
		r->dns_temperror = true;
		report_msg(&r->reasons, "dns-temperror: the TXT lookup of _mta-sts.%s failed (%s)",
		           r->domain, dns_status_str(r->txt_status));
		report_msg(&r->alerts,
		           "DNS did not answer for _mta-sts.%s: senders cannot tell "
		           "whether MTA-STS applies",
		           r->domain);
	} else if (r->txt_result == TXT_NONE) {
		r->verdict = VERDICT_NOT_CONFIGURED;
		if (r->domain_missing)
			report_msg(&r->reasons, "the domain %s does not exist (NXDOMAIN)",
			           r->domain);
		else if (r->ntxt == 0)
			report_msg(&r->reasons, "no TXT record at _mta-sts.%s", r->domain);
		else
			report_msg(&r->reasons,
			           "no v=STSv1 record among the TXT records at _mta-sts.%s",
			           r->domain);
		for (size_t i = 0; i < r->ntxt; i++)
			if (verdict_near_miss(r->txt[i].text))
				report_msg(
				        &r->warnings,
				        "TXT record looks like MTA-STS but senders ignore it: %s",
				        r->txt[i].text);
		if (r->policy != NULL)
			report_msg(&r->warnings,
			           "orphan policy: %s is served but no TXT record "
			           "announces it",
			           r->url);
	} else if (r->txt_result == TXT_MULTIPLE) {
		r->verdict = VERDICT_BROKEN;
		report_msg(&r->reasons, "several v=STSv1 records at _mta-sts.%s", r->domain);
		report_msg(&r->alerts, "several v=STSv1 TXT records: senders ignore them all");
	} else if (r->txt_result == TXT_INVALID) {
		r->verdict = VERDICT_BROKEN;
		report_msg(&r->reasons, "the v=STSv1 record is invalid: %s",
		           r->txt_reason != NULL ? r->txt_reason : "syntax");
		report_msg(&r->alerts, "the MTA-STS TXT record is invalid: senders ignore it");
	} else if (r->policy == NULL) {
		r->verdict = VERDICT_BROKEN;
		report_msg(&r->reasons, "TXT record present but the policy is unusable: %s",
		           r->policy_problem != NULL ? r->policy_problem : "unknown");
		report_msg(&r->alerts,
		           "TXT record present but the policy is unreachable or invalid: "
		           "senders fall back to no MTA-STS");
	} else if (r->policy->mode == POLICY_MODE_NONE) {
		r->verdict = VERDICT_DISABLED;
		report_msg(&r->reasons, "policy mode none: MTA-STS is switched off");
	} else if (r->policy->mode == POLICY_MODE_TESTING) {
		r->verdict = VERDICT_TESTING;
		report_msg(&r->reasons, "policy mode testing");
		report_msg(&r->alerts,
		           "testing mode gives no protection: failures are only reported");
		for (size_t i = 0; i < r->nmx; i++)
			if (r->mx[i].pattern == NULL)
				report_msg(&r->warnings, "MX host %s is not covered by the policy",
				           r->mx[i].host);
	} else if (r->nmx > 0 && covered == 0) {
		r->verdict = VERDICT_BROKEN;
		report_msg(&r->reasons, "mode enforce, but no MX host matches any mx pattern");
		report_msg(&r->alerts, "enforce with no MX host covered: mail to %s will bounce",
		           r->domain);
	} else {
		r->verdict = VERDICT_ENFORCING;
		if (r->null_mx)
			report_msg(&r->reasons, "policy mode enforce (null MX: no mail accepted)");
		else
			report_msg(&r->reasons, "policy mode enforce, %zu of %zu MX hosts covered",
			           covered, r->nmx);
		for (size_t i = 0; i < r->nmx; i++)
			if (r->mx[i].pattern == NULL)
				report_msg(&r->alerts,
				           "MX host %s is NOT COVERED by the policy: mail "
				           "delivered to "
				           "it will bounce",
				           r->mx[i].host);
	}
	if (r->policy != NULL && (r->txt_result == TXT_OK || r->verdict == VERDICT_NOT_CONFIGURED))
		verdict_policy_warnings(r);
	if (r->null_mx)
		report_msg(&r->warnings, "null MX (RFC 7505): the domain accepts no mail; coverage "
		                         "does not apply");
	else if (r->implicit_mx)
		report_msg(&r->warnings, "no MX record: the domain itself is the implicit MX");
	else if (r->nmx == 0 && r->txt_result == TXT_OK && !r->domain_missing)
		report_msg(&r->warnings, "MX hosts unknown: the MX lookup gave %s",
		           dns_status_str(r->mx_status));
	if (r->tlsrpt == TLSRPT_INVALID)
		report_msg(&r->warnings, "TLS-RPT record invalid: %s",
		           r->tlsrpt_reason != NULL ? r->tlsrpt_reason : "syntax");
	else if (r->tlsrpt == TLSRPT_MULTIPLE)
		report_msg(&r->warnings, "several TLS-RPT records: senders ignore them all");
	else if (r->tlsrpt == TLSRPT_OK && r->tlsrpt_rec != NULL && r->tlsrpt_rec->nunsupported > 0)
		report_msg(&r->warnings, "TLS-RPT rua URIs with a scheme other than mailto/https "
		                         "are ignored");
	verdict_probes(r, r->verdict == VERDICT_ENFORCING);
}

int
verdict_exit_status(const struct report *r)
{
	if (r->dns_temperror)
		return 5;
	return (int)r->verdict;
}
