/*
 * simd.h - private header: the window probe of the learned index, in one
 * variant per instruction set, and the run-time choice between them.
 *
 * Every variant answers the same question over a sorted run of keys and
 * must give the same answer bit for bit: the tests compare them.  The
 * choice is made once per process from cpu_features (GetX86Info), unless
 * KYRODB_SIMD names a level (scalar, sse4, avx2, avx512).  A value this
 * library does not know, or a level the CPU cannot run, is ignored (the
 * automatic choice stands) and reported through kyro__simd_env_status();
 * the library never prints.
 *
 * NEON: out of scope for x86 builds.  An ARM build would add
 * simd_neon.c and a KYRO_SIMD_NEON level; until then ARM runs scalar.
 */
#ifndef KYRO_SIMD_H
#define KYRO_SIMD_H

#include <stdint.h>

/* Levels, ordered: a higher level is preferred when supported. */
#define KYRO_SIMD_SCALAR 0
#define KYRO_SIMD_SSE4 1
#define KYRO_SIMD_AVX2 2
#define KYRO_SIMD_AVX512 3
#define KYRO_SIMD_NLEVELS 4

/* kyro__simd_env_status() results. */
#define KYRO_SIMD_ENV_UNSET 0       /* KYRODB_SIMD not set (or empty) */
#define KYRO_SIMD_ENV_APPLIED 1     /* the named level is in use */
#define KYRO_SIMD_ENV_UNKNOWN 2     /* not a level name: automatic choice */
#define KYRO_SIMD_ENV_UNSUPPORTED 3 /* this CPU lacks it: automatic choice */

/*
 * A probe: the lower bound of KEY in the sorted keys[LO..HI), that is
 * LO + the number of keys[j] < KEY for LO <= j < HI.  LO <= HI <= N.
 * Besides keys[LO..HI) it may read other keys of keys[0..N) that share
 * the window's 64-byte lines (see kyro__probe_lines()), never a key past
 * N or before 0.
 */
typedef uint64_t (*kyro__simd_probe_fn)(const uint64_t *keys, uint64_t n,
					uint64_t lo, uint64_t hi, uint64_t key);

uint64_t kyro__simd_probe_scalar(const uint64_t *keys, uint64_t n, uint64_t lo,
				 uint64_t hi, uint64_t key);
uint64_t kyro__simd_probe_sse4(const uint64_t *keys, uint64_t n, uint64_t lo,
			       uint64_t hi, uint64_t key);
uint64_t kyro__simd_probe_avx2(const uint64_t *keys, uint64_t n, uint64_t lo,
			       uint64_t hi, uint64_t key);
uint64_t kyro__simd_probe_avx512(const uint64_t *keys, uint64_t n, uint64_t lo,
				 uint64_t hi, uint64_t key);

#define KYRO_PROBE_LINES 4 /* 64-byte lines the short-window path reads */
#define KYRO_PROBE_KEYS (8 * KYRO_PROBE_LINES)

/*
 * The short-window path of every probe.  When the window keys[LO..HI)
 * lies within the KYRO_PROBE_LINES lines from the one holding keys[LO],
 * and those lines lie inside keys[0..N), returns 1, sets *FIRST to the
 * index of the first key of those lines and *WIN to the mask of the
 * window's keys among the KYRO_PROBE_KEYS from there (bit j for
 * keys[*FIRST + j]).  The AVX-512 probe then compares all of those keys
 * and counts only the window's; the others search them
 * (kyro__probe_descend()) and clamp the answer to the window.  Otherwise
 * returns 0: take the general path.
 *
 * Why a fixed count of lines: a loop whose trip count follows the window
 * ends with a mispredicted branch about one lookup in three, and that
 * flush throws away the lookups the core had started behind this one.
 * With a fixed count nothing in the probe branches on the window, so one
 * lookup's cache misses overlap the next ones' (docs/RMI.md, "The
 * probe's fixed lines"), although the lines are up to two more than the
 * window needs.
 * The conditions are combined without short-circuits: one branch, taken
 * by about one lookup in 60.
 */
