/* txt.h: the _mta-sts TXT record: candidate selection and strict parsing (TXT-1..9). */
#ifndef MTASTS_STS_TXT_H
#define MTASTS_STS_TXT_H

#include <stdbool.h>
#include <stddef.h>

#define TXT_ID_MAX 32
/* A candidate record longer than this after concatenation is treated as invalid. */
#define TXT_RECORD_MAX 8192

/*
 * One character-string of a TXT answer as DNS delivers it. record_start marks the first
 * string of each RR; the strings of one RR are joined with nothing between them (TXT-8).
 * This mirrors c-ares' ares_txt_ext so the DNS layer passes answers through unchanged.
 */
struct txt_chunk {
	const unsigned char *data;
	size_t len;
	bool record_start;
};

enum txt_result {
	TXT_OK = 0,   /* exactly one candidate and it parses: *id is set */
	TXT_NONE,     /* no candidate among the records (includes zero records) */
	TXT_MULTIPLE, /* more than one candidate, valid or not (TXT-6) */
	TXT_INVALID,  /* exactly one candidate that breaks the ABNF (TXT-4) */
};

struct txt_record {
	char id[TXT_ID_MAX + 1]; /* NUL-terminated; compare byte for byte (TXT-3) */
};

/*
 * Selects the one STS record among n chunks and parses it. On TXT_INVALID, *reason (if not
 * NULL) points to a static English phrase naming the first violation. The first chunk must
 * have record_start set (a chunk list not starting a record is treated as starting one).
 */
enum txt_result txt_select(const struct txt_chunk *chunks, size_t n, struct txt_record *rec,
                           const char **reason);

/* True when s[0..len) matches ^v=STSv1[ \t]*; (TXT-6, erratum 6285). */
bool txt_is_candidate(const char *s, size_t len);

/* Parses one concatenated record under TXT-4; 0 and *rec set, or -1 with *reason. */
int txt_parse(const char *s, size_t len, struct txt_record *rec, const char **reason);

const char *txt_result_str(enum txt_result r);

#endif
