/* The sign-in flow's rules with no I/O (see oidc.h): the authorization
 * request (OpenID Connect Core 1.0 section 3.1.2), the sealed pending
 * request, cookies (RFC 6265), CSRF tokens and the logout's id_token_hint. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "kr_id.h"
#include "oidc.h"

#define SEAL_PURPOSE "oidc.authorize"
#define SEAL_VERSION 1

/* ------------------------------------------------------------- helpers */

static bool printable_ascii(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s <= 0x20 || *s >= 0x7f)
            return false;
    return true;
}

static bool has_token(const char *list, const char *tok, size_t tlen)
{
    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, " ");
        if (n == tlen && memcmp(p, tok, n) == 0)
            return true;
        p += n + (p[n] == ' ');
    }
    return false;
}

static bool registered(const gw_oidc_client_view *c, const char *tok, size_t tlen)
{
    for (size_t i = 0; i < c->nscopes; i++)
        if (strlen(c->scopes[i]) == tlen && memcmp(c->scopes[i], tok, tlen) == 0)
            return true;
    return false;
}

/* ------------------------------------------------- authorization request */

int gw_oidc_authz_begin(const gw_oidc_form *form, gw_oidc_authz *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    out->max_age = -1;
    out->client_id = gw_oidc_form_get(form, "client_id");
    out->redirect_uri = gw_oidc_form_get(form, "redirect_uri");
    out->state = gw_oidc_form_get(form, "state");
    if (out->client_id == NULL) {
        *why = "client_id is required";
        return -1;
    }
    if (strlen(out->client_id) > GW_OIDC_CLIENT_ID_MAX || !printable_ascii(out->client_id)) {
        *why = "client_id is malformed";
        return -1;
    }
    /* OpenID Connect Core 1.0 section 3.1.2.1: always required. */
    if (out->redirect_uri == NULL) {
        *why = "redirect_uri is required";
        return -1;
    }
    return 0;
}

/* Parses prompt: space-separated values, each known, `none` alone. */
static int parse_prompt(const char *s, unsigned *out)
{
    *out = 0;
    if (s == NULL)
        return 0;
    for (const char *p = s; *p != '\0';) {
        size_t n = strcspn(p, " ");
        unsigned bit = 0;
        if (n == 4 && memcmp(p, "none", 4) == 0)
            bit = GW_OIDC_PROMPT_NONE;
        else if (n == 5 && memcmp(p, "login", 5) == 0)
            bit = GW_OIDC_PROMPT_LOGIN;
        else if (n == 7 && memcmp(p, "consent", 7) == 0)
            bit = GW_OIDC_PROMPT_CONSENT;
        if (bit == 0)
            return -1; /* unknown, empty (two spaces), or select_account, which there is nothing to select for */
        *out |= bit;
        p += n;
        if (*p == ' ' && p[1] == '\0')
            return -1;
        p += *p == ' ';
    }
    if ((*out & GW_OIDC_PROMPT_NONE) && *out != GW_OIDC_PROMPT_NONE)
        return -1;
    return 0;
}

/* max_age: a non-negative decimal integer; absurdly large values mean
 * "any age" and are capped. */
static int parse_max_age(const char *s, int64_t *out)
{
    *out = -1;
    if (s == NULL)
        return 0;
    size_t n = strlen(s);
    if (n == 0 || n > 18 || strspn(s, "0123456789") != n)
        return -1;
    int64_t v = strtoll(s, NULL, 10);
    *out = v > GW_OIDC_MAX_AGE_MAX ? GW_OIDC_MAX_AGE_MAX : v;
    return 0;
}

#define REFUSE(err, desc)                                                                                                          \
    do {                                                                                                                           \
        *error = (err);                                                                                                            \
        *description = (desc);                                                                                                     \
        return -1;                                                                                                                 \
    } while (0)

