/*
 * test_feed.c - the change feed (kyro_feed_*) and retention
 * (kyro_set_retain()): order, whole batches, resuming inside a batch,
 * history kept and dropped across snapshots, a damaged retained record
 * (an error, never a skip), a batch in progress never passed, waiting
 * and interrupting.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "kyro.h"

static kyro_db *open_rw(const char *dir)
{
	kyro_db *db;
	int rc = kyro_open(&db, dir, KYRO_RDWR);
	if (rc) {
		h_note("kyro_open '%s': %s", dir, kyro_errmsg(db));
		kyro_close(db);
		return NULL;
	}
	kyro_set_sync(db, KYRO_SYNC_NONE);
	return db;
}

/* What a read saw, change by change. */
#define MAXC 4096
struct seen {
	size_t n;
	uint64_t seq[MAXC], key[MAXC], first[MAXC], last[MAXC];
	int op[MAXC];
	char val[MAXC][16];
	size_t stop_after; /* return 1 after this many changes (0: never) */
};

static int collect(void *arg, const struct kyro_change *c)
{
	struct seen *s = arg;
	if (s->n == MAXC)
		return ENOSPC;
	size_t i = s->n++;
	s->seq[i] = c->seq;
	s->key[i] = c->key;
	s->first[i] = c->batch_first;
	s->last[i] = c->batch_last;
	s->op[i] = c->op;
	snprintf(s->val[i], sizeof s->val[i], "%.*s", (int)c->len,
		 c->op == KYRO_CHANGE_PUT ? (const char *)c->val : "");
	return s->stop_after && s->n == s->stop_after ? 1 : 0;
}

/* Batch B (1-based) of N records: keys B*100+i, the last one a delete
 * when DEL. */
static int write_batch(kyro_db *db, uint64_t b, int n, int del)
{
	char v[16];
	int rc = kyro_batch_begin(db);
	for (int i = 0; !rc && i < n; i++) {
		snprintf(v, sizeof v, "b%llu.%d", (unsigned long long)b, i);
		if (del && i == n - 1)
			rc = kyro_delete(db, b * 100 + i, NULL);
		else
			rc = kyro_put(db, b * 100 + i, v, strlen(v), NULL);
	}
	if (!rc)
		rc = kyro_batch_commit(db, NULL);
	if (rc)
		h_note("batch %llu: %s", (unsigned long long)b,
		       kyro_errmsg(db));
	return rc;
}

/* Read everything there is from FROM into S. */
static int read_all(const char *dir, uint64_t from, struct seen *s)
{
	kyro_feed *f;
	size_t got;
	int rc = kyro_feed_open(&f, dir, from);
	while (!rc && (rc = kyro_feed_read(f, 7, collect, s, &got)) == 0 &&
	       got == 7)
		;
	if (rc)
		h_note("feed: %s", kyro_feed_errmsg(f));
	kyro_feed_close(f);
	return rc;
}

/* S holds the changes FROM..TO of batches of 3 records (batch b has
 * seqs 3b-2..3b) written by write_batch(b, 3, b % 2), in order, each
 * once. */
static void check_run(const struct seen *s, uint64_t from, uint64_t to)
{
	REQUIRE(CHECK_EQ_U64(s->n, to - from + 1));
	for (size_t i = 0; i < s->n; i++) {
		uint64_t seq = from + i, b = (seq + 2) / 3, k = (seq + 2) % 3;
		char want[16];
		CHECK_EQ_U64(s->seq[i], seq);
		CHECK_EQ_U64(s->first[i], 3 * b - 2);
		CHECK_EQ_U64(s->last[i], 3 * b);
		CHECK_EQ_U64(s->key[i], b * 100 + k);
		int del = (b % 2) && k == 2;
		CHECK(s->op[i] == (del ? KYRO_CHANGE_DELETE : KYRO_CHANGE_PUT));
		snprintf(want, sizeof want, "b%llu.%llu", (unsigned long long)b,
			 (unsigned long long)k);
		if (!del)
			CHECK(!strcmp(s->val[i], want));
	}
}

static struct seen S;

