/* mediatype.c: the policy response's Content-Type check (POL-2). */
#include "config.h"

#include "sts/mediatype.h"

#include <stddef.h>
#include <strings.h>

static const char *
skip_wsp(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

bool
mediatype_is_text_plain(const char *content_type)
{
	static const char want[] = "text/plain";
	const char *s;

	if (content_type == NULL)
		return false;
	s = skip_wsp(content_type);
	if (strncasecmp(s, want, sizeof(want) - 1) != 0)
		return false;
	s = skip_wsp(s + sizeof(want) - 1);
	return *s == '\0' || *s == ';';
}
