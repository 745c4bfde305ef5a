/*
 * kr_url — percent-decoding (RFC 3986 section 2.1) for every place that
 * reads text out of a URL: path segments, query strings, form bodies and
 * connection URLs.
 */
#ifndef KR_URL_H
#define KR_URL_H

#include <stddef.h>

enum {
    KR_URL_FORM = 1 << 0,     /* application/x-www-form-urlencoded: '+' is a space */
    KR_URL_NO_SLASH = 1 << 1, /* refuse an escaped '/' (a path segment stays one segment) */
};

/* Decodes src[0..len) into dst, which receives at most cap bytes including a
 * terminating NUL (cap = len + 1 always suffices). Returns the decoded
 * length, or -1 for a malformed escape, an escaped NUL (never valid in the
 * text Kreide reads), an escaped '/' under KR_URL_NO_SLASH, or too little
 * room. Never reads outside src[0..len). */
long kr_url_decode(const char *src, size_t len, char *dst, size_t cap, unsigned flags) __attribute__((warn_unused_result));

/* The value of one hexadecimal digit (either case), or -1. */
int kr_url_hex_digit(char c);

#endif
