/*
 * kr_rpc — request/reply RPC between Kreide daemons over nng + protobuf-c.
 *
 * Wire: an nng REQ/REP message whose body is one packed, sealed
 * kreide.Envelope; the reply body is one packed kreide.Reply (common.proto).
 *
 * Server: a pool of worker threads, each with its own nng context and its own
 * PostgreSQL connection, so a handler may block on the database. Requests are
 * dispatched through the protoc-c generated ProtobufCServiceDescriptor: the
 * server looks up the method, checks the envelope's seal and deadline,
 * unpacks the input with the method's descriptor, calls the handler (an
 * ordinary typed C function, see KR_RPC_HANDLER) and packs its output.
 * Every server also answers kreide.Health/Check itself.
 *
 * Client: asynchronous; each call is an nng aio with the call's deadline as
 * timeout. The client dials every URL it is given and nng reconnects by
 * itself; requests are spread over the connected peers. Completion callbacks
 * run on nng's threads: an event-loop program hands them to its own loop (see
 * kr_rpc_h2o.h).
 */
#ifndef KR_RPC_H
#define KR_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.pb-c.h"
#include "kr_arena.h"
#include "kr_seal.h"

typedef struct kr_pg kr_pg; /* kr_pg.h */

/* Connections the client opens to each URL: nng moves one message at a time
 * through a connection, so several to the same daemon let requests overlap.
 * kr_rpc_client_peers counts connections, not replicas. */
#define KR_RPC_CONNS_PER_URL 4

/* Most calls one request message carries (common.proto, Envelope.batch). */
#define KR_RPC_MAX_BATCH 64

/* Largest request message a server accepts, in bytes. */
#define KR_RPC_MAX_MESSAGE (4u * 1024 * 1024)

/* A batch stops growing at this many bytes of calls. */
#define KR_RPC_MAX_BATCH_BYTES (1024u * 1024)

/* Calls whose deadlines differ by more than this go in separate batches. */
#define KR_RPC_BATCH_SLACK_MS 50

/* Largest reply message a client accepts: a batch's reply carries all its
 * calls' replies. */
#define KR_RPC_MAX_REPLY (64u * 1024 * 1024)

/* =========================================================== server side */

/* What a handler gets besides its input and output. */
typedef struct st_kr_rpc_ctx_t {
    const Kreide__Caller *caller; /* verified; never NULL (ANONYMOUS when absent) */
    const char *request_id;
    const char *method;  /* the method's short name, e.g. "CreateSchool" */
    int64_t deadline_ms; /* Unix ms; 0 = none */
    kr_pg *pg;           /* this worker's connection; NULL without a database */
    void *app;           /* the service's state from kr_rpc_server_opts */
    kr_arena *arena;     /* request scratch, released after the reply is sent */
    /* The failure reported by kr_rpc_fail; read by the server. */
    Kreide__Status _status;
    const char *_error_code;
    const char *_message;
    const char *_field;
} kr_rpc_ctx;

/* A handler in its generic form; write typed ones and wrap them with
 * KR_RPC_HANDLER. Returns 0 on success with `out` filled (all memory from
 * ctx->arena), or the value of kr_rpc_fail(). */
typedef int (*kr_rpc_fn)(kr_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage *out);

/* One entry of a service's method table. */
typedef struct {
    const char *name; /* method name as in the .proto, e.g. "CreateSchool" */
    kr_rpc_fn fn;
    size_t in_size;  /* sizeof the typed input and output structs, checked */
    size_t out_size; /* against the descriptor when the server starts */
} kr_rpc_method;

/* Defines a generic thunk `FN##_rpc` around the typed handler
 *   int FN(kr_rpc_ctx *, const IN_T *, OUT_T *);
 * and KR_RPC_ENTRY(name, FN, IN_T, OUT_T) builds its table entry. */
#define KR_RPC_HANDLER(FN, IN_T, OUT_T)                                                                                            \
    static int FN##_rpc(kr_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage *out)                                        \
    {                                                                                                                              \
        return FN(ctx, (const IN_T *)in, (OUT_T *)out);                                                                            \
    }
#define KR_RPC_ENTRY(NAME, FN, IN_T, OUT_T)                                                                                        \
    {                                                                                                                              \
        .name = (NAME), .fn = FN##_rpc, .in_size = sizeof(IN_T), .out_size = sizeof(OUT_T)                                         \
    }

