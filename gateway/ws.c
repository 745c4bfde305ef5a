/*
 * The realtime hub: WebSockets at /api/v1/ws (docs/realtime.md).
 *
 * Every event loop has one hub. It hears messaging's announcements on Redis,
 * puts log events back into position order (a sequencer that waits a short
 * while for a missing position), and queues each event's frame on the
 * sockets of the members it has. A socket starts by replaying the caller's
 * stream from its `after` through messaging's ListEvents; live events that
 * arrive meanwhile wait on the socket and are sent after the replay, without
 * the ones it sent already.
 *
 * The WebSocket framing is libwslay's (RFC 6455) on top of h2o's HTTP/1
 * upgrade. A log event's announcement is read as text (ws_announce.h): its
 * event becomes one frame, shared by the sockets it goes to. Written frames
 * are gathered into one buffer per socket and sent with one write per loop
 * iteration (a batch's announcements arrive in one read, so its events go
 * in one write); event frames go straight into that buffer when nothing
 * waits in wslay. Buffers
 * are released when a socket is idle (a second after its last event), so an
 * idle socket costs its wslay context and a few hundred bytes.
 */
#include <inttypes.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "gateway.h"
#include "h2o/http1.h"
#include "h2o/websocket.h"
#include "identity.pb-c.h"
#include "kr_id.h"
#include "kr_json.h"
#include "kr_log.h"
#include "kr_metrics.h"
#include "messaging.pb-c.h"
#include "oidc.h"
#include "ws_announce.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 section 1.3 */
#define WS_SUBPROTOCOL "kreide.v1"
#define WS_BEARER_PREFIX "kreide.bearer."
#define WS_TICK_MS 5000             /* how often each socket's clock is looked at */
#define WS_PING_EVERY_MS 25000      /* a ping after this long without one */
#define WS_SILENT_CLOSE_MS 60000    /* nothing heard for this long: gone */
#define WS_CLOSE_WAIT_MS 5000       /* the peer's answer to our close */
#define WS_MAX_QUEUED (1u << 20)    /* unsent bytes before a reader counts as stalled */
#define WS_MAX_PENDING 20000        /* live events waiting for a replay to end */
#define WS_MAX_FRAME (64u * 1024)   /* largest message a client may send */
#define WS_WRITE_BATCH (64u * 1024) /* bytes gathered into one write */
#define WS_MAX_INFLIGHT 32          /* calls one socket may have running */
#define WS_REPLAY_PAGE 500
#define WS_MAX_HELD 100000 /* out-of-order events held before giving up on a gap */
#define WS_NO_REPLAY INT64_C(9223372036854775806)
/* A socket that got event frames this recently keeps its output buffer
 * when idle, for the next ones; others give it back at once. */
#define WS_KEEP_BUFFER_MS 1000

#define CLOSE_GOING_AWAY 1001
#define CLOSE_UNSUPPORTED 1003
#define CLOSE_INTERNAL 1011
#define CLOSE_TRY_AGAIN 1013
#define CLOSE_CREDENTIAL 4001
#define CLOSE_TOO_SLOW 4008

/* ----------------------------------------------------------------- types */

/* One frame shared by the sockets it goes to. */
typedef struct {
    size_t refs;
    int64_t position; /* 0 for notices outside the log */
    size_t len;
    char data[];
} ws_frame;

typedef enum { WS_REPLAYING, WS_LIVE, WS_CLOSING } ws_state;

typedef struct st_ws_conn_t ws_conn;
struct st_ws_conn_t {
    struct st_gw_ws_hub_t *hub;
    h2o_socket_t *sock;
    wslay_event_context_ptr ws;
    ws_state state;
    Kreide__Caller *caller; /* unpacked copy, owned */
    char *jti;              /* the token's id, for revocation; NULL for a cookie */
    int64_t expires_at;     /* Unix seconds the credential ends */
    int64_t after;          /* the replay's position */
    int64_t last_sent;      /* the newest event position written to this socket */
    /* Live events that arrived during the replay. */
    ws_frame **pending;
    size_t npending, cappending;
    /* Gathered output and whether a write is on its way. */
    char *out;
    size_t outlen, outcap;
    bool writing, dirty, dead;
    uint64_t last_event; /* when an event frame was last queued */
    unsigned inflight;   /* calls whose answers are still to come */
    uint64_t last_heard, last_ping, close_started;
    ws_conn *next_of_user; /* the hub's index chain */
    ws_conn *next_dirty;
    h2o_linklist_t all;
    h2o_timeout_entry_t tick;
};

typedef struct {
    ws_conn *first;
    char user[40];
} ws_slot;

typedef struct st_gw_ws_hub_t {
    gw_thread *thread;
    h2o_linklist_t conns;
    size_t nconns;
    /* user id -> that user's sockets (open addressing, grows) */
    ws_slot *slots;
    size_t nslots, nused;
    /* the sequencer */
    int64_t next;    /* the position expected next; 0 before the first */
    ws_frame **held; /* min-heap by position */
    size_t nheld, capheld;
    h2o_timeout_t gap_timeout;
    h2o_timeout_entry_t gap_entry;
    bool subscribed_before;
    /* sockets with frames to write once this loop iteration's work is done */
    ws_conn *dirty;
    h2o_timeout_entry_t flush_entry;
    h2o_timeout_t tick_timeout;
} gw_ws_hub;

static struct {
    kr_metric *sockets, *delivered, *gaps, *closed_slow;
    char origin[256]; /* the issuer's origin, for cookie sockets */
} G;

static void conn_flush(ws_conn *c);
static void conn_close(ws_conn *c, uint16_t code, const char *reason);
static void conn_destroy(ws_conn *c);

static uint64_t loop_now(gw_ws_hub *h)
{
    return h2o_now(h->thread->super.loop);
}

static gw_service *service_named(const char *name)
{
    for (size_t i = 0; i < gw.nservices; i++)
        if (strcmp(gw.services[i].name, name) == 0)
            return &gw.services[i];
    abort(); /* main.c configures both */
}

/* ---------------------------------------------------------------- frames */

static ws_frame *frame_new(const char *data, size_t len, int64_t position)
{
    ws_frame *f = malloc(sizeof(*f) + len + 1);
    if (f == NULL)
        abort();
    f->refs = 1;
    f->position = position;
    f->len = len;
    memcpy(f->data, data, len);
    f->data[len] = '\0';
    return f;
}

static void frame_unref(ws_frame *f)
{
    if (f != NULL && --f->refs == 0)
        free(f);
}

/* Dumps `o` (consumed) as a frame. */
static ws_frame *frame_of_json(json_t *o, int64_t position)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s == NULL)
        abort();
    ws_frame *f = frame_new(s, strlen(s), position);
    free(s);
    return f;
}

/* ----------------------------------------------------------- the index */

static size_t hash_user(const char *s)
{
    size_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (unsigned char)(*s | 0x20)) * 1099511628211u;
    return h;
}

static ws_slot *slot_find(gw_ws_hub *h, const char *user, bool create);

