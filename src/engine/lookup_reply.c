/* lookup_reply.c: an engine answer as what Postfix is told under a map's options. */
#include "config.h"

#include "engine/lookup_reply.h"

#include "engine/engine.h"

enum conn_reply
lookup_reply_of(const struct engine_answer *ans, const struct answer_opts *opts, struct strbuf *out,
                const char **reason)
{
	enum answer_kind kind;

	switch (ans->result) {
	case ENGINE_TEMP:
		*reason = ans->reason;
		return CONN_REPLY_TEMP;
	case ENGINE_POLICY:
		kind = answer_render(ans->policy, ans->domain, ans->text, ans->text_len, opts, out);
		break;
	case ENGINE_NONE:
	default:
		kind = answer_render_none(ans->domain, ans->failure, opts, out);
		break;
	}
	if (kind == ANSWER_TOO_LONG) {
		/* NOTFOUND would silently drop an enforce policy; TEMP keeps mail waiting. */
		*reason = "policy too long for a Postfix reply";
		return CONN_REPLY_TEMP;
	}
	return kind == ANSWER_OK ? CONN_REPLY_OK : CONN_REPLY_NOTFOUND;
}
