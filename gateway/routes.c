/* The route table, path matching and the OpenAPI document built from both. */
#include <stdio.h>
#include <string.h>

#include "gateway.h"
#include "kr_openapi.h"
#include "kr_url.h"

/* Every JSON API route. Adding an endpoint is one line here plus the RPC in
 * the service's .proto: the body, parameters and response are transcoded from
 * the method's descriptors, and the OpenAPI document follows by itself. */
static gw_route routes[] = {
    {"POST", "/api/v1/schools", "identity", "CreateSchool", GW_AUTH_BEARER, 201, "Create a school (operators)", NULL, NULL, NULL,
     NULL, NULL},
    {"GET", "/api/v1/schools", "identity", "ListSchools", GW_AUTH_BEARER, 200, "List schools by name (operators)", NULL, NULL, NULL,
     NULL, NULL},
    {"GET", "/api/v1/schools/{id}", "identity", "GetSchool", GW_AUTH_PUBLIC, 200, "Read a school's public record", NULL, NULL, NULL,
     NULL, NULL},
    {"POST", "/api/v1/carriers", "identity", "CreateCarrier", GW_AUTH_BEARER, 201, "Create a carrier (operators)", NULL, NULL, NULL,
     NULL, NULL},
    {"POST", "/api/v1/users", "identity", "CreateUser", GW_AUTH_BEARER, 201, "Create a user with person contexts", NULL, NULL, NULL,
     NULL, NULL},
    {"GET", "/api/v1/users/{id}", "identity", "GetUser", GW_AUTH_BEARER, 200, "Read a user", NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/schools/{school_id}/people", "identity", "AddPersonContext", GW_AUTH_BEARER, 201,
     "Give a user a role at a school", NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/schools/{school_id}/groups", "identity", "CreateGroup", GW_AUTH_BEARER, 201, "Create a group", NULL, NULL,
     NULL, NULL, NULL},
    {"GET", "/api/v1/schools/{school_id}/groups", "identity", "ListGroups", GW_AUTH_BEARER, 200, "List a school's groups", NULL,
     NULL, NULL, NULL, NULL},
    {"GET", "/api/v1/schools/{school_id}/directory", "identity", "SearchDirectory", GW_AUTH_BEARER, 200,
     "Search a school's people by name prefix", NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/groups/{group_id}/members", "identity", "AddMember", GW_AUTH_BEARER, 201, "Add a member to a group", NULL,
     NULL, NULL, NULL, NULL},
    {"GET", "/api/v1/groups/{group_id}/members", "identity", "ListMembers", GW_AUTH_BEARER, 200, "List a group's members", NULL,
     NULL, NULL, NULL, NULL},
    {"DELETE", "/api/v1/groups/{group_id}/members/{user_id}", "identity", "RemoveMember", GW_AUTH_BEARER, 200,
     "Remove a member from a group", NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/guardianships", "identity", "AddGuardianship", GW_AUTH_BEARER, 201, "Link a parent to a pupil", NULL, NULL,
     NULL, NULL, NULL},
    {"GET", "/api/v1/status/identity", "identity", "Check", GW_AUTH_PUBLIC, 200,
     "Whether the identity service and its database are up", &kreide__health__descriptor, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/users/{user_id}/codes", "identity", "IssueCode", GW_AUTH_BEARER, 201,
     "Issue a one-time enrollment or reset code", NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/enroll", "identity", "EnrollWithCode", GW_AUTH_PUBLIC, 200,
     "Set a password with a user name and a one-time code", NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/oidc/clients", "identity", "CreateClient", GW_AUTH_BEARER, 201, "Register an OpenID Connect client", NULL,
     NULL, NULL, NULL, NULL},
    {"GET", "/api/v1/oidc/clients/{client_id}", "identity", "GetClient", GW_AUTH_BEARER, 200,
     "Read an OpenID Connect client's registration", NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/me/totp", "identity", "SetupTotp", GW_AUTH_BEARER, 200,
     "Start setting up one's own TOTP second factor (a new secret)", NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/me/totp/confirm", "identity", "ConfirmTotp", GW_AUTH_BEARER, 200,
     "Switch one's own TOTP second factor on with a first code", NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/me/totp/disable", "identity", "DisableTotp", GW_AUTH_BEARER, 200,
     "Switch one's own TOTP second factor off with a current code", NULL, NULL, NULL, NULL, NULL},
    /* messaging (services/messaging/README.md) */
    {"POST", "/api/v1/rooms", "messaging", "CreateRoom", GW_AUTH_BEARER, 201, "Create a direct, group or announcement room", NULL,
     NULL, NULL, NULL, NULL},
    {"GET", "/api/v1/rooms", "messaging", "ListRooms", GW_AUTH_BEARER, 200, "List the caller's rooms with unread counts", NULL,
     NULL, NULL, NULL, NULL},
    {"GET", "/api/v1/rooms/{room_id}", "messaging", "GetRoom", GW_AUTH_BEARER, 200, "Read a room with its members and pins", NULL,
     NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/rooms/{room_id}/members", "messaging", "AddRoomMembers", GW_AUTH_BEARER, 200, "Add people to a room", NULL,
     NULL, NULL, NULL, NULL},
    {"DELETE", "/api/v1/rooms/{room_id}/members/{user_id}", "messaging", "RemoveRoomMember", GW_AUTH_BEARER, 200,
     "Remove someone from a room, or leave it", NULL, NULL, NULL, NULL, NULL},
    {"PUT", "/api/v1/rooms/{room_id}/retention", "messaging", "SetRetention", GW_AUTH_BEARER, 200,
     "Set how many days a room keeps its history", NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/rooms/{room_id}/messages", "messaging", "SendMessage", GW_AUTH_BEARER, 201,
     "Send a message (idempotent by txn_id)", NULL, NULL, NULL, NULL, NULL},
    {"GET", "/api/v1/rooms/{room_id}/events", "messaging", "ListEvents", GW_AUTH_BEARER, 200,
     "A room's history, paged by position in either direction", NULL, NULL, NULL, NULL, NULL},
    {"GET", "/api/v1/events", "messaging", "ListEvents", GW_AUTH_BEARER, 200, "The caller's events across rooms after a position",
     NULL, NULL, NULL, NULL, NULL},
    {"GET", "/api/v1/rooms/{room_id}/search", "messaging", "SearchRoom", GW_AUTH_BEARER, 200, "Search a room's messages", NULL,
     NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/rooms/{room_id}/read", "messaging", "MarkRead", GW_AUTH_BEARER, 200,
     "Mark a room read up to a position; confirm an announcement", NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/rooms/{room_id}/typing", "messaging", "SetTyping", GW_AUTH_BEARER, 200, "Tell the room the caller is typing",
     NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/rooms/{room_id}/polls", "messaging", "CreatePoll", GW_AUTH_BEARER, 201, "Start a poll (idempotent by txn_id)",
     NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/rooms/{room_id}/lock", "messaging", "LockRoom", GW_AUTH_BEARER, 200, "Lock or unlock a room (moderators)",
     NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/rooms/{room_id}/members/{user_id}/mute", "messaging", "MuteMember", GW_AUTH_BEARER, 200,
     "Mute or unmute a member (moderators)", NULL, NULL, NULL, NULL, NULL},
    {"PATCH", "/api/v1/messages/{message_id}", "messaging", "EditMessage", GW_AUTH_BEARER, 200, "Edit one's own message", NULL,
     NULL, NULL, NULL, NULL},
    {"DELETE", "/api/v1/messages/{message_id}", "messaging", "DeleteMessage", GW_AUTH_BEARER, 200,
     "Delete a message (its author or a moderator); a tombstone stays", NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/messages/{message_id}/reactions", "messaging", "React", GW_AUTH_BEARER, 200, "React to a message", NULL, NULL,
     NULL, NULL, NULL},
    {"DELETE", "/api/v1/messages/{message_id}/reactions/{key}", "messaging", "Unreact", GW_AUTH_BEARER, 200, "Take a reaction back",
     NULL, NULL, NULL, NULL, NULL},
    {"GET", "/api/v1/messages/{message_id}/receipts", "messaging", "GetReadStatus", GW_AUTH_BEARER, 200,
     "Who read and confirmed an announcement", NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/messages/{message_id}/pin", "messaging", "Pin", GW_AUTH_BEARER, 200, "Pin a message", NULL, NULL, NULL, NULL,
     NULL},
    {"DELETE", "/api/v1/messages/{message_id}/pin", "messaging", "Unpin", GW_AUTH_BEARER, 200, "Unpin a message", NULL, NULL, NULL,
     NULL, NULL},
    {"POST", "/api/v1/messages/{message_id}/reports", "messaging", "ReportMessage", GW_AUTH_BEARER, 201,
     "Report a message to the moderators and the school's admins", NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/messages/{message_id}/removal", "messaging", "RemoveMessage", GW_AUTH_BEARER, 200,
     "Remove a message as a moderator", NULL, NULL, NULL, NULL, NULL},
    {"GET", "/api/v1/polls/{poll_id}", "messaging", "GetPoll", GW_AUTH_BEARER, 200, "Read a poll with its results", NULL, NULL,
     NULL, NULL, NULL},
    {"POST", "/api/v1/polls/{poll_id}/votes", "messaging", "Vote", GW_AUTH_BEARER, 200, "Vote in a poll (or take the vote back)",
     NULL, NULL, NULL, NULL, NULL},
    {"POST", "/api/v1/polls/{poll_id}/close", "messaging", "ClosePoll", GW_AUTH_BEARER, 200, "Close a poll", NULL, NULL, NULL, NULL,
     NULL},
    {"GET", "/api/v1/schools/{school_id}/message-reports", "messaging", "ListReports", GW_AUTH_BEARER, 200,
     "Reports of messages at a school", NULL, NULL, NULL, NULL, NULL},
    {"GET", "/api/v1/schools/{school_id}/messaging-policy", "messaging", "GetSchoolPolicy", GW_AUTH_BEARER, 200,
     "A school's messaging policy", NULL, NULL, NULL, NULL, NULL},
    {"PUT", "/api/v1/schools/{school_id}/messaging-policy", "messaging", "SetSchoolPolicy", GW_AUTH_BEARER, 200,
     "Set a school's messaging policy (school admins)", NULL, NULL, NULL, NULL, NULL},
    {"GET", "/api/v1/status/messaging", "messaging", "Check", GW_AUTH_PUBLIC, 200,
     "Whether the messaging service and its database are up", &kreide__health__descriptor, NULL, NULL, NULL, NULL},
};
static const size_t nroutes = sizeof(routes) / sizeof(routes[0]);

