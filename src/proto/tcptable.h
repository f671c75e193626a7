/* tcptable.h: Postfix tcp_table(5) requests ("get key" LF) and replies ("200 data" LF). */
#ifndef MTASTS_PROTO_TCPTABLE_H
#define MTASTS_PROTO_TCPTABLE_H

#include <stddef.h>

#include "base/strbuf.h"

/* A request or reply line, LF included, is at most this long. */
#define TCPTABLE_LINE_MAX 4096

enum tcptable_status {
	TCPTABLE_NEED_MORE, /* no LF yet and under the limit: read more */
	TCPTABLE_REQUEST,   /* one "get" request decoded */
	TCPTABLE_BAD,       /* a complete line that is not a valid request: reply 400, go on */
	TCPTABLE_ERROR,     /* no LF within TCPTABLE_LINE_MAX: close the connection */
};

enum tcptable_error {
	TCPTABLE_ERR_NONE = 0,
	TCPTABLE_ERR_TOO_LONG,    /* line longer than TCPTABLE_LINE_MAX */
	TCPTABLE_ERR_BAD_COMMAND, /* not "get SP key" (e.g. "put", missing SP) */
	TCPTABLE_ERR_BAD_ESCAPE,  /* '%' not followed by two hex digits */
};

/*
 * Decodes the line at the start of buf[0..len). On TCPTABLE_REQUEST the %XX-decoded key is
 * written to key (at most keycap - 1 bytes plus a NUL; decoding never grows the key, so
 * keycap = TCPTABLE_LINE_MAX is always enough) and *key_len set; the key may hold any byte,
 * NUL included. A key whose raw (undecoded) form does not fit keycap - 1 bytes is TCPTABLE_BAD
 * with TCPTABLE_ERR_TOO_LONG. One CR before the LF is dropped. On TCPTABLE_REQUEST and
 * TCPTABLE_BAD, *consumed is the line length including LF.
 */
enum tcptable_status tcptable_decode(const char *buf, size_t len, char *key, size_t keycap,
                                     size_t *key_len, size_t *consumed, enum tcptable_error *err);

const char *tcptable_error_str(enum tcptable_error err);

enum tcptable_code {
	TCPTABLE_CODE_OK = 200,       /* data follows */
	TCPTABLE_CODE_NOTFOUND = 500, /* text follows */
	TCPTABLE_CODE_ERROR = 400,    /* text follows */
};

/*
 * Appends "<code> <%XX-encoded text>" LF to out, encoding '%', bytes <= 0x20 and >= 0x7f.
 * Returns -1 and leaves out unchanged when the line would exceed TCPTABLE_LINE_MAX.
 */
int tcptable_format_reply(struct strbuf *out, enum tcptable_code code, const char *text,
                          size_t len);

#endif
