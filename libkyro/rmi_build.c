/*
 * rmi_build.c - building the learned index: the shape tuner (router kind,
 * router bits, leaf count within a size budget), the router with its
 * cuts at wide gaps, and the leaves, fitted and checked on two threads.
 * The image it writes is the format stated at the top of rmi.c, and it
 * is checked by the loader before it is returned.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "internal.h"
#include "kyro.h"
#include "rmi.h"
#include "rmi_model.h"

#include "banned.h"

#define MIN_BUDGET 4096
/* Auto-tune: keys sampled per candidate, and the fewest keys a candidate
 * may examine before its estimate is taken from the samples seen so far.
 * Above that floor all candidates together examine at most n / 4 keys, so
 * tuning costs a fraction of the build at any n, with huge leaves or
 * many candidates. */
#define TUNE_SAMPLES 1024
/* Split leaves: a leaf whose window exceeds SPLIT_WINDOW keys is split
 * into sub-leaves whose windows do not, if the reserve holds them (else
 * the bound is relaxed, see split_all()).  A window of SPLIT_WINDOW keys
 * always lies in the fast path's 32 keys (rmi_lookup.h), so no lookup
 * takes the slow path.  The reserve is 1 / SPLIT_RESERVE of the records
 * the budget holds. */
#define SPLIT_WINDOW 23
#define SPLIT_RESERVE 16
#define SPLIT_MAX_SUBS 65535
#define TUNE_MIN_WORK ((uint64_t)1 << 14)

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

/* The records a budget of BUDGET bytes holds beside a router of BITS
 * bits.  A router given larger than the budget leaves no room: spend as
 * much again as the budget on leaves rather than starve them. */
static uint64_t records_for(uint64_t budget, unsigned bits)
{
	const uint64_t fixed = image_bytes(bits, 0);
	return budget > fixed ? (budget - fixed) / LEAF_SIZE
			      : budget / LEAF_SIZE;
}

/* Leaves for a router of BITS bits: as given, or all the budget holds
 * (plan_reserve() then sets some aside for sub-leaves). */
static uint64_t leaves_for(const struct kyro_rmi_params *p, uint64_t budget,
			   unsigned bits, uint64_t max_leaves)
{
	if (p->leaves)
		return p->leaves;
	uint64_t l = records_for(budget, bits);
	if (l > max_leaves)
		l = max_leaves;
	return l ? l : 1;
}

/* The records an image may hold, routed leaves and sub-leaves, when the
 * leaf count ROUTED was given: a reserve beyond them, within an explicit
 * max_size, and within the header's 32-bit count. */
static uint64_t records_cap(const struct kyro_rmi_params *p, unsigned bits,
			    uint64_t routed)
{
	uint64_t cap = routed + routed / (SPLIT_RESERVE - 1);
	if (p->max_size) {
		const uint64_t r = records_for(p->max_size, bits);
		cap = r < cap ? r : cap;
	}
	cap = cap < UINT32_MAX ? cap : UINT32_MAX;
	return cap > routed ? cap : routed;
}

/* The shape the tuner settles on. */
struct shape {
	int logr;
	unsigned bits;
	uint64_t leaves;
	uint64_t *bounds; /* 2^bits + 1 bucket bounds, malloc'd */
};

/* What the tuner works from: the keys, the budget and the candidates. */
struct tuner {
	const uint64_t *keys;
	uint64_t n, first, last;
	const struct kyro_rmi_params *p;
	uint64_t budget, max_leaves;
	/* Router bits blo..bhi[kind] are tried; a kind with bhi < blo is
	 * not.  fine[kind]: the bucket bounds at bhi[kind] bits (shift
	 * fine_shift[kind]), from which every coarser router's follow. */
	unsigned blo, bhi[2];
	unsigned fine_shift[2];
	uint64_t *fine[2];
};

/* The size budget: max_size, or 2% of the keys' bytes, at least
 * MIN_BUDGET.  EINVAL when max_size cannot hold the smallest index. */
static int tune_budget(struct tuner *t, char *errbuf, size_t errlen)
{
	const struct kyro_rmi_params *p = t->p;
	const uint64_t min_bytes = image_bytes(KYRO_RMI_MIN_BITS, 1);
	const uint64_t two_pct = (uint64_t)((u128)t->n * 8 / 50);
	t->budget = p->max_size ? p->max_size
		  : two_pct > MIN_BUDGET ? two_pct : MIN_BUDGET;
	if (p->max_size && p->max_size < min_bytes) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"max size %llu is below the smallest index (%llu "
			"bytes)",
			(unsigned long long)p->max_size,
			(unsigned long long)min_bytes);
		return EINVAL;
	}
	t->max_leaves = t->n > 1 ? (t->n < UINT32_MAX ? t->n : UINT32_MAX)
				 : 1;
	return 0;
}

