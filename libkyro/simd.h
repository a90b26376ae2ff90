/*
 * simd.h - private header: the learned index's lookups and window probe,
 * in one variant per instruction set, and the choice between them.
 *
 * Each level has one table of functions (struct kyro__simd_ops), defined
 * in its own simd_*.c, which is compiled for that instruction set (see
 * the Makefile): the probe, and the whole single and batched lookups
 * built around it (rmi_lookup.h), so that a lookup costs one indirect
 * call and never a second one per probe.  The index picks the table of
 * the best level this CPU supports when it is loaded; a caller may set
 * another (kyro__rmi_set_simd()).  The library reads no environment.
 *
 * Every variant answers the same questions and must give the same
 * answers bit for bit: the tests compare them.
 *
 * NEON: out of scope for x86 builds.  An ARM build would add
 * simd_neon.c and a KYRO_SIMD_NEON level; until then ARM runs scalar.
 */
#ifndef KYRO_SIMD_H
#define KYRO_SIMD_H

#include <stddef.h>
#include <stdint.h>

struct kyro__rmi;
struct kyro__rmi_counters;

/* Levels, ordered: a higher level is preferred when supported. */
#define KYRO_SIMD_SCALAR 0
#define KYRO_SIMD_SSE4 1
#define KYRO_SIMD_AVX2 2
#define KYRO_SIMD_AVX512 3
#define KYRO_SIMD_NLEVELS 4

/*
 * A probe: the lower bound of KEY in the sorted keys[LO..HI), that is
 * LO + the number of keys[j] < KEY for LO <= j < HI.  LO <= HI <= N.
 * Besides keys[LO..HI) it may read other keys of keys[0..N) that share
 * the window's 64-byte lines (see kyro__probe_lines()), never a key past
 * N or before 0.
 */
typedef uint64_t (*kyro__simd_probe_fn)(const uint64_t *keys, uint64_t n,
					uint64_t lo, uint64_t hi, uint64_t key);

/* One level's functions.  LOWER_BOUND and LOWER_BOUND_BATCH are
 * kyro__rmi_lower_bound() and kyro__rmi_lower_bound_batch() of rmi.h. */
struct kyro__simd_ops {
	kyro__simd_probe_fn probe;
	uint64_t (*lower_bound)(const struct kyro__rmi *r, uint64_t key,
				struct kyro__rmi_counters *c);
	void (*lower_bound_batch)(const struct kyro__rmi *r, const uint64_t *q,
				  uint64_t *out, size_t count,
				  struct kyro__rmi_counters *c);
};

extern const struct kyro__simd_ops kyro__simd_ops_scalar;
extern const struct kyro__simd_ops kyro__simd_ops_sse4;
extern const struct kyro__simd_ops kyro__simd_ops_avx2;
extern const struct kyro__simd_ops kyro__simd_ops_avx512;

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
 * The short path of the AVX2, SSE4.2 and scalar probes, of the lookup's
 * fast path at those levels (count32() in their simd_*.c), and of the
 * batched lookup at every level (answer() in rmi_lookup.h), after
 * kyro__probe_lines() returned 1 with *FIRST = A: prefetch the four lines,
 * then halve keys[A..A+KYRO_PROBE_KEYS) without branches (each step adds
 * its half masked by the comparison) down to the W keys from the returned
 * base, W a power of two; the lower bound of KEY among the 32 keys is
 * the base plus the count of those W keys below KEY.
 *
 * Why a search and not a compare of all 32 keys, as the AVX-512 probe
 * and the AVX-512 lookup's fast path (simd_avx512.c) do: four compares
 * of eight keys cost AVX-512 a dozen instructions, but eight of four keys
 * cost AVX2 about 50 (each a pair of micro-ops on cores with 128-bit
 * vector units), and the fewer a lookup holds, the more lookups' cache
 * misses the core overlaps.  The halving steps read lines that the
 * prefetches have already requested, so they wait for one memory
 * latency, not one per step (docs/RMI.md, "The probe on cores without
 * AVX-512").
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

/* The lower bound within keys[LO..HI) of a key whose lower bound within
 * the short path's 32 keys is ANS: the same, clamped to [LO, HI]. */
static inline uint64_t kyro__probe_clamp(uint64_t ans, uint64_t lo, uint64_t hi)
{
	ans = ans < lo ? lo : ans;
	return ans > hi ? hi : ans;
}

/* 1 when this CPU (and OS) can run LEVEL, else 0. */
int kyro__simd_supported(int level);

/* The best level this CPU supports: the one an index starts with.
 * Detected on the first call (thread-safe), fixed for the process. */
int kyro__simd_selected(void);

/* The table of LEVEL, or NULL when LEVEL is unknown or unsupported. */
const struct kyro__simd_ops *kyro__simd_ops_for(int level);

/* "scalar", "sse4", "avx2", "avx512"; "?" for anything else.  Static. */
const char *kyro__simd_name(int level);

/* The level named NAME (as kyro__simd_name() spells it), or -1. */
int kyro__simd_level(const char *name);

#endif /* KYRO_SIMD_H */
