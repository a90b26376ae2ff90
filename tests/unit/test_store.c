/*
 * test_store.c - the public API (kyro.h) end to end, in temporary
 * directories: opening, writes and batches, what a second handle sees and
 * when, scans, snapshots, verify and repair, and recovery from a torn tail.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "harness.h"
#include "kyro.h"

/* The tests of damage need the formats: WAL records, the manifest. */
#include "internal.h"
#include "manifest.h"
#include "wal.h"

#define MIB ((size_t)1 << 20)

static kyro_db *open_db(const char *dir, unsigned flags, int sync)
{
	kyro_db *db;
	int rc = kyro_open(&db, dir, flags);
	if (rc) {
		h_note("kyro_open '%s': %s", dir, kyro_errmsg(db));
		kyro_close(db);
		return NULL;
	}
	if (flags & KYRO_RDWR)
		kyro_set_sync(db, sync);
	return db;
}

/* Does KEY hold exactly WANT (LEN bytes)?  WANT NULL: is it absent? */
static int has(kyro_db *db, uint64_t key, const void *want, size_t len,
	       const char *file, int line)
{
	const void *v = NULL;
	size_t n = 0;
	int rc = kyro_get(db, key, &v, &n);
	if (!want)
		return h_check_rc(rc, KYRO_ENOTFOUND, file, line, "kyro_get");
	if (!h_check_rc(rc, 0, file, line, "kyro_get") ||
	    !h_check_u64(n, len, file, line, "length", "expected"))
		return 0;
	return h_check_mem(v, want, len, file, line, "value", "expected");
}
#define HAS(db, key, s) has((db), (key), (s), strlen(s), __FILE__, __LINE__)
#define HAS_N(db, key, v, n) has((db), (key), (v), (n), __FILE__, __LINE__)
#define ABSENT(db, key) has((db), (key), NULL, 0, __FILE__, __LINE__)

static uint64_t last_seq(kyro_db *db)
{
	uint64_t s = UINT64_MAX;
	if (kyro_last_seq(db, &s))
		return UINT64_MAX;
	return s;
}

/* The path of the highest-numbered WAL segment of DIR. */
static const char *last_wal(const char *dir)
{
	static char path[PATH_MAX];
	char best[64] = "";
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d)
		return "";
	while ((e = readdir(d)) != NULL)
		if (!strncmp(e->d_name, "wal-", 4) &&
		    strlen(e->d_name) < sizeof best &&
		    strcmp(e->d_name, best) > 0)
			snprintf(best, sizeof best, "%s", e->d_name);
	closedir(d);
	snprintf(path, sizeof path, "%s/%s", dir, best);
	return path;
}

/* ---- the reference model: value i of key k is derived from (k, gen) ---- */

struct model {
	uint64_t *keys;
	uint32_t *gen; /* 0: absent */
	size_t n;
};

static size_t val_len(uint64_t key, uint32_t gen)
{
	return (size_t)(h_mix(key * 31 + gen) % 48);
}

static void val_bytes(uint64_t key, uint32_t gen, unsigned char *buf)
{
	h_fill_seeded(buf, val_len(key, gen), key * 131 + gen);
}

/* Put (gen != 0) or delete KEY in DB and the model slot I. */
static int model_apply(kyro_db *db, struct model *m, size_t i, uint32_t gen)
{
	unsigned char buf[64];
	uint64_t key = m->keys[i];
	m->gen[i] = gen;
	if (!gen)
		return kyro_delete(db, key, NULL);
	val_bytes(key, gen, buf);
	return kyro_put(db, key, buf, val_len(key, gen), NULL);
}

/* Check every model key in DB; returns the number of wrong answers. */
static uint64_t model_check(kyro_db *db, const struct model *m)
{
	uint64_t wrong = 0;
	for (size_t i = 0; i < m->n; i++) {
		const void *v;
		size_t len;
		unsigned char buf[64];
		int rc = kyro_get(db, m->keys[i], &v, &len);
		if (!m->gen[i]) {
			wrong += rc != KYRO_ENOTFOUND;
			continue;
		}
		val_bytes(m->keys[i], m->gen[i], buf);
		if (rc || len != val_len(m->keys[i], m->gen[i]) ||
		    (len && memcmp(v, buf, len)))
			wrong++;
	}
	return wrong;
}

/* ---- reports from kyro_verify ---- */

struct reports {
	int count, errors;
	char file[PATH_MAX];
	uint64_t off;
	char text[1024];
};

static void collect(void *arg, const char *file, uint64_t off,
		    const char *text)
{
	struct reports *r = arg;
	if (!file)
		r->errors++;
	if (r->count++ == 0) {
		snprintf(r->file, sizeof r->file, "%s", file ? file : "(null)");
		r->off = off;
		snprintf(r->text, sizeof r->text, "%s", text);
	}
}

/* ---- opening ---- */

TEST(open_rdwr_creates_a_store)
{
	const char *dir = h_path(h_tmpdir(), "store");
	kyro_db *db = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(db);
	CHECK(h_exists(h_path(dir, "MANIFEST")));
	CHECK(h_exists(h_path(dir, "LOCK")));
	CHECK(h_exists(h_path(dir, "wal-0000000000000001.log")));
	CHECK_EQ_U64(h_count_suffix(dir, ".tmp"), 0);
	ABSENT(db, 0);
	ABSENT(db, UINT64_MAX);
	CHECK_EQ_U64(last_seq(db), 0);
	kyro_close(db);
	/* Opening again (either way) finds the store, empty. */
	db = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(db);
	ABSENT(db, 1);
	CHECK_EQ_U64(last_seq(db), 0);
	kyro_close(db);
	struct reports rep = {0};
	CHECK_RC(kyro_verify(dir, 0, collect, &rep), 0);
	CHECK_EQ_U64(rep.count, 0);
	/* An existing empty directory is fine too. */
	const char *empty = h_tmpdir();
	db = open_db(empty, KYRO_RDWR, KYRO_SYNC_BATCH);
	CHECK(db != NULL);
	kyro_close(db);
	CHECK(h_exists(h_path(empty, "MANIFEST")));
}

TEST(open_errors_name_the_path)
{
	const char *base = h_tmpdir();
	kyro_db *db;

	const char *file = h_path(base, "a-file");
	CHECK_RC(h_write_file(file, "x", 1), 0);
	CHECK_RC(kyro_open(&db, file, KYRO_RDWR), ENOTDIR);
	CHECK_STR_HAS(kyro_errmsg(db), file);
	kyro_close(db);
	CHECK_RC(kyro_open(&db, file, KYRO_RDONLY), ENOTDIR);
	kyro_close(db);

	const char *missing = h_path(base, "missing");
	CHECK_RC(kyro_open(&db, missing, KYRO_RDONLY), ENOENT);
	CHECK_STR_HAS(kyro_errmsg(db), missing);
	kyro_close(db);
	CHECK(!h_exists(missing));

	const char *foreign = h_path(base, "foreign");
	CHECK_RC(h_write_file(file, "x", 1), 0);
	REQUIRE(CHECK_RC(mkdir(foreign, 0755), 0));
	CHECK_RC(h_write_file(h_path(foreign, "notes.txt"), "mine", 4), 0);
	CHECK_RC(kyro_open(&db, foreign, KYRO_RDWR), KYRO_ENOTDB);
	CHECK_STR_HAS(kyro_errmsg(db), foreign);
	kyro_close(db);
	/* Refused, it is left as it was: no MANIFEST, and no LOCK either. */
	CHECK(!h_exists(h_path(foreign, "MANIFEST")));
	CHECK(!h_exists(h_path(foreign, "LOCK")));
	CHECK_RC(kyro_open(&db, foreign, KYRO_RDONLY), KYRO_ENOTDB);
	CHECK_STR_HAS(kyro_errmsg(db), foreign);
	kyro_close(db);

	/* A manifest of a newer format, and a damaged one. */
	const char *newer = h_path(base, "newer");
	db = open_db(newer, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(db);
	CHECK_RC(kyro_put(db, 1, "a", 1, NULL), 0);
	kyro_close(db);
	unsigned char *m;
	size_t mlen;
	REQUIRE(CHECK_RC(h_read_file(h_path(newer, "MANIFEST"), &m, &mlen), 0));
	REQUIRE(mlen == 128);
	put_le32(m + 8, 3);
	put_le64(m + 120, XXH3_64bits(m, 120));
	CHECK_RC(h_write_file(h_path(newer, "MANIFEST"), m, mlen), 0);
	for (unsigned fl = 0; fl < 2; fl++) {
		CHECK_RC(kyro_open(&db, newer, fl), KYRO_EVERSION);
		CHECK_STR_HAS(kyro_errmsg(db), "version 3");
		CHECK_STR_HAS(kyro_errmsg(db), newer);
		kyro_close(db);
	}
	put_le32(m + 8, 2);
	m[20] ^= 1; /* the generation, under the checksum */
	CHECK_RC(h_write_file(h_path(newer, "MANIFEST"), m, mlen), 0);
	for (unsigned fl = 0; fl < 2; fl++) {
		CHECK_RC(kyro_open(&db, newer, fl), KYRO_ECORRUPT);
		CHECK_STR_HAS(kyro_errmsg(db), newer);
		kyro_close(db);
	}
	free(m);
	CHECK_STR_HAS(kyro_errmsg(NULL), "memory");
	kyro_close(NULL);
}

TEST(strerror_names_every_code)
{
	const char *names[11];
	for (int c = 0; c >= -10; c--) {
		names[-c] = kyro_strerror(c);
		CHECK(names[-c] != NULL && names[-c][0] != 0);
	}
	uint64_t dup = 0;
	for (int i = 0; i < 11; i++)
		for (int j = i + 1; j < 11; j++)
			dup += !strcmp(names[i], names[j]);
	CHECK_EQ_U64(dup, 0);
	CHECK(strcmp(kyro_strerror(-11), kyro_strerror(KYRO_ENOTFOUND)) != 0);
	CHECK(kyro_strerror(-11)[0] != 0);
	CHECK(!strcmp(kyro_strerror(ENOENT), strerror(ENOENT)));
	CHECK(!strcmp(kyro_strerror(ENOSPC), strerror(ENOSPC)));
	CHECK(strcmp(kyro_strerror(ENOSPC), kyro_strerror(EIO)) != 0);
}

/* ---- writing and reading ---- */

TEST(put_get_delete)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	uint64_t seq = 0;
	REQUIRE(db);
	CHECK_RC(kyro_put(db, 1, "hello", 5, &seq), 0);
	CHECK_EQ_U64(seq, 1);
	HAS(db, 1, "hello");
	CHECK_RC(kyro_put(db, 1, "bye", 3, &seq), 0);
	CHECK_EQ_U64(seq, 2);
	HAS(db, 1, "bye");
	CHECK_RC(kyro_delete(db, 1, &seq), 0);
	CHECK_EQ_U64(seq, 3);
	ABSENT(db, 1);
	CHECK_RC(kyro_delete(db, 99, &seq), 0); /* absent: still a record */
	CHECK_EQ_U64(seq, 4);
	CHECK_RC(kyro_put(db, 0, NULL, 0, &seq), 0);
	CHECK_EQ_U64(seq, 5);
	HAS_N(db, 0, "", 0);
	const unsigned char bin[] = {0, 1, 0, 255, '\n', '\t', 0};
	CHECK_RC(kyro_put(db, UINT64_MAX, bin, sizeof bin, NULL), 0);
	HAS_N(db, UINT64_MAX, bin, sizeof bin);
	CHECK_RC(kyro_put(db, 1, "again", 5, NULL), 0);
	CHECK_EQ_U64(last_seq(db), 7);
	kyro_close(db);

	/* A new handle of each kind sees the same. */
	for (unsigned fl = 0; fl < 2; fl++) {
		db = open_db(dir, fl, KYRO_SYNC_BATCH);
		REQUIRE(db);
		HAS(db, 1, "again");
		HAS_N(db, 0, "", 0);
		HAS_N(db, UINT64_MAX, bin, sizeof bin);
		ABSENT(db, 99);
		ABSENT(db, 2);
		CHECK_EQ_U64(last_seq(db), 7);
		kyro_close(db);
	}
}

