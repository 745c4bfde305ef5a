/* RPC client: one nng REQ socket per service, one context + aio per request
 * message, which carries one call or a batch of them. */
#include "kr_rpc.h"

#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kr_metrics.h"

#define MAX_DIALERS 64
/* A day: longer than any call may wait. */
#define RESEND_NEVER_MS (24 * 3600 * 1000)

typedef struct st_call_t call;

struct st_kr_rpc_client_t {
    char service[32];
    nng_socket sock;
    nng_dialer dialers[MAX_DIALERS];
    int ndialers;
    const kr_keyring *keys;
    atomic_int peers;
    kr_metric *m_messages, *m_calls;
    /* Finished call objects, reused: allocating an aio per call is costly
     * and an aio cannot be freed from its own callback. */
    pthread_mutex_t lock;
    call *free_calls;
    call *all_calls; /* every call object, for kr_rpc_client_free */
};

/* Who waits for one call's result. */
typedef struct {
    kr_rpc_cb cb;
    void *arg;
} waiter;

/* One request message in flight: a single call (nwaiters 1, `batched`
 * false) or a batch. */
struct st_call_t {
    kr_rpc_client *client;
    nng_ctx ctx;
    nng_aio *aio;
    waiter *waiters;
    size_t nwaiters, cap;
    bool batched;
    void (*answered)(void *token); /* the batch's hook, or NULL */
    void *token;
    int64_t deadline_ms;
    struct timespec started;
    int sending;
    call *next_free;
    call *next_all;
};

const char *kr_rpc_client_service(const kr_rpc_client *c)
{
    return c->service;
}

int kr_rpc_client_peers(const kr_rpc_client *c)
{
    int n = atomic_load(&((kr_rpc_client *)c)->peers);
    return n > 0 ? n : 0;
}

/* Counts connections from ADD_PRE, not ADD_POST: nng reports REM_POST for
 * every pipe that saw ADD_PRE, but a pipe dropped before it was fully added
 * (the peer speaks another protocol, the socket is closing) never sees
 * ADD_POST, which would leave the count one too low for good. The two
 * callbacks may run in either order on different threads, so the count can
 * dip below its true value for a moment, never for longer. */
static void pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    kr_rpc_client *c = arg;
    (void)p;
    if (ev == NNG_PIPE_EV_ADD_PRE)
        atomic_fetch_add(&c->peers, 1);
    else if (ev == NNG_PIPE_EV_REM_POST)
        atomic_fetch_sub(&c->peers, 1);
}

int kr_rpc_client_new(const char *service, const char *urls, const kr_keyring *keys, kr_rpc_client **out, char *err, size_t errlen)
{
    kr_rpc_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    snprintf(c->service, sizeof(c->service), "%s", service);
    c->keys = keys;
    pthread_mutex_init(&c->lock, NULL);
    char labels[96], esc[64];
    snprintf(labels, sizeof(labels), "service=\"%s\"", kr_metrics_escape_label(c->service, esc, sizeof(esc)));
    c->m_messages = kr_metrics_counter("kreide_rpc_client_messages_total", "Request messages sent, by service", labels);
    c->m_calls = kr_metrics_counter("kreide_rpc_client_calls_total", "Calls sent, by service (a batch carries several)", labels);
    int rv = nng_req0_open(&c->sock);
    if (rv != 0) {
        snprintf(err, errlen, "%s: nng_req0_open: %s", service, nng_strerror(rv));
        free(c);
        return -1;
    }
    nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, KR_RPC_MAX_REPLY);
    /* Reconnect quickly after a daemon restart, backing off to 2 s. */
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 50);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 2000);
    /* A request is resent only when its peer goes away (nng does that at
     * once), so a draining replica's queue moves to another one; never on a
     * timer, which would repeat slow non-idempotent work. nng 1.5 resends on
     * a lost peer only while a resend time is set (with "infinite" it fails
     * the call with NNG_ECONNRESET instead), so the timer is set longer than
     * any deadline. */
    nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, RESEND_NEVER_MS);
    nng_pipe_notify(c->sock, NNG_PIPE_EV_ADD_PRE, pipe_event, c);
    nng_pipe_notify(c->sock, NNG_PIPE_EV_REM_POST, pipe_event, c);

    char *copy = strdup(urls ? urls : "");
    if (copy == NULL)
        abort();
    char *save = NULL;
    for (char *u = strtok_r(copy, ",", &save); u != NULL; u = strtok_r(NULL, ",", &save)) {
        while (*u == ' ')
            u++;
        if (*u == '\0')
            continue;
        for (int i = 0; i < KR_RPC_CONNS_PER_URL; i++) {
            if (c->ndialers == MAX_DIALERS) {
                snprintf(err, errlen, "%s: more than %d URLs", service, MAX_DIALERS / KR_RPC_CONNS_PER_URL);
                goto fail;
            }
            rv = nng_dial(c->sock, u, &c->dialers[c->ndialers], NNG_FLAG_NONBLOCK);
            if (rv != 0) {
                snprintf(err, errlen, "%s: cannot dial '%s': %s", service, u, nng_strerror(rv));
                goto fail;
            }
            c->ndialers++;
        }
    }
    if (c->ndialers == 0) {
        snprintf(err, errlen, "%s: no URL to dial", service);
        goto fail;
    }
    free(copy);
    *out = c;
    return 0;
