/*
 * test_vec.c - the distance kernels (libkyro/vec_*.c), the HNSW index
 * (hnsw*.c) and exact search (vec_exact.c).
 *
 * The graph is judged by recall against exact search on generated
 * clustered data (a floor, not a timing); its file by round trips, by
 * byte flips (every damaged file is refused, fails its search with
 * KYRO_ECORRUPT, or answers exactly what the undamaged one does), and by
 * kyro__hnsw_verify(), which must notice every flip.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "harness.h"
#include "hnsw.h"
#include "internal.h"
#include "kyro.h"
#include "simd.h"
#include "vec_dist.h"

static float frand(void)
{
	return (float)((double)(h_rand() >> 11) / 9007199254740992.0) * 2.0f -
	       1.0f;
}

/* N vectors of DIM floats in NC gaussian-ish clusters (seeded). */
static float *clustered(uint64_t seed, uint64_t n, uint32_t dim, uint32_t nc)
{
	float *c = malloc((size_t)nc * dim * sizeof *c);
	float *v = malloc((size_t)n * dim * sizeof *v);
	h_seed(seed);
	for (size_t i = 0; i < (size_t)nc * dim; i++)
		c[i] = frand() * 10.0f;
	for (uint64_t i = 0; i < n; i++) {
		const float *ctr = c + h_below(nc) * dim;
		for (uint32_t j = 0; j < dim; j++)
			v[i * dim + j] = ctr[j] + (frand() + frand() + frand());
	}
	free(c);
	return v;
}

/* CHECK_MEM over hits would compare their padding too. */
#define CHECK_HITS(x, y, n) CHECK(same_hits((x), (y), (n)))
static int same_hits(const struct kyro__vec_hit *x,
		     const struct kyro__vec_hit *y, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (x[i].key != y[i].key || x[i].dist != y[i].dist)
			return 0;
	return 1;
}

static uint64_t *keys_for(uint64_t n)
{
	uint64_t *k = malloc((n ? n : 1) * sizeof *k);
	for (uint64_t i = 0; i < n; i++)
		k[i] = 1000 + 7 * i;
	return k;
}

TEST(kernels_match_scalar)
{
	const struct kyro__vec_ops *ref = kyro__vec_ops_for(KYRO_SIMD_SCALAR);
	float *a = malloc(1031 * sizeof *a), *b = malloc(1031 * sizeof *b);
	int levels = 0;
	h_seed(11);
	for (int lv = 0; lv < KYRO_SIMD_NLEVELS; lv++) {
		const struct kyro__vec_ops *ops = kyro__vec_ops_for(lv);
		if (!ops)
			continue;
		levels++;
		for (uint32_t n = 1; n <= 1031; n++) {
			double mag = 0, dmag = 0;
			for (uint32_t i = 0; i < n; i++) {
				a[i] = frand() * 3.0f;
				b[i] = frand() * 3.0f;
				mag += (double)(a[i] - b[i]) * (a[i] - b[i]);
				dmag += fabs((double)a[i] * b[i]);
			}
			const float l2r = ref->l2(a, b, n, INFINITY);
			const float l2 = ops->l2(a, b, n, INFINITY);
			const float dr = ref->dot(a, b, n), d = ops->dot(a, b, n);
			if (!CHECK(fabs((double)l2 - l2r) <= 1e-5 * mag + 1e-6) ||
			    !CHECK(fabs((double)d - dr) <= 1e-5 * dmag + 1e-6)) {
				h_note("level %s n %u: l2 %g vs %g, dot %g vs %g",
				       kyro__simd_name(lv), n, l2, l2r, d, dr);
				goto out;
			}
			/* Bounded: above the bound, or the unbounded sum. */
			const float half = l2 / 2, got = ops->l2(a, b, n, half);
			CHECK(got > half || l2 == 0);
			CHECK(ops->l2(a, b, n, l2) == l2);
		}
	}
	h_note("%d kernel levels checked", levels);
	CHECK(levels >= 1);
out:
	free(a);
	free(b);
}

