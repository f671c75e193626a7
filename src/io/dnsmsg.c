/* dnsmsg.c: pure parser for DNS response messages: outcome, CNAME chain, TXT/A/AAAA/MX, TTLs. */
#include "config.h"

#include "io/dnsmsg.h"

#include <string.h>

#define DNSMSG_HDR_LEN  12
#define DNSMSG_WIRE_MAX 255 /* RFC 1035 §3.1: a name is at most 255 octets on the wire */
/*
 * Pointer targets must strictly decrease, which already makes every name finite; this bounds the
 * work per name, since a real name has at most 127 labels and so needs no more pointers.
 */
#define DNSMSG_PTR_MAX 128
/* CNAME RRs remembered from one answer section to build the chain from. */
#define DNSMSG_CNAME_RR_MAX 64

#define DNSMSG_RCODE_NOERROR  0
#define DNSMSG_RCODE_NXDOMAIN 3

/* An uncompressed name in wire form: length-prefixed labels ending with the root label. */
struct dnsmsg_name {
	uint8_t wire[DNSMSG_WIRE_MAX];
	size_t len;
};

/* The fixed part of an RR, with where its RDATA lies in the message. */
struct dnsmsg_rr {
	size_t owner_off;
	uint16_t type;
	uint16_t class;
	uint32_t ttl;
	size_t rdoff;
	size_t rdlen;
};

/* A cursor over one message; every read checks against len. */
struct dnsmsg_in {
	const uint8_t *msg;
	size_t len;
};

static const char *const dnsmsg_err_names[] = {
	[DNSMSG_OK] = "ok",
	[DNSMSG_E_SHORT] = "message too short",
	[DNSMSG_E_NAME] = "bad name",
	[DNSMSG_E_RDATA] = "bad rdata",
	[DNSMSG_E_NOT_RESPONSE] = "not a response",
	[DNSMSG_E_QUESTION] = "question does not match",
	[DNSMSG_E_TOO_MANY] = "too many answers",
	[DNSMSG_E_CNAME_LOOP] = "CNAME chain too long",
	[DNSMSG_E_TRUNCATED] = "truncated (TC)",
};

const char *
dnsmsg_err_str(enum dnsmsg_err err)
{
	if ((size_t)err >= sizeof(dnsmsg_err_names) / sizeof(dnsmsg_err_names[0]))
		return "unknown";
	return dnsmsg_err_names[err];
}

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t
min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/*
 * Reads the possibly compressed name at *off into wire form and moves *off past the bytes the
 * name occupies at that place (up to and including its first pointer).
 */
static enum dnsmsg_err
dnsmsg_name_read(const struct dnsmsg_in *in, size_t *off, struct dnsmsg_name *name)
{
	size_t pos = *off, end = 0, limit = *off;
	unsigned hops = 0;

	name->len = 0;
	for (;;) {
		uint8_t c;

		if (pos >= in->len)
			return DNSMSG_E_SHORT;
		c = in->msg[pos];
		if ((c & 0xc0) == 0xc0) {
			size_t ptr;

			if (in->len - pos < 2)
				return DNSMSG_E_SHORT;
			ptr = (size_t)(c & 0x3f) << 8 | in->msg[pos + 1];
			/* Strictly decreasing targets: no loops, whatever the input. */
			if (ptr < DNSMSG_HDR_LEN || ptr >= limit || ++hops > DNSMSG_PTR_MAX)
				return DNSMSG_E_NAME;
			if (hops == 1)
				end = pos + 2;
			limit = ptr;
			pos = ptr;
			continue;
		}
		if ((c & 0xc0) != 0) /* 0x40 and 0x80 label types are obsolete or undefined */
			return DNSMSG_E_NAME;
		if ((size_t)c >= in->len - pos)
			return DNSMSG_E_SHORT;
		if (name->len + c + 1 > DNSMSG_WIRE_MAX)
			return DNSMSG_E_NAME;
		memcpy(name->wire + name->len, in->msg + pos, (size_t)c + 1);
		name->len += (size_t)c + 1;
		pos += (size_t)c + 1;
		if (c == 0)
			break;
	}
	*off = hops > 0 ? end : pos;
	return DNSMSG_OK;
}

