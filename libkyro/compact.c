/*
 * compact.c - kyro_snapshot(): fold the last snapshot and the WAL into a
 * new snapshot.
 *
 * Writers are held off twice, briefly: (1) to rotate the WAL, so that the
 * records to fold are exactly those in the segments before a new, empty
 * one; (2) to commit the manifest that names the new snapshot and drops
 * those segments.  The merge itself runs with no writer lock: writers
 * append to the new segment meanwhile.  SNAPSHOT.lock keeps a second
 * snapshot (and index builds) out for the whole run.
 *
 * Crash at any point: before (1) nothing changed; between (1) and (2) the
 * store is the old snapshot plus all segments, and the *.tmp or unnamed
 * snapshot files are garbage; after (2) the old files are garbage.  The
 * next snapshot removes garbage: files the manifest does not name.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <time.h>

#include "db.h"
#include "fsio.h"
#include "index.h"
#include "sort.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int db_maintenance_lock(kyro_db *db, const char *what, int *fd)
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
		return kfailx(db->msg, rc, "cannot %s '%s': %s", what, db->dir,
			      kyro_strerror(rc));
	if ((rc = kpath(path, db->dir, KYRO_SNAPLOCK)) != 0)
		return kfail(db->msg, rc, "cannot %s '%s'", what, db->dir);
	rc = fs_open(db->msg, path, O_RDWR | O_CREAT, 0644, fd);
	if (!rc && (rc = fs_lock(db->msg, *fd, LOCK_EX, path)) != 0) {
		fs_close(*fd);
		*fd = -1;
	}
	return rc;
}

/* MANIFEST.tmp is left alone: it is the writer lock's, which the caller
 * does not hold. */
void db_collect_garbage(const char *dir, const struct manifest *m)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		const char *n = e->d_name;
		unsigned long long g;
		char tail[16];
		int dead = 0;
		if (sscanf(n, "wal-%16llx.%15s", &g, tail) == 2 &&
		    !strcmp(tail, "log"))
			dead = g < m->wal_first || g > m->wal_last;
		else if (sscanf(n, "snap-%16llx.%15s", &g, tail) == 2)
			dead = g != m->snap_gen || strchr(tail, '.') != NULL;
		else if (sscanf(n, "rmi-%16llx.%15s", &g, tail) == 2)
			dead = g != m->rmi_gen || m->rmi_snap != m->snap_gen ||
			       strchr(tail, '.') != NULL;
		if (dead) {
			char path[PATH_MAX];
			if (!kpath(path, dir, n))
				fs_unlink(NULL, path);
		}
	}
	closedir(d);
}

/* Values are gathered in key order, which is random order in the WAL.
 * Through a file mapping of 4 KiB pages every read is a TLB walk; so
 * when the WAL fits ARENA_MAX, the sequential scan copies each value into
 * an anonymous arena on huge pages, and the gather reads from there.
 * An arena entry is a u32 length and the value; a ref is its offset. */
#define ARENA_MAX ((uint64_t)4 << 30)

struct fold {
	kyro_db *db;
	struct seg_map *segs;
	size_t nsegs;
	struct delta_ent *ents;
	size_t nents, cap;
	unsigned char *arena; /* NULL: refs point into the WAL */
	uint64_t arena_len, arena_cap;
};

