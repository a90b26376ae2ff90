/*
 * serve.h - the configuration every module of kyro-serve reads.
 *
 * kyro-serve.c fills one struct serve_cfg from the options and the
 * environment before any thread starts; afterwards it is read-only, so
 * modules may keep a pointer to it without locking.
 */
#ifndef KYRO_SERVE_H
#define KYRO_SERVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SERVE_PROG "kyro-serve"

struct serve_cfg {
	const char *dir;               /* the data directory */
	struct sockaddr_storage addr;  /* where to listen */
	char listen[80];               /* ADDR:PORT as given, for messages */
	unsigned threads;              /* MHD worker threads */
	unsigned max_conns;            /* concurrent connections */
	unsigned timeout_s;            /* idle connection timeout */
	unsigned shutdown_ms;          /* grace for requests in flight */
	int sync;                      /* KYRO_SYNC_* */
	unsigned sync_interval_ms;     /* --sync=batch: fsync at least this often */
	size_t max_value;              /* largest value, and body, in bytes */
	size_t max_inflight;           /* request bodies held at once, bytes */
	unsigned max_batch_keys;       /* keys in one /v1/lookup_batch */
	unsigned max_range;            /* records in one /v1/range answer */
	uint64_t auto_snapshot;        /* writes between automatic snapshots; 0 off */
	int warm_on_start;
	int http_log;                  /* one access line per request */
	double rl_rps;                 /* rate limit per IP; 0 off */
	unsigned rl_burst;
	unsigned heartbeat_s;          /* SSE comment after this long idle */
	unsigned max_subscribers;      /* concurrent /v1/subscribe streams */
	int retain_set;                /* --retain given: */
	uint64_t retain_bytes;         /* kyro_set_retain() on every */
	uint64_t retain_seconds;       /* handle that collects garbage */
	size_t max_vec_batch;          /* /v1/vector/insert_batch body, bytes */
	unsigned recall_every;         /* recall spot-check of every Nth graph
					* search; 0 off */
	const char *replica_of;        /* the primary's URL; NULL: a primary */
};

/* Monotonic time in nanoseconds. */
uint64_t serve_now_ns(void);
/* fsync directory DIR, so that a rename in it survives a crash: 0 or an
 * errno (history.c). */
int serve_sync_dir(const char *dir);

#endif
