/* text.c: a report as readable text with aligned tables; colour only when asked. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "check/output.h"
#include "check/verdict.h"

struct text_ctx {
	FILE *out;
	bool colour;
};

#define C_RED    "\033[1;31m"
#define C_YELLOW "\033[33m"
#define C_GREEN  "\033[32m"
#define C_BOLD   "\033[1m"
#define C_OFF    "\033[0m"

static const char *
text_c(const struct text_ctx *t, const char *code)
{
	return t->colour ? code : "";
}

const char *
text_tls_version(int v)
{
	switch (v) {
	case 0x0304:
		return "TLSv1.3";
	case 0x0303:
		return "TLSv1.2";
	case 0x0302:
		return "TLSv1.1";
	case 0x0301:
		return "TLSv1.0";
	case 0:
		return "";
	default:
		return "unknown";
	}
}

static void
text_head(const struct text_ctx *t, const char *title, const char *what)
{
	fprintf(t->out, "\n%s%s%s  %s\n", text_c(t, C_BOLD), title, text_c(t, C_OFF), what);
}

static void
text_kv(const struct text_ctx *t, const char *key, const char *val)
{
	if (val[0] == '\0')
		fprintf(t->out, "  %s\n", key); /* a heading for what follows: no trailing blanks */
	else
		fprintf(t->out, "  %-13s %s\n", key, val);
}

/* A table: rows of ncol cells; column widths from the content; the last column unpadded. */
#define TEXT_COLS_MAX 9
struct text_row {
	const char *cell[TEXT_COLS_MAX];
	const char *colour; /* whole-row colour code, or NULL */
};

static void
text_table(const struct text_ctx *t, const struct text_row *rows, size_t nrows, size_t ncol)
{
	size_t w[TEXT_COLS_MAX] = { 0 };

	for (size_t i = 0; i < nrows; i++)
		for (size_t j = 0; j < ncol; j++)
			if (strlen(rows[i].cell[j]) > w[j])
				w[j] = strlen(rows[i].cell[j]);
	for (size_t i = 0; i < nrows; i++) {
		const char *on = rows[i].colour != NULL ? text_c(t, rows[i].colour) : "";

		fprintf(t->out, "  %s", on);
		for (size_t j = 0; j < ncol; j++) {
			if (j + 1 < ncol)
				fprintf(t->out, "%-*s  ", (int)w[j], rows[i].cell[j]);
			else
				fprintf(t->out, "%s", rows[i].cell[j]);
		}
		fprintf(t->out, "%s\n", *on != '\0' ? text_c(t, C_OFF) : "");
	}
}

static void
text_txt(const struct text_ctx *t, const struct report *r)
{
	char title[300];

	snprintf(title, sizeof(title), "_mta-sts.%s", r->domain);
	text_head(t, "1. MTA-STS TXT record", title);
	text_kv(t, "DNS", dns_status_str(r->txt_status));
	for (size_t i = 0; i < r->ntxt; i++) {
		char line[64];

		snprintf(line, sizeof(line), "record %zu", i + 1);
		fprintf(t->out, "  %-13s \"%s\"%s\n", line, r->txt[i].text,
		        r->txt[i].candidate ? "  <- candidate" : "");
	}
	if (r->txt_status == DNS_OK || r->txt_status == DNS_NODATA ||
	    r->txt_status == DNS_NXDOMAIN) {
		text_kv(t, "result", txt_result_str(r->txt_result));
		if (r->txt_result == TXT_INVALID)
			text_kv(t, "problem", r->txt_reason != NULL ? r->txt_reason : "");
		if (r->txt_result == TXT_OK)
			text_kv(t, "id", r->id);
	}
}

static void
text_cert(const struct text_ctx *t, const struct certinfo *ci)
{
	text_kv(t, "subject", ci->subject);
	text_kv(t, "SAN", ci->san[0] != '\0' ? ci->san : "(none)");
	text_kv(t, "issuer", ci->issuer);
	text_kv(t, "expires", ci->not_after);
	fprintf(t->out, "  %-13s %s%s%s\n", "chain",
	        ci->verify_error == 0 ? text_c(t, C_GREEN) : text_c(t, C_RED), ci->verify,
	        text_c(t, C_OFF));
	if (ci->missing_issuer[0] != '\0')
		fprintf(t->out,
		        "  %-13s %smissing intermediate: the server does not send the "
		        "certificate of %s%s\n",
		        "", text_c(t, C_RED), ci->missing_issuer, text_c(t, C_OFF));
}

