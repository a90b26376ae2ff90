/*
 * index.c - the learned index in the store: which file serves which
 * snapshot, building and committing one, what is in use, and warming the
 * page cache.  Loading it next to the mapped key array is the view's
 * (view.c).
 *
 * The model itself is rmi.c's.  An index file rmi-ID.idx is written once
 * (tmp, fsync, rename, fsync dir) under a fresh ID and committed by a
 * manifest that names both the ID and the snapshot generation it serves;
 * a new snapshot makes the old index dead (rmi_snap no longer matches),
 * and the next snapshot or build deletes the file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fsio.h"
#include "index.h"
#include "vec_store.h"
#include "simd.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int kyro__index_write(char *msg, const char *dir, const struct snap *s,
		      uint64_t id, const struct kyro_rmi_params *p,
		      struct kyro_rmi_stats *st)
{
	struct kyro__rmi_build_stats bs;
	char path[PATH_MAX], err[256];
	void *img = NULL;
	size_t size = 0;
	double t0 = now();
	int rc = kyro__path_gen(path, dir, "rmi-", id, ".idx");
	if (rc)
		return kyro__fail(msg, rc, "cannot write an index in '%s'",
				  dir);
	/* An index trained on damaged keys would serve them: verify every
	 * key block first. */
	if (s->n && (rc = snap_check(msg, s, SNAP_BIN, SNAP_BIN_HDR,
				     8 * s->n)) != 0)
		return rc;
	rc = kyro__rmi_train(s->keys, s->n, s->gen, s->hdr_sum, p, &img, &size,
			     &bs, err, sizeof err);
	if (rc) {
		free(img);
		return kyro__failx(msg, rc,
				   "cannot build the learned index: %s", err);
	}
	rc = kyro__fs_replace_file(msg, dir, path, img, size);
	free(img);
	if (rc)
		return rc;
	if (st) {
		st->keys = s->n;
		st->leaves = bs.leaves;
		st->router_bits = bs.router_bits;
		st->bytes = bs.bytes;
		st->generation = id;
		st->mean_window = bs.mean_window;
		st->max_window = bs.max_window;
		st->seconds = now() - t0;
	}
	return 0;
}

int kyro_rmi_build(kyro_db *db, const struct kyro_rmi_params *p,
		   struct kyro_rmi_stats *st, kyro_progress_fn progress,
		   void *arg)
{
	struct kyro_rmi_stats local;
	struct manifest m;
	struct snap s;
	int lockfd = -1, have_snap = 0, rc;
	double t0 = now();
	if (!st)
		st = &local;
	memset(st, 0, sizeof *st);
	/* Snapshots and index builds exclude each other: an index must
	 * serve the snapshot that is current when it is committed. */
	if ((rc = kyro__db_maintenance_lock(db, "index", &lockfd)) != 0)
		return rc;
	if ((rc = kyro__manifest_read(kyro__db_msg(db), kyro__db_dir(db),
				      &m)) != 0)
		goto out;
	if (!m.snap_gen) {
		rc = kyro__failx(
			kyro__db_msg(db), KYRO_ENOTFOUND,
			"'%s' has no snapshot to index (run kyro-snapshot "
			"first)",
			kyro__db_dir(db));
		goto out;
	}
	if ((rc = kyro__snap_open(kyro__db_msg(db), &s, kyro__db_dir(db),
				  m.snap_gen, m.snap_keys)))
		goto out;
	have_snap = 1;
	if (progress)
		progress(arg, 0, 2);
	rc = kyro__index_write(kyro__db_msg(db), kyro__db_dir(db), &s,
			       m.rmi_gen + 1, p, st);
	if (rc)
		goto out;
	if (progress)
		progress(arg, 1, 2);
	rc = kyro__index_commit(db, m.gen, m.snap_gen, m.rmi_gen + 1);
	if (!rc) {
		kyro__db_collect_garbage(db);
		if (progress)
			progress(arg, 2, 2);
	}
out:
	if (have_snap)
		kyro__snap_close(&s);
	kyro__fs_close(lockfd);
	st->seconds = now() - t0;
	return rc;
}

