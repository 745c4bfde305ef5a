/* What every handler shares: errors, the caller, rooms and messages as the
 * caller may see them.
 *
 * Tenant separation: a room or message that lies outside the caller's
 * rooms, or at a school the caller's token does not name, answers
 * NOT_FOUND exactly like one that does not exist, so ids confirm nothing to
 * those who may not know them. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "kr_id.h"
#include "kr_log.h"
#include "messaging.h"

int msg_fail_store(kr_rpc_ctx *ctx, msg_store_result r, const char *what)
{
    switch (r) {
    case MSG_STORE_NOT_FOUND:
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.not_found", NULL, "no such %s", what);
    case MSG_STORE_CONFLICT:
        return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "messaging.conflict", NULL, "the %s already exists", what);
    default:
        return kr_rpc_fail(ctx, KREIDE__STATUS__UNAVAILABLE, "messaging.database", NULL, "messaging is temporarily unavailable");
    }
}

int msg_fail_forbidden(kr_rpc_ctx *ctx, const char *why)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "messaging.forbidden", NULL, "%s", why);
}

int msg_fail_invalid(kr_rpc_ctx *ctx, const char *code, const char *field, const char *why)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, code, field, "%s", why);
}

int msg_require_person(kr_rpc_ctx *ctx)
{
    if (msg_caller_is_person(ctx->caller))
        return 0;
    return kr_rpc_fail(ctx, KREIDE__STATUS__UNAUTHENTICATED, "messaging.person_required", NULL,
                       "messaging is for signed-in people; this caller is not one");
}

int msg_check_uuid(kr_rpc_ctx *ctx, const char *id, const char *field)
{
    if (kr_uuid_valid(id))
        return 0;
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "messaging.invalid_id", field, "%s must be a UUID", field);
}

/* Whether the caller may see the room: a joined member with a role at its
 * school, or (when allowed) a school admin or head acting as moderator. */
static bool room_visible(kr_rpc_ctx *ctx, const msg_room_ref *room, bool allow_school_moderator)
{
    unsigned roles = msg_caller_roles_at(ctx->caller, room->school_id);
    if (roles == 0)
        return false;
    if (room->me.joined)
        return true;
    return allow_school_moderator && msg_may_moderate(room->kind, &room->me, roles);
}

/* Loads a room (with the caller's earlier send when `txn_id`). */
static int room_for(kr_rpc_ctx *ctx, const char *room_id, const char *field, bool allow_school_moderator, const char *txn_id,
                    msg_room_ref *out, msg_earlier_send *earlier)
{
    if (msg_require_person(ctx) != 0 || msg_check_uuid(ctx, room_id, field) != 0)
        return -1;
    msg_store_result r = txn_id != NULL ? msg_store_room_ref_txn(ctx->pg, room_id, ctx->caller->user_id, txn_id, out, earlier)
                                        : msg_store_room_ref(ctx->pg, room_id, ctx->caller->user_id, out);
    if (r == MSG_STORE_OK && !room_visible(ctx, out, allow_school_moderator))
        r = MSG_STORE_NOT_FOUND;
    if (r == MSG_STORE_NOT_FOUND)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.room_not_found", field, "no such room");
    return r == MSG_STORE_OK ? 0 : msg_fail_store(ctx, r, "room");
}

int msg_room_for(kr_rpc_ctx *ctx, const char *room_id, const char *field, bool allow_school_moderator, msg_room_ref *out)
{
    return room_for(ctx, room_id, field, allow_school_moderator, NULL, out, NULL);
}

int msg_room_for_txn(kr_rpc_ctx *ctx, const char *room_id, const char *txn_id, msg_room_ref *out, msg_earlier_send *earlier)
{
    return room_for(ctx, room_id, "room_id", false, txn_id, out, earlier);
}

int msg_message_for(kr_rpc_ctx *ctx, const char *message_id, const char *field, bool allow_school_moderator, msg_room_ref *room,
                    msg_message_ref *msg)
{
    if (msg_require_person(ctx) != 0 || msg_check_uuid(ctx, message_id, field) != 0)
        return -1;
    msg_store_result r = msg_store_message_ref(ctx->pg, message_id, ctx->caller->user_id, room, msg);
    if (r == MSG_STORE_OK && (msg->expired || !room_visible(ctx, room, allow_school_moderator)))
        r = MSG_STORE_NOT_FOUND;
    if (r == MSG_STORE_NOT_FOUND)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.message_not_found", field, "no such message");
    return r == MSG_STORE_OK ? 0 : msg_fail_store(ctx, r, "message");
}

/* ------------------------------------------------------- known schools */

/* Schools this process knows have a row, so the hot paths skip the
 * database. Only ever grows; a full table just means more lookups. */
