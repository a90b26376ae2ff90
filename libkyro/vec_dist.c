/*
 * vec_dist.c - which distance kernels this CPU runs, and the helpers
 * around them (finiteness, normalisation, metric names).
 *
 * The level comes from simd.h, the same detection the learned index's
 * probe uses; the AVX2 kernels also use FMA, which simd.h does not ask
 * about (its probe needs none), so that one bit is asked here.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "simd.h"
#include "vec_dist.h"

#include "banned.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpu_features/cpuinfo_x86.h>
#define KYRO_VEC_X86 1
#endif

static _Atomic int best_level = -1;

static int has_fma(void)
{
#ifdef KYRO_VEC_X86
	const X86Info info = GetX86Info();
	return info.features.fma3 != 0;
#else
	return 0;
#endif
}

const struct kyro__vec_ops *kyro__vec_ops_for(int level)
{
	if (!kyro__simd_supported(level))
		return NULL;
	switch (level) {
	case KYRO_SIMD_SCALAR:
		return &kyro__vec_ops_scalar;
#ifdef KYRO_VEC_X86
	case KYRO_SIMD_SSE4:
		return &kyro__vec_ops_sse;
	case KYRO_SIMD_AVX2:
		return has_fma() ? &kyro__vec_ops_avx2 : NULL;
	case KYRO_SIMD_AVX512:
		return &kyro__vec_ops_avx512;
#endif
	default:
		return NULL;
	}
}

int kyro__vec_level_best(void)
{
	int level = atomic_load_explicit(&best_level, memory_order_relaxed);
	if (level < 0) {
		/* Racing first calls compute the same answer. */
		level = KYRO_SIMD_SCALAR;
		for (int l = KYRO_SIMD_NLEVELS - 1; l > KYRO_SIMD_SCALAR; l--)
			if (kyro__vec_ops_for(l)) {
				level = l;
				break;
			}
		atomic_store_explicit(&best_level, level, memory_order_relaxed);
	}
	return level;
}

const struct kyro__vec_ops *kyro__vec_ops_best(void)
{
	return kyro__vec_ops_for(kyro__vec_level_best());
}

int kyro__vec_check_finite(const float *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(v[i]))
			return EINVAL;
	return 0;
}

void kyro__vec_normalize(float *v, size_t n)
{
	/* In double, so that a vector of huge components does not overflow
	 * to an infinite norm. */
	double ss = 0;
	for (size_t i = 0; i < n; i++)
		ss += (double)v[i] * v[i];
	if (ss == 0)
		return;
	const double inv = 1.0 / sqrt(ss);
	for (size_t i = 0; i < n; i++)
		v[i] = (float)(v[i] * inv);
}

static const char *const metric_names[KYRO_VEC_NMETRICS] = {"l2", "ip",
							     "cosine"};

const char *kyro__vec_metric_name(int metric)
{
	if (metric < 0 || metric >= KYRO_VEC_NMETRICS)
		return "?";
	return metric_names[metric];
}

int kyro__vec_metric(const char *name)
{
	for (int i = 0; name && i < KYRO_VEC_NMETRICS; i++)
		if (strcmp(name, metric_names[i]) == 0)
			return i;
	return -1;
}
