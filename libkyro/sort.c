/*
 * sort.c - LSD radix sort on 64-bit keys, 8 bits per pass, skipping the
 * passes where every key shares the byte.
 *
 * Why radix: a snapshot sorts every WAL record since the last one (10M
 * and more); a comparison sort spends ~25 compares per item where this
 * spends at most 8 sequential passes, fewer on clustered keys.  Stability
 * matters: among equal keys the WAL order decides which value is newest.
 */
#include <errno.h>
#include <stdlib.h>

#include "delta.h"
#include "internal.h"
#include "sort.h"

int sort_ents(struct delta_ent *v, size_t n)
{
	if (n < 2)
		return 0;
	if (n <= 64) {
		for (size_t i = 1; i < n; i++) {
			struct delta_ent t = v[i];
			size_t j = i;
			for (; j > 0 && v[j - 1].key > t.key; j--)
				v[j] = v[j - 1];
			v[j] = t;
		}
		return 0;
	}
	struct delta_ent *tmp = malloc(n * sizeof *tmp);
	size_t(*count)[256] = calloc(8, sizeof *count);
	if (!tmp || !count) {
		free(tmp);
		free(count);
		return ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t k = v[i].key;
		for (int b = 0; b < 8; b++)
			count[b][(k >> (8 * b)) & 0xff]++;
	}
	struct delta_ent *src = v, *dst = tmp;
	for (int b = 0; b < 8; b++) {
		size_t *c = count[b];
		/* A byte every key shares orders nothing: skip the pass. */
		if (c[(src[0].key >> (8 * b)) & 0xff] == n)
			continue;
		size_t sum = 0;
		for (int i = 0; i < 256; i++) {
			size_t t = c[i];
			c[i] = sum;
			sum += t;
		}
		for (size_t i = 0; i < n; i++)
			dst[c[(src[i].key >> (8 * b)) & 0xff]++] = src[i];
		struct delta_ent *t = src;
		src = dst;
		dst = t;
	}
	if (src != v)
		memcpy(v, src, n * sizeof *v);
	free(tmp);
	free(count);
	return 0;
}
