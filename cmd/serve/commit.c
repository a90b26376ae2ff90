/*
 * commit.c - the group committer.
 *
 * One thread owns the read-write handle.  It sleeps until writes are
 * queued, takes all of them (up to MAX_GROUP), and writes them as one
 * batch.  Durability per --sync:
 *   always  the handle runs KYRO_SYNC_BATCH: the commit fsyncs once,
 *           before the batch is published, so a 200 means durable and no
 *           reader ever sees a write that a crash could take back;
 *   batch   KYRO_SYNC_NONE, and kyro_sync() at most sync_interval_ms
 *           after the first unsynced commit;
 *   none    KYRO_SYNC_NONE, and one kyro_sync() at a clean stop.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../cli.h"
#include "commit.h"
#include "jobs.h"
#include "log.h"

#define MAX_GROUP 8192

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static pthread_t thread;
static struct wreq *head, **tail = &head;
static int stopping, started;
static char failure[256];        /* set once, under MU */
static kyro_db *db;
static const struct serve_cfg *cfg;
static int dirty;                /* committed, not yet fsynced (batch mode) */
static uint64_t sync_due;        /* serve_now_ns() deadline when dirty */
static struct {
	uint64_t groups, writes, timer_syncs, hist[14];
} st;                            /* written by the committer only */

static void bump(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, *c + n, __ATOMIC_RELAXED);
}

static void set_failure(const char *what)
{
	pthread_mutex_lock(&mu);
	if (!failure[0])
		snprintf(failure, sizeof failure, "%s: %s", what, kyro_errmsg(db));
	pthread_mutex_unlock(&mu);
	log_msg(LOG_ERROR, "%s: %s; writes are disabled until restart", what, kyro_errmsg(db));
}

static int write_one(struct wreq *w)
{
	switch (w->op) {
	case WOP_PUT: return kyro_put(db, w->key, w->val, w->len, &w->seq);
	case WOP_DELETE: return kyro_delete(db, w->key, &w->seq);
	}
	return w->write(db, w);
}

/* Write G as one batch.  A request whose own input the store refuses
 * is taken out (onto *REFUSED) and the batch is begun again without it:
 * a batch cannot drop part of what it holds. */
static int write_batch(struct wreq **g, size_t *n, struct wreq **refused)
{
	int rc;
again:
	if (!*g)
		return 0;
	rc = kyro_batch_begin(db);
	for (struct wreq **pp = g; !rc && *pp; pp = &(*pp)->next) {
		struct wreq *w = *pp;
		rc = write_one(w);
		if (rc && w->op == WOP_FN && w->status >= 400 && w->status < 500) {
			kyro_batch_abort(db);
			*pp = w->next;
			w->next = *refused;
			*refused = w;
			(*n)--;
			goto again;
		}
	}
	if (rc)
		kyro_batch_abort(db);
	else
		rc = kyro_batch_commit(db, NULL);
	return rc;
}

static void write_group(struct wreq *g, size_t n)
{
	struct wreq *refused = NULL;
	int rc = write_batch(&g, &n, &refused);
	if (rc) {
		set_failure("write failed");
	} else if (n) {
		uint64_t records = 0;
		for (struct wreq *w = g; w; w = w->next)
			records += w->op == WOP_FN ? w->records : 1;
		bump(&st.groups, 1);
		bump(&st.writes, n);
		int b = 0;
		while (b < 13 && ((size_t)1 << b) < n)
			b++;
		bump(&st.hist[b], 1);
		if (cfg->sync == KYRO_SYNC_BATCH && !dirty) {
			dirty = 1;
			sync_due = serve_now_ns() + (uint64_t)cfg->sync_interval_ms * 1000000;
		}
		jobs_note_writes(records);
	}
	while (g) {
		struct wreq *next = g->next;
		g->status = rc ? 500 : 200;
		if (rc)
			snprintf(g->err, sizeof g->err, "%s", failure);
		g->done(g, g->arg);
		g = next;
	}
	while (refused) {
		struct wreq *next = refused->next;
		refused->done(refused, refused->arg);
		refused = next;
	}
}

