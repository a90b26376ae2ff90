/*
 * rmi.c - the learned index: a two-stage recursive model index over the
 * sorted u64 key array of one snapshot.
 *
 * THE INDEX FILE (one per snapshot generation; all integers little-endian,
 * fixed width; offsets in bytes).  It holds no keys: the snapshot's own
 * array is the one searched.
 *
 *   Header, 64 bytes
 *     0   8  magic "KYRORMI\0" (4b 59 52 4f 52 4d 49 00)
 *     8   4  format version, 2 (version 1 routed by interpolating over
 *            the bucket's whole width; it is refused, and rebuilt)
 *    12   4  flags: bit 0 set for a logarithmic router; any other set
 *            bit is refused
 *    16   8  key count n of the snapshot
 *    24   8  snapshot generation the index was built for
 *    32   8  first key, keys[0] (0 when n = 0)
 *    40   8  last key, keys[n-1] (0 when n = 0)
 *    48   8  key sample hash: XXH3_64bits over the 8-byte little-endian
 *            encodings of keys[j*n/m] for j = 0..m-1, m = min(n, 1024)
 *    56   4  leaf count L, >= 1
 *    60   1  router bits B, 8..24
 *    61   1  shift S: max(0, bitlen(last - first) - B) for a linear
 *            router, B - 6 for a logarithmic one
 *    62   2  reserved, 0
 *   Router, at 64: 2^B + 1 entries of 16 bytes, then zero bytes up to the
 *   next multiple of 64.  Bucket b holds the keys x whose d = x - first
 *   has bucket(d) = b, where for a linear router bucket(d) = d >> S, and
 *   for a logarithmic one bucket(d) = (e << S) | (the S bits of d after
 *   its leading one, zero-filled), e = bitlen(d | 1) - 1: 2^S buckets to
 *   each octave of d, for keys that spread over orders of magnitude.
 *   Its entry is
 *     0   8  lo: where the bucket's leaves begin (any value when it has
 *            no key); the builder writes the bucket's smallest key, or,
 *            when wide gaps split the bucket's keys, one leaf's width
 *            before the run of them it spreads the leaves over
 *     8   4  c: floor(lb(first + (b << S)) * L / n), where lb(x) is the
 *            number of keys below x (n for a bucket past the last key,
 *            so the final entry's c is L).  Non-decreasing; entry 0's is 0
 *    12   4  scale, an IEEE-754 binary32, finite and >= 0: the bucket's
 *            leaves per unit of key; the builder writes (c' - c) / (hi -
 *            lo + 1) with c' the next entry's c and hi the bucket's
 *            largest key, or for a run of its keys the run's own (see
 *            choose_run()); 0 when the bucket has no key.  The final
 *            entry's lo and scale are 0.  Any lo and scale give exact
 *            answers: they only move keys between the bucket's leaves.
 *   Leaves, at R = 64 + roundup64(16 * (2^B + 1)): L records of 32 bytes
 *     0   8  reference key: the smallest key routed to the leaf (0 if none)
 *     8   8  slope, an IEEE-754 binary64, finite and >= 0
 *    16   8  start: position of the leaf's first key
 *    24   4  count: keys routed to the leaf; start + count is the next
 *            leaf's start, and the last leaf ends at n
 *    28   2  eps_lo: the largest (prediction - position) over the leaf's
 *            keys; 0xffff means "unbounded: search from the leaf's start"
 *    30   2  eps_hi: the largest (position - prediction); 0xffff likewise
 *   Checksum, at R + 32 L: u64 XXH3_64bits of every byte before it.
 *   The file is exactly R + 32 L + 8 bytes.
 *
 * A LOOKUP of key x with first <= x <= last:
 *   route:   b = bucket(x - first); read lo, c, scale of entry b and c' of
 *            entry b + 1; t = trunc(scale * dist(x, lo)) in double
 *            precision, where dist(x, y) = x - y clamped to [0, 2^63 - 1]; leaf = c + min(t, c' - c - 1),
 *            or c when c' = c.  The key's position in the key space picks
 *            the bucket (never its raw top bits, which send a dense key
 *            set to one bucket), and inside the bucket the leaves are
 *            spread over the span of the bucket's own keys, not over the
 *            bucket's width: a cluster of keys far narrower than a bucket
 *            still gets every leaf its key count pays for (and where wide
 *            gaps split a bucket's keys, one run of them gets the leaves,
 *            the keys before and after it one end leaf each).  Monotone:
 *            within a bucket each step is, and a bucket's leaves end
 *            where the next bucket's begin.
 *   predict: off = min(count, trunc(slope * dist(x, ref))): double
 *            precision, relative to the leaf's reference key, so large
 *            keys lose nothing.
 *   window:  [start + max(0, off - eps_lo), start + min(count,
 *            off + eps_hi + 1)]; the lower bound of x is inside it (for
 *            a key present, strictly before its end), because routing and
 *            prediction are monotone in x and the epsilons were measured
 *            with this very function over every key of the leaf.
 *   probe:   count the keys below x in the window widened by one key on
 *            each side where there is one (simd.h).
 *   confirm: an answer strictly inside the widened run is bracketed by
 *            keys the probe compared, so it is exact; one on its edge
 *            means the keys are not the ones the index was built over,
 *            and a binary search answers instead (a mispredict).
 *
 * LOAD REFUSES the image, with a message, when: it is shorter than a
 * header and checksum; the magic differs; the version is not 2
 * (KYRO_EVERSION); a flag or reserved byte is set; B or L is out of range;
 * its size is not exactly R + 32 L + 8 (truncated or trailing bytes); the
 * checksum differs; the generation, key count, first or last key, or key
 * sample hash differs from the snapshot it is loaded against (a stale
 * index); S is not the value derived from the keys; the router's c is
 * not non-decreasing from 0 to L with every bucket up to the last key's
 * below L; a scale is negative or not finite; the leaves' starts and
 * counts do not tile [0, n); or a slope is negative or not finite.  After these checks no lookup can read outside
 * the router, the leaves or keys[0..n), whatever the image held.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "internal.h"
#include "kyro.h"
#include "rmi.h"
#include "simd.h"

#include "banned.h"

/* The AVX-512 fast path (count_below_wide()) exists on x86-64 only. */
#if defined(__x86_64__)
#define HAVE_WIDE 1
#else
#define HAVE_WIDE 0
#endif

#define HDR_SIZE 64
#define ENTRY_SIZE 16
#define FLAG_LOG 1u	       /* header flag: a logarithmic router */
#define LOG_OCTAVE_BITS 6      /* a log router's 2^6 octaves of a u64 */
#define LEAF_SIZE 32
#define SUM_SIZE 8
#define EPS_WHOLE 0xffffu
#define SAMPLE_KEYS 1024
#define MIN_BUDGET 4096
/* Auto-tune: keys sampled per candidate, and the fewest keys a candidate
 * may examine before its estimate is taken from the samples seen so far.
 * Above that floor all candidates together examine at most n / 4 keys, so
 * tuning costs a fraction of the build at any n, with huge leaves or
 * many candidates. */
#define TUNE_SAMPLES 1024
#define TUNE_MIN_WORK ((uint64_t)1 << 14)

static const unsigned char rmi_magic[8] = { 'K', 'Y', 'R', 'O',
					    'R', 'M', 'I', '\0' };

__extension__ typedef unsigned __int128 u128;

