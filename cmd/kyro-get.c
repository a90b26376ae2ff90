/*
 * kyro-get - look keys up, or list a range, and print the values; answer
 * nearest-neighbour queries; print the change feed.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

enum {
	OPT_DIR = 1, OPT_FORMAT, OPT_ALL, OPT_RANGE, OPT_CHANGES, OPT_FROM,
	OPT_FOLLOW, OPT_NEAREST, OPT_EF, OPT_EXACT, OPT_METRIC, OPT_VALUES,
	OPT_FVECS, OPT_INFO,
};
enum { FMT_VALUE, FMT_TSV, FMT_JSON, FMT_RAW, FMT_REPLAY };

static const struct cli_opt opts[] = {
	{OPT_DIR, 'd', "dir", "DIR", "the data directory (default $KYRODB_DIR, else ./kyrodb-data)"},
	{OPT_FORMAT, 'f', "format", "FORMAT", "value (default), tsv, json or raw; with --changes: tsv (default), json or replay"},
	{OPT_ALL, 0, "all", NULL, "list every key in ascending order"},
	{OPT_RANGE, 0, "range", NULL, "list the keys from LO to HI (inclusive); with --nearest: search only them"},
	{OPT_NEAREST, 0, "nearest", "K", "answer each query vector on stdin with its K nearest keys (1..10000)"},
	{OPT_EF, 0, "ef", "N", "with --nearest: the graph search's beam, 1..100000 (default max(K, 64))"},
	{OPT_EXACT, 0, "exact", NULL, "with --nearest: compare with every vector instead of searching the graph"},
	{OPT_METRIC, 0, "metric", "METRIC", "with --nearest: " CLI_METRIC_HELP " (default: the graph's, else l2)"},
	{OPT_VALUES, 0, "with-values", NULL, "with --nearest: print each key's value too"},
	{OPT_FVECS, 0, "fvecs", NULL, "with --nearest: stdin holds .fvecs records, not text lines"},
	{OPT_INFO, 0, "info", NULL, "print the state of the learned index and of the vectors"},
	{OPT_CHANGES, 0, "changes", NULL, "print committed changes in order (the change feed)"},
	{OPT_FROM, 0, "from", "SEQ", "with --changes: start at sequence number SEQ (default 1, the first change; 0 means 1)"},
	{OPT_FOLLOW, 0, "follow", NULL, "with --changes: wait for new commits and print them, until interrupted"},
	{0, 0, NULL, NULL, NULL},
};

static const char *const usage[] = {
	"[-d DIR] [-f FORMAT] [KEY ...]",
	"[-d DIR] [-f FORMAT] --all",
	"[-d DIR] [-f FORMAT] --range LO HI",
	"[-d DIR] [-f FORMAT] --nearest K [--ef N] [--exact] [--metric METRIC] [--with-values] [--fvecs] [--range LO HI]",
	"[-d DIR] [-f FORMAT] --changes [--from SEQ] [--follow]",
	"[-d DIR] [-f FORMAT] --info",
	NULL,
};

static int fmt;

static void print(uint64_t key, const void *v, size_t len)
{
	switch (fmt) {
	case FMT_RAW:
		fwrite(v, 1, len, stdout);
		return;
	case FMT_TSV:
		printf("%llu\t", (unsigned long long)key);
		/* fall through */
	case FMT_VALUE:
		cli_put_escaped(stdout, v, len);
		putchar('\n');
		return;
	case FMT_JSON:
		if (cli_is_utf8(v, len)) {
			printf("{\"key\":%llu,\"value\":\"", (unsigned long long)key);
			cli_put_json_string(stdout, v, len);
		} else {
			/* Not UTF-8: say so by the field name, not by
			 * mangling the bytes. */
			printf("{\"key\":%llu,\"value_base64\":\"", (unsigned long long)key);
			cli_put_base64(stdout, v, len);
		}
		fputs("\"}\n", stdout);
		return;
	}
}

static int print_cb(void *arg, uint64_t key, const void *v, size_t len)
{
	(void)arg;
	print(key, v, len);
	return ferror(stdout) ? EIO : 0;
}

/* ---- the change feed ---- */

static volatile sig_atomic_t stop;
static kyro_feed *feed;
static int out_err; /* errno of the first failed write to stdout */

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
	if (feed)
		kyro_feed_interrupt(feed);
}

