/*
 * model.c - the expected state, kept here outside the store: every key
 * and value the sweep's batches wrote, the vectors, the answers a
 * nearest-neighbour search must give, and the escapes of kyro-put's and
 * kyro-get's text.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sweep.h"

uint64_t *keys;
size_t nkeys;
struct val *state;
struct val *state1;
struct batch newbatch;
struct vec *vstate;
size_t nvkeys;
float queries[NQUERIES][VDIM];
struct hit expect[NQUERIES][NEAREST_K];
size_t nexpect[NQUERIES];

size_t key_index(uint64_t k)
{
	for (size_t i = 0; i < nkeys; i++)
		if (keys[i] == k)
			return i;
	keys = xrealloc(keys, (nkeys + 1) * sizeof *keys);
	state = xrealloc(state, (nkeys + 1) * sizeof *state);
	keys[nkeys] = k;
	state[nkeys] = (struct val){ 0, 0, NULL };
	return nkeys++;
}

/* For answering "which key is this line about" in O(log n) per line. */
struct kidx {
	uint64_t key;
	size_t i;
};
static struct kidx *sorted;

static int kidx_cmp(const void *a, const void *b)
{
	const struct kidx *x = a, *y = b;
	return x->key < y->key ? -1 : x->key > y->key;
}

/* Once every key is known. */
void index_keys(void)
{
	sorted = xmalloc(nkeys * sizeof *sorted);
	for (size_t i = 0; i < nkeys; i++)
		sorted[i] = (struct kidx){ keys[i], i };
	qsort(sorted, nkeys, sizeof *sorted, kidx_cmp);
}

long find_key(uint64_t k)
{
	size_t lo = 0, hi = nkeys;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sorted[mid].key < k)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < nkeys && sorted[lo].key == k ? (long)sorted[lo].i : -1;
}

/* kyro-put's input escapes (kyro-put(1)). */
void escape(struct buf *b, const char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		char e[4] = { '\\', 0, 0, 0 };
		size_t el = 2;
		switch (c) {
		case '\\': e[1] = '\\'; break;
		case '\t': e[1] = 't'; break;
		case '\n': e[1] = 'n'; break;
		case '\r': e[1] = 'r'; break;
		case 0: e[1] = '0'; break;
		default:
			if (c < 0x20 || c == 0x7f) {
				e[1] = 'x';
				e[2] = hex[c >> 4];
				e[3] = hex[c & 15];
				el = 4;
			} else {
				e[0] = (char)c;
				el = 1;
			}
		}
		buf_add(b, e, el);
	}
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode kyro-get's escapes from S (N bytes) into b; 0, or -1 when S is
 * not a validly escaped value. */
int unescape(struct buf *b, const char *s, size_t n)
{
	b->len = 0;
	buf_add(b, "", 0);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c != '\\') {
			buf_add(b, &c, 1);
			continue;
		}
		if (++i == n)
			return -1;
		switch (s[i]) {
		case '\\': c = '\\'; break;
		case 't': c = '\t'; break;
		case 'n': c = '\n'; break;
		case 'r': c = '\r'; break;
		case '0': c = 0; break;
		case 'x': {
			int h1 = i + 1 < n ? hexval((unsigned char)s[i + 1]) : -1;
			int h2 = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
			if (h1 < 0 || h2 < 0)
				return -1;
			c = (char)(h1 << 4 | h2);
			i += 2;
			break;
		}
		default:
			return -1;
		}
		buf_add(b, &c, 1);
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Keys, values and batches                                               */

/* Spread, not uniform, so that the learned index has a shape to learn. */
uint64_t key_of(unsigned i)
{
	return (uint64_t)i * i * 7919u + (uint64_t)i * 13u;
}

/* Value number I written by generation G: empty, short, with every kind
 * of byte that needs an escape, medium, and a few KB for two of them. */
void value_of(struct buf *b, unsigned i, unsigned g)
{
	b->len = 0;
	buf_add(b, "", 0);
	if (i == 18) {
		for (unsigned j = 0; j < 700; j++)
			buf_add(b, &"abcdefghijklmnopqrstuvwxyz0123456789"[(j + g) % 36], 1);
		return;
	}
	if (i == 45) {
		for (unsigned j = 0; j < 300; j++) {
			char c = (char)(j * 7 + g);
			buf_add(b, &c, 1);
		}
		return;
	}
	switch (i % 5) {
	case 0:
		return;
	case 2: {
		static const char esc[] = "\t\n\\\r\0\001\037\177\200\376\377 x\\t";
		buf_add(b, esc, sizeof esc - 1);
		buf_printf(b, "e%u.%u", i, g);
		return;
	}
	case 3:
		buf_printf(b, "medium %u.%u ", i, g);
		for (unsigned j = 0; j < i % 17; j++)
			buf_add(b, "-", 1);
		return;
	default:
		buf_printf(b, "v%u.%u", i, g);
	}
}

void batch_put(struct batch *bt, uint64_t k, const char *p, size_t n)
{
	buf_printf(&bt->in, "%" PRIu64 "\t", k);
	escape(&bt->in, p, n);
	buf_add(&bt->in, "\n", 1);
	bt->idx = xrealloc(bt->idx, (bt->n + 1) * sizeof *bt->idx);
	bt->val = xrealloc(bt->val, (bt->n + 1) * sizeof *bt->val);
	bt->idx[bt->n] = key_index(k);
	char *c = xmalloc(n);
	memcpy(c, p, n);
	bt->val[bt->n++] = (struct val){ 1, n, c };
}

