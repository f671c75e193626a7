/* test_policy.c: unit tests for the MTA-STS policy file parser (POL-1..8, MX-1, MX-4). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/xmalloc.h"
#include "sts/policy.h"

/* The three required fields; each case adds mode and mx lines around them. */
#define V  "version: STSv1\n"
#define M  "mode: enforce\n"
#define A  "max_age: 86400\n"
#define X1 "mx: mx1.example.com\n"
/* A valid enforce policy. */
#define GOOD V M X1 A

#define W_CLAMP POLICY_WARN_MAX_AGE_CLAMPED
#define W_EMPTY POLICY_WARN_EMPTY_LINE
#define W_DOT   POLICY_WARN_TRAILING_DOT
#define W_IP    POLICY_WARN_IP_DROPPED
#define W_DUP   POLICY_WARN_DUPLICATE
#define W_DUPMX POLICY_WARN_DUPLICATE_MX

struct policy_case {
	const char *name;
	const char *body;
	size_t len;
	enum policy_error err;
	size_t line;           /* on error */
	enum policy_mode mode; /* on success, as are the rest */
	uint32_t max_age;
	uint32_t warnings; /* exact set of bits */
	const char *mx;    /* stored patterns joined by single spaces */
};

/* sizeof, not strlen, so that bodies may hold NUL bytes. */
#define OK(n, b, md, age, w, x)                                                                    \
	{                                                                                          \
		.name = n, .body = b, .len = sizeof(b) - 1, .err = POLICY_ERR_NONE, .mode = md,    \
		.max_age = age, .warnings = w, .mx = x                                             \
	}
#define NO(n, b, e, l)                                                                             \
	{                                                                                          \
		.name = n, .body = b, .len = sizeof(b) - 1, .err = e, .line = l                    \
	}

#define ENF POLICY_MODE_ENFORCE
#define TST POLICY_MODE_TESTING
#define NON POLICY_MODE_NONE

