/*
 * fuzz_wal.c - libFuzzer target for the WAL reader.
 *
 * The input is the image of one WAL segment (wal.c describes the format).
 * Each input goes through three passes; a failed check calls abort(),
 * which libFuzzer reports as a crash.
 *
 *  1. In memory, in the buffer libFuzzer hands over, so AddressSanitizer
 *     sees a read one byte past the end: kyro__wal_header_check() with the
 *     segment id the header names and with a fixed one, then kyro__wal_scan()
 *     from the header and from a few odd offsets.  Each scan's answer is
 *     walked with wal_rec_at(): every record must lie inside [start, end)
 *     and carry a good checksum, sequence numbers must rise by one, every
 *     batch must close with a matching COMMIT, and the counts, the last
 *     sequence number and the status must agree with what the walk saw.
 *  2. The same on a copy whose header checksum and record checksums (along
 *     the chain of records whose framing is plausible) are recomputed, so
 *     that mutations get past the checksums to the sequence and batch
 *     rules.
 *  3. That copy, and the image as given when it differs, as the only
 *     segment of a store in a temporary directory (under /dev/shm, made
 *     once per process and reused): kyro_open() read-only, kyro_get(),
 *     kyro_get_seq(), kyro_get_batch(), kyro_scan() and kyro_verify().
 *     The store must open exactly when the scan found no corruption, must
 *     answer exactly what a replay of the scanned batches gives (a small
 *     model kept here), every value it returns must lie inside one of its
 *     mappings, and kyro_verify() must call the store clean exactly when
 *     the scan did.
 *     A segment whose first sequence number is not 1 gets an empty
 *     snapshot that ends just before it, so that it can open.
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

#define MAX_GETS 64

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_wal: %s (%s)\n", what, detail ? detail : "");
	abort();
}

static void failu(const char *what, uint64_t a, uint64_t b)
{
	char text[96];
	snprintf(text, sizeof text, "%llu, %llu", (unsigned long long)a,
		 (unsigned long long)b);
	fail(what, text);
}

/* ---- passes 1 and 2: the scanner in memory ---- */

/* Scan IMG from START and check the answer by walking it.  *OUT, when not
 * NULL, receives the scan. */
static void check_scan(const unsigned char *img, size_t len, uint64_t seg,
		       uint64_t start, uint64_t next_seq, struct wal_scan *out)
{
	struct wal_scan sc;
	kyro__wal_scan(img, len, seg, start, next_seq, &sc);
	if (out)
		*out = sc;
	if (memchr(sc.why, 0, sizeof sc.why) == NULL)
		fail("scan reason not terminated", NULL);
	if (start > len)
		return;
	if (sc.end < start || sc.end > len)
		failu("scan end outside [start, len]", sc.end, len);
	switch (sc.status) {
	case 0:
		if (sc.end != len)
			failu("clean scan that stops before the end", sc.end,
			      len);
		break;
	case KYRO_ETORN:
		if (sc.end >= len || sc.bad_off != sc.end)
			failu("torn tail at a wrong offset", sc.bad_off, len);
		break;
	case KYRO_ECORRUPT:
		if (sc.bad_off < sc.end || sc.bad_off >= len)
			failu("corruption reported at a wrong offset",
			      sc.bad_off, sc.end);
		break;
	default:
		failu("unknown scan status", (uint64_t)(int64_t)sc.status, 0);
	}

	uint64_t off = start, expect = next_seq, in_batch = 0, records = 0,
		 batches = 0, last = next_seq - 1;
	while (off < sc.end) {
		struct wal_rec r;
		if (sc.end - off < WAL_REC_HDR)
			failu("record header crosses the scan end", off, sc.end);
		uint64_t next = wal_rec_at(img, off, &r);
		if (next <= off || next > sc.end)
			failu("record crosses the scan end", off, next);
		if (r.val != img + off + WAL_REC_HDR ||
		    (uint64_t)r.len > next - off - WAL_REC_HDR)
			failu("record value outside its record", off, r.len);
		if (XXH3_64bits_withSeed(img + off + 8,
					 WAL_REC_HDR - 8 + (size_t)r.len,
					 seg) != get_le64(img + off))
			failu("accepted a record with a bad checksum", off, 0);
		if (r.type == WAL_VEC &&
		    ((len >= 12 && get_le32(img + 8) == 1) || r.len == 0 ||
		     r.len % 4 || r.len > WAL_VEC_MAX_BYTES))
			failu("accepted a bad VECTOR record", off, r.len);
		if (r.type == WAL_PUT || r.type == WAL_DEL ||
		    r.type == WAL_VEC) {
			if (r.seq != expect)
				failu("accepted a wrong sequence number", r.seq,
				      expect);
			if (r.type == WAL_DEL && r.len != 0)
				failu("accepted a DELETE with a value", off,
				      r.len);
			if (r.len > KYRO_MAX_VALUE)
				failu("accepted an oversized value", off, r.len);
			expect++;
			in_batch++;
		} else if (r.type == WAL_COMMIT) {
			if (in_batch == 0 || r.key != in_batch ||
			    r.seq != expect - 1 || r.len != 0)
				failu("accepted a COMMIT that does not match",
				      off, r.key);
			records += in_batch;
			batches++;
			in_batch = 0;
			last = r.seq;
		} else {
			failu("accepted an unknown record type", off, r.type);
		}
		off = next;
	}
	if (off != sc.end || in_batch != 0)
		failu("scan end is not the end of a batch", off, sc.end);
	if (records != sc.records || batches != sc.batches ||
	    last != sc.last_seq)
		failu("scan counts disagree with its records", sc.records,
		      records);
}

