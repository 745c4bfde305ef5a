/* Messages and everything done to them: sending (idempotent by txn_id),
 * editing, deleting, reactions, receipts and read confirmations, history
 * and catch-up, search, pins, typing, polls. Each change is one
 * transaction that appends its event to the room's log; the event is
 * announced on Redis after the commit. */
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

#define EVENTS_DEFAULT_LIMIT 50
#define EVENTS_MAX_LIMIT 500
#define SEARCH_DEFAULT_LIMIT 20
#define SEARCH_MAX_LIMIT 100
#define MAX_REACTIONS_PER_PERSON 20
#define MAX_PINS_PER_ROOM 50
#define MAX_POLL_DAYS 366

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

static char *num(kr_rpc_ctx *ctx, int64_t v)
{
    return kr_arena_printf(ctx->arena, "%" PRId64, v);
}

/* ---------------------------------------------------------- transactions */

/* A transaction's body: returns 0, -1 after kr_rpc_fail, or 1 to roll
 * back without an error (the caller looks again). */
typedef int (*tx_body)(kr_rpc_ctx *ctx, msg_outbox *box, void *arg);

/* Runs `body` in a transaction; commits, then announces what it appended
 * and, with `reply`, answers the last event appended (NULL when none) from
 * the same reading. Returns what the body returned (0 also when the commit
 * worked). */
static int run_tx(kr_rpc_ctx *ctx, const char *what, tx_body body, void *arg, Kreide__Messaging__Event **reply)
{
    if (reply != NULL)
        *reply = NULL;
    msg_outbox box = {0};
    if (msg_tx_begin(ctx->pg) != MSG_STORE_OK)
        return msg_fail_store(ctx, MSG_STORE_ERROR, what);
    int rc = body(ctx, &box, arg);
    if (rc != 0) {
        msg_tx_rollback(ctx->pg);
        msg_outbox_free(&box);
        return rc;
    }
    msg_store_result r = msg_commit(ctx, &box);
    if (r != MSG_STORE_OK) {
        msg_outbox_free(&box);
        return msg_fail_store(ctx, r, what);
    }
    rc = msg_publish(ctx, &box, reply);
    msg_outbox_free(&box);
    return rc;
}

/* run_tx for a body that appends one event, answered as the reply. */
static int run_tx_reply(kr_rpc_ctx *ctx, const char *what, tx_body body, void *arg, Kreide__Messaging__Event *out)
{
    Kreide__Messaging__Event *ev = NULL;
    if (run_tx(ctx, what, body, arg, &ev) != 0)
        return -1;
    if (ev == NULL)
        return msg_fail_store(ctx, MSG_STORE_ERROR, what);
    *out = *ev;
    return 0;
}

/* Runs one statement inside a body; NULL after kr_rpc_fail. */
static PGresult *tx_sql(kr_rpc_ctx *ctx, const char *what, const char *sql, int n, const char *const *params)
{
    PGresult *r = msg_sql(ctx->pg, what, sql, n, params);
    if (r == NULL)
        msg_fail_store(ctx, msg_sql_failure(ctx->pg), "message");
    return r;
}

static int tx_exec(kr_rpc_ctx *ctx, const char *what, const char *sql, int n, const char *const *params)
{
    PGresult *r = tx_sql(ctx, what, sql, n, params);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

static int tx_append(kr_rpc_ctx *ctx, msg_outbox *box, const msg_room_ref *room, const msg_new_event *ev, msg_appended *out)
{
    msg_store_result r = msg_append_to(ctx->pg, box, room->school_id, room->id, ev, out);
    return r == MSG_STORE_OK ? 0 : msg_fail_store(ctx, r, "event");
}

/* ---------------------------------------------------------------- checks */

static int check_text(kr_rpc_ctx *ctx, const char *text, size_t max_chars, const char *field)
{
    size_t offset = 0;
    msg_text_error e = msg_text_check(text, max_chars, &offset);
    if (e == MSG_TEXT_OK)
        return 0;
    if (e == MSG_TEXT_TOO_LONG || e == MSG_TEXT_EMPTY)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, msg_text_code(e), field, "%s: %s (1 to %zu characters)", field,
                           msg_text_strerror(e), max_chars);
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, msg_text_code(e), field, "%s: %s (at byte %zu)", field,
                       msg_text_strerror(e), offset);
}

/* Why the caller may not post here, as a refusal. */
static int refuse_post(kr_rpc_ctx *ctx, const msg_room_ref *room)
{
    if (room->me.muted)
        return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "messaging.muted", NULL,
                           "a moderator has muted you in this room");
    if (room->locked)
        return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "messaging.room_locked", NULL,
                           "the room is locked; only its moderators may post");
    if (room->kind == MSG_KIND_ANNOUNCEMENT)
        return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "messaging.announcement_only", NULL,
                           "only the channel's moderators post here; members read, react and confirm");
    return msg_fail_forbidden(ctx, "the caller may not post here");
}

/* The mentions of a send, as stored: lower case, without repeats. */
typedef struct {
    const char **ids;
    size_t n;
    const char *array; /* uuid[] literal */
} mention_list;

/* Checks mentions: UUIDs of the room's joined members, without repeats. */
static int check_mentions(kr_rpc_ctx *ctx, const msg_room_ref *room, char *const *ids, size_t n, mention_list *out)
{
    if (n > MSG_MAX_MENTIONS)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "messaging.too_many", "mentions", "at most %d mentions",
                           MSG_MAX_MENTIONS);
    const char **list = kr_arena_alloc(ctx->arena, sizeof(char *) * (n ? n : 1));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char *f = kr_arena_printf(ctx->arena, "mentions[%zu]", i);
        if (msg_check_uuid(ctx, ids[i], f) != 0)
            return -1;
        const char *id = lower_id(ctx, ids[i]);
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = strcmp(list[j], id) == 0;
        if (!dup)
            list[k++] = id;
    }
    out->ids = list;
    out->n = k;
    out->array = msg_pg_array(ctx->arena, list, k);
    if (k == 0)
        return 0;
    const char *params[] = {room->id, out->array};
    PGresult *r = msg_sql(ctx->pg, "check mentions",
                          "SELECT count(*) FROM messaging.room_members WHERE room_id = $1 AND state = 'joined' "
                          "AND user_id = ANY($2::uuid[])",
                          2, params);
    if (r == NULL)
        return msg_fail_store(ctx, msg_sql_failure(ctx->pg), "member");
    size_t found = (size_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (found != k)
        return msg_fail_invalid(ctx, "messaging.invalid_mention", "mentions", "only people in the room can be mentioned");
    return 0;
}

/* Checks attachments; *out gets them with their file ids in lower case,
 * as they read back. */