int gw_oidc_authz_check(h2o_mem_pool_t *pool, const gw_oidc_form *form, const gw_oidc_client_view *client, gw_oidc_authz *out,
                        const char **error, const char **description)
{
    /* Once the redirect URI matched, errors go back with state: an
     * overlong one is refused without being echoed. */
    if (out->state != NULL && strlen(out->state) > GW_OIDC_STATE_MAX) {
        out->state = NULL;
        REFUSE("invalid_request", "state is too long");
    }
    /* OpenID Connect Core 1.0 section 3.1.2.6 */
    if (gw_oidc_form_get(form, "request") != NULL)
        REFUSE("request_not_supported", "request objects are not supported");
    if (gw_oidc_form_get(form, "request_uri") != NULL)
        REFUSE("request_uri_not_supported", "request_uri is not supported");
    if (gw_oidc_form_get(form, "registration") != NULL)
        REFUSE("registration_not_supported", "the registration parameter is not supported");

    const char *rt = gw_oidc_form_get(form, "response_type");
    if (rt == NULL)
        REFUSE("invalid_request", "response_type is required");
    if (strcmp(rt, "code") != 0)
        REFUSE("unsupported_response_type", "only response_type=code is supported");
    const char *mode = gw_oidc_form_get(form, "response_mode");
    if (mode != NULL && strcmp(mode, "query") != 0)
        REFUSE("invalid_request", "only response_mode=query is supported");
    if (!client->authorization_code)
        REFUSE("unauthorized_client", "this client is not registered for the authorization_code grant");

    /* RFC 6749 section 3.3: scope tokens separated by single spaces. */
    const char *scope = gw_oidc_form_get(form, "scope");
    if (scope == NULL)
        REFUSE("invalid_scope", "scope is required and must contain openid");
    size_t slen = strlen(scope);
    char *norm = h2o_mem_alloc_pool(pool, slen + 1);
    size_t o = 0;
    norm[0] = '\0';
    for (size_t at = 0; at <= slen;) {
        const char *tok = scope + at;
        const char *sp = memchr(tok, ' ', slen - at);
        size_t tlen = sp != NULL ? (size_t)(sp - tok) : slen - at;
        at += tlen + 1;
        if (!kr_oauth_scope_token_valid(tok, tlen))
            REFUSE("invalid_scope", "scope must be scope tokens separated by single spaces");
        if (!registered(client, tok, tlen))
            REFUSE("invalid_scope", "a requested scope is not registered for this client");
        if (has_token(norm, tok, tlen))
            continue;
        if (o > 0)
            norm[o++] = ' ';
        memcpy(norm + o, tok, tlen);
        o += tlen;
        norm[o] = '\0';
    }
    if (!has_token(norm, "openid", 6))
        REFUSE("invalid_scope", "scope must contain openid");
    out->scope = norm;

    /* RFC 7636: S256 only; public clients always. */
    out->code_challenge = gw_oidc_form_get(form, "code_challenge");
    out->code_challenge_method = gw_oidc_form_get(form, "code_challenge_method");
    if (out->code_challenge_method != NULL && strcmp(out->code_challenge_method, "S256") != 0)
        REFUSE("invalid_request", "code_challenge_method must be S256");
    if (out->code_challenge == NULL && out->code_challenge_method != NULL)
        REFUSE("invalid_request", "code_challenge_method without code_challenge");
    if (out->code_challenge != NULL && out->code_challenge_method == NULL)
        REFUSE("invalid_request", "code_challenge needs code_challenge_method=S256 (plain is not supported)");
    if (out->code_challenge != NULL && !gw_oidc_pkce_challenge_valid(out->code_challenge, strlen(out->code_challenge)))
        REFUSE("invalid_request", "code_challenge must be 43 base64url characters (S256)");
    if (client->is_public && out->code_challenge == NULL)
        REFUSE("invalid_request", "a public client must use PKCE (code_challenge with code_challenge_method=S256)");

    if (parse_prompt(gw_oidc_form_get(form, "prompt"), &out->prompt) != 0)
        REFUSE("invalid_request", "prompt must be none, or any of login and consent");
    if (parse_max_age(gw_oidc_form_get(form, "max_age"), &out->max_age) != 0)
        REFUSE("invalid_request", "max_age must be a non-negative integer");
    out->nonce = gw_oidc_form_get(form, "nonce");
    if (out->nonce != NULL && strlen(out->nonce) > GW_OIDC_NONCE_MAX)
        REFUSE("invalid_request", "nonce is too long");
    /* Hints: used when sensible, ignored otherwise. */
    out->login_hint = gw_oidc_form_get(form, "login_hint");
    if (out->login_hint != NULL && strlen(out->login_hint) > GW_OIDC_LOGIN_HINT_MAX)
        out->login_hint = NULL;
    out->ui_locales = gw_oidc_form_get(form, "ui_locales");
    if (out->ui_locales != NULL && strlen(out->ui_locales) > GW_OIDC_UI_LOCALES_MAX)
        out->ui_locales = NULL;
    return 0;
}

