/*
 * hnsw.c - the vector index file: layout, writing, opening, verifying.
 *
 * THE INDEX FILE (all integers little-endian, fixed width; offsets in
 * bytes from the file's start).  Laid out to be searched straight from a
 * read-only mapping: opening it deserialises nothing.
 *
 *   Header, 256 bytes
 *     0   8  magic "KYROHNSW" (4b 59 52 4f 48 4e 53 57)
 *     8   4  format version, 1
 *    12   4  header size, 256
 *    16   4  dimension d, 1..65536
 *    20   4  metric: 0 squared L2, 1 inner product (distance 1 - dot),
 *            2 cosine (vectors stored normalised; distance 1 - dot)
 *    24   8  node count n, < 2^32 - 1
 *    32   4  M: link slots per node on each upper level, 2..128
 *    36   4  M0: link slots per node on level 0, 2M
 *    40   4  efConstruction the graph was built with (informational)
 *    44   4  top level, the entry node's level, 0..31 (0 when n = 0)
 *    48   8  entry node, < n (0 when n = 0)
 *    56   8  the level generator's seed (informational)
 *    64   8  generation, and
 *    72   8  binding: two numbers the index's owner stores (the snapshot
 *            generation it was built from, and that snapshot's identity)
 *    80   8  S: floats from one vector to the next, d rounded up to 16
 *    88   8  U: upper-level link blocks
 *    96   8  offset of the vectors, 256
 *   104   8  offset of the keys
 *   112   8  offset of the levels
 *   120   8  offset of the upper index
 *   128   8  offset of the level-0 links
 *   136   8  offset of the upper links
 *   144   8  T: offset of the block checksum table
 *   152   8  B: blocks, ceil(T / 4096)
 *   160  88  reserved, zero
 *   248   8  XXH3-64 of bytes 0..247
 *   Sections, in this order, each starting at the offset above; each
 *   but the vectors is followed by zero bytes up to a multiple of 64, so
 *   every section is 64-byte aligned (an AVX-512 load is one line):
 *     vectors       n * S float32 (IEEE-754 binary32): node i's d
 *                   components, then S - d zeros
 *     keys          n u64, strictly ascending: node i's key
 *     levels        n u8: node i's top level, <= the top level
 *     upper index   n u32: the first of node i's upper link blocks; its
 *                   level-l block (1 <= l <= level) is that one + l - 1;
 *                   the blocks of nodes 0, 1, ... follow each other
 *     level-0 links n records of 4 (1 + M0) bytes: u32 count c <= M0,
 *                   then M0 u32 slots, the first c node ids
 *     upper links   U records of 4 (1 + M) bytes: count c <= M, M slots
 *   Block table, at T: B u64; entry b is XXH3-64, seeded with b, of
 *   bytes [4096 b, min(4096 (b + 1), T)).  The file is T + 8 B bytes.
 *
 * OPENING checks only what costs O(1): the size, the header's checksum
 * and fields (ranges above, M0 = 2M, S, and every offset equal to the one
 * the counts give), so an index of any size is usable at once.  A search
 * verifies each block against the table the first time it reads from it
 * (a bitmap remembers, per open index), reads no id from a link list
 * without checking it against n (and above level 0, against the node's
 * level and U), and so answers only from verified bytes: damage is
 * KYRO_ECORRUPT naming the file and offset, never a wrong neighbour.  The
 * table has no checksum of its own: a damaged entry fails its block.
 * kyro__hnsw_verify() checks every block and the whole graph.
 *
 * A version other than 1 is refused with KYRO_EVERSION (rebuild the
 * index); an index is never repaired, only rebuilt.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "fsio.h"
#include "hnsw.h"
#include "internal.h"

#define HNSW_MAGIC "KYROHNSW"
#define HNSW_VERSION 1
#define HNSW_HDR 256
#define HNSW_BLOCK ((uint64_t)1 << KYRO_HNSW_BLOCK_SHIFT)
#define WBUF (256 * HNSW_BLOCK)

struct layout {
	uint64_t vecs, keys, levels, upidx, adj0, upper, table, nblocks, size;
};

static uint64_t up64(uint64_t x) { return (x + 63) & ~(uint64_t)63; }

static void layout_of(uint64_t n, uint64_t stride, uint32_t m,
		      uint64_t nupper, struct layout *l)
{
	uint64_t o = HNSW_HDR;
	l->vecs = o;
	o += n * stride * 4;
	l->keys = o;
	o = up64(o + 8 * n);
	l->levels = o;
	o = up64(o + n);
	l->upidx = o;
	o = up64(o + 4 * n);
	l->adj0 = o;
	o = up64(o + 4 * n * (1 + 2 * (uint64_t)m));
	l->upper = o;
	o = up64(o + 4 * nupper * (1 + (uint64_t)m));
	l->table = o;
	l->nblocks = (o + HNSW_BLOCK - 1) / HNSW_BLOCK;
	l->size = o + 8 * l->nblocks;
}

void kyro__hnsw_free(struct kyro__hnsw *h)
{
	if (!h)
		return;
	if (h->map) {
		if (h->pinned)
			kyro__fs_free_huge(h->map, h->maplen);
		else
			kyro__fs_unmap(h->map, h->maplen);
		free((void *)h->ok);
		free(h->path);
	} else {
		free(h->vecs);
		free(h->keys);
		free(h->levels);
		free(h->upidx);
		free(h->adj0);
		free(h->upper);
	}
	free(h);
}

/* A file written through a buffer of whole blocks, each block hashed as
 * it leaves; the table is appended at the end. */
