/*
 * kyro-warmup - bring the snapshot and its index into the page cache.
 */
#include <time.h>

#include "cli.h"

enum { OPT_DIR = 1, OPT_VERBOSE };

static const struct cli_opt opts[] = {
	{OPT_DIR, 'd', "dir", "DIR", "the data directory (default $KYRODB_DIR, else ./kyrodb-data)"},
	{OPT_VERBOSE, 'v', NULL, NULL, "print megabytes and time on stderr"},
	{0, 0, NULL, NULL, NULL},
};

static const char *const usage[] = {
	"[-v] [-d DIR]",
	NULL,
};

int main(int argc, char **argv)
{
	struct cli c = {.prog = "kyro-warmup", .usage = usage, .opts = opts,
			.summary = "Bring the current snapshot files, learned index, vectors and graph of a KyroDB store\n"
				   "into the page cache."};
	struct timespec t0, t1;
	const char *dir = NULL;
	int verbose = 0, opt;
	uint64_t bytes = 0;
	kyro_db *db;
	cli_init(&c, argc, argv);
	while ((opt = cli_next(&c)) != 0) {
		switch (opt) {
		case OPT_DIR: dir = c.arg; break;
		case OPT_VERBOSE: verbose = 1; break;
		}
	}
	if (c.ind != argc)
		cli_usage_error(&c, "unexpected operand '%s'", argv[c.ind]);
	cli_env_warnings(cli_warn_env, (void *)c.prog);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = cli_open(&db, cli_dir(dir), KYRO_RDONLY);
	if (!rc)
		rc = kyro_warmup(db, &bytes);
	if (rc) {
		cli_db_error(c.prog, db, rc);
		kyro_close(db);
		return EXIT_ERR;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	struct kyro_vec_info vi;
	if (!verbose || kyro_vec_info(db, &vi))
		vi.snapshot = 0;
	if (verbose)
		fprintf(stderr, "%s: %.1f MB in %.3f s", c.prog, (double)bytes / 1e6,
			(double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	if (vi.snapshot)
		fprintf(stderr, ", %llu vectors%s included",
			(unsigned long long)vi.snapshot,
			vi.indexed ? " and their graph" : "");
	if (verbose)
		fputc('\n', stderr);
	kyro_close(db);
	return cli_finish(c.prog, EXIT_OK);
}
