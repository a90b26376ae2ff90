/*
 * judge.c - the tools' answers against the expected state (model.c): a
 * kyro-get of every key, kyro-get --nearest through the graph and
 * exactly, and every key again after a kyro-put that said it committed.
 * Each judgement is one of the G_ or A_ kinds of sweep.h, with a detail
 * line for the report.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sweep.h"

/* ---------------------------------------------------------------------- */
/* Judging kyro-get                                                       */

void answers_init(struct answers *a)
{
	a->kind = xmalloc(nkeys);
	a->off = xmalloc(nkeys * sizeof *a->off);
	a->len = xmalloc(nkeys * sizeof *a->len);
}

/* Short printable form of a value for a detail line. */
static void show(char *d, size_t cap, const char *p, size_t n)
{
	struct buf b = { 0 };
	buf_add(&b, "\"", 1);
	escape(&b, p, n > 24 ? 24 : n);
	buf_add(&b, n > 24 ? "...\"" : "\"", n > 24 ? 4 : 1);
	snprintf(d, cap, "%zu bytes %s", n, b.p);
	free(b.p);
}

static int parse_u64(const char *s, size_t n, uint64_t *k)
{
	if (n == 0 || n > 20)
		return -1;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*k = v;
	return 0;
}

/*
 * Read kyro-get's answers (exit 0 or 1) into A.  Returns 0 when they are
 * well-formed, or -1 with a detail in D (a line that is not an answer, a
 * key answered twice or out of order).
 */
int parse_answers(const struct run *r, struct answers *a, char *d,
		  size_t cap)
{
	memset(a->kind, ANS_NONE, nkeys);
	a->vals.len = 0;
	a->other[0] = 0;
	long last = -1;
	const char *s = r->out.p, *end = s + r->out.len;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		if (!nl) {
			snprintf(d, cap, "output ends without a newline");
			return -1;
		}
		const char *tab = memchr(s, '\t', (size_t)(nl - s));
		uint64_t k;
		long i;
		if (!tab || parse_u64(s, (size_t)(tab - s), &k) ||
		    (i = find_key(k)) < 0) {
			snprintf(d, cap, "output line is not an answer: %.*s",
				 (int)((nl - s) > 60 ? 60 : (nl - s)), s);
			return -1;
		}
		if (a->kind[i] != ANS_NONE || i <= last) {
			snprintf(d, cap, "key %" PRIu64 " answered twice or out of order", k);
			return -1;
		}
		if (unescape(&a->tmp, tab + 1, (size_t)(nl - tab - 1))) {
			snprintf(d, cap, "key %" PRIu64 ": value with a bad escape", k);
			return -1;
		}
		a->kind[i] = ANS_VALUE;
		a->off[i] = a->vals.len;
		a->len[i] = a->tmp.len;
		buf_add(&a->vals, a->tmp.p, a->tmp.len);
		last = i;
		s = nl + 1;
	}
	static const char pre[] = "kyro-get: ", post[] = ": not found";
	s = r->err.p;
	end = s + r->err.len;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		if (!nl)
			nl = end;
		size_t n = (size_t)(nl - s);
		uint64_t k;
		long i = -1;
		if (n > sizeof pre + sizeof post - 2 && !memcmp(s, pre, sizeof pre - 1) &&
		    !memcmp(nl - (sizeof post - 1), post, sizeof post - 1) &&
		    !parse_u64(s + sizeof pre - 1, n - (sizeof pre - 1) - (sizeof post - 1), &k))
			i = find_key(k);
		if (i >= 0) {
			if (a->kind[i] != ANS_NONE) {
				snprintf(d, cap, "key %" PRIu64 " answered twice", k);
				return -1;
			}
			a->kind[i] = ANS_MISSING;
		} else if (!a->other[0]) {
			snprintf(a->other, sizeof a->other, "%.*s",
				 (int)(n > 100 ? 100 : n), s);
		}
		s = nl + 1;
	}
	return 0;
}

/* Is key i's answer in A the expected E?  0 yes; else a detail in D. */
static int check_key(const struct answers *a, size_t i, const struct val *e,
		     char *d, size_t cap)
{
	char x[96], y[96];
	switch (a->kind[i]) {
	case ANS_NONE:
		snprintf(d, cap, "key %" PRIu64 " not answered", keys[i]);
		return -1;
	case ANS_MISSING:
		if (!e->present)
			return 0;
		show(x, sizeof x, e->p, e->len);
		snprintf(d, cap, "key %" PRIu64 " was written (%s) but reads as not found",
			 keys[i], x);
		return -1;
	default:
		show(y, sizeof y, a->vals.p + a->off[i], a->len[i]);
		if (!e->present) {
			snprintf(d, cap, "key %" PRIu64 " is absent but reads as %s",
				 keys[i], y);
			return -1;
		}
		if (e->len == a->len[i] && !memcmp(e->p, a->vals.p + a->off[i], e->len))
			return 0;
		show(x, sizeof x, e->p, e->len);
		/* The shown prefixes may agree: say where the bytes part. */
		size_t at = 0;
		while (at < e->len && at < a->len[i] && e->p[at] == a->vals.p[a->off[i] + at])
			at++;
		snprintf(d, cap, "key %" PRIu64 ": read %.70s, wrote %.70s, first difference at byte %zu",
			 keys[i], y, x, at);
		return -1;
	}
}

