/* test_mediatype.c: the policy response's Content-Type check (POL-2). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sts/mediatype.h"

struct mt_case {
	const char *rule;
	const char *value;
	bool ok;
};

static const struct mt_case cases[] = {
	{ "POL-2 exact", "text/plain", true },
	{ "POL-2 case-insensitive type", "Text/PLAIN", true },
	{ "POL-2 charset utf-8 ignored", "text/plain; charset=utf-8", true },
	{ "POL-2 other charset ignored, never an error", "text/plain;charset=iso-8859-1", true },
	{ "POL-2 extra parameters ignored", "text/plain; charset=us-ascii; format=flowed", true },
	{ "POL-2 surrounding WSP", "  text/plain  ; charset=utf-8", true },
	{ "POL-2 missing header", NULL, false },
	{ "POL-2 empty header", "", false },
	{ "POL-2 html rejected", "text/html", false },
	{ "POL-2 prefix is not a match", "text/plainx", false },
	{ "POL-2 octet-stream rejected", "application/octet-stream", false },
	{ "POL-2 truncated type", "text/", false },
};

static void
test_cases(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool got = mediatype_is_text_plain(cases[i].value);

		if (got != cases[i].ok)
			fail_msg("%s: \"%s\" gave %d", cases[i].rule,
			         cases[i].value != NULL ? cases[i].value : "(null)", got);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
