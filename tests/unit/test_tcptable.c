/* test_tcptable.c: unit tests for the tcp_table(5) codec: "get" lines, %XX, 4096-byte limit. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/strbuf.h"
#include "base/xmalloc.h"
#include "proto/tcptable.h"

/* A string literal as pointer and length, so cases may hold NUL bytes. */
#define S(lit) lit, sizeof(lit) - 1

#define CHECK(name, cond)                                                                          \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail_msg("case \"%s\": %s", (name), #cond);                                \
	} while (0)

/* A heap copy of exactly len bytes, so ASan flags any read past the input. */
static char *
exact_copy(const char *s, size_t len)
{
	char *p = xmalloc(len);

	if (len > 0)
		memcpy(p, s, len);
	return p;
}

struct decode_case {
	const char *rule;
	const char *in;
	size_t in_len;
	size_t keycap;
	enum tcptable_status want;
	enum tcptable_error err;
	const char *key;
	size_t key_len;
	size_t consumed;
};

static const struct decode_case decode_cases[] = {
	{ "tcp_table get SP key LF", S("get example.com\n"), TCPTABLE_LINE_MAX, TCPTABLE_REQUEST,
	  TCPTABLE_ERR_NONE, S("example.com"), 16 },
	{ "tcp_table one CR before LF dropped", S("get example.com\r\n"), TCPTABLE_LINE_MAX,
	  TCPTABLE_REQUEST, TCPTABLE_ERR_NONE, S("example.com"), 17 },
	{ "tcp_table only one CR dropped", S("get a\r\r\n"), TCPTABLE_LINE_MAX, TCPTABLE_REQUEST,
	  TCPTABLE_ERR_NONE, S("a\r"), 8 },
	{ "tcp_table CR inside the key kept", S("get a\rb\n"), TCPTABLE_LINE_MAX, TCPTABLE_REQUEST,
	  TCPTABLE_ERR_NONE, S("a\rb"), 8 },
	{ "tcp_table empty key", S("get \n"), TCPTABLE_LINE_MAX, TCPTABLE_REQUEST,
	  TCPTABLE_ERR_NONE, S(""), 5 },
	{ "tcp_table %20 decodes to SP", S("get a%20b\n"), TCPTABLE_LINE_MAX, TCPTABLE_REQUEST,
	  TCPTABLE_ERR_NONE, S("a b"), 10 },
	{ "tcp_table %25 decodes to %", S("get %25\n"), TCPTABLE_LINE_MAX, TCPTABLE_REQUEST,
	  TCPTABLE_ERR_NONE, S("%"), 8 },
	{ "tcp_table %00 decodes to NUL", S("get %00x\n"), TCPTABLE_LINE_MAX, TCPTABLE_REQUEST,
	  TCPTABLE_ERR_NONE, S("\0x"), 9 },
	{ "tcp_table %0D%0A decode to CR LF", S("get %0D%0A\n"), TCPTABLE_LINE_MAX,
	  TCPTABLE_REQUEST, TCPTABLE_ERR_NONE, S("\r\n"), 11 },
	{ "tcp_table hex digits in either case", S("get %4a%4A%fF\n"), TCPTABLE_LINE_MAX,
	  TCPTABLE_REQUEST, TCPTABLE_ERR_NONE, S("JJ\xff"), 14 },
	{ "tcp_table escape at the end of the key", S("get a%2E\n"), TCPTABLE_LINE_MAX,
	  TCPTABLE_REQUEST, TCPTABLE_ERR_NONE, S("a."), 9 },
	{ "tcp_table PFX-2 parent-domain key", S("get .example.com\n"), TCPTABLE_LINE_MAX,
	  TCPTABLE_REQUEST, TCPTABLE_ERR_NONE, S(".example.com"), 17 },
	{ "tcp_table second line left for the next call", S("get a\nget b\n"), TCPTABLE_LINE_MAX,
	  TCPTABLE_REQUEST, TCPTABLE_ERR_NONE, S("a"), 6 },
	{ "tcp_table key fills keycap - 1", S("get abcdef\n"), 7, TCPTABLE_REQUEST,
	  TCPTABLE_ERR_NONE, S("abcdef"), 11 },
	{ "tcp_table key over keycap - 1 is BAD", S("get abcdef\n"), 6, TCPTABLE_BAD,
	  TCPTABLE_ERR_TOO_LONG, NULL, 0, 11 },
	{ "tcp_table zero keycap is BAD", S("get a\n"), 0, TCPTABLE_BAD, TCPTABLE_ERR_TOO_LONG,
	  NULL, 0, 6 },
	{ "tcp_table bad escape %4 at end", S("get %4\n"), TCPTABLE_LINE_MAX, TCPTABLE_BAD,
	  TCPTABLE_ERR_BAD_ESCAPE, NULL, 0, 7 },
	{ "tcp_table bad escape %4 before CR LF", S("get %4\r\n"), TCPTABLE_LINE_MAX, TCPTABLE_BAD,
	  TCPTABLE_ERR_BAD_ESCAPE, NULL, 0, 8 },
	{ "tcp_table bad escape %zz", S("get %zz\n"), TCPTABLE_LINE_MAX, TCPTABLE_BAD,
	  TCPTABLE_ERR_BAD_ESCAPE, NULL, 0, 8 },
	{ "tcp_table bad escape % alone", S("get %\n"), TCPTABLE_LINE_MAX, TCPTABLE_BAD,
	  TCPTABLE_ERR_BAD_ESCAPE, NULL, 0, 6 },
	{ "tcp_table bad escape %g0", S("get a%g0b\n"), TCPTABLE_LINE_MAX, TCPTABLE_BAD,
	  TCPTABLE_ERR_BAD_ESCAPE, NULL, 0, 10 },
	{ "tcp_table bad escape second digit", S("get %0g\n"), TCPTABLE_LINE_MAX, TCPTABLE_BAD,
	  TCPTABLE_ERR_BAD_ESCAPE, NULL, 0, 8 },
	{ "tcp_table put is BAD", S("put example.com secure\n"), TCPTABLE_LINE_MAX, TCPTABLE_BAD,
	  TCPTABLE_ERR_BAD_COMMAND, NULL, 0, 23 },
	{ "tcp_table get without SP is BAD", S("get\n"), TCPTABLE_LINE_MAX, TCPTABLE_BAD,
	  TCPTABLE_ERR_BAD_COMMAND, NULL, 0, 4 },
	{ "tcp_table get CR LF without SP is BAD", S("get\r\n"), TCPTABLE_LINE_MAX, TCPTABLE_BAD,
	  TCPTABLE_ERR_BAD_COMMAND, NULL, 0, 5 },
	{ "tcp_table command is case-sensitive", S("GET a\n"), TCPTABLE_LINE_MAX, TCPTABLE_BAD,
	  TCPTABLE_ERR_BAD_COMMAND, NULL, 0, 6 },
	{ "tcp_table tab is not the separator", S("get\ta\n"), TCPTABLE_LINE_MAX, TCPTABLE_BAD,
	  TCPTABLE_ERR_BAD_COMMAND, NULL, 0, 6 },
	{ "tcp_table empty line is BAD", S("\n"), TCPTABLE_LINE_MAX, TCPTABLE_BAD,
	  TCPTABLE_ERR_BAD_COMMAND, NULL, 0, 1 },
	{ "tcp_table CR LF alone is BAD", S("\r\n"), TCPTABLE_LINE_MAX, TCPTABLE_BAD,
	  TCPTABLE_ERR_BAD_COMMAND, NULL, 0, 2 },
	{ "tcp_table empty input needs more", S(""), TCPTABLE_LINE_MAX, TCPTABLE_NEED_MORE,
	  TCPTABLE_ERR_NONE, NULL, 0, 0 },
	{ "tcp_table no LF yet needs more", S("get example.com"), TCPTABLE_LINE_MAX,
	  TCPTABLE_NEED_MORE, TCPTABLE_ERR_NONE, NULL, 0, 0 },
	{ "tcp_table CR without LF needs more", S("get a\r"), TCPTABLE_LINE_MAX, TCPTABLE_NEED_MORE,
	  TCPTABLE_ERR_NONE, NULL, 0, 0 },
	{ "tcp_table bad command without LF still needs more", S("put"), TCPTABLE_LINE_MAX,
	  TCPTABLE_NEED_MORE, TCPTABLE_ERR_NONE, NULL, 0, 0 },
};

