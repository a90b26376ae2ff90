/*
 * rmi_model.h - what the two halves of the learned index share: the
 * image's layout constants, the model a lookup decodes from it, the
 * routing and prediction both the lookup (rmi.c, simd_*.c) and the build
 * (rmi_build.c) compute, and the loaded handle.  The byte layout itself is
 * stated at the top of rmi.c.  Private to rmi.c, rmi_build.c and the
 * lookups of simd_*.c (through rmi_lookup.h).
 */
#ifndef KYRO_RMI_MODEL_H
#define KYRO_RMI_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "rmi.h"
#include "simd.h"

#define HDR_SIZE 64
#define ENTRY_SIZE 16
#define FLAG_LOG 1u	       /* header flag: a logarithmic router */
#define LOG_OCTAVE_BITS 6      /* a log router's 2^6 octaves of a u64 */
#define LEAF_SIZE 32
#define SUM_SIZE 8
#define EPS_WHOLE 0xffffu
/* Format 4: eps_lo of a routed leaf split into sub-leaves (see rmi.c). */
#define EPS_SPLIT 0xfffeu
/* What no 16-bit field holds: the split mark of formats 2 and 3, whose
 * eps_lo may be 0xfffe as a plain error bound. */
#define EPS_NO_SPLIT 0x10000u
#define SAMPLE_KEYS 1024
#define RMI_MAGIC "KYRORMI" /* with its NUL, the 8 bytes at offset 0 */

__extension__ typedef unsigned __int128 u128;

/* Little-endian fields: internal.h's get_le* and put_le* helpers. */

/* ---- the shape shared by build, load and lookup --------------------- */

static inline uint64_t router_bytes(unsigned bits)
{
	return (ENTRY_SIZE * (((uint64_t)1 << bits) + 1) + 63) & ~(uint64_t)63;
}

static inline uint64_t image_bytes(unsigned bits, uint64_t leaves)
{
	return HDR_SIZE + router_bytes(bits) + LEAF_SIZE * leaves + SUM_SIZE;
}

static inline unsigned range_bits(uint64_t first, uint64_t last)
{
	return last > first ? 64u - (unsigned)__builtin_clzll(last - first)
			    : 0u;
}

static inline unsigned shift_for(uint64_t first, uint64_t last, unsigned bits)
{
	const unsigned t = range_bits(first, last);
	return t > bits ? t - bits : 0;
}

/* The router's shift byte: S for a linear router, M = B - 6 for a
 * logarithmic one. */
static inline unsigned shift_of(int logr, uint64_t first, uint64_t last,
				unsigned bits)
{
	return logr ? bits - LOG_OCTAVE_BITS : shift_for(first, last, bits);
}

/* Everything a lookup reads, decoded once. */
struct model {
	const unsigned char *router;
	const unsigned char *leaves;
	uint64_t first, last;
	unsigned shift;
	int logr;
	unsigned split; /* eps_lo of a split leaf: EPS_SPLIT, or EPS_NO_SPLIT */
};

static inline void model_shape(struct model *m, uint64_t first,
			       uint64_t last, int logr, unsigned shift)
{
	m->first = first;
	m->last = last;
	m->shift = shift;
	m->logr = logr;
	m->split = EPS_SPLIT;
}

/*
 * The bucket of a key, first <= key <= last.  Linear: d >> S.
 * Logarithmic: the octave of d and the M bits after its leading one,
 * (e << M) | mantissa, which is d's position on a log scale and monotone
 * in d.  The rotation gives the mantissa for e >= M (a right shift) and
 * e < M (a left shift; the bits it wraps around are zero) alike.
 */
static inline uint64_t bucket_of(const struct model *m, uint64_t key)
{
	const uint64_t d = key - m->first;
	if (!m->logr)
		return d >> m->shift;
	const unsigned e = 63u - (unsigned)__builtin_clzll(d | 1);
	const unsigned r = (e - m->shift) & 63u;
	const uint64_t rot = (d >> r) | (d << ((64u - r) & 63u));
	return ((uint64_t)e << m->shift) |
	       (rot & (((uint64_t)1 << m->shift) - 1));
}

