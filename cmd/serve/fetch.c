/*
 * fetch.c - the replica's HTTP client on libcurl (see fetch.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../cli.h"
#include "fetch.h"
#include "serve.h"

#define MAX_TOKEN 4096

static const char *base;
static const int *stop_flag;
static char token_hdr[MAX_TOKEN + 32];

/* The token as auth.c takes it: one line, trailing blanks dropped, no
 * blank or control character inside. */
static int set_token(char *buf, size_t n, const char *from, char *err,
		     size_t errlen)
{
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
		     buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		n--;
	buf[n] = 0;
	int bad = !n || n > MAX_TOKEN;
	for (size_t i = 0; i < n; i++)
		bad |= (unsigned char)buf[i] <= ' ' || buf[i] == 0x7f;
	if (bad) {
		snprintf(err, errlen, "%s: not a token (empty, too long, or "
			 "holding a space or control character)", from);
		return -1;
	}
	snprintf(token_hdr, sizeof token_hdr, "Authorization: Bearer %s", buf);
	return 0;
}

int fetch_global_init(const char *url, const char *file, const char *env,
		      const int *stop, char *err, size_t errlen)
{
	char buf[MAX_TOKEN + 2];
	base = url;
	stop_flag = stop;
	if (file) {
		FILE *fp = fopen(file, "r");
		if (!fp) {
			snprintf(err, errlen, "cannot open '%s': %s", file,
				 strerror(errno));
			return -1;
		}
		size_t n = fread(buf, 1, sizeof buf - 1, fp);
		fclose(fp);
		if (set_token(buf, n, file, err, errlen))
			return -1;
	} else if (env && *env) {
		snprintf(buf, sizeof buf, "%s", env);
		if (set_token(buf, strlen(buf), "KYRODB_REPLICA_TOKEN", err,
			      errlen))
			return -1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		snprintf(err, errlen, "cannot initialise libcurl");
		return -1;
	}
	return 0;
}

void fetch_global_cleanup(void) { curl_global_cleanup(); }

/* Called at least once a second, even when nothing arrives. */
static int progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c,
		    curl_off_t d)
{
	(void)arg, (void)a, (void)b, (void)c, (void)d;
	return __atomic_load_n(stop_flag, __ATOMIC_ACQUIRE);
}

/* If the header line P (LEN bytes) is NAME, its value into OUT (cut to
 * fit). */
static void header_value(const char *p, size_t len, const char *name,
			 char *out, size_t outlen)
{
	size_t k = strlen(name);
	if (len <= k || strncasecmp(p, name, k))
		return;
	while (k < len && (p[k] == ' ' || p[k] == '\t'))
		k++;
	size_t e = len;
	while (e > k && (p[e - 1] == '\r' || p[e - 1] == '\n' ||
			 p[e - 1] == ' '))
		e--;
	snprintf(out, outlen, "%.*s", (int)(e - k), p + k);
}

/* Keep X-Kyro-History's value (the answer's last one wins; a value too
 * long for an ID is kept cut, and then fails history_valid()) and
 * X-Kyro-Page-Format's. */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct fetch *x = arg;
	size_t len = size * n;
	header_value(p, len, "x-kyro-history:", x->history,
		     sizeof x->history);
	header_value(p, len, "x-kyro-page-format:", x->page_format,
		     sizeof x->page_format);
	return len;
}

