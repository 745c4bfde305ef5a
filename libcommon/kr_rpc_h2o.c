#include "kr_rpc_h2o.h"

#include <stdlib.h>

struct st_kr_rpc_h2o_t {
    h2o_multithread_receiver_t receiver;
    h2o_multithread_queue_t *queue;
    size_t pending;
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

kr_rpc_h2o *kr_rpc_h2o_new(h2o_multithread_queue_t *queue)
{
    kr_rpc_h2o *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    r->queue = queue;
    h2o_multithread_register_receiver(queue, &r->receiver, on_messages);
    return r;
}

void kr_rpc_h2o_free(kr_rpc_h2o *r)
{
    if (r == NULL)
        return;
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

void kr_rpc_h2o_call(kr_rpc_h2o *r, kr_rpc_client *client, const kr_rpc_request *req, kr_rpc_cb cb, void *arg)
{
    completion *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    c->owner = r;
    c->cb = cb;
    c->arg = arg;
    r->pending++;
    kr_rpc_call(client, req, on_done, c);
}
