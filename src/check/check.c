/* check.c: one domain checked: the lookups, fetch, engine answer and probes behind a report. */
#include "config.h"

#include "check/check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "base/strbuf.h"
#include "base/xmalloc.h"
#include "check/probe.h"
#include "check/verdict.h"
#include "engine/engine.h"
#include "engine/lookup_reply.h"
#include "io/dns.h"
#include "io/fetch.h"
#include "proto/socketmap.h"
#include "sts/mediatype.h"

#define POLICY_PATH "/.well-known/mta-sts.txt"
#define OPS_MAX     (8 + REPORT_MX_MAX * (1 + REPORT_ADDR_MAX))

enum check_op_kind {
	OP_TXT,
	OP_TLSRPT,
	OP_MX,
	OP_POLICY_ADDR,
	OP_FETCH,
	OP_MX_ADDR,
	OP_PROBE,
	OP_ENGINE,
};

/* One outstanding asynchronous call; its handle is kept so check_free can cancel it. */
struct check_op {
	struct check *c;
	enum check_op_kind kind;
	size_t mx;    /* OP_MX_ADDR, OP_PROBE */
	size_t probe; /* OP_PROBE */
	struct dns_query *dq;
	struct fetch_req *fr;
	struct probe_req *pr;
	struct engine_wait *ew;
	bool busy;
};

struct check {
	struct check_env env;
	struct report *r;
	check_done_cb done;
	void *arg;
	char policy_host[DOMAIN_NAME_MAX + 16];
	size_t pending;
	struct check_op ops[OPS_MAX];
};

static struct check_op *
check_op_new(struct check *c, enum check_op_kind kind)
{
	for (size_t i = 0; i < OPS_MAX; i++)
		if (!c->ops[i].busy) {
			c->ops[i] = (struct check_op){ .c = c, .kind = kind, .busy = true };
			c->pending++;
			return &c->ops[i];
		}
	return NULL;
}

static void
check_op_done(struct check_op *op)
{
	struct check *c = op->c;

	op->busy = false;
	op->dq = NULL;
	op->fr = NULL;
	op->pr = NULL;
	op->ew = NULL;
	if (--c->pending == 0) {
		verdict_decide(c->r);
		c->done(c->arg, c);
	}
}

/* Printable text of DNS/peer bytes: anything outside 0x20-0x7e becomes \xNN. */
static void
check_printable(struct strbuf *sb, const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] >= 0x20 && s[i] < 0x7F && s[i] != '\\')
			(void)strbuf_appendc(sb, (char)s[i]);
		else
			(void)strbuf_appendf(sb, "\\x%02x", s[i]);
	}
}

/* Joins the strings of each RR into owned printable text. Returns the number of RRs kept. */
static size_t
check_txt_records(const struct dns_result *res, char **out, bool *cand, size_t max,
                  bool (*is_cand)(const char *, size_t))
{
	size_t n = 0;

	for (size_t i = 0; i < res->ntxt && n < max;) {
		struct strbuf raw, text;
		size_t j = i;

		strbuf_init(&raw, 65536);
		strbuf_init(&text, 4 * 65536);
		do {
			(void)strbuf_append(&raw, res->txt[j].data, res->txt[j].len);
			j++;
		} while (j < res->ntxt && !res->txt[j].record_start);
		check_printable(&text, (const unsigned char *)raw.data, raw.len);
		out[n] = xstrdup(text.data != NULL ? text.data : "");
		if (cand != NULL)
			cand[n] = is_cand(raw.data != NULL ? raw.data : "", raw.len);
		n++;
		strbuf_release(&raw);
		strbuf_release(&text);
		i = j;
	}
	return n;
}

/* The DNS layer's strings as the parsers' chunks (the same fields, a different type). */
static struct txt_chunk *
check_chunks(const struct dns_result *res)
{
	struct txt_chunk *ch = xreallocarray(NULL, res->ntxt > 0 ? res->ntxt : 1, sizeof(*ch));

	for (size_t i = 0; i < res->ntxt; i++)
		ch[i] = (struct txt_chunk){ .data = res->txt[i].data,
			                    .len = res->txt[i].len,
			                    .record_start = res->txt[i].record_start };
	return ch;
}

static void
check_on_txt(void *arg, const struct dns_result *res)
{
	struct check_op *op = arg;
	struct report *r = op->c->r;
	char *texts[REPORT_TXT_MAX];
	bool cand[REPORT_TXT_MAX];
	struct txt_record rec;

	r->txt_status = res->status;
	if (res->status == DNS_OK) {
		r->ntxt = check_txt_records(res, texts, cand, REPORT_TXT_MAX, txt_is_candidate);
		for (size_t i = 0; i < r->ntxt; i++)
			r->txt[i] = (struct report_txt){ .text = texts[i], .candidate = cand[i] };
		/* The same selection as the daemon's, on the chunks as DNS delivered them. */
		struct txt_chunk *ch = check_chunks(res);

		r->txt_result = txt_select(ch, res->ntxt, &rec, &r->txt_reason);
		free(ch);
		if (r->txt_result == TXT_OK)
			memcpy(r->id, rec.id, sizeof(r->id));
	} else {
		r->txt_result = TXT_NONE;
	}
	check_op_done(op);
}

