/*
 * metrics.c - Prometheus text exposition, written by hand.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "acceptor.h"
#include "commit.h"
#include "feed.h"
#include "jobs.h"
#include "metrics.h"
#include "replica.h"
#include "store.h"
#include "vecstats.h"

static const char *const route_labels[R_COUNT] = {
	"/v1/put", "/v1/delete", "/v1/lookup", "/v1/get_fast/{key}",
	"/v1/lookup_fast/{key}", "GET /v1/kv/{key}", "PUT /v1/kv/{key}",
	"DELETE /v1/kv/{key}", "/v1/lookup_batch", "/v1/range", "/v1/offset",
	"/v1/snapshot", "/v1/rmi/build", "/v1/warmup", "/health",
	"/build_info", "/metrics", "/v1/replay", "/v1/subscribe", "/v1/image",
	"/v1/replicate",
	"/v1/vector/insert", "/v1/vector/insert_batch", "/v1/vector/search",
	"/v1/vector/build", "/v1/insert", "/v1/search", "other",
};

/* Status codes counted by name; anything else counts as "other". */
static const unsigned codes[] = {200, 202, 400, 401, 404, 405, 409, 410, 413,
				 414, 421, 429, 431, 500, 501, 503, 0};
#define NCODES (sizeof codes / sizeof codes[0])

/* Duration buckets, upper bounds in nanoseconds: 25 us .. 1 s. */
static const uint64_t bucket_ns[] = {
	25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,
	10000000, 25000000, 50000000, 100000000, 250000000, 500000000,
	1000000000,
};
#define NBUCKETS (sizeof bucket_ns / sizeof bucket_ns[0])

