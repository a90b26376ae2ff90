/*
 * rmi_lookup.h - the learned index's lookups, single and batched, written
 * once and compiled once per SIMD level: each simd_*.c includes this
 * header, defines the two functions declared below for its instruction
 * set, and puts lower_bound() and lower_bound_batch() in its table
 * (struct kyro__simd_ops, simd.h).  Compiled with the level's -m flags,
 * the whole lookup is that level's code, with its probe inlined: a lookup
 * makes one indirect call (kyro__rmi_lower_bound() in rmi.c), not one per
 * probe, and has no run-time test of the level.
 *
 * The counters are the caller's (struct kyro__rmi_counters of rmi.h);
 * C == NULL counts nothing.  Only the rare paths and, when asked for
 * (kyro__rmi_count_windows()), the window histogram count at all.
 */
#ifndef KYRO_RMI_LOOKUP_H
#define KYRO_RMI_LOOKUP_H

#include "rmi_model.h"
#include "simd.h"

/* The level's window probe (the kyro__simd_probe_fn of its table). */
static uint64_t probe(const uint64_t *keys, uint64_t n, uint64_t lo,
		      uint64_t hi, uint64_t key);

/* The lower bound of KEY among keys[A..A+KYRO_PROBE_KEYS): A plus the
 * number of them below KEY.  The fast path of lower_bound(). */
static inline uint64_t count32(const uint64_t *keys, uint64_t a,
			       uint64_t key);

static inline int outside(uint64_t ans, uint64_t lo, uint64_t hi, uint64_t n)
{
	return ((ans == lo) & (lo > 0)) | ((ans == hi) & (hi < n));
}

/* A run the short path does not take, through the level's own probe. */
static __attribute__((noinline)) uint64_t
probe_general(const struct kyro__rmi *r, uint64_t key, uint64_t lo, uint64_t hi,
	      struct kyro__rmi_counters *c)
{
	const uint64_t ans = probe(r->keys, r->n, lo, hi, key);
	if (__builtin_expect(outside(ans, lo, hi, r->n), 0))
		return kyro__rmi_mispredict(r, key, c);
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
 * The short path (the branch-free descent of simd.h, down to one key, at
 * every level) runs here instead of behind a call, and everything rarer
 * is out of line and reached by a tail call, so the common lookup makes
 * no call.  That took 21 of 186 instructions off an uncounted lookup and
 * 14 of 212 off a counted one (callgrind), and on a core that holds about
 * one lookup in flight each instruction saved lets the next lookup's
 * cache misses start sooner (docs/RMI.md, "The probe on cores without
 * AVX-512").  Descending to one key measured as fast as descending to
 * four and comparing them with AVX2.  A single lookup takes the shorter
 * fast path of lower_bound(); this one serves the batches and arrays of
 * fewer than 32 keys.
 */
static inline __attribute__((always_inline)) uint64_t
answer(const struct kyro__rmi *r, uint64_t key, uint64_t lo, uint64_t hi,
       struct kyro__rmi_counters *c)
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
			return kyro__rmi_mispredict(r, key, c);
		return ans;
	}
	return probe_general(r, key, lo, hi, c);
}

/*
 * The fast path's answer was on an edge of its 32 keys: the whole window,
 * widened by a key on each side, through the level's probe, confirmed as
 * in answer().  Out of line, so that the common lookup holds none of it.
 */
static __attribute__((noinline)) uint64_t
lookup_slow(const struct kyro__rmi *r, uint64_t key, const unsigned char *leaf,
	    uint64_t off, struct kyro__rmi_counters *c)
{
	struct window w;
	window_at(leaf, off, &w);
	if (c && w.whole)
		bump(&c->fallbacks);
	return probe_general(r, key, w.lo - (w.lo > 0), w.hi + (w.hi < r->n),
			     c);
}

/* An array of fewer than KYRO_PROBE_KEYS keys: no fast path, the window
 * through answer().  Out of line, so that the fast path saves no more
 * registers than it uses. */
static __attribute__((noinline)) uint64_t
lookup_small(const struct kyro__rmi *r, uint64_t key, const unsigned char *leaf,
	     uint64_t off, struct kyro__rmi_counters *c)
{
	struct window w;
	window_at(leaf, off, &w);
	if (c) {
		if (r->windows)
			bump(&c->window_hist[hist_bucket(w.hi - w.lo)]);
		if (__builtin_expect(w.whole, 0))
			bump(&c->fallbacks);
	}
	return answer(r, key, w.lo - (w.lo > 0), w.hi + (w.hi < r->n), c);
}

/* Where the fast path's 32 keys start for a window starting at LO: the
 * start of keys[lo - 1]'s line, but not before the array (whose first
 * key may sit inside a line), and not so far on that the 32 keys run
 * past its end.  N >= KYRO_PROBE_KEYS. */
static inline uint64_t fast_start(const uint64_t *keys, uint64_t n,
				  uint64_t lo)
{
	lo -= lo > 0;
	const uint64_t skip = (uint64_t)(((uintptr_t)(keys + lo) & 63u) / 8u);
	uint64_t a = lo - skip;
	a = a > lo ? 0 : a;
	return a < n - KYRO_PROBE_KEYS ? a : n - KYRO_PROBE_KEYS;
}