#define A32 "abcdefghij0123456789ABCDEFGHIJ_."
#define L63 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static const struct policy_case policy_cases[] = {
	/* POL-4, POL-6.1, POL-6.2: terminators. */
	OK("POL-4 LF-terminated enforce policy", GOOD, ENF, 86400, 0, "mx1.example.com"),
	OK("POL-6.1 CRLF terminators accepted",
	   "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmax_age: 86400\r\n", ENF,
	   86400, 0, "mx1.example.com"),
	OK("POL-6.1 LF and CRLF mixed in one file",
	   "version: STSv1\r\nmode: enforce\nmx: mx1.example.com\r\nmax_age: 86400\n", ENF, 86400,
	   0, "mx1.example.com"),
	NO("POL-6.1 bare CR is not a terminator",
	   "version: STSv1\rmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n",
	   POLICY_ERR_BAD_LINE, 1),
	NO("POL-6.1 bare CR at end of body is not a terminator", V M X1 "max_age: 86400\r",
	   POLICY_ERR_BAD_LINE, 4),
	NO("POL-6.1 CR CR LF leaves a CR in the value", "version: STSv1\r\r\n" M X1 A,
	   POLICY_ERR_BAD_LINE, 1),
	NO("POL-6.1 CR-only file is one line", "version: STSv1\rmode: enforce\rmax_age: 1\r",
	   POLICY_ERR_BAD_LINE, 1),
	OK("POL-6.2 no final newline", V M X1 "max_age: 86400", ENF, 86400, 0, "mx1.example.com"),
	OK("POL-6.2 no final CRLF", "version: STSv1\r\nmode: none\r\nmax_age: 5", NON, 5, 0, ""),

	/* POL-6.3: whitespace. */
	NO("POL-6.3 SP before a key", V " mode: enforce\n" X1 A, POLICY_ERR_BAD_LINE, 2),
	NO("POL-6.3 HTAB before a key", V "\tmode: enforce\n" X1 A, POLICY_ERR_BAD_LINE, 2),
	NO("POL-6.3 SP between key and colon", V "mode : enforce\n" X1 A, POLICY_ERR_BAD_LINE, 2),
	NO("POL-6.3 HTAB between key and colon", V "mode\t: enforce\n" X1 A, POLICY_ERR_BAD_LINE,
	   2),
	OK("POL-6.3 no WSP after colon",
	   "version:STSv1\nmode:enforce\nmx:mx1.example.com\n"
	   "max_age:86400\n",
	   ENF, 86400, 0, "mx1.example.com"),
	OK("POL-6.3 SP and HTAB after colon",
	   "version: \t STSv1\nmode:\t\tenforce\n"
	   "mx:\t mx1.example.com\nmax_age: \t86400\n",
	   ENF, 86400, 0, "mx1.example.com"),
	OK("POL-6.3 trailing WSP after values",
	   "version: STSv1 \nmode: enforce\t\n"
	   "mx: mx1.example.com \t \nmax_age: 86400  \n",
	   ENF, 86400, 0, "mx1.example.com"),
	OK("POL-6.3 trailing WSP before CRLF",
	   "version: STSv1 \r\nmode: enforce\t\r\n"
	   "mx: mx1.example.com \r\nmax_age: 86400 \r\n",
	   ENF, 86400, 0, "mx1.example.com"),

	/* POL-6.4: case-sensitive keys and values. */
	NO("POL-6.4 Mode: is an ignored extension, so mode is missing", V "Mode: enforce\n" X1 A,
	   POLICY_ERR_NO_MODE, 0),
	NO("POL-6.4 VERSION: is an extension, so version is missing", "VERSION: STSv1\n" M X1 A,
	   POLICY_ERR_NO_VERSION, 0),
	NO("POL-6.4 Max_Age: is an extension, so max_age is missing", V M X1 "Max_Age: 1\n",
	   POLICY_ERR_NO_MAX_AGE, 0),
	NO("POL-6.4 MX: is an extension, so enforce has no mx", V M "MX: mx1.example.com\n" A,
	   POLICY_ERR_NO_MX, 0),
	NO("POL-6.4 version value is case-sensitive", "version: stsv1\n" M X1 A,
	   POLICY_ERR_BAD_VERSION, 1),
	NO("POL-6.4 mode value is case-sensitive", V "mode: Enforce\n" X1 A, POLICY_ERR_BAD_MODE,
	   2),
	NO("POL-6.4 STSv10 is not STSv1", "version: STSv10\n" M X1 A, POLICY_ERR_BAD_VERSION, 1),
	NO("POL-6.4 mode enforced is not enforce", V "mode: enforced\n" X1 A, POLICY_ERR_BAD_MODE,
	   2),

	/* POL-6.5, POL-6.6: required fields, order. */
	NO("POL-6.5 empty body has no version", "", POLICY_ERR_NO_VERSION, 0),
	NO("POL-6.5 version missing", M X1 A, POLICY_ERR_NO_VERSION, 0),
	NO("POL-6.5 mode missing", V X1 A, POLICY_ERR_NO_MODE, 0),
	NO("POL-6.5 max_age missing", V M X1, POLICY_ERR_NO_MAX_AGE, 0),
	NO("POL-6.5 enforce without mx", V M A, POLICY_ERR_NO_MX, 0),
	NO("POL-6.5 testing without mx", V "mode: testing\n" A, POLICY_ERR_NO_MX, 0),
	OK("POL-6.5 none without mx", V "mode: none\n" A, NON, 86400, 0, ""),
	OK("POL-6.5 testing with mx", V "mode: testing\n" X1 A, TST, 86400, 0, "mx1.example.com"),
	OK("POL-6.5 none keeps its valid mx", V "mode: none\n" X1 A, NON, 86400, 0,
	   "mx1.example.com"),
	OK("POL-6.6 field order is free", X1 "mx: mx2.example.com\n" A M V, ENF, 86400, 0,
	   "mx1.example.com mx2.example.com"),

	/* POL-5, POL-6.7: extensions. */
	OK("POL-5 unknown field ignored", V M "foo: bar\n" X1 A, ENF, 86400, 0, "mx1.example.com"),
	OK("POL-6.7 extension name of 32 characters", V M A32 ": x\n" X1 A, ENF, 86400, 0,
	   "mx1.example.com"),
	NO("POL-6.7 extension name of 33 characters", V M A32 "x: x\n" X1 A, POLICY_ERR_BAD_LINE,
	   3),
	OK("POL-6.7 extension name may start with a digit", V M "1st-ext.v_2: x\n" X1 A, ENF, 86400,
	   0, "mx1.example.com"),
	NO("POL-6.7 extension name may not start with _", V M "_ext: x\n" X1 A, POLICY_ERR_BAD_LINE,
	   3),
	NO("POL-6.7 extension name may not start with -", V M "-ext: x\n" X1 A, POLICY_ERR_BAD_LINE,
	   3),
	NO("POL-6.7 extension name may not hold /", V M "a/b: x\n" X1 A, POLICY_ERR_BAD_LINE, 3),
	OK("POL-6.7 extension value may contain ':'", V M "report: https://x.example:8443/y\n" X1 A,
	   ENF, 86400, 0, "mx1.example.com"),
	OK("POL-6.7 extension value may contain inner spaces", V M "note: a  b c\n" X1 A, ENF,
	   86400, 0, "mx1.example.com"),
	OK("POL-6.7 extension value may be UTF-8",
	   V M "note: gr\xc3\xbc\xc3\x9f \xf0\x9f\x93\xa7\n" X1 A, ENF, 86400, 0,
	   "mx1.example.com"),
	OK("POL-6.7 extension value may contain braces and '='", V M "x: {a=b} ,c\n" X1 A, ENF,
	   86400, 0, "mx1.example.com"),
	NO("POL-6.7 extension value with inner HTAB", V M "note: a\tb\n" X1 A, POLICY_ERR_BAD_LINE,
	   3),
	NO("POL-6.7 extension value with DEL", V M "note: a\x7f\n" X1 A, POLICY_ERR_BAD_LINE, 3),
	NO("POL-6.7 extension value with ESC", V M "note: \x1b[0m\n" X1 A, POLICY_ERR_BAD_LINE, 3),
	NO("POL-6.7 empty extension value", V M "note:\n" X1 A, POLICY_ERR_BAD_LINE, 3),
	NO("POL-6.7 WSP-only extension value", V M "note: \t \n" X1 A, POLICY_ERR_BAD_LINE, 3),
	NO("POL-6.11 line without a colon", V M "garbage\n" X1 A, POLICY_ERR_BAD_LINE, 3),
	NO("POL-6.11 HTML instead of a policy", "<html><body>nope</body></html>\n",
	   POLICY_ERR_BAD_LINE, 1),
	NO("POL-6.11 comment after mode value", V "mode: enforce # c\n" X1 A, POLICY_ERR_BAD_MODE,
	   2),
	NO("POL-6.11 comment line", "# policy\n" V M X1 A, POLICY_ERR_BAD_LINE, 1),
	NO("POL-6.11 lone colon", V M ":\n" X1 A, POLICY_ERR_BAD_LINE, 3),

	/* POL-5, POL-6.8: duplicates. */
	OK("POL-6.8 later mode: bogus ignored unchecked", V M "mode: bogus\n" X1 A, ENF, 86400,
	   W_DUP, "mx1.example.com"),
	OK("POL-6.8 first mode wins over a later valid one", V M "mode: none\n" X1 A, ENF, 86400,
	   W_DUP, "mx1.example.com"),
	OK("POL-6.8 later version ignored unchecked", V "version: STSv2\n" M X1 A, ENF, 86400,
	   W_DUP, "mx1.example.com"),
	OK("POL-6.8 later max_age ignored unchecked", V M X1 A "max_age: -1 days\n", ENF, 86400,
	   W_DUP, "mx1.example.com"),
	OK("POL-6.8 first max_age wins", V M X1 "max_age: 60\n" A, ENF, 60, W_DUP,
	   "mx1.example.com"),
	NO("POL-6.8 a bad first mode is not rescued by a later one", V "mode: bogus\n" M X1 A,
	   POLICY_ERR_BAD_MODE, 2),
	NO("POL-6.8 a duplicate must still be a name:value line", V M "mode:\n" X1 A,
	   POLICY_ERR_BAD_LINE, 3),
	OK("POL-5 mx repeats", V M X1 "mx: mx2.example.com\nmx: mx3.example.com\n" A, ENF, 86400, 0,
	   "mx1.example.com mx2.example.com mx3.example.com"),

	/* POL-6.9: bytes. */
	NO("POL-6.9 NUL byte in a value", V "mode: enf\0rce\n" X1 A, POLICY_ERR_BAD_LINE, 2),
	NO("POL-6.9 NUL byte alone on a line", V M "\0\n" X1 A, POLICY_ERR_BAD_LINE, 3),
	NO("POL-6.9 UTF-8 BOM makes the first key invalid", "\xef\xbb\xbf" GOOD,
	   POLICY_ERR_BAD_LINE, 1),
	NO("POL-6.9 invalid UTF-8 byte", V M "note: \xff\n" X1 A, POLICY_ERR_BAD_UTF8, 3),
	NO("POL-6.9 Latin-1 byte is not UTF-8", V M "note: gr\xfc\xdf\n" X1 A, POLICY_ERR_BAD_UTF8,
	   3),
	NO("POL-6.9 overlong UTF-8", V M "note: \xc0\xaf\n" X1 A, POLICY_ERR_BAD_UTF8, 3),
	NO("POL-6.9 UTF-8 surrogate", V M "note: \xed\xa0\x80\n" X1 A, POLICY_ERR_BAD_UTF8, 3),
	NO("POL-6.9 UTF-8 above U+10FFFF", V M "note: \xf4\x90\x80\x80\n" X1 A, POLICY_ERR_BAD_UTF8,
	   3),
	NO("POL-6.9 UTF-8 cut at end of body", V M X1 A "note: \xe2\x82", POLICY_ERR_BAD_UTF8, 5),
	NO("POL-6.9 UTF-8 lead byte before LF", V M "note: \xc3\n" X1 A, POLICY_ERR_BAD_UTF8, 3),
	NO("POL-6.9 invalid UTF-8 in a key",
	   V "m\xc3\xb6"
	     "de: enforce\n" X1 A,
	   POLICY_ERR_BAD_LINE, 2),

	/* POL-6.10: empty lines. */
	OK("POL-6.10 empty line ignored with a warning", V M "\n" X1 A, ENF, 86400, W_EMPTY,
	   "mx1.example.com"),
	OK("POL-6.10 WSP-only line ignored with a warning", V M " \t \n" X1 A, ENF, 86400, W_EMPTY,
	   "mx1.example.com"),
	OK("POL-6.10 CRLF empty line", "version: STSv1\r\n\r\nmode: enforce\r\n" X1 A, ENF, 86400,
	   W_EMPTY, "mx1.example.com"),
	OK("POL-6.10 trailing empty line", GOOD "\n", ENF, 86400, W_EMPTY, "mx1.example.com"),
	OK("POL-6.10 leading empty line", "\n" GOOD, ENF, 86400, W_EMPTY, "mx1.example.com"),
	NO("POL-6.10 empty lines count in error line numbers", "\n\n" V "bad\n" M X1 A,
	   POLICY_ERR_BAD_LINE, 4),
	NO("POL-6.10 only empty lines", "\n\n \n", POLICY_ERR_NO_VERSION, 0),

	/* POL-7: max_age. */
	OK("POL-7 max_age 0 is valid", V M X1 "max_age: 0\n", ENF, 0, 0, "mx1.example.com"),
	OK("POL-7 max_age 31557600 kept", V M X1 "max_age: 31557600\n", ENF, 31557600, 0,
	   "mx1.example.com"),
	OK("POL-7 max_age 31557601 clamped with a warning", V M X1 "max_age: 31557601\n", ENF,
	   31557600, W_CLAMP, "mx1.example.com"),
	OK("POL-7 max_age 9999999999 clamped", V M X1 "max_age: 9999999999\n", ENF, 31557600,
	   W_CLAMP, "mx1.example.com"),
	OK("POL-7 max_age 4294967296 clamped, not wrapped to 0", V M X1 "max_age: 4294967296\n",
	   ENF, 31557600, W_CLAMP, "mx1.example.com"),
	OK("POL-7 max_age 4294967295 clamped", V M X1 "max_age: 4294967295\n", ENF, 31557600,
	   W_CLAMP, "mx1.example.com"),
	OK("POL-7 max_age 4294967297 clamped, not wrapped to 1", V M X1 "max_age: 4294967297\n",
	   ENF, 31557600, W_CLAMP, "mx1.example.com"),
	OK("POL-7 leading zeros", V M X1 "max_age: 0086400\n", ENF, 86400, 0, "mx1.example.com"),
	OK("POL-7 ten digits with leading zeros", V M X1 "max_age: 0000000001\n", ENF, 1, 0,
	   "mx1.example.com"),
	NO("POL-7 eleven digits", V M X1 "max_age: 10000000000\n", POLICY_ERR_BAD_MAX_AGE, 4),
	NO("POL-7 eleven digits of leading zeros", V M X1 "max_age: 00000000001\n",
	   POLICY_ERR_BAD_MAX_AGE, 4),
	NO("POL-7 negative", V M X1 "max_age: -1\n", POLICY_ERR_BAD_MAX_AGE, 4),
	NO("POL-7 plus sign", V M X1 "max_age: +5\n", POLICY_ERR_BAD_MAX_AGE, 4),
	NO("POL-7 unit suffix d", V M X1 "max_age: 1d\n", POLICY_ERR_BAD_MAX_AGE, 4),
	NO("POL-7 unit suffix s", V M X1 "max_age: 86400s\n", POLICY_ERR_BAD_MAX_AGE, 4),
	NO("POL-7 hex", V M X1 "max_age: 0x10\n", POLICY_ERR_BAD_MAX_AGE, 4),
	NO("POL-7 inner space", V M X1 "max_age: 86 400\n", POLICY_ERR_BAD_MAX_AGE, 4),
	NO("POL-7 decimal point", V M X1 "max_age: 86400.0\n", POLICY_ERR_BAD_MAX_AGE, 4),

	/* MX-1: pattern syntax. */
	OK("MX-1 wildcard pattern kept with its *.", V M "mx: *.example.com\n" A, ENF, 86400, 0,
	   "*.example.com"),
	OK("MX-1 single-label pattern", V M "mx: localhost\n" A, ENF, 86400, 0, "localhost"),
	OK("MX-1 A-label pattern", V M "mx: mx.xn--bcher-kva.example\n" A, ENF, 86400, 0,
	   "mx.xn--bcher-kva.example"),
	OK("MX-1 63-octet label", V M "mx: " L63 ".example\n" A, ENF, 86400, 0, L63 ".example"),
	NO("MX-1 64-octet label", V M "mx: a" L63 ".example\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 *example.com", V M "mx: *example.com\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 mail.*.example.com", V M "mx: mail.*.example.com\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 *.*.example.com", V M "mx: *.*.example.com\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 **.example.com", V M "mx: **.example.com\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 lone *", V M "mx: *\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 *.", V M "mx: *.\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 example.* ", V M "mx: example.*\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 leading dot", V M "mx: .example.com\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 empty label", V M "mx: mx..example.com\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 two trailing dots", V M "mx: mx.example.com..\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 lone dot", V M "mx: .\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 leading hyphen in a label", V M "mx: -mx.example.com\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 underscore", V M "mx: mx_1.example.com\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 port", V M "mx: mx1.example.com:25\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 bracketed address", V M "mx: [192.0.2.25]\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 U-label",
	   V M "mx: mx.b\xc3\xbc"
	       "cher.example\n" A,
	   POLICY_ERR_BAD_MX, 3),
	NO("MX-2 comma-separated list", V M "mx: mx1.example.com,mx2.example.com\n" A,
	   POLICY_ERR_BAD_MX, 3),
	NO("MX-2 space-separated list", V M "mx: mx1.example.com mx2.example.com\n" A,
	   POLICY_ERR_BAD_MX, 3),
	NO("MX-1 injection attempt: mx: a tafile=/x", V M "mx: a tafile=/x\n" A, POLICY_ERR_BAD_MX,
	   3),
	NO("MX-1 injection attempt: mx: a:b", V M "mx: a:b\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 injection attempt: braces", V M "mx: {a}\n" A, POLICY_ERR_BAD_MX, 3),
	NO("MX-1 one bad pattern spoils the policy", V M X1 "mx: *bad.example\n" A,
	   POLICY_ERR_BAD_MX, 4),
	NO("MX-1 bad pattern in mode none still invalid", V "mode: none\nmx: *\n" A,
	   POLICY_ERR_BAD_MX, 3),
	OK("MX-1 trailing dot stripped with a warning", V M "mx: mx1.example.com.\n" A, ENF, 86400,
	   W_DOT, "mx1.example.com"),
	OK("MX-1 trailing dot stripped from a wildcard", V M "mx: *.example.com.\n" A, ENF, 86400,
	   W_DOT, "*.example.com"),
	OK("MX-1 IPv4 pattern dropped with a warning", V M "mx: 192.0.2.25\n" X1 A, ENF, 86400,
	   W_IP, "mx1.example.com"),
	OK("MX-1 IPv4 pattern with trailing dot dropped", V M "mx: 192.0.2.25.\n" X1 A, ENF, 86400,
	   W_IP | W_DOT, "mx1.example.com"),
	OK("MX-1 IPv6 pattern dropped", V M "mx: 2001:db8::25\n" X1 A, ENF, 86400, W_IP,
	   "mx1.example.com"),
	OK("MX-1 tagged IPv6 pattern dropped", V M "mx: IPv6:2001:db8::25\n" X1 A, ENF, 86400, W_IP,
	   "mx1.example.com"),
	NO("MX-1 only IP patterns leave enforce with no mx",
	   V M "mx: 192.0.2.25\n"
	       "mx: 2001:db8::25\n" A,
	   POLICY_ERR_NO_MX, 0),
	NO("MX-1 only IP patterns leave testing with no mx", V "mode: testing\nmx: 192.0.2.25\n" A,
	   POLICY_ERR_NO_MX, 0),
	OK("MX-1 only IP patterns are fine for none", V "mode: none\nmx: 192.0.2.25\n" A, NON,
	   86400, W_IP, ""),

	/* MX-4: normalisation. */
	OK("MX-4 patterns lower-cased", V M "mx: MX1.Example.COM\nmx: *.EXAMPLE.net\n" A, ENF,
	   86400, 0, "mx1.example.com *.example.net"),
	OK("MX-4 case-insensitive duplicates dropped, first kept",
	   V M "mx: MX1.example.com\nmx: mx1.example.com\n" A, ENF, 86400, W_DUPMX,
	   "mx1.example.com"),
	OK("MX-4 duplicate after trailing-dot strip",
	   V M "mx: mx1.example.com\n"
	       "mx: mx1.example.com.\n" A,
	   ENF, 86400, W_DUPMX | W_DOT, "mx1.example.com"),
	OK("MX-4 wildcard duplicates", V M "mx: *.example.com\nmx: *.EXAMPLE.com\n" A, ENF, 86400,
	   W_DUPMX, "*.example.com"),
	OK("MX-4 wildcard and exact are distinct", V M "mx: *.example.com\nmx: example.com\n" A,
	   ENF, 86400, 0, "*.example.com example.com"),
	OK("MX-4 file order kept",
	   V M "mx: c.example\nmx: a.example\nmx: b.example\n"
	       "mx: A.example\n" A,
	   ENF, 86400, W_DUPMX, "c.example a.example b.example"),

	/* Warnings combine. */
	OK("POL-7 MX-1 POL-6.10 POL-6.8 all warnings at once",
	   V M "\nmode: x\nmx: 192.0.2.1\nmx: a.example.\nmx: A.example\nmax_age: 99999999\n", ENF,
	   31557600, W_EMPTY | W_DUP | W_IP | W_DOT | W_DUPMX | W_CLAMP, "a.example"),
};