static void timed_sync(void)
{
	dirty = 0;
	if (kyro_sync(db))
		set_failure("fsync failed");
	else
		bump(&st.timer_syncs, 1);
}

static void *run(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		if (head) {
			struct wreq *g = head, *w = head;
			size_t n = 1;
			while (w->next && n < MAX_GROUP) {
				w = w->next;
				n++;
			}
			head = w->next;
			w->next = NULL;
			if (!head)
				tail = &head;
			pthread_mutex_unlock(&mu);
			write_group(g, n);
			pthread_mutex_lock(&mu);
			continue;
		}
		if (dirty && serve_now_ns() >= sync_due) {
			pthread_mutex_unlock(&mu);
			timed_sync();
			pthread_mutex_lock(&mu);
			continue;
		}
		if (stopping)
			break;
		if (dirty) {
			struct timespec ts = {(time_t)(sync_due / 1000000000),
					      (long)(sync_due % 1000000000)};
			pthread_cond_timedwait(&cv, &mu, &ts);
		} else {
			pthread_cond_wait(&cv, &mu);
		}
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

int commit_start(const struct serve_cfg *c, char *err, size_t errlen)
{
	cfg = c;
	int rc = cli_open(&db, c->dir, KYRO_RDWR);
	if (!rc && c->retain_set)
		rc = kyro_set_retain(db, c->retain_bytes, c->retain_seconds);
	if (!rc)
		rc = kyro_set_sync(db, c->sync == KYRO_SYNC_ALWAYS ? KYRO_SYNC_BATCH : KYRO_SYNC_NONE);
	if (rc) {
		snprintf(err, errlen, "%s", db ? kyro_errmsg(db) : kyro_strerror(rc));
		kyro_close(db);
		db = NULL;
		return rc;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cv, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&thread, NULL, run, NULL);
	if (rc) {
		snprintf(err, errlen, "cannot start the committer: %s", strerror(rc));
		kyro_close(db);
		db = NULL;
		return rc;
	}
	started = 1;
	return 0;
}

int commit_submit(struct wreq *w)
{
	w->next = NULL;
	pthread_mutex_lock(&mu);
	if (failure[0] || stopping || !started) {
		snprintf(w->err, sizeof w->err, "%s",
			 failure[0] ? failure : "the server is not accepting writes");
		pthread_mutex_unlock(&mu);
		return 503;
	}
	*tail = w;
	tail = &w->next;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	return 0;
}

const char *commit_failure(void)
{
	pthread_mutex_lock(&mu);
	const char *f = failure[0] ? failure : NULL;
	pthread_mutex_unlock(&mu);
	return f;
}

int commit_stop(void)
{
	int rc = 0;
	if (!started)
		return 0;
	pthread_mutex_lock(&mu);
	stopping = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	pthread_join(thread, NULL);
	started = 0;
	if (failure[0]) {
		rc = -1;
	} else if (kyro_sync(db)) {
		log_msg(LOG_ERROR, "fsync at exit failed: %s", kyro_errmsg(db));
		rc = -1;
	}
	kyro_close(db);
	db = NULL;
	return rc;
}

void commit_get_stats(struct commit_stats *s)
{
	memset(s, 0, sizeof *s);
	s->groups = __atomic_load_n(&st.groups, __ATOMIC_RELAXED);
	s->writes = __atomic_load_n(&st.writes, __ATOMIC_RELAXED);
	s->timer_syncs = __atomic_load_n(&st.timer_syncs, __ATOMIC_RELAXED);
	for (int i = 0; i < 14; i++)
		s->group_hist[i] = __atomic_load_n(&st.hist[i], __ATOMIC_RELAXED);
	s->failed = commit_failure() != NULL;
	if (db)
		kyro_stats(db, &s->db);
}
