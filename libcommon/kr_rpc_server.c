/* RPC server: worker threads on nng contexts, dispatch by service descriptor. */
#include "kr_rpc.h"

#include <errno.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kr_log.h"
#include "kr_metrics.h"
#include "kr_pg.h"

/* Requests arrive on inboxes, each an nng context that holds one request
 * message at a time, single or batch. Its calls become jobs on one queue
 * that every worker takes from, so a batch's calls run side by side; the
 * worker that finishes a request's last call sends its reply. */
typedef enum { I_IDLE, I_RECV, I_BUSY } inbox_state;

typedef struct st_inbox_t inbox;

typedef struct {
    inbox *in;
    uint32_t index; /* the call's place in its batch; 0 for a single call */
    const uint8_t *data;
    size_t len;
} job;

struct st_inbox_t {
    struct st_kr_rpc_server_t *srv;
    nng_ctx ctx;
    nng_aio *aio;      /* receives the request, then sends the reply */
    inbox_state state; /* guarded by the server's lock */
    bool sending;      /* the aio sends the reply; the inbox's own to read */
    nng_msg *req;
    Kreide__Envelope *batch;      /* the batch envelope; NULL for a single call */
    ProtobufCBinaryData *replies; /* a batch's packed replies, by index */
    atomic_uint left;             /* a batch's calls not yet answered */
};

typedef struct {
    struct st_kr_rpc_server_t *srv;
    pthread_t thread;
    kr_pg *pg;
    kr_arena arena;
    int64_t db_checked_ms; /* when the database was last pinged, for health */
    bool db_ok;
} worker;

struct st_kr_rpc_server_t {
    kr_rpc_server_opts opts;
    const kr_rpc_method **by_index; /* handler per descriptor method index */
    nng_socket sock;
    worker *workers;
    int nworkers;
    inbox *inboxes;
    int ninboxes;
    /* The lock guards the job queue, the inboxes' states and `busy`. */
    pthread_mutex_t lock;
    pthread_cond_t work;    /* a job was queued, or the workers are to stop */
    pthread_cond_t settled; /* an inbox went idle */
    job *queue;             /* ring of ninboxes * KR_RPC_MAX_BATCH jobs */
    size_t qcap, qhead, qlen;
    int busy;    /* inboxes not idle */
    int waiting; /* workers waiting for a job */
    bool workers_stop;
    atomic_int stopping;
    kr_metric *m_bad_seal;
    kr_metric *m_batches;
    kr_metric **m_latency; /* per descriptor method index */
    kr_metric **m_ok;      /* kreide_rpc_served_total with status OK, likewise */
};

static const Kreide__Caller anonymous = KREIDE__CALLER__INIT;

int kr_rpc_fail(kr_rpc_ctx *ctx, Kreide__Status status, const char *code, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    ctx->_status = status == KREIDE__STATUS__OK ? KREIDE__STATUS__INTERNAL : status;
    ctx->_error_code = kr_arena_strdup(ctx->arena, code);
    ctx->_message = kr_arena_strdup(ctx->arena, buf);
    ctx->_field = kr_arena_strdup(ctx->arena, field);
    return -1;
}

bool kr_rpc_expired(const kr_rpc_ctx *ctx)
{
    return ctx->deadline_ms != 0 && kr_now_ms() > ctx->deadline_ms;
}

static const char *status_name(Kreide__Status s)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&kreide__status__descriptor, (int)s);
    return v ? v->name : "UNKNOWN";
}

static kr_metric *served_counter(const char *method, Kreide__Status status)
{
    char labels[160];
    snprintf(labels, sizeof(labels), "method=\"%s\",status=\"%s\"", method, status_name(status));
    return kr_metrics_counter("kreide_rpc_served_total", "RPCs served, by method and status", labels);
}

/* Packs `reply` into a new nng message; NULL only if nng cannot allocate. */
static nng_msg *pack_reply(const Kreide__Reply *reply)
{
    size_t n = kreide__reply__get_packed_size(reply);
    nng_msg *m;
    if (nng_msg_alloc(&m, n) != 0)
        return NULL;
    kreide__reply__pack(reply, nng_msg_body(m));
    return m;
}

