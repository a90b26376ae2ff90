/*
 * feed.c - GET /v1/subscribe (see feed.h): one SSE event per batch, its
 * id the batch's last sequence number, its changes in the representation
 * it shares with GET /v1/replay (replay.c).
 *
 * Subscribers and threads.  kyro-serve runs libmicrohttpd with a pool of
 * epoll threads, each serving many connections, so no callback may block
 * waiting for a commit.  The watcher thread, while anyone subscribes,
 * sleeps in kyro_feed_wait() on its own feed, which it keeps at the last
 * commit: a commit wakes it through the store's futex, from this process
 * or any other; it reads the new batches once, encodes each as its SSE
 * event into the shared window (fanout.h), and writes the new events to
 * every parked subscriber's socket itself, as one chunk (push.h), the
 * connection staying suspended; it resumes a parked subscriber only for
 * what the window cannot give it, a full socket, or a heartbeat due.
 * A subscriber's content-reader callback copies the window's events from
 * its next sequence number on; when the window does not hold it (the
 * subscriber is behind, or the watcher cannot read), it reads its own
 * kyro_feed until OUT_LOW bytes are pending, at its own pace: a slow
 * client is simply not called for more, and its history stays in the
 * files.  With nothing to send it suspends its own connection, parks on
 * W.parked and returns 0.  W.gen counts the watcher's wakes by a commit,
 * each after its batches are in the window: a subscriber parks only if
 * it did not move since the subscriber's own read began, so a commit
 * between that read and the park is never missed.  An idle subscriber
 * costs a parked struct and a mapped segment, no thread and no CPU.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../cli.h"
#include "fanout.h"
#include "feed.h"
#include "log.h"
#include "push.h"
#include "store.h"

#define CT_JSON "application/json"
#define OUT_LOW 16384                 /* read batches until this is pending */
#define OUT_KEEP 65536                /* buffer kept between events */
#define SLACK_NS 2000000              /* heartbeats this close are due now */
#define WATCH_MAX_MS 1000             /* see watch() */
#define ROUND_GAP_NS 1000000          /* see gap() */
#define GAP_PER_SUB_NS 10000          /* see gap() */
#define OWE_RETRY_MS 10               /* see watch() */

static const struct serve_cfg *cfg;

const struct serve_cfg *feed_config(void)
{
	return cfg;
}

struct sub {
	kyro_feed *f;         /* at POS only when it was read last */
	struct MHD_Connection *conn;
	struct req *r;        /* for the access log; valid while called */
	struct sbuf out;      /* the bytes not yet handed to libmicrohttpd */
	size_t off;
	uint64_t pos;         /* the next sequence number to send */
	struct fan_chunk *cur; /* the shared event being sent, or NULL */
	size_t cur_off;       /* how much of it is sent */
	uint64_t gen;         /* W.gen when the last read began */
	uint64_t replaced;    /* W.replaced when it subscribed */
	uint64_t due_ns;      /* when a heartbeat is due */
	int in_batch;
	int ending;           /* the last event is in OUT */
	int dead;             /* the stream cannot go on: end with an error */
	struct push push;     /* the watcher's, while parked */
	struct sub *next;     /* on W.parked */
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	int started, stopping, active;
	uint64_t gen;
	uint64_t replaced;    /* bumped by feed_replaced() */
	struct sub *parked;
	unsigned nparked;
	kyro_feed *f;         /* the watcher's, at the last commit */
	uint64_t wake_ns;     /* when its wait ends (0: not waiting) */
} w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static struct {
	int subscribers;
	uint64_t events, changes, bytes, heartbeats;
	uint64_t expired, gone, refused, wakes, shared, pushes, handed,
		 shorts;
	uint64_t gap_ns;      /* the last commit round's gap */
} st;

/* The watcher's chunk of a round's events for parked subscribers. */
static struct push_round round_chunk;

/* The watcher's event being encoded for the shared window. */
static struct {
	struct sbuf b;
	int in_batch;
	uint64_t first, changes;
} enc;

static void count(uint64_t *c, uint64_t n)
{
	__atomic_add_fetch(c, n, __ATOMIC_RELAXED);
}

