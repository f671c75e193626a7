/* store_redis.h: the fleet store: policies shared through Redis (hiredis, libevent adapter). */
#ifndef MTASTS_STORE_STORE_REDIS_H
#define MTASTS_STORE_STORE_REDIS_H

#include "store/store.h"

extern const struct store_ops store_redis_ops;

/*
 * Starts connecting to cfg->redis.address; never fails because Redis is down (it reconnects
 * with back-off and logs each state change once). Fails only for a setup that can never work,
 * with *err a malloc'd message.
 */
void *store_redis_open(struct event_base *base, const struct config *cfg, char **err);

#endif
