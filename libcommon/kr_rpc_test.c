/* Tests of the RPC layer: a real server and client over nng IPC sockets in a
 * temporary directory, plus raw REQ sockets that send envelopes built by
 * hand to play the part of an attacker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kr_rpc.h"
#include "rpctest.pb-c.h"

/* Keys of 32 bytes each: the cluster's key, the same id with another
 * secret, and an id the servers do not know. */
#define KEY_GOOD "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
#define KEY_OTHER_SECRET "k1:b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC1vdGhlciE="
#define KEY_UNKNOWN_ID "k9:dW5rbm93bi1rZXktdW5rbm93bi1rZXktdW5rbm93biE="

#define SAY "kreide.test.Echo/Say"
#define ADD "kreide.test.Echo/Add"
#define NOTHING "kreide.test.Echo/Nothing"
#define USER_ID "0190b3c4-7d2e-7a11-9f00-0123456789ab"

/* Generous bound for anything that should happen "soon", also under ASan on
 * a loaded machine. */
#define SOON_MS 10000

static kr_keyring *keys;
static kr_keyring *keys_other_secret;
static kr_keyring *keys_unknown_id;
static char sockdir[128];
static int url_serial;

/* ------------------------------------------------------------ helpers */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Polls `expr` every few milliseconds for at most `ms`; true once it holds. */
#define POLL_UNTIL(expr, ms)                                                                                                       \
    ({                                                                                                                             \
        int64_t poll_end_ = mono_ms() + (ms);                                                                                      \
        bool poll_ok_;                                                                                                             \
        while (!(poll_ok_ = (expr)) && mono_ms() < poll_end_)                                                                      \
            nap_ms(5);                                                                                                             \
        poll_ok_;                                                                                                                  \
    })

static const char *new_url(void)
{
    static char url[256];
    snprintf(url, sizeof(url), "ipc://%s/s%d.sock", sockdir, ++url_serial);
    return url;
}

/* --------------------------------------------------- the Echo service */

/* What the handlers saw; reset before every test. */
static struct {
    atomic_int calls;
    atomic_int started;
    atomic_int finished;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool released;
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void release_held(void)
{
    pthread_mutex_lock(&seen.lock);
    seen.released = true;
    pthread_cond_broadcast(&seen.cond);
    pthread_mutex_unlock(&seen.lock);
}

/* Blocks a handler until the test releases it, bounded so that a failing
 * test cannot hang the suite. */
static void wait_released(void)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += SOON_MS / 1000;
    pthread_mutex_lock(&seen.lock);
    while (!seen.released) {
        if (pthread_cond_timedwait(&seen.cond, &seen.lock, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&seen.lock);
}

static int say(kr_rpc_ctx *ctx, const Kreide__Test__SayRequest *in, Kreide__Test__SayReply *out)
{
    atomic_fetch_add(&seen.calls, 1);
    atomic_fetch_add(&seen.started, 1);
    if (in->sleep_ms > 0)
        nap_ms(in->sleep_ms);
    if (in->hold)
        wait_released();
    atomic_fetch_add(&seen.finished, 1);
    if (strcmp(in->fail_code, "raw") == 0)
        return -1;
    if (in->fail_code[0] != '\0')
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, in->fail_code, "text", "cannot say '%s'", in->text);
    out->text = kr_arena_strdup(ctx->arena, in->text);
    out->caller_user = kr_arena_strdup(ctx->arena, ctx->caller->user_id);
    out->n_caller_roles = ctx->caller->n_roles;
    out->caller_roles = ctx->caller->roles;
    out->request_id = kr_arena_strdup(ctx->arena, ctx->request_id);
    out->method = kr_arena_strdup(ctx->arena, ctx->method);
    out->deadline_ms = ctx->deadline_ms;
    return 0;
}

static int add(kr_rpc_ctx *ctx, const Kreide__Test__AddRequest *in, Kreide__Test__AddReply *out)
{
    atomic_fetch_add(&seen.calls, 1);
    out->sum = in->a + in->b;
    return 0;
}

static int nothing(kr_rpc_ctx *ctx, const Kreide__Empty *in, Kreide__Empty *out)
{
    atomic_fetch_add(&seen.calls, 1);
    return 0;
}

KR_RPC_HANDLER(say, Kreide__Test__SayRequest, Kreide__Test__SayReply)
KR_RPC_HANDLER(add, Kreide__Test__AddRequest, Kreide__Test__AddReply)
KR_RPC_HANDLER(nothing, Kreide__Empty, Kreide__Empty)

static const kr_rpc_method echo_methods[] = {
    KR_RPC_ENTRY("Say", say, Kreide__Test__SayRequest, Kreide__Test__SayReply),
    KR_RPC_ENTRY("Add", add, Kreide__Test__AddRequest, Kreide__Test__AddReply),
    KR_RPC_ENTRY("Nothing", nothing, Kreide__Empty, Kreide__Empty),
};

static kr_rpc_server_opts echo_opts(const char *url, int workers)
{
    kr_rpc_server_opts o = {
        .service = &kreide__test__echo__descriptor,
        .methods = echo_methods,
        .nmethods = sizeof(echo_methods) / sizeof(echo_methods[0]),
        .listen_url = url,
        .workers = workers,
        .database_url = NULL,
        .keys = keys,
        .version = "test-1",
    };
    return o;
}

static kr_rpc_server *start_echo(const char *url, int workers)
{
    kr_rpc_server_opts o = echo_opts(url, workers);
    kr_rpc_server *srv = NULL;
    char err[256] = "";
    if (kr_rpc_server_start(&o, &srv, err, sizeof(err)) != 0)
        fail_msg("cannot start the echo server: %s", err);
    return srv;
}

static kr_rpc_client *connect_echo(const char *url)
{
    kr_rpc_client *c = NULL;
    char err[256] = "";
    if (kr_rpc_client_new("echo", url, keys, &c, err, sizeof(err)) != 0)
        fail_msg("cannot create the client: %s", err);
    assert_true(POLL_UNTIL(kr_rpc_client_peers(c) > 0, SOON_MS));
    return c;
}

/* ------------------------------------------------ collecting results */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    kr_rpc_result *res;
    pthread_t thread;  /* where it ran */
    int times;         /* how often the callback ran */
    int finished_then; /* seen.finished when it ran */
} waiter;

static void waiter_init(waiter *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
}

static void on_result(void *arg, kr_rpc_result *res)
{
    waiter *w = arg;
    pthread_mutex_lock(&w->lock);
    w->finished_then = atomic_load(&seen.finished);
    w->thread = pthread_self();
    w->times++;
    if (w->res == NULL)
        w->res = res;
    else
        kr_rpc_result_free(res);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Waits (bounded) for the callback and takes its result. */
static kr_rpc_result *waiter_take(waiter *w)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += SOON_MS / 1000;
    pthread_mutex_lock(&w->lock);
    while (w->res == NULL && pthread_cond_timedwait(&w->cond, &w->lock, &until) == 0)
        ;
    kr_rpc_result *res = w->res;
    w->res = NULL;
    pthread_mutex_unlock(&w->lock);
    if (res == NULL)
        fail_msg("no result within %d ms", SOON_MS);
    return res;
}

static void waiter_destroy(waiter *w)
{
    kr_rpc_result_free(w->res);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

/* Packs `msg` and starts a call of `method`; the result goes to `w`. */
static void call_async(kr_rpc_client *c, const char *method, const ProtobufCMessage *msg, const Kreide__Caller *caller,
                       const char *request_id, int timeout_ms, waiter *w)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    assert_non_null(buf);
    protobuf_c_message_pack(msg, buf);
    kr_rpc_request rq = {
        .method = method,
        .request_id = request_id,
        .deadline_ms = kr_now_ms() + timeout_ms,
        .caller = caller,
        .body = buf,
        .body_len = n,
    };
    kr_rpc_call(c, &rq, on_result, w);
    free(buf);
}

