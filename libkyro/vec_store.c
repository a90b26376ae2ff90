/*
 * vec_store.c - vectors in the store: kyro_vec_put(), kyro_vec_get(),
 * kyro_vec_dim(), kyro_vec_search(), kyro_vec_info().
 *
 * Part of the handle (it reads struct kyro_db, db.h).  A key's vector is a
 * VECTOR record in the WAL (wal.c), found through the view's vector delta
 * (view.c) until a snapshot folds it into the snapshot's vectors file
 * (vec_file.c); a DELETE removes it with the value.  The store's dimension
 * is fixed by the first vector ever written: the view knows it from the
 * snapshot's vectors file or the first VECTOR record it applied, and a
 * writer, holding the lock with its view caught up, also from the open
 * batch.
 *
 * A search answers from two sources merged by (distance, key): the
 * snapshot's vectors (through the graph when one is in use and of the
 * metric asked, else scanned) and an exact scan of the delta's live
 * vectors.  A snapshot vector whose key the delta deleted or overwrote is
 * dropped before it can take a place in the answer.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "db.h"
#include "hnsw.h"
#include "simd.h"
#include "vec_store.h"

/* The handle's search state: scratch and the delta's live vectors,
 * gathered sorted by key (and normalised for cosine) once per change of
 * the delta rather than once per search. */
struct vec_state {
	struct kyro__vec_scratch *s;
	uint64_t s_n;
	uint32_t s_dim;
	uint64_t c_epoch, c_ops; /* what the gathered set was made of */
	int c_metric, c_valid;
	uint64_t *dkeys;
	float *dvecs;
	uint64_t dn, dcap;
	uint32_t ddim;
	struct kyro__vec_hit *a, *b; /* the two sources' answers */
	size_t hcap;
	struct kyro_vec_params params; /* kyro_set_vec_params() */
	int params_set;
};

void kyro__vec_state_free(kyro_db *db)
{
	struct vec_state *vs = db->vec;
	if (!vs)
		return;
	kyro__vec_scratch_free(vs->s);
	free(vs->dkeys);
	free(vs->dvecs);
	free(vs->a);
	free(vs->b);
	free(vs);
	db->vec = NULL;
}

static struct vec_state *state(kyro_db *db)
{
	if (!db->vec)
		db->vec = calloc(1, sizeof *db->vec);
	return db->vec;
}

/* EINVAL unless VEC is DIM finite floats with 1 <= DIM <= KYRO_MAX_DIM. */
static int check_vec(kyro_db *db, const char *what, const float *vec,
		     uint32_t dim)
{
	if (dim == 0 || dim > KYRO_MAX_DIM)
		return kyro__failx(db->msg, EINVAL,
				   "%s has %u dimensions; 1 to %u are allowed",
				   what, dim, (unsigned)KYRO_MAX_DIM);
	if (!vec)
		return kyro__failx(db->msg, EINVAL, "%s is NULL", what);
	for (uint32_t i = 0; i < dim; i++)
		if (!isfinite(vec[i]))
			return kyro__failx(db->msg, EINVAL,
					   "%s: component %u is not a finite "
					   "number",
					   what, i);
	return 0;
}

/* Under the writer lock, the view caught up: the store's dimension as it
 * will be when the open batch commits. */
static int put_dim_check(kyro_db *db, uint64_t key, uint32_t dim)
{
	int rc = kyro__db_view_refresh(db);
	if (rc)
		return rc;
	uint32_t sdim = db->v.vdim ? db->v.vdim : db->batch_vdim;
	if (sdim && sdim != dim)
		return kyro__failx(db->msg, KYRO_EDIM,
				   "vector of key %llu has %u dimensions; the "
				   "store's vectors have %u",
				   (unsigned long long)key, dim, sdim);
	return 0;
}

