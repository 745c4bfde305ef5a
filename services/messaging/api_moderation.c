/* Moderation (reports, mute, lock, removal) and purging old history. */
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

#define REPORTS_DEFAULT_LIMIT 50
#define REPORTS_MAX_LIMIT 200
#define PURGE_DEFAULT_BATCH 1000
#define PURGE_MAX_BATCH 10000
/* A purge stops this long before the caller's deadline to answer in time. */
#define PURGE_DEADLINE_MARGIN_MS 500

/* In api_messages.c. */
int msg_remove_message(kr_rpc_ctx *ctx, const msg_room_ref *room, const msg_message_ref *msg, const char *reason,
                       Kreide__Messaging__Event *out);

static char *lower_id(kr_rpc_ctx *ctx, const char *id)
{
    char *s = kr_arena_strdup(ctx->arena, id);
    for (char *p = s; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return s;
}

static const char *me(kr_rpc_ctx *ctx)
{
    return lower_id(ctx, ctx->caller->user_id);
}

static int check_reason(kr_rpc_ctx *ctx, const char *s, long min)
{
    long n = msg_plain_length(s);
    if (n >= min && n <= MSG_REASON_MAX)
        return 0;
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "messaging.invalid_reason", "reason",
                       "reason must be %ld to %d characters of one line of text", min, MSG_REASON_MAX);
}

/* -------------------------------------------------------------- reports */

#define REPORT_COLUMNS                                                                                                             \
    "rp.id::text, rp.school_id::text, rp.room_id::text, rp.message_id::text, rp.reporter::text, rp.reason, rp.excerpt, "           \
    "mm.sender::text, " TS("rp.created_at") ", rp.resolved_at IS NOT NULL, coalesce(rp.resolved_by::text, ''), "                   \
                                            "coalesce(rp.resolution, '')"

static void report_from(kr_rpc_ctx *ctx, const PGresult *r, int row, Kreide__Messaging__Report *out)
{
    kreide__messaging__report__init(out);
    char **f[] = {&out->id,     &out->school_id, &out->room_id,   &out->message_id, &out->reporter_id,
                  &out->reason, &out->excerpt,   &out->sender_id, &out->created_at};
    for (int i = 0; i < 9; i++)
        *f[i] = kr_arena_strdup(ctx->arena, PQgetvalue(r, row, i));
    out->resolved = PQgetvalue(r, row, 9)[0] == 't';
    out->resolved_by = kr_arena_strdup(ctx->arena, PQgetvalue(r, row, 10));
    out->resolution = kr_arena_strdup(ctx->arena, PQgetvalue(r, row, 11));
}

static int report_message(kr_rpc_ctx *ctx, const Kreide__Messaging__ReportMessageRequest *in, Kreide__Messaging__Report *out)
{
    msg_room_ref room;
    msg_message_ref msg;
    if (msg_message_for(ctx, in->message_id, "message_id", false, &room, &msg) != 0)
        return -1;
    if (check_reason(ctx, in->reason, 1) != 0)
        return -1;
    if (strcasecmp(msg.sender, me(ctx)) == 0)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.own_message", "message_id",
                           "delete your own message instead of reporting it");
    if (msg.deleted)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.deleted", "message_id", "the message was deleted");
    kr_uuid_str id;
    kr_uuid7_new(&id);
    const char *params[] = {id.s, room.school_id, room.id, msg.id, me(ctx), in->reason, msg.body_excerpt};
    PGresult *r =
        msg_sql(ctx->pg, "insert report",
                "WITH rp AS (INSERT INTO messaging.reports (id, school_id, room_id, message_id, reporter, reason, excerpt) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *) "
                "SELECT " REPORT_COLUMNS " FROM rp JOIN messaging.messages mm ON mm.id = rp.message_id",
                7, params);
    if (r == NULL) {
        msg_store_result res = msg_sql_failure(ctx->pg);
        if (res == MSG_STORE_CONFLICT)
            return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "messaging.already_reported", "message_id",
                               "you reported this message already");
        return msg_fail_store(ctx, res, "report");
    }
    report_from(ctx, r, 0, out);
    PQclear(r);
    kr_log(KR_LOG_INFO, "message reported", "report_id", id.s, "room_id", room.id, NULL);
    /* The room's moderators hear of it at once; the school's admins find it
     * in ListReports. */
    const char *p2[] = {room.id};
    r = msg_sql(ctx->pg, "select moderators",
                "SELECT user_id::text FROM messaging.room_members WHERE room_id = $1 AND state = 'joined' AND role = 'moderator'",
                1, p2);
    if (r != NULL) {
        size_t n = (size_t)PQntuples(r);
        char **ids = kr_arena_alloc(ctx->arena, sizeof(char *) * (n ? n : 1));
        for (size_t i = 0; i < n; i++)
            ids[i] = kr_arena_strdup(ctx->arena, PQgetvalue(r, (int)i, 0));
        PQclear(r);
        const msg_app *app = ctx->app;
        msg_events_notify(app->events, "report", room.school_id, room.id, me(ctx),
                          kr_arena_printf(ctx->arena, "{\"report_id\":\"%s\",\"message_id\":\"%s\"}", id.s, msg.id), ids, n);
    }
    return 0;
}

