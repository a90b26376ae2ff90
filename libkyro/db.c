/*
 * db.c - opening a store, the read view, lookups and write batches.
 *
 * A reader's view is one manifest's snapshot (mapped) plus a delta: a hash
 * map from key to the newest WAL record since the snapshot, whose values
 * stay in the mapped segment (no copies).  Before each lookup the reader
 * loads the shared change counter; only when it moved does it read the
 * committed end another writer published and apply the new records, or,
 * when the manifest changed, reload.  Files a reader needs may vanish
 * under it (a snapshot deletes what the new manifest no longer names);
 * loading then starts over from the new manifest.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "fsio.h"
#include "index.h"

const char *kyro_errmsg(const kyro_db *db)
{
	if (!db)
		return "out of memory";
	return db->msg[0] ? db->msg : "no error";
}

int kyro_set_sync(kyro_db *db, int mode)
{
	if (mode < KYRO_SYNC_ALWAYS || mode > KYRO_SYNC_NONE)
		return kfailx(db->msg, EINVAL, "invalid sync mode %d", mode);
	db->sync = mode;
	return 0;
}

int seg_map_open(char *msg, struct seg_map *s, const char *dir, uint64_t id)
{
	int fd;
	uint64_t size;
	memset(s, 0, sizeof *s);
	s->id = id;
	int rc = kpath_gen(s->path, dir, "wal-", id, ".log");
	if (rc)
		return kfail(msg, rc, "cannot open a WAL segment in '%s'", dir);
	rc = fs_open(msg, s->path, O_RDONLY, 0, &fd);
	if (rc)
		return rc;
	rc = fs_size(msg, fd, s->path, &size);
	if (!rc)
		rc = fs_map(msg, fd, (size_t)size, 0, s->path, (void **)&s->base);
	fs_close(fd);
	if (rc)
		return rc;
	s->maplen = (size_t)size;
	rc = wal_header_check(msg, s->base, size, s->path, id, &s->first_seq);
	if (rc) {
		seg_map_close(s);
		return rc;
	}
	s->applied = WAL_HDR;
	return 0;
}

void seg_map_close(struct seg_map *s)
{
	fs_unmap((void *)s->base, s->maplen);
	s->base = NULL;
	s->maplen = 0;
}

/* Grow the mapping of S to the file's current size. */
static int seg_map_grow(char *msg, struct seg_map *s)
{
	int fd;
	uint64_t size;
	int rc = fs_open(msg, s->path, O_RDONLY, 0, &fd);
	if (rc)
		return rc;
	rc = fs_size(msg, fd, s->path, &size);
	fs_close(fd);
	if (rc || size <= s->maplen)
		return rc;
	void *p;
	rc = fs_remap(msg, (void *)s->base, s->maplen, (size_t)size, s->path,
		      &p);
	if (rc)
		return rc;
	s->base = p;
	s->maplen = (size_t)size;
	return 0;
}

/* Damage a writer or reader stops at: say what clears it. */
static int needs_repair(kyro_db *db, int rc)
{
	size_t n = strlen(db->msg);
	if (rc == KYRO_ECORRUPT && n + 1 < sizeof db->msg)
		snprintf(db->msg + n, sizeof db->msg - n,
			 "; run 'kyro-verify --repair'");
	return rc;
}

static void view_free(kyro_db *db)
{
	struct view *v = &db->v;
	index_unload(db);
	if (v->have_snap)
		snap_close(&v->snap);
	for (size_t i = 0; i < v->nsegs; i++)
		seg_map_close(&v->segs[i]);
	free(v->segs);
	delta_free(&v->delta);
	memset(v, 0, sizeof *v);
}

/* Apply the complete batches of segment slot I up to LIMIT (the
 * published committed end, or UINT64_MAX for "whatever is whole").  A
 * STRICT limit must be reached exactly: it was committed. */
