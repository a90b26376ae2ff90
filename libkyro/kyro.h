/*
 * kyro.h - the one public header of libkyro, the KyroDB storage library.
 *
 * KyroDB maps unsigned 64-bit keys to byte-string values (0 bytes to
 * KYRO_MAX_VALUE).  A store is a directory; any number of processes may
 * open it at once.  Writers serialize through flock(2); readers never
 * block writers and see every batch whole or not at all.
 *
 * Conventions, as in LMDB:
 *   - Every function that can fail returns an int: 0 on success, a
 *     positive errno value passed through from the system, or a negative
 *     KYRO_E* code.  kyro_strerror() names either kind.
 *   - Detail (the path, the byte offset) of the last failure on a handle
 *     is in kyro_errmsg(); it stays valid until the next call on the handle.
 *   - The library never prints and never exits.
 *   - A kyro_db handle is used by one thread at a time.
 */
#ifndef KYRO_H
#define KYRO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KYRO_VERSION_STRING "0.1.0"

/* The largest value a record may hold: 16 MiB. */
#define KYRO_MAX_VALUE ((size_t)16 << 20)

/* Negative result codes.  Positive results are errno values. */
#define KYRO_ENOTFOUND (-1) /* the key has no value: a negative answer */
#define KYRO_ECORRUPT (-2)  /* a file fails its checksum or its rules, or
			     * committed data is missing from the WAL */
#define KYRO_EVERSION (-3)  /* a file of a format version we do not read */
#define KYRO_ENOTDB (-4)    /* the directory is not a KyroDB store */
#define KYRO_EFAILED (-5)   /* an earlier write failed; handle is read-only */
#define KYRO_ETOOBIG (-6)   /* a value over KYRO_MAX_VALUE */
#define KYRO_ERDONLY (-7)   /* a write on a handle opened for reading */
#define KYRO_EBATCH (-8)    /* batch calls out of order */
#define KYRO_ETORN (-9)     /* a WAL ends in a torn (incomplete) record;
			     * no public function returns it: kyro_verify()
			     * reports a torn tail as KYRO_EDAMAGED */
#define KYRO_EDAMAGED (-10) /* kyro_verify() found damage, or its repair
			     * cut committed data; see the report */
#define KYRO_EEXPIRED (-11) /* the change feed was asked for history older
			     * than the store retains; kyro_feed_oldest()
			     * tells what is left */
#define KYRO_EDIM (-12)     /* a vector whose dimension is not the
			     * store's (kyro_vec_dim()) */

/* kyro_open() flags. */
#define KYRO_RDONLY 0x0 /* read only; a missing store is ENOENT */
#define KYRO_RDWR 0x1   /* allow writes; create the store when missing */
#define KYRO_EXISTING 0x2 /* with KYRO_RDWR: never create; a missing store
			   * is ENOENT (for maintenance tools, so a typo in
			   * a cron line is an error, not a new store) */
#define KYRO_COUNT_WINDOWS 0x4 /* count every index lookup's probe window
				* in kyro_stats().window_hist.  Off by
				* default: the count depends on the index's
				* cache miss and costs up to a quarter of a
				* lookup at 100M keys; the daemon, which
				* exports it, sets this (docs/RMI.md) */
#define KYRO_BINARY_SEARCH 0x8 /* ignore any learned index: lookups
				* binary-search the snapshot (to compare,
				* or to rule the index out) */
#define KYRO_MAINTENANCE 0x10 /* with KYRO_RDWR: a handle for
			      * kyro_snapshot(), kyro_rmi_build() and
			      * kyro_vec_build().  A writer's open reads
			      * every live WAL record, so that it never
			      * appends behind damage; this one skips that
			      * pass (a snapshot checks each record it folds
			      * as it reads it; an index build reads none),
			      * and its first batch, if it writes one,
			      * checks the whole live WAL under the lock */

/* Durability of writes: when a batch's records reach stable storage. */
#define KYRO_SYNC_ALWAYS 0 /* fsync after every record and at commit */
#define KYRO_SYNC_BATCH 1  /* fsync once when a batch commits (default) */
#define KYRO_SYNC_NONE 2   /* never fsync; a crash may lose acked batches */

typedef struct kyro_db kyro_db;

