/*
 * hnsw.h - private header: the vector index (an HNSW graph over a sorted
 * array of (key, vector) pairs), its file, and exact k-NN search.
 *
 * One struct kyro__hnsw describes an index whether it was just built (its
 * arrays on the heap, nothing to verify) or opened from its file (its
 * arrays inside the read-only mapping, each 4 KiB block verified the first
 * time a search touches it).  The arrays are laid out the same way in
 * both, as the file states (hnsw.c), so a search is one code path.
 *
 * Node ids are positions in the key order: node i has keys[i], and a key
 * range is a node-id range.
 *
 * Concurrency: an index is read-only once built or opened, and any number
 * of threads may search it at once, each with its own scratch
 * (struct kyro__vec_scratch).  Block verification marks a shared bitmap
 * with atomic operations; two threads verifying one block agree.
 */
#ifndef KYRO_HNSW_H
#define KYRO_HNSW_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "vec_dist.h"

#define KYRO_HNSW_MAX_DIM 65536
#define KYRO_HNSW_MAX_M 128
#define KYRO_HNSW_MAX_LEVEL 31
#define KYRO_HNSW_BLOCK_SHIFT 12

/* One answer: a key and its distance to the query. */
struct kyro__vec_hit {
	uint64_t key;
	float dist;
};

/* A candidate inside a search: a distance and a node id. */
struct kyro__vec_cand {
	float d;
	uint32_t id;
};

struct kyro__hnsw_params {
	uint32_t m;		  /* links per node above level 0; 2m on 0 */
	uint32_t ef_construction; /* candidates kept while inserting */
	int metric;		  /* KYRO_VEC_* */
	uint64_t seed;		  /* the level generator's seed */
	uint64_t generation;	  /* stored in the file, for its owner */
	uint64_t binding;	  /* likewise (e.g. the snapshot's identity) */
};

struct kyro__hnsw {
	uint32_t dim, metric, m, m0, efc, top;
	uint64_t n, entry;
	uint64_t stride;	   /* floats from one vector to the next */
	uint64_t nupper;	   /* upper-level link blocks */
	uint64_t seed, generation, binding;
	float *vecs;		   /* n * stride */
	uint64_t *keys;		   /* n, strictly ascending */
	uint8_t *levels;	   /* n: each node's top level */
	uint32_t *upidx;	   /* n: a node's first upper link block */
	uint32_t *adj0;		   /* n * (1 + m0): count, then ids */
	uint32_t *upper;	   /* nupper * (1 + m) */
	const struct kyro__vec_ops *ops;

	/* Opened from a file: the mapping, its block table and the bitmap
	 * of blocks verified so far; map == NULL for a built index. */
	unsigned char *map;
	size_t maplen;
	const unsigned char *sums;
	uint64_t nblocks, covered;
	_Atomic uint64_t *ok;
	char *path;
	int pinned; /* map is an anonymous copy (kyro__hnsw_pin()) */
};

/* Search scratch for one thread: reuse it across searches of one index
 * (or of indexes no larger than it was made for). */
struct kyro__vec_scratch {
	uint64_t n;
	uint16_t *seen;
	size_t seen_map; /* bytes mapped for SEEN; 0: it is calloc'd */
	uint16_t epoch;
	struct kyro__vec_cand *cand, *res;
	size_t ncand, capcand, nres, capres;
	float *q; /* the prepared query */
	uint32_t qdim;
	uint64_t ndist; /* distances computed, for the caller's figures */
};

/* ---- build (hnsw_build.c) ---- */
/* Build an index over N pairs: KEYS strictly ascending, VECS N * DIM
 * floats, all finite.  EINVAL (with MSG) for bad parameters or input. */
int kyro__hnsw_build(char *msg, const uint64_t *keys, const float *vecs,
		     uint64_t n, uint32_t dim,
		     const struct kyro__hnsw_params *p,
		     struct kyro__hnsw **out);

/* ---- file (hnsw.c) ---- */
/* Write H to PATH durably (PATH.tmp, fsync, rename, fsync DIR). */
int kyro__hnsw_write(char *msg, const struct kyro__hnsw *h, const char *dir,
		     const char *path);
/* Open PATH: checks the header and the layout (O(1)); the blocks are
 * verified as searches touch them.  KYRO_ECORRUPT / KYRO_EVERSION. */
int kyro__hnsw_open(char *msg, const char *path, struct kyro__hnsw **out);
/* Verify every block, and every link of the graph (ids in range, counts
 * in bounds, upper links only to nodes of that level), and the key
 * order.  KYRO_ECORRUPT naming the first fault. */
int kyro__hnsw_verify(char *msg, struct kyro__hnsw *h);
void kyro__hnsw_free(struct kyro__hnsw *h);
/*
 * Copy an opened index into anonymous memory on transparent huge pages
 * and verify every block, for a process that will search it for long: a
 * file mapping is on 4 KiB pages here (the page cache has no PMD-sized
 * folios for it), and a search's random reads then miss the TLB about
 * once per vector.  Costs one pass over the file; nothing changes for
 * the searches but their speed.  Call it before any other thread uses H.
 * On failure H is unchanged, or (KYRO_ECORRUPT) pinned with a block
 * that fails its checksum, which searches will report as they would have.
 */