static int check_attachments(kr_rpc_ctx *ctx, Kreide__Messaging__Attachment *const *a, size_t n,
                             Kreide__Messaging__Attachment ***out)
{
    if (n > MSG_MAX_ATTACHMENTS)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "messaging.too_many", "attachments", "at most %d attachments",
                           MSG_MAX_ATTACHMENTS);
    for (size_t i = 0; i < n; i++) {
        char *f = kr_arena_printf(ctx->arena, "attachments[%zu].file_id", i);
        if (msg_check_uuid(ctx, a[i]->file_id, f) != 0)
            return -1;
        if (!msg_file_name_valid(a[i]->name))
            return msg_fail_invalid(ctx, "messaging.invalid_attachment", kr_arena_printf(ctx->arena, "attachments[%zu].name", i),
                                    "an attachment's name is 1 to 255 characters of text without '/' or '\\'");
        if (!msg_media_type_valid(a[i]->media_type))
            return msg_fail_invalid(ctx, "messaging.invalid_attachment",
                                    kr_arena_printf(ctx->arena, "attachments[%zu].media_type", i),
                                    "an attachment's media_type is a lower-case type/subtype such as image/png");
        if (a[i]->size_bytes > (uint64_t)INT64_MAX)
            return msg_fail_invalid(ctx, "messaging.invalid_attachment",
                                    kr_arena_printf(ctx->arena, "attachments[%zu].size_bytes", i), "size_bytes is too large");
    }
    Kreide__Messaging__Attachment **list = kr_arena_alloc(ctx->arena, sizeof(*list) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        list[i] = kr_arena_alloc(ctx->arena, sizeof(*list[i]));
        *list[i] = *a[i];
        list[i]->file_id = lower_id(ctx, a[i]->file_id);
    }
    *out = list;
    return 0;
}

/* ---------------------------------------------------------------- send */

typedef struct {
    const msg_room_ref *room;
    const char *txn_id;
    const char *text;
    const char *reply_to; /* NULL: none */
    mention_list mentions;
    Kreide__Messaging__Attachment **attachments; /* file ids in lower case */
    size_t n_attachments;
    /* Polls */
    bool poll;
    const char *options; /* text[] literal */
    bool multiple_choice, anonymous;
    const char *closes_at; /* NULL: open-ended */
    bool expected;         /* announced to the batch (msg_batch_expect), not yet sent */
    /* Out */
    int64_t position; /* of the earlier event a retry answers */
} send_args;

static msg_batch *batch_of(kr_rpc_ctx *ctx)
{
    const msg_app *app = ctx->app;
    return app != NULL ? app->batch : NULL;
}

/* What an earlier send with the same txn_id means: 1 answer it
 * (a->position set), 0 there is none, -1 refused (another room's). */
static int earlier_answer(kr_rpc_ctx *ctx, send_args *a, const msg_earlier_send *e)
{
    if (e->position == 0)
        return 0;
    if (strcasecmp(e->room_id, a->room->id) != 0)
        return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "messaging.txn_reused", "txn_id",
                           "this txn_id was already used for a message in another room");
    a->position = e->position;
    return 1;
}

/* Looks for an earlier send with the same txn_id, as earlier_answer. */
static int earlier_send(kr_rpc_ctx *ctx, send_args *a)
{
    const char *params[] = {me(ctx), a->txn_id};
    PGresult *r = msg_sql(ctx->pg, "select by txn",
                          "SELECT position, room_id::text FROM messaging.events WHERE sender = $1 AND txn_id = $2", 2, params);
    if (r == NULL)
        return msg_fail_store(ctx, msg_sql_failure(ctx->pg), "message");
    msg_earlier_send e = {0};
    if (PQntuples(r) == 1) {
        e.position = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        snprintf(e.room_id, sizeof(e.room_id), "%s", PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    return earlier_answer(ctx, a, &e);
}

/* Whether `reply_to` names a message of the room that is still readable. */
static int check_reply_to(kr_rpc_ctx *ctx, const send_args *a)
{
    const char *params[] = {a->reply_to, a->room->id};
    PGresult *r = tx_sql(ctx, "check reply",
                         "SELECT 1 FROM messaging.messages mm JOIN messaging.rooms r ON r.id = mm.room_id "
                         "JOIN messaging.schools s ON s.school_id = r.school_id WHERE mm.id = $1 AND mm.room_id = $2 "
                         "AND mm.created_at >= messaging.visible_since(r.retention_days, s.retention_days)",
                         2, params);
    if (r == NULL)
        return -1;
    bool ok = PQntuples(r) == 1;
    PQclear(r);
    if (!ok)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.message_not_found", "reply_to",
                           "reply_to names no message of this room");
    return 0;
}

/* Appends a send: with the sends of other threads waiting at the same
 * moment, in one statement on its own (msg_batch_send, msg_store_send),
 * so the log head is held for that statement's execution and commit only,
 * never across a round trip to this service (docs/messaging.md,
 * "Positions"). Returns 0 with the event in `box` with its audience and
 * `row` filled, -1 after kr_rpc_fail, or 1 when a concurrent retry with
 * the same txn_id won. */
static int send_statement(kr_rpc_ctx *ctx, msg_outbox *box, send_args *a, msg_send_row *row)
{
    if (a->reply_to != NULL && check_reply_to(ctx, a) != 0)
        return -1;
    kr_uuid_str id;
    kr_uuid7_new(&id);
    *row = (msg_send_row){.id = kr_arena_strdup(ctx->arena, id.s),
                          .txn_id = a->txn_id,
                          .school_id = a->room->school_id,
                          .room_id = a->room->id,
                          .sender = me(ctx),
                          .text = a->text,
                          .reply_to = a->reply_to,
                          .mentions = a->mentions.array,
                          .attachments = a->attachments,
                          .n_attachments = a->n_attachments,
                          .poll = a->poll,
                          .options = a->options,
                          .multiple_choice = a->multiple_choice,
                          .anonymous = a->anonymous,
                          .closes_at = a->closes_at,
                          .mention_ids = (char *const *)a->mentions.ids,
                          .n_mention_ids = a->mentions.n,
                          .announcement = a->room->kind == MSG_KIND_ANNOUNCEMENT};
    msg_store_result r = msg_batch_send(batch_of(ctx), ctx->pg, row, a->expected);
    a->expected = false;
    if (r == MSG_STORE_CONFLICT)
        return 1; /* the same txn_id committed meanwhile by a concurrent retry */
    if (r != MSG_STORE_OK)
        return msg_fail_store(ctx, r, "message");
    msg_appended ev;
    msg_send_appended(row, &ev);
    msg_outbox_add(box, &ev);
    msg_outbox_set_audience(box, ev.room_id, row->audience);
    return 0;
}

/* Answers and announces an appended send. A message's event is made from
 * what the send wrote (msg_sent_event, the same as ListEvents reads right
 * after the commit), and announced here unless its batch did; a poll's is
 * read back. */
static int send_publish(kr_rpc_ctx *ctx, const msg_outbox *box, const send_args *a, const msg_send_row *row,
                        Kreide__Messaging__Event **out)
{
    if (a->poll)
        return msg_publish(ctx, box, out);
    const msg_app *app = ctx->app;
    *out = msg_sent_event(ctx->arena, &box->items[0], row, row->mention_ids, row->n_mention_ids, row->announcement,
                          msg_audience_but(row->audience, row->sender));
    if (!row->announced && app != NULL && msg_events_enabled(app->events))
        msg_events_publish(app->events, box, out);
    return 0;
}

/* Sends (a message or a poll) and answers its event. */
static int send_and_reply(kr_rpc_ctx *ctx, send_args *a, Kreide__Messaging__Event *out)
{
    Kreide__Messaging__Event *ev = NULL;
    msg_outbox box = {0};
    msg_send_row row = {0};
    int rc = send_statement(ctx, &box, a, &row);
    if (rc == 0)
        rc = send_publish(ctx, &box, a, &row, &ev);
    msg_send_row_clear(&row);
    msg_outbox_free(&box);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        if (ev == NULL)
            return msg_fail_store(ctx, MSG_STORE_ERROR, "message");
        *out = *ev;
        return 0;
    }
    /* A concurrent retry won the race: answer its event. */
    int found = earlier_send(ctx, a);
    if (found < 0)
        return -1;
    if (found == 0)
        return msg_fail_store(ctx, MSG_STORE_ERROR, "message");
    return msg_reply_event(ctx, a->position, out);
}