static void index_grow(gw_ws_hub *h)
{
    ws_slot *old = h->slots;
    size_t n = h->nslots;
    h->nslots = n ? n * 2 : 1024;
    h->slots = calloc(h->nslots, sizeof(ws_slot));
    if (h->slots == NULL)
        abort();
    h->nused = 0;
    for (size_t i = 0; i < n; i++) {
        if (old[i].first != NULL) {
            ws_slot *s = slot_find(h, old[i].user, true);
            s->first = old[i].first;
        }
    }
    free(old);
}

/* The slot of `user`; with `create`, a new empty one when absent. Slots
 * whose list became empty stay as tombstones until the next growth. */
static ws_slot *slot_find(gw_ws_hub *h, const char *user, bool create)
{
    if (h->nslots == 0) {
        if (!create)
            return NULL;
        index_grow(h);
    }
    if (create && (h->nused + 1) * 4 > h->nslots * 3)
        index_grow(h);
    size_t mask = h->nslots - 1;
    for (size_t i = hash_user(user) & mask;; i = (i + 1) & mask) {
        ws_slot *s = &h->slots[i];
        if (s->user[0] == '\0') {
            if (!create)
                return NULL;
            snprintf(s->user, sizeof(s->user), "%s", user);
            h->nused++;
            return s;
        }
        if (strcasecmp(s->user, user) == 0)
            return s;
    }
}

static void index_add(ws_conn *c)
{
    ws_slot *s = slot_find(c->hub, c->caller->user_id, true);
    c->next_of_user = s->first;
    s->first = c;
}

static void index_remove(ws_conn *c)
{
    ws_slot *s = slot_find(c->hub, c->caller->user_id, false);
    if (s == NULL)
        return;
    for (ws_conn **p = &s->first; *p != NULL; p = &(*p)->next_of_user) {
        if (*p == c) {
            *p = c->next_of_user;
            break;
        }
    }
}

/* ------------------------------------------------------------ the socket */

static void mark_dirty(ws_conn *c)
{
    if (c->dirty || c->dead)
        return;
    c->dirty = true;
    c->next_dirty = c->hub->dirty;
    c->hub->dirty = c;
    if (!h2o_timeout_is_linked(&c->hub->flush_entry))
        h2o_timeout_link(c->hub->thread->super.loop, &c->hub->thread->super.zero_timeout, &c->hub->flush_entry);
}

static void queue_text(ws_conn *c, const char *data, size_t len)
{
    if (c->state == WS_CLOSING || c->dead)
        return;
    struct wslay_event_msg m = {.opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)data, .msg_length = len};
    if (wslay_event_queue_msg(c->ws, &m) != 0)
        return;
    if (wslay_event_get_queued_msg_length(c->ws) > WS_MAX_QUEUED) {
        kr_counter_add(G.closed_slow, 1);
        conn_close(c, CLOSE_TOO_SLOW, "too slow: reconnect with after");
        return;
    }
    mark_dirty(c);
}

/* Grows the output buffer to hold `more` bytes after what it holds. */
static void out_reserve(ws_conn *c, size_t more)
{
    if (c->outlen + more <= c->outcap)
        return;
    size_t cap = c->outcap ? c->outcap : 4096;
    while (cap < c->outlen + more)
        cap *= 2;
    c->out = realloc(c->out, cap);
    if (c->out == NULL)
        abort();
    c->outcap = cap;
}

/* Queues an event frame. When wslay has nothing waiting and no write is
 * on its way, the frame (RFC 6455 section 5.2: FIN, text, unmasked from a
 * server) goes straight into the output buffer after what is gathered
 * there, which keeps the order of everything written and spares wslay's
 * copy of the message; otherwise it queues behind the rest in wslay. */
static void queue_event(ws_conn *c, const char *data, size_t len)
{
    if (c->state == WS_CLOSING || c->dead)
        return;
    c->last_event = loop_now(c->hub);
    uint8_t hdr[10];
    size_t hl = 2;
    hdr[0] = 0x81;
    if (len < 126) {
        hdr[1] = (uint8_t)len;
    } else if (len <= 0xffff) {
        hdr[1] = 126;
        hdr[2] = (uint8_t)(len >> 8);
        hdr[3] = (uint8_t)len;
        hl = 4;
    } else {
        hdr[1] = 127;
        for (int i = 0; i < 8; i++)
            hdr[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    if (c->writing || wslay_event_want_write(c->ws) || c->outlen + hl + len > WS_WRITE_BATCH) {
        queue_text(c, data, len);
        return;
    }
    out_reserve(c, hl + len);
    memcpy(c->out + c->outlen, hdr, hl);
    memcpy(c->out + c->outlen + hl, data, len);
    c->outlen += hl + len;
    mark_dirty(c);
}

static void queue_json(ws_conn *c, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s == NULL)
        abort();
    queue_text(c, s, strlen(s));
    free(s);
}

/* An event frame, unless this socket has it already. */
static void deliver(ws_conn *c, ws_frame *f)
{
    if (c->dead || c->state == WS_CLOSING)
        return;
    if (c->state == WS_REPLAYING) {
        if (c->npending == WS_MAX_PENDING) {
            kr_counter_add(G.closed_slow, 1);
            conn_close(c, CLOSE_TOO_SLOW, "too many events during the replay: reconnect with after");
            return;
        }
        if (c->npending == c->cappending) {
            c->cappending = c->cappending ? c->cappending * 2 : 16;
            c->pending = realloc(c->pending, c->cappending * sizeof(*c->pending));
            if (c->pending == NULL)
                abort();
        }
        f->refs++;
        c->pending[c->npending++] = f;
        return;
    }
    if (f->position != 0) {
        if (f->position <= c->last_sent)
            return;
        c->last_sent = f->position;
    }
    kr_counter_add(G.delivered, 1);
    queue_event(c, f->data, f->len);
}

static ssize_t on_wslay_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *arg)
{
    (void)flags;
    ws_conn *c = arg;
    h2o_buffer_t *in = c->sock->input;
    if (in->size == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > in->size)
        len = in->size;
    memcpy(buf, in->bytes, len);
    h2o_buffer_consume(&c->sock->input, len);
    return (ssize_t)len;
}

/* Gathers what wslay writes; the write itself happens in conn_flush. */
static ssize_t on_wslay_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *arg)
{
    (void)flags;
    ws_conn *c = arg;
    if (c->outlen >= WS_WRITE_BATCH) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    out_reserve(c, len);
    memcpy(c->out + c->outlen, data, len);
    c->outlen += len;
    return (ssize_t)len;
}

static void on_write_done(h2o_socket_t *sock, const char *err)
{
    ws_conn *c = sock->data;
    c->writing = false;
    c->outlen = 0;
    if (err != NULL) {
        conn_destroy(c);
        return;
    }
    conn_flush(c);
}

/* Writes what wslay has queued, in one write; closes the socket once the
 * closing handshake is over. */
