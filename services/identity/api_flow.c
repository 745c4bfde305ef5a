/* RPC handlers of the OpenID Connect authorization-code flow (docs/oidc.md,
 * "Identity's side of the flow"): SSO sessions, authorization codes,
 * grants with rotating refresh tokens, and a person's claims. Only the
 * gateway calls them (a SERVICE caller "gateway" in a sealed envelope); it
 * authenticates clients before it asks, and identity checks everything that
 * decides what is issued again itself.
 *
 * Session tokens, codes and refresh tokens are secrets of the browser or the
 * client: they are never logged, only the ids of what they stand for
 * (session_id, grant_id, jti, client_id, user_id). */
#include <string.h>
#include <time.h>

#include "identity.h"
#include "kr_id.h"
#include "kr_log.h"
#include "kr_oauth.h"
#include "kr_redis.h"

/* Housekeeping runs at most this often per worker, deleting at most
 * CLEANUP_LIMIT rows of each kind per run. */
#define CLEANUP_EVERY_S 60
#define CLEANUP_LIMIT 500
/* Revocations Redis missed are told again at most this often per worker. */
#define PENDING_EVERY_S 5

static const ident_app *app_of(kr_rpc_ctx *ctx)
{
    return ctx->app;
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

static int gateway_only(kr_rpc_ctx *ctx)
{
    if (ident_is_gateway(ctx->caller))
        return 0;
    return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "identity.forbidden", NULL,
                       "only the gateway takes part in the sign-in flow");
}

static int database_failure(kr_rpc_ctx *ctx)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__UNAVAILABLE, "identity.database", NULL, "the directory is temporarily unavailable");
}

static int sessions_unavailable(kr_rpc_ctx *ctx)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__UNAVAILABLE, "identity.sessions_unavailable", NULL,
                       "sign-in is unavailable for a moment; try again shortly");
}

static int login_required(kr_rpc_ctx *ctx)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "oidc.login_required", "session_token",
                       "no live sign-in session: it is unknown, has expired or was ended");
}

static int invalid_request(kr_rpc_ctx *ctx, const char *field, const char *message)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "oidc.invalid_request", field, "%s", message);
}

static int invalid_scope(kr_rpc_ctx *ctx, const char *message)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "oidc.invalid_scope", "scope", "%s", message);
}

static int invalid_grant(kr_rpc_ctx *ctx, const char *field, const char *why)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "oidc.invalid_grant", field, "%s", why);
}

static int unauthorized_refresh(kr_rpc_ctx *ctx)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "oidc.unauthorized_client", "client_id",
                       "the client is not registered for the refresh_token grant");
}

static int invalid_client(kr_rpc_ctx *ctx)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "oidc.invalid_client", "client_id",
                       "no such client, or it is disabled");
}

static void tell_redis_pending(kr_rpc_ctx *ctx);

/* Deletes what expired, at most once a minute per worker and in bounded
 * batches, so no request waits long for it and no job is needed. Codes and
 * tokens presented after their expiry are deleted on the spot as well. */
static void housekeeping(kr_rpc_ctx *ctx)
{
    tell_redis_pending(ctx);
    static __thread int64_t last;
    int64_t now = now_s();
    if (now - last < CLEANUP_EVERY_S)
        return;
    last = now;
    if (ident_store_flow_cleanup(ctx, CLEANUP_LIMIT) != IDENT_STORE_OK)
        kr_log(KR_LOG_WARN, "flow cleanup failed; it is retried in a minute", NULL);
}

/* The calling worker's Redis client; NULL without Redis. */
static kr_redis *redis_of(kr_rpc_ctx *ctx)
{
    return ident_redis_pool_get(app_of(ctx)->redis);
}

/* A registered client that is enabled, or -1 after kr_rpc_fail. */
static int load_client(kr_rpc_ctx *ctx, const char *client_id, ident_stored_client *out)
{
    if (!ident_client_id_valid(client_id))
        return invalid_client(ctx);
    ident_store_result r = ident_store_get_client(ctx, client_id, out);
    if (r == IDENT_STORE_NOT_FOUND || (r == IDENT_STORE_OK && out->client.disabled))
        return invalid_client(ctx);
    if (r != IDENT_STORE_OK)
        return database_failure(ctx);
    return 0;
}

static bool client_has_grant(const ident_stored_client *c, const char *grant)
{
    return ident_list_has(c->client.grant_types, c->client.n_grant_types, grant);
}

/* Revokes access tokens in Redis as the gateway's /oidc/revoke does. A
 * failure is logged: the token then lives until its near expiry, and the
 * refresh tokens of its grant are revoked in PostgreSQL regardless. */
