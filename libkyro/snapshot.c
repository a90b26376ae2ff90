/*
 * snapshot.c - immutable, generation-numbered snapshots.
 *
 * A snapshot is two files written once and never changed: the index
 * snap-GGGGGGGGGGGGGGGG.bin and the payloads snap-GGGGGGGGGGGGGGGG.data
 * (G = generation, 16 hex digits).  Integers are little-endian.
 *
 * Index file (.bin), version 2, laid out to be used straight from mmap:
 *
 *    0  8  magic "KYROSNAP"
 *    8  4  format version (2)
 *   12  4  header size (128)
 *   16  8  generation
 *   24  8  key count N
 *   32  8  last sequence number the snapshot holds
 *   40  8  D: end of the payloads in the .data file, where its block
 *          checksum table starts
 *   48  8  offset of the key array (128)
 *   56  8  offset of the payload-offset array (128 + 8N rounded up to 64)
 *   64  8  T: offset of this file's block checksum table, the end of the
 *          payload-offset array
 *   72  8  number of blocks of this file: ceil(T / 4096)
 *   80  8  number of blocks of the .data file: ceil(D / 4096)
 *   88 32  reserved, zero
 *  120  8  XXH3-64 of bytes 0..119
 *  128     N keys, u64, strictly ascending
 *          zero padding to a multiple of 64
 *          N+1 payload offsets, u64: value i is .data bytes
 *          [off[i], off[i+1]); off[0] = 32 and off[N] = D
 *    T     the block checksum table: one u64 per block
 *
 * Payload file (.data), version 2:
 *
 *    0  8  magic "KYRODATA"
 *    8  4  format version (2)
 *   12  4  header size (32)
 *   16  8  generation
 *   24  8  XXH3-64 of bytes 0..23
 *   32     the values, back to back, in key order, up to D
 *    D     the block checksum table: one u64 per block
 *
 * Blocks.  Each file's bytes before its table are cut into blocks of 4096
 * bytes (the last may be shorter); table entry b is XXH3-64 of block b,
 * seeded with b, so that a block cannot pass for another.  The table has
 * no checksum of its own: a damaged entry fails its block's check, which
 * is reported as damage, never accepted.
 *
 * Version 1 (the previous release) has no tables: both files end with
 * their last array, byte 40 holds the .data size, and bytes 64, 72 and 80
 * hold XXH3-64 of the key array, of the offset array and of .data from
 * byte 32 to its end.  It is still read: those three checksums are
 * verified once, when it is opened (so opening an old store costs a pass
 * over it); the next snapshot writes version 2.
 *
 * Rules.  Both files are written as *.tmp, fsynced, renamed, and the
 * directory fsynced before a manifest names them.  Opening checks only
 * what costs O(1) (headers, sizes, generation and key count against the
 * manifest, the blocks holding the first and last offsets), so opening
 * never grows with the data.  A reader verifies each block the first time
 * it uses it, once per open snapshot (a bitmap remembers): every key,
 * offset and payload byte an answer depends on is verified before the
 * answer is given, and a block that fails is KYRO_ECORRUPT naming the file
 * and the block's offset.  kyro_verify() checks every block, the key order
 * and every offset.  A snapshot that fails is refused, never repaired.
 *
 * Young handles.  Until a handle has verified SNAP_FEW blocks of a file
 * (snapshot.h), it reads that file's header, its checksum table entries
 * and the two offsets opening checks with pread, not through the mapping:
 * each 2 MiB region a process first touches in a mapping costs it a page
 * table page, and on a virtual machine a fault that allocates one costs
 * tens of microseconds, so a process that opens a large store to look up
 * one key would pay for regions (header, table, the offsets' ends) its
 * lookup never needs.  The files never change, so both ways read the same
 * bytes.  An older handle reads the table through the mapping.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "fsio.h"
#include "internal.h"
#include "snapshot.h"

/* ---- reading ---- */

/* Map PATH; its descriptor is kept in *FDP (snap_close closes it). */
static int map_file(char *msg, const char *path, const unsigned char **p,
		    size_t *len, int *fdp)
{
	int fd;
	uint64_t size;
	int rc = kyro__fs_open(msg, path, O_RDONLY, 0, &fd);
	if (rc)
		return rc;
	rc = kyro__fs_size(msg, fd, path, &size);
	if (!rc)
		rc = kyro__fs_map(msg, fd, (size_t)size, 0, path, (void **)p);
	if (rc) {
		kyro__fs_close(fd);
		return rc;
	}
	*len = (size_t)size;
	*fdp = fd;
	return 0;
}

