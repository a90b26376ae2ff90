/*
 * vec_avx512.c - distance kernels with AVX-512F (sixteen floats a step,
 * four accumulators), for the simd.h AVX-512 level.  A chunk's tail under
 * sixteen floats is one masked load, which reads nothing in its
 * masked-off lanes: no scalar loop, and no read past the vector's end.
 */
#include <immintrin.h>
#include <stddef.h>

#include "vec_dist.h"

#include "banned.h"

static inline __mmask16 tail_mask(size_t r)
{
	return (__mmask16)((1u << r) - 1);
}

static float l2(const float *a, const float *b, size_t n, float bound)
{
	float total = 0.0f;
	size_t i = 0;
	while (i < n) {
		const size_t end = kyro__vec_chunk_end(i, n);
		__m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
		__m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
		for (; i + 64 <= end; i += 64) {
			__m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i),
						  _mm512_loadu_ps(b + i));
			__m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16),
						  _mm512_loadu_ps(b + i + 16));
			__m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 32),
						  _mm512_loadu_ps(b + i + 32));
			__m512 d3 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 48),
						  _mm512_loadu_ps(b + i + 48));
			s0 = _mm512_fmadd_ps(d0, d0, s0);
			s1 = _mm512_fmadd_ps(d1, d1, s1);
			s2 = _mm512_fmadd_ps(d2, d2, s2);
			s3 = _mm512_fmadd_ps(d3, d3, s3);
		}
		for (; i + 16 <= end; i += 16) {
			__m512 d = _mm512_sub_ps(_mm512_loadu_ps(a + i),
						 _mm512_loadu_ps(b + i));
			s0 = _mm512_fmadd_ps(d, d, s0);
		}
		if (i < end) {
			const __mmask16 m = tail_mask(end - i);
			const __m512 x = _mm512_maskz_loadu_ps(m, a + i);
			const __m512 y = _mm512_maskz_loadu_ps(m, b + i);
			const __m512 d = _mm512_sub_ps(x, y);
			s1 = _mm512_fmadd_ps(d, d, s1);
			i = end;
		}
		total += _mm512_reduce_add_ps(_mm512_add_ps(
			_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
		if (total > bound)
			break;
	}
	return total;
}

static float dot(const float *a, const float *b, size_t n)
{
	float total = 0.0f;
	size_t i = 0;
	while (i < n) {
		const size_t end = kyro__vec_chunk_end(i, n);
		__m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
		__m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
		for (; i + 64 <= end; i += 64) {
			s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i),
					     _mm512_loadu_ps(b + i), s0);
			s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16),
					     _mm512_loadu_ps(b + i + 16), s1);
			s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32),
					     _mm512_loadu_ps(b + i + 32), s2);
			s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48),
					     _mm512_loadu_ps(b + i + 48), s3);
		}
		for (; i + 16 <= end; i += 16)
			s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i),
					     _mm512_loadu_ps(b + i), s0);
		if (i < end) {
			const __mmask16 m = tail_mask(end - i);
			const __m512 x = _mm512_maskz_loadu_ps(m, a + i);
			const __m512 y = _mm512_maskz_loadu_ps(m, b + i);
			s1 = _mm512_fmadd_ps(x, y, s1);
			i = end;
		}
		total += _mm512_reduce_add_ps(_mm512_add_ps(
			_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
	}
	return total;
}

const struct kyro__vec_ops kyro__vec_ops_avx512 = {l2, dot};
