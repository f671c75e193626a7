/* control.c: the local control channel of mtasts-ctl (doc/control-protocol.md). */
#include "config.h"

#include "daemon/control.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "base/json.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "daemon/lookup.h"
#include "engine/engine.h"
#include "io/listener.h"
#include "proto/socketmap.h"
#include "sts/answer.h"
#include "sts/domain.h"

#define CONTROL_VERSION_TOKEN "MTASTS/1"
#define CONTROL_LINE_MAX      4096
#define CONTROL_ARGS_MAX      16
#define CONTROL_IDLE_S        30
/* Replies can list every cached policy; the cap keeps one client from pinning memory. */
#define CONTROL_REPLY_MAX (64u * 1024 * 1024)

struct control_client {
	struct control *ctl;
	struct control_client *prev;
	struct control_client *next;
	struct bufferevent *bev;
	struct engine_wait *wait; /* a refresh in progress */
	struct event *ev_resume;  /* reading resumes after a refresh, outside engine callbacks */
	char refresh_domain[DOMAIN_NAME_MAX + 1];
	bool json;
	bool closing; /* close once the output is written */
	uid_t uid;
};

struct control {
	struct event_base *base;
	struct listener *l;
	struct engine *eng;
	struct lookup *lk;
	struct control_hooks h;
	char *path;
	gid_t group;
	unsigned max_clients;
	unsigned nclients;
	struct control_client *clients;
};

/* ---- replies ---- */

static void
client_send(struct control_client *cl, bool ok, const struct strbuf *body)
{
	struct evbuffer *out = bufferevent_get_output(cl->bev);

	evbuffer_add_printf(out, "%s %zu\n", ok ? "OK" : "ERR", body->len);
	evbuffer_add(out, body->data != NULL ? body->data : "", body->len);
}

static void
client_error(struct control_client *cl, const char *msg)
{
	struct strbuf sb;

	strbuf_init(&sb, CONTROL_LINE_MAX);
	if (cl->json) {
		strbuf_appends(&sb, "{\"error\": ");
		json_cstr(&sb, msg);
		strbuf_appends(&sb, "}\n");
	} else {
		strbuf_appendf(&sb, "%s\n", msg);
	}
	client_send(cl, false, &sb);
	strbuf_release(&sb);
}

static void
client_free(struct control_client *cl)
{
	struct control *c = cl->ctl;

	if (cl->wait != NULL)
		engine_cancel(cl->wait);
	if (cl->prev != NULL)
		cl->prev->next = cl->next;
	else
		c->clients = cl->next;
	if (cl->next != NULL)
		cl->next->prev = cl->prev;
	c->nclients--;
	event_free(cl->ev_resume);
	bufferevent_free(cl->bev);
	free(cl);
}

/* ---- formatting helpers ---- */

static void
fmt_time(uint32_t t, char *out, size_t outlen)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0) {
		snprintf(out, outlen, "-");
		return;
	}
	gmtime_r(&tt, &tm);
	strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
fmt_mx_text(struct strbuf *sb, const struct policy *p)
{
	size_t n = 0;

	for (const char *mx = policy_mx_next(p, NULL); mx != NULL; mx = policy_mx_next(p, mx))
		strbuf_appendf(sb, "%s%s", n++ > 0 ? "," : "", mx);
	if (n == 0)
		strbuf_appendc(sb, '-');
}

static void
fmt_mx_json(struct strbuf *sb, const struct policy *p)
{
	size_t n = 0;

	strbuf_appendc(sb, '[');
	for (const char *mx = policy_mx_next(p, NULL); mx != NULL; mx = policy_mx_next(p, mx)) {
		if (n++ > 0)
			strbuf_appends(sb, ", ");
		json_cstr(sb, mx);
	}
	strbuf_appendc(sb, ']');
}

