/*
 * vec_snap.c - the snapshot's vectors: the vectors file, the graph in
 * use, and the snapshot's half of a search.
 *
 * THE VECTORS FILE, vec-GEN.vec (GEN: the snapshot generation), holds the
 * snapshot's vectors exactly as they were put, sorted by key.  Its format
 * is the vector index's (hnsw.c states it byte by byte) with no graph:
 * metric 0, M 2, every node on level 0 with an empty link list, entry 0,
 * no upper blocks.  So it is checked the same way (header and layout at
 * open, O(1); each 4 KiB block against its XXH3-64 the first time a read
 * needs it) and one reader serves both.  The header's generation is the
 * snapshot generation and its binding the snapshot header's checksum: a
 * vectors file that does not belong to the snapshot is refused.  The file
 * is written by the fold before the manifest that names it (manifest.c,
 * offset 80) is committed, and is removed with its snapshot.  A store
 * whose vectors were all deleted still has one (n = 0): it carries the
 * store's dimension.
 *
 * THE GRAPH, hnsw-ID.idx, is the vector index proper (hnsw.c), built from
 * the vectors file by kyro_vec_build() or a snapshot, bound to the same
 * snapshot the same way, and named by the manifest (offsets 88, 96).  For
 * cosine it holds normalised vectors, which is why the vectors file stays
 * beside it: kyro_vec_get() returns what was put.  A graph that does not
 * open, does not belong to the snapshot, or does not hold the same
 * vectors count and dimension is refused (the reason kept for
 * kyro_vec_info()) and searches scan the vectors file instead.
 *
 * Damage a search or a lookup reads is KYRO_ECORRUPT naming the file and
 * the offset (hnsw.c's block checks), never a wrong answer.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"
#include "kyro.h"
#include "vec_store.h"

int kyro__vstore_path(char *path, const char *dir, uint64_t gen)
{
	return kyro__path_gen(path, dir, "vec-", gen, ".vec");
}

int kyro__vstore_graph_path(char *path, const char *dir, uint64_t id)
{
	return kyro__path_gen(path, dir, "hnsw-", id, ".idx");
}

void kyro__vstore_free(struct kyro__vstore *vs)
{
	kyro__hnsw_free(vs->vecs);
	kyro__hnsw_free(vs->graph);
	memset(vs, 0, sizeof *vs);
}

static void graph_load(struct kyro__vstore *vs, const char *dir,
		       const struct manifest *m, uint64_t binding)
{
	char path[PATH_MAX], err[KMSG_MAX];
	struct kyro__hnsw *g = NULL;
	if (!m->hnsw_gen || m->hnsw_snap != m->snap_gen) {
		snprintf(vs->why, sizeof vs->why,
			 "the snapshot has no vector index: searches scan "
			 "every vector (build one with kyro_vec_build())");
		return;
	}
	vs->refused = 1;
	if (kyro__vstore_graph_path(path, dir, m->hnsw_gen)) {
		snprintf(vs->why, sizeof vs->why, "vector index refused: "
			 "path too long");
		return;
	}
	if (kyro__hnsw_open(err, path, &g)) {
		snprintf(vs->why, sizeof vs->why,
			 "vector index refused: %.480s", err);
		return;
	}
	if (g->generation != m->snap_gen || g->binding != binding ||
	    g->n != vs->vecs->n || g->dim != vs->vecs->dim) {
		snprintf(vs->why, sizeof vs->why,
			 "vector index '%.300s' refused: it was not built "
			 "from this snapshot's vectors",
			 path);
		kyro__hnsw_free(g);
		return;
	}
	vs->graph = g;
	vs->graph_bytes = g->maplen;
	vs->refused = 0;
	vs->why[0] = 0;
}

int kyro__vstore_load(char *msg, struct kyro__vstore *vs, const char *dir,
		      const struct manifest *m, uint64_t binding, int no_graph)
{
	char path[PATH_MAX];
	memset(vs, 0, sizeof *vs);
	if (!m->snap_gen || m->vec_snap != m->snap_gen)
		return 0;
	int rc = kyro__vstore_path(path, dir, m->snap_gen);
	if (rc)
		return kyro__fail(msg, rc, "cannot open the vectors of '%s'",
				  dir);
	if ((rc = kyro__hnsw_open(msg, path, &vs->vecs)) != 0)
		return rc;
	if (vs->vecs->generation != m->snap_gen ||
	    vs->vecs->binding != binding) {
		kyro__vstore_free(vs);
		return kyro__failx(msg, KYRO_ECORRUPT,
				   "'%s': offset 64: not the vectors of "
				   "snapshot %llu",
				   path, (unsigned long long)m->snap_gen);
	}
	vs->vecs_bytes = vs->vecs->maplen;
	if (no_graph)
		snprintf(vs->why, sizeof vs->why,
			 "the vector index is not used by this handle");
	else
		graph_load(vs, dir, m, binding);
	return 0;
}

uint32_t kyro__vstore_dim(const struct kyro__vstore *vs)
{
	return vs->vecs ? vs->vecs->dim : 0;
}

uint64_t kyro__vstore_count(const struct kyro__vstore *vs)
{
	return vs->vecs ? vs->vecs->n : 0;
}

int kyro__vstore_metric(const struct kyro__vstore *vs)
{
	return vs->graph ? (int)vs->graph->metric : KYRO_VEC_L2;
}

uint64_t kyro__vstore_nodes(const struct kyro__vstore *vs)
{
	return vs->graph ? vs->graph->n : 0;
}

/* First node of H whose key is not below KEY (above it: UPPER), reading
 * only verified keys. */
