/* wal.h - write-ahead log segments: format, scanner, batch writer. */
#ifndef KYRO_WAL_H
#define KYRO_WAL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Segments are written in version 2; version 1 (no VECTOR records) is
 * still read. */
#define WAL_VERSION 2
#define WAL_HDR 48     /* segment header */
#define WAL_REC_HDR 32 /* record header */
#define WAL_PUT 1
#define WAL_DEL 2
#define WAL_COMMIT 3
#define WAL_VEC 4      /* a key's vector: the value is dim float32 */
#define WAL_VEC_MAX_BYTES ((uint32_t)4 << 16) /* 65536 dimensions */
/* Where kyro-verify --repair keeps copies of the WAL bytes it cuts; no
 * other code writes, reads or removes anything in it. */
#define WAL_LOSTFOUND "lost+found"

/* A record inside a mapped segment, already validated by kyro__wal_scan(). */
struct wal_rec {
	uint8_t type;
	uint32_t len;
	uint64_t seq;
	uint64_t key;
	const unsigned char *val;
};

/* Decode the (validated) record at BASE+OFF; return the next offset. */
static inline uint64_t wal_rec_at(const unsigned char *base, uint64_t off,
				  struct wal_rec *r)
{
	const unsigned char *p = base + off;
	uint32_t len;
	memcpy(&len, p + 8, 4);
	r->len = len;
	r->type = p[12];
	memcpy(&r->seq, p + 16, 8);
	memcpy(&r->key, p + 24, 8);
	r->val = p + WAL_REC_HDR;
	return off + WAL_REC_HDR + ((len + 7u) & ~7u);
}

/* What a scan found.  STATUS is 0 (clean to the end), KYRO_ETORN (an
 * incomplete record or batch ends the segment: END is where it starts) or
 * KYRO_ECORRUPT (BAD_OFF is the bad record, WHY says what is wrong). */
struct wal_scan {
	uint64_t end;      /* end of the last complete batch */
	uint64_t last_seq; /* its last sequence number */
	uint64_t records;  /* put/delete records in complete batches */
	uint64_t batches;
	int status;
	uint64_t bad_off;
	char why[160];
};

void kyro__wal_header_encode(unsigned char *buf, uint64_t seg,
			     uint64_t first_seq);
/* Check the header of segment SEG mapped at BASE (LEN bytes). */
int kyro__wal_header_check(char *msg, const unsigned char *base, uint64_t len,
			   const char *path, uint64_t seg, uint64_t *first_seq);
/* Scan [START, LEN) of segment SEG; the first record must carry NEXT_SEQ. */
void kyro__wal_scan(const unsigned char *base, uint64_t len, uint64_t seg,
		    uint64_t start, uint64_t next_seq, struct wal_scan *r);
/* Each record a scan passes (the COMMITs too), with its file offset;
 * records of a batch come before the batch is known to be complete.  A
 * non-zero return stops the scan and is its result. */
typedef int (*kyro__wal_rec_fn)(void *arg, uint64_t off,
				const struct wal_rec *r);

/* The same scan of the segment open as FD (LEN bytes), read with pread
 * through a small buffer rather than through a mapping: on a virtual
 * machine the first touch of every mapped page can trap to the host,
 * which costs several times the copy.  For a pass that reads each byte
 * once; FN (when not NULL) sees every record passed, and the record's
 * bytes only during the call.  Returns 0, an I/O error or what FN
 * returned; the scan's answer is in R. */
int kyro__wal_scan_fd(char *msg, int fd, const char *path, uint64_t len,
		      uint64_t seg, uint64_t start, uint64_t next_seq,
		      kyro__wal_rec_fn fn, void *arg, struct wal_scan *r);
