/* delta.h - the in-memory map of WAL records newer than the snapshot. */
#ifndef KYRO_DELTA_H
#define KYRO_DELTA_H

#include <stddef.h>
#include <stdint.h>

/* A reference to a WAL record: segment slot << 40 | byte offset, with the
 * top bit set for a tombstone.  0 is never a valid reference (offset 0 is
 * a segment header), so it marks an empty slot. */
#define DELTA_TOMB ((uint64_t)1 << 63)
#define DELTA_REF(slot, off) (((uint64_t)(slot) << 40) | (uint64_t)(off))
#define DELTA_SLOT(ref) ((size_t)(((ref) & ~DELTA_TOMB) >> 40))
#define DELTA_OFF(ref) ((ref) & (((uint64_t)1 << 40) - 1))

struct delta_ent {
	uint64_t key;
	uint64_t ref;
};

struct delta {
	struct delta_ent *tab; /* open addressing, linear probing */
	size_t cap;            /* a power of two, or 0 */
	size_t count;
	unsigned shift;        /* 64 - log2(cap) */
};

void kyro__delta_init(struct delta *d);
void kyro__delta_free(struct delta *d);
void kyro__delta_clear(struct delta *d);
/* Insert or replace; ENOMEM on failure (the map is unchanged). */
int kyro__delta_set(struct delta *d, uint64_t key, uint64_t ref);

/* The reference for KEY, or 0 when the delta does not know it. */
static inline uint64_t delta_get(const struct delta *d, uint64_t key)
{
	if (d->count == 0)
		return 0;
	size_t mask = d->cap - 1;
	size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> d->shift);
	for (;; i = (i + 1) & mask) {
		const struct delta_ent *e = &d->tab[i];
		if (e->ref == 0)
			return 0;
		if (e->key == key)
			return e->ref;
	}
}

/* Copy the entries with LO <= key <= HI into a new array sorted by key
 * (the caller frees it). */
int kyro__delta_sorted(const struct delta *d, uint64_t lo, uint64_t hi,
		       struct delta_ent **out, size_t *n);

#endif
