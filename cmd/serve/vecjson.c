/*
 * vecjson.c - the fast path for search bodies (vecjson.h).
 *
 * It must never accept what the general path refuses, nor read a body
 * differently: so it follows RFC 8259's grammar exactly for what it
 * takes (numbers: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?; names:
 * plain ASCII with no escape), converts numbers to the double jansson's
 * strtod gives (exactly: fast_decimal()), then casts it to float as the
 * general path does, and leaves to that
 * path every error, every rarer member (range, metric) and every form it
 * does not know.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vecjson.h"

struct cur {
	const char *p, *end;
};

static void ws(struct cur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' ||
				 *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static int eat(struct cur *c, char ch)
{
	ws(c);
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return 1;
	}
	return 0;
}

static int digit(const struct cur *c, const char *p)
{
	return p < c->end && *p >= '0' && *p <= '9';
}

/*
 * A JSON number: its extent, and its digits as the integer M they make
 * and E, the power of ten M is scaled by.  BIG when M would pass 2^53 or
 * the exponent is huge: then strtod() must read it.
 */
struct literal {
	size_t len;
	int integral; /* no fraction, exponent or sign */
	int neg, big, e;
	uint64_t m;
};

/* The digits at P on, into L; past them. */
static const char *digits(const struct cur *c, const char *p,
			  struct literal *l, int scale)
{
	const uint64_t most = (((uint64_t)1 << 53) - 9) / 10;
	for (; digit(c, p); p++) {
		if (l->m > most) {
			l->big = 1;
			continue;
		}
		l->m = l->m * 10 + (uint64_t)(*p - '0');
		l->e -= scale;
	}
	return p;
}

/* The number at C into L; 0 when there is none. */
static size_t number_len(const struct cur *c, struct literal *l)
{
	const char *p = c->p;
	*l = (struct literal){.integral = 1};
	if (p < c->end && *p == '-') {
		p++;
		l->neg = 1;
		l->integral = 0;
	}
	if (!digit(c, p))
		return 0;
	if (*p == '0')
		p++;
	else
		p = digits(c, p, l, 0);
	if (p < c->end && *p == '.') {
		l->integral = 0;
		if (!digit(c, ++p))
			return 0;
		p = digits(c, p, l, 1);
	}
	if (p < c->end && (*p == 'e' || *p == 'E')) {
		int x = 0, xneg = 0;
		l->integral = 0;
		p++;
		if (p < c->end && (*p == '+' || *p == '-'))
			xneg = *p++ == '-';
		if (!digit(c, p))
			return 0;
		for (; digit(c, p); p++)
			if (x <= 1000)
				x = x * 10 + (*p - '0');
		l->big |= x > 1000;
		l->e += xneg ? -x : x;
	}
	l->len = (size_t)(p - c->p);
	return l->len;
}

/*
 * The double strtod() makes of L, without strtod() when M <= 2^53 and
 * E is within 22 of zero: M and 10^|E| are then exact doubles, so
 * M * 10^E (or M / 10^-E) is one correctly rounded operation, strtod()'s
 * answer (Clinger's fast path), without its locale and multiple-precision
 * work, which were most of the parse of a long vector.  0 when the
 * literal needs strtod().
 */
static int fast_decimal(const struct literal *l, double *v)
{
	static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,
				     1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
				     1e12, 1e13, 1e14, 1e15, 1e16, 1e17,
				     1e18, 1e19, 1e20, 1e21, 1e22};
	if (l->big || l->e < -22 || l->e > 22)
		return 0;
	double d = (double)l->m;
	d = l->e < 0 ? d / p10[-l->e] : d * p10[l->e];
	*v = l->neg ? -d : d;
	return 1;
}

/* A number as the general path reads it, or 0 to give up: literals
 * jansson would refuse (overflow, integers past 19 digits) included. */
static int number(struct cur *c, double *v)
{
	char t[400];
	struct literal l;
	ws(c);
	size_t n = number_len(c, &l);
	if (!n || n >= sizeof t || (l.integral && n > 18))
		return 0;
	if (!fast_decimal(&l, v)) {
		memcpy(t, c->p, n);
		t[n] = 0;
		*v = strtod(t, NULL);
	}
	if (!isfinite(*v))
		return 0;
	c->p += n;
	return 1;
}

/*
 * The usual component, read in one pass: -?(0|[1-9][0-9]*)(.[0-9]+)?
 * with 15 digits at most and no exponent.  Its M is below 2^53 and its E
 * within -15..0, fast_decimal()'s exact case, and its value is finite
 * as a float, so it is read to the same float as number() reads it,
 * without number()'s two passes and checks (most of a 784-component
 * parse).  Returns its length, or 0 for every other form, which number()
 * then reads or refuses.
 */
