/* test_domain.c: unit tests for lookup-key normalisation (SEL-1..5, PFX-2). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/xmalloc.h"
#include "sts/domain.h"

#define A10 "aaaaaaaaaa"
#define A53 A10 A10 A10 A10 A10 "aaa"
#define A54 A53 "a"
#define A61 A10 A10 A10 A10 A10 A10 "a"
#define A62 A61 "a"
#define A63 A62 "a"
#define A64 A63 "a"
/* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253, the longest name (RFC 1035). */
#define N253 A63 "." A63 "." A63 "." A61
#define N254 A63 "." A63 "." A63 "." A62
/* "xn--tda" (7) + "." + 3 * 64 + tail: 253 with A53, 254 with A54, once in A-label form. */
#define U253 "\xc3\xbc." A63 "." A63 "." A63 "." A53
#define U254 "\xc3\xbc." A63 "." A63 "." A63 "." A54
/* 58 times U+00FC: "xn--tda" and 57 more 'a', 64 octets. */
#define U10  "\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc"
#define U64L U10 U10 U10 U10 U10 "\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc"

struct domain_case {
	const char *name;
	const char *key;
	size_t len;
	enum domain_result want;
	const char *out; /* on DOMAIN_OK */
	bool idn;        /* needs libidn2: without it the answer is DOMAIN_IDN_INVALID */
};

/* sizeof, not strlen, so that keys may hold NUL bytes. */
#define OK(n, k, o)                                                                                \
	{                                                                                          \
		.name = n, .key = k, .len = sizeof(k) - 1, .want = DOMAIN_OK, .out = o             \
	}
#define NO(n, k, r)                                                                                \
	{                                                                                          \
		.name = n, .key = k, .len = sizeof(k) - 1, .want = r                               \
	}
#define IDN(n, k, r, o)                                                                            \
	{                                                                                          \
		.name = n, .key = k, .len = sizeof(k) - 1, .want = r, .out = o, .idn = true        \
	}

static struct domain_case domain_cases[] = {
	OK("SEL-5 plain name", "example.com", "example.com"),
	OK("SEL-5 fold case, strip trailing dot: Example.COM.", "Example.COM.", "example.com"),
	OK("SEL-5 fold upper case", "MAIL.EXAMPLE.COM", "mail.example.com"),
	OK("SEL-5 single label", "localhost", "localhost"),
	OK("SEL-5 interior hyphen", "a-b.example", "a-b.example"),
	OK("SEL-5 double hyphen in ASCII label", "ab--cd.example", "ab--cd.example"),
	OK("SEL-5 A-label passes LDH", "xn--bcher-kva.example", "xn--bcher-kva.example"),
	OK("SEL-5 label starting with a digit", "0day.example", "0day.example"),
	OK("SEL-2 numeric labels but not a dotted quad", "1.2.3.example", "1.2.3.example"),
	OK("SEL-2 five numeric labels are not a dotted quad", "1.2.3.4.5", "1.2.3.4.5"),
	OK("SEL-5 63-octet label", A63 ".example", A63 ".example"),
	OK("SEL-5 name of exactly 253 octets", N253, N253),
	OK("SEL-5 253 octets plus the trailing dot", N253 ".", N253),
	OK("SEL-1 smart host [relay.example]", "[relay.example]", "relay.example"),
	OK("SEL-1 smart host [relay.example]:587", "[relay.example]:587", "relay.example"),
	OK("SEL-1 [Relay.Example.]:submission", "[Relay.Example.]:submission", "relay.example"),
	OK("SEL-1 host:port relay.example:25", "relay.example:25", "relay.example"),
	OK("SEL-1 host:service relay.example:smtp", "relay.example:smtp", "relay.example"),
	OK("SEL-1 port 65535", "relay.example:65535", "relay.example"),
	OK("SEL-1 port 1", "relay.example:1", "relay.example"),
	OK("SEL-1 15-character service name", "relay.example:abcdefghijklmno", "relay.example"),
	OK("SEL-1 service name with hyphen and digits", "relay.example:x-400", "relay.example"),
	OK("SEL-1 trailing dot before port", "relay.example.:25", "relay.example"),

	NO("SEL-5 empty key", "", DOMAIN_EMPTY),
	NO("SEL-5 only a trailing dot", ".", DOMAIN_EMPTY),
	NO("SEL-1 empty brackets", "[]", DOMAIN_EMPTY),
	NO("SEL-1 empty brackets with port", "[]:25", DOMAIN_EMPTY),
	NO("SEL-1 only a port", ":25", DOMAIN_EMPTY),
	NO("SEL-1 brackets around a dot", "[.]", DOMAIN_EMPTY),

