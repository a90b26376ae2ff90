/*
 * apply.c - applying the primary's changes (see apply.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
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

int apply_page(struct applier *a, const unsigned char *p, size_t len)
{
	size_t off = 0;
	int in_batch = 0;
	while (off < len) {
		uint64_t seq, last, key;
		uint32_t vlen;
		if (len - off < PAGE_CHANGE)
			return fail(a, "a /v1/replicate page ends inside a "
				    "change");
		memcpy(&seq, p + off, 8);
		memcpy(&last, p + off + 8, 8);
		memcpy(&key, p + off + 16, 8);
		memcpy(&vlen, p + off + 24, 4);
		int op = p[off + 28];
		off += PAGE_CHANGE;
		size_t n = vlen == PAGE_DELETE ? 0 : vlen;
		if (len - off < n || last < seq)
			return fail(a, "a /v1/replicate page is malformed at "
				    "byte %zu", off);
		if (!in_batch && batch_start(a, seq))
			return -1;
		if (change(a, seq, op, key, p + off, n))
			return -1;
		off += n;
		in_batch = seq != last;
		if (!in_batch)
			a->batches++;
	}
	if (in_batch)
		return fail(a, "a /v1/replicate page ends inside a batch");
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
}