static size_t plain_number(const char *p, const char *end, double *v)
{
	static const double p10[] = {1e0, 1e1, 1e2,  1e3,  1e4,	 1e5,
				     1e6, 1e7, 1e8,  1e9,  1e10, 1e11,
				     1e12, 1e13, 1e14, 1e15};
	const char *const s = p;
	const int neg = p < end && *p == '-';
	uint64_t m = 0;
	int nd = 0, frac = 0;
	p += neg;
	if (p == end || *p < '0' || *p > '9')
		return 0;
	if (*p == '0') {
		p++;
		nd = 1;
	} else {
		for (; p < end && *p >= '0' && *p <= '9'; p++, nd++)
			m = m * 10 + (uint64_t)(*p - '0');
	}
	if (p < end && *p == '.') {
		const char *f = ++p;
		for (; p < end && *p >= '0' && *p <= '9'; p++)
			m = m * 10 + (uint64_t)(*p - '0');
		frac = (int)(p - f);
		nd += frac;
		if (!frac)
			return 0;
	}
	/* Past 15 digits M may have wrapped: number() reads it again. */
	if (nd > 15 || (p < end && (*p == 'e' || *p == 'E')))
		return 0;
	const double d = frac ? (double)m / p10[frac] : (double)m;
	*v = neg ? -d : d;
	return (size_t)(p - s);
}

/* A plain integer from LO to HI. */
static int uint_field(struct cur *c, uint64_t lo, uint64_t hi, uint32_t *v)
{
	struct literal l;
	double d;
	ws(c);
	if (!number_len(c, &l) || !l.integral || !number(c, &d) ||
	    d < (double)lo || d > (double)hi)
		return 0;
	*v = (uint32_t)d;
	return 1;
}

static int boolean(struct cur *c, int *v)
{
	ws(c);
	if ((size_t)(c->end - c->p) >= 4 && !memcmp(c->p, "true", 4)) {
		c->p += 4;
		*v = 1;
		return 1;
	}
	if ((size_t)(c->end - c->p) >= 5 && !memcmp(c->p, "false", 5)) {
		c->p += 5;
		*v = 0;
		return 1;
	}
	return 0;
}

/* The vector into OUT (room for CAP); *DIM gets its length. */
static int array(struct cur *c, float *out, size_t cap, uint32_t *dim)
{
	size_t n = 0;
	if (!eat(c, '['))
		return 0;
	for (;;) {
		double d;
		size_t len;
		if (n == cap || n == KYRO_MAX_DIM)
			return 0;
		if (c->p < c->end && (unsigned char)*c->p <= ' ')
			ws(c);
		if ((len = plain_number(c->p, c->end, &d))) {
			c->p += len;
			out[n] = (float)d;
		} else {
			if (!number(c, &d))
				return 0;
			out[n] = (float)d;
			if (!isfinite(out[n]))
				return 0;
		}
		n++;
		/* A comma straight after the number is the usual case. */
		if (c->p < c->end && *c->p == ',') {
			c->p++;
			continue;
		}
		if (!eat(c, ','))
			break;
	}
	if (!eat(c, ']'))
		return 0;
	*dim = (uint32_t)n;
	return 1;
}

/* A member's name: plain printable ASCII, no escape. */
static int name(struct cur *c, const char **s, size_t *n)
{
	if (!eat(c, '"'))
		return 0;
	*s = c->p;
	while (c->p < c->end && *c->p != '"') {
		unsigned char ch = (unsigned char)*c->p;
		if (ch < 0x20 || ch >= 0x7f || ch == '\\')
			return 0;
		c->p++;
	}
	if (c->p == c->end)
		return 0;
	*n = (size_t)(c->p - *s);
	c->p++;
	return eat(c, ':');
}

static int is(const char *s, size_t n, const char *want)
{
	return strlen(want) == n && !memcmp(s, want, n);
}

int vecjson_search(const char *body, size_t len, const char *vname,
		   uint32_t max_ef, struct kyro_vec_query *q, int *with_values,
		   float **vec)
{
	struct cur c = {body, body + len};
	/* Each number takes a digit and a comma at least. */
	size_t cap = len / 2 + 1;
	float *v =
		malloc((cap < KYRO_MAX_DIM ? cap : KYRO_MAX_DIM) * sizeof *v);
	unsigned seen = 0;
	int exact = 0;
	*q = (struct kyro_vec_query){.k = 10, .hi = UINT64_MAX};
	*with_values = 0;
	if (!v || !eat(&c, '{'))
		goto no;
	do {
		const char *s;
		size_t n;
		unsigned bit;
		int ok;
		if (!name(&c, &s, &n))
			goto no;
		if (is(s, n, vname)) {
			bit = 1;
			ok = array(&c, v, cap, &q->dim);
		} else if (is(s, n, "k")) {
			bit = 2;
			ok = uint_field(&c, 1, KYRO_VEC_MAX_K, &q->k);
		} else if (is(s, n, "ef")) {
			bit = 4;
			ok = uint_field(&c, 1, max_ef, &q->ef);
		} else if (is(s, n, "exact")) {
			bit = 8;
			ok = boolean(&c, &exact);
		} else if (is(s, n, "with_values")) {
			bit = 16;
			ok = boolean(&c, with_values);
		} else {
			goto no;
		}
		if (!ok || (seen & bit))
			goto no;
		seen |= bit;
	} while (eat(&c, ','));
	if (!eat(&c, '}') || !(seen & 1))
		goto no;
	ws(&c);
	if (c.p != c.end)
		goto no;
	q->flags = exact ? KYRO_VEC_EXACT : 0;
	q->vec = v;
	*vec = v;
	return 1;
no:
	free(v);
	return 0;
}
