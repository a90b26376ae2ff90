/*
 * http.h - the libmicrohttpd side: the daemon, one struct req per
 * request, and the helpers handlers answer with.
 *
 * A request's life: the URI-log callback allocates its struct req; the
 * first call of the access handler routes it and checks limits, auth and
 * the rate limit; upload calls collect the body; the final call (upload
 * size 0) runs the handler.  Answers are queued only then, once the whole
 * request is read, which keeps keep-alive working.  A handler that must
 * wait (a write for its group commit, a job with ?wait=1) suspends the
 * connection; whoever finishes the work stores the result and resumes
 * it, and the handler's ON_RESUME answers from the worker thread.
 */
#ifndef KYRO_SERVE_HTTP_H
#define KYRO_SERVE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "commit.h"
#include "jobs.h"
#include "json.h"
#include "serve.h"

struct req;
typedef void (*route_fn)(struct req *r);

struct req {
	struct MHD_Connection *conn;
	const char *method;
	const char *path;        /* decoded path, without the query */
	const char *rest;        /* the path after a route's prefix */
	char uri[256];           /* as requested (truncated), for the log */
	size_t uri_len;          /* the request target's length as received */
	const char *uri_end;     /* where libmicrohttpd's copy of it ends */
	const char *version;
	int nul_in_path;         /* the path holds a %00 */
	int route;               /* enum route_id */
	int phase;
	uint64_t t0;
	/* The body. */
	char *body;
	size_t body_len, body_cap, body_limit, charged;
	uint64_t seen;           /* body bytes received, kept or not */
	int discard;             /* an answer is decided: drop the body */
	int close_now;           /* answer before reading the body */
	/* An answer decided before the body was read. */
	unsigned early_status;
	char early_msg[160];
	const char *early_hdr[2]; /* an extra header: name, value */
	char early_val[64];
	route_fn fn;
	/* What was sent. */
	unsigned status;
	uint64_t sent_bytes;
	/* Waiting for another thread. */
	void (*on_resume)(struct req *r);
	struct wreq w;
	struct job_waiter jw;
	uint64_t job_id;
	int counted;             /* counted in the in-flight gauge */
};

/* Start listening; returns 0, or -1 with ERR set. */
int http_start(const struct serve_cfg *cfg, char *err, size_t errlen);
/* The store is open: answer requests (before this, 503). */
void http_set_ready(void);
/* Stop accepting, wait up to MS for requests in flight. */
void http_quiesce(unsigned ms);
/* Requests whose connections are suspended (waiting on a write or job). */
unsigned http_suspended(void);
/* Wait up to MS for every suspended request to be resumed; returns how
 * many are still suspended (the daemon must not be stopped then). */
unsigned http_drain_suspended(unsigned ms);
void http_stop(void);

const char *http_arg(struct req *r, const char *name);
const char *http_header_value(struct req *r, const char *name);

/* Answer (copies DATA). */
int http_reply(struct req *r, unsigned status, const char *ctype,
	       const void *data, size_t len);
/* Answer with B's bytes, taking them (B is left empty). */
int http_reply_sb(struct req *r, unsigned status, const char *ctype,
		  struct sbuf *b);
/* Answer with RESP (a stream), taking it. */
int http_reply_response(struct req *r, unsigned status, const char *ctype,
			struct MHD_Response *resp);
/* Answer {"error":"..."}. */
int http_error(struct req *r, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Like http_reply_sb, with one extra header. */
int http_reply_hdr(struct req *r, unsigned status, const char *ctype,
		   struct sbuf *b, const char *name, const char *value);

/* Park the connection; ON_RESUME answers once http_resume() is called
 * (from any thread; at most once per suspend). */
void http_suspend(struct req *r, void (*on_resume)(struct req *r));
void http_resume(struct req *r);

unsigned http_connections(void);
unsigned http_inflight(void);

#endif
