/* Rooms, their members and settings, and the schools' messaging policies. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kr_id.h"
#include "kr_log.h"
#include "messaging.h"
#include "store_sql.h"

#define ROOMS_DEFAULT_LIMIT 50
#define ROOMS_MAX_LIMIT 200
#define MAX_DIRECT_RULES (MSG_NROLES * MSG_NROLES)

static char *lower_id(kr_rpc_ctx *ctx, const char *id)
{
    char *s = kr_arena_strdup(ctx->arena, id);
    for (char *p = s; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return s;
}

/* The caller's user id in the lower case ids are compared in. */
static const char *me(kr_rpc_ctx *ctx)
{
    return lower_id(ctx, ctx->caller->user_id);
}

/* The first role name of a bit set, for messages. */
static const char *role_word(unsigned roles)
{
    for (int i = 0; i < MSG_NROLES; i++) {
        if (roles & (1u << i))
            return msg_role_name(i);
    }
    return "nobody";
}

static int check_plain(kr_rpc_ctx *ctx, const char *s, long min, long max, const char *field)
{
    long n = msg_plain_length(s);
    if (n >= min && n <= max)
        return 0;
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "messaging.invalid_text", field,
                       "%s must be %ld to %ld characters of one line of text", field, min, max);
}

static int identity_failure(kr_rpc_ctx *ctx, msg_id_result r, const char *field)
{
    if (r == MSG_ID_NOT_FOUND)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.person_not_found", field, "no such person at this school");
    return kr_rpc_fail(ctx, KREIDE__STATUS__UNAVAILABLE, "messaging.identity_unavailable", NULL,
                       "the directory is temporarily unavailable");
}

/* Reads a list of people, checked, lower-cased and without repeats or the
 * caller; each must hold a context at the school (asked of identity), whose
 * display names are remembered. */
static int people_at_school(kr_rpc_ctx *ctx, const char *school_id, char *const *ids, size_t n, size_t max, const char *field,
                            const char ***out, size_t *nout)
{
    if (n > max)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "messaging.too_many", field, "at most %zu people at once", max);
    const char **list = kr_arena_alloc(ctx->arena, sizeof(char *) * (n ? n : 1));
    const char **names = kr_arena_alloc(ctx->arena, sizeof(char *) * (n ? n : 1));
    size_t k = 0;
    const msg_app *app = ctx->app;
    for (size_t i = 0; i < n; i++) {
        char *f = kr_arena_printf(ctx->arena, "%s[%zu]", field, i);
        if (msg_check_uuid(ctx, ids[i], f) != 0)
            return -1;
        const char *id = lower_id(ctx, ids[i]);
        bool dup = strcmp(id, me(ctx)) == 0;
        for (size_t j = 0; j < k && !dup; j++)
            dup = strcmp(list[j], id) == 0;
        if (dup)
            continue;
        unsigned roles;
        const char *name = "";
        msg_id_result r = msg_identity_person(app->identity, ctx->arena, school_id, id, &roles, &name);
        if (r != MSG_ID_OK)
            return identity_failure(ctx, r, f);
        names[k] = name;
        list[k++] = id;
    }
    if (msg_store_people(ctx->pg, list, names, k) != MSG_STORE_OK)
        return msg_fail_store(ctx, MSG_STORE_ERROR, "person");
    *out = list;
    *nout = k;
    return 0;
}

static char *member_data(kr_rpc_ctx *ctx, const char *user_id, const char *role)
{
    if (role == NULL)
        return kr_arena_printf(ctx->arena, "{\"user_id\":\"%s\"}", user_id);
    return kr_arena_printf(ctx->arena, "{\"user_id\":\"%s\",\"role\":\"%s\"}", user_id, role);
}

/* Adds (or re-adds) one member by hand inside the open transaction, with
 * its event; nothing when they are already in with that role. */
static msg_store_result join_member(kr_rpc_ctx *ctx, msg_outbox *box, const char *school_id, const char *room_id,
                                    const char *user_id, const char *role)
{
    const char *params[] = {school_id, room_id, user_id, role};
    PGresult *r = msg_sql(ctx->pg, "join member by hand",
                          "WITH old AS (SELECT state, role FROM messaging.room_members WHERE room_id = $2 AND user_id = $3) "
                          "INSERT INTO messaging.room_members (school_id, room_id, user_id, role, state, source) "
                          "VALUES ($1, $2, $3, $4, 'joined', 'manual') ON CONFLICT (room_id, user_id) DO UPDATE SET "
                          "role = EXCLUDED.role, state = 'joined', left_position = NULL, "
                          "joined_at = CASE WHEN room_members.state = 'joined' THEN room_members.joined_at ELSE now() END "
                          "WHERE room_members.state <> 'joined' OR room_members.role <> EXCLUDED.role "
                          "RETURNING coalesce((SELECT state FROM old), '')",
                          4, params);
    if (r == NULL)
        return msg_sql_failure(ctx->pg);
    bool changed = PQntuples(r) == 1;
    bool was_joined = changed && strcmp(PQgetvalue(r, 0, 0), "joined") == 0;
    PQclear(r);
    if (!changed)
        return MSG_STORE_OK;
    msg_new_event ev = {
        .kind = was_joined ? "member.role" : "member.joined", .sender = me(ctx), .data = member_data(ctx, user_id, role)};
    return msg_append_to(ctx->pg, box, school_id, room_id, &ev, NULL);
}

