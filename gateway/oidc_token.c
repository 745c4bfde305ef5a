/* The OAuth 2.0 endpoints clients call directly: token (RFC 6749: the
 * authorization_code grant of section 4.1 with OpenID Connect's ID token,
 * refresh_token of section 6, client_credentials of section 4.4),
 * introspection (RFC 7662) and revocation (RFC 7009), and the broadcast that
 * carries a revocation to every loop of every gateway replica.
 *
 * Each request authenticates its client through identity's
 * AuthenticateClient, in an envelope whose caller is the gateway itself,
 * unless the same client id and secret succeeded on this loop within
 * KREIDE_CLIENT_CACHE_TTL seconds (client_cache.h);
 * identity owns the clients and their secrets, and the codes, grants and
 * refresh tokens. Access and ID tokens are JWTs signed here with the
 * gateway's keys, so checking one needs no call at all. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "client_cache.h"
#include "gateway.h"
#include "identity.pb-c.h"
#include "kr_id.h"
#include "kr_log.h"
#include "kr_oauth.h"
#include "kr_refresh.h"
#include "kr_redis_h2o.h"
#include "oidc.h"

#define METHOD_AUTHENTICATE "kreide.identity.Identity/AuthenticateClient"
#define METHOD_REDEEM "kreide.identity.Identity/RedeemAuthCode"
#define METHOD_REFRESH "kreide.identity.Identity/RefreshGrant"
#define METHOD_REVOKE_REFRESH "kreide.identity.Identity/RevokeRefreshToken"
/* Clock skew allowed on exp, as in auth.c; a revocation outlives the token
 * by as much. */
#define LEEWAY_S 30
/* Longest jti that is revoked and broadcast; ours are UUIDs. */
#define JTI_MAX 128
/* Longest token /oidc/revoke hands to identity as a refresh token; ours
 * are 43 characters: 32 random bytes as base64url. */
#define REFRESH_TOKEN_MAX 512
#define REFRESH_TOKEN_BYTES 32
#define REFRESH_TOKEN_LEN 43
/* A token's key in Redis (kr_refresh.h) with its terminating NUL. */
#define FAMILY_KEY_MAX (sizeof(KR_RT_TOKEN_PREFIX) + 64)

typedef enum { EP_TOKEN, EP_INTROSPECT, EP_REVOKE } endpoint;

typedef enum { GRANT_CLIENT_CREDENTIALS, GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN } grant_type;

static const char *const grant_names[] = {
    [GRANT_CLIENT_CREDENTIALS] = "client_credentials",
    [GRANT_AUTHORIZATION_CODE] = "authorization_code",
    [GRANT_REFRESH_TOKEN] = "refresh_token",
};

/* Scopes about a person, which a token without one cannot carry. */
static const char *const person_scopes[] = {"openid", "profile", "offline_access", "school", NULL};

/* ---------------------------------------------------------------- replies */

static void send_oauth_json(h2o_req_t *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL)
        abort();
    /* RFC 6749 section 5.1: nothing of a token response is cached. */
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("pragma"), 0, NULL, H2O_STRLIT("no-cache"));
    gw_send_json(req, status, text, strlen(text));
    free(text);
}

/* An error response of RFC 6749 section 5.2. `basic` adds the challenge
 * that a 401 after Basic authentication must carry. The description is
 * cut down to the characters section 5.2 allows. */
static void send_oauth_error(h2o_req_t *req, int status, const char *error, const char *description, bool basic)
{
    if (status == 401 && basic)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Basic realm=\"kreide\""));
    send_oauth_json(req, status,
                    json_pack("{s:s, s:s}", "error", error, "error_description", gw_oidc_error_text(&req->pool, description)));
}

/* --------------------------------------------------------------- requests */

/* A request waiting for identity or Redis. Lives outside the request's pool
 * because the request may be gone (the client hung up) when the answer
 * arrives. */
typedef struct st_oauth_call_t oauth_call;

typedef struct {
    oauth_call *call;
} call_guard;

struct st_oauth_call_t {
    h2o_req_t *req; /* NULL once the request was disposed */
    call_guard *guard;
    gw_thread *thread;
    endpoint ep;
    grant_type grant;  /* EP_TOKEN */
    gw_oidc_form form; /* strings in the request's pool */
    bool basic;        /* the client authenticated with HTTP Basic */
    /* The presented id and secret, in the request's pool, for the cache. */
    const char *auth_id, *auth_secret;
    /* Set after authentication: */
    char *client_id;
    char *id_token_alg; /* the client's: ES256 or RS256 */
    json_t *answer;     /* introspection: the response waiting for the Redis check */
    /* A refresh rotated in Redis (fast_refresh below): */
    char fast_key[FAMILY_KEY_MAX];          /* the presented token's key */
    char fast_token[REFRESH_TOKEN_LEN + 1]; /* the new refresh token */
    char fast_new_key[FAMILY_KEY_MAX];      /* its key */
    kr_uuid_str fast_jti;                   /* the new access token's jti */
    int64_t fast_now, fast_exp;
    bool fast_loading; /* the script is being sent in full */
};

static void on_request_disposed(void *arg)
{
    call_guard *g = arg;
    if (g->call != NULL)
        g->call->req = NULL;
}

/* Takes the call's request away from it for answering; NULL when it is gone. */
static h2o_req_t *call_request(oauth_call *c)
{
    h2o_req_t *req = c->req;
    if (req != NULL)
        c->guard->call = NULL;
    c->req = NULL;
    return req;
}

/* Gives the request back to the call while it waits again. */
static void call_reattach(oauth_call *c, h2o_req_t *req)
{
    c->req = req;
    c->guard->call = c;
}

static void call_free(oauth_call *c)
{
    if (c->req != NULL)
        c->guard->call = NULL;
    free(c->client_id);
    free(c->id_token_alg);
    json_decref(c->answer);
    free(c);
}

static bool is_form_content_type(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i < 0)
        return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    static const char form[] = "application/x-www-form-urlencoded";
    size_t n = sizeof(form) - 1;
    return v.len >= n && h2o_lcstris(v.base, n, form, n) && (v.len == n || v.base[n] == ';' || v.base[n] == ' ');
}

