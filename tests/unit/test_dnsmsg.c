/* test_dnsmsg.c: unit tests for the DNS response parser over hand-built messages. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "io/dnsmsg.h"

/* ---- a tiny message builder ---- */

#define MB_MAX 8192

struct mb {
	uint8_t b[MB_MAX];
	size_t n;
};

static void
mb_u8(struct mb *m, unsigned v)
{
	assert_true(m->n < MB_MAX);
	m->b[m->n++] = (uint8_t)v;
}

static void
mb_u16(struct mb *m, unsigned v)
{
	mb_u8(m, v >> 8 & 0xff);
	mb_u8(m, v & 0xff);
}

static void
mb_u32(struct mb *m, uint32_t v)
{
	mb_u16(m, v >> 16);
	mb_u16(m, v & 0xffff);
}

static void
mb_raw(struct mb *m, const void *p, size_t n)
{
	assert_true(n <= MB_MAX - m->n);
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

/* Uncompressed labels of a dotted name; "" is the root. */
static void
mb_name(struct mb *m, const char *name)
{
	while (*name != '\0') {
		const char *dot = strchr(name, '.');
		size_t len = dot != NULL ? (size_t)(dot - name) : strlen(name);

		mb_u8(m, (unsigned)len);
		mb_raw(m, name, len);
		name += len;
		if (*name == '.')
			name++;
	}
	mb_u8(m, 0);
}

/* Labels of a dotted prefix followed by a compression pointer. */
static void
mb_name_ptr(struct mb *m, const char *prefix, unsigned off)
{
	while (*prefix != '\0') {
		const char *dot = strchr(prefix, '.');
		size_t len = dot != NULL ? (size_t)(dot - prefix) : strlen(prefix);

		mb_u8(m, (unsigned)len);
		mb_raw(m, prefix, len);
		prefix += len;
		if (*prefix == '.')
			prefix++;
	}
	mb_u16(m, 0xc000 | off);
}

#define FL_RESPONSE 0x8180 /* QR, RD, RA */
#define QNAME_OFF   12     /* where the question's name starts, for pointers */

static void
mb_header(struct mb *m, unsigned flags, unsigned qd, unsigned an, unsigned ns, unsigned ar)
{
	m->n = 0;
	mb_u16(m, 0x1234);
	mb_u16(m, flags);
	mb_u16(m, qd);
	mb_u16(m, an);
	mb_u16(m, ns);
	mb_u16(m, ar);
}

static void
mb_question(struct mb *m, const char *name, unsigned type)
{
	mb_name(m, name);
	mb_u16(m, type);
	mb_u16(m, DNSMSG_CLASS_IN);
}

/* Writes type, class, TTL and an RDLENGTH placeholder; returns where to patch it. */
static size_t
mb_rr(struct mb *m, unsigned type, unsigned class, uint32_t ttl)
{
	size_t at;

	mb_u16(m, type);
	mb_u16(m, class);
	mb_u32(m, ttl);
	at = m->n;
	mb_u16(m, 0);
	return at;
}

static void
mb_rr_end(struct mb *m, size_t at)
{
	size_t len = m->n - at - 2;

	m->b[at] = (uint8_t)(len >> 8);
	m->b[at + 1] = (uint8_t)len;
}

static void
mb_txt(struct mb *m, uint32_t ttl, const char *const *strs)
{
	size_t at = mb_rr(m, DNSMSG_TYPE_TXT, DNSMSG_CLASS_IN, ttl);

	for (; *strs != NULL; strs++) {
		mb_u8(m, (unsigned)strlen(*strs));
		mb_raw(m, *strs, strlen(*strs));
	}
	mb_rr_end(m, at);
}

static void
mb_soa(struct mb *m, uint32_t ttl, uint32_t minimum)
{
	size_t at;

	mb_name(m, "example");
	at = mb_rr(m, DNSMSG_TYPE_SOA, DNSMSG_CLASS_IN, ttl);
	mb_name(m, "ns.example");
	mb_name_ptr(m, "hostmaster", (unsigned)(at - 8 - 9)); /* "example" of the owner */
	mb_u32(m, 2024010101);
	mb_u32(m, 3600);
	mb_u32(m, 600);
	mb_u32(m, 86400);
	mb_u32(m, minimum);
	mb_rr_end(m, at);
}

/* ---- the cases ---- */

static void
build_txt_multi(struct mb *m)
{
	static const char *const r1[] = { "v=STSv1; id=", "abc", NULL };
	static const char *const r2[] = { "other", NULL };

	mb_header(m, FL_RESPONSE, 1, 2, 0, 0);
	mb_question(m, "_mta-sts.example.com", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_txt(m, 300, r1);
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_txt(m, 200, r2);
}

static void
check_txt_multi(const struct dnsmsg *d)
{
	assert_int_equal(d->txt[0].len, 12);
	assert_memory_equal(d->txt[0].data, "v=STSv1; id=", 12);
	assert_true(d->txt[0].record_start);
	assert_int_equal(d->txt[1].len, 3);
	assert_memory_equal(d->txt[1].data, "abc", 3);
	assert_false(d->txt[1].record_start);
	assert_memory_equal(d->txt[2].data, "other", 5);
	assert_true(d->txt[2].record_start);
	assert_string_equal(d->qname, "_mta-sts.example.com");
	assert_string_equal(d->target, "_mta-sts.example.com");
	assert_int_equal(d->id, 0x1234);
}

/* _mta-sts.a.example -> x.provider.example -> y.provider.example (TXT), plus a decoy. */
static void
build_cname_txt(struct mb *m)
{
	static const char *const rec[] = { "v=STSv1; id=chain", NULL };
	static const char *const decoy[] = { "v=STSv1; id=decoy", NULL };
	size_t at, x;

	mb_header(m, FL_RESPONSE, 1, 4, 0, 0);
	mb_question(m, "_mta-sts.a.example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | QNAME_OFF);
	at = mb_rr(m, DNSMSG_TYPE_CNAME, DNSMSG_CLASS_IN, 600);
	x = m->n;
	mb_name(m, "x.provider.example");
	mb_rr_end(m, at);
	mb_name(m, "decoy.example");
	mb_txt(m, 10, decoy);
	mb_u16(m, 0xc000 | (unsigned)x);
	at = mb_rr(m, DNSMSG_TYPE_CNAME, DNSMSG_CLASS_IN, 50);
	mb_name_ptr(m, "Y", (unsigned)x + 2); /* y.provider.example, other case */
	mb_rr_end(m, at);
	mb_name(m, "y.PROVIDER.example");
	mb_txt(m, 300, rec);
}

static void
check_cname_txt(const struct dnsmsg *d)
{
	assert_memory_equal(d->txt[0].data, "v=STSv1; id=chain", 17);
	assert_string_equal(d->target, "Y.provider.example");
}

static void
build_cname_loop(struct mb *m)
{
	size_t at;

	mb_header(m, FL_RESPONSE, 1, 2, 0, 0);
	mb_question(m, "a.example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | QNAME_OFF);
	at = mb_rr(m, DNSMSG_TYPE_CNAME, DNSMSG_CLASS_IN, 60);
	mb_name(m, "b.example");
	mb_rr_end(m, at);
	mb_name(m, "b.example");
	at = mb_rr(m, DNSMSG_TYPE_CNAME, DNSMSG_CLASS_IN, 60);
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_rr_end(m, at);
}

/* A chain with no TXT at its end is NODATA, and the CNAME TTL bounds the negative TTL. */
static void
build_cname_nodata(struct mb *m)
{
	size_t at;

	mb_header(m, FL_RESPONSE, 1, 1, 1, 0);
	mb_question(m, "a.example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | QNAME_OFF);
	at = mb_rr(m, DNSMSG_TYPE_CNAME, DNSMSG_CLASS_IN, 20);
	mb_name(m, "b.example");
	mb_rr_end(m, at);
	mb_soa(m, 3600, 300);
}

static void
mb_mx(struct mb *m, uint32_t ttl, unsigned pref, const char *host)
{
	size_t at;

	mb_u16(m, 0xc000 | QNAME_OFF);
	at = mb_rr(m, DNSMSG_TYPE_MX, DNSMSG_CLASS_IN, ttl);
	mb_u16(m, pref);
	mb_name_ptr(m, host, QNAME_OFF);
	mb_rr_end(m, at);
}

static void
build_mx(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 2, 0, 0);
	mb_question(m, "example.org", DNSMSG_TYPE_MX);
	mb_mx(m, 3600, 10, "MX1");
	mb_mx(m, 1800, 20, "mx2");
}

static void
check_mx(const struct dnsmsg *d)
{
	assert_int_equal(d->mx[0].preference, 10);
	assert_string_equal(d->mx[0].host, "mx1.example.org");
	assert_int_equal(d->mx[1].preference, 20);
	assert_string_equal(d->mx[1].host, "mx2.example.org");
}

static void
build_null_mx(struct mb *m)
{
	size_t at;

	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_question(m, "example.net", DNSMSG_TYPE_MX);
	mb_u16(m, 0xc000 | QNAME_OFF);
	at = mb_rr(m, DNSMSG_TYPE_MX, DNSMSG_CLASS_IN, 600);
	mb_u16(m, 0);
	mb_u8(m, 0);
	mb_rr_end(m, at);
}

static void
check_null_mx(const struct dnsmsg *d)
{
	assert_int_equal(d->mx[0].preference, 0);
	assert_string_equal(d->mx[0].host, "");
}

/* A dot inside a label and a space come out escaped as in master files. */
static void
build_mx_escape(struct mb *m)
{
	size_t at;

	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_question(m, "example.net", DNSMSG_TYPE_MX);
	mb_u16(m, 0xc000 | QNAME_OFF);
	at = mb_rr(m, DNSMSG_TYPE_MX, DNSMSG_CLASS_IN, 600);
	mb_u16(m, 5);
	mb_u8(m, 5);
	mb_raw(m, "a.b c", 5);
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_rr_end(m, at);
}

static void
check_mx_escape(const struct dnsmsg *d)
{
	assert_string_equal(d->mx[0].host, "a\\.b\\032c.example.net");
}

static void
mb_addr(struct mb *m, unsigned type, uint32_t ttl, const void *addr, size_t len)
{
	size_t at;

	mb_u16(m, 0xc000 | QNAME_OFF);
	at = mb_rr(m, type, DNSMSG_CLASS_IN, ttl);
	mb_raw(m, addr, len);
	mb_rr_end(m, at);
}

static void
build_a(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 3, 0, 0);
	mb_question(m, "mta-sts.example.com", DNSMSG_TYPE_A);
	mb_addr(m, DNSMSG_TYPE_A, 120, "\xc0\x00\x02\x01", 4);
	mb_addr(m, DNSMSG_TYPE_A, 60, "\xc0\x00\x02\x02", 4);
	/* Another class is not an answer to an IN question. */
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_u16(m, DNSMSG_TYPE_A);
	mb_u16(m, 3);
	mb_u32(m, 1);
	mb_u16(m, 4);
	mb_raw(m, "\x7f\x00\x00\x01", 4);
}

static void
check_a(const struct dnsmsg *d)
{
	assert_memory_equal(d->a[0], "\xc0\x00\x02\x01", 4);
	assert_memory_equal(d->a[1], "\xc0\x00\x02\x02", 4);
}

static void
build_aaaa(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_question(m, "mta-sts.example.com", DNSMSG_TYPE_AAAA);
	mb_addr(m, DNSMSG_TYPE_AAAA, 0x80000001u, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
}

static void
check_aaaa(const struct dnsmsg *d)
{
	assert_memory_equal(d->aaaa[0], "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
}

static void
build_nxdomain(struct mb *m)
{
	mb_header(m, FL_RESPONSE | 3, 1, 0, 1, 0);
	mb_question(m, "_mta-sts.nothing.example", DNSMSG_TYPE_TXT);
	mb_soa(m, 3600, 300);
}

static void
build_nxdomain_soa_ttl(struct mb *m)
{
	mb_header(m, FL_RESPONSE | 3, 1, 0, 2, 0);
	mb_question(m, "_mta-sts.nothing.example", DNSMSG_TYPE_TXT);
	mb_soa(m, 45, 300);
	mb_soa(m, 5, 5); /* only the first SOA counts */
}

static void
build_nxdomain_no_soa(struct mb *m)
{
	mb_header(m, FL_RESPONSE | 3, 1, 0, 0, 0);
	mb_question(m, "_mta-sts.nothing.example", DNSMSG_TYPE_TXT);
}

static void
build_nodata(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 0, 1, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_soa(m, 900, 1200);
}

/* A TXT for another name is no answer for ours. */
static void
build_nodata_other_owner(struct mb *m)
{
	static const char *const spf[] = { "v=spf1 -all", NULL };

	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_question(m, "_mta-sts.example", DNSMSG_TYPE_TXT);
	mb_name(m, "example");
	mb_txt(m, 300, spf);
}

static void
build_servfail(struct mb *m)
{
	mb_header(m, FL_RESPONSE | 2, 1, 0, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
}

static void
build_refused(struct mb *m)
{
	mb_header(m, FL_RESPONSE | 5, 1, 0, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
}

/* The additional section (here: an EDNS OPT RR, then garbage) is never read. */
static void
build_additional_ignored(struct mb *m)
{
	static const char *const r[] = { "x", NULL };

	mb_header(m, FL_RESPONSE, 1, 1, 0, 2);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_txt(m, 30, r);
	mb_u8(m, 0);
	mb_u16(m, 41);
	mb_u16(m, 1232);
	mb_u32(m, 0);
	mb_u16(m, 0);
	mb_u8(m, 0xff);
}

static void
build_txt_empty_rdata(struct mb *m)
{
	size_t at;

	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | QNAME_OFF);
	at = mb_rr(m, DNSMSG_TYPE_TXT, DNSMSG_CLASS_IN, 30);
	mb_rr_end(m, at);
}

static void
check_txt_empty(const struct dnsmsg *d)
{
	assert_int_equal(d->txt[0].len, 0);
	assert_true(d->txt[0].record_start);
}

/* With TC set, a lone TXT may be one of two: not an answer either way. */
static void
build_truncated_tc(struct mb *m)
{
	static const char *const r[] = { "v=STSv1; id=1", NULL };

	mb_header(m, FL_RESPONSE | 0x0200, 1, 1, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_txt(m, 30, r);
}

static void
build_short_header(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 0, 0, 0);
	m->n = 11;
}

static void
build_short_question(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 0, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	m->n -= 3;
}

static void
build_not_response(struct mb *m)
{
	mb_header(m, 0x0100, 1, 0, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
}

static void
build_no_question(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 0, 0, 0, 0);
}

static void
build_two_questions(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 2, 0, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
}

static void
build_wrong_qtype(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 0, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_A);
}

static void
build_ptr_self(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 0, 0, 0);
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_u16(m, DNSMSG_TYPE_TXT);
	mb_u16(m, DNSMSG_CLASS_IN);
}

/* Owner = label "a" then a pointer back to that label: a loop through a backward pointer. */
static void
build_ptr_loop(struct mb *m)
{
	size_t start;

	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	start = m->n;
	mb_u8(m, 1);
	mb_u8(m, 'a');
	mb_u16(m, 0xc000 | (unsigned)start);
	mb_rr(m, DNSMSG_TYPE_TXT, DNSMSG_CLASS_IN, 1);
}

/* A pointer forwards: the only way two names could point at each other. */
static void
build_ptr_forward(struct mb *m)
{
	size_t first;

	mb_header(m, FL_RESPONSE, 1, 2, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	first = m->n;
	mb_u8(m, 1);
	mb_u8(m, 'a');
	mb_u16(m, 0xc000 | (unsigned)(first + 16)); /* the second owner, forward */
	mb_rr(m, DNSMSG_TYPE_TXT, DNSMSG_CLASS_IN, 1);
	mb_u8(m, 1);
	mb_u8(m, 'b');
	mb_u16(m, 0xc000 | (unsigned)first);
	mb_rr(m, DNSMSG_TYPE_TXT, DNSMSG_CLASS_IN, 1);
}

static void
build_ptr_past_end(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | 0x3fff);
	mb_rr(m, DNSMSG_TYPE_TXT, DNSMSG_CLASS_IN, 1);
}

static void
build_ptr_into_header(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | 2);
	mb_rr(m, DNSMSG_TYPE_TXT, DNSMSG_CLASS_IN, 1);
}

static void
build_ptr_truncated(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_u8(m, 0xc0);
}

static void
build_rdlength_past_end(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_u16(m, DNSMSG_TYPE_TXT);
	mb_u16(m, DNSMSG_CLASS_IN);
	mb_u32(m, 60);
	mb_u16(m, 10);
	mb_raw(m, "\x05hello", 6);
}

static void
build_txt_string_past_rdata(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_u16(m, DNSMSG_TYPE_TXT);
	mb_u16(m, DNSMSG_CLASS_IN);
	mb_u32(m, 60);
	mb_u16(m, 4);
	mb_raw(m, "\x05hel", 4);
	mb_raw(m, "lo", 2); /* in the message, but not in the RDATA */
}

static void
build_label_type_0x40(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 0, 0, 0);
	mb_u8(m, 0x40); /* 64: neither a label (<= 63) nor a pointer */
	mb_raw(m, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 64);
	mb_u8(m, 0);
	mb_u16(m, DNSMSG_TYPE_TXT);
	mb_u16(m, DNSMSG_CLASS_IN);
}

static void
build_label_63(struct mb *m)
{
	static const char *const r[] = { "ok", NULL };

	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_u8(m, 63);
	mb_raw(m, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 63);
	mb_u8(m, 0);
	mb_u16(m, DNSMSG_TYPE_TXT);
	mb_u16(m, DNSMSG_CLASS_IN);
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_txt(m, 5, r);
}

/* Five 63-octet labels make a 321-octet name. */
static void
build_name_too_long(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 0, 0, 0);
	for (int i = 0; i < 5; i++) {
		mb_u8(m, 63);
		mb_raw(m, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 63);
	}
	mb_u8(m, 0);
	mb_u16(m, DNSMSG_TYPE_TXT);
	mb_u16(m, DNSMSG_CLASS_IN);
}

/*
 * The same through pointers, each hop backwards: every suffix is fine, the whole is too long. The
 * labels sit in the RDATA of an RR of a type nobody reads; the next RR's owner points at them.
 */
static void
build_name_too_long_ptr(struct mb *m)
{
	size_t at, prev = QNAME_OFF;

	mb_header(m, FL_RESPONSE, 1, 2, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | QNAME_OFF);
	at = mb_rr(m, 99, DNSMSG_CLASS_IN, 1);
	for (int i = 0; i < 5; i++) {
		size_t here = m->n;

		mb_u8(m, 63);
		mb_raw(m, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 63);
		mb_u16(m, 0xc000 | (unsigned)prev);
		prev = here;
	}
	mb_rr_end(m, at);
	mb_u16(m, 0xc000 | (unsigned)prev);
	mb_rr(m, DNSMSG_TYPE_TXT, DNSMSG_CLASS_IN, 1);
}

static void
build_a_bad_rdlength(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_A);
	mb_addr(m, DNSMSG_TYPE_A, 60, "\x01\x02\x03\x04\x05", 5);
}

