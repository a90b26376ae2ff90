/*
 * crashtool.c - the helpers of the crash test (tests/bats/80-crash.bats).
 * The driver (bash) keeps the expected state in a file of its own; the
 * processes it kills never touch that file.
 *
 *   crashtool gen R G N
 *       print N lines KEY<TAB>VALUE for range R written by operation G:
 *       key R<<32 | j, value value(R, G, j) (below), j = 0..N-1.
 *
 *   crashtool run USEC IN OUT ERR CMD [ARG...]
 *       run CMD with stdin IN, stdout OUT and stderr ERR; when USEC >= 0,
 *       send it SIGKILL USEC microseconds after the start (if it is still
 *       running).  Exits with CMD's exit status, or 128 + the signal, and
 *       prints on its own stdout how long CMD ran, in microseconds (the
 *       driver aims its kills with it).
 *
 *   crashtool vput DIR [SYNC]
 *       write the lines KEY<TAB>VALUE of stdin (as gen prints them) to
 *       the store DIR in one batch, each key with its value and its
 *       vector vec(R, G, j) (below); SYNC is always, batch (default) or
 *       none.  Exits 0 once the batch is committed.
 *
 *   crashtool vdump DIR RANGES
 *       print KEY<TAB>C0,C1,C2,C3 for every vector of ranges 1..RANGES,
 *       in key order (exact searches over each range's keys).
 *
 *   crashtool check STATE DUMP [VDUMP]
 *       check a `kyro-get --all --format=tsv` DUMP against the driver's
 *       STATE file, whose lines are, in the order things happened:
 *         put R G N    operation G (re)writes range R with N keys
 *         vput R G N   the same, each key with its vector too (a range
 *                      written so is always written so)
 *         del R G      operation G deletes every key of range R
 *       (one operation may cover several ranges: consecutive lines with
 *       the same G, in one batch)
 *         ack G        operation G exited 0 (it was acknowledged)
 *         sentinel V   key 0 was set to V by a writer that exited 0
 *       Rules, per range: its keys are all present or all absent (never
 *       part of a batch); all present keys carry one operation G, with the
 *       exact value that G wrote; that G, or the absence, is the result of
 *       the last acknowledged operation on the range, or of a later one
 *       that was not acknowledged (a process killed after its commit).  An
 *       operation over several ranges is visible in all or in none.  No
 *       key outside the ranges; key 0 holds the last sentinel.  With
 *       VDUMP (from vdump): every key of a vput range in DUMP has exactly
 *       the vector of the operation its value names, and no other key
 *       has a vector (a delete removed it, or it was never written).
 *       Prints every problem; exits 1 when there is any, 0 when none.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kyro.h"

#define VDIM 4

/* The value operation G writes to key j of range R: self-describing, and
 * of a length that varies with G and j (16 to about 140 bytes). */
static int value(char *buf, size_t cap, uint64_t r, uint64_t g, uint64_t j)
{
	int n = snprintf(buf, cap, "r%" PRIu64 "g%" PRIu64 "j%" PRIu64 "-", r,
			 g, j);
	size_t pad = (size_t)((g * 37 + j * 11) % 120);
	if ((size_t)n + pad + 1 > cap)
		pad = cap - (size_t)n - 1;
	memset(buf + n, 'a' + (int)(g % 26), pad);
	buf[n + pad] = 0;
	return n + (int)pad;
}

/* The vector operation G writes to key j of range R: small integers, so
 * exact in float32 and in the text of a dump. */
static void vec(float *v, uint64_t r, uint64_t g, uint64_t j)
{
	v[0] = (float)r;
	v[1] = (float)g;
	v[2] = (float)j;
	v[3] = (float)((g * 31 + j) % 1000);
}