/* The router sizes to try: the one given, or from 2^8 up to half the
 * budget, linear no finer than the key range and logarithmic no finer
 * than 2^6 buckets per bit of it. */
static void tune_bits(struct tuner *t)
{
	const unsigned r = range_bits(t->first, t->last);
	t->blo = KYRO_RMI_MIN_BITS;
	t->bhi[0] = t->bhi[1] = KYRO_RMI_MAX_BITS;
	if (t->p->router_bits) {
		t->blo = t->bhi[0] = t->bhi[1] = t->p->router_bits;
	} else {
		const unsigned cap[2] = { r, r + LOG_OCTAVE_BITS };
		for (int kind = 0; kind < 2; kind++) {
			if (t->bhi[kind] > cap[kind])
				t->bhi[kind] = cap[kind];
			while (t->bhi[kind] > t->blo &&
			       router_bytes(t->bhi[kind]) > t->budget / 2)
				t->bhi[kind]--;
		}
		if (t->bhi[0] < t->blo)
			t->bhi[0] = t->blo; /* linear always has a candidate */
	}
	/* With fewer than two keys, or a key range too narrow for a log
	 * router's mantissa, only the linear router is built. */
	if (t->n < 2 || r < 2)
		t->bhi[1] = 0;
}

/* The finest bucket bounds of each kind tried.  ENOMEM. */
static int tune_fine_bounds(struct tuner *t)
{
	for (int kind = 0; kind < 2; kind++) {
		if (t->bhi[kind] < t->blo)
			continue;
		t->fine[kind] = malloc(sizeof(uint64_t) *
				       (((size_t)1 << t->bhi[kind]) + 1));
		if (t->fine[kind] == NULL)
			return ENOMEM;
		struct model m;
		t->fine_shift[kind] =
			shift_of(kind, t->first, t->last, t->bhi[kind]);
		model_shape(&m, t->first, t->last, kind, t->fine_shift[kind]);
		bucket_bounds(&m, t->keys, t->n, t->bhi[kind], t->fine[kind]);
	}
	return 0;
}

/* How many bits finer the kind's fine bounds are than a router of that
 * kind with shift SHIFT. */
static unsigned fine_steps(const struct tuner *t, int kind, unsigned shift)
{
	return kind ? t->fine_shift[kind] - shift : shift - t->fine_shift[kind];
}

/* The estimating scratch: the sampled keys, the memo of estimate(), and a
 * router the size of the largest candidate. */
struct tune_scratch {
	uint64_t *samples, *memo_leaf;
	double *memo_w;
	unsigned char *router;
	size_t s;
	uint64_t cap;
};

/* The estimated mean window of the candidate KIND, BITS. */
static double tune_estimate(const struct tuner *t, struct tune_scratch *x,
			    int kind, unsigned bits)
{
	const unsigned shift = shift_of(kind, t->first, t->last, bits);
	struct model m;
	model_shape(&m, t->first, t->last, kind, shift);
	m.router = x->router;
	const uint64_t leaves =
		leaves_for(t->p, t->budget, bits, t->max_leaves);
	fill_router(x->router, &m, bits, leaves, t->keys, t->n, t->fine[kind],
		    fine_steps(t, kind, shift), 0);
	return estimate(&m, t->keys, t->n, x->samples, x->s, x->cap,
			x->memo_leaf, x->memo_w);
}

/* Every candidate estimated, NCAND of them: the smallest estimated mean
 * window wins, a smaller router or a linear one winning unless the other
 * is 1% better.  ENOMEM. */