static kr_rpc_client *identity_client(void)
{
    for (size_t i = 0; i < gw.nservices; i++)
        if (strcmp(gw.services[i].name, "identity") == 0)
            return gw.services[i].client;
    abort(); /* main.c always configures identity */
}

/* Calls identity as the gateway itself (identity serves the client and
 * flow RPCs to no one else); `cb` gets the call back with the request
 * detached, so it must take it with call_request. */
static void call_identity(oauth_call *c, h2o_req_t *req, const char *method, const ProtobufCMessage *in, kr_rpc_cb cb)
{
    size_t n = protobuf_c_message_get_packed_size(in);
    uint8_t *body = h2o_mem_alloc_pool(&req->pool, n ? n : 1);
    protobuf_c_message_pack(in, body);
    Kreide__Caller caller = KREIDE__CALLER__INIT;
    caller.kind = KREIDE__CALLER__KIND__SERVICE;
    caller.client_id = GW_OWN_CLIENT_ID;
    kr_rpc_request rq = {
        .method = method,
        .request_id = gw_request_id(req),
        .deadline_ms = kr_now_ms() + gw.rpc_timeout_ms,
        .caller = &caller,
        .body = body,
        .body_len = n,
    };
    if (c->guard == NULL)
        c->guard = h2o_mem_alloc_shared(&req->pool, sizeof(call_guard), on_request_disposed);
    call_reattach(c, req);
    kr_rpc_h2o_call(c->thread->rpc, identity_client(), &rq, cb, c);
}

/* --------------------------------------------------------------- issuing */

