/*
 * test_delta.c - the delta hash map against a sorted-array reference, and
 * the stable radix sort against qsort.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delta.h"
#include "harness.h"
#include "sort.h"

/* ---- the reference: (key, ref, order) sorted by key, then order ---- */

struct op {
	uint64_t key, ref, order;
};

static int by_key_order(const void *a, const void *b)
{
	const struct op *x = a, *y = b;
	if (x->key != y->key)
		return (x->key > y->key) - (x->key < y->key);
	return (x->order > y->order) - (x->order < y->order);
}

/* Sort OPS and keep the last op of each key: the map's expected state. */
static size_t reference(struct op *ops, size_t n)
{
	qsort(ops, n, sizeof *ops, by_key_order);
	size_t u = 0;
	for (size_t i = 0; i < n; i++) {
		if (u && ops[u - 1].key == ops[i].key)
			ops[u - 1] = ops[i];
		else
			ops[u++] = ops[i];
	}
	return u;
}

static const struct op *ref_find(const struct op *r, size_t n, uint64_t key)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && r[lo].key == key ? &r[lo] : NULL;
}

static size_t ref_lower(const struct op *r, size_t n, uint64_t key)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A random, valid reference: slot < 2^23, offset in [48, 2^40), maybe a
 * tombstone.  Never 0. */
static uint64_t random_ref(void)
{
	uint64_t ref = DELTA_REF(h_below(1u << 23),
				 48 + h_below(((uint64_t)1 << 40) - 48));
	if (h_below(4) == 0)
		ref |= DELTA_TOMB;
	return ref;
}

TEST(ref_encoding)
{
	uint64_t r = DELTA_REF(5, 1234);
	CHECK_EQ_U64(DELTA_SLOT(r), 5);
	CHECK_EQ_U64(DELTA_OFF(r), 1234);
	CHECK_EQ_U64(DELTA_SLOT(r | DELTA_TOMB), 5);
	CHECK_EQ_U64(DELTA_OFF(r | DELTA_TOMB), 1234);
	uint64_t big = DELTA_REF((1u << 23) - 1, ((uint64_t)1 << 40) - 1);
	CHECK_EQ_U64(DELTA_SLOT(big), (1u << 23) - 1);
	CHECK_EQ_U64(DELTA_OFF(big), ((uint64_t)1 << 40) - 1);
	CHECK(!(big & DELTA_TOMB));
}

TEST(empty_map)
{
	struct delta d;
	struct delta_ent *v = NULL;
	size_t n = 99;
	kyro__delta_init(&d);
	CHECK_EQ_U64(delta_get(&d, 0), 0);
	CHECK_EQ_U64(delta_get(&d, UINT64_MAX), 0);
	CHECK_RC(kyro__delta_sorted(&d, 0, UINT64_MAX, &v, &n), 0);
	CHECK_EQ_U64(n, 0);
	free(v);
	kyro__delta_clear(&d);
	kyro__delta_free(&d);
	kyro__delta_free(&d);
	CHECK_EQ_U64(d.count, 0);
}

