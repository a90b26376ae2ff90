/*
 * kyro-put - write records and vectors; one invocation is one atomic batch.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum {
	OPT_DIR = 1, OPT_SYNC, OPT_DELETE, OPT_OFFSET, OPT_VERBOSE, OPT_REPLAY,
	OPT_VECTORS, OPT_FVECS, OPT_FIRST_KEY,
};

static const struct cli_opt opts[] = {
	{OPT_DIR, 'd', "dir", "DIR", "the data directory (default $KYRODB_DIR, else ./kyrodb-data)"},
	{OPT_SYNC, 0, "sync", "MODE", "always, batch (default) or none"},
	{OPT_DELETE, 0, "delete", NULL, "delete the KEYs (or keys on stdin)"},
	{OPT_OFFSET, 0, "print-offset", NULL, "print the batch's last sequence number"},
	{OPT_VECTORS, 0, "vectors", NULL, "put vectors: KEY VECTOR, or KEY<TAB>VECTOR (or KEY<TAB>VALUE<TAB>VECTOR) lines on stdin"},
	{OPT_FVECS, 0, "fvecs", NULL, "put the vectors of an .fvecs FILE (default stdin), keys counting up from --first-key"},
	{OPT_FIRST_KEY, 0, "first-key", "N", "with --fvecs: the first record's key (default 0)"},
	{OPT_REPLAY, 0, "replay", NULL, "read the change feed (kyro-get's replay format) from stdin: one batch per source batch"},
	{OPT_VERBOSE, 'v', NULL, NULL, "print a summary on stderr"},
	{0, 0, NULL, NULL, NULL},
};

static const char *const usage[] = {
	"[-v] [-d DIR] [--sync=MODE] [--print-offset] [KEY VALUE]",
	"[-v] [-d DIR] [--sync=MODE] [--print-offset] --delete [KEY ...]",
	"[-v] [-d DIR] [--sync=MODE] [--print-offset] --vectors [KEY VECTOR]",
	"[-v] [-d DIR] [--sync=MODE] [--print-offset] --fvecs [--first-key N] [FILE]",
	"[-v] [-d DIR] [--sync=MODE] [--print-offset] --replay",
	NULL,
};

struct put {
	const char *prog;
	kyro_db *db;
	int del;
	uint64_t puts, dels, batches, vecs;
	struct cli_buf val;
	struct cli_vec vec;
	uint32_t dim;         /* every vector's dimension; 0 until known */
	uint64_t dim_at;      /* the line or record that set it; 0: the store */
	const char *unit;     /* "line", or "record" for .fvecs */
};

static void put_free(struct put *p)
{
	kyro_close(p->db);
	free(p->val.p);
	free(p->vec.v);
}

/* Bad input: the batch is dropped whole, so nothing of it lands.  S, when
 * not NULL, is quoted with escapes, so that a stray CR shows as \r. */
static _Noreturn void bad_text(struct put *p, unsigned long line, const char *what,
			       const char *s, size_t len, const char *hint)
{
	char q[CLI_QUOTE_MAX];
	kyro_batch_abort(p->db);
	put_free(p);
	if (s)
		cli_warn(p->prog, "line %lu: %s '%s'%s", line, what,
			 cli_quote(q, sizeof q, s, len), hint);
	else
		cli_warn(p->prog, "line %lu: %s", line, what);
	exit(EXIT_ERR);
}

static _Noreturn void bad_line(struct put *p, unsigned long line,
			       const char *what, const char *s, size_t len)
{
	bad_text(p, line, what, s, len, "");
}

/* Bad vector input at line or record N (p->unit), or in the operand
 * p->unit names when N is 0. */
static _Noreturn void bad_vec(struct put *p, uint64_t n, const char *why)
{
	kyro_batch_abort(p->db);
	put_free(p);
	if (n)
		cli_warn(p->prog, "%s %llu: %s", p->unit, (unsigned long long)n, why);
	else
		cli_warn(p->prog, "%s: %s", p->unit, why);
	exit(EXIT_ERR);
}

/* Put p->vec as KEY's vector, from line or record N.  Its dimension is
 * checked here, against the store's or else the input's first vector, so
 * that the message can name both lines rather than only the library's
 * KYRO_EDIM. */
