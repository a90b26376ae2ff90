/*
 * replica.c - the replica's follower thread (see replica.h).
 *
 * Position.  One thread owns the replica's read-write handle.  Its
 * position is the store's own last sequence number, as the writer finds
 * it under the lock (an empty batch): nothing else is kept that could
 * disagree, so after a SIGKILL, a restart or a reconnect it asks the
 * primary for exactly what comes next, and kyro_batch_begin_at() refuses
 * anything that would make a gap or a duplicate.
 *
 * Catching up, then following.  From its position the follower reads
 * GET /v1/replicate pages (binary, about 32 MiB of whole batches each,
 * every op as the feed reads it, applied as one local batch: one commit,
 * one fsync under --sync=always) until a page ends at the primary's last
 * commit.  A page's changes go into the local batch as its bytes arrive,
 * while the primary reads the rest; the batch commits only once the
 * page's end record is in, and a page cut short is aborted whole.  Then
 * it holds GET /v1/subscribe open: an event whose batch is the one due,
 * and whose JSON holds it exactly (puts of UTF-8 values and deletes, at
 * most EVENT_MAX changes: apply.c), is applied from the event, checked
 * as a page's changes are, and whenever the socket is drained what the
 * events brought is committed, one commit for all of them; any other
 * event is a doorbell, and pages are read again from where the replica
 * stands, no event taken until they are.  A stream that pages have left
 * far behind is opened again where the replica stands.  So a replica's
 * batch is the union of whole batches of the primary, with the primary's
 * numbers, never a part of one.  A change whose op this build does not
 * know stops replication (apply.c), the reason in /health.
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
 * Subscribers of the replica's own /v1/subscribe get a last "reset"
 * event and reconnect (feed_replaced()); the feeds kept for replicas of
 * this replica are dropped.
 *
 * History.  The image's X-Kyro-History is written as FOLLOWS into
 * DIR.bootstrap before the swap (history.h), and every page is asked for
 * with ?history=ID: a primary with another history (another store, or a
 * promoted replica that has taken writes since) answers 410, and the
 * replica bootstraps.  A store without FOLLOWS (written by an older
 * kyro-serve, or a former primary) is bootstrapped too: nothing tells
 * whose changes it holds.
 *
 * Lag.  A second, light thread asks the primary's /v1/offset every
 * LAG_POLL_MS (pages tell it too).  Lag in sequence numbers is the
 * primary's last known commit minus the last applied; lag in seconds is
 * the age of the oldest such answer the replica has not yet applied up to
 * (so within LAG_POLL_MS of the truth).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../cli.h"
#include "apply.h"
#include "boot.h"
#include "feed.h"
#include "fetch.h"
#include "history.h"
#include "log.h"
#include "primary.h"
#include "replica.h"
#include "store.h"

#define CT_JSON "application/json"
#define LAG_POLL_MS 200
#define LAG_RING 64
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000

enum { S_BOOTSTRAP, S_CONNECTING, S_FOLLOWING, S_STOPPED };
static const char *const state_names[] = {"bootstrapping", "connecting",
					  "following", "stopped"};

/* How a stream ended. */
enum { F_RECONNECT = 1, F_GONE, F_STOP, F_RESUBSCRIBE };

/* A doorbell this many changes behind the replica is opened again where
 * the replica stands (see stream_drained()). */
#define RESUBSCRIBE_GAP 65536
#define LINE_KEEP ((size_t)1 << 20) /* an SSE line kept whole up to this */

static const struct serve_cfg *cfg;
static char boot_dir[PATH_MAX];
static char follows[HISTORY_ID_LEN + 1]; /* the history DIR copies */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread, poller;
	int started, stopping;
	int state, have_store, need_boot;
	char error[512];
	uint64_t applied, primary;   /* sequence numbers */
	struct { uint64_t seq, ns; } ring[LAG_RING];
	unsigned ring_n;             /* primary positions not yet applied */
	uint64_t bootstraps, reconnects, batches, changes, commits, pages;
	uint64_t taken;              /* changes applied from events */
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

/* Under RS.mu: drop the positions the replica has applied up to. */
static void lag_trim(void)
{
	unsigned k = 0;
	while (k < rs.ring_n && rs.ring[k].seq <= rs.applied)
		k++;
	memmove(rs.ring, rs.ring + k, (rs.ring_n - k) * sizeof rs.ring[0]);
	rs.ring_n -= k;
}