fail:
    free(copy);
    nng_close(c->sock);
    pthread_mutex_destroy(&c->lock);
    free(c);
    return -1;
}

static kr_rpc_result *new_result(Kreide__Status status, const char *code, const char *msg)
{
    kr_rpc_result *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    r->status = status;
    r->error_code = code;
    snprintf(r->_msg, sizeof(r->_msg), "%s", msg);
    r->message = r->_msg;
    r->field = "";
    return r;
}

void kr_rpc_result_free(kr_rpc_result *res)
{
    if (res == NULL)
        return;
    if (res->_reply)
        kreide__reply__free_unpacked(res->_reply, NULL);
    free(res);
}

static void release_call(call *k)
{
    kr_rpc_client *c = k->client;
    pthread_mutex_lock(&c->lock);
    k->next_free = c->free_calls;
    c->free_calls = k;
    pthread_mutex_unlock(&c->lock);
}

static int64_t since_us(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0->tv_sec) * 1000000 + (now.tv_nsec - t0->tv_nsec) / 1000;
}

/* Hands every waiter its result (results[i], or a copy of `shared` for
 * each), then makes the call object reusable. The waiters are copied first:
 * a callback may start the next call, which can take this object. */
static void finish(call *k, kr_rpc_result **results, const kr_rpc_result *shared)
{
    int64_t latency = since_us(&k->started);
    size_t n = k->nwaiters;
    waiter one, *ws = n <= 1 ? &one : malloc(n * sizeof(*ws));
    if (ws == NULL)
        abort();
    memcpy(ws, k->waiters, n * sizeof(*ws));
    void (*answered)(void *) = k->answered;
    void *token = k->token;
    release_call(k);
    for (size_t i = 0; i < n; i++) {
        kr_rpc_result *r;
        if (results != NULL) {
            r = results[i];
        } else {
            r = malloc(sizeof(*r));
            if (r == NULL)
                abort();
            *r = *shared;
            r->message = r->_msg;
        }
        r->latency_us = latency;
        ws[i].cb(ws[i].arg, r);
    }
    if (ws != &one)
        free(ws);
    if (answered != NULL)
        answered(token);
}

static void finish_failed(call *k, Kreide__Status status, const char *code, const char *msg)
{
    kr_rpc_result *r = new_result(status, code, msg);
    finish(k, NULL, r);
    free(r);
}

static void transport_failure(call *k, int rv)
{
    kr_rpc_client *c = k->client;
    char msg[160];
    if (rv == NNG_ETIMEDOUT && atomic_load(&c->peers) > 0) {
        snprintf(msg, sizeof(msg), "the %s service did not answer in time", c->service);
        finish_failed(k, KREIDE__STATUS__DEADLINE_EXCEEDED, "rpc.timeout", msg);
        return;
    }
    /* Timed out with no peer connected, or closed: the service is down. */
    snprintf(msg, sizeof(msg), "the %s service is unavailable", c->service);
    finish_failed(k, KREIDE__STATUS__UNAVAILABLE, "rpc.unavailable", msg);
}

