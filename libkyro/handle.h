/*
 * handle.h - what the operations (compact.c, index.c, verify.c) may ask of
 * a kyro_db handle.  The handle itself (struct kyro_db, db.h) belongs to
 * db.c, view.c and writer.c; everyone else goes through this header, so a
 * change to the handle's fields never reaches past those three files.
 */
#ifndef KYRO_HANDLE_H
#define KYRO_HANDLE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "manifest.h"
#include "rmi.h"
#include "snapshot.h"

/* A WAL segment mapped by a reader. */
struct seg_map {
	uint64_t id;
	uint64_t first_seq;
	const unsigned char *base;
	size_t maplen;
	uint64_t applied; /* records before this offset are in the delta */
	uint64_t dev, ino; /* the file mapped: repair may put another in
			    * its place, never cut committed data in it */
	char path[PATH_MAX];
};

/* Map segment ID of DIR; the mapping covers the whole file. */
int kyro__seg_map_open(char *msg, struct seg_map *s, const char *dir,
		       uint64_t id);
void kyro__seg_map_close(struct seg_map *s);

/* The handle's message buffer (KMSG_MAX bytes) and data directory. */
char *kyro__db_msg(kyro_db *db);
const char *kyro__db_dir(const kyro_db *db);
/* Damage a writer or reader stops at: add to the message what clears
 * it (for KYRO_ECORRUPT; RC is returned). */
int kyro__needs_repair(kyro_db *db, int rc);

/* ---- the commit point (writer.c) ---- */

/* Where the log ended when the writer lock was taken. */
struct db_tail {
	uint64_t last_seq; /* the last committed record's sequence number */
	uint64_t end;      /* the committed end of the last segment */
};

/* A manifest edit: change *M (the manifest as it is now, generation
 * checked) and return 0, or return an error to refuse the commit.  An
 * edit that leaves *M as it was commits nothing. */
typedef int (*db_edit_fn)(void *arg, struct manifest *m,
			  const struct db_tail *tail);

/*
 * The one way a handle changes the manifest.  Under the writer lock, after
 * checking the log (kyro__db_writer_prepare()), EDIT is applied to the manifest
 * as it is, which must still be generation EXPECT_GEN: the generation the
 * caller read and based its work on.  Any other generation means another
 * commit came in between; the commit is refused with KYRO_EBATCH and
 * nothing is touched, so the caller may read the manifest again and
 * retry.  The edited manifest is written as generation EXPECT_GEN + 1 and
 * published to readers.
 *
 * An edit that moves wal_last on by one is a rotation: the writer's
 * segment is made durable (a writer syncing on a timer will not touch it
 * again), the new segment created to start after the last committed
 * record, and, once the manifest names it, the writer reopened there.
 * WHAT names the operation in messages ("snapshot", "index").
 */
int kyro__db_commit(kyro_db *db, const char *what, uint64_t expect_gen,
		    db_edit_fn edit, void *arg);

/* For snapshots and index builds: check DB may write, then take
 * SNAPSHOT.lock (waiting for a running one); *FD holds it until closed.
 * WHAT names the operation in messages. */
int kyro__db_maintenance_lock(kyro_db *db, const char *what, int *fd);
/* Remove the files that the manifest this handle last committed does not
 * name (not MANIFEST.tmp: that is the writer lock's, which the caller does
 * not hold), except the folded WAL segments that the handle's retention
 * (kyro_set_retain()) keeps as the change feed's history.  Best effort:
 * garbage left is removed next time. */
void kyro__db_collect_garbage(kyro_db *db);

/* ---- vectors (vec_store.c) ---- */
struct kyro_vec_params;
struct kyro__vstore;
/* The graph parameters kyro_set_vec_params() set on DB into *P: 1, or 0
 * when none were set. */
int kyro__db_vec_params(kyro_db *db, struct kyro_vec_params *p);

/* ---- what the view serves (view.c) ---- */

/* The view as of its last refresh.  Borrowed: valid until the next call
 * on the handle. */
struct db_served {
	const struct snap *snap;       /* NULL: no snapshot yet */
	const struct kyro__rmi *rmi;   /* NULL: binary search */
	/* Not NULL: an index whose header holds, not loaded yet (view.c):
	 * what its header says. */
	const struct kyro__rmi_info *rmi_head;
	const unsigned char *rmi_img;  /* the index file's mapping, or NULL */
	size_t rmi_len;
	int rmi_refused;               /* an index exists but was refused */
	const char *rmi_why;           /* why there is no index in use */
	uint64_t rmi_gen;
	int simd;                      /* the probe level asked for, or -1 */
	const struct kyro__vstore *vs; /* the snapshot's vectors and graph */
};
/* Refresh the view and describe it; with LOAD, load an index that is
 * waiting for lookups to pay for it first. */
int kyro__db_view_served(kyro_db *db, int load, struct db_served *out);
/* Whether the handle found no store yet (an empty directory). */
int kyro__db_view_empty(const kyro_db *db);

#endif
