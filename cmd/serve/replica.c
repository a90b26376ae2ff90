/*
 * replica.c - GET /v1/image, and the replica's follower thread.
 *
 * The follower.  One thread owns the replica's read-write handle.  Its
 * position is the store's own last sequence number (kyro_last_seq()):
 * nothing else is kept, so after a SIGKILL, a restart or a reconnect it
 * asks the primary's /v1/subscribe for exactly what comes next, and
 * kyro_batch_begin_at() refuses anything that would make a gap or a
 * duplicate.  The stream is read with libcurl; each SSE event is one of
 * the primary's batches, applied whole: the events that arrive in one
 * read of the socket go into one local batch (one commit, one fsync under
 * --sync=always), with the primary's sequence numbers, so a replica's
 * batch may be the union of several of the primary's, never a part of
 * one.  A change whose op this build does not know stops replication,
 * with the reason in /health: never skipped.
 *
 * Bootstrap.  When the directory holds no store, or the primary answers
 * 410 (it no longer retains what comes next), the image from GET
 * /v1/image is imported into the sibling directory DIR.bootstrap, which
 * is then exchanged with DIR in one renameat2(RENAME_EXCHANGE) and the
 * parent fsynced; the old store, now DIR.bootstrap, is removed.  DIR is a
 * whole store at every instant; a DIR.bootstrap found at start is what a
 * crash left, and is removed.  Reader handles are reopened at their next
 * request (store_reopen_all()); a request running across the swap
 * finishes on the old files, which stay readable while they are open.
 *
 * Lag.  A second, light thread asks the primary's /v1/offset every
 * LAG_POLL_MS.  Lag in sequence numbers is its last answer minus the last
 * applied; lag in seconds is the age of the oldest answer the replica has
 * not yet applied up to (so within LAG_POLL_MS of the truth).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "../cli.h"
#include "log.h"
#include "replica.h"
#include "store.h"

#define CT_JSON "application/json"
#define IMAGE_CHUNK 65536
#define LAG_POLL_MS 200
#define LAG_RING 64
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define MAX_TOKEN 4096
#define ERRBODY_MAX 512

/* ---- GET /v1/image (any server) ---- */

static ssize_t image_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	kyro_export *e = cls;
	size_t got;
	(void)pos;
	if (kyro_export_read(e, buf, max, &got)) {
		log_msg(LOG_ERROR, "GET /v1/image: %s", kyro_export_errmsg(e));
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	return got ? (ssize_t)got : MHD_CONTENT_READER_END_OF_STREAM;
}

static void image_free(void *cls) { kyro_export_close(cls); }

void replica_image(struct req *r)
{
	char err[256], seq[24];
	int rc;
	kyro_export *e;
	kyro_db *db = store_reader(&rc, err, sizeof err);
	if (!db) {
		http_error(r, 500, "cannot open the store: %s", err);
		return;
	}
	if ((rc = kyro_export_open(&e, db)) != 0) {
		http_error(r, 500, "cannot export the snapshot: %s",
			   kyro_export_errmsg(e));
		kyro_export_close(e);
		return;
	}
	struct MHD_Response *resp = MHD_create_response_from_callback(
		MHD_SIZE_UNKNOWN, IMAGE_CHUNK, image_read, e, image_free);
	if (!resp) {
		kyro_export_close(e);
		http_error(r, 500, "out of memory");
		return;
	}
	snprintf(seq, sizeof seq, "%llu",
		 (unsigned long long)kyro_export_seq(e));
	MHD_add_response_header(resp, "X-Kyro-Seq", seq);
	http_reply_response(r, 200, "application/octet-stream", resp);
}

/* ---- the replica's state ---- */

enum { S_BOOTSTRAP, S_CONNECTING, S_FOLLOWING, S_STOPPED };
static const char *const state_names[] = {"bootstrapping", "connecting",
					  "following", "stopped"};

static const struct serve_cfg *cfg;
static char token_hdr[MAX_TOKEN + 32];
static char boot_dir[PATH_MAX];

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread, poller;
	int started, stopping;
	int state, have_store;
	char error[512];
	uint64_t applied, primary;   /* sequence numbers */
	struct { uint64_t seq, ns; } ring[LAG_RING];
	unsigned ring_n;             /* polls not yet applied, oldest first */
	uint64_t bootstraps, reconnects, batches, changes, commits;
	uint64_t image_bytes;
} rs = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