/*
 * kyro__rmi_lower_bound().  The window histogram is counted only when
 * asked for (kyro__rmi_count_windows()): its update is a store that
 * depends on the leaf's cache miss, and at 100M keys on Zen 5 it cost a
 * quarter of a lookup, where mispredicts and fallbacks, counted only on
 * the rare paths, cost nothing (docs/RMI.md, "What the counters cost").
 *
 * The fast path (every level, n >= 32) computes only where the window
 * starts, searches the 32 keys of the four lines from the one holding the
 * key before it (fast_start(); count32() of the level), and takes an
 * answer strictly inside those 32: the keys on both sides of it were
 * compared, so it is exact whatever the window said.  Nothing else is
 * needed: not the window's end, not whether the window fits the lines,
 * not the clamp to it.  Those took 9 to 15% of a lookup's time
 * (docs/RMI.md, "The fast path").  An answer on an edge, which the right
 * keys give only where a window does not fit in the 32, goes to
 * lookup_slow().
 */
static uint64_t lower_bound(const struct kyro__rmi *r, uint64_t key,
			    struct kyro__rmi_counters *c)
{
	const uint64_t n = r->n;
	/* One test for both ends (key - first wraps around below first). */
	if (__builtin_expect((key - r->m.first > r->m.last - r->m.first) |
				     (n == 0),
			     0)) {
		if (c && r->windows)
			bump(&c->window_hist[0]);
		return n == 0 || key < r->m.first ? 0 : n;
	}
	const unsigned char *leaf = leaf_of(&r->m, key);
	const uint64_t off = leaf_off(leaf, key);
	if (__builtin_expect(r->descend, 1)) {
		/* window_at()'s start, without its end or the select for a
		 * saturated epsilon: only where to search matters here, and
		 * any start gives an exact answer or an edge (then the whole
		 * window, through window_at(), in lookup_slow()). */
		const uint64_t el = get_le16(leaf + 28);
		const uint64_t a = fast_start(
			r->keys, n,
			get_le64(leaf + 16) + (off > el ? off - el : 0));
		/* Counted before the probe: the update's address is known
		 * now, so the store does not wait behind the probe's cache
		 * misses.  After everything read above, which the store
		 * could alias as far as the compiler knows. */
		if (c && r->windows) {
			struct window w;
			window_at(leaf, off, &w);
			bump(&c->window_hist[hist_bucket(w.hi - w.lo)]);
		}
		const uint64_t ans = count32(r->keys, a, key);
		/* ans in [a + 1, a + 31], one compare: a wraps below. */
		if (__builtin_expect(ans - a - 1 < KYRO_PROBE_KEYS - 1, 1))
			return ans;
		return lookup_slow(r, key, leaf, off, c);
	}
	return lookup_small(r, key, leaf, off, c);
}

/*
 * kyro__rmi_lower_bound_batch(), in groups of BATCH, in stages: the router
 * entry of every key of the group is prefetched, then every key is routed
 * and its leaf record prefetched, then every window is computed and its
 * lines prefetched, then the windows are probed in order.  Each stage's
 * cache misses are in flight together, so a group costs about one memory
 * latency per stage instead of one per key and stage; a stage that did
 * the next one's work too would hold more instructions per key than the
 * core can keep in flight.  Each answer is computed, confirmed and
 * counted as by lower_bound().
 */
#define BATCH 32

/* The first two stages: LEAF[k] the leaf record of Q[k], or NULL for a key
 * answered without the model (its answer then in OUT[k]). */
static inline void batch_route(const struct kyro__rmi *r, const uint64_t *q,
			       uint64_t *out, size_t m,
			       const unsigned char **leaf)
{
	const uint64_t n = r->n;
	for (size_t k = 0; k < m; k++) {
		const uint64_t key = q[k];
		if (n == 0 || key < r->m.first || key > r->m.last) {
			out[k] = n == 0 || key < r->m.first ? 0 : n;
			leaf[k] = NULL;
			continue;
		}
		/* The entry and the next one's leaf number, which may sit
		 * in the next line. */
		leaf[k] = entry_of(&r->m, key);
		__builtin_prefetch(leaf[k]);
		__builtin_prefetch(leaf[k] + ENTRY_SIZE + 8);
	}
	for (size_t k = 0; k < m; k++) {
		if (leaf[k] == NULL)
			continue;
		leaf[k] = r->m.leaves + LEAF_SIZE * route_at(leaf[k], q[k]);
		__builtin_prefetch(leaf[k]);
	}
}

static void lower_bound_batch(const struct kyro__rmi *r, const uint64_t *q,
			      uint64_t *out, size_t count,
			      struct kyro__rmi_counters *c)
{
	const uint64_t n = r->n;
	const uint64_t *keys = r->keys;
	const int hist = c && r->windows;
	for (size_t base = 0; base < count; base += BATCH) {
		const size_t m = count - base < BATCH ? count - base : BATCH;
		uint64_t lo[BATCH], hi[BATCH];
		const unsigned char *leaf[BATCH];
		batch_route(r, q + base, out + base, m, leaf);
		for (size_t k = 0; k < m; k++) {
			if (leaf[k] == NULL) {
				/* lo > hi marks it for the last stage. */
				lo[k] = 1;
				hi[k] = 0;
				if (hist)
					bump(&c->window_hist[0]);
				continue;
			}
			/* A split leaf's sub-leaf: its search reads records
			 * the stage before did not prefetch, but only for the
			 * few keys in split leaves. */
			if (__builtin_expect(get_le16(leaf[k] + 28) ==
						     r->m.split,
					     0))
				leaf[k] = sub_leaf(&r->m, leaf[k], q[base + k]);
			struct window w;
			leaf_window(leaf[k], q[base + k], &w);
			if (hist)
				bump(&c->window_hist[hist_bucket(w.hi - w.lo)]);
			if (__builtin_expect(w.whole, 0) && c)
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
			out[base + k] = answer(r, q[base + k], lo[k], hi[k], c);
		}
	}
}

#endif /* KYRO_RMI_LOOKUP_H */
