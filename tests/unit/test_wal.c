/*
 * test_wal.c - WAL segments: the writer's bytes, kyro__wal_scan's verdicts
 * (clean, torn, corrupt) and the header checks.
 *
 * Records are also built by an encoder written here from the format in
 * wal.c's header comment, so the writer is checked against the documented
 * layout and the scanner can be fed records no writer would produce.
 * Every scan runs over a heap copy of exactly the scanned length, so that
 * AddressSanitizer (make check-asan) catches any read past the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "harness.h"
#include "internal.h"
#include "fsio.h"
#include "wal.h"

/* ---- an independent encoder ---- */

static uint64_t enc_rec(unsigned char *p, int type, uint32_t len, uint64_t seq,
			uint64_t key, const void *val, uint64_t seg)
{
	uint64_t size = WAL_REC_HDR + align8(len);
	memset(p, 0, size);
	put_le32(p + 8, len);
	p[12] = (unsigned char)type;
	put_le64(p + 16, seq);
	put_le64(p + 24, key);
	if (len)
		memcpy(p + WAL_REC_HDR, val, len);
	put_le64(p, XXH3_64bits_withSeed(p + 8, WAL_REC_HDR - 8 + len, seg));
	return size;
}

/* Value bytes of a record, derived from its key and sequence number. */
static void val_fill(void *buf, size_t len, uint64_t key, uint64_t seq)
{
	h_fill_seeded(buf, len, key * 1000003 + seq);
}

/* Scan the first LEN bytes of BUF through an exact-size heap copy. */
static void scan_prefix(const unsigned char *buf, size_t len, uint64_t seg,
			uint64_t next_seq, struct wal_scan *r)
{
	unsigned char *copy = malloc(len ? len : 1);
	if (!copy)
		abort();
	memcpy(copy, buf, len);
	kyro__wal_scan(copy, len, seg, WAL_HDR, next_seq, r);
	free(copy);
}

/* A segment file of DIR read into memory. */
static unsigned char *read_seg(const char *dir, uint64_t seg, size_t *len)
{
	char path[PATH_MAX];
	unsigned char *buf;
	snprintf(path, sizeof path, "%s/wal-%016llx.log", dir,
		 (unsigned long long)seg);
	if (h_read_file(path, &buf, len))
		return NULL;
	return buf;
}

static const char *seg_path(const char *dir, uint64_t seg)
{
	static char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/wal-%016llx.log", dir,
		 (unsigned long long)seg);
	return path;
}

static int open_writer(char *msg, struct wal_writer *w, const char *dir,
		       uint64_t seg, uint64_t first_seq)
{
	int rc = kyro__wal_create(msg, dir, seg, first_seq);
	if (rc)
		return rc;
	return kyro__wal_writer_open(msg, w, dir, seg, WAL_HDR, first_seq, 0);
}

/* A record of a batch spec: type, key, value length. */
struct op {
	int type;
	uint64_t key;
	uint32_t len;
};

/* Where each batch ends, and the records before it. */
struct layout {
	uint64_t end[16];
	uint64_t records[16]; /* put/delete records up to and incl. batch i */
	uint64_t rec_off[64];
	size_t nrec, nbatch;
};

/* Write BATCHES (each a list ending with type 0) through the writer and
 * record the layout as the writer reports it. */
static int write_batches(char *msg, struct wal_writer *w,
			 const struct op *const *batches, size_t nb,
			 struct layout *lay)
{
	uint64_t recs = 0;
	memset(lay, 0, sizeof *lay);
	for (size_t b = 0; b < nb; b++) {
		for (const struct op *o = batches[b]; o->type; o++) {
			unsigned char *val = malloc(o->len ? o->len : 1);
			uint64_t seq, want = w->next_seq;
			if (!val)
				return ENOMEM;
			val_fill(val, o->len, o->key, want);
			lay->rec_off[lay->nrec++] = w->pos;
			int rc = kyro__wal_append(msg, w, o->type, o->key, val,
						  o->len, &seq);
			free(val);
			if (rc)
				return rc;
			CHECK_EQ_U64(seq, want);
			recs++;
		}
		lay->rec_off[lay->nrec++] = w->pos; /* the COMMIT */
		int rc = kyro__wal_commit(msg, w);
		if (rc)
			return rc;
		kyro__wal_mark_committed(w); /* as the store does once synced */
		CHECK_EQ_U64(w->committed, w->pos);
		lay->end[b] = w->committed;
		lay->records[b] = recs;
		lay->nbatch++;
	}
	return 0;
}

static const struct op b1[] = {
	{WAL_PUT, 1, 5}, {WAL_PUT, 2, 0}, {WAL_DEL, 3, 0}, {0, 0, 0}};
static const struct op b2[] = {{WAL_PUT, 4, 13}, {0, 0, 0}};
static const struct op b3[] = {{WAL_DEL, 1, 0}, {WAL_PUT, 5, 64}, {0, 0, 0}};
static const struct op b4[] = {{WAL_PUT, 6, 7}, {0, 0, 0}};
static const struct op *const four[] = {b1, b2, b3, b4};

TEST(empty_segment_is_clean)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	uint64_t first = 0;
	size_t len;
	struct wal_scan r;
	REQUIRE(CHECK_RC(kyro__wal_create(msg, dir, 3, 41), 0));
	unsigned char *buf = read_seg(dir, 3, &len);
	REQUIRE(buf);
	CHECK_EQ_U64(len, WAL_HDR);
	CHECK_RC(kyro__wal_header_check(msg, buf, len, "x", 3, &first), 0);
	CHECK_EQ_U64(first, 41);
	scan_prefix(buf, len, 3, 41, &r);
	CHECK_RC(r.status, 0);
	CHECK_EQ_U64(r.end, WAL_HDR);
	CHECK_EQ_U64(r.last_seq, 40);
	CHECK_EQ_U64(r.records, 0);
	CHECK_EQ_U64(r.batches, 0);
	free(buf);
}