static uint8_t
ascii_lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c + ('a' - 'A')) : c;
}

/* Label length octets are below 64, so lowering them is harmless and one loop does it all. */
static bool
dnsmsg_name_eq(const struct dnsmsg_name *a, const struct dnsmsg_name *b)
{
	if (a->len != b->len)
		return false;
	for (size_t i = 0; i < a->len; i++)
		if (ascii_lower(a->wire[i]) != ascii_lower(b->wire[i]))
			return false;
	return true;
}

/*
 * Presentation form without the trailing dot ("" for the root). Octets that would be ambiguous
 * or unprintable are escaped as in master files (RFC 1035 §5.1). Returns -1 if out is too small.
 */
static int
dnsmsg_name_str(const struct dnsmsg_name *name, bool lower, char *out, size_t outsz)
{
	size_t o = 0, i = 0;

	if (outsz == 0)
		return -1;
	while (i < name->len && name->wire[i] != 0) {
		size_t n = name->wire[i++];

		if (o > 0) {
			if (o + 1 >= outsz)
				return -1;
			out[o++] = '.';
		}
		for (; n > 0; n--, i++) {
			uint8_t c = lower ? ascii_lower(name->wire[i]) : name->wire[i];

			if (c == '.' || c == '\\') {
				if (o + 2 >= outsz)
					return -1;
				out[o++] = '\\';
				out[o++] = (char)c;
			} else if (c < 0x21 || c > 0x7e) {
				if (o + 4 >= outsz)
					return -1;
				out[o++] = '\\';
				out[o++] = (char)('0' + c / 100);
				out[o++] = (char)('0' + c / 10 % 10);
				out[o++] = (char)('0' + c % 10);
			} else {
				if (o + 1 >= outsz)
					return -1;
				out[o++] = (char)c;
			}
		}
	}
	out[o] = '\0';
	return 0;
}

/* Reads an RR's owner and fixed fields at *off, checks RDLENGTH, moves *off past the RR. */
static enum dnsmsg_err
dnsmsg_rr_read(const struct dnsmsg_in *in, size_t *off, struct dnsmsg_rr *rr,
               struct dnsmsg_name *owner)
{
	enum dnsmsg_err err;
	const uint8_t *p;

	rr->owner_off = *off;
	if ((err = dnsmsg_name_read(in, off, owner)) != DNSMSG_OK)
		return err;
	if (in->len - *off < 10)
		return DNSMSG_E_SHORT;
	p = in->msg + *off;
	rr->type = get16(p);
	rr->class = get16(p + 2);
	rr->ttl = get32(p + 4);
	/* RFC 2181 §8: a TTL with the top bit set is treated as zero. */
	if (rr->ttl & 0x80000000u)
		rr->ttl = 0;
	rr->rdlen = get16(p + 8);
	*off += 10;
	if (rr->rdlen > in->len - *off)
		return DNSMSG_E_SHORT;
	rr->rdoff = *off;
	*off += rr->rdlen;
	return DNSMSG_OK;
}

/* Reads a name that must lie inside the RDATA [*off, rdend); *off moves past it. */
static enum dnsmsg_err
dnsmsg_rdata_name(const struct dnsmsg_in *in, size_t *off, size_t rdend, struct dnsmsg_name *name)
{
	enum dnsmsg_err err;

	if ((err = dnsmsg_name_read(in, off, name)) != DNSMSG_OK)
		return err;
	return *off <= rdend ? DNSMSG_OK : DNSMSG_E_RDATA;
}

static enum dnsmsg_err
dnsmsg_collect_txt(const struct dnsmsg_in *in, const struct dnsmsg_rr *rr, struct dnsmsg *out)
{
	size_t p = rr->rdoff, end = rr->rdoff + rr->rdlen;
	bool first = true;

	/* An empty TXT RDATA breaks RFC 1035, but keep it as one empty record, not as none. */
	do {
		size_t n = 0;

		if (p < end) {
			n = in->msg[p++];
			if (n > end - p)
				return DNSMSG_E_RDATA;
		}
		if (out->ntxt == DNSMSG_TXT_MAX)
			return DNSMSG_E_TOO_MANY;
		out->txt[out->ntxt].data = in->msg + p;
		out->txt[out->ntxt].len = n;
		out->txt[out->ntxt].record_start = first;
		out->ntxt++;
		first = false;
		p += n;
	} while (p < end);
	return DNSMSG_OK;
}

