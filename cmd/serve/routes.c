/*
 * routes.c - the v1 API: one handler per route.
 *
 * Reads run in the worker thread on its own handle (store.c) and copy the
 * value into the answer before the next call on that handle.  Writes go
 * to the group committer (commit.c) and suspend the connection until
 * their group is committed.  docs/API.md and docs/API-FEED.md are the
 * contract.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cli.h"
#include "commit.h"
#include "feed.h"
#include "jobs.h"
#include "metrics.h"
#include "primary.h"
#include "replica.h"
#include "routes.h"
#include "store.h"
#include "vector.h"

#ifndef KYRO_GIT_COMMIT
#define KYRO_GIT_COMMIT "unknown"
#endif

#define CT_JSON "application/json"
#define CT_RAW "application/octet-stream"
#define SMALL_BODY 65536           /* routes that take no body */
#define RANGE_BYTES ((size_t)64 << 20)
#define SCAN_STOP 0x7ffffff        /* our own kyro_scan stop value */

static const struct serve_cfg *cfg;

/* ---- helpers ---- */

static kyro_db *reader(struct req *r)
{
	char err[256];
	int rc;
	kyro_db *db = store_reader(&rc, err, sizeof err);
	if (!db)
		http_error(r, 500, "cannot open the store: %s", err);
	return db;
}

static int parse_key_text(const char *s, uint64_t *key)
{
	return !s || cli_parse_key(s, strlen(s), key);
}

/* The key of a /prefix/{key} path; answers 400 itself when invalid. */
static int path_key(struct req *r, uint64_t *key)
{
	if (parse_key_text(r->rest, key)) {
		http_error(r, 400, "invalid key '%.40s': a decimal or 0x-hexadecimal u64", r->rest);
		return -1;
	}
	return 0;
}

static void offset_answer(struct req *r, unsigned status, uint64_t seq)
{
	struct sbuf b = {0};
	sb_puts(&b, "{\"offset\":");
	sb_u64(&b, seq);
	sb_puts(&b, "}\n");
	http_reply_sb(r, status, CT_JSON, &b);
}

/* ---- writes ---- */

static void write_done(struct wreq *w, void *arg)
{
	(void)w;
	http_resume(arg);
}

static void write_answer(struct req *r)
{
	if (r->w.status == 200)
		offset_answer(r, 200, r->w.seq);
	else
		http_error(r, r->w.status, "%s", r->w.err);
}

/* Queue a write; VAL must live as long as R (it points into R's body). */
static void submit(struct req *r, int op, uint64_t key, const void *val, size_t len)
{
	if (replica_enabled()) {
		replica_refuse(r);
		return;
	}
	const char *failed = commit_failure();
	if (failed) {
		http_error(r, 503, "writes are disabled until the server restarts: %s", failed);
		return;
	}
	r->w = (struct wreq){.op = op, .key = key, .val = val, .len = len,
			     .done = write_done, .arg = r};
	http_suspend(r, write_answer);
	int rc = commit_submit(&r->w);
	if (rc) {
		r->w.status = (unsigned)rc;
		http_resume(r);
	}
}

/* Parse a body that must be an object with exactly the fields NAMES. */
static json_t *body_object(struct req *r, const char *const *names, int n)
{
	char why[200];
	json_t *j = json_parse_body(r->body ? r->body : "", r->body_len, why, sizeof why);
	if (!j) {
		http_error(r, 400, "%s", why);
		return NULL;
	}
	const char *k;
	json_t *v;
	json_object_foreach(j, k, v) {
		int known = 0;
		for (int i = 0; i < n; i++)
			known |= !strcmp(k, names[i]);
		if (!known) {
			http_error(r, 400, "unknown field '%.40s'", k);
			json_decref(j);
			return NULL;
		}
	}
	for (int i = 0; i < n; i++)
		if (!json_object_get(j, names[i])) {
			http_error(r, 400, "missing field '%s'", names[i]);
			json_decref(j);
			return NULL;
		}
	return j;
}

