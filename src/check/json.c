/* json.c: reports as JSON under doc/mtasts-check.schema.json (schema_version 1). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "base/strbuf.h"
#include "check/output.h"
#include "check/verdict.h"

#define JSON_MAX (4u << 20)

static void
j_key(struct strbuf *sb, const char *k)
{
	(void)json_cstr(sb, k);
	(void)strbuf_appendc(sb, ':');
}

static void
j_str(struct strbuf *sb, const char *k, const char *v)
{
	j_key(sb, k);
	(void)json_cstr(sb, v);
	(void)strbuf_appendc(sb, ',');
}

static void
j_num(struct strbuf *sb, const char *k, long long v)
{
	j_key(sb, k);
	(void)strbuf_appendf(sb, "%lld,", v);
}

static void
j_bool(struct strbuf *sb, const char *k, bool v)
{
	j_key(sb, k);
	(void)strbuf_appends(sb, v ? "true," : "false,");
}

/* Replaces the trailing ',' of the last member with the closing bracket. */
static void
j_close(struct strbuf *sb, char c)
{
	if (sb->len > 0 && sb->data[sb->len - 1] == ',')
		sb->data[sb->len - 1] = c;
	else
		(void)strbuf_appendc(sb, c);
	(void)strbuf_appendc(sb, ',');
}

static void
j_msgs(struct strbuf *sb, const char *k, const struct report_msgs *m)
{
	j_key(sb, k);
	(void)strbuf_appendc(sb, '[');
	for (size_t i = 0; i < m->n; i++) {
		(void)json_cstr(sb, m->v[i]);
		(void)strbuf_appendc(sb, ',');
	}
	j_close(sb, ']');
}

static void
j_cert(struct strbuf *sb, const char *k, const struct certinfo *ci)
{
	const char *p = ci->san;

	j_key(sb, k);
	(void)strbuf_appendc(sb, '{');
	j_str(sb, "subject", ci->subject);
	j_key(sb, "san");
	(void)strbuf_appendc(sb, '[');
	while (*p != '\0') {
		const char *end = strstr(p, ", ");
		size_t n = end != NULL ? (size_t)(end - p) : strlen(p);

		(void)json_str(sb, p, n);
		(void)strbuf_appendc(sb, ',');
		p += n + (end != NULL ? 2 : 0);
	}
	j_close(sb, ']');
	j_str(sb, "issuer", ci->issuer);
	j_str(sb, "not_after", ci->not_after);
	j_str(sb, "verify", ci->verify);
	j_bool(sb, "chain_valid", ci->verify_error == 0);
	j_bool(sb, "expired", ci->expired);
	j_bool(sb, "name_mismatch", ci->name_mismatch);
	j_str(sb, "missing_intermediate",
	      ci->missing_issuer[0] != '\0' ? ci->missing_issuer : NULL);
	j_str(sb, "cipher", ci->cipher[0] != '\0' ? ci->cipher : NULL);
	j_close(sb, '}');
}

static void
j_null(struct strbuf *sb, const char *k)
{
	j_key(sb, k);
	(void)strbuf_appends(sb, "null,");
}

static void
j_txt(struct strbuf *sb, const struct report *r)
{
	char name[300];

	snprintf(name, sizeof(name), "_mta-sts.%s", r->domain);
	j_key(sb, "txt");
	(void)strbuf_appendc(sb, '{');
	j_str(sb, "name", name);
	j_str(sb, "dns", dns_status_str(r->txt_status));
	j_key(sb, "records");
	(void)strbuf_appendc(sb, '[');
	for (size_t i = 0; i < r->ntxt; i++) {
		(void)strbuf_appendc(sb, '{');
		j_str(sb, "text", r->txt[i].text);
		j_bool(sb, "candidate", r->txt[i].candidate);
		j_close(sb, '}');
	}
	j_close(sb, ']');
	j_str(sb, "result", txt_result_str(r->txt_result));
	j_str(sb, "problem", r->txt_result == TXT_INVALID ? r->txt_reason : NULL);
	j_str(sb, "id", r->txt_result == TXT_OK ? r->id : NULL);
	j_close(sb, '}');
}

static const char *
j_failure(enum answer_failure f)
{
	switch (f) {
	case ANSWER_FAILURE_FETCH:
		return "sts-policy-fetch-error";
	case ANSWER_FAILURE_INVALID:
		return "sts-policy-invalid";
	case ANSWER_FAILURE_WEBPKI:
		return "sts-webpki-invalid";
	default:
		return NULL;
	}
}

static void
j_policy(struct strbuf *sb, const struct report *r)
{
	j_key(sb, "policy");
	(void)strbuf_appendc(sb, '{');
	j_str(sb, "url", r->url);
	j_str(sb, "dns", dns_status_str(r->policy_addr_status));
	j_bool(sb, "fetched", r->fetched);
	j_str(sb, "fetch", r->fetched ? fetch_status_str(r->fetch_status) : NULL);
	j_str(sb, "error", r->fetched && r->fetch_status != FETCH_OK ? r->fetch_error : NULL);
	j_num(sb, "http_status", r->http_status);
	j_str(sb, "content_type", r->content_type);
	j_num(sb, "size", (long long)r->body_len);
	j_str(sb, "tls_version", r->tls_version != 0 ? text_tls_version(r->tls_version) : NULL);
	if (r->have_cert)
		j_cert(sb, "certificate", &r->cert);
	else
		j_null(sb, "certificate");
	j_str(sb, "text", r->body);
	j_bool(sb, "valid", r->policy != NULL);
	j_str(sb, "problem", r->policy_problem);
	j_str(sb, "failure", r->policy == NULL ? j_failure(r->policy_failure) : NULL);
	if (r->policy != NULL) {
		j_str(sb, "mode", policy_mode_str(r->policy->mode));
		j_num(sb, "max_age", r->policy->max_age);
		j_key(sb, "mx");
		(void)strbuf_appendc(sb, '[');
		for (const char *m = policy_mx_next(r->policy, NULL); m != NULL;
		     m = policy_mx_next(r->policy, m)) {
			(void)json_cstr(sb, m);
			(void)strbuf_appendc(sb, ',');
		}
		j_close(sb, ']');
	} else {
		j_null(sb, "mode");
		j_null(sb, "max_age");
		j_null(sb, "mx");
	}
	j_close(sb, '}');
}