static enum dnsmsg_err
dnsmsg_collect_a(const struct dnsmsg_in *in, const struct dnsmsg_rr *rr, struct dnsmsg *out)
{
	if (rr->rdlen != sizeof(out->a[0]))
		return DNSMSG_E_RDATA;
	if (out->na == DNSMSG_ADDR_MAX)
		return DNSMSG_E_TOO_MANY;
	memcpy(out->a[out->na++], in->msg + rr->rdoff, sizeof(out->a[0]));
	return DNSMSG_OK;
}

static enum dnsmsg_err
dnsmsg_collect_aaaa(const struct dnsmsg_in *in, const struct dnsmsg_rr *rr, struct dnsmsg *out)
{
	if (rr->rdlen != sizeof(out->aaaa[0]))
		return DNSMSG_E_RDATA;
	if (out->naaaa == DNSMSG_ADDR_MAX)
		return DNSMSG_E_TOO_MANY;
	memcpy(out->aaaa[out->naaaa++], in->msg + rr->rdoff, sizeof(out->aaaa[0]));
	return DNSMSG_OK;
}

static enum dnsmsg_err
dnsmsg_collect_mx(const struct dnsmsg_in *in, const struct dnsmsg_rr *rr, struct dnsmsg *out)
{
	size_t off = rr->rdoff + 2, end = rr->rdoff + rr->rdlen;
	struct dnsmsg_name host;
	struct dns_mx *mx;
	enum dnsmsg_err err;

	if (rr->rdlen < 3)
		return DNSMSG_E_RDATA;
	if (out->nmx == DNSMSG_MX_MAX)
		return DNSMSG_E_TOO_MANY;
	if ((err = dnsmsg_rdata_name(in, &off, end, &host)) != DNSMSG_OK)
		return err;
	if (off != end)
		return DNSMSG_E_RDATA;
	mx = &out->mx[out->nmx];
	mx->preference = get16(in->msg + rr->rdoff);
	if (dnsmsg_name_str(&host, true, mx->host, sizeof(mx->host)) == -1)
		return DNSMSG_E_NAME;
	out->nmx++;
	return DNSMSG_OK;
}

typedef enum dnsmsg_err (*dnsmsg_collect_fn)(const struct dnsmsg_in *in, const struct dnsmsg_rr *rr,
                                             struct dnsmsg *out);

static const struct {
	uint16_t type;
	dnsmsg_collect_fn collect;
} dnsmsg_collectors[] = {
	{ DNSMSG_TYPE_TXT, dnsmsg_collect_txt },
	{ DNSMSG_TYPE_A, dnsmsg_collect_a },
	{ DNSMSG_TYPE_AAAA, dnsmsg_collect_aaaa },
	{ DNSMSG_TYPE_MX, dnsmsg_collect_mx },
};

static dnsmsg_collect_fn
dnsmsg_collector(uint16_t qtype)
{
	for (size_t i = 0; i < sizeof(dnsmsg_collectors) / sizeof(dnsmsg_collectors[0]); i++)
		if (dnsmsg_collectors[i].type == qtype)
			return dnsmsg_collectors[i].collect;
	return NULL;
}

/* A CNAME RR seen in the answer section: where its owner and target are. */
struct dnsmsg_cname {
	size_t owner_off;
	size_t rdoff;
	uint32_t ttl;
};

/*
 * Walks the answer section once, checking every RR and remembering the CNAMEs. *next is where
 * the authority section starts.
 */
static enum dnsmsg_err
dnsmsg_scan_answers(const struct dnsmsg_in *in, size_t off, unsigned ancount,
                    struct dnsmsg_cname *cn, size_t *ncn, size_t *next)
{
	struct dnsmsg_name owner, target;
	struct dnsmsg_rr rr;
	enum dnsmsg_err err;

