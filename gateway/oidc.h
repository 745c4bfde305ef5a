/*
 * oidc — the gateway's OpenID Connect provider surface.
 *
 *   oidc_proto.c  protocol rules with no I/O: PKCE (RFC 7636), redirect URI
 *                 checks and matching (RFC 6749 section 3.1.2, RFC 8252),
 *                 building the redirect back to the client (RFC 9207's
 *                 `iss`), form and query parameters (RFC 6749 section 3.1),
 *                 HTTP Basic client authentication (RFC 6749 section 2.3.1)
 *   oidc.c        the HTTP handlers: discovery (OpenID Connect Discovery 1.0),
 *                 the JWK Set, and the HTML pages (html.h)
 *   oidc_flow.c   the sign-in flow's rules with no I/O: checking an
 *                 authorization request (OpenID Connect Core 1.0 section
 *                 3.1.2), the sealed pending request, cookies, CSRF tokens,
 *                 the id_token_hint of a logout
 *   oidc_authorize.c  the browser's endpoints: authorize, login, consent,
 *                 enroll, logout
 *   oidc_claims.c the person claims of ID tokens, userinfo and access tokens,
 *                 and the texts of error descriptions
 *
 * Everything a function returns is allocated from the `pool` it is given
 * (the request's pool in the gateway), so nothing is freed by hand.
 * docs/oidc.md has the design and the security rules.
 */
#ifndef GW_OIDC_H
#define GW_OIDC_H

#include <h2o.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "html.h"
#include "identity.pb-c.h"
#include "kr_jwt.h"
#include "kr_oauth.h"
#include "kr_seal.h"

/* Error codes. 0 is success; each has a gw_oidc_strerror text. */
typedef enum {
    GW_OIDC_OK = 0,
    GW_OIDC_EMALFORMED, /* bad syntax: percent-encoding, base64, a name, a URI */
    GW_OIDC_EDUPLICATE, /* a parameter given twice (RFC 6749 section 3.1) */
    GW_OIDC_ETOOBIG,    /* input longer than its limit */
    GW_OIDC_ETOOMANY,   /* more parameters than the limit */
    GW_OIDC_EENCODING,  /* a decoded value is not UTF-8 or holds a NUL */
    GW_OIDC_ESCHEME,    /* a redirect URI that is neither https nor loopback http */
    GW_OIDC_EFRAGMENT,  /* a redirect URI with a fragment */
    GW_OIDC_EMISMATCH,  /* a verifier or redirect URI that does not match */
    GW_OIDC_EEXPIRED,   /* sealed state past its expiry */
} gw_oidc_err;

/* A static English text for an error code; never NULL. */
const char *gw_oidc_strerror(int err);

/* ------------------------------------------------------------------ PKCE */

/* The rules live in libcommon (kr_oauth_pkce_*, which identity uses when a
 * code is redeemed); these keep the gateway's error codes. */

/* Shortest and longest code_verifier (RFC 7636 section 4.1). */
#define GW_OIDC_PKCE_VERIFIER_MIN 43
#define GW_OIDC_PKCE_VERIFIER_MAX 128
/* Length of an S256 code_challenge: BASE64URL of 32 bytes, no padding. */
#define GW_OIDC_PKCE_CHALLENGE_LEN 43

/* Whether `challenge` can be an S256 code_challenge: exactly 43 characters
 * of the base64url alphabet, the last one carrying no stray bits. Checked at
 * the authorization request, so a bad challenge is refused up front. */
bool gw_oidc_pkce_challenge_valid(const char *challenge, size_t len);

/* Verifies a code_verifier against the S256 code_challenge stored with the
 * code (RFC 7636 section 4.6): the verifier must be 43..128 characters of
 * [A-Za-z0-9-._~] and BASE64URL(SHA256(verifier)) must equal the challenge.
 * The comparison takes the same time wherever the strings differ.
 * Returns 0, GW_OIDC_EMALFORMED for a verifier or challenge of the wrong
 * shape, or GW_OIDC_EMISMATCH. */
int gw_oidc_pkce_verify(const char *verifier, size_t verifier_len, const char *challenge, size_t challenge_len)
    __attribute__((warn_unused_result));

/* ---------------------------------------------------------- redirect URIs */

/* Longest redirect URI accepted, in bytes. */
#define GW_OIDC_REDIRECT_URI_MAX KR_OAUTH_REDIRECT_URI_MAX