static void count_report(void *arg, const char *file, uint64_t off,
			 const char *text)
{
	(void)file;
	(void)off;
	(void)text;
	++*(int *)arg;
}


TEST(feed_order_batches_and_resume_inside_a_batch)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	for (uint64_t b = 1; b <= 10; b++)
		REQUIRE(write_batch(db, b, 3, b % 2) == 0);
	memset(&S, 0, sizeof S);
	CHECK_RC(read_all(dir, 0, &S), 0);
	check_run(&S, 1, 30);
	/* From the middle of batch 4 (seqs 10..12): its rest, then on. */
	memset(&S, 0, sizeof S);
	CHECK_RC(read_all(dir, 11, &S), 0);
	check_run(&S, 11, 30);
	/* A stop inside a batch resumes right after the last change
	 * passed: nothing twice, nothing skipped. */
	kyro_feed *f;
	size_t got;
	memset(&S, 0, sizeof S);
	REQUIRE(kyro_feed_open(&f, dir, 1) == 0);
	S.stop_after = 5;
	CHECK_RC(kyro_feed_read(f, 100, collect, &S, &got), 1);
	CHECK_EQ_U64(kyro_feed_position(f), 6);
	S.stop_after = 0;
	CHECK_RC(kyro_feed_read(f, 100, collect, &S, &got), 0);
	check_run(&S, 1, 30);
	/* Caught up: nothing, and a wait with no commit times out. */
	CHECK_RC(kyro_feed_read(f, 100, collect, &S, &got), 0);
	CHECK_EQ_U64(got, 0);
	CHECK_RC(kyro_feed_wait(f, 20), ETIMEDOUT);
	/* A commit is news. */
	REQUIRE(write_batch(db, 11, 3, 1) == 0);
	CHECK_RC(kyro_feed_wait(f, 1000), 0);
	CHECK_RC(kyro_feed_read(f, 100, collect, &S, &got), 0);
	check_run(&S, 1, 33);
	kyro_feed_close(f);
	kyro_close(db);
}

TEST(feed_history_across_snapshots_and_expiry)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	uint64_t oldest = 0, last = 0;
	REQUIRE(db);
	for (uint64_t b = 1; b <= 4; b++)
		REQUIRE(write_batch(db, b, 3, b % 2) == 0);
	REQUIRE(kyro_snapshot(db, 0, NULL, NULL, NULL, NULL) == 0);
	for (uint64_t b = 5; b <= 6; b++)
		REQUIRE(write_batch(db, b, 3, b % 2) == 0);
	/* The default retention keeps the folded segment. */
	CHECK(h_exists(h_path(dir, "wal-0000000000000001.log")));
	memset(&S, 0, sizeof S);
	CHECK_RC(read_all(dir, 0, &S), 0);
	check_run(&S, 1, 18);

	/* A follower inside segment 1 keeps going while a snapshot that
	 * retains nothing removes it: it has it mapped, and segment 2 is
	 * still there. */
	kyro_feed *f;
	size_t got;
	memset(&S, 0, sizeof S);
	REQUIRE(kyro_feed_open(&f, dir, 1) == 0);
	CHECK_RC(kyro_feed_read(f, 1, collect, &S, &got), 0);
	kyro_set_retain(db, 0, 0);
	REQUIRE(kyro_snapshot(db, 0, NULL, NULL, NULL, NULL) == 0);
	CHECK(!h_exists(h_path(dir, "wal-0000000000000001.log")));
	CHECK(!h_exists(h_path(dir, "wal-0000000000000002.log")));
	for (uint64_t b = 7; b <= 8; b++)
		REQUIRE(write_batch(db, b, 3, b % 2) == 0);
	/* Segment 2 (seqs 13..18) went too: the follower is told. */
	while (kyro_feed_read(f, 1, collect, &S, &got) == 0 && got)
		;
	CHECK_RC(kyro_feed_read(f, 1, collect, &S, &got), KYRO_EEXPIRED);
	CHECK_EQ_U64(S.n, 12);
	CHECK_EQ_U64(kyro_feed_oldest(f), 19);
	CHECK_STR_HAS(kyro_feed_errmsg(f), "bootstrap from a snapshot");
	kyro_feed_close(f);

	/* Asking for what is gone: KYRO_EEXPIRED, with the oldest seq. */
	CHECK_RC(kyro_feed_open(&f, dir, 5), KYRO_EEXPIRED);
	CHECK_EQ_U64(kyro_feed_oldest(f), 19);
	CHECK_STR_HAS(kyro_feed_errmsg(f), "19");
	kyro_feed_close(f);
	REQUIRE(kyro_feed_open(&f, dir, 19) == 0);
	CHECK_RC(kyro_feed_bounds(f, &oldest, &last), 0);
	CHECK_EQ_U64(oldest, 19);
	CHECK_EQ_U64(last, 24);
	kyro_feed_close(f);
	memset(&S, 0, sizeof S);
	CHECK_RC(read_all(dir, 19, &S), 0);
	check_run(&S, 19, 24);
	kyro_close(db);
}

