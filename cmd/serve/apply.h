/*
 * apply.h - a replica applies the primary's changes to its store, with
 * the primary's sequence numbers, from the binary pages of GET
 * /v1/replicate (primary.c has the layout), which carry every op as the
 * feed reads it, and from the events of GET /v1/subscribe whose JSON
 * holds their batch exactly.  A page is applied as its bytes arrive, in
 * pieces of any size: a change cut by a piece's end is gathered (one
 * change at most is held), the others are applied where they lie.  An
 * event is read whole before any of its changes is applied.
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

/* The batches of an SSE event of /v1/subscribe larger than this many
 * changes are read from a page instead. */
#define EVENT_MAX 64

/* Apply the batch of a /v1/subscribe event, DATA (LEN bytes: the JSON
 * after "data: ") to the open local batch, whole: 0 when applied, or
 * when the store holds it already; 1 when it cannot be taken from the
 * event (not the batch due next, a value not UTF-8, a batch over
 * EVENT_MAX changes, anything unexpected), and nothing was applied: the
 * caller reads a page; -1 when applying failed (A->err set). */
int apply_event(struct applier *a, const char *data, size_t len);

/* Discard the open local batch, if any. */
void apply_abort(struct applier *a);

/* Free what A holds (not the handle). */
void apply_free(struct applier *a);

#endif
