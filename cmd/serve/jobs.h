/*
 * jobs.h - background jobs: snapshot, learned-index build, warmup, and
 * the vector index (HNSW graph) build.
 *
 * Each job runs in a thread of its own with a handle of its own, so reads
 * and writes go on meanwhile (the library holds writers off only for the
 * manifest commit).  One job of a kind runs at a time.
 */
#ifndef KYRO_SERVE_JOBS_H
#define KYRO_SERVE_JOBS_H

#include <stdint.h>

#include "kyro.h"
#include "serve.h"

enum job_kind { JOB_SNAPSHOT, JOB_RMI_BUILD, JOB_WARMUP, JOB_VEC_BUILD, JOB_KINDS };

/* What a request asks of its job. */
struct job_params {
	int vectors;                 /* snapshot: build the vector index too */
	struct kyro_vec_params vec;  /* vector_build (and vectors=1) */
};

/* Someone waiting for a job's end (a suspended request). */
struct job_waiter {
	int status;      /* 200 with the figures, or an error status */
	char *json;      /* malloc'd answer body; the waiter frees it */
	void (*done)(struct job_waiter *w, void *arg); /* from the job thread */
	void *arg;
	struct job_waiter *next;
};

void jobs_init(const struct serve_cfg *cfg);

/* The kind's name ("snapshot", "rmi_build", "warmup", "vector_build"). */
const char *jobs_name(int kind);

/*
 * Start a job of KIND; *ID gets its id.  W, when not NULL, is told when it
 * ends.  Returns 0 when started; 409 when one of KIND already runs (*ID is
 * that job's); 503 when
 * stopping; 500 when no thread could be started.  On a non-zero return W
 * is not kept.
 */
int jobs_start(int kind, struct job_waiter *w, uint64_t *id);
/* The same with P (NULL: the defaults). */
int jobs_start_with(int kind, const struct job_params *p, struct job_waiter *w,
		    uint64_t *id);

/* The committer reports N more writes; past KYRODB_AUTO_SNAPSHOT_RECORDS
 * since the last snapshot this starts one (with its learned index). */
void jobs_note_writes(uint64_t n);

/* Run the warmup in the calling thread (KYRODB_WARM_ON_START). */
int jobs_warm_now(char *err, size_t errlen);

/* Refuse new jobs, answer every waiter 503, and wait up to MS for running
 * jobs.  Returns how many still run. */
int jobs_stop(unsigned ms);

struct job_stats {
	uint64_t runs[JOB_KINDS], failures[JOB_KINDS];
	double seconds[JOB_KINDS];   /* total duration of finished runs */
	int running[JOB_KINDS];
	uint64_t auto_snapshots;
};
void jobs_get_stats(struct job_stats *st);

#endif
