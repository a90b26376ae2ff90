/* snapshot.h - immutable sorted snapshots: snap-G.bin and snap-G.data. */
#ifndef KYRO_SNAPSHOT_H
#define KYRO_SNAPSHOT_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "kyro.h"
#include "rmi.h" /* kyro__lower_bound_binary() */

#define SNAP_VERSION 2
#define SNAP_BIN_HDR 128
#define SNAP_DATA_HDR 32
/* Version 2 checks the files in blocks of this size (see snapshot.c). */
#define SNAP_BLOCK_SHIFT 12
#define SNAP_BLOCK ((uint64_t)1 << SNAP_BLOCK_SHIFT)

#define SNAP_BIN_MAGIC "KYROSNAP"
#define SNAP_DATA_MAGIC "KYRODATA"

enum snap_file { SNAP_BIN, SNAP_DATA };

/* Where the payload-offset array of N keys starts in the .bin file. */
static inline uint64_t snap_offs_at(uint64_t n)
{
	return SNAP_BIN_HDR + ((8 * n + 63) & ~(uint64_t)63);
}

/* Where the .bin file's block table starts: the end of the offsets. */
static inline uint64_t snap_table_at(uint64_t n)
{
	return snap_offs_at(n) + 8 * (n + 1);
}

/* The number of blocks of LEN bytes. */
static inline uint64_t snap_nblocks(uint64_t len)
{
	return (len + SNAP_BLOCK - 1) >> SNAP_BLOCK_SHIFT;
}

/* Blocks of a file remembered in a list before a bitmap is made for them:
 * a process that looks up a few keys then never maps, faults in (each
 * page twice, read then written) and unmaps a bitmap that grows with the
 * snapshot, which at 100M keys cost it more than its lookups. */
#define SNAP_FEW 16

struct snap {
	uint64_t gen;
	uint64_t n;
	uint64_t last_seq;
	uint64_t data_size;
	/* The .bin header's checksum: the snapshot's identity, to which
	 * its learned index is bound. */
	uint64_t hdr_sum;
	const unsigned char *bin;
	size_t bin_len;
	const unsigned char *data;
	size_t data_len;
	const uint64_t *keys; /* n sorted keys, 64-byte aligned */
	const uint64_t *offs; /* n + 1 payload offsets into data */
	uint32_t version;
	/* Per file (enum snap_file): the block checksums (version 2), the
	 * number of blocks they cover, and a bitmap of the blocks verified
	 * since open.  A version 1 snapshot is verified whole at open, so
	 * its bitmaps start full. */
	const unsigned char *sums[2];
	uint64_t blocks[2];
	uint64_t *ok[2];     /* NULL until more than SNAP_FEW were verified */
	size_t ok_mapped[2]; /* bytes of a bitmap mapped lazily; 0: malloc */
	uint64_t few[2][SNAP_FEW]; /* the blocks verified while OK is NULL */
	unsigned nfew[2];
	/* The files, kept open (owned when OWNS_FDS) so that a young
	 * handle reads headers, checksum entries and the blocks it checks
	 * but does not use with pread, not through the mappings: see
	 * snapshot.c, "Young handles". */
	int fd[2];
	int owns_fds;
	char bin_path[PATH_MAX];
	char data_path[PATH_MAX];
};

/* Map snapshot GEN of DIR and check what costs O(1): headers, sizes, the
 * generation and key count against the manifest (NKEYS), first and last
 * offsets.  A version 2 snapshot's blocks are verified as they are first
 * used (snap_check()); a version 1 snapshot's three array checksums are
 * verified here, once.  Per-key checks are kyro_verify()'s. */
int kyro__snap_open(char *msg, struct snap *s, const char *dir, uint64_t gen,
		    uint64_t nkeys);
void kyro__snap_close(struct snap *s);

/* Verify block B of file F against its checksum and remember it;
 * KYRO_ECORRUPT with a message naming the file and offset when it fails.
 * B must be below S->blocks[F]. */
