/*
 * kr_redis_h2o — Redis on an h2o 2.2 event loop, for the gateway.
 *
 * Two layers:
 *
 *  - kr_redis_h2o_attach: a hiredis 0.14 event adapter (like the ones in
 *    hiredis/adapters/) that lets an h2o_evloop_t drive a redisAsyncContext.
 *  - kr_redis_async: a small client on top that keeps two connections to one
 *    server, one for commands and one for pub/sub (a subscribed connection
 *    accepts no other commands), reconnects with backoff when either drops,
 *    and subscribes again after every reconnect.
 *
 * Threading: everything here belongs to the thread that runs the loop.
 * Every function must be called on that thread, and every callback runs on
 * it; with one loop per thread, each gateway thread has its own client.
 *
 * Signals: as for h2o itself, the process must ignore SIGPIPE.
 *
 * Build: compile with h2o's evloop (H2O_USE_LIBUV=0).
 */
#ifndef KR_REDIS_H2O_H
#define KR_REDIS_H2O_H

#include <stdbool.h>
#include <stddef.h>

#include <h2o/socket.h>
#include <h2o/timeout.h>
#include <hiredis/async.h>

#include "kr_redis.h"

/* ------------------------------------------------------------- adapter */

/* Lets `loop` drive `ac`: hiredis's read/write/cleanup hooks are pointed at
 * an h2o socket that watches the connection. h2o only reports readiness;
 * hiredis alone reads and writes the connection. The adapter holds its own
 * duplicate of the descriptor, so h2o and hiredis each close exactly the one
 * they own. The adapter frees itself when hiredis frees `ac`.
 *
 * Call right after redisAsyncConnect*, before any command and before
 * redisAsyncSetConnectCallback (which asks for the first write event).
 * Returns 0; KR_REDIS_EINVAL when `ac` is already attached to an event
 * library; KR_REDIS_ELIMIT when no descriptor is left to duplicate. */
__attribute__((warn_unused_result)) int kr_redis_h2o_attach(h2o_loop_t *loop, redisAsyncContext *ac);

/* -------------------------------------------------------------- client */

typedef struct st_kr_redis_async_t kr_redis_async;

/* Delays before successive reconnect attempts, in milliseconds; the last one
 * repeats until a connection succeeds. */
#define KR_REDIS_ASYNC_BACKOFF_MS                                                                                                  \
    {                                                                                                                              \
        50, 100, 200, 400, 800, 1600, 3200                                                                                         \
    }
/* Most subscriptions one client holds (the gateway subscribes to patterns). */
#define KR_REDIS_ASYNC_MAX_SUBSCRIPTIONS 64
/* Longest channel name or pattern accepted by kr_redis_async_subscribe. */
#define KR_REDIS_ASYNC_MAX_CHANNEL 256
/* Most commands awaiting their reply at once; more fail with ELIMIT, so a
 * stalled Redis cannot make the output buffer grow without end. */
#define KR_REDIS_ASYNC_MAX_PENDING 10000

/* A message received on a subscription. Every pointer is valid only during
 * the callback. `channel` and `payload` are not NUL-terminated. */
typedef struct {
    const char *channel; /* the channel it was published to */
    size_t channel_len;
    const char *pattern; /* the matching pattern, NULL for a channel subscription */
    size_t pattern_len;
    const char *payload;
    size_t payload_len;
} kr_redis_message;

/* Receives the messages of one subscription. */
typedef void (*kr_redis_message_cb)(kr_redis_async *r, const kr_redis_message *msg, void *privdata);

/* Told when the pub/sub connection changes state: `up` is true once the
 * server has confirmed every subscription on a (re)established connection,
 * false when that connection is lost. Messages published while it was down
 * are gone: Redis pub/sub does not queue them, so a listener that needs
 * them must resynchronise from the durable store after an `up`. */
typedef void (*kr_redis_state_cb)(kr_redis_async *r, bool up, void *privdata);

/* Creates a client for `url` (see kr_redis_url_parse) on `loop` and starts
 * connecting the command connection; a connect attempt that has not
 * finished after `connect_timeout_ms` (> 0) is abandoned and retried after
 * the backoff. Returns NULL with a message in `err` (when errlen > 0) for a
 * bad URL or timeout. Free with kr_redis_async_free before destroying the
 * loop (the loop asserts that no timer is left on it).
 *
 * Host names are resolved with the blocking resolver when a connection is
 * (re)opened; prefer an address or a unix socket where that matters. */
__attribute__((warn_unused_result)) kr_redis_async *kr_redis_async_new(h2o_loop_t *loop, const char *url, int connect_timeout_ms,
                                                                       char *err, size_t errlen);

/* Closes both connections and frees `r`. Callbacks of commands still
 * waiting for a reply run once more, with a NULL reply, before it returns;
 * subscriptions are dropped silently. Must not be called from within a
 * callback of this client. NULL is ignored. */
void kr_redis_async_free(kr_redis_async *r);

/* Sends a command formatted as for redisCommand (`%s`, `%b` with pointer and
 * size_t length) on the command connection. It is queued while a connection
 * is being established.
 *
 * `cb` (may be NULL) is called exactly once: with the redisReply (owned by
 * hiredis, freed when the callback returns; an error reply has type
 * REDIS_REPLY_ERROR), or with a NULL reply when the connection failed first,
 * in which case the command may or may not have run. `ac` passed to it is
 * valid only during the call. Nothing is retried.
 *
 * Returns 0; KR_REDIS_ENOTCONN while there is no connection (between
 * reconnect attempts), KR_REDIS_EINVAL for a bad format, KR_REDIS_ELIMIT when
 * KR_REDIS_ASYNC_MAX_PENDING commands are waiting. On failure `cb` is never
 * called. Do not send SUBSCRIBE, PSUBSCRIBE or MONITOR this way; use
 * kr_redis_async_subscribe. */
__attribute__((warn_unused_result)) int kr_redis_async_command(kr_redis_async *r, redisCallbackFn *cb, void *privdata,
                                                               const char *fmt, ...);

/* Same with an argument vector (`argvlen` may be NULL for C strings). */
__attribute__((warn_unused_result)) int kr_redis_async_commandargv(kr_redis_async *r, redisCallbackFn *cb, void *privdata, int argc,
                                                                   const char **argv, const size_t *argvlen);

/* Subscribes to a channel, or with `pattern` to a glob-style pattern
 * (PSUBSCRIBE), on the client's pub/sub connection (opened by the first
 * subscription). The subscription lasts until kr_redis_async_free and is
 * renewed after every reconnect; `cb` gets every message. The name is
 * copied. Returns 0; KR_REDIS_EINVAL for an empty or overlong name,
 * KR_REDIS_EEXIST when already subscribed the same way, KR_REDIS_ELIMIT
 * beyond KR_REDIS_ASYNC_MAX_SUBSCRIPTIONS. */
__attribute__((warn_unused_result)) int kr_redis_async_subscribe(kr_redis_async *r, const char *channel_or_pattern, bool pattern,
                                                                 kr_redis_message_cb cb, void *privdata);

/* Sets (or with NULL clears) the callback told about the pub/sub
 * connection's state; see kr_redis_state_cb. */
void kr_redis_async_on_subscriptions(kr_redis_async *r, kr_redis_state_cb cb, void *privdata);

/* True while the command connection is established (for readiness checks). */
bool kr_redis_async_is_connected(const kr_redis_async *r);

/* The last connection problem seen ("" when there was none yet); owned by
 * `r`, valid until the loop runs again. Never contains the password. */
const char *kr_redis_async_errstr(const kr_redis_async *r);

#endif
