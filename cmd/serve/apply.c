/*
 * apply.c - applying the primary's changes, from pages and from events
 * (see apply.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cli.h"
#include "apply.h"
#include "json.h"
#include "primary.h"

static int fail(struct applier *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(struct applier *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->err, sizeof a->err, fmt, ap);
	va_end(ap);
	return -1;
}

/* A batch starts at FIRST: it must be the one due, in the open local
 * batch (begun now when none is). */
static int batch_start(struct applier *a, uint64_t first)
{
	if (first != a->next)
		return fail(a, "the primary sent a batch beginning at %llu "
			    "where %llu was due", (unsigned long long)first,
			    (unsigned long long)a->next);
	if (a->open)
		return 0;
	if (kyro_batch_begin_at(a->db, first))
		return fail(a, "%s", kyro_errmsg(a->db));
	a->open = 1;
	return 0;
}

/* A vector change: LEN bytes of float32, copied to where floats may be
 * read (a page's bytes are not aligned).  -1000 when malformed (A->err
 * set), else kyro_vec_put()'s result. */
static int vector(struct applier *a, uint64_t seq, uint64_t key,
		  const void *val, size_t len, uint64_t *got)
{
	if (!len || len % sizeof(float) || len > KYRO_MAX_VALUE) {
		fail(a, "change %llu: a vector of %zu bytes",
		     (unsigned long long)seq, len);
		return -1000;
	}
	if (len > a->vcap) {
		float *v = realloc(a->vbuf, len);
		if (!v) {
			fail(a, "out of memory");
			return -1000;
		}
		a->vbuf = v;
		a->vcap = len;
	}
	memcpy(a->vbuf, val, len);
	return kyro_vec_put(a->db, key, a->vbuf,
			    (uint32_t)(len / sizeof(float)), got);
}

/* One change, SEQ the number it came with. */
static int change(struct applier *a, uint64_t seq, int op, uint64_t key,
		  const void *val, size_t len)
{
	uint64_t got = 0;
	int rc;
	if (seq != a->next)
		return fail(a, "change %llu arrived where %llu was due",
			    (unsigned long long)seq,
			    (unsigned long long)a->next);
	switch (op) {
	case KYRO_CHANGE_PUT:
		rc = kyro_put(a->db, key, val, len, &got);
		break;
	case KYRO_CHANGE_DELETE:
		rc = kyro_delete(a->db, key, &got);
		break;
	case KYRO_CHANGE_VECTOR:
		rc = vector(a, seq, key, val, len, &got);
		if (rc < -100)
			return -1;
		break;
	/* An op this build does not know stops replication rather than be
	 * skipped. */
	default:
		return fail(a, "change %llu has op %d, which this build cannot "
			    "apply; replication stopped",
			    (unsigned long long)seq, op);
	}
	if (rc)
		return fail(a, "cannot apply change %llu: %s",
			    (unsigned long long)seq, kyro_errmsg(a->db));
	if (got != seq)
		return fail(a, "change %llu was written as %llu",
			    (unsigned long long)seq, (unsigned long long)got);
	a->next++;
	a->changes++;
	return 0;
}

void apply_page_begin(struct applier *a, int format)
{
	a->format = format;
	a->want_hdr = format == 1;
	a->in_batch = a->ended = 0;
	a->part_len = 0;
	a->page_next = a->page_last = 0;
}

/* The fixed part of the record due next. */
static size_t fixed_len(const struct applier *a)
{
	return a->want_hdr ? PAGE_HDR : PAGE_CHANGE;
}

/* *LEN: the whole length of the record whose fixed part is at H. */
static int full_len(struct applier *a, const unsigned char *h, size_t *len)
{
	uint32_t v;
	*len = fixed_len(a);
	if (a->want_hdr)
		return 0;
	memcpy(&v, h + 24, 4);
	if (v == PAGE_DELETE)
		return 0;
	if (v > KYRO_MAX_VALUE)
		return fail(a, "a /v1/replicate page holds a value of %lu "
			    "bytes", (unsigned long)v);
	*len += v;
	return 0;
}

/* One whole record at H: format 1's header, a change, or format 2's end
 * record. */
static int record(struct applier *a, const unsigned char *h)
{
	uint64_t seq, last, key;
	uint32_t vlen;
	if (a->want_hdr) {
		memcpy(&a->page_next, h, 8);
		memcpy(&a->page_last, h + 8, 8);
		a->want_hdr = 0;
		return 0;
	}
	memcpy(&seq, h, 8);
	memcpy(&last, h + 8, 8);
	memcpy(&key, h + 16, 8);
	memcpy(&vlen, h + 24, 4);
	int op = h[28];
	if (op == PAGE_END && a->format == 2) {
		if (a->in_batch)
			return fail(a, "a /v1/replicate page ends inside a "
				    "batch");
		a->page_next = seq;
		a->page_last = last;
		a->ended = 1;
		return 0;
	}
	if (last < seq)
		return fail(a, "a /v1/replicate page is malformed at change "
			    "%llu", (unsigned long long)seq);
	if (!a->in_batch && batch_start(a, seq))
		return -1;
	if (change(a, seq, op, key, h + PAGE_CHANGE,
		   vlen == PAGE_DELETE ? 0 : vlen))
		return -1;
	a->in_batch = seq != last;
	if (!a->in_batch)
		a->batches++;
	return 0;
}

