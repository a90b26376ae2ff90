/*
 * compact.c - kyro_snapshot(): fold the last snapshot and the WAL into a
 * new snapshot, and with KYRO_SNAPSHOT_INDEX build its learned index.
 *
 * Writers are held off twice, briefly: (1) to rotate the WAL, so that the
 * records to fold are exactly those in the segments before a new, empty
 * one; (2) to commit the manifest that names the new snapshot and drops
 * those segments.  The merge itself runs with no writer lock: writers
 * append to the new segment meanwhile.  SNAPSHOT.lock keeps a second
 * snapshot (and index builds) out for the whole run.
 *
 * Both steps are edits committed through kyro__db_commit() (handle.h): the
 * rotation moves wal_last on, the commit names the snapshot (and its
 * index) and drops the folded segments.  One path for every call: fold
 * (when anything was written since the last snapshot), then build the
 * index (when asked for and the snapshot to serve has none), then commit.
 *
 * Crash at any point: before (1) nothing changed; between (1) and (2) the
 * store is the old snapshot plus all segments, and the *.tmp or unnamed
 * snapshot files are garbage; after (2) the old files are garbage.  The
 * next snapshot removes garbage: files the manifest does not name.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "delta.h"
#include "fsio.h"
#include "index.h"
#include "sort.h"
#include "handle.h"
#include "vec_build.h"
#include "vec_store.h"
#include "wal.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Values are gathered in key order, which is random order in the WAL.
 * Through a file mapping of 4 KiB pages every read is a TLB walk, and on
 * a virtual machine the first touch of each mapped page may trap to the
 * host, which costs several times reading the page.  So when the WAL
 * fits in half the machine's memory, the segments are read (pread,
 * through a small buffer) and each value copied into an anonymous arena
 * on huge pages, from which the gather reads.  An arena entry is a u32
 * length and the value; a ref is its offset.  Else refs point into the
 * mapped segments.  (A fixed bound of 4 GiB sent a 100M-key WAL of 4.8 GB
 * through the mapping: on a 2-vCPU virtual machine with 24 GiB its merge
 * took 197 s of a 259 s snapshot, against 32 s from the arena.)
 *
 * The merge reads the values in key order, and a gigabyte read at random
 * misses the TLB and the caches on every value.  So the arena is kept in
 * chunks, one open chunk per range of keys (their top ARENA_BITS bits):
 * the merge, walking the keys in order, reads one range's chunks at a
 * time, a few hundred KB where it was the whole arena.  Keys that share
 * their top bits (small integers) fall in one range, as before; they tend
 * to be written in order anyway. */
#define ARENA_BITS 11
#define ARENA_RANGES ((size_t)1 << ARENA_BITS)
#define CHUNK ((uint64_t)64 << 10)

static uint64_t arena_max(void)
{
	return kyro__fs_mem_total() / 2;
}

struct fold {
	char *msg;
	struct seg_map *segs;
	size_t nsegs;
	struct delta_ent *ents; /* on huge pages, room for cap */
	size_t nents, cap;
	unsigned char *arena; /* NULL: refs point into the WAL */
	uint64_t arena_len, arena_cap; /* chunks handed out, room */
	uint64_t *chunk; /* per range of keys: its open chunk's next byte */
	uint64_t *chunk_end; /* ... and end */
	uint64_t arena_need; /* about what the values will take of it */
};

/* A folded VECTOR record's ref (its value a vector, not the key's
 * value); a DELETE is a tombstone for both. */
#define FOLD_VEC ((uint64_t)1 << 62)

/* The bytes of the folded record REF (without FOLD_VEC or DELTA_TOMB). */
static const unsigned char *fold_val(const struct fold *f, uint64_t ref,
				     uint32_t *len)
{
	ref &= ~(FOLD_VEC | DELTA_TOMB);
	if (f->arena) {
		memcpy(len, f->arena + ref, 4);
		return f->arena + ref + 4;
	}
	struct wal_rec r;
	wal_rec_at(f->segs[DELTA_SLOT(ref)].base, DELTA_OFF(ref), &r);
	*len = r.len;
	return r.val;
}