/* What map i answers for this entry now, as Postfix would receive it. */
static void
fmt_answer(struct control *c, const struct engine_entry *e, size_t i, struct strbuf *out)
{
	struct strbuf r;
	const char *reason = NULL;

	strbuf_init(&r, SOCKETMAP_REPLY_MAX - 3);
	switch (lookup_reply_of(&e->answer, &lookup_map_at(c->lk, i)->opts, &r, &reason)) {
	case CONN_REPLY_OK:
		strbuf_appendf(out, "OK %s", r.data);
		break;
	case CONN_REPLY_TEMP:
		strbuf_appendf(out, "TEMP %s", reason);
		break;
	default:
		strbuf_appends(out, "NOTFOUND ");
		break;
	}
	strbuf_release(&r);
}

/* ---- commands ---- */

struct cmd_ctx {
	struct control_client *cl;
	char **argv;
	int argc;
	struct strbuf *out;
};

static int
cmd_status(struct cmd_ctx *x)
{
	x->cl->ctl->h.status(x->cl->ctl->h.arg, x->cl->json, x->out);
	return 0;
}

static int
cmd_stats(struct cmd_ctx *x)
{
	x->cl->ctl->h.stats(x->cl->ctl->h.arg, x->cl->json, x->out);
	return 0;
}

static int
cmd_reload(struct cmd_ctx *x)
{
	struct strbuf msg;
	int rc;

	strbuf_init(&msg, 64 * 1024);
	rc = x->cl->ctl->h.reload(x->cl->ctl->h.arg, &msg);
	if (x->cl->json) {
		strbuf_appendf(x->out, "{\"%s\": ", rc == 0 ? "result" : "error");
		json_str(x->out, msg.data != NULL ? msg.data : "", msg.len);
		strbuf_appends(x->out, "}\n");
	} else {
		strbuf_append(x->out, msg.data != NULL ? msg.data : "", msg.len);
	}
	strbuf_release(&msg);
	return rc;
}

static int
cmd_log_level(struct cmd_ctx *x)
{
	enum log_level lvl;

	if (x->argc != 1 || log_level_parse(x->argv[0], &lvl) == -1) {
		strbuf_appends(x->out, "usage: log-level err|warn|info|debug\n");
		return -1;
	}
	log_set_level(lvl);
	log_info("control uid=%u log_level=%s", (unsigned)x->cl->uid, log_level_name(lvl));
	if (x->cl->json)
		strbuf_appendf(x->out, "{\"log_level\": \"%s\"}\n", log_level_name(lvl));
	else
		strbuf_appendf(x->out, "log level %s\n", log_level_name(lvl));
	return 0;
}

struct list_ctx {
	struct control_client *cl;
	const char *mode;
	long expiring; /* -1: no filter */
	uint32_t now;
	struct strbuf *rows;
	size_t n;
};

static void
list_one(void *arg, const struct engine_entry *e)
{
	struct list_ctx *lc = arg;
	struct strbuf *sb = lc->rows;
	char fetched[32], expires[32];

	if (e->policy == NULL)
		return;
	if (lc->mode != NULL && strcmp(policy_mode_str(e->policy->mode), lc->mode) != 0)
		return;
	if (lc->expiring >= 0 &&
	    (uint64_t)e->expires_at > (uint64_t)lc->now + (uint64_t)lc->expiring)
		return;
	if (lc->cl->json) {
		strbuf_appends(sb, lc->n++ > 0 ? ",\n  {\"domain\": " : "\n  {\"domain\": ");
		json_cstr(sb, e->domain);
		strbuf_appendf(sb,
		               ", \"mode\": \"%s\", \"id\": ", policy_mode_str(e->policy->mode));
		json_cstr(sb, e->id);
		strbuf_appendf(sb,
		               ", \"fetched_at\": %u, \"expires_at\": %u, \"valid\": %s, \"mx\": ",
		               e->fetched_at, e->expires_at, e->valid ? "true" : "false");
		fmt_mx_json(sb, e->policy);
		strbuf_appends(sb, ", \"last_error\": ");
		json_cstr(sb, e->last_error);
		strbuf_appendc(sb, '}');
		return;
	}
	fmt_time(e->fetched_at, fetched, sizeof(fetched));
	fmt_time(e->expires_at, expires, sizeof(expires));
	strbuf_appendf(sb, "%-30s %-8s %-20s %s %s%s ", e->domain, policy_mode_str(e->policy->mode),
	               e->id, fetched, expires, e->valid ? "" : "(expired)");
	fmt_mx_text(sb, e->policy);
	strbuf_appendf(sb, " %s\n", e->last_error[0] != '\0' ? e->last_error : "-");
	lc->n++;
}