static kr_rpc_result *result_of(Kreide__Reply *reply)
{
    kr_rpc_result *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    r->_reply = reply;
    r->status = reply->status;
    r->error_code = reply->error_code;
    r->message = reply->message;
    r->field = reply->field;
    r->body = reply->body.data;
    r->body_len = reply->body.len;
    return r;
}

/* A batch's reply: one Reply per call in order, or one Reply refusing the
 * whole message, which then answers every call. */
static void finish_batch(call *k, Kreide__Reply *outer)
{
    size_t n = k->nwaiters;
    if (outer->n_batch == 0 && outer->status != KREIDE__STATUS__OK) {
        kr_rpc_result shared = {.status = outer->status, .error_code = "rpc.malformed_envelope", .field = ""};
        snprintf(shared._msg, sizeof(shared._msg), "%s", outer->message);
        kreide__reply__free_unpacked(outer, NULL);
        finish(k, NULL, &shared);
        return;
    }
    if (outer->n_batch != n) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the %s service answered %zu of %zu calls", k->client->service, outer->n_batch, n);
        kreide__reply__free_unpacked(outer, NULL);
        finish_failed(k, KREIDE__STATUS__INTERNAL, "rpc.bad_reply", msg);
        return;
    }
    kr_rpc_result **results = malloc((n > 0 ? n : 1) * sizeof(*results));
    if (results == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        Kreide__Reply *r = kreide__reply__unpack(NULL, outer->batch[i].len, outer->batch[i].data);
        if (r != NULL) {
            results[i] = result_of(r);
        } else {
            char msg[160];
            snprintf(msg, sizeof(msg), "the %s service sent a malformed reply", k->client->service);
            results[i] = new_result(KREIDE__STATUS__INTERNAL, "rpc.bad_reply", msg);
        }
    }
    kreide__reply__free_unpacked(outer, NULL);
    finish(k, results, NULL);
    free(results);
}

static void call_done(void *arg)
{
    call *k = arg;
    int rv = nng_aio_result(k->aio);
    if (k->sending) {
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(k->aio));
            transport_failure(k, rv);
            return;
        }
        k->sending = 0;
        int64_t left = k->deadline_ms - kr_now_ms();
        nng_aio_set_timeout(k->aio, left > 0 ? (nng_duration)left : 1);
        nng_ctx_recv(k->ctx, k->aio);
        return;
    }
    if (rv != 0) {
        transport_failure(k, rv);
        return;
    }
    nng_msg *m = nng_aio_get_msg(k->aio);
    Kreide__Reply *reply = kreide__reply__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
    nng_msg_free(m);
    if (reply == NULL) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the %s service sent a malformed reply", k->client->service);
        finish_failed(k, KREIDE__STATUS__INTERNAL, "rpc.bad_reply", msg);
        return;
    }
    if (k->batched) {
        finish_batch(k, reply);
        return;
    }
    kr_rpc_result *r = result_of(reply);
    finish(k, &r, NULL);
}

static call *take_call(kr_rpc_client *c)
{
    pthread_mutex_lock(&c->lock);
    call *k = c->free_calls;
    if (k != NULL) {
        c->free_calls = k->next_free;
        pthread_mutex_unlock(&c->lock);
        return k;
    }
    pthread_mutex_unlock(&c->lock);
    k = calloc(1, sizeof(*k));
    if (k == NULL)
        abort();
    k->client = c;
    if (nng_ctx_open(&k->ctx, c->sock) != 0 || nng_aio_alloc(&k->aio, call_done, k) != 0) {
        free(k);
        return NULL;
    }
    pthread_mutex_lock(&c->lock);
    k->next_all = c->all_calls;
    c->all_calls = k;
    pthread_mutex_unlock(&c->lock);
    return k;
}

/* Room for n waiters in k. */
static void reserve_waiters(call *k, size_t n)
{
    if (k->cap >= n)
        return;
    size_t cap = k->cap ? k->cap : 1;
    while (cap < n)
        cap *= 2;
    waiter *w = realloc(k->waiters, cap * sizeof(*w));
    if (w == NULL)
        abort();
    k->waiters = w;
    k->cap = cap;
}

