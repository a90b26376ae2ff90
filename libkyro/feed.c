/*
 * feed.c - the change feed: committed batches, whole and in sequence
 * order, read straight from the WAL segment files, and a wait for the
 * next commit.
 *
 * No format of its own: it reads the segments of wal.c (whose opening
 * comment states them byte by byte) and the shared page of shared.c.
 * The segments it walks are, in id order, the retained history (folded
 * segments the garbage collector kept: an unbroken run of ids ending at
 * the manifest's wal_first - 1, writer.c) and the live ones
 * (wal_first..wal_last).  Each segment's header names its first sequence
 * number, and each must continue the previous one's: a gap is corruption.
 *
 * What is committed.  The shared page, when trusted, says which segment
 * holds the committed end and where it is: a segment below it is sealed
 * (a rotation made it durable before the manifest moved on) and read to
 * the end of its complete batches; the one holding the end is read up to
 * it and no further, since bytes past it may be a batch whose fsync has
 * not returned and that may yet be rolled back.  With no trusted page (no
 * writer since boot) the files are the truth, as for kyro_open(): the
 * manifest says which segments are sealed, and the last is read to its
 * last complete batch, found with pread: the next writer may cut what
 * follows it at any moment, and a mapped page past a cut faults.
 *
 * Recovery rules are wal.c's: every record is checked before its batch is
 * passed on; a record that fails is KYRO_ECORRUPT with the file and
 * offset, never skipped.  A segment removed under the reader (history
 * dropped by retention) is KYRO_EEXPIRED when what the feed needs next is
 * older than what is left, and corruption otherwise.  So is a log that a
 * repair cut below what the feed has passed on (check_replaced()).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fsio.h"
#include "internal.h"
#include "manifest.h"
#include "shared.h"
#include "wal.h"

/* How long a wait sleeps when the store has no LOCK file to wait on. */
#define NO_PAGE_NAP_MS 50

struct seg {
	int fd;
	uint64_t id, first_seq;
	uint64_t dev, ino; /* which file: repair may put another in its place */
	const unsigned char *base;
	size_t maplen;
	char path[PATH_MAX];
};

struct kyro_feed {
	char dir[PATH_MAX];
	struct shared sh;
	struct seg seg;    /* the segment being read; fd -1: none */
	uint64_t pos;      /* where its next batch starts */
	uint64_t file_seq; /* the sequence number the record at POS carries */
	uint64_t want;     /* the next one to pass on: below it, records are
			    * checked but not passed (a FROM inside a
			    * batch, or a stop in the middle of one) */
	uint64_t oldest;
	uint64_t man_gen;  /* the manifest generation the page last showed */
	int interrupted;
	char msg[KMSG_MAX];
};

static void seg_close(struct seg *s)
{
	kyro__fs_unmap((void *)s->base, s->maplen);
	kyro__fs_close(s->fd);
	s->base = NULL;
	s->maplen = 0;
	s->fd = -1;
}

static int seg_open(char *msg, struct seg *s, const char *dir, uint64_t id)
{
	struct fs_id fid = {0};
	uint64_t size;
	memset(s, 0, sizeof *s);
	s->fd = -1;
	s->id = id;
	int rc = kyro__path_gen(s->path, dir, "wal-", id, ".log");
	if (rc)
		return kyro__fail(msg, rc, "cannot open a WAL segment in '%s'",
				  dir);
	rc = kyro__fs_open(msg, s->path, O_RDONLY, 0, &s->fd);
	if (!rc)
		rc = kyro__fs_id(msg, s->fd, s->path, &fid);
	size = fid.size;
	s->dev = fid.dev;
	s->ino = fid.ino;
	if (!rc)
		rc = kyro__fs_map(msg, s->fd, (size_t)size, 0, s->path,
				  (void **)&s->base);
	if (!rc) {
		s->maplen = (size_t)size;
		rc = kyro__wal_header_check(msg, s->base, size, s->path, id,
					    &s->first_seq);
	}
	if (rc)
		seg_close(s);
	return rc;
}