static int
cmd_list(struct cmd_ctx *x)
{
	struct list_ctx lc = { x->cl, NULL, -1, engine_now_wall(x->cl->ctl->eng), x->out, 0 };

	for (int i = 0; i < x->argc; i++) {
		if (strcmp(x->argv[i], "--mode") == 0 && i + 1 < x->argc &&
		    (strcmp(x->argv[i + 1], "enforce") == 0 ||
		     strcmp(x->argv[i + 1], "testing") == 0 ||
		     strcmp(x->argv[i + 1], "none") == 0)) {
			lc.mode = x->argv[++i];
		} else if (strcmp(x->argv[i], "--expiring") == 0 && i + 1 < x->argc) {
			char *end;

			errno = 0;
			lc.expiring = strtol(x->argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || lc.expiring < 0) {
				strbuf_appends(x->out, "--expiring takes a number of seconds\n");
				return -1;
			}
		} else {
			strbuf_appends(x->out, "usage: list [--mode enforce|testing|none] "
			                       "[--expiring SECONDS]\n");
			return -1;
		}
	}
	if (x->cl->json)
		strbuf_appends(x->out, "{\"policies\": [");
	else
		strbuf_appendf(x->out, "%-30s %-8s %-20s %-20s %-20s %s %s\n", "DOMAIN", "MODE",
		               "ID", "FETCHED", "EXPIRES", "MX", "LAST_ERROR");
	engine_foreach(x->cl->ctl->eng, list_one, &lc);
	if (x->cl->json)
		strbuf_appends(x->out, lc.n > 0 ? "\n]}\n" : "]}\n");
	return 0;
}

/* Normalises a domain argument as a lookup would; writes an error to out on failure. */
static int
arg_domain(struct cmd_ctx *x, char out[DOMAIN_NAME_MAX + 1])
{
	enum domain_result r;

	if (x->argc != 1) {
		strbuf_appends(x->out, "expected one DOMAIN argument\n");
		return -1;
	}
	r = domain_normalise(x->argv[0], strlen(x->argv[0]), out);
	if (r != DOMAIN_OK) {
		strbuf_appendf(x->out, "%s is not a policy domain (%s)\n", x->argv[0],
		               domain_result_str(r));
		return -1;
	}
	return 0;
}

