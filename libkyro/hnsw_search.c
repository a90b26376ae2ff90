/*
 * hnsw_search.c - searching the graph: the greedy descent through the
 * upper levels, the beam search of one level, and the entry point that
 * picks between the graph and an exact scan.
 *
 * Every id read from a link list is checked against n (and, above level
 * 0, against the node's level) before it is used, and every vector, link
 * list and key is verified (kyro__hnsw_touch()) before it is read, so a
 * damaged file gives KYRO_ECORRUPT, never a read out of bounds nor an
 * answer computed from damaged bytes.
 *
 * Visited nodes are marked with the search's 16-bit epoch in a per-thread
 * array (hnswlib's visited-list pool, without the pool): no clearing
 * between searches but one pass every 65535 of them.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fsio.h"
#include "hnsw.h"
#include "internal.h"

#define SEEN_HUGE ((size_t)2 << 20) /* a huge page */

struct kyro__vec_scratch *kyro__vec_scratch_new(uint64_t n, uint32_t dim)
{
	struct kyro__vec_scratch *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->n = n;
	s->qdim = dim;
	/* A search marks a few thousand nodes spread over the whole array:
	 * on 4 KiB pages, each is a page fault, most of a first search's
	 * time on a large index.  A large array goes on huge pages, whole
	 * ones, which the kernel zeroes a page at a time. */
	size_t bytes = (n ? n : 1) * sizeof *s->seen;
	if (bytes >= SEEN_HUGE / 2) {
		s->seen_map = (bytes + SEEN_HUGE - 1) & ~(SEEN_HUGE - 1);
		s->seen = kyro__fs_alloc_huge(s->seen_map);
	} else {
		s->seen = calloc(n ? n : 1, sizeof *s->seen);
	}
	s->q = malloc(((size_t)dim + 16) * sizeof *s->q);
	if (!s->seen || !s->q || kyro__vec_reserve(s, 0, 256) ||
	    kyro__vec_reserve(s, 1, 256)) {
		kyro__vec_scratch_free(s);
		return NULL;
	}
	return s;
}

void kyro__vec_scratch_free(struct kyro__vec_scratch *s)
{
	if (!s)
		return;
	if (s->seen_map)
		kyro__fs_free_huge(s->seen, s->seen_map);
	else
		free(s->seen);
	free(s->q);
	free(s->cand);
	free(s->res);
	free(s);
}

static void next_epoch(struct kyro__vec_scratch *s)
{
	if (++s->epoch == 0) {
		memset(s->seen, 0, s->n * sizeof *s->seen);
		s->epoch = 1;
	}
}

static int corrupt(char *msg, const struct kyro__hnsw *h, uint64_t v,
		   const char *what)
{
	return kyro__failx(msg, KYRO_ECORRUPT, "'%s': node %llu: %s",
			   h->path ? h->path : "(index)",
			   (unsigned long long)v, what);
}

int kyro__hnsw_links(char *msg, const struct kyro__hnsw *h, uint64_t v,
		     int level, const uint32_t **ids, uint32_t *cnt)
{
	const uint32_t *p;
	uint32_t cap;
	int rc;
	if (level == 0) {
		cap = h->m0;
		p = h->adj0 + v * (1 + (uint64_t)h->m0);
	} else {
		if ((rc = kyro__hnsw_touch(msg, h, h->levels + v, 1)) ||
		    (rc = kyro__hnsw_touch(msg, h, h->upidx + v, 4)))
			return rc;
		const uint64_t blk = (uint64_t)h->upidx[v] + (unsigned)level - 1;
		if (h->levels[v] < level || blk >= h->nupper)
			return corrupt(msg, h, v, "linked above its level");
		cap = h->m;
		p = h->upper + blk * (1 + (uint64_t)h->m);
	}
	if ((rc = kyro__hnsw_touch(msg, h, p, 4 * (1 + (uint64_t)cap))))
		return rc;
	if (p[0] > cap)
		return corrupt(msg, h, v, "more links than the list holds");
	*ids = p + 1;
	*cnt = p[0];
	return 0;
}

