/* Reading the log back: events with the current state of the messages they
 * are about, rooms with the caller's unread counts, search. Every read
 * leaves out what a room's retention has expired, at once, whether or not
 * a purge has deleted it yet. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "kr_id.h"
#include "kr_log.h"
#include "messaging.h"
#include "store_sql.h"

/* What a read may show of a room `r` of school `s`. */
#define VISIBLE(col) col " >= messaging.visible_since(r.retention_days, s.retention_days)"

/* A message's columns. `viewer` is the parameter holding the reader's user
 * id (NULL: no one), for whether they reacted. Attachments and reactions
 * come as JSON arrays ([file_id, name, media_type, size_bytes] and [key,
 * count, mine]), so that one statement reads a message whole. */
#define MESSAGE_COLUMNS(viewer)                                                                                                    \
    "mm.id::text, mm.room_id::text, mm.sender::text, mm.position, " TS("mm.created_at") ", coalesce(mm.body, ''), " TS(            \
        "mm.edited_at") ", mm.deleted_at IS NOT NULL, " TS("mm.deleted_at") ", coalesce(mm.reply_to::text, ''), "                  \
                                                                            "mm.mentions::text, mm.is_poll, "                      \
                                                                            "mm.removed_by_moderator, r.kind, " MESSAGE_PARTS(     \
                                                                                viewer)
#define MESSAGE_PARTS(viewer)                                                                                                      \
    "(SELECT coalesce(json_agg(json_build_array(a.file_id, a.name, a.media_type, a.size_bytes) ORDER BY a.ord), '[]') "            \
    "FROM messaging.attachments a WHERE a.message_id = mm.id)::text, "                                                             \
    "(SELECT coalesce(json_agg(json_build_array(x.key, x.n, x.mine) ORDER BY x.first, x.key), '[]') FROM (SELECT k.key, "          \
    "count(*) AS n, coalesce(bool_or(k.user_id = " viewer "::uuid), false) AS mine, min(k.created_at) AS first "                   \
    "FROM messaging.reactions k WHERE k.message_id = mm.id GROUP BY k.key) x)::text, "                                             \
    "EXISTS (SELECT 1 FROM messaging.pins p WHERE p.room_id = mm.room_id AND p.message_id = mm.id)"
#define MESSAGE_NCOLS 17

#define EVENT_COLUMNS(viewer)                                                                                                      \
    "e.position, e.id::text, e.room_id::text, e.school_id::text, e.kind, coalesce(e.sender::text, ''), " TS(                       \
        "e.created_at") ", coalesce(e.message_id::text, ''), e.data::text, "                                                       \
                        "mm.id IS NOT NULL AND e.kind IN ('message', 'message.edited', 'message.deleted', 'poll.voted', "          \
                        "'poll.closed'), " MESSAGE_COLUMNS(viewer)
#define EVENT_NCOLS 10

#define EVENT_FROM                                                                                                                 \
    " FROM messaging.events e JOIN messaging.rooms r ON r.id = e.room_id JOIN messaging.schools s ON s.school_id = r.school_id "   \
    "LEFT JOIN messaging.messages mm ON mm.id = e.message_id "
#define EVENT_VISIBLE                                                                                                              \
    " AND " VISIBLE("e.created_at") " AND (e.message_id IS NULL OR (mm.id IS NOT NULL AND " VISIBLE("mm.created_at") "))"

static char *col(const msg_reader *rd, const PGresult *r, int row, int c)
{
    return kr_arena_strdup(rd->arena, PQgetvalue(r, row, c));
}

static bool colbool(const PGresult *r, int row, int c)
{
    return PQgetvalue(r, row, c)[0] == 't';
}

static int64_t colint(const PGresult *r, int row, int c)
{
    return strtoll(PQgetvalue(r, row, c), NULL, 10);
}

static void *alloc_list(const msg_reader *rd, size_t n, size_t elem)
{
    return kr_arena_alloc(rd->arena, elem * (n ? n : 1));
}

msg_reader msg_reader_of(kr_rpc_ctx *ctx)
{
    const char *viewer = ctx->caller->user_id[0] != '\0' ? ctx->caller->user_id : NULL;
    return (msg_reader){.pg = ctx->pg, .arena = ctx->arena, .viewer = viewer, .caller = ctx->caller};
}

/* Splits a PostgreSQL uuid[] text form "{a,b}" into strings. */
static char **uuid_list(const msg_reader *rd, const char *text, size_t *n)
{
    *n = 0;
    size_t cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == ',';
    char **out = kr_arena_alloc(rd->arena, sizeof(char *) * cap);
    char *copy = kr_arena_strdup(rd->arena, text);
    char *save = NULL;
    for (char *t = strtok_r(copy, "{},", &save); t != NULL; t = strtok_r(NULL, "{},", &save))
        out[(*n)++] = t;
    return out;
}

