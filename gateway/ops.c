/* Operational endpoints, error bodies and the JSON access log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway.h"
#include "kr_id.h"
#include "kr_log.h"
#include "kr_metrics.h"

/* Defined here rather than in main.c so that unit tests, which link every
 * gateway object but main.o, find it. */
gw_globals gw;

/* ------------------------------------------------------------ responses */

static h2o_iovec_t json_escape(h2o_mem_pool_t *pool, const char *s)
{
    json_t *j = json_string(s ? s : "");
    if (j == NULL) /* not UTF-8: never echo raw bytes */
        j = json_string("(invalid text)");
    char *out = json_dumps(j, JSON_ENCODE_ANY);
    json_decref(j);
    h2o_iovec_t v = h2o_strdup(pool, out, SIZE_MAX);
    free(out);
    return v;
}

static bool request_id_sane(h2o_iovec_t v)
{
    if (v.len == 0 || v.len > 64)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        char c = v.base[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

const char *gw_request_id(h2o_req_t *req)
{
    /* Kept as a response header: set once, read back by everyone after. */
    ssize_t i = h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("x-request-id"), -1);
    if (i >= 0)
        return req->res.headers.entries[i].value.base;
    h2o_iovec_t id;
    ssize_t j = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    if (j >= 0 && request_id_sane(req->headers.entries[j].value)) {
        id = h2o_strdup(&req->pool, req->headers.entries[j].value.base, req->headers.entries[j].value.len);
    } else {
        kr_uuid_str u;
        kr_uuid7_new(&u);
        id = h2o_strdup(&req->pool, u.s, KR_UUID_STRLEN);
    }
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, id.base, id.len);
    return id.base;
}

void gw_add_common_headers(h2o_req_t *req)
{
    gw_request_id(req);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL, H2O_STRLIT("nosniff"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-frame-options"), 0, NULL, H2O_STRLIT("DENY"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("referrer-policy"), 0, NULL, H2O_STRLIT("no-referrer"));
}

void gw_send_json(h2o_req_t *req, int status, const char *body, size_t len)
{
    gw_add_common_headers(req);
    req->res.status = status;
    req->res.reason = status == 201 ? "Created" : status < 300 ? "OK" : "Error";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    /* Without a length h2o 2.2 would chunk the body, which it does only for
     * 200 and otherwise closes the connection after every error. */
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

void gw_send_error(h2o_req_t *req, int status, const char *code, const char *message, const char *field)
{
    const char *rid = gw_request_id(req);
    h2o_iovec_t c = json_escape(&req->pool, code), m = json_escape(&req->pool, message), f = json_escape(&req->pool, field);
    h2o_iovec_t r = json_escape(&req->pool, rid);
    h2o_iovec_t body = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("{\"error\":{\"code\":")), c,
                                  h2o_iovec_init(H2O_STRLIT(",\"message\":")), m, h2o_iovec_init(H2O_STRLIT(",\"field\":")), f,
                                  h2o_iovec_init(H2O_STRLIT(",\"request_id\":")), r, h2o_iovec_init(H2O_STRLIT("}}")));
    gw_send_json(req, status, body.base, body.len);
}

bool gw_rpc_alone(const char *method)
{
    /* Each costs an argon2id hash, tens of milliseconds by design. */
    static const char *const slow[] = {"/StartSession", "/EnrollWithCode"};
    size_t n = strlen(method);
    for (size_t i = 0; i < sizeof(slow) / sizeof(slow[0]); i++) {
        size_t m = strlen(slow[i]);
        if (n >= m && strcmp(method + n - m, slow[i]) == 0)
            return true;
    }
    return false;
}

kr_metric *gw_request_counter(const char *route, int status)
{
    char labels[200], esc[128];
    snprintf(labels, sizeof(labels), "route=\"%s\",status=\"%d\"", kr_metrics_escape_label(route, esc, sizeof(esc)), status);
    return kr_metrics_counter("kreide_http_api_requests_total", "API requests by route and status", labels);
}

void gw_count_request(const char *route, int status)
{
    kr_counter_add(gw_request_counter(route, status), 1);
}

/* ------------------------------------------------------------ handlers */

static int on_healthz(h2o_handler_t *self, h2o_req_t *req)
{
    gw_send_json(req, 200, H2O_STRLIT("{\"status\":\"ok\"}"));
    return 0;
}

static int on_metrics(h2o_handler_t *self, h2o_req_t *req)
{
    for (size_t i = 0; i < gw.nservices; i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "service=\"%s\"", gw.services[i].name);
        kr_gauge_set(kr_metrics_gauge("kreide_gateway_rpc_peers", "Open RPC connections per service (several per replica)", labels),
                     kr_rpc_client_peers(gw.services[i].client));
    }
    size_t len;
    char *text = kr_metrics_render(&len);
    gw_add_common_headers(req);
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/plain; version=0.0.4"));
    req->res.content_length = len;
    h2o_send_inline(req, text, len);
    free(text);
    return 0;
}

static int on_openapi(h2o_handler_t *self, h2o_req_t *req)
{
    gw_add_common_headers(req);
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    req->res.content_length = gw.openapi_len;
    h2o_send_inline(req, gw.openapi_json, gw.openapi_len);
    return 0;
}

/* /readyz asks every routed service's Health/Check and answers when all
 * have answered (or timed out). */
