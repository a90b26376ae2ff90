/*
 * history.h - which history a data directory holds, so that a replica
 * never applies one primary's changes on top of another's copy.
 *
 * Sequence numbers alone cannot tell: two primaries (or a primary and a
 * promoted replica that has since taken writes) both have a sequence
 * number 1000, with different changes behind it.  So every primary names
 * its history with a random ID, a replica records the ID of the history
 * its store copies, and a replica whose ID differs from its primary's
 * bootstraps again, as Redis's PSYNC does when the replication ID differs.
 */
#ifndef KYRO_SERVE_HISTORY_H
#define KYRO_SERVE_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#define HISTORY_ID_LEN 32 /* lowercase hex digits */

/* A primary: read DIR/HISTORY, or make it (a new ID) when it is missing,
 * after removing DIR/FOLLOWS, whose ID stops being true at the first
 * write.  Call once the store exists.  0, or -1 with ERR set. */
int history_init_primary(const char *dir, char *err, size_t errlen);

/* A replica: the ID its store copies, from DIR/FOLLOWS.  0 (ID set), 1
 * when DIR has no FOLLOWS, -1 with ERR set. */
int history_read_follows(const char *dir, char id[HISTORY_ID_LEN + 1],
			 char *err, size_t errlen);

/* Write ID as DIR/FOLLOWS durably (temporary file, fsync, rename, fsync
 * of DIR).  0, or -1 with ERR set. */
int history_write_follows(const char *dir, const char *id, char *err,
			  size_t errlen);

/*
 * The ID says which history a store copies, not how far the copy and the
 * primary agree: a primary restored from a backup or a copy, or one that
 * lost its last commits in a crash under --sync=none, keeps its ID and
 * may number different changes as the replica's.  So a replica that
 * resumes names the sum of the last change it holds, and the primary
 * compares it with its own change of that number.
 *
 * history_change_sum(): DIR's change SEQ summed into *SUM (XXH3 of its
 * number, op, key, length and bytes, all a replica's store copies of it).
 * 0 (*SUM set); HISTORY_GONE when DIR no longer retains it; HISTORY_AHEAD
 * when SEQ is past DIR's last commit; -1 with ERR set.
 */
/* Parse S, 16 hex digits, into *SUM: 1 when it is one, else 0. */
int history_valid_sum(const char *s, uint64_t *sum);
enum { HISTORY_GONE = 1, HISTORY_AHEAD = 2 };
int history_change_sum(const char *dir, uint64_t seq, uint64_t *sum,
		       char *err, size_t errlen);

/* Is S an ID (HISTORY_ID_LEN lowercase hex digits, then nothing)? */
int history_valid(const char *s);

/* The ID this daemon serves: its own as a primary, the one its store
 * copies as a replica ("" until known).  Thread-safe. */
void history_get(char id[HISTORY_ID_LEN + 1]);
void history_set(const char *id);

#endif