static int cmd_vput(int argc, char **argv)
{
	if (argc != 3 && argc != 4)
		return 2;
	int sync = KYRO_SYNC_BATCH;
	if (argc == 4)
		sync = !strcmp(argv[3], "always") ? KYRO_SYNC_ALWAYS
		       : !strcmp(argv[3], "none") ? KYRO_SYNC_NONE
						  : KYRO_SYNC_BATCH;
	kyro_db *db;
	int rc = kyro_open(&db, argv[2], KYRO_RDWR);
	if (!rc)
		rc = kyro_set_sync(db, sync);
	if (!rc)
		rc = kyro_batch_begin(db);
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	while (!rc && (len = getline(&line, &cap, stdin)) >= 0) {
		uint64_t key, r, g;
		int off = 0;
		float v[VDIM];
		if (len && line[len - 1] == '\n')
			line[--len] = 0;
		if (sscanf(line, "%" SCNu64 "\t%n", &key, &off) != 1 || !off ||
		    sscanf(line + off, "r%" SCNu64 "g%" SCNu64, &r, &g) != 2) {
			fprintf(stderr, "crashtool: bad input line\n");
			return 2;
		}
		vec(v, r, g, key & 0xffffffffu);
		rc = kyro_put(db, key, line + off, (size_t)len - (size_t)off,
			      NULL);
		if (!rc)
			rc = kyro_vec_put(db, key, v, VDIM, NULL);
	}
	free(line);
	if (!rc)
		rc = kyro_batch_commit(db, NULL);
	if (rc)
		fprintf(stderr, "crashtool: vput: %s\n", kyro_errmsg(db));
	kyro_close(db);
	return rc ? 1 : 0;
}

static int by_key(const void *a, const void *b)
{
	uint64_t x = ((const struct kyro_vec_hit *)a)->key;
	uint64_t y = ((const struct kyro_vec_hit *)b)->key;
	return (x > y) - (x < y);
}

static int cmd_vdump(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	uint64_t ranges = strtoull(argv[3], NULL, 10);
	kyro_db *db;
	int rc = kyro_open(&db, argv[2], KYRO_RDONLY);
	uint32_t dim = 0;
	if (!rc)
		rc = kyro_vec_dim(db, &dim);
	static struct kyro_vec_hit hits[KYRO_VEC_MAX_K];
	const float zero[VDIM] = {0};
	/* A range has fewer than 30000 keys: three windows of 10000. */
	for (uint64_t r = 1; !rc && dim && r <= ranges; r++)
		for (uint64_t w = 0; !rc && w < 3; w++) {
			struct kyro_vec_query q = {
				.vec = zero, .dim = VDIM, .k = KYRO_VEC_MAX_K,
				.lo = r << 32 | w * 10000,
				.hi = (r << 32 | w * 10000) + 9999,
				.flags = KYRO_VEC_EXACT};
			size_t n;
			rc = kyro_vec_search(db, &q, hits, &n);
			if (rc)
				break;
			qsort(hits, n, sizeof *hits, by_key);
			for (size_t i = 0; !rc && i < n; i++) {
				const float *v;
				uint32_t d;
				rc = kyro_vec_get(db, hits[i].key, &v, &d);
				if (!rc)
					printf("%" PRIu64 "\t%.0f,%.0f,%.0f,%.0f\n",
					       hits[i].key, v[0], v[1], v[2],
					       v[3]);
			}
		}
	if (rc)
		fprintf(stderr, "crashtool: vdump: %s\n", kyro_errmsg(db));
	kyro_close(db);
	return rc || fflush(stdout) ? 2 : 0;
}

static int cmd_gen(int argc, char **argv)
{
	if (argc != 5)
		return 2;
	uint64_t r = strtoull(argv[2], NULL, 10), g = strtoull(argv[3], NULL, 10);
	uint64_t n = strtoull(argv[4], NULL, 10);
	char v[512];
	for (uint64_t j = 0; j < n; j++) {
		value(v, sizeof v, r, g, j);
		printf("%" PRIu64 "\t%s\n", r << 32 | j, v);
	}
	return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 2;
}

static int cmd_run(int argc, char **argv)
{
	if (argc < 7)
		return 2;
	long usec = strtol(argv[2], NULL, 10);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = fork();
	if (pid < 0) {
		perror("crashtool: fork");
		return 2;
	}
	if (pid == 0) {
		int in = open(argv[3], O_RDONLY);
		int out = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int err = open(argv[5], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 ||
		    dup2(out, 1) < 0 || dup2(err, 2) < 0)
			_exit(126);
		close(in);
		close(out);
		close(err);
		execvp(argv[6], argv + 6);
		_exit(127);
	}
	if (usec >= 0) {
		struct timespec ts = {.tv_sec = usec / 1000000,
				      .tv_nsec = (usec % 1000000) * 1000};
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		kill(pid, SIGKILL); /* harmless on a child that has exited */
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR) {
			perror("crashtool: waitpid");
			return 2;
		}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%lld\n", (long long)(t1.tv_sec - t0.tv_sec) * 1000000 +
				(t1.tv_nsec - t0.tv_nsec) / 1000);
	fflush(stdout);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