TEST(batch_abort_shows_nothing_and_commit_shows_all)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	CHECK_RC(kyro_put(w, 1, "one", 3, NULL), 0);
	kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	HAS(r, 1, "one");
	uint64_t size0 = h_file_size(last_wal(dir));
	unsigned char *big = malloc(3 * MIB);
	REQUIRE(big);
	h_fill(big, 3 * MIB);

	/* Errors of order. */
	uint64_t ls = 77;
	CHECK_RC(kyro_batch_commit(w, &ls), KYRO_EBATCH);
	CHECK_RC(kyro_batch_begin(w), 0);
	CHECK_RC(kyro_batch_begin(w), KYRO_EBATCH);

	/* Abort, after enough data that some reached the file. */
	uint64_t seq;
	CHECK_RC(kyro_put(w, 2, "two", 3, &seq), 0);
	CHECK_EQ_U64(seq, 2);
	CHECK_RC(kyro_put(w, 3, big, 3 * MIB, &seq), 0);
	CHECK_EQ_U64(seq, 3);
	CHECK_RC(kyro_delete(w, 1, &seq), 0);
	CHECK_EQ_U64(seq, 4);
	CHECK(h_file_size(last_wal(dir)) > size0);
	ABSENT(r, 2); /* mid-batch: not there yet */
	HAS(r, 1, "one");
	kyro_batch_abort(w);
	kyro_batch_abort(w); /* no batch: nothing happens */
	CHECK_EQ_U64(h_file_size(last_wal(dir)), size0);
	for (int pass = 0; pass < 2; pass++) {
		kyro_db *x = pass ? r : w;
		ABSENT(x, 2);
		ABSENT(x, 3);
		HAS(x, 1, "one");
		CHECK_EQ_U64(last_seq(x), 1);
	}

	/* Commit. */
	CHECK_RC(kyro_batch_begin(w), 0);
	CHECK_RC(kyro_put(w, 2, "two", 3, &seq), 0);
	CHECK_EQ_U64(seq, 2);
	CHECK_RC(kyro_put(w, 3, big, 3 * MIB, NULL), 0);
	CHECK_RC(kyro_delete(w, 1, NULL), 0);
	ABSENT(r, 2);
	CHECK_RC(kyro_batch_commit(w, &ls), 0);
	CHECK_EQ_U64(ls, 4);
	for (int pass = 0; pass < 2; pass++) {
		kyro_db *x = pass ? r : w;
		HAS(x, 2, "two");
		HAS_N(x, 3, big, 3 * MIB);
		ABSENT(x, 1);
		CHECK_EQ_U64(last_seq(x), 4);
	}
	/* An empty batch commits nothing and reports the store's last
	 * offset, so --print-offset stays monotonic. */
	CHECK_RC(kyro_batch_begin(w), 0);
	CHECK_RC(kyro_batch_commit(w, &ls), 0);
	CHECK_EQ_U64(ls, 4);
	CHECK_EQ_U64(last_seq(w), 4);

	/* Closing with a batch open aborts it. */
	CHECK_RC(kyro_batch_begin(w), 0);
	CHECK_RC(kyro_put(w, 5, "five", 4, NULL), 0);
	uint64_t size1 = h_file_size(last_wal(dir));
	kyro_close(w);
	CHECK(h_file_size(last_wal(dir)) <= size1);
	ABSENT(r, 5);
	kyro_close(r);
	r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	ABSENT(r, 5);
	HAS(r, 2, "two");
	CHECK_EQ_U64(last_seq(r), 4);
	kyro_close(r);
	struct reports rep = {0};
	CHECK_RC(kyro_verify(dir, 0, collect, &rep), 0);
	if (rep.count)
		h_note("verify: %s", rep.text);
	free(big);
}

TEST(values_up_to_the_limit)
{
	const char *dir = h_tmpdir();
	kyro_db *db = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(db);
	unsigned char *v = malloc(KYRO_MAX_VALUE + 1);
	REQUIRE(v);
	h_fill(v, KYRO_MAX_VALUE + 1);
	CHECK_RC(kyro_put(db, 1, v, KYRO_MAX_VALUE + 1, NULL), KYRO_ETOOBIG);
	CHECK_STR_HAS(kyro_errmsg(db), "16 MiB");
	CHECK_EQ_U64(last_seq(db), 0);
	ABSENT(db, 1);
	/* The handle still writes. */
	CHECK_RC(kyro_put(db, 1, v, KYRO_MAX_VALUE, NULL), 0);
	HAS_N(db, 1, v, KYRO_MAX_VALUE);
	CHECK_RC(kyro_put(db, 2, v + 1, KYRO_MAX_VALUE - 1, NULL), 0);
	CHECK_RC(kyro_put(db, 3, v, SIZE_MAX, NULL), KYRO_ETOOBIG);
	struct kyro_snapshot_stats st;
	CHECK_RC(kyro_snapshot(db, 0, NULL, &st, NULL, NULL), 0);
	CHECK_EQ_U64(st.keys, 2);
	HAS_N(db, 1, v, KYRO_MAX_VALUE);
	HAS_N(db, 2, v + 1, KYRO_MAX_VALUE - 1);
	kyro_close(db);
	free(v);
}

TEST(rdonly_handles_refuse_writes)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(w);
	CHECK_RC(kyro_put(w, 1, "a", 1, NULL), 0);
	kyro_close(w);
	kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	struct kyro_snapshot_stats st;
	CHECK_RC(kyro_put(r, 2, "b", 1, NULL), KYRO_ERDONLY);
	CHECK_STR_HAS(kyro_errmsg(r), dir);
	CHECK_RC(kyro_delete(r, 1, NULL), KYRO_ERDONLY);
	CHECK_RC(kyro_batch_begin(r), KYRO_ERDONLY);
	CHECK_RC(kyro_snapshot(r, 0, NULL, &st, NULL, NULL), KYRO_ERDONLY);
	CHECK_RC(kyro_set_sync(r, 99), EINVAL);
	HAS(r, 1, "a");
	ABSENT(r, 2);
	kyro_close(r);
}

/* ---- what other handles see ---- */

TEST(a_reader_sees_later_commits_across_snapshots)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(w);
	/* No history kept (test_feed.c tests retention): at the end only
	 * the live files remain. */
	kyro_set_retain(w, 0, 0);
	kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	ABSENT(r, 1);
	CHECK_RC(kyro_put(w, 1, "v1", 2, NULL), 0);
	HAS(r, 1, "v1");
	CHECK_EQ_U64(last_seq(r), 1);

	struct kyro_snapshot_stats st;
	CHECK_RC(kyro_snapshot(w, 0, NULL, &st, NULL, NULL), 0);
	CHECK_EQ_U64(st.keys, 1);
	CHECK_EQ_U64(st.generation, 1);
	HAS(r, 1, "v1");
	CHECK_RC(kyro_put(w, 2, "v2", 2, NULL), 0);
	HAS(r, 2, "v2");
	CHECK_EQ_U64(last_seq(r), 2);

	/* Many rounds: writes, sometimes a snapshot, and the reader (opened
	 * once, at the start) must agree with the model after each. */
	uint64_t keys[400];
	uint32_t gens[400] = {0};
	for (size_t i = 0; i < 400; i++)
		keys[i] = 1000 + 3 * i + h_below(3); /* distinct */
	struct model m = {keys, gens, 400};
	uint64_t prev = last_seq(r), snaps = 1;
	for (int round = 0; round < 12; round++) {
		CHECK_RC(kyro_batch_begin(w), 0);
		for (int k = 0; k < 60; k++)
			model_apply(w, &m, h_below(400),
				    (uint32_t)(h_below(4) ? round * 100 + k + 1
							  : 0));
		CHECK_RC(kyro_batch_commit(w, NULL), 0);
		if (round % 3 == 1) {
			CHECK_RC(kyro_snapshot(w, 0, NULL, &st, NULL, NULL), 0);
			CHECK_EQ_U64(st.generation, ++snaps);
		}
		CHECK_EQ_U64(model_check(r, &m), 0);
		uint64_t now = last_seq(r);
		CHECK(now > prev);
		CHECK_EQ_U64(now, last_seq(w));
		prev = now;
	}
	HAS(r, 1, "v1");
	HAS(r, 2, "v2");
	CHECK_EQ_U64(model_check(w, &m), 0);
	/* Only the live files remain. */
	CHECK_EQ_U64(h_count_suffix(dir, ".bin"), 1);
	CHECK_EQ_U64(h_count_suffix(dir, ".data"), 1);
	CHECK_EQ_U64(h_count_suffix(dir, ".log"), 1);
	/* A fresh reader agrees. */
	kyro_db *r2 = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r2);
	CHECK_EQ_U64(model_check(r2, &m), 0);
	CHECK_EQ_U64(last_seq(r2), prev);
	kyro_close(r2);
	kyro_close(r);
	kyro_close(w);
	struct reports rep = {0};
	CHECK_RC(kyro_verify(dir, 0, collect, &rep), 0);
}

/* Two writer handles take turns; sequence numbers continue across them. */
TEST(two_writers_continue_each_others_log)
{
	const char *dir = h_tmpdir();
	kyro_db *a = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	kyro_db *b = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(a && b);
	uint64_t seq;
	for (uint64_t i = 1; i <= 30; i++) {
		kyro_db *x = i % 3 ? a : b;
		char v[16];
		int n = snprintf(v, sizeof v, "v%llu", (unsigned long long)i);
		CHECK_RC(kyro_put(x, i % 7, v, (size_t)n, &seq), 0);
		CHECK_EQ_U64(seq, i);
		if (i == 15) {
			struct kyro_snapshot_stats st;
			CHECK_RC(kyro_snapshot(b, 0, NULL, &st, NULL, NULL), 0);
			CHECK_EQ_U64(st.keys, 7);
		}
	}
	HAS(a, 30 % 7, "v30");
	HAS(b, 29 % 7, "v29");
	HAS(a, 24 % 7, "v24");
	CHECK_EQ_U64(last_seq(a), 30);
	CHECK_EQ_U64(last_seq(b), 30);
	kyro_close(a);
	kyro_close(b);
}

struct during {
	kyro_db *w2, *r;
	int calls, fails;
	uint64_t next_key;
};

/* Called from inside kyro_snapshot, between its rotation of the WAL and
 * its commit: another writer keeps writing and a reader keeps reading. */
static void while_snapshotting(void *arg, uint64_t done, uint64_t total)
{
	struct during *d = arg;
	(void)done;
	(void)total;
	if (d->calls++ > 3)
		return;
	uint64_t key = d->next_key++;
	const void *v;
	size_t len;
	if (kyro_put(d->w2, key, "during", 6, NULL))
		d->fails++;
	if (kyro_get(d->r, key, &v, &len) || len != 6 || memcmp(v, "during", 6))
		d->fails++;
	if (kyro_get(d->r, 5, &v, &len) || len != 4 || memcmp(v, "five", 4))
		d->fails++;
}