/* Little-endian fields: internal.h's get_le* and put_le* helpers. */

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
	if (errbuf == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

/* ---- the shape shared by build, load and lookup --------------------- */

static uint64_t router_bytes(unsigned bits)
{
	return (ENTRY_SIZE * (((uint64_t)1 << bits) + 1) + 63) & ~(uint64_t)63;
}

static uint64_t image_bytes(unsigned bits, uint64_t leaves)
{
	return HDR_SIZE + router_bytes(bits) + LEAF_SIZE * leaves + SUM_SIZE;
}

static unsigned range_bits(uint64_t first, uint64_t last)
{
	return last > first ? 64u - (unsigned)__builtin_clzll(last - first)
			    : 0u;
}

static unsigned shift_for(uint64_t first, uint64_t last, unsigned bits)
{
	const unsigned t = range_bits(first, last);
	return t > bits ? t - bits : 0;
}

/* The router's shift byte: S for a linear router, M = B - 6 for a
 * logarithmic one. */
static unsigned shift_of(int logr, uint64_t first, uint64_t last,
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
};

static void model_shape(struct model *m, uint64_t first, uint64_t last,
			int logr, unsigned shift)
{
	m->first = first;
	m->last = last;
	m->shift = shift;
	m->logr = logr;
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
	leaf_window(m->leaves + LEAF_SIZE * route(m, key), key, w);
}

/* ---- the loaded index ----------------------------------------------- */

/*
 * Counters are sharded: each thread, on its first counted lookup, takes the
 * next of CTR_SLOTS slots (one process-wide atomic, the only shared write)
 * and then updates its own slot with a relaxed load and store.  No locked
 * instruction runs per lookup: a lock prefix is a full fence on x86 and
 * would stop the next lookup's loads from starting early, which costs
 * more than the lookup's own work.  With at most CTR_SLOTS threads the
 * counts are exact; beyond that two threads may share a slot and lose an
 * occasional increment.  Readers sum the slots.
 */
#define CTR_SLOTS 16

struct ctr_slot {
	_Atomic uint64_t hist[KYRO_RMI_HIST];
	_Atomic uint64_t mispredicts;
	_Atomic uint64_t fallbacks;
	char pad[64 - (KYRO_RMI_HIST + 2) * 8 % 64];
};

struct counters {
	struct ctr_slot slot[CTR_SLOTS];
};

static _Atomic unsigned next_slot;
static _Thread_local unsigned my_slot = UINT_MAX;

static inline struct ctr_slot *slot_of(struct counters *c)
{
	if (my_slot == UINT_MAX)
		my_slot = atomic_fetch_add_explicit(&next_slot, 1,
						    memory_order_relaxed) %
			  CTR_SLOTS;
	return &c->slot[my_slot];
}

static inline void bump(_Atomic uint64_t *p)
{
	atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) +
					 1,
			      memory_order_relaxed);
}

struct kyro__rmi {
	struct model m;
	const uint64_t *keys;
	uint64_t n;
	kyro__simd_probe_fn probe;
	int simd;
	int descend; /* lookups take the fast path (see lower_bound()) */
	int windows; /* counted lookups also count the window histogram */
	int wide;    /* the fast path compares with AVX-512 (lower_bound()) */
	uint64_t leaves, bits, bytes, gen;
	/* Separately allocated and cache-line aligned: the counters are
	 * written on every lookup, the fields above only read. */
	struct counters *ctr;
};

uint64_t kyro__lower_bound_binary(const uint64_t *keys, uint64_t n,
				  uint64_t key)
{
	if (n == 0)
		return 0;
	/* The answer stays in [base, base + len]; the comparison selects the
	 * next base by a conditional move, so no branch depends on the keys
	 * and the loop runs exactly ceil(log2 n) times. */
	uint64_t base = 0;
	uint64_t len = n;
	while (len > 1) {
		const uint64_t half = len / 2;
		base = keys[base + half - 1] < key ? base + half : base;
		len -= half;
	}
	return base + (keys[base] < key);
}

/*
 * The bit length of W: 0 for 0, b for 2^(b-1) <= W < 2^b.  A window lies
 * in one leaf, whose key count is 32 bits, so b <= 32 < KYRO_RMI_HIST.
 * Computed as the bit length of 2W + 1, less one, so that no branch
 * handles W = 0: every instruction a lookup saves lets the core keep
 * more lookups' cache misses in flight.
 */
static inline unsigned hist_bucket(uint64_t w)
{
	return 63u - (unsigned)__builtin_clzll(2 * w + 1);
}

/* A mispredict: the probed run did not bracket the key. */
static __attribute__((noinline)) uint64_t mispredict(const struct kyro__rmi *r,
						     uint64_t key, int counting)
{
	if (counting)
		bump(&slot_of(r->ctr)->mispredicts);
	return kyro__lower_bound_binary(r->keys, r->n, key);
}

static inline int outside(uint64_t ans, uint64_t lo, uint64_t hi, uint64_t n)
{
	return ((ans == lo) & (lo > 0)) | ((ans == hi) & (hi < n));
}

/* A run the short path does not take, through R's own probe. */
static __attribute__((noinline)) uint64_t
probe_general(const struct kyro__rmi *r, uint64_t key, uint64_t lo, uint64_t hi,
	      int counting)
{
	const uint64_t ans = r->probe(r->keys, r->n, lo, hi, key);
	if (__builtin_expect(outside(ans, lo, hi, r->n), 0))
		return mispredict(r, key, counting);
	return ans;
}

/*
 * The lower bound of KEY, probing keys[LO..HI], the window widened by one
 * key on each side where there is one: an answer strictly inside the
 * probed run is then bracketed by keys the probe compared, so it is exact
 * however the index was made.  With the right keys the answer is always
 * inside; one on the edge of the run is a mispredict, answered by a
 * binary search.  The test is arithmetic, not a chain of branches: a
 * branch on the probed keys would stall the next lookup until this one's
 * cache misses resolve.
 *
 * The short path of the scalar, SSE4.2 and AVX2 probes (the branch-free
 * descent of simd.h, down to one key) runs here instead of behind a call,
 * and everything rarer is out of line and reached by a tail call, so the
 * common lookup makes no call.  That took 21 of 186 instructions off an
 * uncounted lookup and 14 of 212 off a counted one (callgrind), and on a
 * core that holds about one lookup in flight each instruction saved lets
 * the next lookup's cache misses start sooner (docs/RMI.md, "The probe
 * on cores without AVX-512").
 * Descending to one key measured as fast as descending to four and
 * comparing them with AVX2, so one inline path serves all three.
 * AVX-512 keeps its own short path, which compares the four lines at
 * once.  A single lookup at the other levels takes the shorter fast path
 * of lower_bound(); this one serves the batches, AVX-512 and arrays of
 * fewer than 32 keys.
 */
static inline __attribute__((always_inline)) uint64_t
answer(const struct kyro__rmi *r, uint64_t key, uint64_t lo, uint64_t hi,
       int counting)
{
	uint64_t a;
	uint32_t win;
	if (__builtin_expect(r->descend, 1) &&
	    __builtin_expect(kyro__probe_lines(r->keys, r->n, lo, hi, &a, &win),
			     1)) {
		const uint64_t b = kyro__probe_descend(r->keys, a, key, 1);
		const uint64_t ans =
			kyro__probe_clamp(b + (r->keys[b] < key), lo, hi);
		if (__builtin_expect(outside(ans, lo, hi, r->n), 0))
			return mispredict(r, key, counting);
		return ans;
	}
	return probe_general(r, key, lo, hi, counting);
}

/*
 * The fast path's answer was on an edge of its 32 keys: the whole window,
 * widened by a key on each side, through the level's probe, confirmed as
 * in answer().  Out of line, so that the common lookup holds none of it.
 */
static __attribute__((noinline)) uint64_t
lookup_slow(const struct kyro__rmi *r, uint64_t key, const unsigned char *leaf,
	    uint64_t off, int counting)
{
	struct window w;
	window_at(leaf, off, &w);
	if (counting && w.whole)
		bump(&slot_of(r->ctr)->fallbacks);
	return probe_general(r, key, w.lo - (w.lo > 0), w.hi + (w.hi < r->n),
			     counting);
}

#if HAVE_WIDE
/*
 * The lower bound of KEY among keys[A..A+32): A plus the number of them
 * below KEY, from four AVX-512 compares of a line each.  The four loads
 * are independent, where the descent's five depend on each other, and
 * the count takes a dozen instructions: 13-18% off a lookup on Zen 5
 * (docs/RMI.md, "The fast path").  Not always_inline: compiled for
 * AVX-512, it is inlined only into lookup_wide() and lookup_wide_nc(),
 * the copies of lower_bound() built for AVX-512; in the others the call
 * sits in a branch that WIDE = 0 removes.
 */
static inline __attribute__((target("avx512f,popcnt"))) uint64_t
count_below_wide(const uint64_t *keys, uint64_t a, uint64_t key)
{
	return a + (uint64_t)__builtin_popcount(
			   kyro__lt_mask32_avx512(keys + a, key));
}
#endif

/*
 * Always inlined: each caller passes COUNTING and WIDE as constants, and the
 * counters must cost the uncounted lookup nothing.  The window histogram
 * is counted only when asked for (kyro__rmi_count_windows()): its update
 * is a store that depends on the leaf's cache miss, and at 100M keys on
 * Zen 5 it cost a quarter of a lookup, where mispredicts and fallbacks,
 * counted only on the rare paths, cost nothing (docs/RMI.md, "What the
 * counters cost").
 *
 * The fast path (every level, n >= 32) computes only where the window
 * starts, searches the 32 keys of the four lines from the one holding the
 * key before it (the last 32 keys when those would run past the end; the
 * descent of simd.h, or with WIDE the compare of all 32 in
 * count_below_wide()), and takes an answer strictly inside those 32: the
 * keys on both sides of it were compared, so it is exact whatever the
 * window said.  Nothing else is needed: not the window's end, not whether the
 * window fits the lines, not the clamp to it.  Those took 9 to 15% of a
 * lookup's time (docs/RMI.md, "The fast path").  An answer on an edge,
 * which the right keys give only where a window does not fit in the 32,
 * goes to lookup_slow().
 */
