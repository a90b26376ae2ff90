/*
 * auth.c - the bearer token and its constant-time check.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "auth.h"
#include "log.h"

#define MAX_TOKEN 4096

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static char *token;      /* NULL: no authentication */
static size_t token_len;
static const char *token_file;

/* Trailing newlines and spaces are not part of the token: editors add a
 * newline, and `echo secret >file` is the obvious way to write one. */
static int set_token(const char *s, size_t n, char *err, size_t errlen)
{
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (!n) {
		snprintf(err, errlen, "the token is empty");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f) {
			snprintf(err, errlen, "the token holds a space or control character");
			return -1;
		}
	char *t = malloc(n + 1);
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(t, s, n);
	t[n] = 0;
	pthread_rwlock_wrlock(&lock);
	char *old = token;
	token = t;
	token_len = n;
	pthread_rwlock_unlock(&lock);
	free(old);
	return 0;
}

static int load_file(char *err, size_t errlen)
{
	char buf[MAX_TOKEN + 2];
	FILE *f = fopen(token_file, "r");
	if (!f) {
		snprintf(err, errlen, "cannot open '%s': %s", token_file, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
		log_msg(LOG_WARN, "'%s' is readable by others than its owner", token_file);
	size_t n = fread(buf, 1, sizeof buf, f);
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		snprintf(err, errlen, "cannot read '%s'", token_file);
		return -1;
	}
	if (n > MAX_TOKEN) {
		snprintf(err, errlen, "'%s': the token is longer than %d bytes", token_file, MAX_TOKEN);
		return -1;
	}
	char why[128];
	if (set_token(buf, n, why, sizeof why)) {
		snprintf(err, errlen, "'%s': %s", token_file, why);
		return -1;
	}
	return 0;
}

int auth_init(const char *file, const char *env_token, char *err, size_t errlen)
{
	token_file = file;
	if (file)
		return load_file(err, errlen);
	if (env_token && *env_token) {
		char why[128];
		if (set_token(env_token, strlen(env_token), why, sizeof why)) {
			snprintf(err, errlen, "KYRODB_AUTH_TOKEN: %s", why);
			return -1;
		}
	}
	return 0;
}

int auth_reload(char *err, size_t errlen)
{
	if (!token_file) {
		snprintf(err, errlen, "no --auth-token-file to re-read");
		return -1;
	}
	return load_file(err, errlen);
}

int auth_enabled(void)
{
	pthread_rwlock_rdlock(&lock);
	int on = token != NULL;
	pthread_rwlock_unlock(&lock);
	return on;
}

int auth_check(const char *hdr)
{
	static const char scheme[] = "Bearer ";
	pthread_rwlock_rdlock(&lock);
	if (!token) {
		pthread_rwlock_unlock(&lock);
		return 1;
	}
	const char *given = "";
	if (hdr && !strncasecmp(hdr, scheme, sizeof scheme - 1))
		given = hdr + sizeof scheme - 1;
	/* Walk the whole stored token whatever GIVEN is, folding every
	 * difference (and a length mismatch) into one accumulator. */
	size_t glen = strlen(given);
	unsigned diff = glen != token_len;
	for (size_t i = 0; i < token_len; i++) {
		unsigned char g = i < glen ? (unsigned char)given[i] : 0;
		diff |= (unsigned)(g ^ (unsigned char)token[i]);
	}
	pthread_rwlock_unlock(&lock);
	return diff == 0;
}