TEST(writers_and_readers_go_on_during_a_snapshot)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(w);
	uint64_t failed = 0;
	CHECK_RC(kyro_batch_begin(w), 0);
	for (uint64_t k = 0; k < 200000; k++)
		failed += kyro_put(w, k * 3, "x", 1, NULL) != 0;
	CHECK_EQ_U64(failed, 0);
	CHECK_RC(kyro_put(w, 5, "five", 4, NULL), 0);
	CHECK_RC(kyro_batch_commit(w, NULL), 0);
	struct during d = {.next_key = 1000001};
	d.w2 = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	d.r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(d.w2 && d.r);
	HAS(d.r, 5, "five");
	struct kyro_snapshot_stats st;
	CHECK_RC(kyro_snapshot(w, 0, NULL, &st, while_snapshotting, &d), 0);
	CHECK(d.calls >= 2);
	CHECK_EQ_U64(d.fails, 0);
	CHECK_EQ_U64(st.keys, 200001);
	uint64_t written = d.calls > 4 ? 4 : (uint64_t)d.calls;
	for (uint64_t k = 1000001; k < 1000001 + written; k++) {
		HAS(d.r, k, "during");
		HAS(w, k, "during");
	}
	HAS(d.r, 5, "five");
	HAS(d.r, 3 * 199999, "x");
	CHECK_EQ_U64(last_seq(d.r), 200001 + written);
	kyro_close(d.r);
	kyro_close(d.w2);
	kyro_close(w);
	kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	HAS(r, 1000001, "during");
	HAS(r, 5, "five");
	kyro_close(r);
}

/*
 * A long-running reader (the server) may start before any writer has
 * created the store in its directory.  The first writer's commits must
 * still reach it on its next lookup.
 */
TEST(a_reader_started_on_an_empty_directory_sees_the_first_writer)
{
	const char *dir = h_tmpdir();
	kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	ABSENT(r, 1);
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(w);
	CHECK_RC(kyro_put(w, 1, "first", 5, NULL), 0);
	HAS(r, 1, "first");
	CHECK_EQ_U64(last_seq(r), 1);
	kyro_close(w);
	kyro_close(r);
}

/* ---- scans ---- */

struct scan_out {
	uint64_t *keys;
	size_t n, cap;
	uint64_t bad_values;
	const struct model *m;
	size_t stop_after;
};

static int scan_cb(void *arg, uint64_t key, const void *val, size_t len)
{
	struct scan_out *o = arg;
	if (o->n == o->cap)
		return -100;
	o->keys[o->n++] = key;
	/* Find the model's value of KEY. */
	const struct model *m = o->m;
	size_t i = 0;
	while (i < m->n && m->keys[i] != key)
		i++;
	unsigned char buf[64];
	if (i == m->n || !m->gen[i]) {
		o->bad_values++;
	} else {
		val_bytes(key, m->gen[i], buf);
		if (len != val_len(key, m->gen[i]) ||
		    (len && memcmp(val, buf, len)))
			o->bad_values++;
	}
	if (o->stop_after && o->n == o->stop_after)
		return 42;
	return 0;
}

/* The model's live keys in [LO, HI], sorted, into OUT; returns count. */
static size_t model_range(const struct model *m, uint64_t lo, uint64_t hi,
			  uint64_t *out)
{
	size_t k = 0;
	for (size_t i = 0; i < m->n; i++)
		if (m->gen[i] && m->keys[i] >= lo && m->keys[i] <= hi)
			out[k++] = m->keys[i];
	for (size_t i = 1; i < k; i++) {
		uint64_t t = out[i];
		size_t j = i;
		for (; j > 0 && out[j - 1] > t; j--)
			out[j] = out[j - 1];
		out[j] = t;
	}
	return k;
}

static void check_scan(kyro_db *db, const struct model *m, uint64_t lo,
		       uint64_t hi)
{
	uint64_t got[700], want[700];
	struct scan_out o = {.keys = got, .cap = 700, .m = m};
	if (!CHECK_RC(kyro_scan(db, lo, hi, scan_cb, &o), 0))
		return;
	size_t n = model_range(m, lo, hi, want);
	if (!CHECK_EQ_U64(o.n, n)) {
		h_note("range [%llu, %llu]", (unsigned long long)lo,
		       (unsigned long long)hi);
		return;
	}
	CHECK_MEM(got, want, n * sizeof *got);
	CHECK_EQ_U64(o.bad_values, 0);
}

TEST(scan_merges_snapshot_and_delta_in_order)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(w);
	/* 600 distinct keys: small ones, the extremes, and wide ones. */
	uint64_t keys[600];
	uint32_t gens[600] = {0};
	for (size_t i = 0; i < 600; i++)
		keys[i] = i < 400 ? i * 5 : h_rand();
	keys[0] = 0;
	keys[599] = UINT64_MAX;
	keys[598] = UINT64_MAX - 1;
	struct model m = {keys, gens, 600};
	uint32_t g = 1;
	/* Phase 1: into the WAL, then a snapshot. */
	CHECK_RC(kyro_batch_begin(w), 0);
	for (size_t i = 0; i < 600; i++)
		if (h_below(3))
			model_apply(w, &m, i, g++);
	CHECK_RC(kyro_batch_commit(w, NULL), 0);
	struct kyro_snapshot_stats st;
	CHECK_RC(kyro_snapshot(w, 0, NULL, &st, NULL, NULL), 0);
	/* Phase 2: the delta overwrites, deletes and adds. */
	CHECK_RC(kyro_batch_begin(w), 0);
	for (int k = 0; k < 500; k++) {
		size_t i = (size_t)h_below(600);
		model_apply(w, &m, i, h_below(3) ? g++ : 0);
	}
	model_apply(w, &m, 0, g++);
	model_apply(w, &m, 599, g++);
	model_apply(w, &m, 598, 0);
	CHECK_RC(kyro_batch_commit(w, NULL), 0);
	kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	for (int pass = 0; pass < 2; pass++) {
		kyro_db *x = pass ? r : w;
		check_scan(x, &m, 0, UINT64_MAX);
		check_scan(x, &m, 0, 0);
		check_scan(x, &m, UINT64_MAX, UINT64_MAX);
		check_scan(x, &m, UINT64_MAX - 1, UINT64_MAX);
		check_scan(x, &m, 1, UINT64_MAX - 1);
		check_scan(x, &m, 100, 200);
		check_scan(x, &m, 2001, 2004); /* between keys */
		for (int i = 0; i < 30; i++) {
			uint64_t a = h_below(2100), b = a + h_below(400);
			check_scan(x, &m, a, b);
		}
		for (int i = 0; i < 10; i++) {
			uint64_t a = h_rand(), b = h_rand();
			check_scan(x, &m, a < b ? a : b, a < b ? b : a);
		}
		/* lo > hi: nothing. */
		uint64_t got[4];
		struct scan_out o = {.keys = got, .cap = 4, .m = &m};
		CHECK_RC(kyro_scan(x, 10, 9, scan_cb, &o), 0);
		CHECK_EQ_U64(o.n, 0);
		/* A non-zero return stops the scan and is passed back. */
		uint64_t some[700];
		struct scan_out s = {.keys = some, .cap = 700, .m = &m,
				     .stop_after = 3};
		CHECK_RC(kyro_scan(x, 0, UINT64_MAX, scan_cb, &s), 42);
		CHECK_EQ_U64(s.n, 3);
	}
	/* After another snapshot everything is in the snapshot. */
	CHECK_RC(kyro_snapshot(w, 0, NULL, &st, NULL, NULL), 0);
	uint64_t live = 0;
	for (size_t i = 0; i < 600; i++)
		live += gens[i] != 0;
	CHECK_EQ_U64(st.keys, live);
	check_scan(r, &m, 0, UINT64_MAX);
	check_scan(w, &m, 3, 1000);
	CHECK_EQ_U64(model_check(r, &m), 0);
	kyro_close(r);
	kyro_close(w);
}

TEST(snapshot_of_a_store_with_every_key_deleted)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(w);
	struct kyro_snapshot_stats st;
	/* Nothing to fold yet. */
	CHECK_RC(kyro_snapshot(w, 0, NULL, &st, NULL, NULL), 0);
	CHECK_EQ_U64(st.keys, 0);
	CHECK_EQ_U64(st.generation, 0);
	CHECK_RC(kyro_put(w, 1, "a", 1, NULL), 0);
	CHECK_RC(kyro_put(w, 2, "b", 1, NULL), 0);
	CHECK_RC(kyro_snapshot(w, 0, NULL, &st, NULL, NULL), 0);
	CHECK_EQ_U64(st.keys, 2);
	CHECK_EQ_U64(st.generation, 1);
	CHECK(st.bytes > 0);
	/* Nothing new: the same snapshot. */
	CHECK_RC(kyro_snapshot(w, 0, NULL, &st, NULL, NULL), 0);
	CHECK_EQ_U64(st.keys, 2);
	CHECK_EQ_U64(st.generation, 1);
	CHECK_RC(kyro_delete(w, 1, NULL), 0);
	CHECK_RC(kyro_delete(w, 2, NULL), 0);
	CHECK_RC(kyro_snapshot(w, 0, NULL, &st, NULL, NULL), 0);
	CHECK_EQ_U64(st.keys, 0);
	CHECK_EQ_U64(st.generation, 2);
	ABSENT(w, 1);
	ABSENT(w, 2);
	CHECK_EQ_U64(last_seq(w), 4);
	kyro_close(w);
	kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	ABSENT(r, 1);
	CHECK_EQ_U64(last_seq(r), 4);
	kyro_close(r);
	struct reports rep = {0};
	CHECK_RC(kyro_verify(dir, 0, collect, &rep), 0);
}

/* The fold keeps values in chunks per range of keys (their top bits),
 * a value of more than half a chunk apart: keys over the whole range
 * and values of every size, rewritten, deleted, in two batches of which
 * the second rewrites keys of the first, and merged with the snapshot
 * before, must come out as the last write left them. */
TEST(a_snapshot_folds_keys_of_every_range_and_values_of_every_size)
{
	enum { N = 6000, BIG = 40000 };
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(w);
	uint64_t *keys = malloc(N * sizeof *keys);
	size_t *lens = calloc(N, sizeof *lens); /* SIZE_MAX: deleted */
	uint64_t *seeds = calloc(N, sizeof *seeds);
	unsigned char *v = malloc(BIG);
	REQUIRE(keys && lens && seeds && v);
	for (size_t i = 0; i < N; i++)
		/* Half share their top bits: their chunks fill up. */
		keys[i] = i % 2 ? h_rand() : h_rand() >> 20;
	struct kyro_snapshot_stats st;
	for (int round = 0; round < 3; round++) {
		REQUIRE(CHECK_RC(kyro_batch_begin(w), 0));
		for (size_t j = 0; j < 2 * N; j++) {
			size_t i = (size_t)h_below(N);
			if (h_below(10) == 0) {
				CHECK_RC(kyro_delete(w, keys[i], NULL), 0);
				lens[i] = SIZE_MAX;
				continue;
			}
			size_t len = h_below(50) == 0 ? (size_t)h_below(BIG)
						       : (size_t)h_below(40);
			seeds[i] = h_rand();
			h_fill_seeded(v, len, seeds[i]);
			CHECK_RC(kyro_put(w, keys[i], v, len, NULL), 0);
			lens[i] = len;
		}
		CHECK_RC(kyro_batch_commit(w, NULL), 0);
		CHECK_RC(kyro_snapshot(w, 0, NULL, &st, NULL, NULL), 0);
	}
	kyro_close(w);
	kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	uint64_t present = 0;
	for (size_t i = 0; i < N; i++) {
		if (lens[i] == SIZE_MAX || (lens[i] == 0 && seeds[i] == 0)) {
			ABSENT(r, keys[i]);
			continue;
		}
		h_fill_seeded(v, lens[i], seeds[i]);
		HAS_N(r, keys[i], v, lens[i]);
		present++;
	}
	CHECK(present > N / 2);
	kyro_close(r);
	struct reports rep = {0};
	CHECK_RC(kyro_verify(dir, KYRO_VERIFY_DEEP, collect, &rep), 0);
	free(keys);
	free(lens);
	free(seeds);
	free(v);
}

