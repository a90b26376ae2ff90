/* manifest.h - the commit point of a store: which files are live. */
#ifndef KYRO_MANIFEST_H
#define KYRO_MANIFEST_H

#include <stdint.h>

#define MANIFEST_SIZE 128
#define MANIFEST_VERSION 2
#define MANIFEST_V1_SIZE 96 /* version 1, still read */

struct manifest {
	uint64_t gen;      /* bumped on every commit */
	uint64_t snap_gen; /* 0: no snapshot yet */
	uint64_t snap_seq; /* last sequence number the snapshot holds */
	uint64_t snap_keys;
	uint64_t wal_first; /* live WAL segments: wal_first..wal_last */
	uint64_t wal_last;
	uint64_t rmi_gen;   /* last learned-index file id; never reused */
	uint64_t rmi_snap;  /* snapshot the index serves; the index is live
			     * only while this equals snap_gen */
	uint64_t vec_snap;  /* snap_gen when the snapshot has a vectors
			     * file (vec-SNAPGEN.vec), else 0 */
	uint64_t hnsw_gen;  /* last vector-graph file id (hnsw-ID.idx);
			     * never reused */
	uint64_t hnsw_snap; /* snapshot the graph serves; live only while
			     * this equals snap_gen */
};

void kyro__manifest_encode(const struct manifest *m, unsigned char *buf);
/* Decode and check BUF of LEN bytes; errors name PATH. */
int kyro__manifest_decode(char *msg, const unsigned char *buf, size_t len,
			  const char *path, struct manifest *m);
/* Read DIR/MANIFEST.  ENOENT when there is none. */
int kyro__manifest_read(char *msg, const char *dir, struct manifest *m);
/* The same, leaving the file open in *FD (the caller's to close): while
 * a descriptor holds it, no other file can take its inode number, so a
 * path that still names that inode still names that manifest (it is
 * never written in place). */
int kyro__manifest_read_keep(char *msg, const char *dir, struct manifest *m,
			     int *fd);
/* Replace DIR/MANIFEST atomically (temp, fsync, rename, fsync dir). */
int kyro__manifest_write(char *msg, const char *dir, const struct manifest *m);

#endif