/* A heap copy of exactly len bytes, so ASan flags any read past the input. */
static char *
exact_copy(const char *s, size_t len)
{
	char *p = xmalloc(len == 0 ? 1 : len);

	if (len > 0)
		memcpy(p, s, len);
	return p;
}

/* The stored patterns joined by single spaces, for comparison with a case row. */
static char *
join_mx(const struct policy *p)
{
	size_t size = p->mx_size + 1;
	char *s = xmalloc(size), *o = s;
	uint32_t n = 0;

	*o = '\0';
	for (const char *mx = policy_mx_next(p, NULL); mx != NULL; mx = policy_mx_next(p, mx)) {
		size_t len = strlen(mx);

		if (o != s)
			*o++ = ' ';
		memcpy(o, mx, len + 1);
		o += len;
		n++;
	}
	assert_int_equal(n, p->nmx);
	return s;
}

static void
test_policy_case(void **state)
{
	const struct policy_case *c = *state;
	char *body = exact_copy(c->body, c->len);
	enum policy_error err = POLICY_ERR_BAD_LINE;
	size_t line = 999;
	struct policy *p = policy_parse(body, c->len, &err, &line);

	free(body);
	if (err != c->err)
		fail_msg("%s: error %s, want %s (line %zu)", c->name, policy_error_str(err),
		         policy_error_str(c->err), line);
	if (c->err != POLICY_ERR_NONE) {
		assert_null(p);
		if (line != c->line)
			fail_msg("%s: line %zu, want %zu", c->name, line, c->line);
		return;
	}
	assert_non_null(p);
	assert_int_equal(line, 0);
	if (p->mode != c->mode)
		fail_msg("%s: mode %s", c->name, policy_mode_str(p->mode));
	if (p->max_age != c->max_age)
		fail_msg("%s: max_age %u", c->name, p->max_age);
	if (p->warnings != c->warnings)
		fail_msg("%s: warnings 0x%x, want 0x%x", c->name, p->warnings, c->warnings);
	char *mx = join_mx(p);
	if (strcmp(mx, c->mx) != 0)
		fail_msg("%s: mx \"%s\", want \"%s\"", c->name, mx, c->mx);
	free(mx);
	policy_free(p);
}