/* The scan of segment SEG at PATH from START, for a reader without the
 * writer lock, past the committed end a writer published (or when none
 * is trusted).  The bytes after the complete batches are the next
 * writer's to cut, and a mapped page past a cut faults (SIGBUS), so this
 * reads with pread, and a file cut under it ends where the reads find
 * it ending.  R as for kyro__wal_scan(); *SIZE gets the file size the
 * answer is for.
 * What lies before R->end is whole batches, safe to read through a
 * mapping: writers cut only after the complete batches (or a batch whose
 * fsync failed, whose writer never published it). */
int kyro__wal_scan_unlocked(char *msg, const char *path, uint64_t seg,
			    uint64_t start, uint64_t next_seq,
			    struct wal_scan *r, uint64_t *size);
/* The same scan, stopping after the first complete batch: END is where it
 * ends (START when there is none, STATUS then saying why).  For readers
 * that hand out one checked batch at a time (feed.c). */
void kyro__wal_scan_batch(const unsigned char *base, uint64_t len,
			  uint64_t seg, uint64_t start, uint64_t next_seq,
			  struct wal_scan *r);

/* Evidence of committed data after damage at OFF: every COMMIT record
 * still valid from OFF on (valid records are stepped over whole) whose
 * seq is above LAST_SEQ bumps *BATCHES and raises *MAX_SEQ. */
void kyro__wal_commits_after(const unsigned char *base, uint64_t len,
			     uint64_t seg, uint64_t off, uint64_t last_seq,
			     uint64_t *batches, uint64_t *max_seq);

/* Retained history: segments that a snapshot folded and the garbage
 * collector kept (writer.c).  *IDS (malloc'd, NULL when *N is 0) gets the
 * id of every segment file in DIR below BELOW, newest first. */
int kyro__wal_list_below(char *msg, const char *dir, uint64_t below,
			 uint64_t **ids, size_t *n);
/* How many of IDS (newest first, from kyro__wal_list_below()) form the
 * unbroken run FIRST-1, FIRST-2, ...: the history that leads up to
 * segment FIRST.  Older ones past a gap are nobody's history. */
size_t kyro__wal_history_len(const uint64_t *ids, size_t n, uint64_t first);

/* Create segment SEG durably (file and directory fsynced), empty. */
int kyro__wal_create(char *msg, const char *dir, uint64_t seg,
		     uint64_t first_seq);

struct wal_writer {
	int fd;
	uint64_t seg;
	uint64_t dev, ino;  /* the file fd holds */
	char path[PATH_MAX];
	uint64_t committed; /* end of the last committed batch */
	uint64_t pos;       /* file offset after the buffered bytes */
	uint64_t next_seq;
	uint64_t batch_count;
	uint32_t version;   /* the segment's format version */
	unsigned char *buf;
	size_t buflen, bufcap;
};

/* Open segment SEG for appending after COMMITTED (truncating anything
 * beyond it: the torn tail of a writer that died; the truncation is made
 * durable when DURABLE).  NEXT_SEQ is the next record's number. */
int kyro__wal_writer_open(char *msg, struct wal_writer *w, const char *dir,
			  uint64_t seg, uint64_t committed, uint64_t next_seq,
			  int durable);
void kyro__wal_writer_close(struct wal_writer *w);
int kyro__wal_append(char *msg, struct wal_writer *w, int type, uint64_t key,
		     const void *val, size_t len, uint64_t *seq);
int kyro__wal_flush(char *msg, struct wal_writer *w);
int kyro__wal_sync(char *msg, struct wal_writer *w);
/* Append the COMMIT record and write it out (no fsync).  The batch is
 * still the writer's to roll back until kyro__wal_mark_committed(): a batch
 * whose fsync fails must be cut off, COMMIT and all, or a process that
 * recovers from the file alone would see it. */
int kyro__wal_commit(char *msg, struct wal_writer *w);
void kyro__wal_mark_committed(struct wal_writer *w);
/* Drop everything after the last commit, in the buffer and the file. */
int kyro__wal_rollback(char *msg, struct wal_writer *w);

#endif
