/* Announcing appended events on Redis pub/sub, for the gateways' realtime
 * fan-out (docs/messaging.md, "Realtime"). Publishing is best effort by
 * design: the event is committed in PostgreSQL, and a client that missed
 * the announcement catches up from the log by position. */
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kr_json.h"
#include "kr_log.h"
#include "kr_metrics.h"
#include "kr_redis.h"
#include "messaging.h"

#define REDIS_TIMEOUT_MS 500
#define MAX_CLIENTS 1024

struct st_msg_events_t {
    char *url; /* NULL: publishing is off */
    pthread_mutex_t lock;
    kr_redis *clients[MAX_CLIENTS];
    size_t n;
    kr_metric *published, *failed;
};

/* kr_redis is not thread-safe: each thread that publishes gets its own
 * client, registered here so msg_events_free can close it. */
static __thread kr_redis *tl_client;
static __thread const msg_events *tl_owner;

msg_events *msg_events_new(const char *redis_url)
{
    msg_events *ev = calloc(1, sizeof(*ev));
    if (ev == NULL)
        abort();
    pthread_mutex_init(&ev->lock, NULL);
    if (redis_url != NULL && redis_url[0] != '\0' && (ev->url = strdup(redis_url)) == NULL)
        abort();
    ev->published = kr_metrics_counter("kreide_messaging_events_published_total", "Log events announced on Redis", NULL);
    ev->failed =
        kr_metrics_counter("kreide_messaging_events_failed_total", "Log events that could not be announced on Redis", NULL);
    return ev;
}

bool msg_events_enabled(const msg_events *ev)
{
    return ev != NULL && ev->url != NULL;
}

void msg_events_free(msg_events *ev)
{
    if (ev == NULL)
        return;
    for (size_t i = 0; i < ev->n; i++)
        kr_redis_free(ev->clients[i]);
    pthread_mutex_destroy(&ev->lock);
    free(ev->url);
    free(ev);
}

static kr_redis *thread_client(msg_events *ev)
{
    if (tl_owner == ev && tl_client != NULL)
        return tl_client;
    kr_redis *r = kr_redis_new(ev->url, REDIS_TIMEOUT_MS);
    if (r == NULL)
        return NULL;
    pthread_mutex_lock(&ev->lock);
    if (ev->n == MAX_CLIENTS) {
        pthread_mutex_unlock(&ev->lock);
        kr_redis_free(r);
        return NULL;
    }
    ev->clients[ev->n++] = r;
    pthread_mutex_unlock(&ev->lock);
    tl_client = r;
    tl_owner = ev;
    return r;
}

/* One script publishes a whole batch: one command, one round trip, and
 * the messages reach every subscriber in this order, together. */
#define PUBLISH_ALL "for i = 1, #ARGV do redis.call('PUBLISH', KEYS[1], ARGV[i]) end return #ARGV"

/* Publishes `n` payloads (none NULL) in one round trip; `what` names them
 * in the log. */
static void publish_all(msg_events *ev, const char *what, const char *const *payloads, size_t n)
{
    if (n == 0)
        return;
    kr_redis *r = thread_client(ev);
    redisReply *reply = NULL;
    if (r != NULL && n == 1) {
        reply = kr_redis_command(r, KR_REDIS_ONCE, "PUBLISH %s %s", MSG_EVENTS_CHANNEL, payloads[0]);
    } else if (r != NULL) {
        const char **argv = malloc((n + 4) * sizeof(*argv));
        if (argv == NULL)
            abort();
        argv[0] = "EVAL", argv[1] = PUBLISH_ALL, argv[2] = "1", argv[3] = MSG_EVENTS_CHANNEL;
        memcpy(argv + 4, payloads, n * sizeof(*argv));
        reply = kr_redis_commandargv(r, KR_REDIS_ONCE, (int)(n + 4), argv, NULL);
        free(argv);
    }
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        kr_counter_add(ev->published, n);
    } else {
        kr_counter_add(ev->failed, n);
        const char *why = reply ? (reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply")
                          : r   ? kr_redis_errstr(r)
                                : "no Redis client";
        char count[24];
        snprintf(count, sizeof(count), "%zu", n);
        kr_log(KR_LOG_WARN, "event not announced", "kind", what, "events", count, "error", why, NULL);
    }
    if (reply != NULL)
        freeReplyObject(reply);
}

static void publish(msg_events *ev, const char *what, const char *payload)
{
    if (payload != NULL) {
        publish_all(ev, what, &payload, 1);
        return;
    }
    kr_counter_add(ev->failed, 1);
    kr_log(KR_LOG_WARN, "event not announced", "kind", what, "error", "no payload", NULL);
}

static json_t *id_array(char *const *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(ids[i]));
    return a;
}

/* Sets `key` of every object of the array `list` to false. */
static void clear_in_list(json_t *list, const char *key)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_object_get(v, key) != NULL)
            json_object_set_new(v, key, json_false());
    }
}

