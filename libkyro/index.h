/* index.h - the store's side of the learned index: build and commit. */
#ifndef KYRO_INDEX_H
#define KYRO_INDEX_H

#include "handle.h"

/* Train an index over snapshot S and write it durably as rmi-ID.idx.
 * ST may be NULL. */
int kyro__index_write(char *msg, const char *dir, const struct snap *s,
		      uint64_t id, const struct kyro_rmi_params *p,
		      struct kyro_rmi_stats *st);

/* Commit index ID as serving snapshot SNAP_GEN, provided the manifest is
 * still generation GEN (kyro__db_commit()). */
int kyro__index_commit(kyro_db *db, uint64_t gen, uint64_t snap_gen,
		       uint64_t id);

#endif