/* Exact top-K over a raw set, for comparing. */
static void exact_of(const struct kyro__hnsw *h, const float *q, uint64_t a,
		     uint64_t b, uint32_t k, struct kyro__vec_hit *out,
		     uint32_t *cnt)
{
	struct kyro__vec_scratch *s = kyro__vec_scratch_new(h->n, h->dim);
	char msg[KMSG_MAX];
	CHECK_RC(kyro__vec_prepare(msg, s, (int)h->metric, q, h->dim), 0);
	const struct kyro__vec_set set = {h->keys, h->vecs, h->n, h->stride,
					  h->dim, (int)h->metric};
	CHECK_RC(kyro__vec_exact(&set, h->ops, s, a, b, k, out, cnt), 0);
	kyro__vec_scratch_free(s);
}

static double recall_of(const struct kyro__hnsw *h, const float *qs,
			uint32_t nq, uint32_t ef)
{
	struct kyro__vec_scratch *s = kyro__vec_scratch_new(h->n, h->dim);
	struct kyro__vec_hit got[10], want[10];
	char msg[KMSG_MAX];
	uint64_t hit = 0, total = 0;
	for (uint32_t i = 0; i < nq; i++) {
		const float *q = qs + (size_t)i * h->dim;
		uint32_t ng, nw;
		CHECK_RC(kyro__hnsw_search(msg, h, s, q, h->dim, 10, ef, 0,
					   UINT64_MAX, 0, got, &ng), 0);
		exact_of(h, q, 0, h->n, 10, want, &nw);
		for (uint32_t x = 0; x < nw; x++)
			for (uint32_t y = 0; y < ng; y++)
				hit += got[y].key == want[x].key;
		total += nw;
	}
	kyro__vec_scratch_free(s);
	return total ? (double)hit / (double)total : 1.0;
}

TEST(recall_floor_every_metric)
{
	const uint64_t n = 6000;
	const uint32_t dim = 24, nq = 200;
	float *v = clustered(5, n + nq, dim, 40);
	uint64_t *k = keys_for(n);
	char msg[KMSG_MAX];
	for (int metric = 0; metric < KYRO_VEC_NMETRICS; metric++) {
		struct kyro__hnsw_params p = {16, 100, metric, 42, 0, 0};
		struct kyro__hnsw *h;
		REQUIRE(kyro__hnsw_build(msg, k, v, n, dim, &p, &h) == 0);
		const double r = recall_of(h, v + n * dim, nq, 64);
		h_note("%s: recall@10 at ef 64 = %.4f",
		       kyro__vec_metric_name(metric), r);
		CHECK(r >= 0.95);
		kyro__hnsw_free(h);
	}
	free(v);
	free(k);
}

