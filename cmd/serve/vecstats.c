/*
 * vecstats.c - the vector figures of /metrics, and the recall spot-check.
 *
 * Every Nth search that used the graph (KYRODB_VECTOR_RECALL_EVERY) is
 * handed, if the checker is idle, to a thread of its own that answers it
 * again exactly and counts how many of the exact neighbours the graph
 * found: recall@k for /metrics, off the request's path.
 *
 * A check is a scan of every vector, so its cost grows with the store
 * while the searches' stays near flat: on Fashion-MNIST, under the HTTP
 * benchmark on a loaded machine, a check took about 70 ms of CPU, and one
 * in 1000 searches came to 16 us of CPU per search (a tenth of the search
 * itself), taken from the workers' cores even at idle priority.  So the checker also keeps to a
 * budget of 1/RECALL_BUDGET of one core: after a check that cost C of
 * CPU, samples are skipped for (RECALL_BUDGET - 1) * C.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../cli.h"
#include "log.h"
#include "store.h"
#include "vecstats.h"

#define RECALL_RING 64
#define RECALL_BUDGET 100

static const struct serve_cfg *cfg;

/* Counters: relaxed atomics; a search costs far more than the add. */
static const uint32_t ef_bounds[] = {16, 32, 64, 128, 256, 512, 1024, 4096};
#define NEF (sizeof ef_bounds / sizeof ef_bounds[0])
static struct {
	uint64_t graph, exact, inserted, hits, fast_parsed;
	uint64_t ef[NEF + 1], ef_sum;
	uint64_t recall_checks, recall_expected, recall_found, recall_skipped;
	uint64_t recall_cpu_ns;
} ctr;