#undef REFUSE

/* -------------------------------------------------------- sealed request */

static const char b64url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(char c)
{
    const char *p = c != '\0' ? strchr(b64url_alphabet, c) : NULL;
    return p != NULL ? (int)(p - b64url_alphabet) : -1;
}

/* Strict base64url without padding: no stray bits, no other characters.
 * `out` holds len*3/4 bytes. Returns the decoded length, or -1. */
static ssize_t b64url_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (unsigned)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -1;
    return (ssize_t)o;
}

static void set_str(json_t *o, const char *name, const char *value)
{
    if (value != NULL)
        json_object_set_new(o, name, json_string(value));
}

h2o_iovec_t gw_oidc_authz_seal(h2o_mem_pool_t *pool, const kr_keyring *keys, const gw_oidc_authz *a, int64_t now)
{
    json_t *o = json_pack("{s:i, s:I}", "v", SEAL_VERSION, "exp", (json_int_t)now + GW_OIDC_REQUEST_TTL);
    set_str(o, "client_id", a->client_id);
    set_str(o, "client_name", a->client_name);
    if (a->first_party)
        json_object_set_new(o, "first_party", json_true());
    set_str(o, "redirect_uri", a->redirect_uri);
    set_str(o, "scope", a->scope);
    set_str(o, "state", a->state);
    set_str(o, "nonce", a->nonce);
    set_str(o, "code_challenge", a->code_challenge);
    set_str(o, "code_challenge_method", a->code_challenge_method);
    set_str(o, "login_hint", a->login_hint);
    set_str(o, "ui_locales", a->ui_locales);
    if (a->prompt != 0)
        json_object_set_new(o, "prompt", json_integer(a->prompt));
    if (a->max_age >= 0)
        json_object_set_new(o, "max_age", json_integer(a->max_age));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text == NULL)
        abort();
    const char *kid = kr_keyring_active_id(keys);
    size_t tlen = strlen(text), klen = strlen(kid);
    char *out = h2o_mem_alloc_pool(pool, klen + 1 + KR_OAUTH_B64URL_LEN(tlen) + 1 + KR_OAUTH_B64URL_LEN(KR_KEYRING_MAC_LEN) + 1);
    memcpy(out, kid, klen);
    size_t n = klen;
    out[n++] = '.';
    n += kr_oauth_b64url_encode((const unsigned char *)text, tlen, out + n);
    free(text);
    unsigned char mac[KR_KEYRING_MAC_LEN];
    /* The MAC covers the key id too. */
    if (kr_keyring_mac(keys, kid, SEAL_PURPOSE, out, n, mac) != 0)
        abort();
    out[n++] = '.';
    n += kr_oauth_b64url_encode(mac, sizeof(mac), out + n);
    out[n] = '\0';
    return h2o_iovec_init(out, n);
}

/* A string member, copied into the pool; NULL when absent. False when the
 * member is there but not a string. */
