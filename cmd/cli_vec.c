/*
 * cli_vec.c - the vector helpers the kyro tools share: vectors read as
 * text or .fvecs, printed back, and the index and search options.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int vec_reserve(struct cli_vec *v, uint32_t n)
{
	if (n <= v->cap)
		return 0;
	uint32_t cap = v->cap ? v->cap : 64;
	while (cap < n)
		cap *= 2;
	float *p = realloc(v->v, (size_t)cap * sizeof *p);
	if (!p)
		return -1;
	v->v = p;
	v->cap = cap;
	return 0;
}

static int is_blank(char ch) { return ch == ' ' || ch == '\t'; }

/* One component, S[0..LEN) without its comma, as component I (from 1). */
static int parse_component(const char *s, size_t len, uint32_t i, float *x,
			   char *why)
{
	char buf[128], q[CLI_QUOTE_MAX], *end;
	while (len && is_blank(*s))
		s++, len--;
	while (len && is_blank(s[len - 1]))
		len--;
	if (len == 0) {
		snprintf(why, CLI_WHY_MAX, "component %u is empty", i);
		return -1;
	}
	cli_quote(q, sizeof q, s, len);
	if (len < sizeof buf) {
		memcpy(buf, s, len);
		buf[len] = 0;
		*x = strtof(buf, &end);
	}
	if (len >= sizeof buf || end != buf + len) {
		snprintf(why, CLI_WHY_MAX,
			 "component %u is not a number: '%.40s'", i, q);
		return -1;
	}
	/* strtof() reads "nan" and "inf", and overflows to infinity: no
	 * distance can be taken with any of them. */
	if (!isfinite(*x)) {
		snprintf(why, CLI_WHY_MAX,
			 "component %u is not finite: '%.40s'", i, q);
		return -1;
	}
	return 0;
}

int cli_parse_vec(const char *s, size_t len, struct cli_vec *v, char *why)
{
	uint32_t n = 0;
	size_t at = 0;
	for (;;) {
		const char *comma = memchr(s + at, ',', len - at);
		size_t end = comma ? (size_t)(comma - s) : len;
		if (n == KYRO_MAX_DIM) {
			snprintf(why, CLI_WHY_MAX, "more than %u components",
				 (unsigned)KYRO_MAX_DIM);
			return -1;
		}
		if (vec_reserve(v, n + 1)) {
			snprintf(why, CLI_WHY_MAX, "out of memory");
			return -1;
		}
		if (parse_component(s + at, end - at, n + 1, &v->v[n], why))
			return -1;
		n++;
		if (!comma)
			break;
		at = end + 1;
	}
	v->dim = n;
	return 0;
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

int cli_read_fvecs(FILE *f, struct cli_vec *v, char *why)
{
	unsigned char h[4];
	size_t got = fread(h, 1, 4, f);
	if (got == 0 && !ferror(f))
		return 0;
	if (got < 4) {
		snprintf(why, CLI_WHY_MAX, ferror(f) ? "cannot read: %s" :
			 "truncated: the input ends inside the dimension word%s",
			 ferror(f) ? strerror(errno ? errno : EIO) : "");
		return -1;
	}
	int32_t dim = (int32_t)le32(h);
	if (dim < 1 || dim > KYRO_MAX_DIM) {
		snprintf(why, CLI_WHY_MAX, "dimension %d is outside 1..%u "
			 "(not an .fvecs file?)", (int)dim, (unsigned)KYRO_MAX_DIM);
		return -1;
	}
	if (vec_reserve(v, (uint32_t)dim)) {
		snprintf(why, CLI_WHY_MAX, "out of memory");
		return -1;
	}
	size_t want = (size_t)dim * 4;
	got = fread(v->v, 1, want, f);
	if (got < want) {
		if (ferror(f))
			snprintf(why, CLI_WHY_MAX, "cannot read: %s",
				 strerror(errno ? errno : EIO));
		else
			snprintf(why, CLI_WHY_MAX, "truncated: %zu of its %zu "
				 "bytes of components", got, want);
		return -1;
	}
	for (int32_t i = 0; i < dim; i++) {
		uint32_t bits = le32((const unsigned char *)&v->v[i]);
		memcpy(&v->v[i], &bits, 4);
		if (!isfinite(v->v[i])) {
			snprintf(why, CLI_WHY_MAX, "component %d is not finite",
				 (int)i + 1);
			return -1;
		}
	}
	v->dim = (uint32_t)dim;
	return 1;
}

void cli_put_float(FILE *f, float x)
{
	char buf[32];
	/* Most data (pixels, rounded embeddings) reads back at 6 digits;
	 * 9 always does for a float32. */
	for (int prec = 6; prec <= 9; prec++) {
		snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
		if (prec == 9 || strtof(buf, NULL) == x)
			break;
	}
	fputs(buf, f);
}

void cli_put_vec(FILE *f, const float *v, uint32_t dim)
{
	for (uint32_t i = 0; i < dim; i++) {
		if (i)
			putc(',', f);
		cli_put_float(f, v[i]);
	}
}

static const char *const metric_names[] = {NULL, "l2", "ip", "cosine"};

int cli_parse_metric(const char *s, int *metric)
{
	for (int m = KYRO_METRIC_L2; m <= KYRO_METRIC_COSINE; m++)
		if (!strcmp(s, metric_names[m])) {
			*metric = m;
			return 0;
		}
	return -1;
}

const char *cli_metric_name(int metric)
{
	return metric >= KYRO_METRIC_L2 && metric <= KYRO_METRIC_COSINE ?
	       metric_names[metric] : "none";
}

static uint32_t vec_number(const struct cli *c, const char *opt,
			   uint32_t lo, uint32_t hi)
{
	uint64_t v;
	if (cli_parse_key(c->arg, strlen(c->arg), &v) || v < lo || v > hi)
		cli_usage_error(c, "%s needs a number from %u to %u, not '%s'",
				opt, lo, hi, c->arg);
	return (uint32_t)v;
}

void cli_vec_param(const struct cli *c, int opt, struct kyro_vec_params *p)
{
	switch (opt) {
	case CLI_VEC_M:
		p->m = vec_number(c, "--m", 2, 128);
		break;
	case CLI_VEC_EFC:
		p->ef_construction = vec_number(c, "--ef-construction", 1, 100000);
		break;
	case CLI_VEC_METRIC:
		if (cli_parse_metric(c->arg, &p->metric))
			cli_usage_error(c, "invalid metric '%s' (l2, ip or cosine)",
					c->arg);
		break;
	}
}

void cli_vec_stats(const char *prog, const struct kyro_vec_stats *st)
{
	fprintf(stderr, "%s: vector index %llu: %llu vectors of dimension %u, "
		"metric %s, M %u, efConstruction %u, %llu bytes in %.3f s\n",
		prog, (unsigned long long)st->generation,
		(unsigned long long)st->vectors, st->dim,
		cli_metric_name(st->metric), st->m, st->ef_construction,
		(unsigned long long)st->bytes, st->seconds);
}