/* Room in the arena for R's value, in the chunk of its range of keys;
 * a value of more than half a chunk gets room of its own.  Every chunk
 * left behind is at least half full, so the chunks never need more than
 * twice the WAL's bytes plus one chunk per range (the arena's room). */
static uint64_t arena_put(struct fold *f, const struct wal_rec *r)
{
	uint64_t need = 4 + (uint64_t)r->len, ref;
	size_t k = (size_t)(r->key >> (64 - ARENA_BITS));
	if (need > CHUNK / 2) {
		ref = f->arena_len;
		f->arena_len += need;
	} else {
		if (f->chunk[k] + need > f->chunk_end[k]) {
			f->chunk[k] = f->arena_len;
			f->chunk_end[k] = f->arena_len += CHUNK;
		}
		ref = f->chunk[k];
		f->chunk[k] += need;
	}
	KYRO_VERIFY(f->arena_len <= f->arena_cap);
	memcpy(f->arena + ref, &r->len, 4);
	memcpy(f->arena + ref + 4, r->val, r->len);
	return ref;
}

/* One record of segment SLOT at offset AT. */
static int fold_add(struct fold *f, size_t slot, uint64_t at,
		    const struct wal_rec *r)
{
	/* Sequence numbers count the records: more than cap is a WAL
	 * whose records overlap the sequence numbers checked. */
	if (f->nents == f->cap)
		return kyro__failx(f->msg, KYRO_ECORRUPT,
				   "'%s': offset %llu: more records than "
				   "sequence numbers",
				   f->segs[slot].path, (unsigned long long)at);
	uint64_t ref = DELTA_REF(slot, at);
	if (f->arena && (r->type == WAL_PUT || r->type == WAL_VEC))
		ref = arena_put(f, r);
	if (r->type == WAL_DEL)
		ref |= DELTA_TOMB;
	else if (r->type == WAL_VEC)
		ref |= FOLD_VEC;
	f->ents[f->nents].key = r->key;
	f->ents[f->nents++].ref = ref;
	return 0;
}

/* The records of the batch in progress are taken as they pass and
 * dropped again when the segment ends before its COMMIT. */
struct gather {
	struct fold *f;
	size_t slot;
	size_t nents; /* entries of complete batches (the values of a batch
		       * cut short stay in the arena, unused) */
};

static int gather_rec(void *arg, uint64_t off, const struct wal_rec *r)
{
	struct gather *g = arg;
	if (r->type != WAL_COMMIT)
		return fold_add(g->f, g->slot, off, r);
	g->nents = g->f->nents;
	return 0;
}

/* Scan segment SLOT up to LIMIT and take its records: read into the
 * arena when there is one, else walked in the mapping. */
static int fold_scan(struct fold *f, size_t slot, uint64_t limit,
		     struct wal_scan *sc)
{
	struct seg_map *s = &f->segs[slot];
	if (!f->arena) {
		kyro__fs_populate(s->base, s->maplen);
		kyro__wal_scan(s->base, limit, s->id, WAL_HDR, s->first_seq,
			       sc);
		if (sc->status == KYRO_ECORRUPT)
			return 0;
		int rc = 0;
		for (uint64_t off = WAL_HDR; !rc && off < sc->end;) {
			struct wal_rec r;
			uint64_t at = off;
			off = wal_rec_at(s->base, off, &r);
			if (r.type != WAL_COMMIT)
				rc = fold_add(f, slot, at, &r);
		}
		return rc;
	}
	struct gather g = {.f = f, .slot = slot, .nents = f->nents};
	uint64_t size;
	int fd, rc = kyro__fs_open(f->msg, s->path, O_RDONLY, 0, &fd);
	if (rc)
		return rc;
	rc = kyro__fs_size(f->msg, fd, s->path, &size);
	if (!rc && size != s->maplen)
		rc = kyro__failx(f->msg, KYRO_ECORRUPT,
				 "'%s' changed size while it was folded",
				 s->path);
	if (!rc)
		rc = kyro__wal_scan_fd(f->msg, fd, s->path, limit, s->id,
				       WAL_HDR, s->first_seq, gather_rec, &g,
				       sc);
	kyro__fs_close(fd);
	f->nents = g.nents;
	return rc;
}

