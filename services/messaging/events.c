/* Announcing appended events on Redis pub/sub, for the gateways' realtime
 * fan-out (docs/messaging.md, "Realtime"). Publishing is best effort by
 * design: the event is committed in PostgreSQL, and a client that missed
 * the announcement catches up from the log by position. */
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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

static void publish(msg_events *ev, const char *what, const char *payload)
{
    kr_redis *r = payload ? thread_client(ev) : NULL;
    redisReply *reply = r ? kr_redis_command(r, KR_REDIS_ONCE, "PUBLISH %s %s", MSG_EVENTS_CHANNEL, payload) : NULL;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        kr_counter_add(ev->published, 1);
    } else {
        kr_counter_add(ev->failed, 1);
        const char *why = reply ? (reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply")
                          : r   ? kr_redis_errstr(r)
                                : "no Redis client";
        kr_log(KR_LOG_WARN, "event not announced", "kind", what, "error", why, NULL);
    }
    if (reply != NULL)
        freeReplyObject(reply);
}

static json_t *id_array(char *const *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(ids[i]));
    return a;
}

char *msg_event_json(const msg_appended *e, char *const *members, size_t n)
{
    char pos[24];
    snprintf(pos, sizeof(pos), "%" PRId64, e->position);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "position", pos, "event_id", e->id, "room_id", e->room_id,
                          "school_id", e->school_id, "kind", e->kind, "sender_id", e->sender, "created_at", e->created_at,
                          "members", id_array(members, n));
    if (o == NULL)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

void msg_events_publish(msg_events *ev, kr_pg *pg, const msg_appended *items, size_t n)
{
    if (!msg_events_enabled(ev) || n == 0)
        return;
    kr_arena arena;
    kr_arena_init(&arena);
    const char *room = NULL;
    char **members = NULL;
    size_t nmembers = 0;
    for (size_t i = 0; i < n; i++) {
        const msg_appended *e = &items[i];
        /* Events come grouped by room; the audience is read once per room
         * and includes whoever left with one of these events. */
        if (room == NULL || strcmp(room, e->room_id) != 0) {
            room = e->room_id;
            if (msg_store_room_audience(pg, &arena, room, items[i].position, &members, &nmembers) != MSG_STORE_OK) {
                kr_counter_add(ev->failed, 1);
                members = NULL;
                nmembers = 0;
                continue;
            }
        }
        char *payload = msg_event_json(e, members, nmembers);
        publish(ev, e->kind, payload);
        free(payload);
    }
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
