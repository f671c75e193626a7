/* test_answer.c: unit tests for rendering Postfix TLS policy answers (APPLY-5, PFX-3, PFX-4). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/strbuf.h"
#include "base/xmalloc.h"
#include "sts/answer.h"
#include "sts/policy.h"

/* socketmap_table(5): replies up to 100000 characters (PFX-1). */
#define SOCKETMAP_MAX 100000
/* tcp_table(5): one request or reply line of at most 4096 bytes. */
#define TCPTABLE_MAX 4096

#define HEAD  "version: STSv1\nmode: "
#define TAIL  "max_age: 86400\n"
#define TWO   "mx: mx1.example.com\nmx: *.example.net\n"
#define ENF   HEAD "enforce\n" TWO TAIL
#define TST   HEAD "testing\n" TWO TAIL
#define NON   HEAD "none\n" TWO TAIL
#define MATCH "secure match=mx1.example.com:.example.net servername=hostname"
#define RPT                                                                                        \
	" policy_type=sts policy_domain=example.com mx_host_pattern=mx1.example.com"               \
	" mx_host_pattern=*.example.net"
#define PS(s) " { policy_string = " s " }"
#define STRINGS(mode)                                                                              \
	PS("version: STSv1")                                                                       \
	PS("mode: " mode) PS("mx: mx1.example.com") PS("mx: *.example.net") PS("max_age: 86400")

struct answer_case {
	const char *name;
	const char *body;   /* parsed, and passed as the policy text */
	const char *domain; /* NULL: "example.com" */
	bool strict;
	bool tlsrpt;
	bool no_text; /* pass no policy text */
	enum answer_kind want;
	const char *out;
};

#define R(n, b, s, t, k, o)                                                                        \
	{                                                                                          \
		.name = n, .body = b, .strict = s, .tlsrpt = t, .want = k, .out = o                \
	}
#define RD(n, b, d, k, o)                                                                          \
	{                                                                                          \
		.name = n, .body = b, .domain = d, .tlsrpt = true, .want = k, .out = o             \
	}

#define OK_ ANSWER_OK
#define NF_ ANSWER_NOTFOUND

