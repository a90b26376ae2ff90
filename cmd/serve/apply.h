/*
 * apply.h - a replica applies the primary's changes to its store, with
 * the primary's sequence numbers, from either form the primary sends: a
 * binary page of GET /v1/replicate, or one /v1/subscribe event (JSON).
 *
 * Changes go into one open local batch, begun with kyro_batch_begin_at()
 * at the first change's number, so that the store refuses a gap or a
 * duplicate; every change's number is checked against the one due.  The
 * caller commits when it has applied whole batches (apply_commit()).  Any
 * failure is final for the stream and leaves F->err saying why: a change
 * whose op this build does not know is such a failure, never skipped.
 */
#ifndef KYRO_SERVE_APPLY_H
#define KYRO_SERVE_APPLY_H

#include <stddef.h>
#include <stdint.h>

#include "kyro.h"

struct applier {
	kyro_db *db;
	uint64_t next;            /* the sequence number due next */
	int open;                 /* a local batch is open */
	uint64_t batches, changes; /* the primary's, in the open batch */
	char err[512];
};

/* Apply a /v1/replicate page's changes (LEN bytes after its header).
 * Returns 0, or -1 with A->err set. */
int apply_page(struct applier *a, const unsigned char *p, size_t len);

/* Apply one /v1/subscribe event's data (a batch in JSON).  A batch the
 * store already holds is skipped whole.  Returns 0, or -1. */
int apply_event(struct applier *a, const char *data, size_t len);

/* Commit the open local batch, if any; *LAST gets the store's last
 * sequence number.  Returns 0, or -1 with A->err set. */
int apply_commit(struct applier *a, uint64_t *last);

/* Discard the open local batch, if any. */
void apply_abort(struct applier *a);

#endif