/* --------------------------------------------------------------- create */

/* Remembers the caller's display name for member lists; best effort (a
 * name is cosmetic and follows with the next roster sync). */
static void remember_caller(kr_rpc_ctx *ctx, const char *school_id)
{
    const msg_app *app = ctx->app;
    unsigned roles;
    const char *name = NULL;
    const char *id = me(ctx);
    if (msg_identity_person(app->identity, ctx->arena, school_id, id, &roles, &name) == MSG_ID_OK)
        (void)msg_store_people(ctx->pg, &id, &name, 1);
}

static int finish_create(kr_rpc_ctx *ctx, msg_outbox *box, const char *room_id, Kreide__Messaging__Room *out)
{
    msg_publish(ctx, box, NULL);
    msg_outbox_free(box);
    msg_store_result r = msg_read_room(ctx, room_id, true, out);
    return r == MSG_STORE_OK ? 0 : msg_fail_store(ctx, r, "room");
}

static int create_direct(kr_rpc_ctx *ctx, const Kreide__Messaging__CreateRoomRequest *in, const msg_policy *policy,
                         unsigned my_roles, Kreide__Messaging__Room *out)
{
    if (in->n_member_ids != 1)
        return msg_fail_invalid(ctx, "messaging.invalid_members", "member_ids",
                                "a direct room is made with exactly one other person");
    if (in->name[0] != '\0' || in->group_id[0] != '\0')
        return msg_fail_invalid(ctx, "messaging.invalid_room", in->name[0] ? "name" : "group_id",
                                "a direct room has no name and follows no group");
    if (msg_check_uuid(ctx, in->member_ids[0], "member_ids[0]") != 0)
        return -1;
    const char *other = lower_id(ctx, in->member_ids[0]);
    if (strcmp(other, me(ctx)) == 0)
        return msg_fail_invalid(ctx, "messaging.invalid_members", "member_ids[0]", "a direct room needs another person");
    const msg_app *app = ctx->app;
    unsigned their_roles = 0;
    const char *name = "";
    msg_id_result idr = msg_identity_person(app->identity, ctx->arena, in->school_id, other, &their_roles, &name);
    if (idr != MSG_ID_OK)
        return identity_failure(ctx, idr, "member_ids[0]");
    if (!msg_direct_allowed(policy, my_roles, their_roles))
        return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "messaging.direct_not_allowed", "member_ids[0]",
                           "this school does not let a %s start a direct chat with a %s", role_word(my_roles),
                           role_word(their_roles));
    const char *names[] = {name};
    const char *ids[] = {other};
    if (msg_store_people(ctx->pg, ids, names, 1) != MSG_STORE_OK)
        return msg_fail_store(ctx, MSG_STORE_ERROR, "person");
    const char *key = strcmp(me(ctx), other) < 0 ? kr_arena_printf(ctx->arena, "%s:%s", me(ctx), other)
                                                 : kr_arena_printf(ctx->arena, "%s:%s", other, me(ctx));
    /* One room per pair and school: a second request returns the first,
     * and someone who left it is back in. */
    for (int attempt = 0; attempt < 2; attempt++) {
        msg_outbox box = {0};
        if (msg_tx_begin(ctx->pg) != MSG_STORE_OK)
            return msg_fail_store(ctx, MSG_STORE_ERROR, "room");
        const char *p1[] = {in->school_id, key};
        PGresult *r =
            msg_sql(ctx->pg, "select direct room",
                    "SELECT id::text FROM messaging.rooms WHERE school_id = $1 AND direct_key = $2 AND kind = 'direct'", 2, p1);
        msg_store_result res = r ? MSG_STORE_OK : msg_sql_failure(ctx->pg);
        char room_id[40] = "";
        if (r != NULL && PQntuples(r) == 1)
            snprintf(room_id, sizeof(room_id), "%s", PQgetvalue(r, 0, 0));
        if (r != NULL)
            PQclear(r);
        if (res == MSG_STORE_OK && room_id[0] == '\0') {
            kr_uuid_str id;
            kr_uuid7_new(&id);
            snprintf(room_id, sizeof(room_id), "%s", id.s);
            const char *p2[] = {room_id, in->school_id, key, me(ctx)};
            r = msg_sql(
                ctx->pg, "insert direct room",
                "INSERT INTO messaging.rooms (id, school_id, kind, direct_key, created_by) VALUES ($1, $2, 'direct', $3, $4)", 4,
                p2);
            res = r ? MSG_STORE_OK : msg_sql_failure(ctx->pg);
            if (r != NULL)
                PQclear(r);
            if (res == MSG_STORE_OK) {
                msg_new_event ev = {.kind = "room.created", .sender = me(ctx), .data = "{\"name\":\"\"}"};
                res = msg_append_to(ctx->pg, &box, in->school_id, room_id, &ev, NULL);
            }
        }
        if (res == MSG_STORE_OK)
            res = join_member(ctx, &box, in->school_id, room_id, me(ctx), "member");
        if (res == MSG_STORE_OK)
            res = join_member(ctx, &box, in->school_id, room_id, other, "member");
        if (res == MSG_STORE_OK)
            res = msg_commit(ctx, &box);
        else
            msg_tx_rollback(ctx->pg);
        if (res == MSG_STORE_OK) {
            kr_log(KR_LOG_INFO, "direct room ready", "room_id", room_id, NULL);
            return finish_create(ctx, &box, room_id, out);
        }
        msg_outbox_free(&box);
        if (res != MSG_STORE_CONFLICT)
            return msg_fail_store(ctx, res, "room");
        /* Made at the same moment by the other request: read it. */
    }
    return msg_fail_store(ctx, MSG_STORE_ERROR, "room");
}

