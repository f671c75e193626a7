/* test_netstring.c: unit tests for the netstring codec (PFX-1 framing, request cap). */
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
#include "proto/netstring.h"

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
	size_t cap;
	enum netstring_status want;
	enum netstring_error err;
	const char *payload;
	size_t payload_len;
	size_t consumed;
};

static const struct decode_case decode_cases[] = {
	{ "PFX-1 simple frame", S("5:hello,"), NETSTRING_CAP_DEFAULT, NETSTRING_FRAME,
	  NETSTRING_ERR_NONE, S("hello"), 8 },
	{ "PFX-1 leading zeros accepted", S("005:hello,"), NETSTRING_CAP_DEFAULT, NETSTRING_FRAME,
	  NETSTRING_ERR_NONE, S("hello"), 10 },
	{ "PFX-1 all-zero length is an empty frame", S("000:,"), NETSTRING_CAP_DEFAULT,
	  NETSTRING_FRAME, NETSTRING_ERR_NONE, S(""), 5 },
	{ "PFX-1 empty payload 0:, is a frame", S("0:,"), NETSTRING_CAP_DEFAULT, NETSTRING_FRAME,
	  NETSTRING_ERR_NONE, S(""), 3 },
	{ "PFX-1 payload may hold NUL, ':' and ','", S("4:\0:,x,"), NETSTRING_CAP_DEFAULT,
	  NETSTRING_FRAME, NETSTRING_ERR_NONE, S("\0:,x"), 7 },
	{ "PFX-1 only the first of two frames is decoded", S("5:hello,3:abc,"),
	  NETSTRING_CAP_DEFAULT, NETSTRING_FRAME, NETSTRING_ERR_NONE, S("hello"), 8 },
	{ "PFX-1 exactly NETSTRING_LEN_DIGITS_MAX digits accepted", S("0000000005:hello,"),
	  NETSTRING_CAP_DEFAULT, NETSTRING_FRAME, NETSTRING_ERR_NONE, S("hello"), 17 },
	{ "PFX-1 empty length is an error", S(":hello,"), NETSTRING_CAP_DEFAULT, NETSTRING_ERROR,
	  NETSTRING_ERR_EMPTY_LENGTH, NULL, 0, 0 },
	{ "PFX-1 lone ':' is an empty length", S(":"), NETSTRING_CAP_DEFAULT, NETSTRING_ERROR,
	  NETSTRING_ERR_EMPTY_LENGTH, NULL, 0, 0 },
	{ "PFX-1 non-digit after digits", S("5a:hello,"), NETSTRING_CAP_DEFAULT, NETSTRING_ERROR,
	  NETSTRING_ERR_NOT_DIGIT, NULL, 0, 0 },
	{ "PFX-1 sign is not a digit", S("+5:hello,"), NETSTRING_CAP_DEFAULT, NETSTRING_ERROR,
	  NETSTRING_ERR_NOT_DIGIT, NULL, 0, 0 },
	{ "PFX-1 space is not a digit", S(" 5:hello,"), NETSTRING_CAP_DEFAULT, NETSTRING_ERROR,
	  NETSTRING_ERR_NOT_DIGIT, NULL, 0, 0 },
	{ "PFX-1 non-digit detected before ':' arrives", S("12x"), NETSTRING_CAP_DEFAULT,
	  NETSTRING_ERROR, NETSTRING_ERR_NOT_DIGIT, NULL, 0, 0 },
	{ "PFX-1 NUL in length is not a digit", S("1\0:x,"), NETSTRING_CAP_DEFAULT, NETSTRING_ERROR,
	  NETSTRING_ERR_NOT_DIGIT, NULL, 0, 0 },
	{ "PFX-1 missing ',' after payload", S("5:hello;"), NETSTRING_CAP_DEFAULT, NETSTRING_ERROR,
	  NETSTRING_ERR_NO_COMMA, NULL, 0, 0 },
	{ "PFX-1 payload longer than declared", S("3:hello,"), NETSTRING_CAP_DEFAULT,
	  NETSTRING_ERROR, NETSTRING_ERR_NO_COMMA, NULL, 0, 0 },
	{ "PFX-1 empty payload without ','", S("0::"), NETSTRING_CAP_DEFAULT, NETSTRING_ERROR,
	  NETSTRING_ERR_NO_COMMA, NULL, 0, 0 },
	{ "PFX-1 more than NETSTRING_LEN_DIGITS_MAX digits", S("00000000005:hello,"),
	  NETSTRING_CAP_DEFAULT, NETSTRING_ERROR, NETSTRING_ERR_LENGTH_LONG, NULL, 0, 0 },
	{ "PFX-1 too many digits detected before ':' arrives", S("00000000000"),
	  NETSTRING_CAP_DEFAULT, NETSTRING_ERROR, NETSTRING_ERR_LENGTH_LONG, NULL, 0, 0 },
	{ "PFX-1 cap+1 rejected before ':' arrives", S("4097"), NETSTRING_CAP_DEFAULT,
	  NETSTRING_ERROR, NETSTRING_ERR_OVER_CAP, NULL, 0, 0 },
	{ "PFX-1 over cap rejected at the first digit past it", S("99999"), NETSTRING_CAP_DEFAULT,
	  NETSTRING_ERROR, NETSTRING_ERR_OVER_CAP, NULL, 0, 0 },
	{ "PFX-1 over cap with leading zeros", S("0004097:"), NETSTRING_CAP_DEFAULT,
	  NETSTRING_ERROR, NETSTRING_ERR_OVER_CAP, NULL, 0, 0 },
	{ "PFX-1 minimum cap+1 rejected without payload", S("1025:"), NETSTRING_CAP_MIN,
	  NETSTRING_ERROR, NETSTRING_ERR_OVER_CAP, NULL, 0, 0 },
	{ "PFX-1 length at cap waits for the payload", S("4096:"), NETSTRING_CAP_DEFAULT,
	  NETSTRING_NEED_MORE, NETSTRING_ERR_NONE, NULL, 0, 0 },
	{ "PFX-1 length at minimum cap waits for the payload", S("1024:"), NETSTRING_CAP_MIN,
	  NETSTRING_NEED_MORE, NETSTRING_ERR_NONE, NULL, 0, 0 },
	{ "PFX-1 ten nines under a huge cap do not overflow", S("9999999999:"), SIZE_MAX,
	  NETSTRING_NEED_MORE, NETSTRING_ERR_NONE, NULL, 0, 0 },
	{ "PFX-1 zero cap still takes an empty frame", S("0:,"), 0, NETSTRING_FRAME,
	  NETSTRING_ERR_NONE, S(""), 3 },
	{ "PFX-1 zero cap rejects any length", S("1"), 0, NETSTRING_ERROR, NETSTRING_ERR_OVER_CAP,
	  NULL, 0, 0 },
	{ "PFX-1 empty input needs more", S(""), NETSTRING_CAP_DEFAULT, NETSTRING_NEED_MORE,
	  NETSTRING_ERR_NONE, NULL, 0, 0 },
	{ "PFX-1 digits only need more", S("12"), NETSTRING_CAP_DEFAULT, NETSTRING_NEED_MORE,
	  NETSTRING_ERR_NONE, NULL, 0, 0 },
	{ "PFX-1 partial payload needs more", S("5:hel"), NETSTRING_CAP_DEFAULT,
	  NETSTRING_NEED_MORE, NETSTRING_ERR_NONE, NULL, 0, 0 },
	{ "PFX-1 payload without ',' yet needs more", S("5:hello"), NETSTRING_CAP_DEFAULT,
	  NETSTRING_NEED_MORE, NETSTRING_ERR_NONE, NULL, 0, 0 },
};

