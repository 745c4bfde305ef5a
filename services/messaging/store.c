/* Transactions, the log's append, schools, rooms and members: the SQL that
 * both the handlers and the roster follower need. Every statement is
 * parameterised; ids reaching here are validated UUIDs; every statement on
 * a room's rows names the room (and so, through the keys, its school). */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kr_id.h"
#include "kr_log.h"
#include "messaging.h"
#include "store_sql.h"

PGresult *msg_sql(kr_pg *pg, const char *what, const char *sql, int n, const char *const *params)
{
    char err[256];
    PGresult *r = kr_pg_exec(pg, sql, n, params, err, sizeof(err));
    if (r == NULL) {
        const char *state = kr_pg_sqlstate(pg);
        /* A unique violation is an answer, not a fault. */
        if (strcmp(state, "23505") != 0)
            kr_log(KR_LOG_ERROR, "database statement failed", "statement", what, "error", err, "sqlstate", state, NULL);
    }
    return r;
}

PGresult *msg_sql_hot(kr_pg *pg, const char *what, const char *sql, int n, const char *const *params)
{
    char err[256];
    PGresult *r = kr_pg_exec_prepared(pg, what, sql, n, params, err, sizeof(err));
    if (r == NULL) {
        const char *state = kr_pg_sqlstate(pg);
        if (strcmp(state, "23505") != 0)
            kr_log(KR_LOG_ERROR, "database statement failed", "statement", what, "error", err, "sqlstate", state, NULL);
    }
    return r;
}

msg_store_result msg_sql_failure(kr_pg *pg)
{
    const char *state = kr_pg_sqlstate(pg);
    if (strcmp(state, "23505") == 0)
        return MSG_STORE_CONFLICT;
    if (strcmp(state, "23503") == 0)
        return MSG_STORE_NOT_FOUND;
    return MSG_STORE_ERROR;
}

/* Runs a statement whose result is not needed. */
static msg_store_result exec(kr_pg *pg, const char *what, const char *sql, int n, const char *const *params)
{
    PGresult *r = msg_sql(pg, what, sql, n, params);
    if (r == NULL)
        return msg_sql_failure(pg);
    PQclear(r);
    return MSG_STORE_OK;
}

msg_store_result msg_tx_begin(kr_pg *pg)
{
    int rc = kr_pg_begin(pg);
    if (rc != KR_PG_OK) {
        kr_log(KR_LOG_ERROR, "cannot begin a transaction", "error", kr_pg_strerror((kr_pg_error)rc), NULL);
        kr_pg_rollback(pg);
        return MSG_STORE_ERROR;
    }
    return MSG_STORE_OK;
}

msg_store_result msg_tx_commit(kr_pg *pg)
{
    int rc = kr_pg_commit(pg);
    if (rc != KR_PG_OK) {
        msg_store_result res = rc == KR_PG_ESQL ? msg_sql_failure(pg) : MSG_STORE_ERROR;
        if (res == MSG_STORE_ERROR)
            kr_log(KR_LOG_ERROR, "commit failed", "error", kr_pg_strerror((kr_pg_error)rc), NULL);
        kr_pg_rollback(pg);
        return res;
    }
    return MSG_STORE_OK;
}

void msg_tx_rollback(kr_pg *pg)
{
    kr_pg_rollback(pg);
}

char *msg_pg_array(kr_arena *arena, const char *const *items, size_t n)
{
    size_t cap = 3;
    for (size_t i = 0; i < n; i++)
        cap += strlen(items[i]) * 2 + 3;
    char *out = kr_arena_alloc(arena, cap);
    size_t o = 0;
    out[o++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            out[o++] = ',';
        out[o++] = '"';
        for (const char *p = items[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                out[o++] = '\\';
            out[o++] = *p;
        }
        out[o++] = '"';
    }
    out[o++] = '}';
    out[o] = '\0';
    return out;
}

char *msg_json_string(kr_arena *arena, const char *s)
{
    json_t *j = json_string(s);
    char *text = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(j);
    if (text == NULL)
        return kr_arena_strdup(arena, "\"\"");
    char *out = kr_arena_strdup(arena, text);
    free(text);
    return out;
}

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* ---------------------------------------------------------------- log */

msg_store_result msg_store_append(kr_pg *pg, const char *school_id, const char *room_id, const msg_new_event *evs, size_t n,
                                  msg_appended *out)
{
    for (size_t i = 0; i < n; i++) {
        const msg_new_event *e = &evs[i];
        msg_appended *a = &out[i];
        memset(a, 0, sizeof(*a));
        if (e->id != NULL) {
            copy(a->id, sizeof(a->id), e->id);
        } else {
            kr_uuid_str id;
            kr_uuid7_new(&id);
            copy(a->id, sizeof(a->id), id.s);
        }
        const char *params[] = {a->id, school_id, room_id, e->kind, e->sender, e->txn_id, e->message_id, e->data ? e->data : "{}"};
        /* One statement: the position, the event, the room's head. The log
         * head's row lock is held until the transaction ends: appends
         * commit one after another, so a reader never sees a position while
         * a lower one is still to come (docs/messaging.md, "Positions"). */
        PGresult *r =
            msg_sql_hot(pg, "append event",
                        "WITH head AS (UPDATE messaging.log_head SET position = position + 1 WHERE only_row RETURNING position), "
                        "ev AS (INSERT INTO messaging.events (position, id, school_id, room_id, kind, sender, txn_id, "
                        "message_id, data) SELECT position, $1, $2, $3, $4, $5, $6, $7, $8::jsonb FROM head "
                        "RETURNING position, created_at), "
                        "room AS (UPDATE messaging.rooms SET last_position = ev.position FROM ev WHERE id = $3) "
                        "SELECT position, " TS("created_at") " FROM ev",
                        8, params);
        if (r == NULL)
            return msg_sql_failure(pg);
        bool ok = PQntuples(r) == 1;
        if (ok) {
            a->position = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            copy(a->created_at, sizeof(a->created_at), PQgetvalue(r, 0, 1));
        }
        PQclear(r);
        if (!ok)
            return MSG_STORE_ERROR;
        copy(a->room_id, sizeof(a->room_id), room_id);
        copy(a->school_id, sizeof(a->school_id), school_id);
        copy(a->kind, sizeof(a->kind), e->kind);
        copy(a->sender, sizeof(a->sender), e->sender);
    }
    return MSG_STORE_OK;
}

msg_store_result msg_store_hold_head(kr_pg *pg)
{
    return exec(pg, "hold log head", "SELECT 1 FROM messaging.log_head WHERE only_row FOR NO KEY UPDATE", 0, NULL);
}

static msg_audience *box_room(msg_outbox *box, const char *room_id)
{
    for (size_t i = 0; i < box->nrooms; i++) {
        if (strcasecmp(box->rooms[i].room_id, room_id) == 0)
            return &box->rooms[i];
    }
    return NULL;
}

static void audience_clear(msg_audience *au)
{
    for (size_t i = 0; i < au->n; i++)
        free(au->ids[i]);
    free(au->ids);
    au->ids = NULL;
    au->n = 0;
    au->known = false;
}

msg_store_result msg_append_to(kr_pg *pg, msg_outbox *box, const char *school_id, const char *room_id, const msg_new_event *ev,
                               msg_appended *out)
{
    msg_appended a;
    msg_store_result res = msg_store_append(pg, school_id, room_id, ev, 1, &a);
    if (res != MSG_STORE_OK)
        return res;
    msg_outbox_add(box, &a);
    if (out != NULL)
        *out = a;
    return MSG_STORE_OK;
}

void msg_outbox_add(msg_outbox *box, const msg_appended *appended)
{
    const msg_appended a = *appended;
    if (box->n == box->cap) {
        size_t cap = box->cap ? box->cap * 2 : 8;
        msg_appended *items = realloc(box->items, cap * sizeof(*items));
        if (items == NULL)
            abort();
        box->items = items;
        box->cap = cap;
    }
    box->items[box->n++] = a;
    msg_audience *au = box_room(box, a.room_id);
    if (au == NULL) {
        if (box->nrooms == box->rooms_cap) {
            size_t cap = box->rooms_cap ? box->rooms_cap * 2 : 4;
            msg_audience *rooms = realloc(box->rooms, cap * sizeof(*rooms));
            if (rooms == NULL)
                abort();
            box->rooms = rooms;
            box->rooms_cap = cap;
        }
        au = &box->rooms[box->nrooms++];
        memset(au, 0, sizeof(*au));
        copy(au->room_id, sizeof(au->room_id), a.room_id);
        au->since = a.position;
    }
    /* Whatever was read before this append may no longer hold. */
    audience_clear(au);
}

static void audience_add(msg_audience *au, const char *user_id)
{
    char **ids = realloc(au->ids, (au->n + 1) * sizeof(*ids));
    if (ids == NULL)
        abort();
    au->ids = ids;
    if ((au->ids[au->n] = strdup(user_id)) == NULL)
        abort();
    au->n++;
}

void msg_outbox_set_audience(msg_outbox *box, const char *room_id, const char *ids)
{
    msg_audience *au = box_room(box, room_id);
    if (au == NULL)
        return;
    audience_clear(au);
    for (const char *p = ids; p != NULL && *p != '\0';) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char id[40];
        snprintf(id, sizeof(id), "%.*s", (int)n, p);
        audience_add(au, id);
        p = comma ? comma + 1 : NULL;
    }
    au->known = true;
}

