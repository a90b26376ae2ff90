/*
 * harness.c - registration, checks, deterministic randomness, temporary
 * directories and main() for the libkyro unit tests.  See harness.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "kyro.h"

struct test {
	const char *name;
	h_test_fn fn;
	const char *file;
	int line;
};

static struct test *tests;
static size_t ntests, captests;

static const char *cur_name = "(none)";
static uint64_t checks, cur_failed, total_failed_checks;
/* A broken loop can fail a million times; print the first few. */
#define MAX_PRINTED 25

/* Room left for the names made under it. */
static char root[PATH_MAX - 64];
static char failed_names[4096];
static unsigned tmp_counter;
static uint64_t rng_state;

void h_register(const char *name, h_test_fn fn, const char *file, int line)
{
	if (ntests == captests) {
		size_t cap = captests ? 2 * captests : 64;
		struct test *t = realloc(tests, cap * sizeof *t);
		if (!t) {
			fputs("harness: out of memory\n", stderr);
			exit(2);
		}
		tests = t;
		captests = cap;
	}
	tests[ntests++] = (struct test){name, fn, file, line};
}

static int by_line(const void *a, const void *b)
{
	const struct test *x = a, *y = b;
	int c = strcmp(x->file, y->file);
	if (c)
		return c;
	return (x->line > y->line) - (x->line < y->line);
}

__attribute__((format(printf, 3, 4))) static void
fail_at(const char *file, int line, const char *fmt, ...)
{
	cur_failed++;
	total_failed_checks++;
	if (cur_failed > MAX_PRINTED) {
		if (cur_failed == MAX_PRINTED + 1)
			fprintf(stderr, "  %s: (further failures not shown)\n",
				cur_name);
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "  %s:%d: %s: ", file, line, cur_name);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int h_check(int ok, const char *file, int line, const char *expr)
{
	checks++;
	if (!ok)
		fail_at(file, line, "CHECK(%s) failed", expr);
	return ok;
}

int h_check_u64(uint64_t a, uint64_t b, const char *file, int line,
		const char *ea, const char *eb)
{
	checks++;
	if (a != b)
		fail_at(file, line,
			"%s == %s failed: %" PRIu64 " (0x%" PRIx64 ") != %" PRIu64
			" (0x%" PRIx64 ")",
			ea, eb, a, a, b, b);
	return a == b;
}

int h_check_rc(int got, int want, const char *file, int line,
	       const char *expr)
{
	checks++;
	if (got != want)
		fail_at(file, line, "%s returned %d (%s), expected %d (%s)",
			expr, got, kyro_strerror(got), want,
			kyro_strerror(want));
	return got == want;
}

int h_check_str_has(const char *hay, const char *needle, const char *file,
		    int line, const char *ehay)
{
	checks++;
	int ok = hay && strstr(hay, needle);
	if (!ok)
		fail_at(file, line, "%s = \"%s\" does not contain \"%s\"", ehay,
			hay ? hay : "(null)", needle);
	return ok;
}

int h_check_mem(const void *a, const void *b, size_t n, const char *file,
		int line, const char *ea, const char *eb)
{
	checks++;
	if (n == 0 || memcmp(a, b, n) == 0)
		return 1;
	const unsigned char *x = a, *y = b;
	size_t i = 0;
	while (x[i] == y[i])
		i++;
	fail_at(file, line,
		"%s and %s differ (%zu bytes): first at byte %zu: 0x%02x != "
		"0x%02x",
		ea, eb, n, i, x[i], y[i]);
	return 0;
}

void h_note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "  %s: ", cur_name);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- randomness ---- */

void h_seed(uint64_t seed) { rng_state = seed; }

uint64_t h_mix(uint64_t z)
{
	z += 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

uint64_t h_rand(void)
{
	rng_state += 0x9E3779B97F4A7C15ull;
	uint64_t z = rng_state;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

uint64_t h_below(uint64_t n) { return h_rand() % n; }

static void fill_from(unsigned char *p, size_t n, uint64_t *state)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t v = h_mix((*state)++);
		memcpy(p + i, &v, 8);
	}
	if (i < n) {
		uint64_t v = h_mix((*state)++);
		memcpy(p + i, &v, n - i);
	}
}

void h_fill(void *buf, size_t n)
{
	uint64_t s = h_rand();
	fill_from(buf, n, &s);
}

void h_fill_seeded(void *buf, size_t n, uint64_t seed)
{
	uint64_t s = h_mix(seed ^ 0x5DEECE66Dull);
	fill_from(buf, n, &s);
}

/* ---- files ---- */

const char *h_tmpdir(void)
{
	static char ring[16][PATH_MAX];
	char *out = ring[tmp_counter % 16];
	snprintf(out, PATH_MAX, "%s/t%04u", root, tmp_counter++);
	if (mkdir(out, 0755) < 0) {
		fprintf(stderr, "harness: cannot create '%s': %s\n", out,
			strerror(errno));
		exit(2);
	}
	return out;
}