static void
test_decode_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
		const struct decode_case *c = &decode_cases[i];
		char *in = exact_copy(c->in, c->in_len);
		const char *payload;
		size_t plen, consumed;
		enum netstring_error err;
		enum netstring_status st;

		st = netstring_decode(in, c->in_len, c->cap, &payload, &plen, &consumed, &err);
		CHECK(c->rule, st == c->want);
		CHECK(c->rule, err == c->err);
		if (st == NETSTRING_FRAME) {
			CHECK(c->rule, plen == c->payload_len);
			CHECK(c->rule, consumed == c->consumed);
			CHECK(c->rule, payload >= in && payload + plen <= in + c->in_len);
			CHECK(c->rule, plen == 0 || memcmp(payload, c->payload, plen) == 0);
		} else {
			CHECK(c->rule, consumed == 0);
		}
		free(in);
	}
}

static const struct {
	const char *rule;
	const char *in;
	size_t in_len;
} incremental_cases[] = {
	{ "PFX-1 byte by byte: simple frame", S("5:hello,") },
	{ "PFX-1 byte by byte: leading zeros", S("0005:hello,") },
	{ "PFX-1 byte by byte: empty payload", S("0:,") },
	{ "PFX-1 byte by byte: request with empty key", S("7:mtasts ,") },
	{ "PFX-1 byte by byte: payload ending in digits", S("3:123,") },
};

