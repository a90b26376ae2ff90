/*
 * kyro-rmi-build - build and commit the learned index of the snapshot, or
 * with --vectors its vector index.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { OPT_DIR = 1, OPT_VERBOSE, OPT_LEAVES, OPT_BITS, OPT_MAXSIZE, OPT_RETAIN, OPT_VECTORS };

static const struct cli_opt opts[] = {
	{OPT_DIR, 'd', "dir", "DIR", "the data directory (default $KYRODB_DIR, else ./kyrodb-data)"},
	{OPT_LEAVES, 0, "leaves", "N", "use N leaf models (default: tuned)"},
	{OPT_BITS, 0, "router-bits", "B", "router table of 2^B entries, 8..24 (default: tuned)"},
	{OPT_MAXSIZE, 0, "max-size", "BYTES", "index size budget (default 2% of the keys' bytes)"},
	{OPT_VECTORS, 0, "vectors", NULL, "build the vector index (HNSW graph) instead of the learned index"},
	CLI_VEC_OPTS,
	{OPT_RETAIN, 0, "retain", "SPEC", CLI_RETAIN_HELP},
	{OPT_VERBOSE, 'v', NULL, NULL, "print leaves, windows, size and time on stderr"},
	{0, 0, NULL, NULL, NULL},
};

static const char *const usage[] = {
	"[-v] [-d DIR] [--leaves N] [--router-bits B] [--max-size BYTES] [--retain SPEC]",
	"[-v] [-d DIR] --vectors [--m M] [--ef-construction N] [--metric METRIC] [--retain SPEC]",
	NULL,
};

static uint64_t number(const struct cli *c, const char *opt, uint64_t lo, uint64_t hi)
{
	uint64_t v;
	if (cli_parse_key(c->arg, strlen(c->arg), &v) || v < lo || v > hi)
		cli_usage_error(c, "%s needs a number from %llu to %llu, not '%s'", opt,
				(unsigned long long)lo, (unsigned long long)hi, c->arg);
	return v;
}

int main(int argc, char **argv)
{
	struct cli c = {.prog = "kyro-rmi-build", .usage = usage, .opts = opts,
			.summary = "Build the learned index (a two-stage RMI) for the current snapshot and commit it;\n"
				   "with --vectors, build its vector index (an HNSW graph) instead."};
	struct kyro_vec_params vp = {0};
	struct kyro_vec_stats vst;
	int vectors = 0, rmi_opts = 0, vec_opts = 0;
	struct kyro_rmi_params p = {0};
	struct kyro_rmi_stats st;
	const char *dir = NULL;
	int verbose = 0, opt;
	kyro_db *db;
	uint64_t rbytes = 0, rsecs = 0;
	int retain = 0;
	cli_init(&c, argc, argv);
	while ((opt = cli_next(&c)) != 0) {
		switch (opt) {
		case OPT_DIR: dir = c.arg; break;
		case OPT_RETAIN:
			if (cli_parse_retain(c.arg, &rbytes, &rsecs))
				cli_usage_error(&c, CLI_RETAIN_ERROR, c.arg);
			retain = 1;
			break;
		case OPT_LEAVES:
			p.leaves = (unsigned)number(&c, "--leaves", 1, 1u << 30);
			rmi_opts = 1;
			break;
		case OPT_BITS:
			p.router_bits = (unsigned)number(&c, "--router-bits", 8, 24);
			rmi_opts = 1;
			break;
		case OPT_MAXSIZE:
			p.max_size = number(&c, "--max-size", 1, UINT64_MAX);
			rmi_opts = 1;
			break;
		case OPT_VECTORS: vectors = 1; break;
		case CLI_VEC_M:
		case CLI_VEC_EFC:
		case CLI_VEC_METRIC:
			cli_vec_param(&c, opt, &vp);
			vec_opts = 1;
			break;
		case OPT_VERBOSE: verbose = 1; break;
		}
	}
	if (c.ind != argc)
		cli_usage_error(&c, "unexpected operand '%s'", argv[c.ind]);
	if (vec_opts && !vectors)
		cli_usage_error(&c, "--m, --ef-construction and --metric go with --vectors");
	if (rmi_opts && vectors)
		cli_usage_error(&c, "--leaves, --router-bits and --max-size build the learned index, not --vectors");
	cli_env_warnings(cli_warn_env, (void *)c.prog);
	int rc = cli_open(&db, cli_dir(dir), KYRO_RDWR | KYRO_EXISTING | KYRO_MAINTENANCE);
	if (!rc && retain)
		rc = kyro_set_retain(db, rbytes, rsecs);
	if (!rc && vectors)
		rc = kyro_vec_build(db, &vp, &vst, cli_progress_wanted() ? cli_progress : NULL,
				    (void *)c.prog);
	else if (!rc)
		rc = kyro_rmi_build(db, &p, &st, cli_progress_wanted() ? cli_progress : NULL,
				    (void *)c.prog);
	if (rc) {
		cli_db_error(c.prog, db, rc);
		kyro_close(db);
		return EXIT_ERR;
	}
	if (verbose && vectors)
		cli_vec_stats(c.prog, &vst);
	else if (verbose)
		fprintf(stderr,
			"%s: index %llu: %llu keys, %llu leaves, router bits %llu, "
			"mean window %.1f, max window %.0f, %llu bytes in %.3f s\n",
			c.prog, (unsigned long long)st.generation, (unsigned long long)st.keys,
			(unsigned long long)st.leaves, (unsigned long long)st.router_bits,
			st.mean_window, st.max_window, (unsigned long long)st.bytes, st.seconds);
	kyro_close(db);
	return cli_finish(c.prog, EXIT_OK);
}