/* Stop between batches once asked, so that the output always ends with
 * a whole batch (a replay of it never sees half of one). */
#define STOP_NOW 1

/* V in decimal.  printf() was half the cost of printing the feed. */
static void put_u64(uint64_t v)
{
	char buf[24], *p = buf + sizeof buf;
	do
		*--p = (char)('0' + v % 10);
	while (v /= 10);
	fwrite_unlocked(p, 1, (size_t)(buf + sizeof buf - p), stdout);
}

/* TEXT, a tab. */
static void put_field(const char *text)
{
	fputs_unlocked(text, stdout);
	putchar_unlocked('\t');
}

/* A vector change's components, copied out of the record (which need
 * not be aligned for floats). */
static struct cli_vec chg_vec;
static int chg_oom;

static int change_vec(const struct kyro_change *c)
{
	uint32_t dim = (uint32_t)(c->len / 4);
	if (dim > chg_vec.cap) {
		float *p = realloc(chg_vec.v, (size_t)dim * sizeof *p);
		if (!p)
			return ENOMEM;
		chg_vec.v = p;
		chg_vec.cap = dim;
	}
	memcpy(chg_vec.v, c->val, (size_t)dim * 4);
	chg_vec.dim = dim;
	return 0;
}

/* The value or the vector of a change, as text. */
static void put_payload(const struct kyro_change *c)
{
	if (c->op == KYRO_CHANGE_PUT)
		cli_put_escaped(stdout, c->val, c->len);
	else if (c->op == KYRO_CHANGE_VECTOR)
		cli_put_vec(stdout, chg_vec.v, chg_vec.dim);
}

static int print_change(void *arg, const struct kyro_change *c)
{
	int put = c->op == KYRO_CHANGE_PUT, vec = c->op == KYRO_CHANGE_VECTOR;
	const char *op = put ? "put" : vec ? "vector" : "delete";
	(void)arg;
	if (vec && change_vec(c)) {
		chg_oom = 1;
		return ENOMEM;
	}
	switch (fmt) {
	case FMT_TSV:
		put_u64(c->seq);
		putchar_unlocked('\t');
		put_field(op);
		put_u64(c->key);
		putchar_unlocked('\t');
		put_payload(c);
		putchar_unlocked('\n');
		break;
	case FMT_JSON:
		printf("{\"seq\":%llu,\"batch_first\":%llu,\"batch_last\":%llu,"
		       "\"op\":\"%s\",\"key\":%llu",
		       (unsigned long long)c->seq,
		       (unsigned long long)c->batch_first,
		       (unsigned long long)c->batch_last, op,
		       (unsigned long long)c->key);
		if (c->op == KYRO_CHANGE_PUT && cli_is_utf8(c->val, c->len)) {
			fputs(",\"value\":\"", stdout);
			cli_put_json_string(stdout, c->val, c->len);
			putchar('"');
		} else if (c->op == KYRO_CHANGE_PUT) {
			fputs(",\"value_base64\":\"", stdout);
			cli_put_base64(stdout, c->val, c->len);
			putchar('"');
		} else if (vec) {
			fputs(",\"vector\":[", stdout);
			cli_put_vec(stdout, chg_vec.v, chg_vec.dim);
			putchar(']');
		}
		fputs("}\n", stdout);
		break;
	case FMT_REPLAY:
		put_field(op);
		put_u64(c->seq);
		putchar_unlocked('\t');
		put_u64(c->key);
		if (put || vec) {
			putchar_unlocked('\t');
			put_payload(c);
		}
		putchar_unlocked('\n');
		if (c->seq == c->batch_last)
			printf("commit\t%llu\n", (unsigned long long)c->seq);
		break;
	}
	if (ferror(stdout)) {
		if (!out_err)
			out_err = errno ? errno : EIO;
		return EIO;
	}
	return stop && c->seq == c->batch_last ? STOP_NOW : 0;
}

/* Whoever reads our output has gone (a pipe's reader exited): seen
 * without writing, so that a follower with nothing to print still ends. */
static int reader_gone(void)
{
	struct pollfd p = {.fd = STDOUT_FILENO, .events = 0};
	return poll(&p, 1, 0) == 1 && (p.revents & POLLERR);
}

/* Flush; -1 when output failed (OUT_ERR says why). */
static int flush_out(void)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return 0;
	if (!out_err)
		out_err = errno ? errno : EIO;
	return -1;
}

