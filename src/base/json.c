/* json.c: writing JSON strings and numbers into a strbuf, for control replies. */
#include "config.h"

#include "base/json.h"

#include <string.h>

int
json_str(struct strbuf *sb, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	if (strbuf_appendc(sb, '"') == -1)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
		int rc;

		if (c == '"' || c == '\\')
			rc = strbuf_appendc(sb, '\\') == 0 ? strbuf_appendc(sb, (char)c) : -1;
		else if (c == '\n')
			rc = strbuf_appends(sb, "\\n");
		else if (c < 0x20)
			rc = strbuf_append(sb, esc, sizeof(esc));
		else
			rc = strbuf_appendc(sb, (char)c);
		if (rc == -1)
			return -1;
	}
	return strbuf_appendc(sb, '"');
}

int
json_cstr(struct strbuf *sb, const char *s)
{
	if (s == NULL)
		return strbuf_appends(sb, "null");
	return json_str(sb, s, strlen(s));
}
