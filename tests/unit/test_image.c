/*
 * test_image.c - images (kyro_export_*, kyro_import_*) and the batch that
 * begins at a given sequence number (kyro_batch_begin_at()): a copy holds
 * what the source held and follows on with the same numbers; a damaged
 * or short stream commits nothing; an export stays whole while a snapshot
 * commits under it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Keys 1..N with values "vK.GEN", committed in batches of 10. */
static int fill(kyro_db *db, uint64_t n, int gen)
{
	char v[32];
	for (uint64_t k = 1; k <= n; k++) {
		int rc = (k % 10 == 1) ? kyro_batch_begin(db) : 0;
		int len = snprintf(v, sizeof v, "v%llu.%d",
				   (unsigned long long)k, gen);
		if (!rc)
			rc = kyro_put(db, k, v, (size_t)len, NULL);
		if (!rc && (k % 10 == 0 || k == n))
			rc = kyro_batch_commit(db, NULL);
		if (rc)
			return rc;
	}
	return 0;
}

/* The whole export of DB into a malloc'd buffer. */
static int export_all(kyro_db *db, unsigned char **out, size_t *len,
		      uint64_t *seq)
{
	kyro_export *e;
	size_t cap = 1 << 16, n = 0, got;
	unsigned char *b = malloc(cap);
	int rc = kyro_export_open(&e, db);
	if (!rc)
		*seq = kyro_export_seq(e);
	while (!rc) {
		if (cap - n < 4096)
			b = realloc(b, cap *= 2);
		/* Odd sizes: every piece boundary lands somewhere. */
		rc = kyro_export_read(e, b + n, 1 + (n % 4093), &got);
		if (!rc && !got)
			break;
		n += got;
	}
	if (rc)
		h_note("export: %s", kyro_export_errmsg(e));
	kyro_export_close(e);
	*out = b;
	*len = n;
	return rc;
}

static int import_all(const char *dir, const unsigned char *b, size_t len,
		      size_t piece, uint64_t *seq)
{
	kyro_import *im;
	int rc = kyro_import_open(&im, dir);
	for (size_t off = 0; !rc && off < len; off += piece)
		rc = kyro_import_write(im, b + off,
				       len - off < piece ? len - off : piece);
	if (!rc)
		rc = kyro_import_finish(im, seq);
	if (rc)
		h_note("import: %s", kyro_import_errmsg(im));
	kyro_import_close(im);
	return rc;
}

static int same_value(kyro_db *db, uint64_t k, const char *want)
{
	const void *v;
	size_t len;
	int rc = kyro_get(db, k, &v, &len);
	if (!want)
		return rc == KYRO_ENOTFOUND;
	return !rc && len == strlen(want) && !memcmp(v, want, len);
}

TEST(image_copies_snapshot_index_and_follows_with_same_numbers)
{
	const char *src = h_tmpdir(), *dst = h_path(h_tmpdir(), "copy");
	kyro_db *db = open_rw(src), *cp;
	unsigned char *img;
	size_t len;
	uint64_t seq = 0, iseq = 0, last;
	REQUIRE(db);
	REQUIRE(fill(db, 1000, 1) == 0);
	CHECK_RC(kyro_snapshot(db, KYRO_SNAPSHOT_INDEX, NULL, NULL, NULL,
			       NULL), 0);
	CHECK_RC(kyro_delete(db, 5, NULL), 0); /* after the snapshot */
	REQUIRE(export_all(db, &img, &len, &seq) == 0);
	CHECK_EQ_U64(seq, 1000);
	CHECK_RC(import_all(dst, img, len, 777, &iseq), 0);
	CHECK_EQ_U64(iseq, 1000);
	free(img);
	REQUIRE((cp = open_rw(dst)) != NULL);
	CHECK_RC(kyro_last_seq(cp, &last), 0);
	CHECK_EQ_U64(last, 1000);
	CHECK(same_value(cp, 5, "v5.1"));
	CHECK(same_value(cp, 1000, "v1000.1"));
	CHECK(same_value(cp, 1001, NULL));
	struct kyro_index_info info;
	CHECK_RC(kyro_index_info(cp, &info), 0);
	CHECK(info.kind == KYRO_INDEX_RMI);
	/* The source's next batch is 1001; anything else is refused. */
	CHECK_RC(kyro_batch_begin_at(cp, 1002), KYRO_EBATCH);
	CHECK_STR_HAS(kyro_errmsg(cp), "next one is 1001");
	CHECK_RC(kyro_batch_begin_at(cp, 1000), KYRO_EBATCH);
	CHECK_RC(kyro_batch_begin_at(cp, 1001), 0);
	uint64_t s1, s2;
	CHECK_RC(kyro_delete(cp, 5, &s1), 0);
	CHECK_RC(kyro_put(cp, 7, "x", 1, &s2), 0);
	CHECK_RC(kyro_batch_commit(cp, &last), 0);
	CHECK_EQ_U64(s1, 1001);
	CHECK_EQ_U64(s2, 1002);
	CHECK_EQ_U64(last, 1002);
	CHECK(same_value(cp, 5, NULL));
	kyro_close(cp);
	CHECK_RC(kyro_verify(dst, 0, NULL, NULL), 0);
	kyro_close(db);
}

