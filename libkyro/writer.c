/*
 * writer.c - the write side of a handle: batches, and the commit point.
 *
 * Records go to the last WAL segment under the writer lock (flock on
 * LOCK, shared.c); a batch is committed by its commit record and made
 * visible by publishing its end in the shared page.  The manifest, which
 * names the live files, changes only through kyro__db_commit(): a snapshot's
 * rotation and commit and an index's commit are edits applied there, under
 * the same lock, to the generation their maker read.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <time.h>

#include "db.h"
#include "fsio.h"

void kyro__db_publish(kyro_db *db)
{
	struct shared_state st = {
		.manifest_gen = db->wman.gen,
		.wal_seg = db->w.seg,
		.wal_end = db->w.committed,
		.last_seq = db->w.next_seq - 1,
	};
	kyro__shared_publish(&db->sh, &st);
}

/* The held manifest file stands for db->wman and nothing else: dropped
 * whenever db->wman changes, or a check fails, so that only a prepare
 * that succeeded lets the next batch skip the next one. */
static void drop_held_manifest(kyro_db *db)
{
	kyro__fs_close(db->wman_fd);
	db->wman_fd = -1;
}

/* Open segment ID of the store to check it: *FD and *SIZE, its header
 * read and checked, and when the check starts at the header, the first
 * sequence number held to NEXT_SEQ. */
static int check_open(kyro_db *db, uint64_t id, uint64_t next_seq,
		      int from_header, char *path, int *fd, uint64_t *size)
{
	unsigned char hdr[WAL_HDR];
	uint64_t first_seq;
	size_t got = 0;
	int rc = kyro__path_gen(path, db->dir, "wal-", id, ".log");
	if (rc)
		return kyro__fail(db->msg, rc,
				  "cannot open a WAL segment in '%s'", db->dir);
	if ((rc = kyro__fs_open(db->msg, path, O_RDONLY, 0, fd)) != 0)
		return rc;
	rc = kyro__fs_size(db->msg, *fd, path, size);
	if (!rc)
		rc = kyro__fs_pread_all(db->msg, *fd, hdr, sizeof hdr, 0, path,
					&got);
	if (!rc)
		rc = kyro__wal_header_check(db->msg, hdr, got, path, id,
					    &first_seq);
	if (!rc && from_header && first_seq != next_seq)
		rc = kyro__failx(db->msg, KYRO_ECORRUPT,
				 "'%s': offset 24: first sequence number "
				 "%llu, expected %llu",
				 path, (unsigned long long)first_seq,
				 (unsigned long long)next_seq);
	if (rc)
		kyro__fs_close(*fd);
	return rc;
}

/* Check segment FROM from offset START (the offset where the record
 * numbered NEXT_SEQ must begin; the header is checked whatever START is)
 * and every later live segment whole, with the sequence chain across
 * them.  *END and *LAST_SEQ get where the last segment's complete batches
 * end; with LIMIT (else UINT64_MAX) the last segment is read only up to
 * LIMIT, which must be where a complete batch ends.  *SHRUNK is set, and
 * nothing else done, when segment FROM is now shorter than START: what
 * was checked there is gone. */
static int check_segments(kyro_db *db, const struct manifest *m,
			  uint64_t from, uint64_t start, uint64_t next_seq,
			  uint64_t limit, uint64_t *end, uint64_t *last_seq,
			  int *shrunk)
{
	*shrunk = 0;
	for (uint64_t id = from; id <= m->wal_last; id++) {
		struct wal_scan sc;
		char path[PATH_MAX];
		uint64_t at = id == from ? start : WAL_HDR, size;
		int fd, rc = check_open(db, id, next_seq, at == WAL_HDR, path,
					&fd, &size);
		if (rc)
			return rc;
		if (at > size) {
			kyro__fs_close(fd);
			*shrunk = 1;
			return 0;
		}
		uint64_t len = size;
		if (id == m->wal_last && limit < len)
			len = limit;
		rc = kyro__wal_scan_fd(db->msg, fd, path, len, id, at, next_seq,
				       NULL, NULL, &sc);
		kyro__fs_close(fd);
		if (rc)
			return rc;
		if (id == m->wal_last && limit != UINT64_MAX &&
		    (sc.status || sc.end != limit))
			return kyro__failx(
				db->msg, KYRO_ECORRUPT,
				"'%s': offset %llu: not a committed end",
				path, (unsigned long long)limit);
		if (sc.status == KYRO_ECORRUPT)
			return kyro__failx(
				db->msg, KYRO_ECORRUPT, "'%s': offset %llu: %s",
				path, (unsigned long long)sc.bad_off, sc.why);
		next_seq = sc.last_seq + 1;
		*end = sc.end;
	}
	*last_seq = next_seq - 1;
	return 0;
}