static void
test_decode_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
		const struct decode_case *c = &decode_cases[i];
		char *in = exact_copy(c->in, c->in_len);
		char *key = xmalloc(c->keycap);
		size_t key_len, consumed;
		enum tcptable_error err;
		enum tcptable_status st;

		st = tcptable_decode(in, c->in_len, key, c->keycap, &key_len, &consumed, &err);
		CHECK(c->rule, st == c->want);
		CHECK(c->rule, err == c->err);
		if (st == TCPTABLE_REQUEST || st == TCPTABLE_BAD)
			CHECK(c->rule, consumed == c->consumed);
		if (st == TCPTABLE_REQUEST) {
			CHECK(c->rule, key_len == c->key_len);
			CHECK(c->rule, memcmp(key, c->key, key_len) == 0);
			CHECK(c->rule, key[key_len] == '\0');
		}
		free(key);
		free(in);
	}
}

/* Every proper prefix of a line is NEED_MORE; the whole line is one REQUEST. */
static void
test_decode_byte_by_byte(void **state)
{
	static const char rule[] = "tcp_table byte by byte: need more until LF";
	static const char line[] = "get mx%2Eexample.com\r\n";
	const size_t n = sizeof(line) - 1;
	char key[TCPTABLE_LINE_MAX];

	(void)state;
	for (size_t k = 0; k <= n; k++) {
		char *in = exact_copy(line, k);
		size_t key_len, consumed;
		enum tcptable_error err;
		enum tcptable_status st;

		st = tcptable_decode(in, k, key, sizeof(key), &key_len, &consumed, &err);
		CHECK(rule, st == (k < n ? TCPTABLE_NEED_MORE : TCPTABLE_REQUEST));
		CHECK(rule, k < n || (consumed == n && key_len == 14 &&
		                      memcmp(key, "mx.example.com", 14) == 0));
		free(in);
	}
}