static void health_check(worker *w, kr_rpc_ctx *ctx, Kreide__Reply *reply)
{
    Kreide__HealthReply h = KREIDE__HEALTH_REPLY__INIT;
    h.service = (char *)w->srv->opts.service->short_name;
    h.version = (char *)(w->srv->opts.version ? w->srv->opts.version : "");
    /* Health is asked by every probe and status page: ping the database at
     * most once a second per worker. */
    int64_t now = kr_now_ms();
    if (w->pg != NULL && now - w->db_checked_ms >= 1000) {
        w->db_ok = kr_pg_ping(w->pg);
        w->db_checked_ms = now;
    }
    h.database_ok = w->pg == NULL || w->db_ok;
    size_t n = kreide__health_reply__get_packed_size(&h);
    reply->body.data = kr_arena_alloc(ctx->arena, n);
    reply->body.len = kreide__health_reply__pack(&h, reply->body.data);
    const char *why = NULL;
    if (!h.database_ok) {
        reply->status = KREIDE__STATUS__UNAVAILABLE;
        reply->error_code = "health.database";
        reply->message = "the service cannot reach its database";
    } else if (w->srv->opts.ready != NULL && !w->srv->opts.ready(w->srv->opts.app, &why)) {
        reply->status = KREIDE__STATUS__UNAVAILABLE;
        reply->error_code = "health.dependency";
        reply->message = (char *)(why != NULL ? why : "a service this one depends on cannot be reached");
    }
}

/* Turns one request message into its reply. Everything allocated here comes
 * from the worker's arena. */
static void handle(worker *w, const uint8_t *data, size_t len, Kreide__Reply *reply)
{
    kr_rpc_server *srv = w->srv;
    kr_arena *arena = &w->arena;
    ProtobufCAllocator al = kr_arena_allocator(arena);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    Kreide__Envelope *env = kreide__envelope__unpack(&al, len, data);
    if (env == NULL) {
        reply->status = KREIDE__STATUS__INVALID_ARGUMENT;
        reply->error_code = "rpc.malformed_envelope";
        reply->message = "the request is not a valid envelope";
        kr_log(KR_LOG_WARN, "malformed envelope", NULL);
        return;
    }
    reply->request_id = env->request_id;
    kr_log_set_request_id(env->request_id);
    if (env->n_batch != 0) {
        reply->status = KREIDE__STATUS__INVALID_ARGUMENT;
        reply->error_code = "rpc.malformed_envelope";
        reply->message = "a batch element or a call must not carry a batch";
        kr_log(KR_LOG_WARN, "envelope refused", "reason", "a call carries a batch", NULL);
        return;
    }

    int64_t now = kr_now_ms();
    kr_seal_error se = kr_seal_verify(srv->opts.keys, env, now);
    if (se == KR_SEAL_EXPIRED) {
        reply->status = KREIDE__STATUS__DEADLINE_EXCEEDED;
        reply->error_code = "rpc.deadline_exceeded";
        reply->message = "the request's deadline passed before it was served";
        return;
    }
    if (se != KR_SEAL_OK) {
        /* Never act on an unverified caller; say why in the log only. */
        kr_counter_add(srv->m_bad_seal, 1);
        kr_log(KR_LOG_WARN, "envelope rejected", "reason", kr_seal_strerror(se), "method", env->method, NULL);
        reply->status = KREIDE__STATUS__UNAUTHENTICATED;
        reply->error_code = "rpc.bad_seal";
        reply->message = "the envelope is not authenticated";
        return;
    }

    kr_rpc_ctx ctx = {
        .caller = env->caller ? env->caller : &anonymous,
        .request_id = env->request_id,
        .deadline_ms = env->deadline_ms,
        .pg = w->pg,
        .app = srv->opts.app,
        .arena = arena,
    };

    const char *slash = strrchr(env->method, '/');
    size_t svclen = slash ? (size_t)(slash - env->method) : 0;
    if (slash != NULL && svclen == strlen("kreide.Health") && memcmp(env->method, "kreide.Health", svclen) == 0 &&
        strcmp(slash + 1, "Check") == 0) {
        health_check(w, &ctx, reply);
        return;
    }
    const ProtobufCMethodDescriptor *md = NULL;
    if (slash != NULL && svclen == strlen(srv->opts.service->name) && memcmp(env->method, srv->opts.service->name, svclen) == 0)
        md = protobuf_c_service_descriptor_get_method_by_name(srv->opts.service, slash + 1);
    if (md == NULL) {
        reply->status = KREIDE__STATUS__UNIMPLEMENTED;
        reply->error_code = "rpc.unknown_method";
        reply->message = kr_arena_printf(arena, "no method '%s' here", env->method);
        return;
    }
    ctx.method = md->name;

    ProtobufCMessage *in = protobuf_c_message_unpack(md->input, &al, env->body.len, env->body.data);
    if (in == NULL) {
        reply->status = KREIDE__STATUS__INVALID_ARGUMENT;
        reply->error_code = "rpc.malformed_body";
        reply->message = kr_arena_printf(arena, "the body is not a valid %s", md->input->name);
        return;
    }
    ProtobufCMessage *out = kr_arena_alloc(arena, md->output->sizeof_message);
    protobuf_c_message_init(md->output, out);

    const kr_rpc_method *m = srv->by_index[md - srv->opts.service->methods];
    int rv = m->fn(&ctx, in, out);
    if (rv == 0) {
        size_t n = protobuf_c_message_get_packed_size(out);
        reply->body.data = kr_arena_alloc(arena, n ? n : 1);
        reply->body.len = protobuf_c_message_pack(out, reply->body.data);
    } else {
        reply->status = ctx._status ? ctx._status : KREIDE__STATUS__INTERNAL;
        reply->error_code = (char *)(ctx._error_code ? ctx._error_code : "internal");
        reply->message = (char *)(ctx._message ? ctx._message : "internal error");
        reply->field = (char *)(ctx._field ? ctx._field : "");
    }

    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    size_t mi = (size_t)(md - srv->opts.service->methods);
    kr_counter_add(reply->status == KREIDE__STATUS__OK ? srv->m_ok[mi] : served_counter(md->name, reply->status), 1);
    if (reply->status != KREIDE__STATUS__OK && reply->status != KREIDE__STATUS__NOT_FOUND &&
        reply->status != KREIDE__STATUS__INVALID_ARGUMENT)
        kr_log(KR_LOG_INFO, "rpc failed", "method", md->name, "status", status_name(reply->status), "error_code", reply->error_code,
               NULL);
    kr_histogram_observe(srv->m_latency[mi], secs);
}