/* Checks that `uri` may be registered as a redirect URI: an absolute URI
 * (RFC 6749 section 3.1.2) of printable ASCII without spaces or backslashes,
 * at most GW_OIDC_REDIRECT_URI_MAX bytes, with a host and no user
 * information, no fragment, scheme `https`, or `http` only for a loopback
 * host (`127.0.0.1`, `[::1]`, `localhost`) as native apps use (RFC 8252
 * section 7.3). Scheme and host must be lower case, as they are compared
 * byte for byte. Returns 0, GW_OIDC_EFRAGMENT, GW_OIDC_ESCHEME,
 * GW_OIDC_ETOOBIG or GW_OIDC_EMALFORMED. */
int gw_oidc_redirect_uri_check(const char *uri, size_t len) __attribute__((warn_unused_result));

/* Finds the registered URI that an authorization request's `redirect_uri`
 * names. The comparison is byte for byte (no prefixes, no case folding, no
 * normalisation), with one exception from RFC 8252 section 7.3: for a
 * registered `http://127.0.0.1...` or `http://[::1]...` URI the request may
 * name any port, everything else equal. The requested URI must itself pass
 * gw_oidc_redirect_uri_check. Returns the index into `registered`, or -1:
 * the caller then shows an error page and never redirects. */
int gw_oidc_redirect_uri_match(const char *requested, size_t len, const char *const *registered, size_t nregistered);

/* One name and value of a query string or form. */
typedef struct {
    const char *name;
    const char *value;
} gw_oidc_param;

/* Builds the URI that sends the browser back to the client: `redirect_uri`
 * (already matched) with the parameters appended to its query, each name and
 * value percent-encoded (only RFC 3986 unreserved characters stay as they
 * are), keeping a query the URI already has. Parameters whose value is NULL
 * are skipped. The result is NUL-terminated and comes from `pool`. */
h2o_iovec_t gw_oidc_redirect_build(h2o_mem_pool_t *pool, const char *redirect_uri, const gw_oidc_param *params, size_t n);

/* The successful authorization response (RFC 6749 section 4.1.2): `code`,
 * `state` when the request had one, and `iss` (RFC 9207 section 2). */
h2o_iovec_t gw_oidc_redirect_code(h2o_mem_pool_t *pool, const char *redirect_uri, const char *code, const char *state,
                                  const char *issuer);

/* The error authorization response (RFC 6749 section 4.1.2.1): `error`,
 * `error_description` when not NULL, `state` when the request had one, and
 * `iss`. */
h2o_iovec_t gw_oidc_redirect_error(h2o_mem_pool_t *pool, const char *redirect_uri, const char *error, const char *description,
                                   const char *state, const char *issuer);

/* ------------------------------------------------------------ parameters */

/* Limits of one parsed query string or form body. */
#define GW_OIDC_FORM_MAX_BYTES 16384 /* the whole encoded text */
#define GW_OIDC_FORM_MAX_PARAMS 32   /* parameters with a value */

/* Parsed parameters, in the order given. */
typedef struct {
    size_t n;
    gw_oidc_param params[GW_OIDC_FORM_MAX_PARAMS];
} gw_oidc_form;

/* Parses `text` (`len` bytes) as application/x-www-form-urlencoded, the
 * format of query strings and of form bodies: `&`-separated `name=value`
 * pairs, `+` for a space, `%XX` escapes. Empty pairs are skipped, and a
 * parameter with an empty value is treated as absent (RFC 6749 section 3.1).
 * A name repeated (with a value) is GW_OIDC_EDUPLICATE unless it is listed in
 * `repeatable` (NULL-terminated; may be NULL), as OAuth forbids repeated
 * parameters. Other errors: GW_OIDC_ETOOBIG (text over
 * GW_OIDC_FORM_MAX_BYTES), GW_OIDC_ETOOMANY, GW_OIDC_EMALFORMED (a bad escape,
 * an empty name), GW_OIDC_EENCODING (not UTF-8, or a NUL). On error `*bad`
 * (when not NULL) names the offending parameter if one is known, else is
 * NULL. Names and values are NUL-terminated and come from `pool`; on error
 * `out` holds what was parsed before. */
int gw_oidc_form_parse(h2o_mem_pool_t *pool, const char *text, size_t len, const char *const *repeatable, gw_oidc_form *out,
                       const char **bad) __attribute__((warn_unused_result));

/* The value of the first parameter called `name`, or NULL. */
const char *gw_oidc_form_get(const gw_oidc_form *form, const char *name);

/* ------------------------------------------------------ client credentials */

/* Longest Authorization header value parsed, in bytes. */
#define GW_OIDC_BASIC_MAX 1024