/* A BAD line is skipped as a whole, so the next request on the connection still decodes. */
static void
test_decode_bad_then_good(void **state)
{
	static const char rule[] = "tcp_table put is BAD, next line still decoded";
	static const char lines[] = "put a b\nget c\n";
	char key[TCPTABLE_LINE_MAX];
	size_t key_len, consumed, off;
	enum tcptable_error err;

	(void)state;
	CHECK(rule, tcptable_decode(lines, sizeof(lines) - 1, key, sizeof(key), &key_len, &consumed,
	                            &err) == TCPTABLE_BAD);
	CHECK(rule, consumed == 8);
	off = consumed;
	CHECK(rule, tcptable_decode(lines + off, sizeof(lines) - 1 - off, key, sizeof(key),
	                            &key_len, &consumed, &err) == TCPTABLE_REQUEST);
	CHECK(rule, consumed == 6 && key_len == 1 && key[0] == 'c');
}

struct long_case {
	const char *rule;
	size_t key_bytes; /* 'a' bytes after "get " */
	const char *tail; /* what ends the input */
	size_t tail_len;
	enum tcptable_status want;
};

/* "get " is 4 bytes: 4 + 4091 + LF is exactly TCPTABLE_LINE_MAX. */
static const struct long_case long_cases[] = {
	{ "tcp_table line of exactly 4096 incl LF accepted", 4091, S("\n"), TCPTABLE_REQUEST },
	{ "tcp_table line of exactly 4096 incl CR LF accepted", 4090, S("\r\n"), TCPTABLE_REQUEST },
	{ "tcp_table line of 4097 incl LF is an error", 4092, S("\n"), TCPTABLE_ERROR },
	{ "tcp_table line of 4097 incl CR LF is an error", 4091, S("\r\n"), TCPTABLE_ERROR },
	{ "tcp_table 4095 bytes without LF need more", 4091, S(""), TCPTABLE_NEED_MORE },
	{ "tcp_table 4096 bytes without LF is an error at once", 4092, S(""), TCPTABLE_ERROR },
};