	*ncn = 0;
	for (unsigned i = 0; i < ancount; i++) {
		if ((err = dnsmsg_rr_read(in, &off, &rr, &owner)) != DNSMSG_OK)
			return err;
		if (rr.type != DNSMSG_TYPE_CNAME || rr.class != DNSMSG_CLASS_IN)
			continue;
		size_t t = rr.rdoff;

		if ((err = dnsmsg_rdata_name(in, &t, rr.rdoff + rr.rdlen, &target)) != DNSMSG_OK)
			return err;
		if (t != rr.rdoff + rr.rdlen)
			return DNSMSG_E_RDATA;
		if (*ncn == DNSMSG_CNAME_RR_MAX)
			return DNSMSG_E_TOO_MANY;
		cn[*ncn].owner_off = rr.owner_off;
		cn[*ncn].rdoff = rr.rdoff;
		cn[*ncn].ttl = rr.ttl;
		(*ncn)++;
	}
	*next = off;
	return DNSMSG_OK;
}

/* Follows CNAMEs from the name in *cur (TXT-9: the answer holds the chain and the target's RRs). */
static enum dnsmsg_err
dnsmsg_follow(const struct dnsmsg_in *in, const struct dnsmsg_cname *cn, size_t ncn,
              struct dnsmsg_name *cur, struct dnsmsg *out)
{
	struct dnsmsg_name owner;
	enum dnsmsg_err err;

	for (;;) {
		size_t i, off;

		for (i = 0; i < ncn; i++) {
			off = cn[i].owner_off;
			if ((err = dnsmsg_name_read(in, &off, &owner)) != DNSMSG_OK)
				return err;
			if (dnsmsg_name_eq(&owner, cur))
				break;
		}
		if (i == ncn)
			return DNSMSG_OK;
		if (out->ncname == DNSMSG_CNAME_MAX)
			return DNSMSG_E_CNAME_LOOP;
		off = cn[i].rdoff;
		if ((err = dnsmsg_name_read(in, &off, cur)) != DNSMSG_OK)
			return err;
		out->ttl = min_u32(out->ttl, cn[i].ttl);
		out->ncname++;
	}
}

/* Collects the answer RRs of qtype owned by the chain's target. */
static enum dnsmsg_err
dnsmsg_collect(const struct dnsmsg_in *in, size_t off, unsigned ancount, uint16_t qtype,
               const struct dnsmsg_name *target, struct dnsmsg *out, size_t *nused)
{
	dnsmsg_collect_fn collect = dnsmsg_collector(qtype);
	struct dnsmsg_name owner;
	struct dnsmsg_rr rr;
	enum dnsmsg_err err;

	*nused = 0;
	for (unsigned i = 0; i < ancount; i++) {
		if ((err = dnsmsg_rr_read(in, &off, &rr, &owner)) != DNSMSG_OK)
			return err;
		if (rr.type != qtype || rr.class != DNSMSG_CLASS_IN ||
		    !dnsmsg_name_eq(&owner, target))
			continue;
		if ((err = collect(in, &rr, out)) != DNSMSG_OK)
			return err;
		out->ttl = min_u32(out->ttl, rr.ttl);
		(*nused)++;
	}
	return DNSMSG_OK;
}

/* RFC 2308 §5: a negative answer lives min(SOA TTL, SOA MINIMUM); the first SOA counts. */
static enum dnsmsg_err
dnsmsg_negative_ttl(const struct dnsmsg_in *in, size_t off, unsigned nscount, struct dnsmsg *out)
{
	struct dnsmsg_name name;
	struct dnsmsg_rr rr;
	enum dnsmsg_err err;

	for (unsigned i = 0; i < nscount; i++) {
		if ((err = dnsmsg_rr_read(in, &off, &rr, &name)) != DNSMSG_OK)
			return err;
		if (rr.type != DNSMSG_TYPE_SOA || rr.class != DNSMSG_CLASS_IN || out->ttl_known)
			continue;
		size_t p = rr.rdoff, end = rr.rdoff + rr.rdlen;

		if ((err = dnsmsg_rdata_name(in, &p, end, &name)) != DNSMSG_OK ||
		    (err = dnsmsg_rdata_name(in, &p, end, &name)) != DNSMSG_OK)
			return err;
		if (end - p != 20) /* serial, refresh, retry, expire, minimum */
			return DNSMSG_E_RDATA;
		out->ttl = min_u32(out->ttl, min_u32(rr.ttl, get32(in->msg + p + 16)));
		out->ttl_known = true;
	}
	return DNSMSG_OK;
}