static int bound(char *msg, const struct kyro__hnsw *h, uint64_t key,
		 int upper, uint64_t *pos)
{
	uint64_t lo = 0, hi = h->n;
	while (lo < hi) {
		const uint64_t mid = lo + (hi - lo) / 2;
		int rc = kyro__hnsw_touch(msg, h, h->keys + mid, 8);
		if (rc)
			return rc;
		if (h->keys[mid] < key || (upper && h->keys[mid] == key))
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return 0;
}

int kyro__vstore_snap_get(char *msg, const struct kyro__vstore *vs,
			  uint64_t key, const float **vec, uint32_t *dim)
{
	const struct kyro__hnsw *h = vs->vecs;
	uint64_t i;
	if (!h)
		return KYRO_ENOTFOUND;
	int rc = bound(msg, h, key, 0, &i);
	if (rc)
		return rc;
	if (i == h->n || h->keys[i] != key)
		return KYRO_ENOTFOUND;
	const float *v = h->vecs + i * h->stride;
	if ((rc = kyro__hnsw_touch(msg, h, v, 4 * (uint64_t)h->dim)) != 0)
		return rc;
	*vec = v;
	*dim = h->dim;
	return 0;
}

/* A scan of the vectors file's nodes [A, B) for S->q (prepared for
 * METRIC), skipping shadowed keys.  The vectors are as put, so cosine
 * divides by each one's norm. */
static int scan(char *msg, const struct kyro__hnsw *h,
		struct kyro__vec_scratch *s, uint64_t a, uint64_t b,
		const struct kyro__vstore_query *q, struct kyro__vec_hit *out,
		uint32_t *n)
{
	const float *v = h->vecs + a * h->stride;
	const struct kyro__vec_ops *ops = h->ops;
	const uint64_t voff = (uint64_t)((const unsigned char *)v - h->map);
	const uint64_t koff =
		(uint64_t)((const unsigned char *)(h->keys + a) - h->map);
	int rc;
	/* The scan reads the range's blocks in order: verify them first. */
	if ((rc = kyro__hnsw_check(msg, h, voff,
				   (b - a - 1) * 4 * h->stride +
					   4 * (uint64_t)h->dim)) ||
	    (rc = kyro__hnsw_check(msg, h, koff, 8 * (b - a))))
		return rc;
	if (kyro__vec_reserve(s, 0, (size_t)q->k + 1))
		return kyro__fail(msg, ENOMEM, "cannot search");
	s->nres = 0;
	float worst = INFINITY;
	for (uint64_t i = a; i < b; i++, v += h->stride) {
		__builtin_prefetch(v + 4 * h->stride);
		if (q->shadow->count && delta_get(q->shadow, h->keys[i]))
			continue;
		float d;
		if (q->metric == KYRO_VEC_L2) {
			d = ops->l2(s->q, v, h->dim, worst);
		} else {
			d = ops->dot(s->q, v, h->dim);
			if (q->metric == KYRO_VEC_COS) {
				float nn = sqrtf(ops->dot(v, v, h->dim));
				d = nn > 0 ? d / nn : 0;
			}
			d = 1.0f - d;
		}
		s->ndist++;
		const struct kyro__vec_cand c = {d, (uint32_t)(i - a)};
		if (s->nres < q->k) {
			kyro__heap_push_max(s->res, &s->nres, c);
		} else if (kyro__cand_less(c, s->res[0])) {
			kyro__heap_pop_max(s->res, &s->nres);
			kyro__heap_push_max(s->res, &s->nres, c);
		} else {
			continue;
		}
		if (s->nres == q->k)
			worst = s->res[0].d;
	}
	size_t m = s->nres;
	while (m > 1) {
		const struct kyro__vec_cand top = s->res[0];
		kyro__heap_pop_max(s->res, &m);
		s->res[m] = top;
	}
	for (size_t j = 0; j < s->nres; j++) {
		out[j].key = h->keys[a + s->res[j].id];
		out[j].dist = s->res[j].d;
	}
	*n = (uint32_t)s->nres;
	return 0;
}

/* Through the graph: ask for more than K while shadowed keys take
 * places, until K survive or the graph has no more to give. */
static int via_graph(char *msg, const struct kyro__hnsw *g,
		     struct kyro__vec_scratch *s, const float *query,
		     const struct kyro__vstore_query *q,
		     struct kyro__vec_hit *out, uint32_t *n)
{
	uint64_t want = q->k;
	if (q->shadow->count)
		want += q->shadow->count < q->k ? q->shadow->count : q->k;
	for (;;) {
		if (want > g->n)
			want = g->n;
		struct kyro__vec_hit *tmp = malloc(want * sizeof *tmp);
		uint32_t got = 0, kept = 0;
		if (!tmp)
			return kyro__fail(msg, ENOMEM, "cannot search");
		uint32_t ef = q->ef ? q->ef : KYRO_VEC_EF_DEFAULT;
		int rc = kyro__hnsw_search(msg, g, s, query, g->dim,
					   (uint32_t)want,
					   ef < want ? (uint32_t)want : ef,
					   q->lo, q->hi, 0, tmp, &got);
		for (uint32_t i = 0; !rc && i < got && kept < q->k; i++)
			if (!q->shadow->count ||
			    !delta_get(q->shadow, tmp[i].key))
				out[kept++] = tmp[i];
		free(tmp);
		if (rc)
			return rc;
		if (kept == q->k || got < want || want == g->n) {
			*n = kept;
			return 0;
		}
		want *= 2;
	}
}

int kyro__vstore_search(char *msg, const struct kyro__vstore *vs,
			struct kyro__vec_scratch *s, const float *query,
			const struct kyro__vstore_query *q,
			struct kyro__vec_hit *out, uint32_t *n)
{
	const struct kyro__hnsw *h = vs->vecs;
	*n = 0;
	if (!h || h->n == 0)
		return 0;
	if (vs->graph && !q->exact && (int)vs->graph->metric == q->metric)
		return via_graph(msg, vs->graph, s, query, q, out, n);
	uint64_t a, b;
	int rc;
	if ((rc = bound(msg, h, q->lo, 0, &a)) ||
	    (rc = bound(msg, h, q->hi, 1, &b)))
		return rc;
	if (a >= b)
		return 0;
	return scan(msg, h, s, a, b, q, out, n);
}

int kyro__vstore_write(char *msg, const char *dir, uint64_t gen,
		       uint64_t binding, const uint64_t *keys,
		       const float *vecs, uint64_t n, uint32_t dim,
		       uint64_t *bytes)
{
	char path[PATH_MAX];
	struct kyro__hnsw *h = calloc(1, sizeof *h);
	int rc = ENOMEM;
	if (!h)
		return kyro__fail(msg, rc, "cannot write the vectors");
	*h = (struct kyro__hnsw){.dim = dim, .metric = KYRO_VEC_L2, .m = 2,
				 .m0 = 4, .n = n,
				 .stride = (dim + 15u) & ~(uint64_t)15,
				 .generation = gen, .binding = binding};
	const uint64_t n1 = n ? n : 1;
	h->vecs = aligned_alloc(64, n1 * h->stride * 4);
	h->keys = malloc(n1 * 8);
	h->levels = calloc(n1, 1);
	h->upidx = calloc(n1, 4);
	h->adj0 = calloc(n1 * (1 + (uint64_t)h->m0), 4);
	h->upper = calloc(1 + h->m, 4);
	if (h->vecs && h->keys && h->levels && h->upidx && h->adj0 &&
	    h->upper) {
		for (uint64_t i = 0; i < n; i++) {
			float *v = h->vecs + i * h->stride;
			memcpy(v, vecs + i * dim, 4 * (size_t)dim);
			memset(v + dim, 0, 4 * (size_t)(h->stride - dim));
		}
		if (n)
			memcpy(h->keys, keys, 8 * n);
		rc = kyro__vstore_path(path, dir, gen);
		if (!rc)
			rc = kyro__hnsw_write(msg, h, dir, path);
		else
			rc = kyro__fail(msg, rc, "cannot write the vectors");
	} else {
		rc = kyro__fail(msg, rc, "cannot write the vectors");
	}
	kyro__hnsw_free(h);
	if (!rc && bytes) {
		struct kyro__hnsw *o;
		char err[KMSG_MAX];
		*bytes = 0;
		if (!kyro__hnsw_open(err, path, &o)) {
			*bytes = o->maplen;
			kyro__hnsw_free(o);
		}
	}
	return rc;
}

#define VEC_SEED_DEFAULT 0x4b59524f56454331ull /* "KYROVEC1" */

int kyro__vec_params_resolve(char *msg, const struct kyro_vec_params *p,
			     struct kyro_vec_params *out)
{
	struct kyro_vec_params q = {0};
	if (p)
		q = *p;
	if (!q.m)
		q.m = 16;
	if (!q.ef_construction)
		q.ef_construction = 200;
	if (!q.metric)
		q.metric = KYRO_METRIC_L2;
	if (!q.seed)
		q.seed = VEC_SEED_DEFAULT;
	if (q.m < 2 || q.m > KYRO_HNSW_MAX_M)
		return kyro__failx(msg, EINVAL, "M is %u; 2 to %u are allowed",
				   q.m, (unsigned)KYRO_HNSW_MAX_M);
	if (q.metric < KYRO_METRIC_L2 || q.metric > KYRO_METRIC_COSINE)
		return kyro__failx(msg, EINVAL, "unknown metric %d", q.metric);
	*out = q;
	return 0;
}
