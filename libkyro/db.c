/*
 * db.c - the kyro_db handle: opening (and creating) a store, closing it,
 * its message, options and counters.  The handle's two roles live beside
 * this file: view.c reads, writer.c writes and commits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "db.h"
#include "fsio.h"
#include "simd.h"

const char *kyro_errmsg(const kyro_db *db)
{
	if (!db)
		return "out of memory";
	return db->msg[0] ? db->msg : "no error";
}

int kyro_set_sync(kyro_db *db, int mode)
{
	if (mode < KYRO_SYNC_ALWAYS || mode > KYRO_SYNC_NONE)
		return kyro__failx(db->msg, EINVAL, "invalid sync mode %d",
				   mode);
	db->sync = mode;
	return 0;
}

int kyro_set_simd(kyro_db *db, const char *name)
{
	int level = KYRO_SIMD_SCALAR;
	if (!name || !strcmp(name, "auto")) {
		for (int l = 0; l < KYRO_SIMD_NLEVELS; l++)
			if (kyro__simd_supported(l))
				level = l;
	} else if ((level = kyro__simd_level(name)) < 0) {
		return kyro__failx(
			db->msg, EINVAL,
			"unknown instruction set '%.64s' (expected auto, "
			"scalar, sse4, avx2 or avx512)",
			name);
	} else if (!kyro__simd_supported(level)) {
		return kyro__failx(db->msg, ENOTSUP,
				   "this CPU cannot run the %s probe", name);
	}
	db->simd = level;
	/* Only lookups on the owner's thread use the probe (kyro_stats()
	 * from another thread reads counters alone): no lock. */
	if (db->v.rmi)
		(void)kyro__rmi_set_simd(db->v.rmi, level);
	return 0;
}

char *kyro__db_msg(kyro_db *db)
{
	return db->msg;
}

const char *kyro__db_dir(const kyro_db *db)
{
	return db->dir;
}

int kyro__needs_repair(kyro_db *db, int rc)
{
	size_t n = strlen(db->msg);
	if (rc == KYRO_ECORRUPT && n + 1 < sizeof db->msg)
		snprintf(db->msg + n, sizeof db->msg - n,
			 "; run 'kyro-verify --repair'");
	return rc;
}

static int not_a_fresh_name(void *arg, const char *n)
{
	(void)arg;
	return strcmp(n, KYRO_LOCKFILE) && strncmp(n, "wal-", 4) &&
	       strcmp(n, KYRO_MANIFEST) && strcmp(n, WAL_LOSTFOUND) &&
	       strcmp(n, KYRO_MANIFEST ".tmp");
}

/* Empty but for files a writer creates first: MANIFEST counts too, since
 * a concurrent writer may have committed it between our finding none and
 * looking here, and then the directory is a store.  lost+found
 * (kyro-verify --repair's, or a file system's root) holds no store state
 * and is never touched.  A directory that cannot be read is not fresh. */
int kyro__dir_is_fresh(const char *dir)
{
	return kyro__fs_list_dir(NULL, dir, not_a_fresh_name, NULL) == 0;
}