const gw_route *gw_routes_all(size_t *n)
{
    *n = nroutes;
    return routes;
}

int gw_routes_init(gw_service *services, size_t nservices, char *err, size_t errlen)
{
    for (size_t i = 0; i < nroutes; i++) {
        gw_route *r = &routes[i];
        r->_svc = NULL;
        for (size_t s = 0; s < nservices; s++) {
            if (strcmp(services[s].name, r->service) == 0)
                r->_svc = &services[s];
        }
        if (r->_svc == NULL) {
            snprintf(err, errlen, "route %s %s: no service '%s'", r->method, r->pattern, r->service);
            return -1;
        }
        const ProtobufCServiceDescriptor *sd = r->iface ? r->iface : r->_svc->desc;
        r->_md = protobuf_c_service_descriptor_get_method_by_name(sd, r->rpc);
        if (r->_md == NULL) {
            snprintf(err, errlen, "route %s %s: %s has no method %s", r->method, r->pattern, sd->name, r->rpc);
            return -1;
        }
        free(r->_rpc_method);
        if (asprintf(&r->_rpc_method, "%s/%s", sd->name, r->rpc) < 0)
            abort();
        r->_m_ok = gw_request_counter(r->pattern, r->success_status);
        /* Every {param} must name a field of the input message. */
        const char *p = r->pattern;
        while ((p = strchr(p, '{')) != NULL) {
            const char *q = strchr(p, '}');
            char name[64];
            snprintf(name, sizeof(name), "%.*s", (int)(q - p - 1), p + 1);
            if (protobuf_c_message_descriptor_get_field_by_name(r->_md->input, name) == NULL) {
                snprintf(err, errlen, "route %s %s: %s has no field '%s'", r->method, r->pattern, r->_md->input->name, name);
                return -1;
            }
            p = q;
        }
    }
    return 0;
}