static void revoke_access_tokens(kr_rpc_ctx *ctx, const ident_live_jti *jtis, size_t n)
{
    kr_redis *r = n > 0 ? redis_of(ctx) : NULL;
    int64_t now = now_s();
    for (size_t i = 0; i < n; i++) {
        if (r == NULL || ident_revoke_jti(r, jtis[i].jti, jtis[i].expires_at + IDENT_REVOKE_LEEWAY_S, now) != IDENT_REDIS_OK)
            kr_log(KR_LOG_ERROR, "access token not revoked in redis", "jti", jtis[i].jti, NULL);
        else
            kr_log(KR_LOG_INFO, "access token revoked", "jti", jtis[i].jti, NULL);
    }
}

/* Marks a family revoked in Redis and revokes the access tokens its
 * refreshes issued; PostgreSQL has recorded the revocation already. */
static void revoke_redis_family(kr_rpc_ctx *ctx, const char *grant_id, const char *reason)
{
    ident_live_jti *jtis = NULL;
    size_t n = 0;
    kr_redis *r = redis_of(ctx);
    if (r == NULL || ident_family_revoke(r, ctx->arena, grant_id, reason, &jtis, &n) != IDENT_REDIS_OK) {
        /* The gateway rotates a family in Redis without asking PostgreSQL:
         * Redis must hear of it, so it is told again until it has. */
        kr_log(KR_LOG_ERROR, "refresh family not marked revoked in redis; told again shortly", "grant_id", grant_id, NULL);
        if (ident_store_redis_pending(ctx, grant_id, true) != IDENT_STORE_OK)
            kr_log(KR_LOG_ERROR, "revocation not queued for redis either", "grant_id", grant_id, NULL);
    }
    revoke_access_tokens(ctx, jtis, n);
}

/* Tells Redis of revocations it missed (revoke_redis_family), at most every
 * PENDING_EVERY_S per worker. */
static void tell_redis_pending(kr_rpc_ctx *ctx)
{
    static __thread int64_t last;
    int64_t now = now_s();
    kr_redis *r = redis_of(ctx);
    if (now - last < PENDING_EVERY_S || r == NULL)
        return;
    last = now;
    const char **ids, **reasons;
    size_t n = 0;
    if (ident_store_list_redis_pending(ctx, CLEANUP_LIMIT, &ids, &reasons, &n) != IDENT_STORE_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        ident_live_jti *jtis = NULL;
        size_t nj = 0;
        if (ident_family_revoke(r, ctx->arena, ids[i], reasons[i], &jtis, &nj) != IDENT_REDIS_OK)
            return;
        revoke_access_tokens(ctx, jtis, nj);
        if (ident_store_redis_pending(ctx, ids[i], false) == IDENT_STORE_OK)
            kr_log(KR_LOG_INFO, "refresh family revoked in redis after all", "grant_id", ids[i], NULL);
    }
}

/* Lets the family carry the person's claims for the gateway's fast
 * rotation (identity.h, IDENT_CLAIMS_VERSION_KEY). Best effort: without
 * them every refresh comes here. */
static void carry_claims(kr_rpc_ctx *ctx, kr_redis *r, const char *grant_id, const char *token_key,
                         const Kreide__Identity__UserClaims *claims, const char *version, int64_t next_midnight)
{
    int64_t until = now_s() + IDENT_CLAIMS_MAX_AGE_S;
    if (next_midnight > 0 && next_midnight < until)
        until = next_midnight;
    size_t len = kreide__identity__user_claims__get_packed_size(claims);
    uint8_t *buf = kr_arena_alloc(ctx->arena, len ? len : 1);
    kreide__identity__user_claims__pack(claims, buf);
    if (ident_family_claims(r, grant_id, token_key, buf, len, version, until) != IDENT_REDIS_OK)
        kr_log(KR_LOG_WARN, "claims not carried by the refresh family; its refreshes ask identity", "grant_id", grant_id, NULL);
}

/* ---------------------------------------------------------------- sessions */

static void session_reply(kr_rpc_ctx *ctx, const ident_session *s, Kreide__Identity__SessionInfo *out)
{
    out->session_id = (char *)s->session_id;
    out->user_id = (char *)s->user_id;
    out->username = (char *)s->username;
    out->auth_time = s->auth_time;
    out->expires_at = s->expires_at;
    /* "pwd" and maybe "otp" (RFC 8176), stored space-separated. */
    out->amr = kr_arena_alloc(ctx->arena, sizeof(char *) * 2);
    out->n_amr = 0;
    const char *p = s->amr != NULL ? s->amr : "";
    while (*p != '\0' && out->n_amr < 2) {
        const char *end = strchr(p, ' ');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len > 0)
            out->amr[out->n_amr++] = kr_arena_strndup(ctx->arena, p, len);
        p += len + (end != NULL);
    }
}