/* A JSON array of [file_id, name, media_type, size_bytes] as attachments. */
static void attachments_from(const msg_reader *rd, Kreide__Messaging__Message *m, const char *json)
{
    json_t *a = json_loads(json, 0, NULL);
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    m->attachments = alloc_list(rd, n, sizeof(*m->attachments));
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        Kreide__Messaging__Attachment *at = kr_arena_alloc(rd->arena, sizeof(*at));
        kreide__messaging__attachment__init(at);
        at->file_id = kr_arena_strdup(rd->arena, json_string_value(json_array_get(v, 0)) ?: "");
        at->name = kr_arena_strdup(rd->arena, json_string_value(json_array_get(v, 1)) ?: "");
        at->media_type = kr_arena_strdup(rd->arena, json_string_value(json_array_get(v, 2)) ?: "");
        at->size_bytes = (uint64_t)json_integer_value(json_array_get(v, 3));
        m->attachments[m->n_attachments++] = at;
    }
    json_decref(a);
}

/* A JSON array of [key, count, mine] as reaction counts. */
static void reactions_from(const msg_reader *rd, Kreide__Messaging__Message *m, const char *json)
{
    json_t *a = json_loads(json, 0, NULL);
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    m->reactions = alloc_list(rd, n, sizeof(*m->reactions));
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        Kreide__Messaging__ReactionCount *rc = kr_arena_alloc(rd->arena, sizeof(*rc));
        kreide__messaging__reaction_count__init(rc);
        rc->key = kr_arena_strdup(rd->arena, json_string_value(json_array_get(v, 0)) ?: "");
        rc->count = (uint32_t)json_integer_value(json_array_get(v, 1));
        rc->mine = json_is_true(json_array_get(v, 2));
        m->reactions[m->n_reactions++] = rc;
    }
    json_decref(a);
}

static Kreide__Messaging__Message *message_from(const msg_reader *rd, const PGresult *r, int row, int c)
{
    Kreide__Messaging__Message *m = kr_arena_alloc(rd->arena, sizeof(*m));
    kreide__messaging__message__init(m);
    m->id = col(rd, r, row, c);
    m->room_id = col(rd, r, row, c + 1);
    m->sender_id = col(rd, r, row, c + 2);
    m->position = colint(r, row, c + 3);
    m->created_at = col(rd, r, row, c + 4);
    m->text = col(rd, r, row, c + 5);
    m->edited_at = col(rd, r, row, c + 6);
    m->edited = m->edited_at[0] != '\0';
    m->deleted = colbool(r, row, c + 7);
    m->deleted_at = col(rd, r, row, c + 8);
    m->reply_to = col(rd, r, row, c + 9);
    m->mentions = uuid_list(rd, PQgetvalue(r, row, c + 10), &m->n_mentions);
    if (colbool(r, row, c + 11)) {
        m->poll = kr_arena_alloc(rd->arena, sizeof(*m->poll));
        kreide__messaging__poll__init(m->poll);
    }
    m->removed_by_moderator = colbool(r, row, c + 12);
    if (strcmp(PQgetvalue(r, row, c + 13), "announcement") == 0) {
        m->read_status = kr_arena_alloc(rd->arena, sizeof(*m->read_status));
        kreide__messaging__read_status__init(m->read_status);
    }
    if (m->deleted) {
        /* A tombstone shows who and when, nothing else. */
        m->poll = NULL;
        m->read_status = NULL;
        return m;
    }
    attachments_from(rd, m, PQgetvalue(r, row, c + 14));
    reactions_from(rd, m, PQgetvalue(r, row, c + 15));
    m->pinned = colbool(r, row, c + 16);
    return m;
}

static Kreide__Messaging__EventKind kind_of(const char *s)
{
    static const struct {
        const char *name;
        Kreide__Messaging__EventKind kind;
    } kinds[] = {
        {"room.created", KREIDE__MESSAGING__EVENT_KIND__ROOM_CREATED},
        {"message", KREIDE__MESSAGING__EVENT_KIND__MESSAGE},
        {"message.edited", KREIDE__MESSAGING__EVENT_KIND__MESSAGE_EDITED},
        {"message.deleted", KREIDE__MESSAGING__EVENT_KIND__MESSAGE_DELETED},
        {"reaction.added", KREIDE__MESSAGING__EVENT_KIND__REACTION_ADDED},
        {"reaction.removed", KREIDE__MESSAGING__EVENT_KIND__REACTION_REMOVED},
        {"receipt", KREIDE__MESSAGING__EVENT_KIND__RECEIPT},
        {"read.confirmed", KREIDE__MESSAGING__EVENT_KIND__READ_CONFIRMED},
        {"member.joined", KREIDE__MESSAGING__EVENT_KIND__MEMBER_JOINED},
        {"member.left", KREIDE__MESSAGING__EVENT_KIND__MEMBER_LEFT},
        {"member.role", KREIDE__MESSAGING__EVENT_KIND__MEMBER_ROLE_CHANGED},
        {"member.muted", KREIDE__MESSAGING__EVENT_KIND__MEMBER_MUTED},
        {"room.locked", KREIDE__MESSAGING__EVENT_KIND__ROOM_LOCKED},
        {"room.retention", KREIDE__MESSAGING__EVENT_KIND__ROOM_RETENTION_CHANGED},
        {"room.renamed", KREIDE__MESSAGING__EVENT_KIND__ROOM_RENAMED},
        {"message.pinned", KREIDE__MESSAGING__EVENT_KIND__MESSAGE_PINNED},
        {"message.unpinned", KREIDE__MESSAGING__EVENT_KIND__MESSAGE_UNPINNED},
        {"poll.voted", KREIDE__MESSAGING__EVENT_KIND__POLL_VOTED},
        {"poll.closed", KREIDE__MESSAGING__EVENT_KIND__POLL_CLOSED},
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(kinds[i].name, s) == 0)
            return kinds[i].kind;
    }
    return KREIDE__MESSAGING__EVENT_KIND__EVENT_KIND_UNSPECIFIED;
}

