/*
 * test_snapshot.c - snapshot files: the writer, kyro__snap_open's O(1) checks,
 * lookups through kyro__lower_bound_binary and snap_value, kyro__snap_verify,
 * and what each kind of damage leads to.
 *
 * Lookups are also run over heap copies of the files (struct snap filled
 * by hand, each array its own exact-size allocation), so that under
 * AddressSanitizer (make check-asan) a read one byte outside a value or an
 * array is an error, not a quiet read of the next page of a mapping.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "harness.h"
#include "internal.h"
#include "snapshot.h"

#define MIB ((size_t)1 << 20)

/* ---- building snapshots ---- */

struct kv {
	uint64_t *keys; /* sorted, unique */
	size_t *lens;
	size_t n;
};

static void kv_free(struct kv *s)
{
	free(s->keys);
	free(s->lens);
	s->keys = NULL;
	s->lens = NULL;
	s->n = 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* N random unique keys (plus EXTRA ones), random value lengths up to
 * MAXLEN, and BIG values of 2 MiB spread among them. */
static int kv_make(struct kv *s, size_t n, const uint64_t *extra,
		   size_t nextra, size_t maxlen, size_t big)
{
	size_t cap = n + nextra;
	s->keys = malloc(cap * sizeof *s->keys);
	s->lens = malloc(cap * sizeof *s->lens);
	if (!s->keys || !s->lens)
		return ENOMEM;
	for (size_t i = 0; i < n; i++)
		s->keys[i] = h_rand();
	for (size_t i = 0; i < nextra; i++)
		s->keys[n + i] = extra[i];
	qsort(s->keys, cap, sizeof *s->keys, cmp_u64);
	size_t u = 0;
	for (size_t i = 0; i < cap; i++)
		if (u == 0 || s->keys[u - 1] != s->keys[i])
			s->keys[u++] = s->keys[i];
	s->n = u;
	for (size_t i = 0; i < u; i++)
		s->lens[i] = (size_t)h_below(maxlen + 1);
	for (size_t b = 0; b < big && u; b++)
		s->lens[(b * 7919 + 13) % u] = 2 * MIB;
	return 0;
}

static void value_of(uint64_t key, unsigned char *buf, size_t len)
{
	h_fill_seeded(buf, len, key);
}

static int snap_write(const char *dir, uint64_t gen, const struct kv *s,
		      uint64_t last_seq, uint64_t *bytes)
{
	char msg[KMSG_MAX];
	struct snap_writer w;
	size_t maxlen = 1;
	for (size_t i = 0; i < s->n; i++)
		if (s->lens[i] > maxlen)
			maxlen = s->lens[i];
	unsigned char *val = malloc(maxlen);
	if (!val)
		return ENOMEM;
	int rc = kyro__snap_writer_open(msg, &w, dir, gen, s->n);
	if (rc)
		goto out;
	for (size_t i = 0; i < s->n && !rc; i++) {
		value_of(s->keys[i], val, s->lens[i]);
		rc = kyro__snap_writer_add(msg, &w, s->keys[i], val,
					   s->lens[i]);
	}
	if (!rc)
		rc = kyro__snap_writer_finish(msg, &w, last_seq, bytes);
	if (rc)
		h_note("writing snapshot %llu: %s", (unsigned long long)gen,
		       msg);
	kyro__snap_writer_abort(&w);
out:
	free(val);
	return rc;
}

static const char *bin_path(const char *dir, uint64_t gen)
{
	static char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/snap-%016llx.bin", dir,
		 (unsigned long long)gen);
	return p;
}

static const char *data_path(const char *dir, uint64_t gen)
{
	static char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/snap-%016llx.data", dir,
		 (unsigned long long)gen);
	return p;
}

static uint64_t offs_at(uint64_t n) { return 128 + ((8 * n + 63) & ~63ull); }

static uint64_t nblocks(uint64_t len) { return (len + 4095) / 4096; }

/* Block B of the LEN bytes at P is as the table at TAB says. */
static int block_ok(const unsigned char *p, uint64_t len,
		    const unsigned char *tab, uint64_t b)
{
	uint64_t n = len - 4096 * b < 4096 ? len - 4096 * b : 4096;
	return get_le64(tab + 8 * b) == XXH3_64bits_withSeed(p + 4096 * b, n, b);
}

/* Make the .bin image's header checksum and block table match its bytes
 * (the layout must be consistent), as a writer would have. */
static void reseal_bin(unsigned char *bin)
{
	uint64_t tab = get_le64(bin + 64);
	put_le64(bin + 120, XXH3_64bits(bin, 120));
	for (uint64_t b = 0; b < nblocks(tab); b++) {
		uint64_t n = tab - 4096 * b < 4096 ? tab - 4096 * b : 4096;
		put_le64(bin + tab + 8 * b,
			 XXH3_64bits_withSeed(bin + 4096 * b, n, b));
	}
}

/* ---- what kyro__snap_verify reports ---- */

struct reports {
	int count;
	char file[PATH_MAX];
	uint64_t off;
	char text[256];
};

static void collect(void *arg, const char *file, uint64_t off,
		    const char *text)
{
	struct reports *r = arg;
	if (r->count++ == 0) {
		snprintf(r->file, sizeof r->file, "%s", file ? file : "(null)");
		r->off = off;
		snprintf(r->text, sizeof r->text, "%s", text);
	}
}

/* ---- lookups ---- */

