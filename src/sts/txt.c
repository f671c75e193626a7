/* txt.c: the _mta-sts TXT record: candidate selection and strict parsing (TXT-1..9). */
#include "config.h"

#include "sts/txt.h"

#include <string.h>

/* Longest sts-ext-name: one ALPHA/DIGIT and up to 31 more (TXT-4). */
#define TXT_EXT_NAME_MAX 32

/* So that reasons quote the limits as compiled. */
#define TXT_STR(x)  #x
#define TXT_XSTR(x) TXT_STR(x)

static const char *const txt_result_names[] = {
	[TXT_OK] = "ok",
	[TXT_NONE] = "none",
	[TXT_MULTIPLE] = "multiple",
	[TXT_INVALID] = "invalid",
};

const char *
txt_result_str(enum txt_result r)
{
	if ((size_t)r >= sizeof(txt_result_names) / sizeof(txt_result_names[0]))
		return "unknown";
	return txt_result_names[r];
}

/*
 * Candidate matching as a state machine fed a byte at a time, so that txt_select() can decide
 * on a record spread over several chunks without first joining it, however long it is.
 */
static const char txt_version[] = "v=STSv1";
#define TXT_VERSION_LEN (sizeof(txt_version) - 1)

enum txt_match {
	TXT_MATCH_MORE, /* undecided: feed the next byte */
	TXT_MATCH_YES,
	TXT_MATCH_NO,
};

struct txt_matcher {
	size_t seen; /* bytes of "v=STSv1" matched; past that, only WSP until ';' */
};

static enum txt_match
txt_matcher_feed(struct txt_matcher *m, unsigned char c)
{
	if (m->seen < TXT_VERSION_LEN) {
		if (c != (unsigned char)txt_version[m->seen])
			return TXT_MATCH_NO;
		m->seen++;
		return TXT_MATCH_MORE;
	}
	if (c == ';')
		return TXT_MATCH_YES;
	return c == ' ' || c == '\t' ? TXT_MATCH_MORE : TXT_MATCH_NO;
}

bool
txt_is_candidate(const char *s, size_t len)
{
	struct txt_matcher m = { 0 };

	for (size_t i = 0; i < len; i++) {
		enum txt_match r = txt_matcher_feed(&m, (unsigned char)s[i]);

		if (r != TXT_MATCH_MORE)
			return r == TXT_MATCH_YES;
	}
	return false;
}

static bool
txt_is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool
txt_is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* sts-ext-name after its first character: ALPHA / DIGIT / "_" / "-" / "." */
static bool
txt_is_name_char(unsigned char c)
{
	return txt_is_alnum(c) || c == '_' || c == '-' || c == '.';
}

/* sts-ext-value: %x21-3A / %x3C / %x3E-7E, i.e. visible ASCII but ';' and '='. */
static bool
txt_is_value_char(unsigned char c)
{
	return c >= 0x21 && c <= 0x7E && c != ';' && c != '=';
}

static int
txt_fail(const char **reason, const char *why)
{
	if (reason != NULL)
		*reason = why;
	return -1;
}

/*
 * Parses one field at s[*pos..len), *pos < len, and advances *pos past it. Sets *is_id when the
 * field is an sts-id: the name is exactly "id" and the value 1-32 letters or digits. Anything else
 * that fits sts-extension (including "id=2024-06-01" or a 33-character id) is an extension.
 */
static int
txt_parse_field(const unsigned char *s, size_t len, size_t *pos, bool *is_id, size_t *value_at,
                size_t *value_len, const char **reason)
{
	size_t i = *pos, name_at = i, name_len, val_at;
	bool alnum_value = true;

	if (s[i] == ';')
		return txt_fail(reason, "empty field");
	if (!txt_is_alnum(s[i]))
		return txt_fail(reason, "field name does not start with a letter or digit");
	while (i < len && txt_is_name_char(s[i]))
		i++;
	name_len = i - name_at;
	if (name_len > TXT_EXT_NAME_MAX)
		return txt_fail(reason,
		                "field name longer than " TXT_XSTR(TXT_EXT_NAME_MAX) " characters");
	if (i == len || s[i] != '=')
		return txt_fail(reason, "field name not followed by '='");
	val_at = ++i;
	while (i < len && txt_is_value_char(s[i])) {
		if (!txt_is_alnum(s[i]))
			alnum_value = false;
		i++;
	}
	if (i == val_at)
		return txt_fail(reason, "empty field value");
	if (i < len && s[i] == '=')
		return txt_fail(reason, "'=' in field value");
	/* Past the value only WSP, ';' or the end may follow; the caller checks which. */
	*is_id = name_len == 2 && memcmp(s + name_at, "id", 2) == 0 && alnum_value &&
	         i - val_at <= TXT_ID_MAX;
	*value_at = val_at;
	*value_len = i - val_at;
	*pos = i;
	return 0;
}