/* Gather N bytes of a record cut by a chunk's end into A->part. */
static int gather(struct applier *a, const unsigned char *p, size_t n)
{
	if (a->part_len + n > a->part_cap) {
		size_t cap = a->part_len + n < 4096 ? 4096 : a->part_len + n;
		unsigned char *q = realloc(a->part, cap);
		if (!q)
			return fail(a, "out of memory");
		a->part = q;
		a->part_cap = cap;
	}
	memcpy(a->part + a->part_len, p, n);
	a->part_len += n;
	return 0;
}

int apply_bytes(struct applier *a, const unsigned char *p, size_t n)
{
	while (n) {
		size_t fix = fixed_len(a), need;
		if (a->ended)
			return fail(a, "a /v1/replicate page goes on after its "
				    "end record");
		if (!a->part_len && n >= fix) {
			if (full_len(a, p, &need))
				return -1;
			if (n >= need) {
				if (record(a, p))
					return -1;
				p += need;
				n -= need;
				continue;
			}
		}
		need = a->part_len < fix ? fix : a->part_need;
		size_t k = need - a->part_len < n ? need - a->part_len : n;
		if (gather(a, p, k))
			return -1;
		p += k;
		n -= k;
		if (a->part_len == fix && need == fix) {
			if (full_len(a, a->part, &a->part_need))
				return -1;
			need = a->part_need;
		}
		if (a->part_len == need) {
			a->part_len = 0;
			if (record(a, a->part))
				return -1;
		}
	}
	return 0;
}

int apply_page_end(struct applier *a, uint64_t *last)
{
	if (!a->format || a->want_hdr || a->part_len)
		return fail(a, "a /v1/replicate page ends inside a change");
	if (a->in_batch)
		return fail(a, "a /v1/replicate page ends inside a batch");
	if (a->format == 2 && !a->ended)
		return fail(a, "a /v1/replicate page ended without its end "
			    "record");
	if (a->page_next != a->next)
		return fail(a, "a /v1/replicate page ended at %llu, announced "
			    "%llu", (unsigned long long)a->next,
			    (unsigned long long)a->page_next);
	*last = a->page_last;
	return 0;
}

int apply_commit(struct applier *a, uint64_t *last)
{
	if (!a->open) {
		*last = a->next - 1;
		return 0;
	}
	a->open = 0;
	if (kyro_batch_commit(a->db, last))
		return fail(a, "cannot commit: %s", kyro_errmsg(a->db));
	return 0;
}

void apply_abort(struct applier *a)
{
	if (a->open)
		kyro_batch_abort(a->db);
	a->open = 0;
	a->next -= a->changes;
	a->changes = a->batches = 0;
}

void apply_free(struct applier *a)
{
	free(a->vbuf);
	a->vbuf = NULL;
	a->vcap = 0;
	free(a->part);
	a->part = NULL;
	a->part_cap = a->part_len = 0;
}

/* ---- an SSE event's batch ---- */

/* What a change of an event holds, read before any is applied. */
struct ev_change {
	uint64_t seq, key;
	int op;
	const void *val;
	size_t len;
};

/* Read change J (the I-th of the event's batch FIRST..LAST) into C.
 * 0, or -1 when it is not one this reader takes: a value that is not
 * UTF-8 (base64 in the event) and a vector (its floats as decimals,
 * which a double may not round to the stored float) are read from a
 * page instead. */
static int ev_read(json_t *j, uint64_t first, uint64_t last, size_t i,
		   struct ev_change *c)
{
	uint64_t bf, bl;
	const char *op = json_string_value(json_object_get(j, "op"));
	if (!op || json_get_key(json_object_get(j, "seq"), &c->seq) ||
	    json_get_key(json_object_get(j, "key"), &c->key) ||
	    json_get_key(json_object_get(j, "batch_first"), &bf) ||
	    json_get_key(json_object_get(j, "batch_last"), &bl) ||
	    bf != first || bl != last || c->seq != first + i)
		return -1;
	c->val = NULL;
	c->len = 0;
	if (!strcmp(op, "delete")) {
		c->op = KYRO_CHANGE_DELETE;
		return 0;
	}
	json_t *v = json_object_get(j, "value");
	if (strcmp(op, "put") || !json_is_string(v))
		return -1;
	c->op = KYRO_CHANGE_PUT;
	c->val = json_string_value(v);
	c->len = json_string_length(v);
	return c->len > KYRO_MAX_VALUE ? -1 : 0;
}

int apply_event(struct applier *a, const char *data, size_t len)
{
	char why[128];
	uint64_t first, last;
	int rc = 1;
	json_t *e = json_parse_body(data, len, why, sizeof why);
	json_t *ch = json_object_get(e, "changes");
	if (!e || json_get_key(json_object_get(e, "first"), &first) ||
	    json_get_key(json_object_get(e, "last"), &last) || last < first ||
	    json_array_size(ch) != last - first + 1 ||
	    last - first >= EVENT_MAX) {
		json_decref(e);
		return 1;
	}
	if (last < a->next) {
		json_decref(e);
		return 0; /* held already: pages went past it */
	}
	struct ev_change c[EVENT_MAX];
	size_t n = last - first + 1, k;
	for (k = 0; k < n; k++)
		if (ev_read(json_array_get(ch, k), first, last, k, &c[k]))
			break;
	/* Whole and next, or not at all: the page reads what this cannot
	 * take, checks and all. */
	if (k == n && first == a->next) {
		rc = batch_start(a, first);
		for (k = 0; k < n && !rc; k++)
			rc = change(a, c[k].seq, c[k].op, c[k].key, c[k].val,
				    c[k].len);
		if (!rc)
			a->batches++;
		else
			rc = -1;
	}
	json_decref(e);
	return rc;
}