static int tune_pick(const struct tuner *t, unsigned ncand, int *best_kind,
		     unsigned *best_bits)
{
	const uint64_t n = t->n;
	struct tune_scratch x;
	x.s = n < TUNE_SAMPLES ? (size_t)n : TUNE_SAMPLES;
	const unsigned rb = t->bhi[0] > t->bhi[1] ? t->bhi[0] : t->bhi[1];
	x.samples = malloc(sizeof(*x.samples) * x.s);
	x.memo_leaf = malloc(sizeof(*x.memo_leaf) * 2 * x.s);
	x.memo_w = malloc(sizeof(*x.memo_w) * 2 * x.s);
	x.router = malloc((size_t)router_bytes(rb));
	int err = ENOMEM;
	if (!x.samples || !x.memo_leaf || !x.memo_w || !x.router)
		goto out;
	err = 0;
	uint64_t seed = 0x4b59524f524d4931ULL ^ n; /* reproducible */
	for (size_t i = 0; i < x.s; i++)
		x.samples[i] = splitmix(&seed) % n;
	const uint64_t share = n / (4 * (uint64_t)ncand);
	x.cap = share > TUNE_MIN_WORK ? share : TUNE_MIN_WORK;
	double best = HUGE_VAL;
	for (int kind = 0; kind < 2; kind++) {
		for (unsigned b = t->blo; b <= t->bhi[kind]; b++) {
			const double w = tune_estimate(t, &x, kind, b);
			if (w < best * 0.99) {
				best = w;
				*best_bits = b;
				*best_kind = kind;
			}
		}
	}
out:
	free(x.samples);
	free(x.memo_leaf);
	free(x.memo_w);
	free(x.router);
	return err;
}

/*
 * Choose the router's kind and bits and the leaf count.  Without both
 * bits and leaves given, every router size tune_bits() allows is a
 * candidate, each paired with as many leaves as the rest of the budget
 * holds, and tune_pick() estimates them all.  OUT->bounds comes from the
 * finest bounds of the chosen kind, which are computed once.
 */
static int choose_shape(const uint64_t *keys, uint64_t n,
			const struct kyro_rmi_params *p, struct shape *out,
			char *errbuf, size_t errlen)
{
	struct tuner t = { .keys = keys, .n = n, .p = p };
	t.first = n ? keys[0] : 0;
	t.last = n ? keys[n - 1] : 0;
	out->bounds = NULL;
	int err = tune_budget(&t, errbuf, errlen);
	if (err)
		return err;
	tune_bits(&t);
	err = tune_fine_bounds(&t);
	if (err)
		goto out;

	int best_kind = 0;
	unsigned best_bits = t.blo;
	const unsigned ncand = (t.bhi[0] - t.blo + 1) +
			       (t.bhi[1] >= t.blo ? t.bhi[1] - t.blo + 1 : 0);
	if (ncand > 1 && n >= 2) {
		err = tune_pick(&t, ncand, &best_kind, &best_bits);
		if (err)
			goto out;
	}
	/* Bounds at the chosen shape, in place: fine_index(b) >= b, so
	 * nothing is overwritten before it is read. */
	const unsigned shift = shift_of(best_kind, t.first, t.last, best_bits);
	const unsigned k = fine_steps(&t, best_kind, shift);
	uint64_t *bounds = t.fine[best_kind];
	for (uint64_t b = 0; b <= (uint64_t)1 << best_bits; b++)
		bounds[b] = bounds[fine_index(best_kind, b, shift, k)];
	out->logr = best_kind;
	out->bits = best_bits;
	out->leaves = leaves_for(p, t.budget, best_bits, t.max_leaves);
	out->bounds = bounds;
	t.fine[best_kind] = NULL;
out:
	if (err == ENOMEM)
		kyro__rmi_set_err(errbuf, errlen,
				  "out of memory choosing index shape");
	free(t.fine[0]);
	free(t.fine[1]);
	return err;
}

/* A leaf whose window is over SPLIT_WINDOW keys, left to split_all(). */
struct wide_leaf {
	uint64_t l, pos, cnt, w;
};

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
	int split;          /* collect wide leaves for split_all() */
	uint64_t end;       /* out: the position after the last leaf's run */
	double wsum, wmax;  /* out: window statistics of the run */
	struct wide_leaf *wide; /* out: the wide leaves, in order (malloc'd) */
	size_t nwide, capwide;
	int err;            /* out: 0, or an error with MSG */
	char msg[200];
};

/* A line leaf record over keys[pos..pos+cnt).  An error of EPS_SPLIT or
 * more is stored as EPS_WHOLE: EPS_SPLIT marks a split leaf. */
static void put_line(unsigned char *leaf, const uint64_t *keys, uint64_t pos,
		     uint64_t cnt, double slope, uint64_t el, uint64_t eh)
{
	put_le64(leaf, cnt ? keys[pos] : 0);
	put_lef64(leaf + 8, slope);
	put_le64(leaf + 16, pos);
	put_le32(leaf + 24, (uint32_t)cnt);
	put_le16(leaf + 28, el < EPS_SPLIT ? (unsigned)el : EPS_WHOLE);
	put_le16(leaf + 30, eh < EPS_SPLIT ? (unsigned)eh : EPS_WHOLE);
}

