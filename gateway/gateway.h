/*
 * gateway — the map of the h2o gateway, the only daemon users reach.
 *
 * One h2o event loop per thread, each with its own listening socket
 * (SO_REUSEPORT), its own context, JWT cache and RPC completion queue: no
 * state is shared between loops except the read-only globals below.
 *
 *   main.c     wiring: configuration, threads, listeners, graceful shutdown
 *   routes.c   the route table (METHOD /path/{param} -> service method),
 *              path matching, and the OpenAPI document built from both the
 *              table and the protobuf descriptors
 *   api.c      the JSON API handler: body -> protobuf -> RPC -> JSON
 *   auth.c     bearer tokens -> the caller put into every envelope
 *   static.c   the portal's files, index.html for the app's routes, its
 *              headers and its configuration document (static.h)
 *   ops.c      /healthz, /readyz, /metrics, /api/v1/openapi.json, errors,
 *              the JSON access log
 *   oidc.c     OpenID Connect: discovery, JWKS, the sign-in pages (oidc.h)
 *   oidc_proto.c  OAuth rules without I/O: PKCE, redirect URIs, parameters,
 *              client authentication (oidc.h)
 *   html.c     the server-rendered pages in German and English (html.h)
 *   oidc_token.c  the token, introspection and revocation endpoints, and
 *              revocations broadcast to every loop (oidc.h)
 *   oidc_flow.c   the sign-in flow's rules without I/O: authorization
 *              requests, the sealed pending request, cookies, CSRF (oidc.h)
 *   oidc_authorize.c  the browser's endpoints: authorize, login, consent,
 *              enroll, logout; the SSO and CSRF cookies (oidc.h)
 *   oidc_userinfo.c  the UserInfo endpoint (oidc.h)
 *   oidc_claims.c  the person claims of ID tokens, userinfo and access
 *              tokens (oidc.h)
 *   ws.c       the realtime hub: /api/v1/ws, messaging's events from Redis
 *              in position order to the members' sockets
 */
#ifndef GATEWAY_H
#define GATEWAY_H

#include <h2o.h>
#include <jansson.h>
#include <stdbool.h>

#include "common.pb-c.h"
#include "kr_jwt.h"
#include "kr_redis_h2o.h"
#include "kr_metrics.h"
#include "kr_rpc.h"
#include "kr_rpc_h2o.h"
#include "kr_seal.h"

/* ------------------------------------------------------------- services */

/* A daemon the gateway routes to. */
typedef struct {
    const char *name; /* "identity" */
    const ProtobufCServiceDescriptor *desc;
    kr_rpc_client *client;
} gw_service;

/* ---------------------------------------------------------------- routes */

typedef enum {
    GW_AUTH_PUBLIC = 0, /* no credentials needed; a valid bearer is still used */
    GW_AUTH_BEARER = 1, /* a valid bearer token is required */
} gw_auth;

typedef struct {
    const char *method;  /* HTTP method */
    const char *pattern; /* "/api/v1/schools/{id}" */
    const char *service; /* gw_service name */
    const char *rpc;     /* method name in the service descriptor */
    gw_auth auth;
    int success_status;  /* 200 or 201 */
    const char *summary; /* one line for the OpenAPI document */
    /* The interface the method belongs to when it is not the service's own,
     * e.g. the kreide.Health every daemon answers; NULL for the service's. */
    const ProtobufCServiceDescriptor *iface;
    /* Resolved at start: */
    gw_service *_svc;
    const ProtobufCMethodDescriptor *_md;
    char *_rpc_method; /* "<package>.<Service>/<Method>" */
    kr_metric *_m_ok;  /* kreide_http_api_requests_total at success_status */
} gw_route;

#define GW_MAX_PARAMS 8

/* Path parameters captured by a match; values point into the request pool. */
typedef struct {
    size_t n;
    const char *names[GW_MAX_PARAMS];
    h2o_iovec_t values[GW_MAX_PARAMS];
} gw_params;

typedef enum { GW_MATCH_NONE, GW_MATCH_OK, GW_MATCH_WRONG_METHOD } gw_match_result;

/* The table, resolved against the services. Returns -1 with a message when
 * a route names a missing service or method. */
int gw_routes_init(gw_service *services, size_t nservices, char *err, size_t errlen);

/* Finds the route for a method and normalized path (without query). On
 * GW_MATCH_WRONG_METHOD, `allow` lists the methods the path has. */
gw_match_result gw_routes_match(h2o_mem_pool_t *pool, h2o_iovec_t method, h2o_iovec_t path, const gw_route **route,
                                gw_params *params, char *allow, size_t allowlen);

/* Every route, for /readyz and tests. */
const gw_route *gw_routes_all(size_t *n);

/* The OpenAPI 3 document of every route (new reference). */
json_t *gw_openapi_build(const char *server_url);

/* --------------------------------------------------------------- globals */

typedef struct {
    gw_service *services;
    size_t nservices;
    const kr_keyring *internal_keys;
    const kr_jwt_keyset *jwt_keys; /* NULL: bearer tokens are refused */
    const char *issuer;
    const char *audience;
    int64_t rpc_timeout_ms;
    size_t max_body;
    char *openapi_json; /* rendered once at start */
    size_t openapi_len;
    const char *redis_url;    /* NULL: revocations reach only this process */
    int64_t access_token_ttl; /* seconds an issued access token lives */
    struct st_gw_thread_t *threads;
    size_t nthreads;
    int64_t client_cache_ttl_ms; /* 0: every OAuth request asks identity */
    int64_t ws_gap_ms;           /* how long a loop waits for a missing event position */
} gw_globals;

extern gw_globals gw;

