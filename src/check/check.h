/* check.h: one domain checked: the lookups, fetch, engine answer and probes behind a report. */
#ifndef MTASTS_CHECK_CHECK_H
#define MTASTS_CHECK_CHECK_H

#include <stdbool.h>

#include "check/report.h"
#include "sts/answer.h"

struct event_base;
struct dns;
struct fetch;
struct engine;
struct probe;
struct check;

/* Shared by every check of one run; everything outlives the checks. */
struct check_env {
	struct event_base *base;
	struct dns *dns;
	struct fetch *fetch;   /* with cert_details */
	struct engine *engine; /* the daemon's engine, for the exact Postfix answer */
	struct probe *probe;   /* NULL: no --probe-mx */
	struct answer_opts answer;
};

typedef void (*check_done_cb)(void *arg, struct check *c);

/*
 * Starts checking a normalised policy domain; every lookup runs concurrently. done runs once
 * from the event loop when the report is complete and the verdict decided.
 */
struct check *check_start(const struct check_env *env, const char *domain, check_done_cb done,
                          void *arg);
struct report *check_report(struct check *c);
/* Cancels whatever still runs (no callback) and frees the report too. */
void check_free(struct check *c);

#endif