TEST(set_get_overwrite_tombstone_against_a_reference)
{
	const size_t n = 1000000;
	struct op *ops = malloc(n * sizeof *ops);
	struct delta d;
	REQUIRE(ops);
	kyro__delta_init(&d);
	/* Draw keys from a pool of 600k so that about a third of the sets
	 * overwrite; 0 and UINT64_MAX are in it, and keys that share their
	 * low or high bits (bad for a careless hash). */
	const size_t pool = 600000;
	uint64_t *keys = malloc(pool * sizeof *keys);
	REQUIRE(keys);
	for (size_t i = 0; i < pool; i++) {
		switch (i % 4) {
		case 0:
			keys[i] = h_rand();
			break;
		case 1:
			keys[i] = i << 32;
			break;
		case 2:
			keys[i] = i;
			break;
		default:
			keys[i] = UINT64_MAX - i;
		}
	}
	keys[4] = UINT64_MAX; /* i%4 == 0 slots are random; pin two */
	keys[8] = 0;
	uint64_t fails = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t key = i < 2 ? (i ? UINT64_MAX : 0) : keys[h_below(pool)];
		uint64_t ref = random_ref();
		ops[i] = (struct op){key, ref, i};
		if (kyro__delta_set(&d, key, ref))
			fails++;
		/* Every set is visible at once. */
		if (delta_get(&d, key) != ref)
			fails++;
	}
	CHECK_EQ_U64(fails, 0);
	size_t u = reference(ops, n);
	CHECK_EQ_U64(d.count, u);
	CHECK(u < n); /* overwrites happened */
	uint64_t wrong = 0;
	for (size_t i = 0; i < u; i++)
		wrong += delta_get(&d, ops[i].key) != ops[i].ref;
	CHECK_EQ_U64(wrong, 0);
	CHECK(ref_find(ops, u, 0) != NULL);
	CHECK(ref_find(ops, u, UINT64_MAX) != NULL);
	CHECK_EQ_U64(delta_get(&d, 0), ref_find(ops, u, 0)->ref);
	CHECK_EQ_U64(delta_get(&d, UINT64_MAX),
		     ref_find(ops, u, UINT64_MAX)->ref);
	/* Absent keys. */
	uint64_t absent = 0, misses = 0;
	for (int i = 0; i < 200000; i++) {
		uint64_t key = h_rand();
		if (ref_find(ops, u, key))
			continue;
		absent++;
		misses += delta_get(&d, key) != 0;
	}
	CHECK(absent > 190000);
	CHECK_EQ_U64(misses, 0);

	/* Turning every key into a tombstone and back keeps the count. */
	for (size_t i = 0; i < u; i += 3)
		kyro__delta_set(&d, ops[i].key, ops[i].ref | DELTA_TOMB);
	wrong = 0;
	for (size_t i = 0; i < u; i++) {
		uint64_t want = i % 3 == 0 ? ops[i].ref | DELTA_TOMB : ops[i].ref;
		wrong += delta_get(&d, ops[i].key) != want;
	}
	CHECK_EQ_U64(wrong, 0);
	CHECK_EQ_U64(d.count, u);

	/* Clear empties the map and keeps it usable. */
	kyro__delta_clear(&d);
	CHECK_EQ_U64(d.count, 0);
	CHECK_EQ_U64(delta_get(&d, ops[0].key), 0);
	CHECK_EQ_U64(delta_get(&d, ops[u - 1].key), 0);
	CHECK_RC(kyro__delta_set(&d, 7, DELTA_REF(1, 48)), 0);
	CHECK_EQ_U64(delta_get(&d, 7), DELTA_REF(1, 48));
	CHECK_EQ_U64(d.count, 1);
	kyro__delta_free(&d);
	free(keys);
	free(ops);
}

TEST(sorted_ranges_against_the_reference)
{
	const size_t n = 50000;
	struct op *ops = malloc((n + 4) * sizeof *ops);
	struct delta d;
	REQUIRE(ops);
	kyro__delta_init(&d);
	size_t k = 0;
	const uint64_t edges[] = {0, 1, UINT64_MAX - 1, UINT64_MAX};
	for (int e = 0; e < 4; e++, k++) {
		ops[k] = (struct op){edges[e], random_ref(), k};
		kyro__delta_set(&d, ops[k].key, ops[k].ref);
	}
	for (size_t i = 0; i < n; i++, k++) {
		/* Half small keys (dense, many overwrites), half wide. */
		uint64_t key = i % 2 ? h_below(20000) : h_rand();
		ops[k] = (struct op){key, random_ref(), k};
		kyro__delta_set(&d, key, ops[k].ref);
	}
	size_t u = reference(ops, k);
	CHECK_EQ_U64(d.count, u);
	struct {
		uint64_t lo, hi;
	} ranges[40] = {
		{0, UINT64_MAX}, {0, 0}, {UINT64_MAX, UINT64_MAX},
		{1, UINT64_MAX - 1}, {5, 4}, {UINT64_MAX, 0},
		{100, 100}, {0, 19999}, {20000, UINT64_MAX},
	};
	for (int r = 9; r < 40; r++) {
		uint64_t a = r % 2 ? h_below(25000) : h_rand();
		uint64_t b = r % 2 ? a + h_below(3000) : h_rand();
		ranges[r].lo = a < b ? a : b;
		ranges[r].hi = a < b ? b : a;
	}
	for (int r = 0; r < 40; r++) {
		struct delta_ent *v = NULL;
		size_t m = 12345;
		uint64_t lo = ranges[r].lo, hi = ranges[r].hi;
		if (!CHECK_RC(kyro__delta_sorted(&d, lo, hi, &v, &m), 0))
			continue;
		size_t first = ref_lower(ops, u, lo);
		size_t last = hi == UINT64_MAX ? u : ref_lower(ops, u, hi + 1);
		size_t want = lo > hi ? 0 : last - first;
		if (CHECK_EQ_U64(m, want)) {
			uint64_t wrong = 0;
			for (size_t i = 0; i < m; i++)
				wrong += v[i].key != ops[first + i].key ||
					 v[i].ref != ops[first + i].ref;
			CHECK_EQ_U64(wrong, 0);
		}
		free(v);
	}
	kyro__delta_free(&d);
	free(ops);
}