int kyro__hnsw_pin(char *msg, struct kyro__hnsw *h);
/* Verify the blocks of [OFF, OFF + LEN) of an opened file (0 for a built
 * index); used by the accessors below on a bitmap miss. */
int kyro__hnsw_check(char *msg, const struct kyro__hnsw *h, uint64_t off,
		     uint64_t len);

static inline int kyro__hnsw_touch(char *msg, const struct kyro__hnsw *h,
				   const void *p, uint64_t len)
{
	if (!h->ok)
		return 0;
	const uint64_t off = (uint64_t)((const unsigned char *)p - h->map);
	const uint64_t b0 = off >> KYRO_HNSW_BLOCK_SHIFT;
	const uint64_t b1 = (off + len - 1) >> KYRO_HNSW_BLOCK_SHIFT;
	const uint64_t w0 = atomic_load_explicit(&h->ok[b0 >> 6],
						 memory_order_acquire);
	const uint64_t w1 = atomic_load_explicit(&h->ok[b1 >> 6],
						 memory_order_acquire);
	if ((w0 >> (b0 & 63) & 1) && (w1 >> (b1 & 63) & 1))
		return 0;
	return kyro__hnsw_check(msg, h, off, len);
}

/* ---- search (hnsw_search.c) ---- */
struct kyro__vec_scratch *kyro__vec_scratch_new(uint64_t n, uint32_t dim);
void kyro__vec_scratch_free(struct kyro__vec_scratch *s);

/*
 * The K nearest keys to QUERY (DIM floats), among the keys LO <= key <= HI
 * (0 and UINT64_MAX for all), into OUT (K entries), nearest first, ties
 * by key; *COUNT is how many (fewer than K when the index or range holds
 * fewer).  EF (raised to K when smaller) trades speed for recall.  A range
 * so narrow that the graph would search longer than a scan of it is
 * answered exactly (hnsw_search.c says when).  EXACT set: always exact.
 * EINVAL for K = 0, a query of another dimension, or a component that is
 * not finite; KYRO_ECORRUPT for a damaged block.
 */
int kyro__hnsw_search(char *msg, const struct kyro__hnsw *h,
		      struct kyro__vec_scratch *s, const float *query,
		      uint32_t dim, uint32_t k, uint32_t ef, uint64_t lo,
		      uint64_t hi, int exact, struct kyro__vec_hit *out,
		      uint32_t *count);

/* One layer's search (hnswlib's searchBaseLayer): from node EP at
 * distance DEP, the EF nearest to S->q among nodes [A, B) (all nodes are
 * walked; only those enter the answer) into the max-heap S->res. */
int kyro__hnsw_layer(char *msg, const struct kyro__hnsw *h,
		     struct kyro__vec_scratch *s, uint32_t ep, float dep,
		     int level, uint32_t ef, uint64_t a, uint64_t b);
/* Greedy descent at LEVEL (ef 1) from *EP, *DEP. */
int kyro__hnsw_greedy(char *msg, const struct kyro__hnsw *h,
		      struct kyro__vec_scratch *s, uint32_t *ep, float *dep,
		      int level);
/* Links of node V at LEVEL, bounds-checked: *IDS and *CNT. */
int kyro__hnsw_links(char *msg, const struct kyro__hnsw *h, uint64_t v,
		     int level, const uint32_t **ids, uint32_t *cnt);

/* Room for CAP candidates in S->res (WHICH 0) or S->cand (1): ENOMEM. */
int kyro__vec_reserve(struct kyro__vec_scratch *s, int which, size_t cap);

/* Max-heap by (d, id) of capacity CAP; the pair ordering used for every
 * answer so that ties break the same way everywhere. */
static inline int kyro__cand_less(struct kyro__vec_cand x,
				  struct kyro__vec_cand y)
{
	return x.d < y.d || (x.d == y.d && x.id < y.id);
}
void kyro__heap_push_max(struct kyro__vec_cand *h, size_t *n,
			 struct kyro__vec_cand c);
void kyro__heap_pop_max(struct kyro__vec_cand *h, size_t *n);
void kyro__heap_push_min(struct kyro__vec_cand *h, size_t *n,
			 struct kyro__vec_cand c);
void kyro__heap_pop_min(struct kyro__vec_cand *h, size_t *n);

/* ---- exact (vec_exact.c) ---- */
/* A plain array of vectors: N of DIM floats, STRIDE floats apart, with
 * their keys.  Cosine sets hold normalised vectors. */
struct kyro__vec_set {
	const uint64_t *keys;
	const float *vecs;
	uint64_t n;
	uint64_t stride;
	uint32_t dim;
	int metric;
};

/* Copy QUERY (DIM floats) into S->q as the metric searches it
 * (normalised for cosine).  EINVAL for a component not finite. */
int kyro__vec_prepare(char *msg, struct kyro__vec_scratch *s, int metric,
		      const float *query, uint32_t dim);
/* The K nearest of SET's entries [A, B) to S->q (prepared): a scan with
 * a bounded heap.  *COUNT = min(K, B - A).  ENOMEM. */
int kyro__vec_exact(const struct kyro__vec_set *set,
		     const struct kyro__vec_ops *ops,
		     struct kyro__vec_scratch *s, uint64_t a, uint64_t b,
		     uint32_t k, struct kyro__vec_hit *out, uint32_t *count);

#endif /* KYRO_HNSW_H */
