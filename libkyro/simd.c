/*
 * simd.c - what this CPU can run, and the table of each level.
 *
 * The CPU is asked once; the answer is cached in one atomic int.  Two
 * threads racing on the first call compute the same answer from the same
 * CPU, so the race is harmless and no lock is needed.
 */
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include "simd.h"

#include "banned.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpu_features/cpuinfo_x86.h>
#define KYRO_SIMD_X86 1
#endif

static const char *const level_names[KYRO_SIMD_NLEVELS] = {
	"scalar", "sse4", "avx2", "avx512"
};

/* Bit L set when level L can run; -1 until detected. */
static _Atomic int supported_mask = -1;

static int detect_mask(void)
{
	int mask = 1 << KYRO_SIMD_SCALAR;
#ifdef KYRO_SIMD_X86
	/* GetX86Info() also checks XCR0, so a feature the OS does not save
	 * across context switches (AVX state) is reported absent. */
	const X86Info info = GetX86Info();
	const X86Features *f = &info.features;

	/* The fields are signed one-bit bit-fields: set reads as -1. */
	if (f->sse4_2 && f->popcnt)
		mask |= 1 << KYRO_SIMD_SSE4;
	if (f->avx2 && f->popcnt)
		mask |= 1 << KYRO_SIMD_AVX2;
	if (f->avx512f && f->popcnt)
		mask |= 1 << KYRO_SIMD_AVX512;
#endif
	return mask;
}

static int get_mask(void)
{
	int mask = atomic_load_explicit(&supported_mask, memory_order_relaxed);
	if (mask < 0) {
		mask = detect_mask();
		atomic_store_explicit(&supported_mask, mask,
				      memory_order_relaxed);
	}
	return mask;
}

int kyro__simd_supported(int level)
{
	if (level < 0 || level >= KYRO_SIMD_NLEVELS)
		return 0;
	return (get_mask() >> level) & 1;
}

int kyro__simd_level(const char *name)
{
	if (name == NULL)
		return -1;
	for (int i = 0; i < KYRO_SIMD_NLEVELS; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

int kyro__simd_selected(void)
{
	const int mask = get_mask();
	int best = KYRO_SIMD_SCALAR;
	for (int i = 0; i < KYRO_SIMD_NLEVELS; i++)
		if ((mask >> i) & 1)
			best = i;
	return best;
}

const struct kyro__simd_ops *kyro__simd_ops_for(int level)
{
	if (!kyro__simd_supported(level))
		return NULL;
	switch (level) {
	case KYRO_SIMD_SCALAR:
		return &kyro__simd_ops_scalar;
#ifdef KYRO_SIMD_X86
	case KYRO_SIMD_SSE4:
		return &kyro__simd_ops_sse4;
	case KYRO_SIMD_AVX2:
		return &kyro__simd_ops_avx2;
	case KYRO_SIMD_AVX512:
		return &kyro__simd_ops_avx512;
#endif
	default:
		return NULL;
	}
}

const char *kyro__simd_name(int level)
{
	if (level < 0 || level >= KYRO_SIMD_NLEVELS)
		return "?";
	return level_names[level];
}