/* The small facts of an event's data object. */
static void event_data(const msg_reader *rd, Kreide__Messaging__Event *e, const char *data)
{
    json_t *o = json_loads(data, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return;
    }
    json_t *v;
    if (json_is_string(v = json_object_get(o, "key")))
        e->reaction_key = kr_arena_strdup(rd->arena, json_string_value(v));
    if (json_is_integer(v = json_object_get(o, "up_to")))
        e->read_up_to = json_integer_value(v);
    if (json_is_string(v = json_object_get(o, "user_id")))
        e->user_id = kr_arena_strdup(rd->arena, json_string_value(v));
    if (json_is_string(v = json_object_get(o, "role")))
        e->member_role = strcmp(json_string_value(v), "moderator") == 0 ? KREIDE__MESSAGING__MEMBER_ROLE__MODERATOR
                                                                        : KREIDE__MESSAGING__MEMBER_ROLE__MEMBER;
    if (json_is_boolean(v = json_object_get(o, "muted")))
        e->muted = json_is_true(v);
    if (json_is_boolean(v = json_object_get(o, "locked")))
        e->locked = json_is_true(v);
    if (json_is_integer(v = json_object_get(o, "retention_days")))
        e->retention_days = (uint32_t)json_integer_value(v);
    if (json_is_string(v = json_object_get(o, "name")))
        e->name = kr_arena_strdup(rd->arena, json_string_value(v));
    json_decref(o);
}

static Kreide__Messaging__Event *event_from(const msg_reader *rd, const PGresult *r, int row)
{
    Kreide__Messaging__Event *e = kr_arena_alloc(rd->arena, sizeof(*e));
    kreide__messaging__event__init(e);
    e->position = colint(r, row, 0);
    e->id = col(rd, r, row, 1);
    e->room_id = col(rd, r, row, 2);
    e->school_id = col(rd, r, row, 3);
    e->kind = kind_of(PQgetvalue(r, row, 4));
    e->sender_id = col(rd, r, row, 5);
    e->created_at = col(rd, r, row, 6);
    e->message_id = col(rd, r, row, 7);
    event_data(rd, e, PQgetvalue(r, row, 8));
    if (colbool(r, row, 9))
        e->message = message_from(rd, r, row, EVENT_NCOLS);
    return e;
}

/* --------------------------------------------------- message decoration */

/* Index of message `id` among msgs, or -1. Pages are small. */
static ssize_t find_message(Kreide__Messaging__Message **msgs, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(msgs[i]->id, id) == 0)
            return (ssize_t)i;
    }
    return -1;
}

/* Splits a text[] literal of option texts; the elements come quoted when
 * they hold special characters, so let PostgreSQL unnest instead. */
static msg_store_result decorate_polls(const msg_reader *rd, Kreide__Messaging__Message **msgs, size_t n, const char *ids)
{
    const char *params[] = {ids, rd->viewer};
    PGresult *r = msg_sql(
        rd->pg, "select polls",
        "SELECT p.message_id::text, p.multiple_choice, p.anonymous, " TS(
            "p.closes_at") ", "
                           "p.closed_at IS NOT NULL OR (p.closes_at IS NOT NULL AND p.closes_at <= now()), "
                           "(SELECT count(DISTINCT v.user_id) FROM messaging.poll_votes v WHERE v.message_id = p.message_id), "
                           "o.idx - 1, o.text, "
                           "(SELECT count(*) FROM messaging.poll_votes v WHERE v.message_id = p.message_id AND v.option = o.idx - "
                           "1), "
                           "EXISTS (SELECT 1 FROM messaging.poll_votes v WHERE v.message_id = p.message_id AND v.option = o.idx - "
                           "1 "
                           "AND v.user_id = $2), "
                           "CASE WHEN p.anonymous THEN '{}' ELSE (SELECT coalesce(array_agg(v.user_id::text ORDER BY v.voted_at, "
                           "v.user_id), '{}') FROM messaging.poll_votes v WHERE v.message_id = p.message_id AND v.option = o.idx - "
                           "1) "
                           "END::text "
                           "FROM messaging.polls p CROSS JOIN LATERAL unnest(p.options) WITH ORDINALITY AS o (text, idx) "
                           "WHERE p.message_id = ANY($1::uuid[]) ORDER BY p.message_id, o.idx",
        2, params);
    if (r == NULL)
        return msg_sql_failure(rd->pg);
    for (int row = 0; row < PQntuples(r); row++) {
        ssize_t k = find_message(msgs, n, PQgetvalue(r, row, 0));
        if (k < 0 || msgs[k]->poll == NULL)
            continue;
        Kreide__Messaging__Poll *p = msgs[k]->poll;
        p->multiple_choice = colbool(r, row, 1);
        p->anonymous = colbool(r, row, 2);
        p->closes_at = col(rd, r, row, 3);
        p->closed = colbool(r, row, 4);
        p->voters = (uint32_t)colint(r, row, 5);
        Kreide__Messaging__PollOption *o = kr_arena_alloc(rd->arena, sizeof(*o));
        kreide__messaging__poll_option__init(o);
        o->index = (uint32_t)colint(r, row, 6);
        o->text = col(rd, r, row, 7);
        o->votes = (uint32_t)colint(r, row, 8);
        o->mine = colbool(r, row, 9);
        o->voter_ids = uuid_list(rd, PQgetvalue(r, row, 10), &o->n_voter_ids);
        Kreide__Messaging__PollOption **grown = kr_arena_alloc(rd->arena, sizeof(*grown) * (p->n_options + 1));
        if (p->n_options)
            memcpy(grown, p->options, sizeof(*grown) * p->n_options);
        grown[p->n_options++] = o;
        p->options = grown;
    }
    PQclear(r);
    return MSG_STORE_OK;
}