TEST(feed_retention_by_size_keeps_the_newest_run)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	/* Three folded segments; a byte budget that holds two of them. */
	for (uint64_t b = 1; b <= 3; b++) {
		REQUIRE(write_batch(db, b, 3, b % 2) == 0);
		REQUIRE(kyro_snapshot(db, 0, NULL, NULL, NULL, NULL) == 0);
	}
	uint64_t seg = h_file_size(h_path(dir, "wal-0000000000000001.log"));
	REQUIRE(seg != UINT64_MAX);
	kyro_set_retain(db, 2 * seg + seg / 2, KYRO_RETAIN_ANY);
	REQUIRE(write_batch(db, 4, 3, 0) == 0);
	REQUIRE(kyro_snapshot(db, 0, NULL, NULL, NULL, NULL) == 0);
	CHECK(!h_exists(h_path(dir, "wal-0000000000000001.log")));
	CHECK(!h_exists(h_path(dir, "wal-0000000000000002.log")));
	CHECK(h_exists(h_path(dir, "wal-0000000000000003.log")));
	CHECK(h_exists(h_path(dir, "wal-0000000000000004.log")));
	memset(&S, 0, sizeof S);
	CHECK_RC(read_all(dir, 7, &S), 0);
	check_run(&S, 7, 12);
	/* Age: everything here is younger than an hour, older than 0 s. */
	kyro_set_retain(db, KYRO_RETAIN_ANY, 3600);
	REQUIRE(kyro_snapshot(db, 0, NULL, NULL, NULL, NULL) == 0);
	CHECK(h_exists(h_path(dir, "wal-0000000000000003.log")));
	kyro_set_retain(db, KYRO_RETAIN_ANY, 0);
	REQUIRE(kyro_snapshot(db, 0, NULL, NULL, NULL, NULL) == 0);
	CHECK(!h_exists(h_path(dir, "wal-0000000000000004.log")));
	int n = 0;
	CHECK_RC(kyro_verify(dir, 0, count_report, &n), 0);
	CHECK_EQ_U64(n, 0);
	kyro_close(db);
}