/* ---- check ---- */

struct op {
	uint64_t g, r, n;
	int del, acked;
};

struct range {
	uint64_t r, n; /* n: keys of its first put (all puts use the same) */
	int vectors;   /* written by vput */
	size_t *ops;   /* indexes into the op list, in order */
	size_t nops, capops;
	uint64_t seen;       /* keys of it in the dump */
	uint64_t seen_g;     /* the operation they carry */
	int mixed;           /* keys from more than one operation */
};

static struct op *ops;
static size_t nops, capops;
static struct range *ranges;
static size_t nranges, capranges;
static unsigned long problems;

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...)
{
	va_list ap;
	if (++problems > 50)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return p;
	size_t c = *cap ? *cap * 2 : 64;
	while (c < need)
		c *= 2;
	p = realloc(p, c * size);
	if (!p) {
		fprintf(stderr, "crashtool: out of memory\n");
		exit(2);
	}
	*cap = c;
	return p;
}

static struct range *find_range(uint64_t r)
{
	/* Ranges are created in increasing order: binary search. */
	size_t lo = 0, hi = nranges;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (ranges[mid].r < r)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < nranges && ranges[lo].r == r ? &ranges[lo] : NULL;
}

/* The first operation record of G (ops are sorted by G), or NULL. */
static struct op *find_op(uint64_t g)
{
	size_t lo = 0, hi = nops;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (ops[mid].g < g)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < nops && ops[lo].g == g ? &ops[lo] : NULL;
}

/* Operation G's record for range R, or NULL. */
static struct op *find_op_r(uint64_t g, uint64_t r)
{
	for (struct op *o = find_op(g); o && o < ops + nops && o->g == g; o++)
		if (o->r == r)
			return o;
	return NULL;
}

/* The vectors of a vdump, in key order. */
struct vrec {
	uint64_t key;
	float v[VDIM];
	int matched;
};
static struct vrec *vecs;
static size_t nvecs, capvecs;
static int have_vdump;

static int load_vdump(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		return 2;
	}
	struct vrec x = {0};
	while (fscanf(f, "%" SCNu64 "\t%f,%f,%f,%f\n", &x.key, &x.v[0],
		      &x.v[1], &x.v[2], &x.v[3]) == 5) {
		vecs = grow(vecs, &capvecs, nvecs + 1, sizeof *vecs);
		vecs[nvecs++] = x;
	}
	int bad = !feof(f);
	fclose(f);
	if (bad)
		fprintf(stderr, "crashtool: bad vdump line in %s\n", path);
	have_vdump = 1;
	return bad ? 2 : 0;
}

/* KEY (of range R, index J) holds operation G's value: its vector must be
 * G's when the range has vectors, else absent. */