/* A valid policy padded with an extension line to exactly size bytes. */
static char *
padded_policy(size_t size)
{
	static const char head[] = GOOD "pad: ";
	char *b = xmalloc(size);

	memcpy(b, head, sizeof(head) - 1);
	memset(b + sizeof(head) - 1, 'x', size - (sizeof(head) - 1) - 1);
	b[size - 1] = '\n';
	return b;
}

/* FETCH-6: exactly 65536 bytes is accepted, 65537 is refused whole, never cut and parsed. */
static void
test_policy_size_limit(void **state)
{
	enum policy_error err;
	size_t line = 7;
	char *b = padded_policy(POLICY_BODY_MAX);
	struct policy *p = policy_parse(b, POLICY_BODY_MAX, &err, &line);

	(void)state;
	assert_non_null(p);
	assert_int_equal(err, POLICY_ERR_NONE);
	policy_free(p);
	free(b);

	b = padded_policy(POLICY_BODY_MAX + 1);
	assert_null(policy_parse(b, POLICY_BODY_MAX + 1, &err, &line));
	assert_int_equal(err, POLICY_ERR_TOO_LARGE);
	assert_int_equal(line, 0);
	/* The first 65536 bytes alone would parse: only the length decides. */
	p = policy_parse(b, POLICY_BODY_MAX, &err, &line);
	assert_non_null(p);
	policy_free(p);
	free(b);
}