static bool get_str(h2o_mem_pool_t *pool, json_t *o, const char *name, const char **out)
{
    json_t *v = json_object_get(o, name);
    *out = NULL;
    if (v == NULL)
        return true;
    if (!json_is_string(v))
        return false;
    *out = h2o_strdup(pool, json_string_value(v), json_string_length(v)).base;
    return strlen(*out) == json_string_length(v); /* no NUL inside */
}

int gw_oidc_authz_unseal(h2o_mem_pool_t *pool, const kr_keyring *keys, const char *text, size_t len, int64_t now,
                         gw_oidc_authz *out)
{
    memset(out, 0, sizeof(*out));
    out->max_age = -1;
    if (text == NULL || len > GW_OIDC_SEALED_MAX || memchr(text, '\0', len) != NULL)
        return GW_OIDC_EMALFORMED;
    /* <kid>.<payload>.<mac>; the kid may hold dots, the others cannot. */
    const char *last = NULL, *prev = NULL;
    for (const char *p = text; p < text + len; p++)
        if (*p == '.')
            prev = last, last = p;
    if (prev == NULL || prev == text || last == prev + 1)
        return GW_OIDC_EMALFORMED;
    size_t klen = (size_t)(prev - text);
    if (klen > 32)
        return GW_OIDC_EMALFORMED;
    char kid[33];
    memcpy(kid, text, klen);
    kid[klen] = '\0';
    unsigned char mac[KR_KEYRING_MAC_LEN], given[KR_KEYRING_MAC_LEN + 3];
    const char *macb = last + 1;
    size_t mlen = (size_t)(text + len - macb);
    if (mlen != KR_OAUTH_B64URL_LEN(KR_KEYRING_MAC_LEN) || b64url_decode(macb, mlen, given) != KR_KEYRING_MAC_LEN)
        return GW_OIDC_EMALFORMED;
    if (kr_keyring_mac(keys, kid, SEAL_PURPOSE, text, (size_t)(last - text), mac) != 0)
        return GW_OIDC_EMISMATCH;
    if (CRYPTO_memcmp(mac, given, sizeof(mac)) != 0)
        return GW_OIDC_EMISMATCH;

    /* From here on the text is ours. */
    const char *payload = prev + 1;
    size_t plen = (size_t)(last - payload);
    unsigned char *json = h2o_mem_alloc_pool(pool, plen * 3 / 4 + 3);
    ssize_t jlen = b64url_decode(payload, plen, json);
    if (jlen < 0)
        return GW_OIDC_EMALFORMED;
    json_t *o = json_loadb((const char *)json, (size_t)jlen, JSON_REJECT_DUPLICATES, NULL);
    int rv = GW_OIDC_EMALFORMED;
    json_t *v = json_object_get(o, "v"), *exp = json_object_get(o, "exp");
    if (!json_is_integer(v) || json_integer_value(v) != SEAL_VERSION || !json_is_integer(exp))
        goto done;
    if (now >= json_integer_value(exp)) {
        rv = GW_OIDC_EEXPIRED;
        goto done;
    }
    if (!get_str(pool, o, "client_id", &out->client_id) || !get_str(pool, o, "client_name", &out->client_name) ||
        !get_str(pool, o, "redirect_uri", &out->redirect_uri) || !get_str(pool, o, "scope", &out->scope) ||
        !get_str(pool, o, "state", &out->state) || !get_str(pool, o, "nonce", &out->nonce) ||
        !get_str(pool, o, "code_challenge", &out->code_challenge) ||
        !get_str(pool, o, "code_challenge_method", &out->code_challenge_method) ||
        !get_str(pool, o, "login_hint", &out->login_hint) || !get_str(pool, o, "ui_locales", &out->ui_locales))
        goto done;
    if (out->client_id == NULL || out->redirect_uri == NULL || out->scope == NULL)
        goto done;
    out->first_party = json_is_true(json_object_get(o, "first_party"));
    json_t *prompt = json_object_get(o, "prompt"), *max_age = json_object_get(o, "max_age");
    out->prompt = json_is_integer(prompt) ? (unsigned)json_integer_value(prompt) : 0;
    out->max_age = json_is_integer(max_age) ? json_integer_value(max_age) : -1;
    rv = GW_OIDC_OK;
done:
    json_decref(o);
    if (rv != GW_OIDC_OK) {
        memset(out, 0, sizeof(*out));
        out->max_age = -1;
    }
    return rv;
}