/* Every key of keys[a..e) through the whole lookup path (route, decode
 * the stored records, predict, clamp): each must lie in its window.
 * Adds the windows to *WSUM and *WMAX.  KYRO_ECORRUPT with MSG. */
static int check_run(const struct model *m, const uint64_t *keys, uint64_t a,
		     uint64_t e, double *wsum, double *wmax, char *msg,
		     size_t msglen)
{
	for (uint64_t i = a; i < e; i++) {
		struct window w;
		model_window(m, keys[i], &w);
		if (i < w.lo || i >= w.hi) {
			kyro__rmi_set_err(msg, msglen,
					  "internal error: key at position "
					  "%llu lies outside its window "
					  "[%llu, %llu)",
					  (unsigned long long)i,
					  (unsigned long long)w.lo,
					  (unsigned long long)w.hi);
			return KYRO_ECORRUPT;
		}
		const double wl = (double)(w.hi - w.lo);
		*wsum += wl;
		*wmax = wl > *wmax ? wl : *wmax;
	}
	return 0;
}

/* Remember a wide leaf.  ENOMEM. */
static int add_wide(struct leaf_job *j, uint64_t l, uint64_t pos,
		    uint64_t cnt, uint64_t w)
{
	if (j->nwide == j->capwide) {
		const size_t c = j->capwide ? 2 * j->capwide : 256;
		struct wide_leaf *p = realloc(j->wide, c * sizeof(*p));
		if (p == NULL)
			return ENOMEM;
		j->wide = p;
		j->capwide = c;
	}
	j->wide[j->nwide++] = (struct wide_leaf){ l, pos, cnt, w };
	return 0;
}

/*
 * Leaf by leaf: find the run of keys the router sends to the leaf, fit the
 * line, store it, then check every key of the run through the whole lookup
 * path while the run is still in cache.  A leaf whose window is wider
 * than SPLIT_WINDOW is stored as a line too, but left to split_all() to
 * split and check.
 */
static void *fit_leaves(void *arg)
{
	struct leaf_job *j = arg;
	const struct model *m = j->m;
	const uint64_t *keys = j->keys;
	uint64_t pos = j->pos;
	for (uint64_t l = j->l0; l < j->l1 && !j->err; l++) {
		const uint64_t e = leaf_end(m, keys, j->n, pos, l);
		const uint64_t cnt = e - pos;
		if (cnt > UINT32_MAX) {
			kyro__rmi_set_err(j->msg, sizeof j->msg,
					  "leaf %llu would hold %llu keys "
					  "(2^32 or more): "
					  "use more leaves",
					  (unsigned long long)l,
					  (unsigned long long)cnt);
			j->err = EOVERFLOW;
			return NULL;
		}
		uint64_t el, eh;
		const double slope = best_slope(keys + pos, cnt, &el, &eh);
		put_line(j->recs + LEAF_SIZE * l, keys, pos, cnt, slope, el, eh);
		const uint64_t w = el + eh + 1 < cnt ? el + eh + 1 : cnt;
		if (j->split && w > SPLIT_WINDOW) {
			if (add_wide(j, l, pos, cnt, w) != 0) {
				kyro__rmi_set_err(j->msg, sizeof j->msg,
						  "out of memory building "
						  "the index");
				j->err = ENOMEM;
			}
		} else {
			j->err = check_run(m, keys, pos, e, &j->wsum, &j->wmax,
					   j->msg, sizeof j->msg);
		}
		pos = e;
	}
	j->end = pos;
	return NULL;
}

/* The wide leaves of both halves, in leaf order. */
struct wide_list {
	struct wide_leaf *v;
	size_t n;
};

/* Moves the halves' wide leaves into W, the first half's first, and
 * frees theirs.  ENOMEM. */