static bool listed(const char *const *names, const char *name)
{
    for (size_t i = 0; names[i] != NULL; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

static bool has(char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

/* The scope a client_credentials token gets: what was asked for (each a
 * registered scope, none about a person), or every registered scope not
 * about a person. Returns NULL with *why set when the request is refused;
 * the result comes from the pool and may be "". */
static char *grant_scope(h2o_mem_pool_t *pool, const Kreide__Identity__OidcClient *cl, const char *requested, const char **why)
{
    size_t cap = 1;
    for (size_t i = 0; i < cl->n_scopes; i++)
        cap += strlen(cl->scopes[i]) + 1;
    char *out = h2o_mem_alloc_pool(pool, cap);
    size_t o = 0;
    out[0] = '\0';
    if (requested == NULL) {
        for (size_t i = 0; i < cl->n_scopes; i++) {
            if (listed(person_scopes, cl->scopes[i]))
                continue;
            o += (size_t)sprintf(out + o, "%s%s", o > 0 ? " " : "", cl->scopes[i]);
        }
        return out;
    }
    /* RFC 6749 section 3.3: scope tokens separated by single spaces. */
    size_t len = strlen(requested), at = 0;
    while (at <= len) {
        const char *tok = requested + at;
        const char *sp = memchr(tok, ' ', len - at);
        size_t tlen = sp != NULL ? (size_t)(sp - tok) : len - at;
        at += tlen + 1;
        if (!kr_oauth_scope_token_valid(tok, tlen)) {
            *why = "scope must be scope tokens separated by single spaces";
            return NULL;
        }
        char *name = h2o_strdup(pool, tok, tlen).base;
        if (listed(person_scopes, name)) {
            *why = "a client_credentials token acts for no person: openid, profile, school and offline_access are refused";
            return NULL;
        }
        if (!has(cl->scopes, cl->n_scopes, name)) {
            *why = "a requested scope is not registered for this client";
            return NULL;
        }
        /* A scope named twice is granted once. */
        bool seen = false;
        for (const char *p = out; !seen && *p != '\0';) {
            size_t plen = strcspn(p, " ");
            seen = plen == tlen && memcmp(p, name, tlen) == 0;
            p += plen + (p[plen] == ' ');
        }
        if (!seen)
            o += (size_t)sprintf(out + o, "%s%s", o > 0 ? " " : "", name);
    }
    return out;
}

static void issue_client_token(h2o_req_t *req, const oauth_call *c, const Kreide__Identity__OidcClient *cl)
{
    if (cl->type != KREIDE__IDENTITY__CLIENT_TYPE__CONFIDENTIAL || !has(cl->grant_types, cl->n_grant_types, "client_credentials")) {
        send_oauth_error(req, 400, "unauthorized_client", "this client is not registered for the client_credentials grant", false);
        return;
    }
    const char *why = NULL;
    char *scope = grant_scope(&req->pool, cl, gw_oidc_form_get(&c->form, "scope"), &why);
    if (scope == NULL) {
        send_oauth_error(req, 400, "invalid_scope", why, false);
        return;
    }
    if (gw.jwt_keys == NULL || kr_jwt_keyset_active_kid(gw.jwt_keys) == NULL) {
        send_oauth_error(req, 503, "temporarily_unavailable", "this server has no signing key", false);
        return;
    }
    kr_uuid_str jti;
    kr_uuid7_new(&jti);
    int64_t now = kr_now_ms() / 1000;
    kr_jwt_claims claims = {
        .iss = (char *)gw.issuer,
        .sub = cl->client_id,
        .aud = (char *)gw.audience,
        .jti = jti.s,
        .scope = scope[0] != '\0' ? scope : NULL,
        .client_id = cl->client_id,
        .iat = now,
        .exp = now + gw.access_token_ttl,
        .extra = json_pack("{s:s}", "kind", "service"),
    };
    char *token = NULL;
    int rv = kr_jwt_sign(gw.jwt_keys, &claims, &token);
    json_decref(claims.extra);
    if (rv != KR_JWT_OK) {
        kr_log(KR_LOG_ERROR, "cannot sign an access token", "error", kr_jwt_strerror(rv), NULL);
        send_oauth_error(req, 500, "server_error", "the token could not be signed", false);
        return;
    }
    json_t *body =
        json_pack("{s:s, s:s, s:I}", "access_token", token, "token_type", "Bearer", "expires_in", (json_int_t)gw.access_token_ttl);
    if (scope[0] != '\0')
        json_object_set_new(body, "scope", json_string(scope));
    free(token);
    kr_log(KR_LOG_INFO, "access token issued", "client_id", cl->client_id, "jti", jti.s, NULL);
    send_oauth_json(req, 200, body);
}

/* ------------------------------------------------- person grants (OIDC) */

/* Answers a refused RedeemAuthCode or RefreshGrant. Identity says which
 * OAuth error it is in its error code (docs/oidc.md) and why in its
 * message, which becomes the description. */
static void send_grant_refusal(h2o_req_t *req, const oauth_call *c, const kr_rpc_result *res)
{
    static const struct {
        const char *code, *error;
        int status;
    } errors[] = {
        {"oidc.invalid_grant", "invalid_grant", 400},
        {"oidc.invalid_scope", "invalid_scope", 400},
        {"oidc.invalid_request", "invalid_request", 400},
        {"oidc.unauthorized_client", "unauthorized_client", 400},
        /* disabled between authentication and the grant */
        {"oidc.invalid_client", "invalid_client", 401},
    };
    const char *code = res->error_code != NULL ? res->error_code : "";
    const char *why = res->message != NULL && res->message[0] != '\0' ? res->message : NULL;
    switch (res->status) {
    case KREIDE__STATUS__FAILED_PRECONDITION:
    case KREIDE__STATUS__INVALID_ARGUMENT:
    case KREIDE__STATUS__NOT_FOUND:
        for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
            if (strcmp(code, errors[i].code) == 0) {
                send_oauth_error(req, errors[i].status, errors[i].error, why != NULL ? why : "the request was refused", c->basic);
                return;
            }
        /* A malformed parameter identity found before looking anything up. */
        if (res->status == KREIDE__STATUS__INVALID_ARGUMENT) {
            send_oauth_error(req, 400, "invalid_request", why != NULL ? why : "a parameter is malformed", false);
            return;
        }
        send_oauth_error(req, 400, "invalid_grant", why != NULL ? why : "the grant is invalid", false);
        return;
    case KREIDE__STATUS__UNAVAILABLE:
    case KREIDE__STATUS__DEADLINE_EXCEEDED:
    case KREIDE__STATUS__RESOURCE_EXHAUSTED:
        send_oauth_error(req, 503, "temporarily_unavailable", "the grant cannot be checked right now; try again", false);
        return;
    default:
        kr_log(KR_LOG_ERROR, "identity refused the gateway's grant call", "client_id", c->client_id, "grant", grant_names[c->grant],
               "error", code, NULL);
        send_oauth_error(req, 500, "server_error", "the grant could not be checked", false);
    }
}

/* Signs the access token and the ID token of a grant identity answered
 * and sends the token response (RFC 6749 section 5.1, OpenID Connect Core
 * section 3.1.3.3). */
static void issue_person_tokens(h2o_req_t *req, const oauth_call *c, const Kreide__Identity__Grant *g)
{
    int64_t now = kr_now_ms() / 1000;
    if (g->claims == NULL || g->claims->sub == NULL || g->claims->sub[0] == '\0' || g->access_jti == NULL ||
        g->access_jti[0] == '\0' || g->access_expires_at <= now) {
        kr_log(KR_LOG_ERROR, "identity answered a grant without a person, a jti or a future expiry", "client_id", c->client_id,
               NULL);
        send_oauth_error(req, 500, "server_error", "the grant could not be completed", false);
        return;
    }
    const char *alg = g->id_token_alg != NULL && g->id_token_alg[0] != '\0' ? g->id_token_alg : c->id_token_alg;
    kr_jwt_claims ac;
    gw_oidc_access_token_claims(g, gw.issuer, gw.audience, c->client_id, now, &ac);
    char *access = NULL, *id_token = NULL;
    int rv = kr_jwt_sign(gw.jwt_keys, &ac, &access);
    json_decref(ac.extra);
    if (rv == KR_JWT_OK) {
        kr_jwt_claims ic;
        gw_oidc_id_token_claims(g, gw.issuer, c->client_id, access, now, &ic);
        rv = kr_jwt_sign_alg(gw.jwt_keys, alg, &ic, &id_token);
        json_decref(ic.extra);
    }
    if (rv != KR_JWT_OK) {
        kr_log(KR_LOG_ERROR, "cannot sign the tokens of a grant; the grant stays recorded but unused", "client_id", c->client_id,
               "alg", alg, "error", kr_jwt_strerror(rv), NULL);
        free(access);
        send_oauth_error(req, 500, "server_error", "the tokens could not be signed", false);
        return;
    }
    json_t *body = json_pack("{s:s, s:s, s:I, s:s}", "access_token", access, "token_type", "Bearer", "expires_in",
                             (json_int_t)(g->access_expires_at - now), "id_token", id_token);
    if (g->scope != NULL && g->scope[0] != '\0')
        json_object_set_new(body, "scope", json_string(g->scope));
    if (g->refresh_token != NULL && g->refresh_token[0] != '\0')
        json_object_set_new(body, "refresh_token", json_string(g->refresh_token));
    free(access);
    free(id_token);
    kr_log(KR_LOG_INFO, "person tokens issued", "client_id", c->client_id, "grant", grant_names[c->grant], "jti", g->access_jti,
           "sid", g->session_id, NULL);
    send_oauth_json(req, 200, body);
}

static void on_grant(void *arg, kr_rpc_result *res)
{
    oauth_call *c = arg;
    h2o_req_t *req = call_request(c);
    if (req == NULL) {
        /* The client hung up; identity has recorded the grant, whose
         * tokens nobody will see. */
        kr_rpc_result_free(res);
        call_free(c);
        return;
    }
    if (res->status != KREIDE__STATUS__OK) {
        send_grant_refusal(req, c, res);
        kr_rpc_result_free(res);
        call_free(c);
        return;
    }
    Kreide__Identity__Grant *g = kreide__identity__grant__unpack(NULL, res->body_len, res->body);
    kr_rpc_result_free(res);
    if (g == NULL) {
        kr_log(KR_LOG_ERROR, "identity answered a grant that does not unpack", "client_id", c->client_id, NULL);
        send_oauth_error(req, 500, "server_error", "the grant could not be completed", false);
    } else {
        issue_person_tokens(req, c, g);
        kreide__identity__grant__free_unpacked(g, NULL);
    }
    call_free(c);
}

/* ------------------------------------------------ refresh in one script
 *
 * Identity keeps every refresh token family in Redis (docs/oidc.md,
 * "Refresh tokens"). When a family is in the plain state — the presented
 * token is its current one, unexpired, the family unrevoked, written by this
 * Redis process, carrying its person's claims from before the last change
 * of the directory, and PostgreSQL told it may refresh for longer than the
 * new token lives — this script rotates the token exactly as identity's
 * would, and the gateway signs the tokens without a call to identity.
 * Anything else changes nothing and answers 0: identity's RefreshGrant then
 * judges the token (reuse, revocation, expiry, another client, a narrowed
 * scope) and acts on it, and rereads the claims. KEYS[1] the presented
 * token's key; ARGV: client, now, the presented token's hash, the new
 * token's key and hash, the access token's jti and expiry. Answers {user,
 * scope, sid, auth_time, claims, ttl}. */
static const char fast_refresh_script[] =
    "local gid = redis.call('GET', KEYS[1]) "
    "if not gid then return 0 end "
    "local fk = '" KR_RT_FAMILY_PREFIX "' .. gid "
    "local f = redis.call('HMGET', fk, 'cur', 'exp', 'client', 'user', 'scope', 'sid', 'auth_time', 'revoked', 'epoch', "
    "'pg_until', 'ttl', 'claims', 'cver', 'cuntil') "
    "if f[1] ~= ARGV[3] or f[3] ~= ARGV[1] or f[8] or not f[11] or not f[12] or not f[14] then return 0 end "
    "local now = tonumber(ARGV[2]) "
    "local ttl = tonumber(f[11]) "
    "if tonumber(f[2]) <= now or tonumber(f[10]) < now + ttl or tonumber(f[14]) <= now then return 0 end "
    "if f[13] ~= (redis.call('GET', '" KR_CLAIMS_VERSION_KEY "') or '0') then return 0 end "
    "if f[9] ~= string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') then return 0 end "
    "local jk = '" KR_RT_JTIS_PREFIX "' .. gid "
    "local newkey, newhash, jti, jexp = ARGV[4], ARGV[5], ARGV[6], ARGV[7] " KR_RT_ROTATE_LUA
    "return {f[4], f[5], f[6], f[7], f[12]}";

static char fast_refresh_sha[41];

/* The Redis key of a refresh token: the prefix and its hex SHA-256. */
static void family_token_key(const char *token, char out[FAMILY_KEY_MAX])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t h[32];
    unsigned int len = 0;
    if (EVP_Digest(token, strlen(token), h, &len, EVP_sha256(), NULL) != 1 || len != 32)
        abort();
    size_t o = strlen(KR_RT_TOKEN_PREFIX);
    memcpy(out, KR_RT_TOKEN_PREFIX, o);
    for (size_t i = 0; i < sizeof(h); i++) {
        out[o++] = digits[h[i] >> 4];
        out[o++] = digits[h[i] & 15];
    }
    out[o] = '\0';
}

static bool refresh_token_shaped(const char *t)
{
    if (t == NULL || strlen(t) != REFRESH_TOKEN_LEN)
        return false;
    for (const char *p = t; *p != '\0'; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return false;
    return true;
}

static void ask_identity_to_refresh(h2o_req_t *req, oauth_call *c);
static int send_fast_refresh(oauth_call *c);

static void on_fast_refresh(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    oauth_call *c = privdata;
    redisReply *r = reply;
    if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0 && !c->fast_loading) {
        /* Redis restarted or flushed its scripts: send it in full once. */
        c->fast_loading = true;
        if (c->req != NULL && send_fast_refresh(c) == 0)
            return;
    }
    h2o_req_t *req = call_request(c);
    if (req == NULL) {
        /* The client hung up; a rotation that happened is lost with it, as
         * when identity rotates for a client that has gone. */
        call_free(c);
        return;
    }
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            kr_log(KR_LOG_WARN, "the fast refresh script failed; identity refreshes", "error", r->str, NULL);
        ask_identity_to_refresh(req, c);
        return;
    }
    for (size_t i = 0; i < 5; i++)
        if (r->element[i]->type != REDIS_REPLY_STRING) {
            ask_identity_to_refresh(req, c);
            return;
        }
    Kreide__Identity__UserClaims *claims =
        kreide__identity__user_claims__unpack(NULL, (size_t)r->element[4]->len, (const uint8_t *)r->element[4]->str);
    if (claims == NULL) {
        /* Rotated, but the carried claims do not unpack: nothing can be
         * signed, and the old token is spent. */
        kr_log(KR_LOG_ERROR, "a refresh family carries claims that do not unpack", "client_id", c->client_id, NULL);
        send_oauth_error(req, 500, "server_error", "the grant could not be completed", false);
        call_free(c);
        return;
    }
    Kreide__Identity__Grant g = KREIDE__IDENTITY__GRANT__INIT;
    g.claims = claims;
    g.scope = r->element[1]->str;
    g.session_id = r->element[2]->str;
    g.auth_time = strtoll(r->element[3]->str, NULL, 10);
    g.access_jti = c->fast_jti.s;
    g.access_expires_at = c->fast_exp;
    g.refresh_token = c->fast_token;
    g.id_token_alg = c->id_token_alg;
    issue_person_tokens(req, c, &g);
    kreide__identity__user_claims__free_unpacked(claims, NULL);
    call_free(c);
}

/* Sends the fast refresh script (by its SHA-1, or in full after NOSCRIPT);
 * 0 when under way. */
static int send_fast_refresh(oauth_call *c)
{
    char now[24], exp[24];
    snprintf(now, sizeof(now), "%lld", (long long)c->fast_now);
    snprintf(exp, sizeof(exp), "%lld", (long long)c->fast_exp);
    size_t o = strlen(KR_RT_TOKEN_PREFIX);
    const char *argv[] = {c->fast_loading ? "EVAL" : "EVALSHA",
                          c->fast_loading ? fast_refresh_script : fast_refresh_sha,
                          "1",
                          c->fast_key,
                          c->client_id,
                          now,
                          c->fast_key + o,
                          c->fast_new_key,
                          c->fast_new_key + o,
                          c->fast_jti.s,
                          exp};
    return kr_redis_async_commandargv(c->thread->redis, on_fast_refresh, c, (int)(sizeof(argv) / sizeof(argv[0])), argv, NULL);
}

/* Tries the refresh in Redis alone; otherwise (no Redis, a narrowed scope,
 * a token that is not of our shape) asks identity. */
static void start_refresh(h2o_req_t *req, oauth_call *c)
{
    const char *token = gw_oidc_form_get(&c->form, "refresh_token");
    if (c->thread->redis == NULL || gw_oidc_form_get(&c->form, "scope") != NULL || !refresh_token_shaped(token) ||
        fast_refresh_sha[0] == '\0') {
        ask_identity_to_refresh(req, c);
        return;
    }
    family_token_key(token, c->fast_key);
    kr_oauth_random_b64url(c->fast_token, REFRESH_TOKEN_BYTES);
    family_token_key(c->fast_token, c->fast_new_key);
    kr_uuid7_new(&c->fast_jti);
    c->fast_now = kr_now_ms() / 1000;
    c->fast_exp = c->fast_now + gw.access_token_ttl;
    call_reattach(c, req);
    if (send_fast_refresh(c) == 0)
        return;
    call_request(c);
    ask_identity_to_refresh(req, c);
}

/* The script's SHA-1, for EVALSHA; computed once before the loops run. */
static void fast_refresh_init(void)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(fast_refresh_script, strlen(fast_refresh_script), md, &len, EVP_sha1(), NULL) != 1 || len != 20)
        abort();
    for (unsigned int i = 0; i < len; i++)
        snprintf(fast_refresh_sha + 2 * i, 3, "%02x", md[i]);
}

