/*
 * sort.c - a stable sort of (key, ref) pairs by key.
 *
 * Why radix: a snapshot sorts every WAL record since the last one (10M
 * and more); a comparison sort spends ~25 compares per item.  Why two
 * stages: eight LSD passes over a 160 MB array each scatter through DRAM.
 * Instead one MSD pass scatters by the key's position in the key range
 * ((key - min) >> shift, so clustered keys still spread over the buckets)
 * into about 2048 buckets small enough for L2, and each bucket is then
 * LSD-sorted in cache, skipping the bytes all its keys share.  Every pass
 * is stable, so among equal keys the WAL order decides which is newest.
 */
#include <errno.h>
#include <stdlib.h>

#include "delta.h"
#include "internal.h"
#include "sort.h"

#define MSD_BITS 11

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

/* Sort SRC[0..n) into DST (which may receive it via SRC as scratch). */
static void lsd(struct delta_ent *src, struct delta_ent *dst, size_t n)
{
	size_t count[8][256];
	struct delta_ent *out = dst;
	if (n <= 64) {
		memcpy(dst, src, n * sizeof *src);
		insertion(dst, n);
		return;
	}
	memset(count, 0, sizeof count);
	for (size_t i = 0; i < n; i++) {
		uint64_t k = src[i].key;
		for (int b = 0; b < 8; b++)
			count[b][(k >> (8 * b)) & 0xff]++;
	}
	struct delta_ent *a = src, *b = dst;
	for (int d = 0; d < 8; d++) {
		size_t *c = count[d];
		/* A byte every key shares orders nothing: skip the pass. */
		if (c[(a[0].key >> (8 * d)) & 0xff] == n)
			continue;
		size_t sum = 0;
		for (int i = 0; i < 256; i++) {
			size_t t = c[i];
			c[i] = sum;
			sum += t;
		}
		for (size_t i = 0; i < n; i++)
			b[c[(a[i].key >> (8 * d)) & 0xff]++] = a[i];
		struct delta_ent *t = a;
		a = b;
		b = t;
	}
	if (a != out)
		memcpy(out, a, n * sizeof *a);
}

int sort_ents(struct delta_ent *v, size_t n)
{
	if (n <= 64) {
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
	unsigned shift = bits > MSD_BITS ? bits - MSD_BITS : 0;
	size_t nb = (size_t)((hi - lo) >> shift) + 1;
	struct delta_ent *tmp = malloc(n * sizeof *tmp);
	size_t *start = calloc(nb + 1, sizeof *start);
	if (!tmp || !start) {
		free(tmp);
		free(start);
		return ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		start[((v[i].key - lo) >> shift) + 1]++;
	for (size_t b = 0; b < nb; b++)
		start[b + 1] += start[b];
	size_t *fill = malloc(nb * sizeof *fill);
	if (!fill) {
		free(tmp);
		free(start);
		return ENOMEM;
	}
	memcpy(fill, start, nb * sizeof *fill);
	for (size_t i = 0; i < n; i++)
		tmp[fill[(v[i].key - lo) >> shift]++] = v[i];
	free(fill);
	for (size_t b = 0; b < nb; b++)
		lsd(tmp + start[b], v + start[b], start[b + 1] - start[b]);
	free(tmp);
	free(start);
	return 0;
}