TEST(last_seq_only_grows)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(w);
	uint64_t want = 0, seq;
	CHECK_EQ_U64(last_seq(w), 0);
	for (int round = 0; round < 20; round++) {
		switch (round % 5) {
		case 0:
			CHECK_RC(kyro_put(w, (uint64_t)round, "v", 1, &seq), 0);
			CHECK_EQ_U64(seq, ++want);
			break;
		case 1:
			CHECK_RC(kyro_delete(w, (uint64_t)round, &seq), 0);
			CHECK_EQ_U64(seq, ++want);
			break;
		case 2:
			CHECK_RC(kyro_batch_begin(w), 0);
			for (int k = 0; k < 5; k++)
				CHECK_RC(kyro_put(w, (uint64_t)k, "b", 1, NULL), 0);
			CHECK_RC(kyro_batch_commit(w, &seq), 0);
			want += 5;
			CHECK_EQ_U64(seq, want);
			break;
		case 3: {
			struct kyro_snapshot_stats st;
			CHECK_RC(kyro_snapshot(w, 0, NULL, &st, NULL, NULL), 0);
			break;
		}
		case 4:
			kyro_close(w);
			w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
			REQUIRE(w);
			break;
		}
		CHECK_EQ_U64(last_seq(w), want);
	}
	kyro_close(w);
}

TEST(committed_seq_is_the_published_end_without_moving_the_view)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(w);
	kyro_db *r = open_db(dir, KYRO_RDONLY, KYRO_SYNC_NONE);
	REQUIRE(r);
	struct kyro_stats st;
	uint64_t seq = UINT64_MAX;
	CHECK_RC(kyro_committed_seq(r, &seq), 0);
	CHECK_EQ_U64(seq, 0);
	CHECK_RC(kyro_batch_begin(w), 0);
	for (int k = 0; k < 100; k++)
		CHECK_RC(kyro_put(w, (uint64_t)k, "v", 1, NULL), 0);
	CHECK_RC(kyro_batch_commit(w, &seq), 0);
	CHECK_EQ_U64(seq, 100);
	/* The reader is told the writer's end, and its view stays where it
	 * was until it reads. */
	CHECK_RC(kyro_committed_seq(r, &seq), 0);
	CHECK_EQ_U64(seq, 100);
	kyro_stats(r, &st);
	CHECK_EQ_U64(st.last_seq, 0);
	CHECK_EQ_U64(last_seq(r), 100);
	CHECK_RC(kyro_committed_seq(w, &seq), 0);
	CHECK_EQ_U64(seq, 100);
	kyro_close(r);
	kyro_close(w);
	/* No writer since the store was opened: the view's answer. */
	r = open_db(dir, KYRO_RDONLY, KYRO_SYNC_NONE);
	REQUIRE(r);
	CHECK_RC(kyro_committed_seq(r, &seq), 0);
	CHECK_EQ_U64(seq, 100);
	kyro_close(r);
}

/* ---- verify, repair and torn tails ---- */

static const unsigned char garbage[] = "a torn record: not even a header";

TEST(verify_clean_torn_and_repaired)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	CHECK_RC(kyro_put(w, 1, "a", 1, NULL), 0);
	struct kyro_snapshot_stats st;
	CHECK_RC(kyro_snapshot(w, 0, NULL, &st, NULL, NULL), 0);
	CHECK_RC(kyro_put(w, 2, "b", 1, NULL), 0);
	kyro_close(w);

	struct reports rep = {0};
	CHECK_RC(kyro_verify(dir, 0, collect, &rep), 0);
	CHECK_EQ_U64(rep.count, 0);

	const char *wal = last_wal(dir);
	uint64_t end = h_file_size(wal);
	CHECK_RC(h_append_file(wal, garbage, sizeof garbage), 0);
	memset(&rep, 0, sizeof rep);
	CHECK_RC(kyro_verify(dir, 0, collect, &rep), KYRO_EDAMAGED);
	CHECK_EQ_U64(rep.count, 1);
	CHECK_EQ_U64(rep.errors, 0);
	CHECK_STR_HAS(rep.file, wal);
	CHECK_EQ_U64(rep.off, end);
	CHECK_STR_HAS(rep.text, "torn");
	CHECK_EQ_U64(h_file_size(wal), end + sizeof garbage);

	memset(&rep, 0, sizeof rep);
	CHECK_RC(kyro_verify(dir, KYRO_VERIFY_REPAIR, collect, &rep), 0);
	CHECK_EQ_U64(rep.count, 1);
	CHECK_STR_HAS(rep.text, "repaired");
	CHECK_EQ_U64(h_file_size(wal), end);
	memset(&rep, 0, sizeof rep);
	CHECK_RC(kyro_verify(dir, 0, collect, &rep), 0);
	CHECK_EQ_U64(rep.count, 0);

	/* Damage before valid records is not a tail (what --repair does
	 * with it is a test of its own, further down). */
	CHECK_RC(h_xor_byte(wal, 48 + 24, 1), 0); /* first record's key */
	memset(&rep, 0, sizeof rep);
	CHECK_RC(kyro_verify(dir, 0, collect, &rep), KYRO_EDAMAGED);
	CHECK_STR_HAS(rep.file, wal);
	CHECK_EQ_U64(rep.off, 48);
	CHECK_EQ_U64(h_file_size(wal), end);
	kyro_db *r;
	CHECK_RC(kyro_open(&r, dir, KYRO_RDONLY), KYRO_ECORRUPT);
	CHECK_STR_HAS(kyro_errmsg(r), wal);
	CHECK_STR_HAS(kyro_errmsg(r), "offset 48");
	kyro_close(r);
	CHECK_RC(h_xor_byte(wal, 48 + 24, 1), 0);

	/* A damaged snapshot payload. */
	char data[PATH_MAX];
	snprintf(data, sizeof data, "%s/snap-%016llx.data", dir,
		 (unsigned long long)st.generation);
	CHECK_RC(h_xor_byte(data, 32, 0x40), 0);
	memset(&rep, 0, sizeof rep);
	CHECK_RC(kyro_verify(dir, 0, collect, &rep), KYRO_EDAMAGED);
	CHECK_STR_HAS(rep.file, data);
	CHECK_RC(h_xor_byte(data, 32, 0x40), 0);

	/* No store at all, and an empty directory. */
	memset(&rep, 0, sizeof rep);
	CHECK_RC(kyro_verify(h_path(dir, "missing"), 0, collect, &rep), ENOENT);
	CHECK_EQ_U64(rep.errors, 1);
	memset(&rep, 0, sizeof rep);
	CHECK_RC(kyro_verify(h_tmpdir(), 0, collect, &rep), 0);
	CHECK_EQ_U64(rep.count, 0);
}

/* Make the shared page of DIR untrusted, as after a reboot (its boot id,
 * bytes 16..31 of LOCK, changed, which its checksum catches too), so that
 * nothing trusts the committed end it remembers and the WAL must be
 * scanned. */
static void forget_shared_state(const char *dir)
{
	CHECK_RC(h_xor_byte(h_path(dir, "LOCK"), 16, 0xFF), 0);
}

/* Append a torn tail to DIR's last segment; with FORGET, also make the
 * shared state untrusted, as after a reboot. */
static void tear(const char *dir, int forget)
{
	CHECK_RC(h_append_file(last_wal(dir), garbage, sizeof garbage), 0);
	if (forget)
		forget_shared_state(dir);
}

TEST(a_torn_tail_is_truncated_by_the_next_writer)
{
	for (int forget = 0; forget < 2; forget++) {
		const char *dir = h_tmpdir();
		kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
		REQUIRE(w);
		CHECK_RC(kyro_put(w, 1, "one", 3, NULL), 0);
		CHECK_RC(kyro_put(w, 2, "two", 3, NULL), 0);
		kyro_close(w);
		const char *wal = last_wal(dir);
		uint64_t end = h_file_size(wal);
		tear(dir, forget);

		/* Readers see the committed data. */
		kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
		REQUIRE(r);
		HAS(r, 1, "one");
		HAS(r, 2, "two");
		CHECK_EQ_U64(last_seq(r), 2);

		/* The next writer cuts the tail and appends after it. */
		w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
		REQUIRE(w);
		uint64_t seq;
		CHECK_RC(kyro_put(w, 3, "three", 5, &seq), 0);
		CHECK_EQ_U64(seq, 3);
		CHECK_EQ_U64(h_file_size(wal), end + 32 + 8 + 32);
		HAS(w, 3, "three");
		HAS(r, 3, "three");
		HAS(r, 1, "one");
		kyro_close(w);
		kyro_close(r);
		r = open_db(dir, KYRO_RDONLY, 0);
		REQUIRE(r);
		HAS(r, 1, "one");
		HAS(r, 2, "two");
		HAS(r, 3, "three");
		CHECK_EQ_U64(last_seq(r), 3);
		kyro_close(r);
		struct reports rep = {0};
		CHECK_RC(kyro_verify(dir, 0, collect, &rep), 0);
		if (rep.count)
			h_note("verify: %s", rep.text);

		/* A torn tail at snapshot time. */
		tear(dir, forget);
		w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
		REQUIRE(w);
		struct kyro_snapshot_stats st;
		CHECK_RC(kyro_snapshot(w, 0, NULL, &st, NULL, NULL), 0);
		CHECK_EQ_U64(st.keys, 3);
		HAS(w, 2, "two");
		kyro_close(w);
		memset(&rep, 0, sizeof rep);
		CHECK_RC(kyro_verify(dir, 0, collect, &rep), 0);
	}
}

/* A writer somewhere else: the torn tail of a writer that died appears
 * and the next writer cuts it, over and over. */
struct cutter {
	char path[PATH_MAX];
	uint64_t end;
	int stop;
	uint64_t cuts;
};

static void *cut_loop(void *arg)
{
	struct cutter *c = arg;
	static unsigned char tail[(size_t)1 << 20];
	/* A PUT header claiming more than the file holds, then zeros: the
	 * scan stops at it and searches the whole rest for a valid record. */
	tail[8] = 0x00;
	tail[9] = 0x40;
	tail[12] = 1;
	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		if (h_append_file(c->path, tail, sizeof tail) ||
		    truncate(c->path, (off_t)c->end))
			break;
		c->cuts++;
	}
	return NULL;
}

static int count_change(void *arg, const struct kyro_change *c)
{
	(void)c;
	++*(uint64_t *)arg;
	return 0;
}

/*
 * Readers that find no trusted committed end read the last segment to
 * the end of its complete batches, while the next writer may cut the
 * torn tail after them at any moment.  Mapped, a page past the cut
 * faults (SIGBUS kills the reader); a reader, a feed and kyro_verify
 * must all read past the committed end without the mapping, and still
 * answer from the complete batches.
 */
TEST(readers_survive_a_torn_tail_cut_under_them)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(w);
	CHECK_RC(kyro_put(w, 1, "one", 3, NULL), 0);
	CHECK_RC(kyro_put(w, 2, "two", 3, NULL), 0);
	kyro_close(w);
	forget_shared_state(dir);
	struct cutter c = {.end = h_file_size(last_wal(dir))};
	snprintf(c.path, sizeof c.path, "%s", last_wal(dir));
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, cut_loop, &c) == 0);
	int rounds = 0;
	for (; rounds < 300 && c.cuts < 200; rounds++) {
		kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
		if (!r)
			break;
		HAS(r, 1, "one");
		HAS(r, 2, "two");
		CHECK_EQ_U64(last_seq(r), 2);
		kyro_close(r);
		kyro_feed *f;
		uint64_t n = 0, last = 0;
		if (CHECK_RC(kyro_feed_open(&f, dir, 1), 0)) {
			CHECK_RC(kyro_feed_read(f, 100, count_change, &n, NULL),
				 0);
			CHECK_EQ_U64(n, 2);
			CHECK_RC(kyro_feed_bounds(f, NULL, &last), 0);
			CHECK_EQ_U64(last, 2);
		}
		kyro_feed_close(f);
		struct reports rep = {0};
		kyro_verify(dir, 0, collect, &rep);
	}
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	CHECK(c.cuts > 0);
	h_note("%d rounds, %llu cuts", rounds, (unsigned long long)c.cuts);
}