static void
show_entry(struct control *c, const struct engine_entry *e, bool json, struct strbuf *sb)
{
	const struct engine_fetch_note *f = e->last_fetch;
	char t1[32], t2[32];

	if (json) {
		strbuf_appends(sb, "{\"domain\": ");
		json_cstr(sb, e->domain);
		strbuf_appends(sb, ", \"policy\": ");
		if (e->policy != NULL) {
			strbuf_appends(sb, "{\"text\": ");
			json_str(sb, e->text, e->text_len);
			strbuf_appendf(sb, ", \"mode\": \"%s\", \"id\": ",
			               policy_mode_str(e->policy->mode));
			json_cstr(sb, e->id);
			strbuf_appendf(sb, ", \"max_age\": %u, \"mx\": ", e->policy->max_age);
			fmt_mx_json(sb, e->policy);
			strbuf_appendf(sb,
			               ", \"fetched_at\": %u, \"expires_at\": %u, \"valid\": %s}",
			               e->fetched_at, e->expires_at, e->valid ? "true" : "false");
		} else {
			strbuf_appends(sb, "null");
		}
		strbuf_appendf(sb,
		               ", \"txt\": {\"state\": \"%s\", \"until\": %u}, \"backoff_until\": "
		               "%u, \"refresh_at\": %u, \"last_used\": %u, \"discovering\": %s, "
		               "\"last_error\": ",
		               e->txt, e->txt_until, e->backoff_until, e->refresh_at, e->last_used,
		               e->discovering ? "true" : "false");
		json_cstr(sb, e->last_error);
		strbuf_appends(sb, ", \"txt_record\": ");
		json_cstr(sb, e->last_txt);
		strbuf_appendf(sb, ", \"txt_seen_at\": %u", e->last_txt_at);
		strbuf_appends(sb, ", \"last_fetch\": ");
		if (f != NULL) {
			strbuf_appendf(sb,
			               "{\"at\": %u, \"http_status\": %ld, \"elapsed_ms\": %u, "
			               "\"tls_version\": %d, \"content_type\": ",
			               f->at, f->http_status, f->elapsed_ms, f->tls_version);
			json_cstr(sb, f->content_type);
			strbuf_appends(sb, ", \"cert_subject\": ");
			json_cstr(sb, f->cert_subject);
			strbuf_appends(sb, ", \"cert_issuer\": ");
			json_cstr(sb, f->cert_issuer);
			strbuf_appends(sb, ", \"cert_not_after\": ");
			json_cstr(sb, f->cert_not_after);
			strbuf_appends(sb, ", \"result\": ");
			json_cstr(sb, f->result);
			strbuf_appendc(sb, '}');
		} else {
			strbuf_appends(sb, "null");
		}
		strbuf_appends(sb, ", \"answers\": {");
		for (size_t i = 0; i < lookup_nmaps(c->lk); i++) {
			struct strbuf a;

			strbuf_init(&a, 100100);
			fmt_answer(c, e, i, &a);
			strbuf_appends(sb, i > 0 ? ", " : "");
			json_cstr(sb, lookup_map_at(c->lk, i)->name);
			strbuf_appends(sb, ": ");
			json_str(sb, a.data, a.len);
			strbuf_release(&a);
		}
		strbuf_appends(sb, "}}\n");
		return;
	}
	strbuf_appendf(sb, "domain:       %s\n", e->domain);
	if (e->policy != NULL) {
		fmt_time(e->fetched_at, t1, sizeof(t1));
		fmt_time(e->expires_at, t2, sizeof(t2));
		strbuf_appendf(sb, "policy:       id=%s mode=%s max_age=%u %s\n", e->id,
		               policy_mode_str(e->policy->mode), e->policy->max_age,
		               e->valid ? "valid" : "EXPIRED");
		strbuf_appendf(sb, "fetched:      %s\nexpires:      %s\nmx:           ", t1, t2);
		fmt_mx_text(sb, e->policy);
		strbuf_appends(sb, "\n");
	} else {
		strbuf_appends(sb, "policy:       none cached\n");
	}
	fmt_time(e->txt_until, t1, sizeof(t1));
	strbuf_appendf(sb, "txt:          %s (reused until %s)\n", e->txt, t1);
	if (e->last_txt != NULL) {
		fmt_time(e->last_txt_at, t1, sizeof(t1));
		strbuf_appendf(sb, "txt record:   \"%s\" (seen %s)\n", e->last_txt, t1);
	}
	fmt_time(e->backoff_until, t1, sizeof(t1));
	strbuf_appendf(sb, "backoff:      %s\n",
	               e->backoff_until > engine_now_wall(c->eng) ? t1 : "-");
	fmt_time(e->refresh_at, t1, sizeof(t1));
	fmt_time(e->last_used, t2, sizeof(t2));
	strbuf_appendf(sb, "refresh:      %s (last used %s)\n", e->refresh_at != 0 ? t1 : "-",
	               e->last_used != 0 ? t2 : "never");
	strbuf_appendf(sb, "last error:   %s\n", e->last_error[0] != '\0' ? e->last_error : "-");
	if (f != NULL) {
		fmt_time(f->at, t1, sizeof(t1));
		strbuf_appendf(sb,
		               "last fetch:   %s result=%s http=%ld content_type=\"%s\" "
		               "elapsed_ms=%u tls=0x%04x\n",
		               t1, f->result, f->http_status, f->content_type, f->elapsed_ms,
		               (unsigned)f->tls_version);
		strbuf_appendf(sb, "certificate:  subject=\"%s\" issuer=\"%s\" not_after=\"%s\"\n",
		               f->cert_subject, f->cert_issuer, f->cert_not_after);
	}
	if (e->discovering)
		strbuf_appends(sb, "discovery:    running\n");
	for (size_t i = 0; i < lookup_nmaps(c->lk); i++) {
		strbuf_appendf(sb, "answer(%s): ", lookup_map_at(c->lk, i)->name);
		fmt_answer(c, e, i, sb);
		strbuf_appends(sb, "\n");
	}
	if (e->policy != NULL) {
		strbuf_appends(sb, "--- policy text ---\n");
		strbuf_append(sb, e->text, e->text_len);
		if (e->text_len > 0 && e->text[e->text_len - 1] != '\n')
			strbuf_appendc(sb, '\n');
	}
}