/*
 * Open the store in directory DIR.  *DBP is always set, even on failure
 * (to NULL only when memory ran out), so that kyro_errmsg() can tell why;
 * the caller closes it with kyro_close() either way.
 *
 * Opening maps the current snapshot and replays the WAL written since; its
 * cost does not grow with the snapshot, except for a snapshot of format
 * version 1 (written by the previous release), whose checksums are
 * verified whole at open.  With KYRO_RDWR the directory and its files are
 * created when missing.  Damage met while opening (a snapshot header, a
 * WAL record followed by valid ones, a log shorter than its published
 * committed end) is KYRO_ECORRUPT; kyro_errmsg() names the file and
 * offset, and WAL damage adds "run 'kyro-verify --repair'".
 */
int kyro_open(kyro_db **dbp, const char *dir, unsigned flags);

/* Close the handle and release everything it owns.  NULL is accepted.
 * An open batch is aborted. */
void kyro_close(kyro_db *db);

/* The message for the last failure on DB (never NULL). */
const char *kyro_errmsg(const kyro_db *db);

/* A static, human-readable name for a result code. */
const char *kyro_strerror(int err);

/* Set the durability mode (a KYRO_SYNC_* value) for later writes. */
int kyro_set_sync(kyro_db *db, int mode);

/*
 * Use the learned index's window probe for instruction set NAME on this
 * handle: "scalar", "sse4", "avx2" or "avx512"; NULL or "auto" means the
 * best this CPU runs, which is also what a handle uses until this is
 * called.  Applies to the index loaded now and to every index the handle
 * loads later; kyro_index_info() reports the probe in use.  Every probe
 * gives the same answers.  EINVAL for a name not in that list, ENOTSUP
 * when this CPU cannot run it (the probe in use is then unchanged).
 */
int kyro_set_simd(kyro_db *db, const char *name);

/*
 * Look KEY up.  On success *VAL and *LEN describe the value; the bytes
 * belong to the library and stay valid until the next call on DB.
 * Returns KYRO_ENOTFOUND when the key is absent or deleted.  Every lookup
 * first checks, with one atomic load, whether another process has committed
 * since; if so the handle catches up before answering.
 *
 * Every snapshot block (4 KiB) that the answer depends on, keys, offsets
 * and value bytes, is verified against its checksum the first time this
 * handle's open snapshot uses it (later uses cost one bit test).  A block
 * that fails is KYRO_ECORRUPT, with kyro_errmsg() naming the file and the
 * block's offset: never a wrong value, never a false KYRO_ENOTFOUND.
 */
int kyro_get(kyro_db *db, uint64_t key, const void **val, size_t *len);

/*
 * The offset (sequence number) at which KEY's current value was written:
 * exact when that write is newer than the snapshot; for a key whose value
 * comes from the snapshot, the snapshot's last sequence number (snapshots
 * do not keep one per key).  KYRO_ENOTFOUND when absent or deleted.
 */
int kyro_get_seq(kyro_db *db, uint64_t key, uint64_t *seq);

/*
 * Look up many keys at once: the same answers as kyro_get() for each, but
 * the searches are interleaved so their cache misses overlap, which is
 * several times faster for large snapshots.  Each item's RC is 0 or
 * KYRO_ENOTFOUND; the call returns 0, or an error that stopped it (then
 * no item is to be trusted): a damaged snapshot block is KYRO_ECORRUPT,
 * checked as for kyro_get().  Values stay valid until the next call on DB.
 */
struct kyro_item {
	uint64_t key;     /* in */
	int rc;           /* out: 0 or KYRO_ENOTFOUND */
	const void *val;  /* out */
	size_t len;       /* out */
};
int kyro_get_batch(kyro_db *db, struct kyro_item *items, size_t n);

/*
 * Writes.  Records are written inside a batch; a batch becomes visible to
 * readers, and survives a crash, only as a whole.  kyro_put()/kyro_delete()
 * outside a batch run as a batch of one.  A batch holds the writer lock from
 * kyro_batch_begin() to commit or abort.  *SEQ, when not NULL, receives the
 * record's sequence number (its "offset").  After any write failure the
 * handle refuses further writes with KYRO_EFAILED.
 *
 * A writer never appends behind damage.  kyro_batch_begin() (and so a
 * kyro_put() or kyro_delete() outside a batch) first checks, under the
 * lock, every live WAL byte this handle has not checked before (on its
 * first batch: every live segment, headers and records) and holds the
 * shared page in LOCK against them.  A damaged record or segment header,
 * or a committed end that the files no longer reach, is KYRO_ECORRUPT
 * with the file and offset in kyro_errmsg(), ending in "run 'kyro-verify
 * --repair'"; nothing is appended.  Any other disagreement of the page
 * (damaged, or behind the files) is settled by rebuilding it.
 */