static inline int vec_of(char *msg, const struct kyro__hnsw *h, uint64_t v,
			 const float **out)
{
	const float *p = h->vecs + v * h->stride;
	int rc = kyro__hnsw_touch(msg, h, p, 4 * (uint64_t)h->dim);
	*out = p;
	return rc;
}

/*
 * A search is bound by memory: each distance reads a whole vector (49
 * lines at 784 dimensions) from a random place.  So what it will read is
 * asked for ahead: the first two lines of every neighbour not yet seen as
 * soon as the link list is read (the requests overlap, and each starts
 * the hardware's stream through its vector); the whole vector of the
 * neighbour PREFETCH_AHEAD places on while a distance is computed (one
 * place was 6-9% slower on Fashion-MNIST, three no faster); and the link
 * list of the next node to expand as soon as it is at the top of the
 * candidates, so that it is in cache when its turn comes.  The greedy
 * descent through the upper levels asks for its vectors the same way
 * (7-9% more queries a second).  The bounded kernel rarely stops early
 * enough here for a vector's tail to be fetched in vain.  A prefetch is
 * not a read: nothing is used before kyro__hnsw_touch() has verified it,
 * and no address is formed from an id before it is checked against n.
 *
 * always_inline: GCC (12, -O2) takes a static function that does nothing
 * but prefetch for one without side effects and deletes its calls before
 * inlining it, so a plain static inline helper here emitted no prefetch.
 */
#define PREFETCH_AHEAD 2

static inline __attribute__((always_inline)) void
prefetch_head(const struct kyro__hnsw *h, uint32_t v)
{
	const char *p = (const char *)(h->vecs + (uint64_t)v * h->stride);
	__builtin_prefetch(p);
	if (h->dim > 16)
		__builtin_prefetch(p + 64);
}

static inline __attribute__((always_inline)) void
prefetch_vec(const struct kyro__hnsw *h, uint32_t v)
{
	const char *p = (const char *)(h->vecs + (uint64_t)v * h->stride);
	const uint64_t len = 4 * (uint64_t)h->dim;
	for (uint64_t o = 0; o < len; o += 64)
		__builtin_prefetch(p + o);
}

int kyro__hnsw_greedy(char *msg, const struct kyro__hnsw *h,
		      struct kyro__vec_scratch *s, uint32_t *ep, float *dep,
		      int level)
{
	for (int changed = 1; changed;) {
		const uint32_t *ids;
		uint32_t cnt;
		int rc = kyro__hnsw_links(msg, h, *ep, level, &ids, &cnt);
		if (rc)
			return rc;
		changed = 0;
		for (uint32_t j = 0; j < cnt; j++)
			if (ids[j] < h->n)
				prefetch_head(h, ids[j]);
		for (uint32_t j = 0; j < cnt && j < PREFETCH_AHEAD; j++)
			if (ids[j] < h->n)
				prefetch_vec(h, ids[j]);
		for (uint32_t j = 0; j < cnt; j++) {
			const uint32_t nb = ids[j];
			const float *v;
			if (j + PREFETCH_AHEAD < cnt &&
			    ids[j + PREFETCH_AHEAD] < h->n)
				prefetch_vec(h, ids[j + PREFETCH_AHEAD]);
			if (nb >= h->n)
				return corrupt(msg, h, *ep, "bad link");
			if ((rc = vec_of(msg, h, nb, &v)))
				return rc;
			const float d = kyro__vec_dist(h->ops, (int)h->metric,
						       s->q, v, h->dim, *dep);
			s->ndist++;
			if (d < *dep) {
				*dep = d;
				*ep = nb;
				changed = 1;
			}
		}
	}
	return 0;
}

/* Level 0 only: above it a node's links are found through its upper
 * index, a read of its own, and the greedy descent is short. */
