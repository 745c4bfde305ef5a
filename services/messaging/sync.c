/* The roster follower: keeps the rooms that follow identity groups in line
 * with identity, on a thread of its own with its own PostgreSQL connection.
 *
 * Identity's events (kreide.identity.events) are hints, never the truth:
 * any event about a group makes the follower read the group's members from
 * identity (ListMembers) and apply the difference, so an event that arrives
 * twice, late or out of order changes nothing wrong. Events missed while
 * Redis or this daemon was away are healed by reconciliation: every school
 * messaging knows is re-read from identity at least every
 * KREIDE_MESSAGING_RECONCILE_S seconds, at once after (re)subscribing, and
 * at once when a school is met for the first time. Replicas share the work
 * through FOR UPDATE SKIP LOCKED and an advisory lock per group. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kr_id.h"
#include "kr_log.h"
#include "kr_metrics.h"
#include "kr_redis.h"
#include "messaging.h"

#define TICK_MS 500
#define MAX_PENDING 1024
#define RETRY_FAILED_S_TEXT "30"
#define REDIS_CONNECT_MS 1000

typedef struct {
    char school_id[40];
    char group_id[40];
} pending_group;

struct st_msg_sync_t {
    pthread_t thread;
    atomic_bool stop;
    char *redis_url;
    char *database_url;
    int interval_s;
    int sweep_s;
    msg_identity *identity;
    msg_events *events;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool kicked;
    bool overflow; /* events were dropped: every school is due */
    pending_group pending[MAX_PENDING];
    size_t npending;
    kr_metric *groups_synced, *sync_failed, *roster_events, *swept;
};

/* ------------------------------------------------------------ one group */

static void today_utc(char out[11])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

/* Makes sure the school has a row, with the preset of its kind. */
static msg_store_result school_known(kr_pg *pg, msg_identity *identity, kr_arena *arena, const char *school_id)
{
    msg_school_row row;
    msg_store_result res = msg_store_school(pg, school_id, &row);
    if (res != MSG_STORE_NOT_FOUND)
        return res;
    int kind = 1;
    if (msg_identity_school_kind(identity, arena, school_id, &kind) == MSG_ID_NOT_FOUND)
        return MSG_STORE_NOT_FOUND;
    bool created;
    return msg_store_school_ensure(pg, school_id, msg_preset_for_school_kind(kind), &created);
}

msg_store_result msg_sync_group_now(kr_pg *pg, msg_identity *identity, msg_events *events, kr_arena *arena, const char *school_id,
                                    const char *group_id, const msg_id_group *known)
{
    msg_store_result res = school_known(pg, identity, arena, school_id);
    if (res == MSG_STORE_NOT_FOUND)
        return MSG_STORE_OK; /* no such school at identity: nothing to follow */
    if (res != MSG_STORE_OK)
        return res;
    msg_id_group group;
    if (known != NULL) {
        group = *known;
    } else {
        msg_id_group *groups;
        size_t n;
        msg_id_result rv = msg_identity_groups(identity, arena, school_id, &groups, &n);
        if (rv != MSG_ID_OK)
            return rv == MSG_ID_NOT_FOUND ? MSG_STORE_OK : MSG_STORE_ERROR;
        size_t i;
        for (i = 0; i < n && strcasecmp(groups[i].id, group_id) != 0; i++)
            ;
        if (i == n)
            return MSG_STORE_OK; /* not (or no longer) a group of this school */
        group = groups[i];
    }
    msg_id_member *members;
    size_t n;
    msg_id_result rv = msg_identity_members(identity, arena, school_id, group.id, &members, &n);
    if (rv == MSG_ID_NOT_FOUND)
        return MSG_STORE_OK;
    if (rv != MSG_ID_OK)
        return MSG_STORE_ERROR;
    char today[11];
    today_utc(today);
    msg_roster_member *want = kr_arena_alloc(arena, sizeof(*want) * (n ? n : 1));
    const char **ids = kr_arena_alloc(arena, sizeof(char *) * (n ? n : 1));
    const char **names = kr_arena_alloc(arena, sizeof(char *) * (n ? n : 1));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        ids[i] = members[i].user_id;
        names[i] = members[i].display_name;
        if (!kr_uuid_valid(members[i].user_id) || !msg_membership_current(members[i].valid_from, members[i].valid_to, today))
            continue;
        want[k++] = (msg_roster_member){.user_id = members[i].user_id, .leader = members[i].leader};
    }
    res = msg_store_people(pg, ids, names, n);
    if (res != MSG_STORE_OK)
        return res;
    msg_outbox box = {0};
    bool announce = msg_events_enabled(events);
    res = msg_store_sync_group(pg, school_id, group.id, group.name, group.kind, want, k, &box, announce);
    if (res == MSG_STORE_OK && announce && box.n > 0) {
        /* The service's own events, read by no one in particular. */
        msg_reader rd = {.pg = pg, .arena = arena};
        Kreide__Messaging__Event **read = NULL;
        msg_store_result rr = msg_read_appended(&rd, box.items, box.n, &read);
        msg_events_publish(events, &box, rr == MSG_STORE_OK ? read : NULL);
    }
    msg_outbox_free(&box);
    return res;
}

