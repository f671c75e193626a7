/* policy.c: the MTA-STS policy file parser (RFC 8461 §3.2; POL-1..8, MX-1). */
#include "config.h"

#include "sts/policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "base/xmalloc.h"
#include "sts/domain.h"

/* sts-policy-ext-name: one letter or digit, then up to 31 more name characters (POL-6.7). */
#define POLICY_NAME_MAX 32

/* sts-policy-max-age-value = 1*10(DIGIT) (POL-7). */
#define POLICY_MAX_AGE_DIGITS 10

/* Longest text that can still be an IPv6 literal, tag included ("IPv6:" + 45). */
#define POLICY_IP6_TEXT_MAX 64

/* An accepted mx pattern: a span of the body, already stripped of its trailing dot. */
struct policy_span {
	const char *s;
	uint32_t len;
	uint32_t hash;
};

/* Everything learnt so far while walking the lines. */
struct policy_state {
	enum policy_mode mode;
	uint32_t max_age;
	uint32_t warnings;
	bool have_version;
	bool have_mode;
	bool have_max_age;
	struct policy_span *mx;
	size_t nmx;
	size_t mx_cap;
};

static enum policy_error policy_field_version(struct policy_state *st, const char *v, size_t len);
static enum policy_error policy_field_mode(struct policy_state *st, const char *v, size_t len);
static enum policy_error policy_field_max_age(struct policy_state *st, const char *v, size_t len);
static enum policy_error policy_field_mx(struct policy_state *st, const char *v, size_t len);

/*
 * The fields RFC 8461 defines. Names are case-sensitive (%s in the ABNF), so "Mode" is an
 * unknown extension. mx is the only field that may repeat (POL-5).
 */
static const struct policy_field {
	const char *name;
	enum policy_error (*parse)(struct policy_state *st, const char *v, size_t len);
	bool repeats;
	size_t seen; /* offset of the field's have_ flag in struct policy_state */
} policy_fields[] = {
	{ "version", policy_field_version, false, offsetof(struct policy_state, have_version) },
	{ "mode", policy_field_mode, false, offsetof(struct policy_state, have_mode) },
	{ "max_age", policy_field_max_age, false, offsetof(struct policy_state, have_max_age) },
	{ "mx", policy_field_mx, true, 0 },
};

static const char *const policy_mode_names[] = {
	[POLICY_MODE_ENFORCE] = "enforce",
	[POLICY_MODE_TESTING] = "testing",
	[POLICY_MODE_NONE] = "none",
};

static const char *const policy_error_names[] = {
	[POLICY_ERR_NONE] = "ok",
	[POLICY_ERR_TOO_LARGE] = "too-large",
	[POLICY_ERR_BAD_UTF8] = "bad-utf8",
	[POLICY_ERR_BAD_LINE] = "bad-line",
	[POLICY_ERR_BAD_VERSION] = "bad-version",
	[POLICY_ERR_BAD_MODE] = "bad-mode",
	[POLICY_ERR_BAD_MAX_AGE] = "bad-max-age",
	[POLICY_ERR_BAD_MX] = "bad-mx",
	[POLICY_ERR_NO_VERSION] = "no-version",
	[POLICY_ERR_NO_MODE] = "no-mode",
	[POLICY_ERR_NO_MAX_AGE] = "no-max-age",
	[POLICY_ERR_NO_MX] = "no-mx",
};

#define POLICY_NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *
policy_mode_str(enum policy_mode mode)
{
	if ((size_t)mode >= POLICY_NELEM(policy_mode_names))
		return "unknown";
	return policy_mode_names[mode];
}

const char *
policy_error_str(enum policy_error err)
{
	if ((size_t)err >= POLICY_NELEM(policy_error_names))
		return "unknown";
	return policy_error_names[err];
}

static bool
policy_is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool
policy_is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static char
policy_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static enum policy_error
policy_field_version(struct policy_state *st, const char *v, size_t len)
{
	(void)st;
	if (len != 5 || memcmp(v, "STSv1", 5) != 0)
		return POLICY_ERR_BAD_VERSION;
	return POLICY_ERR_NONE;
}

static enum policy_error
policy_field_mode(struct policy_state *st, const char *v, size_t len)
{
	for (size_t i = 0; i < POLICY_NELEM(policy_mode_names); i++) {
		if (strlen(policy_mode_names[i]) == len &&
		    memcmp(v, policy_mode_names[i], len) == 0) {
			st->mode = (enum policy_mode)i;
			return POLICY_ERR_NONE;
		}
	}
	return POLICY_ERR_BAD_MODE;
}