static int fold_collect(struct fold *f, size_t slot, uint64_t limit,
			uint64_t *next_seq)
{
	struct seg_map *s = &f->segs[slot];
	struct wal_scan sc;
	char *msg = f->db->msg;
	if (limit > s->maplen)
		return kfailx(msg, KYRO_ECORRUPT,
			      "'%s': committed end %llu is past the end of the "
			      "file",
			      s->path, (unsigned long long)limit);
	if (s->first_seq != *next_seq)
		return kfailx(msg, KYRO_ECORRUPT,
			      "'%s': offset 24: first sequence number %llu, "
			      "expected %llu",
			      s->path, (unsigned long long)s->first_seq,
			      (unsigned long long)*next_seq);
	wal_scan(s->base, limit, s->id, WAL_HDR, s->first_seq, &sc);
	if (sc.status == KYRO_ECORRUPT)
		return kfailx(msg, KYRO_ECORRUPT, "'%s': offset %llu: %s",
			      s->path, (unsigned long long)sc.bad_off, sc.why);
	for (uint64_t off = WAL_HDR; off < sc.end;) {
		struct wal_rec r;
		uint64_t at = off;
		off = wal_rec_at(s->base, off, &r);
		if (r.type == WAL_COMMIT)
			continue;
		if (f->nents == f->cap) {
			size_t cap = f->cap ? f->cap * 2 : 4096;
			struct delta_ent *v = realloc(f->ents, cap * sizeof *v);
			if (!v)
				return kfail(msg, ENOMEM, "cannot snapshot");
			f->ents = v;
			f->cap = cap;
		}
		uint64_t ref = DELTA_REF(slot, at);
		if (f->arena && r.type == WAL_PUT) {
			KYRO_VERIFY(f->arena_len + 4 + r.len <= f->arena_cap);
			ref = f->arena_len;
			memcpy(f->arena + ref, &r.len, 4);
			memcpy(f->arena + ref + 4, r.val, r.len);
			f->arena_len += 4 + r.len;
		}
		f->ents[f->nents].key = r.key;
		f->ents[f->nents++].ref =
			r.type == WAL_DEL ? ref | DELTA_TOMB : ref;
	}
	*next_seq = sc.last_seq + 1;
	return 0;
}

/* Merge the old snapshot with the sorted WAL records; the newest record
 * of a key wins, and a tombstone drops it. */
static int fold_merge(struct fold *f, const struct snap *old,
		      struct snap_writer *w, kyro_progress_fn progress,
		      void *arg)
{
	uint64_t n = old ? old->n : 0, i = 0, total = n + f->nents, tick = 0;
	size_t j = 0, m = f->nents;
	char *msg = f->db->msg;
	int rc = 0;
	while (!rc && (i < n || j < m)) {
		/* The records are scattered over the WAL in key order: fetch
		 * a few ahead so their misses overlap. */
		if (j + 16 < m && !(f->ents[j + 16].ref & DELTA_TOMB)) {
			uint64_t ahead = f->ents[j + 16].ref;
			__builtin_prefetch(
				f->arena ? f->arena + ahead
					 : f->segs[DELTA_SLOT(ahead)].base +
						   DELTA_OFF(ahead));
		}
		/* Every byte carried over is verified first: a damaged one
		 * would otherwise be rewritten under fresh checksums. */
		if (i < n && (rc = snap_check_key(msg, old, i)) != 0)
			return rc;
		if (j == m || (i < n && old->keys[i] < f->ents[j].key)) {
			const void *val = NULL;
			size_t len = 0;
			rc = snap_get(msg, old, i, old->keys[i], &val, &len);
			if (!rc)
				rc = snap_writer_add(msg, w, old->keys[i++], val,
						     len);
		} else {
			uint64_t key = f->ents[j].key;
			while (j + 1 < m && f->ents[j + 1].key == key)
				j++;
			if (i < n && old->keys[i] == key)
				i++;
			uint64_t ref = f->ents[j++].ref;
			if (ref & DELTA_TOMB) {
				/* deleted: nothing to write */
			} else if (f->arena) {
				uint32_t len;
				memcpy(&len, f->arena + ref, 4);
				rc = snap_writer_add(msg, w, key, f->arena + ref + 4,
						     len);
			} else {
				struct wal_rec r;
				wal_rec_at(f->segs[DELTA_SLOT(ref)].base,
					   DELTA_OFF(ref), &r);
				rc = snap_writer_add(msg, w, key, r.val, r.len);
			}
		}
		if (progress && i + j >= tick) {
			progress(arg, i + j, total);
			tick = i + j + 65536;
		}
	}
	/* What the walk did not read (the header's block, padding) is
	 * checked too: a snapshot is only folded whole and sound. */
	if (!rc && old)
		rc = snap_check_all(msg, old);
	if (!rc && progress)
		progress(arg, total, total);
	return rc;
}

/* Step (1): under the writer lock, put a new empty segment after the
 * records to fold.  *CUT gets the last sequence number folded. */
