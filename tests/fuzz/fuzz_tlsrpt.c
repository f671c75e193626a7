/* fuzz_tlsrpt.c: libFuzzer target for _smtp._tls TLS-RPT selection and parsing (TLSRPT-4..7). */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sts/tlsrpt.h"

/* As fuzz_txt: '\n' starts a new RR, '|' another string of the same RR; strings <= 255. */
#define FUZZ_CHUNKS_MAX 4096
#define FUZZ_STRING_MAX 255

static struct txt_chunk chunks[FUZZ_CHUNKS_MAX];
static struct tlsrpt_record rec, whole;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *reason = NULL;
	size_t n = 0, start = 0, count = 0;
	bool new_rr = true;
	enum tlsrpt_result r;

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
	r = tlsrpt_select(chunks, n, &rec, &reason);
	if (tlsrpt_result_str(r) == NULL)
		abort();
	if (r == TLSRPT_INVALID && (reason == NULL || reason[0] == '\0'))
		abort();
	if (r == TLSRPT_OK) {
		/* Every kept URI is mailto: or https:, non-empty, without '!', ';', ',' or WSP. */
		for (const char *u = tlsrpt_rua_next(&rec, NULL); u != NULL;
		     u = tlsrpt_rua_next(&rec, u), count++) {
			if (strncasecmp(u, "mailto:", 7) != 0 && strncasecmp(u, "https:", 6) != 0)
				abort();
			if (strpbrk(u, "!;, \t") != NULL)
				abort();
		}
		if (count != rec.nrua || count == 0)
			abort();
	}
	if (size <= TLSRPT_RECORD_MAX && memchr(data, '\n', size) == NULL &&
	    memchr(data, '|', size) == NULL) {
		bool cand = tlsrpt_is_candidate((const char *)data, size);
		int pr = tlsrpt_parse((const char *)data, size, &whole, NULL);

		if (cand != (r != TLSRPT_NONE))
			abort();
		if (cand && (pr == 0) != (r == TLSRPT_OK))
			abort();
	}
	return 0;
}