int replica_enabled(void) { return cfg && cfg->replica_of; }

void replica_refuse(struct req *r)
{
	http_error(r, 421, "read replica of %s: write to the primary",
		   cfg->replica_of);
}

static int stopping(void)
{
	return __atomic_load_n(&rs.stopping, __ATOMIC_ACQUIRE);
}

static void set_state(int state, const char *error)
{
	pthread_mutex_lock(&rs.mu);
	rs.state = state;
	if (error)
		snprintf(rs.error, sizeof rs.error, "%.500s", error);
	else if (state == S_FOLLOWING)
		rs.error[0] = 0;
	pthread_mutex_unlock(&rs.mu);
}

/* Drop the polls the replica has applied up to. */
static void lag_trim(void)
{
	unsigned k = 0;
	while (k < rs.ring_n && rs.ring[k].seq <= rs.applied)
		k++;
	memmove(rs.ring, rs.ring + k, (rs.ring_n - k) * sizeof rs.ring[0]);
	rs.ring_n -= k;
}

static void set_applied(uint64_t seq)
{
	pthread_mutex_lock(&rs.mu);
	rs.applied = seq;
	if (seq > rs.primary)
		rs.primary = seq;
	lag_trim();
	pthread_mutex_unlock(&rs.mu);
}

/* Sleep MS, or less when stopping. */
static void pause_ms(unsigned ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&rs.mu);
	if (!rs.stopping)
		pthread_cond_timedwait(&rs.cv, &rs.mu, &ts);
	pthread_mutex_unlock(&rs.mu);
}

/* ---- HTTP with libcurl ---- */

struct xfer {
	CURL *c;
	struct curl_slist *hdrs;
	long status;
	char body[ERRBODY_MAX];      /* a refusal's body, for messages */
	size_t body_len;
	char curl_err[CURL_ERROR_SIZE];
};

static int progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c,
		    curl_off_t d)
{
	(void)arg, (void)a, (void)b, (void)c, (void)d;
	return stopping();
}

