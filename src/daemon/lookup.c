/* lookup.c: serves one Postfix request: map name, key normalisation, engine, rendering. */
#include "config.h"

#include "daemon/lookup.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/strbuf.h"
#include "base/xmalloc.h"
#include "engine/engine.h"
#include "proto/socketmap.h"
#include "sts/domain.h"

struct lookup {
	struct engine *eng;
	struct lookup_map *maps;
	size_t nmaps;
	struct strbuf out;     /* reused for every rendering: one request renders at a time */
	struct pending *spare; /* free list, so a cache hit allocates nothing */
	struct lookup_stats stats;
};

/* A request waiting on the engine. */
struct pending {
	struct lookup *lk;
	struct conn_req *req;
	struct answer_opts opts; /* copied: a reload may replace the maps meanwhile */
	struct engine_wait *wait;
	struct pending *next;
};

static struct pending *
pending_get(struct lookup *lk)
{
	struct pending *p = lk->spare;

	if (p == NULL)
		return xmalloc(sizeof(*p));
	lk->spare = p->next;
	return p;
}

static void
pending_put(struct lookup *lk, struct pending *p)
{
	p->next = lk->spare;
	lk->spare = p;
}

struct lookup *
lookup_new(struct engine *eng, const struct lookup_map *maps, size_t nmaps)
{
	struct lookup *lk = xcalloc(1, sizeof(*lk));

	lk->eng = eng;
	lookup_set_maps(lk, maps, nmaps);
	/* "OK " takes 3 of the bytes Postfix accepts in a reply. */
	strbuf_init(&lk->out, SOCKETMAP_REPLY_MAX - 3);
	return lk;
}

static void
lookup_free_maps(struct lookup *lk)
{
	for (size_t i = 0; i < lk->nmaps; i++)
		free((char *)lk->maps[i].name);
	free(lk->maps);
}

void
lookup_set_maps(struct lookup *lk, const struct lookup_map *maps, size_t nmaps)
{
	if (lk->maps != NULL)
		lookup_free_maps(lk);
	lk->maps = xreallocarray(NULL, nmaps, sizeof(*lk->maps));
	for (size_t i = 0; i < nmaps; i++) {
		lk->maps[i] = maps[i];
		lk->maps[i].name = xstrdup(maps[i].name);
	}
	lk->nmaps = nmaps;
}

void
lookup_free(struct lookup *lk)
{
	if (lk == NULL)
		return;
	lookup_free_maps(lk);
	while (lk->spare != NULL) {
		struct pending *p = lk->spare;

		lk->spare = p->next;
		free(p);
	}
	strbuf_release(&lk->out);
	free(lk);
}

static const struct lookup_map *
lookup_find_map(const struct lookup *lk, const char *name, size_t len)
{
	for (size_t i = 0; i < lk->nmaps; i++)
		if (strlen(lk->maps[i].name) == len && memcmp(lk->maps[i].name, name, len) == 0)
			return &lk->maps[i];
	return NULL;
}

static void
lookup_answer(struct lookup *lk, struct conn_req *req, const struct answer_opts *opts,
              const struct engine_answer *ans)
{
	const char *reason = NULL;

	switch (lookup_reply_of(ans, opts, &lk->out, &reason)) {
	case CONN_REPLY_TEMP:
		lk->stats.temp++;
		if (ans->result == ENGINE_POLICY)
			log_warnx("lookup domain=%s result=temp reason=\"%s\" mx_patterns=%u",
			          ans->domain, reason, ans->policy->nmx);
		conn_reply(req, CONN_REPLY_TEMP, reason, strlen(reason));
		return;
	case CONN_REPLY_OK:
		lk->stats.secure++;
		conn_reply(req, CONN_REPLY_OK, lk->out.data, lk->out.len);
		if (log_debug_enabled())
			log_debug("lookup domain=%s result=ok answer=\"%s\"", ans->domain,
			          lk->out.data);
		return;
	default:
		lk->stats.notfound++;
		conn_reply(req, CONN_REPLY_NOTFOUND, NULL, 0);
		if (log_debug_enabled())
			log_debug("lookup domain=%s result=notfound", ans->domain);
		return;
	}
}

static void
lookup_on_engine(void *arg, const struct engine_answer *ans)
{
	struct pending *p = arg;

	lookup_answer(p->lk, p->req, &p->opts, ans);
	pending_put(p->lk, p);
}

void
lookup_request(void *arg, struct conn_req *req, const char *name, size_t name_len, const char *key,
               size_t key_len)
{
	struct lookup *lk = arg;
	const struct lookup_map *map = lookup_find_map(lk, name, name_len);
	char domain[DOMAIN_NAME_MAX + 1];
	struct engine_answer ans;
	struct engine_wait *w;
	struct pending *p;
	enum domain_result dr;

	if (map == NULL) {
		static const char msg[] = "unknown map name; check smtp_tls_policy_maps against "
		                          "the maps in mtastsd.conf";

		lk->stats.perm++;
		log_info("lookup map=\"%.*s\" result=perm reason=\"unknown map name\"",
		         (int)(name_len > 64 ? 64 : name_len), name);
		conn_reply(req, CONN_REPLY_PERM, msg, sizeof(msg) - 1);
		return;
	}
	dr = domain_normalise(key, key_len, domain);
	if (dr != DOMAIN_OK) {
		/* Parent probes, address literals and junk: never looked up (SEL-2, SEL-3). */
		lk->stats.not_policy_domain++;
		lk->stats.notfound++;
		if (log_debug_enabled())
			log_debug("lookup key_len=%zu map=%s result=notfound reason=\"%s\"",
			          key_len, map->name, domain_result_str(dr));
		conn_reply(req, CONN_REPLY_NOTFOUND, NULL, 0);
		return;
	}
	p = pending_get(lk);
	p->lk = lk;
	p->req = req;
	p->opts = map->opts;
	w = engine_lookup(lk->eng, domain, &ans, lookup_on_engine, p);
	if (w == NULL) {
		pending_put(lk, p);
		lookup_answer(lk, req, &map->opts, &ans);
		return;
	}
	p->wait = w;
	conn_req_set_udata(req, p);
}

void
lookup_cancel(void *arg, struct conn_req *req)
{
	struct pending *p = conn_req_get_udata(req);

	if (p == NULL)
		return;
	engine_cancel(p->wait);
	pending_put(p->lk, p);
}

void
lookup_get_stats(const struct lookup *lk, struct lookup_stats *st)
{
	*st = lk->stats;
}

size_t
lookup_nmaps(const struct lookup *lk)
{
	return lk->nmaps;
}

const struct lookup_map *
lookup_map_at(const struct lookup *lk, size_t i)
{
	return &lk->maps[i];
}