TEST(feed_damaged_retained_record_is_an_error_not_a_skip)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	for (uint64_t b = 1; b <= 4; b++)
		REQUIRE(write_batch(db, b, 3, b % 2) == 0);
	REQUIRE(kyro_snapshot(db, 0, NULL, NULL, NULL, NULL) == 0);
	REQUIRE(write_batch(db, 5, 3, 1) == 0);
	const char *seg = h_path(dir, "wal-0000000000000001.log");
	/* The first record of batch 3 (seq 7): after the header, batch 1
	 * (two puts of 40 bytes, a delete and a commit of 32) and batch 2
	 * (three puts, a commit). */
	uint64_t off = 48 + (2 * 40 + 32 + 32) + (3 * 40 + 32);
	REQUIRE(h_xor_byte(seg, off + 24, 0x01) == 0);
	kyro_feed *f;
	size_t got;
	memset(&S, 0, sizeof S);
	REQUIRE(kyro_feed_open(&f, dir, 1) == 0);
	int rc = kyro_feed_read(f, 100, collect, &S, &got);
	CHECK_RC(rc, KYRO_ECORRUPT);
	CHECK_EQ_U64(S.n, 6); /* batches 1 and 2, nothing after */
	CHECK_STR_HAS(kyro_feed_errmsg(f), "wal-0000000000000001.log");
	char at[32];
	snprintf(at, sizeof at, "offset %llu", (unsigned long long)off);
	CHECK_STR_HAS(kyro_feed_errmsg(f), at);
	/* Asked again, the same: never a skip to what follows. */
	CHECK_RC(kyro_feed_read(f, 100, collect, &S, &got), KYRO_ECORRUPT);
	CHECK_EQ_U64(S.n, 6);
	kyro_feed_close(f);
	/* From a batch after the damage: the way there is checked too. */
	memset(&S, 0, sizeof S);
	REQUIRE(kyro_feed_open(&f, dir, 10) == 0);
	CHECK_RC(kyro_feed_read(f, 100, collect, &S, &got), KYRO_ECORRUPT);
	CHECK_EQ_U64(S.n, 0);
	kyro_feed_close(f);
	/* kyro_verify() finds it; a repair leaves the history untouched. */
	unsigned char *before, *after;
	size_t blen, alen;
	int n = 0;
	REQUIRE(h_read_file(seg, &before, &blen) == 0);
	CHECK_RC(kyro_verify(dir, 0, count_report, &n), KYRO_EDAMAGED);
	CHECK(n > 0);
	CHECK_RC(kyro_verify(dir, KYRO_VERIFY_REPAIR, count_report, &n),
		 KYRO_EDAMAGED);
	REQUIRE(h_read_file(seg, &after, &alen) == 0);
	CHECK_EQ_U64(alen, blen);
	CHECK(alen == blen && !memcmp(before, after, blen));
	free(before);
	free(after);
	/* The store itself is whole. */
	const void *v;
	size_t len;
	CHECK_RC(kyro_get(db, 301, &v, &len), 0);
	kyro_close(db);
}

TEST(feed_never_passes_a_batch_in_progress)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	REQUIRE(write_batch(db, 1, 3, 1) == 0);
	/* SYNC_ALWAYS writes each record out before the commit: the
	 * bytes are in the file, past the published end. */
	kyro_set_sync(db, KYRO_SYNC_ALWAYS);
	REQUIRE(kyro_batch_begin(db) == 0);
	REQUIRE(kyro_put(db, 900, "x", 1, NULL) == 0);
	REQUIRE(kyro_put(db, 901, "y", 1, NULL) == 0);
	uint64_t size = h_file_size(h_path(dir, "wal-0000000000000001.log"));
	CHECK(size > 48 + 2 * 40 + 32 + 32);
	memset(&S, 0, sizeof S);
	CHECK_RC(read_all(dir, 0, &S), 0);
	CHECK_EQ_U64(S.n, 3);
	kyro_batch_abort(db);
	REQUIRE(write_batch(db, 2, 3, 0) == 0);
	memset(&S, 0, sizeof S);
	CHECK_RC(read_all(dir, 0, &S), 0);
	check_run(&S, 1, 6);
	kyro_close(db);
	/* With no shared page (no writer since it was lost), the files are
	 * the truth: complete batches, and a torn tail is not an error. */
	REQUIRE(unlink(h_path(dir, "LOCK")) == 0);
	REQUIRE(h_append_file(h_path(dir, "wal-0000000000000001.log"),
			      "\x11\x22\x33", 3) == 0);
	memset(&S, 0, sizeof S);
	CHECK_RC(read_all(dir, 0, &S), 0);
	check_run(&S, 1, 6);
}

/* A writer of multi-record batches against a follower: every batch
 * arrives whole, in one read. */
struct writer_arg {
	const char *dir;
	int batches;
};

static void *writer(void *p)
{
	struct writer_arg *a = p;
	kyro_db *db = open_rw(a->dir);
	for (int b = 1; db && b <= a->batches; b++) {
		if (write_batch(db, (uint64_t)b, 3, b % 2))
			break;
		if (b == a->batches / 2)
			kyro_snapshot(db, 0, NULL, NULL, NULL, NULL);
	}
	kyro_close(db);
	return NULL;
}

