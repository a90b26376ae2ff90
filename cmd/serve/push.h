/*
 * push.h - SSE events written straight to a parked subscriber's socket
 * by the feed watcher, while libmicrohttpd holds the connection
 * suspended.
 *
 * A subscriber that has caught up parks: its content reader suspends
 * the connection at a chunk boundary of the chunked body (libmicrohttpd
 * asks the reader for more only once all it wrote is sent).  Rather than
 * resume every parked connection once per commit round (an eventfd write,
 * a worker wake-up, a content-reader call, a send and a suspend, per
 * subscriber and round), the watcher frames the round's new events from
 * the shared window as one HTTP chunk and writes it to each parked socket
 * itself, a send a subscriber.  The connection stays suspended, so
 * libmicrohttpd touches neither the socket nor the stream meanwhile.
 *
 * A socket that takes nothing is handed back: the connection is resumed
 * and libmicrohttpd sends when the client reads again, as before.  A
 * socket that takes part of a chunk leaves the stream inside it, where
 * libmicrohttpd must not write: the rest is kept (one round's events, at
 * most PUSH_MAX plus the framing) and the watcher writes it as the socket
 * drains; only then is the subscriber a chunk boundary again.
 */
#ifndef KYRO_SERVE_PUSH_H
#define KYRO_SERVE_PUSH_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"

#define PUSH_MAX 65536 /* event bytes framed for one round, at most */

/* One parked subscriber's socket and what a short write left of a
 * chunk. */
struct push {
	int fd;
	struct sbuf owe;      /* the rest of a chunk, from OWE_OFF */
	size_t owe_off;
	uint64_t owe_since;   /* the last progress while owing, ns */
};

/* The events of one round from one sequence number, framed once and
 * written to every subscriber that is there. */
struct push_round {
	struct sbuf b;        /* the chunk, "SIZE\r\n" EVENTS "\r\n", at HEAD */
	size_t head;
	uint64_t from, next;  /* the events cover [FROM, NEXT) */
	uint64_t events, changes;
	size_t data;          /* bytes of events */
	int built;
	int more;             /* PUSH_MAX stopped it before the window's end */
};

enum push_result {
	PUSH_SENT,   /* all of it: the stream is at a chunk boundary */
	PUSH_OWING,  /* part: the rest is in OWE */
	PUSH_AGAIN,  /* nothing: the socket is full, the stream unchanged */
	PUSH_DEAD    /* the socket failed: the stream cannot go on */
};

/* Frame the window's events from POS into R (kept when R already holds
 * them): 1 with events, 0 when POS is where the live window ends (none
 * newer), -1 when the window does not hold POS. */
int push_frame(struct push_round *r, uint64_t pos);
/* Forget R's events (a new round); its buffer is kept. */
void push_round_reset(struct push_round *r);
void push_round_free(struct push_round *r);

/* Write R's chunk to P, which must owe nothing. */
enum push_result push_send(struct push *p, const struct push_round *r,
			   uint64_t now);
/* Write what P owes; PUSH_SENT once it owes nothing. */
enum push_result push_flush(struct push *p, uint64_t now);

#endif