/* Recompute the header checksum and the checksum of every record along
 * the chain whose framing is plausible. */
static void fix_checksums(unsigned char *b, size_t len)
{
	if (len < WAL_HDR)
		return;
	put_le64(b + 40, XXH3_64bits(b, 40));
	uint64_t seg = get_le64(b + 16);
	for (uint64_t off = WAL_HDR; len - off >= WAL_REC_HDR;) {
		unsigned char *p = b + off;
		uint32_t vlen = get_le32(p + 8);
		if (p[12] < WAL_PUT || p[12] > WAL_VEC ||
		    vlen > KYRO_MAX_VALUE ||
		    WAL_REC_HDR + align8(vlen) > len - off)
			break;
		put_le64(p, XXH3_64bits_withSeed(p + 8, WAL_REC_HDR - 8 + vlen,
						 seg));
		off += WAL_REC_HDR + align8(vlen);
	}
}

/* Pass 1 or 2 over one image. */
static void check_image(const unsigned char *img, size_t len)
{
	char msg[KMSG_MAX];
	uint64_t first_seq = 1, seg = len >= 24 ? get_le64(img + 16) : 1;
	uint64_t extra = len >= 40 ? get_le64(img + 32) : len;
	/* A fixed id must be refused unless the header names it. */
	uint64_t fs_fixed = 0;
	int rc = kyro__wal_header_check(msg, img, len, "fuzz", 1, &fs_fixed);
	if (rc && memchr(msg, 0, sizeof msg) == NULL)
		fail("header refused without a terminated message", NULL);
	rc = kyro__wal_header_check(msg, img, len, "fuzz", seg, &first_seq);
	if (rc == 0) {
		if (len < WAL_HDR)
			failu("accepted a short header", len, 0);
		check_scan(img, len, seg, WAL_HDR, first_seq, NULL);
	}
	/* Odd starting points: the scanner must stay inside the image from
	 * wherever it is asked to start. */
	static const uint64_t starts[] = {0, 1, 7, 13, WAL_HDR - 1,
					  WAL_HDR + 1, WAL_HDR + 5};
	for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++)
		check_scan(img, len, seg, starts[i], i % 2 ? first_seq : extra,
			   NULL);
	check_scan(img, len, seg, extra % (len + 9), first_seq, NULL);
}

/* ---- pass 3: the whole read path of a store ---- */