/* Are the answers A right for the state E, exit status included? */
int check_answers(const struct run *r, const struct answers *a,
		  const struct val *e, char *d, size_t cap)
{
	int absent = 0;
	for (size_t i = 0; i < nkeys; i++) {
		absent |= !e[i].present;
		if (check_key(a, i, &e[i], d, cap))
			return -1;
	}
	if (r->code != absent) {
		snprintf(d, cap, "right answers but exit %d (expected %d)", r->code,
			 absent);
		return -1;
	}
	return 0;
}

/* Same answer for key i in A and B? */
static int same_answer(const struct answers *a, const struct answers *b, size_t i)
{
	if (a->kind[i] != b->kind[i])
		return 0;
	if (a->kind[i] != ANS_VALUE)
		return 1;
	return a->len[i] == b->len[i] &&
	       !memcmp(a->vals.p + a->off[i], b->vals.p + b->off[i], a->len[i]);
}

int failed(const struct result *r)
{
	return !r->done || r->verify == V_UNDETECTED || r->verify == V_CRASH ||
	       r->get == G_WRONG || r->get == G_CRASH || r->get == G_ODD ||
	       r->nearest == G_WRONG || r->nearest == G_CRASH ||
	       r->nearest == G_ODD || r->exact == G_WRONG ||
	       r->exact == G_CRASH || r->exact == G_ODD ||
	       r->put == P_CRASH || r->put == P_ODD || r->after == A_LOST ||
	       r->after == A_CRASH || r->after == A_ODD;
}

void judge_get(const struct run *r, struct answers *a,
	       const struct val *e, struct result *res)
{
	if (r->how != RUN_EXIT) {
		res->get = G_CRASH;
		describe_crash(res->gdetail, DETAIL, "kyro-get", r);
	} else if (r->code == 2) {
		res->get = r->err.len ? G_REFUSED : G_ODD;
		if (res->get == G_ODD)
			snprintf(res->gdetail, DETAIL, "kyro-get: exit 2 without a message");
	} else if (r->code > 2) {
		res->get = G_ODD;
		snprintf(res->gdetail, DETAIL, "kyro-get: exit %d", r->code);
	} else if (parse_answers(r, a, res->gdetail, DETAIL) ||
		   check_answers(r, a, e, res->gdetail, DETAIL)) {
		res->get = G_WRONG;
	} else {
		res->get = G_RIGHT;
		res->get_msg = a->other[0] != 0;
	}
}

/* ---------------------------------------------------------------------- */
/* Judging kyro-get --nearest                                             */

/* Is the hit on the line from S to NL the expected X, with its key's value
 * as a third field when the key has one and none when it has none?  0
 * yes; else a detail in D. */
static int check_hit(const char *s, const char *nl, const struct hit *x,
		     struct buf *tmp, char *d, size_t cap)
{
	const char *t1 = memchr(s, '\t', (size_t)(nl - s)), *t2 = NULL;
	if (t1)
		t2 = memchr(t1 + 1, '\t', (size_t)(nl - t1 - 1));
	const char *de = t2 ? t2 : nl;
	char num[48], *e;
	uint64_t k;
	if (!t1 || parse_u64(s, (size_t)(t1 - s), &k) ||
	    (size_t)(de - t1 - 1) >= sizeof num) {
		snprintf(d, cap, "not a hit: %.*s",
			 (int)(nl - s > 60 ? 60 : nl - s), s);
		return -1;
	}
	memcpy(num, t1 + 1, (size_t)(de - t1 - 1));
	num[de - t1 - 1] = 0;
	const float got = strtof(num, &e);
	if (*e || !*num || k != x->key || got != x->d) {
		snprintf(d, cap, "key %" PRIu64 " at %s, expected key %" PRIu64
			 " at %g", k, num, x->key, (double)x->d);
		return -1;
	}
	const long i = find_key(k);
	const struct val *v = i >= 0 ? &state[i] : NULL;
	int right = v && v->present == (t2 != NULL);
	if (right && t2)
		right = !unescape(tmp, t2 + 1, (size_t)(nl - t2 - 1)) &&
			tmp->len == v->len && !memcmp(tmp->p, v->p, v->len);
	if (!right) {
		snprintf(d, cap, "key %" PRIu64 ": wrong value or none", k);
		return -1;
	}
	return 0;
}

