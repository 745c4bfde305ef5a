/* The calls messaging makes to identity. Each goes out in an envelope
 * sealed with the internal key, as a SERVICE caller (client id
 * "messaging") holding the school_admin role at the one school the call is
 * about: identity then answers exactly what a school admin of that school
 * may read, and nothing of other schools. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kr_id.h"
#include "kr_log.h"
#include "kr_seal.h"
#include "messaging.h"

#define PAGE_LIMIT 500
#define MAX_PAGES 200

struct st_msg_identity_t {
    kr_rpc_client *client;
    int64_t timeout_ms;
};

msg_identity *msg_identity_new(const char *urls, const kr_keyring *keys, int64_t timeout_ms, char *err, size_t errlen)
{
    msg_identity *id = calloc(1, sizeof(*id));
    if (id == NULL)
        abort();
    if (kr_rpc_client_new("identity", urls, keys, &id->client, err, errlen) != 0) {
        free(id);
        return NULL;
    }
    id->timeout_ms = timeout_ms;
    return id;
}

bool msg_identity_connected(const msg_identity *id)
{
    return id != NULL && kr_rpc_client_peers(id->client) > 0;
}

void msg_identity_free(msg_identity *id)
{
    if (id == NULL)
        return;
    kr_rpc_client_free(id->client);
    free(id);
}

/* One call; on OK *out is the unpacked reply from `arena`. */
static msg_id_result call(msg_identity *id, kr_arena *arena, const char *school_id, const char *method, const ProtobufCMessage *in,
                          const ProtobufCMessageDescriptor *out_desc, ProtobufCMessage **out)
{
    size_t n = protobuf_c_message_get_packed_size(in);
    uint8_t *body = kr_arena_alloc(arena, n ? n : 1);
    protobuf_c_message_pack(in, body);
    char *roles[] = {"school_admin"};
    Kreide__CallerSchool school = KREIDE__CALLER_SCHOOL__INIT;
    school.school_id = (char *)school_id;
    school.roles = roles;
    school.n_roles = 1;
    Kreide__CallerSchool *schools[] = {&school};
    Kreide__Caller caller = KREIDE__CALLER__INIT;
    caller.kind = KREIDE__CALLER__KIND__SERVICE;
    caller.client_id = MSG_SERVICE_CLIENT_ID;
    caller.schools = schools;
    caller.n_schools = 1;
    /* Carry the request id of the call that led here, for the logs. */
    const char *rid = kr_log_request_id();
    kr_uuid_str fresh;
    if (rid[0] == '\0') {
        kr_uuid7_new(&fresh);
        rid = fresh.s;
    }
    char full[128];
    snprintf(full, sizeof(full), "kreide.identity.Identity/%s", method);
    kr_rpc_request req = {
        .method = full,
        .request_id = rid,
        .deadline_ms = kr_now_ms() + id->timeout_ms,
        .caller = &caller,
        .body = body,
        .body_len = n,
    };
    kr_rpc_result *res = kr_rpc_call_sync(id->client, &req);
    msg_id_result rv = MSG_ID_UNAVAILABLE;
    if (res->status == KREIDE__STATUS__OK) {
        ProtobufCAllocator alloc = kr_arena_allocator(arena);
        *out = protobuf_c_message_unpack(out_desc, &alloc, res->body_len, res->body);
        rv = *out != NULL ? MSG_ID_OK : MSG_ID_UNAVAILABLE;
        if (*out == NULL)
            kr_log(KR_LOG_WARN, "identity reply does not decode", "method", method, NULL);
    } else if (res->status == KREIDE__STATUS__NOT_FOUND || res->status == KREIDE__STATUS__PERMISSION_DENIED) {
        rv = MSG_ID_NOT_FOUND;
    } else {
        kr_log(KR_LOG_WARN, "identity call failed", "method", method, "error", res->error_code, "message", res->message, NULL);
    }
    kr_rpc_result_free(res);
    return rv;
}

msg_id_result msg_identity_person(msg_identity *id, kr_arena *arena, const char *school_id, const char *user_id, unsigned *roles,
                                  const char **display_name)
{
    Kreide__Identity__GetUserRequest in = KREIDE__IDENTITY__GET_USER_REQUEST__INIT;
    in.id = (char *)user_id;
    ProtobufCMessage *out = NULL;
    msg_id_result rv = call(id, arena, school_id, "GetUser", &in.base, &kreide__identity__user__descriptor, &out);
    if (rv != MSG_ID_OK)
        return rv;
    const Kreide__Identity__User *u = (const Kreide__Identity__User *)out;
    *roles = 0;
    for (size_t i = 0; i < u->n_contexts; i++) {
        const Kreide__Identity__PersonContext *c = u->contexts[i];
        if (strcasecmp(c->school_id, school_id) != 0)
            continue;
        static const unsigned bits[] = {
            0, MSG_ROLE_PUPIL, MSG_ROLE_TEACHER, MSG_ROLE_PARENT, MSG_ROLE_STAFF, MSG_ROLE_HEAD, MSG_ROLE_SCHOOL_ADMIN};
        if ((unsigned)c->role < sizeof(bits) / sizeof(bits[0]))
            *roles |= bits[c->role];
    }
    *display_name = u->display_name;
    return *roles != 0 ? MSG_ID_OK : MSG_ID_NOT_FOUND;
}