/* Parses an `Authorization: Basic ...` header value into a client id and
 * secret (RFC 7617, with RFC 6749 section 2.3.1: both are form-urlencoded
 * before they are joined by ':' and base64-encoded). The scheme is matched
 * without regard to case; the base64 must be canonical with padding; the id
 * must not be empty and neither may hold a NUL or non-UTF-8 bytes.
 * Returns 0 with NUL-terminated strings from `pool`, GW_OIDC_ETOOBIG,
 * GW_OIDC_EENCODING or GW_OIDC_EMALFORMED (also for another scheme). */
int gw_oidc_client_basic(h2o_mem_pool_t *pool, const char *header, size_t len, const char **client_id, const char **secret)
    __attribute__((warn_unused_result));

/* ------------------------------------------- the sign-in flow (oidc_flow.c) */

/* prompt values (OpenID Connect Core 1.0 section 3.1.2.1), as bits. */
#define GW_OIDC_PROMPT_NONE 1u
#define GW_OIDC_PROMPT_LOGIN 2u
#define GW_OIDC_PROMPT_CONSENT 4u

/* Longest values of the parameters an authorization request carries along
 * (in the sealed request and back to the client); longer ones are refused
 * (state, nonce) or ignored (login_hint, ui_locales, which are hints). */
#define GW_OIDC_CLIENT_ID_MAX 128
#define GW_OIDC_STATE_MAX 1024
#define GW_OIDC_NONCE_MAX 256
#define GW_OIDC_LOGIN_HINT_MAX 128
#define GW_OIDC_UI_LOCALES_MAX 64
#define GW_OIDC_MAX_AGE_MAX 315360000 /* ten years; more is "any age" */

/* Seconds a pending authorization request stays usable. */
#define GW_OIDC_REQUEST_TTL 600
/* Longest sealed request accepted back, in bytes. */
#define GW_OIDC_SEALED_MAX 8192

/* What the checks need of the client's registration (identity's). */
typedef struct {
    bool is_public;          /* a public client: PKCE is required */
    bool authorization_code; /* registered for the authorization_code grant */
    const char *const *scopes;
    size_t nscopes;
} gw_oidc_client_view;

/* An authorization request. Strings are NUL-terminated, from the pool the
 * functions were given (or the parsed form), NULL when absent. */
typedef struct {
    const char *client_id;
    const char *client_name;  /* for the pages: the registration's name */
    bool first_party;         /* the registration says so: consent is never asked */
    const char *redirect_uri; /* as the request gave it (already matched) */
    const char *scope;        /* checked and without repeats */
    const char *state;
    const char *nonce;
    const char *code_challenge;
    const char *code_challenge_method;
    const char *login_hint;
    const char *ui_locales;
    unsigned prompt; /* GW_OIDC_PROMPT_* */
    int64_t max_age; /* seconds; -1: not given */
} gw_oidc_authz;

/* The first step, before the client is known: client_id (present, at most
 * GW_OIDC_CLIENT_ID_MAX bytes of printable ASCII), redirect_uri (present)
 * and state. Until the redirect URI has matched, errors are never sent to
 * it: on -1 `*why` is an English text for the error page. */
int gw_oidc_authz_begin(const gw_oidc_form *form, gw_oidc_authz *out, const char **why) __attribute__((warn_unused_result));

/* The rest of the request, once the redirect URI matched a registered one
 * of `client`: response_type `code`, response_mode `query` when given,
 * the client registered for the grant, scope (scope tokens, `openid`
 * among them, each registered for the client; repeats dropped), PKCE
 * (S256 only; required for public clients; a challenge of the right shape),
 * prompt (`none`, `login`, `consent`; `none` alone), max_age (digits, at
 * most GW_OIDC_MAX_AGE_MAX), nonce, and `request`, `request_uri` and
 * `registration`, which are not supported (section 3.1.2.6). On -1
 * `*error` is the OAuth error code and `*description` an English text for
 * the redirect back to the client. */
int gw_oidc_authz_check(h2o_mem_pool_t *pool, const gw_oidc_form *form, const gw_oidc_client_view *client, gw_oidc_authz *out,
                        const char **error, const char **description) __attribute__((warn_unused_result));

/* Seals a checked request for the page's hidden `request` field, so the
 * gateway keeps no state between the pages: the request as JSON with an
 * expiry of `now` + GW_OIDC_REQUEST_TTL, MACed with kr_keyring_mac (purpose
 * "oidc.authorize") under the internal keys, as
 * `<key id>.<base64url JSON>.<base64url MAC>`. Not encrypted: it holds
 * nothing the browser did not send. The result comes from `pool`. */