/* Arms the inbox for the next request, or lets it go idle when the server
 * is draining. Called with the server's lock not held. */
static void inbox_receive(inbox *in)
{
    kr_rpc_server *srv = in->srv;
    pthread_mutex_lock(&srv->lock);
    if (atomic_load(&srv->stopping)) {
        in->state = I_IDLE;
        srv->busy--;
        pthread_cond_broadcast(&srv->settled);
    } else {
        /* Under the lock, so a drain either sees I_RECV and cancels this
         * receive, or has set `stopping` before it. */
        in->state = I_RECV;
        nng_ctx_recv(in->ctx, in->aio);
    }
    pthread_mutex_unlock(&srv->lock);
}

static void inbox_send(inbox *in, nng_msg *reply)
{
    nng_msg_free(in->req);
    in->req = NULL;
    if (reply == NULL) { /* nng could not allocate: the client's deadline answers */
        inbox_receive(in);
        return;
    }
    in->sending = true;
    nng_aio_set_msg(in->aio, reply);
    nng_ctx_send(in->ctx, in->aio);
}

/* Packs a reply that answers the whole message (a malformed batch). */
static void inbox_refuse(inbox *in, const char *message)
{
    Kreide__Reply reply = KREIDE__REPLY__INIT;
    reply.status = KREIDE__STATUS__INVALID_ARGUMENT;
    reply.error_code = "rpc.malformed_envelope";
    reply.message = (char *)message;
    kr_log(KR_LOG_WARN, "batch refused", "reason", message, NULL);
    inbox_send(in, pack_reply(&reply));
}

