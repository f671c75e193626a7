/* tlsrpt.h: the _smtp._tls TLS-RPT record (RFC 8460 §3): selection and parsing (TLSRPT-1..7). */
#ifndef MTASTS_STS_TLSRPT_H
#define MTASTS_STS_TLSRPT_H

#include <stdbool.h>
#include <stddef.h>

#include "sts/txt.h"

/* A candidate longer than this after joining its strings is treated as invalid. */
#define TLSRPT_RECORD_MAX 8192

enum tlsrpt_result {
	TLSRPT_OK = 0,   /* exactly one candidate, it parses and names a usable rua */
	TLSRPT_NONE,     /* no candidate (includes zero records): no TLS-RPT */
	TLSRPT_MULTIPLE, /* more than one candidate: senders ignore them all (TLSRPT-5) */
	TLSRPT_INVALID,  /* one candidate that breaks the ABNF or has no usable rua (TLSRPT-7) */
};

/*
 * The rua URIs of every rua= field, in order (TLSRPT-6), back to back and NUL-terminated.
 * Only mailto: and https: URIs are kept; others are counted in nunsupported (TLSRPT-7.4).
 */
struct tlsrpt_record {
	unsigned nrua;
	unsigned nunsupported;
	size_t rua_used; /* bytes of rua[] in use, NULs included */
	char rua[TLSRPT_RECORD_MAX + 1];
};

/*
 * Selects the one TLS-RPT record among n chunks (same chunk model as txt_select: the strings
 * of one RR are joined with nothing between them) and parses it. On TLSRPT_INVALID, *reason
 * (if not NULL) points to a static English phrase naming the first problem.
 */
enum tlsrpt_result tlsrpt_select(const struct txt_chunk *chunks, size_t n,
                                 struct tlsrpt_record *rec, const char **reason);

/* True when s[0..len) matches ^v=TLSRPTv1[ \t]*; (TLSRPT-5). */
bool tlsrpt_is_candidate(const char *s, size_t len);

/* Parses one joined record under TLSRPT-4 and TLSRPT-7; 0, or -1 with *reason. */
int tlsrpt_parse(const char *s, size_t len, struct tlsrpt_record *rec, const char **reason);

/* Iterates the kept rua URIs: pass NULL first; returns NULL after the last one. */
const char *tlsrpt_rua_next(const struct tlsrpt_record *rec, const char *prev);

const char *tlsrpt_result_str(enum tlsrpt_result r);

#endif