static inline __attribute__((always_inline)) void
prefetch_links0(const struct kyro__hnsw *h, uint32_t v)
{
	const char *p = (const char *)(h->adj0 + (uint64_t)v * (1 + h->m0));
	const uint64_t len = 4 * (1 + (uint64_t)h->m0);
	for (uint64_t o = 0; o < len; o += 64)
		__builtin_prefetch(p + o);
	__builtin_prefetch(p + len - 1);
}

int kyro__hnsw_layer(char *msg, const struct kyro__hnsw *h,
		     struct kyro__vec_scratch *s, uint32_t ep, float dep,
		     int level, uint32_t ef, uint64_t a, uint64_t b)
{
	uint32_t fresh[2 * KYRO_HNSW_MAX_M];
	int rc;
	if ((rc = kyro__vec_reserve(s, 0, (size_t)ef + 2)))
		return kyro__fail(msg, rc, "cannot search");
	next_epoch(s);
	s->ncand = s->nres = 0;
	const struct kyro__vec_cand e = {dep, ep};
	kyro__heap_push_min(s->cand, &s->ncand, e);
	if (ep >= a && ep < b)
		kyro__heap_push_max(s->res, &s->nres, e);
	s->seen[ep] = s->epoch;
	float bound = s->nres == ef ? s->res[0].d : INFINITY;
	while (s->ncand) {
		const struct kyro__vec_cand c = s->cand[0];
		if (c.d > bound)
			break;
		kyro__heap_pop_min(s->cand, &s->ncand);
		if (s->ncand && level == 0)
			prefetch_links0(h, s->cand[0].id);
		const uint32_t *ids;
		uint32_t cnt, nf = 0;
		if ((rc = kyro__hnsw_links(msg, h, c.id, level, &ids, &cnt)))
			return rc;
		for (uint32_t j = 0; j < cnt; j++) {
			const uint32_t nb = ids[j];
			if (nb >= h->n)
				return corrupt(msg, h, c.id, "bad link");
			if (s->seen[nb] == s->epoch)
				continue;
			s->seen[nb] = s->epoch;
			prefetch_head(h, nb);
			fresh[nf++] = nb;
		}
		if ((rc = kyro__vec_reserve(s, 1, s->ncand + nf)))
			return kyro__fail(msg, rc, "cannot search");
		for (uint32_t j = 0; j < nf && j < PREFETCH_AHEAD; j++)
			prefetch_vec(h, fresh[j]);
		for (uint32_t j = 0; j < nf; j++) {
			const uint32_t nb = fresh[j];
			const float *v;
			if (j + PREFETCH_AHEAD < nf)
				prefetch_vec(h, fresh[j + PREFETCH_AHEAD]);
			if ((rc = vec_of(msg, h, nb, &v)))
				return rc;
			const float d = kyro__vec_dist(h->ops, (int)h->metric,
						       s->q, v, h->dim, bound);
			if (!(d < bound) && s->nres == ef)
				continue;
			const struct kyro__vec_cand x = {d, nb};
			kyro__heap_push_min(s->cand, &s->ncand, x);
			if (level == 0 && s->cand[0].id == nb)
				prefetch_links0(h, nb);
			if (nb < a || nb >= b)
				continue;
			kyro__heap_push_max(s->res, &s->nres, x);
			if (s->nres > ef)
				kyro__heap_pop_max(s->res, &s->nres);
			if (s->nres == ef)
				bound = s->res[0].d;
		}
		s->ndist += nf;
	}
	return 0;
}