/* A writer must not append behind damage: an acknowledged record after a
 * corrupt one could never be read, nor to a segment whose header it could
 * not read back.  So under the lock, before every batch, a handle checks
 * every live WAL byte it has not checked itself: the first time all live
 * segments, header and records (most of it done before the lock, by
 * kyro__writer_precheck()); later only what other processes added after its
 * own committed end (while the manifest is the one it last saw; any other
 * commit, a repair's included, means a full check).  The shared
 * page is then held against what the files show: if it claims more
 * committed data than they hold, an acknowledged batch is missing and
 * only a repair may decide what to do; any other disagreement (damage, a
 * writer that died between its fsync and its publish) is settled by
 * publishing the files' state.  LIMIT (else UINT64_MAX) ends the last
 * segment where the page marks the rest void: that batch's writer was
 * told it failed, so it must not be published now. */
static int writer_check(kyro_db *db, const struct manifest *m, uint64_t limit,
			uint64_t *end, uint64_t *last_seq)
{
	int shrunk = 1, rc = 0;
	if (db->w.committed >= WAL_HDR && db->wman.gen == m->gen &&
	    db->w.seg >= m->wal_first && db->w.seg <= m->wal_last &&
	    (db->w.seg < m->wal_last || db->w.committed <= limit))
		rc = check_segments(db, m, db->w.seg, db->w.committed,
				    db->w.next_seq, limit, end, last_seq,
				    &shrunk);
	if (!rc && shrunk)
		rc = check_segments(db, m, m->wal_first, WAL_HDR,
				    m->snap_gen ? m->snap_seq + 1 : 1, limit,
				    end, last_seq, &shrunk);
	if (!rc && shrunk)
		rc = kyro__failx(
			db->msg, KYRO_ECORRUPT,
			"a WAL segment of '%s' shrank while it was checked",
			db->dir);
	return rc;
}

/* The bulk of a new handle's first check, before it takes the lock, so
 * that the lock is held only for what was committed meanwhile: every live
 * segment, the last up to the committed end the page publishes (a
 * committed batch is never rolled back; a batch in progress may be).
 * What it checked is remembered as if the handle had written it; the
 * check under the lock goes on from there while the manifest stays the
 * same.  Anything amiss just leaves the whole check to the lock. */
/* Is the shared page trusted, and does it describe the manifest there is
 * (read into *M)?  The handle's message is left as it was. */
static int page_current(kyro_db *db, struct manifest *m,
			struct shared_state *st)
{
	uint64_t change;
	char keep[KMSG_MAX];
	memcpy(keep, db->msg, sizeof keep);
	int ok = !kyro__manifest_read(db->msg, db->dir, m) &&
		 !kyro__shared_read(&db->sh, st, &change) &&
		 st->manifest_gen == m->gen && st->wal_seg == m->wal_last;
	memcpy(db->msg, keep, sizeof keep);
	return ok;
}

/* Remember M's last segment as checked up to END, where LAST_SEQ ends. */
static void checked_to(kyro_db *db, const struct manifest *m, uint64_t end,
		       uint64_t last_seq)
{
	drop_held_manifest(db);
	db->wman = *m;
	db->w.seg = m->wal_last;
	db->w.committed = end;
	db->w.next_seq = last_seq + 1;
}

