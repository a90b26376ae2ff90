/*
 * vec_build.h - private header: building and committing a snapshot's
 * vector graph (vec_build.c), for kyro_vec_build() and kyro_snapshot().
 */
#ifndef KYRO_VEC_BUILD_H
#define KYRO_VEC_BUILD_H

#include <stdint.h>

#include "kyro.h"
#include "manifest.h"

/* A snapshot's vectors in memory: N keys ascending, N * DIM floats. */
struct kyro__vec_arrays {
	uint64_t *keys;
	float *vecs;
	uint64_t n;
	uint32_t dim;
	uint64_t binding; /* the snapshot's identity (its header checksum) */
};
void kyro__vec_arrays_free(struct kyro__vec_arrays *a);

/*
 * The parameters of a graph for a snapshot of DB whose manifest before
 * it was M: those kyro_set_vec_params() set on DB, else the graph M's
 * snapshot uses, else the defaults; every 0 resolved.  *HAD_GRAPH: M's
 * snapshot has a graph (a snapshot rebuilds it,
 * docs/VECTORS.md, "Decisions").
 */
void kyro__vec_snapshot_params(kyro_db *db, const struct manifest *m,
			       struct kyro_vec_params *out, int *had_graph);

/* Build the graph of A for snapshot SNAP_GEN and write it durably as
 * DIR/hnsw-ID.idx (not yet named by the manifest).  ST may be NULL. */
int kyro__vec_graph_write(char *msg, const char *dir, uint64_t id,
			  const struct kyro__vec_arrays *a, uint64_t snap_gen,
			  const struct kyro_vec_params *p,
			  struct kyro_vec_stats *st);

/* The vectors of M's snapshot (M names a vectors file), verified whole,
 * into A; KYRO_ENOTFOUND when it holds none. */
int kyro__vec_read(kyro_db *db, const struct manifest *m,
		   struct kyro__vec_arrays *a);

#endif
