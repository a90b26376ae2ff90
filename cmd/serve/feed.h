/*
 * feed.h - the change feed over HTTP: GET /v1/replay (pages of history)
 * and GET /v1/subscribe (Server-Sent Events, one event per batch).
 *
 * A subscriber sends, from libmicrohttpd's content-reader callback and
 * only when its socket can take more, the newest events from a window
 * that the watcher thread encodes once for all (fanout.h), or, when it
 * is behind that window, what it reads from the WAL files through its
 * own kyro_feed: nothing is queued for it beyond one output buffer and
 * one shared event.  A subscriber with nothing to send suspends its
 * connection and parks; the watcher sleeps on the store's commit futex
 * and, when a batch commits (in rounds whose gap grows with the number
 * of parked subscribers, to a millisecond at most), writes the new
 * events to the parked sockets itself (push.h), resuming a connection
 * only when its socket is full, it is behind the window, or a heartbeat
 * is due (feed.c).
 */
#ifndef KYRO_SERVE_FEED_H
#define KYRO_SERVE_FEED_H

#include "http.h"

/* Start the watcher; returns 0, or -1 with ERR set. */
int feed_start(const struct serve_cfg *cfg, char *err, size_t errlen);
/* End every stream (each gets a last "shutdown" event) and stop the
 * watcher; no connection stays suspended afterwards. */
void feed_stop(void);
/* The store under the directory was replaced (a replica's bootstrap):
 * every stream ends with a last "reset" event, {"next":N}, and the
 * watcher starts over on the new store.  A client resumes with
 * Last-Event-ID, as after a shutdown. */
void feed_replaced(void);

void feed_replay(struct req *r);
void feed_subscribe(struct req *r);

/* Shared by feed.c and replay.c: the daemon's configuration; a change
 * as kyro-get --changes --format=json writes it; ?NAME= as a u64 into
 * *V (left alone when absent; answers 400 itself, returns -1); a feed
 * open that failed with RC answered (410 for expired history, else
 * 500), and F closed. */
const struct serve_cfg *feed_config(void);
void feed_put_change(struct sbuf *b, const struct kyro_change *c);
int feed_arg_u64(struct req *r, const char *name, uint64_t *v);
void feed_open_failed(struct req *r, kyro_feed *f, int rc);
/* Shared by replay.c and feed.c: C into B as part of its batch's SSE
 * event (IN_BATCH: the event is open); 1 when C ended the batch, and
 * with it the event.  The body of an "expired" event or 410 answer. */
int feed_event_change(struct sbuf *b, int *in_batch,
		      const struct kyro_change *c);
void feed_expired_json(struct sbuf *b, uint64_t oldest);

/* The feed's figures for /metrics. */
void feed_metrics(struct sbuf *b);

#endif