/* ----------------------------------------------------------------- CSRF */

void gw_oidc_csrf_new(char *out)
{
    kr_oauth_random_b64url(out, 32);
}

bool gw_oidc_csrf_shape(const char *token, size_t len)
{
    if (token == NULL || len != GW_OIDC_CSRF_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (b64url_value(token[i]) < 0)
            return false;
    return true;
}

bool gw_oidc_csrf_valid(const char *cookie, size_t cookie_len, const char *field)
{
    if (field == NULL || !gw_oidc_csrf_shape(cookie, cookie_len) || !gw_oidc_csrf_shape(field, strlen(field)))
        return false;
    return CRYPTO_memcmp(cookie, field, GW_OIDC_CSRF_LEN) == 0;
}

/* -------------------------------------------------------------- cookies */

bool gw_oidc_cookie_find(const char *header, size_t len, const char *name, h2o_iovec_t *value)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < len;) {
        while (i < len && (header[i] == ' ' || header[i] == '\t'))
            i++;
        const char *pair = header + i;
        const char *semi = memchr(pair, ';', len - i);
        size_t plen = semi != NULL ? (size_t)(semi - pair) : len - i;
        i += plen + 1;
        const char *eq = memchr(pair, '=', plen);
        if (eq == NULL)
            continue;
        size_t klen = (size_t)(eq - pair);
        while (klen > 0 && (pair[klen - 1] == ' ' || pair[klen - 1] == '\t'))
            klen--;
        if (klen != nlen || memcmp(pair, name, nlen) != 0)
            continue;
        const char *v = eq + 1;
        size_t vlen = (size_t)(pair + plen - v);
        while (vlen > 0 && (*v == ' ' || *v == '\t'))
            v++, vlen--;
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"')
            v++, vlen -= 2;
        *value = h2o_iovec_init(v, vlen);
        return true;
    }
    return false;
}

h2o_iovec_t gw_oidc_cookie_build(h2o_mem_pool_t *pool, const char *name, const char *value, const char *path, int64_t max_age,
                                 const char *same_site, bool secure)
{
    size_t cap = strlen(name) + strlen(value) + strlen(path) + strlen(same_site) + 96;
    char *out = h2o_mem_alloc_pool(pool, cap);
    int n = snprintf(out, cap, "%s=%s; Path=%s", name, value, path);
    if (max_age >= 0)
        n += snprintf(out + n, cap - (size_t)n, "; Max-Age=%lld", (long long)max_age);
    n += snprintf(out + n, cap - (size_t)n, "; HttpOnly; SameSite=%s%s", same_site, secure ? "; Secure" : "");
    return h2o_iovec_init(out, (size_t)n);
}

/* --------------------------------------------------------- logout hints */

int gw_oidc_id_token_hint(const kr_jwt_keyset *keys, const char *issuer, const char *api_audience, const char *token,
                          const char *client_id, kr_jwt_claims *claims)
{
    memset(claims, 0, sizeof(*claims));
    if (keys == NULL || token == NULL)
        return KR_JWT_EINVAL;
    kr_jwt_verify_opts opts = {.issuer = issuer, .audience = client_id, .allow_expired = 1};
    int rv = kr_jwt_verify(keys, token, strlen(token), &opts, claims);
    if (rv != KR_JWT_OK)
        return rv;
    if (claims->aud == NULL || claims->sub == NULL || (api_audience != NULL && strcmp(claims->aud, api_audience) == 0)) {
        kr_jwt_claims_clear(claims);
        return KR_JWT_EAUDIENCE;
    }
    return KR_JWT_OK;
}
