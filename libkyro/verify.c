/*
 * verify.c - kyro_verify(): check every file of a store; --repair.
 *
 * Everything is checked once without any lock, so a long verify never
 * holds writers off.  Then, under the writer lock (without it, a batch
 * being written right now looks exactly like a torn tail), the last WAL
 * segment is walked again and the shared page in LOCK held against it.
 *
 * Repair, always under the writer lock and after walking every segment
 * again there (docs/FORMAT.md, "WAL segment", states the rules):
 *   - a torn tail with no evidence of committed data is truncated
 *     (exit 0);
 *   - committed data known lost (damage followed by valid records, a
 *     sequence jump between segments, or a trusted page's end beyond the
 *     file) is never called a torn tail: what is cut is first copied to
 *     DIR/lost+found/, a manifest that ends the log at the cut is
 *     committed, the segment replaced by a copy of what is kept, and the
 *     loss reported with its sequence numbers (exit 1);
 *   - a damaged segment header is rewritten from the file name and the
 *     sequence chain;
 *   - the shared page is republished from the files.
 * Every step is durable before the next; a crash in between leaves a
 * store that the next repair finishes.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>

#include "fsio.h"
#include "shared.h"
#include "handle.h"
#include "verify.h"
#include "wal.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

void kyro__vsay(struct vctx *c, const char *file, uint64_t off,
		const char *fmt, ...)
{
	char text[KMSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	c->report(c->arg, file, off, text);
}

void kyro__vdamage(struct vctx *c, const char *msg)
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

/* How the WAL ends, as walk() finds it. */
enum {
	W_CLEAN, /* every live segment whole */
	W_TORN,  /* the last segment ends in a torn tail, nothing says more
		  * was committed: the crash of a writer mid-batch */
	W_LOST,  /* committed data is gone from BAD_OFF of segment BAD_SEG */
	W_STUCK, /* damage that --repair does not handle (named by MSG) */
};

#define NOTES 8

/* A finding off the main line: a segment header to rewrite (FIX), or a
 * torn tail in a rotated segment whose successor continues the sequence
 * (no committed record is missing; reported, left alone). */
struct note {
	uint64_t seg, off, first_seq;
	int fix;
	char path[PATH_MAX];
	char why[KMSG_MAX];
};

struct walk {
	int kind;
	uint64_t seg, end, len; /* where the intact log ends, file size */
	uint64_t last_seq;      /* its last sequence number */
	char path[PATH_MAX];    /* of SEG */
	uint64_t bad_seg, bad_off;
	char bad_path[PATH_MAX];
	char why[PATH_MAX + KMSG_MAX];
	uint64_t batches, max_seq; /* committed data seen after the damage */
	uint64_t chain_last;       /* the first seq of the last segment */
	struct note notes[NOTES];
	size_t nnotes;
};

static int map_seg(char *msg, const char *dir, uint64_t id, char *path,
		   const unsigned char **base, uint64_t *len)
{
	int fd;
	*base = NULL;
	*len = 0;
	int rc = kyro__path_gen(path, dir, "wal-", id, ".log");
	if (rc)
		return kyro__fail(msg, rc, "cannot open a WAL segment in '%s'",
				  dir);
	rc = kyro__fs_open(msg, path, O_RDONLY, 0, &fd);
	if (rc)
		return rc;
	rc = kyro__fs_size(msg, fd, path, len);
	if (!rc)
		rc = kyro__fs_map(msg, fd, (size_t)*len, 0, path,
				  (void **)base);
	kyro__fs_close(fd);
	return rc;
}

/* Count the committed batches still readable in segments FROM..TO. */
static void evidence(const char *dir, uint64_t from, uint64_t to,
		     struct walk *w)
{
	for (uint64_t id = from; id <= to; id++) {
		char path[PATH_MAX], msg[KMSG_MAX];
		const unsigned char *b;
		uint64_t len;
		if (map_seg(msg, dir, id, path, &b, &len))
			continue;
		kyro__wal_commits_after(b, len, id, WAL_HDR, w->last_seq,
					&w->batches, &w->max_seq);
		kyro__fs_unmap((void *)b, (size_t)len);
	}
}

