/* Bearer tokens -> the caller every envelope carries. */
#include <string.h>

#include "gateway.h"

static char *pool_str(h2o_req_t *req, const char *s)
{
    return s ? h2o_strdup(&req->pool, s, SIZE_MAX).base : "";
}

/* Copies a JSON array of strings into the pool. */
static char **pool_strings(h2o_req_t *req, json_t *arr, size_t *n)
{
    *n = 0;
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return NULL;
    char **out = h2o_mem_alloc_pool(&req->pool, sizeof(char *) * json_array_size(arr));
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v))
            out[(*n)++] = pool_str(req, json_string_value(v));
    }
    return out;
}

/* The space-separated scope claim as a list. */
static char **split_scopes(h2o_req_t *req, const char *scope, size_t *n)
{
    *n = 0;
    if (scope == NULL || *scope == '\0')
        return NULL;
    char *copy = pool_str(req, scope);
    size_t cap = 1;
    for (const char *p = copy; *p; p++)
        cap += *p == ' ';
    char **out = h2o_mem_alloc_pool(&req->pool, sizeof(char *) * cap);
    char *save = NULL;
    for (char *s = strtok_r(copy, " ", &save); s != NULL; s = strtok_r(NULL, " ", &save))
        out[(*n)++] = s;
    return out;
}

static void fill_caller(h2o_req_t *req, const kr_jwt_claims *c, Kreide__Caller *caller)
{
    caller->kind = KREIDE__CALLER__KIND__USER;
    caller->user_id = pool_str(req, c->sub);
    caller->session_id = pool_str(req, c->sid);
    caller->client_id = pool_str(req, c->client_id);
    caller->scopes = split_scopes(req, c->scope, &caller->n_scopes);
    if (c->extra == NULL)
        return;
    json_t *kind = json_object_get(c->extra, "kind");
    if (json_is_string(kind) && strcmp(json_string_value(kind), "service") == 0)
        caller->kind = KREIDE__CALLER__KIND__SERVICE;
    caller->roles = pool_strings(req, json_object_get(c->extra, "roles"), &caller->n_roles);
    json_t *schools = json_object_get(c->extra, "schools");
    if (json_is_array(schools) && json_array_size(schools) > 0) {
        caller->schools = h2o_mem_alloc_pool(&req->pool, sizeof(Kreide__CallerSchool *) * json_array_size(schools));
        size_t i;
        json_t *s;
        json_array_foreach(schools, i, s)
        {
            json_t *id = json_object_get(s, "school_id");
            if (!json_is_string(id))
                continue;
            Kreide__CallerSchool *cs = h2o_mem_alloc_pool(&req->pool, sizeof(*cs));
            kreide__caller_school__init(cs);
            cs->school_id = pool_str(req, json_string_value(id));
            cs->roles = pool_strings(req, json_object_get(s, "roles"), &cs->n_roles);
            caller->schools[caller->n_schools++] = cs;
        }
    }
}

gw_auth_result gw_auth_token(h2o_req_t *req, const char *token, size_t len, Kreide__Caller *caller, gw_token_info *info,
                             const char **why)
{
    if (gw.jwt_keys == NULL) {
        *why = "this server accepts no bearer tokens";
        return GW_AUTH_INVALID;
    }
    kr_jwt_verify_opts opts = {.issuer = gw.issuer, .audience = gw.audience, .leeway = 30};
    kr_jwt_claims claims = {0};
    int rv = kr_jwt_cache_verify(gw_thread_of(req)->jwt_cache, gw.jwt_keys, token, len, &opts, &claims);
    if (rv != KR_JWT_OK) {
        *why = kr_jwt_strerror(rv);
        return GW_AUTH_INVALID;
    }
    /* Only the gateway's own envelopes speak as the gateway. */
    if (claims.client_id != NULL && strcmp(claims.client_id, GW_OWN_CLIENT_ID) == 0) {
        kr_jwt_claims_clear(&claims);
        *why = "this token claims to be the gateway";
        return GW_AUTH_INVALID;
    }
    fill_caller(req, &claims, caller);
    if (info != NULL) {
        info->exp = claims.exp;
        info->jti = claims.jti != NULL ? pool_str(req, claims.jti) : NULL;
    }
    kr_jwt_claims_clear(&claims);
    return GW_AUTH_VALID;
}

gw_auth_result gw_auth_header_token(h2o_req_t *req, h2o_iovec_t *token, const char **why)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return GW_AUTH_NONE_GIVEN;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len < 7 || !h2o_lcstris(v.base, 7, H2O_STRLIT("bearer "))) {
        *why = "the Authorization header must be 'Bearer <token>'";
        return GW_AUTH_INVALID;
    }
    *token = h2o_iovec_init(v.base + 7, v.len - 7);
    while (token->len > 0 && *token->base == ' ') {
        token->base++;
        token->len--;
    }
    return GW_AUTH_VALID;
}

gw_auth_result gw_auth_caller(h2o_req_t *req, Kreide__Caller *caller, const char **why)
{
    h2o_iovec_t token;
    gw_auth_result a = gw_auth_header_token(req, &token, why);
    if (a != GW_AUTH_VALID)
        return a;
    return gw_auth_token(req, token.base, token.len, caller, NULL, why);
}