static const struct answer_case answer_cases[] = {
	/* APPLY-5: the mode decides. */
	R("APPLY-5 enforce renders secure match", ENF, false, false, OK_, MATCH),
	R("APPLY-5 testing renders NOTFOUND", TST, false, false, NF_, ""),
	R("APPLY-5 strict_testing renders testing like enforce", TST, true, false, OK_, MATCH),
	R("APPLY-5 none renders NOTFOUND", NON, false, false, NF_, ""),
	R("APPLY-5 none renders NOTFOUND even with strict_testing", NON, true, false, NF_, ""),
	R("APPLY-5 none without mx renders NOTFOUND", HEAD "none\n" TAIL, true, true, NF_, ""),
	R("APPLY-5 strict_testing leaves enforce alone", ENF, true, false, OK_, MATCH),

	/* MX-4, PFX-4: the match= list. */
	R("MX-4 file order kept in match=",
	  HEAD "enforce\nmx: c.example\nmx: a.example\nmx: b.example\n" TAIL, false, false, OK_,
	  "secure match=c.example:a.example:b.example servername=hostname"),
	R("PFX-4 *.d is written .d", HEAD "enforce\nmx: *.example.com\n" TAIL, false, false, OK_,
	  "secure match=.example.com servername=hostname"),
	R("MX-4 lower-cased and deduplicated",
	  HEAD "enforce\nmx: MX1.example.com\nmx: mx1.example.com\nmx: *.EXAMPLE.net\n" TAIL, false,
	  false, OK_, MATCH),
	R("MX-1 dropped IP pattern never reaches match=",
	  HEAD "enforce\nmx: 192.0.2.1\nmx: mx1.example.com\nmx: *.example.net\n" TAIL, false,
	  false, OK_, MATCH),

	/* APPLY-5: the TLSRPT attributes. */
	R("APPLY-5 TLSRPT attributes for enforce", ENF, false, true, OK_,
	  MATCH RPT STRINGS("enforce")),
	R("APPLY-5 TLSRPT attributes for strict testing", TST, true, true, OK_,
	  MATCH RPT STRINGS("testing")),
	R("APPLY-5 no TLSRPT attributes for plain testing", TST, false, true, NF_, ""),
	R("APPLY-5 policy_string is name: value, WSP and CRLF normalised",
	  "version:STSv1\r\nmode:\t enforce \r\nmx:  mx1.example.com\t\r\nmx: *.example.net\r\n"
	  "max_age:86400",
	  false, true, OK_, MATCH RPT STRINGS("enforce")),
	R("APPLY-5 policy_string skips empty lines", "\n" HEAD "enforce\n \n" TWO "\r\n" TAIL "\n",
	  false, true, OK_, MATCH RPT STRINGS("enforce")),
	R("APPLY-5 policy_string keeps extensions, ':' and ','",
	  HEAD "enforce\nreport: https://x.example/a,b\n" TWO TAIL, false, true, OK_,
	  MATCH RPT PS("version: STSv1") PS("mode: enforce") PS("report: https://x.example/a,b")
	          PS("mx: mx1.example.com") PS("mx: *.example.net") PS("max_age: 86400")),
	R("APPLY-5 policy_string keeps ignored duplicates as published",
	  HEAD "enforce\nmode: bogus\n" TWO TAIL, false, true, OK_,
	  MATCH RPT PS("version: STSv1") PS("mode: enforce") PS("mode: bogus")
	          PS("mx: mx1.example.com") PS("mx: *.example.net") PS("max_age: 86400")),

	/* Injection: no policy byte may become a Postfix attribute (PFX-3). */
	R("PFX-3 injection: '}' in an extension is never emitted",
	  HEAD "enforce\nx: } tafile=/etc/passwd {\n" TWO TAIL, false, true, OK_,
	  MATCH RPT STRINGS("enforce")),
	R("PFX-3 injection: '{' in an extension is never emitted",
	  HEAD "enforce\nx: {policy_failure=sts-webpki-invalid}\n" TWO TAIL, false, true, OK_,
	  MATCH RPT STRINGS("enforce")),
	R("PFX-3 non-ASCII extension left out of policy_string",
	  HEAD "enforce\nnote: gr\xc3\xbc\xc3\x9f\n" TWO TAIL, false, true, OK_,
	  MATCH RPT STRINGS("enforce")),
	RD("PFX-3 numeric policy_domain would fail valid_hostname: no TLSRPT", ENF, "123.456", OK_,
	   MATCH),
	RD("PFX-3 policy_domain with a space: no TLSRPT", ENF, "example.com tafile=/x", OK_, MATCH),
	RD("PFX-3 empty policy_domain: no TLSRPT", ENF, "", OK_, MATCH),
	RD("APPLY-5 policy_domain lower-cased", ENF, "EXAMPLE.com", OK_,
	   MATCH RPT STRINGS("enforce")),
	{ .name = "APPLY-5 TLSRPT without policy text has no policy_string",
	  .body = ENF,
	  .tlsrpt = true,
	  .no_text = true,
	  .want = OK_,
	  .out = MATCH RPT },
};

static void
test_answer_case(void **state)
{
	const struct answer_case *c = *state;
	size_t len = strlen(c->body);
	struct answer_opts opts = { .strict_testing = c->strict, .tlsrpt = c->tlsrpt };
	enum policy_error err;
	struct policy *p = policy_parse(c->body, len, &err, NULL);
	/* An exact-size copy of the text, so ASan flags any read past it. */
	char *text = xmalloc(len == 0 ? 1 : len);
	struct strbuf out;
	enum answer_kind kind;

	if (p == NULL)
		fail_msg("%s: policy does not parse: %s", c->name, policy_error_str(err));
	memcpy(text, c->body, len);
	strbuf_init(&out, SOCKETMAP_MAX);
	strbuf_appends(&out, "left over");
	kind = answer_render(p, c->domain != NULL ? c->domain : "example.com",
	                     c->no_text ? NULL : text, c->no_text ? 0 : len, &opts, &out);
	if (kind != c->want || strcmp(out.len > 0 ? out.data : "", c->out) != 0)
		fail_msg("%s: kind %d \"%s\", want %d \"%s\"", c->name, kind,
		         out.len > 0 ? out.data : "", c->want, c->out);
	strbuf_release(&out);
	free(text);
	policy_free(p);
}

/* A policy built by hand, as a corrupt cache or store could hand one over. */
static struct policy *
craft_policy(enum policy_mode mode, const char *const *mx, size_t n)
{
	size_t size = 0;
	struct policy *p;
	char *s;

	for (size_t i = 0; i < n; i++)
		size += strlen(mx[i]) + 1;
	p = xmalloc(sizeof(*p) + size);
	p->mode = mode;
	p->max_age = 86400;
	p->warnings = 0;
	p->nmx = (uint32_t)n;
	p->mx_size = (uint32_t)size;
	s = p->mx;
	for (size_t i = 0; i < n; i++) {
		memcpy(s, mx[i], strlen(mx[i]) + 1);
		s += strlen(mx[i]) + 1;
	}
	return p;
}