static uint64_t load_relaxed(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void kyro_stats(const kyro_db *db, struct kyro_stats *st)
{
	const struct kyro_stats *s = &db->st;
	memset(st, 0, sizeof *st);
	st->lookups_delta = load_relaxed(&s->lookups_delta);
	st->lookups_rmi = load_relaxed(&s->lookups_rmi);
	st->lookups_binary = load_relaxed(&s->lookups_binary);
	st->batches = load_relaxed(&s->batches);
	st->wal_records = load_relaxed(&s->wal_records);
	st->wal_bytes = load_relaxed(&s->wal_bytes);
	st->wal_fsyncs = load_relaxed(&s->wal_fsyncs);
	st->vec_searches = load_relaxed(&s->vec_searches);
	st->vec_distances = load_relaxed(&s->vec_distances);
	const struct kyro__rmi_counters *c = &db->rmi_ctr;
	st->rmi_mispredicts = load_relaxed(&c->mispredicts);
	st->rmi_fallbacks = load_relaxed(&c->fallbacks);
	/* Fold the index's finer histogram into ours: its bucket b > 0
	 * holds windows of 2^(b-1)..2^b-1 keys, ours of < 2^i. */
	for (int b = 0; b < KYRO_RMI_HIST; b++) {
		int i = b < KYRO_WINDOW_BUCKETS ? b : KYRO_WINDOW_BUCKETS - 1;
		st->window_hist[i] += load_relaxed(&c->window_hist[b]);
	}
	st->manifest_gen = db->v.man.gen;
	st->snapshot_gen = db->v.man.snap_gen;
	st->rmi_gen = db->v.man.rmi_gen;
	st->last_seq = db->v.last_seq;
}

/* ---- opening ---- */

static int create_store(kyro_db *db)
{
	struct manifest m = {.gen = 1, .wal_first = 1, .wal_last = 1};
	int rc = kyro__shared_lock(db->msg, &db->sh);
	if (rc)
		return rc;
	rc = kyro__manifest_read(db->msg, db->dir, &db->wman);
	if (rc == ENOENT) {
		if (!kyro__dir_is_fresh(db->dir))
			rc = kyro__failx(
				db->msg, KYRO_ENOTDB,
				"'%s' is not a KyroDB data directory (no "
				"MANIFEST, and not empty)",
				db->dir);
		else if (!(rc = kyro__wal_create(db->msg, db->dir, 1, 1)))
			rc = kyro__manifest_write(db->msg, db->dir, &m);
	}
	kyro__shared_unlock(&db->sh);
	return rc;
}

int kyro_open(kyro_db **dbp, const char *dir, unsigned flags)
{
	struct manifest m;
	kyro_db *db = calloc(1, sizeof *db);
	int rc, create = (flags & KYRO_RDWR) && !(flags & KYRO_EXISTING);
	*dbp = db;
	if (!db)
		return ENOMEM;
	db->flags = flags;
	db->sync = KYRO_SYNC_BATCH;
	db->simd = -1;
	db->sh.fd = -1;
	db->w.fd = -1;
	db->wman_fd = -1;
	if (snprintf(db->dir, sizeof db->dir, "%s", dir) >= (int)sizeof db->dir)
		return kyro__fail(db->msg, ENAMETOOLONG, "cannot open '%s'",
				  dir);
	int isdir;
	if ((rc = kyro__fs_is_dir(db->msg, dir, &isdir)) != 0) {
		if (rc != ENOENT || !create)
			return rc;
		/* Another writer may create it first: then use theirs. */
		rc = kyro__fs_mkdir_durable(db->msg, dir);
		if (rc == EEXIST && !kyro__fs_is_dir(NULL, dir, &isdir) &&
		    isdir)
			rc = 0;
		if (rc)
			return rc;
	} else if (!isdir) {
		return kyro__fail(db->msg, ENOTDIR, "cannot open '%s'", dir);
	}
	/* Judge the directory before creating anything in it: a refused
	 * directory is left exactly as it was. */
	rc = kyro__manifest_read(db->msg, dir, &m);
	if (rc == ENOENT && !kyro__dir_is_fresh(dir))
		return kyro__failx(db->msg, KYRO_ENOTDB,
				   "'%s' is not a KyroDB data directory (no "
				   "MANIFEST, and not empty)",
				   dir);
	if (rc == ENOENT && (flags & KYRO_EXISTING))
		return kyro__failx(db->msg, ENOENT,
				   "'%s' holds no KyroDB store yet", dir);
	if (rc && rc != ENOENT)
		return rc;
	rc = kyro__shared_open(db->msg, &db->sh, dir, flags & KYRO_RDWR);
	if (rc)
		return rc;
	if (flags & KYRO_RDWR) {
		rc = kyro__manifest_read(db->msg, dir, &m);
		if (!rc && !(flags & KYRO_MAINTENANCE))
			kyro__writer_precheck(db);
		return rc == ENOENT ? create_store(db) : rc;
	}
	return kyro__view_load(db);
}

void kyro_close(kyro_db *db)
{
	if (!db)
		return;
	kyro_batch_abort(db);
	if (db->wopen)
		kyro__wal_writer_close(&db->w);
	kyro__fs_close(db->wman_fd);
	kyro__view_free(db);
	kyro__vec_state_free(db);
	kyro__shared_close(&db->sh);
	free(db);
}