static inline __attribute__((always_inline)) uint64_t
lower_bound(const struct kyro__rmi *r, uint64_t key, int counting, int wide)
{
	const uint64_t n = r->n;
	const uint64_t *keys = r->keys;
	/* One test for both ends (key - first wraps around below first). */
	if (__builtin_expect((key - r->m.first > r->m.last - r->m.first) |
				     (n == 0),
			     0)) {
		if (counting && r->windows)
			bump(&slot_of(r->ctr)->hist[0]);
		return n == 0 || key < r->m.first ? 0 : n;
	}
	const unsigned char *leaf = r->m.leaves + LEAF_SIZE * route(&r->m, key);
	const uint64_t off = leaf_off(leaf, key);
	if (__builtin_expect(r->descend, 1)) {
		/* window_at()'s start, without its end or the select for a
		 * saturated epsilon: only where to search matters here, and
		 * any start gives an exact answer or an edge (then the whole
		 * window, through window_at(), in lookup_slow()). */
		const uint64_t el = get_le16(leaf + 28);
		uint64_t lo = get_le64(leaf + 16) + (off > el ? off - el : 0);
		lo -= lo > 0;
		/* Back to the start of keys[lo]'s line, but not before the
		 * array (whose first key may sit inside a line), and not so
		 * far on that the 32 keys run past its end. */
		const uint64_t skip = (uint64_t)(((uintptr_t)(keys + lo) & 63u) /
						 8u);
		uint64_t a = lo - skip;
		a = a > lo ? 0 : a;
		a = a < n - KYRO_PROBE_KEYS ? a : n - KYRO_PROBE_KEYS;
		/* Counted before the probe: the update's address is known
		 * now, so the store does not wait behind the probe's cache
		 * misses.  After everything read above, which the store
		 * could alias as far as the compiler knows. */
		if (counting && r->windows) {
			struct window w;
			window_at(leaf, off, &w);
			bump(&slot_of(r->ctr)->hist[hist_bucket(w.hi - w.lo)]);
		}
		uint64_t ans;
#if HAVE_WIDE
		if (wide)
			ans = count_below_wide(keys, a, key);
		else
#endif
		{
			const uint64_t b = kyro__probe_descend(keys, a, key, 1);
			ans = b + (keys[b] < key);
		}
		/* ans in [a + 1, a + 31], one compare: a wraps below. */
		if (__builtin_expect(ans - a - 1 < KYRO_PROBE_KEYS - 1, 1))
			return ans;
		return lookup_slow(r, key, leaf, off, counting);
	}
	struct window w;
	window_at(leaf, off, &w);
	if (counting) {
		struct ctr_slot *c = slot_of(r->ctr);
		if (r->windows)
			bump(&c->hist[hist_bucket(w.hi - w.lo)]);
		if (__builtin_expect(w.whole, 0))
			bump(&c->fallbacks);
	}
	return answer(r, key, w.lo - (w.lo > 0), w.hi + (w.hi < n), counting);
}

/*
 * Groups of BATCH, in stages: the router entry of every key of the group
 * is prefetched, then every key is routed and its leaf record prefetched,
 * then every window is computed and its lines prefetched, then the
 * windows are probed in order.  Each stage's cache
 * misses are in flight together, so a group costs about one memory
 * latency per stage instead of one per key and stage; a stage that did
 * the next one's work too would hold more instructions per key than the
 * core can keep in flight.  Each answer is computed, confirmed and
 * counted as by kyro__rmi_lower_bound().
 */
#define BATCH 32

void kyro__rmi_lower_bound_batch(const struct kyro__rmi *r, const uint64_t *q,
				 uint64_t *out, size_t count)
{
	const uint64_t n = r->n;
	const uint64_t *keys = r->keys;
	struct ctr_slot *c = slot_of(r->ctr);
	for (size_t base = 0; base < count; base += BATCH) {
		const size_t m = count - base < BATCH ? count - base : BATCH;
		uint64_t lo[BATCH], hi[BATCH];
		const unsigned char *leaf[BATCH];
		for (size_t k = 0; k < m; k++) {
			const uint64_t key = q[base + k];
			if (n == 0 || key < r->m.first || key > r->m.last) {
				/* Answered without the model: no leaf. */
				out[base + k] = n == 0 || key < r->m.first ? 0
									   : n;
				leaf[k] = NULL;
				continue;
			}
			/* The entry and the next one's leaf number, which
			 * may sit in the next line. */
			leaf[k] = entry_of(&r->m, key);
			__builtin_prefetch(leaf[k]);
			__builtin_prefetch(leaf[k] + ENTRY_SIZE + 8);
		}
		for (size_t k = 0; k < m; k++) {
			if (leaf[k] == NULL)
				continue;
			leaf[k] = r->m.leaves +
				  LEAF_SIZE * route_at(leaf[k], q[base + k]);
			__builtin_prefetch(leaf[k]);
		}
		for (size_t k = 0; k < m; k++) {
			if (leaf[k] == NULL) {
				/* lo > hi marks it for the last stage. */
				lo[k] = 1;
				hi[k] = 0;
				if (r->windows)
					bump(&c->hist[0]);
				continue;
			}
			struct window w;
			leaf_window(leaf[k], q[base + k], &w);
			if (r->windows)
				bump(&c->hist[hist_bucket(w.hi - w.lo)]);
			if (__builtin_expect(w.whole, 0))
				bump(&c->fallbacks);
			lo[k] = w.lo - (w.lo > 0);
			hi[k] = w.hi + (w.hi < n);
			/* The lines a short window's probe reads: the one
			 * holding keys[lo] and the next ones. */
			const uint64_t *p = keys + lo[k];
			const uint64_t *e = keys + n;
			for (int l = 0; l < KYRO_PROBE_LINES && p < e;
			     l++, p += 8)
				__builtin_prefetch(p);
		}
		for (size_t k = 0; k < m; k++) {
			if (lo[k] > hi[k])
				continue;
			out[base + k] = answer(r, q[base + k], lo[k], hi[k], 1);
		}
	}
}

#if HAVE_WIDE
/* The lookup built for AVX-512, reached by a tail call when R->wide:
 * one predictable branch, where a copy per level behind a pointer would
 * cost an indirect call. */
static __attribute__((target("avx512f,popcnt"), noinline)) uint64_t
lookup_wide(const struct kyro__rmi *r, uint64_t key)
{
	return lower_bound(r, key, 1, 1);
}

static __attribute__((target("avx512f,popcnt"), noinline)) uint64_t
lookup_wide_nc(const struct kyro__rmi *r, uint64_t key)
{
	return lower_bound(r, key, 0, 1);
}
#endif

uint64_t kyro__rmi_lower_bound(const struct kyro__rmi *r, uint64_t key)
{
#if HAVE_WIDE
	if (r->wide)
		return lookup_wide(r, key);
#endif
	return lower_bound(r, key, 1, 0);
}

uint64_t kyro__rmi_lower_bound_nocount(const struct kyro__rmi *r, uint64_t key)
{
#if HAVE_WIDE
	if (r->wide)
		return lookup_wide_nc(r, key);
#endif
	return lower_bound(r, key, 0, 0);
}

void kyro__rmi_window(const struct kyro__rmi *r, uint64_t key, uint64_t *lo,
		      uint64_t *hi)
{
	if (r->n == 0 || key < r->m.first) {
		*lo = *hi = 0;
		return;
	}
	if (key > r->m.last) {
		*lo = *hi = r->n;
		return;
	}
	struct window w;
	model_window(&r->m, key, &w);
	*lo = w.lo;
	*hi = w.hi;
}

uint64_t kyro__rmi_predict(const struct kyro__rmi *r, uint64_t key)
{
	if (r->n == 0 || key < r->m.first)
		return 0;
	if (key > r->m.last)
		return r->n;
	const unsigned char *leaf = r->m.leaves + LEAF_SIZE * route(&r->m, key);
	return get_le64(leaf + 16) + predict_off(get_le64(leaf), get_lef64(leaf + 8),
					      get_le32(leaf + 24), key);
}