/* SendMessage once the batch expects it: `room` gets the room, `a` (whose
 * room it is) the send. */
static int send_checked(kr_rpc_ctx *ctx, const Kreide__Messaging__SendMessageRequest *in, msg_room_ref *room, send_args *a,
                        Kreide__Messaging__Event *out)
{
    msg_earlier_send earlier;
    if (msg_room_for_txn(ctx, in->room_id, in->txn_id, room, &earlier) != 0)
        return -1;
    if (!msg_txn_id_valid(in->txn_id))
        return msg_fail_invalid(ctx, "messaging.invalid_txn_id", "txn_id", "txn_id must be 1 to 64 of A-Z a-z 0-9 . _ ~ -");
    a->txn_id = in->txn_id;
    a->text = in->text;
    /* A retry of a send that went through answers the first result, even
     * when the room changed since (locked, the sender muted). */
    int found = earlier_answer(ctx, a, &earlier);
    if (found < 0)
        return -1;
    if (found == 1)
        return msg_reply_event(ctx, a->position, out);
    if (!msg_may_post(room->kind, room->locked, &room->me))
        return refuse_post(ctx, room);
    if (check_text(ctx, in->text, MSG_TEXT_MAX_CHARS, "text") != 0)
        return -1;
    if (in->reply_to[0] != '\0') {
        if (msg_check_uuid(ctx, in->reply_to, "reply_to") != 0)
            return -1;
        a->reply_to = lower_id(ctx, in->reply_to);
    }
    if (check_mentions(ctx, room, in->mentions, in->n_mentions, &a->mentions) != 0 ||
        check_attachments(ctx, in->attachments, in->n_attachments, &a->attachments) != 0)
        return -1;
    a->n_attachments = in->n_attachments;
    return send_and_reply(ctx, a, out);
}

static int send_message(kr_rpc_ctx *ctx, const Kreide__Messaging__SendMessageRequest *in, Kreide__Messaging__Event *out)
{
    /* From here on the batch expects this send (msg_batch_expect). */
    msg_room_ref room;
    send_args a = {.room = &room, .expected = true};
    msg_batch_expect(batch_of(ctx));
    int rc = send_checked(ctx, in, &room, &a, out);
    if (a.expected)
        msg_batch_unexpect(batch_of(ctx));
    return rc;
}

/* ------------------------------------------------------- edit and delete */

typedef struct {
    const msg_room_ref *room;
    const msg_message_ref *msg;
    const char *text;
    const char *mentions;
    bool by_moderator;
    const char *reason;
} change_args;

static int edit_body(kr_rpc_ctx *ctx, msg_outbox *box, void *arg)
{
    change_args *a = arg;
    const char *params[] = {a->msg->id, a->text, a->mentions};
    PGresult *r = tx_sql(ctx, "edit message",
                         "UPDATE messaging.messages SET body = $2, mentions = $3::uuid[], edited_at = now() "
                         "WHERE id = $1 AND deleted_at IS NULL RETURNING id",
                         3, params);
    if (r == NULL)
        return -1;
    bool ok = PQntuples(r) == 1;
    PQclear(r);
    if (!ok)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.deleted", "message_id", "the message was deleted");
    msg_new_event ne = {.kind = "message.edited", .sender = me(ctx), .message_id = a->msg->id};
    return tx_append(ctx, box, a->room, &ne, NULL);
}

static int edit_message(kr_rpc_ctx *ctx, const Kreide__Messaging__EditMessageRequest *in, Kreide__Messaging__Event *out)
{
    msg_room_ref room;
    msg_message_ref msg;
    if (msg_message_for(ctx, in->message_id, "message_id", false, &room, &msg) != 0)
        return -1;
    if (strcasecmp(msg.sender, me(ctx)) != 0)
        return msg_fail_forbidden(ctx, "only the author may edit a message");
    if (msg.deleted)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.deleted", "message_id", "the message was deleted");
    if (msg.is_poll)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.is_poll", "message_id",
                           "a poll cannot be edited; close it and make a new one");
    if (!msg_may_post(room.kind, room.locked, &room.me))
        return refuse_post(ctx, &room);
    change_args a = {.room = &room, .msg = &msg, .text = in->text};
    mention_list mentions = {0};
    if (check_text(ctx, in->text, MSG_TEXT_MAX_CHARS, "text") != 0 ||
        check_mentions(ctx, &room, in->mentions, in->n_mentions, &mentions) != 0)
        return -1;
    a.mentions = mentions.array;
    return run_tx_reply(ctx, "message", edit_body, &a, out);
}

/* Removes a message's content and everything hanging on it; the tombstone
 * (who, when, that it was deleted) stays in the log. */