struct shard {
	uint64_t req[R_COUNT][NCODES];
	uint64_t hist[R_COUNT][NBUCKETS + 1]; /* not cumulative; last: > 1 s */
	uint64_t sum_ns[R_COUNT];
	struct shard *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct shard *shards;
static __thread struct shard *mine;

const char *metrics_route_label(int route) { return route_labels[route]; }

/* Only the owning thread writes a shard: a relaxed load and store is an
 * increment that the scraper can read without tearing. */
static void inc(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static uint64_t rd(const uint64_t *c) { return __atomic_load_n(c, __ATOMIC_RELAXED); }

void metrics_request(int route, unsigned status, uint64_t ns)
{
	if (!mine) {
		struct shard *s = calloc(1, sizeof *s);
		if (!s)
			return;
		pthread_mutex_lock(&lock);
		s->next = shards;
		shards = s;
		pthread_mutex_unlock(&lock);
		mine = s;
	}
	size_t c = 0;
	while (codes[c] && codes[c] != status)
		c++;
	size_t b = 0;
	while (b < NBUCKETS && ns > bucket_ns[b])
		b++;
	inc(&mine->req[route][c], 1);
	inc(&mine->hist[route][b], 1);
	inc(&mine->sum_ns[route], ns);
}

static void head(struct sbuf *b, const char *name, const char *type, const char *help)
{
	sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void requests(struct sbuf *b)
{
	static struct shard sum; /* only the scraper under LOCK touches it */
	pthread_mutex_lock(&lock);
	memset(&sum, 0, sizeof sum);
	for (struct shard *s = shards; s; s = s->next)
		for (int r = 0; r < R_COUNT; r++) {
			for (size_t c = 0; c < NCODES; c++)
				sum.req[r][c] += rd(&s->req[r][c]);
			for (size_t k = 0; k <= NBUCKETS; k++)
				sum.hist[r][k] += rd(&s->hist[r][k]);
			sum.sum_ns[r] += rd(&s->sum_ns[r]);
		}
	head(b, "kyro_http_requests_total", "counter", "HTTP requests answered, by route and status code.");
	for (int r = 0; r < R_COUNT; r++)
		for (size_t c = 0; c < NCODES; c++) {
			if (!sum.req[r][c])
				continue;
			if (codes[c])
				sb_printf(b, "kyro_http_requests_total{route=\"%s\",code=\"%u\"} %llu\n",
					  route_labels[r], codes[c], (unsigned long long)sum.req[r][c]);
			else
				sb_printf(b, "kyro_http_requests_total{route=\"%s\",code=\"other\"} %llu\n",
					  route_labels[r], (unsigned long long)sum.req[r][c]);
		}
	head(b, "kyro_http_request_duration_seconds", "histogram",
	     "Time from the request line to the end of the answer, by route.");
	for (int r = 0; r < R_COUNT; r++) {
		uint64_t cum = 0;
		for (size_t k = 0; k <= NBUCKETS; k++)
			cum += sum.hist[r][k];
		if (!cum)
			continue;
		cum = 0;
		for (size_t k = 0; k < NBUCKETS; k++) {
			cum += sum.hist[r][k];
			sb_printf(b, "kyro_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
				  route_labels[r], (double)bucket_ns[k] / 1e9, (unsigned long long)cum);
		}
		cum += sum.hist[r][NBUCKETS];
		sb_printf(b, "kyro_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
			  route_labels[r], (unsigned long long)cum);
		sb_printf(b, "kyro_http_request_duration_seconds_sum{route=\"%s\"} %.9f\n",
			  route_labels[r], (double)sum.sum_ns[r] / 1e9);
		sb_printf(b, "kyro_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
			  route_labels[r], (unsigned long long)cum);
	}
	pthread_mutex_unlock(&lock);
}

#define U(x) ((unsigned long long)(x))

static void store_metrics(struct sbuf *b)
{
	struct commit_stats c;
	struct kyro_stats r;
	commit_get_stats(&c);
	store_stats(&r);

	head(b, "kyro_wal_appends_total", "counter", "Records the server wrote to the WAL.");
	sb_printf(b, "kyro_wal_appends_total %llu\n", U(c.db.wal_records));
	head(b, "kyro_wal_bytes_total", "counter", "Bytes the server wrote to the WAL.");
	sb_printf(b, "kyro_wal_bytes_total %llu\n", U(c.db.wal_bytes));
	head(b, "kyro_wal_fsyncs_total", "counter", "fsyncs of the WAL by the server.");
	sb_printf(b, "kyro_wal_fsyncs_total %llu\n", U(c.db.wal_fsyncs));
	head(b, "kyro_wal_timer_syncs_total", "counter", "fsyncs made by the --sync=batch timer.");
	sb_printf(b, "kyro_wal_timer_syncs_total %llu\n", U(c.timer_syncs));
	head(b, "kyro_group_commit_size", "histogram", "Writes per group commit (one batch, at most one fsync).");
	uint64_t cum = 0;
	for (int i = 0; i < 13; i++) {
		cum += c.group_hist[i];
		sb_printf(b, "kyro_group_commit_size_bucket{le=\"%u\"} %llu\n", 1u << i, U(cum));
	}
	cum += c.group_hist[13];
	sb_printf(b, "kyro_group_commit_size_bucket{le=\"+Inf\"} %llu\n", U(cum));
	sb_printf(b, "kyro_group_commit_size_sum %llu\nkyro_group_commit_size_count %llu\n",
		  U(c.writes), U(c.groups));
	head(b, "kyro_writes_disabled", "gauge", "1 once a failed write or fsync disabled writing.");
	sb_printf(b, "kyro_writes_disabled %d\n", c.failed);

	uint64_t gen = r.manifest_gen > c.db.manifest_gen ? r.manifest_gen : c.db.manifest_gen;
	uint64_t seq = r.last_seq > c.db.last_seq ? r.last_seq : c.db.last_seq;
	head(b, "kyro_manifest_generation", "gauge", "Manifest generation the readers see.");
	sb_printf(b, "kyro_manifest_generation %llu\n", U(gen));
	head(b, "kyro_snapshot_generation", "gauge", "Snapshot generation the readers see.");
	sb_printf(b, "kyro_snapshot_generation %llu\n", U(r.snapshot_gen));
	head(b, "kyro_rmi_generation", "gauge", "Learned-index generation the readers see (0: none).");
	sb_printf(b, "kyro_rmi_generation %llu\n", U(r.rmi_gen));
	head(b, "kyro_last_offset", "gauge", "Last committed sequence number seen.");
	sb_printf(b, "kyro_last_offset %llu\n", U(seq));
	head(b, "kyro_lookups_total", "counter", "Lookups by the path that answered them.");
	sb_printf(b, "kyro_lookups_total{path=\"delta\"} %llu\n", U(r.lookups_delta));
	sb_printf(b, "kyro_lookups_total{path=\"rmi\"} %llu\n", U(r.lookups_rmi));
	sb_printf(b, "kyro_lookups_total{path=\"binary\"} %llu\n", U(r.lookups_binary));
	head(b, "kyro_rmi_mispredicts_total", "counter", "Keys not in their predicted window.");
	sb_printf(b, "kyro_rmi_mispredicts_total %llu\n", U(r.rmi_mispredicts));
	head(b, "kyro_rmi_fallbacks_total", "counter", "Lookups that probed a whole leaf, its error bound saturated.");
	sb_printf(b, "kyro_rmi_fallbacks_total %llu\n", U(r.rmi_fallbacks));
	head(b, "kyro_rmi_probe_windows_total", "counter",
	     "Learned-index probe windows by size: at most max_keys keys (not cumulative).");
	for (int i = 0; i < KYRO_WINDOW_BUCKETS; i++) {
		if (i < KYRO_WINDOW_BUCKETS - 1)
			sb_printf(b, "kyro_rmi_probe_windows_total{max_keys=\"%u\"} %llu\n",
				  (1u << i) - 1, U(r.window_hist[i]));
		else
			sb_printf(b, "kyro_rmi_probe_windows_total{max_keys=\"+Inf\"} %llu\n",
				  U(r.window_hist[i]));
	}
}

static void job_metrics(struct sbuf *b)
{
	struct job_stats j;
	jobs_get_stats(&j);
	head(b, "kyro_job_runs_total", "counter", "Background jobs finished, by kind.");
	for (int k = 0; k < JOB_KINDS; k++)
		sb_printf(b, "kyro_job_runs_total{job=\"%s\"} %llu\n", jobs_name(k), U(j.runs[k]));
	head(b, "kyro_job_failures_total", "counter", "Background jobs that failed, by kind.");
	for (int k = 0; k < JOB_KINDS; k++)
		sb_printf(b, "kyro_job_failures_total{job=\"%s\"} %llu\n", jobs_name(k), U(j.failures[k]));
	head(b, "kyro_job_duration_seconds_total", "counter", "Total run time of finished jobs, by kind.");
	for (int k = 0; k < JOB_KINDS; k++)
		sb_printf(b, "kyro_job_duration_seconds_total{job=\"%s\"} %.6f\n", jobs_name(k), j.seconds[k]);
	head(b, "kyro_job_running", "gauge", "1 while a job of the kind runs.");
	for (int k = 0; k < JOB_KINDS; k++)
		sb_printf(b, "kyro_job_running{job=\"%s\"} %d\n", jobs_name(k), j.running[k]);
	head(b, "kyro_auto_snapshots_total", "counter", "Snapshots started by KYRODB_AUTO_SNAPSHOT_RECORDS.");
	sb_printf(b, "kyro_auto_snapshots_total %llu\n", U(j.auto_snapshots));
}

static void process_metrics(struct sbuf *b)
{
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "r");
	size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = 0;
	/* Fields after the command name, which may hold spaces and ')'. */
	char *p = strrchr(buf, ')');
	unsigned long long ut = 0, stt = 0, start = 0, vsize = 0;
	long long rss = 0;
	if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
			"%*d %*d %*d %*d %*d %*d %llu %llu %lld", &ut, &stt, &start, &vsize, &rss) != 5)
		ut = stt = start = vsize = 0, rss = 0;
	double tick = (double)sysconf(_SC_CLK_TCK);
	unsigned long long btime = 0;
	if ((f = fopen("/proc/stat", "r")) != NULL) {
		char line[256];
		while (fgets(line, sizeof line, f))
			if (sscanf(line, "btime %llu", &btime) == 1)
				break;
		fclose(f);
	}
	int fds = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL)
			fds += e->d_name[0] != '.';
		closedir(d);
		fds--; /* the directory stream's own descriptor */
	}
	struct rlimit rl = {0, 0};
	getrlimit(RLIMIT_NOFILE, &rl);

	head(b, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
	sb_printf(b, "process_cpu_seconds_total %.2f\n", (double)(ut + stt) / tick);
	head(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
	sb_printf(b, "process_resident_memory_bytes %lld\n", rss * sysconf(_SC_PAGESIZE));
	head(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
	sb_printf(b, "process_virtual_memory_bytes %llu\n", vsize);
	head(b, "process_open_fds", "gauge", "Number of open file descriptors.");
	sb_printf(b, "process_open_fds %d\n", fds);
	head(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
	sb_printf(b, "process_max_fds %llu\n", U(rl.rlim_cur));
	head(b, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
	sb_printf(b, "process_start_time_seconds %.2f\n", (double)btime + (double)start / tick);
}

void metrics_render(struct sbuf *b, unsigned connections, unsigned inflight)
{
	requests(b);
	head(b, "kyro_http_connections", "gauge", "Open HTTP connections.");
	sb_printf(b, "kyro_http_connections %u\n", connections);
	head(b, "kyro_http_worker_connections", "gauge",
	     "Open HTTP connections by worker thread, which serves each for its life.");
	for (unsigned i = 0; i < acceptor_workers(); i++)
		sb_printf(b, "kyro_http_worker_connections{worker=\"%u\"} %u\n", i,
			  acceptor_connections(i));
	head(b, "kyro_http_requests_in_flight", "gauge", "Requests received and not yet answered.");
	sb_printf(b, "kyro_http_requests_in_flight %u\n", inflight);
	store_metrics(b);
	job_metrics(b);
	feed_metrics(b);
	vector_metrics(b);
	replica_metrics(b);
	process_metrics(b);
}