/* The reference: the first index with keys[i] >= key, by plain search. */
static uint64_t ref_lower_bound(const uint64_t *k, uint64_t n, uint64_t key)
{
	uint64_t lo = 0, hi = n;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (k[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Look every key of KV up in S and compare the bytes; probe absent keys.
 * Returns the number of mismatches (each also a failed check). */
static void check_lookups(const struct snap *s, const struct kv *kv)
{
	unsigned char *want = malloc(2 * MIB);
	uint64_t bad = 0;
	REQUIRE(want);
	CHECK_EQ_U64(s->n, kv->n);
	for (size_t i = 0; i < kv->n && s->n == kv->n; i++) {
		uint64_t key = kv->keys[i];
		uint64_t at = kyro__lower_bound_binary(s->keys, s->n, key);
		const void *v;
		size_t len;
		if (at != i) {
			bad++;
			continue;
		}
		if (snap_value(s, at, &v, &len) != 0 || len != kv->lens[i]) {
			bad++;
			continue;
		}
		value_of(key, want, len);
		if (len && memcmp(v, want, len) != 0)
			bad++;
		/* Neighbours that are absent land on the right index. */
		if (key != 0 && (i == 0 || kv->keys[i - 1] != key - 1) &&
		    kyro__lower_bound_binary(s->keys, s->n, key - 1) != i)
			bad++;
		if (key != UINT64_MAX &&
		    (i + 1 == kv->n || kv->keys[i + 1] != key + 1) &&
		    kyro__lower_bound_binary(s->keys, s->n, key + 1) != i + 1)
			bad++;
	}
	CHECK_EQ_U64(bad, 0);
	/* Random probes, nearly all absent. */
	bad = 0;
	for (int i = 0; i < 20000; i++) {
		uint64_t key = h_rand();
		if (kyro__lower_bound_binary(s->keys, s->n, key) !=
		    ref_lower_bound(kv->keys, kv->n, key))
			bad++;
	}
	CHECK_EQ_U64(bad, 0);
	free(want);
}

TEST(empty_snapshot)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct kv kv = {0};
	struct snap s;
	struct reports rep = {0};
	uint64_t bytes = 0;
	REQUIRE(CHECK_RC(snap_write(dir, 1, &kv, 0, &bytes), 0));
	/* Each file: its header (and the one offset), one block checksum. */
	CHECK_EQ_U64(h_file_size(bin_path(dir, 1)), 136 + 8);
	CHECK_EQ_U64(h_file_size(data_path(dir, 1)), 32 + 8);
	CHECK_EQ_U64(bytes, 184);
	CHECK_EQ_U64(h_count_suffix(dir, ".tmp"), 0);
	REQUIRE(CHECK_RC(kyro__snap_open(msg, &s, dir, 1, 0), 0));
	CHECK_EQ_U64(s.n, 0);
	CHECK_EQ_U64(s.gen, 1);
	CHECK_EQ_U64(s.data_size, 32);
	CHECK_EQ_U64(kyro__lower_bound_binary(s.keys, s.n, 0), 0);
	CHECK_EQ_U64(kyro__lower_bound_binary(s.keys, s.n, UINT64_MAX), 0);
	CHECK_RC(kyro__snap_verify(&s, collect, &rep), 0);
	CHECK_EQ_U64(rep.count, 0);
	kyro__snap_close(&s);
	CHECK_RC(kyro__snap_open(msg, &s, dir, 1, 1), KYRO_ECORRUPT);
	CHECK_STR_HAS(msg, bin_path(dir, 1));
}

TEST(one_key_snapshots)
{
	const uint64_t keys[] = {0, 1, 12345, UINT64_MAX - 1, UINT64_MAX};
	for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
		char msg[KMSG_MAX] = "";
		const char *dir = h_tmpdir();
		uint64_t key = keys[k];
		size_t len = 3;
		struct kv kv = {.keys = &key, .lens = &len, .n = 1};
		struct snap s;
		struct reports rep = {0};
		uint64_t bytes;
		REQUIRE(CHECK_RC(snap_write(dir, 7, &kv, 99, &bytes), 0));
		REQUIRE(CHECK_RC(kyro__snap_open(msg, &s, dir, 7, 1), 0));
		CHECK_EQ_U64(s.last_seq, 99);
		CHECK_EQ_U64(s.data_size, 35);
		CHECK_EQ_U64(bytes, 35 + 8 + 128 + 64 + 16 + 8);
		check_lookups(&s, &kv);
		CHECK_EQ_U64(kyro__lower_bound_binary(s.keys, 1, 0), 0);
		CHECK_EQ_U64(kyro__lower_bound_binary(s.keys, 1, UINT64_MAX),
			     key < UINT64_MAX);
		CHECK_RC(kyro__snap_verify(&s, collect, &rep), 0);
		kyro__snap_close(&s);
	}
}

TEST(file_layout_is_as_documented)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct kv kv;
	uint64_t bytes;
	unsigned char *bin, *data;
	size_t blen, dlen;
	REQUIRE(CHECK_RC(kv_make(&kv, 13, NULL, 0, 9, 0), 0));
	REQUIRE(CHECK_RC(snap_write(dir, 0x42, &kv, 1234, &bytes), 0));
	REQUIRE(CHECK_RC(h_read_file(bin_path(dir, 0x42), &bin, &blen), 0));
	REQUIRE(CHECK_RC(h_read_file(data_path(dir, 0x42), &data, &dlen), 0));
	uint64_t n = kv.n, total = 0;
	for (size_t i = 0; i < n; i++)
		total += kv.lens[i];
	uint64_t tab = offs_at(n) + 8 * (n + 1), dend = 32 + total;
	CHECK_EQ_U64(blen, tab + 8 * nblocks(tab));
	CHECK_EQ_U64(dlen, dend + 8 * nblocks(dend));
	CHECK_EQ_U64(bytes, blen + dlen);
	CHECK_MEM(bin, "KYROSNAP", 8);
	CHECK_EQ_U64(get_le32(bin + 8), 2);
	CHECK_EQ_U64(get_le32(bin + 12), 128);
	CHECK_EQ_U64(get_le64(bin + 16), 0x42);
	CHECK_EQ_U64(get_le64(bin + 24), n);
	CHECK_EQ_U64(get_le64(bin + 32), 1234);
	CHECK_EQ_U64(get_le64(bin + 40), dend);
	CHECK_EQ_U64(get_le64(bin + 48), 128);
	CHECK_EQ_U64(get_le64(bin + 56), offs_at(n));
	CHECK_EQ_U64(get_le64(bin + 64), tab);
	CHECK_EQ_U64(get_le64(bin + 72), nblocks(tab));
	CHECK_EQ_U64(get_le64(bin + 80), nblocks(dend));
	for (int i = 88; i < 120; i++)
		CHECK_EQ_U64(bin[i], 0);
	CHECK_EQ_U64(get_le64(bin + 120), XXH3_64bits(bin, 120));
	for (uint64_t b = 0; b < nblocks(tab); b++)
		CHECK(block_ok(bin, tab, bin + tab, b));
	for (uint64_t b = 0; b < nblocks(dend); b++)
		CHECK(block_ok(data, dend, data + dend, b));
	uint64_t off = 32;
	for (size_t i = 0; i < n; i++) {
		CHECK_EQ_U64(get_le64(bin + 128 + 8 * i), kv.keys[i]);
		CHECK_EQ_U64(get_le64(bin + offs_at(n) + 8 * i), off);
		off += kv.lens[i];
	}
	CHECK_EQ_U64(get_le64(bin + offs_at(n) + 8 * n), dend);
	for (uint64_t i = 128 + 8 * n; i < offs_at(n); i++)
		CHECK_EQ_U64(bin[i], 0); /* padding */
	CHECK_MEM(data, "KYRODATA", 8);
	CHECK_EQ_U64(get_le32(data + 8), 2);
	CHECK_EQ_U64(get_le32(data + 12), 32);
	CHECK_EQ_U64(get_le64(data + 16), 0x42);
	CHECK_EQ_U64(get_le64(data + 24), XXH3_64bits(data, 24));
	struct snap s;
	REQUIRE(CHECK_RC(kyro__snap_open(msg, &s, dir, 0x42, n), 0));
	CHECK_EQ_U64((uintptr_t)s.keys % 64, 0);
	CHECK_EQ_U64((uintptr_t)s.offs % 64, 0);
	kyro__snap_close(&s);
	free(bin);
	free(data);
	kv_free(&kv);
}