/* An announcement channel following a group: made by the group's leaders
 * or the school's admins and heads. */
static int check_group_leader(kr_rpc_ctx *ctx, const char *school_id, const char *group_id, unsigned my_roles)
{
    if (msg_is_school_moderator(my_roles))
        return 0;
    const msg_app *app = ctx->app;
    msg_id_member *members;
    size_t n;
    msg_id_result r = msg_identity_members(app->identity, ctx->arena, school_id, group_id, &members, &n);
    if (r == MSG_ID_NOT_FOUND)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.group_not_found", "group_id", "no such group at this school");
    if (r != MSG_ID_OK)
        return identity_failure(ctx, r, "group_id");
    for (size_t i = 0; i < n; i++) {
        if (members[i].leader && strcasecmp(members[i].user_id, me(ctx)) == 0)
            return 0;
    }
    return msg_fail_forbidden(ctx, "only the group's leaders and the school's admins may make an announcement channel for it");
}

static int create_shared(kr_rpc_ctx *ctx, const Kreide__Messaging__CreateRoomRequest *in, const msg_policy *policy,
                         unsigned my_roles, Kreide__Messaging__Room *out)
{
    bool announcement = in->kind == KREIDE__MESSAGING__ROOM_KIND__ANNOUNCEMENT;
    if (!msg_may_create_room(policy, my_roles))
        return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "messaging.create_not_allowed", "kind",
                           "this school does not let a %s create rooms", role_word(my_roles));
    if (check_plain(ctx, in->name, 1, MSG_NAME_MAX, "name") != 0)
        return -1;
    const char *group_id = NULL;
    if (in->group_id[0] != '\0') {
        if (!announcement)
            return msg_fail_invalid(ctx, "messaging.invalid_room", "group_id",
                                    "only announcement channels follow a group by choice");
        if (msg_check_uuid(ctx, in->group_id, "group_id") != 0)
            return -1;
        if (in->n_member_ids > 0)
            return msg_fail_invalid(ctx, "messaging.invalid_members", "member_ids",
                                    "a channel that follows a group takes its members from the group");
        if (check_group_leader(ctx, in->school_id, in->group_id, my_roles) != 0)
            return -1;
        group_id = lower_id(ctx, in->group_id);
    }
    const char **members = NULL;
    size_t nmembers = 0;
    if (people_at_school(ctx, in->school_id, in->member_ids, in->n_member_ids, MSG_MAX_INITIAL_MEMBERS, "member_ids", &members,
                         &nmembers) != 0)
        return -1;
    kr_uuid_str id;
    kr_uuid7_new(&id);
    msg_outbox box = {0};
    if (msg_tx_begin(ctx->pg) != MSG_STORE_OK)
        return msg_fail_store(ctx, MSG_STORE_ERROR, "room");
    const char *kind = announcement ? "announcement" : "group";
    const char *params[] = {id.s, in->school_id, kind, in->name, in->topic, group_id, me(ctx)};
    PGresult *r = msg_sql(ctx->pg, "insert room",
                          "INSERT INTO messaging.rooms (id, school_id, kind, name, topic, group_id, created_by) "
                          "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                          7, params);
    msg_store_result res = r ? MSG_STORE_OK : msg_sql_failure(ctx->pg);
    if (r != NULL)
        PQclear(r);
    if (res == MSG_STORE_OK) {
        msg_new_event ev = {.kind = "room.created",
                            .sender = me(ctx),
                            .data = kr_arena_printf(ctx->arena, "{\"name\":%s}", msg_json_string(ctx->arena, in->name))};
        res = msg_append_to(ctx->pg, &box, in->school_id, id.s, &ev, NULL);
    }
    if (res == MSG_STORE_OK)
        res = join_member(ctx, &box, in->school_id, id.s, me(ctx), "moderator");
    for (size_t i = 0; i < nmembers && res == MSG_STORE_OK; i++)
        res = join_member(ctx, &box, in->school_id, id.s, members[i], "member");
    if (res == MSG_STORE_OK)
        res = msg_commit(ctx, &box);
    else
        msg_tx_rollback(ctx->pg);
    if (res != MSG_STORE_OK) {
        msg_outbox_free(&box);
        return msg_fail_store(ctx, res, "room");
    }
    kr_log(KR_LOG_INFO, "room created", "room_id", id.s, "kind", kind, "school_id", in->school_id, NULL);
    msg_publish(ctx, &box, NULL);
    msg_outbox_free(&box);
    if (group_id != NULL) {
        /* The group's people join now; the follower keeps them in line. */
        const msg_app *app = ctx->app;
        if (msg_sync_group_now(ctx->pg, app->identity, app->events, ctx->arena, in->school_id, group_id, NULL) != MSG_STORE_OK)
            kr_log(KR_LOG_WARN, "channel members follow later", "room_id", id.s, NULL);
    }
    msg_store_result rr = msg_read_room(ctx, id.s, true, out);
    return rr == MSG_STORE_OK ? 0 : msg_fail_store(ctx, rr, "room");
}