/* The live session of a cookie value; -1 after kr_rpc_fail otherwise. */
static int find_session(kr_rpc_ctx *ctx, const char *token, ident_session *out)
{
    if (!ident_flow_token_valid(token))
        return login_required(ctx);
    kr_redis *r = redis_of(ctx);
    if (r == NULL)
        return sessions_unavailable(ctx);
    char key[IDENT_SSO_KEY_LEN + 1];
    ident_session_key(token, key);
    switch (ident_session_get(r, ctx->arena, key, now_s(), out)) {
    case IDENT_REDIS_OK:
        return 0;
    case IDENT_REDIS_NOT_FOUND:
        return login_required(ctx);
    default:
        return sessions_unavailable(ctx);
    }
}

static int start_session(kr_rpc_ctx *ctx, const Kreide__Identity__StartSessionRequest *in, Kreide__Identity__SessionInfo *out)
{
    if (gateway_only(ctx) != 0)
        return -1;
    ident_signed_in who = {0};
    if (ident_sign_in(ctx, in->username, in->password, in->totp, in->client_address, &who) != 0)
        return -1;
    kr_redis *r = redis_of(ctx);
    if (r == NULL)
        return sessions_unavailable(ctx);
    char *token = kr_arena_alloc(ctx->arena, IDENT_FLOW_TOKEN_LEN + 1);
    ident_flow_token_new(token);
    char key[IDENT_SSO_KEY_LEN + 1];
    ident_session_key(token, key);
    kr_uuid_str sid;
    kr_uuid7_new(&sid);
    int64_t ttl = app_of(ctx)->sso_session_ttl_s;
    ident_session s = {
        .session_id = kr_arena_strdup(ctx->arena, sid.s),
        .user_id = who.user_id,
        .username = who.username,
        .auth_time = who.auth_time,
        .expires_at = who.auth_time + ttl,
        .amr = who.with_totp ? "pwd otp" : "pwd",
    };
    if (ident_session_put(r, key, &s, ttl) != IDENT_REDIS_OK)
        return sessions_unavailable(ctx);
    session_reply(ctx, &s, out);
    out->session_token = token;
    kr_log(KR_LOG_INFO, "sso session started", "user_id", who.user_id, "session_id", s.session_id, "amr", s.amr, NULL);
    return 0;
}

static int get_session(kr_rpc_ctx *ctx, const Kreide__Identity__GetSessionRequest *in, Kreide__Identity__SessionInfo *out)
{
    if (gateway_only(ctx) != 0)
        return -1;
    ident_session s = {0};
    if (find_session(ctx, in->session_token, &s) != 0)
        return -1;
    session_reply(ctx, &s, out);
    return 0;
}

static int end_session(kr_rpc_ctx *ctx, const Kreide__Identity__GetSessionRequest *in, Kreide__Empty *out)
{
    (void)out;
    if (gateway_only(ctx) != 0)
        return -1;
    if (!ident_flow_token_valid(in->session_token))
        return 0; /* unknown sessions are not an error */
    kr_redis *r = redis_of(ctx);
    if (r == NULL)
        return sessions_unavailable(ctx);
    char key[IDENT_SSO_KEY_LEN + 1];
    ident_session_key(in->session_token, key);
    ident_session s = {0};
    ident_redis_result found = ident_session_get(r, ctx->arena, key, now_s(), &s);
    if (ident_session_delete(r, key) != IDENT_REDIS_OK)
        return sessions_unavailable(ctx);
    if (found == IDENT_REDIS_OK)
        kr_log(KR_LOG_INFO, "sso session ended", "user_id", s.user_id, "session_id", s.session_id, NULL);
    return 0;
}

/* ------------------------------------------------------------------- codes */

/* The PKCE part of an authorization request: S256 only (RFC 7636 section
 * 4.2; `plain` is refused), required of public clients. */
static int check_pkce(kr_rpc_ctx *ctx, const Kreide__Identity__IssueAuthCodeRequest *in, const ident_stored_client *c)
{
    bool has_method = in->code_challenge_method[0] != '\0';
    bool has_challenge = in->code_challenge[0] != '\0';
    if (has_method && strcmp(in->code_challenge_method, "S256") != 0)
        return invalid_request(ctx, "code_challenge_method", "code_challenge_method must be S256");
    if (has_method && !has_challenge)
        return invalid_request(ctx, "code_challenge", "code_challenge_method without a code_challenge");
    if (has_challenge && !has_method)
        return invalid_request(ctx, "code_challenge_method", "code_challenge needs code_challenge_method S256");
    if (has_challenge && !kr_oauth_pkce_challenge_valid(in->code_challenge, strlen(in->code_challenge)))
        return invalid_request(ctx, "code_challenge", "code_challenge must be the 43-character BASE64URL of a SHA-256");
    if (!has_challenge && c->client.type == KREIDE__IDENTITY__CLIENT_TYPE__PUBLIC)
        return invalid_request(ctx, "code_challenge", "a public client must use PKCE with S256");
    return 0;
}

/* The requested scopes, checked against the client's registration.
 * offline_access is dropped for a client without the refresh_token grant,
 * so the granted scope says what the client really gets. */
