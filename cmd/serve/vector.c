/*
 * vector.c - the vector routes.
 *
 * Inserts are parsed and checked whole in the worker (every component a
 * finite float32, one dimension, the store's when it has one), then go to
 * the group committer as one WOP_FN request: its records are written in
 * the group's batch, so a request is all or nothing, and a request the
 * store still refuses (another request fixed the dimension first) is
 * taken out of the group without failing the others (commit.h).
 *
 * A search runs in the worker on its own reader handle, like every read;
 * its counting, and the recall spot-check, are in vecstats.c.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cli.h"
#include "log.h"
#include "metrics.h"
#include "replica.h"
#include "store.h"
#include "vecjson.h"
#include "vecstats.h"
#include "vector.h"

#define CT_JSON "application/json"
#define MAX_EF 65536
/* As /v1/range: values can make an answer of k results huge. */
#define ANSWER_MAX ((size_t)64 << 20)

static const struct serve_cfg *cfg;

/* ---- parsing ---- */

struct names {
	const char *key, *vec; /* the item's field names */
};
static const struct names native = {"key", "vector"},
			  seed = {"doc_id", "embedding"};

/* Check the array A as a vector; fill OUT when not NULL.  Returns 0, or
 * -1 with WHY set. */
static int parse_vec(const json_t *a, const char *field, float *out,
		     uint32_t *dim, char *why, size_t wl)
{
	if (!json_is_array(a) || !json_array_size(a) ||
	    json_array_size(a) > KYRO_MAX_DIM) {
		snprintf(why, wl, "'%s' must be an array of 1 to %d numbers",
			 field, KYRO_MAX_DIM);
		return -1;
	}
	size_t n = json_array_size(a);
	for (size_t i = 0; i < n; i++) {
		const json_t *x = json_array_get(a, i);
		double d;
		if (json_is_integer(x))
			/* Negative only when json.c rewrote a u64 literal. */
			d = json_integer_value(x) < 0
				    ? (double)(uint64_t)json_integer_value(x)
				    : (double)json_integer_value(x);
		else if (json_is_real(x))
			d = json_real_value(x);
		else {
			snprintf(why, wl, "'%s'[%zu] is not a number", field,
				 i);
			return -1;
		}
		float f = (float)d;
		if (!isfinite(f)) {
			snprintf(why, wl,
				 "'%s'[%zu] is not a finite float32 (%g)",
				 field, i, d);
			return -1;
		}
		if (out)
			out[i] = f;
	}
	*dim = (uint32_t)n;
	return 0;
}

/* Only NAMES' fields (N of them) in J; the first unknown one, or NULL. */
static const char *unknown_field(const json_t *j, const char *const *names,
				 int n)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)j, k, v) {
		int known = 0;
		for (int i = 0; i < n; i++)
			known |= !strcmp(k, names[i]);
		if (!known)
			return k;
	}
	return NULL;
}

/* An item of an insert: the object J.  Returns 0, or the status with WHY
 * set. */
static unsigned check_item(const json_t *j, const struct names *nm,
			   uint32_t *dim, size_t *vlen, char *why, size_t wl)
{
	const char *const fields[] = {nm->key, nm->vec, "value"};
	uint64_t key;
	if (!json_is_object(j)) {
		snprintf(why, wl, "an item must be an object");
		return 400;
	}
	const char *u = unknown_field(j, fields, 3);
	if (u) {
		snprintf(why, wl, "unknown field '%.40s'", u);
		return 400;
	}
	for (int i = 0; i < 2; i++)
		if (!json_object_get(j, fields[i])) {
			snprintf(why, wl, "missing field '%s'", fields[i]);
			return 400;
		}
	if (json_get_key(json_object_get(j, nm->key), &key)) {
		snprintf(why, wl, "'%s' must be an unsigned 64-bit integer",
			 nm->key);
		return 400;
	}
	if (parse_vec(json_object_get(j, nm->vec), nm->vec, NULL, dim, why, wl))
		return 400;
	const json_t *v = json_object_get(j, "value");
	*vlen = 0;
	if (v && !json_is_string(v)) {
		snprintf(why, wl, "'value' must be a string");
		return 400;
	}
	if (v && json_string_length(v) > cfg->max_value) {
		snprintf(why, wl, "the value is larger than %zu bytes",
			 cfg->max_value);
		return 413;
	}
	if (v)
		*vlen = json_string_length(v);
	return 0;
}