static int delete_body(kr_rpc_ctx *ctx, msg_outbox *box, void *arg)
{
    change_args *a = arg;
    const char *params[] = {a->msg->id, me(ctx), a->by_moderator ? "t" : "f"};
    PGresult *r = tx_sql(ctx, "delete message",
                         "UPDATE messaging.messages SET body = NULL, mentions = '{}', deleted_at = now(), deleted_by = $2, "
                         "removed_by_moderator = $3 WHERE id = $1 AND deleted_at IS NULL RETURNING id",
                         3, params);
    if (r == NULL)
        return -1;
    bool ok = PQntuples(r) == 1;
    PQclear(r);
    if (!ok)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.deleted", "message_id",
                           "the message was already deleted");
    const char *p1[] = {a->msg->id};
    static const char *const hanging[] = {
        "DELETE FROM messaging.attachments WHERE message_id = $1", "DELETE FROM messaging.reactions WHERE message_id = $1",
        "DELETE FROM messaging.pins WHERE message_id = $1",        "DELETE FROM messaging.confirmations WHERE message_id = $1",
        "DELETE FROM messaging.polls WHERE message_id = $1",
    };
    for (size_t i = 0; i < sizeof(hanging) / sizeof(hanging[0]); i++) {
        if (tx_exec(ctx, "delete message parts", hanging[i], 1, p1) != 0)
            return -1;
    }
    if (a->by_moderator) {
        /* Open reports on it are settled by the removal. */
        const char *p2[] = {a->msg->id, me(ctx)};
        if (tx_exec(ctx, "resolve reports",
                    "UPDATE messaging.reports SET resolved_at = now(), resolved_by = $2, resolution = 'removed' "
                    "WHERE message_id = $1 AND resolved_at IS NULL",
                    2, p2) != 0)
            return -1;
        msg_store_result res =
            msg_store_audit(ctx->pg, a->room->school_id, a->room->id, "message.removed", me(ctx), a->reason ? a->reason : "",
                            kr_arena_printf(ctx->arena, "{\"message_id\":\"%s\",\"sender\":\"%s\"}", a->msg->id, a->msg->sender));
        if (res != MSG_STORE_OK)
            return msg_fail_store(ctx, res, "audit");
    }
    msg_new_event ne = {.kind = "message.deleted", .sender = me(ctx), .message_id = a->msg->id};
    return tx_append(ctx, box, a->room, &ne, NULL);
}

static int delete_message(kr_rpc_ctx *ctx, const Kreide__Messaging__DeleteMessageRequest *in, Kreide__Messaging__Event *out)
{
    msg_room_ref room;
    msg_message_ref msg;
    if (msg_message_for(ctx, in->message_id, "message_id", false, &room, &msg) != 0)
        return -1;
    bool author = strcasecmp(msg.sender, me(ctx)) == 0;
    bool moderator = !author && msg_may_moderate(room.kind, &room.me, 0);
    if (!author && !moderator)
        return msg_fail_forbidden(ctx, "only the author and the room's moderators may delete a message");
    if (msg.deleted)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.deleted", "message_id",
                           "the message was already deleted");
    change_args a = {.room = &room, .msg = &msg, .by_moderator = moderator};
    return run_tx_reply(ctx, "message", delete_body, &a, out);
}

/* Exposed to api_moderation.c: a moderator's removal with a reason. */
int msg_remove_message(kr_rpc_ctx *ctx, const msg_room_ref *room, const msg_message_ref *msg, const char *reason,
                       Kreide__Messaging__Event *out);
int msg_remove_message(kr_rpc_ctx *ctx, const msg_room_ref *room, const msg_message_ref *msg, const char *reason,
                       Kreide__Messaging__Event *out)
{
    change_args a = {.room = room, .msg = msg, .by_moderator = true, .reason = reason};
    return run_tx_reply(ctx, "message", delete_body, &a, out);
}

/* ------------------------------------------------------------ reactions */

typedef struct {
    const msg_room_ref *room;
    const msg_message_ref *msg;
    const char *key;
    bool add;
} react_args;

static int react_body(kr_rpc_ctx *ctx, msg_outbox *box, void *arg)
{
    react_args *a = arg;
    const char *params[] = {a->msg->id, me(ctx), a->key};
    PGresult *r;
    if (a->add) {
        r = tx_sql(ctx, "count reactions", "SELECT count(*) FROM messaging.reactions WHERE message_id = $1 AND user_id = $2", 2,
                   params);
        if (r == NULL)
            return -1;
        long n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        if (n >= MAX_REACTIONS_PER_PERSON)
            return kr_rpc_fail(ctx, KREIDE__STATUS__RESOURCE_EXHAUSTED, "messaging.too_many", "key",
                               "at most %d reactions per person and message", MAX_REACTIONS_PER_PERSON);
        r = tx_sql(ctx, "add reaction",
                   "INSERT INTO messaging.reactions (message_id, user_id, key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING "
                   "RETURNING key",
                   3, params);
    } else {
        r = tx_sql(ctx, "remove reaction",
                   "DELETE FROM messaging.reactions WHERE message_id = $1 AND user_id = $2 AND key = $3 RETURNING key", 3, params);
    }
    if (r == NULL)
        return -1;
    bool changed = PQntuples(r) == 1;
    PQclear(r);
    if (!changed && a->add)
        return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "messaging.already_reacted", "key",
                           "you already reacted with this key");
    if (!changed)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.not_reacted", "key", "you have not reacted with this key");
    msg_new_event ne = {.kind = a->add ? "reaction.added" : "reaction.removed",
                        .sender = me(ctx),
                        .message_id = a->msg->id,
                        .data = kr_arena_printf(ctx->arena, "{\"key\":%s}", msg_json_string(ctx->arena, a->key))};
    return tx_append(ctx, box, a->room, &ne, NULL);
}

static int react_common(kr_rpc_ctx *ctx, const Kreide__Messaging__ReactRequest *in, bool add, Kreide__Messaging__Event *out)
{
    msg_room_ref room;
    msg_message_ref msg;
    if (msg_message_for(ctx, in->message_id, "message_id", false, &room, &msg) != 0)
        return -1;
    if (!msg_reaction_key_valid(in->key))
        return msg_fail_invalid(ctx, "messaging.invalid_reaction", "key", "key is 1 to 32 bytes of text without spaces");
    if (msg.deleted)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.deleted", "message_id", "the message was deleted");
    if (!msg_may_react(room.locked, &room.me))
        return refuse_post(ctx, &room);
    react_args a = {.room = &room, .msg = &msg, .key = in->key, .add = add};
    return run_tx_reply(ctx, "reaction", react_body, &a, out);
}

static int react(kr_rpc_ctx *ctx, const Kreide__Messaging__ReactRequest *in, Kreide__Messaging__Event *out)
{
    return react_common(ctx, in, true, out);
}

static int unreact(kr_rpc_ctx *ctx, const Kreide__Messaging__ReactRequest *in, Kreide__Messaging__Event *out)
{
    return react_common(ctx, in, false, out);
}

/* ------------------------------------------------------------- receipts */

typedef struct {
    const msg_room_ref *room;
    int64_t up_to;
    const char *confirm; /* message id or NULL */
} read_args;