int kyro__rmi_check_all(const struct kyro__rmi *r, uint64_t *bad,
			uint64_t *first_bad)
{
	uint64_t nbad = 0;
	uint64_t first = r->n;
	for (uint64_t i = 0; i < r->n; i++) {
		uint64_t lo, hi;
		kyro__rmi_window(r, r->keys[i], &lo, &hi);
		if (i < lo || i >= hi) {
			if (nbad++ == 0)
				first = i;
		}
	}
	*bad = nbad;
	*first_bad = first;
	return nbad ? KYRO_ECORRUPT : 0;
}

void kyro__rmi_counters(const struct kyro__rmi *r, struct kyro__rmi_counters *c)
{
	memset(c, 0, sizeof(*c));
	for (int i = 0; i < CTR_SLOTS; i++) {
		struct ctr_slot *s = &r->ctr->slot[i];
		for (int b = 0; b < KYRO_RMI_HIST; b++) {
			const uint64_t v = atomic_load_explicit(
				&s->hist[b], memory_order_relaxed);
			c->window_hist[b] += v;
			c->lookups += v;
		}
		c->mispredicts += atomic_load_explicit(&s->mispredicts,
						       memory_order_relaxed);
		c->fallbacks += atomic_load_explicit(&s->fallbacks,
						     memory_order_relaxed);
	}
}

void kyro__rmi_count_windows(struct kyro__rmi *r, int on)
{
	r->windows = on != 0;
}

int kyro__rmi_set_simd(struct kyro__rmi *r, int level)
{
	const kyro__simd_probe_fn f = kyro__simd_probe_for(level);
	if (f == NULL)
		return ENOTSUP;
	r->probe = f;
	r->simd = level;
	r->descend = r->n >= KYRO_PROBE_KEYS;
	r->wide = HAVE_WIDE && level == KYRO_SIMD_AVX512;
	return 0;
}

void kyro__rmi_info(const struct kyro__rmi *r, struct kyro__rmi_info *info)
{
	info->keys = r->n;
	info->leaves = r->leaves;
	info->router_bits = r->bits;
	info->bytes = r->bytes;
	info->generation = r->gen;
	info->simd = r->simd;
}

void kyro__rmi_free(struct kyro__rmi *r)
{
	if (r == NULL)
		return;
	free(r->ctr);
	free(r);
}

static uint64_t key_sample_hash(const uint64_t *keys, uint64_t n)
{
	unsigned char buf[8 * SAMPLE_KEYS];
	const uint64_t m = n < SAMPLE_KEYS ? n : SAMPLE_KEYS;
	for (uint64_t j = 0; j < m; j++)
		put_le64(buf + 8 * j, keys[(uint64_t)((u128)j * n / m)]);
	return XXH3_64bits(buf, (size_t)(8 * m));
}

/* The header-independent rules of the router and leaves (see the top). */
static int check_tables(const struct model *m, unsigned bits, uint64_t leaves,
			uint64_t n, char *errbuf, size_t errlen)
{
	const uint64_t nb = (uint64_t)1 << bits;
	const uint64_t bmax = bucket_of(m, m->last);
	uint64_t prev = 0;
	for (uint64_t b = 0; b <= nb; b++) {
		const unsigned char *e = m->router + ENTRY_SIZE * b;
		const uint64_t c = get_le32(e + 8);
		const float scale = get_lef32(e + 12);
		if (c < prev || c > leaves || (b == 0 && c != 0)) {
			set_err(errbuf, errlen,
				"index router entry %llu (%llu) breaks the order "
				"0 <= ... <= %llu",
				(unsigned long long)b, (unsigned long long)c,
				(unsigned long long)leaves);
			return KYRO_ECORRUPT;
		}
		if (!isfinite(scale) || !(scale >= 0)) {
			set_err(errbuf, errlen,
				"index router entry %llu has a bad scale (%g)",
				(unsigned long long)b, (double)scale);
			return KYRO_ECORRUPT;
		}
		prev = c;
	}
	if (prev != leaves ||
	    get_le32(m->router + ENTRY_SIZE * bmax + 8) >= leaves) {
		set_err(errbuf, errlen,
			"index router does not end at its %llu leaves",
			(unsigned long long)leaves);
		return KYRO_ECORRUPT;
	}
	uint64_t pos = 0;
	for (uint64_t l = 0; l < leaves; l++) {
		const unsigned char *leaf = m->leaves + LEAF_SIZE * l;
		const double slope = get_lef64(leaf + 8);
		if (get_le64(leaf + 16) != pos || !isfinite(slope) ||
		    !(slope >= 0)) {
			set_err(errbuf, errlen,
				"index leaf %llu is malformed (start %llu, "
				"expected %llu)",
				(unsigned long long)l,
				(unsigned long long)get_le64(leaf + 16),
				(unsigned long long)pos);
			return KYRO_ECORRUPT;
		}
		pos += get_le32(leaf + 24);
	}
	if (pos != n) {
		set_err(errbuf, errlen,
			"index leaves cover %llu keys, the snapshot has %llu",
			(unsigned long long)pos, (unsigned long long)n);
		return KYRO_ECORRUPT;
	}
	return 0;
}

int kyro__rmi_load(struct kyro__rmi **rp, const void *image, size_t size,
		   const uint64_t *keys, uint64_t n, uint64_t snap_gen,
		   char *errbuf, size_t errlen)
{
	const unsigned char *img = image;
	struct kyro__rmi *r = NULL;
	int err = KYRO_ECORRUPT;

	*rp = NULL;
	if (n > 0 && keys == NULL) {
		set_err(errbuf, errlen, "no keys to load the index against");
		err = EINVAL;
		goto out;
	}
	if (img == NULL || size < HDR_SIZE + SUM_SIZE) {
		set_err(errbuf, errlen,
			"index truncated: %zu bytes, a header and checksum "
			"need %d",
			img ? size : 0, HDR_SIZE + SUM_SIZE);
		goto out;
	}
	if (memcmp(img, rmi_magic, 8) != 0) {
		set_err(errbuf, errlen, "not a KyroDB index (bad magic)");
		goto out;
	}
	const uint32_t version = get_le32(img + 8);
	if (version != KYRO_RMI_VERSION) {
		set_err(errbuf, errlen,
			"index format version %u, this build reads version %d "
			"(rebuild the index)",
			version, KYRO_RMI_VERSION);
		err = KYRO_EVERSION;
		goto out;
	}
	const uint32_t flags = get_le32(img + 12);
	const unsigned bits = img[60];
	const unsigned shift = img[61];
	const uint64_t leaves = get_le32(img + 56);
	if ((flags & ~FLAG_LOG) != 0 || get_le16(img + 62) != 0) {
		set_err(errbuf, errlen, "index has unknown flags 0x%x", flags);
		goto out;
	}
	if (bits < KYRO_RMI_MIN_BITS || bits > KYRO_RMI_MAX_BITS ||
	    leaves == 0) {
		set_err(errbuf, errlen,
			"index header is malformed (%u router bits, %llu "
			"leaves)",
			bits, (unsigned long long)leaves);
		goto out;
	}
	const uint64_t want = image_bytes(bits, leaves);
	if ((uint64_t)size != want) {
		set_err(errbuf, errlen,
			"index %s: %zu bytes, its header describes %llu",
			(uint64_t)size < want ? "truncated" : "has trailing bytes",
			size, (unsigned long long)want);
		goto out;
	}
	const uint64_t stored = get_le64(img + size - SUM_SIZE);
	const uint64_t computed = XXH3_64bits(img, size - SUM_SIZE);
	if (stored != computed) {
		set_err(errbuf, errlen,
			"index checksum mismatch (stored %016llx, computed "
			"%016llx)",
			(unsigned long long)stored,
			(unsigned long long)computed);
		goto out;
	}

	/* The image is intact; is it this snapshot's? */
	const uint64_t hn = get_le64(img + 16);
	const uint64_t hgen = get_le64(img + 24);
	const uint64_t first = n ? keys[0] : 0;
	const uint64_t last = n ? keys[n - 1] : 0;
	if (hgen != snap_gen) {
		set_err(errbuf, errlen,
			"stale index: built for snapshot generation %llu, the "
			"snapshot is generation %llu",
			(unsigned long long)hgen, (unsigned long long)snap_gen);
		goto out;
	}
	if (hn != n) {
		set_err(errbuf, errlen,
			"stale index: built over %llu keys, the snapshot has "
			"%llu",
			(unsigned long long)hn, (unsigned long long)n);
		goto out;
	}
	if (get_le64(img + 32) != first || get_le64(img + 40) != last) {
		set_err(errbuf, errlen,
			"stale index: its first/last keys %llu/%llu differ "
			"from the snapshot's %llu/%llu",
			(unsigned long long)get_le64(img + 32),
			(unsigned long long)get_le64(img + 40),
			(unsigned long long)first, (unsigned long long)last);
		goto out;
	}
	if (get_le64(img + 48) != key_sample_hash(keys, n)) {
		set_err(errbuf, errlen,
			"stale index: key sample checksum mismatch (built over "
			"other keys)");
		goto out;
	}
	const int logr = (flags & FLAG_LOG) != 0;
	if (shift != shift_of(logr, first, last, bits)) {
		set_err(errbuf, errlen,
			"index shift %u does not match its key range (%u)",
			shift, shift_of(logr, first, last, bits));
		goto out;
	}

	struct model m;
	model_shape(&m, first, last, logr, shift);
	m.router = img + HDR_SIZE;
	m.leaves = m.router + router_bytes(bits);
	err = check_tables(&m, bits, leaves, n, errbuf, errlen);
	if (err)
		goto out;

	err = ENOMEM;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		goto out;
	r->ctr = aligned_alloc(64, sizeof(struct counters));
	if (r->ctr == NULL)
		goto out;
	for (int i = 0; i < CTR_SLOTS; i++) {
		struct ctr_slot *cs = &r->ctr->slot[i];
		for (int b = 0; b < KYRO_RMI_HIST; b++)
			atomic_init(&cs->hist[b], 0);
		atomic_init(&cs->mispredicts, 0);
		atomic_init(&cs->fallbacks, 0);
	}
	r->m = m;
	r->keys = keys;
	r->n = n;
	(void)kyro__rmi_set_simd(r, kyro__simd_selected());
	r->leaves = leaves;
	r->bits = bits;
	r->bytes = size;
	r->gen = snap_gen;
	*rp = r;
	r = NULL;
	err = 0;
out:
	if (err == ENOMEM)
		set_err(errbuf, errlen, "out of memory loading the index");
	kyro__rmi_free(r);
	return err;
}

