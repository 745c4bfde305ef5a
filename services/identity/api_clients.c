/* RPC handlers of OpenID Connect clients: registration, reading, and the
 * client authentication the gateway's token endpoints ask for.
 *
 * Secrets: 32 random bytes as base64url, returned once by CreateClient and
 * stored as SHA-256. A secret of that entropy cannot be guessed, so a slow
 * password hash would only cost time on every token request; the comparison
 * is constant-time all the same. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "identity.h"
#include "kr_id.h"
#include "kr_log.h"
#include "kr_oauth.h"

static const char *const grant_names[] = {"authorization_code", "refresh_token", "client_credentials"};

bool ident_client_id_valid(const char *s)
{
    if (s == NULL || strlen(s) != KR_OAUTH_B64URL_LEN(IDENT_CLIENT_ID_BYTES))
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return false;
    return true;
}

bool ident_list_has(char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

bool ident_grant_types_valid(char *const *grants, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool known = false;
        for (size_t k = 0; k < sizeof(grant_names) / sizeof(grant_names[0]); k++)
            known = known || strcmp(grants[i], grant_names[k]) == 0;
        if (!known || ident_list_has(grants, i, grants[i]))
            return false;
    }
    return true;
}

static void sha256(const char *s, unsigned char out[32])
{
    unsigned int len = 0;
    if (EVP_Digest(s, strlen(s), out, &len, EVP_sha256(), NULL) != 1 || len != 32)
        memset(out, 0, 32); /* never matches a stored hash of a real secret */
}

static int invalid(kr_rpc_ctx *ctx, const char *code, const char *field, const char *message)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, code, field, "%s", message);
}

static int database_failure(kr_rpc_ctx *ctx)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__UNAVAILABLE, "identity.database", NULL, "the directory is temporarily unavailable");
}

/* Checks a registration's lists and fills the defaults into `c`. */
static int check_registration(kr_rpc_ctx *ctx, const Kreide__Identity__CreateClientRequest *in, Kreide__Identity__OidcClient *c)
{
    long len = ident_text_length(in->name);
    if (len < 1 || len > 200)
        return invalid(ctx, "identity.invalid_name", "name", "name must be 1 to 200 characters of text");
    if (in->type != KREIDE__IDENTITY__CLIENT_TYPE__CONFIDENTIAL && in->type != KREIDE__IDENTITY__CLIENT_TYPE__PUBLIC)
        return invalid(ctx, "identity.invalid_client_type", "type", "type must be CONFIDENTIAL or PUBLIC");
    c->type = in->type;

    if (in->n_grant_types > sizeof(grant_names) / sizeof(grant_names[0]) ||
        !ident_grant_types_valid(in->grant_types, in->n_grant_types))
        return invalid(ctx, "identity.invalid_grant_type", "grant_types",
                       "grant_types may hold authorization_code, refresh_token and client_credentials, each once");
    static char *default_grants[] = {"authorization_code"};
    c->grant_types = in->n_grant_types > 0 ? in->grant_types : default_grants;
    c->n_grant_types = in->n_grant_types > 0 ? in->n_grant_types : 1;
    bool code_flow = ident_list_has(c->grant_types, c->n_grant_types, "authorization_code");
    if (ident_list_has(c->grant_types, c->n_grant_types, "refresh_token") && !code_flow)
        return invalid(ctx, "identity.invalid_grant_type", "grant_types", "refresh_token needs authorization_code");
    if (in->type == KREIDE__IDENTITY__CLIENT_TYPE__PUBLIC && ident_list_has(c->grant_types, c->n_grant_types, "client_credentials"))
        return invalid(ctx, "identity.invalid_grant_type", "grant_types",
                       "a public client has no secret and cannot use client_credentials");

    if (in->n_redirect_uris > IDENT_CLIENT_MAX_URIS)
        return invalid(ctx, "identity.invalid_redirect_uri", "redirect_uris", "at most 16 redirect URIs");
    if (code_flow && in->n_redirect_uris == 0)
        return invalid(ctx, "identity.invalid_redirect_uri", "redirect_uris", "authorization_code needs a redirect URI");
    for (size_t i = 0; i < in->n_redirect_uris; i++) {
        const char *u = in->redirect_uris[i];
        int rv = kr_oauth_redirect_uri_check(u, strlen(u));
        if (rv != KR_OAUTH_OK)
            return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_redirect_uri", "redirect_uris",
                               "redirect_uris[%zu]: %s", i, kr_oauth_strerror(rv));
        if (ident_list_has(in->redirect_uris, i, u))
            return invalid(ctx, "identity.invalid_redirect_uri", "redirect_uris", "a redirect URI is listed twice");
    }
    c->redirect_uris = in->redirect_uris;
    c->n_redirect_uris = in->n_redirect_uris;

    if (in->n_scopes > IDENT_CLIENT_MAX_SCOPES)
        return invalid(ctx, "identity.invalid_scope", "scopes", "at most 32 scopes");
    for (size_t i = 0; i < in->n_scopes; i++) {
        if (!kr_oauth_scope_token_valid(in->scopes[i], strlen(in->scopes[i])) || ident_list_has(in->scopes, i, in->scopes[i]))
            return invalid(ctx, "identity.invalid_scope", "scopes",
                           "each scope is 1 to 64 printable ASCII characters without space, '\"' or '\\', listed once");
    }
    static char *default_scopes[] = {"openid", "profile"};
    c->scopes = in->n_scopes > 0 ? in->scopes : code_flow ? default_scopes : NULL;
    c->n_scopes = in->n_scopes > 0 ? in->n_scopes : code_flow ? 2 : 0;

    /* Where RP-Initiated Logout may return to: the redirect URI rules. */
    if (in->n_post_logout_redirect_uris > IDENT_CLIENT_MAX_URIS)
        return invalid(ctx, "identity.invalid_redirect_uri", "post_logout_redirect_uris", "at most 16 post-logout redirect URIs");
    for (size_t i = 0; i < in->n_post_logout_redirect_uris; i++) {
        const char *u = in->post_logout_redirect_uris[i];
        int rv = kr_oauth_redirect_uri_check(u, strlen(u));
        if (rv != KR_OAUTH_OK)
            return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_redirect_uri", "post_logout_redirect_uris",
                               "post_logout_redirect_uris[%zu]: %s", i, kr_oauth_strerror(rv));
        if (ident_list_has(in->post_logout_redirect_uris, i, u))
            return invalid(ctx, "identity.invalid_redirect_uri", "post_logout_redirect_uris",
                           "a post-logout redirect URI is listed twice");
    }
    c->post_logout_redirect_uris = in->post_logout_redirect_uris;
    c->n_post_logout_redirect_uris = in->n_post_logout_redirect_uris;
    c->first_party = in->first_party;

    if (in->id_token_alg[0] != '\0' && strcmp(in->id_token_alg, "ES256") != 0 && strcmp(in->id_token_alg, "RS256") != 0)
        return invalid(ctx, "identity.invalid_alg", "id_token_alg", "id_token_alg must be ES256 or RS256");
    c->id_token_alg = in->id_token_alg[0] != '\0' ? in->id_token_alg : "ES256";
    return 0;
}