TEST(image_of_a_store_without_snapshot_follows_from_one)
{
	const char *src = h_tmpdir(), *dst = h_path(h_tmpdir(), "copy");
	kyro_db *db = open_rw(src), *cp;
	unsigned char *img;
	size_t len;
	uint64_t seq = 9, iseq = 9;
	REQUIRE(db);
	REQUIRE(fill(db, 20, 1) == 0);
	REQUIRE(export_all(db, &img, &len, &seq) == 0);
	CHECK_EQ_U64(seq, 0);
	CHECK_RC(import_all(dst, img, len, 1, &iseq), 0);
	CHECK_EQ_U64(iseq, 0);
	free(img);
	REQUIRE((cp = open_rw(dst)) != NULL);
	CHECK(same_value(cp, 1, NULL));
	CHECK_RC(kyro_batch_begin_at(cp, 1), 0);
	kyro_batch_abort(cp);
	kyro_close(cp);
	kyro_close(db);
}

TEST(damaged_or_short_image_commits_nothing)
{
	const char *src = h_tmpdir(), *root = h_tmpdir();
	kyro_db *db = open_rw(src);
	unsigned char *img;
	size_t len;
	uint64_t seq;
	REQUIRE(db);
	REQUIRE(fill(db, 300, 1) == 0);
	CHECK_RC(kyro_snapshot(db, 0, NULL, NULL, NULL, NULL), 0);
	REQUIRE(export_all(db, &img, &len, &seq) == 0);
	kyro_close(db);
	/* A flipped byte anywhere (header, manifest, a name, file bytes, a
	 * checksum) is refused; the directory is left empty. */
	size_t at[] = {0, 9, 30, 40, 140, 150, 200, len / 2, len - 1};
	for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
		char name[16];
		snprintf(name, sizeof name, "d%zu", i);
		const char *dst = h_path(root, name);
		img[at[i]] ^= 0x20;
		int rc = import_all(dst, img, len, 4096, &seq);
		img[at[i]] ^= 0x20;
		if (!CHECK(rc == KYRO_ECORRUPT || rc == KYRO_EVERSION ||
			   rc == KYRO_ENOTDB))
			h_note("byte %zu: rc %d", at[i], rc);
		CHECK_EQ_U64(h_count_suffix(dst, ""), 2); /* . and .. */
	}
	const char *dst = h_path(root, "short");
	CHECK_RC(import_all(dst, img, len - 3, 100, &seq), KYRO_ECORRUPT);
	CHECK_EQ_U64(h_count_suffix(dst, ""), 2); /* . and .. */
	dst = h_path(root, "long");
	img = realloc(img, len + 1);
	img[len] = 0;
	CHECK_RC(import_all(dst, img, len + 1, 100, &seq), KYRO_ECORRUPT);
	/* Into a directory that holds something: refused, untouched. */
	CHECK_RC(import_all(src, img, len, 100, &seq), EEXIST);
	free(img);
}

TEST(export_stays_whole_while_a_snapshot_commits_under_it)
{
	const char *src = h_tmpdir(), *dst = h_path(h_tmpdir(), "copy");
	kyro_db *db = open_rw(src), *cp;
	kyro_export *e;
	unsigned char *img = malloc(1 << 22);
	size_t n = 0, got;
	uint64_t seq;
	REQUIRE(db && img);
	REQUIRE(fill(db, 5000, 1) == 0);
	CHECK_RC(kyro_snapshot(db, KYRO_SNAPSHOT_INDEX, NULL, NULL, NULL,
			       NULL), 0);
	REQUIRE(kyro_export_open(&e, db) == 0);
	CHECK_RC(kyro_export_read(e, img, 100, &got), 0);
	n += got;
	/* A new snapshot replaces every file the export holds open; the
	 * garbage collection that follows removes them. */
	REQUIRE(kyro_set_retain(db, 0, 0) == 0);
	REQUIRE(fill(db, 5000, 2) == 0);
	CHECK_RC(kyro_snapshot(db, KYRO_SNAPSHOT_INDEX, NULL, NULL, NULL,
			       NULL), 0);
	CHECK(!h_exists(h_path(src, "snap-0000000000000001.bin")));
	do {
		CHECK_RC(kyro_export_read(e, img + n, 65536, &got), 0);
		n += got;
	} while (got);
	CHECK_EQ_U64(kyro_export_seq(e), 5000);
	kyro_export_close(e);
	CHECK_RC(import_all(dst, img, n, 65536, &seq), 0);
	CHECK_EQ_U64(seq, 5000);
	REQUIRE((cp = open_rw(dst)) != NULL);
	CHECK(same_value(cp, 4999, "v4999.1"));
	kyro_close(cp);
	CHECK_RC(kyro_verify(dst, KYRO_VERIFY_DEEP, NULL, NULL), 0);
	free(img);
	kyro_close(db);
}