static struct note *add_note(struct walk *w, uint64_t seg, const char *path)
{
	if (w->nnotes == NOTES)
		return NULL;
	struct note *n = &w->notes[w->nnotes++];
	memset(n, 0, sizeof *n);
	n->seg = seg;
	snprintf(n->path, sizeof n->path, "%s", path);
	return n;
}

/* Segment ID starts at FIRST where the chain says NEXT_SEQ: what the
 * segment before it held (ending at PREV_END of PREV_LEN bytes) is kept,
 * from here on committed data is lost.  At FROM nothing before it in this
 * walk is there to keep: the walk is stuck. */
static void lost_at_jump(const char *dir, const struct manifest *m,
			 uint64_t id, uint64_t from, const char *path,
			 uint64_t first, uint64_t next_seq, uint64_t prev_end,
			 uint64_t prev_len, struct walk *w)
{
	if (id == from) {
		w->kind = W_STUCK;
		snprintf(w->why, sizeof w->why,
			 "'%s': offset 24: first sequence number %llu, "
			 "expected %llu",
			 path, (unsigned long long)first,
			 (unsigned long long)next_seq);
		return;
	}
	w->kind = W_LOST;
	w->seg = id - 1;
	kyro__path_gen(w->path, dir, "wal-", id - 1, ".log");
	w->end = prev_end;
	w->len = prev_len;
	w->last_seq = next_seq - 1;
	w->bad_seg = id;
	w->bad_off = 24;
	snprintf(w->bad_path, sizeof w->bad_path, "%s", path);
	snprintf(w->why, sizeof w->why,
		 "first sequence number %llu, expected %llu",
		 (unsigned long long)first, (unsigned long long)next_seq);
	if (first > next_seq)
		w->max_seq = first - 1;
	evidence(dir, id, m->wal_last, w);
}

/* Segment ID (B, LEN bytes) is damaged where SC stopped: its batches
 * before the damage are kept, the rest of the log is lost. */
static void lost_in_segment(const char *dir, const struct manifest *m,
			    uint64_t id, const char *path,
			    const unsigned char *b, uint64_t len,
			    const struct wal_scan *sc, struct walk *w)
{
	w->kind = W_LOST;
	w->seg = w->bad_seg = id;
	snprintf(w->path, sizeof w->path, "%s", path);
	snprintf(w->bad_path, sizeof w->bad_path, "%s", path);
	w->end = sc->end;
	w->len = len;
	w->last_seq = sc->last_seq;
	w->bad_off = sc->bad_off;
	snprintf(w->why, sizeof w->why, "%s", sc->why);
	kyro__wal_commits_after(b, len, id, sc->bad_off, sc->last_seq,
				&w->batches, &w->max_seq);
	evidence(dir, id + 1, m->wal_last, w);
}

/*
 * Walk segments FROM..wal_last (NEXT_SEQ: the first sequence number FROM
 * must carry) and find where the intact log ends.  Committed data is
 * known to be lost when damage is followed by valid records, or the
 * sequence numbers jump between segments; the walk stops there.  A
 * segment header that fails its checks is noted for rewriting, and its
 * records are judged with the number the sequence chain gives.  Returns
 * an error only for what stops the check (I/O, a genuinely newer format).
 */
