/*
 * jobs.c - snapshot, learned-index build, warmup and vector index build
 * in threads of their own, each with its own read-write handle.
 *
 * A job thread is detached; the running flag of its kind, under MU, is
 * the only thing that says it is alive.  Waiters are kept on the job and
 * told, from the job thread, once the figures are known.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../cli.h"
#include "jobs.h"
#include "json.h"
#include "kyro.h"
#include "log.h"

struct job {
	int running;
	uint64_t id;
	int auto_started;
	struct job_params params;
	struct job_waiter *waiters;
};

static const char *const names[JOB_KINDS] = {"snapshot", "rmi_build", "warmup",
					     "vector_build"};
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle = PTHREAD_COND_INITIALIZER;
static struct job jobs[JOB_KINDS];
static uint64_t next_id = 1;
static int stopping;
static const struct serve_cfg *cfg;
static uint64_t since_snapshot;  /* writes since the server's last snapshot */
static struct job_stats stats;    /* under MU */

void jobs_init(const struct serve_cfg *c) { cfg = c; }

const char *jobs_name(int kind) { return names[kind]; }

static double now_s(void) { return (double)serve_now_ns() / 1e9; }

static const char *metric_name(int m)
{
	return m == KYRO_METRIC_IP ? "ip" : m == KYRO_METRIC_COSINE ? "cosine" : "l2";
}

/* P's parameters, those not given taken from the graph in use. */
static int vec_params(kyro_db *db, const struct job_params *p,
		      struct kyro_vec_params *vp, struct kyro_vec_info *vi)
{
	int rc = kyro_vec_info(db, vi);
	*vp = p->vec;
	if (!rc && vi->indexed) {
		if (!vp->m)
			vp->m = vi->m;
		if (!vp->ef_construction)
			vp->ef_construction = vi->ef_construction;
		if (!vp->metric)
			vp->metric = vi->metric;
	}
	return rc;
}

/*
 * The graph over every vector: when vectors were written since the
 * snapshot, a new snapshot folds them in and its graph is committed with
 * it (keeping the learned index if there is one); else the graph of the
 * current snapshot is built again (new parameters).  Readers keep
 * answering from the old graph and the delta until the commit.
 */
static int vec_build(kyro_db *db, const struct job_params *p, struct sbuf *out)
{
	struct kyro_vec_info vi;
	struct kyro_vec_params vp;
	struct kyro_index_info ii = {0};
	double t0 = now_s();
	int rc = vec_params(db, p, &vp, &vi);
	int snap = !rc && vi.delta > 0;
	if (!rc && snap) {
		unsigned flags = KYRO_SNAPSHOT_VECTORS;
		if (!kyro_index_info(db, &ii) && ii.kind == KYRO_INDEX_RMI)
			flags |= KYRO_SNAPSHOT_INDEX;
		rc = kyro_set_vec_params(db, &vp);
		if (!rc)
			rc = kyro_snapshot(db, flags, NULL, NULL, NULL, NULL);
	} else if (!rc) {
		rc = kyro_vec_build(db, &vp, NULL, NULL, NULL);
	}
	if (!rc)
		rc = kyro_vec_info(db, &vi);
	if (!rc)
		sb_printf(out, ",\"snapshot\":%s,\"vectors\":%llu,\"dim\":%u,\"metric\":\"%s\","
			  "\"m\":%u,\"ef_construction\":%u,\"bytes\":%llu,\"generation\":%llu,"
			  "\"seconds\":%.6f",
			  snap ? "true" : "false", (unsigned long long)vi.snapshot, vi.dim,
			  metric_name(vi.metric), vi.m, vi.ef_construction,
			  (unsigned long long)vi.bytes, (unsigned long long)vi.generation,
			  now_s() - t0);
	return rc;
}