static uint64_t rd(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* ---- answers ---- */

static void gone(struct req *r, uint64_t oldest)
{
	struct sbuf b = {0};
	count(&st.gone, 1);
	feed_expired_json(&b, oldest);
	sb_put(&b, "\n", 1);
	http_reply_sb(r, 410, CT_JSON, &b);
}

void feed_open_failed(struct req *r, kyro_feed *f, int rc)
{
	if (rc == KYRO_EEXPIRED)
		gone(r, kyro_feed_oldest(f));
	else
		http_error(r, 500, "cannot read the change feed: %s",
			   kyro_feed_errmsg(f));
	kyro_feed_close(f);
}

/* ---- the watcher ---- */

/* The watcher encodes each batch once, into the shared window. */
static int window_change(void *arg, const struct kyro_change *c)
{
	(void)arg;
	if (!enc.in_batch) {
		enc.first = c->seq;
		enc.changes = 0;
	}
	enc.changes++;
	if (!feed_event_change(&enc.b, &enc.in_batch, c))
		return 0;
	struct fan_chunk *ch = enc.b.oom ? NULL :
		fan_chunk_new(enc.first, c->seq + 1, enc.changes, enc.b.p,
			      enc.b.len);
	if (ch)
		fan_publish(ch);
	else
		fan_stall(); /* subscribers read their own feeds instead */
	enc.b.len = 0;
	enc.b.oom = 0;
	if (enc.b.cap > OUT_KEEP)
		sb_free(&enc.b);
	return 0;
}

/* The watcher's feed cannot be read: subscribers read their own, and
 * the next refresh() starts the window again. */
static void stall(void)
{
	fan_stall();
	enc.in_batch = 0;
	enc.b.len = 0;
	enc.b.oom = 0;
}

/* A new watcher feed at the last commit; 0 or an error. */
static int refresh(void)
{
	char err[256];
	int rc;
	uint64_t last;
	kyro_feed *nf;
	kyro_db *db = store_reader(&rc, err, sizeof err);
	stall();
	if (!db)
		return rc;
	if ((rc = kyro_last_seq(db, &last)) != 0)
		return rc;
	rc = kyro_feed_open(&nf, cfg->dir, last + 1);
	if (rc) {
		log_msg(LOG_WARN, "feed watcher: %s", kyro_feed_errmsg(nf));
		kyro_feed_close(nf);
		return rc;
	}
	fan_restart(last + 1);
	pthread_mutex_lock(&w.mu);
	kyro_feed *old = w.f;
	w.f = nf;
	pthread_mutex_unlock(&w.mu);
	kyro_feed_close(old);
	return 0;
}

/* Read the watcher's feed to the last commit, into the window. */
static int drain(void)
{
	size_t n;
	int rc;
	do
		rc = kyro_feed_read(w.f, 1024, window_change, NULL, &n);
	while (!rc && n == 1024);
	return rc ? refresh() : 0;
}

/* Resume LIST's connections; a resumed subscriber may be freed at once
 * by its worker, so nothing of it is read after its resume.  One whose
 * stream stopped inside a chunk (push.h) cannot go on through
 * libmicrohttpd: it ends. */
static void resume_all(struct sub *list)
{
	while (list) {
		struct sub *next = list->next;
		if (list->push.owe.len)
			list->dead = 1;
		MHD_resume_connection(list->conn);
		list = next;
	}
}

/* Take off W.parked every subscriber (ALL) or those whose heartbeat is
 * due by NOW or that owe the rest of a chunk; under W.mu. */
static struct sub *unpark(int all, uint64_t now)
{
	struct sub *out = NULL, **pp = &w.parked;
	while (*pp) {
		struct sub *s = *pp;
		if (all || s->due_ns <= now + SLACK_NS || s->push.owe.len) {
			*pp = s->next;
			s->next = out;
			out = s;
			w.nparked--;
		} else {
			pp = &s->next;
		}
	}
	return out;
}

/* What a round does with a parked subscriber. */
enum { KEEP, RESUME };

/* The round's counts, added to ST once a round. */
struct tally {
	uint64_t pushes, events, changes, bytes, handed, shorts;
};

/* Bring parked S up to the window by writing to its socket (push.h):
 * KEEP it parked, or RESUME it, for libmicrohttpd to send what the
 * window cannot (a heartbeat, its own feed's batches, more than one
 * round's worth) or to wait for a full socket.  S is the watcher's
 * meanwhile: off W.parked, its connection suspended. */
static int push_one(struct sub *s, struct push_round *r, uint64_t now,
		    struct tally *t)
{
	const uint64_t limit = (uint64_t)cfg->timeout_s * 1000000000;
	if (s->push.owe.len) {
		enum push_result rc = push_flush(&s->push, now);
		if (rc == PUSH_OWING && now - s->push.owe_since < limit)
			return KEEP;
		if (rc != PUSH_SENT) {
			/* Cut off, as --timeout cuts a socket that takes
			 * nothing. */
			s->dead = 1;
			return RESUME;
		}
	}
	int have = s->push.fd < 0 ? -1 : push_frame(r, s->pos);
	if (have <= 0)
		return have < 0 || s->due_ns <= now + SLACK_NS ? RESUME : KEEP;
	switch (push_send(&s->push, r, now)) {
	case PUSH_AGAIN:
		t->handed++;
		return RESUME;
	case PUSH_DEAD:
		s->dead = 1;
		return RESUME;
	case PUSH_OWING:
		t->shorts++;
		break;
	case PUSH_SENT:
		break;
	}
	s->pos = r->next;
	s->due_ns = now + (uint64_t)cfg->heartbeat_s * 1000000000;
	s->r->sent_bytes += r->data;
	t->pushes++;
	t->events += r->events;
	t->changes += r->changes;
	t->bytes += r->data;
	return s->push.owe.len || !r->more ? KEEP : RESUME;
}

/* One round over LIST, taken off W.parked: each subscriber is pushed to
 * and parked again, or resumed. */
static void push_parked(struct sub *list)
{
	struct push_round *r = &round_chunk;
	struct sub *keep = NULL, *resume = NULL;
	struct tally t = {0};
	const uint64_t now = serve_now_ns();
	push_round_reset(r);
	while (list) {
		struct sub *s = list;
		list = s->next;
		struct sub **to = push_one(s, r, now, &t) == KEEP ? &keep
								    : &resume;
		s->next = *to;
		*to = s;
	}
	count(&st.pushes, t.pushes);
	count(&st.events, t.events);
	count(&st.shared, t.events);
	count(&st.changes, t.changes);
	count(&st.bytes, t.bytes);
	count(&st.handed, t.handed);
	count(&st.shorts, t.shorts);
	pthread_mutex_lock(&w.mu);
	while (keep) {
		struct sub *s = keep;
		keep = s->next;
		if (w.stopping || w.replaced != s->replaced) {
			s->next = resume;
			resume = s;
			continue;
		}
		s->next = w.parked;
		w.parked = s;
		w.nparked++;
	}
	pthread_mutex_unlock(&w.mu);
	resume_all(resume);
}

/* A commit soon after the last round waits out the rest of a gap, so
 * that the next round carries every commit made meanwhile.  Each round
 * costs a write per parked subscriber, and the subscriber a read: at
 * 10,000 commits/s and 100 subscribers, one round a commit was a
 * million of each a second on two CPUs, and that queueing, not the work
 * of one delivery, made the tail.  So the gap grows with the part of a
 * round that grows, a send and a read per subscriber: GAP_PER_SUB_NS a
 * subscriber, up to ROUND_GAP_NS from 100 on.  One subscriber (a
 * replica, whose lag holds two such gaps, the primary's and its own)
 * waits 10 us, not a millisecond, and pays the round's fixed part (a
 * wake, a read of the feed, a chunk) about once a commit.  A commit
 * after a quiet gap goes out at once. */
static void gap(uint64_t last_round, unsigned subscribers)
{
	uint64_t len = (uint64_t)subscribers * GAP_PER_SUB_NS;
	if (len > ROUND_GAP_NS)
		len = ROUND_GAP_NS;
	__atomic_store_n(&st.gap_ns, len, __ATOMIC_RELAXED);
	uint64_t since = serve_now_ns() - last_round;
	if (since >= len)
		return;
	struct timespec ts = {0, (long)(len - since)};
	nanosleep(&ts, NULL);
}

/*
 * The watcher sleeps on the cond while nobody subscribes, else in
 * kyro_feed_wait() until the next heartbeat is due, at most WATCH_MAX_MS:
 * kyro_feed_interrupt() can be lost when it lands just before the wait
 * sleeps, and the cap bounds what that costs a shutdown or an earlier
 * heartbeat (one wake a second, whatever the number of subscribers).
 */
static void *watch(void *arg)
{
	(void)arg;
	uint64_t last_round = 0, replaced = 0;
	pthread_mutex_lock(&w.mu);
	while (!w.stopping) {
		/* It follows every commit while anyone subscribes, parked or
		 * not, so that the window stays live for the busy ones. */
		if (!__atomic_load_n(&st.subscribers, __ATOMIC_ACQUIRE)) {
			w.active = 0;
			pthread_cond_wait(&w.cv, &w.mu);
			continue;
		}
		uint64_t now = serve_now_ns(), due = UINT64_MAX;
		for (struct sub *s = w.parked; s; s = s->next) {
			due = s->due_ns < due ? s->due_ns : due;
			/* A subscriber that owes the rest of a chunk is
			 * written to again soon, whatever commits. */
			if (s->push.owe.len &&
			    now + OWE_RETRY_MS * 1000000 < due)
				due = now + OWE_RETRY_MS * 1000000;
		}
		/* DUE is UINT64_MAX when nobody is parked: capped before it
		 * becomes an int. */
		uint64_t wait_ms =
			due <= now ? 0 : (due - now + 999999) / 1000000;
		int ms = wait_ms > WATCH_MAX_MS ? WATCH_MAX_MS : (int)wait_ms;
		/* A replaced store starts the watcher over as an idle one
		 * does: its feed and the window belong to the old files. */
		int commit = !w.active || w.replaced != replaced, rc;
		replaced = w.replaced;
		w.wake_ns = now + (uint64_t)ms * 1000000;
		pthread_mutex_unlock(&w.mu);
		if (commit) {
			/* Idle until now, the watcher's feed fell behind: it
			 * is moved to the last commit (the window starts
			 * there), and every parked subscriber looks once, for
			 * a commit made before. */
			rc = refresh();
		} else {
			rc = kyro_feed_wait(w.f, ms);
			commit = !rc;
			if (!rc) {
				gap(last_round, (unsigned)__atomic_load_n(
					&st.subscribers, __ATOMIC_RELAXED));
				drain();
			}
		}
		if (rc && rc != ETIMEDOUT && rc != EINTR) {
			log_msg(LOG_WARN,
				"feed watcher: cannot wait for commits: %s",
				rc < 0 ? kyro_strerror(rc) : strerror(rc));
			commit = 1;
			struct timespec ts = {0, 50 * 1000000};
			nanosleep(&ts, NULL);
		}
		count(&st.wakes, 1);
		pthread_mutex_lock(&w.mu);
		w.wake_ns = 0;
		w.active = w.f != NULL;
		if (commit)
			w.gen++;
		struct sub *list = unpark(commit, serve_now_ns());
		pthread_mutex_unlock(&w.mu);
		if (commit)
			last_round = serve_now_ns();
		push_parked(list);
		pthread_mutex_lock(&w.mu);
	}
	pthread_mutex_unlock(&w.mu);
	return NULL;
}

void feed_replaced(void)
{
	pthread_mutex_lock(&w.mu);
	__atomic_add_fetch(&w.replaced, 1, __ATOMIC_ACQ_REL);
	struct sub *list = unpark(1, 0);
	if (w.f)
		kyro_feed_interrupt(w.f);
	pthread_cond_signal(&w.cv);
	pthread_mutex_unlock(&w.mu);
	resume_all(list);
}

int feed_start(const struct serve_cfg *c, char *err, size_t errlen)
{
	cfg = c;
	int rc = pthread_create(&w.thread, NULL, watch, NULL);
	if (rc) {
		snprintf(err, errlen, "cannot start the feed watcher: %s",
			 strerror(rc));
		return -1;
	}
	w.started = 1;
	return 0;
}

void feed_stop(void)
{
	if (!w.started)
		return;
	pthread_mutex_lock(&w.mu);
	w.stopping = 1;
	struct sub *list = unpark(1, 0);
	pthread_cond_signal(&w.cv);
	if (w.f)
		kyro_feed_interrupt(w.f);
	pthread_mutex_unlock(&w.mu);
	resume_all(list);
	pthread_join(w.thread, NULL);
	w.started = 0;
	kyro_feed_close(w.f);
	w.f = NULL;
	stall();
	sb_free(&enc.b);
	push_round_free(&round_chunk);
}

/* ---- GET /v1/subscribe ---- */

static int sub_change(void *arg, const struct kyro_change *c)
{
	struct sub *s = arg;
	count(&st.changes, 1);
	if (feed_event_change(&s->out, &s->in_batch, c))
		count(&st.events, 1);
	return 0;
}

/* The stream's last event. */
typedef void (*body_fn)(struct sbuf *b, uint64_t arg);

static void final(struct sub *s, const char *event, body_fn body,
		  uint64_t arg, const char *msg)
{
	sb_printf(&s->out, "event: %s\ndata: ", event);
	if (body) {
		body(&s->out, arg);
	} else {
		sb_puts(&s->out, "{\"error\":");
		sb_json_str(&s->out, msg, strlen(msg));
		sb_put(&s->out, "}", 1);
	}
	sb_puts(&s->out, "\n\n");
	s->ending = 1;
}

static void shutdown_body(struct sbuf *b, uint64_t next)
{
	sb_puts(b, "{\"next\":");
	sb_u64(b, next);
	sb_put(b, "}", 1);
}

/* The last event for a feed that failed with RC. */
static void feed_failed(struct sub *s, kyro_feed *f, int rc)
{
	if (rc == KYRO_EEXPIRED) {
		count(&st.expired, 1);
		final(s, "expired", feed_expired_json, kyro_feed_oldest(f), NULL);
	} else {
		final(s, "error", NULL, 0, kyro_feed_errmsg(f));
	}
}

/* Read whole batches from S's own feed until OUT_LOW bytes are pending
 * or none is left.  The feed is opened again at S->pos when events from
 * the window moved S on since it was last read. */
static void fill(struct sub *s)
{
	size_t n = 1;
	if (kyro_feed_position(s->f) != s->pos) {
		kyro_feed *nf;
		int rc = kyro_feed_open(&nf, cfg->dir, s->pos);
		if (rc) {
			feed_failed(s, nf, rc);
			kyro_feed_close(nf);
			return;
		}
		kyro_feed_close(s->f);
		s->f = nf;
	}
	while (n && s->out.len < OUT_LOW && !s->out.oom) {
		int rc = kyro_feed_read(s->f, 1, sub_change, s, &n);
		if (rc) {
			feed_failed(s, s->f, rc);
			return;
		}
	}
	s->pos = kyro_feed_position(s->f);
}

/* Park S, its connection suspended, unless a commit came since its read
 * began or the server stops: then 0, and the caller reads again. */
static int park(struct sub *s)
{
	pthread_mutex_lock(&w.mu);
	if (w.stopping || w.gen != s->gen || w.replaced != s->replaced) {
		pthread_mutex_unlock(&w.mu);
		return 0;
	}
	MHD_suspend_connection(s->conn);
	s->next = w.parked;
	w.parked = s;
	w.nparked++;
	if (w.nparked == 1)
		pthread_cond_signal(&w.cv);
	else if (w.wake_ns && s->due_ns < w.wake_ns)
		kyro_feed_interrupt(w.f);
	pthread_mutex_unlock(&w.mu);
	return 1;
}

static ssize_t sent(struct sub *s, size_t n)
{
	s->due_ns = serve_now_ns() + (uint64_t)cfg->heartbeat_s * 1000000000;
	s->r->sent_bytes += n;
	count(&st.bytes, n);
	return (ssize_t)n;
}

static ssize_t take(struct sub *s, char *buf, size_t max)
{
	size_t n = s->out.len - s->off;
	if (n > max)
		n = max;
	memcpy(buf, s->out.p + s->off, n);
	s->off += n;
	if (s->off == s->out.len) {
		s->off = s->out.len = 0;
		if (s->out.cap > OUT_KEEP)
			sb_free(&s->out);
	}
	return sent(s, n);
}

/* Copy shared events, from S->cur on, as many as BUF takes: one
 * libmicrohttpd write then carries every event that is ready.  The
 * counters are shared by both worker threads: added to once a call, not
 * once an event, as their cache line moving between CPUs showed in a
 * profile at 100 subscribers. */
static ssize_t take_shared(struct sub *s, char *buf, size_t max)
{
	size_t n = 0;
	uint64_t events = 0, changes = 0;
	int caught_up;
	while (s->cur && n < max) {
		struct fan_chunk *c = s->cur;
		size_t k = c->len - s->cur_off;
		if (k > max - n)
			k = max - n;
		memcpy(buf + n, c->bytes + s->cur_off, k);
		n += k;
		s->cur_off += k;
		if (s->cur_off < c->len)
			break;
		s->pos = c->next;
		events++;
		changes += c->changes;
		fan_put(c);
		s->cur_off = 0;
		s->cur = fan_get(s->pos, &caught_up);
	}
	count(&st.events, events);
	count(&st.shared, events);
	count(&st.changes, changes);
	return sent(s, n);
}

static ssize_t sub_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sub *s = cls;
	(void)pos;
	for (;;) {
		if (s->out.oom || s->dead)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (s->off < s->out.len)
			return take(s, buf, max);
		if (s->ending)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (s->cur)
			return take_shared(s, buf, max);
		if (__atomic_load_n(&w.stopping, __ATOMIC_ACQUIRE)) {
			final(s, "shutdown", shutdown_body, s->pos, NULL);
			continue;
		}
		if (__atomic_load_n(&w.replaced, __ATOMIC_ACQUIRE) !=
		    s->replaced) {
			final(s, "reset", shutdown_body, s->pos, NULL);
			continue;
		}
		s->gen = __atomic_load_n(&w.gen, __ATOMIC_ACQUIRE);
		/* The window first; the own feed only when S is not where
		 * the window will continue (behind it, or no window). */
		int caught_up;
		if ((s->cur = fan_get(s->pos, &caught_up)) != NULL)
			continue;
		if (!caught_up)
			fill(s);
		if (s->out.len)
			continue;
		if (serve_now_ns() + SLACK_NS >= s->due_ns) {
			count(&st.heartbeats, 1);
			sb_puts(&s->out, ": heartbeat\n\n");
			continue;
		}
		if (park(s))
			return 0;
	}
}

