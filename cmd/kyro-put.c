/*
 * kyro-put - write records; one invocation is one atomic batch.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { OPT_DIR = 1, OPT_SYNC, OPT_DELETE, OPT_OFFSET, OPT_VERBOSE, OPT_REPLAY };

static const struct cli_opt opts[] = {
	{OPT_DIR, 'd', "dir", "DIR", "the data directory (default $KYRODB_DIR, else ./kyrodb-data)"},
	{OPT_SYNC, 0, "sync", "MODE", "always, batch (default) or none"},
	{OPT_DELETE, 0, "delete", NULL, "delete the KEYs (or keys on stdin)"},
	{OPT_OFFSET, 0, "print-offset", NULL, "print the batch's last sequence number"},
	{OPT_REPLAY, 0, "replay", NULL, "read the change feed (kyro-get's replay format) from stdin: one batch per source batch"},
	{OPT_VERBOSE, 'v', NULL, NULL, "print a summary on stderr"},
	{0, 0, NULL, NULL, NULL},
};

static const char *const usage[] = {
	"[-v] [-d DIR] [--sync=MODE] [--print-offset] [KEY VALUE]",
	"[-v] [-d DIR] [--sync=MODE] [--print-offset] --delete [KEY ...]",
	"[-v] [-d DIR] [--sync=MODE] [--print-offset] --replay",
	NULL,
};

struct put {
	const char *prog;
	kyro_db *db;
	int del;
	uint64_t puts, dels, batches;
	struct cli_buf val;
};

/* Bad input: the batch is dropped whole, so nothing of it lands.  S, when
 * not NULL, is quoted with escapes, so that a stray CR shows as \r. */
static _Noreturn void bad_text(struct put *p, unsigned long line, const char *what,
			       const char *s, size_t len, const char *hint)
{
	char q[CLI_QUOTE_MAX];
	kyro_batch_abort(p->db);
	kyro_close(p->db);
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
	if (!del && !(len > 4 && !memcmp(s, "put\t", 4)))
		bad_line(p, line, "not a replay line (put, delete or commit)", s, len);
	at = del ? 7 : 4;
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

int main(int argc, char **argv)
{
	struct cli c = {.prog = "kyro-put", .usage = usage, .opts = opts,
			.summary = "Put records into a KyroDB store, or delete them, as one atomic batch.\n"
				   "Without KEY, reads KEY<TAB>VALUE lines (or keys, with --delete) from stdin.",
			.epilog = "VALUE on stdin may use the escapes \\\\ \\t \\n \\r \\0 \\xHH.\n"
				  "A CR at the end of a KEY<TAB>VALUE line is refused: convert CR LF\n"
				  "line endings first, and write a value's final CR as \\r.\n"};
	struct put p = {.prog = c.prog};
	const char *dir = NULL;
	int sync = KYRO_SYNC_BATCH, verbose = 0, print_offset = 0, opt, rc;
	int replay_mode = 0;
	uint64_t last = 0;
	cli_init(&c, argc, argv);
	while ((opt = cli_next(&c)) != 0) {
		switch (opt) {
		case OPT_DIR: dir = c.arg; break;
		case OPT_SYNC:
			if (cli_parse_sync(c.arg, &sync))
				cli_usage_error(&c, "invalid --sync mode '%s' (always, batch or none)", c.arg);
			break;
		case OPT_DELETE: p.del = 1; break;
		case OPT_OFFSET: print_offset = 1; break;
		case OPT_VERBOSE: verbose = 1; break;
		case OPT_REPLAY: replay_mode = 1; break;
		}
	}
	if (replay_mode && (p.del || argc != c.ind))
		cli_usage_error(&c, "--replay reads stdin only, and takes no --delete");
	int nargs = argc - c.ind;
	char **args = argv + c.ind;
	if (!p.del && nargs != 0 && nargs != 2)
		cli_usage_error(&c, "expected KEY VALUE, or no operands to read stdin");
	uint64_t key0 = 0;
	char q[CLI_QUOTE_MAX];
	for (int i = 0; i < (p.del ? nargs : nargs ? 1 : 0); i++) {
		size_t len = cli_key_len(args[i], strlen(args[i]));
		if (cli_parse_key(args[i], len, &key0))
			cli_usage_error(&c, "invalid key '%s'", cli_quote(q, sizeof q, args[i], len));
	}
	cli_env_warnings(cli_warn_env, (void *)c.prog);

	rc = cli_open(&p.db, cli_dir(dir), KYRO_RDWR);
	if (!rc)
		rc = kyro_set_sync(p.db, sync);
	if (!rc && replay_mode) {
		if (replay(&p, &last) != EXIT_OK) {
			kyro_close(p.db);
			free(p.val.p);
			return EXIT_ERR;
		}
		goto done;
	}
	if (!rc)
		rc = kyro_batch_begin(p.db);
	if (rc)
		goto fail;
	if (nargs == 0) {
		char *line = NULL;
		size_t cap = 0;
		ssize_t n;
		unsigned long lineno = 0;
		/* getline() returns -1 both at the end of the input and on
		 * an error; when memory runs out only errno tells (ferror()
		 * stays clear).  Taking an error for the end would commit
		 * part of the batch. */
		while (!rc && (errno = 0, n = getline(&line, &cap, stdin)) >= 0)
			rc = put_line(&p, ++lineno, line, (size_t)n);
		int err = errno;
		free(line);
		if (!rc && (err || ferror(stdin))) {
			kyro_batch_abort(p.db);
			cli_warn(c.prog, "cannot read standard input: %s",
				 strerror(err ? err : EIO));
			kyro_close(p.db);
			free(p.val.p);
			return EXIT_ERR;
		}
	} else if (p.del) {
		for (int i = 0; !rc && i < nargs; i++) {
			cli_parse_key(args[i], cli_key_len(args[i], strlen(args[i])), &key0);
			rc = write_one(&p, key0, NULL, 0);
		}
	} else {
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
	if (verbose)
		fprintf(stderr, "%s: %llu records (%llu puts, %llu deletes), last offset %llu\n",
			c.prog, (unsigned long long)(p.puts + p.dels),
			(unsigned long long)p.puts, (unsigned long long)p.dels,
			(unsigned long long)last);
	kyro_close(p.db);
	free(p.val.p);
	return cli_finish(c.prog, EXIT_OK);
fail:
	cli_db_error(c.prog, p.db, rc);
	kyro_batch_abort(p.db);
	kyro_close(p.db);
	free(p.val.p);
	return EXIT_ERR;
}
