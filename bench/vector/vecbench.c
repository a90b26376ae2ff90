/*
 * vecbench.c - KyroDB's side of bench/vector: build, search, exact search
 * and open-to-first-answer of the vector index, single thread, over
 * .fvecs files (int32 d, then d float32, per vector).  Keys are the
 * vectors' positions, so an answer's key is its id in the ground truth.
 *
 *   vecbench build BASE M EFC OUT.idx
 *       prints: build_s=.. peak_rss_kb=.. file_bytes=..
 *   vecbench search IDX QUERIES GT K EF...   (environment: VECBENCH_EVICT
 *       drops IDX from the page cache first; VECBENCH_PIN pins it)
 *       a warm-up pass over the queries at the largest EF, then per EF one
 *       line: ef=.. recall=.. qps=.. (one query at a time)
 *   vecbench exact BASE QUERIES GT K NQ
 *       exact search of the first NQ queries: qps=.. recall=..
 *   vecbench gt BASE QUERIES K OUT.ivecs THREADS
 *       the ground truth by exact search (ids of the K nearest, nearest
 *       first), on THREADS threads (not a measurement)
 *   vecbench open IDX QUERIES
 *       open_to_first_answer_ms=.. (open, then one search at ef 64)
 *   vecbench open-cold IDX QUERIES
 *       the same after dropping IDX's pages from the page cache
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hnsw.h"
#include "internal.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* CPU time of this thread: on a shared machine, the figure that other
 * processes' load disturbs least.  Printed beside the wall clock's. */
static double cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what, const char *why)
{
	fprintf(stderr, "vecbench: %s: %s\n", what, why);
	exit(2);
}

/* A whole .fvecs (or .ivecs: same layout) file: N rows of D. */
static void *load_vecs(const char *path, uint32_t *d, uint64_t *n)
{
	FILE *f = fopen(path, "rb");
	int32_t dim;
	if (!f || fread(&dim, 4, 1, f) != 1 || dim <= 0)
		die(path, "cannot read");
	fseek(f, 0, SEEK_END);
	const long size = ftell(f);
	const uint64_t rows = (uint64_t)size / (4 + 4 * (uint64_t)dim);
	float *v = malloc(rows * (uint64_t)dim * 4);
	fseek(f, 0, SEEK_SET);
	for (uint64_t i = 0; i < rows; i++)
		if (fread(&dim, 4, 1, f) != 1 ||
		    fread(v + i * (uint64_t)dim, 4, (size_t)dim, f) != (size_t)dim)
			die(path, "short read");
	fclose(f);
	*d = (uint32_t)dim;
	*n = rows;
	return v;
}

static uint64_t *iota_keys(uint64_t n)
{
	uint64_t *k = malloc(n * 8);
	for (uint64_t i = 0; i < n; i++)
		k[i] = i;
	return k;
}

static int cmd_build(char **a)
{
	char msg[KMSG_MAX];
	uint32_t d;
	uint64_t n;
	float *v = load_vecs(a[0], &d, &n);
	uint64_t *k = iota_keys(n);
	struct kyro__hnsw_params p = {(uint32_t)atoi(a[1]),
				      (uint32_t)atoi(a[2]), KYRO_VEC_L2,
				      42, 0, 0};
	struct kyro__hnsw *h;
	const double t0 = now(), c0 = cpu_now();
	if (kyro__hnsw_build(msg, k, v, n, d, &p, &h))
		die("build", msg);
	const double t1 = now(), c1 = cpu_now();
	char *dir = strdup(a[3]), *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	if (kyro__hnsw_write(msg, h, slash ? dir : ".", a[3]))
		die("write", msg);
	const double t2 = now();
	struct rusage ru;
	struct stat st;
	getrusage(RUSAGE_SELF, &ru);
	stat(a[3], &st);
	printf("build_s=%.3f build_cpu_s=%.3f write_s=%.3f peak_rss_kb=%ld "
	       "file_bytes=%lld\n",
	       t1 - t0, c1 - c0, t2 - t1, ru.ru_maxrss, (long long)st.st_size);
	return 0;
}

static double recall_of(const struct kyro__vec_hit *got, uint32_t ng,
			const int32_t *gt, uint32_t k)
{
	uint32_t hit = 0;
	for (uint32_t i = 0; i < k; i++)
		for (uint32_t j = 0; j < ng; j++)
			hit += got[j].key == (uint64_t)gt[i];
	return (double)hit / k;
}