static kr_rpc_result *call(kr_rpc_client *c, const char *method, const ProtobufCMessage *msg, const Kreide__Caller *caller,
                           int timeout_ms)
{
    waiter w;
    waiter_init(&w);
    call_async(c, method, msg, caller, "test-request", timeout_ms, &w);
    kr_rpc_result *res = waiter_take(&w);
    waiter_destroy(&w);
    return res;
}

static kr_rpc_result *say_text(kr_rpc_client *c, const char *text, int timeout_ms)
{
    Kreide__Test__SayRequest in = KREIDE__TEST__SAY_REQUEST__INIT;
    in.text = (char *)text;
    return call(c, SAY, &in.base, NULL, timeout_ms);
}

/* ------------------------------------------- raw REQ socket (attacker) */

/* Sends one message as it is and returns the server's reply, unpacked. */
static Kreide__Reply *raw_exchange(const char *url, nng_msg *msg)
{
    nng_socket s;
    assert_int_equal(nng_req0_open(&s), 0);
    assert_int_equal(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, SOON_MS), 0);
    assert_int_equal(nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, SOON_MS), 0);
    assert_int_equal(nng_dial(s, url, NULL, 0), 0);
    assert_int_equal(nng_sendmsg(s, msg, 0), 0);
    nng_msg *r = NULL;
    assert_int_equal(nng_recvmsg(s, &r, 0), 0);
    Kreide__Reply *reply = kreide__reply__unpack(NULL, nng_msg_len(r), nng_msg_body(r));
    nng_msg_free(r);
    nng_close(s);
    assert_non_null(reply);
    return reply;
}

static nng_msg *msg_of(const uint8_t *data, size_t len)
{
    nng_msg *m;
    assert_int_equal(nng_msg_alloc(&m, len), 0);
    memcpy(nng_msg_body(m), data, len);
    return m;
}

static nng_msg *pack_envelope(const Kreide__Envelope *env)
{
    size_t n = kreide__envelope__get_packed_size(env);
    nng_msg *m;
    assert_int_equal(nng_msg_alloc(&m, n), 0);
    kreide__envelope__pack(env, nng_msg_body(m));
    return m;
}

/* A Say envelope from an ordinary user, deadline in ten seconds. */
typedef struct {
    Kreide__Envelope env;
    Kreide__Caller caller;
    Kreide__Test__SayRequest in;
    uint8_t body[256];
    char *roles[1];
} say_envelope;

static void say_envelope_init(say_envelope *e, const char *text)
{
    Kreide__Envelope env = KREIDE__ENVELOPE__INIT;
    Kreide__Caller caller = KREIDE__CALLER__INIT;
    Kreide__Test__SayRequest in = KREIDE__TEST__SAY_REQUEST__INIT;
    e->env = env;
    e->caller = caller;
    e->in = in;
    e->roles[0] = "student";
    e->caller.kind = KREIDE__CALLER__KIND__USER;
    e->caller.user_id = USER_ID;
    e->caller.n_roles = 1;
    e->caller.roles = e->roles;
    e->in.text = (char *)text;
    assert_true(kreide__test__say_request__get_packed_size(&e->in) <= sizeof(e->body));
    e->env.method = SAY;
    e->env.request_id = "raw-1";
    e->env.deadline_ms = kr_now_ms() + SOON_MS;
    e->env.caller = &e->caller;
    e->env.body.data = e->body;
    e->env.body.len = kreide__test__say_request__pack(&e->in, e->body);
}

static void assert_bad_seal(const char *url, nng_msg *msg)
{
    int before = atomic_load(&seen.calls);
    Kreide__Reply *r = raw_exchange(url, msg);
    assert_int_equal(r->status, KREIDE__STATUS__UNAUTHENTICATED);
    assert_string_equal(r->error_code, "rpc.bad_seal");
    assert_int_equal(r->body.len, 0);
    kreide__reply__free_unpacked(r, NULL);
    assert_int_equal(atomic_load(&seen.calls), before);
}

/* --------------------------------------------------------- fixtures */

