/* test_ctl_reply.c: unit tests for mtasts-ctl's reply decoder ("OK <len>\n<body>" framing). */
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
#include "ctl/reply.h"

/* A string literal as pointer and length, so cases may hold NUL bytes. */
#define S(lit) lit, sizeof(lit) - 1

#define CHECK(name, cond)                                                                          \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail_msg("case \"%s\": %s", (name), #cond);                                \
	} while (0)

#define CAP REPLY_CAP_DEFAULT

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
	const char *name;
	const char *in;
	size_t in_len;
	size_t cap;
	enum reply_status want;
	enum reply_error err;
	enum reply_kind kind;
	const char *body;
	size_t body_len;
	size_t consumed;
};

#define DONE(n, in, cap, kind, body, consumed)                                                     \
	{                                                                                          \
		n, S(in), cap, REPLY_COMPLETE, REPLY_ERR_NONE, kind, S(body), consumed             \
	}
#define MORE(n, in, cap)                                                                           \
	{                                                                                          \
		n, S(in), cap, REPLY_NEED_MORE, REPLY_ERR_NONE, REPLY_OK, NULL, 0, 0               \
	}
#define BAD(n, in, cap, err)                                                                       \
	{                                                                                          \
		n, S(in), cap, REPLY_ERROR, err, REPLY_OK, NULL, 0, 0                              \
	}

static const struct decode_case decode_cases[] = {
	/* complete */
	DONE("OK with a body", "OK 5\nhello", CAP, REPLY_OK, "hello", 10),
	DONE("ERR with a body", "ERR 4\nbad\n", CAP, REPLY_ERR, "bad\n", 10),
	DONE("OK with an empty body", "OK 0\n", CAP, REPLY_OK, "", 5),
	DONE("ERR with an empty body", "ERR 0\n", CAP, REPLY_ERR, "", 6),
	DONE("CR before LF accepted", "OK 5\r\nhello", CAP, REPLY_OK, "hello", 11),
	DONE("leading zeros accepted", "OK 005\nhello", CAP, REPLY_OK, "hello", 12),
	DONE("exactly REPLY_LEN_DIGITS_MAX digits", "OK 0000000005\nhello", CAP, REPLY_OK, "hello",
	     19),
	DONE("body may hold NUL, LF and header-like text", "OK 9\n\0\nOK 1\nx\n", CAP, REPLY_OK,
	     "\0\nOK 1\nx\n", 14),
	DONE("extra bytes after the body are left", "OK 6\nhello\nGARBAGE", CAP, REPLY_OK,
	     "hello\n", 11),
	DONE("a second reply after the first is left", "OK 1\naERR 1\nb", CAP, REPLY_OK, "a", 6),
	DONE("zero cap still takes an empty body", "OK 0\n", 0, REPLY_OK, "", 5),
	DONE("body exactly at cap", "OK 5\nhello", 5, REPLY_OK, "hello", 10),

	/* partial */
	MORE("empty input", "", CAP),
	MORE("half a status word", "O", CAP),
	MORE("half of ERR", "ER", CAP),
	MORE("status word without its space", "OK", CAP),
	MORE("no digits yet", "OK ", CAP),
	MORE("digits without LF", "ERR 12", CAP),
	MORE("CR without LF yet", "OK 5\r", CAP),
	MORE("header without body", "OK 5\n", CAP),
	MORE("partial body", "OK 5\nhell", CAP),
	MORE("length at the default cap waits for the body", "OK 16777216\n", CAP),
	MORE("ten nines under a huge cap do not overflow", "OK 9999999999\n", SIZE_MAX),

	/* over cap: refused from the digits alone */
	BAD("cap + 1 refused", "OK 16777217\n", CAP, REPLY_ERR_OVER_CAP),
	BAD("over cap refused before LF arrives", "OK 99999999", CAP, REPLY_ERR_OVER_CAP),
	BAD("over cap with leading zeros", "ERR 0016777217", CAP, REPLY_ERR_OVER_CAP),
	BAD("small cap + 1 refused", "OK 6\nhello!", 5, REPLY_ERR_OVER_CAP),
	BAD("zero cap refuses any length", "OK 1", 0, REPLY_ERR_OVER_CAP),

	/* bad status word */
	BAD("garbage first byte", "X", CAP, REPLY_ERR_STATUS),
	BAD("SMTP banner", "220 mail.example ESMTP\r\n", CAP, REPLY_ERR_STATUS),
	BAD("HTTP reply", "HTTP/1.1 200 OK\r\n", CAP, REPLY_ERR_STATUS),
	BAD("lower case ok", "ok 5\nhello", CAP, REPLY_ERR_STATUS),
	BAD("no space after OK", "OK5\nhello", CAP, REPLY_ERR_STATUS),
	BAD("OK and LF, no length", "OK\n", CAP, REPLY_ERR_STATUS),
	BAD("ERR and LF, no length", "ERR\n", CAP, REPLY_ERR_STATUS),
	BAD("OKAY is not OK", "OKAY 5\n", CAP, REPLY_ERR_STATUS),
	BAD("leading space", " OK 5\n", CAP, REPLY_ERR_STATUS),
	BAD("lone LF", "\n", CAP, REPLY_ERR_STATUS),
	BAD("NUL first", "\0OK 1\nx", CAP, REPLY_ERR_STATUS),

	/* bad length */
	BAD("empty length", "OK \nhello", CAP, REPLY_ERR_EMPTY_LENGTH),
	BAD("empty length before CR LF", "ERR \r\n", CAP, REPLY_ERR_EMPTY_LENGTH),
	BAD("negative length", "OK -5\nhello", CAP, REPLY_ERR_NOT_DIGIT),
	BAD("plus sign", "OK +5\nhello", CAP, REPLY_ERR_NOT_DIGIT),
	BAD("two spaces", "OK  5\nhello", CAP, REPLY_ERR_NOT_DIGIT),
	BAD("letters", "OK five\nhello", CAP, REPLY_ERR_NOT_DIGIT),
	BAD("hex", "OK 0x10\n", CAP, REPLY_ERR_NOT_DIGIT),
	BAD("trailing space after digits", "OK 5 \nhello", CAP, REPLY_ERR_NOT_DIGIT),
	BAD("text after the length", "ERR 1 permission denied\n", CAP, REPLY_ERR_NOT_DIGIT),
	BAD("NUL in the length", "OK 5\0\nhello", CAP, REPLY_ERR_NOT_DIGIT),
	BAD("non-digit found before LF arrives", "OK 12x", CAP, REPLY_ERR_NOT_DIGIT),
	BAD("more than REPLY_LEN_DIGITS_MAX digits", "OK 00000000005\nhello", CAP,
	    REPLY_ERR_LENGTH_LONG),
	BAD("too many digits found before LF arrives", "OK 00000000000", CAP,
	    REPLY_ERR_LENGTH_LONG),
	BAD("CR not followed by LF", "OK 5\rhello", CAP, REPLY_ERR_BAD_EOL),
	BAD("two CRs", "OK 5\r\r\nhello", CAP, REPLY_ERR_BAD_EOL),
};