static int write_vec(struct put *p, uint64_t n, uint64_t key)
{
	char why[CLI_WHY_MAX + 64];
	if (!p->dim) {
		p->dim = p->vec.dim;
		p->dim_at = n;
	}
	if (p->vec.dim != p->dim) {
		if (p->dim_at)
			snprintf(why, sizeof why, "%u components, but %s %llu has %u",
				 p->vec.dim, p->unit, (unsigned long long)p->dim_at,
				 p->dim);
		else
			snprintf(why, sizeof why, "%u components, but the store's "
				 "dimension is %u", p->vec.dim, p->dim);
		bad_vec(p, n, why);
	}
	p->vecs++;
	return kyro_vec_put(p->db, key, p->vec.v, p->vec.dim, NULL);
}

/* KEY<TAB>VECTOR or KEY<TAB>VALUE<TAB>VECTOR.  An escaped value holds no
 * raw tab, so the number of fields tells the two apart. */
static int vec_line(struct put *p, unsigned long line, char *s, size_t len)
{
	char why[CLI_WHY_MAX];
	uint64_t key;
	const char *err;
	int rc;
	/* A CR before the LF cannot change a number: CR LF input is read as
	 * it was meant. */
	len = cli_key_len(s, len);
	char *tab = memchr(s, '\t', len);
	if (!tab)
		bad_line(p, line, "no tab between key and vector", NULL, 0);
	if (cli_parse_key(s, (size_t)(tab - s), &key))
		bad_line(p, line, "invalid key", s, (size_t)(tab - s));
	char *vs = tab + 1, *tab2 = memchr(vs, '\t', len - (size_t)(vs - s));
	if (tab2)
		vs = tab2 + 1;
	if (cli_parse_vec(vs, len - (size_t)(vs - s), &p->vec, why))
		bad_vec(p, line, why);
	if (tab2) {
		if (cli_unescape(tab + 1, (size_t)(tab2 - tab - 1), &p->val, &err))
			bad_line(p, line, err, NULL, 0);
		if (p->val.len > KYRO_MAX_VALUE)
			bad_line(p, line, "value larger than 16 MiB", NULL, 0);
		p->puts++;
		rc = kyro_put(p->db, key, p->val.p, p->val.len, NULL);
		if (rc)
			return rc;
	}
	return write_vec(p, line, key);
}

/* Every record of an .fvecs file, record N (from 1) as key FIRST + N - 1. */
static int put_fvecs(struct put *p, FILE *f, uint64_t first)
{
	char why[CLI_WHY_MAX];
	uint64_t n = 0;
	int rc = 0, got;
	p->unit = "record";
	while (!rc && (got = cli_read_fvecs(f, &p->vec, why)) != 0) {
		n++;
		if (got < 0)
			bad_vec(p, n, why);
		if (n > 1 && first + (n - 1) == 0)
			bad_vec(p, n, "its key would pass 18446744073709551615");
		rc = write_vec(p, n, first + (n - 1));
	}
	return rc;
}

static int write_one(struct put *p, uint64_t key, const void *v, size_t len)
{
	int rc;
	if (p->del) {
		rc = kyro_delete(p->db, key, NULL);
		p->dels++;
	} else {
		rc = kyro_put(p->db, key, v, len, NULL);
		p->puts++;
	}
	return rc;
}

static int put_line(struct put *p, unsigned long line, char *s, size_t len)
{
	uint64_t key;
	const char *why;
	if (p->del) {
		len = cli_key_len(s, len);
		if (cli_parse_key(s, len, &key))
			bad_line(p, line, "invalid key", s, len);
		return write_one(p, key, NULL, 0);
	}
	if (len && s[len - 1] == '\n')
		len--;
	/* A raw CR at the end of a line is refused rather than guessed at:
	 * it is either a CR LF line ending or the last byte of the value,
	 * and taking it for either could store a value nobody wrote. */
	if (len && s[len - 1] == '\r')
		bad_text(p, line, "carriage return at the end of the line", s, len,
			 " (convert CR LF line endings to LF; write a CR that"
			 " ends a value as \\r)");
	char *tab = memchr(s, '\t', len);
	if (!tab)
		bad_line(p, line, "no tab between key and value", NULL, 0);
	if (cli_parse_key(s, (size_t)(tab - s), &key))
		bad_line(p, line, "invalid key", s, (size_t)(tab - s));
	if (cli_unescape(tab + 1, len - (size_t)(tab + 1 - s), &p->val, &why))
		bad_line(p, line, why, NULL, 0);
	if (p->val.len > KYRO_MAX_VALUE)
		bad_line(p, line, "value larger than 16 MiB", NULL, 0);
	return write_one(p, key, p->val.p, p->val.len);
}

