#include "kr_rpc_h2o.h"

#include <stdlib.h>

/* Services a loop calls: a handful, so a short array searched in order. */
#define MAX_CLIENTS 16

struct st_kr_rpc_h2o_t {
    h2o_multithread_receiver_t receiver;
    h2o_multithread_queue_t *queue;
    h2o_loop_t *loop;
    size_t pending;
    /* This iteration's calls, one batch per client, sent when the loop has
     * run every ready callback (a zero timeout runs after them). */
    h2o_timeout_t flush_timeout;
    h2o_timeout_entry_t flush;
    kr_rpc_batch *batches[MAX_CLIENTS];
    size_t nbatches;
};

typedef struct {
    h2o_multithread_message_t super;
    kr_rpc_h2o *owner;
    kr_rpc_cb cb;
    void *arg;
    kr_rpc_result *res;
} completion;

static void on_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    kr_rpc_h2o *r = (kr_rpc_h2o *)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        completion *c = H2O_STRUCT_FROM_MEMBER(completion, super.link, messages->next);
        h2o_linklist_unlink(&c->super.link);
        r->pending--;
        c->cb(c->arg, c->res);
        free(c);
    }
}

static void flush_batches(h2o_timeout_entry_t *entry)
{
    kr_rpc_h2o *r = H2O_STRUCT_FROM_MEMBER(kr_rpc_h2o, flush, entry);
    for (size_t i = 0; i < r->nbatches; i++)
        kr_rpc_batch_send(r->batches[i]);
}

kr_rpc_h2o *kr_rpc_h2o_new(h2o_loop_t *loop, h2o_multithread_queue_t *queue)
{
    kr_rpc_h2o *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    r->queue = queue;
    r->loop = loop;
    h2o_multithread_register_receiver(queue, &r->receiver, on_messages);
    h2o_timeout_init(loop, &r->flush_timeout, 0);
    r->flush.cb = flush_batches;
    return r;
}

void kr_rpc_h2o_free(kr_rpc_h2o *r)
{
    if (r == NULL)
        return;
    if (h2o_timeout_is_linked(&r->flush))
        h2o_timeout_unlink(&r->flush);
    for (size_t i = 0; i < r->nbatches; i++)
        kr_rpc_batch_free(r->batches[i]);
    h2o_timeout_dispose(r->loop, &r->flush_timeout);
    h2o_multithread_unregister_receiver(r->queue, &r->receiver);
    free(r);
}

size_t kr_rpc_h2o_pending(const kr_rpc_h2o *r)
{
    return r->pending;
}

/* Runs on an nng thread (or on the loop's own thread for a fast failure):
 * only hands the result over. */
static void on_done(void *arg, kr_rpc_result *res)
{
    completion *c = arg;
    c->res = res;
    h2o_multithread_send_message(&c->owner->receiver, &c->super);
}

static kr_rpc_batch *batch_for(kr_rpc_h2o *r, kr_rpc_client *client)
{
    for (size_t i = 0; i < r->nbatches; i++) {
        if (kr_rpc_batch_client(r->batches[i]) == client)
            return r->batches[i];
    }
    if (r->nbatches == MAX_CLIENTS)
        return NULL;
    return r->batches[r->nbatches++] = kr_rpc_batch_new(client);
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
    kr_rpc_batch *b = batch_for(r, client);
    if (b == NULL) {
        kr_rpc_call(client, req, on_done, c);
        return;
    }
    kr_rpc_batch_add(b, req, on_done, c);
    if (kr_rpc_batch_len(b) > 0 && !h2o_timeout_is_linked(&r->flush))
        h2o_timeout_link(r->loop, &r->flush_timeout, &r->flush);
}
