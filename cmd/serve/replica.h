/*
 * replica.h - read replicas: kyro-serve --replica-of URL.
 *
 * On the primary, GET /v1/image streams an image of the current snapshot
 * (kyro_export_*).  On a replica, one thread bootstraps the data directory
 * from that route when it holds no store, then follows the primary's
 * /v1/subscribe from the store's own last sequence number + 1, applying
 * each event's batch with kyro_batch_begin_at(); when the primary answers
 * 410 it bootstraps again into a sibling directory and swaps it in.  Every
 * write route is refused, naming the primary.  replica.c has the details.
 */
#ifndef KYRO_SERVE_REPLICA_H
#define KYRO_SERVE_REPLICA_H

#include "http.h"

/* Whether this server is a replica (cfg->replica_of set). */
int replica_enabled(void);
/* Answer a write on a replica: 421, naming the primary. */
void replica_refuse(struct req *r);

/* Load the token for the primary (FILE wins over ENV_TOKEN; both may be
 * NULL: no token), clean up after an interrupted bootstrap, and start the
 * thread.  Returns 0, or -1 with ERR set. */
int replica_start(const struct serve_cfg *cfg, const char *token_file,
		  const char *env_token, char *err, size_t errlen);
/* Stop following (within about a second) and close the handle. */
void replica_stop(void);

/* GET /health on a replica: 200 while following, 503 before the first
 * bootstrap and when replication stopped on an error. */
void replica_health(struct req *r);
/* The replica's figures for /metrics (nothing on a primary). */
void replica_metrics(struct sbuf *b);

#endif
