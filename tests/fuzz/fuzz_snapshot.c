/*
 * fuzz_snapshot.c - libFuzzer target for the snapshot loader.
 *
 * Input layout:
 *
 *    0  4  u32, little-endian: bits 0..30 the size of the .bin image
 *          (clamped to what follows); bit 31 set: recompute the checksums
 *          in both headers (and, when the layout is consistent, the block
 *          checksum tables of format 2 or the array and payload checksums
 *          of format 1) before use, so that mutations get past them to
 *          the rules behind
 *    4  .. the .bin image, then the .data image (snapshot.c has the format)
 *
 * The two images are written as snap-G.bin and snap-G.data (G the
 * generation the .bin header names) into a temporary directory under
 * /dev/shm, made once per process and reused, and opened with kyro__snap_open()
 * with the key count the header names, so that the count check passes.
 * When it opens, every key is looked up with kyro__lower_bound_binary() and
 * snap_value() (up to MAX_LOOKUPS), and kyro__snap_verify() runs.  The files
 * are mapped, so AddressSanitizer cannot see a read past their end; every
 * pointer the loader hands out is therefore checked against the mapping
 * here.  Then the snapshot becomes the snapshot of a store (a manifest and
 * an empty WAL segment): kyro_open() read-only, kyro_scan(), kyro_get(),
 * kyro_get_seq(), kyro_get_batch() and kyro_verify().  A snapshot that
 * kyro__snap_verify() calls clean must be served exactly (every key in order,
 * every value byte for byte), kyro_get_batch() must agree with kyro_get()
 * whenever the keys are sorted (unless one of them found a damaged block
 * the other did not need), and kyro_verify() must agree with
 * kyro__snap_verify().  A failed check calls
 * abort(), which libFuzzer reports as a crash.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "db.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__ubsan_default_options(void);

/* UBSan only prints by default, and libFuzzer would go on as if nothing
 * happened: make undefined behaviour a crash, with its input saved. */
const char *__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

#define MAX_LOOKUPS 10000
#define FIX_FLAG 0x80000000u

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_snapshot: %s (%s)\n", what, detail ? detail : "");
	abort();
}

static void failu(const char *what, uint64_t a, uint64_t b)
{
	char text[96];
	snprintf(text, sizeof text, "%llu, %llu", (unsigned long long)a,
		 (unsigned long long)b);
	fail(what, text);
}

static uint64_t offs_at(uint64_t n)
{
	return SNAP_BIN_HDR + ((8 * n + 63) & ~(uint64_t)63);
}

static int inside(const void *p, size_t len, const void *base, size_t size);

static uint64_t nblocks(uint64_t len)
{
	return (len + SNAP_BLOCK - 1) >> SNAP_BLOCK_SHIFT;
}

/* Rewrite the block table at P + TAB for the TAB bytes before it. */
static void fix_blocks(unsigned char *p, uint64_t tab)
{
	for (uint64_t b = 0; b < nblocks(tab); b++) {
		uint64_t off = b << SNAP_BLOCK_SHIFT;
		uint64_t len = tab - off < SNAP_BLOCK ? tab - off : SNAP_BLOCK;
		put_le64(p + tab + 8 * b, XXH3_64bits_withSeed(p + off, len, b));
	}
}

static void fix_checksums(unsigned char *bin, size_t bin_len,
			  unsigned char *data, size_t data_len)
{
	if (data_len >= SNAP_DATA_HDR)
		put_le64(data + 24, XXH3_64bits(data, 24));
	if (bin_len < SNAP_BIN_HDR)
		return;
	uint64_t n = get_le64(bin + 24);
	int layout = n < bin_len / 8 && bin_len >= offs_at(n) + 8 * (n + 1);
	uint64_t tab = layout ? offs_at(n) + 8 * (n + 1) : 0;
	if (get_le32(bin + 8) == 1) {
		if (layout && bin_len == tab) {
			put_le64(bin + 64,
				 XXH3_64bits(bin + SNAP_BIN_HDR, 8 * n));
			put_le64(bin + 72,
				 XXH3_64bits(bin + offs_at(n), 8 * (n + 1)));
		}
		if (data_len >= SNAP_DATA_HDR)
			put_le64(bin + 80,
				 XXH3_64bits(data + SNAP_DATA_HDR,
					     data_len - SNAP_DATA_HDR));
		put_le64(bin + 120, XXH3_64bits(bin, 120));
		return;
	}
	/* The header is in block 0: its checksum goes first. */
	put_le64(bin + 120, XXH3_64bits(bin, 120));
	if (layout && bin_len == tab + 8 * nblocks(tab))
		fix_blocks(bin, tab);
	uint64_t d = get_le64(bin + 40);
	if (d <= data_len && data_len - d == 8 * nblocks(d))
		fix_blocks(data, d);
}

