/* report.c: the per-domain report of mtasts-check: allocation, messages, names. */
#include "config.h"

#include "check/report.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xmalloc.h"

struct report *
report_new(const char *domain)
{
	struct report *r = xcalloc(1, sizeof(*r));

	snprintf(r->domain, sizeof(r->domain), "%s", domain);
	r->verdict = VERDICT_NOT_CONFIGURED;
	r->reply = CONN_REPLY_NOTFOUND;
	return r;
}

static void
report_msgs_free(struct report_msgs *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i]);
	m->n = 0;
}

void
report_free(struct report *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->ntxt; i++)
		free(r->txt[i].text);
	for (size_t i = 0; i < r->ntlsrpt; i++)
		free(r->tlsrpt_raw[i]);
	free(r->fetch_error);
	free(r->content_type);
	free(r->body);
	policy_free(r->policy);
	free(r->policy_problem);
	free(r->tlsrpt_rec);
	report_msgs_free(&r->reasons);
	report_msgs_free(&r->alerts);
	report_msgs_free(&r->warnings);
	free(r->reply_text);
	free(r);
}

void
report_msg(struct report_msgs *m, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (m->n >= REPORT_MSGS_MAX)
		return;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		abort();
	va_end(ap);
	m->v[m->n++] = s;
}

static const char *const verdict_names[] = {
	[VERDICT_ENFORCING] = "enforcing", [VERDICT_TESTING] = "testing",
	[VERDICT_DISABLED] = "disabled",   [VERDICT_NOT_CONFIGURED] = "not configured",
	[VERDICT_BROKEN] = "broken",
};

const char *
verdict_str(enum verdict v)
{
	return (size_t)v < sizeof(verdict_names) / sizeof(verdict_names[0]) ? verdict_names[v]
	                                                                    : "unknown";
}

static const char *const probe_status_names[] = {
	[PROBE_OK] = "ok",
	[PROBE_CONNECT] = "connect-failed",
	[PROBE_TIMEOUT] = "timeout",
	[PROBE_SMTP] = "smtp-error",
	[PROBE_NO_STARTTLS] = "no-starttls",
	[PROBE_TLS] = "tls-failed",
};

const char *
probe_status_str(enum probe_status st)
{
	return (size_t)st < sizeof(probe_status_names) / sizeof(probe_status_names[0])
	               ? probe_status_names[st]
	               : "unknown";
}

const char *
conn_reply_str(enum conn_reply r)
{
	switch (r) {
	case CONN_REPLY_OK:
		return "OK";
	case CONN_REPLY_NOTFOUND:
		return "NOTFOUND";
	case CONN_REPLY_TEMP:
		return "TEMP";
	case CONN_REPLY_PERM:
	default:
		return "PERM";
	}
}