/* ----------------------------------------------------------- schools */

/* Claims one school whose reconciliation is due (so no other replica takes
 * it meanwhile); false when none is due. */
static bool claim_due_school(msg_sync *s, kr_pg *pg, char school_id[40])
{
    char secs[16];
    snprintf(secs, sizeof(secs), "%d", s->interval_s);
    const char *params[] = {secs};
    PGresult *r = msg_sql(pg, "claim school",
                          "UPDATE messaging.schools SET next_sync_at = now() + make_interval(secs => $1::int) "
                          "WHERE school_id = (SELECT school_id FROM messaging.schools WHERE next_sync_at <= now() "
                          "ORDER BY next_sync_at FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING school_id::text",
                          1, params);
    if (r == NULL)
        return false;
    bool got = PQntuples(r) == 1;
    if (got)
        snprintf(school_id, 40, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return got;
}

static void reconcile_school(msg_sync *s, kr_pg *pg, const char *school_id)
{
    kr_arena arena;
    kr_arena_init(&arena);
    msg_id_group *groups;
    size_t n;
    bool ok = false;
    msg_id_result rv = msg_identity_groups(s->identity, &arena, school_id, &groups, &n);
    if (rv == MSG_ID_OK) {
        ok = true;
        for (size_t i = 0; i < n && !atomic_load(&s->stop); i++) {
            kr_arena group_arena;
            kr_arena_init(&group_arena);
            if (msg_sync_group_now(pg, s->identity, s->events, &group_arena, school_id, groups[i].id, &groups[i]) == MSG_STORE_OK)
                kr_counter_add(s->groups_synced, 1);
            else
                ok = false;
            kr_arena_free(&group_arena);
        }
    } else if (rv == MSG_ID_NOT_FOUND) {
        ok = true; /* identity does not know the school (any more) */
    }
    const char *params[] = {school_id, ok ? NULL : "retry"};
    PGresult *r = msg_sql(pg, "school reconciled",
                          "UPDATE messaging.schools SET synced_at = CASE WHEN $2::text IS NULL THEN now() ELSE synced_at END, "
                          "next_sync_at = CASE WHEN $2::text IS NULL THEN next_sync_at "
                          "ELSE least(next_sync_at, now() + interval '" RETRY_FAILED_S_TEXT " seconds') END "
                          "WHERE school_id = $1",
                          2, params);
    if (r != NULL)
        PQclear(r);
    if (!ok) {
        kr_counter_add(s->sync_failed, 1);
        kr_log(KR_LOG_WARN, "school not reconciled; retrying soon", "school_id", school_id, NULL);
    }
    kr_arena_free(&arena);
}

static void reconcile_due(msg_sync *s, kr_pg *pg)
{
    char school_id[40];
    while (!atomic_load(&s->stop) && claim_due_school(s, pg, school_id))
        reconcile_school(s, pg, school_id);
}

/* Everything may have changed while nobody listened. */
static void all_schools_due(kr_pg *pg)
{
    PGresult *r = msg_sql(pg, "schools due", "UPDATE messaging.schools SET next_sync_at = now()", 0, NULL);
    if (r != NULL)
        PQclear(r);
}

/* ------------------------------------------------------------ retention */

#define SWEEP_BATCH 1000
#define SWEEP_MAX_BATCHES 100 /* per school and sweep; the next sweep goes on */

/* Deletes what retention expired, school by school, in batches, with one
 * audit entry per school that lost anything. Reads hide expired history at
 * once; this makes it gone. One replica sweeps at a time. */
static void retention_sweep(msg_sync *s, kr_pg *pg)
{
    PGresult *r =
        msg_sql(pg, "sweep lock", "SELECT pg_try_advisory_lock(hashtextextended('kreide.messaging.retention', 0))", 0, NULL);
    bool locked = r != NULL && PQgetvalue(r, 0, 0)[0] == 't';
    if (r != NULL)
        PQclear(r);
    if (!locked)
        return;
    r = msg_sql(pg, "schools with retention",
                "SELECT s.school_id::text FROM messaging.schools s WHERE s.retention_days IS NOT NULL "
                "OR EXISTS (SELECT 1 FROM messaging.rooms r WHERE r.school_id = s.school_id AND r.retention_days IS NOT NULL) "
                "ORDER BY s.school_id",
                0, NULL);
    int n = r ? PQntuples(r) : 0;
    for (int i = 0; i < n && !atomic_load(&s->stop); i++) {
        const char *school = PQgetvalue(r, i, 0);
        msg_purge_counts total = {0}, got = {0};
        int batches = 0;
        bool ok = true;
        do {
            ok = msg_store_purge_batch(pg, school, NULL, NULL, SWEEP_BATCH, &got) == MSG_STORE_OK;
            if (!ok)
                break;
            total.events += got.events;
            total.messages += got.messages;
            total.attachments += got.attachments;
            batches++;
        } while (got.events == SWEEP_BATCH && batches < SWEEP_MAX_BATCHES && !atomic_load(&s->stop));
        if (total.events == 0)
            continue;
        kr_counter_add(s->swept, total.events);
        char counts[192];
        snprintf(counts, sizeof(counts),
                 "{\"events\":%" PRIu64 ",\"messages\":%" PRIu64 ",\"attachments\":%" PRIu64 ",\"batches\":%d,\"done\":%s}",
                 total.events, total.messages, total.attachments, batches, ok && got.events < SWEEP_BATCH ? "true" : "false");
        if (msg_store_audit(pg, school, NULL, "purge", "messaging", "retention", counts) != MSG_STORE_OK)
            kr_log(KR_LOG_ERROR, "retention purge not audited", "school_id", school, "counts", counts, NULL);
        else
            kr_log(KR_LOG_INFO, "expired history deleted", "school_id", school, "counts", counts, NULL);
    }
    if (r != NULL)
        PQclear(r);
    r = msg_sql(pg, "sweep unlock", "SELECT pg_advisory_unlock(hashtextextended('kreide.messaging.retention', 0))", 0, NULL);
    if (r != NULL)
        PQclear(r);
}

/* ------------------------------------------------------ identity events */

static void add_pending(msg_sync *s, const char *school_id, const char *group_id)
{
    pthread_mutex_lock(&s->lock);
    bool have = false;
    for (size_t i = 0; i < s->npending && !have; i++)
        have = strcmp(s->pending[i].group_id, group_id) == 0;
    if (!have && s->npending < MAX_PENDING) {
        snprintf(s->pending[s->npending].school_id, 40, "%s", school_id);
        snprintf(s->pending[s->npending].group_id, 40, "%s", group_id);
        s->npending++;
    } else if (!have) {
        /* Too much at once: reconciliation catches up. */
        s->overflow = true;
    }
    pthread_mutex_unlock(&s->lock);
}

static void on_identity_event(msg_sync *s, const char *payload, size_t len)
{
    json_t *o = json_loadb(payload, len, 0, NULL);
    const char *type = json_string_value(json_object_get(o, "type"));
    const char *school = json_string_value(json_object_get(o, "school_id"));
    const char *group = json_string_value(json_object_get(o, "group_id"));
    if (type != NULL && school != NULL && group != NULL && kr_uuid_valid(school) && kr_uuid_valid(group) &&
        (strcmp(type, "group.created") == 0 || strncmp(type, "membership.", 11) == 0)) {
        kr_counter_add(s->roster_events, 1);
        add_pending(s, school, group);
    }
    json_decref(o);
}

static void handle_reply(msg_sync *s, redisReply *reply)
{
    /* ["message", channel, payload] */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 && reply->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(reply->element[0]->str, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING)
        on_identity_event(s, reply->element[2]->str, reply->element[2]->len);
    freeReplyObject(reply);
}

static redisContext *subscribe(const char *url)
{
    kr_redis_target t;
    char err[256];
    if (kr_redis_url_parse(url, &t, err, sizeof(err)) != 0)
        return NULL;
    struct timeval tv = {.tv_sec = REDIS_CONNECT_MS / 1000, .tv_usec = (REDIS_CONNECT_MS % 1000) * 1000};
    redisContext *c = t.is_unix ? redisConnectUnixWithTimeout(t.path, tv) : redisConnectWithTimeout(t.host, t.port, tv);
    if (c == NULL || c->err) {
        if (c != NULL)
            redisFree(c);
        return NULL;
    }
    redisReply *r = NULL;
    if (t.password[0] != '\0') {
        r = t.user[0] != '\0' ? redisCommand(c, "AUTH %s %s", t.user, t.password) : redisCommand(c, "AUTH %s", t.password);
        bool ok = r != NULL && r->type != REDIS_REPLY_ERROR;
        if (r != NULL)
            freeReplyObject(r);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    r = redisCommand(c, "SUBSCRIBE %s", MSG_IDENTITY_EVENTS_CHANNEL);
    bool ok = r != NULL && r->type == REDIS_REPLY_ARRAY;
    if (r != NULL)
        freeReplyObject(r);
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Waits up to TICK_MS for identity's events; false when the connection is
 * gone. */
static bool read_events(msg_sync *s, redisContext *c)
{
    void *reply = NULL;
    /* Replies already buffered first. */
    while (redisGetReplyFromReader(c, &reply) == REDIS_OK && reply != NULL) {
        handle_reply(s, reply);
        reply = NULL;
    }
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int rc = poll(&pfd, 1, TICK_MS);
    if (rc < 0)
        return errno == EINTR;
    if (rc == 0)
        return true;
    if (redisBufferRead(c) != REDIS_OK)
        return false;
    while (redisGetReplyFromReader(c, &reply) == REDIS_OK && reply != NULL) {
        handle_reply(s, reply);
        reply = NULL;
    }
    return c->err == 0;
}

static void wait_tick(msg_sync *s)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)TICK_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&s->lock);
    if (!s->kicked && !atomic_load(&s->stop))
        pthread_cond_timedwait(&s->cond, &s->lock, &until);
    pthread_mutex_unlock(&s->lock);
}

