/*
 * simd_avx2.c - the window probe with AVX2 (four keys per compare), and the
 * lookups built on it (rmi_lookup.h).
 * Compiled with -mavx2 -mpopcnt; called only when the CPU has both.
 *
 * AVX2 compares signed 64-bit lanes only: flipping the sign bit of both
 * sides maps unsigned order onto signed order.
 */
#include <immintrin.h>
#include <stdint.h>

#include "rmi_lookup.h"
#include "simd.h"

#include "banned.h"

#define WIDE 32

/* Bit j set when p[j] < key (the sign-flipped K), j < 4. */
static inline unsigned below4(const uint64_t *p, __m256i k, __m256i sign)
{
	const __m256i v = _mm256_xor_si256(
		_mm256_loadu_si256((const __m256i *)(const void *)p), sign);
	return (unsigned)_mm256_movemask_pd(
		_mm256_castsi256_pd(_mm256_cmpgt_epi64(k, v)));
}

static uint64_t probe(const uint64_t *keys, uint64_t n, uint64_t lo,
		      uint64_t hi, uint64_t key)
{
	const __m256i sign =
		_mm256_set1_epi64x((long long)0x8000000000000000ULL);
	const __m256i k =
		_mm256_xor_si256(_mm256_set1_epi64x((long long)key), sign);
	uint64_t a;
	uint32_t win;
	if (kyro__probe_lines(keys, n, lo, hi, &a, &win)) {
		const uint64_t b = kyro__probe_descend(keys, a, key, 4);
		return kyro__probe_clamp(b + (uint64_t)__builtin_popcount(
						     below4(keys + b, k, sign)),
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
	for (; len >= 4; len -= 4, p += 4)
		below += (uint64_t)__builtin_popcount(below4(p, k, sign));
	for (uint64_t j = 0; j < len; j++)
		below += p[j] < key;
	return base + below;
}

/* Descending to one key measured as fast as descending to fewer and
 * comparing them with vectors (see answer() in rmi_lookup.h). */
static inline uint64_t count32(const uint64_t *keys, uint64_t a, uint64_t key)
{
	const uint64_t b = kyro__probe_descend(keys, a, key, 1);
	return b + (keys[b] < key);
}

const struct kyro__simd_ops kyro__simd_ops_avx2 = {probe, lower_bound,
						   lower_bound_batch};
