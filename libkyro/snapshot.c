/*
 * snapshot.c - immutable, generation-numbered snapshots.
 *
 * A snapshot is two files written once and never changed: the index
 * snap-GGGGGGGGGGGGGGGG.bin and the payloads snap-GGGGGGGGGGGGGGGG.data
 * (G = generation, 16 hex digits).  Integers are little-endian.
 *
 * Index file (.bin), laid out to be used straight from mmap:
 *
 *    0  8  magic "KYROSNAP"
 *    8  4  format version (1)
 *   12  4  header size (128)
 *   16  8  generation
 *   24  8  key count N
 *   32  8  last sequence number the snapshot holds
 *   40  8  size of the .data file in bytes
 *   48  8  offset of the key array (128)
 *   56  8  offset of the payload-offset array (128 + 8N rounded up to 64)
 *   64  8  XXH3-64 of the key array (8N bytes)
 *   72  8  XXH3-64 of the payload-offset array (8(N+1) bytes)
 *   80  8  XXH3-64 of the .data file from byte 32 to its end
 *   88 32  reserved, zero
 *  120  8  XXH3-64 of bytes 0..119
 *  128     N keys, u64, strictly ascending
 *          zero padding to a multiple of 64
 *          N+1 payload offsets, u64: value i is .data bytes
 *          [off[i], off[i+1]); off[0] = 32 and off[N] = the .data size
 *
 * Payload file (.data):
 *
 *    0  8  magic "KYRODATA"
 *    8  4  format version (1)
 *   12  4  header size (32)
 *   16  8  generation
 *   24  8  XXH3-64 of bytes 0..23
 *   32     the values, back to back, in key order
 *
 * Rules.  Both files are written as *.tmp, fsynced, renamed, and the
 * directory fsynced before a manifest names them.  Opening checks only
 * what costs O(1) (headers, sizes, generation and key count against the
 * manifest, first and last offsets), so opening never grows with the data;
 * every lookup bounds-checks the two offsets it uses.  kyro_verify()
 * checks the array and payload checksums, the key order and every offset.
 * A snapshot that fails is refused, never repaired.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "fsio.h"
#include "internal.h"
#include "snapshot.h"

static const char bin_magic[8] = "KYROSNAP";
static const char data_magic[8] = "KYRODATA";

#define DATA_BUFCAP ((size_t)1 << 20)
/* Start writeback every this many bytes (see fs_writeback). */
#define WRITEBACK_EVERY ((uint64_t)8 << 20)

static uint64_t offs_at(uint64_t n) { return SNAP_BIN_HDR + ((8 * n + 63) & ~(uint64_t)63); }

static int map_file(char *msg, const char *path, const unsigned char **p,
		    size_t *len)
{
	int fd;
	uint64_t size;
	int rc = fs_open(msg, path, O_RDONLY, 0, &fd);
	if (rc)
		return rc;
	rc = fs_size(msg, fd, path, &size);
	if (!rc)
		rc = fs_map(msg, fd, (size_t)size, 0, path, (void **)p);
	fs_close(fd);
	if (!rc)
		*len = (size_t)size;
	return rc;
}

static int check_version(char *msg, const unsigned char *h, size_t len,
			 const char *magic, const char *path)
{
	if (len < 16 || memcmp(h, magic, 8) != 0)
		return kfailx(msg, KYRO_ECORRUPT,
			      "'%s': offset 0: bad magic", path);
	if (get_le32(h + 8) != SNAP_VERSION)
		return kfailx(msg, KYRO_EVERSION,
			      "'%s' has format version %u; this build reads "
			      "version %u",
			      path, get_le32(h + 8), SNAP_VERSION);
	return 0;
}

