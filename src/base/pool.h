/*
 * pool.h: a size-class allocator for many small long-lived objects (cache entries).
 *
 * Objects up to POOL_MAX_OBJECT bytes are carved from large anonymous mappings in 16-byte
 * classes with no per-object header, and freed objects are reused by their class. Keeping
 * them out of the malloc heap means the short-lived allocations of TLS handshakes and DNS
 * answers cannot pin half-empty heap pages between them. Larger objects use malloc. Memory
 * returns to the system only in pool_free_all, so a pool suits caches with a bounded size.
 */
#ifndef MTASTS_BASE_POOL_H
#define MTASTS_BASE_POOL_H

#include <stddef.h>

#define POOL_MAX_OBJECT 1024

struct pool;

struct pool *pool_new(void);
/* Frees every object, small or large, and the pool itself. */
void pool_free_all(struct pool *p);

/* Never returns NULL (running out of memory is fatal, like xmalloc); size > 0. */
void *pool_alloc(struct pool *p, size_t size);
/* size must be the size the object was allocated with. */
void pool_free(struct pool *p, void *obj, size_t size);

/* Bytes mapped for small objects plus bytes of live large objects. */
size_t pool_footprint(const struct pool *p);

#endif
