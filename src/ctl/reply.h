/* reply.h: incremental, zero-copy decoding of control-protocol replies ("OK <len>\n<body>"). */
#ifndef MTASTS_CTL_REPLY_H
#define MTASTS_CTL_REPLY_H

#include <stddef.h>

/* The largest body mtasts-ctl accepts; a bigger announced length is refused before it arrives. */
#define REPLY_CAP_DEFAULT (16u * 1024u * 1024u)
/* Digits in the length field, leading zeros included; more is a framing error. */
#define REPLY_LEN_DIGITS_MAX 10
/* "ERR " + digits + CR LF: no valid header is longer. */
#define REPLY_HEADER_MAX (4 + REPLY_LEN_DIGITS_MAX + 2)

enum reply_status {
	REPLY_NEED_MORE, /* input is a valid prefix of a reply; read more */
	REPLY_COMPLETE,  /* one whole reply decoded */
	REPLY_ERROR,     /* not a reply: give up on the connection */
};

enum reply_error {
	REPLY_ERR_NONE = 0,
	REPLY_ERR_STATUS,       /* does not start with "OK " or "ERR " */
	REPLY_ERR_EMPTY_LENGTH, /* the line ends right after the space */
	REPLY_ERR_NOT_DIGIT,    /* a byte other than a digit, CR or LF in the length */
	REPLY_ERR_LENGTH_LONG,  /* more than REPLY_LEN_DIGITS_MAX digits */
	REPLY_ERR_OVER_CAP,     /* announced length above the cap */
	REPLY_ERR_BAD_EOL,      /* CR not followed by LF */
};

enum reply_kind {
	REPLY_OK,
	REPLY_ERR,
};

/* A decoded reply; body points into the caller's buffer and lives as long as it does. */
struct reply {
	enum reply_kind kind;
	const char *body;
	size_t body_len;
	size_t consumed; /* header and body: any bytes after these belong to the next reply */
};

/*
 * Decodes the reply at the start of buf[0..len). The header is "OK" or "ERR", one space, the
 * body length in decimal and LF (a CR before the LF is accepted); the body follows. Bytes are
 * judged as they arrive, so garbage or an over-cap length is refused without waiting for more,
 * and a caller never needs to buffer more than cap + REPLY_HEADER_MAX bytes. On REPLY_COMPLETE
 * *out is filled; on REPLY_ERROR *err says why. Never reads past buf + len.
 */
enum reply_status reply_decode(const char *buf, size_t len, size_t cap, struct reply *out,
                               enum reply_error *err);

const char *reply_error_str(enum reply_error err);

#endif