static int create_client(kr_rpc_ctx *ctx, const Kreide__Identity__CreateClientRequest *in, Kreide__Identity__CreateClientReply *out)
{
    ident_school_ref school = {0};
    bool of_school = in->school_id[0] != '\0';
    if (of_school) {
        if (!kr_uuid_valid(in->school_id))
            return invalid(ctx, "identity.invalid_id", "school_id", "school_id must be a UUID");
        ident_store_result r = ident_store_school_ref(ctx, in->school_id, &school);
        if (r == IDENT_STORE_NOT_FOUND)
            return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", "school_id", "no such school");
        if (r != IDENT_STORE_OK)
            return database_failure(ctx);
    }
    if (!ident_may_create_client(ctx->caller, of_school ? &school : NULL))
        return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "identity.forbidden", NULL, "%s",
                           of_school ? "only operators and the school's carrier admins may register its clients"
                                     : "only operators may register installation-wide clients");

    /* A first-party client skips the consent page: the installation's
     * operators decide that, not a carrier for its schools. */
    if (in->first_party && !ident_is_operator(ctx->caller))
        return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "identity.forbidden", "first_party",
                           "only operators may register first-party clients");
    Kreide__Identity__OidcClient c = KREIDE__IDENTITY__OIDC_CLIENT__INIT;
    if (check_registration(ctx, in, &c) != 0)
        return -1;
    char *id = kr_arena_alloc(ctx->arena, KR_OAUTH_B64URL_LEN(IDENT_CLIENT_ID_BYTES) + 1);
    kr_oauth_random_b64url(id, IDENT_CLIENT_ID_BYTES);
    c.client_id = id;
    c.name = in->name;
    c.school_id = of_school ? (char *)school.id : "";
    c.created_by = ctx->caller->user_id[0] != '\0' ? ctx->caller->user_id : ctx->caller->client_id;
    char *secret = NULL;
    unsigned char hash[32];
    if (c.type == KREIDE__IDENTITY__CLIENT_TYPE__CONFIDENTIAL) {
        secret = kr_arena_alloc(ctx->arena, KR_OAUTH_B64URL_LEN(IDENT_CLIENT_SECRET_BYTES) + 1);
        kr_oauth_random_b64url(secret, IDENT_CLIENT_SECRET_BYTES);
        sha256(secret, hash);
    }
    ident_store_result r = ident_store_create_client(ctx, &c, secret != NULL ? hash : NULL);
    if (r == IDENT_STORE_NOT_FOUND)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", "school_id", "no such school");
    if (r != IDENT_STORE_OK) /* a clash of 128 random bits is not worth a retry */
        return database_failure(ctx);
    /* Read back for the stored defaults and the creation time. */
    ident_stored_client stored;
    if (ident_store_get_client(ctx, id, &stored) != IDENT_STORE_OK)
        return database_failure(ctx);
    const Kreide__Identity__OidcClient *s = &stored.client;
    out->client_id = s->client_id;
    out->name = s->name;
    out->type = s->type;
    out->redirect_uris = s->redirect_uris;
    out->n_redirect_uris = s->n_redirect_uris;
    out->grant_types = s->grant_types;
    out->n_grant_types = s->n_grant_types;
    out->scopes = s->scopes;
    out->n_scopes = s->n_scopes;
    out->id_token_alg = s->id_token_alg;
    out->school_id = s->school_id;
    out->created_by = s->created_by;
    out->created_at = s->created_at;
    out->disabled = s->disabled;
    out->first_party = s->first_party;
    out->post_logout_redirect_uris = s->post_logout_redirect_uris;
    out->n_post_logout_redirect_uris = s->n_post_logout_redirect_uris;
    out->client_secret = secret != NULL ? secret : "";
    kr_log(KR_LOG_INFO, "oidc client registered", "client_id", id, "school_id", c.school_id, "by", c.created_by, NULL);
    return 0;
}

