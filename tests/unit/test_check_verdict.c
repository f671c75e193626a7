/* test_check_verdict.c: the checker's verdict model (RFC-NOTES section 12) on built reports. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "check/report.h"
#include "check/verdict.h"

static struct report *
mk(const char *txt_text, enum txt_result tr, const char *policy, const char *const *mx)
{
	struct report *r = report_new("example.com");

	r->txt_status = txt_text != NULL ? DNS_OK : DNS_NXDOMAIN;
	if (txt_text != NULL) {
		r->ntxt = 1;
		r->txt[0].text = strdup(txt_text);
		r->txt[0].candidate = tr != TXT_NONE;
	}
	r->txt_result = tr;
	if (tr == TXT_OK)
		strcpy(r->id, "1");
	if (policy != NULL) {
		enum policy_error e;
		size_t line;

		r->policy = policy_parse(policy, strlen(policy), &e, &line);
		assert_non_null(r->policy);
	} else {
		r->policy_problem = strdup("fetch failed (connect): refused");
	}
	r->mx_status = DNS_OK;
	for (; mx != NULL && *mx != NULL; mx++) {
		strcpy(r->mx[r->nmx].host, *mx);
		r->mx[r->nmx++].preference = 10;
	}
	verdict_decide(r);
	return r;
}

static bool
has(const struct report_msgs *m, const char *needle)
{
	for (size_t i = 0; i < m->n; i++)
		if (strstr(m->v[i], needle) != NULL)
			return true;
	return false;
}

#define ENFORCE(mx, age) "version: STSv1\nmode: enforce\n" mx "max_age: " age "\n"

static const char *const mx1[] = { "mx1.example.com", NULL };
static const char *const mx12[] = { "mx1.example.com", "backup.other.net", NULL };
static const char *const other[] = { "mail.other.net", NULL };

/* Section 12 "enforcing": valid TXT, enforce, an MX covered. */
static void
test_enforcing(void **state)
{
	struct report *r =
	        mk("v=STSv1; id=1;", TXT_OK, ENFORCE("mx: mx1.example.com\n", "604800"), mx1);

	assert_int_equal(r->verdict, VERDICT_ENFORCING);
	assert_string_equal(r->mx[0].pattern, "mx1.example.com");
	assert_int_equal(r->alerts.n, 0);
	assert_int_equal(verdict_exit_status(r), 0);
	report_free(r);
}

/* Section 12 / RFC 8461 §8.4: an uncovered backup MX is loud but still enforcing. */
static void
test_enforcing_uncovered(void **state)
{
	struct report *r =
	        mk("v=STSv1; id=1;", TXT_OK, ENFORCE("mx: mx1.example.com\n", "604800"), mx12);

	assert_int_equal(r->verdict, VERDICT_ENFORCING);
	assert_null(r->mx[1].pattern);
	assert_true(has(&r->alerts, "backup.other.net is NOT COVERED"));
	report_free(r);
}

/* Section 12 "broken": enforce and no MX covered at all. */
static void
test_enforce_none_covered(void **state)
{
	struct report *r =
	        mk("v=STSv1; id=1;", TXT_OK, ENFORCE("mx: mx1.example.com\n", "604800"), other);

	assert_int_equal(r->verdict, VERDICT_BROKEN);
	assert_true(has(&r->alerts, "will bounce"));
	assert_int_equal(verdict_exit_status(r), 4);
	report_free(r);
}

static void
test_testing_disabled(void **state)
{
	struct report *r =
	        mk("v=STSv1; id=1;", TXT_OK,
	           "version: STSv1\nmode: testing\nmx: mx1.example.com\nmax_age: 604800\n", other);

	assert_int_equal(r->verdict, VERDICT_TESTING);
	assert_true(has(&r->alerts, "no protection"));
	assert_true(has(&r->warnings, "mail.other.net is not covered"));
	assert_int_equal(verdict_exit_status(r), 1);
	report_free(r);
	r = mk("v=STSv1; id=1;", TXT_OK, "version: STSv1\nmode: none\nmax_age: 604800\n", mx1);
	assert_int_equal(r->verdict, VERDICT_DISABLED);
	assert_int_equal(verdict_exit_status(r), 2);
	report_free(r);
}

