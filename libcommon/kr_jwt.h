/*
 * kr_jwt — JSON Web Tokens (RFC 7519) signed as compact JWS (RFC 7515):
 * a key set addressed by `kid`, signing, verification and a bounded cache of
 * verified tokens.
 *
 * Algorithms: ES256 (ECDSA P-256 with SHA-256, the default) and RS256
 * (RSASSA-PKCS1-v1_5 with SHA-256, for relying parties that know nothing
 * else), both from RFC 7518 section 3. A key's algorithm follows from its type
 * and is the only one accepted for it: a token whose header names another
 * algorithm (`none`, HS256 made with the public key as an HMAC secret, ...) is
 * rejected before any cryptography runs.
 *
 * Keys are parsed once, when the key set is loaded; signing and verifying use
 * the parsed keys directly. See docs/jwt.md for the reasoning.
 *
 * Threads: a key set is built by one thread (new, add, load, set_active) and is
 * read-only afterwards; a read-only key set may be shared by any number of
 * threads. A cache belongs to one thread (one per event loop) and takes no
 * locks.
 */
#ifndef KR_JWT_H
#define KR_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Longest token accepted by kr_jwt_verify and kr_jwt_cache_verify, in bytes.
 * Our own tokens are well below 2 KiB; anything longer is rejected as
 * malformed before it is decoded. */
#define KR_JWT_MAX_TOKEN 8192

/* Most keys one key set holds (current, next and a few retired ones). */
#define KR_JWT_MAX_KEYS 16

/* Longest key id. A kid is 1..KR_JWT_MAX_KID bytes of [A-Za-z0-9._-], not
 * starting with '.', so that it can also be a file name. */
#define KR_JWT_MAX_KID 64

/* Error codes. 0 is success; every other value has a kr_jwt_strerror text. */
typedef enum {
    KR_JWT_OK = 0,
    KR_JWT_EINVAL,     /* bad argument from the caller (a NULL, a bad kid, claims that cannot be signed) */
    KR_JWT_EKEY,       /* a key could not be parsed or is not ES256/RS256-capable */
    KR_JWT_EEXIST,     /* the kid is already in the key set */
    KR_JWT_ENOKEY,     /* no signing key (or, for load_dir, no key at all) */
    KR_JWT_EIO,        /* a key file or directory could not be read */
    KR_JWT_EMALFORMED, /* not a compact JWS, bad base64url or JSON, or too long */
    KR_JWT_EALG,       /* header algorithm is `none`, unknown, or not the key's algorithm */
    KR_JWT_EKID,       /* header has no kid, or the kid is not in the key set */
    KR_JWT_ESIGNATURE, /* signature does not verify */
    KR_JWT_ECLAIMS,    /* a registered claim has the wrong type, or exp is missing */
    KR_JWT_EEXPIRED,   /* now >= exp (+ leeway) */
    KR_JWT_ENOTYET,    /* now < nbf (- leeway) */
    KR_JWT_EISSUER,    /* iss is not the expected issuer */
    KR_JWT_EAUDIENCE,  /* the expected audience is not in aud */
    KR_JWT_EREVOKED,   /* the token's jti or sid was revoked in this cache */
    KR_JWT_EFULL,      /* the cache's revocation list is full */
} kr_jwt_err;

/* A static English text for an error code; never NULL (unknown codes get a
 * generic text). */
const char *kr_jwt_strerror(int err);

/* ------------------------------------------------------------------ keys */

/* A set of keys, each with a kid and the algorithm its type implies. */
typedef struct kr_jwt_keyset kr_jwt_keyset;

/* Creates an empty key set. Never NULL (aborts on out-of-memory). Free with
 * kr_jwt_keyset_free. */
kr_jwt_keyset *kr_jwt_keyset_new(void) __attribute__((warn_unused_result));

/* Frees the key set and its keys. NULL is a no-op. No cache entry made with
 * this key set will ever be returned for another key set. */
void kr_jwt_keyset_free(kr_jwt_keyset *ks);

/* Adds the key in `pem` (`len` bytes, need not be NUL-terminated) under `kid`.
 * The PEM may hold a private key (PKCS#8 "PRIVATE KEY", "EC PRIVATE KEY",
 * "RSA PRIVATE KEY"; unencrypted) which can sign and verify, or a public key
 * ("PUBLIC KEY") which can only verify. EC P-256 keys get ES256, RSA keys of
 * 2048 to 8192 bits get RS256; anything else is rejected with KR_JWT_EKEY.
 * A private key must pass a sign-and-verify self-test.
 * Returns 0, or an error with a one-line reason in `err` (`errlen` bytes,
 * always NUL-terminated when errlen > 0; may be NULL). On error the set is
 * unchanged. Not to be called once the set is shared between threads. */