static void
test_decode_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
		const struct decode_case *c = &decode_cases[i];
		char *in = exact_copy(c->in, c->in_len);
		struct reply r;
		enum reply_error err;
		enum reply_status st;

		st = reply_decode(in, c->in_len, c->cap, &r, &err);
		CHECK(c->name, st == c->want);
		CHECK(c->name, err == c->err);
		if (st == REPLY_COMPLETE) {
			CHECK(c->name, r.kind == c->kind);
			CHECK(c->name, r.body_len == c->body_len);
			CHECK(c->name, r.consumed == c->consumed);
			CHECK(c->name, r.body >= in && r.body + r.body_len <= in + c->in_len);
			CHECK(c->name, r.body_len == 0 || memcmp(r.body, c->body, r.body_len) == 0);
		} else {
			CHECK(c->name, r.body == NULL && r.body_len == 0 && r.consumed == 0);
		}
		free(in);
	}
}

static const struct {
	const char *name;
	const char *in;
	size_t in_len;
} incremental_cases[] = {
	{ "byte by byte: OK", S("OK 5\nhello") },
	{ "byte by byte: ERR with CR LF", S("ERR 17\r\npermission denied") },
	{ "byte by byte: empty body", S("OK 0\n") },
	{ "byte by byte: body ending in digits", S("OK 3\n123") },
	{ "byte by byte: JSON body", S("OK 16\n{\"error\": \"x\"}\n\n") },
};

