/* test_txt.c: unit tests for _mta-sts TXT record selection and parsing (TXT-1..10). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/xmalloc.h"
#include "sts/txt.h"

#define CHUNKS_MAX 4

struct txt_case_chunk {
	const char *s;
	size_t len;
	bool start;
};

struct txt_case {
	const char *name;
	struct txt_case_chunk chunks[CHUNKS_MAX]; /* ends at the first NULL s */
	enum txt_result want;
	const char *id;     /* on TXT_OK */
	const char *reason; /* on TXT_INVALID, when the case pins which rule fired */
};

/* R starts an RR, S continues it with another character-string (TXT-8). */
#define R(str)                                                                                     \
	{                                                                                          \
		.s = str, .len = sizeof(str) - 1, .start = true                                    \
	}
#define S(str)                                                                                     \
	{                                                                                          \
		.s = str, .len = sizeof(str) - 1, .start = false                                   \
	}

/* T: any result; T_OK: TXT_OK with its id; T_WHY: TXT_INVALID with its reason. */
#define T(n, w, ...)                                                                               \
	{                                                                                          \
		.name = n, .want = w, .chunks = { __VA_ARGS__ }                                    \
	}
#define T_OK(n, i, ...)                                                                            \
	{                                                                                          \
		.name = n, .want = TXT_OK, .id = i, .chunks = { __VA_ARGS__ }                      \
	}
#define T_WHY(n, r, ...)                                                                           \
	{                                                                                          \
		.name = n, .want = TXT_INVALID, .reason = r, .chunks = { __VA_ARGS__ }             \
	}

/* The reason a record of valid fields gives when none of them is an sts-id. */
#define TXT_NO_ID "no id field of 1-32 letters or digits"
#define ID32      "abcdefghijklmnopqrstuvwxyz012345"
#define NAME32    "x_-.abcdefghijklmnopqrstuvwxyz01"

static struct txt_case txt_cases[] = {
	/* TXT-6: what is a candidate, and how many there are. */
	T("TXT-10 zero records", TXT_NONE, { 0 }),
	T("TXT-6 only an unrelated record", TXT_NONE, R("v=spf1 -all")),
	T("TXT-6 empty record", TXT_NONE, R("")),
	T("TXT-6 id=1; v=STSv1 is ignored, v must come first", TXT_NONE, R("id=1; v=STSv1")),
	T("TXT-6 v=STSv10; id=1 is not a candidate", TXT_NONE, R("v=STSv10; id=1")),
	T("TXT-6 v=STSv2 is not a candidate", TXT_NONE, R("v=STSv2; id=1")),
	T("TXT-4 case-sensitive: V=STSv1 is not a candidate", TXT_NONE, R("V=STSv1; id=1")),
	T("TXT-4 case-sensitive: v=stsv1 is not a candidate", TXT_NONE, R("v=stsv1; id=1")),
	T("TXT-4 leading space: not a candidate", TXT_NONE, R(" v=STSv1; id=1")),
	T("TXT-6 missing ';' after version: not a candidate", TXT_NONE, R("v=STSv1 id=1")),
	T("TXT-6 bare v=STSv1: not a candidate", TXT_NONE, R("v=STSv1")),
	T_OK("TXT-6 one candidate and v=spf1 is OK", "20160831085700Z",
	     R("v=STSv1; id=20160831085700Z"), R("v=spf1 -all")),
	T_OK("TXT-6 v=spf1 then one candidate is OK", "x1", R("v=spf1 -all"),
	     R("google-site-verification=abc"), R("v=STSv1; id=x1")),
	T("TXT-6 two valid candidates", TXT_MULTIPLE, R("v=STSv1; id=1"), R("v=STSv1; id=2")),
	T("TXT-6 two identical candidates", TXT_MULTIPLE, R("v=STSv1; id=1"), R("v=STSv1; id=1")),
	T("TXT-6 valid and invalid candidate", TXT_MULTIPLE, R("v=STSv1; id=1"), R("v=STSv1;")),
	T("TXT-6 two invalid candidates", TXT_MULTIPLE, R("v=STSv1;"), R("v=STSv1 ;;")),
	T_OK("TXT-6 near miss beside a candidate is not counted", "7", R("id=1; v=STSv1"),
	     R("v=STSv1; id=7"), R("v=STSv10; id=2")),

