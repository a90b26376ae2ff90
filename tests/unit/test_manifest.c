/*
 * test_manifest.c - the MANIFEST: byte layout, decode checks, and the
 * atomic replacement on disk.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "harness.h"
#include "internal.h"
#include "manifest.h"

static const struct manifest sample = {
	.gen = 0x0102030405060708ull,
	.snap_gen = 0x1112131415161718ull,
	.snap_seq = 0x2122232425262728ull,
	.snap_keys = 0x3132333435363738ull,
	.wal_first = 0x4142434445464748ull,
	.wal_last = 0x5152535455565758ull,
	.rmi_gen = 0x6162636465666768ull,
};

static int same(const struct manifest *a, const struct manifest *b)
{
	return a->gen == b->gen && a->snap_gen == b->snap_gen &&
	       a->snap_seq == b->snap_seq && a->snap_keys == b->snap_keys &&
	       a->wal_first == b->wal_first && a->wal_last == b->wal_last &&
	       a->rmi_gen == b->rmi_gen;
}

/* Rewrite the checksum of an edited manifest. */
static void reseal(unsigned char *b) { put_le64(b + 120, XXH3_64bits(b, 120)); }

TEST(encode_writes_the_documented_layout)
{
	unsigned char b[MANIFEST_SIZE];
	memset(b, 0xAA, sizeof b);
	kyro__manifest_encode(&sample, b);
	CHECK_MEM(b, "KYROMANI", 8);
	CHECK_EQ_U64(get_le32(b + 8), 2);
	CHECK_EQ_U64(get_le32(b + 12), 128);
	CHECK_EQ_U64(get_le64(b + 16), sample.gen);
	CHECK_EQ_U64(get_le64(b + 24), sample.snap_gen);
	CHECK_EQ_U64(get_le64(b + 32), sample.snap_seq);
	CHECK_EQ_U64(get_le64(b + 40), sample.snap_keys);
	CHECK_EQ_U64(get_le64(b + 48), sample.wal_first);
	CHECK_EQ_U64(get_le64(b + 56), sample.wal_last);
	CHECK_EQ_U64(get_le64(b + 64), sample.rmi_gen);
	CHECK_EQ_U64(get_le64(b + 72), 0);
	CHECK_EQ_U64(get_le64(b + 80), sample.vec_snap);
	CHECK_EQ_U64(get_le64(b + 88), sample.hnsw_gen);
	CHECK_EQ_U64(get_le64(b + 96), sample.hnsw_snap);
	CHECK_EQ_U64(get_le64(b + 104), 0);
	CHECK_EQ_U64(get_le64(b + 112), 0);
	CHECK_EQ_U64(get_le64(b + 120), XXH3_64bits(b, 120));
}

/* A manifest of the previous release (version 1, 96 bytes) is read, its
 * vector fields 0. */
TEST(version_1_is_still_read)
{
	char msg[KMSG_MAX] = "";
	unsigned char b[MANIFEST_SIZE];
	struct manifest m;
	kyro__manifest_encode(&sample, b);
	put_le32(b + 8, 1);
	put_le32(b + 12, MANIFEST_V1_SIZE);
	put_le64(b + 80, 0);
	put_le64(b + 88, XXH3_64bits(b, 88));
	CHECK_RC(kyro__manifest_decode(msg, b, MANIFEST_V1_SIZE, "M", &m), 0);
	CHECK_EQ_U64(m.gen, sample.gen);
	CHECK_EQ_U64(m.rmi_snap, sample.rmi_snap);
	CHECK_EQ_U64(m.vec_snap, 0);
	CHECK_EQ_U64(m.hnsw_gen, 0);
	b[50] ^= 1;
	CHECK_RC(kyro__manifest_decode(msg, b, MANIFEST_V1_SIZE, "M", &m),
		 KYRO_ECORRUPT);
}

