/* test_socketmap.c: unit tests for socketmap request parsing and replies (PFX-1, PFX-3). */
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
#include "proto/socketmap.h"

/* A string literal as pointer and length, so cases may hold NUL bytes. */
#define S(lit) lit, sizeof(lit) - 1

#define CHECK(name, cond)                                                                          \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail_msg("case \"%s\": %s", (name), #cond);                                \
	} while (0)

/* Enough for the largest reply plus its netstring wrapper. */
#define REPLY_BUF_MAX (SOCKETMAP_REPLY_MAX + 64)

/* A heap copy of exactly len bytes, so ASan flags any read past the input. */
static char *
exact_copy(const char *s, size_t len)
{
	char *p = xmalloc(len);

	if (len > 0)
		memcpy(p, s, len);
	return p;
}

struct parse_case {
	const char *rule;
	const char *in;
	size_t in_len;
	int want;
	const char *name;
	size_t name_len;
	const char *key;
	size_t key_len;
};

static const struct parse_case parse_cases[] = {
	{ "PFX-1 name SP key", S("mtasts example.com"), 0, S("mtasts"), S("example.com") },
	{ "PFX-1 empty key keeps its SP", S("mtasts "), 0, S("mtasts"), S("") },
	{ "PFX-1 split at the first SP only", S("mtasts a b"), 0, S("mtasts"), S("a b") },
	{ "PFX-2 parent-domain key with leading dot", S("mtasts .example.com"), 0, S("mtasts"),
	  S(".example.com") },
	{ "PFX-1 empty name is returned for the caller", S(" example.com"), 0, S(""),
	  S("example.com") },
	{ "PFX-1 lone SP gives empty name and key", S(" "), 0, S(""), S("") },
	{ "PFX-1 key bytes are passed through", S("m \0\xff\t"), 0, S("m"), S("\0\xff\t") },
	{ "PFX-1 no SP at all is malformed", S("mtasts"), -1, NULL, 0, NULL, 0 },
	{ "PFX-3 empty payload 0:, is malformed", S(""), -1, NULL, 0, NULL, 0 },
	{ "PFX-1 tab is not the separator", S("mtasts\texample.com"), -1, NULL, 0, NULL, 0 },
};

static void
test_parse_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];
		char *in = exact_copy(c->in, c->in_len);
		struct socketmap_request req;

		CHECK(c->rule, socketmap_parse_request(in, c->in_len, &req) == c->want);
		if (c->want == 0) {
			CHECK(c->rule, req.name == in);
			CHECK(c->rule, req.name_len == c->name_len);
			CHECK(c->rule, memcmp(req.name, c->name, c->name_len) == 0);
			CHECK(c->rule, req.key_len == c->key_len);
			CHECK(c->rule, req.key + req.key_len == in + c->in_len);
			CHECK(c->rule, memcmp(req.key, c->key, c->key_len) == 0);
		}
		free(in);
	}
}

/* PFX-1: "0:," decodes as a frame, and its payload is then a malformed request. */
static void
test_parse_empty_frame(void **state)
{
	static const char rule[] = "PFX-3 frame 0:, gives parse_request -1";
	const char *payload;
	size_t plen, consumed;
	enum netstring_error err;
	struct socketmap_request req;

	(void)state;
	CHECK(rule, netstring_decode("0:,", 3, NETSTRING_CAP_DEFAULT, &payload, &plen, &consumed,
	                             &err) == NETSTRING_FRAME);
	CHECK(rule, socketmap_parse_request(payload, plen, &req) == -1);
	/* An empty view may come with no pointer at all; UBSan checks nothing reads through it. */
	CHECK(rule, socketmap_parse_request(NULL, 0, &req) == -1);
}

struct format_case {
	const char *rule;
	enum socketmap_status status;
	const char *data;
	size_t len;
	int want;
	const char *out;
	size_t out_len;
};

