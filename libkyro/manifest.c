/*
 * manifest.c - the MANIFEST file, the single commit point of a store.
 *
 * Format (version 2), 128 bytes, integers little-endian:
 *
 *    0  8  magic "KYROMANI"
 *    8  4  format version (2)
 *   12  4  size of the file in bytes (128)
 *   16  8  generation: +1 on every commit
 *   24  8  snapshot generation, 0 when there is no snapshot
 *   32  8  last sequence number held by the snapshot
 *   40  8  number of keys in the snapshot
 *   48  8  first live WAL segment id
 *   56  8  last live WAL segment id (the one writers append to)
 *   64  8  learned-index file id (rmi-ID.idx), 0 when none was built;
 *          it only grows, so an index file name is never reused
 *   72  8  snapshot generation that index serves; the index is live only
 *          while this equals the snapshot generation
 *   80  8  vectors: the snapshot generation when the snapshot has a
 *          vectors file (vec-GEN.vec, written with it), else 0
 *   88  8  vector-graph file id (hnsw-ID.idx), 0 when none was built;
 *          it only grows, like the learned index's
 *   96  8  snapshot generation that graph serves; live only while this
 *          equals the snapshot generation
 *  104 16  reserved, zero
 *  120  8  XXH3-64 of bytes 0..119
 *
 * Version 1 (the previous release) is still read: 96 bytes, the same
 * fields up to offset 80, then 8 reserved zero bytes and at 88 the XXH3-64
 * of bytes 0..87; it has no vectors (the fields above read as 0).  Every
 * manifest written now is version 2.
 * Rules.  The file is never written in place: a new one is written to
 * MANIFEST.tmp, fsynced, renamed over MANIFEST, and the directory fsynced;
 * the rename is the commit.  Every file it names was fsynced, with its
 * directory, before the rename.  A reader checks the magic, then the
 * version (a newer version is refused as such, before the checksum, since
 * its layout may differ), then the size and the checksum; any failure is
 * an error, never a reason to guess.  Files in the directory that the
 * manifest does not name are leftovers of an interrupted operation and
 * are removed by the next snapshot.
 */
#include <errno.h>
#include <fcntl.h>
#include <xxhash.h>

#include "fsio.h"
#include "internal.h"
#include "manifest.h"

static const char magic[8] = "KYROMANI";

void kyro__manifest_encode(const struct manifest *m, unsigned char *b)
{
	memset(b, 0, MANIFEST_SIZE);
	memcpy(b, magic, 8);
	put_le32(b + 8, MANIFEST_VERSION);
	put_le32(b + 12, MANIFEST_SIZE);
	put_le64(b + 16, m->gen);
	put_le64(b + 24, m->snap_gen);
	put_le64(b + 32, m->snap_seq);
	put_le64(b + 40, m->snap_keys);
	put_le64(b + 48, m->wal_first);
	put_le64(b + 56, m->wal_last);
	put_le64(b + 64, m->rmi_gen);
	put_le64(b + 72, m->rmi_snap);
	put_le64(b + 80, m->vec_snap);
	put_le64(b + 88, m->hnsw_gen);
	put_le64(b + 96, m->hnsw_snap);
	put_le64(b + 120, XXH3_64bits(b, 120));
}

int kyro__manifest_decode(char *msg, const unsigned char *b, size_t len,
			  const char *path, struct manifest *m)
{
	if (len < 16 || memcmp(b, magic, 8) != 0)
		return kyro__failx(msg, KYRO_ENOTDB,
				   "'%s' is not a KyroDB manifest (bad magic)",
				   path);
	uint32_t ver = get_le32(b + 8);
	if (ver != MANIFEST_VERSION && ver != 1)
		return kyro__failx(
			msg, KYRO_EVERSION,
			"'%s' has format version %u; this build reads "
			"versions 1 and %u",
			path, ver, MANIFEST_VERSION);
	size_t size = ver == 1 ? MANIFEST_V1_SIZE : MANIFEST_SIZE;
	if (len != size || get_le32(b + 12) != size)
		return kyro__failx(msg, KYRO_ECORRUPT,
				   "'%s': offset 12: size %zu, expected %zu",
				   path, len, size);
	if (get_le64(b + size - 8) != XXH3_64bits(b, size - 8))
		return kyro__failx(msg, KYRO_ECORRUPT,
				   "'%s': offset %zu: checksum mismatch", path,
				   size - 8);
	/* Reserved bytes are zero: anything else was written by something
	 * that is not this format. */
	uint64_t rsv = ver == 1 ? get_le64(b + 80)
				: get_le64(b + 104) | get_le64(b + 112);
	if (rsv != 0)
		return kyro__failx(
			msg, KYRO_ECORRUPT,
			"'%s': offset %d: reserved bytes are not zero", path,
			ver == 1 ? 80 : 104);
	memset(m, 0, sizeof *m);
	if (ver != 1) {
		m->vec_snap = get_le64(b + 80);
		m->hnsw_gen = get_le64(b + 88);
		m->hnsw_snap = get_le64(b + 96);
	}
	m->gen = get_le64(b + 16);
	m->snap_gen = get_le64(b + 24);
	m->snap_seq = get_le64(b + 32);
	m->snap_keys = get_le64(b + 40);
	m->wal_first = get_le64(b + 48);
	m->wal_last = get_le64(b + 56);
	m->rmi_gen = get_le64(b + 64);
	m->rmi_snap = get_le64(b + 72);
	if (m->wal_first == 0 || m->wal_first > m->wal_last ||
	    (m->snap_gen == 0 && m->snap_keys != 0) ||
	    (m->vec_snap != 0 && m->vec_snap != m->snap_gen))
		return kyro__failx(msg, KYRO_ECORRUPT,
				   "'%s': offset 16: inconsistent fields",
				   path);
	return 0;
}

static int manifest_read(char *msg, const char *dir, struct manifest *m,
			 int *keep)
{
	char path[PATH_MAX];
	unsigned char buf[MANIFEST_SIZE + 1];
	size_t got;
	int fd, rc = kyro__path(path, dir, KYRO_MANIFEST);
	if (rc)
		return kyro__fail(msg, rc, "cannot open '%s/%s'", dir,
				  KYRO_MANIFEST);
	rc = kyro__fs_open(msg, path, O_RDONLY, 0, &fd);
	if (rc)
		return rc;
	/* One byte more than we expect, so an overlong file is noticed. */
	rc = kyro__fs_pread_all(msg, fd, buf, sizeof buf, 0, path, &got);
	if (!rc)
		rc = kyro__manifest_decode(msg, buf, got, path, m);
	if (!rc && keep)
		*keep = fd;
	else
		kyro__fs_close(fd);
	return rc;
}

int kyro__manifest_read(char *msg, const char *dir, struct manifest *m)
{
	return manifest_read(msg, dir, m, NULL);
}

int kyro__manifest_read_keep(char *msg, const char *dir, struct manifest *m,
			     int *fd)
{
	return manifest_read(msg, dir, m, fd);
}

int kyro__manifest_write(char *msg, const char *dir, const struct manifest *m)
{
	char path[PATH_MAX];
	unsigned char buf[MANIFEST_SIZE];
	int rc = kyro__path(path, dir, KYRO_MANIFEST);
	if (rc)
		return kyro__fail(msg, rc, "cannot write '%s/%s'", dir,
				  KYRO_MANIFEST);
	kyro__manifest_encode(m, buf);
	return kyro__fs_replace_file(msg, dir, path, buf, sizeof buf);
}