static int check_version(char *msg, const unsigned char *h, size_t len,
			 const char *magic, const char *path)
{
	if (len < 16 || memcmp(h, magic, 8) != 0)
		return kyro__failx(msg, KYRO_ECORRUPT,
				   "'%s': offset 0: bad magic", path);
	uint32_t v = get_le32(h + 8);
	if (v != 1 && v != SNAP_VERSION)
		return kyro__failx(
			msg, KYRO_EVERSION,
			"'%s' has format version %u; this build reads "
			"versions 1 and %u",
			path, v, SNAP_VERSION);
	return 0;
}

/* Where file F's checksummed bytes end (its table starts). */
static uint64_t covered(const struct snap *s, enum snap_file f)
{
	return f == SNAP_DATA ? s->data_size : snap_table_at(s->n);
}

static const char *file_path(const struct snap *s, enum snap_file f)
{
	return f == SNAP_DATA ? s->data_path : s->bin_path;
}

/* The length of block B of file F. */
static size_t block_len(const struct snap *s, enum snap_file f, uint64_t b)
{
	uint64_t off = b << SNAP_BLOCK_SHIFT, end = covered(s, f);
	return (size_t)(end - off < SNAP_BLOCK ? end - off : SNAP_BLOCK);
}

static uint64_t block_sum(const struct snap *s, enum snap_file f, uint64_t b)
{
	const unsigned char *base = f == SNAP_DATA ? s->data : s->bin;
	return XXH3_64bits_withSeed(base + (b << SNAP_BLOCK_SHIFT),
				    block_len(s, f, b), b);
}

/* LEN bytes at OFF of file F by pread.  The sizes were checked at open,
 * so a short read means the file changed under us: damage. */
static int read_at(char *msg, const struct snap *s, enum snap_file f,
		   void *buf, size_t len, uint64_t off)
{
	size_t got;
	int rc = kyro__fs_pread_all(msg, s->fd[f], buf, len, off,
				    file_path(s, f), &got);
	if (!rc && got != len)
		rc = kyro__failx(msg, KYRO_ECORRUPT,
				 "'%s': offset %llu: file ends early",
				 file_path(s, f), (unsigned long long)off);
	return rc;
}

/* Block B's entry in file F's checksum table: by pread while the handle
 * is young (see "Young handles" above), else from the mapping. */
static int table_entry(char *msg, const struct snap *s, enum snap_file f,
		       uint64_t b, uint64_t *sum)
{
	unsigned char e[8];
	if (s->ok[f] || !s->owns_fds) {
		*sum = get_le64(s->sums[f] + 8 * b);
		return 0;
	}
	int rc = read_at(msg, s, f, e, sizeof e, covered(s, f) + 8 * b);
	if (!rc)
		*sum = get_le64(e);
	return rc;
}

static int bad_block(char *msg, const struct snap *s, enum snap_file f,
		     uint64_t b)
{
	return kyro__failx(msg, KYRO_ECORRUPT,
			   "'%s': offset %llu: block fails its checksum",
			   file_path(s, f),
			   (unsigned long long)(b << SNAP_BLOCK_SHIFT));
}

static int bitmap_grow(struct snap *s, int f);

/* Is block B of file F verified already? */
static int known(const struct snap *s, enum snap_file f, uint64_t b)
{
	if (s->ok[f])
		return snap_marked(s, f, b);
	for (unsigned i = 0; i < s->nfew[f]; i++)
		if (s->few[f][i] == b)
			return 1;
	return 0;
}

/* Remember that block B of file F is verified.  Out of memory for the
 * bitmap, it is not remembered, and verified again at its next use. */
static void remember(struct snap *s, int f, uint64_t b)
{
	if (!s->ok[f]) {
		if (s->nfew[f] < SNAP_FEW) {
			s->few[f][s->nfew[f]++] = b;
			return;
		}
		if (bitmap_grow(s, f))
			return;
	}
	s->ok[f][b >> 6] |= (uint64_t)1 << (b & 63);
}

