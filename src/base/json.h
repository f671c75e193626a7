/* json.h: writing JSON strings and numbers into a strbuf, for control replies. */
#ifndef MTASTS_BASE_JSON_H
#define MTASTS_BASE_JSON_H

#include <stddef.h>

#include "base/strbuf.h"

/*
 * Appends s[0..len) as a quoted JSON string: '"' and '\\' escaped, control bytes as \u00XX.
 * Bytes >= 0x80 pass through, so s must be UTF-8 (every caller's text is validated or ASCII).
 */
int json_str(struct strbuf *sb, const char *s, size_t len);
/* json_str for a NUL-terminated string; NULL writes null. */
int json_cstr(struct strbuf *sb, const char *s);

#endif