static int create_room(kr_rpc_ctx *ctx, const Kreide__Messaging__CreateRoomRequest *in, Kreide__Messaging__Room *out)
{
    if (msg_require_person(ctx) != 0 || msg_check_uuid(ctx, in->school_id, "school_id") != 0)
        return -1;
    unsigned roles = msg_caller_roles_at(ctx->caller, in->school_id);
    if (roles == 0)
        return msg_fail_forbidden(ctx, "the caller has no role at this school");
    if (check_plain(ctx, in->topic, 0, MSG_TOPIC_MAX, "topic") != 0)
        return -1;
    if (msg_school_known(ctx, in->school_id) != 0)
        return -1;
    remember_caller(ctx, in->school_id);
    msg_school_row school;
    msg_store_result r = msg_store_school(ctx->pg, in->school_id, &school);
    if (r != MSG_STORE_OK)
        return msg_fail_store(ctx, r, "school");
    switch (in->kind) {
    case KREIDE__MESSAGING__ROOM_KIND__DIRECT:
        return create_direct(ctx, in, &school.policy, roles, out);
    case KREIDE__MESSAGING__ROOM_KIND__GROUP:
    case KREIDE__MESSAGING__ROOM_KIND__ANNOUNCEMENT:
        return create_shared(ctx, in, &school.policy, roles, out);
    default:
        return msg_fail_invalid(ctx, "messaging.invalid_kind", "kind",
                                "kind must be DIRECT, GROUP or ANNOUNCEMENT (roster rooms exist by themselves)");
    }
}

/* ------------------------------------------------------------ read rooms */

static int get_room(kr_rpc_ctx *ctx, const Kreide__Messaging__GetRoomRequest *in, Kreide__Messaging__Room *out)
{
    msg_room_ref room;
    if (msg_room_for(ctx, in->room_id, "room_id", false, &room) != 0)
        return -1;
    msg_store_result r = msg_read_room(ctx, room.id, true, out);
    return r == MSG_STORE_OK ? 0 : msg_fail_store(ctx, r, "room");
}

/* Cursor of the rooms list: "<last_position>:<room id>". */
static bool parse_room_cursor(const char *s, int64_t *pos, const char **id)
{
    const char *colon = strchr(s, ':');
    if (colon == NULL || colon == s || colon - s > 19 || !kr_uuid_valid(colon + 1))
        return false;
    for (const char *p = s; p < colon; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
    }
    *pos = strtoll(s, NULL, 10);
    *id = colon + 1;
    return true;
}

static int list_rooms(kr_rpc_ctx *ctx, const Kreide__Messaging__ListRoomsRequest *in, Kreide__Messaging__ListRoomsReply *out)
{
    if (msg_require_person(ctx) != 0)
        return -1;
    unsigned limit = in->page && in->page->limit ? in->page->limit : ROOMS_DEFAULT_LIMIT;
    if (limit > ROOMS_MAX_LIMIT)
        return msg_fail_invalid(ctx, "messaging.invalid_limit", "page.limit", "page.limit must be at most 200");
    int64_t after_pos = 0;
    const char *after_id = "";
    if (in->page && in->page->cursor[0] != '\0' && !parse_room_cursor(in->page->cursor, &after_pos, &after_id))
        return msg_fail_invalid(ctx, "messaging.invalid_cursor", "page.cursor",
                                "page.cursor is not a cursor this service returned");
    const Kreide__Caller *c = ctx->caller;
    const char **schools = kr_arena_alloc(ctx->arena, sizeof(char *) * (c->n_schools ? c->n_schools : 1));
    size_t n = 0;
    if (in->school_id[0] != '\0') {
        if (msg_check_uuid(ctx, in->school_id, "school_id") != 0)
            return -1;
        if (msg_caller_roles_at(c, in->school_id) == 0)
            return msg_fail_forbidden(ctx, "the caller has no role at this school");
        schools[n++] = lower_id(ctx, in->school_id);
    } else {
        for (size_t i = 0; i < c->n_schools; i++) {
            if (kr_uuid_valid(c->schools[i]->school_id) && msg_caller_roles_at(c, c->schools[i]->school_id) != 0)
                schools[n++] = lower_id(ctx, c->schools[i]->school_id);
        }
    }
    /* A school met here for the first time gets its roster rooms. One that
     * identity does not know (or cannot tell about now) simply has no rooms
     * yet, unless the caller asked for it by name. */
    for (size_t i = 0; i < n; i++) {
        if (msg_school_known(ctx, schools[i]) != 0 && in->school_id[0] != '\0')
            return -1;
    }
    bool more = false;
    msg_store_result r =
        msg_read_rooms(ctx, msg_pg_array(ctx->arena, schools, n), after_pos, after_id, limit, &out->rooms, &out->n_rooms, &more);
    if (r != MSG_STORE_OK)
        return msg_fail_store(ctx, r, "room");
    out->page = kr_arena_alloc(ctx->arena, sizeof(*out->page));
    kreide__page_info__init(out->page);
    if (more) {
        const Kreide__Messaging__Room *last = out->rooms[out->n_rooms - 1];
        out->page->next_cursor = kr_arena_printf(ctx->arena, "%" PRId64 ":%s", last->last_position, last->id);
    }
    return 0;
}

