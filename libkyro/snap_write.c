/*
 * snap_write.c - writing a snapshot, in the format snapshot.c states.
 *
 * The .data file is written as its values come, through a buffer; the
 * .bin file is built whole in memory and written last.  Both are written
 * as *.tmp, fsynced, renamed, and the directory fsynced: a manifest names
 * them only after kyro__snap_writer_finish() returns.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "fsio.h"
#include "internal.h"
#include "snapshot.h"

#define DATA_BUFCAP ((size_t)1 << 20)
/* Start writeback every this many bytes (see kyro__fs_writeback). */
#define WRITEBACK_EVERY ((uint64_t)8 << 20)

/* ---- block checksums, as a writer computes them ---- */

struct snap_sums {
	XXH3_state_t *st;
	uint64_t block, fill; /* the block being hashed, its bytes so far */
	uint64_t *v;
	size_t n, cap;
};

static int sums_push(struct snap_sums *ss)
{
	if (ss->n == ss->cap) {
		size_t cap = ss->cap ? 2 * ss->cap : 256;
		uint64_t *v = realloc(ss->v, cap * sizeof *v);
		if (!v)
			return ENOMEM;
		ss->v = v;
		ss->cap = cap;
	}
	ss->v[ss->n++] = XXH3_64bits_digest(ss->st);
	ss->block++;
	ss->fill = 0;
	XXH3_64bits_reset_withSeed(ss->st, ss->block);
	return 0;
}