static int list_reports(kr_rpc_ctx *ctx, const Kreide__Messaging__ListReportsRequest *in, Kreide__Messaging__ListReportsReply *out)
{
    if (msg_require_person(ctx) != 0 || msg_check_uuid(ctx, in->school_id, "school_id") != 0)
        return -1;
    unsigned roles = msg_caller_roles_at(ctx->caller, in->school_id);
    if (roles == 0)
        return msg_fail_forbidden(ctx, "the caller has no role at this school");
    unsigned limit = in->page && in->page->limit ? in->page->limit : REPORTS_DEFAULT_LIMIT;
    if (limit > REPORTS_MAX_LIMIT)
        return msg_fail_invalid(ctx, "messaging.invalid_limit", "page.limit", "page.limit must be at most 200");
    const char *cursor = in->page ? in->page->cursor : "";
    if (cursor[0] != '\0' && !kr_uuid_valid(cursor))
        return msg_fail_invalid(ctx, "messaging.invalid_cursor", "page.cursor",
                                "page.cursor is not a cursor this service returned");
    /* School admins and heads see every report of the school; a room's
     * moderators see those of their rooms. */
    const char *params[] = {in->school_id,
                            me(ctx),
                            msg_is_school_moderator(roles) ? "t" : "f",
                            in->include_resolved ? "t" : "f",
                            cursor[0] ? cursor : NULL,
                            kr_arena_printf(ctx->arena, "%u", limit + 1)};
    PGresult *r = msg_sql(ctx->pg, "select reports",
                          "SELECT " REPORT_COLUMNS " FROM messaging.reports rp JOIN messaging.messages mm ON mm.id = rp.message_id "
                          "JOIN messaging.rooms r ON r.id = rp.room_id JOIN messaging.schools s ON s.school_id = r.school_id "
                          "WHERE rp.school_id = $1 AND ($3::boolean OR EXISTS (SELECT 1 FROM messaging.room_members m "
                          "WHERE m.room_id = rp.room_id AND m.user_id = $2 AND m.state = 'joined' AND m.role = 'moderator')) "
                          "AND ($4::boolean OR rp.resolved_at IS NULL) AND ($5::uuid IS NULL OR rp.id < $5) "
                          "AND mm.created_at >= messaging.visible_since(r.retention_days, s.retention_days) "
                          "ORDER BY rp.id DESC LIMIT $6",
                          6, params);
    if (r == NULL)
        return msg_fail_store(ctx, msg_sql_failure(ctx->pg), "report");
    size_t rows = (size_t)PQntuples(r);
    bool more = rows > limit;
    out->n_reports = more ? limit : rows;
    out->reports = kr_arena_alloc(ctx->arena, sizeof(*out->reports) * (out->n_reports ? out->n_reports : 1));
    for (size_t i = 0; i < out->n_reports; i++) {
        out->reports[i] = kr_arena_alloc(ctx->arena, sizeof(*out->reports[i]));
        report_from(ctx, r, (int)i, out->reports[i]);
    }
    PQclear(r);
    out->page = kr_arena_alloc(ctx->arena, sizeof(*out->page));
    kreide__page_info__init(out->page);
    if (more)
        out->page->next_cursor = out->reports[out->n_reports - 1]->id;
    return 0;
}

/* ----------------------------------------------------------- mute, lock */