TEST(file_round_trip_searches_alike)
{
	const char *dir = h_tmpdir();
	const char *path = h_path(dir, "a.idx");
	char msg[KMSG_MAX];
	float *v;
	uint64_t *k = keys_for(3000);
	struct kyro__hnsw_params p = {8, 60, KYRO_VEC_L2, 7, 3, 99};
	struct kyro__hnsw *mem, *file, *again;
	v = clustered(9, 3050, 20, 12);
	REQUIRE(kyro__hnsw_build(msg, k, v, 3000, 20, &p, &mem) == 0);
	REQUIRE(kyro__hnsw_write(msg, mem, dir, path) == 0);
	REQUIRE(kyro__hnsw_open(msg, path, &file) == 0);
	CHECK_EQ_U64(file->generation, 3);
	CHECK_EQ_U64(file->binding, 99);
	CHECK_RC(kyro__hnsw_verify(msg, file), 0);
	struct kyro__vec_scratch *s = kyro__vec_scratch_new(3000, 20);
	for (int i = 0; i < 50; i++) {
		struct kyro__vec_hit x[10], y[10];
		uint32_t nx, ny;
		const float *q = v + (3000 + i) * 20;
		CHECK_RC(kyro__hnsw_search(msg, mem, s, q, 20, 10, 32, 0,
					   UINT64_MAX, 0, x, &nx), 0);
		CHECK_RC(kyro__hnsw_search(msg, file, s, q, 20, 10, 32, 0,
					   UINT64_MAX, 0, y, &ny), 0);
		CHECK_EQ_U64(nx, ny);
		CHECK_HITS(x, y, nx);
	}
	/* Pinned into anonymous memory: verified whole, the same answers. */
	REQUIRE(kyro__hnsw_pin(msg, file) == 0);
	CHECK(file->pinned);
	for (int i = 0; i < 20; i++) {
		struct kyro__vec_hit x[10], y[10];
		uint32_t nx, ny;
		const float *q = v + (3000 + i) * 20;
		CHECK_RC(kyro__hnsw_search(msg, mem, s, q, 20, 10, 32, 0,
					   UINT64_MAX, 0, x, &nx), 0);
		CHECK_RC(kyro__hnsw_search(msg, file, s, q, 20, 10, 32, 0,
					   UINT64_MAX, 0, y, &ny), 0);
		CHECK_EQ_U64(nx, ny);
		CHECK_HITS(x, y, nx);
	}
	struct kyro__hnsw *dam;
	REQUIRE(h_xor_byte(path, 5000, 0x10) == 0);
	REQUIRE(kyro__hnsw_open(msg, path, &dam) == 0);
	CHECK_RC(kyro__hnsw_pin(msg, dam), KYRO_ECORRUPT);
	CHECK_STR_HAS(msg, "offset 4096");
	kyro__hnsw_free(dam);
	REQUIRE(h_xor_byte(path, 5000, 0x10) == 0);
	/* The same seed builds the same bytes. */
	const char *p2 = h_path(dir, "b.idx");
	REQUIRE(kyro__hnsw_build(msg, k, v, 3000, 20, &p, &again) == 0);
	REQUIRE(kyro__hnsw_write(msg, again, dir, p2) == 0);
	unsigned char *f1, *f2;
	size_t l1, l2;
	REQUIRE(h_read_file(path, &f1, &l1) == 0 && h_read_file(p2, &f2, &l2) == 0);
	CHECK(l1 == l2 && memcmp(f1, f2, l1) == 0);
	free(f1);
	free(f2);
	kyro__vec_scratch_free(s);
	kyro__hnsw_free(again);
	kyro__hnsw_free(mem);
	kyro__hnsw_free(file);
	free(v);
	free(k);
}

TEST(range_search_matches_exact)
{
	const uint64_t n = 4000;
	const uint32_t dim = 16;
	float *v = clustered(21, n + 40, dim, 20);
	uint64_t *k = keys_for(n);
	char msg[KMSG_MAX];
	struct kyro__hnsw_params p = {12, 80, KYRO_VEC_L2, 1, 0, 0};
	struct kyro__hnsw *h;
	REQUIRE(kyro__hnsw_build(msg, k, v, n, dim, &p, &h) == 0);
	struct kyro__vec_scratch *s = kyro__vec_scratch_new(n, dim);
	uint64_t hit = 0, total = 0;
	for (int i = 0; i < 40; i++) {
		const float *q = v + (n + i) * dim;
		/* Narrow ranges are scanned: equal to exact, byte for byte;
		 * wide ones walk the graph: every answer in range, recall
		 * near exact.  Bounds fall between keys and on them. */
		const uint64_t a = h_below(n), len = 1 + h_below(i % 2 ? 300 : n);
		const uint64_t b = a + len < n ? a + len : n - 1;
		const uint64_t lo = k[a] - (i % 3 == 0), hi = k[b] + (i % 4 == 0);
		struct kyro__vec_hit got[10], want[10];
		uint32_t ng, nw;
		CHECK_RC(kyro__hnsw_search(msg, h, s, q, dim, 10, 64, lo, hi,
					   0, got, &ng), 0);
		exact_of(h, q, a, b + 1, 10, want, &nw);
		CHECK_EQ_U64(ng, nw);
		for (uint32_t j = 0; j < ng; j++)
			CHECK(got[j].key >= lo && got[j].key <= hi);
		if (b + 1 - a <= 300) {
			CHECK_HITS(got, want, nw);
			continue;
		}
		for (uint32_t x = 0; x < nw; x++)
			for (uint32_t y = 0; y < ng; y++)
				hit += got[y].key == want[x].key;
		total += nw;
	}
	h_note("recall@10 of wide ranges: %.4f", total ? (double)hit / total : 1.0);
	CHECK(total == 0 || (double)hit / (double)total >= 0.9);
	/* A range between two keys holds nothing. */
	struct kyro__vec_hit got[10];
	uint32_t ng = 7;
	CHECK_RC(kyro__hnsw_search(msg, h, s, v, dim, 10, 64, k[5] + 1,
				   k[6] - 1, 0, got, &ng), 0);
	CHECK_EQ_U64(ng, 0);
	kyro__vec_scratch_free(s);
	kyro__hnsw_free(h);
	free(v);
	free(k);
}