/* The primary had committed up to SEQ (now, or a moment ago). */
static void saw_primary(uint64_t seq)
{
	pthread_mutex_lock(&rs.mu);
	if (seq > rs.primary)
		rs.primary = seq;
	if (seq > rs.applied && rs.ring_n < LAG_RING &&
	    (!rs.ring_n || rs.ring[rs.ring_n - 1].seq < seq)) {
		rs.ring[rs.ring_n].seq = seq;
		rs.ring[rs.ring_n++].ns = serve_now_ns();
	}
	pthread_mutex_unlock(&rs.mu);
}

static int open_store(kyro_db **db, char *err, size_t errlen);

/* The replica's automatic snapshot runs on a handle and a thread of its
 * own, beside the follower: run in the follower, it stopped replication
 * while it ran (a catch-up of 3M changes took twice as long with one
 * every 1M).  The follower starts it, one at a time, and joins it before
 * a bootstrap swaps the directory and before it stops, so nothing writes
 * the store across a swap. */
static struct {
	pthread_t thread;
	int running;          /* a thread to join */
	int done;             /* it has finished (atomic) */
} snap;

static void *snap_run(void *arg)
{
	char err[700];
	kyro_db *db = NULL;
	(void)arg;
	if (open_store(&db, err, sizeof err))
		log_msg(LOG_WARN, "replica snapshot: %s", err);
	else if (kyro_snapshot(db, KYRO_SNAPSHOT_INDEX, NULL, NULL, NULL, NULL))
		log_msg(LOG_WARN, "replica snapshot failed: %s",
			kyro_errmsg(db));
	kyro_close(db);
	__atomic_store_n(&snap.done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void snap_join(void)
{
	if (!snap.running)
		return;
	pthread_join(snap.thread, NULL);
	snap.running = 0;
}

/* Start a snapshot every KYRODB_AUTO_SNAPSHOT_RECORDS changes; while one
 * runs, the count goes on and the next starts after it. */
static void maybe_snapshot(uint64_t changes)
{
	static uint64_t since;
	since += changes;
	if (!cfg->auto_snapshot || since < cfg->auto_snapshot)
		return;
	if (snap.running) {
		if (!__atomic_load_n(&snap.done, __ATOMIC_ACQUIRE))
			return;
		snap_join();
	}
	since = 0;
	snap.done = 0;
	int rc = pthread_create(&snap.thread, NULL, snap_run, NULL);
	if (rc)
		log_msg(LOG_WARN, "replica snapshot: cannot start a thread: %s",
			strerror(rc));
	else
		snap.running = 1;
}

/* The store now ends at SEQ; A's counts go to the totals (and towards
 * the next snapshot). */
static void applied(struct applier *a, uint64_t seq, int page)
{
	uint64_t n = a->changes;
	pthread_mutex_lock(&rs.mu);
	rs.applied = seq;
	if (seq > rs.primary)
		rs.primary = seq;
	lag_trim();
	rs.batches += a->batches;
	rs.changes += a->changes;
	rs.commits += a->changes != 0;
	rs.pages += page;
	pthread_mutex_unlock(&rs.mu);
	a->batches = a->changes = 0;
	maybe_snapshot(n);
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

/* ---- bootstrap ---- */

/* Bootstrap: the image into BOOT_DIR, exchanged with DIR. */
static int bootstrap(char *err, size_t errlen)
{
	uint64_t seq;
	char id[HISTORY_ID_LEN + 1];
	set_state(S_BOOTSTRAP, NULL);
	snap_join();
	uint64_t bytes = 0;
	int fail = boot_fetch_image(boot_dir, cfg->replica_of, &seq, id,
				    &bytes, err, errlen);
	pthread_mutex_lock(&rs.mu);
	rs.image_bytes += bytes;
	pthread_mutex_unlock(&rs.mu);
	if (fail)
		return -1;
	int rc = renameat2(AT_FDCWD, boot_dir, AT_FDCWD, cfg->dir,
			   RENAME_EXCHANGE) ? errno : 0;
	if (rc == ENOENT)
		rc = rename(boot_dir, cfg->dir) ? errno : 0;
	if (!rc)
		rc = boot_sync_parent(cfg->dir);
	if (rc) {
		snprintf(err, errlen, "cannot move '%.200s' to '%.200s': %s",
			 boot_dir, cfg->dir, strerror(rc));
		return -1;
	}
	memcpy(follows, id, sizeof follows);
	history_set(follows);
	store_reopen_all();
	primary_replaced();
	feed_replaced();
	boot_rm_tree(boot_dir);
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

/* ---- catching up: /v1/replicate pages ---- */

struct page {
	struct fetch *x;
	struct applier *a;
	int begun, failed;
};

/* The follower's transfer for pages, kept between them: a page per
 * doorbell round was a TCP connection each, a thousand a second while
 * following 10,000 commits/s, each left in TIME_WAIT. */
static struct fetch page_x;

/* A page's bytes are applied as they arrive: the primary reads the rest
 * meanwhile, and no page is held whole. */
static size_t page_write(char *p, size_t size, size_t n, void *arg)
{
	struct page *g = arg;
	size_t len = size * n;
	if (fetch_status(g->x) != 200) {
		fetch_keep(g->x, p, len);
		return len;
	}
	if (!g->begun) {
		/* A primary older than format 2 ignores ?format=2. */
		apply_page_begin(g->a, strcmp(g->x->page_format, "2") ? 1 : 2);
		g->begun = 1;
		set_state(S_FOLLOWING, NULL);
	}
	if (apply_bytes(g->a, (const unsigned char *)p, len)) {
		g->failed = 1;
		return 0;
	}
	return len;
}

/* The first page after a (re)connection carries ?prev= (primary.c): the
 * sum of the store's last change, or "-"; "" once a page was applied. */
static char resume_prev[24];

/* Fetch and apply one page from A->next on: 0, or F_*.  *LAST gets the
 * primary's last commit as the page saw it. */
static int page(struct applier *a, uint64_t *last, char *err, size_t errlen)
{
	struct page g = {.a = a, .x = &page_x};
	char q[96 + HISTORY_ID_LEN];
	uint64_t seq;
	int r = 0;
	snprintf(q, sizeof q, "?from=%llu&history=%s&format=2%s%s",
		 (unsigned long long)a->next, follows,
		 resume_prev[0] ? "&prev=" : "", resume_prev);
	if (fetch_again(g.x, "/v1/replicate", q, page_write, &g)) {
		snprintf(err, errlen, "cannot start libcurl");
		return F_RECONNECT;
	}
	apply_page_begin(a, 0);
	int rc = fetch_run(g.x, err, errlen);
	long status = fetch_status(g.x);
	if (g.failed || (!rc && apply_page_end(a, last))) {
		snprintf(err, errlen, "%s", a->err);
		r = F_STOP;
	} else if (rc) {
		r = status == 410 ? F_GONE : F_RECONNECT;
		if (status == 404) {
			snprintf(err, errlen, "%s has no /v1/replicate: it is "
				 "older than this replica; upgrade it",
				 cfg->replica_of);
			r = F_STOP;
		}
	} else if (apply_commit(a, &seq)) {
		snprintf(err, errlen, "%s", a->err);
		r = F_STOP;
	}
	if (r) {
		/* The next try starts on a connection of its own. */
		fetch_free(g.x);
		apply_abort(a);
		return r;
	}
	saw_primary(*last);
	applied(a, seq, 1);
	resume_prev[0] = 0;
	return 0;
}

/* Read and apply pages until one ends at the primary's last commit.
 * Returns 0 (caught up: follow the stream), or F_*. */
static int catch_up(struct applier *a, char *err, size_t errlen)
{
	uint64_t last;
	int r = 0;
	while (!r && !stopping())
		if ((r = page(a, &last, err, errlen)) == 0 && a->next > last)
			break;
	return r;
}

/* ---- following: /v1/subscribe as a doorbell ---- */

struct stream {
	struct fetch x;
	struct applier *a;
	int result;           /* F_*, once the stream must end */
	int rang;             /* an event came that a page must bring */
	int took;             /* events were applied, not yet committed */
	int any_data;         /* the event being read has data */
	int cut;              /* its data line was longer than LINE_KEEP */
	struct sbuf data;     /* its data line, after "data: " */
	uint64_t id;          /* the last event's id (the stream's position) */
	struct sbuf line;     /* the line being received */
	char event[32];
	char err[600];
};

/* An event ends.  Its batch, when it is the one due and the JSON holds
 * it exactly, is applied from the event (apply_event()); anything else
 * rings for the next page, which carries every op exactly, and then no
 * event is taken until that page is in. */
static void dispatch(struct stream *s)
{
	int r = 1;
	if (!s->event[0] && s->any_data) {
		if (!s->rang && !s->cut && !s->data.oom)
			r = apply_event(s->a, s->data.p, s->data.len);
		s->rang |= r > 0;
		s->took |= r == 0;
		if (r < 0) {
			s->result = F_STOP;
			snprintf(s->err, sizeof s->err, "%s", s->a->err);
		}
	} else if (!strcmp(s->event, "expired"))
		s->result = F_GONE;
	else if (s->event[0])
		s->result = F_RECONNECT;
	if (s->result && r >= 0)
		snprintf(s->err, sizeof s->err, "%s/v1/subscribe: event %s",
			 cfg->replica_of, s->event);
	s->event[0] = 0;
	s->any_data = s->cut = 0;
	s->data.len = 0;
	s->data.oom = 0;
}

static void on_line(struct stream *s, const char *p, size_t n)
{
	if (!n)
		dispatch(s);
	else if (n > 6 && !memcmp(p, "data: ", 6)) {
		/* An event of the feed has one data line. */
		s->cut |= s->any_data || n >= LINE_KEEP - 1;
		s->any_data = 1;
		s->data.len = 0;
		sb_put(&s->data, p + 6, n - 6);
	}
	else if (n > 7 && !memcmp(p, "event: ", 7))
		snprintf(s->event, sizeof s->event, "%.*s", (int)(n - 7),
			 p + 7);
	else if (n > 4 && !memcmp(p, "id: ", 4))
		cli_parse_key(p + 4, n - 4, &s->id);
	/* Comments (": heartbeat") and id: lines need nothing. */
}

static size_t stream_write(char *p, size_t size, size_t n, void *arg)
{
	struct stream *s = arg;
	size_t len = size * n;
	if (fetch_status(&s->x) != 200) {
		fetch_keep(&s->x, p, len);
		return len;
	}
	set_state(S_FOLLOWING, NULL);
	for (size_t i = 0; i < len && !s->result;) {
		const char *nl = memchr(p + i, '\n', len - i);
		size_t k = nl ? (size_t)(nl - (p + i)) : len - i;
		/* A longer line is cut, and so not taken (on_line()). */
		if (s->line.len < LINE_KEEP)
			sb_put(&s->line, p + i,
			       k < LINE_KEEP - s->line.len ? k
							   : LINE_KEEP - s->line.len);
		i += k;
		if (!nl)
			break;
		i++;
		size_t l = s->line.len;
		if (l && s->line.p[l - 1] == '\r')
			l--;
		on_line(s, s->line.p, l);
		s->line.len = 0;
	}
	if (!s->result && s->line.oom) {
		snprintf(s->err, sizeof s->err, "out of memory");
		s->result = F_STOP;
	}
	return s->result ? 0 : len;
}

/* Everything received so far is read: what events brought is committed
 * (one commit, one fsync, for all of them), or, when an event rang,
 * pages catch up, the events' changes in the first page's commit.
 * Pages can take the replica far past the events received (after a
 * pause, all it missed): the events up to there would each carry their
 * batch as JSON for nothing, so the stream is opened again from where
 * the replica stands. */
static int stream_drained(void *arg)
{
	struct stream *s = arg;
	uint64_t seq;
	if (!s->result && s->rang) {
		s->rang = s->took = 0;
		s->result = catch_up(s->a, s->err, sizeof s->err);
		if (!s->result && s->a->next > s->id + RESUBSCRIBE_GAP)
			s->result = F_RESUBSCRIBE;
	} else if (!s->result && s->took) {
		s->took = 0;
		uint64_t n = s->a->changes;
		if (apply_commit(s->a, &seq)) {
			snprintf(s->err, sizeof s->err, "%s", s->a->err);
			s->result = F_STOP;
		} else {
			saw_primary(s->id);
			applied(s->a, seq, 0);
			pthread_mutex_lock(&rs.mu);
			rs.taken += n;
			pthread_mutex_unlock(&rs.mu);
		}
	}
	return s->result != 0;
}

/* Follow /v1/subscribe from A's position until the stream ends. */
static int stream_once(struct applier *a, char *err, size_t errlen)
{
	struct stream s = {.a = a, .id = a->next - 1};
	char q[48];
	snprintf(q, sizeof q, "?from=%llu", (unsigned long long)a->next);
	if (fetch_init(&s.x, "/v1/subscribe", q, stream_write, &s)) {
		snprintf(err, errlen, "cannot start libcurl");
		return F_RECONNECT;
	}
	int rc = fetch_run_drained(&s.x, stream_drained, &s, err, errlen);
	if (s.result)
		snprintf(err, errlen, "%s", s.err);
	else if (!rc)
		snprintf(err, errlen, "%s/v1/subscribe: the stream ended",
			 cfg->replica_of);
	int r = s.result ? s.result : fetch_status(&s.x) == 410 ? F_GONE
								: F_RECONNECT;
	fetch_free(&s.x);
	sb_free(&s.line);
	sb_free(&s.data);
	return r;
}

static int stream(struct applier *a, char *err, size_t errlen)
{
	int r;
	do
		r = stream_once(a, err, errlen);
	while (r == F_RESUBSCRIBE && !stopping());
	return r == F_RESUBSCRIBE ? F_RECONNECT : r;
}

/* Catch up, then follow, from the store's own position. */
static int follow(kyro_db *db, char *err, size_t errlen)
{
	struct applier a = {.db = db};
	uint64_t last;
	/* The position as the writer finds it under the lock, not as a
	 * reader's view: a follower killed between its fsync and its
	 * publish left a batch the shared page does not show yet, and an
	 * empty batch publishes it (and writes nothing). */
	if (kyro_batch_begin(db) || kyro_batch_commit(db, &last)) {
		snprintf(err, errlen, "%s", kyro_errmsg(db));
		return F_STOP;
	}
	a.next = last + 1;
	applied(&a, last, 0);
	/* Whether the primary's change LAST is still the one this store
	 * holds: the history ID cannot tell a restored or copied primary. */
	uint64_t sum;
	int rc = last ? history_change_sum(cfg->dir, last, &sum, err, errlen)
		      : HISTORY_GONE;
	if (rc < 0)
		return F_RECONNECT;
	if (rc == 0)
		snprintf(resume_prev, sizeof resume_prev, "%016llx",
			 (unsigned long long)sum);
	else
		snprintf(resume_prev, sizeof resume_prev, "-");
	int r = catch_up(&a, err, errlen);
	if (!r)
		r = stopping() ? F_RECONNECT : stream(&a, err, errlen);
	/* What events brought since the last commit is not the store's. */
	apply_abort(&a);
	apply_free(&a);
	if (page_x.c)
		fetch_free(&page_x);
	return r;
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
	char err[700];
	kyro_db *db = NULL;
	unsigned backoff = BACKOFF_MIN_MS;
	int need_boot = rs.need_boot;
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
			need_boot = r == F_GONE;
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
	snap_join();
	kyro_close(db);
	return NULL;
}

/* ---- the primary's position, for the lag ---- */

static void *poll_run(void *arg)
{
	/* One kept connection: a new one every 200 ms left each in
	 * TIME_WAIT on the primary. */
	struct fetch x = {0};
	struct sbuf b = {0};
	char err[256];
	long status;
	(void)arg;
	while (!stopping()) {
		unsigned long long seq;
		if (!fetch_all(&x, "/v1/offset", NULL, &b, 4096, &status,
			       err, sizeof err)) {
			sb_put(&b, "", 1);
			if (!b.oom &&
			    sscanf(b.p, "{\"offset\":%llu", &seq) == 1)
				saw_primary(seq);
		}
		pause_ms(LAG_POLL_MS);
	}
	if (x.c)
		fetch_free(&x);
	sb_free(&b);
	return NULL;
}

/* ---- start, stop, report ---- */

int replica_start(const struct serve_cfg *c, const char *token_file,
		  const char *env_token, char *err, size_t errlen)
{
	char m[PATH_MAX + 16];
	cfg = c;
	if (snprintf(boot_dir, sizeof boot_dir, "%s.bootstrap", c->dir) >=
	    (int)sizeof boot_dir) {
		snprintf(err, errlen, "'%s': the path is too long", c->dir);
		return -1;
	}
	if (fetch_global_init(c->replica_of, token_file, env_token,
			      &rs.stopping, err, errlen))
		return -1;
	/* A crash during a bootstrap left this; DIR is whole either way. */
	boot_rm_tree(boot_dir);
	snprintf(m, sizeof m, "%s/" "MANIFEST", c->dir);
	rs.have_store = access(m, F_OK) == 0;
	rs.need_boot = !rs.have_store;
	if (rs.have_store) {
		int rc = history_read_follows(c->dir, follows, err, errlen);
		if (rc < 0) {
			fetch_global_cleanup();
			return -1;
		}
		if (rc == 1) {
			log_msg(LOG_WARN, "'%s' has no record of the history "
				"it copies (FOLLOWS: a store from an older "
				"kyro-serve, or a former primary): "
				"bootstrapping from %s", c->dir,
				c->replica_of);
			rs.need_boot = 1;
		} else {
			history_set(follows);
		}
	}
	rs.state = rs.need_boot ? S_BOOTSTRAP : S_CONNECTING;
	int rc = pthread_create(&rs.thread, NULL, run, NULL);
	if (!rc) {
		rs.started = 1;
		if (!(rc = pthread_create(&rs.poller, NULL, poll_run, NULL)))
			rs.started = 2;
		else
			replica_stop();
	}
	if (rc) {
		snprintf(err, errlen, "cannot start the replica: %s",
			 strerror(rc));
		return -1;
	}
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
	if (rs.started == 2)
		pthread_join(rs.poller, NULL);
	rs.started = 0;
	fetch_global_cleanup();
}

struct lag {
	int state, have_store;
	uint64_t applied, primary, lag_seq;
	double lag_s;
	char error[512];
};

static void lag_now(struct lag *l)
{
	pthread_mutex_lock(&rs.mu);
	l->state = rs.state;
	l->have_store = rs.have_store;
	l->applied = rs.applied;
	l->primary = rs.primary > rs.applied ? rs.primary : rs.applied;
	l->lag_seq = l->primary - l->applied;
	l->lag_s = rs.ring_n ? (double)(serve_now_ns() - rs.ring[0].ns) / 1e9
			     : 0;
	snprintf(l->error, sizeof l->error, "%s", rs.error);
	pthread_mutex_unlock(&rs.mu);
}

void replica_health(struct req *r)
{
	struct lag l;
	struct sbuf b = {0};
	lag_now(&l);
	int ok = l.have_store && l.state != S_STOPPED;
	sb_printf(&b, "{\"status\":\"%s\",\"role\":\"replica\",\"primary\":",
		  ok ? "ok" : "unavailable");
	sb_json_str(&b, cfg->replica_of, strlen(cfg->replica_of));
	sb_printf(&b, ",\"state\":\"%s\",\"applied_seq\":%llu,"
		  "\"primary_seq\":%llu,\"lag_seq\":%llu,"
		  "\"lag_seconds\":%.3f", state_names[l.state],
		  (unsigned long long)l.applied,
		  (unsigned long long)l.primary,
		  (unsigned long long)l.lag_seq, l.lag_s);
	char id[HISTORY_ID_LEN + 1];
	history_get(id);
	sb_printf(&b, ",\"history\":\"%s\"", id);
	if (l.error[0]) {
		sb_puts(&b, ",\"error\":");
		sb_json_str(&b, l.error, strlen(l.error));
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
	uint64_t commits = rs.commits, img = rs.image_bytes, pages = rs.pages;
	uint64_t taken = rs.taken;
	pthread_mutex_unlock(&rs.mu);
	metric(b, "kyro_replica_lag_seq", "gauge", "Changes the primary "
	       "has committed that the replica has not applied.", l.lag_seq);
	sb_printf(b, "# HELP kyro_replica_lag_seconds Age of the oldest "
		  "primary position the replica has not applied.\n# TYPE "
		  "kyro_replica_lag_seconds gauge\nkyro_replica_lag_seconds "
		  "%.3f\n", l.lag_s);
	metric(b, "kyro_replica_applied_seq", "gauge", "The replica's last "
	       "sequence number.", l.applied);
	metric(b, "kyro_replica_primary_seq", "gauge", "The primary's last "
	       "sequence number, as last seen.", l.primary);
	metric(b, "kyro_replica_following", "gauge", "1 while the replica "
	       "follows the primary.", l.state == S_FOLLOWING);
	metric(b, "kyro_replica_stopped", "gauge", "1 when replication "
	       "stopped on an error (see /health).", l.state == S_STOPPED);
	metric(b, "kyro_replica_bootstraps_total", "counter", "Images "
	       "imported from the primary.", boots);
	metric(b, "kyro_replica_image_bytes_total", "counter", "Image bytes "
	       "received.", img);
	metric(b, "kyro_replica_reconnects_total", "counter", "Times the "
	       "replica connected to the primary again.", recon);
	metric(b, "kyro_replica_pages_total", "counter", "/v1/replicate "
	       "pages applied while catching up.", pages);
	metric(b, "kyro_replica_stream_changes_total", "counter", "Changes "
	       "applied from /v1/subscribe events, not pages.", taken);
	metric(b, "kyro_replica_batches_total", "counter", "Primary batches "
	       "applied.", batches);
	metric(b, "kyro_replica_changes_total", "counter", "Changes applied.",
	       changes);
	metric(b, "kyro_replica_commits_total", "counter", "Local commits "
	       "(each one or more whole primary batches).", commits);
}