int
txt_parse(const char *text, size_t len, struct txt_record *rec, const char **reason)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t pos = TXT_VERSION_LEN, fields = 0;
	bool have_id = false;

	rec->id[0] = '\0';
	if (len > TXT_RECORD_MAX)
		return txt_fail(reason, "record longer than " TXT_XSTR(TXT_RECORD_MAX) " bytes");
	/* TXT-2 first, so that the reason names the byte rather than a grammar symptom. */
	for (size_t i = 0; i < len; i++) {
		if (s[i] >= 0x80)
			return txt_fail(reason, "non-ASCII byte");
		if ((s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7F)
			return txt_fail(reason, "control byte");
	}
	if (len < TXT_VERSION_LEN || memcmp(s, txt_version, TXT_VERSION_LEN) != 0)
		return txt_fail(reason, "record does not start with v=STSv1");

	/* sts-version 1*(sts-field-delim sts-field) [sts-field-delim] */
	while (pos < len) {
		size_t value_at, value_len;
		bool is_id;

		while (pos < len && txt_is_wsp(s[pos]))
			pos++;
		if (pos == len)
			return txt_fail(reason, "trailing whitespace without ';'");
		if (s[pos] != ';')
			return txt_fail(reason, "fields not separated by ';'");
		pos++;
		while (pos < len && txt_is_wsp(s[pos]))
			pos++;
		if (pos == len)
			break; /* the one optional trailing sts-field-delim */
		if (txt_parse_field(s, len, &pos, &is_id, &value_at, &value_len, reason) == -1)
			return -1;
		fields++;
		/* Duplicates: the first sts-id wins (TXT-4 point 7, RFC 8461 §3.2). */
		if (is_id && !have_id) {
			memcpy(rec->id, s + value_at, value_len);
			rec->id[value_len] = '\0';
			have_id = true;
		}
	}
	if (fields == 0)
		return txt_fail(reason, "no field after v=STSv1");
	if (!have_id)
		return txt_fail(reason,
		                "no id field of 1-" TXT_XSTR(TXT_ID_MAX) " letters or digits");
	return 0;
}

/* The chunks of the RR starting at chunks[start]: up to the next record_start. */
static size_t
txt_record_end(const struct txt_chunk *chunks, size_t n, size_t start)
{
	size_t end = start + 1;

	while (end < n && !chunks[end].record_start)
		end++;
	return end;
}

static bool
txt_record_is_candidate(const struct txt_chunk *chunks, size_t start, size_t end)
{
	struct txt_matcher m = { 0 };

	for (size_t i = start; i < end; i++) {
		for (size_t k = 0; k < chunks[i].len; k++) {
			enum txt_match r = txt_matcher_feed(&m, chunks[i].data[k]);

			if (r != TXT_MATCH_MORE)
				return r == TXT_MATCH_YES;
		}
	}
	return false;
}

enum txt_result
txt_select(const struct txt_chunk *chunks, size_t n, struct txt_record *rec, const char **reason)
{
	/* The one candidate, joined (TXT-8); one byte over the cap tells "too long" apart. */
	char buf[TXT_RECORD_MAX + 1];
	size_t buf_len = 0, candidates = 0;

	rec->id[0] = '\0';
	for (size_t start = 0, end; start < n; start = end) {
		end = txt_record_end(chunks, n, start);
		if (!txt_record_is_candidate(chunks, start, end))
			continue;
		/* Two candidates, valid or not, mean no live policy (TXT-6). */
		if (++candidates > 1)
			return TXT_MULTIPLE;
		for (size_t i = start; i < end && buf_len <= TXT_RECORD_MAX; i++) {
			size_t take = chunks[i].len;

			if (take > sizeof(buf) - buf_len)
				take = sizeof(buf) - buf_len;
			if (take > 0)
				memcpy(buf + buf_len, chunks[i].data, take);
			buf_len += take;
		}
	}
	if (candidates == 0)
		return TXT_NONE;
	if (txt_parse(buf, buf_len, rec, reason) == -1)
		return TXT_INVALID;
	return TXT_OK;
}
