/* hash.h: FNV-1a, the one string hash of the hash tables and back-off ids. */
#ifndef MTASTS_BASE_HASH_H
#define MTASTS_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

/*
 * FNV-1a (32 bit) over len bytes. A per-table random seed, mixed into the offset basis, keeps
 * names from the network from being aimed at one bucket; 0 gives plain FNV-1a.
 */
static inline uint32_t
hash_fnv1a(uint32_t seed, const void *data, size_t len)
{
	const unsigned char *p = data;
	uint32_t h = 2166136261u ^ seed;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

#endif