static int group_setup(void **state)
{
    char err[128];
    if (kr_keyring_parse(KEY_GOOD, &keys, err, sizeof(err)) != 0 ||
        kr_keyring_parse(KEY_OTHER_SECRET, &keys_other_secret, err, sizeof(err)) != 0 ||
        kr_keyring_parse(KEY_UNKNOWN_ID, &keys_unknown_id, err, sizeof(err)) != 0)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(sockdir, sizeof(sockdir), "%s/kr_rpc_test.XXXXXX", tmp && *tmp && strlen(tmp) < 60 ? tmp : P_tmpdir);
    return mkdtemp(sockdir) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    DIR *d = opendir(sockdir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", sockdir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(sockdir);
    kr_keyring_free(keys);
    kr_keyring_free(keys_other_secret);
    kr_keyring_free(keys_unknown_id);
    return 0;
}

static int reset_seen(void **state)
{
    atomic_store(&seen.calls, 0);
    atomic_store(&seen.started, 0);
    atomic_store(&seen.finished, 0);
    seen.released = false;
    return 0;
}

/* A running echo server with two workers and a connected client. */
typedef struct {
    const char *url;
    kr_rpc_server *srv;
    kr_rpc_client *c;
} echo_fixture;

static int echo_up(void **state)
{
    reset_seen(state);
    echo_fixture *f = calloc(1, sizeof(*f));
    f->url = strdup(new_url());
    f->srv = start_echo(f->url, 2);
    f->c = connect_echo(f->url);
    *state = f;
    return 0;
}

static int echo_down(void **state)
{
    echo_fixture *f = *state;
    release_held();
    kr_rpc_client_free(f->c);
    kr_rpc_server_drain(f->srv);
    free((char *)f->url);
    free(f);
    return 0;
}

/* ------------------------------------------------------------ tests */

static void round_trip_carries_caller_and_request_id(void **state)
{
    echo_fixture *f = *state;
    char *roles[] = {"teacher", "operator"};
    Kreide__Caller caller = KREIDE__CALLER__INIT;
    caller.kind = KREIDE__CALLER__KIND__USER;
    caller.user_id = USER_ID;
    caller.n_roles = 2;
    caller.roles = roles;
    Kreide__Test__SayRequest in = KREIDE__TEST__SAY_REQUEST__INIT;
    in.text = "Guten Morgen";

    waiter w;
    waiter_init(&w);
    int64_t deadline_before = kr_now_ms();
    call_async(f->c, SAY, &in.base, &caller, "req-4711", 5000, &w);
    kr_rpc_result *res = waiter_take(&w);
    assert_int_equal(res->status, KREIDE__STATUS__OK);
    assert_string_equal(res->error_code, "");
    assert_string_equal(res->field, "");
    assert_true(res->latency_us >= 0);

    Kreide__Test__SayReply *out = kreide__test__say_reply__unpack(NULL, res->body_len, res->body);
    assert_non_null(out);
    assert_string_equal(out->text, "Guten Morgen");
    assert_string_equal(out->caller_user, USER_ID);
    assert_int_equal(out->n_caller_roles, 2);
    assert_string_equal(out->caller_roles[0], "teacher");
    assert_string_equal(out->caller_roles[1], "operator");
    assert_string_equal(out->request_id, "req-4711");
    assert_string_equal(out->method, "Say");
    assert_in_range(out->deadline_ms, deadline_before + 5000, kr_now_ms() + 5000);
    kreide__test__say_reply__free_unpacked(out, NULL);
    kr_rpc_result_free(res);
    assert_int_equal(w.times, 1);
    waiter_destroy(&w);
    assert_int_equal(atomic_load(&seen.calls), 1);
}

static void anonymous_caller_when_none_is_given(void **state)
{
    echo_fixture *f = *state;
    kr_rpc_result *res = say_text(f->c, "hallo", 5000);
    assert_int_equal(res->status, KREIDE__STATUS__OK);
    Kreide__Test__SayReply *out = kreide__test__say_reply__unpack(NULL, res->body_len, res->body);
    assert_non_null(out);
    assert_string_equal(out->caller_user, "");
    assert_int_equal(out->n_caller_roles, 0);
    kreide__test__say_reply__free_unpacked(out, NULL);
    kr_rpc_result_free(res);
}

static void empty_output_and_second_method(void **state)
{
    echo_fixture *f = *state;
    Kreide__Empty e = KREIDE__EMPTY__INIT;
    kr_rpc_result *res = call(f->c, NOTHING, &e.base, NULL, 5000);
    assert_int_equal(res->status, KREIDE__STATUS__OK);
    assert_int_equal(res->body_len, 0);
    kr_rpc_result_free(res);

    Kreide__Test__AddRequest in = KREIDE__TEST__ADD_REQUEST__INIT;
    in.a = 40;
    in.b = 2;
    res = call(f->c, ADD, &in.base, NULL, 5000);
    assert_int_equal(res->status, KREIDE__STATUS__OK);
    Kreide__Test__AddReply *out = kreide__test__add_reply__unpack(NULL, res->body_len, res->body);
    assert_non_null(out);
    assert_int_equal(out->sum, 42);
    kreide__test__add_reply__free_unpacked(out, NULL);
    kr_rpc_result_free(res);
    assert_int_equal(atomic_load(&seen.calls), 2);
}

static void sync_call_returns_the_reply(void **state)
{
    echo_fixture *f = *state;
    Kreide__Test__AddRequest in = KREIDE__TEST__ADD_REQUEST__INIT;
    in.a = -5;
    in.b = 3;
    uint8_t buf[32];
    kr_rpc_request rq = {
        .method = ADD,
        .request_id = "sync",
        .deadline_ms = kr_now_ms() + 5000,
        .body = buf,
        .body_len = kreide__test__add_request__pack(&in, buf),
    };
    kr_rpc_result *res = kr_rpc_call_sync(f->c, &rq);
    assert_int_equal(res->status, KREIDE__STATUS__OK);
    Kreide__Test__AddReply *out = kreide__test__add_reply__unpack(NULL, res->body_len, res->body);
    assert_non_null(out);
    assert_int_equal(out->sum, -2);
    kreide__test__add_reply__free_unpacked(out, NULL);
    kr_rpc_result_free(res);
}

static void handler_failure_reaches_the_client(void **state)
{
    echo_fixture *f = *state;
    Kreide__Test__SayRequest in = KREIDE__TEST__SAY_REQUEST__INIT;
    in.text = "nope";
    in.fail_code = "echo.refused";
    kr_rpc_result *res = call(f->c, SAY, &in.base, NULL, 5000);
    assert_int_equal(res->status, KREIDE__STATUS__FAILED_PRECONDITION);
    assert_string_equal(res->error_code, "echo.refused");
    assert_string_equal(res->message, "cannot say 'nope'");
    assert_string_equal(res->field, "text");
    assert_int_equal(res->body_len, 0);
    kr_rpc_result_free(res);

    /* A handler that fails without saying why is an internal error. */
    in.fail_code = "raw";
    res = call(f->c, SAY, &in.base, NULL, 5000);
    assert_int_equal(res->status, KREIDE__STATUS__INTERNAL);
    assert_string_equal(res->error_code, "internal");
    kr_rpc_result_free(res);
}

static void health_check_needs_no_handler(void **state)
{
    echo_fixture *f = *state;
    Kreide__Empty e = KREIDE__EMPTY__INIT;
    kr_rpc_result *res = call(f->c, "kreide.Health/Check", &e.base, NULL, 5000);
    assert_int_equal(res->status, KREIDE__STATUS__OK);
    Kreide__HealthReply *h = kreide__health_reply__unpack(NULL, res->body_len, res->body);
    assert_non_null(h);
    assert_string_equal(h->service, "Echo");
    assert_string_equal(h->version, "test-1");
    assert_true(h->database_ok);
    kreide__health_reply__free_unpacked(h, NULL);
    kr_rpc_result_free(res);
    assert_int_equal(atomic_load(&seen.calls), 0);
}

static atomic_bool dependency_up;

static bool echo_ready(void *app, const char **why)
{
    (void)app;
    if (atomic_load(&dependency_up))
        return true;
    *why = "echo cannot reach its friend";
    return false;
}

static void health_check_reports_a_missing_dependency(void **state)
{
    reset_seen(state);
    const char *url = new_url();
    kr_rpc_server_opts o = echo_opts(url, 1);
    o.ready = echo_ready;
    kr_rpc_server *srv = NULL;
    char err[256] = "";
    assert_int_equal(kr_rpc_server_start(&o, &srv, err, sizeof(err)), 0);
    kr_rpc_client *c = connect_echo(url);
    Kreide__Empty e = KREIDE__EMPTY__INIT;

    atomic_store(&dependency_up, false);
    kr_rpc_result *res = call(c, "kreide.Health/Check", &e.base, NULL, 5000);
    assert_int_equal(res->status, KREIDE__STATUS__UNAVAILABLE);
    assert_string_equal(res->error_code, "health.dependency");
    assert_string_equal(res->message, "echo cannot reach its friend");
    kr_rpc_result_free(res);

    atomic_store(&dependency_up, true);
    res = call(c, "kreide.Health/Check", &e.base, NULL, 5000);
    assert_int_equal(res->status, KREIDE__STATUS__OK);
    kr_rpc_result_free(res);

    kr_rpc_client_free(c);
    kr_rpc_server_drain(srv);
}

static void unknown_method_is_unimplemented(void **state)
{
    echo_fixture *f = *state;
    const char *methods[] = {"kreide.test.Echo/Shout", "kreide.other.Echo/Say", "Say",
                             "kreide.test.Echo/",      "kreide.Health/Shout",   ""};
    Kreide__Empty e = KREIDE__EMPTY__INIT;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        kr_rpc_result *res = call(f->c, methods[i], &e.base, NULL, 5000);
        assert_int_equal(res->status, KREIDE__STATUS__UNIMPLEMENTED);
        assert_string_equal(res->error_code, "rpc.unknown_method");
        kr_rpc_result_free(res);
    }
    assert_int_equal(atomic_load(&seen.calls), 0);
}

static void malformed_body_is_invalid_argument(void **state)
{
    echo_fixture *f = *state;
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    waiter w;
    waiter_init(&w);
    kr_rpc_request rq = {
        .method = SAY,
        .request_id = "junk",
        .deadline_ms = kr_now_ms() + 5000,
        .body = junk,
        .body_len = sizeof(junk),
    };
    kr_rpc_call(f->c, &rq, on_result, &w);
    kr_rpc_result *res = waiter_take(&w);
    assert_int_equal(res->status, KREIDE__STATUS__INVALID_ARGUMENT);
    assert_string_equal(res->error_code, "rpc.malformed_body");
    kr_rpc_result_free(res);
    waiter_destroy(&w);
    assert_int_equal(atomic_load(&seen.calls), 0);
}

static void garbage_message_gets_invalid_argument_reply(void **state)
{
    echo_fixture *f = *state;
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    Kreide__Reply *r = raw_exchange(f->url, msg_of(junk, sizeof(junk)));
    assert_int_equal(r->status, KREIDE__STATUS__INVALID_ARGUMENT);
    assert_string_equal(r->error_code, "rpc.malformed_envelope");
    kreide__reply__free_unpacked(r, NULL);
    assert_int_equal(atomic_load(&seen.calls), 0);

    /* The server keeps serving. */
    kr_rpc_result *res = say_text(f->c, "still there", 5000);
    assert_int_equal(res->status, KREIDE__STATUS__OK);
    kr_rpc_result_free(res);
}