int kyro__snap_check_block(char *msg, const struct snap *cs,
			   enum snap_file f, uint64_t b)
{
	/* What is verified is a cache beside the read-only mapping, filled
	 * through const views as the bitmap's words always were. */
	struct snap *s = (struct snap *)cs;
	KYRO_VERIFY(b < s->blocks[f]);
	if (known(s, f, b))
		return 0;
	/* Version 1 was verified whole at open. */
	if (s->sums[f]) {
		uint64_t want;
		int rc = table_entry(msg, s, f, b, &want);
		if (rc)
			return rc;
		if (block_sum(s, f, b) != want)
			return bad_block(msg, s, f, b);
	}
	remember(s, f, b);
	return 0;
}

/* The u64 at byte OFF of file F (version 2), its block verified, both
 * read with pread: opening checks the first and last payload offsets,
 * which lie far from anything a lookup touches (see "Young handles"). */
static int read_checked_u64(char *msg, struct snap *s, enum snap_file f,
			    uint64_t off, uint64_t *v)
{
	unsigned char blk[SNAP_BLOCK];
	uint64_t b = off >> SNAP_BLOCK_SHIFT, want;
	size_t len = block_len(s, f, b);
	int rc = read_at(msg, s, f, blk, len, b << SNAP_BLOCK_SHIFT);
	if (!rc && !known(s, f, b)) {
		rc = table_entry(msg, s, f, b, &want);
		if (!rc && XXH3_64bits_withSeed(blk, len, b) != want)
			rc = bad_block(msg, s, f, b);
		if (!rc)
			remember(s, f, b);
	}
	if (!rc)
		*v = get_le64(blk + (off & (SNAP_BLOCK - 1)));
	return rc;
}

int kyro__snap_end_keys(char *msg, const struct snap *s, uint64_t *first,
			uint64_t *last)
{
	unsigned char k[8];
	*first = *last = 0;
	if (s->n == 0)
		return 0;
	if (!s->owns_fds || s->ok[SNAP_BIN]) {
		*first = s->keys[0];
		*last = s->keys[s->n - 1];
		return 0;
	}
	int rc = read_at(msg, s, SNAP_BIN, k, 8, SNAP_BIN_HDR);
	if (rc)
		return rc;
	*first = get_le64(k);
	rc = read_at(msg, s, SNAP_BIN, k, 8, SNAP_BIN_HDR + 8 * (s->n - 1));
	if (!rc)
		*last = get_le64(k);
	return rc;
}

int kyro__snap_check_all(char *msg, const struct snap *s)
{
	for (int f = SNAP_BIN; f <= SNAP_DATA; f++)
		for (uint64_t b = 0; b < s->blocks[f]; b++)
			if (!snap_marked(s, f, b)) {
				int rc = kyro__snap_check_block(msg, s, f, b);
				if (rc)
					return rc;
			}
	return 0;
}