/* Every block of both files matches its table (format 2). */
static int blocks_sound(const struct snap *s)
{
	for (int f = SNAP_BIN; f <= SNAP_DATA; f++) {
		const unsigned char *p = f == SNAP_BIN ? s->bin : s->data;
		uint64_t tab = f == SNAP_BIN ? offs_at(s->n) + 8 * (s->n + 1)
					     : s->data_size;
		if (s->blocks[f] != nblocks(tab) ||
		    !inside(p + tab, 8 * s->blocks[f], p,
			    f == SNAP_BIN ? s->bin_len : s->data_len))
			failu("block table outside its file", (uint64_t)f, tab);
		for (uint64_t b = 0; b < s->blocks[f]; b++) {
			uint64_t off = b << SNAP_BLOCK_SHIFT;
			uint64_t len = tab - off < SNAP_BLOCK ? tab - off
							       : SNAP_BLOCK;
			if (get_le64(p + tab + 8 * b) !=
			    XXH3_64bits_withSeed(p + off, len, b))
				return 0;
		}
	}
	return 1;
}

/* ---- the temporary store ---- */

static char g_dir[64];
static struct manifest g_man; /* the manifest the directory holds */
static uint64_t g_wal_first = 0; /* first seq of its WAL segment; 0: none */
static int g_have_wal;

static void remove_dir(void)
{
	DIR *d = opendir(g_dir);
	struct dirent *e;
	char path[PATH_MAX];
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(g_dir);
}

static const char *store_dir(void)
{
	if (g_dir[0])
		return g_dir;
	snprintf(g_dir, sizeof g_dir, "/dev/shm/kyro-fuzz-snap-XXXXXX");
	if (!mkdtemp(g_dir)) {
		snprintf(g_dir, sizeof g_dir, "/tmp/kyro-fuzz-snap-XXXXXX");
		if (!mkdtemp(g_dir))
			fail("cannot make a temporary directory",
			     strerror(errno));
	}
	atexit(remove_dir);
	return g_dir;
}

static void write_file(const char *path, const void *buf, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	const unsigned char *p = buf;
	if (fd < 0)
		fail("cannot create a file", path);
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			fail("cannot write a file", path);
		p += w;
		n -= (size_t)w;
	}
	close(fd);
}

/* Make the directory a store whose manifest names snapshot GEN (N keys,
 * up to LAST_SEQ) and an empty WAL segment 1 that continues it. */
static void prepare_store(const char *dir, uint64_t gen, uint64_t n,
			  uint64_t last_seq)
{
	char msg[KMSG_MAX], path[PATH_MAX];
	if (!g_have_wal) {
		/* A lock page, as any writer leaves: without one, a reader
		 * looks for it again on every lookup (a system call each). */
		static const unsigned char page[4096];
		snprintf(path, sizeof path, "%s/%s", dir, KYRO_LOCKFILE);
		write_file(path, page, sizeof page);
	}
	if (!g_have_wal || g_wal_first != last_seq + 1) {
		if (kyro__wal_create(msg, dir, 1, last_seq + 1))
			fail("cannot create the WAL segment", msg);
		g_have_wal = 1;
		g_wal_first = last_seq + 1;
	}
	struct manifest m = {.gen = 1, .snap_gen = gen, .snap_seq = last_seq,
			     .snap_keys = n, .wal_first = 1, .wal_last = 1};
	if (memcmp(&m, &g_man, sizeof m) != 0) {
		if (kyro__manifest_write(msg, dir, &m))
			fail("cannot write the manifest", msg);
		g_man = m;
	}
}

