/* fuzz_socketmap.c: libFuzzer target for socketmap request parsing and reply formatting. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "base/xmalloc.h"
#include "proto/netstring.h"
#include "proto/socketmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const enum socketmap_status fuzz_socketmap_all[] = {
	SOCKETMAP_OK, SOCKETMAP_NOTFOUND, SOCKETMAP_TEMP, SOCKETMAP_TIMEOUT, SOCKETMAP_PERM,
};

static void
fuzz_socketmap_check(int ok)
{
	if (!ok)
		abort();
}

/* The request views tile the payload exactly: name, one SP, key; no SP means -1. */
static void
fuzz_socketmap_parse(const char *payload, size_t plen)
{
	struct socketmap_request req;
	const char *sp = plen == 0 ? NULL : memchr(payload, ' ', plen);

	if (socketmap_parse_request(payload, plen, &req) == -1) {
		fuzz_socketmap_check(sp == NULL);
		return;
	}
	fuzz_socketmap_check(sp != NULL);
	fuzz_socketmap_check(req.name == payload && req.name + req.name_len == sp);
	fuzz_socketmap_check(req.key == sp + 1);
	fuzz_socketmap_check(req.name_len + 1 + req.key_len == plen);
}

static size_t
fuzz_socketmap_digits(size_t n)
{
	size_t d = 1;

	while (n >= 10) {
		n /= 10;
		d++;
	}
	return d;
}

/*
 * Formats data under every status after one byte of earlier output, with room bytes left in
 * the buffer, and checks the result against an independent model: accepted exactly when
 * allowed, unchanged when refused, otherwise one frame of "<STATUS> <data>".
 */
static void
fuzz_socketmap_format(const char *data, size_t len, size_t room)
{
	for (size_t i = 0; i < sizeof(fuzz_socketmap_all) / sizeof(fuzz_socketmap_all[0]); i++) {
		enum socketmap_status st = fuzz_socketmap_all[i];
		const char *name = socketmap_status_str(st);
		size_t nlen = strlen(name), dlen = st == SOCKETMAP_NOTFOUND ? 0 : len;
		size_t plen, consumed, want_plen = nlen + 1 + dlen;
		size_t framed = fuzz_socketmap_digits(want_plen) + 1 + want_plen + 1;
		int has_nul = dlen > 0 && memchr(data, '\0', dlen) != NULL, rc;
		int allowed = !has_nul && want_plen <= SOCKETMAP_REPLY_MAX && framed <= room;
		const char *payload;
		enum netstring_error err;
		struct strbuf sb;

		strbuf_init(&sb, 1 + room);
		fuzz_socketmap_check(strbuf_appendc(&sb, 'p') == 0);
		rc = socketmap_format_reply(&sb, st, data, len);
		fuzz_socketmap_check(rc == (allowed ? 0 : -1));
		if (rc == -1) {
			fuzz_socketmap_check(sb.len == 1 && sb.data[0] == 'p' &&
			                     sb.data[1] == '\0');
		} else {
			fuzz_socketmap_check(netstring_decode(sb.data + 1, sb.len - 1,
			                                      SOCKETMAP_REPLY_MAX, &payload, &plen,
			                                      &consumed, &err) == NETSTRING_FRAME);
			fuzz_socketmap_check(consumed == sb.len - 1 && plen == want_plen);
			fuzz_socketmap_check(memcmp(payload, name, nlen) == 0 &&
			                     payload[nlen] == ' ');
			fuzz_socketmap_check(dlen == 0 ||
			                     memcmp(payload + nlen + 1, data, dlen) == 0);
		}
		strbuf_release(&sb);
	}
}

/* Stretches the input to just around SOCKETMAP_REPLY_MAX to probe the reply limit. */
static void
fuzz_socketmap_big(const uint8_t *data, size_t size)
{
	size_t len = SOCKETMAP_REPLY_MAX - 8 + data[0] % 16;
	char *big = xmalloc(len);

	for (size_t i = 0; i < len; i++)
		big[i] = (char)data[i % size];
	fuzz_socketmap_format(big, len, SOCKETMAP_REPLY_MAX + 64);
	free(big);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	size_t off = 0;

	if (size == 0)
		return 0;
	fuzz_socketmap_parse(buf, size);
	/*
	 * The first byte sizes the output buffer, so refusals for lack of room are reached too;
	 * 0xff also probes the reply limit with a stretched copy of the input.
	 */
	fuzz_socketmap_format(buf, size, data[0] < 128 ? data[0] : SOCKETMAP_REPLY_MAX + 64);
	if (data[0] == 0xff)
		fuzz_socketmap_big(data, size);
	while (off < size) {
		const char *payload;
		size_t plen, consumed;
		enum netstring_error err;

		if (netstring_decode(buf + off, size - off, NETSTRING_CAP_DEFAULT, &payload, &plen,
		                     &consumed, &err) != NETSTRING_FRAME)
			break;
		fuzz_socketmap_check(consumed <= size - off);
		fuzz_socketmap_parse(payload, plen);
		fuzz_socketmap_format(payload, plen, SOCKETMAP_REPLY_MAX + 64);
		off += consumed;
	}
	return 0;
}