static void sub_free(void *cls)
{
	struct sub *s = cls;
	kyro_feed_close(s->f);
	fan_put(s->cur);
	sb_free(&s->out);
	sb_free(&s->push.owe);
	free(s);
	__atomic_sub_fetch(&st.subscribers, 1, __ATOMIC_RELAXED);
}

/* Where a subscription starts: after Last-Event-ID (a reconnecting
 * EventSource repeats its URL, so the header wins over ?from=), else at
 * ?from=, else at the next commit.  Answers 400 or 500 itself. */
static int sub_from(struct req *r, uint64_t *from)
{
	uint64_t v, last;
	const char *id = http_header_value(r, "Last-Event-ID");
	if (feed_arg_u64(r, "from", from))
		return -1;
	int have = http_arg(r, "from") != NULL;
	if (id && *id) {
		if (cli_parse_key(id, strlen(id), &v) || v == UINT64_MAX) {
			http_error(r, 400,
				   "Last-Event-ID must be a sequence number");
			return -1;
		}
		*from = v + 1;
		return 0;
	}
	if (have)
		return 0;
	char err[256];
	int rc;
	kyro_db *db = store_reader(&rc, err, sizeof err);
	if (!db || (rc = kyro_last_seq(db, &last)) != 0) {
		http_error(r, 500, "cannot open the store: %s",
			   db ? kyro_errmsg(db) : err);
		return -1;
	}
	*from = last + 1;
	return 0;
}