/* -------------------------------------------------------------- members */

static int add_room_members(kr_rpc_ctx *ctx, const Kreide__Messaging__AddRoomMembersRequest *in, Kreide__Messaging__Room *out)
{
    msg_room_ref room;
    if (msg_room_for(ctx, in->room_id, "room_id", false, &room) != 0)
        return -1;
    if (!msg_may_manage_members(room.kind, room.group_id[0] != '\0', &room.me)) {
        if (room.kind == MSG_KIND_ROSTER || room.group_id[0] != '\0')
            return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.follows_group", "room_id",
                               "this room's members follow its group at identity");
        return msg_fail_forbidden(ctx, room.kind == MSG_KIND_DIRECT ? "a direct room has exactly two people"
                                                                    : "only the room's moderators may add members");
    }
    if (in->n_user_ids == 0)
        return msg_fail_invalid(ctx, "messaging.invalid_members", "user_ids", "name at least one person");
    const char *role;
    switch (in->role) {
    case KREIDE__MESSAGING__MEMBER_ROLE__MEMBER_ROLE_UNSPECIFIED:
    case KREIDE__MESSAGING__MEMBER_ROLE__MEMBER:
        role = "member";
        break;
    case KREIDE__MESSAGING__MEMBER_ROLE__MODERATOR:
        role = "moderator";
        break;
    default:
        return msg_fail_invalid(ctx, "messaging.invalid_role", "role", "role must be MEMBER or MODERATOR");
    }
    const char **people = NULL;
    size_t n = 0;
    if (people_at_school(ctx, room.school_id, in->user_ids, in->n_user_ids, MSG_MAX_INITIAL_MEMBERS, "user_ids", &people, &n) != 0)
        return -1;
    msg_outbox box = {0};
    if (msg_tx_begin(ctx->pg) != MSG_STORE_OK)
        return msg_fail_store(ctx, MSG_STORE_ERROR, "room");
    msg_store_result r = MSG_STORE_OK;
    for (size_t i = 0; i < n && r == MSG_STORE_OK; i++)
        r = join_member(ctx, &box, room.school_id, room.id, people[i], role);
    r = r == MSG_STORE_OK ? msg_commit(ctx, &box) : (msg_tx_rollback(ctx->pg), r);
    if (r != MSG_STORE_OK) {
        msg_outbox_free(&box);
        return msg_fail_store(ctx, r, "member");
    }
    return finish_create(ctx, &box, room.id, out);
}

