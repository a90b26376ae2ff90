/*
 * simd_scalar.c - the portable window probe (no vector instructions).
 *
 * Compiled without -m flags and with -fno-tree-vectorize so that it stays
 * the plain reference the vector variants are compared against.
 *
 * All probes share one shape: branchless halving (the comparison picks the
 * base with a conditional move, so no branch depends on key data) until at
 * most WIDE keys are left, then a count of the keys below KEY over the
 * rest.  Counting a whole short run costs more compares than stopping at
 * the first larger key, but its loads are independent, so the cache misses
 * of a window overlap instead of queueing behind mispredicted branches.
 */
#include <stdint.h>

#include "simd.h"

#define WIDE 16

uint64_t kyro_simd_probe_scalar(const uint64_t *keys, uint64_t lo,
				uint64_t hi, uint64_t key)
{
	uint64_t base = lo;
	uint64_t len = hi - lo;
	while (len > WIDE) {
		const uint64_t half = len / 2;
		base = keys[base + half - 1] < key ? base + half : base;
		len -= half;
	}
	uint64_t below = 0;
	for (uint64_t j = 0; j < len; j++)
		below += keys[base + j] < key;
	return base + below;
}