static int walk(char *msg, const char *dir, const struct manifest *m,
		uint64_t from, uint64_t next_seq, struct walk *w)
{
	uint64_t prev_end = 0, prev_len = 0;
	memset(w, 0, sizeof *w);
	for (uint64_t id = from; id <= m->wal_last; id++) {
		char path[PATH_MAX];
		const unsigned char *b;
		uint64_t len, first;
		struct wal_scan sc;
		int rc = map_seg(msg, dir, id, path, &b, &len);
		if (rc > 0 && rc != ENOENT)
			return rc;
		if (rc) {
			w->kind = W_STUCK;
			snprintf(w->why, sizeof w->why, "%s", msg);
			return 0;
		}
		if (id == m->wal_last)
			w->chain_last = next_seq;
		rc = kyro__wal_header_check(msg, b, len, path, id, &first);
		if (rc == KYRO_EVERSION && len >= WAL_HDR &&
		    get_le64(b + 40) == XXH3_64bits(b, 40)) {
			kyro__fs_unmap((void *)b, (size_t)len);
			return rc;
		}
		if (rc) {
			struct note *n = add_note(w, id, path);
			if (!n) {
				kyro__fs_unmap((void *)b, (size_t)len);
				w->kind = W_STUCK;
				snprintf(w->why, sizeof w->why, "%s", msg);
				return 0;
			}
			n->fix = 1;
			n->first_seq = first = next_seq;
			snprintf(n->why, sizeof n->why, "%s", msg);
		} else if (first != next_seq) {
			kyro__fs_unmap((void *)b, (size_t)len);
			lost_at_jump(dir, m, id, from, path, first, next_seq,
				     prev_end, prev_len, w);
			return 0;
		}
		uint64_t maplen = len;
		if (len >= WAL_HDR) {
			/* With pread: unlocked, the torn tail of the last
			 * segment may be cut by a writer while we read, and
			 * a mapped page past a cut faults. */
			rc = kyro__wal_scan_unlocked(msg, path, id, WAL_HDR,
						     first, &sc, &len);
			if (rc) {
				kyro__fs_unmap((void *)b, (size_t)maplen);
				return rc;
			}
		} else {
			/* A header cut short: rewritten, the segment is
			 * empty. */
			memset(&sc, 0, sizeof sc);
			sc.end = WAL_HDR;
			sc.last_seq = first - 1;
		}
		if (sc.status == KYRO_ECORRUPT) {
			/* No writer cuts or appends behind damage. */
			lost_in_segment(dir, m, id, path, b,
					len < maplen ? len : maplen, &sc, w);
			w->len = len;
			kyro__fs_unmap((void *)b, (size_t)maplen);
			return 0;
		}
		kyro__fs_unmap((void *)b, (size_t)maplen);
		if (sc.status == KYRO_ETORN && id != m->wal_last) {
			struct note *n = add_note(w, id, path);
			if (n) {
				n->off = sc.end;
				snprintf(n->why, sizeof n->why,
					 "%s (in a rotated segment)", sc.why);
			}
		}
		w->kind = sc.status == KYRO_ETORN ? W_TORN : W_CLEAN;
		w->seg = id;
		snprintf(w->path, sizeof w->path, "%s", path);
		w->end = sc.end;
		w->len = len;
		w->last_seq = sc.last_seq;
		snprintf(w->why, sizeof w->why, "%s", sc.why);
		prev_end = sc.end;
		prev_len = len;
		next_seq = sc.last_seq + 1;
	}
	return 0;
}

/* Copy LEN bytes at BASE to a new file DIR/lost+found/NAME (NAME.1,
 * NAME.2... when it exists), durably; *OUT gets its path. */
