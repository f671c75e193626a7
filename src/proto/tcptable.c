/* tcptable.c: Postfix tcp_table(5) requests ("get key" LF) and replies ("200 data" LF). */
#include "config.h"

#include "proto/tcptable.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const char *const tcptable_error_names[] = {
	[TCPTABLE_ERR_NONE] = "no error",
	[TCPTABLE_ERR_TOO_LONG] = "request line too long",
	[TCPTABLE_ERR_BAD_COMMAND] = "malformed request: expected \"get key\"",
	[TCPTABLE_ERR_BAD_ESCAPE] = "malformed %XX escape in key",
};

static const char tcptable_get[] = "get ";
static const char tcptable_hex[] = "0123456789ABCDEF";

static int
tcptable_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The bytes Postfix's tcp_table client expects %XX-encoded (tcp_table(5)). */
static bool
tcptable_is_unsafe(unsigned char c)
{
	return c == '%' || c <= 0x20 || c >= 0x7f;
}

/* Decodes src[0..len) into key; returns -1 on a bad escape. The caller sized key. */
static int
tcptable_unescape(const char *src, size_t len, char *key, size_t *key_len)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		int hi, lo;

		if (src[i] != '%') {
			key[n++] = src[i];
			continue;
		}
		if (len - i < 3)
			return -1;
		hi = tcptable_hexval(src[i + 1]);
		lo = tcptable_hexval(src[i + 2]);
		if (hi < 0 || lo < 0)
			return -1;
		key[n++] = (char)(hi << 4 | lo);
		i += 2;
	}
	key[n] = '\0';
	*key_len = n;
	return 0;
}

enum tcptable_status
tcptable_decode(const char *buf, size_t len, char *key, size_t keycap, size_t *key_len,
                size_t *consumed, enum tcptable_error *err)
{
	const char *lf;
	size_t line, raw;

	*key_len = 0;
	*consumed = 0;
	*err = TCPTABLE_ERR_NONE;
	lf = len == 0 ? NULL : memchr(buf, '\n', len < TCPTABLE_LINE_MAX ? len : TCPTABLE_LINE_MAX);
	if (lf == NULL) {
		if (len < TCPTABLE_LINE_MAX)
			return TCPTABLE_NEED_MORE;
		*err = TCPTABLE_ERR_TOO_LONG;
		return TCPTABLE_ERROR;
	}
	*consumed = (size_t)(lf - buf) + 1;
	line = *consumed - 1;
	if (line > 0 && buf[line - 1] == '\r')
		line--;
	if (line < sizeof(tcptable_get) - 1 ||
	    memcmp(buf, tcptable_get, sizeof(tcptable_get) - 1) != 0) {
		*err = TCPTABLE_ERR_BAD_COMMAND;
		return TCPTABLE_BAD;
	}
	raw = line - (sizeof(tcptable_get) - 1);
	/* Decoding never grows the key, so raw bytes plus a NUL always fit in keycap. */
	if (raw >= keycap) {
		*err = TCPTABLE_ERR_TOO_LONG;
		return TCPTABLE_BAD;
	}
	if (tcptable_unescape(buf + sizeof(tcptable_get) - 1, raw, key, key_len) == -1) {
		*err = TCPTABLE_ERR_BAD_ESCAPE;
		return TCPTABLE_BAD;
	}
	return TCPTABLE_REQUEST;
}

const char *
tcptable_error_str(enum tcptable_error err)
{
	if ((size_t)err >= sizeof(tcptable_error_names) / sizeof(tcptable_error_names[0]))
		return "unknown tcp_table error";
	return tcptable_error_names[err];
}

int
tcptable_format_reply(struct strbuf *out, enum tcptable_code code, const char *text, size_t len)
{
	char line[TCPTABLE_LINE_MAX];
	size_t n;

	if (code != TCPTABLE_CODE_OK && code != TCPTABLE_CODE_NOTFOUND &&
	    code != TCPTABLE_CODE_ERROR)
		return -1;
	n = (size_t)snprintf(line, sizeof(line), "%d ", (int)code);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		/* Room for this byte's encoding and the final LF, or the line is too long. */
		if (tcptable_is_unsafe(c)) {
			if (sizeof(line) - n < 3 + 1)
				return -1;
			line[n++] = '%';
			line[n++] = tcptable_hex[c >> 4];
			line[n++] = tcptable_hex[c & 0x0f];
		} else {
			if (sizeof(line) - n < 1 + 1)
				return -1;
			line[n++] = (char)c;
		}
	}
	line[n++] = '\n';
	return strbuf_append(out, line, n);
}