void msg_outbox_take_audience(msg_outbox *box, const char *room_id, const PGresult *r, int col)
{
    msg_audience *au = box_room(box, room_id);
    if (au == NULL)
        return;
    audience_clear(au);
    for (int row = 0; row < PQntuples(r); row++)
        audience_add(au, PQgetvalue(r, row, col));
    au->known = true;
}

const msg_audience *msg_outbox_audience(const msg_outbox *box, const char *room_id)
{
    for (size_t i = 0; i < box->nrooms; i++) {
        if (strcasecmp(box->rooms[i].room_id, room_id) == 0)
            return box->rooms[i].known ? &box->rooms[i] : NULL;
    }
    return NULL;
}

/* Reads every audience of the box not yet known, in one statement. */
static msg_store_result read_audiences(kr_pg *pg, msg_outbox *box)
{
    kr_arena arena;
    kr_arena_init(&arena);
    const char **rooms = kr_arena_alloc(&arena, sizeof(char *) * (box->nrooms ? box->nrooms : 1));
    const char **since = kr_arena_alloc(&arena, sizeof(char *) * (box->nrooms ? box->nrooms : 1));
    size_t n = 0;
    for (size_t i = 0; i < box->nrooms; i++) {
        if (box->rooms[i].known)
            continue;
        rooms[n] = box->rooms[i].room_id;
        since[n++] = kr_arena_printf(&arena, "%" PRId64, box->rooms[i].since);
    }
    msg_store_result res = MSG_STORE_OK;
    if (n > 0) {
        const char *params[] = {msg_pg_array(&arena, rooms, n), msg_pg_array(&arena, since, n)};
        PGresult *r = msg_sql(pg, "select audiences",
                              "SELECT m.room_id::text, m.user_id::text FROM unnest($1::uuid[], $2::bigint[]) AS x (room_id, since) "
                              "JOIN messaging.room_members m ON m.room_id = x.room_id "
                              "AND (m.state = 'joined' OR m.left_position >= x.since) ORDER BY m.room_id, m.user_id",
                              2, params);
        if (r == NULL) {
            res = msg_sql_failure(pg);
        } else {
            for (size_t i = 0; i < box->nrooms; i++) {
                if (!box->rooms[i].known) {
                    audience_clear(&box->rooms[i]);
                    box->rooms[i].known = true;
                }
            }
            for (int row = 0; row < PQntuples(r); row++) {
                msg_audience *au = box_room(box, PQgetvalue(r, row, 0));
                if (au != NULL)
                    audience_add(au, PQgetvalue(r, row, 1));
            }
            PQclear(r);
        }
    }
    kr_arena_free(&arena);
    return res;
}

/* Whether the box's transaction committed after all: its last event is in
 * the log (event ids are unique). */
static bool committed_after_all(kr_pg *pg, const msg_outbox *box)
{
    const char *params[] = {box->items[box->n - 1].id};
    PGresult *r = msg_sql(pg, "find appended event", "SELECT 1 FROM messaging.events WHERE id = $1", 1, params);
    bool found = r != NULL && PQntuples(r) == 1;
    if (r != NULL)
        PQclear(r);
    return found;
}