static void ask_identity_to_refresh(h2o_req_t *req, oauth_call *c)
{
    Kreide__Identity__RefreshGrantRequest in = KREIDE__IDENTITY__REFRESH_GRANT_REQUEST__INIT;
    in.client_id = c->client_id;
    in.refresh_token = (char *)gw_oidc_form_get(&c->form, "refresh_token");
    const char *scope = gw_oidc_form_get(&c->form, "scope");
    in.scope = (char *)(scope != NULL ? scope : "");
    call_identity(c, req, METHOD_REFRESH, &in.base, on_grant);
}

/* The authorization_code and refresh_token grants: checks what the gateway
 * can know itself (the client's registration, a key for its ID tokens)
 * before identity consumes the code or rotates the token. */
static void start_person_grant(h2o_req_t *req, oauth_call *c, const Kreide__Identity__OidcClient *cl)
{
    const char *grant = grant_names[c->grant];
    if (!has(cl->grant_types, cl->n_grant_types, grant)) {
        char why[96];
        snprintf(why, sizeof(why), "this client is not registered for the %s grant", grant);
        send_oauth_error(req, 400, "unauthorized_client", why, false);
        call_free(c);
        return;
    }
    if (gw.jwt_keys == NULL || kr_jwt_keyset_active_kid(gw.jwt_keys) == NULL) {
        send_oauth_error(req, 503, "temporarily_unavailable", "this server has no signing key", false);
        call_free(c);
        return;
    }
    if (!kr_jwt_keyset_can_sign(gw.jwt_keys, c->id_token_alg)) {
        kr_log(KR_LOG_ERROR,
               "a client wants ID tokens signed with an algorithm this gateway has no private key for: add one to "
               "KREIDE_JWT_KEYS_DIR (kreidectl keygen --alg RS256)",
               "client_id", c->client_id, "alg", c->id_token_alg, NULL);
        send_oauth_error(req, 500, "server_error", "this server cannot sign ID tokens with the client's algorithm", false);
        call_free(c);
        return;
    }
    if (c->grant == GRANT_AUTHORIZATION_CODE) {
        Kreide__Identity__RedeemAuthCodeRequest in = KREIDE__IDENTITY__REDEEM_AUTH_CODE_REQUEST__INIT;
        in.client_id = c->client_id;
        in.code = (char *)gw_oidc_form_get(&c->form, "code");
        in.redirect_uri = (char *)gw_oidc_form_get(&c->form, "redirect_uri");
        const char *verifier = gw_oidc_form_get(&c->form, "code_verifier");
        in.code_verifier = (char *)(verifier != NULL ? verifier : "");
        call_identity(c, req, METHOD_REDEEM, &in.base, on_grant);
    } else {
        start_refresh(req, c);
    }
}