	/* TXT-8: the strings of one RR are joined with nothing between them. */
	T_OK("TXT-8 \"v=STSv1; id=\" \"abc\" joined without space", "abc", R("v=STSv1; id="),
	     S("abc")),
	T_OK("TXT-8 candidate prefix split across strings", "9", R("v=ST"), S("Sv1;"), S(" id=9")),
	T_OK("TXT-8 empty string inside an RR", "ab", R("v=STSv1; id=a"), S(""), S("b")),
	T("TXT-8 a space at a string edge is kept: trailing WSP", TXT_INVALID, R("v=STSv1; id=1"),
	  S(" ")),
	T_OK("TXT-8 joining only within an RR: next RR is separate", "1", R("v=STSv1; id=1"),
	     R("23")),
	T_OK("TXT-8 two strings of one RR are one record, not two candidates", "1", R("v=STSv1;"),
	     S("v=STSv1; id=1")),
	T_OK("TXT-8 joined strings form a candidate that alone is not", "5", R("v=STSv1"),
	     S(";id=5"), R("v=STSv1")),

	/* TXT-4 and TXT-6 (erratum 6285): WSP around ';' and the trailing delimiter. */
	T_OK("TXT-6 erratum 6285: v=STSv1 ;id=1", "1", R("v=STSv1 ;id=1")),
	T_OK("TXT-4 no WSP at all", "1", R("v=STSv1;id=1")),
	T_OK("TXT-4 HTAB around ';'", "1", R("v=STSv1\t;\tid=1")),
	T_OK("TXT-4 WSP runs around ';'", "1", R("v=STSv1 \t ; \t id=1")),
	T_OK("TXT-4 trailing ';'", "1", R("v=STSv1; id=1;")),
	T_OK("TXT-4 trailing '; '", "1", R("v=STSv1; id=1; ")),
	T_OK("TXT-4 trailing WSP then ';' then WSP", "1", R("v=STSv1;\tid=1 \t;\t ")),
	T_WHY("TXT-4 trailing SP without ';'", "trailing whitespace without ';'",
	      R("v=STSv1; id=1 ")),
	T("TXT-4 trailing HTAB without ';'", TXT_INVALID, R("v=STSv1; id=1\t")),
	T_WHY("TXT-4 ';;' at the end", "empty field", R("v=STSv1; id=1;;")),
	T("TXT-4 ';;' in the middle", TXT_INVALID, R("v=STSv1;; id=1")),
	T("TXT-4 '; ;' is still an empty field", TXT_INVALID, R("v=STSv1; id=1; ;")),
	T("TXT-4 fields without ';' between them", TXT_INVALID, R("v=STSv1; id=1 x=2")),

	/* TXT-4: the sts-id. */
	T_OK("TXT-3 id is kept byte for byte, case included", "AbC123", R("v=STSv1; id=AbC123")),
	T_OK("TXT-4 32-character id", ID32, R("v=STSv1; id=" ID32)),
	T_WHY("TXT-4 33-character id is an extension, so no sts-id", TXT_NO_ID,
	      R("v=STSv1; id=" ID32 "6")),
	T("TXT-4 empty id", TXT_INVALID, R("v=STSv1; id=")),
	T_WHY("TXT-4 id=2024-06-01 is an extension, so no sts-id", TXT_NO_ID,
	      R("v=STSv1; id=2024-06-01")),
	T("TXT-4 id=a.b is an extension, so no sts-id", TXT_INVALID, R("v=STSv1; id=a.b")),
	T("TXT-4 case-sensitive id=: ID=1 is an extension", TXT_INVALID, R("v=STSv1; ID=1")),
	T("TXT-4 v=STSv1; alone has no field", TXT_INVALID, R("v=STSv1;")),
	T_WHY("TXT-4 v=STSv1; ext=1 has no id", TXT_NO_ID, R("v=STSv1; ext=1")),
	T_OK("TXT-4 duplicate id: first wins", "a", R("v=STSv1; id=a; id=b")),
	T_OK("TXT-4 id=abc; id=2024-06-01: the second is an extension", "abc",
	     R("v=STSv1; id=abc; id=2024-06-01")),
	T_OK("TXT-4 id=2024-06-01; id=abc: the first sts-id is abc", "abc",
	     R("v=STSv1; id=2024-06-01; id=abc")),
	T_OK("TXT-4 id=<33 chars>; id=abc: the first sts-id is abc", "abc",
	     R("v=STSv1; id=" ID32 "6; id=abc")),
	T_OK("TXT-5 id after extensions", "z", R("v=STSv1; a=1; b=2; id=z")),
	T_OK("TXT-5 a repeated v=STSv1 is an extension", "1", R("v=STSv1; v=STSv1; id=1")),

