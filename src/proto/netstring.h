/* netstring.h: incremental, zero-copy netstring (djb) decoding and encoding. */
#ifndef MTASTS_PROTO_NETSTRING_H
#define MTASTS_PROTO_NETSTRING_H

#include <stddef.h>

#include "base/strbuf.h"

/* The smallest request cap a configuration may set, and the default (PFX-1). */
#define NETSTRING_CAP_MIN     1024
#define NETSTRING_CAP_DEFAULT 4096
/* Digits in the length field, leading zeros included; more is a framing error. */
#define NETSTRING_LEN_DIGITS_MAX 10

enum netstring_status {
	NETSTRING_NEED_MORE, /* input is a valid prefix of a frame; read more */
	NETSTRING_FRAME,     /* one complete frame decoded */
	NETSTRING_ERROR,     /* framing error: no reliable boundary, close the connection */
};

enum netstring_error {
	NETSTRING_ERR_NONE = 0,
	NETSTRING_ERR_EMPTY_LENGTH, /* ":" with no digits before it */
	NETSTRING_ERR_NOT_DIGIT,    /* a byte other than a digit or ':' in the length */
	NETSTRING_ERR_LENGTH_LONG,  /* more than NETSTRING_LEN_DIGITS_MAX digits */
	NETSTRING_ERR_OVER_CAP,     /* declared length above the cap */
	NETSTRING_ERR_NO_COMMA,     /* the byte after the payload is not ',' */
};

/*
 * Decodes the frame at the start of buf[0..len). On NETSTRING_FRAME, *payload points into buf,
 * *payload_len is its length and *consumed the size of the whole frame. The cap applies to the
 * declared payload length and is checked as soon as the digits exceed it, before the payload
 * arrives, so a caller never needs to buffer more than cap + NETSTRING_LEN_DIGITS_MAX + 2 bytes.
 * On NETSTRING_ERROR, *err says why. Never reads past buf + len.
 */
enum netstring_status netstring_decode(const char *buf, size_t len, size_t cap,
                                       const char **payload, size_t *payload_len, size_t *consumed,
                                       enum netstring_error *err);

const char *netstring_error_str(enum netstring_error err);

/* Appends "<len>:<data>," to out; -1 (out unchanged) if it does not fit out's max. */
int netstring_encode(struct strbuf *out, const void *data, size_t len);
/* Appends "LEN:", the head of a netstring whose payload the caller appends; -1 if full. */
int netstring_put_head(struct strbuf *out, size_t len);

#endif