int kyro_vec_put(kyro_db *db, uint64_t key, const float *vec, uint32_t dim,
		 uint64_t *seq)
{
	int rc = check_vec(db, "vector", vec, dim), auto_batch = 0;
	if (rc)
		return rc;
	if (!db->in_batch) {
		if ((rc = kyro_batch_begin(db)) != 0)
			return rc;
		auto_batch = 1;
	}
	if ((rc = put_dim_check(db, key, dim)) != 0) {
		if (auto_batch)
			kyro_batch_abort(db);
		return rc;
	}
	rc = kyro__db_write_rec(db, WAL_VEC, key, vec, (size_t)dim * 4, seq);
	if (rc)
		return rc; /* the write failed: the batch is gone */
	db->batch_vdim = dim;
	return auto_batch ? kyro_batch_commit(db, NULL) : 0;
}

int kyro_vec_get(kyro_db *db, uint64_t key, const float **vec, uint32_t *dim)
{
	int rc = kyro__db_view_refresh(db);
	if (rc)
		return rc;
	struct view *v = &db->v;
	uint64_t ref = delta_get(&v->vdelta, key);
	if (ref) {
		if (ref & DELTA_TOMB)
			return KYRO_ENOTFOUND;
		struct wal_rec r;
		wal_rec_at(v->segs[DELTA_SLOT(ref)].base, DELTA_OFF(ref), &r);
		/* Records start 8-aligned in a page-aligned mapping. */
		*vec = (const float *)(const void *)r.val;
		*dim = r.len / 4;
		return 0;
	}
	return kyro__vstore_snap_get(db->msg, &v->vs, key, vec, dim);
}

int kyro_vec_dim(kyro_db *db, uint32_t *dim)
{
	int rc = kyro__db_view_refresh(db);
	if (!rc)
		*dim = db->v.vdim;
	return rc;
}

/* ---- search ---- */

static int check_query(kyro_db *db, const struct kyro_vec_query *q)
{
	if (!q)
		return kyro__failx(db->msg, EINVAL, "no query");
	if (q->k == 0 || q->k > KYRO_VEC_MAX_K)
		return kyro__failx(db->msg, EINVAL,
				   "k is %u; it must be from 1 to %u", q->k,
				   (unsigned)KYRO_VEC_MAX_K);
	if (q->lo > q->hi)
		return kyro__failx(db->msg, EINVAL,
				   "the key range is empty: %llu > %llu",
				   (unsigned long long)q->lo,
				   (unsigned long long)q->hi);
	if (q->metric < 0 || q->metric > KYRO_METRIC_COSINE)
		return kyro__failx(db->msg, EINVAL, "unknown metric %d",
				   q->metric);
	if (q->flags & ~(unsigned)KYRO_VEC_EXACT)
		return kyro__failx(db->msg, EINVAL, "unknown flags %#x",
				   q->flags);
	return check_vec(db, "query", q->vec, q->dim);
}

/* Room for 2 * K hits in each buffer and scratch for DIM, N nodes. */
static int reserve(struct vec_state *vs, size_t k, uint64_t n, uint32_t dim)
{
	if (vs->hcap < 2 * k) {
		struct kyro__vec_hit *a = realloc(vs->a, 2 * k * sizeof *a);
		if (a)
			vs->a = a;
		struct kyro__vec_hit *b = realloc(vs->b, 2 * k * sizeof *b);
		if (b)
			vs->b = b;
		if (!a || !b)
			return ENOMEM;
		vs->hcap = 2 * k;
	}
	if (!vs->s || vs->s_n < n || vs->s_dim != dim) {
		kyro__vec_scratch_free(vs->s);
		vs->s = kyro__vec_scratch_new(n, dim);
		vs->s_n = n;
		vs->s_dim = dim;
		if (!vs->s)
			return ENOMEM;
	}
	return 0;
}

/* Gather the delta's live vectors, sorted by key (so that positions
 * order ties by key), normalised for cosine. */