struct wfile {
	char *msg;
	const char *path;
	int fd;
	unsigned char *buf;
	size_t len;
	uint64_t blk; /* blocks hashed so far */
	unsigned char *sums;
};

static int wflush(struct wfile *w)
{
	for (size_t o = 0; o < w->len; o += HNSW_BLOCK, w->blk++) {
		const size_t take = w->len - o < HNSW_BLOCK ? w->len - o
							    : HNSW_BLOCK;
		put_le64(w->sums + 8 * w->blk,
			 XXH3_64bits_withSeed(w->buf + o, take, w->blk));
	}
	int rc = kyro__fs_write_all(w->msg, w->fd, w->buf, w->len, w->path);
	w->len = 0;
	return rc;
}

static int wput(struct wfile *w, const void *p, uint64_t n)
{
	const unsigned char *c = p;
	while (n) {
		size_t take = WBUF - w->len < n ? WBUF - w->len : (size_t)n;
		if (c)
			memcpy(w->buf + w->len, c, take);
		else
			memset(w->buf + w->len, 0, take);
		w->len += take;
		n -= take;
		if (c)
			c += take;
		if (w->len == WBUF) {
			int rc = wflush(w);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* Zero bytes from POS up to AT. */
static int wpad(struct wfile *w, uint64_t pos, uint64_t at)
{
	return wput(w, NULL, at - pos);
}

static void header_of(const struct kyro__hnsw *h, const struct layout *l,
		      unsigned char *b)
{
	memset(b, 0, HNSW_HDR);
	memcpy(b, HNSW_MAGIC, 8);
	put_le32(b + 8, HNSW_VERSION);
	put_le32(b + 12, HNSW_HDR);
	put_le32(b + 16, h->dim);
	put_le32(b + 20, h->metric);
	put_le64(b + 24, h->n);
	put_le32(b + 32, h->m);
	put_le32(b + 36, h->m0);
	put_le32(b + 40, h->efc);
	put_le32(b + 44, h->top);
	put_le64(b + 48, h->entry);
	put_le64(b + 56, h->seed);
	put_le64(b + 64, h->generation);
	put_le64(b + 72, h->binding);
	put_le64(b + 80, h->stride);
	put_le64(b + 88, h->nupper);
	put_le64(b + 96, l->vecs);
	put_le64(b + 104, l->keys);
	put_le64(b + 112, l->levels);
	put_le64(b + 120, l->upidx);
	put_le64(b + 128, l->adj0);
	put_le64(b + 136, l->upper);
	put_le64(b + 144, l->table);
	put_le64(b + 152, l->nblocks);
	put_le64(b + 248, XXH3_64bits(b, 248));
}

static int write_sections(struct wfile *w, const struct kyro__hnsw *h,
			  const struct layout *l)
{
	unsigned char hdr[HNSW_HDR];
	const uint64_t n = h->n;
	header_of(h, l, hdr);
	int rc;
	if ((rc = wput(w, hdr, HNSW_HDR)) ||
	    (rc = wput(w, h->vecs, 4 * n * h->stride)) ||
	    (rc = wput(w, h->keys, 8 * n)) ||
	    (rc = wpad(w, l->keys + 8 * n, l->levels)) ||
	    (rc = wput(w, h->levels, n)) ||
	    (rc = wpad(w, l->levels + n, l->upidx)) ||
	    (rc = wput(w, h->upidx, 4 * n)) ||
	    (rc = wpad(w, l->upidx + 4 * n, l->adj0)) ||
	    (rc = wput(w, h->adj0, 4 * n * (1 + (uint64_t)h->m0))) ||
	    (rc = wpad(w, l->adj0 + 4 * n * (1 + (uint64_t)h->m0), l->upper)) ||
	    (rc = wput(w, h->upper, 4 * h->nupper * (1 + (uint64_t)h->m))) ||
	    (rc = wpad(w, l->upper + 4 * h->nupper * (1 + (uint64_t)h->m),
		       l->table)) ||
	    (rc = wflush(w)))
		return rc;
	return kyro__fs_write_all(w->msg, w->fd, w->sums, 8 * l->nblocks,
				  w->path);
}

int kyro__hnsw_write(char *msg, const struct kyro__hnsw *h, const char *dir,
		     const char *path)
{
	char tmp[PATH_MAX];
	struct layout l;
	struct wfile w = {.msg = msg, .fd = -1};
	int rc;
	layout_of(h->n, h->stride, h->m, h->nupper, &l);
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return kyro__fail(msg, ENAMETOOLONG, "cannot write '%s'", path);
	w.path = tmp;
	w.buf = malloc(WBUF);
	w.sums = malloc(8 * l.nblocks);
	if (!w.buf || !w.sums) {
		rc = kyro__fail(msg, ENOMEM, "cannot write '%s'", path);
		goto out;
	}
	rc = kyro__fs_open(msg, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644, &w.fd);
	if (!rc)
		rc = write_sections(&w, h, &l);
	if (!rc)
		rc = kyro__fs_fsync(msg, w.fd, tmp);
	if (!rc)
		rc = kyro__fs_rename(msg, tmp, path);
	if (!rc)
		rc = kyro__fs_fsync_dir(msg, dir);
out:
	if (w.fd >= 0)
		kyro__fs_close(w.fd);
	if (rc && w.fd >= 0)
		kyro__fs_unlink(NULL, tmp);
	free(w.buf);
	free(w.sums);
	return rc;
}

int kyro__hnsw_check(char *msg, const struct kyro__hnsw *h, uint64_t off,
		     uint64_t len)
{
	if (!h->ok || len == 0)
		return 0;
	const uint64_t last = (off + len - 1) >> KYRO_HNSW_BLOCK_SHIFT;
	for (uint64_t b = off >> KYRO_HNSW_BLOCK_SHIFT; b <= last; b++) {
		_Atomic uint64_t *word = &h->ok[b >> 6];
		const uint64_t bit = (uint64_t)1 << (b & 63);
		if (atomic_load_explicit(word, memory_order_acquire) & bit)
			continue;
		const uint64_t at = b << KYRO_HNSW_BLOCK_SHIFT;
		const uint64_t take = h->covered - at < HNSW_BLOCK
					      ? h->covered - at
					      : HNSW_BLOCK;
		if (XXH3_64bits_withSeed(h->map + at, (size_t)take, b) !=
		    get_le64(h->sums + 8 * b))
			return kyro__failx(msg, KYRO_ECORRUPT,
					   "'%s': offset %llu: block fails its "
					   "checksum",
					   h->path, (unsigned long long)at);
		atomic_fetch_or_explicit(word, bit, memory_order_release);
	}
	return 0;
}

/* The header's fields into H, checked; L gets the layout they imply. */
static int parse_header(char *msg, const char *path, const unsigned char *b,
			uint64_t size, struct kyro__hnsw *h, struct layout *l)
{
	if (size < HNSW_HDR || memcmp(b, HNSW_MAGIC, 8) != 0)
		return kyro__failx(msg, KYRO_ECORRUPT,
				   "'%s' is not a vector index file", path);
	if (get_le32(b + 8) != HNSW_VERSION)
		return kyro__failx(msg, KYRO_EVERSION,
				   "'%s' has format version %u; this build "
				   "reads version %u: rebuild the index",
				   path, get_le32(b + 8), HNSW_VERSION);
	if (get_le64(b + 248) != XXH3_64bits(b, 248) ||
	    get_le32(b + 12) != HNSW_HDR)
		return kyro__failx(msg, KYRO_ECORRUPT,
				   "'%s': header fails its checksum", path);
	h->dim = get_le32(b + 16);
	h->metric = get_le32(b + 20);
	h->n = get_le64(b + 24);
	h->m = get_le32(b + 32);
	h->m0 = get_le32(b + 36);
	h->efc = get_le32(b + 40);
	h->top = get_le32(b + 44);
	h->entry = get_le64(b + 48);
	h->seed = get_le64(b + 56);
	h->generation = get_le64(b + 64);
	h->binding = get_le64(b + 72);
	h->stride = get_le64(b + 80);
	h->nupper = get_le64(b + 88);
	if (h->dim < 1 || h->dim > KYRO_HNSW_MAX_DIM ||
	    h->metric >= KYRO_VEC_NMETRICS || h->n >= UINT32_MAX ||
	    h->m < 2 || h->m > KYRO_HNSW_MAX_M || h->m0 != 2 * h->m ||
	    h->top > KYRO_HNSW_MAX_LEVEL ||
	    h->stride != ((h->dim + 15u) & ~(uint64_t)15) ||
	    h->nupper > KYRO_HNSW_MAX_LEVEL * h->n ||
	    (h->n ? h->entry >= h->n : h->entry || h->top))
		return kyro__failx(msg, KYRO_ECORRUPT,
				   "'%s': header fields out of range", path);
	layout_of(h->n, h->stride, h->m, h->nupper, l);
	if (get_le64(b + 96) != l->vecs || get_le64(b + 104) != l->keys ||
	    get_le64(b + 112) != l->levels || get_le64(b + 120) != l->upidx ||
	    get_le64(b + 128) != l->adj0 || get_le64(b + 136) != l->upper ||
	    get_le64(b + 144) != l->table || get_le64(b + 152) != l->nblocks)
		return kyro__failx(msg, KYRO_ECORRUPT,
				   "'%s': section offsets differ from the "
				   "counts",
				   path);
	if (size != l->size)
		return kyro__failx(msg, KYRO_ECORRUPT,
				   "'%s' is %llu bytes, its header says %llu",
				   path, (unsigned long long)size,
				   (unsigned long long)l->size);
	return 0;
}

static int map_file(char *msg, const char *path, struct kyro__hnsw *h,
		    struct layout *l)
{
	unsigned char hdr[HNSW_HDR];
	uint64_t size;
	size_t got = 0;
	int fd = -1;
	int rc = kyro__fs_open(msg, path, O_RDONLY, 0, &fd);
	if (!rc)
		rc = kyro__fs_size(msg, fd, path, &size);
	if (!rc)
		rc = kyro__fs_pread_all(msg, fd, hdr,
					size < HNSW_HDR ? size : HNSW_HDR, 0,
					path, &got);
	if (!rc)
		rc = parse_header(msg, path, hdr,
				  got < HNSW_HDR ? got : size, h, l);
	if (!rc)
		rc = kyro__fs_map(msg, fd, size, 0, path, (void **)&h->map);
	if (fd >= 0)
		kyro__fs_close(fd);
	if (!rc)
		h->maplen = size;
	return rc;
}

int kyro__hnsw_open(char *msg, const char *path, struct kyro__hnsw **out)
{
	struct kyro__hnsw *h = calloc(1, sizeof *h);
	struct layout l;
	int rc;
	*out = NULL;
	if (!h || !(h->path = strdup(path))) {
		free(h);
		return kyro__fail(msg, ENOMEM, "cannot open '%s'", path);
	}
	if ((rc = map_file(msg, path, h, &l))) {
		free(h->path);
		free(h);
		return rc;
	}
	h->ok = calloc((l.nblocks + 63) / 64, 8);
	if (!h->ok) {
		kyro__hnsw_free(h);
		return kyro__fail(msg, ENOMEM, "cannot open '%s'", path);
	}
	h->vecs = (float *)(void *)(h->map + l.vecs);
	h->keys = (uint64_t *)(void *)(h->map + l.keys);
	h->levels = h->map + l.levels;
	h->upidx = (uint32_t *)(void *)(h->map + l.upidx);
	h->adj0 = (uint32_t *)(void *)(h->map + l.adj0);
	h->upper = (uint32_t *)(void *)(h->map + l.upper);
	h->sums = h->map + l.table;
	h->nblocks = l.nblocks;
	h->covered = l.table;
	h->ops = kyro__vec_ops_best();
	kyro__fs_advise_random(h->map, h->maplen);
	*out = h;
	return 0;
}

static int bad(char *msg, const struct kyro__hnsw *h, uint64_t v,
	       const char *what)
{
	return kyro__failx(msg, KYRO_ECORRUPT, "'%s': node %llu: %s",
			   h->path ? h->path : "(index)",
			   (unsigned long long)v, what);
}

/* Every link of node V is in range, and above level 0 reaches only nodes
 * of that level. */
static int verify_node(char *msg, const struct kyro__hnsw *h, uint64_t v)
{
	for (int l = 0; l <= h->levels[v]; l++) {
		const uint32_t *ids;
		uint32_t cnt;
		int rc = kyro__hnsw_links(msg, h, v, l, &ids, &cnt);
		if (rc)
			return rc;
		for (uint32_t j = 0; j < cnt; j++)
			if (ids[j] >= h->n || h->levels[ids[j]] < l)
				return bad(msg, h, v, "link out of range");
	}
	return 0;
}

int kyro__hnsw_verify(char *msg, struct kyro__hnsw *h)
{
	int rc = kyro__hnsw_check(msg, h, 0, h->covered);
	if (rc)
		return rc;
	uint64_t next = 0;
	for (uint64_t v = 0; v < h->n; v++) {
		if (v && h->keys[v] <= h->keys[v - 1])
			return bad(msg, h, v, "keys out of order");
		if (h->levels[v] > h->top || h->upidx[v] != next)
			return bad(msg, h, v, "level or upper index wrong");
		next += h->levels[v];
		if ((rc = verify_node(msg, h, v)))
			return rc;
	}
	if (next != h->nupper || (h->n && h->levels[h->entry] != h->top))
		return bad(msg, h, h->entry, "levels disagree with the header");
	return 0;
}

int kyro__hnsw_pin(char *msg, struct kyro__hnsw *h)
{
	if (!h->map || h->pinned)
		return 0;
	unsigned char *m = kyro__fs_alloc_huge(h->maplen);
	if (!m)
		return kyro__fail(msg, ENOMEM, "cannot pin '%s'", h->path);
	memcpy(m, h->map, h->maplen);
	const ptrdiff_t d = m - h->map;
	h->vecs = (float *)(void *)((unsigned char *)h->vecs + d);
	h->keys = (uint64_t *)(void *)((unsigned char *)h->keys + d);
	h->levels += d;
	h->upidx = (uint32_t *)(void *)((unsigned char *)h->upidx + d);
	h->adj0 = (uint32_t *)(void *)((unsigned char *)h->adj0 + d);
	h->upper = (uint32_t *)(void *)((unsigned char *)h->upper + d);
	h->sums += d;
	kyro__fs_unmap(h->map, h->maplen);
	h->map = m;
	h->pinned = 1;
	/* The copy read every byte already: verify it all now, while it is
	 * in cache, so that no search pays for a first touch. */
	return kyro__hnsw_check(msg, h, 0, h->covered);
}
