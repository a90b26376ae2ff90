/*
 * kyro-snapshot - fold the WAL into a new snapshot.
 */
#include "cli.h"

enum { OPT_DIR = 1, OPT_VERBOSE, OPT_RMI, OPT_RETAIN, OPT_VECTORS };

static const struct cli_opt opts[] = {
	{OPT_DIR, 'd', "dir", "DIR", "the data directory (default $KYRODB_DIR, else ./kyrodb-data)"},
	{OPT_RMI, 0, "rmi", NULL, "also build the learned index, committed with the snapshot"},
	{OPT_VECTORS, 0, "vectors", NULL, "also build the vector index (HNSW graph), committed with the snapshot"},
	CLI_VEC_OPTS,
	{OPT_RETAIN, 0, "retain", "SPEC", CLI_RETAIN_HELP},
	{OPT_VERBOSE, 'v', NULL, NULL, "print keys, bytes and time on stderr"},
	{0, 0, NULL, NULL, NULL},
};

static const char *const usage[] = {
	"[-v] [-d DIR] [--rmi] [--vectors [--m M] [--ef-construction N] [--metric METRIC]] [--retain SPEC]",
	NULL,
};

int main(int argc, char **argv)
{
	struct cli c = {.prog = "kyro-snapshot", .usage = usage, .opts = opts,
			.summary = "Compact the last snapshot and the WAL of a KyroDB store into a new snapshot."};
	struct kyro_snapshot_stats st;
	const char *dir = NULL;
	int verbose = 0, rmi = 0, vectors = 0, vec_opts = 0, opt;
	struct kyro_vec_params vp = {0};
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
		case OPT_VERBOSE: verbose = 1; break;
		case OPT_RMI: rmi = 1; break;
		case OPT_VECTORS: vectors = 1; break;
		case CLI_VEC_M:
		case CLI_VEC_EFC:
		case CLI_VEC_METRIC:
			cli_vec_param(&c, opt, &vp);
			vec_opts = 1;
			break;
		}
	}
	if (c.ind != argc)
		cli_usage_error(&c, "unexpected operand '%s'", argv[c.ind]);
	if (vec_opts && !vectors)
		cli_usage_error(&c, "--m, --ef-construction and --metric go with --vectors");
	cli_env_warnings(cli_warn_env, (void *)c.prog);
	int rc = cli_open(&db, cli_dir(dir), KYRO_RDWR | KYRO_EXISTING | KYRO_MAINTENANCE);
	if (!rc && retain)
		rc = kyro_set_retain(db, rbytes, rsecs);
	/* Without any of them, the current graph's parameters stay. */
	if (!rc && vec_opts)
		rc = kyro_set_vec_params(db, &vp);
	unsigned flags = (rmi ? KYRO_SNAPSHOT_INDEX : 0) |
			 (vectors ? KYRO_SNAPSHOT_VECTORS : 0);
	if (!rc)
		rc = kyro_snapshot(db, flags, NULL, &st,
				   cli_progress_wanted() ? cli_progress : NULL, (void *)c.prog);
	if (rc) {
		cli_db_error(c.prog, db, rc);
		kyro_close(db);
		return EXIT_ERR;
	}
	if (verbose && st.vectors)
		fprintf(stderr, "%s: generation %llu: %llu keys, %llu vectors, %llu bytes in %.3f s\n",
			c.prog, (unsigned long long)st.generation, (unsigned long long)st.keys,
			(unsigned long long)st.vectors, (unsigned long long)st.bytes, st.seconds);
	else if (verbose)
		fprintf(stderr, "%s: generation %llu: %llu keys, %llu bytes in %.3f s\n", c.prog,
			(unsigned long long)st.generation, (unsigned long long)st.keys,
			(unsigned long long)st.bytes, st.seconds);
	if (verbose && st.rmi.generation)
		fprintf(stderr, "%s: index %llu: %llu leaves, mean window %.1f, %llu bytes in %.3f s\n",
			c.prog, (unsigned long long)st.rmi.generation, (unsigned long long)st.rmi.leaves,
			st.rmi.mean_window, (unsigned long long)st.rmi.bytes, st.rmi.seconds);
	if (verbose && st.vec.generation)
		cli_vec_stats(c.prog, &st.vec);
	kyro_close(db);
	return cli_finish(c.prog, EXIT_OK);
}