/* ---- checks ---- */

/* Is [P, P+LEN) inside [BASE, BASE+SIZE)? */
static int inside(const void *p, size_t len, const void *base, size_t size)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)base;
	return base && a >= b && len <= size && a - b <= size - len;
}

struct vreport {
	int count;
	char first[256];
};

static void report_cb(void *arg, const char *file, uint64_t offset,
		      const char *text)
{
	struct vreport *r = arg;
	(void)offset;
	if (r->count++ == 0)
		snprintf(r->first, sizeof r->first, "%s: %s",
			 file ? file : "(error)", text);
}

/* Check an open snapshot; returns 1 when it is clean by our own count,
 * and sets *SORTED when its keys rise strictly. */
static int check_snap(const struct snap *s, size_t bin_len, size_t data_len,
		      int *sorted_out)
{
	uint64_t n = s->n;
	if (s->bin_len != bin_len || s->data_len != data_len ||
	    s->data_size > data_len || (s->version == 1 && s->data_size != data_len))
		failu("opened with sizes that differ from the files",
		      s->bin_len, bin_len);
	if ((const unsigned char *)s->keys != s->bin + SNAP_BIN_HDR ||
	    !inside(s->keys, 8 * n, s->bin, s->bin_len) ||
	    !inside(s->offs, 8 * (n + 1), s->bin, s->bin_len))
		failu("key or offset array outside the index file", n,
		      s->bin_len);
	if (s->offs[0] != SNAP_DATA_HDR || s->offs[n] != s->data_size)
		failu("opened with offsets that do not span the data",
		      s->offs[0], s->offs[n]);

	const unsigned char *h = s->bin;
	int sorted = 1, bounded = 1;
	for (uint64_t i = 1; i < n; i++)
		if (s->keys[i - 1] >= s->keys[i])
			sorted = 0;
	for (uint64_t i = 0; i < n; i++) {
		const void *val;
		size_t len;
		int rc = snap_value(s, i, &val, &len);
		uint64_t a = s->offs[i], b = s->offs[i + 1];
		int ok = a <= b && b <= s->data_size && a >= SNAP_DATA_HDR &&
			 b - a <= KYRO_MAX_VALUE;
		if (rc != 0 && rc != KYRO_ECORRUPT)
			failu("snap_value: unexpected result", i,
			      (uint64_t)(int64_t)rc);
		if ((rc == 0) != ok)
			failu("snap_value disagrees with the bounds", i, a);
		if (rc) {
			bounded = 0;
			continue;
		}
		if (!inside(val, len, s->data + SNAP_DATA_HDR,
			    s->data_size - SNAP_DATA_HDR))
			failu("snap_value outside the payload region", i, len);
		(void)XXH3_64bits(val, len); /* touch every byte */
	}
	for (uint64_t i = 0; i < n && i < MAX_LOOKUPS; i++) {
		uint64_t key = s->keys[i];
		uint64_t j = kyro__lower_bound_binary(s->keys, n, key);
		if (j > n)
			failu("lower bound past the end", j, n);
		if (sorted && j != i)
			failu("lower bound missed a key of a sorted array", i,
			      j);
		if (sorted && key != UINT64_MAX &&
		    kyro__lower_bound_binary(s->keys, n, key + 1) != i + 1)
			failu("lower bound of a gap is wrong", i, key);
		if (j < n && s->keys[j] == key) {
			const void *val;
			size_t len;
			if (snap_value(s, j, &val, &len) == 0 &&
			    !inside(val, len, s->data, data_len))
				failu("looked-up value outside the data", j,
				      len);
		}
	}
	int sums = s->version == 2
			   ? blocks_sound(s)
			   : XXH3_64bits(s->keys, 8 * n) == get_le64(h + 64) &&
				     XXH3_64bits(s->offs, 8 * (n + 1)) ==
					     get_le64(h + 72) &&
				     XXH3_64bits(s->data + SNAP_DATA_HDR,
						 data_len - SNAP_DATA_HDR) ==
					     get_le64(h + 80);
	int clean = sums && sorted && bounded;
	*sorted_out = sorted;
	struct vreport r = {0, ""};
	int rc = kyro__snap_verify(s, report_cb, &r);
	if (rc != (clean ? 0 : KYRO_EDAMAGED))
		failu("kyro__snap_verify disagrees with the file", clean,
		      (uint64_t)(int64_t)rc);
	if (rc && r.count == 0)
		fail("kyro__snap_verify found damage without reporting it",
		     NULL);
	return clean;
}