/* ---- inserts ---- */

struct vitem {
	uint64_t key;
	const float *vec;
	const char *val; /* NULL: no value given, the key's value stays */
	size_t len;
};

/* One insert request, in one allocation: the items, then their vectors,
 * then their values. */
struct vwrite {
	size_t n;
	uint32_t dim;
	struct vitem it[];
};

static kyro_db *reader(struct req *r)
{
	char err[256];
	int rc;
	kyro_db *db = store_reader(&rc, err, sizeof err);
	if (!db)
		http_error(r, 500, "cannot open the store: %s", err);
	return db;
}

/* From the committer, inside the group's batch. */
static int vwrite_fn(kyro_db *db, struct wreq *w)
{
	const struct vwrite *v = w->val;
	w->records = 0;
	for (size_t i = 0; i < v->n; i++) {
		const struct vitem *it = &v->it[i];
		int rc = kyro_vec_put(db, it->key, it->vec, v->dim, &w->seq);
		if (rc == KYRO_EDIM || rc == EINVAL) {
			w->status = 400;
			snprintf(w->err, sizeof w->err, "%s", kyro_errmsg(db));
			return rc;
		}
		if (!rc && it->val)
			rc = kyro_put(db, it->key, it->val, it->len, &w->seq);
		if (rc)
			return rc;
		w->records += 1 + (it->val != NULL);
	}
	return 0;
}

static void write_done(struct wreq *w, void *arg)
{
	(void)w;
	http_resume(arg);
}

static void write_answer(struct req *r)
{
	if (r->w.status != 200) {
		http_error(r, r->w.status, "%s", r->w.err);
		return;
	}
	const struct vwrite *v = r->w.val;
	vecstats_inserted(v->n);
	struct sbuf b = {0};
	sb_puts(&b, "{\"offset\":");
	sb_u64(&b, r->w.seq);
	if (r->route == R_VEC_INSERT_BATCH)
		sb_printf(&b, ",\"count\":%zu", v->n);
	sb_puts(&b, "}\n");
	http_reply_sb(r, 200, CT_JSON, &b);
}

/* The store's dimension as this thread's handle sees it: a request of
 * another is refused here, before anything is queued. */
static int check_dim(struct req *r, uint32_t dim, const char *what)
{
	uint32_t have = 0;
	kyro_db *db = reader(r);
	if (!db)
		return -1;
	int rc = kyro_vec_dim(db, &have);
	if (rc) {
		http_error(r, 500, "%s", kyro_errmsg(db));
		return -1;
	}
	if (have && have != dim) {
		http_error(r, 400,
			   "%s has %u dimensions; the store's vectors have %u",
			   what, dim, have);
		return -1;
	}
	return 0;
}

/* Copy the checked items of ITEMS (N of them, all of DIM) into one
 * allocation that replaces the request's body (on_completed frees it),
 * and queue it.  The body's text is no longer needed once parsed. */
static void queue_items(struct req *r, json_t *const *items, size_t n,
			uint32_t dim, size_t vbytes, const struct names *nm)
{
	size_t head = sizeof(struct vwrite) + n * sizeof(struct vitem);
	head = (head + 15) & ~(size_t)15;
	size_t fbytes = n * dim * sizeof(float);
	struct vwrite *v = malloc(head + fbytes + vbytes + 1);
	char why[160];
	if (!v) {
		http_error(r, 503, "out of memory");
		return;
	}
	v->n = n;
	v->dim = dim;
	float *f = (float *)((char *)v + head);
	char *val = (char *)f + fbytes;
	for (size_t i = 0; i < n; i++) {
		uint32_t d;
		const json_t *jv = json_object_get(items[i], "value");
		json_get_key(json_object_get(items[i], nm->key), &v->it[i].key);
		parse_vec(json_object_get(items[i], nm->vec), nm->vec, f, &d,
			  why, sizeof why);
		v->it[i].vec = f;
		f += dim;
		v->it[i].val = NULL;
		v->it[i].len = 0;
		if (jv) {
			size_t len = json_string_length(jv);
			memcpy(val, json_string_value(jv), len);
			v->it[i].val = val;
			v->it[i].len = len;
			val += len;
		}
	}
	free(r->body);
	r->body = (char *)v;
	r->body_len = 0;
	r->body_cap = 0;

	const char *failed = commit_failure();
	if (failed) {
		http_error(r, 503,
			   "writes are disabled until the server restarts: %s",
			   failed);
		return;
	}
	r->w = (struct wreq){.op = WOP_FN, .val = v, .write = vwrite_fn,
			     .done = write_done, .arg = r};
	http_suspend(r, write_answer);
	int rc = commit_submit(&r->w);
	if (rc) {
		r->w.status = (unsigned)rc;
		http_resume(r);
	}
}