msg_store_result msg_outbox_commit(kr_pg *pg, msg_outbox *box, bool announce)
{
    msg_store_result res = announce && box->n > 0 ? read_audiences(pg, box) : MSG_STORE_OK;
    if (res != MSG_STORE_OK) {
        msg_tx_rollback(pg);
        msg_outbox_free(box);
        return res;
    }
    int rc = kr_pg_commit(pg);
    if (rc == KR_PG_OK)
        return MSG_STORE_OK;
    res = rc == KR_PG_ESQL ? msg_sql_failure(pg) : MSG_STORE_ERROR;
    if (res == MSG_STORE_ERROR)
        kr_log(KR_LOG_ERROR, "commit failed", "error", kr_pg_strerror((kr_pg_error)rc), NULL);
    kr_pg_rollback(pg);
    /* A connection lost during COMMIT leaves the outcome open. Positions
     * taken by a commit must each be announced, so look (on a new
     * connection) whether it happened. */
    if (rc == KR_PG_ECONNLOST && box->n > 0 && committed_after_all(pg, box)) {
        kr_log(KR_LOG_WARN, "the commit went through before the connection was lost", NULL);
        return MSG_STORE_OK;
    }
    msg_outbox_free(box); /* nothing of it happened */
    return res;
}

void msg_outbox_free(msg_outbox *box)
{
    for (size_t i = 0; i < box->nrooms; i++)
        audience_clear(&box->rooms[i]);
    free(box->rooms);
    free(box->items);
    memset(box, 0, sizeof(*box));
}

/* ---------------------------------------------------------------- sends */

/* A send's rows as array parameters, one element per row ($1..$9); the
 * distinct rooms with the (1-based) number of their first and last row
 * ($11..$13); attachments and polls with their message's id
 * ($14..$25). */
typedef struct {
    kr_arena *arena;
    const char **ids, **txns, **schools, **rooms, **senders, **texts, **replies, **mentions, **polls;
    const char **room_ids, **room_first, **room_last;
    size_t nrooms;
    const char **att_msg, **att_school, **att_ord, **att_file, **att_name, **att_type, **att_size;
    size_t natt;
    const char **poll_msg, **poll_options, **poll_multiple, **poll_anonymous, **poll_closes;
    size_t npoll;
} send_arrays;

static const char **strings(kr_arena *arena, size_t n)
{
    return kr_arena_alloc(arena, sizeof(char *) * (n ? n : 1));
}

static void send_arrays_fill(send_arrays *a, msg_send_row *const *rows, size_t n)
{
    kr_arena *arena = a->arena;
    size_t natt = 0;
    for (size_t i = 0; i < n; i++)
        natt += rows[i]->n_attachments;
    a->ids = strings(arena, n), a->txns = strings(arena, n), a->schools = strings(arena, n), a->rooms = strings(arena, n);
    a->senders = strings(arena, n), a->texts = strings(arena, n), a->replies = strings(arena, n);
    a->mentions = strings(arena, n), a->polls = strings(arena, n);
    a->room_ids = strings(arena, n), a->room_first = strings(arena, n), a->room_last = strings(arena, n);
    a->att_msg = strings(arena, natt), a->att_school = strings(arena, natt), a->att_ord = strings(arena, natt);
    a->att_file = strings(arena, natt), a->att_name = strings(arena, natt), a->att_type = strings(arena, natt);
    a->att_size = strings(arena, natt);
    a->poll_msg = strings(arena, n), a->poll_options = strings(arena, n), a->poll_multiple = strings(arena, n);
    a->poll_anonymous = strings(arena, n), a->poll_closes = strings(arena, n);
    a->nrooms = a->natt = a->npoll = 0;
    for (size_t i = 0; i < n; i++) {
        const msg_send_row *r = rows[i];
        const char *ord = kr_arena_printf(arena, "%zu", i + 1);
        a->ids[i] = r->id;
        a->txns[i] = r->txn_id;
        a->schools[i] = r->school_id;
        a->rooms[i] = r->room_id;
        a->senders[i] = r->sender;
        a->texts[i] = r->text;
        a->replies[i] = r->reply_to ? r->reply_to : "";
        a->mentions[i] = r->mentions ? r->mentions : "{}";
        a->polls[i] = r->poll ? "t" : "f";
        size_t k = 0;
        while (k < a->nrooms && strcasecmp(a->room_ids[k], r->room_id) != 0)
            k++;
        if (k == a->nrooms) {
            a->room_ids[a->nrooms] = r->room_id;
            a->room_first[a->nrooms++] = ord;
        }
        a->room_last[k] = ord;
        for (size_t j = 0; j < r->n_attachments; j++) {
            const Kreide__Messaging__Attachment *at = r->attachments[j];
            a->att_msg[a->natt] = r->id;
            a->att_school[a->natt] = r->school_id;
            a->att_ord[a->natt] = kr_arena_printf(arena, "%zu", j);
            a->att_file[a->natt] = at->file_id;
            a->att_name[a->natt] = at->name;
            a->att_type[a->natt] = at->media_type;
            a->att_size[a->natt] = kr_arena_printf(arena, "%" PRIu64, at->size_bytes);
            a->natt++;
        }
        if (r->poll) {
            a->poll_msg[a->npoll] = r->id;
            a->poll_options[a->npoll] = r->options;
            a->poll_multiple[a->npoll] = r->multiple_choice ? "t" : "f";
            a->poll_anonymous[a->npoll] = r->anonymous ? "t" : "f";
            a->poll_closes[a->npoll] = r->closes_at ? r->closes_at : "";
            a->npoll++;
        }
    }
}

void msg_send_row_clear(msg_send_row *row)
{
    free(row->audience);
    row->audience = NULL;
}

void msg_send_appended(const msg_send_row *row, msg_appended *out)
{
    memset(out, 0, sizeof(*out));
    out->position = row->position;
    copy(out->id, sizeof(out->id), row->id);
    copy(out->room_id, sizeof(out->room_id), row->room_id);
    copy(out->school_id, sizeof(out->school_id), row->school_id);
    copy(out->kind, sizeof(out->kind), "message");
    copy(out->sender, sizeof(out->sender), row->sender);
    copy(out->created_at, sizeof(out->created_at), row->created_at);
}

uint32_t msg_audience_but(const char *ids, const char *user_id)
{
    uint32_t n = 0;
    size_t len = strlen(user_id);
    for (const char *p = ids; p != NULL && *p != '\0';) {
        const char *comma = strchr(p, ',');
        size_t k = comma ? (size_t)(comma - p) : strlen(p);
        if (k != len || strncasecmp(p, user_id, len) != 0)
            n++;
        p = comma ? comma + 1 : NULL;
    }
    return n;
}