static void
text_policy(const struct text_ctx *t, const struct report *r)
{
	char buf[512];

	text_head(t, "2. Policy", r->url);
	if (r->policy_addr_status != DNS_OK) {
		snprintf(buf, sizeof(buf), "mta-sts.%s: %s", r->domain,
		         dns_status_str(r->policy_addr_status));
		text_kv(t, "address", buf);
	}
	if (r->fetched) {
		text_kv(t, "fetch", fetch_status_str(r->fetch_status));
		if (r->fetch_status != FETCH_OK)
			text_kv(t, "error", r->fetch_error);
		if (r->http_status != 0) {
			snprintf(buf, sizeof(buf), "%ld", r->http_status);
			text_kv(t, "HTTP status", buf);
			text_kv(t, "content type",
			        r->content_type != NULL ? r->content_type : "(none)");
			snprintf(buf, sizeof(buf), "%zu bytes", r->body_len);
			text_kv(t, "size", buf);
		}
		if (r->tls_version != 0) {
			snprintf(buf, sizeof(buf), "%s%s%s", text_tls_version(r->tls_version),
			         r->have_cert && r->cert.cipher[0] != '\0' ? "  " : "",
			         r->have_cert ? r->cert.cipher : "");
			text_kv(t, "TLS", buf);
		}
		if (r->have_cert)
			text_cert(t, &r->cert);
	}
	if (r->body != NULL) {
		const char *p = r->body, *end = r->body + r->body_len;

		text_kv(t, "policy text", "");
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);

			fprintf(t->out, "    | ");
			for (size_t i = 0; i < n; i++)
				fputc(p[i] >= 0x20 && p[i] < 0x7F ? p[i] : '?', t->out);
			fputc('\n', t->out);
			p += n + 1;
		}
	}
	if (r->policy != NULL) {
		size_t at = 0;

		text_kv(t, "mode", policy_mode_str(r->policy->mode));
		snprintf(buf, sizeof(buf), "%u", r->policy->max_age);
		text_kv(t, "max_age", buf);
		buf[0] = '\0';
		for (const char *m = policy_mx_next(r->policy, NULL); m != NULL;
		     m = policy_mx_next(r->policy, m))
			at += (size_t)snprintf(buf + at, at < sizeof(buf) ? sizeof(buf) - at : 0,
			                       "%s%s", at > 0 ? ", " : "", m);
		text_kv(t, "mx patterns", r->policy->nmx > 0 ? buf : "(none)");
	} else if (r->policy_problem != NULL) {
		fprintf(t->out, "  %-13s %s%s%s\n", "problem", text_c(t, C_RED), r->policy_problem,
		        text_c(t, C_OFF));
	}
}

static void
text_mx(const struct text_ctx *t, const struct report *r)
{
	struct text_row rows[REPORT_MX_MAX + 1] = {
		{ .cell = { "PREF", "MX HOST", "COVERED BY" } },
	};
	char pref[REPORT_MX_MAX][8];
	size_t n = 1;

	text_head(t, "3. MX coverage", r->domain);
	if (r->null_mx) {
		text_kv(t, "MX", "null MX (RFC 7505): the domain accepts no mail");
		return;
	}
	if (r->nmx == 0) {
		text_kv(t, "MX", dns_status_str(r->mx_status));
		return;
	}
	if (r->implicit_mx)
		text_kv(t, "MX", "no MX record: the domain itself is the implicit MX");
	for (size_t i = 0; i < r->nmx; i++, n++) {
		const struct report_mx *m = &r->mx[i];

		snprintf(pref[i], sizeof(pref[i]), "%u", m->preference);
		rows[n].cell[0] = r->implicit_mx ? "-" : pref[i];
		rows[n].cell[1] = m->host;
		rows[n].cell[2] = m->pattern != NULL  ? m->pattern
		                  : r->policy != NULL ? "NOT COVERED"
		                                      : "-";
		if (m->pattern == NULL && r->policy != NULL)
			rows[n].colour = r->policy->mode == POLICY_MODE_ENFORCE ? C_RED : C_YELLOW;
	}
	text_table(t, rows, n, 3);
}

static void
text_probe(const struct text_ctx *t, const struct report *r)
{
	struct text_row rows[REPORT_MX_MAX * REPORT_ADDR_MAX + 1] = {
		{ .cell = { "MX HOST", "ADDRESS", "RESULT", "TLS", "CIPHER", "EXPIRES", "NAME",
		            "CHAIN", "POLICY" } },
	};
	size_t n = 1;

	text_head(t, "4. MX TLS probe", "(EHLO, STARTTLS, certificate verified for the MX name)");
	for (size_t i = 0; i < r->nmx; i++) {
		const struct report_mx *m = &r->mx[i];

		if (m->nprobes == 0)
			fprintf(t->out, "  %s: no address to probe (%s)\n", m->host,
			        dns_status_str(m->addr_status));
		for (size_t j = 0; j < m->nprobes && n < sizeof(rows) / sizeof(rows[0]); j++, n++) {
			const struct report_probe *p = &m->probes[j];
			bool cert = p->status == PROBE_OK && p->have_cert;

			rows[n].cell[0] = m->host;
			rows[n].cell[1] = p->addr;
			rows[n].cell[2] = probe_status_str(p->status);
			rows[n].cell[3] =
			        p->status == PROBE_OK ? text_tls_version(p->tls_version) : "-";
			rows[n].cell[4] = cert && p->cert.cipher[0] != '\0' ? p->cert.cipher : "-";
			rows[n].cell[5] = cert ? p->cert.not_after : "-";
			rows[n].cell[6] = !cert ? "-" : p->cert.name_mismatch ? "MISMATCH" : "ok";
			rows[n].cell[7] = !cert ? "-" : p->cert.verify_error == 0 ? "ok" : "FAILED";
			rows[n].cell[8] = p->accepted ? "accepted" : "REJECTED";
			if (!p->accepted)
				rows[n].colour = C_RED;
		}
	}
	if (n > 1)
		text_table(t, rows, n, 9);
	for (size_t i = 0; i < r->nmx; i++)
		for (size_t j = 0; j < r->mx[i].nprobes; j++) {
			const struct report_probe *p = &r->mx[i].probes[j];

			if (p->status != PROBE_OK)
				fprintf(t->out, "  %s %s: %s\n", r->mx[i].host, p->addr, p->detail);
			else if (p->have_cert && p->cert.verify_error != 0)
				fprintf(t->out, "  %s %s: certificate: %s%s%s\n", r->mx[i].host,
				        p->addr, p->cert.verify,
				        p->cert.missing_issuer[0] != '\0'
				                ? "; missing intermediate: "
				                : "",
				        p->cert.missing_issuer);
		}
}

