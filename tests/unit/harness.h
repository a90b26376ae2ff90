/*
 * harness.h - a tiny unit-test framework for libkyro (no dependencies).
 *
 *   TEST(name) { ... CHECK(x); CHECK_EQ_U64(a, b); CHECK_RC(f(), 0); }
 *
 * Tests register themselves and run in source order.  A failed check
 * prints FILE:LINE with the values and counts against the running test;
 * the test goes on (REQUIRE stops it, for preconditions later checks need).
 * main() (in harness.c) runs every test whose name contains argv[1] (all
 * without it), prints one line per test, and ends with exactly the line
 * "N passed, N failed"; the exit status is non-zero on any failure.
 *
 * Every test gets a private temporary directory root: h_tmpdir() makes a
 * fresh directory under it, and everything is removed recursively at the
 * end (kept when KYRO_TEST_KEEP is set, to look at after a failure).
 * Randomness is deterministic: h_seed() and a splitmix64 generator.
 */
#ifndef KYRO_TEST_HARNESS_H
#define KYRO_TEST_HARNESS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

typedef void (*h_test_fn)(void);
void h_register(const char *name, h_test_fn fn, const char *file, int line);

#define TEST(name)                                                           \
	static void test_##name(void);                                       \
	__attribute__((constructor)) static void register_##name(void)      \
	{                                                                    \
		h_register(#name, test_##name, __FILE__, __LINE__);          \
	}                                                                    \
	static void test_##name(void)

/* Each returns 1 when the check held, so a test can guard what follows. */
int h_check(int ok, const char *file, int line, const char *expr);
int h_check_u64(uint64_t a, uint64_t b, const char *file, int line,
		const char *ea, const char *eb);
int h_check_rc(int got, int want, const char *file, int line,
	       const char *expr);
int h_check_str_has(const char *hay, const char *needle, const char *file,
		    int line, const char *ehay);
int h_check_mem(const void *a, const void *b, size_t n, const char *file,
		int line, const char *ea, const char *eb);

#define CHECK(cond) h_check(!!(cond), __FILE__, __LINE__, #cond)
#define CHECK_EQ_U64(a, b)                                                   \
	h_check_u64((uint64_t)(a), (uint64_t)(b), __FILE__, __LINE__, #a, #b)
#define CHECK_RC(expr, rc) h_check_rc((expr), (rc), __FILE__, __LINE__, #expr)
#define CHECK_STR_HAS(hay, needle)                                           \
	h_check_str_has((hay), (needle), __FILE__, __LINE__, #hay)
#define CHECK_MEM(a, b, n) h_check_mem((a), (b), (n), __FILE__, __LINE__, #a, #b)

/* Stop the test (returning from it) when COND fails. */
#define REQUIRE(cond)                                                        \
	do {                                                                 \
		if (!CHECK(cond))                                            \
			return;                                              \
	} while (0)

/* Print a note to stderr, prefixed with the test name (printf format). */
void h_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- deterministic randomness (splitmix64) ---- */
void h_seed(uint64_t seed);
uint64_t h_rand(void);
uint64_t h_below(uint64_t n); /* uniform in [0, n), n > 0 */
void h_fill(void *buf, size_t n);
/* A stateless mix of X: the same input gives the same output anywhere. */
uint64_t h_mix(uint64_t x);
/* Fill BUF with bytes derived from SEED only. */
void h_fill_seeded(void *buf, size_t n, uint64_t seed);

/* ---- files ---- */
/* A new empty directory under this run's root (abort on failure). */
const char *h_tmpdir(void);
/* DIR "/" NAME into a static ring of buffers (valid for a few calls). */
const char *h_path(const char *dir, const char *name);
/* Whole-file helpers; each returns 0 or an errno value. */
int h_read_file(const char *path, unsigned char **buf, size_t *len);
int h_write_file(const char *path, const void *buf, size_t len);
int h_append_file(const char *path, const void *buf, size_t len);
int h_truncate_file(const char *path, uint64_t len);
int h_xor_byte(const char *path, uint64_t off, unsigned char x);
int h_copy_file(const char *from, const char *to);
/* The size of PATH, or UINT64_MAX when it cannot be stat'ed. */
uint64_t h_file_size(const char *path);
int h_exists(const char *path);
/* Remove DIR and everything under it. */
void h_rmtree(const char *dir);
/* How many entries of DIR have names ending in SUFFIX. */
int h_count_suffix(const char *dir, const char *suffix);

#endif
