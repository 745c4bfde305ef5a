/* RPC client: one nng REQ socket per service, one context + aio per call. */
#include "kr_rpc.h"

#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    /* Finished call objects, reused: allocating an aio per call is costly
     * and an aio cannot be freed from its own callback. */
    pthread_mutex_t lock;
    call *free_calls;
    call *all_calls; /* every call object, for kr_rpc_client_free */
};

struct st_call_t {
    kr_rpc_client *client;
    nng_ctx ctx;
    nng_aio *aio;
    kr_rpc_cb cb;
    void *arg;
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
    int rv = nng_req0_open(&c->sock);
    if (rv != 0) {
        snprintf(err, errlen, "%s: nng_req0_open: %s", service, nng_strerror(rv));
        free(c);
        return -1;
    }
    nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, KR_RPC_MAX_MESSAGE);
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

static void finish(call *k, kr_rpc_result *res)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    res->latency_us = (now.tv_sec - k->started.tv_sec) * 1000000 + (now.tv_nsec - k->started.tv_nsec) / 1000;
    kr_rpc_cb cb = k->cb;
    void *arg = k->arg;
    release_call(k);
    cb(arg, res);
}

static kr_rpc_result *transport_failure(call *k, int rv)
{
    kr_rpc_client *c = k->client;
    char msg[160];
    if (rv == NNG_ETIMEDOUT && atomic_load(&c->peers) > 0) {
        snprintf(msg, sizeof(msg), "the %s service did not answer in time", c->service);
        return new_result(KREIDE__STATUS__DEADLINE_EXCEEDED, "rpc.timeout", msg);
    }
    /* Timed out with no peer connected, or closed: the service is down. */
    snprintf(msg, sizeof(msg), "the %s service is unavailable", c->service);
    return new_result(KREIDE__STATUS__UNAVAILABLE, "rpc.unavailable", msg);
}

static void call_done(void *arg)
{
    call *k = arg;
    int rv = nng_aio_result(k->aio);
    if (k->sending) {
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(k->aio));
            finish(k, transport_failure(k, rv));
            return;
        }
        k->sending = 0;
        int64_t left = k->deadline_ms - kr_now_ms();
        nng_aio_set_timeout(k->aio, left > 0 ? (nng_duration)left : 1);
        nng_ctx_recv(k->ctx, k->aio);
        return;
    }
    if (rv != 0) {
        finish(k, transport_failure(k, rv));
        return;
    }
    nng_msg *m = nng_aio_get_msg(k->aio);
    Kreide__Reply *reply = kreide__reply__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
    nng_msg_free(m);
    if (reply == NULL) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the %s service sent a malformed reply", k->client->service);
        finish(k, new_result(KREIDE__STATUS__INTERNAL, "rpc.bad_reply", msg));
        return;
    }
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
    finish(k, r);
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

void kr_rpc_call(kr_rpc_client *c, const kr_rpc_request *req, kr_rpc_cb cb, void *arg)
{
    char msg[160];
    if (atomic_load(&c->peers) <= 0) {
        /* Fail fast instead of holding the caller until its deadline. */
        snprintf(msg, sizeof(msg), "the %s service is unavailable", c->service);
        cb(arg, new_result(KREIDE__STATUS__UNAVAILABLE, "rpc.unavailable", msg));
        return;
    }
    call *k = take_call(c);
    if (k == NULL) {
        snprintf(msg, sizeof(msg), "cannot start a call to %s", c->service);
        cb(arg, new_result(KREIDE__STATUS__UNAVAILABLE, "rpc.unavailable", msg));
        return;
    }
    k->cb = cb;
    k->arg = arg;
    k->deadline_ms = req->deadline_ms;
    k->sending = 1;
    clock_gettime(CLOCK_MONOTONIC, &k->started);

    Kreide__Envelope env = KREIDE__ENVELOPE__INIT;
    env.method = (char *)req->method;
    env.request_id = (char *)(req->request_id ? req->request_id : "");
    env.deadline_ms = req->deadline_ms;
    env.caller = (Kreide__Caller *)req->caller;
    env.body.data = (uint8_t *)req->body;
    env.body.len = req->body_len;
    int64_t now = kr_now_ms();
    nng_msg *m;
    if (kr_seal_pack(c->keys, &env, now, &m) != 0) {
        snprintf(msg, sizeof(msg), "cannot build a request for %s", c->service);
        release_call(k);
        cb(arg, new_result(KREIDE__STATUS__INTERNAL, "rpc.internal", msg));
        return;
    }
    int64_t left = req->deadline_ms - now;
    nng_aio_set_timeout(k->aio, left > 0 ? (nng_duration)left : 1);
    nng_aio_set_msg(k->aio, m);
    nng_ctx_send(k->ctx, k->aio);
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
        free(k);
        k = next;
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}
