/*
 * rmi.c - the learned index: a two-stage recursive model index over the
 * sorted u64 key array of one snapshot, whose leaves may split into
 * sub-leaves where a line misses the keys by too much.
 *
 * THE INDEX FILE (one per snapshot generation; all integers little-endian,
 * fixed width; offsets in bytes).  It holds no keys: the snapshot's own
 * array is the one searched.
 *
 *   Header, 64 bytes
 *     0   8  magic "KYRORMI\0" (4b 59 52 4f 52 4d 49 00)
*     8   4  format version, 4 (versions 3 and 2 are still read, see
 *            below; version 1 routed by interpolating over the bucket's
 *            whole width: it is refused, and rebuilt)
 *    12   4  flags: bit 0 set for a logarithmic router; any other set
 *            bit is refused
 *    16   8  key count n of the snapshot
 *    24   8  snapshot generation the index was built for
 *    32   8  first key, keys[0] (0 when n = 0)
 *    40   8  last key, keys[n-1] (0 when n = 0)
 *    48   8  snapshot binding: the checksum of the snapshot's .bin header
 *            (its bytes 120..127, XXH3-64 of the header's bytes 0..119,
 *            which name the generation, key count, last sequence number
 *            and payload size)
 *    56   4  record count L, >= 1: the R routed leaves (R, >= 1, is the
 *            router's final c) and the sub-leaves of split ones
 *    60   1  router bits B, 8..24
 *    61   1  shift S: max(0, bitlen(last - first) - B) for a linear
 *            router, B - 6 for a logarithmic one
 *    62   2  reserved, 0
 *   Router, at 64: 2^B + 1 entries of 16 bytes, then zero bytes up to the
 *   next multiple of 64.  Bucket b holds the keys x whose d = x - first
 *   has bucket(d) = b, where for a linear router bucket(d) = d >> S, and
 *   for a logarithmic one bucket(d) = (e << S) | (the S bits of d after
 *   its leading one, zero-filled), e = bitlen(d | 1) - 1: 2^S buckets to
 *   each octave of d, for keys that spread over orders of magnitude.
 *   Its entry is
 *     0   8  lo: where the bucket's leaves begin (any value when it has
 *            no key); the builder writes the bucket's smallest key, or,
 *            when wide gaps split the bucket's keys, one leaf's width
 *            before the run of them it spreads the leaves over
 *     8   4  c: floor(lb(first + (b << S)) * R / n), where lb(x) is the
 *            number of keys below x (n for a bucket past the last key,
 *            so the final entry's c is R).  Non-decreasing; entry 0's is
 *            0
 *    12   4  scale, an IEEE-754 binary32, finite and >= 0: the bucket's
 *            leaves per unit of key; the builder writes (c' - c) / (hi -
 *            lo + 1) with c' the next entry's c and hi the bucket's
 *            largest key, or for a run of its keys the run's own (see
 *            choose_run()); 0 when the bucket has no key.  The final
 *            entry's lo and scale are 0.  Any lo and scale give exact
 *            answers: they only move keys between the bucket's leaves.
 *   Records, at P = 64 + roundup64(16 * (2^B + 1)): L records of 32
 *   bytes, the routed leaves 0..R-1 first, then the sub-leaves.  A line
 *   leaf (every sub-leaf, and a routed leaf whose eps_lo is not 0xfffe):
 *     0   8  reference key: its first key (0 if it has none)
 *     8   8  slope, an IEEE-754 binary64, finite and >= 0
 *    16   8  start: position of its first key
 *    24   4  count: its keys; a routed leaf's start + count is the next
 *            routed leaf's start, and the last one ends at n
 *    28   2  eps_lo: the largest (prediction - position) over its keys;
 *            0xffff means "unbounded: search from the leaf's start";
 *            never 0xfffe (stored as 0xffff)
 *    30   2  eps_hi: the largest (position - prediction); 0xffff likewise
 *   A split leaf (a routed leaf whose eps_lo is 0xfffe), whose keys are
 *   predicted by its sub-leaves:
 *     0   8  reference key: its first key, its first sub-leaf's
 *     8   8  j: the record number of its first sub-leaf, u64
 *    16   8  start, and
 *    24   4  count, as a line leaf's
 *    28   2  0xfffe
 *    30   2  k >= 2: its sub-leaves are records j .. j + k - 1.  The split
 *            leaves' sub-leaves follow each other in the order of the
 *            split leaves, from record R to record L - 1, all of them;
 *            a split leaf's sub-leaves tile its run [start, start +
 *            count) in order, and their reference keys increase.
 *   Checksum, at P + 32 L: u64 XXH3_64bits of every byte before it.
 *   The file is exactly P + 32 L + 8 bytes.
 *
 * A LOOKUP of key x with first <= x <= last:
 *   route:   b = bucket(x - first); read lo, c, scale of entry b and c' of
 *            entry b + 1; t = trunc(scale * dist(x, lo)) in double
 *            precision, where dist(x, y) = x - y clamped to
 *            [0, 2^63 - 1]; leaf = c + min(t, c' - c - 1), or c when
 *            c' = c.  The key's position in the key space picks
 *            the bucket (never its raw top bits, which send a dense key
 *            set to one bucket), and inside the bucket the leaves are
 *            spread over the span of the bucket's own keys, not over the
 *            bucket's width: a cluster of keys far narrower than a bucket
 *            still gets every leaf its key count pays for (and where wide
 *            gaps split a bucket's keys, one run of them gets the leaves,
 *            the keys before and after it one end leaf each).  Monotone:
 *            within a bucket each step is, and a bucket's leaves end
 *            where the next bucket's begin.
 *   split:   if the leaf is split, the leaf is instead its last sub-leaf
 *            whose reference key is <= x, or its first: monotone in x,
 *            and a key's sub-leaf is the one whose run holds it.
 *   predict: off = min(count, trunc(slope * dist(x, ref))): double
 *            precision, relative to the leaf's reference key, so large
 *            keys lose nothing.
 *   window:  [start + max(0, off - eps_lo), start + min(count,
 *            off + eps_hi + 1)]; the lower bound of x is inside it (for
 *            a key present, strictly before its end), because routing and
 *            prediction are monotone in x and the epsilons were measured
 *            with this very function over every key of the leaf.
 *   probe:   count the keys below x in the window widened by one key on
 *            each side where there is one (simd.h, rmi_lookup.h).
 *   confirm: an answer strictly inside the widened run is bracketed by
 *            keys the probe compared, so it is exact; one on its edge
 *            means the keys are not the ones the index was built over,
 *            and a binary search answers instead (a mispredict).
 *
 * VERSION 3 is the same file without split leaves: R = L, and an eps_lo
 * of 0xfffe is an error bound like any other.
 *
 * VERSION 2 is version 3 but for bytes 48..55, which hold a key
 * sample hash: XXH3_64bits over the 8-byte little-endian encodings of
 * keys[j*n/m] for j = 0..m-1, m = min(n, 1024).  Loading one still checks
 * that hash, which reads 1,024 keys spread over the whole array (a page
 * fault each on a large store): kyro-rmi-build rewrites it as version 3.
 * Version 3 binds the index to the snapshot's identity instead, so that
 * loading reads no key but the first and the last: an index is never
 * trusted for the keys anyway (a lookup confirms its answer against the
 * keys it probed, and the snapshot verifies each key block on first use).
 *
 * LOAD REFUSES the image, with a message, when: it is shorter than a
 * header and checksum; the magic differs; the version is not 2, 3 or 4
 * (KYRO_EVERSION); a flag or reserved byte is set; B or L is out of range;
 * its size is not exactly P + 32 L + 8 (truncated or trailing bytes); the
 * checksum differs; the generation, key count, first or last key, or
 * snapshot binding (version 2: key sample hash) differs from the snapshot
 * it is loaded against (a stale index); S is not the value derived from
 * the keys; the router's c is not non-decreasing from 0 to R, with R >= 1
 * (version 4) or R = L (versions 2 and 3), and every bucket up to the last
 * key's below R; a scale is negative or not finite; the routed leaves'
 * starts and counts do not tile [0, n); a line leaf's slope is negative
 * or not finite, or (version 4) its eps_lo is 0xfffe; a split leaf's j is
 * not the next record after the sub-leaves of the split leaves before it
 * (R for the first), or k < 2, or j + k > L; its sub-leaves' starts and
 * counts do not tile its run, or their reference keys do not increase
 * from its own; or records are left that no split leaf names.  After
 * these checks no lookup can read outside the router, the records or
 * keys[0..n), whatever the image held.
 *
 * THIS FILE holds the format, the loader, the entry points of the
 * lookup, and the hint: the window of one key read from a file that was
 * not loaded (its header alone was checked), for a process that looks up
 * too few keys to pay for the load.  The lookups themselves are compiled once per SIMD level
 * (rmi_lookup.h, simd_*.c); the build is in rmi_build.c; what they all
 * share (the model's routing and prediction) is in rmi_model.h.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "internal.h"
#include "kyro.h"
#include "rmi.h"
#include "rmi_model.h"
#include "simd.h"

#include "banned.h"

void kyro__rmi_set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
	if (errbuf == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

uint64_t kyro__lower_bound_binary(const uint64_t *keys, uint64_t n,
				  uint64_t key)
{
	if (n == 0)
		return 0;
	/* The answer stays in [base, base + len]; the comparison selects the
	 * next base by a conditional move, so no branch depends on the keys
	 * and the loop runs exactly ceil(log2 n) times. */
	uint64_t base = 0;
	uint64_t len = n;
	while (len > 1) {
		const uint64_t half = len / 2;
		base = keys[base + half - 1] < key ? base + half : base;
		len -= half;
	}
	return base + (keys[base] < key);
}

