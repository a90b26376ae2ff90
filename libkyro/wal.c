/*
 * wal.c - write-ahead log segments.
 *
 * A segment is wal-SSSSSSSSSSSSSSSS.log (S = segment id, 16 hex digits).
 * Integers are little-endian.  Header, 48 bytes:
 *
 *    0  8  magic "KYROWALS"
 *    8  4  format version: 2 (1 is still read: the same layout, but a
 *          version-1 segment holds no VECTOR record; one there is
 *          invalid like any record of an unknown type)
 *   12  4  header size (48)
 *   16  8  segment id
 *   24  8  first sequence number: the seq the first record will carry
 *   32  8  reserved, zero
 *   40  8  XXH3-64 of bytes 0..39
 *
 * Then records, each starting at a multiple of 8:
 *
 *    0  8  checksum: XXH3-64, seeded with the segment id, of bytes 8 up to
 *          the end of the value (so the length, type and sequence number
 *          are covered: a corrupt length cannot send the reader astray)
 *    8  4  value length L (0..16 MiB; 0 for DELETE and COMMIT; for
 *          VECTOR a multiple of 4 from 4 to 4 * 65536)
 *   12  1  type: 1 PUT, 2 DELETE, 3 COMMIT, 4 VECTOR (the key's vector:
 *          L / 4 float32, little-endian; version 2 segments only)
 *   13  3  reserved, zero
 *   16  8  sequence number
 *   24  8  key (COMMIT: the number of records in the batch)
 *   32  L  value
 *      ..  zero padding to a multiple of 8 (outside the checksum, but a
 *          record whose padding is not zero is invalid)
 *
 * Sequence numbers rise by one per PUT, DELETE or VECTOR across all
 * segments.  A PUT sets a key's value, a VECTOR its vector; a DELETE
 * removes both.  A batch is a run of PUT/DELETE/VECTOR records closed by
 * a COMMIT whose seq is the
 * batch's last seq and whose key is the batch's record count.  Only closed
 * batches exist for readers: a batch without its COMMIT is not there.
 *
 * Recovery.  A reader walks records from the header.  If a record is
 * incomplete or fails its checks, it looks for any valid record later in
 * the file (any 8-aligned offset whose header is plausible, whose seq is
 * larger than the last good one and whose checksum matches):
 *   - none: the segment ends in a torn tail (a crash mid-write).  The log
 *     ends at the last COMMIT; the next writer truncates the rest (and
 *     fsyncs the truncation before it appends, so stale records can never
 *     reappear behind new ones).
 *   - one: the bad record is corruption, reported with its byte offset;
 *     nothing after it is used and no writer appends.
 * A valid record with the wrong sequence number, or a COMMIT that does not
 * match its batch, is corruption too.  Caveat: with --sync=none, a power
 * failure may persist later pages of the last batch but not earlier ones;
 * that is reported as corruption rather than guessed to be a torn tail.
 * A header that fails its checks makes the segment unreadable; a version
 * other than 1 or 2 is a newer format only when the header checksum
 * holds.  A writer never appends to a version-1 segment: it first rotates
 * to a new one (writer.c), so no segment mixes versions.
 *
 * Readers hold no lock, so a torn tail may be cut under them: past the
 * committed end a writer published they read with pread, never through a
 * mapping, whose pages past a cut would fault (kyro__wal_scan_unlocked).
 *
 * Writers check every live byte they have not checked themselves before
 * they append, and stop when the shared page (shared.c) says more was
 * committed than the complete batches reach: that is lost data, not a torn
 * tail.  kyro-verify --repair (verify.c) cuts a torn tail; when committed
 * data is known lost it keeps a copy of what it cuts in lost+found/ and
 * reports the lost sequence numbers; it rewrites a damaged header from
 * the file name and the sequence chain.  docs/FORMAT.md has the details.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
/* Inline XXH3: one call into the shared library per 48-byte record cost
 * more than the hashing (the header-only build is the same function). */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "fsio.h"