/* Decodes %XX escapes of one path segment into the pool; NULL when malformed
 * or when it decodes to a '/' or a NUL, which never belong in an id. */
static char *decode_segment(h2o_mem_pool_t *pool, const char *s, size_t len, size_t *outlen)
{
    char *out = h2o_mem_alloc_pool(pool, len + 1);
    long n = kr_url_decode(s, len, out, len + 1, KR_URL_NO_SLASH);
    if (n < 0)
        return NULL;
    *outlen = (size_t)n;
    return out;
}

/* Matches one pattern against a path, capturing {params}. */
static bool match_pattern(h2o_mem_pool_t *pool, const char *pattern, h2o_iovec_t path, gw_params *params)
{
    const char *p = pattern;
    size_t i = 0;
    params->n = 0;
    while (*p != '\0') {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            size_t start = i;
            while (i < path.len && path.base[i] != '/')
                i++;
            if (i == start || params->n == GW_MAX_PARAMS)
                return false;
            size_t len;
            char *v = decode_segment(pool, path.base + start, i - start, &len);
            if (v == NULL)
                return false;
            params->names[params->n] = h2o_strdup(pool, p + 1, (size_t)(close - p - 1)).base;
            params->values[params->n] = h2o_iovec_init(v, len);
            params->n++;
            p = close + 1;
        } else {
            if (i >= path.len || path.base[i] != *p)
                return false;
            i++;
            p++;
        }
    }
    /* A single trailing slash is forgiven. */
    return i == path.len || (i + 1 == path.len && path.base[i] == '/');
}

