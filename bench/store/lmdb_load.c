/*
 * lmdb_load.c - the LMDB side of the bulk-load figure.
 *
 *   lmdb_load [-v] DIR < lines
 *
 * Reads `KEY<TAB>VALUE` lines from stdin, parsed exactly as kyro-put
 * parses them (parse.h), and puts every record into the main database of
 * the environment DIR (created if missing) in ONE write transaction with
 * one commit.  Keys are native u64 (MDB_INTEGERKEY); default environment
 * flags, so the commit fsyncs the data file and the meta page, as
 * kyro-put --sync=batch fsyncs once before it exits.  -v prints the
 * record count and the database's entry count on stdout.
 * Exit status: 0 success, 2 any error (bad input commits nothing).
 */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "parse.h"

static int fail(const char *what, int rc)
{
	fprintf(stderr, "lmdb_load: %s: %s\n", what, mdb_strerror(rc));
	return 2;
}

int main(int argc, char **argv)
{
	int verbose = argc > 1 && !strcmp(argv[1], "-v");
	if (argc != 2 + verbose) {
		fprintf(stderr, "usage: lmdb_load [-v] DIR < lines\n");
		return 2;
	}
	const char *dir = argv[1 + verbose];
	if (mkdir(dir, 0755) && errno != EEXIST)
		return fail(dir, errno);
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	int rc = mdb_env_create(&env);
	if (rc)
		return fail("mdb_env_create", rc);
	/* Sparse: only what is written takes disk space. */
	if ((rc = mdb_env_set_mapsize(env, (size_t)16 << 30)))
		return fail("mdb_env_set_mapsize", rc);
	if ((rc = mdb_env_open(env, dir, 0, 0644)))
		return fail("mdb_env_open", rc);
	if ((rc = mdb_txn_begin(env, NULL, 0, &txn)))
		return fail("mdb_txn_begin", rc);
	if ((rc = mdb_dbi_open(txn, NULL, MDB_INTEGERKEY, &dbi)))
		return fail("mdb_dbi_open", rc);

	char *line = NULL;
	size_t cap = 0, records = 0;
	ssize_t n;
	unsigned long lineno = 0;
	struct buf val = {0};
	const char *why;
	while ((n = getline(&line, &cap, stdin)) >= 0) {
		size_t len = (size_t)n;
		uint64_t key;
		lineno++;
		if (len && line[len - 1] == '\n')
			len--;
		char *tab = memchr(line, '\t', len);
		if (!tab || parse_key(line, (size_t)(tab - line), &key)) {
			fprintf(stderr, "lmdb_load: line %lu: bad key or no tab\n", lineno);
			mdb_txn_abort(txn);
			return 2;
		}
		if (unescape(tab + 1, len - (size_t)(tab + 1 - line), &val, &why)) {
			fprintf(stderr, "lmdb_load: line %lu: %s\n", lineno, why);
			mdb_txn_abort(txn);
			return 2;
		}
		MDB_val k = {sizeof key, &key}, v = {val.len, val.p};
		if ((rc = mdb_put(txn, dbi, &k, &v, 0))) {
			mdb_txn_abort(txn);
			return fail("mdb_put", rc);
		}
		records++;
	}
	if (ferror(stdin)) {
		mdb_txn_abort(txn);
		return fail("standard input", errno);
	}
	if ((rc = mdb_txn_commit(txn)))
		return fail("mdb_txn_commit", rc);
	if (verbose) {
		MDB_stat st;
		MDB_envinfo info;
		mdb_env_stat(env, &st);
		mdb_env_info(env, &info);
		printf("lmdb_load: %zu records, %zu entries, %zu pages of %u bytes\n",
			records, (size_t)st.ms_entries, (size_t)info.me_last_pgno + 1, st.ms_psize);
	}
	mdb_env_close(env);
	free(line);
	free(val.p);
	return 0;
}