static enum policy_error
policy_field_max_age(struct policy_state *st, const char *v, size_t len)
{
	uint64_t value = 0;

	/* Ten digits overflow 32 bits, so count first and add up in 64 (POL-7). */
	if (len == 0 || len > POLICY_MAX_AGE_DIGITS)
		return POLICY_ERR_BAD_MAX_AGE;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return POLICY_ERR_BAD_MAX_AGE;
		value = value * 10 + (uint64_t)(v[i] - '0');
	}
	if (value > POLICY_MAX_AGE_MAX) {
		value = POLICY_MAX_AGE_MAX;
		st->warnings |= POLICY_WARN_MAX_AGE_CLAMPED;
	}
	st->max_age = (uint32_t)value;
	return POLICY_ERR_NONE;
}

/*
 * An address where a host name belongs (MX-1): a dotted quad, or an IPv6 address with or
 * without the RFC 5321 "IPv6:" tag. domain_is_ip_literal() flags every ':' but a name with a
 * port ("mx.example:25") is a broken pattern, not an address, so IPv6 is confirmed here.
 */
static bool
policy_mx_is_address(const char *v, size_t len)
{
	char buf[POLICY_IP6_TEXT_MAX + 1];
	struct in6_addr a6;
	const char *s = buf;

	if (!domain_is_ip_literal(v, len))
		return false;
	if (memchr(v, ':', len) == NULL)
		return true;
	if (len > POLICY_IP6_TEXT_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		buf[i] = policy_lower(v[i]);
	buf[len] = '\0';
	if (strncmp(buf, "ipv6:", 5) == 0)
		s += 5;
	return inet_pton(AF_INET6, s, &a6) == 1;
}

static uint32_t
policy_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;

	/* FNV-1a over the folded bytes, so names differing only in case collide. */
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)policy_lower(s[i]);
		h *= 16777619u;
	}
	return h;
}

static enum policy_error
policy_field_mx(struct policy_state *st, const char *v, size_t len)
{
	const char *name;
	size_t nlen;

	/* A trailing dot is an unambiguous FQDN spelling; rejecting it would fail open (MX-1). */
	if (len > 0 && v[len - 1] == '.') {
		len--;
		st->warnings |= POLICY_WARN_TRAILING_DOT;
	}
	if (policy_mx_is_address(v, len)) {
		st->warnings |= POLICY_WARN_IP_DROPPED;
		return POLICY_ERR_NONE;
	}
	/* ["*."] Domain: the wildcard is a whole left-most label and nothing else. */
	if (len >= 2 && v[0] == '*' && v[1] == '.') {
		name = v + 2;
		nlen = len - 2;
	} else {
		name = v;
		nlen = len;
	}
	if (!domain_is_ldh(name, nlen))
		return POLICY_ERR_BAD_MX;
	if (st->nmx == st->mx_cap) {
		st->mx_cap = st->mx_cap == 0 ? 8 : st->mx_cap * 2;
		st->mx = xreallocarray(st->mx, st->mx_cap, sizeof(*st->mx));
	}
	st->mx[st->nmx++] =
	        (struct policy_span){ .s = v, .len = (uint32_t)len, .hash = policy_hash(v, len) };
	return POLICY_ERR_NONE;
}

/* One line without its terminator: "name:" *WSP value *WSP, or empty (POL-4, POL-6). */
static enum policy_error
policy_line(struct policy_state *st, const char *line, size_t len)
{
	size_t name_len = 0, v, end = len;

	if (!utf8_valid((const unsigned char *)line, len))
		return POLICY_ERR_BAD_UTF8;
	while (end > 0 && policy_is_wsp(line[end - 1]))
		end--;
	if (end == 0) {
		/* Ignored rather than rejected: rejecting would fail open (POL-6.10). */
		st->warnings |= POLICY_WARN_EMPTY_LINE;
		return POLICY_ERR_NONE;
	}
	/* No WSP before the name or between name and ':' (POL-6.3); a BOM fails here too. */
	if (!policy_is_alnum((unsigned char)line[0]))
		return POLICY_ERR_BAD_LINE;
	while (name_len < end &&
	       (policy_is_alnum((unsigned char)line[name_len]) || line[name_len] == '_' ||
	        line[name_len] == '-' || line[name_len] == '.'))
		name_len++;
	if (name_len > POLICY_NAME_MAX || name_len == end || line[name_len] != ':')
		return POLICY_ERR_BAD_LINE;
	v = name_len + 1;
	while (v < end && policy_is_wsp(line[v]))
		v++;
	if (v == end)
		return POLICY_ERR_BAD_LINE;
	/* sts-policy-ext-value: VCHAR or UTF-8 with SP only inside; HTAB and a bare CR are CTLs. */
	for (size_t i = v; i < end; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c < 0x20 || c == 0x7F)
			return POLICY_ERR_BAD_LINE;
	}
	for (size_t i = 0; i < POLICY_NELEM(policy_fields); i++) {
		const struct policy_field *f = &policy_fields[i];
		bool *seen;
		enum policy_error err;

		if (strlen(f->name) != name_len || memcmp(line, f->name, name_len) != 0)
			continue;
		if (f->repeats)
			return f->parse(st, line + v, end - v);
		seen = (bool *)((char *)st + f->seen);
		/* First wins; later copies are ignored unchecked (POL-5, POL-6.8). */
		if (*seen) {
			st->warnings |= POLICY_WARN_DUPLICATE;
			return POLICY_ERR_NONE;
		}
		err = f->parse(st, line + v, end - v);
		if (err == POLICY_ERR_NONE)
			*seen = true;
		return err;
	}
	/* Unknown fields that fit the grammar are ignored (POL-5). */
	return POLICY_ERR_NONE;
}

