/*
 * test_floatfmt.c - the daemon's float formatter (cmd/serve/floatfmt.c)
 * writes, byte for byte, what snprintf() and strtof() make of a float:
 * the first of "%.6g" to "%.8g" that reads back, else "%.9g".  Its
 * double-arithmetic path must agree on every float it takes, the edges
 * of its range, powers of two and ten, and the ties included.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#include "../../cmd/serve/floatfmt.h"

static void reference(char *out, float f)
{
	for (int prec = 6; prec <= 9; prec++) {
		snprintf(out, FLOATFMT_MAX, "%.*g", prec, (double)f);
		if (prec == 9 || strtof(out, NULL) == f)
			break;
	}
}

static int agrees(float f)
{
	char got[FLOATFMT_MAX], want[FLOATFMT_MAX];
	const size_t n = floatfmt(got, f);
	reference(want, f);
	if (strcmp(got, want) || n != strlen(got)) {
		h_note("%a: got '%s', want '%s'", (double)f, got, want);
		return 0;
	}
	return 1;
}

static float from_bits(uint32_t b)
{
	float f;
	memcpy(&f, &b, sizeof f);
	return f;
}

TEST(floatfmt_fixed_values)
{
	static const float v[] = {
		0.0f, -0.0f, 1.0f, -1.0f, 0.1f, 0.5f, 1.5f, 2.0f, 10.0f,
		100000.0f, 999999.0f, 1000000.0f, 1234567.0f, 1230000.0f,
		9999995.0f, 9999999.0f, 16777216.0f, 16777217.0f, 1e7f,
		123456789.0f, 4294967296.0f, 1e-4f, 1.5e-5f, 0.000123456f,
		0.7071068f, 3.14159265f, 1e-14f, 1e-15f, 9.9e-15f, 1e27f,
		1e28f, 9.99e27f, 3.4028235e38f, 1.17549435e-38f, 1e-45f,
		INFINITY, -INFINITY, 2500000.0f, 51000000.0f,
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
		CHECK(agrees(v[i]));
	CHECK(agrees(nanf("")));
}

/* Every power of two and its neighbours (a power of two's lower
 * half-way point is nearer), every power of ten's float and neighbours. */
TEST(floatfmt_powers)
{
	unsigned bad = 0;
	for (int e = -149; e <= 127; e++) {
		const float p = ldexpf(1.0f, e);
		bad += !agrees(p) + !agrees(nextafterf(p, 0)) +
		       !agrees(nextafterf(p, INFINITY)) + !agrees(-p);
	}
	for (int e = -45; e <= 38; e++) {
		const float p = (float)pow(10, e);
		bad += !agrees(p) + !agrees(nextafterf(p, 0)) +
		       !agrees(nextafterf(p, INFINITY));
	}
	CHECK(bad == 0);
}

/* Random bit patterns: every exponent, both signs. */
TEST(floatfmt_random_floats)
{
	unsigned bad = 0;
	h_seed(29);
	for (int i = 0; i < 1000000 && bad < 10; i++)
		bad += !agrees(from_bits((uint32_t)h_rand()));
	CHECK(bad == 0);
}

/* Values with few significant digits, where the rounding to 6 to 8
 * digits lands on or next to a tie, and integers (L2 distances of
 * integer data). */
TEST(floatfmt_short_decimals_and_integers)
{
	unsigned bad = 0;
	h_seed(30);
	for (int i = 0; i < 300000 && bad < 10; i++) {
		const double m = (double)h_below(100000000);
		const int e = (int)h_below(40) - 20;
		const float f = (float)(m * pow(10, e));
		bad += !agrees(f) + !agrees(nextafterf(f, 0)) +
		       !agrees(nextafterf(f, INFINITY));
		bad += !agrees((float)h_below(1u << 31));
	}
	CHECK(bad == 0);
}