static void evict(const char *path);

static int cmd_search(char **a, int na)
{
	char msg[KMSG_MAX];
	uint32_t d, gd;
	uint64_t nq, ngt;
	struct kyro__hnsw *h;
	if (getenv("VECBENCH_EVICT"))
		evict(a[0]);
	if (kyro__hnsw_open(msg, a[0], &h))
		die("open", msg);
	if (getenv("VECBENCH_PIN") && kyro__hnsw_pin(msg, h))
		die("pin", msg);
	float *q = load_vecs(a[1], &d, &nq);
	int32_t *gt = load_vecs(a[2], &gd, &ngt);
	const uint32_t k = (uint32_t)atoi(a[3]);
	struct kyro__vec_scratch *s = kyro__vec_scratch_new(h->n, h->dim);
	struct kyro__vec_hit out[1024];
	uint32_t ng;
	const uint32_t efmax = (uint32_t)atoi(a[na - 1]);
	for (uint64_t i = 0; i < nq; i++)
		if (kyro__hnsw_search(msg, h, s, q + i * d, d, k, efmax, 0,
				      UINT64_MAX, 0, out, &ng))
			die("search", msg);
	for (int e = 4; e < na; e++) {
		const uint32_t ef = (uint32_t)atoi(a[e]);
		double rsum = 0;
		s->ndist = 0;
		const double t0 = now(), c0 = cpu_now();
		for (uint64_t i = 0; i < nq; i++) {
			if (kyro__hnsw_search(msg, h, s, q + i * d, d, k, ef, 0,
					      UINT64_MAX, 0, out, &ng))
				die("search", msg);
			rsum += recall_of(out, ng, gt + i * gd, k);
		}
		const double t = now() - t0, c = cpu_now() - c0;
		printf("ef=%u recall=%.4f qps=%.1f qps_cpu=%.1f "
		       "dist_per_query=%.0f\n",
		       ef, rsum / (double)nq, (double)nq / t, (double)nq / c,
		       (double)s->ndist / (double)nq);
	}
	return 0;
}

static int cmd_exact(char **a)
{
	char msg[KMSG_MAX];
	uint32_t d, qd, gd;
	uint64_t n, nq, ngt;
	float *v = load_vecs(a[0], &d, &n);
	float *q = load_vecs(a[1], &qd, &nq);
	int32_t *gt = load_vecs(a[2], &gd, &ngt);
	const uint32_t k = (uint32_t)atoi(a[3]);
	uint64_t want = strtoull(a[4], NULL, 10);
	uint64_t *keys = iota_keys(n);
	if (want < nq)
		nq = want;
	const struct kyro__vec_set set = {keys, v, n, d, d, KYRO_VEC_L2};
	const struct kyro__vec_ops *ops = kyro__vec_ops_best();
	struct kyro__vec_scratch *s = kyro__vec_scratch_new(n, d);
	struct kyro__vec_hit out[1024];
	uint32_t ng;
	double rsum = 0;
	const double t0 = now(), c0 = cpu_now();
	for (uint64_t i = 0; i < nq; i++) {
		if (kyro__vec_prepare(msg, s, KYRO_VEC_L2, q + i * qd, qd) ||
		    kyro__vec_exact(&set, ops, s, 0, n, k, out, &ng))
			die("exact", msg);
		rsum += recall_of(out, ng, gt + i * gd, k);
	}
	const double t = now() - t0, c = cpu_now() - c0;
	printf("queries=%llu qps=%.2f qps_cpu=%.2f recall=%.4f\n",
	       (unsigned long long)nq, (double)nq / t, (double)nq / c,
	       rsum / (double)nq);
	return 0;
}

struct gt_job {
	const struct kyro__vec_set *set;
	const float *q;
	uint32_t qd, k;
	uint64_t from, to;
	int32_t *out; /* (1 + k) int32 per query: k, then ids */
};