static int check_scope(kr_rpc_ctx *ctx, const char *text, const ident_stored_client *c, ident_scopes *out)
{
    if (ident_scopes_parse(ctx->arena, text, out) != 0)
        return invalid_scope(ctx, "scope must be space-separated scope tokens, at most 32");
    if (!ident_scopes_has(out, "openid"))
        return invalid_scope(ctx, "scope must contain openid");
    if (!ident_scopes_within(out, c->client.scopes, c->client.n_scopes))
        return invalid_scope(ctx, "scope asks for more than the client is registered for");
    if (!client_has_grant(c, "refresh_token"))
        ident_scopes_remove(out, "offline_access");
    return 0;
}

static int issue_auth_code(kr_rpc_ctx *ctx, const Kreide__Identity__IssueAuthCodeRequest *in, Kreide__Identity__AuthCode *out)
{
    if (gateway_only(ctx) != 0)
        return -1;
    housekeeping(ctx);
    ident_session session = {0};
    if (find_session(ctx, in->session_token, &session) != 0)
        return -1;
    ident_stored_client client = {0};
    if (load_client(ctx, in->client_id, &client) != 0)
        return -1;
    if (!client_has_grant(&client, "authorization_code"))
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "oidc.unauthorized_client", "client_id",
                           "the client is not registered for the authorization_code grant");
    if (kr_oauth_redirect_uri_match(in->redirect_uri, strlen(in->redirect_uri), (const char *const *)client.client.redirect_uris,
                                    client.client.n_redirect_uris) < 0)
        return invalid_request(ctx, "redirect_uri", "redirect_uri is not registered for this client");
    ident_scopes scopes = {0};
    if (check_scope(ctx, in->scope, &client, &scopes) != 0 || check_pkce(ctx, in, &client) != 0)
        return -1;
    if (strlen(in->nonce) > IDENT_NONCE_MAX || ident_text_length(in->nonce) < 0)
        return invalid_request(ctx, "nonce", "nonce must be text of at most 512 bytes");

    /* A school's client signs in people of that school only. */
    const char *client_school = client.client.school_id != NULL ? client.client.school_id : "";
    if (client_school[0] != '\0') {
        unsigned roles = 0;
        if (ident_store_roles_at(ctx, client_school, session.user_id, &roles) != IDENT_STORE_OK)
            return database_failure(ctx);
        if (roles == 0)
            return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "oidc.access_denied", NULL,
                               "this client is for the people of its school only");
    }
    if (!client.client.first_party) {
        bool covers = false;
        if (ident_store_consent_covers(ctx, session.user_id, client.client.client_id, &scopes, &covers) != IDENT_STORE_OK)
            return database_failure(ctx);
        if (!covers && !in->consent_given)
            return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "oidc.consent_required", NULL,
                               "the person has not allowed these scopes to this client yet");
        if (!covers) {
            ident_store_result r = ident_store_consent_merge(ctx, session.user_id, client.client.client_id, &scopes);
            if (r == IDENT_STORE_NOT_FOUND)
                return login_required(ctx);
            if (r != IDENT_STORE_OK)
                return database_failure(ctx);
            kr_log(KR_LOG_INFO, "consent recorded", "user_id", session.user_id, "client_id", client.client.client_id, NULL);
        }
    }

    char *code = kr_arena_alloc(ctx->arena, IDENT_FLOW_TOKEN_LEN + 1);
    ident_flow_token_new(code);
    uint8_t hash[32];
    ident_flow_token_hash(code, hash);
    int64_t ttl = app_of(ctx)->auth_code_ttl_s;
    ident_authcode_row row = {
        .client_id = client.client.client_id,
        .user_id = session.user_id,
        .redirect_uri = in->redirect_uri,
        .scope = ident_scopes_join(ctx->arena, &scopes),
        .nonce = in->nonce,
        .code_challenge = in->code_challenge,
        .session_id = session.session_id,
        .auth_time = session.auth_time,
        .expires_at = now_s() + ttl,
    };
    ident_store_result r = ident_store_insert_code(ctx, hash, &row);
    if (r == IDENT_STORE_NOT_FOUND)
        return login_required(ctx); /* the person was deleted meanwhile */
    if (r != IDENT_STORE_OK)
        return database_failure(ctx);
    out->code = code;
    out->expires_in = ttl;
    kr_log(KR_LOG_INFO, "authorization code issued", "client_id", row.client_id, "user_id", row.user_id, "session_id",
           row.session_id, NULL);
    return 0;
}

/* ------------------------------------------------------------------ grants */

/* The answer of a grant: the person's claims for `scope` (names with
 * profile; schools always, for the access token's `schools`), and what was
 * issued. */
