/*
 * vecjson.h - a fast path for the common vector search body.
 *
 * jansson allocates a node per number, and a 784-component query costs
 * more to parse that way than a tenth of its search.  vecjson_search()
 * reads the common form of a search body straight into floats, and gives
 * up (returns 0) on anything else, for json_parse_body_signed() and the
 * general path to answer: it accepts only what that path accepts, and
 * reads it to the same query.
 */
#ifndef KYRO_SERVE_VECJSON_H
#define KYRO_SERVE_VECJSON_H

#include <stddef.h>

#include "kyro.h"

/*
 * BODY (LEN bytes) as an object of the members VNAME (an array of 1 to
 * KYRO_MAX_DIM numbers, each finite as a float32), "k" (1 to
 * KYRO_VEC_MAX_K) and "ef" (1 to MAX_EF) as plain integers, "exact" and
 * "with_values" as true or false; at most once each, VNAME required.
 * Returns 1 with Q filled (its vector malloc'd into *VEC, the range all
 * keys, the metric 0) and *WITH_VALUES set; 0 when BODY is not of that
 * form, with nothing allocated.
 */
int vecjson_search(const char *body, size_t len, const char *vname,
		   uint32_t max_ef, struct kyro_vec_query *q, int *with_values,
		   float **vec);

#endif