#include "internal.h"
#include "wal.h"

static const char magic[8] = "KYROWALS";

#define WAL_BUFCAP ((size_t)1 << 20)

void kyro__wal_header_encode(unsigned char *b, uint64_t seg, uint64_t first_seq)
{
	memset(b, 0, WAL_HDR);
	memcpy(b, magic, 8);
	put_le32(b + 8, WAL_VERSION);
	put_le32(b + 12, WAL_HDR);
	put_le64(b + 16, seg);
	put_le64(b + 24, first_seq);
	put_le64(b + 40, XXH3_64bits(b, 40));
}

int kyro__wal_header_check(char *msg, const unsigned char *b, uint64_t len,
			   const char *path, uint64_t seg, uint64_t *first_seq)
{
	if (len < 16 || memcmp(b, magic, 8) != 0)
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': offset 0: not a WAL segment (bad magic)", path);
	if (get_le32(b + 8) != WAL_VERSION && get_le32(b + 8) != 1)
		return kyro__failx(
			msg, KYRO_EVERSION,
			"'%s' has format version %u; this build reads "
			"versions 1 to %u",
			path, get_le32(b + 8), WAL_VERSION);
	if (len < WAL_HDR || get_le32(b + 12) != WAL_HDR ||
	    get_le64(b + 40) != XXH3_64bits(b, 40) || get_le64(b + 32) != 0)
		return kyro__failx(msg, KYRO_ECORRUPT,
				   "'%s': offset 0: bad segment header", path);
	if (get_le64(b + 16) != seg)
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': offset 16: segment id %llu, expected %llu", path,
			(unsigned long long)get_le64(b + 16),
			(unsigned long long)seg);
	*first_seq = get_le64(b + 24);
	return 0;
}

/* The highest record type a segment of the version in header B (LEN
 * bytes of it) may hold; a header too short to tell, or damaged, gets
 * the newest version's (its records are judged by the scan alone). */
static int seg_maxtype(const unsigned char *b, uint64_t len)
{
	return len >= 12 && get_le32(b + 8) == 1 ? WAL_COMMIT : WAL_VEC;
}

/* Can a record of TYPE carry VLEN value bytes? */
static int len_fits(unsigned type, uint32_t vlen)
{
	if (type == WAL_PUT)
		return vlen <= KYRO_MAX_VALUE;
	if (type == WAL_VEC)
		return vlen && vlen % 4 == 0 && vlen <= WAL_VEC_MAX_BYTES;
	return vlen == 0;
}

/* Does a valid record start at OFF?  Returns its size, or 0.  MAXTYPE is
 * the highest type the segment's version allows. */
static uint64_t rec_valid(const unsigned char *base, uint64_t len,
			  uint64_t seg, uint64_t off, int maxtype)
{
	if (len - off < WAL_REC_HDR)
		return 0;
	const unsigned char *p = base + off;
	uint32_t vlen = get_le32(p + 8);
	uint8_t type = p[12];
	if (type < WAL_PUT || type > maxtype || p[13] || p[14] || p[15])
		return 0;
	if (!len_fits(type, vlen))
		return 0;
	uint64_t size = WAL_REC_HDR + align8(vlen);
	if (size > len - off)
		return 0;
	if (XXH3_64bits_withSeed(p + 8, WAL_REC_HDR - 8 + vlen, seg) !=
	    get_le64(p))
		return 0;
	/* The checksum stops at the value; the padding after it is held to
	 * the zeros every writer puts there, so that no byte of a record
	 * can change unnoticed. */
	for (uint64_t i = WAL_REC_HDR + vlen; i < size; i++)
		if (p[i])
			return 0;
	return size;
}

/* Could a record at file offset P follow LAST_SEQ, the damage being at
 * OFF (see valid_after())?  The cheap header tests, before any checksum:
 * a zero-filled tail costs a few loads per 8 bytes. */
