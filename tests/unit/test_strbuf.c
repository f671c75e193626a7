/* test_strbuf.c: the bounded reply buffer never passes its maximum and fails atomically. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/strbuf.h"

static void
test_append_within_max(void **state)
{
	struct strbuf sb;

	strbuf_init(&sb, 10);
	assert_int_equal(strbuf_appends(&sb, "hello"), 0);
	assert_int_equal(strbuf_appendc(&sb, ' '), 0);
	assert_int_equal(strbuf_appendf(&sb, "%d", 123), 0);
	assert_int_equal(sb.len, 9);
	assert_string_equal(sb.data, "hello 123");
	/* Exactly at max is accepted. */
	assert_int_equal(strbuf_appendc(&sb, '!'), 0);
	assert_int_equal(sb.len, 10);
	strbuf_release(&sb);
}

static void
test_over_max_leaves_buffer_unchanged(void **state)
{
	struct strbuf sb;

	strbuf_init(&sb, 8);
	assert_int_equal(strbuf_appends(&sb, "abcdef"), 0);
	assert_int_equal(strbuf_appends(&sb, "xyz"), -1);
	assert_int_equal(strbuf_appendf(&sb, "%s", "123"), -1);
	assert_int_equal(sb.len, 6);
	assert_string_equal(sb.data, "abcdef");
	strbuf_truncate(&sb, 2);
	assert_string_equal(sb.data, "ab");
	strbuf_reset(&sb);
	assert_int_equal(sb.len, 0);
	assert_string_equal(sb.data, "");
	strbuf_release(&sb);
}

static void
test_grows_past_initial_capacity(void **state)
{
	struct strbuf sb;
	char big[5000];

	memset(big, 'a', sizeof(big));
	strbuf_init(&sb, 100000);
	for (int i = 0; i < 20; i++)
		assert_int_equal(strbuf_append(&sb, big, sizeof(big)), 0);
	assert_int_equal(sb.len, 100000);
	assert_int_equal(strbuf_appendc(&sb, 'a'), -1);
	assert_int_equal(sb.data[sb.len], '\0');
	strbuf_release(&sb);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_within_max),
		cmocka_unit_test(test_over_max_leaves_buffer_unchanged),
		cmocka_unit_test(test_grows_past_initial_capacity),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
