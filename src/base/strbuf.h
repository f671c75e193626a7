/* strbuf.h: a growable byte buffer with a hard size limit, for building replies. */
#ifndef MTASTS_BASE_STRBUF_H
#define MTASTS_BASE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

/*
 * libconfig exports functions named strbuf_append and strbuf_release; a definition of ours
 * under the same name would interpose on libconfig's own calls and corrupt its parser. The
 * link-level names therefore carry the project prefix.
 */
#define strbuf_init     mtasts_strbuf_init
#define strbuf_release  mtasts_strbuf_release
#define strbuf_reset    mtasts_strbuf_reset
#define strbuf_truncate mtasts_strbuf_truncate
#define strbuf_append   mtasts_strbuf_append
#define strbuf_appends  mtasts_strbuf_appends
#define strbuf_appendc  mtasts_strbuf_appendc
#define strbuf_appendf  mtasts_strbuf_appendf

/*
 * A strbuf owns data; data is always NUL-terminated (the NUL is not counted in len and not
 * counted against max). An append that would take len past max appends nothing, returns -1
 * and leaves the buffer as it was, so callers can fall back to a shorter answer.
 */
struct strbuf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
};

void strbuf_init(struct strbuf *sb, size_t max);
void strbuf_release(struct strbuf *sb);
void strbuf_reset(struct strbuf *sb);
/* Shortens to len bytes (len <= sb->len). */
void strbuf_truncate(struct strbuf *sb, size_t len);
int strbuf_append(struct strbuf *sb, const void *data, size_t len);
int strbuf_appends(struct strbuf *sb, const char *s);
int strbuf_appendc(struct strbuf *sb, char c);
int strbuf_appendf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
