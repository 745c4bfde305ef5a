/*
 * codes — one-time enrollment and reset codes.
 *
 * An admin or teacher issues a code for a person, who types it into the
 * portal with their user name to set a password. A code is three groups of
 * four characters, printed as "K7MR-3XWC-HTEA", drawn from an alphabet
 * without look-alikes:
 *
 *     3 4 7 9 A C D E F G H J K M N P R T U V W X Y     (23 characters)
 *
 * Left out, as look-alikes of each other or of a letter that stays: 0 O Q,
 * 1 I L, 2 Z, 5 S, 6 (reads as G or b), 8 B. Twelve characters carry 12 * log2(23) = 54.3 bits, drawn from the
 * operating system's CSPRNG by rejection sampling, so every character is
 * equally likely. A code is also short-lived, single use and guarded by the
 * login throttle, so guessing one is hopeless.
 *
 * What a person types is normalised first: case is ignored, spaces, dashes,
 * dots and underscores are dropped, and the one look-alike whose partner is
 * in the alphabet is mapped to it (6 -> G). Any other character outside the
 * alphabet makes the input malformed.
 *
 * Codes are stored only as HMAC-SHA256 under a server-side pepper (a secret
 * of at least IDENT_CODE_PEPPER_MIN bytes from the configuration, never in
 * the database), so a dump of the database alone reveals no code and cannot
 * be searched offline. The hash is deterministic, so the store can look a
 * code up by it.
 */
#ifndef IDENT_CODES_H
#define IDENT_CODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDENT_CODE_ALPHABET "3479ACDEFGHJKMNPRTUVWXY"
#define IDENT_CODE_ALPHABET_SIZE 23
#define IDENT_CODE_GROUPS 3
#define IDENT_CODE_GROUP_LEN 4
/* Characters of a code without separators. */
#define IDENT_CODE_CHARS (IDENT_CODE_GROUPS * IDENT_CODE_GROUP_LEN)
/* The printed form "XXXX-XXXX-XXXX" without the terminating NUL. */
#define IDENT_CODE_TEXT_LEN (IDENT_CODE_CHARS + IDENT_CODE_GROUPS - 1)
/* Length of a code's stored hash (HMAC-SHA256). */
#define IDENT_CODE_HASH_LEN 32
/* Shortest accepted pepper. */
#define IDENT_CODE_PEPPER_MIN 32
/* Longest input ident_code_normalize looks at; anything longer is malformed. */
#define IDENT_CODE_INPUT_MAX 64

/* Suggested lifetimes: an enrollment code goes home on paper, a reset code
 * is handed over in person. */
#define IDENT_CODE_ENROLLMENT_TTL_S (14 * 24 * 3600)
#define IDENT_CODE_RESET_TTL_S (24 * 3600)

/* A code in its printed form, NUL-terminated. */
typedef struct {
    char s[IDENT_CODE_TEXT_LEN + 1];
} ident_code_text;

/* A code in its canonical form: the 12 characters, NUL-terminated. */
typedef struct {
    char s[IDENT_CODE_CHARS + 1];
} ident_code_canon;

/* What a code is for. */
typedef enum {
    IDENT_CODE_ENROLLMENT = 1, /* first password of a new account */
    IDENT_CODE_RESET = 2,      /* a new password for an existing account */
} ident_code_purpose;

/* A code as the store keeps it. */
typedef struct {
    uint8_t hash[IDENT_CODE_HASH_LEN]; /* ident_code_hash of the code */
    ident_code_purpose purpose;
    int64_t expires_at; /* Unix seconds; the code is valid before this instant */
    int64_t used_at;    /* Unix seconds of its use, 0 while unused */
} ident_code_record;

/* The outcome of ident_code_check. */
typedef enum {
    IDENT_CODE_VALID = 0,
    IDENT_CODE_MALFORMED,     /* not a code at all (wrong length or characters) */
    IDENT_CODE_MISMATCH,      /* not this record's code, or an unusable pepper */
    IDENT_CODE_WRONG_PURPOSE, /* this record's code, issued for the other purpose */
    IDENT_CODE_EXPIRED,       /* this record's code, past its expiry */
    IDENT_CODE_USED,          /* this record's code, already used */
} ident_code_verdict;

/* A static name of a verdict ("valid", "expired", ...); never NULL. */
const char *ident_code_verdict_name(ident_code_verdict v);

/* Draws a new code from the OS CSPRNG; fills both forms (`canon` may be
 * NULL). Never fails. */
void ident_code_generate(ident_code_text *out, ident_code_canon *canon);

/* Normalises what a person typed (see above) into the canonical form.
 * Returns 0, or -1 when the input is not a code. */
__attribute__((warn_unused_result)) int ident_code_normalize(const char *typed, ident_code_canon *out);

/* The printed form of a canonical code. */
void ident_code_format(const ident_code_canon *canon, ident_code_text *out);

/* HMAC-SHA256 under `pepper` of the canonical code (with a fixed domain
 * prefix). Returns 0, or -1 when the pepper is shorter than
 * IDENT_CODE_PEPPER_MIN. */
__attribute__((warn_unused_result)) int ident_code_hash(const uint8_t *pepper, size_t pepper_len, const ident_code_canon *canon,
                                                        uint8_t out[IDENT_CODE_HASH_LEN]);

/* Checks a typed code against a stored record: the code matches the hash
 * (compared in constant time), the purpose is `purpose`, it has not expired
 * at `now` (Unix seconds) and has not been used. Whether it expired or was
 * used is only told for the right code, so a guesser learns nothing about a
 * record. Pure: marking the code used is the store's job, in the same
 * transaction that sets the password. */
ident_code_verdict ident_code_check(const ident_code_record *rec, const uint8_t *pepper, size_t pepper_len, const char *typed,
                                    ident_code_purpose purpose, int64_t now);

#endif