static int keep_copy(char *msg, const char *dir, const char *name,
		     const void *base, size_t len, char *out)
{
	char lf[PATH_MAX];
	int fd = -1, rc = kyro__path(lf, dir, WAL_LOSTFOUND);
	if (rc)
		return kyro__fail(msg, rc, "cannot create '%s/%s'", dir,
				  WAL_LOSTFOUND);
	rc = kyro__fs_mkdir_durable(msg, lf);
	if (rc && rc != EEXIST)
		return rc;
	for (int n = 0;; n++) {
		int k = n ? snprintf(out, PATH_MAX, "%s/%s.%d", lf, name, n)
			  : snprintf(out, PATH_MAX, "%s/%s", lf, name);
		if (k >= PATH_MAX)
			return kyro__fail(msg, ENAMETOOLONG,
					  "cannot create '%s'", lf);
		rc = kyro__fs_open(msg, out, O_WRONLY | O_CREAT | O_EXCL, 0644,
				   &fd);
		if (rc != EEXIST)
			break;
	}
	if (rc)
		return rc;
	rc = kyro__fs_write_all(msg, fd, base, len, out);
	if (!rc)
		rc = kyro__fs_fsync(msg, fd, out);
	kyro__fs_close(fd);
	if (!rc)
		rc = kyro__fs_fsync_dir(msg, lf);
	return rc;
}

/* Rewrite the header of segment N's file from its name and the sequence
 * chain, keeping every byte after it (temp, fsync, rename, fsync dir). */
static int rewrite_header(char *msg, const char *dir, const struct note *n)
{
	const unsigned char *b;
	char path[PATH_MAX];
	uint64_t len;
	int rc = map_seg(msg, dir, n->seg, path, &b, &len);
	if (rc)
		return rc;
	size_t size = len < WAL_HDR ? WAL_HDR : (size_t)len;
	unsigned char *buf = calloc(1, size);
	if (!buf) {
		kyro__fs_unmap((void *)b, (size_t)len);
		return kyro__fail(msg, ENOMEM, "cannot rewrite '%s'", path);
	}
	if (len > WAL_HDR)
		memcpy(buf + WAL_HDR, b + WAL_HDR, (size_t)len - WAL_HDR);
	kyro__fs_unmap((void *)b, (size_t)len);
	kyro__wal_header_encode(buf, n->seg, n->first_seq);
	rc = kyro__fs_replace_file(msg, dir, path, buf, size);
	free(buf);
	return rc;
}

static int truncate_seg(char *msg, const char *path, uint64_t end)
{
	int fd;
	int rc = kyro__fs_open(msg, path, O_WRONLY, 0, &fd);
	if (rc)
		return rc;
	rc = kyro__fs_truncate(msg, fd, end, path);
	if (!rc)
		rc = kyro__fs_fsync(msg, fd, path);
	kyro__fs_close(fd);
	return rc;
}

/* Cut segment W->seg to W->end by putting a new file holding the bytes
 * kept in its place (temp, fsync, rename, fsync dir), not by truncating
 * it: those bytes past the cut were committed, so readers may have them
 * mapped, and values handed out from them; a mapped page past a file's
 * end raises SIGBUS.  The old file lives on in their mappings until
 * they see the new one (view.c) and load afresh. */
static int cut_seg(char *msg, const char *dir, const struct walk *w)
{
	const unsigned char *b;
	char path[PATH_MAX];
	uint64_t len;
	int rc = map_seg(msg, dir, w->seg, path, &b, &len);
	if (rc)
		return rc;
	if (len < w->end)
		rc = kyro__failx(msg, KYRO_ECORRUPT,
				 "'%s' shrank to %llu bytes while it was "
				 "repaired",
				 path, (unsigned long long)len);
	else if (len > w->end) /* else only later segments are dropped */
		rc = kyro__fs_replace_file(msg, dir, path, b, (size_t)w->end);
	kyro__fs_unmap((void *)b, (size_t)len);
	return rc;
}

/* What is gone, in words: sequence numbers and the batches seen. */
static void lost_words(const struct walk *w, char *out, size_t n)
{
	if (w->max_seq > w->last_seq)
		snprintf(out, n,
			 "committed data is lost: sequence numbers %llu..%llu "
			 "(%llu record%s, at least %llu batch%s)",
			 (unsigned long long)(w->last_seq + 1),
			 (unsigned long long)w->max_seq,
			 (unsigned long long)(w->max_seq - w->last_seq),
			 w->max_seq - w->last_seq > 1 ? "s" : "",
			 (unsigned long long)(w->batches ? w->batches : 1),
			 w->batches > 1 ? "es" : "");
	else
		snprintf(out, n,
			 "committed data is lost after sequence number %llu "
			 "(how much is not known)",
			 (unsigned long long)w->last_seq);
}

