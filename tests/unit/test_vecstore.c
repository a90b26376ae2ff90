/*
 * test_vecstore.c - vectors in the store (kyro_vec_*), end to end in
 * temporary directories: put, get, delete, overwrite, the dimension rules,
 * batches, a second handle's view, search over the delta, the snapshot and
 * the graph and their merge, ranges, recall against exact search, damaged
 * files, the change feed, and a store written by the previous release.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kyro.h"

#define DIM 8

static kyro_db *open_rw(const char *dir)
{
	kyro_db *db;
	int rc = kyro_open(&db, dir, KYRO_RDWR);
	if (rc) {
		h_note("kyro_open '%s': %s", dir, kyro_errmsg(db));
		kyro_close(db);
		return NULL;
	}
	kyro_set_sync(db, KYRO_SYNC_NONE);
	return db;
}

/* The vector of KEY in version VER: deterministic, clustered a little. */
static void vec_of(uint64_t key, unsigned ver, float *v, uint32_t dim)
{
	uint64_t x = h_mix(key * 7919 + ver);
	for (uint32_t i = 0; i < dim; i++) {
		x = h_mix(x + i);
		double u = (double)(x >> 11) / (double)(1ull << 53);
		v[i] = (float)u * 2.0f - 1.0f + (float)(key % 5);
	}
}

static float l2(const float *a, const float *b, uint32_t dim)
{
	float s = 0;
	for (uint32_t i = 0; i < dim; i++)
		s += (a[i] - b[i]) * (a[i] - b[i]);
	return s;
}

/* The model: what every key's vector is (version, 0: none). */
struct model {
	unsigned ver[4096];
};

/* Exact k nearest by squared L2 over the model, keys in [LO, HI]. */
static size_t model_knn(const struct model *m, const float *q, uint32_t k,
			uint64_t lo, uint64_t hi, struct kyro_vec_hit *out)
{
	size_t n = 0;
	for (uint64_t key = 0; key < 4096; key++) {
		if (!m->ver[key] || key < lo || key > hi)
			continue;
		float v[DIM];
		vec_of(key, m->ver[key], v, DIM);
		struct kyro_vec_hit h = {key, l2(q, v, DIM)};
		size_t i = n < k ? n++ : k;
		if (i == k && !(h.dist < out[k - 1].dist ||
				(h.dist == out[k - 1].dist &&
				 h.key < out[k - 1].key)))
			continue;
		if (i == k)
			i = k - 1;
		while (i > 0 && (out[i - 1].dist > h.dist ||
				 (out[i - 1].dist == h.dist &&
				  out[i - 1].key > h.key))) {
			out[i] = out[i - 1];
			i--;
		}
		out[i] = h;
	}
	return n;
}

static int put_v(kyro_db *db, struct model *m, uint64_t key, unsigned ver)
{
	float v[DIM];
	vec_of(key, ver, v, DIM);
	int rc = kyro_vec_put(db, key, v, DIM, NULL);
	if (!rc)
		m->ver[key] = ver;
	return rc;
}

/* Does an exact search answer what the model says (keys; distances
 * within float tolerance)? */
static int same_as_model(kyro_db *db, const struct model *m, const float *q,
			 uint32_t k, uint64_t lo, uint64_t hi)
{
	struct kyro_vec_hit want[64], got[64];
	size_t nw = model_knn(m, q, k, lo, hi, want), ng = 0;
	struct kyro_vec_query qq = {.vec = q, .dim = DIM, .k = k, .lo = lo,
				    .hi = hi, .flags = KYRO_VEC_EXACT};
	int rc = kyro_vec_search(db, &qq, got, &ng);
	if (!CHECK_RC(rc, 0) || !CHECK_EQ_U64(ng, nw))
		return 0;
	int ok = 1;
	for (size_t i = 0; i < nw; i++) {
		ok &= CHECK_EQ_U64(got[i].key, want[i].key);
		ok &= CHECK(fabsf(got[i].dist - want[i].dist) <=
			    1e-4f * (1 + want[i].dist));
	}
	return ok;
}