TEST(hundred_thousand_keys_with_large_values)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	const uint64_t ends[] = {0, UINT64_MAX};
	struct kv with, without;
	struct snap s;
	struct reports rep = {0};
	uint64_t bytes;
	REQUIRE(CHECK_RC(kv_make(&with, 100000, ends, 2, 100, 3), 0));
	REQUIRE(CHECK_RC(kv_make(&without, 100000, NULL, 0, 100, 2), 0));
	REQUIRE(with.keys[0] == 0 && with.keys[with.n - 1] == UINT64_MAX);
	REQUIRE(without.keys[0] != 0 && without.keys[without.n - 1] != UINT64_MAX);

	REQUIRE(CHECK_RC(snap_write(dir, 1, &with, 5000, &bytes), 0));
	REQUIRE(CHECK_RC(kyro__snap_open(msg, &s, dir, 1, with.n), 0));
	uint64_t total = 32;
	for (size_t i = 0; i < with.n; i++)
		total += with.lens[i];
	CHECK_EQ_U64(s.data_size, total);
	CHECK(total > 6 * MIB);
	CHECK_EQ_U64(s.last_seq, 5000);
	check_lookups(&s, &with);
	CHECK_EQ_U64(kyro__lower_bound_binary(s.keys, s.n, 0), 0);
	CHECK_EQ_U64(kyro__lower_bound_binary(s.keys, s.n, UINT64_MAX),
		     s.n - 1);
	CHECK_RC(kyro__snap_verify(&s, collect, &rep), 0);
	CHECK_EQ_U64(rep.count, 0);
	kyro__snap_close(&s);

	REQUIRE(CHECK_RC(snap_write(dir, 2, &without, 6000, &bytes), 0));
	REQUIRE(CHECK_RC(kyro__snap_open(msg, &s, dir, 2, without.n), 0));
	check_lookups(&s, &without);
	CHECK_EQ_U64(kyro__lower_bound_binary(s.keys, s.n, 0), 0);
	CHECK(s.keys[0] != 0);
	CHECK_EQ_U64(kyro__lower_bound_binary(s.keys, s.n, UINT64_MAX), s.n);
	CHECK_RC(kyro__snap_verify(&s, collect, &rep), 0);
	CHECK_EQ_U64(rep.count, 0);
	kyro__snap_close(&s);
	kv_free(&with);
	kv_free(&without);
}

TEST(lower_bound_matches_a_plain_search)
{
	uint64_t k[80];
	uint64_t bad = 0;
	for (uint64_t n = 0; n <= 80; n++) {
		for (int round = 0; round < 20; round++) {
			/* Small keys, so that probes hit and miss. */
			for (uint64_t i = 0; i < n; i++)
				k[i] = h_below(200);
			if (round == 0)
				for (uint64_t i = 0; i < n; i++)
					k[i] = UINT64_MAX - 2 * (n - i);
			qsort(k, n, sizeof *k, cmp_u64);
			uint64_t u = 0;
			for (uint64_t i = 0; i < n; i++)
				if (u == 0 || k[u - 1] != k[i])
					k[u++] = k[i];
			for (uint64_t key = 0; key < 202; key++)
				bad += kyro__lower_bound_binary(k, u, key) !=
				       ref_lower_bound(k, u, key);
			const uint64_t edge[] = {UINT64_MAX, UINT64_MAX - 1,
						 UINT64_MAX - 2, 1ull << 63};
			for (int e = 0; e < 4; e++)
				bad += kyro__lower_bound_binary(k, u,
								edge[e]) !=
				       ref_lower_bound(k, u, edge[e]);
		}
	}
	CHECK_EQ_U64(bad, 0);
	const uint64_t three[] = {0, 5, UINT64_MAX};
	CHECK_EQ_U64(kyro__lower_bound_binary(three, 3, 0), 0);
	CHECK_EQ_U64(kyro__lower_bound_binary(three, 3, 1), 1);
	CHECK_EQ_U64(kyro__lower_bound_binary(three, 3, 5), 1);
	CHECK_EQ_U64(kyro__lower_bound_binary(three, 3, 6), 2);
	CHECK_EQ_U64(kyro__lower_bound_binary(three, 3, UINT64_MAX), 2);
	CHECK_EQ_U64(kyro__lower_bound_binary(three, 2, UINT64_MAX), 2);
}

/* ---- damage ---- */

/* A small snapshot (gen 1) in a fresh directory, and its files' bytes. */
struct small {
	const char *dir;
	struct kv kv;
	unsigned char *bin, *data;
	size_t blen, dlen;
};

static int small_make(struct small *sm, size_t n)
{
	uint64_t bytes;
	memset(sm, 0, sizeof *sm);
	sm->dir = h_tmpdir();
	int rc = kv_make(&sm->kv, n, NULL, 0, 20, 0);
	if (!rc)
		rc = snap_write(sm->dir, 1, &sm->kv, 77, &bytes);
	if (!rc)
		rc = h_read_file(bin_path(sm->dir, 1), &sm->bin, &sm->blen);
	if (!rc)
		rc = h_read_file(data_path(sm->dir, 1), &sm->data, &sm->dlen);
	return rc;
}

static void small_free(struct small *sm)
{
	free(sm->bin);
	free(sm->data);
	kv_free(&sm->kv);
}

/* Put the pristine files back. */
static void small_restore(const struct small *sm)
{
	h_write_file(bin_path(sm->dir, 1), sm->bin, sm->blen);
	h_write_file(data_path(sm->dir, 1), sm->data, sm->dlen);
}

/* Open and verify: 0 when all is well, 1 when open refused (naming
 * WANT_FILE and with an error code a file gets), 2 when verify found
 * damage, -1 when the damage went unnoticed or the message was wrong. */
static int judge(const struct small *sm, const char *want_file)
{
	char msg[KMSG_MAX] = "";
	struct snap s;
	int rc = kyro__snap_open(msg, &s, sm->dir, 1, sm->kv.n);
	if (rc) {
		if ((rc != KYRO_ECORRUPT && rc != KYRO_EVERSION) ||
		    !strstr(msg, want_file)) {
			h_note("open: %d: %s", rc, msg);
			return -1;
		}
		return 1;
	}
	struct reports rep = {0};
	rc = kyro__snap_verify(&s, collect, &rep);
	kyro__snap_close(&s);
	if (rc == KYRO_EDAMAGED && rep.count > 0 && !strcmp(rep.file, want_file))
		return 2;
	if (rc == 0 && rep.count == 0)
		return 0;
	h_note("verify: %d, %d reports, first '%s' at %llu: %s", rc, rep.count,
	       rep.file, (unsigned long long)rep.off, rep.text);
	return -1;
}

TEST(every_damaged_byte_of_the_index_is_noticed)
{
	struct small sm;
	/* Enough keys for three blocks: the first holds the header and
	 * keys only, which open does not read. */
	REQUIRE(CHECK_RC(small_make(&sm, 700), 0));
	const char *path = bin_path(sm.dir, 1);
	uint64_t missed = 0, refused = 0, flagged = 0;
	REQUIRE(nblocks(sm.blen) >= 3);
	CHECK_EQ_U64(judge(&sm, path), 0);
	for (uint64_t i = 0; i < sm.blen; i++) {
		/* Every byte counts, padding included: it is in a block. */
		for (int x = 0; x < 2; x++) {
			sm.bin[i] ^= x ? 0x80 : 0x01;
			h_write_file(path, sm.bin, sm.blen);
			sm.bin[i] ^= x ? 0x80 : 0x01;
			int j = judge(&sm, path);
			if (j <= 0 && !missed++)
				h_note("byte %llu ^ 0x%02x went unnoticed",
				       (unsigned long long)i, x ? 0x80 : 0x01);
			refused += j == 1;
			flagged += j == 2;
		}
	}
	small_restore(&sm);
	CHECK_EQ_U64(missed, 0);
	/* The header and the blocks of the first and last offsets are
	 * refused at open; the rest is found by verify. */
	CHECK(refused >= 2 * 128);
	CHECK(flagged >= 2 * (4096 - 128));
	small_free(&sm);
}

TEST(every_damaged_byte_of_the_payloads_is_noticed)
{
	struct small sm;
	REQUIRE(CHECK_RC(small_make(&sm, 50), 0));
	const char *path = data_path(sm.dir, 1);
	uint64_t missed = 0, refused = 0, flagged = 0;
	for (uint64_t i = 0; i < sm.dlen; i++) {
		sm.data[i] ^= 0x20;
		h_write_file(path, sm.data, sm.dlen);
		sm.data[i] ^= 0x20;
		int j = judge(&sm, path);
		if (j <= 0 && !missed++)
			h_note("byte %llu went unnoticed", (unsigned long long)i);
		refused += j == 1;
		flagged += j == 2;
	}
	small_restore(&sm);
	CHECK_EQ_U64(missed, 0);
	CHECK_EQ_U64(refused, 32);
	CHECK_EQ_U64(flagged, sm.dlen - 32);
	small_free(&sm);
}