/* How often a follower with nothing to print looks at its reader. */
#define FOLLOW_TICK_MS 250

static int changes(const char *prog, const char *dir, uint64_t from, int follow)
{
	struct sigaction sa;
	int status = EXIT_OK, rc;
	size_t n;
	/* A reader that goes away is the normal end of `| head`: EPIPE,
	 * not death by SIGPIPE.  No SA_RESTART: a signal must end a wait. */
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	kyro_feed *f;
	rc = kyro_feed_open(&f, dir, from);
	if (rc) {
		cli_warn(prog, "%s", kyro_feed_errmsg(f));
		kyro_feed_close(f);
		return EXIT_ERR;
	}
	feed = f;
	for (;;) {
		rc = kyro_feed_read(f, 256, print_change, NULL, &n);
		if (out_err || rc == STOP_NOW || stop)
			break;
		if (chg_oom) {
			cli_warn(prog, "out of memory");
			status = EXIT_ERR;
			break;
		}
		if (rc) {
			cli_warn(prog, "%s", kyro_feed_errmsg(f));
			status = EXIT_ERR;
			break;
		}
		if (n == 256)
			continue;
		if (!follow || flush_out())
			break;
		rc = kyro_feed_wait(f, FOLLOW_TICK_MS);
		if (stop || (rc == ETIMEDOUT && reader_gone()))
			break;
		if (rc && rc != ETIMEDOUT && rc != EINTR) {
			cli_warn(prog, "cannot wait for commits in '%s': %s", dir,
				 strerror(rc));
			status = EXIT_ERR;
			break;
		}
	}
	feed = NULL;
	kyro_feed_close(f);
	free(chg_vec.v);
	/* A reader that went away (EPIPE) is the normal end of `| head`. */
	if (flush_out() && out_err != EPIPE) {
		cli_warn(prog, "cannot write to standard output: %s",
			 strerror(out_err));
		status = EXIT_ERR;
	}
	return status;
}

/* Answer one key; returns the exit status it deserves. */
static int get_one(const char *prog, kyro_db *db, const char *s, size_t len,
		   unsigned long line)
{
	uint64_t key;
	const void *v;
	size_t vlen;
	char q[CLI_QUOTE_MAX];
	len = cli_key_len(s, len);
	if (cli_parse_key(s, len, &key)) {
		cli_quote(q, sizeof q, s, len);
		if (line)
			cli_warn(prog, "line %lu: invalid key '%s'", line, q);
		else
			cli_warn(prog, "invalid key '%s'", q);
		return EXIT_ERR;
	}
	int rc = kyro_get(db, key, &v, &vlen);
	if (rc == KYRO_ENOTFOUND) {
		cli_warn(prog, "%.*s: not found", (int)len, s);
		return EXIT_NO;
	}
	if (rc) {
		cli_db_error(prog, db, rc);
		return EXIT_ERR;
	}
	print(key, v, vlen);
	return EXIT_OK;
}

static int worse(int a, int b) { return a > b ? a : b; }

/* Keys from stdin are answered in groups through kyro_get_batch(), whose
 * interleaved searches overlap their cache misses. */
#define BATCH 256

struct pending {
	struct kyro_item items[BATCH];
	char text[BATCH][24]; /* a valid key is at most 20 characters */
	size_t n;
};

/* Answer the pending keys and empty the batch, whatever the outcome.  A
 * library error leaves no item to trust, so it ends the run: the caller
 * stops reading on EXIT_ERR. */
static int flush_batch(const char *prog, kyro_db *db, struct pending *p)
{
	int status = EXIT_OK, rc = kyro_get_batch(db, p->items, p->n);
	size_t n = p->n;
	p->n = 0;
	if (rc) {
		cli_db_error(prog, db, rc);
		return EXIT_ERR;
	}
	for (size_t i = 0; i < n; i++) {
		struct kyro_item *it = &p->items[i];
		if (it->rc == 0) {
			print(it->key, it->val, it->len);
		} else {
			cli_warn(prog, "%s: not found", p->text[i]);
			status = EXIT_NO;
		}
	}
	return status;
}

