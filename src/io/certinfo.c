/* certinfo.c: what a TLS client learnt about a server certificate chain, for people to read. */
#include "config.h"

#include "io/certinfo.h"

#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/x509v3.h>

#include "base/log.h"

static void
certinfo_print_bio(BIO *bio, char *out, size_t outlen)
{
	int n = BIO_read(bio, out, (int)outlen - 1);

	out[n > 0 ? n : 0] = '\0';
	(void)BIO_reset(bio);
}

static void
certinfo_name(BIO *bio, const X509_NAME *name, char *out, size_t outlen)
{
	/* RFC 2253 with escaping: no control characters or quotes from the peer get through. */
	X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
	certinfo_print_bio(bio, out, outlen);
}

/* Appends one dNSName, keeping only printable ASCII (a SAN is IA5String anyway). */
static void
certinfo_add_san(struct certinfo *ci, const unsigned char *s, int len)
{
	size_t at = strlen(ci->san);

	if (at > 0 && at + 2 < sizeof(ci->san)) {
		memcpy(ci->san + at, ", ", 2);
		at += 2;
	}
	for (int i = 0; i < len && at + 1 < sizeof(ci->san); i++)
		ci->san[at++] = s[i] >= 0x21 && s[i] < 0x7F ? (char)s[i] : '?';
	ci->san[at] = '\0';
}

static void
certinfo_sans(struct certinfo *ci, X509 *leaf)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);

	if (names == NULL)
		return;
	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);

		if (gn->type == GEN_DNS)
			certinfo_add_san(ci, ASN1_STRING_get0_data(gn->d.dNSName),
			                 ASN1_STRING_length(gn->d.dNSName));
	}
	GENERAL_NAMES_free(names);
}

void
certinfo_note(struct certinfo *ci, X509_STORE_CTX *xs, SSL *ssl)
{
	X509 *leaf = X509_STORE_CTX_get0_cert(xs);
	STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(xs);
	BIO *bio = BIO_new(BIO_s_mem());
	int err = X509_STORE_CTX_get_error(xs);

	if (bio == NULL)
		fatalx("certinfo: out of memory");
	memset(ci, 0, sizeof(*ci));
	if (leaf != NULL) {
		certinfo_name(bio, X509_get_subject_name(leaf), ci->subject, sizeof(ci->subject));
		certinfo_name(bio, X509_get_issuer_name(leaf), ci->issuer, sizeof(ci->issuer));
		ASN1_TIME_print(bio, X509_get0_notAfter(leaf));
		certinfo_print_bio(bio, ci->not_after, sizeof(ci->not_after));
		certinfo_sans(ci, leaf);
	}
	ci->verify_error = err;
	ci->chain_depth = chain != NULL ? sk_X509_num(chain) : 0;
	ci->expired = err == X509_V_ERR_CERT_HAS_EXPIRED;
	ci->name_mismatch = err == X509_V_ERR_HOSTNAME_MISMATCH;
	snprintf(ci->verify, sizeof(ci->verify), "%s",
	         err == X509_V_OK ? "ok" : X509_verify_cert_error_string(err));
	/*
	 * The chain ends at a certificate that is not self-issued and whose issuer the store does
	 * not have: the server left out an intermediate (or uses an untrusted CA; the name tells).
	 */
	if ((err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
	     err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT) &&
	    chain != NULL && sk_X509_num(chain) > 0) {
		X509 *top = sk_X509_value(chain, sk_X509_num(chain) - 1);

		if (X509_check_issued(top, top) != X509_V_OK)
			certinfo_name(bio, X509_get_issuer_name(top), ci->missing_issuer,
			              sizeof(ci->missing_issuer));
	}
	if (ssl != NULL) {
		const SSL_CIPHER *c = SSL_get_current_cipher(ssl);

		if (c == NULL)
			c = SSL_get_pending_cipher(ssl);
		if (c != NULL)
			snprintf(ci->cipher, sizeof(ci->cipher), "%s", SSL_CIPHER_get_name(c));
	}
	BIO_free(bio);
}