void kyro__writer_precheck(kyro_db *db)
{
	struct shared_state st;
	struct manifest m;
	uint64_t end = 0, last_seq = 0;
	int shrunk;
	char keep[KMSG_MAX];
	if (!page_current(db, &m, &st))
		return;
	memcpy(keep, db->msg, sizeof keep);
	if (!check_segments(db, &m, m.wal_first, WAL_HDR,
			    m.snap_gen ? m.snap_seq + 1 : 1, st.wal_end, &end,
			    &last_seq, &shrunk) &&
	    !shrunk && last_seq == st.last_seq)
		checked_to(db, &m, end, last_seq);
	memcpy(db->msg, keep, sizeof keep);
}

/* A KYRO_MAINTENANCE handle that has read nothing yet, about to commit an
 * edit (which appends no record): where the shared page says the last
 * segment's committed batches end is as good a place as any for the check
 * under the lock to go on from, provided the page is trusted and
 * describes the manifest there is.  The records below it are not read
 * here: kyro_snapshot() checks each one it folds before anything made of
 * it is committed, and an index build uses none.  A torn tail, or a batch
 * whose writer died before publishing, lies after the page's end, where
 * the check reads as always; a page claiming more than the file holds
 * leaves the check to start over from the first segment. */
static void take_page_tail(kyro_db *db)
{
	struct shared_state st;
	struct manifest m;
	if (!(db->flags & KYRO_MAINTENANCE) || db->w.committed >= WAL_HDR)
		return;
	if (page_current(db, &m, &st) && !st.flags && st.wal_end >= WAL_HDR) {
		checked_to(db, &m, st.wal_end, st.last_seq);
		db->w_unread = 1;
	}
}

/* Read the manifest into *M, leaving its file open in *FD with what
 * fstat said of it in *ID, for writer_unchanged() (*FD is -1 when that
 * could not be had). */
static int writer_manifest(kyro_db *db, struct manifest *m, int *fd,
			   struct fs_id *id)
{
	*fd = -1;
	int rc = kyro__manifest_read_keep(db->msg, db->dir, m, fd);
	if (!rc && kyro__fs_id(NULL, *fd, db->dir, id)) {
		kyro__fs_close(*fd);
		*fd = -1;
	}
	return rc;
}

int kyro__db_writer_prepare(kyro_db *db)
{
	struct shared_state st;
	struct manifest m;
	struct fs_id mid;
	uint64_t change, committed = 0, last_seq = 0;
	int mfd;
	drop_held_manifest(db);
	int rc = writer_manifest(db, &m, &mfd, &mid);
	if (rc)
		return rc;
	int trusted = kyro__shared_read(&db->sh, &st, &change) == 0;
	int cut = trusted && (st.flags & SHARED_VOID_TAIL) &&
		  st.wal_seg == m.wal_last;
	if ((rc = writer_check(db, &m, cut ? st.wal_end : UINT64_MAX,
			       &committed, &last_seq)) != 0) {
		kyro__fs_close(mfd);
		return kyro__needs_repair(db, rc);
	}
	if (trusted && st.wal_seg == m.wal_last && st.wal_end > committed) {
		char path[PATH_MAX];
		kyro__fs_close(mfd);
		kyro__path_gen(path, db->dir, "wal-", m.wal_last, ".log");
		return kyro__needs_repair(
			db,
			kyro__failx(db->msg, KYRO_ECORRUPT,
				    "'%s': offset %llu: committed data is "
				    "missing: the log was committed up to "
				    "offset %llu (sequence number %llu), its "
				    "complete batches end at %llu",
				    path, (unsigned long long)committed,
				    (unsigned long long)st.wal_end,
				    (unsigned long long)st.last_seq,
				    (unsigned long long)committed));
	}
	int same = trusted && !st.flags && st.manifest_gen == m.gen &&
		   st.wal_seg == m.wal_last && st.wal_end == committed &&
		   st.last_seq == last_seq;
	if (db->wopen)
		kyro__wal_writer_close(&db->w);
	db->wopen = 0;
	db->wman = m;
	db->wman_fd = mfd;
	db->wman_id = mid;
	rc = kyro__wal_writer_open(db->msg, &db->w, db->dir, m.wal_last,
				   committed, last_seq + 1,
				   db->sync != KYRO_SYNC_NONE);
	if (rc)
		return rc;
	db->wopen = 1;
	if (!same)
		kyro__db_publish(db);
	return 0;
}