struct scan_ctx {
	const kyro_db *db;
	const struct snap *s;
	int clean;
	uint64_t next;
};

static int scan_cb(void *arg, uint64_t key, const void *val, size_t len)
{
	struct scan_ctx *c = arg;
	const struct snap *db_snap = &c->db->v.snap;
	if (!inside(val, len, db_snap->data, db_snap->data_len))
		failu("scan value outside the data mapping", key, len);
	if (!c->clean)
		return 0;
	const void *want;
	size_t wlen;
	if (c->next >= c->s->n || c->s->keys[c->next] != key)
		failu("scan of a clean snapshot returned a wrong key", key,
		      c->next);
	if (snap_value(c->s, c->next, &want, &wlen) || wlen != len ||
	    memcmp(want, val, len) != 0)
		failu("scan value differs from the snapshot", key, len);
	c->next++;
	return 0;
}

/* kyro_get_batch() must give kyro_get()'s answers whenever the keys are
 * sorted (even when payload offsets are damaged).  Over unsorted keys the
 * two searches may legitimately land on different entries; they must
 * still stay inside the mappings. */
static void check_batch(kyro_db *db, const struct snap *s, int clean,
			int sorted)
{
	size_t n = s->n < MAX_LOOKUPS ? (size_t)s->n : MAX_LOOKUPS, m = 0;
	struct kyro_item *it = calloc(2 * n + 2, sizeof *it);
	if (!it)
		fail("out of memory", NULL);
	for (size_t i = 0; i < n; i++) {
		it[m++].key = s->keys[i];
		it[m++].key = s->keys[i] + 1;
	}
	it[m++].key = 0;
	it[m++].key = UINT64_MAX;
	int rc = kyro_get_batch(db, it, m);
	if (rc && (clean || rc != KYRO_ECORRUPT))
		failu("kyro_get_batch failed", clean, (uint64_t)(int64_t)rc);
	for (size_t i = 0; !rc && i < m; i++) {
		if (it[i].rc != 0 && it[i].rc != KYRO_ENOTFOUND)
			failu("kyro_get_batch: unexpected item result", i,
			      (uint64_t)(int64_t)it[i].rc);
		if (it[i].rc == 0 && !inside(it[i].val, it[i].len,
					      db->v.snap.data,
					      db->v.snap.data_len))
			failu("kyro_get_batch value outside the data mapping",
			      it[i].key, it[i].len);
	}
	for (size_t i = 0; i < m; i++) {
		const void *val;
		size_t len;
		uint64_t seq;
		int grc = kyro_get(db, it[i].key, &val, &len);
		if (grc == 0 && !inside(val, len, db->v.snap.data,
					db->v.snap.data_len))
			failu("kyro_get value outside the data mapping",
			      it[i].key, len);
		if (sorted && !rc && grc != KYRO_ECORRUPT &&
		    (grc != it[i].rc ||
		     (grc == 0 && (val != it[i].val || len != it[i].len))))
			failu("kyro_get_batch and kyro_get disagree", it[i].key,
			      (uint64_t)(int64_t)grc);
		grc = kyro_get_seq(db, it[i].key, &seq);
		if (grc == 0 && seq != s->last_seq)
			failu("kyro_get_seq of a snapshot key is not the "
			      "snapshot's last sequence number",
			      seq, s->last_seq);
	}
	free(it);
}

