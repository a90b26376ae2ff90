/*
 * fetch.h - a replica's HTTP client: libcurl transfers from the primary,
 * each carrying the primary's token, each ended within about a second
 * when the daemon stops.  libcurl does connections, chunked bodies, TLS
 * and timeouts better than code of our own would.
 */
#ifndef KYRO_SERVE_FETCH_H
#define KYRO_SERVE_FETCH_H

#include <stddef.h>

#include <curl/curl.h>

#include "json.h"

struct fetch {
	CURL *c;
	struct curl_slist *hdrs;
	long status;
	char url[1024];
	char body[512];           /* the start of a refusal, for messages */
	size_t body_len;
	char curl_err[CURL_ERROR_SIZE];
	char history[40];         /* the answer's X-Kyro-History, if any */
	char page_format[8];      /* its X-Kyro-Page-Format, if any */
};

/* Once, before any thread: the primary's base URL, its token (from FILE,
 * else ENV, else none), and the flag that ends transfers.  Returns 0, or
 * -1 with ERR set. */
int fetch_global_init(const char *base, const char *file, const char *env,
		      const int *stop, char *err, size_t errlen);
void fetch_global_cleanup(void);

/* A GET of PATH QUERY whose body goes to FN(ARG), as libcurl's write
 * callback; the callback should hand a refusal's body to fetch_keep(). */
int fetch_init(struct fetch *x, const char *path, const char *query,
	       curl_write_callback fn, void *arg);
/* As fetch_init(), on X's handle again when it has one, so that libcurl
 * reuses its connection (X must stay where it is between transfers). */
int fetch_again(struct fetch *x, const char *path, const char *query,
		curl_write_callback fn, void *arg);
void fetch_free(struct fetch *x);
/* The answer's status (known from the first write callback on). */
long fetch_status(struct fetch *x);
void fetch_keep(struct fetch *x, const char *p, size_t n);
/* Run the transfer: 0 when it ended with a 200, else -1 with ERR saying
 * why ("GET URL: HTTP 401: {...}", a libcurl message...). */
int fetch_run(struct fetch *x, char *err, size_t errlen);

/* As fetch_run(), calling DRAINED(ARG) each time the write callback has
 * had every byte received so far (so the caller can commit what those
 * bytes brought before waiting for more); a non-zero return ends the
 * transfer. */
int fetch_run_drained(struct fetch *x, int (*drained)(void *arg), void *arg,
		      char *err, size_t errlen);

/* GET PATH QUERY whole into B (at most MAX bytes) on X, as fetch_again()
 * (the caller frees X when done); *STATUS gets the status.  Returns 0
 * when it ended with a 200, else -1 with ERR set. */
int fetch_all(struct fetch *x, const char *path, const char *query,
	      struct sbuf *b, size_t max, long *status, char *err,
	      size_t errlen);

#endif