/*
 * max(0, min(x - ref, 2^63 - 1)) as a double: monotone in x, and
 * converted as a signed integer.  The unsigned conversion costs a branch
 * on the top bit, and a lookup must not branch on what it loaded: a
 * mispredict there flushes the lookups started behind it.  Only a leaf or
 * bucket wider than 2^63 reaches the clamp.
 */
static inline double dist(uint64_t x, uint64_t ref)
{
	uint64_t d = (x - ref) & -(uint64_t)(x > ref);
	d = d < ((uint64_t)1 << 63) ? d : ((uint64_t)1 << 63) - 1;
	return (double)(int64_t)d;
}

/* The router entry of a key, first <= key <= last. */
static inline const unsigned char *entry_of(const struct model *m,
					   uint64_t key)
{
	return m->router + ENTRY_SIZE * bucket_of(m, key);
}

/* The leaf of KEY among a bucket's SPAN leaves, counted from the bucket's
 * first, under the bucket's map LO, SCALE. */
static inline uint64_t bucket_leaf(uint64_t lo, float scale, uint64_t span,
				   uint64_t key)
{
	const int64_t lim = (int64_t)(span - (span != 0));
	const double f = (double)scale * dist(key, lo);
	/* The comparison also sends a NaN to LIM; below it, f is in
	 * [0, 2^32) and the conversion exact. */
	return (uint64_t)(f < (double)lim ? (int64_t)f : lim);
}

/* The leaf of KEY, whose router entry is E. */
static inline uint64_t route_at(const unsigned char *e, uint64_t key)
{
	const uint64_t c = get_le32(e + 8);
	return c + bucket_leaf(get_le64(e), get_lef32(e + 12),
			       get_le32(e + ENTRY_SIZE + 8) - c, key);
}

/* first <= key <= last. */
static inline uint64_t route(const struct model *m, uint64_t key)
{
	return route_at(entry_of(m, key), key);
}

/*
 * The sub-leaf of KEY under the split leaf LEAF: the last of its sub-leaves
 * whose reference key is at most KEY, or the first.  Sub-leaves tile the
 * split leaf's run in order, and their reference keys are their runs'
 * first keys, so this is monotone in KEY and a key's sub-leaf holds it.
 * A branchless binary search over the records (a conditional move per
 * step): a split leaf holds at most 65535 of them.
 */
static inline const unsigned char *sub_leaf(const struct model *m,
					    const unsigned char *leaf,
					    uint64_t key)
{
	const unsigned char *base = m->leaves + LEAF_SIZE * get_le64(leaf + 8);
	uint64_t len = get_le16(leaf + 30);
	while (len > 1) {
		const uint64_t half = len / 2;
		const unsigned char *mid = base + LEAF_SIZE * half;
		base = get_le64(mid) <= key ? mid : base;
		len -= half;
	}
	return base;
}

/* The leaf record whose line predicts KEY, first <= key <= last: the
 * routed leaf, or the sub-leaf of a split one. */
static inline const unsigned char *leaf_of(const struct model *m,
					   uint64_t key)
{
	const unsigned char *leaf = m->leaves + LEAF_SIZE * route(m, key);
	if (__builtin_expect(get_le16(leaf + 28) == m->split, 0))
		return sub_leaf(m, leaf, key);
	return leaf;
}

/* The prediction, as an offset into the leaf, in [0, count]. */
static inline uint64_t predict_off(uint64_t ref, double slope, uint64_t count,
				   uint64_t key)
{
	const double f = slope * dist(key, ref);
	/* f < count <= 2^32 - 1 makes the signed conversion exact. */
	return f < (double)(int64_t)count ? (uint64_t)(int64_t)f : count;
}