/* The first node whose key is >= KEY (UPPER: > KEY), keys verified. */
static int key_bound(char *msg, const struct kyro__hnsw *h, uint64_t key,
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

/*
 * Scan or graph for C of the N nodes?  The graph walks nodes outside the
 * range too and admits only the range's, so it reads about ef * m0 * N / C
 * vectors to fill its beam, against C for a scan: the scan wins while
 * C^2 <= ef * m0 * N.  (At N = 1M, ef = 64, M = 16: ranges up to about
 * 45,000 keys are scanned.)
 */
static int scan_wins(const struct kyro__hnsw *h, uint64_t c, uint32_t ef)
{
	if (c >= h->n)
		return 0;
	return (double)c * (double)c <= (double)ef * h->m0 * (double)h->n;
}

static int search_exact(char *msg, const struct kyro__hnsw *h,
			struct kyro__vec_scratch *s, uint64_t a, uint64_t b,
			uint32_t k, struct kyro__vec_hit *out, uint32_t *count)
{
	const unsigned char *v = (const void *)(h->vecs + a * h->stride);
	const unsigned char *kp = (const void *)(h->keys + a);
	int rc;
	/* The scan reads the range's blocks in order: verify them first. */
	if (h->ok &&
	    ((rc = kyro__hnsw_check(msg, h, (uint64_t)(v - h->map),
				    (b - a - 1) * 4 * h->stride +
					    4 * (uint64_t)h->dim)) ||
	     (rc = kyro__hnsw_check(msg, h, (uint64_t)(kp - h->map),
				    8 * (b - a)))))
		return rc;
	const struct kyro__vec_set set = {h->keys, h->vecs, h->n, h->stride,
					  h->dim, (int)h->metric};
	if ((rc = kyro__vec_exact(&set, h->ops, s, a, b, k, out, count)))
		return kyro__fail(msg, rc, "cannot search");
	return 0;
}

static int search_graph(char *msg, const struct kyro__hnsw *h,
			struct kyro__vec_scratch *s, uint64_t a, uint64_t b,
			uint32_t k, uint32_t ef, struct kyro__vec_hit *out,
			uint32_t *count)
{
	uint32_t ep = (uint32_t)h->entry;
	const float *v;
	int rc;
	if ((rc = vec_of(msg, h, ep, &v)))
		return rc;
	float dep = kyro__vec_dist(h->ops, (int)h->metric, s->q, v, h->dim,
				   INFINITY);
	for (int l = (int)h->top; l > 0; l--)
		if ((rc = kyro__hnsw_greedy(msg, h, s, &ep, &dep, l)))
			return rc;
	if ((rc = kyro__hnsw_layer(msg, h, s, ep, dep, 0, ef, a, b)))
		return rc;
	size_t n = s->nres;
	while (n > 1) {
		const struct kyro__vec_cand top = s->res[0];
		kyro__heap_pop_max(s->res, &n);
		s->res[n] = top;
	}
	const uint32_t got = s->nres < k ? (uint32_t)s->nres : k;
	for (uint32_t j = 0; j < got; j++) {
		const uint32_t id = s->res[j].id;
		if ((rc = kyro__hnsw_touch(msg, h, h->keys + id, 8)))
			return rc;
		out[j].key = h->keys[id];
		out[j].dist = s->res[j].d;
	}
	*count = got;
	return 0;
}

int kyro__hnsw_search(char *msg, const struct kyro__hnsw *h,
		      struct kyro__vec_scratch *s, const float *query,
		      uint32_t dim, uint32_t k, uint32_t ef, uint64_t lo,
		      uint64_t hi, int exact, struct kyro__vec_hit *out,
		      uint32_t *count)
{
	uint64_t a, b;
	int rc;
	*count = 0;
	if (k == 0)
		return kyro__failx(msg, EINVAL, "k must be at least 1");
	if (lo > hi)
		return kyro__failx(msg, EINVAL,
				   "empty key range: %llu > %llu",
				   (unsigned long long)lo,
				   (unsigned long long)hi);
	if (s->n < h->n || s->qdim != h->dim)
		return kyro__failx(msg, EINVAL,
				   "search scratch made for another index");
	if ((rc = kyro__vec_prepare(msg, s, (int)h->metric, query, dim)))
		return rc;
	if (h->n == 0)
		return 0;
	if ((rc = key_bound(msg, h, lo, 0, &a)) ||
	    (rc = key_bound(msg, h, hi, 1, &b)))
		return rc;
	if (a >= b)
		return 0;
	if (ef < k)
		ef = k;
	if (exact || scan_wins(h, b - a, ef))
		return search_exact(msg, h, s, a, b, k, out, count);
	return search_graph(msg, h, s, a, b, k, ef, out, count);
}