/* Runs one moderation change: the UPDATE (which must return a row when it
 * changed something), the audit entry and the event, in one transaction. */
static int moderate(kr_rpc_ctx *ctx, const msg_room_ref *room, const char *sql, int n, const char *const *params,
                    const char *action, const msg_new_event *ev, const char *unchanged, Kreide__Messaging__Event *out)
{
    msg_outbox box = {0};
    if (msg_tx_begin(ctx->pg) != MSG_STORE_OK)
        return msg_fail_store(ctx, MSG_STORE_ERROR, "room");
    PGresult *r = msg_sql(ctx->pg, action, sql, n, params);
    msg_store_result res = r ? MSG_STORE_OK : msg_sql_failure(ctx->pg);
    bool changed = r != NULL && PQntuples(r) == 1;
    if (r != NULL)
        PQclear(r);
    if (res == MSG_STORE_OK && !changed) {
        msg_tx_rollback(ctx->pg);
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.unchanged", NULL, "%s", unchanged);
    }
    if (res == MSG_STORE_OK)
        res = msg_store_audit(ctx->pg, room->school_id, room->id, action, me(ctx), "", ev->data);
    if (res == MSG_STORE_OK)
        res = msg_append_to(ctx->pg, &box, room->school_id, room->id, ev, NULL);
    res = res == MSG_STORE_OK ? msg_commit(ctx, &box) : (msg_tx_rollback(ctx->pg), res);
    if (res != MSG_STORE_OK) {
        msg_outbox_free(&box);
        return msg_fail_store(ctx, res, "room");
    }
    Kreide__Messaging__Event *reply = NULL;
    int rc = msg_publish(ctx, &box, &reply);
    msg_outbox_free(&box);
    if (rc != 0)
        return -1;
    if (reply == NULL)
        return msg_fail_store(ctx, MSG_STORE_ERROR, "event");
    *out = *reply;
    return 0;
}

static int mute_member(kr_rpc_ctx *ctx, const Kreide__Messaging__MuteMemberRequest *in, Kreide__Messaging__Event *out)
{
    msg_room_ref room;
    if (msg_room_for(ctx, in->room_id, "room_id", true, &room) != 0 || msg_check_uuid(ctx, in->user_id, "user_id") != 0)
        return -1;
    if (!msg_may_moderate(room.kind, &room.me, msg_caller_roles_at(ctx->caller, room.school_id)))
        return msg_fail_forbidden(ctx, "only the room's moderators and the school's admins may mute members");
    const char *user = lower_id(ctx, in->user_id);
    if (strcmp(user, me(ctx)) == 0)
        return msg_fail_invalid(ctx, "messaging.invalid_member", "user_id", "moderators do not mute themselves");
    const char *p0[] = {room.id, user};
    PGresult *r =
        msg_sql(ctx->pg, "select member role",
                "SELECT role FROM messaging.room_members WHERE room_id = $1 AND user_id = $2 AND state = 'joined'", 2, p0);
    if (r == NULL)
        return msg_fail_store(ctx, msg_sql_failure(ctx->pg), "member");
    bool found = PQntuples(r) == 1;
    bool target_moderator = found && strcmp(PQgetvalue(r, 0, 0), "moderator") == 0;
    PQclear(r);
    if (!found)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.not_member", "user_id", "the person is not in the room");
    if (target_moderator)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.is_moderator", "user_id",
                           "a moderator cannot be muted");
    const char *params[] = {room.id, user, in->muted ? "t" : "f"};
    msg_new_event ev = {.kind = "member.muted",
                        .sender = me(ctx),
                        .data =
                            kr_arena_printf(ctx->arena, "{\"user_id\":\"%s\",\"muted\":%s}", user, in->muted ? "true" : "false")};
    return moderate(ctx, &room,
                    "UPDATE messaging.room_members SET muted = $3 WHERE room_id = $1 AND user_id = $2 AND state = 'joined' "
                    "AND muted <> $3 RETURNING 1",
                    3, params, "member.muted", &ev, in->muted ? "the person is muted already" : "the person is not muted", out);
}