static msg_store_result decorate_read_status(const msg_reader *rd, Kreide__Messaging__Message **msgs, size_t n, const char *ids)
{
    const char *params[] = {ids, rd->viewer};
    PGresult *r =
        msg_sql(rd->pg, "select read status",
                "SELECT mm.id::text, "
                "(SELECT count(*) FROM messaging.room_members x WHERE x.room_id = mm.room_id AND x.state = 'joined' "
                "AND x.user_id <> mm.sender), "
                "(SELECT count(*) FROM messaging.room_members x WHERE x.room_id = mm.room_id AND x.state = 'joined' "
                "AND x.user_id <> mm.sender AND x.last_read_position >= mm.position), "
                "(SELECT count(*) FROM messaging.confirmations c JOIN messaging.room_members x ON x.room_id = mm.room_id "
                "AND x.user_id = c.user_id AND x.state = 'joined' WHERE c.message_id = mm.id AND c.user_id <> mm.sender), "
                "EXISTS (SELECT 1 FROM messaging.confirmations c WHERE c.message_id = mm.id AND c.user_id = $2) "
                "FROM messaging.messages mm WHERE mm.id = ANY($1::uuid[])",
                2, params);
    if (r == NULL)
        return msg_sql_failure(rd->pg);
    for (int row = 0; row < PQntuples(r); row++) {
        ssize_t k = find_message(msgs, n, PQgetvalue(r, row, 0));
        if (k < 0 || msgs[k]->read_status == NULL)
            continue;
        Kreide__Messaging__ReadStatus *s = msgs[k]->read_status;
        s->audience = (uint32_t)colint(r, row, 1);
        s->read = (uint32_t)colint(r, row, 2);
        s->confirmed = (uint32_t)colint(r, row, 3);
        s->confirmed_by_me = colbool(r, row, 4);
    }
    PQclear(r);
    return MSG_STORE_OK;
}

/* Adds poll results and read status to the messages that have them (each
 * query covers every message of the page at once); attachments, reactions
 * and pins come with the message's own row. */
static msg_store_result decorate(const msg_reader *rd, Kreide__Messaging__Message **msgs, size_t n)
{
    if (n == 0)
        return MSG_STORE_OK;
    const char **polls = kr_arena_alloc(rd->arena, sizeof(char *) * n);
    const char **news = kr_arena_alloc(rd->arena, sizeof(char *) * n);
    size_t npolls = 0, nnews = 0;
    for (size_t i = 0; i < n; i++) {
        /* Tombstones have neither (message_from). */
        if (msgs[i]->poll != NULL)
            polls[npolls++] = msgs[i]->id;
        if (msgs[i]->read_status != NULL)
            news[nnews++] = msgs[i]->id;
    }
    msg_store_result res = MSG_STORE_OK;
    if (npolls > 0)
        res = decorate_polls(rd, msgs, n, msg_pg_array(rd->arena, polls, npolls));
    if (res == MSG_STORE_OK && nnews > 0)
        res = decorate_read_status(rd, msgs, n, msg_pg_array(rd->arena, news, nnews));
    return res;
}

static msg_store_result decorate_events(const msg_reader *rd, Kreide__Messaging__Event **events, size_t n)
{
    Kreide__Messaging__Message **msgs = alloc_list(rd, n, sizeof(*msgs));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        Kreide__Messaging__Message *m = events[i]->message;
        if (m == NULL)
            continue;
        /* Several events of a page may show the same message: decorate
         * one copy and share it. */
        ssize_t j = find_message(msgs, k, m->id);
        if (j >= 0)
            events[i]->message = msgs[j];
        else
            msgs[k++] = m;
    }
    return decorate(rd, msgs, k);
}

/* ------------------------------------------------------------- events */

static char *num(const msg_reader *rd, int64_t v)
{
    return kr_arena_printf(rd->arena, "%" PRId64, v);
}

static char *caller_schools(const msg_reader *rd)
{
    const Kreide__Caller *c = rd->caller;
    const char **ids = kr_arena_alloc(rd->arena, sizeof(char *) * (c->n_schools ? c->n_schools : 1));
    size_t n = 0;
    for (size_t i = 0; i < c->n_schools; i++) {
        if (c->schools[i]->n_roles > 0 && kr_uuid_valid(c->schools[i]->school_id))
            ids[n++] = c->schools[i]->school_id;
    }
    return msg_pg_array(rd->arena, ids, n);
}

