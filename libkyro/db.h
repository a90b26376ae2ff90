/*
 * db.h - the kyro_db handle, private to its three owners: db.c (opening,
 * closing, messages, counters), view.c (the read side) and writer.c
 * (batches and the commit point).  Every other module goes through
 * handle.h.
 */
#ifndef KYRO_DB_H
#define KYRO_DB_H

#include <limits.h>
#include <stdint.h>

#include "delta.h"
#include "fsio.h"
#include "internal.h"
#include "manifest.h"
#include "rmi.h"
#include "shared.h"
#include "snapshot.h"
#include "vec_store.h"
#include "handle.h"
#include "wal.h"

/* What a reader sees: one manifest's snapshot plus the WAL after it. */
struct view {
	int loaded;
	int empty;        /* no store yet: every key is absent */
	struct manifest man;
	int have_snap;
	struct snap snap;
	struct seg_map *segs;
	size_t nsegs;
	size_t cur;       /* segments before this one are fully applied */
	struct delta delta;
	/* Vectors written since the snapshot: key -> the VECTOR record, or
	 * a tombstone (a DELETE); the store's dimension, from the snapshot
	 * or the first VECTOR record (0: none yet); how many vector
	 * records and deletes the delta applied. */
	struct delta vdelta;
	uint32_t vdim;
	uint64_t vec_ops;
	struct kyro__vstore vs; /* the snapshot's vectors and graph */
	struct kyro__rmi *rmi; /* NULL: binary search */
	const unsigned char *rmi_img; /* the index file's bytes */
	size_t rmi_len;
	size_t rmi_copy; /* bytes of rmi_img's copy on huge pages; 0: mapped */
	int rmi_pending;   /* its header holds; loaded when lookups pay */
	uint32_t rmi_lazy; /* lookups left until then */
	struct kyro__rmi_info rmi_head; /* what the header says */
	/* While pending (only then): the index file, open, and its header,
	 * which single lookups read as a hint (kyro__rmi_hint()). */
	int rmi_fd;
	unsigned char rmi_hdr[RMI_HEAD_SIZE];
	int rmi_refused;          /* an index exists but failed to load */
	char rmi_why[KMSG_MAX + 64]; /* why there is no index in use */
	uint64_t last_seq;
	uint64_t seen_change;
};

struct kyro_db {
	char dir[PATH_MAX];
	unsigned flags;
	int sync;
	int simd;         /* KYRO_SIMD_* level for every index, -1: default */
	int failed;
	int in_batch;
	struct shared sh;
	struct view v;
	struct wal_writer w;
	int wopen;
	/* The live WAL below the writer's committed end was taken on the
	 * shared page's word, not read (KYRO_MAINTENANCE): a batch reads it
	 * all first. */
	int w_unread;
	struct manifest wman; /* the manifest as the writer saw it, locked */
	/* The file wman was read from, held open (-1: none), and what
	 * fstat said of it then: writer_unchanged() in writer.c. */
	int wman_fd;
	struct fs_id wman_id;
	uint32_t batch_vdim;  /* the open batch's vector dimension, 0: none */
	struct vec_state *vec; /* vec_store.c's, NULL until first used */
	uint64_t vepoch;      /* bumped whenever the view is dropped */
	/* Retention of folded WAL segments (kyro_set_retain()); both 0 and
	 * retain_set 0: the defaults. */
	int retain_set;
	uint64_t retain_bytes, retain_seconds;
	struct kyro_stats st; /* see kyro_stats(); bumped with COUNT() */
	/* Of every index this handle has used: the lookups add to it
	 * (relaxed stores), kyro_stats() reads it, never the index. */
	struct kyro__rmi_counters rmi_ctr;
	char msg[KMSG_MAX];
};

/* One writer thread, any reader thread: a relaxed store is enough, and
 * compiles to a plain add, not a locked one. */
#define COUNT(db, field, n)                                                  \
	__atomic_store_n(&(db)->st.field, (db)->st.field + (n),              \
			 __ATOMIC_RELAXED)

/* db.c */
/* Is the directory empty but for files a writer creates first? */
int kyro__dir_is_fresh(const char *dir);

/* vec_store.c */
void kyro__vec_state_free(kyro_db *db);

/* view.c */
/* Bring the view up to date: the one atomic load of the fast path, and
 * the catch-up or reload when another process committed. */
int kyro__db_view_refresh(kyro_db *db);
/* Load the view from the current manifest, starting over while a
 * snapshot removes the files under it. */
int kyro__view_load(kyro_db *db);
void kyro__view_free(kyro_db *db);

/* writer.c */
/* Append one record (WAL_PUT, WAL_DEL, WAL_VEC) in the open batch, or as
 * a batch of one. */
int kyro__db_write_rec(kyro_db *db, int type, uint64_t key, const void *val,
		       size_t len, uint64_t *seq);
/* Under the writer lock: read the manifest and find the committed end of
 * the last WAL segment (from the shared page when it is trustworthy, else
 * by checking every live segment), open the writer there, truncating a
 * torn tail. */
int kyro__db_writer_prepare(kyro_db *db);
/* Before a new handle's first batch, without the lock: check what the
 * shared page says is committed, so the lock is held only for the rest. */
void kyro__writer_precheck(kyro_db *db);
/* Publish the writer's committed end and WMAN's generation. */
void kyro__db_publish(kyro_db *db);

#endif