static void forged_envelopes_are_rejected(void **state)
{
    echo_fixture *f = *state;
    say_envelope e;
    nng_msg *m;

    /* A well-sealed envelope sent the same way is served: the rejections
     * below are about the seal, not about the raw socket. */
    say_envelope_init(&e, "genuine");
    assert_int_equal(kr_seal_pack(keys, &e.env, kr_now_ms(), &m), 0);
    Kreide__Reply *r = raw_exchange(f->url, m);
    assert_int_equal(r->status, KREIDE__STATUS__OK);
    assert_string_equal(r->request_id, "raw-1");
    kreide__reply__free_unpacked(r, NULL);
    assert_int_equal(atomic_load(&seen.calls), 1);

    /* No seal at all. */
    say_envelope_init(&e, "unsealed");
    assert_bad_seal(f->url, pack_envelope(&e.env));

    /* A seal whose MAC is not 32 bytes. */
    Kreide__EnvelopeSeal short_seal = KREIDE__ENVELOPE_SEAL__INIT;
    short_seal.key_id = "k1";
    short_seal.sealed_at_ms = kr_now_ms();
    short_seal.mac.data = (uint8_t *)"0123456789";
    short_seal.mac.len = 10;
    e.env.seal = &short_seal;
    assert_bad_seal(f->url, pack_envelope(&e.env));

    /* Sealed under a key id the server does not know. */
    say_envelope_init(&e, "unknown key");
    assert_int_equal(kr_seal_pack(keys_unknown_id, &e.env, kr_now_ms(), &m), 0);
    assert_bad_seal(f->url, m);

    /* The right key id, but another secret. */
    say_envelope_init(&e, "other secret");
    assert_int_equal(kr_seal_pack(keys_other_secret, &e.env, kr_now_ms(), &m), 0);
    assert_bad_seal(f->url, m);

    /* Sealed properly, then the caller is raised to an operator. */
    say_envelope_init(&e, "altered");
    assert_int_equal(kr_seal_pack(keys, &e.env, kr_now_ms(), &m), 0);
    Kreide__Envelope *sealed = kreide__envelope__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
    nng_msg_free(m);
    assert_non_null(sealed);
    assert_int_equal(kr_seal_verify(keys, sealed, kr_now_ms()), KR_SEAL_OK);
    char **genuine_roles = sealed->caller->roles;
    char *genuine_user = sealed->caller->user_id;
    char *operator_role[] = {"operator"};
    char other_user[] = "0190b3c4-7d2e-7a11-9f00-ffffffffffff";
    sealed->caller->roles = operator_role;
    sealed->caller->user_id = other_user;
    assert_bad_seal(f->url, pack_envelope(sealed));
    sealed->caller->roles = genuine_roles;
    sealed->caller->user_id = genuine_user;

    /* Only the body altered. */
    assert_int_equal(kr_seal_verify(keys, sealed, kr_now_ms()), KR_SEAL_OK);
    sealed->body.data[sealed->body.len - 1] ^= 1;
    assert_bad_seal(f->url, pack_envelope(sealed));
    kreide__envelope__free_unpacked(sealed, NULL);

    /* A genuine seal from long ago: a replay. */
    say_envelope_init(&e, "replayed");
    assert_int_equal(kr_seal_pack(keys, &e.env, kr_now_ms() - KR_SEAL_MAX_AGE_MS - 1000, &m), 0);
    assert_bad_seal(f->url, m);

    assert_int_equal(atomic_load(&seen.calls), 1);
}

static void expired_envelope_is_not_served(void **state)
{
    echo_fixture *f = *state;
    say_envelope e;
    say_envelope_init(&e, "too late");
    e.env.deadline_ms = kr_now_ms() - 1000;
    nng_msg *m;
    assert_int_equal(kr_seal_pack(keys, &e.env, kr_now_ms(), &m), 0);
    Kreide__Reply *r = raw_exchange(f->url, m);
    assert_int_equal(r->status, KREIDE__STATUS__DEADLINE_EXCEEDED);
    assert_string_equal(r->error_code, "rpc.deadline_exceeded");
    kreide__reply__free_unpacked(r, NULL);
    assert_int_equal(atomic_load(&seen.calls), 0);
}

static void client_gives_up_at_the_deadline(void **state)
{
    echo_fixture *f = *state;
    Kreide__Test__SayRequest in = KREIDE__TEST__SAY_REQUEST__INIT;
    in.text = "slow";
    in.hold = true;
    waiter w;
    waiter_init(&w);
    call_async(f->c, SAY, &in.base, NULL, "slow-1", 100, &w);
    kr_rpc_result *res = waiter_take(&w);
    /* The handler is still held: the answer cannot be the handler's. */
    assert_int_equal(w.finished_then, 0);
    assert_int_equal(atomic_load(&seen.started), 1);
    assert_int_equal(res->status, KREIDE__STATUS__DEADLINE_EXCEEDED);
    assert_string_equal(res->error_code, "rpc.timeout");
    assert_null(res->_reply);
    kr_rpc_result_free(res);
    release_held();
    assert_true(POLL_UNTIL(atomic_load(&seen.finished) == 1, SOON_MS));

    /* The late reply is dropped, and the next call gets its own answer. */
    kr_rpc_result *next = say_text(f->c, "next", 5000);
    assert_int_equal(next->status, KREIDE__STATUS__OK);
    Kreide__Test__SayReply *out = kreide__test__say_reply__unpack(NULL, next->body_len, next->body);
    assert_non_null(out);
    assert_string_equal(out->text, "next");
    kreide__test__say_reply__free_unpacked(out, NULL);
    kr_rpc_result_free(next);
    assert_int_equal(w.times, 1);
    waiter_destroy(&w);
}

static void sleeping_handler_times_out(void **state)
{
    echo_fixture *f = *state;
    Kreide__Test__SayRequest in = KREIDE__TEST__SAY_REQUEST__INIT;
    in.text = "sleepy";
    in.sleep_ms = 500;
    kr_rpc_result *res = call(f->c, SAY, &in.base, NULL, 100);
    assert_int_equal(res->status, KREIDE__STATUS__DEADLINE_EXCEEDED);
    assert_string_equal(res->error_code, "rpc.timeout");
    kr_rpc_result_free(res);
}

static void no_server_fails_fast(void **state)
{
    reset_seen(state);
    kr_rpc_client *c = NULL;
    char err[256];
    assert_int_equal(kr_rpc_client_new("echo", new_url(), keys, &c, err, sizeof(err)), 0);
    assert_string_equal(kr_rpc_client_service(c), "echo");
    assert_int_equal(kr_rpc_client_peers(c), 0);
    Kreide__Test__SayRequest in = KREIDE__TEST__SAY_REQUEST__INIT;
    waiter w;
    waiter_init(&w);
    call_async(c, SAY, &in.base, NULL, "nobody", 60000, &w);
    /* Failed before kr_rpc_call returned, on this thread. */
    assert_int_equal(w.times, 1);
    assert_true(pthread_equal(w.thread, pthread_self()));
    kr_rpc_result *res = waiter_take(&w);
    assert_int_equal(res->status, KREIDE__STATUS__UNAVAILABLE);
    assert_string_equal(res->error_code, "rpc.unavailable");
    assert_non_null(strstr(res->message, "echo"));
    kr_rpc_result_free(res);
    waiter_destroy(&w);
    kr_rpc_client_free(c);
}

