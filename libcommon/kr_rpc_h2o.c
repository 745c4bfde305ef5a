#include "kr_rpc_h2o.h"

#include <stdlib.h>

/* Services a loop calls: a handful, so a short array searched in order. */
#define MAX_CLIENTS 16

typedef struct st_completion_t completion;

/* One service's calls from this loop. Calls started while fewer than
 * KR_RPC_H2O_IN_FLIGHT request messages are on their way leave at the end
 * of the loop's turn; beyond that they gather until a message comes back,
 * or for at most KR_RPC_H2O_GATHER_MS. */
typedef struct {
    struct st_kr_rpc_h2o_t *owner;
    kr_rpc_batch *batch;
    size_t in_flight;   /* request messages sent and not yet answered */
    completion *unsent; /* the calls in `batch`, oldest first */
    completion **unsent_tail;
} lane;

/* What crosses from an nng thread to the loop: one call's completion, or a
 * whole request message's (a flight) at once, which saves the loop a
 * wake-up and the queue a lock per call. */
typedef struct {
    h2o_multithread_message_t super;
    bool is_flight;
} handover;

/* One call. */
struct st_completion_t {
    handover h;
    kr_rpc_h2o *owner;
    kr_rpc_cb cb;
    void *arg;
    kr_rpc_result *res;
    struct st_flight_t *flight; /* the message it travels in, once sent */
    completion *next;           /* in its lane's unsent list, then its flight's */
};

/* One request message of a lane on its way. */
typedef struct st_flight_t {
    handover h;
    kr_rpc_h2o *owner;
    lane *lane;
    completion *calls;
} flight;

struct st_kr_rpc_h2o_t {
    h2o_multithread_receiver_t receiver;
    h2o_multithread_queue_t *queue;
    h2o_loop_t *loop;
    size_t pending;
    h2o_timeout_t turn_end; /* zero: runs after the turn's ready callbacks */
    h2o_timeout_entry_t flush;
    h2o_timeout_t gather;
    h2o_timeout_entry_t gathered;
    lane lanes[MAX_CLIENTS];
    size_t nlanes;
};

/* Sends what may go: every lane below its limit, or all when `all`. */
static void flush_lanes(kr_rpc_h2o *r, bool all)
{
    bool waiting = false;
    for (size_t i = 0; i < r->nlanes; i++) {
        lane *l = &r->lanes[i];
        if (all || l->in_flight < KR_RPC_H2O_IN_FLIGHT)
            kr_rpc_batch_send(l->batch);
        else if (kr_rpc_batch_len(l->batch) > 0)
            waiting = true;
    }
    if (waiting && !h2o_timeout_is_linked(&r->gathered))
        h2o_timeout_link(r->loop, &r->gather, &r->gathered);
    else if (!waiting && h2o_timeout_is_linked(&r->gathered))
        h2o_timeout_unlink(&r->gathered);
}

static void on_turn_end(h2o_timeout_entry_t *entry)
{
    kr_rpc_h2o *r = H2O_STRUCT_FROM_MEMBER(kr_rpc_h2o, flush, entry);
    flush_lanes(r, false);
}

static void on_gathered(h2o_timeout_entry_t *entry)
{
    kr_rpc_h2o *r = H2O_STRUCT_FROM_MEMBER(kr_rpc_h2o, gathered, entry);
    flush_lanes(r, true);
}

static void complete(kr_rpc_h2o *r, completion *c)
{
    r->pending--;
    c->cb(c->arg, c->res);
    free(c);
}

static void on_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    kr_rpc_h2o *r = (kr_rpc_h2o *)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        handover *h = H2O_STRUCT_FROM_MEMBER(handover, super.link, messages->next);
        h2o_linklist_unlink(&h->super.link);
        if (!h->is_flight) {
            complete(r, (completion *)h);
            continue;
        }
        flight *f = (flight *)h;
        for (completion *c = f->calls, *next; c != NULL; c = next) {
            next = c->next;
            complete(r, c);
        }
        f->lane->in_flight--;
        free(f);
    }
    /* Calls that gathered while the lanes were full may go now. */
    if (!h2o_timeout_is_linked(&r->flush))
        h2o_timeout_link(r->loop, &r->turn_end, &r->flush);
}