/* MX-4 at scale: thousands of patterns with duplicates keep first-seen order. */
static void
test_policy_many_patterns(void **state)
{
	char *b = xmalloc(POLICY_BODY_MAX);
	size_t len, n = 0;
	enum policy_error err;
	struct policy *p;

	(void)state;
	len = (size_t)snprintf(b, POLICY_BODY_MAX, "%s", V M A);
	for (unsigned i = 0; len + 32 < POLICY_BODY_MAX; i++) {
		/* Every fourth line repeats the line before it in upper case. */
		if (i % 4 == 3)
			len += (size_t)snprintf(b + len, 32, "mx: M%u.X\n", i - 1);
		else
			len += (size_t)snprintf(b + len, 32, "mx: m%u.x\n", i);
	}
	p = policy_parse(b, len, &err, NULL);
	assert_non_null(p);
	assert_int_equal(p->warnings, POLICY_WARN_DUPLICATE_MX);
	for (const char *mx = policy_mx_next(p, NULL); mx != NULL; mx = policy_mx_next(p, mx)) {
		for (const char *c = mx; *c != '\0'; c++)
			assert_false(*c >= 'A' && *c <= 'Z');
		n++;
	}
	assert_int_equal(n, p->nmx);
	assert_true(n > 4000);
	assert_string_equal(policy_mx_next(p, NULL), "m0.x");
	assert_string_equal(policy_mx_next(p, policy_mx_next(p, NULL)), "m1.x");
	assert_string_equal(policy_mx_next(p, policy_mx_next(p, policy_mx_next(p, NULL))), "m2.x");
	assert_string_equal(
	        policy_mx_next(p, policy_mx_next(p, policy_mx_next(p, policy_mx_next(p, NULL)))),
	        "m4.x");
	policy_free(p);
	free(b);
}