static int gather_delta(kyro_db *db, struct vec_state *vs, int metric)
{
	struct view *v = &db->v;
	if (vs->c_valid && vs->c_epoch == db->vepoch &&
	    vs->c_ops == v->vec_ops && vs->c_metric == metric)
		return 0;
	struct delta_ent *e;
	size_t m;
	int rc = kyro__delta_sorted(&v->vdelta, 0, UINT64_MAX, &e, &m);
	if (rc)
		return rc;
	uint32_t dim = v->vdim;
	if (m > vs->dcap || dim != vs->ddim) {
		free(vs->dkeys);
		free(vs->dvecs);
		vs->dcap = m ? m : 1;
		vs->dkeys = malloc(vs->dcap * sizeof *vs->dkeys);
		vs->dvecs = malloc(vs->dcap * dim * sizeof *vs->dvecs);
		vs->ddim = dim;
		if (!vs->dkeys || !vs->dvecs) {
			vs->dcap = 0;
			vs->c_valid = 0;
			free(e);
			return ENOMEM;
		}
	}
	uint64_t n = 0;
	for (size_t i = 0; i < m; i++) {
		if (e[i].ref & DELTA_TOMB)
			continue;
		struct wal_rec r;
		wal_rec_at(v->segs[DELTA_SLOT(e[i].ref)].base,
			   DELTA_OFF(e[i].ref), &r);
		float *dst = vs->dvecs + n * dim;
		memcpy(dst, r.val, (size_t)dim * 4);
		if (metric == KYRO_VEC_COS)
			kyro__vec_normalize(dst, dim);
		vs->dkeys[n++] = e[i].key;
	}
	free(e);
	vs->dn = n;
	vs->c_epoch = db->vepoch;
	vs->c_ops = v->vec_ops;
	vs->c_metric = metric;
	vs->c_valid = 1;
	return 0;
}