static int get_stdin(const char *prog, kyro_db *db)
{
	static struct pending p;
	char *line = NULL, q[CLI_QUOTE_MAX];
	size_t cap = 0;
	ssize_t n;
	unsigned long lineno = 0;
	int status = EXIT_OK, rc, err;
	/* getline() returns -1 both at the end of the input and on an
	 * error; when memory runs out only errno tells (ferror() stays
	 * clear), and an error must not pass for the end. */
	while (errno = 0, (n = getline(&line, &cap, stdin)) >= 0) {
		size_t len = cli_key_len(line, (size_t)n);
		lineno++;
		if (fmt == FMT_RAW && lineno > 1) {
			cli_warn(prog, "line %lu: --format=raw takes exactly one key", lineno);
			status = EXIT_ERR;
			break;
		}
		uint64_t key;
		if (len >= sizeof p.text[0] || cli_parse_key(line, len, &key)) {
			cli_warn(prog, "line %lu: invalid key '%s'", lineno,
				 cli_quote(q, sizeof q, line, len));
			status = EXIT_ERR;
			continue;
		}
		memcpy(p.text[p.n], line, len);
		p.text[p.n][len] = 0;
		p.items[p.n++].key = key;
		if (p.n == BATCH) {
			rc = flush_batch(prog, db, &p);
			status = worse(status, rc);
			if (rc == EXIT_ERR)
				goto out; /* no answer after it can be trusted */
		}
	}
	err = errno;
	if (n < 0 && (err || ferror(stdin))) {
		cli_warn(prog, "cannot read standard input: %s", strerror(err ? err : EIO));
		status = EXIT_ERR;
	}
	/* The keys read before the end, or before a read error. */
	if (p.n)
		status = worse(status, flush_batch(prog, db, &p));
out:
	free(line);
	return status;
}

/* ---- nearest neighbours ---- */

struct nearest {
	const char *prog;
	kyro_db *db;
	struct kyro_vec_query q;
	int with_values;
	struct kyro_vec_hit *hits;
	const char *unit;      /* "line", or "record" for .fvecs */
};

/* One hit's value, when it has one; -1 after reporting an error. */
static int hit_value(struct nearest *nn, uint64_t key, const void **v,
		     size_t *len)
{
	int rc = kyro_get(nn->db, key, v, len);
	if (rc == KYRO_ENOTFOUND)
		return 0;
	if (rc) {
		cli_db_error(nn->prog, nn->db, rc);
		return -1;
	}
	return 1;
}

/* The answer to query NO.  Every answer ends the same way whatever the
 * number of queries, so that the Nth answer is found by counting: in tsv
 * an empty line, in json the one line that holds it. */
static int print_hits(struct nearest *nn, uint64_t no, size_t n)
{
	const void *v;
	size_t len;
	int has;
	if (fmt == FMT_JSON)
		printf("{\"query\":%llu,\"hits\":[", (unsigned long long)no);
	for (size_t i = 0; i < n; i++) {
		const struct kyro_vec_hit *h = &nn->hits[i];
		has = nn->with_values ? hit_value(nn, h->key, &v, &len) : 0;
		if (has < 0)
			return EXIT_ERR;
		if (fmt == FMT_TSV) {
			put_u64(h->key);
			putchar_unlocked('\t');
			cli_put_float(stdout, h->dist);
			if (has) {
				putchar_unlocked('\t');
				cli_put_escaped(stdout, v, len);
			}
			putchar_unlocked('\n');
			continue;
		}
		printf("%s{\"key\":%llu,\"distance\":", i ? "," : "",
		       (unsigned long long)h->key);
		cli_put_float(stdout, h->dist);
		if (has && cli_is_utf8(v, len)) {
			fputs(",\"value\":\"", stdout);
			cli_put_json_string(stdout, v, len);
			putchar('"');
		} else if (has) {
			fputs(",\"value_base64\":\"", stdout);
			cli_put_base64(stdout, v, len);
			putchar('"');
		} else if (nn->with_values) {
			fputs(",\"value\":null", stdout);
		}
		putchar('}');
	}
	fputs(fmt == FMT_JSON ? "]}\n" : "\n", stdout);
	return EXIT_OK;
}