uint64_t kyro__rmi_mispredict(const struct kyro__rmi *r, uint64_t key,
			      struct kyro__rmi_counters *c)
{
	if (c)
		bump(&c->mispredicts);
	return kyro__lower_bound_binary(r->keys, r->n, key);
}

/* The level's own lookups (rmi_lookup.h): one indirect call, to a target
 * that stays the same for the life of the index, so it predicts well. */
uint64_t kyro__rmi_lower_bound(const struct kyro__rmi *r, uint64_t key,
			       struct kyro__rmi_counters *c)
{
	return r->ops.lower_bound(r, key, c);
}

void kyro__rmi_lower_bound_batch(const struct kyro__rmi *r, const uint64_t *q,
				 uint64_t *out, size_t count,
				 struct kyro__rmi_counters *c)
{
	r->ops.lower_bound_batch(r, q, out, count, c);
}

void kyro__rmi_window(const struct kyro__rmi *r, uint64_t key, uint64_t *lo,
		      uint64_t *hi)
{
	if (r->n == 0 || key < r->m.first) {
		*lo = *hi = 0;
		return;
	}
	if (key > r->m.last) {
		*lo = *hi = r->n;
		return;
	}
	struct window w;
	model_window(&r->m, key, &w);
	*lo = w.lo;
	*hi = w.hi;
}