	NO("SEL-3 parent probe .example.com", ".example.com", DOMAIN_PARENT_PROBE),
	NO("SEL-3 parent probe .com", ".com", DOMAIN_PARENT_PROBE),
	NO("SEL-3 parent probe with trailing dot", ".example.com.", DOMAIN_PARENT_PROBE),
	NO("SEL-3 parent probe of a U-label name",
	   ".b\xc3\xbc"
	   "cher.example",
	   DOMAIN_PARENT_PROBE),

	NO("SEL-2 [192.0.2.1]", "[192.0.2.1]", DOMAIN_ADDRESS_LITERAL),
	NO("SEL-2 [192.0.2.1]:25", "[192.0.2.1]:25", DOMAIN_ADDRESS_LITERAL),
	NO("SEL-2 [ipv6:2001:db8::1]", "[ipv6:2001:db8::1]", DOMAIN_ADDRESS_LITERAL),
	NO("SEL-2 [IPv6:2001:db8::1]:25", "[IPv6:2001:db8::1]:25", DOMAIN_ADDRESS_LITERAL),
	NO("SEL-2 [2001:db8::1]", "[2001:db8::1]", DOMAIN_ADDRESS_LITERAL),
	NO("SEL-2 bare 192.0.2.1", "192.0.2.1", DOMAIN_ADDRESS_LITERAL),
	NO("SEL-2 bare 192.0.2.1 with trailing dot", "192.0.2.1.", DOMAIN_ADDRESS_LITERAL),
	NO("SEL-2 bare 192.0.2.1:25", "192.0.2.1:25", DOMAIN_ADDRESS_LITERAL),
	NO("SEL-2 bare 2001:db8::1", "2001:db8::1", DOMAIN_ADDRESS_LITERAL),
	NO("SEL-2 bare ::1", "::1", DOMAIN_ADDRESS_LITERAL),
	NO("SEL-2 bare ::ffff:192.0.2.1", "::ffff:192.0.2.1", DOMAIN_ADDRESS_LITERAL),

	NO("SEL-5 space inside: exa mple.com", "exa mple.com", DOMAIN_BAD_CHAR),
	NO("SEL-5 trailing space", "example.com ", DOMAIN_BAD_CHAR),
	NO("SEL-5 leading HTAB", "\texample.com", DOMAIN_BAD_CHAR),
	NO("SEL-5 CRLF", "example.com\r\n", DOMAIN_BAD_CHAR),
	NO("SEL-5 space after the port", "relay.example:25 ", DOMAIN_BAD_CHAR),
	NO("SEL-5 space inside an address literal", "[2001:db8::1 ]", DOMAIN_BAD_CHAR),
	NO("SEL-5 DEL byte", "exam\x7fple.com", DOMAIN_BAD_CHAR),
	NO("SEL-5 embedded NUL", "exa\0mple.com", DOMAIN_BAD_CHAR),
	NO("SEL-5 trailing NUL", "example.com\0", DOMAIN_BAD_CHAR),
	NO("SEL-5 underscore: _mta-sts.example.com", "_mta-sts.example.com", DOMAIN_BAD_CHAR),
	NO("SEL-5 underscore inside a label", "exa_mple.com", DOMAIN_BAD_CHAR),
	NO("SEL-5 wildcard is not a name", "*.example.com", DOMAIN_BAD_CHAR),
	NO("SEL-5 slash", "example.com/x", DOMAIN_BAD_CHAR),
	NO("SEL-5 at sign", "user@example.com", DOMAIN_BAD_CHAR),
	NO("SEL-1 unclosed bracket", "[relay.example", DOMAIN_BAD_CHAR),
	NO("SEL-1 junk after bracket", "[relay.example]x", DOMAIN_BAD_CHAR),
	NO("SEL-1 stray closing bracket", "relay]example", DOMAIN_BAD_CHAR),
	NO("SEL-1 nested brackets", "[[relay.example]]", DOMAIN_BAD_CHAR),

	NO("SEL-5 empty label a..b", "a..b", DOMAIN_BAD_LABEL),
	NO("SEL-5 leading hyphen -a.com", "-a.com", DOMAIN_BAD_LABEL),
	NO("SEL-5 trailing hyphen a-.com", "a-.com", DOMAIN_BAD_LABEL),
	NO("SEL-5 hyphen-led inner label", "a.-b.com", DOMAIN_BAD_LABEL),
	NO("SEL-5 64-octet label", A64 ".example", DOMAIN_BAD_LABEL),
	NO("SEL-5 only one trailing dot is stripped", "example.com..", DOMAIN_BAD_LABEL),
	NO("SEL-1 brackets are one lookup, no parent probe", "[.example.com]", DOMAIN_BAD_LABEL),

