/* The JSON API handler: route, authenticate, transcode, call, answer. */
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "kr_json.h"
#include "kr_log.h"
#include "kr_url.h"

/* A call in flight. Lives outside the request's pool because the request
 * may be gone (client disconnected) when the reply arrives. */
typedef struct st_pending_t pending;

/* Lives in the request's pool; tells `pending` when the request is freed. */
typedef struct {
    pending *p;
} request_guard;

struct st_pending_t {
    h2o_req_t *req; /* NULL once the request was disposed */
    request_guard *guard;
    const gw_route *route;
};

static void on_request_disposed(void *arg)
{
    request_guard *g = arg;
    if (g->p != NULL)
        g->p->req = NULL;
}

static bool is_json_content_type(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i < 0)
        return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    static const char json[] = "application/json";
    return v.len >= sizeof(json) - 1 && h2o_lcstris(v.base, sizeof(json) - 1, json, sizeof(json) - 1) &&
           (v.len == sizeof(json) - 1 || v.base[sizeof(json) - 1] == ';' || v.base[sizeof(json) - 1] == ' ');
}

/* Decodes application/x-www-form-urlencoded text into a new NUL-terminated
 * string (malloc); NULL when malformed. */
static char *form_decode(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    if (out == NULL)
        abort();
    if (kr_url_decode(s, len, out, len + 1, KR_URL_FORM) < 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* True when `key` ("a" or "a.b") names a bool field of `desc`. */
static bool is_bool_param(const ProtobufCMessageDescriptor *desc, const char *key)
{
    const char *dot = strchr(key, '.');
    char head[129];
    snprintf(head, sizeof(head), "%.*s", dot ? (int)(dot - key) : (int)strlen(key), key);
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, head);
    if (f != NULL && dot != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE)
        f = protobuf_c_message_descriptor_get_field_by_name(f->descriptor, dot + 1);
    else if (dot != NULL)
        f = NULL;
    return f != NULL && f->type == PROTOBUF_C_TYPE_BOOL && f->label != PROTOBUF_C_LABEL_REPEATED;
}

/* Sets obj[path] = value where path may be "a.b" (one level of nesting);
 * a repeated key becomes an array. A query string carries only text, so
 * "true" and "false" for a bool field of `desc` become JSON booleans.
 * Returns false when the key is malformed. */
static bool set_param(json_t *obj, const ProtobufCMessageDescriptor *desc, const char *key, const char *value)
{
    const char *dot = strchr(key, '.');
    size_t keylen = strlen(key);
    if (keylen == 0 || keylen > 128 || (dot != NULL && (dot == key || dot[1] == '\0' || strchr(dot + 1, '.') != NULL)))
        return false;
    bool is_bool = (strcmp(value, "true") == 0 || strcmp(value, "false") == 0) && is_bool_param(desc, key);
    json_t *v = is_bool ? json_boolean(value[0] == 't') : json_string(value); /* NULL when the value is not UTF-8 */
    if (v == NULL)
        return false;
    json_t *target = obj;
    if (dot != NULL) {
        char head[129];
        snprintf(head, sizeof(head), "%.*s", (int)(dot - key), key);
        target = json_object_get(obj, head);
        if (target == NULL) {
            target = json_object();
            /* On failure (a key that is not UTF-8) jansson drops `target`. */
            if (json_object_set_new(obj, head, target) != 0)
                target = NULL;
        }
        if (!json_is_object(target)) {
            json_decref(v);
            return false;
        }
        key = dot + 1;
    }
    json_t *old = json_object_get(target, key);
    if (old == NULL)
        return json_object_set_new(target, key, v) == 0;
    if (json_is_array(old))
        return json_array_append_new(old, v) == 0;
    json_t *arr = json_array();
    json_array_append(arr, old);
    json_array_append_new(arr, v);
    return json_object_set_new(target, key, arr) == 0;
}

/* Adds the query string's parameters to `obj`; sets *bad to the offending
 * parameter when one is malformed. */
static bool add_query(h2o_req_t *req, json_t *obj, const ProtobufCMessageDescriptor *desc, const char **bad)
{
    if (req->query_at == SIZE_MAX)
        return true;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        if (amp == NULL)
            amp = end;
        const char *eq = memchr(q, '=', (size_t)(amp - q));
        if (amp > q) {
            const char *kend = eq ? eq : amp;
            char *k = form_decode(q, (size_t)(kend - q));
            char *v = eq ? form_decode(eq + 1, (size_t)(amp - eq - 1)) : strdup("");
            bool ok = k != NULL && v != NULL && set_param(obj, desc, k, v);
            if (!ok)
                *bad = h2o_strdup(&req->pool, q, (size_t)(kend - q)).base;
            free(k);
            free(v);
            if (!ok)
                return false;
        }
        q = amp + 1;
    }
    return true;
}

