/* pool.c: size-class allocator over anonymous mappings; see pool.h for why. */
#include "config.h"

#include "base/pool.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "base/log.h"
#include "base/xmalloc.h"

/* Under ASan, free and unused pool memory is poisoned so use-after-free is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ASAN 1
#endif
#endif
#ifdef POOL_ASAN
#include <sanitizer/asan_interface.h>
#define POOL_POISON(a, n)   ASAN_POISON_MEMORY_REGION((a), (n))
#define POOL_UNPOISON(a, n) ASAN_UNPOISON_MEMORY_REGION((a), (n))
#else
#define POOL_POISON(a, n)   ((void)(a), (void)(n))
#define POOL_UNPOISON(a, n) ((void)(a), (void)(n))
#endif

#define POOL_GRAIN   16
#define POOL_CLASSES (POOL_MAX_OBJECT / POOL_GRAIN)
/* 256 KiB per mapping: few mappings even for millions of objects, little waste per class. */
#define POOL_SLAB_SIZE (256 * 1024)

struct pool_free_obj {
	struct pool_free_obj *next;
};

/* The first bytes of every slab link the slabs for pool_free_all. */
struct pool_slab {
	struct pool_slab *next;
	_Alignas(16) unsigned char objects[];
};

/* Objects over POOL_MAX_OBJECT: malloc'd, linked so pool_free_all can free them too. */
struct pool_large {
	struct pool_large *prev;
	struct pool_large *next;
	_Alignas(16) unsigned char obj[];
};

struct pool_class {
	struct pool_free_obj *free; /* freed objects, reused first */
	unsigned char *bump;        /* unused tail of the newest slab of this class */
	unsigned char *end;
};

struct pool {
	struct pool_class classes[POOL_CLASSES];
	struct pool_slab *slabs;
	struct pool_large *larges;
	size_t mapped;
	size_t large;
};

struct pool *
pool_new(void)
{
	return xcalloc(1, sizeof(struct pool));
}

void
pool_free_all(struct pool *p)
{
	if (p == NULL)
		return;
	while (p->slabs != NULL) {
		struct pool_slab *s = p->slabs;

		p->slabs = s->next;
		munmap(s, POOL_SLAB_SIZE);
	}
	while (p->larges != NULL) {
		struct pool_large *l = p->larges;

		p->larges = l->next;
		free(l);
	}
	free(p);
}

static size_t
pool_class_of(size_t size)
{
	return (size + POOL_GRAIN - 1) / POOL_GRAIN - 1;
}

static void
pool_refill(struct pool *p, struct pool_class *cl)
{
	struct pool_slab *s = mmap(NULL, POOL_SLAB_SIZE, PROT_READ | PROT_WRITE,
	                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (s == MAP_FAILED)
		fatal("out of memory: cannot map %d bytes for the cache", POOL_SLAB_SIZE);
	s->next = p->slabs;
	p->slabs = s;
	p->mapped += POOL_SLAB_SIZE;
	cl->bump = s->objects;
	cl->end = (unsigned char *)s + POOL_SLAB_SIZE;
	POOL_POISON(cl->bump, (size_t)(cl->end - cl->bump));
}

void *
pool_alloc(struct pool *p, size_t size)
{
	if (size > POOL_MAX_OBJECT) {
		struct pool_large *l = xmalloc(sizeof(*l) + size);

		l->prev = NULL;
		l->next = p->larges;
		if (p->larges != NULL)
			p->larges->prev = l;
		p->larges = l;
		p->large += size;
		return l->obj;
	}
	struct pool_class *cl = &p->classes[pool_class_of(size)];
	size_t rounded = (pool_class_of(size) + 1) * POOL_GRAIN;

	if (cl->free != NULL) {
		struct pool_free_obj *o = cl->free;

		POOL_UNPOISON(o, rounded);
		cl->free = o->next;
		return o;
	}
	if ((size_t)(cl->end - cl->bump) < rounded)
		pool_refill(p, cl);
	void *o = cl->bump;

	cl->bump += rounded;
	POOL_UNPOISON(o, rounded);
	return o;
}

void
pool_free(struct pool *p, void *obj, size_t size)
{
	if (obj == NULL)
		return;
	if (size > POOL_MAX_OBJECT) {
		struct pool_large *l = (struct pool_large *)((unsigned char *)obj -
		                                             offsetof(struct pool_large, obj));

		if (l->prev != NULL)
			l->prev->next = l->next;
		else
			p->larges = l->next;
		if (l->next != NULL)
			l->next->prev = l->prev;
		p->large -= size;
		free(l);
		return;
	}
	struct pool_class *cl = &p->classes[pool_class_of(size)];
	struct pool_free_obj *o = obj;

	o->next = cl->free;
	cl->free = o;
	/* The link stays readable for pool_alloc; the rest of the object is poisoned. */
	POOL_POISON((unsigned char *)obj + sizeof(*o),
	            (pool_class_of(size) + 1) * POOL_GRAIN - sizeof(*o));
}

size_t
pool_footprint(const struct pool *p)
{
	return p->mapped + p->large;
}