/*
 * A crash while a value is being written leaves a torn tail, whatever the
 * value's bytes.  Here the value holds a well-formed record of the same
 * segment (as a WAL file stored as a value does), and the reboot has taken
 * the shared page, so readers must find the end by scanning.
 */
TEST(a_torn_value_that_holds_a_record_does_not_break_the_store)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	CHECK_RC(kyro_put(w, 1, "one", 3, NULL), 0);
	const char *wal = last_wal(dir);
	uint64_t end = h_file_size(wal);
	/* The value lands at END + 32, 8-aligned; inside it at +8, a record
	 * of segment 1 with a sequence number far ahead. */
	unsigned char val[512];
	memset(val, 0, sizeof val);
	unsigned char *p = val + 8;
	put_le32(p + 8, 8);
	p[12] = WAL_PUT;
	put_le64(p + 16, 500);
	put_le64(p + 24, 77);
	memcpy(p + 32, "embedded", 8);
	put_le64(p, XXH3_64bits_withSeed(p + 8, 24 + 8, 1));
	CHECK_RC(kyro_put(w, 2, val, sizeof val, NULL), 0);
	kyro_close(w);
	/* The crash: the second batch cut inside its value. */
	CHECK_RC(h_truncate_file(wal, end + 32 + 200), 0);
	forget_shared_state(dir);

	kyro_db *r;
	int rc = kyro_open(&r, dir, KYRO_RDONLY);
	if (!CHECK_RC(rc, 0))
		h_note("%s", kyro_errmsg(r));
	else
		HAS(r, 1, "one");
	kyro_close(r);
	w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	CHECK_RC(kyro_put(w, 3, "three", 5, NULL), 0);
	HAS(w, 1, "one");
	ABSENT(w, 2);
	kyro_close(w);
}

/*
 * Every out-parameter that kyro.h calls optional may be NULL: the
 * statistics of a snapshot (with and without an index, with and without
 * anything to fold), an index build, a warmup, the sequence numbers of
 * writes and commits.
 */
TEST(optional_out_parameters_may_be_null)
{
	const char *dir = h_tmpdir();
	const struct kyro_rmi_params p = {0};
	struct kyro_index_info ii;
	const void *v;
	size_t len;
	kyro_db *db;
	int rc = kyro_open(&db, dir, KYRO_RDWR);
	if (!CHECK_RC(rc, 0)) {
		kyro_close(db);
		return;
	}
	CHECK_RC(kyro_put(db, 1, "one", 3, NULL), 0);
	CHECK_RC(kyro_delete(db, 2, NULL), 0);
	CHECK_RC(kyro_batch_begin(db), 0);
	CHECK_RC(kyro_put(db, 3, "three", 5, NULL), 0);
	CHECK_RC(kyro_batch_commit(db, NULL), 0);
	CHECK_RC(kyro_batch_begin(db), 0);
	CHECK_RC(kyro_batch_commit(db, NULL), 0);
	CHECK_RC(kyro_snapshot(db, KYRO_SNAPSHOT_INDEX, &p, NULL, NULL, NULL), 0);
	CHECK_RC(kyro_put(db, 4, "four", 4, NULL), 0);
	CHECK_RC(kyro_snapshot(db, 0, NULL, NULL, NULL, NULL), 0);
	/* Nothing new to fold, but an index to build (P NULL: automatic). */
	CHECK_RC(kyro_snapshot(db, KYRO_SNAPSHOT_INDEX, NULL, NULL, NULL, NULL), 0);
	CHECK_RC(kyro_rmi_build(db, NULL, NULL, NULL, NULL), 0);
	CHECK_RC(kyro_snapshot(db, KYRO_SNAPSHOT_INDEX, &p, NULL, NULL, NULL), 0);
	CHECK_RC(kyro_warmup(db, NULL), 0);
	CHECK_RC(kyro_index_info(db, &ii), 0);
	CHECK_EQ_U64(ii.kind, KYRO_INDEX_RMI);
	CHECK_EQ_U64(ii.keys, 3);
	if (CHECK_RC(kyro_get(db, 4, &v, &len), 0))
		CHECK_MEM(v, "four", 4);
	CHECK_RC(kyro_get(db, 2, &v, &len), KYRO_ENOTFOUND);
	kyro_close(db);
}

/* ---- the shared page and the WAL under damage ---- */

/* A store of three batches in segment 1: {1}, {2, 3}, {4}. */
static const char *three_batches(void)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	if (!w)
		return NULL;
	CHECK_RC(kyro_put(w, 1, "one", 3, NULL), 0);
	CHECK_RC(kyro_batch_begin(w), 0);
	CHECK_RC(kyro_put(w, 2, "two", 3, NULL), 0);
	CHECK_RC(kyro_put(w, 3, "three", 5, NULL), 0);
	CHECK_RC(kyro_batch_commit(w, NULL), 0);
	CHECK_RC(kyro_put(w, 4, "four", 4, NULL), 0);
	kyro_close(w);
	return dir;
}

/* Offsets in LOCK (layout 2, libkyro/shared.c). */
#define LOCK_END 56
#define LOCK_SEQ 64
#define LOCK_SUM 72

/* The first batch of segment 1 ends here: header, "one", commit. */
#define END1 (48 + 40 + 32)

static int verify(const char *dir, unsigned flags, struct reports *rep)
{
	memset(rep, 0, sizeof *rep);
	return kyro_verify(dir, flags, collect, rep);
}

/* Every byte of the page but the counter's is covered: a flip of the
 * committed end or of the last sequence number makes the page untrusted,
 * so the next writer appends after what the files hold and publishes a
 * good page; nothing acknowledged is overwritten and reads go on. */
TEST(a_flipped_field_of_the_shared_page_is_caught_and_rebuilt)
{
	const int offs[] = {LOCK_END, LOCK_SEQ, 40, 48, 32, 8, 0, LOCK_SUM};
	for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
		const char *dir = three_batches();
		REQUIRE(dir);
		const char *lock = h_path(dir, "LOCK");
		uint64_t size = h_file_size(last_wal(dir));
		struct reports rep;
		CHECK_RC(verify(dir, 0, &rep), 0);
		CHECK_RC(h_xor_byte(lock, (uint64_t)offs[i], 0x10), 0);
		CHECK_RC(verify(dir, 0, &rep), KYRO_EDAMAGED);
		CHECK_STR_HAS(rep.file, "LOCK");
		CHECK_STR_HAS(rep.text, "the next writer rebuilds it");

		kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
		REQUIRE(r);
		HAS(r, 4, "four");
		kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
		REQUIRE(w);
		uint64_t seq;
		CHECK_RC(kyro_put(w, 5, "five", 4, &seq), 0);
		CHECK_EQ_U64(seq, 5);
		CHECK_EQ_U64(h_file_size(last_wal(dir)), size + 40 + 32);
		kyro_close(w);
		HAS(r, 5, "five");
		HAS(r, 2, "two");
		kyro_close(r);
		r = open_db(dir, KYRO_RDONLY, 0);
		REQUIRE(r);
		HAS(r, 1, "one");
		HAS(r, 3, "three");
		HAS(r, 4, "four");
		HAS(r, 5, "five");
		CHECK_EQ_U64(last_seq(r), 5);
		kyro_close(r);
		CHECK_RC(verify(dir, 0, &rep), 0);
		if (rep.count)
			h_note("offset %d: %s", offs[i], rep.text);
	}
}

TEST(verify_repair_rebuilds_a_damaged_shared_page)
{
	const char *dir = three_batches();
	REQUIRE(dir);
	const char *lock = h_path(dir, "LOCK");
	struct reports rep;
	CHECK_RC(h_xor_byte(lock, LOCK_SEQ, 0x01), 0);
	CHECK_RC(verify(dir, KYRO_VERIFY_REPAIR, &rep), 0);
	CHECK_EQ_U64(rep.count, 1);
	CHECK_STR_HAS(rep.file, "LOCK");
	CHECK_STR_HAS(rep.text, "repaired");
	CHECK_RC(verify(dir, 0, &rep), 0);
	CHECK_EQ_U64(rep.count, 0);
	/* A byte after the fields, where the layout has zeros. */
	CHECK_RC(h_xor_byte(lock, 1000, 0x01), 0);
	CHECK_RC(verify(dir, 0, &rep), KYRO_EDAMAGED);
	CHECK_STR_HAS(rep.file, "LOCK");
	CHECK_EQ_U64(rep.off, 1000);
	CHECK_RC(verify(dir, KYRO_VERIFY_REPAIR, &rep), 0);
	CHECK_RC(verify(dir, 0, &rep), 0);
}

/* Older binaries wrote layout 1, with no checksum: such a page is not
 * trusted, not damage, and the next writer replaces it. */
TEST(a_layout_1_page_is_untrusted_and_replaced)
{
	const char *dir = three_batches();
	REQUIRE(dir);
	const char *lock = h_path(dir, "LOCK");
	unsigned char *page;
	size_t len;
	REQUIRE(h_read_file(lock, &page, &len) == 0 && len == 4096);
	/* What layout 1 held: the same fields, version 1, nothing after
	 * byte 72; its committed end claims more than the file holds. */
	put_le32(page + 8, 1);
	memset(page + LOCK_SUM, 0, 8);
	put_le64(page + LOCK_END, get_le64(page + LOCK_END) + 4096);
	CHECK_RC(h_write_file(lock, page, len), 0);
	free(page);
	struct reports rep;
	CHECK_RC(verify(dir, 0, &rep), 0);
	kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	HAS(r, 4, "four");
	kyro_close(r);
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	CHECK_RC(kyro_put(w, 5, "five", 4, NULL), 0);
	kyro_close(w);
	REQUIRE(h_read_file(lock, &page, &len) == 0);
	CHECK_EQ_U64(get_le32(page + 8), 2);
	free(page);
	CHECK_RC(verify(dir, 0, &rep), 0);
}

/* Within one boot the page remembers the committed end: a WAL cut below
 * it has lost acknowledged data.  Readers and writers stop with a
 * message naming the repair; the repair cuts to the last whole batch,
 * keeps a copy, says what is gone, and the store goes on. */
