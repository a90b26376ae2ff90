/*
 * store.c - per-thread reader handles, and a registry of them for the
 * metrics and for closing at exit.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cli.h"
#include "store.h"

struct reader {
	kyro_db *db;
	unsigned epoch;
	struct reader *next;
};

static const char *store_dir;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct reader *readers;
static __thread struct reader *mine;
static unsigned epoch;            /* store_reopen_all() bumps it */

void store_init(const char *dir) { store_dir = dir; }

void store_reopen_all(void)
{
	__atomic_add_fetch(&epoch, 1, __ATOMIC_RELEASE);
}

/* The directory was replaced under this thread's handle: a new one. */
static kyro_db *reopen(int *rc, char *err, size_t errlen)
{
	kyro_db *db;
	unsigned e = __atomic_load_n(&epoch, __ATOMIC_ACQUIRE);
	*rc = cli_open(&db, store_dir, KYRO_RDONLY | KYRO_COUNT_WINDOWS);
	if (*rc) {
		snprintf(err, errlen, "%s", db ? kyro_errmsg(db) : kyro_strerror(*rc));
		kyro_close(db);
		return NULL;
	}
	pthread_mutex_lock(&lock);
	kyro_close(mine->db);
	mine->db = db;
	mine->epoch = e;
	pthread_mutex_unlock(&lock);
	return db;
}

kyro_db *store_reader(int *rc, char *err, size_t errlen)
{
	if (mine)
		return mine->epoch == __atomic_load_n(&epoch, __ATOMIC_ACQUIRE)
			       ? mine->db : reopen(rc, err, errlen);
	struct reader *r = calloc(1, sizeof *r);
	if (!r) {
		*rc = KYRO_EFAILED;
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->epoch = __atomic_load_n(&epoch, __ATOMIC_ACQUIRE);
	*rc = cli_open(&r->db, store_dir,
			KYRO_RDONLY | KYRO_COUNT_WINDOWS);
	if (*rc) {
		snprintf(err, errlen, "%s", r->db ? kyro_errmsg(r->db) : kyro_strerror(*rc));
		kyro_close(r->db);
		free(r);
		return NULL;
	}
	pthread_mutex_lock(&lock);
	r->next = readers;
	readers = r;
	pthread_mutex_unlock(&lock);
	mine = r;
	return r->db;
}

void store_stats(struct kyro_stats *st)
{
	memset(st, 0, sizeof *st);
	pthread_mutex_lock(&lock);
	for (struct reader *r = readers; r; r = r->next) {
		struct kyro_stats s;
		kyro_stats(r->db, &s);
		st->lookups_delta += s.lookups_delta;
		st->lookups_rmi += s.lookups_rmi;
		st->lookups_binary += s.lookups_binary;
		st->rmi_mispredicts += s.rmi_mispredicts;
		st->rmi_fallbacks += s.rmi_fallbacks;
		for (int i = 0; i < KYRO_WINDOW_BUCKETS; i++)
			st->window_hist[i] += s.window_hist[i];
#define MAX_OF(f) if (s.f > st->f) st->f = s.f
		MAX_OF(manifest_gen);
		MAX_OF(snapshot_gen);
		MAX_OF(rmi_gen);
		MAX_OF(last_seq);
#undef MAX_OF
	}
	pthread_mutex_unlock(&lock);
}

void store_close_all(void)
{
	pthread_mutex_lock(&lock);
	while (readers) {
		struct reader *r = readers;
		readers = r->next;
		kyro_close(r->db);
		free(r);
	}
	pthread_mutex_unlock(&lock);
}