int kyro_batch_begin(kyro_db *db);
int kyro_put(kyro_db *db, uint64_t key, const void *val, size_t len,
	     uint64_t *seq);
int kyro_delete(kyro_db *db, uint64_t key, uint64_t *seq);
/* *LAST_SEQ receives the batch's last sequence number; for an empty batch,
 * the store's last committed one. */
int kyro_batch_commit(kyro_db *db, uint64_t *last_seq);
/* Discard the open batch: nothing of it is visible or survives. */
void kyro_batch_abort(kyro_db *db);

/*
 * kyro_batch_begin() for a batch that must begin at sequence number
 * FIRST_SEQ: for a copy that applies another store's batches with their
 * own numbers (a read replica), so that it can never make a gap or a
 * duplicate.  Refused with KYRO_EBATCH, nothing held, when the store's
 * next sequence number is not FIRST_SEQ; kyro_errmsg() names both.  Each
 * kyro_put() or kyro_delete() takes one number and the commit none, so a
 * batch of N changes begun at S ends at S + N - 1, as on the source.
 */
int kyro_batch_begin_at(kyro_db *db, uint64_t first_seq);

/*
 * Make every batch this handle committed durable now (fsync the WAL).  For
 * a writer that commits with KYRO_SYNC_NONE and syncs on a timer.  A
 * failure is final, as for any write: the handle refuses further writes.
 */
int kyro_sync(kyro_db *db);

/* Counters of one handle, for monitoring.  Each is written only by the
 * thread using the handle and may be read from another thread (relaxed
 * atomic loads); they only ever grow, except the *_gen and last_seq
 * gauges. */
#define KYRO_WINDOW_BUCKETS 16
struct kyro_stats {
	uint64_t lookups_delta;   /* answered from the WAL delta */
	uint64_t lookups_rmi;     /* answered through the learned index */
	uint64_t lookups_binary;  /* answered by binary search */
	uint64_t rmi_mispredicts; /* key not in its predicted window */
	uint64_t rmi_fallbacks;   /* a whole leaf probed (error bound saturated) */
	/* RMI probe windows: bucket i counts windows of < 2^i keys, the
	 * last bucket everything larger.  All 0 unless the handle was
	 * opened with KYRO_COUNT_WINDOWS. */
	uint64_t window_hist[KYRO_WINDOW_BUCKETS];
	uint64_t batches;         /* committed batches */
	uint64_t wal_records;     /* records written */
	uint64_t wal_bytes;       /* WAL bytes written */
	uint64_t wal_fsyncs;
	uint64_t manifest_gen;    /* gauges: what the handle sees now */
	uint64_t snapshot_gen;
	uint64_t rmi_gen;
	uint64_t last_seq;
	uint64_t vec_searches;    /* kyro_vec_search() calls answered */
	uint64_t vec_distances;   /* distance computations they made */
};
void kyro_stats(const kyro_db *db, struct kyro_stats *st);

/* The last committed sequence number, as this handle sees it. */
int kyro_last_seq(kyro_db *db, uint64_t *seq);
/* The last sequence number committed to the store, by any process, as
 * its writers published it; unlike kyro_last_seq(), without bringing the
 * handle's view up to it, which after a large write by another process
 * means replaying every change since into the view. */
int kyro_committed_seq(kyro_db *db, uint64_t *seq);

/*
 * Iterate live keys in ascending order over [LO, HI] (both inclusive),
 * calling FN for each; a non-zero return from FN stops the scan and is
 * returned.  VAL is valid only during the call.  The scan sees the store as
 * it was when the scan started.  Every snapshot key, offset and value the
 * scan passes is verified as for kyro_get(); a damaged block stops the
 * scan with KYRO_ECORRUPT, after FN has seen the keys before it.
 */
typedef int (*kyro_scan_fn)(void *arg, uint64_t key, const void *val,
			    size_t len);
int kyro_scan(kyro_db *db, uint64_t lo, uint64_t hi, kyro_scan_fn fn,
	      void *arg);