/* A batch whose last call is answered: one reply carrying every call's. */
static void inbox_send_batch(inbox *in)
{
    Kreide__Reply reply = KREIDE__REPLY__INIT;
    reply.n_batch = in->batch->n_batch;
    reply.batch = in->replies;
    nng_msg *m = pack_reply(&reply);
    for (size_t i = 0; i < reply.n_batch; i++)
        free(in->replies[i].data);
    free(in->replies);
    in->replies = NULL;
    kreide__envelope__free_unpacked(in->batch, NULL);
    in->batch = NULL;
    inbox_send(in, m);
}

/* First byte of a packed Envelope that starts with `batch` (field 14,
 * length-delimited): how a batch is told from a single call without
 * unpacking the call. A single envelope packed in another field order is
 * still a single call; handle() refuses one that also carries a batch. */
#define BATCH_TAG ((14u << 3) | 2u)

/* A request arrived on `in`: queue its calls. */
static void inbox_accept(inbox *in, nng_msg *m)
{
    kr_rpc_server *srv = in->srv;
    in->req = m;
    const uint8_t *body = nng_msg_body(m);
    size_t len = nng_msg_len(m);
    Kreide__Envelope *b = NULL;
    if (len > 0 && body[0] == BATCH_TAG) {
        b = kreide__envelope__unpack(NULL, len, body);
        if (b != NULL && b->n_batch == 0) {
            kreide__envelope__free_unpacked(b, NULL);
            b = NULL;
        }
    }
    if (b != NULL) {
        const char *bad = NULL;
        if (b->n_batch > KR_RPC_MAX_BATCH)
            bad = "a batch holds too many calls";
        else if (b->method[0] != '\0' || b->request_id[0] != '\0' || b->deadline_ms != 0 || b->caller != NULL || b->body.len != 0 ||
                 b->seal != NULL)
            bad = "a batch envelope carries nothing but its calls";
        if (bad != NULL) {
            kreide__envelope__free_unpacked(b, NULL);
            inbox_refuse(in, bad);
            return;
        }
        in->batch = b;
        in->replies = calloc(b->n_batch, sizeof(*in->replies));
        if (in->replies == NULL)
            abort();
        atomic_store(&in->left, (unsigned)b->n_batch);
        kr_counter_add(srv->m_batches, 1);
    }
    size_t n = b != NULL ? b->n_batch : 1;
    pthread_mutex_lock(&srv->lock);
    in->state = I_BUSY;
    for (size_t i = 0; i < n; i++) {
        job *j = &srv->queue[(srv->qhead + srv->qlen++) % srv->qcap];
        j->in = in;
        j->index = (uint32_t)i;
        j->data = b != NULL ? b->batch[i].data : body;
        j->len = b != NULL ? b->batch[i].len : len;
    }
    /* Wake as many waiting workers as there are new jobs, no more, and
     * after unlocking, so that they do not wake into a held lock. */
    size_t wake = n < (size_t)srv->waiting ? n : (size_t)srv->waiting;
    pthread_mutex_unlock(&srv->lock);
    for (size_t i = 0; i < wake; i++)
        pthread_cond_signal(&srv->work);
}

/* Runs on an nng thread when an inbox's receive or send finishes. */
static void inbox_done(void *arg)
{
    inbox *in = arg;
    kr_rpc_server *srv = in->srv;
    int rv = nng_aio_result(in->aio);
    if (in->sending) {
        in->sending = false;
        if (rv != 0)
            nng_msg_free(nng_aio_get_msg(in->aio));
        inbox_receive(in);
        return;
    }
    if (rv == NNG_ECANCELED || rv == NNG_ECLOSED) {
        pthread_mutex_lock(&srv->lock);
        in->state = I_IDLE;
        srv->busy--;
        pthread_cond_broadcast(&srv->settled);
        pthread_mutex_unlock(&srv->lock);
        return;
    }
    if (rv != 0) {
        inbox_receive(in);
        return;
    }
    inbox_accept(in, nng_aio_get_msg(in->aio));
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    kr_rpc_server *srv = w->srv;
    for (;;) {
        pthread_mutex_lock(&srv->lock);
        while (srv->qlen == 0 && !srv->workers_stop) {
            srv->waiting++;
            pthread_cond_wait(&srv->work, &srv->lock);
            srv->waiting--;
        }
        if (srv->qlen == 0) {
            pthread_mutex_unlock(&srv->lock);
            break;
        }
        job j = srv->queue[srv->qhead];
        srv->qhead = (srv->qhead + 1) % srv->qcap;
        srv->qlen--;
        pthread_mutex_unlock(&srv->lock);

        Kreide__Reply reply = KREIDE__REPLY__INIT;
        handle(w, j.data, j.len, &reply);
        inbox *in = j.in;
        if (in->batch == NULL) {
            nng_msg *out = pack_reply(&reply);
            kr_arena_reset(&w->arena);
            kr_log_set_request_id(NULL);
            inbox_send(in, out);
            continue;
        }
        size_t n = kreide__reply__get_packed_size(&reply);
        uint8_t *buf = malloc(n ? n : 1);
        if (buf == NULL)
            abort();
        in->replies[j.index].data = buf;
        in->replies[j.index].len = kreide__reply__pack(&reply, buf);
        kr_arena_reset(&w->arena);
        kr_log_set_request_id(NULL);
        if (atomic_fetch_sub(&in->left, 1) == 1)
            inbox_send_batch(in);
    }
    return NULL;
}