uint64_t kyro__rmi_predict(const struct kyro__rmi *r, uint64_t key)
{
	if (r->n == 0 || key < r->m.first)
		return 0;
	if (key > r->m.last)
		return r->n;
	const unsigned char *leaf = leaf_of(&r->m, key);
	return get_le64(leaf + 16) + predict_off(get_le64(leaf), get_lef64(leaf + 8),
					      get_le32(leaf + 24), key);
}

int kyro__rmi_check_all(const struct kyro__rmi *r, uint64_t *bad,
			uint64_t *first_bad)
{
	uint64_t nbad = 0;
	uint64_t first = r->n;
	for (uint64_t i = 0; i < r->n; i++) {
		uint64_t lo, hi;
		kyro__rmi_window(r, r->keys[i], &lo, &hi);
		if (i < lo || i >= hi) {
			if (nbad++ == 0)
				first = i;
		}
	}
	*bad = nbad;
	*first_bad = first;
	return nbad ? KYRO_ECORRUPT : 0;
}

void kyro__rmi_count_windows(struct kyro__rmi *r, int on)
{
	r->windows = on != 0;
}

int kyro__rmi_set_simd(struct kyro__rmi *r, int level)
{
	const struct kyro__simd_ops *ops = kyro__simd_ops_for(level);
	if (ops == NULL)
		return ENOTSUP;
	r->ops = *ops;
	r->simd = level;
	return 0;
}