/* A write failed: the batch is gone and so is this handle's right to
 * write.  Rolling the file back is best effort and never turns the
 * failure into a success: when the file cannot be cut, a complete batch
 * (its commit written, its fsync failed) may stay behind the committed
 * end, so the page marks that tail void for the next writer to cut,
 * while this process still holds the lock.  (After a reboot the page is
 * not trusted and such a batch may come back: as after any crash, the
 * outcome of a failed write is then unknown; docs/DECISIONS.md.) */
static int fail_write(kyro_db *db, int rc)
{
	db->failed = 1;
	if (db->wopen && kyro__wal_rollback(NULL, &db->w)) {
		struct shared_state st = {
			.manifest_gen = db->wman.gen,
			.wal_seg = db->w.seg,
			.wal_end = db->w.committed,
			.last_seq = db->w.next_seq - 1,
			.flags = SHARED_VOID_TAIL,
		};
		kyro__shared_publish(&db->sh, &st);
	}
	kyro__shared_unlock(&db->sh);
	db->in_batch = 0;
	return rc;
}

static int writer_upgrade(kyro_db *db);

/* Is the store, under the lock, just as this handle's last commit left
 * it?  Then kyro__db_writer_prepare() would read the same manifest, find
 * nothing after the committed end and reopen the same segment, a dozen
 * system calls a batch; two stat(2)s tell instead.  Every commit
 * publishes, so the page showing this writer's own state means no other
 * process committed since; one that died before publishing left either a
 * new manifest (a new file: the one read is held open, so its inode
 * number cannot be taken by another) or bytes past the committed end.
 * The manifest is never written in place; its ctime would show it. */
static int writer_unchanged(kyro_db *db)
{
	struct shared_state st;
	struct fs_id man, seg;
	char path[PATH_MAX];
	uint64_t change;
	if (!db->wopen || db->wman_fd < 0 || db->w.committed < WAL_HDR ||
	    db->w.seg != db->wman.wal_last ||
	    kyro__shared_read(&db->sh, &st, &change) || st.flags ||
	    st.manifest_gen != db->wman.gen || st.wal_seg != db->w.seg ||
	    st.wal_end != db->w.committed || st.last_seq + 1 != db->w.next_seq)
		return 0;
	if (kyro__path(path, db->dir, KYRO_MANIFEST) ||
	    kyro__fs_id_path(path, &man) || man.dev != db->wman_id.dev ||
	    man.ino != db->wman_id.ino || man.size != db->wman_id.size ||
	    man.ctime_sec != db->wman_id.ctime_sec ||
	    man.ctime_nsec != db->wman_id.ctime_nsec)
		return 0;
	return !kyro__fs_id_path(db->w.path, &seg) && seg.dev == db->w.dev &&
	       seg.ino == db->w.ino && seg.size == db->w.committed;
}

int kyro_batch_begin(kyro_db *db)
{
	if (!(db->flags & KYRO_RDWR))
		return kyro__failx(db->msg, KYRO_ERDONLY,
				   "cannot write '%s': %s", db->dir,
				   kyro_strerror(KYRO_ERDONLY));
	if (db->failed)
		return kyro__failx(db->msg, KYRO_EFAILED,
				   "cannot write '%s': %s", db->dir,
				   kyro_strerror(KYRO_EFAILED));
	if (db->in_batch)
		return kyro__failx(db->msg, KYRO_EBATCH,
				   "a batch is already open");
	int rc = kyro__shared_lock(db->msg, &db->sh);
	if (rc)
		return rc;
	/* Records are about to follow what was only taken on the page's
	 * word: read it all. */
	if (db->w_unread) {
		db->w.committed = 0;
		db->w_unread = 0;
	}
	if ((!writer_unchanged(db) &&
	     (rc = kyro__db_writer_prepare(db)) != 0) ||
	    (rc = writer_upgrade(db)) != 0) {
		kyro__shared_unlock(&db->sh);
		return rc;
	}
	db->in_batch = 1;
	db->batch_vdim = 0;
	return 0;
}