/* ------------------------------------------------------ checking a token */

/* Verifies the `token` parameter as one of our access tokens issued to
 * `client_id`. False for anything else (bad, expired, revoked here, or
 * another client's): such tokens are inactive for this client, and
 * revoking them is a no-op. */
static bool own_token(gw_thread *t, const char *token, const char *client_id, kr_jwt_claims *claims)
{
    if (token == NULL || gw.jwt_keys == NULL)
        return false;
    kr_jwt_verify_opts opts = {.issuer = gw.issuer, .audience = gw.audience, .leeway = 0};
    if (kr_jwt_cache_verify(t->jwt_cache, gw.jwt_keys, token, strlen(token), &opts, claims) != KR_JWT_OK)
        return false;
    if (claims->client_id == NULL || strcmp(claims->client_id, client_id) != 0) {
        kr_jwt_claims_clear(claims);
        return false;
    }
    return true;
}

static json_t *introspection_of(const kr_jwt_claims *c)
{
    json_t *o = json_pack("{s:b, s:s, s:s, s:I, s:I}", "active", 1, "token_type", "Bearer", "client_id", c->client_id, "exp",
                          (json_int_t)c->exp, "iat", (json_int_t)c->iat);
    if (c->scope != NULL)
        json_object_set_new(o, "scope", json_string(c->scope));
    if (c->sub != NULL)
        json_object_set_new(o, "sub", json_string(c->sub));
    if (c->aud != NULL)
        json_object_set_new(o, "aud", json_string(c->aud));
    if (c->iss != NULL)
        json_object_set_new(o, "iss", json_string(c->iss));
    if (c->jti != NULL)
        json_object_set_new(o, "jti", json_string(c->jti));
    return o;
}

static void on_revoked_lookup(redisAsyncContext *ac, void *reply, void *privdata)
{
    oauth_call *c = privdata;
    redisReply *r = reply;
    h2o_req_t *req = call_request(c);
    if (req != NULL) {
        if (r == NULL || r->type != REDIS_REPLY_INTEGER)
            send_oauth_error(req, 503, "temporarily_unavailable", "revocations cannot be read right now", false);
        else if (r->integer == 0)
            send_oauth_json(req, 200, json_incref(c->answer));
        else
            send_oauth_json(req, 200, json_pack("{s:b}", "active", 0));
    }
    call_free(c);
}