/* Map what the segment holds now: it grows while it is the last. */
static int seg_grow(char *msg, struct seg *s)
{
	uint64_t size;
	void *p;
	int rc = kyro__fs_size(msg, s->fd, s->path, &size);
	if (rc || size <= s->maplen)
		return rc;
	if ((rc = kyro__fs_remap(msg, (void *)s->base, s->maplen, size,
				 s->path, &p)) != 0)
		return rc;
	s->base = p;
	s->maplen = (size_t)size;
	return 0;
}

static int read_manifest(kyro_feed *f, struct manifest *m)
{
	int rc = kyro__manifest_read(f->msg, f->dir, m);
	if (rc == ENOENT)
		return kyro__failx(f->msg, ENOENT, "'%s' holds no store: %s",
				   f->dir, kyro_strerror(ENOENT));
	return rc;
}

/* The ids of the whole log as it is now: *LOW (the oldest retained
 * segment, or wal_first) up to *HIGH (wal_last). */
static int log_ids(kyro_feed *f, uint64_t *low, uint64_t *high)
{
	struct manifest m;
	uint64_t *ids;
	size_t n;
	int rc = read_manifest(f, &m);
	if (!rc)
		rc = kyro__wal_list_below(f->msg, f->dir, m.wal_first, &ids,
					  &n);
	if (rc)
		return rc;
	*low = m.wal_first - kyro__wal_history_len(ids, n, m.wal_first);
	*high = m.wal_last;
	free(ids);
	return 0;
}

/* Retention may remove the oldest segments while we look: look again. */
#define RACE_TRIES 8

static int find_oldest(kyro_feed *f)
{
	int rc = 0;
	for (int tries = 0; tries < RACE_TRIES; tries++) {
		uint64_t low, high;
		struct seg s;
		if ((rc = log_ids(f, &low, &high)) != 0)
			return rc;
		rc = seg_open(f->msg, &s, f->dir, low);
		if (rc == ENOENT)
			continue;
		if (rc)
			return rc;
		f->oldest = s.first_seq;
		seg_close(&s);
		return 0;
	}
	return rc;
}

static int expired(kyro_feed *f)
{
	int rc = find_oldest(f);
	if (rc)
		return rc;
	return kyro__failx(
		f->msg, KYRO_EEXPIRED,
		"'%s': history before sequence number %llu is no longer "
		"retained (asked for %llu): bootstrap from a snapshot, then "
		"follow from %llu or later",
		f->dir, (unsigned long long)f->oldest,
		(unsigned long long)f->want, (unsigned long long)f->oldest);
}

/* Find the segment holding F->want: the newest whose first sequence
 * number is not above it. */
static int locate(kyro_feed *f)
{
	int rc = 0;
	for (int tries = 0; tries < RACE_TRIES; tries++) {
		uint64_t low, high, id;
		if ((rc = log_ids(f, &low, &high)) != 0)
			return rc;
		for (id = high; id >= low && id > 0; id--) {
			if ((rc = seg_open(f->msg, &f->seg, f->dir, id)) != 0)
				break;
			if (f->seg.first_seq <= f->want) {
				f->pos = WAL_HDR;
				f->file_seq = f->seg.first_seq;
				return 0;
			}
			seg_close(&f->seg);
			if (id == low)
				return expired(f);
		}
		if (rc != ENOENT)
			return rc;
	}
	return rc;
}

int kyro_feed_open(kyro_feed **fp, const char *dir, uint64_t from)
{
	kyro_feed *f = calloc(1, sizeof *f);
	*fp = f;
	if (!f)
		return ENOMEM;
	f->seg.fd = -1;
	f->sh.fd = -1;
	f->want = from ? from : 1;
	int n = snprintf(f->dir, sizeof f->dir, "%s", dir);
	if (n < 0 || (size_t)n >= sizeof f->dir)
		return kyro__fail(f->msg, ENAMETOOLONG, "cannot open '%s'",
				  dir);
	/* Without a LOCK file there is no news to hear of yet; waits then
	 * look again later (kyro_feed_wait()). */
	kyro__shared_open(NULL, &f->sh, dir, 0);
	return locate(f);
}

void kyro_feed_close(kyro_feed *f)
{
	if (!f)
		return;
	seg_close(&f->seg);
	kyro__shared_close(&f->sh);
	free(f);
}