static void conn_flush(ws_conn *c)
{
    if (c->dead || c->writing)
        return;
    if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
        conn_destroy(c);
        return;
    }
    if (c->outlen > 0) {
        h2o_iovec_t buf = h2o_iovec_init(c->out, c->outlen);
        c->writing = true;
        h2o_socket_write(c->sock, &buf, 1, on_write_done);
        return;
    }
    /* Idle: give the output buffer back, unless events keep coming. */
    if (loop_now(c->hub) - c->last_event >= WS_KEEP_BUFFER_MS || c->last_event == 0) {
        free(c->out);
        c->out = NULL;
        c->outcap = 0;
    }
    if (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws))
        conn_destroy(c);
}

static void on_flush(h2o_timeout_entry_t *entry)
{
    gw_ws_hub *h = H2O_STRUCT_FROM_MEMBER(gw_ws_hub, flush_entry, entry);
    ws_conn *list = h->dirty;
    h->dirty = NULL;
    while (list != NULL) {
        ws_conn *c = list;
        list = c->next_dirty;
        c->dirty = false;
        conn_flush(c);
    }
}

static void conn_close(ws_conn *c, uint16_t code, const char *reason)
{
    if (c->dead || c->state == WS_CLOSING)
        return;
    c->state = WS_CLOSING;
    c->close_started = loop_now(c->hub);
    wslay_event_queue_close(c->ws, code, (const uint8_t *)reason, strlen(reason));
    mark_dirty(c);
}

static void conn_free(ws_conn *c)
{
    for (size_t i = 0; i < c->npending; i++)
        frame_unref(c->pending[i]);
    free(c->pending);
    free(c->out);
    free(c->jti);
    if (c->caller != NULL)
        kreide__caller__free_unpacked(c->caller, NULL);
    free(c);
}