void kyro__rmi_info(const struct kyro__rmi *r, struct kyro__rmi_info *info)
{
	info->keys = r->n;
	info->leaves = r->leaves;
	info->router_bits = r->bits;
	info->bytes = r->bytes;
	info->generation = r->gen;
	info->simd = r->simd;
}

void kyro__rmi_free(struct kyro__rmi *r)
{
	free(r);
}

/* ---- load ------------------------------------------------------------ */

uint64_t kyro__rmi_key_sample_hash(const uint64_t *keys, uint64_t n)
{
	unsigned char buf[8 * SAMPLE_KEYS];
	const uint64_t m = n < SAMPLE_KEYS ? n : SAMPLE_KEYS;
	for (uint64_t j = 0; j < m; j++)
		put_le64(buf + 8 * j, keys[(uint64_t)((u128)j * n / m)]);
	return XXH3_64bits(buf, (size_t)(8 * m));
}

/* The router's rules (see the top): its c non-decreasing from 0, every
 * bucket up to the last key's below the final entry's c, which is the
 * number of routed leaves *ROUTED, at most LEAVES (all of them before
 * format 4); every scale finite and >= 0. */
static int check_router(const struct model *m, unsigned bits, uint64_t leaves,
			uint64_t *routed, char *errbuf, size_t errlen)
{
	const uint64_t nb = (uint64_t)1 << bits;
	const uint64_t bmax = bucket_of(m, m->last);
	uint64_t prev = 0;
	for (uint64_t b = 0; b <= nb; b++) {
		const unsigned char *e = m->router + ENTRY_SIZE * b;
		const uint64_t c = get_le32(e + 8);
		const float scale = get_lef32(e + 12);
		if (c < prev || c > leaves || (b == 0 && c != 0)) {
			kyro__rmi_set_err(errbuf, errlen,
					  "index router entry %llu (%llu) "
					  "breaks the order "
					  "0 <= ... <= %llu",
					  (unsigned long long)b,
					  (unsigned long long)c,
					  (unsigned long long)leaves);
			return KYRO_ECORRUPT;
		}
		if (!isfinite(scale) || !(scale >= 0)) {
			kyro__rmi_set_err(
				errbuf, errlen,
				"index router entry %llu has a bad scale (%g)",
				(unsigned long long)b, (double)scale);
			return KYRO_ECORRUPT;
		}
		prev = c;
	}
	if ((m->split == EPS_NO_SPLIT && prev != leaves) || prev == 0 ||
	    get_le32(m->router + ENTRY_SIZE * bmax + 8) >= prev) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"index router does not end at its %llu leaves",
			(unsigned long long)(m->split == EPS_NO_SPLIT ? leaves
								     : prev));
		return KYRO_ECORRUPT;
	}
	*routed = prev;
	return 0;
}

/* A line leaf: its start is POS, its slope finite and >= 0, and it is not
 * marked split. */