/* Progress callback for long operations: DONE of TOTAL units. */
typedef void (*kyro_progress_fn)(void *arg, uint64_t done, uint64_t total);

/*
 * The learned index.  A snapshot may have a two-stage recursive model
 * index (RMI); lookups then predict a key's position and probe a small
 * window with SIMD instead of binary-searching the whole key array.  An
 * index that is missing, damaged or stale is refused (the reason is in
 * kyro_index_info()) and lookups use binary search: never a wrong answer.
 * KYRO_BINARY_SEARCH at kyro_open() forces binary search.
 *
 * Opening reads only the index file's header (is it an index of this
 * snapshot, of a format this build reads): reading and checking the whole
 * file costs more as the store grows, and more than a few binary searches.
 * A handle loads and checks the whole index when its lookups pay for it:
 * at its 64th key (kyro_get() or kyro_get_batch() alike), at kyro_warmup(),
 * or at once with KYRO_COUNT_WINDOWS.  Damage inside the file is found
 * then (or by kyro_verify()).
 */
struct kyro_rmi_params {
	unsigned leaves;      /* leaf models; 0: tune automatically */
	unsigned router_bits; /* router table of 2^bits entries (8..24); 0: auto */
	uint64_t max_size;    /* byte budget; 0: 2% of the keys' bytes */
	unsigned threads;     /* 1: fit the leaves on the calling thread;
			       * 2: on it and one more; 0: two when the
			       * process may run on two CPUs or more and
			       * there are 2^18 keys or more.  The index
			       * is the same either way. */
};

struct kyro_rmi_stats {
	uint64_t keys;
	uint64_t leaves;
	uint64_t router_bits;
	uint64_t bytes;       /* size of the index file */
	uint64_t generation;  /* the index file's id */
	double mean_window;   /* mean keys probed per present key */
	double max_window;
	double seconds;       /* build, check and durable write */
};

/* A vector index (graph) built: see kyro_vec_build(). */
struct kyro_vec_stats {
	uint64_t vectors, bytes, generation;
	uint32_t dim, m, ef_construction;
	int metric;
	double seconds;
};

struct kyro_snapshot_stats {
	uint64_t keys;        /* live keys in the new snapshot */
	uint64_t bytes;       /* bytes of the two new snapshot files */
	uint64_t generation;  /* the new snapshot's generation */
	double seconds;       /* wall time of the whole operation */
	struct kyro_rmi_stats rmi; /* the index built (generation 0: none) */
	uint64_t vectors;     /* vectors in the new snapshot */
	struct kyro_vec_stats vec; /* the vector index built (generation 0:
				    * none) */
};

/* kyro_snapshot() flags. */
#define KYRO_SNAPSHOT_INDEX 0x1 /* and build the learned index for the new
				 * snapshot, committed with it */
#define KYRO_SNAPSHOT_VECTORS 0x2 /* and build the vector index (HNSW
				   * graph) for the new snapshot, committed
				   * with it; parameters: those set by
				   * kyro_set_vec_params(), else the
				   * current graph's, else the defaults */

/*
 * Compact the current snapshot and the WAL into a new snapshot and commit
 * it.  Writers are held off only while the WAL is rotated and while the
 * manifest is committed, not while the snapshot is written.  One snapshot
 * runs at a time; a second waits.  Every block of the old snapshot and
 * every WAL record it folds is verified, so that damage is never rewritten
 * under fresh checksums: damage is KYRO_ECORRUPT, and nothing is
 * committed.  With nothing written since the last snapshot there is
 * nothing to fold, and nothing is read; ST then describes the snapshot
 * there is.
 *
 * With KYRO_SNAPSHOT_INDEX the learned index is built (with parameters P)
 * for the new snapshot before the commit, so both become visible in one
 * commit; with nothing to fold, it is built for the snapshot there is,
 * unless that one has its index already.  P, ST and PROGRESS may be NULL
 * (P NULL: every parameter automatic).
 */
int kyro_snapshot(kyro_db *db, unsigned flags,
		  const struct kyro_rmi_params *p,
		  struct kyro_snapshot_stats *st, kyro_progress_fn progress,
		  void *arg);