static int plausible_at(const unsigned char *h, uint64_t p, uint64_t off,
			uint64_t last_seq, int maxtype)
{
	uint64_t seq = get_le64(h + 16);
	return h[12] >= WAL_PUT && h[12] <= maxtype && !h[13] && !h[14] &&
	       !h[15] && seq > last_seq &&
	       seq <= last_seq + 1 + (p - off) / WAL_REC_HDR;
}

/* Is there any valid record after OFF that could follow LAST_SEQ?  Its
 * seq must be above LAST_SEQ and no further than the records that fit in
 * between allow: a value may hold bytes that look like a record (a WAL
 * stored as a value), and such a stowaway must not turn a torn tail into
 * "corruption".  The search starts inside the bad record on purpose: its
 * length may be the damaged field. */
static int valid_after(const unsigned char *base, uint64_t len, uint64_t seg,
		       uint64_t off, uint64_t last_seq, int maxtype)
{
	for (uint64_t p = off + 8; p + WAL_REC_HDR <= len; p += 8)
		if (plausible_at(base + p, p, off, last_seq, maxtype) &&
		    rec_valid(base, len, seg, p, maxtype))
			return 1;
	return 0;
}

/* Where a scan stands between two records. */
struct scan_cursor {
	uint64_t off;      /* file offset of the next record */
	uint64_t expect;   /* the sequence number it must carry */
	uint64_t in_batch; /* records of the open batch before it */
	kyro__wal_rec_fn fn; /* given each record that passed, or NULL */
	void *arg;
	int rc; /* what FN returned to stop the scan */
	uint64_t max_batches; /* stop after this many */
	int stopped;          /* ... and did */
	int maxtype;          /* the highest type the segment may hold */
};

static void scan_bad(struct wal_scan *r, uint64_t off)
{
	r->status = KYRO_ECORRUPT;
	r->bad_off = off;
}

/* Step over the valid records in BUF, which holds BLEN bytes of the
 * segment from file offset BOFF on, starting at C->off.  Stops at the
 * first record that is invalid or not whole in BUF, with C->off at it,
 * and returns 0; returns KYRO_ECORRUPT, with R saying why, when a valid
 * record breaks the sequence. */
static int scan_step(const unsigned char *buf, uint64_t boff, uint64_t blen,
		     uint64_t seg, struct scan_cursor *c, struct wal_scan *r)
{
	for (;;) {
		uint64_t rel = c->off - boff;
		uint64_t size =
			rel < blen ? rec_valid(buf, blen, seg, rel, c->maxtype)
				   : 0;
		if (!size)
			return 0;
		const unsigned char *p = buf + rel;
		uint64_t seq = get_le64(p + 16);
		if (p[12] == WAL_COMMIT) {
			uint64_t n = get_le64(p + 24);
			if (c->in_batch == 0 || n != c->in_batch ||
			    seq != c->expect - 1) {
				scan_bad(r, c->off);
				snprintf(r->why, sizeof r->why,
					 "commit record (seq %llu, %llu "
					 "records) does not match its batch",
					 (unsigned long long)seq,
					 (unsigned long long)n);
				return KYRO_ECORRUPT;
			}
			r->records += c->in_batch;
			r->batches++;
			c->in_batch = 0;
			r->end = c->off + size;
			r->last_seq = seq;
		} else {
			if (seq != c->expect) {
				scan_bad(r, c->off);
				snprintf(r->why, sizeof r->why,
					 "sequence number %llu, expected %llu",
					 (unsigned long long)seq,
					 (unsigned long long)c->expect);
				return KYRO_ECORRUPT;
			}
			c->expect++;
			c->in_batch++;
		}
		if (c->fn) {
			struct wal_rec rec;
			wal_rec_at(buf, rel, &rec);
			if ((c->rc = c->fn(c->arg, c->off, &rec)) != 0)
				return c->rc;
		}
		c->off += size;
		if (p[12] == WAL_COMMIT && r->batches == c->max_batches) {
			c->stopped = 1;
			return 0;
		}
	}
}