TEST(feed_follow_while_writing_and_snapshotting)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	kyro_close(db);
	struct writer_arg a = {.dir = dir, .batches = 400};
	pthread_t t;
	kyro_feed *f;
	size_t got;
	memset(&S, 0, sizeof S);
	REQUIRE(kyro_feed_open(&f, dir, 1) == 0);
	REQUIRE(pthread_create(&t, NULL, writer, &a) == 0);
	int rc = 0;
	while (S.n < 3 * (size_t)a.batches && rc == 0) {
		size_t before = S.n;
		rc = kyro_feed_read(f, 1, collect, &S, &got);
		/* Whole batches only: a read ends on a batch's last. */
		if (got)
			CHECK_EQ_U64(S.seq[S.n - 1], S.last[S.n - 1]);
		CHECK_EQ_U64((S.n - before) % 3, 0);
		if (!rc && !got && kyro_feed_wait(f, 5000) == ETIMEDOUT)
			rc = ETIMEDOUT;
	}
	CHECK_RC(rc, 0);
	pthread_join(t, NULL);
	check_run(&S, 1, 3 * (uint64_t)a.batches);
	kyro_feed_close(f);
}

static void *interrupter(void *p)
{
	struct timespec ts = {0, 20 * 1000000L};
	nanosleep(&ts, NULL);
	kyro_feed_interrupt(p);
	return NULL;
}

TEST(feed_wait_is_interruptible)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	REQUIRE(write_batch(db, 1, 3, 0) == 0);
	kyro_feed *f;
	size_t got;
	pthread_t t;
	REQUIRE(kyro_feed_open(&f, dir, 4) == 0);
	CHECK_RC(kyro_feed_read(f, 10, collect, &S, &got), 0);
	CHECK_EQ_U64(got, 0);
	REQUIRE(pthread_create(&t, NULL, interrupter, f) == 0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_RC(kyro_feed_wait(f, 10000), EINTR);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_join(t, NULL);
	CHECK(t1.tv_sec - t0.tv_sec < 5);
	kyro_feed_close(f);
	kyro_close(db);
	/* No store: ENOENT, named. */
	CHECK_RC(kyro_feed_open(&f, h_tmpdir(), 0), ENOENT);
	CHECK_STR_HAS(kyro_feed_errmsg(f), "holds no store");
	kyro_feed_close(f);
}

static void *late_commit(void *p)
{
	struct timespec ts = {0, 30 * 1000000L};
	nanosleep(&ts, NULL);
	kyro_db *db = open_rw(p);
	if (db)
		write_batch(db, 2, 3, 0);
	kyro_close(db);
	return NULL;
}

TEST(feed_wait_is_woken_by_a_commit_in_another_handle)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	REQUIRE(write_batch(db, 1, 3, 1) == 0);
	kyro_close(db);
	kyro_feed *f;
	size_t got;
	pthread_t t;
	memset(&S, 0, sizeof S);
	REQUIRE(kyro_feed_open(&f, dir, 0) == 0);
	CHECK_RC(kyro_feed_read(f, 10, collect, &S, &got), 0);
	REQUIRE(pthread_create(&t, NULL, late_commit, (void *)dir) == 0);
	/* The commit's publish wakes the wait: long before its timeout
	 * (without the wake, this would be ETIMEDOUT after 20 s). */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc;
	do
		rc = kyro_feed_wait(f, 20000);
	while (rc == 0 && kyro_feed_read(f, 10, collect, &S, &got) == 0 &&
	       got == 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_join(t, NULL);
	CHECK_RC(rc, 0);
	CHECK(t1.tv_sec - t0.tv_sec < 10);
	check_run(&S, 1, 6);
	kyro_feed_close(f);
}

static void no_report(void *arg, const char *file, uint64_t off,
		      const char *what)
{
	(void)arg;
	(void)file;
	(void)off;
	(void)what;
}

/* Repair cuts committed data it found lost (damage in batch 3 of 4): a
 * feed that had passed those changes on fails as after expired history,
 * never passes on what was written after the cut under the same
 * sequence numbers; a feed that had not reached the cut goes on into
 * the new records. */