static void set_audience(msg_send_row *row, const PGresult *r, int k, int col)
{
    free(row->audience);
    row->audience = NULL;
    if (!PQgetisnull(r, k, col) && (row->audience = strdup(PQgetvalue(r, k, col))) == NULL)
        abort();
}

/* After a lost connection: whether the sends were appended after all (one
 * statement: all or none), with their audiences as they are now. */
static msg_store_result find_sent(kr_pg *pg, msg_send_row *const *rows, size_t n, const char *ids)
{
    const char *params[] = {ids};
    PGresult *r =
        msg_sql(pg, "find sent",
                "SELECT e.id::text, e.position, " TS("e.created_at") ", messaging.room_audience(e.room_id, e.position) "
                                                                     "FROM messaging.events e WHERE e.id = ANY($1::uuid[])",
                1, params);
    if (r == NULL)
        return MSG_STORE_ERROR;
    size_t found = 0;
    for (int k = 0; k < PQntuples(r); k++) {
        for (size_t i = 0; i < n; i++) {
            if (strcasecmp(rows[i]->id, PQgetvalue(r, k, 0)) == 0) {
                rows[i]->position = strtoll(PQgetvalue(r, k, 1), NULL, 10);
                copy(rows[i]->created_at, sizeof(rows[i]->created_at), PQgetvalue(r, k, 2));
                set_audience(rows[i], r, k, 3);
                found++;
            }
        }
    }
    PQclear(r);
    return found == n ? MSG_STORE_OK : found == 0 ? MSG_STORE_NOT_FOUND : MSG_STORE_ERROR;
}

/* The statement of msg_store_send, in two forms: sends without
 * attachments and polls, and all sends. The position before the batch is
 * read from `head` as a scalar ((SELECT base FROM head)), never joined:
 * PostgreSQL then plans the statement the same whatever it estimates the
 * log head's rows to be (a table it has not analysed yet counts as many),
 * and its cached generic plan serves every execution instead of a plan
 * made anew each time. */
#define SEND_HEAD                                                                                                                  \
    "WITH x AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], $7::text[], "         \
    "$8::text[], $9::boolean[]) WITH ORDINALITY AS x (id, txn_id, school_id, room_id, sender, body, reply_to, mentions, is_poll, " \
    "ord)), "                                                                                                                      \
    "head AS (UPDATE messaging.log_head SET position = position + $10::bigint WHERE only_row RETURNING position - $10::bigint AS " \
    "base), "                                                                                                                      \
    "ev AS (INSERT INTO messaging.events (position, id, school_id, room_id, kind, sender, txn_id, message_id, data) "              \
    "SELECT (SELECT base FROM head) + x.ord, x.id, x.school_id, x.room_id, 'message', x.sender, x.txn_id, x.id, '{}' FROM x), "    \
    "msg AS (INSERT INTO messaging.messages (id, position, school_id, room_id, sender, body, reply_to, mentions, is_poll, "        \
    "created_at) SELECT x.id, (SELECT base FROM head) + x.ord, x.school_id, x.room_id, x.sender, x.body, "                         \
    "nullif(x.reply_to, '')::uuid, x.mentions::uuid[], x.is_poll, now() FROM x), "                                                 \
    "room AS (UPDATE messaging.rooms r SET last_position = (SELECT base FROM head) + "                                             \
    "($13::bigint[])[array_position($11::uuid[], r.id)] WHERE r.id = ANY ($11::uuid[]))"
#define SEND_PARTS                                                                                                                 \
    ", att AS (INSERT INTO messaging.attachments (message_id, school_id, ord, file_id, name, media_type, size_bytes) "             \
    "SELECT * FROM unnest($14::uuid[], $15::uuid[], $16::smallint[], $17::uuid[], $18::text[], $19::text[], $20::bigint[])), "     \
    "poll AS (INSERT INTO messaging.polls (message_id, options, multiple_choice, anonymous, closes_at) "                           \
    "SELECT p.message_id, p.options::text[], p.multiple_choice, p.anonymous, nullif(p.closes_at, '')::timestamptz "                \
    "FROM unnest($21::uuid[], $22::text[], $23::boolean[], $24::boolean[], $25::text[]) AS p (message_id, options, "               \
    "multiple_choice, anonymous, closes_at))"
/* One row per room: the position before the batch's first, the time of
 * its events (the transaction's, as their default), the room and its
 * audience from its first position on. room_audience's arguments hold the
 * position, so it runs once the log head is held. */
#define SEND_TAIL                                                                                                                  \
    " SELECT (SELECT base FROM head), " TS(                                                                                        \
        "now()") ", u.room_id::text, messaging.room_audience(u.room_id, (SELECT base FROM "                                        \
                 "head) + u.first) FROM unnest($11::uuid[], $12::bigint[]) AS u (room_id, first)"

