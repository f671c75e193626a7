/* mx.h: matching an MX host name against MTA-STS mx patterns (MX-3, RFC 8461 §4.1). */
#ifndef MTASTS_STS_MX_H
#define MTASTS_STS_MX_H

#include <stdbool.h>
#include <stddef.h>

#include "sts/policy.h"

/*
 * True when host matches pattern: an exact name, or "*.rest" matching exactly one extra
 * left-most label. ASCII case is ignored and one trailing dot on host is removed.
 */
bool mx_match(const char *pattern, const char *host);

/* The first pattern of p matching host, or NULL. */
const char *mx_policy_match(const struct policy *p, const char *host);

#endif