TEST(feed_after_repair_cut_the_log)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	for (uint64_t b = 1; b <= 4; b++)
		REQUIRE(write_batch(db, b, 3, 0) == 0);
	kyro_feed *past, *before;
	size_t got;
	struct seen s1 = {0}, s2 = {0};
	CHECK_RC(kyro_feed_open(&past, dir, 1), 0);
	CHECK_RC(kyro_feed_open(&before, dir, 1), 0);
	CHECK_RC(kyro_feed_read(past, 100, collect, &s1, &got), 0);
	CHECK_EQ_U64(s1.n, 12);
	CHECK_RC(kyro_feed_read(before, 2, collect, &s2, &got), 0);
	CHECK_EQ_U64(s2.n, 6);

	char wal[PATH_MAX];
	snprintf(wal, sizeof wal, "%s", h_path(dir, "wal-0000000000000001.log"));
	unsigned char *buf;
	size_t len;
	REQUIRE(h_read_file(wal, &buf, &len) == 0);
	const unsigned char *at = memmem(buf, len, "b3.1", 4);
	REQUIRE(at);
	CHECK_RC(h_xor_byte(wal, (uint64_t)(at - buf), 1), 0);
	free(buf);
	CHECK_RC(kyro_verify(dir, KYRO_VERIFY_REPAIR, no_report, NULL),
		 KYRO_EDAMAGED);
	REQUIRE(write_batch(db, 9, 3, 0) == 0); /* seqs 7..9 again */

	memset(&s1, 0, sizeof s1);
	CHECK_RC(kyro_feed_read(past, 100, collect, &s1, &got),
		 KYRO_EEXPIRED);
	CHECK_EQ_U64(s1.n, 0);
	CHECK_STR_HAS(kyro_feed_errmsg(past), "a repair cut the log");
	CHECK_STR_HAS(kyro_feed_errmsg(past), "up to sequence number 12");
	CHECK_EQ_U64(kyro_feed_oldest(past), 1);

	memset(&s2, 0, sizeof s2);
	CHECK_RC(kyro_feed_read(before, 100, collect, &s2, &got), 0);
	REQUIRE(CHECK_EQ_U64(s2.n, 3));
	for (size_t i = 0; i < 3; i++) {
		CHECK_EQ_U64(s2.seq[i], 7 + i);
		CHECK_EQ_U64(s2.key[i], 900 + i);
	}
	kyro_feed_close(past);
	kyro_feed_close(before);
	kyro_close(db);
}

/* Repair rewrites a damaged segment header by putting a new file in the
 * segment's place, without a new manifest generation: a feed reading
 * that segment goes on into the new file, where the next writer
 * appends. */
TEST(feed_after_repair_rewrote_a_segment_header)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_rw(dir);
	REQUIRE(db);
	for (uint64_t b = 1; b <= 2; b++)
		REQUIRE(write_batch(db, b, 3, 0) == 0);
	kyro_feed *f;
	size_t got;
	struct seen s = {0};
	CHECK_RC(kyro_feed_open(&f, dir, 1), 0);
	CHECK_RC(kyro_feed_read(f, 100, collect, &s, &got), 0);
	CHECK_EQ_U64(s.n, 6);
	CHECK_RC(h_xor_byte(h_path(dir, "wal-0000000000000001.log"), 0, 1),
		 0);
	CHECK_RC(kyro_verify(dir, KYRO_VERIFY_REPAIR, no_report, NULL), 0);
	REQUIRE(write_batch(db, 9, 3, 0) == 0);
	memset(&s, 0, sizeof s);
	CHECK_RC(kyro_feed_read(f, 100, collect, &s, &got), 0);
	if (s.n == 0)
		h_note("feed: %s", kyro_feed_errmsg(f));
	REQUIRE(CHECK_EQ_U64(s.n, 3));
	for (size_t i = 0; i < 3; i++) {
		CHECK_EQ_U64(s.seq[i], 7 + i);
		CHECK_EQ_U64(s.key[i], 900 + i);
	}
	kyro_feed_close(f);
	kyro_close(db);
}