/*
 * Is kyro-get --nearest's answer (tsv, --with-values) to the queries the
 * expected one, exit status included?  0 yes; else a detail in D.  Each
 * answer is its hits, then an empty line.
 */
int check_nearest(const struct run *r, struct buf *tmp, char *d, size_t cap)
{
	const char *s = r->out.p, *end = s + r->out.len;
	char hd[150];
	for (unsigned q = 0; q < NQUERIES; q++) {
		for (size_t h = 0;; h++) {
			const char *nl = memchr(s, '\n', (size_t)(end - s));
			if (!nl) {
				snprintf(d, cap, "query %u: answer cut short",
					 q + 1);
				return -1;
			}
			if (nl == s && h == nexpect[q]) {
				s = nl + 1;
				break;
			}
			if (nl == s || h == nexpect[q]) {
				snprintf(d, cap, "query %u: %s hits than the %zu expected",
					 q + 1, nl == s ? "fewer" : "more",
					 nexpect[q]);
				return -1;
			}
			if (check_hit(s, nl, &expect[q][h], tmp, hd,
				      sizeof hd)) {
				snprintf(d, cap, "query %u, hit %zu: %s", q + 1,
					 h + 1, hd);
				return -1;
			}
			s = nl + 1;
		}
	}
	if (s != end) {
		snprintf(d, cap, "output after the last answer: %.60s", s);
		return -1;
	}
	if (r->code != 0) {
		snprintf(d, cap, "right answers but exit %d", r->code);
		return -1;
	}
	return 0;
}

/* Judge one run of kyro-get --nearest into *RES (G_*) and DETAIL. */
void judge_nearest(const struct run *r, struct buf *tmp,
		   const char *what, unsigned char *res, char *detail,
		   unsigned char *msg)
{
	char d[DETAIL];
	if (r->how != RUN_EXIT) {
		*res = G_CRASH;
		describe_crash(detail, DETAIL, what, r);
	} else if (r->code == 2) {
		*res = r->err.len ? G_REFUSED : G_ODD;
		if (*res == G_ODD)
			snprintf(detail, DETAIL, "%s: exit 2 without a message", what);
	} else if (r->code > 2) {
		*res = G_ODD;
		snprintf(detail, DETAIL, "%s: exit %d", what, r->code);
	} else if (check_nearest(r, tmp, d, sizeof d)) {
		*res = G_WRONG;
		snprintf(detail, DETAIL, "%s: %.150s", what, d);
	} else {
		*res = G_RIGHT;
		*msg |= r->err.len != 0;
	}
}

/* ---------------------------------------------------------------------- */
/* Judging the keys after the sweep's own kyro-put                       */

void judge_after(struct worker *w, struct result *res)
{
	const struct run *r = &w->r;
	if (r->how != RUN_EXIT) {
		res->after = A_CRASH;
		describe_crash(res->adetail, DETAIL, "kyro-get after kyro-put", r);
		return;
	}
	if (r->code == 2) {
		res->after = r->err.len ? A_REFUSED : A_ODD;
		if (r->err.len)
			first_line(res->adetail, DETAIL, "kyro-get after kyro-put: ", &r->err);
		else
			snprintf(res->adetail, DETAIL, "kyro-get after kyro-put: exit 2 without a message");
		return;
	}
	if (r->code > 2) {
		res->after = A_ODD;
		snprintf(res->adetail, DETAIL, "kyro-get after kyro-put: exit %d", r->code);
		return;
	}
	char d[DETAIL];
	if (parse_answers(r, &w->after, d, sizeof d)) {
		res->after = A_LOST;
		snprintf(res->adetail, DETAIL, "after kyro-put exit 0: %.170s", d);
		return;
	}
	/* A key the damage already made read wrong, and that the new batch
	 * did not touch, reading the same wrong way is that read failure,
	 * already counted, not a loss. */
	unsigned char *touched = xmalloc(nkeys);
	memset(touched, 0, nkeys);
	for (size_t j = 0; j < newbatch.n; j++)
		touched[newbatch.idx[j]] = 1;
	int excused = 0;
	res->after = A_RIGHT;
	for (size_t i = 0; i < nkeys; i++) {
		if (!check_key(&w->after, i, &state1[i], d, sizeof d))
			continue;
		if (res->get == G_WRONG && !touched[i] &&
		    same_answer(&w->before, &w->after, i)) {
			excused = 1;
			continue;
		}
		res->after = A_LOST;
		snprintf(res->adetail, DETAIL, "after kyro-put exit 0: %.170s", d);
		break;
	}
	free(touched);
	if (res->after == A_RIGHT && excused)
		res->after = A_SAMEWRONG;
}