static int read_body(kr_rpc_ctx *ctx, msg_outbox *box, void *arg)
{
    read_args *a = arg;
    const char *params[] = {a->room->id, me(ctx), num(ctx, a->up_to)};
    PGresult *r = tx_sql(ctx, "move receipt",
                         "UPDATE messaging.room_members SET last_read_position = $3 WHERE room_id = $1 AND user_id = $2 "
                         "AND state = 'joined' AND last_read_position < $3 RETURNING 1",
                         3, params);
    if (r == NULL)
        return -1;
    bool moved = PQntuples(r) == 1;
    PQclear(r);
    if (moved) {
        msg_new_event ne = {
            .kind = "receipt", .sender = me(ctx), .data = kr_arena_printf(ctx->arena, "{\"up_to\":%" PRId64 "}", a->up_to)};
        if (tx_append(ctx, box, a->room, &ne, NULL) != 0)
            return -1;
    }
    if (a->confirm != NULL) {
        const char *p2[] = {a->confirm, me(ctx)};
        r = tx_sql(ctx, "confirm reading",
                   "INSERT INTO messaging.confirmations (message_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
                   2, p2);
        if (r == NULL)
            return -1;
        bool confirmed = PQntuples(r) == 1;
        PQclear(r);
        if (confirmed) {
            msg_new_event ne = {.kind = "read.confirmed", .sender = me(ctx), .message_id = a->confirm};
            if (tx_append(ctx, box, a->room, &ne, NULL) != 0)
                return -1;
        }
    }
    return 0;
}

static int mark_read(kr_rpc_ctx *ctx, const Kreide__Messaging__MarkReadRequest *in, Kreide__Messaging__MarkReadReply *out)
{
    msg_room_ref room;
    if (msg_room_for(ctx, in->room_id, "room_id", false, &room) != 0)
        return -1;
    const char *p0[] = {room.id};
    PGresult *r = msg_sql(ctx->pg, "room head", "SELECT last_position FROM messaging.rooms WHERE id = $1", 1, p0);
    if (r == NULL)
        return msg_fail_store(ctx, msg_sql_failure(ctx->pg), "room");
    int64_t head = PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    if (in->position < 0 || in->position > head)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "messaging.invalid_position", "position",
                           "position must be a position of this room's log (at most %" PRId64 ")", head);
    read_args a = {.room = &room, .up_to = in->position};
    /* Outside the block: a.confirm points into msg until the receipt is written. */
    msg_room_ref mroom;
    msg_message_ref msg;
    if (in->confirm_message_id[0] != '\0') {
        if (msg_message_for(ctx, in->confirm_message_id, "confirm_message_id", false, &mroom, &msg) != 0)
            return -1;
        if (strcmp(mroom.id, room.id) != 0)
            return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.message_not_found", "confirm_message_id",
                               "confirm_message_id names no message of this room");
        if (room.kind != MSG_KIND_ANNOUNCEMENT)
            return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.not_announcement", "confirm_message_id",
                               "reading is confirmed on announcements only");
        if (msg.deleted)
            return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.deleted", "confirm_message_id",
                               "the message was deleted");
        if (strcasecmp(msg.sender, me(ctx)) == 0)
            return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.own_message", "confirm_message_id",
                               "an author does not confirm their own announcement");
        a.confirm = msg.id;
        /* Confirming a message means having read up to it. */
        if (a.up_to < msg.position)
            a.up_to = msg.position;
    }
    if (run_tx(ctx, "receipt", read_body, &a, NULL) != 0)
        return -1;
    Kreide__Messaging__Room view;
    msg_store_result rr = msg_read_room(ctx, room.id, false, &view);
    if (rr != MSG_STORE_OK)
        return msg_fail_store(ctx, rr, "room");
    out->last_read_position = view.last_read_position;
    out->unread_count = view.unread_count;
    return 0;
}

static int get_read_status(kr_rpc_ctx *ctx, const Kreide__Messaging__GetReadStatusRequest *in,
                           Kreide__Messaging__ReadStatusReply *out)
{
    msg_room_ref room;
    msg_message_ref msg;
    if (msg_message_for(ctx, in->message_id, "message_id", false, &room, &msg) != 0)
        return -1;
    if (room.kind != MSG_KIND_ANNOUNCEMENT)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.not_announcement", "message_id",
                           "read status is kept for announcements");
    if (msg.deleted)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.deleted", "message_id", "the message was deleted");
    const char *params[] = {room.id, msg.sender, num(ctx, msg.position), msg.id};
    PGresult *r = msg_sql(ctx->pg, "read status",
                          "SELECT m.user_id::text, m.last_read_position >= $3, "
                          "EXISTS (SELECT 1 FROM messaging.confirmations c WHERE c.message_id = $4 AND c.user_id = m.user_id) "
                          "FROM messaging.room_members m WHERE m.room_id = $1 AND m.state = 'joined' AND m.user_id <> $2 "
                          "ORDER BY m.user_id",
                          4, params);
    if (r == NULL)
        return msg_fail_store(ctx, msg_sql_failure(ctx->pg), "message");
    out->status = kr_arena_alloc(ctx->arena, sizeof(*out->status));
    kreide__messaging__read_status__init(out->status);
    /* Who read it is for the author and the moderators; the others see
     * the counts. */
    bool lists = strcasecmp(msg.sender, me(ctx)) == 0 || room.me.moderator;
    size_t n = (size_t)PQntuples(r);
    out->read_ids = kr_arena_alloc(ctx->arena, sizeof(char *) * (n ? n : 1));
    out->confirmed_ids = kr_arena_alloc(ctx->arena, sizeof(char *) * (n ? n : 1));
    out->unread_ids = kr_arena_alloc(ctx->arena, sizeof(char *) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        char *id = kr_arena_strdup(ctx->arena, PQgetvalue(r, (int)i, 0));
        bool read = PQgetvalue(r, (int)i, 1)[0] == 't';
        bool confirmed = PQgetvalue(r, (int)i, 2)[0] == 't';
        out->status->audience++;
        out->status->read += read;
        out->status->confirmed += confirmed;
        if (strcasecmp(id, me(ctx)) == 0)
            out->status->confirmed_by_me = confirmed;
        if (!lists)
            continue;
        if (read)
            out->read_ids[out->n_read_ids++] = id;
        else
            out->unread_ids[out->n_unread_ids++] = id;
        if (confirmed)
            out->confirmed_ids[out->n_confirmed_ids++] = id;
    }
    PQclear(r);
    return 0;
}

/* -------------------------------------------------------- history, search */

static int list_events(kr_rpc_ctx *ctx, const Kreide__Messaging__ListEventsRequest *in, Kreide__Messaging__ListEventsReply *out)
{
    msg_event_query q = {.limit = in->limit ? in->limit : EVENTS_DEFAULT_LIMIT, .messages_only = in->messages_only};
    if (q.limit > EVENTS_MAX_LIMIT)
        return msg_fail_invalid(ctx, "messaging.invalid_limit", "limit", "limit must be at most 500");
    if (in->after < 0 || in->before < 0)
        return msg_fail_invalid(ctx, "messaging.invalid_position", in->after < 0 ? "after" : "before",
                                "positions are never negative");
    msg_room_ref room;
    if (in->room_id[0] != '\0') {
        if (msg_room_for(ctx, in->room_id, "room_id", false, &room) != 0)
            return -1;
        if (in->after > 0 && in->before > 0 && in->after >= in->before)
            return msg_fail_invalid(ctx, "messaging.invalid_position", "before", "before must lie after after");
        q.room_id = room.id;
        q.after = in->after;
        q.before = in->before;
        q.backward = in->after == 0;
    } else {
        if (msg_require_person(ctx) != 0)
            return -1;
        if (in->before != 0)
            return msg_fail_invalid(ctx, "messaging.invalid_position", "before",
                                    "the stream across rooms is read forward: give after, not before");
        q.after = in->after;
    }
    bool more = false;
    int64_t head = 0;
    msg_store_result r = msg_read_events(ctx, &q, &out->events, &out->n_events, &more, &head);
    if (r != MSG_STORE_OK)
        return msg_fail_store(ctx, r, "event");
    out->more = more;
    out->head = head;
    return 0;
}