TEST(decode_round_trips_every_field)
{
	char msg[KMSG_MAX] = "";
	unsigned char b[MANIFEST_SIZE];
	const struct manifest cases[] = {
		sample,
		{.gen = 1, .wal_first = 1, .wal_last = 1},
		{UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX,
		 UINT64_MAX, UINT64_MAX},
		{7, 3, 1000, 0, 2, 9, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct manifest m;
		memset(&m, 0xEE, sizeof m);
		kyro__manifest_encode(&cases[i], b);
		CHECK_RC(kyro__manifest_decode(msg, b, sizeof b, "M", &m), 0);
		CHECK(same(&m, &cases[i]));
		CHECK_EQ_U64(m.rmi_gen, cases[i].rmi_gen);
	}
}

TEST(every_single_byte_corruption_is_refused)
{
	char msg[KMSG_MAX] = "";
	unsigned char b[MANIFEST_SIZE];
	kyro__manifest_encode(&sample, b);
	uint64_t accepted = 0, wrong_code = 0;
	for (size_t i = 0; i < MANIFEST_SIZE; i++) {
		int want = i < 8 ? KYRO_ENOTDB
			   : i < 12 ? KYRO_EVERSION
				    : KYRO_ECORRUPT;
		for (unsigned x = 1; x < 256; x++) {
			struct manifest m;
			b[i] ^= (unsigned char)x;
			int rc = kyro__manifest_decode(msg, b, sizeof b, "M",
						       &m);
			b[i] ^= (unsigned char)x;
			/* A version byte turned into 1 reads as the
			 * previous version, of another size. */
			int v1 = i >= 8 && i < 12 &&
				 (get_le32(b + 8) ^ (x << (8 * (i - 8)))) == 1;
			if (rc == 0)
				accepted++;
			else if (rc != (v1 ? KYRO_ECORRUPT : want) &&
				 !wrong_code++)
				h_note("byte %zu ^ 0x%02x: %d (%s)", i, x, rc,
				       msg);
		}
	}
	CHECK_EQ_U64(accepted, 0);
	CHECK_EQ_U64(wrong_code, 0);
}

TEST(newer_version_is_refused_naming_the_version)
{
	char msg[KMSG_MAX] = "";
	unsigned char b[MANIFEST_SIZE];
	struct manifest m;
	kyro__manifest_encode(&sample, b);
	put_le32(b + 8, 3);
	reseal(b);
	CHECK_RC(kyro__manifest_decode(msg, b, sizeof b, "/s/MANIFEST", &m),
		 KYRO_EVERSION);
	CHECK_STR_HAS(msg, "version 3");
	CHECK_STR_HAS(msg, "'/s/MANIFEST'");
	/* A newer version may be longer: the size is not held against it. */
	unsigned char big[200];
	memset(big, 0, sizeof big);
	memcpy(big, b, sizeof b);
	put_le32(big + 12, 200);
	CHECK_RC(kyro__manifest_decode(msg, big, sizeof big, "/s/MANIFEST", &m),
		 KYRO_EVERSION);
	put_le32(b + 8, 0);
	CHECK_RC(kyro__manifest_decode(msg, b, sizeof b, "/s/MANIFEST", &m),
		 KYRO_EVERSION);
	CHECK_STR_HAS(msg, "version 0");
}

TEST(truncated_and_overlong_buffers_are_refused)
{
	char msg[KMSG_MAX] = "";
	unsigned char b[MANIFEST_SIZE + 8];
	struct manifest m;
	memset(b, 0, sizeof b);
	kyro__manifest_encode(&sample, b);
	for (size_t len = 0; len < MANIFEST_SIZE; len++) {
		/* An exact-size copy, so a read past LEN is caught. */
		unsigned char *copy = malloc(len + 1);
		memcpy(copy, b, len);
		int rc = kyro__manifest_decode(msg, copy, len, "M", &m);
		CHECK_RC(rc, len < 16 ? KYRO_ENOTDB : KYRO_ECORRUPT);
		free(copy);
	}
	CHECK_RC(kyro__manifest_decode(msg, b, MANIFEST_SIZE + 1, "M", &m),
		 KYRO_ECORRUPT);
	CHECK_STR_HAS(msg, "size 129, expected 128");
	CHECK_RC(kyro__manifest_decode(msg, b, MANIFEST_SIZE + 8, "M", &m),
		 KYRO_ECORRUPT);
	CHECK_RC(kyro__manifest_decode(msg, b, MANIFEST_SIZE, "M", &m), 0);
}

TEST(inconsistent_fields_are_refused_despite_a_good_checksum)
{
	char msg[KMSG_MAX] = "";
	unsigned char b[MANIFEST_SIZE];
	struct manifest m;
	const struct manifest bad[] = {
		{.gen = 1, .wal_first = 0, .wal_last = 1},
		{.gen = 1, .wal_first = 3, .wal_last = 2},
		{.gen = 1, .snap_gen = 0, .snap_keys = 5, .wal_first = 1,
		 .wal_last = 1},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		kyro__manifest_encode(&bad[i], b);
		CHECK_RC(kyro__manifest_decode(msg, b, sizeof b, "/s/MANIFEST",
					       &m),
			 KYRO_ECORRUPT);
		CHECK_STR_HAS(msg, "/s/MANIFEST");
	}
}

TEST(write_then_read_in_a_directory)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct manifest m;
	CHECK_RC(kyro__manifest_read(msg, dir, &m), ENOENT);
	CHECK_STR_HAS(msg, "MANIFEST");
	CHECK_RC(kyro__manifest_write(msg, dir, &sample), 0);
	CHECK_EQ_U64(h_file_size(h_path(dir, "MANIFEST")), MANIFEST_SIZE);
	CHECK(!h_exists(h_path(dir, "MANIFEST.tmp")));
	memset(&m, 0, sizeof m);
	CHECK_RC(kyro__manifest_read(msg, dir, &m), 0);
	CHECK(same(&m, &sample));

	/* Replacing it. */
	struct manifest next = sample;
	next.gen++;
	next.snap_keys = 0;
	CHECK_RC(kyro__manifest_write(msg, dir, &next), 0);
	CHECK_RC(kyro__manifest_read(msg, dir, &m), 0);
	CHECK(same(&m, &next));
	CHECK(!h_exists(h_path(dir, "MANIFEST.tmp")));
	CHECK_EQ_U64(h_count_suffix(dir, ""), 3); /* ., .., MANIFEST */

	/* The file on disk is exactly the encoding. */
	unsigned char enc[MANIFEST_SIZE], *disk;
	size_t len;
	kyro__manifest_encode(&next, enc);
	REQUIRE(CHECK_RC(h_read_file(h_path(dir, "MANIFEST"), &disk, &len), 0));
	CHECK_EQ_U64(len, MANIFEST_SIZE);
	if (len == MANIFEST_SIZE)
		CHECK_MEM(disk, enc, MANIFEST_SIZE);
	free(disk);
}

