/* Pure rules of the OpenID Connect flow: scope lists (RFC 6749 section
 * 3.3), the tokens identity hands out and how they are kept, and what a
 * presented code (RFC 6749 section 4.1.3, RFC 7636 section 4.6) or refresh
 * token (RFC 6749 section 6, rotation as in the OAuth 2.0 Security BCP,
 * RFC 9700 section 4.14) deserves. No I/O. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "identity.h"
#include "kr_oauth.h"

/* ----------------------------------------------------------------- scopes */

int ident_scopes_parse(kr_arena *arena, const char *text, ident_scopes *out)
{
    out->n = 0;
    const char *p = text;
    while (*p != '\0') {
        while (*p == ' ')
            p++;
        const char *end = p;
        while (*end != '\0' && *end != ' ')
            end++;
        size_t len = (size_t)(end - p);
        if (len == 0)
            break;
        if (!kr_oauth_scope_token_valid(p, len))
            return -1;
        bool seen = false;
        for (size_t i = 0; i < out->n && !seen; i++)
            seen = strlen(out->v[i]) == len && memcmp(out->v[i], p, len) == 0;
        if (!seen) {
            if (out->n == IDENT_SCOPE_MAX)
                return -1;
            out->v[out->n++] = kr_arena_strndup(arena, p, len);
        }
        p = end;
    }
    return 0;
}

bool ident_scopes_has(const ident_scopes *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], name) == 0)
            return true;
    return false;
}

bool ident_scopes_within(const ident_scopes *s, char *const *list, size_t n)
{
    for (size_t i = 0; i < s->n; i++)
        if (!ident_list_has(list, n, s->v[i]))
            return false;
    return true;
}

void ident_scopes_remove(ident_scopes *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->v[i], name) == 0) {
            memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(s->v[0]));
            s->n--;
            return;
        }
    }
}

char *ident_scopes_join(kr_arena *arena, const ident_scopes *s)
{
    size_t len = 1;
    for (size_t i = 0; i < s->n; i++)
        len += strlen(s->v[i]) + 1;
    char *out = kr_arena_alloc(arena, len);
    size_t o = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (i > 0)
            out[o++] = ' ';
        size_t l = strlen(s->v[i]);
        memcpy(out + o, s->v[i], l);
        o += l;
    }
    out[o] = '\0';
    return out;
}

/* ----------------------------------------------------------------- tokens */

bool ident_flow_token_valid(const char *s)
{
    if (s == NULL || strlen(s) != IDENT_FLOW_TOKEN_LEN)
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return false;
    return true;
}

void ident_flow_token_new(char out[IDENT_FLOW_TOKEN_LEN + 1])
{
    kr_oauth_random_b64url(out, IDENT_FLOW_TOKEN_BYTES);
}

void ident_flow_token_hash(const char *token, uint8_t out[32])
{
    unsigned int len = 0;
    if (EVP_Digest(token, strlen(token), out, &len, EVP_sha256(), NULL) != 1 || len != 32)
        abort(); /* SHA-256 of a short string cannot fail short of a broken library */
}

void ident_session_key(const char *token, char out[IDENT_SSO_KEY_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t h[32];
    ident_flow_token_hash(token, h);
    size_t o = strlen(IDENT_SSO_KEY_PREFIX);
    memcpy(out, IDENT_SSO_KEY_PREFIX, o);
    for (size_t i = 0; i < sizeof(h); i++) {
        out[o++] = digits[h[i] >> 4];
        out[o++] = digits[h[i] & 15];
    }
    out[o] = '\0';
}

char *ident_revocation_json(const char *jti, int64_t until)
{
    json_t *m = json_pack("{s:s, s:I}", "jti", jti, "until", (json_int_t)until);
    char *text = m != NULL ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    if (text == NULL)
        abort();
    return text;
}

/* --------------------------------------------------------------- verdicts */

ident_authcode_verdict ident_authcode_judge(const ident_authcode_facts *f, const char *client_id, const char *redirect_uri,
                                            const char *code_verifier, int64_t now)
{
    /* Another client learns nothing and spends nothing: the code stays
     * good for the client it was issued to. */
    if (strcmp(f->client_id, client_id) != 0)
        return IDENT_AUTHCODE_OTHER_CLIENT;
    /* A second redemption means the code leaked (RFC 6749 section 4.1.2):
     * whatever it started is revoked, even after the code expired. */
    if (f->used)
        return IDENT_AUTHCODE_REPLAYED;
    if (f->expires_at <= now)
        return IDENT_AUTHCODE_EXPIRED;
    /* RFC 6749 section 4.1.3: exactly the redirect_uri of the request. */
    if (strcmp(f->redirect_uri, redirect_uri) != 0)
        return IDENT_AUTHCODE_WRONG_REDIRECT;
    bool challenged = f->code_challenge != NULL && f->code_challenge[0] != '\0';
    if (challenged) {
        if (kr_oauth_pkce_verify(code_verifier, strlen(code_verifier), f->code_challenge, strlen(f->code_challenge)) != KR_OAUTH_OK)
            return IDENT_AUTHCODE_WRONG_VERIFIER;
    } else if (code_verifier[0] != '\0') {
        /* A verifier for a code issued without a challenge: someone is
         * confused or an attacker injected a code (PKCE downgrade, RFC 9700 section 4.8). */
        return IDENT_AUTHCODE_WRONG_VERIFIER;
    }
    return IDENT_AUTHCODE_OK;
}

const char *ident_authcode_verdict_text(ident_authcode_verdict v)
{
    switch (v) {
    case IDENT_AUTHCODE_OK:
        return "ok";
    case IDENT_AUTHCODE_UNKNOWN:
        return "the code is unknown";
    case IDENT_AUTHCODE_OTHER_CLIENT:
        return "the code was issued to another client";
    case IDENT_AUTHCODE_REPLAYED:
        return "the code was used before; what it granted is revoked";
    case IDENT_AUTHCODE_EXPIRED:
        return "the code has expired";
    case IDENT_AUTHCODE_WRONG_REDIRECT:
        return "redirect_uri differs from the authorization request's";
    case IDENT_AUTHCODE_WRONG_VERIFIER:
        return "the code_verifier does not match the code_challenge";
    }
    return "the code is not valid";
}

ident_refresh_verdict ident_refresh_judge(const ident_refresh_facts *f, const char *client_id, int64_t now)
{
    if (strcmp(f->client_id, client_id) != 0)
        return IDENT_REFRESH_OTHER_CLIENT;
    if (f->revoked)
        return IDENT_REFRESH_REVOKED;
    /* A rotated token presented again: either the client or an attacker
     * holds a copy, and the server cannot tell which (RFC 9700 section
     * 4.14), so the family ends. */
    if (f->used)
        return IDENT_REFRESH_REUSED;
    if (f->expires_at <= now)
        return IDENT_REFRESH_EXPIRED;
    return IDENT_REFRESH_OK;
}

const char *ident_refresh_verdict_text(ident_refresh_verdict v)
{
    switch (v) {
    case IDENT_REFRESH_OK:
        return "ok";
    case IDENT_REFRESH_UNKNOWN:
        return "the refresh token is unknown";
    case IDENT_REFRESH_OTHER_CLIENT:
        return "the refresh token was issued to another client";
    case IDENT_REFRESH_REVOKED:
        return "the refresh token was revoked";
    case IDENT_REFRESH_REUSED:
        return "the refresh token was used before; its whole family is revoked";
    case IDENT_REFRESH_EXPIRED:
        return "the refresh token has expired";
    }
    return "the refresh token is not valid";
}
