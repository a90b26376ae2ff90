/*
 * simd_avx512.c - the window probe with AVX-512F (eight keys, one cache
 * line, per compare), and the lookups built on it (rmi_lookup.h).
 * Compiled with -mavx512f -mpopcnt; called only when the CPU has both.
 *
 * AVX-512F compares unsigned 64-bit lanes directly, and a masked load
 * reads nothing in its masked-off lanes (no fault past the window's end),
 * so the general path's tail needs no scalar loop.
 */
#include <immintrin.h>
#include <stdint.h>

#include "rmi_lookup.h"
#include "simd.h"

#include "banned.h"

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

/*
 * Bit j set when P[j] < KEY, for the 32 keys P[0..32): four compares of a
 * line each, the masks paired in mask registers (the fewer instructions a
 * lookup holds in the reorder buffer, the more lookups' misses overlap).
 */
static inline uint32_t lt_mask32(const uint64_t *p, uint64_t key)
{
	const __m512i k = _mm512_set1_epi64((long long)key);
	const __mmask16 m01 = _mm512_kunpackb(
		_mm512_cmplt_epu64_mask(_mm512_loadu_si512(p + 8), k),
		_mm512_cmplt_epu64_mask(_mm512_loadu_si512(p), k));
	const __mmask16 m23 = _mm512_kunpackb(
		_mm512_cmplt_epu64_mask(_mm512_loadu_si512(p + 24), k),
		_mm512_cmplt_epu64_mask(_mm512_loadu_si512(p + 16), k));
	return (uint32_t)_cvtmask16_u32(m01) |
	       (uint32_t)_cvtmask16_u32(m23) << 16;
}

static uint64_t probe(const uint64_t *keys, uint64_t n, uint64_t lo,
		      uint64_t hi, uint64_t key)
{
	uint64_t a;
	uint32_t win;
	if (kyro__probe_lines(keys, n, lo, hi, &a, &win))
		return lo + (uint64_t)__builtin_popcount(
				    lt_mask32(keys + a, key) & win);
	return probe_long(keys, lo, hi, key);
}

/*
 * The lookup's fast path compares all 32 keys at once.  The four loads
 * are independent, where the descent's five depend on each other, and
 * the count takes a dozen instructions: 13-18% off a lookup on Zen 5
 * (docs/RMI.md, "The fast path").
 */
static inline uint64_t count32(const uint64_t *keys, uint64_t a, uint64_t key)
{
	return a + (uint64_t)__builtin_popcount(lt_mask32(keys + a, key));
}

const struct kyro__simd_ops kyro__simd_ops_avx512 = {probe, lower_bound,
						     lower_bound_batch};
