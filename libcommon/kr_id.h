/*
 * kr_id — identifiers: UUIDv7 (RFC 9562) generation and validation.
 *
 * UUIDv7 puts a 48-bit Unix millisecond timestamp first, so ids sort by
 * creation time and index well in PostgreSQL; the remaining 74 bits come from
 * the operating system's CSPRNG. The textual form is the canonical
 * 36-character lower-case hex form.
 */
#ifndef KR_ID_H
#define KR_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length of the canonical text form without the terminating NUL. */
#define KR_UUID_STRLEN 36

/* A UUID as text, always NUL-terminated. */
typedef struct {
    char s[KR_UUID_STRLEN + 1];
} kr_uuid_str;

/* Fills `out` with a new UUIDv7 for the current time. Never fails: the random
 * bits come from getrandom(2), which blocks only before the kernel's pool is
 * first initialised. */
void kr_uuid7_new(kr_uuid_str *out);

/* Same, for a given Unix time in milliseconds (for tests and back-dating). */
void kr_uuid7_at(kr_uuid_str *out, uint64_t unix_ms);

/* True when `s` is a canonical UUID of any version (8-4-4-4-12 hex digits,
 * either case). Everything taken from a request goes through this before it
 * reaches SQL. */
bool kr_uuid_valid(const char *s);

/* Fills `out` with `n` random bytes from the operating system. */
void kr_random_bytes(void *out, size_t n);

#endif