/* Answer the query in VEC, line or record NO of the input. */
static int answer(struct nearest *nn, uint64_t no, const struct cli_vec *vec)
{
	size_t n = 0;
	nn->q.vec = vec->v;
	nn->q.dim = vec->dim;
	int rc = kyro_vec_search(nn->db, &nn->q, nn->hits, &n);
	if (rc == EINVAL || rc == KYRO_EDIM) {
		/* The query's fault: name it. */
		const char *m = kyro_errmsg(nn->db);
		cli_warn(nn->prog, "%s %llu: %s", nn->unit, (unsigned long long)no,
			 strcmp(m, "no error") ? m : kyro_strerror(rc));
		return EXIT_ERR;
	}
	if (rc) {
		cli_db_error(nn->prog, nn->db, rc);
		return EXIT_ERR;
	}
	int status = print_hits(nn, no, n);
	if (status == EXIT_OK && n == 0) {
		cli_warn(nn->prog, "%s %llu: no vector found", nn->unit,
			 (unsigned long long)no);
		status = EXIT_NO;
	}
	return status;
}

/* The next text query into VEC: 1, 0 at the end, -1 with WHY. */
static int read_query(char **line, size_t *cap, struct cli_vec *vec,
		      char *why)
{
	errno = 0;
	ssize_t len = getline(line, cap, stdin);
	int err = errno;
	if (len < 0 && (err || ferror(stdin))) {
		snprintf(why, CLI_WHY_MAX, "cannot read standard input: %s",
			 strerror(err ? err : EIO));
		return -1;
	}
	if (len < 0)
		return 0;
	return cli_parse_vec(*line, cli_key_len(*line, (size_t)len), vec,
			     why) ? -1 : 1;
}

/* Queries are answered in the order read; the first bad one or error
 * ends the run (exit 2), so that no later answer is misnumbered. */
static int nearest(struct nearest *nn, int fvecs)
{
	struct cli_vec vec = {0};
	char why[CLI_WHY_MAX], *line = NULL;
	size_t cap = 0;
	uint64_t no = 0;
	int status = EXIT_OK, got;
	nn->hits = malloc((size_t)nn->q.k * sizeof *nn->hits);
	if (!nn->hits) {
		cli_warn(nn->prog, "out of memory");
		return EXIT_ERR;
	}
	nn->unit = fvecs ? "record" : "line";
	for (;;) {
		got = fvecs ? cli_read_fvecs(stdin, &vec, why) :
		      read_query(&line, &cap, &vec, why);
		if (got == 0)
			break;
		no++;
		if (got < 0) {
			cli_warn(nn->prog, "%s %llu: %s", nn->unit,
				 (unsigned long long)no, why);
			status = EXIT_ERR;
			break;
		}
		status = worse(status, answer(nn, no, &vec));
		if (status == EXIT_ERR)
			break;
	}
	free(line);
	free(vec.v);
	free(nn->hits);
	return status;
}

/* ---- --info ---- */

static void info_field(int *first, const char *name)
{
	if (fmt == FMT_JSON)
		printf("%s\"%s\":", *first ? "{" : ",", name);
	else
		printf("%s\t", name);
	*first = 0;
}

static void info_str(int *first, const char *name, const char *v)
{
	info_field(first, name);
	if (fmt == FMT_JSON) {
		putchar('"');
		cli_put_json_string(stdout, v, strlen(v));
		fputs("\"", stdout);
	} else {
		cli_put_escaped(stdout, v, strlen(v));
		putchar('\n');
	}
}

static void info_num(int *first, const char *name, uint64_t v)
{
	info_field(first, name);
	printf(fmt == FMT_JSON ? "%llu" : "%llu\n", (unsigned long long)v);
}

/* NAME<TAB>VALUE lines (tsv) or one JSON object: what a user asks about
 * the learned index and the vectors, in one place. */
static int info(const char *prog, kyro_db *db)
{
	struct kyro_index_info ii;
	struct kyro_vec_info vi;
	int first = 1, rc = kyro_index_info(db, &ii);
	if (!rc)
		rc = kyro_vec_info(db, &vi);
	if (rc) {
		cli_db_error(prog, db, rc);
		return EXIT_ERR;
	}
	info_str(&first, "index", ii.kind == KYRO_INDEX_RMI ? "rmi" :
		 ii.kind == KYRO_INDEX_BINARY ? "binary" : "none");
	if (ii.refused)
		info_str(&first, "index_refused", ii.why);
	if (ii.kind == KYRO_INDEX_RMI) {
		info_num(&first, "index_generation", ii.generation);
		info_num(&first, "index_leaves", ii.leaves);
		info_num(&first, "index_bytes", ii.bytes);
	}
	info_str(&first, "index_simd", ii.simd ? ii.simd : "unknown");
	info_num(&first, "vector_dim", vi.dim);
	info_num(&first, "vector_snapshot", vi.snapshot);
	info_num(&first, "vector_delta", vi.delta);
	info_str(&first, "vector_index", vi.indexed ? "hnsw" :
		 vi.refused ? "refused" : "none");
	if (!vi.indexed && vi.why[0])
		info_str(&first, "vector_why", vi.why);
	if (vi.indexed) {
		info_str(&first, "vector_metric", cli_metric_name(vi.metric));
		info_num(&first, "vector_m", vi.m);
		info_num(&first, "vector_ef_construction", vi.ef_construction);
		info_num(&first, "vector_generation", vi.generation);
		info_num(&first, "vector_bytes", vi.bytes);
	}
	info_str(&first, "vector_simd", vi.simd ? vi.simd : "unknown");
	if (fmt == FMT_JSON)
		fputs("}\n", stdout);
	return EXIT_OK;
}

