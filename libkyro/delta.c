/*
 * delta.c - an open-addressing hash map from key to WAL record.
 *
 * Fibonacci hashing on the key, linear probing, at most half full, so a
 * miss usually costs one cache line.  Entries are never removed (a delete
 * is a tombstone reference), which keeps probing simple.
 */
#include <errno.h>
#include <stdlib.h>

#include "delta.h"
#include "internal.h"
#include "sort.h"

void kyro__delta_init(struct delta *d)
{
	memset(d, 0, sizeof *d);
}

void kyro__delta_free(struct delta *d)
{
	free(d->tab);
	kyro__delta_init(d);
}

void kyro__delta_clear(struct delta *d)
{
	if (d->tab)
		memset(d->tab, 0, d->cap * sizeof *d->tab);
	d->count = 0;
}

static void place(struct delta_ent *tab, size_t cap, unsigned shift,
		  uint64_t key, uint64_t ref)
{
	size_t mask = cap - 1;
	size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> shift);
	while (tab[i].ref != 0 && tab[i].key != key)
		i = (i + 1) & mask;
	tab[i].key = key;
	tab[i].ref = ref;
}

static int grow(struct delta *d)
{
	size_t cap = d->cap ? d->cap * 2 : 1024;
	unsigned shift = 64;
	for (size_t c = cap; c > 1; c >>= 1)
		shift--;
	struct delta_ent *tab = calloc(cap, sizeof *tab);
	if (!tab)
		return ENOMEM;
	for (size_t i = 0; i < d->cap; i++)
		if (d->tab[i].ref)
			place(tab, cap, shift, d->tab[i].key, d->tab[i].ref);
	free(d->tab);
	d->tab = tab;
	d->cap = cap;
	d->shift = shift;
	return 0;
}

int kyro__delta_set(struct delta *d, uint64_t key, uint64_t ref)
{
	KYRO_VERIFY(ref != 0);
	if ((d->count + 1) * 2 > d->cap) {
		int rc = grow(d);
		if (rc)
			return rc;
	}
	size_t mask = d->cap - 1;
	size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> d->shift);
	for (;; i = (i + 1) & mask) {
		struct delta_ent *e = &d->tab[i];
		if (e->ref == 0) {
			e->key = key;
			e->ref = ref;
			d->count++;
			return 0;
		}
		if (e->key == key) {
			e->ref = ref;
			return 0;
		}
	}
}

int kyro__delta_sorted(const struct delta *d, uint64_t lo, uint64_t hi,
		       struct delta_ent **out, size_t *n)
{
	struct delta_ent *v = malloc((d->count ? d->count : 1) * sizeof *v);
	size_t k = 0;
	if (!v)
		return ENOMEM;
	for (size_t i = 0; i < d->cap; i++)
		if (d->tab[i].ref && d->tab[i].key >= lo && d->tab[i].key <= hi)
			v[k++] = d->tab[i];
	int rc = kyro__sort_ents(v, k);
	if (rc) {
		free(v);
		return rc;
	}
	*out = v;
	*n = k;
	return 0;
}