/* -------------------------------------------------------------- thread */

static void *sync_main(void *arg)
{
    msg_sync *s = arg;
    kr_log_set_request_id(NULL);
    kr_pg *pg = kr_pg_new(s->database_url);
    kr_pg_set_application_name(pg, "kreide-messaging-sync");
    kr_pg_set_statement_timeout(pg, 30000);
    redisContext *sub = NULL;
    int64_t next_connect = 0, connect_backoff = 500;
    bool subscribed_before = false;
    int64_t next_due_check = 0;
    int64_t next_sweep = kr_now_ms() + (int64_t)s->sweep_s * 1000;
    while (!atomic_load(&s->stop)) {
        int64_t now = kr_now_ms();
        if (s->redis_url != NULL && sub == NULL && now >= next_connect) {
            sub = subscribe(s->redis_url);
            if (sub != NULL) {
                kr_log(KR_LOG_INFO, subscribed_before ? "roster events resubscribed" : "roster events subscribed", "channel",
                       MSG_IDENTITY_EVENTS_CHANNEL, NULL);
                subscribed_before = true;
                connect_backoff = 500;
                all_schools_due(pg);
                next_due_check = 0;
            } else {
                next_connect = now + connect_backoff;
                connect_backoff = connect_backoff * 2 > 10000 ? 10000 : connect_backoff * 2;
            }
        }
        if (sub != NULL) {
            if (!read_events(s, sub)) {
                kr_log(KR_LOG_WARN, "roster event subscription lost; reconnecting", NULL);
                redisFree(sub);
                sub = NULL;
                next_connect = kr_now_ms() + connect_backoff;
            }
        } else {
            wait_tick(s);
        }
        /* The groups identity told us about. */
        pending_group due[MAX_PENDING];
        size_t ndue;
        bool kicked, overflow;
        pthread_mutex_lock(&s->lock);
        ndue = s->npending;
        memcpy(due, s->pending, ndue * sizeof(due[0]));
        s->npending = 0;
        kicked = s->kicked;
        s->kicked = false;
        overflow = s->overflow;
        s->overflow = false;
        pthread_mutex_unlock(&s->lock);
        if (overflow) {
            all_schools_due(pg);
            kicked = true;
        }
        for (size_t i = 0; i < ndue && !atomic_load(&s->stop); i++) {
            kr_arena arena;
            kr_arena_init(&arena);
            if (msg_sync_group_now(pg, s->identity, s->events, &arena, due[i].school_id, due[i].group_id, NULL) == MSG_STORE_OK) {
                kr_counter_add(s->groups_synced, 1);
            } else {
                /* Identity or the database failed: the school's
                 * reconciliation retries soon. */
                kr_counter_add(s->sync_failed, 1);
                const char *params[] = {due[i].school_id};
                PGresult *r =
                    msg_sql(pg, "school due soon",
                            "UPDATE messaging.schools SET next_sync_at = least(next_sync_at, now() + interval '" RETRY_FAILED_S_TEXT
                            " seconds') WHERE school_id = $1",
                            1, params);
                if (r != NULL)
                    PQclear(r);
            }
            kr_arena_free(&arena);
        }
        now = kr_now_ms();
        if (kicked || now >= next_due_check) {
            reconcile_due(s, pg);
            next_due_check = now + 1000;
        }
        if (now >= next_sweep) {
            retention_sweep(s, pg);
            next_sweep = kr_now_ms() + (int64_t)s->sweep_s * 1000;
        }
    }
    if (sub != NULL)
        redisFree(sub);
    kr_pg_free(pg);
    return NULL;
}

