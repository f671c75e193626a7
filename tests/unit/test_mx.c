/* test_mx.c: unit tests for MX host matching against mx patterns (MX-3, RFC 8461 §4.1). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/xmalloc.h"
#include "sts/mx.h"
#include "sts/policy.h"

struct mx_case {
	const char *name;
	const char *pattern;
	const char *host;
	bool want;
};

static const struct mx_case mx_cases[] = {
	/* Exact names. */
	{ "MX-3 exact name matches", "mx1.example.com", "mx1.example.com", true },
	{ "MX-3 exact name ignores host case", "mx1.example.com", "MX1.Example.COM", true },
	{ "MX-3 exact name ignores pattern case", "MX1.EXAMPLE.com", "mx1.example.com", true },
	{ "MX-3 host trailing root dot removed", "mx1.example.com", "mx1.example.com.", true },
	{ "MX-3 only one trailing dot removed", "mx1.example.com", "mx1.example.com..", false },
	{ "MX-3 different name", "mx1.example.com", "mx2.example.com", false },
	{ "MX-3 exact name is not a suffix match", "example.com", "mx.example.com", false },
	{ "MX-3 exact name is not a prefix match", "mx.example.com", "mx.example.com.evil", false },
	{ "MX-3 no partial label suffix", "example.com", "notexample.com", false },
	{ "MX-3 single label", "localhost", "LOCALHOST", true },
	{ "MX-3 case folding is ASCII only", "\xc3\xa4.example", "\xc3\x84.example", false },
	{ "MX-3 pattern is not normalised here", "mx.example.com.", "mx.example.com", false },

	/* Wildcards. */
	{ "MX-3 *.example.com matches one extra label", "*.example.com", "mail.example.com", true },
	{ "MX-3 wildcard ignores case", "*.example.com", "MAIL.EXAMPLE.COM", true },
	{ "MX-3 wildcard pattern case ignored", "*.EXAMPLE.com", "mail.example.COM", true },
	{ "MX-3 wildcard with host trailing dot", "*.example.com", "mail.example.com.", true },
	{ "MX-3 wildcard does not match the bare domain", "*.example.com", "example.com", false },
	{ "MX-3 wildcard does not match two labels", "*.example.com", "foo.bar.example.com",
	  false },
	{ "MX-3 wildcard needs a non-empty label", "*.example.com", ".example.com", false },
	{ "MX-3 wildcard does not match a label suffix", "*.example.com", "mail.notexample.com",
	  false },
	{ "MX-3 wildcard does not match without a dot", "*.example.com", "mailexample.com", false },
	{ "MX-3 wildcard one-label rest", "*.com", "example.com", true },
	{ "MX-3 wildcard one-label rest, two labels", "*.com", "a.example.com", false },

	/* Nothing else matches. */
	{ "MX-1 *. matches nothing", "*.", "a.", false },
	{ "MX-1 *. matches nothing, not even a dot", "*.", ".", false },
	{ "MX-1 lone * matches nothing", "*", "example", false },
	{ "MX-1 *example.com is literal", "*example.com", "mailexample.com", false },
	{ "MX-1 inner wildcard is literal", "mail.*.example.com", "mail.a.example.com", false },
	{ "MX-1 double wildcard is literal", "*.*.example.com", "a.b.example.com", false },
	{ "MX-1 **. is literal", "**.example.com", "a.example.com", false },
	{ "MX-3 empty pattern", "", "example.com", false },
	{ "MX-3 empty host", "example.com", "", false },
	{ "MX-3 root-dot host", "example.com", ".", false },
	{ "MX-3 empty host against wildcard", "*.example.com", "", false },
};

static void
test_mx_case(void **state)
{
	const struct mx_case *c = *state;
	/* Exact-size copies: ASan flags any read past either string. */
	char *pattern = xstrdup(c->pattern), *host = xstrdup(c->host);
	bool got = mx_match(pattern, host);

	free(pattern);
	free(host);
	if (got != c->want)
		fail_msg("%s: mx_match(\"%s\", \"%s\") = %d", c->name, c->pattern, c->host, got);
}

static void
test_mx_null(void **state)
{
	(void)state;
	assert_false(mx_match(NULL, "example.com"));
	assert_false(mx_match("example.com", NULL));
	assert_null(mx_policy_match(NULL, "example.com"));
}

/* MX-3: a host is valid when it matches any pattern; the first match is reported. */
static void
test_mx_policy_match(void **state)
{
	static const char body[] = "version: STSv1\nmode: enforce\nmax_age: 1\n"
	                           "mx: mx1.example.com\nmx: *.example.net\nmx: a.example.net\n";
	struct policy *p = policy_parse(body, sizeof(body) - 1, NULL, NULL);

	(void)state;
	assert_non_null(p);
	assert_string_equal(mx_policy_match(p, "MX1.example.com."), "mx1.example.com");
	assert_string_equal(mx_policy_match(p, "a.example.net"), "*.example.net");
	assert_string_equal(mx_policy_match(p, "b.example.net"), "*.example.net");
	assert_null(mx_policy_match(p, "example.net"));
	assert_null(mx_policy_match(p, "x.a.example.net"));
	assert_null(mx_policy_match(p, "mx2.example.com"));
	policy_free(p);
}

/* mode none with no mx: nothing matches, and nothing crashes. */
static void
test_mx_policy_empty(void **state)
{
	static const char body[] = "version: STSv1\nmode: none\nmax_age: 1\n";
	struct policy *p = policy_parse(body, sizeof(body) - 1, NULL, NULL);

	(void)state;
	assert_non_null(p);
	assert_null(mx_policy_match(p, "mx1.example.com"));
	policy_free(p);
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

int
main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_mx_null),
		cmocka_unit_test(test_mx_policy_match),
		cmocka_unit_test(test_mx_policy_empty),
	};
	size_t n = NELEM(mx_cases) + NELEM(fixed);
	struct CMUnitTest *tests = xcalloc(n, sizeof(*tests));
	size_t t = 0;
	int rc;

	/* One named TAP line per table row, so a failure names the rule it breaks. */
	for (size_t i = 0; i < NELEM(mx_cases); i++)
		tests[t++] = (struct CMUnitTest){ .name = mx_cases[i].name,
			                          .test_func = test_mx_case,
			                          .initial_state = (void *)&mx_cases[i] };
	for (size_t i = 0; i < NELEM(fixed); i++)
		tests[t++] = fixed[i];
	rc = _cmocka_run_group_tests("mx", tests, t, NULL, NULL);
	free(tests);
	return rc;
}