static void
build_mx_name_past_rdata(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_MX);
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_u16(m, DNSMSG_TYPE_MX);
	mb_u16(m, DNSMSG_CLASS_IN);
	mb_u32(m, 60);
	mb_u16(m, 4);
	mb_u16(m, 10);
	mb_raw(m, "\x02mx\x00", 4);
}

static void
build_soa_short(struct mb *m)
{
	size_t at;

	mb_header(m, FL_RESPONSE | 3, 1, 0, 1, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | QNAME_OFF);
	at = mb_rr(m, DNSMSG_TYPE_SOA, DNSMSG_CLASS_IN, 60);
	mb_u8(m, 0);
	mb_u8(m, 0);
	mb_u32(m, 1);
	mb_rr_end(m, at);
}

static void
build_too_many_txt(struct mb *m)
{
	size_t at;

	mb_header(m, FL_RESPONSE, 1, 1, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | QNAME_OFF);
	at = mb_rr(m, DNSMSG_TYPE_TXT, DNSMSG_CLASS_IN, 60);
	for (int i = 0; i <= DNSMSG_TXT_MAX; i++)
		mb_u8(m, 0);
	mb_rr_end(m, at);
}

static void
build_too_many_mx(struct mb *m)
{
	mb_header(m, FL_RESPONSE, 1, DNSMSG_MX_MAX + 1, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_MX);
	for (int i = 0; i <= DNSMSG_MX_MAX; i++)
		mb_mx(m, 60, (unsigned)i, "mx");
}