int kyro__snap_search_verified(char *msg, const struct snap *s, uint64_t key,
			       uint64_t *pos)
{
	uint64_t lo = 0, hi = s->n;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		int rc = snap_check_key(msg, s, mid);
		if (rc)
			return rc;
		if (s->keys[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return 0;
}

int kyro__snap_bad_ref(char *msg, const struct snap *s, uint64_t i,
		       uint64_t key)
{
	return kyro__failx(
		msg, KYRO_ECORRUPT,
		"'%s': offset %llu: payload reference of key %llu is "
		"out of bounds",
		s->bin_path, (unsigned long long)(snap_offs_at(s->n) + 8 * i),
		(unsigned long long)key);
}

/* Bitmap F of S: all set at once for a version 1 snapshot (verified
 * whole at open), else none until SNAP_FEW blocks overflow S->few
 * (snapshot.h says why). */
static int bitmap_new(struct snap *s, int f, int full)
{
	size_t words = (size_t)((s->blocks[f] + 63) / 64);
	s->ok[f] = NULL;
	s->ok_mapped[f] = 0;
	s->nfew[f] = 0;
	if (!full)
		return 0;
	s->ok[f] = calloc(words ? words : 1, sizeof *s->ok[f]);
	if (s->ok[f])
		memset(s->ok[f], 0xff, words * sizeof *s->ok[f]);
	return s->ok[f] ? 0 : -1;
}

/* A large bitmap is mapped: a long-lived handle then zeroes (and faults
 * in) only the pages its lookups touch, instead of a page per 128 MiB of
 * snapshot. */
#define BITMAP_LAZY ((size_t)16 << 10)

/* Make bitmap F of S, holding the blocks S->few lists.  0, or -1 when
 * memory ran out. */
static int bitmap_grow(struct snap *s, int f)
{
	size_t words = (size_t)((s->blocks[f] + 63) / 64), bytes = words * 8;
	uint64_t *ok = NULL;
	if (bytes >= BITMAP_LAZY && (ok = kyro__fs_alloc_lazy(bytes)) != NULL)
		s->ok_mapped[f] = bytes;
	else
		ok = calloc(words ? words : 1, sizeof *ok);
	if (!ok)
		return -1;
	for (unsigned i = 0; i < s->nfew[f]; i++)
		ok[s->few[f][i] >> 6] |= (uint64_t)1 << (s->few[f][i] & 63);
	s->ok[f] = ok;
	return 0;
}

static void bitmaps_free(struct snap *s)
{
	for (int f = 0; f < 2; f++) {
		if (s->ok_mapped[f])
			kyro__fs_free_huge(s->ok[f], s->ok_mapped[f]);
		else
			free(s->ok[f]);
		s->ok[f] = NULL;
		s->ok_mapped[f] = 0;
		s->nfew[f] = 0;
	}
}

/* Version 1: the three whole-array checksums, once. */
static int open_v1(char *msg, struct snap *s)
{
	const unsigned char *h = s->bin;
	if (XXH3_64bits(s->keys, 8 * s->n) != get_le64(h + 64))
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': offset %d: key array fails its checksum",
			s->bin_path, SNAP_BIN_HDR);
	if (XXH3_64bits(s->offs, 8 * (s->n + 1)) != get_le64(h + 72))
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': offset %llu: payload-offset array fails "
			"its checksum",
			s->bin_path, (unsigned long long)snap_offs_at(s->n));
	if (XXH3_64bits(s->data + SNAP_DATA_HDR,
			s->data_size - SNAP_DATA_HDR) != get_le64(h + 80))
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': offset %d: payloads fail their checksum",
			s->data_path, SNAP_DATA_HDR);
	return 0;
}

/* The .bin header: its checksum, the generation and key count the
 * manifest names, and array offsets that match the file's size. */
static int check_bin_header(char *msg, struct snap *s,
			    const unsigned char *h, uint64_t gen,
			    uint64_t nkeys)
{
	static const unsigned char zeros[32];
	int rc = check_version(msg, h, s->bin_len, SNAP_BIN_MAGIC,
			       s->bin_path);
	if (rc)
		return rc;
	if (s->bin_len < SNAP_BIN_HDR || get_le32(h + 12) != SNAP_BIN_HDR ||
	    get_le64(h + 120) != XXH3_64bits(h, 120) ||
	    memcmp(h + 88, zeros, sizeof zeros) != 0)
		return kyro__failx(msg, KYRO_ECORRUPT,
				   "'%s': offset 0: bad header (checksum)",
				   s->bin_path);
	s->version = get_le32(h + 8);
	s->gen = get_le64(h + 16);
	s->n = get_le64(h + 24);
	s->last_seq = get_le64(h + 32);
	s->data_size = get_le64(h + 40);
	s->hdr_sum = get_le64(h + 120);
	if (s->gen != gen || s->n != nkeys)
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': offset 16: generation %llu with %llu keys, "
			"but the manifest names generation %llu with %llu",
			s->bin_path, (unsigned long long)s->gen,
			(unsigned long long)s->n, (unsigned long long)gen,
			(unsigned long long)nkeys);
	int v2 = s->version == 2;
	uint64_t tab = snap_table_at(s->n);
	if (s->n > (SIZE_MAX - 4096) / 16 || get_le64(h + 48) != SNAP_BIN_HDR ||
	    get_le64(h + 56) != snap_offs_at(s->n) ||
	    (v2 && (get_le64(h + 64) != tab ||
		    get_le64(h + 72) != snap_nblocks(tab) ||
		    s->bin_len != tab + 8 * snap_nblocks(tab))) ||
	    (!v2 && s->bin_len != tab))
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': offset 48: array offsets do not match a "
			"file of %zu bytes",
			s->bin_path, s->bin_len);
	return 0;
}

