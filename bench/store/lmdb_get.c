/*
 * lmdb_get.c - the LMDB side of the lookup figures.
 *
 *   lmdb_get DIR [KEY ...]      (without KEY: keys from stdin, one per line)
 *
 * Looks every key up in one read transaction and prints its value as
 * kyro-get --format=value does: the escaped value and a newline, through
 * a 64 KiB stdout buffer.  A missing key prints `KEY: not found` on
 * stderr.  Exit status as kyro-get: 0 all found, 1 some key not found,
 * 2 any error.
 */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

static MDB_txn *txn;
static MDB_dbi dbi;

static int get_one(const char *s, size_t len)
{
	uint64_t key;
	if (parse_key(s, len, &key)) {
		fprintf(stderr, "lmdb_get: invalid key '%.*s'\n", (int)len, s);
		return 2;
	}
	MDB_val k = {sizeof key, &key}, v;
	int rc = mdb_get(txn, dbi, &k, &v);
	if (rc == MDB_NOTFOUND) {
		fprintf(stderr, "lmdb_get: %.*s: not found\n", (int)len, s);
		return 1;
	}
	if (rc) {
		fprintf(stderr, "lmdb_get: mdb_get: %s\n", mdb_strerror(rc));
		return 2;
	}
	put_escaped(stdout, v.mv_data, v.mv_size);
	putchar('\n');
	return 0;
}

static int worse(int a, int b) { return a > b ? a : b; }

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: lmdb_get DIR [KEY ...]\n");
		return 2;
	}
	static char obuf[1 << 16];
	setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
	MDB_env *env;
	int rc = mdb_env_create(&env);
	if (!rc)
		rc = mdb_env_set_mapsize(env, (size_t)16 << 30);
	if (!rc)
		rc = mdb_env_open(env, argv[1], MDB_RDONLY, 0644);
	if (!rc)
		rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (!rc)
		rc = mdb_dbi_open(txn, NULL, MDB_INTEGERKEY, &dbi);
	if (rc) {
		fprintf(stderr, "lmdb_get: cannot open '%s': %s\n", argv[1], mdb_strerror(rc));
		return 2;
	}
	int status = 0;
	if (argc > 2) {
		for (int i = 2; i < argc; i++)
			status = worse(status, get_one(argv[i], strlen(argv[i])));
	} else {
		char *line = NULL;
		size_t cap = 0;
		ssize_t n;
		while ((n = getline(&line, &cap, stdin)) >= 0) {
			size_t len = (size_t)n;
			if (len && line[len - 1] == '\n')
				len--;
			status = worse(status, get_one(line, len));
		}
		if (ferror(stdin)) {
			fprintf(stderr, "lmdb_get: cannot read standard input: %s\n", strerror(errno));
			status = 2;
		}
		free(line);
	}
	mdb_txn_abort(txn);
	mdb_env_close(env);
	if (fflush(stdout) || ferror(stdout)) {
		fprintf(stderr, "lmdb_get: write error: %s\n", strerror(errno));
		status = 2;
	}
	return status;
}