/* Every proper prefix of a reply is NEED_MORE; the whole reply is COMPLETE. */
static void
test_decode_byte_by_byte(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(incremental_cases) / sizeof(incremental_cases[0]); i++) {
		const char *name = incremental_cases[i].name;
		size_t n = incremental_cases[i].in_len;

		for (size_t k = 0; k <= n; k++) {
			char *in = exact_copy(incremental_cases[i].in, k);
			struct reply r;
			enum reply_error err;
			enum reply_status st;

			st = reply_decode(in, k, CAP, &r, &err);
			CHECK(name, st == (k < n ? REPLY_NEED_MORE : REPLY_COMPLETE));
			CHECK(name, err == REPLY_ERR_NONE);
			CHECK(name, k < n || r.consumed == n);
			free(in);
		}
	}
}

/* Replies to pipelined requests come back to back; each boundary is found. */
static void
test_decode_two_replies(void **state)
{
	static const char name[] = "two replies back to back";
	static const char both[] = "OK 2\nhiERR 4\nno\n\n";
	char *in = exact_copy(both, sizeof(both) - 1);
	size_t len = sizeof(both) - 1, off;
	struct reply r;
	enum reply_error err;

	(void)state;
	CHECK(name, reply_decode(in, len, CAP, &r, &err) == REPLY_COMPLETE);
	CHECK(name, r.kind == REPLY_OK && r.body_len == 2 && memcmp(r.body, "hi", 2) == 0);
	off = r.consumed;
	CHECK(name, reply_decode(in + off, len - off, CAP, &r, &err) == REPLY_COMPLETE);
	CHECK(name, r.kind == REPLY_ERR && r.body_len == 4 && memcmp(r.body, "no\n\n", 4) == 0);
	off += r.consumed;
	CHECK(name, off == len);
	CHECK(name, reply_decode(in + off, len - off, CAP, &r, &err) == REPLY_NEED_MORE);
	free(in);
}

/* A body at the cap is taken whole, one byte more is not: the client's buffer depends on it. */
static void
test_decode_cap_boundary(void **state)
{
	size_t len = REPLY_HEADER_MAX + (size_t)CAP;
	char *in = xmalloc(len);
	int hlen = snprintf(in, REPLY_HEADER_MAX + 1, "OK %u\n", CAP);
	struct reply r;
	enum reply_error err;

	(void)state;
	memset(in + hlen, 'x', (size_t)CAP);
	assert_int_equal(reply_decode(in, (size_t)hlen + CAP, CAP, &r, &err), REPLY_COMPLETE);
	assert_int_equal(r.body_len, CAP);
	assert_int_equal(r.consumed, (size_t)hlen + CAP);
	assert_int_equal(reply_decode(in, (size_t)hlen + CAP - 1, CAP, &r, &err), REPLY_NEED_MORE);
	hlen = snprintf(in, REPLY_HEADER_MAX + 1, "ERR %u\r\n", CAP);
	assert_true((size_t)hlen <= REPLY_HEADER_MAX);
	assert_int_equal(reply_decode(in, (size_t)hlen, CAP, &r, &err), REPLY_NEED_MORE);
	hlen = snprintf(in, REPLY_HEADER_MAX + 1, "OK %u\n", CAP + 1);
	assert_int_equal(reply_decode(in, (size_t)hlen, CAP, &r, &err), REPLY_ERROR);
	assert_int_equal(err, REPLY_ERR_OVER_CAP);
	free(in);
}

static void
test_error_str(void **state)
{
	static const enum reply_error errs[] = {
		REPLY_ERR_NONE,      REPLY_ERR_STATUS,      REPLY_ERR_EMPTY_LENGTH,
		REPLY_ERR_NOT_DIGIT, REPLY_ERR_LENGTH_LONG, REPLY_ERR_OVER_CAP,
		REPLY_ERR_BAD_EOL,
	};

	(void)state;
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		const char *s = reply_error_str(errs[i]);

		assert_non_null(s);
		assert_true(s[0] != '\0');
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(s, reply_error_str(errs[j]));
	}
	assert_non_null(reply_error_str((enum reply_error)1000));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_table),
		cmocka_unit_test(test_decode_byte_by_byte),
		cmocka_unit_test(test_decode_two_replies),
		cmocka_unit_test(test_decode_cap_boundary),
		cmocka_unit_test(test_error_str),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
