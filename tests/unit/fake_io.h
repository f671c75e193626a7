/* fake_io.h: scripted stand-ins for io/dns.h and io/fetch.h, for engine tests. */
#ifndef MTASTS_TESTS_FAKE_IO_H
#define MTASTS_TESTS_FAKE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/dns.h"
#include "io/fetch.h"

#define FAKE_CALLS_MAX 1024

/* Every dns_lookup() and fetch_start() is recorded; the test answers them by index. */
struct fake_dns_call {
	char name[300];
	enum dns_type type;
	dns_cb cb;
	void *arg;
	bool pending;
};

struct fake_fetch_call {
	char host[300];
	char addr[64];
	fetch_cb cb;
	void *arg;
	bool pending;
};

extern struct fake_dns_call fake_dns_calls[FAKE_CALLS_MAX];
extern size_t fake_dns_ncalls;
extern struct fake_fetch_call fake_fetch_calls[FAKE_CALLS_MAX];
extern size_t fake_fetch_ncalls;

void fake_io_reset(void);
/* Answers call i with TXT records (each a string; one RR each) or a failure status. */
void fake_dns_txt(size_t i, enum dns_status st, uint32_t ttl, const char *const *records, size_t n);
/* Answers an address lookup with one address (or the failure status). */
void fake_dns_addr(size_t i, enum dns_status st, const char *addr);
void fake_fetch_answer(size_t i, enum fetch_status st, long http, const char *content_type,
                       const char *body);
/* Index of the last call, for readability in tests. */
size_t fake_dns_last(void);
size_t fake_fetch_last(void);

#endif