const char *kyro_feed_errmsg(const kyro_feed *f)
{
	return f ? f->msg : "out of memory";
}

uint64_t kyro_feed_position(const kyro_feed *f)
{
	return f->want;
}

uint64_t kyro_feed_oldest(const kyro_feed *f)
{
	return f->oldest;
}

/* The end of the complete batches of the last segment, which no writer
 * published: read with pread, since the torn tail after them is the next
 * writer's to cut and a mapped page past a cut faults.  Damage right at
 * F->pos is reported; damage further on waits until the batches before
 * it are passed on. */
static int whole_end(kyro_feed *f, uint64_t *limit)
{
	struct wal_scan sc;
	uint64_t size;
	int rc = kyro__wal_scan_unlocked(f->msg, f->seg.path, f->seg.id,
					 f->pos, f->file_seq, &sc, &size);
	if (rc)
		return rc;
	if (sc.status == KYRO_ECORRUPT && sc.end == f->pos)
		return kyro__failx(f->msg, KYRO_ECORRUPT,
				   "'%s': offset %llu: %s", f->seg.path,
				   (unsigned long long)sc.bad_off, sc.why);
	*limit = sc.end;
	return sc.end > f->seg.maplen ? seg_grow(f->msg, &f->seg) : 0;
}

/* The log went back under the feed: repair cut committed data it found
 * lost, putting a new file in the segment's place (verify.c) and
 * committing a new manifest; or rewrote its damaged header the same way,
 * without one.  Looked at when the page shows a new manifest generation
 * GEN, and when the segment seems shorter than its committed end: if the
 * segment being read is another file now,
 * the feed goes on in it only when it still holds, byte for byte, every
 * record the feed has read (the cut came after them); else changes it
 * passed on are gone, and its client must start again from a snapshot,
 * as after history that expired. */
static int check_replaced(kyro_feed *f, uint64_t gen)
{
	struct seg s;
	f->man_gen = gen;
	int rc = seg_open(f->msg, &s, f->dir, f->seg.id);
	if (rc == ENOENT) {
		/* Gone: folded and dropped by retention (the mapping reads
		 * on, and the next segment says whether the history is
		 * still whole), or dropped by a repair that cut the log in
		 * an earlier one, after the manifest's last segment. */
		struct manifest m;
		if ((rc = read_manifest(f, &m)) != 0)
			return rc;
		if (f->seg.id <= m.wal_last)
			return 0;
		rc = ENOENT;
	} else if (rc) {
		return rc;
	} else if (s.dev == f->seg.dev && s.ino == f->seg.ino) {
		seg_close(&s);
		return 0;
	}
	int kept = !rc && s.first_seq == f->seg.first_seq &&
		   s.maplen >= f->pos && f->pos <= f->seg.maplen &&
		   !memcmp(s.base + WAL_HDR, f->seg.base + WAL_HDR,
			   (size_t)(f->pos - WAL_HDR));
	if (kept) {
		seg_close(&f->seg);
		f->seg = s;
		return 0;
	}
	if (!rc)
		seg_close(&s);
	(void)find_oldest(f); /* what a client may follow from now */
	return kyro__failx(f->msg, KYRO_EEXPIRED,
			   "'%s': a repair cut the log, dropping committed "
			   "changes this feed had passed on (it had read up "
			   "to sequence number %llu): bootstrap from a "
			   "snapshot",
			   f->dir, (unsigned long long)(f->file_seq - 1));
}

/* How far the segment being read is committed: *LIMIT, whether it is
 * sealed (complete: read it to the end, then go on to the next one), and
 * whether LIMIT is a published committed end (else the files' own). */