msg_store_result msg_read_events(kr_rpc_ctx *ctx, const msg_event_query *q, Kreide__Messaging__Event ***out, size_t *n, bool *more,
                                 int64_t *head)
{
    msg_reader reader = msg_reader_of(ctx);
    const msg_reader *rd = &reader;
    const char *limit = kr_arena_printf(rd->arena, "%u", q->limit + 1);
    const char *after = q->after > 0 ? num(rd, q->after) : NULL;
    const char *before = q->before > 0 ? num(rd, q->before) : NULL;
    const char *only = q->messages_only ? "t" : "f";
    PGresult *r;
    PGresult *h;
    if (q->room_id != NULL) {
        const char *params[] = {q->room_id, after, before, limit, only, rd->viewer};
        if (q->backward)
            r = msg_sql(rd->pg, "select room events backward",
                        "SELECT " EVENT_COLUMNS("$6") EVENT_FROM
                        "WHERE e.room_id = $1 AND ($2::bigint IS NULL OR e.position > $2) "
                        "AND ($3::bigint IS NULL OR e.position < $3) AND (NOT $5::boolean OR e.kind = 'message')" EVENT_VISIBLE
                        " ORDER BY e.position DESC LIMIT $4",
                        6, params);
        else
            r = msg_sql(rd->pg, "select room events",
                        "SELECT " EVENT_COLUMNS("$6") EVENT_FROM
                        "WHERE e.room_id = $1 AND ($2::bigint IS NULL OR e.position > $2) "
                        "AND ($3::bigint IS NULL OR e.position < $3) AND (NOT $5::boolean OR e.kind = 'message')" EVENT_VISIBLE
                        " ORDER BY e.position LIMIT $4",
                        6, params);
        if (r == NULL)
            return msg_sql_failure(rd->pg);
        const char *hp[] = {q->room_id};
        h = msg_sql(rd->pg, "select room head", "SELECT last_position FROM messaging.rooms WHERE id = $1", 1, hp);
    } else {
        /* The caller's stream: every room they are in, and the rooms they
         * left up to their leaving, at the schools their token names. */
        const char *schools = caller_schools(rd);
        const char *params[] = {rd->viewer, schools, after ? after : "0", limit, only};
        r = msg_sql(rd->pg, "select stream events",
                    "SELECT " EVENT_COLUMNS(
                        "$1") " FROM messaging.room_members me JOIN messaging.events e ON e.room_id = me.room_id "
                              "JOIN messaging.rooms r ON r.id = e.room_id JOIN messaging.schools s ON s.school_id = r.school_id "
                              "LEFT JOIN messaging.messages mm ON mm.id = e.message_id "
                              "WHERE me.user_id = $1 AND me.school_id = ANY($2::uuid[]) AND e.position > $3 "
                              "AND (me.state = 'joined' OR e.position <= me.left_position) "
                              "AND (NOT $5::boolean OR e.kind = 'message')" EVENT_VISIBLE " ORDER BY e.position LIMIT $4",
                    5, params);
        if (r == NULL)
            return msg_sql_failure(rd->pg);
        const char *hp[] = {rd->viewer, schools};
        h = msg_sql(rd->pg, "select stream head",
                    "SELECT coalesce(max(CASE WHEN me.state = 'joined' THEN r.last_position ELSE me.left_position END), 0) "
                    "FROM messaging.room_members me JOIN messaging.rooms r ON r.id = me.room_id "
                    "WHERE me.user_id = $1 AND me.school_id = ANY($2::uuid[])",
                    2, hp);
    }
    if (h == NULL) {
        PQclear(r);
        return msg_sql_failure(rd->pg);
    }
    *head = PQntuples(h) == 1 ? colint(h, 0, 0) : 0;
    PQclear(h);
    size_t rows = (size_t)PQntuples(r);
    *more = rows > q->limit;
    *n = *more ? q->limit : rows;
    Kreide__Messaging__Event **events = alloc_list(rd, *n, sizeof(*events));
    for (size_t i = 0; i < *n; i++) {
        /* Backward pages are read newest first and returned oldest first. */
        size_t at = q->backward ? *n - 1 - i : i;
        events[at] = event_from(rd, r, (int)i);
    }
    PQclear(r);
    *out = events;
    return decorate_events(rd, events, *n);
}