/* ---- build ---------------------------------------------------------- */

/* Where a key goes under M: its leaf, or with BY_BUCKET its bucket. */
static inline uint64_t place(const struct model *m, int by_bucket,
			     uint64_t key)
{
	return by_bucket ? bucket_of(m, key) : route(m, key);
}

/* The first i >= pos with place(keys[i]) >= t, given that every key
 * before pos is placed below t.  Both places are monotone in the key, so
 * a gallop finds it: the cost grows with the distance moved, not with n. */
static uint64_t gallop_to(const struct model *m, int by_bucket,
			  const uint64_t *keys, uint64_t n, uint64_t pos,
			  uint64_t t)
{
	if (pos >= n || place(m, by_bucket, keys[pos]) >= t)
		return pos;
	uint64_t lo = pos, step = 1; /* place(keys[lo]) < t */
	while (lo + step < n && place(m, by_bucket, keys[lo + step]) < t) {
		lo += step;
		step *= 2;
	}
	uint64_t hi = lo + step < n ? lo + step : n;
	while (hi - lo > 1) {
		const uint64_t mid = lo + (hi - lo) / 2;
		if (place(m, by_bucket, keys[mid]) < t)
			lo = mid;
		else
			hi = mid;
	}
	return hi;
}

/* out[b], b = 0..2^bits: the number of keys in buckets before b. */
static void bucket_bounds(const struct model *m, const uint64_t *keys,
			  uint64_t n, unsigned bits, uint64_t *out)
{
	uint64_t pos = 0;
	for (uint64_t b = 0; b <= (uint64_t)1 << bits; b++) {
		pos = gallop_to(m, 1, keys, n, pos, b);
		out[b] = pos;
	}
}

/* Where bucket B of a router with shift SHIFT starts among the buckets
 * of a finer router of the same kind, K more bits. */
static uint64_t fine_index(int logr, uint64_t b, unsigned shift, unsigned k)
{
	if (!logr)
		return b << k;
	return (b >> shift << (shift + k)) |
	       ((b & (((uint64_t)1 << shift) - 1)) << k);
}

/*
 * The cost of M keys spread evenly over J leaves, for comparing ways to
 * spread them: keys times the window each is probed in, taking a leaf's
 * window to grow as the square root of its keys.  Fewer than one leaf
 * means the keys share one.
 */
static double spread_cost(double m, double j)
{
	return m * sqrt(m / (j > 1 ? j : 1));
}

/* A cut must be this much cheaper than spreading over the gap: the
 * estimate is rough, and a uniform bucket should keep its spread. */
#define CUT_GAIN 0.9
/* Gaps narrower than GAP_MIN of a run's width are not cut, and a run is
 * first checked for a wider one at GAP_PROBES evenly spaced keys. */
#define GAP_MIN 0.25
#define GAP_PROBES 32

/*
 * The run k[*rs..*re) of a bucket's M sorted keys over which its SPAN
 * leaves are spread; the keys before the run go to the bucket's first
 * leaf, those after it to its last.  Spread over all its keys, a bucket
 * that holds clusters far apart (keys in runs, one bucket catching two)
 * puts most of its leaves in the gap and each cluster in one leaf, fat
 * with the whole cluster and slow to search.  So, up to four times: find
 * the run's widest gap and cut there, keeping the side with the cheaper
 * total (spread_cost()), when that is clearly cheaper than not cutting.
 * One pass over the run per step; a bucket without a wide gap costs one.
 */
/*
 * The widest gap between neighbours of k[a..b) (b - a >= 2) is at least
 * GAP_MIN of their range, as far as GAP_PROBES evenly spaced keys show:
 * any gap lies between two neighbouring probes, so all probes close
 * means no wide gap, at the cost of GAP_PROBES loads, not a pass.  Short
 * runs are scanned.  A "yes" may be wrong (keys much denser in one part);
 * callers treat it as the cautious answer.
 */
static int wide_gap(const uint64_t *k, uint64_t a, uint64_t b)
{
	uint64_t wide = 0;
	if (b - a > 2 * GAP_PROBES) {
		uint64_t prev = k[a];
		for (uint64_t j = 1; j <= GAP_PROBES; j++) {
			const uint64_t x = k[a + (b - 1 - a) * j / GAP_PROBES];
			wide = x - prev > wide ? x - prev : wide;
			prev = x;
		}
	} else {
		for (uint64_t i = a + 1; i < b; i++)
			wide = k[i] - k[i - 1] > wide ? k[i] - k[i - 1] : wide;
	}
	return (double)wide >= GAP_MIN * (double)(k[b - 1] - k[a]);
}

/* The cost of keys k[a..b) sharing one end leaf, JOINED to keys already
 * there across a cut.  A leaf holding keys on both sides of a wide gap
 * fits neither: its window is about all its keys. */
static double end_cost(const uint64_t *k, uint64_t a, uint64_t b, int joined)
{
	const double m = (double)(b - a);
	if (b - a < 2)
		return m;
	return joined || wide_gap(k, a, b) ? m * m : spread_cost(m, 1);
}

static void choose_run(const uint64_t *k, uint64_t m, uint64_t span,
		       uint64_t *rs, uint64_t *re)
{
	uint64_t s = 0, e = m;
	double pre = 0, post = 0; /* end_cost() of the cut-off keys */
	for (int step = 0; step < 4 && e - s >= 3 && wide_gap(k, s, e);
	     step++) {
		const uint64_t kr = span - (s > 0) - (e < m);
		const double width = (double)(k[e - 1] - k[s]);
		uint64_t g = s + 1, gw = 0;
		for (uint64_t i = s + 1; i < e; i++) {
			const uint64_t w = k[i] - k[i - 1];
			g = w > gw ? i : g;
			gw = w > gw ? w : gw;
		}
		const double ml = (double)(g - s), mr = (double)(e - g);
		const double keep = pre + post +
			spread_cost(ml, (double)kr * (double)(k[g - 1] - k[s]) /
						width) +
			spread_cost(mr, (double)kr * (double)(k[e - 1] - k[g]) /
						width);
		/* Keep the right side: [0, g) becomes the prefix; or the
		 * left one: [g, m) the suffix.  Each needs a leaf left.  The
		 * keys cut off may hold wide gaps of their own, or join
		 * keys cut off before: then their leaf is costed as
		 * searched whole. */
		const uint64_t kright = span - 1 - (e < m);
		const uint64_t kleft = span - (s > 0) - 1;
		const double npre = kright >= 1 && kright < span
			? end_cost(k, s > 0 ? 0 : s, g, s > 0)
			: HUGE_VAL;
		const double npost = kleft >= 1 && kleft < span
			? end_cost(k, g, e < m ? m : e, e < m)
			: HUGE_VAL;
		const double right = npre + post + spread_cost(mr, (double)kright);
		const double left = pre + npost + spread_cost(ml, (double)kleft);
		const double cut = right < left ? right : left;
		if (!(cut < CUT_GAIN * keep))
			break;
		if (right < left) {
			s = g;
			pre = npre;
		} else {
			e = g;
			post = npost;
		}
	}
	*rs = s;
	*re = e;
}