static void check_vector(uint64_t key, int vectors, uint64_t r, uint64_t g,
			 uint64_t j)
{
	if (!have_vdump)
		return;
	size_t lo = 0, hi = nvecs;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (vecs[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	struct vrec *x = lo < nvecs && vecs[lo].key == key ? &vecs[lo] : NULL;
	float want[VDIM];
	vec(want, r, g, j);
	if (x)
		x->matched = 1;
	if (vectors && !x)
		problem("key %" PRIu64 ": value of operation %" PRIu64
			" but no vector", key, g);
	else if (!vectors && x)
		problem("key %" PRIu64 ": a vector, but its range was never "
			"written with vectors", key);
	else if (x && memcmp(x->v, want, sizeof want))
		problem("key %" PRIu64 ": vector %.0f,%.0f,%.0f,%.0f is not "
			"that of operation %" PRIu64 " (a batch is partly "
			"visible)", key, x->v[0], x->v[1], x->v[2], x->v[3], g);
}

static int cmd_check(int argc, char **argv)
{
	if (argc != 4 && argc != 5)
		return 2;
	if (argc == 5 && load_vdump(argv[4]))
		return 2;
	FILE *f = fopen(argv[2], "r");
	if (!f) {
		perror(argv[2]);
		return 2;
	}
	char *line = NULL, sentinel[256] = "";
	size_t cap = 0;
	int have_sentinel = 0;
	ssize_t len;
	while ((len = getline(&line, &cap, f)) >= 0) {
		uint64_t a, b, c;
		int vput = sscanf(line, "vput %" SCNu64 " %" SCNu64
				  " %" SCNu64, &a, &b, &c) == 3;
		if (vput ||
		    sscanf(line, "put %" SCNu64 " %" SCNu64 " %" SCNu64, &a, &b, &c) == 3 ||
		    sscanf(line, "del %" SCNu64 " %" SCNu64, &a, &b) == 2) {
			int del = line[0] == 'd';
			if (nops && (b < ops[nops - 1].g ||
				     (b == ops[nops - 1].g && find_op_r(b, a)))) {
				fprintf(stderr, "crashtool: operations out of order\n");
				return 2;
			}
			ops = grow(ops, &capops, nops + 1, sizeof *ops);
			ops[nops] = (struct op){.g = b, .r = a, .n = del ? 0 : c,
						.del = del};
			struct range *rg = find_range(a);
			if (!rg) {
				if (del || (nranges && a <= ranges[nranges - 1].r)) {
					fprintf(stderr, "crashtool: range %" PRIu64
						" used before it was created\n", a);
					return 2;
				}
				ranges = grow(ranges, &capranges, nranges + 1,
					      sizeof *ranges);
				rg = &ranges[nranges++];
				memset(rg, 0, sizeof *rg);
				rg->r = a;
				rg->n = c;
			} else if (!del && c != rg->n) {
				fprintf(stderr, "crashtool: range %" PRIu64
					" rewritten with another size\n", a);
				return 2;
			}
			rg->vectors |= vput;
			rg->ops = grow(rg->ops, &rg->capops, rg->nops + 1,
				       sizeof *rg->ops);
			rg->ops[rg->nops++] = nops++;
		} else if (sscanf(line, "ack %" SCNu64, &a) == 1) {
			struct op *o = find_op(a);
			if (!o) {
				fprintf(stderr, "crashtool: ack of unknown operation\n");
				return 2;
			}
			for (; o < ops + nops && o->g == a; o++)
				o->acked = 1;
		} else if (strncmp(line, "sentinel ", 9) == 0) {
			snprintf(sentinel, sizeof sentinel, "%.*s",
				 (int)(len - 9 - (line[len - 1] == '\n')),
				 line + 9);
			have_sentinel = 1;
		} else {
			fprintf(stderr, "crashtool: bad state line: %s", line);
			return 2;
		}
	}
	fclose(f);

	f = fopen(argv[3], "r");
	if (!f) {
		perror(argv[3]);
		return 2;
	}
	uint64_t prev = 0, lineno = 0;
	int have_prev = 0, saw_sentinel = 0;
	char want[512];
	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (len && line[len - 1] == '\n')
			line[--len] = 0;
		char *tab = strchr(line, '\t'), *end;
		if (!tab) {
			problem("dump line %" PRIu64 ": no tab", lineno);
			continue;
		}
		*tab = 0;
		errno = 0;
		uint64_t key = strtoull(line, &end, 10);
		if (errno || *end || end == line) {
			problem("dump line %" PRIu64 ": bad key '%s'", lineno, line);
			continue;
		}
		if (have_prev && key <= prev)
			problem("dump line %" PRIu64 ": key %" PRIu64
				" not after %" PRIu64, lineno, key, prev);
		prev = key;
		have_prev = 1;
		const char *val = tab + 1;
		if (key == 0) {
			saw_sentinel = 1;
			if (!have_sentinel || strcmp(val, sentinel) != 0)
				problem("key 0: '%s', but the last sentinel "
					"written was '%s'", val, sentinel);
			continue;
		}
		uint64_t r = key >> 32, j = key & 0xffffffffu;
		struct range *rg = find_range(r);
		if (!rg || j >= rg->n) {
			problem("key %" PRIu64 " (range %" PRIu64 ", index %"
				PRIu64 ") was never written", key, r, j);
			continue;
		}
		uint64_t g;
		if (sscanf(val, "r%*[0-9]g%" SCNu64, &g) != 1) {
			problem("key %" PRIu64 ": value '%.60s' is not one the "
				"test wrote", key, val);
			continue;
		}
		value(want, sizeof want, r, g, j);
		struct op *o = find_op_r(g, r);
		if (!o || o->del || strcmp(val, want) != 0) {
			problem("key %" PRIu64 ": value '%.60s' was never "
				"written to it", key, val);
			continue;
		}
		check_vector(key, rg->vectors, r, g, j);
		if (rg->seen && rg->seen_g != g)
			rg->mixed = 1;
		rg->seen_g = g;
		rg->seen++;
	}
	fclose(f);
	free(line);
	if (have_sentinel && !saw_sentinel)
		problem("key 0 is missing; the last sentinel was '%s'", sentinel);
	for (size_t i = 0; i < nvecs; i++)
		if (!vecs[i].matched)
			problem("key %" PRIu64 " has a vector but no value "
				"(a delete left it, or it was never written)",
				vecs[i].key);

	for (size_t i = 0; i < nranges; i++) {
		struct range *rg = &ranges[i];
		if (rg->mixed) {
			problem("range %" PRIu64 ": keys from more than one "
				"batch (a batch is partly visible)", rg->r);
			continue;
		}
		if (rg->seen && rg->seen != rg->n) {
			problem("range %" PRIu64 ": %" PRIu64 " of %" PRIu64
				" keys of operation %" PRIu64 " visible (a "
				"batch is partly visible)",
				rg->r, rg->seen, rg->n, rg->seen_g);
			continue;
		}
		/* The states allowed: that of the last acknowledged operation
		 * (absent when none), or of any operation after it. */
		size_t first = 0;
		for (size_t k = 0; k < rg->nops; k++)
			if (ops[rg->ops[k]].acked)
				first = k;
		int base_acked = rg->nops && ops[rg->ops[first]].acked;
		int ok = 0;
		if (!base_acked && rg->seen == 0)
			ok = 1; /* nothing acknowledged: absence is allowed */
		for (size_t k = first; k < rg->nops && !ok; k++) {
			const struct op *o = &ops[rg->ops[k]];
			if (o->del ? rg->seen == 0
				   : rg->seen && rg->seen_g == o->g)
				ok = 1;
		}
		if (!ok) {
			const struct op *b = &ops[rg->ops[first]];
			if (rg->seen)
				problem("range %" PRIu64 ": holds operation %"
					PRIu64 ", but operation %" PRIu64
					" (%s) was acknowledged after it",
					rg->r, rg->seen_g, b->g,
					b->del ? "delete" : "put");
			else
				problem("range %" PRIu64 ": absent, but "
					"operation %" PRIu64 " (put) was "
					"acknowledged and nothing after it "
					"deletes the range",
					rg->r, b->g);
		}
	}
	/* An operation over several ranges: visible in one and older than
	 * it in another means part of its batch is missing. */
	for (size_t i = 0; i < nops;) {
		size_t j = i;
		while (j < nops && ops[j].g == ops[i].g)
			j++;
		int shown = 0, older = 0;
		for (size_t k = i; j - i > 1 && k < j; k++) {
			const struct range *rg = find_range(ops[k].r);
			if (rg->seen && rg->seen_g == ops[k].g) {
				shown = 1;
				continue;
			}
			int later = 0; /* a later operation explains the state */
			for (size_t q = 0; q < rg->nops; q++)
				if (ops[rg->ops[q]].g > ops[k].g &&
				    (ops[rg->ops[q]].del ? !rg->seen
							 : rg->seen_g == ops[rg->ops[q]].g))
					later = 1;
			if (!later)
				older = 1;
		}
		if (shown && older)
			problem("operation %" PRIu64 " is visible in some of its "
				"ranges but not in others (a batch is partly "
				"visible)", ops[i].g);
		i = j;
	}
	if (problems > 50)
		printf("... %lu problems in all\n", problems);
	return problems ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "gen"))
		return cmd_gen(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "run"))
		return cmd_run(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "check"))
		return cmd_check(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "vput"))
		return cmd_vput(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "vdump"))
		return cmd_vdump(argc, argv);
	fprintf(stderr, "usage: crashtool gen R G N | run USEC IN OUT ERR CMD... | vput DIR [SYNC] | vdump DIR RANGES | check STATE DUMP [VDUMP]\n");
	return 2;
}