static int
cmd_show(struct cmd_ctx *x)
{
	char domain[DOMAIN_NAME_MAX + 1];
	struct engine_entry e;

	if (arg_domain(x, domain) == -1)
		return -1;
	if (!engine_get(x->cl->ctl->eng, domain, &e)) {
		strbuf_appendf(x->out,
		               "%s is not in the cache; \"mtasts-ctl refresh %s\" looks it up\n",
		               domain, domain);
		return -1;
	}
	show_entry(x->cl->ctl, &e, x->cl->json, x->out);
	return 0;
}

static int
cmd_flush(struct cmd_ctx *x)
{
	char domain[DOMAIN_NAME_MAX + 1];
	size_t n;

	if (x->argc == 1 && strcmp(x->argv[0], "--all") == 0) {
		n = engine_flush(x->cl->ctl->eng, NULL);
	} else {
		if (arg_domain(x, domain) == -1)
			return -1;
		n = engine_flush(x->cl->ctl->eng, domain);
	}
	log_info("control uid=%u flush=%s entries=%zu", (unsigned)x->cl->uid,
	         x->argc == 1 ? x->argv[0] : "", n);
	if (x->cl->json)
		strbuf_appendf(x->out, "{\"flushed\": %zu}\n", n);
	else
		strbuf_appendf(x->out, "flushed %zu entr%s\n", n, n == 1 ? "y" : "ies");
	return 0;
}

static void control_resume_cb(evutil_socket_t fd, short what, void *arg);

static void
refresh_done(void *arg, const struct engine_answer *ans)
{
	struct control_client *cl = arg;
	struct engine_entry e;
	struct strbuf sb;

	cl->wait = NULL;
	strbuf_init(&sb, CONTROL_REPLY_MAX);
	if (engine_get(cl->ctl->eng, cl->refresh_domain, &e))
		show_entry(cl->ctl, &e, cl->json, &sb);
	else
		strbuf_appendf(&sb, "%s: discovery finished, entry gone (flushed meanwhile)\n",
		               cl->refresh_domain);
	client_send(cl, true, &sb);
	strbuf_release(&sb);
	/* Not from inside the engine's callback: the next request may call the engine. */
	event_active(cl->ev_resume, EV_TIMEOUT, 0);
}

/* Returns 1: the reply comes later, from refresh_done. */
static int
cmd_refresh(struct cmd_ctx *x)
{
	struct control_client *cl = x->cl;

	if (arg_domain(x, cl->refresh_domain) == -1)
		return -1;
	log_info("control uid=%u refresh=%s", (unsigned)cl->uid, cl->refresh_domain);
	cl->wait = engine_refresh(cl->ctl->eng, cl->refresh_domain, refresh_done, cl);
	if (cl->wait == NULL) {
		strbuf_appends(x->out, "the policy cache is full of running discoveries; retry\n");
		return -1;
	}
	return 1;
}