/* Flip byte OFF of PATH in place, under a mapping of it. */
static void flip_in_place(const char *path, uint64_t off)
{
	unsigned char c;
	int fd = open(path, O_RDWR);
	REQUIRE(fd >= 0);
	REQUIRE(pread(fd, &c, 1, (off_t)off) == 1);
	c ^= 0x10;
	REQUIRE(pwrite(fd, &c, 1, (off_t)off) == 1);
	close(fd);
}

static int verified(const struct snap *s, enum snap_file f, uint64_t b)
{
	if (snap_marked(s, f, b))
		return 1;
	for (unsigned i = 0; !s->ok[f] && i < s->nfew[f]; i++)
		if (s->few[f][i] == b)
			return 1;
	return 0;
}

TEST(verified_blocks_are_listed_then_kept_in_a_bitmap)
{
	struct small sm;
	char msg[KMSG_MAX] = "";
	struct snap s;
	/* 64 blocks of keys, more than the list holds. */
	REQUIRE(CHECK_RC(small_make(&sm, 64 * 512), 0));
	REQUIRE(CHECK_RC(kyro__snap_open(msg, &s, sm.dir, 1, sm.kv.n), 0));
	/* Open checked the blocks of the first and last offsets: listed,
	 * no bitmap made. */
	CHECK(s.ok[SNAP_BIN] == NULL);
	CHECK_EQ_U64(s.nfew[SNAP_BIN], 2);
	/* Damage a block no one verified: found while listing... */
	const char *path = bin_path(sm.dir, 1);
	flip_in_place(path, 3 * 4096 + 100);
	CHECK_RC(kyro__snap_check_block(msg, &s, SNAP_BIN, 3), KYRO_ECORRUPT);
	CHECK(!verified(&s, SNAP_BIN, 3));
	uint64_t b = 4;
	for (; s.ok[SNAP_BIN] == NULL && b < 64; b++) {
		CHECK_RC(kyro__snap_check_block(msg, &s, SNAP_BIN, b), 0);
		CHECK(verified(&s, SNAP_BIN, b));
	}
	/* ...the list overflowed into a bitmap holding all it listed... */
	REQUIRE(s.ok[SNAP_BIN] != NULL);
	CHECK_EQ_U64(b, 4 + SNAP_FEW - 2 + 1);
	for (uint64_t i = 4; i < b; i++)
		CHECK(snap_marked(&s, SNAP_BIN, i));
	CHECK(snap_marked(&s, SNAP_BIN, offs_at(sm.kv.n) / 4096));
	CHECK(snap_marked(&s, SNAP_BIN, (offs_at(sm.kv.n) + 8 * sm.kv.n) / 4096));
	CHECK(!snap_marked(&s, SNAP_BIN, 3));
	/* ...and found after it, as before. */
	flip_in_place(path, 40 * 4096 + 7);
	CHECK_RC(kyro__snap_check_block(msg, &s, SNAP_BIN, 40), KYRO_ECORRUPT);
	CHECK(!snap_marked(&s, SNAP_BIN, 40));
	CHECK_RC(kyro__snap_check_block(msg, &s, SNAP_BIN, 41), 0);
	CHECK(snap_marked(&s, SNAP_BIN, 41));
	kyro__snap_close(&s);
	small_restore(&sm);
	small_free(&sm);
}

/* A young handle reads the checksum table with pread, an older one from
 * the mapping: both must read the entry of the block they check. */
TEST(checksum_entries_are_read_young_and_old)
{
	struct small sm;
	char msg[KMSG_MAX] = "";
	struct snap s;
	REQUIRE(CHECK_RC(small_make(&sm, 64 * 512), 0));
	const char *path = bin_path(sm.dir, 1);
	const uint64_t tab = offs_at(sm.kv.n) + 8 * (sm.kv.n + 1);
	/* Damage the entries of blocks 5 and 50 only: the blocks are whole. */
	flip_in_place(path, tab + 8 * 5 + 3);
	flip_in_place(path, tab + 8 * 50 + 6);
	REQUIRE(CHECK_RC(kyro__snap_open(msg, &s, sm.dir, 1, sm.kv.n), 0));
	CHECK(s.ok[SNAP_BIN] == NULL);
	CHECK_RC(kyro__snap_check_block(msg, &s, SNAP_BIN, 5), KYRO_ECORRUPT);
	CHECK(strstr(msg, "offset 20480") != NULL);
	/* The neighbours' entries are read, not theirs. */
	CHECK_RC(kyro__snap_check_block(msg, &s, SNAP_BIN, 4), 0);
	CHECK_RC(kyro__snap_check_block(msg, &s, SNAP_BIN, 6), 0);
	for (uint64_t b = 7; s.ok[SNAP_BIN] == NULL && b < 40; b++)
		CHECK_RC(kyro__snap_check_block(msg, &s, SNAP_BIN, b), 0);
	REQUIRE(s.ok[SNAP_BIN] != NULL);
	CHECK_RC(kyro__snap_check_block(msg, &s, SNAP_BIN, 50), KYRO_ECORRUPT);
	CHECK_RC(kyro__snap_check_block(msg, &s, SNAP_BIN, 49), 0);
	CHECK_RC(kyro__snap_check_block(msg, &s, SNAP_BIN, 51), 0);
	/* Its first and last keys are read the same way in both. */
	uint64_t first, last;
	CHECK_RC(kyro__snap_end_keys(msg, &s, &first, &last), 0);
	CHECK_EQ_U64(first, s.keys[0]);
	CHECK_EQ_U64(last, s.keys[s.n - 1]);
	kyro__snap_close(&s);
	REQUIRE(CHECK_RC(kyro__snap_open(msg, &s, sm.dir, 1, sm.kv.n), 0));
	CHECK_RC(kyro__snap_end_keys(msg, &s, &first, &last), 0);
	CHECK_EQ_U64(first, s.keys[0]);
	CHECK_EQ_U64(last, s.keys[s.n - 1]);
	CHECK(first < last);
	kyro__snap_close(&s);
	small_restore(&sm);
	small_free(&sm);
}

TEST(truncated_or_extended_files_are_refused)
{
	struct small sm;
	REQUIRE(CHECK_RC(small_make(&sm, 20), 0));
	const char *bpath = bin_path(sm.dir, 1), *dpath = data_path(sm.dir, 1);
	uint64_t bad = 0;
	for (size_t len = 0; len < sm.blen; len++) {
		h_write_file(bpath, sm.bin, len);
		bad += judge(&sm, bpath) != 1;
	}
	small_restore(&sm);
	for (size_t len = 0; len < sm.dlen; len++) {
		h_write_file(dpath, sm.data, len);
		bad += judge(&sm, dpath) != 1;
	}
	small_restore(&sm);
	CHECK_EQ_U64(bad, 0);
	const unsigned char zeros[64] = {0};
	CHECK_RC(h_append_file(bpath, zeros, 8), 0);
	CHECK_EQ_U64(judge(&sm, bpath), 1);
	small_restore(&sm);
	CHECK_RC(h_append_file(dpath, zeros, 1), 0);
	CHECK_EQ_U64(judge(&sm, dpath), 1);
	small_restore(&sm);
	CHECK_EQ_U64(judge(&sm, bpath), 0);
	small_free(&sm);
}