static int check_line(const struct model *m, uint64_t l, uint64_t pos,
		      char *errbuf, size_t errlen)
{
	const unsigned char *leaf = m->leaves + LEAF_SIZE * l;
	const double slope = get_lef64(leaf + 8);
	if (get_le64(leaf + 16) != pos || !isfinite(slope) || !(slope >= 0) ||
	    get_le16(leaf + 28) == m->split) {
		kyro__rmi_set_err(errbuf, errlen,
				  "index leaf %llu is malformed (start %llu, "
				  "expected %llu)",
				  (unsigned long long)l,
				  (unsigned long long)get_le64(leaf + 16),
				  (unsigned long long)pos);
		return KYRO_ECORRUPT;
	}
	return 0;
}

/* Split leaf L, its sub-leaves from *NEXT on (format 4): at least two,
 * within the records, line leaves tiling the leaf's run in order, their
 * reference keys increasing from the leaf's own.  Advances *NEXT past
 * them. */
static int check_split(const struct model *m, uint64_t l, uint64_t leaves,
		       uint64_t *next, char *errbuf, size_t errlen)
{
	const unsigned char *leaf = m->leaves + LEAF_SIZE * l;
	const uint64_t j = get_le64(leaf + 8), k = get_le16(leaf + 30);
	uint64_t pos = get_le64(leaf + 16);
	const uint64_t end = pos + get_le32(leaf + 24);
	if (j != *next || k < 2 || k > leaves - j) {
		kyro__rmi_set_err(errbuf, errlen,
				  "index leaf %llu names sub-leaves %llu..+%llu, "
				  "expected from %llu within %llu",
				  (unsigned long long)l, (unsigned long long)j,
				  (unsigned long long)k,
				  (unsigned long long)*next,
				  (unsigned long long)leaves);
		return KYRO_ECORRUPT;
	}
	uint64_t ref = get_le64(leaf);
	for (uint64_t s = j; s < j + k; s++) {
		const unsigned char *sub = m->leaves + LEAF_SIZE * s;
		int err = check_line(m, s, pos, errbuf, errlen);
		if (!err && (s == j ? get_le64(sub) != ref
				    : get_le64(sub) <= ref)) {
			kyro__rmi_set_err(errbuf, errlen,
					  "index sub-leaf %llu is out of order",
					  (unsigned long long)s);
			err = KYRO_ECORRUPT;
		}
		if (err)
			return err;
		ref = get_le64(sub);
		pos += get_le32(sub + 24);
	}
	if (pos != end) {
		kyro__rmi_set_err(errbuf, errlen,
				  "index leaf %llu's sub-leaves cover %llu "
				  "keys of its %llu",
				  (unsigned long long)l,
				  (unsigned long long)(pos - get_le64(leaf + 16)),
				  (unsigned long long)get_le32(leaf + 24));
		return KYRO_ECORRUPT;
	}
	*next = j + k;
	return 0;
}

/* The header-independent rules of the router and leaves (see the top). */
static int check_tables(const struct model *m, unsigned bits, uint64_t leaves,
			uint64_t n, char *errbuf, size_t errlen)
{
	uint64_t routed;
	int err = check_router(m, bits, leaves, &routed, errbuf, errlen);
	if (err)
		return err;
	uint64_t pos = 0, next = routed;
	for (uint64_t l = 0; l < routed && !err; l++) {
		const unsigned char *leaf = m->leaves + LEAF_SIZE * l;
		if (get_le64(leaf + 16) != pos)
			err = check_line(m, l, pos, errbuf, errlen);
		else if (get_le16(leaf + 28) == m->split)
			err = check_split(m, l, leaves, &next, errbuf, errlen);
		else
			err = check_line(m, l, pos, errbuf, errlen);
		pos += get_le32(leaf + 24);
	}
	if (err)
		return err;
	if (pos != n || next != leaves) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"index leaves cover %llu keys, the snapshot has %llu "
			"(%llu of %llu records in use)",
			(unsigned long long)pos, (unsigned long long)n,
			(unsigned long long)next, (unsigned long long)leaves);
		return KYRO_ECORRUPT;
	}
	return 0;
}

/* The header's own fields, as load checks and uses them. */
struct header {
	uint32_t version, flags;
	unsigned bits, shift;
	uint64_t leaves;
};

