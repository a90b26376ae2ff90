/*
 * hnsw_build.c - building the graph (Malkov and Yashunin's HNSW, with the
 * neighbour-selection heuristic hnswlib uses), straight into the arrays
 * the file holds.
 *
 * Levels are drawn before anything is inserted, from a splitmix64 stream
 * of the seed and the node id, so a build is reproducible and the upper
 * link blocks can be laid out in one pass (node i's levels 1..L(i) take L
 * consecutive blocks).  Nodes are inserted in id order, which is key
 * order.
 *
 * Inserting node q of level L: descend greedily from the entry point to
 * level L + 1; then on each level from min(L, top) down to 0 search with
 * ef_construction, keep at most M of the candidates by the heuristic
 * (a candidate is dropped when it is nearer to one already kept than to
 * q: that keeps links spread in direction, not all into one cluster), and
 * link both ways.  A node whose list is full re-selects among its links
 * and q with the same heuristic, to at most m0 links on level 0 and m
 * above.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hnsw.h"
#include "internal.h"

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* floor(-ln(u) / ln(m)), u uniform in (0, 1], capped. */
static uint8_t draw_level(uint64_t seed, uint64_t i, uint32_t m)
{
	const uint64_t r = splitmix64(seed ^ splitmix64(i));
	const double u = ((double)(r >> 11) + 1.0) / 9007199254740992.0;
	const double l = -log(u) / log((double)m);
	return l >= KYRO_HNSW_MAX_LEVEL ? KYRO_HNSW_MAX_LEVEL : (uint8_t)l;
}

static float dist_nodes(const struct kyro__hnsw *h, uint32_t x, uint32_t y,
			float bound)
{
	return kyro__vec_dist(h->ops, (int)h->metric,
			      h->vecs + (uint64_t)x * h->stride,
			      h->vecs + (uint64_t)y * h->stride, h->dim, bound);
}

static uint32_t *links_of(const struct kyro__hnsw *h, uint32_t v, int level)
{
	if (level == 0)
		return h->adj0 + (uint64_t)v * (1 + (uint64_t)h->m0);
	const uint64_t blk = (uint64_t)h->upidx[v] + (uint64_t)level - 1;
	return h->upper + blk * (1 + (uint64_t)h->m);
}

/*
 * The heuristic over C[0..N) sorted nearest first (distances to the base
 * node): keep at most MAX; the kept ones move to the front.  Returns how
 * many were kept.  Fewer candidates than MAX are all kept, as in hnswlib.
 */
static size_t select_neighbours(const struct kyro__hnsw *h,
				struct kyro__vec_cand *c, size_t n, size_t max)
{
	if (n <= max)
		return n;
	size_t kept = 0;
	for (size_t i = 0; i < n && kept < max; i++) {
		const float di = c[i].d;
		int good = 1;
		for (size_t j = 0; j < kept && good; j++)
			/* Bounded by di: a kernel that stops early returns
			 * more than di, which keeps the candidate. */
			good = !(dist_nodes(h, c[i].id, c[j].id, di) < di);
		if (good)
			c[kept++] = c[i];
	}
	return kept;
}

static int cmp_cand(const void *x, const void *y)
{
	const struct kyro__vec_cand *a = x, *b = y;
	return kyro__cand_less(*a, *b) ? -1 : kyro__cand_less(*b, *a);
}

/* Add Q to V's links at LEVEL, re-selecting when the list is full. */
static void link_back(const struct kyro__hnsw *h, uint32_t v, uint32_t q,
		      float dq, int level)
{
	uint32_t *p = links_of(h, v, level);
	const uint32_t cap = level ? h->m : h->m0;
	if (p[0] < cap) {
		p[1 + p[0]++] = q;
		return;
	}
	struct kyro__vec_cand c[2 * KYRO_HNSW_MAX_M + 1];
	for (uint32_t j = 0; j < cap; j++)
		c[j] = (struct kyro__vec_cand){
			dist_nodes(h, v, p[1 + j], INFINITY), p[1 + j]};
	c[cap] = (struct kyro__vec_cand){dq, q};
	qsort(c, cap + 1, sizeof *c, cmp_cand);
	const size_t kept = select_neighbours(h, c, cap + 1, cap);
	for (size_t j = 0; j < kept; j++)
		p[1 + j] = c[j].id;
	p[0] = (uint32_t)kept;
}

static int insert(char *msg, struct kyro__hnsw *h, struct kyro__vec_scratch *s,
		  uint32_t q)
{
	const int lq = h->levels[q];
	uint32_t ep = (uint32_t)h->entry;
	float dep = dist_nodes(h, q, ep, INFINITY);
	int rc;
	memcpy(s->q, h->vecs + (uint64_t)q * h->stride, 4 * (size_t)h->dim);
	for (int l = (int)h->top; l > lq; l--)
		if ((rc = kyro__hnsw_greedy(msg, h, s, &ep, &dep, l)))
			return rc;
	for (int l = lq < (int)h->top ? lq : (int)h->top; l >= 0; l--) {
		rc = kyro__hnsw_layer(msg, h, s, ep, dep, l, h->efc, 0, h->n);
		if (rc)
			return rc;
		/* The layer's answer, nearest first, q itself excluded (it is
		 * not linked yet, so it cannot be reached). */
		size_t n = s->nres;
		while (n > 1) {
			const struct kyro__vec_cand top = s->res[0];
			kyro__heap_pop_max(s->res, &n);
			s->res[n] = top;
		}
		const size_t kept = select_neighbours(h, s->res, s->nres, h->m);
		uint32_t *p = links_of(h, q, l);
		for (size_t j = 0; j < kept; j++)
			p[1 + j] = s->res[j].id;
		p[0] = (uint32_t)kept;
		for (size_t j = 0; j < kept; j++)
			link_back(h, s->res[j].id, q, s->res[j].d, l);
		ep = s->res[0].id;
		dep = s->res[0].d;
	}
	if (lq > (int)h->top) {
		h->top = (uint32_t)lq;
		h->entry = q;
	}
	return 0;
}

