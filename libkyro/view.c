/*
 * view.c - the read side of a handle: the view of one manifest, lookups,
 * batch lookups and scans.
 *
 * A reader's view is one manifest's snapshot (mapped) plus a delta: a hash
 * map from key to the newest WAL record since the snapshot, whose values
 * stay in the mapped segment (no copies).  Before each lookup the reader
 * loads the shared change counter; only when it moved does it read the
 * committed end another writer published and apply the new records, or,
 * when the manifest changed, reload.  Files a reader needs may vanish
 * under it (a snapshot deletes what the new manifest no longer names);
 * loading then starts over from the new manifest.  The learned index that
 * serves the snapshot is loaded and dropped with it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "db.h"
#include "fsio.h"

int kyro__seg_map_open(char *msg, struct seg_map *s, const char *dir,
		       uint64_t id)
{
	struct fs_id fid = {0};
	int fd;
	uint64_t size;
	memset(s, 0, sizeof *s);
	s->id = id;
	int rc = kyro__path_gen(s->path, dir, "wal-", id, ".log");
	if (rc)
		return kyro__fail(msg, rc, "cannot open a WAL segment in '%s'",
				  dir);
	rc = kyro__fs_open(msg, s->path, O_RDONLY, 0, &fd);
	if (rc)
		return rc;
	rc = kyro__fs_id(msg, fd, s->path, &fid);
	size = fid.size;
	s->dev = fid.dev;
	s->ino = fid.ino;
	if (!rc)
		rc = kyro__fs_map(msg, fd, (size_t)size, 0, s->path,
				  (void **)&s->base);
	kyro__fs_close(fd);
	if (rc)
		return rc;
	s->maplen = (size_t)size;
	rc = kyro__wal_header_check(msg, s->base, size, s->path, id,
				    &s->first_seq);
	if (rc) {
		kyro__seg_map_close(s);
		return rc;
	}
	s->applied = WAL_HDR;
	return 0;
}

void kyro__seg_map_close(struct seg_map *s)
{
	kyro__fs_unmap((void *)s->base, s->maplen);
	s->base = NULL;
	s->maplen = 0;
}

/* Is the file at S's path still the one S maps?  Repair puts a new file
 * in a segment's place when it cuts committed data (verify.c). */
static int seg_map_same(const struct seg_map *s, int fd)
{
	struct fs_id id;
	return !kyro__fs_id(NULL, fd, s->path, &id) && id.dev == s->dev &&
	       id.ino == s->ino;
}

static int seg_map_still(const struct seg_map *s)
{
	char err[KMSG_MAX];
	int fd;
	if (kyro__fs_open(err, s->path, O_RDONLY, 0, &fd))
		return 0;
	int same = seg_map_same(s, fd);
	kyro__fs_close(fd);
	return same;
}

/* Grow the mapping of S to the file's current size.  ESTALE: another
 * file is in its place now, which the caller must load afresh (growing
 * the old mapping would map past the old file's end). */
static int seg_map_grow(char *msg, struct seg_map *s)
{
	int fd;
	uint64_t size;
	int rc = kyro__fs_open(msg, s->path, O_RDONLY, 0, &fd);
	if (rc)
		return rc;
	rc = kyro__fs_size(msg, fd, s->path, &size);
	if (!rc && !seg_map_same(s, fd))
		rc = ESTALE;
	kyro__fs_close(fd);
	if (rc || size <= s->maplen)
		return rc;
	void *p;
	rc = kyro__fs_remap(msg, (void *)s->base, s->maplen, (size_t)size,
			    s->path, &p);
	if (rc)
		return rc;
	s->base = p;
	s->maplen = (size_t)size;
	return 0;
}

/* An index image this large is copied onto huge pages, rounded up to
 * whole ones; a smaller one is mapped. */
#define INDEX_COPY_MIN ((size_t)256 << 10)
#define HUGE_PAGE ((size_t)2 << 20)

/* The index file's bytes, open as FD: read onto huge pages when large,
 * so that the load's checksum reads a copy (on a virtual machine the
 * first touch of each mapped page may trap to the host, which costs
 * several times the copy) and lookups walk the router and the leaves
 * with few TLB misses; else mapped. */