msg_store_result msg_store_send(kr_pg *pg, msg_send_row *const *rows, size_t n, bool *refused)
{
    *refused = false;
    for (size_t i = 0; i < n; i++)
        rows[i]->result = MSG_STORE_ERROR;
    if (n == 0)
        return MSG_STORE_OK;
    kr_arena arena;
    kr_arena_init(&arena);
    send_arrays a = {.arena = &arena};
    send_arrays_fill(&a, rows, n);
    const char *ids = msg_pg_array(&arena, a.ids, n);
    const char *params[] = {ids,
                            msg_pg_array(&arena, a.txns, n),
                            msg_pg_array(&arena, a.schools, n),
                            msg_pg_array(&arena, a.rooms, n),
                            msg_pg_array(&arena, a.senders, n),
                            msg_pg_array(&arena, a.texts, n),
                            msg_pg_array(&arena, a.replies, n),
                            msg_pg_array(&arena, a.mentions, n),
                            msg_pg_array(&arena, a.polls, n),
                            kr_arena_printf(&arena, "%zu", n),
                            msg_pg_array(&arena, a.room_ids, a.nrooms),
                            msg_pg_array(&arena, a.room_first, a.nrooms),
                            msg_pg_array(&arena, a.room_last, a.nrooms),
                            msg_pg_array(&arena, a.att_msg, a.natt),
                            msg_pg_array(&arena, a.att_school, a.natt),
                            msg_pg_array(&arena, a.att_ord, a.natt),
                            msg_pg_array(&arena, a.att_file, a.natt),
                            msg_pg_array(&arena, a.att_name, a.natt),
                            msg_pg_array(&arena, a.att_type, a.natt),
                            msg_pg_array(&arena, a.att_size, a.natt),
                            msg_pg_array(&arena, a.poll_msg, a.npoll),
                            msg_pg_array(&arena, a.poll_options, a.npoll),
                            msg_pg_array(&arena, a.poll_multiple, a.npoll),
                            msg_pg_array(&arena, a.poll_anonymous, a.npoll),
                            msg_pg_array(&arena, a.poll_closes, a.npoll)};
    uint64_t generation = kr_pg_generation(pg);
    /* One statement: n positions from the log head at once, given to the
     * rows in order; the events, the messages (with attachments and polls
     * when any has them), each room's head moved to its last position, and
     * each room's audience, read (messaging.room_audience: a fresh
     * snapshot) once the log head is held: every membership change
     * committed before is in it, every later one appends after these. */
    PGresult *r = a.natt == 0 && a.npoll == 0
                      ? msg_sql_hot(pg, "send messages", SEND_HEAD SEND_TAIL, 13, params)
                      : msg_sql_hot(pg, "send messages with parts", SEND_HEAD SEND_PARTS SEND_TAIL, 25, params);
    msg_store_result res = MSG_STORE_ERROR;
    if (r != NULL) {
        /* One row per room (there is at least one): the rows' positions
         * follow the one before the batch's first. */
        bool answered = PQntuples(r) > 0;
        int64_t base = answered ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
        for (size_t i = 0; i < n && answered; i++) {
            msg_send_row *row = rows[i];
            row->position = base + (int64_t)i + 1;
            copy(row->created_at, sizeof(row->created_at), PQgetvalue(r, 0, 1));
            for (int k = 0; k < PQntuples(r); k++) {
                if (strcasecmp(PQgetvalue(r, k, 2), row->room_id) == 0)
                    set_audience(row, r, k, 3);
            }
            row->result = MSG_STORE_OK;
        }
        if (answered)
            res = MSG_STORE_OK;
        else
            kr_log(KR_LOG_ERROR, "the sends' statement answered no room", NULL);
        PQclear(r);
    } else {
        res = msg_sql_failure(pg);
        bool by_server = kr_pg_last_error(pg) == KR_PG_ESQL;
        if (!by_server || kr_pg_generation(pg) != generation) {
            /* The connection was lost on the way (kr_pg then runs the
             * statement once more on a new one, which a commit of the
             * first makes fail on the events' ids): whether it committed
             * is open, and a committed position must be announced. */
            msg_store_result found = find_sent(pg, rows, n, ids);
            if (found == MSG_STORE_OK) {
                kr_log(KR_LOG_WARN, "the sends went through before the connection was lost", NULL);
                for (size_t i = 0; i < n; i++)
                    rows[i]->result = MSG_STORE_OK;
                res = MSG_STORE_OK;
                by_server = false;
            } else if (found != MSG_STORE_NOT_FOUND || !by_server) {
                res = MSG_STORE_ERROR;
                by_server = false;
            }
        }
        *refused = by_server;
        for (size_t i = 0; i < n && res != MSG_STORE_OK; i++)
            rows[i]->result = res;
    }
    kr_arena_free(&arena);
    return res;
}

/* ------------------------------------------------------------ schools */

static void policy_from_row(const PGresult *r, msg_school_row *out)
{
    msg_preset preset = MSG_PRESET_SCHOOL;
    msg_preset_parse(PQgetvalue(r, 0, 0), &preset);
    msg_policy_defaults(preset, &out->policy);
    out->customized = false;
    if (!PQgetisnull(r, 0, 1)) {
        /* "{pupil>teacher,...}": role names hold neither quotes nor commas. */
        memset(out->policy.direct, 0, sizeof(out->policy.direct));
        char buf[1024];
        copy(buf, sizeof(buf), PQgetvalue(r, 0, 1));
        char *save = NULL;
        for (char *t = strtok_r(buf, "{},", &save); t != NULL; t = strtok_r(NULL, "{},", &save)) {
            int from, to;
            if (msg_direct_rule_parse(t, &from, &to))
                out->policy.direct[from] |= 1u << to;
        }
        out->customized = true;
    }
    if (!PQgetisnull(r, 0, 2)) {
        out->policy.room_creators = 0;
        char buf[256];
        copy(buf, sizeof(buf), PQgetvalue(r, 0, 2));
        char *save = NULL;
        for (char *t = strtok_r(buf, "{},", &save); t != NULL; t = strtok_r(NULL, "{},", &save))
            out->policy.room_creators |= msg_role_bit(t);
        out->customized = true;
    }
    out->policy.retention_days = (unsigned)strtoul(PQgetvalue(r, 0, 3), NULL, 10);
    copy(out->updated_at, sizeof(out->updated_at), PQgetvalue(r, 0, 4));
}

msg_store_result msg_store_school(kr_pg *pg, const char *school_id, msg_school_row *out)
{
    const char *params[] = {school_id};
    PGresult *r = msg_sql(pg, "select school",
                          "SELECT preset, direct_rules, room_creators, coalesce(retention_days, 0), " TS(
                              "updated_at") " FROM messaging.schools WHERE school_id = $1",
                          1, params);
    if (r == NULL)
        return msg_sql_failure(pg);
    msg_store_result res = MSG_STORE_NOT_FOUND;
    if (PQntuples(r) == 1) {
        policy_from_row(r, out);
        res = MSG_STORE_OK;
    }
    PQclear(r);
    return res;
}

msg_store_result msg_store_school_ensure(kr_pg *pg, const char *school_id, msg_preset preset, bool *created)
{
    const char *params[] = {school_id, msg_preset_name(preset)};
    PGresult *r = msg_sql(pg, "insert school",
                          "INSERT INTO messaging.schools (school_id, preset) VALUES ($1, $2) ON CONFLICT (school_id) DO NOTHING "
                          "RETURNING school_id",
                          2, params);
    if (r == NULL)
        return msg_sql_failure(pg);
    *created = PQntuples(r) == 1;
    PQclear(r);
    return MSG_STORE_OK;
}

