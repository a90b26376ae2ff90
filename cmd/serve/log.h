/*
 * log.h - messages on stderr, filtered by KYRODB_LOG_LEVEL.
 *
 * Each message is formatted whole and written with one write(2), so lines
 * from different threads never interleave.
 */
#ifndef KYRO_SERVE_LOG_H
#define KYRO_SERVE_LOG_H

#include <stdint.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Parse error|warn|info|debug; -1 when unknown. */
int log_parse_level(const char *s);
void log_set_level(int level);
int log_enabled(int level);

/* "kyro-serve: [LEVEL] text". */
void log_msg(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* One access line: client, method, URI (control bytes escaped), status,
 * response bytes, duration. */
void log_access(const char *client, const char *method, const char *uri,
		unsigned status, uint64_t bytes, uint64_t usec);

#endif