/* The rules of the image by itself: size, magic, version, flags, shape,
 * exact length and checksum.  Fills *H. */
/* The header of an image of SIZE bytes (only its first HDR_SIZE bytes
 * are read): magic, version, flags, shape, and the size it implies. */
static int check_header(const unsigned char *img, size_t size,
			struct header *h, char *errbuf, size_t errlen)
{
	if (img == NULL || size < HDR_SIZE + SUM_SIZE) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"index truncated: %zu bytes, a header and checksum "
			"need %d",
			img ? size : 0, HDR_SIZE + SUM_SIZE);
		return KYRO_ECORRUPT;
	}
	if (memcmp(img, RMI_MAGIC, 8) != 0) {
		kyro__rmi_set_err(errbuf, errlen,
				  "not a KyroDB index (bad magic)");
		return KYRO_ECORRUPT;
	}
	const uint32_t version = get_le32(img + 8);
	if (version < KYRO_RMI_VERSION_SAMPLED || version > KYRO_RMI_VERSION) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"index format version %u, this build reads versions "
			"%d to %d (rebuild the index with kyro-rmi-build)",
			version, KYRO_RMI_VERSION_SAMPLED, KYRO_RMI_VERSION);
		return KYRO_EVERSION;
	}
	h->version = version;
	h->flags = get_le32(img + 12);
	h->bits = img[60];
	h->shift = img[61];
	h->leaves = get_le32(img + 56);
	if ((h->flags & ~FLAG_LOG) != 0 || get_le16(img + 62) != 0) {
		kyro__rmi_set_err(errbuf, errlen,
				  "index has unknown flags 0x%x", h->flags);
		return KYRO_ECORRUPT;
	}
	if (h->bits < KYRO_RMI_MIN_BITS || h->bits > KYRO_RMI_MAX_BITS ||
	    h->leaves == 0) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"index header is malformed (%u router bits, %llu "
			"leaves)",
			h->bits, (unsigned long long)h->leaves);
		return KYRO_ECORRUPT;
	}
	const uint64_t want = image_bytes(h->bits, h->leaves);
	if ((uint64_t)size != want) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"index %s: %zu bytes, its header describes %llu",
			(uint64_t)size < want ? "truncated"
					      : "has trailing bytes",
			size, (unsigned long long)want);
		return KYRO_ECORRUPT;
	}
	return 0;
}

static int check_image(const unsigned char *img, size_t size,
		       struct header *h, char *errbuf, size_t errlen)
{
	int err = check_header(img, size, h, errbuf, errlen);
	if (err)
		return err;
	const uint64_t stored = get_le64(img + size - SUM_SIZE);
	const uint64_t computed = XXH3_64bits(img, size - SUM_SIZE);
	if (stored != computed) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"index checksum mismatch (stored %016llx, computed "
			"%016llx)",
			(unsigned long long)stored,
			(unsigned long long)computed);
		return KYRO_ECORRUPT;
	}
	return 0;
}

/* The intact image IMG: is it the index of this snapshot, N keys from
 * FIRST to LAST (0 and 0 when N is 0) of generation SNAP_GEN whose .bin
 * header checksum is SNAP_SUM?  A stale index is refused.  Version 2's
 * key sample is checked only when the keys are given (SAMPLE_KEYS). */
