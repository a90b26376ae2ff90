/*
 * auth.h - bearer tokens.
 *
 * The token comes from --auth-token-file (re-read on SIGHUP) or from
 * KYRODB_AUTH_TOKEN; never from the command line, where ps would show it.
 * Without either, every request is allowed.
 */
#ifndef KYRO_SERVE_AUTH_H
#define KYRO_SERVE_AUTH_H

#include <stddef.h>

/* Load the token (FILE wins over ENV_TOKEN).  Returns 0, or -1 with ERR
 * set. */
int auth_init(const char *file, const char *env_token, char *err, size_t errlen);

/* Re-read the token file; on failure the old token stays.  Returns 0, or
 * -1 with ERR set (also when there is no file to re-read). */
int auth_reload(char *err, size_t errlen);

int auth_enabled(void);

/* Does the Authorization header value HDR (may be NULL) carry the token?
 * The comparison takes the same time wherever the first difference is. */
int auth_check(const char *hdr);

#endif