/*
 * Build the index for the current snapshot and commit it: running
 * readers switch to it at their next lookup.  P, ST and PROGRESS may be
 * NULL.  Fails with
 * KYRO_ENOTFOUND when there is no snapshot yet, and with KYRO_ECORRUPT
 * when a key block it trains on fails its checksum.  Runs one at a time
 * with snapshots (SNAPSHOT.lock); holds writers off only for the commit.
 */
int kyro_rmi_build(kyro_db *db, const struct kyro_rmi_params *p,
		   struct kyro_rmi_stats *st, kyro_progress_fn progress,
		   void *arg);

#define KYRO_INDEX_NONE 0   /* no snapshot: nothing to search */
#define KYRO_INDEX_BINARY 1 /* binary search over the snapshot keys */
#define KYRO_INDEX_RMI 2    /* the learned index */

struct kyro_index_info {
	int kind;            /* KYRO_INDEX_* in use for the current snapshot
			      * (RMI also for an index whose header holds
			      * and that lookups have not loaded yet) */
	int refused;         /* an index exists but was refused: see why */
	char why[1100];      /* why binary search is used, when it is */
	uint64_t keys, leaves, router_bits, bytes, generation;
	const char *simd;    /* the probe in use: scalar, sse4, avx2, avx512 */
};
int kyro_index_info(kyro_db *db, struct kyro_index_info *info);

/*
 * Vectors.  A key may carry one float32 vector beside its value (either
 * may exist without the other).  Vectors go through the same WAL,
 * batches, snapshots and crash rules as values.  A store has one
 * dimension, fixed by its first vector write.
 *
 * Distances, smaller is nearer for every metric:
 */
#define KYRO_MAX_DIM 65536
#define KYRO_METRIC_L2 1     /* squared L2 */
#define KYRO_METRIC_IP 2     /* 1 - dot(a, b) */
#define KYRO_METRIC_COSINE 3 /* 1 - cos(a, b) */

/*
 * Set KEY's vector to VEC (DIM float32, copied).  A DIM other than the
 * store's is KYRO_EDIM, and nothing is written (in a batch the batch stays
 * open and usable); DIM 0 or over KYRO_MAX_DIM, or a NaN or infinite
 * component, is EINVAL, likewise.  kyro_put() leaves the key's vector
 * alone; kyro_delete() removes the key's value AND vector.  Inside a
 * batch like kyro_put(); outside one, a batch of one.  *SEQ as for
 * kyro_put().
 */
int kyro_vec_put(kyro_db *db, uint64_t key, const float *vec, uint32_t dim,
		 uint64_t *seq);
/* KEY's current vector, exactly as it was put (*VEC valid until the next
 * call on DB); KYRO_ENOTFOUND when the key has none. */
int kyro_vec_get(kyro_db *db, uint64_t key, const float **vec,
		 uint32_t *dim);
/* The store's dimension, 0 when no vector was ever written. */
int kyro_vec_dim(kyro_db *db, uint32_t *dim);

#define KYRO_VEC_MAX_K 10000
#define KYRO_VEC_EF_DEFAULT 64 /* ef when the query says 0 (at least k) */
#define KYRO_VEC_EXACT 0x1     /* scan every vector; ignore the graph */
struct kyro_vec_query {
	const float *vec;
	uint32_t dim;
	uint32_t k;        /* 1..KYRO_VEC_MAX_K; 0 is EINVAL */
	uint32_t ef;       /* graph beam; 0: max(k, KYRO_VEC_EF_DEFAULT);
			    * below k: k */
	uint64_t lo, hi;   /* only keys lo <= key <= hi; 0, UINT64_MAX: all */
	int metric;        /* KYRO_METRIC_*; 0: the graph's metric, or L2
			    * when there is no graph.  A metric other than
			    * the graph's is answered by an exact scan */
	unsigned flags;    /* KYRO_VEC_EXACT */
};
struct kyro_vec_hit {
	uint64_t key;
	float dist;
};
/*
 * The K nearest live vectors: the graph over the snapshot merged with an
 * exact scan of the vectors written since (deleted or overwritten keys
 * never come back from the graph), nearest first, ties by key.  HITS has
 * room for q->k; *N gets how many (fewer when fewer vectors match; 0 on a
 * store without vectors is success).  Without a graph (none built, or a
 * graph refused: kyro_vec_info() says why) every vector is scanned.
 * Errors: EINVAL (k, metric, NaN or infinite component, lo > hi),
 * KYRO_EDIM (a query of another dimension than the store's), and
 * KYRO_ECORRUPT naming the file and offset when a block the answer
 * depends on fails its checksum: never a wrong nearest neighbour.
 */
