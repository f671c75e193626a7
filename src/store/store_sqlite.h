/* store_sqlite.h: the embedded store: one sqlite file, WAL mode, written behind by a thread. */
#ifndef MTASTS_STORE_STORE_SQLITE_H
#define MTASTS_STORE_STORE_SQLITE_H

#include "store/store.h"

extern const struct store_ops store_sqlite_ops;

/*
 * Opens (creating the file and its directory if missing) cfg->sqlite.path, checks or
 * upgrades the schema; the writer thread starts with the first change. On failure returns NULL with
 * *err a malloc'd message naming the file, the problem and what to do.
 */
void *store_sqlite_open(struct event_base *base, const struct config *cfg, char **err);

#endif