static int lock_room(kr_rpc_ctx *ctx, const Kreide__Messaging__LockRoomRequest *in, Kreide__Messaging__Event *out)
{
    msg_room_ref room;
    if (msg_room_for(ctx, in->room_id, "room_id", true, &room) != 0)
        return -1;
    if (!msg_may_moderate(room.kind, &room.me, msg_caller_roles_at(ctx->caller, room.school_id)))
        return msg_fail_forbidden(ctx, "only the room's moderators and the school's admins may lock a room");
    const char *params[] = {room.id, in->locked ? "t" : "f"};
    msg_new_event ev = {.kind = "room.locked", .sender = me(ctx), .data = in->locked ? "{\"locked\":true}" : "{\"locked\":false}"};
    return moderate(ctx, &room, "UPDATE messaging.rooms SET locked = $2 WHERE id = $1 AND locked <> $2 RETURNING 1", 2, params,
                    "room.locked", &ev, in->locked ? "the room is locked already" : "the room is not locked", out);
}

/* ---------------------------------------------------------------- removal */

static int remove_message(kr_rpc_ctx *ctx, const Kreide__Messaging__RemoveMessageRequest *in, Kreide__Messaging__Event *out)
{
    if (msg_require_person(ctx) != 0 || msg_check_uuid(ctx, in->message_id, "message_id") != 0 ||
        check_reason(ctx, in->reason, 0) != 0)
        return -1;
    msg_room_ref room;
    msg_message_ref msg;
    msg_store_result r = msg_store_message_ref(ctx->pg, in->message_id, me(ctx), &room, &msg);
    if (r != MSG_STORE_OK && r != MSG_STORE_NOT_FOUND)
        return msg_fail_store(ctx, r, "message");
    unsigned roles = r == MSG_STORE_OK ? msg_caller_roles_at(ctx->caller, room.school_id) : 0;
    bool may = r == MSG_STORE_OK && !msg.expired && roles != 0 && msg_may_moderate(room.kind, &room.me, roles);
    if (r == MSG_STORE_OK && !may && !msg.expired && msg_is_school_moderator(roles)) {
        /* In a direct room a school's admins act only on what was reported
         * to them. */
        const char *p[] = {msg.id};
        PGresult *pr = msg_sql(ctx->pg, "open report", "SELECT 1 FROM messaging.reports WHERE message_id = $1 LIMIT 1", 1, p);
        if (pr == NULL)
            return msg_fail_store(ctx, msg_sql_failure(ctx->pg), "report");
        may = PQntuples(pr) == 1;
        PQclear(pr);
    }
    if (!may) {
        /* Members who may not moderate learn only that they may not; others
         * learn nothing about the message. */
        if (r == MSG_STORE_OK && !msg.expired && roles != 0 && room.me.joined)
            return msg_fail_forbidden(ctx, "only the room's moderators and the school's admins may remove messages");
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.message_not_found", "message_id", "no such message");
    }
    if (msg.deleted)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.deleted", "message_id",
                           "the message was already deleted");
    return msg_remove_message(ctx, &room, &msg, in->reason, out);
}

/* ---------------------------------------------------------------- purging */