/* One allocation: the header and the NUL-separated patterns, nothing else (struct policy). */
static void
test_policy_layout(void **state)
{
	static const char body[] = V M "mx: a.example\nmx: *.b.example\n" A;
	struct policy *p = policy_parse(body, sizeof(body) - 1, NULL, NULL);

	(void)state;
	assert_non_null(p);
	assert_int_equal(p->nmx, 2);
	assert_int_equal(p->mx_size, sizeof("a.example") + sizeof("*.b.example"));
	assert_memory_equal(p->mx, "a.example\0*.b.example", p->mx_size);
	assert_ptr_equal(policy_mx_next(p, NULL), p->mx);
	assert_ptr_equal(policy_mx_next(p, p->mx), p->mx + sizeof("a.example"));
	assert_null(policy_mx_next(p, p->mx + sizeof("a.example")));
	policy_free(p);

	p = policy_parse(V "mode: none\n" A, sizeof(V "mode: none\n" A) - 1, NULL, NULL);
	assert_non_null(p);
	assert_int_equal(p->nmx, 0);
	assert_int_equal(p->mx_size, 0);
	assert_null(policy_mx_next(p, NULL));
	policy_free(p);
	assert_null(policy_mx_next(NULL, NULL));
	policy_free(NULL);
}

static void
test_policy_strings(void **state)
{
	(void)state;
	assert_string_equal(policy_mode_str(POLICY_MODE_ENFORCE), "enforce");
	assert_string_equal(policy_mode_str(POLICY_MODE_TESTING), "testing");
	assert_string_equal(policy_mode_str(POLICY_MODE_NONE), "none");
	assert_string_equal(policy_mode_str((enum policy_mode)42), "unknown");
	for (int e = POLICY_ERR_NONE; e <= POLICY_ERR_NO_MX; e++) {
		const char *s = policy_error_str((enum policy_error)e);

		assert_string_not_equal(s, "unknown");
		for (int k = POLICY_ERR_NONE; k < e; k++)
			assert_string_not_equal(s, policy_error_str((enum policy_error)k));
	}
	assert_string_equal(policy_error_str((enum policy_error)99), "unknown");
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

int
main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_policy_size_limit),
		cmocka_unit_test(test_policy_many_patterns),
		cmocka_unit_test(test_policy_layout),
		cmocka_unit_test(test_policy_strings),
	};
	size_t n = NELEM(policy_cases) + NELEM(fixed);
	struct CMUnitTest *tests = xcalloc(n, sizeof(*tests));
	size_t t = 0;
	int rc;

	/* One named TAP line per table row, so a failure names the rule it breaks. */
	for (size_t i = 0; i < NELEM(policy_cases); i++)
		tests[t++] = (struct CMUnitTest){ .name = policy_cases[i].name,
			                          .test_func = test_policy_case,
			                          .initial_state = (void *)&policy_cases[i] };
	for (size_t i = 0; i < NELEM(fixed); i++)
		tests[t++] = fixed[i];
	rc = _cmocka_run_group_tests("policy", tests, t, NULL, NULL);
	free(tests);
	return rc;
}