msg_store_result msg_read_appended(const msg_reader *rd, const msg_appended *items, size_t n, Kreide__Messaging__Event ***out)
{
    Kreide__Messaging__Event **events = alloc_list(rd, n, sizeof(*events));
    memset(events, 0, sizeof(*events) * (n ? n : 1));
    *out = events;
    if (n == 0)
        return MSG_STORE_OK;
    /* Just appended: no retention can have expired them yet. One event (a
     * send, most calls) by its key, prepared: PostgreSQL plans it once per
     * connection. */
    PGresult *r;
    if (n == 1) {
        const char *params[] = {num(rd, items[0].position), rd->viewer};
        r = msg_sql_hot(rd->pg, "select appended event", "SELECT " EVENT_COLUMNS("$2") EVENT_FROM "WHERE e.position = $1", 2,
                        params);
    } else {
        const char **positions = kr_arena_alloc(rd->arena, sizeof(char *) * n);
        for (size_t i = 0; i < n; i++)
            positions[i] = num(rd, items[i].position);
        const char *params[] = {msg_pg_array(rd->arena, positions, n), rd->viewer};
        r = msg_sql(rd->pg, "select appended events",
                    "SELECT " EVENT_COLUMNS("$2") EVENT_FROM "WHERE e.position = ANY($1::bigint[]) ORDER BY e.position", 2, params);
    }
    if (r == NULL)
        return msg_sql_failure(rd->pg);
    Kreide__Messaging__Event **found = alloc_list(rd, (size_t)PQntuples(r), sizeof(*found));
    size_t nfound = 0;
    for (int row = 0; row < PQntuples(r); row++) {
        Kreide__Messaging__Event *e = event_from(rd, r, row);
        found[nfound++] = e;
        for (size_t i = 0; i < n; i++) {
            if (items[i].position == e->position)
                events[i] = e;
        }
    }
    PQclear(r);
    return decorate_events(rd, found, nfound);
}

Kreide__Messaging__Event *msg_sent_event(kr_arena *arena, const msg_appended *e, const msg_send_row *row, char *const *mentions,
                                         size_t n_mentions, bool announcement, uint32_t audience)
{
    /* What event_from and message_from make of the rows this send wrote:
     * the same fields, the same empty strings. */
    Kreide__Messaging__Event *ev = kr_arena_alloc(arena, sizeof(*ev));
    kreide__messaging__event__init(ev);
    ev->position = e->position;
    ev->id = kr_arena_strdup(arena, e->id);
    ev->room_id = kr_arena_strdup(arena, e->room_id);
    ev->school_id = kr_arena_strdup(arena, e->school_id);
    ev->kind = KREIDE__MESSAGING__EVENT_KIND__MESSAGE;
    ev->sender_id = kr_arena_strdup(arena, e->sender);
    ev->created_at = kr_arena_strdup(arena, e->created_at);
    ev->message_id = ev->id;
    Kreide__Messaging__Message *m = kr_arena_alloc(arena, sizeof(*m));
    kreide__messaging__message__init(m);
    m->id = ev->id;
    m->room_id = ev->room_id;
    m->sender_id = ev->sender_id;
    m->position = e->position;
    m->created_at = ev->created_at;
    m->text = kr_arena_strdup(arena, row->text);
    m->edited_at = kr_arena_strdup(arena, "");
    m->deleted_at = kr_arena_strdup(arena, "");
    m->reply_to = kr_arena_strdup(arena, row->reply_to ? row->reply_to : "");
    m->mentions = kr_arena_alloc(arena, sizeof(char *) * (n_mentions ? n_mentions : 1));
    for (size_t i = 0; i < n_mentions; i++)
        m->mentions[i] = kr_arena_strdup(arena, mentions[i]);
    m->n_mentions = n_mentions;
    if (announcement) {
        m->read_status = kr_arena_alloc(arena, sizeof(*m->read_status));
        kreide__messaging__read_status__init(m->read_status);
        m->read_status->audience = audience;
    }
    m->attachments = kr_arena_alloc(arena, sizeof(*m->attachments) * (row->n_attachments ? row->n_attachments : 1));
    for (size_t i = 0; i < row->n_attachments; i++) {
        const Kreide__Messaging__Attachment *in = row->attachments[i];
        Kreide__Messaging__Attachment *at = kr_arena_alloc(arena, sizeof(*at));
        kreide__messaging__attachment__init(at);
        at->file_id = kr_arena_strdup(arena, in->file_id);
        at->name = kr_arena_strdup(arena, in->name);
        at->media_type = kr_arena_strdup(arena, in->media_type);
        at->size_bytes = in->size_bytes;
        m->attachments[m->n_attachments++] = at;
    }
    m->reactions = kr_arena_alloc(arena, sizeof(*m->reactions));
    ev->message = m;
    return ev;
}

msg_store_result msg_read_message(kr_rpc_ctx *ctx, const char *message_id, Kreide__Messaging__Message **out)
{
    msg_reader reader = msg_reader_of(ctx);
    const msg_reader *rd = &reader;
    const char *params[] = {message_id, rd->viewer};
    PGresult *r =
        msg_sql(rd->pg, "select message state",
                "SELECT " MESSAGE_COLUMNS(
                    "$2") " FROM messaging.messages mm JOIN messaging.rooms r ON r.id = mm.room_id "
                          "JOIN messaging.schools s ON s.school_id = r.school_id WHERE mm.id = $1 AND " VISIBLE("mm.created_at"),
                2, params);
    if (r == NULL)
        return msg_sql_failure(rd->pg);
    if (PQntuples(r) != 1) {
        PQclear(r);
        return MSG_STORE_NOT_FOUND;
    }
    *out = message_from(rd, r, 0, 0);
    PQclear(r);
    return decorate(rd, out, 1);
}