static int view_apply(kyro_db *db, size_t i, uint64_t limit, int strict)
{
	struct view *v = &db->v;
	struct seg_map *s = &v->segs[i];
	struct wal_scan sc;
	int rc;
	/* "To the end" means the end as it is now: a segment that was
	 * rotated away may have grown after we mapped it. */
	if ((limit == UINT64_MAX || limit > s->maplen) &&
	    (rc = seg_map_grow(db->msg, s)) != 0)
		return rc;
	if (limit == UINT64_MAX || limit > s->maplen) {
		if (strict)
			return needs_repair(
				db, kfailx(db->msg, KYRO_ECORRUPT,
					   "'%s': committed data is missing: "
					   "committed end %llu is past the "
					   "end of the file (%zu bytes)",
					   s->path, (unsigned long long)limit,
					   s->maplen));
		limit = s->maplen;
	}
	if (s->applied >= limit)
		return 0;
	if (s->applied == WAL_HDR && s->first_seq != v->last_seq + 1)
		return needs_repair(
			db, kfailx(db->msg, KYRO_ECORRUPT,
				   "'%s': offset 24: first sequence number "
				   "%llu, expected %llu",
				   s->path, (unsigned long long)s->first_seq,
				   (unsigned long long)(v->last_seq + 1)));
	wal_scan(s->base, limit, s->id, s->applied, v->last_seq + 1, &sc);
	if (sc.status == KYRO_ETORN && strict)
		return needs_repair(
			db, kfailx(db->msg, KYRO_ECORRUPT,
				   "'%s': offset %llu: committed data is "
				   "missing: the complete batches end here, "
				   "the committed end is %llu",
				   s->path, (unsigned long long)sc.bad_off,
				   (unsigned long long)limit));
	if (sc.status == KYRO_ECORRUPT)
		return needs_repair(
			db, kfailx(db->msg, KYRO_ECORRUPT,
				   "'%s': offset %llu: %s", s->path,
				   (unsigned long long)sc.bad_off, sc.why));
	for (uint64_t off = s->applied; off < sc.end;) {
		struct wal_rec r;
		uint64_t at = off;
		off = wal_rec_at(s->base, off, &r);
		if (r.type == WAL_COMMIT)
			continue;
		uint64_t ref = DELTA_REF(i, at);
		if (r.type == WAL_DEL)
			ref |= DELTA_TOMB;
		if ((rc = delta_set(&v->delta, r.key, ref)) != 0)
			return kfail(db->msg, rc, "cannot load '%s'", s->path);
	}
	s->applied = sc.end;
	v->last_seq = sc.last_seq;
	return 0;
}

/* Is the directory empty but for files a writer creates first?  MANIFEST
 * counts too: a concurrent writer may have committed it between our
 * finding none and looking here, and then the directory is a store.
 * lost+found (kyro-verify --repair's, or a file system's root) holds no
 * store state and is never touched. */