static void
j_probe(struct strbuf *sb, const struct report_probe *p)
{
	(void)strbuf_appendc(sb, '{');
	j_str(sb, "address", p->addr);
	j_str(sb, "status", probe_status_str(p->status));
	j_str(sb, "detail", p->detail);
	j_str(sb, "tls_version", p->status == PROBE_OK ? text_tls_version(p->tls_version) : NULL);
	if (p->status == PROBE_OK && p->have_cert)
		j_cert(sb, "certificate", &p->cert);
	else
		j_null(sb, "certificate");
	j_bool(sb, "accepted", p->accepted);
	j_close(sb, '}');
}

static void
j_mx(struct strbuf *sb, const struct report *r)
{
	j_key(sb, "mx");
	(void)strbuf_appendc(sb, '{');
	j_str(sb, "dns", dns_status_str(r->mx_status));
	j_bool(sb, "null_mx", r->null_mx);
	j_bool(sb, "implicit", r->implicit_mx);
	j_bool(sb, "probed", r->probed);
	j_key(sb, "hosts");
	(void)strbuf_appendc(sb, '[');
	for (size_t i = 0; i < r->nmx; i++) {
		const struct report_mx *m = &r->mx[i];

		(void)strbuf_appendc(sb, '{');
		j_num(sb, "preference", m->preference);
		j_str(sb, "host", m->host);
		j_str(sb, "covered_by", m->pattern);
		j_key(sb, "addresses");
		(void)strbuf_appendc(sb, '[');
		for (size_t k = 0; k < m->naddrs; k++) {
			(void)json_cstr(sb, m->addrs[k]);
			(void)strbuf_appendc(sb, ',');
		}
		j_close(sb, ']');
		j_key(sb, "probes");
		(void)strbuf_appendc(sb, '[');
		for (size_t k = 0; k < m->nprobes; k++) {
			j_probe(sb, &m->probes[k]);
		}
		j_close(sb, ']');
		j_close(sb, '}');
	}
	j_close(sb, ']');
	j_close(sb, '}');
}

static void
j_tlsrpt(struct strbuf *sb, const struct report *r)
{
	char name[300];

	snprintf(name, sizeof(name), "_smtp._tls.%s", r->domain);
	j_key(sb, "tlsrpt");
	(void)strbuf_appendc(sb, '{');
	j_str(sb, "name", name);
	j_str(sb, "dns", dns_status_str(r->tlsrpt_status));
	j_key(sb, "records");
	(void)strbuf_appendc(sb, '[');
	for (size_t i = 0; i < r->ntlsrpt; i++) {
		(void)json_cstr(sb, r->tlsrpt_raw[i]);
		(void)strbuf_appendc(sb, ',');
	}
	j_close(sb, ']');
	j_str(sb, "result", tlsrpt_result_str(r->tlsrpt));
	j_str(sb, "problem", r->tlsrpt == TLSRPT_INVALID ? r->tlsrpt_reason : NULL);
	j_key(sb, "rua");
	(void)strbuf_appendc(sb, '[');
	if (r->tlsrpt_rec != NULL)
		for (const char *u = tlsrpt_rua_next(r->tlsrpt_rec, NULL); u != NULL;
		     u = tlsrpt_rua_next(r->tlsrpt_rec, u)) {
			(void)json_cstr(sb, u);
			(void)strbuf_appendc(sb, ',');
		}
	j_close(sb, ']');
	j_close(sb, '}');
}

void
json_reports(FILE *out, struct report *const *rs, size_t n)
{
	struct strbuf sb;

	strbuf_init(&sb, JSON_MAX);
	(void)strbuf_appends(&sb, "{\"schema_version\":1,\"domains\":[");
	for (size_t i = 0; i < n; i++) {
		const struct report *r = rs[i];

		(void)strbuf_appendc(&sb, '{');
		j_str(&sb, "domain", r->domain);
		j_bool(&sb, "exists", !r->domain_missing);
		j_str(&sb, "verdict", verdict_str(r->verdict));
		j_num(&sb, "exit_status", verdict_exit_status(r));
		j_bool(&sb, "dns_temperror", r->dns_temperror);
		j_msgs(&sb, "reasons", &r->reasons);
		j_msgs(&sb, "alerts", &r->alerts);
		j_msgs(&sb, "warnings", &r->warnings);
		j_txt(&sb, r);
		j_policy(&sb, r);
		j_mx(&sb, r);
		j_tlsrpt(&sb, r);
		j_key(&sb, "postfix");
		(void)strbuf_appendc(&sb, '{');
		j_str(&sb, "reply", conn_reply_str(r->reply));
		j_str(&sb, "text", r->reply_text != NULL ? r->reply_text : "");
		j_close(&sb, '}');
		j_close(&sb, '}');
	}
	j_close(&sb, ']');
	sb.data[sb.len - 1] = '}';
	fprintf(out, "%.*s\n", (int)sb.len, sb.data);
	strbuf_release(&sb);
}
