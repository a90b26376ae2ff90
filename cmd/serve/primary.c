/*
 * primary.c - GET /v1/image and GET /v1/replicate (see primary.h).
 *
 * GET /v1/image streams kyro_export_read() from libmicrohttpd's content
 * reader: the export holds the snapshot's files open, so a snapshot that
 * commits meanwhile cannot tear it (docs/FORMAT-FEED.md, "Image stream").
 *
 * GET /v1/replicate?from=SEQ&format=2 answers one page of whole batches
 * from SEQ on, about PAGE_BYTES, at least one batch, and never waits for
 * a commit: a replica far behind reads pages back to back (no JSON to
 * parse, one local commit per page) and follows /v1/subscribe once a
 * page ends at the last commit.  The page is sent as the feed reads it,
 * in chunks, so that the replica applies its start while the rest is
 * read; a page that fits one chunk (a following replica's, a few
 * commits) goes as one answer of known length.  Little-endian, each
 * change:
 *
 *    0  8  sequence number
 *    8  8  the last sequence number of its batch
 *   16  8  key
 *   24  4  value length L; 0xffffffff for a delete
 *   28  1  op (KYRO_CHANGE_*)
 *   29  3  zero
 *   32  L  the value
 *
 * then an end record of 32 bytes: the sequence number the next page
 * starts at, the last committed one when the page ended, 8 zero bytes,
 * 4 zero bytes, op PAGE_END (255), 3 zero bytes.  A page without its end
 * record was cut (the stream breaks when a read fails after the status
 * went out): the replica applies none of it.  A batch's first change
 * follows the previous batch's last.  History older than the primary
 * retains is 410, as for /v1/replay.
 *
 * Format 1 (no ?format=, what replicas before format 2 ask for) is the
 * same changes without the end record, after a 16-byte header of the
 * same two numbers, the page built whole before it is sent.
 *
 * GET /v1/image names the history it serves (history.h) in
 * X-Kyro-History.  A replica sends the one it copies as ?history=ID;
 * when it is not this one, the page is refused with 410, the answer to a
 * replica that must bootstrap.  A replica that resumes also sends
 * ?prev=SUM, the sum of its change FROM - 1 (16 hex digits, or "-" when
 * it no longer holds that change): 410 too when this store's change
 * FROM - 1 differs, or when its last commit is before FROM - 1 (it lost
 * changes the replica holds).  When this store no longer retains
 * FROM - 1, or SUM is "-", only the second is checked.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cli.h"
#include "history.h"
#include "log.h"
#include "primary.h"
#include "store.h"

#define CT_JSON "application/json"
#define IMAGE_CHUNK 65536
/* Each page opens a feed, which reads the live segment from its start
 * up to the page's first change: large pages keep that re-reading small
 * against what is sent. */
#define PAGE_BYTES ((size_t)32 << 20)
/* Format 2 hands a page to libmicrohttpd in chunks of about this size. */
#define PAGE_CHUNK ((size_t)256 << 10)

/* ---- GET /v1/image ---- */

static ssize_t image_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	kyro_export *e = cls;
	size_t got;
	(void)pos;
	if (kyro_export_read(e, buf, max, &got))
		return MHD_CONTENT_READER_END_WITH_ERROR;
	return got ? (ssize_t)got : MHD_CONTENT_READER_END_OF_STREAM;
}

static void image_free(void *cls) { kyro_export_close(cls); }

void primary_image(struct req *r)
{
	char err[256], seq[24], id[HISTORY_ID_LEN + 1];
	int rc;
	kyro_export *e;
	/* A replica records the ID with the image: none yet (a primary
	 * that is starting, a replica before its first bootstrap), no
	 * image. */
	history_get(id);
	if (!id[0]) {
		http_error(r, 503, "the store's history is not known yet: "
			   "try again");
		return;
	}
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
	MHD_add_response_header(resp, "X-Kyro-History", id);
	http_reply_response(r, 200, "application/octet-stream", resp);
}