/*
 * Cut the log at the end of W's intact data: copy what goes (the rest of
 * the segment, whole later segments) to lost+found first, then commit a
 * manifest that ends the log there (always a new generation, so that
 * every handle rechecks the files), then cut the segment, then remove
 * the dropped segments.  A crash at any step leaves a store the next repair
 * finishes.
 */
static int cut_log(struct vctx *c, char *msg, const char *dir,
		   struct manifest *m, const struct walk *w)
{
	char kept[PATH_MAX] = "", name[64], words[KMSG_MAX];
	int rc = 0;
	if (w->len > w->end) {
		const unsigned char *b;
		uint64_t len;
		char path[PATH_MAX];
		rc = map_seg(msg, dir, w->seg, path, &b, &len);
		if (rc)
			return rc;
		snprintf(name, sizeof name, "wal-%016llx.log.from-%llu",
			 (unsigned long long)w->seg,
			 (unsigned long long)w->end);
		if (len > w->end)
			rc = keep_copy(msg, dir, name, b + w->end,
				       (size_t)(len - w->end), kept);
		kyro__fs_unmap((void *)b, (size_t)len);
		if (rc)
			return rc;
	}
	for (uint64_t id = w->seg + 1; id <= m->wal_last; id++) {
		const unsigned char *b;
		uint64_t len;
		char path[PATH_MAX], out[PATH_MAX];
		rc = map_seg(msg, dir, id, path, &b, &len);
		if (rc == ENOENT)
			continue;
		if (rc)
			return rc;
		snprintf(name, sizeof name, "wal-%016llx.log",
			 (unsigned long long)id);
		rc = keep_copy(msg, dir, name, b, (size_t)len, out);
		kyro__fs_unmap((void *)b, (size_t)len);
		if (rc)
			return rc;
		if (!kept[0])
			snprintf(kept, sizeof kept, "%s", out);
	}
	struct manifest next = *m;
	next.gen++;
	next.wal_last = w->seg;
	if ((rc = kyro__manifest_write(msg, dir, &next)) != 0)
		return rc;
	if ((rc = cut_seg(msg, dir, w)) != 0)
		return rc;
	for (uint64_t id = w->seg + 1; id <= m->wal_last; id++) {
		char path[PATH_MAX];
		if (!kyro__path_gen(path, dir, "wal-", id, ".log"))
			kyro__fs_unlink(NULL, path);
	}
	*m = next;
	lost_words(w, words, sizeof words);
	kyro__vsay(c, w->bad_path, w->bad_off,
		   "%s: %s; cut at offset %llu of '%s'%s%s", w->why, words,
		   (unsigned long long)w->end, w->path,
		   kept[0] ? ", a copy of what was cut is in " : "",
		   kept[0] ? kept : "");
	c->damaged = 1;
	return 0;
}

static void report_walk(struct vctx *c, const struct walk *w)
{
	char words[KMSG_MAX];
	for (size_t i = 0; i < w->nnotes; i++) {
		if (w->notes[i].fix) {
			char text[PATH_MAX + KMSG_MAX + 80];
			snprintf(text, sizeof text,
				 "%s; 'kyro-verify --repair' rewrites it from "
				 "the file name and the sequence numbers",
				 w->notes[i].why);
			kyro__vdamage(c, text);
		} else {
			kyro__vsay(c, w->notes[i].path, w->notes[i].off, "%s",
			    w->notes[i].why);
			c->damaged = 1;
		}
	}
	switch (w->kind) {
	case W_TORN:
		kyro__vsay(c, w->path, w->end, "%s", w->why);
		c->damaged = 1;
		break;
	case W_LOST:
		lost_words(w, words, sizeof words);
		kyro__vsay(c, w->bad_path, w->bad_off,
		    "%s: %s; 'kyro-verify --repair' keeps what is before it",
		    w->why, words);
		c->damaged = 1;
		break;
	case W_STUCK:
		kyro__vdamage(c, w->why);
		break;
	}
}