void feed_subscribe(struct req *r)
{
	uint64_t from = 0;
	kyro_feed *f;
	if (sub_from(r, &from))
		return;
	if (__atomic_load_n(&w.stopping, __ATOMIC_ACQUIRE)) {
		http_error(r, 503, "the server is stopping");
		return;
	}
	int n = __atomic_add_fetch(&st.subscribers, 1, __ATOMIC_RELAXED);
	if (n > (int)cfg->max_subscribers) {
		__atomic_sub_fetch(&st.subscribers, 1, __ATOMIC_RELAXED);
		count(&st.refused, 1);
		http_error(r, 503, "at most %u subscribers",
			   cfg->max_subscribers);
		return;
	}
	/* Taken before the feed opens: a store replaced after this ends
	 * the stream, whichever store the feed opened. */
	uint64_t replaced = __atomic_load_n(&w.replaced, __ATOMIC_ACQUIRE);
	int rc = kyro_feed_open(&f, cfg->dir, from);
	struct sub *s = rc ? NULL : calloc(1, sizeof *s);
	struct MHD_Response *resp = s ? MHD_create_response_from_callback(
		MHD_SIZE_UNKNOWN, OUT_LOW, sub_read, s, sub_free) : NULL;
	if (!resp) {
		__atomic_sub_fetch(&st.subscribers, 1, __ATOMIC_RELAXED);
		free(s);
		if (rc)
			feed_open_failed(r, f, rc);
		else {
			kyro_feed_close(f);
			http_error(r, 500, "out of memory");
		}
		return;
	}
	s->f = f;
	s->pos = kyro_feed_position(f);
	s->replaced = replaced;
	s->conn = r->conn;
	s->r = r;
	/* Only an HTTP/1.1 answer is chunked (push.h); an HTTP/1.0 one (a
	 * proxy's default) is the bare stream, which libmicrohttpd sends. */
	const union MHD_ConnectionInfo *ci =
		strcmp(r->version, MHD_HTTP_VERSION_1_1)
			? NULL
			: MHD_get_connection_info(
				  r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	s->push.fd = ci ? ci->connect_fd : -1;
	s->due_ns = serve_now_ns() + (uint64_t)cfg->heartbeat_s * 1000000000;
	/* Something at once, so that the client knows it is subscribed. */
	sb_printf(&s->out, ": from %llu\n\n",
		  (unsigned long long)kyro_feed_position(f));
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
				"no-cache");
	/* nginx in front would otherwise buffer the stream. */
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	http_reply_response(r, 200, "text/event-stream", resp);
	/* The watcher follows commits while anyone subscribes. */
	pthread_mutex_lock(&w.mu);
	pthread_cond_signal(&w.cv);
	pthread_mutex_unlock(&w.mu);
}

