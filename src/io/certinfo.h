/* certinfo.h: what a TLS client learnt about a server certificate chain, for people to read. */
#ifndef MTASTS_IO_CERTINFO_H
#define MTASTS_IO_CERTINFO_H

#include <stdbool.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#define CERTINFO_TEXT_MAX 256

/* Filled by certinfo_note(); every string is NUL-terminated, "" when unknown. */
struct certinfo {
	char subject[CERTINFO_TEXT_MAX]; /* RFC 2253, escaped */
	char issuer[CERTINFO_TEXT_MAX];
	char not_after[40];              /* as OpenSSL prints it: "Jan  1 00:00:00 2030 GMT" */
	char san[CERTINFO_TEXT_MAX * 2]; /* dNSName entries, ", "-separated (truncated if long) */
	char verify[CERTINFO_TEXT_MAX];  /* "ok" or OpenSSL's reason for the chain/name failure */
	/* The issuer the server should have sent but did not, when that is what broke the chain. */
	char missing_issuer[CERTINFO_TEXT_MAX];
	char cipher[64];    /* negotiated cipher suite, when known at verification time */
	int verify_error;   /* X509_V_OK or an X509_V_ERR_* */
	int chain_depth;    /* certificates in the verified (or partial) chain */
	bool expired;       /* verify_error is X509_V_ERR_CERT_HAS_EXPIRED */
	bool name_mismatch; /* verify_error is X509_V_ERR_HOSTNAME_MISMATCH */
};

/*
 * Records the leaf of xs and the outcome of X509_verify_cert(xs) (call it first): subject,
 * issuer, expiry, SAN, the verification result, and, when the chain stops at a certificate
 * whose issuer is not in the trust store and which is not self-signed, that issuer's name as
 * the missing intermediate. ssl may be NULL. Text from the peer is escaped for terminals/logs.
 */
void certinfo_note(struct certinfo *ci, X509_STORE_CTX *xs, SSL *ssl);

#endif