static void
dnsmsg_reset(struct dnsmsg *out)
{
	out->id = 0;
	out->rcode = 0;
	out->status = DNS_ERROR;
	out->ttl = 0;
	out->ttl_known = false;
	out->qname[0] = '\0';
	out->target[0] = '\0';
	out->ncname = 0;
	out->ntxt = 0;
	out->na = 0;
	out->naaaa = 0;
	out->nmx = 0;
}

static enum dnsmsg_err
dnsmsg_parse_body(const struct dnsmsg_in *in, uint16_t qtype, struct dnsmsg *out)
{
	struct dnsmsg_cname cn[DNSMSG_CNAME_RR_MAX];
	struct dnsmsg_name qname, cur;
	size_t off = DNSMSG_HDR_LEN, answers, authority, ncn, nused;
	unsigned qdcount, ancount, nscount;
	enum dnsmsg_err err;

	if (in->len < DNSMSG_HDR_LEN)
		return DNSMSG_E_SHORT;
	if ((in->msg[2] & 0x80) == 0)
		return DNSMSG_E_NOT_RESPONSE;
	if (dnsmsg_collector(qtype) == NULL)
		return DNSMSG_E_QUESTION;
	/* c-ares retries a truncated answer over TCP; one that still gets here proves nothing. */
	if (in->msg[2] & 0x02)
		return DNSMSG_E_TRUNCATED;
	out->id = get16(in->msg);
	out->rcode = in->msg[3] & 0x0f;
	qdcount = get16(in->msg + 4);
	ancount = get16(in->msg + 6);
	nscount = get16(in->msg + 8);

	if (qdcount != 1)
		return DNSMSG_E_QUESTION;
	if ((err = dnsmsg_name_read(in, &off, &qname)) != DNSMSG_OK)
		return err;
	if (in->len - off < 4)
		return DNSMSG_E_SHORT;
	if (get16(in->msg + off) != qtype || get16(in->msg + off + 2) != DNSMSG_CLASS_IN)
		return DNSMSG_E_QUESTION;
	off += 4;
	if (dnsmsg_name_str(&qname, false, out->qname, sizeof(out->qname)) == -1)
		return DNSMSG_E_NAME;

	if (out->rcode != DNSMSG_RCODE_NOERROR && out->rcode != DNSMSG_RCODE_NXDOMAIN) {
		/* SERVFAIL, REFUSED, FORMERR...: nothing in the sections can be trusted or used. */
		out->status = DNS_SERVFAIL;
		return DNSMSG_OK;
	}
	answers = off;
	if ((err = dnsmsg_scan_answers(in, answers, ancount, cn, &ncn, &authority)) != DNSMSG_OK)
		return err;
	out->ttl = UINT32_MAX;
	cur = qname;
	if ((err = dnsmsg_follow(in, cn, ncn, &cur, out)) != DNSMSG_OK)
		return err;
	if (dnsmsg_name_str(&cur, false, out->target, sizeof(out->target)) == -1)
		return DNSMSG_E_NAME;

	if (out->rcode == DNSMSG_RCODE_NOERROR) {
		err = dnsmsg_collect(in, answers, ancount, qtype, &cur, out, &nused);
		if (err != DNSMSG_OK)
			return err;
		if (nused > 0) {
			out->status = DNS_OK;
			out->ttl_known = true;
			return DNSMSG_OK;
		}
		out->status = DNS_NODATA;
	} else {
		out->status = DNS_NXDOMAIN;
	}
	if ((err = dnsmsg_negative_ttl(in, authority, nscount, out)) != DNSMSG_OK)
		return err;
	if (!out->ttl_known)
		out->ttl = 0;
	return DNSMSG_OK;
}

enum dnsmsg_err
dnsmsg_parse(const uint8_t *msg, size_t len, uint16_t qtype, struct dnsmsg *out)
{
	struct dnsmsg_in in = { msg, len };
	enum dnsmsg_err err;

	dnsmsg_reset(out);
	err = dnsmsg_parse_body(&in, qtype, out);
	if (err != DNSMSG_OK)
		dnsmsg_reset(out);
	return err;
}