const char *h_path(const char *dir, const char *name)
{
	static char ring[16][PATH_MAX];
	static unsigned next;
	char *out = ring[next++ % 16];
	snprintf(out, PATH_MAX, "%s/%s", dir, name);
	return out;
}

int h_read_file(const char *path, unsigned char **buf, size_t *len)
{
	struct stat st;
	int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
	*buf = NULL;
	*len = 0;
	if (fd < 0)
		return errno;
	if (fstat(fd, &st) < 0) {
		rc = errno;
		goto out;
	}
	size_t n = (size_t)st.st_size;
	unsigned char *p = malloc(n ? n : 1);
	if (!p) {
		rc = ENOMEM;
		goto out;
	}
	size_t done = 0;
	while (done < n) {
		ssize_t r = read(fd, p + done, n - done);
		if (r <= 0) {
			rc = r < 0 ? errno : EIO;
			free(p);
			goto out;
		}
		done += (size_t)r;
	}
	*buf = p;
	*len = n;
out:
	close(fd);
	return rc;
}

static int write_flags(const char *path, const void *buf, size_t len,
		       int flags)
{
	int rc = 0, fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);
	if (fd < 0)
		return errno;
	const unsigned char *p = buf;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w <= 0) {
			rc = w < 0 ? errno : EIO;
			break;
		}
		p += w;
		len -= (size_t)w;
	}
	if (close(fd) < 0 && !rc)
		rc = errno;
	return rc;
}

/* Overwrite, then cut to length: truncating to zero first would make
 * ext4 (auto_da_alloc) flush the file on close, a disk wait per call. */
int h_write_file(const char *path, const void *buf, size_t len)
{
	int rc = write_flags(path, buf, len, 0);
	if (!rc && truncate(path, (off_t)len) < 0)
		rc = errno;
	return rc;
}

int h_append_file(const char *path, const void *buf, size_t len)
{
	return write_flags(path, buf, len, O_APPEND);
}

int h_truncate_file(const char *path, uint64_t len)
{
	return truncate(path, (off_t)len) < 0 ? errno : 0;
}

int h_xor_byte(const char *path, uint64_t off, unsigned char x)
{
	unsigned char b;
	int rc = 0, fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno;
	if (pread(fd, &b, 1, (off_t)off) != 1)
		rc = EIO;
	b ^= x;
	if (!rc && pwrite(fd, &b, 1, (off_t)off) != 1)
		rc = EIO;
	close(fd);
	return rc;
}

int h_copy_file(const char *from, const char *to)
{
	unsigned char *buf;
	size_t len;
	int rc = h_read_file(from, &buf, &len);
	if (rc)
		return rc;
	rc = h_write_file(to, buf, len);
	free(buf);
	return rc;
}

uint64_t h_file_size(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return UINT64_MAX;
	return (uint64_t)st.st_size;
}

int h_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

void h_rmtree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d) {
		unlink(dir);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char path[PATH_MAX];
		struct stat st;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			h_rmtree(path);
		else
			unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

int h_count_suffix(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	size_t sl = strlen(suffix);
	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (l >= sl && !strcmp(e->d_name + l - sl, suffix))
			n++;
	}
	closedir(d);
	return n;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const char *filter = argc > 1 ? argv[1] : NULL;
	const char *tmp = getenv("TMPDIR");
	size_t passed = 0, failed = 0;
	if (!tmp || !*tmp)
		tmp = "/tmp";
	snprintf(root, sizeof root, "%s/unit-kyro-XXXXXX", tmp);
	if (!mkdtemp(root)) {
		fprintf(stderr, "harness: cannot create a directory in '%s': %s\n",
			tmp, strerror(errno));
		return 2;
	}
	qsort(tests, ntests, sizeof *tests, by_line);
	for (size_t i = 0; i < ntests; i++) {
		if (filter && !strstr(tests[i].name, filter))
			continue;
		cur_name = tests[i].name;
		cur_failed = 0;
		uint64_t before = checks;
		h_seed(0x6B79726F ^ (uint64_t)i);
		double t0 = now();
		tests[i].fn();
		double dt = now() - t0;
		if (cur_failed) {
			failed++;
			size_t used = strlen(failed_names);
			snprintf(failed_names + used, sizeof failed_names - used,
				 " %s", cur_name);
			printf("FAIL %s (%" PRIu64 " of %" PRIu64
			       " checks failed)\n",
			       cur_name, cur_failed, checks - before);
		} else {
			passed++;
			printf("ok   %s (%" PRIu64 " checks, %.2fs)\n", cur_name,
			       checks - before, dt);
		}
		fflush(stdout);
	}
	cur_name = "(none)";
	if (getenv("KYRO_TEST_KEEP"))
		fprintf(stderr, "harness: kept '%s'\n", root);
	else
		h_rmtree(root);
	free(tests);
	if (failed)
		printf("failed tests:%s\n", failed_names);
	printf("%" PRIu64 " checks, %" PRIu64 " failed\n", checks,
	       total_failed_checks);
	printf("%zu passed, %zu failed\n", passed, failed);
	return failed ? 1 : 0;
}
