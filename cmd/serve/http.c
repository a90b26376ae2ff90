/*
 * http.c - the daemon, the request life cycle, and the checks every
 * request passes before its handler: readiness, framing, route, rate
 * limit, token, query, body size.
 *
 * libmicrohttpd 0.9.75 frames a request by its first Content-Length or
 * Transfer-Encoding header, so a second, different length or a length
 * beside a transfer coding would be read one way here and another way by
 * a proxy in front; and it hands the path and query over as C strings, so
 * a NUL byte would cut a key short.  framing() and decoded() refuse such
 * requests before any handler runs.  It also takes a header block as
 * large as its 32 KiB connection buffer, where the API promises 16 KiB.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "acceptor.h"
#include "auth.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "routes.h"

enum { RQ_NEW, RQ_BODY, RQ_SUSPENDED, RQ_DONE };

/* Past the limit, a body is still read (and dropped) up to this much more,
 * so that the client, still sending, reads the 413 instead of a reset. */
#define DISCARD_MAX ((uint64_t)64 << 20)

/* The request line and the header fields, CR LFs included, as docs/API.md
 * states; past it 431 (414 when the request target alone is over). */
#define HEADER_MAX 16384

/* One daemon of one thread per worker; acceptor.c gives them their
 * connections. */
static struct MHD_Daemon *workers[ACCEPTOR_MAX_WORKERS];
static unsigned nworkers;
static const struct serve_cfg *cfg;
static int ready, inflight, suspended;
static size_t body_bytes; /* bytes of request bodies held, all requests */

