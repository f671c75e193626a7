/* fuzz_netstring.c: libFuzzer target for netstring_decode/encode: bounds, framing, round trip. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "proto/netstring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_netstring_check(int ok)
{
	if (!ok)
		abort();
}

/* A decoded frame is "<digits>:<payload>," inside the input and re-encodes to a frame. */
static void
fuzz_netstring_frame(const char *buf, size_t len, size_t cap, const char *payload, size_t plen,
                     size_t consumed)
{
	size_t digits, c2, p2len;
	const char *p2;
	enum netstring_error err;
	struct strbuf sb;

	fuzz_netstring_check(consumed >= 3 && consumed <= len);
	fuzz_netstring_check(payload > buf && payload + plen < buf + consumed);
	fuzz_netstring_check(plen <= cap);
	digits = (size_t)(payload - buf) - 1;
	fuzz_netstring_check(digits >= 1 && digits <= NETSTRING_LEN_DIGITS_MAX);
	for (size_t i = 0; i < digits; i++)
		fuzz_netstring_check(buf[i] >= '0' && buf[i] <= '9');
	fuzz_netstring_check(payload[-1] == ':' && payload[plen] == ',');
	fuzz_netstring_check(digits + 1 + plen + 1 == consumed);

	/* Incremental: one byte short of the frame must ask for more, not fail or succeed. */
	fuzz_netstring_check(netstring_decode(buf, consumed - 1, cap, &p2, &p2len, &c2, &err) ==
	                     NETSTRING_NEED_MORE);

	strbuf_init(&sb, cap + NETSTRING_LEN_DIGITS_MAX + 2);
	fuzz_netstring_check(netstring_encode(&sb, payload, plen) == 0);
	fuzz_netstring_check(sb.len <= consumed);
	fuzz_netstring_check(netstring_decode(sb.data, sb.len, cap, &p2, &p2len, &c2, &err) ==
	                     NETSTRING_FRAME);
	fuzz_netstring_check(c2 == sb.len && p2len == plen && memcmp(p2, payload, plen) == 0);
	strbuf_release(&sb);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf;
	size_t len, cap, off = 0;

	if (size == 0)
		return 0;
	/*
	 * An even first byte is a tiny cap, so over-cap paths are reached without huge inputs;
	 * seeds start with '#' (default cap) or ' ' (cap 32) to stay readable.
	 */
	cap = (data[0] & 1) != 0 ? NETSTRING_CAP_DEFAULT : data[0];
	buf = (const char *)data + 1;
	len = size - 1;
	while (off <= len) {
		const char *payload;
		size_t plen, consumed;
		enum netstring_error err;
		enum netstring_status st;

		st = netstring_decode(buf + off, len - off, cap, &payload, &plen, &consumed, &err);
		if (st == NETSTRING_FRAME) {
			fuzz_netstring_check(err == NETSTRING_ERR_NONE);
			fuzz_netstring_frame(buf + off, len - off, cap, payload, plen, consumed);
			off += consumed;
			continue;
		}
		fuzz_netstring_check(consumed == 0);
		if (st == NETSTRING_NEED_MORE) {
			fuzz_netstring_check(err == NETSTRING_ERR_NONE);
			/* The header's promise: a pending frame never needs more than this. */
			fuzz_netstring_check(len - off < cap + NETSTRING_LEN_DIGITS_MAX + 2);
		} else {
			fuzz_netstring_check(st == NETSTRING_ERROR && err != NETSTRING_ERR_NONE);
			fuzz_netstring_check(netstring_error_str(err) != NULL);
		}
		break;
	}
	return 0;
}