TEST(header_layout_is_as_documented)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	size_t len;
	REQUIRE(CHECK_RC(kyro__wal_create(msg, dir, 0x1122334455667788ull, 77),
			 0));
	unsigned char *b = read_seg(dir, 0x1122334455667788ull, &len);
	REQUIRE(b && len == WAL_HDR);
	CHECK_MEM(b, "KYROWALS", 8);
	CHECK_EQ_U64(get_le32(b + 8), 2);
	CHECK_EQ_U64(get_le32(b + 12), 48);
	CHECK_EQ_U64(get_le64(b + 16), 0x1122334455667788ull);
	CHECK_EQ_U64(get_le64(b + 24), 77);
	CHECK_EQ_U64(get_le64(b + 32), 0);
	CHECK_EQ_U64(get_le64(b + 40), XXH3_64bits(b, 40));
	unsigned char enc[WAL_HDR];
	kyro__wal_header_encode(enc, 0x1122334455667788ull, 77);
	CHECK_MEM(enc, b, WAL_HDR);
	free(b);
}

TEST(writer_bytes_match_the_documented_format)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct wal_writer w;
	struct layout lay;
	size_t len;
	REQUIRE(CHECK_RC(open_writer(msg, &w, dir, 9, 1), 0));
	CHECK_RC(write_batches(msg, &w, four, 4, &lay), 0);
	kyro__wal_writer_close(&w);
	unsigned char *got = read_seg(dir, 9, &len);
	REQUIRE(got);
	/* The same records from the independent encoder. */
	unsigned char *want = calloc(1, 4096);
	REQUIRE(want);
	uint64_t off = WAL_HDR, seq = 1;
	kyro__wal_header_encode(want, 9, 1);
	for (size_t b = 0; b < 4; b++) {
		uint64_t n = 0;
		for (const struct op *o = four[b]; o->type; o++, n++) {
			unsigned char val[64];
			val_fill(val, o->len, o->key, seq);
			off += enc_rec(want + off, o->type, o->len, seq++,
				       o->key, val, 9);
		}
		off += enc_rec(want + off, WAL_COMMIT, 0, seq - 1, n, NULL, 9);
		CHECK_EQ_U64(lay.end[b], off);
	}
	CHECK_EQ_U64(len, off);
	if (len == off)
		CHECK_MEM(got, want, len);
	/* Spot checks of the first record against the byte table. */
	CHECK_EQ_U64(get_le32(got + 48 + 8), 5);
	CHECK_EQ_U64(got[48 + 12], WAL_PUT);
	CHECK_EQ_U64(get_le64(got + 48 + 16), 1);
	CHECK_EQ_U64(get_le64(got + 48 + 24), 1);
	CHECK_EQ_U64(lay.rec_off[1], 48 + 32 + 8);
	free(got);
	free(want);
}

TEST(clean_scan_counts_are_exact)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct wal_writer w;
	struct layout lay;
	struct wal_scan r;
	size_t len;
	REQUIRE(CHECK_RC(open_writer(msg, &w, dir, 2, 100), 0));
	CHECK_RC(write_batches(msg, &w, four, 4, &lay), 0);
	CHECK_EQ_U64(w.next_seq, 107);
	kyro__wal_writer_close(&w);
	unsigned char *buf = read_seg(dir, 2, &len);
	REQUIRE(buf);
	scan_prefix(buf, len, 2, 100, &r);
	CHECK_RC(r.status, 0);
	CHECK_EQ_U64(r.end, len);
	CHECK_EQ_U64(r.end, lay.end[3]);
	CHECK_EQ_U64(r.last_seq, 106);
	CHECK_EQ_U64(r.records, 7);
	CHECK_EQ_U64(r.batches, 4);
	/* Decode every record in order. */
	uint64_t off = WAL_HDR, seq = 100;
	size_t ri = 0;
	for (size_t b = 0; b < 4; b++) {
		uint64_t n = 0;
		for (const struct op *o = four[b]; o->type; o++, n++) {
			struct wal_rec rec;
			unsigned char val[64];
			CHECK_EQ_U64(off, lay.rec_off[ri++]);
			off = wal_rec_at(buf, off, &rec);
			CHECK_EQ_U64(rec.type, o->type);
			CHECK_EQ_U64(rec.key, o->key);
			CHECK_EQ_U64(rec.len, o->len);
			CHECK_EQ_U64(rec.seq, seq);
			val_fill(val, o->len, o->key, seq);
			CHECK_MEM(rec.val, val, o->len);
			seq++;
		}
		struct wal_rec c;
		ri++;
		off = wal_rec_at(buf, off, &c);
		CHECK_EQ_U64(c.type, WAL_COMMIT);
		CHECK_EQ_U64(c.key, n);
		CHECK_EQ_U64(c.seq, seq - 1);
		CHECK_EQ_U64(off, lay.end[b]);
	}
	/* A scan may start at any batch boundary. */
	kyro__wal_scan(buf, len, 2, lay.end[1], 104, &r);
	CHECK_RC(r.status, 0);
	CHECK_EQ_U64(r.records, 3);
	CHECK_EQ_U64(r.batches, 2);
	CHECK_EQ_U64(r.last_seq, 106);
	free(buf);
}