/* Ends the socket now; the struct lives on while calls are in flight. */
static void conn_destroy(ws_conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    gw_ws_hub *h = c->hub;
    index_remove(c);
    h2o_linklist_unlink(&c->all);
    h->nconns--;
    kr_gauge_add(G.sockets, -1);
    if (h2o_timeout_is_linked(&c->tick))
        h2o_timeout_unlink(&c->tick);
    if (c->dirty) {
        for (ws_conn **p = &h->dirty; *p != NULL; p = &(*p)->next_dirty) {
            if (*p == c) {
                *p = c->next_dirty;
                break;
            }
        }
        c->dirty = false;
    }
    h2o_socket_close(c->sock);
    c->sock = NULL;
    wslay_event_context_free(c->ws);
    c->ws = NULL;
    if (c->inflight == 0)
        conn_free(c);
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    ws_conn *c = H2O_STRUCT_FROM_MEMBER(ws_conn, tick, entry);
    gw_ws_hub *h = c->hub;
    uint64_t now = loop_now(h);
    if (c->state == WS_CLOSING) {
        if (now - c->close_started >= WS_CLOSE_WAIT_MS) {
            conn_destroy(c);
            return;
        }
    } else if (now - c->last_heard >= WS_SILENT_CLOSE_MS) {
        conn_destroy(c);
        return;
    } else if (c->expires_at != 0 && (int64_t)(kr_now_ms() / 1000) >= c->expires_at) {
        conn_close(c, CLOSE_CREDENTIAL, "the credential expired: connect again with a fresh one");
    } else if (now - c->last_ping >= WS_PING_EVERY_MS) {
        struct wslay_event_msg m = {.opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
        if (wslay_event_queue_msg(c->ws, &m) == 0)
            mark_dirty(c);
        c->last_ping = now;
    }
    /* A buffer kept for events that stopped coming. */
    if (!c->dead && !c->writing && c->outlen == 0 && c->out != NULL && now - c->last_event >= WS_KEEP_BUFFER_MS) {
        free(c->out);
        c->out = NULL;
        c->outcap = 0;
    }
    h2o_timeout_link(h->thread->super.loop, &h->tick_timeout, &c->tick);
}

/* ------------------------------------------------------- calls from a socket */

typedef enum { CALL_REPLAY, CALL_SEND, CALL_TYPING, CALL_READ } call_kind;

typedef struct {
    ws_conn *conn;
    call_kind kind;
    json_t *ref; /* the client's ref, or NULL */
    const ProtobufCMessageDescriptor *output;
} ws_call;

static void reply_error(ws_conn *c, json_t *ref, int status, const char *code, const char *message, const char *field)
{
    if (ref == NULL)
        return;
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (field != NULL && field[0] != '\0')
        json_object_set_new(err, "field", json_string(field));
    queue_json(c, json_pack("{s:s, s:O, s:i, s:o}", "type", "reply", "ref", ref, "status", status, "error", err));
}

static void on_call_done(void *arg, kr_rpc_result *res);

static void call_messaging(ws_conn *c, call_kind kind, json_t *ref, const char *method, const ProtobufCMessage *in,
                           const ProtobufCMessageDescriptor *output)
{
    size_t n = protobuf_c_message_get_packed_size(in);
    uint8_t *body = malloc(n ? n : 1);
    if (body == NULL)
        abort();
    protobuf_c_message_pack(in, body);
    char full[128];
    snprintf(full, sizeof(full), "kreide.messaging.Messaging/%s", method);
    kr_uuid_str rid;
    kr_uuid7_new(&rid);
    kr_rpc_request rq = {
        .method = full,
        .request_id = rid.s,
        .deadline_ms = kr_now_ms() + gw.rpc_timeout_ms,
        .caller = c->caller,
        .body = body,
        .body_len = n,
    };
    ws_call *call = calloc(1, sizeof(*call));
    if (call == NULL)
        abort();
    call->conn = c;
    call->kind = kind;
    call->ref = ref != NULL ? json_incref(ref) : NULL;
    call->output = output;
    c->inflight++;
    kr_rpc_h2o_call(c->hub->thread->rpc, service_named("messaging")->client, &rq, on_call_done, call);
    free(body);
}

static void replay_page(ws_conn *c)
{
    Kreide__Messaging__ListEventsRequest in = KREIDE__MESSAGING__LIST_EVENTS_REQUEST__INIT;
    in.after = c->after;
    in.limit = c->after == WS_NO_REPLAY ? 1 : WS_REPLAY_PAGE;
    call_messaging(c, CALL_REPLAY, NULL, "ListEvents", &in.base, &kreide__messaging__list_events_reply__descriptor);
}

static void go_live(ws_conn *c)
{
    c->state = WS_LIVE;
    for (size_t i = 0; i < c->npending; i++) {
        deliver(c, c->pending[i]);
        frame_unref(c->pending[i]);
    }
    free(c->pending);
    c->pending = NULL;
    c->npending = c->cappending = 0;
    char pos[24];
    snprintf(pos, sizeof(pos), "%" PRId64, c->last_sent);
    queue_json(c, json_pack("{s:s, s:s}", "type", "ready", "position", pos));
}

static void on_replayed(ws_conn *c, const ProtobufCMessage *out)
{
    const Kreide__Messaging__ListEventsReply *r = (const Kreide__Messaging__ListEventsReply *)out;
    if (c->after == WS_NO_REPLAY) {
        c->last_sent = r->head;
        go_live(c);
        return;
    }
    for (size_t i = 0; i < r->n_events; i++) {
        const Kreide__Messaging__Event *e = r->events[i];
        if (e->position <= c->last_sent)
            continue;
        char *ev = kr_json_encode(&e->base, NULL);
        json_t *obj = ev ? json_loads(ev, 0, NULL) : NULL;
        free(ev);
        if (obj == NULL) {
            conn_close(c, CLOSE_INTERNAL, "an event could not be written");
            return;
        }
        c->last_sent = e->position;
        kr_counter_add(G.delivered, 1);
        queue_json(c, json_pack("{s:s, s:o}", "type", "event", "event", obj));
        if (c->state == WS_CLOSING)
            return;
    }
    if (r->more && r->n_events > 0) {
        c->after = c->last_sent;
        replay_page(c);
        return;
    }
    go_live(c);
}

static void on_call_done(void *arg, kr_rpc_result *res)
{
    ws_call *call = arg;
    ws_conn *c = call->conn;
    c->inflight--;
    if (c->dead) {
        if (c->inflight == 0)
            conn_free(c);
        goto Done;
    }
    if (res->status != KREIDE__STATUS__OK) {
        if (call->kind == CALL_REPLAY) {
            bool later = res->status == KREIDE__STATUS__UNAVAILABLE || res->status == KREIDE__STATUS__DEADLINE_EXCEEDED;
            kr_log(KR_LOG_WARN, "socket replay failed", "error", res->error_code, "message", res->message, NULL);
            conn_close(c, later ? CLOSE_TRY_AGAIN : CLOSE_INTERNAL, later ? "messaging is unavailable" : "the replay failed");
        } else {
            reply_error(c, call->ref, kr_rpc_http_status(res->status), res->error_code, res->message, res->field);
        }
        goto Done;
    }
    ProtobufCMessage *out = protobuf_c_message_unpack(call->output, NULL, res->body_len, res->body);
    if (out == NULL) {
        if (call->kind == CALL_REPLAY)
            conn_close(c, CLOSE_INTERNAL, "messaging sent a reply that does not decode");
        else
            reply_error(c, call->ref, 502, "gateway.bad_reply", "the service sent a reply that does not decode", NULL);
        goto Done;
    }
    if (call->kind == CALL_REPLAY) {
        on_replayed(c, out);
    } else if (call->ref != NULL) {
        char *body = kr_json_encode(out, NULL);
        json_t *obj = body ? json_loads(body, 0, NULL) : NULL;
        free(body);
        if (obj == NULL)
            reply_error(c, call->ref, 500, "gateway.encode_failed", "the reply cannot be written as JSON", NULL);
        else
            queue_json(c, json_pack("{s:s, s:O, s:i, s:o}", "type", "reply", "ref", call->ref, "status",
                                    call->kind == CALL_SEND ? 201 : 200, "body", obj));
    }
    protobuf_c_message_free_unpacked(out, NULL);
Done:
    json_decref(call->ref);
    free(call);
    kr_rpc_result_free(res);
}

/* A client frame: {"type": ..., "ref": ..., fields of the call}. */
static void on_client_text(ws_conn *c, const uint8_t *data, size_t len)
{
    json_error_t jerr;
    json_t *o = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(o)) {
        json_decref(o);
        return; /* nothing to answer to */
    }
    json_t *ref = json_object_get(o, "ref");
    if (ref != NULL && !json_is_string(ref) && !json_is_integer(ref))
        ref = NULL;
    json_incref(ref);
    json_t *type_value = json_incref(json_object_get(o, "type"));
    const char *type = json_string_value(type_value);
    json_object_del(o, "type");
    json_object_del(o, "ref");
    const ProtobufCMessageDescriptor *in_desc = NULL, *out_desc = NULL;
    const char *method = NULL;
    call_kind kind = CALL_SEND;
    if (type != NULL && strcmp(type, "ping") == 0) {
        json_t *pong = json_pack("{s:s}", "type", "pong");
        if (ref != NULL)
            json_object_set(pong, "ref", ref);
        queue_json(c, pong);
        goto Done;
    } else if (type != NULL && strcmp(type, "send") == 0) {
        in_desc = &kreide__messaging__send_message_request__descriptor;
        out_desc = &kreide__messaging__event__descriptor;
        method = "SendMessage";
        kind = CALL_SEND;
    } else if (type != NULL && strcmp(type, "typing") == 0) {
        in_desc = &kreide__messaging__typing_request__descriptor;
        out_desc = &kreide__empty__descriptor;
        method = "SetTyping";
        kind = CALL_TYPING;
    } else if (type != NULL && strcmp(type, "read") == 0) {
        in_desc = &kreide__messaging__mark_read_request__descriptor;
        out_desc = &kreide__messaging__mark_read_reply__descriptor;
        method = "MarkRead";
        kind = CALL_READ;
    } else {
        reply_error(c, ref, 400, "ws.bad_frame", "unknown frame type: expected send, typing, read or ping", "type");
        goto Done;
    }
    if (c->state != WS_LIVE && c->state != WS_REPLAYING)
        goto Done;
    if (c->inflight >= WS_MAX_INFLIGHT) {
        reply_error(c, ref, 429, "ws.too_many", "too many calls at once on this socket: wait for their replies", NULL);
        goto Done;
    }
    kr_json_error err;
    ProtobufCMessage *in = kr_json_decode_obj(in_desc, o, &err);
    if (in == NULL) {
        reply_error(c, ref, 400, "request.invalid", err.message, err.field);
        goto Done;
    }
    /* Without a ref nothing is answered, not even a failure. */
    call_messaging(c, kind, ref, method, in, out_desc);
    protobuf_c_message_free_unpacked(in, NULL);
Done:
    json_decref(type_value);
    json_decref(ref);
    json_decref(o);
}

static void on_wslay_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *data)
{
    (void)ctx;
    ws_conn *c = data;
    c->last_heard = loop_now(c->hub);
    if (arg->opcode == WSLAY_TEXT_FRAME)
        on_client_text(c, arg->msg, arg->msg_length);
    else if (arg->opcode == WSLAY_BINARY_FRAME)
        conn_close(c, CLOSE_UNSUPPORTED, "binary frames are not understood");
    else if (arg->opcode == WSLAY_CONNECTION_CLOSE && c->state != WS_CLOSING) {
        c->state = WS_CLOSING; /* wslay answers the close itself */
        c->close_started = loop_now(c->hub);
    }
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    ws_conn *c = sock->data;
    if (err != NULL) {
        conn_destroy(c);
        return;
    }
    c->last_heard = loop_now(c->hub);
    if (wslay_event_recv(c->ws) != 0) {
        conn_destroy(c);
        return;
    }
    if (c->dead)
        return;
    /* Give the read buffer back while nothing is in it. */
    if (sock->input->size == 0) {
        h2o_buffer_dispose(&sock->input);
        h2o_buffer_init(&sock->input, &h2o_socket_buffer_prototype);
    }
    if (!wslay_event_want_read(c->ws))
        h2o_socket_read_stop(sock);
    conn_flush(c);
}