int snap_open(char *msg, struct snap *s, const char *dir, uint64_t gen,
	      uint64_t nkeys)
{
	memset(s, 0, sizeof *s);
	int rc = kpath_gen(s->bin_path, dir, "snap-", gen, ".bin");
	if (!rc)
		rc = kpath_gen(s->data_path, dir, "snap-", gen, ".data");
	if (rc)
		return kfail(msg, rc, "cannot open a snapshot in '%s'", dir);
	rc = map_file(msg, s->bin_path, &s->bin, &s->bin_len);
	if (!rc)
		rc = map_file(msg, s->data_path, &s->data, &s->data_len);
	if (rc)
		goto fail;
	const unsigned char *h = s->bin;
	rc = check_version(msg, h, s->bin_len, bin_magic, s->bin_path);
	if (rc)
		goto fail;
	static const unsigned char zeros[32];
	if (s->bin_len < SNAP_BIN_HDR || get_le32(h + 12) != SNAP_BIN_HDR ||
	    get_le64(h + 120) != XXH3_64bits(h, 120) ||
	    memcmp(h + 88, zeros, sizeof zeros) != 0) {
		rc = kfailx(msg, KYRO_ECORRUPT,
			    "'%s': offset 0: bad header (checksum)",
			    s->bin_path);
		goto fail;
	}
	s->gen = get_le64(h + 16);
	s->n = get_le64(h + 24);
	s->last_seq = get_le64(h + 32);
	s->data_size = get_le64(h + 40);
	if (s->gen != gen || s->n != nkeys) {
		rc = kfailx(msg, KYRO_ECORRUPT,
			    "'%s': offset 16: generation %llu with %llu keys, "
			    "but the manifest names generation %llu with %llu",
			    s->bin_path, (unsigned long long)s->gen,
			    (unsigned long long)s->n, (unsigned long long)gen,
			    (unsigned long long)nkeys);
		goto fail;
	}
	if (s->n > (SIZE_MAX - 4096) / 16 || get_le64(h + 48) != SNAP_BIN_HDR ||
	    get_le64(h + 56) != offs_at(s->n) ||
	    s->bin_len != offs_at(s->n) + 8 * (s->n + 1)) {
		rc = kfailx(msg, KYRO_ECORRUPT,
			    "'%s': offset 48: array offsets do not match a "
			    "file of %zu bytes",
			    s->bin_path, s->bin_len);
		goto fail;
	}
	rc = check_version(msg, s->data, s->data_len, data_magic,
			   s->data_path);
	if (rc)
		goto fail;
	if (s->data_len < SNAP_DATA_HDR ||
	    get_le32(s->data + 12) != SNAP_DATA_HDR ||
	    get_le64(s->data + 24) != XXH3_64bits(s->data, 24) ||
	    get_le64(s->data + 16) != gen || s->data_len != s->data_size) {
		rc = kfailx(msg, KYRO_ECORRUPT,
			    "'%s': offset 0: bad header, or size %zu does not "
			    "match the index's %llu",
			    s->data_path, s->data_len,
			    (unsigned long long)s->data_size);
		goto fail;
	}
	s->keys = (const uint64_t *)(s->bin + SNAP_BIN_HDR);
	s->offs = (const uint64_t *)(s->bin + offs_at(s->n));
	if (s->offs[0] != SNAP_DATA_HDR || s->offs[s->n] != s->data_size) {
		rc = kfailx(msg, KYRO_ECORRUPT,
			    "'%s': offset %llu: payload offsets do not span "
			    "the data file",
			    s->bin_path, (unsigned long long)offs_at(s->n));
		goto fail;
	}
	fs_advise_random(s->bin, s->bin_len);
	fs_advise_random(s->data, s->data_len);
	return 0;
fail:
	snap_close(s);
	return rc;
}

void snap_close(struct snap *s)
{
	fs_unmap((void *)s->bin, s->bin_len);
	fs_unmap((void *)s->data, s->data_len);
	s->bin = s->data = NULL;
	s->bin_len = s->data_len = 0;
	s->keys = s->offs = NULL;
	s->n = 0;
}