gw_match_result gw_routes_match(h2o_mem_pool_t *pool, h2o_iovec_t method, h2o_iovec_t path, const gw_route **route,
                                gw_params *params, char *allow, size_t allowlen)
{
    gw_match_result res = GW_MATCH_NONE;
    size_t alen = 0;
    allow[0] = '\0';
    for (size_t i = 0; i < nroutes; i++) {
        gw_params tmp;
        if (!match_pattern(pool, routes[i].pattern, path, &tmp))
            continue;
        if (h2o_memis(method.base, method.len, routes[i].method, strlen(routes[i].method))) {
            *route = &routes[i];
            *params = tmp;
            return GW_MATCH_OK;
        }
        res = GW_MATCH_WRONG_METHOD;
        if (strstr(allow, routes[i].method) == NULL)
            alen +=
                (size_t)snprintf(allow + alen, alen < allowlen ? allowlen - alen : 0, "%s%s", alen ? ", " : "", routes[i].method);
    }
    return res;
}

/* ------------------------------------------------------------ OpenAPI */

static json_t *error_response(const char *description)
{
    return json_pack("{s:s, s:{s:{s:{s:s}}}}", "description", description, "content", "application/json", "schema", "$ref",
                     "#/components/schemas/Error");
}

/* Query parameters of a GET: the input's scalar fields not in the path, and
 * one level into nested messages as "page.limit". */
static void add_query_params(json_t *params, const ProtobufCMessageDescriptor *in, const char *pattern, json_t *schemas)
{
    for (unsigned f = 0; f < in->n_fields; f++) {
        const ProtobufCFieldDescriptor *fd = &in->fields[f];
        char needle[80];
        snprintf(needle, sizeof(needle), "{%s}", fd->name);
        if (strstr(pattern, needle) != NULL)
            continue;
        if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
            const ProtobufCMessageDescriptor *sub = fd->descriptor;
            for (unsigned g = 0; g < sub->n_fields; g++) {
                if (sub->fields[g].type == PROTOBUF_C_TYPE_MESSAGE)
                    continue;
                char name[160];
                snprintf(name, sizeof(name), "%s.%s", fd->name, sub->fields[g].name);
                json_array_append_new(params, json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", name, "in", "query", "required", 0,
                                                        "schema", "type", "string"));
            }
            continue;
        }
        json_array_append_new(params, json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", fd->name, "in", "query", "required", 0,
                                                "schema", "type", fd->type == PROTOBUF_C_TYPE_BOOL ? "boolean" : "string"));
    }
    (void)schemas;
}