struct window {
	uint64_t lo, hi;
	int whole; /* an epsilon was saturated */
};

/* The prediction for KEY in LEAF, as an offset into the leaf. */
static inline uint64_t leaf_off(const unsigned char *leaf, uint64_t key)
{
	return predict_off(get_le64(leaf), get_lef64(leaf + 8),
			   get_le32(leaf + 24), key);
}

/* The window of LEAF around the prediction OFF. */
static inline void window_at(const unsigned char *leaf, uint64_t off,
			     struct window *w)
{
	const uint64_t start = get_le64(leaf + 16);
	const uint64_t count = get_le32(leaf + 24);
	const unsigned el = get_le16(leaf + 28);
	const unsigned eh = get_le16(leaf + 30);
	uint64_t a = off > el ? off - el : 0;
	uint64_t b = off + eh + 1 < count ? off + eh + 1 : count;
	/* Selected, not branched on: the rare whole leaf needs no path of
	 * its own, its window is the leaf's run, probed like any other. */
	a = el == EPS_WHOLE ? 0 : a;
	b = eh == EPS_WHOLE ? count : b;
	w->whole = (el == EPS_WHOLE) | (eh == EPS_WHOLE);
	w->lo = start + a;
	w->hi = start + b;
}

static inline void leaf_window(const unsigned char *leaf, uint64_t key,
			       struct window *w)
{
	window_at(leaf, leaf_off(leaf, key), w);
}

/* first <= key <= last. */
static inline void model_window(const struct model *m, uint64_t key,
				struct window *w)
{
	leaf_window(leaf_of(m, key), key, w);
}

/* ---- the loaded index ----------------------------------------------- */

struct kyro__rmi {
	struct model m;
	const uint64_t *keys;
	uint64_t n;
	/* The lookups and the probe of the level in use (simd.h): chosen
	 * when the index is loaded or its level set, never per lookup. */
	struct kyro__simd_ops ops;
	int simd;
	int descend; /* n >= KYRO_PROBE_KEYS: lookups take the fast path */
	int windows; /* counted lookups also count the window histogram */
	uint64_t leaves, bits, bytes, gen;
};

/*
 * One more in a counter of the caller's struct kyro__rmi_counters.  Only
 * the thread using the handle writes it, another may read it (kyro_stats()
 * of kyro.h): a relaxed store, which compiles to a plain add, not a locked
 * one (a lock prefix is a full fence on x86, and would stop the next
 * lookup's loads from starting early).
 */
static inline void bump(uint64_t *p)
{
	__atomic_store_n(p, *p + 1, __ATOMIC_RELAXED);
}

/*
 * The window histogram's bucket of a window of W keys: its bit length, 0
 * for 0, b for 2^(b-1) <= W < 2^b.  A window lies in one leaf, whose key
 * count is 32 bits, so b <= 32 < KYRO_RMI_HIST.  Computed as the bit
 * length of 2W + 1, less one, so that no branch handles W = 0: every
 * instruction a lookup saves lets the core keep more lookups' cache
 * misses in flight.
 */
static inline unsigned hist_bucket(uint64_t w)
{
	return 63u - (unsigned)__builtin_clzll(2 * w + 1);
}

/* Write a one-line message to ERRBUF (nothing when ERRLEN is 0). */
void kyro__rmi_set_err(char *errbuf, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The header's key sample hash of keys[0..N) (see rmi.c). */
uint64_t kyro__rmi_key_sample_hash(const uint64_t *keys, uint64_t n);

/* A mispredict: the probed run did not bracket KEY.  Counted in C (when
 * not NULL) and answered by a binary search over the whole array. */
uint64_t kyro__rmi_mispredict(const struct kyro__rmi *r, uint64_t key,
			      struct kyro__rmi_counters *c);

#endif /* KYRO_RMI_MODEL_H */