static void add(uint64_t *c, uint64_t n)
{
	__atomic_add_fetch(c, n, __ATOMIC_RELAXED);
}
static uint64_t rd(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* ---- the recall spot-check ---- */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	int started, queued, stop;
	struct kyro_vec_query q; /* the query, its vector in VEC */
	float *vec;
	uint32_t cap;
	uint64_t keys[KYRO_VEC_MAX_K]; /* what the graph answered */
	size_t n;
	double ring[RECALL_RING]; /* the last checks' recall */
	unsigned filled, next;
	uint64_t rest_until; /* serve_now_ns(): no sample taken before */
	kyro_db *db;
} rk = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int cmp_key(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Answer the queued query exactly; count the graph's share of it.  Runs
 * without the lock: only this thread touches the query while QUEUED. */
static void recall_check(struct kyro_vec_hit *exact)
{
	size_t n = 0, found = 0;
	struct kyro_vec_query q = rk.q;
	q.flags |= KYRO_VEC_EXACT;
	if (!rk.db && cli_open(&rk.db, cfg->dir, KYRO_RDONLY)) {
		log_msg(LOG_WARN, "recall check: cannot open the store: %s",
			rk.db ? kyro_errmsg(rk.db) : "out of memory");
		kyro_close(rk.db);
		rk.db = NULL;
		return;
	}
	if (kyro_vec_search(rk.db, &q, exact, &n)) {
		log_msg(LOG_WARN, "recall check: %s", kyro_errmsg(rk.db));
		return;
	}
	qsort(rk.keys, rk.n, sizeof rk.keys[0], cmp_key);
	for (size_t i = 0; i < n; i++)
		found += bsearch(&exact[i].key, rk.keys, rk.n,
				 sizeof rk.keys[0], cmp_key) != NULL;
	add(&ctr.recall_checks, 1);
	add(&ctr.recall_expected, n);
	add(&ctr.recall_found, found);
	pthread_mutex_lock(&rk.mu);
	rk.ring[rk.next] = n ? (double)found / (double)n : 1.0;
	rk.next = (rk.next + 1) % RECALL_RING;
	if (rk.filled < RECALL_RING)
		rk.filled++;
	pthread_mutex_unlock(&rk.mu);
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *recall_thread(void *arg)
{
	(void)arg;
	struct kyro_vec_hit *exact = malloc(KYRO_VEC_MAX_K * sizeof *exact);
	/* A check is a scan of every vector (60,000 distances on
	 * Fashion-MNIST, a hundred searches' worth): at the normal priority
	 * one in 1000 took 4-7% of the CPU the workers had under load.  A
	 * sample may wait; a request should not: the checker takes only CPU
	 * no worker wants, and while it waits the samples offered are
	 * skipped and counted. */
	const struct sched_param idle = {0};
	int rc = pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
	if (rc)
		log_msg(LOG_WARN, "recall check at normal priority: %s",
			strerror(rc));
	pthread_mutex_lock(&rk.mu);
	while (!rk.stop) {
		if (!rk.queued) {
			pthread_cond_wait(&rk.cv, &rk.mu);
			continue;
		}
		pthread_mutex_unlock(&rk.mu);
		const uint64_t c0 = thread_cpu_ns();
		if (exact)
			recall_check(exact);
		const uint64_t cost = thread_cpu_ns() - c0;
		add(&ctr.recall_cpu_ns, cost);
		pthread_mutex_lock(&rk.mu);
		rk.rest_until = serve_now_ns() + (RECALL_BUDGET - 1) * cost;
		rk.queued = 0;
	}
	pthread_mutex_unlock(&rk.mu);
	free(exact);
	return NULL;
}

/* Hand the search Q and its answer to the checker, unless it is busy
 * (then the sample is skipped: the check never holds a request up). */
static void recall_offer(const struct kyro_vec_query *q,
			 const struct kyro_vec_hit *h, size_t n)
{
	if (pthread_mutex_trylock(&rk.mu)) {
		add(&ctr.recall_skipped, 1);
		return;
	}
	if (rk.queued || rk.stop || !rk.started ||
	    serve_now_ns() < rk.rest_until) {
		pthread_mutex_unlock(&rk.mu);
		add(&ctr.recall_skipped, 1);
		return;
	}
	if (rk.cap < q->dim) {
		float *v = realloc(rk.vec, q->dim * sizeof *v);
		if (!v) {
			pthread_mutex_unlock(&rk.mu);
			return;
		}
		rk.vec = v;
		rk.cap = q->dim;
	}
	memcpy(rk.vec, q->vec, q->dim * sizeof *rk.vec);
	rk.q = *q;
	rk.q.vec = rk.vec;
	for (size_t i = 0; i < n; i++)
		rk.keys[i] = h[i].key;
	rk.n = n;
	rk.queued = 1;
	pthread_cond_signal(&rk.cv);
	pthread_mutex_unlock(&rk.mu);
}

void vecstats_start(const struct serve_cfg *c)
{
	cfg = c;
	if (!cfg->recall_every)
		return;
	int rc = pthread_create(&rk.thread, NULL, recall_thread, NULL);
	if (rc)
		log_msg(LOG_WARN,
			"no recall spot-checks: cannot start their thread: %s",
			strerror(rc));
	else
		rk.started = 1;
}

void vecstats_stop(void)
{
	if (!rk.started)
		return;
	pthread_mutex_lock(&rk.mu);
	rk.stop = 1;
	pthread_cond_signal(&rk.cv);
	pthread_mutex_unlock(&rk.mu);
	pthread_join(rk.thread, NULL);
	rk.started = 0;
	kyro_close(rk.db);
	rk.db = NULL;
	free(rk.vec);
	rk.vec = NULL;
}

/* Count a search: by how it was answered, and its beam. */
static void count_search(int exact, uint32_t ef, size_t n)
{
	add(&ctr.hits, n);
	if (exact) {
		add(&ctr.exact, 1);
		return;
	}
	size_t i = 0;
	while (i < NEF && ef > ef_bounds[i])
		i++;
	add(&ctr.graph, 1);
	add(&ctr.ef[i], 1);
	add(&ctr.ef_sum, ef);
}

void vecstats_search(const struct kyro_vec_query *q,
		     const struct kyro_vec_hit *h, size_t n, int exact,
		     uint32_t ef)
{
	count_search(exact, ef, n);
	if (!exact && cfg->recall_every &&
	    rd(&ctr.graph) % cfg->recall_every == 0)
		recall_offer(q, h, n);
}

void vecstats_inserted(size_t n)
{
	add(&ctr.inserted, n);
}

void vecstats_fast_parsed(void)
{
	add(&ctr.fast_parsed, 1);
}

/* ---- /metrics ---- */

#define U(x) ((unsigned long long)(x))

static void head(struct sbuf *b, const char *name, const char *type,
		 const char *help)
{
	sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void recall_metrics(struct sbuf *b)
{
	double sum = 0;
	pthread_mutex_lock(&rk.mu);
	unsigned filled = rk.filled;
	for (unsigned i = 0; i < filled; i++)
		sum += rk.ring[i];
	pthread_mutex_unlock(&rk.mu);
	head(b, "kyro_vector_recall_checks_total", "counter",
	     "Graph searches answered again exactly by the recall spot-check.");
	sb_printf(b, "kyro_vector_recall_checks_total %llu\n",
		  U(rd(&ctr.recall_checks)));
	head(b, "kyro_vector_recall_skipped_total", "counter",
	     "Samples dropped because the checker was busy or within its CPU budget.");
	sb_printf(b, "kyro_vector_recall_skipped_total %llu\n",
		  U(rd(&ctr.recall_skipped)));
	head(b, "kyro_vector_recall_cpu_seconds_total", "counter",
	     "CPU time the recall spot-checks took.");
	sb_printf(b, "kyro_vector_recall_cpu_seconds_total %.6f\n",
		  (double)rd(&ctr.recall_cpu_ns) / 1e9);
	head(b, "kyro_vector_recall_neighbours_total", "counter",
	     "Exact neighbours of the checked searches, and how many of them the graph found.");
	sb_printf(b, "kyro_vector_recall_neighbours_total{found=\"no\"} %llu\n",
		  U(rd(&ctr.recall_expected) - rd(&ctr.recall_found)));
	sb_printf(b,
		  "kyro_vector_recall_neighbours_total{found=\"yes\"} %llu\n",
		  U(rd(&ctr.recall_found)));
	/* Absent before the first check, as a gauge without a value. */
	if (filled) {
		head(b, "kyro_vector_recall", "gauge",
		     "Mean recall@k of the last 64 checked searches.");
		sb_printf(b, "kyro_vector_recall %.4f\n", sum / filled);
	}
}

void vector_metrics(struct sbuf *b)
{
	struct kyro_vec_info vi = {0};
	struct kyro_stats st;
	int rc;
	char err[256];
	kyro_db *db = store_reader(&rc, err, sizeof err);
	if (db && kyro_vec_info(db, &vi))
		memset(&vi, 0, sizeof vi);
	store_stats(&st);

	head(b, "kyro_vector_searches_total", "counter",
	     "Vector searches answered, by how: through the graph, or exactly.");
	sb_printf(b, "kyro_vector_searches_total{mode=\"graph\"} %llu\n",
		  U(rd(&ctr.graph)));
	sb_printf(b, "kyro_vector_searches_total{mode=\"exact\"} %llu\n",
		  U(rd(&ctr.exact)));
	head(b, "kyro_vector_distances_total", "counter",
	     "Distance computations made by the searches (the library's count).");
	sb_printf(b, "kyro_vector_distances_total %llu\n", U(st.vec_distances));
	head(b, "kyro_vector_results_total", "counter",
	     "Neighbours returned by the searches.");
	sb_printf(b, "kyro_vector_results_total %llu\n", U(rd(&ctr.hits)));
	head(b, "kyro_vector_search_bodies_fast_total", "counter",
	     "Search bodies read by the fast parser (the rest by the general one).");
	sb_printf(b, "kyro_vector_search_bodies_fast_total %llu\n",
		  U(rd(&ctr.fast_parsed)));
	head(b, "kyro_vector_inserts_total", "counter",
	     "Vectors the server wrote.");
	sb_printf(b, "kyro_vector_inserts_total %llu\n", U(rd(&ctr.inserted)));
	head(b, "kyro_vector_search_ef", "histogram",
	     "The beam (ef) of graph searches.");
	uint64_t cum = 0;
	for (size_t i = 0; i < NEF; i++) {
		cum += rd(&ctr.ef[i]);
		sb_printf(b, "kyro_vector_search_ef_bucket{le=\"%u\"} %llu\n",
			  ef_bounds[i], U(cum));
	}
	cum += rd(&ctr.ef[NEF]);
	sb_printf(b, "kyro_vector_search_ef_bucket{le=\"+Inf\"} %llu\n",
		  U(cum));
	sb_printf(
		b,
		"kyro_vector_search_ef_sum %llu\nkyro_vector_search_ef_count %llu\n",
		U(rd(&ctr.ef_sum)), U(cum));
	recall_metrics(b);
	head(b, "kyro_vector_dimension", "gauge",
	     "The store's vector dimension (0: no vectors).");
	sb_printf(b, "kyro_vector_dimension %u\n", vi.dim);
	head(b, "kyro_vector_snapshot_vectors", "gauge",
	     "Vectors in the snapshot.");
	sb_printf(b, "kyro_vector_snapshot_vectors %llu\n", U(vi.snapshot));
	head(b, "kyro_vector_delta", "gauge",
	     "Vector puts and deletes since the snapshot (searched exactly).");
	sb_printf(b, "kyro_vector_delta %llu\n", U(vi.delta));
	head(b, "kyro_vector_indexed", "gauge",
	     "1 while a graph answers searches.");
	sb_printf(b, "kyro_vector_indexed %d\n", vi.indexed);
	head(b, "kyro_vector_index_refused", "gauge",
	     "1 when a graph exists but was refused: searches scan (kyro-verify says why).");
	sb_printf(b, "kyro_vector_index_refused %d\n", vi.refused);
	head(b, "kyro_vector_index_generation", "gauge",
	     "The graph's generation (0: none).");
	sb_printf(b, "kyro_vector_index_generation %llu\n",
		  U(vi.indexed ? vi.generation : 0));
}