TEST(open_refuses_what_the_manifest_does_not_describe)
{
	char msg[KMSG_MAX] = "";
	struct small sm;
	struct snap s;
	REQUIRE(CHECK_RC(small_make(&sm, 20), 0));
	const uint64_t n = sm.kv.n;
	CHECK_RC(kyro__snap_open(msg, &s, sm.dir, 1, n + 1), KYRO_ECORRUPT);
	CHECK_STR_HAS(msg, bin_path(sm.dir, 1));
	CHECK_RC(kyro__snap_open(msg, &s, sm.dir, 1, n - 1), KYRO_ECORRUPT);
	CHECK_STR_HAS(msg, bin_path(sm.dir, 1));
	/* Generation 2 made of generation 1's files. */
	char from[PATH_MAX];
	snprintf(from, sizeof from, "%s", bin_path(sm.dir, 1));
	CHECK_RC(h_copy_file(from, bin_path(sm.dir, 2)), 0);
	snprintf(from, sizeof from, "%s", data_path(sm.dir, 1));
	CHECK_RC(h_copy_file(from, data_path(sm.dir, 2)), 0);
	CHECK_RC(kyro__snap_open(msg, &s, sm.dir, 2, n), KYRO_ECORRUPT);
	CHECK_STR_HAS(msg, bin_path(sm.dir, 2));
	CHECK_STR_HAS(msg, "generation 1");
	/* The index of one generation with the payloads of another. */
	struct kv other;
	uint64_t bytes;
	REQUIRE(CHECK_RC(kv_make(&other, 20, NULL, 0, 20, 0), 0));
	REQUIRE(CHECK_RC(snap_write(sm.dir, 3, &other, 1, &bytes), 0));
	CHECK_RC(h_copy_file(from, data_path(sm.dir, 3)), 0);
	CHECK_RC(kyro__snap_open(msg, &s, sm.dir, 3, other.n), KYRO_ECORRUPT);
	CHECK_STR_HAS(msg, data_path(sm.dir, 3));
	/* Missing files. */
	CHECK_RC(kyro__snap_open(msg, &s, sm.dir, 9, 0), ENOENT);
	CHECK_STR_HAS(msg, bin_path(sm.dir, 9));
	CHECK_RC(unlink(data_path(sm.dir, 1)), 0);
	CHECK_RC(kyro__snap_open(msg, &s, sm.dir, 1, n), ENOENT);
	CHECK_STR_HAS(msg, data_path(sm.dir, 1));
	/* A newer version of the format. */
	small_restore(&sm);
	unsigned char *b = malloc(sm.blen);
	REQUIRE(b);
	memcpy(b, sm.bin, sm.blen);
	put_le32(b + 8, 3);
	put_le64(b + 120, XXH3_64bits(b, 120));
	CHECK_RC(h_write_file(bin_path(sm.dir, 1), b, sm.blen), 0);
	CHECK_RC(kyro__snap_open(msg, &s, sm.dir, 1, n), KYRO_EVERSION);
	CHECK_STR_HAS(msg, "version 3");
	CHECK_STR_HAS(msg, bin_path(sm.dir, 1));
	free(b);
	kv_free(&other);
	small_free(&sm);
}

/* A snapshot from file bytes on the heap, each array in an allocation of
 * its own exact size, as kyro__snap_open would set it up. */
struct heap_snap {
	struct snap s;
	unsigned char *bin, *data;
	uint64_t *keys, *offs;
};

static void heap_reseal(struct heap_snap *h);

static int heap_snap(struct heap_snap *h, const unsigned char *bin,
		     size_t blen, const unsigned char *data, size_t dlen)
{
	memset(h, 0, sizeof *h);
	uint64_t n = get_le64(bin + 24);
	h->bin = malloc(blen);
	h->data = malloc(dlen);
	h->keys = malloc(8 * n + 1);
	h->offs = malloc(8 * (n + 1));
	if (!h->bin || !h->data || !h->keys || !h->offs)
		return ENOMEM;
	memcpy(h->bin, bin, blen);
	memcpy(h->data, data, dlen);
	memcpy(h->keys, bin + 128, 8 * n);
	memcpy(h->offs, bin + offs_at(n), 8 * (n + 1));
	h->s.gen = get_le64(bin + 16);
	h->s.n = n;
	h->s.last_seq = get_le64(bin + 32);
	h->s.data_size = get_le64(bin + 40);
	h->s.bin = h->bin;
	h->s.bin_len = blen;
	h->s.data = h->data;
	h->s.data_len = dlen;
	h->s.keys = h->keys;
	h->s.offs = h->offs;
	snprintf(h->s.bin_path, sizeof h->s.bin_path, "heap.bin");
	snprintf(h->s.data_path, sizeof h->s.data_path, "heap.data");
	/* Its arrays live apart from the file image, so no block table can
	 * cover them: it poses as version 1, whose array checksums
	 * heap_reseal() keeps right and which is verified whole. */
	h->s.version = 1;
	for (int f = 0; f < 2; f++) {
		uint64_t len = f ? dlen : blen;
		h->s.blocks[f] = nblocks(len);
		h->s.ok[f] = malloc(8 * (h->s.blocks[f] / 64 + 1));
		if (!h->s.ok[f])
			return ENOMEM;
		memset(h->s.ok[f], 0xff, 8 * (h->s.blocks[f] / 64 + 1));
	}
	heap_reseal(h);
	return 0;
}

static void heap_free(struct heap_snap *h)
{
	free(h->bin);
	free(h->data);
	free(h->keys);
	free(h->offs);
	free(h->s.ok[0]);
	free(h->s.ok[1]);
}

/* Make the header's array checksums match the (edited) arrays. */
static void heap_reseal(struct heap_snap *h)
{
	uint64_t n = h->s.n;
	put_le64(h->bin + 64, XXH3_64bits(h->keys, 8 * n));
	put_le64(h->bin + 72, XXH3_64bits(h->offs, 8 * (n + 1)));
	put_le64(h->bin + 80, XXH3_64bits(h->data + 32, h->s.data_size - 32));
	put_le64(h->bin + 120, XXH3_64bits(h->bin, 120));
}

/* Read every byte snap_value hands out; count the refusals. */
static uint64_t touch_all(const struct snap *s, uint64_t *sum)
{
	uint64_t refused = 0;
	for (uint64_t i = 0; i < s->n; i++) {
		const void *v;
		size_t len;
		if (snap_value(s, i, &v, &len)) {
			refused++;
			continue;
		}
		const unsigned char *p = v;
		for (size_t j = 0; j < len; j++)
			*sum += p[j];
	}
	return refused;
}