static int join_wide(struct wide_list *w, struct leaf_job *half, int halves)
{
	const size_t n = half[0].nwide + (halves ? half[1].nwide : 0);
	int err = 0;
	w->v = NULL;
	w->n = 0;
	if (n) {
		w->v = malloc(n * sizeof(*w->v));
		if (w->v == NULL)
			err = ENOMEM;
	}
	for (int h = 0; h < 2; h++) {
		if (!err && (h == 0 || halves)) {
			memcpy(w->v + w->n, half[h].wide,
			       half[h].nwide * sizeof(*w->v));
			w->n += half[h].nwide;
		}
		free(half[h].wide);
	}
	return err;
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
		   unsigned threads, int split, double *wsum, double *wmax,
		   struct wide_list *wide, char *errbuf, size_t errlen)
{
	struct leaf_job half[2];
	memset(half, 0, sizeof half);
	for (int h = 0; h < 2; h++) {
		half[h].m = m;
		half[h].recs = recs;
		half[h].keys = keys;
		half[h].n = n;
		half[h].split = split;
	}
	half[0].l1 = leaves;
	const int halves = leaves >= 2 &&
			  (threads >= 2 ||
			   (threads == 0 && n >= PARALLEL_MIN_KEYS &&
			    usable_cpus() >= 2));
	if (halves) {
		half[0].l1 = leaves / 2;
		half[1].l0 = leaves / 2;
		half[1].l1 = leaves;
		half[1].pos = leaf_start(m, keys, n, leaves / 2);
	}
	pthread_t t;
	const int threaded =
		halves && pthread_create(&t, NULL, fit_leaves, &half[1]) == 0;
	fit_leaves(&half[0]);
	if (threaded)
		pthread_join(t, NULL);
	else if (halves)
		fit_leaves(&half[1]);
	int err = join_wide(wide, half, halves);
	if (err) {
		kyro__rmi_set_err(errbuf, errlen,
				  "out of memory building the index");
		return err;
	}
	for (int h = 0; h < 1 + halves; h++) {
		if (half[h].err) {
			kyro__rmi_set_err(errbuf, errlen, "%s", half[h].msg);
			return half[h].err;
		}
	}
	/* The halves must meet, and the last must end at n. */
	if (half[0].end != (halves ? half[1].pos : n) ||
	    (halves && half[1].end != n)) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"internal error: the leaves do not tile the %llu keys",
			(unsigned long long)n);
		return KYRO_ECORRUPT;
	}
	*wsum = half[0].wsum + half[1].wsum;
	*wmax = half[0].wmax > half[1].wmax ? half[0].wmax : half[1].wmax;
	return 0;
}

/* A piece's split point must be a gap this many times the piece's mean
 * gap to be cut there rather than at the middle: a gap between clusters
 * of keys, not the widest of a smooth run's. */
#define SPLIT_GAP 16

/* The window of a line fitted to k[0..m). */
static uint64_t piece_window(const uint64_t *k, uint64_t m)
{
	uint64_t el, eh;
	best_slope(k, m, &el, &eh);
	return el + eh + 1 < m ? el + eh + 1 : m;
}

/* Where to split k[s..e) (e - s >= 2): at its widest gap when that is a
 * gap between clusters, else at the middle. */
static uint64_t split_point(const uint64_t *k, uint64_t s, uint64_t e)
{
	uint64_t g = s + 1, gw = 0;
	for (uint64_t i = s + 1; i < e; i++) {
		const uint64_t w = k[i] - k[i - 1];
		g = w > gw ? i : g;
		gw = w > gw ? w : gw;
	}
	const double mean = (double)(k[e - 1] - k[s]) / (double)(e - s - 1);
	return (double)gw >= SPLIT_GAP * mean ? g : s + (e - s) / 2;
}

/*
 * Cut k[0..m) into pieces whose lines have windows of at most W keys,
 * left to right, writing each piece's end to ENDS.  Returns the number of
 * pieces, or 0 when more than MAX would be needed.  STACK holds MAX + 1
 * pairs: the pieces still to cut, each of which will give one at least.
 */
static uint64_t cut_pieces(const uint64_t *k, uint64_t m, uint64_t w,
			   uint64_t *ends, uint64_t max, uint64_t *stack)
{
	uint64_t np = 0, top = 0;
	stack[top++] = 0;
	stack[top++] = m;
	while (top) {
		const uint64_t e = stack[--top], s = stack[--top];
		if (e - s <= w || piece_window(k + s, e - s) <= w) {
			ends[np++] = e;
			continue;
		}
		if (np + top / 2 + 2 > max)
			return 0;
		const uint64_t g = split_point(k, s, e);
		stack[top++] = g;
		stack[top++] = e;
		stack[top++] = s;
		stack[top++] = g;
	}
	return np;
}

/* The pieces of every wide leaf of WIDE over W keys, their ends in ENDS,
 * within MAX in all (and SPLIT_MAX_SUBS a leaf).  Returns how many, or
 * UINT64_MAX when they do not fit. */