static void
test_decode_line_limit(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(long_cases) / sizeof(long_cases[0]); i++) {
		const struct long_case *c = &long_cases[i];
		size_t len = 4 + c->key_bytes + c->tail_len, key_len, consumed;
		char *in = xmalloc(len);
		char key[TCPTABLE_LINE_MAX];
		enum tcptable_error err;
		enum tcptable_status st;

		memcpy(in, "get ", 4);
		memset(in + 4, 'a', c->key_bytes);
		memcpy(in + 4 + c->key_bytes, c->tail, c->tail_len);
		st = tcptable_decode(in, len, key, sizeof(key), &key_len, &consumed, &err);
		CHECK(c->rule, st == c->want);
		if (st == TCPTABLE_REQUEST)
			CHECK(c->rule, consumed == len && consumed == TCPTABLE_LINE_MAX &&
			                       key_len == c->key_bytes);
		if (st == TCPTABLE_ERROR)
			CHECK(c->rule, err == TCPTABLE_ERR_TOO_LONG);
		free(in);
	}
}

struct format_case {
	const char *rule;
	enum tcptable_code code;
	const char *text;
	size_t len;
	int want;
	const char *out;
	size_t out_len;
};

static const struct format_case format_cases[] = {
	{ "tcp_table 200 data LF, SP encoded", TCPTABLE_CODE_OK, S("secure match=.example.com"), 0,
	  S("200 secure%20match=.example.com\n") },
	{ "tcp_table 500 text LF", TCPTABLE_CODE_NOTFOUND, S("not found"), 0,
	  S("500 not%20found\n") },
	{ "tcp_table 400 text LF", TCPTABLE_CODE_ERROR, S("temporary"), 0, S("400 temporary\n") },
	{ "tcp_table empty text", TCPTABLE_CODE_OK, S(""), 0, S("200 \n") },
	{ "tcp_table % encoded", TCPTABLE_CODE_OK, S("100%"), 0, S("200 100%25\n") },
	{ "tcp_table controls, NUL, CR, LF encoded", TCPTABLE_CODE_OK, S("\0\t\r\n\x1f"), 0,
	  S("200 %00%09%0D%0A%1F\n") },
	{ "tcp_table 0x7f and high bytes encoded, upper-case hex", TCPTABLE_CODE_OK,
	  S("\x7f\x80\xff"), 0, S("200 %7F%80%FF\n") },
	{ "tcp_table 0x21 and 0x7e kept", TCPTABLE_CODE_OK, S("!~"), 0, S("200 !~\n") },
	{ "tcp_table unknown code rejected", (enum tcptable_code)300, S("x"), -1, S("") },
};

static void
test_format_table(void **state)
{
	static const char prefix[] = "200 prev\n";

	(void)state;
	for (size_t i = 0; i < sizeof(format_cases) / sizeof(format_cases[0]); i++) {
		const struct format_case *c = &format_cases[i];
		struct strbuf sb;

		/* Earlier output in the buffer must survive a refused reply untouched. */
		strbuf_init(&sb, 2 * TCPTABLE_LINE_MAX);
		assert_int_equal(strbuf_appends(&sb, prefix), 0);
		CHECK(c->rule, tcptable_format_reply(&sb, c->code, c->text, c->len) == c->want);
		CHECK(c->rule, sb.len == sizeof(prefix) - 1 + c->out_len);
		CHECK(c->rule, memcmp(sb.data, prefix, sizeof(prefix) - 1) == 0);
		CHECK(c->rule, memcmp(sb.data + sizeof(prefix) - 1, c->out, c->out_len) == 0);
		strbuf_release(&sb);
	}
}

struct limit_case {
	const char *rule;
	char fill;
	size_t text_len;
	size_t buf_max;
	int want;
};

/* "200 " is 4 bytes and the LF 1; a '%' fill costs 3 bytes per byte once encoded. */
static const struct limit_case limit_cases[] = {
	{ "tcp_table reply of exactly 4096 incl LF accepted", 'a', 4091, 2 * TCPTABLE_LINE_MAX, 0 },
	{ "tcp_table reply of 4097 incl LF is -1, buffer unchanged", 'a', 4092,
	  2 * TCPTABLE_LINE_MAX, -1 },
	{ "tcp_table encoded reply of 4094 accepted", '%', 1363, 2 * TCPTABLE_LINE_MAX, 0 },
	{ "tcp_table encoded reply of 4097 is -1, buffer unchanged", '%', 1364,
	  2 * TCPTABLE_LINE_MAX, -1 },
	{ "tcp_table huge text is -1 without overflow", 'a', 100000, 2 * TCPTABLE_LINE_MAX, -1 },
	{ "tcp_table reply over the buffer max is -1", 'a', 10, 1 + 4 + 10, -1 },
	{ "tcp_table reply exactly at the buffer max accepted", 'a', 10, 1 + 4 + 10 + 1, 0 },
};