static void free_server(kr_rpc_server *srv)
{
    for (int i = 0; i < srv->ninboxes; i++) {
        if (srv->inboxes[i].aio)
            nng_aio_free(srv->inboxes[i].aio);
    }
    for (int i = 0; i < srv->nworkers; i++) {
        worker *w = &srv->workers[i];
        if (w->pg)
            kr_pg_free(w->pg);
        kr_arena_free(&w->arena);
    }
    pthread_cond_destroy(&srv->settled);
    pthread_cond_destroy(&srv->work);
    pthread_mutex_destroy(&srv->lock);
    free(srv->queue);
    free(srv->inboxes);
    free(srv->workers);
    free(srv->by_index);
    free(srv->m_latency);
    free(srv->m_ok);
    free(srv);
}

/* Refuses connections that arrive while draining. Closing the listener
 * instead would also close every connection it accepted, and with them the
 * replies of the requests still being served. */
static void refuse_while_draining(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    kr_rpc_server *srv = arg;
    (void)ev;
    if (atomic_load(&srv->stopping))
        nng_pipe_close(p);
}

int kr_rpc_server_start(const kr_rpc_server_opts *opts, kr_rpc_server **out, char *err, size_t errlen)
{
    const ProtobufCServiceDescriptor *sd = opts->service;
    if (sd == NULL) {
        snprintf(err, errlen, "no service descriptor");
        return -1;
    }
    if (opts->workers < 1) {
        snprintf(err, errlen, "need at least one worker");
        return -1;
    }
    if (opts->keys == NULL) {
        /* Without a keyring no envelope could be verified. */
        snprintf(err, errlen, "no internal keys to verify envelope seals");
        return -1;
    }
    kr_rpc_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        abort();
    srv->opts = *opts;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->work, NULL);
    pthread_cond_init(&srv->settled, NULL);
    srv->by_index = calloc(sd->n_methods, sizeof(*srv->by_index));
    if (srv->by_index == NULL)
        abort();
    for (size_t i = 0; i < opts->nmethods; i++) {
        const kr_rpc_method *m = &opts->methods[i];
        const ProtobufCMethodDescriptor *md = protobuf_c_service_descriptor_get_method_by_name(sd, m->name);
        if (md == NULL) {
            snprintf(err, errlen, "%s has no method %s", sd->name, m->name);
            goto fail;
        }
        if (md->input->sizeof_message != m->in_size || md->output->sizeof_message != m->out_size) {
            snprintf(err, errlen, "%s/%s: handler types do not match %s -> %s", sd->name, m->name, md->input->name,
                     md->output->name);
            goto fail;
        }
        srv->by_index[md - sd->methods] = m;
    }
    for (unsigned i = 0; i < sd->n_methods; i++) {
        if (srv->by_index[i] == NULL) {
            snprintf(err, errlen, "%s/%s has no handler", sd->name, sd->methods[i].name);
            goto fail;
        }
    }

    int rv = nng_rep0_open(&srv->sock);
    if (rv != 0) {
        snprintf(err, errlen, "nng_rep0_open: %s", nng_strerror(rv));
        goto fail;
    }
    nng_socket_set_size(srv->sock, NNG_OPT_RECVMAXSZ, KR_RPC_MAX_MESSAGE);
    nng_pipe_notify(srv->sock, NNG_PIPE_EV_ADD_PRE, refuse_while_draining, srv);
    srv->m_latency = calloc(sd->n_methods, sizeof(*srv->m_latency));
    srv->m_ok = calloc(sd->n_methods, sizeof(*srv->m_ok));
    if (srv->m_latency == NULL || srv->m_ok == NULL)
        abort();
    for (unsigned i = 0; i < sd->n_methods; i++) {
        char labels[96];
        snprintf(labels, sizeof(labels), "method=\"%s\"", sd->methods[i].name);
        srv->m_latency[i] = kr_metrics_histogram("kreide_rpc_duration_seconds", "Time spent serving RPCs, by method", labels,
                                                 kr_metrics_latency_bounds, kr_metrics_latency_nbounds);
        srv->m_ok[i] = served_counter(sd->methods[i].name, KREIDE__STATUS__OK);
    }
    srv->m_bad_seal = kr_metrics_counter("kreide_rpc_rejected_envelopes_total", "Envelopes whose seal did not verify", NULL);

    srv->m_batches = kr_metrics_counter("kreide_rpc_batches_total", "Request messages that carried several calls", NULL);

    srv->nworkers = opts->workers;
    srv->workers = calloc((size_t)opts->workers, sizeof(worker));
    /* Twice as many inboxes as workers: while the workers run one request's
     * calls, the next requests are already received and queued. */
    srv->ninboxes = 2 * opts->workers < 4 ? 4 : 2 * opts->workers;
    srv->inboxes = calloc((size_t)srv->ninboxes, sizeof(inbox));
    srv->qcap = (size_t)srv->ninboxes * KR_RPC_MAX_BATCH;
    srv->queue = calloc(srv->qcap, sizeof(job));
    if (srv->workers == NULL || srv->inboxes == NULL || srv->queue == NULL)
        abort();
    for (int i = 0; i < opts->workers; i++) {
        worker *w = &srv->workers[i];
        w->srv = srv;
        if (opts->database_url != NULL)
            w->pg = kr_pg_new(opts->database_url);
    }
    for (int i = 0; i < srv->ninboxes; i++) {
        inbox *in = &srv->inboxes[i];
        in->srv = srv;
        if ((rv = nng_ctx_open(&in->ctx, srv->sock)) != 0 || (rv = nng_aio_alloc(&in->aio, inbox_done, in)) != 0) {
            snprintf(err, errlen, "nng: %s", nng_strerror(rv));
            nng_close(srv->sock);
            goto fail;
        }
    }
    if ((rv = nng_listen(srv->sock, opts->listen_url, NULL, 0)) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", opts->listen_url, nng_strerror(rv));
        nng_close(srv->sock);
        goto fail;
    }
    for (int i = 0; i < opts->workers; i++)
        pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]);
    srv->busy = srv->ninboxes;
    for (int i = 0; i < srv->ninboxes; i++)
        inbox_receive(&srv->inboxes[i]);
    *out = srv;
    return 0;