msg_store_result msg_store_people(kr_pg *pg, const char *const *user_ids, const char *const *names, size_t n)
{
    if (n == 0)
        return MSG_STORE_OK;
    kr_arena arena;
    kr_arena_init(&arena);
    const char *params[] = {msg_pg_array(&arena, user_ids, n), msg_pg_array(&arena, names, n)};
    msg_store_result res = exec(pg, "upsert people",
                                "INSERT INTO messaging.people (user_id, display_name) "
                                "SELECT u, left(d, 200) FROM unnest($1::uuid[], $2::text[]) AS t (u, d) "
                                "ON CONFLICT (user_id) DO UPDATE SET display_name = EXCLUDED.display_name, updated_at = now() "
                                "WHERE people.display_name IS DISTINCT FROM EXCLUDED.display_name",
                                2, params);
    kr_arena_free(&arena);
    return res;
}

/* -------------------------------------------------------------- rooms */

/* Room columns for msg_room_ref, then the member's; `m` joined for $2. */
#define ROOM_REF_COLUMNS                                                                                                           \
    "r.id::text, r.school_id::text, r.kind, coalesce(r.group_id::text, ''), r.locked, coalesce(r.retention_days, 0), "             \
    "coalesce(s.retention_days, 0), coalesce(m.state, ''), coalesce(m.role, ''), coalesce(m.muted, false), "                       \
    "coalesce(m.last_read_position, 0)"

static void room_ref_from(const PGresult *r, int row, int c, msg_room_ref *out)
{
    memset(out, 0, sizeof(*out));
    copy(out->id, sizeof(out->id), PQgetvalue(r, row, c));
    copy(out->school_id, sizeof(out->school_id), PQgetvalue(r, row, c + 1));
    out->kind = msg_room_kind_parse(PQgetvalue(r, row, c + 2));
    copy(out->group_id, sizeof(out->group_id), PQgetvalue(r, row, c + 3));
    out->locked = PQgetvalue(r, row, c + 4)[0] == 't';
    out->room_retention_days = (unsigned)strtoul(PQgetvalue(r, row, c + 5), NULL, 10);
    out->school_retention_days = (unsigned)strtoul(PQgetvalue(r, row, c + 6), NULL, 10);
    out->me.joined = strcmp(PQgetvalue(r, row, c + 7), "joined") == 0;
    out->me.moderator = out->me.joined && strcmp(PQgetvalue(r, row, c + 8), "moderator") == 0;
    out->me.muted = out->me.joined && PQgetvalue(r, row, c + 9)[0] == 't';
    out->my_last_read = strtoll(PQgetvalue(r, row, c + 10), NULL, 10);
}

msg_store_result msg_store_room_ref(kr_pg *pg, const char *room_id, const char *user_id, msg_room_ref *out)
{
    const char *params[] = {room_id, user_id && user_id[0] ? user_id : NULL};
    PGresult *r =
        msg_sql(pg, "select room",
                "SELECT " ROOM_REF_COLUMNS " FROM messaging.rooms r JOIN messaging.schools s ON s.school_id = r.school_id "
                "LEFT JOIN messaging.room_members m ON m.room_id = r.id AND m.user_id = $2 WHERE r.id = $1",
                2, params);
    if (r == NULL)
        return msg_sql_failure(pg);
    msg_store_result res = MSG_STORE_NOT_FOUND;
    if (PQntuples(r) == 1) {
        room_ref_from(r, 0, 0, out);
        res = MSG_STORE_OK;
    }
    PQclear(r);
    return res;
}

msg_store_result msg_store_room_ref_txn(kr_pg *pg, const char *room_id, const char *user_id, const char *txn_id, msg_room_ref *out,
                                        msg_earlier_send *earlier)
{
    const char *params[] = {room_id, user_id && user_id[0] ? user_id : NULL, txn_id};
    PGresult *r = msg_sql_hot(pg, "select room and txn",
                              "SELECT " ROOM_REF_COLUMNS ", coalesce(t.position, 0), coalesce(t.room_id::text, '') "
                              "FROM messaging.rooms r JOIN messaging.schools s ON s.school_id = r.school_id "
                              "LEFT JOIN messaging.room_members m ON m.room_id = r.id AND m.user_id = $2 "
                              "LEFT JOIN messaging.events t ON t.sender = $2 AND t.txn_id = $3 WHERE r.id = $1",
                              3, params);
    if (r == NULL)
        return msg_sql_failure(pg);
    msg_store_result res = MSG_STORE_NOT_FOUND;
    if (PQntuples(r) == 1) {
        room_ref_from(r, 0, 0, out);
        memset(earlier, 0, sizeof(*earlier));
        earlier->position = strtoll(PQgetvalue(r, 0, 11), NULL, 10);
        copy(earlier->room_id, sizeof(earlier->room_id), PQgetvalue(r, 0, 12));
        res = MSG_STORE_OK;
    }
    PQclear(r);
    return res;
}

msg_store_result msg_store_message_ref(kr_pg *pg, const char *message_id, const char *user_id, msg_room_ref *room,
                                       msg_message_ref *msg)
{
    const char *params[] = {message_id, user_id && user_id[0] ? user_id : NULL};
    PGresult *r = msg_sql(pg, "select message",
                          "SELECT mm.id::text, mm.sender::text, mm.position, mm.deleted_at IS NOT NULL, mm.is_poll, "
                          "mm.created_at < messaging.visible_since(r.retention_days, s.retention_days), "
                          "left(coalesce(mm.body, ''), 500), " ROOM_REF_COLUMNS
                          " FROM messaging.messages mm JOIN messaging.rooms r ON r.id = mm.room_id AND r.school_id = mm.school_id "
                          "JOIN messaging.schools s ON s.school_id = r.school_id "
                          "LEFT JOIN messaging.room_members m ON m.room_id = r.id AND m.user_id = $2 WHERE mm.id = $1",
                          2, params);
    if (r == NULL)
        return msg_sql_failure(pg);
    msg_store_result res = MSG_STORE_NOT_FOUND;
    if (PQntuples(r) == 1) {
        memset(msg, 0, sizeof(*msg));
        copy(msg->id, sizeof(msg->id), PQgetvalue(r, 0, 0));
        copy(msg->sender, sizeof(msg->sender), PQgetvalue(r, 0, 1));
        msg->position = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
        msg->deleted = PQgetvalue(r, 0, 3)[0] == 't';
        msg->is_poll = PQgetvalue(r, 0, 4)[0] == 't';
        msg->expired = PQgetvalue(r, 0, 5)[0] == 't';
        copy(msg->body_excerpt, sizeof(msg->body_excerpt), PQgetvalue(r, 0, 6));
        room_ref_from(r, 0, 7, room);
        res = MSG_STORE_OK;
    }
    PQclear(r);
    return res;
}