TEST(out_of_range_offsets_are_refused_without_reading)
{
	struct small sm;
	struct heap_snap h;
	REQUIRE(CHECK_RC(small_make(&sm, 40), 0));
	REQUIRE(CHECK_RC(heap_snap(&h, sm.bin, sm.blen, sm.data, sm.dlen), 0));
	uint64_t sum = 0, n = h.s.n, k = n / 2;
	struct reports rep = {0};
	CHECK_EQ_U64(touch_all(&h.s, &sum), 0);
	CHECK_RC(kyro__snap_verify(&h.s, collect, &rep), 0);
	check_lookups(&h.s, &sm.kv);

	const uint64_t orig = h.offs[k];
	const uint64_t bad[] = {sm.dlen + 1, sm.dlen + 4096, UINT64_MAX, 0, 31,
				h.offs[k + 1] + 1};
	for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
		h.offs[k] = bad[b];
		heap_reseal(&h);
		/* Entries k-1 and k use the bad offset (but an entry of
		 * length zero may still be in bounds on one side). */
		uint64_t refused = touch_all(&h.s, &sum);
		CHECK(refused >= 1 && refused <= 2);
		const void *v;
		size_t len;
		if (bad[b] > sm.dlen || bad[b] < 32) {
			CHECK_RC(snap_value(&h.s, k, &v, &len), KYRO_ECORRUPT);
			CHECK_RC(snap_value(&h.s, k - 1, &v, &len),
				 KYRO_ECORRUPT);
		}
		memset(&rep, 0, sizeof rep);
		CHECK_RC(kyro__snap_verify(&h.s, collect, &rep), KYRO_EDAMAGED);
		CHECK_EQ_U64(rep.count, 1);
		CHECK_STR_HAS(rep.text, "out of bounds");
		CHECK(rep.off == offs_at(n) + 8 * (k - 1) ||
		      rep.off == offs_at(n) + 8 * k);
	}
	h.offs[k] = orig;
	heap_reseal(&h);
	memset(&rep, 0, sizeof rep);
	CHECK_RC(kyro__snap_verify(&h.s, collect, &rep), 0);

	/* The same through files and kyro__snap_open: the first and last
	 * offsets are checked at open, the others at lookup. */
	unsigned char *b = malloc(sm.blen);
	REQUIRE(b);
	for (int which = 0; which < 3; which++) {
		char msg[KMSG_MAX] = "";
		struct snap s;
		uint64_t idx = which == 0 ? 0 : which == 1 ? n : k;
		memcpy(b, sm.bin, sm.blen);
		put_le64(b + offs_at(n) + 8 * idx, sm.dlen + 64);
		reseal_bin(b);
		CHECK_RC(h_write_file(bin_path(sm.dir, 1), b, sm.blen), 0);
		int rc = kyro__snap_open(msg, &s, sm.dir, 1, n);
		if (which < 2) {
			CHECK_RC(rc, KYRO_ECORRUPT);
			CHECK_STR_HAS(msg, bin_path(sm.dir, 1));
			continue;
		}
		REQUIRE(CHECK_RC(rc, 0));
		const void *v;
		size_t len;
		CHECK_RC(snap_value(&s, k, &v, &len), KYRO_ECORRUPT);
		CHECK_RC(snap_value(&s, k - 1, &v, &len), KYRO_ECORRUPT);
		CHECK_RC(snap_value(&s, k + 1, &v, &len), 0);
		memset(&rep, 0, sizeof rep);
		CHECK_RC(kyro__snap_verify(&s, collect, &rep), KYRO_EDAMAGED);
		CHECK_STR_HAS(rep.file, bin_path(sm.dir, 1));
		kyro__snap_close(&s);
	}
	free(b);
	heap_free(&h);
	small_free(&sm);
}

TEST(a_value_over_the_limit_is_refused)
{
	/* One key whose payload reference spans more than 16 MiB. */
	size_t dlen = 32 + KYRO_MAX_VALUE + 1;
	unsigned char *data = calloc(1, dlen);
	uint64_t keys[1] = {5}, offs[2] = {32, dlen};
	struct snap s;
	memset(&s, 0, sizeof s);
	REQUIRE(data);
	s.n = 1;
	s.keys = keys;
	s.offs = offs;
	s.data = data;
	s.data_size = s.data_len = dlen;
	const void *v;
	size_t len;
	CHECK_RC(snap_value(&s, 0, &v, &len), KYRO_ECORRUPT);
	offs[1] = dlen - 1;
	CHECK_RC(snap_value(&s, 0, &v, &len), 0);
	CHECK_EQ_U64(len, KYRO_MAX_VALUE);
	CHECK(v == data + 32);
	free(data);
}

TEST(keys_out_of_order_are_reported)
{
	struct small sm;
	struct heap_snap h;
	struct reports rep;
	REQUIRE(CHECK_RC(small_make(&sm, 30), 0));
	REQUIRE(CHECK_RC(heap_snap(&h, sm.bin, sm.blen, sm.data, sm.dlen), 0));
	const uint64_t k = 10;
	/* A swap, then a duplicate: both with checksums that match. */
	uint64_t t = h.keys[k];
	h.keys[k] = h.keys[k + 1];
	h.keys[k + 1] = t;
	heap_reseal(&h);
	memset(&rep, 0, sizeof rep);
	CHECK_RC(kyro__snap_verify(&h.s, collect, &rep), KYRO_EDAMAGED);
	CHECK_EQ_U64(rep.count, 1);
	CHECK_EQ_U64(rep.off, 128 + 8 * (k + 1));
	CHECK_STR_HAS(rep.text, "is not above");
	h.keys[k + 1] = h.keys[k];
	heap_reseal(&h);
	memset(&rep, 0, sizeof rep);
	CHECK_RC(kyro__snap_verify(&h.s, collect, &rep), KYRO_EDAMAGED);
	CHECK_EQ_U64(rep.off, 128 + 8 * (k + 1));
	heap_free(&h);
	small_free(&sm);
}

TEST(abort_removes_the_temporary_files)
{
	char msg[KMSG_MAX] = "";
	const char *dir = h_tmpdir();
	struct snap_writer w;
	REQUIRE(CHECK_RC(kyro__snap_writer_open(msg, &w, dir, 4, 0), 0));
	CHECK_RC(kyro__snap_writer_add(msg, &w, 1, "abc", 3), 0);
	CHECK_EQ_U64(h_count_suffix(dir, ".data.tmp"), 1);
	kyro__snap_writer_abort(&w);
	CHECK_EQ_U64(h_count_suffix(dir, ".tmp"), 0);
	CHECK_EQ_U64(h_count_suffix(dir, ".data"), 0);
	/* After finish, abort only frees. */
	uint64_t bytes;
	REQUIRE(CHECK_RC(kyro__snap_writer_open(msg, &w, dir, 4, 0), 0));
	CHECK_RC(kyro__snap_writer_add(msg, &w, 1, "abc", 3), 0);
	CHECK_RC(kyro__snap_writer_finish(msg, &w, 1, &bytes), 0);
	kyro__snap_writer_abort(&w);
	CHECK(h_exists(bin_path(dir, 4)));
	CHECK(h_exists(data_path(dir, 4)));
	CHECK_EQ_U64(h_count_suffix(dir, ".tmp"), 0);
	/* A directory that does not exist. */
	CHECK_RC(kyro__snap_writer_open(msg, &w, h_path(dir, "gone"), 1, 0),
		 ENOENT);
	CHECK_STR_HAS(msg, "gone");
}

TEST(keys_added_out_of_order_stop_the_process)
{
	const char *dir = h_tmpdir();
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		char msg[KMSG_MAX];
		struct snap_writer w;
		/* Not worth a core file or a sanitizer report. */
		signal(SIGABRT, SIG_DFL);
		if (kyro__snap_writer_open(msg, &w, dir, 1, 0) ||
		    kyro__snap_writer_add(msg, &w, 5, "a", 1))
			_exit(3);
		kyro__snap_writer_add(msg, &w, 5, "b", 1);
		_exit(0);
	}
	int st;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	CHECK(WIFSIGNALED(st));
	if (WIFSIGNALED(st))
		CHECK_EQ_U64(WTERMSIG(st), SIGABRT);
}

/* ---- a store over a damaged snapshot: right answer or KYRO_ECORRUPT ---- */

