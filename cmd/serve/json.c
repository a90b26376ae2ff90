/*
 * json.c - answer buffers and request parsing.
 *
 * jansson keeps integers as signed 64-bit values and refuses anything
 * larger, but a key may be any u64.  No field of the API takes a negative
 * number, so the parser first scans the body outside strings: a '-' is
 * refused outright, and an integer literal in (INT64_MAX, UINT64_MAX] is
 * rewritten as the negative number with the same 64 bits.  After jansson,
 * a negative integer can only come from that rewrite, and json_get_key()
 * casts it back.  Literals above UINT64_MAX are left for jansson to refuse
 * ("too big integer").
 *
 * Vector bodies need negative numbers.  json_parse_body_signed() lets a
 * '-' through in front of a fraction or exponent, and rewrites a negative
 * integer literal "-N" as the real "-N.0": a negative integer after
 * jansson still only comes from the u64 rewrite, and a negative key
 * (now a real) is still refused by json_get_key().
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cli.h"
#include "floatfmt.h"
#include "json.h"

void sb_free(struct sbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

int sb_reserve(struct sbuf *b, size_t extra)
{
	if (b->oom)
		return -1;
	if (b->len + extra + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->oom = 1;
		return -1;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

void sb_put(struct sbuf *b, const void *s, size_t n)
{
	if (sb_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

void sb_puts(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || sb_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void sb_u64(struct sbuf *b, uint64_t v)
{
	char t[24];
	size_t i = sizeof t;
	do {
		t[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sb_put(b, t + i, sizeof t - i);
}

void sb_json_str(struct sbuf *b, const void *v, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = v, *end = p + len;
	/* Worst case six bytes per input byte, plus the quotes. */
	if (sb_reserve(b, len * 6 + 2))
		return;
	char *o = b->p + b->len;
	*o++ = '"';
	for (; p < end; p++) {
		unsigned char c = *p;
		if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
			*o++ = (char)c;
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\n': *o++ = 'n'; break;
		case '\t': *o++ = 't'; break;
		case '\r': *o++ = 'r'; break;
		default:
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o++ = '"';
	b->len = (size_t)(o - b->p);
	b->p[b->len] = 0;
}

void sb_float(struct sbuf *b, float f)
{
	char t[FLOATFMT_MAX];
	sb_put(b, t, floatfmt(t, f));
}

void sb_base64(struct sbuf *b, const void *v, size_t len)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	if (sb_reserve(b, (len + 2) / 3 * 4))
		return;
	const unsigned char *p = v;
	char *o = b->p + b->len;
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t x = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = tab[x >> 18];
		*o++ = tab[(x >> 12) & 63];
		*o++ = tab[(x >> 6) & 63];
		*o++ = tab[x & 63];
	}
	if (i < len) {
		uint32_t x = (uint32_t)p[i] << 16;
		if (len - i == 2)
			x |= (uint32_t)p[i + 1] << 8;
		*o++ = tab[x >> 18];
		*o++ = tab[(x >> 12) & 63];
		*o++ = len - i == 2 ? tab[(x >> 6) & 63] : '=';
		*o++ = '=';
	}
	b->len = (size_t)(o - b->p);
	b->p[b->len] = 0;
}

void sb_json_value_field(struct sbuf *b, const void *v, size_t len)
{
	if (cli_is_utf8(v, len)) {
		sb_puts(b, "\"value\":");
		sb_json_str(b, v, len);
	} else {
		sb_puts(b, "\"value_base64\":\"");
		sb_base64(b, v, len);
		sb_put(b, "\"", 1);
	}
}

void sb_json_error(struct sbuf *b, const char *text)
{
	sb_puts(b, "{\"error\":");
	sb_json_str(b, text, strlen(text));
	sb_puts(b, "}");
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Rewrite big u64 literals (see the top of the file) into OUT; returns 0,
 * or -1 with WHY set. */
static int rewrite_numbers(const char *s, size_t len, int signed_ok,
			   struct sbuf *out, char *why, size_t whylen)
{
	size_t i = 0, copied = 0;
	int neg = 0;
	while (i < len) {
		char c = s[i];
		if (c == '"') {
			for (i++; i < len && s[i] != '"'; i++)
				if (s[i] == '\\')
					i++;
			i++;
			continue;
		}
		if (c == '-' && signed_ok) {
			neg = 1;
			i++;
			continue;
		}
		if (c == '-') {
			snprintf(why, whylen, "negative numbers are not accepted");
			return -1;
		}
		if (!is_digit(c)) {
			neg = 0;
			i++;
			continue;
		}
		size_t start = i;
		while (i < len && is_digit(s[i]))
			i++;
		if (i < len && (s[i] == '.' || s[i] == 'e' || s[i] == 'E')) {
			while (i < len && (is_digit(s[i]) || s[i] == '.' ||
					   s[i] == 'e' || s[i] == 'E' || s[i] == '+' || s[i] == '-'))
				i++;
			neg = 0;
			continue;
		}
		if (neg) {
			sb_put(out, s + copied, i - copied);
			sb_puts(out, ".0");
			copied = i;
			neg = 0;
			continue;
		}
		uint64_t v;
		if (i - start < 19 || cli_parse_key(s + start, i - start, &v) ||
		    v <= (uint64_t)INT64_MAX)
			continue;
		sb_put(out, s + copied, start - copied);
		sb_printf(out, "%lld", (long long)(int64_t)v);
		copied = i;
	}
	if (copied)
		sb_put(out, s + copied, len - copied);
	return 0;
}

static json_t *parse(const char *body, size_t len, int signed_ok, char *why,
		     size_t whylen)
{
	struct sbuf fixed = {0};
	json_error_t err;
	if (rewrite_numbers(body, len, signed_ok, &fixed, why, whylen))
		return NULL;
	if (fixed.oom) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	json_t *j = fixed.p ? json_loadb(fixed.p, fixed.len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err)
			    : json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
	sb_free(&fixed);
	if (!j) {
		snprintf(why, whylen, "invalid JSON: %s", err.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		snprintf(why, whylen, "the body must be a JSON object");
		return NULL;
	}
	return j;
}

json_t *json_parse_body(const char *body, size_t len, char *why, size_t whylen)
{
	return parse(body, len, 0, why, whylen);
}

json_t *json_parse_body_signed(const char *body, size_t len, char *why,
			       size_t whylen)
{
	return parse(body, len, 1, why, whylen);
}

int json_get_key(const json_t *j, uint64_t *key)
{
	if (!json_is_integer(j))
		return -1;
	*key = (uint64_t)json_integer_value(j);
	return 0;
}
