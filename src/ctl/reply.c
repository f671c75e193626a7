/* reply.c: incremental, zero-copy decoding of control-protocol replies ("OK <len>\n<body>"). */
#include "config.h"

#include "ctl/reply.h"

#include <stdbool.h>
#include <string.h>

static const char *const reply_error_names[] = {
	[REPLY_ERR_NONE] = "no error",
	[REPLY_ERR_STATUS] = "reply does not start with \"OK \" or \"ERR \"",
	[REPLY_ERR_EMPTY_LENGTH] = "empty reply length",
	[REPLY_ERR_NOT_DIGIT] = "non-digit in reply length",
	[REPLY_ERR_LENGTH_LONG] = "too many digits in reply length",
	[REPLY_ERR_OVER_CAP] = "reply length over the size limit",
	[REPLY_ERR_BAD_EOL] = "CR not followed by LF after the reply length",
};

static const struct {
	const char *word; /* with its space */
	enum reply_kind kind;
} reply_words[] = {
	{ "OK ", REPLY_OK },
	{ "ERR ", REPLY_ERR },
};

static bool
reply_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Matches the status word; returns its length, 0 when more input is needed, -1 for garbage. */
static int
reply_match_word(const char *buf, size_t len, enum reply_kind *kind)
{
	for (size_t w = 0; w < sizeof(reply_words) / sizeof(reply_words[0]); w++) {
		size_t wlen = strlen(reply_words[w].word);
		size_t n = len < wlen ? len : wlen;

		if (n == 0 || memcmp(buf, reply_words[w].word, n) != 0)
			continue;
		if (n < wlen)
			return 0;
		*kind = reply_words[w].kind;
		return (int)wlen;
	}
	return len == 0 ? 0 : -1;
}

enum reply_status
reply_decode(const char *buf, size_t len, size_t cap, struct reply *out, enum reply_error *err)
{
	enum reply_kind kind = REPLY_OK;
	size_t i, start, value = 0;
	int wlen;

	memset(out, 0, sizeof(*out));
	*err = REPLY_ERR_NONE;
	wlen = reply_match_word(buf, len, &kind);
	if (wlen == -1) {
		*err = REPLY_ERR_STATUS;
		return REPLY_ERROR;
	}
	if (wlen == 0)
		return REPLY_NEED_MORE;
	start = (size_t)wlen;
	for (i = start; i < len && reply_is_digit(buf[i]); i++) {
		size_t d = (size_t)(buf[i] - '0');

		if (i - start >= REPLY_LEN_DIGITS_MAX) {
			*err = REPLY_ERR_LENGTH_LONG;
			return REPLY_ERROR;
		}
		/* value * 10 + d > cap, written so that it cannot overflow whatever cap is. */
		if (d > cap || value > (cap - d) / 10) {
			*err = REPLY_ERR_OVER_CAP;
			return REPLY_ERROR;
		}
		value = value * 10 + d;
	}
	if (i == len)
		return REPLY_NEED_MORE;
	if (buf[i] != '\r' && buf[i] != '\n') {
		*err = REPLY_ERR_NOT_DIGIT;
		return REPLY_ERROR;
	}
	if (i == start) {
		*err = REPLY_ERR_EMPTY_LENGTH;
		return REPLY_ERROR;
	}
	if (buf[i] == '\r') {
		if (++i == len)
			return REPLY_NEED_MORE;
		if (buf[i] != '\n') {
			*err = REPLY_ERR_BAD_EOL;
			return REPLY_ERROR;
		}
	}
	i++;
	if (len - i < value)
		return REPLY_NEED_MORE;
	out->kind = kind;
	out->body = buf + i;
	out->body_len = value;
	out->consumed = i + value;
	return REPLY_COMPLETE;
}

const char *
reply_error_str(enum reply_error err)
{
	if ((size_t)err >= sizeof(reply_error_names) / sizeof(reply_error_names[0]))
		return "unknown reply error";
	return reply_error_names[err];
}