static void client_rejects_bad_urls(void **state)
{
    kr_rpc_client *c = NULL;
    char err[256] = "";
    assert_int_equal(kr_rpc_client_new("echo", "bogus://nowhere", keys, &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bogus://nowhere"));
    assert_null(c);
    assert_int_equal(kr_rpc_client_new("echo", " , ", keys, &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no URL"));
    assert_null(c);
}

static void client_reconnects_to_a_restarted_server(void **state)
{
    reset_seen(state);
    char url[256];
    snprintf(url, sizeof(url), "%s", new_url());
    kr_rpc_server *srv = start_echo(url, 2);
    kr_rpc_client *c = connect_echo(url);
    kr_rpc_result *res = say_text(c, "first", 5000);
    assert_int_equal(res->status, KREIDE__STATUS__OK);
    kr_rpc_result_free(res);

    kr_rpc_server_drain(srv);
    assert_true(POLL_UNTIL(kr_rpc_client_peers(c) == 0, SOON_MS));
    res = say_text(c, "while down", 500);
    assert_int_equal(res->status, KREIDE__STATUS__UNAVAILABLE);
    assert_string_equal(res->error_code, "rpc.unavailable");
    kr_rpc_result_free(res);

    srv = start_echo(url, 2);
    bool ok = false;
    int64_t end = mono_ms() + SOON_MS;
    while (!ok && mono_ms() < end) {
        res = say_text(c, "again", 1000);
        ok = res->status == KREIDE__STATUS__OK;
        kr_rpc_result_free(res);
        if (!ok)
            nap_ms(20);
    }
    assert_true(ok);
    assert_true(kr_rpc_client_peers(c) > 0);
    kr_rpc_client_free(c);
    kr_rpc_server_drain(srv);
}

/* Regression: a connection that nng drops between accepting it and handing
 * it to the socket (here: the peer speaks the wrong protocol) was counted
 * out but never in, so the client believed it had fewer than no peers and
 * failed every later call without trying, even with a real server up.
 *
 * The wrong peer is a plain Unix socket that completes nng's IPC handshake
 * announcing itself as a REQ socket, which a REQ client rejects. (An nng
 * socket in that role makes nng 1.5.2 leak the endpoint whose rejected
 * connection races with its close.) */
typedef struct {
    int listen_fd;
    atomic_int stop;
    atomic_int rejected;
} wrong_peer;

static void *wrong_peer_main(void *arg)
{
    wrong_peer *wp = arg;
    static const uint8_t hello[8] = {0, 'S', 'P', 0, 0x00, 0x30, 0, 0}; /* protocol 0x30: REQ */
    while (!atomic_load(&wp->stop)) {
        struct pollfd pl = {.fd = wp->listen_fd, .events = POLLIN};
        if (poll(&pl, 1, 20) <= 0)
            continue;
        int fd = accept(wp->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        uint8_t buf[64];
        if (write(fd, hello, sizeof(hello)) == (ssize_t)sizeof(hello)) {
            /* The client closes the connection once it has seen who we are. */
            struct pollfd pc = {.fd = fd, .events = POLLIN};
            while (poll(&pc, 1, SOON_MS) > 0 && read(fd, buf, sizeof(buf)) > 0)
                ;
            atomic_fetch_add(&wp->rejected, 1);
        }
        close(fd);
    }
    return NULL;
}

static void peer_count_survives_rejected_connections(void **state)
{
    reset_seen(state);
    char wrong_url[256], url[256], urls[520];
    snprintf(wrong_url, sizeof(wrong_url), "%s", new_url());
    snprintf(url, sizeof(url), "%s", new_url());
    snprintf(urls, sizeof(urls), "%s,%s", wrong_url, url);

    wrong_peer wp = {.listen_fd = socket(AF_UNIX, SOCK_STREAM, 0)};
    assert_true(wp.listen_fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const char *path = wrong_url + strlen("ipc://");
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(wp.listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(wp.listen_fd, 8), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wrong_peer_main, &wp), 0);

    kr_rpc_client *c = NULL;
    char err[256];
    assert_int_equal(kr_rpc_client_new("echo", urls, keys, &c, err, sizeof(err)), 0);
    bool rejected = POLL_UNTIL(atomic_load(&wp.rejected) >= 3, SOON_MS);
    atomic_store(&wp.stop, 1);
    pthread_join(t, NULL);
    close(wp.listen_fd);
    unlink(sa.sun_path);
    assert_true(rejected);

    kr_rpc_server *srv = start_echo(url, 1);
    bool ok = false;
    int64_t end = mono_ms() + SOON_MS;
    while (!ok && mono_ms() < end) {
        kr_rpc_result *res = say_text(c, "counted right", 1000);
        ok = res->status == KREIDE__STATUS__OK;
        kr_rpc_result_free(res);
        if (!ok)
            nap_ms(20);
    }
    assert_true(ok);
    assert_true(POLL_UNTIL(kr_rpc_client_peers(c) == KR_RPC_CONNS_PER_URL, SOON_MS));
    kr_rpc_client_free(c);
    kr_rpc_server_drain(srv);
}

typedef struct {
    kr_rpc_server *srv;
    atomic_int returned;
    int finished_at_return;
} drainer;

static void *drain_main(void *arg)
{
    drainer *d = arg;
    kr_rpc_server_drain(d->srv);
    d->finished_at_return = atomic_load(&seen.finished);
    atomic_store(&d->returned, 1);
    return NULL;
}

static void drain_lets_the_call_in_flight_finish(void **state)
{
    reset_seen(state);
    char url[256];
    snprintf(url, sizeof(url), "%s", new_url());
    drainer d = {.srv = start_echo(url, 2)};
    kr_rpc_client *c = connect_echo(url);

    Kreide__Test__SayRequest in = KREIDE__TEST__SAY_REQUEST__INIT;
    in.text = "almost done";
    in.sleep_ms = 300;
    waiter w;
    waiter_init(&w);
    call_async(c, SAY, &in.base, NULL, "in-flight", SOON_MS, &w);
    assert_true(POLL_UNTIL(atomic_load(&seen.started) == 1, SOON_MS));

    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drain_main, &d), 0);
    kr_rpc_result *res = waiter_take(&w);
    assert_int_equal(res->status, KREIDE__STATUS__OK);
    Kreide__Test__SayReply *out = kreide__test__say_reply__unpack(NULL, res->body_len, res->body);
    assert_non_null(out);
    assert_string_equal(out->text, "almost done");
    kreide__test__say_reply__free_unpacked(out, NULL);
    kr_rpc_result_free(res);

    assert_true(POLL_UNTIL(atomic_load(&d.returned) == 1, SOON_MS));
    pthread_join(t, NULL);
    /* Drain waited for the handler. */
    assert_int_equal(d.finished_at_return, 1);
    waiter_destroy(&w);

    /* Drained means gone: new calls are refused. */
    assert_true(POLL_UNTIL(kr_rpc_client_peers(c) == 0, SOON_MS));
    res = say_text(c, "after", 500);
    assert_int_equal(res->status, KREIDE__STATUS__UNAVAILABLE);
    kr_rpc_result_free(res);
    kr_rpc_client_free(c);
}

/* Drains servers whose workers are at every stage of starting up and
 * waiting for their first request: each drain returns. */
static void drain_right_after_start(void **state)
{
    reset_seen(state);
    for (int round = 0; round < 20; round++) {
        char url[256];
        snprintf(url, sizeof(url), "%s", new_url());
        kr_rpc_server *srv = start_echo(url, 4);
        kr_rpc_server_drain(srv);
    }
    assert_int_equal(atomic_load(&seen.calls), 0);
}

/* Requests still queued when a replica drains are not served there: the
 * client resends them to another replica, while the requests in handlers get
 * their replies from the draining one.
 *
 * Nothing is sent to the draining replica while it closes its connections:
 * nng 1.5.2 can hang closing a connection on which a message is arriving at
 * that moment (nanomsg/nng#1543; the TCP variant is fixed by
 * nanomsg/nng#1636), a defect of the library that this test stays clear of. */
static void drain_hands_queued_requests_to_another_replica(void **state)
{
    reset_seen(state);
    enum { N = 6 };
    char url_a[256], url_b[256], urls[520];
    snprintf(url_a, sizeof(url_a), "%s", new_url());
    snprintf(url_b, sizeof(url_b), "%s", new_url());
    snprintf(urls, sizeof(urls), "%s,%s", url_a, url_b);
    drainer d = {.srv = start_echo(url_a, 2)};
    kr_rpc_client *c = connect_echo(urls);
    assert_true(POLL_UNTIL(kr_rpc_client_peers(c) == KR_RPC_CONNS_PER_URL, SOON_MS));

    /* All requests go to A, the only replica up: two reach its handlers and
     * are held there, the others wait in the queue. */
    waiter w[N];
    Kreide__Test__SayRequest in = KREIDE__TEST__SAY_REQUEST__INIT;
    in.text = "queued";
    in.hold = true;
    for (int i = 0; i < N; i++) {
        waiter_init(&w[i]);
        call_async(c, SAY, &in.base, NULL, "queued", SOON_MS, &w[i]);
    }
    assert_true(POLL_UNTIL(atomic_load(&seen.started) == 2, SOON_MS));

    kr_rpc_server *b = start_echo(url_b, 2);
    assert_true(POLL_UNTIL(kr_rpc_client_peers(c) == 2 * KR_RPC_CONNS_PER_URL, SOON_MS));
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drain_main, &d), 0);
    release_held();

    for (int i = 0; i < N; i++) {
        kr_rpc_result *res = waiter_take(&w[i]);
        assert_int_equal(res->status, KREIDE__STATUS__OK);
        kr_rpc_result_free(res);
    }
    assert_true(POLL_UNTIL(atomic_load(&d.returned) == 1, SOON_MS));
    pthread_join(t, NULL);
    assert_true(d.finished_at_return >= 2);
    /* Each request was served once, none twice. */
    assert_int_equal(atomic_load(&seen.finished), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(w[i].times, 1);
        waiter_destroy(&w[i]);
    }
    kr_rpc_client_free(c);
    kr_rpc_server_drain(b);
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int wrong;
} tally;

typedef struct {
    tally *t;
    int64_t expect;
} one_call;

static void on_add(void *arg, kr_rpc_result *res)
{
    one_call *oc = arg;
    bool right = false;
    if (res->status == KREIDE__STATUS__OK) {
        Kreide__Test__AddReply *out = kreide__test__add_reply__unpack(NULL, res->body_len, res->body);
        right = out != NULL && out->sum == oc->expect;
        kreide__test__add_reply__free_unpacked(out, NULL);
    }
    kr_rpc_result_free(res);
    pthread_mutex_lock(&oc->t->lock);
    oc->t->done++;
    if (!right)
        oc->t->wrong++;
    pthread_cond_broadcast(&oc->t->cond);
    pthread_mutex_unlock(&oc->t->lock);
}

/* Waits (bounded) until `n` calls have come back; all must be right, and
 * the handlers must have seen exactly `n`. */
static void expect_all_right(tally *t, int n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&t->lock);
    while (t->done < n && pthread_cond_timedwait(&t->cond, &t->lock, &until) == 0)
        ;
    int done = t->done, wrong = t->wrong;
    pthread_mutex_unlock(&t->lock);
    assert_int_equal(done, n);
    assert_int_equal(wrong, 0);
    assert_int_equal(atomic_load(&seen.calls), n);
}