static int rotate(kyro_db *db, struct manifest *before, uint64_t *cut,
		  uint64_t *cut_end)
{
	int rc = shared_lock(db->msg, &db->sh);
	if (rc)
		return rc;
	rc = db_writer_prepare(db);
	if (rc)
		goto out;
	*before = db->wman;
	*cut = db->w.next_seq - 1;
	*cut_end = db->w.committed;
	if (*cut == (db->wman.snap_gen ? db->wman.snap_seq : 0))
		goto out; /* nothing new since the last snapshot */
	/* A writer that syncs on a timer (kyro-serve --sync=batch) may
	 * not have synced this segment yet, and will never touch it again
	 * once it is retired: make it durable now. */
	rc = wal_sync(db->msg, &db->w);
	if (rc)
		goto out;
	uint64_t seg = db->wman.wal_last + 1;
	rc = wal_create(db->msg, db->dir, seg, *cut + 1);
	if (rc)
		goto out;
	db->wman.gen++;
	db->wman.wal_last = seg;
	rc = manifest_write(db->msg, db->dir, &db->wman);
	if (rc)
		goto out;
	wal_writer_close(&db->w);
	db->wopen = 0;
	rc = wal_writer_open(db->msg, &db->w, db->dir, seg, WAL_HDR, *cut + 1,
			     0);
	if (!rc) {
		db->wopen = 1;
		db_publish(db);
	}
out:
	shared_unlock(&db->sh);
	return rc;
}

/* Step (2): name the new snapshot; the folded segments leave the list. */
static int commit(kyro_db *db, const struct manifest *before,
		  struct snap_writer *w, uint64_t cut, uint64_t rmi_id)
{
	int rc = shared_lock(db->msg, &db->sh);
	if (rc)
		return rc;
	rc = db_writer_prepare(db);
	if (!rc && (db->wman.snap_gen != before->snap_gen ||
		    db->wman.wal_first != before->wal_first))
		rc = kfailx(db->msg, KYRO_EBATCH,
			    "the store changed under the snapshot (was "
			    "SNAPSHOT.lock removed?)");
	if (!rc) {
		db->wman.gen++;
		db->wman.snap_gen = w->gen;
		db->wman.snap_seq = cut;
		db->wman.snap_keys = w->n;
		db->wman.wal_first = before->wal_last + 1;
		/* The old index served the old keys; a new one may come in
		 * the same commit. */
		db->wman.rmi_snap = rmi_id ? w->gen : 0;
		if (rmi_id)
			db->wman.rmi_gen = rmi_id;
		rc = manifest_write(db->msg, db->dir, &db->wman);
	}
	if (!rc)
		db_publish(db);
	shared_unlock(&db->sh);
	return rc;
}

int kyro_snapshot(kyro_db *db, struct kyro_snapshot_stats *st,
		  kyro_progress_fn progress, void *arg)
{
	return kyro_snapshot_rmi(db, NULL, st, NULL, progress, arg);
}

/* Build the new snapshot's index before the commit (P non-NULL). */
static int index_new(kyro_db *db, const struct snap_writer *w,
		     uint64_t id, const struct kyro_rmi_params *p,
		     struct kyro_rmi_stats *rst)
{
	struct snap s;
	int rc = snap_open(db->msg, &s, db->dir, w->gen, w->n);
	if (rc)
		return rc;
	rc = index_write(db->msg, db->dir, &s, id, p, rst);
	snap_close(&s);
	return rc;
}

