/* sort.h - a stable radix sort of (key, ref) pairs by key. */
#ifndef KYRO_SORT_H
#define KYRO_SORT_H

#include <stddef.h>

struct delta_ent;
/* Sort V[0..N) by key, keeping the input order among equal keys (so the
 * last of a run is the newest record).  ENOMEM when no scratch space. */
int kyro__sort_ents(struct delta_ent *v, size_t n);

#endif