static void introspect(h2o_req_t *req, oauth_call *c, const Kreide__Identity__OidcClient *cl)
{
    /* RFC 7662 section 2.1: the caller must be authorized; a public client
     * holds no credentials to be. */
    if (cl->type != KREIDE__IDENTITY__CLIENT_TYPE__CONFIDENTIAL) {
        send_oauth_error(req, 401, "invalid_client", "introspection needs a confidential client", c->basic);
        call_free(c);
        return;
    }
    kr_jwt_claims claims = {0};
    if (!own_token(c->thread, gw_oidc_form_get(&c->form, "token"), cl->client_id, &claims)) {
        send_oauth_json(req, 200, json_pack("{s:b}", "active", 0));
        call_free(c);
        return;
    }
    c->answer = introspection_of(&claims);
    char key[sizeof(GW_REVOKED_KEY_PREFIX) + JTI_MAX];
    bool check = c->thread->redis != NULL && claims.jti != NULL && strlen(claims.jti) <= JTI_MAX;
    if (check)
        snprintf(key, sizeof(key), "%s%s", GW_REVOKED_KEY_PREFIX, claims.jti);
    kr_jwt_claims_clear(&claims);
    /* Another replica may have revoked it a moment ago: Redis decides. */
    if (check) {
        call_reattach(c, req);
        if (kr_redis_async_command(c->thread->redis, on_revoked_lookup, c, "EXISTS %s", key) == 0)
            return;
        call_request(c);
        send_oauth_error(req, 503, "temporarily_unavailable", "revocations cannot be read right now", false);
        call_free(c);
        return;
    }
    send_oauth_json(req, 200, json_incref(c->answer));
    call_free(c);
}

/* ------------------------------------------------------------- revoking */

typedef struct {
    h2o_multithread_message_t super;
    int64_t until;
    char jti[JTI_MAX + 1];
} revoke_message;

static void revoke_here(gw_thread *t, const char *jti, int64_t until)
{
    if (kr_jwt_cache_revoke_jti(t->jwt_cache, jti, until) != KR_JWT_OK)
        kr_log(KR_LOG_WARN, "revocation list full: the token stays usable on this loop until it expires", "jti", jti, NULL);
    gw_ws_revoked(t, jti);
}

static void on_revoke_message(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    gw_thread *t = H2O_STRUCT_FROM_MEMBER(gw_thread, revoke_receiver, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        revoke_message *m = H2O_STRUCT_FROM_MEMBER(revoke_message, super.link, messages->next);
        h2o_linklist_unlink(&m->super.link);
        revoke_here(t, m->jti, m->until);
        free(m);
    }
}

static void on_redis_revocation(kr_redis_async *r, const kr_redis_message *msg, void *privdata)
{
    gw_thread *t = privdata;
    json_t *o = json_loadb(msg->payload, msg->payload_len, 0, NULL);
    json_t *jti = json_object_get(o, "jti"), *until = json_object_get(o, "until");
    if (json_is_string(jti) && json_string_length(jti) <= JTI_MAX && json_is_integer(until))
        revoke_here(t, json_string_value(jti), json_integer_value(until));
    else
        kr_log(KR_LOG_WARN, "ignored a malformed revocation message", NULL);
    json_decref(o);
}

int gw_revocations_start(gw_thread *t, char *err, size_t errlen)
{
    h2o_multithread_register_receiver(t->queue, &t->revoke_receiver, on_revoke_message);
    if (gw.redis_url == NULL)
        return 0;
    t->redis = kr_redis_async_new(t->super.loop, gw.redis_url, 2000, err, errlen);
    if (t->redis == NULL)
        return -1;
    if (kr_redis_async_subscribe(t->redis, GW_REVOKED_CHANNEL, false, on_redis_revocation, t) != 0) {
        snprintf(err, errlen, "cannot subscribe to %s", GW_REVOKED_CHANNEL);
        return -1;
    }
    return 0;
}

/* Without Redis, the other loops of this process hear of it directly. */
static void broadcast_locally(gw_thread *self, const char *jti, int64_t until)
{
    for (size_t i = 0; i < gw.nthreads; i++) {
        gw_thread *t = &gw.threads[i];
        if (t == self)
            continue;
        revoke_message *m = calloc(1, sizeof(*m));
        if (m == NULL)
            abort();
        m->until = until;
        snprintf(m->jti, sizeof(m->jti), "%s", jti);
        h2o_multithread_send_message(&t->revoke_receiver, &m->super);
    }
}

static void on_revocation_recorded(redisAsyncContext *ac, void *reply, void *privdata)
{
    oauth_call *c = privdata;
    redisReply *r = reply;
    h2o_req_t *req = call_request(c);
    if (req != NULL) {
        if (r == NULL || r->type == REDIS_REPLY_ERROR)
            send_oauth_error(req, 503, "temporarily_unavailable", "the revocation could not be recorded; try again", false);
        else
            send_oauth_json(req, 200, json_object());
    }
    call_free(c);
}

/* Records the revocation (for introspection on any replica) and tells every
 * subscribed loop, in one step so that neither happens without the other. */
static const char revoke_script[] = "redis.call('SET', KEYS[1], '1', 'EX', ARGV[1]) "
                                    "return redis.call('PUBLISH', ARGV[2], ARGV[3])";

static void on_refresh_revoked(void *arg, kr_rpc_result *res)
{
    oauth_call *c = arg;
    h2o_req_t *req = call_request(c);
    if (req != NULL) {
        switch (res->status) {
        case KREIDE__STATUS__UNAVAILABLE:
        case KREIDE__STATUS__DEADLINE_EXCEEDED:
        case KREIDE__STATUS__RESOURCE_EXHAUSTED:
            /* RFC 7009 section 2.2.1: the client retries later. */
            send_oauth_error(req, 503, "temporarily_unavailable", "the revocation could not be done; try again", false);
            break;
        case KREIDE__STATUS__OK:
        case KREIDE__STATUS__INVALID_ARGUMENT:
        case KREIDE__STATUS__NOT_FOUND:
        case KREIDE__STATUS__FAILED_PRECONDITION:
            /* Revoked, or nothing of this client's to revoke: the same 200. */
            send_oauth_json(req, 200, json_object());
            break;
        default:
            kr_log(KR_LOG_ERROR, "identity refused the gateway's refresh token revocation", "client_id", c->client_id, "error",
                   res->error_code, NULL);
            send_oauth_error(req, 500, "server_error", "the revocation could not be done", false);
        }
    }
    kr_rpc_result_free(res);
    call_free(c);
}