const char *gw_peer_address(h2o_req_t *req)
{
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    char *buf = h2o_mem_alloc_pool(&req->pool, NI_MAXHOST);
    if (len == 0 || h2o_socket_getnumerichost((struct sockaddr *)&ss, len, buf) == SIZE_MAX)
        return "";
    return buf;
}

static void send_rpc_result(h2o_req_t *req, const gw_route *route, kr_rpc_result *res)
{
    if (res->status != KREIDE__STATUS__OK) {
        int status = kr_rpc_http_status(res->status);
        gw_count_request(route->pattern, status);
        gw_send_error(req, status, res->error_code, res->message, res->field);
        return;
    }
    ProtobufCMessage *out = protobuf_c_message_unpack(route->_md->output, NULL, res->body_len, res->body);
    if (out == NULL) {
        gw_count_request(route->pattern, 502);
        gw_send_error(req, 502, "gateway.bad_reply", "the service sent a reply that does not decode", NULL);
        return;
    }
    size_t len = 0;
    char *json = kr_json_encode(out, &len);
    protobuf_c_message_free_unpacked(out, NULL);
    if (json == NULL) {
        gw_count_request(route->pattern, 500);
        gw_send_error(req, 500, "gateway.encode_failed", "the reply cannot be written as JSON", NULL);
        return;
    }
    kr_counter_add(route->_m_ok, 1);
    gw_send_json(req, route->success_status, json, len);
    free(json);
}