TEST(a_wal_cut_below_the_committed_end_is_lost_data_that_repair_reports)
{
	const char *dir = three_batches();
	REQUIRE(dir);
	const char *wal = last_wal(dir);
	uint64_t size = h_file_size(wal);
	CHECK_RC(h_truncate_file(wal, size - 3), 0);

	kyro_db *r;
	CHECK_RC(kyro_open(&r, dir, KYRO_RDONLY), KYRO_ECORRUPT);
	CHECK_STR_HAS(kyro_errmsg(r), "kyro-verify --repair");
	kyro_close(r);
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	CHECK_RC(kyro_put(w, 5, "five", 4, NULL), KYRO_ECORRUPT);
	CHECK_STR_HAS(kyro_errmsg(w), "committed data is missing");
	CHECK_STR_HAS(kyro_errmsg(w), "kyro-verify --repair");
	kyro_close(w);
	CHECK_EQ_U64(h_file_size(wal), size - 3);

	struct reports rep;
	CHECK_RC(verify(dir, 0, &rep), KYRO_EDAMAGED);
	CHECK_STR_HAS(rep.text, "sequence numbers 4..4");
	CHECK_EQ_U64(h_file_size(wal), size - 3);
	CHECK_RC(verify(dir, KYRO_VERIFY_REPAIR, &rep), KYRO_EDAMAGED);
	CHECK_STR_HAS(rep.file, wal);
	CHECK_STR_HAS(rep.text, "sequence numbers 4..4");
	CHECK_STR_HAS(rep.text, "lost+found");
	uint64_t cut = size - 40 - 32;
	CHECK_EQ_U64(h_file_size(wal), cut);
	char kept[PATH_MAX];
	snprintf(kept, sizeof kept, "%s/lost+found/wal-%016llx.log.from-%llu",
		 dir, 1ULL, (unsigned long long)cut);
	CHECK_EQ_U64(h_file_size(kept), 40 + 32 - 3);

	CHECK_RC(verify(dir, 0, &rep), 0);
	w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	uint64_t seq;
	CHECK_RC(kyro_put(w, 5, "five", 4, &seq), 0);
	CHECK_EQ_U64(seq, 4);
	kyro_close(w);
	r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	HAS(r, 3, "three");
	ABSENT(r, 4);
	HAS(r, 5, "five");
	kyro_close(r);
	/* The collector leaves the copy alone. */
	w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	struct kyro_snapshot_stats st;
	CHECK_RC(kyro_snapshot(w, 0, NULL, &st, NULL, NULL), 0);
	kyro_close(w);
	CHECK(h_exists(kept));
	CHECK_RC(verify(dir, 0, &rep), 0);
}

/* Damage followed by valid records: the batches after it were committed.
 * The repair keeps the whole batches before it and calls the rest lost. */
TEST(repair_of_corruption_keeps_what_is_before_and_reports_the_rest)
{
	const char *dir = three_batches();
	REQUIRE(dir);
	const char *wal = last_wal(dir);
	uint64_t size = h_file_size(wal);
	CHECK_RC(h_xor_byte(wal, END1 + 24, 1), 0); /* key 2's record */
	struct reports rep;
	CHECK_RC(verify(dir, KYRO_VERIFY_REPAIR, &rep), KYRO_EDAMAGED);
	CHECK_EQ_U64(rep.off, END1);
	CHECK_STR_HAS(rep.text, "sequence numbers 2..4 (3 records, at least 2 "
				"batches)");
	CHECK_EQ_U64(h_file_size(wal), END1);
	char kept[PATH_MAX];
	snprintf(kept, sizeof kept, "%s/lost+found/wal-%016llx.log.from-%d",
		 dir, 1ULL, END1);
	CHECK_EQ_U64(h_file_size(kept), size - END1);
	CHECK_RC(verify(dir, 0, &rep), 0);
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	HAS(w, 1, "one");
	ABSENT(w, 2);
	ABSENT(w, 4);
	CHECK_RC(kyro_put(w, 9, "nine", 4, NULL), 0);
	kyro_close(w);
	CHECK_RC(verify(dir, 0, &rep), 0);
}

/* A reader holds a value from committed records that repair then cuts
 * as lost (damage before them): the value stays readable until the
 * reader's next call, as kyro_get() promises, and is not pulled from
 * under it (a mapped page past a truncated file's end raises SIGBUS). */
TEST(a_value_handed_out_survives_repair_cutting_its_record)
{
	const char *dir = h_tmpdir();
	enum { BIG = 64 * 1024 };
	unsigned char *big = malloc(BIG);
	REQUIRE(big);
	memset(big, 'b', BIG);
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	CHECK_RC(kyro_put(w, 1, "one", 3, NULL), 0);
	CHECK_RC(kyro_put(w, 2, "two", 3, NULL), 0);
	CHECK_RC(kyro_put(w, 3, big, BIG, NULL), 0);
	kyro_close(w);
	kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	const void *v = NULL;
	size_t n = 0;
	CHECK_RC(kyro_get(r, 3, &v, &n), 0);
	REQUIRE(v && n == BIG);
	CHECK_RC(h_xor_byte(last_wal(dir), END1 + 24, 1), 0); /* key 2 */
	struct reports rep;
	CHECK_RC(verify(dir, KYRO_VERIFY_REPAIR, &rep), KYRO_EDAMAGED);
	CHECK_EQ_U64(h_file_size(last_wal(dir)), END1);
	/* Its last page first: past a cut file's end, that one faults. */
	CHECK_EQ_U64(((const unsigned char *)v)[BIG - 1], 'b');
	CHECK(memcmp(v, big, BIG) == 0);
	HAS(r, 1, "one");
	ABSENT(r, 3);
	kyro_close(r);
	CHECK_RC(verify(dir, 0, &rep), 0);
	free(big);
}

/* Repair rewrites a damaged segment header by putting a new file in the
 * segment's place, without a new manifest generation; the next writer
 * appends there.  A reader that mapped the old file sees the new
 * records: growing its mapping of the old file would map past that
 * file's end. */
TEST(a_reader_follows_a_segment_whose_header_repair_rewrote)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	CHECK_RC(kyro_put(w, 1, "one", 3, NULL), 0);
	kyro_close(w);
	kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	HAS(r, 1, "one");
	CHECK_RC(h_xor_byte(last_wal(dir), 0, 1), 0);
	struct reports rep;
	CHECK_RC(verify(dir, KYRO_VERIFY_REPAIR, &rep), 0);
	w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	unsigned char big[3 * 4096];
	memset(big, 'z', sizeof big);
	CHECK_RC(kyro_put(w, 2, big, sizeof big, NULL), 0);
	kyro_close(w);
	HAS_N(r, 2, big, sizeof big);
	HAS(r, 1, "one");
	kyro_close(r);
}

/* A writer of DIR that has committed twice, so that its next batch may
 * skip the check; behind its back another handle commits a batch, or
 * with SNAPSHOT a snapshot that retires its segment, and the page is put
 * back as the writer left it: as if that commit's process had died
 * before publishing. */
static kyro_db *writer_behind_whose_back(const char *dir, int snapshot)
{
	unsigned char *page = NULL;
	size_t plen = 0;
	kyro_db *a = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	kyro_db *b = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	if (!a || !b) {
		kyro_close(a);
		kyro_close(b);
		return NULL;
	}
	CHECK_RC(kyro_put(a, 1, "one", 3, NULL), 0);
	CHECK_RC(kyro_put(a, 2, "two", 3, NULL), 0);
	CHECK_RC(h_read_file(h_path(dir, "LOCK"), &page, &plen), 0);
	if (snapshot)
		CHECK_RC(kyro_snapshot(b, 0, NULL, NULL, NULL, NULL), 0);
	else
		CHECK_RC(kyro_put(b, 3, "three", 5, NULL), 0);
	kyro_close(b);
	CHECK_RC(h_write_file(h_path(dir, "LOCK"), page, plen), 0);
	free(page);
	return a;
}

/* A batch whose check failed leaves nothing for the next one to take on
 * trust: here another process's snapshot retired the segment this writer
 * appends to and died before publishing, and the new segment is damaged.
 * Every later put must fail as the first did, not go into the retired
 * segment, where no reader would see it. */
TEST(a_writer_whose_check_failed_checks_again)
{
	const char *dir = h_tmpdir();
	kyro_db *a = writer_behind_whose_back(dir, 1);
	REQUIRE(a);
	CHECK_RC(h_xor_byte(last_wal(dir), 0, 1), 0);
	for (int i = 0; i < 3; i++)
		CHECK_RC(kyro_put(a, 3, "three", 5, NULL), KYRO_ECORRUPT);
	kyro_close(a);
}

/* A repair that died between its copy of a segment and the rename left
 * the copy: the next snapshot's garbage collection removes it, under the
 * writer lock, and nothing else changes. */
TEST(a_snapshot_removes_the_copy_a_dead_repair_left)
{
	const char *dir = three_batches();
	REQUIRE(dir);
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s.tmp", last_wal(dir));
	CHECK_RC(h_write_file(tmp, "half a copy", 11), 0);
	struct reports rep;
	CHECK_RC(verify(dir, 0, &rep), 0);
	CHECK_EQ_U64(rep.count, 0);
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	CHECK_RC(kyro_snapshot(w, 0, NULL, NULL, NULL, NULL), 0);
	CHECK(!h_exists(tmp));
	CHECK_RC(kyro_put(w, 5, "five", 4, NULL), 0);
	HAS(w, 4, "four");
	HAS(w, 5, "five");
	kyro_close(w);
	CHECK_RC(verify(dir, 0, &rep), 0);
	CHECK_EQ_U64(rep.count, 0);
}

/* A second live segment, as a snapshot that rotated and then died
 * leaves: segment 2 starts after DIR's records, and W appends there. */
static void add_segment(const char *dir, uint64_t first_seq)
{
	char msg[KMSG_MAX];
	struct manifest m;
	REQUIRE(kyro__manifest_read(msg, dir, &m) == 0);
	CHECK_RC(kyro__wal_create(msg, dir, m.wal_last + 1, first_seq), 0);
	m.gen++;
	m.wal_last++;
	CHECK_RC(kyro__manifest_write(msg, dir, &m), 0);
}

TEST(damage_in_an_earlier_segment_drops_the_later_ones_into_lost_found)
{
	for (int how = 0; how < 2; how++) {
		const char *dir = three_batches();
		REQUIRE(dir);
		char seg1[PATH_MAX];
		snprintf(seg1, sizeof seg1, "%s", last_wal(dir));
		add_segment(dir, 5);
		kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
		REQUIRE(w);
		CHECK_RC(kyro_put(w, 5, "five", 4, NULL), 0);
		kyro_close(w);
		const char *seg2 = last_wal(dir);
		uint64_t size2 = h_file_size(seg2);
		if (how == 0) /* corruption in segment 1 */
			CHECK_RC(h_xor_byte(seg1, END1 + 24, 1), 0);
		else /* its last batch cut off whole: the numbers jump */
			CHECK_RC(h_truncate_file(seg1, h_file_size(seg1) - 72),
				 0);
		struct reports rep;
		CHECK_RC(verify(dir, 0, &rep), KYRO_EDAMAGED);
		CHECK_RC(verify(dir, KYRO_VERIFY_REPAIR, &rep), KYRO_EDAMAGED);
		CHECK_STR_HAS(rep.text, how == 0 ? "sequence numbers 2..5"
						 : "sequence numbers 4..5");
		CHECK(!h_exists(seg2));
		char kept[PATH_MAX];
		snprintf(kept, sizeof kept, "%s/lost+found/wal-%016llx.log",
			 dir, 2ULL);
		CHECK_EQ_U64(h_file_size(kept), size2);
		CHECK_RC(verify(dir, 0, &rep), 0);
		if (rep.count)
			h_note("%s", rep.text);
		w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
		REQUIRE(w);
		HAS(w, 1, "one");
		ABSENT(w, 5);
		CHECK_RC(kyro_put(w, 6, "six", 3, NULL), 0);
		kyro_close(w);
		CHECK_RC(verify(dir, 0, &rep), 0);
		kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
		REQUIRE(r);
		HAS(r, 6, "six");
		HAS(r, 1, "one");
		kyro_close(r);
	}
}

/* A writer refuses a segment whose header fails; the repair rewrites the
 * header and every record stays. */