static void many_concurrent_calls_are_all_answered(void **state)
{
    reset_seen(state);
    enum { N = 200 };
    char url[256];
    snprintf(url, sizeof(url), "%s", new_url());
    kr_rpc_server *srv = start_echo(url, 4);
    kr_rpc_client *c = connect_echo(url);
    tally t = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    one_call *calls = calloc(N, sizeof(*calls));
    assert_non_null(calls);
    for (int i = 0; i < N; i++) {
        Kreide__Test__AddRequest in = KREIDE__TEST__ADD_REQUEST__INIT;
        in.a = i;
        in.b = 1000 * (int64_t)i;
        calls[i].t = &t;
        calls[i].expect = in.a + in.b;
        uint8_t buf[32];
        char rid[16];
        snprintf(rid, sizeof(rid), "c%d", i);
        kr_rpc_request rq = {
            .method = ADD,
            .request_id = rid,
            .deadline_ms = kr_now_ms() + 30000,
            .body = buf,
            .body_len = kreide__test__add_request__pack(&in, buf),
        };
        kr_rpc_call(c, &rq, on_add, &calls[i]);
    }
    expect_all_right(&t, N);
    kr_rpc_client_free(c);
    kr_rpc_server_drain(srv);
    free(calls);
}

/* ------------------------------------------------------------ batches */

static atomic_int answered_messages;

static void *count_sent(void *arg, size_t ncalls)
{
    size_t *sent = arg;
    sent[0]++;
    sent[1] += ncalls;
    return sent;
}

static void count_answered(void *token)
{
    (void)token;
    atomic_fetch_add(&answered_messages, 1);
}

static void batched_calls_are_each_answered(void **state)
{
    reset_seen(state);
    enum { N = 150 }; /* more than two full batches */
    char url[256];
    snprintf(url, sizeof(url), "%s", new_url());
    kr_rpc_server *srv = start_echo(url, 4);
    kr_rpc_client *c = connect_echo(url);
    tally t = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    one_call *calls = calloc(N, sizeof(*calls));
    assert_non_null(calls);
    kr_rpc_batch *b = kr_rpc_batch_new(c);
    assert_ptr_equal(kr_rpc_batch_client(b), c);
    size_t sent[2] = {0, 0}; /* messages, calls */
    atomic_store(&answered_messages, 0);
    kr_rpc_batch_hooks hooks = {.sent = count_sent, .answered = count_answered, .arg = sent};
    kr_rpc_batch_set_hooks(b, &hooks);
    for (int i = 0; i < N; i++) {
        Kreide__Test__AddRequest in = KREIDE__TEST__ADD_REQUEST__INIT;
        in.a = i;
        in.b = 7 * (int64_t)i;
        calls[i].t = &t;
        calls[i].expect = in.a + in.b;
        uint8_t buf[32];
        kr_rpc_request rq = {
            .method = ADD,
            .request_id = "batch",
            .deadline_ms = kr_now_ms() + 30000,
            .body = buf,
            .body_len = kreide__test__add_request__pack(&in, buf),
        };
        kr_rpc_batch_add(b, &rq, on_add, &calls[i]);
        /* A full batch leaves when the next call comes. */
        assert_int_equal(kr_rpc_batch_len(b), (size_t)(i % KR_RPC_MAX_BATCH + 1));
    }
    kr_rpc_batch_send(b);
    assert_int_equal(sent[0], (N + KR_RPC_MAX_BATCH - 1) / KR_RPC_MAX_BATCH);
    assert_int_equal(sent[1], N);
    assert_int_equal(kr_rpc_batch_len(b), 0);
    expect_all_right(&t, N);
    /* The hook heard of every message answered. */
    assert_true(POLL_UNTIL(atomic_load(&answered_messages) == (int)sent[0], SOON_MS));
    kr_rpc_batch_free(b);
    kr_rpc_client_free(c);
    kr_rpc_server_drain(srv);
    free(calls);
}

/* Adds a Say call to `b`, its result going to `w`. */
static void batch_say(kr_rpc_batch *b, const char *method, const char *text, const char *fail_code, bool hold, waiter *w)
{
    Kreide__Test__SayRequest in = KREIDE__TEST__SAY_REQUEST__INIT;
    in.text = (char *)text;
    in.fail_code = (char *)fail_code;
    in.hold = hold;
    uint8_t buf[256];
    kr_rpc_request rq = {
        .method = method,
        .request_id = text,
        .deadline_ms = kr_now_ms() + SOON_MS,
        .body = buf,
        .body_len = kreide__test__say_request__pack(&in, buf),
    };
    kr_rpc_batch_add(b, &rq, on_result, w);
}

static void batch_runs_its_calls_side_by_side(void **state)
{
    echo_fixture *f = *state;
    enum { N = 2 }; /* the fixture's workers */
    kr_rpc_batch *b = kr_rpc_batch_new(f->c);
    waiter w[N];
    for (int i = 0; i < N; i++) {
        waiter_init(&w[i]);
        batch_say(b, SAY, "held", "", true, &w[i]);
    }
    kr_rpc_batch_send(b);
    /* Every call of the batch is in a handler at once: one worker each. */
    bool together = POLL_UNTIL(atomic_load(&seen.started) == N, SOON_MS);
    release_held();
    assert_true(together);
    for (int i = 0; i < N; i++) {
        kr_rpc_result *r = waiter_take(&w[i]);
        assert_int_equal(r->status, KREIDE__STATUS__OK);
        kr_rpc_result_free(r);
        waiter_destroy(&w[i]);
    }
    kr_rpc_batch_free(b);
}