static int check_snapshot(const unsigned char *img, const struct header *h,
			  uint64_t first, uint64_t last, uint64_t n,
			  uint64_t snap_gen, uint64_t snap_sum,
			  const uint64_t *sample_keys, char *errbuf,
			  size_t errlen)
{
	const uint64_t hn = get_le64(img + 16);
	const uint64_t hgen = get_le64(img + 24);
	if (hgen != snap_gen) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"stale index: built for snapshot generation %llu, "
			"the snapshot is generation %llu",
			(unsigned long long)hgen, (unsigned long long)snap_gen);
		return KYRO_ECORRUPT;
	}
	if (hn != n) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"stale index: built over %llu keys, the snapshot "
			"has %llu",
			(unsigned long long)hn, (unsigned long long)n);
		return KYRO_ECORRUPT;
	}
	if (get_le64(img + 32) != first || get_le64(img + 40) != last) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"stale index: its first/last keys %llu/%llu differ "
			"from the snapshot's %llu/%llu",
			(unsigned long long)get_le64(img + 32),
			(unsigned long long)get_le64(img + 40),
			(unsigned long long)first, (unsigned long long)last);
		return KYRO_ECORRUPT;
	}
	if (h->version != KYRO_RMI_VERSION_SAMPLED &&
	    get_le64(img + 48) != snap_sum) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"stale index: built for another snapshot (header "
			"checksum %016llx, the snapshot's is %016llx)",
			(unsigned long long)get_le64(img + 48),
			(unsigned long long)snap_sum);
		return KYRO_ECORRUPT;
	}
	if (h->version == KYRO_RMI_VERSION_SAMPLED && sample_keys &&
	    get_le64(img + 48) != kyro__rmi_key_sample_hash(sample_keys, n)) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"stale index: key sample checksum mismatch (built "
			"over other keys)");
		return KYRO_ECORRUPT;
	}
	const int logr = (h->flags & FLAG_LOG) != 0;
	if (h->shift != shift_of(logr, first, last, h->bits)) {
		kyro__rmi_set_err(
			errbuf, errlen,
			"index shift %u does not match its key range (%u)",
			h->shift, shift_of(logr, first, last, h->bits));
		return KYRO_ECORRUPT;
	}
	return 0;
}

int kyro__rmi_load(struct kyro__rmi **rp, const void *image, size_t size,
		   const uint64_t *keys, uint64_t n, uint64_t snap_gen,
		   uint64_t snap_sum, char *errbuf, size_t errlen)
{
	const unsigned char *img = image;
	struct header h;

	*rp = NULL;
	if (n > 0 && keys == NULL) {
		kyro__rmi_set_err(errbuf, errlen,
				  "no keys to load the index against");
		return EINVAL;
	}
	int err = check_image(img, size, &h, errbuf, errlen);
	if (!err)
		err = check_snapshot(img, &h, n ? keys[0] : 0,
				     n ? keys[n - 1] : 0, n, snap_gen,
				     snap_sum, keys, errbuf, errlen);
	if (err)
		return err;
	struct model m;
	model_shape(&m, n ? keys[0] : 0, n ? keys[n - 1] : 0,
		    (h.flags & FLAG_LOG) != 0, h.shift);
	if (h.version < KYRO_RMI_VERSION)
		m.split = EPS_NO_SPLIT;
	m.router = img + HDR_SIZE;
	m.leaves = m.router + router_bytes(h.bits);
	err = check_tables(&m, h.bits, h.leaves, n, errbuf, errlen);
	if (err)
		return err;

	struct kyro__rmi *r = calloc(1, sizeof(*r));
	if (r == NULL) {
		kyro__rmi_set_err(errbuf, errlen,
				  "out of memory loading the index");
		return ENOMEM;
	}
	r->m = m;
	r->keys = keys;
	r->n = n;
	r->descend = n >= KYRO_PROBE_KEYS;
	/* The best level is always supported: scalar at least. */
	(void)kyro__rmi_set_simd(r, kyro__simd_selected());
	r->leaves = h.leaves;
	r->bits = h.bits;
	r->bytes = size;
	r->gen = snap_gen;
	*rp = r;
	return 0;
}

