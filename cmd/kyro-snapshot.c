/*
 * kyro-snapshot - fold the WAL into a new snapshot.
 */
#include "cli.h"

enum { OPT_DIR = 1, OPT_VERBOSE };

static const struct cli_opt opts[] = {
	{OPT_DIR, 'd', "dir", "DIR", "the data directory (default $KYRODB_DIR, else ./kyrodb-data)"},
	{OPT_VERBOSE, 'v', "verbose", NULL, "print keys, bytes and time on stderr"},
	{0, 0, NULL, NULL, NULL},
};

static const char *const usage[] = {
	"[-v] [-d DIR]",
	NULL,
};

int main(int argc, char **argv)
{
	struct cli c = {.prog = "kyro-snapshot", .usage = usage, .opts = opts,
			.summary = "Compact the last snapshot and the WAL of a KyroDB store into a new snapshot."};
	struct kyro_snapshot_stats st;
	const char *dir = NULL;
	int verbose = 0, opt;
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
	int rc = kyro_open(&db, cli_dir(dir), KYRO_RDWR);
	if (!rc)
		rc = kyro_snapshot(db, &st, cli_progress_wanted() ? cli_progress : NULL,
				   (void *)c.prog);
	if (rc) {
		cli_db_error(c.prog, db, rc);
		kyro_close(db);
		return EXIT_ERR;
	}
	if (verbose)
		fprintf(stderr, "%s: generation %llu: %llu keys, %llu bytes in %.3f s\n", c.prog,
			(unsigned long long)st.generation, (unsigned long long)st.keys,
			(unsigned long long)st.bytes, st.seconds);
	kyro_close(db);
	return cli_finish(c.prog, EXIT_OK);
}
