/*
 * totp — time-based one-time passwords as a second factor (RFC 6238).
 *
 * TOTP as authenticator apps implement it: HMAC-SHA1 (HOTP, RFC 4226) over
 * the number of 30-second steps since the Unix epoch, truncated to 6 decimal
 * digits, with a 20-byte secret from the OS CSPRNG. Verification accepts the
 * current step and one step on either side (clocks drift and people type
 * slowly) and returns the step that matched: the caller stores it as the
 * account's "last used step" and passes it back next time, so a code that has
 * been used once (or an older one) is refused even inside its window.
 *
 * Enrolment shows the secret as RFC 4648 base32 and as an otpauth:// URI in
 * the Key Uri Format that authenticator apps read from a QR code.
 */
#ifndef IDENT_TOTP_H
#define IDENT_TOTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDENT_TOTP_SECRET_LEN 20
#define IDENT_TOTP_STEP_S 30
#define IDENT_TOTP_DIGITS 6
/* Steps accepted on either side of the current one. */
#define IDENT_TOTP_WINDOW 1
/* "No step used yet", for ident_totp_verify's last_step. */
#define IDENT_TOTP_NEVER INT64_MIN
/* Room for the base32 form of a secret of IDENT_TOTP_SECRET_LEN bytes
 * (32 characters, no padding needed) with the NUL. */
#define IDENT_TOTP_SECRET_B32_MAX 33

/* Fills `out` with a new secret from the OS CSPRNG. */
void ident_totp_secret_new(uint8_t out[IDENT_TOTP_SECRET_LEN]);

/* HOTP (RFC 4226): the `digits`-digit value (6 to 8) for `counter` under
 * `key`. Returns 0, or -1 for bad arguments. */
__attribute__((warn_unused_result)) int ident_hotp(const uint8_t *key, size_t keylen, uint64_t counter, unsigned digits,
                                                   uint32_t *out);

/* The TOTP step of a Unix time: floor(t / IDENT_TOTP_STEP_S); times before
 * the epoch give step 0. */
int64_t ident_totp_step(int64_t unix_time);

/* The outcome of ident_totp_verify. */
typedef enum {
    IDENT_TOTP_OK = 0,
    IDENT_TOTP_MALFORMED, /* not IDENT_TOTP_DIGITS digits (spaces are ignored) */
    IDENT_TOTP_MISMATCH,  /* no step in the window gives this code */
    IDENT_TOTP_REPLAYED,  /* the code belongs to a step at or before last_step */
} ident_totp_result;

/* Checks a typed code at Unix time `now` against the steps within
 * IDENT_TOTP_WINDOW of the current one, accepting only steps after
 * `last_step` (IDENT_TOTP_NEVER when the account has not used one yet). On
 * IDENT_TOTP_OK sets *matched_step; the caller stores it. Every candidate is
 * computed, whichever matches. */
ident_totp_result ident_totp_verify(const uint8_t *key, size_t keylen, const char *typed, int64_t now, int64_t last_step,
                                    int64_t *matched_step);

/* RFC 4648 base32 of `len` bytes into `out` (NUL-terminated), upper case,
 * with '=' padding when `pad`. Returns 0, or -1 when `outlen` is too small. */
__attribute__((warn_unused_result)) int ident_base32_encode(const uint8_t *in, size_t len, bool pad, char *out, size_t outlen);

/* Decodes base32 (either case; spaces ignored; trailing '=' optional) into
 * `out` of `outcap` bytes and sets *outlen. Returns 0, or -1 for characters
 * outside the alphabet, an impossible length, non-zero unused bits, or too
 * little room. */
__attribute__((warn_unused_result)) int ident_base32_decode(const char *in, uint8_t *out, size_t outcap, size_t *outlen);

/* The enrolment URI (Key Uri Format of authenticator apps):
 *   otpauth://totp/ISSUER:ACCOUNT?secret=B32&issuer=ISSUER&algorithm=SHA1&digits=6&period=30
 * with issuer and account percent-encoded (RFC 3986). Returns 0, or -1 when
 * `outlen` is too small or an argument is missing. */
__attribute__((warn_unused_result)) int ident_totp_uri(const char *issuer, const char *account, const uint8_t *secret, size_t len,
                                                       char *out, size_t outlen);

#endif
