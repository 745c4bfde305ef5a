/*
 * kr_oauth — OAuth 2.0 rules without I/O that both the gateway (which
 * matches redirect URIs at the authorization request) and identity (which
 * checks them when a client is registered) apply: what a redirect URI may
 * look like and how a requested one matches a registered one, PKCE (the
 * gateway checks a challenge when the request arrives, identity verifies
 * the verifier when the code is redeemed), the syntax of scopes, and random
 * base64url identifiers for clients and secrets.
 */
#ifndef KR_OAUTH_H
#define KR_OAUTH_H

#include <stdbool.h>
#include <stddef.h>

/* Error codes. 0 is success; each has a kr_oauth_strerror text. */
typedef enum {
    KR_OAUTH_OK = 0,
    KR_OAUTH_EMALFORMED, /* not an absolute URI of the allowed shape */
    KR_OAUTH_ETOOBIG,    /* longer than KR_OAUTH_REDIRECT_URI_MAX */
    KR_OAUTH_ESCHEME,    /* neither https nor http on a loopback host */
    KR_OAUTH_EFRAGMENT,  /* has a fragment */
    KR_OAUTH_EMISMATCH,  /* a PKCE verifier that does not match its challenge */
} kr_oauth_err;

/* A static English text for an error code; never NULL. */
const char *kr_oauth_strerror(int err);

/* ---------------------------------------------------------- redirect URIs */

/* Longest redirect URI accepted, in bytes. */
#define KR_OAUTH_REDIRECT_URI_MAX 2000

/* Checks that `uri` (`len` bytes) may be registered as a redirect URI: an
 * absolute URI (RFC 6749 section 3.1.2) of printable ASCII without spaces or
 * backslashes, percent-escapes well formed, at most KR_OAUTH_REDIRECT_URI_MAX
 * bytes, with a host and no user information, no fragment, a port (when
 * given) of 1..65535, scheme `https`, or `http` only for a loopback host
 * (`127.0.0.1`, `[::1]`, `localhost`) as native apps use (RFC 8252 section
 * 7.3). Scheme and host must be lower case, as they are compared byte for
 * byte. Returns 0, KR_OAUTH_EFRAGMENT, KR_OAUTH_ESCHEME, KR_OAUTH_ETOOBIG or
 * KR_OAUTH_EMALFORMED. */
int kr_oauth_redirect_uri_check(const char *uri, size_t len) __attribute__((warn_unused_result));

/* Finds the registered URI that a request's `redirect_uri` names. The
 * comparison is byte for byte (no prefixes, no case folding, no
 * normalisation), with one exception from RFC 8252 section 7.3: for a
 * registered `http://127.0.0.1...` or `http://[::1]...` URI the request may
 * name any port, everything else equal. The requested URI must itself pass
 * kr_oauth_redirect_uri_check. Returns the index into `registered` (NULL
 * entries are skipped), or -1. */
int kr_oauth_redirect_uri_match(const char *requested, size_t len, const char *const *registered, size_t nregistered);

/* ------------------------------------------------------------------ PKCE */

/* Shortest and longest code_verifier (RFC 7636 section 4.1). */
#define KR_OAUTH_PKCE_VERIFIER_MIN 43
#define KR_OAUTH_PKCE_VERIFIER_MAX 128
/* Length of an S256 code_challenge: BASE64URL of 32 bytes, no padding. */
#define KR_OAUTH_PKCE_CHALLENGE_LEN 43

/* Whether `challenge` can be an S256 code_challenge: exactly 43 characters
 * of the base64url alphabet, the last one carrying no stray bits (no
 * SHA-256 encodes to anything else). Checked when the authorization request
 * arrives, so a bad challenge is refused up front. */
bool kr_oauth_pkce_challenge_valid(const char *challenge, size_t len);

/* Verifies a code_verifier against the S256 code_challenge stored with the
 * code (RFC 7636 section 4.6): the verifier must be 43..128 characters of
 * [A-Za-z0-9-._~] and BASE64URL(SHA256(verifier)) must equal the challenge.
 * `plain` is never accepted. The comparison takes the same time wherever
 * the strings differ. Returns 0, KR_OAUTH_EMALFORMED for a verifier or
 * challenge of the wrong shape, or KR_OAUTH_EMISMATCH. */
int kr_oauth_pkce_verify(const char *verifier, size_t verifier_len, const char *challenge, size_t challenge_len)
    __attribute__((warn_unused_result));

/* ---------------------------------------------------------------- scopes */

/* Longest scope token accepted, in bytes. */
#define KR_OAUTH_SCOPE_MAX 64

/* True when s[0..len) is one scope token (RFC 6749 section 3.3: one or more
 * of %x21 / %x23-5B / %x5D-7E, i.e. printable ASCII without space, '"' and
 * '\'), at most KR_OAUTH_SCOPE_MAX bytes. */
bool kr_oauth_scope_token_valid(const char *s, size_t len);

/* ------------------------------------------------------------ identifiers */

/* Characters of the base64url text (RFC 4648 section 5, no padding) of `n`
 * bytes. */
#define KR_OAUTH_B64URL_LEN(n) (((n)*4 + 2) / 3)

/* Writes the base64url text of in[0..n) without padding into `out`, which
 * holds KR_OAUTH_B64URL_LEN(n) + 1 bytes, NUL-terminated. Returns the length. */
size_t kr_oauth_b64url_encode(const unsigned char *in, size_t n, char *out);

/* Writes `nbytes` random bytes (getrandom(2)) as base64url into `out`, which
 * holds KR_OAUTH_B64URL_LEN(nbytes) + 1 bytes: a client id of 16 bytes
 * (22 characters) or a client secret of 32 (43 characters). */
void kr_oauth_random_b64url(char *out, size_t nbytes);

#endif