TEST(put_get_delete_overwrite)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	float v[DIM], w[DIM];
	const float *got;
	uint32_t dim = 99;
	CHECK_RC(kyro_vec_dim(db, &dim), 0);
	CHECK_EQ_U64(dim, 0);
	CHECK_RC(kyro_vec_get(db, 1, &got, &dim), KYRO_ENOTFOUND);
	vec_of(1, 1, v, DIM);
	CHECK_RC(kyro_vec_put(db, 1, v, DIM, NULL), 0);
	CHECK_RC(kyro_vec_get(db, 1, &got, &dim), 0);
	CHECK_EQ_U64(dim, DIM);
	CHECK_MEM(got, v, sizeof v);
	/* A value and a vector live side by side. */
	CHECK_RC(kyro_put(db, 1, "one", 3, NULL), 0);
	CHECK_RC(kyro_vec_get(db, 1, &got, &dim), 0);
	CHECK_MEM(got, v, sizeof v);
	const void *val;
	size_t len;
	CHECK_RC(kyro_get(db, 1, &val, &len), 0);
	CHECK_EQ_U64(len, 3);
	/* A vector without a value. */
	CHECK_RC(kyro_vec_put(db, 2, v, DIM, NULL), 0);
	CHECK_RC(kyro_get(db, 2, &val, &len), KYRO_ENOTFOUND);
	/* Overwrite. */
	vec_of(1, 2, w, DIM);
	CHECK_RC(kyro_vec_put(db, 1, w, DIM, NULL), 0);
	CHECK_RC(kyro_vec_get(db, 1, &got, &dim), 0);
	CHECK_MEM(got, w, sizeof w);
	/* Delete removes both. */
	CHECK_RC(kyro_delete(db, 1, NULL), 0);
	CHECK_RC(kyro_vec_get(db, 1, &got, &dim), KYRO_ENOTFOUND);
	CHECK_RC(kyro_get(db, 1, &val, &len), KYRO_ENOTFOUND);
	/* Survives a reopen (the WAL) and a snapshot. */
	kyro_close(db);
	REQUIRE((db = open_rw(dir)) != NULL);
	CHECK_RC(kyro_vec_get(db, 2, &got, &dim), 0);
	CHECK_MEM(got, v, sizeof v);
	struct kyro_snapshot_stats ss;
	CHECK_RC(kyro_snapshot(db, 0, NULL, &ss, NULL, NULL), 0);
	CHECK_EQ_U64(ss.vectors, 1);
	CHECK_RC(kyro_vec_get(db, 2, &got, &dim), 0);
	CHECK_MEM(got, v, sizeof v);
	CHECK_RC(kyro_vec_get(db, 1, &got, &dim), KYRO_ENOTFOUND);
	/* Nothing to fold: the figures are the snapshot's there is. */
	CHECK_RC(kyro_snapshot(db, 0, NULL, &ss, NULL, NULL), 0);
	CHECK_EQ_U64(ss.vectors, 1);
	CHECK_RC(kyro_vec_dim(db, &dim), 0);
	CHECK_EQ_U64(dim, DIM);
	/* The snapshot's vector deleted, then a second snapshot. */
	CHECK_RC(kyro_delete(db, 2, NULL), 0);
	CHECK_RC(kyro_vec_get(db, 2, &got, &dim), KYRO_ENOTFOUND);
	CHECK_RC(kyro_snapshot(db, 0, NULL, NULL, NULL, NULL), 0);
	CHECK_RC(kyro_vec_get(db, 2, &got, &dim), KYRO_ENOTFOUND);
	/* No vector left, but the dimension stays the store's. */
	CHECK_RC(kyro_vec_dim(db, &dim), 0);
	CHECK_EQ_U64(dim, DIM);
	CHECK_RC(kyro_vec_put(db, 3, v, DIM - 1, NULL), KYRO_EDIM);
	kyro_close(db);
}

