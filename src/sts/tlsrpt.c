/* tlsrpt.c: the _smtp._tls TLS-RPT record (RFC 8460 §3): selection and parsing (TLSRPT-1..7). */
#include "config.h"

#include "sts/tlsrpt.h"

#include <string.h>
#include <strings.h>

#define TLSRPT_EXT_NAME_MAX 32

static const char tlsrpt_version[] = "v=TLSRPTv1";
#define TLSRPT_VERSION_LEN (sizeof(tlsrpt_version) - 1)

static const char *const tlsrpt_result_names[] = {
	[TLSRPT_OK] = "valid",
	[TLSRPT_NONE] = "none",
	[TLSRPT_MULTIPLE] = "multiple",
	[TLSRPT_INVALID] = "invalid",
};

const char *
tlsrpt_result_str(enum tlsrpt_result r)
{
	if ((size_t)r >= sizeof(tlsrpt_result_names) / sizeof(tlsrpt_result_names[0]))
		return "unknown";
	return tlsrpt_result_names[r];
}

static bool
tlsrpt_is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static bool
tlsrpt_is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool
tlsrpt_is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* tlsrpt-ext-value: %x21-3A / %x3C / %x3E-7E. */
static bool
tlsrpt_is_value_char(unsigned char c)
{
	return c >= 0x21 && c <= 0x7E && c != ';' && c != '=';
}

/* RFC 3986 unreserved / gen-delims / sub-delims, without '!' ',' ';' (TLSRPT-4 comment). */
static bool
tlsrpt_is_uri_char(unsigned char c)
{
	return tlsrpt_is_alnum(c) || strchr("-._~:/?#[]@$&'()*+=", c) != NULL;
}

bool
tlsrpt_is_candidate(const char *s, size_t len)
{
	size_t i = TLSRPT_VERSION_LEN;

	if (len < TLSRPT_VERSION_LEN || memcmp(s, tlsrpt_version, TLSRPT_VERSION_LEN) != 0)
		return false;
	while (i < len && tlsrpt_is_wsp((unsigned char)s[i]))
		i++;
	return i < len && s[i] == ';';
}

static int
tlsrpt_fail(const char **reason, const char *why)
{
	if (reason != NULL)
		*reason = why;
	return -1;
}