TEST(damaged_files_are_refused_by_read)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	const char *path = h_path(dir, "MANIFEST");
	unsigned char b[MANIFEST_SIZE + 1];
	struct manifest m;
	kyro__manifest_encode(&sample, b);
	b[MANIFEST_SIZE] = 0;

	/* Overlong by one byte, even a zero. */
	CHECK_RC(h_write_file(path, b, MANIFEST_SIZE + 1), 0);
	CHECK_RC(kyro__manifest_read(msg, dir, &m), KYRO_ECORRUPT);
	CHECK_STR_HAS(msg, path);
	/* Truncated. */
	CHECK_RC(h_write_file(path, b, MANIFEST_SIZE - 1), 0);
	CHECK_RC(kyro__manifest_read(msg, dir, &m), KYRO_ECORRUPT);
	CHECK_STR_HAS(msg, path);
	CHECK_RC(h_write_file(path, b, 0), 0);
	CHECK_RC(kyro__manifest_read(msg, dir, &m), KYRO_ENOTDB);
	CHECK_STR_HAS(msg, path);
	/* A flipped payload byte. */
	b[50] ^= 4;
	CHECK_RC(h_write_file(path, b, MANIFEST_SIZE), 0);
	CHECK_RC(kyro__manifest_read(msg, dir, &m), KYRO_ECORRUPT);
	CHECK_STR_HAS(msg, "checksum");
	CHECK_STR_HAS(msg, path);
	b[50] ^= 4;
	/* A newer version on disk. */
	put_le32(b + 8, 3);
	reseal(b);
	CHECK_RC(h_write_file(path, b, MANIFEST_SIZE), 0);
	CHECK_RC(kyro__manifest_read(msg, dir, &m), KYRO_EVERSION);
	CHECK_STR_HAS(msg, "version 3");
	/* And back to a good one. */
	put_le32(b + 8, 2);
	reseal(b);
	CHECK_RC(h_write_file(path, b, MANIFEST_SIZE), 0);
	CHECK_RC(kyro__manifest_read(msg, dir, &m), 0);
	CHECK(same(&m, &sample));
}

TEST(write_into_a_missing_directory_fails_cleanly)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_path(h_tmpdir(), "nope");
	CHECK_RC(kyro__manifest_write(msg, dir, &sample), ENOENT);
	CHECK_STR_HAS(msg, "nope");
	CHECK(!h_exists(dir));
}