/* APPLY-5, PFX-3: the renderer re-checks every pattern itself and skips the unfit. */
static void
test_answer_hostile_patterns(void **state)
{
	static const char *const mx[] = {
		"a tafile=/x",
		"mx1.example.com",
		"*.evil,x",
		"192.0.2.1",
		"MX2.EXAMPLE.COM",
		"*.",
		"x:y",
		".d",
		"{a}",
		"",
		"*.ok.example",
		"a\tb",
		"2001:db8::1",
		"*.*.x",
		"mx1.example.com.",
	};
	struct answer_opts opts = { .tlsrpt = true };
	struct policy *p = craft_policy(POLICY_MODE_ENFORCE, mx, sizeof(mx) / sizeof(mx[0]));
	struct strbuf out;

	(void)state;
	strbuf_init(&out, SOCKETMAP_MAX);
	assert_int_equal(answer_render(p, "example.com", NULL, 0, &opts, &out), ANSWER_OK);
	assert_string_equal(out.data,
	                    "secure match=mx1.example.com:mx2.example.com:.ok.example"
	                    " servername=hostname policy_type=sts policy_domain=example.com"
	                    " mx_host_pattern=mx1.example.com mx_host_pattern=mx2.example.com"
	                    " mx_host_pattern=*.ok.example");
	policy_free(p);
	strbuf_release(&out);
}

/* APPLY-5: never "match=" with an empty list; NOTFOUND instead. */
static void
test_answer_no_usable_pattern(void **state)
{
	static const char *const mx[] = { "a tafile=/x", "*.", "192.0.2.1", "x:y" };
	struct answer_opts opts = { .strict_testing = true, .tlsrpt = true };
	struct policy *p = craft_policy(POLICY_MODE_ENFORCE, mx, sizeof(mx) / sizeof(mx[0]));
	struct policy *empty = craft_policy(POLICY_MODE_ENFORCE, NULL, 0);
	struct policy *bad_mode = craft_policy((enum policy_mode)7, mx + 0, 0);
	struct strbuf out;

	(void)state;
	strbuf_init(&out, SOCKETMAP_MAX);
	assert_int_equal(answer_render(p, "example.com", NULL, 0, &opts, &out), ANSWER_NOTFOUND);
	assert_int_equal(out.len, 0);
	assert_int_equal(answer_render(empty, "example.com", NULL, 0, &opts, &out),
	                 ANSWER_NOTFOUND);
	assert_int_equal(out.len, 0);
	assert_int_equal(answer_render(bad_mode, "example.com", NULL, 0, &opts, &out),
	                 ANSWER_NOTFOUND);
	assert_int_equal(answer_render(NULL, "example.com", NULL, 0, &opts, &out), ANSWER_NOTFOUND);
	/* No options at all means enforce only, no TLSRPT. */
	policy_free(p);
	p = policy_parse(ENF, sizeof(ENF) - 1, NULL, NULL);
	assert_int_equal(answer_render(p, "example.com", ENF, sizeof(ENF) - 1, NULL, &out),
	                 ANSWER_OK);
	assert_string_equal(out.data, MATCH);
	policy_free(p);
	policy_free(empty);
	policy_free(bad_mode);
	strbuf_release(&out);
}

static enum answer_kind
render_with_max(const char *body, size_t max, bool tlsrpt, struct strbuf *out)
{
	struct answer_opts opts = { .tlsrpt = tlsrpt };
	struct policy *p = policy_parse(body, strlen(body), NULL, NULL);
	enum answer_kind kind;

	assert_non_null(p);
	strbuf_release(out);
	strbuf_init(out, max);
	strbuf_appends(out, "x");
	kind = answer_render(p, "example.com", body, strlen(body), &opts, out);
	policy_free(p);
	return kind;
}

/*
 * PFX-1: the reply limit. The enforce answer itself never shrinks: if it does not fit the
 * result is ANSWER_TOO_LONG, distinct from NOTFOUND. TLSRPT extras are shed instead, all
 * policy strings first, then the whole set.
 */