int kr_jwt_keyset_add_pem(kr_jwt_keyset *ks, const char *kid, const char *pem, size_t len, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Adds every `<kid>.pem` in `dir` (a mounted Kubernetes Secret, say) with
 * kr_jwt_keyset_add_pem. Names starting with '.' (the Secret volume's own
 * `..data` entries) and files not ending in ".pem" are skipped; a `.pem` file
 * whose name is not a valid kid is an error (KR_JWT_EINVAL), so that a
 * misnamed key is noticed; symbolic links are followed; a file over 64 KiB or
 * not a regular file is KR_JWT_EIO. Returns 0 when at least one key was added,
 * KR_JWT_ENOKEY when the directory holds no key file, or the first error met
 * (with `err` as above); keys added before an error stay in the set. */
int kr_jwt_keyset_load_dir(kr_jwt_keyset *ks, const char *dir, char *err, size_t errlen) __attribute__((warn_unused_result));

/* Chooses the signing key. Every other key keeps verifying, so tokens signed
 * before a rotation stay valid until they expire. Without a call, the active
 * key is the ES256 private key with the lexically greatest kid (so naming
 * kids by date, e.g. "2025-09", rotates by adding a file); an RSA key in the
 * set (for RS256 relying parties, kr_jwt_sign_alg) becomes the default only
 * when the set has no EC private key at all. Returns KR_JWT_EKID if the kid
 * is not in the set, KR_JWT_ENOKEY if it is a public key. */
int kr_jwt_keyset_set_active(kr_jwt_keyset *ks, const char *kid) __attribute__((warn_unused_result));

/* The kid of the signing key, or NULL when the set has no private key. The
 * string belongs to the key set. */
const char *kr_jwt_keyset_active_kid(const kr_jwt_keyset *ks);

/* Number of keys in the set. */
size_t kr_jwt_keyset_count(const kr_jwt_keyset *ks);

/* The public JWK Set (RFC 7517 section 5) of every key: {"keys": [{"kty",
 * "crv", "x", "y" | "n", "e", "kid", "alg", "use": "sig"}, ...]} in kid order,
 * for the JWKS endpoint. Never contains private parts. The caller owns the
 * result (json_decref). Never NULL. */
json_t *kr_jwt_keyset_jwks(const kr_jwt_keyset *ks) __attribute__((warn_unused_result));

/* Generates a new P-256 private key as an unencrypted PKCS#8 PEM string, for a
 * first local run without a mounted key. On success *pem_out is a malloc'd,
 * NUL-terminated string the caller frees; on error it is NULL. */
int kr_jwt_generate_es256_pem(char **pem_out) __attribute__((warn_unused_result));

/* Generates a new RSA-2048 private key (for RS256) the same way, so that a
 * first local run can also serve relying parties that need RS256. */
int kr_jwt_generate_rs256_pem(char **pem_out) __attribute__((warn_unused_result));

/* Whether the set holds a private key of algorithm `alg` ("ES256" or
 * "RS256"), i.e. whether kr_jwt_sign_alg(ks, alg, ...) can sign. False for
 * a NULL set or another name. */
bool kr_jwt_keyset_can_sign(const kr_jwt_keyset *ks, const char *alg);

/* ---------------------------------------------------------------- claims */

/* The claims of a token. String members are NUL-terminated or NULL when
 * absent; times are Unix seconds, 0 when absent.
 *
 * For kr_jwt_sign the struct is only read, and its members may point anywhere.
 * A struct filled by kr_jwt_verify or kr_jwt_cache_verify owns every member
 * (malloc'd strings, one reference to `extra`); release them with
 * kr_jwt_claims_clear. */
typedef struct {
    char *iss;       /* issuer */
    char *sub;       /* subject: the user id */
    char *aud;       /* audience: one value (see kr_jwt_verify for arrays) */
    char *jti;       /* token id, for revocation */
    char *scope;     /* space-separated scopes (RFC 8693 section 4.2) */
    char *sid;       /* session id (OpenID Connect Front-Channel Logout) */
    char *client_id; /* OAuth client the token was issued to (RFC 9068) */
    int64_t exp;     /* expiry; required */
    int64_t iat;     /* issued at; kr_jwt_sign puts the current time for 0 */
    int64_t nbf;     /* not before */
    json_t *extra;   /* object of every other claim, or NULL */
} kr_jwt_claims;

/* Frees the members of a struct filled by verification and zeroes it. NULL is
 * a no-op. Not for structs whose members the caller set by hand. */
void kr_jwt_claims_clear(kr_jwt_claims *c);

/* Signs `claims` with the active key: header {"alg", "kid", "typ": "JWT"}.
 * `exp` must be set; `extra`, if not NULL, must be an object whose keys are
 * none of the named members above. On success *token_out is a malloc'd,
 * NUL-terminated token the caller frees; on error it is NULL and the code is
 * KR_JWT_EINVAL (claims) or KR_JWT_ENOKEY (no private key). Thread-safe on a
 * shared key set. */
int kr_jwt_sign(const kr_jwt_keyset *ks, const kr_jwt_claims *claims, char **token_out) __attribute__((warn_unused_result));

/* kr_jwt_sign with the algorithm a relying party asks for ("ES256" or
 * "RS256"; an OpenID Connect client registered without
 * id_token_signed_response_alg expects RS256). Uses the active key if it has
 * that algorithm, else the private key of that algorithm with the greatest
 * kid; KR_JWT_ENOKEY if there is none, KR_JWT_EALG for another name. NULL alg
 * is kr_jwt_sign. Same ownership as kr_jwt_sign. */
int kr_jwt_sign_alg(const kr_jwt_keyset *ks, const char *alg, const kr_jwt_claims *claims, char **token_out)
    __attribute__((warn_unused_result));

/* What verification expects beyond a good signature. */
typedef struct {
    const char *issuer;   /* iss must equal this; NULL: not checked */
    const char *audience; /* aud must be this or an array holding it; NULL: not checked */
    int64_t leeway;       /* seconds of clock skew allowed on exp and nbf */
    int64_t now;          /* Unix seconds to check against; 0: the current time */
    /* Non-zero: a token past its exp still verifies (exp must still be
     * present). Only for tokens used as hints, never as credentials: an
     * OpenID Connect id_token_hint at logout is often long expired. */
    int allow_expired;
} kr_jwt_verify_opts;

/* Verifies `token` (`len` bytes, need not be NUL-terminated): compact form,
 * header alg equal to the algorithm of the key named by kid, signature, then
 * claims: exp (required), nbf, iss and aud as `opts` asks (NULL opts: no
 * issuer or audience check, no leeway). When aud is an array, out->aud is
 * opts->audience if given, else the array's first element.
 * On success fills `out` (which the caller then clears with
 * kr_jwt_claims_clear); on error `out` is zeroed. Thread-safe on a shared
 * key set. */
int kr_jwt_verify(const kr_jwt_keyset *ks, const char *token, size_t len, const kr_jwt_verify_opts *opts, kr_jwt_claims *out)
    __attribute__((warn_unused_result));

/* ----------------------------------------------------------------- cache */

/* A fixed-capacity cache of verified tokens, CLOCK eviction. NOT thread-safe:
 * create one per event-loop thread. */
typedef struct kr_jwt_cache kr_jwt_cache;

/* Counters since kr_jwt_cache_new. */
typedef struct {
    uint64_t hits;      /* answered from the cache */
    uint64_t misses;    /* verified with the key set */
    uint64_t evictions; /* entries dropped to make room */
    uint64_t expired;   /* entries dropped because exp had passed */
    uint64_t revoked;   /* entries dropped by a revocation */
    size_t size;        /* entries held now */
    size_t capacity;    /* most entries held */
    size_t denied;      /* revoked jti/sid values remembered now */
} kr_jwt_cache_stats;

/* Creates a cache of at most `capacity` tokens (1 .. 1<<20) and as many
 * remembered revocations. Each entry holds a copy of its token (at most
 * KR_JWT_MAX_TOKEN bytes) and its claims. Returns NULL for a capacity out of
 * range; aborts on out-of-memory. Free with kr_jwt_cache_free. */
kr_jwt_cache *kr_jwt_cache_new(size_t capacity) __attribute__((warn_unused_result));

/* Frees the cache and all entries. NULL is a no-op. */
void kr_jwt_cache_free(kr_jwt_cache *c);

/* kr_jwt_verify through the cache. A hit is a token byte-for-byte equal to one
 * verified earlier with the same key set; its claims are checked again against
 * `opts` and the current time (so a hit never outlives exp) and deep-copied
 * into `out`. A miss is verified with kr_jwt_verify and, on success, inserted,
 * evicting the least recently used entry (approximately) when full. Tokens
 * whose jti or sid was revoked fail with KR_JWT_EREVOKED. Same results and
 * ownership as kr_jwt_verify. */
int kr_jwt_cache_verify(kr_jwt_cache *c, const kr_jwt_keyset *ks, const char *token, size_t len, const kr_jwt_verify_opts *opts,
                        kr_jwt_claims *out) __attribute__((warn_unused_result));

/* Revokes every token carrying this `jti`: drops cached entries and rejects
 * such tokens, hit or miss, until Unix time `until` (set it to the latest exp
 * such a token can have). Returns KR_JWT_EFULL when the revocation list is full
 * even after forgetting expired revocations: the entries are dropped, but the
 * caller must reject the jti itself. */
int kr_jwt_cache_revoke_jti(kr_jwt_cache *c, const char *jti, int64_t until) __attribute__((warn_unused_result));

/* Same as kr_jwt_cache_revoke_jti for every token of session `sid` (logout). */
int kr_jwt_cache_revoke_sid(kr_jwt_cache *c, const char *sid, int64_t until) __attribute__((warn_unused_result));

/* Copies the counters into `out`. */
void kr_jwt_cache_stats_get(const kr_jwt_cache *c, kr_jwt_cache_stats *out);

#endif