TEST(batch_without_commit_is_a_torn_tail)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct wal_writer w;
	struct layout lay;
	struct wal_scan r;
	size_t len;
	unsigned char v[10] = "0123456789";
	REQUIRE(CHECK_RC(open_writer(msg, &w, dir, 1, 1), 0));
	CHECK_RC(write_batches(msg, &w, four, 2, &lay), 0);
	CHECK_RC(kyro__wal_append(msg, &w, WAL_PUT, 50, v, 10, NULL), 0);
	CHECK_RC(kyro__wal_append(msg, &w, WAL_DEL, 51, NULL, 0, NULL), 0);
	CHECK_RC(kyro__wal_flush(msg, &w), 0);
	CHECK_EQ_U64(w.committed, lay.end[1]);
	kyro__wal_writer_close(&w);
	unsigned char *buf = read_seg(dir, 1, &len);
	REQUIRE(buf);
	CHECK_EQ_U64(len, lay.end[1] + 32 + 16 + 32);
	scan_prefix(buf, len, 1, 1, &r);
	CHECK_RC(r.status, KYRO_ETORN);
	CHECK_EQ_U64(r.end, lay.end[1]);
	CHECK_EQ_U64(r.bad_off, lay.end[1]);
	CHECK_EQ_U64(r.last_seq, 4);
	CHECK_EQ_U64(r.records, 4);
	CHECK_EQ_U64(r.batches, 2);
	CHECK_STR_HAS(r.why, "torn");
	free(buf);
}

TEST(truncation_at_every_offset_is_clean_or_torn)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct wal_writer w;
	struct layout lay;
	size_t len;
	REQUIRE(CHECK_RC(open_writer(msg, &w, dir, 1, 1), 0));
	CHECK_RC(write_batches(msg, &w, four, 4, &lay), 0);
	kyro__wal_writer_close(&w);
	unsigned char *buf = read_seg(dir, 1, &len);
	REQUIRE(buf && len == lay.end[3]);
	for (size_t cut = 0; cut < WAL_HDR; cut++) {
		uint64_t first;
		unsigned char *copy = malloc(cut + 1);
		memcpy(copy, buf, cut);
		CHECK_RC(kyro__wal_header_check(msg, copy, cut, "x", 1, &first),
			 KYRO_ECORRUPT);
		free(copy);
	}
	for (size_t cut = WAL_HDR; cut <= len; cut++) {
		struct wal_scan r;
		uint64_t end = WAL_HDR, recs = 0, batches = 0;
		for (size_t b = 0; b < 4; b++)
			if (lay.end[b] <= cut) {
				end = lay.end[b];
				recs = lay.records[b];
				batches = b + 1;
			}
		scan_prefix(buf, cut, 1, 1, &r);
		if (!CHECK_RC(r.status, cut == end ? 0 : KYRO_ETORN))
			h_note("cut at %zu: %s", cut, r.why);
		CHECK_EQ_U64(r.end, end);
		CHECK_EQ_U64(r.records, recs);
		CHECK_EQ_U64(r.batches, batches);
		CHECK_EQ_U64(r.last_seq, recs);
	}
	free(buf);
}

/*
 * A value may hold any bytes, including a well-formed record of the same
 * segment (a WAL file stored as a value, say, as a backup of another store
 * does).  A crash that cuts such a value is still a torn tail: the log
 * must not call it corruption because bytes inside the cut-off value look
 * like a later record.
 */
TEST(truncation_inside_a_value_holding_a_record_is_torn)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct wal_writer w;
	size_t len;
	unsigned char val[256];
	unsigned char inner_val[8] = "payload";
	memset(val, 0, sizeof val);
	/* Value starts at file offset 80, so val + 8 is 8-aligned in the
	 * file; the embedded record carries a seq far ahead. */
	enc_rec(val + 8, WAL_PUT, 8, 1000, 9, inner_val, 1);
	REQUIRE(CHECK_RC(open_writer(msg, &w, dir, 1, 1), 0));
	CHECK_RC(kyro__wal_append(msg, &w, WAL_PUT, 1, val, sizeof val, NULL),
		 0);
	CHECK_RC(kyro__wal_commit(msg, &w), 0);
	kyro__wal_mark_committed(&w);
	kyro__wal_writer_close(&w);
	unsigned char *buf = read_seg(dir, 1, &len);
	REQUIRE(buf);
	uint64_t wrong = 0, first_wrong = 0;
	for (size_t cut = WAL_HDR + 1; cut < len; cut++) {
		struct wal_scan r;
		scan_prefix(buf, cut, 1, 1, &r);
		if (r.status != KYRO_ETORN || r.end != WAL_HDR) {
			if (!wrong++)
				first_wrong = cut;
		}
	}
	if (!CHECK_EQ_U64(wrong, 0))
		h_note("%llu cuts (the first at byte %llu) are called corrupt",
		       (unsigned long long)wrong,
		       (unsigned long long)first_wrong);
	free(buf);
}

/* Flip every bit of every byte of the record at REC_OFF (header, value
 * and the padding after it, which is held to zero) and check the scan's
 * verdict. */
static void flip_record(const unsigned char *buf, size_t len, uint64_t rec_off,
			int want, uint64_t want_end, uint64_t want_bad,
			uint64_t want_batches)
{
	unsigned char *copy = malloc(len);
	uint64_t vlen = get_le32(buf + rec_off + 8);
	memcpy(copy, buf, len);
	for (uint64_t i = rec_off; i < rec_off + WAL_REC_HDR + align8(vlen);
	     i++) {
		for (int bit = 0; bit < 8; bit++) {
			struct wal_scan r;
			copy[i] ^= (unsigned char)(1u << bit);
			kyro__wal_scan(copy, len, 1, WAL_HDR, 1, &r);
			copy[i] ^= (unsigned char)(1u << bit);
			int ok = CHECK_RC(r.status, want);
			ok &= CHECK_EQ_U64(r.end, want_end);
			ok &= CHECK_EQ_U64(r.bad_off, want_bad);
			ok &= CHECK_EQ_U64(r.batches, want_batches);
			if (!ok) {
				h_note("flipped bit %d of byte %llu: %s", bit,
				       (unsigned long long)i, r.why);
				free(copy);
				return;
			}
		}
	}
	free(copy);
}