msg_id_result msg_identity_school_kind(msg_identity *id, kr_arena *arena, const char *school_id, int *kind)
{
    Kreide__Identity__GetSchoolRequest in = KREIDE__IDENTITY__GET_SCHOOL_REQUEST__INIT;
    in.id = (char *)school_id;
    ProtobufCMessage *out = NULL;
    msg_id_result rv = call(id, arena, school_id, "GetSchool", &in.base, &kreide__identity__school__descriptor, &out);
    if (rv == MSG_ID_OK)
        *kind = (int)((const Kreide__Identity__School *)out)->kind;
    return rv;
}

static const char *group_kind_name(Kreide__Identity__GroupKind k)
{
    switch (k) {
    case KREIDE__IDENTITY__GROUP_KIND__CLASS:
        return "class";
    case KREIDE__IDENTITY__GROUP_KIND__COURSE:
        return "course";
    case KREIDE__IDENTITY__GROUP_KIND__CLUB:
        return "club";
    case KREIDE__IDENTITY__GROUP_KIND__STAFF_ROOM:
        return "staff";
    case KREIDE__IDENTITY__GROUP_KIND__PARENTS:
        return "parents";
    default:
        return "";
    }
}

msg_id_result msg_identity_groups(msg_identity *id, kr_arena *arena, const char *school_id, msg_id_group **out, size_t *n)
{
    size_t cap = 64;
    *n = 0;
    *out = kr_arena_alloc(arena, sizeof(**out) * cap);
    const char *cursor = "";
    for (int page = 0; page < MAX_PAGES; page++) {
        Kreide__PageRequest pr = KREIDE__PAGE_REQUEST__INIT;
        pr.limit = PAGE_LIMIT;
        pr.cursor = (char *)cursor;
        Kreide__Identity__ListGroupsRequest in = KREIDE__IDENTITY__LIST_GROUPS_REQUEST__INIT;
        in.school_id = (char *)school_id;
        in.page = &pr;
        ProtobufCMessage *o = NULL;
        msg_id_result rv = call(id, arena, school_id, "ListGroups", &in.base, &kreide__identity__list_groups_reply__descriptor, &o);
        if (rv != MSG_ID_OK)
            return rv;
        const Kreide__Identity__ListGroupsReply *reply = (const Kreide__Identity__ListGroupsReply *)o;
        for (size_t i = 0; i < reply->n_groups; i++) {
            if (*n == cap) {
                msg_id_group *grown = kr_arena_alloc(arena, sizeof(*grown) * cap * 2);
                memcpy(grown, *out, sizeof(*grown) * cap);
                *out = grown;
                cap *= 2;
            }
            const Kreide__Identity__Group *g = reply->groups[i];
            (*out)[(*n)++] = (msg_id_group){.id = g->id, .kind = group_kind_name(g->kind), .name = g->name};
        }
        if (reply->page == NULL || reply->page->next_cursor[0] == '\0')
            return MSG_ID_OK;
        cursor = reply->page->next_cursor;
    }
    return MSG_ID_OK;
}

msg_id_result msg_identity_members(msg_identity *id, kr_arena *arena, const char *school_id, const char *group_id,
                                   msg_id_member **out, size_t *n)
{
    size_t cap = 64;
    *n = 0;
    *out = kr_arena_alloc(arena, sizeof(**out) * cap);
    const char *cursor = "";
    for (int page = 0; page < MAX_PAGES; page++) {
        Kreide__PageRequest pr = KREIDE__PAGE_REQUEST__INIT;
        pr.limit = PAGE_LIMIT;
        pr.cursor = (char *)cursor;
        Kreide__Identity__ListMembersRequest in = KREIDE__IDENTITY__LIST_MEMBERS_REQUEST__INIT;
        in.group_id = (char *)group_id;
        in.page = &pr;
        ProtobufCMessage *o = NULL;
        msg_id_result rv =
            call(id, arena, school_id, "ListMembers", &in.base, &kreide__identity__list_members_reply__descriptor, &o);
        if (rv != MSG_ID_OK)
            return rv;
        const Kreide__Identity__ListMembersReply *reply = (const Kreide__Identity__ListMembersReply *)o;
        for (size_t i = 0; i < reply->n_members; i++) {
            if (*n == cap) {
                msg_id_member *grown = kr_arena_alloc(arena, sizeof(*grown) * cap * 2);
                memcpy(grown, *out, sizeof(*grown) * cap);
                *out = grown;
                cap *= 2;
            }
            const Kreide__Identity__Member *m = reply->members[i];
            (*out)[(*n)++] = (msg_id_member){.user_id = m->user_id,
                                             .display_name = m->display_name,
                                             .leader = m->role == KREIDE__IDENTITY__MEMBER_ROLE__LEADER,
                                             .valid_from = m->valid_from,
                                             .valid_to = m->valid_to};
        }
        if (reply->page == NULL || reply->page->next_cursor[0] == '\0')
            return MSG_ID_OK;
        cursor = reply->page->next_cursor;
    }
    return MSG_ID_OK;
}

bool msg_membership_current(const char *valid_from, const char *valid_to, const char *today)
{
    /* YYYY-MM-DD compares as text. */
    if (valid_from[0] != '\0' && strcmp(valid_from, today) > 0)
        return false;
    if (valid_to[0] != '\0' && strcmp(valid_to, today) < 0)
        return false;
    return true;
}