/* The scan stopped at C->off in a segment of LEN bytes: corruption if
 * FOLLOWS (a valid record lies after C->off), else a torn tail when
 * anything lies after the last complete batch. */
static void scan_conclude(const struct scan_cursor *c, struct wal_scan *r,
			  uint64_t len, int follows)
{
	if (c->off < len && follows) {
		scan_bad(r, c->off);
		snprintf(r->why, sizeof r->why,
			 "record fails its checksum or framing, and valid "
			 "records follow");
		return;
	}
	if (r->end < len) {
		r->status = KYRO_ETORN;
		r->bad_off = r->end;
		snprintf(r->why, sizeof r->why,
			 "torn tail: %llu bytes after the last complete batch",
			 (unsigned long long)(len - r->end));
	}
}

/* The same, when BUF (from file offset BOFF) reaches the end. */
static void scan_finish(const unsigned char *buf, uint64_t boff, uint64_t blen,
			uint64_t seg, const struct scan_cursor *c,
			struct wal_scan *r)
{
	scan_conclude(c, r, boff + blen,
		      c->off < boff + blen &&
			      valid_after(buf, blen, seg, c->off - boff,
					  c->expect - 1, c->maxtype));
}

static void scan_init(struct wal_scan *r, struct scan_cursor *c,
		      uint64_t start, uint64_t next_seq)
{
	memset(r, 0, sizeof *r);
	r->end = start;
	r->last_seq = next_seq - 1;
	*c = (struct scan_cursor){.off = start,
				  .expect = next_seq,
				  .max_batches = UINT64_MAX,
				  .maxtype = WAL_VEC};
}

void kyro__wal_scan(const unsigned char *base, uint64_t len, uint64_t seg,
		    uint64_t start, uint64_t next_seq, struct wal_scan *r)
{
	struct scan_cursor c;
	scan_init(r, &c, start, next_seq);
	c.maxtype = seg_maxtype(base, len);
	if (!scan_step(base, 0, len, seg, &c, r))
		scan_finish(base, 0, len, seg, &c, r);
}

void kyro__wal_scan_batch(const unsigned char *base, uint64_t len,
			  uint64_t seg, uint64_t start, uint64_t next_seq,
			  struct wal_scan *r)
{
	struct scan_cursor c;
	scan_init(r, &c, start, next_seq);
	c.maxtype = seg_maxtype(base, len);
	c.max_batches = 1;
	if (!scan_step(base, 0, len, seg, &c, r) && !c.stopped)
		scan_finish(base, 0, len, seg, &c, r);
}

/* How many bytes the record at REL of BUF (BLEN bytes) claims, when its
 * header is whole and plausible; 0 when it cannot be a record at all. */
static uint64_t rec_claims(const unsigned char *buf, uint64_t blen,
			   uint64_t rel)
{
	if (blen - rel < WAL_REC_HDR)
		return WAL_REC_HDR;
	const unsigned char *p = buf + rel;
	uint32_t vlen = get_le32(p + 8);
	if (p[12] < WAL_PUT || p[12] > WAL_VEC || p[13] || p[14] || p[15] ||
	    !len_fits(p[12], vlen))
		return 0;
	return WAL_REC_HDR + align8(vlen);
}

#define SCAN_BUF ((size_t)1 << 18)

static int shrank(char *msg, const char *path)
{
	return kyro__failx(msg, KYRO_ECORRUPT, "'%s' shrank while it was read",
			   path);
}

/* valid_after() for the file open as FD (LEN bytes), read with pread in
 * windows of *CAP bytes through *BUF (grown for a record that does not
 * fit).  No mapping: bytes past the last complete batch are the next
 * writer's to cut, and a mapped page past a cut faults (SIGBUS). */