/*
 * The map of a bucket's M keys K onto its SPAN leaves that spreads the
 * leaves evenly over the run k[s..e), with one leaf for the keys before
 * the run (if any) and one for those after it (if any).  Returns 0 if the
 * map, as stored, does not separate them so (a gap too narrow for the
 * rounding): the caller then spreads over all the keys.
 */
static int spread_map(const uint64_t *k, uint64_t m, uint64_t s, uint64_t e,
		      uint64_t span, uint64_t *lo, float *scale)
{
	const uint64_t pre = s > 0, post = e < m;
	const uint64_t kr = span - pre - post;
	const uint64_t u = k[s], v = k[e - 1];
	/* One leaf's width before U holds the prefix. */
	const double lw = ceil(((double)(v - u) + 1.0) / (double)kr);
	if (pre && !(lw < (double)u))
		return 0;
	const uint64_t l = pre ? u - (uint64_t)lw : u;
	const double sd = (double)(kr + pre) / ((double)(v - l) + 1.0);
	float sf = (float)sd;
	if ((double)sf > sd) /* rounded up: the run's last key may spill */
		sf = nextafterf(sf, 0.0f);
	if ((pre && bucket_leaf(l, sf, span, k[s - 1]) != 0) ||
	    bucket_leaf(l, sf, span, u) != pre ||
	    bucket_leaf(l, sf, span, v) > span - 1 - post ||
	    (post && bucket_leaf(l, sf, span, k[e]) != span - 1))
		return 0;
	*lo = l;
	*scale = sf;
	return 1;
}

/* The router of M (bits BITS) for LEAVES leaves, from the bucket bounds
 * FINE of a router of the same kind K bits finer.  With CUT, buckets
 * split by a wide gap spread their leaves over one run of their keys
 * (choose_run()): the final router; the tuner compares shapes without. */
static void fill_router(unsigned char *router, const struct model *m,
			unsigned bits, uint64_t leaves, const uint64_t *keys,
			uint64_t n, const uint64_t *fine, unsigned k, int cut)
{
	const uint64_t nb = (uint64_t)1 << bits;
	uint64_t c = 0;
	for (uint64_t b = 0; b < nb; b++) {
		const uint64_t a = fine[fine_index(m->logr, b, m->shift, k)];
		const uint64_t e = fine[fine_index(m->logr, b + 1, m->shift, k)];
		const uint64_t c1 = n ? (uint64_t)((u128)e * leaves / n) : 0;
		unsigned char *ent = router + ENTRY_SIZE * b;
		float scale = 0;
		uint64_t lo = 0;
		uint64_t rs = 0, re = e - a;
		if (cut && e > a && c1 - c >= 2)
			choose_run(keys + a, e - a, c1 - c, &rs, &re);
		if (e > a && (re - rs == e - a ||
			      !spread_map(keys + a, e - a, rs, re, c1 - c, &lo,
					  &scale))) {
			lo = keys[a];
			scale = (float)((double)(c1 - c) /
					((double)(keys[e - 1] - lo) + 1.0));
		}
		put_le64(ent, lo);
		put_le32(ent + 8, (uint32_t)c);
		put_lef32(ent + 12, scale);
		c = c1;
	}
	/* The final entry names the leaf count, also with no keys (when
	 * every bound is 0). */
	unsigned char *ent = router + ENTRY_SIZE * nb;
	put_le64(ent, 0);
	put_le32(ent + 8, (uint32_t)leaves);
	put_lef32(ent + 12, 0);
}

/* The end of leaf L's run of keys, which starts at POS: the first i >= pos
 * routed past L. */
static uint64_t leaf_end(const struct model *m, const uint64_t *keys,
			 uint64_t n, uint64_t pos, uint64_t l)
{
	return gallop_to(m, 0, keys, n, pos, l + 1);
}

/* The start of the run of keys routed to L, which contains position I. */
static uint64_t leaf_start(const struct model *m, const uint64_t *keys,
			   uint64_t i, uint64_t l)
{
	uint64_t hi = i, step = 1; /* route(keys[hi]) >= l */
	uint64_t base = 0;
	while (hi >= step) {
		if (route(m, keys[hi - step]) < l) {
			base = hi - step + 1;
			break;
		}
		hi -= step;
		step *= 2;
	}
	while (base < hi) {
		const uint64_t mid = base + (hi - base) / 2;
		if (route(m, keys[mid]) >= l)
			hi = mid;
		else
			base = mid + 1;
	}
	return base;
}

/*
 * Least squares slope of position on x = key - k[0], in one pass.  The
 * sums are taken from the leaf's first key, so x is at most the leaf's
 * span and the variance sum cannot cancel catastrophically; the line
 * through the two ends was also tried and narrowed windows by only 1-2%,
 * not worth a second error pass per key.
 */
static double fit_slope(const uint64_t *k, uint64_t m)
{
	if (m < 2)
		return 0.0;
	const uint64_t ref = k[0];
	double sx = 0, sxx = 0, sxy = 0;
	for (uint64_t j = 0; j < m; j++) {
		const double x = (double)(k[j] - ref);
		sx += x;
		sxx += x * x;
		sxy += x * (double)j;
	}
	const double dm = (double)m;
	const double sy = dm * (dm - 1) / 2;
	const double vxx = sxx - sx * sx / dm;
	const double cxy = sxy - sx * sy / dm;
	const double s = vxx > 0 ? cxy / vxx : 0.0;
	return isfinite(s) && s > 0 ? s : 0.0;
}

/* The error range of the line (reference key k[0], SLOPE) over k[0..m),
 * measured with predict_off, the function lookups use, on the same inputs
 * a lookup will decode from the stored leaf. */
static void leaf_errors(const uint64_t *k, uint64_t m, double slope,
			uint64_t *el, uint64_t *eh)
{
	/* Signed differences and max, not branches on their sign: the sign
	 * flips at random along a leaf, and a mispredict per key would cost
	 * more than the prediction itself. */
	int64_t lo = 0, hi = 0;
	const uint64_t ref = m ? k[0] : 0;
	for (uint64_t j = 0; j < m; j++) {
		const int64_t d = (int64_t)predict_off(ref, slope, m, k[j]) -
				  (int64_t)j;
		lo = d > lo ? d : lo;
		hi = -d > hi ? -d : hi;
	}
	*el = (uint64_t)lo;
	*eh = (uint64_t)hi;
}

