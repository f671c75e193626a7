/* fuzz_domain.c: libFuzzer target for lookup-key normalisation (SEL-1..5, PFX-2). */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sts/domain.h"

static bool
is_lower_ldh(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] >= 'A' && s[i] <= 'Z')
			return false;
	return domain_is_ldh(s, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[DOMAIN_NAME_MAX + 1], again[DOMAIN_NAME_MAX + 1];
	enum domain_result r = domain_normalise((const char *)data, size, out);
	size_t len;

	if (r != DOMAIN_OK) {
		if (domain_result_str(r) == NULL)
			abort();
		/* The predicates must stay in bounds on any bytes as well. */
		(void)domain_is_ldh((const char *)data, size);
		(void)domain_is_ip_literal((const char *)data, size);
		return 0;
	}
	/* A Policy Domain is lower-case LDH, no longer than 253, and a fixed point. */
	len = strnlen(out, sizeof(out));
	if (len == sizeof(out) || !is_lower_ldh(out, len))
		abort();
	if (domain_is_ip_literal(out, len))
		abort();
	if (domain_normalise(out, len, again) != DOMAIN_OK || strcmp(out, again) != 0)
		abort();
	/* Postfix's parent probe of it, and the smart-host forms, agree with it (SEL-1, SEL-3). */
	{
		char key[DOMAIN_NAME_MAX + 16];

		key[0] = '.';
		memcpy(key + 1, out, len);
		if (domain_normalise(key, len + 1, again) != DOMAIN_PARENT_PROBE)
			abort();
		key[0] = '[';
		memcpy(key + 1 + len, "]:25", 4);
		if (domain_normalise(key, len + 5, again) != DOMAIN_OK || strcmp(out, again) != 0)
			abort();
	}
	return 0;
}