static const struct control_cmd {
	const char *name;
	int (*fn)(struct cmd_ctx *x);
	int min_args;
	int max_args;
} control_cmds[] = {
	{ "status", cmd_status, 0, 0 }, { "stats", cmd_stats, 0, 0 },
	{ "list", cmd_list, 0, 4 },     { "show", cmd_show, 1, 1 },
	{ "flush", cmd_flush, 1, 1 },   { "refresh", cmd_refresh, 1, 1 },
	{ "reload", cmd_reload, 0, 0 }, { "log-level", cmd_log_level, 1, 1 },
};

/* ---- the connection ---- */

static void
control_run_line(struct control_client *cl, char *line)
{
	char *argv[CONTROL_ARGS_MAX];
	int argc = 0, rc = -1;
	struct strbuf out;
	char *save = NULL;

	cl->json = false;
	for (char *t = strtok_r(line, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
		if (strcmp(t, "--json") == 0) {
			cl->json = true;
			continue;
		}
		if (argc == CONTROL_ARGS_MAX) {
			client_error(cl, "too many arguments");
			return;
		}
		argv[argc++] = t;
	}
	if (argc < 2 || strcmp(argv[0], CONTROL_VERSION_TOKEN) != 0) {
		client_error(cl, "expected \"" CONTROL_VERSION_TOKEN " COMMAND [ARGS]\"; this "
		                 "daemon speaks control protocol version 1");
		cl->closing = true;
		return;
	}
	for (size_t i = 0; i < sizeof(control_cmds) / sizeof(control_cmds[0]); i++) {
		const struct control_cmd *cmd = &control_cmds[i];

		if (strcmp(argv[1], cmd->name) != 0)
			continue;
		if (argc - 2 < cmd->min_args || argc - 2 > cmd->max_args) {
			client_error(cl, "wrong number of arguments; see doc/control-protocol.md");
			return;
		}
		struct cmd_ctx x = { cl, argv + 2, argc - 2, &out };

		strbuf_init(&out, CONTROL_REPLY_MAX);
		rc = cmd->fn(&x);
		if (rc == 1) {
			/* Pending: stop reading so replies stay in request order. */
			bufferevent_disable(cl->bev, EV_READ);
		} else if (rc == 0) {
			client_send(cl, true, &out);
		} else {
			if (cl->json) {
				struct strbuf j;

				strbuf_init(&j, CONTROL_REPLY_MAX);
				strbuf_appends(&j, "{\"error\": ");
				json_str(&j, out.data != NULL ? out.data : "", out.len);
				strbuf_appends(&j, "}\n");
				client_send(cl, false, &j);
				strbuf_release(&j);
			} else {
				client_send(cl, false, &out);
			}
		}
		strbuf_release(&out);
		return;
	}
	client_error(cl, "unknown command; commands: status stats list show flush refresh "
	                 "reload log-level");
}

static void
control_on_read(struct bufferevent *bev, void *arg)
{
	struct control_client *cl = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t n;

	while (cl->wait == NULL && !cl->closing &&
	       (line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
		if (n > CONTROL_LINE_MAX) {
			free(line);
			client_error(cl, "request line too long");
			cl->closing = true;
			break;
		}
		control_run_line(cl, line);
		free(line);
	}
	if (evbuffer_get_length(in) > CONTROL_LINE_MAX && !cl->closing) {
		client_error(cl, "request line too long");
		cl->closing = true;
	}
	if (cl->closing)
		bufferevent_disable(bev, EV_READ);
}

static void
control_on_write(struct bufferevent *bev, void *arg)
{
	struct control_client *cl = arg;

	if (cl->closing)
		client_free(cl);
}

static void
control_on_event(struct bufferevent *bev, short what, void *arg)
{
	client_free(arg);
}

static void
control_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control_client *cl = arg;

	bufferevent_enable(cl->bev, EV_READ);
	/* Requests that arrived during the refresh are already buffered. */
	control_on_read(cl->bev, cl);
}

static bool
control_allowed(const struct control *c, uid_t uid, gid_t gid)
{
	struct passwd *pw;
	struct group *gr;

	if (uid == 0 || uid == geteuid() || gid == c->group)
		return true;
	pw = getpwuid(uid);
	gr = getgrgid(c->group);
	if (pw == NULL || gr == NULL)
		return false;
	if (pw->pw_gid == c->group)
		return true;
	for (char **m = gr->gr_mem; *m != NULL; m++)
		if (strcmp(*m, pw->pw_name) == 0)
			return true;
	return false;
}

static void
control_on_accept(void *arg, int fd, const char *peer)
{
	struct control *c = arg;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct control_client *cl;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		log_warn("control: cannot read peer credentials");
		close(fd);
		return;
	}
	cl = xcalloc(1, sizeof(*cl));
	cl->ctl = c;
	cl->uid = cred.uid;
	cl->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	cl->ev_resume = event_new(c->base, -1, 0, control_resume_cb, cl);
	if (cl->bev == NULL || cl->ev_resume == NULL)
		fatalx("control: cannot allocate a bufferevent");
	cl->next = c->clients;
	if (c->clients != NULL)
		c->clients->prev = cl;
	c->clients = cl;
	c->nclients++;
	bufferevent_setcb(cl->bev, control_on_read, control_on_write, control_on_event, cl);
	if (!control_allowed(c, cred.uid, cred.gid)) {
		log_warnx("control result=denied uid=%u gid=%u pid=%d", (unsigned)cred.uid,
		          (unsigned)cred.gid, (int)cred.pid);
		client_error(cl, "permission denied: only root, the daemon's user and members of "
		                 "control.group may use mtasts-ctl");
		cl->closing = true;
		bufferevent_enable(cl->bev, EV_WRITE);
		return;
	}
	if (c->nclients > c->max_clients) {
		log_warnx("control result=limit limit=max_clients clients=%u", c->nclients - 1);
		client_error(cl, "too many control clients; retry");
		cl->closing = true;
		bufferevent_enable(cl->bev, EV_WRITE);
		return;
	}
	struct timeval idle = { CONTROL_IDLE_S, 0 };

	bufferevent_set_timeouts(cl->bev, &idle, NULL);
	bufferevent_enable(cl->bev, EV_READ | EV_WRITE);
}

