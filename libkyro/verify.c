/*
 * verify.c - kyro_verify(): check every file of a store.
 *
 * Everything up to the committed end is checked without any lock, so a
 * long verify never holds writers off.  Only the question "is there a
 * torn tail?" needs the writer lock: without it, a batch being written
 * right now looks exactly like a torn tail.  The lock is taken for that
 * one check of the last segment (and for --repair's truncation).
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>

#include "db.h"
#include "fsio.h"
#include "rmi.h"

struct vctx {
	kyro_report_fn report;
	void *arg;
	int damaged;
};

static void say(struct vctx *c, const char *file, uint64_t off,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void say(struct vctx *c, const char *file, uint64_t off,
		const char *fmt, ...)
{
	char text[KMSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	c->report(c->arg, file, off, text);
}

static void damage_msg(struct vctx *c, const char *msg)
{
	/* Module messages read "'FILE': offset N: text": report them in
	 * the form every finding has, FILE and offset apart. */
	char file[PATH_MAX];
	unsigned long long off;
	int n = 0;
	const char *end = msg[0] == '\'' ? strstr(msg + 1, "': offset ") : NULL;
	if (end && (size_t)(end - msg - 1) < sizeof file &&
	    sscanf(end + 3, "offset %llu: %n", &off, &n) == 1 && n > 0) {
		memcpy(file, msg + 1, (size_t)(end - msg - 1));
		file[end - msg - 1] = 0;
		c->report(c->arg, file, off, end + 3 + n);
	} else {
		c->report(c->arg, "", UINT64_MAX, msg);
	}
	c->damaged = 1;
}

/* Check the torn tail of the last segment with writers held off. */
static int check_tail(struct vctx *c, const char *dir, const char *path,
		      uint64_t seg, uint64_t start, uint64_t next_seq,
		      unsigned flags)
{
	char msg[KMSG_MAX];
	struct shared sh;
	struct seg_map s;
	struct wal_scan sc;
	int rc = shared_open(msg, &sh, dir, 1);
	if (rc)
		return 0; /* read-only store: no writer can be mid-batch */
	rc = shared_lock(msg, &sh);
	if (rc)
		goto out;
	rc = seg_map_open(msg, &s, dir, seg);
	if (rc)
		goto out;
	wal_scan(s.base, s.maplen, seg, start, next_seq, &sc);
	seg_map_close(&s);
	if (sc.status == KYRO_ECORRUPT) {
		say(c, path, sc.bad_off, "%s", sc.why);
		c->damaged = 1;
	} else if (sc.status == KYRO_ETORN) {
		if (flags & KYRO_VERIFY_REPAIR) {
			int fd;
			rc = fs_open(msg, path, O_WRONLY, 0, &fd);
			if (!rc) {
				rc = fs_truncate(msg, fd, sc.end, path);
				if (!rc)
					rc = fs_fsync(msg, fd, path);
				fs_close(fd);
			}
			if (!rc)
				say(c, path, sc.end, "%s: repaired (truncated)",
				    sc.why);
		} else {
			say(c, path, sc.end, "%s", sc.why);
			c->damaged = 1;
		}
	}
out:
	shared_close(&sh);
	if (rc)
		c->report(c->arg, NULL, 0, msg);
	return rc;
}

static int verify_wal(struct vctx *c, const char *dir,
		      const struct manifest *m, unsigned flags)
{
	char msg[KMSG_MAX];
	uint64_t next_seq = m->snap_gen ? m->snap_seq + 1 : 1;
	for (uint64_t id = m->wal_first; id <= m->wal_last; id++) {
		struct seg_map s;
		struct wal_scan sc;
		int rc = seg_map_open(msg, &s, dir, id);
		if (rc > 0 && rc != ENOENT) {
			c->report(c->arg, NULL, 0, msg);
			return rc;
		}
		if (rc) {
			damage_msg(c, msg);
			return 0;
		}
		if (s.first_seq != next_seq) {
			say(c, s.path, 24,
			    "first sequence number %llu, expected %llu",
			    (unsigned long long)s.first_seq,
			    (unsigned long long)next_seq);
			c->damaged = 1;
		}
		wal_scan(s.base, s.maplen, id, WAL_HDR, s.first_seq, &sc);
		seg_map_close(&s);
		if (sc.status == KYRO_ECORRUPT) {
			say(c, s.path, sc.bad_off, "%s", sc.why);
			c->damaged = 1;
			return 0;
		}
		if (sc.status == KYRO_ETORN) {
			if (id == m->wal_last)
				return check_tail(c, dir, s.path, id, sc.end,
						  sc.last_seq + 1, flags);
			say(c, s.path, sc.end, "%s (in a rotated segment)",
			    sc.why);
			c->damaged = 1;
		}
		next_seq = sc.last_seq + 1;
	}
	return 0;
}