/* ---- GET /v1/replicate ---- */

static const struct serve_cfg *cfg;

void primary_init(const struct serve_cfg *c) { cfg = c; }

/* Feeds that ended a page at the last commit, kept by where they stand:
 * a following replica's next request starts there, and reusing the feed
 * spares re-reading the live segment from its start (what opening one
 * costs) at every commit.  A feed is used by one request at a time: it is
 * taken out while in use. */
#define FEEDS 8
static struct {
	kyro_feed *f;
	uint64_t pos, used;
} feeds[FEEDS];
static uint64_t feeds_clock;
static uint64_t feeds_epoch; /* bumped when the store is replaced */
static pthread_mutex_t feeds_mu = PTHREAD_MUTEX_INITIALIZER;

static kyro_feed *feed_take(uint64_t from, uint64_t *epoch)
{
	kyro_feed *f = NULL;
	pthread_mutex_lock(&feeds_mu);
	*epoch = feeds_epoch;
	for (int i = 0; i < FEEDS && !f; i++)
		if (feeds[i].f && feeds[i].pos == from) {
			f = feeds[i].f;
			feeds[i].f = NULL;
		}
	pthread_mutex_unlock(&feeds_mu);
	return f;
}

void primary_replaced(void)
{
	kyro_feed *old[FEEDS];
	pthread_mutex_lock(&feeds_mu);
	feeds_epoch++;
	for (int i = 0; i < FEEDS; i++) {
		old[i] = feeds[i].f;
		feeds[i].f = NULL;
	}
	pthread_mutex_unlock(&feeds_mu);
	for (int i = 0; i < FEEDS; i++)
		kyro_feed_close(old[i]);
}

/* Keep F, at position POS, in place of the least recently kept. */
static void feed_keep(kyro_feed *f, uint64_t pos, uint64_t epoch)
{
	int at = 0;
	pthread_mutex_lock(&feeds_mu);
	if (epoch != feeds_epoch) {
		/* It reads the files of a store replaced since. */
		pthread_mutex_unlock(&feeds_mu);
		kyro_feed_close(f);
		return;
	}
	for (int i = 1; i < FEEDS && feeds[at].f; i++)
		if (!feeds[i].f || feeds[i].used < feeds[at].used)
			at = i;
	kyro_feed *old = feeds[at].f;
	feeds[at].f = f;
	feeds[at].pos = pos;
	feeds[at].used = ++feeds_clock;
	pthread_mutex_unlock(&feeds_mu);
	kyro_feed_close(old);
}

/* A page being read from the feed: its changes are encoded into OUT
 * (format 2: handed out as it fills), whole batches at a time, so that
 * the feed always stands at a batch boundary and can be kept for the
 * page that follows. */
struct page {
	kyro_feed *f;
	uint64_t epoch;
	struct sbuf out;
	size_t off;        /* bytes of OUT already handed out */
	size_t bytes;      /* page bytes encoded so far */
	int format, done, failed;
};

static int page_change(void *arg, const struct kyro_change *c)
{
	struct page *p = arg;
	unsigned char h[PAGE_CHANGE] = {0};
	memcpy(h, &c->seq, 8);
	memcpy(h + 8, &c->batch_last, 8);
	memcpy(h + 16, &c->key, 8);
	uint32_t len = c->op == KYRO_CHANGE_DELETE ? PAGE_DELETE
						   : (uint32_t)c->len;
	memcpy(h + 24, &len, 4);
	h[28] = (unsigned char)c->op;
	sb_put(&p->out, h, sizeof h);
	if (c->op != KYRO_CHANGE_DELETE)
		sb_put(&p->out, c->val, c->len);
	p->bytes += PAGE_CHANGE + (c->op != KYRO_CHANGE_DELETE ? c->len : 0);
	return p->out.oom ? ENOMEM : 0;
}