/* The first sequence number the first live segment must carry. */
static uint64_t chain_start(const struct manifest *m)
{
	return m->snap_gen ? m->snap_seq + 1 : 1;
}

/*
 * The WAL and the shared page.  Everything is walked once without any
 * lock, so that a long verify never holds writers off.  Then, under the
 * writer lock (without it, a batch being written right now looks exactly
 * like a torn tail), the last segment is walked again and the page held
 * against it; a repair walks everything again under the lock and acts on
 * that.
 */
/* The page's committed end is past the complete batches: committed data
 * is lost from W's segment on. */
static void lost_by_page(char *msg, const char *dir,
			 const struct shared_state *st, struct walk *w)
{
	const unsigned char *b;
	uint64_t len;
	char path[PATH_MAX];
	w->kind = W_LOST;
	w->bad_seg = w->seg;
	w->bad_off = w->end;
	snprintf(w->bad_path, sizeof w->bad_path, "%s", w->path);
	snprintf(w->why, sizeof w->why,
		 "the complete batches end here, but the shared page in LOCK "
		 "says the log was committed up to offset %llu",
		 (unsigned long long)st->wal_end);
	if (st->last_seq > w->max_seq)
		w->max_seq = st->last_seq;
	if (!map_seg(msg, dir, w->seg, path, &b, &len)) {
		kyro__wal_commits_after(b, len, w->seg, w->end, w->last_seq,
					&w->batches, &w->max_seq);
		kyro__fs_unmap((void *)b, (size_t)len);
	}
}

/* Hold the shared page (its state in *ST) against the walk of the files
 * under manifest M.  PS is kyro__shared_check()'s verdict.  A page claiming
 * more committed data than the files hold turns W into a loss; any other
 * disagreement is described in TEXT (empty when none) at page offset
 * *POFF. */
static void page_vs_files(char *msg, const char *dir, const struct manifest *m,
			  int ps, const char *pwhy,
			  const struct shared_state *st, struct walk *w,
			  uint64_t *poff, char *text, size_t textlen)
{
	text[0] = 0;
	if (ps == SHARED_BAD || ps == SHARED_ODD) {
		snprintf(text, textlen, "shared page %s", pwhy);
		return;
	}
	if (ps != SHARED_OK || (w->kind != W_CLEAN && w->kind != W_TORN))
		return;
	if (st->wal_seg == m->wal_last && st->wal_end > w->end) {
		lost_by_page(msg, dir, st, w);
		return;
	}
	if ((st->flags & SHARED_VOID_TAIL) && st->wal_seg == m->wal_last &&
	    st->wal_end < w->end) {
		/* A batch its writer reported as failed but could not cut:
		 * a tail to remove, not a commit to adopt. */
		w->kind = W_TORN;
		w->end = st->wal_end;
		w->last_seq = st->last_seq;
		snprintf(w->why, sizeof w->why,
			 "torn tail: the batch after the committed end "
			 "failed when it "
			 "was written and could not be cut off: not "
			 "committed; the next writer removes it");
		return;
	}
	int same = st->manifest_gen == m->gen && st->wal_seg == m->wal_last &&
		   st->wal_end == w->end && st->last_seq == w->last_seq;
	/* Behind the files is what a writer that died between its commit
	 * and its publish leaves: not damage, the next writer catches up.
	 * Ahead of them, or at odds with itself, it is. */
	int behind = st->manifest_gen <= m->gen &&
		     (st->wal_seg < m->wal_last ||
		      (st->wal_seg == m->wal_last &&
		       st->last_seq <= w->last_seq &&
		       (st->wal_end < w->end) == (st->last_seq < w->last_seq)));
	if (same || behind)
		return;
	*poff = 40;
	snprintf(text, textlen,
		 "shared page disagrees with the files (manifest generation "
		 "%llu, segment %llu, end %llu, sequence number %llu)",
		 (unsigned long long)st->manifest_gen,
		 (unsigned long long)st->wal_seg,
		 (unsigned long long)st->wal_end,
		 (unsigned long long)st->last_seq);
}

