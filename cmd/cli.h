/*
 * cli.h - what every kyro tool shares: one option table that drives the
 * parser and --help, error reporting, key parsing and value escapes.
 * Tools use libkyro only through kyro.h.
 */
#ifndef KYRO_CLI_H
#define KYRO_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kyro.h"

/* Exit status, grep's protocol. */
#define EXIT_OK 0
#define EXIT_NO 1  /* a negative answer: not found, damage found */
#define EXIT_ERR 2 /* usage, bad input, I/O, lock */

struct cli_opt {
	int id;              /* what cli_next() returns; > 0 */
	char shrt;           /* short letter, or 0 */
	const char *lng;     /* long name without "--", or NULL */
	const char *metavar; /* argument name, NULL when it takes none */
	const char *help;
};

struct cli {
	const char *prog;
	const char *const *usage; /* usage lines, NULL-terminated */
	const char *summary;      /* one line under the usage */
	const struct cli_opt *opts; /* ends with an all-zero entry */
	const char *epilog;       /* extra --help text, or NULL */
	int argc;
	char **argv;
	int ind;                  /* next argv index */
	const char *arg;          /* the current option's argument */
	const char *shorts;       /* rest of a group of short options */
	int ops, nops;            /* operands passed over: argv[ops..ops+nops) */
	int done;
};

void cli_init(struct cli *c, int argc, char **argv);
/* The next option's id, or 0 when the operands start at c->ind.  As GNU
 * getopt does, options may come anywhere among the operands and "--" ends
 * them: cli_next() moves the operands, in their order, to the end of argv.
 * Handles --help, --version and every usage error itself. */
int cli_next(struct cli *c);

