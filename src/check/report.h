/* report.h: everything mtasts-check learnt about one domain; filled by check, read by output. */
#ifndef MTASTS_CHECK_REPORT_H
#define MTASTS_CHECK_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/certinfo.h"
#include "io/conn.h"
#include "io/dns.h"
#include "io/fetch.h"
#include "sts/answer.h"
#include "sts/domain.h"
#include "sts/policy.h"
#include "sts/tlsrpt.h"
#include "sts/txt.h"

#define REPORT_MSGS_MAX 32
#define REPORT_MX_MAX   32
#define REPORT_TXT_MAX  16
#define REPORT_ADDR_MAX 8

/* Owned strings; messages past REPORT_MSGS_MAX are dropped. */
struct report_msgs {
	size_t n;
	char *v[REPORT_MSGS_MAX];
};

enum verdict {
	VERDICT_ENFORCING = 0,
	VERDICT_TESTING,
	VERDICT_DISABLED,
	VERDICT_NOT_CONFIGURED,
	VERDICT_BROKEN,
};

/* One SMTP STARTTLS probe of one MX address (--probe-mx). */
enum probe_status {
	PROBE_OK = 0,      /* TLS handshake done; see cert for the verification result */
	PROBE_CONNECT,     /* could not connect */
	PROBE_TIMEOUT,     /* no progress before the deadline */
	PROBE_SMTP,        /* unexpected or malformed SMTP reply (banner, EHLO, STARTTLS) */
	PROBE_NO_STARTTLS, /* EHLO did not offer STARTTLS */
	PROBE_TLS,         /* TLS handshake failed */
};

struct report_probe {
	char addr[64];
	enum probe_status status;
	char detail[256]; /* the failure, or the server's banner line on success */
	int tls_version;  /* e.g. 0x0304 */
	bool have_cert;
	struct certinfo cert;
	bool accepted; /* STARTTLS, TLS >= 1.2, certificate valid for the host, host covered */
};

struct report_mx {
	uint16_t preference;
	char host[256];
	const char *pattern; /* the covering pattern (points into report.policy), NULL if none */
	enum dns_status addr_status;
	size_t naddrs;
	char addrs[REPORT_ADDR_MAX][64];
	size_t nprobes;
	struct report_probe probes[REPORT_ADDR_MAX];
};

struct report_txt {
	char *text; /* the RR's strings joined, non-printable bytes as \xNN */
	bool candidate;
};

struct report {
	char domain[DOMAIN_NAME_MAX + 1];

	/* 1. _mta-sts TXT */
	enum dns_status txt_status;
	size_t ntxt;
	struct report_txt txt[REPORT_TXT_MAX];
	enum txt_result txt_result;
	const char *txt_reason; /* static, on TXT_INVALID */
	char id[TXT_ID_MAX + 1];

	/* 2. the policy file (fetched even without a TXT record, to spot an orphan policy) */
	char url[DOMAIN_NAME_MAX + 64];
	enum dns_status policy_addr_status; /* of mta-sts.<domain> */
	bool fetched;                       /* a fetch ran */
	enum fetch_status fetch_status;
	char *fetch_error;
	long http_status;
	char *content_type; /* NULL: no header */
	size_t body_len;
	char *body; /* verbatim, NUL-terminated, NULL when no 200 body */
	int tls_version;
	bool have_cert;
	struct certinfo cert;
	struct policy *policy; /* parsed when status 200, text/plain, parses */
	char *policy_problem;  /* why there is no usable policy, NULL when there is one */
	enum answer_failure policy_failure;

	/* 3. MX */
	enum dns_status mx_status;
	bool null_mx;
	bool implicit_mx; /* no MX RRset: the domain itself (RFC 5321 §5.1) */
	size_t nmx;
	struct report_mx mx[REPORT_MX_MAX];
	bool probed;

	/* 5. TLS-RPT */
	enum dns_status tlsrpt_status;
	size_t ntlsrpt;
	char *tlsrpt_raw[REPORT_TXT_MAX];
	enum tlsrpt_result tlsrpt;
	const char *tlsrpt_reason;
	struct tlsrpt_record *tlsrpt_rec; /* on TLSRPT_OK */

	/* 6. verdict: reasons say why; alerts are the dangerous cases; warnings change nothing */
	enum verdict verdict;
	bool dns_temperror;
	bool domain_missing; /* NXDOMAIN for the domain itself */
	struct report_msgs reasons;
	struct report_msgs alerts;
	struct report_msgs warnings;

	/* 7. what mtastsd would answer Postfix (map with default options) */
	enum conn_reply reply;
	char *reply_text; /* OK: the policy; TEMP: the reason; NOTFOUND: "" */
};

struct report *report_new(const char *domain);
void report_free(struct report *r);
void report_msg(struct report_msgs *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *verdict_str(enum verdict v);
const char *probe_status_str(enum probe_status st);
const char *conn_reply_str(enum conn_reply r);

#endif
