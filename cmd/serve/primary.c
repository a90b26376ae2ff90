/*
 * primary.c - GET /v1/image and GET /v1/replicate (see primary.h).
 *
 * GET /v1/image streams kyro_export_read() from libmicrohttpd's content
 * reader: the export holds the snapshot's files open, so a snapshot that
 * commits meanwhile cannot tear it (docs/FORMAT-FEED.md, "Image stream").
 *
 * GET /v1/replicate?from=SEQ answers one page of whole batches from SEQ
 * on, about PAGE_BYTES, at least one batch, and never waits for a commit:
 * a replica far behind reads pages back to back (no JSON to parse, one
 * local commit per page) and follows /v1/subscribe once a page ends at
 * the last commit.  Little-endian, after the 16-byte header (the sequence
 * number the next page starts at, and the last committed one when this
 * page was read), each change:
 *
 *    0  8  sequence number
 *    8  8  the last sequence number of its batch
 *   16  8  key
 *   24  4  value length L; 0xffffffff for a delete
 *   28  1  op (KYRO_CHANGE_*)
 *   29  3  zero
 *   32  L  the value
 *
 * A batch's first change follows the previous batch's last.  History
 * older than the primary retains is 410, as for /v1/replay.
 *
 * Both name the history they serve (history.h) in X-Kyro-History.  A
 * replica sends its own as ?history=ID; when it is not this one, the page
 * is refused with 410, the answer to a replica that must bootstrap.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cli.h"
#include "history.h"
#include "primary.h"
#include "store.h"

#define CT_JSON "application/json"
#define IMAGE_CHUNK 65536
/* Each page opens a feed, which reads the live segment from its start
 * up to the page's first change: large pages keep that re-reading small
 * against what is sent. */
#define PAGE_BYTES ((size_t)32 << 20)
#define STOP_PAGE 0x7ffffff

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

struct page {
	struct sbuf out;
	int in_batch;
	uint64_t stop;   /* the change a full page stopped at */
};

static int page_change(void *arg, const struct kyro_change *c)
{
	struct page *p = arg;
	unsigned char h[PAGE_CHANGE] = {0};
	if (!p->in_batch && p->out.len >= PAGE_BYTES) {
		p->stop = c->seq;
		return STOP_PAGE;
	}
	p->in_batch = c->seq != c->batch_last;
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
	return p->out.oom ? STOP_PAGE : 0;
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
	} else {
		http_error(r, 500, "cannot read the change feed: %s",
			   kyro_feed_errmsg(f));
	}
}

void primary_replicate(struct req *r)
{
	uint64_t from = 1, last = 0, next;
	const char *a = http_arg(r, "from"), *h = http_arg(r, "history");
	char id[HISTORY_ID_LEN + 1];
	struct page p = {0};
	kyro_feed *f;
	size_t n;
	if (a && cli_parse_key(a, strlen(a), &from)) {
		http_error(r, 400, "?from= must be a sequence number");
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
	int rc = 0;
	uint64_t epoch;
	if (!(f = feed_take(from, &epoch)) &&
	    (rc = kyro_feed_open(&f, cfg->dir, from)) != 0) {
		read_failed(r, f, rc);
		kyro_feed_close(f);
		return;
	}
	sb_put(&p.out, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", PAGE_HDR);
	do
		rc = kyro_feed_read(f, 256, page_change, &p, &n);
	while (!rc && n == 256);
	/* A stop passes the change it stopped at, which starts the next
	 * page; else the page ends where the feed is. */
	next = rc == STOP_PAGE ? p.stop : kyro_feed_position(f);
	if (rc == STOP_PAGE && !p.out.oom)
		rc = 0;
	if (!rc)
		rc = kyro_feed_bounds(f, NULL, &last);
	if (rc || p.out.oom) {
		sb_free(&p.out);
		if (p.out.oom)
			http_error(r, 500, "out of memory");
		else
			read_failed(r, f, rc);
		kyro_feed_close(f);
		return;
	}
	/* A full page's feed has passed the change that begins the next
	 * page; one that caught up stands at NEXT. */
	if (p.stop)
		kyro_feed_close(f);
	else
		feed_keep(f, next, epoch);
	if (last < next - 1)
		last = next - 1;
	memcpy(p.out.p, &next, 8);
	memcpy(p.out.p + 8, &last, 8);
	http_reply_sb(r, 200, "application/octet-stream", &p.out);
}
