/* netstring.c: incremental, zero-copy netstring (djb) decoding and encoding (PFX-1). */
#include "config.h"

#include "proto/netstring.h"

#include <stdbool.h>

static const char *const netstring_error_names[] = {
	[NETSTRING_ERR_NONE] = "no error",
	[NETSTRING_ERR_EMPTY_LENGTH] = "empty netstring length",
	[NETSTRING_ERR_NOT_DIGIT] = "non-digit in netstring length",
	[NETSTRING_ERR_LENGTH_LONG] = "too many digits in netstring length",
	[NETSTRING_ERR_OVER_CAP] = "netstring length over the request limit",
	[NETSTRING_ERR_NO_COMMA] = "netstring not terminated by ','",
};

static bool
netstring_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

enum netstring_status
netstring_decode(const char *buf, size_t len, size_t cap, const char **payload, size_t *payload_len,
                 size_t *consumed, enum netstring_error *err)
{
	size_t i, avail, value = 0;

	*payload = NULL;
	*payload_len = 0;
	*consumed = 0;
	*err = NETSTRING_ERR_NONE;
	for (i = 0; i < len && netstring_is_digit(buf[i]); i++) {
		size_t d = (size_t)(buf[i] - '0');

		if (i >= NETSTRING_LEN_DIGITS_MAX) {
			*err = NETSTRING_ERR_LENGTH_LONG;
			return NETSTRING_ERROR;
		}
		/* value * 10 + d > cap, written so that it cannot overflow whatever cap is. */
		if (d > cap || value > (cap - d) / 10) {
			*err = NETSTRING_ERR_OVER_CAP;
			return NETSTRING_ERROR;
		}
		value = value * 10 + d;
	}
	if (i == len)
		return NETSTRING_NEED_MORE;
	if (buf[i] != ':') {
		*err = NETSTRING_ERR_NOT_DIGIT;
		return NETSTRING_ERROR;
	}
	if (i == 0) {
		*err = NETSTRING_ERR_EMPTY_LENGTH;
		return NETSTRING_ERROR;
	}
	i++;
	avail = len - i;
	if (avail <= value)
		return NETSTRING_NEED_MORE;
	if (buf[i + value] != ',') {
		*err = NETSTRING_ERR_NO_COMMA;
		return NETSTRING_ERROR;
	}
	*payload = buf + i;
	*payload_len = value;
	*consumed = i + value + 1;
	return NETSTRING_FRAME;
}

const char *
netstring_error_str(enum netstring_error err)
{
	if ((size_t)err >= sizeof(netstring_error_names) / sizeof(netstring_error_names[0]))
		return "unknown netstring error";
	return netstring_error_names[err];
}

int
netstring_put_head(struct strbuf *out, size_t len)
{
	/* By hand: this runs once per answer, and printf costs more than the rest of it. */
	char digits[24];
	size_t n = sizeof(digits);

	digits[--n] = ':';
	do {
		digits[--n] = (char)('0' + len % 10);
		len /= 10;
	} while (len > 0);
	return strbuf_append(out, digits + n, sizeof(digits) - n);
}

int
netstring_encode(struct strbuf *out, const void *data, size_t len)
{
	size_t old = out->len;

	if (netstring_put_head(out, len) == -1 || strbuf_append(out, data, len) == -1 ||
	    strbuf_appendc(out, ',') == -1) {
		strbuf_truncate(out, old);
		return -1;
	}
	return 0;
}