msg_sync *msg_sync_start(const msg_sync_opts *opts, msg_identity *identity, msg_events *events)
{
    msg_sync *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    atomic_init(&s->stop, false);
    s->redis_url = opts->redis_url && opts->redis_url[0] ? strdup(opts->redis_url) : NULL;
    s->database_url = strdup(opts->database_url);
    if (s->database_url == NULL)
        abort();
    s->interval_s = opts->reconcile_interval_s;
    s->sweep_s = opts->sweep_interval_s;
    s->identity = identity;
    s->events = events;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->groups_synced =
        kr_metrics_counter("kreide_messaging_groups_synced_total", "Identity groups brought in line with their rooms", NULL);
    s->sync_failed = kr_metrics_counter("kreide_messaging_group_sync_failed_total",
                                        "Group or school syncs that failed and will be retried", NULL);
    s->swept = kr_metrics_counter("kreide_messaging_retention_deleted_events_total",
                                  "Events deleted because retention expired them", NULL);
    s->roster_events = kr_metrics_counter("kreide_messaging_roster_events_total", "Roster events received from identity", NULL);
    if (pthread_create(&s->thread, NULL, sync_main, s) != 0)
        abort();
    return s;
}

void msg_sync_kick(msg_sync *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    s->kicked = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void msg_sync_stop(msg_sync *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stop, true);
    msg_sync_kick(s);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s->redis_url);
    free(s->database_url);
    free(s);
}