static int valid_after_fd(char *msg, int fd, const char *path, uint64_t *lenp,
			  int cut_ok, uint64_t seg, const struct scan_cursor *c,
			  unsigned char **buf, size_t *cap, int *found)
{
	uint64_t len = *lenp;
	uint64_t off = c->off, last_seq = c->expect - 1;
	uint64_t p = off + 8;
	size_t got;
	*found = 0;
	while (p + WAL_REC_HDR <= len) {
		uint64_t boff = p, blen = len - boff;
		if (blen > *cap)
			blen = *cap;
		int rc = kyro__fs_pread_all(msg, fd, *buf, (size_t)blen, boff,
					    path, &got);
		if (rc)
			return rc;
		if (got != blen && !cut_ok)
			return shrank(msg, path);
		if (got != blen) /* cut: the file ends here now */
			*lenp = len = boff + (blen = got);
		for (; p + WAL_REC_HDR <= boff + blen; p += 8) {
			const unsigned char *h = *buf + (p - boff);
			if (!plausible_at(h, p, off, last_seq, c->maxtype) ||
			    !len_fits(h[12], get_le32(h + 8)))
				continue;
			uint64_t size = WAL_REC_HDR + align8(get_le32(h + 8));
			if (size > len - p)
				continue;
			if (p + size <= boff + blen) {
				if (rec_valid(*buf, blen, seg, p - boff,
					      c->maxtype)) {
					*found = 1;
					return 0;
				}
				continue;
			}
			/* The record runs past the window: read it whole,
			 * from its start, and go on from there. */
			if (size > *cap) {
				unsigned char *b = realloc(*buf, size);
				if (!b)
					return kyro__fail(msg, ENOMEM,
							  "cannot read '%s'",
							  path);
				*buf = b;
				*cap = size;
			}
			break;
		}
	}
	return 0;
}

/* kyro__wal_scan_fd(); with CUT_OK, a file that shrinks under the scan
 * ends where the reads find it ending, and *LENP gets that. */
static int scan_fd(char *msg, int fd, const char *path, uint64_t *lenp,
		   int cut_ok, uint64_t seg, uint64_t start, uint64_t next_seq,
		   kyro__wal_rec_fn fn, void *arg, struct wal_scan *r)
{
	uint64_t len = *lenp;
	struct scan_cursor c;
	size_t cap = SCAN_BUF, got;
	unsigned char *buf = malloc(cap);
	int rc = 0;
	scan_init(r, &c, start, next_seq);
	c.fn = fn;
	c.arg = arg;
	if (!buf)
		return kyro__fail(msg, ENOMEM, "cannot read '%s'", path);
	/* The records a segment may hold depend on its header's version. */
	rc = kyro__fs_pread_all(msg, fd, buf, 12, 0, path, &got);
	if (rc) {
		free(buf);
		return rc;
	}
	c.maxtype = seg_maxtype(buf, got);
	while (!rc && c.off < len) {
		uint64_t boff = c.off, blen = len - boff;
		if (blen > cap)
			blen = cap;
		rc = kyro__fs_pread_all(msg, fd, buf, (size_t)blen, boff, path,
					&got);
		if (rc)
			break;
		if (got != blen && !cut_ok) {
			rc = shrank(msg, path);
			break;
		}
		if (got != blen) /* cut: the file ends here now */
			*lenp = len = boff + (blen = got);
		if (scan_step(buf, boff, blen, seg, &c, r))
			break;
		if (boff + blen == len) {
			scan_finish(buf, boff, blen, seg, &c, r);
			break;
		}
		/* Stopped short of the end: a record the buffer cut reads
		 * on from there (in a buffer it fits); any other stop is
		 * decided on the rest of the file. */
		uint64_t rel = c.off - boff, need = rec_claims(buf, blen, rel);
		if (need && rel + need > blen && (rel || need > cap)) {
			if (need > cap) {
				unsigned char *b = realloc(buf, need);
				if (!b) {
					rc = kyro__fail(msg, ENOMEM,
							"cannot read '%s'",
							path);
					break;
				}
				buf = b;
				cap = need;
			}
			continue;
		}
		int follows;
		rc = valid_after_fd(msg, fd, path, lenp, cut_ok, seg, &c, &buf,
				    &cap, &follows);
		if (!rc)
			scan_conclude(&c, r, *lenp, follows);
		break;
	}
	free(buf);
	return rc ? rc : c.rc;
}

