/* fuzz_dnsmsg.c: libFuzzer target for the DNS response parser, once per query type. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/dnsmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint16_t fuzz_types[] = {
	DNSMSG_TYPE_TXT,
	DNSMSG_TYPE_A,
	DNSMSG_TYPE_AAAA,
	DNSMSG_TYPE_MX,
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dnsmsg *d;
	volatile size_t sink = 0;

	/* One big struct for the whole run: allocating it per input would only slow the fuzzer. */
	if (d == NULL && (d = malloc(sizeof(*d))) == NULL)
		abort();
	for (size_t t = 0; t < sizeof(fuzz_types) / sizeof(fuzz_types[0]); t++) {
		if (dnsmsg_parse(data, size, fuzz_types[t], d) != DNSMSG_OK)
			continue;
		/* Touch everything handed out, so ASan sees any pointer outside the input. */
		for (size_t i = 0; i < d->ntxt; i++)
			for (size_t j = 0; j < d->txt[i].len; j++)
				sink += d->txt[i].data[j];
		for (size_t i = 0; i < d->nmx; i++)
			sink += strlen(d->mx[i].host);
		sink += strlen(d->qname) + strlen(d->target) + d->na + d->naaaa;
		if (d->status != DNS_OK && d->status != DNS_NXDOMAIN && d->status != DNS_NODATA &&
		    d->status != DNS_SERVFAIL)
			abort();
		if (d->status == DNS_OK && d->ntxt + d->na + d->naaaa + d->nmx == 0)
			abort();
	}
	(void)sink;
	return 0;
}