static int remove_room_member(kr_rpc_ctx *ctx, const Kreide__Messaging__RemoveRoomMemberRequest *in, Kreide__Empty *out)
{
    (void)out;
    msg_room_ref room;
    if (msg_room_for(ctx, in->room_id, "room_id", false, &room) != 0 || msg_check_uuid(ctx, in->user_id, "user_id") != 0)
        return -1;
    const char *user = lower_id(ctx, in->user_id);
    bool self = strcmp(user, me(ctx)) == 0;
    if (room.kind == MSG_KIND_ROSTER || room.group_id[0] != '\0') {
        /* Only a moderator added by hand may step out of a group's room. */
        const char *p[] = {room.id, user};
        PGresult *r =
            msg_sql(ctx->pg, "member source",
                    "SELECT source FROM messaging.room_members WHERE room_id = $1 AND user_id = $2 AND state = 'joined'", 2, p);
        if (r == NULL)
            return msg_fail_store(ctx, MSG_STORE_ERROR, "member");
        bool manual = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "manual") == 0;
        PQclear(r);
        if (!manual || (!self && !room.me.moderator))
            return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.follows_group", "user_id",
                               "this room's members follow its group at identity");
    } else if (!self && !msg_may_manage_members(room.kind, false, &room.me)) {
        return msg_fail_forbidden(ctx, "only the room's moderators may remove members");
    }
    msg_outbox box = {0};
    if (msg_tx_begin(ctx->pg) != MSG_STORE_OK)
        return msg_fail_store(ctx, MSG_STORE_ERROR, "member");
    msg_appended a;
    msg_new_event ev = {.kind = "member.left", .sender = me(ctx), .data = member_data(ctx, user, NULL)};
    /* Only a joined member leaves; the event is appended only then. */
    const char *p[] = {room.id, user};
    PGresult *r =
        msg_sql(ctx->pg, "lock member",
                "SELECT 1 FROM messaging.room_members WHERE room_id = $1 AND user_id = $2 AND state = 'joined' FOR UPDATE", 2, p);
    msg_store_result res = r ? (PQntuples(r) == 1 ? MSG_STORE_OK : MSG_STORE_NOT_FOUND) : msg_sql_failure(ctx->pg);
    if (r != NULL)
        PQclear(r);
    if (res == MSG_STORE_OK)
        res = msg_append_to(ctx->pg, &box, room.school_id, room.id, &ev, &a);
    if (res == MSG_STORE_OK) {
        char pos[24];
        snprintf(pos, sizeof(pos), "%" PRId64, a.position);
        const char *p2[] = {room.id, user, pos};
        r = msg_sql(ctx->pg, "leave member",
                    "UPDATE messaging.room_members SET state = 'left', left_position = $3 WHERE room_id = $1 AND user_id = $2", 3,
                    p2);
        res = r ? MSG_STORE_OK : msg_sql_failure(ctx->pg);
        if (r != NULL)
            PQclear(r);
    }
    res = res == MSG_STORE_OK ? msg_commit(ctx, &box) : (msg_tx_rollback(ctx->pg), res);
    if (res == MSG_STORE_NOT_FOUND) {
        msg_outbox_free(&box);
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.not_member", "user_id", "the person is not in the room");
    }
    if (res != MSG_STORE_OK) {
        msg_outbox_free(&box);
        return msg_fail_store(ctx, res, "member");
    }
    msg_publish(ctx, &box, NULL);
    msg_outbox_free(&box);
    return 0;
}

static int set_retention(kr_rpc_ctx *ctx, const Kreide__Messaging__SetRetentionRequest *in, Kreide__Messaging__Room *out)
{
    msg_room_ref room;
    if (msg_room_for(ctx, in->room_id, "room_id", false, &room) != 0)
        return -1;
    if (room.kind == MSG_KIND_DIRECT ? !room.me.joined : !room.me.moderator)
        return msg_fail_forbidden(ctx, "only the room's moderators may change how long it keeps messages");
    if (in->retention_days > MSG_RETENTION_MAX_DAYS)
        return msg_fail_invalid(ctx, "messaging.invalid_retention", "retention_days",
                                "retention_days must be 0 (none of the room's own) or 1 to 3650");
    char days[16];
    snprintf(days, sizeof(days), "%u", in->retention_days);
    msg_outbox box = {0};
    if (msg_tx_begin(ctx->pg) != MSG_STORE_OK)
        return msg_fail_store(ctx, MSG_STORE_ERROR, "room");
    const char *p[] = {room.id, in->retention_days ? days : NULL};
    PGresult *r = msg_sql(ctx->pg, "set room retention", "UPDATE messaging.rooms SET retention_days = $2 WHERE id = $1", 2, p);
    msg_store_result res = r ? MSG_STORE_OK : msg_sql_failure(ctx->pg);
    if (r != NULL)
        PQclear(r);
    if (res == MSG_STORE_OK)
        res = msg_store_audit(ctx->pg, room.school_id, room.id, "room.retention", me(ctx), "",
                              kr_arena_printf(ctx->arena, "{\"retention_days\":%u}", in->retention_days));
    if (res == MSG_STORE_OK) {
        msg_new_event ev = {.kind = "room.retention",
                            .sender = me(ctx),
                            .data = kr_arena_printf(ctx->arena, "{\"retention_days\":%u}", in->retention_days)};
        res = msg_append_to(ctx->pg, &box, room.school_id, room.id, &ev, NULL);
    }
    res = res == MSG_STORE_OK ? msg_commit(ctx, &box) : (msg_tx_rollback(ctx->pg), res);
    if (res != MSG_STORE_OK) {
        msg_outbox_free(&box);
        return msg_fail_store(ctx, res, "room");
    }
    return finish_create(ctx, &box, room.id, out);
}

/* ------------------------------------------------------------- policies */

static void policy_out(kr_rpc_ctx *ctx, const char *school_id, const msg_school_row *row, Kreide__Messaging__SchoolPolicy *out)
{
    kreide__messaging__school_policy__init(out);
    out->school_id = kr_arena_strdup(ctx->arena, school_id);
    out->preset = (char *)msg_preset_name(row->policy.preset);
    out->direct_rules = kr_arena_alloc(ctx->arena, sizeof(*out->direct_rules) * MAX_DIRECT_RULES);
    for (int i = 0; i < MSG_NROLES; i++) {
        for (int j = 0; j < MSG_NROLES; j++) {
            if (!(row->policy.direct[i] & (1u << j)))
                continue;
            Kreide__Messaging__DirectRule *d = kr_arena_alloc(ctx->arena, sizeof(*d));
            kreide__messaging__direct_rule__init(d);
            d->from = (char *)msg_role_name(i);
            d->to = (char *)msg_role_name(j);
            out->direct_rules[out->n_direct_rules++] = d;
        }
    }
    out->room_creators = kr_arena_alloc(ctx->arena, sizeof(char *) * MSG_NROLES);
    for (int i = 0; i < MSG_NROLES; i++) {
        if (row->policy.room_creators & (1u << i))
            out->room_creators[out->n_room_creators++] = (char *)msg_role_name(i);
    }
    out->retention_days = row->policy.retention_days;
    out->customized = row->customized;
    out->updated_at = kr_arena_strdup(ctx->arena, row->updated_at);
}