msg_store_result msg_store_room_audience(kr_pg *pg, kr_arena *arena, const char *room_id, int64_t left_since, char ***ids,
                                         size_t *n)
{
    char since[24];
    snprintf(since, sizeof(since), "%" PRId64, left_since > 0 ? left_since : INT64_MAX);
    const char *params[] = {room_id, since};
    PGresult *r = msg_sql(pg, "select audience",
                          "SELECT user_id::text FROM messaging.room_members WHERE room_id = $1 "
                          "AND (state = 'joined' OR left_position >= $2) ORDER BY user_id",
                          2, params);
    if (r == NULL)
        return msg_sql_failure(pg);
    *n = (size_t)PQntuples(r);
    *ids = kr_arena_alloc(arena, sizeof(char *) * (*n ? *n : 1));
    for (size_t i = 0; i < *n; i++)
        (*ids)[i] = kr_arena_strdup(arena, PQgetvalue(r, (int)i, 0));
    PQclear(r);
    return MSG_STORE_OK;
}

msg_store_result msg_store_audit(kr_pg *pg, const char *school_id, const char *room_id, const char *action, const char *actor,
                                 const char *rule, const char *counts)
{
    const char *params[] = {school_id, room_id, action, actor ? actor : "", rule ? rule : "", counts ? counts : "{}"};
    return exec(
        pg, "insert audit",
        "INSERT INTO messaging.audit (school_id, room_id, action, actor, rule, counts) VALUES ($1, $2, $3, $4, $5, $6::jsonb)", 6,
        params);
}

/* ------------------------------------------------------- roster sync */

typedef struct {
    char user_id[40];
    bool moderator;
    bool joined;
    bool from_group;
    bool seen; /* among the group's members */
} current_member;

static char *member_data(kr_arena *arena, const char *user_id, const char *role)
{
    if (role == NULL)
        return kr_arena_printf(arena, "{\"user_id\":\"%s\"}", user_id);
    return kr_arena_printf(arena, "{\"user_id\":\"%s\",\"role\":\"%s\"}", user_id, role);
}

/* Brings one room's group-following members in line with `members`. */
static msg_store_result sync_room_members(kr_pg *pg, kr_arena *arena, const char *school_id, const char *room_id,
                                          const msg_roster_member *members, size_t n, msg_outbox *box)
{
    const char *params[] = {room_id};
    PGresult *r = msg_sql(pg, "select room members",
                          "SELECT user_id::text, role = 'moderator', state = 'joined', source = 'group' "
                          "FROM messaging.room_members WHERE room_id = $1 ORDER BY user_id",
                          1, params);
    if (r == NULL)
        return msg_sql_failure(pg);
    size_t ncur = (size_t)PQntuples(r);
    current_member *cur = kr_arena_alloc(arena, sizeof(*cur) * (ncur ? ncur : 1));
    for (size_t i = 0; i < ncur; i++) {
        copy(cur[i].user_id, sizeof(cur[i].user_id), PQgetvalue(r, (int)i, 0));
        cur[i].moderator = PQgetvalue(r, (int)i, 1)[0] == 't';
        cur[i].joined = PQgetvalue(r, (int)i, 2)[0] == 't';
        cur[i].from_group = PQgetvalue(r, (int)i, 3)[0] == 't';
    }
    PQclear(r);

    for (size_t k = 0; k < n; k++) {
        const msg_roster_member *want = &members[k];
        const char *role = want->leader ? "moderator" : "member";
        current_member *c = NULL;
        for (size_t i = 0; i < ncur && c == NULL; i++) {
            if (strcmp(cur[i].user_id, want->user_id) == 0)
                c = &cur[i];
        }
        if (c != NULL)
            c->seen = true;
        if (c != NULL && c->joined && (!c->from_group || c->moderator == want->leader))
            continue; /* as it should be, or added by hand and left alone */
        const char *kind = c != NULL && c->joined ? "member.role" : "member.joined";
        msg_new_event ev = {.kind = kind, .data = member_data(arena, want->user_id, role)};
        msg_store_result res = msg_append_to(pg, box, school_id, room_id, &ev, NULL);
        if (res != MSG_STORE_OK)
            return res;
        const char *p[] = {school_id, room_id, want->user_id, role};
        res = exec(pg, "join member",
                   "INSERT INTO messaging.room_members (school_id, room_id, user_id, role, state, source) "
                   "VALUES ($1, $2, $3, $4, 'joined', 'group') ON CONFLICT (room_id, user_id) DO UPDATE SET "
                   "role = EXCLUDED.role, state = 'joined', source = 'group', left_position = NULL, "
                   "joined_at = CASE WHEN room_members.state = 'joined' THEN room_members.joined_at ELSE now() END",
                   4, p);
        if (res != MSG_STORE_OK)
            return res;
    }
    for (size_t i = 0; i < ncur; i++) {
        current_member *c = &cur[i];
        if (c->seen || !c->joined || !c->from_group)
            continue;
        msg_appended a;
        msg_new_event ev = {.kind = "member.left", .data = member_data(arena, c->user_id, NULL)};
        msg_store_result res = msg_append_to(pg, box, school_id, room_id, &ev, &a);
        if (res != MSG_STORE_OK)
            return res;
        char pos[24];
        snprintf(pos, sizeof(pos), "%" PRId64, a.position);
        const char *p[] = {room_id, c->user_id, pos};
        res =
            exec(pg, "leave member",
                 "UPDATE messaging.room_members SET state = 'left', left_position = $3 WHERE room_id = $1 AND user_id = $2", 3, p);
        if (res != MSG_STORE_OK)
            return res;
    }
    return MSG_STORE_OK;
}