static int xfer_init(struct xfer *x, const char *path, const char *query,
		     curl_write_callback fn, void *arg)
{
	char url[2048];
	memset(x, 0, sizeof *x);
	snprintf(url, sizeof url, "%s%s%s", cfg->replica_of, path,
		 query ? query : "");
	if (!(x->c = curl_easy_init()))
		return -1;
	if (token_hdr[0])
		x->hdrs = curl_slist_append(NULL, token_hdr);
	curl_easy_setopt(x->c, CURLOPT_URL, url);
	curl_easy_setopt(x->c, CURLOPT_HTTPHEADER, x->hdrs);
	curl_easy_setopt(x->c, CURLOPT_WRITEFUNCTION, fn);
	curl_easy_setopt(x->c, CURLOPT_WRITEDATA, arg);
	curl_easy_setopt(x->c, CURLOPT_ERRORBUFFER, x->curl_err);
	curl_easy_setopt(x->c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(x->c, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(x->c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(x->c, CURLOPT_XFERINFOFUNCTION, progress);
	curl_easy_setopt(x->c, CURLOPT_USERAGENT, SERVE_PROG "-replica");
	return 0;
}

static void xfer_free(struct xfer *x)
{
	curl_slist_free_all(x->hdrs);
	curl_easy_cleanup(x->c);
}

/* The status, once: a write callback's first call. */
static long xfer_status(struct xfer *x)
{
	if (!x->status)
		curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &x->status);
	return x->status;
}

/* Keep the start of an error answer for the message. */
static void xfer_keep(struct xfer *x, const char *p, size_t n)
{
	size_t room = sizeof x->body - 1 - x->body_len;
	n = n < room ? n : room;
	memcpy(x->body + x->body_len, p, n);
	x->body_len += n;
	x->body[x->body_len] = 0;
}

/* ---- removing a directory tree ---- */

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb, (void)ftw;
	if ((flag == FTW_DP ? rmdir(path) : unlink(path)) && errno != ENOENT)
		log_msg(LOG_WARN, "cannot remove '%s': %s", path,
			strerror(errno));
	return 0;
}

static void rm_tree(const char *dir)
{
	if (access(dir, F_OK) == 0)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* fsync DIR's parent, so that a rename of DIR survives a crash. */
static int sync_parent(const char *dir)
{
	char parent[PATH_MAX];
	snprintf(parent, sizeof parent, "%s", dir);
	char *slash = strrchr(parent, '/');
	if (!slash)
		snprintf(parent, sizeof parent, ".");
	else if (slash == parent)
		parent[1] = 0;
	else
		*slash = 0;
	int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int rc = fsync(fd) ? errno : 0;
	close(fd);
	return rc;
}

/* ---- bootstrap ---- */

struct boot {
	struct xfer x;
	kyro_import *im;
	int failed;
	uint64_t bytes;
};

static size_t boot_write(char *p, size_t size, size_t n, void *arg)
{
	struct boot *b = arg;
	size_t len = size * n;
	if (xfer_status(&b->x) != 200) {
		xfer_keep(&b->x, p, len);
		return len;
	}
	if (kyro_import_write(b->im, p, len)) {
		b->failed = 1;
		return 0;
	}
	b->bytes += len;
	return len;
}

/* Import the primary's image into BOOT_DIR; 0, or -1 with ERR set. */
static int fetch_image(uint64_t *seq, char *err, size_t errlen)
{
	struct boot b = {0};
	rm_tree(boot_dir);
	if (kyro_import_open(&b.im, boot_dir)) {
		snprintf(err, errlen, "%s", kyro_import_errmsg(b.im));
		kyro_import_close(b.im);
		return -1;
	}
	int rc = -1;
	if (xfer_init(&b.x, "/v1/image", NULL, boot_write, &b)) {
		snprintf(err, errlen, "cannot start libcurl");
		goto out;
	}
	CURLcode cc = curl_easy_perform(b.x.c);
	if (b.failed)
		snprintf(err, errlen, "%s", kyro_import_errmsg(b.im));
	else if (cc != CURLE_OK)
		snprintf(err, errlen, "GET %s/v1/image: %s", cfg->replica_of,
			 b.x.curl_err[0] ? b.x.curl_err
					 : curl_easy_strerror(cc));
	else if (xfer_status(&b.x) != 200)
		snprintf(err, errlen, "GET %s/v1/image: HTTP %ld: %s",
			 cfg->replica_of, b.x.status, b.x.body);
	else if (kyro_import_finish(b.im, seq))
		snprintf(err, errlen, "%s", kyro_import_errmsg(b.im));
	else
		rc = 0;
	xfer_free(&b.x);
out:
	kyro_import_close(b.im);
	if (rc)
		rm_tree(boot_dir);
	pthread_mutex_lock(&rs.mu);
	rs.image_bytes += b.bytes;
	pthread_mutex_unlock(&rs.mu);
	return rc;
}

/* Bootstrap: the image into BOOT_DIR, exchanged with DIR. */
static int bootstrap(char *err, size_t errlen)
{
	uint64_t seq;
	set_state(S_BOOTSTRAP, NULL);
	if (fetch_image(&seq, err, errlen))
		return -1;
	int rc = renameat2(AT_FDCWD, boot_dir, AT_FDCWD, cfg->dir,
			   RENAME_EXCHANGE) ? errno : 0;
	if (rc == ENOENT)
		rc = rename(boot_dir, cfg->dir) ? errno : 0;
	if (!rc)
		rc = sync_parent(cfg->dir);
	if (rc) {
		snprintf(err, errlen, "cannot move '%.200s' to '%.200s': %s",
			 boot_dir, cfg->dir, strerror(rc));
		return -1;
	}
	store_reopen_all();
	rm_tree(boot_dir);
	pthread_mutex_lock(&rs.mu);
	rs.bootstraps++;
	rs.have_store = 1;
	rs.applied = seq;
	lag_trim();
	pthread_mutex_unlock(&rs.mu);
	log_msg(LOG_INFO, "bootstrapped '%s' from %s at sequence number %llu",
		cfg->dir, cfg->replica_of, (unsigned long long)seq);
	return 0;
}

/* ---- following ---- */

enum { F_RECONNECT = 1, F_GONE, F_STOP };

struct follow {
	struct xfer x;
	kyro_db *db;
	uint64_t next;        /* the sequence number the next change has */
	int open;             /* a local batch is open */
	int result;           /* F_*, once the stream must end */
	uint64_t since_snap;  /* changes applied since the last snapshot */
	struct sbuf line;     /* the line being received */
	struct sbuf data;     /* the event's data */
	char event[32];
	char err[512];
	uint64_t batches, changes;
};

static void follow_fail(struct follow *f, int result, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void follow_fail(struct follow *f, int result, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->err, sizeof f->err, fmt, ap);
	va_end(ap);
	f->result = result;
}

static int b64val(int ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

/* Decode base64 S in place; *LEN gets the bytes, -1 when invalid. */
static int b64_decode(char *s, size_t n, size_t *len)
{
	size_t o = 0;
	unsigned acc = 0;
	int bits = 0;
	while (n && s[n - 1] == '=')
		n--;
	for (size_t i = 0; i < n; i++) {
		int v = b64val((unsigned char)s[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (unsigned)v;
		if ((bits += 6) >= 8) {
			bits -= 8;
			s[o++] = (char)(acc >> bits);
		}
	}
	*len = o;
	return 0;
}

/* One change of the event being applied; 0, or F_STOP with F->err. */
static int apply_change(struct follow *f, json_t *c)
{
	uint64_t seq, key, got;
	const char *op = json_string_value(json_object_get(c, "op"));
	if (json_get_key(json_object_get(c, "seq"), &seq) ||
	    json_get_key(json_object_get(c, "key"), &key) || !op) {
		follow_fail(f, F_STOP, "a change at sequence number %llu has "
			    "no seq, key or op", (unsigned long long)f->next);
		return F_STOP;
	}
	if (seq != f->next) {
		follow_fail(f, F_STOP, "change %llu arrived where %llu was "
			    "due", (unsigned long long)seq,
			    (unsigned long long)f->next);
		return F_STOP;
	}
	int rc;
	if (!strcmp(op, "put")) {
		json_t *v = json_object_get(c, "value");
		json_t *b = json_object_get(c, "value_base64");
		size_t len;
		if (json_is_string(v)) {
			rc = kyro_put(f->db, key, json_string_value(v),
				      json_string_length(v), &got);
		} else if (json_is_string(b) &&
			   !b64_decode((char *)json_string_value(b),
				       json_string_length(b), &len)) {
			rc = kyro_put(f->db, key, json_string_value(b), len,
				      &got);
		} else {
			follow_fail(f, F_STOP, "change %llu: a put without a "
				    "valid value", (unsigned long long)seq);
			return F_STOP;
		}
	} else if (!strcmp(op, "delete")) {
		rc = kyro_delete(f->db, key, &got);
	} else {
		/* A vector change will be one more branch here, applied with
		 * its own call; until then an op this build does not know
		 * stops replication rather than be skipped. */
		follow_fail(f, F_STOP, "change %llu has op '%.32s', which this "
			    "build cannot apply; replication stopped",
			    (unsigned long long)seq, op);
		return F_STOP;
	}
	if (!rc && got != seq)
		rc = KYRO_EBATCH;
	if (rc) {
		follow_fail(f, F_STOP, "cannot apply change %llu: %s",
			    (unsigned long long)seq, kyro_errmsg(f->db));
		return F_STOP;
	}
	f->next++;
	f->changes++;
	return 0;
}

/* One event's batch, into the open local batch (begun at its first
 * change when none is open). */
static void apply_event(struct follow *f)
{
	char why[200];
	uint64_t first, last;
	json_t *j = json_parse_body(f->data.p ? f->data.p : "", f->data.len,
				    why, sizeof why);
	json_t *cs = j ? json_object_get(j, "changes") : NULL;
	if (!j || json_get_key(json_object_get(j, "first"), &first) ||
	    json_get_key(json_object_get(j, "last"), &last) ||
	    !json_is_array(cs) || json_array_size(cs) != last - first + 1) {
		follow_fail(f, F_STOP, "an event of %s/v1/subscribe is not a "
			    "batch: %s", cfg->replica_of, j ? "bad shape" : why);
		goto out;
	}
	if (last < f->next) /* already applied: never twice */
		goto out;
	if (first != f->next) {
		follow_fail(f, F_STOP, "the primary sent batch %llu..%llu "
			    "where %llu was due", (unsigned long long)first,
			    (unsigned long long)last,
			    (unsigned long long)f->next);
		goto out;
	}
	if (!f->open) {
		if (kyro_batch_begin_at(f->db, first)) {
			follow_fail(f, F_STOP, "%s", kyro_errmsg(f->db));
			goto out;
		}
		f->open = 1;
	}
	for (size_t i = 0; i < json_array_size(cs); i++)
		if (apply_change(f, json_array_get(cs, i)))
			goto out;
	f->batches++;
out:
	json_decref(j);
}

static void dispatch(struct follow *f)
{
	if (!f->event[0] && f->data.len)
		apply_event(f);
	else if (!strcmp(f->event, "expired"))
		follow_fail(f, F_GONE, "%.*s", (int)f->data.len, f->data.p);
	else if (!strcmp(f->event, "shutdown"))
		follow_fail(f, F_RECONNECT, "the primary is stopping");
	else if (f->event[0])
		follow_fail(f, F_RECONNECT, "%s/v1/subscribe: event %s: %.*s",
			    cfg->replica_of, f->event, (int)f->data.len,
			    f->data.p);
	f->event[0] = 0;
	f->data.len = 0;
}

static void on_line(struct follow *f, const char *s, size_t n)
{
	if (!n)
		dispatch(f);
	else if (s[0] == ':')
		return;
	else if (n > 6 && !memcmp(s, "data: ", 6))
		sb_put(&f->data, s + 6, n - 6);
	else if (n > 7 && !memcmp(s, "event: ", 7))
		snprintf(f->event, sizeof f->event, "%.*s", (int)(n - 7),
			 s + 7);
}

/* Commit what this read brought, as one local batch. */
static void commit_open(struct follow *f)
{
	uint64_t last;
	if (!f->open)
		return;
	f->open = 0;
	if (f->result == F_STOP) {
		kyro_batch_abort(f->db);
		return;
	}
	if (kyro_batch_commit(f->db, &last)) {
		follow_fail(f, F_STOP, "cannot commit: %s", kyro_errmsg(f->db));
		return;
	}
	set_applied(last);
	pthread_mutex_lock(&rs.mu);
	rs.batches += f->batches;
	rs.changes += f->changes;
	rs.commits++;
	pthread_mutex_unlock(&rs.mu);
	f->since_snap += f->changes;
	f->batches = f->changes = 0;
}

static size_t follow_write(char *p, size_t size, size_t n, void *arg)
{
	struct follow *f = arg;
	size_t len = size * n;
	if (xfer_status(&f->x) != 200) {
		xfer_keep(&f->x, p, len);
		return len;
	}
	set_state(S_FOLLOWING, NULL);
	for (size_t i = 0; i < len && !f->result; i++) {
		if (p[i] != '\n') {
			/* Most of a line is copied at once. */
			const char *nl = memchr(p + i, '\n', len - i);
			size_t k = nl ? (size_t)(nl - (p + i)) : len - i;
			sb_put(&f->line, p + i, k);
			i += k - 1;
			continue;
		}
		size_t l = f->line.len;
		if (l && f->line.p[l - 1] == '\r')
			l--;
		on_line(f, f->line.p, l);
		f->line.len = 0;
	}
	if (f->line.oom || f->data.oom)
		follow_fail(f, F_STOP, "out of memory");
	commit_open(f);
	return f->result ? 0 : len;
}

/* Snapshot the replica's store every --auto-snapshot changes, from this
 * thread: it alone writes the store, so no snapshot can run across a
 * bootstrap's swap. */
static void maybe_snapshot(struct follow *f)
{
	if (!cfg->auto_snapshot || f->since_snap < cfg->auto_snapshot)
		return;
	f->since_snap = 0;
	if (kyro_snapshot(f->db, KYRO_SNAPSHOT_INDEX, NULL, NULL, NULL, NULL))
		log_msg(LOG_WARN, "replica snapshot failed: %s",
			kyro_errmsg(f->db));
}

static size_t follow_write_snap(char *p, size_t size, size_t n, void *arg)
{
	size_t r = follow_write(p, size, n, arg);
	if (r)
		maybe_snapshot(arg);
	return r;
}

/* Follow the primary from the store's last sequence number + 1 until the
 * stream ends; returns F_*. */
static int follow(kyro_db *db, char *err, size_t errlen)
{
	struct follow f = {.db = db};
	char q[48];
	uint64_t last;
	if (kyro_last_seq(db, &last)) {
		snprintf(err, errlen, "%s", kyro_errmsg(db));
		return F_STOP;
	}
	set_applied(last);
	f.next = last + 1;
	snprintf(q, sizeof q, "?from=%llu", (unsigned long long)f.next);
	if (xfer_init(&f.x, "/v1/subscribe", q, follow_write_snap, &f)) {
		snprintf(err, errlen, "cannot start libcurl");
		return F_RECONNECT;
	}
	CURLcode cc = curl_easy_perform(f.x.c);
	commit_open(&f);
	long status = xfer_status(&f.x);
	if (f.result)
		snprintf(err, errlen, "%s", f.err);
	else if (cc != CURLE_OK)
		snprintf(err, errlen, "GET %s/v1/subscribe: %s",
			 cfg->replica_of, f.x.curl_err[0]
				 ? f.x.curl_err : curl_easy_strerror(cc));
	else if (status != 200)
		snprintf(err, errlen, "GET %s/v1/subscribe: HTTP %ld: %s",
			 cfg->replica_of, status, f.x.body);
	else
		snprintf(err, errlen, "%s/v1/subscribe: the stream ended",
			 cfg->replica_of);
	int result = f.result ? f.result : status == 410 ? F_GONE
							 : F_RECONNECT;
	xfer_free(&f.x);
	sb_free(&f.line);
	sb_free(&f.data);
	return result;
}

static int open_store(kyro_db **db, char *err, size_t errlen)
{
	int rc = cli_open(db, cfg->dir, KYRO_RDWR | KYRO_EXISTING);
	if (!rc && cfg->retain_set)
		rc = kyro_set_retain(*db, cfg->retain_bytes,
				     cfg->retain_seconds);
	if (!rc)
		rc = kyro_set_sync(*db, cfg->sync == KYRO_SYNC_ALWAYS
						? KYRO_SYNC_BATCH
						: KYRO_SYNC_NONE);
	if (rc) {
		snprintf(err, errlen, "%s",
			 *db ? kyro_errmsg(*db) : kyro_strerror(rc));
		kyro_close(*db);
		*db = NULL;
	}
	return rc;
}

static void *run(void *arg)
{
	char err[600];
	kyro_db *db = NULL;
	unsigned backoff = BACKOFF_MIN_MS;
	int need_boot = !rs.have_store;
	(void)arg;
	while (!stopping()) {
		int r = F_RECONNECT;
		if (need_boot) {
			kyro_close(db);
			db = NULL;
			if (bootstrap(err, sizeof err) == 0) {
				need_boot = 0;
				continue;
			}
		} else if (db || open_store(&db, err, sizeof err) == 0) {
			set_state(S_CONNECTING, NULL);
			r = follow(db, err, sizeof err);
			if (r == F_GONE)
				need_boot = 1;
			if (rs.state == S_FOLLOWING)
				backoff = BACKOFF_MIN_MS;
		}
		if (stopping())
			break;
		if (r == F_STOP) {
			/* Nothing this thread can do about it: the reason
			 * stays in /health until an operator restarts. */
			log_msg(LOG_ERROR, "replication stopped: %s", err);
			set_state(S_STOPPED, err);
			break;
		}
		if (r == F_GONE) {
			log_msg(LOG_WARN, "%s; bootstrapping again", err);
			continue;
		}
		log_msg(LOG_WARN, "replica: %s; again in %u ms", err, backoff);
		set_state(need_boot ? S_BOOTSTRAP : S_CONNECTING, err);
		pthread_mutex_lock(&rs.mu);
		rs.reconnects++;
		pthread_mutex_unlock(&rs.mu);
		pause_ms(backoff);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
						       : backoff * 2;
	}
	kyro_close(db);
	return NULL;
}

/* ---- the primary's position, for the lag ---- */

struct poll {
	struct xfer x;
	char buf[128];
	size_t len;
};

static size_t poll_write(char *p, size_t size, size_t n, void *arg)
{
	struct poll *q = arg;
	size_t len = size * n, room = sizeof q->buf - 1 - q->len;
	memcpy(q->buf + q->len, p, len < room ? len : room);
	q->len += len < room ? len : room;
	q->buf[q->len] = 0;
	return len;
}

static void *poll_run(void *arg)
{
	(void)arg;
	while (!stopping()) {
		struct poll q = {0};
		unsigned long long seq;
		if (!xfer_init(&q.x, "/v1/offset", NULL, poll_write, &q)) {
			curl_easy_setopt(q.x.c, CURLOPT_TIMEOUT_MS, 2000L);
			if (curl_easy_perform(q.x.c) == CURLE_OK &&
			    xfer_status(&q.x) == 200 &&
			    sscanf(q.buf, "{\"offset\":%llu", &seq) == 1) {
				pthread_mutex_lock(&rs.mu);
				rs.primary = seq > rs.applied ? seq : rs.applied;
				if (seq > rs.applied && rs.ring_n < LAG_RING &&
				    (!rs.ring_n ||
				     rs.ring[rs.ring_n - 1].seq < seq)) {
					rs.ring[rs.ring_n].seq = seq;
					rs.ring[rs.ring_n++].ns = serve_now_ns();
				}
				pthread_mutex_unlock(&rs.mu);
			}
			xfer_free(&q.x);
		}
		pause_ms(LAG_POLL_MS);
	}
	return NULL;
}

/* ---- start, stop, report ---- */

static int load_token(const char *file, const char *env, char *err,
		      size_t errlen)
{
	char buf[MAX_TOKEN + 2];
	size_t n = 0;
	if (file) {
		FILE *fp = fopen(file, "r");
		if (!fp) {
			snprintf(err, errlen, "cannot open '%s': %s", file,
				 strerror(errno));
			return -1;
		}
		n = fread(buf, 1, sizeof buf - 1, fp);
		fclose(fp);
	} else if (env && *env) {
		n = strlen(env) < sizeof buf - 1 ? strlen(env) : sizeof buf - 1;
		memcpy(buf, env, n);
	} else {
		return 0;
	}
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
		     buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		n--;
	buf[n] = 0;
	if (!n || n > MAX_TOKEN || strpbrk(buf, " \t\r\n")) {
		snprintf(err, errlen, "%s: not a token (empty, too long, or "
			 "holding a space)", file ? file : "KYRODB_REPLICA_TOKEN");
		return -1;
	}
	snprintf(token_hdr, sizeof token_hdr, "Authorization: Bearer %s", buf);
	return 0;
}

int replica_start(const struct serve_cfg *c, const char *token_file,
		  const char *env_token, char *err, size_t errlen)
{
	kyro_db *db;
	cfg = c;
	if (load_token(token_file, env_token, err, errlen))
		return -1;
	if (snprintf(boot_dir, sizeof boot_dir, "%s.bootstrap", c->dir) >=
	    (int)sizeof boot_dir) {
		snprintf(err, errlen, "'%s': the path is too long", c->dir);
		return -1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		snprintf(err, errlen, "cannot initialise libcurl");
		return -1;
	}
	/* A crash during a bootstrap left this; DIR is whole either way. */
	rm_tree(boot_dir);
	int rc = kyro_open(&db, c->dir, KYRO_RDONLY);
	rs.have_store = rc == 0 && !kyro_last_seq(db, &rs.applied) &&
			access(c->dir, F_OK) == 0;
	if (rs.have_store) {
		char m[PATH_MAX + 16];
		snprintf(m, sizeof m, "%s/MANIFEST", c->dir);
		rs.have_store = access(m, F_OK) == 0;
	}
	kyro_close(db);
	rs.state = rs.have_store ? S_CONNECTING : S_BOOTSTRAP;
	if ((rc = pthread_create(&rs.thread, NULL, run, NULL)) != 0 ||
	    (rc = pthread_create(&rs.poller, NULL, poll_run, NULL)) != 0) {
		snprintf(err, errlen, "cannot start the replica: %s",
			 strerror(rc));
		return -1;
	}
	rs.started = 1;
	return 0;
}

void replica_stop(void)
{
	if (!rs.started)
		return;
	pthread_mutex_lock(&rs.mu);
	__atomic_store_n(&rs.stopping, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&rs.cv);
	pthread_mutex_unlock(&rs.mu);
	pthread_join(rs.thread, NULL);
	pthread_join(rs.poller, NULL);
	rs.started = 0;
	curl_global_cleanup();
}

struct lag {
	int state;
	uint64_t applied, primary, lag_seq;
	double lag_s;
};

static void lag_now(struct lag *l)
{
	pthread_mutex_lock(&rs.mu);
	l->state = rs.state;
	l->applied = rs.applied;
	l->primary = rs.primary > rs.applied ? rs.primary : rs.applied;
	l->lag_seq = l->primary - l->applied;
	l->lag_s = rs.ring_n ? (double)(serve_now_ns() - rs.ring[0].ns) / 1e9
			     : 0;
	pthread_mutex_unlock(&rs.mu);
}

void replica_health(struct req *r)
{
	struct lag l;
	struct sbuf b = {0};
	char error[512];
	lag_now(&l);
	pthread_mutex_lock(&rs.mu);
	snprintf(error, sizeof error, "%s", rs.error);
	int have = rs.have_store;
	pthread_mutex_unlock(&rs.mu);
	int ok = have && l.state != S_STOPPED;
	sb_printf(&b, "{\"status\":\"%s\",\"role\":\"replica\",\"primary\":",
		  ok ? "ok" : "unavailable");
	sb_json_str(&b, cfg->replica_of, strlen(cfg->replica_of));
	sb_printf(&b, ",\"state\":\"%s\",\"applied_seq\":%llu,"
		  "\"primary_seq\":%llu,\"lag_seq\":%llu,"
		  "\"lag_seconds\":%.3f", state_names[l.state],
		  (unsigned long long)l.applied,
		  (unsigned long long)l.primary,
		  (unsigned long long)l.lag_seq, l.lag_s);
	if (error[0]) {
		sb_puts(&b, ",\"error\":");
		sb_json_str(&b, error, strlen(error));
	}
	sb_puts(&b, "}\n");
	http_reply_sb(r, ok ? 200 : 503, CT_JSON, &b);
}

static void metric(struct sbuf *b, const char *name, const char *type,
		   const char *help, uint64_t v)
{
	sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help,
		  name, type, name, (unsigned long long)v);
}

void replica_metrics(struct sbuf *b)
{
	struct lag l;
	if (!replica_enabled())
		return;
	lag_now(&l);
	pthread_mutex_lock(&rs.mu);
	uint64_t boots = rs.bootstraps, recon = rs.reconnects;
	uint64_t batches = rs.batches, changes = rs.changes;
	uint64_t commits = rs.commits, img = rs.image_bytes;
	pthread_mutex_unlock(&rs.mu);
	metric(b, "kyro_replica_lag_seq", "gauge", "Changes the primary "
	       "has committed that the replica has not applied.", l.lag_seq);
	sb_printf(b, "# HELP kyro_replica_lag_seconds Age of the oldest primary "
		  "position the replica has not applied.\n# TYPE "
		  "kyro_replica_lag_seconds gauge\nkyro_replica_lag_seconds "
		  "%.3f\n", l.lag_s);
	metric(b, "kyro_replica_applied_seq", "gauge", "The replica's last "
	       "sequence number.", l.applied);
	metric(b, "kyro_replica_primary_seq", "gauge", "The primary's last "
	       "sequence number, as last seen.", l.primary);
	metric(b, "kyro_replica_following", "gauge", "1 while the replica "
	       "follows the primary's feed.", l.state == S_FOLLOWING);
	metric(b, "kyro_replica_stopped", "gauge", "1 when replication "
	       "stopped on an error (see /health).", l.state == S_STOPPED);
	metric(b, "kyro_replica_bootstraps_total", "counter", "Images "
	       "imported from the primary.", boots);
	metric(b, "kyro_replica_image_bytes_total", "counter", "Image bytes "
	       "received.", img);
	metric(b, "kyro_replica_reconnects_total", "counter", "Times the "
	       "replica connected to the primary again.", recon);
	metric(b, "kyro_replica_batches_total", "counter", "Primary batches "
	       "applied.", batches);
	metric(b, "kyro_replica_changes_total", "counter", "Changes applied.",
	       changes);
	metric(b, "kyro_replica_commits_total", "counter", "Local commits "
	       "(each one or more primary batches).", commits);
}
