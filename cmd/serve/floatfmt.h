/*
 * floatfmt.h - a float32 as short decimal text that reads back to it.
 */
#ifndef KYRO_SERVE_FLOATFMT_H
#define KYRO_SERVE_FLOATFMT_H

#include <stddef.h>

#define FLOATFMT_MAX 32

/*
 * F as the shortest of printf's "%.6g", "%.7g", "%.8g" that strtof()
 * reads back to F, else "%.9g" (which always does), byte for byte, into
 * OUT, NUL-terminated; returns its length.  Infinities and NaN come out
 * as printf writes them.
 */
size_t floatfmt(char out[FLOATFMT_MAX], float f);

#endif