	NO("SEL-5 name of 254 octets", N254, DOMAIN_TOO_LONG),
	NO("SEL-5 name of 254 octets plus trailing dot", N254 ".", DOMAIN_TOO_LONG),

	NO("PFX-2 host: with empty port", "relay.example:", DOMAIN_BAD_PORT),
	NO("PFX-2 [host]: with empty port", "[relay.example]:", DOMAIN_BAD_PORT),
	NO("PFX-2 port 0", "relay.example:0", DOMAIN_BAD_PORT),
	NO("PFX-2 port 65536", "relay.example:65536", DOMAIN_BAD_PORT),
	NO("PFX-2 port of six digits", "relay.example:000025", DOMAIN_BAD_PORT),
	NO("PFX-2 service name of 16 characters", "relay.example:abcdefghijklmnop",
	   DOMAIN_BAD_PORT),
	NO("PFX-2 service name starting with hyphen", "relay.example:-smtp", DOMAIN_BAD_PORT),
	NO("PFX-2 service name ending with hyphen", "relay.example:smtp-", DOMAIN_BAD_PORT),
	NO("PFX-2 service name with double hyphen", "relay.example:a--b", DOMAIN_BAD_PORT),
	NO("PFX-2 digits and hyphen, no letter", "relay.example:1-2", DOMAIN_BAD_PORT),
	NO("PFX-2 port with punctuation", "relay.example:25!", DOMAIN_BAD_PORT),
	NO("PFX-2 non-ASCII port", "relay.example:\xc3\xbc", DOMAIN_BAD_PORT),
	NO("PFX-2 bracketed host with bad port", "[relay.example]:smtp.x", DOMAIN_BAD_PORT),

	NO("SEL-4 invalid UTF-8 byte 0xff", "\xff.example", DOMAIN_BAD_UTF8),
	NO("SEL-4 truncated sequence", "b\xc3.example", DOMAIN_BAD_UTF8),
	NO("SEL-4 truncated at end of key", "example.b\xc3", DOMAIN_BAD_UTF8),
	NO("SEL-4 bad continuation byte", "b\xc3(.example", DOMAIN_BAD_UTF8),
	NO("SEL-4 overlong encoding of '/'", "\xc0\xaf.example", DOMAIN_BAD_UTF8),
	NO("SEL-4 overlong three-byte form", "\xe0\x80\xaf.example", DOMAIN_BAD_UTF8),
	NO("SEL-4 UTF-16 surrogate", "\xed\xa0\x80.example", DOMAIN_BAD_UTF8),
	NO("SEL-4 code point above U+10FFFF", "\xf4\x90\x80\x80.example", DOMAIN_BAD_UTF8),
	NO("SEL-4 lone continuation byte", "\x80.example", DOMAIN_BAD_UTF8),