int fetch_init(struct fetch *x, const char *path, const char *query,
	       curl_write_callback fn, void *arg)
{
	memset(x, 0, sizeof *x);
	snprintf(x->url, sizeof x->url, "%s%s%s", base, path,
		 query ? query : "");
	if (!(x->c = curl_easy_init()))
		return -1;
	if (token_hdr[0])
		x->hdrs = curl_slist_append(NULL, token_hdr);
	curl_easy_setopt(x->c, CURLOPT_URL, x->url);
	curl_easy_setopt(x->c, CURLOPT_HTTPHEADER, x->hdrs);
	curl_easy_setopt(x->c, CURLOPT_WRITEFUNCTION, fn);
	curl_easy_setopt(x->c, CURLOPT_WRITEDATA, arg);
	curl_easy_setopt(x->c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(x->c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(x->c, CURLOPT_ERRORBUFFER, x->curl_err);
	curl_easy_setopt(x->c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(x->c, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(x->c, CURLOPT_BUFFERSIZE, 512L * 1024);
	curl_easy_setopt(x->c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(x->c, CURLOPT_XFERINFOFUNCTION, progress);
	curl_easy_setopt(x->c, CURLOPT_USERAGENT, SERVE_PROG "-replica");
	return 0;
}

int fetch_again(struct fetch *x, const char *path, const char *query,
		curl_write_callback fn, void *arg)
{
	if (!x->c)
		return fetch_init(x, path, query, fn, arg);
	x->status = 0;
	x->body_len = 0;
	x->body[0] = x->curl_err[0] = x->history[0] = x->page_format[0] = 0;
	snprintf(x->url, sizeof x->url, "%s%s%s", base, path,
		 query ? query : "");
	curl_easy_setopt(x->c, CURLOPT_URL, x->url);
	curl_easy_setopt(x->c, CURLOPT_WRITEFUNCTION, fn);
	curl_easy_setopt(x->c, CURLOPT_WRITEDATA, arg);
	return 0;
}

void fetch_free(struct fetch *x)
{
	curl_slist_free_all(x->hdrs);
	curl_easy_cleanup(x->c);
	x->c = NULL;
	x->hdrs = NULL;
}

long fetch_status(struct fetch *x)
{
	if (!x->status)
		curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &x->status);
	return x->status;
}

void fetch_keep(struct fetch *x, const char *p, size_t n)
{
	size_t room = sizeof x->body - 1 - x->body_len;
	n = n < room ? n : room;
	memcpy(x->body + x->body_len, p, n);
	x->body_len += n;
	x->body[x->body_len] = 0;
	while (x->body_len && x->body[x->body_len - 1] == '\n')
		x->body[--x->body_len] = 0;
}

/* Describe how a transfer that ended with CC went; 0 for a whole 200. */
static int outcome(struct fetch *x, CURLcode cc, char *err, size_t errlen)
{
	long status = fetch_status(x);
	if (cc != CURLE_OK && !(status && status != 200))
		snprintf(err, errlen, "GET %s: %s", x->url,
			 x->curl_err[0] ? x->curl_err : curl_easy_strerror(cc));
	else if (status != 200)
		snprintf(err, errlen, "GET %s: HTTP %ld: %s", x->url, status,
			 x->body);
	else if (cc == CURLE_OK)
		return 0;
	else
		snprintf(err, errlen, "GET %s: %s", x->url,
			 x->curl_err[0] ? x->curl_err : curl_easy_strerror(cc));
	return -1;
}

int fetch_run(struct fetch *x, char *err, size_t errlen)
{
	return outcome(x, curl_easy_perform(x->c), err, errlen);
}

/* libcurl's easy interface hands a chunked body over chunk by chunk with
 * nothing to say that the socket is empty; one curl_multi_perform() round
 * reads what is there, and its end is that moment. */
int fetch_run_drained(struct fetch *x, int (*drained)(void *arg), void *arg,
		      char *err, size_t errlen)
{
	CURLM *m = curl_multi_init();
	CURLcode cc = CURLE_OUT_OF_MEMORY;
	int running = 1, stop = 0;
	if (!m || curl_multi_add_handle(m, x->c)) {
		curl_multi_cleanup(m);
		return outcome(x, cc, err, errlen);
	}
	while (running && !stop) {
		if (curl_multi_perform(m, &running) != CURLM_OK)
			break;
		stop = drained(arg);
		if (running && !stop &&
		    curl_multi_poll(m, NULL, 0, 1000, NULL) != CURLM_OK)
			break;
		stop |= __atomic_load_n(stop_flag, __ATOMIC_ACQUIRE);
	}
	CURLMsg *msg;
	int left;
	cc = stop ? CURLE_ABORTED_BY_CALLBACK : CURLE_RECV_ERROR;
	while ((msg = curl_multi_info_read(m, &left)) != NULL)
		if (msg->msg == CURLMSG_DONE)
			cc = msg->data.result;
	curl_multi_remove_handle(m, x->c);
	curl_multi_cleanup(m);
	return outcome(x, cc, err, errlen);
}

struct whole {
	struct fetch *x;
	struct sbuf *b;
	size_t max;
};

static size_t whole_write(char *p, size_t size, size_t n, void *arg)
{
	struct whole *w = arg;
	size_t len = size * n;
	if (fetch_status(w->x) != 200) {
		fetch_keep(w->x, p, len);
		return len;
	}
	if (w->b->len + len > w->max)
		return 0;
	sb_put(w->b, p, len);
	return w->b->oom ? 0 : len;
}

int fetch_all(struct fetch *x, const char *path, const char *query,
	      struct sbuf *b, size_t max, long *status, char *err,
	      size_t errlen)
{
	struct whole w = {.x = x, .b = b, .max = max};
	b->len = 0;
	*status = 0;
	if (fetch_again(x, path, query, whole_write, &w)) {
		snprintf(err, errlen, "cannot start libcurl");
		return -1;
	}
	int rc = fetch_run(x, err, errlen);
	*status = fetch_status(x);
	if (!rc && b->oom) {
		snprintf(err, errlen, "GET %s: out of memory", x->url);
		rc = -1;
	}
	if (rc)
		fetch_free(x); /* the next try on a connection of its own */
	return rc;
}