static json_t *parse_body(struct req *r)
{
	char why[200];
	json_t *j = json_parse_body_signed(r->body ? r->body : "", r->body_len,
					   why, sizeof why);
	if (!j)
		http_error(r, 400, "%s", why);
	return j;
}

/* A replica's store is written by its follower alone (replica.c). */
static int refused_on_replica(struct req *r)
{
	if (!replica_enabled())
		return 0;
	replica_refuse(r);
	return 1;
}

static void insert_one(struct req *r, const struct names *nm)
{
	char why[200];
	uint32_t dim;
	size_t vlen;
	if (refused_on_replica(r))
		return;
	json_t *j = parse_body(r);
	if (!j)
		return;
	unsigned st = check_item(j, nm, &dim, &vlen, why, sizeof why);
	if (st)
		http_error(r, st, "%s", why);
	else if (!check_dim(r, dim, "the vector"))
		queue_items(r, &j, 1, dim, vlen, nm);
	json_decref(j);
}

void vector_insert(struct req *r)
{
	insert_one(r, &native);
}
void vector_insert_seed(struct req *r)
{
	insert_one(r, &seed);
}

void vector_insert_batch(struct req *r)
{
	static const char *const fields[] = {"items"};
	char why[200], what[40];
	uint32_t dim = 0, d;
	size_t vbytes = 0, vlen;
	json_t **items = NULL;
	if (refused_on_replica(r))
		return;
	json_t *j = parse_body(r);
	if (!j)
		return;
	json_t *a = json_object_get(j, "items");
	size_t n = json_array_size(a);
	const char *u = unknown_field(j, fields, 1);
	if (u) {
		http_error(r, 400, "unknown field '%.40s'", u);
		goto out;
	}
	if (!json_is_array(a) || !n) {
		http_error(r, 400, "'items' must be an array of 1 to %u items",
			   cfg->max_batch_keys);
		goto out;
	}
	if (n > cfg->max_batch_keys) {
		http_error(r, 413, "at most %u items per batch",
			   cfg->max_batch_keys);
		goto out;
	}
	if (!(items = malloc(n * sizeof *items))) {
		http_error(r, 503, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		items[i] = json_array_get(a, i);
		unsigned st = check_item(items[i], &native, &d, &vlen, why,
					 sizeof why);
		if (!st && i && d != dim) {
			snprintf(
				why, sizeof why,
				"the vector has %u dimensions; items[0]'s has %u",
				d, dim);
			st = 400;
		}
		if (st) {
			http_error(r, st, "items[%zu]: %s", i, why);
			goto out;
		}
		dim = d;
		vbytes += vlen;
	}
	snprintf(what, sizeof what, "every vector");
	if (!check_dim(r, dim, what))
		queue_items(r, items, n, dim, vbytes, &native);
out:
	free(items);
	json_decref(j);
}

void vector_init(const struct serve_cfg *c)
{
	cfg = c;
	vecstats_start(c);
}

void vector_stop(void)
{
	vecstats_stop();
}

/* ---- search ---- */

static int metric_of(const char *s)
{
	return !strcmp(s, "l2")	      ? KYRO_METRIC_L2
	       : !strcmp(s, "ip")     ? KYRO_METRIC_IP
	       : !strcmp(s, "cosine") ? KYRO_METRIC_COSINE
				      : -1;
}

/* An integer field from LO to HI, DEF when absent.  -1 with WHY set. */
static int int_field(const json_t *j, const char *name, uint64_t lo,
		     uint64_t hi, uint64_t def, uint64_t *v, char *why,
		     size_t wl)
{
	const json_t *x = json_object_get(j, name);
	*v = def;
	if (x && (json_get_key(x, v) || *v < lo || *v > hi)) {
		snprintf(why, wl, "'%s' must be an integer from %llu to %llu",
			 name, (unsigned long long)lo, (unsigned long long)hi);
		return -1;
	}
	return 0;
}

static int bool_field(const json_t *j, const char *name, int *v, char *why,
		      size_t wl)
{
	const json_t *x = json_object_get(j, name);
	*v = x && json_is_true(x);
	if (x && !json_is_boolean(x)) {
		snprintf(why, wl, "'%s' must be true or false", name);
		return -1;
	}
	return 0;
}

static int range_field(const json_t *j, struct kyro_vec_query *q, char *why,
		       size_t wl)
{
	static const char *const fields[] = {"lo", "hi"};
	const json_t *x = json_object_get(j, "range");
	q->lo = 0;
	q->hi = UINT64_MAX;
	if (!x)
		return 0;
	const char *u = json_is_object(x) ? unknown_field(x, fields, 2) : NULL;
	if (!json_is_object(x) || u) {
		snprintf(why, wl,
			 "'range' must be an object {\"lo\":A,\"hi\":B}");
		return -1;
	}
	if (int_field(x, "lo", 0, UINT64_MAX, 0, &q->lo, why, wl) ||
	    int_field(x, "hi", 0, UINT64_MAX, UINT64_MAX, &q->hi, why, wl))
		return -1;
	if (q->lo > q->hi) {
		snprintf(why, wl, "the range's 'lo' is past its 'hi'");
		return -1;
	}
	return 0;
}

/* Parse a search body into Q (its vector malloc'd into *VEC). */
static int parse_search(const json_t *j, const char *vname,
			struct kyro_vec_query *q, int *with_values, float **vec,
			char *why, size_t wl)
{
	const char *const fields[] = {vname, "k", "ef", "range", "exact",
				      "with_values", "metric"};
	uint64_t k, ef;
	int exact;
	const char *u = unknown_field(j, fields, 7);
	const json_t *m = json_object_get(j, "metric");
	*q = (struct kyro_vec_query){0};
	if (u) {
		snprintf(why, wl, "unknown field '%.40s'", u);
		return -1;
	}
	if (!json_object_get(j, vname)) {
		snprintf(why, wl, "missing field '%s'", vname);
		return -1;
	}
	if (parse_vec(json_object_get(j, vname), vname, NULL, &q->dim, why,
		      wl) ||
	    int_field(j, "k", 1, KYRO_VEC_MAX_K, 10, &k, why, wl) ||
	    int_field(j, "ef", 1, MAX_EF, 0, &ef, why, wl) ||
	    range_field(j, q, why, wl) ||
	    bool_field(j, "exact", &exact, why, wl) ||
	    bool_field(j, "with_values", with_values, why, wl))
		return -1;
	if (m && (!json_is_string(m) || metric_of(json_string_value(m)) < 0)) {
		snprintf(why, wl,
			 "'metric' must be \"l2\", \"ip\" or \"cosine\"");
		return -1;
	}
	q->metric = m ? metric_of(json_string_value(m)) : 0;
	q->k = (uint32_t)k;
	q->ef = (uint32_t)ef;
	q->flags = exact ? KYRO_VEC_EXACT : 0;
	if (!(*vec = malloc(q->dim * sizeof **vec))) {
		snprintf(why, wl, "out of memory");
		return -1;
	}
	parse_vec(json_object_get(j, vname), vname, *vec, &q->dim, why, wl);
	q->vec = *vec;
	return 0;
}

static void put_dist(struct sbuf *b, float d)
{
	/* A sum of finite squares can still overflow float32. */
	if (isfinite(d))
		sb_float(b, d);
	else
		sb_puts(b, "null");
}

/* The answer; values read from DB one by one, each copied before the
 * next call on DB. */
static int answer(struct req *r, kyro_db *db, const struct kyro_vec_hit *h,
		  size_t n, int with_values, int exact, uint32_t ef)
{
	struct sbuf b = {0};
	sb_reserve(&b, 64 + n * 48);
	sb_puts(&b, "{\"results\":[");
	for (size_t i = 0; i < n; i++) {
		sb_puts(&b, i ? ",{\"key\":" : "{\"key\":");
		sb_u64(&b, h[i].key);
		sb_puts(&b, ",\"distance\":");
		put_dist(&b, h[i].dist);
		if (with_values) {
			const void *v;
			size_t len;
			int rc = kyro_get(db, h[i].key, &v, &len);
			if (rc == KYRO_ENOTFOUND) {
				sb_puts(&b, ",\"value\":null");
			} else if (rc) {
				sb_free(&b);
				http_error(r, 500, "%s", kyro_errmsg(db));
				return -1;
			} else {
				sb_put(&b, ",", 1);
				sb_json_value_field(&b, v, len);
			}
			if (b.len > ANSWER_MAX) {
				sb_free(&b);
				http_error(r, 400, "the answer with values is "
					   "over %zu MiB: ask for fewer results "
					   "or without values", ANSWER_MAX >> 20);
				return -1;
			}
		}
		sb_put(&b, "}", 1);
	}
	if (exact) {
		sb_puts(&b, "],\"exact\":true}\n");
	} else {
		sb_puts(&b, "],\"exact\":false,\"ef\":");
		sb_u64(&b, ef);
		sb_puts(&b, "}\n");
	}
	if (b.oom) {
		sb_free(&b);
		http_error(r, 500, "out of memory");
		return -1;
	}
	http_reply_sb(r, 200, CT_JSON, &b);
	return 0;
}

static void search(struct req *r, const char *vname)
{
	char why[200];
	struct kyro_vec_query q;
	struct kyro_vec_info vi;
	struct kyro_vec_hit *hits = NULL;
	float *vec = NULL;
	size_t n = 0;
	int with_values;
	kyro_db *db;
	json_t *j = NULL;
	if (vecjson_search(r->body ? r->body : "", r->body_len, vname, MAX_EF,
			   &q, &with_values, &vec)) {
		vecstats_fast_parsed();
	} else {
		if (!(j = parse_body(r)))
			return;
		if (parse_search(j, vname, &q, &with_values, &vec, why,
				 sizeof why)) {
			http_error(r, 400, "%s", why);
			goto out;
		}
	}
	if (!(hits = malloc(q.k * sizeof *hits))) {
		http_error(r, 503, "out of memory");
		goto out;
	}
	if (!(db = reader(r)))
		goto out;
	int rc = kyro_vec_search(db, &q, hits, &n);
	if (rc == KYRO_EDIM) {
		uint32_t have = 0;
		kyro_vec_dim(db, &have);
		http_error(
			r, 400,
			"the query has %u dimensions; the store's vectors have %u",
			q.dim, have);
		goto out;
	}
	if (rc) {
		http_error(r, rc == EINVAL ? 400 : 500, "%s", kyro_errmsg(db));
		goto out;
	}
	/* After the search, which brought the handle up to date. */
	rc = kyro_vec_info(db, &vi);
	int exact = rc || (q.flags & KYRO_VEC_EXACT) || !vi.indexed ||
		    (q.metric && q.metric != vi.metric);
	uint32_t ef = q.ef ? q.ef : KYRO_VEC_EF_DEFAULT;
	if (ef < q.k)
		ef = q.k;
	vecstats_search(&q, hits, n, exact, ef);
	answer(r, db, hits, n, with_values, exact, ef);
out:
	free(hits);
	free(vec);
	json_decref(j);
}

void vector_search(struct req *r)
{
	search(r, "vector");
}
void vector_search_seed(struct req *r)
{
	search(r, "query_embedding");
}

/* ---- the build job ---- */

int vector_build_params(struct req *r, struct job_params *p)
{
	const char *a;
	uint64_t v;
	*p = (struct job_params){0};
	if ((a = http_arg(r, "m")) &&
	    (cli_parse_key(a, strlen(a), &v) || v < 2 || v > 128)) {
		http_error(r, 400, "?m= must be an integer from 2 to 128");
		return -1;
	}
	p->vec.m = a ? (uint32_t)v : 0;
	if ((a = http_arg(r, "ef_construction")) &&
	    (cli_parse_key(a, strlen(a), &v) || v < 1 || v > MAX_EF)) {
		http_error(r, 400,
			   "?ef_construction= must be an integer from 1 to %d",
			   MAX_EF);
		return -1;
	}
	p->vec.ef_construction = a ? (uint32_t)v : 0;
	if ((a = http_arg(r, "metric")) && metric_of(a) < 0) {
		http_error(r, 400, "?metric= must be l2, ip or cosine");
		return -1;
	}
	p->vec.metric = a ? metric_of(a) : 0;
	if ((a = http_arg(r, "threads")) &&
	    (cli_parse_key(a, strlen(a), &v) || v < 1 || v > 256)) {
		http_error(r, 400,
			   "?threads= must be an integer from 1 to 256");
		return -1;
	}
	p->vec.threads = a ? (unsigned)v : 0;
	p->vectors = 1;
	return 0;
}