TEST(a_damaged_segment_header_is_refused_then_salvaged)
{
	for (int off = 0; off < 48; off += 8) {
		const char *dir = three_batches();
		REQUIRE(dir);
		const char *wal = last_wal(dir);
		uint64_t size = h_file_size(wal);
		CHECK_RC(h_xor_byte(wal, (uint64_t)off + (off == 8 ? 3 : 0),
				    0x40),
			 0);
		kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
		REQUIRE(w);
		/* (A changed version field reads as a newer format.) */
		CHECK(kyro_put(w, 5, "five", 4, NULL) != 0);
		if (off != 8)
			CHECK_STR_HAS(kyro_errmsg(w), "kyro-verify --repair");
		kyro_close(w);
		CHECK_EQ_U64(h_file_size(wal), size);
		struct reports rep;
		CHECK_RC(verify(dir, KYRO_VERIFY_REPAIR, &rep), 0);
		CHECK_STR_HAS(rep.text, "rewritten");
		CHECK_EQ_U64(h_file_size(wal), size);
		CHECK_RC(verify(dir, 0, &rep), 0);
		w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
		REQUIRE(w);
		CHECK_RC(kyro_put(w, 5, "five", 4, NULL), 0);
		HAS(w, 1, "one");
		HAS(w, 3, "three");
		HAS(w, 4, "four");
		kyro_close(w);
	}
}

/* B (another process, in effect) commits {2} and {3}, then "two" is
 * damaged: A's next batch must be refused, and append nothing. */
static void others_batch_damaged_then_put(const char *dir, kyro_db *a,
					  kyro_db *b)
{
	CHECK_RC(kyro_put(b, 2, "two", 3, NULL), 0);
	CHECK_RC(kyro_put(b, 3, "three", 5, NULL), 0);
	kyro_close(b);
	CHECK_RC(h_xor_byte(last_wal(dir), END1 + 32, 1), 0); /* "two" */
	uint64_t size = h_file_size(last_wal(dir));
	CHECK_RC(kyro_put(a, 4, "four", 4, NULL), KYRO_ECORRUPT);
	CHECK_STR_HAS(kyro_errmsg(a), "offset 120");
	CHECK_EQ_U64(h_file_size(last_wal(dir)), size);
	kyro_close(a);
}

/* A handle checks, before each batch, what other processes appended
 * since its own last commit: damage there is refused even though the
 * shared page of this boot vouches for it. */
TEST(a_writer_checks_what_others_appended_since_its_last_batch)
{
	const char *dir = h_tmpdir();
	kyro_db *a = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(a);
	CHECK_RC(kyro_put(a, 1, "one", 3, NULL), 0);
	kyro_db *b = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(b);
	others_batch_damaged_then_put(dir, a, b);
}

/* A handle that has only been opened has checked the log up to the
 * committed end of that moment (before taking the lock); what is
 * committed after that is checked under the lock before it appends. */
TEST(a_writer_opened_before_others_wrote_checks_what_they_wrote)
{
	const char *dir = h_tmpdir();
	kyro_db *b = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(b);
	CHECK_RC(kyro_put(b, 1, "one", 3, NULL), 0);
	kyro_db *a = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(a);
	others_batch_damaged_then_put(dir, a, b);
}

/* A KYRO_MAINTENANCE handle opens without reading the WAL.  Damage in
 * what its snapshot folds is found as the fold reads it: the snapshot
 * fails naming it, commits no snapshot, and the handle's first batch
 * then reads the whole live WAL and is refused, as any writer's is. */
TEST(a_maintenance_handle_finds_damage_as_its_snapshot_folds)
{
	const char *dir = h_tmpdir();
	char wal1[PATH_MAX];
	snprintf(wal1, sizeof wal1, "%s", h_path(dir, "wal-0000000000000001.log"));
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	CHECK_RC(kyro_put(w, 1, "one", 3, NULL), 0);
	CHECK_RC(kyro_put(w, 2, "two", 3, NULL), 0);
	CHECK_RC(kyro_put(w, 3, "three", 5, NULL), 0);
	kyro_close(w);
	CHECK_RC(h_xor_byte(wal1, END1 + 32, 1), 0); /* "two" */
	uint64_t size = h_file_size(wal1);

	kyro_db *m = open_db(dir, KYRO_RDWR | KYRO_MAINTENANCE, KYRO_SYNC_BATCH);
	REQUIRE(m);
	CHECK_RC(kyro_snapshot(m, KYRO_SNAPSHOT_INDEX, NULL, NULL, NULL, NULL),
		 KYRO_ECORRUPT);
	CHECK_STR_HAS(kyro_errmsg(m), "wal-0000000000000001.log': offset 120");
	CHECK_STR_HAS(kyro_errmsg(m), "kyro-verify --repair");
	CHECK(!h_exists(h_path(dir, "snap-0000000000000001.bin")));
	CHECK_EQ_U64(h_file_size(wal1), size);
	CHECK_RC(kyro_put(m, 4, "four", 4, NULL), KYRO_ECORRUPT);
	CHECK_STR_HAS(kyro_errmsg(m), "offset 120");
	kyro_close(m);
	CHECK_EQ_U64(h_file_size(wal1), size);
	w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	CHECK_RC(kyro_put(w, 4, "four", 4, NULL), KYRO_ECORRUPT);
	kyro_close(w);
}

/* What a maintenance handle takes on the page's word is only where the
 * committed batches end; past it the check reads as always: a torn tail
 * is cut, and a batch whose writer died before publishing it (the page
 * rolled back to the end before it) is folded.  Without a trusted page
 * the commit reads the whole log.  Either way the handle can write on. */
TEST(a_maintenance_handle_snapshots_what_the_files_hold)
{
	for (int round = 0; round < 3; round++) {
		const char *dir = h_tmpdir();
		kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
		REQUIRE(w);
		CHECK_RC(kyro_put(w, 1, "one", 3, NULL), 0);
		unsigned char *page = NULL;
		size_t plen = 0;
		CHECK_RC(h_read_file(h_path(dir, "LOCK"), &page, &plen), 0);
		CHECK_RC(kyro_put(w, 2, "two", 3, NULL), 0);
		kyro_close(w);
		if (round == 0) { /* the writer of "two" died unpublished */
			CHECK_RC(h_write_file(h_path(dir, "LOCK"), page, plen),
				 0);
		} else {
			tear(dir, round == 2);
		}
		free(page);

		kyro_db *m = open_db(dir, KYRO_RDWR | KYRO_MAINTENANCE,
				     KYRO_SYNC_BATCH);
		REQUIRE(m);
		struct kyro_snapshot_stats st;
		CHECK_RC(kyro_snapshot(m, KYRO_SNAPSHOT_INDEX, NULL, &st, NULL,
				       NULL), 0);
		CHECK_EQ_U64(st.keys, 2);
		uint64_t seq;
		CHECK_RC(kyro_put(m, 3, "three", 5, &seq), 0);
		CHECK_EQ_U64(seq, 3);
		kyro_close(m);
		kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
		REQUIRE(r);
		HAS(r, 1, "one");
		HAS(r, 2, "two");
		HAS(r, 3, "three");
		CHECK_EQ_U64(last_seq(r), 3);
		kyro_close(r);
		struct reports rep = {0};
		CHECK_RC(kyro_verify(dir, 0, collect, &rep), 0);
		CHECK_EQ_U64(rep.count, 0);
	}
}

/* A writer that committed last skips the check before its next batch
 * only while the files are the ones it left.  Another process's batch
 * (round 0) and snapshot (round 1), whose writers died before publishing
 * (the page put back as this writer left it), are found, and the next
 * batch follows them: not written over the one, nor into the segment the
 * other retired. */
TEST(a_writer_finds_what_an_unpublished_commit_left)
{
	for (int round = 0; round < 2; round++) {
		const char *dir = h_tmpdir();
		kyro_db *a = writer_behind_whose_back(dir, round);
		REQUIRE(a);
		uint64_t seq;
		CHECK_RC(kyro_put(a, 4, "four", 4, &seq), 0);
		CHECK_EQ_U64(seq, round ? 3 : 4);
		kyro_close(a);
		kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
		REQUIRE(r);
		HAS(r, 1, "one");
		HAS(r, 2, "two");
		if (round == 0)
			HAS(r, 3, "three");
		HAS(r, 4, "four");
		CHECK_EQ_U64(last_seq(r), round ? 3 : 4);
		kyro_close(r);
		struct reports rep = {0};
		CHECK_RC(kyro_verify(dir, 0, collect, &rep), 0);
		CHECK_EQ_U64(rep.count, 0);
	}
}

/* An intact page of another boot (its checksum holding) is stale, not
 * damage: nothing trusts it, kyro-verify is silent, the next writer
 * replaces it. */
TEST(an_intact_page_of_another_boot_is_stale_not_damage)
{
	const char *dir = three_batches();
	REQUIRE(dir);
	const char *lock = h_path(dir, "LOCK");
	unsigned char *page;
	size_t len;
	REQUIRE(h_read_file(lock, &page, &len) == 0 && len == 4096);
	page[16] ^= 0xFF;
	/* A wrong committed end too: from another boot it must not count. */
	put_le64(page + LOCK_END, get_le64(page + LOCK_END) + 4096);
	put_le64(page + LOCK_SUM, XXH3_64bits(page, LOCK_SUM));
	CHECK_RC(h_write_file(lock, page, len), 0);
	free(page);
	struct reports rep;
	CHECK_RC(verify(dir, 0, &rep), 0);
	CHECK_EQ_U64(rep.count, 0);
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_BATCH);
	REQUIRE(w);
	CHECK_RC(kyro_put(w, 5, "five", 4, NULL), 0);
	HAS(w, 4, "four");
	kyro_close(w);
	CHECK_RC(verify(dir, 0, &rep), 0);
}

/* ---- kyro_stats() from another thread ---- */

struct stats_loop {
	kyro_db *db;
	int stop;
	uint64_t calls;
};

static void *stats_loop(void *arg)
{
	struct stats_loop *l = arg;
	struct kyro_stats st;
	while (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
		kyro_stats(l->db, &st);
		l->calls++;
	}
	return NULL;
}

/*
 * kyro.h lets another thread read a handle's counters (kyro-serve's
 * /metrics does): that must stay safe while the owner drops one learned
 * index for the next and frees it.  The index's counters live in the
 * handle, so kyro_stats() never reads an index: AddressSanitizer (make
 * check-asan) would see a read of a freed one.  And since they live in
 * the handle, no count is lost when an index is dropped: every lookup's
 * window is in the histogram at the end.
 */
TEST(stats_read_from_another_thread_while_the_index_is_swapped)
{
	const char *dir = h_tmpdir();
	const struct kyro_rmi_params p = {0};
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(w);
	for (uint64_t k = 1; k <= 3000; k++)
		REQUIRE(kyro_put(w, k * 7, "v", 1, NULL) == 0);
	REQUIRE(kyro_snapshot(w, KYRO_SNAPSHOT_INDEX, &p, NULL, NULL, NULL) == 0);
	kyro_db *r = open_db(dir, KYRO_RDONLY | KYRO_COUNT_WINDOWS, 0);
	REQUIRE(r);
	const void *v;
	size_t len;
	CHECK_RC(kyro_get(r, 7, &v, &len), 0);
	struct kyro_index_info ii;
	CHECK_RC(kyro_index_info(r, &ii), 0);
	if (!CHECK_EQ_U64(ii.kind, KYRO_INDEX_RMI))
		h_note("no index in use: %s", ii.why);
	struct stats_loop l = {.db = r};
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, stats_loop, &l) == 0);
	for (uint64_t round = 0; round < 150; round++) {
		if (!CHECK_RC(kyro_put(w, 100000 + round, "n", 1, NULL), 0) ||
		    !CHECK_RC(kyro_snapshot(w, KYRO_SNAPSHOT_INDEX, &p, NULL,
					    NULL, NULL),
			      0))
			break;
		/* The reader sees the new manifest: it loads the new index
		 * and frees the old one. */
		if (!CHECK_RC(kyro_get(r, 100000 + round, &v, &len), 0))
			break;
	}
	__atomic_store_n(&l.stop, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	CHECK(l.calls > 0);
	struct kyro_stats st;
	kyro_stats(r, &st);
	/* Every lookup went through an index the reader had just loaded,
	 * and each one's window was counted, across 150 swaps. */
	if (!CHECK_EQ_U64(st.lookups_rmi, 151))
		h_note("delta %llu, binary %llu",
		       (unsigned long long)st.lookups_delta,
		       (unsigned long long)st.lookups_binary);
	uint64_t windows = 0;
	for (int i = 0; i < KYRO_WINDOW_BUCKETS; i++)
		windows += st.window_hist[i];
	CHECK_EQ_U64(windows, 151);
	CHECK_EQ_U64(st.rmi_mispredicts, 0);
	kyro_close(r);
	kyro_close(w);
}

