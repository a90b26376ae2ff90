/*
 * rmi_bench.c - lookup benchmark of the learned index against the search
 * structures a user would otherwise pick, over the same keys in one run.
 *
 * Methods (all return the position an 8-byte payload offset would be read
 * from):
 *   rmi          kyro__rmi_lower_bound() with counters: mispredicts and
 *                fallbacks counted, windows not (the store's default
 *                path: what kyro-get and any library user run)
 *   rmi-windows  the same with the window histogram counted too
 *                (kyro__rmi_count_windows(); the daemon's path)
 *   rmi-nocount  kyro__rmi_lower_bound() with NULL counters: no counting
 *   rmi-predict  route and predict only, no window probe: the time of
 *                the model alone; rmi minus this is the last-mile search
 *   rmi-scalar/-sse4/-avx2/-avx512   rmi with one SIMD probe forced
 *   rmi-batch    kyro__rmi_lower_bound_batch() over all queries, counted
 *                (groups of 32 windows predicted and prefetched, then
 *                probed)
 *   rmi-soa+off  rmi, then the payload offset from its own array (keys
 *                and offsets in separate arrays, the snapshot's layout)
 *   rmi-aos+off  the same window probed in an array of 16-byte
 *                key+offset records, offset read beside the key
 *   binary       kyro__lower_bound_binary() over the same array
 *   eytzinger    the keys in Eytzinger (BFS) order, branchless descent,
 *                prefetching the line of descendants four levels down
 *   lmdb         LMDB, MDB_INTEGERKEY keys, 8-byte offsets as values,
 *                bulk-loaded with MDB_APPEND in one transaction; present
 *                keys with mdb_get, absent ones (a lower bound) with a
 *                cursor's MDB_SET_RANGE, all in one read transaction
 *
 * Usage: rmi_bench [options]
 *   -d DIST      uniform | normal | lognormal | clustered (default uniform)
 *   -f FILE      keys from a SOSD file (u64 count, then count u64 keys,
 *                little-endian) instead of -d
 *   -n N         keys (default 1000000)
 *   -l N         lookups of present keys per run (default 10000000)
 *   -a N         lookups of absent keys per run (default 1000000)
 *   -r N         runs; the median is reported (default 5)
 *   -m LIST      methods, comma separated (default
 *                rmi,rmi-windows,rmi-nocount,rmi-predict,binary,eytzinger,lmdb)
 *   -H           no huge pages (default: MADV_HUGEPAGE on every array)
 *   -o FILE      append CSV rows to FILE (header written if FILE is new)
 *   -t DIR       directory for the LMDB environment and the index file
 *                written to time build + write (default /tmp)
 *   -s SEED      random seed (default 1)
 *   -B BITS, -L LEAVES, -S BYTES   index shape (router bits, leaf count,
 *                size budget) instead of the tuned default
 *
 * Output: one line per (method, query kind) on stdout; CSV rows with
 * dist,n,method,query,hugepages,runs,lookups,median_ns,min_ns,max_ns,
 * index_bytes,build_ms,note.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <immintrin.h>
#include <lmdb.h>

#include "rmi.h"
#include "simd.h"

/* The snapshot identity (.bin header checksum) the indexes here are bound
 * to: any value will do, as long as build and load agree. */
#define SNAP_SUM 0x5eed5eed5eed5eedull

static const char *prog = "rmi_bench";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Lookups are timed in this thread's CPU time: the machine is shared, and
 * time spent descheduled is not time spent searching.  (Cache lines other
 * processes evict still count against us.) */
static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- memory: anonymous maps, optionally huge pages ---------------------- */

static int use_huge = 1;