static int index_read(struct view *v, int fd, const char *path, uint64_t size,
		      char *err)
{
	size_t got, cap = ((size_t)size + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
	unsigned char *p = NULL;
	if (size >= INDEX_COPY_MIN && (p = kyro__fs_alloc_huge(cap)) != NULL) {
		int rc = kyro__fs_pread_all(err, fd, p, (size_t)size, 0, path,
					    &got);
		if (!rc && got != size)
			rc = kyro__failx(err, KYRO_ECORRUPT,
					 "'%s' shrank while it was read", path);
		if (rc) {
			kyro__fs_free_huge(p, cap);
			return rc;
		}
		v->rmi_copy = cap;
	} else {
		int rc = kyro__fs_map(err, fd, (size_t)size, 0, path,
				      (void **)&p);
		if (rc)
			return rc;
		v->rmi_copy = 0;
	}
	v->rmi_img = p;
	v->rmi_len = (size_t)size;
	return 0;
}

static void index_drop(struct view *v)
{
	if (v->rmi_copy)
		kyro__fs_free_huge((void *)v->rmi_img, v->rmi_copy);
	else
		kyro__fs_unmap((void *)v->rmi_img, v->rmi_len);
	v->rmi_img = NULL;
	v->rmi_len = 0;
	v->rmi_copy = 0;
}

/* Whether the manifest gives the view's snapshot an index to use; when
 * not, why not, in v->rmi_why. */
static int index_named(kyro_db *db)
{
	struct view *v = &db->v;
	if (!v->have_snap)
		return 0;
	if (db->flags & KYRO_BINARY_SEARCH) {
		snprintf(v->rmi_why, sizeof v->rmi_why,
			 "binary search was asked for when the store was opened");
		return 0;
	}
	if (!v->man.rmi_gen || v->man.rmi_snap != v->man.snap_gen) {
		snprintf(v->rmi_why, sizeof v->rmi_why,
			 "the snapshot has no learned index (run kyro-rmi-build)");
		return 0;
	}
	return 1;
}

/* Open the index file the manifest names: *FD, *SIZE and its path. */
static int index_open(kyro_db *db, char *path, int *fd, uint64_t *size,
		      char *err)
{
	*fd = -1;
	if (kyro__path_gen(path, db->dir, "rmi-", db->v.man.rmi_gen, ".idx"))
		return kyro__failx(err, ENAMETOOLONG, "path too long");
	int rc = kyro__fs_open(err, path, O_RDONLY, 0, fd);
	if (!rc)
		rc = kyro__fs_size(err, *fd, path, size);
	return rc;
}

/*
 * At the view's load, only the index file's header is read and checked
 * (is it an index, of a format this build reads, built for this
 * snapshot): loading the whole file reads and checksums every byte, a
 * cost that grows with the store, and a process that looks up a handful
 * of keys does better without.  So the index is loaded (and fully
 * checked) when the handle's lookups, single or batched, reach
 * INDEX_LAZY keys, by a warm-up, or at once when the handle counts probe
 * windows.  Until then the file stays open and each single lookup reads
 * the few bytes of it that route its key (hinted_search()): a binary
 * search over the whole key array touches a page per level down to its
 * last 512 keys (about 18 pages at 100M keys, 9 at 200k), and on a
 * virtual machine each first touch traps to the host.  (Batches before
 * the load keep their interleaved binary search.)  Either way every
 * answer is the same.
 */
#define INDEX_LAZY 64

/* The index is no longer pending: close the file its hints read. */
static void index_settle(struct view *v)
{
	if (v->rmi_pending)
		kyro__fs_close(v->rmi_fd);
	v->rmi_pending = 0;
	v->rmi_fd = -1;
}

static void index_refuse(struct view *v, const char *path, const char *err)
{
	v->rmi_refused = 1;
	index_settle(v);
	if (path)
		snprintf(v->rmi_why, sizeof v->rmi_why,
			 "learned index '%.200s' refused: %.800s", path, err);
	else
		snprintf(v->rmi_why, sizeof v->rmi_why,
			 "learned index refused: %.1000s", err);
}

static void index_probe(kyro_db *db)
{
	struct view *v = &db->v;
	char path[PATH_MAX], err[KMSG_MAX];
	unsigned char head[RMI_HEAD_SIZE];
	uint64_t size, first, last;
	size_t got = 0;
	int fd;
	index_settle(v);
	v->rmi_refused = 0;
	v->rmi_why[0] = 0;
	if (!index_named(db))
		return;
	memset(head, 0, sizeof head);
	int rc = index_open(db, path, &fd, &size, err);
	if (!rc)
		rc = kyro__fs_pread_all(err, fd, head, sizeof head, 0, path,
					&got);
	if (!rc)
		rc = kyro__snap_end_keys(err, &v->snap, &first, &last);
	if (rc) {
		kyro__fs_close(fd);
		index_refuse(v, NULL, err);
		return;
	}
	if (kyro__rmi_probe(head, (size_t)size, first, last, v->snap.n,
			    v->snap.gen, v->snap.hdr_sum, &v->rmi_head, err,
			    sizeof err)) {
		kyro__fs_close(fd);
		index_refuse(v, path, err);
		return;
	}
	/* The view owns FD from here until the index settles. */
	memcpy(v->rmi_hdr, head, sizeof head);
	v->rmi_fd = fd;
	v->rmi_pending = 1;
	v->rmi_lazy = INDEX_LAZY;
}

/* Load the index the probe accepted.  Never fails the view: an index
 * that cannot be used is refused with its reason recorded, and lookups
 * binary-search. */
static void index_load(kyro_db *db)
{
	struct view *v = &db->v;
	char path[PATH_MAX], err[KMSG_MAX];
	int fd;
	uint64_t size;
	index_settle(v);
	if (index_open(db, path, &fd, &size, err) ||
	    index_read(v, fd, path, size, err)) {
		kyro__fs_close(fd);
		index_refuse(v, NULL, err);
		return;
	}
	kyro__fs_close(fd);
	struct kyro__rmi *rmi = NULL;
	if (kyro__rmi_load(&rmi, v->rmi_img, v->rmi_len, v->snap.keys,
			   v->snap.n, v->snap.gen, v->snap.hdr_sum, err,
			   sizeof err)) {
		index_refuse(v, path, err);
		index_drop(v);
		return;
	}
	kyro__rmi_count_windows(rmi, (db->flags & KYRO_COUNT_WINDOWS) != 0);
	if (db->simd >= 0)
		(void)kyro__rmi_set_simd(rmi, db->simd); /* checked when set */
	v->rmi = rmi;
}

/* Drop the view's index.  Its lookups counted into the handle's
 * rmi_ctr, which outlives it: nothing to keep. */
static void index_unload(kyro_db *db)
{
	struct view *v = &db->v;
	kyro__rmi_free(v->rmi);
	v->rmi = NULL;
	index_settle(v);
	index_drop(v);
}

void kyro__view_free(kyro_db *db)
{
	struct view *v = &db->v;
	index_unload(db);
	if (v->have_snap)
		kyro__snap_close(&v->snap);
	for (size_t i = 0; i < v->nsegs; i++)
		kyro__seg_map_close(&v->segs[i]);
	free(v->segs);
	kyro__delta_free(&v->delta);
	kyro__delta_free(&v->vdelta);
	kyro__vstore_free(&v->vs);
	memset(v, 0, sizeof *v);
	db->vepoch++; /* what was cached of this view is stale */
}

/* One record into the delta: a value, a vector, or a delete of both. */
static int apply_rec(struct view *v, uint64_t ref, const struct wal_rec *r)
{
	int rc = 0;
	if (r->type == WAL_VEC) {
		if (!v->vdim)
			v->vdim = r->len / 4;
		v->vec_ops++;
		return kyro__delta_set(&v->vdelta, r->key, ref);
	}
	if (r->type == WAL_DEL) {
		ref |= DELTA_TOMB;
		/* A delete of a key that never had a vector costs the
		 * vector map nothing unless vectors exist. */
		if (v->vdim) {
			v->vec_ops++;
			rc = kyro__delta_set(&v->vdelta, r->key, ref);
		}
	}
	return rc ? rc : kyro__delta_set(&v->delta, r->key, ref);
}

/* How far view_apply() may read a segment. */
enum {
	TO_COMMITTED,  /* to LIMIT, the committed end a writer published */
	TO_SEALED_END, /* to the end: a rotated segment, never cut again */
	TO_WHOLE,      /* to the end of the complete batches, unpublished */
};

/* Apply the complete batches of segment slot I, as far as HOW says.  The
 * committed end must be reached exactly: it was committed.  What lies
 * past it in the last segment is read with pread, not through the
 * mapping: its torn tail is the next writer's to cut at any moment. */
static int view_apply(kyro_db *db, size_t i, uint64_t limit, int how)
{
	struct view *v = &db->v;
	struct seg_map *s = &v->segs[i];
	struct wal_scan sc;
	int rc, strict = how == TO_COMMITTED;
	if (how == TO_WHOLE) {
		uint64_t size;
		rc = kyro__wal_scan_unlocked(db->msg, s->path, s->id,
					     s->applied, v->last_seq + 1, &sc,
					     &size);
		if (rc)
			return rc;
		limit = sc.end;
		if (sc.status == KYRO_ECORRUPT)
			limit = size;
	} else if (how == TO_SEALED_END) {
		limit = UINT64_MAX;
	}
	/* "To the end" means the end as it is now: a segment that was
	 * rotated away may have grown after we mapped it. */
	if ((limit == UINT64_MAX || limit > s->maplen) &&
	    (rc = seg_map_grow(db->msg, s)) != 0)
		return rc;
	if (limit == UINT64_MAX || limit > s->maplen) {
		if (strict)
			return kyro__needs_repair(
				db,
				kyro__failx(db->msg, KYRO_ECORRUPT,
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
		return kyro__needs_repair(
			db,
			kyro__failx(db->msg, KYRO_ECORRUPT,
				    "'%s': offset 24: first sequence number "
				    "%llu, expected %llu",
				    s->path, (unsigned long long)s->first_seq,
				    (unsigned long long)(v->last_seq + 1)));
	if (how != TO_WHOLE)
		kyro__wal_scan(s->base, limit, s->id, s->applied,
			       v->last_seq + 1, &sc);
	if (sc.status == KYRO_ETORN && strict)
		return kyro__needs_repair(
			db,
			kyro__failx(db->msg, KYRO_ECORRUPT,
				    "'%s': offset %llu: committed data is "
				    "missing: the complete batches end here, "
				    "the committed end is %llu",
				    s->path, (unsigned long long)sc.bad_off,
				    (unsigned long long)limit));
	if (sc.status == KYRO_ECORRUPT)
		return kyro__needs_repair(
			db,
			kyro__failx(db->msg, KYRO_ECORRUPT,
				    "'%s': offset %llu: %s", s->path,
				    (unsigned long long)sc.bad_off, sc.why));
	for (uint64_t off = s->applied; off < sc.end;) {
		struct wal_rec r;
		uint64_t at = off;
		off = wal_rec_at(s->base, off, &r);
		if (r.type == WAL_COMMIT)
			continue;
		if ((rc = apply_rec(v, DELTA_REF(i, at), &r)) != 0)
			return kyro__fail(db->msg, rc, "cannot load '%s'",
					  s->path);
	}
	s->applied = sc.end;
	v->last_seq = sc.last_seq;
	return 0;
}

static int view_try_load(kyro_db *db)
{
	struct view *v = &db->v;
	struct shared_state st;
	uint64_t change;
	int rc;
	v->seen_change = shared_change(&db->sh);
	rc = kyro__manifest_read(db->msg, db->dir, &v->man);
	if (rc == ENOENT && kyro__dir_is_fresh(db->dir)) {
		v->empty = 1;
		v->loaded = 1;
		return 0;
	}
	if (rc == ENOENT)
		return kyro__failx(db->msg, KYRO_ENOTDB,
				   "'%s' is not a KyroDB data directory (no "
				   "MANIFEST)",
				   db->dir);
	if (rc)
		return rc;
	int trusted = kyro__shared_read(&db->sh, &st, &change) == 0 &&
		      st.manifest_gen == v->man.gen &&
		      st.wal_seg == v->man.wal_last;
	if (v->man.snap_gen) {
		if ((rc = kyro__snap_open(db->msg, &v->snap, db->dir,
					  v->man.snap_gen, v->man.snap_keys)) !=
		    0)
			return rc;
		v->have_snap = 1;
		index_probe(db);
		if (v->rmi_pending && (db->flags & KYRO_COUNT_WINDOWS))
			index_load(db);
		if ((rc = kyro__vstore_load(db->msg, &v->vs, db->dir, &v->man,
					    v->snap.hdr_sum, 0)) != 0)
			return rc;
		v->vdim = kyro__vstore_dim(&v->vs);
	}
	v->last_seq = v->man.snap_gen ? v->man.snap_seq : 0;
	size_t n = (size_t)(v->man.wal_last - v->man.wal_first + 1);
	if (!(v->segs = calloc(n, sizeof *v->segs)))
		return kyro__fail(db->msg, ENOMEM, "cannot load '%s'", db->dir);
	for (size_t i = 0; i < n; i++) {
		if ((rc = kyro__seg_map_open(db->msg, &v->segs[i], db->dir,
					     v->man.wal_first + i)) != 0)
			return kyro__needs_repair(db, rc);
		v->nsegs++;
		int last = i + 1 == n;
		rc = view_apply(db, i, st.wal_end,
				!last     ? TO_SEALED_END
				: trusted ? TO_COMMITTED
					  : TO_WHOLE);
		if (rc)
			return rc;
	}
	v->cur = n - 1;
	v->loaded = 1;
	return 0;
}

int kyro__view_load(kyro_db *db)
{
	int rc = 0;
	/* A snapshot may delete the files of the manifest we just read,
	 * and a repair replace one; starting over from the new manifest
	 * always converges. */
	for (int tries = 0; tries < 20; tries++) {
		kyro__view_free(db);
		rc = view_try_load(db);
		if (rc != ENOENT && rc != ESTALE)
			break;
		usleep(1000);
	}
	if (rc)
		kyro__view_free(db);
	return rc;
}

/* A new manifest over the same snapshot keeps the delta only when the
 * log only grew: every segment mapped is still the file in its place.
 * Repair, cutting committed data it found lost, puts a new file there
 * (and a new manifest generation); the delta then holds records the
 * store no longer has, and is rebuilt. */
static int segs_still(const struct view *v)
{
	for (size_t i = 0; i < v->nsegs; i++)
		if (!seg_map_still(&v->segs[i]))
			return 0;
	return 1;
}

/* The fast path is the first two lines: one atomic load and a compare. */
int kyro__db_view_refresh(kyro_db *db)
{
	struct view *v = &db->v;
	if (!v->loaded)
		return kyro__view_load(db);
	if (!db->sh.page && !(db->flags & KYRO_RDWR)) {
		/* Opened before any writer made LOCK: keep looking for it
		 * (a system call per lookup, in this state only). */
		kyro__shared_close(&db->sh);
		kyro__shared_open(NULL, &db->sh, db->dir, 0);
		if (db->sh.page)
			return kyro__view_load(db);
	}
	if (shared_change(&db->sh) == v->seen_change)
		return 0;
	struct shared_state st;
	uint64_t change;
	if (kyro__shared_read(&db->sh, &st, &change))
		return 0; /* mid-publish or untrusted: keep the current view */
	if (v->empty || st.manifest_gen != v->man.gen) {
		struct manifest m;
		int rc = kyro__manifest_read(db->msg, db->dir, &m);
		if (rc || v->empty || m.snap_gen != v->man.snap_gen ||
		    m.wal_first != v->man.wal_first ||
		    m.gen != st.manifest_gen || m.hnsw_gen != v->man.hnsw_gen ||
		    m.wal_last < v->man.wal_last || !segs_still(v))
			return kyro__view_load(db);
		/* Same snapshot, more segments (a rotation): keep the
		 * delta and map the new segments. */
		size_t n = (size_t)(m.wal_last - m.wal_first + 1);
		struct seg_map *segs = realloc(v->segs, n * sizeof *segs);
		if (!segs)
			return kyro__fail(db->msg, ENOMEM, "cannot load '%s'",
					  db->dir);
		v->segs = segs;
		while (v->nsegs < n) {
			rc = kyro__seg_map_open(db->msg, &v->segs[v->nsegs],
						db->dir,
						m.wal_first + v->nsegs);
			if (rc)
				return rc == ENOENT ? kyro__view_load(db) : rc;
			v->nsegs++;
		}
		v->man = m;
	}
	for (size_t i = v->cur; i < v->nsegs; i++) {
		int last = v->segs[i].id == st.wal_seg;
		int rc = view_apply(db, i, st.wal_end,
				    last ? TO_COMMITTED : TO_SEALED_END);
		if (rc == ESTALE)
			return kyro__view_load(db);
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

/* The hint's reader: LEN bytes at OFF of the pending index's file. */
static int hint_read(void *arg, void *buf, size_t len, uint64_t off)
{
	const struct view *v = arg;
	char err[KMSG_MAX];
	size_t got = 0;
	return kyro__fs_pread_all(err, v->rmi_fd, buf, len, off, "index",
				  &got) != 0 ||
	       got != len;
}

/*
 * KEY's lower bound in the snapshot's keys, for a lookup without a
 * loaded index: a binary search inside the window the pending index
 * hints at, when the keys at the window's edges bracket KEY (then the
 * lower bound is inside it, whatever the file held), else over all keys.
 * The hint's few preads spare the pages a search over the whole array
 * would first touch.  The keys read here are not verified yet: lookup()
 * checks the answer on verified ones.
 */
static uint64_t hinted_search(const struct view *v, uint64_t key)
{
	const struct snap *s = &v->snap;
	uint64_t lo, hi;
	if (v->rmi_pending &&
	    kyro__rmi_hint(v->rmi_hdr, (size_t)v->rmi_head.bytes, s->n, key,
			   hint_read, (void *)v, &lo, &hi) == 0 &&
	    (lo == 0 || s->keys[lo - 1] < key) &&
	    (hi == s->n || key <= s->keys[hi]))
		return lo + kyro__lower_bound_binary(s->keys + lo, hi - lo, key);
	return kyro__lower_bound_binary(s->keys, s->n, key);
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
	if (v->rmi_pending && --v->rmi_lazy == 0)
		index_load(db);
	if (v->rmi) {
		COUNT(db, lookups_rmi, 1);
		i = kyro__rmi_lower_bound(v->rmi, key, &db->rmi_ctr);
	} else {
		COUNT(db, lookups_binary, 1);
		i = hinted_search(v, key);
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
	int rc = kyro__db_view_refresh(db);
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
		kyro__rmi_lower_bound_batch(v->rmi, q, idx, m, &db->rmi_ctr);
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
	int rc = kyro__db_view_refresh(db);
	struct view *v = &db->v;
	if (!rc && v->rmi_pending) {
		if (n >= v->rmi_lazy)
			index_load(db);
		else
			v->rmi_lazy -= (uint32_t)n;
	}
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
	int rc = kyro__db_view_refresh(db);
	if (!rc)
		*seq = db->v.last_seq;
	return rc;
}

int kyro_committed_seq(kyro_db *db, uint64_t *seq)
{
	struct shared_state st;
	uint64_t change;
	/* A trusted page holds the published end, which only grows: no
	 * need to replay what other processes wrote into this view. */
	if (db->v.loaded && db->sh.page &&
	    kyro__shared_read(&db->sh, &st, &change) == 0 &&
	    st.last_seq >= db->v.last_seq) {
		*seq = st.last_seq;
		return 0;
	}
	return kyro_last_seq(db, seq);
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
	int rc = kyro__db_view_refresh(db);
	if (rc || lo > hi)
		return rc;
	if ((rc = kyro__delta_sorted(&v->delta, lo, hi, &d, &m)) != 0)
		return kyro__fail(db->msg, rc, "cannot scan '%s'", db->dir);
	const struct snap *s = &v->snap;
	if (v->have_snap) {
		/* Both bounds are checked on verified keys (snap_locate);
		 * every key between them is verified as the walk reaches it. */
		i = kyro__lower_bound_binary(s->keys, s->n, lo);
		rc = snap_locate(db->msg, s, lo, &i);
		end = s->n;
		if (!rc && hi != UINT64_MAX) {
			end = kyro__lower_bound_binary(s->keys, s->n, hi + 1);
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

int kyro__db_view_served(kyro_db *db, int load, struct db_served *out)
{
	int rc = kyro__db_view_refresh(db);
	struct view *v = &db->v;
	memset(out, 0, sizeof *out);
	out->simd = db->simd;
	if (rc)
		return rc;
	if (load && v->rmi_pending)
		index_load(db);
	out->snap = v->have_snap ? &v->snap : NULL;
	out->rmi = v->rmi;
	out->rmi_head = v->rmi_pending ? &v->rmi_head : NULL;
	out->rmi_img = v->rmi_img;
	out->rmi_len = v->rmi_len;
	out->rmi_refused = v->rmi_refused;
	out->rmi_why = v->rmi_why;
	out->rmi_gen = v->man.rmi_gen;
	out->vs = &v->vs;
	return 0;
}

int kyro__db_view_empty(const kyro_db *db)
{
	return db->v.empty;
}
