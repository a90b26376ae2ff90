/*
 * fuzz_rmi.c - libFuzzer target for the learned-index loader.
 *
 * Input: u16 key count, u64 key seed, u8 mode, then bytes.  The keys are
 * a sorted unique set made from the seed.  Mode bit 0 clear: the bytes
 * are the index image.  Set: a real image is trained over the keys and
 * the bytes are XORed into it cyclically from an offset, so the fuzzer
 * starts next to valid images without a seed generator.
 *
 * Oracle: kyro__rmi_load may refuse anything, but whatever it accepts must
 * answer every lower bound exactly (the probe confirms its answer and
 * falls back), present keys and absent ones alike.  And whatever header
 * kyro__rmi_probe accepts, the hint read from the rest of the bytes
 * (kyro__rmi_hint) reads only inside them and gives a window in [0, n],
 * the loaded index's own window when the load accepts the image too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rmi.h"

/* The snapshot identity (.bin header checksum) the indexes here are bound
 * to: any value will do, as long as build and load agree. */
#define SNAP_SUM 0x5eed5eed5eed5eedull

const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "halt_on_error=1"; }
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t make_keys(uint64_t *k, uint64_t n, uint64_t seed)
{
	uint64_t s = seed, m = 0;
	int shape = (int)(seed & 3);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t r = mix(&s);
		/* uniform, dense, clustered, and low bits only */
		k[i] = shape == 0 ? r : shape == 1 ? (seed >> 8) + i
		     : shape == 2 ? (r & 0xffff000000000000ull) | (r & 0xfff)
				  : r & 0xffff;
	}
	qsort(k, n, sizeof *k, cmp);
	for (uint64_t i = 0; i < n; i++)
		if (m == 0 || k[i] != k[m - 1])
			k[m++] = k[i];
	return m;
}

struct mem {
	const uint8_t *p;
	size_t len;
};

static int mem_read(void *arg, void *buf, size_t len, uint64_t off)
{
	const struct mem *m = arg;
	if (off > m->len || len > m->len - off)
		abort(); /* the header promised the file's size */
	memcpy(buf, m->p + off, len);
	return 0;
}

/* The hint of every key of Q's kind, against the loaded index R (NULL:
 * the load refused the image). */
static void check_hint(const void *img, size_t len, const uint64_t *keys,
		       uint64_t n, uint64_t seed, const struct kyro__rmi *r)
{
	struct kyro__rmi_info info;
	if (kyro__rmi_probe(img, len, n ? keys[0] : 0, n ? keys[n - 1] : 0, n,
			    7, SNAP_SUM, &info, NULL, 0))
		return;
	struct mem m = {img, len};
	uint64_t s = seed ^ 0xaaaa;
	for (uint64_t i = 0; i < n + 64; i++) {
		uint64_t q = i < n ? keys[i] + (i & 1) : mix(&s);
		uint64_t lo, hi, wlo, whi;
		if (kyro__rmi_hint(img, len, n, q, mem_read, &m, &lo, &hi)) {
			if (r)
				abort(); /* a loaded index always hints */
			continue;
		}
		if (lo > hi || hi > n)
			abort();
		if (r) {
			kyro__rmi_window(r, q, &wlo, &whi);
			if (lo != wlo || hi != whi)
				abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 11)
		return 0;
	uint16_t n16;
	uint64_t seed;
	memcpy(&n16, data, 2);
	memcpy(&seed, data + 2, 8);
	uint8_t mode = data[10];
	data += 11;
	size -= 11;
	uint64_t n = n16 % 4096;
	uint64_t *keys = malloc((n ? n : 1) * sizeof *keys);
	if (!keys)
		return 0;
	n = make_keys(keys, n, seed);
	const uint64_t gen = 7;
	void *img = NULL;
	size_t len = 0;
	char err[256];
	if (mode & 1) {
		if (kyro__rmi_train(keys, n, gen, SNAP_SUM,
				    NULL, &img, &len, NULL, err,
				    sizeof err) ||
		    len == 0) {
			free(img);
			free(keys);
			return 0;
		}
		size_t at = size >= 2 ? (size_t)(data[0] | data[1] << 8) % len : 0;
		for (size_t i = 2; i < size; i++)
			((uint8_t *)img)[(at + i) % len] ^= data[i];
	} else {
		img = malloc(size ? size : 1);
		if (!img) {
			free(keys);
			return 0;
		}
		memcpy(img, data, size);
		len = size;
	}
	struct kyro__rmi *r = NULL;
	if (kyro__rmi_load(&r, img, len, keys, n, gen, SNAP_SUM,
			   err, sizeof err) != 0)
		check_hint(img, len, keys, n, seed, NULL);
	if (r) {
		check_hint(img, len, keys, n, seed, r);
		uint64_t bad, first;
		kyro__rmi_check_all(r, &bad, &first);
		struct kyro__rmi_counters c = {0};
		kyro__rmi_count_windows(r, 1);
		uint64_t s = seed ^ 0x5555;
		for (uint64_t i = 0; i < n + 64; i++) {
			uint64_t q = i < n ? keys[i] : mix(&s);
			if (i < n && (i & 1))
				q += 1; /* an absent neighbour */
			if (kyro__rmi_lower_bound(r, q, &c) !=
			    kyro__lower_bound_binary(keys, n, q))
				abort();
		}
		kyro__rmi_free(r);
	}
	free(img);
	free(keys);
	return 0;
}