static uint64_t cut_all(const uint64_t *keys, const struct wide_list *wide,
			uint64_t w, uint64_t *ends, uint64_t max,
			uint64_t *stack)
{
	uint64_t used = 0;
	for (size_t i = 0; i < wide->n; i++) {
		const struct wide_leaf *x = &wide->v[i];
		if (x->w <= w)
			continue;
		uint64_t lim = max - used;
		lim = lim < SPLIT_MAX_SUBS ? lim : SPLIT_MAX_SUBS;
		const uint64_t np = cut_pieces(keys + x->pos, x->cnt, w,
					       ends + used, lim, stack);
		if (np == 0)
			return UINT64_MAX;
		used += np;
	}
	return used;
}

/* The wide leaves over W keys as split leaves, their sub-leaves from
 * record ROUTED on, the pieces' ends in ENDS.  Returns the sub-leaves. */
static uint64_t put_split(unsigned char *recs, const uint64_t *keys,
			  const struct wide_list *wide, uint64_t w,
			  uint64_t routed, const uint64_t *ends)
{
	uint64_t next = routed;
	for (size_t i = 0; i < wide->n; i++) {
		const struct wide_leaf *x = &wide->v[i];
		if (x->w <= w)
			continue;
		const uint64_t first = next;
		for (uint64_t a = 0; a < x->cnt; next++) {
			const uint64_t b = *ends++;
			uint64_t el, eh;
			const double slope =
				best_slope(keys + x->pos + a, b - a, &el, &eh);
			put_line(recs + LEAF_SIZE * next, keys, x->pos + a,
				 b - a, slope, el, eh);
			a = b;
		}
		unsigned char *leaf = recs + LEAF_SIZE * x->l;
		put_le64(leaf, keys[x->pos]);
		put_le64(leaf + 8, first);
		put_le16(leaf + 28, EPS_SPLIT);
		put_le16(leaf + 30, (unsigned)(next - first));
	}
	return next - routed;
}

/*
 * The records to set aside for sub-leaves out of LEAVES, under the router
 * of M (filled for LEAVES leaves): enough for the smallest bound of
 * SPLIT_WINDOW, 47, 95, ... keys whose sub-leaves, estimated from the
 * leaves of TUNE_SAMPLES sampled keys, take at most 1 / SPLIT_RESERVE of
 * the records; 0 if none does.  Sampling keys weighs each leaf by its
 * keys, so a sampled leaf stands for (n / samples) / its keys leaves.
 * A smooth distribution (uniform keys) has wide leaves from chance
 * alone, too many to split, and few beyond 47 keys: it keeps nearly all
 * its records as leaves.  ENOMEM sets aside nothing.
 */
static uint64_t plan_reserve(const struct model *m, const uint64_t *keys,
			     uint64_t n, uint64_t leaves)
{
	const uint64_t most = leaves / SPLIT_RESERVE;
	const size_t s = n < TUNE_SAMPLES ? (size_t)n : TUNE_SAMPLES;
	if (most == 0 || n < 2)
		return 0;
	uint64_t *at = malloc(sizeof(*at) * 3 * s);
	uint64_t *ends = malloc(sizeof(*ends) * most);
	uint64_t *stack = malloc(sizeof(*stack) * 2 * (most + 2));
	uint64_t reserve = 0, seed = 0x53504c4954ULL ^ n, widest = 0;
	if (at == NULL || ends == NULL || stack == NULL)
		goto out;
	for (size_t i = 0; i < s; i++) {
		const uint64_t k = splitmix(&seed) % n;
		const uint64_t l = route(m, keys[k]);
		const uint64_t a = leaf_start(m, keys, k, l);
		at[3 * i] = a;
		at[3 * i + 1] = leaf_end(m, keys, n, k, l) - a;
		at[3 * i + 2] = piece_window(keys + a, at[3 * i + 1]);
		widest = at[3 * i + 2] > widest ? at[3 * i + 2] : widest;
	}
	for (uint64_t w = SPLIT_WINDOW; w < EPS_SPLIT; w = 2 * w + 1) {
		double need = 0;
		for (size_t i = 0; i < s && need <= (double)most; i++) {
			if (at[3 * i + 2] <= w)
				continue;
			const uint64_t np = cut_pieces(keys + at[3 * i],
						       at[3 * i + 1], w, ends,
						       most, stack);
			need += np ? (double)n / (double)s * (double)np /
					     (double)at[3 * i + 1]
				   : HUGE_VAL;
		}
		if (need <= (double)most) {
			const double r = 1.25 * need + 16;
			reserve = r < (double)most ? (uint64_t)r : most;
			break;
		}
		if (w >= widest)
			break;
	}
out:
	free(at);
	free(ends);
	free(stack);
	return reserve;
}

