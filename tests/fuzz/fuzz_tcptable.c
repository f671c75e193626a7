/* fuzz_tcptable.c: libFuzzer target for tcp_table line decoding, %XX round trips and limits. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "proto/tcptable.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_tcptable_check(int ok)
{
	if (!ok)
		abort();
}

static int
fuzz_tcptable_unsafe(unsigned char c)
{
	return c == '%' || c <= 0x20 || c >= 0x7f;
}

/*
 * Formats text under code and checks it against a model: accepted exactly when the encoded
 * line fits TCPTABLE_LINE_MAX, nothing but safe bytes before the one LF, and for 200 the line
 * turned into "get ..." decodes back to text.
 */
static void
fuzz_tcptable_format(enum tcptable_code code, const char *text, size_t len)
{
	char key[TCPTABLE_LINE_MAX];
	size_t want = 4 + 1, key_len, consumed;
	enum tcptable_error err;
	struct strbuf sb;
	int rc;

	for (size_t i = 0; i < len; i++)
		want += fuzz_tcptable_unsafe((unsigned char)text[i]) ? 3 : 1;
	strbuf_init(&sb, 2 * TCPTABLE_LINE_MAX);
	fuzz_tcptable_check(strbuf_appendc(&sb, 'p') == 0);
	rc = tcptable_format_reply(&sb, code, text, len);
	fuzz_tcptable_check(rc == (want <= TCPTABLE_LINE_MAX ? 0 : -1));
	if (rc == -1) {
		fuzz_tcptable_check(sb.len == 1 && sb.data[0] == 'p' && sb.data[1] == '\0');
		strbuf_release(&sb);
		return;
	}
	fuzz_tcptable_check(sb.len == 1 + want && sb.data[sb.len - 1] == '\n');
	for (size_t i = 1 + 4; i < sb.len - 1; i++)
		fuzz_tcptable_check(!fuzz_tcptable_unsafe((unsigned char)sb.data[i]) ||
		                    sb.data[i] == '%');
	if (code == TCPTABLE_CODE_OK) {
		memcpy(sb.data + 1, "get", 3);
		fuzz_tcptable_check(tcptable_decode(sb.data + 1, sb.len - 1, key, sizeof(key),
		                                    &key_len, &consumed, &err) == TCPTABLE_REQUEST);
		fuzz_tcptable_check(consumed == sb.len - 1);
		fuzz_tcptable_check(key_len == len && memcmp(key, text, len) == 0);
	}
	strbuf_release(&sb);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char key[TCPTABLE_LINE_MAX];
	const char *buf;
	size_t len, keycap, off = 0;

	if (size == 0)
		return 0;
	/*
	 * An even first byte is a small key buffer, to reach the keycap refusal; seeds start
	 * with '#' (full buffer) or '$' (36 bytes) to stay readable.
	 */
	keycap = (data[0] & 1) != 0 ? sizeof(key) : data[0];
	buf = (const char *)data + 1;
	len = size - 1;
	fuzz_tcptable_format(TCPTABLE_CODE_OK, buf, len);
	fuzz_tcptable_format(TCPTABLE_CODE_NOTFOUND, buf, len);
	while (off <= len) {
		const char *rest = buf + off, *lf;
		size_t rlen = len - off, key_len, consumed;
		enum tcptable_error err;
		enum tcptable_status st;

		st = tcptable_decode(rest, rlen, key, keycap, &key_len, &consumed, &err);
		lf = rlen == 0 ? NULL : memchr(rest, '\n', rlen);
		if (st == TCPTABLE_NEED_MORE) {
			fuzz_tcptable_check(lf == NULL && rlen < TCPTABLE_LINE_MAX);
			break;
		}
		if (st == TCPTABLE_ERROR) {
			fuzz_tcptable_check(err == TCPTABLE_ERR_TOO_LONG);
			fuzz_tcptable_check(rlen >= TCPTABLE_LINE_MAX &&
			                    (lf == NULL || lf - rest >= TCPTABLE_LINE_MAX));
			break;
		}
		/* A complete line: exactly up to the first LF, within the limit. */
		fuzz_tcptable_check(lf != NULL && consumed == (size_t)(lf - rest) + 1);
		fuzz_tcptable_check(consumed <= rlen && consumed <= TCPTABLE_LINE_MAX);
		if (st == TCPTABLE_REQUEST) {
			fuzz_tcptable_check(err == TCPTABLE_ERR_NONE);
			fuzz_tcptable_check(memcmp(rest, "get ", 4) == 0);
			fuzz_tcptable_check(key_len < keycap && key[key_len] == '\0');
			fuzz_tcptable_check(key_len + 5 <= consumed);
			fuzz_tcptable_format(TCPTABLE_CODE_OK, key, key_len);
		} else {
			fuzz_tcptable_check(st == TCPTABLE_BAD && err != TCPTABLE_ERR_NONE);
			fuzz_tcptable_check(tcptable_error_str(err) != NULL);
		}
		off += consumed;
	}
	return 0;
}