static void *gt_run(void *arg)
{
	struct gt_job *j = arg;
	char msg[KMSG_MAX];
	struct kyro__vec_scratch *s = kyro__vec_scratch_new(j->set->n, j->qd);
	struct kyro__vec_hit out[1024];
	uint32_t ng;
	for (uint64_t i = j->from; i < j->to; i++) {
		if (kyro__vec_prepare(msg, s, KYRO_VEC_L2, j->q + i * j->qd, j->qd) ||
		    kyro__vec_exact(j->set, kyro__vec_ops_best(), s, 0,
				    j->set->n, j->k, out, &ng))
			die("gt", msg);
		int32_t *row = j->out + i * (1 + j->k);
		row[0] = (int32_t)j->k;
		for (uint32_t x = 0; x < j->k; x++)
			row[1 + x] = x < ng ? (int32_t)out[x].key : -1;
	}
	kyro__vec_scratch_free(s);
	return NULL;
}

static int cmd_gt(char **a)
{
	uint32_t d, qd;
	uint64_t n, nq;
	float *v = load_vecs(a[0], &d, &n);
	float *q = load_vecs(a[1], &qd, &nq);
	const uint32_t k = (uint32_t)atoi(a[2]);
	int threads = atoi(a[4]);
	uint64_t *keys = iota_keys(n);
	const struct kyro__vec_set set = {keys, v, n, d, d, KYRO_VEC_L2};
	int32_t *out = malloc(nq * (1 + k) * 4);
	struct gt_job jobs[16];
	pthread_t tid[16];
	if (threads < 1 || threads > 16)
		threads = 1;
	for (int t = 0; t < threads; t++) {
		jobs[t] = (struct gt_job){&set, q, qd, k, nq * t / threads,
					  nq * (t + 1) / threads, out};
		pthread_create(&tid[t], NULL, gt_run, &jobs[t]);
	}
	for (int t = 0; t < threads; t++)
		pthread_join(tid[t], NULL);
	FILE *f = fopen(a[3], "wb");
	if (!f || fwrite(out, 4, nq * (1 + k), f) != nq * (1 + k) || fclose(f))
		die(a[3], "cannot write");
	return 0;
}

/* Drop PATH's pages from the page cache (only this file's), so that the
 * next open reads it from the disk. */
static void evict(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED))
		die(path, "cannot evict from the page cache");
	close(fd);
}

static int cmd_open(char **a, int cold)
{
	char msg[KMSG_MAX];
	uint32_t d;
	uint64_t nq;
	float *q = load_vecs(a[1], &d, &nq);
	if (cold)
		evict(a[0]);
	struct kyro__hnsw *h;
	struct kyro__vec_hit out[10];
	uint32_t ng;
	const double t0 = now(), c0 = cpu_now();
	if (kyro__hnsw_open(msg, a[0], &h))
		die("open", msg);
	struct kyro__vec_scratch *s = kyro__vec_scratch_new(h->n, h->dim);
	if (kyro__hnsw_search(msg, h, s, q, d, 10, 64, 0, UINT64_MAX, 0, out,
			      &ng))
		die("search", msg);
	const double t1 = now(), c1 = cpu_now();
	/* A second query: the blocks near the entry point are verified. */
	if (kyro__hnsw_search(msg, h, s, q + d, d, 10, 64, 0, UINT64_MAX, 0,
			      out, &ng))
		die("search", msg);
	const double t2 = now();
	printf("open_to_first_answer_ms=%.3f second_query_ms=%.3f "
	       "open_to_first_answer_cpu_ms=%.3f\n",
	       (t1 - t0) * 1e3, (t2 - t1) * 1e3, (c1 - c0) * 1e3);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 6 && strcmp(argv[1], "build") == 0)
		return cmd_build(argv + 2);
	if (argc >= 7 && strcmp(argv[1], "search") == 0)
		return cmd_search(argv + 2, argc - 2);
	if (argc >= 7 && strcmp(argv[1], "exact") == 0)
		return cmd_exact(argv + 2);
	if (argc >= 7 && strcmp(argv[1], "gt") == 0)
		return cmd_gt(argv + 2);
	if (argc >= 4 && strcmp(argv[1], "open") == 0)
		return cmd_open(argv + 2, 0);
	if (argc >= 4 && strcmp(argv[1], "open-cold") == 0)
		return cmd_open(argv + 2, 1);
	fprintf(stderr, "usage: vecbench build|search|exact|gt|open ... "
			"(see bench/vector/vecbench.c)\n");
	return 2;
}
