/*
 * replay.c - GET /v1/replay: pages of the change feed's history, each
 * ending at a batch boundary (docs/API-FEED.md); and the representation
 * of changes it shares with GET /v1/subscribe (feed.c).
 *
 * A change is written as kyro-get --changes --format=json writes it; a
 * replay page is a JSON object around an array of them, a subscription
 * one SSE event per batch, its id the batch's last sequence number.
 */
#include <stdio.h>
#include <string.h>

#include "../cli.h"
#include "feed.h"

#define CT_JSON "application/json"
#define PAGE_BYTES ((size_t)8 << 20)  /* a replay page's soft cap in bytes */
#define STOP_PAGE 0x7ffffff           /* our own kyro_feed_read stop value */

/* ---- the representation, shared with feed.c ---- */

void feed_put_change(struct sbuf *b, const struct kyro_change *c)
{
	sb_puts(b, "{\"seq\":");
	sb_u64(b, c->seq);
	sb_puts(b, ",\"batch_first\":");
	sb_u64(b, c->batch_first);
	sb_puts(b, ",\"batch_last\":");
	sb_u64(b, c->batch_last);
	sb_puts(b, c->op == KYRO_CHANGE_PUT ? ",\"op\":\"put\",\"key\":"
		   : c->op == KYRO_CHANGE_VECTOR ? ",\"op\":\"vector\",\"key\":"
		   : ",\"op\":\"delete\",\"key\":");
	sb_u64(b, c->key);
	if (c->op == KYRO_CHANGE_PUT) {
		sb_put(b, ",", 1);
		sb_json_value_field(b, c->val, c->len);
	} else if (c->op == KYRO_CHANGE_VECTOR) {
		sb_puts(b, ",\"vector\":[");
		for (size_t i = 0; i < c->len / sizeof(float); i++) {
			float f;
			memcpy(&f, (const char *)c->val + i * sizeof f, sizeof f);
			if (i)
				sb_put(b, ",", 1);
			sb_float(b, f);
		}
		sb_put(b, "]", 1);
	}
	sb_put(b, "}", 1);
}

int feed_event_change(struct sbuf *b, int *in_batch,
		      const struct kyro_change *c)
{
	if (!*in_batch) {
		sb_puts(b, "id: ");
		sb_u64(b, c->batch_last);
		sb_puts(b, "\ndata: {\"first\":");
		sb_u64(b, c->batch_first);
		sb_puts(b, ",\"last\":");
		sb_u64(b, c->batch_last);
		sb_puts(b, ",\"changes\":[");
		*in_batch = 1;
	} else {
		sb_put(b, ",", 1);
	}
	feed_put_change(b, c);
	if (c->seq != c->batch_last)
		return 0;
	sb_puts(b, "]}\n\n");
	*in_batch = 0;
	return 1;
}

void feed_expired_json(struct sbuf *b, uint64_t oldest)
{
	char msg[200];
	snprintf(msg, sizeof msg,
		 "the history before sequence number %llu is no longer "
		 "retained: bootstrap from a snapshot, then follow from %llu "
		 "or later", (unsigned long long)oldest,
		 (unsigned long long)oldest);
	sb_puts(b, "{\"error\":");
	sb_json_str(b, msg, strlen(msg));
	sb_puts(b, ",\"oldest\":");
	sb_u64(b, oldest);
	sb_put(b, "}", 1);
}

int feed_arg_u64(struct req *r, const char *name, uint64_t *v)
{
	const char *a = http_arg(r, name);
	if (a && cli_parse_key(a, strlen(a), v)) {
		http_error(r, 400, "?%s= must be a decimal or 0x-hexadecimal "
			   "u64", name);
		return -1;
	}
	return 0;
}

/* ---- GET /v1/replay ---- */

struct page {
	struct sbuf out;
	uint64_t end, limit, count, next;
	int in_batch, more;
};

static int page_change(void *arg, const struct kyro_change *c)
{
	struct page *p = arg;
	if (!p->in_batch) {
		/* A batch starts (or the rest of one, at ?start=): whole in
		 * this page, or left for the next. */
		uint64_t n = c->batch_last - c->seq + 1;
		p->next = c->seq;
		if (c->seq > p->end)
			return STOP_PAGE;
		if (p->count && (p->count + n > p->limit ||
				 p->out.len >= PAGE_BYTES)) {
			p->more = 1;
			return STOP_PAGE;
		}
		p->in_batch = 1;
	}
	if (p->count++)
		sb_put(&p->out, ",", 1);
	feed_put_change(&p->out, c);
	if (c->seq == c->batch_last)
		p->in_batch = 0;
	return p->out.oom ? STOP_PAGE : 0;
}

void feed_replay(struct req *r)
{
	const struct serve_cfg *cfg = feed_config();
	uint64_t start = 1, end = UINT64_MAX, limit = 1000;
	kyro_feed *f;
	size_t n;
	if (feed_arg_u64(r, "start", &start) || feed_arg_u64(r, "end", &end) ||
	    feed_arg_u64(r, "limit", &limit))
		return;
	if (!limit || limit > cfg->max_range) {
		http_error(r, 400, "?limit= is 1 to %u", cfg->max_range);
		return;
	}
	if (start > end) {
		http_error(r, 400, "?start= is past ?end=");
		return;
	}
	int rc = kyro_feed_open(&f, cfg->dir, start);
	if (rc) {
		feed_open_failed(r, f, rc);
		return;
	}
	struct page p = {.end = end, .limit = limit};
	sb_puts(&p.out, "{\"changes\":[");
	do
		rc = kyro_feed_read(f, 64, page_change, &p, &n);
	while (!rc && n == 64);
	if (!rc)
		p.next = kyro_feed_position(f);
	if (rc == KYRO_EEXPIRED) {
		/* Removed under the read: the page cannot be whole. */
		sb_free(&p.out);
		feed_open_failed(r, f, rc);
		return;
	}
	if ((rc && rc != STOP_PAGE) || p.out.oom) {
		sb_free(&p.out);
		http_error(r, 500, "cannot read the change feed: %s",
			   p.out.oom ? "out of memory" : kyro_feed_errmsg(f));
		kyro_feed_close(f);
		return;
	}
	kyro_feed_close(f);
	char next[24];
	snprintf(next, sizeof next, "%llu", (unsigned long long)p.next);
	sb_printf(&p.out, "],\"next\":%s,\"more\":%s}\n", next,
		  p.more ? "true" : "false");
	http_reply_hdr(r, 200, CT_JSON, &p.out,
		       p.more ? "X-Kyro-Next-Start" : NULL, next);
}