/* ------------------------------------------------------------- upgrading */

typedef struct {
    gw_thread *thread;
    Kreide__Caller *caller; /* owned until handed to the socket */
    char *jti;
    int64_t expires_at, after;
    /* the cookie path's state */
    h2o_req_t *req;
    struct st_ws_guard_t *guard;
    const char *client_key;
    bool offered_subprotocol;
    char session_token[64];
    char user_id[40], session_id[40];
} ws_start;

typedef struct st_ws_guard_t {
    ws_start *start;
} ws_guard;

static void start_free(ws_start *s)
{
    if (s->caller != NULL)
        kreide__caller__free_unpacked(s->caller, NULL);
    free(s->jti);
    free(s);
}

/* A heap copy of a caller built in a request pool. */
static Kreide__Caller *caller_copy(const Kreide__Caller *in)
{
    size_t n = kreide__caller__get_packed_size(in);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL)
        abort();
    kreide__caller__pack(in, buf);
    Kreide__Caller *out = kreide__caller__unpack(NULL, n, buf);
    free(buf);
    if (out == NULL)
        abort();
    return out;
}

static void on_upgraded(void *arg, h2o_socket_t *sock, size_t reqsize)
{
    ws_start *s = arg;
    if (sock == NULL) {
        start_free(s);
        return;
    }
    gw_ws_hub *h = s->thread->ws;
    ws_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    c->hub = h;
    c->sock = sock;
    sock->data = c;
    h2o_buffer_consume(&sock->input, reqsize);
    c->caller = s->caller;
    s->caller = NULL;
    c->jti = s->jti;
    s->jti = NULL;
    c->expires_at = s->expires_at;
    c->after = s->after;
    c->last_sent = s->after == WS_NO_REPLAY ? 0 : s->after;
    start_free(s);

    static const struct wslay_event_callbacks callbacks = {
        .recv_callback = on_wslay_recv,
        .send_callback = on_wslay_send,
        .on_msg_recv_callback = on_wslay_msg,
    };
    if (wslay_event_context_server_init(&c->ws, &callbacks, c) != 0)
        abort();
    wslay_event_config_set_max_recv_msg_length(c->ws, WS_MAX_FRAME);
    c->state = WS_REPLAYING;
    c->last_heard = c->last_ping = loop_now(h);
    h2o_linklist_insert(&h->conns, &c->all);
    h->nconns++;
    kr_gauge_add(G.sockets, 1);
    index_add(c);
    c->tick.cb = on_tick;
    h2o_timeout_link(h->thread->super.loop, &h->tick_timeout, &c->tick);
    replay_page(c);
    h2o_socket_read_start(sock, on_read);
    if (sock->input->size != 0)
        on_read(sock, NULL);
    else if (sock->input->bytes != NULL) {
        h2o_buffer_dispose(&sock->input);
        h2o_buffer_init(&sock->input, &h2o_socket_buffer_prototype);
    }
}

static void accept_key(const char *client_key, char out[29])
{
    uint8_t src[24 + sizeof(WS_GUID) - 1], digest[SHA_DIGEST_LENGTH];
    memcpy(src, client_key, 24);
    memcpy(src + 24, WS_GUID, sizeof(WS_GUID) - 1);
    SHA1(src, sizeof(src), digest);
    h2o_base64_encode(out, digest, sizeof(digest), 0);
    out[28] = '\0';
}

static void upgrade(h2o_req_t *req, ws_start *s)
{
    char key[29];
    accept_key(s->client_key, key);
    req->res.status = 101;
    req->res.reason = "Switching Protocols";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-accept"), 0, NULL,
                          h2o_strdup(&req->pool, key, 28).base, 28);
    if (s->offered_subprotocol)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-protocol"), 0, NULL,
                              H2O_STRLIT(WS_SUBPROTOCOL));
    gw_count_request("/api/v1/ws", 101);
    h2o_http1_upgrade(req, NULL, 0, on_upgraded, s);
}

static void refuse(h2o_req_t *req, int status, const char *code, const char *message)
{
    if (status == 401)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
    gw_count_request("/api/v1/ws", status);
    gw_send_error(req, status, code, message, NULL);
}

/* The `after` query parameter: absent, or a position (decimal digits). */
static bool parse_after(h2o_req_t *req, int64_t *after)
{
    *after = WS_NO_REPLAY;
    if (req->query_at == SIZE_MAX)
        return true;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - q) > 6 && memcmp(q, "after=", 6) == 0) {
            const char *v = q + 6;
            size_t n = (size_t)(stop - v);
            if (n == 0 || n > 18)
                return false;
            int64_t x = 0;
            for (size_t i = 0; i < n; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return false;
                x = x * 10 + (v[i] - '0');
            }
            *after = x;
        } else if ((size_t)(stop - q) == 5 && memcmp(q, "after", 5) == 0) {
            return false;
        }
        q = stop + 1;
    }
    return true;
}

/* A bearer token among the offered subprotocols, and whether kreide.v1 is one. */
static bool find_subprotocols(h2o_req_t *req, h2o_iovec_t *token, bool *v1)
{
    *v1 = false;
    token->base = NULL;
    token->len = 0;
    for (ssize_t i = -1; (i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("sec-websocket-protocol"), i)) != -1;) {
        h2o_iovec_t v = req->headers.entries[i].value;
        size_t pos = 0;
        while (pos < v.len) {
            while (pos < v.len && (v.base[pos] == ' ' || v.base[pos] == ','))
                pos++;
            size_t start = pos;
            while (pos < v.len && v.base[pos] != ',' && v.base[pos] != ' ')
                pos++;
            size_t n = pos - start;
            if (n == sizeof(WS_SUBPROTOCOL) - 1 && memcmp(v.base + start, WS_SUBPROTOCOL, n) == 0)
                *v1 = true;
            else if (n > sizeof(WS_BEARER_PREFIX) - 1 &&
                     memcmp(v.base + start, WS_BEARER_PREFIX, sizeof(WS_BEARER_PREFIX) - 1) == 0)
                *token = h2o_iovec_init(v.base + start + sizeof(WS_BEARER_PREFIX) - 1, n - (sizeof(WS_BEARER_PREFIX) - 1));
        }
    }
    return token->base != NULL;
}

static bool origin_is_issuer(h2o_req_t *req)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
    if (i < 0)
        return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    return v.len == strlen(G.origin) && strncasecmp(v.base, G.origin, v.len) == 0;
}

/* --------------------------------------------- the cookie's two questions */

static void on_start_disposed(void *arg)
{
    ws_guard *g = arg;
    if (g->start != NULL)
        g->start->req = NULL;
}

