/*
 * vecq.c - the in-process side of the HTTP vector search benchmark.
 *
 *   vecq load DIR BASE.fvecs       put every vector (keys 1..n), one batch
 *                                  per 1000, KYRO_SYNC_NONE, then fsync
 *   vecq search DIR Q.fvecs THREADS SECONDS K EF
 *                                  THREADS threads, each with its own
 *                                  read-only handle, search the queries in
 *                                  turn for SECONDS; prints "qps=N cpu=S":
 *                                  queries a second, and the process's
 *                                  CPU seconds (user + system) meanwhile
 *
 * The search loop is what a kyro-serve worker does per request minus
 * HTTP and JSON: one kyro_vec_search() on its own handle.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "kyro.h"

static float *vecs;
static uint32_t dim;
static size_t nvec;
static const char *dir;
static double seconds;
static uint32_t k, ef;

static void die(const char *what, const char *why)
{
	fprintf(stderr, "vecq: %s: %s\n", what, why);
	exit(2);
}

/* Read an .fvecs file: each vector an int32 dimension, then the floats. */
static void read_fvecs(const char *path)
{
	FILE *f = fopen(path, "rb");
	int32_t d;
	if (!f || fread(&d, 4, 1, f) != 1 || d <= 0)
		die(path, "cannot read an .fvecs header");
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, 0, SEEK_SET);
	dim = (uint32_t)d;
	nvec = (size_t)size / (4 * (dim + 1));
	if (!(vecs = malloc(nvec * dim * sizeof *vecs)))
		die(path, "out of memory");
	for (size_t i = 0; i < nvec; i++)
		if (fread(&d, 4, 1, f) != 1 || (uint32_t)d != dim ||
		    fread(vecs + i * dim, 4, dim, f) != dim)
			die(path, "a short or mixed-dimension file");
	fclose(f);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void load(void)
{
	kyro_db *db = NULL;
	int rc = kyro_open(&db, dir, KYRO_RDWR);
	if (!rc)
		rc = kyro_set_sync(db, KYRO_SYNC_NONE);
	for (size_t i = 0; !rc && i < nvec; i += 1000) {
		rc = kyro_batch_begin(db);
		for (size_t j = i; !rc && j < nvec && j < i + 1000; j++)
			rc = kyro_vec_put(db, j + 1, vecs + j * dim, dim, NULL);
		rc = rc ? rc : kyro_batch_commit(db, NULL);
	}
	if (!rc)
		rc = kyro_sync(db);
	if (rc)
		die(dir, db ? kyro_errmsg(db) : kyro_strerror(rc));
	kyro_close(db);
}

struct worker {
	pthread_t t;
	unsigned id;
	uint64_t done;
};

static void *search(void *arg)
{
	struct worker *w = arg;
	struct kyro_vec_hit hits[KYRO_VEC_MAX_K];
	kyro_db *db = NULL;
	int rc = kyro_open(&db, dir, KYRO_RDONLY);
	if (rc)
		die(dir, db ? kyro_errmsg(db) : kyro_strerror(rc));
	size_t q = (nvec / 7 * w->id) % nvec;
	double end = now() + seconds;
	while (now() < end) {
		/* Check the clock every 16 searches. */
		for (int i = 0; i < 16; i++) {
			struct kyro_vec_query qq = { .vec = vecs + q * dim,
						     .dim = dim,
						     .k = k,
						     .ef = ef,
						     .hi = UINT64_MAX };
			size_t n;
			if (kyro_vec_search(db, &qq, hits, &n))
				die("search", kyro_errmsg(db));
			q = (q + 1) % nvec;
			w->done++;
		}
	}
	kyro_close(db);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "load")) {
		dir = argv[2];
		read_fvecs(argv[3]);
		load();
		return 0;
	}
	if (argc != 8 || strcmp(argv[1], "search")) {
		fprintf(stderr,
			"usage: vecq load DIR BASE.fvecs\n"
			"       vecq search DIR Q.fvecs THREADS SECONDS K EF\n");
		return 2;
	}
	dir = argv[2];
	read_fvecs(argv[3]);
	unsigned threads = (unsigned)atoi(argv[4]);
	seconds = atof(argv[5]);
	k = (uint32_t)atoi(argv[6]);
	ef = (uint32_t)atoi(argv[7]);
	if (!threads || threads > 64 || seconds <= 0 || !k ||
	    k > KYRO_VEC_MAX_K)
		die("search", "bad arguments");
	struct worker w[64] = {{0}};
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	double t0 = now();
	for (unsigned i = 0; i < threads; i++) {
		w[i].id = i;
		pthread_create(&w[i].t, NULL, search, &w[i]);
	}
	uint64_t total = 0;
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(w[i].t, NULL);
		total += w[i].done;
	}
	double wall = now() - t0;
	getrusage(RUSAGE_SELF, &ru1);
	double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec +
			      ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		     (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec +
			      ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) /
			     1e6;
	printf("qps=%.1f cpu=%.3f queries=%llu\n", (double)total / wall, cpu,
	       (unsigned long long)total);
	return 0;
}
