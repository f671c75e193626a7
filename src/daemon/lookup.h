/* lookup.h: serves one Postfix request: map name, key normalisation, engine, rendering. */
#ifndef MTASTS_DAEMON_LOOKUP_H
#define MTASTS_DAEMON_LOOKUP_H

#include <stddef.h>
#include <stdint.h>

#include "base/strbuf.h"
#include "engine/lookup_reply.h"
#include "io/conn.h"
#include "sts/answer.h"

struct engine;
struct lookup;

/* One configured map name with its rendering options. */
struct lookup_map {
	const char *name;
	struct answer_opts opts;
};

struct lookup_stats {
	uint64_t secure; /* OK answers */
	uint64_t notfound;
	uint64_t temp;
	uint64_t perm;
	uint64_t not_policy_domain; /* NOTFOUND without any lookup (SEL-2, SEL-3, SEL-5) */
};

/* maps is copied (names included). */
struct lookup *lookup_new(struct engine *eng, const struct lookup_map *maps, size_t nmaps);
void lookup_free(struct lookup *lk);
/* Replaces the maps (reload); requests already waiting keep the options they started with. */
void lookup_set_maps(struct lookup *lk, const struct lookup_map *maps, size_t nmaps);

/* conn_handler callbacks; arg is the struct lookup. */
void lookup_request(void *arg, struct conn_req *req, const char *name, size_t name_len,
                    const char *key, size_t key_len);
void lookup_cancel(void *arg, struct conn_req *req);

void lookup_get_stats(const struct lookup *lk, struct lookup_stats *st);

/* The configured maps, for status and for showing what each map would answer. */
size_t lookup_nmaps(const struct lookup *lk);
const struct lookup_map *lookup_map_at(const struct lookup *lk, size_t i);

#endif