static const struct op f1[] = {{WAL_PUT, 10, 20}, {WAL_PUT, 11, 3}, {0, 0, 0}};
static const struct op f2[] = {{WAL_PUT, 12, 9}, {0, 0, 0}};
static const struct op f3[] = {{WAL_PUT, 13, 4}, {0, 0, 0}};
static const struct op *const three[] = {f1, f2, f3};

TEST(bit_flip_before_valid_records_is_corruption_at_that_record)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct wal_writer w;
	struct layout lay;
	size_t len;
	REQUIRE(CHECK_RC(open_writer(msg, &w, dir, 1, 1), 0));
	CHECK_RC(write_batches(msg, &w, three, 3, &lay), 0);
	kyro__wal_writer_close(&w);
	unsigned char *buf = read_seg(dir, 1, &len);
	REQUIRE(buf);
	/* rec_off: f1 put, f1 put, f1 commit, f2 put, f2 commit, f3 put,
	 * f3 commit. */
	REQUIRE(lay.nrec == 7);
	CHECK_EQ_U64(lay.rec_off[0], WAL_HDR);
	flip_record(buf, len, lay.rec_off[0], KYRO_ECORRUPT, WAL_HDR,
		    lay.rec_off[0], 0);
	flip_record(buf, len, lay.rec_off[1], KYRO_ECORRUPT, WAL_HDR,
		    lay.rec_off[1], 0);
	flip_record(buf, len, lay.rec_off[2], KYRO_ECORRUPT, WAL_HDR,
		    lay.rec_off[2], 0);
	flip_record(buf, len, lay.rec_off[3], KYRO_ECORRUPT, lay.end[0],
		    lay.rec_off[3], 1);
	flip_record(buf, len, lay.rec_off[4], KYRO_ECORRUPT, lay.end[0],
		    lay.rec_off[4], 1);
	/* The last batch's put is followed by its (valid) commit. */
	flip_record(buf, len, lay.rec_off[5], KYRO_ECORRUPT, lay.end[1],
		    lay.rec_off[5], 2);
	struct wal_scan r;
	buf[lay.rec_off[3] + 30] ^= 0x10;
	kyro__wal_scan(buf, len, 1, WAL_HDR, 1, &r);
	CHECK_RC(r.status, KYRO_ECORRUPT);
	CHECK_EQ_U64(r.bad_off, lay.rec_off[3]);
	CHECK_EQ_U64(r.records, 2);
	CHECK_EQ_U64(r.last_seq, 2);
	CHECK_STR_HAS(r.why, "checksum");
	free(buf);
}

TEST(bit_flip_in_the_last_record_is_a_torn_tail)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct wal_writer w;
	struct layout lay;
	size_t len;
	REQUIRE(CHECK_RC(open_writer(msg, &w, dir, 1, 1), 0));
	CHECK_RC(write_batches(msg, &w, three, 3, &lay), 0);
	kyro__wal_writer_close(&w);
	unsigned char *buf = read_seg(dir, 1, &len);
	REQUIRE(buf && lay.nrec == 7);
	flip_record(buf, len, lay.rec_off[6], KYRO_ETORN, lay.end[1],
		    lay.end[1], 2);
	free(buf);
}

/* A hand-built segment of seg 1: header plus records. */
struct craft {
	unsigned char buf[4096];
	uint64_t len;
};

static void craft_init(struct craft *c)
{
	memset(c, 0, sizeof *c);
	kyro__wal_header_encode(c->buf, 1, 1);
	c->len = WAL_HDR;
}

static uint64_t craft_add(struct craft *c, int type, uint32_t len,
			  uint64_t seq, uint64_t key)
{
	unsigned char val[64];
	uint64_t at = c->len;
	val_fill(val, len, key, seq);
	c->len += enc_rec(c->buf + c->len, type, len, seq, key, val, 1);
	return at;
}

static void craft_scan(const struct craft *c, uint64_t next_seq,
		       struct wal_scan *r)
{
	scan_prefix(c->buf, c->len, 1, next_seq, r);
}

TEST(wrong_sequence_numbers_are_corruption)
{
	struct craft c;
	struct wal_scan r;
	uint64_t bad;

	craft_init(&c);
	craft_add(&c, WAL_PUT, 3, 1, 1);
	bad = craft_add(&c, WAL_PUT, 3, 3, 2);
	craft_add(&c, WAL_COMMIT, 0, 3, 2);
	craft_scan(&c, 1, &r);
	CHECK_RC(r.status, KYRO_ECORRUPT);
	CHECK_EQ_U64(r.bad_off, bad);
	CHECK_EQ_U64(r.end, WAL_HDR);
	CHECK_STR_HAS(r.why, "sequence number 3, expected 2");

	/* A repeated sequence number. */
	craft_init(&c);
	craft_add(&c, WAL_PUT, 3, 1, 1);
	uint64_t end1 = craft_add(&c, WAL_COMMIT, 0, 1, 1) + 32;
	bad = craft_add(&c, WAL_DEL, 0, 1, 2);
	craft_add(&c, WAL_COMMIT, 0, 1, 1);
	craft_scan(&c, 1, &r);
	CHECK_RC(r.status, KYRO_ECORRUPT);
	CHECK_EQ_U64(r.bad_off, bad);
	CHECK_EQ_U64(r.end, end1);
	CHECK_EQ_U64(r.batches, 1);

	/* The first record must carry the sequence number asked for. */
	craft_init(&c);
	craft_add(&c, WAL_PUT, 3, 1, 1);
	craft_add(&c, WAL_COMMIT, 0, 1, 1);
	craft_scan(&c, 5, &r);
	CHECK_RC(r.status, KYRO_ECORRUPT);
	CHECK_EQ_U64(r.bad_off, WAL_HDR);
	CHECK_EQ_U64(r.last_seq, 4);
	craft_scan(&c, 1, &r);
	CHECK_RC(r.status, 0);
	CHECK_EQ_U64(r.last_seq, 1);
}