static void identity_call(ws_start *s, const char *method, const ProtobufCMessage *in, kr_rpc_cb cb)
{
    size_t n = protobuf_c_message_get_packed_size(in);
    uint8_t *body = h2o_mem_alloc_pool(&s->req->pool, n ? n : 1);
    protobuf_c_message_pack(in, body);
    Kreide__Caller caller = KREIDE__CALLER__INIT;
    caller.kind = KREIDE__CALLER__KIND__SERVICE;
    caller.client_id = GW_OWN_CLIENT_ID;
    char full[128];
    snprintf(full, sizeof(full), "kreide.identity.Identity/%s", method);
    kr_rpc_request rq = {
        .method = full,
        .request_id = gw_request_id(s->req),
        .deadline_ms = kr_now_ms() + gw.rpc_timeout_ms,
        .caller = &caller,
        .body = body,
        .body_len = n,
    };
    kr_rpc_h2o_call(s->thread->rpc, service_named("identity")->client, &rq, cb, s);
}

/* The request a cookie start belongs to, or NULL (and `s` freed) when the
 * client went away meanwhile. */
static h2o_req_t *start_request(ws_start *s, kr_rpc_result *res)
{
    if (s->req != NULL)
        return s->req;
    kr_rpc_result_free(res);
    start_free(s);
    return NULL;
}

static void fail_start(ws_start *s, kr_rpc_result *res, const char *what)
{
    h2o_req_t *req = s->req;
    s->guard->start = NULL;
    if (res->status == KREIDE__STATUS__NOT_FOUND || res->status == KREIDE__STATUS__UNAUTHENTICATED)
        refuse(req, 401, "auth.session_ended", "the sign-in session has ended: sign in again");
    else
        refuse(req, 503, "ws.unavailable", what);
    kr_rpc_result_free(res);
    start_free(s);
}

static void on_claims(void *arg, kr_rpc_result *res)
{
    ws_start *s = arg;
    h2o_req_t *req = start_request(s, res);
    if (req == NULL)
        return;
    Kreide__Identity__UserClaims *uc = NULL;
    if (res->status != KREIDE__STATUS__OK || (uc = kreide__identity__user_claims__unpack(NULL, res->body_len, res->body)) == NULL) {
        fail_start(s, res, "the directory cannot be reached");
        return;
    }
    Kreide__Caller caller = KREIDE__CALLER__INIT;
    caller.kind = KREIDE__CALLER__KIND__USER;
    caller.user_id = s->user_id;
    caller.session_id = s->session_id;
    Kreide__CallerSchool **schools = h2o_mem_alloc_pool(&req->pool, sizeof(*schools) * (uc->n_schools + 1));
    for (size_t i = 0; i < uc->n_schools; i++) {
        Kreide__CallerSchool *cs = h2o_mem_alloc_pool(&req->pool, sizeof(*cs));
        kreide__caller_school__init(cs);
        cs->school_id = uc->schools[i]->school_id;
        cs->roles = uc->schools[i]->roles;
        cs->n_roles = uc->schools[i]->n_roles;
        schools[i] = cs;
    }
    caller.schools = schools;
    caller.n_schools = uc->n_schools;
    s->caller = caller_copy(&caller);
    kreide__identity__user_claims__free_unpacked(uc, NULL);
    kr_rpc_result_free(res);
    s->guard->start = NULL;
    s->req = NULL;
    upgrade(req, s);
}

static void on_session(void *arg, kr_rpc_result *res)
{
    ws_start *s = arg;
    h2o_req_t *req = start_request(s, res);
    if (req == NULL)
        return;
    Kreide__Identity__SessionInfo *si = NULL;
    if (res->status != KREIDE__STATUS__OK ||
        (si = kreide__identity__session_info__unpack(NULL, res->body_len, res->body)) == NULL) {
        fail_start(s, res, "the sign-in service cannot be reached");
        return;
    }
    snprintf(s->user_id, sizeof(s->user_id), "%s", si->user_id);
    snprintf(s->session_id, sizeof(s->session_id), "%s", si->session_id);
    s->expires_at = si->expires_at;
    kreide__identity__session_info__free_unpacked(si, NULL);
    kr_rpc_result_free(res);
    Kreide__Identity__GetUserClaimsRequest in = KREIDE__IDENTITY__GET_USER_CLAIMS_REQUEST__INIT;
    in.user_id = s->user_id;
    in.scope = "school";
    identity_call(s, "GetUserClaims", &in.base, on_claims);
}

/* ------------------------------------------------------------ the handler */

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    gw_thread *t = gw_thread_of(req);
    const char *client_key = NULL;
    if (req->version >= 0x200 || h2o_is_websocket_handshake(req, &client_key) != 0 || client_key == NULL) {
        refuse(req, 400, "ws.not_websocket", "this endpoint speaks WebSocket only (GET with Upgrade: websocket, HTTP/1.1)");
        return 0;
    }
    int64_t after;
    if (!parse_after(req, &after)) {
        refuse(req, 400, "ws.bad_after", "after must be a position: decimal digits");
        return 0;
    }
    if (t->ws == NULL || t->redis == NULL) {
        refuse(req, 503, "ws.unavailable", "realtime delivery needs Redis, which this gateway is not configured with");
        return 0;
    }
    ws_start *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->thread = t;
    s->after = after;
    s->client_key = client_key;
    h2o_iovec_t proto_token;
    bool has_proto_token = find_subprotocols(req, &proto_token, &s->offered_subprotocol);

    Kreide__Caller caller = KREIDE__CALLER__INIT;
    gw_token_info info = {0};
    const char *why = NULL;
    h2o_iovec_t token;
    gw_auth_result a = gw_auth_header_token(req, &token, &why);
    if (a == GW_AUTH_NONE_GIVEN && has_proto_token) {
        token = proto_token;
        a = GW_AUTH_VALID;
    }
    if (a == GW_AUTH_VALID)
        a = gw_auth_token(req, token.base, token.len, &caller, &info, &why);
    if (a == GW_AUTH_INVALID) {
        start_free(s);
        refuse(req, 401, "auth.invalid_token", why);
        return 0;
    }
    if (a == GW_AUTH_VALID) {
        if (caller.kind != KREIDE__CALLER__KIND__USER || caller.user_id == NULL || caller.user_id[0] == '\0') {
            start_free(s);
            refuse(req, 403, "ws.not_a_person", "realtime delivery is for people's tokens, not a service's");
            return 0;
        }
        s->caller = caller_copy(&caller);
        s->expires_at = info.exp;
        s->jti = info.jti != NULL ? strdup(info.jti) : NULL;
        upgrade(req, s);
        return 0;
    }

    /* No token: the single sign-on cookie, from this origin only. */
    h2o_iovec_t cookie = {NULL, 0};
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, i)) != -1;) {
        h2o_iovec_t v = req->headers.entries[i].value;
        if (gw_oidc_cookie_find(v.base, v.len, GW_SSO_COOKIE, &cookie))
            break;
    }
    /* A browser with several accounts signed in keeps their sessions newest
     * first (oidc_authorize.c); the socket speaks for the newest. */
    const char *dot = cookie.base != NULL ? memchr(cookie.base, '.', cookie.len) : NULL;
    if (dot != NULL)
        cookie.len = (size_t)(dot - cookie.base);
    if (cookie.base == NULL || cookie.len == 0 || cookie.len >= sizeof(s->session_token)) {
        start_free(s);
        refuse(req, 401, "auth.required", "this endpoint needs a bearer token or the sign-in cookie");
        return 0;
    }
    if (!origin_is_issuer(req)) {
        start_free(s);
        refuse(req, 403, "ws.origin", "a socket opened with the sign-in cookie must come from this site's own pages");
        return 0;
    }
    memcpy(s->session_token, cookie.base, cookie.len);
    s->req = req;
    s->guard = h2o_mem_alloc_shared(&req->pool, sizeof(ws_guard), on_start_disposed);
    s->guard->start = s;
    Kreide__Identity__GetSessionRequest in = KREIDE__IDENTITY__GET_SESSION_REQUEST__INIT;
    in.session_token = s->session_token;
    identity_call(s, "GetSession", &in.base, on_session);
    return 0;
}

