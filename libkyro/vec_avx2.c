/*
 * vec_avx2.c - distance kernels with AVX2 and FMA (eight floats a step,
 * four accumulators, so that the FMAs' latency overlaps), for the simd.h
 * AVX2 level on a CPU that also has FMA.  A chunk's tail under eight
 * floats is a masked load, which reads nothing in its masked-off lanes.
 */
#include <immintrin.h>
#include <stddef.h>

#include "vec_dist.h"

#include "banned.h"

static inline float hsum(__m256 v)
{
	__m128 x = _mm_add_ps(_mm256_castps256_ps128(v),
			      _mm256_extractf128_ps(v, 1));
	x = _mm_add_ps(x, _mm_movehl_ps(x, x));
	x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
	return _mm_cvtss_f32(x);
}

/* Lanes 0..R-1 set, 0 < R < 8. */
static inline __m256i tail_mask(size_t r)
{
	const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), idx);
}

static float l2(const float *a, const float *b, size_t n, float bound)
{
	float total = 0.0f;
	size_t i = 0;
	while (i < n) {
		const size_t end = kyro__vec_chunk_end(i, n);
		__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
		__m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
		for (; i + 32 <= end; i += 32) {
			__m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i),
						  _mm256_loadu_ps(b + i));
			__m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8),
						  _mm256_loadu_ps(b + i + 8));
			__m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16),
						  _mm256_loadu_ps(b + i + 16));
			__m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24),
						  _mm256_loadu_ps(b + i + 24));
			s0 = _mm256_fmadd_ps(d0, d0, s0);
			s1 = _mm256_fmadd_ps(d1, d1, s1);
			s2 = _mm256_fmadd_ps(d2, d2, s2);
			s3 = _mm256_fmadd_ps(d3, d3, s3);
		}
		for (; i + 8 <= end; i += 8) {
			__m256 d = _mm256_sub_ps(_mm256_loadu_ps(a + i),
						 _mm256_loadu_ps(b + i));
			s0 = _mm256_fmadd_ps(d, d, s0);
		}
		if (i < end) {
			const __m256i m = tail_mask(end - i);
			__m256 d = _mm256_sub_ps(_mm256_maskload_ps(a + i, m),
						 _mm256_maskload_ps(b + i, m));
			s1 = _mm256_fmadd_ps(d, d, s1);
			i = end;
		}
		total += hsum(_mm256_add_ps(_mm256_add_ps(s0, s1),
					    _mm256_add_ps(s2, s3)));
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
		__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
		__m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
		for (; i + 32 <= end; i += 32) {
			s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i),
					     _mm256_loadu_ps(b + i), s0);
			s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8),
					     _mm256_loadu_ps(b + i + 8), s1);
			s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16),
					     _mm256_loadu_ps(b + i + 16), s2);
			s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24),
					     _mm256_loadu_ps(b + i + 24), s3);
		}
		for (; i + 8 <= end; i += 8)
			s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i),
					     _mm256_loadu_ps(b + i), s0);
		if (i < end) {
			const __m256i m = tail_mask(end - i);
			s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m),
					     _mm256_maskload_ps(b + i, m), s1);
			i = end;
		}
		total += hsum(_mm256_add_ps(_mm256_add_ps(s0, s1),
					    _mm256_add_ps(s2, s3)));
	}
	return total;
}

const struct kyro__vec_ops kyro__vec_ops_avx2 = {l2, dot};