static char g_dir[64];
static uint64_t g_seg, g_first; /* what the directory holds now; 0: none */

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
	snprintf(g_dir, sizeof g_dir, "/dev/shm/kyro-fuzz-wal-XXXXXX");
	if (!mkdtemp(g_dir)) {
		snprintf(g_dir, sizeof g_dir, "/tmp/kyro-fuzz-wal-XXXXXX");
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

/* Point the MANIFEST at segment SEG, with an empty snapshot ending just
 * before FIRST_SEQ when that is not 1. */
static void prepare_store(const char *dir, uint64_t seg, uint64_t first_seq)
{
	char msg[KMSG_MAX], path[PATH_MAX];
	if (seg == g_seg && first_seq == g_first)
		return;
	if (g_seg && g_seg != seg) {
		snprintf(path, sizeof path, "%s/wal-%016llx.log", dir,
			 (unsigned long long)g_seg);
		unlink(path);
	}
	struct manifest m = {.gen = 1, .wal_first = seg, .wal_last = seg};
	if (first_seq != 1) {
		struct snap_writer w;
		uint64_t bytes;
		int rc = kyro__snap_writer_open(msg, &w, dir, 1, 0);
		if (!rc)
			rc = kyro__snap_writer_finish(msg, &w, first_seq - 1,
						      &bytes);
		kyro__snap_writer_abort(&w);
		if (rc)
			fail("cannot write the empty snapshot", msg);
		m.snap_gen = 1;
		m.snap_seq = first_seq - 1;
	}
	if (kyro__manifest_write(msg, dir, &m))
		fail("cannot write the manifest", msg);
	g_seg = seg;
	g_first = first_seq;
}

/* One live or deleted key as the model sees it after replay. */
struct ment {
	uint64_t key;
	uint64_t idx; /* position in the log: the later wins */
	uint64_t off; /* of the record */
	uint64_t seq;
	uint32_t len;
	uint8_t type;
};

static int ment_cmp(const void *a, const void *b)
{
	const struct ment *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Replay [WAL_HDR, END) of IMG: the newest record per key, sorted by key
 * (tombstones included).  Returns the count; *OUT is malloc'd. */
static size_t replay(const unsigned char *img, uint64_t end,
		     struct ment **out)
{
	size_t cap = (size_t)(end / WAL_REC_HDR) + 1, n = 0, k = 0;
	struct ment *v = malloc(cap * sizeof *v);
	if (!v)
		fail("out of memory", NULL);
	for (uint64_t off = WAL_HDR; off < end;) {
		struct wal_rec r;
		uint64_t at = off;
		off = wal_rec_at(img, off, &r);
		if (r.type == WAL_COMMIT)
			continue;
		v[n] = (struct ment){r.key, n, at, r.seq, r.len, r.type};
		n++;
	}
	qsort(v, n, sizeof *v, ment_cmp);
	for (size_t i = 0; i < n; i++)
		if (i + 1 == n || v[i + 1].key != v[i].key)
			v[k++] = v[i];
	*out = v;
	return k;
}

/* Does [P, P+LEN) lie inside one of the view's mappings? */
static int in_view(const kyro_db *db, const void *p, size_t len)
{
	const struct view *v = &db->v;
	uintptr_t a = (uintptr_t)p;
	for (size_t i = 0; i < v->nsegs; i++) {
		uintptr_t b = (uintptr_t)v->segs[i].base;
		if (b && a >= b && len <= v->segs[i].maplen &&
		    a - b <= v->segs[i].maplen - len)
			return 1;
	}
	if (v->have_snap && v->snap.data) {
		uintptr_t b = (uintptr_t)v->snap.data;
		if (a >= b && len <= v->snap.data_len &&
		    a - b <= v->snap.data_len - len)
			return 1;
	}
	return 0;
}

struct scan_ctx {
	const kyro_db *db;
	const unsigned char *img;
	const struct ment *want; /* live and deleted keys, sorted */
	size_t nwant, next;
};

/* The next live model entry at or after C->next within [.., HI]. */
static const struct ment *next_live(struct scan_ctx *c)
{
	while (c->next < c->nwant && c->want[c->next].type != WAL_PUT)
		c->next++;
	return c->next < c->nwant ? &c->want[c->next] : NULL;
}

static int scan_cb(void *arg, uint64_t key, const void *val, size_t len)
{
	struct scan_ctx *c = arg;
	if (!in_view(c->db, val, len))
		failu("scan value outside the mappings", key, len);
	const struct ment *m = next_live(c);
	if (!m || m->key != key)
		failu("scan returned a key the log does not hold", key,
		      m ? m->key : 0);
	if (m->len != len ||
	    memcmp(val, c->img + m->off + WAL_REC_HDR, len) != 0)
		failu("scan value differs from the log", key, len);
	c->next++;
	return 0;
}

/* Scan [LO, HI] and compare with the model's entries in that range. */
static void check_range(kyro_db *db, const unsigned char *img,
			const struct ment *want, size_t nwant, uint64_t lo,
			uint64_t hi)
{
	struct scan_ctx c = {db, img, want, nwant, 0};
	while (c.next < nwant && want[c.next].key < lo)
		c.next++;
	size_t stop = c.next;
	while (stop < nwant && want[stop].key <= hi)
		stop++;
	c.nwant = stop;
	int rc = kyro_scan(db, lo, hi, scan_cb, &c);
	if (rc)
		fail("kyro_scan failed on a store that opened",
		     kyro_errmsg(db));
	if (lo <= hi && next_live(&c) != NULL)
		failu("scan missed a key", c.want[c.next].key, lo);
}

/* The model's live entry for KEY, or NULL. */
static const struct ment *model_find(const struct ment *want, size_t nwant,
				     uint64_t key)
{
	size_t lo = 0, hi = nwant;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (want[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < nwant && want[lo].key == key && want[lo].type == WAL_PUT
		       ? &want[lo]
		       : NULL;
}

/* Compare one answer (RC, VAL, LEN) for KEY with the model. */
static void check_answer(const kyro_db *db, const unsigned char *img,
			 const struct ment *m, uint64_t key, int rc,
			 const void *val, size_t len, const char *who)
{
	char what[96];
	if (!m) {
		snprintf(what, sizeof what, "%s found a key the log does not "
			 "hold", who);
		if (rc != KYRO_ENOTFOUND)
			failu(what, key, (uint64_t)(int64_t)rc);
		return;
	}
	snprintf(what, sizeof what, "%s is wrong for a key the log holds",
		 who);
	if (rc)
		failu(what, key, (uint64_t)(int64_t)rc);
	if (!in_view(db, val, len))
		failu("a value outside the mappings", key, len);
	if (m->len != len ||
	    memcmp(val, img + m->off + WAL_REC_HDR, len) != 0)
		failu(what, key, len);
}

/* kyro_get(), kyro_get_seq() and kyro_get_batch() of KEYS[0..N). */
static void check_gets(kyro_db *db, const unsigned char *img,
		       const struct ment *want, size_t nwant,
		       const uint64_t *keys, size_t n)
{
	struct kyro_item items[2 * MAX_GETS + 2];
	for (size_t i = 0; i < n; i++) {
		const void *val;
		size_t len;
		uint64_t seq;
		const struct ment *m = model_find(want, nwant, keys[i]);
		int rc = kyro_get(db, keys[i], &val, &len);
		check_answer(db, img, m, keys[i], rc, val, len, "kyro_get");
		rc = kyro_get_seq(db, keys[i], &seq);
		if (m ? rc != 0 || seq != m->seq : rc != KYRO_ENOTFOUND)
			failu("kyro_get_seq is wrong", keys[i], seq);
		items[i] = (struct kyro_item){.key = keys[i], .rc = 99};
	}
	int rc = kyro_get_batch(db, items, n);
	if (rc)
		fail("kyro_get_batch failed on a store that opened",
		     kyro_errmsg(db));
	for (size_t i = 0; i < n; i++)
		check_answer(db, img, model_find(want, nwant, keys[i]),
			     keys[i], items[i].rc, items[i].val, items[i].len,
			     "kyro_get_batch");
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

static void check_store(const unsigned char *img, size_t len)
{
	char msg[KMSG_MAX], path[PATH_MAX];
	uint64_t first_seq;
	if (len < 24)
		return;
	uint64_t seg = get_le64(img + 16);
	/* Segment ids above 2^40 only make for long names; 0 is invalid in
	 * a manifest. */
	if (seg == 0 || seg >> 40)
		return;
	if (kyro__wal_header_check(msg, img, len, "fuzz", seg, &first_seq))
		return;
	struct wal_scan sc;
	kyro__wal_scan(img, len, seg, WAL_HDR, first_seq, &sc);

	const char *dir = store_dir();
	prepare_store(dir, seg, first_seq);
	snprintf(path, sizeof path, "%s/wal-%016llx.log", dir,
		 (unsigned long long)seg);
	write_file(path, img, len);

	kyro_db *db;
	int rc = kyro_open(&db, dir, KYRO_RDONLY);
	if (sc.status == KYRO_ECORRUPT) {
		if (rc != KYRO_ECORRUPT)
			failu("a corrupt segment did not fail kyro_open",
			      (uint64_t)(int64_t)rc, sc.bad_off);
	} else if (rc) {
		fail("kyro_open refused a segment that scans clean",
		     kyro_errmsg(db));
	} else {
		struct ment *want;
		size_t nwant = replay(img, sc.end, &want);
		check_range(db, img, want, nwant, 0, UINT64_MAX);
		if (nwant > 0) {
			uint64_t a = want[(size_t)(first_seq % nwant)].key;
			uint64_t b = want[(size_t)(len % nwant)].key;
			check_range(db, img, want, nwant, a < b ? a : b,
				    a < b ? b : a);
			check_range(db, img, want, nwant, b, a);
		}
		uint64_t keys[2 * MAX_GETS + 2];
		size_t nkeys = 0;
		for (size_t i = 0; i < nwant && i < MAX_GETS; i++) {
			keys[nkeys++] = want[i].key;
			keys[nkeys++] = want[i].key + 1;
		}
		keys[nkeys++] = 0;
		keys[nkeys++] = UINT64_MAX;
		check_gets(db, img, want, nwant, keys, nkeys);
		free(want);
	}
	kyro_close(db);

	struct vreport r = {0, ""};
	rc = kyro_verify(dir, 0, report_cb, &r);
	int want_rc = sc.status == 0 ? 0 : KYRO_EDAMAGED;
	if (rc != want_rc)
		fail("kyro_verify disagrees with the scan", r.first);
	if (rc && r.count == 0)
		fail("kyro_verify found damage without reporting it", NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_image(data, size);
	unsigned char *fixed = malloc(size ? size : 1);
	if (!fixed)
		return 0;
	if (size)
		memcpy(fixed, data, size);
	fix_checksums(fixed, size);
	int differs = size >= WAL_HDR && memcmp(fixed, data, size) != 0;
	if (differs)
		check_image(fixed, size);
	check_store(fixed, size);
	if (differs)
		check_store(data, size);
	free(fixed);
	return 0;
}