static int purge_before(kr_rpc_ctx *ctx, const Kreide__Messaging__PurgeBeforeRequest *in, Kreide__Messaging__PurgeBeforeReply *out)
{
    if (!msg_caller_is_operator(ctx->caller))
        return msg_fail_forbidden(ctx, "only operators and the deletion workflow may purge history");
    if (msg_check_uuid(ctx, in->school_id, "school_id") != 0)
        return -1;
    if (in->room_id[0] != '\0' && msg_check_uuid(ctx, in->room_id, "room_id") != 0)
        return -1;
    int64_t before_ms;
    if (!msg_time_parse(in->before, &before_ms))
        return msg_fail_invalid(ctx, "messaging.invalid_time", "before", "before must be an RFC 3339 time");
    if (before_ms > kr_now_ms())
        return msg_fail_invalid(ctx, "messaging.invalid_time", "before", "before must not lie in the future");
    unsigned batch = in->batch_size ? in->batch_size : PURGE_DEFAULT_BATCH;
    if (batch > PURGE_MAX_BATCH)
        return msg_fail_invalid(ctx, "messaging.invalid_batch", "batch_size", "batch_size must be at most 10000");
    long rlen = msg_plain_length(in->reason);
    if (rlen < 0 || rlen > 200)
        return msg_fail_invalid(ctx, "messaging.invalid_reason", "reason", "reason must be at most 200 characters of text");
    const char *school = lower_id(ctx, in->school_id);
    const char *room = in->room_id[0] ? lower_id(ctx, in->room_id) : NULL;
    if (room != NULL) {
        const char *p[] = {room, school};
        PGresult *r = msg_sql(ctx->pg, "room of school", "SELECT 1 FROM messaging.rooms WHERE id = $1 AND school_id = $2", 2, p);
        if (r == NULL)
            return msg_fail_store(ctx, msg_sql_failure(ctx->pg), "room");
        bool found = PQntuples(r) == 1;
        PQclear(r);
        if (!found)
            return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.room_not_found", "room_id",
                               "no such room at this school");
    }
    bool done = false;
    while (!done) {
        if (ctx->deadline_ms > 0 && kr_now_ms() > ctx->deadline_ms - PURGE_DEADLINE_MARGIN_MS)
            break;
        msg_purge_counts got;
        if (msg_store_purge_batch(ctx->pg, school, room, in->before, batch, &got) != MSG_STORE_OK)
            return msg_fail_store(ctx, MSG_STORE_ERROR, "event");
        out->events += got.events;
        out->messages += got.messages;
        out->attachments += got.attachments;
        out->batches++;
        done = got.events < batch;
    }
    out->done = done;
    char *counts = kr_arena_printf(ctx->arena,
                                   "{\"events\":%" PRIu64 ",\"messages\":%" PRIu64 ",\"attachments\":%" PRIu64
                                   ",\"batches\":%u,\"done\":%s,\"before\":\"%s\"}",
                                   out->events, out->messages, out->attachments, out->batches, done ? "true" : "false", in->before);
    const char *actor = ctx->caller->user_id[0] ? ctx->caller->user_id : ctx->caller->client_id;
    if (msg_store_audit(ctx->pg, school, room, "purge", actor[0] ? actor : "operator", in->reason[0] ? in->reason : "purge_before",
                        counts) != MSG_STORE_OK)
        return msg_fail_store(ctx, MSG_STORE_ERROR, "audit");
    char ev[24], ms[24];
    snprintf(ev, sizeof(ev), "%" PRIu64, out->events);
    snprintf(ms, sizeof(ms), "%" PRIu64, out->messages);
    kr_log(KR_LOG_INFO, "history purged", "school_id", school, "room_id", room, "events", ev, "messages", ms, NULL);
    return 0;
}

KR_RPC_HANDLER(report_message, Kreide__Messaging__ReportMessageRequest, Kreide__Messaging__Report)
KR_RPC_HANDLER(list_reports, Kreide__Messaging__ListReportsRequest, Kreide__Messaging__ListReportsReply)
KR_RPC_HANDLER(mute_member, Kreide__Messaging__MuteMemberRequest, Kreide__Messaging__Event)
KR_RPC_HANDLER(lock_room, Kreide__Messaging__LockRoomRequest, Kreide__Messaging__Event)
KR_RPC_HANDLER(remove_message, Kreide__Messaging__RemoveMessageRequest, Kreide__Messaging__Event)
KR_RPC_HANDLER(purge_before, Kreide__Messaging__PurgeBeforeRequest, Kreide__Messaging__PurgeBeforeReply)

const kr_rpc_method msg_moderation_methods[] = {
    KR_RPC_ENTRY("ReportMessage", report_message, Kreide__Messaging__ReportMessageRequest, Kreide__Messaging__Report),
    KR_RPC_ENTRY("ListReports", list_reports, Kreide__Messaging__ListReportsRequest, Kreide__Messaging__ListReportsReply),
    KR_RPC_ENTRY("MuteMember", mute_member, Kreide__Messaging__MuteMemberRequest, Kreide__Messaging__Event),
    KR_RPC_ENTRY("LockRoom", lock_room, Kreide__Messaging__LockRoomRequest, Kreide__Messaging__Event),
    KR_RPC_ENTRY("RemoveMessage", remove_message, Kreide__Messaging__RemoveMessageRequest, Kreide__Messaging__Event),
    KR_RPC_ENTRY("PurgeBefore", purge_before, Kreide__Messaging__PurgeBeforeRequest, Kreide__Messaging__PurgeBeforeReply),
};
const size_t msg_moderation_nmethods = sizeof(msg_moderation_methods) / sizeof(msg_moderation_methods[0]);