static void
check_on_tlsrpt(void *arg, const struct dns_result *res)
{
	struct check_op *op = arg;
	struct report *r = op->c->r;
	struct tlsrpt_record *rec = xmalloc(sizeof(*rec));

	r->tlsrpt_status = res->status;
	r->tlsrpt = TLSRPT_NONE;
	if (res->status == DNS_OK) {
		r->ntlsrpt = check_txt_records(res, r->tlsrpt_raw, NULL, REPORT_TXT_MAX, NULL);
		struct txt_chunk *ch = check_chunks(res);

		r->tlsrpt = tlsrpt_select(ch, res->ntxt, rec, &r->tlsrpt_reason);
		free(ch);
	}
	if (r->tlsrpt == TLSRPT_OK)
		r->tlsrpt_rec = rec;
	else
		free(rec);
	check_op_done(op);
}

static void check_on_mx_addr(void *arg, const struct dns_result *res);

static void
check_lookup_mx_addr(struct check *c, size_t i)
{
	struct check_op *op = check_op_new(c, OP_MX_ADDR);

	if (op == NULL)
		return;
	op->mx = i;
	op->dq = dns_lookup(c->env.dns, c->r->mx[i].host, DNS_TYPE_ADDR, check_on_mx_addr, op);
}

static void
check_on_mx(void *arg, const struct dns_result *res)
{
	struct check_op *op = arg;
	struct check *c = op->c;
	struct report *r = c->r;

	r->mx_status = res->status;
	if (res->status == DNS_OK) {
		for (size_t i = 0; i < res->nmx && r->nmx < REPORT_MX_MAX; i++) {
			if (res->mx[i].host[0] == '\0') {
				r->null_mx = true;
				continue;
			}
			r->mx[r->nmx].preference = res->mx[i].preference;
			snprintf(r->mx[r->nmx].host, sizeof(r->mx[r->nmx].host), "%s",
			         res->mx[i].host);
			r->nmx++;
		}
		/* Sorted by preference, then name, as a sender tries them. */
		for (size_t i = 1; i < r->nmx; i++)
			for (size_t j = i; j > 0; j--) {
				struct report_mx *a = &r->mx[j - 1], *b = &r->mx[j], t;

				if (a->preference < b->preference ||
				    (a->preference == b->preference &&
				     strcmp(a->host, b->host) <= 0))
					break;
				t = *a;
				*a = *b;
				*b = t;
			}
	} else if (res->status == DNS_NODATA) {
		r->implicit_mx = true;
		r->nmx = 1;
		snprintf(r->mx[0].host, sizeof(r->mx[0].host), "%s", r->domain);
	} else if (res->status == DNS_NXDOMAIN) {
		r->domain_missing = true;
	}
	for (size_t i = 0; i < r->nmx; i++)
		check_lookup_mx_addr(c, i);
	check_op_done(op);
}

static void
check_on_probe(void *arg, const struct report_probe *res)
{
	struct check_op *op = arg;
	struct report_mx *m = &op->c->r->mx[op->mx];

	m->probes[op->probe] = *res;
	check_op_done(op);
}

static void
check_on_mx_addr(void *arg, const struct dns_result *res)
{
	struct check_op *op = arg;
	struct check *c = op->c;
	struct report_mx *m = &c->r->mx[op->mx];

	m->addr_status = res->status;
	if (res->status == DNS_OK)
		for (size_t i = 0; i < res->naddrs && m->naddrs < REPORT_ADDR_MAX; i++)
			snprintf(m->addrs[m->naddrs++], sizeof(m->addrs[0]), "%s", res->addrs[i]);
	if (c->env.probe != NULL) {
		c->r->probed = true;
		for (size_t i = 0; i < m->naddrs; i++) {
			struct check_op *p = check_op_new(c, OP_PROBE);

			if (p == NULL)
				break;
			p->mx = op->mx;
			p->probe = m->nprobes++;
			memcpy(m->probes[p->probe].addr, m->addrs[i], sizeof(m->addrs[i]));
			p->pr = probe_start(c->env.probe, m->host, m->addrs[i], check_on_probe, p);
		}
	}
	check_op_done(op);
}

static void check_set_problem(struct report *r, enum answer_failure f, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void
check_set_problem(struct report *r, enum answer_failure f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&r->policy_problem, fmt, ap) == -1)
		abort();
	va_end(ap);
	r->policy_failure = f;
}