/* Checks one URI s[0..len) and keeps it when its scheme is mailto or https. */
static int
tlsrpt_uri(const unsigned char *s, size_t len, struct tlsrpt_record *rec, size_t *used,
           const char **reason)
{
	size_t i = 0, colon;
	bool mailto, https;

	if (len == 0)
		return tlsrpt_fail(reason, "empty rua URI");
	/* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
		return tlsrpt_fail(reason, "rua URI without a scheme");
	while (i < len && (tlsrpt_is_alnum(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
		i++;
	if (i == len || s[i] != ':')
		return tlsrpt_fail(reason, "rua URI without a scheme");
	colon = i++;
	for (; i < len; i++) {
		if (s[i] == '!')
			return tlsrpt_fail(reason, "raw '!' in a rua URI (must be %21)");
		if (s[i] == '%') {
			if (i + 2 >= len || !tlsrpt_is_hex(s[i + 1]) || !tlsrpt_is_hex(s[i + 2]))
				return tlsrpt_fail(reason, "bad percent-encoding in a rua URI");
			i += 2;
			continue;
		}
		if (!tlsrpt_is_uri_char(s[i]))
			return tlsrpt_fail(reason, "character not allowed in a rua URI");
	}
	mailto = colon == 6 && strncasecmp((const char *)s, "mailto", 6) == 0;
	https = colon == 5 && strncasecmp((const char *)s, "https", 5) == 0;
	if (mailto && (len == colon + 1 || memchr(s + colon + 1, '@', len - colon - 1) == NULL))
		return tlsrpt_fail(reason, "mailto: rua without an address");
	if (https && (len < colon + 4 || memcmp(s + colon + 1, "//", 2) != 0))
		return tlsrpt_fail(reason, "https: rua without a host");
	if (!mailto && !https) {
		rec->nunsupported++;
		return 0;
	}
	memcpy(rec->rua + *used, s, len);
	*used += len;
	rec->rua[(*used)++] = '\0';
	rec->nrua++;
	return 0;
}

/* tlsrpt-rua after "rua=": tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri); stops before WSP/';'. */
static int
tlsrpt_rua(const unsigned char *s, size_t len, size_t *pos, struct tlsrpt_record *rec, size_t *used,
           const char **reason)
{
	size_t i = *pos;

	for (;;) {
		size_t at = i, j;

		while (i < len && s[i] != ',' && s[i] != ';' && !tlsrpt_is_wsp(s[i]))
			i++;
		if (tlsrpt_uri(s + at, i - at, rec, used, reason) == -1)
			return -1;
		j = i;
		while (j < len && tlsrpt_is_wsp(s[j]))
			j++;
		if (j == len || s[j] != ',')
			break;
		i = j + 1;
		while (i < len && tlsrpt_is_wsp(s[i]))
			i++;
	}
	*pos = i;
	return 0;
}

int
tlsrpt_parse(const char *text, size_t len, struct tlsrpt_record *rec, const char **reason)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t pos = TLSRPT_VERSION_LEN, used = 0, fields = 0, ruas = 0;

	rec->nrua = 0;
	rec->nunsupported = 0;
	rec->rua_used = 0;
	rec->rua[0] = '\0';
	if (len > TLSRPT_RECORD_MAX)
		return tlsrpt_fail(reason, "record longer than 8192 bytes");
	for (size_t i = 0; i < len; i++)
		if (s[i] >= 0x7F || (s[i] < 0x20 && s[i] != '\t'))
			return tlsrpt_fail(reason, "control or non-ASCII byte");
	if (len < TLSRPT_VERSION_LEN || memcmp(s, tlsrpt_version, TLSRPT_VERSION_LEN) != 0)
		return tlsrpt_fail(reason, "record does not start with v=TLSRPTv1");
	/* tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim] */
	while (pos < len) {
		size_t name_at;

		while (pos < len && tlsrpt_is_wsp(s[pos]))
			pos++;
		if (pos == len)
			break;
		if (s[pos] != ';')
			return tlsrpt_fail(reason, "fields not separated by ';'");
		pos++;
		while (pos < len && tlsrpt_is_wsp(s[pos]))
			pos++;
		if (pos == len)
			break;
		fields++;
		if (len - pos >= 4 && memcmp(s + pos, "rua=", 4) == 0) {
			pos += 4;
			ruas++;
			if (tlsrpt_rua(s, len, &pos, rec, &used, reason) == -1)
				return -1;
			continue;
		}
		name_at = pos;
		if (!tlsrpt_is_alnum(s[pos]))
			return tlsrpt_fail(reason,
			                   "field name does not start with a letter or digit");
		while (pos < len &&
		       (tlsrpt_is_alnum(s[pos]) || s[pos] == '_' || s[pos] == '-' || s[pos] == '.'))
			pos++;
		if (pos - name_at > TLSRPT_EXT_NAME_MAX)
			return tlsrpt_fail(reason, "field name longer than 32 characters");
		if (pos == len || s[pos] != '=')
			return tlsrpt_fail(reason, "field name not followed by '='");
		name_at = ++pos;
		while (pos < len && tlsrpt_is_value_char(s[pos]))
			pos++;
		if (pos == name_at)
			return tlsrpt_fail(reason, "empty field value");
		if (pos < len && s[pos] == '=')
			return tlsrpt_fail(reason, "'=' in field value");
	}
	if (fields == 0)
		return tlsrpt_fail(reason, "no field after v=TLSRPTv1");
	if (ruas == 0)
		return tlsrpt_fail(reason, "no rua field");
	rec->rua_used = used;
	if (rec->nrua == 0)
		return tlsrpt_fail(reason, "no usable rua (only mailto: and https: are supported)");
	return 0;
}

enum tlsrpt_result
tlsrpt_select(const struct txt_chunk *chunks, size_t n, struct tlsrpt_record *rec,
              const char **reason)
{
	static const char too_long[] = "record longer than 8192 bytes";
	char buf[TLSRPT_RECORD_MAX];
	size_t ncand = 0, cand_at = 0, len = 0;
	bool over = false;

	/* Count candidates RR by RR: a record's first TLSRPT_VERSION_LEN + WSP bytes decide. */
	for (size_t i = 0; i < n;) {
		size_t j = i + 1, blen = 0;
		char head[64];

		while (j < n && !chunks[j].record_start)
			j++;
		for (size_t k = i; k < j && blen < sizeof(head); k++) {
			size_t take = chunks[k].len < sizeof(head) - blen ? chunks[k].len
			                                                  : sizeof(head) - blen;

			memcpy(head + blen, chunks[k].data, take);
			blen += take;
		}
		if (tlsrpt_is_candidate(head, blen)) {
			ncand++;
			cand_at = i;
		}
		i = j;
	}
	if (ncand == 0)
		return TLSRPT_NONE;
	if (ncand > 1)
		return TLSRPT_MULTIPLE;
	for (size_t k = cand_at; k < n && (k == cand_at || !chunks[k].record_start); k++) {
		if (chunks[k].len > sizeof(buf) - len) {
			over = true;
			break;
		}
		memcpy(buf + len, chunks[k].data, chunks[k].len);
		len += chunks[k].len;
	}
	if (over) {
		if (reason != NULL)
			*reason = too_long;
		return TLSRPT_INVALID;
	}
	return tlsrpt_parse(buf, len, rec, reason) == 0 ? TLSRPT_OK : TLSRPT_INVALID;
}

const char *
tlsrpt_rua_next(const struct tlsrpt_record *rec, const char *prev)
{
	const char *p = prev == NULL ? rec->rua : prev + strlen(prev) + 1;

	return p < rec->rua + rec->rua_used ? p : NULL;
}