static int search_room(kr_rpc_ctx *ctx, const Kreide__Messaging__SearchRoomRequest *in, Kreide__Messaging__SearchRoomReply *out)
{
    msg_room_ref room;
    if (msg_room_for(ctx, in->room_id, "room_id", false, &room) != 0)
        return -1;
    unsigned limit = in->limit ? in->limit : SEARCH_DEFAULT_LIMIT;
    if (limit > SEARCH_MAX_LIMIT)
        return msg_fail_invalid(ctx, "messaging.invalid_limit", "limit", "limit must be at most 100");
    if (in->before < 0)
        return msg_fail_invalid(ctx, "messaging.invalid_position", "before", "positions are never negative");
    if (strlen(in->q) > 200)
        return msg_fail_invalid(ctx, "messaging.invalid_query", "q", "q must be at most 200 bytes");
    char *query = msg_search_query(ctx->arena, in->q);
    if (query == NULL)
        return msg_fail_invalid(ctx, "messaging.invalid_query", "q", "q must hold at least one word of letters or digits");
    bool more = false;
    msg_store_result r = msg_read_search(ctx, &room, query, in->before, limit, &out->messages, &out->n_messages, &more);
    if (r != MSG_STORE_OK)
        return msg_fail_store(ctx, r, "message");
    out->more = more;
    return 0;
}

/* ----------------------------------------------------------------- pins */

typedef struct {
    const msg_room_ref *room;
    const msg_message_ref *msg;
    bool pin;
} pin_args;

static int pin_body(kr_rpc_ctx *ctx, msg_outbox *box, void *arg)
{
    pin_args *a = arg;
    const char *params[] = {a->room->id, a->msg->id, me(ctx)};
    PGresult *r;
    if (a->pin) {
        r = tx_sql(ctx, "count pins", "SELECT count(*) FROM messaging.pins WHERE room_id = $1", 1, params);
        if (r == NULL)
            return -1;
        long n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        if (n >= MAX_PINS_PER_ROOM)
            return kr_rpc_fail(ctx, KREIDE__STATUS__RESOURCE_EXHAUSTED, "messaging.too_many", "message_id",
                               "at most %d pinned messages per room", MAX_PINS_PER_ROOM);
        r = tx_sql(ctx, "pin",
                   "INSERT INTO messaging.pins (room_id, message_id, pinned_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING "
                   "RETURNING 1",
                   3, params);
    } else {
        r = tx_sql(ctx, "unpin", "DELETE FROM messaging.pins WHERE room_id = $1 AND message_id = $2 RETURNING 1", 2, params);
    }
    if (r == NULL)
        return -1;
    bool changed = PQntuples(r) == 1;
    PQclear(r);
    if (!changed && a->pin)
        return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "messaging.already_pinned", "message_id", "the message is pinned");
    if (!changed)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.not_pinned", "message_id", "the message is not pinned");
    msg_new_event ne = {.kind = a->pin ? "message.pinned" : "message.unpinned", .sender = me(ctx), .message_id = a->msg->id};
    return tx_append(ctx, box, a->room, &ne, NULL);
}

static int pin_common(kr_rpc_ctx *ctx, const Kreide__Messaging__PinRequest *in, bool pin, Kreide__Messaging__Event *out)
{
    msg_room_ref room;
    msg_message_ref msg;
    if (msg_message_for(ctx, in->message_id, "message_id", false, &room, &msg) != 0)
        return -1;
    if (!msg_may_pin(room.kind, &room.me))
        return msg_fail_forbidden(ctx, "only the room's moderators may pin messages");
    if (pin && msg.deleted)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.deleted", "message_id", "the message was deleted");
    pin_args a = {.room = &room, .msg = &msg, .pin = pin};
    return run_tx_reply(ctx, "pin", pin_body, &a, out);
}

static int pin(kr_rpc_ctx *ctx, const Kreide__Messaging__PinRequest *in, Kreide__Messaging__Event *out)
{
    return pin_common(ctx, in, true, out);
}

static int unpin(kr_rpc_ctx *ctx, const Kreide__Messaging__PinRequest *in, Kreide__Messaging__Event *out)
{
    return pin_common(ctx, in, false, out);
}

/* --------------------------------------------------------------- typing */

static int set_typing(kr_rpc_ctx *ctx, const Kreide__Messaging__TypingRequest *in, Kreide__Empty *out)
{
    (void)out;
    msg_room_ref room;
    if (msg_room_for(ctx, in->room_id, "room_id", false, &room) != 0)
        return -1;
    if (!msg_may_post(room.kind, room.locked, &room.me))
        return refuse_post(ctx, &room);
    /* Ephemeral: announced, never stored. */
    const msg_app *app = ctx->app;
    char **ids = NULL;
    size_t n = 0;
    msg_store_result r = msg_store_room_audience(ctx->pg, ctx->arena, room.id, 0, &ids, &n);
    if (r != MSG_STORE_OK)
        return msg_fail_store(ctx, r, "room");
    size_t k = 0;
    const char *self = me(ctx);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ids[i], self) != 0)
            ids[k++] = ids[i];
    }
    msg_events_notify(app->events, "typing", room.school_id, room.id, self, in->typing ? "{\"typing\":true}" : "{\"typing\":false}",
                      ids, k);
    return 0;
}

/* ----------------------------------------------------------------- polls */

