/*
 * apply.c - applying the primary's changes (see apply.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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
	/* A vector change will be one more case, applied with its own
	 * call; until then an op this build does not know stops
	 * replication rather than be skipped. */
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

/* Decode base64 S (N bytes) in place; *LEN gets the bytes. */
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

/* One change of an event, in kyro-get --changes --format=json's form. */
static int json_change(struct applier *a, json_t *c)
{
	uint64_t seq, key;
	const char *op = json_string_value(json_object_get(c, "op"));
	if (json_get_key(json_object_get(c, "seq"), &seq) ||
	    json_get_key(json_object_get(c, "key"), &key) || !op)
		return fail(a, "a change after %llu has no seq, key or op",
			    (unsigned long long)a->next - 1);
	if (!strcmp(op, "delete"))
		return change(a, seq, KYRO_CHANGE_DELETE, key, NULL, 0);
	if (strcmp(op, "put"))
		return fail(a, "change %llu has op '%.32s', which this build "
			    "cannot apply; replication stopped",
			    (unsigned long long)seq, op);
	json_t *v = json_object_get(c, "value");
	json_t *b = json_object_get(c, "value_base64");
	size_t len;
	if (json_is_string(v))
		return change(a, seq, KYRO_CHANGE_PUT, key, json_string_value(v),
			      json_string_length(v));
	/* jansson's string is ours to decode in place: it is not used
	 * again. */
	if (json_is_string(b) && !b64_decode((char *)json_string_value(b),
					     json_string_length(b), &len))
		return change(a, seq, KYRO_CHANGE_PUT, key, json_string_value(b),
			      len);
	return fail(a, "change %llu: a put without a valid value",
		    (unsigned long long)seq);
}

int apply_event(struct applier *a, const char *data, size_t len)
{
	char why[200];
	uint64_t first, last;
	int rc = -1;
	json_t *j = json_parse_body(data, len, why, sizeof why);
	json_t *cs = j ? json_object_get(j, "changes") : NULL;
	if (!j || json_get_key(json_object_get(j, "first"), &first) ||
	    json_get_key(json_object_get(j, "last"), &last) ||
	    !json_is_array(cs) || last < first ||
	    json_array_size(cs) != last - first + 1) {
		fail(a, "a /v1/subscribe event is not a batch: %s",
		     j ? "unexpected shape" : why);
		goto out;
	}
	rc = 0;
	if (last < a->next) /* held already: never twice */
		goto out;
	if ((rc = batch_start(a, first)) != 0)
		goto out;
	for (size_t i = 0; !rc && i < json_array_size(cs); i++)
		rc = json_change(a, json_array_get(cs, i));
	if (!rc)
		a->batches++;
out:
	json_decref(j);
	return rc;
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