static msg_store_result sync_group_tx(kr_pg *pg, kr_arena *arena, const char *school_id, const char *group_id, const char *name,
                                      const char *group_kind, const msg_roster_member *members, size_t n, msg_outbox *box)
{
    const char *p1[] = {group_id};
    msg_store_result res =
        exec(pg, "lock group", "SELECT pg_advisory_xact_lock(hashtextextended('kreide.messaging.group:' || $1, 0))", 1, p1);
    if (res != MSG_STORE_OK)
        return res;
    const char *p2[] = {school_id};
    res = exec(pg, "ensure school", "INSERT INTO messaging.schools (school_id) VALUES ($1) ON CONFLICT (school_id) DO NOTHING", 1,
               p2);
    if (res != MSG_STORE_OK)
        return res;
    /* The roster room: made the first time, renamed when identity renamed
     * the group. */
    const char *p3[] = {group_id, school_id};
    PGresult *r =
        msg_sql(pg, "select roster room",
                "SELECT id::text, name FROM messaging.rooms WHERE group_id = $1 AND school_id = $2 AND kind = 'roster'", 2, p3);
    if (r == NULL)
        return msg_sql_failure(pg);
    char room_id[40] = "";
    char old_name[MSG_NAME_MAX * 4 + 1] = "";
    if (PQntuples(r) == 1) {
        copy(room_id, sizeof(room_id), PQgetvalue(r, 0, 0));
        copy(old_name, sizeof(old_name), PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    if (room_id[0] == '\0') {
        kr_uuid_str id;
        kr_uuid7_new(&id);
        copy(room_id, sizeof(room_id), id.s);
        const char *p4[] = {room_id, school_id, name, group_id, group_kind};
        res = exec(pg, "insert roster room",
                   "INSERT INTO messaging.rooms (id, school_id, kind, name, group_id, group_kind) "
                   "VALUES ($1, $2, 'roster', $3, $4, $5)",
                   5, p4);
        if (res != MSG_STORE_OK)
            return res;
        msg_new_event ev = {
            .kind = "room.created",
            .data = kr_arena_printf(arena, "{\"name\":%s,\"group_id\":\"%s\"}", msg_json_string(arena, name), group_id)};
        res = msg_append_to(pg, box, school_id, room_id, &ev, NULL);
        if (res != MSG_STORE_OK)
            return res;
    } else if (strcmp(old_name, name) != 0) {
        const char *p4[] = {room_id, name};
        res = msg_store_hold_head(pg);
        if (res != MSG_STORE_OK)
            return res;
        res = exec(pg, "rename roster room", "UPDATE messaging.rooms SET name = $2 WHERE id = $1", 2, p4);
        if (res != MSG_STORE_OK)
            return res;
        msg_new_event ev = {.kind = "room.renamed", .data = kr_arena_printf(arena, "{\"name\":%s}", msg_json_string(arena, name))};
        res = msg_append_to(pg, box, school_id, room_id, &ev, NULL);
        if (res != MSG_STORE_OK)
            return res;
    }
    /* Every room following the group: the roster room and announcement
     * channels made for it. */
    r = msg_sql(pg, "select group rooms", "SELECT id::text FROM messaging.rooms WHERE group_id = $1 AND school_id = $2 ORDER BY id",
                2, p3);
    if (r == NULL)
        return msg_sql_failure(pg);
    size_t nrooms = (size_t)PQntuples(r);
    char **rooms = kr_arena_alloc(arena, sizeof(char *) * (nrooms ? nrooms : 1));
    for (size_t i = 0; i < nrooms; i++)
        rooms[i] = kr_arena_strdup(arena, PQgetvalue(r, (int)i, 0));
    PQclear(r);
    for (size_t i = 0; i < nrooms; i++) {
        res = sync_room_members(pg, arena, school_id, rooms[i], members, n, box);
        if (res != MSG_STORE_OK)
            return res;
    }
    return MSG_STORE_OK;
}

msg_store_result msg_store_sync_group(kr_pg *pg, const char *school_id, const char *group_id, const char *name,
                                      const char *group_kind, const msg_roster_member *members, size_t n, msg_outbox *box,
                                      bool announce)
{
    kr_arena arena;
    kr_arena_init(&arena);
    msg_store_result res = msg_tx_begin(pg);
    if (res == MSG_STORE_OK) {
        res = sync_group_tx(pg, &arena, school_id, group_id, name, group_kind, members, n, box);
        if (res == MSG_STORE_OK) {
            res = msg_outbox_commit(pg, box, announce);
        } else {
            msg_tx_rollback(pg);
            msg_outbox_free(box); /* nothing of it happened */
        }
    }
    kr_arena_free(&arena);
    return res;
}

/* ------------------------------------------------------------- purging */

msg_store_result msg_store_purge_batch(kr_pg *pg, const char *school_id, const char *room_id, const char *before, unsigned limit,
                                       msg_purge_counts *out)
{
    memset(out, 0, sizeof(*out));
    char lim[16];
    snprintf(lim, sizeof(lim), "%u", limit);
    msg_store_result res = msg_tx_begin(pg);
    if (res != MSG_STORE_OK)
        return res;
    /* The batch: the oldest events before the cutoff, or (no cutoff) those
     * older than their room's retention allows. Attachments are counted as
     * they go; the rest goes with the messages. */
    const char *p1[] = {school_id, room_id, before, lim};
    PGresult *r = msg_sql(pg, "purge batch",
                          "WITH doomed AS (SELECT e.position FROM messaging.events e JOIN messaging.rooms r ON r.id = e.room_id "
                          "JOIN messaging.schools s ON s.school_id = r.school_id WHERE e.school_id = $1 "
                          "AND ($2::uuid IS NULL OR e.room_id = $2) AND e.created_at < coalesce($3::timestamptz, "
                          "messaging.visible_since(r.retention_days, s.retention_days)) ORDER BY e.position LIMIT $4), "
                          "att AS (DELETE FROM messaging.attachments a USING messaging.messages mm "
                          "WHERE a.message_id = mm.id AND mm.position IN (SELECT position FROM doomed) RETURNING 1) "
                          "SELECT coalesce(array_agg(position), '{}')::text, (SELECT count(*) FROM att) FROM doomed",
                          4, p1);
    if (r == NULL) {
        msg_tx_rollback(pg);
        return MSG_STORE_ERROR;
    }
    kr_arena arena;
    kr_arena_init(&arena);
    const char *p2[] = {kr_arena_strdup(&arena, PQgetvalue(r, 0, 0))};
    out->attachments = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    /* Messages first (their reactions, votes, pins and reports go with
     * them), then the events. */
    r = msg_sql(pg, "purge messages", "DELETE FROM messaging.messages WHERE position = ANY($1::bigint[])", 1, p2);
    if (r != NULL) {
        out->messages = strtoull(PQcmdTuples(r), NULL, 10);
        PQclear(r);
        r = msg_sql(pg, "purge events", "DELETE FROM messaging.events WHERE position = ANY($1::bigint[])", 1, p2);
    }
    kr_arena_free(&arena);
    if (r == NULL) {
        msg_tx_rollback(pg);
        return MSG_STORE_ERROR;
    }
    out->events = strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return msg_tx_commit(pg);
}
