/* socketmap.c: Postfix socketmap requests ("name key") and replies (PFX-1). */
#include "config.h"

#include "proto/socketmap.h"

#include <string.h>

#include "proto/netstring.h"

static const char *const socketmap_status_names[] = {
	[SOCKETMAP_OK] = "OK",     [SOCKETMAP_NOTFOUND] = "NOTFOUND",
	[SOCKETMAP_TEMP] = "TEMP", [SOCKETMAP_TIMEOUT] = "TIMEOUT",
	[SOCKETMAP_PERM] = "PERM",
};

#define SOCKETMAP_NSTATUS (sizeof(socketmap_status_names) / sizeof(socketmap_status_names[0]))

int
socketmap_parse_request(const char *payload, size_t len, struct socketmap_request *req)
{
	const char *sp;

	/* memchr on a zero-length (possibly NULL) range is undefined; "0:," has no SP anyway. */
	if (len == 0)
		return -1;
	sp = memchr(payload, ' ', len);
	if (sp == NULL)
		return -1;
	req->name = payload;
	req->name_len = (size_t)(sp - payload);
	req->key = sp + 1;
	req->key_len = len - req->name_len - 1;
	return 0;
}

int
socketmap_format_reply(struct strbuf *out, enum socketmap_status status, const char *data,
                       size_t len)
{
	size_t old = out->len, prefix, total;
	const char *name;

	if ((size_t)status >= SOCKETMAP_NSTATUS)
		return -1;
	/*
	 * Postfix discards whatever follows "NOTFOUND ", and refusing would turn a clean
	 * not-found into a lookup error that defers mail (PFX-3), so data is dropped here.
	 */
	if (status == SOCKETMAP_NOTFOUND)
		len = 0;
	name = socketmap_status_names[status];
	prefix = strlen(name) + 1;
	if (len > SOCKETMAP_REPLY_MAX - prefix)
		return -1;
	/* Postfix reads the reply as a C string: a NUL would silently cut it short. */
	if (len > 0 && memchr(data, '\0', len) != NULL)
		return -1;
	total = prefix + len;
	/* Framed here rather than by netstring_encode to avoid copying the payload twice. */
	if (netstring_put_head(out, total) == -1 || strbuf_append(out, name, prefix - 1) == -1 ||
	    strbuf_appendc(out, ' ') == -1 || strbuf_append(out, data, len) == -1 ||
	    strbuf_appendc(out, ',') == -1) {
		strbuf_truncate(out, old);
		return -1;
	}
	return 0;
}

const char *
socketmap_status_str(enum socketmap_status status)
{
	if ((size_t)status >= SOCKETMAP_NSTATUS)
		return "UNKNOWN";
	return socketmap_status_names[status];
}