static double best_slope(const uint64_t *k, uint64_t m, uint64_t *el,
			 uint64_t *eh)
{
	const double s = fit_slope(k, m);
	leaf_errors(k, m, s, el, eh);
	return s;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/*
 * The mean window of a present key under the router M (leaves not built),
 * estimated from the leaves of S sampled keys: sampling keys, not leaves,
 * weighs each leaf by its keys as lookups do.  A leaf hit twice is
 * measured once (MEMO, 2 S slots).  Past CAP keys examined, the samples seen
 * so far (a random subset) decide.
 */
static double estimate(const struct model *m, const uint64_t *keys,
		       uint64_t n, const uint64_t *samples, size_t s,
		       uint64_t cap, uint64_t *memo_leaf, double *memo_w)
{
	const size_t slots = 2 * s;
	for (size_t i = 0; i < slots; i++)
		memo_leaf[i] = UINT64_MAX;
	uint64_t work = 0;
	double sum = 0;
	size_t done = 0;
	for (; done < s && work < cap; done++) {
		const uint64_t i = samples[done];
		const uint64_t l = route(m, keys[i]);
		size_t h = (size_t)((l * 0x9e3779b97f4a7c15ULL) >> 40) % slots;
		while (memo_leaf[h] != UINT64_MAX && memo_leaf[h] != l)
			h = (h + 1) % slots;
		if (memo_leaf[h] == l) {
			sum += memo_w[h];
			continue;
		}
		const uint64_t a = leaf_start(m, keys, i, l);
		const uint64_t e = leaf_end(m, keys, n, i, l);
		uint64_t el, eh;
		best_slope(keys + a, e - a, &el, &eh);
		double w = (double)(el + eh + 1);
		if (w > (double)(e - a))
			w = (double)(e - a);
		work += e - a;
		memo_leaf[h] = l;
		memo_w[h] = w;
		sum += w;
	}
	return done ? sum / (double)done : HUGE_VAL;
}

/* Leaves for a router of BITS bits: as given, or all the budget holds. */
static uint64_t leaves_for(const struct kyro_rmi_params *p, uint64_t budget,
			   unsigned bits, uint64_t max_leaves)
{
	if (p->leaves)
		return p->leaves;
	/* A router given larger than the budget leaves no room: spend as
	 * much again as the budget on leaves rather than starve them. */
	const uint64_t fixed = image_bytes(bits, 0);
	uint64_t l = budget > fixed ? (budget - fixed) / LEAF_SIZE
				    : budget / LEAF_SIZE;
	if (l > max_leaves)
		l = max_leaves;
	return l ? l : 1;
}

/* The shape the tuner settles on. */
struct shape {
	int logr;
	unsigned bits;
	uint64_t leaves;
	uint64_t *bounds; /* 2^bits + 1 bucket bounds, malloc'd */
};

/*
 * Choose the router's kind and bits and the leaf count.  Without both
 * bits and leaves given, every router size from 2^8 up to half the budget
 * is a candidate, linear (no finer than the key range) and logarithmic
 * (no finer than 2^6 buckets per bit of the key range), each paired with
 * as many leaves as the rest of the budget holds; the smallest estimated
 * mean window wins, a smaller router or a linear one winning unless the
 * other is 1% better.
 */
static int choose_shape(const uint64_t *keys, uint64_t n,
			const struct kyro_rmi_params *p, struct shape *out,
			char *errbuf, size_t errlen)
{
	uint64_t *fine[2] = { NULL, NULL }, *samples = NULL, *memo_leaf = NULL;
	double *memo_w = NULL;
	unsigned char *router = NULL;
	int err = 0;

	out->bounds = NULL;
	const uint64_t min_bytes = image_bytes(KYRO_RMI_MIN_BITS, 1);
	const uint64_t two_pct = (uint64_t)((u128)n * 8 / 50);
	const uint64_t budget = p->max_size ? p->max_size
			      : two_pct > MIN_BUDGET ? two_pct : MIN_BUDGET;
	if (p->max_size && p->max_size < min_bytes) {
		set_err(errbuf, errlen,
			"max size %llu is below the smallest index (%llu "
			"bytes)",
			(unsigned long long)p->max_size,
			(unsigned long long)min_bytes);
		err = EINVAL;
		goto out;
	}
	const uint64_t max_leaves = n > 1 ? (n < UINT32_MAX ? n : UINT32_MAX)
					  : 1;
	const uint64_t first = n ? keys[0] : 0;
	const uint64_t last = n ? keys[n - 1] : 0;
	const unsigned t = range_bits(first, last);

	/* blo..bhi[kind]; a kind with bhi < blo is not tried. */
	unsigned blo = KYRO_RMI_MIN_BITS;
	unsigned bhi[2] = { KYRO_RMI_MAX_BITS, KYRO_RMI_MAX_BITS };
	if (p->router_bits) {
		blo = bhi[0] = bhi[1] = p->router_bits;
	} else {
		const unsigned cap[2] = { t, t + LOG_OCTAVE_BITS };
		for (int kind = 0; kind < 2; kind++) {
			if (bhi[kind] > cap[kind])
				bhi[kind] = cap[kind];
			while (bhi[kind] > blo &&
			       router_bytes(bhi[kind]) > budget / 2)
				bhi[kind]--;
		}
		if (bhi[0] < blo)
			bhi[0] = blo; /* linear always has a candidate */
	}
	/* With fewer than two keys, or a key range too narrow for a log
	 * router's mantissa, only the linear router is built. */
	if (n < 2 || t < 2)
		bhi[1] = 0;

	unsigned fine_shift[2];
	for (int kind = 0; kind < 2; kind++) {
		if (bhi[kind] < blo)
			continue;
		err = ENOMEM;
		fine[kind] = malloc(sizeof(uint64_t) *
				    (((size_t)1 << bhi[kind]) + 1));
		if (fine[kind] == NULL)
			goto out;
		err = 0;
		struct model m;
		fine_shift[kind] = shift_of(kind, first, last, bhi[kind]);
		model_shape(&m, first, last, kind, fine_shift[kind]);
		bucket_bounds(&m, keys, n, bhi[kind], fine[kind]);
	}

	int best_kind = 0;
	unsigned best_bits = blo;
	const unsigned ncand = (bhi[0] - blo + 1) +
			       (bhi[1] >= blo ? bhi[1] - blo + 1 : 0);
	if (ncand > 1 && n >= 2) {
		err = ENOMEM;
		const size_t s = n < TUNE_SAMPLES ? (size_t)n : TUNE_SAMPLES;
		const unsigned rb = bhi[0] > bhi[1] ? bhi[0] : bhi[1];
		samples = malloc(sizeof(*samples) * s);
		memo_leaf = malloc(sizeof(*memo_leaf) * 2 * s);
		memo_w = malloc(sizeof(*memo_w) * 2 * s);
		router = malloc((size_t)router_bytes(rb));
		if (!samples || !memo_leaf || !memo_w || !router)
			goto out;
		err = 0;
		uint64_t seed = 0x4b59524f524d4931ULL ^ n; /* reproducible */
		for (size_t i = 0; i < s; i++)
			samples[i] = splitmix(&seed) % n;
		const uint64_t share = n / (4 * (uint64_t)ncand);
		const uint64_t cap = share > TUNE_MIN_WORK ? share
							   : TUNE_MIN_WORK;
		double best = HUGE_VAL;
		for (int kind = 0; kind < 2; kind++) {
			for (unsigned b = blo; b <= bhi[kind]; b++) {
				const unsigned shift = shift_of(kind, first,
								last, b);
				const unsigned k =
					kind ? fine_shift[kind] - shift
					     : shift - fine_shift[kind];
				struct model m;
				model_shape(&m, first, last, kind, shift);
				m.router = router;
				const uint64_t leaves = leaves_for(
					p, budget, b, max_leaves);
				fill_router(router, &m, b, leaves, keys, n,
					    fine[kind], k, 0);
				const double w = estimate(&m, keys, n, samples,
							  s, cap, memo_leaf,
							  memo_w);
				if (w < best * 0.99) {
					best = w;
					best_bits = b;
					best_kind = kind;
				}
			}
		}
	}
	/* Bounds at the chosen shape, in place: fine_index(b) >= b, so
	 * nothing is overwritten before it is read. */
	const unsigned shift = shift_of(best_kind, first, last, best_bits);
	const unsigned k = best_kind ? fine_shift[1] - shift
				     : shift - fine_shift[0];
	uint64_t *bounds = fine[best_kind];
	for (uint64_t b = 0; b <= (uint64_t)1 << best_bits; b++)
		bounds[b] = bounds[fine_index(best_kind, b, shift, k)];
	out->logr = best_kind;
	out->bits = best_bits;
	out->leaves = leaves_for(p, budget, best_bits, max_leaves);
	out->bounds = bounds;
	fine[best_kind] = NULL;
out:
	if (err == ENOMEM)
		set_err(errbuf, errlen, "out of memory choosing index shape");
	free(fine[0]);
	free(fine[1]);
	free(samples);
	free(memo_leaf);
	free(memo_w);
	free(router);
	return err;
}

/*
 * Fitting and checking leaves [l0, l1), whose keys start at POS.  The
 * build runs two of these in parallel (below); each writes only its own
 * leaf records and its own fields here, and reads only its own records:
 * every key of its runs routes to one of its leaves.
 */
struct leaf_job {
	const struct model *m;
	unsigned char *recs; /* the image's leaf records, m->leaves */
	const uint64_t *keys;
	uint64_t n;
	uint64_t l0, l1, pos;
	uint64_t end;       /* out: the position after the last leaf's run */
	double wsum, wmax;  /* out: window statistics of the run */
	int err;            /* out: 0, or an error with MSG */
	char msg[200];
};

/*
 * Leaf by leaf: find the run of keys the router sends to the leaf, fit the
 * line, store it, then check every key of the run through the whole lookup
 * path (route, decode the stored record, predict, clamp) while the run is
 * still in cache.
 */
static void *fit_leaves(void *arg)
{
	struct leaf_job *j = arg;
	const struct model *m = j->m;
	const uint64_t *keys = j->keys;
	uint64_t pos = j->pos;
	for (uint64_t l = j->l0; l < j->l1; l++) {
		const uint64_t e = leaf_end(m, keys, j->n, pos, l);
		const uint64_t cnt = e - pos;
		if (cnt > UINT32_MAX) {
			set_err(j->msg, sizeof j->msg,
				"leaf %llu would hold %llu keys (2^32 or more): "
				"use more leaves",
				(unsigned long long)l, (unsigned long long)cnt);
			j->err = EOVERFLOW;
			return NULL;
		}
		uint64_t el, eh;
		const double slope = best_slope(keys + pos, cnt, &el, &eh);
		unsigned char *leaf = j->recs + LEAF_SIZE * l;
		put_le64(leaf, cnt ? keys[pos] : 0);
		put_lef64(leaf + 8, slope);
		put_le64(leaf + 16, pos);
		put_le32(leaf + 24, (uint32_t)cnt);
		put_le16(leaf + 28, el < EPS_WHOLE ? (unsigned)el : EPS_WHOLE);
		put_le16(leaf + 30, eh < EPS_WHOLE ? (unsigned)eh : EPS_WHOLE);
		for (uint64_t i = pos; i < e; i++) {
			struct window w;
			model_window(m, keys[i], &w);
			if (i < w.lo || i >= w.hi) {
				set_err(j->msg, sizeof j->msg,
					"internal error: key at position %llu "
					"lies outside its window [%llu, %llu)",
					(unsigned long long)i,
					(unsigned long long)w.lo,
					(unsigned long long)w.hi);
				j->err = KYRO_ECORRUPT;
				return NULL;
			}
			const double wl = (double)(w.hi - w.lo);
			j->wsum += wl;
			if (wl > j->wmax)
				j->wmax = wl;
		}
		pos = e;
	}
	j->end = pos;
	return NULL;
}

/* Below this many keys one thread fits every leaf: a thread costs more
 * than it saves. */
#define PARALLEL_MIN_KEYS ((uint64_t)1 << 18)

/* The CPUs this thread may run on: taskset and cpusets count, where the
 * number of CPUs online would not. */
static int usable_cpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) != 0)
		return 1;
	return CPU_COUNT(&set);
}