int kyro_snapshot_rmi(kyro_db *db, const struct kyro_rmi_params *p,
		      struct kyro_snapshot_stats *st,
		      struct kyro_rmi_stats *rst, kyro_progress_fn progress,
		      void *arg)
{
	static const struct kyro_rmi_params defaults;
	struct kyro_snapshot_stats local;
	uint64_t rmi_id = 0;
	struct fold f = {.db = db};
	struct manifest before;
	struct snap old;
	struct snap_writer w;
	int lockfd = -1, have_old = 0, have_w = 0, rc;
	uint64_t cut = 0, cut_end = 0, bytes = 0;
	double t0 = now();
	if (!st)
		st = &local;
	memset(st, 0, sizeof *st);
	memset(&w, 0, sizeof w);
	w.fd_data = -1;
	if ((rc = db_maintenance_lock(db, "snapshot", &lockfd)) != 0)
		return rc;
	if ((rc = rotate(db, &before, &cut, &cut_end)) != 0)
		goto out;
	if (before.wal_last == db->wman.wal_last) {
		/* Nothing to fold; but an index asked for and missing is
		 * still built for the snapshot there is. */
		st->keys = before.snap_keys;
		st->generation = before.snap_gen;
		if (before.snap_gen && !snap_open(NULL, &old, db->dir,
						  before.snap_gen,
						  before.snap_keys)) {
			st->bytes = old.bin_len + old.data_len;
			have_old = 1;
		}
		if ((p || rst) && before.snap_gen &&
		    before.rmi_snap != before.snap_gen) {
			if (!have_old) {
				rc = snap_open(db->msg, &old, db->dir,
					       before.snap_gen, before.snap_keys);
				if (rc)
					goto out;
				have_old = 1;
			}
			rmi_id = before.rmi_gen + 1;
			rc = index_write(db->msg, db->dir, &old, rmi_id,
					 p ? p : &defaults, rst);
			if (!rc)
				rc = index_commit(db, before.snap_gen, rmi_id);
			if (rc)
				goto out;
		}
		db_collect_garbage(db->dir, &db->wman);
		goto out;
	}
	if (before.snap_gen) {
		rc = snap_open(db->msg, &old, db->dir, before.snap_gen,
			       before.snap_keys);
		if (rc)
			goto out;
		have_old = 1;
	}
	f.nsegs = (size_t)(before.wal_last - before.wal_first + 1);
	if (!(f.segs = calloc(f.nsegs, sizeof *f.segs))) {
		rc = kfail(db->msg, ENOMEM, "cannot snapshot");
		goto out;
	}
	uint64_t next_seq = before.snap_gen ? before.snap_seq + 1 : 1;
	/* Sequence numbers count records exactly: size the array once
	 * rather than doubling a multi-gigabyte buffer. */
	f.cap = (size_t)(cut + 1 - next_seq);
	if (f.cap && !(f.ents = malloc(f.cap * sizeof *f.ents))) {
		rc = kfail(db->msg, ENOMEM, "cannot snapshot");
		goto out;
	}
	for (size_t i = 0; i < f.nsegs; i++) {
		rc = seg_map_open(db->msg, &f.segs[i], db->dir,
				  before.wal_first + i);
		if (rc)
			goto out;
		f.arena_cap += f.segs[i].maplen;
	}
	/* Values plus their 4-byte lengths never exceed the WAL's bytes.
	 * Without memory for an arena the gather reads the WAL itself. */
	if (f.arena_cap <= ARENA_MAX)
		f.arena = fs_alloc_huge(f.arena_cap);
	for (size_t i = 0; i < f.nsegs; i++) {
		fs_populate(f.segs[i].base, f.segs[i].maplen);
		int last = i + 1 == f.nsegs;
		rc = fold_collect(&f, i, last ? cut_end : f.segs[i].maplen,
				  &next_seq);
		if (rc)
			goto out;
	}
	if (next_seq != cut + 1) {
		rc = kfailx(db->msg, KYRO_ECORRUPT,
			    "WAL of '%s' ends at sequence %llu, expected %llu",
			    db->dir, (unsigned long long)(next_seq - 1),
			    (unsigned long long)cut);
		goto out;
	}
	if ((rc = sort_ents(f.ents, f.nents)) != 0) {
		rc = kfail(db->msg, rc, "cannot snapshot");
		goto out;
	}
	rc = snap_writer_open(db->msg, &w, db->dir, before.snap_gen + 1,
			      (have_old ? old.n : 0) + f.nents);
	if (rc)
		goto out;
	have_w = 1;
	rc = fold_merge(&f, have_old ? &old : NULL, &w, progress, arg);
	if (!rc)
		rc = snap_writer_finish(db->msg, &w, cut, &bytes);
	if (!rc && (p || rst)) {
		rmi_id = before.rmi_gen + 1;
		rc = index_new(db, &w, rmi_id, p ? p : &defaults, rst);
	}
	if (!rc)
		rc = commit(db, &before, &w, cut, rmi_id);
	if (rc)
		goto out;
	st->keys = w.n;
	st->bytes = bytes;
	st->generation = w.gen;
	db_collect_garbage(db->dir, &db->wman);
out:
	if (have_w)
		snap_writer_abort(&w);
	if (have_old)
		snap_close(&old);
	for (size_t i = 0; f.segs && i < f.nsegs; i++)
		seg_map_close(&f.segs[i]);
	free(f.segs);
	free(f.ents);
	fs_free_huge(f.arena, f.arena_cap);
	fs_close(lockfd);
	st->seconds = now() - t0;
	return rc;
}