static int load(const int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void add(int *p, int n) { __atomic_add_fetch(p, n, __ATOMIC_RELAXED); }

const char *http_arg(struct req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_header_value(struct req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

static int queue(struct req *r, unsigned status, struct MHD_Response *resp,
		 const char *ctype, size_t len)
{
	if (!resp)
		return MHD_NO;
	if (ctype)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	r->status = status;
	r->sent_bytes = len;
	enum MHD_Result ok = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	return ok;
}

int http_reply_response(struct req *r, unsigned status, const char *ctype,
			struct MHD_Response *resp)
{
	return queue(r, status, resp, ctype, 0);
}

int http_reply(struct req *r, unsigned status, const char *ctype, const void *data, size_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		len, (void *)(len ? data : ""), MHD_RESPMEM_MUST_COPY);
	return queue(r, status, resp, ctype, len);
}

int http_reply_hdr(struct req *r, unsigned status, const char *ctype, struct sbuf *b,
		   const char *name, const char *value)
{
	if (b->oom) {
		sb_free(b);
		b->oom = 0;
		return http_error(r, 500, "out of memory");
	}
	size_t len = b->len;
	struct MHD_Response *resp = len
		? MHD_create_response_from_buffer(len, b->p, MHD_RESPMEM_MUST_FREE)
		: MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (resp && len)
		b->p = NULL; /* MHD frees it now */
	sb_free(b);
	if (resp && name)
		MHD_add_response_header(resp, name, value);
	return queue(r, status, resp, ctype, len);
}

int http_reply_sb(struct req *r, unsigned status, const char *ctype, struct sbuf *b)
{
	return http_reply_hdr(r, status, ctype, b, NULL, NULL);
}

int http_error(struct req *r, unsigned status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	struct sbuf b = {0};
	sb_json_error(&b, msg);
	sb_puts(&b, "\n");
	return http_reply_sb(r, status, "application/json", &b);
}

void http_suspend(struct req *r, void (*on_resume)(struct req *r))
{
	r->on_resume = on_resume;
	r->phase = RQ_SUSPENDED;
	add(&suspended, 1);
	MHD_suspend_connection(r->conn);
}

void http_resume(struct req *r)
{
	struct MHD_Connection *c = r->conn;
	add(&suspended, -1);
	MHD_resume_connection(c);
}

unsigned http_suspended(void) { return (unsigned)load(&suspended); }
unsigned http_inflight(void) { return (unsigned)load(&inflight); }

unsigned http_connections(void)
{
	unsigned n = 0;
	for (unsigned w = 0; w < nworkers; w++) {
		const union MHD_DaemonInfo *i = MHD_get_daemon_info(
			workers[w], MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
		n += i ? i->num_connections : 0;
	}
	return n;
}

/* Decide an answer before the body is read; the body is then dropped. */
static void early(struct req *r, unsigned status, const char *msg)
{
	r->early_status = status;
	snprintf(r->early_msg, sizeof r->early_msg, "%s", msg);
	r->discard = 1;
}

/* A framing problem: answer at once and close, as the body's end (and so
 * where the next request starts) is in doubt. */
static void refuse(struct req *r, unsigned status, const char *msg)
{
	early(r, status, msg);
	r->close_now = 1;
}

struct framing_headers {
	unsigned cl, te;
	const char *cl1;
	int cl_differ, te_other;
};

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *name,
				     const char *value)
{
	(void)kind;
	struct framing_headers *f = cls;
	if (!strcasecmp(name, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
		if (!f->cl++)
			f->cl1 = value;
		else if (strcmp(f->cl1, value ? value : ""))
			f->cl_differ = 1;
	} else if (!strcasecmp(name, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
		f->te++;
		f->te_other |= !value || strcasecmp(value, "chunked");
	}
	return MHD_YES;
}

/* Checks of the request line and headers that decide how the rest of the
 * connection is read; returns -1 when the request is refused. */
static int framing(struct req *r)
{
	const union MHD_ConnectionInfo *hs =
		MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	if (r->uri_len > HEADER_MAX) {
		refuse(r, 414, "the request target is over 16384 bytes");
		return -1;
	}
	if (hs && hs->header_size > HEADER_MAX) {
		refuse(r, 431, "the request line and headers are over 16384 bytes");
		return -1;
	}
	/* A raw NUL byte ends the target libmicrohttpd hands over, and the
	 * API has no length to tell.  But 0.9.75 parses the request line in
	 * place: the target's string is ended by the NUL it writes over the
	 * space before the version, so the version starts one byte after it,
	 * unless a NUL came sooner.  The bats test of a raw NUL fails if a
	 * later libmicrohttpd lays the line out otherwise. */
	if (r->uri_end && r->version != r->uri_end + 1) {
		refuse(r, 400, "a NUL byte in the request line");
		return -1;
	}
	struct framing_headers f = {0};
	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_framing, &f);
	if (f.cl_differ) {
		refuse(r, 400, "conflicting Content-Length headers");
		return -1;
	}
	if (f.cl && f.te) {
		refuse(r, 400, "both Content-Length and Transfer-Encoding");
		return -1;
	}
	if (f.te > 1 || f.te_other) {
		refuse(r, 501, "the only transfer coding taken is one Transfer-Encoding: chunked");
		return -1;
	}
	return 0;
}

/* The API takes at most three query parameters; a few more are tolerated
 * (and ignored) so that a cache-busting parameter still works. */
#define QUERY_MAX 16

struct query_check {
	const char *name[QUERY_MAX];
	size_t len[QUERY_MAX];
	unsigned n;
	char msg[96];
};

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *name,
				 size_t name_size, const char *value, size_t value_size)
{
	(void)kind;
	struct query_check *q = cls;
	const int shown = (int)strnlen(name, 40);
	if (q->n == QUERY_MAX) {
		snprintf(q->msg, sizeof q->msg, "more than %d query parameters", QUERY_MAX);
		return MHD_NO;
	}
	/* Strings reach the handlers as C strings: a NUL would cut them. */
	if (strlen(name) != name_size || (value && strlen(value) != value_size)) {
		snprintf(q->msg, sizeof q->msg, "?%.*s= holds a NUL byte", shown, name);
		return MHD_NO;
	}
	/* Every parameter is single-valued, and MHD_lookup_connection_value
	 * would quietly take the first of two. */
	for (unsigned i = 0; i < q->n; i++)
		if (q->len[i] == name_size && !memcmp(q->name[i], name, name_size)) {
			snprintf(q->msg, sizeof q->msg, "?%.*s= is given more than once", shown, name);
			return MHD_NO;
		}
	q->name[q->n] = name;
	q->len[q->n++] = name_size;
	return MHD_YES;
}

/* The path and query as decoded; returns -1 when the request is refused. */
static int decoded(struct req *r)
{
	if (r->nul_in_path) {
		early(r, 400, "a NUL byte in the path");
		return -1;
	}
	struct query_check q = {.n = 0};
	MHD_get_connection_values_n(r->conn, MHD_GET_ARGUMENT_KIND, check_arg, &q);
	if (q.msg[0]) {
		early(r, 400, q.msg);
		return -1;
	}
	return 0;
}

static void precheck(struct req *r)
{
	struct route_match m;
	if (framing(r))
		return;
	if (!load(&ready)) {
		early(r, 503, "starting: the store is not open yet");
		return;
	}
	int rc = routes_match(r->method, r->path, &m);
	r->route = m.route;
	r->body_limit = m.body_limit;
	if (!m.public) {
		unsigned retry = 1;
		const union MHD_ConnectionInfo *ci = rl_enabled()
			? MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS) : NULL;
		if (ci && !rl_take(ci->client_addr, &retry)) {
			early(r, 429, "too many requests");
			snprintf(r->early_val, sizeof r->early_val, "%u", retry);
			r->early_hdr[0] = MHD_HTTP_HEADER_RETRY_AFTER;
			r->early_hdr[1] = r->early_val;
			return;
		}
		if (!auth_check(http_header_value(r, MHD_HTTP_HEADER_AUTHORIZATION))) {
			early(r, 401, "a valid bearer token is needed");
			r->early_hdr[0] = MHD_HTTP_HEADER_WWW_AUTHENTICATE;
			r->early_hdr[1] = "Bearer realm=\"kyrodb\"";
			return;
		}
	}
	if (rc == 404) {
		early(r, 404, "no such route");
		return;
	}
	if (rc == 405) {
		early(r, 405, "method not allowed");
		snprintf(r->early_val, sizeof r->early_val, "%s", m.allow);
		r->early_hdr[0] = MHD_HTTP_HEADER_ALLOW;
		r->early_hdr[1] = r->early_val;
		return;
	}
	if (decoded(r))
		return;
	r->fn = m.fn;
	r->rest = m.rest;
	const char *cl = http_header_value(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(cl, &end, 10);
		if (!errno && *end == 0 && n > r->body_limit) {
			const char *ex = http_header_value(r, MHD_HTTP_HEADER_EXPECT);
			early(r, 413, "the body is larger than the limit");
			r->close_now = (ex && !strcasecmp(ex, "100-continue")) ||
				       n > r->body_limit + DISCARD_MAX;
		}
	}
}

/* Charge N more body bytes to the global budget. */
static int charge(struct req *r, size_t n)
{
	size_t now = __atomic_add_fetch(&body_bytes, n, __ATOMIC_RELAXED);
	r->charged += n;
	return now <= cfg->max_inflight;
}

static int take_body(struct req *r, const char *data, size_t n)
{
	r->seen += n;
	if (r->seen > r->body_limit) {
		if (r->early_status != 413)
			early(r, 413, "the body is larger than the limit");
		return r->seen > r->body_limit + DISCARD_MAX ? -1 : 0;
	}
	if (r->discard)
		return 0;
	if (r->body_len + n + 1 > r->body_cap) {
		const char *cl = http_header_value(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
		size_t want = r->body_cap ? r->body_cap * 2 : 4096;
		unsigned long long hint = cl ? strtoull(cl, NULL, 10) : 0;
		if (!r->body_cap && hint && hint <= r->body_limit)
			want = (size_t)hint + 1;
		while (want < r->body_len + n + 1)
			want *= 2;
		if (want > r->body_limit + 1)
			want = r->body_limit + 1;
		if (!charge(r, want - r->body_cap)) {
			early(r, 503, "too many request bodies in memory; retry later");
			return 0;
		}
		char *p = realloc(r->body, want);
		if (!p) {
			early(r, 503, "out of memory");
			return 0;
		}
		r->body = p;
		r->body_cap = want;
	}
	memcpy(r->body + r->body_len, data, n);
	r->body_len += n;
	r->body[r->body_len] = 0;
	return 0;
}

/* CLOSE: the rest of the body is not read, so the connection must end. */
static int answer_early(struct req *r, int close)
{
	struct sbuf b = {0};
	if (close) {
		r->early_hdr[0] = MHD_HTTP_HEADER_CONNECTION;
		r->early_hdr[1] = "close";
	}
	sb_json_error(&b, r->early_msg);
	sb_puts(&b, "\n");
	return http_reply_hdr(r, r->early_status, "application/json", &b,
			      r->early_hdr[0], r->early_hdr[1]);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload, size_t *upload_size, void **con_cls)
{
	(void)cls;
	struct req *r = *con_cls;
	if (!r) {
		/* The URI-log callback could not allocate. */
		return MHD_NO;
	}
	if (r->phase == RQ_NEW) {
		r->phase = RQ_BODY;
		r->conn = conn;
		r->method = method;
		r->path = url;
		r->version = version;
		r->counted = 1;
		add(&inflight, 1);
		precheck(r);
		/* A body announced too big is refused at once when the client
		 * waits for "100 Continue" or would send far too much; else
		 * it is read, dropped, and refused at its end.  A request
		 * whose framing is in doubt is refused at once too. */
		if (r->early_status && r->close_now)
			return answer_early(r, 1);
		return MHD_YES;
	}
	if (*upload_size) {
		int rc = take_body(r, upload, *upload_size);
		*upload_size = 0;
		if (rc)
			return answer_early(r, 1);
		return MHD_YES;
	}
	if (r->phase == RQ_SUSPENDED) {
		r->phase = RQ_DONE;
		r->on_resume(r);
		return MHD_YES;
	}
	if (r->phase != RQ_BODY)
		return MHD_YES;
	r->phase = RQ_DONE;
	if (r->early_status)
		return answer_early(r, 0);
	r->fn(r);
	return MHD_YES;
}

static void *uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
	(void)cls;
	(void)conn;
	struct req *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->t0 = serve_now_ns();
	r->route = R_OTHER;
	snprintf(r->uri, sizeof r->uri, "%s", uri ? uri : "");
	if (uri) {
		r->uri_len = strlen(uri);
		r->uri_end = uri + r->uri_len;
		/* libmicrohttpd decodes %00 in the path into a NUL, which ends
		 * the string the handlers see: "77%0099" would read as "77". */
		const char *q = strchr(uri, '?');
		const char *nul = strstr(uri, "%00");
		r->nul_in_path = nul && (!q || nul < q);
	}
	return r;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)toe;
	struct req *r = *con_cls;
	if (!r)
		return;
	*con_cls = NULL;
	uint64_t ns = serve_now_ns() - r->t0;
	if (r->status)
		metrics_request(r->route, r->status, ns);
	if (cfg->http_log) {
		char ip[INET6_ADDRSTRLEN] = "-";
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		const struct sockaddr *sa = ci ? ci->client_addr : NULL;
		if (sa && sa->sa_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
		else if (sa && sa->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
		log_access(ip, r->method, r->uri, r->status, r->sent_bytes, ns / 1000);
	}
	if (r->charged)
		__atomic_sub_fetch(&body_bytes, r->charged, __ATOMIC_RELAXED);
	if (r->counted)
		add(&inflight, -1);
	free(r->body);
	free(r);
}

/* libmicrohttpd's own messages; its format strings are its own. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	if (!log_enabled(LOG_DEBUG))
		return;
	char msg[512];
	vsnprintf(msg, sizeof msg, fmt, ap);
	size_t n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = 0;
	log_msg(LOG_DEBUG, "libmicrohttpd: %s", msg);
}
#pragma GCC diagnostic pop

static struct MHD_Daemon *start_worker(const struct serve_cfg *c, unsigned i)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			 MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
			 MHD_USE_NO_LISTEN_SOCKET;
	if (c->addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* The acceptor keeps the total within --max-connections. */
	return MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, NULL,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_conns,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->timeout_s,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
		MHD_OPTION_URI_LOG_CALLBACK, uri_log, NULL,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
		MHD_OPTION_NOTIFY_CONNECTION, acceptor_notify,
		acceptor_worker_cls(i),
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		MHD_OPTION_END);
}

