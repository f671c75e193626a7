/* test_pool.c: the cache's size-class allocator: alignment, no overlap, reuse, large objects. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/pool.h"

#define NOBJ 5000

/* Every object is 16-byte aligned and holds its own bytes: no two objects overlap. */
static void
test_objects_aligned_and_disjoint(void **state)
{
	struct pool *p = pool_new();
	static unsigned char *obj[NOBJ];
	static size_t size[NOBJ];

	(void)state;
	for (size_t i = 0; i < NOBJ; i++) {
		size[i] = 1 + (i * 37) % (POOL_MAX_OBJECT + 200); /* small and large objects */
		obj[i] = pool_alloc(p, size[i]);
		assert_non_null(obj[i]);
		assert_int_equal((uintptr_t)obj[i] % 16, 0);
		memset(obj[i], (int)(i & 0xff), size[i]);
	}
	for (size_t i = 0; i < NOBJ; i++)
		for (size_t j = 0; j < size[i]; j++)
			assert_int_equal(obj[i][j], i & 0xff);
	for (size_t i = 0; i < NOBJ; i++)
		pool_free(p, obj[i], size[i]);
	pool_free_all(p);
}

/* A freed object is reused for the next allocation of its class, not of another class. */
static void
test_free_reuses_within_class(void **state)
{
	struct pool *p = pool_new();

	(void)state;
	void *a = pool_alloc(p, 200);
	void *b = pool_alloc(p, 200);

	pool_free(p, a, 200);
	void *other = pool_alloc(p, 40); /* another class: must not get a */

	assert_ptr_not_equal(other, a);
	assert_ptr_equal(pool_alloc(p, 193), a); /* 193..208 share the class of 200 */
	pool_free(p, b, 200);
	pool_free(p, other, 40);
	pool_free_all(p);
}

/* The footprint grows by whole mappings for small objects and by the size of large ones. */
static void
test_footprint(void **state)
{
	struct pool *p = pool_new();

	(void)state;
	assert_int_equal(pool_footprint(p), 0);
	void *s = pool_alloc(p, 100);
	size_t slab = pool_footprint(p);

	assert_true(slab >= 64 * 1024);
	/* Filling the first mapping of this class needs no second one. */
	for (size_t i = 1; i < (slab - 64) / 112; i++)
		(void)pool_alloc(p, 100);
	assert_int_equal(pool_footprint(p), slab);
	void *l = pool_alloc(p, POOL_MAX_OBJECT + 1);

	assert_int_equal(pool_footprint(p), slab + POOL_MAX_OBJECT + 1);
	pool_free(p, l, POOL_MAX_OBJECT + 1);
	assert_int_equal(pool_footprint(p), slab);
	pool_free(p, s, 100);
	pool_free(p, NULL, 10);
	/* Large objects still allocated are freed with the pool (ASan's leak check). */
	(void)pool_alloc(p, 70000);
	(void)pool_alloc(p, 2000);
	pool_free_all(p);
	pool_free_all(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_objects_aligned_and_disjoint),
		cmocka_unit_test(test_free_reuses_within_class),
		cmocka_unit_test(test_footprint),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