/* TXT-6 near miss: not configured with a warning; TXT present, policy unusable: broken. */
static void
test_not_configured_and_broken(void **state)
{
	struct report *r = mk(NULL, TXT_NONE, NULL, mx1);

	assert_int_equal(r->verdict, VERDICT_NOT_CONFIGURED);
	assert_int_equal(verdict_exit_status(r), 3);
	report_free(r);
	r = mk("id=1; v=STSv1", TXT_NONE, NULL, mx1);
	assert_int_equal(r->verdict, VERDICT_NOT_CONFIGURED);
	assert_true(has(&r->warnings, "looks like MTA-STS"));
	report_free(r);
	r = mk("v=STSv1; id=1;", TXT_OK, NULL, mx1);
	assert_int_equal(r->verdict, VERDICT_BROKEN);
	assert_true(has(&r->alerts, "unreachable or invalid"));
	report_free(r);
	r = mk("v=STSv1; id=;", TXT_INVALID, NULL, mx1);
	assert_int_equal(r->verdict, VERDICT_BROKEN);
	report_free(r);
}

static void
test_dns_temperror(void **state)
{
	struct report *r = report_new("example.com");

	r->txt_status = DNS_TIMEOUT;
	verdict_decide(r);
	assert_int_equal(r->verdict, VERDICT_BROKEN);
	assert_true(r->dns_temperror);
	assert_int_equal(verdict_exit_status(r), 5);
	report_free(r);
}

/* Section 12 warnings: max_age clamped / under a day / zero, broad pattern, dot, IP. */
static void
test_warnings(void **state)
{
	struct report *r =
	        mk("v=STSv1; id=1;", TXT_OK,
	           ENFORCE("mx: mx1.example.com.\nmx: 192.0.2.1\nmx: *.com\n", "99999999"), mx1);

	assert_int_equal(r->verdict, VERDICT_ENFORCING);
	assert_true(has(&r->warnings, "clamped"));
	assert_true(has(&r->warnings, "ends with a dot"));
	assert_true(has(&r->warnings, "IP address was dropped"));
	assert_true(has(&r->warnings, "'*.com' is as broad as a public suffix"));
	report_free(r);
	r = mk("v=STSv1; id=1;", TXT_OK, ENFORCE("mx: mx1.example.com\n", "3600"), mx1);
	assert_true(has(&r->warnings, "under a day"));
	report_free(r);
	r = mk("v=STSv1; id=1;", TXT_OK, ENFORCE("mx: mx1.example.com\n", "0"), mx1);
	assert_true(has(&r->warnings, "max_age is 0"));
	report_free(r);
}

static void
test_pattern_breadth(void **state)
{
	assert_true(verdict_pattern_too_broad("*.com"));
	assert_true(verdict_pattern_too_broad("*.co.uk"));
	assert_false(verdict_pattern_too_broad("*.example.com"));
	assert_false(verdict_pattern_too_broad("*.example.co.uk"));
	assert_false(verdict_pattern_too_broad("com"));
}

/* Item 4: a probe is accepted only with STARTTLS, TLS >= 1.2, a valid cert, a covered host. */
static void
test_probe_acceptance(void **state)
{
	struct report *r =
	        mk("v=STSv1; id=1;", TXT_OK, ENFORCE("mx: mx1.example.com\n", "604800"), mx1);

	r->mx[0].nprobes = 2;
	r->mx[0].probes[0] = (struct report_probe){
		.addr = "192.0.2.1", .status = PROBE_OK, .tls_version = 0x0304, .have_cert = true
	};
	r->mx[0].probes[1] =
	        (struct report_probe){ .addr = "192.0.2.2", .status = PROBE_NO_STARTTLS };
	verdict_decide(r);
	assert_true(r->mx[0].probes[0].accepted);
	assert_false(r->mx[0].probes[1].accepted);
	assert_true(has(&r->alerts, "192.0.2.2) would fail MTA-STS validation: no-starttls"));
	report_free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_enforcing),
		cmocka_unit_test(test_enforcing_uncovered),
		cmocka_unit_test(test_enforce_none_covered),
		cmocka_unit_test(test_testing_disabled),
		cmocka_unit_test(test_not_configured_and_broken),
		cmocka_unit_test(test_dns_temperror),
		cmocka_unit_test(test_warnings),
		cmocka_unit_test(test_pattern_breadth),
		cmocka_unit_test(test_probe_acceptance),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