	IDN("SEL-4 U-label to A-label: bücher.example",
	    "b\xc3\xbc"
	    "cher.example",
	    DOMAIN_OK, "xn--bcher-kva.example"),
	IDN("SEL-4 U-label with upper case and trailing dot: BÜCHER.Example.",
	    "B\xc3\x9c"
	    "CHER.Example.",
	    DOMAIN_OK, "xn--bcher-kva.example"),
	IDN("SEL-4 non-transitional: faß.de keeps the sharp s", "fa\xc3\x9f.de", DOMAIN_OK,
	    "xn--fa-hia.de"),
	IDN("SEL-1 SEL-4 bracketed U-label with port",
	    "[b\xc3\xbc"
	    "cher.example]:587",
	    DOMAIN_OK, "xn--bcher-kva.example"),
	IDN("SEL-4 U+3002 ideographic full stop separates labels",
	    "b\xc3\xbc"
	    "cher\xe3\x80\x82"
	    "example",
	    DOMAIN_OK, "xn--bcher-kva.example"),
	IDN("SEL-2 SEL-4 superscript two maps to a dotted quad",
	    "12.0.\xc2\xb2"
	    "2.1",
	    DOMAIN_ADDRESS_LITERAL, NULL),
	IDN("SEL-2 SEL-4 fullwidth digits map to a dotted quad",
	    "\xef\xbc\x91\xef\xbc\x99\xef\xbc\x92.0.2.1", DOMAIN_ADDRESS_LITERAL, NULL),
	IDN("SEL-4 A-label name of exactly 253 octets", U253, DOMAIN_OK,
	    "xn--tda." A63 "." A63 "." A63 "." A53),
	IDN("SEL-4 A-label name of 254 octets", U254, DOMAIN_TOO_LONG, NULL),
	IDN("SEL-4 U-label whose A-label is over 63 octets", U64L ".example", DOMAIN_BAD_LABEL,
	    NULL),
	IDN("SEL-4 IDNA2008 disallowed symbol U+2603", "\xe2\x98\x83.example", DOMAIN_IDN_INVALID,
	    NULL),
	IDN("SEL-4 ZWJ outside its CONTEXTJ rule",
	    "a\xe2\x80\x8d"
	    "b.example",
	    DOMAIN_IDN_INVALID, NULL),
	IDN("SEL-4 U-label with leading hyphen",
	    "-b\xc3\xbc"
	    "cher.example",
	    DOMAIN_IDN_INVALID, NULL),
	IDN("SEL-5 A-label form re-checked: underscore survives UTS 46",
	    "_b\xc3\xbc"
	    "cher.example",
	    DOMAIN_BAD_CHAR, NULL),
	IDN("SEL-5 A-label form re-checked: trailing U+3002 leaves an empty label",
	    "b\xc3\xbc"
	    "cher.example\xe3\x80\x82",
	    DOMAIN_BAD_LABEL, NULL),
};

static char *
copy_exact(const char *s, size_t len)
{
	/* An exact-size copy without a NUL lets ASan catch any read past len. */
	char *p = xmalloc(len);

	if (len > 0)
		memcpy(p, s, len);
	return p;
}

#ifdef HAVE_IDN2
static const bool have_idn = true;
#else
static const bool have_idn = false;
#endif

static enum domain_result
expected_result(const struct domain_case *c)
{
	return c->idn && !have_idn ? DOMAIN_IDN_INVALID : c->want;
}

static void
test_domain_case(void **state)
{
	const struct domain_case *c = *state;
	enum domain_result want = expected_result(c);
	char out[DOMAIN_NAME_MAX + 1];
	char *key = copy_exact(c->key, c->len);
	enum domain_result got = domain_normalise(key, c->len, out);

	free(key);
	if (got != want)
		fail_msg("key case \"%s\": got %s, want %s", c->name, domain_result_str(got),
		         domain_result_str(want));
	if (want != DOMAIN_OK)
		return;
	assert_string_equal(out, c->out);
	/* A Policy Domain is a fixed point and plain LDH, whatever form the key came in. */
	assert_true(domain_is_ldh(out, strlen(out)));
	char again[DOMAIN_NAME_MAX + 1];
	assert_int_equal(domain_normalise(out, strlen(out), again), DOMAIN_OK);
	assert_string_equal(again, out);
}

struct pred_case {
	const char *name;
	const char *s;
	size_t len;
	bool want;
};

#define P(n, str, w)                                                                               \
	{                                                                                          \
		.name = n, .s = str, .len = sizeof(str) - 1, .want = w                             \
	}

static struct pred_case ldh_cases[] = {
	P("ldh: plain name", "example.com", true),
	P("ldh: case is not folded or checked", "Example.COM", true),
	P("ldh: single label", "a", true),
	P("ldh: empty", "", false),
	P("ldh: trailing dot", "example.com.", false),
	P("ldh: leading dot", ".example.com", false),
	P("ldh: empty label", "a..b", false),
	P("ldh: underscore", "a_b.example", false),
	P("ldh: leading hyphen", "-a.example", false),
	P("ldh: trailing hyphen", "a-.example", false),
	P("ldh: wildcard", "*.example", false),
	P("ldh: U-label",
	  "b\xc3\xbc"
	  "cher.example",
	  false),
	P("ldh: 63-octet label", A63, true),
	P("ldh: 64-octet label", A64, false),
	P("ldh: 253 octets", N253, true),
	P("ldh: 254 octets", N254, false),
	P("ldh: NUL", "a\0b", false),
};

