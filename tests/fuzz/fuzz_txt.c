/* fuzz_txt.c: libFuzzer target for _mta-sts TXT selection and parsing (TXT-2..8). */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sts/txt.h"

/*
 * The input is split into character-strings at each '\n' or '|': '\n' starts a new RR, '|'
 * starts another string of the same RR. Neither byte is valid in a record, so the split only
 * removes inputs the parser would refuse anyway. Each RR's strings are at most 255 bytes, as
 * in DNS, so long inputs also exercise joining (TXT-8).
 */
#define FUZZ_CHUNKS_MAX 4096
#define FUZZ_STRING_MAX 255

static struct txt_chunk chunks[FUZZ_CHUNKS_MAX];

static bool
id_ok(const char *id)
{
	size_t len = strnlen(id, TXT_ID_MAX + 1);

	if (len == 0 || len > TXT_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct txt_record rec, whole;
	const char *reason = NULL;
	size_t n = 0, start = 0;
	bool new_rr = true;
	enum txt_result r;

	for (size_t i = 0; i <= size && n < FUZZ_CHUNKS_MAX; i++) {
		bool sep = i == size || data[i] == '\n' || data[i] == '|';

		if (!sep && i - start < FUZZ_STRING_MAX)
			continue;
		chunks[n++] = (struct txt_chunk){ .data = data + start,
			                          .len = i - start,
			                          .record_start = new_rr };
		new_rr = i < size && data[i] == '\n';
		start = sep ? i + 1 : i;
	}
	r = txt_select(chunks, n, &rec, &reason);
	if (txt_result_str(r) == NULL)
		abort();
	if (r == TXT_OK && !id_ok(rec.id))
		abort();
	if (r == TXT_INVALID && (reason == NULL || reason[0] == '\0'))
		abort();
	/* One RR on its own: select and parse agree with txt_is_candidate (TXT-6). */
	if (size <= TXT_RECORD_MAX && memchr(data, '\n', size) == NULL &&
	    memchr(data, '|', size) == NULL) {
		bool cand = txt_is_candidate((const char *)data, size);
		int pr = txt_parse((const char *)data, size, &whole, NULL);

		if (cand != (r != TXT_NONE))
			abort();
		if (cand && (pr == 0) != (r == TXT_OK))
			abort();
		if (r == TXT_OK && strcmp(rec.id, whole.id) != 0)
			abort();
	}
	return 0;
}