static int check_input(char *msg, const uint64_t *keys, const float *vecs,
		       uint64_t n, uint32_t dim,
		       const struct kyro__hnsw_params *p)
{
	if (dim == 0 || dim > KYRO_HNSW_MAX_DIM)
		return kyro__failx(msg, EINVAL,
				   "dimension %u is not in 1..%u", dim,
				   KYRO_HNSW_MAX_DIM);
	if (p->m < 2 || p->m > KYRO_HNSW_MAX_M)
		return kyro__failx(msg, EINVAL, "M %u is not in 2..%u", p->m,
				   KYRO_HNSW_MAX_M);
	if (p->ef_construction < 1)
		return kyro__failx(msg, EINVAL,
				   "efConstruction must be at least 1");
	if (p->metric < 0 || p->metric >= KYRO_VEC_NMETRICS)
		return kyro__failx(msg, EINVAL, "unknown metric %d", p->metric);
	if (n >= UINT32_MAX)
		return kyro__failx(msg, EINVAL, "%llu vectors: at most %u",
				   (unsigned long long)n, UINT32_MAX - 1);
	for (uint64_t i = 0; i < n; i++) {
		if (i && keys[i] <= keys[i - 1])
			return kyro__failx(msg, EINVAL,
					   "keys not ascending at %llu",
					   (unsigned long long)i);
		if (kyro__vec_check_finite(vecs + i * dim, dim))
			return kyro__failx(msg, EINVAL,
					   "key %llu: a component is not a "
					   "finite number",
					   (unsigned long long)keys[i]);
	}
	return 0;
}

/* The arrays of an index of N nodes with the levels already drawn. */
static int alloc_arrays(struct kyro__hnsw *h)
{
	const uint64_t n = h->n ? h->n : 1;
	h->vecs = aligned_alloc(64, n * h->stride * 4);
	h->keys = malloc(n * 8);
	h->levels = malloc(n);
	h->upidx = calloc(n, 4);
	h->adj0 = calloc(n * (1 + (uint64_t)h->m0), 4);
	if (!h->vecs || !h->keys || !h->levels || !h->upidx || !h->adj0)
		return ENOMEM;
	return 0;
}

int kyro__hnsw_build(char *msg, const uint64_t *keys, const float *vecs,
		     uint64_t n, uint32_t dim,
		     const struct kyro__hnsw_params *p, struct kyro__hnsw **out)
{
	struct kyro__hnsw *h;
	struct kyro__vec_scratch *s = NULL;
	int rc;
	*out = NULL;
	if ((rc = check_input(msg, keys, vecs, n, dim, p)))
		return rc;
	if (!(h = calloc(1, sizeof *h)))
		return kyro__fail(msg, ENOMEM, "cannot build the index");
	*h = (struct kyro__hnsw){
		.dim = dim, .metric = (uint32_t)p->metric, .m = p->m,
		.m0 = 2 * p->m, .efc = p->ef_construction, .n = n,
		.stride = (dim + 15u) & ~(uint64_t)15, .seed = p->seed,
		.generation = p->generation, .binding = p->binding,
		.ops = kyro__vec_ops_best()};
	if ((rc = alloc_arrays(h)))
		goto fail;
	for (uint64_t i = 0; i < n; i++) {
		float *v = h->vecs + i * h->stride;
		memcpy(v, vecs + i * dim, 4 * (size_t)dim);
		memset(v + dim, 0, 4 * (size_t)(h->stride - dim));
		if (h->metric == KYRO_VEC_COS)
			kyro__vec_normalize(v, dim);
		h->keys[i] = keys[i];
		h->levels[i] = draw_level(p->seed, i, p->m);
		h->upidx[i] = (uint32_t)h->nupper;
		h->nupper += h->levels[i];
		/* Expected n / (M - 1) in all; a u32 is far beyond it. */
		if (h->nupper > UINT32_MAX - KYRO_HNSW_MAX_LEVEL) {
			rc = EOVERFLOW;
			goto fail;
		}
	}
	h->upper = calloc(h->nupper ? h->nupper * (1 + (uint64_t)h->m) : 1, 4);
	s = kyro__vec_scratch_new(n, dim);
	if (!h->upper || !s) {
		rc = ENOMEM;
		goto fail;
	}
	if (n) {
		h->top = h->levels[0];
		h->entry = 0;
	}
	for (uint64_t i = 1; i < n; i++)
		if ((rc = insert(msg, h, s, (uint32_t)i)))
			goto fail_msg;
	kyro__vec_scratch_free(s);
	*out = h;
	return 0;
fail:
	rc = kyro__fail(msg, rc, "cannot build the index");
fail_msg:
	kyro__vec_scratch_free(s);
	kyro__hnsw_free(h);
	return rc;
}