TEST(dimension_and_bad_input)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	float v[DIM + 1];
	const float *got;
	uint32_t dim;
	vec_of(5, 1, v, DIM + 1);
	CHECK_RC(kyro_vec_put(db, 5, v, 0, NULL), EINVAL);
	CHECK_RC(kyro_vec_put(db, 5, v, KYRO_MAX_DIM + 1, NULL), EINVAL);
	v[3] = NAN;
	CHECK_RC(kyro_vec_put(db, 5, v, DIM, NULL), EINVAL);
	v[3] = INFINITY;
	CHECK_RC(kyro_vec_put(db, 5, v, DIM, NULL), EINVAL);
	CHECK_RC(kyro_vec_dim(db, &dim), 0);
	CHECK_EQ_U64(dim, 0);
	vec_of(5, 1, v, DIM + 1);
	/* Inside a batch: the first vector fixes the dimension even before
	 * the commit; a wrong one is refused and the batch goes on. */
	CHECK_RC(kyro_batch_begin(db), 0);
	CHECK_RC(kyro_vec_put(db, 5, v, DIM, NULL), 0);
	CHECK_RC(kyro_vec_put(db, 6, v, DIM + 1, NULL), KYRO_EDIM);
	CHECK_STR_HAS(kyro_errmsg(db), "dimensions");
	CHECK_RC(kyro_vec_put(db, 6, v, DIM, NULL), 0);
	CHECK_RC(kyro_batch_commit(db, NULL), 0);
	CHECK_RC(kyro_vec_get(db, 6, &got, &dim), 0);
	/* An aborted batch leaves nothing, not even its dimension. */
	const char *dir2 = h_tmpdir();
	kyro_db *db2 = open_rw(dir2);
	REQUIRE(db2);
	CHECK_RC(kyro_batch_begin(db2), 0);
	CHECK_RC(kyro_vec_put(db2, 1, v, DIM, NULL), 0);
	CHECK_RC(kyro_put(db2, 2, "x", 1, NULL), 0);
	kyro_batch_abort(db2);
	CHECK_RC(kyro_vec_get(db2, 1, &got, &dim), KYRO_ENOTFOUND);
	CHECK_RC(kyro_vec_dim(db2, &dim), 0);
	CHECK_EQ_U64(dim, 0);
	CHECK_RC(kyro_vec_put(db2, 1, v, DIM + 1, NULL), 0);
	kyro_close(db2);
	/* Queries. */
	struct kyro_vec_hit hits[4];
	size_t n;
	struct kyro_vec_query q = {.vec = v, .dim = DIM, .k = 0,
				   .hi = UINT64_MAX};
	CHECK_RC(kyro_vec_search(db, &q, hits, &n), EINVAL);
	q.k = KYRO_VEC_MAX_K + 1;
	CHECK_RC(kyro_vec_search(db, &q, hits, &n), EINVAL);
	q.k = 4;
	q.lo = 5;
	q.hi = 4;
	CHECK_RC(kyro_vec_search(db, &q, hits, &n), EINVAL);
	q.lo = 0;
	q.hi = UINT64_MAX;
	q.dim = DIM + 1;
	CHECK_RC(kyro_vec_search(db, &q, hits, &n), KYRO_EDIM);
	q.dim = DIM;
	q.metric = 7;
	CHECK_RC(kyro_vec_search(db, &q, hits, &n), EINVAL);
	q.metric = 0;
	v[0] = NAN;
	CHECK_RC(kyro_vec_search(db, &q, hits, &n), EINVAL);
	v[0] = 0;
	CHECK_RC(kyro_vec_search(db, &q, hits, &n), 0);
	CHECK_EQ_U64(n, 2);
	kyro_close(db);
	/* An empty store answers nothing, successfully. */
	db = open_rw(h_tmpdir());
	REQUIRE(db);
	CHECK_RC(kyro_vec_search(db, &q, hits, &n), 0);
	CHECK_EQ_U64(n, 0);
	CHECK_RC(kyro_vec_build(db, NULL, NULL, NULL, NULL), KYRO_ENOTFOUND);
	kyro_close(db);
}

TEST(two_handles)
{
	const char *dir = h_tmpdir();
	kyro_db *a = open_rw(dir), *b = open_rw(dir);
	REQUIRE(a && b);
	float v[DIM];
	const float *got;
	uint32_t dim;
	vec_of(9, 1, v, DIM);
	CHECK_RC(kyro_vec_put(a, 9, v, DIM, NULL), 0);
	CHECK_RC(kyro_vec_get(b, 9, &got, &dim), 0);
	CHECK_MEM(got, v, sizeof v);
	/* B learns the dimension from A's write. */
	CHECK_RC(kyro_vec_put(b, 10, v, DIM - 2, NULL), KYRO_EDIM);
	CHECK_RC(kyro_snapshot(a, 0, NULL, NULL, NULL, NULL), 0);
	CHECK_RC(kyro_vec_get(b, 9, &got, &dim), 0);
	CHECK_MEM(got, v, sizeof v);
	CHECK_RC(kyro_delete(b, 9, NULL), 0);
	CHECK_RC(kyro_vec_get(a, 9, &got, &dim), KYRO_ENOTFOUND);
	kyro_close(a);
	kyro_close(b);
}

