/*
 * password — password hashing (argon2id) and the password policy.
 *
 * Hashing: argon2id (RFC 9106) through libargon2, stored as the encoded PHC
 * string `$argon2id$v=19$m=<KiB>,t=<iterations>,p=<lanes>$<salt>$<hash>`
 * with a 16-byte random salt and a 32-byte hash. The cost parameters are
 * configurable; the defaults cost about 50 ms of one core on the reference
 * machine (see IDENT_ARGON2_DEFAULT_* and docs/credentials.md). A hash made
 * with other parameters still verifies; ident_password_needs_rehash says when
 * to store a fresh hash after a successful login.
 *
 * Policy: length over complexity, as NIST SP 800-63B recommends for
 * memorised secrets. At least IDENT_PASSWORD_MIN_CHARS and at most
 * IDENT_PASSWORD_MAX_CHARS Unicode code points of valid UTF-8, no rules about
 * character classes, and a refusal of what an attacker tries first: common
 * passwords (a deny-list, also with digits or symbols around them and common
 * letter-for-digit swaps), the user's own name or user name, keyboard rows and
 * counting sequences, and one short piece repeated. Every refusal has a
 * machine-readable code and a message in German and English.
 *
 * Passwords are hashed as the exact UTF-8 bytes given; no Unicode
 * normalisation is applied (see docs/credentials.md).
 *
 * Threading: hashing and verifying are thread-safe. A deny-list is built once
 * at start and is read-only afterwards, so the workers share it.
 */
#ifndef IDENT_PASSWORD_H
#define IDENT_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------- hashing */

/* Defaults: 28 MiB, 2 passes, 1 lane. Measured with tests/bench/argon2_cost
 * (`taskset -c 1 build/bench/argon2_cost 28672 2 1`: CPU time of one hash on
 * one pinned core, 31 runs) on the 2-core reference machine: minimum 50 ms,
 * median 53 ms when the machine was quiet, 60-65 ms with busy neighbours.
 * Each login in flight holds the memory for that long, so 4 workers need
 * about 112 MiB at most. */
#define IDENT_ARGON2_DEFAULT_MEMORY_KIB 28672u
#define IDENT_ARGON2_DEFAULT_ITERATIONS 2u
#define IDENT_ARGON2_DEFAULT_LANES 1u

/* Bounds accepted by ident_argon2_params_valid: at least 8 MiB and one pass
 * (below that the hash is cheap to attack), at most 4 GiB, 64 passes and 16
 * lanes (beyond that a login takes seconds). */
#define IDENT_ARGON2_MIN_MEMORY_KIB 8192u
#define IDENT_ARGON2_MAX_MEMORY_KIB (4u * 1024u * 1024u)
#define IDENT_ARGON2_MAX_ITERATIONS 64u
#define IDENT_ARGON2_MAX_LANES 16u

#define IDENT_ARGON2_SALT_BYTES 16
#define IDENT_ARGON2_HASH_BYTES 32

/* Room for an encoded hash, terminating NUL included. */
#define IDENT_PASSWORD_HASH_MAX 192

/* The argon2id cost parameters. */
typedef struct {
    uint32_t memory_kib; /* m: memory in KiB */
    uint32_t iterations; /* t: passes over the memory */
    uint32_t lanes;      /* p: parallel lanes (and threads) */
} ident_argon2_params;

/* The defaults above. */
ident_argon2_params ident_argon2_defaults(void);

/* True when `p` lies within the IDENT_ARGON2_MIN/MAX bounds and the memory
 * holds at least 8 KiB per lane (argon2's own rule). */
bool ident_argon2_params_valid(const ident_argon2_params *p);

/* Error codes of the hashing functions; 0 is success. */
typedef enum {
    IDENT_PW_OK = 0,
    IDENT_PW_EINVAL,    /* bad parameters, or a password over IDENT_PASSWORD_MAX_BYTES */
    IDENT_PW_MISMATCH,  /* the password does not match the stored hash */
    IDENT_PW_EFORMAT,   /* the stored hash is not an argon2id string this module reads */
    IDENT_PW_EINTERNAL, /* libargon2 failed (out of memory, thread creation) */
} ident_pw_err;

/* A static text for an ident_pw_err; never NULL. */
const char *ident_pw_strerror(int err);

/* Hashes `password` (`len` bytes, at most IDENT_PASSWORD_MAX_BYTES) with a
 * fresh random salt and writes the NUL-terminated encoded string to `out`
 * (`outlen` >= IDENT_PASSWORD_HASH_MAX). Returns 0 or an ident_pw_err; `out`
 * is unspecified on failure. The policy is not applied here. */
__attribute__((warn_unused_result)) int ident_password_hash(const ident_argon2_params *p, const char *password, size_t len,
                                                            char *out, size_t outlen);

