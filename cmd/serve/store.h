/*
 * store.h - one read-only kyro_db handle per worker thread.
 *
 * A kyro_db is used by one thread at a time, and the values it returns
 * stay valid only until the next call on it; so each MHD worker opens its
 * own handle on first use and copies what it answers before the next
 * lookup.  Commits by the group committer or by other processes are seen
 * at the next lookup (the library checks one shared atomic per call).
 */
#ifndef KYRO_SERVE_STORE_H
#define KYRO_SERVE_STORE_H

#include "kyro.h"

void store_init(const char *dir);

/* This thread's handle, opened on first use; NULL with *RC set (and the
 * message in ERR) when it cannot be opened. */
kyro_db *store_reader(int *rc, char *err, size_t errlen);

/* The directory was replaced (a replica's bootstrap): every thread
 * opens its handle again at its next store_reader(). */
void store_reopen_all(void);

/* Sum the counters of every reader handle into ST (gauges: the largest). */
void store_stats(struct kyro_stats *st);

/* Close every reader; only once no worker thread runs. */
void store_close_all(void);

#endif