static int seg_limit(kyro_feed *f, uint64_t *limit, int *sealed,
		     int *published)
{
	struct shared_state st;
	struct manifest m;
	uint64_t change;
	int rc;
	*published = 0;
	if (kyro__shared_read(&f->sh, &st, &change) == 0) {
		if (st.manifest_gen != f->man_gen &&
		    (rc = check_replaced(f, st.manifest_gen)) != 0)
			return rc;
		if (st.wal_seg == f->seg.id) {
			*limit = st.wal_end;
			*sealed = 0;
			*published = 1;
			if (*limit > f->seg.maplen)
				return seg_grow(f->msg, &f->seg);
			return 0;
		}
		if (st.wal_seg < f->seg.id) {
			/* The page lags the segment we are in (a writer
			 * publishes right after it rotates): nothing new
			 * until it catches up. */
			*limit = f->pos;
			*sealed = 0;
			return 0;
		}
		*sealed = 1;
	} else {
		if ((rc = read_manifest(f, &m)) != 0)
			return rc;
		*sealed = m.wal_last > f->seg.id;
		if (!*sealed)
			return whole_end(f, limit);
	}
	rc = seg_grow(f->msg, &f->seg);
	*limit = f->seg.maplen;
	return rc;
}

/* Pass on the checked batch [F->pos, END) ending at LAST; *PASSED counts
 * it when any of its changes went to FN. */
static int deliver(kyro_feed *f, uint64_t end, uint64_t last,
		   kyro_change_fn fn, void *arg, size_t *passed)
{
	struct kyro_change c = {.batch_first = f->file_seq, .batch_last = last};
	struct wal_rec r;
	int any = 0, rc = 0;
	for (uint64_t off = f->pos; off < end && !rc;) {
		off = wal_rec_at(f->seg.base, off, &r);
		if (r.type == WAL_COMMIT || r.seq < f->want)
			continue;
		c.seq = r.seq;
		c.op = r.type == WAL_PUT   ? KYRO_CHANGE_PUT
		       : r.type == WAL_VEC ? KYRO_CHANGE_VECTOR
					   : KYRO_CHANGE_DELETE;
		c.key = r.key;
		c.val = r.val;
		c.len = r.len;
		f->want = r.seq + 1;
		any = 1;
		rc = fn(arg, &c);
	}
	*passed += any;
	/* Stopped inside the batch: stay at its start, so that the rest is
	 * read (and checked) again; what was passed is below F->want. */
	if (rc && f->want <= last)
		return rc;
	f->pos = end;
	f->file_seq = last + 1;
	if (f->want < f->file_seq)
		f->want = f->file_seq;
	return rc;
}

/* The segment being read is complete and read: go on to the next. */
static int next_segment(kyro_feed *f)
{
	struct seg s;
	int rc = seg_open(f->msg, &s, f->dir, f->seg.id + 1);
	if (rc == ENOENT) {
		uint64_t low, high;
		if (!log_ids(f, &low, &high) && low > f->seg.id + 1)
			return expired(f);
		return kyro__fail(f->msg, KYRO_ECORRUPT,
				  "'%s/wal-%016llx.log' is missing after "
				  "segment '%s'",
				  f->dir, (unsigned long long)f->seg.id + 1,
				  f->seg.path);
	}
	if (rc)
		return rc;
	if (s.first_seq != f->file_seq) {
		rc = kyro__failx(f->msg, KYRO_ECORRUPT,
				 "'%s': offset 24: first sequence number %llu, "
				 "expected %llu",
				 s.path, (unsigned long long)s.first_seq,
				 (unsigned long long)f->file_seq);
		seg_close(&s);
		return rc;
	}
	seg_close(&f->seg);
	f->seg = s;
	f->pos = WAL_HDR;
	return 0;
}