#define DKEYS 520

/* A store whose snapshot (generation 1, with a learned index) holds DKEYS
 * keys with gaps between them (enough for the key array to cross a block
 * boundary), short values and two long ones, one of which crosses a block
 * boundary of the .data file; nothing in the WAL after it. */
struct dstore {
	const char *dir;
	uint64_t keys[DKEYS];
	size_t lens[DKEYS];
	char bin[PATH_MAX], data[PATH_MAX];
	size_t blen, dlen;
};

static int dstore_make(struct dstore *d)
{
	static unsigned char val[1500];
	struct kyro_snapshot_stats st;
	struct kyro_rmi_params p = {0};
	kyro_db *db;
	memset(d, 0, sizeof *d);
	d->dir = h_tmpdir();
	for (size_t i = 0; i < DKEYS; i++) {
		d->keys[i] = 7919 * (i + 1) + h_below(7000);
		d->lens[i] = i == 300 || i == 301 ? 1500 : (size_t)h_below(13);
	}
	int rc = kyro_open(&db, d->dir, KYRO_RDWR);
	if (!rc)
		rc = kyro_batch_begin(db);
	for (size_t i = 0; i < DKEYS && !rc; i++) {
		value_of(d->keys[i], val, d->lens[i]);
		rc = kyro_put(db, d->keys[i], val, d->lens[i], NULL);
	}
	if (!rc)
		rc = kyro_batch_commit(db, NULL);
	if (!rc)
		rc = kyro_snapshot(db, KYRO_SNAPSHOT_INDEX, &p, &st, NULL, NULL);
	if (rc)
		h_note("making the store: %s", kyro_errmsg(db));
	kyro_close(db);
	snprintf(d->bin, sizeof d->bin, "%s", bin_path(d->dir, 1));
	snprintf(d->data, sizeof d->data, "%s", data_path(d->dir, 1));
	d->blen = h_file_size(d->bin);
	d->dlen = h_file_size(d->data);
	return rc;
}

struct tally {
	uint64_t right, corrupt, wrong;
};

/* One answer: RC with (VAL, LEN) for key index I (or an absent key when
 * ABSENT).  A KYRO_ECORRUPT must name one of the snapshot's files. */
static void judge_answer(struct tally *t, const struct dstore *d,
			 const char *msg, int rc, size_t i, int absent,
			 const void *val, size_t len)
{
	static unsigned char want[1500];
	if (rc == KYRO_ECORRUPT) {
		if (strstr(msg, d->bin) || strstr(msg, d->data)) {
			t->corrupt++;
			return;
		}
		h_note("a corrupt answer that names no snapshot file: %s", msg);
	} else if (absent ? rc == KYRO_ENOTFOUND : rc == 0) {
		if (absent)
			return (void)t->right++;
		value_of(d->keys[i], want, d->lens[i]);
		if (len == d->lens[i] && memcmp(val, want, len) == 0)
			return (void)t->right++;
	}
	if (!t->wrong++)
		h_note("key %llu%s: rc %d, %zu bytes: %s",
		       (unsigned long long)(d->keys[i] + (absent != 0)),
		       absent ? " (absent)" : "", rc, len, msg);
}

struct scan_check {
	const struct dstore *d;
	size_t next, end; /* the index of the key expected next, and past */
	int wrong;
};

static int scan_check_cb(void *arg, uint64_t key, const void *val,
			 size_t len)
{
	static unsigned char want[1500];
	struct scan_check *c = arg;
	const struct dstore *d = c->d;
	if (c->next >= c->end || key != d->keys[c->next] ||
	    len != d->lens[c->next]) {
		c->wrong = 1;
		return 1;
	}
	value_of(key, want, len);
	if (memcmp(val, want, len) != 0)
		c->wrong = 1;
	c->next++;
	return c->wrong;
}

static void judge_scan(struct tally *t, const struct dstore *d, kyro_db *db,
		       size_t lo, size_t hi)
{
	struct scan_check c = {d, lo, hi + 1, 0};
	int rc = kyro_scan(db, d->keys[lo], d->keys[hi], scan_check_cb, &c);
	if (rc == 0 && !c.wrong && c.next == hi + 1)
		t->right++;
	else if (rc == KYRO_ECORRUPT && !c.wrong)
		judge_answer(t, d, kyro_errmsg(db), rc, 0, 0, NULL, 0);
	else if (!t->wrong++)
		h_note("scan of [%zu, %zu]: rc %d, stopped at %zu%s", lo, hi,
		       rc, c.next, c.wrong ? " on a wrong entry" : "");
}

static void ask_singly(struct tally *t, const struct dstore *d, kyro_db *db)
{
	for (size_t i = 0; i < DKEYS; i++) {
		const void *val = NULL;
		size_t len = 0;
		int rc = kyro_get(db, d->keys[i], &val, &len);
		judge_answer(t, d, kyro_errmsg(db), rc, i, 0, val, len);
		rc = kyro_get(db, d->keys[i] + 1, &val, &len);
		judge_answer(t, d, kyro_errmsg(db), rc, i, 1, val, len);
	}
}

static void ask_batch(struct tally *t, const struct dstore *d, kyro_db *db)
{
	static struct kyro_item it[2 * DKEYS];
	for (size_t i = 0; i < DKEYS; i++) {
		it[2 * i].key = d->keys[i];
		it[2 * i + 1].key = d->keys[i] + 1;
	}
	int rc = kyro_get_batch(db, it, 2 * DKEYS);
	if (rc)
		judge_answer(t, d, kyro_errmsg(db), rc, 0, 0, NULL, 0);
	for (size_t i = 0; !rc && i < 2 * DKEYS; i++)
		judge_answer(t, d, "", it[i].rc, i / 2, i & 1, it[i].val,
			     it[i].len);
}

static void ask_scans(struct tally *t, const struct dstore *d, kyro_db *db)
{
	judge_scan(t, d, db, 100, 250);
	judge_scan(t, d, db, 0, DKEYS - 1);
}

/* Ask the store everything through one handle: each key and the absent
 * key after it, all of them in one batch, and scans.  FIRST picks which
 * kind goes first, and so meets each block unverified; BINARY forces
 * binary search instead of the learned index. */
static void ask_all(struct tally *t, const struct dstore *d, int first,
		    int binary)
{
	static void (*const ask[3])(struct tally *, const struct dstore *,
				    kyro_db *) = {ask_singly, ask_batch,
						  ask_scans};
	kyro_db *db;
	int rc = kyro_open(&db, d->dir,
			   KYRO_RDONLY | (binary ? KYRO_BINARY_SEARCH : 0));
	if (rc) {
		/* A flipped version byte reads as a newer format: refused
		 * as such, which is an error, not an answer. */
		if (rc == KYRO_EVERSION)
			rc = KYRO_ECORRUPT;
		judge_answer(t, d, kyro_errmsg(db), rc, 0, 0, NULL, 0);
		kyro_close(db);
		return;
	}
	for (int k = 0; k < 3; k++)
		ask[(first + k) % 3](t, d, db);
	kyro_close(db);
}

/* Flip every byte of FILE (LEN bytes) in turn and ask everything;
 * returns the flips that made some answer an error. */