/* One event loop's state; `super` first so an h2o_context_t * is one. */
typedef struct st_gw_thread_t {
    h2o_context_t super;
    h2o_multithread_queue_t *queue;
    kr_rpc_h2o *rpc;
    kr_jwt_cache *jwt_cache;
    kr_redis_async *redis; /* NULL without KREIDE_REDIS_URL */
    h2o_multithread_receiver_t revoke_receiver;
    struct st_gw_ws_hub_t *ws; /* the loop's realtime hub (ws.c) */
    h2o_socket_t *listener;
    h2o_accept_ctx_t accept_ctx;
    int index;
} gw_thread;

static inline gw_thread *gw_thread_of(h2o_req_t *req)
{
    return (gw_thread *)req->conn->ctx;
}

/* ------------------------------------------------------------------ api.c */

/* Registers the /api/ handler on `pathconf`. */
void gw_api_register(h2o_pathconf_t *pathconf);

/* The numeric address of the connection's peer ("" when unknown), from the
 * request's pool: what the gateway puts into a `client_address` field for
 * the services' brute-force throttles. */
const char *gw_peer_address(h2o_req_t *req);

/* ----------------------------------------------------------------- auth.c */

typedef enum {
    GW_AUTH_NONE_GIVEN = 0, /* no Authorization header */
    GW_AUTH_VALID,
    GW_AUTH_INVALID, /* malformed, bad signature, expired... */
} gw_auth_result;

/* Reads the request's bearer token and fills `caller` (memory from the
 * request pool). On GW_AUTH_INVALID `why` says what was wrong. */
gw_auth_result gw_auth_caller(h2o_req_t *req, Kreide__Caller *caller, const char **why);

/* What a verified token says beyond the caller. */
typedef struct {
    int64_t exp;     /* Unix seconds */
    const char *jti; /* from the request pool; NULL when the token has none */
} gw_token_info;

/* The token of the request's Authorization header: VALID with `token`
 * pointing into the header, NONE_GIVEN without one, INVALID (with `why`)
 * when it is not "Bearer <token>". Nothing is verified. */
gw_auth_result gw_auth_header_token(h2o_req_t *req, h2o_iovec_t *token, const char **why);

/* Verifies one bearer token (not NUL-terminated) like gw_auth_caller;
 * `info` (may be NULL) gets its expiry and id. */
gw_auth_result gw_auth_token(h2o_req_t *req, const char *token, size_t len, Kreide__Caller *caller, gw_token_info *info,
                             const char **why);

/* ----------------------------------------------------------- oidc_token.c */

/* The Redis channel every loop of every replica hears revocations on, and
 * the key that records a revoked jti until the token would have expired. */
#define GW_REVOKED_CHANNEL "kreide.tokens.revoked"
#define GW_REVOKED_KEY_PREFIX "kreide:revoked:jti:"
/* The client id in the envelopes of the gateway's own calls to identity. */
#define GW_OWN_CLIENT_ID "gateway"

/* Prepares loop `t` to hear of revocations: a receiver for the other loops
 * of this process and, with gw.redis_url, a Redis client subscribed to
 * GW_REVOKED_CHANNEL. Call on the loop's thread before it serves (or before
 * the thread starts). Returns -1 with a message when the Redis URL is bad. */
int gw_revocations_start(gw_thread *t, char *err, size_t errlen) __attribute__((warn_unused_result));

/* ------------------------------------------------------------------- ws.c */

/* The Redis channel messaging announces its events on. */
#define GW_WS_EVENTS_CHANNEL "kreide.messaging.events"

/* Registers /api/v1/ws on `hostconf` (before the /api path, which would
 * otherwise answer it). */
void gw_ws_register(h2o_hostconf_t *hostconf);

/* Sets up loop `t`'s hub; with Redis, subscribes to GW_WS_EVENTS_CHANNEL on
 * the loop's client. Call after gw_revocations_start. */
int gw_ws_start(gw_thread *t, char *err, size_t errlen) __attribute__((warn_unused_result));

/* Closes the loop's sockets opened with the token `jti` (code 4001). */
void gw_ws_revoked(gw_thread *t, const char *jti);

/* Sockets open on this loop (for draining). */
size_t gw_ws_count(const gw_thread *t);

/* Closes every socket of the loop (code 1001, going away). */
void gw_ws_shutdown(gw_thread *t);

/* ------------------------------------------------------------------ ops.c */

/* Registers /healthz, /readyz, /metrics and the OpenAPI document. */
void gw_ops_register(h2o_hostconf_t *hostconf);

/* Registers the JSON access logger on a path. */
void gw_access_log_register(h2o_pathconf_t *pathconf);

/* The request's id: the client's X-Request-Id when it is sane, else a new
 * UUIDv7; also set as a response header. Stable for the request. */
const char *gw_request_id(h2o_req_t *req);

/* Sends a JSON error body {"error":{"code","message","field","request_id"}}. */
void gw_send_error(h2o_req_t *req, int status, const char *code, const char *message, const char *field);

/* Sends a JSON body with the given status. `body` is copied. */
void gw_send_json(h2o_req_t *req, int status, const char *body, size_t len);

/* Adds the headers every response carries (security, request id). */
void gw_add_common_headers(h2o_req_t *req);

/* Counts one served request for /metrics. */
void gw_count_request(const char *route, int status);
/* Whether an RPC method is slow enough to travel alone rather than in a
 * batch (kr_rpc_request.alone): those that hash a password. */
bool gw_rpc_alone(const char *method);

/* The counter gw_count_request adds to, for keeping. */
kr_metric *gw_request_counter(const char *route, int status);

#endif