/* Random puts, overwrites and deletes of keys below NKEYS. */
static void churn(kyro_db *db, struct model *m, int ops, uint64_t nkeys,
		  unsigned ver)
{
	for (int i = 0; i < ops; i++) {
		uint64_t key = h_below(nkeys);
		if (h_below(5) == 0) {
			CHECK_RC(kyro_delete(db, key, NULL), 0);
			m->ver[key] = 0;
		} else {
			CHECK_RC(put_v(db, m, key, ver + (unsigned)i), 0);
		}
	}
}

TEST(search_delta_snapshot_graph)
{
	static struct model m;
	memset(&m, 0, sizeof m);
	h_seed(42);
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	float q[DIM];
	CHECK_RC(kyro_batch_begin(db), 0);
	for (uint64_t key = 0; key < 2000; key++)
		CHECK_RC(put_v(db, &m, key, 1), 0);
	CHECK_RC(kyro_batch_commit(db, NULL), 0);
	/* Delta only. */
	for (int t = 0; t < 5; t++) {
		vec_of(100000 + t, 1, q, DIM);
		same_as_model(db, &m, q, 10, 0, UINT64_MAX);
		same_as_model(db, &m, q, 7, 300, 900);
	}
	/* Snapshot only, then snapshot + delta. */
	CHECK_RC(kyro_snapshot(db, 0, NULL, NULL, NULL, NULL), 0);
	for (int t = 0; t < 5; t++) {
		vec_of(200000 + t, 1, q, DIM);
		same_as_model(db, &m, q, 10, 0, UINT64_MAX);
	}
	churn(db, &m, 300, 2000, 10);
	for (int t = 0; t < 5; t++) {
		vec_of(300000 + t, 1, q, DIM);
		same_as_model(db, &m, q, 10, 0, UINT64_MAX);
		same_as_model(db, &m, q, 5, 1000, 1100);
	}
	/* The graph, with the delta merged. */
	struct kyro_vec_stats st;
	CHECK_RC(kyro_snapshot(db, KYRO_SNAPSHOT_VECTORS, NULL, NULL, NULL,
			       NULL),
		 0);
	CHECK_RC(kyro_vec_build(db, NULL, &st, NULL, NULL), 0);
	CHECK(st.vectors > 1000);
	struct kyro_vec_info info;
	CHECK_RC(kyro_vec_info(db, &info), 0);
	CHECK(info.indexed);
	CHECK_EQ_U64(info.dim, DIM);
	CHECK_EQ_U64(info.generation, st.generation);
	/* Warming up reads the vectors file and the graph too. */
	uint64_t warm = 0;
	CHECK_RC(kyro_warmup(db, &warm), 0);
	CHECK(warm > info.bytes);
	churn(db, &m, 400, 2000, 1000);
	/* Every key the delta deleted or overwrote: never from the graph
	 * with its old distance. */
	double found = 0, total = 0;
	for (int t = 0; t < 50; t++) {
		struct kyro_vec_hit want[10], got[10];
		size_t ng;
		vec_of(400000 + t, 1, q, DIM);
		size_t nw = model_knn(&m, q, 10, 0, UINT64_MAX, want);
		struct kyro_vec_query qq = {.vec = q, .dim = DIM, .k = 10,
					    .hi = UINT64_MAX};
		CHECK_RC(kyro_vec_search(db, &qq, got, &ng), 0);
		CHECK_EQ_U64(ng, nw);
		for (size_t i = 0; i < ng; i++) {
			REQUIRE(got[i].key < 4096);
			CHECK(m.ver[got[i].key] != 0);
			float v[DIM];
			vec_of(got[i].key, m.ver[got[i].key], v, DIM);
			CHECK(fabsf(l2(q, v, DIM) - got[i].dist) <=
			      1e-4f * (1 + got[i].dist));
			if (i)
				CHECK(got[i - 1].dist <= got[i].dist);
			for (size_t j = 0; j < nw; j++)
				found += got[i].key == want[j].key;
		}
		total += (double)nw;
		same_as_model(db, &m, q, 10, 0, UINT64_MAX);
		same_as_model(db, &m, q, 3, 1500, 1530);
	}
	h_note("recall@10 graph+delta: %.3f", found / total);
	CHECK(found / total >= 0.9);
	/* A snapshot keeps the graph (rebuilt with its parameters). */
	CHECK_RC(kyro_snapshot(db, 0, NULL, NULL, NULL, NULL), 0);
	CHECK_RC(kyro_vec_info(db, &info), 0);
	CHECK(info.indexed);
	CHECK_EQ_U64(info.delta, 0);
	vec_of(500000, 1, q, DIM);
	same_as_model(db, &m, q, 10, 0, UINT64_MAX);
	struct kyro_stats ks;
	kyro_stats(db, &ks);
	CHECK(ks.vec_searches > 100);
	CHECK(ks.vec_distances > ks.vec_searches);
	kyro_close(db);
}