static void batch_keeps_each_calls_outcome(void **state)
{
    echo_fixture *f = *state;
    kr_rpc_batch *b = kr_rpc_batch_new(f->c);
    waiter ok, failed, unknown;
    waiter_init(&ok);
    waiter_init(&failed);
    waiter_init(&unknown);
    batch_say(b, SAY, "hallo", "", false, &ok);
    batch_say(b, SAY, "nein", "say.refused", false, &failed);
    batch_say(b, "kreide.test.Echo/Shout", "laut", "", false, &unknown);
    kr_rpc_batch_send(b);

    kr_rpc_result *r = waiter_take(&ok);
    assert_int_equal(r->status, KREIDE__STATUS__OK);
    Kreide__Test__SayReply *out = kreide__test__say_reply__unpack(NULL, r->body_len, r->body);
    assert_non_null(out);
    assert_string_equal(out->text, "hallo");
    assert_string_equal(out->request_id, "hallo");
    kreide__test__say_reply__free_unpacked(out, NULL);
    kr_rpc_result_free(r);
    r = waiter_take(&failed);
    assert_int_equal(r->status, KREIDE__STATUS__FAILED_PRECONDITION);
    assert_string_equal(r->error_code, "say.refused");
    assert_string_equal(r->field, "text");
    kr_rpc_result_free(r);
    r = waiter_take(&unknown);
    assert_int_equal(r->status, KREIDE__STATUS__UNIMPLEMENTED);
    kr_rpc_result_free(r);
    assert_int_equal(atomic_load(&seen.calls), 2);
    waiter_destroy(&ok);
    waiter_destroy(&failed);
    waiter_destroy(&unknown);
    kr_rpc_batch_free(b);
}

/* Packs a batch envelope of `n` elements into a message. */
static nng_msg *pack_batch(ProtobufCBinaryData *items, size_t n)
{
    Kreide__Envelope env = KREIDE__ENVELOPE__INIT;
    env.n_batch = n;
    env.batch = items;
    return pack_envelope(&env);
}

static void forged_call_in_a_batch_is_refused_alone(void **state)
{
    echo_fixture *f = *state;
    say_envelope good, forged;
    say_envelope_init(&good, "echt");
    say_envelope_init(&forged, "falsch");
    ProtobufCBinaryData items[2];
    items[0].len = kr_seal_pack_buf(keys, &good.env, kr_now_ms(), &items[0].data);
    items[1].len = kr_seal_pack_buf(keys_other_secret, &forged.env, kr_now_ms(), &items[1].data);
    Kreide__Reply *r = raw_exchange(f->url, pack_batch(items, 2));
    assert_int_equal(r->status, KREIDE__STATUS__OK);
    assert_int_equal(r->n_batch, 2);
    Kreide__Reply *r0 = kreide__reply__unpack(NULL, r->batch[0].len, r->batch[0].data);
    Kreide__Reply *r1 = kreide__reply__unpack(NULL, r->batch[1].len, r->batch[1].data);
    assert_non_null(r0);
    assert_non_null(r1);
    assert_int_equal(r0->status, KREIDE__STATUS__OK);
    assert_int_equal(r1->status, KREIDE__STATUS__UNAUTHENTICATED);
    assert_string_equal(r1->error_code, "rpc.bad_seal");
    assert_int_equal(r1->body.len, 0);
    assert_int_equal(atomic_load(&seen.calls), 1); /* only the sealed one ran */
    kreide__reply__free_unpacked(r0, NULL);
    kreide__reply__free_unpacked(r1, NULL);
    kreide__reply__free_unpacked(r, NULL);
    free(items[0].data);
    free(items[1].data);
}

static void malformed_batches_are_refused(void **state)
{
    echo_fixture *f = *state;
    say_envelope e;
    say_envelope_init(&e, "x");
    ProtobufCBinaryData sealed;
    sealed.len = kr_seal_pack_buf(keys, &e.env, kr_now_ms(), &sealed.data);

    /* Too many calls: the whole message is refused, none runs. */
    ProtobufCBinaryData many[KR_RPC_MAX_BATCH + 1];
    for (size_t i = 0; i < KR_RPC_MAX_BATCH + 1; i++)
        many[i] = sealed;
    Kreide__Reply *r = raw_exchange(f->url, pack_batch(many, KR_RPC_MAX_BATCH + 1));
    assert_int_equal(r->status, KREIDE__STATUS__INVALID_ARGUMENT);
    assert_string_equal(r->error_code, "rpc.malformed_envelope");
    assert_int_equal(r->n_batch, 0);
    kreide__reply__free_unpacked(r, NULL);

    /* A batch envelope that also names a method. */
    Kreide__Envelope env = KREIDE__ENVELOPE__INIT;
    env.n_batch = 1;
    env.batch = &sealed;
    env.method = SAY;
    r = raw_exchange(f->url, pack_envelope(&env));
    assert_int_equal(r->status, KREIDE__STATUS__INVALID_ARGUMENT);
    assert_string_equal(r->error_code, "rpc.malformed_envelope");
    kreide__reply__free_unpacked(r, NULL);

    /* Elements that are garbage or batches themselves are refused one by
     * one; the good one beside them runs. */
    ProtobufCBinaryData nested;
    Kreide__Envelope inner = KREIDE__ENVELOPE__INIT;
    inner.n_batch = 1;
    inner.batch = &sealed;
    nested.len = kreide__envelope__get_packed_size(&inner);
    nested.data = malloc(nested.len);
    assert_non_null(nested.data);
    kreide__envelope__pack(&inner, nested.data);
    uint8_t junk[] = {0xff, 0xff, 0xff};
    ProtobufCBinaryData three[3] = {{sizeof(junk), junk}, nested, sealed};
    r = raw_exchange(f->url, pack_batch(three, 3));
    assert_int_equal(r->n_batch, 3);
    const char *expect[3] = {"rpc.malformed_envelope", "rpc.malformed_envelope", ""};
    for (int i = 0; i < 3; i++) {
        Kreide__Reply *ri = kreide__reply__unpack(NULL, r->batch[i].len, r->batch[i].data);
        assert_non_null(ri);
        assert_string_equal(ri->error_code, expect[i]);
        assert_int_equal(ri->status, i < 2 ? KREIDE__STATUS__INVALID_ARGUMENT : KREIDE__STATUS__OK);
        kreide__reply__free_unpacked(ri, NULL);
    }
    kreide__reply__free_unpacked(r, NULL);
    assert_int_equal(atomic_load(&seen.calls), 1);
    free(nested.data);
    free(sealed.data);
}

static void batch_fails_fast_without_a_peer(void **state)
{
    (void)state;
    kr_rpc_client *c = NULL;
    char err[256];
    assert_int_equal(kr_rpc_client_new("echo", new_url(), keys, &c, err, sizeof(err)), 0);
    kr_rpc_batch *b = kr_rpc_batch_new(c);
    waiter w;
    waiter_init(&w);
    batch_say(b, SAY, "niemand", "", false, &w);
    kr_rpc_result *r = waiter_take(&w);
    assert_int_equal(r->status, KREIDE__STATUS__UNAVAILABLE);
    assert_string_equal(r->error_code, "rpc.unavailable");
    assert_int_equal(kr_rpc_batch_len(b), 0);
    kr_rpc_result_free(r);
    waiter_destroy(&w);
    kr_rpc_batch_free(b);
    kr_rpc_client_free(c);
}

