/*
 * apply.h - a replica applies the primary's changes to its store, with
 * the primary's sequence numbers, from the binary pages of GET
 * /v1/replicate (primary.c has the layout), which carry every op as the
 * feed reads it.  A page is applied as its bytes arrive, in pieces of
 * any size: a change cut by a piece's end is gathered (one change at
 * most is held), the others are applied where they lie.
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
	float *vbuf;              /* a vector change, aligned */
	size_t vcap;
	/* the page being received */
	int format;               /* 1 or 2 (primary.c) */
	int want_hdr, in_batch, ended;
	uint64_t page_next, page_last; /* its header's or end record's */
	unsigned char *part;      /* a record cut by a piece's end */
	size_t part_len, part_need, part_cap;
	char err[512];
};

/* A page of FORMAT begins. */
void apply_page_begin(struct applier *a, int format);
/* Apply the page's next N bytes.  Returns 0, or -1 with A->err set. */
int apply_bytes(struct applier *a, const unsigned char *p, size_t n);
/* The page's bytes are all in: check that it ended whole, where it said
 * it would; *LAST gets the primary's last commit as the page saw it.
 * Returns 0, or -1 with A->err set. */
int apply_page_end(struct applier *a, uint64_t *last);

/* Commit the open local batch, if any; *LAST gets the store's last
 * sequence number.  Returns 0, or -1 with A->err set. */
int apply_commit(struct applier *a, uint64_t *last);

/* Discard the open local batch, if any. */
void apply_abort(struct applier *a);

/* Free what A holds (not the handle). */
void apply_free(struct applier *a);

#endif