msg_store_result msg_read_search(kr_rpc_ctx *ctx, const msg_room_ref *room, const char *tsquery, int64_t before, unsigned limit,
                                 Kreide__Messaging__Message ***out, size_t *n, bool *more)
{
    msg_reader reader = msg_reader_of(ctx);
    const msg_reader *rd = &reader;
    const char *params[] = {room->id, tsquery, before > 0 ? num(rd, before) : NULL, kr_arena_printf(rd->arena, "%u", limit + 1),
                            rd->viewer};
    PGresult *r = msg_sql(
        rd->pg, "search room",
        "SELECT " MESSAGE_COLUMNS("$5") " FROM messaging.messages mm JOIN messaging.rooms r ON r.id = mm.room_id "
                                        "JOIN messaging.schools s ON s.school_id = r.school_id "
                                        "WHERE mm.room_id = $1 AND mm.deleted_at IS NULL AND mm.search @@ to_tsquery('simple', $2) "
                                        "AND ($3::bigint IS NULL OR mm.position < $3) AND " VISIBLE(
                                            "mm.created_at") " ORDER BY mm.position DESC LIMIT $4",
        5, params);
    if (r == NULL)
        return msg_sql_failure(rd->pg);
    size_t rows = (size_t)PQntuples(r);
    *more = rows > limit;
    *n = *more ? limit : rows;
    Kreide__Messaging__Message **msgs = alloc_list(rd, *n, sizeof(*msgs));
    for (size_t i = 0; i < *n; i++)
        msgs[i] = message_from(rd, r, (int)i, 0);
    PQclear(r);
    *out = msgs;
    return decorate(rd, msgs, *n);
}

/* -------------------------------------------------------------- rooms */

#define UNREAD(extra)                                                                                                              \
    "(SELECT count(*) FROM (SELECT 1 FROM messaging.messages u WHERE u.room_id = r.id AND u.position > me.last_read_position "     \
    "AND u.sender <> me.user_id AND u.deleted_at IS NULL AND u.created_at >= messaging.visible_since(r.retention_days, "           \
    "s.retention_days)" extra " LIMIT 1000) x)"

#define ROOM_COLUMNS                                                                                                               \
    "r.id::text, r.school_id::text, r.kind, "                                                                                      \
    "CASE WHEN r.kind = 'direct' THEN coalesce((SELECT p.display_name FROM messaging.room_members o "                              \
    "JOIN messaging.people p ON p.user_id = o.user_id WHERE o.room_id = r.id AND o.user_id <> me.user_id LIMIT 1), '') "           \
    "ELSE r.name END, r.topic, coalesce(r.group_id::text, ''), r.group_kind, r.locked, coalesce(r.retention_days, 0), "            \
    "coalesce(least(r.retention_days, s.retention_days), 0), coalesce(r.created_by::text, ''), " TS(                               \
        "r.created_at") ", r.last_position, (SELECT count(*) FROM messaging.room_members x WHERE x.room_id = r.id AND x.state = "  \
                        "'joined'), "                                                                                              \
                        "me.role, me.muted, me.last_read_position, " UNREAD("") ", " UNREAD(" AND me.user_id = ANY (u.mentions)")
#define ROOM_FROM                                                                                                                  \
    " FROM messaging.room_members me JOIN messaging.rooms r ON r.id = me.room_id "                                                 \
    "JOIN messaging.schools s ON s.school_id = r.school_id WHERE me.user_id = $1 AND me.state = 'joined' "

static Kreide__Messaging__RoomKind room_kind_enum(const char *s)
{
    switch (msg_room_kind_parse(s)) {
    case MSG_KIND_DIRECT:
        return KREIDE__MESSAGING__ROOM_KIND__DIRECT;
    case MSG_KIND_GROUP:
        return KREIDE__MESSAGING__ROOM_KIND__GROUP;
    case MSG_KIND_ANNOUNCEMENT:
        return KREIDE__MESSAGING__ROOM_KIND__ANNOUNCEMENT;
    case MSG_KIND_ROSTER:
        return KREIDE__MESSAGING__ROOM_KIND__ROSTER;
    }
    return KREIDE__MESSAGING__ROOM_KIND__ROOM_KIND_UNSPECIFIED;
}

static Kreide__Messaging__MemberRole member_role_enum(const char *s)
{
    return strcmp(s, "moderator") == 0 ? KREIDE__MESSAGING__MEMBER_ROLE__MODERATOR : KREIDE__MESSAGING__MEMBER_ROLE__MEMBER;
}

static void room_from(const msg_reader *rd, const PGresult *r, int row, Kreide__Messaging__Room *out)
{
    kreide__messaging__room__init(out);
    out->id = col(rd, r, row, 0);
    out->school_id = col(rd, r, row, 1);
    out->kind = room_kind_enum(PQgetvalue(r, row, 2));
    out->name = col(rd, r, row, 3);
    out->topic = col(rd, r, row, 4);
    out->group_id = col(rd, r, row, 5);
    out->group_kind = col(rd, r, row, 6);
    out->locked = colbool(r, row, 7);
    out->retention_days = (uint32_t)colint(r, row, 8);
    out->effective_retention_days = (uint32_t)colint(r, row, 9);
    out->created_by = col(rd, r, row, 10);
    out->created_at = col(rd, r, row, 11);
    out->last_position = colint(r, row, 12);
    out->member_count = (uint32_t)colint(r, row, 13);
    out->my_role = member_role_enum(PQgetvalue(r, row, 14));
    out->muted = colbool(r, row, 15);
    out->last_read_position = colint(r, row, 16);
    out->unread_count = (uint32_t)colint(r, row, 17);
    out->unread_mentions = (uint32_t)colint(r, row, 18);
}