int kyro__wal_scan_fd(char *msg, int fd, const char *path, uint64_t len,
		      uint64_t seg, uint64_t start, uint64_t next_seq,
		      kyro__wal_rec_fn fn, void *arg, struct wal_scan *r)
{
	return scan_fd(msg, fd, path, &len, 0, seg, start, next_seq, fn, arg,
		       r);
}

int kyro__wal_scan_unlocked(char *msg, const char *path, uint64_t seg,
			    uint64_t start, uint64_t next_seq,
			    struct wal_scan *r, uint64_t *size)
{
	struct wal_scan prev = {.status = 0};
	int fd, rc = kyro__fs_open(msg, path, O_RDONLY, 0, &fd);
	if (rc)
		return rc;
	/* A writer may cut the tail and append again while we read.  A cut
	 * under the scan ends the file where the reads find it ending: the
	 * complete batches before it are the same either way.  But the bytes
	 * of one pass may straddle a cut and a new append, which can look
	 * like damage: corruption counts only when two scans in a row find
	 * it at one place. */
	for (int tries = 0;; tries++) {
		if ((rc = kyro__fs_size(msg, fd, path, size)) != 0)
			break;
		if (*size < start) {
			rc = shrank(msg, path);
			break;
		}
		rc = scan_fd(msg, fd, path, size, 1, seg, start, next_seq, NULL,
			     NULL, r);
		if (rc || r->status != KYRO_ECORRUPT || tries == 8 ||
		    (prev.status == KYRO_ECORRUPT && prev.bad_off == r->bad_off))
			break;
		prev = *r;
	}
	kyro__fs_close(fd);
	return rc;
}

void kyro__wal_commits_after(const unsigned char *base, uint64_t len,
			     uint64_t seg, uint64_t off, uint64_t last_seq,
			     uint64_t *batches, uint64_t *max_seq)
{
	int maxtype = seg_maxtype(base, len);
	for (uint64_t p = off & ~(uint64_t)7; p + WAL_REC_HDR <= len;) {
		uint64_t size = rec_valid(base, len, seg, p, maxtype);
		if (!size) {
			p += 8;
			continue;
		}
		uint64_t seq = get_le64(base + p + 16);
		if (base[p + 12] == WAL_COMMIT && seq > last_seq) {
			++*batches;
			if (seq > *max_seq)
				*max_seq = seq;
		}
		p += size;
	}
}

struct id_list {
	uint64_t below, *ids;
	size_t n, cap;
};

static int add_id(void *arg, const char *name)
{
	struct id_list *l = arg;
	unsigned long long id;
	char tail[16];
	if (sscanf(name, "wal-%16llx.%15s", &id, tail) != 2 ||
	    strcmp(tail, "log") != 0 || strlen(name) != 24 || id >= l->below)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		uint64_t *p = realloc(l->ids, cap * sizeof *p);
		if (!p)
			return ENOMEM;
		l->ids = p;
		l->cap = cap;
	}
	l->ids[l->n++] = id;
	return 0;
}

static int by_id_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x < y) - (x > y);
}

int kyro__wal_list_below(char *msg, const char *dir, uint64_t below,
			 uint64_t **ids, size_t *n)
{
	struct id_list l = {.below = below};
	int rc = kyro__fs_list_dir(msg, dir, add_id, &l);
	if (rc == ENOMEM)
		rc = kyro__fail(msg, rc, "cannot list '%s'", dir);
	if (rc) {
		free(l.ids);
		l.ids = NULL;
		l.n = 0;
	} else if (l.n) {
		qsort(l.ids, l.n, sizeof *l.ids, by_id_desc);
	}
	*ids = l.ids;
	*n = l.n;
	return rc;
}