/* Under the writer lock: rewrite the noted headers, truncate a torn
 * tail or cut lost data, then republish the page (whose state was PS,
 * *ST, described by PTEXT at POFF) from the files. */
static int repair_wal(struct vctx *c, char *msg, const char *dir,
		      struct manifest *m, struct shared *sh, struct walk *w,
		      int ps, const struct shared_state *st, uint64_t poff,
		      const char *ptext)
{
	int rc;
	for (size_t i = 0; i < w->nnotes; i++) {
		struct note *n = &w->notes[i];
		if (!n->fix) {
			kyro__vsay(c, n->path, n->off, "%s", n->why);
			c->damaged = 1;
			continue;
		}
		if ((rc = rewrite_header(msg, dir, n)) != 0)
			return rc;
		kyro__vsay(c, n->path, 0,
		    "bad segment header: rewritten from the file name and "
		    "sequence number %llu (repaired)",
		    (unsigned long long)n->first_seq);
	}
	switch (w->kind) {
	case W_TORN:
		if ((rc = truncate_seg(msg, w->path, w->end)) != 0)
			return rc;
		kyro__vsay(c, w->path, w->end, "%s: repaired (truncated)",
			   w->why);
		break;
	case W_LOST:
		if ((rc = cut_log(c, msg, dir, m, w)) != 0)
			return rc;
		break;
	case W_STUCK:
		kyro__vdamage(c, w->why);
		return 0;
	}
	if (ptext[0])
		kyro__vsay(c, sh->path, poff,
			   "%s: rebuilt from the files (repaired)", ptext);
	struct shared_state fresh = {
		.manifest_gen = m->gen,
		.wal_seg = w->seg,
		.wal_end = w->end,
		.last_seq = w->last_seq,
	};
	if (ps != SHARED_OK || memcmp(&fresh, st, sizeof *st))
		kyro__shared_publish(sh, &fresh);
	return 0;
}

static int verify_wal(struct vctx *c, const char *dir, struct manifest *m,
		      unsigned flags)
{
	char msg[KMSG_MAX];
	struct shared sh;
	struct walk w;
	int rc = walk(msg, dir, m, m->wal_first, chain_start(m), &w);
	if (rc) {
		c->report(c->arg, NULL, 0, msg);
		return rc;
	}
	if (kyro__shared_open(msg, &sh, dir, 1)) {
		/* A store this process cannot write: no writer can be
		 * mid-batch, and nothing can be repaired. */
		report_walk(c, &w);
		return 0;
	}
	if ((rc = kyro__shared_lock(msg, &sh)) != 0)
		goto out;
	struct manifest now;
	if ((rc = kyro__manifest_read(msg, dir, &now)) != 0)
		goto out;
	if ((flags & KYRO_VERIFY_REPAIR) || memcmp(&now, m, sizeof now) ||
	    w.nnotes || (w.kind != W_CLEAN && w.kind != W_TORN)) {
		*m = now;
		rc = walk(msg, dir, m, m->wal_first, chain_start(m), &w);
	} else {
		/* Only the last segment can have changed: writers append
		 * there, and nothing before it is touched without a new
		 * manifest. */
		struct walk last;
		rc = walk(msg, dir, m, m->wal_last, w.chain_last, &last);
		if (!rc)
			w = last;
	}
	if (rc)
		goto out;
	struct shared_state st;
	uint64_t poff = 0;
	const char *pwhy = "";
	char ptext[KMSG_MAX];
	int ps = kyro__shared_check(sh.page, SHARED_PAGE, &st, &poff, &pwhy);
	page_vs_files(msg, dir, m, ps, pwhy, &st, &w, &poff, ptext,
		      sizeof ptext);
	if (flags & KYRO_VERIFY_REPAIR) {
		rc = repair_wal(c, msg, dir, m, &sh, &w, ps, &st, poff, ptext);
		goto out;
	}
	report_walk(c, &w);
	if (ptext[0]) {
		kyro__vsay(c, sh.path, poff, "%s: the next writer rebuilds it",
			   ptext);
		c->damaged = 1;
	}
out:
	kyro__shared_close(&sh);
	if (rc)
		c->report(c->arg, NULL, 0, msg);
	return rc;
}