/* Records a failure for the reply and returns -1, for `return kr_rpc_fail(...)`.
 * `code` is machine-readable ("school.not_found"); `field` names the input
 * field at fault or is NULL; the message is for people. Strings are copied. */
int kr_rpc_fail(kr_rpc_ctx *ctx, Kreide__Status status, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* True once the request's deadline has passed: a long handler checks it
 * between steps and gives up with DEADLINE_EXCEEDED. */
bool kr_rpc_expired(const kr_rpc_ctx *ctx);

typedef struct {
    const ProtobufCServiceDescriptor *service;
    const kr_rpc_method *methods;
    size_t nmethods;
    const char *listen_url;   /* nng URL, e.g. "ipc:///run/kreide/identity.sock", "tcp://0.0.0.0:7101" */
    int workers;              /* worker threads, >= 1 */
    const char *database_url; /* libpq conninfo for the workers' connections; NULL = none */
    const kr_keyring *keys;   /* verifies envelope seals; required; must outlive the server */
    void *app;                /* handed to every handler as ctx->app */
    const char *version;      /* reported by Health/Check */
    /* Optional: whether the service can do its work beyond its database,
     * e.g. reach a service it depends on. Health/Check asks it on every
     * probe (it must be cheap and thread-safe) and, when it returns false,
     * answers UNAVAILABLE "health.dependency" with *why as the message, so
     * the gateway's /readyz waits for it. NULL: always ready. */
    bool (*ready)(void *app, const char **why);
} kr_rpc_server_opts;

typedef struct st_kr_rpc_server_t kr_rpc_server;

/* Validates the method table against the descriptor (every method served,
 * sizes match), listens and starts the workers. On failure returns -1 with a
 * message in err and nothing left running. */
int kr_rpc_server_start(const kr_rpc_server_opts *opts, kr_rpc_server **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Graceful drain: refuses new connections and stops taking new requests,
 * lets every request already in a handler finish and send its reply, joins
 * the workers, then closes the socket. Requests still queued are left to the
 * client's resend, which reaches another replica. Blocks until then; frees
 * the server.
 *
 * Known limit of nng 1.5.2 (Debian bookworm): closing a connection while a
 * message is arriving on it can hang the close for good (nanomsg/nng#1543,
 * the TCP variant fixed upstream by nanomsg/nng#1636). The drain therefore
 * waits at most 3 seconds for the socket to close; when it does not, it logs
 * a warning and returns without freeing the server (nng may still call into
 * it), which the process's exit then ends. */
void kr_rpc_server_drain(kr_rpc_server *srv);

/* Blocks SIGTERM, SIGINT and SIGPIPE in the calling thread; call before
 * starting any thread so every thread inherits the mask. */
void kr_rpc_block_signals(void);

/* Waits for SIGTERM or SIGINT (blocked with kr_rpc_block_signals) and
 * returns the signal number. */
int kr_rpc_wait_signal(void);

/* =========================================================== client side */

typedef struct st_kr_rpc_client_t kr_rpc_client;

/* Creates a client for `service` (a name for logs and errors, e.g.
 * "identity") dialling every URL in the comma-separated `urls`. Dialling is
 * non-blocking: peers that are not up yet are connected when they come up.
 * Returns -1 with a message in err on a malformed URL. */
int kr_rpc_client_new(const char *service, const char *urls, const kr_keyring *keys, kr_rpc_client **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Closes the client; calls in flight complete with UNAVAILABLE first. */
void kr_rpc_client_free(kr_rpc_client *c);

/* The service name given to kr_rpc_client_new. */
const char *kr_rpc_client_service(const kr_rpc_client *c);

/* Number of connections currently open (KR_RPC_CONNS_PER_URL per replica). */
int kr_rpc_client_peers(const kr_rpc_client *c);

/* One call's input. All pointers only need to live until kr_rpc_call returns. */
typedef struct {
    const char *method; /* full name, "kreide.identity.Identity/GetSchool" */
    const char *request_id;
    int64_t deadline_ms;          /* Unix ms, required */
    const Kreide__Caller *caller; /* NULL = anonymous */
    const uint8_t *body;          /* packed input message */
    size_t body_len;
    /* Travel in a message of its own, at once (kr_rpc_h2o): for calls known
     * to be slow, such as those that hash a password, which would hold up
     * every call batched with them. */
    bool alone;
} kr_rpc_request;

/* A finished call. `status` is the reply's status, or UNAVAILABLE /
 * DEADLINE_EXCEEDED / INTERNAL when the transport failed (then `reply` is
 * NULL and error_code is "rpc.unavailable", "rpc.timeout" or "rpc.bad_reply").
 * Owned by the callback's receiver: free with kr_rpc_result_free. */
typedef struct {
    Kreide__Status status;
    const char *error_code;
    const char *message;
    const char *field;   /* "" when none */
    const uint8_t *body; /* packed output message when status is OK */
    size_t body_len;
    int64_t latency_us;
    Kreide__Reply *_reply;
    char _msg[160];
} kr_rpc_result;

/* Runs on an nng thread when a call finishes, exactly once per call. */
typedef void (*kr_rpc_cb)(void *arg, kr_rpc_result *res);

/* Sends a call; `cb` is invoked exactly once, also when sending fails
 * (possibly before this function returns, on the calling thread, when no
 * peer is connected at all). */
void kr_rpc_call(kr_rpc_client *c, const kr_rpc_request *req, kr_rpc_cb cb, void *arg);

/* A batch: calls gathered by one thread and sent as one request message
 * (common.proto, Envelope.batch), which the server runs side by side on its
 * workers and answers when the last of them is done. It saves the
 * per-message cost of the transport when many calls go out at once, as on
 * a busy event loop (kr_rpc_h2o gathers each loop iteration's calls). Each
 * call keeps its own seal, caller, deadline and result. A batch object is
 * used by one thread at a time. */
typedef struct st_kr_rpc_batch_t kr_rpc_batch;

kr_rpc_batch *kr_rpc_batch_new(kr_rpc_client *c);

/* Sends what is left, then frees. */
void kr_rpc_batch_free(kr_rpc_batch *b);

/* Seals the call now (the request's pointers need only live until this
 * returns) and adds it; `cb` is invoked exactly once, as for kr_rpc_call
 * (at once when no peer is connected, and then nothing is added). When the
 * call does not fit beside those gathered (KR_RPC_MAX_BATCH calls,
 * KR_RPC_MAX_BATCH_BYTES, deadlines more than KR_RPC_BATCH_SLACK_MS apart),
 * those are sent first. */
void kr_rpc_batch_add(kr_rpc_batch *b, const kr_rpc_request *req, kr_rpc_cb cb, void *arg);

/* Sends the calls gathered so far, one alone as a plain call, and leaves the
 * batch empty for reuse. The message waits for the latest of the calls'
 * deadlines, which lie within KR_RPC_BATCH_SLACK_MS of each other; the
 * server refuses each call whose own deadline has passed. */
void kr_rpc_batch_send(kr_rpc_batch *b);

/* Optional hooks of a batch, for who tracks its messages (kr_rpc_h2o). */
typedef struct {
    /* Just before a request message leaves (also when kr_rpc_batch_add
     * sends), on the sending thread, with the number of calls it carries;
     * returns a token for `answered`. */
    void *(*sent)(void *arg, size_t ncalls);
    /* After the callbacks of every call of that message have run, on the
     * thread that ran them (an nng thread, or the sender's when sending
     * failed at once). */
    void (*answered)(void *token);
    void *arg;
} kr_rpc_batch_hooks;

void kr_rpc_batch_set_hooks(kr_rpc_batch *b, const kr_rpc_batch_hooks *hooks);

/* Calls added and not yet sent. */
size_t kr_rpc_batch_len(const kr_rpc_batch *b);

/* The client the batch sends to. */
kr_rpc_client *kr_rpc_batch_client(const kr_rpc_batch *b);

/* Frees a result (NULL allowed). */
void kr_rpc_result_free(kr_rpc_result *res);

/* A blocking call for tools and service-to-service calls from worker
 * threads. Returns the result (never NULL); caller frees it. */
kr_rpc_result *kr_rpc_call_sync(kr_rpc_client *c, const kr_rpc_request *req);

/* The HTTP status the gateway answers for a reply status. */
int kr_rpc_http_status(Kreide__Status s);

#endif
