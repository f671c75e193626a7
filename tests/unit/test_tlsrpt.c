/* test_tlsrpt.c: unit tests for the _smtp._tls TLS-RPT record (RFC 8460 §3; TLSRPT-1..7). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sts/tlsrpt.h"

struct tlsrpt_case {
	const char *name;
	const char *rr[3]; /* one string per RR; NULL ends */
	enum tlsrpt_result want;
	const char *rua; /* kept URIs joined with ' ' on TLSRPT_OK */
	const char *reason;
};

static const struct tlsrpt_case cases[] = {
	{ "TLSRPT-4 minimal mailto",
	  { "v=TLSRPTv1; rua=mailto:tlsrpt@example.com" },
	  TLSRPT_OK,
	  "mailto:tlsrpt@example.com",
	  NULL },
	{ "TLSRPT-6 comma list, WSP around commas",
	  { "v=TLSRPTv1;rua=mailto:a@example.com , https://r.example.com/x" },
	  TLSRPT_OK,
	  "mailto:a@example.com https://r.example.com/x",
	  NULL },
	{ "TLSRPT-6 several rua fields: union in order",
	  { "v=TLSRPTv1; rua=mailto:a@example.com; rua=https://r.example.com/;" },
	  TLSRPT_OK,
	  "mailto:a@example.com https://r.example.com/",
	  NULL },
	{ "TLSRPT-4 erratum-style WSP before ';'",
	  { "v=TLSRPTv1 ;rua=mailto:a@example.com" },
	  TLSRPT_OK,
	  "mailto:a@example.com",
	  NULL },
	{ "TLSRPT-7.7 extension ignored",
	  { "v=TLSRPTv1; ext_1=foo; rua=mailto:a@example.com" },
	  TLSRPT_OK,
	  "mailto:a@example.com",
	  NULL },
	{ "TLSRPT-7.4 scheme case-insensitive",
	  { "v=TLSRPTv1; rua=MAILTO:a@example.com" },
	  TLSRPT_OK,
	  "MAILTO:a@example.com",
	  NULL },
	{ "TLSRPT-7.4 unsupported scheme kept out",
	  { "v=TLSRPTv1; rua=ftp://x.example,mailto:a@x.example" },
	  TLSRPT_OK,
	  "mailto:a@x.example",
	  NULL },
	{ "TLSRPT-5 no records", { NULL }, TLSRPT_NONE, NULL, NULL },
	{ "TLSRPT-5 unrelated records", { "v=spf1 -all", "hello" }, TLSRPT_NONE, NULL, NULL },
	{ "TLSRPT-7.2 version is case-sensitive",
	  { "v=tlsrptv1; rua=mailto:a@example.com" },
	  TLSRPT_NONE,
	  NULL,
	  NULL },
	{ "TLSRPT-5 two candidates",
	  { "v=TLSRPTv1; rua=mailto:a@x.example", "v=TLSRPTv1; rua=mailto:b@x.example" },
	  TLSRPT_MULTIPLE,
	  NULL,
	  NULL },
	{ "TLSRPT-7.3 no field",
	  { "v=TLSRPTv1;" },
	  TLSRPT_INVALID,
	  NULL,
	  "no field after v=TLSRPTv1" },
	{ "TLSRPT-7.3 no rua", { "v=TLSRPTv1; ext=1" }, TLSRPT_INVALID, NULL, "no rua field" },
	{ "TLSRPT-7.4 no usable rua",
	  { "v=TLSRPTv1; rua=ftp://x.example" },
	  TLSRPT_INVALID,
	  NULL,
	  "no usable rua (only mailto: and https: are supported)" },
	{ "TLSRPT-7.5 raw '!'",
	  { "v=TLSRPTv1; rua=mailto:a@b.example!10m" },
	  TLSRPT_INVALID,
	  NULL,
	  "raw '!' in a rua URI (must be %21)" },
	{ "TLSRPT-4 rua without scheme",
	  { "v=TLSRPTv1; rua=a@b.example" },
	  TLSRPT_INVALID,
	  NULL,
	  "rua URI without a scheme" },
	{ "TLSRPT-4 mailto without address",
	  { "v=TLSRPTv1; rua=mailto:" },
	  TLSRPT_INVALID,
	  NULL,
	  "mailto: rua without an address" },
	{ "TLSRPT-4 bad percent-encoding",
	  { "v=TLSRPTv1; rua=https://x.example/%2" },
	  TLSRPT_INVALID,
	  NULL,
	  "bad percent-encoding in a rua URI" },
	{ "TLSRPT-4 empty rua", { "v=TLSRPTv1; rua=" }, TLSRPT_INVALID, NULL, "empty rua URI" },
	{ "TLSRPT-7.7 broken extension",
	  { "v=TLSRPTv1; rua=mailto:a@x.example; =x" },
	  TLSRPT_INVALID,
	  NULL,
	  "field name does not start with a letter or digit" },
	{ "TLSRPT-4 fields need ';'",
	  { "v=TLSRPTv1; rua=mailto:a@x.example x=y" },
	  TLSRPT_INVALID,
	  NULL,
	  "fields not separated by ';'" },
};

static void
test_cases(void **state)
{
	static struct tlsrpt_record rec;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tlsrpt_case *c = &cases[i];
		struct txt_chunk ch[3];
		const char *reason = NULL;
		size_t n = 0;
		enum tlsrpt_result r;

		for (; n < 3 && c->rr[n] != NULL; n++)
			ch[n] = (struct txt_chunk){ .data = (const unsigned char *)c->rr[n],
				                    .len = strlen(c->rr[n]),
				                    .record_start = true };
		r = tlsrpt_select(ch, n, &rec, &reason);
		if (r != c->want)
			fail_msg("%s: got %s (%s), want %s", c->name, tlsrpt_result_str(r),
			         reason ? reason : "", tlsrpt_result_str(c->want));
		if (c->reason != NULL)
			assert_string_equal(reason, c->reason);
		if (c->rua != NULL) {
			char joined[512] = "";

			for (const char *u = tlsrpt_rua_next(&rec, NULL); u != NULL;
			     u = tlsrpt_rua_next(&rec, u)) {
				if (joined[0] != '\0')
					strcat(joined, " ");
				strcat(joined, u);
			}
			assert_string_equal(joined, c->rua);
		}
	}
}

/* TLSRPT-5: the strings of one RR are joined with nothing between them. */
static void
test_joined_strings(void **state)
{
	static struct tlsrpt_record rec;
	struct txt_chunk ch[2] = {
		{ .data = (const unsigned char *)"v=TLSRPTv1; rua=mai",
		  .len = 19,
		  .record_start = true },
		{ .data = (const unsigned char *)"lto:a@x.example",
		  .len = 15,
		  .record_start = false },
	};

	assert_int_equal(tlsrpt_select(ch, 2, &rec, NULL), TLSRPT_OK);
	assert_string_equal(tlsrpt_rua_next(&rec, NULL), "mailto:a@x.example");
	assert_null(tlsrpt_rua_next(&rec, tlsrpt_rua_next(&rec, NULL)));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_joined_strings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