/*
 * The retained history (writer.c keeps it for the change feed): the
 * segments below wal_first that form an unbroken run down from
 * wal_first - 1.  A rotation sealed each of them after its writer had
 * cut any torn tail, so each must be clean to its end and continue the
 * one before it, the newest ending where the first live segment begins.
 * Unlocked: they are never written again, and retention removes them
 * oldest first, so a missing one means all older ones are gone too.
 * Never repaired: they hold no data the snapshot lacks, only history, and
 * a "repair" could only shorten it; the report says how to drop it.
 */
static void verify_history(struct vctx *c, const char *dir,
			   const struct manifest *m)
{
	char msg[KMSG_MAX], path[PATH_MAX];
	uint64_t *ids, next = chain_start(m);
	size_t n;
	int rc = kyro__wal_list_below(msg, dir, m->wal_first, &ids, &n);
	if (rc) {
		kyro__vdamage(c, msg);
		return;
	}
	size_t run = kyro__wal_history_len(ids, n, m->wal_first);
	for (size_t i = 0; i < run && !c->damaged; i++) {
		const unsigned char *b;
		uint64_t len, first;
		struct wal_scan sc;
		if ((rc = map_seg(msg, dir, ids[i], path, &b, &len)) == ENOENT)
			break;
		if (!rc)
			rc = kyro__wal_header_check(msg, b, len, path, ids[i],
						    &first);
		if (rc) {
			kyro__vdamage(c, msg);
		} else {
			kyro__wal_scan(b, len, ids[i], WAL_HDR, first, &sc);
			if (sc.status)
				kyro__vsay(c, path, sc.bad_off, "%s", sc.why);
			else if (sc.last_seq + 1 != next)
				kyro__vsay(c, path, 24,
				    "ends at sequence number %llu, but the "
				    "next segment begins at %llu",
				    (unsigned long long)sc.last_seq,
				    (unsigned long long)next);
			c->damaged = sc.status || sc.last_seq + 1 != next;
			next = first;
		}
		kyro__fs_unmap((void *)b, (size_t)len);
		if (c->damaged)
			kyro__vsay(c, "", UINT64_MAX,
			    "'%s' is retained history (a folded segment kept "
			    "for the change feed): not repaired; the store's "
			    "data is in the snapshot, and 'kyro-snapshot "
			    "--retain 0' removes the history",
			    path);
	}
	free(ids);
}

int kyro_verify(const char *dir, unsigned flags, kyro_report_fn report,
		void *arg)
{
	struct vctx c = {.report = report, .arg = arg};
	char msg[KMSG_MAX];
	struct manifest m;
	int rc = kyro__manifest_read(msg, dir, &m);
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
		int empty = kyro__db_view_empty(db);
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
		kyro__vdamage(&c, msg);
		return KYRO_EDAMAGED;
	}
	kyro__verify_snapshot(&c, dir, &m, flags);
	int damaged = c.damaged;
	c.damaged = 0;
	verify_history(&c, dir, &m);
	c.damaged |= damaged;
	rc = verify_wal(&c, dir, &m, flags);
	if (rc)
		return rc;
	return c.damaged ? KYRO_EDAMAGED : 0;
}