/* The result of split_all(). */
struct split_result {
	uint64_t splits, subs; /* leaves split, and their sub-leaves */
	uint64_t bound;	       /* the window bound met, 0 for none */
};

/*
 * Split the wide leaves (those fit_all() left, windows over SPLIT_WINDOW)
 * into sub-leaves, at most CAP - ROUTED of them, then check every key of
 * the wide leaves through the whole lookup path.  The bound is
 * SPLIT_WINDOW if the reserve holds the sub-leaves it needs, else the
 * first of 47, 95, 191, ... keys it holds; a leaf within the bound stays
 * a line.  ENOMEM, KYRO_ECORRUPT.
 */
static int split_all(const struct model *m, unsigned char *recs,
		     const uint64_t *keys, uint64_t routed, uint64_t cap,
		     const struct wide_list *wide, struct split_result *res,
		     double *wsum, double *wmax, char *errbuf, size_t errlen)
{
	const uint64_t max = cap - routed;
	uint64_t *ends = NULL, *stack = NULL;
	memset(res, 0, sizeof(*res));
	res->bound = SPLIT_WINDOW;
	if (wide->n && max) {
		ends = malloc(sizeof(*ends) * max);
		stack = malloc(sizeof(*stack) * 2 * (max + 2));
		if (ends == NULL || stack == NULL) {
			free(ends);
			free(stack);
			kyro__rmi_set_err(errbuf, errlen,
					  "out of memory building the index");
			return ENOMEM;
		}
	}
	res->bound = 0;
	for (uint64_t w = SPLIT_WINDOW; wide->n && max && w < EPS_SPLIT;
	     w = 2 * w + 1) {
		if (cut_all(keys, wide, w, ends, max, stack) != UINT64_MAX) {
			res->subs = put_split(recs, keys, wide, w, routed, ends);
			res->bound = w;
			break;
		}
	}
	if (wide->n == 0 && cap > routed)
		res->bound = SPLIT_WINDOW;
	free(ends);
	free(stack);
	for (size_t i = 0; i < wide->n; i++) {
		const struct wide_leaf *x = &wide->v[i];
		res->splits += res->bound && x->w > res->bound;
		const int err = check_run(m, keys, x->pos, x->pos + x->cnt,
					  wsum, wmax, errbuf, errlen);
		if (err)
			return err;
	}
	return 0;
}

/* The caller's arguments: keys present, sorted and unique, router bits
 * in range.  EINVAL.  Sortedness first: every later step (galloping, the
 * monotone leaf runs) depends on it.  One sequential pass, cheap next to
 * the rest. */
static int check_args(const uint64_t *keys, uint64_t n,
		      const struct kyro_rmi_params *p, char *errbuf,
		      size_t errlen)
{
	if (n > 0 && keys == NULL) {
		kyro__rmi_set_err(errbuf, errlen,
				  "no keys to build the index over");
		return EINVAL;
	}
	if (p->router_bits && (p->router_bits < KYRO_RMI_MIN_BITS ||
			       p->router_bits > KYRO_RMI_MAX_BITS)) {
		kyro__rmi_set_err(
			errbuf, errlen, "router bits %u outside %d..%d",
			p->router_bits, KYRO_RMI_MIN_BITS, KYRO_RMI_MAX_BITS);
		return EINVAL;
	}
	for (uint64_t i = 1; i < n; i++) {
		if (keys[i - 1] >= keys[i]) {
			kyro__rmi_set_err(
				errbuf, errlen,
				"keys are not sorted and unique at position "
				"%llu",
				(unsigned long long)i);
			return EINVAL;
		}
	}
	return 0;
}

/* The header of an image of shape SH over keys[0..N) of snapshot
 * generation SNAP_GEN, header checksum SNAP_SUM (see the top of rmi.c),
 * and M, the model over it. */
static void put_header(unsigned char *img, const uint64_t *keys, uint64_t n,
		       uint64_t snap_gen, uint64_t snap_sum,
		       const struct shape *sh,
		       struct model *m)
{
	const uint64_t first = n ? keys[0] : 0;
	const uint64_t last = n ? keys[n - 1] : 0;
	const unsigned shift = shift_of(sh->logr, first, last, sh->bits);
	memcpy(img, RMI_MAGIC, 8);
	put_le32(img + 8, KYRO_RMI_VERSION);
	put_le32(img + 12, sh->logr ? FLAG_LOG : 0);
	put_le64(img + 16, n);
	put_le64(img + 24, snap_gen);
	put_le64(img + 32, first);
	put_le64(img + 40, last);
	put_le64(img + 48, snap_sum);
	put_le32(img + 56, (uint32_t)sh->leaves);
	img[60] = (unsigned char)sh->bits;
	img[61] = (unsigned char)shift;
	model_shape(m, first, last, sh->logr, shift);
	m->router = img + HDR_SIZE;
	m->leaves = m->router + router_bytes(sh->bits);
}