TEST(commit_that_does_not_match_its_batch_is_corruption)
{
	struct craft c;
	struct wal_scan r;
	uint64_t bad;

	/* Wrong count. */
	craft_init(&c);
	craft_add(&c, WAL_PUT, 1, 1, 1);
	craft_add(&c, WAL_PUT, 1, 2, 2);
	bad = craft_add(&c, WAL_COMMIT, 0, 2, 3);
	craft_scan(&c, 1, &r);
	CHECK_RC(r.status, KYRO_ECORRUPT);
	CHECK_EQ_U64(r.bad_off, bad);
	CHECK_EQ_U64(r.end, WAL_HDR);
	CHECK_EQ_U64(r.batches, 0);
	CHECK_STR_HAS(r.why, "commit");

	/* Count too small. */
	craft_init(&c);
	craft_add(&c, WAL_PUT, 1, 1, 1);
	craft_add(&c, WAL_PUT, 1, 2, 2);
	bad = craft_add(&c, WAL_COMMIT, 0, 2, 1);
	craft_scan(&c, 1, &r);
	CHECK_RC(r.status, KYRO_ECORRUPT);
	CHECK_EQ_U64(r.bad_off, bad);

	/* Wrong sequence number on the commit. */
	craft_init(&c);
	craft_add(&c, WAL_PUT, 1, 1, 1);
	bad = craft_add(&c, WAL_COMMIT, 0, 2, 1);
	craft_scan(&c, 1, &r);
	CHECK_RC(r.status, KYRO_ECORRUPT);
	CHECK_EQ_U64(r.bad_off, bad);

	/* A commit of nothing. */
	craft_init(&c);
	bad = craft_add(&c, WAL_COMMIT, 0, 0, 0);
	craft_scan(&c, 1, &r);
	CHECK_RC(r.status, KYRO_ECORRUPT);
	CHECK_EQ_U64(r.bad_off, bad);

	/* Two commits in a row. */
	craft_init(&c);
	craft_add(&c, WAL_PUT, 1, 1, 1);
	craft_add(&c, WAL_COMMIT, 0, 1, 1);
	bad = craft_add(&c, WAL_COMMIT, 0, 1, 1);
	craft_scan(&c, 1, &r);
	CHECK_RC(r.status, KYRO_ECORRUPT);
	CHECK_EQ_U64(r.bad_off, bad);
	CHECK_EQ_U64(r.batches, 1);
}

TEST(records_breaking_the_framing_rules_are_refused)
{
	struct craft c;
	struct wal_scan r;
	unsigned char val[8] = "abcdefg";
	/* Each is a well-checksummed record that the rules forbid; as the
	 * last record it is a torn tail, before a valid record corruption. */
	for (int kind = 0; kind < 4; kind++) {
		for (int last = 0; last < 2; last++) {
			craft_init(&c);
			craft_add(&c, WAL_PUT, 1, 1, 1);
			uint64_t end = craft_add(&c, WAL_COMMIT, 0, 1, 1) + 32;
			unsigned char *p = c.buf + c.len;
			uint64_t bad = c.len;
			switch (kind) {
			case 0: /* a delete with a value */
				c.len += enc_rec(p, WAL_DEL, 7, 2, 2, val, 1);
				break;
			case 1: /* an unknown type */
				c.len += enc_rec(p, 4, 0, 2, 2, NULL, 1);
				break;
			case 2: /* reserved bytes set */
				c.len += enc_rec(p, WAL_PUT, 7, 2, 2, val, 1);
				p[14] = 1;
				put_le64(p, XXH3_64bits_withSeed(p + 8, 24 + 7,
								 1));
				break;
			case 3: /* checksummed with another segment's seed */
				c.len += enc_rec(p, WAL_PUT, 7, 2, 2, val, 2);
				break;
			}
			if (!last) {
				craft_add(&c, WAL_PUT, 1, 3, 3);
				craft_add(&c, WAL_COMMIT, 0, 3, 1);
			}
			craft_scan(&c, 1, &r);
			CHECK_RC(r.status, last ? KYRO_ETORN : KYRO_ECORRUPT);
			CHECK_EQ_U64(r.bad_off, last ? end : bad);
			CHECK_EQ_U64(r.end, end);
		}
	}
	/* A length over the limit is refused without reading that far. */
	craft_init(&c);
	craft_add(&c, WAL_PUT, 1, 1, 1);
	craft_add(&c, WAL_COMMIT, 0, 1, 1);
	uint64_t at = c.len;
	c.len += enc_rec(c.buf + c.len, WAL_PUT, 0, 2, 2, NULL, 1);
	put_le32(c.buf + at + 8, (uint32_t)KYRO_MAX_VALUE + 1);
	craft_scan(&c, 1, &r);
	CHECK_RC(r.status, KYRO_ETORN);
	CHECK_EQ_U64(r.end, at);
}