static int get_school_policy(kr_rpc_ctx *ctx, const Kreide__Messaging__GetSchoolPolicyRequest *in,
                             Kreide__Messaging__SchoolPolicy *out)
{
    if (msg_check_uuid(ctx, in->school_id, "school_id") != 0)
        return -1;
    /* Everybody at the school may know its rules. */
    if (msg_caller_roles_at(ctx->caller, in->school_id) == 0 && !msg_caller_is_operator(ctx->caller))
        return msg_fail_forbidden(ctx, "the caller has no role at this school");
    const char *school = lower_id(ctx, in->school_id);
    if (msg_school_known(ctx, school) != 0)
        return -1;
    msg_school_row row;
    msg_store_result r = msg_store_school(ctx->pg, school, &row);
    if (r != MSG_STORE_OK)
        return msg_fail_store(ctx, r, "school");
    policy_out(ctx, school, &row, out);
    return 0;
}

static int set_school_policy(kr_rpc_ctx *ctx, const Kreide__Messaging__SetSchoolPolicyRequest *in,
                             Kreide__Messaging__SchoolPolicy *out)
{
    if (msg_check_uuid(ctx, in->school_id, "school_id") != 0)
        return -1;
    if ((msg_caller_roles_at(ctx->caller, in->school_id) & MSG_ROLE_SCHOOL_ADMIN) == 0 && !msg_caller_is_operator(ctx->caller))
        return msg_fail_forbidden(ctx, "only the school's admins may set its messaging policy");
    msg_preset preset = MSG_PRESET_SCHOOL;
    if (in->preset[0] != '\0' && !msg_preset_parse(in->preset, &preset))
        return msg_fail_invalid(ctx, "messaging.invalid_preset", "preset", "preset must be school, kita or community");
    if (!in->set_direct_rules && in->n_direct_rules > 0)
        return msg_fail_invalid(ctx, "messaging.invalid_policy", "set_direct_rules", "set set_direct_rules to replace the rules");
    if (!in->set_room_creators && in->n_room_creators > 0)
        return msg_fail_invalid(ctx, "messaging.invalid_policy", "set_room_creators",
                                "set set_room_creators to replace the room creators");
    if (in->n_direct_rules > MAX_DIRECT_RULES)
        return msg_fail_invalid(ctx, "messaging.invalid_policy", "direct_rules", "at most 36 direct rules");
    const char **rules = kr_arena_alloc(ctx->arena, sizeof(char *) * (in->n_direct_rules + 1));
    size_t nrules = 0;
    for (size_t i = 0; i < in->n_direct_rules; i++) {
        const Kreide__Messaging__DirectRule *d = in->direct_rules[i];
        if (msg_role_bit(d->from) == 0 || msg_role_bit(d->to) == 0)
            return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "messaging.invalid_role",
                               kr_arena_printf(ctx->arena, "direct_rules[%zu]", i),
                               "roles are pupil, teacher, parent, staff, head or school_admin");
        const char *rule = kr_arena_printf(ctx->arena, "%s>%s", d->from, d->to);
        bool dup = false;
        for (size_t j = 0; j < nrules && !dup; j++)
            dup = strcmp(rules[j], rule) == 0;
        if (!dup)
            rules[nrules++] = rule;
    }
    const char **creators = kr_arena_alloc(ctx->arena, sizeof(char *) * (in->n_room_creators + 1));
    size_t ncreators = 0;
    unsigned seen = 0;
    for (size_t i = 0; i < in->n_room_creators; i++) {
        unsigned bit = msg_role_bit(in->room_creators[i]);
        if (bit == 0)
            return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "messaging.invalid_role",
                               kr_arena_printf(ctx->arena, "room_creators[%zu]", i),
                               "roles are pupil, teacher, parent, staff, head or school_admin");
        if (!(seen & bit))
            creators[ncreators++] = in->room_creators[i];
        seen |= bit;
    }
    if (in->retention_days > MSG_RETENTION_MAX_DAYS)
        return msg_fail_invalid(ctx, "messaging.invalid_retention", "retention_days",
                                "retention_days must be 0 (none) or 1 to 3650");
    const char *school = lower_id(ctx, in->school_id);
    if (msg_school_known(ctx, school) != 0)
        return -1;
    char days[16];
    snprintf(days, sizeof(days), "%u", in->retention_days);
    /* $2 preset (NULL: keep), $3/$4 rules (set?, value), $5/$6 creators,
     * $7/$8 retention; a new preset resets lists that are not given. */
    const char *params[] = {school,
                            in->preset[0] ? msg_preset_name(preset) : NULL,
                            in->set_direct_rules ? "t" : "f",
                            msg_pg_array(ctx->arena, rules, nrules),
                            in->set_room_creators ? "t" : "f",
                            msg_pg_array(ctx->arena, creators, ncreators),
                            in->set_retention ? "t" : "f",
                            in->retention_days ? days : NULL,
                            me(ctx)};
    if (msg_tx_begin(ctx->pg) != MSG_STORE_OK)
        return msg_fail_store(ctx, MSG_STORE_ERROR, "school");
    PGresult *r =
        msg_sql(ctx->pg, "set policy",
                "UPDATE messaging.schools SET preset = coalesce($2, preset), "
                "direct_rules = CASE WHEN $3::boolean THEN $4::text[] WHEN $2 IS NOT NULL THEN NULL ELSE direct_rules END, "
                "room_creators = CASE WHEN $5::boolean THEN $6::text[] WHEN $2 IS NOT NULL THEN NULL "
                "ELSE room_creators END, "
                "retention_days = CASE WHEN $7::boolean THEN $8::integer ELSE retention_days END, "
                "updated_by = nullif($9, '')::uuid, updated_at = now() WHERE school_id = $1",
                9, params);
    msg_store_result res = r ? MSG_STORE_OK : msg_sql_failure(ctx->pg);
    if (r != NULL)
        PQclear(r);
    if (res == MSG_STORE_OK)
        res = msg_store_audit(ctx->pg, school, NULL, "policy.changed", me(ctx)[0] ? me(ctx) : "operator", "",
                              kr_arena_printf(ctx->arena, "{\"direct_rules\":%zu,\"room_creators\":%zu,\"retention_days\":%u}",
                                              nrules, ncreators, in->retention_days));
    res = res == MSG_STORE_OK ? msg_tx_commit(ctx->pg) : (msg_tx_rollback(ctx->pg), res);
    if (res != MSG_STORE_OK)
        return msg_fail_store(ctx, res, "school");
    kr_log(KR_LOG_INFO, "messaging policy changed", "school_id", school, NULL);
    msg_school_row row;
    res = msg_store_school(ctx->pg, school, &row);
    if (res != MSG_STORE_OK)
        return msg_fail_store(ctx, res, "school");
    policy_out(ctx, school, &row, out);
    return 0;
}