/* The index the manifest names must load against its snapshot; with
 * KYRO_VERIFY_DEEP every key must also lie inside its own window. */
static void verify_index(struct vctx *c, const char *dir,
			 const struct manifest *m, const struct snap *s,
			 unsigned flags)
{
	char path[PATH_MAX], msg[KMSG_MAX], err[256];
	const unsigned char *img = NULL;
	uint64_t size = 0, bad = 0, first = 0;
	struct kyro_rmi *r = NULL;
	int fd = -1;
	if (!m->rmi_gen || m->rmi_snap != m->snap_gen)
		return;
	if (kpath_gen(path, dir, "rmi-", m->rmi_gen, ".idx") ||
	    fs_open(msg, path, O_RDONLY, 0, &fd) ||
	    fs_size(msg, fd, path, &size) ||
	    fs_map(msg, fd, (size_t)size, 0, path, (void **)&img)) {
		damage_msg(c, msg);
		fs_close(fd);
		return;
	}
	fs_close(fd);
	if (kyro_rmi_load(&r, img, (size_t)size, s->keys, s->n, s->gen, err,
			  sizeof err)) {
		say(c, path, 0, "learned index refused: %s", err);
		c->damaged = 1;
	} else if ((flags & KYRO_VERIFY_DEEP) &&
		   kyro_rmi_check_all(r, &bad, &first)) {
		say(c, path, 0,
		    "%llu keys lie outside their index window (first: index "
		    "%llu, key %llu)",
		    (unsigned long long)bad, (unsigned long long)first,
		    (unsigned long long)(first < s->n ? s->keys[first] : 0));
		c->damaged = 1;
	}
	kyro_rmi_free(r);
	fs_unmap((void *)img, (size_t)size);
}

static void forward(void *arg, const char *file, uint64_t off,
		    const char *text)
{
	struct vctx *c = arg;
	c->damaged = 1;
	c->report(c->arg, file, off, text);
}

int kyro_verify(const char *dir, unsigned flags, kyro_report_fn report,
		void *arg)
{
	struct vctx c = {.report = report, .arg = arg};
	char msg[KMSG_MAX];
	struct manifest m;
	int rc = manifest_read(msg, dir, &m);
	if (rc == ENOENT || rc == ENOTDIR) {
		/* A missing directory is an error; a missing manifest in an
		 * existing directory is damage. */
		kyro_db *db;
		int orc = kyro_open(&db, dir, KYRO_RDONLY);
		if (orc) {
			report(arg, NULL, 0, kyro_errmsg(db));
			kyro_close(db);
			return orc;
		}
		int empty = db->v.empty;
		kyro_close(db);
		if (empty)
			return 0;
	}
	if (rc) {
		/* A manifest we cannot read is damage; one from a newer
		 * version of KyroDB is not ours to judge. */
		if (rc == KYRO_EVERSION || (rc > 0 && rc != ENOENT)) {
			report(arg, NULL, 0, msg);
			return rc;
		}
		damage_msg(&c, msg);
		return KYRO_EDAMAGED;
	}
	if (m.snap_gen) {
		struct snap s;
		rc = snap_open(msg, &s, dir, m.snap_gen, m.snap_keys);
		if (rc) {
			damage_msg(&c, msg);
		} else {
			if (s.last_seq != m.snap_seq) {
				say(&c, s.bin_path, 32,
				    "last sequence number %llu, but the "
				    "manifest says %llu",
				    (unsigned long long)s.last_seq,
				    (unsigned long long)m.snap_seq);
				c.damaged = 1;
			}
			snap_verify(&s, forward, &c);
			verify_index(&c, dir, &m, &s, flags);
			snap_close(&s);
		}
	}
	rc = verify_wal(&c, dir, &m, flags);
	if (rc)
		return rc;
	return c.damaged ? KYRO_EDAMAGED : 0;
}