	/* TXT-4: extensions. */
	T_OK("TXT-4 extension value of visible ASCII", "1", R("v=STSv1; id=1; x=a:b/c,d\"e~")),
	T("TXT-4 note=a b: SP in a value", TXT_INVALID, R("v=STSv1; id=1; note=a b")),
	T("TXT-4 x=a=b: '=' in a value", TXT_INVALID, R("v=STSv1; id=1; x=a=b")),
	T("TXT-4 empty extension value", TXT_INVALID, R("v=STSv1; id=1; x=")),
	T_OK("TXT-4 extension name of 32 characters", "1", R("v=STSv1; id=1; " NAME32 "=v")),
	T("TXT-4 extension name of 33 characters", TXT_INVALID, R("v=STSv1; id=1; " NAME32 "2=v")),
	T("TXT-4 extension name starting with '_'", TXT_INVALID, R("v=STSv1; id=1; _x=1")),
	T("TXT-4 extension name starting with '-'", TXT_INVALID, R("v=STSv1; id=1; -x=1")),
	T("TXT-4 extension with no name", TXT_INVALID, R("v=STSv1; id=1; =1")),
	T("TXT-4 extension with no '='", TXT_INVALID, R("v=STSv1; id=1; flag")),
	T("TXT-4 extension name with '!'", TXT_INVALID, R("v=STSv1; id=1; a!b=1")),

	/* TXT-2: US-ASCII only; a control byte only as HTAB in WSP. */
	T_WHY("TXT-2 byte 0x80", "non-ASCII byte", R("v=STSv1; id=1; x=\x80")),
	T("TXT-2 byte 0xff in the id", TXT_INVALID, R("v=STSv1; id=1\xff")),
	T("TXT-2 UTF-8 in a value", TXT_INVALID, R("v=STSv1; id=1; x=\xc3\xbc")),
	T_WHY("TXT-2 DEL byte", "control byte", R("v=STSv1; id=1; x=a\x7f")),
	T("TXT-2 NUL byte", TXT_INVALID, R("v=STSv1; id=1\0")),
	T("TXT-2 trailing LF", TXT_INVALID, R("v=STSv1; id=1\n")),
	T_WHY("TXT-2 CR in WSP", "control byte", R("v=STSv1;\rid=1")),
	T_OK("TXT-2 non-ASCII in a non-candidate is ignored", "1", R("caf\xc3\xa9=1"),
	     R("v=STSv1; id=1")),
};

static struct txt_chunk *
make_chunks(const struct txt_case *c, size_t *n)
{
	struct txt_chunk *out = xcalloc(CHUNKS_MAX, sizeof(*out));

	*n = 0;
	while (*n < CHUNKS_MAX && c->chunks[*n].s != NULL) {
		const struct txt_case_chunk *in = &c->chunks[*n];
		unsigned char *copy = xmalloc(in->len);

		/* Exact-size copies without a NUL, so ASan catches a read past any chunk. */
		if (in->len > 0)
			memcpy(copy, in->s, in->len);
		out[*n] = (struct txt_chunk){ .data = copy,
			                      .len = in->len,
			                      .record_start = in->start };
		(*n)++;
	}
	return out;
}

static void
free_chunks(struct txt_chunk *chunks, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free((void *)chunks[i].data);
	free(chunks);
}