/* ---- kyro__sort_ents ---- */

static int by_key_then_ref(const void *a, const void *b)
{
	const struct delta_ent *x = a, *y = b;
	if (x->key != y->key)
		return (x->key > y->key) - (x->key < y->key);
	return (x->ref > y->ref) - (x->ref < y->ref);
}

/* Sort V with kyro__sort_ents; REF holds the insertion index, so qsort by
 * (key, ref) gives the one stable answer.  Returns 1 when they agree. */
static int sort_matches(struct delta_ent *v, size_t n)
{
	struct delta_ent *want = malloc((n ? n : 1) * sizeof *want);
	if (!want)
		return 0;
	for (size_t i = 0; i < n; i++)
		v[i].ref = i + 1;
	memcpy(want, v, n * sizeof *v);
	qsort(want, n, sizeof *want, by_key_then_ref);
	int ok = kyro__sort_ents(v, n) == 0 &&
		 (n == 0 || memcmp(v, want, n * sizeof *v) == 0);
	free(want);
	return ok;
}

enum shape { RANDOM, ALL_EQUAL, SORTED, REVERSE, TOP_BYTE, FEW, LOW_BYTE,
	     SHAPES };

static const char *const shape_name[] = {
	"random", "all-equal", "sorted", "reverse", "top-byte", "few-distinct",
	"low-byte"};

static void make_shape(struct delta_ent *v, size_t n, enum shape s)
{
	for (size_t i = 0; i < n; i++) {
		switch (s) {
		case RANDOM:
			v[i].key = h_rand();
			break;
		case ALL_EQUAL:
			v[i].key = 0x0123456789ABCDEFull;
			break;
		case SORTED:
			v[i].key = i * 0x10001ull;
			break;
		case REVERSE:
			v[i].key = (n - i) * 0x9E3779B9ull;
			break;
		case TOP_BYTE:
			/* Keys differ only in the top byte: one pass
			 * must do all the work. */
			v[i].key = (h_below(256) << 56) | 0x00AABBCCDDEEFF11ull;
			break;
		case FEW:
			v[i].key = h_below(5) * 0x0101010101010101ull;
			break;
		case LOW_BYTE:
			v[i].key = 0xFF00000000000000ull | h_below(256);
			break;
		case SHAPES:
			break;
		}
	}
}

TEST(sort_is_stable_and_matches_qsort)
{
	const size_t sizes[] = {0, 1, 2, 3, 63, 64, 65, 100, 1000, 4097,
				200000};
	for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
		size_t n = sizes[z];
		struct delta_ent *v = malloc((n ? n : 1) * sizeof *v);
		REQUIRE(v);
		for (int s = 0; s < SHAPES; s++) {
			make_shape(v, n, (enum shape)s);
			if (!CHECK(sort_matches(v, n)))
				h_note("n=%zu, %s keys", n, shape_name[s]);
		}
		free(v);
	}
	/* Extremes of the key range, shuffled, with duplicates. */
	struct delta_ent e[300];
	for (size_t i = 0; i < 300; i++) {
		const uint64_t pick[] = {0, 1, UINT64_MAX, UINT64_MAX - 1,
					 1ull << 63, (1ull << 63) - 1};
		e[i].key = pick[h_below(6)];
	}
	CHECK(sort_matches(e, 300));
	CHECK(sort_matches(e, 40));
}

TEST(sort_keeps_the_newest_last_for_compaction)
{
	/* The use the sort is for: the last of a run of equal keys is the
	 * newest record. */
	const size_t n = 10000;
	struct delta_ent *v = malloc(n * sizeof *v);
	REQUIRE(v);
	for (size_t i = 0; i < n; i++) {
		v[i].key = h_below(100) << 48;
		v[i].ref = DELTA_REF(0, 48 + 8 * i);
	}
	REQUIRE(CHECK_RC(kyro__sort_ents(v, n), 0));
	uint64_t bad = 0;
	for (size_t i = 1; i < n; i++)
		bad += v[i - 1].key > v[i].key ||
		       (v[i - 1].key == v[i].key && v[i - 1].ref >= v[i].ref);
	CHECK_EQ_U64(bad, 0);
	free(v);
}