static uint64_t sweep(const struct dstore *d, const char *file, size_t len,
		      struct tally *t)
{
	uint64_t detected = 0;
	for (uint64_t off = 0; off < len; off++) {
		uint64_t before = t->corrupt;
		/* Vary the bit, which question comes first and the search
		 * (learned index or binary) from byte to byte, so that the
		 * bytes of every key and every block meet all of them. */
		unsigned char x = (unsigned char)(1u << (off % 8));
		if (h_xor_byte(file, off, x) != 0) {
			CHECK(!"cannot damage the file");
			break;
		}
		ask_all(t, d, (int)(off % 3), (int)(off / 3 % 2));
		CHECK_RC(h_xor_byte(file, off, x), 0);
		detected += t->corrupt > before;
	}
	return detected;
}

TEST(every_flipped_snapshot_byte_gives_the_right_answer_or_an_error)
{
	struct dstore d;
	struct tally t = {0};
	kyro_db *db;
	struct kyro_index_info ii;
	REQUIRE(CHECK_RC(dstore_make(&d), 0));
	/* Undamaged, every answer is right, through the learned index. */
	REQUIRE(CHECK_RC(kyro_open(&db, d.dir, KYRO_RDONLY), 0));
	CHECK_RC(kyro_index_info(db, &ii), 0);
	CHECK_EQ_U64(ii.kind, KYRO_INDEX_RMI);
	kyro_close(db);
	for (int first = 0; first < 3; first++) {
		ask_all(&t, &d, first, 0);
		ask_all(&t, &d, first, 1);
	}
	CHECK_EQ_U64(t.wrong, 0);
	CHECK_EQ_U64(t.corrupt, 0);
	REQUIRE(128 + 8 * DKEYS > 4096 && nblocks(d.dlen) >= 2);
	uint64_t bin_hit = sweep(&d, d.bin, d.blen, &t);
	uint64_t data_hit = sweep(&d, d.data, d.dlen, &t);
	h_note("%zu + %zu flips: %llu and %llu detected, %llu answers right, "
	       "%llu errors, %llu wrong",
	       d.blen, d.dlen, (unsigned long long)bin_hit,
	       (unsigned long long)data_hit, (unsigned long long)t.right,
	       (unsigned long long)t.corrupt, (unsigned long long)t.wrong);
	CHECK_EQ_U64(t.wrong, 0);
	/* Every byte is in some block that the questions use. */
	CHECK_EQ_U64(bin_hit, d.blen);
	CHECK_EQ_U64(data_hit, d.dlen);
}

/* snap_locate() must turn any guess, right or wrong, into the true lower
 * bound or KYRO_ECORRUPT: a learned index or a search misled by damage
 * elsewhere guesses wrong. */
TEST(a_wrong_search_answer_is_corrected_or_refused)
{
	struct small sm;
	REQUIRE(CHECK_RC(small_make(&sm, 700), 0));
	const char *path = bin_path(sm.dir, 1);
	const uint64_t n = sm.kv.n;
	uint64_t wrong = 0, refused = 0, right = 0;
	REQUIRE(128 + 8 * n > 4096);
	/* Undamaged, then with one flipped byte in the key array. */
	for (int round = 0; round < 41; round++) {
		char msg[KMSG_MAX] = "";
		struct snap s;
		uint64_t off = 128 + h_below(8 * n);
		if (round > 0)
			REQUIRE(h_xor_byte(path, off, 0x10) == 0);
		/* Open reads the blocks of the first and last offsets. */
		int orc = kyro__snap_open(msg, &s, sm.dir, 1, n);
		if (orc)
			CHECK(round > 0 && orc == KYRO_ECORRUPT);
		for (uint64_t i = 0; !orc && i < n; i++) {
			for (int absent = 0; absent < 2; absent++) {
				uint64_t key = sm.kv.keys[i] + (uint64_t)absent;
				uint64_t want = ref_lower_bound(sm.kv.keys, n, key);
				const uint64_t guess[] = {want, h_below(n + 1), 0,
							  n, n + 5, want ^ 1};
				for (size_t g = 0; g < 6; g++) {
					uint64_t pos = guess[g];
					int rc = snap_locate(msg, &s, key, &pos);
					if (rc == KYRO_ECORRUPT &&
					    strstr(msg, path)) {
						refused++;
					} else if (rc == 0 && pos == want) {
						right++;
					} else if (!wrong++) {
						h_note("key %llu, guess %llu: rc "
						       "%d, %llu, want %llu",
						       (unsigned long long)key,
						       (unsigned long long)guess[g],
						       rc, (unsigned long long)pos,
						       (unsigned long long)want);
					}
				}
			}
		}
		if (!orc)
			kyro__snap_close(&s);
		if (round == 0)
			CHECK_EQ_U64(refused, 0);
		else
			REQUIRE(h_xor_byte(path, off, 0x10) == 0);
	}
	CHECK_EQ_U64(wrong, 0);
	CHECK(refused > 0);
	CHECK(right > 12 * n);
	small_free(&sm);
}

/* Nothing rewrites or builds on damage: a snapshot fold, an index build
 * and a warm-up each read every block they use, and refuse. */
TEST(a_damaged_snapshot_is_not_folded_indexed_or_warmed)
{
	struct dstore d;
	struct kyro_snapshot_stats st;
	struct kyro_rmi_stats rst;
	struct kyro_rmi_params p = {0};
	kyro_db *db;
	uint64_t bytes;
	REQUIRE(CHECK_RC(dstore_make(&d), 0));
	/* A flipped byte in the last value, and one in a key. */
	const struct {
		const char *file;
		uint64_t off;
	} flip[] = {{d.data, d.dlen - 8 * nblocks(d.dlen) - 1},
		    {d.bin, 128 + 8 * 17 + 3}};
	for (size_t k = 0; k < 2; k++) {
		const char *file = flip[k].file;
		REQUIRE(h_xor_byte(file, flip[k].off, 0x04) == 0);
		REQUIRE(CHECK_RC(kyro_open(&db, d.dir, KYRO_RDWR), 0));
		CHECK_RC(kyro_warmup(db, &bytes), KYRO_ECORRUPT);
		CHECK_STR_HAS(kyro_errmsg(db), file);
		CHECK_STR_HAS(kyro_errmsg(db), "fails its checksum");
		if (k == 1) {
			CHECK_RC(kyro_rmi_build(db, &p, &rst, NULL, NULL),
				 KYRO_ECORRUPT);
			CHECK_STR_HAS(kyro_errmsg(db), file);
		}
		/* Something new to fold. */
		CHECK_RC(kyro_put(db, 1, "new", 3, NULL), 0);
		CHECK_RC(kyro_snapshot(db, KYRO_SNAPSHOT_INDEX, &p, &st, NULL, NULL),
			 KYRO_ECORRUPT);
		CHECK_STR_HAS(kyro_errmsg(db), file);
		kyro_close(db);
		/* The damaged generation is still the store's, as it was. */
		CHECK(h_exists(d.bin) && h_exists(d.data));
		CHECK(!h_exists(bin_path(d.dir, 2)));
		REQUIRE(h_xor_byte(file, flip[k].off, 0x04) == 0);
	}
	/* Undamaged again, all three go through. */
	REQUIRE(CHECK_RC(kyro_open(&db, d.dir, KYRO_RDWR), 0));
	CHECK_RC(kyro_warmup(db, &bytes), 0);
	CHECK_EQ_U64(bytes >= d.blen + d.dlen, 1);
	CHECK_RC(kyro_rmi_build(db, &p, &rst, NULL, NULL), 0);
	CHECK_RC(kyro_snapshot(db, KYRO_SNAPSHOT_INDEX, &p, &st, NULL, NULL), 0);
	CHECK_EQ_U64(st.keys, DKEYS + 1);
	kyro_close(db);
}