TEST(metrics)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	float v[DIM], q[DIM];
	for (uint64_t key = 1; key <= 300; key++) {
		vec_of(key, 1, v, DIM);
		CHECK_RC(kyro_vec_put(db, key, v, DIM, NULL), 0);
	}
	vec_of(777, 3, q, DIM);
	struct kyro_vec_hit a[5], b[5];
	size_t na, nb;
	/* Cosine: the delta's scan and the snapshot's agree, and the graph
	 * (normalised vectors) too, on its exact path. */
	struct kyro_vec_query qq = {.vec = q, .dim = DIM, .k = 5,
				    .hi = UINT64_MAX,
				    .metric = KYRO_METRIC_COSINE,
				    .flags = KYRO_VEC_EXACT};
	CHECK_RC(kyro_vec_search(db, &qq, a, &na), 0);
	struct kyro_vec_params p = {.metric = KYRO_METRIC_COSINE};
	CHECK_RC(kyro_set_vec_params(db, &p), 0);
	CHECK_RC(kyro_snapshot(db, KYRO_SNAPSHOT_VECTORS, NULL, NULL, NULL,
			       NULL),
		 0);
	CHECK_RC(kyro_vec_search(db, &qq, b, &nb), 0);
	CHECK_EQ_U64(na, nb);
	for (size_t i = 0; i < na && i < nb; i++) {
		CHECK_EQ_U64(a[i].key, b[i].key);
		CHECK(fabsf(a[i].dist - b[i].dist) < 1e-5f);
	}
	struct kyro_vec_info info;
	CHECK_RC(kyro_vec_info(db, &info), 0);
	CHECK(info.indexed);
	CHECK_EQ_U64(info.metric, KYRO_METRIC_COSINE);
	/* What was put comes back as put, not normalised. */
	const float *got;
	uint32_t dim;
	vec_of(3, 1, v, DIM);
	CHECK_RC(kyro_vec_get(db, 3, &got, &dim), 0);
	CHECK_MEM(got, v, sizeof v);
	/* The graph's metric by default; another metric scans. */
	qq.flags = 0;
	qq.metric = 0;
	CHECK_RC(kyro_vec_search(db, &qq, b, &nb), 0);
	CHECK_EQ_U64(nb, 5);
	qq.metric = KYRO_METRIC_IP;
	CHECK_RC(kyro_vec_search(db, &qq, b, &nb), 0);
	for (size_t i = 1; i < nb; i++)
		CHECK(b[i - 1].dist <= b[i].dist);
	kyro_close(db);
}

struct feed_rec {
	int op[4];
	size_t len[4];
	int n;
};

static int feed_fn(void *arg, const struct kyro_change *c)
{
	struct feed_rec *r = arg;
	if (r->n < 4) {
		r->op[r->n] = c->op;
		r->len[r->n] = c->len;
	}
	r->n++;
	return 0;
}

TEST(change_feed_vectors)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	float v[DIM];
	vec_of(4, 1, v, DIM);
	CHECK_RC(kyro_vec_put(db, 4, v, DIM, NULL), 0);
	CHECK_RC(kyro_delete(db, 4, NULL), 0);
	kyro_close(db);
	kyro_feed *f;
	REQUIRE(kyro_feed_open(&f, dir, 0) == 0);
	struct feed_rec r = {0};
	size_t batches;
	CHECK_RC(kyro_feed_read(f, 10, feed_fn, &r, &batches), 0);
	CHECK_EQ_U64(r.n, 2);
	CHECK_EQ_U64(r.op[0], KYRO_CHANGE_VECTOR);
	CHECK_EQ_U64(r.len[0], 4 * DIM);
	CHECK_EQ_U64(r.op[1], KYRO_CHANGE_DELETE);
	kyro_feed_close(f);
}

/* A copy of tests/fixtures/store-prevec (the release before vectors:
 * manifest and WAL segments of version 1), in a fresh directory. */
