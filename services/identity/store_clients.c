/* The SQL of OpenID Connect clients (identity.oidc_clients). Lists travel as
 * JSON arrays in both directions, so every statement stays parameterised. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "kr_log.h"
#include "kr_pg.h"

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define CLIENT_COLUMNS                                                                                                             \
    "c.id, c.name, c.type, array_to_json(c.redirect_uris)::text, array_to_json(c.grant_types)::text, "                             \
    "array_to_json(c.scopes)::text, c.id_token_alg, coalesce(c.school_id::text, ''), c.created_by, " TS(                           \
        "c.created_at") ", "                                                                                                       \
                        "c.disabled_at IS NOT NULL, coalesce(encode(c.secret_hash, 'hex'), ''), coalesce(s.carrier_id::text, "     \
                        "''), "                                                                                                    \
                        "c.first_party, array_to_json(c.post_logout_redirect_uris)::text"
#define CLIENT_FROM "identity.oidc_clients c LEFT JOIN identity.schools s ON s.id = c.school_id"

static ident_store_result failed(kr_rpc_ctx *ctx, const char *what, const char *err)
{
    const char *state = kr_pg_sqlstate(ctx->pg);
    if (strcmp(state, "23505") == 0)
        return IDENT_STORE_CONFLICT;
    if (strcmp(state, "23503") == 0)
        return IDENT_STORE_NOT_FOUND;
    kr_log(KR_LOG_ERROR, "database statement failed", "statement", what, "error", err, "sqlstate", state, NULL);
    return IDENT_STORE_ERROR;
}

/* A list as a JSON array text (malloc); NULL on out-of-memory. */
static char *json_list(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

/* A JSON array of strings (from array_to_json) into an arena list. */
static char **arena_list(kr_rpc_ctx *ctx, const char *text, size_t *n)
{
    *n = 0;
    json_t *a = json_loads(text, 0, NULL);
    size_t cap = json_is_array(a) ? json_array_size(a) : 0;
    char **out = kr_arena_alloc(ctx->arena, sizeof(char *) * (cap ? cap : 1));
    for (size_t i = 0; i < cap; i++) {
        json_t *v = json_array_get(a, i);
        if (json_is_string(v))
            out[(*n)++] = kr_arena_strdup(ctx->arena, json_string_value(v));
    }
    json_decref(a);
    return out;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void row_to_client(kr_rpc_ctx *ctx, const PGresult *r, int row, ident_stored_client *out)
{
    memset(out, 0, sizeof(*out));
    Kreide__Identity__OidcClient *c = &out->client;
    kreide__identity__oidc_client__init(c);
    c->client_id = kr_arena_strdup(ctx->arena, PQgetvalue(r, row, 0));
    c->name = kr_arena_strdup(ctx->arena, PQgetvalue(r, row, 1));
    c->type = strcmp(PQgetvalue(r, row, 2), "confidential") == 0 ? KREIDE__IDENTITY__CLIENT_TYPE__CONFIDENTIAL
                                                                 : KREIDE__IDENTITY__CLIENT_TYPE__PUBLIC;
    c->redirect_uris = arena_list(ctx, PQgetvalue(r, row, 3), &c->n_redirect_uris);
    c->grant_types = arena_list(ctx, PQgetvalue(r, row, 4), &c->n_grant_types);
    c->scopes = arena_list(ctx, PQgetvalue(r, row, 5), &c->n_scopes);
    c->id_token_alg = kr_arena_strdup(ctx->arena, PQgetvalue(r, row, 6));
    c->school_id = kr_arena_strdup(ctx->arena, PQgetvalue(r, row, 7));
    c->created_by = kr_arena_strdup(ctx->arena, PQgetvalue(r, row, 8));
    c->created_at = kr_arena_strdup(ctx->arena, PQgetvalue(r, row, 9));
    c->disabled = PQgetvalue(r, row, 10)[0] == 't';
    const char *hex = PQgetvalue(r, row, 11);
    out->has_secret = strlen(hex) == 2 * sizeof(out->secret_hash);
    for (size_t i = 0; out->has_secret && i < sizeof(out->secret_hash); i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            out->has_secret = false; /* never from PostgreSQL's encode(); refuse rather than guess */
        else
            out->secret_hash[i] = (unsigned char)(hi << 4 | lo);
    }
    out->carrier_id = kr_arena_strdup(ctx->arena, PQgetvalue(r, row, 12));
    c->first_party = PQgetvalue(r, row, 13)[0] == 't';
    c->post_logout_redirect_uris = arena_list(ctx, PQgetvalue(r, row, 14), &c->n_post_logout_redirect_uris);
}

ident_store_result ident_store_create_client(kr_rpc_ctx *ctx, const Kreide__Identity__OidcClient *c,
                                             const unsigned char secret_hash[32])
{
    char hex[65];
    static const char digits[] = "0123456789abcdef";
    if (secret_hash != NULL) {
        for (size_t i = 0; i < 32; i++) {
            hex[2 * i] = digits[secret_hash[i] >> 4];
            hex[2 * i + 1] = digits[secret_hash[i] & 15];
        }
        hex[64] = '\0';
    }
    char *uris = json_list(c->redirect_uris, c->n_redirect_uris);
    char *grants = json_list(c->grant_types, c->n_grant_types);
    char *scopes = json_list(c->scopes, c->n_scopes);
    char *logout_uris = json_list(c->post_logout_redirect_uris, c->n_post_logout_redirect_uris);
    if (uris == NULL || grants == NULL || scopes == NULL || logout_uris == NULL)
        abort();
    const char *params[] = {
        c->client_id,
        c->name,
        c->type == KREIDE__IDENTITY__CLIENT_TYPE__CONFIDENTIAL ? "confidential" : "public",
        secret_hash != NULL ? hex : NULL,
        uris,
        grants,
        scopes,
        c->id_token_alg,
        c->school_id[0] != '\0' ? c->school_id : NULL,
        c->created_by,
        c->first_party ? "true" : "false",
        logout_uris,
    };
    char err[256];
    PGresult *r = kr_pg_exec(ctx->pg,
                             "INSERT INTO identity.oidc_clients (id, name, type, secret_hash, redirect_uris, grant_types, scopes, "
                             "id_token_alg, school_id, created_by, first_party, post_logout_redirect_uris) "
                             "VALUES ($1, $2, $3, decode($4, 'hex'), "
                             "ARRAY(SELECT jsonb_array_elements_text($5::jsonb)), "
                             "ARRAY(SELECT jsonb_array_elements_text($6::jsonb)), "
                             "ARRAY(SELECT jsonb_array_elements_text($7::jsonb)), $8, $9, $10, $11::boolean, "
                             "ARRAY(SELECT jsonb_array_elements_text($12::jsonb)))",
                             12, params, err, sizeof(err));
    free(uris);
    free(logout_uris);
    free(grants);
    free(scopes);
    if (r == NULL)
        return failed(ctx, "insert oidc client", err);
    PQclear(r);
    return IDENT_STORE_OK;
}

ident_store_result ident_store_get_client(kr_rpc_ctx *ctx, const char *client_id, ident_stored_client *out)
{
    const char *params[] = {client_id};
    char err[256];
    PGresult *r = kr_pg_exec_prepared(ctx->pg, "clients: get", "SELECT " CLIENT_COLUMNS " FROM " CLIENT_FROM " WHERE c.id = $1", 1,
                                      params, err, sizeof(err));
    if (r == NULL)
        return failed(ctx, "select oidc client", err);
    ident_store_result res = IDENT_STORE_NOT_FOUND;
    if (PQntuples(r) == 1) {
        row_to_client(ctx, r, 0, out);
        res = IDENT_STORE_OK;
    }
    PQclear(r);
    return res;
}
