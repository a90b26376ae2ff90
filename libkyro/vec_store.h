/*
 * vec_store.h - private header: a view's vectors of the snapshot (the
 * vectors file and the graph in use) and their search (vec_snap.c);
 * writing a snapshot's vectors file (vec_snap.c).
 */
#ifndef KYRO_VEC_STORE_H
#define KYRO_VEC_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "delta.h"
#include "hnsw.h"
#include "manifest.h"

#define VSTORE_WHY 512

struct kyro__vstore {
	struct kyro__hnsw *vecs;  /* the snapshot's vectors, as put; NULL:
				   * the snapshot has none */
	struct kyro__hnsw *graph; /* the graph in use; NULL: none */
	uint64_t vecs_bytes, graph_bytes;
	int refused;              /* a graph exists but was refused */
	char why[VSTORE_WHY];     /* why no graph is in use */
};

/* What the snapshot's half of a search is asked. */
struct kyro__vstore_query {
	uint32_t k, ef;
	uint64_t lo, hi;
	int metric;               /* KYRO_VEC_* */
	int exact;
	const struct delta *shadow; /* keys the delta deleted or rewrote */
};

/* The snapshot's vectors file, vec-GEN.vec of DIR. */
int kyro__vstore_path(char *path, const char *dir, uint64_t gen);
/* The graph file hnsw-ID.idx of DIR. */
int kyro__vstore_graph_path(char *path, const char *dir, uint64_t id);

/* Open what manifest M names for its snapshot (SNAP_HDR_SUM: the
 * snapshot's identity, which the files are bound to).  A missing or
 * damaged vectors file is an error; a graph that cannot be used is
 * refused (why) and searches scan.  NO_GRAPH: do not even look. */
int kyro__vstore_load(char *msg, struct kyro__vstore *vs, const char *dir,
		      const struct manifest *m, uint64_t snap_hdr_sum,
		      int no_graph);
void kyro__vstore_free(struct kyro__vstore *vs);

/* The dimension of the snapshot's vectors, 0 when it has none. */
uint32_t kyro__vstore_dim(const struct kyro__vstore *vs);
/* Vectors in the snapshot. */
uint64_t kyro__vstore_count(const struct kyro__vstore *vs);
/* The metric searches default to: the graph's, else L2. */
int kyro__vstore_metric(const struct kyro__vstore *vs);
/* Nodes a search scratch must cover. */
uint64_t kyro__vstore_nodes(const struct kyro__vstore *vs);
/* KEY's vector in the snapshot, as put; KYRO_ENOTFOUND. */
int kyro__vstore_snap_get(char *msg, const struct kyro__vstore *vs,
			  uint64_t key, const float **vec, uint32_t *dim);
/*
 * The snapshot's Q->k nearest live vectors to the query already prepared
 * in S (for Q->metric) and in QUERY (as given), into OUT (room for 2k),
 * *N of them, sorted by (distance, key).  Keys in Q->shadow are never
 * answered.  Through the graph when it is in use, of Q->metric and not
 * Q->exact; else a scan.
 */
int kyro__vstore_search(char *msg, const struct kyro__vstore *vs,
			struct kyro__vec_scratch *s, const float *query,
			const struct kyro__vstore_query *q,
			struct kyro__vec_hit *out, uint32_t *n);

/* Write DIR's vectors file for snapshot GEN: N keys ascending and their
 * vectors (DIM floats each, as put), bound to the snapshot by BINDING.
 * Durable (temp, fsync, rename, fsync DIR). *BYTES gets its size. */
int kyro__vstore_write(char *msg, const char *dir, uint64_t gen,
		       uint64_t binding, const uint64_t *keys,
		       const float *vecs, uint64_t n, uint32_t dim,
		       uint64_t *bytes);

/* Resolve graph parameters P's zeros (P NULL: every default) into OUT;
 * EINVAL with MSG for a value out of range. */
struct kyro_vec_params;
int kyro__vec_params_resolve(char *msg, const struct kyro_vec_params *p,
			     struct kyro_vec_params *out);

#endif