msg_store_result msg_read_room(kr_rpc_ctx *ctx, const char *room_id, bool full, Kreide__Messaging__Room *out)
{
    msg_reader reader = msg_reader_of(ctx);
    const msg_reader *rd = &reader;
    const char *params[] = {rd->viewer, room_id};
    PGresult *r = msg_sql(rd->pg, "select room view", "SELECT " ROOM_COLUMNS ROOM_FROM "AND r.id = $2", 2, params);
    if (r == NULL)
        return msg_sql_failure(rd->pg);
    if (PQntuples(r) != 1) {
        PQclear(r);
        return MSG_STORE_NOT_FOUND;
    }
    room_from(rd, r, 0, out);
    PQclear(r);
    if (!full)
        return MSG_STORE_OK;
    const char *p2[] = {room_id, kr_arena_printf(rd->arena, "%d", MSG_MAX_LISTED_MEMBERS)};
    r = msg_sql(rd->pg, "select room members",
                "SELECT m.user_id::text, m.role, m.muted, coalesce(p.display_name, ''), m.last_read_position, m.source = 'group' "
                "FROM messaging.room_members m LEFT JOIN messaging.people p ON p.user_id = m.user_id "
                "WHERE m.room_id = $1 AND m.state = 'joined' "
                "ORDER BY m.role = 'moderator' DESC, lower(coalesce(p.display_name, '')), m.user_id LIMIT $2",
                2, p2);
    if (r == NULL)
        return msg_sql_failure(rd->pg);
    out->n_members = (size_t)PQntuples(r);
    out->members = alloc_list(rd, out->n_members, sizeof(*out->members));
    for (size_t i = 0; i < out->n_members; i++) {
        Kreide__Messaging__RoomMember *m = kr_arena_alloc(rd->arena, sizeof(*m));
        kreide__messaging__room_member__init(m);
        m->user_id = col(rd, r, (int)i, 0);
        m->role = member_role_enum(PQgetvalue(r, (int)i, 1));
        m->muted = colbool(r, (int)i, 2);
        m->display_name = col(rd, r, (int)i, 3);
        m->last_read_position = colint(r, (int)i, 4);
        m->from_group = colbool(r, (int)i, 5);
        out->members[i] = m;
    }
    PQclear(r);
    const char *p3[] = {room_id};
    r = msg_sql(rd->pg, "select pins",
                "SELECT p.message_id::text FROM messaging.pins p JOIN messaging.messages mm ON mm.id = p.message_id "
                "JOIN messaging.rooms r ON r.id = mm.room_id JOIN messaging.schools s ON s.school_id = r.school_id "
                "WHERE p.room_id = $1 AND mm.deleted_at IS NULL AND " VISIBLE("mm.created_at") " ORDER BY p.pinned_at DESC",
                1, p3);
    if (r == NULL)
        return msg_sql_failure(rd->pg);
    out->n_pinned_message_ids = (size_t)PQntuples(r);
    out->pinned_message_ids = alloc_list(rd, out->n_pinned_message_ids, sizeof(char *));
    for (size_t i = 0; i < out->n_pinned_message_ids; i++)
        out->pinned_message_ids[i] = col(rd, r, (int)i, 0);
    PQclear(r);
    return MSG_STORE_OK;
}

msg_store_result msg_read_rooms(kr_rpc_ctx *ctx, const char *schools, int64_t after_pos, const char *after_id, unsigned limit,
                                Kreide__Messaging__Room ***out, size_t *n, bool *more)
{
    msg_reader reader = msg_reader_of(ctx);
    const msg_reader *rd = &reader;
    const char *params[] = {rd->viewer, schools, after_id[0] ? num(rd, after_pos) : NULL, after_id[0] ? after_id : NULL,
                            kr_arena_printf(rd->arena, "%u", limit + 1)};
    PGresult *r = msg_sql(rd->pg, "select rooms",
                          "SELECT " ROOM_COLUMNS ROOM_FROM
                          "AND r.school_id = ANY($2::uuid[]) AND ($3::bigint IS NULL OR (r.last_position, r.id) < ($3, $4::uuid)) "
                          "ORDER BY r.last_position DESC, r.id DESC LIMIT $5",
                          5, params);
    if (r == NULL)
        return msg_sql_failure(rd->pg);
    size_t rows = (size_t)PQntuples(r);
    *more = rows > limit;
    *n = *more ? limit : rows;
    Kreide__Messaging__Room **rooms = alloc_list(rd, *n, sizeof(*rooms));
    for (size_t i = 0; i < *n; i++) {
        rooms[i] = kr_arena_alloc(rd->arena, sizeof(*rooms[i]));
        room_from(rd, r, (int)i, rooms[i]);
    }
    PQclear(r);
    *out = rooms;
    return MSG_STORE_OK;
}