/* The learned index's options are the handle's: KYRO_BINARY_SEARCH at
 * open, and kyro_set_simd() for the index loaded now and every later one. */
TEST(binary_search_and_the_probe_are_options_of_the_handle)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(w);
	for (uint64_t k = 1; k <= 3000; k++)
		REQUIRE(kyro_put(w, k * 7, "v", 1, NULL) == 0);
	struct kyro_snapshot_stats st;
	CHECK_RC(kyro_snapshot(w, KYRO_SNAPSHOT_INDEX, NULL, &st, NULL, NULL), 0);
	CHECK_EQ_U64(st.rmi.generation, 1);
	CHECK_EQ_U64(st.rmi.keys, 3000);

	kyro_db *b = open_db(dir, KYRO_RDONLY | KYRO_BINARY_SEARCH, 0);
	REQUIRE(b);
	struct kyro_index_info ii;
	struct kyro_stats s;
	CHECK_RC(kyro_index_info(b, &ii), 0);
	CHECK_EQ_U64(ii.kind, KYRO_INDEX_BINARY);
	CHECK_EQ_U64(ii.refused, 0);
	CHECK_STR_HAS(ii.why, "binary search was asked for");
	HAS(b, 7, "v");
	kyro_stats(b, &s);
	CHECK_EQ_U64(s.lookups_binary, 1);
	CHECK_EQ_U64(s.lookups_rmi, 0);
	kyro_close(b);

	kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	CHECK_RC(kyro_set_simd(r, "bogus"), EINVAL);
	CHECK_STR_HAS(kyro_errmsg(r), "bogus");
	CHECK_RC(kyro_set_simd(r, "scalar"), 0);
	CHECK_RC(kyro_index_info(r, &ii), 0);
	CHECK_EQ_U64(ii.kind, KYRO_INDEX_RMI);
	CHECK_STR_HAS(ii.simd, "scalar");
	HAS(r, 14, "v");
	/* A new snapshot and index: the reader loads them with its probe. */
	CHECK_RC(kyro_put(w, 1, "one", 3, NULL), 0);
	CHECK_RC(kyro_snapshot(w, KYRO_SNAPSHOT_INDEX, NULL, &st, NULL, NULL), 0);
	CHECK_EQ_U64(st.rmi.generation, 2);
	HAS(r, 1, "one");
	CHECK_RC(kyro_index_info(r, &ii), 0);
	CHECK_EQ_U64(ii.kind, KYRO_INDEX_RMI);
	CHECK_EQ_U64(ii.generation, 2);
	CHECK_STR_HAS(ii.simd, "scalar");
	CHECK_RC(kyro_set_simd(r, NULL), 0);
	CHECK_RC(kyro_index_info(r, &ii), 0);
	CHECK(strcmp(ii.simd, "?") != 0);
	/* Two lookups: both answered before the index paid for loading
	 * (view.c, INDEX_LAZY). */
	kyro_stats(r, &s);
	CHECK_EQ_U64(s.lookups_binary, 2);
	CHECK_EQ_U64(s.lookups_rmi, 0);
	kyro_close(r);

	/* Nothing new to fold and the index there: nothing built. */
	CHECK_RC(kyro_snapshot(w, KYRO_SNAPSHOT_INDEX, NULL, &st, NULL, NULL), 0);
	CHECK_EQ_U64(st.rmi.generation, 0);
	CHECK_EQ_U64(st.generation, 2);
	kyro_close(w);
}

/* The path of DIR's one learned index file. */
static const char *index_path(const char *dir)
{
	static char path[PATH_MAX];
	DIR *d = opendir(dir);
	struct dirent *e;
	path[0] = 0;
	while (d && (e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "rmi-", 4) == 0 &&
		    strstr(e->d_name, ".idx") != NULL)
			snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
	if (d)
		closedir(d);
	return path;
}

/*
 * Before the index loads, single lookups read its router entry and leaf
 * from the file as a hint (view.c).  Only the header was checked when
 * the store was opened, so damage done to the rest afterwards (bytes
 * flipped in the router or the leaves, garbage written over them, the
 * file cut short) may send a hint anywhere: every answer must still be
 * right, and the load that follows must refuse the file.
 */
TEST(a_damaged_index_before_it_loads_costs_no_answer)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(w);
	const uint64_t n = 30000;
	REQUIRE(kyro_batch_begin(w) == 0);
	for (uint64_t k = 1; k <= n; k++) {
		/* Dense runs and wide gaps: leaves of every shape. */
		const uint64_t key = k * k * (k % 97 == 0 ? 1000 : 3);
		REQUIRE(kyro_put(w, key, &key, sizeof key, NULL) == 0);
	}
	REQUIRE(kyro_batch_commit(w, NULL) == 0);
	CHECK_RC(kyro_snapshot(w, KYRO_SNAPSHOT_INDEX, NULL, NULL, NULL, NULL),
		 0);
	kyro_close(w);
	const char *path = index_path(dir);
	const uint64_t size = h_file_size(path);
	REQUIRE(path[0] && size > 64);
	unsigned char *orig = malloc(size), *junk = malloc(size);
	REQUIRE(orig && junk);
	int fd = open(path, O_RDWR);
	REQUIRE(fd >= 0);
	REQUIRE(pread(fd, orig, size, 0) == (ssize_t)size);
	h_seed(29);
	uint64_t wrong = 0, failed = 0, refused = 0;
	for (int t = 0; t < 200; t++) {
		REQUIRE(ftruncate(fd, 0) == 0 &&
			pwrite(fd, orig, size, 0) == (ssize_t)size);
		kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
		REQUIRE(r);
		/* The header was read and accepted: now the damage. */
		const uint64_t at = 64 + h_rand() % (size - 64);
		size_t len = 1;
		for (size_t i = 0; i < size; i++)
			junk[i] = (unsigned char)h_rand();
		switch (t % 4) {
		case 0: /* one bit */
			junk[0] = orig[at] ^ (unsigned char)(1u << t % 8);
			break;
		case 1: /* one byte */
			junk[0] = orig[at] ^ (unsigned char)(1 + h_rand() % 255);
			break;
		case 2: /* a run of garbage */
			len = 1 + h_rand() % 512;
			if (len > size - at)
				len = size - at;
			break;
		default: /* cut short */
			len = 0;
			REQUIRE(ftruncate(fd, (off_t)(h_rand() % size)) == 0);
			break;
		}
		if (len)
			REQUIRE(pwrite(fd, junk, len, (off_t)at) == (ssize_t)len);
		/* Fewer lookups than load the index: all of them hinted. */
		for (int j = 0; j < 60; j++) {
			const uint64_t k = 1 + h_rand() % n;
			const uint64_t key = k * k * (k % 97 == 0 ? 1000 : 3);
			const uint64_t x = key + (j & 1);
			const void *v;
			size_t vlen;
			int rc = kyro_get(r, x, &v, &vlen);
			if (j & 1)
				wrong += rc != KYRO_ENOTFOUND;
			else if (rc)
				failed++;
			else
				wrong += vlen != 8 || memcmp(v, &key, 8) != 0;
		}
		/* The next ones load it, and its checks refuse it. */
		for (int j = 0; j < 8; j++)
			HAS_N(r, 3, &(uint64_t){3}, 8);
		struct kyro_index_info ii;
		CHECK_RC(kyro_index_info(r, &ii), 0);
		refused += ii.kind == KYRO_INDEX_BINARY && ii.refused;
		kyro_close(r);
	}
	close(fd);
	free(orig);
	free(junk);
	CHECK_EQ_U64(wrong, 0);
	CHECK_EQ_U64(failed, 0);
	CHECK_EQ_U64(refused, 200);
}

/* An index image of a megabyte or more is read onto huge pages rather
 * than mapped: lookups through the copy are right, and a damaged file is
 * still refused by the load's checksum. */
TEST(a_large_index_is_read_into_memory_and_still_checked)
{
	const char *dir = h_tmpdir();
	kyro_db *w = open_db(dir, KYRO_RDWR, KYRO_SYNC_NONE);
	REQUIRE(w);
	REQUIRE(kyro_batch_begin(w) == 0);
	for (uint64_t k = 1; k <= 20000; k++)
		REQUIRE(kyro_put(w, k * k, "v", 1, NULL) == 0);
	REQUIRE(kyro_batch_commit(w, NULL) == 0);
	struct kyro_rmi_params p = {.router_bits = 16, .max_size = 4 << 20};
	struct kyro_snapshot_stats st;
	CHECK_RC(kyro_snapshot(w, KYRO_SNAPSHOT_INDEX, &p, &st, NULL, NULL), 0);
	kyro_close(w);

	kyro_db *r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	struct kyro_index_info ii;
	CHECK_RC(kyro_index_info(r, &ii), 0);
	CHECK_EQ_U64(ii.kind, KYRO_INDEX_RMI);
	CHECK(ii.bytes >= (1 << 20));
	for (uint64_t k = 1; k <= 20000; k += 7)
		HAS(r, k * k, "v");
	const void *val;
	size_t len;
	CHECK_RC(kyro_get(r, 2, &val, &len), KYRO_ENOTFOUND);
	/* The first lookups binary-search; then the index loads and
	 * answers the rest. */
	struct kyro_stats s;
	kyro_stats(r, &s);
	CHECK_EQ_U64(s.lookups_binary, 63);
	CHECK_EQ_U64(s.lookups_rmi, 2859 - 63);
	kyro_close(r);

	/* One flipped byte in the leaves, past the first huge page. */
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/rmi-%016llx.idx", dir,
		 (unsigned long long)ii.generation);
	REQUIRE(h_file_size(path) > (1 << 20));
	int fd = open(path, O_RDWR);
	REQUIRE(fd >= 0);
	unsigned char b;
	REQUIRE(pread(fd, &b, 1, 1 << 20) == 1);
	b ^= 0x40;
	REQUIRE(pwrite(fd, &b, 1, 1 << 20) == 1);
	close(fd);
	r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	/* Only the header is read at open: it holds. */
	CHECK_RC(kyro_index_info(r, &ii), 0);
	CHECK_EQ_U64(ii.kind, KYRO_INDEX_RMI);
	for (uint64_t k = 1; k <= 20000; k += 7)
		HAS(r, k * k, "v");
	/* The load found the damage: refused, and every answer right. */
	CHECK_RC(kyro_index_info(r, &ii), 0);
	CHECK_EQ_U64(ii.kind, KYRO_INDEX_BINARY);
	CHECK(ii.refused);
	CHECK_STR_HAS(ii.why, "checksum");
	HAS(r, 49, "v");
	kyro_close(r);
	/* A warm-up loads it at once. */
	r = open_db(dir, KYRO_RDONLY, 0);
	REQUIRE(r);
	CHECK_RC(kyro_warmup(r, NULL), 0);
	CHECK_RC(kyro_index_info(r, &ii), 0);
	CHECK_EQ_U64(ii.kind, KYRO_INDEX_BINARY);
	CHECK(ii.refused);
	kyro_close(r);
}