int kyro_vec_search(kyro_db *db, const struct kyro_vec_query *q,
		    struct kyro_vec_hit *hits, size_t *n);

struct kyro_vec_params {
	uint32_t m;                /* links per node; 0: 16 (2..128) */
	uint32_t ef_construction;  /* 0: 200 */
	int metric;                /* KYRO_METRIC_*; 0: L2 */
	uint64_t seed;             /* 0: a fixed default */
	unsigned threads;          /* 0: auto, as kyro_rmi_params */
};
/* struct kyro_vec_stats: see kyro_snapshot_stats above. */
/*
 * Build the vector index (HNSW graph) for the current snapshot and commit
 * it through the manifest; running readers switch at their next search.
 * P, ST and PROGRESS may be NULL (P NULL: the defaults).  KYRO_ENOTFOUND
 * when the snapshot holds no vectors.  One at a time with snapshots.
 */
int kyro_vec_build(kyro_db *db, const struct kyro_vec_params *p,
		   struct kyro_vec_stats *st, kyro_progress_fn progress,
		   void *arg);
/* Parameters for the graphs kyro_snapshot() builds on DB (with
 * KYRO_SNAPSHOT_VECTORS, or to keep a graph the current snapshot has);
 * NULL: back to those of the current graph, else the defaults. */
int kyro_set_vec_params(kyro_db *db, const struct kyro_vec_params *p);

struct kyro_vec_info {
	uint32_t dim;          /* 0: no vectors */
	uint64_t snapshot;     /* vectors in the snapshot */
	uint64_t delta;        /* vector puts/deletes since it */
	int indexed;           /* a graph is in use */
	int refused;           /* a graph exists but was refused: see why */
	char why[512];
	int metric;            /* the graph's, when indexed */
	uint32_t m, ef_construction;
	uint64_t generation, bytes;
	const char *simd;      /* the distance kernels in use */
};
int kyro_vec_info(kyro_db *db, struct kyro_vec_info *info);

/* Bring the current snapshot files and index into the page cache (and
 * this process's page tables): madvise, then touch every page.  Every
 * snapshot block is verified on the way, so lookups on DB afterwards pay
 * one bit test per block; so are the snapshot's vectors file and vector
 * index (searches then pay one bit test per block).  A damaged block is
 * KYRO_ECORRUPT naming the file and offset, and *BYTES is then 0.
 * *BYTES, when BYTES is not NULL, gets the bytes touched. */
int kyro_warmup(kyro_db *db, uint64_t *bytes);

/*
 * Retention of the change feed's history.  A snapshot folds the WAL
 * segments written since the last one into the new snapshot; the folded
 * segments are then garbage for the store, but they are the history that
 * the change feed (below) reads.  The garbage collection that follows a
 * kyro_snapshot() or kyro_rmi_build() on DB keeps the newest folded
 * segments, whole, while their total size stays within BYTES and each
 * one's last write is less than SECONDS old; older ones are removed,
 * oldest first.  KYRO_RETAIN_ANY for either means no limit on that
 * measure; 0 for either keeps nothing (the behaviour before the feed).
 * Until this is called a handle uses the defaults below.  Retained
 * segments are never written again; kyro_verify() checks them.
 */
#define KYRO_RETAIN_ANY UINT64_MAX
#define KYRO_RETAIN_BYTES_DEFAULT ((uint64_t)64 << 20)
#define KYRO_RETAIN_SECONDS_DEFAULT ((uint64_t)3600)
int kyro_set_retain(kyro_db *db, uint64_t bytes, uint64_t seconds);

/*
 * The change feed: every committed change, in sequence-number order, read
 * straight from the WAL segment files (the live ones and the retained
 * history), from any sequence number on, and followed as new batches
 * commit.  A feed is its own handle, independent of kyro_db: it takes no
 * lock, never writes, and is used by one thread at a time (except
 * kyro_feed_interrupt()).
 *
 * Only committed batches are read (up to the end the writer published in
 * the shared page, or, when no writer has published since boot, the
 * complete batches in the files), each batch whole: every record of a
 * batch is checked (checksum, framing, sequence numbers, the COMMIT that
 * closes it) before the first of its changes is passed on.  A damaged
 * record is KYRO_ECORRUPT naming the file and byte offset: never skipped.
 * Snapshots, segment rotation and the removal of history under a reader
 * are followed: a change is never passed twice nor skipped; when the
 * history the feed needs next is no longer there, the result is
 * KYRO_EEXPIRED.
 */