int http_start(const struct serve_cfg *c, char *err, size_t errlen)
{
	cfg = c;
	if (acceptor_open(c, err, errlen))
		return -1;
	for (nworkers = 0; nworkers < c->threads; nworkers++) {
		errno = 0;
		workers[nworkers] = start_worker(c, nworkers);
		if (!workers[nworkers]) {
			snprintf(err, errlen, "cannot start worker %u: %s",
				 nworkers, errno ? strerror(errno)
						 : "libmicrohttpd refused to start");
			http_stop();
			return -1;
		}
	}
	if (acceptor_start(workers, nworkers, c->max_conns, err, errlen)) {
		http_stop();
		return -1;
	}
	return 0;
}

void http_set_ready(void) { __atomic_store_n(&ready, 1, __ATOMIC_RELEASE); }

static void wait_for(int *what, int floor_suspended, uint64_t end)
{
	while (load(what) > (floor_suspended ? load(&suspended) : 0) && serve_now_ns() < end) {
		struct timespec ts = {0, 5 * 1000000};
		nanosleep(&ts, NULL);
	}
}

void http_quiesce(unsigned ms)
{
	if (!nworkers)
		return;
	acceptor_quiesce();
	/* Suspended requests wait on a write or a job: they are drained
	 * separately, by http_drain_suspended(). */
	wait_for(&inflight, 1, serve_now_ns() + (uint64_t)ms * 1000000);
}

unsigned http_drain_suspended(unsigned ms)
{
	wait_for(&suspended, 0, serve_now_ns() + (uint64_t)ms * 1000000);
	return (unsigned)load(&suspended);
}

void http_stop(void)
{
	/* The workers first: their connections' close notices reach the
	 * acceptor's counts while it still stands. */
	acceptor_quiesce();
	while (nworkers)
		MHD_stop_daemon(workers[--nworkers]);
	acceptor_close();
}