static void
test_format_limits(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(limit_cases) / sizeof(limit_cases[0]); i++) {
		const struct limit_case *c = &limit_cases[i];
		char *text = xmalloc(c->text_len);
		struct strbuf sb;

		memset(text, c->fill, c->text_len);
		strbuf_init(&sb, c->buf_max);
		assert_int_equal(strbuf_appendc(&sb, 'p'), 0);
		CHECK(c->rule,
		      tcptable_format_reply(&sb, TCPTABLE_CODE_OK, text, c->text_len) == c->want);
		if (c->want == -1) {
			CHECK(c->rule, sb.len == 1 && sb.data[0] == 'p' && sb.data[1] == '\0');
		} else {
			CHECK(c->rule, sb.len - 1 <= TCPTABLE_LINE_MAX);
			CHECK(c->rule, sb.data[sb.len - 1] == '\n');
		}
		strbuf_release(&sb);
		free(text);
	}
}

/* Turns "200 <enc>" LF into "get <enc>" LF and decodes it: the key must equal the text. */
static void
check_round_trip(const char *rule, const char *text, size_t len)
{
	struct strbuf sb;
	char key[TCPTABLE_LINE_MAX];
	size_t key_len, consumed;
	enum tcptable_error err;

	strbuf_init(&sb, TCPTABLE_LINE_MAX);
	CHECK(rule, tcptable_format_reply(&sb, TCPTABLE_CODE_OK, text, len) == 0);
	for (size_t i = 4; i + 1 < sb.len; i++) {
		unsigned char c = (unsigned char)sb.data[i];

		CHECK(rule, c > 0x20 && c < 0x7f);
	}
	memcpy(sb.data, "get", 3);
	CHECK(rule, tcptable_decode(sb.data, sb.len, key, sizeof(key), &key_len, &consumed, &err) ==
	                    TCPTABLE_REQUEST);
	CHECK(rule, consumed == sb.len);
	CHECK(rule, key_len == len && memcmp(key, text, len) == 0);
	strbuf_release(&sb);
}

static void
test_round_trip(void **state)
{
	static const struct {
		const char *rule;
		const char *text;
		size_t len;
	} cases[] = {
		{ "tcp_table round trip: plain domain", S("example.com") },
		{ "tcp_table round trip: policy answer",
		  S("secure match=mx1.example.com:.example.net") },
		{ "tcp_table round trip: escapes and %", S("%25 %zz %4") },
		{ "tcp_table round trip: NUL CR LF", S("\0\r\n") },
		{ "tcp_table round trip: empty", S("") },
	};
	char all[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_round_trip(cases[i].rule, cases[i].text, cases[i].len);
	for (size_t i = 0; i < sizeof(all); i++)
		all[i] = (char)i;
	check_round_trip("tcp_table round trip: every byte value", all, sizeof(all));
}

static void
test_error_str(void **state)
{
	static const enum tcptable_error errs[] = {
		TCPTABLE_ERR_NONE,
		TCPTABLE_ERR_TOO_LONG,
		TCPTABLE_ERR_BAD_COMMAND,
		TCPTABLE_ERR_BAD_ESCAPE,
	};

	(void)state;
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		const char *s = tcptable_error_str(errs[i]);

		assert_non_null(s);
		assert_true(s[0] != '\0');
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(s, tcptable_error_str(errs[j]));
	}
	assert_non_null(tcptable_error_str((enum tcptable_error)1000));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_table),
		cmocka_unit_test(test_decode_byte_by_byte),
		cmocka_unit_test(test_decode_bad_then_good),
		cmocka_unit_test(test_decode_line_limit),
		cmocka_unit_test(test_format_table),
		cmocka_unit_test(test_format_limits),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_error_str),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
