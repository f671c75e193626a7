/* verdict.h: the checker's verdict from a filled report (RFC-NOTES section 12); pure. */
#ifndef MTASTS_CHECK_VERDICT_H
#define MTASTS_CHECK_VERDICT_H

#include <stdbool.h>

#include "check/report.h"

/*
 * Decides r->verdict and fills r->reasons, r->alerts and r->warnings (replacing earlier
 * ones), the MX coverage (r->mx[].pattern) and each probe's accepted flag, from what the
 * lookups put in r. No I/O, no clock.
 */
void verdict_decide(struct report *r);

/*
 * True when an mx pattern is as broad as a public suffix. The rule is deliberately simple
 * (no public suffix list): a wildcard over a single label ("*.com"), or a wildcard over two
 * labels whose second-level label is one of the common registry labels ("*.co.uk").
 */
bool verdict_pattern_too_broad(const char *pattern);

/* Exit status for one verdict (doc/mtasts-check.md): 0..4, and 5 for a DNS failure. */
int verdict_exit_status(const struct report *r);

#endif