/* Counts promise more answers than the message holds. */
static void
build_missing_answers(struct mb *m)
{
	static const char *const r[] = { "x", NULL };

	mb_header(m, FL_RESPONSE, 1, 3, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_txt(m, 30, r);
}

/* A broken RR after the answer still spoils the whole message. */
static void
build_bad_second_rr(struct mb *m)
{
	static const char *const r[] = { "x", NULL };

	mb_header(m, FL_RESPONSE, 1, 2, 0, 0);
	mb_question(m, "example", DNSMSG_TYPE_TXT);
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_txt(m, 30, r);
	mb_u16(m, 0xc000 | QNAME_OFF);
	mb_u16(m, DNSMSG_TYPE_A);
}

struct dnsmsg_case {
	const char *name;
	void (*build)(struct mb *m);
	uint16_t qtype;
	enum dnsmsg_err err;
	enum dns_status status;
	uint32_t ttl;
	bool ttl_known;
	size_t ntxt;
	size_t naddr; /* A + AAAA */
	size_t nmx;
	unsigned ncname;
	void (*check)(const struct dnsmsg *d);
};

#define T_TXT  DNSMSG_TYPE_TXT
#define T_A    DNSMSG_TYPE_A
#define T_AAAA DNSMSG_TYPE_AAAA
#define T_MX   DNSMSG_TYPE_MX

static const struct dnsmsg_case cases[] = {
	{ "txt_multi", build_txt_multi, T_TXT, DNSMSG_OK, DNS_OK, 200, true, 3, 0, 0, 0,
	  check_txt_multi },
	{ "cname_chain_txt", build_cname_txt, T_TXT, DNSMSG_OK, DNS_OK, 50, true, 1, 0, 0, 2,
	  check_cname_txt },
	{ "cname_loop", build_cname_loop, T_TXT, DNSMSG_E_CNAME_LOOP, DNS_ERROR, 0, false, 0, 0, 0,
	  0, NULL },
	{ "cname_nodata", build_cname_nodata, T_TXT, DNSMSG_OK, DNS_NODATA, 20, true, 0, 0, 0, 1,
	  NULL },
	{ "mx", build_mx, T_MX, DNSMSG_OK, DNS_OK, 1800, true, 0, 0, 2, 0, check_mx },
	{ "null_mx", build_null_mx, T_MX, DNSMSG_OK, DNS_OK, 600, true, 0, 0, 1, 0, check_null_mx },
	{ "mx_escape", build_mx_escape, T_MX, DNSMSG_OK, DNS_OK, 600, true, 0, 0, 1, 0,
	  check_mx_escape },
	{ "a", build_a, T_A, DNSMSG_OK, DNS_OK, 60, true, 0, 2, 0, 0, check_a },
	{ "aaaa_ttl_top_bit", build_aaaa, T_AAAA, DNSMSG_OK, DNS_OK, 0, true, 0, 1, 0, 0,
	  check_aaaa },
	{ "nxdomain_soa_minimum", build_nxdomain, T_TXT, DNSMSG_OK, DNS_NXDOMAIN, 300, true, 0, 0,
	  0, 0, NULL },
	{ "nxdomain_soa_ttl", build_nxdomain_soa_ttl, T_TXT, DNSMSG_OK, DNS_NXDOMAIN, 45, true, 0,
	  0, 0, 0, NULL },
	{ "nxdomain_no_soa", build_nxdomain_no_soa, T_TXT, DNSMSG_OK, DNS_NXDOMAIN, 0, false, 0, 0,
	  0, 0, NULL },
	{ "nodata", build_nodata, T_TXT, DNSMSG_OK, DNS_NODATA, 900, true, 0, 0, 0, 0, NULL },
	{ "nodata_other_owner", build_nodata_other_owner, T_TXT, DNSMSG_OK, DNS_NODATA, 0, false, 0,
	  0, 0, 0, NULL },
	{ "servfail", build_servfail, T_TXT, DNSMSG_OK, DNS_SERVFAIL, 0, false, 0, 0, 0, 0, NULL },
	{ "refused", build_refused, T_TXT, DNSMSG_OK, DNS_SERVFAIL, 0, false, 0, 0, 0, 0, NULL },
	{ "additional_ignored", build_additional_ignored, T_TXT, DNSMSG_OK, DNS_OK, 30, true, 1, 0,
	  0, 0, NULL },
	{ "txt_empty_rdata", build_txt_empty_rdata, T_TXT, DNSMSG_OK, DNS_OK, 30, true, 1, 0, 0, 0,
	  check_txt_empty },
	{ "label_63", build_label_63, T_TXT, DNSMSG_OK, DNS_OK, 5, true, 1, 0, 0, 0, NULL },
	{ "truncated_tc", build_truncated_tc, T_TXT, DNSMSG_E_TRUNCATED, DNS_ERROR, 0, false, 0, 0,
	  0, 0, NULL },
	{ "short_header", build_short_header, T_TXT, DNSMSG_E_SHORT, DNS_ERROR, 0, false, 0, 0, 0,
	  0, NULL },
	{ "short_question", build_short_question, T_TXT, DNSMSG_E_SHORT, DNS_ERROR, 0, false, 0, 0,
	  0, 0, NULL },
	{ "not_response", build_not_response, T_TXT, DNSMSG_E_NOT_RESPONSE, DNS_ERROR, 0, false, 0,
	  0, 0, 0, NULL },
	{ "no_question", build_no_question, T_TXT, DNSMSG_E_QUESTION, DNS_ERROR, 0, false, 0, 0, 0,
	  0, NULL },
	{ "two_questions", build_two_questions, T_TXT, DNSMSG_E_QUESTION, DNS_ERROR, 0, false, 0, 0,
	  0, 0, NULL },
	{ "wrong_qtype", build_wrong_qtype, T_TXT, DNSMSG_E_QUESTION, DNS_ERROR, 0, false, 0, 0, 0,
	  0, NULL },
	{ "ptr_self", build_ptr_self, T_TXT, DNSMSG_E_NAME, DNS_ERROR, 0, false, 0, 0, 0, 0, NULL },
	{ "ptr_loop", build_ptr_loop, T_TXT, DNSMSG_E_NAME, DNS_ERROR, 0, false, 0, 0, 0, 0, NULL },
	{ "ptr_forward", build_ptr_forward, T_TXT, DNSMSG_E_NAME, DNS_ERROR, 0, false, 0, 0, 0, 0,
	  NULL },
	{ "ptr_past_end", build_ptr_past_end, T_TXT, DNSMSG_E_NAME, DNS_ERROR, 0, false, 0, 0, 0, 0,
	  NULL },
	{ "ptr_into_header", build_ptr_into_header, T_TXT, DNSMSG_E_NAME, DNS_ERROR, 0, false, 0, 0,
	  0, 0, NULL },
	{ "ptr_truncated", build_ptr_truncated, T_TXT, DNSMSG_E_SHORT, DNS_ERROR, 0, false, 0, 0, 0,
	  0, NULL },
	{ "rdlength_past_end", build_rdlength_past_end, T_TXT, DNSMSG_E_SHORT, DNS_ERROR, 0, false,
	  0, 0, 0, 0, NULL },
	{ "txt_string_past_rdata", build_txt_string_past_rdata, T_TXT, DNSMSG_E_RDATA, DNS_ERROR, 0,
	  false, 0, 0, 0, 0, NULL },
	{ "label_type_0x40", build_label_type_0x40, T_TXT, DNSMSG_E_NAME, DNS_ERROR, 0, false, 0, 0,
	  0, 0, NULL },
	{ "name_too_long", build_name_too_long, T_TXT, DNSMSG_E_NAME, DNS_ERROR, 0, false, 0, 0, 0,
	  0, NULL },
	{ "name_too_long_ptr", build_name_too_long_ptr, T_TXT, DNSMSG_E_NAME, DNS_ERROR, 0, false,
	  0, 0, 0, 0, NULL },
	{ "a_bad_rdlength", build_a_bad_rdlength, T_A, DNSMSG_E_RDATA, DNS_ERROR, 0, false, 0, 0, 0,
	  0, NULL },
	{ "mx_name_past_rdata", build_mx_name_past_rdata, T_MX, DNSMSG_E_RDATA, DNS_ERROR, 0, false,
	  0, 0, 0, 0, NULL },
	{ "soa_short", build_soa_short, T_TXT, DNSMSG_E_RDATA, DNS_ERROR, 0, false, 0, 0, 0, 0,
	  NULL },
	{ "too_many_txt", build_too_many_txt, T_TXT, DNSMSG_E_TOO_MANY, DNS_ERROR, 0, false, 0, 0,
	  0, 0, NULL },
	{ "too_many_mx", build_too_many_mx, T_MX, DNSMSG_E_TOO_MANY, DNS_ERROR, 0, false, 0, 0, 0,
	  0, NULL },
	{ "missing_answers", build_missing_answers, T_TXT, DNSMSG_E_SHORT, DNS_ERROR, 0, false, 0,
	  0, 0, 0, NULL },
	{ "bad_second_rr", build_bad_second_rr, T_TXT, DNSMSG_E_SHORT, DNS_ERROR, 0, false, 0, 0, 0,
	  0, NULL },
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

static struct dnsmsg *
msg_new(void)
{
	struct dnsmsg *d = malloc(sizeof(*d));

	assert_non_null(d);
	return d;
}

static void
test_case(void **state)
{
	const struct dnsmsg_case *c = *state;
	struct mb *m = calloc(1, sizeof(*m));
	struct dnsmsg *d = msg_new();
	enum dnsmsg_err err;

	assert_non_null(m);
	c->build(m);
	err = dnsmsg_parse(m->b, m->n, c->qtype, d);
	if (err != c->err)
		fail_msg("%s: got %s, want %s", c->name, dnsmsg_err_str(err),
		         dnsmsg_err_str(c->err));
	assert_int_equal(d->status, c->status);
	assert_int_equal(d->ttl, c->ttl);
	assert_int_equal(d->ttl_known, c->ttl_known);
	assert_int_equal(d->ntxt, c->ntxt);
	assert_int_equal(d->na + d->naaaa, c->naddr);
	assert_int_equal(d->nmx, c->nmx);
	assert_int_equal(d->ncname, c->ncname);
	if (c->check != NULL)
		c->check(d);
	free(d);
	free(m);
}

/* Every prefix of every case, each copied to an exact-size buffer for ASan: never a crash. */
static void
test_truncations(void **state)
{
	struct mb *m = calloc(1, sizeof(*m));
	struct dnsmsg *d = msg_new();

	assert_non_null(m);
	for (size_t i = 0; i < NCASES; i++) {
		cases[i].build(m);
		for (size_t n = 0; n < m->n; n++) {
			uint8_t *copy = malloc(n == 0 ? 1 : n);

			assert_non_null(copy);
			memcpy(copy, m->b, n);
			(void)dnsmsg_parse(copy, n, cases[i].qtype, d);
			/* Counts stay, so a cut into a section that is read must be noticed. */
			if (cases[i].err == DNSMSG_OK && cases[i].build != build_additional_ignored)
				assert_int_equal(d->status, DNS_ERROR);
			free(copy);
		}
	}
	free(d);
	free(m);
}

/* Every byte of every case set to a few telling values: never a crash, never a bad read. */
static void
test_mutations(void **state)
{
	static const uint8_t values[] = { 0x00, 0x01, 0x3f, 0x40, 0x80, 0xc0, 0xc1, 0xff };
	struct mb *m = calloc(1, sizeof(*m));
	struct dnsmsg *d = msg_new();

	assert_non_null(m);
	for (size_t i = 0; i < NCASES; i++) {
		cases[i].build(m);
		uint8_t *copy = malloc(m->n);

		assert_non_null(copy);
		for (size_t pos = 0; pos < m->n; pos++) {
			for (size_t v = 0; v < sizeof(values); v++) {
				memcpy(copy, m->b, m->n);
				copy[pos] = values[v];
				if (dnsmsg_parse(copy, m->n, cases[i].qtype, d) == DNSMSG_OK) {
					for (size_t t = 0; t < d->ntxt; t++)
						assert_true(d->txt[t].data >= copy &&
						            d->txt[t].data + d->txt[t].len <=
						                    copy + m->n);
					for (size_t x = 0; x < d->nmx; x++)
						assert_true(strlen(d->mx[x].host) < 256);
				}
			}
		}
		free(copy);
	}
	free(d);
	free(m);
}

/* A failed parse leaves nothing behind from an earlier good one. */
static void
test_error_resets(void **state)
{
	struct mb *m = calloc(1, sizeof(*m));
	struct dnsmsg *d = msg_new();

	assert_non_null(m);
	build_txt_multi(m);
	assert_int_equal(dnsmsg_parse(m->b, m->n, T_TXT, d), DNSMSG_OK);
	assert_int_equal(d->ntxt, 3);
	build_txt_string_past_rdata(m);
	assert_int_equal(dnsmsg_parse(m->b, m->n, T_TXT, d), DNSMSG_E_RDATA);
	assert_int_equal(d->ntxt, 0);
	assert_int_equal(d->status, DNS_ERROR);
	assert_int_equal(dnsmsg_parse(m->b, m->n, 99, d), DNSMSG_E_QUESTION);
	assert_string_equal(dnsmsg_err_str(DNSMSG_E_CNAME_LOOP), "CNAME chain too long");
	assert_string_equal(dnsmsg_err_str((enum dnsmsg_err)99), "unknown");
	free(d);
	free(m);
}

int
main(void)
{
	struct CMUnitTest tests[NCASES + 3];

	for (size_t i = 0; i < NCASES; i++) {
		struct CMUnitTest t = cmocka_unit_test_prestate(test_case, (void *)&cases[i]);

		t.name = cases[i].name;
		tests[i] = t;
	}
	tests[NCASES] = (struct CMUnitTest)cmocka_unit_test(test_truncations);
	tests[NCASES + 1] = (struct CMUnitTest)cmocka_unit_test(test_mutations);
	tests[NCASES + 2] = (struct CMUnitTest)cmocka_unit_test(test_error_resets);
	return cmocka_run_group_tests_name("dnsmsg", tests, NULL, NULL);
}