/* The next tab-separated field of S[*AT..LEN) as a number. */
static int field_num(const char *s, size_t len, size_t *at, uint64_t *v,
		     int last)
{
	const char *tab = memchr(s + *at, '\t', len - *at);
	size_t end = last ? len : tab ? (size_t)(tab - s) : len;
	if ((!last && !tab) || cli_parse_key(s + *at, end - *at, v))
		return -1;
	*at = end + 1;
	return 0;
}

/* One line of the replay format (kyro-get --changes --format=replay):
 *   put<TAB>SEQ<TAB>KEY<TAB>VALUE    delete<TAB>SEQ<TAB>KEY    commit<TAB>LAST
 *   vector<TAB>SEQ<TAB>KEY<TAB>v1,v2,...
 * The source's sequence numbers must follow each other without a gap
 * and a commit must close its records: a line lost on the way is an
 * error, never a silently different copy. */
static int replay_line(struct put *p, unsigned long line, char *s, size_t len,
		       int *in_batch, uint64_t *prev, uint64_t *last)
{
	uint64_t seq, key;
	size_t at;
	const char *why;
	int rc;
	if (len && s[len - 1] == '\n')
		len--;
	if (len && s[len - 1] == '\r')
		bad_text(p, line, "carriage return at the end of the line", s, len,
			 " (the replay format ends lines in LF)");
	if (len > 7 && !memcmp(s, "commit\t", 7)) {
		at = 7;
		if (field_num(s, len, &at, &seq, 1))
			bad_line(p, line, "invalid commit line", s, len);
		if (!*in_batch || seq != *prev)
			bad_line(p, line, "commit does not close the records before it", s, len);
		*in_batch = 0;
		p->batches++;
		return kyro_batch_commit(p->db, last);
	}
	int del = len > 7 && !memcmp(s, "delete\t", 7);
	int vec = len > 7 && !memcmp(s, "vector\t", 7);
	if (!del && !vec && !(len > 4 && !memcmp(s, "put\t", 4)))
		bad_line(p, line, "not a replay line (put, vector, delete or commit)", s, len);
	at = del || vec ? 7 : 4;
	if (field_num(s, len, &at, &seq, 0) || field_num(s, len, &at, &key, del))
		bad_line(p, line, "invalid sequence number or key", s, len);
	if (*prev && seq != *prev + 1)
		bad_text(p, line, "sequence number out of order", s, len,
			 " (a line of the source's changes is missing or repeated)");
	*prev = seq;
	if (!*in_batch && (rc = kyro_batch_begin(p->db)) != 0)
		return rc;
	*in_batch = 1;
	if (del) {
		p->dels++;
		return kyro_delete(p->db, key, NULL);
	}
	if (vec) {
		char vwhy[CLI_WHY_MAX];
		if (cli_parse_vec(s + at, len - at, &p->vec, vwhy))
			bad_vec(p, line, vwhy);
		p->vecs++;
		rc = kyro_vec_put(p->db, key, p->vec.v, p->vec.dim, NULL);
		uint32_t dim = 0;
		if (rc == KYRO_EDIM && !kyro_vec_dim(p->db, &dim)) {
			snprintf(vwhy, sizeof vwhy, "%u components, but the store's "
				 "dimension is %u", p->vec.dim, dim);
			bad_vec(p, line, vwhy);
		}
		return rc;
	}
	if (cli_unescape(s + at, len - at, &p->val, &why))
		bad_line(p, line, why, NULL, 0);
	if (p->val.len > KYRO_MAX_VALUE)
		bad_line(p, line, "value larger than 16 MiB", NULL, 0);
	p->puts++;
	return kyro_put(p->db, key, p->val.p, p->val.len, NULL);
}

/* --replay: each source batch becomes one batch here, committed as soon
 * as its commit line is read, so a follower's output can be fed in
 * forever.  Input that ends inside a batch leaves that batch out. */
static int replay(struct put *p, uint64_t *last)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned long lineno = 0;
	uint64_t prev = 0;
	int rc = 0, in_batch = 0;
	while (!rc && (errno = 0, n = getline(&line, &cap, stdin)) >= 0)
		rc = replay_line(p, ++lineno, line, (size_t)n, &in_batch,
				 &prev, last);
	int err = errno;
	free(line);
	if (rc) {
		cli_db_error(p->prog, p->db, rc);
		kyro_batch_abort(p->db);
		return EXIT_ERR;
	}
	if (err || ferror(stdin)) {
		kyro_batch_abort(p->db);
		cli_warn(p->prog, "cannot read standard input: %s",
			 strerror(err ? err : EIO));
		return EXIT_ERR;
	}
	if (in_batch) {
		kyro_batch_abort(p->db);
		cli_warn(p->prog, "the input ends inside a batch (after sequence number %llu): "
			 "that batch was not written", (unsigned long long)prev);
		return EXIT_ERR;
	}
	return EXIT_OK;
}

