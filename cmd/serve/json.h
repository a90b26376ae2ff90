/*
 * json.h - building answers in a byte buffer, and reading request bodies.
 *
 * Answers are written by hand (they are small and fixed in shape); request
 * bodies are parsed with jansson, with one twist: keys are u64, which
 * jansson's signed 64-bit integers cannot hold, so json_parse_body()
 * rewrites integers above INT64_MAX before jansson sees them (see json.c).
 */
#ifndef KYRO_SERVE_JSON_H
#define KYRO_SERVE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* A growable byte buffer.  On allocation failure it sets OOM and drops
 * further writes; the caller checks OOM once at the end. */
struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

void sb_free(struct sbuf *b);
int sb_reserve(struct sbuf *b, size_t extra);
void sb_put(struct sbuf *b, const void *s, size_t n);
void sb_puts(struct sbuf *b, const char *s);
void sb_printf(struct sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void sb_u64(struct sbuf *b, uint64_t v);
/* A JSON string (with quotes) of valid UTF-8 bytes. */
void sb_json_str(struct sbuf *b, const void *v, size_t len);
/* The shortest decimal that reads back as F (a finite float32). */
void sb_float(struct sbuf *b, float f);
void sb_base64(struct sbuf *b, const void *v, size_t len);
/* "value":"…" when V is UTF-8, else "value_base64":"…" (as kyro-get). */
void sb_json_value_field(struct sbuf *b, const void *v, size_t len);
/* {"error":"TEXT"} */
void sb_json_error(struct sbuf *b, const char *text);

/*
 * Parse a request body: a JSON object, duplicate names refused, NUL
 * allowed in strings, no negative numbers anywhere (no field of the API
 * takes one).  Returns the object (the caller json_decref()s it), or NULL
 * with the reason in WHY.
 */
json_t *json_parse_body(const char *body, size_t len, char *why,
			size_t whylen);

/* The same, with negative numbers allowed (vector components); a
 * negative integer is read as a real, so never as a key. */
json_t *json_parse_body_signed(const char *body, size_t len, char *why,
			       size_t whylen);

/* A u64 key from a parsed integer; -1 when J is not an integer. */
int json_get_key(const json_t *j, uint64_t *key);

#endif
