/* policy.h: the MTA-STS policy file parser (RFC 8461 §3.2; POL-1..8, MX-1). */
#ifndef MTASTS_STS_POLICY_H
#define MTASTS_STS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POLICY_BODY_MAX    65536
#define POLICY_MAX_AGE_MAX 31557600u

enum policy_mode {
	POLICY_MODE_ENFORCE = 0,
	POLICY_MODE_TESTING,
	POLICY_MODE_NONE,
};

/* Warnings that never invalidate a policy; the checker reports them (section 12). */
enum policy_warning {
	POLICY_WARN_MAX_AGE_CLAMPED = 1u << 0, /* max_age above 31557600 (POL-7) */
	POLICY_WARN_EMPTY_LINE = 1u << 1,      /* empty or WSP-only lines ignored (POL-6.10) */
	POLICY_WARN_TRAILING_DOT = 1u << 2,    /* an mx pattern's trailing dot stripped (MX-1) */
	POLICY_WARN_IP_DROPPED = 1u << 3,      /* an IP-literal mx pattern dropped (MX-1) */
	POLICY_WARN_DUPLICATE = 1u << 4,       /* a repeated non-mx field ignored (POL-5) */
	POLICY_WARN_DUPLICATE_MX = 1u << 5,    /* a repeated mx pattern dropped (MX-4) */
};

enum policy_error {
	POLICY_ERR_NONE = 0,
	POLICY_ERR_TOO_LARGE,   /* body over POLICY_BODY_MAX */
	POLICY_ERR_BAD_UTF8,    /* not valid UTF-8 (a BOM is a bad field name instead) */
	POLICY_ERR_BAD_LINE,    /* a line that is not "name:" *WSP value under the ABNF */
	POLICY_ERR_BAD_VERSION, /* first version field is not exactly STSv1 */
	POLICY_ERR_BAD_MODE,    /* first mode field is not enforce|testing|none */
	POLICY_ERR_BAD_MAX_AGE, /* not 1-10 digits */
	POLICY_ERR_BAD_MX,      /* an mx pattern outside MX-1 */
	POLICY_ERR_NO_VERSION,
	POLICY_ERR_NO_MODE,
	POLICY_ERR_NO_MAX_AGE,
	POLICY_ERR_NO_MX, /* mode enforce/testing with no usable mx pattern */
};

/*
 * A parsed policy in one allocation. Patterns are stored back to back, each NUL-terminated,
 * lower-cased, trailing dot stripped, IP literals dropped, duplicates removed, in file order;
 * a wildcard keeps its "*." prefix. Free with policy_free().
 */
struct policy {
	enum policy_mode mode;
	uint32_t max_age;  /* after clamping to POLICY_MAX_AGE_MAX */
	uint32_t warnings; /* enum policy_warning bits */
	uint32_t nmx;
	uint32_t mx_size; /* bytes used in mx[], NULs included */
	char mx[];
};

/*
 * Parses body[0..len). On success returns a new policy. On failure returns NULL and sets *err
 * and *err_line (1-based; 0 when the error is not tied to a line, e.g. a missing field).
 */
struct policy *policy_parse(const char *body, size_t len, enum policy_error *err, size_t *err_line);
void policy_free(struct policy *p);

/* Iterates patterns: pass NULL first; returns NULL after the last one. */
const char *policy_mx_next(const struct policy *p, const char *prev);

const char *policy_mode_str(enum policy_mode mode);
const char *policy_error_str(enum policy_error err);

#endif
