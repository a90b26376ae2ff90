/*
 * vec_sse.c - distance kernels with SSE (four floats a step, two
 * accumulators), for the simd.h SSE4 level.  The tail of a chunk under
 * four floats is summed one float at a time.
 */
#include <immintrin.h>
#include <stddef.h>

#include "vec_dist.h"

#include "banned.h"

static inline float hsum(__m128 v)
{
	v = _mm_add_ps(v, _mm_movehl_ps(v, v));
	v = _mm_add_ss(v, _mm_shuffle_ps(v, v, 1));
	return _mm_cvtss_f32(v);
}

static float l2(const float *a, const float *b, size_t n, float bound)
{
	float total = 0.0f;
	size_t i = 0;
	while (i < n) {
		const size_t end = kyro__vec_chunk_end(i, n);
		__m128 s0 = _mm_setzero_ps(), s1 = _mm_setzero_ps();
		for (; i + 8 <= end; i += 8) {
			__m128 d0 = _mm_sub_ps(_mm_loadu_ps(a + i),
					       _mm_loadu_ps(b + i));
			__m128 d1 = _mm_sub_ps(_mm_loadu_ps(a + i + 4),
					       _mm_loadu_ps(b + i + 4));
			s0 = _mm_add_ps(s0, _mm_mul_ps(d0, d0));
			s1 = _mm_add_ps(s1, _mm_mul_ps(d1, d1));
		}
		if (i + 4 <= end) {
			__m128 d0 = _mm_sub_ps(_mm_loadu_ps(a + i),
					       _mm_loadu_ps(b + i));
			s0 = _mm_add_ps(s0, _mm_mul_ps(d0, d0));
			i += 4;
		}
		float s = hsum(_mm_add_ps(s0, s1));
		for (; i < end; i++) {
			const float d = a[i] - b[i];
			s += d * d;
		}
		total += s;
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
		__m128 s0 = _mm_setzero_ps(), s1 = _mm_setzero_ps();
		for (; i + 8 <= end; i += 8) {
			s0 = _mm_add_ps(s0, _mm_mul_ps(_mm_loadu_ps(a + i),
						       _mm_loadu_ps(b + i)));
			const __m128 x = _mm_loadu_ps(a + i + 4);
			const __m128 y = _mm_loadu_ps(b + i + 4);
			s1 = _mm_add_ps(s1, _mm_mul_ps(x, y));
		}
		if (i + 4 <= end) {
			s0 = _mm_add_ps(s0, _mm_mul_ps(_mm_loadu_ps(a + i),
						       _mm_loadu_ps(b + i)));
			i += 4;
		}
		float s = hsum(_mm_add_ps(s0, s1));
		for (; i < end; i++)
			s += a[i] * b[i];
		total += s;
	}
	return total;
}

const struct kyro__vec_ops kyro__vec_ops_sse = {l2, dot};
