/* utf8.h: strict UTF-8 validation for names and policy bodies from the network. */
#ifndef MTASTS_BASE_UTF8_H
#define MTASTS_BASE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Unicode Table 3-7: no overlong forms, no surrogates, nothing past U+10FFFF. */
bool utf8_valid(const unsigned char *s, size_t len);

#endif
