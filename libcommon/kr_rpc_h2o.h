/*
 * kr_rpc_h2o — RPC calls from an h2o event loop.
 *
 * kr_rpc_call completes on one of nng's threads, where nothing of h2o may be
 * touched. This adapter carries each completion back to the event loop that
 * started the call through h2o's multithread queue, so the callback runs on
 * that loop's thread and may use the request it belongs to.
 *
 * Calls started during one turn of the loop are sent together when the turn
 * ends, one batch per service (kr_rpc_batch_*). While KR_RPC_H2O_IN_FLIGHT
 * request messages of a service are on their way, further calls gather
 * until one comes back, or for at most KR_RPC_H2O_GATHER_MS. So a busy loop
 * pays the transport's cost once for many requests, an idle one sends each
 * call at the end of the turn that made it, and a slow call holds the
 * others up by a millisecond at most.
 */
#ifndef KR_RPC_H2O_H
#define KR_RPC_H2O_H

#include <h2o.h>

#include "kr_rpc.h"

#define KR_RPC_H2O_IN_FLIGHT 2
#define KR_RPC_H2O_GATHER_MS 1

/* One per event loop; used only from that loop's thread. */
typedef struct st_kr_rpc_h2o_t kr_rpc_h2o;

/* Attaches to `loop` and its multithread queue (created with
 * h2o_multithread_create_queue by the caller, who keeps it alive). */
kr_rpc_h2o *kr_rpc_h2o_new(h2o_loop_t *loop, h2o_multithread_queue_t *queue);

/* Detaches and frees; no call may still be in flight. */
void kr_rpc_h2o_free(kr_rpc_h2o *r);

/* Calls in flight on this loop. */
size_t kr_rpc_h2o_pending(const kr_rpc_h2o *r);

/* Like kr_rpc_call, but `cb` runs on the loop's thread (during
 * h2o_evloop_run), exactly once; it owns `res`. The call leaves when the
 * loop's current turn ends. */
void kr_rpc_h2o_call(kr_rpc_h2o *r, kr_rpc_client *c, const kr_rpc_request *req, kr_rpc_cb cb, void *arg);

#endif
