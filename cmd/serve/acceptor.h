/*
 * acceptor.h - the listening socket, and the thread that accepts on it
 * and hands each connection to the worker thread serving the fewest.
 *
 * Each worker is a libmicrohttpd daemon of one thread without a listening
 * socket of its own (http.c); a connection stays on the worker it was
 * given for its whole life.
 */
#ifndef KYRO_SERVE_ACCEPTOR_H
#define KYRO_SERVE_ACCEPTOR_H

#include <stddef.h>

#include <microhttpd.h>

#include "serve.h"

/* The most workers (--threads). */
#define ACCEPTOR_MAX_WORKERS 256

/* Bind and listen on C's address; 0, or -1 with ERR set. */
int acceptor_open(const struct serve_cfg *c, char *err, size_t errlen);

/* Start accepting for the N WORKERS, at most MAX_CONNS connections in all;
 * 0, or -1 with ERR set. */
int acceptor_start(struct MHD_Daemon *const *workers, unsigned n,
		   unsigned max_conns, char *err, size_t errlen);

/* MHD_OPTION_NOTIFY_CONNECTION of every worker, CLS from
 * acceptor_worker_cls(I). */
void acceptor_notify(void *cls, struct MHD_Connection *conn,
		     void **socket_context,
		     enum MHD_ConnectionNotificationCode code);
void *acceptor_worker_cls(unsigned i);

/* The workers, and the connections given to worker I not closed yet. */
unsigned acceptor_workers(void);
unsigned acceptor_connections(unsigned i);

/* Stop accepting; connections not yet accepted wait in the socket's
 * backlog until acceptor_close(). */
void acceptor_quiesce(void);
void acceptor_close(void);

#endif
