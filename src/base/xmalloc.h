/* xmalloc.h: allocation that never returns NULL; running out of memory is fatal. */
#ifndef MTASTS_BASE_XMALLOC_H
#define MTASTS_BASE_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
/* Overflow-checked nmemb * size, like reallocarray(3). */
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
/* Copies at most len bytes and always NUL-terminates. */
char *xstrndup(const char *s, size_t len);
/* Like asprintf(3), but fatal on failure. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