int kyro__snap_check_block(char *msg, const struct snap *s, enum snap_file f,
			   uint64_t b);

/* Is block B of file F in the bitmap of verified blocks?  (One it does
 * not hold yet may be in S->few: kyro__snap_check_block() looks.) */
static inline int snap_marked(const struct snap *s, enum snap_file f,
			      uint64_t b)
{
	const uint64_t *ok = s->ok[f];
	return ok && (ok[b >> 6] >> (b & 63) & 1);
}

/* Verify every block of file F holding bytes [OFF, OFF + LEN), which must
 * lie before the file's checksum table.  A verified block costs one bit
 * test; only the first use of a block hashes it. */
static inline int snap_check(char *msg, const struct snap *s,
			     enum snap_file f, uint64_t off, uint64_t len)
{
	if (len == 0)
		return 0;
	for (uint64_t b = off >> SNAP_BLOCK_SHIFT,
		      e = (off + len - 1) >> SNAP_BLOCK_SHIFT;
	     b <= e; b++) {
		if (!snap_marked(s, f, b)) {
			int rc = kyro__snap_check_block(msg, s, f, b);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* The first and last keys (0 and 0 when there are none), unverified,
 * read with pread by a young handle (see snapshot.c): for checking that
 * an index names this snapshot, on which no answer depends. */
int kyro__snap_end_keys(char *msg, const struct snap *s, uint64_t *first,
			uint64_t *last);

/* Verify every block of both files (those not verified yet). */
int kyro__snap_check_all(char *msg, const struct snap *s);

/* Verify the block holding the aligned u64 at byte OFF of file F: it
 * never straddles two blocks, so the fast path is one bit test. */
static inline int snap_check_u64(char *msg, const struct snap *s,
				 enum snap_file f, uint64_t off)
{
	uint64_t b = off >> SNAP_BLOCK_SHIFT;
	if (__builtin_expect(snap_marked(s, f, b), 1))
		return 0;
	return kyro__snap_check_block(msg, s, f, b);
}

/* Verify the block holding key I (I < n). */
static inline int snap_check_key(char *msg, const struct snap *s, uint64_t i)
{
	return snap_check_u64(msg, s, SNAP_BIN, SNAP_BIN_HDR + 8 * i);
}

/* The lower bound of KEY by a binary search that verifies every key it
 * reads; for when a search over unverified keys was misled. */
int kyro__snap_search_verified(char *msg, const struct snap *s, uint64_t key,
			       uint64_t *pos);

/* *POS is where some search (learned index, binary search over
 * unverified keys) put KEY's lower bound.  Verify the two keys around it
 * and check that they bracket KEY: keys[*POS - 1] < KEY <= keys[*POS].
 * Genuine neighbours of a genuine, strictly ascending array make *POS the
 * true lower bound however it was found, so damage elsewhere that misled
 * the search cannot give a wrong answer.  When they do not bracket KEY,
 * search again verifying every key (kyro__snap_search_verified). */
static inline int snap_locate(char *msg, const struct snap *s, uint64_t key,
			      uint64_t *pos)
{
	uint64_t i = *pos, n = s->n;
	if (i <= n) {
		int rc = 0;
		if (i > 0)
			rc = snap_check_key(msg, s, i - 1);
		if (!rc && i < n)
			rc = snap_check_key(msg, s, i);
		if (rc)
			return rc;
		if ((i == 0 || s->keys[i - 1] < key) &&
		    (i == n || key <= s->keys[i]))
			return 0;
	}
	return kyro__snap_search_verified(msg, s, key, pos);
}

/* The value of entry I; KYRO_ECORRUPT (with a message) when its payload
 * reference is out of bounds, so a damaged file never leads to a read
 * outside the mapping. */
static inline int snap_value(const struct snap *s, uint64_t i,
			     const void **val, size_t *len)
{
	uint64_t a = s->offs[i], b = s->offs[i + 1];
	if (a > b || b > s->data_size || b - a > KYRO_MAX_VALUE ||
	    a < SNAP_DATA_HDR)
		return KYRO_ECORRUPT;
	*val = s->data + a;
	*len = (size_t)(b - a);
	return 0;
}

/* KYRO_ECORRUPT with a message: the payload reference of entry I (of
 * KEY) is out of bounds. */
int kyro__snap_bad_ref(char *msg, const struct snap *s, uint64_t i,
		       uint64_t key);

/* The value of entry I (KEY, for the message) with its two offsets and
 * its payload bytes verified: KYRO_ECORRUPT with a message naming the
 * file and offset otherwise. */
static inline int snap_get(char *msg, const struct snap *s, uint64_t i,
			   uint64_t key, const void **val, size_t *len)
{
	uint64_t at = (const unsigned char *)(s->offs + i) - s->bin;
	int rc = snap_check_u64(msg, s, SNAP_BIN, at);
	if (!rc)
		rc = snap_check_u64(msg, s, SNAP_BIN, at + 8);
	if (rc)
		return rc;
	if (snap_value(s, i, val, len))
		return kyro__snap_bad_ref(msg, s, i, key);
	return snap_check(msg, s, SNAP_DATA, s->offs[i], *len);
}

/* Check every byte: block checksums (reporting each bad block), key
 * order, payload bounds. */
int kyro__snap_verify(const struct snap *s, kyro_report_fn report, void *arg);

/* Writing a snapshot: keys must come in ascending order. */
struct snap_writer {
	const char *dir;
	uint64_t gen;
	int fd_data;
	char bin_tmp[PATH_MAX], data_tmp[PATH_MAX];
	unsigned char *img;     /* the .bin file's bytes, room for CAP keys */
	uint64_t img_len;       /* its length once sealed */
	uint64_t *keys, *offs;  /* in the image */
	uint64_t n, cap;
	int sealed;
	unsigned char *buf;
	size_t buflen;
	uint64_t data_pos;
	uint64_t wb_done; /* payload bytes handed to writeback so far */
	struct snap_sums *sums; /* block checksums of the .data file */
};

int kyro__snap_writer_open(char *msg, struct snap_writer *w, const char *dir,
			   uint64_t gen, uint64_t cap_hint);
/* Before the first key is added, the room made for the keys and offsets
 * (*LEN bytes, at least 16 per key of CAP_HINT, 8-byte aligned) is free
 * for the caller's use: scratch already mapped, which the writer then
 * overwrites. */
void *kyro__snap_writer_scratch(struct snap_writer *w, size_t *len);
int kyro__snap_writer_add(char *msg, struct snap_writer *w, uint64_t key,
			  const void *val, size_t len);
/* End the payloads and lay out the index file in memory; after this no
 * key can be added.  LAST_SEQ goes into the header. */
int kyro__snap_writer_seal(char *msg, struct snap_writer *w, uint64_t last_seq);
/* Once sealed: S describes the snapshot being written, its key array and
 * block table in the writer's memory, its bitmaps fresh (every key block
 * is verified again on use), for building its index while the files are
 * written.  S holds no payloads (data is NULL).  Valid until the writer
 * is aborted; release with kyro__snap_view_release(), never kyro__snap_close().
 */
int kyro__snap_writer_view(char *msg, const struct snap_writer *w,
			   struct snap *s);
void kyro__snap_view_release(struct snap *s);
/* Seal (unless sealed; LAST_SEQ is then ignored), write the index file,
 * fsync both, rename both into place and fsync the directory; *BYTES
 * gets the two files' size. */
int kyro__snap_writer_finish(char *msg, struct snap_writer *w,
			     uint64_t last_seq, uint64_t *bytes);
/* Drop the temporary files; safe after finish (it then does nothing but
 * free memory). */
void kyro__snap_writer_abort(struct snap_writer *w);

#endif