/* The lane's batch is leaving with its unsent calls: they fly together. */
static void *on_lane_send(void *arg, size_t ncalls)
{
    (void)ncalls;
    lane *l = arg;
    flight *f = calloc(1, sizeof(*f));
    if (f == NULL)
        abort();
    f->h.is_flight = true;
    f->owner = l->owner;
    f->lane = l;
    f->calls = l->unsent;
    for (completion *c = l->unsent; c != NULL; c = c->next)
        c->flight = f;
    l->unsent = NULL;
    l->unsent_tail = &l->unsent;
    l->in_flight++;
    return f;
}

/* Every call of the flight has its result: hand them over together. */
static void on_lane_answered(void *token)
{
    flight *f = token;
    h2o_multithread_send_message(&f->owner->receiver, &f->h.super);
}

kr_rpc_h2o *kr_rpc_h2o_new(h2o_loop_t *loop, h2o_multithread_queue_t *queue)
{
    kr_rpc_h2o *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    r->queue = queue;
    r->loop = loop;
    h2o_multithread_register_receiver(queue, &r->receiver, on_messages);
    h2o_timeout_init(loop, &r->turn_end, 0);
    h2o_timeout_init(loop, &r->gather, KR_RPC_H2O_GATHER_MS);
    r->flush.cb = on_turn_end;
    r->gathered.cb = on_gathered;
    return r;
}

void kr_rpc_h2o_free(kr_rpc_h2o *r)
{
    if (r == NULL)
        return;
    if (h2o_timeout_is_linked(&r->flush))
        h2o_timeout_unlink(&r->flush);
    if (h2o_timeout_is_linked(&r->gathered))
        h2o_timeout_unlink(&r->gathered);
    for (size_t i = 0; i < r->nlanes; i++)
        kr_rpc_batch_free(r->lanes[i].batch);
    h2o_timeout_dispose(r->loop, &r->turn_end);
    h2o_timeout_dispose(r->loop, &r->gather);
    h2o_multithread_unregister_receiver(r->queue, &r->receiver);
    free(r);
}

size_t kr_rpc_h2o_pending(const kr_rpc_h2o *r)
{
    return r->pending;
}

/* Runs on an nng thread (or on the loop's own thread for a fast failure).
 * A call of a flight only keeps its result: on_lane_answered hands the
 * flight over once all have theirs. Any other call is handed over alone. */
static void on_done(void *arg, kr_rpc_result *res)
{
    completion *c = arg;
    c->res = res;
    if (c->flight == NULL)
        h2o_multithread_send_message(&c->owner->receiver, &c->h.super);
}

static lane *lane_for(kr_rpc_h2o *r, kr_rpc_client *client)
{
    for (size_t i = 0; i < r->nlanes; i++) {
        if (kr_rpc_batch_client(r->lanes[i].batch) == client)
            return &r->lanes[i];
    }
    if (r->nlanes == MAX_CLIENTS)
        return NULL;
    lane *l = &r->lanes[r->nlanes++];
    l->owner = r;
    l->batch = kr_rpc_batch_new(client);
    l->unsent_tail = &l->unsent;
    kr_rpc_batch_hooks hooks = {.sent = on_lane_send, .answered = on_lane_answered, .arg = l};
    kr_rpc_batch_set_hooks(l->batch, &hooks);
    return l;
}

void kr_rpc_h2o_call(kr_rpc_h2o *r, kr_rpc_client *client, const kr_rpc_request *req, kr_rpc_cb cb, void *arg)
{
    completion *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    c->owner = r;
    c->cb = cb;
    c->arg = arg;
    r->pending++;
    lane *l = req->alone ? NULL : lane_for(r, client);
    if (l == NULL) {
        kr_rpc_call(client, req, on_done, c);
        return;
    }
    kr_rpc_batch_add(l->batch, req, on_done, c);
    if (c->res != NULL)
        return; /* failed at once, never added */
    *l->unsent_tail = c;
    l->unsent_tail = &c->next;
    if (!h2o_timeout_is_linked(&r->flush))
        h2o_timeout_link(r->loop, &r->turn_end, &r->flush);
}