fail:
    free_server(srv);
    return -1;
}

/* How long a drain waits for nng to close the socket. nng 1.5.2 can hang
 * in nng_close when a connection closes while a reply is on its way (the
 * close race of nanomsg/nng#1543); the drain then gives up on the socket
 * instead of hanging the process. */
#define CLOSE_WAIT_MS 3000
#define REPLY_FLUSH_MS 100 /* see kr_rpc_server_drain */

typedef struct {
    nng_socket sock;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} close_job;

/* Servers whose socket did not close in time: kept reachable and never
 * freed, since nng may still call back into them (their pipe callback). */
static kr_rpc_server *abandoned[16];
static atomic_int nabandoned;

static void *close_main(void *arg)
{
    close_job *j = arg;
    nng_close(j->sock);
    pthread_mutex_lock(&j->lock);
    j->done = true;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

/* Closes `sock` on a thread of its own; true when it closed within
 * CLOSE_WAIT_MS. Otherwise the thread and its job are left to nng. */
static bool close_bounded(nng_socket sock)
{
    close_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        abort();
    j->sock = sock;
    pthread_mutex_init(&j->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_t t;
    if (pthread_create(&t, NULL, close_main, j) != 0) {
        nng_close(sock);
        j->done = true;
    } else {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += CLOSE_WAIT_MS / 1000;
        until.tv_nsec += (long)(CLOSE_WAIT_MS % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&j->lock);
        while (!j->done && pthread_cond_timedwait(&j->cond, &j->lock, &until) != ETIMEDOUT)
            ;
        bool done = j->done;
        pthread_mutex_unlock(&j->lock);
        if (!done) {
            pthread_detach(t);
            return false; /* the job stays with its thread */
        }
        pthread_join(t, NULL);
    }
    pthread_cond_destroy(&j->cond);
    pthread_mutex_destroy(&j->lock);
    free(j);
    return true;
}

void kr_rpc_server_drain(kr_rpc_server *srv)
{
    /* From here on new connections are refused (refuse_while_draining) and
     * idle workers stop receiving. Connections already open stay open until
     * every worker has sent its reply; what they still have queued is resent
     * by the clients when the socket closes. */
    nng_aio **receiving = calloc((size_t)srv->ninboxes, sizeof(*receiving));
    if (receiving == NULL)
        abort();
    int nreceiving = 0;
    pthread_mutex_lock(&srv->lock);
    atomic_store(&srv->stopping, 1);
    for (int i = 0; i < srv->ninboxes; i++) {
        if (srv->inboxes[i].state == I_RECV)
            receiving[nreceiving++] = srv->inboxes[i].aio;
    }
    pthread_mutex_unlock(&srv->lock);
    /* Outside the lock: a cancelled receive completes on an nng thread,
     * which takes it. A receive that finished first is served: its inbox
     * goes idle once it has sent the reply. */
    for (int i = 0; i < nreceiving; i++)
        nng_aio_cancel(receiving[i]);
    free(receiving);
    pthread_mutex_lock(&srv->lock);
    while (srv->busy > 0)
        pthread_cond_wait(&srv->settled, &srv->lock);
    srv->workers_stop = true;
    pthread_cond_broadcast(&srv->work);
    pthread_mutex_unlock(&srv->lock);
    for (int i = 0; i < srv->nworkers; i++)
        pthread_join(srv->workers[i].thread, NULL);
    /* A finished send has handed the reply to a connection, not written it
     * yet; closing the connection now would drop it, and the client would
     * resend the request to another replica, which would run it a second
     * time. nng has no flush, so give its writers a moment. */
    nng_msleep(REPLY_FLUSH_MS);
    for (int i = 0; i < srv->ninboxes; i++)
        nng_ctx_close(srv->inboxes[i].ctx);
    if (!close_bounded(srv->sock)) {
        kr_log(KR_LOG_WARN, "the RPC socket did not close in time; leaving it to process exit", "issue", "nanomsg/nng#1543", NULL);
        int n = atomic_fetch_add(&nabandoned, 1);
        if (n < (int)(sizeof(abandoned) / sizeof(abandoned[0])))
            abandoned[n] = srv;
        return;
    }
    free_server(srv);
}

void kr_rpc_block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int kr_rpc_wait_signal(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    return sig;
}

int kr_rpc_http_status(Kreide__Status s)
{
    switch (s) {
    case KREIDE__STATUS__OK:
        return 200;
    case KREIDE__STATUS__INVALID_ARGUMENT:
        return 400;
    case KREIDE__STATUS__UNAUTHENTICATED:
        return 401;
    case KREIDE__STATUS__PERMISSION_DENIED:
        return 403;
    case KREIDE__STATUS__NOT_FOUND:
        return 404;
    case KREIDE__STATUS__ALREADY_EXISTS:
    case KREIDE__STATUS__FAILED_PRECONDITION:
        return 409;
    case KREIDE__STATUS__RESOURCE_EXHAUSTED:
        return 429;
    case KREIDE__STATUS__DEADLINE_EXCEEDED:
        return 504;
    case KREIDE__STATUS__UNAVAILABLE:
        return 503;
    case KREIDE__STATUS__UNIMPLEMENTED:
        return 501;
    default:
        return 500;
    }
}
