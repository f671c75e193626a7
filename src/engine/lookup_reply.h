/* lookup_reply.h: an engine answer as what Postfix is told under a map's options. */
#ifndef MTASTS_ENGINE_LOOKUP_REPLY_H
#define MTASTS_ENGINE_LOOKUP_REPLY_H

#include "base/strbuf.h"
#include "io/conn.h"
#include "sts/answer.h"

struct engine_answer;

/*
 * The one place an engine answer becomes what Postfix is told under a map's options: OK with
 * the policy in out, NOTFOUND, or TEMP with *reason. Lookups, "mtasts-ctl show" and
 * mtasts-check all use it, so each reports exactly what a lookup would send.
 */
enum conn_reply lookup_reply_of(const struct engine_answer *ans, const struct answer_opts *opts,
                                struct strbuf *out, const char **reason);

#endif