int kyro_batch_begin_at(kyro_db *db, uint64_t first_seq)
{
	int rc = kyro_batch_begin(db);
	if (rc || db->w.next_seq == first_seq)
		return rc;
	uint64_t next = db->w.next_seq;
	kyro_batch_abort(db);
	return kyro__failx(db->msg, KYRO_EBATCH,
			   "cannot begin a batch at sequence number %llu in "
			   "'%s': the store's next one is %llu",
			   (unsigned long long)first_seq, db->dir,
			   (unsigned long long)next);
}

int kyro__db_write_rec(kyro_db *db, int type, uint64_t key, const void *val,
		       size_t len, uint64_t *seq)
{
	int rc, auto_batch = !db->in_batch;
	if (len > KYRO_MAX_VALUE)
		return kyro__failx(
			db->msg, KYRO_ETOOBIG,
			"value of key %llu is %zu bytes; the limit is "
			"16 MiB",
			(unsigned long long)key, len);
	if (auto_batch && (rc = kyro_batch_begin(db)) != 0)
		return rc;
	if (!db->in_batch)
		return kyro__failx(db->msg, KYRO_EBATCH, "no batch is open");
	rc = kyro__wal_append(db->msg, &db->w, type, key, val, len, seq);
	if (!rc && db->sync == KYRO_SYNC_ALWAYS) {
		rc = kyro__wal_sync(db->msg, &db->w);
		if (!rc)
			COUNT(db, wal_fsyncs, 1);
	}
	if (rc)
		return fail_write(db, rc);
	if (auto_batch)
		return kyro_batch_commit(db, NULL);
	return 0;
}

int kyro_put(kyro_db *db, uint64_t key, const void *val, size_t len,
	     uint64_t *seq)
{
	return kyro__db_write_rec(db, WAL_PUT, key, val, len, seq);
}

int kyro_delete(kyro_db *db, uint64_t key, uint64_t *seq)
{
	return kyro__db_write_rec(db, WAL_DEL, key, NULL, 0, seq);
}

int kyro_batch_commit(kyro_db *db, uint64_t *last_seq)
{
	if (!db->in_batch)
		return kyro__failx(db->msg, KYRO_EBATCH, "no batch is open");
	uint64_t n = db->w.batch_count, start = db->w.committed;
	int rc = kyro__wal_commit(db->msg, &db->w);
	if (!rc && n && db->sync != KYRO_SYNC_NONE) {
		rc = kyro__wal_sync(db->msg, &db->w);
		if (!rc)
			COUNT(db, wal_fsyncs, 1);
	}
	if (rc)
		return fail_write(db, rc);
	kyro__wal_mark_committed(&db->w);
	if (n) {
		COUNT(db, wal_bytes, db->w.committed - start);
		kyro__db_publish(db);
		COUNT(db, batches, 1);
		COUNT(db, wal_records, n);
	}
	kyro__shared_unlock(&db->sh);
	db->in_batch = 0;
	if (last_seq)
		*last_seq = db->w.next_seq - 1;
	return 0;
}

int kyro_sync(kyro_db *db)
{
	if (db->failed)
		return kyro__failx(db->msg, KYRO_EFAILED,
				   "cannot sync '%s': %s", db->dir,
				   kyro_strerror(KYRO_EFAILED));
	if (!db->wopen)
		return 0;
	int rc = kyro__fs_fsync(db->msg, db->w.fd, db->w.path);
	if (rc) {
		db->failed = 1;
		return rc;
	}
	COUNT(db, wal_fsyncs, 1);
	return 0;
}

void kyro_batch_abort(kyro_db *db)
{
	if (!db || !db->in_batch)
		return;
	if (kyro__wal_rollback(db->msg, &db->w))
		db->failed = 1;
	kyro__shared_unlock(&db->sh);
	db->in_batch = 0;
}

/* ---- the commit point ---- */

/* The edit moved the last segment on: make the retiring one durable (a
 * writer that syncs on a timer never touches it again once it is
 * retired) and create its successor, to start after the last committed
 * record. */
static int rotate_begin(kyro_db *db, const struct manifest *m)
{
	int rc = kyro__wal_sync(db->msg, &db->w);
	if (!rc)
		rc = kyro__wal_create(db->msg, db->dir, m->wal_last,
				      db->w.next_seq);
	return rc;
}