static uint32_t number(const struct cli *c, const char *opt, uint32_t lo,
		       uint32_t hi)
{
	uint64_t v;
	if (cli_parse_key(c->arg, strlen(c->arg), &v) || v < lo || v > hi)
		cli_usage_error(c, "%s needs a number from %u to %u, not '%s'",
				opt, lo, hi, c->arg);
	return (uint32_t)v;
}

int main(int argc, char **argv)
{
	struct cli c = {.prog = "kyro-get", .usage = usage, .opts = opts,
			.summary = "Look keys up in a KyroDB store and print their values.\n"
				   "Without KEY, reads keys from stdin, one per line.",
			.epilog = "--nearest reads query vectors from stdin, one per line (v1,v2,...) or\n"
				  "one per .fvecs record, and prints KEY<TAB>DISTANCE lines (and <TAB>VALUE\n"
				  "with --with-values), nearest first, each answer ended by an empty line;\n"
				  "in json, one line {\"query\":N,\"hits\":[...]} per query.  A query that\n"
				  "finds nothing makes the exit status 1.\n"};
	struct nearest nn = {.prog = "kyro-get", .q = {.hi = UINT64_MAX}};
	int near = 0, vec_opts = 0, fvecs = 0, show_info = 0;
	const char *dir = NULL;
	int all = 0, range = 0, fmt_set = 0, opt, status = EXIT_OK;
	int chg = 0, follow = 0, from_set = 0;
	uint64_t from = 0;
	kyro_db *db = NULL;
	cli_init(&c, argc, argv);
	while ((opt = cli_next(&c)) != 0) {
		switch (opt) {
		case OPT_DIR: dir = c.arg; break;
		case OPT_FORMAT:
			fmt_set = 1;
			if (!strcmp(c.arg, "value")) fmt = FMT_VALUE;
			else if (!strcmp(c.arg, "tsv")) fmt = FMT_TSV;
			else if (!strcmp(c.arg, "json")) fmt = FMT_JSON;
			else if (!strcmp(c.arg, "raw")) fmt = FMT_RAW;
			else if (!strcmp(c.arg, "replay")) fmt = FMT_REPLAY;
			else cli_usage_error(&c, "invalid format '%s' (value, tsv, json, raw or replay)", c.arg);
			break;
		case OPT_ALL: all = 1; break;
		case OPT_RANGE: range = 1; break;
		case OPT_CHANGES: chg = 1; break;
		case OPT_FOLLOW: follow = 1; break;
		case OPT_NEAREST:
			near = 1;
			nn.q.k = number(&c, "--nearest", 1, KYRO_VEC_MAX_K);
			break;
		case OPT_EF:
			vec_opts = 1;
			nn.q.ef = number(&c, "--ef", 1, 100000);
			break;
		case OPT_EXACT: vec_opts = 1; nn.q.flags |= KYRO_VEC_EXACT; break;
		case OPT_METRIC:
			vec_opts = 1;
			if (cli_parse_metric(c.arg, &nn.q.metric))
				cli_usage_error(&c, "invalid metric '%s' (l2, ip or cosine)", c.arg);
			break;
		case OPT_VALUES: vec_opts = 1; nn.with_values = 1; break;
		case OPT_FVECS: vec_opts = 1; fvecs = 1; break;
		case OPT_INFO: show_info = 1; break;
		case OPT_FROM:
			if (cli_parse_key(c.arg, strlen(c.arg), &from))
				cli_usage_error(&c, "invalid sequence number '%s'", c.arg);
			from_set = 1;
			break;
		}
	}
	int nargs = argc - c.ind;
	char **args = argv + c.ind;
	uint64_t lo = 0, hi = UINT64_MAX;
	if ((from_set || follow) && !chg)
		cli_usage_error(&c, "--from and --follow go with --changes");
	if (vec_opts && !near)
		cli_usage_error(&c, "--ef, --exact, --metric, --with-values and --fvecs go with --nearest");
	if (chg + near + show_info + all > 1)
		cli_usage_error(&c, "--changes, --nearest, --info and --all exclude each other");
	if ((near || show_info) && (fmt == FMT_VALUE || fmt == FMT_RAW) && fmt_set)
		cli_usage_error(&c, "--nearest and --info print tsv or json");
	if (near && nargs != (range ? 2 : 0))
		cli_usage_error(&c, "--nearest reads its queries from stdin, and takes no KEY");
	if (show_info && (range || nargs))
		cli_usage_error(&c, "--info takes no KEY or --range");
	if (chg && (all || range || nargs))
		cli_usage_error(&c, "--changes takes no KEY, --all or --range");
	if (chg && (fmt == FMT_VALUE || fmt == FMT_RAW) && fmt_set)
		cli_usage_error(&c, "--changes prints tsv, json or replay");
	if (!chg && fmt == FMT_REPLAY)
		cli_usage_error(&c, "--format=replay goes with --changes");
	if (chg) {
		if (!fmt_set)
			fmt = FMT_TSV;
		cli_env_warnings(cli_warn_env, (void *)c.prog);
		static char cbuf[1 << 16];
		setvbuf(stdout, cbuf, _IOFBF, sizeof cbuf);
		return changes(c.prog, cli_dir(dir), from, follow);
	}
	if (all && range)
		cli_usage_error(&c, "--all and --range exclude each other");
	if (all && nargs)
		cli_usage_error(&c, "--all takes no KEY");
	if (range && (nargs != 2 ||
		      cli_parse_key(args[0], cli_key_len(args[0], strlen(args[0])), &lo) ||
		      cli_parse_key(args[1], cli_key_len(args[1], strlen(args[1])), &hi)))
		cli_usage_error(&c, "--range needs two keys, LO and HI");
	if (near && range && lo > hi)
		cli_usage_error(&c, "--range needs LO <= HI");
	if ((all || range) && fmt == FMT_RAW)
		cli_usage_error(&c, "--format=raw prints one value, not a listing");
	if (fmt == FMT_RAW && nargs > 1)
		cli_usage_error(&c, "--format=raw takes exactly one KEY");
	if ((all || range || near || show_info) && !fmt_set)
		fmt = FMT_TSV;
	cli_env_warnings(cli_warn_env, (void *)c.prog);

	static char obuf[1 << 16];
	setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
	int rc = cli_open(&db, cli_dir(dir), KYRO_RDONLY);
	if (rc) {
		cli_db_error(c.prog, db, rc);
		kyro_close(db);
		return EXIT_ERR;
	}
	if (show_info) {
		status = info(c.prog, db);
	} else if (near) {
		/* As for the learned index: a refused graph costs speed,
		 * never answers. */
		struct kyro_vec_info vi;
		if (kyro_vec_info(db, &vi) == 0 && vi.refused)
			cli_warn(c.prog, "warning: %s; comparing with every vector", vi.why);
		nn.db = db;
		nn.q.lo = lo;
		nn.q.hi = hi;
		status = nearest(&nn, fvecs);
	} else if (all || range) {
		rc = kyro_scan(db, lo, hi, print_cb, NULL);
		if (rc == EIO)
			status = EXIT_ERR; /* reported by cli_finish() */
		else if (rc) {
			cli_db_error(c.prog, db, rc);
			status = EXIT_ERR;
		}
	} else if (nargs) {
		for (int i = 0; i < nargs; i++)
			status = worse(status, get_one(c.prog, db, args[i], strlen(args[i]), 0));
	} else {
		status = worse(status, get_stdin(c.prog, db));
	}
	/* A damaged index costs speed, never answers: say so.  Asked after
	 * the lookups, since the library loads a large index only when
	 * enough lookups pay for it (a damaged body is found then). */
	struct kyro_index_info ii;
	if (kyro_index_info(db, &ii) == 0 && ii.refused)
		cli_warn(c.prog, "warning: %s; using binary search", ii.why);
	kyro_close(db);
	return cli_finish(c.prog, status);
}