int snap_verify(const struct snap *s, kyro_report_fn report, void *arg)
{
	char text[256];
	int bad = 0;
	const unsigned char *h = s->bin;
	if (XXH3_64bits(s->keys, 8 * s->n) != get_le64(h + 64)) {
		report(arg, s->bin_path, SNAP_BIN_HDR,
		       "key array fails its checksum");
		bad = 1;
	}
	if (XXH3_64bits(s->offs, 8 * (s->n + 1)) != get_le64(h + 72)) {
		report(arg, s->bin_path, offs_at(s->n),
		       "payload-offset array fails its checksum");
		bad = 1;
	}
	if (XXH3_64bits(s->data + SNAP_DATA_HDR,
			s->data_size - SNAP_DATA_HDR) != get_le64(h + 80)) {
		report(arg, s->data_path, SNAP_DATA_HDR,
		       "payloads fail their checksum");
		bad = 1;
	}
	/* Report only the first of each kind: one broken array otherwise
	 * floods the terminal with millions of lines. */
	for (uint64_t i = 1; i < s->n; i++) {
		if (s->keys[i - 1] >= s->keys[i]) {
			snprintf(text, sizeof text,
				 "key %llu (index %llu) is not above key %llu",
				 (unsigned long long)s->keys[i],
				 (unsigned long long)i,
				 (unsigned long long)s->keys[i - 1]);
			report(arg, s->bin_path, SNAP_BIN_HDR + 8 * i, text);
			bad = 1;
			break;
		}
	}
	for (uint64_t i = 0; i < s->n; i++) {
		const void *v;
		size_t len;
		if (snap_value(s, i, &v, &len)) {
			snprintf(text, sizeof text,
				 "payload reference of key %llu out of bounds",
				 (unsigned long long)s->keys[i]);
			report(arg, s->bin_path, offs_at(s->n) + 8 * i, text);
			bad = 1;
			break;
		}
	}
	return bad ? KYRO_EDAMAGED : 0;
}

int snap_writer_open(char *msg, struct snap_writer *w, const char *dir,
		     uint64_t gen, uint64_t cap_hint)
{
	unsigned char hdr[SNAP_DATA_HDR];
	memset(w, 0, sizeof *w);
	w->dir = dir;
	w->gen = gen;
	w->fd_data = -1;
	int rc = kpath_gen(w->bin_tmp, dir, "snap-", gen, ".bin.tmp");
	if (!rc)
		rc = kpath_gen(w->data_tmp, dir, "snap-", gen, ".data.tmp");
	if (rc)
		return kfail(msg, rc, "cannot write a snapshot in '%s'", dir);
	w->cap = cap_hint > 1024 ? cap_hint : 1024;
	w->keys = malloc(w->cap * sizeof *w->keys);
	w->offs = malloc((w->cap + 1) * sizeof *w->offs);
	w->buf = malloc(DATA_BUFCAP);
	w->hash = XXH3_createState();
	if (!w->keys || !w->offs || !w->buf || !w->hash) {
		snap_writer_abort(w);
		return kfail(msg, ENOMEM, "cannot write a snapshot");
	}
	XXH3_64bits_reset(w->hash);
	rc = fs_open(msg, w->data_tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644,
		     &w->fd_data);
	if (rc) {
		snap_writer_abort(w);
		return rc;
	}
	/* The header goes out first, outside the hashed buffer. */
	memset(hdr, 0, sizeof hdr);
	memcpy(hdr, data_magic, 8);
	put_le32(hdr + 8, SNAP_VERSION);
	put_le32(hdr + 12, SNAP_DATA_HDR);
	put_le64(hdr + 16, gen);
	put_le64(hdr + 24, XXH3_64bits(hdr, 24));
	w->data_pos = sizeof hdr;
	return fs_write_all(msg, w->fd_data, hdr, sizeof hdr, w->data_tmp);
}

/* The payload checksum is taken per flushed buffer, not per value: the
 * stream hash of the concatenation is the same, and 10M tiny updates
 * cost more than the hashing itself. */
static int data_flush(char *msg, struct snap_writer *w)
{
	XXH3_64bits_update(w->hash, w->buf, w->buflen);
	int rc = fs_write_all(msg, w->fd_data, w->buf, w->buflen, w->data_tmp);
	w->buflen = 0;
	/* Trickle the payload to disk as it is written: a writer's fsync
	 * during a snapshot then does not wait behind hundreds of MB. */
	if (!rc && w->data_pos - w->wb_done >= WRITEBACK_EVERY) {
		fs_writeback(w->fd_data, w->wb_done, w->data_pos - w->wb_done);
		w->wb_done = w->data_pos;
	}
	return rc;
}