static void check_store(const char *dir, const struct snap *s, int clean,
			int sorted)
{
	kyro_db *db;
	prepare_store(dir, s->gen, s->n, s->last_seq);
	int rc = kyro_open(&db, dir, KYRO_RDONLY);
	if (rc)
		fail("kyro_open refused a snapshot that kyro__snap_open took",
		     kyro_errmsg(db));
	struct scan_ctx c = {db, s, clean, 0};
	rc = kyro_scan(db, 0, UINT64_MAX, scan_cb, &c);
	if (clean && (rc || c.next != s->n))
		failu("scan of a clean snapshot fell short", c.next, s->n);
	if (rc && rc != KYRO_ECORRUPT)
		failu("kyro_scan: unexpected result", (uint64_t)(int64_t)rc, 0);
	for (uint64_t i = 0; i < s->n && i < MAX_LOOKUPS; i++) {
		const void *val, *want;
		size_t len, wlen;
		uint64_t key = s->keys[i];
		rc = kyro_get(db, key, &val, &len);
		if (rc == 0 && !inside(val, len, db->v.snap.data,
				       db->v.snap.data_len))
			failu("kyro_get value outside the data mapping", key,
			      len);
		if (!clean)
			continue;
		if (rc || snap_value(s, i, &want, &wlen) || wlen != len ||
		    memcmp(want, val, len) != 0)
			failu("kyro_get of a clean snapshot is wrong", key,
			      (uint64_t)(int64_t)rc);
		if (key != UINT64_MAX && (i + 1 == s->n || s->keys[i + 1] != key + 1) &&
		    kyro_get(db, key + 1, &val, &len) != KYRO_ENOTFOUND)
			failu("kyro_get found an absent key", key + 1, i);
	}
	check_batch(db, s, clean, sorted);
	kyro_close(db);

	struct vreport r = {0, ""};
	rc = kyro_verify(dir, 0, report_cb, &r);
	if (rc != (clean ? 0 : KYRO_EDAMAGED))
		fail("kyro_verify disagrees with kyro__snap_verify", r.first);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char msg[KMSG_MAX], bin_path[PATH_MAX], data_path[PATH_MAX];
	if (size < 4)
		return 0;
	uint32_t ctl = get_le32(data);
	size_t rest = size - 4;
	size_t bin_len = (ctl & ~FIX_FLAG) < rest ? (ctl & ~FIX_FLAG) : rest;
	size_t data_len = rest - bin_len;
	unsigned char *buf = malloc(rest ? rest : 1);
	if (!buf)
		return 0;
	memcpy(buf, data + 4, rest);
	unsigned char *bin = buf, *dat = buf + bin_len;
	if (ctl & FIX_FLAG)
		fix_checksums(bin, bin_len, dat, data_len);
	uint64_t gen = bin_len >= 24 ? get_le64(bin + 16) : 1;
	uint64_t n = bin_len >= 32 ? get_le64(bin + 24) : 0;

	const char *dir = store_dir();
	snprintf(bin_path, sizeof bin_path, "%s/snap-%016llx.bin", dir,
		 (unsigned long long)gen);
	snprintf(data_path, sizeof data_path, "%s/snap-%016llx.data", dir,
		 (unsigned long long)gen);
	write_file(bin_path, bin, bin_len);
	write_file(data_path, dat, data_len);

	struct snap s;
	int rc = kyro__snap_open(msg, &s, dir, gen, n);
	if (rc) {
		if (memchr(msg, 0, sizeof msg) == NULL || msg[0] == 0)
			fail("kyro__snap_open refused without a message", NULL);
		if (s.bin || s.data)
			fail("kyro__snap_open failed but left a mapping", msg);
	} else {
		if (s.gen != gen || s.n != n)
			failu("opened a different generation or count", s.gen,
			      s.n);
		int sorted;
		int clean = check_snap(&s, bin_len, data_len, &sorted);
		if (gen != 0)
			check_store(dir, &s, clean, sorted);
		kyro__snap_close(&s);
	}
	unlink(bin_path);
	unlink(data_path);
	free(buf);
	return 0;
}