static inline int kyro__probe_lines(const uint64_t *keys, uint64_t n,
				    uint64_t lo, uint64_t hi, uint64_t *first,
				    uint32_t *win)
{
	/* Keys before keys[LO] in its line: the array is 8-byte aligned. */
	const uint64_t skip = (uint64_t)(((uintptr_t)(keys + lo) & 63u) / 8u);
	const uint64_t a = lo - skip;
	/* a <= n - KEYS also fails when LO < SKIP (A wrapped around). */
	if (!((hi - a <= KYRO_PROBE_KEYS) & (n >= KYRO_PROBE_KEYS) &
	      (a <= n - KYRO_PROBE_KEYS)))
		return 0;
	*first = a;
	*win = (uint32_t)((((uint64_t)1 << (hi - lo)) - 1) << skip);
	return 1;
}

/*
 * The short path of the AVX2, SSE4.2 and scalar probes (and of a lookup
 * at those levels, which runs it inline: answer() in rmi.c), after
 * kyro__probe_lines() returned 1 with *FIRST = A: prefetch the four lines,
 * then halve keys[A..A+KYRO_PROBE_KEYS) without branches (each step adds
 * its half masked by the comparison) down to the W keys from the returned
 * base, W a power of two; the lower bound of KEY among the 32 keys is
 * the base plus the count of those W keys below KEY.
 *
 * Why a search and not a compare of all 32 keys, as the AVX-512 probe
 * and the AVX-512 fast path (count_below_wide() in rmi.c) do: four compares of
 * eight keys cost AVX-512 a dozen instructions, but eight of four keys cost
 * AVX2 about 50 (each a pair of micro-ops on cores with 128-bit vector units),
 * and the fewer a lookup holds, the more lookups' cache misses the core
 * overlaps.  The halving steps read lines that the prefetches have already
 * requested, so they wait for one memory latency, not one per step
 * (docs/RMI.md, "The probe on cores without AVX-512").
 */
static inline uint64_t kyro__probe_descend(const uint64_t *keys, uint64_t a,
					   uint64_t key, unsigned w)
{
	const char *p = (const char *)(const void *)(keys + a);
	for (int i = 0; i < KYRO_PROBE_LINES; i++)
		__builtin_prefetch(p + 64 * i);
	uint64_t base = a;
	/* Unrolled: W is a constant, and a loop branch is a uop per step.
	 * The step is arithmetic: written as a choice, the first one
	 * compiles to a branch on the key, mispredicted one time in two. */
#pragma GCC unroll 8
	for (unsigned half = KYRO_PROBE_KEYS / 2; half >= w; half /= 2)
		base += half & -(uint64_t)(keys[base + half - 1] < key);
	return base;
}

#if defined(__x86_64__)
#include <immintrin.h>
/*
 * Bit j set when P[j] < KEY, for the 32 keys P[0..32): four AVX-512
 * compares of a line each, the masks paired in mask registers (the fewer
 * instructions a lookup holds in the reorder buffer, the more lookups'
 * misses overlap).  Used by the AVX-512 probe and by the AVX-512 fast
 * path of rmi.c, which compiles it with a target attribute; callable only
 * where the CPU has AVX-512F.
 */
static inline __attribute__((target("avx512f"))) uint32_t
kyro__lt_mask32_avx512(const uint64_t *p, uint64_t key)
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
#endif

/* The lower bound within keys[LO..HI) of a key whose lower bound within
 * the short path's 32 keys is ANS: the same, clamped to [LO, HI]. */
static inline uint64_t kyro__probe_clamp(uint64_t ans, uint64_t lo, uint64_t hi)
{
	ans = ans < lo ? lo : ans;
	return ans > hi ? hi : ans;
}

/* 1 when this CPU (and OS) can run LEVEL, else 0. */
int kyro__simd_supported(int level);

/* The level in use: the best supported one, or KYRODB_SIMD's.  Decided on
 * the first call (thread-safe), fixed for the life of the process. */
int kyro__simd_selected(void);

/* How KYRODB_SIMD was treated: a KYRO_SIMD_ENV_* value.  The caller (a
 * tool) may warn about KYRO_SIMD_ENV_UNKNOWN / _UNSUPPORTED. */
int kyro__simd_env_status(void);

/* The probe for LEVEL, or NULL when LEVEL is unknown or unsupported. */
kyro__simd_probe_fn kyro__simd_probe_for(int level);

/* "scalar", "sse4", "avx2", "avx512"; "?" for anything else.  Static. */
const char *kyro__simd_name(int level);

/* The level named NAME (as KYRODB_SIMD spells it), or -1. */
int kyro__simd_level(const char *name);

#endif /* KYRO_SIMD_H */
