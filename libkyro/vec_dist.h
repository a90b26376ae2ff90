/*
 * vec_dist.h - private header: float32 distance kernels, one table per
 * instruction set, and the choice between them.
 *
 * Each level's table is defined in its own vec_*.c, compiled for that
 * instruction set (see the Makefile), and picked at run time through the
 * same cpu_features detection as the learned index's probe (simd.h); the
 * AVX2 table also needs FMA, asked for here.
 *
 * Every kernel sums in chunks of KYRO_VEC_CHUNK components, a chunk's
 * partial sum added to the running total in order, and the bounded L2
 * kernel stops after the first chunk that takes the total above BOUND
 * (returning that partial total, which is above BOUND).  So a bounded call
 * that does not stop returns exactly what the unbounded one returns, and
 * a search that abandons a candidate early never changes the distance of
 * one it keeps.  Levels may differ from each other in the last bits (their
 * lanes sum in different orders); the tests bound that difference.
 */
#ifndef KYRO_VEC_DIST_H
#define KYRO_VEC_DIST_H

#include <stddef.h>
#include <stdint.h>

/* Metrics, as the index file stores them.  Distances: L2 is the squared
 * Euclidean distance; IP and cosine are 1 - dot(a, b), cosine over
 * vectors normalised when they are stored and when a query arrives. */
#define KYRO_VEC_L2 0
#define KYRO_VEC_IP 1
#define KYRO_VEC_COS 2
#define KYRO_VEC_NMETRICS 3

#define KYRO_VEC_CHUNK 128

/* Where the chunk starting at I of an N-float vector ends. */
static inline size_t kyro__vec_chunk_end(size_t i, size_t n)
{
	return n - i > KYRO_VEC_CHUNK ? i + KYRO_VEC_CHUNK : n;
}

struct kyro__vec_ops {
	/* Squared L2 distance of A and B (N floats), or, once a chunk's
	 * running total exceeds BOUND, that total. */
	float (*l2)(const float *a, const float *b, size_t n, float bound);
	/* dot(A, B). */
	float (*dot)(const float *a, const float *b, size_t n);
};

extern const struct kyro__vec_ops kyro__vec_ops_scalar;
extern const struct kyro__vec_ops kyro__vec_ops_sse;
extern const struct kyro__vec_ops kyro__vec_ops_avx2;
extern const struct kyro__vec_ops kyro__vec_ops_avx512;

/* The table of simd.h level LEVEL, or NULL when this CPU cannot run it. */
const struct kyro__vec_ops *kyro__vec_ops_for(int level);
/* The best table this CPU runs (detected once, thread-safe). */
const struct kyro__vec_ops *kyro__vec_ops_best(void);
/* The simd.h level of the best table. */
int kyro__vec_level_best(void);

/* The distance of METRIC between A and B, bounded as ops->l2 for L2. */
static inline float kyro__vec_dist(const struct kyro__vec_ops *ops, int metric,
				   const float *a, const float *b, size_t n,
				   float bound)
{
	if (metric == KYRO_VEC_L2)
		return ops->l2(a, b, n, bound);
	return 1.0f - ops->dot(a, b, n);
}

/* 0 when every one of the N floats of V is finite, else EINVAL. */
int kyro__vec_check_finite(const float *v, size_t n);
/* Scale V (N floats) to unit length in place; a zero vector stays zero. */
void kyro__vec_normalize(float *v, size_t n);
/* "l2", "ip", "cosine"; "?" for anything else. */
const char *kyro__vec_metric_name(int metric);
/* The metric named NAME, or -1. */
int kyro__vec_metric(const char *name);

#endif /* KYRO_VEC_DIST_H */