h2o_iovec_t gw_oidc_authz_seal(h2o_mem_pool_t *pool, const kr_keyring *keys, const gw_oidc_authz *authz, int64_t now);

/* Opens a sealed request at `now`. Returns 0, GW_OIDC_EMALFORMED (not a
 * sealed request, or longer than GW_OIDC_SEALED_MAX), GW_OIDC_EMISMATCH
 * (an unknown key or a MAC that does not verify: altered) or
 * GW_OIDC_EEXPIRED. The MAC is checked before anything else is read. */
int gw_oidc_authz_unseal(h2o_mem_pool_t *pool, const kr_keyring *keys, const char *text, size_t len, int64_t now,
                         gw_oidc_authz *out) __attribute__((warn_unused_result));

/* Length of a CSRF token: 32 random bytes as base64url. */
#define GW_OIDC_CSRF_LEN 43

/* Writes a new random CSRF token into out[GW_OIDC_CSRF_LEN + 1]. */
void gw_oidc_csrf_new(char *out);

/* Whether `token` has the shape of a CSRF token (GW_OIDC_CSRF_LEN base64url
 * characters), so that a cookie can be kept rather than replaced. */
bool gw_oidc_csrf_shape(const char *token, size_t len);

/* The double-submit check: the form's `field` equals the cookie's value,
 * both of the shape above; compared in constant time. */
bool gw_oidc_csrf_valid(const char *cookie, size_t cookie_len, const char *field);

/* Finds the cookie `name` in one Cookie header value (RFC 6265 section
 * 4.2.1: `name=value` pairs separated by `;` and optional spaces; a quoted
 * value loses its quotes). The first one counts. Returns true with `*value`
 * pointing into `header`. */
bool gw_oidc_cookie_find(const char *header, size_t len, const char *name, h2o_iovec_t *value);

/* The single sign-on cookie: identity's session token (oidc_authorize.c). */
#define GW_SSO_COOKIE "kreide_sso"

/* Builds a Set-Cookie value: `name=value; Path=path`, `; Max-Age=N` when
 * max_age >= 0, `; HttpOnly`, `; SameSite=same_site`, and `; Secure` when
 * asked. From `pool`, NUL-terminated. */
h2o_iovec_t gw_oidc_cookie_build(h2o_mem_pool_t *pool, const char *name, const char *value, const char *path, int64_t max_age,
                                 const char *same_site, bool secure);

/* Checks an id_token_hint (OpenID Connect RP-Initiated Logout 1.0 section
 * 2): an ID token signed with one of `keys`, issued by `issuer`, whatever
 * its age (hints are often expired); its audience must be `client_id` when
 * that is given, and must not be `api_audience` (the access tokens' `aud`:
 * an access token is no ID token). On success fills `claims` (clear with
 * kr_jwt_claims_clear) and returns 0; else a kr_jwt error code. */
int gw_oidc_id_token_hint(const kr_jwt_keyset *keys, const char *issuer, const char *api_audience, const char *token,
                          const char *client_id, kr_jwt_claims *claims) __attribute__((warn_unused_result));

/* -------------------------------------------------------------- handlers */

/* Renders the discovery document for `issuer` (new reference): every
 * endpoint is the issuer (without a trailing '/') followed by its path. */
json_t *gw_oidc_discovery_build(const char *issuer);

/* Renders the discovery document and the JWK Set of `keys` (NULL: an empty
 * set) once, for the handlers. Call before gw_oidc_register; the texts live
 * until gw_oidc_free. */
void gw_oidc_init(const char *issuer, const kr_jwt_keyset *keys);

/* Frees what gw_oidc_init made. */
void gw_oidc_free(void);

/* Registers /oidc/token, /oidc/introspect and /oidc/revoke (oidc_token.c)
 * and /oidc/userinfo (gw_oidc_userinfo_register); gw_oidc_register calls
 * it. */
void gw_oidc_token_register(h2o_hostconf_t *hostconf);

/* Registers /oidc/authorize, /oidc/login, /oidc/consent, /oidc/enroll and
 * /oidc/logout (oidc_authorize.c); gw_oidc_register calls it. */
void gw_oidc_authorize_register(h2o_hostconf_t *hostconf);

/* The language of a page: `ui_locales` (may be NULL), else the request's
 * Accept-Language (gw_html_lang_negotiate). */