/* Every line of stdin through FN.  getline() returns -1 both at the end
 * of the input and on an error; when memory runs out only errno tells
 * (ferror() stays clear).  Taking an error for the end would commit part
 * of the batch: it is reported here, and the batch dropped. */
static int put_lines(struct put *p, int (*fn)(struct put *p, unsigned long line,
					      char *s, size_t len))
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned long lineno = 0;
	int rc = 0;
	while (!rc && (errno = 0, n = getline(&line, &cap, stdin)) >= 0)
		rc = fn(p, ++lineno, line, (size_t)n);
	int err = errno;
	free(line);
	if (!rc && (err || ferror(stdin))) {
		kyro_batch_abort(p->db);
		cli_warn(p->prog, "cannot read standard input: %s",
			 strerror(err ? err : EIO));
		put_free(p);
		exit(EXIT_ERR);
	}
	return rc;
}

/* --fvecs FILE, or stdin. */
static int fvecs_file(struct put *p, const char *path, uint64_t first)
{
	if (!path || !strcmp(path, "-"))
		return put_fvecs(p, stdin, first);
	FILE *f = fopen(path, "rb");
	if (!f) {
		int err = errno;
		kyro_batch_abort(p->db);
		put_free(p);
		cli_warn(p->prog, "cannot open '%s': %s", path, strerror(err));
		exit(EXIT_ERR);
	}
	/* A read error is bad input of its record: put_fvecs() exits. */
	int rc = put_fvecs(p, f, first);
	fclose(f);
	return rc;
}

enum { MODE_VALUES, MODE_DELETE, MODE_VECTORS, MODE_FVECS, MODE_REPLAY };

