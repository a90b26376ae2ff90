/*
 * rmi_leaves.c - the learned index's leaves: fitting each leaf's line
 * and measuring its error, on two threads, checking every key through the
 * lookup path, and splitting the leaves whose windows exceed the bound
 * into sub-leaves (format 4, see rmi.c and docs/RMI.md, "Split leaves").
 * The shape, the router and the image are rmi_build.c's.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kyro.h"
#include "rmi.h"
#include "rmi_build.h"
#include "rmi_model.h"

#include "banned.h"

/* The keys kyro__rmi_plan_reserve() samples: as many as the tuner. */
#define RESERVE_SAMPLES 1024

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

double kyro__rmi_best_slope(const uint64_t *k, uint64_t m, uint64_t *el,
			    uint64_t *eh)
{
	const double s = fit_slope(k, m);
	leaf_errors(k, m, s, el, eh);
	return s;
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
	int split;          /* collect the wide leaves */
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
 * than SPLIT_WINDOW is stored as a line too, but left to
 * kyro__rmi_split_all() to split and check.
 */
static void *fit_leaves(void *arg)
{
	struct leaf_job *j = arg;
	const struct model *m = j->m;
	const uint64_t *keys = j->keys;
	uint64_t pos = j->pos;
	for (uint64_t l = j->l0; l < j->l1 && !j->err; l++) {
		const uint64_t e = kyro__rmi_leaf_end(m, keys, j->n, pos, l);
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
		const double slope = kyro__rmi_best_slope(keys + pos, cnt, &el, &eh);
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
		if (!err && (h == 0 || halves) && half[h].nwide) {
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
int kyro__rmi_fit_all(const struct model *m, unsigned char *recs,
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
		half[1].pos = kyro__rmi_leaf_start(m, keys, n, leaves / 2);
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
	kyro__rmi_best_slope(k, m, &el, &eh);
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
				kyro__rmi_best_slope(keys + x->pos + a, b - a, &el, &eh);
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
 * leaves of RESERVE_SAMPLES sampled keys, take at most 1 / SPLIT_RESERVE of
 * the records; 0 if none does.  Sampling keys weighs each leaf by its
 * keys, so a sampled leaf stands for (n / samples) / its keys leaves.
 * A smooth distribution (uniform keys) has wide leaves from chance
 * alone, too many to split, and few beyond 47 keys: it keeps nearly all
 * its records as leaves.  ENOMEM sets aside nothing.
 */
uint64_t kyro__rmi_plan_reserve(const struct model *m, const uint64_t *keys,
				uint64_t n, uint64_t leaves)
{
	const uint64_t most = leaves / SPLIT_RESERVE;
	const size_t s = n < RESERVE_SAMPLES ? (size_t)n : RESERVE_SAMPLES;
	if (most == 0 || n < 2)
		return 0;
	uint64_t *at = malloc(sizeof(*at) * 3 * s);
	uint64_t *ends = malloc(sizeof(*ends) * most);
	uint64_t *stack = malloc(sizeof(*stack) * 2 * (most + 2));
	uint64_t reserve = 0, seed = 0x53504c4954ULL ^ n, widest = 0;
	if (at == NULL || ends == NULL || stack == NULL)
		goto out;
	for (size_t i = 0; i < s; i++) {
		const uint64_t k = kyro__rmi_splitmix(&seed) % n;
		const uint64_t l = route(m, keys[k]);
		const uint64_t a = kyro__rmi_leaf_start(m, keys, k, l);
		at[3 * i] = a;
		at[3 * i + 1] = kyro__rmi_leaf_end(m, keys, n, k, l) - a;
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

/*
 * Split the wide leaves (those kyro__rmi_fit_all() left, windows over
 * SPLIT_WINDOW) into sub-leaves, at most CAP - ROUTED of them, then
 * check every key of the wide leaves through the whole lookup path.  The bound is
 * SPLIT_WINDOW if the reserve holds the sub-leaves it needs, else the
 * first of 47, 95, 191, ... keys it holds; a leaf within the bound stays
 * a line.  ENOMEM, KYRO_ECORRUPT.
 */
int kyro__rmi_split_all(const struct model *m, unsigned char *recs,
			const uint64_t *keys, uint64_t routed, uint64_t cap,
			const struct wide_list *wide,
			struct kyro__rmi_split *res, double *wsum,
			double *wmax, char *errbuf, size_t errlen)
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