/* The event as no one in particular reads it: the reading's own reactions,
 * votes and confirmation are the reader's, not the audience's. */
static void strip_reader(json_t *event)
{
    json_t *m = json_object_get(event, "message");
    if (!json_is_object(m))
        return;
    clear_in_list(json_object_get(m, "reactions"), "mine");
    json_t *poll = json_object_get(m, "poll");
    if (json_is_object(poll))
        clear_in_list(json_object_get(poll, "options"), "mine");
    json_t *rs = json_object_get(m, "read_status");
    if (json_is_object(rs) && json_object_get(rs, "confirmed_by_me") != NULL)
        json_object_set_new(rs, "confirmed_by_me", json_false());
}

char *msg_event_json(const msg_appended *e, const Kreide__Messaging__Event *event, char *const *members, size_t n)
{
    if (event == NULL)
        return NULL;
    json_t *ev = kr_json_encode_obj(&event->base);
    if (ev == NULL)
        return NULL;
    strip_reader(ev);
    char pos[24];
    snprintf(pos, sizeof(pos), "%" PRId64, e->position);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o}", "position", pos, "event_id", e->id, "room_id",
                          e->room_id, "school_id", e->school_id, "kind", e->kind, "sender_id", e->sender, "created_at",
                          e->created_at, "members", id_array(members, n), "event", ev);
    if (o == NULL)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

void msg_events_publish(msg_events *ev, const msg_outbox *box, Kreide__Messaging__Event *const *events)
{
    if (!msg_events_enabled(ev) || box->n == 0)
        return;
    char **payloads = calloc(box->n, sizeof(*payloads));
    if (payloads == NULL)
        abort();
    size_t k = 0;
    for (size_t i = 0; i < box->n; i++) {
        const msg_appended *e = &box->items[i];
        const msg_audience *au = msg_outbox_audience(box, e->room_id);
        char *payload = au != NULL && events != NULL ? msg_event_json(e, events[i], au->ids, au->n) : NULL;
        if (payload == NULL) {
            /* Not announced; the gateways take it for lost (docs/realtime.md). */
            char pos[24];
            snprintf(pos, sizeof(pos), "%" PRId64, e->position);
            kr_counter_add(ev->failed, 1);
            kr_log(KR_LOG_ERROR, "event not announced: not read back", "position", pos, "kind", e->kind, NULL);
            continue;
        }
        payloads[k++] = payload;
    }
    publish_all(ev, box->items[0].kind, (const char *const *)payloads, k);
    for (size_t i = 0; i < k; i++)
        free(payloads[i]);
    free(payloads);
}

void msg_events_publish_sends(msg_events *ev, msg_send_row *const *rows, size_t n)
{
    if (!msg_events_enabled(ev) || n == 0)
        return;
    char **payloads = calloc(n, sizeof(*payloads));
    if (payloads == NULL)
        abort();
    kr_arena arena;
    kr_arena_init(&arena);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const msg_send_row *row = rows[i];
        msg_appended e;
        msg_send_appended(row, &e);
        msg_outbox box = {0};
        msg_outbox_add(&box, &e);
        msg_outbox_set_audience(&box, e.room_id, row->audience);
        const msg_audience *au = msg_outbox_audience(&box, e.room_id);
        const Kreide__Messaging__Event *event = msg_sent_event(&arena, &e, row, row->mention_ids, row->n_mention_ids,
                                                               row->announcement, msg_audience_but(row->audience, row->sender));
        char *payload = msg_event_json(&e, event, au->ids, au->n);
        msg_outbox_free(&box);
        if (payload == NULL) {
            char pos[24];
            snprintf(pos, sizeof(pos), "%" PRId64, e.position);
            kr_counter_add(ev->failed, 1);
            kr_log(KR_LOG_ERROR, "event not announced", "position", pos, "kind", e.kind, NULL);
            continue;
        }
        payloads[k++] = payload;
    }
    publish_all(ev, "message", (const char *const *)payloads, k);
    for (size_t i = 0; i < k; i++)
        free(payloads[i]);
    free(payloads);
    kr_arena_free(&arena);
}

void msg_events_notify(msg_events *ev, const char *kind, const char *school_id, const char *room_id, const char *user_id,
                       const char *extra, char *const *user_ids, size_t n)
{
    if (!msg_events_enabled(ev))
        return;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o}", "kind", kind, "school_id", school_id, "room_id", room_id, "user_id", user_id,
                          "members", id_array(user_ids, n));
    if (o == NULL)
        return;
    if (extra != NULL) {
        json_t *x = json_loads(extra, 0, NULL);
        if (json_is_object(x))
            json_object_update(o, x);
        json_decref(x);
    }
    char *payload = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    publish(ev, kind, payload);
    free(payload);
}