int kyro_feed_read(kyro_feed *f, size_t max_batches, kyro_change_fn fn,
		   void *arg, size_t *batches)
{
	size_t done = 0;
	int rc = 0;
	if (f->seg.fd < 0)
		rc = locate(f);
	while (!rc && done < max_batches) {
		uint64_t limit = 0;
		int sealed, published;
		struct wal_scan sc;
		if ((rc = seg_limit(f, &limit, &sealed, &published)) != 0)
			break;
		if (limit > f->seg.maplen) {
			/* Repair may have put another file in the
			 * segment's place without a new manifest (a
			 * rewritten header): read on in it when it holds
			 * what was read. */
			uint64_t dev = f->seg.dev, ino = f->seg.ino;
			if ((rc = check_replaced(f, f->man_gen)) != 0)
				break;
			if (f->seg.dev != dev || f->seg.ino != ino)
				continue;
			rc = kyro__failx(
				f->msg, KYRO_ECORRUPT,
				"'%s': offset %llu: committed data is missing: "
				"the log was committed up to offset %llu",
				f->seg.path, (unsigned long long)f->seg.maplen,
				(unsigned long long)limit);
			break;
		}
		memset(&sc, 0, sizeof sc);
		while (done < max_batches && f->pos < limit) {
			kyro__wal_scan_batch(f->seg.base, limit, f->seg.id,
					     f->pos, f->file_seq, &sc);
			if (sc.batches == 0)
				break;
			rc = deliver(f, sc.end, sc.last_seq, fn, arg, &done);
			if (rc)
				goto out;
		}
		if (sc.status == KYRO_ECORRUPT ||
		    (sc.status == KYRO_ETORN && published))
			rc = kyro__failx(f->msg, KYRO_ECORRUPT,
					 "'%s': offset %llu: %s", f->seg.path,
					 (unsigned long long)sc.bad_off,
					 sc.status == KYRO_ETORN
						 ? "the committed end is not "
						   "the end of a batch"
						 : sc.why);
		else if (done < max_batches && f->pos < limit && !sealed)
			break; /* a batch in progress, no writer published */
		else if (done < max_batches && sealed)
			rc = next_segment(f);
		else if (done < max_batches)
			break; /* caught up */
	}
out:
	if (batches)
		*batches = done;
	return rc;
}

int kyro_feed_bounds(kyro_feed *f, uint64_t *oldest, uint64_t *last)
{
	struct shared_state st;
	uint64_t change, low, high;
	int rc = find_oldest(f);
	if (rc)
		return rc;
	if (oldest)
		*oldest = f->oldest;
	if (!last)
		return 0;
	if (kyro__shared_read(&f->sh, &st, &change) == 0) {
		*last = st.last_seq;
		return 0;
	}
	/* No writer published since boot: the last segment's complete
	 * batches say it (read with pread: see whole_end()). */
	struct seg s;
	struct wal_scan sc;
	uint64_t size;
	if ((rc = log_ids(f, &low, &high)) != 0 ||
	    (rc = seg_open(f->msg, &s, f->dir, high)) != 0)
		return rc;
	rc = kyro__wal_scan_unlocked(f->msg, s.path, s.id, WAL_HDR,
				     s.first_seq, &sc, &size);
	seg_close(&s);
	if (rc)
		return rc;
	if (sc.status == KYRO_ECORRUPT)
		return kyro__failx(f->msg, KYRO_ECORRUPT,
				   "'%s': offset %llu: %s", s.path,
				   (unsigned long long)sc.bad_off, sc.why);
	*last = sc.last_seq;
	return 0;
}

/* Is there anything past what the feed has read, by the page? */
static int news(const kyro_feed *f)
{
	struct shared_state st;
	uint64_t change;
	if (kyro__shared_read(&f->sh, &st, &change) != 0)
		return 0;
	return st.last_seq >= f->file_seq || st.wal_seg > f->seg.id;
}

static int nap(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000L};
	return nanosleep(&ts, NULL) ? errno : 0;
}

int kyro_feed_wait(kyro_feed *f, int timeout_ms)
{
	if (__atomic_exchange_n(&f->interrupted, 0, __ATOMIC_ACQ_REL))
		return EINTR;
	if (!f->sh.page) {
		kyro__shared_close(&f->sh);
		kyro__shared_open(NULL, &f->sh, f->dir, 0);
		if (!f->sh.page) {
			int ms = timeout_ms >= 0 && timeout_ms < NO_PAGE_NAP_MS
					 ? timeout_ms
					 : NO_PAGE_NAP_MS;
			int rc = nap(ms);
			if (!rc && ms == timeout_ms)
				rc = ETIMEDOUT;
			return rc;
		}
	}
	uint64_t change = shared_change(&f->sh);
	if (news(f))
		return 0;
	int rc = kyro__shared_wait(&f->sh, change, timeout_ms);
	if (__atomic_exchange_n(&f->interrupted, 0, __ATOMIC_ACQ_REL))
		return EINTR;
	return rc;
}

void kyro_feed_interrupt(kyro_feed *f)
{
	__atomic_store_n(&f->interrupted, 1, __ATOMIC_RELEASE);
	kyro__shared_wake(&f->sh);
}
