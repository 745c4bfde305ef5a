/* Tests of kr_rpc_h2o: completions of RPC calls reach the h2o event loop
 * that started them and run on its thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kr_metrics.h"
#include "kr_rpc_h2o.h"
#include "rpctest.pb-c.h"

#define KEY_GOOD "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
#define SAY "kreide.test.Echo/Say"
#define SOON_MS 10000

static kr_keyring *keys;
static char sockdir[128];
static char url[200];
static char dead_url[200];

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------- a minimal Echo server */

static int say(kr_rpc_ctx *ctx, const Kreide__Test__SayRequest *in, Kreide__Test__SayReply *out)
{
    out->text = kr_arena_strdup(ctx->arena, in->text);
    return 0;
}

static int add(kr_rpc_ctx *ctx, const Kreide__Test__AddRequest *in, Kreide__Test__AddReply *out)
{
    out->sum = in->a + in->b;
    return 0;
}

static int nothing(kr_rpc_ctx *ctx, const Kreide__Empty *in, Kreide__Empty *out)
{
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

/* ------------------------------------------------------- the event loop */

typedef struct {
    h2o_evloop_t *loop;
    h2o_multithread_queue_t *queue;
    kr_rpc_h2o *rpc;
    kr_rpc_server *srv;
    kr_rpc_client *client;
    kr_rpc_client *nobody; /* dials a URL where no server listens */
    pthread_t loop_thread;
} fixture;

/* What one completion saw. */
typedef struct {
    fixture *f;
    int runs;
    bool on_loop_thread;
    Kreide__Status status;
    char text[64];
    char error_code[64];
} outcome;

static int completed;

static void record(void *arg, kr_rpc_result *res)
{
    outcome *o = arg;
    o->runs++;
    o->on_loop_thread = pthread_equal(pthread_self(), o->f->loop_thread);
    o->status = res->status;
    snprintf(o->error_code, sizeof(o->error_code), "%s", res->error_code);
    if (res->status == KREIDE__STATUS__OK) {
        Kreide__Test__SayReply *out = kreide__test__say_reply__unpack(NULL, res->body_len, res->body);
        if (out != NULL) {
            snprintf(o->text, sizeof(o->text), "%s", out->text);
            kreide__test__say_reply__free_unpacked(out, NULL);
        }
    }
    kr_rpc_result_free(res);
    completed++;
}

static void say_on_loop_with(fixture *f, kr_rpc_client *c, const char *text, bool alone, outcome *o)
{
    Kreide__Test__SayRequest in = KREIDE__TEST__SAY_REQUEST__INIT;
    in.text = (char *)text;
    uint8_t buf[128];
    kr_rpc_request rq = {
        .method = SAY,
        .request_id = "h2o",
        .deadline_ms = kr_now_ms() + SOON_MS,
        .body = buf,
        .body_len = kreide__test__say_request__pack(&in, buf),
        .alone = alone,
    };
    kr_rpc_h2o_call(f->rpc, c, &rq, record, o);
}

static void say_on_loop(fixture *f, kr_rpc_client *c, const char *text, outcome *o)
{
    say_on_loop_with(f, c, text, false, o);
}

/* Runs the loop until `n` completions have run, bounded. */
static bool run_until(fixture *f, int n)
{
    int64_t end = mono_ms() + SOON_MS;
    while (completed < n && mono_ms() < end)
        h2o_evloop_run(f->loop, 50);
    return completed >= n;
}

static int group_setup(void **state)
{
    char err[128];
    if (kr_keyring_parse(KEY_GOOD, &keys, err, sizeof(err)) != 0)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(sockdir, sizeof(sockdir), "%s/kr_rpc_h2o_test.XXXXXX", tmp && *tmp && strlen(tmp) < 60 ? tmp : P_tmpdir);
    if (mkdtemp(sockdir) == NULL)
        return -1;
    snprintf(url, sizeof(url), "ipc://%s/echo.sock", sockdir);
    snprintf(dead_url, sizeof(dead_url), "ipc://%s/nobody.sock", sockdir);
    return 0;
}

static int group_teardown(void **state)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/echo.sock", sockdir);
    unlink(path);
    rmdir(sockdir);
    kr_keyring_free(keys);
    return 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    f->loop_thread = pthread_self();
    f->loop = h2o_evloop_create();
    f->queue = h2o_multithread_create_queue(f->loop);
    f->rpc = kr_rpc_h2o_new(f->loop, f->queue);

    kr_rpc_server_opts o = {
        .service = &kreide__test__echo__descriptor,
        .methods = echo_methods,
        .nmethods = sizeof(echo_methods) / sizeof(echo_methods[0]),
        .listen_url = url,
        .workers = 2,
        .keys = keys,
        .version = "test-1",
    };
    char err[256];
    if (kr_rpc_server_start(&o, &f->srv, err, sizeof(err)) != 0 ||
        kr_rpc_client_new("echo", url, keys, &f->client, err, sizeof(err)) != 0 ||
        kr_rpc_client_new("nobody", dead_url, keys, &f->nobody, err, sizeof(err)) != 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    int64_t end = mono_ms() + SOON_MS;
    while (kr_rpc_client_peers(f->client) == 0 && mono_ms() < end)
        h2o_evloop_run(f->loop, 5);
    if (kr_rpc_client_peers(f->client) == 0)
        return -1;
    completed = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kr_rpc_client_free(f->client);
    kr_rpc_client_free(f->nobody);
    kr_rpc_server_drain(f->srv);
    kr_rpc_h2o_free(f->rpc);
    h2o_multithread_destroy_queue(f->queue);
    /* h2o 2.2.5 built for its own event loop releases the queue's resources
     * here but not the queue itself (its libuv build does). */
    free(f->queue);
    h2o_evloop_destroy(f->loop);
    free(f);
    return 0;
}

/* The server's count of request messages that carried several calls. */
static long batches_served(void)
{
    size_t len;
    char *text = kr_metrics_render(&len);
    const char *at = strstr(text, "\nkreide_rpc_batches_total ");
    long n = at != NULL ? strtol(at + strlen("\nkreide_rpc_batches_total "), NULL, 10) : 0;
    free(text);
    return n;
}

/* ------------------------------------------------------------ tests */

static void completions_run_on_the_loop_thread(void **state)
{
    fixture *f = *state;
    enum { N = 20 };
    long batches = batches_served();
    outcome o[N];
    char text[N][24];
    memset(o, 0, sizeof(o));
    for (int i = 0; i < N; i++) {
        o[i].f = f;
        snprintf(text[i], sizeof(text[i]), "call %d", i);
        say_on_loop(f, f->client, text[i], &o[i]);
    }
    /* Nothing runs before the loop does. */
    assert_int_equal(completed, 0);
    assert_int_equal(kr_rpc_h2o_pending(f->rpc), N);

    assert_true(run_until(f, N));
    assert_int_equal(kr_rpc_h2o_pending(f->rpc), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(o[i].runs, 1);
        assert_true(o[i].on_loop_thread);
        assert_int_equal(o[i].status, KREIDE__STATUS__OK);
        assert_string_equal(o[i].text, text[i]);
    }
    /* Started in one turn of the loop, they travelled as one batch. */
    assert_int_equal(batches_served(), batches + 1);
}

static void a_call_marked_alone_is_not_batched(void **state)
{
    fixture *f = *state;
    long batches = batches_served();
    outcome o[3];
    memset(o, 0, sizeof(o));
    for (int i = 0; i < 3; i++) {
        o[i].f = f;
        say_on_loop_with(f, f->client, i == 1 ? "alone" : "together", i == 1, &o[i]);
    }
    assert_true(run_until(f, 3));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(o[i].status, KREIDE__STATUS__OK);
        assert_string_equal(o[i].text, i == 1 ? "alone" : "together");
    }
    /* The two others shared one message. */
    assert_int_equal(batches_served(), batches + 1);
}

