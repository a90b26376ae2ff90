/*
 * vec_exact.c - exact k-NN: a scan of a plain array of vectors with a
 * bounded max-heap of the K best so far, and the heaps and query
 * preparation that the graph search shares.
 *
 * The scan passes the heap's worst distance as the L2 kernel's bound once
 * the heap is full, so a vector that cannot enter stops being read after
 * the first chunk that proves it (vec_dist.h): on 784 dimensions most
 * vectors are dropped after one or two of their seven chunks.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hnsw.h"
#include "internal.h"

static void sift_up_max(struct kyro__vec_cand *h, size_t i)
{
	const struct kyro__vec_cand c = h[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!kyro__cand_less(h[p], c))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = c;
}

void kyro__heap_push_max(struct kyro__vec_cand *h, size_t *n,
			 struct kyro__vec_cand c)
{
	h[*n] = c;
	sift_up_max(h, (*n)++);
}

void kyro__heap_pop_max(struct kyro__vec_cand *h, size_t *n)
{
	const size_t m = --*n;
	const struct kyro__vec_cand c = h[m];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, big;
		if (l >= m)
			break;
		big = l + 1 < m && kyro__cand_less(h[l], h[l + 1]) ? l + 1 : l;
		if (!kyro__cand_less(c, h[big]))
			break;
		h[i] = h[big];
		i = big;
	}
	if (m)
		h[i] = c;
}

void kyro__heap_push_min(struct kyro__vec_cand *h, size_t *n,
			 struct kyro__vec_cand c)
{
	size_t i = (*n)++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!kyro__cand_less(c, h[p]))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = c;
}

void kyro__heap_pop_min(struct kyro__vec_cand *h, size_t *n)
{
	const size_t m = --*n;
	const struct kyro__vec_cand c = h[m];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, small;
		if (l >= m)
			break;
		small = l + 1 < m && kyro__cand_less(h[l + 1], h[l]) ? l + 1
								     : l;
		if (!kyro__cand_less(h[small], c))
			break;
		h[i] = h[small];
		i = small;
	}
	if (m)
		h[i] = c;
}

int kyro__vec_reserve(struct kyro__vec_scratch *s, int which, size_t cap)
{
	struct kyro__vec_cand **p = which ? &s->cand : &s->res;
	size_t *have = which ? &s->capcand : &s->capres;
	if (cap <= *have)
		return 0;
	size_t want = *have ? *have : 64;
	while (want < cap)
		want *= 2;
	struct kyro__vec_cand *np = realloc(*p, want * sizeof *np);
	if (!np)
		return ENOMEM;
	*p = np;
	*have = want;
	return 0;
}

int kyro__vec_prepare(char *msg, struct kyro__vec_scratch *s, int metric,
		      const float *query, uint32_t dim)
{
	if (dim != s->qdim)
		return kyro__failx(msg, EINVAL,
				   "query has %u dimensions, the index %u", dim,
				   s->qdim);
	for (uint32_t i = 0; i < dim; i++)
		if (!isfinite(query[i]))
			return kyro__failx(msg, EINVAL,
					   "query component %u is not a finite "
					   "number",
					   i);
	memcpy(s->q, query, (size_t)dim * sizeof *query);
	if (metric == KYRO_VEC_COS)
		kyro__vec_normalize(s->q, dim);
	return 0;
}

/* Sort the max-heap S->res ascending in place (heap order consumed). */
static void drain_sorted(struct kyro__vec_scratch *s)
{
	size_t n = s->nres;
	while (n > 1) {
		const struct kyro__vec_cand top = s->res[0];
		kyro__heap_pop_max(s->res, &n);
		s->res[n] = top;
	}
}

int kyro__vec_exact(const struct kyro__vec_set *set,
		    const struct kyro__vec_ops *ops,
		    struct kyro__vec_scratch *s, uint64_t a, uint64_t b,
		    uint32_t k, struct kyro__vec_hit *out, uint32_t *count)
{
	*count = 0;
	if (kyro__vec_reserve(s, 0, (size_t)k + 1))
		return ENOMEM;
	s->nres = 0;
	float bound = INFINITY;
	const float *v = set->vecs + a * set->stride;
	for (uint64_t i = a; i < b; i++, v += set->stride) {
		/* Prefetch a few vectors ahead: the scan is bound by memory. */
		__builtin_prefetch(v + 4 * set->stride);
		const float d = kyro__vec_dist(ops, set->metric, s->q, v,
					       set->dim, bound);
		/* Node ids of a set are positions: i orders ties by key. */
		const struct kyro__vec_cand c = {d, (uint32_t)(i - a)};
		if (s->nres < k) {
			kyro__heap_push_max(s->res, &s->nres, c);
		} else if (kyro__cand_less(c, s->res[0])) {
			kyro__heap_pop_max(s->res, &s->nres);
			kyro__heap_push_max(s->res, &s->nres, c);
		} else {
			continue;
		}
		if (s->nres == k)
			bound = s->res[0].d;
	}
	s->ndist += b - a;
	drain_sorted(s);
	for (size_t j = 0; j < s->nres; j++) {
		out[j].key = set->keys[a + s->res[j].id];
		out[j].dist = s->res[j].d;
	}
	*count = (uint32_t)s->nres;
	return 0;
}