static int body_key(struct req *r, json_t *j, uint64_t *key)
{
	if (json_get_key(json_object_get(j, "key"), key)) {
		http_error(r, 400, "'key' must be an unsigned 64-bit integer");
		return -1;
	}
	return 0;
}

static void h_put(struct req *r)
{
	static const char *const names[] = {"key", "value"};
	uint64_t key;
	json_t *j = body_object(r, names, 2);
	if (!j)
		return;
	json_t *v = json_object_get(j, "value");
	if (body_key(r, j, &key))
		goto out;
	if (!json_is_string(v)) {
		http_error(r, 400, "'value' must be a string (PUT /v1/kv/{key} takes raw bytes)");
		goto out;
	}
	size_t len = json_string_length(v);
	if (len > cfg->max_value) {
		http_error(r, 413, "the value is larger than %zu bytes", cfg->max_value);
		goto out;
	}
	/* A decoded JSON string is never longer than its text, so the body
	 * buffer, which lives as long as the request, can hold it. */
	memcpy(r->body, json_string_value(v), len);
	submit(r, WOP_PUT, key, r->body, len);
out:
	json_decref(j);
}

static void h_delete(struct req *r)
{
	static const char *const names[] = {"key"};
	uint64_t key;
	json_t *j = body_object(r, names, 1);
	if (j && !body_key(r, j, &key))
		submit(r, WOP_DELETE, key, NULL, 0);
	json_decref(j);
}

static void h_kv_put(struct req *r)
{
	uint64_t key;
	if (!path_key(r, &key))
		submit(r, WOP_PUT, key, r->body ? r->body : "", r->body_len);
}

static void h_kv_delete(struct req *r)
{
	uint64_t key;
	if (!path_key(r, &key))
		submit(r, WOP_DELETE, key, NULL, 0);
}

/* ---- reads ---- */

static void h_lookup(struct req *r)
{
	uint64_t key;
	const void *v;
	size_t len;
	if (parse_key_text(http_arg(r, "key"), &key)) {
		http_error(r, 400, "?key= must be a decimal or 0x-hexadecimal u64");
		return;
	}
	kyro_db *db = reader(r);
	if (!db)
		return;
	int rc = kyro_get(db, key, &v, &len);
	if (rc == KYRO_ENOTFOUND) {
		http_error(r, 404, "not found");
		return;
	}
	if (rc) {
		http_error(r, 500, "%s", kyro_errmsg(db));
		return;
	}
	struct sbuf b = {0};
	sb_puts(&b, "{\"key\":");
	sb_u64(&b, key);
	sb_puts(&b, ",");
	sb_json_value_field(&b, v, len);
	sb_puts(&b, "}\n");
	http_reply_sb(r, 200, CT_JSON, &b);
}

/* GET /v1/get_fast/{key} and GET /v1/kv/{key}: the raw bytes. */
static void h_get_raw(struct req *r)
{
	uint64_t key;
	const void *v;
	size_t len;
	if (path_key(r, &key))
		return;
	kyro_db *db = reader(r);
	if (!db)
		return;
	int rc = kyro_get(db, key, &v, &len);
	if (rc == KYRO_ENOTFOUND)
		http_reply(r, 404, NULL, "", 0);
	else if (rc)
		http_error(r, 500, "%s", kyro_errmsg(db));
	else
		http_reply(r, 200, CT_RAW, v, len);
}

static void h_lookup_fast(struct req *r)
{
	uint64_t key, seq;
	if (path_key(r, &key))
		return;
	kyro_db *db = reader(r);
	if (!db)
		return;
	int rc = kyro_get_seq(db, key, &seq);
	if (rc == KYRO_ENOTFOUND) {
		http_reply(r, 404, NULL, "", 0);
		return;
	}
	if (rc) {
		http_error(r, 500, "%s", kyro_errmsg(db));
		return;
	}
	unsigned char le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (unsigned char)(seq >> (8 * i));
	http_reply(r, 200, CT_RAW, le, sizeof le);
}

