/*
 * vec_build.c - the vector graph of a snapshot: its parameters, building
 * and writing it (hnsw_build.c, hnsw.c), and kyro_vec_build(), which
 * builds it for the current snapshot and commits it through the manifest
 * (offsets 88 and 96, manifest.c) the way index.c commits the learned
 * index: bound to the snapshot generation and the snapshot's identity, so
 * a graph never serves another snapshot.
 *
 * The graph is built from the snapshot's vectors file (vec_snap.c), which
 * is verified whole first: damage is never built into a graph under fresh
 * checksums.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>

#include "fsio.h"
#include "handle.h"
#include "hnsw.h"
#include "vec_build.h"
#include "vec_store.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void kyro__vec_arrays_free(struct kyro__vec_arrays *a)
{
	free(a->keys);
	free(a->vecs);
	memset(a, 0, sizeof *a);
}

void kyro__vec_snapshot_params(kyro_db *db, const struct manifest *m,
			       struct kyro_vec_params *out, int *had_graph)
{
	struct kyro_vec_params p = {0};
	char path[PATH_MAX], err[KMSG_MAX];
	struct kyro__hnsw *g = NULL;
	*had_graph = m->snap_gen && m->hnsw_gen && m->hnsw_snap == m->snap_gen;
	if (!kyro__db_vec_params(db, &p) && *had_graph &&
	    !kyro__vstore_graph_path(path, kyro__db_dir(db), m->hnsw_gen) &&
	    !kyro__hnsw_open(err, path, &g)) {
		p.m = g->m;
		p.ef_construction = g->efc;
		p.metric = (int)g->metric + 1;
		p.seed = g->seed;
	}
	kyro__hnsw_free(g);
	if (kyro__vec_params_resolve(err, &p, out))
		kyro__vec_params_resolve(err, NULL, out);
}

int kyro__vec_graph_write(char *msg, const char *dir, uint64_t id,
			  const struct kyro__vec_arrays *a, uint64_t snap_gen,
			  const struct kyro_vec_params *p,
			  struct kyro_vec_stats *st)
{
	char path[PATH_MAX];
	struct kyro__hnsw *h = NULL;
	struct kyro__hnsw_params hp = {.m = p->m,
				       .ef_construction = p->ef_construction,
				       .metric = p->metric - 1,
				       .seed = p->seed,
				       .generation = snap_gen,
				       .binding = a->binding};
	double t0 = now();
	int rc = kyro__vstore_graph_path(path, dir, id);
	if (rc)
		return kyro__fail(msg, rc, "cannot write the vector index of "
				  "'%s'", dir);
	if ((rc = kyro__hnsw_build(msg, a->keys, a->vecs, a->n, a->dim, &hp,
				   &h)) != 0)
		return rc;
	rc = kyro__hnsw_write(msg, h, dir, path);
	if (!rc && st) {
		uint64_t size = 0;
		int fd;
		if (!kyro__fs_open(NULL, path, O_RDONLY, 0, &fd)) {
			kyro__fs_size(NULL, fd, path, &size);
			kyro__fs_close(fd);
		}
		*st = (struct kyro_vec_stats){.vectors = a->n,
					      .bytes = size,
					      .generation = id,
					      .dim = a->dim,
					      .m = p->m,
					      .ef_construction =
						      p->ef_construction,
					      .metric = p->metric,
					      .seconds = now() - t0};
	}
	kyro__hnsw_free(h);
	return rc;
}

int kyro__vec_read(kyro_db *db, const struct manifest *m,
			struct kyro__vec_arrays *a)
{
	char path[PATH_MAX], *msg = kyro__db_msg(db);
	struct kyro__hnsw *h = NULL;
	int rc = kyro__vstore_path(path, kyro__db_dir(db), m->snap_gen);
	if (rc)
		return kyro__fail(msg, rc, "cannot open the vectors");
	if ((rc = kyro__hnsw_open(msg, path, &h)) != 0)
		return rc;
	if (h->generation != m->snap_gen)
		rc = kyro__failx(msg, KYRO_ECORRUPT,
				 "'%s': offset 64: not the vectors of snapshot "
				 "%llu",
				 path, (unsigned long long)m->snap_gen);
	if (!rc)
		rc = kyro__hnsw_verify(msg, h);
	if (!rc && h->n == 0)
		rc = kyro__failx(msg, KYRO_ENOTFOUND,
				 "the snapshot of '%s' holds no vectors",
				 kyro__db_dir(db));
	if (!rc) {
		a->n = h->n;
		a->dim = h->dim;
		a->binding = h->binding;
		a->keys = malloc(h->n * sizeof *a->keys);
		a->vecs = malloc(h->n * h->dim * sizeof *a->vecs);
		if (!a->keys || !a->vecs)
			rc = kyro__fail(msg, ENOMEM, "cannot read '%s'", path);
	}
	for (uint64_t i = 0; !rc && i < h->n; i++) {
		a->keys[i] = h->keys[i];
		memcpy(a->vecs + i * h->dim, h->vecs + i * h->stride,
		       (size_t)h->dim * 4);
	}
	kyro__hnsw_free(h);
	return rc;
}

struct graph_edit {
	uint64_t snap_gen, id;
};

static int name_graph(void *arg, struct manifest *m,
		      const struct db_tail *tail)
{
	const struct graph_edit *e = arg;
	(void)tail;
	m->hnsw_gen = e->id;
	m->hnsw_snap = e->snap_gen;
	return 0;
}

int kyro_vec_build(kyro_db *db, const struct kyro_vec_params *p,
		   struct kyro_vec_stats *st, kyro_progress_fn progress,
		   void *arg)
{
	struct kyro_vec_stats local;
	struct kyro_vec_params q;
	struct kyro__vec_arrays a = {0};
	struct manifest m;
	char *msg = kyro__db_msg(db);
	int lockfd = -1, rc;
	double t0 = now();
	if (!st)
		st = &local;
	memset(st, 0, sizeof *st);
	if ((rc = kyro__vec_params_resolve(msg, p, &q)) != 0)
		return rc;
	/* Snapshots and builds exclude each other: a graph must serve the
	 * snapshot that is current when it is committed. */
	if ((rc = kyro__db_maintenance_lock(db, "vector index", &lockfd)))
		return rc;
	if ((rc = kyro__manifest_read(msg, kyro__db_dir(db), &m)) != 0)
		goto out;
	if (!m.snap_gen || m.vec_snap != m.snap_gen) {
		rc = kyro__failx(msg, KYRO_ENOTFOUND,
				 "the snapshot of '%s' holds no vectors (write "
				 "vectors, then snapshot)",
				 kyro__db_dir(db));
		goto out;
	}
	if (progress)
		progress(arg, 0, 2);
	if ((rc = kyro__vec_read(db, &m, &a)) != 0 ||
	    (rc = kyro__vec_graph_write(msg, kyro__db_dir(db), m.hnsw_gen + 1,
					&a, m.snap_gen, &q, st)) != 0)
		goto out;
	if (progress)
		progress(arg, 1, 2);
	struct graph_edit e = {.snap_gen = m.snap_gen, .id = m.hnsw_gen + 1};
	rc = kyro__db_commit(db, "vector index", m.gen, name_graph, &e);
	if (!rc) {
		kyro__db_collect_garbage(db);
		if (progress)
			progress(arg, 2, 2);
	}
out:
	kyro__vec_arrays_free(&a);
	kyro__fs_close(lockfd);
	st->seconds = now() - t0;
	return rc;
}
