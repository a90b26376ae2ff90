/*
 * gen-roundtrip.c - input and expected output for the round trip of
 * random binary values (tests/bats/75-roundtrip.bats).
 *
 *   gen-roundtrip SEED N OUTDIR
 *
 * writes into OUTDIR:
 *   load.tsv     N lines KEY<TAB>VALUE for kyro-put: random u64 keys (some
 *                repeated, so the last one in the batch must win; 0 and
 *                2^64-1 always present), in decimal or 0x hex of either
 *                case; values of 0..64 random bytes, NUL, tab, newline,
 *                CR, backslash and bytes >= 0x80 included, each byte
 *                written raw where kyro-put allows it or as an escape
 *                (\\ \t \n \r \0 \xHH, HH of either case) at random;
 *   expect1.tsv  what `kyro-get --all --format=tsv` must print after
 *                loading it: ascending keys in decimal, latest value per
 *                key, in kyro-get's own escaping (man/kyro-get.1);
 *   over.tsv     N/10 overwrites: existing keys with new values, and new
 *                keys;
 *   del.txt      N/20 keys to delete, one per line: existing keys, keys
 *                just overwritten, absent keys;
 *   expect2.tsv  the dump after loading over.tsv and then deleting del.txt.
 *
 * The generator is the oracle: it never runs a KyroDB tool.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec {
	uint64_t key;
	uint64_t seq; /* order written: the latest wins */
	int del;
	unsigned char len;
	unsigned char val[64];
};

static uint64_t rng;

static uint64_t next(void)
{
	/* splitmix64 */
	uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static unsigned below(unsigned n) { return (unsigned)(next() % n); }

static FILE *create(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f) {
		perror(path);
		exit(2);
	}
	return f;
}

static void finish(FILE *f)
{
	if (ferror(f) || fclose(f) != 0) {
		perror("gen-roundtrip: write");
		exit(2);
	}
}

static void put_key(FILE *f, uint64_t k)
{
	switch (below(8)) {
	case 0:
		fprintf(f, "0x%" PRIx64, k);
		break;
	case 1:
		fprintf(f, "0x%016" PRIX64, k);
		break;
	case 2:
		fprintf(f, "000%" PRIu64, k);
		break;
	default:
		fprintf(f, "%" PRIu64, k);
	}
}

static void random_value(struct rec *r)
{
	static const unsigned char special[] = {0,   '\t', '\n', '\r', '\\',
						0x7f, 0x80, 0xff, 'x', '0',
						'n', 0x1b, ' '};
	r->len = (unsigned char)below(65);
	for (unsigned i = 0; i < r->len; i++)
		r->val[i] = below(10) < 3 ? special[below(sizeof special)]
					  : (unsigned char)below(256);
}

/* A value as kyro-put reads it: raw where allowed, or escaped. */
static void put_input_value(FILE *f, const struct rec *r)
{
	static const char hexl[] = "0123456789abcdef", hexu[] = "0123456789ABCDEF";
	for (unsigned i = 0; i < r->len; i++) {
		unsigned char c = r->val[i];
		/* kyro-put refuses a raw CR that ends the line. */
		int must = c == '\\' || c == '\n' || (c == '\r' && i + 1 == r->len);
		if (!must && below(10) < 6) {
			putc_unlocked(c, f);
			continue;
		}
		const char *hex = below(2) ? hexl : hexu;
		int named = c == '\\' || c == '\t' || c == '\n' || c == '\r' ||
			    c == 0;
		if (named && below(4) != 0) {
			putc_unlocked('\\', f);
			putc_unlocked(c == '\\' ? '\\' : c == '\t' ? 't' : c == '\n' ? 'n'
						: c == '\r' ? 'r' : '0', f);
		} else {
			putc_unlocked('\\', f);
			putc_unlocked('x', f);
			putc_unlocked(hex[c >> 4], f);
			putc_unlocked(hex[c & 15], f);
		}
	}
}