static int sums_add(struct snap_sums *ss, const void *p, uint64_t len)
{
	const unsigned char *b = p;
	while (len) {
		uint64_t take = SNAP_BLOCK - ss->fill;
		if (take > len)
			take = len;
		XXH3_64bits_update(ss->st, b, (size_t)take);
		ss->fill += take;
		b += take;
		len -= take;
		if (ss->fill == SNAP_BLOCK) {
			int rc = sums_push(ss);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* The last, partial block. */
static int sums_end(struct snap_sums *ss)
{
	return ss->fill ? sums_push(ss) : 0;
}

static void sums_free(struct snap_sums *ss)
{
	if (!ss)
		return;
	XXH3_freeState(ss->st);
	free(ss->v);
	free(ss);
}

static struct snap_sums *sums_new(void)
{
	struct snap_sums *ss = calloc(1, sizeof *ss);
	if (ss && !(ss->st = XXH3_createState())) {
		free(ss);
		return NULL;
	}
	if (ss)
		XXH3_64bits_reset_withSeed(ss->st, 0);
	return ss;
}

/* ---- writing ---- */

/* The writer keeps the whole .bin file as one image in memory, laid out
 * for CAP keys: header, keys, offsets at snap_offs_at(cap), room for the block
 * table.  It goes to disk in one pass, and while it does, a struct snap
 * over it lets the learned index train on the keys (kyro__snap_writer_view).
 * The image is on huge pages: on a virtual machine a 4 KiB page fault can
 * cost 10 us, so 160 MB of them cost more than writing the file. */
static uint64_t image_len(uint64_t cap)
{
	return snap_table_at(cap) + 8 * snap_nblocks(snap_table_at(cap));
}

static int image_alloc(struct snap_writer *w, uint64_t cap)
{
	unsigned char *img = kyro__fs_alloc_huge(image_len(cap));
	if (!img)
		return ENOMEM;
	if (w->img) {
		memcpy(img + SNAP_BIN_HDR, w->keys, 8 * w->n);
		memcpy(img + snap_offs_at(cap), w->offs, 8 * w->n);
		kyro__fs_free_huge(w->img, image_len(w->cap));
	}
	w->img = img;
	w->cap = cap;
	w->keys = (uint64_t *)(img + SNAP_BIN_HDR);
	w->offs = (uint64_t *)(img + snap_offs_at(cap));
	return 0;
}

int kyro__snap_writer_open(char *msg, struct snap_writer *w, const char *dir,
			   uint64_t gen, uint64_t cap_hint)
{
	unsigned char hdr[SNAP_DATA_HDR];
	memset(w, 0, sizeof *w);
	w->dir = dir;
	w->gen = gen;
	w->fd_data = -1;
	int rc = kyro__path_gen(w->bin_tmp, dir, "snap-", gen, ".bin.tmp");
	if (!rc)
		rc = kyro__path_gen(w->data_tmp, dir, "snap-", gen,
				    ".data.tmp");
	if (rc)
		return kyro__fail(msg, rc, "cannot write a snapshot in '%s'",
				  dir);
	w->buf = malloc(DATA_BUFCAP);
	w->sums = sums_new();
	if (image_alloc(w, cap_hint > 1024 ? cap_hint : 1024) || !w->buf ||
	    !w->sums) {
		kyro__snap_writer_abort(w);
		return kyro__fail(msg, ENOMEM, "cannot write a snapshot");
	}
	rc = kyro__fs_open(msg, w->data_tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644,
			   &w->fd_data);
	if (rc) {
		kyro__snap_writer_abort(w);
		return rc;
	}
	/* The header goes out first, outside the buffer. */
	memset(hdr, 0, sizeof hdr);
	memcpy(hdr, SNAP_DATA_MAGIC, 8);
	put_le32(hdr + 8, SNAP_VERSION);
	put_le32(hdr + 12, SNAP_DATA_HDR);
	put_le64(hdr + 16, gen);
	put_le64(hdr + 24, XXH3_64bits(hdr, 24));
	w->data_pos = sizeof hdr;
	if (sums_add(w->sums, hdr, sizeof hdr))
		return kyro__fail(msg, ENOMEM, "cannot write a snapshot");
	return kyro__fs_write_all(msg, w->fd_data, hdr, sizeof hdr,
				  w->data_tmp);
}

void *kyro__snap_writer_scratch(struct snap_writer *w, size_t *len)
{
	KYRO_VERIFY(w->n == 0);
	*len = (size_t)(image_len(w->cap) - SNAP_BIN_HDR);
	return w->keys;
}

/* The block checksums are taken per flushed buffer, not per value: 10M
 * tiny updates cost more than the hashing itself; and the buffer is
 * hashed just before it is written, while it is still in cache. */
static int data_flush(char *msg, struct snap_writer *w)
{
	if (sums_add(w->sums, w->buf, w->buflen))
		return kyro__fail(msg, ENOMEM, "cannot write a snapshot");
	int rc = kyro__fs_write_all(msg, w->fd_data, w->buf, w->buflen,
				    w->data_tmp);
	w->buflen = 0;
	/* Trickle the payload to disk as it is written: a writer's fsync
	 * during a snapshot then does not wait behind hundreds of MB. */
	if (!rc && w->data_pos - w->wb_done >= WRITEBACK_EVERY) {
		kyro__fs_writeback(w->fd_data, w->wb_done,
				   w->data_pos - w->wb_done);
		w->wb_done = w->data_pos;
	}
	return rc;
}

int kyro__snap_writer_add(char *msg, struct snap_writer *w, uint64_t key,
			  const void *val, size_t len)
{
	KYRO_VERIFY(!w->sealed && (w->n == 0 || key > w->keys[w->n - 1]));
	if (w->n == w->cap && image_alloc(w, 2 * w->cap))
		return kyro__fail(msg, ENOMEM, "cannot write a snapshot");
	w->keys[w->n] = key;
	w->offs[w->n] = w->data_pos;
	w->n++;
	w->data_pos += len;
	if (w->buflen + len > DATA_BUFCAP) {
		int rc = data_flush(msg, w);
		if (rc)
			return rc;
		if (len > DATA_BUFCAP) {
			if (sums_add(w->sums, val, len))
				return kyro__fail(msg, ENOMEM,
						  "cannot write a snapshot");
			return kyro__fs_write_all(msg, w->fd_data, val, len,
						  w->data_tmp);
		}
	}
	if (len)
		memcpy(w->buf + w->buflen, val, len);
	w->buflen += len;
	return 0;
}

/* Write LEN bytes at file offset AT in slices, starting writeback after
 * each, as data_flush() does for the payloads. */
static int write_trickled(char *msg, int fd, const void *buf, uint64_t len,
			  uint64_t at, const char *path)
{
	const unsigned char *p = buf;
	for (uint64_t done = 0; done < len;) {
		uint64_t n = len - done < WRITEBACK_EVERY ? len - done
							  : WRITEBACK_EVERY;
		int rc = kyro__fs_write_all(msg, fd, p + done, (size_t)n, path);
		if (rc)
			return rc;
		kyro__fs_writeback(fd, at + done, n);
		done += n;
	}
	return 0;
}

/* Lay the .bin image out for the N keys there are: header, offsets moved
 * down next to the keys (when fewer keys came than the room made for),
 * zero padding, and the block table after the offsets. */
static int seal_bin(struct snap_writer *w, uint64_t last_seq)
{
	unsigned char *h = w->img;
	uint64_t n = w->n, tab = snap_table_at(n);
	w->offs[n] = w->data_pos;
	if (n < w->cap)
		memmove(h + snap_offs_at(n), w->offs, 8 * (n + 1));
	w->offs = (uint64_t *)(h + snap_offs_at(n));
	memset(h + SNAP_BIN_HDR + 8 * n, 0,
	       snap_offs_at(n) - SNAP_BIN_HDR - 8 * n);
	memset(h, 0, SNAP_BIN_HDR);
	memcpy(h, SNAP_BIN_MAGIC, 8);
	put_le32(h + 8, SNAP_VERSION);
	put_le32(h + 12, SNAP_BIN_HDR);
	put_le64(h + 16, w->gen);
	put_le64(h + 24, n);
	put_le64(h + 32, last_seq);
	put_le64(h + 40, w->data_pos);
	put_le64(h + 48, SNAP_BIN_HDR);
	put_le64(h + 56, snap_offs_at(n));
	put_le64(h + 64, tab);
	put_le64(h + 72, snap_nblocks(tab));
	put_le64(h + 80, snap_nblocks(w->data_pos));
	put_le64(h + 120, XXH3_64bits(h, 120));
	/* Blocks are whole but the last: hash them in place, no state. */
	for (uint64_t b = 0; b < snap_nblocks(tab); b++) {
		uint64_t off = b << SNAP_BLOCK_SHIFT;
		uint64_t len = tab - off < SNAP_BLOCK ? tab - off : SNAP_BLOCK;
		put_le64(h + tab + 8 * b,
			 XXH3_64bits_withSeed(h + off, (size_t)len, b));
	}
	w->img_len = tab + 8 * snap_nblocks(tab);
	return 0;
}

static int write_bin(char *msg, struct snap_writer *w)
{
	int fd, rc;
	rc = kyro__fs_open(msg, w->bin_tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644,
			   &fd);
	if (rc)
		return rc;
	rc = write_trickled(msg, fd, w->img, w->img_len, 0, w->bin_tmp);
	if (!rc)
		rc = kyro__fs_fsync(msg, fd, w->bin_tmp);
	kyro__fs_close(fd);
	return rc;
}

/* The payloads' block table goes after them. */
static int write_data_table(char *msg, struct snap_writer *w)
{
	if (sums_end(w->sums))
		return kyro__fail(msg, ENOMEM, "cannot write a snapshot");
	KYRO_VERIFY(w->sums->n == snap_nblocks(w->data_pos));
	return write_trickled(msg, w->fd_data, w->sums->v, 8 * w->sums->n,
			      w->data_pos, w->data_tmp);
}

int kyro__snap_writer_seal(char *msg, struct snap_writer *w, uint64_t last_seq)
{
	KYRO_VERIFY(!w->sealed);
	int rc = data_flush(msg, w);
	if (!rc)
		rc = write_data_table(msg, w);
	if (!rc)
		rc = seal_bin(w, last_seq);
	w->sealed = !rc;
	return rc;
}

int kyro__snap_writer_finish(char *msg, struct snap_writer *w,
			     uint64_t last_seq, uint64_t *bytes)
{
	char bin[PATH_MAX], data[PATH_MAX];
	int rc = w->sealed ? 0 : kyro__snap_writer_seal(msg, w, last_seq);
	if (!rc)
		rc = kyro__fs_fsync(msg, w->fd_data, w->data_tmp);
	if (!rc)
		rc = write_bin(msg, w);
	if (rc)
		return rc;
	kyro__path_gen(bin, w->dir, "snap-", w->gen, ".bin");
	kyro__path_gen(data, w->dir, "snap-", w->gen, ".data");
	rc = kyro__fs_rename(msg, w->data_tmp, data);
	if (!rc)
		rc = kyro__fs_rename(msg, w->bin_tmp, bin);
	if (!rc)
		rc = kyro__fs_fsync_dir(msg, w->dir);
	if (rc)
		return rc;
	w->bin_tmp[0] = w->data_tmp[0] = 0;
	*bytes = w->data_pos + 8 * snap_nblocks(w->data_pos) + w->img_len;
	return 0;
}

void kyro__snap_writer_abort(struct snap_writer *w)
{
	kyro__fs_close(w->fd_data);
	w->fd_data = -1;
	if (w->bin_tmp[0])
		kyro__fs_unlink(NULL, w->bin_tmp);
	if (w->data_tmp[0])
		kyro__fs_unlink(NULL, w->data_tmp);
	if (w->img)
		kyro__fs_free_huge(w->img, image_len(w->cap));
	free(w->buf);
	sums_free(w->sums);
	w->img = NULL;
	w->keys = w->offs = NULL;
	w->buf = NULL;
	w->sums = NULL;
}