static void client_free_completes_calls_in_flight(void **state)
{
    reset_seen(state);
    enum { N = 3 };
    char url[256];
    snprintf(url, sizeof(url), "%s", new_url());
    kr_rpc_server *srv = start_echo(url, 2);
    kr_rpc_client *c = connect_echo(url);
    waiter w[N];
    Kreide__Test__SayRequest in = KREIDE__TEST__SAY_REQUEST__INIT;
    in.text = "held";
    in.hold = true;
    for (int i = 0; i < N; i++) {
        waiter_init(&w[i]);
        call_async(c, SAY, &in.base, NULL, "held", SOON_MS, &w[i]);
    }
    /* Two are in handlers, the third waits for a worker. */
    assert_true(POLL_UNTIL(atomic_load(&seen.started) == 2, SOON_MS));
    kr_rpc_client_free(c);
    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&w[i].lock);
        int times = w[i].times;
        pthread_mutex_unlock(&w[i].lock);
        assert_int_equal(times, 1);
        kr_rpc_result *res = waiter_take(&w[i]);
        assert_int_equal(res->status, KREIDE__STATUS__UNAVAILABLE);
        assert_string_equal(res->error_code, "rpc.unavailable");
        kr_rpc_result_free(res);
        waiter_destroy(&w[i]);
    }
    release_held();
    kr_rpc_server_drain(srv);
}

static void expect_start_failure(const kr_rpc_server_opts *o, const char *needle)
{
    kr_rpc_server *srv = NULL;
    char err[256] = "";
    assert_int_equal(kr_rpc_server_start(o, &srv, err, sizeof(err)), -1);
    assert_null(srv);
    if (strstr(err, needle) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void server_start_validates_its_options(void **state)
{
    char url[256];
    snprintf(url, sizeof(url), "%s", new_url());
    kr_rpc_server_opts o = echo_opts(url, 2);

    o.nmethods = 2; /* Nothing has no handler */
    expect_start_failure(&o, "Nothing");

    static const kr_rpc_method wrong_types[] = {
        KR_RPC_ENTRY("Say", say, Kreide__Test__SayRequest, Kreide__Test__AddReply),
        KR_RPC_ENTRY("Add", add, Kreide__Test__AddRequest, Kreide__Test__AddReply),
        KR_RPC_ENTRY("Nothing", nothing, Kreide__Empty, Kreide__Empty),
    };
    o = echo_opts(url, 2);
    o.methods = wrong_types;
    expect_start_failure(&o, "Say");

    static const kr_rpc_method stray[] = {
        KR_RPC_ENTRY("Say", say, Kreide__Test__SayRequest, Kreide__Test__SayReply),
        KR_RPC_ENTRY("Add", add, Kreide__Test__AddRequest, Kreide__Test__AddReply),
        KR_RPC_ENTRY("Nothing", nothing, Kreide__Empty, Kreide__Empty),
        KR_RPC_ENTRY("Shout", say, Kreide__Test__SayRequest, Kreide__Test__SayReply),
    };
    o = echo_opts(url, 2);
    o.methods = stray;
    o.nmethods = 4;
    expect_start_failure(&o, "Shout");

    o = echo_opts(url, 0);
    expect_start_failure(&o, "worker");

    o = echo_opts(url, 2);
    o.keys = NULL;
    expect_start_failure(&o, "key");

    o = echo_opts("bogus://nowhere", 2);
    expect_start_failure(&o, "bogus://nowhere");

    /* Nothing was left listening: the URL is free for a real server. */
    kr_rpc_server *srv = start_echo(url, 1);
    kr_rpc_server_drain(srv);
}

static void second_server_on_a_busy_url_fails(void **state)
{
    char url[256];
    snprintf(url, sizeof(url), "%s", new_url());
    kr_rpc_server *srv = start_echo(url, 1);
    kr_rpc_server_opts o = echo_opts(url, 1);
    expect_start_failure(&o, url);
    kr_rpc_server_drain(srv);
}

static void http_status_mapping(void **state)
{
    assert_int_equal(kr_rpc_http_status(KREIDE__STATUS__OK), 200);
    assert_int_equal(kr_rpc_http_status(KREIDE__STATUS__INVALID_ARGUMENT), 400);
    assert_int_equal(kr_rpc_http_status(KREIDE__STATUS__UNAUTHENTICATED), 401);
    assert_int_equal(kr_rpc_http_status(KREIDE__STATUS__PERMISSION_DENIED), 403);
    assert_int_equal(kr_rpc_http_status(KREIDE__STATUS__NOT_FOUND), 404);
    assert_int_equal(kr_rpc_http_status(KREIDE__STATUS__ALREADY_EXISTS), 409);
    assert_int_equal(kr_rpc_http_status(KREIDE__STATUS__FAILED_PRECONDITION), 409);
    assert_int_equal(kr_rpc_http_status(KREIDE__STATUS__RESOURCE_EXHAUSTED), 429);
    assert_int_equal(kr_rpc_http_status(KREIDE__STATUS__DEADLINE_EXCEEDED), 504);
    assert_int_equal(kr_rpc_http_status(KREIDE__STATUS__UNAVAILABLE), 503);
    assert_int_equal(kr_rpc_http_status(KREIDE__STATUS__INTERNAL), 500);
    assert_int_equal(kr_rpc_http_status(KREIDE__STATUS__UNIMPLEMENTED), 501);
    assert_int_equal(kr_rpc_http_status((Kreide__Status)99), 500);
}

static void result_free_accepts_null(void **state)
{
    kr_rpc_result_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip_carries_caller_and_request_id, echo_up, echo_down),
        cmocka_unit_test_setup_teardown(anonymous_caller_when_none_is_given, echo_up, echo_down),
        cmocka_unit_test_setup_teardown(empty_output_and_second_method, echo_up, echo_down),
        cmocka_unit_test_setup_teardown(sync_call_returns_the_reply, echo_up, echo_down),
        cmocka_unit_test_setup_teardown(handler_failure_reaches_the_client, echo_up, echo_down),
        cmocka_unit_test_setup_teardown(health_check_needs_no_handler, echo_up, echo_down),
        cmocka_unit_test(health_check_reports_a_missing_dependency),
        cmocka_unit_test_setup_teardown(unknown_method_is_unimplemented, echo_up, echo_down),
        cmocka_unit_test_setup_teardown(malformed_body_is_invalid_argument, echo_up, echo_down),
        cmocka_unit_test_setup_teardown(garbage_message_gets_invalid_argument_reply, echo_up, echo_down),
        cmocka_unit_test_setup_teardown(forged_envelopes_are_rejected, echo_up, echo_down),
        cmocka_unit_test(batched_calls_are_each_answered),
        cmocka_unit_test_setup_teardown(batch_runs_its_calls_side_by_side, echo_up, echo_down),
        cmocka_unit_test_setup_teardown(batch_keeps_each_calls_outcome, echo_up, echo_down),
        cmocka_unit_test_setup_teardown(forged_call_in_a_batch_is_refused_alone, echo_up, echo_down),
        cmocka_unit_test_setup_teardown(malformed_batches_are_refused, echo_up, echo_down),
        cmocka_unit_test(batch_fails_fast_without_a_peer),
        cmocka_unit_test_setup_teardown(expired_envelope_is_not_served, echo_up, echo_down),
        cmocka_unit_test_setup_teardown(client_gives_up_at_the_deadline, echo_up, echo_down),
        cmocka_unit_test_setup_teardown(sleeping_handler_times_out, echo_up, echo_down),
        cmocka_unit_test(no_server_fails_fast),
        cmocka_unit_test(client_rejects_bad_urls),
        cmocka_unit_test(client_reconnects_to_a_restarted_server),
        cmocka_unit_test(peer_count_survives_rejected_connections),
        cmocka_unit_test(drain_lets_the_call_in_flight_finish),
        cmocka_unit_test(drain_right_after_start),
        cmocka_unit_test(drain_hands_queued_requests_to_another_replica),
        cmocka_unit_test(many_concurrent_calls_are_all_answered),
        cmocka_unit_test(client_free_completes_calls_in_flight),
        cmocka_unit_test(server_start_validates_its_options),
        cmocka_unit_test(second_server_on_a_busy_url_fails),
        cmocka_unit_test(http_status_mapping),
        cmocka_unit_test(result_free_accepts_null),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    /* nng frees closed sockets' parts on a thread of its own; wait for it
     * so the leak checker sees a settled heap. */
    nng_fini();
    return failed;
}