/* The .data header D, against the .bin header H already checked. */
static int check_data_header(char *msg, const struct snap *s,
			     const unsigned char *h, const unsigned char *d,
			     uint64_t gen)
{
	int v2 = s->version == 2;
	int rc = check_version(msg, d, s->data_len, SNAP_DATA_MAGIC,
			       s->data_path);
	if (rc)
		return rc;
	if (s->data_len < SNAP_DATA_HDR || get_le32(d + 8) != s->version ||
	    get_le32(d + 12) != SNAP_DATA_HDR ||
	    get_le64(d + 24) != XXH3_64bits(d, 24) ||
	    get_le64(d + 16) != gen || s->data_size < SNAP_DATA_HDR ||
	    s->data_size > s->data_len ||
	    (v2 && (get_le64(h + 80) != snap_nblocks(s->data_size) ||
		    s->data_len - s->data_size !=
			    8 * snap_nblocks(s->data_size))) ||
	    (!v2 && s->data_len != s->data_size))
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': offset 0: bad header, or size %zu does not "
			"match the index's %llu",
			s->data_path, s->data_len,
			(unsigned long long)s->data_size);
	return 0;
}

/* Point into the two mappings, set up the block bitmaps, and check what
 * every lookup relies on: the first and last payload offsets (version 2
 * checks their blocks; version 1 checks everything, once). */
static int setup_arrays(char *msg, struct snap *s)
{
	int v2 = s->version == 2;
	uint64_t tab = snap_table_at(s->n), first, last;
	s->keys = (const uint64_t *)(s->bin + SNAP_BIN_HDR);
	s->offs = (const uint64_t *)(s->bin + snap_offs_at(s->n));
	s->blocks[SNAP_BIN] = snap_nblocks(tab);
	s->blocks[SNAP_DATA] = snap_nblocks(s->data_size);
	if (v2) {
		s->sums[SNAP_BIN] = s->bin + tab;
		s->sums[SNAP_DATA] = s->data + s->data_size;
	}
	if (bitmap_new(s, SNAP_BIN, !v2) || bitmap_new(s, SNAP_DATA, !v2))
		return kyro__fail(msg, ENOMEM, "cannot open '%s'", s->bin_path);
	int rc = v2 ? read_checked_u64(msg, s, SNAP_BIN, snap_offs_at(s->n),
				       &first)
		    : open_v1(msg, s);
	if (!rc && v2)
		rc = read_checked_u64(msg, s, SNAP_BIN,
				      snap_offs_at(s->n) + 8 * s->n, &last);
	if (rc)
		return rc;
	if (!v2) {
		first = s->offs[0];
		last = s->offs[s->n];
	}
	if (first != SNAP_DATA_HDR || last != s->data_size)
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': offset %llu: payload offsets do not span "
			"the data file",
			s->bin_path, (unsigned long long)snap_offs_at(s->n));
	return 0;
}

/* The first CAP bytes of file F (LEN bytes long) into H, zero past its
 * end: the header checks then see a short file as a bad header. */
static int read_header(char *msg, const struct snap *s, enum snap_file f,
		       unsigned char *h, size_t cap, size_t len)
{
	memset(h, 0, cap);
	return read_at(msg, s, f, h, len < cap ? len : cap, 0);
}

int kyro__snap_open(char *msg, struct snap *s, const char *dir, uint64_t gen,
		    uint64_t nkeys)
{
	unsigned char bh[SNAP_BIN_HDR], dh[SNAP_DATA_HDR];
	memset(s, 0, sizeof *s);
	int rc = kyro__path_gen(s->bin_path, dir, "snap-", gen, ".bin");
	if (!rc)
		rc = kyro__path_gen(s->data_path, dir, "snap-", gen, ".data");
	if (rc)
		return kyro__fail(msg, rc, "cannot open a snapshot in '%s'",
				  dir);
	s->fd[SNAP_BIN] = s->fd[SNAP_DATA] = -1;
	s->owns_fds = 1;
	rc = map_file(msg, s->bin_path, &s->bin, &s->bin_len,
		      &s->fd[SNAP_BIN]);
	if (!rc)
		rc = map_file(msg, s->data_path, &s->data, &s->data_len,
			      &s->fd[SNAP_DATA]);
	if (!rc)
		rc = read_header(msg, s, SNAP_BIN, bh, sizeof bh, s->bin_len);
	if (!rc)
		rc = read_header(msg, s, SNAP_DATA, dh, sizeof dh, s->data_len);
	if (!rc)
		rc = check_bin_header(msg, s, bh, gen, nkeys);
	if (!rc)
		rc = check_data_header(msg, s, bh, dh, gen);
	if (!rc)
		rc = setup_arrays(msg, s);
	if (rc) {
		kyro__snap_close(s);
		return rc;
	}
	kyro__fs_advise_random(s->bin, s->bin_len);
	kyro__fs_advise_random(s->data, s->data_len);
	return 0;
}