/* Sends `m` (one packed call or a packed batch) for the waiters `ws`. */
static void send_message(call *k, nng_msg *m, const waiter *ws, size_t n, bool batched, int64_t deadline_ms,
                         void (*answered)(void *), void *token)
{
    k->answered = answered;
    k->token = token;
    kr_counter_add(k->client->m_messages, 1);
    kr_counter_add(k->client->m_calls, n);
    reserve_waiters(k, n);
    memcpy(k->waiters, ws, n * sizeof(*ws));
    k->nwaiters = n;
    k->batched = batched;
    k->deadline_ms = deadline_ms;
    k->sending = 1;
    clock_gettime(CLOCK_MONOTONIC, &k->started);
    int64_t left = deadline_ms - kr_now_ms();
    nng_aio_set_timeout(k->aio, left > 0 ? (nng_duration)left : 1);
    nng_aio_set_msg(k->aio, m);
    nng_ctx_send(k->ctx, k->aio);
}

/* Answers a call that never left: `what` names the service once (%s). */
static void fail_now(kr_rpc_client *c, kr_rpc_cb cb, void *arg, Kreide__Status status, const char *code, const char *what, ...)
    __attribute__((format(printf, 6, 7)));
static void fail_now(kr_rpc_client *c, kr_rpc_cb cb, void *arg, Kreide__Status status, const char *code, const char *what, ...)
{
    (void)c;
    char msg[160];
    va_list ap;
    va_start(ap, what);
    vsnprintf(msg, sizeof(msg), what, ap);
    va_end(ap);
    cb(arg, new_result(status, code, msg));
}

static Kreide__Envelope envelope_of(const kr_rpc_request *req)
{
    Kreide__Envelope env = KREIDE__ENVELOPE__INIT;
    env.method = (char *)req->method;
    env.request_id = (char *)(req->request_id ? req->request_id : "");
    env.deadline_ms = req->deadline_ms;
    env.caller = (Kreide__Caller *)req->caller;
    env.body.data = (uint8_t *)req->body;
    env.body.len = req->body_len;
    return env;
}

void kr_rpc_call(kr_rpc_client *c, const kr_rpc_request *req, kr_rpc_cb cb, void *arg)
{
    if (atomic_load(&c->peers) <= 0) {
        /* Fail fast instead of holding the caller until its deadline. */
        fail_now(c, cb, arg, KREIDE__STATUS__UNAVAILABLE, "rpc.unavailable", "the %s service is unavailable", c->service);
        return;
    }
    call *k = take_call(c);
    if (k == NULL) {
        fail_now(c, cb, arg, KREIDE__STATUS__UNAVAILABLE, "rpc.unavailable", "cannot start a call to %s", c->service);
        return;
    }
    Kreide__Envelope env = envelope_of(req);
    nng_msg *m;
    if (kr_seal_pack(c->keys, &env, kr_now_ms(), &m) != 0) {
        release_call(k);
        fail_now(c, cb, arg, KREIDE__STATUS__INTERNAL, "rpc.internal", "cannot build a request for %s", c->service);
        return;
    }
    waiter w = {cb, arg};
    send_message(k, m, &w, 1, false, req->deadline_ms, NULL, NULL);
}

/* ------------------------------------------------------------- batches */

struct st_kr_rpc_batch_t {
    kr_rpc_client *client;
    ProtobufCBinaryData *items; /* packed, sealed envelopes */
    waiter *waiters;
    size_t n;
    size_t bytes;
    int64_t deadline_ms; /* the latest of the calls' */
    int64_t earliest_ms; /* the earliest */
    kr_rpc_batch_hooks hooks;
};

kr_rpc_batch *kr_rpc_batch_new(kr_rpc_client *c)
{
    kr_rpc_batch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        abort();
    b->client = c;
    b->items = calloc(KR_RPC_MAX_BATCH, sizeof(*b->items));
    b->waiters = calloc(KR_RPC_MAX_BATCH, sizeof(*b->waiters));
    if (b->items == NULL || b->waiters == NULL)
        abort();
    return b;
}

void kr_rpc_batch_free(kr_rpc_batch *b)
{
    if (b == NULL)
        return;
    kr_rpc_batch_send(b);
    free(b->items);
    free(b->waiters);
    free(b);
}

size_t kr_rpc_batch_len(const kr_rpc_batch *b)
{
    return b->n;
}

kr_rpc_client *kr_rpc_batch_client(const kr_rpc_batch *b)
{
    return b->client;
}

static void batch_clear(kr_rpc_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->items[i].data);
    b->n = 0;
    b->bytes = 0;
    b->deadline_ms = 0;
    b->earliest_ms = 0;
}