/* ---- /metrics ---- */

static void metric(struct sbuf *b, const char *name, const char *type,
		   const char *help, uint64_t v)
{
	sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help,
		  name, type, name, (unsigned long long)v);
}

#define G "gauge"
#define C "counter"

void feed_metrics(struct sbuf *b)
{
	pthread_mutex_lock(&w.mu);
	unsigned parked = w.nparked;
	pthread_mutex_unlock(&w.mu);
	metric(b, "kyro_feed_subscribers", G, "Open /v1/subscribe streams.",
	       (uint64_t)__atomic_load_n(&st.subscribers, __ATOMIC_RELAXED));
	metric(b, "kyro_feed_subscribers_idle", G,
	       "Subscribers parked until the next commit or heartbeat.",
	       parked);
	metric(b, "kyro_feed_events_total", C,
	       "Batch events sent to subscribers.", rd(&st.events));
	metric(b, "kyro_feed_shared_events_total", C,
	       "Batch events sent from the window encoded once for all.",
	       rd(&st.shared));
	metric(b, "kyro_feed_changes_total", C,
	       "Changes sent to subscribers.", rd(&st.changes));
	metric(b, "kyro_feed_bytes_total", C,
	       "Bytes of event streams sent.", rd(&st.bytes));
	metric(b, "kyro_feed_pushes_total", C,
	       "Chunks of events the watcher wrote to parked subscribers.",
	       rd(&st.pushes));
	metric(b, "kyro_feed_handed_back_total", C,
	       "Parked subscribers resumed because their socket was full.",
	       rd(&st.handed));
	metric(b, "kyro_feed_short_pushes_total", C,
	       "Chunks a parked subscriber's socket took only part of.",
	       rd(&st.shorts));
	metric(b, "kyro_feed_heartbeats_total", C,
	       "Heartbeat comments sent.", rd(&st.heartbeats));
	metric(b, "kyro_feed_expired_total", C,
	       "Subscribers cut off, behind the retained history.",
	       rd(&st.expired));
	metric(b, "kyro_feed_gone_total", C,
	       "Requests answered 410: history no longer retained.",
	       rd(&st.gone));
	metric(b, "kyro_feed_refused_total", C,
	       "Subscriptions refused over --max-subscribers.",
	       rd(&st.refused));
	sb_printf(b, "# HELP kyro_feed_round_gap_seconds Longest wait of a "
		  "commit for the round after the last (it grows with the "
		  "parked subscribers).\n# TYPE kyro_feed_round_gap_seconds "
		  "gauge\nkyro_feed_round_gap_seconds %.6f\n",
		  (double)rd(&st.gap_ns) / 1e9);
	metric(b, "kyro_feed_watcher_wakeups_total", C,
	       "Times the feed watcher woke (a commit, a heartbeat, a stop).",
	       rd(&st.wakes));
}