/* Run the job's library call; figures go into OUT as JSON members. */
static int run_job(int kind, int auto_started, const struct job_params *p,
		   struct sbuf *out, char *err, size_t errlen)
{
	kyro_db *db = NULL;
	int rc = cli_open(&db, cfg->dir, kind == JOB_WARMUP ? KYRO_RDONLY : KYRO_RDWR);
	if (!rc && cfg->retain_set)
		rc = kyro_set_retain(db, cfg->retain_bytes, cfg->retain_seconds);
	if (rc)
		goto done;
	if (kind == JOB_SNAPSHOT) {
		struct kyro_snapshot_stats s;
		/* The automatic snapshot rebuilds the index with it, so a
		 * daemon left alone keeps its lookups on the learned index;
		 * POST /v1/snapshot keeps what kyro-snapshot does. */
		unsigned flags = auto_started ? KYRO_SNAPSHOT_INDEX : 0;
		if (p->vectors) {
			struct kyro_vec_info vi;
			struct kyro_vec_params vp;
			flags |= KYRO_SNAPSHOT_VECTORS;
			rc = vec_params(db, p, &vp, &vi);
			if (!rc)
				rc = kyro_set_vec_params(db, &vp);
		}
		if (!rc)
			rc = kyro_snapshot(db, flags, NULL, &s, NULL, NULL);
		if (!rc)
			sb_printf(out, ",\"keys\":%llu,\"bytes\":%llu,\"generation\":%llu,\"seconds\":%.6f",
				  (unsigned long long)s.keys, (unsigned long long)s.bytes,
				  (unsigned long long)s.generation, s.seconds);
	} else if (kind == JOB_RMI_BUILD) {
		struct kyro_rmi_stats r;
		rc = kyro_rmi_build(db, NULL, &r, NULL, NULL);
		if (!rc)
			sb_printf(out, ",\"keys\":%llu,\"leaves\":%llu,\"router_bits\":%llu,"
				  "\"bytes\":%llu,\"generation\":%llu,\"mean_window\":%.3f,"
				  "\"max_window\":%.0f,\"seconds\":%.6f",
				  (unsigned long long)r.keys, (unsigned long long)r.leaves,
				  (unsigned long long)r.router_bits, (unsigned long long)r.bytes,
				  (unsigned long long)r.generation, r.mean_window, r.max_window,
				  r.seconds);
	} else if (kind == JOB_VEC_BUILD) {
		rc = vec_build(db, p, out);
	} else {
		uint64_t bytes = 0;
		double t0 = now_s();
		rc = kyro_warmup(db, &bytes);
		if (!rc)
			sb_printf(out, ",\"bytes\":%llu,\"seconds\":%.6f",
				  (unsigned long long)bytes, now_s() - t0);
	}
done:
	if (rc)
		snprintf(err, errlen, "%s", db ? kyro_errmsg(db) : kyro_strerror(rc));
	kyro_close(db);
	return rc;
}

struct job_arg {
	int kind;
};

static void *job_thread(void *p)
{
	int kind = ((struct job_arg *)p)->kind;
	free(p);
	pthread_mutex_lock(&mu);
	uint64_t id = jobs[kind].id;
	int auto_started = jobs[kind].auto_started;
	struct job_params params = jobs[kind].params;
	pthread_mutex_unlock(&mu);

	struct sbuf figures = {0};
	char err[256] = "";
	double t0 = now_s();
	int rc = run_job(kind, auto_started, &params, &figures, err, sizeof err);
	double secs = now_s() - t0;
	if (rc)
		log_msg(LOG_ERROR, "%s job %llu failed: %s", names[kind], (unsigned long long)id, err);
	else
		log_msg(LOG_INFO, "%s job %llu done in %.3f s", names[kind], (unsigned long long)id, secs);

	pthread_mutex_lock(&mu);
	struct job_waiter *w = jobs[kind].waiters;
	jobs[kind].waiters = NULL;
	jobs[kind].running = 0;
	stats.runs[kind]++;
	stats.seconds[kind] += secs;
	if (rc)
		stats.failures[kind]++;
	pthread_cond_broadcast(&idle);
	pthread_mutex_unlock(&mu);

	while (w) {
		struct job_waiter *next = w->next;
		struct sbuf b = {0};
		sb_printf(&b, "{\"job\":%llu,\"kind\":\"%s\"", (unsigned long long)id, names[kind]);
		if (rc) {
			sb_puts(&b, ",\"error\":");
			sb_json_str(&b, err, strlen(err));
			/* No snapshot yet to index: the request is early, not
			 * the server broken. */
			w->status = rc == KYRO_ENOTFOUND ? 409 : 500;
		} else {
			sb_put(&b, figures.p ? figures.p : "", figures.len);
			w->status = 200;
		}
		sb_puts(&b, "}\n");
		w->json = b.oom ? NULL : b.p;
		if (b.oom) {
			sb_free(&b);
			w->status = 500;
		}
		w->done(w, w->arg);
		w = next;
	}
	sb_free(&figures);
	return NULL;
}

