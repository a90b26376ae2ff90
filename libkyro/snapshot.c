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
/* Start writeback every this many bytes (see kyro__fs_writeback). */
#define WRITEBACK_EVERY ((uint64_t)8 << 20)

static uint64_t offs_at(uint64_t n) { return SNAP_BIN_HDR + ((8 * n + 63) & ~(uint64_t)63); }

/* Where the .bin file's block table starts: the end of the offsets. */
static uint64_t bin_table_at(uint64_t n) { return offs_at(n) + 8 * (n + 1); }

static uint64_t nblocks(uint64_t len) { return (len + SNAP_BLOCK - 1) >> SNAP_BLOCK_SHIFT; }

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

/* ---- reading ---- */

static int map_file(char *msg, const char *path, const unsigned char **p,
		    size_t *len)
{
	int fd;
	uint64_t size;
	int rc = kyro__fs_open(msg, path, O_RDONLY, 0, &fd);
	if (rc)
		return rc;
	rc = kyro__fs_size(msg, fd, path, &size);
	if (!rc)
		rc = kyro__fs_map(msg, fd, (size_t)size, 0, path, (void **)p);
	kyro__fs_close(fd);
	if (!rc)
		*len = (size_t)size;
	return rc;
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
	return f == SNAP_DATA ? s->data_size : bin_table_at(s->n);
}

static const char *file_path(const struct snap *s, enum snap_file f)
{
	return f == SNAP_DATA ? s->data_path : s->bin_path;
}

static uint64_t block_sum(const struct snap *s, enum snap_file f, uint64_t b)
{
	const unsigned char *base = f == SNAP_DATA ? s->data : s->bin;
	uint64_t off = b << SNAP_BLOCK_SHIFT, end = covered(s, f);
	uint64_t len = end - off < SNAP_BLOCK ? end - off : SNAP_BLOCK;
	return XXH3_64bits_withSeed(base + off, (size_t)len, b);
}

static int bitmap_grow(struct snap *s, int f);

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
	if (!s->ok[f])
		for (unsigned i = 0; i < s->nfew[f]; i++)
			if (s->few[f][i] == b)
				return 0;
	/* Version 1 was verified whole at open. */
	if (s->sums[f] &&
	    block_sum(s, f, b) != get_le64(s->sums[f] + 8 * b))
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': offset %llu: block fails its checksum",
			file_path(s, f),
			(unsigned long long)(b << SNAP_BLOCK_SHIFT));
	remember(s, f, b);
	return 0;
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
		s->bin_path, (unsigned long long)(offs_at(s->n) + 8 * i),
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
			s->bin_path, (unsigned long long)offs_at(s->n));
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
static int check_bin_header(char *msg, struct snap *s, uint64_t gen,
			    uint64_t nkeys)
{
	static const unsigned char zeros[32];
	const unsigned char *h = s->bin;
	int rc = check_version(msg, h, s->bin_len, bin_magic, s->bin_path);
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
	uint64_t tab = bin_table_at(s->n);
	if (s->n > (SIZE_MAX - 4096) / 16 || get_le64(h + 48) != SNAP_BIN_HDR ||
	    get_le64(h + 56) != offs_at(s->n) ||
	    (v2 && (get_le64(h + 64) != tab ||
		    get_le64(h + 72) != nblocks(tab) ||
		    s->bin_len != tab + 8 * nblocks(tab))) ||
	    (!v2 && s->bin_len != tab))
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': offset 48: array offsets do not match a "
			"file of %zu bytes",
			s->bin_path, s->bin_len);
	return 0;
}

/* The .data header, against the .bin header already checked. */
static int check_data_header(char *msg, const struct snap *s, uint64_t gen)
{
	const unsigned char *h = s->bin, *d = s->data;
	int v2 = s->version == 2;
	int rc = check_version(msg, d, s->data_len, data_magic, s->data_path);
	if (rc)
		return rc;
	if (s->data_len < SNAP_DATA_HDR || get_le32(d + 8) != s->version ||
	    get_le32(d + 12) != SNAP_DATA_HDR ||
	    get_le64(d + 24) != XXH3_64bits(d, 24) ||
	    get_le64(d + 16) != gen || s->data_size < SNAP_DATA_HDR ||
	    s->data_size > s->data_len ||
	    (v2 && (get_le64(h + 80) != nblocks(s->data_size) ||
		    s->data_len - s->data_size !=
			    8 * nblocks(s->data_size))) ||
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
	uint64_t tab = bin_table_at(s->n);
	s->keys = (const uint64_t *)(s->bin + SNAP_BIN_HDR);
	s->offs = (const uint64_t *)(s->bin + offs_at(s->n));
	s->blocks[SNAP_BIN] = nblocks(tab);
	s->blocks[SNAP_DATA] = nblocks(s->data_size);
	if (v2) {
		s->sums[SNAP_BIN] = s->bin + tab;
		s->sums[SNAP_DATA] = s->data + s->data_size;
	}
	if (bitmap_new(s, SNAP_BIN, !v2) || bitmap_new(s, SNAP_DATA, !v2))
		return kyro__fail(msg, ENOMEM, "cannot open '%s'", s->bin_path);
	int rc = v2 ? snap_check(msg, s, SNAP_BIN, offs_at(s->n), 8)
		    : open_v1(msg, s);
	if (!rc && v2)
		rc = snap_check(msg, s, SNAP_BIN, offs_at(s->n) + 8 * s->n, 8);
	if (rc)
		return rc;
	if (s->offs[0] != SNAP_DATA_HDR || s->offs[s->n] != s->data_size)
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': offset %llu: payload offsets do not span "
			"the data file",
			s->bin_path, (unsigned long long)offs_at(s->n));
	return 0;
}

