/* socketmap.h: Postfix socketmap requests ("name key") and replies (PFX-1). */
#ifndef MTASTS_PROTO_SOCKETMAP_H
#define MTASTS_PROTO_SOCKETMAP_H

#include <stddef.h>

#include "base/strbuf.h"

/* Postfix refuses replies longer than this, not counting the netstring wrapper. */
#define SOCKETMAP_REPLY_MAX 100000

enum socketmap_status {
	SOCKETMAP_OK,
	SOCKETMAP_NOTFOUND,
	SOCKETMAP_TEMP,
	SOCKETMAP_TIMEOUT,
	SOCKETMAP_PERM,
};

/* Views into the decoded netstring payload; not NUL-terminated. */
struct socketmap_request {
	const char *name;
	size_t name_len;
	const char *key; /* may be empty */
	size_t key_len;
};

/*
 * Splits a payload at its first SP into map name and key. Returns -1 when there is no SP at
 * all (answer PERM); an empty name or key is returned as such for the caller to judge.
 */
int socketmap_parse_request(const char *payload, size_t len, struct socketmap_request *req);

/*
 * Appends one netstring-framed reply "<STATUS> <data>" to out. NOTFOUND takes no data (pass
 * NULL, 0) and is sent as "NOTFOUND ". Returns -1 and leaves out unchanged when the payload
 * would exceed SOCKETMAP_REPLY_MAX or out's max, or when data holds a NUL byte.
 */
int socketmap_format_reply(struct strbuf *out, enum socketmap_status status, const char *data,
                           size_t len);

const char *socketmap_status_str(enum socketmap_status status);

#endif