gw_lang gw_oidc_lang(h2o_req_t *req, const char *ui_locales);

/* Sends a rendered page with the headers every page carries: the content
 * type and language, GW_HTML_CSP, `Cache-Control: no-store`, the common
 * security headers. */
void gw_oidc_send_page(h2o_req_t *req, int status, gw_lang lang, h2o_iovec_t page);

/* Renders and sends an error page (gw_html_error) with the request's id. */
void gw_oidc_send_error_page(h2o_req_t *req, int status, gw_lang lang, gw_html_msg msg, const char *code);
/* Registers /oidc/userinfo (oidc_userinfo.c). */
void gw_oidc_userinfo_register(h2o_hostconf_t *hostconf);

/* Registers /.well-known/openid-configuration, /.well-known/jwks.json,
 * the token endpoints and the /oidc/ pages on `hostconf`. */
void gw_oidc_register(h2o_hostconf_t *hostconf);

/* ---------------------------------------------------------------- claims */

/* What tokens and userinfo say about a person (oidc_claims.c): one place
 * builds them from identity's UserClaims, so the ID token and userinfo
 * agree. Results are new jansson references; no pool is involved. */

/* Lifetime of an ID token in seconds (OpenID Connect Core section 2: the
 * relying party reads it once, right after the token response). */
#define GW_OIDC_ID_TOKEN_TTL 600

/* Whether the space-separated `scope` holds the scope token `name`. False
 * for NULL or empty arguments. */
bool gw_oidc_scope_has(const char *scope, const char *name);

/* The person claims of `uc` for `scope` (OpenID Connect Core section 5.1):
 * always `sub`; with `profile` name, given_name, family_name and
 * preferred_username (each only when set: a claim without a value is left
 * out); with `school` the `schools` array ({school_id, name, kennung,
 * roles, schulconnex_roles, groups: [{group_id, name, kind, role}]}),
 * `urn:schulconnex:de:personenkontext:rolle` (the distinct Schulconnex role
 * codes over all schools, in order of appearance) and
 * `urn:schulconnex:de:personenkontext:organisation:kennung` (the schools'
 * kennungen that are set), each an array, possibly empty. Never iss, aud or
 * nonce: userinfo answers exactly this object. */
json_t *gw_oidc_person_claims(const Kreide__Identity__UserClaims *uc, const char *scope);

/* The `schools` claim of a person access token: [{"school_id", "roles"}]
 * for every school of `uc` (which may be NULL: an empty array), the shape
 * gw_auth_caller turns into the caller's schools. */
json_t *gw_oidc_access_schools(const Kreide__Identity__UserClaims *uc);

/* Fills `out` for kr_jwt_sign with the person access token of grant `g`
 * (docs/oidc.md): iss, sub (the user id), aud `audience`, client_id, scope,
 * sid, jti = g->access_jti, iat `now`, exp = g->access_expires_at, and the
 * `schools` extra claim. The strings point into the arguments; the caller
 * releases out->extra with json_decref. */
void gw_oidc_access_token_claims(const Kreide__Identity__Grant *g, const char *issuer, const char *audience, const char *client_id,
                                 int64_t now, kr_jwt_claims *out);

/* Fills `out` for kr_jwt_sign with the ID token of grant `g` (OpenID Connect
 * Core section 2) for `client_id`: iss, sub, aud and azp (the client), iat
 * `now`, exp `now` + GW_OIDC_ID_TOKEN_TTL, auth_time, nonce (when the grant
 * has one), sid, at_hash of `access_token` (section 3.1.3.6; none for NULL)
 * and the person claims of g->claims for g->scope. g->claims must not be
 * NULL. The strings point into the arguments; the caller releases
 * out->extra with json_decref. */
void gw_oidc_id_token_claims(const Kreide__Identity__Grant *g, const char *issuer, const char *client_id, const char *access_token,
                             int64_t now, kr_jwt_claims *out);

/* Longest error description sent, in bytes. */
#define GW_OIDC_ERROR_TEXT_MAX 300

/* `text` as an error_description may carry it (RFC 6749 section 5.2:
 * printable ASCII without double quotes and backslashes, so it is also
 * safe inside an RFC 6750 WWW-Authenticate quoted-string): a double quote
 * becomes an apostrophe, a backslash a slash, other bytes outside the set
 * '?', and the text is cut after
 * GW_OIDC_ERROR_TEXT_MAX bytes. NULL gives "". From `pool`. */
const char *gw_oidc_error_text(h2o_mem_pool_t *pool, const char *text);

#endif
