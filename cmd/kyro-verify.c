/*
 * kyro-verify - check every file of a store; --repair mends the WAL and the
 * LOCK page, keeping what it cuts in lost+found/.
 */
#include <stdint.h>
#include <string.h>

#include "cli.h"

enum { OPT_DIR = 1, OPT_VERBOSE, OPT_REPAIR, OPT_DEEP };

static const struct cli_opt opts[] = {
	{OPT_DIR, 'd', "dir", "DIR", "the data directory (default $KYRODB_DIR, else ./kyrodb-data)"},
	{OPT_REPAIR, 0, "repair", NULL, "repair the WAL and the LOCK page; what is cut goes to DIR/lost+found/"},
	{OPT_DEEP, 0, "deep", NULL, "also check that every key lies inside its index window"},
	{OPT_VERBOSE, 'v', NULL, NULL, "print a summary on stderr"},
	{0, 0, NULL, NULL, NULL},
};

static const char *const usage[] = {
	"[-v] [-d DIR] [--repair] [--deep]",
	NULL,
};

static unsigned long problems;

static void report(void *arg, const char *file, uint64_t off, const char *text)
{
	(void)arg;
	if (!file) {
		cli_warn("kyro-verify", "%s", text);
		return;
	}
	problems++;
	if (off == UINT64_MAX || !*file)
		printf("%s\n", text);
	else
		printf("%s: offset %llu: %s\n", file, (unsigned long long)off, text);
}

/* What was checked of the vectors of a clean store: the snapshot's
 * vectors whole, the graph's header, or with --deep every block and link. */
static void say_vectors(const char *prog, const char *dir, int deep)
{
	struct kyro_vec_info vi;
	kyro_db *db;
	if (cli_open(&db, dir, KYRO_RDONLY) || kyro_vec_info(db, &vi) ||
	    !vi.snapshot) {
		kyro_close(db);
		return;
	}
	if (!vi.indexed)
		fprintf(stderr, "%s: %s: %llu vectors checked whole; no graph\n",
			prog, dir, (unsigned long long)vi.snapshot);
	else
		fprintf(stderr, "%s: %s: %llu vectors checked whole; graph %llu: %s\n",
			prog, dir, (unsigned long long)vi.snapshot,
			(unsigned long long)vi.generation,
			deep ? "every block and link checked" :
			"header checked (--deep checks every block and link)");
	kyro_close(db);
}

int main(int argc, char **argv)
{
	struct cli c = {.prog = "kyro-verify", .usage = usage, .opts = opts,
			.summary = "Check every file of a KyroDB store; print each problem with its file and byte offset.",
			.epilog = "--repair truncates a torn WAL tail, rewrites a damaged segment header and\n"
				  "rebuilds the shared page in LOCK; then the exit status is 0 if nothing else\n"
				  "is wrong.  When committed data is lost it keeps every whole batch before\n"
				  "the damage, copies what it cuts to DIR/lost+found/, names the lost sequence\n"
				  "numbers and exits 1.  A damaged snapshot, index or MANIFEST is not repaired.\n"};
	const char *dir = NULL;
	int verbose = 0, opt;
	unsigned flags = 0;
	cli_init(&c, argc, argv);
	while ((opt = cli_next(&c)) != 0) {
		switch (opt) {
		case OPT_DIR: dir = c.arg; break;
		case OPT_REPAIR: flags |= KYRO_VERIFY_REPAIR; break;
		case OPT_DEEP: flags |= KYRO_VERIFY_DEEP; break;
		case OPT_VERBOSE: verbose = 1; break;
		}
	}
	if (c.ind != argc)
		cli_usage_error(&c, "unexpected operand '%s'", argv[c.ind]);
	cli_env_warnings(cli_warn_env, (void *)c.prog);
	int rc = kyro_verify(cli_dir(dir), flags, report, NULL);
	int status = rc == 0 ? EXIT_OK : rc == KYRO_EDAMAGED ? EXIT_NO : EXIT_ERR;
	if (verbose)
		fprintf(stderr, "%s: %s: %s (%lu finding%s)\n", c.prog, cli_dir(dir),
			status == EXIT_OK ? "clean" : status == EXIT_NO ? "damaged" : "not checked",
			problems, problems == 1 ? "" : "s");
	if (verbose && status == EXIT_OK)
		say_vectors(c.prog, cli_dir(dir), flags & KYRO_VERIFY_DEEP);
	return cli_finish(c.prog, status);
}
