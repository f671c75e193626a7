/* mediatype.h: the policy response's Content-Type check (POL-2). */
#ifndef MTASTS_STS_MEDIATYPE_H
#define MTASTS_STS_MEDIATYPE_H

#include <stdbool.h>

/*
 * True when a Content-Type header value names text/plain: type and subtype compared without
 * case, optional WSP around them, parameters (after ';') ignored whatever they say. NULL,
 * empty or any other type is false.
 */
bool mediatype_is_text_plain(const char *content_type);

#endif