TEST(large_values_round_trip)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct wal_writer w;
	struct wal_scan r;
	size_t len;
	REQUIRE(CHECK_RC(open_writer(msg, &w, dir, 1, 1), 0));
	/* Around the buffer size: a record of exactly the buffer's size
	 * goes through the buffer, one byte more streams. */
	const size_t cap = w.bufcap;
	const struct {
		uint64_t key;
		size_t len;
	} v[] = {
		{1, 3 * ((size_t)1 << 20) + 3},
		{2, 5},
		{3, KYRO_MAX_VALUE},
		{4, cap - WAL_REC_HDR},
		{5, cap - WAL_REC_HDR + 1},
		{6, 0},
		{7, cap - WAL_REC_HDR - 1},
	};
	const size_t nv = sizeof v / sizeof v[0];
	unsigned char *val = malloc(KYRO_MAX_VALUE);
	REQUIRE(val);
	uint64_t off = WAL_HDR;
	for (size_t i = 0; i < nv; i++) {
		uint64_t seq;
		val_fill(val, v[i].len, v[i].key, i + 1);
		CHECK_RC(kyro__wal_append(msg, &w, WAL_PUT, v[i].key, val,
					  v[i].len, &seq),
			 0);
		CHECK_EQ_U64(seq, i + 1);
		off += WAL_REC_HDR + align8(v[i].len);
		CHECK_EQ_U64(w.pos, off);
		if (i == 1 || i == 4) {
			CHECK_RC(kyro__wal_commit(msg, &w), 0);
			kyro__wal_mark_committed(&w);
			off += WAL_REC_HDR;
		}
	}
	CHECK_RC(kyro__wal_commit(msg, &w), 0);
	kyro__wal_mark_committed(&w);
	off += WAL_REC_HDR;
	CHECK_RC(kyro__wal_sync(msg, &w), 0);
	CHECK_EQ_U64(w.committed, off);
	kyro__wal_writer_close(&w);
	unsigned char *buf = read_seg(dir, 1, &len);
	REQUIRE(buf);
	CHECK_EQ_U64(len, off);
	kyro__wal_scan(buf, len, 1, WAL_HDR, 1, &r);
	CHECK_RC(r.status, 0);
	CHECK_EQ_U64(r.end, len);
	CHECK_EQ_U64(r.records, nv);
	CHECK_EQ_U64(r.batches, 3);
	CHECK_EQ_U64(r.last_seq, nv);
	uint64_t at = WAL_HDR;
	for (size_t i = 0; i < nv; i++) {
		struct wal_rec rec;
		at = wal_rec_at(buf, at, &rec);
		CHECK_EQ_U64(rec.key, v[i].key);
		CHECK_EQ_U64(rec.len, v[i].len);
		val_fill(val, v[i].len, v[i].key, i + 1);
		if (rec.len == v[i].len)
			CHECK_MEM(rec.val, val, v[i].len);
		/* Padding is zero. */
		for (size_t p = v[i].len; p < align8(v[i].len); p++)
			CHECK_EQ_U64(rec.val[p], 0);
		if (i == 1 || i == 4)
			at = wal_rec_at(buf, at, &rec);
	}
	free(buf);
	free(val);
}

TEST(header_checks)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	uint64_t first = 0;
	size_t len;
	REQUIRE(CHECK_RC(kyro__wal_create(msg, dir, 5, 77), 0));
	unsigned char *b = read_seg(dir, 5, &len);
	REQUIRE(b && len == WAL_HDR);
	CHECK_RC(kyro__wal_header_check(msg, b, len, "/d/wal", 5, &first), 0);
	CHECK_EQ_U64(first, 77);

	/* Bad magic. */
	b[0] ^= 1;
	CHECK_RC(kyro__wal_header_check(msg, b, len, "/d/wal", 5, &first),
		 KYRO_ECORRUPT);
	CHECK_STR_HAS(msg, "'/d/wal'");
	CHECK_STR_HAS(msg, "magic");
	b[0] ^= 1;

	/* A newer version, checksum intact or not: refused as a version. */
	put_le32(b + 8, 3);
	CHECK_RC(kyro__wal_header_check(msg, b, len, "/d/wal", 5, &first),
		 KYRO_EVERSION);
	CHECK_STR_HAS(msg, "version 3");
	CHECK_STR_HAS(msg, "'/d/wal'");
	put_le64(b + 40, XXH3_64bits(b, 40));
	CHECK_RC(kyro__wal_header_check(msg, b, len, "/d/wal", 5, &first),
		 KYRO_EVERSION);
	put_le32(b + 8, 1); /* the previous version is still read */
	put_le64(b + 40, XXH3_64bits(b, 40));
	CHECK_RC(kyro__wal_header_check(msg, b, len, "/d/wal", 5, &first), 0);

	/* Another segment's header. */
	CHECK_RC(kyro__wal_header_check(msg, b, len, "/d/wal", 6, &first),
		 KYRO_ECORRUPT);
	CHECK_STR_HAS(msg, "segment id 5, expected 6");

	/* Header size field, with the checksum made to match. */
	put_le32(b + 12, 56);
	put_le64(b + 40, XXH3_64bits(b, 40));
	CHECK_RC(kyro__wal_header_check(msg, b, len, "/d/wal", 5, &first),
		 KYRO_ECORRUPT);
	put_le32(b + 12, 48);
	put_le64(b + 40, XXH3_64bits(b, 40));

	/* Every single-byte change is refused. */
	uint64_t accepted = 0;
	for (size_t i = 0; i < WAL_HDR; i++)
		for (unsigned x = 1; x < 256; x++) {
			b[i] ^= (unsigned char)x;
			if (kyro__wal_header_check(msg, b, len, "/d/wal", 5,
						   &first) == 0)
				accepted++;
			b[i] ^= (unsigned char)x;
		}
	CHECK_EQ_U64(accepted, 0);
	free(b);
}