json_t *gw_openapi_build(const char *server_url)
{
    json_t *schemas = json_object();
    json_object_set_new(schemas, "Error",
                        json_pack("{s:s, s:[s], s:{s:{s:s, s:[s,s,s,s], s:{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}}}}", "type",
                                  "object", "required", "error", "properties", "error", "type", "object", "required", "code",
                                  "message", "field", "request_id", "properties", "code", "type", "string", "message", "type",
                                  "string", "field", "type", "string", "request_id", "type", "string"));
    json_t *paths = json_object();
    for (size_t i = 0; i < nroutes; i++) {
        const gw_route *r = &routes[i];
        json_t *item = json_object_get(paths, r->pattern);
        if (item == NULL) {
            item = json_object();
            json_object_set_new(paths, r->pattern, item);
        }
        json_t *op = json_object();
        char lower[16];
        size_t k;
        for (k = 0; r->method[k] && k < sizeof(lower) - 1; k++)
            lower[k] = (char)(r->method[k] | 0x20);
        lower[k] = '\0';
        json_object_set_new(item, lower, op);
        json_object_set_new(op, "summary", json_string(r->summary));
        json_object_set_new(op, "operationId", json_string(r->rpc));
        json_object_set_new(op, "tags", json_pack("[s]", r->service));
        json_object_set_new(op, "x-kreide-rpc", json_sprintf("%s/%s", (r->iface ? r->iface : r->_svc->desc)->name, r->rpc));

        json_t *params = json_array();
        for (const char *p = strchr(r->pattern, '{'); p != NULL; p = strchr(p + 1, '{')) {
            const char *q = strchr(p, '}');
            json_array_append_new(params, json_pack("{s:s%, s:s, s:b, s:{s:s}}", "name", p + 1, (size_t)(q - p - 1), "in", "path",
                                                    "required", 1, "schema", "type", "string"));
        }
        bool has_body = strcmp(r->method, "GET") != 0 && strcmp(r->method, "DELETE") != 0;
        if (!has_body)
            add_query_params(params, r->_md->input, r->pattern, schemas);
        if (json_array_size(params) > 0)
            json_object_set(op, "parameters", params);
        json_decref(params);
        if (has_body)
            json_object_set_new(op, "requestBody",
                                json_pack("{s:b, s:{s:{s:o}}}", "required", 1, "content", "application/json", "schema",
                                          kr_openapi_schema_ref(r->_md->input, schemas)));
        json_t *responses = json_object();
        char code[8];
        snprintf(code, sizeof(code), "%d", r->success_status);
        json_object_set_new(responses, code,
                            json_pack("{s:s, s:{s:{s:o}}}", "description", "success", "content", "application/json", "schema",
                                      kr_openapi_schema_ref(r->_md->output, schemas)));
        json_object_set_new(responses, "400", error_response("malformed or invalid input"));
        if (r->auth == GW_AUTH_BEARER) {
            json_object_set_new(responses, "401", error_response("missing or invalid bearer token"));
            json_object_set_new(responses, "403", error_response("not allowed for this caller"));
            json_object_set_new(op, "security", json_pack("[{s:[]}]", "bearer"));
        }
        json_object_set_new(responses, "404", error_response("not found"));
        json_object_set_new(responses, "503", error_response("the service is unavailable"));
        json_object_set_new(responses, "default", error_response("error"));
        json_object_set_new(op, "responses", responses);
    }
    return json_pack("{s:s, s:{s:s, s:s, s:s}, s:[{s:s}], s:o, s:{s:o, s:{s:{s:s, s:s, s:s}}}}", "openapi", "3.0.3", "info",
                     "title", "Kreide API", "version", "1", "description",
                     "The JSON API of the Kreide gateway, generated from its route table and protobuf descriptors.", "servers",
                     "url", server_url, "paths", paths, "components", "schemas", schemas, "securitySchemes", "bearer", "type",
                     "http", "scheme", "bearer", "bearerFormat", "JWT");
}