/* The manifest names the new segment: append there from now on. */
static int rotate_finish(kyro_db *db)
{
	uint64_t next_seq = db->w.next_seq;
	kyro__wal_writer_close(&db->w);
	db->wopen = 0;
	int rc = kyro__wal_writer_open(db->msg, &db->w, db->dir,
				       db->wman.wal_last, WAL_HDR, next_seq, 0);
	if (!rc)
		db->wopen = 1;
	return rc;
}

/* Write the edited manifest M as generation GEN, rotating first when it
 * moves the last segment on; then publish.  Under the writer lock. */
static int commit_locked(kyro_db *db, struct manifest *m, uint64_t gen)
{
	int rc, rotating = m->wal_last != db->wman.wal_last;
	KYRO_VERIFY(!rotating || m->wal_last == db->wman.wal_last + 1);
	if (rotating && (rc = rotate_begin(db, m)) != 0)
		return rc;
	m->gen = gen;
	if ((rc = kyro__manifest_write(db->msg, db->dir, m)) != 0)
		return rc;
	drop_held_manifest(db);
	db->wman = *m;
	if (rotating && (rc = rotate_finish(db)) != 0)
		return rc;
	kyro__db_publish(db);
	return 0;
}

/* A live segment of the previous format version may hold no VECTOR
 * record, and a segment never mixes versions: move to a new segment
 * before the first batch appends to an old one. */
static int writer_upgrade(kyro_db *db)
{
	if (db->w.version >= WAL_VERSION)
		return 0;
	struct manifest m = db->wman;
	m.wal_last++;
	return commit_locked(db, &m, db->wman.gen + 1);
}

int kyro__db_commit(kyro_db *db, const char *what, uint64_t expect_gen,
		    db_edit_fn edit, void *arg)
{
	int rc = kyro__shared_lock(db->msg, &db->sh);
	if (rc)
		return rc;
	take_page_tail(db);
	if ((rc = kyro__db_writer_prepare(db)) != 0)
		goto out;
	if (db->wman.gen != expect_gen) {
		rc = kyro__failx(
			db->msg, KYRO_EBATCH,
			"cannot commit the %s in '%s': another commit came "
			"first (manifest generation %llu, expected %llu)",
			what, db->dir, (unsigned long long)db->wman.gen,
			(unsigned long long)expect_gen);
		goto out;
	}
	struct manifest m = db->wman;
	const struct db_tail tail = {.last_seq = db->w.next_seq - 1,
				     .end = db->w.committed};
	if ((rc = edit(arg, &m, &tail)) != 0 ||
	    !memcmp(&m, &db->wman, sizeof m))
		goto out;
	rc = commit_locked(db, &m, expect_gen + 1);
out:
	kyro__shared_unlock(&db->sh);
	return rc;
}

struct garbage {
	const char *dir;
	const struct manifest *m;
	int repair_tmp; /* saw a repair's copy of a segment (wal-N.log.tmp) */
	int locked;     /* holding the writer lock: remove such copies */
};

/* Segments below wal_first are the retained history, judged apart. */
static int remove_if_dead(void *arg, const char *n)
{
	struct garbage *g = arg;
	const struct manifest *m = g->m;
	unsigned long long gen;
	char tail[16];
	int dead = 0;
	if (sscanf(n, "wal-%16llx.%15s", &gen, tail) == 2 && !strcmp(tail, "log"))
		dead = gen > m->wal_last;
	else if (sscanf(n, "wal-%16llx.%15s", &gen, tail) == 2 &&
		 !strcmp(tail, "log.tmp")) {
		g->repair_tmp = 1;
		dead = g->locked;
	}
	else if (sscanf(n, "snap-%16llx.%15s", &gen, tail) == 2)
		dead = gen != m->snap_gen || strchr(tail, '.') != NULL;
	else if (sscanf(n, "rmi-%16llx.%15s", &gen, tail) == 2)
		dead = gen != m->rmi_gen || m->rmi_snap != m->snap_gen ||
		       strchr(tail, '.') != NULL;
	else if (sscanf(n, "vec-%16llx.%15s", &gen, tail) == 2)
		dead = gen != m->vec_snap || gen != m->snap_gen ||
		       strchr(tail, '.') != NULL;
	else if (sscanf(n, "hnsw-%16llx.%15s", &gen, tail) == 2)
		dead = gen != m->hnsw_gen || m->hnsw_snap != m->snap_gen ||
		       strchr(tail, '.') != NULL;
	if (dead) {
		char path[PATH_MAX];
		if (!kyro__path(path, g->dir, n))
			kyro__fs_unlink(NULL, path);
	}
	return 0;
}

