/*
 * image.c - a store's current snapshot as one stream (kyro_export_*), and
 * a new store made from such a stream (kyro_import_*): how a read replica
 * starts before it follows the change feed.
 *
 * Format (version 1), integers little-endian.  Header, 32 bytes:
 *
 *    0  8  magic "KYROIMAG"
 *    8  4  format version (1)
 *   12  4  manifest length M (96 for manifest version 1; at most 4096)
 *   16  4  number of files N
 *   20  4  reserved, zero
 *   24  8  XXH3-64 of bytes 0..23 followed by the M manifest bytes
 *
 * Then the M bytes of the exporting store's MANIFEST, as that file held
 * them (its own checksum inside), then N files, each:
 *
 *    0  2  name length L (1..255)
 *    2  6  reserved, zero
 *    8  8  file size S
 *   16  8  XXH3-64 of bytes 0..15 followed by the name
 *   24  L  the name (a plain file name the manifest names)
 * 24+L  S  the file's bytes
 *   ..  8  XXH3-64 of the file's bytes
 *
 * and nothing after the last file.  The files are exactly those the
 * manifest names for its snapshot and that snapshot's indexes
 * (image_names()), each once; the WAL is not part of an image: the
 * importer follows the change feed from the snapshot's last sequence
 * number + 1.
 *
 * Consistency.  The exporter reads the manifest and opens every file it
 * names before it sends a byte; a snapshot committing meanwhile may
 * unlink them, but open files keep their bytes (snapshot and index files
 * are never written again once named).  A file missing at open means a
 * commit came between reading the manifest and opening: start over.
 *
 * Import.  Into an empty (or missing) directory.  Each file is written
 * to NAME.tmp, fsynced, and renamed to NAME only once its checksum
 * matched; kyro_import_finish() then checks that every named file came,
 * creates the first WAL segment (wal-1, starting at the snapshot's last
 * sequence number + 1), and commits a MANIFEST (temp, fsync, rename,
 * fsync the directory): the exported one decoded, every field kept but
 * the live WAL segment ids.  Until that rename the directory holds no
 * MANIFEST and so is no store (kyro_open() refuses it as not empty);
 * kyro_import_close() without a finish removes what the import wrote.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "fsio.h"
#include "handle.h"
#include "image.h"
#include "internal.h"
#include "manifest.h"
#include "wal.h"

static const char magic[8] = "KYROIMAG";

#define IMG_HDR 32
#define IMG_ENT 24
#define IMG_MAN_MAX 4096
#define IMG_NAME_MAX 255

int kyro__image_names(const struct manifest *m, char names[][IMAGE_NAME],
		      size_t *n)
{
	*n = 0;
	if (!m->snap_gen)
		return 0;
	snprintf(names[(*n)++], IMAGE_NAME, "snap-%016llx.bin",
		 (unsigned long long)m->snap_gen);
	snprintf(names[(*n)++], IMAGE_NAME, "snap-%016llx.data",
		 (unsigned long long)m->snap_gen);
	if (m->rmi_gen && m->rmi_snap == m->snap_gen)
		snprintf(names[(*n)++], IMAGE_NAME, "rmi-%016llx.idx",
			 (unsigned long long)m->rmi_gen);
	return 0;
}

/* ---- export ---- */

struct kyro_export {
	struct manifest m;
	size_t nfiles;
	struct {
		char name[IMAGE_NAME];
		char path[PATH_MAX];
		int fd;
		uint64_t size;
	} f[IMAGE_MAX_FILES];
	/* The stream: PEND holds the small pieces (header, entry heads,
	 * checksums); file bytes go straight to the caller's buffer. */
	unsigned char pend[IMG_HDR + IMG_MAN_MAX + IMG_ENT + IMG_NAME_MAX];
	size_t pend_len, pend_off;
	size_t cur;          /* the file being sent; nfiles: done */
	int in_data;         /* its bytes are being sent */
	uint64_t off;        /* of the file being sent */
	XXH3_state_t xs;
	char msg[KMSG_MAX];
};

