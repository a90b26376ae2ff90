/*
 * vec_scalar.c - the portable distance kernels, and the reference the
 * vector ones are tested against.  Compiled with -fno-tree-vectorize so
 * that it stays plain C in the order written (vec_dist.h gives the
 * chunking every level shares).
 */
#include <stddef.h>

#include "vec_dist.h"

#include "banned.h"

static float l2(const float *a, const float *b, size_t n, float bound)
{
	float total = 0.0f;
	size_t i = 0;
	while (i < n) {
		const size_t end = kyro__vec_chunk_end(i, n);
		float s = 0.0f;
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
		float s = 0.0f;
		for (; i < end; i++)
			s += a[i] * b[i];
		total += s;
	}
	return total;
}

const struct kyro__vec_ops kyro__vec_ops_scalar = {l2, dot};