static struct pred_case ip_cases[] = {
	P("ip: dotted quad", "192.0.2.1", true),
	P("ip: dotted quad shape, out of range", "999.0.0.1", true),
	P("ip: IPv6", "2001:db8::1", true),
	P("ip: IPv6 loopback", "::1", true),
	P("ip: tagged literal", "IPv6:2001:db8::1", true),
	P("ip: three parts", "192.0.2", false),
	P("ip: five parts", "192.0.2.1.5", false),
	P("ip: four-digit part", "1920.0.2.1", false),
	P("ip: letter in a part", "192.0.2.a", false),
	P("ip: empty part", "192..2.1", false),
	P("ip: trailing dot is the caller's to strip", "192.0.2.1.", false),
	P("ip: host name", "example.com", false),
	P("ip: empty", "", false),
};

static void
test_ldh_case(void **state)
{
	const struct pred_case *c = *state;
	char *s = copy_exact(c->s, c->len);
	bool got = domain_is_ldh(s, c->len);

	free(s);
	if (got != c->want)
		fail_msg("%s: got %d", c->name, got);
}

static void
test_ip_case(void **state)
{
	const struct pred_case *c = *state;
	char *s = copy_exact(c->s, c->len);
	bool got = domain_is_ip_literal(s, c->len);

	free(s);
	if (got != c->want)
		fail_msg("%s: got %d", c->name, got);
}

/* Input length bounds the work: a huge key is refused whole, before libidn2 sees it. */
static void
test_domain_huge_key(void **state)
{
	static const size_t sizes[] = { 1025, 4096, 1 << 20 };
	char out[DOMAIN_NAME_MAX + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char *key = xmalloc(sizes[i]);

		/* U-labels throughout, so only the length cap can refuse it. */
		for (size_t k = 0; k + 1 < sizes[i]; k += 2)
			memcpy(key + k, "\xc3\xbc", 2);
		key[sizes[i] - 1] = 'a';
		assert_int_equal(domain_normalise(key, sizes[i], out), DOMAIN_TOO_LONG);
		free(key);
	}
}

/* UTS 46 deletes U+00AD, so a key much longer than its result still converts (SEL-4). */
static void
test_domain_idn_ignored_code_points(void **state)
{
	char key[2 + 300 * 2 + 8];
	char out[DOMAIN_NAME_MAX + 1];

	(void)state;
	memcpy(key, "ab", 2);
	for (size_t i = 0; i < 300; i++)
		memcpy(key + 2 + 2 * i, "\xc2\xad", 2);
	memcpy(key + 2 + 600, ".example", 8);
#ifdef HAVE_IDN2
	assert_int_equal(domain_normalise(key, sizeof(key), out), DOMAIN_OK);
	assert_string_equal(out, "ab.example");
#else
	assert_int_equal(domain_normalise(key, sizeof(key), out), DOMAIN_IDN_INVALID);
#endif
}

static void
test_domain_result_str(void **state)
{
	(void)state;
	for (int r = DOMAIN_OK; r <= DOMAIN_IDN_INVALID; r++) {
		const char *s = domain_result_str((enum domain_result)r);

		assert_non_null(s);
		assert_string_not_equal(s, "unknown");
		for (int k = DOMAIN_OK; k < r; k++)
			assert_string_not_equal(s, domain_result_str((enum domain_result)k));
	}
	assert_string_equal(domain_result_str((enum domain_result)99), "unknown");
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

int
main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_domain_huge_key),
		cmocka_unit_test(test_domain_idn_ignored_code_points),
		cmocka_unit_test(test_domain_result_str),
	};
	size_t n = NELEM(domain_cases) + NELEM(ldh_cases) + NELEM(ip_cases) + NELEM(fixed);
	struct CMUnitTest *tests = xcalloc(n, sizeof(*tests));
	size_t t = 0;
	int rc;

	/* One named TAP line per table row, so a failure names the rule it breaks. */
	for (size_t i = 0; i < NELEM(domain_cases); i++)
		tests[t++] = (struct CMUnitTest){ .name = domain_cases[i].name,
			                          .test_func = test_domain_case,
			                          .initial_state = &domain_cases[i] };
	for (size_t i = 0; i < NELEM(ldh_cases); i++)
		tests[t++] = (struct CMUnitTest){ .name = ldh_cases[i].name,
			                          .test_func = test_ldh_case,
			                          .initial_state = &ldh_cases[i] };
	for (size_t i = 0; i < NELEM(ip_cases); i++)
		tests[t++] = (struct CMUnitTest){ .name = ip_cases[i].name,
			                          .test_func = test_ip_case,
			                          .initial_state = &ip_cases[i] };
	for (size_t i = 0; i < NELEM(fixed); i++)
		tests[t++] = fixed[i];
	rc = _cmocka_run_group_tests("domain", tests, t, NULL, NULL);
	free(tests);
	return rc;
}