static void close_files(kyro_export *e)
{
	for (size_t i = 0; i < e->nfiles; i++)
		kyro__fs_close(e->f[i].fd);
	e->nfiles = 0;
}

/* Read the manifest and open what it names; ENOENT when a file went
 * away between the two (a commit came: the caller starts over). */
static int export_load(kyro_export *e, const char *dir)
{
	char names[IMAGE_MAX_FILES][IMAGE_NAME];
	size_t n;
	int rc = kyro__manifest_read(e->msg, dir, &e->m);
	if (!rc)
		rc = kyro__image_names(&e->m, names, &n);
	for (size_t i = 0; !rc && i < n; i++) {
		snprintf(e->f[i].name, IMAGE_NAME, "%s", names[i]);
		if ((rc = kyro__path(e->f[i].path, dir, names[i])) != 0) {
			rc = kyro__fail(e->msg, rc, "cannot export '%s'", dir);
			break;
		}
		rc = kyro__fs_open(e->msg, e->f[i].path, O_RDONLY, 0,
				   &e->f[i].fd);
		if (rc)
			break;
		e->nfiles = i + 1;
		rc = kyro__fs_size(e->msg, e->f[i].fd, e->f[i].path,
				   &e->f[i].size);
	}
	if (rc)
		close_files(e);
	return rc;
}

/* The header and the manifest bytes, into PEND. */
static void export_header(kyro_export *e)
{
	unsigned char *b = e->pend;
	memset(b, 0, IMG_HDR);
	memcpy(b, magic, 8);
	put_le32(b + 8, IMAGE_VERSION);
	put_le32(b + 12, MANIFEST_SIZE);
	put_le32(b + 16, (uint32_t)e->nfiles);
	kyro__manifest_encode(&e->m, b + IMG_HDR);
	XXH3_64bits_reset(&e->xs);
	XXH3_64bits_update(&e->xs, b, 24);
	XXH3_64bits_update(&e->xs, b + IMG_HDR, MANIFEST_SIZE);
	put_le64(b + 24, XXH3_64bits_digest(&e->xs));
	e->pend_len = IMG_HDR + MANIFEST_SIZE;
	e->pend_off = 0;
}

int kyro_export_open(kyro_export **ep, kyro_db *db)
{
	kyro_export *e = calloc(1, sizeof *e);
	const char *dir = kyro__db_dir(db);
	int rc = ENOENT;
	*ep = e;
	if (!e)
		return ENOMEM;
	/* A commit between reading the manifest and opening its files
	 * removes them; a few commits in a row is a busy store, not a
	 * reason to fail, but forever would be a loop. */
	for (int tries = 0; rc == ENOENT && tries < 100; tries++)
		rc = export_load(e, dir);
	if (rc)
		return rc;
	export_header(e);
	return 0;
}

uint64_t kyro_export_seq(const kyro_export *e)
{
	return e->m.snap_gen ? e->m.snap_seq : 0;
}

const char *kyro_export_errmsg(const kyro_export *e)
{
	if (!e)
		return "out of memory";
	return e->msg[0] ? e->msg : "no error";
}

/* Queue the next file's entry head, or finish. */
static void export_next(kyro_export *e)
{
	if (e->cur == e->nfiles)
		return;
	unsigned char *b = e->pend;
	size_t l = strlen(e->f[e->cur].name);
	memset(b, 0, IMG_ENT);
	put_le16(b, (uint16_t)l);
	put_le64(b + 8, e->f[e->cur].size);
	memcpy(b + IMG_ENT, e->f[e->cur].name, l);
	XXH3_64bits_reset(&e->xs);
	XXH3_64bits_update(&e->xs, b, 16);
	XXH3_64bits_update(&e->xs, b + IMG_ENT, l);
	put_le64(b + 16, XXH3_64bits_digest(&e->xs));
	e->pend_len = IMG_ENT + l;
	e->pend_off = 0;
	e->in_data = 1;
	e->off = 0;
	XXH3_64bits_reset(&e->xs);
}