TEST(a_commit_not_yet_marked_is_rolled_back_whole)
{
	char msg[KMSG_MAX];
	const char *dir = h_tmpdir();
	struct wal_writer w;
	uint64_t size;
	CHECK_RC(kyro__wal_create(msg, dir, 1, 1), 0);
	CHECK_RC(kyro__wal_writer_open(msg, &w, dir, 1, WAL_HDR, 1, 1), 0);
	CHECK_RC(kyro__wal_append(msg, &w, WAL_PUT, 7, "kept", 4, NULL), 0);
	CHECK_RC(kyro__wal_commit(msg, &w), 0);
	kyro__wal_mark_committed(&w);
	uint64_t kept = w.committed;
	/* The second batch reaches the file, COMMIT included, but its
	 * fsync "fails": the store rolls it back without marking it. */
	CHECK_RC(kyro__wal_append(msg, &w, WAL_PUT, 8, "lost", 4, NULL), 0);
	CHECK_RC(kyro__wal_commit(msg, &w), 0);
	CHECK_RC(kyro__wal_rollback(msg, &w), 0);
	CHECK_RC(kyro__fs_size(msg, w.fd, w.path, &size), 0);
	CHECK_EQ_U64(size, kept);
	CHECK_EQ_U64(w.next_seq, 2);
	kyro__wal_writer_close(&w);
}

TEST(rollback_truncates_to_the_committed_end)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct wal_writer w;
	struct layout lay;
	struct wal_scan r;
	size_t len;
	REQUIRE(CHECK_RC(open_writer(msg, &w, dir, 1, 1), 0));
	CHECK_RC(write_batches(msg, &w, four, 1, &lay), 0);
	/* A batch big enough to reach the file before its commit. */
	size_t big = 2 * ((size_t)1 << 20) + 5;
	unsigned char *val = calloc(1, big);
	REQUIRE(val);
	CHECK_RC(kyro__wal_append(msg, &w, WAL_PUT, 70, "x", 1, NULL), 0);
	CHECK_RC(kyro__wal_append(msg, &w, WAL_PUT, 71, val, big, NULL), 0);
	CHECK_RC(kyro__wal_append(msg, &w, WAL_PUT, 72, "y", 1, NULL), 0);
	CHECK(h_file_size(seg_path(dir, 1)) > lay.end[0]);
	CHECK_EQ_U64(w.next_seq, 7);
	CHECK_RC(kyro__wal_rollback(msg, &w), 0);
	CHECK_EQ_U64(h_file_size(seg_path(dir, 1)), lay.end[0]);
	CHECK_EQ_U64(w.next_seq, 4);
	CHECK_EQ_U64(w.pos, lay.end[0]);
	CHECK_EQ_U64(w.batch_count, 0);
	/* Writing continues where the last commit ended. */
	uint64_t seq;
	CHECK_RC(kyro__wal_append(msg, &w, WAL_PUT, 80, "z", 1, &seq), 0);
	CHECK_EQ_U64(seq, 4);
	CHECK_RC(kyro__wal_commit(msg, &w), 0);
	kyro__wal_mark_committed(&w);
	kyro__wal_writer_close(&w);
	unsigned char *buf = read_seg(dir, 1, &len);
	REQUIRE(buf);
	CHECK_EQ_U64(len, lay.end[0] + 40 + 32);
	kyro__wal_scan(buf, len, 1, WAL_HDR, 1, &r);
	CHECK_RC(r.status, 0);
	CHECK_EQ_U64(r.records, 4);
	CHECK_EQ_U64(r.batches, 2);
	CHECK_EQ_U64(r.last_seq, 4);
	struct wal_rec rec;
	wal_rec_at(buf, lay.end[0], &rec);
	CHECK_EQ_U64(rec.key, 80);
	free(buf);
	free(val);
}

TEST(commit_of_an_empty_batch_writes_nothing)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct wal_writer w;
	REQUIRE(CHECK_RC(open_writer(msg, &w, dir, 1, 1), 0));
	CHECK_RC(kyro__wal_commit(msg, &w), 0);
	kyro__wal_mark_committed(&w);
	CHECK_RC(kyro__wal_sync(msg, &w), 0);
	CHECK_EQ_U64(w.committed, WAL_HDR);
	CHECK_EQ_U64(w.next_seq, 1);
	kyro__wal_writer_close(&w);
	CHECK_EQ_U64(h_file_size(seg_path(dir, 1)), WAL_HDR);
}

TEST(writer_open_truncates_beyond_the_committed_end)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct wal_writer w;
	struct layout lay;
	REQUIRE(CHECK_RC(open_writer(msg, &w, dir, 1, 1), 0));
	CHECK_RC(write_batches(msg, &w, four, 2, &lay), 0);
	kyro__wal_writer_close(&w);
	const char *path = seg_path(dir, 1);
	CHECK_RC(h_append_file(path, "garbage-garbage-garbage", 23), 0);
	CHECK_EQ_U64(h_file_size(path), lay.end[1] + 23);
	for (int durable = 0; durable < 2; durable++) {
		CHECK_RC(kyro__wal_writer_open(msg, &w, dir, 1, lay.end[1], 5,
					       durable),
			 0);
		CHECK_EQ_U64(h_file_size(path), lay.end[1]);
		CHECK_EQ_U64(w.committed, lay.end[1]);
		CHECK_EQ_U64(w.pos, lay.end[1]);
		if (!durable) {
			/* The next record lands at the truncation point. */
			CHECK_RC(kyro__wal_append(msg, &w, WAL_DEL, 3, NULL, 0,
						  NULL),
				 0);
			CHECK_RC(kyro__wal_commit(msg, &w), 0);
			kyro__wal_mark_committed(&w);
			CHECK_EQ_U64(h_file_size(path), lay.end[1] + 64);
			kyro__wal_writer_close(&w);
			CHECK_RC(h_append_file(path, "junk", 4), 0);
			lay.end[1] += 64;
		} else {
			kyro__wal_writer_close(&w);
		}
	}
	size_t len;
	unsigned char *buf = read_seg(dir, 1, &len);
	REQUIRE(buf);
	struct wal_scan r;
	kyro__wal_scan(buf, len, 1, WAL_HDR, 1, &r);
	CHECK_RC(r.status, 0);
	CHECK_EQ_U64(r.records, 5);
	CHECK_EQ_U64(r.batches, 3);
	free(buf);

	/* A file shorter than what was committed is corruption. */
	CHECK_RC(kyro__wal_writer_open(msg, &w, dir, 1, len + 8, 6, 0),
		 KYRO_ECORRUPT);
	CHECK_STR_HAS(msg, path);
	CHECK_EQ_U64(h_file_size(path), len);
	/* A missing segment. */
	CHECK_RC(kyro__wal_writer_open(msg, &w, dir, 2, WAL_HDR, 1, 0), ENOENT);
	CHECK_STR_HAS(msg, "wal-0000000000000002.log");
}