void batch_del(struct batch *bt, uint64_t k)
{
	bt->del = 1;
	buf_printf(&bt->in, "%" PRIu64 "\n", k);
	bt->idx = xrealloc(bt->idx, (bt->n + 1) * sizeof *bt->idx);
	bt->val = xrealloc(bt->val, (bt->n + 1) * sizeof *bt->val);
	bt->idx[bt->n] = key_index(k);
	bt->val[bt->n++] = (struct val){ 0, 0, NULL };
}

void apply(struct val *st, const struct batch *bt)
{
	for (size_t j = 0; j < bt->n; j++)
		st[bt->idx[j]] = bt->val[j];
}

/* ---------------------------------------------------------------------- */
/* The vectors (sweep.h says why their components are small integers)    */

size_t vkey_index(uint64_t k)
{
	for (size_t i = 0; i < nvkeys; i++)
		if (vstate[i].key == k)
			return i;
	vstate = xrealloc(vstate, (nvkeys + 1) * sizeof *vstate);
	vstate[nvkeys] = (struct vec){ k, 0, { 0 } };
	return nvkeys++;
}

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15u;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
	return x ^ (x >> 31);
}

/* Vector number I of generation G: integers from -8 to 8. */
void vec_of(float *v, unsigned i, unsigned g)
{
	for (unsigned j = 0; j < VDIM; j++)
		v[j] = (float)((int)(mix((uint64_t)i << 16 | g << 8 | j) % 17)
			       - 8);
}

void vec_text(struct buf *b, const float *v)
{
	for (unsigned j = 0; j < VDIM; j++)
		buf_printf(b, "%s%g", j ? "," : "", (double)v[j]);
}

void vbatch_put(struct vbatch *vb, uint64_t k, const float *v,
		const char *val, size_t vlen)
{
	buf_printf(&vb->in, "%" PRIu64 "\t", k);
	if (val) {
		escape(&vb->in, val, vlen);
		buf_add(&vb->in, "\t", 1);
		batch_put(&vb->values, k, val, vlen);
	} else {
		key_index(k);	/* asked too: a key with a vector and no value
				 * reads as not found */
	}
	vec_text(&vb->in, v);
	buf_add(&vb->in, "\n", 1);
	vb->vi = xrealloc(vb->vi, (vb->n + 1) * sizeof *vb->vi);
	vb->v = xrealloc(vb->v, (vb->n + 1) * sizeof *vb->v);
	vb->vi[vb->n] = vkey_index(k);
	memcpy(vb->v[vb->n++], v, sizeof *vb->v);
}

/* A DELETE removes the key's vector with its value. */
void vec_apply_deletes(const struct batch *bt)
{
	for (size_t j = 0; j < bt->n; j++)
		if (!bt->val[j].present)
			for (size_t i = 0; i < nvkeys; i++)
				if (vstate[i].key == keys[bt->idx[j]])
					vstate[i].present = 0;
}

/* Squared L2: exact here, see above. */
static float dist(const float *a, const float *b)
{
	float s = 0;
	for (unsigned j = 0; j < VDIM; j++)
		s += (a[j] - b[j]) * (a[j] - b[j]);
	return s;
}

static int hit_cmp(const void *a, const void *b)
{
	const struct hit *x = a, *y = b;
	if (x->d != y->d)
		return x->d < y->d ? -1 : 1;
	return x->key < y->key ? -1 : x->key > y->key;
}

/* expect[] and nexpect[], from the vectors as they are now. */
void expect_nearest(void)
{
	struct hit *h = xmalloc(nvkeys * sizeof *h);
	for (unsigned q = 0; q < NQUERIES; q++) {
		size_t n = 0;
		for (size_t i = 0; i < nvkeys; i++)
			if (vstate[i].present)
				h[n++] = (struct hit){
					dist(queries[q], vstate[i].v),
					vstate[i].key };
		qsort(h, n, sizeof *h, hit_cmp);
		nexpect[q] = n < NEAREST_K ? n : NEAREST_K;
		memcpy(expect[q], h, nexpect[q] * sizeof *h);
	}
	free(h);
}

/*
 * The queries: near the vector of key_of(27) (deleted since the snapshot,
 * still in the graph), near key_of(54)'s vector in the graph (replaced
 * since), near key_of(108)'s (put and deleted after the snapshot), and one
 * anywhere.  Components off the lattice by quarters, so few distances tie.
 */
void make_queries(void)
{
	vec_of(queries[0], 27, 1);
	vec_of(queries[1], 54, 1);
	vec_of(queries[2], 108, 2);
	for (unsigned j = 0; j < VDIM; j++) {
		queries[0][j] += 0.25f * (float)(j % 3);
		queries[1][j] -= 0.25f * (float)(j % 2);
		queries[2][j] += j == 5 ? 0.75f : 0;
		queries[3][j] =
			(float)((int)(mix(999u << 8 | j) % 65) - 32) / 4;
	}
}

/* The batch every trial writes: a new key, an overwrite of a snapshot key
 * and of a key last written in the WAL. */
void make_newbatch(void)
{
	batch_put(&newbatch, key_of(300) + 5, "written after the damage", 24);
	batch_put(&newbatch, key_of(36), "overwrites a snapshot key", 25);
	batch_put(&newbatch, key_of(63), "overwrites a WAL key", 20);
}