static void
text_tlsrpt(const struct text_ctx *t, const struct report *r)
{
	char title[300];

	snprintf(title, sizeof(title), "_smtp._tls.%s", r->domain);
	text_head(t, "5. TLS-RPT record", title);
	text_kv(t, "DNS", dns_status_str(r->tlsrpt_status));
	for (size_t i = 0; i < r->ntlsrpt; i++)
		fprintf(t->out, "  %-13s \"%s\"\n", "record", r->tlsrpt_raw[i]);
	text_kv(t, "result",
	        r->tlsrpt == TLSRPT_NONE ? "none (no TLS reporting)"
	                                 : tlsrpt_result_str(r->tlsrpt));
	if (r->tlsrpt == TLSRPT_INVALID)
		text_kv(t, "problem", r->tlsrpt_reason != NULL ? r->tlsrpt_reason : "");
	if (r->tlsrpt_rec != NULL)
		for (const char *u = tlsrpt_rua_next(r->tlsrpt_rec, NULL); u != NULL;
		     u = tlsrpt_rua_next(r->tlsrpt_rec, u))
			text_kv(t, "rua", u);
}

static void
text_verdict(const struct text_ctx *t, const struct report *r)
{
	static const char *const colours[] = {
		[VERDICT_ENFORCING] = C_GREEN, [VERDICT_TESTING] = C_YELLOW,
		[VERDICT_DISABLED] = C_YELLOW, [VERDICT_NOT_CONFIGURED] = C_BOLD,
		[VERDICT_BROKEN] = C_RED,
	};
	char up[32];
	size_t i;
	const char *v = verdict_str(r->verdict);

	for (i = 0; v[i] != '\0' && i + 1 < sizeof(up); i++)
		up[i] = v[i] >= 'a' && v[i] <= 'z' ? (char)(v[i] - 32) : v[i];
	up[i] = '\0';
	fprintf(t->out, "\n%s6. Verdict%s  %s%s%s\n", text_c(t, C_BOLD), text_c(t, C_OFF),
	        text_c(t, colours[r->verdict]), up, text_c(t, C_OFF));
	for (i = 0; i < r->reasons.n; i++)
		text_kv(t, "because", r->reasons.v[i]);
	for (i = 0; i < r->alerts.n; i++)
		fprintf(t->out, "  %s%-13s %s%s\n", text_c(t, C_RED), "!! DANGER", r->alerts.v[i],
		        text_c(t, C_OFF));
	for (i = 0; i < r->warnings.n; i++)
		fprintf(t->out, "  %s%-13s %s%s\n", text_c(t, C_YELLOW), "warning",
		        r->warnings.v[i], text_c(t, C_OFF));
}

void
text_report(FILE *out, const struct report *r, bool colour)
{
	struct text_ctx t = { .out = out, .colour = colour };

	fprintf(out, "%s== %s ==%s\n", text_c(&t, C_BOLD), r->domain, text_c(&t, C_OFF));
	if (r->domain_missing)
		fprintf(out, "%sthe domain %s does not exist (NXDOMAIN)%s\n", text_c(&t, C_RED),
		        r->domain, text_c(&t, C_OFF));
	if (r->dns_temperror)
		fprintf(out, "%sDNS did not answer: %s%s\n", text_c(&t, C_RED),
		        dns_status_str(r->txt_status), text_c(&t, C_OFF));
	text_txt(&t, r);
	text_policy(&t, r);
	text_mx(&t, r);
	if (r->probed)
		text_probe(&t, r);
	text_tlsrpt(&t, r);
	text_verdict(&t, r);
	text_head(&t, "7. mtastsd would answer Postfix", "(socketmap reply, default map options)");
	fprintf(out, "  %s%s%s\n", conn_reply_str(r->reply), r->reply_text != NULL ? " " : "",
	        r->reply_text != NULL ? r->reply_text : "");
}