/* The file's bytes, into BUF; at its end, its checksum into PEND. */
static int export_data(kyro_export *e, unsigned char *buf, size_t cap,
		       size_t *got)
{
	uint64_t left = e->f[e->cur].size - e->off;
	size_t n = left < cap ? (size_t)left : cap, r = 0;
	*got = 0;
	if (n) {
		int rc = kyro__fs_pread_all(e->msg, e->f[e->cur].fd, buf, n,
					    e->off, e->f[e->cur].path, &r);
		if (rc)
			return rc;
		if (r != n)
			return kyro__failx(e->msg, KYRO_ECORRUPT,
					   "'%s' shrank while it was exported",
					   e->f[e->cur].path);
		XXH3_64bits_update(&e->xs, buf, n);
		e->off += n;
		*got = n;
	}
	if (e->off == e->f[e->cur].size) {
		put_le64(e->pend, XXH3_64bits_digest(&e->xs));
		e->pend_len = 8;
		e->pend_off = 0;
		e->in_data = 0;
		e->cur++;
	}
	return 0;
}

int kyro_export_read(kyro_export *e, void *buf, size_t cap, size_t *got)
{
	unsigned char *out = buf;
	size_t done = 0;
	while (done < cap) {
		if (e->pend_off < e->pend_len) {
			size_t n = e->pend_len - e->pend_off;
			if (n > cap - done)
				n = cap - done;
			memcpy(out + done, e->pend + e->pend_off, n);
			e->pend_off += n;
			done += n;
			continue;
		}
		if (e->in_data) {
			size_t n;
			int rc = export_data(e, out + done, cap - done, &n);
			if (rc) {
				*got = 0;
				return rc;
			}
			done += n;
			continue;
		}
		if (e->cur == e->nfiles)
			break;
		export_next(e);
	}
	*got = done;
	return 0;
}

void kyro_export_close(kyro_export *e)
{
	if (!e)
		return;
	close_files(e);
	free(e);
}

/* ---- import ---- */

enum { IN_HEADER, IN_ENTRY, IN_DATA, IN_SUM, IN_DONE, IN_FAILED,
       IN_FINISHED };

struct kyro_import {
	char dir[PATH_MAX];
	int state;
	struct manifest m;
	uint32_t man_len, nfiles, got_files;
	char names[IMAGE_MAX_FILES][IMAGE_NAME];
	size_t nnames;
	unsigned char seen[IMAGE_MAX_FILES];
	unsigned created[IMAGE_MAX_FILES]; /* 1: NAME.tmp, 2: NAME */
	/* The piece being gathered: NEED bytes in BUF. */
	unsigned char buf[IMG_HDR + IMG_MAN_MAX + IMG_ENT + IMG_NAME_MAX];
	size_t have, need;
	size_t cur;          /* index in NAMES of the file coming in */
	int fd;
	char tmp[PATH_MAX];
	uint64_t left;
	XXH3_state_t xs;
	char msg[KMSG_MAX];
};

static int any_entry(void *arg, const char *name)
{
	(void)arg;
	(void)name;
	return EEXIST;
}

int kyro_import_open(kyro_import **ip, const char *dir)
{
	kyro_import *im = calloc(1, sizeof *im);
	int isdir, rc;
	*ip = im;
	if (!im)
		return ENOMEM;
	im->fd = -1;
	im->need = IMG_HDR;
	if (snprintf(im->dir, sizeof im->dir, "%s", dir) >=
	    (int)sizeof im->dir)
		return kyro__fail(im->msg, ENAMETOOLONG, "cannot import into "
				  "'%s'", dir);
	rc = kyro__fs_is_dir(im->msg, dir, &isdir);
	if (rc == ENOENT)
		return kyro__fs_mkdir_durable(im->msg, dir);
	if (!rc && !isdir)
		rc = kyro__fail(im->msg, ENOTDIR, "cannot import into '%s'",
				dir);
	if (!rc && (rc = kyro__fs_list_dir(im->msg, dir, any_entry, NULL)))
		rc = rc == EEXIST ? kyro__failx(im->msg, EEXIST,
					   "cannot import into '%s': the "
					   "directory is not empty", dir)
			     : rc;
	return rc;
}