struct index_edit {
	uint64_t snap_gen, id;
};

static int name_index(void *arg, struct manifest *m,
		      const struct db_tail *tail)
{
	const struct index_edit *e = arg;
	(void)tail;
	m->rmi_gen = e->id;
	m->rmi_snap = e->snap_gen;
	return 0;
}

int kyro__index_commit(kyro_db *db, uint64_t gen, uint64_t snap_gen,
		       uint64_t id)
{
	struct index_edit e = {.snap_gen = snap_gen, .id = id};
	return kyro__db_commit(db, "index", gen, name_index, &e);
}

int kyro_index_info(kyro_db *db, struct kyro_index_info *info)
{
	struct db_served v;
	int rc = kyro__db_view_served(db, 0, &v);
	memset(info, 0, sizeof *info);
	if (rc)
		return rc;
	info->simd =
		kyro__simd_name(v.simd >= 0 ? v.simd : kyro__simd_selected());
	if (!v.snap) {
		info->kind = KYRO_INDEX_NONE;
		snprintf(info->why, sizeof info->why, "no snapshot yet");
		return 0;
	}
	info->keys = v.snap->n;
	if (v.rmi_head) {
		/* Loaded by the lookups that pay for it (view.c): it is
		 * the index that will answer. */
		info->kind = KYRO_INDEX_RMI;
		info->leaves = v.rmi_head->leaves;
		info->router_bits = v.rmi_head->router_bits;
		info->bytes = v.rmi_head->bytes;
		info->generation = v.rmi_gen;
		return 0;
	}
	if (!v.rmi) {
		info->kind = KYRO_INDEX_BINARY;
		info->refused = v.rmi_refused;
		snprintf(info->why, sizeof info->why, "%s", v.rmi_why);
		return 0;
	}
	struct kyro__rmi_info ri;
	kyro__rmi_info(v.rmi, &ri);
	info->kind = KYRO_INDEX_RMI;
	info->leaves = ri.leaves;
	info->router_bits = ri.router_bits;
	info->bytes = ri.bytes;
	info->generation = v.rmi_gen;
	info->simd = kyro__simd_name(ri.simd);
	return 0;
}

/* Touch one byte per page: the reads fault the pages into the page cache
 * and this process's page tables; volatile keeps them. */
static uint64_t touch(const unsigned char *p, size_t len)
{
	volatile unsigned char sink = 0;
	kyro__fs_populate(p, len);
	for (size_t i = 0; i < len; i += 4096)
		sink ^= p[i];
	(void)sink;
	return len;
}

int kyro_warmup(kyro_db *db, uint64_t *bytes)
{
	uint64_t local;
	struct db_served v;
	int rc = kyro__db_view_served(db, 1, &v);
	if (!bytes)
		bytes = &local;
	*bytes = 0;
	if (rc)
		return rc;
	if (v.snap) {
		/* Verifying every block reads it all: the check is the touch,
		 * and lookups afterwards pay one bit test per block. */
		*bytes += touch(v.snap->bin, v.snap->bin_len);
		*bytes += touch(v.snap->data, v.snap->data_len);
		if ((rc = kyro__snap_check_all(kyro__db_msg(db), v.snap)) !=
		    0) {
			*bytes = 0;
			return rc;
		}
	}
	if (v.rmi_img)
		*bytes += touch(v.rmi_img, v.rmi_len);
	/* The vectors and the graph: every block verified, which reads
	 * it; searches afterwards pay one bit test per block. */
	struct kyro__hnsw *vf[2] = {v.vs->vecs, v.vs->graph};
	for (int i = 0; i < 2; i++) {
		if (!vf[i])
			continue;
		rc = kyro__hnsw_check(kyro__db_msg(db), vf[i], 0,
				      vf[i]->covered);
		if (rc) {
			*bytes = 0;
			return rc;
		}
		*bytes += vf[i]->maplen;
	}
	return 0;
}
