/*
 * primary.h - what every kyro-serve serves its read replicas (replica.h):
 * GET /v1/image, an image of the current snapshot, and GET
 * /v1/replicate, the change feed in binary pages for catching up.
 */
#ifndef KYRO_SERVE_PRIMARY_H
#define KYRO_SERVE_PRIMARY_H

#include "http.h"

/* The binary page of GET /v1/replicate (primary.c has the layout):
 * format 2 is changes, then an end record; format 1 a header, then
 * changes. */
#define PAGE_HDR 16        /* u64 next sequence number, u64 last committed */
#define PAGE_CHANGE 32     /* a change's fixed part; the value follows */
#define PAGE_DELETE 0xffffffffu /* value length of a delete */
#define PAGE_END 255       /* the op of format 2's end record */

void primary_init(const struct serve_cfg *cfg);
void primary_image(struct req *r);
void primary_replicate(struct req *r);
/* The store was replaced (a replica's bootstrap): drop the feeds kept
 * for following replicas, which read the old files. */
void primary_replaced(void);

#endif