const char *kyro_import_errmsg(const kyro_import *im)
{
	if (!im)
		return "out of memory";
	return im->msg[0] ? im->msg : "no error";
}

static int bad(kyro_import *im, const char *what)
{
	return kyro__failx(im->msg, KYRO_ECORRUPT, "image for '%s': %s",
			   im->dir, what);
}

static int import_header(kyro_import *im)
{
	const unsigned char *b = im->buf;
	if (im->need == IMG_HDR) {
		if (memcmp(b, magic, 8))
			return bad(im, "not a KyroDB image (bad magic)");
		if (get_le32(b + 8) != IMAGE_VERSION)
			return kyro__failx(im->msg, KYRO_EVERSION,
					   "image for '%s' has format version "
					   "%u; this build reads version %u",
					   im->dir, get_le32(b + 8),
					   IMAGE_VERSION);
		im->man_len = get_le32(b + 12);
		im->nfiles = get_le32(b + 16);
		if (!im->man_len || im->man_len > IMG_MAN_MAX ||
		    get_le32(b + 20) || im->nfiles > IMAGE_MAX_FILES)
			return bad(im, "offset 12: inconsistent header");
		im->need = IMG_HDR + im->man_len;
		return 0;
	}
	XXH3_64bits_reset(&im->xs);
	XXH3_64bits_update(&im->xs, b, 24);
	XXH3_64bits_update(&im->xs, b + IMG_HDR, im->man_len);
	if (get_le64(b + 24) != XXH3_64bits_digest(&im->xs))
		return bad(im, "offset 24: header checksum mismatch");
	int rc = kyro__manifest_decode(im->msg, b + IMG_HDR, im->man_len,
				       "the image's manifest", &im->m);
	if (!rc)
		rc = kyro__image_names(&im->m, im->names, &im->nnames);
	if (!rc && im->nnames != im->nfiles)
		rc = bad(im, "offset 16: the file count is not what the "
			 "manifest names");
	im->state = im->nfiles ? IN_ENTRY : IN_DONE;
	im->need = IMG_ENT;
	return rc;
}

static int import_entry(kyro_import *im)
{
	const unsigned char *b = im->buf;
	size_t l = get_le16(b);
	if (im->need == IMG_ENT) {
		if (!l || l > IMG_NAME_MAX || get_le16(b + 2) ||
		    get_le32(b + 4))
			return bad(im, "a file entry's head is inconsistent");
		im->need = IMG_ENT + l;
		return 0;
	}
	XXH3_64bits_reset(&im->xs);
	XXH3_64bits_update(&im->xs, b, 16);
	XXH3_64bits_update(&im->xs, b + IMG_ENT, l);
	if (get_le64(b + 16) != XXH3_64bits_digest(&im->xs))
		return bad(im, "a file entry's checksum does not match");
	im->cur = im->nnames;
	for (size_t i = 0; i < im->nnames; i++)
		if (strlen(im->names[i]) == l &&
		    !memcmp(im->names[i], b + IMG_ENT, l))
			im->cur = i;
	if (im->cur == im->nnames || im->seen[im->cur])
		return bad(im, "a file the manifest does not name, or named "
			   "twice");
	im->seen[im->cur] = 1;
	im->left = get_le64(b + 8);
	char path[PATH_MAX];
	int rc = kyro__path(path, im->dir, im->names[im->cur]);
	if (!rc && snprintf(im->tmp, sizeof im->tmp, "%s.tmp", path) >=
			   (int)sizeof im->tmp)
		rc = ENAMETOOLONG;
	if (rc)
		return kyro__fail(im->msg, rc, "cannot import into '%s'",
				  im->dir);
	rc = kyro__fs_open(im->msg, im->tmp, O_WRONLY | O_CREAT | O_EXCL,
			   0644, &im->fd);
	if (rc)
		return rc;
	im->created[im->cur] = 1;
	XXH3_64bits_reset(&im->xs);
	im->state = im->left ? IN_DATA : IN_SUM;
	im->need = 8;
	return 0;
}

