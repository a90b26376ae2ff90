/*
 * simd_avx512.c - the window probe with AVX-512F (eight keys, one cache
 * line, per compare).  Compiled with -mavx512f -mpopcnt; called only when
 * the CPU has both.
 *
 * AVX-512F compares unsigned 64-bit lanes directly, and a masked load
 * reads nothing in its masked-off lanes (no fault past the window's end),
 * so the general path's tail needs no scalar loop.
 */
#include <immintrin.h>
#include <stdint.h>

#include "simd.h"

#define WIDE 64

/* A window longer than the short path's lines, or near the array's end.
 * Kept out of line so that the short path saves no registers. */
static __attribute__((noinline)) uint64_t probe_long(const uint64_t *keys,
						    uint64_t lo, uint64_t hi,
						    uint64_t key)
{
	const __m512i k = _mm512_set1_epi64((long long)key);
	uint64_t base = lo;
	uint64_t len = hi - lo;
	while (len > WIDE) {
		const uint64_t half = len / 2;
		base = keys[base + half - 1] < key ? base + half : base;
		len -= half;
	}
	const uint64_t *p = keys + base;
	uint64_t below = 0;
	for (; len >= 8; len -= 8, p += 8) {
		const __m512i v = _mm512_loadu_si512((const void *)p);
		below += (uint64_t)__builtin_popcount(
			(unsigned)_mm512_cmplt_epu64_mask(v, k));
	}
	if (len) {
		const __mmask8 m = (__mmask8)((1u << len) - 1);
		const __m512i v = _mm512_maskz_loadu_epi64(m, (const void *)p);
		below += (uint64_t)__builtin_popcount(
			(unsigned)_mm512_mask_cmplt_epu64_mask(m, v, k));
	}
	return base + below;
}

uint64_t kyro__simd_probe_avx512(const uint64_t *keys, uint64_t n, uint64_t lo,
				 uint64_t hi, uint64_t key)
{
	uint64_t a;
	uint32_t win;
	if (kyro__probe_lines(keys, n, lo, hi, &a, &win))
		return lo +
		       (uint64_t)__builtin_popcount(
			       kyro__lt_mask32_avx512(keys + a, key) & win);
	return probe_long(keys, lo, hi, key);
}