static void on_rpc_done(void *arg, kr_rpc_result *res)
{
    pending *p = arg;
    if (p->req != NULL) {
        p->guard->p = NULL;
        send_rpc_result(p->req, p->route, res);
    }
    kr_rpc_result_free(res);
    free(p);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    gw_thread *t = gw_thread_of(req);
    const char *rid = gw_request_id(req);
    h2o_iovec_t path = req->path_normalized;

    const gw_route *route;
    gw_params params;
    char allow[64];
    switch (gw_routes_match(&req->pool, req->method, path, &route, &params, allow, sizeof(allow))) {
    case GW_MATCH_NONE:
        gw_count_request("unmatched", 404);
        gw_send_error(req, 404, "api.not_found", "no such API endpoint", NULL);
        return 0;
    case GW_MATCH_WRONG_METHOD:
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, h2o_strdup(&req->pool, allow, SIZE_MAX).base,
                       strlen(allow));
        gw_count_request("unmatched", 405);
        gw_send_error(req, 405, "api.method_not_allowed", "this endpoint does not accept that method", NULL);
        return 0;
    case GW_MATCH_OK:
        break;
    }

    Kreide__Caller caller = KREIDE__CALLER__INIT;
    const char *why = NULL;
    gw_auth_result a = gw_auth_caller(req, &caller, &why);
    if (a == GW_AUTH_INVALID || (a == GW_AUTH_NONE_GIVEN && route->auth == GW_AUTH_BEARER)) {
        const char *challenge = a == GW_AUTH_INVALID ? "Bearer error=\"invalid_token\"" : "Bearer";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, challenge, strlen(challenge));
        gw_count_request(route->pattern, 401);
        gw_send_error(req, 401, a == GW_AUTH_INVALID ? "auth.invalid_token" : "auth.required",
                      a == GW_AUTH_INVALID ? why : "this endpoint needs a bearer token", NULL);
        return 0;
    }

    /* Body (if any) + path parameters + query parameters -> one JSON object. */
    json_t *obj;
    if (req->entity.base != NULL && req->entity.len > 0) {
        if (req->entity.len > gw.max_body) {
            gw_count_request(route->pattern, 413);
            gw_send_error(req, 413, "request.too_large", "the request body is larger than this server accepts", NULL);
            return 0;
        }
        if (!is_json_content_type(req)) {
            gw_count_request(route->pattern, 415);
            gw_send_error(req, 415, "request.unsupported_media_type", "the body must be application/json", NULL);
            return 0;
        }
        json_error_t jerr;
        obj = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &jerr);
        if (obj == NULL) {
            char msg[300];
            snprintf(msg, sizeof(msg), "malformed JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
            gw_count_request(route->pattern, 400);
            gw_send_error(req, 400, "request.malformed_json", msg, NULL);
            return 0;
        }
        if (!json_is_object(obj)) {
            json_decref(obj);
            gw_count_request(route->pattern, 400);
            gw_send_error(req, 400, "request.malformed_json", "the body must be a JSON object", NULL);
            return 0;
        }
    } else {
        obj = json_object();
    }
    const char *bad = NULL;
    if (!add_query(req, obj, route->_md->input, &bad)) {
        json_decref(obj);
        char msg[200];
        snprintf(msg, sizeof(msg), "malformed query parameter '%.100s'", bad);
        gw_count_request(route->pattern, 400);
        gw_send_error(req, 400, "request.malformed_query", msg, bad);
        return 0;
    }
    for (size_t i = 0; i < params.n; i++)
        json_object_set_new(obj, params.names[i], json_stringn(params.values[i].base, params.values[i].len));
    /* A `client_address` field is the gateway's to fill: services throttle
     * guessing by it, so a client must not choose its own. */
    if (protobuf_c_message_descriptor_get_field_by_name(route->_md->input, "client_address") != NULL) {
        if (json_object_get(obj, "client_address") != NULL) {
            json_decref(obj);
            gw_count_request(route->pattern, 400);
            gw_send_error(req, 400, "request.invalid", "client_address is set by the server, not by the request", "client_address");
            return 0;
        }
        json_object_set_new(obj, "client_address", json_string(gw_peer_address(req)));
    }

    kr_json_error jerr;
    ProtobufCMessage *in = kr_json_decode_obj(route->_md->input, obj, &jerr);
    json_decref(obj);
    if (in == NULL) {
        gw_count_request(route->pattern, 400);
        gw_send_error(req, 400, "request.invalid", jerr.message, jerr.field);
        return 0;
    }
    size_t n = protobuf_c_message_get_packed_size(in);
    uint8_t *body = h2o_mem_alloc_pool(&req->pool, n ? n : 1);
    protobuf_c_message_pack(in, body);
    protobuf_c_message_free_unpacked(in, NULL);

    kr_rpc_request rq = {
        .method = route->_rpc_method,
        .alone = gw_rpc_alone(route->_rpc_method),
        .request_id = rid,
        .deadline_ms = kr_now_ms() + gw.rpc_timeout_ms,
        .caller = &caller,
        .body = body,
        .body_len = n,
    };
    pending *p = calloc(1, sizeof(*p));
    if (p == NULL)
        abort();
    p->req = req;
    p->route = route;
    p->guard = h2o_mem_alloc_shared(&req->pool, sizeof(request_guard), on_request_disposed);
    p->guard->p = p;
    kr_rpc_h2o_call(t->rpc, route->_svc->client, &rq, on_rpc_done, p);
    return 0;
}

void gw_api_register(h2o_pathconf_t *pathconf)
{
    h2o_handler_t *h = h2o_create_handler(pathconf, sizeof(*h));
    h->on_req = on_req;
}