/* The file's checksum came: durable, then under its name. */
static int import_sum(kyro_import *im)
{
	char path[PATH_MAX];
	if (get_le64(im->buf) != XXH3_64bits_digest(&im->xs))
		return kyro__failx(im->msg, KYRO_ECORRUPT,
				   "image for '%s': '%s' fails its checksum",
				   im->dir, im->names[im->cur]);
	int rc = kyro__fs_fsync(im->msg, im->fd, im->tmp);
	kyro__fs_close(im->fd);
	im->fd = -1;
	if (!rc && !(rc = kyro__path(path, im->dir, im->names[im->cur])))
		rc = kyro__fs_rename(im->msg, im->tmp, path);
	if (rc)
		return rc;
	im->created[im->cur] = 2;
	im->state = ++im->got_files == im->nfiles ? IN_DONE : IN_ENTRY;
	im->need = IMG_ENT;
	return 0;
}

static int import_data(kyro_import *im, const unsigned char *p, size_t n)
{
	XXH3_64bits_update(&im->xs, p, n);
	im->left -= n;
	int rc = kyro__fs_write_all(im->msg, im->fd, p, n, im->tmp);
	if (!rc && !im->left)
		im->state = IN_SUM;
	return rc;
}

static int import_step(kyro_import *im, const unsigned char **p,
		       size_t *len)
{
	if (im->state == IN_DATA) {
		size_t n = *len < im->left ? *len : (size_t)im->left;
		*p += n;
		*len -= n;
		return import_data(im, *p - n, n);
	}
	if (im->state == IN_DONE)
		return bad(im, "bytes after the last file");
	size_t n = im->need - im->have;
	if (n > *len)
		n = *len;
	memcpy(im->buf + im->have, *p, n);
	im->have += n;
	*p += n;
	*len -= n;
	if (im->have < im->need)
		return 0;
	/* The header and an entry's head grow by what they announce (the
	 * manifest, the name); every other piece starts the next empty. */
	int grows = (im->state == IN_HEADER && im->need == IMG_HDR) ||
		    (im->state == IN_ENTRY && im->need == IMG_ENT);
	int rc = im->state == IN_HEADER ? import_header(im)
		 : im->state == IN_ENTRY ? import_entry(im)
					 : import_sum(im);
	if (!grows)
		im->have = 0;
	return rc;
}

int kyro_import_write(kyro_import *im, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	if (im->state == IN_FAILED)
		return kyro__failx(im->msg, KYRO_EFAILED,
				   "image for '%s': an earlier write failed",
				   im->dir);
	while (len) {
		int rc = import_step(im, &p, &len);
		if (rc) {
			im->state = IN_FAILED;
			return rc;
		}
	}
	return 0;
}

int kyro_import_finish(kyro_import *im, uint64_t *seq)
{
	if (im->state != IN_DONE)
		return kyro__failx(im->msg, KYRO_ECORRUPT,
				   "image for '%s': %s", im->dir,
				   im->state == IN_FAILED
					   ? "an earlier write failed"
					   : "the stream ended early");
	struct manifest m = im->m;
	uint64_t last = m.snap_gen ? m.snap_seq : 0;
	m.wal_first = m.wal_last = 1;
	int rc = kyro__wal_create(im->msg, im->dir, 1, last + 1);
	if (!rc)
		rc = kyro__manifest_write(im->msg, im->dir, &m);
	if (rc) {
		im->state = IN_FAILED;
		return rc;
	}
	im->state = IN_FINISHED;
	if (seq)
		*seq = last;
	return 0;
}

void kyro_import_close(kyro_import *im)
{
	if (!im)
		return;
	kyro__fs_close(im->fd);
	if (im->state != IN_FINISHED) {
		char path[PATH_MAX];
		for (size_t i = 0; i < im->nnames; i++) {
			if (im->created[i] == 1)
				kyro__fs_unlink(NULL, im->tmp);
			else if (im->created[i] == 2 &&
				 !kyro__path(path, im->dir, im->names[i]))
				kyro__fs_unlink(NULL, path);
		}
		if (!kyro__path(path, im->dir, "wal-0000000000000001.log"))
			kyro__fs_unlink(NULL, path);
	}
	free(im);
}