int kyro__rmi_probe(const void *head, size_t file_size, uint64_t first,
		    uint64_t last, uint64_t n, uint64_t snap_gen,
		    uint64_t snap_sum, struct kyro__rmi_info *info,
		    char *errbuf, size_t errlen)
{
	struct header h;
	memset(info, 0, sizeof *info);
	int err = check_header(head, file_size, &h, errbuf, errlen);
	if (!err)
		err = check_snapshot(head, &h, first, last, n, snap_gen,
				     snap_sum, NULL, errbuf, errlen);
	if (err)
		return err;
	info->keys = n;
	info->leaves = h.leaves;
	info->router_bits = h.bits;
	info->bytes = file_size;
	info->generation = snap_gen;
	info->simd = kyro__simd_selected();
	return 0;
}

/*
 * The pending index as a hint.  Only what one key routes through is read:
 * two router entries, then a leaf record, and for a split leaf the
 * reference keys its sub-leaf search compares and the sub-leaf's record.
 * None of it is checked, so every number read is bounded before it
 * becomes an offset, and the window is clamped to [0, n]: damage can
 * give a useless window (the caller's bracket test catches it), never a
 * read outside the file's tables.
 */
static int hint_leaf(const struct header *h, uint64_t leaves_at, uint64_t key,
		     unsigned char *rec, kyro__rmi_read_fn rd, void *arg)
{
	const uint64_t j = get_le64(rec + 8), k = get_le16(rec + 30);
	if (k == 0 || j >= h->leaves || k > h->leaves - j)
		return -1;
	/* sub_leaf() over the file: the last sub-leaf whose reference key
	 * is at most KEY, or the first. */
	uint64_t base = j, len = k;
	while (len > 1) {
		const uint64_t half = len / 2;
		unsigned char ref[8];
		if (rd(arg, ref, sizeof ref,
		       leaves_at + LEAF_SIZE * (base + half)))
			return -1;
		base = get_le64(ref) <= key ? base + half : base;
		len -= half;
	}
	return rd(arg, rec, LEAF_SIZE, leaves_at + LEAF_SIZE * base);
}

int kyro__rmi_hint(const void *head, size_t file_size, uint64_t n,
		   uint64_t key, kyro__rmi_read_fn rd, void *arg, uint64_t *lo,
		   uint64_t *hi)
{
	const unsigned char *img = head;
	struct header h;
	if (check_header(img, file_size, &h, NULL, 0))
		return -1;
	struct model m;
	model_shape(&m, get_le64(img + 32), get_le64(img + 40),
		    (h.flags & FLAG_LOG) != 0, h.shift);
	/* Keys outside [first, last] need no model, as in a lookup. */
	if (n == 0 || key < m.first) {
		*lo = *hi = 0;
		return 0;
	}
	if (key > m.last) {
		*lo = *hi = n;
		return 0;
	}
	if (h.shift > 63)
		return -1;
	const uint64_t b = bucket_of(&m, key);
	if (b >= (uint64_t)1 << h.bits)
		return -1;
	unsigned char e[2 * ENTRY_SIZE], rec[LEAF_SIZE];
	if (rd(arg, e, sizeof e, HDR_SIZE + ENTRY_SIZE * b))
		return -1;
	/* The loader's rule for a scale, without which the conversion
	 * in bucket_leaf() is undefined. */
	const float scale = get_lef32(e + 12);
	if (!isfinite(scale) || scale < 0)
		return -1;
	const uint64_t leaf = route_at(e, key);
	const uint64_t leaves_at = HDR_SIZE + router_bytes(h.bits);
	if (leaf >= h.leaves ||
	    rd(arg, rec, sizeof rec, leaves_at + LEAF_SIZE * leaf))
		return -1;
	if (h.version >= KYRO_RMI_VERSION && get_le16(rec + 28) == EPS_SPLIT &&
	    hint_leaf(&h, leaves_at, key, rec, rd, arg))
		return -1;
	/* And for a slope, likewise for predict_off(). */
	const double slope = get_lef64(rec + 8);
	if (!isfinite(slope) || slope < 0)
		return -1;
	struct window w;
	leaf_window(rec, key, &w);
	*lo = w.lo < n ? w.lo : n;
	*hi = w.hi < n ? w.hi : n;
	return *lo <= *hi ? 0 : -1;
}