static void revoke_token(h2o_req_t *req, oauth_call *c, const Kreide__Identity__OidcClient *cl)
{
    kr_jwt_claims claims = {0};
    const char *token = gw_oidc_form_get(&c->form, "token");
    /* RFC 7009 section 2.2: an invalid or unknown token, or one issued to
     * another client, is answered like a revoked one and changes nothing. */
    if (!own_token(c->thread, token, cl->client_id, &claims)) {
        /* Not one of our JWTs (which always have two dots): a refresh
         * token, whose family identity revokes if it is this client's. */
        if (strchr(token, '.') == NULL && strlen(token) <= REFRESH_TOKEN_MAX) {
            Kreide__Identity__RevokeRefreshTokenRequest in = KREIDE__IDENTITY__REVOKE_REFRESH_TOKEN_REQUEST__INIT;
            in.client_id = c->client_id;
            in.refresh_token = (char *)token;
            call_identity(c, req, METHOD_REVOKE_REFRESH, &in.base, on_refresh_revoked);
            return;
        }
        send_oauth_json(req, 200, json_object());
        call_free(c);
        return;
    }
    if (claims.jti == NULL || strlen(claims.jti) > JTI_MAX) {
        kr_jwt_claims_clear(&claims);
        send_oauth_json(req, 200, json_object());
        call_free(c);
        return;
    }
    int64_t until = claims.exp + LEEWAY_S, now = kr_now_ms() / 1000;
    char jti[JTI_MAX + 1];
    snprintf(jti, sizeof(jti), "%s", claims.jti);
    kr_jwt_claims_clear(&claims);
    revoke_here(c->thread, jti, until);
    kr_log(KR_LOG_INFO, "access token revoked", "client_id", cl->client_id, "jti", jti, NULL);
    if (c->thread->redis == NULL) {
        broadcast_locally(c->thread, jti, until);
        send_oauth_json(req, 200, json_object());
        call_free(c);
        return;
    }
    char key[sizeof(GW_REVOKED_KEY_PREFIX) + JTI_MAX], ttl[24];
    snprintf(key, sizeof(key), "%s%s", GW_REVOKED_KEY_PREFIX, jti);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)(until > now ? until - now : 1));
    json_t *m = json_pack("{s:s, s:I}", "jti", jti, "until", (json_int_t)until);
    char *payload = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    if (payload == NULL)
        abort();
    call_reattach(c, req);
    int rv = kr_redis_async_command(c->thread->redis, on_revocation_recorded, c, "EVAL %s 1 %s %s %s %s", revoke_script, key, ttl,
                                    GW_REVOKED_CHANNEL, payload);
    free(payload);
    if (rv == 0)
        return;
    call_request(c);
    send_oauth_error(req, 503, "temporarily_unavailable", "the revocation could not be recorded; try again", false);
    call_free(c);
}

/* ------------------------------------------------------- authentication */

/* Entries per loop; when full, the one stored longest ago gives way. */
#define CLIENT_CACHE_SIZE 1024

/* This loop's cache of successful authentications; NULL when disabled. */
static gw_client_cache *loop_client_cache(void)
{
    static __thread gw_client_cache *cache;
    if (cache == NULL && gw.client_cache_ttl_ms > 0)
        cache = gw_client_cache_new(CLIENT_CACHE_SIZE, gw.client_cache_ttl_ms);
    return cache;
}

/* Goes on with the authenticated client `cl` (still owned by the caller). */
static void authenticated(h2o_req_t *req, oauth_call *c, const Kreide__Identity__OidcClient *cl)
{
    c->client_id = strdup(cl->client_id);
    c->id_token_alg = strdup(cl->id_token_alg != NULL && cl->id_token_alg[0] != '\0' ? cl->id_token_alg : "ES256");
    if (c->client_id == NULL || c->id_token_alg == NULL)
        abort();
    switch (c->ep) {
    case EP_TOKEN:
        if (c->grant == GRANT_CLIENT_CREDENTIALS) {
            issue_client_token(req, c, cl);
            call_free(c);
        } else {
            start_person_grant(req, c, cl);
        }
        break;
    case EP_INTROSPECT:
        introspect(req, c, cl);
        break;
    case EP_REVOKE:
        revoke_token(req, c, cl);
        break;
    }
}

static void on_authenticated(void *arg, kr_rpc_result *res)
{
    oauth_call *c = arg;
    h2o_req_t *req = call_request(c);
    if (req == NULL) {
        kr_rpc_result_free(res);
        call_free(c);
        return;
    }
    if (res->status == KREIDE__STATUS__UNAUTHENTICATED) {
        kr_rpc_result_free(res);
        send_oauth_error(req, 401, "invalid_client", "client authentication failed", c->basic);
        call_free(c);
        return;
    }
    Kreide__Identity__OidcClient *cl = NULL;
    if (res->status == KREIDE__STATUS__OK)
        cl = kreide__identity__oidc_client__unpack(NULL, res->body_len, res->body);
    if (cl == NULL) {
        int status = res->status == KREIDE__STATUS__OK ? 502 : kr_rpc_http_status(res->status);
        kr_log(KR_LOG_ERROR, "client authentication failed to run", "error", res->error_code, NULL);
        kr_rpc_result_free(res);
        send_oauth_error(req, status >= 500 ? 503 : 500, status >= 500 ? "temporarily_unavailable" : "server_error",
                         "clients cannot be checked right now", false);
        call_free(c);
        return;
    }
    /* Only a success is remembered. */
    gw_client_cache_put(loop_client_cache(), c->auth_id, c->auth_secret, res->body, res->body_len, kr_now_ms());
    kr_rpc_result_free(res);
    authenticated(req, c, cl);
    kreide__identity__oidc_client__free_unpacked(cl, NULL);
}