TEST(create_replaces_a_leftover_segment)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	const char *path = seg_path(dir, 4);
	CHECK_RC(h_write_file(path, "leftover of a crash", 19), 0);
	CHECK_RC(kyro__wal_create(msg, dir, 4, 9), 0);
	CHECK_EQ_U64(h_file_size(path), WAL_HDR);
	size_t len;
	uint64_t first = 0;
	unsigned char *b = read_seg(dir, 4, &len);
	REQUIRE(b);
	CHECK_RC(kyro__wal_header_check(msg, b, len, path, 4, &first), 0);
	CHECK_EQ_U64(first, 9);
	free(b);
	CHECK_RC(kyro__wal_create(msg, h_path(dir, "missing"), 1, 1), ENOENT);
	CHECK_STR_HAS(msg, "missing");
}

/* ---- the read scan against the mapped one ---- */

/* A segment of about 1.5 MiB whose records straddle the read scan's
 * buffer boundaries: small values, a value larger than the buffer, and a
 * batch of thousands of records. */
static size_t big_segment(unsigned char *buf, size_t cap)
{
	static const uint32_t lens[] = {0, 1, 7, 8, 100, 4000, 70000};
	size_t len = WAL_HDR;
	uint64_t seq = 1, key = 1;
	unsigned char *val = malloc(300000);
	if (!val)
		abort();
	kyro__wal_header_encode(buf, 1, 1);
	for (int b = 0; len + 400000 < cap; b++) {
		/* batch 3 holds the big value, batch 5 is long */
		int n = b == 5 ? 3000 : 1 + b % 4;
		uint64_t first = seq;
		for (int i = 0; i < n; i++, seq++, key++) {
			uint32_t vlen = b == 3 && i == 0 ? 300000
					: lens[(b + i) % (b == 5 ? 5 : 7)];
			int del = (b + i) % 11 == 10;
			val_fill(val, vlen, key, seq);
			len += enc_rec(buf + len, del ? WAL_DEL : WAL_PUT,
				       del ? 0 : vlen, seq, key, val, 1);
		}
		len += enc_rec(buf + len, WAL_COMMIT, 0, seq - 1,
			       seq - first, NULL, 1);
	}
	free(val);
	return len;
}

/* Both scans of the first LEN bytes of PATH (holding BUF) must agree. */
static int scans_agree(const char *path, const unsigned char *buf, size_t len)
{
	char msg[KMSG_MAX] = "";
	struct wal_scan a, b;
	int fd;
	scan_prefix(buf, len, 1, 1, &a);
	if (kyro__fs_open(msg, path, O_RDONLY, 0, &fd))
		return 0;
	int rc = kyro__wal_scan_fd(msg, fd, path, len, 1, WAL_HDR, 1, NULL, NULL,
				   &b);
	kyro__fs_close(fd);
	return rc == 0 && a.status == b.status && a.end == b.end &&
	       a.last_seq == b.last_seq && a.records == b.records &&
	       a.batches == b.batches && a.bad_off == b.bad_off &&
	       !strcmp(a.why, b.why);
}

TEST(the_read_scan_agrees_with_the_mapped_scan)
{
	const char *path = h_path(h_tmpdir(), "seg");
	size_t cap = (size_t)3 << 19, len, tried = 0, bad = 0;
	unsigned char *buf = calloc(1, cap);
	REQUIRE(buf);
	len = big_segment(buf, cap);
	REQUIRE(len > 1200000);
	REQUIRE(h_write_file(path, buf, len) == 0);
	CHECK(scans_agree(path, buf, len));
	struct wal_scan clean;
	scan_prefix(buf, len, 1, 1, &clean);
	CHECK_RC(clean.status, 0);
	CHECK(clean.records > 3000);
	/* Cuts and flips near every buffer boundary, and all over. */
	int fd = open(path, O_RDWR);
	REQUIRE(fd >= 0);
	for (size_t at = 40; at < len; at += at % 262144 < 262000 ? 4093 : 13) {
		unsigned char was = buf[at], now = was ^ 0x5a;
		buf[at] = now;
		REQUIRE(pwrite(fd, &now, 1, (off_t)at) == 1);
		bad += !scans_agree(path, buf, len);
		bad += !scans_agree(path, buf, at + 1);
		buf[at] = was;
		REQUIRE(pwrite(fd, &was, 1, (off_t)at) == 1);
		tried++;
	}
	close(fd);
	h_note("%zu bytes, %zu positions", len, tried);
	CHECK(tried > 250);
	CHECK_EQ_U64(bad, 0);
	free(buf);
}
