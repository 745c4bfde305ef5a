/* The UserInfo endpoint (OpenID Connect Core 1.0 section 5.3): a relying
 * party presents a person access token and gets the claims of the scopes
 * it was granted, as identity knows them now.
 *
 * The token is a bearer token of RFC 6750: in the Authorization header
 * (GET or POST) or, for POST, as `access_token` in a form body (section
 * 2.2). It must be one of ours, unexpired, not revoked on any replica (the
 * Redis key introspection reads), and a person's token with `openid` in its
 * scope. Errors carry the challenge of RFC 6750 section 3. Browser relying
 * parties call it from their own origin, so every answer allows any origin
 * (without credentials: the token travels in a header, never a cookie). */
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "identity.pb-c.h"
#include "kr_id.h"
#include "kr_log.h"
#include "oidc.h"

#define METHOD_CLAIMS "kreide.identity.Identity/GetUserClaims"
/* Clock skew allowed on exp, as for the API (auth.c); a revocation outlives
 * the token by as much. */
#define LEEWAY_S 30
#define JTI_MAX 128

/* ---------------------------------------------------------------- replies */

static void add_cors(h2o_req_t *req)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, H2O_STRLIT("*"));
    /* so that a browser relying party can read why it was refused */
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-expose-headers"), 0, NULL,
                          H2O_STRLIT("WWW-Authenticate"));
}

static void send_json(h2o_req_t *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL)
        abort();
    add_cors(req);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("pragma"), 0, NULL, H2O_STRLIT("no-cache"));
    gw_send_json(req, status, text, strlen(text));
    free(text);
}

/* An RFC 6750 section 3 refusal: the challenge in WWW-Authenticate and the
 * same error as a JSON body. `error` NULL is a request that carried no
 * token at all, which gets the bare challenge (section 3.1). */
static void send_bearer_error(h2o_req_t *req, int status, const char *error, const char *description)
{
    h2o_iovec_t challenge;
    if (error == NULL) {
        challenge = h2o_iovec_init(H2O_STRLIT("Bearer realm=\"kreide\""));
    } else {
        const char *d = gw_oidc_error_text(&req->pool, description);
        bool scope = strcmp(error, "insufficient_scope") == 0;
        size_t n = 96 + strlen(error) + strlen(d);
        char *buf = h2o_mem_alloc_pool(&req->pool, n);
        int len = snprintf(buf, n, "Bearer realm=\"kreide\", error=\"%s\", error_description=\"%s\"%s", error, d,
                           scope ? ", scope=\"openid\"" : "");
        challenge = h2o_iovec_init(buf, (size_t)len);
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, challenge.base, challenge.len);
    json_t *body = json_object();
    json_object_set_new(body, "error", json_string(error != NULL ? error : "invalid_request"));
    json_object_set_new(
        body, "error_description",
        json_string(gw_oidc_error_text(&req->pool, description != NULL ? description : "an access token is required")));
    send_json(req, status, body);
}

/* -------------------------------------------------------------- requests */

typedef struct st_userinfo_call_t userinfo_call;

typedef struct {
    userinfo_call *call;
} call_guard;

/* A request waiting for Redis or identity; outside the request's pool
 * because the client may hang up first. */
struct st_userinfo_call_t {
    h2o_req_t *req; /* NULL once the request was disposed */
    call_guard *guard;
    gw_thread *thread;
    char *sub;
    char *scope;
};

static void on_request_disposed(void *arg)
{
    call_guard *g = arg;
    if (g->call != NULL)
        g->call->req = NULL;
}

static h2o_req_t *call_request(userinfo_call *c)
{
    h2o_req_t *req = c->req;
    if (req != NULL)
        c->guard->call = NULL;
    c->req = NULL;
    return req;
}

static void call_attach(userinfo_call *c, h2o_req_t *req)
{
    c->req = req;
    c->guard->call = c;
}

static void call_free(userinfo_call *c)
{
    if (c->req != NULL)
        c->guard->call = NULL;
    free(c->sub);
    free(c->scope);
    free(c);
}

static kr_rpc_client *identity_client(void)
{
    for (size_t i = 0; i < gw.nservices; i++)
        if (strcmp(gw.services[i].name, "identity") == 0)
            return gw.services[i].client;
    abort(); /* main.c always configures identity */
}

/* ---------------------------------------------------------------- claims */