static const struct format_case format_cases[] = {
	{ "PFX-1 OK with data", SOCKETMAP_OK, S("secure match=.example.com"), 0,
	  S("28:OK secure match=.example.com,") },
	{ "PFX-1 OK with empty data", SOCKETMAP_OK, S(""), 0, S("3:OK ,") },
	{ "PFX-1 NOTFOUND has a trailing space", SOCKETMAP_NOTFOUND, NULL, 0, 0,
	  S("9:NOTFOUND ,") },
	{ "PFX-1 NOTFOUND drops data", SOCKETMAP_NOTFOUND, S("ignored"), 0, S("9:NOTFOUND ,") },
	{ "PFX-1 TEMP with reason", SOCKETMAP_TEMP, S("store unreachable"), 0,
	  S("22:TEMP store unreachable,") },
	{ "PFX-1 TIMEOUT with reason", SOCKETMAP_TIMEOUT, S("slow"), 0, S("12:TIMEOUT slow,") },
	{ "PFX-3 PERM with reason", SOCKETMAP_PERM, S("malformed request"), 0,
	  S("22:PERM malformed request,") },
	{ "PFX-1 data may hold ',' ':' and non-ASCII", SOCKETMAP_OK, S("a,b:\xc3\xa9"), 0,
	  S("9:OK a,b:\xc3\xa9,") },
	{ "PFX-1 NUL in data rejected", SOCKETMAP_OK, S("secure\0x"), -1, S("") },
	{ "PFX-1 NUL in reason rejected", SOCKETMAP_TEMP, S("\0"), -1, S("") },
	{ "PFX-1 unknown status rejected", (enum socketmap_status)99, S("x"), -1, S("") },
};

static void
test_format_table(void **state)
{
	static const char prefix[] = "7:prev ok,";

	(void)state;
	for (size_t i = 0; i < sizeof(format_cases) / sizeof(format_cases[0]); i++) {
		const struct format_case *c = &format_cases[i];
		struct strbuf sb;

		/* Earlier output in the buffer must survive a refused reply untouched. */
		strbuf_init(&sb, REPLY_BUF_MAX);
		assert_int_equal(strbuf_appends(&sb, prefix), 0);
		CHECK(c->rule, socketmap_format_reply(&sb, c->status, c->data, c->len) == c->want);
		CHECK(c->rule, sb.len == sizeof(prefix) - 1 + c->out_len);
		CHECK(c->rule, memcmp(sb.data, prefix, sizeof(prefix) - 1) == 0);
		CHECK(c->rule, memcmp(sb.data + sizeof(prefix) - 1, c->out, c->out_len) == 0);
		strbuf_release(&sb);
	}
}

struct limit_case {
	const char *rule;
	enum socketmap_status status;
	size_t data_len;
	size_t buf_max;
	int want;
};

/* Payload = "<STATUS> " + data; the limit counts the payload, not the netstring wrapper. */
static const struct limit_case limit_cases[] = {
	{ "PFX-1 OK payload of exactly 100000 accepted", SOCKETMAP_OK, SOCKETMAP_REPLY_MAX - 3,
	  REPLY_BUF_MAX, 0 },
	{ "PFX-1 OK payload of 100001 rejected", SOCKETMAP_OK, SOCKETMAP_REPLY_MAX - 2,
	  REPLY_BUF_MAX, -1 },
	{ "PFX-1 TEMP payload of exactly 100000 accepted", SOCKETMAP_TEMP, SOCKETMAP_REPLY_MAX - 5,
	  REPLY_BUF_MAX, 0 },
	{ "PFX-1 TEMP payload of 100001 rejected", SOCKETMAP_TEMP, SOCKETMAP_REPLY_MAX - 4,
	  REPLY_BUF_MAX, -1 },
	{ "PFX-1 TIMEOUT payload of 100001 rejected", SOCKETMAP_TIMEOUT, SOCKETMAP_REPLY_MAX - 7,
	  REPLY_BUF_MAX, -1 },
	{ "PFX-1 huge length rejected without overflow", SOCKETMAP_OK, SIZE_MAX, REPLY_BUF_MAX,
	  -1 },
	/* The buffer holds one byte of earlier output, then "103:OK " + 100 bytes + ",". */
	{ "PFX-1 reply exactly at the buffer max accepted", SOCKETMAP_OK, 100, 1 + 4 + 3 + 100 + 1,
	  0 },
	{ "PFX-1 reply one past the buffer max rejected", SOCKETMAP_OK, 100, 4 + 3 + 100 + 1, -1 },
};