static int create_poll(kr_rpc_ctx *ctx, const Kreide__Messaging__CreatePollRequest *in, Kreide__Messaging__Event *out)
{
    msg_room_ref room;
    msg_earlier_send earlier;
    if (msg_room_for_txn(ctx, in->room_id, in->txn_id, &room, &earlier) != 0)
        return -1;
    if (!msg_txn_id_valid(in->txn_id))
        return msg_fail_invalid(ctx, "messaging.invalid_txn_id", "txn_id", "txn_id must be 1 to 64 of A-Z a-z 0-9 . _ ~ -");
    send_args a = {.room = &room, .txn_id = in->txn_id, .text = in->question, .poll = true};
    int found = earlier_answer(ctx, &a, &earlier);
    if (found < 0)
        return -1;
    if (found == 1)
        return msg_reply_event(ctx, a.position, out);
    if (!msg_may_post(room.kind, room.locked, &room.me))
        return refuse_post(ctx, &room);
    if (check_text(ctx, in->question, MSG_POLL_QUESTION_MAX, "question") != 0)
        return -1;
    if (in->n_options < MSG_POLL_MIN_OPTIONS || in->n_options > MSG_POLL_MAX_OPTIONS)
        return msg_fail_invalid(ctx, "messaging.invalid_poll", "options", "a poll has 2 to 20 options");
    for (size_t i = 0; i < in->n_options; i++) {
        long len = msg_plain_length(in->options[i]);
        if (len < 1 || len > MSG_POLL_OPTION_MAX)
            return msg_fail_invalid(ctx, "messaging.invalid_poll", kr_arena_printf(ctx->arena, "options[%zu]", i),
                                    "an option is 1 to 200 characters of one line of text");
        for (size_t j = 0; j < i; j++) {
            if (strcmp(in->options[i], in->options[j]) == 0)
                return msg_fail_invalid(ctx, "messaging.invalid_poll", kr_arena_printf(ctx->arena, "options[%zu]", i),
                                        "two options are the same");
        }
    }
    if (in->closes_at[0] != '\0') {
        int64_t at;
        int64_t now = kr_now_ms();
        if (!msg_time_parse(in->closes_at, &at))
            return msg_fail_invalid(ctx, "messaging.invalid_time", "closes_at", "closes_at must be an RFC 3339 time");
        if (at <= now || at > now + (int64_t)MAX_POLL_DAYS * 86400000)
            return msg_fail_invalid(ctx, "messaging.invalid_time", "closes_at", "closes_at must lie within the next year");
        a.closes_at = in->closes_at;
    }
    a.options = msg_pg_array(ctx->arena, (const char *const *)in->options, in->n_options);
    a.multiple_choice = in->multiple_choice;
    a.anonymous = in->anonymous;
    a.mentions.array = "{}";
    return send_and_reply(ctx, &a, out);
}

/* A poll as the checks need it. */
typedef struct {
    size_t noptions;
    bool multiple_choice, anonymous, closed;
} poll_state;

static int poll_for(kr_rpc_ctx *ctx, const char *poll_id, bool lock, msg_room_ref *room, msg_message_ref *msg, poll_state *st)
{
    if (room != NULL && msg_message_for(ctx, poll_id, "poll_id", false, room, msg) != 0)
        return -1;
    if (room != NULL && (!msg->is_poll || msg->deleted))
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.poll_not_found", "poll_id", "no such poll");
    const char *params[] = {room != NULL ? msg->id : poll_id};
    PGresult *r =
        msg_sql(ctx->pg, "select poll",
                lock ? "SELECT cardinality(options), multiple_choice, anonymous, closed_at IS NOT NULL OR "
                       "(closes_at IS NOT NULL AND closes_at <= now()) FROM messaging.polls WHERE message_id = $1 FOR UPDATE"
                     : "SELECT cardinality(options), multiple_choice, anonymous, closed_at IS NOT NULL OR "
                       "(closes_at IS NOT NULL AND closes_at <= now()) FROM messaging.polls WHERE message_id = $1",
                1, params);
    if (r == NULL)
        return msg_fail_store(ctx, msg_sql_failure(ctx->pg), "poll");
    bool found = PQntuples(r) == 1;
    if (found) {
        st->noptions = (size_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
        st->multiple_choice = PQgetvalue(r, 0, 1)[0] == 't';
        st->anonymous = PQgetvalue(r, 0, 2)[0] == 't';
        st->closed = PQgetvalue(r, 0, 3)[0] == 't';
    }
    PQclear(r);
    if (!found)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "messaging.poll_not_found", "poll_id", "no such poll");
    return 0;
}

typedef struct {
    const msg_room_ref *room;
    const msg_message_ref *msg;
    const uint32_t *options;
    size_t n;
} vote_args;

static int vote_body(kr_rpc_ctx *ctx, msg_outbox *box, void *arg)
{
    vote_args *a = arg;
    poll_state st = {0};
    /* Locked, so a vote cannot slip in after the poll closed. */
    if (poll_for(ctx, a->msg->id, true, NULL, NULL, &st) != 0)
        return -1;
    if (st.closed)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.poll_closed", "poll_id", "the poll is closed");
    const char *params[] = {a->msg->id, me(ctx)};
    if (tx_exec(ctx, "clear vote", "DELETE FROM messaging.poll_votes WHERE message_id = $1 AND user_id = $2", 2, params) != 0)
        return -1;
    for (size_t i = 0; i < a->n; i++) {
        const char *p[] = {a->msg->id, me(ctx), kr_arena_printf(ctx->arena, "%u", a->options[i])};
        if (tx_exec(ctx, "vote", "INSERT INTO messaging.poll_votes (message_id, user_id, option) VALUES ($1, $2, $3)", 3, p) != 0)
            return -1;
    }
    /* An anonymous poll's vote is the service's event: nobody learns from
     * the log who voted when. */
    msg_new_event ne = {.kind = "poll.voted", .sender = st.anonymous ? NULL : me(ctx), .message_id = a->msg->id};
    return tx_append(ctx, box, a->room, &ne, NULL);
}

/* Runs a vote or a closing and answers the poll as its event shows it. */
static int run_tx_poll(kr_rpc_ctx *ctx, const char *what, tx_body body, vote_args *a, Kreide__Messaging__Message *out)
{
    Kreide__Messaging__Event *ev = NULL;
    if (run_tx(ctx, what, body, a, &ev) != 0)
        return -1;
    if (ev == NULL || ev->message == NULL)
        return msg_fail_store(ctx, MSG_STORE_NOT_FOUND, "poll");
    *out = *ev->message;
    return 0;
}

static int vote(kr_rpc_ctx *ctx, const Kreide__Messaging__VoteRequest *in, Kreide__Messaging__Message *out)
{
    msg_room_ref room;
    msg_message_ref msg;
    poll_state st = {0};
    if (poll_for(ctx, in->poll_id, false, &room, &msg, &st) != 0)
        return -1;
    if (!msg_may_react(room.locked, &room.me))
        return refuse_post(ctx, &room);
    if (st.closed)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.poll_closed", "poll_id", "the poll is closed");
    if (!st.multiple_choice && in->n_options > 1)
        return msg_fail_invalid(ctx, "messaging.invalid_vote", "options", "this poll takes one option");
    uint32_t *opts = kr_arena_alloc(ctx->arena, sizeof(uint32_t) * (in->n_options ? in->n_options : 1));
    size_t n = 0;
    for (size_t i = 0; i < in->n_options; i++) {
        if (in->options[i] >= st.noptions)
            return msg_fail_invalid(ctx, "messaging.invalid_vote", kr_arena_printf(ctx->arena, "options[%zu]", i),
                                    "no such option");
        bool dup = false;
        for (size_t j = 0; j < n && !dup; j++)
            dup = opts[j] == in->options[i];
        if (!dup)
            opts[n++] = in->options[i];
    }
    vote_args a = {.room = &room, .msg = &msg, .options = opts, .n = n};
    return run_tx_poll(ctx, "vote", vote_body, &a, out);
}