#define KNOWN_SLOTS 8192
static char known[KNOWN_SLOTS][40];
static size_t nknown;
static pthread_mutex_t known_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t slot_of(const char *id)
{
    size_t h = 5381;
    for (const char *p = id; *p; p++)
        h = h * 33 + (unsigned char)(*p | 0x20);
    return h % KNOWN_SLOTS;
}

static bool known_has(const char *id)
{
    bool found = false;
    pthread_mutex_lock(&known_lock);
    for (size_t i = slot_of(id), k = 0; k < KNOWN_SLOTS && known[i][0] != '\0'; i = (i + 1) % KNOWN_SLOTS, k++) {
        if (strcasecmp(known[i], id) == 0) {
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&known_lock);
    return found;
}

static void known_add(const char *id)
{
    pthread_mutex_lock(&known_lock);
    if (nknown < KNOWN_SLOTS * 3 / 4) {
        size_t i = slot_of(id);
        while (known[i][0] != '\0' && strcasecmp(known[i], id) != 0)
            i = (i + 1) % KNOWN_SLOTS;
        if (known[i][0] == '\0') {
            snprintf(known[i], sizeof(known[i]), "%s", id);
            nknown++;
        }
    }
    pthread_mutex_unlock(&known_lock);
}

int msg_school_known(kr_rpc_ctx *ctx, const char *school_id)
{
    if (known_has(school_id))
        return 0;
    msg_school_row row;
    msg_store_result r = msg_store_school(ctx->pg, school_id, &row);
    if (r == MSG_STORE_OK) {
        known_add(school_id);
        return 0;
    }
    if (r != MSG_STORE_NOT_FOUND)
        return msg_fail_store(ctx, r, "school");
    const msg_app *app = ctx->app;
    int kind = 1;
    msg_id_result id = msg_identity_school_kind(app->identity, ctx->arena, school_id, &kind);
    if (id == MSG_ID_NOT_FOUND)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.school_not_found", "school_id", "no such school");
    if (id != MSG_ID_OK)
        return kr_rpc_fail(ctx, KREIDE__STATUS__UNAVAILABLE, "messaging.identity_unavailable", NULL,
                           "the directory is temporarily unavailable");
    bool created = false;
    r = msg_store_school_ensure(ctx->pg, school_id, msg_preset_for_school_kind(kind), &created);
    if (r != MSG_STORE_OK)
        return msg_fail_store(ctx, r, "school");
    known_add(school_id);
    if (created) {
        kr_log(KR_LOG_INFO, "school met", "school_id", school_id, "preset", msg_preset_name(msg_preset_for_school_kind(kind)),
               NULL);
        /* Its groups' rooms are made by the follower, right away. */
        msg_sync_kick(app->sync);
    }
    return 0;
}

msg_store_result msg_commit(kr_rpc_ctx *ctx, msg_outbox *box)
{
    const msg_app *app = ctx->app;
    return msg_outbox_commit(ctx->pg, box, app != NULL && msg_events_enabled(app->events));
}

int msg_publish(kr_rpc_ctx *ctx, const msg_outbox *box, Kreide__Messaging__Event **reply)
{
    const msg_app *app = ctx->app;
    bool announce = app != NULL && msg_events_enabled(app->events);
    if (box->n == 0 || (!announce && reply == NULL))
        return 0;
    /* One reading serves the announcements and the reply. */
    msg_reader rd = {.pg = ctx->pg, .arena = ctx->arena, .viewer = ctx->caller->user_id, .caller = ctx->caller};
    Kreide__Messaging__Event **events = NULL;
    msg_store_result r = msg_read_appended(&rd, box->items, box->n, &events);
    if (announce)
        msg_events_publish(app->events, box, r == MSG_STORE_OK ? events : NULL);
    if (reply == NULL)
        return 0;
    if (r == MSG_STORE_OK && events[box->n - 1] == NULL)
        r = MSG_STORE_NOT_FOUND;
    if (r != MSG_STORE_OK)
        return msg_fail_store(ctx, r, "event");
    *reply = events[box->n - 1];
    return 0;
}

int msg_reply_event(kr_rpc_ctx *ctx, int64_t position, Kreide__Messaging__Event *out)
{
    msg_reader rd = {.pg = ctx->pg, .arena = ctx->arena, .viewer = ctx->caller->user_id, .caller = ctx->caller};
    msg_appended at = {.position = position};
    Kreide__Messaging__Event **events = NULL;
    msg_store_result r = msg_read_appended(&rd, &at, 1, &events);
    if (r == MSG_STORE_OK && events[0] == NULL)
        r = MSG_STORE_NOT_FOUND;
    if (r != MSG_STORE_OK)
        return msg_fail_store(ctx, r, "event");
    *out = *events[0];
    return 0;
}