static void on_claims(void *arg, kr_rpc_result *res)
{
    userinfo_call *c = arg;
    h2o_req_t *req = call_request(c);
    if (req == NULL) {
        kr_rpc_result_free(res);
        call_free(c);
        return;
    }
    Kreide__Identity__UserClaims *uc = NULL;
    switch (res->status) {
    case KREIDE__STATUS__OK:
        uc = kreide__identity__user_claims__unpack(NULL, res->body_len, res->body);
        if (uc == NULL || uc->sub == NULL || strcmp(uc->sub, c->sub) != 0) {
            kr_log(KR_LOG_ERROR, "identity answered claims of another person or that do not unpack", "sub", c->sub, NULL);
            send_bearer_error(req, 500, "server_error", "the claims could not be read");
        } else {
            send_json(req, 200, gw_oidc_person_claims(uc, c->scope));
        }
        break;
    case KREIDE__STATUS__NOT_FOUND:
        send_bearer_error(req, 401, "invalid_token", "the person of this token no longer exists");
        break;
    case KREIDE__STATUS__UNAVAILABLE:
    case KREIDE__STATUS__DEADLINE_EXCEEDED:
        send_bearer_error(req, 503, "temporarily_unavailable", "the claims cannot be read right now; try again");
        break;
    default:
        kr_log(KR_LOG_ERROR, "identity refused the gateway's GetUserClaims", "sub", c->sub, "error", res->error_code, NULL);
        send_bearer_error(req, 500, "server_error", "the claims could not be read");
    }
    if (uc != NULL)
        kreide__identity__user_claims__free_unpacked(uc, NULL);
    kr_rpc_result_free(res);
    call_free(c);
}

/* Asks identity for the person's claims of the token's scopes, as the
 * gateway itself. */
static void fetch_claims(userinfo_call *c, h2o_req_t *req)
{
    Kreide__Identity__GetUserClaimsRequest in = KREIDE__IDENTITY__GET_USER_CLAIMS_REQUEST__INIT;
    in.user_id = c->sub;
    in.scope = c->scope;
    size_t n = kreide__identity__get_user_claims_request__get_packed_size(&in);
    uint8_t *body = h2o_mem_alloc_pool(&req->pool, n ? n : 1);
    kreide__identity__get_user_claims_request__pack(&in, body);
    Kreide__Caller caller = KREIDE__CALLER__INIT;
    caller.kind = KREIDE__CALLER__KIND__SERVICE;
    caller.client_id = GW_OWN_CLIENT_ID;
    kr_rpc_request rq = {
        .method = METHOD_CLAIMS,
        .request_id = gw_request_id(req),
        .deadline_ms = kr_now_ms() + gw.rpc_timeout_ms,
        .caller = &caller,
        .body = body,
        .body_len = n,
    };
    call_attach(c, req);
    kr_rpc_h2o_call(c->thread->rpc, identity_client(), &rq, on_claims, c);
}

static void on_revoked_lookup(redisAsyncContext *ac, void *reply, void *privdata)
{
    userinfo_call *c = privdata;
    redisReply *r = reply;
    h2o_req_t *req = call_request(c);
    if (req == NULL) {
        call_free(c);
        return;
    }
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        send_bearer_error(req, 503, "temporarily_unavailable", "revocations cannot be read right now; try again");
        call_free(c);
    } else if (r->integer != 0) {
        send_bearer_error(req, 401, "invalid_token", "the token was revoked");
        call_free(c);
    } else {
        fetch_claims(c, req);
    }
}

/* ----------------------------------------------------------------- token */

static bool is_form(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i < 0)
        return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    static const char form[] = "application/x-www-form-urlencoded";
    size_t n = sizeof(form) - 1;
    return v.len >= n && h2o_lcstris(v.base, n, form, n) && (v.len == n || v.base[n] == ';' || v.base[n] == ' ');
}

/* Finds the bearer token (RFC 6750 section 2.1 and, for POST, 2.2). Returns
 * 0 with `token` set, or the status of the error it sent. */
static int find_token(h2o_req_t *req, bool post, h2o_iovec_t *token)
{
    *token = h2o_iovec_init(NULL, 0);
    ssize_t ai = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (ai >= 0) {
        h2o_iovec_t v = req->headers.entries[ai].value;
        if (v.len < 7 || !h2o_lcstris(v.base, 7, H2O_STRLIT("bearer "))) {
            send_bearer_error(req, 401, NULL, NULL);
            return 401;
        }
        size_t at = 7;
        while (at < v.len && v.base[at] == ' ')
            at++;
        *token = h2o_iovec_init(v.base + at, v.len - at);
    }
    if (post && is_form(req)) {
        gw_oidc_form form;
        const char *bad = NULL;
        if (gw_oidc_form_parse(&req->pool, req->entity.base != NULL ? req->entity.base : "", req->entity.len, NULL, &form, &bad) !=
            GW_OIDC_OK) {
            send_bearer_error(req, 400, "invalid_request", "the form body is malformed or repeats a parameter");
            return 400;
        }
        const char *t = gw_oidc_form_get(&form, "access_token");
        if (t != NULL) {
            /* RFC 6750 section 2: one method per request. */
            if (token->base != NULL) {
                send_bearer_error(req, 400, "invalid_request", "send the token either in the Authorization header or in the body");
                return 400;
            }
            *token = h2o_iovec_init(t, strlen(t));
        }
    }
    if (token->base == NULL || token->len == 0) {
        send_bearer_error(req, 401, NULL, NULL);
        return 401;
    }
    return 0;
}