/* ------------------------------------------------------- the sequencer */

static void heap_push(gw_ws_hub *h, ws_frame *f)
{
    if (h->nheld == h->capheld) {
        h->capheld = h->capheld ? h->capheld * 2 : 64;
        h->held = realloc(h->held, h->capheld * sizeof(*h->held));
        if (h->held == NULL)
            abort();
    }
    size_t i = h->nheld++;
    while (i > 0 && h->held[(i - 1) / 2]->position > f->position) {
        h->held[i] = h->held[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->held[i] = f;
}

static ws_frame *heap_pop(gw_ws_hub *h)
{
    ws_frame *top = h->held[0], *last = h->held[--h->nheld];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < h->nheld && h->held[l]->position < last->position)
            m = l;
        if (l + 1 < h->nheld && h->held[l + 1]->position < (m == i ? last->position : h->held[m]->position))
            m = l + 1;
        if (m == i)
            break;
        h->held[i] = h->held[m];
        i = m;
    }
    if (h->nheld > 0)
        h->held[i] = last;
    return top;
}

static void dispatch(gw_ws_hub *h, ws_frame *f, const char *members, size_t n, const char *skip)
{
    const char *m = members;
    for (size_t i = 0; i < n; i++, m += strlen(m) + 1) {
        if (skip != NULL && strcasecmp(m, skip) == 0)
            continue;
        ws_slot *s = slot_find(h, m, false);
        for (ws_conn *c = s ? s->first : NULL; c != NULL;) {
            ws_conn *next = c->next_of_user; /* deliver may close c, never free it */
            deliver(c, f);
            c = next;
        }
    }
}

/* The string members of `arr` as NUL-terminated ids one after another;
 * `n` gets how many, `bytes` (may be NULL) their total length. */
static char *members_of(json_t *arr, size_t *n, size_t *bytes)
{
    *n = 0;
    size_t total = 0, i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v))
            total += json_string_length(v) + 1;
    }
    char *out = malloc(total ? total : 1), *p = out;
    if (out == NULL)
        abort();
    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v)) {
            memcpy(p, json_string_value(v), json_string_length(v) + 1);
            p += json_string_length(v) + 1;
            (*n)++;
        }
    }
    if (bytes != NULL)
        *bytes = (size_t)(p - out);
    return out;
}

static void release(gw_ws_hub *h, ws_frame *f)
{
    /* The audience travels after the frame's text: see hold(). */
    const char *after_text = f->data + f->len + 1;
    size_t n;
    memcpy(&n, after_text, sizeof(n));
    dispatch(h, f, after_text + sizeof(n), n, NULL);
    frame_unref(f);
}

static void drain(gw_ws_hub *h)
{
    while (h->nheld > 0 && h->held[0]->position <= h->next) {
        ws_frame *f = heap_pop(h);
        if (f->position == h->next)
            h->next++;
        release(h, f);
    }
    if (h->nheld == 0 && h2o_timeout_is_linked(&h->gap_entry))
        h2o_timeout_unlink(&h->gap_entry);
}

static void send_gaps(gw_ws_hub *h)
{
    for (h2o_linklist_t *l = h->conns.next; l != &h->conns; l = l->next) {
        ws_conn *c = H2O_STRUCT_FROM_MEMBER(ws_conn, all, l);
        if (c->state != WS_LIVE)
            continue;
        char pos[24];
        snprintf(pos, sizeof(pos), "%" PRId64, c->last_sent);
        queue_json(c, json_pack("{s:s, s:s}", "type", "gap", "after", pos));
    }
}

static void give_up_gap(gw_ws_hub *h)
{
    if (h->nheld == 0)
        return;
    char from[24], to[24];
    snprintf(from, sizeof(from), "%" PRId64, h->next);
    snprintf(to, sizeof(to), "%" PRId64, h->held[0]->position - 1);
    kr_log(KR_LOG_WARN, "events never announced: the loop's sockets re-read the stream", "from", from, "to", to, NULL);
    kr_counter_add(G.gaps, 1);
    h->next = h->held[0]->position;
    send_gaps(h);
    drain(h);
}

static void on_gap_timeout(h2o_timeout_entry_t *entry)
{
    gw_ws_hub *h = H2O_STRUCT_FROM_MEMBER(gw_ws_hub, gap_entry, entry);
    give_up_gap(h);
    if (h->nheld > 0)
        h2o_timeout_link(h->thread->super.loop, &h->gap_timeout, &h->gap_entry);
}

/* Makes a log event's frame, with its audience stored after the text. */
static ws_frame *event_frame(json_t *event, int64_t position, json_t *members)
{
    json_t *o = json_pack("{s:s, s:O}", "type", "event", "event", event);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s == NULL)
        abort();
    size_t len = strlen(s), n;
    size_t mlen;
    char *m = members_of(members, &n, &mlen);
    ws_frame *f = malloc(sizeof(*f) + len + 1 + sizeof(n) + mlen);
    if (f == NULL)
        abort();
    f->refs = 1;
    f->position = position;
    f->len = len;
    memcpy(f->data, s, len + 1);
    memcpy(f->data + len + 1, &n, sizeof(n));
    memcpy(f->data + len + 1 + sizeof(n), m, mlen);
    free(s);
    free(m);
    return f;
}

static void on_log_event(gw_ws_hub *h, ws_frame *f)
{
    if (h->next == 0)
        h->next = f->position;
    if (f->position < h->next) {
        release(h, f); /* late, after its gap was given up: sockets drop what they have */
        return;
    }
    heap_push(h, f);
    drain(h);
    if (h->nheld > WS_MAX_HELD)
        give_up_gap(h);
    if (h->nheld > 0 && !h2o_timeout_is_linked(&h->gap_entry))
        h2o_timeout_link(h->thread->super.loop, &h->gap_timeout, &h->gap_entry);
}

static bool parse_position(json_t *v, int64_t *out)
{
    const char *s = json_string_value(v);
    if (s == NULL || *s == '\0' || strlen(s) > 18)
        return false;
    int64_t x = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        x = x * 10 + (*s - '0');
    }
    *out = x;
    return x > 0;
}