size_t kyro__wal_history_len(const uint64_t *ids, size_t n, uint64_t first)
{
	size_t i = 0;
	while (i < n && ids[i] == first - 1 - i)
		i++;
	return i;
}

int kyro__wal_create(char *msg, const char *dir, uint64_t seg,
		     uint64_t first_seq)
{
	char path[PATH_MAX];
	unsigned char hdr[WAL_HDR];
	int fd = -1, rc = kyro__path_gen(path, dir, "wal-", seg, ".log");
	if (rc)
		return kyro__fail(msg, rc,
				  "cannot create a WAL segment in '%s'", dir);
	/* A segment of this id can only be the leftover of a crash between
	 * creating it and committing the manifest that names it. */
	rc = kyro__fs_unlink(msg, path);
	if (!rc)
		rc = kyro__fs_open(msg, path, O_WRONLY | O_CREAT | O_EXCL, 0644,
				   &fd);
	if (rc)
		return rc;
	kyro__wal_header_encode(hdr, seg, first_seq);
	rc = kyro__fs_write_all(msg, fd, hdr, sizeof hdr, path);
	if (!rc)
		rc = kyro__fs_fsync(msg, fd, path);
	kyro__fs_close(fd);
	if (!rc)
		rc = kyro__fs_fsync_dir(msg, dir);
	return rc;
}

/* The version in the segment's header (checked by the caller). */
static int writer_version(char *msg, struct wal_writer *w)
{
	unsigned char b[12];
	size_t got;
	int rc = kyro__fs_pread_all(msg, w->fd, b, sizeof b, 0, w->path, &got);
	if (!rc && got != sizeof b)
		rc = kyro__failx(msg, KYRO_ECORRUPT,
				 "'%s': offset 0: bad segment header",
				 w->path);
	if (!rc)
		w->version = get_le32(b + 8);
	return rc;
}

int kyro__wal_writer_open(char *msg, struct wal_writer *w, const char *dir,
			  uint64_t seg, uint64_t committed, uint64_t next_seq,
			  int durable)
{
	struct fs_id id = {0};
	uint64_t size;
	int rc;
	memset(w, 0, sizeof *w);
	w->fd = -1;
	rc = kyro__path_gen(w->path, dir, "wal-", seg, ".log");
	if (rc)
		return kyro__fail(msg, rc, "cannot open a WAL segment in '%s'",
				  dir);
	rc = kyro__fs_open(msg, w->path, O_RDWR, 0, &w->fd);
	if (!rc)
		rc = kyro__fs_id(msg, w->fd, w->path, &id);
	size = id.size;
	w->dev = id.dev;
	w->ino = id.ino;
	if (!rc)
		rc = writer_version(msg, w);
	if (!rc && size < committed)
		rc = kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': file is %llu bytes, but %llu were committed",
			w->path, (unsigned long long)size,
			(unsigned long long)committed);
	if (!rc && size > committed) {
		rc = kyro__fs_truncate(msg, w->fd, committed, w->path);
		if (!rc && durable)
			rc = kyro__fs_fsync(msg, w->fd, w->path);
	}
	if (!rc)
		rc = kyro__fs_seek(msg, w->fd, committed, w->path);
	if (!rc && !(w->buf = malloc(WAL_BUFCAP)))
		rc = kyro__fail(msg, ENOMEM, "cannot allocate a WAL buffer");
	if (rc) {
		kyro__wal_writer_close(w);
		return rc;
	}
	w->seg = seg;
	w->bufcap = WAL_BUFCAP;
	w->committed = w->pos = committed;
	w->next_seq = next_seq;
	return 0;
}

void kyro__wal_writer_close(struct wal_writer *w)
{
	kyro__fs_close(w->fd);
	free(w->buf);
	w->fd = -1;
	w->buf = NULL;
}

int kyro__wal_flush(char *msg, struct wal_writer *w)
{
	if (w->buflen == 0)
		return 0;
	int rc = kyro__fs_write_all(msg, w->fd, w->buf, w->buflen, w->path);
	if (rc)
		return rc;
	w->buflen = 0;
	return 0;
}