static int close_body(kr_rpc_ctx *ctx, msg_outbox *box, void *arg)
{
    vote_args *a = arg;
    const char *params[] = {a->msg->id};
    PGresult *r = tx_sql(ctx, "close poll",
                         "UPDATE messaging.polls SET closed_at = now() WHERE message_id = $1 AND closed_at IS NULL "
                         "AND (closes_at IS NULL OR closes_at > now()) RETURNING 1",
                         1, params);
    if (r == NULL)
        return -1;
    bool closed = PQntuples(r) == 1;
    PQclear(r);
    if (!closed)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "messaging.poll_closed", "poll_id", "the poll is closed");
    msg_new_event ne = {.kind = "poll.closed", .sender = me(ctx), .message_id = a->msg->id};
    return tx_append(ctx, box, a->room, &ne, NULL);
}

static int close_poll(kr_rpc_ctx *ctx, const Kreide__Messaging__PollRequest *in, Kreide__Messaging__Message *out)
{
    msg_room_ref room;
    msg_message_ref msg;
    poll_state st = {0};
    if (poll_for(ctx, in->poll_id, false, &room, &msg, &st) != 0)
        return -1;
    if (strcasecmp(msg.sender, me(ctx)) != 0 && !msg_may_moderate(room.kind, &room.me, 0))
        return msg_fail_forbidden(ctx, "only the poll's author and the room's moderators may close it");
    vote_args a = {.room = &room, .msg = &msg};
    return run_tx_poll(ctx, "poll", close_body, &a, out);
}

static int get_poll(kr_rpc_ctx *ctx, const Kreide__Messaging__PollRequest *in, Kreide__Messaging__Message *out)
{
    msg_room_ref room;
    msg_message_ref msg;
    poll_state st = {0};
    if (poll_for(ctx, in->poll_id, false, &room, &msg, &st) != 0)
        return -1;
    Kreide__Messaging__Message *m;
    msg_store_result r = msg_read_message(ctx, msg.id, &m);
    if (r != MSG_STORE_OK)
        return msg_fail_store(ctx, r, "poll");
    *out = *m;
    return 0;
}

KR_RPC_HANDLER(send_message, Kreide__Messaging__SendMessageRequest, Kreide__Messaging__Event)
KR_RPC_HANDLER(edit_message, Kreide__Messaging__EditMessageRequest, Kreide__Messaging__Event)
KR_RPC_HANDLER(delete_message, Kreide__Messaging__DeleteMessageRequest, Kreide__Messaging__Event)
KR_RPC_HANDLER(react, Kreide__Messaging__ReactRequest, Kreide__Messaging__Event)
KR_RPC_HANDLER(unreact, Kreide__Messaging__ReactRequest, Kreide__Messaging__Event)
KR_RPC_HANDLER(mark_read, Kreide__Messaging__MarkReadRequest, Kreide__Messaging__MarkReadReply)
KR_RPC_HANDLER(get_read_status, Kreide__Messaging__GetReadStatusRequest, Kreide__Messaging__ReadStatusReply)
KR_RPC_HANDLER(list_events, Kreide__Messaging__ListEventsRequest, Kreide__Messaging__ListEventsReply)
KR_RPC_HANDLER(search_room, Kreide__Messaging__SearchRoomRequest, Kreide__Messaging__SearchRoomReply)
KR_RPC_HANDLER(pin, Kreide__Messaging__PinRequest, Kreide__Messaging__Event)
KR_RPC_HANDLER(unpin, Kreide__Messaging__PinRequest, Kreide__Messaging__Event)
KR_RPC_HANDLER(set_typing, Kreide__Messaging__TypingRequest, Kreide__Empty)
KR_RPC_HANDLER(create_poll, Kreide__Messaging__CreatePollRequest, Kreide__Messaging__Event)
KR_RPC_HANDLER(vote, Kreide__Messaging__VoteRequest, Kreide__Messaging__Message)
KR_RPC_HANDLER(close_poll, Kreide__Messaging__PollRequest, Kreide__Messaging__Message)
KR_RPC_HANDLER(get_poll, Kreide__Messaging__PollRequest, Kreide__Messaging__Message)

const kr_rpc_method msg_message_methods[] = {
    KR_RPC_ENTRY("SendMessage", send_message, Kreide__Messaging__SendMessageRequest, Kreide__Messaging__Event),
    KR_RPC_ENTRY("EditMessage", edit_message, Kreide__Messaging__EditMessageRequest, Kreide__Messaging__Event),
    KR_RPC_ENTRY("DeleteMessage", delete_message, Kreide__Messaging__DeleteMessageRequest, Kreide__Messaging__Event),
    KR_RPC_ENTRY("React", react, Kreide__Messaging__ReactRequest, Kreide__Messaging__Event),
    KR_RPC_ENTRY("Unreact", unreact, Kreide__Messaging__ReactRequest, Kreide__Messaging__Event),
    KR_RPC_ENTRY("MarkRead", mark_read, Kreide__Messaging__MarkReadRequest, Kreide__Messaging__MarkReadReply),
    KR_RPC_ENTRY("GetReadStatus", get_read_status, Kreide__Messaging__GetReadStatusRequest, Kreide__Messaging__ReadStatusReply),
    KR_RPC_ENTRY("ListEvents", list_events, Kreide__Messaging__ListEventsRequest, Kreide__Messaging__ListEventsReply),
    KR_RPC_ENTRY("SearchRoom", search_room, Kreide__Messaging__SearchRoomRequest, Kreide__Messaging__SearchRoomReply),
    KR_RPC_ENTRY("Pin", pin, Kreide__Messaging__PinRequest, Kreide__Messaging__Event),
    KR_RPC_ENTRY("Unpin", unpin, Kreide__Messaging__PinRequest, Kreide__Messaging__Event),
    KR_RPC_ENTRY("SetTyping", set_typing, Kreide__Messaging__TypingRequest, Kreide__Empty),
    KR_RPC_ENTRY("CreatePoll", create_poll, Kreide__Messaging__CreatePollRequest, Kreide__Messaging__Event),
    KR_RPC_ENTRY("Vote", vote, Kreide__Messaging__VoteRequest, Kreide__Messaging__Message),
    KR_RPC_ENTRY("ClosePoll", close_poll, Kreide__Messaging__PollRequest, Kreide__Messaging__Message),
    KR_RPC_ENTRY("GetPoll", get_poll, Kreide__Messaging__PollRequest, Kreide__Messaging__Message),
};
const size_t msg_message_nmethods = sizeof(msg_message_methods) / sizeof(msg_message_methods[0]);