static void *alloc_array(size_t bytes)
{
	const size_t len = (bytes + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
	void *p = mmap(NULL, len ? len : 4096, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("out of memory (%s)", strerror(errno));
	/* Advise before the first touch, so that faults allocate 2 MiB
	 * pages (THP is "madvise" on this machine). */
	madvise(p, len ? len : 4096, use_huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	return p;
}

static void free_array(void *p, size_t bytes)
{
	const size_t len = (bytes + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
	if (p)
		munmap(p, len ? len : 4096);
}

static long anon_huge_kb(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	char line[256];
	long kb = -1;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* ---- keys --------------------------------------------------------------- */

static uint64_t rng = 1;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
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
	uint64_t *tmp = alloc_array(sizeof(*a) * n);
	static uint64_t cnt[65537];
	for (unsigned shift = 0; shift < 64; shift += 16) {
		memset(cnt, 0, sizeof(cnt));
		for (uint64_t i = 0; i < n; i++)
			cnt[((a[i] >> shift) & 0xffff) + 1]++;
		for (unsigned j = 0; j < 65536; j++)
			cnt[j + 1] += cnt[j];
		for (uint64_t i = 0; i < n; i++)
			tmp[cnt[(a[i] >> shift) & 0xffff]++] = a[i];
		memcpy(a, tmp, sizeof(*a) * n);
	}
	free_array(tmp, sizeof(*a) * n);
}

static uint64_t unique(uint64_t *a, uint64_t n)
{
	uint64_t m = 0;
	for (uint64_t i = 0; i < n; i++)
		if (m == 0 || a[m - 1] != a[i])
			a[m++] = a[i];
	return m;
}

static uint64_t *gen_keys(const char *dist, uint64_t n, uint64_t *np)
{
	uint64_t *a = alloc_array(sizeof(*a) * n);
	if (strcmp(dist, "uniform") == 0) {
		for (uint64_t i = 0; i < n; i++)
			a[i] = rnd();
	} else if (strcmp(dist, "normal") == 0) {
		/* mean 2^63, standard deviation 2^58 */
		for (uint64_t i = 0; i < n; i++)
			a[i] = (uint64_t)(9.223372036854775808e18 +
					  gauss() * 2.8823037615171174e17);
	} else if (strcmp(dist, "lognormal") == 0) {
		/* exp(N(0, 2^2)) scaled by 1e12, as integers */
		for (uint64_t i = 0; i < n; i++)
			a[i] = (uint64_t)(exp(2.0 * gauss()) * 1e12);
	} else if (strcmp(dist, "clustered") == 0) {
		/* runs of 100..10000 keys 1..32 apart, each run starting at a
		 * uniformly random key */
		uint64_t i = 0;
		while (i < n) {
			uint64_t k = rnd();
			const uint64_t len = 100 + rnd() % 9901;
			for (uint64_t j = 0; j < len && i < n; j++) {
				k += 1 + rnd() % 32;
				a[i++] = k;
			}
		}
	} else {
		die("unknown distribution '%s'", dist);
	}
	radix_sort(a, n);
	*np = unique(a, n);
	return a;
}

static uint64_t *read_sosd(const char *path, uint64_t *np)
{
	FILE *f = fopen(path, "rb");
	unsigned char hdr[8];
	if (f == NULL || fread(hdr, 1, 8, f) != 8)
		die("cannot read '%s'", path);
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | hdr[i];
	struct stat sb;
	if (fstat(fileno(f), &sb) != 0 || (uint64_t)sb.st_size != 8 + 8 * n)
		die("'%s' is not a SOSD file of u64 keys (size does not "
		    "match its count)", path);
	uint64_t *a = alloc_array(sizeof(*a) * n);
	if (fread(a, 8, n, f) != n)
		die("cannot read '%s'", path);
	fclose(f);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	for (uint64_t i = 0; i < n; i++)
		a[i] = __builtin_bswap64(a[i]);
#endif
	int sorted = 1;
	for (uint64_t i = 1; i < n && sorted; i++)
		sorted = a[i - 1] <= a[i];
	if (!sorted)
		radix_sort(a, n);
	*np = unique(a, n); /* some SOSD sets hold duplicates */
	return a;
}

/* ---- Eytzinger layout ------------------------------------------------------ */

/* e[1..n] in BFS order of the implicit balanced tree; e[0] unused.  The
 * array starts on a cache line, so e[16k..16k+7] share one line. */
static uint64_t eyt_fill(const uint64_t *keys, uint64_t *e, uint64_t n)
{
	/* In-order walk of the implicit tree without recursion. */
	uint64_t i = 0, k = 1;
	for (;;) {
		while (k <= n)
			k = 2 * k;
		k >>= __builtin_ffsll((long long)~k);
		if (k == 0)
			break;
		e[k] = keys[i++];
		k = 2 * k + 1;
	}
	return i;
}

static inline uint64_t eyt_search(const uint64_t *e, uint64_t n, uint64_t x)
{
	uint64_t k = 1;
	while (k <= n) {
		/* The 16 descendants four levels down fill two lines. */
		__builtin_prefetch(e + 16 * k);
		__builtin_prefetch(e + 16 * k + 8);
		k = 2 * k + (e[k] < x);
	}
	k >>= __builtin_ffsll((long long)~k);
	return k; /* 0: past the last key */
}

/* ---- timing ------------------------------------------------------------- */

enum method {
	M_RMI,
	M_RMI_NOCOUNT,
	M_RMI_WINDOWS,
	M_RMI_PREDICT,
	M_RMI_SCALAR,
	M_RMI_SSE4,
	M_RMI_AVX2,
	M_RMI_AVX512,
	M_RMI_BATCH,
	M_SOA_OFF,
	M_AOS_OFF,
	M_BINARY,
	M_EYTZINGER,
	M_LMDB,
	M_COUNT
};

static const char *const method_names[M_COUNT] = {
	"rmi",      "rmi-nocount", "rmi-windows", "rmi-predict", "rmi-scalar", "rmi-sse4",
	"rmi-avx2", "rmi-avx512",  "rmi-batch",   "rmi-soa+off", "rmi-aos+off",
	"binary",   "eytzinger",   "lmdb",
};

struct rec {
	uint64_t key, off;
};

struct ctx {
	const uint64_t *keys;
	uint64_t n;
	const uint64_t *offs;   /* offs[i] = i: the payload offset array */
	const struct rec *aos;  /* key+offset records, the other layout */
	uint64_t *out;          /* batch answers */
	struct kyro__rmi *rmi;
	struct kyro__rmi_counters *ctr; /* the store's, as a handle owns one */
	const uint64_t *eyt;
	MDB_env *env;
	MDB_dbi dbi;
};

/* ---- the array-of-structures layout ------------------------------------ */

/* The window probe over 16-byte key+offset records: four records per
 * 64-byte vector, the keys in the even lanes. */
__attribute__((target("avx512f,popcnt")))
static uint64_t aos_probe(const struct rec *a, uint64_t lo, uint64_t hi,
			  uint64_t key)
{
	uint64_t base = lo, len = hi - lo;
	while (len > 32) {
		const uint64_t half = len / 2;
		base = a[base + half - 1].key < key ? base + half : base;
		len -= half;
	}
	const __m512i k = _mm512_set1_epi64((long long)key);
	const uint64_t *p = &a[base].key;
	uint64_t below = 0;
	for (; len >= 4; len -= 4, p += 8)
		below += (uint64_t)__builtin_popcount((unsigned)
			_mm512_mask_cmplt_epu64_mask(0x55,
				_mm512_loadu_si512((const void *)p), k));
	if (len) {
		const __mmask8 m = (__mmask8)(0x55 & ((1u << (2 * len)) - 1));
		below += (uint64_t)__builtin_popcount((unsigned)
			_mm512_mask_cmplt_epu64_mask(m,
				_mm512_maskz_loadu_epi64(m, (const void *)p),
				k));
	}
	return base + below;
}

/* The RMI's window (the model is layout-independent), probed in AoS. */
static inline uint64_t aos_lookup(const struct ctx *c, uint64_t x)
{
	uint64_t lo, hi;
	kyro__rmi_window(c->rmi, x, &lo, &hi);
	lo -= lo > 0;
	hi += hi < c->n;
	const uint64_t i = aos_probe(c->aos, lo, hi, x);
	return i < c->n ? c->aos[i].off : c->n;
}

static int cmp_double(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* One run over Q[0..m): seconds; *SUM gets a checksum of the answers. */
static double run(const struct ctx *c, enum method m, const uint64_t *q,
		  uint64_t nq, int absent, uint64_t *sum)
{
	uint64_t s = 0;
	const double t0 = cpu_now();
	switch (m) {
	case M_RMI:
	case M_RMI_WINDOWS:
	case M_RMI_SCALAR:
	case M_RMI_SSE4:
	case M_RMI_AVX2:
	case M_RMI_AVX512:
		for (uint64_t i = 0; i < nq; i++)
			s += kyro__rmi_lower_bound(c->rmi, q[i], c->ctr);
		break;
	case M_RMI_NOCOUNT:
		for (uint64_t i = 0; i < nq; i++)
			s += kyro__rmi_lower_bound(c->rmi, q[i], NULL);
		break;
	case M_RMI_PREDICT:
		for (uint64_t i = 0; i < nq; i++)
			s += kyro__rmi_predict(c->rmi, q[i]);
		break;
	case M_RMI_BATCH:
		kyro__rmi_lower_bound_batch(c->rmi, q, c->out, nq, c->ctr);
		for (uint64_t i = 0; i < nq; i++)
			s += c->out[i];
		break;
	case M_SOA_OFF:
		/* lower bound, then the offset from its own array */
		for (uint64_t i = 0; i < nq; i++) {
			const uint64_t j =
				kyro__rmi_lower_bound(c->rmi, q[i], c->ctr);
			s += j < c->n ? c->offs[j] : c->n;
		}
		break;
	case M_AOS_OFF:
		for (uint64_t i = 0; i < nq; i++)
			s += aos_lookup(c, q[i]);
		break;
	case M_BINARY:
		for (uint64_t i = 0; i < nq; i++)
			s += kyro__lower_bound_binary(c->keys, c->n, q[i]);
		break;
	case M_EYTZINGER:
		/* The found slot's key, so the answer can be checked against
		 * the sorted array without a rank table. */
		for (uint64_t i = 0; i < nq; i++)
			s += c->eyt[eyt_search(c->eyt, c->n, q[i])];
		break;
	case M_LMDB: {
		MDB_txn *txn;
		MDB_cursor *cur = NULL;
		if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn) != 0)
			die("%s", "mdb_txn_begin failed");
		if (absent && mdb_cursor_open(txn, c->dbi, &cur) != 0)
			die("%s", "mdb_cursor_open failed");
		for (uint64_t i = 0; i < nq; i++) {
			uint64_t x = q[i];
			MDB_val k = { sizeof(x), &x }, v;
			const int rc = absent ? mdb_cursor_get(cur, &k, &v,
							       MDB_SET_RANGE)
					      : mdb_get(txn, c->dbi, &k, &v);
			uint64_t off = c->n;
			if (rc == 0)
				memcpy(&off, v.mv_data, 8);
			s += off;
		}
		mdb_cursor_close(cur);
		mdb_txn_abort(txn);
		break;
	}
	default:
		break;
	}
	const double t = cpu_now() - t0;
	*sum = s;
	return t;
}

/* ---- LMDB ------------------------------------------------------------- */

static char lmdb_path[4096];

static double lmdb_load(struct ctx *c, const char *dir)
{
	snprintf(lmdb_path, sizeof(lmdb_path), "%s/rmi_bench.%ld.lmdb", dir,
		 (long)getpid());
	unlink(lmdb_path);
	const double t0 = now();
	MDB_txn *txn;
	if (mdb_env_create(&c->env) != 0 ||
	    mdb_env_set_mapsize(c->env, (size_t)(c->n * 48 + (1u << 30))) !=
		    0 ||
	    mdb_env_open(c->env, lmdb_path,
			 MDB_NOSUBDIR | MDB_WRITEMAP | MDB_NOSYNC |
				 MDB_NOMETASYNC | MDB_NOLOCK,
			 0644) != 0 ||
	    mdb_txn_begin(c->env, NULL, 0, &txn) != 0 ||
	    mdb_dbi_open(txn, NULL, MDB_INTEGERKEY, &c->dbi) != 0)
		die("cannot create LMDB environment '%s'", lmdb_path);
	for (uint64_t i = 0; i < c->n; i++) {
		uint64_t key = c->keys[i], off = i;
		MDB_val k = { 8, &key }, v = { 8, &off };
		const int rc = mdb_put(txn, c->dbi, &k, &v, MDB_APPEND);
		if (rc != 0)
			die("mdb_put: %s", mdb_strerror(rc));
	}
	if (mdb_txn_commit(txn) != 0)
		die("%s", "mdb_txn_commit failed");
	return now() - t0;
}

static void lmdb_close(struct ctx *c)
{
	if (c->env) {
		mdb_env_close(c->env);
		unlink(lmdb_path);
		c->env = NULL;
	}
}

/* ---- main ---------------------------------------------------------------- */

static FILE *csv;
static const char *dist_label;

static void report(const char *method, const char *query, uint64_t n,
		   int runs, uint64_t nq, const double *t, uint64_t index_bytes,
		   double build_ms, const char *note)
{
	double s[64];
	memcpy(s, t, sizeof(*t) * (size_t)runs);
	qsort(s, (size_t)runs, sizeof(*s), cmp_double);
	const double med = runs % 2 ? s[runs / 2]
				    : (s[runs / 2 - 1] + s[runs / 2]) / 2;
	const double k = 1e9 / (double)nq;
	printf("%-10s n=%-10" PRIu64 " %-12s %-7s %8.1f ns/lookup "
	       "(min %.1f, max %.1f)%s%s\n",
	       dist_label, n, method, query, med * k, s[0] * k,
	       s[runs - 1] * k, note[0] ? "  " : "", note);
	if (csv)
		fprintf(csv,
			"%s,%" PRIu64 ",%s,%s,%d,%d,%" PRIu64
			",%.2f,%.2f,%.2f,%" PRIu64 ",%.1f,%s\n",
			dist_label, n, method, query, use_huge, runs, nq,
			med * k, s[0] * k, s[runs - 1] * k, index_bytes,
			build_ms, note);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const char *dist = "uniform", *file = NULL, *csv_path = NULL;
	const char *methods = "rmi,rmi-windows,rmi-nocount,rmi-predict,"
			      "binary,eytzinger,lmdb";
	const char *tmpdir = "/tmp";
	uint64_t n = 1000000, nlook = 10000000, nabs = 1000000;
	int runs = 5, opt;
	struct kyro_rmi_params shape = { 0, 0, 0 };

	while ((opt = getopt(argc, argv, "d:f:n:l:a:r:m:Ho:t:s:B:L:S:h")) !=
	       -1) {
		switch (opt) {
		case 'd': dist = optarg; break;
		case 'f': file = optarg; break;
		case 'n': n = strtoull(optarg, NULL, 0); break;
		case 'l': nlook = strtoull(optarg, NULL, 0); break;
		case 'a': nabs = strtoull(optarg, NULL, 0); break;
		case 'r': runs = atoi(optarg); break;
		case 'm': methods = optarg; break;
		case 'H': use_huge = 0; break;
		case 'o': csv_path = optarg; break;
		case 't': tmpdir = optarg; break;
		case 's': rng = strtoull(optarg, NULL, 0); break;
		case 'B': shape.router_bits = (unsigned)atoi(optarg); break;
		case 'L': shape.leaves = strtoull(optarg, NULL, 0); break;
		case 'S': shape.max_size = strtoull(optarg, NULL, 0); break;
		case 'h':
			printf("usage: %s [-d DIST | -f SOSD_FILE] [-n N] "
			       "[-l LOOKUPS] [-a ABSENT] [-r RUNS] [-m LIST] "
			       "[-H] [-o CSV] [-t DIR] [-s SEED] [-B BITS] "
			       "[-L LEAVES] [-S BYTES]\n", prog);
			return 0;
		default:
			fprintf(stderr, "Try '%s -h'.\n", prog);
			return 2;
		}
	}
	if (runs < 1 || runs > 64)
		die("%s", "runs must be 1..64");
	int want[M_COUNT] = { 0 };
	{
		char *list = strdup(methods), *save = NULL;
		for (char *t = strtok_r(list, ",", &save); t;
		     t = strtok_r(NULL, ",", &save)) {
			int found = 0;
			for (int m = 0; m < M_COUNT; m++)
				if (strcmp(t, method_names[m]) == 0)
					want[m] = found = 1;
			if (!found)
				die("unknown method '%s'", t);
		}
		free(list);
	}

	/* Keys. */
	double t0 = now();
	uint64_t *keys;
	const uint64_t n_alloc = n;
	if (file) {
		keys = read_sosd(file, &n);
		const char *base = strrchr(file, '/');
		dist_label = base ? base + 1 : file;
	} else {
		keys = gen_keys(dist, n, &n);
		dist_label = dist;
	}
	if (n < 2)
		die("%s", "need at least 2 keys");
	fprintf(stderr, "%s: %" PRIu64 " %s keys ready in %.1f s\n", prog, n,
		dist_label, now() - t0);

	/* Queries: present keys at random positions; absent keys one past
	 * a key whose successor is not adjacent (lower bound: i + 1). */
	uint64_t *q = alloc_array(sizeof(*q) * nlook);
	uint64_t want_sum = 0;
	for (uint64_t i = 0; i < nlook; i++) {
		const uint64_t pos = rnd() % n;
		q[i] = keys[pos];
		want_sum += pos;
	}
	uint64_t *qa = alloc_array(sizeof(*qa) * (nabs ? nabs : 1));
	uint64_t want_abs = 0, got_abs = 0;
	for (uint64_t tries = 0; got_abs < nabs && tries < 100 * nabs; tries++) {
		const uint64_t pos = rnd() % (n - 1);
		if (keys[pos] + 1 == keys[pos + 1])
			continue;
		qa[got_abs++] = keys[pos] + 1;
		want_abs += pos + 1;
	}
	nabs = got_abs;

	if (csv_path) {
		struct stat sb;
		const int fresh = stat(csv_path, &sb) != 0 || sb.st_size == 0;
		csv = fopen(csv_path, "a");
		if (csv == NULL)
			die("cannot open '%s'", csv_path);
		if (fresh)
			fprintf(csv, "dist,n,method,query,hugepages,runs,"
				     "lookups,median_ns,min_ns,max_ns,"
				     "index_bytes,build_ms,note\n");
	}

	struct kyro__rmi_counters ct = {0};
	struct ctx c = { .keys = keys, .n = n, .ctr = &ct };
	char note[256] = "";
	uint64_t index_bytes = 0;
	double build_ms = 0;

	/* The index: build, write to a file with fsync (what
	 * kyro-rmi-build does), then load from a copy in huge pages. */
	void *img = NULL, *img_huge = NULL;
	size_t size = 0;
	int any_rmi = 0;
	for (int m = M_RMI; m <= M_AOS_OFF; m++)
		any_rmi |= want[m];
	if (any_rmi) {
		struct kyro__rmi_build_stats st;
		char err[256];
		t0 = now();
		int rc = kyro__rmi_train(keys, n, 1, SNAP_SUM,
					 &shape, &img, &size, &st,
					 err, sizeof(err));
		const double tb = now() - t0;
		if (rc)
			die("build: %s", err);
		char path[4200];
		snprintf(path, sizeof(path), "%s/rmi_bench.%ld.rmi", tmpdir,
			 (long)getpid());
		t0 = now();
		const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, img, size) != (ssize_t)size ||
		    fsync(fd) != 0 || close(fd) != 0)
			die("cannot write '%s'", path);
		const double tw = now() - t0;
		unlink(path);
		build_ms = (tb + tw) * 1e3;
		index_bytes = size;
		img_huge = alloc_array(size);
		memcpy(img_huge, img, size);
		rc = kyro__rmi_load(&c.rmi, img_huge, size, keys, n, 1, SNAP_SUM,
				    err,
				    sizeof(err));
		if (rc)
			die("load: %s", err);
		snprintf(note, sizeof(note),
			 "leaves=%" PRIu64 " bits=%" PRIu64 "%s split=%" PRIu64
			 " sub=%" PRIu64 " bound=%" PRIu64 " meanwin=%.1f "
			 "maxwin=%.0f index=%.3f%% build=%.0fM/s "
			 "build+write=%.0fM/s",
			 st.leaves, st.router_bits, st.router_log ? "log" : "",
			 st.split_leaves, st.sub_leaves, st.bound,
			 st.mean_window,
			 st.max_window, 100.0 * (double)size / (8.0 * (double)n),
			 (double)n / tb / 1e6, (double)n / (tb + tw) / 1e6);
		fprintf(stderr,
			"%s: index %zu bytes (%s), build %.3f s, "
			"write+fsync %.3f s, simd %s\n",
			prog, size, note, tb, tw,
			kyro__simd_name(kyro__simd_selected()));
	}
	if (want[M_RMI_BATCH])
		c.out = alloc_array(sizeof(*c.out) * (nlook > nabs ? nlook : nabs));
	uint64_t *offs = NULL;
	struct rec *aos = NULL;
	if (want[M_SOA_OFF] || want[M_AOS_OFF]) {
		offs = alloc_array(sizeof(*offs) * n);
		aos = alloc_array(sizeof(*aos) * n);
		for (uint64_t i = 0; i < n; i++) {
			offs[i] = i;
			aos[i].key = keys[i];
			aos[i].off = i;
		}
		c.offs = offs;
		c.aos = aos;
		/* Skipped like a SIMD level the CPU lacks, so that the
		 * benchmark's one command runs to the end on any machine. */
		if (want[M_AOS_OFF] &&
		    !kyro__simd_supported(KYRO_SIMD_AVX512)) {
			fprintf(stderr,
				"%s: rmi-aos+off needs AVX-512: skipped\n",
				prog);
			want[M_AOS_OFF] = 0;
		}
	}
	size_t eyt_bytes = 0;
	uint64_t *eyt = NULL;
	if (want[M_EYTZINGER]) {
		t0 = now();
		eyt_bytes = sizeof(*eyt) * (n + 1);
		eyt = alloc_array(eyt_bytes);
		eyt_fill(keys, eyt, n);
		eyt[0] = 0; /* slot 0 answers "past the end": key sum 0 */
		c.eyt = eyt;
		fprintf(stderr, "%s: eytzinger built in %.1f s\n", prog,
			now() - t0);
	}
	double lmdb_s = 0;
	if (want[M_LMDB]) {
		lmdb_s = lmdb_load(&c, tmpdir);
		fprintf(stderr, "%s: lmdb loaded in %.1f s (%.1f M keys/s)\n",
			prog, lmdb_s, (double)n / lmdb_s / 1e6);
	}
	fprintf(stderr, "%s: huge pages %s, AnonHugePages %ld kB\n", prog,
		use_huge ? "advised" : "off", anon_huge_kb());

	/* Expected checksums for Eytzinger: the keys found. */
	uint64_t want_keysum = 0, want_abs_keysum = 0;
	for (uint64_t i = 0; i < nlook; i++)
		want_keysum += q[i];
	for (uint64_t i = 0; i < nabs; i++)
		want_abs_keysum +=
			keys[kyro__lower_bound_binary(keys, n, qa[i])];

	/* Round robin: run r of every method, then run r + 1.  The machine
	 * is shared and its speed drifts; taking the methods' runs side by
	 * side lets the drift fall on all of them alike, so the ratios hold
	 * even when the absolute times move. */
	int bad = 0;
	static double t[M_COUNT][2][64];
	for (int r = 0; r < runs; r++) {
		for (int m = 0; m < M_COUNT; m++) {
			if (!want[m])
				continue;
			if (m >= M_RMI_SCALAR && m <= M_RMI_AVX512) {
				if (kyro__rmi_set_simd(c.rmi,
						       m - M_RMI_SCALAR) != 0) {
					if (r == 0)
						fprintf(stderr,
							"%s: %s not supported "
							"here\n",
							prog, method_names[m]);
					want[m] = 0;
					continue;
				}
			} else if (c.rmi) {
				kyro__rmi_set_simd(c.rmi,
						   kyro__simd_selected());
			}
			if (c.rmi)
				kyro__rmi_count_windows(c.rmi,
							m == M_RMI_WINDOWS);
			for (int kind = 0; kind < 2; kind++) {
				const uint64_t nq = kind ? nabs : nlook;
				const uint64_t *qq = kind ? qa : q;
				if (nq == 0 || (kind && m == M_RMI_PREDICT))
					continue;
				uint64_t sum = 0;
				t[m][kind][r] = run(&c, (enum method)m, qq, nq,
						    kind, &sum);
				uint64_t want_s = kind ? want_abs : want_sum;
				if (m == M_EYTZINGER)
					want_s = kind ? want_abs_keysum
						      : want_keysum;
				if (m != M_RMI_PREDICT && sum != want_s) {
					fprintf(stderr, "%s: %s gave wrong "
						"answers\n", prog,
						method_names[m]);
					bad = 1;
				}
			}
		}
	}
	for (int m = 0; m < M_COUNT; m++) {
		if (!want[m])
			continue;
		for (int kind = 0; kind < 2; kind++) {
			const uint64_t nq = kind ? nabs : nlook;
			if (nq == 0 || (kind && m == M_RMI_PREDICT))
				continue;
			const int is_rmi = m <= M_AOS_OFF;
			char mnote[300];
			snprintf(mnote, sizeof(mnote), "%s",
				 is_rmi && m == M_RMI ? note : "");
			if (m == M_LMDB)
				snprintf(mnote, sizeof(mnote),
					 "load=%.1fs", lmdb_s);
			report(method_names[m], kind ? "absent" : "present",
			       n, runs, nq, t[m][kind],
			       is_rmi ? index_bytes
				      : m == M_EYTZINGER ? eyt_bytes : 0,
			       is_rmi ? build_ms
				      : m == M_LMDB ? lmdb_s * 1e3 : 0,
			       mnote);
		}
	}
	if (c.rmi) {
		uint64_t lookups = 0;
		for (int b = 0; b < KYRO_RMI_HIST; b++)
			lookups += ct.window_hist[b];
		fprintf(stderr, "%s: counters: %" PRIu64 " lookups in windows, %" PRIu64
			" mispredicts, %" PRIu64 " fallbacks; windows:",
			prog, lookups, ct.mispredicts, ct.fallbacks);
		for (int b = 0; b < KYRO_RMI_HIST; b++)
			if (ct.window_hist[b])
				fprintf(stderr, " [%llu..]=%" PRIu64,
					b ? 1ULL << (b - 1) : 0ULL,
					ct.window_hist[b]);
		fputc('\n', stderr);
	}
	lmdb_close(&c);
	kyro__rmi_free(c.rmi);
	free(img);
	free_array(img_huge, size);
	free_array(eyt, eyt_bytes);
	free_array(offs, sizeof(*offs) * n);
	free_array(aos, sizeof(*aos) * n);
	free_array(c.out, sizeof(*c.out) * (nlook > nabs ? nlook : nabs));
	free_array(q, sizeof(*q) * nlook);
	free_array(qa, sizeof(*qa) * (nabs ? nabs : 1));
	free_array(keys, sizeof(*keys) * (file ? n : n_alloc));
	if (csv && fclose(csv) != 0)
		die("cannot write '%s'", csv_path);
	return bad;
}
