/* snapshot.h - immutable sorted snapshots: snap-G.bin and snap-G.data. */
#ifndef KYRO_SNAPSHOT_H
#define KYRO_SNAPSHOT_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "kyro.h"
#include "rmi.h" /* kyro_lower_bound_binary() */

#define SNAP_VERSION 1
#define SNAP_BIN_HDR 128
#define SNAP_DATA_HDR 32

struct snap {
	uint64_t gen;
	uint64_t n;
	uint64_t last_seq;
	uint64_t data_size;
	const unsigned char *bin;
	size_t bin_len;
	const unsigned char *data;
	size_t data_len;
	const uint64_t *keys; /* n sorted keys, 64-byte aligned */
	const uint64_t *offs; /* n + 1 payload offsets into data */
	char bin_path[PATH_MAX];
	char data_path[PATH_MAX];
};

/* Map snapshot GEN of DIR and check what costs O(1): headers, sizes, the
 * generation and key count against the manifest (NKEYS), first and last
 * offsets.  Per-key checks are kyro_verify()'s. */
int snap_open(char *msg, struct snap *s, const char *dir, uint64_t gen,
	      uint64_t nkeys);
void snap_close(struct snap *s);


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

/* Check every byte: checksums, key order, payload bounds. */
int snap_verify(const struct snap *s, kyro_report_fn report, void *arg);

/* Writing a snapshot: keys must come in ascending order. */
struct snap_writer {
	const char *dir;
	uint64_t gen;
	int fd_data;
	char bin_tmp[PATH_MAX], data_tmp[PATH_MAX];
	uint64_t *keys, *offs;
	uint64_t n, cap;
	unsigned char *buf;
	size_t buflen;
	uint64_t data_pos;
	uint64_t wb_done; /* payload bytes handed to writeback so far */
	void *hash; /* XXH3 state over the payload region */
};

int snap_writer_open(char *msg, struct snap_writer *w, const char *dir,
		     uint64_t gen, uint64_t cap_hint);
int snap_writer_add(char *msg, struct snap_writer *w, uint64_t key,
		    const void *val, size_t len);
/* Write the index file, fsync both, rename both into place and fsync the
 * directory; *BYTES gets the two files' size. */
int snap_writer_finish(char *msg, struct snap_writer *w, uint64_t last_seq,
		       uint64_t *bytes);
/* Drop the temporary files; safe after finish (it then does nothing but
 * free memory). */
void snap_writer_abort(struct snap_writer *w);

#endif