/* A calloc'd image of TOTAL bytes for shape SH, within max_size.  EINVAL,
 * ENOMEM. */
static int alloc_image(const struct kyro_rmi_params *p, const struct shape *sh,
		       uint64_t total, unsigned char **img, char *errbuf,
		       size_t errlen)
{
	if (p->max_size && total > p->max_size) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"an index of %llu leaves and %u router bits takes "
			"%llu bytes, over the maximum of %llu",
			(unsigned long long)sh->leaves, sh->bits,
			(unsigned long long)total,
			(unsigned long long)p->max_size);
		return EINVAL;
	}
	*img = total > SIZE_MAX ? NULL : calloc(1, (size_t)total);
	return *img ? 0 : ENOMEM;
}

int kyro__rmi_train(const uint64_t *keys, uint64_t n, uint64_t snap_gen,
		    uint64_t snap_sum, const struct kyro_rmi_params *p,
		    void **buf, size_t *size,
		    struct kyro__rmi_build_stats *st, char *errbuf,
		    size_t errlen)
{
	static const struct kyro_rmi_params autop = { 0, 0, 0, 0 };
	unsigned char *img = NULL;
	struct shape sh = { 0, 0, 0, NULL };
	struct kyro__rmi *check = NULL;
	struct wide_list wide = { NULL, 0 };
	struct split_result split = { 0, 0, 0 };

	*buf = NULL;
	*size = 0;
	if (p == NULL)
		p = &autop;
	int err = check_args(keys, n, p, errbuf, errlen);
	if (!err)
		err = choose_shape(keys, n, p, &sh, errbuf, errlen);
	if (err)
		goto out;
	const uint64_t cap = p->leaves ? records_cap(p, sh.bits, sh.leaves)
				       : sh.leaves;
	err = alloc_image(p, &sh, image_bytes(sh.bits, cap), &img, errbuf,
			  errlen);
	if (err)
		goto out;

	struct model m;
	put_header(img, keys, n, snap_gen, snap_sum, &sh, &m);
	fill_router(img + HDR_SIZE, &m, sh.bits, sh.leaves, keys, n, sh.bounds,
		    0, 1);
	/* A tuned shape spends its whole budget on leaves: set aside what
	 * the sub-leaves need, and route over the rest. */
	const uint64_t reserve =
		p->leaves ? 0 : plan_reserve(&m, keys, n, sh.leaves);
	if (reserve) {
		sh.leaves -= reserve;
		fill_router(img + HDR_SIZE, &m, sh.bits, sh.leaves, keys, n,
			    sh.bounds, 0, 1);
	}
	double wsum = 0, wmax = 0;
	unsigned char *recs = img + HDR_SIZE + router_bytes(sh.bits);
	err = fit_all(&m, recs, keys, n, sh.leaves, p->threads, cap > sh.leaves,
		      &wsum, &wmax, &wide, errbuf, errlen);
	if (!err)
		err = split_all(&m, recs, keys, sh.leaves, cap, &wide, &split,
				&wsum, &wmax, errbuf, errlen);
	if (err)
		goto out;
	/* The records in use: the routed leaves and the sub-leaves. */
	const uint64_t total = image_bytes(sh.bits, sh.leaves + split.subs);
	put_le32(img + 56, (uint32_t)(sh.leaves + split.subs));
	put_le64(img + total - SUM_SIZE,
		 XXH3_64bits(img, (size_t)total - SUM_SIZE));
	unsigned char *fit = realloc(img, (size_t)total);
	img = fit ? fit : img;

	/* The loader's rules are the format's: the image must pass them. */
	err = kyro__rmi_load(&check, img, (size_t)total, keys, n, snap_gen,
			     snap_sum, errbuf, errlen);
	if (err)
		goto out;
	if (st) {
		st->leaves = sh.leaves + split.subs;
		st->split_leaves = split.splits;
		st->sub_leaves = split.subs;
		st->bound = split.bound;
		st->router_bits = sh.bits;
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
		kyro__rmi_set_err(errbuf, errlen,
				  "out of memory building the index");
	kyro__rmi_free(check);
	free(wide.v);
	free(sh.bounds);
	free(img);
	return err;
}