/* Checks `password` against an encoded argon2id hash, in time that does not
 * depend on how much of the hash matches (argon2_verify). Returns 0 on a
 * match, IDENT_PW_MISMATCH, IDENT_PW_EFORMAT for a hash this module cannot
 * read (including other argon2 variants), IDENT_PW_EINVAL for a password
 * longer than IDENT_PASSWORD_MAX_BYTES (never hashed), or
 * IDENT_PW_EINTERNAL. */
__attribute__((warn_unused_result)) int ident_password_verify(const char *encoded, const char *password, size_t len);

/* Reads the parameters of an encoded argon2id hash (strictly: version 19,
 * decimal m, t, p). Returns 0 or IDENT_PW_EFORMAT. */
__attribute__((warn_unused_result)) int ident_password_hash_params(const char *encoded, ident_argon2_params *out);

/* True when `encoded` was not made with exactly `current` (other parameters,
 * another variant or version, or unreadable): after a successful login the
 * caller hashes the password again and stores the new hash. */
bool ident_password_needs_rehash(const ident_argon2_params *current, const char *encoded);

/* -------------------------------------------------------------- policy */

#define IDENT_PASSWORD_MIN_CHARS 8
#define IDENT_PASSWORD_MAX_CHARS 128
/* A UTF-8 code point takes at most 4 bytes. */
#define IDENT_PASSWORD_MAX_BYTES (4 * IDENT_PASSWORD_MAX_CHARS)

/* Why the policy refuses a new password, in the order the checks run. */
typedef enum {
    IDENT_PWP_OK = 0,
    IDENT_PWP_INVALID_CHARS, /* not valid UTF-8, or contains control characters */
    IDENT_PWP_TOO_SHORT,     /* fewer than IDENT_PASSWORD_MIN_CHARS code points */
    IDENT_PWP_TOO_LONG,      /* more than IDENT_PASSWORD_MAX_CHARS code points */
    IDENT_PWP_REPEATED,      /* one character or a short piece repeated (aaaaaaaa, abcabcabc) */
    IDENT_PWP_SEQUENCE,      /* keyboard rows or counting sequences (12345678, qwertz123) */
    IDENT_PWP_PERSONAL,      /* the user name or the person's own name, perhaps with digits */
    IDENT_PWP_COMMON,        /* a common password, perhaps with digits or symbols added */
} ident_pwp_reason;

/* The reason's machine-readable code, e.g. "password.too_short"; never NULL. */
const char *ident_pwp_code(ident_pwp_reason r);

/* The reason as a sentence for the person: `lang` "de" for German, anything
 * else (NULL included) for English. Static; never NULL. */
const char *ident_pwp_message(ident_pwp_reason r, const char *lang);

/* A set of common passwords, compared case-insensitively. */
typedef struct st_ident_denylist_t ident_denylist;

/* The deny-list's place in the container image, beside the migrations; the
 * daemon's configuration may name another file. */
#define IDENT_DENYLIST_DEFAULT_PATH "/usr/share/kreide/identity/common-passwords.txt"

/* Creates an empty deny-list. Aborts on out-of-memory. */
ident_denylist *ident_denylist_new(void);

/* Adds one entry (UTF-8; folded to lower case; surrounding blanks ignored;
 * empty entries and entries over IDENT_PASSWORD_MAX_BYTES are skipped).
 * Not thread-safe: fill the list before sharing it. */
void ident_denylist_add(ident_denylist *dl, const char *word);

/* Loads a file of one entry per line; blank lines and lines starting with
 * '#' are skipped. On success *out owns a new list (ident_denylist_free).
 * On failure returns -1 with a message in `err` and leaves *out alone. */
__attribute__((warn_unused_result)) int ident_denylist_load(const char *path, ident_denylist **out, char *err, size_t errlen);

/* Number of distinct entries. */
size_t ident_denylist_size(const ident_denylist *dl);

/* True when `word` (folded to lower case) is an entry. */
bool ident_denylist_contains(const ident_denylist *dl, const char *word);

/* Frees the list; NULL is ignored. */
void ident_denylist_free(ident_denylist *dl);

/* What the policy knows about the person; any member may be NULL or "". */
typedef struct {
    const char *username;
    const char *given_name;
    const char *family_name;
} ident_pwp_person;

/* Applies the policy to a proposed new password (NUL-terminated UTF-8).
 * `dl` and `person` may be NULL. Returns IDENT_PWP_OK or the first reason to
 * refuse, in the order of the enum.
 *
 * Case is folded for every comparison (ASCII and Latin-1 letters), and the
 * German letters are compared as their usual ASCII spellings (ä = ae,
 * ö = oe, ü = ue, ß = ss), so "Fußball" matches the entry "fussball". */
ident_pwp_reason ident_password_policy_check(const ident_denylist *dl, const char *password, const ident_pwp_person *person);

#endif