_Noreturn void cli_usage_error(const struct cli *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* "prog: text" on stderr. */
void cli_warn(const char *prog, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* "prog: DB's message" on stderr. */
void cli_db_error(const char *prog, const kyro_db *db, int rc);

/* -d DIR, else $KYRODB_DIR, else ./kyrodb-data. */
const char *cli_dir(const char *opt);

/* Parse a decimal or 0x-hexadecimal u64 of LEN bytes exactly. */
int cli_parse_key(const char *s, size_t len, uint64_t *key);
/* LEN without the line ending of a key in a key list: a final "\n",
 * "\r\n" or "\r".  Lists written on Windows end their lines in CR LF,
 * and no key holds a CR, so dropping it cannot change a key. */
size_t cli_key_len(const char *s, size_t len);
/* S[0..LEN) escaped as kyro-get prints values (a CR shows as \r), cut
 * to its first 64 bytes with "..." after: for quoting input in messages.
 * Returns BUF. */
const char *cli_quote(char *buf, size_t size, const void *s, size_t len);
#define CLI_QUOTE_MAX (64 * 4 + 4)

/* kyro_open() as every tool and the daemon open a store: KYRODB_INDEX=binary
 * adds KYRO_BINARY_SEARCH to FLAGS, and KYRODB_SIMD names the index probe
 * (kyro_set_simd()); a value either cannot use is ignored. */
int cli_open(kyro_db **db, const char *dir, unsigned flags);
/* Check the environment variables cli_open() reads: KYRODB_SIMD and
 * KYRODB_INDEX.  Each one set to a value it ignores is passed to WARN
 * once, as a line of text without a trailing newline.  Call once, at
 * start. */
void cli_env_warnings(void (*warn)(void *arg, const char *text), void *arg);
/* A WARN for cli_env_warnings(): "PROG: warning: TEXT" on stderr. */
void cli_warn_env(void *prog, const char *text);

/* A growable byte buffer. */
struct cli_buf {
	unsigned char *p;
	size_t len, cap;
};
int cli_buf_reserve(struct cli_buf *b, size_t n);

/* Decode the escapes \\ \t \n \r \0 \xHH of S[0..LEN) into B.  Returns 0,
 * or -1 with *WHY set to a static reason. */
int cli_unescape(const char *s, size_t len, struct cli_buf *b,
		 const char **why);
/* Write V escaped (the inverse of cli_unescape). */
void cli_put_escaped(FILE *f, const void *v, size_t len);
/* Is V valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF)? */
int cli_is_utf8(const void *v, size_t len);
/* Write V, valid UTF-8, as a JSON string body (no quotes). */
void cli_put_json_string(FILE *f, const void *v, size_t len);
void cli_put_base64(FILE *f, const void *v, size_t len);

/* Flush stdout and report a write error; returns the exit status to use
 * (EXIT_ERR on failure, else STATUS). */
int cli_finish(const char *prog, int status);

/* A progress bar on stderr, only when stderr is a terminal. */
void cli_progress(void *prog, uint64_t done, uint64_t total);
int cli_progress_wanted(void);

/* Parse --sync=MODE. */
int cli_parse_sync(const char *s, int *mode);

/* Parse --retain=SPEC for kyro_set_retain(): a SIZE (1048576, 64M, 1GiB),
 * a DURATION (90s, 30min, 1h, 7d), or both as SIZE,DURATION; "0" keeps
 * no history.  A measure not given is not limited (KYRO_RETAIN_ANY).
 * Returns 0, or -1 for a SPEC it cannot read. */
int cli_parse_retain(const char *s, uint64_t *bytes, uint64_t *seconds);
#define CLI_RETAIN_HELP "keep folded WAL segments within SIZE and/or DURATION (default 64M,1h; 0: none)"
#define CLI_RETAIN_ERROR "invalid --retain '%s' (SIZE, DURATION or SIZE,DURATION: 64M, 1h, 64M,1h, 0)"

/* A vector being read: DIM float32 in V. */
struct cli_vec {
	float *v;
	uint32_t dim, cap;
};
#define CLI_WHY_MAX 160
/* Parse "v1,v2,...": decimal floats (strtof's syntax, blanks around each
 * allowed), finite, at most KYRO_MAX_DIM.  Returns 0, or -1 with the
 * reason in WHY (CLI_WHY_MAX bytes). */
int cli_parse_vec(const char *s, size_t len, struct cli_vec *v, char *why);
/* Read one .fvecs record (little-endian int32 dimension, then that many
 * little-endian float32) from F.  Returns 1 for a record, 0 at the end of
 * the input, -1 with the reason in WHY. */
int cli_read_fvecs(FILE *f, struct cli_vec *v, char *why);
/* X as the shortest decimal that reads back as the same float32. */
void cli_put_float(FILE *f, float x);
/* V[0..DIM) as cli_parse_vec() reads it: "v1,v2,...". */
void cli_put_vec(FILE *f, const float *v, uint32_t dim);
/* The metric names: l2, ip, cosine. */
int cli_parse_metric(const char *s, int *metric);
const char *cli_metric_name(int metric);
/* --m, --ef-construction and --metric of kyro-snapshot and kyro-rmi-build:
 * OPT is the option's id (CLI_VEC_M...), C->arg its argument; a bad one
 * is a usage error. */
enum { CLI_VEC_M = 100, CLI_VEC_EFC, CLI_VEC_METRIC };
void cli_vec_param(const struct cli *c, int opt, struct kyro_vec_params *p);
#define CLI_VEC_OPTS \
	{CLI_VEC_M, 0, "m", "M", "with --vectors: links per node of the graph, 2..128 (default 16)"}, \
	{CLI_VEC_EFC, 0, "ef-construction", "N", "with --vectors: the build's beam (default 200)"}, \
	{CLI_VEC_METRIC, 0, "metric", "METRIC", "with --vectors: " CLI_METRIC_HELP " (default l2)"}
/* "PROG: vector index GEN: ..." on stderr, as -v prints a build. */
void cli_vec_stats(const char *prog, const struct kyro_vec_stats *st);
#define CLI_METRIC_HELP "l2 (squared L2), ip (1 - dot product) or cosine (1 - cosine)"

#endif
