/* Roster events on Redis pub/sub. Publishing is best effort by design: the
 * change is already committed in PostgreSQL, so a Redis failure is logged and
 * counted, never turned into a failed RPC (docs/redis.md: what Redis holds
 * may be lost; followers resynchronise from the API). */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "identity.h"
#include "kr_log.h"
#include "kr_metrics.h"
#include "kr_redis.h"

#define REDIS_TIMEOUT_MS 500
#define MAX_CLIENTS 1024

struct st_ident_events_t {
    char *url; /* NULL: publishing is off */
    char *channel;
    pthread_mutex_t lock; /* guards clients/n */
    kr_redis *clients[MAX_CLIENTS];
    size_t n;
    kr_metric *published, *failed;
};

/* kr_redis is not thread-safe: each worker thread gets its own client, made
 * on its first event and registered here so ident_events_free can close it
 * once the workers are joined. */
static __thread kr_redis *tl_client;
static __thread const ident_events *tl_owner;

ident_events *ident_events_new(const char *redis_url, const char *channel)
{
    ident_events *ev = calloc(1, sizeof(*ev));
    if (ev == NULL)
        abort();
    pthread_mutex_init(&ev->lock, NULL);
    ev->channel = strdup(channel);
    if (redis_url != NULL && redis_url[0] != '\0')
        ev->url = strdup(redis_url);
    if (ev->channel == NULL || (redis_url != NULL && redis_url[0] != '\0' && ev->url == NULL))
        abort();
    ev->published = kr_metrics_counter("kreide_identity_events_published_total", "Roster events published to Redis", NULL);
    ev->failed =
        kr_metrics_counter("kreide_identity_events_failed_total", "Roster events that could not be published to Redis", NULL);
    return ev;
}

bool ident_events_enabled(const ident_events *ev)
{
    return ev != NULL && ev->url != NULL;
}

void ident_events_free(ident_events *ev)
{
    if (ev == NULL)
        return;
    for (size_t i = 0; i < ev->n; i++)
        kr_redis_free(ev->clients[i]);
    pthread_mutex_destroy(&ev->lock);
    free(ev->url);
    free(ev->channel);
    free(ev);
}

static kr_redis *thread_client(ident_events *ev)
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

char *ident_event_json(const ident_event *e, int64_t at_ms)
{
    time_t secs = (time_t)(at_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char at[40];
    size_t n = strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(at + n, sizeof(at) - n, ".%03dZ", (int)(at_ms % 1000));
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", e->type, "school_id", e->school_id, "group_id",
                          e->group_id ? e->group_id : "", "user_id", e->user_id ? e->user_id : "", "role", e->role ? e->role : "",
                          "at", at);
    if (o == NULL)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

void ident_events_publish(ident_events *ev, const ident_event *e)
{
    if (!ident_events_enabled(ev))
        return;
    char *payload = ident_event_json(e, kr_now_ms());
    kr_redis *r = payload ? thread_client(ev) : NULL;
    redisReply *reply = r ? kr_redis_command(r, KR_REDIS_ONCE, "PUBLISH %s %s", ev->channel, payload) : NULL;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        kr_counter_add(ev->published, 1);
    } else {
        kr_counter_add(ev->failed, 1);
        const char *why = reply ? (reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply")
                          : r   ? kr_redis_errstr(r)
                                : "no Redis client";
        kr_log(KR_LOG_WARN, "event not published", "type", e->type, "error", why, NULL);
    }
    if (reply != NULL)
        freeReplyObject(reply);
    free(payload);
}