int kyro__wal_sync(char *msg, struct wal_writer *w)
{
	int rc = kyro__wal_flush(msg, w);
	if (!rc)
		rc = kyro__fs_fsync(msg, w->fd, w->path);
	return rc;
}

static void rec_header(unsigned char *h, int type, uint32_t len, uint64_t seq,
		       uint64_t key)
{
	memset(h, 0, WAL_REC_HDR);
	put_le32(h + 8, len);
	h[12] = (unsigned char)type;
	put_le64(h + 16, seq);
	put_le64(h + 24, key);
}

/* A value too large for the buffer goes out in three writes, its checksum
 * computed by streaming, so no record ever needs a second copy. */
static int append_large(char *msg, struct wal_writer *w, unsigned char *h,
			const void *val, size_t len)
{
	static const unsigned char zeros[8];
	XXH3_state_t *st = XXH3_createState();
	if (!st)
		return kyro__fail(msg, ENOMEM, "cannot append to '%s'",
				  w->path);
	XXH3_64bits_reset_withSeed(st, w->seg);
	XXH3_64bits_update(st, h + 8, WAL_REC_HDR - 8);
	XXH3_64bits_update(st, val, len);
	put_le64(h, XXH3_64bits_digest(st));
	XXH3_freeState(st);
	int rc = kyro__wal_flush(msg, w);
	if (!rc)
		rc = kyro__fs_write_all(msg, w->fd, h, WAL_REC_HDR, w->path);
	if (!rc)
		rc = kyro__fs_write_all(msg, w->fd, val, len, w->path);
	if (!rc)
		rc = kyro__fs_write_all(msg, w->fd, zeros, align8(len) - len,
					w->path);
	return rc;
}

int kyro__wal_append(char *msg, struct wal_writer *w, int type, uint64_t key,
		     const void *val, size_t len, uint64_t *seq)
{
	uint64_t size = WAL_REC_HDR + align8(len);
	uint64_t s = type == WAL_COMMIT ? w->next_seq - 1 : w->next_seq;
	int rc;
	if (size > w->bufcap) {
		unsigned char h[WAL_REC_HDR];
		rec_header(h, type, (uint32_t)len, s, key);
		rc = append_large(msg, w, h, val, len);
	} else {
		if (w->buflen + size > w->bufcap &&
		    (rc = kyro__wal_flush(msg, w)) != 0)
			return rc;
		unsigned char *h = w->buf + w->buflen;
		rec_header(h, type, (uint32_t)len, s, key);
		if (len)
			memcpy(h + WAL_REC_HDR, val, len);
		memset(h + WAL_REC_HDR + len, 0, align8(len) - len);
		put_le64(h, XXH3_64bits_withSeed(h + 8, WAL_REC_HDR - 8 + len,
						 w->seg));
		w->buflen += size;
		rc = 0;
	}
	if (rc)
		return rc;
	w->pos += size;
	if (type != WAL_COMMIT) {
		w->next_seq++;
		w->batch_count++;
	}
	if (seq)
		*seq = s;
	return 0;
}

int kyro__wal_commit(char *msg, struct wal_writer *w)
{
	if (w->batch_count == 0)
		return 0;
	int rc = kyro__wal_append(msg, w, WAL_COMMIT, w->batch_count, NULL, 0,
				  NULL);
	if (!rc)
		rc = kyro__wal_flush(msg, w);
	return rc;
}

void kyro__wal_mark_committed(struct wal_writer *w)
{
	w->committed = w->pos;
	w->batch_count = 0;
}

int kyro__wal_rollback(char *msg, struct wal_writer *w)
{
	w->next_seq -= w->batch_count;
	w->batch_count = 0;
	w->buflen = 0;
	w->pos = w->committed;
	int rc = kyro__fs_truncate(msg, w->fd, w->committed, w->path);
	if (!rc)
		rc = kyro__fs_seek(msg, w->fd, w->committed, w->path);
	return rc;
}
