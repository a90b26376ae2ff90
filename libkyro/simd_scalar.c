/*
 * simd_scalar.c - the portable window probe (no vector instructions), and
 * the lookups built on it (rmi_lookup.h).
 *
 * Compiled without -m flags and with -fno-tree-vectorize so that it stays
 * the plain reference the vector variants are compared against.
 *
 * All probes share one shape.  A short window is probed over a fixed
 * count of whole lines (kyro__probe_lines() in simd.h): compared all at
 * once with AVX-512, searched without branches by the others
 * (kyro__probe_descend()).  A longer one is
 * halved without branches (the comparison picks the base with a
 * conditional move, so no branch depends on key data) until at most WIDE
 * keys are left, and the keys below KEY are counted over the rest.
 * Counting a whole short run costs more compares than stopping at the
 * first larger key, but its loads are independent, so the cache misses of
 * a window overlap instead of queueing behind mispredicted branches.
 */
#include <stdint.h>

#include "rmi_lookup.h"
#include "simd.h"

#include "banned.h"

#define WIDE 16

static uint64_t probe(const uint64_t *keys, uint64_t n, uint64_t lo,
		      uint64_t hi, uint64_t key)
{
	uint64_t a;
	uint32_t win;
	if (kyro__probe_lines(keys, n, lo, hi, &a, &win)) {
		const uint64_t b = kyro__probe_descend(keys, a, key, 1);
		return kyro__probe_clamp(b + (keys[b] < key), lo, hi);
	}
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

static inline uint64_t count32(const uint64_t *keys, uint64_t a, uint64_t key)
{
	const uint64_t b = kyro__probe_descend(keys, a, key, 1);
	return b + (keys[b] < key);
}

const struct kyro__simd_ops kyro__simd_ops_scalar = {probe, lower_bound,
						     lower_bound_batch};