/* The page ends where the feed stands: NEXT, and LAST, the last commit
 * now; format 2 says so in an end record, format 1 in its header. */
static int page_end(struct page *p)
{
	uint64_t next = kyro_feed_position(p->f), last = 0;
	int rc = kyro_feed_bounds(p->f, NULL, &last);
	if (rc)
		return rc;
	if (last < next - 1)
		last = next - 1;
	p->done = 1;
	if (p->format == 1) {
		memcpy(p->out.p, &next, 8);
		memcpy(p->out.p + 8, &last, 8);
		return 0;
	}
	unsigned char h[PAGE_CHANGE] = {0};
	memcpy(h, &next, 8);
	memcpy(h + 8, &last, 8);
	h[28] = PAGE_END;
	sb_put(&p->out, h, sizeof h);
	return p->out.oom ? ENOMEM : 0;
}

/* Encode whole batches until OUT holds UPTO bytes, the page is full, or
 * the feed has caught up (then the page ends).  One batch a read keeps
 * OUT within UPTO and one batch, however far behind the replica is. */
static int page_fill(struct page *p, size_t upto)
{
	int rc = 0;
	size_t n = 1;
	while (!rc && !p->done && p->out.len < upto) {
		if (p->bytes >= PAGE_BYTES || !n)
			rc = page_end(p);
		else
			rc = kyro_feed_read(p->f, 1, page_change, p, &n);
	}
	return rc;
}

static void page_free(void *cls)
{
	struct page *p = cls;
	/* A feed read whole batches at a time stands at a batch boundary,
	 * even when the replica hung up mid-page. */
	if (p->failed)
		kyro_feed_close(p->f);
	else
		feed_keep(p->f, kyro_feed_position(p->f), p->epoch);
	sb_free(&p->out);
	free(p);
}