/* Every proper prefix of a frame is NEED_MORE; the whole frame is one FRAME. */
static void
test_decode_byte_by_byte(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(incremental_cases) / sizeof(incremental_cases[0]); i++) {
		const char *rule = incremental_cases[i].rule;
		size_t n = incremental_cases[i].in_len;

		for (size_t k = 0; k <= n; k++) {
			char *in = exact_copy(incremental_cases[i].in, k);
			const char *payload;
			size_t plen, consumed;
			enum netstring_error err;
			enum netstring_status st;

			st = netstring_decode(in, k, NETSTRING_CAP_DEFAULT, &payload, &plen,
			                      &consumed, &err);
			CHECK(rule, st == (k < n ? NETSTRING_NEED_MORE : NETSTRING_FRAME));
			CHECK(rule, k < n || consumed == n);
			free(in);
		}
	}
}

/* PFX-1: one connection carries several requests; the decoder finds each boundary. */
static void
test_decode_two_frames(void **state)
{
	static const char rule[] = "PFX-1 two frames back to back";
	char *in = exact_copy(S("10:mtasts a.b,0:,"));
	size_t len = sizeof("10:mtasts a.b,0:,") - 1, off = 0, plen, consumed;
	const char *payload;
	enum netstring_error err;

	(void)state;
	CHECK(rule, netstring_decode(in, len, NETSTRING_CAP_DEFAULT, &payload, &plen, &consumed,
	                             &err) == NETSTRING_FRAME);
	CHECK(rule, plen == 10 && memcmp(payload, "mtasts a.b", 10) == 0 && consumed == 14);
	off += consumed;
	CHECK(rule, netstring_decode(in + off, len - off, NETSTRING_CAP_DEFAULT, &payload, &plen,
	                             &consumed, &err) == NETSTRING_FRAME);
	CHECK(rule, plen == 0 && consumed == 3);
	off += consumed;
	CHECK(rule, off == len);
	CHECK(rule, netstring_decode(in + off, len - off, NETSTRING_CAP_DEFAULT, &payload, &plen,
	                             &consumed, &err) == NETSTRING_NEED_MORE);
	free(in);
}

/* Builds "<cap>:" + cap bytes + "," and decodes it under cap (accepted) and cap - 1 (not). */
static void
check_cap(size_t cap)
{
	struct strbuf sb;
	char *body = xmalloc(cap + 1);
	const char *payload;
	size_t plen, consumed;
	enum netstring_error err;

	memset(body, 'x', cap + 1);
	strbuf_init(&sb, cap + 64);
	assert_int_equal(netstring_encode(&sb, body, cap), 0);
	CHECK("PFX-1 exactly at cap accepted",
	      netstring_decode(sb.data, sb.len, cap, &payload, &plen, &consumed, &err) ==
	              NETSTRING_FRAME);
	CHECK("PFX-1 exactly at cap accepted", plen == cap && consumed == sb.len);
	CHECK("PFX-1 cap+1 rejected", netstring_decode(sb.data, sb.len, cap - 1, &payload, &plen,
	                                               &consumed, &err) == NETSTRING_ERROR);
	CHECK("PFX-1 cap+1 rejected", err == NETSTRING_ERR_OVER_CAP);
	strbuf_reset(&sb);
	assert_int_equal(netstring_encode(&sb, body, cap + 1), 0);
	CHECK("PFX-1 cap+1 rejected", netstring_decode(sb.data, sb.len, cap, &payload, &plen,
	                                               &consumed, &err) == NETSTRING_ERROR);
	CHECK("PFX-1 cap+1 rejected", err == NETSTRING_ERR_OVER_CAP);
	strbuf_release(&sb);
	free(body);
}