/* Reads the request up to client authentication, which it starts. */
static int on_oauth_request(h2o_req_t *req, endpoint ep)
{
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
        send_oauth_error(req, 405, "invalid_request", "this endpoint only answers POST", false);
        return 0;
    }
    if (!is_form_content_type(req)) {
        send_oauth_error(req, 400, "invalid_request", "the body must be application/x-www-form-urlencoded", false);
        return 0;
    }
    oauth_call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    c->ep = ep;
    c->thread = gw_thread_of(req);
    const char *bad = NULL;
    int rv =
        gw_oidc_form_parse(&req->pool, req->entity.base != NULL ? req->entity.base : "", req->entity.len, NULL, &c->form, &bad);
    if (rv != GW_OIDC_OK) {
        free(c);
        send_oauth_error(req, 400, "invalid_request",
                         rv == GW_OIDC_EDUPLICATE ? "a parameter is given more than once" : "the form body is malformed", false);
        return 0;
    }
    const char *client_id = gw_oidc_form_get(&c->form, "client_id");
    const char *secret = gw_oidc_form_get(&c->form, "client_secret");
    ssize_t ai = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (ai >= 0) {
        h2o_iovec_t v = req->headers.entries[ai].value;
        const char *bid = NULL, *bsecret = NULL;
        c->basic = true;
        if (gw_oidc_client_basic(&req->pool, v.base, v.len, &bid, &bsecret) != GW_OIDC_OK) {
            free(c);
            send_oauth_error(req, 401, "invalid_client",
                             "the Authorization header must be HTTP Basic with the client's id and secret", true);
            return 0;
        }
        /* RFC 6749 section 2.3: one authentication method per request. */
        if (secret != NULL || (client_id != NULL && strcmp(client_id, bid) != 0)) {
            free(c);
            send_oauth_error(req, 400, "invalid_request", "use either HTTP Basic or client_secret in the body, not both", false);
            return 0;
        }
        client_id = bid;
        secret = bsecret;
    } else if (client_id == NULL) {
        free(c);
        send_oauth_error(req, 401, "invalid_client", "client authentication is required", true);
        return 0;
    }
    if (ep == EP_TOKEN) {
        const char *grant = gw_oidc_form_get(&c->form, "grant_type");
        if (grant == NULL) {
            free(c);
            send_oauth_error(req, 400, "invalid_request", "grant_type is required", false);
            return 0;
        }
        size_t g = 0;
        while (g < sizeof(grant_names) / sizeof(grant_names[0]) && strcmp(grant, grant_names[g]) != 0)
            g++;
        if (g == sizeof(grant_names) / sizeof(grant_names[0])) {
            free(c);
            send_oauth_error(req, 400, "unsupported_grant_type",
                             "grant_type must be authorization_code, refresh_token or client_credentials", false);
            return 0;
        }
        c->grant = (grant_type)g;
        /* RFC 6749 sections 4.1.3 and 6: what each grant needs. The
         * redirect_uri is required because every authorization request
         * here carries one. */
        const char *missing = NULL;
        if (c->grant == GRANT_AUTHORIZATION_CODE)
            missing = gw_oidc_form_get(&c->form, "code") == NULL           ? "code is required"
                      : gw_oidc_form_get(&c->form, "redirect_uri") == NULL ? "redirect_uri is required"
                                                                           : NULL;
        else if (c->grant == GRANT_REFRESH_TOKEN && gw_oidc_form_get(&c->form, "refresh_token") == NULL)
            missing = "refresh_token is required";
        if (missing != NULL) {
            free(c);
            send_oauth_error(req, 400, "invalid_request", missing, false);
            return 0;
        }
    } else if (gw_oidc_form_get(&c->form, "token") == NULL) {
        free(c);
        send_oauth_error(req, 400, "invalid_request", "token is required", false);
        return 0;
    }

    /* A public client sends its id alone (method "none"): identity checks
     * it with an empty secret. */
    c->auth_id = client_id;
    c->auth_secret = secret != NULL ? secret : "";
    const Kreide__Identity__OidcClient *cached = gw_client_cache_get(loop_client_cache(), c->auth_id, c->auth_secret, kr_now_ms());
    if (cached != NULL) {
        /* Detached, as after an identity call: what follows may wait for
         * Redis or identity and reattach the request. */
        c->guard = h2o_mem_alloc_shared(&req->pool, sizeof(call_guard), on_request_disposed);
        c->guard->call = NULL;
        authenticated(req, c, cached);
        return 0;
    }
    Kreide__Identity__AuthenticateClientRequest in = KREIDE__IDENTITY__AUTHENTICATE_CLIENT_REQUEST__INIT;
    in.client_id = (char *)client_id;
    in.client_secret = (char *)c->auth_secret;
    call_identity(c, req, METHOD_AUTHENTICATE, &in.base, on_authenticated);
    return 0;
}

static int on_token(h2o_handler_t *self, h2o_req_t *req)
{
    return on_oauth_request(req, EP_TOKEN);
}

static int on_introspect(h2o_handler_t *self, h2o_req_t *req)
{
    return on_oauth_request(req, EP_INTROSPECT);
}

static int on_revoke(h2o_handler_t *self, h2o_req_t *req)
{
    return on_oauth_request(req, EP_REVOKE);
}

static void register_handler(h2o_hostconf_t *hostconf, const char *path, int (*fn)(h2o_handler_t *, h2o_req_t *))
{
    h2o_pathconf_t *pc = h2o_config_register_path(hostconf, path, 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof(*h));
    h->on_req = fn;
    gw_access_log_register(pc);
}

void gw_oidc_token_register(h2o_hostconf_t *hostconf)
{
    fast_refresh_init();
    register_handler(hostconf, "/oidc/token", on_token);
    register_handler(hostconf, "/oidc/introspect", on_introspect);
    register_handler(hostconf, "/oidc/revoke", on_revoke);
    gw_oidc_userinfo_register(hostconf);
    if (gw.jwt_keys != NULL && !kr_jwt_keyset_can_sign(gw.jwt_keys, "RS256"))
        kr_log(KR_LOG_WARN,
               "no RSA key in KREIDE_JWT_KEYS_DIR: clients registered for RS256 ID tokens get server_error "
               "(kreidectl keygen --alg RS256 makes one)",
               NULL);
}