static ssize_t page_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct page *p = cls;
	(void)pos;
	if (p->off == p->out.len) {
		p->off = p->out.len = 0;
		if (p->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		int rc = page_fill(p, PAGE_CHUNK);
		if (rc) {
			/* The status went out with the first chunk: all
			 * that is left is to break the stream, which the
			 * replica takes for a failed page. */
			log_msg(LOG_WARN, "/v1/replicate: %s",
				rc == ENOMEM ? "out of memory"
					     : kyro_feed_errmsg(p->f));
			p->failed = 1;
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
	}
	size_t n = p->out.len - p->off < max ? p->out.len - p->off : max;
	memcpy(buf, p->out.p + p->off, n);
	p->off += n;
	return (ssize_t)n;
}

/* A read that stopped: 410 for history no longer retained, else 500. */
static void read_failed(struct req *r, kyro_feed *f, int rc)
{
	if (rc == KYRO_EEXPIRED) {
		struct sbuf b = {0};
		uint64_t oldest = kyro_feed_oldest(f);
		sb_printf(&b, "{\"error\":\"the history before sequence number "
			  "%llu is no longer retained: bootstrap from "
			  "/v1/image\",\"oldest\":%llu}\n",
			  (unsigned long long)oldest,
			  (unsigned long long)oldest);
		http_reply_sb(r, 410, CT_JSON, &b);
	} else if (rc == ENOMEM) {
		http_error(r, 500, "out of memory");
	} else {
		http_error(r, 500, "cannot read the change feed: %s",
			   kyro_feed_errmsg(f));
	}
}

/* Format 1, for replicas older than format 2: the page built whole, its
 * header first. */
static void reply_whole(struct req *r, struct page *p)
{
	sb_put(&p->out, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", PAGE_HDR);
	int rc = page_fill(p, (size_t)-1);
	if (rc) {
		read_failed(r, p->f, rc);
		p->failed = 1;
	} else {
		http_reply_sb(r, 200, "application/octet-stream", &p->out);
	}
	page_free(p);
}

/* ?prev= against this store's change FROM - 1: 0 to go on, else the
 * request was answered. */
static int check_prev(struct req *r, uint64_t from, const char *prev)
{
	char err[300];
	uint64_t want = 0, have;
	int any = strcmp(prev, "-") != 0;
	if (any && !history_valid_sum(prev, &want)) {
		http_error(r, 400, "?prev= must be 16 hex digits or -");
		return -1;
	}
	if (from <= 1)
		return 0;
	int rc = history_change_sum(cfg->dir, from - 1, &have, err,
				    sizeof err);
	if (rc == HISTORY_GONE || (rc == 0 && (!any || have == want)))
		return 0;
	if (rc == HISTORY_AHEAD)
		http_error(r, 410, "this store has no change %llu: it lost "
			   "changes the replica holds (restored from a copy, "
			   "or a crash without --sync=always): bootstrap from "
			   "/v1/image", (unsigned long long)(from - 1));
	else if (rc == 0)
		http_error(r, 410, "change %llu of this store is not the "
			   "replica's: the two histories parted (a copy or "
			   "a restored backup of this store): bootstrap from "
			   "/v1/image", (unsigned long long)(from - 1));
	else
		http_error(r, 500, "%s", err);
	return -1;
}

void primary_replicate(struct req *r)
{
	uint64_t from = 1;
	const char *a = http_arg(r, "from"), *h = http_arg(r, "history");
	const char *fmt = http_arg(r, "format");
	char id[HISTORY_ID_LEN + 1];
	if (a && cli_parse_key(a, strlen(a), &from)) {
		http_error(r, 400, "?from= must be a sequence number");
		return;
	}
	if (fmt && strcmp(fmt, "1") && strcmp(fmt, "2")) {
		http_error(r, 400, "?format= must be 1 or 2");
		return;
	}
	history_get(id);
	if (h && (!history_valid(h) || strcmp(h, id))) {
		/* Its sequence numbers name other changes than ours. */
		http_error(r, 410, "history %.40s is not this store's (%s): "
			   "bootstrap from /v1/image", h,
			   id[0] ? id : "not known yet");
		return;
	}
	const char *prev = http_arg(r, "prev");
	if (prev && check_prev(r, from, prev))
		return;
	struct page *p = calloc(1, sizeof *p);
	if (!p) {
		http_error(r, 500, "out of memory");
		return;
	}
	p->format = fmt && !strcmp(fmt, "2") ? 2 : 1;
	int rc = 0;
	if (!(p->f = feed_take(from, &p->epoch)) &&
	    (rc = kyro_feed_open(&p->f, cfg->dir, from)) != 0) {
		read_failed(r, p->f, rc);
		p->failed = 1;
		page_free(p);
		return;
	}
	if (p->format == 1) {
		reply_whole(r, p);
		return;
	}
	/* The first chunk is read before the status is sent, so that a
	 * page that cannot start is an error answer, not a broken one. */
	if ((rc = page_fill(p, PAGE_CHUNK)) != 0) {
		read_failed(r, p->f, rc);
		p->failed = 1;
		page_free(p);
		return;
	}
	if (p->done) {
		/* All of it fits the first chunk (a following replica's page
		 * is a few commits): one answer with its length, no chunk
		 * framing and no second call. */
		http_reply_hdr(r, 200, "application/octet-stream", &p->out,
			       "X-Kyro-Page-Format", "2");
		page_free(p);
		return;
	}
	struct MHD_Response *resp = MHD_create_response_from_callback(
		MHD_SIZE_UNKNOWN, PAGE_CHUNK, page_read, p, page_free);
	if (!resp) {
		p->failed = 1;
		page_free(p);
		http_error(r, 500, "out of memory");
		return;
	}
	MHD_add_response_header(resp, "X-Kyro-Page-Format", "2");
	http_reply_response(r, 200, "application/octet-stream", resp);
}