static int grant_reply(kr_rpc_ctx *ctx, const char *user_id, const char *scope, const ident_issued *issued,
                       const ident_stored_client *c, Kreide__Identity__Grant *out)
{
    ident_scopes granted = {0};
    if (ident_scopes_parse(ctx->arena, scope, &granted) != 0)
        granted.n = 0; /* stored scopes were checked when they were stored */
    /* The claims counter before the claims, so carried claims are never
     * marked newer than they are. */
    kr_redis *r = issued->refresh_token != NULL ? redis_of(ctx) : NULL;
    const char *version = NULL;
    if (r != NULL && ident_claims_version(r, ctx->arena, &version) != IDENT_REDIS_OK)
        version = NULL;
    Kreide__Identity__UserClaims *claims = kr_arena_alloc(ctx->arena, sizeof(*claims));
    kreide__identity__user_claims__init(claims);
    ident_grant_state st = {0};
    ident_store_result res = ident_store_grant_claims(ctx, issued->grant_id, c->client.client_id, user_id,
                                                      ident_scopes_has(&granted, "profile"), claims, &st);
    if (res == IDENT_STORE_NOT_FOUND)
        return invalid_grant(ctx, NULL, "the person no longer exists");
    if (res != IDENT_STORE_OK)
        return database_failure(ctx);
    if (version != NULL) {
        uint8_t hash[32];
        char key[IDENT_RT_TOKEN_KEY_LEN + 1];
        ident_flow_token_hash(issued->refresh_token, hash);
        ident_rt_token_key(hash, key);
        carry_claims(ctx, r, issued->grant_id, key, claims, version, st.next_midnight);
    }
    int64_t now = now_s();
    out->claims = claims;
    out->scope = (char *)scope;
    out->access_jti = (char *)issued->access_jti;
    out->access_expires_at = issued->access_expires_at;
    if (issued->refresh_token != NULL) {
        out->refresh_token = (char *)issued->refresh_token;
        out->refresh_expires_in = issued->refresh_expires_at - now;
    }
    out->id_token_alg = c->client.id_token_alg;
    return 0;
}

static int redeem_auth_code(kr_rpc_ctx *ctx, const Kreide__Identity__RedeemAuthCodeRequest *in, Kreide__Identity__Grant *out)
{
    if (gateway_only(ctx) != 0)
        return -1;
    housekeeping(ctx);
    ident_stored_client client = {0};
    if (load_client(ctx, in->client_id, &client) != 0)
        return -1;
    if (!ident_flow_token_valid(in->code))
        return invalid_grant(ctx, "code", ident_authcode_verdict_text(IDENT_AUTHCODE_UNKNOWN));
    uint8_t hash[32];
    ident_flow_token_hash(in->code, hash);
    const ident_app *app = app_of(ctx);
    int64_t refresh_ttl = client_has_grant(&client, "refresh_token") ? app->refresh_token_ttl_s : 0;
    ident_redeemed red = {0};
    if (ident_store_redeem_code(ctx, hash, client.client.client_id, in->redirect_uri, in->code_verifier, now_s(),
                                app->access_token_ttl_s, refresh_ttl, &red) != IDENT_STORE_OK)
        return database_failure(ctx);
    switch (red.verdict) {
    case IDENT_AUTHCODE_OK:
        break;
    case IDENT_AUTHCODE_REPLAYED:
        kr_log(KR_LOG_WARN, "authorization code replayed; its grant is revoked", "client_id", client.client.client_id, "user_id",
               red.code.user_id, "session_id", red.code.session_id, NULL);
        revoke_access_tokens(ctx, red.revoke, red.nrevoke);
        if (red.grant_id != NULL)
            revoke_redis_family(ctx, red.grant_id, "code_replayed");
        return invalid_grant(ctx, "code", ident_authcode_verdict_text(red.verdict));
    case IDENT_AUTHCODE_WRONG_REDIRECT:
        return invalid_grant(ctx, "redirect_uri", ident_authcode_verdict_text(red.verdict));
    case IDENT_AUTHCODE_WRONG_VERIFIER:
        return invalid_grant(ctx, "code_verifier", ident_authcode_verdict_text(red.verdict));
    default:
        return invalid_grant(ctx, "code", ident_authcode_verdict_text(red.verdict));
    }
    if (grant_reply(ctx, red.code.user_id, red.code.scope, &red.issued, &client, out) != 0)
        return -1;
    out->nonce = (char *)red.code.nonce;
    out->auth_time = red.code.auth_time;
    out->session_id = (char *)red.code.session_id;
    kr_log(KR_LOG_INFO, "authorization code redeemed", "client_id", client.client.client_id, "user_id", red.code.user_id,
           "grant_id", red.issued.grant_id, "jti", red.issued.access_jti, NULL);
    return 0;
}

/* The family of a grant revoked (`reason`) in PostgreSQL and in Redis,
 * and every access token recorded for it in either revoked. A failure in
 * Redis is logged: PostgreSQL's record already refuses the family's tokens
 * (every refresh reads it), and the access tokens live until their near
 * expiry. -1 after kr_rpc_fail when PostgreSQL failed. */
