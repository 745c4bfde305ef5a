/* What the tokens and userinfo say about a person: the claims of OpenID
 * Connect Core 1.0 section 5.1 for the `profile` scope, Kreide's `schools`
 * and the Schulconnex claims for the `school` scope, the ID token
 * (section 2) and the person access token. Pure functions of identity's
 * answers, so the ID token and userinfo can never disagree. */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "kr_oauth.h"
#include "oidc.h"

#define SCHULCONNEX_ROLE "urn:schulconnex:de:personenkontext:rolle"
#define SCHULCONNEX_KENNUNG "urn:schulconnex:de:personenkontext:organisation:kennung"

bool gw_oidc_scope_has(const char *scope, const char *name)
{
    if (scope == NULL || name == NULL)
        return false;
    size_t n = strlen(name);
    if (n == 0)
        return false;
    for (const char *p = scope; *p != '\0';) {
        size_t len = strcspn(p, " ");
        if (len == n && memcmp(p, name, n) == 0)
            return true;
        p += len;
        while (*p == ' ')
            p++;
    }
    return false;
}

/* OpenID Connect Core section 5.3.2: a claim without a value is left out,
 * never sent as "". */
static void set_text(json_t *o, const char *name, const char *value)
{
    if (value != NULL && value[0] != '\0')
        json_object_set_new(o, name, json_string(value));
}

static json_t *string_array(char *const *items, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        if (items[i] != NULL && items[i][0] != '\0')
            json_array_append_new(a, json_string(items[i]));
    return a;
}

static void append_distinct(json_t *a, const char *value)
{
    if (value == NULL || value[0] == '\0')
        return;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) if (strcmp(json_string_value(v), value) == 0) return;
    json_array_append_new(a, json_string(value));
}

static json_t *school_claim(const Kreide__Identity__ClaimSchool *s)
{
    json_t *o = json_object();
    set_text(o, "school_id", s->school_id);
    set_text(o, "name", s->name);
    set_text(o, "kennung", s->kennung);
    json_object_set_new(o, "roles", string_array(s->roles, s->n_roles));
    json_object_set_new(o, "schulconnex_roles", string_array(s->schulconnex_roles, s->n_schulconnex_roles));
    json_t *groups = json_array();
    for (size_t i = 0; i < s->n_groups; i++) {
        const Kreide__Identity__ClaimGroup *g = s->groups[i];
        json_t *go = json_object();
        set_text(go, "group_id", g->group_id);
        set_text(go, "name", g->name);
        set_text(go, "kind", g->kind);
        set_text(go, "role", g->role);
        json_array_append_new(groups, go);
    }
    json_object_set_new(o, "groups", groups);
    return o;
}

json_t *gw_oidc_person_claims(const Kreide__Identity__UserClaims *uc, const char *scope)
{
    json_t *o = json_object();
    set_text(o, "sub", uc->sub);
    if (gw_oidc_scope_has(scope, "profile")) {
        set_text(o, "name", uc->name);
        set_text(o, "given_name", uc->given_name);
        set_text(o, "family_name", uc->family_name);
        set_text(o, "preferred_username", uc->preferred_username);
    }
    if (gw_oidc_scope_has(scope, "school")) {
        json_t *schools = json_array(), *roles = json_array(), *kennungen = json_array();
        for (size_t i = 0; i < uc->n_schools; i++) {
            const Kreide__Identity__ClaimSchool *s = uc->schools[i];
            json_array_append_new(schools, school_claim(s));
            for (size_t r = 0; r < s->n_schulconnex_roles; r++)
                append_distinct(roles, s->schulconnex_roles[r]);
            append_distinct(kennungen, s->kennung);
        }
        json_object_set_new(o, "schools", schools);
        json_object_set_new(o, SCHULCONNEX_ROLE, roles);
        json_object_set_new(o, SCHULCONNEX_KENNUNG, kennungen);
    }
    return o;
}

json_t *gw_oidc_access_schools(const Kreide__Identity__UserClaims *uc)
{
    json_t *a = json_array();
    for (size_t i = 0; uc != NULL && i < uc->n_schools; i++) {
        const Kreide__Identity__ClaimSchool *s = uc->schools[i];
        if (s->school_id == NULL || s->school_id[0] == '\0')
            continue;
        json_array_append_new(a, json_pack("{s:s, s:o}", "school_id", s->school_id, "roles", string_array(s->roles, s->n_roles)));
    }
    return a;
}

void gw_oidc_access_token_claims(const Kreide__Identity__Grant *g, const char *issuer, const char *audience, const char *client_id,
                                 int64_t now, kr_jwt_claims *out)
{
    *out = (kr_jwt_claims){
        .iss = (char *)issuer,
        .sub = g->claims != NULL ? g->claims->sub : NULL,
        .aud = (char *)audience,
        .jti = g->access_jti,
        .scope = g->scope != NULL && g->scope[0] != '\0' ? g->scope : NULL,
        .sid = g->session_id != NULL && g->session_id[0] != '\0' ? g->session_id : NULL,
        .client_id = (char *)client_id,
        .iat = now,
        .exp = g->access_expires_at,
        .extra = json_pack("{s:o}", "schools", gw_oidc_access_schools(g->claims)),
    };
}

/* OpenID Connect Core section 3.1.3.6: the base64url of the left half of
 * the access token's hash, with the hash of the ID token's algorithm
 * (SHA-256 for both ES256 and RS256). */
static void at_hash(const char *access_token, char out[32])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(access_token, strlen(access_token), md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        abort();
    out[kr_oauth_b64url_encode(md, 16, out)] = '\0';
}

void gw_oidc_id_token_claims(const Kreide__Identity__Grant *g, const char *issuer, const char *client_id, const char *access_token,
                             int64_t now, kr_jwt_claims *out)
{
    json_t *extra = gw_oidc_person_claims(g->claims, g->scope);
    /* sub is a named member of kr_jwt_claims, never an extra one. */
    json_object_del(extra, "sub");
    json_object_set_new(extra, "azp", json_string(client_id));
    if (g->auth_time > 0)
        json_object_set_new(extra, "auth_time", json_integer(g->auth_time));
    if (g->nonce != NULL && g->nonce[0] != '\0')
        json_object_set_new(extra, "nonce", json_string(g->nonce));
    if (access_token != NULL) {
        char h[32];
        at_hash(access_token, h);
        json_object_set_new(extra, "at_hash", json_string(h));
    }
    *out = (kr_jwt_claims){
        .iss = (char *)issuer,
        .sub = g->claims->sub,
        .aud = (char *)client_id,
        .sid = g->session_id != NULL && g->session_id[0] != '\0' ? g->session_id : NULL,
        .iat = now,
        .exp = now + GW_OIDC_ID_TOKEN_TTL,
        .extra = extra,
    };
}

const char *gw_oidc_error_text(h2o_mem_pool_t *pool, const char *text)
{
    if (text == NULL)
        return "";
    size_t n = strnlen(text, GW_OIDC_ERROR_TEXT_MAX);
    char *out = h2o_mem_alloc_pool(pool, n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        /* RFC 6749 section 5.2: %x20-21 / %x23-5B / %x5D-7E; the same
         * keeps an RFC 6750 quoted-string free of escapes. */
        out[i] = ch == '"' ? '\'' : ch == '\\' ? '/' : ch < 0x20 || ch > 0x7e ? '?' : (char)ch;
    }
    out[n] = '\0';
    return out;
}
