/*
 * sort.c - a stable sort of (key, ref) pairs by key.
 *
 * Why radix: a snapshot sorts every WAL record since the last one (10M
 * and more); a comparison sort spends ~25 compares per item.  Why MSD:
 * an LSD pass over a 160 MB array scatters through DRAM, and 64-bit keys
 * need eight of them.  Here the first pass scatters by the key's position
 * in the key range ((key - lo) >> shift, so clustered keys still spread)
 * into ~2048 buckets that fit in L2; each bucket is then split again by
 * the next 8 bits, in cache, until runs are small enough for insertion
 * sort.  Every step is stable, so among equal keys the WAL order decides
 * which is newest.
 */
#include <errno.h>
#include <stdlib.h>

#include "delta.h"
#include "internal.h"
#include "sort.h"

#define TOP_BITS 11
#define SMALL 48

static void insertion(struct delta_ent *v, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct delta_ent t = v[i];
		size_t j = i;
		for (; j > 0 && v[j - 1].key > t.key; j--)
			v[j] = v[j - 1];
		v[j] = t;
	}
}

/* Sort A[0..n), whose keys agree on (key - LO) >> SHIFT, in place; B is
 * scratch of the same size. */
static void split(struct delta_ent *a, struct delta_ent *b, size_t n,
		  uint64_t lo, unsigned shift)
{
	if (n <= SMALL) {
		insertion(a, n);
		return;
	}
	if (shift == 0)
		return; /* all keys equal: already in WAL order */
	unsigned sub = shift > 8 ? shift - 8 : 0;
	size_t start[257] = {0};
	for (size_t i = 0; i < n; i++)
		start[(((a[i].key - lo) >> sub) & 0xff) + 1]++;
	for (int d = 0; d < 256; d++)
		start[d + 1] += start[d];
	size_t fill[256];
	memcpy(fill, start, sizeof fill);
	for (size_t i = 0; i < n; i++)
		b[fill[((a[i].key - lo) >> sub) & 0xff]++] = a[i];
	for (int d = 0; d < 256; d++)
		split(b + start[d], a + start[d], start[d + 1] - start[d], lo,
		      sub);
	memcpy(a, b, n * sizeof *a);
}

int kyro__sort_ents(struct delta_ent *v, size_t n)
{
	if (n <= SMALL) {
		insertion(v, n);
		return 0;
	}
	uint64_t lo = v[0].key, hi = v[0].key;
	for (size_t i = 1; i < n; i++) {
		lo = v[i].key < lo ? v[i].key : lo;
		hi = v[i].key > hi ? v[i].key : hi;
	}
	if (lo == hi)
		return 0;
	unsigned bits = 64 - (unsigned)__builtin_clzll(hi - lo);
	unsigned shift = bits > TOP_BITS ? bits - TOP_BITS : 0;
	size_t nb = (size_t)((hi - lo) >> shift) + 1;
	struct delta_ent *tmp = malloc(n * sizeof *tmp);
	size_t *start = calloc(nb + 1, sizeof *start);
	size_t *fill = malloc(nb * sizeof *fill);
	if (!tmp || !start || !fill) {
		free(tmp);
		free(start);
		free(fill);
		return ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		start[((v[i].key - lo) >> shift) + 1]++;
	for (size_t b = 0; b < nb; b++)
		start[b + 1] += start[b];
	memcpy(fill, start, nb * sizeof *fill);
	for (size_t i = 0; i < n; i++)
		tmp[fill[(v[i].key - lo) >> shift]++] = v[i];
	/* Each bucket is sorted in tmp (scratch: its slice of v), then
	 * copied home while it is still in cache. */
	for (size_t b = 0; b < nb; b++) {
		size_t s = start[b], cnt = start[b + 1] - s;
		split(tmp + s, v + s, cnt, lo, shift);
		memcpy(v + s, tmp + s, cnt * sizeof *v);
	}
	free(tmp);
	free(start);
	free(fill);
	return 0;
}
