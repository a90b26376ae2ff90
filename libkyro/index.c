/*
 * index.c - the learned index in the store: which file serves which
 * snapshot, loading it next to the mapped key array, building and
 * committing one, and warming the page cache.
 *
 * The model itself is rmi.c's.  An index file rmi-ID.idx is written once
 * (tmp, fsync, rename, fsync dir) under a fresh ID and committed by a
 * manifest that names both the ID and the snapshot generation it serves;
 * a new snapshot makes the old index dead (rmi_snap no longer matches),
 * and the next snapshot or build deletes the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <time.h>

#include "fsio.h"
#include "index.h"
#include "rmi.h"
#include "simd.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int forced_binary(void)
{
	const char *e = getenv("KYRODB_INDEX");
	return e && !strcmp(e, "binary");
}

void index_load(kyro_db *db)
{
	struct view *v = &db->v;
	char path[PATH_MAX], err[KMSG_MAX];
	int fd = -1;
	uint64_t size;
	v->rmi_refused = 0;
	v->rmi_why[0] = 0;
	if (!v->have_snap)
		return;
	if (forced_binary()) {
		snprintf(v->rmi_why, sizeof v->rmi_why,
			 "KYRODB_INDEX=binary forces binary search");
		return;
	}
	if (!v->man.rmi_gen || v->man.rmi_snap != v->man.snap_gen) {
		snprintf(v->rmi_why, sizeof v->rmi_why,
			 "the snapshot has no learned index (run kyro-rmi-build)");
		return;
	}
	v->rmi_refused = 1;
	if (kpath_gen(path, db->dir, "rmi-", v->man.rmi_gen, ".idx") ||
	    fs_open(err, path, O_RDONLY, 0, &fd) ||
	    fs_size(err, fd, path, &size) ||
	    fs_map(err, fd, (size_t)size, 0, path, (void **)&v->rmi_img)) {
		fs_close(fd);
		snprintf(v->rmi_why, sizeof v->rmi_why,
			 "learned index refused: %.1000s", err);
		return;
	}
	fs_close(fd);
	v->rmi_len = (size_t)size;
	struct kyro_rmi *rmi = NULL;
	if (kyro_rmi_load(&rmi, v->rmi_img, v->rmi_len, v->snap.keys,
			  v->snap.n, v->snap.gen, err, sizeof err)) {
		snprintf(v->rmi_why, sizeof v->rmi_why,
			 "learned index '%.200s' refused: %.800s", path, err);
		fs_unmap((void *)v->rmi_img, v->rmi_len);
		v->rmi_img = NULL;
		v->rmi_len = 0;
		return;
	}
	kyro_rmi_count_windows(rmi, (db->flags & KYRO_COUNT_WINDOWS) != 0);
	v->rmi = rmi;
	v->rmi_refused = 0;
}

void index_unload(kyro_db *db)
{
	struct view *v = &db->v;
	/* The counters are the handle's (db->rmi_ctr): nothing to keep. */
	kyro_rmi_free(v->rmi);
	v->rmi = NULL;
	fs_unmap((void *)v->rmi_img, v->rmi_len);
	v->rmi_img = NULL;
	v->rmi_len = 0;
}

