/*
 * simd_sse4.c - the window probe with SSE4.2 (two keys per compare).
 * Compiled with -msse4.2 -mpopcnt; called only when the CPU has both.
 *
 * SSE4.2 compares signed 64-bit lanes only: flipping the sign bit of both
 * sides maps unsigned order onto signed order.
 */
#include <immintrin.h>
#include <stdint.h>

#include "simd.h"

#define WIDE 16

uint64_t kyro_simd_probe_sse4(const uint64_t *keys, uint64_t lo, uint64_t hi,
			      uint64_t key)
{
	uint64_t base = lo;
	uint64_t len = hi - lo;
	while (len > WIDE) {
		const uint64_t half = len / 2;
		base = keys[base + half - 1] < key ? base + half : base;
		len -= half;
	}
	const __m128i sign = _mm_set1_epi64x((long long)0x8000000000000000ULL);
	const __m128i k = _mm_xor_si128(_mm_set1_epi64x((long long)key), sign);
	const uint64_t *p = keys + base;
	uint64_t below = 0;
	for (; len >= 2; len -= 2, p += 2) {
		const __m128i v = _mm_xor_si128(
			_mm_loadu_si128((const __m128i *)(const void *)p), sign);
		const __m128i lt = _mm_cmpgt_epi64(k, v);
		below += (uint64_t)__builtin_popcount(
			(unsigned)_mm_movemask_pd(_mm_castsi128_pd(lt)));
	}
	if (len)
		below += p[0] < key;
	return base + below;
}
