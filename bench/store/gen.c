/*
 * gen.c - the data sets of the store benchmark (bench/store/run.sh).
 *
 *   gen N SEED DATA [M KEYS]
 *
 * writes N lines `KEY<TAB>VALUE` to DATA: KEY a random u64 in decimal,
 * VALUE 16 lowercase hex digits (so no escapes), both drawn from
 * splitmix64 seeded with SEED, so a seed always gives the same file.  Keys
 * are distinct: a repeat (odds about 3e-6 for 10M draws) is redrawn, so
 * the store holds exactly N keys.  With M and KEYS, it also writes M keys
 * to KEYS, one per line, each drawn uniformly (with replacement) from the
 * N, in random order: every one of them is present.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t sm_state;

static uint64_t splitmix64(void)
{
	uint64_t z = (sm_state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* An open-addressing set, only to keep the keys distinct. */
static uint64_t *set;
static size_t set_mask;

static int set_add(uint64_t k)
{
	if (k == 0) /* the empty-slot marker: not a key we draw */
		return 0;
	size_t i = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & set_mask;
	while (set[i]) {
		if (set[i] == k)
			return 0;
		i = (i + 1) & set_mask;
	}
	set[i] = k;
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 6) {
		fprintf(stderr, "usage: gen N SEED DATA [M KEYS]\n");
		return 2;
	}
	size_t n = strtoull(argv[1], NULL, 10);
	sm_state = strtoull(argv[2], NULL, 10);
	size_t m = argc == 6 ? strtoull(argv[4], NULL, 10) : 0;
	size_t cap = 1024;
	while (cap < 2 * n)
		cap <<= 1;
	set = calloc(cap, sizeof *set);
	uint64_t *keys = malloc((n ? n : 1) * sizeof *keys);
	FILE *f = fopen(argv[3], "w");
	if (!set || !keys || !f) {
		perror("gen");
		return 2;
	}
	set_mask = cap - 1;
	static char buf[1 << 20];
	setvbuf(f, buf, _IOFBF, sizeof buf);
	for (size_t i = 0; i < n; i++) {
		uint64_t k;
		do
			k = splitmix64();
		while (!set_add(k));
		keys[i] = k;
		fprintf(f, "%" PRIu64 "\t%016" PRIx64 "\n", k, splitmix64());
	}
	if (fclose(f)) {
		perror(argv[3]);
		return 2;
	}
	if (m) {
		FILE *g = fopen(argv[5], "w");
		if (!g) {
			perror(argv[5]);
			return 2;
		}
		setvbuf(g, buf, _IOFBF, sizeof buf);
		for (size_t i = 0; i < m; i++)
			fprintf(g, "%" PRIu64 "\n", keys[splitmix64() % n]);
		if (fclose(g)) {
			perror(argv[5]);
			return 2;
		}
	}
	free(keys);
	free(set);
	return 0;
}
