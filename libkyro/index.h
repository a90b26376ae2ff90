/* index.h - the store's side of the learned index: load, build, warm. */
#ifndef KYRO_INDEX_H
#define KYRO_INDEX_H

#include "db.h"

/* Load the index the manifest names for the view's snapshot, unless
 * KYRODB_INDEX=binary.  Never fails the view: an index that cannot be
 * used is refused with its reason recorded, and lookups binary-search. */
void index_load(kyro_db *db);
/* Drop the view's index, keeping its counters in the handle's totals. */
void index_unload(kyro_db *db);

/* Train an index over snapshot S and write it durably as rmi-ID.idx. */
int index_write(char *msg, const char *dir, const struct snap *s,
		uint64_t id, const struct kyro_rmi_params *p,
		struct kyro_rmi_stats *st);

/* Under the writer lock: commit index ID as serving snapshot SNAP_GEN. */
int index_commit(kyro_db *db, uint64_t snap_gen, uint64_t id);

#endif
