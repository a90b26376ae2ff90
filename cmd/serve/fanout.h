/*
 * fanout.h - the newest batch events of /v1/subscribe, encoded once and
 * shared by every subscriber that has caught up.
 *
 * The feed watcher (feed.c) reads each commit once and publishes it here
 * as a chunk: one batch's whole SSE event, immutable, counted by
 * references.  A subscriber whose next sequence number starts a chunk in
 * the window copies that chunk's bytes instead of reading and encoding
 * the batch itself; one that is not in the window (behind it, or the
 * window not live) reads its own kyro_feed, as before.  The window keeps
 * the newest chunks up to a count and a byte cap; a subscriber holds a
 * reference to at most one chunk, the one it is sending, so a slow one
 * pins no more than that.
 */
#ifndef KYRO_SERVE_FANOUT_H
#define KYRO_SERVE_FANOUT_H

#include <stddef.h>
#include <stdint.h>

struct fan_chunk {
	uint64_t first;   /* the batch's first sequence number */
	uint64_t next;    /* its last + 1: where the next chunk starts */
	uint64_t changes;
	size_t len;
	int refs;
	struct fan_chunk *gone; /* fanout.c's, as it leaves the window */
	char bytes[];
};

/* A chunk holding a copy of BYTES, one reference (the caller's), or NULL
 * when out of memory. */
struct fan_chunk *fan_chunk_new(uint64_t first, uint64_t next,
				uint64_t changes, const void *bytes,
				size_t len);
/* Drop a reference; NULL is accepted. */
void fan_put(struct fan_chunk *c);

/* Append C (the caller's reference passes to the window).  C must start
 * where the window ends (else the window restarts at C); the oldest
 * chunks leave past the caps. */
void fan_publish(struct fan_chunk *c);
/* Empty the window, live, its next chunk to start at NEXT: the watcher's
 * feed moved there, and what it skipped is not in the window. */
void fan_restart(uint64_t next);
/* Empty the window and mark it not live: the watcher cannot read the
 * feed, so subscribers must read their own. */
void fan_stall(void);

/* A reference to the chunk starting at POS, or NULL.  With NULL,
 * *CAUGHT_UP says whether POS is where the live window's next chunk
 * will start: nothing newer is committed that the watcher has read. */
struct fan_chunk *fan_get(uint64_t pos, int *caught_up);

#endif