static void
test_txt_case(void **state)
{
	const struct txt_case *c = *state;
	struct txt_record rec;
	const char *reason = NULL;
	size_t n;
	struct txt_chunk *chunks = make_chunks(c, &n);
	enum txt_result got = txt_select(chunks, n, &rec, &reason);

	free_chunks(chunks, n);
	if (got != c->want)
		fail_msg("%s: got %s, want %s (%s)", c->name, txt_result_str(got),
		         txt_result_str(c->want), reason != NULL ? reason : "-");
	if (got == TXT_OK)
		assert_string_equal(rec.id, c->id);
	if (got == TXT_INVALID) {
		assert_non_null(reason);
		assert_true(reason[0] != '\0');
		if (c->reason != NULL)
			assert_string_equal(reason, c->reason);
	}
}

struct cand_case {
	const char *name;
	const char *s;
	size_t len;
	bool want;
};

#define CAND(n, str, w)                                                                            \
	{                                                                                          \
		.name = n, .s = str, .len = sizeof(str) - 1, .want = w                             \
	}

static struct cand_case cand_cases[] = {
	CAND("candidate: v=STSv1;", "v=STSv1;", true),
	CAND("candidate: v=STSv1 SP HTAB ;", "v=STSv1 \t;", true),
	CAND("candidate: anything after ';'", "v=STSv1;\x80\x01", true),
	CAND("candidate: no ';'", "v=STSv1", false),
	CAND("candidate: WSP but no ';'", "v=STSv1  ", false),
	CAND("candidate: v=STSv10;", "v=STSv10;", false),
	CAND("candidate: CR before ';'", "v=STSv1\r;", false),
	CAND("candidate: prefix only", "v=STS", false),
	CAND("candidate: empty", "", false),
	CAND("candidate: NUL inside the prefix", "v=ST\0Sv1;", false),
};

static void
test_cand_case(void **state)
{
	const struct cand_case *c = *state;
	char *s = xmalloc(c->len);

	if (c->len > 0)
		memcpy(s, c->s, c->len);
	bool got = txt_is_candidate(s, c->len);
	free(s);
	if (got != c->want)
		fail_msg("%s: got %d", c->name, got);
}

/*
 * A candidate of n bytes in DNS-sized strings of 255: "v=STSv1; id=1; x=" then 'a' up to n,
 * with fill bytes ahead of the ';' when wsp is set.
 */
static struct txt_chunk *
long_record(size_t n, bool wsp, size_t *nchunks)
{
	static const char head[] = "v=STSv1; id=1; x=";
	char *buf = xmalloc(n);
	size_t count = (n + 254) / 255;
	struct txt_chunk *chunks = xcalloc(count, sizeof(*chunks));

	memset(buf, 'a', n);
	if (wsp) {
		memcpy(buf, "v=STSv1", 7);
		memset(buf + 7, ' ', n - 7 - 5);
		memcpy(buf + n - 5, ";id=1", 5);
	} else {
		memcpy(buf, head, sizeof(head) - 1);
	}
	for (size_t i = 0; i < count; i++) {
		size_t len = n - i * 255 < 255 ? n - i * 255 : 255;
		unsigned char *p = xmalloc(len);

		memcpy(p, buf + i * 255, len);
		chunks[i] = (struct txt_chunk){ .data = p, .len = len, .record_start = i == 0 };
	}
	free(buf);
	*nchunks = count;
	return chunks;
}

static enum txt_result
select_long(size_t n, bool wsp, struct txt_record *rec)
{
	size_t count;
	struct txt_chunk *chunks = long_record(n, wsp, &count);
	enum txt_result r = txt_select(chunks, count, rec, NULL);

	free_chunks(chunks, count);
	return r;
}

/* The cap applies after concatenation (TXT-8): 8192 bytes pass, 8193 do not. */
static void
test_txt_record_max(void **state)
{
	struct txt_record rec;

	(void)state;
	assert_int_equal(select_long(TXT_RECORD_MAX, false, &rec), TXT_OK);
	assert_string_equal(rec.id, "1");
	assert_int_equal(select_long(TXT_RECORD_MAX + 1, false, &rec), TXT_INVALID);
	assert_int_equal(select_long(1 << 20, false, &rec), TXT_INVALID);
}