typedef struct st_readiness_t readiness;
typedef struct {
    readiness *r;
    size_t index;
} readiness_probe;

struct st_readiness_t {
    h2o_req_t *req; /* NULL once the request is gone */
    struct st_readiness_guard_t *guard;
    size_t waiting;
    json_t *services;
    bool ready;
    readiness_probe probes[];
};

typedef struct st_readiness_guard_t {
    readiness *r;
} readiness_guard;

static void readiness_disposed(void *arg)
{
    readiness_guard *g = arg;
    if (g->r != NULL)
        g->r->req = NULL;
}

static void on_probe(void *arg, kr_rpc_result *res)
{
    readiness_probe *p = arg;
    readiness *r = p->r;
    const gw_service *svc = &gw.services[p->index];
    bool ok = res->status == KREIDE__STATUS__OK;
    json_object_set_new(r->services, svc->name,
                        ok ? json_pack("{s:b}", "ready", 1)
                           : json_pack("{s:b, s:s, s:s}", "ready", 0, "error", res->error_code, "message", res->message));
    r->ready = r->ready && ok;
    kr_rpc_result_free(res);
    if (--r->waiting > 0)
        return;
    if (r->req != NULL) {
        r->guard->r = NULL;
        json_t *body = json_pack("{s:b, s:O}", "ready", r->ready, "services", r->services);
        char *text = json_dumps(body, JSON_COMPACT);
        gw_send_json(r->req, r->ready ? 200 : 503, text, strlen(text));
        free(text);
        json_decref(body);
    }
    json_decref(r->services);
    free(r);
}

static int on_readyz(h2o_handler_t *self, h2o_req_t *req)
{
    gw_thread *t = gw_thread_of(req);
    readiness *r = calloc(1, sizeof(*r) + gw.nservices * sizeof(readiness_probe));
    if (r == NULL)
        abort();
    r->req = req;
    r->ready = true;
    r->services = json_object();
    r->waiting = gw.nservices;
    readiness_guard *g = h2o_mem_alloc_shared(&req->pool, sizeof(*g), readiness_disposed);
    g->r = r;
    r->guard = g;
    if (gw.nservices == 0) {
        gw_send_json(req, 200, H2O_STRLIT("{\"ready\":true,\"services\":{}}"));
        g->r = NULL;
        json_decref(r->services);
        free(r);
        return 0;
    }
    uint8_t empty[1];
    for (size_t i = 0; i < gw.nservices; i++) {
        char method[] = "kreide.Health/Check";
        kr_rpc_request rq = {
            .method = method,
            .request_id = gw_request_id(req),
            .deadline_ms = kr_now_ms() + 1000,
            .body = empty,
            .body_len = 0,
        };
        r->probes[i].r = r;
        r->probes[i].index = i;
        kr_rpc_h2o_call(t->rpc, gw.services[i].client, &rq, on_probe, &r->probes[i]);
    }
    return 0;
}

static void register_handler(h2o_hostconf_t *hostconf, const char *path, int (*fn)(h2o_handler_t *, h2o_req_t *))
{
    h2o_pathconf_t *pc = h2o_config_register_path(hostconf, path, 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof(*h));
    h->on_req = fn;
    gw_access_log_register(pc);
}

void gw_ops_register(h2o_hostconf_t *hostconf)
{
    register_handler(hostconf, "/healthz", on_healthz);
    register_handler(hostconf, "/readyz", on_readyz);
    register_handler(hostconf, "/metrics", on_metrics);
    register_handler(hostconf, "/api/v1/openapi.json", on_openapi);
}

/* ------------------------------------------------------------ access log */

static void log_access(h2o_logger_t *self, h2o_req_t *req)
{
    struct timeval now;
    gettimeofday(&now, NULL);
    double ms = (double)(now.tv_sec - req->timestamps.request_begin_at.tv_sec) * 1e3 +
                (double)(now.tv_usec - req->timestamps.request_begin_at.tv_usec) / 1e3;
    kr_histogram_observe(kr_metrics_histogram("kreide_http_request_duration_seconds", "HTTP request latency", NULL,
                                              kr_metrics_latency_bounds, kr_metrics_latency_nbounds),
                         ms / 1e3);
    if (!kr_log_enabled(KR_LOG_INFO))
        return;
    /* The client's address is personal data: it is not logged. */
    ssize_t i = h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("x-request-id"), -1);
    json_t *j = json_pack("{s:s, s:s%, s:s%, s:i, s:I, s:f, s:s%}", "msg", "http", "method", req->method.base, req->method.len,
                          "path", req->path_normalized.base, req->path_normalized.len, "status", req->res.status, "bytes",
                          (json_int_t)req->bytes_sent, "duration_ms", ms, "request_id",
                          i >= 0 ? req->res.headers.entries[i].value.base : "", i >= 0 ? req->res.headers.entries[i].value.len : 0);
    if (j == NULL) /* a path that is not UTF-8 */
        return;
    char *text = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(j);
    if (text != NULL && strlen(text) > 2)
        kr_log_raw(KR_LOG_INFO, text + 1, strlen(text) - 2);
    free(text);
}

void gw_access_log_register(h2o_pathconf_t *pathconf)
{
    h2o_logger_t *l = h2o_create_logger(pathconf, sizeof(*l));
    l->log_access = log_access;
}
