/*
 * simd_sse4.c - the window probe with SSE4.2 (two keys per compare), and the
 * lookups built on it (rmi_lookup.h).
 * Compiled with -msse4.2 -mpopcnt; called only when the CPU has both.
 *
 * SSE4.2 compares signed 64-bit lanes only: flipping the sign bit of both
 * sides maps unsigned order onto signed order.
 */
#include <immintrin.h>
#include <stdint.h>

#include "rmi_lookup.h"
#include "simd.h"

#include "banned.h"

#define WIDE 16

/* Bit j set when p[j] < key (the sign-flipped K), j < 2. */
static inline unsigned below2(const uint64_t *p, __m128i k, __m128i sign)
{
	const __m128i v = _mm_xor_si128(
		_mm_loadu_si128((const __m128i *)(const void *)p), sign);
	return (unsigned)_mm_movemask_pd(_mm_castsi128_pd(_mm_cmpgt_epi64(k, v)));
}

static uint64_t probe(const uint64_t *keys, uint64_t n, uint64_t lo,
		      uint64_t hi, uint64_t key)
{
	const __m128i sign = _mm_set1_epi64x((long long)0x8000000000000000ULL);
	const __m128i k = _mm_xor_si128(_mm_set1_epi64x((long long)key), sign);
	uint64_t a;
	uint32_t win;
	if (kyro__probe_lines(keys, n, lo, hi, &a, &win)) {
		const uint64_t b = kyro__probe_descend(keys, a, key, 2);
		return kyro__probe_clamp(b + (uint64_t)__builtin_popcount(
						     below2(keys + b, k, sign)),
					 lo, hi);
	}
	uint64_t base = lo;
	uint64_t len = hi - lo;
	while (len > WIDE) {
		const uint64_t half = len / 2;
		base = keys[base + half - 1] < key ? base + half : base;
		len -= half;
	}
	const uint64_t *p = keys + base;
	uint64_t below = 0;
	for (; len >= 2; len -= 2, p += 2)
		below += (uint64_t)__builtin_popcount(below2(p, k, sign));
	if (len)
		below += p[0] < key;
	return base + below;
}

/* Descending to one key measured as fast as descending to fewer and
 * comparing them with vectors (see answer() in rmi_lookup.h). */
static inline uint64_t count32(const uint64_t *keys, uint64_t a, uint64_t key)
{
	const uint64_t b = kyro__probe_descend(keys, a, key, 1);
	return b + (keys[b] < key);
}

const struct kyro__simd_ops kyro__simd_ops_sse4 = {probe, lower_bound,
						   lower_bound_batch};