/* A WSP run longer than the cap before ';' is still a candidate (TXT-6), so it counts. */
static void
test_txt_long_wsp_candidate(void **state)
{
	struct txt_record rec;
	size_t count;
	struct txt_chunk *chunks = long_record(TXT_RECORD_MAX * 2, true, &count);
	struct txt_chunk *two = xcalloc(count + 1, sizeof(*two));
	static const unsigned char other[] = "v=STSv1; id=2";

	(void)state;
	assert_int_equal(txt_select(chunks, count, &rec, NULL), TXT_INVALID);
	memcpy(two, chunks, count * sizeof(*two));
	two[count] =
	        (struct txt_chunk){ .data = other, .len = sizeof(other) - 1, .record_start = true };
	assert_int_equal(txt_select(two, count + 1, &rec, NULL), TXT_MULTIPLE);
	free(two);
	free_chunks(chunks, count);
}

/* A chunk list not starting a record is treated as starting one (txt.h). */
static void
test_txt_first_chunk_without_start(void **state)
{
	static const unsigned char a[] = "v=STSv1; id=", b[] = "q";
	const struct txt_chunk chunks[] = {
		{ .data = a, .len = sizeof(a) - 1, .record_start = false },
		{ .data = b, .len = sizeof(b) - 1, .record_start = false },
	};
	struct txt_record rec;

	(void)state;
	assert_int_equal(txt_select(chunks, 2, &rec, NULL), TXT_OK);
	assert_string_equal(rec.id, "q");
}

/* txt_parse on its own: the version check and the cap, which select never hands it. */
static void
test_txt_parse_direct(void **state)
{
	struct txt_record rec;
	const char *reason = NULL;
	char *big = xmalloc(TXT_RECORD_MAX + 1);

	(void)state;
	assert_int_equal(txt_parse("v=STSv1", 7, &rec, &reason), -1);
	assert_non_null(reason);
	reason = NULL;
	assert_int_equal(txt_parse("v=STSv10; id=1", 14, &rec, &reason), -1);
	assert_non_null(reason);
	assert_int_equal(txt_parse("x", 1, &rec, NULL), -1);
	assert_int_equal(txt_parse("", 0, &rec, NULL), -1);
	assert_int_equal(txt_parse("v=STSv1; id=1", 13, &rec, NULL), 0);
	assert_string_equal(rec.id, "1");
	memset(big, 'a', TXT_RECORD_MAX + 1);
	memcpy(big, "v=STSv1; id=1; x=", 17);
	assert_int_equal(txt_parse(big, TXT_RECORD_MAX, &rec, NULL), 0);
	assert_int_equal(txt_parse(big, TXT_RECORD_MAX + 1, &rec, NULL), -1);
	free(big);
}

static void
test_txt_result_str(void **state)
{
	(void)state;
	assert_string_equal(txt_result_str(TXT_OK), "ok");
	assert_string_equal(txt_result_str(TXT_NONE), "none");
	assert_string_equal(txt_result_str(TXT_MULTIPLE), "multiple");
	assert_string_equal(txt_result_str(TXT_INVALID), "invalid");
	assert_string_equal(txt_result_str((enum txt_result)99), "unknown");
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

int
main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_txt_record_max),
		cmocka_unit_test(test_txt_long_wsp_candidate),
		cmocka_unit_test(test_txt_first_chunk_without_start),
		cmocka_unit_test(test_txt_parse_direct),
		cmocka_unit_test(test_txt_result_str),
	};
	size_t n = NELEM(txt_cases) + NELEM(cand_cases) + NELEM(fixed);
	struct CMUnitTest *tests = xcalloc(n, sizeof(*tests));
	size_t t = 0;
	int rc;

	/* One named TAP line per table row, so a failure names the rule it breaks. */
	for (size_t i = 0; i < NELEM(txt_cases); i++)
		tests[t++] = (struct CMUnitTest){ .name = txt_cases[i].name,
			                          .test_func = test_txt_case,
			                          .initial_state = &txt_cases[i] };
	for (size_t i = 0; i < NELEM(cand_cases); i++)
		tests[t++] = (struct CMUnitTest){ .name = cand_cases[i].name,
			                          .test_func = test_cand_case,
			                          .initial_state = &cand_cases[i] };
	for (size_t i = 0; i < NELEM(fixed); i++)
		tests[t++] = fixed[i];
	rc = _cmocka_run_group_tests("txt", tests, t, NULL, NULL);
	free(tests);
	return rc;
}
