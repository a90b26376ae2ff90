/*
 * commit.h - the one writer: a group-commit queue in front of one
 * read-write kyro_db handle.
 *
 * Request threads never write.  They queue a struct wreq and suspend their
 * connection; the committer thread takes everything pending, writes it as
 * one batch (one flock, one COMMIT record, and under --sync=always one
 * fsync), and calls each request's DONE callback with its result.  So
 * concurrent writers share one fsync, and a write is acknowledged only
 * once it is published (and, under always, durable).
 *
 * A failed write, commit or fsync fails every write of its group and
 * disables writing for the life of the process: after a failed fsync the
 * kernel may have dropped the dirty pages, and nothing proves otherwise.
 */
#ifndef KYRO_SERVE_COMMIT_H
#define KYRO_SERVE_COMMIT_H

#include <stddef.h>
#include <stdint.h>

#include "kyro.h"
#include "serve.h"

enum { WOP_PUT, WOP_DELETE, WOP_FN };

struct wreq {
	int op;
	uint64_t key;
	const void *val;    /* borrowed until DONE is called */
	size_t len;
	/*
	 * WOP_FN: the committer calls WRITE inside the group's batch; it
	 * writes any number of records and sets SEQ (and RECORDS, how many
	 * it wrote).  When the request's own input is refused (a vector of
	 * another dimension), WRITE sets STATUS to a 4xx and ERR and
	 * returns non-zero: the batch is then aborted and written again
	 * without this request, so that nothing of it is written and the
	 * others are not failed with it.  Any other failure is the store's.
	 */
	int (*write)(kyro_db *db, struct wreq *w);
	size_t records;
	/* Results, set before DONE is called. */
	int status;         /* 200, 500 (this write failed) or 503 (refused) */
	uint64_t seq;       /* the record's offset */
	char err[256];
	/* Called once from the committer thread; the last touch of W. */
	void (*done)(struct wreq *w, void *arg);
	void *arg;
	struct wreq *next;
};

/* Open the writer handle (creating the store) and start the thread. */
int commit_start(const struct serve_cfg *cfg, char *err, size_t errlen);

/* Queue W; its DONE runs later, from the committer.  Returns 0, or 503
 * (W not queued, W->err set) when writes are disabled or stopping. */
int commit_submit(struct wreq *w);

/* Writes are disabled after a failure: the message, or NULL. */
const char *commit_failure(void);

/* Write what is queued, fsync (in every mode), close the handle.
 * Returns 0, or -1 when writes had failed or the last fsync failed. */
int commit_stop(void);

struct commit_stats {
	uint64_t groups, writes, timer_syncs;
	uint64_t group_hist[14]; /* groups of <= 2^i writes; last: more */
	int failed;
	struct kyro_stats db;    /* the writer handle's counters */
};
void commit_get_stats(struct commit_stats *st);

#endif