static void
test_answer_limits(void **state)
{
	static const char full[] = MATCH RPT STRINGS("enforce");
	struct strbuf out;

	(void)state;
	strbuf_init(&out, 0);
	assert_int_equal(render_with_max(ENF, sizeof(MATCH) - 1, false, &out), ANSWER_OK);
	assert_string_equal(out.data, MATCH);
	assert_int_equal(render_with_max(ENF, sizeof(MATCH) - 2, false, &out), ANSWER_TOO_LONG);
	assert_int_equal(out.len, 0);
	assert_int_equal(render_with_max(ENF, 0, true, &out), ANSWER_TOO_LONG);
	assert_int_equal(out.len, 0);

	assert_int_equal(render_with_max(ENF, sizeof(full) - 1, true, &out), ANSWER_OK);
	assert_string_equal(out.data, full);
	assert_int_equal(render_with_max(ENF, sizeof(full) - 2, true, &out), ANSWER_OK);
	assert_string_equal(out.data, MATCH RPT);
	assert_int_equal(render_with_max(ENF, sizeof(MATCH RPT) - 1, true, &out), ANSWER_OK);
	assert_string_equal(out.data, MATCH RPT);
	assert_int_equal(render_with_max(ENF, sizeof(MATCH RPT) - 2, true, &out), ANSWER_OK);
	assert_string_equal(out.data, MATCH);
	assert_int_equal(render_with_max(ENF, sizeof(MATCH) - 2, true, &out), ANSWER_TOO_LONG);
	assert_int_equal(out.len, 0);
	/* NOTFOUND stays NOTFOUND whatever the limit. */
	assert_int_equal(render_with_max(TST, 0, true, &out), ANSWER_NOTFOUND);
	strbuf_release(&out);
}

/* PFX-1: a big enforce policy fits a socketmap reply but not a tcp_table line. */
static void
test_answer_big_policy(void **state)
{
	char *body = xmalloc(POLICY_BODY_MAX);
	size_t len = (size_t)snprintf(body, POLICY_BODY_MAX, "%s", HEAD "enforce\n" TAIL);
	struct strbuf out;

	(void)state;
	for (unsigned i = 0; i < 400; i++)
		len += (size_t)snprintf(body + len, POLICY_BODY_MAX - len,
		                        "mx: host%03u.example.com\n", i);
	strbuf_init(&out, 0);
	assert_int_equal(render_with_max(body, TCPTABLE_MAX, false, &out), ANSWER_TOO_LONG);
	assert_int_equal(out.len, 0);
	assert_int_equal(render_with_max(body, SOCKETMAP_MAX, true, &out), ANSWER_OK);
	assert_true(strncmp(out.data,
	                    "secure match=host000.example.com:host001.example.com:", 53) == 0);
	assert_non_null(strstr(out.data, ":host399.example.com servername=hostname policy_type="));
	assert_non_null(strstr(out.data, PS("max_age: 86400") PS("mx: host000.example.com")));
	assert_string_equal(out.data + out.len - sizeof(PS("mx: host399.example.com")) + 1,
	                    PS("mx: host399.example.com"));
	strbuf_release(&out);
	free(body);
}

/*
 * answer_render_none is NOTFOUND for every failure, TLSRPT or not: Postfix reports
 * no-policy-found itself, and policy_failure would defer mail that FETCH-7 says to deliver.
 */
static void
test_answer_none(void **state)
{
	static const enum answer_failure failures[] = {
		ANSWER_FAILURE_NONE,
		ANSWER_FAILURE_FETCH,
		ANSWER_FAILURE_INVALID,
		ANSWER_FAILURE_WEBPKI,
	};
	struct strbuf out;

	(void)state;
	strbuf_init(&out, SOCKETMAP_MAX);
	for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++) {
		for (int t = 0; t < 4; t++) {
			struct answer_opts opts = { .tlsrpt = t & 1, .strict_testing = t & 2 };

			strbuf_appends(&out, "left over");
			assert_int_equal(
			        answer_render_none("example.com", failures[i], &opts, &out),
			        ANSWER_NOTFOUND);
			assert_int_equal(out.len, 0);
		}
	}
	assert_int_equal(answer_render_none(NULL, ANSWER_FAILURE_FETCH, NULL, &out),
	                 ANSWER_NOTFOUND);
	strbuf_release(&out);
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

int
main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_answer_hostile_patterns),
		cmocka_unit_test(test_answer_no_usable_pattern),
		cmocka_unit_test(test_answer_limits),
		cmocka_unit_test(test_answer_big_policy),
		cmocka_unit_test(test_answer_none),
	};
	size_t n = NELEM(answer_cases) + NELEM(fixed);
	struct CMUnitTest *tests = xcalloc(n, sizeof(*tests));
	size_t t = 0;
	int rc;

	/* One named TAP line per table row, so a failure names the rule it breaks. */
	for (size_t i = 0; i < NELEM(answer_cases); i++)
		tests[t++] = (struct CMUnitTest){ .name = answer_cases[i].name,
			                          .test_func = test_answer_case,
			                          .initial_state = (void *)&answer_cases[i] };
	for (size_t i = 0; i < NELEM(fixed); i++)
		tests[t++] = fixed[i];
	rc = _cmocka_run_group_tests("answer", tests, t, NULL, NULL);
	free(tests);
	return rc;
}