static const char *copy_prevec(void)
{
	static const char *files[] = {
		"MANIFEST", "snap-0000000000000001.bin",
		"snap-0000000000000001.data", "wal-0000000000000001.log",
		"wal-0000000000000002.log"};
	const char *dir = h_tmpdir();
	for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
		unsigned char *b;
		size_t len;
		char src[PATH_MAX];
		snprintf(src, sizeof src, "tests/fixtures/store-prevec/%s",
			 files[i]);
		if (h_read_file(src, &b, &len) ||
		    h_write_file(h_path(dir, files[i]), b, len))
			return NULL;
		free(b);
	}
	return dir;
}

static int has_value(kyro_db *db, uint64_t key, const char *want)
{
	const void *v;
	size_t len;
	if (!CHECK_RC(kyro_get(db, key, &v, &len), 0))
		return 0;
	return CHECK_EQ_U64(len, strlen(want)) && CHECK_MEM(v, want, len);
}

static void count_report(void *arg, const char *file, uint64_t off,
			 const char *text)
{
	(void)file, (void)off, (void)text;
	++*(int *)arg;
}

TEST(previous_release_store_opens)
{
	const char *dir = copy_prevec();
	int nrep = 0;
	REQUIRE(dir);
	kyro_db *db;
	REQUIRE(CHECK_RC(kyro_open(&db, dir, KYRO_RDONLY), 0));
	uint32_t dim = 7;
	CHECK_RC(kyro_vec_dim(db, &dim), 0);
	CHECK_EQ_U64(dim, 0);
	has_value(db, 5, "v5");
	has_value(db, 230, "w230");
	kyro_close(db);
	/* Writing vectors moves the writer to a segment of the new version
	 * (a version-1 segment holds no vector record). */
	REQUIRE((db = open_rw(dir)) != NULL);
	float v[DIM];
	const float *got;
	vec_of(5, 1, v, DIM);
	CHECK_RC(kyro_vec_put(db, 5, v, DIM, NULL), 0);
	CHECK_RC(kyro_put(db, 251, "x251", 4, NULL), 0);
	kyro_close(db);
	unsigned char *b;
	size_t len;
	REQUIRE(h_read_file(h_path(dir, "wal-0000000000000002.log"), &b,
			    &len) == 0);
	CHECK_EQ_U64(b[8], 1); /* untouched */
	free(b);
	REQUIRE(h_read_file(h_path(dir, "wal-0000000000000003.log"), &b,
			    &len) == 0);
	CHECK_EQ_U64(b[8], 2);
	free(b);
	REQUIRE(CHECK_RC(kyro_open(&db, dir, KYRO_RDONLY), 0));
	CHECK_RC(kyro_vec_get(db, 5, &got, &dim), 0);
	CHECK_MEM(got, v, sizeof v);
	has_value(db, 5, "v5");
	has_value(db, 230, "w230");
	has_value(db, 251, "x251");
	kyro_close(db);
	CHECK_RC(kyro_verify(dir, KYRO_VERIFY_DEEP, count_report, &nrep), 0);
	/* A snapshot folds both versions' segments. */
	REQUIRE((db = open_rw(dir)) != NULL);
	CHECK_RC(kyro_snapshot(db, KYRO_SNAPSHOT_VECTORS, NULL, NULL, NULL,
			       NULL),
		 0);
	CHECK_RC(kyro_vec_get(db, 5, &got, &dim), 0);
	CHECK_MEM(got, v, sizeof v);
	has_value(db, 5, "v5");
	has_value(db, 251, "x251");
	kyro_close(db);
	CHECK_RC(kyro_verify(dir, KYRO_VERIFY_DEEP, count_report, &nrep), 0);
}

#define NQ 4

/* The answers of NQ queries on DIR (graph unless EXACT), or the first
 * error. */
static int answers(const char *dir, int exact, struct kyro_vec_hit *out)
{
	kyro_db *db;
	int rc = kyro_open(&db, dir, KYRO_RDONLY);
	for (int t = 0; !rc && t < NQ; t++) {
		float q[DIM];
		size_t n;
		vec_of(900000 + (uint64_t)t, 1, q, DIM);
		struct kyro_vec_query qq = {.vec = q, .dim = DIM, .k = 10,
					    .hi = UINT64_MAX,
					    .flags = exact ? KYRO_VEC_EXACT
							   : 0};
		memset(out + 10 * t, 0, 10 * sizeof *out);
		rc = kyro_vec_search(db, &qq, out + 10 * t, &n);
		if (!rc && n != 10)
			rc = -100;
	}
	for (uint64_t key = 0; !rc && key < 300; key += 7) {
		const float *v;
		uint32_t dim;
		float want[DIM];
		rc = kyro_vec_get(db, key, &v, &dim);
		vec_of(key, 1, want, DIM);
		if (!rc && memcmp(v, want, sizeof want))
			rc = -101; /* a wrong vector */
	}
	kyro_close(db);
	return rc;
}