/* First position of KEYS (N, ascending) not below KEY. */
static uint64_t lower(const uint64_t *keys, uint64_t n, uint64_t key)
{
	uint64_t lo = 0, hi = n;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (keys[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The delta's K nearest in [LO, HI] into VS->a. */
static int search_delta(kyro_db *db, struct vec_state *vs, int metric,
			const struct kyro_vec_query *q, uint32_t *na)
{
	*na = 0;
	int rc = gather_delta(db, vs, metric);
	if (rc)
		return kyro__fail(db->msg, rc, "cannot search '%s'", db->dir);
	uint64_t a = lower(vs->dkeys, vs->dn, q->lo);
	uint64_t b = q->hi == UINT64_MAX ? vs->dn
					 : lower(vs->dkeys, vs->dn, q->hi + 1);
	if (a >= b)
		return 0;
	const struct kyro__vec_set set = {.keys = vs->dkeys,
					  .vecs = vs->dvecs,
					  .n = vs->dn,
					  .stride = vs->ddim,
					  .dim = vs->ddim,
					  .metric = metric};
	rc = kyro__vec_exact(&set, kyro__vec_ops_best(), vs->s, a, b, q->k,
			     vs->a, na);
	if (rc)
		return kyro__fail(db->msg, rc, "cannot search '%s'", db->dir);
	return 0;
}

/* Merge A (NA) and B (NB), both sorted by (dist, key), keys disjoint,
 * into OUT: the K first. */
static size_t merge(const struct kyro__vec_hit *a, size_t na,
		    const struct kyro__vec_hit *b, size_t nb, uint32_t k,
		    struct kyro_vec_hit *out)
{
	size_t i = 0, j = 0, n = 0;
	while (n < k && (i < na || j < nb)) {
		int take_a = j == nb ||
			     (i < na && (a[i].dist < b[j].dist ||
					 (a[i].dist == b[j].dist &&
					  a[i].key < b[j].key)));
		const struct kyro__vec_hit *h = take_a ? &a[i++] : &b[j++];
		out[n].key = h->key;
		out[n].dist = h->dist;
		n++;
	}
	return n;
}

int kyro_vec_search(kyro_db *db, const struct kyro_vec_query *q,
		    struct kyro_vec_hit *hits, size_t *n)
{
	*n = 0;
	int rc = check_query(db, q);
	if (!rc)
		rc = kyro__db_view_refresh(db);
	if (rc)
		return rc;
	struct view *v = &db->v;
	if (v->vdim == 0)
		return 0; /* no vector was ever written: nothing is near */
	if (q->dim != v->vdim)
		return kyro__failx(db->msg, KYRO_EDIM,
				   "the query has %u dimensions; the store's "
				   "vectors have %u",
				   q->dim, v->vdim);
	struct vec_state *vs = state(db);
	if (!vs)
		return kyro__fail(db->msg, ENOMEM, "cannot search '%s'",
				  db->dir);
	int metric = q->metric ? q->metric - 1
			       : kyro__vstore_metric(&v->vs);
	if ((rc = reserve(vs, q->k, kyro__vstore_nodes(&v->vs), v->vdim)))
		return kyro__fail(db->msg, rc, "cannot search '%s'", db->dir);
	uint64_t nd0 = vs->s->ndist;
	if ((rc = kyro__vec_prepare(db->msg, vs->s, metric, q->vec, q->dim)))
		return rc;
	uint32_t na = 0, nb = 0;
	if ((rc = search_delta(db, vs, metric, q, &na)) != 0)
		return rc;
	const struct kyro__vstore_query sq = {
		.k = q->k,
		.ef = q->ef,
		.lo = q->lo,
		.hi = q->hi,
		.metric = metric,
		.exact = (q->flags & KYRO_VEC_EXACT) != 0,
		.shadow = &v->vdelta,
	};
	if ((rc = kyro__vstore_search(db->msg, &v->vs, vs->s, q->vec, &sq,
				      vs->b, &nb)) != 0)
		return rc;
	*n = merge(vs->a, na, vs->b, nb, q->k, hits);
	COUNT(db, vec_searches, 1);
	COUNT(db, vec_distances, vs->s->ndist - nd0);
	return 0;
}

/* ---- parameters and figures ---- */

/* Kept apart from the search state so that setting them allocates
 * nothing a search would. */
static struct kyro_vec_params *params_of(kyro_db *db)
{
	struct vec_state *vs = state(db);
	return vs ? &vs->params : NULL;
}

int kyro_set_vec_params(kyro_db *db, const struct kyro_vec_params *p)
{
	struct kyro_vec_params q;
	struct kyro_vec_params *dst = params_of(db);
	if (!dst)
		return kyro__fail(db->msg, ENOMEM, "cannot set the parameters");
	if (!p) {
		db->vec->params_set = 0;
		return 0;
	}
	int rc = kyro__vec_params_resolve(db->msg, p, &q);
	if (rc)
		return rc;
	*dst = q;
	db->vec->params_set = 1;
	return 0;
}

int kyro__db_vec_params(kyro_db *db, struct kyro_vec_params *p)
{
	if (!db->vec || !db->vec->params_set)
		return 0;
	*p = db->vec->params;
	return 1;
}

int kyro_vec_info(kyro_db *db, struct kyro_vec_info *info)
{
	memset(info, 0, sizeof *info);
	int rc = kyro__db_view_refresh(db);
	if (rc)
		return rc;
	const struct view *v = &db->v;
	const struct kyro__vstore *s = &v->vs;
	info->dim = v->vdim;
	info->snapshot = kyro__vstore_count(s);
	info->delta = v->vec_ops;
	info->simd = kyro__simd_name(kyro__vec_level_best());
	info->refused = s->refused;
	snprintf(info->why, sizeof info->why, "%s",
		 v->vdim ? s->why : "the store holds no vectors");
	if (s->graph) {
		info->indexed = 1;
		info->why[0] = 0;
		info->metric = (int)s->graph->metric + 1;
		info->m = s->graph->m;
		info->ef_construction = s->graph->efc;
		info->generation = v->man.hnsw_gen;
		info->bytes = s->graph_bytes;
	} else if (!s->vecs && v->vdim && !s->why[0]) {
		snprintf(info->why, sizeof info->why,
			 "the vectors are all newer than the snapshot: "
			 "searches scan them");
	}
	return 0;
}