static int fold_collect(struct fold *f, size_t slot, uint64_t limit,
			uint64_t *next_seq)
{
	struct seg_map *s = &f->segs[slot];
	struct wal_scan sc;
	char *msg = f->msg;
	if (limit > s->maplen)
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': committed end %llu is past the end of the "
			"file",
			s->path, (unsigned long long)limit);
	if (s->first_seq != *next_seq)
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': offset 24: first sequence number %llu, "
			"expected %llu",
			s->path, (unsigned long long)s->first_seq,
			(unsigned long long)*next_seq);
	int rc = fold_scan(f, slot, limit, &sc);
	if (rc)
		return rc;
	if (sc.status == KYRO_ECORRUPT)
		return kyro__failx(msg, KYRO_ECORRUPT, "'%s': offset %llu: %s",
				   s->path, (unsigned long long)sc.bad_off,
				   sc.why);
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
	char *msg = f->msg;
	int rc = 0;
	while (!rc && (i < n || j < m)) {
		/* The records are scattered over the WAL in key order: fetch
		 * a few ahead so their misses overlap. */
		if (j + 16 < m && !(f->ents[j + 16].ref & DELTA_TOMB)) {
			uint64_t ahead = f->ents[j + 16].ref & ~FOLD_VEC;
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
				rc = kyro__snap_writer_add(
					msg, w, old->keys[i++], val, len);
		} else {
			/* The key's newest value record wins; a key with
			 * only vector records keeps its old value, copied
			 * by the next turn. */
			uint64_t key = f->ents[j].key, ref = 0;
			int found = 0;
			for (; j < m && f->ents[j].key == key; j++)
				if (!(f->ents[j].ref & FOLD_VEC)) {
					ref = f->ents[j].ref;
					found = 1;
				}
			if (!found)
				continue;
			if (i < n && old->keys[i] == key)
				i++;
			if (!(ref & DELTA_TOMB)) {
				uint32_t len;
				const unsigned char *val =
					fold_val(f, ref, &len);
				rc = kyro__snap_writer_add(msg, w, key, val,
							   len);
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
		rc = kyro__snap_check_all(msg, old);
	if (!rc && progress)
		progress(arg, total, total);
	return rc;
}

/* One kyro_snapshot() call, step by step. */
struct run {
	kyro_db *db;
	unsigned flags;
	const struct kyro_rmi_params *p;
	struct kyro_snapshot_stats *st;
	kyro_progress_fn progress;
	void *arg;
	struct manifest before; /* as the rotation found it, under the lock */
	uint64_t gen;           /* the manifest generation after the rotation */
	uint64_t cut;           /* the last sequence number folded */
	uint64_t cut_end;       /* where its segment's committed batches end */
	int rotated;            /* there is something to fold */
	struct snap old;        /* the snapshot folded, or to index */
	int have_old;
	struct snap_writer w;   /* the new snapshot */
	int have_w;
	uint64_t bytes;         /* of the new snapshot's files */
	uint64_t rmi_id;        /* the index built, or 0 */
	struct kyro__vec_arrays vec; /* the new snapshot's vectors */
	int have_vec;           /* ... when it has any (dim known) */
	uint64_t hnsw_id;       /* the vector graph built, or 0 */
};

/* The old snapshot's vectors, checked whole before they are carried
 * over (like its values). */
static int old_vectors(struct run *r, struct kyro__vstore *ov)
{
	char *msg = kyro__db_msg(r->db);
	memset(ov, 0, sizeof *ov);
	if (!r->have_old)
		return 0;
	int rc = kyro__vstore_load(msg, ov, kyro__db_dir(r->db), &r->before,
				   r->old.hdr_sum, 1);
	if (!rc && ov->vecs)
		rc = kyro__hnsw_verify(msg, ov->vecs);
	return rc;
}

/* Room for N vectors of DIM in A. */
static int vec_alloc(struct kyro__vec_arrays *a, uint64_t n, uint32_t dim)
{
	a->dim = dim;
	a->keys = malloc((n ? n : 1) * sizeof *a->keys);
	a->vecs = malloc((n ? n : 1) * dim * sizeof *a->vecs);
	return a->keys && a->vecs ? 0 : ENOMEM;
}

/* The dimension of the folded vector records (all equal: the writer
 * holds them to the store's), or OLD_DIM; *NV counts them. */
static int fold_dim(const struct fold *f, uint32_t old_dim, uint32_t *dim,
		    uint64_t *nv)
{
	*dim = old_dim;
	*nv = 0;
	for (size_t j = 0; j < f->nents; j++) {
		if (!(f->ents[j].ref & FOLD_VEC))
			continue;
		uint32_t len;
		fold_val(f, f->ents[j].ref, &len);
		if (!*dim)
			*dim = len / 4;
		if (len / 4 != *dim)
			return kyro__failx(f->msg, KYRO_ECORRUPT,
					   "a vector of key %llu has %u "
					   "dimensions, the store's %u",
					   (unsigned long long)f->ents[j].key,
					   len / 4, *dim);
		++*nv;
	}
	return 0;
}

/* Merge the old snapshot's vectors with the folded vector records into
 * R->vec: a key's newest VECTOR wins, a DELETE drops it. */
static int fold_vectors(struct run *r, const struct fold *f)
{
	struct kyro__vstore ov;
	struct kyro__vec_arrays *a = &r->vec;
	uint32_t dim;
	uint64_t nv;
	int rc = old_vectors(r, &ov);
	if (!rc)
		rc = fold_dim(f, kyro__vstore_dim(&ov), &dim, &nv);
	if (rc || dim == 0)
		goto out;
	const struct kyro__hnsw *o = ov.vecs;
	uint64_t n = o ? o->n : 0, i = 0;
	if ((rc = vec_alloc(a, n + nv, dim)) != 0) {
		rc = kyro__fail(f->msg, rc, "cannot snapshot");
		goto out;
	}
	r->have_vec = 1;
	for (size_t j = 0; i < n || j < f->nents;) {
		const float *v = NULL;
		uint64_t key;
		if (j == f->nents || (i < n && o->keys[i] < f->ents[j].key)) {
			key = o->keys[i];
			v = o->vecs + i++ * o->stride;
		} else {
			uint64_t ref = 0;
			int found = 0;
			key = f->ents[j].key;
			for (; j < f->nents && f->ents[j].key == key; j++)
				if (f->ents[j].ref & (FOLD_VEC | DELTA_TOMB)) {
					ref = f->ents[j].ref;
					found = 1;
				}
			if (!found)
				continue; /* the old vector is copied next */
			if (i < n && o->keys[i] == key)
				i++;
			if (ref & DELTA_TOMB)
				continue;
			uint32_t len;
			v = (const float *)(const void *)fold_val(f, ref, &len);
		}
		a->keys[a->n] = key;
		memcpy(a->vecs + a->n++ * dim, v, (size_t)dim * 4);
	}
out:
	kyro__vstore_free(&ov);
	return rc;
}

/* A graph is built for the new snapshot when asked for, or when the one
 * it replaces had one (the same parameters:
 * docs/VECTORS.md, "Decisions"). */
static int want_graph(struct run *r, struct kyro_vec_params *p)
{
	int had;
	kyro__vec_snapshot_params(r->db, &r->before, p, &had);
	return r->have_vec && r->vec.n &&
	       ((r->flags & KYRO_SNAPSHOT_VECTORS) || had);
}

/* Write the new snapshot's vectors file, and its graph when wanted. */
static int write_vectors(struct run *r)
{
	char *msg = kyro__db_msg(r->db);
	const char *dir = kyro__db_dir(r->db);
	struct kyro_vec_params p;
	if (!r->have_vec)
		return 0;
	r->vec.binding = get_le64(r->w.img + 120);
	int rc = kyro__vstore_write(msg, dir, r->w.gen, r->vec.binding,
				    r->vec.keys, r->vec.vecs, r->vec.n,
				    r->vec.dim, NULL);
	if (rc || !want_graph(r, &p))
		return rc;
	r->hnsw_id = r->before.hnsw_gen + 1;
	return kyro__vec_graph_write(msg, dir, r->hnsw_id, &r->vec, r->w.gen,
				     &p, &r->st->vec);
}

/* Nothing to fold, KYRO_SNAPSHOT_VECTORS, and the snapshot there is has
 * vectors but no graph: build it. */
static int graph_for_current(struct run *r)
{
	const struct manifest *b = &r->before;
	struct kyro_vec_params p;
	int had, rc;
	if (!(r->flags & KYRO_SNAPSHOT_VECTORS) || !b->snap_gen ||
	    b->vec_snap != b->snap_gen || b->hnsw_snap == b->snap_gen)
		return 0;
	kyro__vec_snapshot_params(r->db, b, &p, &had);
	rc = kyro__vec_read(r->db, b, &r->vec);
	if (rc == KYRO_ENOTFOUND)
		return 0;
	r->hnsw_id = b->hnsw_gen + 1;
	if (!rc)
		rc = kyro__vec_graph_write(kyro__db_msg(r->db),
					   kyro__db_dir(r->db), r->hnsw_id,
					   &r->vec, b->snap_gen, &p,
					   &r->st->vec);
	return rc;
}

/* Step (1), under the writer lock: put a new empty segment after the
 * records to fold, unless nothing was written since the last snapshot. */
static int rotate_edit(void *arg, struct manifest *m,
		       const struct db_tail *tail)
{
	struct run *r = arg;
	r->before = *m;
	r->cut = tail->last_seq;
	r->cut_end = tail->end;
	r->rotated = r->cut != (m->snap_gen ? m->snap_seq : 0);
	if (r->rotated)
		m->wal_last++;
	return 0;
}

static int rotate(struct run *r)
{
	struct manifest m;
	int rc;
	/* The edit depends on nothing read before the lock: when another
	 * commit (a repair) came between the read and the lock, read again. */
	for (int tries = 0; tries < 3; tries++) {
		if ((rc = kyro__manifest_read(kyro__db_msg(r->db),
					      kyro__db_dir(r->db), &m)) != 0)
			return rc;
		rc = kyro__db_commit(r->db, "snapshot", m.gen, rotate_edit, r);
		if (rc != KYRO_EBATCH)
			break;
	}
	r->gen = r->before.gen + (r->rotated ? 1 : 0);
	return rc;
}

/* Open the snapshot there is.  Unless NEEDED (to fold or to index), it
 * only gives the figures, and a failure is no error. */
static int open_old(struct run *r, int needed)
{
	const struct manifest *b = &r->before;
	if (!b->snap_gen)
		return 0;
	int rc =
		kyro__snap_open(needed ? kyro__db_msg(r->db) : NULL, &r->old,
				kyro__db_dir(r->db), b->snap_gen, b->snap_keys);
	r->have_old = !rc;
	return needed ? rc : 0;
}

/* Open the segments to fold and make room for their records. */
static int fold_open_all(struct run *r, struct fold *f)
{
	const struct manifest *b = &r->before;
	char *msg = kyro__db_msg(r->db);
	uint64_t wal = 0;
	int rc;
	f->nsegs = (size_t)(b->wal_last - b->wal_first + 1);
	if (!(f->segs = calloc(f->nsegs, sizeof *f->segs)))
		return kyro__fail(msg, ENOMEM, "cannot snapshot");
	uint64_t next_seq = b->snap_gen ? b->snap_seq + 1 : 1;
	/* Sequence numbers count records exactly: size the array once
	 * rather than doubling a multi-gigabyte buffer; on huge pages, since
	 * 4 KiB faults over it cost more than filling it (see sort.c). */
	f->cap = (size_t)(r->cut + 1 - next_seq);
	if (f->cap &&
	    !(f->ents = kyro__fs_alloc_huge(f->cap * sizeof *f->ents)))
		return kyro__fail(msg, ENOMEM, "cannot snapshot");
	for (size_t i = 0; i < f->nsegs; i++) {
		rc = kyro__seg_map_open(msg, &f->segs[i], kyro__db_dir(r->db),
					b->wal_first + i);
		if (rc)
			return rc;
		wal += f->segs[i].maplen;
	}
	/* Values plus their 4-byte lengths never exceed the WAL's bytes
	 * (arena_put() says why the room is twice that); pages are taken
	 * only as they are filled.  Without memory for an arena the gather
	 * reads the WAL itself. */
	if (wal <= arena_max()) {
		f->arena_cap = 2 * wal + ARENA_RANGES * CHUNK;
		f->arena = kyro__fs_alloc_huge(f->arena_cap);
		f->chunk = calloc(2 * ARENA_RANGES, sizeof *f->chunk);
		if (f->arena && f->chunk) {
			f->chunk_end = f->chunk + ARENA_RANGES;
		} else {
			kyro__fs_free_huge(f->arena, f->arena_cap);
			free(f->chunk);
			f->arena = NULL;
			f->chunk = NULL;
		}
	}
	/* What the values will fill: all but the records' headers. */
	if (f->arena && wal > 28 * (uint64_t)f->cap)
		f->arena_need = wal - 28 * (uint64_t)f->cap;
	return 0;
}

/* Gather the records of the segments to fold. */
static int fold_collect_all(struct run *r, struct fold *f)
{
	const struct manifest *b = &r->before;
	char *msg = kyro__db_msg(r->db);
	uint64_t next_seq = b->snap_gen ? b->snap_seq + 1 : 1;
	int rc;
	for (size_t i = 0; i < f->nsegs; i++) {
		int last = i + 1 == f->nsegs;
		rc = fold_collect(f, i, last ? r->cut_end : f->segs[i].maplen,
				  &next_seq);
		if (rc)
			return kyro__needs_repair(r->db, rc);
	}
	if (next_seq != r->cut + 1)
		return kyro__needs_repair(
			r->db,
			kyro__failx(msg, KYRO_ECORRUPT,
				    "WAL of '%s' ends at sequence %llu, "
				    "expected %llu",
				    kyro__db_dir(r->db),
				    (unsigned long long)(next_seq - 1),
				    (unsigned long long)r->cut));
	return 0;
}

/* Sort the records, with the new snapshot's key and offset arrays (not
 * yet written) as the scratch space: one allocation mapped in, not two. */
static int fold_sort(struct fold *f, struct snap_writer *w)
{
	size_t room;
	struct delta_ent *scratch = kyro__snap_writer_scratch(w, &room);
	if (room < f->nents * sizeof *scratch)
		scratch = NULL;
	int rc = kyro__sort_ents_with(f->ents, f->nents, scratch);
	return rc ? kyro__fail(f->msg, rc, "cannot snapshot") : 0;
}

/* An index is built for the new snapshot, or for the one there is when it
 * has none. */
static int want_index(const struct run *r)
{
	const struct manifest *b = &r->before;
	return (r->flags & KYRO_SNAPSHOT_INDEX) &&
	       (r->rotated || (b->snap_gen && b->rmi_snap != b->snap_gen));
}

/* The index of the new snapshot trains on a second thread, on the keys
 * in the writer's memory, while the files are written and synced: the
 * keys are final once the writer is sealed. */
struct index_job {
	struct run *r;
	struct snap view;
	char msg[KMSG_MAX];
	int rc;
};

static void *index_job_run(void *arg)
{
	struct index_job *j = arg;
	j->rc = kyro__index_write(j->msg, kyro__db_dir(j->r->db), &j->view,
				  j->r->rmi_id, j->r->p, &j->r->st->rmi);
	return NULL;
}

/* Write the sealed snapshot's files durably and, when asked, its index
 * beside them.  Neither is named by the manifest yet. */
static int write_and_index(struct run *r)
{
	char *msg = kyro__db_msg(r->db);
	struct index_job j = {.r = r};
	pthread_t t;
	int spawned = 0, rc;
	if (want_index(r)) {
		if ((rc = kyro__snap_writer_view(msg, &r->w, &j.view)) != 0)
			return rc;
		r->rmi_id = r->before.rmi_gen + 1;
		spawned = pthread_create(&t, NULL, index_job_run, &j) == 0;
	}
	rc = kyro__snap_writer_finish(msg, &r->w, r->cut, &r->bytes);
	if (spawned)
		pthread_join(t, NULL);
	else if (r->rmi_id && !rc)
		index_job_run(&j);
	if (r->rmi_id) {
		if (!rc && j.rc) {
			rc = j.rc;
			memcpy(msg, j.msg, KMSG_MAX);
		}
		kyro__snap_view_release(&j.view);
	}
	return rc;
}

/* Fresh memory is what the gather and the sort spend most on, on a
 * virtual machine: the first write to each page traps to the host.  So a
 * second thread faults in the records array and the arena ahead of the
 * gather (side by side, as the gather fills them), then the sort's
 * scratch, while the first thread reads and checks the WAL. */
struct prefault {
	const struct fold *f;
	unsigned char *scratch;
	size_t scratch_len;
	pthread_t t;
	int spawned;
};

#define PREFAULT_STEP ((uint64_t)8 << 20)

static void *prefault_run(void *arg)
{
	const struct prefault *pf = arg;
	const struct fold *f = pf->f;
	unsigned char *ents = (unsigned char *)f->ents;
	uint64_t elen = f->cap * sizeof *f->ents, e = 0, a = 0;
	/* Arena bytes per records byte, in 1/1024ths. */
	uint64_t ratio = elen ? f->arena_need / (elen / 1024 + 1) : 0;
	while (e < elen) {
		uint64_t n = elen - e < PREFAULT_STEP ? elen - e
						      : PREFAULT_STEP;
		kyro__fs_prefault(ents + e, (size_t)n);
		e += n;
		uint64_t to = (e / 1024 * ratio) & ~(uint64_t)4095;
		if (to > a && to <= f->arena_need) {
			kyro__fs_prefault(f->arena + a, (size_t)(to - a));
			a = to;
		}
	}
	if (a < f->arena_need)
		kyro__fs_prefault(f->arena + a, (size_t)(f->arena_need - a));
	kyro__fs_prefault(pf->scratch, pf->scratch_len);
	return NULL;
}

static void prefault_start(struct prefault *pf, const struct fold *f,
			   struct snap_writer *w)
{
	pf->f = f;
	pf->scratch = kyro__snap_writer_scratch(w, &pf->scratch_len);
	pf->spawned = pthread_create(&pf->t, NULL, prefault_run, pf) == 0;
}

static void prefault_end(struct prefault *pf)
{
	if (pf->spawned)
		pthread_join(pf->t, NULL);
	pf->spawned = 0;
}

/* Write the new snapshot: the old one merged with the folded records. */
static int fold(struct run *r)
{
	struct fold f = {.msg = kyro__db_msg(r->db)};
	struct prefault pf = {0};
	int rc = open_old(r, 1);
	if (!rc)
		rc = fold_open_all(r, &f);
	if (!rc)
		rc = kyro__snap_writer_open(f.msg, &r->w, kyro__db_dir(r->db),
					    r->before.snap_gen + 1,
					    (r->have_old ? r->old.n : 0) +
						    f.cap);
	if (!rc) {
		r->have_w = 1;
		prefault_start(&pf, &f, &r->w);
		rc = fold_collect_all(r, &f);
		prefault_end(&pf);
	}
	if (!rc)
		rc = fold_sort(&f, &r->w);
	if (!rc)
		rc = fold_merge(&f, r->have_old ? &r->old : NULL, &r->w,
				r->progress, r->arg);
	if (!rc)
		rc = fold_vectors(r, &f);
	if (!rc)
		rc = kyro__snap_writer_seal(f.msg, &r->w, r->cut);
	/* The WAL and its records are no longer needed: give the memory
	 * back before the index trains. */
	for (size_t i = 0; f.segs && i < f.nsegs; i++)
		kyro__seg_map_close(&f.segs[i]);
	free(f.segs);
	kyro__fs_free_huge(f.ents, f.cap * sizeof *f.ents);
	kyro__fs_free_huge(f.arena, f.arena_cap);
	free(f.chunk);
	if (!rc)
		rc = write_and_index(r);
	return rc ? rc : write_vectors(r);
}

/* The snapshot there is has no index: build it. */
static int build_index(struct run *r)
{
	r->rmi_id = r->before.rmi_gen + 1;
	return kyro__index_write(kyro__db_msg(r->db), kyro__db_dir(r->db),
				 &r->old, r->rmi_id, r->p, &r->st->rmi);
}

/* Step (2): name the new snapshot, whose index (if any) comes in the same
 * commit; the folded segments leave the list.  The old index served the
 * old keys. */
static int commit_edit(void *arg, struct manifest *m,
		       const struct db_tail *tail)
{
	const struct run *r = arg;
	(void)tail;
	if (r->rotated) {
		m->snap_gen = r->w.gen;
		m->snap_seq = r->cut;
		m->snap_keys = r->w.n;
		m->wal_first = r->before.wal_last + 1;
		m->rmi_snap = 0;
		m->vec_snap = r->have_vec ? r->w.gen : 0;
		m->hnsw_snap = 0;
	}
	if (r->hnsw_id) {
		m->hnsw_gen = r->hnsw_id;
		m->hnsw_snap = m->snap_gen;
	}
	if (r->rmi_id) {
		m->rmi_gen = r->rmi_id;
		m->rmi_snap = m->snap_gen;
	}
	return 0;
}

/* The vectors of the snapshot there is (for the figures: a failure to
 * open them is no error here, and counts none). */
static uint64_t old_vector_count(struct run *r)
{
	char path[PATH_MAX], err[KMSG_MAX];
	struct kyro__hnsw *h = NULL;
	uint64_t n = 0;
	const struct manifest *b = &r->before;
	if (r->vec.n || !b->snap_gen || b->vec_snap != b->snap_gen)
		return r->vec.n;
	if (!kyro__vstore_path(path, kyro__db_dir(r->db), b->snap_gen) &&
	    !kyro__hnsw_open(err, path, &h))
		n = h->n;
	kyro__hnsw_free(h);
	return n;
}

static void fill_stats(struct run *r)
{
	struct kyro_snapshot_stats *st = r->st;
	st->vectors = r->vec.n;
	if (r->rotated) {
		st->keys = r->w.n;
		st->bytes = r->bytes;
		st->generation = r->w.gen;
	} else {
		st->keys = r->before.snap_keys;
		st->generation = r->before.snap_gen;
		if (r->have_old)
			st->bytes = r->old.bin_len + r->old.data_len;
		st->vectors = old_vector_count(r);
	}
}

int kyro_snapshot(kyro_db *db, unsigned flags,
		  const struct kyro_rmi_params *p,
		  struct kyro_snapshot_stats *st, kyro_progress_fn progress,
		  void *arg)
{
	struct kyro_snapshot_stats local;
	struct run r = {.db = db, .flags = flags, .p = p,
			.st = st ? st : &local, .progress = progress,
			.arg = arg};
	int lockfd = -1;
	double t0 = now();
	memset(r.st, 0, sizeof *r.st);
	r.w.fd_data = -1;
	int rc = kyro__db_maintenance_lock(db, "snapshot", &lockfd);
	if (!rc)
		rc = rotate(&r);
	if (!rc)
		rc = r.rotated ? fold(&r) : open_old(&r, want_index(&r));
	if (!rc && !r.rotated && want_index(&r))
		rc = build_index(&r);
	if (!rc && !r.rotated)
		rc = graph_for_current(&r);
	if (!rc && (r.rotated || r.rmi_id || r.hnsw_id))
		rc = kyro__db_commit(db, "snapshot", r.gen, commit_edit, &r);
	if (!rc) {
		fill_stats(&r);
		kyro__db_collect_garbage(db);
	}
	if (r.have_w)
		kyro__snap_writer_abort(&r.w);
	if (r.have_old)
		kyro__snap_close(&r.old);
	kyro__vec_arrays_free(&r.vec);
	kyro__fs_close(lockfd);
	r.st->seconds = now() - t0;
	return rc;
}
