/*
 * rmi_build.c - building the learned index: the shape tuner (router kind,
 * router bits, leaf count within a size budget), the router with its
 * cuts at wide gaps, and the image, whose leaves rmi_leaves.c fits,
 * checks and splits.  The image it writes is the format stated at the
 * top of rmi.c, and it is checked by the loader before it is returned.
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
#include "rmi_build.h"
#include "rmi_model.h"

#include "banned.h"

#define MIN_BUDGET 4096
/* Auto-tune: keys sampled per candidate, and the fewest keys a candidate
 * may examine before its estimate is taken from the samples seen so far.
 * Above that floor all candidates together examine at most n / 4 keys, so
 * tuning costs a fraction of the build at any n, with huge leaves or
 * many candidates. */
#define TUNE_SAMPLES 1024
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
/* The float next below F > 0 (nextafterf(F, 0), without libm, which the
 * tools otherwise do not load). */
static float float_below(float f)
{
	uint32_t b;
	memcpy(&b, &f, sizeof b);
	b--;
	memcpy(&f, &b, sizeof f);
	return f;
}

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
		sf = float_below(sf);
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
uint64_t kyro__rmi_leaf_end(const struct model *m, const uint64_t *keys,
			    uint64_t n, uint64_t pos, uint64_t l)
{
	return gallop_to(m, 0, keys, n, pos, l + 1);
}

/* The start of the run of keys routed to L, which contains position I. */
uint64_t kyro__rmi_leaf_start(const struct model *m, const uint64_t *keys,
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

uint64_t kyro__rmi_splitmix(uint64_t *s)
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
		const uint64_t a = kyro__rmi_leaf_start(m, keys, i, l);
		const uint64_t e = kyro__rmi_leaf_end(m, keys, n, i, l);
		uint64_t el, eh;
		kyro__rmi_best_slope(keys + a, e - a, &el, &eh);
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
 * (kyro__rmi_plan_reserve() then sets some aside for sub-leaves). */
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
		x.samples[i] = kyro__rmi_splitmix(&seed) % n;
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
	struct kyro__rmi_split split = { 0, 0, 0 };

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
		p->leaves ? 0 : kyro__rmi_plan_reserve(&m, keys, n, sh.leaves);
	if (reserve) {
		sh.leaves -= reserve;
		fill_router(img + HDR_SIZE, &m, sh.bits, sh.leaves, keys, n,
			    sh.bounds, 0, 1);
	}
	double wsum = 0, wmax = 0;
	unsigned char *recs = img + HDR_SIZE + router_bytes(sh.bits);
	err = kyro__rmi_fit_all(&m, recs, keys, n, sh.leaves, p->threads,
				cap > sh.leaves, &wsum, &wmax, &wide, errbuf,
				errlen);
	if (!err)
		err = kyro__rmi_split_all(&m, recs, keys, sh.leaves, cap,
					  &wide, &split, &wsum, &wmax, errbuf,
					  errlen);
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