static void h_lookup_batch(struct req *r)
{
	static const char *const names[] = {"keys"};
	enum { CHUNK = 128 };
	struct kyro_item items[CHUNK];
	json_t *j = body_object(r, names, 1);
	if (!j)
		return;
	json_t *keys = json_object_get(j, "keys");
	struct sbuf b = {0};
	kyro_db *db;
	size_t n = json_array_size(keys);
	if (!json_is_array(keys)) {
		http_error(r, 400, "'keys' must be an array");
		goto out;
	}
	if (n > cfg->max_batch_keys) {
		http_error(r, 413, "at most %u keys per batch", cfg->max_batch_keys);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (json_get_key(json_array_get(keys, i), &items[0].key)) {
			http_error(r, 400, "keys[%zu] is not an unsigned 64-bit integer", i);
			goto out;
		}
	if (!(db = reader(r)))
		goto out;
	sb_reserve(&b, n * 16 + 16);
	sb_puts(&b, "{\"values\":[");
	for (size_t i = 0; i < n; i += CHUNK) {
		size_t m = n - i < CHUNK ? n - i : CHUNK;
		for (size_t k = 0; k < m; k++)
			json_get_key(json_array_get(keys, i + k), &items[k].key);
		int rc = kyro_get_batch(db, items, m);
		if (rc) {
			sb_free(&b);
			http_error(r, 500, "%s", kyro_errmsg(db));
			goto out;
		}
		/* Copy out before the next call on DB invalidates values. */
		for (size_t k = 0; k < m; k++) {
			if (i + k)
				sb_put(&b, ",", 1);
			const struct kyro_item *it = &items[k];
			if (it->rc)
				sb_puts(&b, "null");
			else if (cli_is_utf8(it->val, it->len))
				sb_json_str(&b, it->val, it->len);
			else {
				sb_puts(&b, "{");
				sb_json_value_field(&b, it->val, it->len);
				sb_puts(&b, "}");
			}
		}
	}
	sb_puts(&b, "]}\n");
	http_reply_sb(r, 200, CT_JSON, &b);
out:
	json_decref(j);
}

struct range_state {
	struct sbuf out;
	uint64_t count, limit, next;
	int more;
};

static int range_cb(void *arg, uint64_t key, const void *v, size_t len)
{
	struct range_state *s = arg;
	if (s->count == s->limit || s->out.len >= RANGE_BYTES) {
		s->more = 1;
		s->next = key;
		return SCAN_STOP;
	}
	sb_puts(&s->out, "{\"key\":");
	sb_u64(&s->out, key);
	sb_put(&s->out, ",", 1);
	sb_json_value_field(&s->out, v, len);
	sb_puts(&s->out, "}\n");
	s->count++;
	return s->out.oom ? SCAN_STOP : 0;
}

static void h_range(struct req *r)
{
	uint64_t lo = 0, hi = UINT64_MAX, limit = 1000;
	const char *a;
	if ((a = http_arg(r, "start")) && parse_key_text(a, &lo)) {
		http_error(r, 400, "?start= must be a u64");
		return;
	}
	if ((a = http_arg(r, "end")) && parse_key_text(a, &hi)) {
		http_error(r, 400, "?end= must be a u64");
		return;
	}
	if ((a = http_arg(r, "limit")) && (parse_key_text(a, &limit) || limit == 0)) {
		http_error(r, 400, "?limit= must be a positive integer");
		return;
	}
	if (limit > cfg->max_range) {
		http_error(r, 400, "?limit= is at most %u", cfg->max_range);
		return;
	}
	if (lo > hi) {
		http_error(r, 400, "?start= is past ?end=");
		return;
	}
	kyro_db *db = reader(r);
	if (!db)
		return;
	struct range_state s = {.limit = limit};
	int rc = kyro_scan(db, lo, hi, range_cb, &s);
	if (s.out.oom) {
		sb_free(&s.out);
		http_error(r, 500, "out of memory");
		return;
	}
	if (rc && rc != SCAN_STOP) {
		sb_free(&s.out);
		http_error(r, 500, "%s", kyro_errmsg(db));
		return;
	}
	char next[24];
	snprintf(next, sizeof next, "%llu", (unsigned long long)s.next);
	http_reply_hdr(r, 200, "application/x-ndjson", &s.out,
		       s.more ? "X-Kyro-Next-Start" : NULL, next);
}

static void h_offset(struct req *r)
{
	uint64_t seq;
	kyro_db *db = reader(r);
	if (!db)
		return;
	/* Not the view's: a handle that would replay a large write by
	 * another process first makes a poll of the position costly. */
	int rc = kyro_committed_seq(db, &seq);
	if (rc)
		http_error(r, 500, "%s", kyro_errmsg(db));
	else
		offset_answer(r, 200, seq);
}

/* ---- jobs ---- */

static int route_job(int route)
{
	return route == R_SNAPSHOT ? JOB_SNAPSHOT : route == R_RMI_BUILD ? JOB_RMI_BUILD
	       : route == R_VEC_BUILD ? JOB_VEC_BUILD : JOB_WARMUP;
}

/* What the job is asked: /v1/vector/build's parameters, and
 * /v1/snapshot?vectors=1.  Answers 400 itself. */
static int job_params(struct req *r, int kind, struct job_params *p)
{
	const char *v = http_arg(r, "vectors");
	*p = (struct job_params){0};
	if (kind == JOB_VEC_BUILD)
		return vector_build_params(r, p);
	if (kind != JOB_SNAPSHOT || !v)
		return 0;
	if (strcmp(v, "1") && strcmp(v, "0")) {
		http_error(r, 400, "?vectors= is 0 or 1");
		return -1;
	}
	p->vectors = !strcmp(v, "1");
	return 0;
}

static void job_done(struct job_waiter *w, void *arg)
{
	(void)w;
	http_resume(arg);
}

static void job_refused(struct req *r, int kind, int status)
{
	if (status == 409)
		http_error(r, 409, "a %s job is already running (job %llu)", jobs_name(kind),
			   (unsigned long long)r->job_id);
	else if (status == 503)
		http_error(r, 503, "the server is stopping");
	else
		http_error(r, 500, "cannot start the %s job", jobs_name(kind));
}

static void job_answer(struct req *r)
{
	if (!r->jw.json) {
		job_refused(r, route_job(r->route), (int)r->jw.status);
		return;
	}
	struct sbuf b = {.p = r->jw.json, .len = strlen(r->jw.json)};
	r->jw.json = NULL;
	http_reply_sb(r, (unsigned)r->jw.status, CT_JSON, &b);
}

static void h_job(struct req *r)
{
	int kind = route_job(r->route);
	/* A replica's follower alone writes its store, snapshots included
	 * (replica.c): no job may commit across a bootstrap's swap. */
	if (replica_enabled() && kind != JOB_WARMUP) {
		replica_refuse(r);
		return;
	}
	const char *wait = http_arg(r, "wait");
	struct job_params p;
	if (wait && strcmp(wait, "1") && strcmp(wait, "0")) {
		http_error(r, 400, "?wait= is 0 or 1");
		return;
	}
	if (job_params(r, kind, &p))
		return;
	if (wait && !strcmp(wait, "1")) {
		r->jw = (struct job_waiter){.done = job_done, .arg = r};
		http_suspend(r, job_answer);
		int rc = jobs_start_with(kind, &p, &r->jw, &r->job_id);
		if (rc) {
			r->jw.status = rc;
			http_resume(r);
		}
		return;
	}
	int rc = jobs_start_with(kind, &p, NULL, &r->job_id);
	if (rc) {
		job_refused(r, kind, rc);
		return;
	}
	struct sbuf b = {0};
	sb_printf(&b, "{\"job\":%llu,\"kind\":\"%s\"}\n", (unsigned long long)r->job_id,
		  jobs_name(kind));
	http_reply_sb(r, 202, CT_JSON, &b);
}

/* ---- operations ---- */

static void h_health(struct req *r)
{
	if (replica_enabled()) {
		replica_health(r);
		return;
	}
	const char *failed = commit_failure();
	if (failed)
		http_error(r, 503, "writes are disabled until the server restarts: %s", failed);
	else
		http_reply(r, 200, CT_JSON, "{\"status\":\"ok\"}\n", 16);
}

static void h_build_info(struct req *r)
{
	struct kyro_index_info info = {0};
	kyro_db *db = reader(r);
	if (!db)
		return;
	int rc = kyro_index_info(db, &info);
	const char *index = rc ? "unknown" : info.kind == KYRO_INDEX_RMI ? "rmi"
				: info.kind == KYRO_INDEX_BINARY ? "binary" : "none";
	struct sbuf b = {0};
	sb_puts(&b, "{\"version\":\"" KYRO_VERSION_STRING "\",\"git_commit\":");
	sb_json_str(&b, KYRO_GIT_COMMIT, strlen(KYRO_GIT_COMMIT));
	sb_puts(&b, ",\"build_date\":\"" __DATE__ " " __TIME__ "\",\"compiler\":");
	sb_json_str(&b, __VERSION__, strlen(__VERSION__));
	sb_puts(&b, ",\"simd\":");
	const char *simd = !rc && info.simd ? info.simd : "unknown";
	sb_json_str(&b, simd, strlen(simd));
	sb_printf(&b, ",\"index\":\"%s\",\"libmicrohttpd\":", index);
	const char *mhd = MHD_get_version();
	sb_json_str(&b, mhd, strlen(mhd));
	sb_puts(&b, ",\"jansson\":\"" JANSSON_VERSION "\"}\n");
	http_reply_sb(r, 200, CT_JSON, &b);
}

static void h_metrics(struct req *r)
{
	/* A handle sees other processes' commits, snapshots and indexes only
	 * when it next looks: look now, so the gauges are not as old as this
	 * thread's last read.  They are the largest over every handle, and
	 * this one is now the newest. */
	uint64_t seq;
	kyro_db *db = reader(r);
	if (!db)
		return;
	if (kyro_last_seq(db, &seq)) {
		http_error(r, 500, "%s", kyro_errmsg(db));
		return;
	}
	struct sbuf b = {0};
	sb_reserve(&b, 16384);
	metrics_render(&b, http_connections(), http_inflight());
	http_reply_sb(r, 200, "text/plain; version=0.0.4; charset=utf-8", &b);
}

/* ---- the table ---- */

enum { NO_BODY, JSON_BODY, RAW_BODY, BATCH_BODY, VEC_BODY, VEC_QUERY, VEC_BATCH };

struct route_def {
	const char *path;
	int prefix;          /* PATH is a prefix; the rest is {key} */
	const char *method;
	int route;
	route_fn fn;
	int body;
	int public;
};

static const struct route_def defs[] = {
	{"/v1/put", 0, "POST", R_PUT, h_put, JSON_BODY, 0},
	{"/v1/delete", 0, "POST", R_DELETE, h_delete, JSON_BODY, 0},
	{"/v1/lookup", 0, "GET", R_LOOKUP, h_lookup, NO_BODY, 0},
	{"/v1/get_fast/", 1, "GET", R_GET_FAST, h_get_raw, NO_BODY, 0},
	{"/v1/lookup_fast/", 1, "GET", R_LOOKUP_FAST, h_lookup_fast, NO_BODY, 0},
	{"/v1/kv/", 1, "GET", R_KV_GET, h_get_raw, NO_BODY, 0},
	{"/v1/kv/", 1, "PUT", R_KV_PUT, h_kv_put, RAW_BODY, 0},
	{"/v1/kv/", 1, "DELETE", R_KV_DELETE, h_kv_delete, NO_BODY, 0},
	{"/v1/lookup_batch", 0, "POST", R_LOOKUP_BATCH, h_lookup_batch, BATCH_BODY, 0},
	{"/v1/range", 0, "GET", R_RANGE, h_range, NO_BODY, 0},
	{"/v1/offset", 0, "GET", R_OFFSET, h_offset, NO_BODY, 0},
	{"/v1/snapshot", 0, "POST", R_SNAPSHOT, h_job, NO_BODY, 0},
	{"/v1/rmi/build", 0, "POST", R_RMI_BUILD, h_job, NO_BODY, 0},
	{"/v1/warmup", 0, "POST", R_WARMUP, h_job, NO_BODY, 0},
	{"/v1/replay", 0, "GET", R_REPLAY, feed_replay, NO_BODY, 0},
	{"/v1/subscribe", 0, "GET", R_SUBSCRIBE, feed_subscribe, NO_BODY, 0},
	{"/v1/vector/insert", 0, "POST", R_VEC_INSERT, vector_insert, VEC_BODY, 0},
	{"/v1/vector/insert_batch", 0, "POST", R_VEC_INSERT_BATCH, vector_insert_batch, VEC_BATCH, 0},
	{"/v1/vector/search", 0, "POST", R_VEC_SEARCH, vector_search, VEC_QUERY, 0},
	{"/v1/vector/build", 0, "POST", R_VEC_BUILD, h_job, NO_BODY, 0},
	{"/v1/insert", 0, "POST", R_INSERT, vector_insert_seed, VEC_BODY, 0},
	{"/v1/search", 0, "POST", R_SEARCH, vector_search_seed, VEC_QUERY, 0},
	{"/v1/image", 0, "GET", R_IMAGE, primary_image, NO_BODY, 0},
	{"/v1/replicate", 0, "GET", R_REPLICATE, primary_replicate, NO_BODY, 0},
	{"/health", 0, "GET", R_HEALTH, h_health, NO_BODY, 1},
	{"/build_info", 0, "GET", R_BUILD_INFO, h_build_info, NO_BODY, 0},
	{"/metrics", 0, "GET", R_METRICS, h_metrics, NO_BODY, 0},
};
#define NDEFS (sizeof defs / sizeof defs[0])

void routes_init(const struct serve_cfg *c)
{
	cfg = c;
	primary_init(c);
}

static size_t body_limit(int kind)
{
	switch (kind) {
	case RAW_BODY: return cfg->max_value;
	case JSON_BODY: return cfg->max_value + SMALL_BODY;
	case BATCH_BODY: return (size_t)cfg->max_batch_keys * 24 + SMALL_BODY;
	case VEC_BODY: return cfg->max_value + SMALL_BODY + VEC_TEXT_MAX;
	case VEC_QUERY: return SMALL_BODY + VEC_TEXT_MAX;
	case VEC_BATCH: return cfg->max_vec_batch;
	}
	return SMALL_BODY;
}

int routes_match(const char *method, const char *path, struct route_match *m)
{
	memset(m, 0, sizeof *m);
	m->route = R_OTHER;
	m->body_limit = SMALL_BODY;
	/* HEAD is GET without the body; libmicrohttpd drops the body. */
	const char *want = strcmp(method, "HEAD") ? method : "GET";
	int found = 0;
	for (size_t i = 0; i < NDEFS; i++) {
		const struct route_def *d = &defs[i];
		size_t n = strlen(d->path);
		const char *rest = NULL;
		if (d->prefix) {
			if (strncmp(path, d->path, n) || !path[n] || strchr(path + n, '/'))
				continue;
			rest = path + n;
		} else if (strcmp(path, d->path)) {
			continue;
		}
		if (!found++)
			m->public = d->public;
		size_t al = strlen(m->allow);
		snprintf(m->allow + al, sizeof m->allow - al, "%s%s%s", al ? ", " : "", d->method,
			 strcmp(d->method, "GET") ? "" : ", HEAD");
		if (strcmp(want, d->method))
			continue;
		m->route = d->route;
		m->fn = d->fn;
		m->rest = rest;
		m->public = d->public;
		m->body_limit = body_limit(d->body);
		return 0;
	}
	return found ? 405 : 404;
}