static bool
policy_span_equal(const struct policy_span *a, const struct policy_span *b)
{
	if (a->hash != b->hash || a->len != b->len)
		return false;
	for (uint32_t i = 0; i < a->len; i++)
		if (policy_lower(a->s[i]) != policy_lower(b->s[i]))
			return false;
	return true;
}

/*
 * Drops case-insensitive duplicates in place, keeping the first of each (MX-4). A hash set
 * keeps this linear: a 64 KiB body can hold some 13000 patterns.
 */
static void
policy_dedup(struct policy_state *st)
{
	size_t size = 16, kept = 0;
	uint32_t *slots;

	if (st->nmx < 2)
		return;
	while (size < st->nmx * 2)
		size *= 2;
	slots = xcalloc(size, sizeof(*slots));
	for (size_t i = 0; i < st->nmx; i++) {
		size_t j = st->mx[i].hash & (size - 1);
		bool dup = false;

		/* slots[] holds kept index + 1, so 0 marks an empty slot. */
		while (slots[j] != 0) {
			if (policy_span_equal(&st->mx[slots[j] - 1], &st->mx[i])) {
				dup = true;
				break;
			}
			j = (j + 1) & (size - 1);
		}
		if (dup) {
			st->warnings |= POLICY_WARN_DUPLICATE_MX;
			continue;
		}
		st->mx[kept] = st->mx[i];
		slots[j] = (uint32_t)(++kept);
	}
	st->nmx = kept;
	free(slots);
}

/* Lays the result out in one allocation: the header, then each pattern lower-cased. */
static struct policy *
policy_build(const struct policy_state *st)
{
	size_t size = 0;
	struct policy *p;
	char *s;

	for (size_t i = 0; i < st->nmx; i++)
		size += st->mx[i].len + 1;
	p = xmalloc(sizeof(*p) + size);
	p->mode = st->mode;
	p->max_age = st->max_age;
	p->warnings = st->warnings;
	p->nmx = (uint32_t)st->nmx;
	p->mx_size = (uint32_t)size;
	s = p->mx;
	for (size_t i = 0; i < st->nmx; i++) {
		for (uint32_t k = 0; k < st->mx[i].len; k++)
			*s++ = policy_lower(st->mx[i].s[k]);
		*s++ = '\0';
	}
	return p;
}

struct policy *
policy_parse(const char *body, size_t len, enum policy_error *err, size_t *err_line)
{
	struct policy_state st = { .mode = POLICY_MODE_NONE };
	struct policy *p = NULL;
	enum policy_error e = POLICY_ERR_NONE;
	size_t pos = 0, lineno = 0;

	/* Never parse a prefix: a cut body can still look valid (FETCH-6). */
	if (len > POLICY_BODY_MAX) {
		e = POLICY_ERR_TOO_LARGE;
		goto fail;
	}
	while (pos < len) {
		const char *line = body + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t n = nl != NULL ? (size_t)(nl - line) : len - pos;

		pos += n + (nl != NULL ? 1 : 0);
		lineno++;
		/* LF or CRLF ends a line; a CR anywhere else is a CTL (POL-6.1). */
		if (nl != NULL && n > 0 && line[n - 1] == '\r')
			n--;
		e = policy_line(&st, line, n);
		if (e != POLICY_ERR_NONE)
			goto fail;
	}
	lineno = 0;
	if (!st.have_version)
		e = POLICY_ERR_NO_VERSION;
	else if (!st.have_mode)
		e = POLICY_ERR_NO_MODE;
	else if (!st.have_max_age)
		e = POLICY_ERR_NO_MAX_AGE;
	if (e != POLICY_ERR_NONE)
		goto fail;
	policy_dedup(&st);
	if (st.mode != POLICY_MODE_NONE && st.nmx == 0) {
		e = POLICY_ERR_NO_MX;
		goto fail;
	}
	p = policy_build(&st);
fail:
	free(st.mx);
	if (err != NULL)
		*err = e;
	if (err_line != NULL)
		*err_line = e == POLICY_ERR_NONE ? 0 : lineno;
	return p;
}

void
policy_free(struct policy *p)
{
	free(p);
}

const char *
policy_mx_next(const struct policy *p, const char *prev)
{
	const char *next;

	if (p == NULL || p->nmx == 0)
		return NULL;
	if (prev == NULL)
		return p->mx;
	next = prev + strlen(prev) + 1;
	return next < p->mx + p->mx_size ? next : NULL;
}
