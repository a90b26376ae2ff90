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
 *
 * Large arrays are sorted by two threads: each counts and scatters its
 * half of the input (the first half's items go first within a bucket, so
 * the scatter stays stable), then each sorts the buckets holding about
 * half of the items.  The scratch array is on huge pages: on a virtual
 * machine a 4 KiB page fault can cost 10 us, and 160 MB of them cost
 * more than the sort.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "delta.h"
#include "fsio.h"
#include "internal.h"
#include "sort.h"

#define TOP_BITS 11
#define SMALL 48
/* Below this many items a second thread costs more than it saves. */
#define PARALLEL_MIN ((size_t)1 << 20)

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

/* One thread's share of the work: the items [from, to) of the input for
 * the first pass, the buckets [b0, b1) for the second. */
struct part {
	struct delta_ent *v, *tmp;
	size_t from, to;
	size_t *count; /* nb + 1 counters, then the bucket's write position */
	size_t b0, b1;
	const size_t *start; /* where each bucket starts in tmp (nb + 1) */
	uint64_t lo;
	unsigned shift;
};

static void *count_part(void *arg)
{
	struct part *p = arg;
	for (size_t i = p->from; i < p->to; i++)
		p->count[(p->v[i].key - p->lo) >> p->shift]++;
	return NULL;
}

static void *scatter_part(void *arg)
{
	struct part *p = arg;
	for (size_t i = p->from; i < p->to; i++)
		p->tmp[p->count[(p->v[i].key - p->lo) >> p->shift]++] = p->v[i];
	return NULL;
}

/* Each bucket is sorted in tmp (scratch: its slice of v), then copied
 * home while it is still in cache. */
static void *buckets_part(void *arg)
{
	struct part *p = arg;
	for (size_t b = p->b0; b < p->b1; b++) {
		size_t s = p->start[b], cnt = p->start[b + 1] - s;
		split(p->tmp + s, p->v + s, cnt, p->lo, p->shift);
		memcpy(p->v + s, p->tmp + s, cnt * sizeof *p->v);
	}
	return NULL;
}

/* Run FN on P[0] here and on P[1] on a second thread when TWO (and the
 * thread can be had). */
static void run2(void *(*fn)(void *), struct part *p, int two)
{
	pthread_t t;
	int spawned = two && pthread_create(&t, NULL, fn, &p[1]) == 0;
	fn(&p[0]);
	if (spawned)
		pthread_join(t, NULL);
	else if (two)
		fn(&p[1]);
}

static void sort_top(struct delta_ent *v, struct delta_ent *tmp, size_t n,
		     size_t *count, size_t *start, size_t nb, uint64_t lo,
		     unsigned shift)
{
	int two = n >= PARALLEL_MIN;
	size_t half = two ? n / 2 : n;
	struct part p[2] = {
		{v, tmp, 0, half, count, 0, 0, start, lo, shift},
		{v, tmp, half, n, count + nb + 1, 0, 0, start, lo, shift},
	};
	run2(count_part, p, two);
	/* Bucket b takes the first half's items, then the second's. */
	size_t at = 0;
	for (size_t b = 0; b < nb; b++) {
		size_t c0 = p[0].count[b], c1 = two ? p[1].count[b] : 0;
		start[b] = at;
		p[0].count[b] = at;
		if (two)
			p[1].count[b] = at + c0;
		at += c0 + c1;
	}
	start[nb] = at;
	run2(scatter_part, p, two);
	/* Split the buckets where the items are halved. */
	size_t mid = 0;
	while (two && mid < nb && start[mid] < half)
		mid++;
	p[0].b0 = 0;
	p[0].b1 = two ? mid : nb;
	p[1].b0 = mid;
	p[1].b1 = nb;
	run2(buckets_part, p, two);
}

int kyro__sort_ents(struct delta_ent *v, size_t n)
{
	return kyro__sort_ents_with(v, n, NULL);
}

int kyro__sort_ents_with(struct delta_ent *v, size_t n,
			 struct delta_ent *scratch)
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
	struct delta_ent *tmp =
		scratch ? scratch : kyro__fs_alloc_huge(n * sizeof *tmp);
	size_t *count = calloc(2 * (nb + 1), sizeof *count);
	size_t *start = malloc((nb + 1) * sizeof *start);
	int rc = tmp && count && start ? 0 : ENOMEM;
	if (!rc)
		sort_top(v, tmp, n, count, start, nb, lo, shift);
	if (!scratch)
		kyro__fs_free_huge(tmp, n * sizeof *tmp);
	free(count);
	free(start);
	return rc;
}
