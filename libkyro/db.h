/* db.h - the kyro_db handle, shared by db.c, compact.c and verify.c. */
#ifndef KYRO_DB_H
#define KYRO_DB_H

#include <limits.h>
#include <stdint.h>

#include "delta.h"
#include "internal.h"
#include "manifest.h"
#include "rmi.h"
#include "shared.h"
#include "snapshot.h"
#include "wal.h"

/* A WAL segment mapped by a reader. */
struct seg_map {
	uint64_t id;
	uint64_t first_seq;
	const unsigned char *base;
	size_t maplen;
	uint64_t applied; /* records before this offset are in the delta */
	char path[PATH_MAX];
};

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
	struct kyro_rmi *rmi;     /* NULL: binary search */
	const unsigned char *rmi_img;
	size_t rmi_len;
	int rmi_refused;          /* an index exists but failed to load */
	char rmi_why[KMSG_MAX + 64]; /* why there is no index in use */
	uint64_t last_seq;
	uint64_t seen_change;
};

struct kyro_db {
	char dir[PATH_MAX];
	unsigned flags;
	int sync;
	int failed;
	int in_batch;
	struct shared sh;
	struct view v;
	struct wal_writer w;
	int wopen;
	struct manifest wman; /* the manifest as the writer saw it, locked */
	struct kyro_stats st; /* see kyro_stats(); bumped with COUNT() */
	/* Of every index this handle has used: the lookups add to it
	 * (relaxed stores), kyro_stats() reads it, never the index. */
	struct kyro_rmi_counters rmi_ctr;
	char msg[KMSG_MAX];
};

/* One writer thread, any reader thread: a relaxed store is enough, and
 * compiles to a plain add, not a locked one. */
#define COUNT(db, field, n)                                                  \
	__atomic_store_n(&(db)->st.field, (db)->st.field + (n),              \
			 __ATOMIC_RELAXED)

/* Under the writer lock: read the manifest and find the committed end of
 * the last WAL segment (from the shared page when it is trustworthy, else
 * by checking every live segment), open the writer there, truncating a
 * torn tail. */
int db_writer_prepare(kyro_db *db);
/* Bring the view up to date: the one atomic load of the fast path, and
 * the catch-up or reload when another process committed. */
int db_view_refresh(kyro_db *db);
/* For snapshots and index builds: check DB may write, then take
 * SNAPSHOT.lock (waiting for a running one); *FD holds it until closed.
 * WHAT names the operation in messages. */
int db_maintenance_lock(kyro_db *db, const char *what, int *fd);
/* Remove files the manifest M does not name (not MANIFEST.tmp). */
void db_collect_garbage(const char *dir, const struct manifest *m);

/* Publish the writer's committed end and WMAN's generation. */
void db_publish(kyro_db *db);
/* Map segment ID of DIR; the mapping covers the whole file. */
int seg_map_open(char *msg, struct seg_map *s, const char *dir, uint64_t id);
void seg_map_close(struct seg_map *s);

#endif