static int get_client(kr_rpc_ctx *ctx, const Kreide__Identity__GetClientRequest *in, Kreide__Identity__OidcClient *out)
{
    if (!ident_client_id_valid(in->client_id))
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", "client_id", "no such client");
    ident_stored_client stored = {0};
    ident_store_result r = ident_store_get_client(ctx, in->client_id, &stored);
    if (r != IDENT_STORE_OK && r != IDENT_STORE_NOT_FOUND)
        return database_failure(ctx);
    ident_school_ref school = {.id = stored.client.school_id, .carrier_id = stored.carrier_id};
    /* A client the caller may not read does not exist for the caller. */
    if (r == IDENT_STORE_NOT_FOUND ||
        !ident_may_read_client(ctx->caller, stored.client.school_id[0] != '\0' ? &school : NULL, stored.client.client_id))
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", "client_id", "no such client");
    *out = stored.client;
    return 0;
}

static int authenticate_client(kr_rpc_ctx *ctx, const Kreide__Identity__AuthenticateClientRequest *in,
                               Kreide__Identity__OidcClient *out)
{
    if (!ident_is_gateway(ctx->caller))
        return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "identity.forbidden", NULL,
                           "only the gateway authenticates clients");
    unsigned char given[32];
    sha256(in->client_secret, given);
    ident_stored_client stored = {0};
    ident_store_result r = ident_store_get_client(ctx, ident_client_id_valid(in->client_id) ? in->client_id : "-", &stored);
    if (r != IDENT_STORE_OK && r != IDENT_STORE_NOT_FOUND)
        return database_failure(ctx);
    bool ok;
    if (r == IDENT_STORE_NOT_FOUND) {
        /* Same work as for a known client, so timing tells nothing. */
        unsigned char dummy[32] = {0};
        (void)CRYPTO_memcmp(dummy, given, sizeof(given));
        ok = false;
    } else if (stored.client.type == KREIDE__IDENTITY__CLIENT_TYPE__CONFIDENTIAL) {
        ok = stored.has_secret && in->client_secret[0] != '\0' && CRYPTO_memcmp(stored.secret_hash, given, sizeof(given)) == 0;
    } else {
        ok = in->client_secret[0] == '\0'; /* a public client: method "none" */
    }
    if (!ok || stored.client.disabled)
        return kr_rpc_fail(ctx, KREIDE__STATUS__UNAUTHENTICATED, "identity.invalid_client", NULL, "client authentication failed");
    *out = stored.client;
    return 0;
}

/* The generic thunks api.c's method table points at (KR_RPC_HANDLER's are
 * static to their file). */
#define IDENT_HANDLER(FN, IN_T, OUT_T)                                                                                             \
    int ident_##FN##_rpc(kr_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage *out)                                       \
    {                                                                                                                              \
        return FN(ctx, (const IN_T *)in, (OUT_T *)out);                                                                            \
    }
IDENT_HANDLER(create_client, Kreide__Identity__CreateClientRequest, Kreide__Identity__CreateClientReply)
IDENT_HANDLER(get_client, Kreide__Identity__GetClientRequest, Kreide__Identity__OidcClient)
IDENT_HANDLER(authenticate_client, Kreide__Identity__AuthenticateClientRequest, Kreide__Identity__OidcClient)
