/*
 * floatfmt.c - a float32 as the shortest of "%.6g" to "%.9g" that
 * strtof() reads back to it (floatfmt.h).
 *
 * snprintf() and strtof() work in multiple precision: a distance cost
 * 0.5-0.7 us of CPU that way, tried at up to four precisions, more than
 * the rest of a search answer's formatting put together (here about
 * 0.1 us).
 * For a normal float from 1e-14 to 1e27 the same digits come from double
 * arithmetic, exactly:
 *
 * - F to P digits: Y = |F| * 10^S with S = P - 1 - X (X its decimal
 *   exponent) lies in [10^(P-1), 10^P).  10^S is an exact double for
 *   |S| <= 22, and the product (FMA) or quotient (remainder by FMA)
 *   comes as HI plus an exact remainder whose sign is all that is used:
 *   HI has at least 22 bits below its point, so the remainder (under
 *   half of HI's last place) only decides where HI's own fraction is
 *   zero or exactly a half.  So Y rounds to the nearest integer D, ties
 *   to even, as glibc's printf rounds in the default rounding mode.
 * - The round trip: strtof() (correctly rounded, ties to even) reads
 *   D * 10^-S back to F when it lies between F's two half-way points to
 *   its neighbours (either one itself when F's significand is even).
 *   Those points are exact doubles; scaled by the same 10^S they are
 *   compared with D exactly, the same way.
 * - The text is %g's: D's trailing zeros dropped, fixed notation for
 *   -4 <= X < P, else d.ddde+XX.
 *
 * Zero, subnormals, larger or smaller values, infinities and NaN go to
 * snprintf() and strtof() as before.  test_floatfmt checks the two paths
 * agree byte for byte over random floats of every exponent.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "floatfmt.h"

static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,
			     1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
			     1e12, 1e13, 1e14, 1e15, 1e16, 1e17,
			     1e18, 1e19, 1e20, 1e21, 1e22};

/* X * 10^S for |S| <= 22: *HI the rounded value, the sign of the return
 * the sign of what rounding left out (0: nothing). */
static double scale10(double x, int s, double *hi)
{
	if (s >= 0) {
		*hi = x * p10[s];
		return fma(x, p10[s], -*hi);
	}
	*hi = x / p10[-s];
	return fma(-*hi, p10[-s], x);
}

/* The sign of (HI + LO) - N, for N an integer below 2^31 and HI within a
 * factor two of it (so HI - N is exact, and a multiple of HI's last
 * place, which the rest LO is under half of). */
static int cmp_int(double hi, double lo, double n)
{
	const double d = hi - n;
	if (d != 0)
		return d > 0 ? 1 : -1;
	return (lo > 0) - (lo < 0);
}

/* %g's text of D (P digits exactly) times 10^(X - P + 1), negative when
 * NEG, into OUT; its length. */
static size_t text(char *out, int neg, uint64_t d, int p, int x)
{
	char dig[12];
	char *o = out;
	for (int i = p - 1; i >= 0; i--, d /= 10)
		dig[i] = (char)('0' + d % 10);
	int nd = p;
	while (nd > 1 && dig[nd - 1] == '0')
		nd--;
	if (neg)
		*o++ = '-';
	if (x < -4 || x >= p) {
		*o++ = dig[0];
		if (nd > 1) {
			*o++ = '.';
			memcpy(o, dig + 1, (size_t)nd - 1);
			o += nd - 1;
		}
		/* X is within -18..28 here: two digits. */
		*o++ = 'e';
		*o++ = x < 0 ? '-' : '+';
		*o++ = (char)('0' + abs(x) / 10);
		*o++ = (char)('0' + abs(x) % 10);
	} else if (x >= 0) {
		memcpy(o, dig, (size_t)x + 1);
		o += x + 1;
		if (nd > x + 1) {
			*o++ = '.';
			memcpy(o, dig + x + 1, (size_t)(nd - x - 1));
			o += nd - x - 1;
		}
	} else {
		memcpy(o, "0.0000", (size_t)(1 - x));
		o += 1 - x;
		memcpy(o, dig, (size_t)nd);
		o += nd;
	}
	*o = 0;
	return (size_t)(o - out);
}

/* X, the decimal exponent of the positive A: 10^X <= A < 10^(X+1).  0
 * when it is outside -14..27, where some 10^S would not be exact. */
static int exponent10(double a, int *x)
{
	int e = (int)floor(log10(a));
	for (int tries = 0; tries < 3; tries++) {
		if (e < -14 || e > 27)
			return 0;
		double hi;
		double lo = scale10(a, 5 - e, &hi);
		if (cmp_int(hi, lo, 1e5) < 0)
			e--;
		else if (cmp_int(hi, lo, 1e6) >= 0)
			e++;
		else {
			*x = e;
			return 1;
		}
	}
	return 0;
}

/* The fast path; 0 when F is not in its range. */
static size_t fast(char *out, float f)
{
	uint32_t bits;
	memcpy(&bits, &f, sizeof bits);
	const uint32_t be = (bits >> 23) & 0xff, frac = bits & 0x7fffff;
	if (be == 0 || be == 0xff)
		return 0;
	const double a = fabs((double)f);
	const double ulp = ldexp(1.0, (int)be - 127 - 23);
	/* Half-way to the neighbours; the one below is nearer at a power of
	 * two.  A tie goes to the even significand. */
	const double up = a + ulp / 2, down = a - (frac ? ulp / 2 : ulp / 4);
	const int even = !(bits & 1);
	int x0;
	if (!exponent10(a, &x0))
		return 0;
	for (int p = 6;; p++) {
		const int s = p - 1 - x0;
		double hi, hu, hd;
		const double lo = scale10(a, s, &hi);
		const double fl = floor(hi);
		const double half = hi - fl - 0.5;
		const int c = half != 0 ? (half > 0) - (half < 0)
					: (lo > 0) - (lo < 0);
		const uint64_t i = (uint64_t)fl;
		uint64_t d = i + (c > 0 || (c == 0 && (i & 1)));
		int x = x0;
		if (d >= (uint64_t)p10[p]) {
			/* 9.999995 to 6 digits: 10.0000. */
			d /= 10;
			x++;
		}
		if (p == 9)
			return text(out, f < 0, d, p, x);
		const double lu = scale10(up, s, &hu);
		const double ld = scale10(down, s, &hd);
		const double dd = (double)(x == x0 ? d : d * 10);
		const int cu = cmp_int(hu, lu, dd), cd = cmp_int(hd, ld, dd);
		if ((cu > 0 || (cu == 0 && even)) &&
		    (cd < 0 || (cd == 0 && even)))
			return text(out, f < 0, d, p, x);
	}
}

size_t floatfmt(char out[FLOATFMT_MAX], float f)
{
	size_t n = fast(out, f);
	if (n)
		return n;
	for (int prec = 6; prec <= 9; prec++) {
		n = (size_t)snprintf(out, FLOATFMT_MAX, "%.*g", prec,
				     (double)f);
		if (prec == 9 || strtof(out, NULL) == f)
			break;
	}
	return n;
}