static int revoke_family(kr_rpc_ctx *ctx, const char *grant_id, const char *reason, const ident_live_jti *known, size_t nknown)
{
    ident_live_jti *pg = NULL, *rd = NULL;
    size_t npg = 0, nrd = 0;
    if (ident_store_revoke_grant(ctx, grant_id, reason, now_s(), &pg, &npg) != IDENT_STORE_OK)
        return database_failure(ctx);
    kr_redis *r = redis_of(ctx);
    if (r == NULL || ident_family_revoke(r, ctx->arena, grant_id, reason, &rd, &nrd) != IDENT_REDIS_OK) {
        kr_log(KR_LOG_ERROR, "refresh family not marked revoked in redis; told again shortly", "grant_id", grant_id, NULL);
        if (ident_store_redis_pending(ctx, grant_id, true) != IDENT_STORE_OK)
            kr_log(KR_LOG_ERROR, "revocation not queued for redis either", "grant_id", grant_id, NULL);
    }
    revoke_access_tokens(ctx, known, nknown);
    revoke_access_tokens(ctx, pg, npg);
    revoke_access_tokens(ctx, rd, nrd);
    return 0;
}

/* A refresh (RFC 6749 section 6): Redis judges and rotates the token in
 * one script (flow_redis.c), then PostgreSQL answers in one statement
 * whether the grant still stands, whether the client may still refresh,
 * and the person's claims. Without Redis nothing is accepted (503). */