int kyro__snap_open(char *msg, struct snap *s, const char *dir, uint64_t gen,
		    uint64_t nkeys)
{
	memset(s, 0, sizeof *s);
	int rc = kyro__path_gen(s->bin_path, dir, "snap-", gen, ".bin");
	if (!rc)
		rc = kyro__path_gen(s->data_path, dir, "snap-", gen, ".data");
	if (rc)
		return kyro__fail(msg, rc, "cannot open a snapshot in '%s'",
				  dir);
	rc = map_file(msg, s->bin_path, &s->bin, &s->bin_len);
	if (!rc)
		rc = map_file(msg, s->data_path, &s->data, &s->data_len);
	if (!rc)
		rc = check_bin_header(msg, s, gen, nkeys);
	if (!rc)
		rc = check_data_header(msg, s, gen);
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
			report(arg, s->bin_path, offs_at(s->n),
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
			report(arg, s->bin_path, offs_at(s->n) + 8 * i, text);
			bad = 1;
			break;
		}
	}
	return bad ? KYRO_EDAMAGED : 0;
}

/* ---- writing ---- */

/* The writer keeps the whole .bin file as one image in memory, laid out
 * for CAP keys: header, keys, offsets at offs_at(cap), room for the block
 * table.  It goes to disk in one pass, and while it does, a struct snap
 * over it lets the learned index train on the keys (kyro__snap_writer_view).
 * The image is on huge pages: on a virtual machine a 4 KiB page fault can
 * cost 10 us, so 160 MB of them cost more than writing the file. */
static uint64_t image_len(uint64_t cap)
{
	return bin_table_at(cap) + 8 * nblocks(bin_table_at(cap));
}

static int image_alloc(struct snap_writer *w, uint64_t cap)
{
	unsigned char *img = kyro__fs_alloc_huge(image_len(cap));
	if (!img)
		return ENOMEM;
	if (w->img) {
		memcpy(img + SNAP_BIN_HDR, w->keys, 8 * w->n);
		memcpy(img + offs_at(cap), w->offs, 8 * w->n);
		kyro__fs_free_huge(w->img, image_len(w->cap));
	}
	w->img = img;
	w->cap = cap;
	w->keys = (uint64_t *)(img + SNAP_BIN_HDR);
	w->offs = (uint64_t *)(img + offs_at(cap));
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
	memcpy(hdr, data_magic, 8);
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
	uint64_t n = w->n, tab = bin_table_at(n);
	w->offs[n] = w->data_pos;
	if (n < w->cap)
		memmove(h + offs_at(n), w->offs, 8 * (n + 1));
	w->offs = (uint64_t *)(h + offs_at(n));
	memset(h + SNAP_BIN_HDR + 8 * n, 0, offs_at(n) - SNAP_BIN_HDR - 8 * n);
	memset(h, 0, SNAP_BIN_HDR);
	memcpy(h, bin_magic, 8);
	put_le32(h + 8, SNAP_VERSION);
	put_le32(h + 12, SNAP_BIN_HDR);
	put_le64(h + 16, w->gen);
	put_le64(h + 24, n);
	put_le64(h + 32, last_seq);
	put_le64(h + 40, w->data_pos);
	put_le64(h + 48, SNAP_BIN_HDR);
	put_le64(h + 56, offs_at(n));
	put_le64(h + 64, tab);
	put_le64(h + 72, nblocks(tab));
	put_le64(h + 80, nblocks(w->data_pos));
	put_le64(h + 120, XXH3_64bits(h, 120));
	/* Blocks are whole but the last: hash them in place, no state. */
	for (uint64_t b = 0; b < nblocks(tab); b++) {
		uint64_t off = b << SNAP_BLOCK_SHIFT;
		uint64_t len = tab - off < SNAP_BLOCK ? tab - off : SNAP_BLOCK;
		put_le64(h + tab + 8 * b,
			 XXH3_64bits_withSeed(h + off, (size_t)len, b));
	}
	w->img_len = tab + 8 * nblocks(tab);
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
	KYRO_VERIFY(w->sums->n == nblocks(w->data_pos));
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
	s->sums[SNAP_BIN] = w->img + bin_table_at(w->n);
	s->blocks[SNAP_BIN] = nblocks(bin_table_at(w->n));
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
	*bytes = w->data_pos + 8 * nblocks(w->data_pos) + w->img_len;
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