typedef struct kyro_feed kyro_feed;

#define KYRO_CHANGE_PUT 1
#define KYRO_CHANGE_DELETE 2  /* the key's value and vector are gone */
#define KYRO_CHANGE_VECTOR 3  /* the key's vector was set: VAL points to
			       * LEN = 4 * dim bytes, dim float32 in the
			       * machine's (little-endian) order */

struct kyro_change {
	uint64_t seq;         /* this change's sequence number */
	uint64_t batch_first; /* the first and last sequence numbers of */
	uint64_t batch_last;  /* the batch it belongs to */
	int op;               /* KYRO_CHANGE_PUT, _DELETE or _VECTOR */
	uint64_t key;
	const void *val;      /* PUT: the value, VECTOR: the vector (valid
			       * during the call) */
	size_t len;
};

/*
 * Open a feed of DIR's changes from sequence number FROM on (0 or 1:
 * from the first change there is).  A FROM inside a batch starts with the
 * rest of that batch (for a client resuming after the last change it
 * saw); a FROM past the last commit waits for it.  *FP is always set
 * (NULL only when memory ran out), so that kyro_feed_errmsg() and
 * kyro_feed_oldest() can be asked why; close it with kyro_feed_close().
 * KYRO_EEXPIRED when FROM is older than the retained history: bootstrap
 * from a snapshot, then follow from kyro_feed_oldest() or later.
 * ENOENT when DIR holds no store.
 */
int kyro_feed_open(kyro_feed **fp, const char *dir, uint64_t from);
void kyro_feed_close(kyro_feed *f);
const char *kyro_feed_errmsg(const kyro_feed *f);

/*
 * Pass up to MAX_BATCHES committed batches, whole, to FN, one call per
 * change in order; *BATCHES (when not NULL) gets how many were passed.
 * Fewer than MAX_BATCHES means the feed has caught up with the last
 * commit it could see.  A non-zero return from FN stops the read after
 * that change and is returned; the feed then resumes after it.
 */
typedef int (*kyro_change_fn)(void *arg, const struct kyro_change *c);
int kyro_feed_read(kyro_feed *f, size_t max_batches, kyro_change_fn fn,
		   void *arg, size_t *batches);

/*
 * Sleep until a commit may have added something to read (call
 * kyro_feed_read() to see), at most TIMEOUT_MS milliseconds (negative:
 * no limit).  Writers wake their followers through a futex on the shared
 * page, so a wait costs no CPU and ends within microseconds of the
 * commit's publication.  Returns 0 (woken: maybe news), ETIMEDOUT, or
 * EINTR when a signal arrived or kyro_feed_interrupt() was called.  A
 * store no writer has opened yet (no LOCK file) is looked at again every
 * 50 ms.
 */
int kyro_feed_wait(kyro_feed *f, int timeout_ms);
/* Make a kyro_feed_wait() on F in another thread return EINTR: at once,
 * or at its timeout when the call lands just before the wait sleeps.
 * Async-signal-safe. */
void kyro_feed_interrupt(kyro_feed *f);

/* The next sequence number the feed will pass. */
uint64_t kyro_feed_position(const kyro_feed *f);
/* The oldest sequence number the store's history still holds, and the
 * last committed one, looked up now (*OLDEST is then still valid after a
 * failed kyro_feed_open()).  Either pointer may be NULL. */
int kyro_feed_bounds(kyro_feed *f, uint64_t *oldest, uint64_t *last);
/* The oldest available sequence number as the last KYRO_EEXPIRED (or the
 * last kyro_feed_bounds()) found it, without looking again. */
uint64_t kyro_feed_oldest(const kyro_feed *f);

