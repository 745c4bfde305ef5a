/* The OpenID Connect provider's HTTP surface: discovery, JWKS and pages
 * (the sign-in flow's endpoints are in oidc_authorize.c). */
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "html.h"
#include "oidc.h"

/* Rendered once by gw_oidc_init, read by every loop. */
static char *discovery_json, *jwks_json;
static size_t discovery_len, jwks_len;

/* Paths below the issuer. The gateway serves them at these paths; an issuer
 * with a path of its own needs a proxy that strips it. */
#define PATH_DISCOVERY "/.well-known/openid-configuration"
#define PATH_JWKS "/.well-known/jwks.json"
#define PATH_AUTHORIZE "/oidc/authorize"
#define PATH_TOKEN "/oidc/token"
#define PATH_USERINFO "/oidc/userinfo"
#define PATH_LOGOUT "/oidc/logout"
#define PATH_REVOKE "/oidc/revoke"
#define PATH_INTROSPECT "/oidc/introspect"

/* ------------------------------------------------------------- discovery */

static json_t *strings(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

#define STRINGS(...) strings((const char *const[]){__VA_ARGS__}, sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

json_t *gw_oidc_discovery_build(const char *issuer)
{
    size_t ilen = strlen(issuer);
    while (ilen > 0 && issuer[ilen - 1] == '/')
        ilen--;
    char url[1024];
#define URL(path) (snprintf(url, sizeof(url), "%.*s%s", (int)ilen, issuer, path), json_string(url))
    json_t *d = json_object();
    /* OpenID Connect Discovery 1.0 section 3; the issuer exactly as tokens carry it. */
    json_object_set_new(d, "issuer", json_string(issuer));
    json_object_set_new(d, "authorization_endpoint", URL(PATH_AUTHORIZE));
    json_object_set_new(d, "token_endpoint", URL(PATH_TOKEN));
    json_object_set_new(d, "userinfo_endpoint", URL(PATH_USERINFO));
    json_object_set_new(d, "jwks_uri", URL(PATH_JWKS));
    json_object_set_new(d, "end_session_endpoint", URL(PATH_LOGOUT));       /* RP-Initiated Logout 1.0 */
    json_object_set_new(d, "revocation_endpoint", URL(PATH_REVOKE));        /* RFC 7009, RFC 8414 */
    json_object_set_new(d, "introspection_endpoint", URL(PATH_INTROSPECT)); /* RFC 7662, RFC 8414 */
#undef URL
    json_object_set_new(d, "scopes_supported", STRINGS("openid", "profile", "school", "offline_access"));
    json_object_set_new(d, "response_types_supported", STRINGS("code"));
    json_object_set_new(d, "response_modes_supported", STRINGS("query"));
    json_object_set_new(d, "grant_types_supported", STRINGS("authorization_code", "refresh_token", "client_credentials"));
    json_object_set_new(d, "subject_types_supported", STRINGS("public"));
    json_object_set_new(d, "id_token_signing_alg_values_supported", STRINGS("ES256", "RS256"));
    json_t *auth = STRINGS("client_secret_basic", "client_secret_post", "none");
    json_object_set_new(d, "token_endpoint_auth_methods_supported", json_deep_copy(auth));
    json_object_set_new(d, "revocation_endpoint_auth_methods_supported", json_deep_copy(auth));
    json_object_set_new(d, "introspection_endpoint_auth_methods_supported", auth);
    json_object_set_new(d, "code_challenge_methods_supported", STRINGS("S256"));
    json_object_set_new(d, "prompt_values_supported", STRINGS("none", "login", "consent"));
    json_object_set_new(d, "claims_supported",
                        STRINGS("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "name", "given_name", "family_name",
                                "preferred_username", "schools", "urn:schulconnex:de:personenkontext:rolle",
                                "urn:schulconnex:de:personenkontext:organisation:kennung"));
    json_object_set_new(d, "ui_locales_supported", STRINGS("de", "en"));
    /* RFC 9207: every authorization response names its issuer. */
    json_object_set_new(d, "authorization_response_iss_parameter_supported", json_true());
    /* Discovery's defaults would promise request objects by reference. */
    json_object_set_new(d, "request_parameter_supported", json_false());
    json_object_set_new(d, "request_uri_parameter_supported", json_false());
    json_object_set_new(d, "claims_parameter_supported", json_false());
    return d;
}

void gw_oidc_init(const char *issuer, const kr_jwt_keyset *keys)
{
    json_t *d = gw_oidc_discovery_build(issuer);
    discovery_json = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    json_t *j = keys != NULL ? kr_jwt_keyset_jwks(keys) : json_pack("{s:[]}", "keys");
    jwks_json = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (discovery_json == NULL || jwks_json == NULL)
        abort();
    discovery_len = strlen(discovery_json);
    jwks_len = strlen(jwks_json);
}

void gw_oidc_free(void)
{
    free(discovery_json);
    free(jwks_json);
    discovery_json = jwks_json = NULL;
}

/* ------------------------------------------------------------- documents */

static bool get_or_head(h2o_req_t *req)
{
    return h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
           h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
}

/* A public JSON document: cacheable, readable from any origin (single-page
 * relying parties fetch it from their own origin). */
static int send_document(h2o_req_t *req, const char *type, const char *body, size_t len)
{
    if (!get_or_head(req)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD"));
        gw_send_error(req, 405, "oidc.method_not_allowed", "this document only answers GET", NULL);
        return 0;
    }
    gw_add_common_headers(req);
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("public, max-age=300"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, H2O_STRLIT("*"));
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
    return 0;
}

static int on_discovery(h2o_handler_t *self, h2o_req_t *req)
{
    return send_document(req, "application/json", discovery_json, discovery_len);
}

static int on_jwks(h2o_handler_t *self, h2o_req_t *req)
{
    /* RFC 7517 section 8.5 */
    return send_document(req, "application/jwk-set+json", jwks_json, jwks_len);
}

/* ----------------------------------------------------------------- pages */

static h2o_iovec_t header_value(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    return i >= 0 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

gw_lang gw_oidc_lang(h2o_req_t *req, const char *ui_locales)
{
    h2o_iovec_t al = header_value(req, H2O_TOKEN_ACCEPT_LANGUAGE);
    return gw_html_lang_negotiate(ui_locales, ui_locales != NULL ? strlen(ui_locales) : 0, al.base, al.len);
}

void gw_oidc_send_page(h2o_req_t *req, int status, gw_lang lang, h2o_iovec_t page)
{
    gw_add_common_headers(req);
    req->res.status = status;
    req->res.reason = status == 200 ? "OK" : "Error";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/html; charset=utf-8"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_LANGUAGE, NULL, gw_html_lang_tag(lang), 2);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Accept-Language"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0, NULL, H2O_STRLIT(GW_HTML_CSP));
    /* Pages carry CSRF tokens and what a person typed: never stored. */
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    req->res.content_length = page.len;
    h2o_send_inline(req, page.base, page.len);
}

void gw_oidc_send_error_page(h2o_req_t *req, int status, gw_lang lang, gw_html_msg msg, const char *code)
{
    gw_html_error e = {.lang = lang, .message = msg, .code = code, .request_id = gw_request_id(req)};
    h2o_iovec_t page;
    if (gw_html_render_error(&req->pool, &e, &page) != GW_HTML_OK) {
        gw_send_error(req, 500, "oidc.render", "the page could not be rendered", NULL);
        return;
    }
    gw_oidc_send_page(req, status, lang, page);
}

/* Every other path under /oidc/: an error page rather than the API's JSON. */
static int on_unknown_page(h2o_handler_t *self, h2o_req_t *req)
{
    gw_oidc_send_error_page(req, 404, gw_oidc_lang(req, NULL), GW_HTML_MSG_NOT_FOUND, "not_found");
    return 0;
}

static void register_handler(h2o_hostconf_t *hostconf, const char *path, int (*fn)(h2o_handler_t *, h2o_req_t *))
{
    h2o_pathconf_t *pc = h2o_config_register_path(hostconf, path, 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof(*h));
    h->on_req = fn;
    gw_access_log_register(pc);
}

void gw_oidc_register(h2o_hostconf_t *hostconf)
{
    register_handler(hostconf, PATH_DISCOVERY, on_discovery);
    register_handler(hostconf, PATH_JWKS, on_jwks);
    /* before "/oidc", which answers the rest */
    gw_oidc_token_register(hostconf);
    gw_oidc_authorize_register(hostconf);
    register_handler(hostconf, "/oidc", on_unknown_page);
}