static void send_preflight(h2o_req_t *req)
{
    gw_add_common_headers(req);
    add_cors(req);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-methods"), 0, NULL,
                          H2O_STRLIT("GET, POST"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-headers"), 0, NULL,
                          H2O_STRLIT("Authorization, Content-Type"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-max-age"), 0, NULL, H2O_STRLIT("600"));
    req->res.status = 204;
    req->res.reason = "No Content";
    req->res.content_length = 0;
    h2o_send_inline(req, NULL, 0);
}

static int on_userinfo(h2o_handler_t *self, h2o_req_t *req)
{
    bool get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    bool post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS"))) {
        send_preflight(req);
        return 0;
    }
    if (!get && !post) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, POST"));
        send_json(req, 405,
                  json_pack("{s:s, s:s}", "error", "invalid_request", "error_description", "userinfo answers GET and POST"));
        return 0;
    }
    h2o_iovec_t token;
    if (find_token(req, post, &token) != 0)
        return 0;
    if (gw.jwt_keys == NULL) {
        send_bearer_error(req, 401, "invalid_token", "this server accepts no bearer tokens");
        return 0;
    }
    gw_thread *t = gw_thread_of(req);
    kr_jwt_verify_opts opts = {.issuer = gw.issuer, .audience = gw.audience, .leeway = LEEWAY_S};
    kr_jwt_claims claims = {0};
    int rv = kr_jwt_cache_verify(t->jwt_cache, gw.jwt_keys, token.base, token.len, &opts, &claims);
    if (rv != KR_JWT_OK) {
        send_bearer_error(req, 401, "invalid_token", kr_jwt_strerror(rv));
        return 0;
    }
    /* A valid token that speaks for no person (a client_credentials token,
     * an operator's kreidectl token) or was not granted openid: RFC 6750
     * section 3.1 calls that insufficient scope. */
    json_t *kind = claims.extra != NULL ? json_object_get(claims.extra, "kind") : NULL;
    bool service = json_is_string(kind) && strcmp(json_string_value(kind), "service") == 0;
    bool gateway = claims.client_id != NULL && strcmp(claims.client_id, GW_OWN_CLIENT_ID) == 0;
    if (gateway) {
        kr_jwt_claims_clear(&claims);
        send_bearer_error(req, 401, "invalid_token", "this token claims to be the gateway");
        return 0;
    }
    if (service || claims.sub == NULL || claims.sub[0] == '\0' || !gw_oidc_scope_has(claims.scope, "openid")) {
        kr_jwt_claims_clear(&claims);
        send_bearer_error(req, 403, "insufficient_scope", "userinfo needs a person's token granted the openid scope");
        return 0;
    }
    userinfo_call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    c->thread = t;
    c->sub = strdup(claims.sub);
    c->scope = strdup(claims.scope);
    if (c->sub == NULL || c->scope == NULL)
        abort();
    c->guard = h2o_mem_alloc_shared(&req->pool, sizeof(call_guard), on_request_disposed);
    bool check = t->redis != NULL && claims.jti != NULL && strlen(claims.jti) <= JTI_MAX;
    char key[sizeof(GW_REVOKED_KEY_PREFIX) + JTI_MAX];
    if (check)
        snprintf(key, sizeof(key), "%s%s", GW_REVOKED_KEY_PREFIX, claims.jti);
    kr_jwt_claims_clear(&claims);
    if (!check) {
        fetch_claims(c, req);
        return 0;
    }
    /* Another replica, or identity after a replayed code, may have revoked
     * it a moment ago: Redis decides, as for introspection. */
    call_attach(c, req);
    if (kr_redis_async_command(t->redis, on_revoked_lookup, c, "EXISTS %s", key) != 0) {
        call_request(c);
        call_free(c);
        send_bearer_error(req, 503, "temporarily_unavailable", "revocations cannot be read right now; try again");
    }
    return 0;
}

void gw_oidc_userinfo_register(h2o_hostconf_t *hostconf)
{
    h2o_pathconf_t *pc = h2o_config_register_path(hostconf, "/oidc/userinfo", 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof(*h));
    h->on_req = on_userinfo;
    gw_access_log_register(pc);
}