static int start_locked(int kind, const struct job_params *p, struct job_waiter *w,
			uint64_t *id, int auto_started)
{
	if (stopping)
		return 503;
	if (jobs[kind].running) {
		*id = jobs[kind].id;
		return 409;
	}
	struct job_arg *a = malloc(sizeof *a);
	if (!a)
		return 500;
	a->kind = kind;
	jobs[kind].id = next_id++;
	jobs[kind].auto_started = auto_started;
	jobs[kind].params = p ? *p : (struct job_params){0};
	jobs[kind].waiters = NULL;
	if (w) {
		w->next = NULL;
		jobs[kind].waiters = w;
	}
	pthread_attr_t at;
	pthread_t t;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&t, &at, job_thread, a);
	pthread_attr_destroy(&at);
	if (rc) {
		free(a);
		jobs[kind].waiters = NULL;
		log_msg(LOG_ERROR, "cannot start a %s job: %s", names[kind], strerror(rc));
		return 500;
	}
	jobs[kind].running = 1;
	if (kind == JOB_SNAPSHOT)
		since_snapshot = 0;
	*id = jobs[kind].id;
	log_msg(LOG_INFO, "%s job %llu started%s", names[kind], (unsigned long long)*id,
		auto_started ? " (automatic)" : "");
	return 0;
}

int jobs_start_with(int kind, const struct job_params *p, struct job_waiter *w,
		    uint64_t *id)
{
	pthread_mutex_lock(&mu);
	int rc = start_locked(kind, p, w, id, 0);
	pthread_mutex_unlock(&mu);
	return rc;
}

int jobs_start(int kind, struct job_waiter *w, uint64_t *id)
{
	return jobs_start_with(kind, NULL, w, id);
}

void jobs_note_writes(uint64_t n)
{
	if (!cfg->auto_snapshot)
		return;
	pthread_mutex_lock(&mu);
	since_snapshot += n;
	uint64_t id;
	if (since_snapshot >= cfg->auto_snapshot && !jobs[JOB_SNAPSHOT].running &&
	    start_locked(JOB_SNAPSHOT, NULL, NULL, &id, 1) == 0)
		stats.auto_snapshots++;
	pthread_mutex_unlock(&mu);
}

int jobs_warm_now(char *err, size_t errlen)
{
	struct sbuf b = {0};
	struct job_params none = {0};
	int rc = run_job(JOB_WARMUP, 0, &none, &b, err, errlen);
	sb_free(&b);
	return rc;
}

int jobs_stop(unsigned ms)
{
	pthread_mutex_lock(&mu);
	stopping = 1;
	struct job_waiter *all = NULL;
	for (int k = 0; k < JOB_KINDS; k++) {
		while (jobs[k].waiters) {
			struct job_waiter *w = jobs[k].waiters;
			jobs[k].waiters = w->next;
			w->next = all;
			all = w;
		}
	}
	pthread_mutex_unlock(&mu);
	for (struct job_waiter *w = all, *next; w; w = next) {
		next = w->next;
		struct sbuf b = {0};
		sb_json_error(&b, "the server is stopping; the job goes on");
		sb_puts(&b, "\n");
		w->status = 503;
		w->json = b.p;
		w->done(w, w->arg);
	}

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&mu);
	int n;
	for (;;) {
		n = 0;
		for (int k = 0; k < JOB_KINDS; k++)
			n += jobs[k].running;
		if (!n || pthread_cond_timedwait(&idle, &mu, &ts) == ETIMEDOUT)
			break;
	}
	if (n) {
		n = 0;
		for (int k = 0; k < JOB_KINDS; k++)
			n += jobs[k].running;
	}
	pthread_mutex_unlock(&mu);
	return n;
}

void jobs_get_stats(struct job_stats *st)
{
	pthread_mutex_lock(&mu);
	*st = stats;
	for (int k = 0; k < JOB_KINDS; k++)
		st->running[k] = jobs[k].running;
	pthread_mutex_unlock(&mu);
}