int kyro_set_retain(kyro_db *db, uint64_t bytes, uint64_t seconds)
{
	db->retain_set = 1;
	db->retain_bytes = bytes;
	db->retain_seconds = seconds;
	return 0;
}

/* The folded segments (below wal_first) are the change feed's history:
 * keep the newest ones, an unbroken run down from wal_first - 1, while
 * their total size and the age of each (since its last write) stay
 * within the handle's retention; remove the rest, oldest first, so that
 * what is left is always one run a follower can walk.  Best effort, as
 * for all garbage: an error keeps files, never removes more. */
static void collect_history(kyro_db *db)
{
	uint64_t *ids, bytes = 0, size;
	uint64_t max_bytes = db->retain_set ? db->retain_bytes
					    : KYRO_RETAIN_BYTES_DEFAULT;
	uint64_t max_age = db->retain_set ? db->retain_seconds
					  : KYRO_RETAIN_SECONDS_DEFAULT;
	size_t n, run, keep = 0;
	struct timespec now;
	int64_t mtime;
	char path[PATH_MAX];
	if (kyro__wal_list_below(NULL, db->dir, db->wman.wal_first, &ids, &n))
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	run = kyro__wal_history_len(ids, n, db->wman.wal_first);
	for (; keep < run; keep++) {
		if (kyro__path_gen(path, db->dir, "wal-", ids[keep], ".log") ||
		    kyro__fs_stat(NULL, path, &size, &mtime))
			break;
		uint64_t age = now.tv_sec > mtime
				       ? (uint64_t)(now.tv_sec - mtime) : 0;
		if (size > max_bytes - bytes || age >= max_age)
			break;
		bytes += size;
	}
	/* Oldest first: a crash halfway leaves an unbroken run. */
	for (size_t i = n; i-- > keep;)
		if (!kyro__path_gen(path, db->dir, "wal-", ids[i], ".log"))
			kyro__fs_unlink(NULL, path);
	free(ids);
}

/* A repair that died between its copy of a segment and the rename left
 * wal-N.log.tmp.  A live repair holds the writer lock while it writes
 * one, so such a copy is removed only under that lock, taken only when
 * there is one. */
void kyro__db_collect_garbage(kyro_db *db)
{
	struct garbage g = {.dir = db->dir, .m = &db->wman};
	(void)kyro__fs_list_dir(NULL, db->dir, remove_if_dead, &g);
	if (g.repair_tmp && !kyro__shared_lock(NULL, &db->sh)) {
		g.locked = 1;
		(void)kyro__fs_list_dir(NULL, db->dir, remove_if_dead, &g);
		kyro__shared_unlock(&db->sh);
	}
	collect_history(db);
}

int kyro__db_maintenance_lock(kyro_db *db, const char *what, int *fd)
{
	char path[PATH_MAX];
	int rc = 0;
	*fd = -1;
	if (!(db->flags & KYRO_RDWR))
		rc = KYRO_ERDONLY;
	else if (db->failed)
		rc = KYRO_EFAILED;
	else if (db->in_batch)
		rc = KYRO_EBATCH;
	if (rc)
		return kyro__failx(db->msg, rc, "cannot %s '%s': %s", what,
				   db->dir, kyro_strerror(rc));
	if ((rc = kyro__path(path, db->dir, KYRO_SNAPLOCK)) != 0)
		return kyro__fail(db->msg, rc, "cannot %s '%s'", what, db->dir);
	rc = kyro__fs_open(db->msg, path, O_RDWR | O_CREAT, 0644, fd);
	if (!rc && (rc = kyro__fs_lock(db->msg, *fd, LOCK_EX, path)) != 0) {
		kyro__fs_close(*fd);
		*fd = -1;
	}
	return rc;
}