static void
test_decode_cap_boundaries(void **state)
{
	(void)state;
	check_cap(NETSTRING_CAP_MIN);
	check_cap(NETSTRING_CAP_DEFAULT);
}

struct encode_case {
	const char *rule;
	const char *data;
	size_t len;
	size_t max;
	int want;
	const char *out;
	size_t out_len;
};

static const struct encode_case encode_cases[] = {
	{ "PFX-1 encode simple payload", S("hello"), 64, 0, S("5:hello,") },
	{ "PFX-1 encode empty payload", S(""), 64, 0, S("0:,") },
	{ "PFX-1 encode keeps NUL bytes", S("a\0b"), 64, 0, S("3:a\0b,") },
	{ "PFX-1 encode exactly at buffer max", S("hello"), 8, 0, S("5:hello,") },
	{ "PFX-1 encode one past buffer max fails", S("hello"), 7, -1, S("") },
	{ "PFX-1 encode header alone over max fails", S("hello"), 1, -1, S("") },
};

static void
test_encode_table(void **state)
{
	static const char prefix[] = "prev";

	(void)state;
	for (size_t i = 0; i < sizeof(encode_cases) / sizeof(encode_cases[0]); i++) {
		const struct encode_case *c = &encode_cases[i];
		struct strbuf sb;

		/* Existing content shows that a failed append leaves the buffer as it was. */
		strbuf_init(&sb, c->max + sizeof(prefix) - 1);
		assert_int_equal(strbuf_appends(&sb, prefix), 0);
		CHECK(c->rule, netstring_encode(&sb, c->data, c->len) == c->want);
		CHECK(c->rule, sb.len == sizeof(prefix) - 1 + c->out_len);
		CHECK(c->rule, memcmp(sb.data, prefix, sizeof(prefix) - 1) == 0);
		CHECK(c->rule, memcmp(sb.data + sizeof(prefix) - 1, c->out, c->out_len) == 0);
		CHECK(c->rule, sb.data[sb.len] == '\0');
		strbuf_release(&sb);
	}
}

/* Encoding then decoding gives back every byte value, in one frame of the encoded size. */
static void
test_encode_decode_round_trip(void **state)
{
	char all[256];
	struct strbuf sb;
	const char *payload;
	size_t plen, consumed;
	enum netstring_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(all); i++)
		all[i] = (char)i;
	strbuf_init(&sb, NETSTRING_CAP_DEFAULT);
	assert_int_equal(netstring_encode(&sb, all, sizeof(all)), 0);
	CHECK("PFX-1 round trip", netstring_decode(sb.data, sb.len, NETSTRING_CAP_DEFAULT, &payload,
	                                           &plen, &consumed, &err) == NETSTRING_FRAME);
	CHECK("PFX-1 round trip", plen == sizeof(all) && memcmp(payload, all, plen) == 0);
	CHECK("PFX-1 round trip", consumed == sb.len);
	strbuf_release(&sb);
}

static void
test_error_str(void **state)
{
	static const enum netstring_error errs[] = {
		NETSTRING_ERR_NONE,        NETSTRING_ERR_EMPTY_LENGTH, NETSTRING_ERR_NOT_DIGIT,
		NETSTRING_ERR_LENGTH_LONG, NETSTRING_ERR_OVER_CAP,     NETSTRING_ERR_NO_COMMA,
	};

	(void)state;
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		const char *s = netstring_error_str(errs[i]);

		assert_non_null(s);
		assert_true(s[0] != '\0');
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(s, netstring_error_str(errs[j]));
	}
	assert_non_null(netstring_error_str((enum netstring_error)1000));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_table),
		cmocka_unit_test(test_decode_byte_by_byte),
		cmocka_unit_test(test_decode_two_frames),
		cmocka_unit_test(test_decode_cap_boundaries),
		cmocka_unit_test(test_encode_table),
		cmocka_unit_test(test_encode_decode_round_trip),
		cmocka_unit_test(test_error_str),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