KR_RPC_HANDLER(create_room, Kreide__Messaging__CreateRoomRequest, Kreide__Messaging__Room)
KR_RPC_HANDLER(get_room, Kreide__Messaging__GetRoomRequest, Kreide__Messaging__Room)
KR_RPC_HANDLER(list_rooms, Kreide__Messaging__ListRoomsRequest, Kreide__Messaging__ListRoomsReply)
KR_RPC_HANDLER(add_room_members, Kreide__Messaging__AddRoomMembersRequest, Kreide__Messaging__Room)
KR_RPC_HANDLER(remove_room_member, Kreide__Messaging__RemoveRoomMemberRequest, Kreide__Empty)
KR_RPC_HANDLER(set_retention, Kreide__Messaging__SetRetentionRequest, Kreide__Messaging__Room)
KR_RPC_HANDLER(get_school_policy, Kreide__Messaging__GetSchoolPolicyRequest, Kreide__Messaging__SchoolPolicy)
KR_RPC_HANDLER(set_school_policy, Kreide__Messaging__SetSchoolPolicyRequest, Kreide__Messaging__SchoolPolicy)

const kr_rpc_method msg_room_methods[] = {
    KR_RPC_ENTRY("CreateRoom", create_room, Kreide__Messaging__CreateRoomRequest, Kreide__Messaging__Room),
    KR_RPC_ENTRY("GetRoom", get_room, Kreide__Messaging__GetRoomRequest, Kreide__Messaging__Room),
    KR_RPC_ENTRY("ListRooms", list_rooms, Kreide__Messaging__ListRoomsRequest, Kreide__Messaging__ListRoomsReply),
    KR_RPC_ENTRY("AddRoomMembers", add_room_members, Kreide__Messaging__AddRoomMembersRequest, Kreide__Messaging__Room),
    KR_RPC_ENTRY("RemoveRoomMember", remove_room_member, Kreide__Messaging__RemoveRoomMemberRequest, Kreide__Empty),
    KR_RPC_ENTRY("SetRetention", set_retention, Kreide__Messaging__SetRetentionRequest, Kreide__Messaging__Room),
    KR_RPC_ENTRY("GetSchoolPolicy", get_school_policy, Kreide__Messaging__GetSchoolPolicyRequest, Kreide__Messaging__SchoolPolicy),
    KR_RPC_ENTRY("SetSchoolPolicy", set_school_policy, Kreide__Messaging__SetSchoolPolicyRequest, Kreide__Messaging__SchoolPolicy),
};
const size_t msg_room_nmethods = sizeof(msg_room_methods) / sizeof(msg_room_methods[0]);