int index_write(char *msg, const char *dir, const struct snap *s, uint64_t id,
		const struct kyro_rmi_params *p, struct kyro_rmi_stats *st)
{
	struct kyro_rmi_build_stats bs;
	char path[PATH_MAX], err[256];
	void *img = NULL;
	size_t size = 0;
	double t0 = now();
	int rc = kpath_gen(path, dir, "rmi-", id, ".idx");
	if (rc)
		return kfail(msg, rc, "cannot write an index in '%s'", dir);
	/* An index trained on damaged keys would serve them: verify every
	 * key block first. */
	if (s->n && (rc = snap_check(msg, s, SNAP_BIN, SNAP_BIN_HDR,
				     8 * s->n)) != 0)
		return rc;
	rc = kyro_rmi_train(s->keys, s->n, s->gen, p, &img, &size, &bs, err,
			    sizeof err);
	if (rc) {
		free(img);
		return kfailx(msg, rc, "cannot build the learned index: %s", err);
	}
	rc = fs_replace_file(msg, dir, path, img, size);
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
	if ((rc = db_maintenance_lock(db, "index", &lockfd)) != 0)
		return rc;
	if ((rc = manifest_read(db->msg, db->dir, &m)) != 0)
		goto out;
	if (!m.snap_gen) {
		rc = kfailx(db->msg, KYRO_ENOTFOUND,
			    "'%s' has no snapshot to index (run kyro-snapshot "
			    "first)",
			    db->dir);
		goto out;
	}
	if ((rc = snap_open(db->msg, &s, db->dir, m.snap_gen, m.snap_keys)))
		goto out;
	have_snap = 1;
	if (progress)
		progress(arg, 0, 2);
	rc = index_write(db->msg, db->dir, &s, m.rmi_gen + 1, p, st);
	if (rc)
		goto out;
	if (progress)
		progress(arg, 1, 2);
	rc = index_commit(db, m.snap_gen, m.rmi_gen + 1);
	if (!rc) {
		db_collect_garbage(db->dir, &db->wman);
		if (progress)
			progress(arg, 2, 2);
	}
out:
	if (have_snap)
		snap_close(&s);
	fs_close(lockfd);
	st->seconds = now() - t0;
	return rc;
}

int index_commit(kyro_db *db, uint64_t snap_gen, uint64_t id)
{
	int rc = shared_lock(db->msg, &db->sh);
	if (rc)
		return rc;
	rc = db_writer_prepare(db);
	if (!rc && db->wman.snap_gen != snap_gen)
		rc = kfailx(db->msg, KYRO_EBATCH,
			    "the snapshot changed under the index build (was "
			    "SNAPSHOT.lock removed?)");
	if (!rc) {
		db->wman.gen++;
		db->wman.rmi_gen = id;
		db->wman.rmi_snap = snap_gen;
		rc = manifest_write(db->msg, db->dir, &db->wman);
	}
	if (!rc)
		db_publish(db);
	shared_unlock(&db->sh);
	return rc;
}

int kyro_index_info(kyro_db *db, struct kyro_index_info *info)
{
	int rc = db_view_refresh(db);
	memset(info, 0, sizeof *info);
	if (rc)
		return rc;
	const struct view *v = &db->v;
	info->simd = kyro_simd_name(kyro_simd_selected());
	if (!v->have_snap) {
		info->kind = KYRO_INDEX_NONE;
		snprintf(info->why, sizeof info->why, "no snapshot yet");
		return 0;
	}
	info->keys = v->snap.n;
	if (!v->rmi) {
		info->kind = KYRO_INDEX_BINARY;
		info->refused = v->rmi_refused;
		snprintf(info->why, sizeof info->why, "%s", v->rmi_why);
		return 0;
	}
	struct kyro_rmi_info ri;
	kyro_rmi_info(v->rmi, &ri);
	info->kind = KYRO_INDEX_RMI;
	info->leaves = ri.leaves;
	info->router_bits = ri.router_bits;
	info->bytes = ri.bytes;
	info->generation = v->man.rmi_gen;
	info->simd = kyro_simd_name(ri.simd);
	return 0;
}

/* Touch one byte per page: the reads fault the pages into the page cache
 * and this process's page tables; volatile keeps them. */
static uint64_t touch(const unsigned char *p, size_t len)
{
	volatile unsigned char sink = 0;
	fs_populate(p, len);
	for (size_t i = 0; i < len; i += 4096)
		sink ^= p[i];
	(void)sink;
	return len;
}

int kyro_warmup(kyro_db *db, uint64_t *bytes)
{
	uint64_t local;
	int rc = db_view_refresh(db);
	if (!bytes)
		bytes = &local;
	*bytes = 0;
	if (rc)
		return rc;
	const struct view *v = &db->v;
	if (v->have_snap) {
		/* Verifying every block reads it all: the check is the touch,
		 * and lookups afterwards pay one bit test per block. */
		*bytes += touch(v->snap.bin, v->snap.bin_len);
		*bytes += touch(v->snap.data, v->snap.data_len);
		if ((rc = snap_check_all(db->msg, &v->snap)) != 0) {
			*bytes = 0;
			return rc;
		}
	}
	if (v->rmi_img)
		*bytes += touch(v->rmi_img, v->rmi_len);
	return 0;
}