static int dir_is_fresh(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int fresh = 1;
	if (!d)
		return 0;
	while (fresh && (e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
		    strcmp(e->d_name, KYRO_LOCKFILE) &&
		    strncmp(e->d_name, "wal-", 4) &&
		    strcmp(e->d_name, KYRO_MANIFEST) &&
		    strcmp(e->d_name, WAL_LOSTFOUND) &&
		    strcmp(e->d_name, KYRO_MANIFEST ".tmp"))
			fresh = 0;
	closedir(d);
	return fresh;
}

static int view_try_load(kyro_db *db)
{
	struct view *v = &db->v;
	struct shared_state st;
	uint64_t change;
	int rc;
	v->seen_change = shared_change(&db->sh);
	rc = manifest_read(db->msg, db->dir, &v->man);
	if (rc == ENOENT && dir_is_fresh(db->dir)) {
		v->empty = 1;
		v->loaded = 1;
		return 0;
	}
	if (rc == ENOENT)
		return kfailx(db->msg, KYRO_ENOTDB,
			      "'%s' is not a KyroDB data directory (no "
			      "MANIFEST)",
			      db->dir);
	if (rc)
		return rc;
	int trusted = shared_read(&db->sh, &st, &change) == 0 &&
		      st.manifest_gen == v->man.gen &&
		      st.wal_seg == v->man.wal_last;
	if (v->man.snap_gen) {
		if ((rc = snap_open(db->msg, &v->snap, db->dir, v->man.snap_gen,
				    v->man.snap_keys)) != 0)
			return rc;
		v->have_snap = 1;
		index_load(db);
	}
	v->last_seq = v->man.snap_gen ? v->man.snap_seq : 0;
	size_t n = (size_t)(v->man.wal_last - v->man.wal_first + 1);
	if (!(v->segs = calloc(n, sizeof *v->segs)))
		return kfail(db->msg, ENOMEM, "cannot load '%s'", db->dir);
	for (size_t i = 0; i < n; i++) {
		if ((rc = seg_map_open(db->msg, &v->segs[i], db->dir,
				       v->man.wal_first + i)) != 0)
			return needs_repair(db, rc);
		v->nsegs++;
		int last = i + 1 == n;
		rc = view_apply(db, i, last && trusted ? st.wal_end : UINT64_MAX,
				last && trusted);
		if (rc)
			return rc;
	}
	v->cur = n - 1;
	v->loaded = 1;
	return 0;
}

static int view_load(kyro_db *db)
{
	int rc = 0;
	/* A snapshot may delete the files of the manifest we just read;
	 * starting over from the new manifest always converges. */
	for (int tries = 0; tries < 20; tries++) {
		view_free(db);
		rc = view_try_load(db);
		if (rc != ENOENT)
			break;
		usleep(1000);
	}
	if (rc)
		view_free(db);
	return rc;
}

/* The fast path is the first two lines: one atomic load and a compare. */
int db_view_refresh(kyro_db *db)
{
	struct view *v = &db->v;
	if (!v->loaded)
		return view_load(db);
	if (!db->sh.page && !(db->flags & KYRO_RDWR)) {
		/* Opened before any writer made LOCK: keep looking for it
		 * (a system call per lookup, in this state only). */
		shared_close(&db->sh);
		shared_open(NULL, &db->sh, db->dir, 0);
		if (db->sh.page)
			return view_load(db);
	}
	if (shared_change(&db->sh) == v->seen_change)
		return 0;
	struct shared_state st;
	uint64_t change;
	if (shared_read(&db->sh, &st, &change))
		return 0; /* mid-publish or untrusted: keep the current view */
	if (v->empty || st.manifest_gen != v->man.gen) {
		struct manifest m;
		int rc = manifest_read(db->msg, db->dir, &m);
		if (rc || v->empty || m.snap_gen != v->man.snap_gen ||
		    m.wal_first != v->man.wal_first || m.gen != st.manifest_gen)
			return view_load(db);
		/* Same snapshot, more segments (a rotation): keep the
		 * delta and map the new segments. */
		size_t n = (size_t)(m.wal_last - m.wal_first + 1);
		struct seg_map *segs = realloc(v->segs, n * sizeof *segs);
		if (!segs)
			return kfail(db->msg, ENOMEM, "cannot load '%s'",
				     db->dir);
		v->segs = segs;
		while (v->nsegs < n) {
			rc = seg_map_open(db->msg, &v->segs[v->nsegs], db->dir,
					  m.wal_first + v->nsegs);
			if (rc)
				return rc == ENOENT ? view_load(db) : rc;
			v->nsegs++;
		}
		v->man = m;
	}
	for (size_t i = v->cur; i < v->nsegs; i++) {
		int last = v->segs[i].id == st.wal_seg;
		int rc = view_apply(db, i, last ? st.wal_end : UINT64_MAX, last);
		if (rc)
			return rc;
		if (last) {
			v->cur = i;
			break;
		}
	}
	v->seen_change = change;
	return 0;
}

static int lookup(kyro_db *db, uint64_t key, const void **val, size_t *len)
{
	struct view *v = &db->v;
	uint64_t ref = delta_get(&v->delta, key);
	if (ref) {
		COUNT(db, lookups_delta, 1);
		if (ref & DELTA_TOMB)
			return KYRO_ENOTFOUND;
		struct wal_rec r;
		wal_rec_at(v->segs[DELTA_SLOT(ref)].base, DELTA_OFF(ref), &r);
		*val = r.val;
		*len = r.len;
		return 0;
	}
	if (!v->have_snap)
		return KYRO_ENOTFOUND;
	const struct snap *s = &v->snap;
	uint64_t i;
	if (v->rmi) {
		COUNT(db, lookups_rmi, 1);
		i = kyro_rmi_lower_bound(v->rmi, key, &db->rmi_ctr);
	} else {
		COUNT(db, lookups_binary, 1);
		i = kyro_lower_bound_binary(s->keys, s->n, key);
	}
	/* The search read keys no one verified: check its answer on
	 * verified bytes before trusting it. */
	int rc = snap_locate(db->msg, s, key, &i);
	if (rc)
		return rc;
	if (i == s->n || s->keys[i] != key)
		return KYRO_ENOTFOUND;
	return snap_get(db->msg, s, i, key, val, len);
}

int kyro_get(kyro_db *db, uint64_t key, const void **val, size_t *len)
{
	int rc = db_view_refresh(db);
	if (rc)
		return rc;
	return lookup(db, key, val, len);
}

static int finish_group(kyro_db *db, struct kyro_item *it, const size_t *pend,
			uint64_t *idx, size_t m);

/* Interleaved binary search: every probe of a level is prefetched before
 * any is compared, so one group costs about one memory latency per level
 * instead of one per level per key. */
#define GROUP 32

static int lookup_group(kyro_db *db, struct kyro_item *it, size_t n)
{
	const struct view *v = &db->v;
	const struct snap *s = &v->snap;
	const uint64_t *base[GROUP];
	size_t pend[GROUP], m = 0;
	for (size_t g = 0; g < n; g++) {
		uint64_t ref = delta_get(&v->delta, it[g].key);
		if (ref) {
			it[g].rc = lookup(db, it[g].key, &it[g].val, &it[g].len);
			continue;
		}
		if (!v->have_snap || s->n == 0) {
			it[g].rc = KYRO_ENOTFOUND;
			continue;
		}
		pend[m] = g;
		base[m++] = s->keys;
	}
	if (m == 0)
		return 0;
	uint64_t idx[GROUP];
	if (v->rmi) {
		/* The index predicts every window of the group and
		 * prefetches it before probing any: the misses overlap. */
		uint64_t q[GROUP];
		for (size_t k = 0; k < m; k++)
			q[k] = it[pend[k]].key;
		COUNT(db, lookups_rmi, m);
		kyro_rmi_lower_bound_batch(v->rmi, q, idx, m, &db->rmi_ctr);
		return finish_group(db, it, pend, idx, m);
	}
	COUNT(db, lookups_binary, m);
	uint64_t len = s->n;
	while (len > 1) {
		uint64_t half = len / 2;
		for (size_t k = 0; k < m; k++)
			__builtin_prefetch(base[k] + half);
		for (size_t k = 0; k < m; k++)
			base[k] = base[k][half] < it[pend[k]].key ? base[k] + half
								  : base[k];
		len -= half;
	}
	for (size_t k = 0; k < m; k++)
		idx[k] = (uint64_t)(base[k] - s->keys) +
			 (*base[k] < it[pend[k]].key);
	return finish_group(db, it, pend, idx, m);
}

/* Positions found: check them, fetch offsets, then payloads, then answer. */
static int finish_group(kyro_db *db, struct kyro_item *it, const size_t *pend,
			uint64_t *idx, size_t m)
{
	const struct snap *s = &db->v.snap;
	for (size_t k = 0; k < m; k++) {
		uint64_t key = it[pend[k]].key;
		int rc = snap_locate(db->msg, s, key, &idx[k]);
		if (rc)
			return rc;
		if (idx[k] < s->n && s->keys[idx[k]] == key)
			__builtin_prefetch(s->offs + idx[k]);
		else
			idx[k] = UINT64_MAX;
	}
	/* Even a prefetch must not form a pointer from an offset that
	 * snap_value() has not checked yet. */
	for (size_t k = 0; k < m; k++)
		if (idx[k] != UINT64_MAX && s->offs[idx[k]] < s->data_size)
			__builtin_prefetch(s->data + s->offs[idx[k]]);
	for (size_t k = 0; k < m; k++) {
		struct kyro_item *x = &it[pend[k]];
		if (idx[k] == UINT64_MAX) {
			x->rc = KYRO_ENOTFOUND;
			continue;
		}
		int rc = snap_get(db->msg, s, idx[k], x->key, &x->val, &x->len);
		if (rc)
			return rc;
		x->rc = 0;
	}
	return 0;
}

int kyro_get_batch(kyro_db *db, struct kyro_item *items, size_t n)
{
	int rc = db_view_refresh(db);
	for (size_t i = 0; !rc && i < n; i += GROUP)
		rc = lookup_group(db, items + i, n - i < GROUP ? n - i : GROUP);
	return rc;
}

int kyro_get_seq(kyro_db *db, uint64_t key, uint64_t *seq)
{
	const void *val;
	size_t len;
	int rc = kyro_get(db, key, &val, &len);
	if (rc)
		return rc;
	uint64_t ref = delta_get(&db->v.delta, key);
	if (ref) {
		struct wal_rec r;
		wal_rec_at(db->v.segs[DELTA_SLOT(ref)].base, DELTA_OFF(ref), &r);
		*seq = r.seq;
	} else {
		*seq = db->v.snap.last_seq;
	}
	return 0;
}

int kyro_last_seq(kyro_db *db, uint64_t *seq)
{
	int rc = db_view_refresh(db);
	if (!rc)
		*seq = db->v.last_seq;
	return rc;
}

struct scan_src {
	const struct snap *s;
	uint64_t i, end;
	struct delta_ent *d;
	size_t j, m;
};

int kyro_scan(kyro_db *db, uint64_t lo, uint64_t hi, kyro_scan_fn fn,
	      void *arg)
{
	struct view *v = &db->v;
	struct delta_ent *d = NULL;
	size_t m = 0, j = 0;
	uint64_t i = 0, end = 0;
	int rc = db_view_refresh(db);
	if (rc || lo > hi)
		return rc;
	if ((rc = delta_sorted(&v->delta, lo, hi, &d, &m)) != 0)
		return kfail(db->msg, rc, "cannot scan '%s'", db->dir);
	const struct snap *s = &v->snap;
	if (v->have_snap) {
		/* Both bounds are checked on verified keys (snap_locate);
		 * every key between them is verified as the walk reaches it. */
		i = kyro_lower_bound_binary(s->keys, s->n, lo);
		rc = snap_locate(db->msg, s, lo, &i);
		end = s->n;
		if (!rc && hi != UINT64_MAX) {
			end = kyro_lower_bound_binary(s->keys, s->n, hi + 1);
			rc = snap_locate(db->msg, s, hi + 1, &end);
		}
	}
	while (!rc && (i < end || j < m)) {
		uint64_t key;
		const void *val;
		size_t len;
		if (i < end && (rc = snap_check_key(db->msg, s, i)) != 0)
			break;
		if (j == m || (i < end && s->keys[i] < d[j].key)) {
			key = s->keys[i];
			if ((rc = snap_get(db->msg, s, i++, key, &val, &len)) != 0)
				break;
		} else {
			if (i < end && s->keys[i] == d[j].key)
				i++;
			uint64_t ref = d[j++].ref;
			if (ref & DELTA_TOMB)
				continue;
			struct wal_rec r;
			wal_rec_at(v->segs[DELTA_SLOT(ref)].base, DELTA_OFF(ref),
				   &r);
			key = r.key;
			val = r.val;
			len = r.len;
		}
		rc = fn(arg, key, val, len);
	}
	free(d);
	return rc;
}

/* ---- writing ---- */

void db_publish(kyro_db *db)
{
	struct shared_state st = {
		.manifest_gen = db->wman.gen,
		.wal_seg = db->w.seg,
		.wal_end = db->w.committed,
		.last_seq = db->w.next_seq - 1,
	};
	shared_publish(&db->sh, &st);
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
		struct seg_map s;
		struct wal_scan sc;
		uint64_t at = id == from ? start : WAL_HDR;
		int rc = seg_map_open(db->msg, &s, db->dir, id);
		if (rc)
			return rc;
		if (at > s.maplen) {
			seg_map_close(&s);
			*shrunk = 1;
			return 0;
		}
		if (at == WAL_HDR && s.first_seq != next_seq) {
			rc = kfailx(db->msg, KYRO_ECORRUPT,
				    "'%s': offset 24: first sequence number "
				    "%llu, expected %llu",
				    s.path, (unsigned long long)s.first_seq,
				    (unsigned long long)next_seq);
			seg_map_close(&s);
			return rc;
		}
		uint64_t len = s.maplen;
		if (id == m->wal_last && limit < len)
			len = limit;
		if (at == WAL_HDR)
			fs_populate(s.base, s.maplen);
		wal_scan(s.base, len, id, at, next_seq, &sc);
		seg_map_close(&s);
		if (id == m->wal_last && limit != UINT64_MAX &&
		    (sc.status || sc.end != limit))
			return kfailx(db->msg, KYRO_ECORRUPT,
				      "'%s': offset %llu: not a committed end",
				      s.path, (unsigned long long)limit);
		if (sc.status == KYRO_ECORRUPT)
			return kfailx(db->msg, KYRO_ECORRUPT,
				      "'%s': offset %llu: %s", s.path,
				      (unsigned long long)sc.bad_off, sc.why);
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
 * writer_precheck()); later only what other processes added after its
 * own committed end (while the manifest is the one it last saw; any other
 * commit, a repair's included, means a full check).  The shared
 * page is then held against what the files show: if it claims more
 * committed data than they hold, an acknowledged batch is missing and
 * only a repair may decide what to do; any other disagreement (damage, a
 * writer that died between its fsync and its publish) is settled by
 * publishing the files' state. */
static int writer_check(kyro_db *db, const struct manifest *m, uint64_t *end,
			uint64_t *last_seq)
{
	int shrunk = 1, rc = 0;
	if (db->w.committed >= WAL_HDR && db->wman.gen == m->gen &&
	    db->w.seg >= m->wal_first && db->w.seg <= m->wal_last)
		rc = check_segments(db, m, db->w.seg, db->w.committed,
				    db->w.next_seq, UINT64_MAX, end, last_seq,
				    &shrunk);
	if (!rc && shrunk)
		rc = check_segments(db, m, m->wal_first, WAL_HDR,
				    m->snap_gen ? m->snap_seq + 1 : 1,
				    UINT64_MAX, end, last_seq, &shrunk);
	if (!rc && shrunk)
		rc = kfailx(db->msg, KYRO_ECORRUPT,
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
static void writer_precheck(kyro_db *db)
{
	struct shared_state st;
	struct manifest m;
	uint64_t change, end = 0, last_seq = 0;
	int shrunk;
	char keep[KMSG_MAX];
	memcpy(keep, db->msg, sizeof keep);
	if (!manifest_read(db->msg, db->dir, &m) &&
	    !shared_read(&db->sh, &st, &change) && st.manifest_gen == m.gen &&
	    st.wal_seg == m.wal_last &&
	    !check_segments(db, &m, m.wal_first, WAL_HDR,
			    m.snap_gen ? m.snap_seq + 1 : 1, st.wal_end, &end,
			    &last_seq, &shrunk) &&
	    !shrunk && last_seq == st.last_seq) {
		db->wman = m;
		db->w.seg = m.wal_last;
		db->w.committed = end;
		db->w.next_seq = last_seq + 1;
	}
	memcpy(db->msg, keep, sizeof keep);
}

int db_writer_prepare(kyro_db *db)
{
	struct shared_state st;
	struct manifest m;
	uint64_t change, committed = 0, last_seq = 0;
	int rc = manifest_read(db->msg, db->dir, &m);
	if (rc)
		return rc;
	if ((rc = writer_check(db, &m, &committed, &last_seq)) != 0)
		return needs_repair(db, rc);
	int trusted = shared_read(&db->sh, &st, &change) == 0;
	if (trusted && st.wal_seg == m.wal_last && st.wal_end > committed) {
		char path[PATH_MAX];
		kpath_gen(path, db->dir, "wal-", m.wal_last, ".log");
		return needs_repair(
			db, kfailx(db->msg, KYRO_ECORRUPT,
				   "'%s': offset %llu: committed data is "
				   "missing: the log was committed up to "
				   "offset %llu (sequence number %llu), its "
				   "complete batches end at %llu",
				   path, (unsigned long long)committed,
				   (unsigned long long)st.wal_end,
				   (unsigned long long)st.last_seq,
				   (unsigned long long)committed));
	}
	int same = trusted && st.manifest_gen == m.gen &&
		   st.wal_seg == m.wal_last && st.wal_end == committed &&
		   st.last_seq == last_seq;
	if (db->wopen)
		wal_writer_close(&db->w);
	db->wopen = 0;
	db->wman = m;
	rc = wal_writer_open(db->msg, &db->w, db->dir, m.wal_last, committed,
			     last_seq + 1, db->sync != KYRO_SYNC_NONE);
	if (rc)
		return rc;
	db->wopen = 1;
	if (!same)
		db_publish(db);
	return 0;
}

/* A write failed: the batch is gone and so is this handle's right to
 * write.  Rolling the file back is best effort and never turns the
 * failure into a success. */
static int fail_write(kyro_db *db, int rc)
{
	db->failed = 1;
	if (db->wopen)
		wal_rollback(NULL, &db->w);
	shared_unlock(&db->sh);
	db->in_batch = 0;
	return rc;
}

int kyro_batch_begin(kyro_db *db)
{
	if (!(db->flags & KYRO_RDWR))
		return kfailx(db->msg, KYRO_ERDONLY, "cannot write '%s': %s",
			      db->dir, kyro_strerror(KYRO_ERDONLY));
	if (db->failed)
		return kfailx(db->msg, KYRO_EFAILED, "cannot write '%s': %s",
			      db->dir, kyro_strerror(KYRO_EFAILED));
	if (db->in_batch)
		return kfailx(db->msg, KYRO_EBATCH, "a batch is already open");
	int rc = shared_lock(db->msg, &db->sh);
	if (rc)
		return rc;
	if ((rc = db_writer_prepare(db)) != 0) {
		shared_unlock(&db->sh);
		return rc;
	}
	db->in_batch = 1;
	return 0;
}

static int write_rec(kyro_db *db, int type, uint64_t key, const void *val,
		     size_t len, uint64_t *seq)
{
	int rc, auto_batch = !db->in_batch;
	if (len > KYRO_MAX_VALUE)
		return kfailx(db->msg, KYRO_ETOOBIG,
			      "value of key %llu is %zu bytes; the limit is "
			      "16 MiB",
			      (unsigned long long)key, len);
	if (auto_batch && (rc = kyro_batch_begin(db)) != 0)
		return rc;
	if (!db->in_batch)
		return kfailx(db->msg, KYRO_EBATCH, "no batch is open");
	rc = wal_append(db->msg, &db->w, type, key, val, len, seq);
	if (!rc && db->sync == KYRO_SYNC_ALWAYS) {
		rc = wal_sync(db->msg, &db->w);
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
	return write_rec(db, WAL_PUT, key, val, len, seq);
}

int kyro_delete(kyro_db *db, uint64_t key, uint64_t *seq)
{
	return write_rec(db, WAL_DEL, key, NULL, 0, seq);
}

int kyro_batch_commit(kyro_db *db, uint64_t *last_seq)
{
	if (!db->in_batch)
		return kfailx(db->msg, KYRO_EBATCH, "no batch is open");
	uint64_t n = db->w.batch_count, start = db->w.committed;
	int rc = wal_commit(db->msg, &db->w);
	if (!rc && n && db->sync != KYRO_SYNC_NONE) {
		rc = wal_sync(db->msg, &db->w);
		if (!rc)
			COUNT(db, wal_fsyncs, 1);
	}
	if (rc)
		return fail_write(db, rc);
	wal_mark_committed(&db->w);
	if (n) {
		COUNT(db, wal_bytes, db->w.committed - start);
		db_publish(db);
		COUNT(db, batches, 1);
		COUNT(db, wal_records, n);
	}
	shared_unlock(&db->sh);
	db->in_batch = 0;
	if (last_seq)
		*last_seq = db->w.next_seq - 1;
	return 0;
}

int kyro_sync(kyro_db *db)
{
	if (db->failed)
		return kfailx(db->msg, KYRO_EFAILED, "cannot sync '%s': %s",
			      db->dir, kyro_strerror(KYRO_EFAILED));
	if (!db->wopen)
		return 0;
	int rc = fs_fsync(db->msg, db->w.fd, db->w.path);
	if (rc) {
		db->failed = 1;
		return rc;
	}
	COUNT(db, wal_fsyncs, 1);
	return 0;
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
	const struct kyro_rmi_counters *c = &db->rmi_ctr;
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

void kyro_batch_abort(kyro_db *db)
{
	if (!db || !db->in_batch)
		return;
	if (wal_rollback(db->msg, &db->w))
		db->failed = 1;
	shared_unlock(&db->sh);
	db->in_batch = 0;
}

/* ---- opening ---- */

static int create_store(kyro_db *db)
{
	struct manifest m = {.gen = 1, .wal_first = 1, .wal_last = 1};
	int rc = shared_lock(db->msg, &db->sh);
	if (rc)
		return rc;
	rc = manifest_read(db->msg, db->dir, &db->wman);
	if (rc == ENOENT) {
		if (!dir_is_fresh(db->dir))
			rc = kfailx(db->msg, KYRO_ENOTDB,
				    "'%s' is not a KyroDB data directory (no "
				    "MANIFEST, and not empty)",
				    db->dir);
		else if (!(rc = wal_create(db->msg, db->dir, 1, 1)))
			rc = manifest_write(db->msg, db->dir, &m);
	}
	shared_unlock(&db->sh);
	return rc;
}

int kyro_open(kyro_db **dbp, const char *dir, unsigned flags)
{
	struct stat st;
	struct manifest m;
	kyro_db *db = calloc(1, sizeof *db);
	int rc, create = (flags & KYRO_RDWR) && !(flags & KYRO_EXISTING);
	*dbp = db;
	if (!db)
		return ENOMEM;
	db->flags = flags;
	db->sync = KYRO_SYNC_BATCH;
	db->sh.fd = -1;
	db->w.fd = -1;
	if (snprintf(db->dir, sizeof db->dir, "%s", dir) >= (int)sizeof db->dir)
		return kfail(db->msg, ENAMETOOLONG, "cannot open '%s'", dir);
	if (stat(dir, &st) < 0) {
		if (errno != ENOENT || !create)
			return kfail(db->msg, errno, "cannot open '%s'", dir);
		/* Another writer may create it first: then use theirs. */
		rc = fs_mkdir_durable(db->msg, dir);
		if (rc == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
			rc = 0;
		if (rc)
			return rc;
	} else if (!S_ISDIR(st.st_mode)) {
		return kfail(db->msg, ENOTDIR, "cannot open '%s'", dir);
	}
	/* Judge the directory before creating anything in it: a refused
	 * directory is left exactly as it was. */
	rc = manifest_read(db->msg, dir, &m);
	if (rc == ENOENT && !dir_is_fresh(dir))
		return kfailx(db->msg, KYRO_ENOTDB,
			      "'%s' is not a KyroDB data directory (no "
			      "MANIFEST, and not empty)",
			      dir);
	if (rc == ENOENT && (flags & KYRO_EXISTING))
		return kfailx(db->msg, ENOENT,
			      "'%s' holds no KyroDB store yet", dir);
	if (rc && rc != ENOENT)
		return rc;
	rc = shared_open(db->msg, &db->sh, dir, flags & KYRO_RDWR);
	if (rc)
		return rc;
	if (flags & KYRO_RDWR) {
		rc = manifest_read(db->msg, dir, &m);
		if (!rc)
			writer_precheck(db);
		return rc == ENOENT ? create_store(db) : rc;
	}
	return view_load(db);
}

void kyro_close(kyro_db *db)
{
	if (!db)
		return;
	kyro_batch_abort(db);
	if (db->wopen)
		wal_writer_close(&db->w);
	view_free(db);
	shared_close(&db->sh);
	free(db);
}