int snap_writer_add(char *msg, struct snap_writer *w, uint64_t key,
		    const void *val, size_t len)
{
	KYRO_VERIFY(w->n == 0 || key > w->keys[w->n - 1]);
	if (w->n == w->cap) {
		uint64_t cap = w->cap * 2;
		uint64_t *k = realloc(w->keys, cap * sizeof *k);
		if (k)
			w->keys = k;
		uint64_t *o = k ? realloc(w->offs, (cap + 1) * sizeof *o) : NULL;
		if (!o)
			return kfail(msg, ENOMEM, "cannot write a snapshot");
		w->offs = o;
		w->cap = cap;
	}
	w->keys[w->n] = key;
	w->offs[w->n] = w->data_pos;
	w->n++;
	w->data_pos += len;
	if (w->buflen + len > DATA_BUFCAP) {
		int rc = data_flush(msg, w);
		if (rc)
			return rc;
		if (len > DATA_BUFCAP) {
			XXH3_64bits_update(w->hash, val, len);
			return fs_write_all(msg, w->fd_data, val, len,
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
		int rc = fs_write_all(msg, fd, p + done, (size_t)n, path);
		if (rc)
			return rc;
		fs_writeback(fd, at + done, n);
		done += n;
	}
	return 0;
}

static int write_bin(char *msg, struct snap_writer *w, uint64_t last_seq)
{
	static const unsigned char zeros[64];
	unsigned char h[SNAP_BIN_HDR];
	uint64_t n = w->n;
	int fd, rc;
	w->offs[n] = w->data_pos;
	memset(h, 0, sizeof h);
	memcpy(h, bin_magic, 8);
	put_le32(h + 8, SNAP_VERSION);
	put_le32(h + 12, SNAP_BIN_HDR);
	put_le64(h + 16, w->gen);
	put_le64(h + 24, n);
	put_le64(h + 32, last_seq);
	put_le64(h + 40, w->data_pos);
	put_le64(h + 48, SNAP_BIN_HDR);
	put_le64(h + 56, offs_at(n));
	put_le64(h + 64, XXH3_64bits(w->keys, 8 * n));
	put_le64(h + 72, XXH3_64bits(w->offs, 8 * (n + 1)));
	put_le64(h + 80, XXH3_64bits_digest(w->hash));
	put_le64(h + 120, XXH3_64bits(h, 120));
	rc = fs_open(msg, w->bin_tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644, &fd);
	if (rc)
		return rc;
	rc = fs_write_all(msg, fd, h, sizeof h, w->bin_tmp);
	if (!rc)
		rc = write_trickled(msg, fd, w->keys, 8 * n, SNAP_BIN_HDR,
				    w->bin_tmp);
	if (!rc)
		rc = fs_write_all(msg, fd, zeros,
				  offs_at(n) - SNAP_BIN_HDR - 8 * n, w->bin_tmp);
	if (!rc)
		rc = write_trickled(msg, fd, w->offs, 8 * (n + 1), offs_at(n),
				    w->bin_tmp);
	if (!rc)
		rc = fs_fsync(msg, fd, w->bin_tmp);
	fs_close(fd);
	return rc;
}

int snap_writer_finish(char *msg, struct snap_writer *w, uint64_t last_seq,
		       uint64_t *bytes)
{
	char bin[PATH_MAX], data[PATH_MAX];
	int rc = data_flush(msg, w);
	if (!rc)
		rc = fs_fsync(msg, w->fd_data, w->data_tmp);
	if (!rc)
		rc = write_bin(msg, w, last_seq);
	if (rc)
		return rc;
	kpath_gen(bin, w->dir, "snap-", w->gen, ".bin");
	kpath_gen(data, w->dir, "snap-", w->gen, ".data");
	rc = fs_rename(msg, w->data_tmp, data);
	if (!rc)
		rc = fs_rename(msg, w->bin_tmp, bin);
	if (!rc)
		rc = fs_fsync_dir(msg, w->dir);
	if (rc)
		return rc;
	w->bin_tmp[0] = w->data_tmp[0] = 0;
	*bytes = w->data_pos + offs_at(w->n) + 8 * (w->n + 1);
	return 0;
}

void snap_writer_abort(struct snap_writer *w)
{
	fs_close(w->fd_data);
	w->fd_data = -1;
	if (w->bin_tmp[0])
		fs_unlink(NULL, w->bin_tmp);
	if (w->data_tmp[0])
		fs_unlink(NULL, w->data_tmp);
	free(w->keys);
	free(w->offs);
	free(w->buf);
	XXH3_freeState(w->hash);
	w->keys = w->offs = NULL;
	w->buf = NULL;
	w->hash = NULL;
}
