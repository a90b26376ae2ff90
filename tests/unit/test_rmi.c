/*
 * test_rmi.c - property tests of the learned index (libkyro/rmi.c,
 * rmi_build.c) and its SIMD probes and lookups (libkyro/simd*.c).
 *
 * Every check asks the index itself: a key present must lie inside the
 * window the model computes for it, and the probe of that window alone
 * must return its exact position, before any fallback could rescue a bad
 * model.  Answers are compared against a plain binary search, and every
 * SIMD variant this CPU runs must agree with the scalar one.
 *
 * Usage: test_rmi [-v]      exit status 0 when all pass; the last line
 * of output is "N passed, N failed".
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "kyro.h"
#include "rmi.h"
#include "simd.h"

/* The snapshot identity (.bin header checksum) the indexes here are bound
 * to: any value will do, as long as build and load agree. */
#define SNAP_SUM 0x5eed5eed5eed5eedull

static int passed, failed, verbose;

static void result(int ok, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void result(int ok, const char *fmt, ...)
{
	va_list ap;
	if (ok)
		passed++;
	else
		failed++;
	if (!ok || verbose) {
		printf("%s: ", ok ? "ok" : "FAIL");
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		putchar('\n');
	}
}

/* Lookups counted in C's window histogram. */
static uint64_t hist_sum(const struct kyro__rmi_counters *c)
{
	uint64_t sum = 0;
	for (int b = 0; b < KYRO_RMI_HIST; b++)
		sum += c->window_hist[b];
	return sum;
}

/* ---- key sets ------------------------------------------------------- */

static uint64_t rng_state = 0x1234567887654321ULL;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double gauss(void)
{
	const double u = ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
	const double v = ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
	return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static void radix_sort(uint64_t *a, uint64_t n)
{
	uint64_t *tmp = malloc(sizeof(*a) * (n ? n : 1));
	if (tmp == NULL)
		abort();
	for (unsigned shift = 0; shift < 64; shift += 16) {
		static uint64_t cnt[65537];
		memset(cnt, 0, sizeof(cnt));
		for (uint64_t i = 0; i < n; i++)
			cnt[((a[i] >> shift) & 0xffff) + 1]++;
		for (unsigned j = 0; j < 65536; j++)
			cnt[j + 1] += cnt[j];
		for (uint64_t i = 0; i < n; i++)
			tmp[cnt[(a[i] >> shift) & 0xffff]++] = a[i];
		memcpy(a, tmp, sizeof(*a) * n);
	}
	free(tmp);
}

/* Sort and drop duplicates; returns the new count. */
static uint64_t sort_unique(uint64_t *a, uint64_t n)
{
	radix_sort(a, n);
	uint64_t m = 0;
	for (uint64_t i = 0; i < n; i++)
		if (m == 0 || a[m - 1] != a[i])
			a[m++] = a[i];
	return m;
}

enum dist {
	D_RANDOM,
	D_DENSE,
	D_DENSE_ZERO,
	D_DENSE_TOP,
	D_LOGNORMAL,
	D_NORMAL,
	D_CLUSTERED,
	D_GAPS,
	D_LOWBITS,
	D_EXTREMES,
	D_POW2,
};

static const char *dist_name(enum dist d)
{
	static const char *const names[] = {
		"random64", "dense", "dense-from-0", "dense-to-max",
		"lognormal", "normal", "clustered", "huge-gaps",
		"low-bits", "with-0-and-max", "powers-of-2",
	};
	return names[d];
}

static uint64_t *make_keys(enum dist d, uint64_t want, uint64_t *np)
{
	uint64_t *a = malloc(sizeof(*a) * (want + 2));
	if (a == NULL)
		abort();
	uint64_t n = 0;
	switch (d) {
	case D_RANDOM:
		for (n = 0; n < want; n++)
			a[n] = rnd();
		break;
	case D_DENSE: {
		const uint64_t base = rnd() >> 1;
		for (n = 0; n < want; n++)
			a[n] = base + n;
		break;
	}
	case D_DENSE_ZERO:
		for (n = 0; n < want; n++)
			a[n] = n;
		break;
	case D_DENSE_TOP:
		for (n = 0; n < want; n++)
			a[n] = UINT64_MAX - (want - 1) + n;
		break;
	case D_LOGNORMAL:
		for (n = 0; n < want; n++)
			a[n] = (uint64_t)(exp(2.0 * gauss()) * 1e12);
		break;
	case D_NORMAL:
		for (n = 0; n < want; n++)
			a[n] = (uint64_t)(9.223372036854775808e18 +
					  gauss() * 2.8823037615171174e17);
		break;
	case D_CLUSTERED: {
		uint64_t k = 0;
		while (n < want) {
			if (n % 1000 == 0)
				k = rnd();
			k += 1 + rnd() % 16;
			a[n++] = k;
		}
		break;
	}
	case D_GAPS: {
		uint64_t k = rnd() % 1000;
		while (n < want) {
			a[n++] = k;
			const uint64_t gap = rnd() % 100 == 0
						     ? (rnd() >> 14) + 1
						     : 1 + rnd() % 100;
			if (UINT64_MAX - k < gap)
				break;
			k += gap;
		}
		break;
	}
	case D_LOWBITS: {
		const uint64_t base = 0xfedcba9800000000ULL;
		for (n = 0; n < want; n++)
			a[n] = base | (rnd() & 0xfffff);
		break;
	}
	case D_EXTREMES:
		for (n = 0; n + 2 < want; n++)
			a[n] = rnd();
		a[n++] = 0;
		a[n++] = UINT64_MAX;
		break;
	case D_POW2:
		for (n = 0; n < 64 && n < want; n++)
			a[n] = (uint64_t)1 << n;
		break;
	}
	*np = sort_unique(a, n);
	return a;
}

/* ---- checks over one key set ----------------------------------------- */

static int nlevels;
static int levels[KYRO_SIMD_NLEVELS];

/* Lower bounds to ask about: absent neighbours, extremes, random. */
static uint64_t probe_keys(const uint64_t *keys, uint64_t n, uint64_t *q,
			   uint64_t max)
{
	uint64_t m = 0;
	q[m++] = 0;
	q[m++] = 1;
	q[m++] = UINT64_MAX;
	q[m++] = UINT64_MAX - 1;
	for (uint64_t i = 0; i < n && m + 4 < max; i++) {
		const uint64_t j = n < max / 4 ? i : rnd() % n;
		q[m++] = keys[j] + 1;
		q[m++] = keys[j] - 1;
		q[m++] = rnd();
		if (j + 1 < n)
			q[m++] = keys[j] + (keys[j + 1] - keys[j]) / 2;
	}
	return m;
}

/* Indexes built with each kind of router: both must be exercised. */
/* An index file in memory, read as kyro__rmi_hint() reads a file: LEN
 * bytes at OFF, or nonzero when they are not all there.  Counts the
 * reads that asked for bytes past the end. */
struct mem_file {
	const unsigned char *img;
	size_t size;
	uint64_t past_end;
};

static int mem_read(void *arg, void *buf, size_t len, uint64_t off)
{
	struct mem_file *f = arg;
	if (off > f->size || len > f->size - off) {
		f->past_end++;
		return -1;
	}
	memcpy(buf, f->img + off, len);
	return 0;
}

/* The hint of an unloaded index must be the loaded index's own window
 * for every key of Q[0..M) and of KEYS[0..N). */
static void check_hint(const char *label, const struct kyro__rmi *r,
		       const unsigned char *img, size_t size,
		       const uint64_t *keys, uint64_t n, const uint64_t *q,
		       uint64_t m)
{
	struct mem_file f = { img, size, 0 };
	uint64_t differ = 0, nohint = 0, outside = 0;
	for (uint64_t j = 0; j < m + n; j++) {
		const uint64_t x = j < m ? q[j] : keys[j - m];
		uint64_t lo, hi, wlo, whi;
		kyro__rmi_window(r, x, &wlo, &whi);
		if (kyro__rmi_hint(img, size, n, x, mem_read, &f, &lo, &hi)) {
			nohint++;
			continue;
		}
		differ += lo != wlo || hi != whi;
		const uint64_t want = kyro__lower_bound_binary(keys, n, x);
		outside += want < lo || want > hi;
	}
	result(nohint == 0 && differ == 0 && outside == 0 && f.past_end == 0,
	       "%s: the unloaded index's hint is the loaded one's window for "
	       "%" PRIu64 " keys (%" PRIu64 " no hint, %" PRIu64 " differ, "
	       "%" PRIu64 " miss the lower bound)",
	       label, m + n, nohint, differ, outside);
}

static uint64_t built_kind[2];
static uint64_t split_sets; /* key sets whose index has split leaves */

static void check_set(const char *name, const uint64_t *keys, uint64_t n,
		      const struct kyro_rmi_params *p)
{
	char err[256] = "";
	void *img = NULL;
	size_t size = 0;
	struct kyro__rmi_build_stats st;
	struct kyro__rmi *r = NULL;
	uint64_t *q = NULL;
	char label[160];

	snprintf(label, sizeof(label), "%s n=%" PRIu64 " leaves=%u bits=%u",
		 name, n, p ? p->leaves : 0, p ? p->router_bits : 0);
	const uint64_t gen = 7 + n;
	int rc = kyro__rmi_train(keys, n, gen, SNAP_SUM,
				 p, &img, &size, &st, err,
				 sizeof(err));
	result(rc == 0, "%s: build (%s)", label, rc ? err : "ok");
	if (rc)
		goto out;
	built_kind[st.router_log != 0]++;
	rc = kyro__rmi_load(&r, img, size, keys, n, gen, SNAP_SUM,
			    err, sizeof(err));
	result(rc == 0, "%s: load (%s)", label, rc ? err : "ok");
	if (rc)
		goto out;
	if (verbose)
		printf("   %s: %" PRIu64 " leaves, %" PRIu64 " bits, %" PRIu64
		       " bytes, mean window %.1f, max %.0f, %" PRIu64
		       " split into %" PRIu64 ", bound %" PRIu64 "\n",
		       label, st.leaves, st.router_bits, st.bytes,
		       st.mean_window, st.max_window, st.split_leaves,
		       st.sub_leaves, st.bound);
	split_sets += st.split_leaves > 0;
	/* The bound holds wherever the build met one. */
	result(st.bound == 0 || st.max_window <= (double)st.bound,
	       "%s: widest window %.0f within the bound %" PRIu64, label,
	       st.max_window, st.bound);

	/* Every key present: inside its own window, at its exact position
	 * by the probe of that window alone, in every SIMD variant. */
	uint64_t outside = 0, wrong = 0, first_bad = UINT64_MAX;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t lo, hi;
		kyro__rmi_window(r, keys[i], &lo, &hi);
		if (i < lo || i >= hi || hi > n) {
			if (outside++ == 0)
				first_bad = i;
			continue;
		}
		for (int v = 0; v < nlevels; v++) {
			const kyro__simd_probe_fn f =
				kyro__simd_ops_for(levels[v])->probe;
			if (f(keys, n, lo, hi, keys[i]) != i) {
				if (wrong++ == 0)
					first_bad = i;
			}
		}
	}
	result(outside == 0, "%s: every key inside its own window (%" PRIu64
	       " outside, first at %" PRIu64 ")", label, outside, first_bad);
	result(wrong == 0, "%s: every probe of the window alone finds the "
	       "key's position, all %d SIMD variants (%" PRIu64 " wrong)",
	       label, nlevels, wrong);
	uint64_t bad, fb;
	rc = kyro__rmi_check_all(r, &bad, &fb);
	result(rc == 0 && bad == 0, "%s: kyro__rmi_check_all finds nothing",
	       label);

	/* Lower bounds of present and absent keys, every variant. */
	const uint64_t qmax = 400000;
	q = malloc(sizeof(*q) * qmax);
	if (q == NULL)
		abort();
	const uint64_t m = probe_keys(keys, n, q, qmax);
	uint64_t lb_wrong = 0, win_wrong = 0, variant_wrong = 0;
	struct kyro__rmi_counters c = {0};
	for (uint64_t j = 0; j < m; j++) {
		const uint64_t want = kyro__lower_bound_binary(keys, n, q[j]);
		uint64_t lo, hi;
		kyro__rmi_window(r, q[j], &lo, &hi);
		if (want < lo || want > hi)
			win_wrong++;
		for (int v = 0; v < nlevels; v++) {
			kyro__rmi_set_simd(r, levels[v]);
			if (kyro__rmi_lower_bound(r, q[j], &c) != want)
				lb_wrong++;
			if (want >= lo && want <= hi &&
			    kyro__simd_ops_for(levels[v])->probe(
				    keys, n, lo, hi, q[j]) != want)
				variant_wrong++;
		}
	}
	/* Windows are not counted by default, and counted exactly, one per
	 * lookup, single or batched, once asked for, in the counters passed
	 * and only there (NULL counts nothing). */
	const uint64_t unasked = hist_sum(&c);
	kyro__rmi_count_windows(r, 1);
	uint64_t counted = 0;
	for (uint64_t i = 0; i < n; i += 1 + n / 20000) {
		for (int v = 0; v < nlevels; v++) {
			kyro__rmi_set_simd(r, levels[v]);
			if (kyro__rmi_lower_bound(r, keys[i], &c) != i ||
			    kyro__rmi_lower_bound(r, keys[i], NULL) != i)
				lb_wrong++;
			counted++;
		}
	}
	/* The batched path gives the single path's answers. */
	uint64_t *out = malloc(sizeof(*out) * (m ? m : 1));
	if (out == NULL)
		abort();
	kyro__rmi_lower_bound_batch(r, q, out, m, &c);
	counted += m;
	uint64_t batch_wrong = 0;
	for (uint64_t j = 0; j < m; j++)
		if (out[j] != kyro__lower_bound_binary(keys, n, q[j]))
			batch_wrong++;
	check_hint(label, r, img, size, keys, n, q, m);
	result(win_wrong == 0, "%s: the window holds the lower bound of "
	       "%" PRIu64 " absent/boundary keys (%" PRIu64 " not)",
	       label, m, win_wrong);
	result(lb_wrong == 0 && variant_wrong == 0,
	       "%s: lower bounds exact in every SIMD variant (%" PRIu64
	       " wrong, %" PRIu64 " by the window probe alone)",
	       label, lb_wrong, variant_wrong);
	/* Batched again, uncounted: the answers, and nothing counted. */
	const struct kyro__rmi_counters before = c;
	kyro__rmi_lower_bound_batch(r, q, out, m, NULL);
	for (uint64_t j = 0; j < m; j++)
		if (out[j] != kyro__lower_bound_binary(keys, n, q[j]))
			batch_wrong++;
	free(out);
	result(batch_wrong == 0, "%s: batched lower bounds exact (%" PRIu64
	       " wrong of %" PRIu64 ", twice)", label, batch_wrong, m);
	result(c.mispredicts == 0,
	       "%s: no mispredicts counted (%" PRIu64 " of %" PRIu64
	       " lookups)", label, c.mispredicts, hist_sum(&c));
	result(unasked == 0 && hist_sum(&c) == counted &&
		       memcmp(&before, &c, sizeof c) == 0,
	       "%s: windows counted only when asked, then all %" PRIu64
	       " (%" PRIu64 " before, %" PRIu64 " after), none uncounted",
	       label, counted, unasked, hist_sum(&c));
out:
	free(q);
	kyro__rmi_free(r);
	free(img);
}

/* ---- the probes alone ------------------------------------------------ */

static void check_probes(void)
{
	enum { N = 4096 };
	uint64_t *k = malloc(sizeof(*k) * N);
	if (k == NULL)
		abort();
	uint64_t wrong = 0;
	for (int round = 0; round < 4; round++) {
		for (uint64_t i = 0; i < N; i++)
			k[i] = round == 0 ? rnd() : round == 1 ? rnd() % 5000
			     : round == 2 ? rnd() | 0x8000000000000000ULL
					  : rnd() & 0x7fffffffffffffffULL;
		const uint64_t n = sort_unique(k, N);
		for (int t = 0; t < 20000; t++) {
			uint64_t lo = rnd() % (n + 1);
			uint64_t len = rnd() % 300;
			if (lo + len > n)
				len = n - lo;
			const uint64_t hi = lo + len;
			uint64_t key;
			switch (t % 4) {
			case 0: key = rnd(); break;
			case 1: key = lo < n ? k[lo + rnd() % (len ? len : 1)]
					     : rnd();
				break;
			case 2: key = t & 8 ? 0 : UINT64_MAX; break;
			default: key = (lo < n ? k[lo] : 0) + t % 3 - 1; break;
			}
			uint64_t want = lo;
			while (want < hi && k[want] < key)
				want++;
			for (int v = 0; v < nlevels; v++)
				if (kyro__simd_ops_for(levels[v])->probe(
					    k, n, lo, hi, key) != want)
					wrong++;
		}
	}
	result(wrong == 0, "SIMD probes: every variant counts windows of 0..300 "
	       "keys exactly, sign bit set and clear (%" PRIu64 " wrong)",
	       wrong);

	/*
	 * Every window of up to 40 keys in arrays of 0..80 keys, probed in
	 * an allocation of exactly the array's size (under ASan a read past
	 * either end fails here), and in copies whose start takes each of
	 * the eight 8-byte positions in a 64-byte line: the short-window
	 * path reads whole lines.  The keys straddle the sign bit, and the
	 * probe keys fall on, between and beyond them.
	 */
	wrong = 0;
	uint64_t paths = 0;
	for (uint64_t n = 0; n <= 80; n++) {
		for (unsigned shift = 0; shift < 8; shift++) {
			uint64_t *pad = aligned_alloc(64, 64 * ((n + 7) / 8 + 2));
			if (pad == NULL)
				abort();
			uint64_t *a = malloc(8 * n + !n);
			if (a == NULL)
				abort();
			for (uint64_t i = 0; i < n; i++)
				a[i] = 0x7fffffffffffffe0ULL + 2 * i;
			uint64_t *view = pad + shift;
			memcpy(view, a, 8 * n);
			for (uint64_t lo = 0; lo <= n; lo++) {
				for (uint64_t hi = lo; hi <= n && hi <= lo + 40;
				     hi++) {
					for (uint64_t d = 0; d <= 2 * n + 2;
					     d += 1 + (n > 20)) {
						const uint64_t key =
							0x7fffffffffffffdfULL + d;
						uint64_t want = lo;
						while (want < hi && a[want] < key)
							want++;
						uint64_t f;
						uint32_t win;
						paths += kyro__probe_lines(
							view, n, lo, hi, &f,
							&win);
						for (int v = 0; v < nlevels; v++) {
							const struct kyro__simd_ops *o =
								kyro__simd_ops_for(
									levels[v]);
							wrong += o->probe(a, n, lo, hi,
									  key) != want;
							wrong += o->probe(view, n, lo,
									  hi, key) != want;
						}
					}
				}
			}
			free(a);
			free(pad);
		}
	}
	result(wrong == 0 && paths > 0,
	       "SIMD probes: every window of 0..40 keys in arrays of 0..80, "
	       "at every alignment, exact in every variant, no read outside "
	       "the array (%" PRIu64 " wrong; %" PRIu64 " by whole lines)",
	       wrong, paths);

	wrong = 0;
	for (uint64_t n = 0; n < 200; n++) {
		for (uint64_t i = 0; i < n; i++)
			k[i] = 3 * i + 1;
		for (uint64_t key = 0; key < 3 * n + 3; key++) {
			const uint64_t want = key ? (key + 1) / 3 : 0;
			if (kyro__lower_bound_binary(k, n, key) !=
			    (want < n ? want : n))
				wrong++;
		}
	}
	result(wrong == 0,
	       "kyro__lower_bound_binary: exact for n = 0..199 "
	       "(%" PRIu64 " wrong)",
	       wrong);
	free(k);
}

/* ---- damaged and stale images ------------------------------------------ */

static void fix_checksum(unsigned char *img, size_t size)
{
	const uint64_t h = XXH3_64bits(img, size - 8);
	for (int i = 0; i < 8; i++)
		img[size - 8 + i] = (unsigned char)(h >> (8 * i));
}

/* IMG as the previous format version wrote it: version 2, and at byte 48
 * the key sample hash of keys[0..N) instead of the snapshot's identity
 * (computed here from the format's own words, see the top of rmi.c). */
static void as_version2(unsigned char *img, size_t size, const uint64_t *keys,
			uint64_t n)
{
	static unsigned char buf[8 * 1024];
	const uint64_t m = n < 1024 ? n : 1024;
	for (uint64_t j = 0; j < m; j++) {
		const uint64_t k = keys[(uint64_t)((unsigned __int128)j * n / m)];
		for (int b = 0; b < 8; b++)
			buf[8 * j + b] = (unsigned char)(k >> (8 * b));
	}
	const uint64_t h = XXH3_64bits(buf, (size_t)(8 * m));
	memset(img + 8, 0, 4);
	img[8] = 2;
	for (int b = 0; b < 8; b++)
		img[48 + b] = (unsigned char)(h >> (8 * b));
	fix_checksum(img, size);
}

/* Is position I one of those the index's key sample hash covers? */
static int is_sampled(uint64_t i, uint64_t n)
{
	const uint64_t m = n < 1024 ? n : 1024;
	const uint64_t j = (uint64_t)((unsigned __int128)i * m / n);
	for (uint64_t k = j ? j - 1 : 0; k <= j + 1 && k < m; k++)
		if ((uint64_t)((unsigned __int128)k * n / m) == i)
			return 1;
	return 0;
}

static int refused(const void *img, size_t size, const uint64_t *keys,
		   uint64_t n, uint64_t gen, int want_rc, const char *word,
		   char *msg, size_t msglen)
{
	struct kyro__rmi *r = NULL;
	msg[0] = '\0';
	const int rc = kyro__rmi_load(&r, img, size, keys, n, gen, SNAP_SUM,
				      msg, msglen);
	const int ok = rc != 0 && r == NULL && msg[0] != '\0' &&
		       (want_rc == 0 || rc == want_rc) &&
		       (word == NULL || strstr(msg, word) != NULL);
	kyro__rmi_free(r);
	return ok;
}

static void check_damage(void)
{
	uint64_t n;
	uint64_t *keys = make_keys(D_RANDOM, 20000, &n);
	const uint64_t gen = 42;
	char err[256];
	void *vimg;
	size_t size;
	int rc = kyro__rmi_train(keys, n, gen, SNAP_SUM,
				 NULL, &vimg, &size, NULL, err,
				 sizeof(err));
	result(rc == 0, "damage: build the reference index (%s)",
	       rc ? err : "ok");
	if (rc)
		return;
	unsigned char *img = vimg;
	unsigned char *copy = malloc(size + 64);
	if (copy == NULL)
		abort();

	/* Every single byte flipped, anywhere, is refused. */
	uint64_t accepted = 0;
	for (size_t i = 0; i < size; i++) {
		memcpy(copy, img, size);
		copy[i] ^= (unsigned char)(1u << (i % 8));
		if (!refused(copy, size, keys, n, gen, 0, NULL, err,
			     sizeof(err)))
			accepted++;
	}
	result(accepted == 0, "damage: each of %zu single-bit flips is "
	       "refused (%" PRIu64 " accepted)", size, accepted);
	memcpy(copy, img, size);
	copy[size / 2] ^= 0xff;
	result(refused(copy, size, keys, n, gen, KYRO_ECORRUPT, "checksum",
		       err, sizeof(err)),
	       "damage: a flipped byte is refused: \"%s\"", err);

	/* Truncated, extended, empty. */
	const size_t cuts[] = { 0, 1, 8, 71, 72, 100, size / 2, size - 9,
				size - 8, size - 1 };
	int all = 1;
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
		all &= refused(img, cuts[i], keys, n, gen, KYRO_ECORRUPT, NULL,
			       err, sizeof(err));
	result(all, "damage: truncated images are refused");
	result(refused(img, size - 1, keys, n, gen, KYRO_ECORRUPT,
		       "truncated", err, sizeof(err)),
	       "damage: truncation named: \"%s\"", err);
	memcpy(copy, img, size);
	memset(copy + size, 0, 64);
	result(refused(copy, size + 64, keys, n, gen, KYRO_ECORRUPT,
		       "trailing", err, sizeof(err)),
	       "damage: trailing bytes are refused: \"%s\"", err);
	result(refused(NULL, 0, keys, n, gen, KYRO_ECORRUPT, NULL, err,
		       sizeof(err)),
	       "damage: a NULL image is refused");

	/* Bad magic, other version (checksum made consistent). */
	memcpy(copy, img, size);
	copy[0] = 'X';
	fix_checksum(copy, size);
	result(refused(copy, size, keys, n, gen, KYRO_ECORRUPT, "magic", err,
		       sizeof(err)),
	       "damage: bad magic is refused: \"%s\"", err);
	memcpy(copy, img, size);
	copy[8] = 1;
	fix_checksum(copy, size);
	result(refused(copy, size, keys, n, gen, KYRO_EVERSION, "version",
		       err, sizeof(err)),
	       "damage: format version 1 is refused: \"%s\"", err);
	memcpy(copy, img, size);
	copy[8] = 5;
	fix_checksum(copy, size);
	result(refused(copy, size, keys, n, gen, KYRO_EVERSION, "version",
		       err, sizeof(err)),
	       "damage: format version 5 is refused: \"%s\"", err);

	/* Stale: another generation, key count, or other keys. */
	result(refused(img, size, keys, n, gen + 1, KYRO_ECORRUPT,
		       "generation", err, sizeof(err)),
	       "stale: wrong generation is refused: \"%s\"", err);
	result(refused(img, size, keys, n - 1, gen, KYRO_ECORRUPT, "keys",
		       err, sizeof(err)),
	       "stale: wrong key count is refused: \"%s\"", err);
	uint64_t *other = malloc(sizeof(*other) * n);
	if (other == NULL)
		abort();
	memcpy(other, keys, sizeof(*other) * n);
	/* Version 3 is bound to the snapshot's identity, its .bin header
	 * checksum: another snapshot's is refused, reading no key. */
	struct kyro__rmi *r2 = NULL;
	rc = kyro__rmi_load(&r2, img, size, keys, n, gen, SNAP_SUM + 1, err,
			    sizeof(err));
	result(rc == KYRO_ECORRUPT && r2 == NULL && strstr(err, "stale"),
	       "stale: another snapshot (header checksum) is refused: "
	       "\"%s\"", err);
	kyro__rmi_free(r2);
	/* Versions 2 and 3, without split leaves, are still loaded: an
	 * image with no room for sub-leaves (max_size holds exactly its 64
	 * leaves), relabelled. */
	const size_t usize = 64 + ((16 * 257 + 63) & ~(size_t)63) + 32 * 64 + 8;
	const struct kyro_rmi_params up = { 64, 8, usize, 0 };
	void *uimg = NULL;
	size_t usz = 0;
	rc = kyro__rmi_train(keys, n, gen, SNAP_SUM, &up, &uimg, &usz, NULL,
			     err, sizeof(err));
	unsigned char *old = uimg;
	result(rc == 0 && usz == usize, "version 3: an unsplit image (%s)",
	       rc ? err : "ok");
	if (rc)
		abort();
	old[8] = 3;
	/* In version 3, an eps_lo of 0xfffe is an error bound, not the
	 * split mark: the leaf's window is just wide. */
	const size_t uleaves = 64 + ((16 * 257 + 63) & ~(size_t)63);
	old[uleaves + 32 * 5 + 28] = 0xfe;
	old[uleaves + 32 * 5 + 29] = 0xff;
	fix_checksum(old, usz);
	r2 = NULL;
	rc = kyro__rmi_load(&r2, old, usz, keys, n, gen, SNAP_SUM, err,
			    sizeof(err));
	uint64_t wrong3 = rc ? n : 0;
	for (uint64_t i = 0; r2 && i < n; i++)
		if (kyro__rmi_lower_bound(r2, keys[i], NULL) != i)
			wrong3++;
	result(rc == 0 && wrong3 == 0,
	       "version 3: loaded, eps 0xfffe a bound, every key found (%s, "
	       "%" PRIu64 " wrong)", rc ? err : "ok", wrong3);
	kyro__rmi_free(r2);
	/* Version 2 is still checked against its sample of the keys. */
	as_version2(old, usz, keys, n);
	r2 = NULL;
	rc = kyro__rmi_load(&r2, old, usz, keys, n, gen, SNAP_SUM + 1, err,
			    sizeof(err));
	uint64_t wrong2 = rc ? n : 0;
	for (uint64_t i = 0; r2 && i < n; i++)
		if (kyro__rmi_lower_bound(r2, keys[i], NULL) != i)
			wrong2++;
	result(rc == 0 && wrong2 == 0,
	       "version 2: loaded, every key found (%s, %" PRIu64 " wrong)",
	       rc ? err : "ok", wrong2);
	kyro__rmi_free(r2);
	/* A position the key sample hash covers: j * n / 1024. */
	const uint64_t sp = (uint64_t)((unsigned __int128)512 * n / 1024);
	other[sp] = other[sp] + (other[sp + 1] - other[sp]) / 2;
	result(refused(old, usz, other, n, gen, KYRO_ECORRUPT,
		       "key sample checksum", err, sizeof(err)),
	       "stale: version 2 over different keys (same count, same "
	       "ends) is refused: \"%s\"", err);
	memcpy(other, keys, sizeof(*other) * n);
	other[0] = keys[0] - 1 == keys[0] ? keys[0] : keys[0] - 1;
	result(refused(img, size, other, n, gen, KYRO_ECORRUPT, "first",
		       err, sizeof(err)),
	       "stale: a different first key is refused: \"%s\"", err);

	/*
	 * Consistent damage: fields rewritten and the checksum recomputed,
	 * as a bug might write them.  Load may accept such an image, but
	 * then every lookup must still be exact (a bad window costs a
	 * mispredict and a binary search, never a wrong answer).
	 */
	struct kyro__rmi *r = NULL;
	uint64_t wrong = 0, accepted_mut = 0;
	const size_t leaves_off = 64 + ((16 * ((size_t)1 << img[60]) + 16 + 63) &
					~(size_t)63);
	const uint64_t nleaves = (uint64_t)img[56] | (uint64_t)img[57] << 8 |
				 (uint64_t)img[58] << 16 |
				 (uint64_t)img[59] << 24;
	for (int t = 0; t < 300; t++) {
		memcpy(copy, img, size);
		const size_t leaf = leaves_off + 32 * (rnd() % nleaves);
		switch (t % 5) {
		case 0: /* epsilons zeroed */
			memset(copy + leaf + 28, 0, 4);
			break;
		case 1: /* slope scaled */
			copy[leaf + 8 + 6] ^= 0x10;
			break;
		case 2: /* reference key moved */
			copy[leaf + 1] ^= (unsigned char)rnd();
			break;
		case 3: /* a router entry's leaf, key or scale changed */
		{
			static const unsigned at[3][2] = { { 0, 8 }, { 8, 2 },
							   { 12, 4 } };
			const unsigned *f = at[rnd() % 3];
			copy[64 + 16 * (rnd() % ((size_t)1 << img[60])) + f[0] +
			     rnd() % f[1]] ^= (unsigned char)(1u << rnd() % 8);
		}
			break;
		default: /* random byte in the tables */
			copy[64 + rnd() % (size - 72)] ^= (unsigned char)(1 +
								   rnd() % 255);
			break;
		}
		fix_checksum(copy, size);
		if (kyro__rmi_load(&r, copy, size, keys, n, gen, SNAP_SUM, err,
				   sizeof(err)) != 0)
			continue;
		accepted_mut++;
		for (uint64_t i = 0; i < n; i += 7) {
			if (kyro__rmi_lower_bound(r, keys[i], NULL) != i)
				wrong++;
			const uint64_t x = keys[i] + 1;
			if (kyro__rmi_lower_bound(r, x, NULL) !=
			    kyro__lower_bound_binary(keys, n, x))
				wrong++;
		}
		kyro__rmi_free(r);
		r = NULL;
	}
	result(wrong == 0, "damage: %" PRIu64 " images damaged consistently "
	       "and accepted still give exact answers (%" PRIu64 " wrong)",
	       accepted_mut, wrong);

	/* The right index over other keys (not caught by load, which reads
	 * no key but the ends, nor by version 2's sample, which misses the
	 * change): lookups stay exact, mispredicts are counted, and the deep
	 * check names the damage. */
	memcpy(other, keys, sizeof(*other) * n);
	uint64_t moved = 0;
	for (uint64_t i = 1; i + 1 < n; i += 97) {
		if (is_sampled(i, n))
			continue;
		other[i] = other[i - 1] + 1;
		moved++;
	}
	rc = kyro__rmi_load(&r, img, size, other, n, gen, SNAP_SUM,
			    err, sizeof(err));
	if (rc == 0) {
		uint64_t bad, first_bad;
		wrong = 0;
		struct kyro__rmi_counters c = {0};
		for (uint64_t i = 0; i < n; i++)
			if (kyro__rmi_lower_bound(r, other[i], &c) != i)
				wrong++;
		const int deep = kyro__rmi_check_all(r, &bad, &first_bad);
		/* A moved key one past its window's end still has its lower
		 * bound on the window's edge, so it need not mispredict. */
		result(wrong == 0 && deep == KYRO_ECORRUPT && bad > 0,
		       "stale keys past the sample: exact answers (%" PRIu64
		       " wrong), %" PRIu64 " mispredicts counted, deep check "
		       "finds %" PRIu64 " keys outside their windows",
		       wrong, c.mispredicts, bad);
		kyro__rmi_free(r);
	} else {
		result(1, "stale keys past the sample: refused at load (%s)",
		       err);
	}
	result(moved > 0, "stale keys past the sample: %" PRIu64 " keys moved",
	       moved);

	free(other);
	free(copy);
	free(old);
	free(img);
	free(keys);
}

/* ---- build errors ----------------------------------------------------- */

static void check_build_errors(void)
{
	char err[256];
	void *img = (void *)1;
	size_t size = 1;
	uint64_t k[4] = { 1, 5, 5, 9 };
	int rc = kyro__rmi_train(k, 4, 1, SNAP_SUM,
				 NULL, &img, &size, NULL, err,
				 sizeof(err));
	result(rc == EINVAL && img == NULL && size == 0 && strstr(err, "sorted"),
	       "build: duplicate keys are refused: \"%s\"", err);
	uint64_t u[3] = { 9, 5, 7 };
	rc = kyro__rmi_train(u, 3, 1, SNAP_SUM, NULL, &img, &size, NULL, err,
			     sizeof(err));
	result(rc == EINVAL && strstr(err, "sorted"),
	       "build: unsorted keys are refused: \"%s\"", err);
	struct kyro_rmi_params p = { 0, 7, 0 };
	rc = kyro__rmi_train(k, 2, 1, SNAP_SUM,
			     &p, &img, &size, NULL, err, sizeof(err));
	result(rc == EINVAL, "build: 7 router bits are refused: \"%s\"", err);
	p.router_bits = 25;
	rc = kyro__rmi_train(k, 2, 1, SNAP_SUM,
			     &p, &img, &size, NULL, err, sizeof(err));
	result(rc == EINVAL, "build: 25 router bits are refused: \"%s\"", err);
	struct kyro_rmi_params q = { 0, 0, 100 };
	rc = kyro__rmi_train(k, 2, 1, SNAP_SUM,
			     &q, &img, &size, NULL, err, sizeof(err));
	result(rc == EINVAL && strstr(err, "smallest"),
	       "build: a max size below the smallest index is refused: \"%s\"",
	       err);
	struct kyro_rmi_params big = { 100000, 16, 8192 };
	rc = kyro__rmi_train(k, 2, 1, SNAP_SUM, &big, &img, &size, NULL, err,
			     sizeof(err));
	result(rc == EINVAL && strstr(err, "maximum"),
	       "build: explicit leaves over an explicit max size are refused: "
	       "\"%s\"", err);
}

/* ---- budget ---------------------------------------------------------- */

static void check_budget(void)
{
	uint64_t n;
	uint64_t *keys = make_keys(D_LOGNORMAL, 1000000, &n);
	void *img;
	size_t size;
	struct kyro__rmi_build_stats st;
	char err[256];
	int rc = kyro__rmi_train(keys, n, 1, SNAP_SUM,
				 NULL, &img, &size, &st, err,
				 sizeof(err));
	result(rc == 0 && size == st.bytes && (double)size <= 0.02 * 8.0 * n,
	       "budget: the default index over %" PRIu64 " keys is %zu bytes, "
	       "<= 2%% of %" PRIu64 " key bytes",
	       n, size, 8 * n);
	if (rc == 0)
		free(img);
	struct kyro_rmi_params p = { 0, 0, 65536 };
	rc = kyro__rmi_train(keys, n, 1, SNAP_SUM, &p, &img, &size, &st, err,
			     sizeof(err));
	result(rc == 0 && size <= 65536, "budget: --max-size 65536 gives %zu "
	       "bytes", size);
	if (rc == 0)
		free(img);
	free(keys);
}

/* ---- a bucket split by wide gaps ---------------------------------------- */

/*
 * Build the index over KEYS with P and measure the windows of the keys in
 * [FROM, TO]: their count, mean and widest.  Returns the build's or the
 * load's error, with ERR set.
 */
static int windows_of(const uint64_t *keys, uint64_t n,
		      const struct kyro_rmi_params *p, uint64_t from,
		      uint64_t to, double *cnt, double *mean, uint64_t *widest,
		      char *err, size_t errlen)
{
	void *img = NULL;
	size_t size = 0;
	struct kyro__rmi *r = NULL;
	double sum = 0;
	*cnt = 0;
	*widest = 0;
	int rc = kyro__rmi_train(keys, n, 1, SNAP_SUM,
				 p, &img, &size, NULL, err, errlen);
	if (rc == 0)
		rc = kyro__rmi_load(&r, img, size, keys, n, 1, SNAP_SUM,
				    err, errlen);
	for (uint64_t i = 0; rc == 0 && i < n; i++) {
		if (keys[i] < from || keys[i] > to)
			continue;
		uint64_t lo, hi;
		kyro__rmi_window(r, keys[i], &lo, &hi);
		sum += (double)(hi - lo);
		*cnt += 1;
		*widest = hi - lo > *widest ? hi - lo : *widest;
	}
	*mean = *cnt ? sum / *cnt : 0.0;
	kyro__rmi_free(r);
	free(img);
	return rc;
}

/*
 * One router bucket holding a long cluster, one stray key far before it and
 * one far after it.  Spread over the whole bucket, the bucket's leaves
 * would cover the gaps and leave the cluster in one leaf, probed in windows
 * of a hundred keys and more; cut at the gaps (choose_run() in
 * rmi_build.c), the strays get the bucket's end leaves and the cluster all
 * the others.  The rest of the keys fill the other buckets.  Also checked
 * as a key set.
 */
/* Keys for a test of bucket 0x55 of a 2^8-entry router: room for EXTRA
 * more, and 20 000 random keys outside that bucket, plus 0 and UINT64_MAX
 * so that the range spans the whole key space and bucket 0x55 of 256 is
 * exactly the keys with that top byte.  *NP is their count. */
#define GAP_BUCKET (0x55ULL << 56)
static uint64_t *gap_keys(uint64_t extra, uint64_t *np)
{
	const uint64_t nrand = 20000;
	uint64_t *keys = malloc(sizeof(*keys) * (nrand + 2 + extra));
	if (keys == NULL)
		abort();
	uint64_t n = 0;
	while (n < nrand) {
		const uint64_t k = rnd();
		if (k >> 56 != GAP_BUCKET >> 56)
			keys[n++] = k;
	}
	keys[n++] = 0;
	keys[n++] = UINT64_MAX;
	*np = n;
	return keys;
}

/* Appends COUNT keys 1..32 apart after FROM; returns the last. */
static uint64_t add_run(uint64_t *keys, uint64_t *np, uint64_t from,
			uint64_t count)
{
	for (uint64_t j = 0; j < count; j++) {
		from += 1 + rnd() % 32;
		keys[(*np)++] = from;
	}
	return from;
}

static void check_gap_cut(void)
{
	const uint64_t bucket = GAP_BUCKET, nclus = 20000;
	uint64_t n;
	uint64_t *keys = gap_keys(nclus + 2, &n);
	keys[n++] = bucket + 5;
	keys[n++] = bucket + ((uint64_t)1 << 55);
	const uint64_t start = bucket + ((uint64_t)1 << 40);
	const uint64_t cfirst = start + 1;
	const uint64_t clast = add_run(keys, &n, start, nclus);
	n = sort_unique(keys, n);

	struct kyro_rmi_params p = { 0 };
	p.router_bits = 8;
	p.leaves = 400;
	check_set("cluster between strays", keys, n, &p);

	char err[256] = "";
	double cnt, mean;
	uint64_t widest;
	const int rc = windows_of(keys, n, &p, cfirst, clast, &cnt, &mean,
				  &widest, err, sizeof(err));
	/* About 200 leaves for the cluster, 100 keys each: windows of 10 to
	 * 20 keys.  In one leaf they are 100 and more. */
	result(rc == 0 && cnt == nclus && mean < 24 && widest < 64,
	       "a cluster between two far strays in one bucket is spread over "
	       "the bucket's leaves: mean window %.1f, widest %" PRIu64
	       " keys (%s)",
	       mean, widest, rc ? err : "ok");
	free(keys);
}

/*
 * Three runs in one bucket, the largest last.  Cutting off the first two
 * together would put them in one leaf across the gap between them, whose
 * window is then both runs; the builder must not (each run may get a fat
 * leaf of its own, as without any cut, but no leaf may span the gap).
 */
static void check_gap_no_merge(void)
{
	const uint64_t bucket = GAP_BUCKET;
	const uint64_t runs[3][2] = { { (uint64_t)1 << 40, 3000 },
				      { (uint64_t)1 << 50, 3000 },
				      { (uint64_t)1 << 54, 12000 } };
	uint64_t n;
	uint64_t *keys = gap_keys(18000, &n);
	for (int r = 0; r < 3; r++)
		add_run(keys, &n, bucket + runs[r][0], runs[r][1]);
	n = sort_unique(keys, n);
	struct kyro_rmi_params p = { 0 };
	p.router_bits = 8;
	p.leaves = 400;
	check_set("three runs in a bucket", keys, n, &p);

	char err[256] = "";
	double cnt, mean;
	uint64_t widest;
	const uint64_t bucket_end = bucket | (((uint64_t)1 << 56) - 1);
	const int rc = windows_of(keys, n, &p, bucket, bucket_end, &cnt,
				  &mean, &widest, err, sizeof(err));
	/* A mean of about 50 keys with the cuts; a leaf holding a whole
	 * run costs its 3000 keys 3000 each, and the mean goes to hundreds. */
	result(rc == 0 && cnt == 18000 && widest <= 3100 && mean < 100,
	       "three runs in one bucket: no leaf spans a gap between runs, "
	       "mean window %.1f, widest %" PRIu64 " keys (%s)",
	       mean, widest, rc ? err : "ok");
	free(keys);
}

/* ---- the SIMD level ------------------------------------------------- */

/*
 * The library picks the best level this CPU runs, by itself: an index
 * starts with it, a level set on the index is used from then on, and a
 * level the CPU cannot run (or no level at all) is refused and changes
 * nothing.  Level names map both ways.
 */
/*
 * Format 4's split leaves under damage: an index with split leaves (runs of
 * keys routed to leaves too few to separate them), every single-bit flip
 * refused, and the split records' own fields rewritten consistently
 * (checksum recomputed): refused, or every answer still exact, and no read
 * outside the arrays (ASan).
 */
/*
 * The hint reads an index no one checked: whatever a flipped bit past the
 * header or a file cut short does to it, the hint reads nothing outside
 * the file's tables and gives no window outside [0, n].  (Whether the
 * window holds the key is the caller's bracket test: test_store.c.)
 */
static void check_hint_damage(const unsigned char *img, size_t size,
			      const uint64_t *keys, uint64_t n)
{
	unsigned char *copy = malloc(size);
	if (copy == NULL)
		abort();
	uint64_t bad = 0, hints = 0, missed = 0, none = 0, past_end = 0;
	for (size_t i = 64; i < size; i++) {
		memcpy(copy, img, size);
		copy[i] ^= (unsigned char)(1u << (i % 8));
		struct mem_file f = { copy, size, 0 };
		for (int t = 0; t < 8; t++) {
			const uint64_t p = rnd() % n;
			const uint64_t x = keys[p] + (t & 1);
			uint64_t lo = UINT64_MAX, hi = UINT64_MAX;
			if (kyro__rmi_hint(copy, size, n, x, mem_read, &f, &lo,
					   &hi)) {
				none++;
				continue;
			}
			hints++;
			bad += lo > hi || hi > n;
			const uint64_t want = kyro__lower_bound_binary(keys, n,
								       x);
			missed += want < lo || want > hi;
		}
		past_end += f.past_end;
	}
	result(bad == 0 && past_end == 0,
	       "hint damage: after each single-bit flip past the header, "
	       "every hint lies in [0, n] and reads inside the file (%" PRIu64
	       " hints, %" PRIu64 " none, %" PRIu64 " missed the key, %" PRIu64
	       " bad, %" PRIu64 " reads past the end)",
	       hints, none, missed, bad, past_end);
	/* A scale or slope the loader would refuse (negative, infinite, not
	 * a number) gives no hint: converted to an integer, it would be
	 * undefined behaviour (the fuzzer found it). */
	static const uint32_t scales[] = { 0xbf800000u, 0xff800000u,
					   0x7f800000u, 0x7fc00000u,
					   0xd8c2a000u };
	static const uint64_t slopes[] = { 0xbff0000000000000ull,
					   0xfff0000000000000ull,
					   0x7ff0000000000000ull,
					   0x7ff8000000000000ull,
					   0xc4d8000000000000ull };
	const uint64_t leaves_at = 64 + ((16 * ((uint64_t)1 << img[60]) + 16 +
					  63) & ~(uint64_t)63);
	uint64_t bad_hints = 0;
	for (int v = 0; v < 5; v++) {
		struct mem_file f = { copy, size, 0 };
		for (uint64_t j = 0; j < 64; j++) {
			const uint64_t x = keys[rnd() % n];
			uint64_t lo, hi;
			memcpy(copy, img, size);
			for (uint64_t b = 0; b < ((uint64_t)1 << img[60]); b++)
				memcpy(copy + 64 + 16 * b + 12, &scales[v], 4);
			bad_hints += kyro__rmi_hint(copy, size, n, x, mem_read,
						    &f, &lo, &hi) == 0;
			memcpy(copy, img, size);
			/* Every line record's, not a split leaf's j. */
			for (uint64_t l = 0; 32 * l + 32 <= size - 8 - leaves_at;
			     l++)
				if (copy[leaves_at + 32 * l + 28] != 0xfe ||
				    copy[leaves_at + 32 * l + 29] != 0xff)
					memcpy(copy + leaves_at + 32 * l + 8,
					       &slopes[v], 8);
			bad_hints += kyro__rmi_hint(copy, size, n, x, mem_read,
						    &f, &lo, &hi) == 0;
		}
	}
	result(bad_hints == 0, "hint damage: a scale or slope the loader "
	       "refuses gives no hint (%" PRIu64 " did)", bad_hints);
	/* A file cut short after the probe read its header: reads past the
	 * new end fail, and the hint with them. */
	uint64_t cut_bad = 0, cut_hints = 0;
	for (size_t len = 0; len < size; len += 1 + len / 8) {
		struct mem_file f = { img, len, 0 };
		for (int t = 0; t < 8; t++) {
			const uint64_t x = keys[rnd() % n];
			uint64_t lo, hi;
			if (kyro__rmi_hint(img, size, n, x, mem_read, &f, &lo,
					   &hi) == 0) {
				cut_hints++;
				cut_bad += lo > hi || hi > n;
			}
		}
	}
	result(cut_bad == 0, "hint damage: a truncated file gives no hint or "
	       "one in [0, n] (%" PRIu64 " hints, %" PRIu64 " bad)",
	       cut_hints, cut_bad);
	free(copy);
}

static void check_split_damage(void)
{
	/* The three runs in a bucket of check_gap_no_merge(). */
	uint64_t n;
	uint64_t *keys = gap_keys(18000, &n);
	add_run(keys, &n, GAP_BUCKET + ((uint64_t)1 << 40), 3000);
	add_run(keys, &n, GAP_BUCKET + ((uint64_t)1 << 50), 3000);
	add_run(keys, &n, GAP_BUCKET + ((uint64_t)1 << 54), 12000);
	n = sort_unique(keys, n);
	const struct kyro_rmi_params p = { 400, 8, 0, 0 };
	struct kyro__rmi_build_stats st;
	char err[256];
	void *vimg;
	size_t size;
	int rc = kyro__rmi_train(keys, n, 9, SNAP_SUM, &p, &vimg, &size, &st,
				 err, sizeof(err));
	result(rc == 0 && st.split_leaves > 0 && st.max_window <= 23,
	       "split damage: reference index, %" PRIu64 " leaves split into "
	       "%" PRIu64 ", widest window %.0f (%s)", st.split_leaves,
	       st.sub_leaves, st.max_window, rc ? err : "ok");
	if (rc)
		abort();
	unsigned char *img = vimg, *copy = malloc(size);
	if (copy == NULL)
		abort();
	uint64_t accepted = 0;
	for (size_t i = 0; i < size; i++) {
		memcpy(copy, img, size);
		copy[i] ^= (unsigned char)(1u << (i % 8));
		accepted += !refused(copy, size, keys, n, 9, 0, NULL, err,
				     sizeof(err));
	}
	result(accepted == 0, "split damage: each of %zu single-bit flips is "
	       "refused (%" PRIu64 " accepted)", size, accepted);
	check_hint_damage(img, size, keys, n);

	const size_t recs = 64 + ((16 * 257 + 63) & ~(size_t)63);
	size_t split[256], ns = 0;
	for (size_t l = 0; l < 400 && ns < 256; l++)
		if (img[recs + 32 * l + 28] == 0xfe &&
		    img[recs + 32 * l + 29] == 0xff)
			split[ns++] = recs + 32 * l;
	const uint64_t total = st.leaves;
	uint64_t wrong = 0, acc = 0;
	for (int t = 0; ns && t < 400; t++) {
		memcpy(copy, img, size);
		const size_t leaf = split[rnd() % ns];
		const size_t sub = recs + 32 * (400 + rnd() % (total - 400));
		switch (t % 8) {
		case 0: /* first sub-leaf moved */
			copy[leaf + 8] += (unsigned char)(1 + rnd() % 3);
			break;
		case 1: /* sub-leaf count changed */
			copy[leaf + 30] ^= (unsigned char)(1u << rnd() % 8);
			break;
		case 2: /* no longer split: its slope is the index's bits */
			copy[leaf + 28] = 0;
			break;
		case 3: /* a sub-leaf's reference key changed */
			copy[sub + rnd() % 8] ^= (unsigned char)(1u << rnd() % 8);
			break;
		case 4: /* a sub-leaf marked split */
			copy[sub + 28] = 0xfe;
			copy[sub + 29] = 0xff;
			break;
		case 5: /* a sub-leaf's start or count changed */
			copy[sub + 16 + 8 * (rnd() % 2) + rnd() % 4] ^=
				(unsigned char)(1u << rnd() % 8);
			break;
		case 6: /* a sub-leaf's epsilons zeroed */
			memset(copy + sub + 28, 0, 4);
			break;
		default: /* a sub-leaf's slope scaled */
			copy[sub + 14] ^= 0x10;
			break;
		}
		fix_checksum(copy, size);
		struct kyro__rmi *r = NULL;
		if (kyro__rmi_load(&r, copy, size, keys, n, 9, SNAP_SUM, err,
				   sizeof(err)) != 0)
			continue;
		acc++;
		for (uint64_t i = 0; i < n; i += 3) {
			wrong += kyro__rmi_lower_bound(r, keys[i], NULL) != i;
			const uint64_t x = keys[i] + 1;
			wrong += kyro__rmi_lower_bound(r, x, NULL) !=
				 kyro__lower_bound_binary(keys, n, x);
			uint64_t out;
			kyro__rmi_lower_bound_batch(r, &x, &out, 1, NULL);
			wrong += out != kyro__lower_bound_binary(keys, n, x);
		}
		kyro__rmi_free(r);
	}
	result(ns > 0 && wrong == 0,
	       "split damage: %" PRIu64 " of 400 split records damaged "
	       "consistently were accepted, all answers exact (%" PRIu64
	       " wrong)", acc, wrong);
	free(copy);
	free(img);
	free(keys);
}

static void check_levels(void)
{
	int best = 0;
	for (int l = 0; l < KYRO_SIMD_NLEVELS; l++)
		if (kyro__simd_supported(l))
			best = l;
	result(kyro__simd_selected() == best,
	       "SIMD: the best level, %s, is "
	       "the one chosen (%s)",
	       kyro__simd_name(best), kyro__simd_name(kyro__simd_selected()));
	int names = 0;
	for (int l = 0; l < KYRO_SIMD_NLEVELS; l++)
		names += kyro__simd_level(kyro__simd_name(l)) == l;
	result(names == KYRO_SIMD_NLEVELS && kyro__simd_level("AVX2") == -1 &&
		       kyro__simd_level("neon-please") == -1 &&
		       kyro__simd_level(NULL) == -1 &&
		       strcmp(kyro__simd_name(KYRO_SIMD_NLEVELS), "?") == 0,
	       "SIMD: every level's name maps back to it, nothing else does");

	enum { N = 1000 };
	uint64_t keys[N];
	for (uint64_t i = 0; i < N; i++)
		keys[i] = 3 * i + 1;
	char err[256] = "";
	void *img = NULL;
	size_t size = 0;
	struct kyro__rmi *r = NULL;
	int rc = kyro__rmi_train(keys, N, 1, SNAP_SUM,
				 NULL, &img, &size, NULL, err,
				 sizeof err);
	if (rc == 0)
		rc = kyro__rmi_load(&r, img, size, keys, N, 1, SNAP_SUM,
				    err, sizeof err);
	result(rc == 0, "SIMD: an index to set levels on (%s)",
	       rc ? err : "ok");
	if (rc == 0) {
		struct kyro__rmi_info info;
		kyro__rmi_info(r, &info);
		const int started = info.simd;
		int refused =
			kyro__rmi_set_simd(r, -1) == ENOTSUP &&
			kyro__rmi_set_simd(r, KYRO_SIMD_NLEVELS) == ENOTSUP;
		for (int l = 0; l < KYRO_SIMD_NLEVELS; l++)
			if (!kyro__simd_supported(l))
				refused &= kyro__rmi_set_simd(r, l) == ENOTSUP;
		kyro__rmi_info(r, &info);
		const int kept = info.simd == best;
		int set = 1;
		for (int v = 0; v < nlevels; v++) {
			set &= kyro__rmi_set_simd(r, levels[v]) == 0;
			kyro__rmi_info(r, &info);
			set &= info.simd == levels[v] &&
			       kyro__rmi_lower_bound(r, keys[N / 2], NULL) ==
				       N / 2;
		}
		result(started == best && refused && kept && set,
		       "SIMD: an index starts at %s, takes every level the "
		       "CPU runs and refuses the others",
		       kyro__simd_name(best));
	}
	kyro__rmi_free(r);
	free(img);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "-v") == 0)
		verbose = 1;
	const clock_t t0 = clock();

	for (int l = 0; l < KYRO_SIMD_NLEVELS; l++)
		if (kyro__simd_supported(l))
			levels[nlevels++] = l;
	printf("SIMD levels on this CPU:");
	for (int v = 0; v < nlevels; v++)
		printf(" %s", kyro__simd_name(levels[v]));
	printf(" (selected %s)\n", kyro__simd_name(kyro__simd_selected()));

	check_probes();

	/* Tiny sets, every corner. */
	static const uint64_t tiny[][3] = {
		{ 0, 0, 0 }, { 0, 0, 0 }, { UINT64_MAX, 0, 0 },
		{ 12345, 0, 0 }, { 0, UINT64_MAX, 0 }, { 5, 6, 0 },
		{ UINT64_MAX - 1, UINT64_MAX, 0 }, { 0, 1, UINT64_MAX },
	};
	static const uint64_t tiny_n[] = { 0, 1, 1, 1, 2, 2, 2, 3 };
	for (size_t i = 0; i < sizeof(tiny_n) / sizeof(tiny_n[0]); i++) {
		char name[64];
		snprintf(name, sizeof(name), "tiny#%zu", i);
		check_set(name, tiny_n[i] ? tiny[i] : NULL, tiny_n[i], NULL);
	}

	struct {
		enum dist d;
		uint64_t n;
	} sets[] = {
		{ D_RANDOM, 1000 },      { D_RANDOM, 100000 },
		{ D_RANDOM, 3000000 },   { D_DENSE, 1000000 },
		{ D_DENSE_ZERO, 65536 }, { D_DENSE_TOP, 100000 },
		{ D_LOGNORMAL, 1000000 }, { D_NORMAL, 1000000 },
		{ D_CLUSTERED, 1000000 }, { D_GAPS, 300000 },
		{ D_LOWBITS, 200000 },   { D_EXTREMES, 100000 },
		{ D_POW2, 64 },          { D_RANDOM, 5 },
		{ D_LOGNORMAL, 3000 },
	};
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
		uint64_t n;
		uint64_t *keys = make_keys(sets[i].d, sets[i].n, &n);
		check_set(dist_name(sets[i].d), keys, n, NULL);
		free(keys);
	}
	/* The sets above exercise split leaves: their lookups were checked
	 * like every other's. */
	result(split_sets > 0, "%" PRIu64 " key sets built split leaves",
	       split_sets);
	/* Around the fast path's 32 keys, where its clamps to the array's
	 * ends decide the answer: each set also starts inside a 64-byte
	 * line, as a key array in a mapped file may. */
	static const uint64_t near32[] = { 31, 32, 33, 40, 63, 65, 100, 1000 };
	for (size_t i = 0; i < sizeof(near32) / sizeof(near32[0]); i++) {
		uint64_t n;
		uint64_t *keys = make_keys(D_RANDOM, near32[i], &n);
		for (unsigned skip = 0; skip < 8; skip += 3) {
			/* Exactly the keys' size past the array: ASan sees
			 * a read beyond its end. */
			void *line;
			if (posix_memalign(&line, 64,
					   sizeof(*keys) * (skip + n)) != 0)
				abort();
			uint64_t *at = (uint64_t *)line + skip;
			char name[64];
			snprintf(name, sizeof(name), "random, %u keys into "
				 "a line", skip);
			memcpy(at, keys, sizeof(*keys) * n);
			check_set(name, at, n, NULL);
			free(line);
		}
		free(keys);
	}
	check_gap_cut();
	check_gap_no_merge();
	{
		/* Keys spread over orders of magnitude are what the
		 * logarithmic router is for. */
		uint64_t n;
		uint64_t *keys = make_keys(D_LOGNORMAL, 1000000, &n);
		struct kyro__rmi_build_stats st;
		char err[256];
		void *img = NULL;
		size_t size;
		const int rc = kyro__rmi_train(keys, n, 1, SNAP_SUM,
					       NULL, &img, &size,
					       &st, err, sizeof(err));
		result(rc == 0 && st.router_log,
		       "lognormal keys get a logarithmic router (%s)",
		       rc ? err : st.router_log ? "log" : "linear");
		free(img);
		free(keys);
	}

	/* Two threads fit the leaves in halves; the image must be the one a
	 * single thread builds, byte for byte, whatever the shape. */
	{
		static const struct {
			enum dist d;
			uint64_t n;
			unsigned leaves;
		} tsets[] = {
			{ D_LOGNORMAL, 1000000, 0 }, { D_CLUSTERED, 1000000, 0 },
			{ D_RANDOM, 300000, 0 },     { D_GAPS, 100000, 3 },
			{ D_DENSE, 100000, 2 },      { D_RANDOM, 1000, 0 },
		};
		int same = 0, total = 0;
		for (size_t i = 0; i < sizeof(tsets) / sizeof(tsets[0]); i++) {
			uint64_t n;
			uint64_t *keys = make_keys(tsets[i].d, tsets[i].n, &n);
			void *img[2] = { NULL, NULL };
			size_t size[2] = { 0, 0 };
			int rc = 0;
			for (unsigned t = 0; t < 2; t++) {
				const struct kyro_rmi_params p = {
					tsets[i].leaves, 0, 0, t + 1
				};
				char err[256];
				rc |= kyro__rmi_train(keys, n, 1, SNAP_SUM,
						      &p, &img[t],
						      &size[t], NULL, err,
						      sizeof(err));
			}
			total++;
			same += rc == 0 && size[0] == size[1] &&
				memcmp(img[0], img[1], size[0]) == 0;
			free(img[0]);
			free(img[1]);
			free(keys);
		}
		result(same == total,
		       "two threads build the one-thread image byte for byte "
		       "(%d of %d key sets)", same, total);
	}

	/* Explicit shapes, including badly chosen ones: correctness must
	 * not depend on the tuner. */
	static const struct kyro_rmi_params shapes[] = {
		{ 1, 8, 0 },  { 7, 8, 0 },    { 1000, 24, 0 },
		{ 50000, 12, 0 }, { 0, 16, 0 }, { 300000, 8, 0 },
	};
	const enum dist shape_sets[] = { D_RANDOM, D_LOGNORMAL, D_CLUSTERED,
					 D_GAPS, D_LOWBITS, D_EXTREMES,
					 D_DENSE };
	for (size_t s = 0; s < sizeof(shape_sets) / sizeof(shape_sets[0]);
	     s++) {
		uint64_t n;
		uint64_t *keys = make_keys(shape_sets[s], 100000, &n);
		for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
			check_set(dist_name(shape_sets[s]), keys, n,
				  &shapes[i]);
		free(keys);
	}

	result(built_kind[0] > 0 && built_kind[1] > 0,
	       "both router kinds were built and checked (%" PRIu64
	       " linear, %" PRIu64 " logarithmic)",
	       built_kind[0], built_kind[1]);
	check_build_errors();
	check_budget();
	check_damage();
	check_split_damage();
	check_levels();

	if (verbose)
		printf("cpu time %.1f s\n",
		       (double)(clock() - t0) / CLOCKS_PER_SEC);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