TEST(bad_input_and_edges)
{
	const uint32_t dim = 8;
	float *v = clustered(3, 100, dim, 4);
	uint64_t *k = keys_for(100);
	char msg[KMSG_MAX];
	struct kyro__hnsw_params p = {8, 40, KYRO_VEC_L2, 1, 0, 0};
	struct kyro__hnsw *h, *empty, *bad;
	REQUIRE(kyro__hnsw_build(msg, k, v, 60, dim, &p, &h) == 0);
	struct kyro__vec_scratch *s = kyro__vec_scratch_new(60, dim);
	struct kyro__vec_hit out[100], want[100];
	uint32_t n, nw;
	CHECK_RC(kyro__hnsw_search(msg, h, s, v, dim, 0, 10, 0, UINT64_MAX, 0,
				   out, &n), EINVAL);
	CHECK_STR_HAS(msg, "k must be");
	CHECK_RC(kyro__hnsw_search(msg, h, s, v, dim - 1, 5, 10, 0,
				   UINT64_MAX, 0, out, &n), EINVAL);
	CHECK_STR_HAS(msg, "dimensions");
	float q[8];
	memcpy(q, v + 70 * dim, sizeof q);
	q[3] = NAN;
	CHECK_RC(kyro__hnsw_search(msg, h, s, q, dim, 5, 10, 0, UINT64_MAX, 0,
				   out, &n), EINVAL);
	CHECK_STR_HAS(msg, "not a finite");
	q[3] = INFINITY;
	CHECK_RC(kyro__hnsw_search(msg, h, s, q, dim, 5, 10, 0, UINT64_MAX, 0,
				   out, &n), EINVAL);
	CHECK_RC(kyro__hnsw_search(msg, h, s, v, dim, 5, 10, 9, 8, 0, out, &n),
		 EINVAL);
	/* k > n: all n, in exact order (ef is raised to k). */
	CHECK_RC(kyro__hnsw_search(msg, h, s, v + 70 * dim, dim, 100, 10, 0,
				   UINT64_MAX, 0, out, &n), 0);
	exact_of(h, v + 70 * dim, 0, 60, 100, want, &nw);
	CHECK_EQ_U64(n, 60);
	CHECK_EQ_U64(nw, 60);
	CHECK_HITS(out, want, 60);
	/* n = 0: built, written, opened, searched: no answer, no error. */
	const char *dir = h_tmpdir(), *path = h_path(dir, "e.idx");
	REQUIRE(kyro__hnsw_build(msg, k, v, 0, dim, &p, &empty) == 0);
	REQUIRE(kyro__hnsw_write(msg, empty, dir, path) == 0);
	kyro__hnsw_free(empty);
	REQUIRE(kyro__hnsw_open(msg, path, &empty) == 0);
	CHECK_RC(kyro__hnsw_verify(msg, empty), 0);
	n = 9;
	CHECK_RC(kyro__hnsw_search(msg, empty, s, v, dim, 5, 10, 0, UINT64_MAX,
				   0, out, &n), 0);
	CHECK_EQ_U64(n, 0);
	kyro__hnsw_free(empty);
	/* Bad build input: nothing built. */
	v[5] = NAN;
	CHECK_RC(kyro__hnsw_build(msg, k, v, 60, dim, &p, &bad), EINVAL);
	CHECK_STR_HAS(msg, "not a finite");
	v[5] = 0;
	k[10] = k[9];
	CHECK_RC(kyro__hnsw_build(msg, k, v, 60, dim, &p, &bad), EINVAL);
	CHECK_STR_HAS(msg, "ascending");
	p.m = 1;
	CHECK_RC(kyro__hnsw_build(msg, k, v, 60, dim, &p, &bad), EINVAL);
	CHECK_RC(kyro__hnsw_build(msg, k, v, 60, 0, &p, &bad), EINVAL);
	kyro__vec_scratch_free(s);
	kyro__hnsw_free(h);
	free(v);
	free(k);
}

