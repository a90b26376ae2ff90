/* sort.h - a stable radix sort of (key, ref) pairs by key. */
#ifndef KYRO_SORT_H
#define KYRO_SORT_H

#include <stddef.h>

struct delta_ent;
/* Sort V[0..N) by key, keeping the input order among equal keys (so the
 * last of a run is the newest record).  ENOMEM when no scratch space. */
int kyro__sort_ents(struct delta_ent *v, size_t n);
/* The same with SCRATCH (room for N entries) as the scratch space, or
 * allocated as kyro__sort_ents() does when NULL.  Memory the caller will fill
 * next anyway is the cheapest scratch: its pages are already mapped. */
int kyro__sort_ents_with(struct delta_ent *v, size_t n,
			 struct delta_ent *scratch);

#endif