/* A value as kyro-get --format=tsv prints it. */
static void put_output_value(FILE *f, const struct rec *r)
{
	static const char hex[] = "0123456789abcdef";
	for (unsigned i = 0; i < r->len; i++) {
		unsigned char c = r->val[i];
		switch (c) {
		case '\\': fputs_unlocked("\\\\", f); break;
		case '\t': fputs("\\t", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case 0: fputs("\\0", f); break;
		default:
			if (c < 0x20 || c == 0x7f)
				fprintf(f, "\\x%c%c", hex[c >> 4], hex[c & 15]);
			else
				putc_unlocked(c, f);
		}
	}
}

static int by_key_seq(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sort ALL[0..N) and write the latest live record per key. */
static void write_expected(FILE *f, struct rec *all, size_t n)
{
	qsort(all, n, sizeof *all, by_key_seq);
	for (size_t i = 0; i < n; i++) {
		if (i + 1 < n && all[i + 1].key == all[i].key)
			continue;
		if (all[i].del)
			continue;
		fprintf(f, "%" PRIu64 "\t", all[i].key);
		put_output_value(f, &all[i]);
		putc_unlocked('\n', f);
	}
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: gen-roundtrip SEED N OUTDIR\n");
		return 2;
	}
	rng = strtoull(argv[1], NULL, 10);
	size_t n = strtoull(argv[2], NULL, 10);
	const char *dir = argv[3];
	if (n < 100) {
		fprintf(stderr, "gen-roundtrip: N must be at least 100\n");
		return 2;
	}
	size_t nover = n / 10, ndel = n / 20;
	size_t cap = n + nover + ndel;
	struct rec *all = calloc(cap, sizeof *all);
	uint64_t *keys = malloc(n * sizeof *keys); /* keys of load.tsv */
	if (!all || !keys) {
		fprintf(stderr, "gen-roundtrip: out of memory\n");
		return 2;
	}
	size_t m = 0;
	uint64_t seq = 0;

	FILE *f = create(dir, "load.tsv");
	for (size_t i = 0; i < n; i++) {
		struct rec *r = &all[m++];
		if (i == n / 3)
			r->key = 0;
		else if (i == n / 2)
			r->key = UINT64_MAX;
		else if (i > 0 && below(20) == 0)
			r->key = keys[below((unsigned)i)]; /* a repeat */
		else
			r->key = next();
		keys[i] = r->key;
		r->seq = seq++;
		random_value(r);
		put_key(f, r->key);
		putc_unlocked('\t', f);
		put_input_value(f, r);
		putc_unlocked('\n', f);
	}
	finish(f);

	/* expect1 from a sorted copy, so that ALL keeps its order. */
	struct rec *copy = malloc(m * sizeof *copy);
	if (!copy) {
		fprintf(stderr, "gen-roundtrip: out of memory\n");
		return 2;
	}
	memcpy(copy, all, m * sizeof *copy);
	f = create(dir, "expect1.tsv");
	write_expected(f, copy, m);
	finish(f);
	free(copy);

	f = create(dir, "over.tsv");
	uint64_t *overkeys = malloc(nover * sizeof *overkeys);
	for (size_t i = 0; i < nover; i++) {
		struct rec *r = &all[m++];
		r->key = below(10) < 7 ? keys[below((unsigned)n)] : next();
		overkeys[i] = r->key;
		r->seq = seq++;
		random_value(r);
		put_key(f, r->key);
		putc_unlocked('\t', f);
		put_input_value(f, r);
		putc_unlocked('\n', f);
	}
	finish(f);

	f = create(dir, "del.txt");
	for (size_t i = 0; i < ndel; i++) {
		struct rec *r = &all[m++];
		unsigned pick = below(10);
		r->key = pick < 6   ? keys[below((unsigned)n)]
			 : pick < 8 ? overkeys[below((unsigned)nover)]
				    : next();
		r->seq = seq++;
		r->del = 1;
		put_key(f, r->key);
		putc_unlocked('\n', f);
	}
	finish(f);

	f = create(dir, "expect2.tsv");
	write_expected(f, all, m);
	finish(f);
	free(overkeys);
	free(keys);
	free(all);
	return 0;
}