TEST(version_refused)
{
	const char *dir = h_tmpdir(), *path = h_path(dir, "v.idx");
	float *v = clustered(3, 50, 4, 2);
	uint64_t *k = keys_for(50);
	char msg[KMSG_MAX];
	struct kyro__hnsw_params p = {4, 20, KYRO_VEC_L2, 1, 0, 0};
	struct kyro__hnsw *h;
	REQUIRE(kyro__hnsw_build(msg, k, v, 50, 4, &p, &h) == 0);
	REQUIRE(kyro__hnsw_write(msg, h, dir, path) == 0);
	kyro__hnsw_free(h);
	unsigned char *b;
	size_t len;
	REQUIRE(h_read_file(path, &b, &len) == 0);
	b[8] = 2;
	uint64_t sum = XXH3_64bits(b, 248);
	memcpy(b + 248, &sum, 8);
	REQUIRE(h_write_file(path, b, len) == 0);
	CHECK_RC(kyro__hnsw_open(msg, path, &h), KYRO_EVERSION);
	CHECK_STR_HAS(msg, "rebuild");
	free(b);
	free(v);
	free(k);
}

/*
 * Flip bytes of a small index file, one at a time: the open refuses it,
 * or every search (graph and exact) either fails with KYRO_ECORRUPT or
 * gives exactly the undamaged answers; and a full verify notices the flip.
 */
TEST(damage_never_a_wrong_neighbour)
{
	const char *dir = h_tmpdir(), *path = h_path(dir, "d.idx");
	const char *copy = h_path(dir, "c.idx");
	const uint64_t n = 400;
	const uint32_t dim = 12, nq = 8;
	float *v = clustered(17, n + nq, dim, 6);
	uint64_t *k = keys_for(n);
	char msg[KMSG_MAX];
	struct kyro__hnsw_params p = {6, 30, KYRO_VEC_L2, 3, 0, 0};
	struct kyro__hnsw *h;
	REQUIRE(kyro__hnsw_build(msg, k, v, n, dim, &p, &h) == 0);
	REQUIRE(kyro__hnsw_write(msg, h, dir, path) == 0);
	struct kyro__vec_scratch *s = kyro__vec_scratch_new(n, dim);
	struct kyro__vec_hit want[2][8][10], got[10];
	uint32_t nwant[2][8], ng;
	for (int ex = 0; ex < 2; ex++)
		for (uint32_t i = 0; i < nq; i++)
			REQUIRE(kyro__hnsw_search(msg, h, s, v + (n + i) * dim,
						  dim, 10, 20, 0, UINT64_MAX, ex,
						  want[ex][i], &nwant[ex][i]) == 0);
	kyro__hnsw_free(h);
	const uint64_t size = h_file_size(path);
	unsigned refused = 0, failed = 0, same = 0, flips = 0;
	for (uint64_t off = 0; off < size; off += 1 + h_below(61), flips++) {
		REQUIRE(h_copy_file(path, copy) == 0);
		REQUIRE(h_xor_byte(copy, off, (unsigned char)(1 + h_below(255))) == 0);
		if (kyro__hnsw_open(msg, copy, &h) != 0) {
			refused++;
			continue;
		}
		int bad = 0;
		for (int ex = 0; ex < 2; ex++)
			for (uint32_t i = 0; i < nq; i++) {
				int rc = kyro__hnsw_search(msg, h, s,
							   v + (n + i) * dim,
							   dim, 10, 20, 0,
							   UINT64_MAX, ex, got,
							   &ng);
				if (rc == KYRO_ECORRUPT) {
					bad = 1;
					continue;
				}
				if (!CHECK_RC(rc, 0) ||
				    !CHECK_EQ_U64(ng, nwant[ex][i]) ||
				    !CHECK_HITS(got, want[ex][i], ng))
					h_note("flip at offset %llu",
					       (unsigned long long)off);
			}
		failed += bad;
		same += !bad;
		if (!CHECK_RC(kyro__hnsw_verify(msg, h), KYRO_ECORRUPT))
			h_note("flip at %llu not found by verify",
			       (unsigned long long)off);
		kyro__hnsw_free(h);
	}
	h_note("%u flips: %u refused at open, %u failed a search, %u answered "
	       "alike",
	       flips, refused, failed, same);
	CHECK(refused > 0 && failed > 0);
	kyro__vec_scratch_free(s);
	free(v);
	free(k);
}
