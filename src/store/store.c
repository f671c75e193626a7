/* store.c: backends by name, and the helpers every caller of the store uses. */
#include "config.h"

#include "store/store.h"

#include <stdlib.h>

#include "base/xmalloc.h"
#include "config/config.h"
#include "store/store_redis.h"
#include "store/store_sqlite.h"

/* Backends register here, indexed by the config enum whose names config.c's table gives. */
typedef void *(*store_open_fn)(struct event_base *base, const struct config *cfg, char **err);

static const struct {
	const struct store_ops *ops;
	store_open_fn open;
} store_backends[] = {
	[CONFIG_CACHE_MEMORY] = { NULL, NULL },
	[CONFIG_CACHE_SQLITE] = { &store_sqlite_ops, store_sqlite_open },
	[CONFIG_CACHE_REDIS] = { &store_redis_ops, store_redis_open },
};

struct store *
store_open(struct event_base *base, const struct config *cfg, char **err)
{
	unsigned b = (unsigned)cfg->cache.backend;
	void *impl;

	*err = NULL;
	if (b >= sizeof(store_backends) / sizeof(store_backends[0]) ||
	    store_backends[b].open == NULL)
		return NULL;
	impl = store_backends[b].open(base, cfg, err);
	if (impl == NULL)
		return NULL;
	struct store *s = xmalloc(sizeof(*s));

	s->ops = store_backends[b].ops;
	s->impl = impl;
	return s;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	s->ops->close(s->impl);
	free(s);
}