int main(int argc, char **argv)
{
	struct cli c = {.prog = "kyro-put", .usage = usage, .opts = opts,
			.summary = "Put records or vectors into a KyroDB store, or delete them, as one atomic batch.\n"
				   "Without KEY, reads KEY<TAB>VALUE lines (or keys, with --delete; or\n"
				   "KEY<TAB>VECTOR lines, with --vectors) from stdin.",
			.epilog = "VALUE on stdin may use the escapes \\\\ \\t \\n \\r \\0 \\xHH.\n"
				  "A CR at the end of a KEY<TAB>VALUE line is refused: convert CR LF\n"
				  "line endings first, and write a value's final CR as \\r.\n"
				  "A VECTOR is its components as decimal numbers separated by commas\n"
				  "(1.5,-2,3e-4).  Every vector of a store has the store's dimension, set\n"
				  "by its first vector; a line or record of another, or with a component\n"
				  "that is not a finite number, is an error, and nothing is written.\n"};
	struct put p = {.prog = c.prog, .unit = "line"};
	const char *dir = NULL, *fvecs_path = NULL;
	int sync = KYRO_SYNC_BATCH, verbose = 0, print_offset = 0, opt, rc;
	int mode = MODE_VALUES, modes = 0, first_set = 0;
	uint64_t last = 0, first = 0;
	cli_init(&c, argc, argv);
	while ((opt = cli_next(&c)) != 0) {
		switch (opt) {
		case OPT_DIR: dir = c.arg; break;
		case OPT_SYNC:
			if (cli_parse_sync(c.arg, &sync))
				cli_usage_error(&c, "invalid --sync mode '%s' (always, batch or none)", c.arg);
			break;
		case OPT_DELETE: mode = MODE_DELETE; modes++; break;
		case OPT_OFFSET: print_offset = 1; break;
		case OPT_VERBOSE: verbose = 1; break;
		case OPT_REPLAY: mode = MODE_REPLAY; modes++; break;
		case OPT_VECTORS: mode = MODE_VECTORS; modes++; break;
		case OPT_FVECS: mode = MODE_FVECS; modes++; break;
		case OPT_FIRST_KEY:
			if (cli_parse_key(c.arg, strlen(c.arg), &first))
				cli_usage_error(&c, "invalid --first-key '%s'", c.arg);
			first_set = 1;
			break;
		}
	}
	if (modes > 1)
		cli_usage_error(&c, "--delete, --vectors, --fvecs and --replay exclude each other");
	if (first_set && mode != MODE_FVECS)
		cli_usage_error(&c, "--first-key goes with --fvecs");
	p.del = mode == MODE_DELETE;
	int nargs = argc - c.ind;
	char **args = argv + c.ind;
	if (mode == MODE_REPLAY && nargs)
		cli_usage_error(&c, "--replay reads stdin only");
	if (mode == MODE_FVECS && nargs > 1)
		cli_usage_error(&c, "--fvecs reads one FILE, or stdin");
	if ((mode == MODE_VALUES || mode == MODE_VECTORS) && nargs != 0 && nargs != 2)
		cli_usage_error(&c, mode == MODE_VALUES ?
				"expected KEY VALUE, or no operands to read stdin" :
				"expected KEY VECTOR, or no operands to read stdin");
	if (mode == MODE_FVECS && nargs)
		fvecs_path = args[0];
	uint64_t key0 = 0;
	char q[CLI_QUOTE_MAX], why[CLI_WHY_MAX];
	int nkeys = p.del ? nargs : mode == MODE_FVECS || !nargs ? 0 : 1;
	for (int i = 0; i < nkeys; i++) {
		size_t len = cli_key_len(args[i], strlen(args[i]));
		if (cli_parse_key(args[i], len, &key0))
			cli_usage_error(&c, "invalid key '%s'", cli_quote(q, sizeof q, args[i], len));
	}
	if (mode == MODE_VECTORS && nargs &&
	    cli_parse_vec(args[1], strlen(args[1]), &p.vec, why))
		cli_usage_error(&c, "invalid vector: %s", why);
	cli_env_warnings(cli_warn_env, (void *)c.prog);

	rc = cli_open(&p.db, cli_dir(dir), KYRO_RDWR);
	if (!rc)
		rc = kyro_set_sync(p.db, sync);
	if (!rc && mode == MODE_REPLAY) {
		if (replay(&p, &last) != EXIT_OK) {
			put_free(&p);
			return EXIT_ERR;
		}
		goto done;
	}
	if (!rc)
		rc = kyro_batch_begin(p.db);
	/* The batch holds the writer lock: the store's dimension cannot
	 * change under it now. */
	if (!rc && (mode == MODE_VECTORS || mode == MODE_FVECS))
		rc = kyro_vec_dim(p.db, &p.dim);
	if (rc)
		goto fail;
	if (mode == MODE_FVECS)
		rc = fvecs_file(&p, fvecs_path, first);
	else if (nargs == 0)
		rc = put_lines(&p, mode == MODE_VECTORS ? vec_line : put_line);
	else if (p.del)
		for (int i = 0; !rc && i < nargs; i++) {
			cli_parse_key(args[i], cli_key_len(args[i], strlen(args[i])), &key0);
			rc = write_one(&p, key0, NULL, 0);
		}
	else if (mode == MODE_VECTORS) {
		p.unit = "VECTOR";
		rc = write_vec(&p, 0, key0);
	}
	else {
		size_t len = strlen(args[1]);
		if (len > KYRO_MAX_VALUE)
			bad_line(&p, 1, "value larger than 16 MiB", NULL, 0);
		rc = write_one(&p, key0, args[1], len);
	}
	if (!rc)
		rc = kyro_batch_commit(p.db, &last);
	if (rc)
		goto fail;
done:
	if (print_offset)
		printf("%llu\n", (unsigned long long)last);
	if (verbose && p.vecs)
		fprintf(stderr, "%s: %llu records (%llu puts, %llu vectors, %llu deletes), last offset %llu\n",
			c.prog, (unsigned long long)(p.puts + p.vecs + p.dels),
			(unsigned long long)p.puts, (unsigned long long)p.vecs,
			(unsigned long long)p.dels, (unsigned long long)last);
	else if (verbose)
		fprintf(stderr, "%s: %llu records (%llu puts, %llu deletes), last offset %llu\n",
			c.prog, (unsigned long long)(p.puts + p.dels),
			(unsigned long long)p.puts, (unsigned long long)p.dels,
			(unsigned long long)last);
	put_free(&p);
	return cli_finish(c.prog, EXIT_OK);
fail:
	cli_db_error(c.prog, p.db, rc);
	kyro_batch_abort(p.db);
	put_free(&p);
	return EXIT_ERR;
}