static int refresh_grant(kr_rpc_ctx *ctx, const Kreide__Identity__RefreshGrantRequest *in, Kreide__Identity__Grant *out)
{
    if (gateway_only(ctx) != 0)
        return -1;
    housekeeping(ctx);
    if (!ident_client_id_valid(in->client_id))
        return invalid_client(ctx);
    ident_scopes narrow = {0};
    if (ident_scopes_parse(ctx->arena, in->scope, &narrow) != 0)
        return invalid_scope(ctx, "scope must be space-separated scope tokens, at most 32");
    if (!ident_flow_token_valid(in->refresh_token)) {
        /* The client's standing decides the answer before the token does. */
        ident_stored_client client = {0};
        if (load_client(ctx, in->client_id, &client) != 0)
            return -1;
        if (!client_has_grant(&client, "refresh_token"))
            return unauthorized_refresh(ctx);
        return invalid_grant(ctx, "refresh_token", ident_refresh_verdict_text(IDENT_REFRESH_UNKNOWN));
    }
    kr_redis *r = redis_of(ctx);
    if (r == NULL)
        return sessions_unavailable(ctx);
    const ident_app *app = app_of(ctx);
    int64_t now = now_s();
    uint8_t hash[32];
    ident_flow_token_hash(in->refresh_token, hash);
    char key[IDENT_RT_TOKEN_KEY_LEN + 1], new_key[IDENT_RT_TOKEN_KEY_LEN + 1];
    ident_rt_token_key(hash, key);
    char *token = kr_arena_alloc(ctx->arena, IDENT_FLOW_TOKEN_LEN + 1);
    ident_flow_token_new(token);
    ident_flow_token_hash(token, hash);
    ident_rt_token_key(hash, new_key);
    kr_uuid_str jti;
    kr_uuid7_new(&jti);
    ident_rt_rotation rot = {
        .token_key = key,
        .client_id = in->client_id,
        .now = now,
        .narrow_scope = narrow.n > 0 ? ident_scopes_join(ctx->arena, &narrow) : "",
        .new_token_key = new_key,
        .refresh_ttl_s = app->refresh_token_ttl_s,
        .access_jti = jti.s,
        .access_expires_at = now + app->access_token_ttl_s,
    };
    /* PostgreSQL is asked before the token rotates, so that its failure
     * leaves the token as it was (a retry with it is no reuse): the grant's
     * state and the person's claims, for the family Redis names if it is
     * this client's. The claims counter is read first, so carried claims
     * are never marked newer than they are. */
    ident_rt_found fam;
    ident_redis_result fr = ident_family_find(r, ctx->arena, key, &fam);
    if (fr == IDENT_REDIS_ERROR)
        return sessions_unavailable(ctx);
    Kreide__Identity__UserClaims *claims = kr_arena_alloc(ctx->arena, sizeof(*claims));
    kreide__identity__user_claims__init(claims);
    ident_grant_state st = {0};
    bool checked = fr == IDENT_REDIS_OK && strcmp(fam.client_id, in->client_id) == 0;
    if (checked) {
        ident_scopes granted = {0};
        if (ident_scopes_parse(ctx->arena, fam.scope, &granted) != 0)
            granted.n = 0; /* stored scopes were checked when they were stored */
        ident_store_result res = ident_store_grant_claims(ctx, fam.grant_id, in->client_id, fam.user_id,
                                                          ident_scopes_has(&granted, "profile"), claims, &st);
        if (res == IDENT_STORE_NOT_FOUND) {
            /* The grant went with its person or client. */
            ident_live_jti *rd = NULL;
            size_t nrd = 0;
            if (ident_family_revoke(r, ctx->arena, fam.grant_id, "grant_gone", &rd, &nrd) == IDENT_REDIS_OK)
                revoke_access_tokens(ctx, rd, nrd);
            return invalid_grant(ctx, "refresh_token", "the grant no longer exists");
        }
        if (res != IDENT_STORE_OK)
            return database_failure(ctx);
        if (st.revoked) {
            /* Revoked in PostgreSQL while Redis did not hear of it: Redis
             * learns it now, and the token is refused. */
            if (revoke_family(ctx, fam.grant_id, "revoked", NULL, 0) != 0)
                return -1;
            return invalid_grant(ctx, "refresh_token", ident_refresh_verdict_text(IDENT_REFRESH_REVOKED));
        }
        if (!st.client_ok) {
            ident_stored_client client = {0};
            if (load_client(ctx, in->client_id, &client) != 0)
                return -1;
            return unauthorized_refresh(ctx);
        }
    }
    ident_rt_rotated ref;
    if (ident_family_rotate(r, ctx->arena, &rot, &ref) != IDENT_REDIS_OK)
        return sessions_unavailable(ctx);
    if (ref.verdict != IDENT_REFRESH_OK && ref.verdict != IDENT_REFRESH_REUSED) {
        /* Refused and nothing changed: a client that may not refresh at
         * all hears that rather than anything about the token. */
        ident_stored_client client = {0};
        if (load_client(ctx, in->client_id, &client) != 0)
            return -1;
        if (!client_has_grant(&client, "refresh_token"))
            return unauthorized_refresh(ctx);
        if (ref.lost)
            kr_log(KR_LOG_WARN, "refresh token of a family another redis process wrote; refused", "client_id", in->client_id,
                   "grant_id", ref.grant.grant_id, NULL);
        return invalid_grant(ctx, "refresh_token", ident_refresh_verdict_text(ref.verdict));
    }
    if (ref.verdict == IDENT_REFRESH_REUSED) {
        kr_log(KR_LOG_WARN, "refresh token reused; its family is revoked", "client_id", in->client_id, "user_id", ref.grant.user_id,
               "grant_id", ref.grant.grant_id, NULL);
        if (revoke_family(ctx, ref.grant.grant_id, "refresh_reused", ref.revoke, ref.nrevoke) != 0)
            return -1;
        return invalid_grant(ctx, "refresh_token", ident_refresh_verdict_text(ref.verdict));
    }
    if (ref.scope_too_wide)
        return invalid_scope(ctx, "scope may only narrow what was granted (RFC 6749 section 6)");
    if (!checked || strcmp(fam.grant_id, ref.grant.grant_id) != 0 || strcmp(fam.user_id, ref.grant.user_id) != 0) {
        /* Cannot happen: Redis named this client's family a moment ago. */
        kr_log(KR_LOG_ERROR, "a refresh family changed between two looks; the new token is not handed out", "grant_id",
               ref.grant.grant_id, NULL);
        return sessions_unavailable(ctx);
    }
    const char *scope = narrow.n > 0 ? rot.narrow_scope : ref.grant.scope;
    if (app->refresh_token_ttl_s > 0 && now + app->refresh_token_ttl_s > ref.pg_until) {
        /* Rarely: PostgreSQL hears that the family lives on. */
        if (ident_store_extend_grant(ctx, ref.grant.grant_id, now + 2 * app->refresh_token_ttl_s) != IDENT_STORE_OK ||
            ident_family_extended(r, ref.grant.grant_id, now + 2 * app->refresh_token_ttl_s) != IDENT_REDIS_OK)
            kr_log(KR_LOG_WARN, "refresh family not extended; the next rotation tries again", "grant_id", ref.grant.grant_id, NULL);
    }
    carry_claims(ctx, r, ref.grant.grant_id, new_key, claims, fam.claims_version, st.next_midnight);
    if (narrow.n > 0 && !ident_scopes_has(&narrow, "profile")) {
        /* Names only with profile (the family carries what the grant
         * allows; this answer what was asked for). */
        claims->preferred_username = claims->given_name = claims->family_name = claims->name = (char *)"";
    }
    out->claims = claims;
    out->scope = (char *)scope;
    out->access_jti = (char *)rot.access_jti;
    out->access_expires_at = rot.access_expires_at;
    out->refresh_token = token;
    out->refresh_expires_in = app->refresh_token_ttl_s;
    out->id_token_alg = (char *)st.id_token_alg;
    out->auth_time = ref.grant.auth_time;
    out->session_id = (char *)ref.grant.session_id;
    kr_log(KR_LOG_INFO, "refresh token rotated", "client_id", in->client_id, "user_id", ref.grant.user_id, "grant_id",
           ref.grant.grant_id, "jti", rot.access_jti, NULL);
    return 0;
}

