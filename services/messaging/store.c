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
        PGresult *r = msg_sql(pg, "append event",
                              "WITH head AS (UPDATE messaging.log_head SET position = position + 1 RETURNING position), "
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
    if (out != NULL)
        *out = a;
    return MSG_STORE_OK;
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
    PGresult *r = msg_sql(pg, "select room and txn",
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