static void calls_of_later_turns_travel_on_their_own(void **state)
{
    fixture *f = *state;
    long batches = batches_served();
    outcome o[3];
    memset(o, 0, sizeof(o));
    for (int i = 0; i < 3; i++) {
        o[i].f = f;
        say_on_loop(f, f->client, "alone", &o[i]);
        assert_true(run_until(f, i + 1));
        assert_int_equal(o[i].status, KREIDE__STATUS__OK);
    }
    assert_int_equal(batches_served(), batches);
}

static void fast_failure_is_delivered_by_the_loop_too(void **state)
{
    fixture *f = *state;
    assert_int_equal(kr_rpc_client_peers(f->nobody), 0);
    outcome o = {.f = f};
    say_on_loop(f, f->nobody, "anyone?", &o);
    /* kr_rpc_call failed at once, but the completion waits for the loop
     * rather than running inside kr_rpc_h2o_call. */
    assert_int_equal(o.runs, 0);
    assert_int_equal(kr_rpc_h2o_pending(f->rpc), 1);
    assert_true(run_until(f, 1));
    assert_int_equal(o.runs, 1);
    assert_true(o.on_loop_thread);
    assert_int_equal(o.status, KREIDE__STATUS__UNAVAILABLE);
    assert_string_equal(o.error_code, "rpc.unavailable");
    assert_int_equal(kr_rpc_h2o_pending(f->rpc), 0);
}

/* A completion may start the next call, as a handler chaining calls does. */
static outcome chained_second;

static void chain(void *arg, kr_rpc_result *res)
{
    outcome *o = arg;
    record(arg, res);
    say_on_loop(o->f, o->f->client, "second", &chained_second);
}

static void completion_may_start_another_call(void **state)
{
    fixture *f = *state;
    outcome first = {.f = f};
    memset(&chained_second, 0, sizeof(chained_second));
    chained_second.f = f;
    Kreide__Test__SayRequest in = KREIDE__TEST__SAY_REQUEST__INIT;
    in.text = "first";
    uint8_t buf[64];
    kr_rpc_request rq = {
        .method = SAY,
        .request_id = "chain",
        .deadline_ms = kr_now_ms() + SOON_MS,
        .body = buf,
        .body_len = kreide__test__say_request__pack(&in, buf),
    };
    kr_rpc_h2o_call(f->rpc, f->client, &rq, chain, &first);
    assert_true(run_until(f, 2));
    assert_string_equal(first.text, "first");
    assert_string_equal(chained_second.text, "second");
    assert_true(chained_second.on_loop_thread);
    assert_int_equal(kr_rpc_h2o_pending(f->rpc), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(completions_run_on_the_loop_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(calls_of_later_turns_travel_on_their_own, setup, teardown),
        cmocka_unit_test_setup_teardown(a_call_marked_alone_is_not_batched, setup, teardown),
        cmocka_unit_test_setup_teardown(fast_failure_is_delivered_by_the_loop_too, setup, teardown),
        cmocka_unit_test_setup_teardown(completion_may_start_another_call, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    /* nng frees closed sockets' parts on a thread of its own; wait for it
     * so the leak checker sees a settled heap. */
    nng_fini();
    return failed;
}