static int revoke_refresh_token(kr_rpc_ctx *ctx, const Kreide__Identity__RevokeRefreshTokenRequest *in, Kreide__Empty *out)
{
    (void)out;
    if (gateway_only(ctx) != 0)
        return -1;
    /* RFC 7009 section 2.2: unknown tokens and other clients' tokens are
     * answered like revoked ones and left alone. */
    if (!ident_flow_token_valid(in->refresh_token) || !ident_client_id_valid(in->client_id))
        return 0;
    kr_redis *r = redis_of(ctx);
    if (r == NULL)
        return sessions_unavailable(ctx);
    uint8_t hash[32];
    ident_flow_token_hash(in->refresh_token, hash);
    char key[IDENT_RT_TOKEN_KEY_LEN + 1];
    ident_rt_token_key(hash, key);
    ident_rt_found fam;
    switch (ident_family_find(r, ctx->arena, key, &fam)) {
    case IDENT_REDIS_OK:
        break;
    case IDENT_REDIS_NOT_FOUND:
        return 0;
    default:
        return sessions_unavailable(ctx);
    }
    if (strcmp(fam.client_id, in->client_id) != 0)
        return 0;
    if (revoke_family(ctx, fam.grant_id, "revoked_by_client", NULL, 0) != 0)
        return -1;
    kr_log(KR_LOG_INFO, "refresh token family revoked by its client", "client_id", in->client_id, "grant_id", fam.grant_id, NULL);
    return 0;
}

/* ------------------------------------------------------------------ claims */

static int get_user_claims(kr_rpc_ctx *ctx, const Kreide__Identity__GetUserClaimsRequest *in, Kreide__Identity__UserClaims *out)
{
    if (gateway_only(ctx) != 0)
        return -1;
    if (!kr_uuid_valid(in->user_id))
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_id", "user_id", "user_id must be a UUID");
    ident_scopes scopes = {0};
    if (ident_scopes_parse(ctx->arena, in->scope, &scopes) != 0)
        return invalid_scope(ctx, "scope must be space-separated scope tokens, at most 32");
    ident_store_result r =
        ident_store_user_claims(ctx, in->user_id, ident_scopes_has(&scopes, "profile"), ident_scopes_has(&scopes, "school"), out);
    if (r == IDENT_STORE_NOT_FOUND)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", "user_id", "no such user");
    if (r != IDENT_STORE_OK)
        return database_failure(ctx);
    return 0;
}

KR_RPC_HANDLER(start_session, Kreide__Identity__StartSessionRequest, Kreide__Identity__SessionInfo)
KR_RPC_HANDLER(get_session, Kreide__Identity__GetSessionRequest, Kreide__Identity__SessionInfo)
KR_RPC_HANDLER(end_session, Kreide__Identity__GetSessionRequest, Kreide__Empty)
KR_RPC_HANDLER(issue_auth_code, Kreide__Identity__IssueAuthCodeRequest, Kreide__Identity__AuthCode)
KR_RPC_HANDLER(redeem_auth_code, Kreide__Identity__RedeemAuthCodeRequest, Kreide__Identity__Grant)
KR_RPC_HANDLER(refresh_grant, Kreide__Identity__RefreshGrantRequest, Kreide__Identity__Grant)
KR_RPC_HANDLER(revoke_refresh_token, Kreide__Identity__RevokeRefreshTokenRequest, Kreide__Empty)
KR_RPC_HANDLER(get_user_claims, Kreide__Identity__GetUserClaimsRequest, Kreide__Identity__UserClaims)

const kr_rpc_method ident_flow_methods[] = {
    KR_RPC_ENTRY("StartSession", start_session, Kreide__Identity__StartSessionRequest, Kreide__Identity__SessionInfo),
    KR_RPC_ENTRY("GetSession", get_session, Kreide__Identity__GetSessionRequest, Kreide__Identity__SessionInfo),
    KR_RPC_ENTRY("EndSession", end_session, Kreide__Identity__GetSessionRequest, Kreide__Empty),
    KR_RPC_ENTRY("IssueAuthCode", issue_auth_code, Kreide__Identity__IssueAuthCodeRequest, Kreide__Identity__AuthCode),
    KR_RPC_ENTRY("RedeemAuthCode", redeem_auth_code, Kreide__Identity__RedeemAuthCodeRequest, Kreide__Identity__Grant),
    KR_RPC_ENTRY("RefreshGrant", refresh_grant, Kreide__Identity__RefreshGrantRequest, Kreide__Identity__Grant),
    KR_RPC_ENTRY("RevokeRefreshToken", revoke_refresh_token, Kreide__Identity__RevokeRefreshTokenRequest, Kreide__Empty),
    KR_RPC_ENTRY("GetUserClaims", get_user_claims, Kreide__Identity__GetUserClaimsRequest, Kreide__Identity__UserClaims),
};
const size_t ident_flow_nmethods = sizeof(ident_flow_methods) / sizeof(ident_flow_methods[0]);
