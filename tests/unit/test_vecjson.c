/*
 * test_vecjson.c - the daemon's fast parser of search bodies
 * (cmd/serve/vecjson.c) reads every number to the float the general path
 * makes of it: strtod(), then the cast.  Its shortcut for short decimals
 * must agree bit for bit on every literal, the ones it hands to strtod()
 * included.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kyro.h"

#include "../../cmd/serve/vecjson.h"

/* LIT as the fast parser reads it in a one-component vector: 1 and *F, or
 * 0 when it gives the body up. */
static int fast(const char *lit, float *f)
{
	char body[512];
	struct kyro_vec_query q;
	float *vec = NULL;
	int wv;
	snprintf(body, sizeof body, "{\"vector\":[%s]}", lit);
	if (!vecjson_search(body, strlen(body), "vector", 64, &q, &wv, &vec))
		return 0;
	*f = q.vec[0];
	free(vec);
	return 1;
}

static int same(float a, float b)
{
	return !memcmp(&a, &b, sizeof a);
}

/* One literal: taken as strtod() and the cast read it, or given up only
 * where that read is not a finite float or the literal is an integer
 * longer than jansson takes (19 digits and more). */
static int agrees(const char *lit)
{
	float got = 0;
	const float want = (float)strtod(lit, NULL);
	if (!fast(lit, &got)) {
		if (!isfinite(want) ||
		    (strlen(lit) > 18 && !strpbrk(lit, "-.eE")))
			return 1;
		h_note("'%s' given up", lit);
		return 0;
	}
	if (!same(got, want))
		h_note("'%s': fast %a, strtod %a", lit, (double)got,
		       (double)want);
	return same(got, want);
}

TEST(vecjson_fixed_literals)
{
	static const char *const lits[] = {
		"0", "-0", "1", "-1", "255", "0.5", "0.1", "0.2", "0.3",
		"1e-45", "-1e-46", "1.4e-45", "3.4028234e38", "3.4028236e38",
		"16777217", "9007199254740993", "9007199254740992",
		"0.30000000000000004", "123456789012345678", "1.5e-10",
		"1E+2", "2.5E-3", "1e22", "1e23", "1e-22", "1e-23",
		"4.9406564584124654e-324", "0.000000000000000000000001",
		"8.589973e9", "1.17549435e-38", "1.1754942e-38", "7e-46",
		"0.1234567890123456789", "100000000000000000.5",
		"9007199254740991.0", "90071992547409.93e2",
		"1.000000000000000000000000000001",
	};
	for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++)
		CHECK(agrees(lits[i]));
}

/* Random literals of every shape the grammar allows: up to 20 digits, a
 * point anywhere, an exponent or not, signs. */
TEST(vecjson_random_literals)
{
	char lit[64];
	unsigned bad = 0;
	h_seed(22);
	for (int i = 0; i < 200000; i++) {
		size_t n = 0;
		const unsigned digits = 1 + (unsigned)h_below(20);
		const unsigned point = (unsigned)h_below(digits + 1);
		if (h_below(2))
			lit[n++] = '-';
		for (unsigned d = 0; d < digits; d++) {
			if (d && d == point)
				lit[n++] = '.';
			/* No leading zero but a lone one, as JSON wants. */
			lit[n++] = (char)('0' + (d || digits == 1 ||
							 point == 1
						 ? h_below(10)
						 : 1 + h_below(9)));
		}
		if (h_below(2))
			n += (size_t)snprintf(lit + n, sizeof lit - n, "e%s%u",
					      h_below(2) ? "-" : "+",
					      (unsigned)h_below(40));
		lit[n] = 0;
		if (!agrees(lit) && ++bad > 10)
			break;
	}
	CHECK(bad == 0);
}

/* BODY as the fast parser reads it: 1 with its components in OUT (room
 * for CAP) and *N, or 0 when it gives the body up. */
static int fast_body(const char *body, float *out, size_t cap, uint32_t *n)
{
	struct kyro_vec_query q;
	float *vec = NULL;
	int wv;
	if (!vecjson_search(body, strlen(body), "vector", 64, &q, &wv, &vec))
		return 0;
	*n = q.dim;
	for (uint32_t i = 0; i < q.dim && i < cap; i++)
		out[i] = q.vec[i];
	free(vec);
	return 1;
}

/* The components of a long vector are read one after another: each as
 * strtod() and the cast read it, whatever its neighbours' forms and the
 * white space between them. */
TEST(vecjson_mixed_components)
{
	static const char *const lits[] = {
		"0", "-0", "255", "0.5", "-12.25", "1e3", "2.5E-3", "7",
		"123456789012345", "1234567890123456", "0.000000000000001",
		"9007199254740993", "-0.1", "100",
	};
	const size_t nl = sizeof lits / sizeof lits[0];
	static const char *const sep[] = {",", " ,", ", ", "\n,\t", " , "};
	char body[4096];
	float got[64];
	uint32_t n = 0;
	h_seed(29);
	for (int round = 0; round < 200; round++) {
		size_t len = (size_t)snprintf(body, sizeof body,
					      "{\"vector\":[ ");
		const size_t count = 1 + (size_t)h_below(40);
		size_t pick[64];
		for (size_t i = 0; i < count; i++) {
			pick[i] = (size_t)h_below(nl);
			const char *sp = i ? sep[h_below(5)] : "";
			len += (size_t)snprintf(body + len, sizeof body - len,
						"%s%s", sp, lits[pick[i]]);
		}
		snprintf(body + len, sizeof body - len, " ],\"k\":3}");
		CHECK(fast_body(body, got, 64, &n));
		CHECK(n == count);
		for (size_t i = 0; i < count && i < n; i++)
			CHECK(same(got[i], (float)strtod(lits[pick[i]], NULL)));
	}
}

/* Forms JSON does not allow are never read, wherever they stand in the
 * vector: the general path refuses them. */
TEST(vecjson_bad_components_given_up)
{
	static const char *const bad[] = {
		"[01]", "[1,02]", "[1.]", "[1,2.]", "[.5]", "[-]", "[1,-]",
		"[1,]", "[,1]", "[1 2]", "[1e]", "[1,1e+]", "[+1]", "[0x10]",
		"[1,2a]", "[1.5.5]", "[--1]", "[1,,2]", "[]",
	};
	char body[128];
	float got[8];
	uint32_t n;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(body, sizeof body, "{\"vector\":%s}", bad[i]);
		const int read = fast_body(body, got, 8, &n);
		if (read)
			h_note("'%s' was read", body);
		CHECK(!read);
	}
}