/*
 * Images: the current snapshot of a store as one stream, to start a copy
 * that then follows the change feed from the image's sequence number + 1
 * (docs/FORMAT-FEED.md has the stream byte by byte).  The stream carries the
 * manifest and every file it names for the snapshot and its indexes, each
 * with its name, size and XXH3 checksum; not the WAL.
 *
 * kyro_export_open() reads DB's directory's manifest and opens the files
 * it names before it returns, so the stream stays consistent while
 * snapshots commit and remove those files.  *EP is always set (NULL only
 * when memory ran out) so that kyro_export_errmsg() can tell why; close it
 * with kyro_export_close().  kyro_export_read() fills BUF with up to CAP
 * bytes, *GOT of them (CAP unless the stream ends; 0 at its end).
 * kyro_export_seq(): the snapshot's last sequence number (0: no snapshot
 * yet, the copy follows from 1).
 */
typedef struct kyro_export kyro_export;
int kyro_export_open(kyro_export **ep, kyro_db *db);
int kyro_export_read(kyro_export *e, void *buf, size_t cap, size_t *got);
uint64_t kyro_export_seq(const kyro_export *e);
const char *kyro_export_errmsg(const kyro_export *e);
void kyro_export_close(kyro_export *e);

/*
 * kyro_import_open() starts a new store in DIR, which must be empty or
 * missing (EEXIST when it holds anything).  kyro_import_write() takes the
 * stream in pieces of any size; each file is checked against its checksum
 * and made durable before it takes its name, and a damaged stream is
 * KYRO_ECORRUPT (then every later call fails).  kyro_import_finish()
 * commits the store: its WAL begins at the image's sequence number + 1,
 * which *SEQ receives, and its MANIFEST is the image's, every field kept
 * but the WAL segment ids; until then DIR is no store.  kyro_import_close()
 * without a finish removes what the import wrote.  *IP is always set (NULL
 * only when memory ran out).
 */
typedef struct kyro_import kyro_import;
int kyro_import_open(kyro_import **ip, const char *dir);
int kyro_import_write(kyro_import *im, const void *buf, size_t len);
int kyro_import_finish(kyro_import *im, uint64_t *seq);
const char *kyro_import_errmsg(const kyro_import *im);
void kyro_import_close(kyro_import *im);

/*
 * Check every file of the store: the MANIFEST, every WAL segment header
 * and record, the shared page in LOCK against the WAL (under the writer
 * lock), every snapshot block, the key order and every payload offset, the
 * learned index, the snapshot's vectors file (whole) and the vector
 * index's header (whole with KYRO_VERIFY_DEEP).  Each problem found is
 * passed to REPORT (file, byte offset, text; FILE is "" and OFFSET
 * UINT64_MAX when the text names them itself).  An error that stops the check (I/O, a newer format, a failed
 * repair) is passed with FILE NULL.  Returns 0 when clean, KYRO_EDAMAGED
 * when damage was found (a torn WAL tail included), or an error that
 * stopped the check.
 *
 * KYRO_VERIFY_REPAIR repairs the WAL and the shared page, under the writer
 * lock, each step durable before the next:
 *   - a torn tail is truncated;
 *   - a damaged segment header is rewritten from the file name and the
 *     sequence numbers, keeping the records after it;
 *   - a damaged or inconsistent shared page is rebuilt from the files;
 *   - when committed data is lost (damage followed by valid records, a
 *     gap in the sequence numbers between segments, a log shorter than
 *     the committed end the page published), every whole batch before the
 *     damage is kept and the rest of the log is cut: first copied into
 *     DIR/lost+found/ (never read or removed by the library), then a new
 *     manifest committed, the segment truncated, later segments removed.
 *     The report names the lost sequence numbers and the copy.
 * What was repaired is reported as repaired and is not damage: the result
 * is 0 when nothing else was found.  Lost committed data, and damage that
 * is not repaired (the snapshot, the index, the MANIFEST), are
 * KYRO_EDAMAGED.  A store whose LOCK this process cannot open for writing
 * is checked without the lock, and nothing in it is repaired.
 */
typedef void (*kyro_report_fn)(void *arg, const char *file, uint64_t offset,
			       const char *text);
#define KYRO_VERIFY_REPAIR 0x1
#define KYRO_VERIFY_DEEP 0x2 /* also: every key inside its index window,
			      * and every block and link of the vector
			      * index (the snapshot's vectors file is
			      * checked whole either way) */
int kyro_verify(const char *dir, unsigned flags, kyro_report_fn report,
		void *arg);

#ifdef __cplusplus
}
#endif
#endif /* KYRO_H */