/* Flip bytes all over FILE of DIR: each flip is refused (at open or by a
 * search: KYRO_ECORRUPT), or every answer is the undamaged graph's or
 * the exact one; and kyro_verify --deep finds every flip. */
static void flip_all(const char *dir, const char *file)
{
	struct kyro_vec_hit good[10 * NQ], exact[10 * NQ], got[10 * NQ];
	unsigned char *b;
	size_t len;
	REQUIRE(CHECK_RC(answers(dir, 0, good), 0));
	REQUIRE(CHECK_RC(answers(dir, 1, exact), 0));
	REQUIRE(h_read_file(h_path(dir, file), &b, &len) == 0);
	int refused = 0, same = 0, fallback = 0, wrong = 0, missed = 0;
	for (size_t off = 0; off < len; off += 61) {
		b[off] ^= 0x10;
		REQUIRE(h_write_file(h_path(dir, file), b, len) == 0);
		int rc = answers(dir, 0, got), reports = 0;
		if (rc == KYRO_ECORRUPT)
			refused++;
		else if (!rc && !memcmp(got, good, sizeof got))
			same++;
		else if (!rc && !memcmp(got, exact, sizeof got))
			fallback++;
		else if (!wrong++)
			h_note("%s offset %zu: rc %d", file, off, rc);
		if (kyro_verify(dir, KYRO_VERIFY_DEEP, count_report,
				&reports) != KYRO_EDAMAGED &&
		    !missed++)
			h_note("verify missed %s offset %zu", file, off);
		b[off] ^= 0x10;
	}
	REQUIRE(h_write_file(h_path(dir, file), b, len) == 0);
	free(b);
	h_note("%s: %d refused, %d same, %d exact, %d wrong", file, refused,
	       same, fallback, wrong);
	CHECK_EQ_U64(wrong, 0);
	CHECK_EQ_U64(missed, 0);
	CHECK(refused > 0);
}

TEST(damaged_files_never_answer_wrong)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	float v[DIM];
	CHECK_RC(kyro_batch_begin(db), 0);
	for (uint64_t key = 0; key < 300; key++) {
		vec_of(key, 1, v, DIM);
		CHECK_RC(kyro_vec_put(db, key, v, DIM, NULL), 0);
	}
	CHECK_RC(kyro_batch_commit(db, NULL), 0);
	struct kyro_vec_params p = {.m = 4, .ef_construction = 20};
	CHECK_RC(kyro_set_vec_params(db, &p), 0);
	CHECK_RC(kyro_snapshot(db, KYRO_SNAPSHOT_VECTORS, NULL, NULL, NULL,
			       NULL),
		 0);
	kyro_close(db);
	/* A graph of another snapshot is refused: searches scan, and
	 * kyro_vec_info() says why. */
	unsigned char *g;
	size_t glen;
	REQUIRE(h_read_file(h_path(dir, "hnsw-0000000000000001.idx"), &g,
			    &glen) == 0);
	g[64] ^= 1; /* the generation */
	REQUIRE(h_write_file(h_path(dir, "hnsw-0000000000000001.idx"), g,
			     glen) == 0);
	struct kyro_vec_info info;
	REQUIRE((db = open_rw(dir)) != NULL);
	CHECK_RC(kyro_vec_info(db, &info), 0);
	CHECK(!info.indexed && info.refused);
	CHECK_STR_HAS(info.why, "refused");
	kyro_close(db);
	g[64] ^= 1;
	REQUIRE(h_write_file(h_path(dir, "hnsw-0000000000000001.idx"), g,
			     glen) == 0);
	free(g);
	flip_all(dir, "hnsw-0000000000000001.idx");
	flip_all(dir, "vec-0000000000000001.vec");
	int reports = 0;
	CHECK_RC(kyro_verify(dir, KYRO_VERIFY_DEEP, count_report, &reports),
		 0);
}