struct control *
control_new(struct event_base *base, const struct control_opts *opts, struct engine *eng,
            struct lookup *lk, const struct control_hooks *h, char *err, size_t errlen)
{
	struct control *c = xcalloc(1, sizeof(*c));

	c->base = base;
	c->eng = eng;
	c->lk = lk;
	c->h = *h;
	c->group = opts->group;
	c->max_clients = opts->max_clients;
	c->path = xstrdup(opts->path);
	c->l = listener_new(base, NULL, 0, opts->path, opts->mode, control_on_accept, c, err,
	                    errlen);
	if (c->l == NULL) {
		free(c->path);
		free(c);
		return NULL;
	}
	/* The group may connect: give it the socket file (root can, an unprivileged daemon
	 * keeps its own group, which is the default anyway). */
	if (chown(opts->path, (uid_t)-1, opts->group) == -1 && errno != EPERM)
		log_warn("control: chown %s to gid %u", opts->path, (unsigned)opts->group);
	log_info("control listening on unix:%s", opts->path);
	return c;
}

void
control_start(struct control *c)
{
	listener_resume(c->l);
}

void
control_free(struct control *c)
{
	if (c == NULL)
		return;
	while (c->clients != NULL)
		client_free(c->clients);
	listener_free(c->l);
	free(c->path);
	free(c);
}

const char *
control_path(const struct control *c)
{
	return c->path;
}