/* Makes a log event's frame from its announcement read as text
 * (ws_announce.h): the event goes out as messaging wrote it, and its
 * audience is stored after the frame's text, as event_frame does. NULL
 * when the audience is not an array of plain strings. */
static ws_frame *event_frame_raw(const gw_ws_announcement *a)
{
    static const char head[] = "{\"type\":\"event\",\"event\":";
    size_t len = sizeof(head) - 1 + a->event_len + 1;
    ws_frame *f = malloc(sizeof(*f) + len + 1 + sizeof(size_t) + a->members_len);
    if (f == NULL)
        abort();
    f->refs = 1;
    f->position = a->position;
    f->len = len;
    memcpy(f->data, head, sizeof(head) - 1);
    memcpy(f->data + sizeof(head) - 1, a->event, a->event_len);
    f->data[len - 1] = '}';
    f->data[len] = '\0';
    long n = gw_ws_members_copy(a->members, a->members_len, f->data + len + 1 + sizeof(size_t));
    if (n < 0) {
        free(f);
        return NULL;
    }
    size_t count = (size_t)n;
    memcpy(f->data + len + 1, &count, sizeof(count));
    return f;
}

/* Takes a log event's announcement read as text, without building it as a
 * tree; false leaves it to the full parser (notices, anything unusual). */
static bool on_log_announcement_raw(gw_ws_hub *h, const char *data, size_t len)
{
    gw_ws_announcement a;
    if (!gw_ws_announcement_read(data, len, &a))
        return false;
    ws_frame *f = event_frame_raw(&a);
    if (f == NULL)
        return false;
    on_log_event(h, f);
    return true;
}

static void on_announcement(kr_redis_async *r, const kr_redis_message *msg, void *privdata)
{
    (void)r;
    gw_ws_hub *h = privdata;
    if (on_log_announcement_raw(h, msg->payload, msg->payload_len))
        return;
    json_t *o = json_loadb(msg->payload, msg->payload_len, 0, NULL);
    json_t *members = json_object_get(o, "members");
    const char *kind = json_string_value(json_object_get(o, "kind"));
    if (!json_is_array(members) || kind == NULL) {
        kr_log(KR_LOG_WARN, "ignored a malformed event announcement", NULL);
        json_decref(o);
        return;
    }
    if (strcmp(kind, "typing") == 0 || strcmp(kind, "report") == 0) {
        json_t *frame = json_deep_copy(o);
        json_object_del(frame, "kind");
        json_object_del(frame, "members");
        json_object_del(frame, "school_id");
        json_object_set_new(frame, "type", json_string(kind));
        ws_frame *f = frame_of_json(frame, 0);
        size_t n;
        char *m = members_of(members, &n, NULL);
        dispatch(h, f, m, n, strcmp(kind, "typing") == 0 ? json_string_value(json_object_get(o, "user_id")) : NULL);
        free(m);
        frame_unref(f);
        json_decref(o);
        return;
    }
    int64_t position;
    json_t *event = json_object_get(o, "event");
    if (!parse_position(json_object_get(o, "position"), &position) || !json_is_object(event)) {
        kr_log(KR_LOG_WARN, "ignored an event announcement without position or event", "kind", kind, NULL);
        json_decref(o);
        return;
    }
    on_log_event(h, event_frame(event, position, members));
    json_decref(o);
}

/* Redis pub/sub came back after a break: what was published meanwhile is
 * gone, so every socket re-reads, and the sequencer starts afresh. */
static void on_subscriptions(kr_redis_async *r, bool up, void *privdata)
{
    (void)r;
    gw_ws_hub *h = privdata;
    if (!up)
        return;
    if (h->subscribed_before) {
        while (h->nheld > 0)
            release(h, heap_pop(h));
        h->next = 0;
        send_gaps(h);
    }
    h->subscribed_before = true;
}

/* ------------------------------------------------------------- the hub */

int gw_ws_start(gw_thread *t, char *err, size_t errlen)
{
    static bool once;
    if (!once) {
        once = true;
        G.sockets = kr_metrics_gauge("kreide_gateway_ws_sockets", "Open realtime WebSockets", NULL);
        G.delivered = kr_metrics_counter("kreide_gateway_ws_events_delivered_total", "Event frames queued on sockets", NULL);
        G.gaps = kr_metrics_counter("kreide_gateway_ws_gaps_total", "Event positions never announced, given up on", NULL);
        G.closed_slow =
            kr_metrics_counter("kreide_gateway_ws_closed_slow_total", "Sockets closed because their client did not read", NULL);
        /* scheme://host[:port] of the issuer */
        const char *iss = gw.issuer;
        const char *p = strstr(iss, "://");
        size_t n = p ? (size_t)(strchrnul(p + 3, '/') - iss) : strlen(iss);
        snprintf(G.origin, sizeof(G.origin), "%.*s", (int)n, iss);
    }
    gw_ws_hub *h = calloc(1, sizeof(*h));
    if (h == NULL)
        abort();
    h->thread = t;
    h2o_linklist_init_anchor(&h->conns);
    h2o_timeout_init(t->super.loop, &h->gap_timeout, (uint64_t)gw.ws_gap_ms);
    h2o_timeout_init(t->super.loop, &h->tick_timeout, WS_TICK_MS);
    h->gap_entry.cb = on_gap_timeout;
    h->flush_entry.cb = on_flush;
    t->ws = h;
    if (t->redis == NULL)
        return 0;
    kr_redis_async_on_subscriptions(t->redis, on_subscriptions, h);
    if (kr_redis_async_subscribe(t->redis, GW_WS_EVENTS_CHANNEL, false, on_announcement, h) != 0) {
        snprintf(err, errlen, "cannot subscribe to %s", GW_WS_EVENTS_CHANNEL);
        return -1;
    }
    return 0;
}

void gw_ws_revoked(gw_thread *t, const char *jti)
{
    if (t->ws == NULL)
        return;
    for (h2o_linklist_t *l = t->ws->conns.next; l != &t->ws->conns;) {
        ws_conn *c = H2O_STRUCT_FROM_MEMBER(ws_conn, all, l);
        l = l->next;
        if (c->jti != NULL && strcmp(c->jti, jti) == 0)
            conn_close(c, CLOSE_CREDENTIAL, "the token was revoked");
    }
}

size_t gw_ws_count(const gw_thread *t)
{
    return t->ws != NULL ? t->ws->nconns : 0;
}

void gw_ws_shutdown(gw_thread *t)
{
    if (t->ws == NULL)
        return;
    for (h2o_linklist_t *l = t->ws->conns.next; l != &t->ws->conns;) {
        ws_conn *c = H2O_STRUCT_FROM_MEMBER(ws_conn, all, l);
        l = l->next;
        conn_close(c, CLOSE_GOING_AWAY, "the server is restarting: reconnect with after");
    }
}

void gw_ws_register(h2o_hostconf_t *hostconf)
{
    h2o_pathconf_t *path = h2o_config_register_path(hostconf, "/api/v1/ws", 0);
    h2o_handler_t *h = h2o_create_handler(path, sizeof(*h));
    h->on_req = on_req;
    gw_access_log_register(path);
}