void kyro__snap_close(struct snap *s)
{
	kyro__fs_unmap((void *)s->bin, s->bin_len);
	kyro__fs_unmap((void *)s->data, s->data_len);
	bitmaps_free(s);
	for (int f = 0; f < 2 && s->owns_fds; f++)
		if (s->fd[f] >= 0)
			kyro__fs_close(s->fd[f]);
	s->owns_fds = 0;
	s->bin = s->data = NULL;
	s->bin_len = s->data_len = 0;
	s->keys = s->offs = NULL;
	s->sums[SNAP_BIN] = s->sums[SNAP_DATA] = NULL;
	s->blocks[SNAP_BIN] = s->blocks[SNAP_DATA] = 0;
	s->n = 0;
}

int kyro__snap_verify(const struct snap *s, kyro_report_fn report, void *arg)
{
	char text[256];
	int bad = 0;
	const unsigned char *h = s->bin;
	if (s->version == 1) {
		if (XXH3_64bits(s->keys, 8 * s->n) != get_le64(h + 64)) {
			report(arg, s->bin_path, SNAP_BIN_HDR,
			       "key array fails its checksum");
			bad = 1;
		}
		if (XXH3_64bits(s->offs, 8 * (s->n + 1)) != get_le64(h + 72)) {
			report(arg, s->bin_path, snap_offs_at(s->n),
			       "payload-offset array fails its checksum");
			bad = 1;
		}
		if (XXH3_64bits(s->data + SNAP_DATA_HDR,
				s->data_size - SNAP_DATA_HDR) !=
		    get_le64(h + 80)) {
			report(arg, s->data_path, SNAP_DATA_HDR,
			       "payloads fail their checksum");
			bad = 1;
		}
	}
	/* Every bad block is reported: each is a separate place to look. */
	for (int f = SNAP_BIN; s->version == 2 && f <= SNAP_DATA; f++) {
		for (uint64_t b = 0; b < s->blocks[f]; b++) {
			if (block_sum(s, f, b) !=
			    get_le64(s->sums[f] + 8 * b)) {
				report(arg, file_path(s, f),
				       b << SNAP_BLOCK_SHIFT,
				       "block fails its checksum");
				bad = 1;
			}
		}
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
			report(arg, s->bin_path,
			       snap_offs_at(s->n) + 8 * i, text);
			bad = 1;
			break;
		}
	}
	return bad ? KYRO_EDAMAGED : 0;
}

int kyro__snap_writer_view(char *msg, const struct snap_writer *w,
			   struct snap *s)
{
	KYRO_VERIFY(w->sealed);
	memset(s, 0, sizeof *s);
	s->gen = w->gen;
	s->n = w->n;
	s->last_seq = get_le64(w->img + 32);
	s->data_size = w->data_pos;
	s->hdr_sum = get_le64(w->img + 120);
	s->bin = w->img;
	s->bin_len = (size_t)w->img_len;
	s->keys = w->keys;
	s->offs = w->offs;
	s->version = SNAP_VERSION;
	s->sums[SNAP_BIN] = w->img + snap_table_at(w->n);
	s->blocks[SNAP_BIN] = snap_nblocks(snap_table_at(w->n));
	int bad = bitmap_new(s, SNAP_BIN, 0);
	bad |= bitmap_new(s, SNAP_DATA, 1);
	snprintf(s->bin_path, sizeof s->bin_path, "%s", w->bin_tmp);
	snprintf(s->data_path, sizeof s->data_path, "%s", w->data_tmp);
	if (bad) {
		kyro__snap_view_release(s);
		return kyro__fail(msg, ENOMEM, "cannot write a snapshot");
	}
	return 0;
}

void kyro__snap_view_release(struct snap *s)
{
	bitmaps_free(s);
}