/*
 * Fits every leaf, in two halves on two threads when THREADS asks for it
 * (see struct kyro_rmi_params): fitting and checking is most of the build
 * (about 120 of 160 instructions per key at 1M keys).  The halves split at
 * the first key the router sends to the middle leaf, found by the same
 * gallop over the same routing function that ends every leaf, so each
 * half fits exactly the leaves one thread would.  A thread that cannot
 * be started leaves its half to this one.
 */
static int fit_all(const struct model *m, unsigned char *recs,
		   const uint64_t *keys, uint64_t n, uint64_t leaves,
		   unsigned threads, double *wsum, double *wmax, char *errbuf,
		   size_t errlen)
{
	struct leaf_job half[2];
	memset(half, 0, sizeof half);
	for (int h = 0; h < 2; h++) {
		half[h].m = m;
		half[h].recs = recs;
		half[h].keys = keys;
		half[h].n = n;
	}
	half[0].l1 = leaves;
	const int split = leaves >= 2 &&
			  (threads >= 2 ||
			   (threads == 0 && n >= PARALLEL_MIN_KEYS &&
			    usable_cpus() >= 2));
	if (split) {
		half[0].l1 = leaves / 2;
		half[1].l0 = leaves / 2;
		half[1].l1 = leaves;
		half[1].pos = leaf_start(m, keys, n, leaves / 2);
	}
	pthread_t t;
	const int threaded =
		split && pthread_create(&t, NULL, fit_leaves, &half[1]) == 0;
	fit_leaves(&half[0]);
	if (threaded)
		pthread_join(t, NULL);
	else if (split)
		fit_leaves(&half[1]);
	for (int h = 0; h < 1 + split; h++) {
		if (half[h].err) {
			set_err(errbuf, errlen, "%s", half[h].msg);
			return half[h].err;
		}
	}
	/* The halves must meet, and the last must end at n. */
	if (half[0].end != (split ? half[1].pos : n) ||
	    (split && half[1].end != n)) {
		set_err(errbuf, errlen,
			"internal error: the leaves do not tile the %llu keys",
			(unsigned long long)n);
		return KYRO_ECORRUPT;
	}
	*wsum = half[0].wsum + half[1].wsum;
	*wmax = half[0].wmax > half[1].wmax ? half[0].wmax : half[1].wmax;
	return 0;
}

int kyro__rmi_train(const uint64_t *keys, uint64_t n, uint64_t snap_gen,
		    const struct kyro_rmi_params *p, void **buf, size_t *size,
		    struct kyro__rmi_build_stats *st, char *errbuf,
		    size_t errlen)
{
	static const struct kyro_rmi_params autop = { 0, 0, 0, 0 };
	unsigned char *img = NULL;
	uint64_t *bounds = NULL;
	struct kyro__rmi *check = NULL;
	int err = 0;

	*buf = NULL;
	*size = 0;
	if (p == NULL)
		p = &autop;
	if (n > 0 && keys == NULL) {
		set_err(errbuf, errlen, "no keys to build the index over");
		err = EINVAL;
		goto out;
	}
	if (p->router_bits && (p->router_bits < KYRO_RMI_MIN_BITS ||
			       p->router_bits > KYRO_RMI_MAX_BITS)) {
		set_err(errbuf, errlen, "router bits %u outside %d..%d",
			p->router_bits, KYRO_RMI_MIN_BITS, KYRO_RMI_MAX_BITS);
		err = EINVAL;
		goto out;
	}
	/* Sortedness first: every later step (galloping, the monotone
	 * leaf runs) depends on it.  One sequential pass, cheap next to
	 * the rest. */
	for (uint64_t i = 1; i < n; i++) {
		if (keys[i - 1] >= keys[i]) {
			set_err(errbuf, errlen,
				"keys are not sorted and unique at position "
				"%llu",
				(unsigned long long)i);
			err = EINVAL;
			goto out;
		}
	}

	struct shape sh = { 0, 0, 0, NULL };
	err = choose_shape(keys, n, p, &sh, errbuf, errlen);
	if (err)
		goto out;
	bounds = sh.bounds;
	const unsigned bits = sh.bits;
	const uint64_t leaves = sh.leaves;
	const uint64_t total = image_bytes(bits, leaves);
	if (p->max_size && total > p->max_size) {
		set_err(errbuf, errlen,
			"an index of %llu leaves and %u router bits takes %llu "
			"bytes, over the maximum of %llu",
			(unsigned long long)leaves, bits,
			(unsigned long long)total,
			(unsigned long long)p->max_size);
		err = EINVAL;
		goto out;
	}
	err = ENOMEM;
	if (total > SIZE_MAX)
		goto out;
	img = calloc(1, (size_t)total);
	if (img == NULL)
		goto out;
	err = 0;

	const uint64_t first = n ? keys[0] : 0;
	const uint64_t last = n ? keys[n - 1] : 0;
	const unsigned shift = shift_of(sh.logr, first, last, bits);
	memcpy(img, rmi_magic, 8);
	put_le32(img + 8, KYRO_RMI_VERSION);
	put_le32(img + 12, sh.logr ? FLAG_LOG : 0);
	put_le64(img + 16, n);
	put_le64(img + 24, snap_gen);
	put_le64(img + 32, first);
	put_le64(img + 40, last);
	put_le64(img + 48, key_sample_hash(keys, n));
	put_le32(img + 56, (uint32_t)leaves);
	img[60] = (unsigned char)bits;
	img[61] = (unsigned char)shift;

	struct model m;
	model_shape(&m, first, last, sh.logr, shift);
	m.router = img + HDR_SIZE;
	m.leaves = m.router + router_bytes(bits);
	fill_router(img + HDR_SIZE, &m, bits, leaves, keys, n, bounds, 0, 1);

	double wsum = 0, wmax = 0;
	err = fit_all(&m, img + HDR_SIZE + router_bytes(bits), keys, n, leaves,
		      p->threads, &wsum, &wmax, errbuf, errlen);
	if (err)
		goto out;
	put_le64(img + total - SUM_SIZE,
	      XXH3_64bits(img, (size_t)total - SUM_SIZE));

	/* The loader's rules are the format's: the image must pass them. */
	err = kyro__rmi_load(&check, img, (size_t)total, keys, n, snap_gen,
			     errbuf, errlen);
	if (err)
		goto out;
	if (st) {
		st->leaves = leaves;
		st->router_bits = bits;
		st->router_log = sh.logr;
		st->bytes = total;
		st->mean_window = n ? wsum / (double)n : 0;
		st->max_window = wmax;
	}
	*buf = img;
	*size = (size_t)total;
	img = NULL;
out:
	if (err == ENOMEM)
		set_err(errbuf, errlen, "out of memory building the index");
	kyro__rmi_free(check);
	free(bounds);
	free(img);
	return err;
}