static void
check_on_fetch(void *arg, const struct fetch_result *res)
{
	struct check_op *op = arg;
	struct report *r = op->c->r;
	enum policy_error perr;
	size_t pline;

	r->fetched = true;
	r->fetch_status = res->status;
	r->fetch_error = xstrdup(res->error != NULL ? res->error : "");
	r->http_status = res->http_status;
	r->content_type = res->content_type != NULL ? xstrdup(res->content_type) : NULL;
	r->tls_version = res->tls_version;
	if (res->cert != NULL) {
		r->have_cert = true;
		r->cert = *res->cert;
	}
	if (res->status != FETCH_OK) {
		check_set_problem(
		        r, res->status == FETCH_CERT ? ANSWER_FAILURE_WEBPKI : ANSWER_FAILURE_FETCH,
		        "fetch failed (%s): %s", fetch_status_str(res->status), res->error);
	} else {
		r->body_len = res->body_len;
		r->body = xstrndup(res->body, res->body_len);
		/* The same checks, in the same order, as the engine (engine.c disc_on_fetch). */
		if (res->http_status != 200)
			check_set_problem(r, ANSWER_FAILURE_FETCH,
			                  "HTTP status %ld (only 200 is valid)", res->http_status);
		else if (!mediatype_is_text_plain(res->content_type))
			check_set_problem(r, ANSWER_FAILURE_FETCH,
			                  "Content-Type '%.60s' is not text/plain",
			                  res->content_type != NULL ? res->content_type : "");
		else if ((r->policy = policy_parse(res->body, res->body_len, &perr, &pline)) ==
		         NULL)
			check_set_problem(r, ANSWER_FAILURE_INVALID, "%s at line %zu",
			                  policy_error_str(perr), pline);
	}
	check_op_done(op);
}

static void
check_on_policy_addr(void *arg, const struct dns_result *res)
{
	struct check_op *op = arg;
	struct check *c = op->c;
	struct report *r = c->r;

	r->policy_addr_status = res->status;
	if (res->status != DNS_OK || res->naddrs == 0) {
		check_set_problem(r, ANSWER_FAILURE_FETCH, "%s: %s", c->policy_host,
		                  dns_status_str(res->status));
	} else {
		struct check_op *f = check_op_new(c, OP_FETCH);

		if (f != NULL)
			f->fr = fetch_start(c->env.fetch, c->policy_host, 443, POLICY_PATH,
			                    res->addrs, res->naddrs, check_on_fetch, f);
	}
	check_op_done(op);
}

static void
check_engine_answer(struct check *c, const struct engine_answer *ans)
{
	struct strbuf out;
	const char *reason = "";
	struct report *r = c->r;

	strbuf_init(&out, SOCKETMAP_REPLY_MAX - 3);
	r->reply = lookup_reply_of(ans, &c->env.answer, &out, &reason);
	free(r->reply_text);
	if (r->reply == CONN_REPLY_OK)
		r->reply_text = xstrdup(out.data != NULL ? out.data : "");
	else if (r->reply == CONN_REPLY_TEMP)
		r->reply_text = xstrdup(reason != NULL ? reason : "");
	else
		r->reply_text = xstrdup("");
	strbuf_release(&out);
}

static void
check_on_engine(void *arg, const struct engine_answer *ans)
{
	struct check_op *op = arg;

	check_engine_answer(op->c, ans);
	check_op_done(op);
}

static void
check_lookup(struct check *c, enum check_op_kind kind, const char *name, enum dns_type type,
             dns_cb cb)
{
	struct check_op *op = check_op_new(c, kind);

	op->dq = dns_lookup(c->env.dns, name, type, cb, op);
}

struct check *
check_start(const struct check_env *env, const char *domain, check_done_cb done, void *arg)
{
	struct check *c = xcalloc(1, sizeof(*c));
	char name[DOMAIN_NAME_MAX + 32];
	struct engine_answer ans;
	struct check_op *op;

	c->env = *env;
	c->r = report_new(domain);
	c->done = done;
	c->arg = arg;
	snprintf(c->policy_host, sizeof(c->policy_host), "mta-sts.%s", domain);
	snprintf(c->r->url, sizeof(c->r->url), "https://%s%s", c->policy_host, POLICY_PATH);
	snprintf(name, sizeof(name), "_mta-sts.%s", domain);
	check_lookup(c, OP_TXT, name, DNS_TYPE_TXT, check_on_txt);
	snprintf(name, sizeof(name), "_smtp._tls.%s", domain);
	check_lookup(c, OP_TLSRPT, name, DNS_TYPE_TXT, check_on_tlsrpt);
	check_lookup(c, OP_MX, domain, DNS_TYPE_MX, check_on_mx);
	check_lookup(c, OP_POLICY_ADDR, c->policy_host, DNS_TYPE_ADDR, check_on_policy_addr);
	op = check_op_new(c, OP_ENGINE);
	op->ew = engine_lookup(env->engine, domain, &ans, check_on_engine, op);
	if (op->ew == NULL) {
		/* Answered at once (never the case for a fresh engine, but the contract allows it).
		 */
		check_engine_answer(c, &ans);
		op->busy = false;
		c->pending--;
	}
	return c;
}

struct report *
check_report(struct check *c)
{
	return c->r;
}

void
check_free(struct check *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < OPS_MAX; i++) {
		struct check_op *op = &c->ops[i];

		if (!op->busy)
			continue;
		if (op->dq != NULL)
			dns_cancel(op->dq);
		if (op->fr != NULL)
			fetch_cancel(op->fr);
		if (op->pr != NULL)
			probe_cancel(op->pr);
		if (op->ew != NULL)
			engine_cancel(op->ew);
	}
	report_free(c->r);
	free(c);
}