void kr_rpc_batch_add(kr_rpc_batch *b, const kr_rpc_request *req, kr_rpc_cb cb, void *arg)
{
    kr_rpc_client *c = b->client;
    if (atomic_load(&c->peers) <= 0) {
        fail_now(c, cb, arg, KREIDE__STATUS__UNAVAILABLE, "rpc.unavailable", "the %s service is unavailable", c->service);
        return;
    }
    Kreide__Envelope env = envelope_of(req);
    uint8_t *data;
    size_t len = kr_seal_pack_buf(c->keys, &env, kr_now_ms(), &data);
    /* A batch is waited for until its latest deadline: calls whose deadlines
     * lie far apart go in different messages. The calls already gathered
     * leave first, so a message never holds the call being added. */
    if (b->n > 0 &&
        (b->n == KR_RPC_MAX_BATCH || b->bytes + len > KR_RPC_MAX_BATCH_BYTES ||
         req->deadline_ms > b->earliest_ms + KR_RPC_BATCH_SLACK_MS || req->deadline_ms < b->deadline_ms - KR_RPC_BATCH_SLACK_MS))
        kr_rpc_batch_send(b);
    b->items[b->n].data = data;
    b->items[b->n].len = len;
    b->waiters[b->n] = (waiter){cb, arg};
    b->n++;
    b->bytes += len;
    if (b->n == 1 || req->deadline_ms > b->deadline_ms)
        b->deadline_ms = req->deadline_ms;
    if (b->n == 1 || req->deadline_ms < b->earliest_ms)
        b->earliest_ms = req->deadline_ms;
}

void kr_rpc_batch_set_hooks(kr_rpc_batch *b, const kr_rpc_batch_hooks *hooks)
{
    b->hooks = *hooks;
}

void kr_rpc_batch_send(kr_rpc_batch *b)
{
    kr_rpc_client *c = b->client;
    if (b->n == 0)
        return;
    void *token = b->hooks.sent != NULL ? b->hooks.sent(b->hooks.arg, b->n) : NULL;
    call *k = take_call(c);
    nng_msg *m = NULL;
    if (k != NULL) {
        if (b->n == 1) {
            /* One call travels as a plain envelope. */
            if (nng_msg_alloc(&m, b->items[0].len) == 0)
                memcpy(nng_msg_body(m), b->items[0].data, b->items[0].len);
        } else {
            Kreide__Envelope env = KREIDE__ENVELOPE__INIT;
            env.n_batch = b->n;
            env.batch = b->items;
            if (nng_msg_alloc(&m, kreide__envelope__get_packed_size(&env)) == 0)
                kreide__envelope__pack(&env, nng_msg_body(m));
        }
    }
    if (m == NULL) {
        if (k != NULL)
            release_call(k);
        for (size_t i = 0; i < b->n; i++)
            fail_now(c, b->waiters[i].cb, b->waiters[i].arg, KREIDE__STATUS__UNAVAILABLE, "rpc.unavailable",
                     "cannot start a call to %s", c->service);
        if (b->hooks.answered != NULL)
            b->hooks.answered(token);
    } else {
        send_message(k, m, b->waiters, b->n, b->n > 1, b->deadline_ms, b->hooks.answered, token);
    }
    batch_clear(b);
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    kr_rpc_result *res;
} sync_wait;

static void sync_done(void *arg, kr_rpc_result *res)
{
    sync_wait *w = arg;
    pthread_mutex_lock(&w->lock);
    w->res = res;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

kr_rpc_result *kr_rpc_call_sync(kr_rpc_client *c, const kr_rpc_request *req)
{
    sync_wait w = {.res = NULL};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    kr_rpc_call(c, req, sync_done, &w);
    pthread_mutex_lock(&w.lock);
    while (w.res == NULL)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return w.res;
}

void kr_rpc_client_free(kr_rpc_client *c)
{
    if (c == NULL)
        return;
    /* Closing the socket completes every pending aio with NNG_ECLOSED. */
    nng_close(c->sock);
    call *k = c->all_calls;
    while (k != NULL) {
        call *next = k->next_all;
        nng_aio_free(k->aio); /* waits for a callback still running */
        free(k->waiters);
        free(k);
        k = next;
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}