static void
test_format_limits(void **state)
{
	char *data = xmalloc(SOCKETMAP_REPLY_MAX);

	(void)state;
	memset(data, 'a', SOCKETMAP_REPLY_MAX);
	for (size_t i = 0; i < sizeof(limit_cases) / sizeof(limit_cases[0]); i++) {
		const struct limit_case *c = &limit_cases[i];
		struct strbuf sb;
		const char *payload;
		size_t plen, consumed;
		enum netstring_error err;

		strbuf_init(&sb, c->buf_max);
		assert_int_equal(strbuf_appendc(&sb, 'p'), 0);
		/* A SIZE_MAX length is refused before data is read, so any pointer will do. */
		CHECK(c->rule,
		      socketmap_format_reply(&sb, c->status, data, c->data_len) == c->want);
		if (c->want == -1) {
			CHECK(c->rule, sb.len == 1 && sb.data[0] == 'p' && sb.data[1] == '\0');
		} else {
			CHECK(c->rule, netstring_decode(sb.data + 1, sb.len - 1,
			                                SOCKETMAP_REPLY_MAX, &payload, &plen,
			                                &consumed, &err) == NETSTRING_FRAME);
			CHECK(c->rule, consumed == sb.len - 1);
			CHECK(c->rule, plen <= SOCKETMAP_REPLY_MAX);
			CHECK(c->rule,
			      plen == strlen(socketmap_status_str(c->status)) + 1 + c->data_len);
		}
		strbuf_release(&sb);
	}
	free(data);
}

/* PFX-1: Postfix splits the reply at the first SP; the status word must come out intact. */
static void
test_format_round_trip(void **state)
{
	static const enum socketmap_status all[] = {
		SOCKETMAP_OK, SOCKETMAP_NOTFOUND, SOCKETMAP_TEMP, SOCKETMAP_TIMEOUT, SOCKETMAP_PERM,
	};
	static const char data[] = "secure match=mx.example.com:.example.net";

	(void)state;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		const char *rule = socketmap_status_str(all[i]);
		struct strbuf sb;
		const char *payload, *sp;
		size_t plen, consumed;
		enum netstring_error err;

		strbuf_init(&sb, REPLY_BUF_MAX);
		CHECK(rule, socketmap_format_reply(&sb, all[i], data, sizeof(data) - 1) == 0);
		CHECK(rule, netstring_decode(sb.data, sb.len, SOCKETMAP_REPLY_MAX, &payload, &plen,
		                             &consumed, &err) == NETSTRING_FRAME);
		sp = memchr(payload, ' ', plen);
		CHECK(rule, sp != NULL);
		CHECK(rule, (size_t)(sp - payload) == strlen(rule));
		CHECK(rule, memcmp(payload, rule, strlen(rule)) == 0);
		if (all[i] == SOCKETMAP_NOTFOUND)
			CHECK(rule, sp + 1 == payload + plen);
		else
			CHECK(rule, plen - strlen(rule) - 1 == sizeof(data) - 1 &&
			                    memcmp(sp + 1, data, sizeof(data) - 1) == 0);
		strbuf_release(&sb);
	}
}

static void
test_status_str(void **state)
{
	static const struct {
		enum socketmap_status status;
		const char *name;
	} names[] = {
		{ SOCKETMAP_OK, "OK" },     { SOCKETMAP_NOTFOUND, "NOTFOUND" },
		{ SOCKETMAP_TEMP, "TEMP" }, { SOCKETMAP_TIMEOUT, "TIMEOUT" },
		{ SOCKETMAP_PERM, "PERM" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_string_equal(socketmap_status_str(names[i].status), names[i].name);
	assert_non_null(socketmap_status_str((enum socketmap_status)99));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),       cmocka_unit_test(test_parse_empty_frame),
		cmocka_unit_test(test_format_table),      cmocka_unit_test(test_format_limits),
		cmocka_unit_test(test_format_round_trip), cmocka_unit_test(test_status_str),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
