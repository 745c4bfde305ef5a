#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "kr_redis_h2o.h"
#include "kr_redis_testutil.h"

static kr_test_redis server;

static const char *key(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "kr:test:%d:%s", (int)getpid(), name);
    return buf;
}

static int group_setup(void **state)
{
    /* required of every h2o process, see kr_redis_h2o.h */
    signal(SIGPIPE, SIG_IGN);
    return kr_test_redis_start(&server);
}

static int group_teardown(void **state)
{
    kr_test_redis_cleanup(&server);
    return 0;
}

/* The client under test, freed by the teardown when a failed assertion left
 * the test early (the loop refuses to be destroyed with timers on it). */
static kr_redis_async *client;

static int loop_setup(void **state)
{
    *state = h2o_evloop_create();
    return *state == NULL ? -1 : 0;
}

static int loop_teardown(void **state)
{
    kr_redis_async_free(client);
    client = NULL;
    h2o_evloop_destroy(*state);
    return 0;
}

static kr_redis_async *new_client(h2o_loop_t *loop)
{
    char err[256];
    client = kr_redis_async_new(loop, server.url, 2000, err, sizeof(err));
    if (client == NULL)
        print_error("%s\n", err);
    assert_non_null(client);
    return client;
}

static void free_client(void)
{
    kr_redis_async_free(client);
    client = NULL;
}

/* Runs the loop until cond(arg) holds or `ms` pass; returns cond(arg). */
static bool run_until(h2o_loop_t *loop, bool (*cond)(void *), void *arg, int ms)
{
    long long deadline = kr_test_now_ms() + ms;
    while (!cond(arg) && kr_test_now_ms() < deadline)
        assert_int_equal(h2o_evloop_run(loop, 10), 0);
    return cond(arg);
}

static bool is_connected(void *arg)
{
    return kr_redis_async_is_connected(arg);
}

static bool is_disconnected(void *arg)
{
    return !kr_redis_async_is_connected(arg);
}

/* ------------------------------------------------------ command callbacks */

typedef struct {
    int calls;
    int null_replies;
    int type;
    long long integer;
    char str[64];
    size_t len;
} reply_log;

static void log_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    reply_log *l = privdata;
    redisReply *r = reply;
    l->calls++;
    if (r == NULL) {
        l->null_replies++;
        return;
    }
    l->type = r->type;
    l->integer = r->integer;
    l->len = r->len;
    if (r->str != NULL)
        memcpy(l->str, r->str, r->len < sizeof(l->str) ? r->len : sizeof(l->str));
}

static bool log_called(void *arg)
{
    return ((reply_log *)arg)->calls > 0;
}

/* ------------------------------------------------------------------ tests */

static void new_and_attach_reject_bad_arguments(void **state)
{
    h2o_loop_t *loop = *state;
    char err[256];
    assert_null(kr_redis_async_new(loop, "rediss://redis:6380", 1000, err, sizeof(err)));
    assert_non_null(strstr(err, "TLS"));
    assert_null(kr_redis_async_new(loop, server.url, 0, err, sizeof(err)));
    assert_null(kr_redis_async_new(NULL, server.url, 1000, err, sizeof(err)));
    assert_int_equal(kr_redis_h2o_attach(loop, NULL), KR_REDIS_EINVAL);
    kr_redis_async_free(NULL);
}

static void commands_queued_while_connecting_get_their_replies(void **state)
{
    h2o_loop_t *loop = *state;
    char k[128], b[128];
    kr_redis_async *r = new_client(loop);

    /* sent before the connection is up: hiredis queues them in order */
    reply_log set = {0}, get = {0}, bin = {0}, wrongtype = {0};
    assert_int_equal(kr_redis_async_command(r, log_reply, &set, "SET %s %s", key(k, sizeof(k), "async"), "value-1"), 0);
    assert_int_equal(kr_redis_async_command(r, log_reply, &get, "GET %s", k), 0);
    assert_int_equal(kr_redis_async_command(r, log_reply, &wrongtype, "INCR %s", k), 0);
    static const char payload[] = {'x', '\0', 'y'};
    const char *argv[] = {"SET", key(b, sizeof(b), "async-bin"), payload};
    const size_t lens[] = {3, strlen(b), sizeof(payload)};
    assert_int_equal(kr_redis_async_commandargv(r, NULL, NULL, 3, argv, lens), 0);
    assert_int_equal(kr_redis_async_command(r, log_reply, &bin, "GET %s", b), 0);
    assert_int_equal(kr_redis_async_commandargv(r, NULL, NULL, 0, argv, NULL), KR_REDIS_EINVAL);

    assert_true(run_until(loop, log_called, &bin, 5000));
    assert_true(kr_redis_async_is_connected(r));
    assert_int_equal(set.type, REDIS_REPLY_STATUS);
    assert_string_equal(set.str, "OK");
    assert_int_equal(get.type, REDIS_REPLY_STRING);
    assert_string_equal(get.str, "value-1");
    assert_int_equal(wrongtype.type, REDIS_REPLY_ERROR);
    assert_int_equal(bin.len, sizeof(payload));
    assert_memory_equal(bin.str, payload, sizeof(payload));

    reply_log del = {0};
    assert_int_equal(kr_redis_async_command(r, log_reply, &del, "DEL %s %s", k, b), 0);
    assert_true(run_until(loop, log_called, &del, 5000));
    assert_int_equal(del.integer, 2);
    free_client();
}

typedef struct {
    int calls;
    size_t len;
    bool intact;
} big_log;

static void check_big(redisAsyncContext *ac, void *reply, void *privdata)
{
    big_log *l = privdata;
    redisReply *r = reply;
    l->calls++;
    if (r == NULL || r->type != REDIS_REPLY_STRING)
        return;
    l->len = r->len;
    l->intact = true;
    for (size_t i = 0; i < r->len; i++)
        if (r->str[i] != (char)('a' + i % 26))
            l->intact = false;
}

static bool big_called(void *arg)
{
    return ((big_log *)arg)->calls > 0;
}

/* Far larger than a socket buffer: the write goes out in many pieces, each
 * waiting for h2o to report the socket writable again. */
static void large_values_cross_the_adapter_in_pieces(void **state)
{
    h2o_loop_t *loop = *state;
    char k[128];
    const size_t size = 4u << 20;
    char *value = malloc(size);
    assert_non_null(value);
    for (size_t i = 0; i < size; i++)
        value[i] = (char)('a' + i % 26);

    kr_redis_async *r = new_client(loop);
    reply_log set = {0};
    big_log get = {0};
    assert_int_equal(kr_redis_async_command(r, log_reply, &set, "SET %s %b", key(k, sizeof(k), "big"), value, size), 0);
    free(value);
    assert_int_equal(kr_redis_async_command(r, check_big, &get, "GETDEL %s", k), 0);
    assert_true(run_until(loop, big_called, &get, 10000));
    assert_string_equal(set.str, "OK");
    assert_int_equal(get.len, size);
    assert_true(get.intact);
    free_client();
}

static void free_calls_pending_callbacks_with_null(void **state)
{
    h2o_loop_t *loop = *state;
    kr_redis_async *r = new_client(loop);
    assert_true(run_until(loop, is_connected, r, 5000));
    reply_log l = {0};
    assert_int_equal(kr_redis_async_command(r, log_reply, &l, "PING"), 0);
    free_client();
    assert_int_equal(l.calls, 1);
    assert_int_equal(l.null_replies, 1);
}

/* ---------------------------------------------------------------- pub/sub */

typedef struct {
    int count;
    int wanted;
    char channel[128];
    char pattern[128];
    char payload[64];
    size_t payload_len;
} msg_log;

static void log_message(kr_redis_async *r, const kr_redis_message *m, void *privdata)
{
    msg_log *l = privdata;
    l->count++;
    snprintf(l->channel, sizeof(l->channel), "%.*s", (int)m->channel_len, m->channel);
    if (m->pattern != NULL)
        snprintf(l->pattern, sizeof(l->pattern), "%.*s", (int)m->pattern_len, m->pattern);
    else
        l->pattern[0] = '\0';
    l->payload_len = m->payload_len < sizeof(l->payload) ? m->payload_len : sizeof(l->payload);
    memcpy(l->payload, m->payload, l->payload_len);
}

typedef struct {
    int ups;
    int downs;
    bool up;
} state_log;

static void log_state(kr_redis_async *r, bool up, void *privdata)
{
    state_log *s = privdata;
    s->up = up;
    if (up)
        s->ups++;
    else
        s->downs++;
}

static bool subs_up(void *arg)
{
    return ((state_log *)arg)->up;
}

static bool subs_down(void *arg)
{
    return !((state_log *)arg)->up;
}

static bool got_wanted(void *arg)
{
    msg_log *l = arg;
    return l->count >= l->wanted;
}

static bool both_got_wanted(void *arg)
{
    msg_log *l = arg;
    return got_wanted(&l[0]) && got_wanted(&l[1]);
}

/* Polls PUBSUB NUMSUB (through a script, to get the count as one integer)
 * until `channel` has a subscriber: a subscription made on one connection
 * becomes visible to publishers on another only once the server has
 * processed it. */
static bool wait_subscribed(h2o_loop_t *loop, kr_redis_async *r, const char *channel, int ms)
{
    long long deadline = kr_test_now_ms() + ms;
    while (kr_test_now_ms() < deadline) {
        reply_log n = {0};
        if (kr_redis_async_command(r, log_reply, &n, "EVAL %s 0 %s", "return redis.call('PUBSUB','NUMSUB',ARGV[1])[2]", channel) !=
                0 ||
            !run_until(loop, log_called, &n, 2000))
            return false;
        if (n.type == REDIS_REPLY_INTEGER && n.integer >= 1)
            return true;
    }
    return false;
}

static void publish(h2o_loop_t *loop, kr_redis_async *r, const char *channel, const char *payload, size_t len, long long receivers)
{
    reply_log l = {0};
    assert_int_equal(kr_redis_async_command(r, log_reply, &l, "PUBLISH %s %b", channel, payload, len), 0);
    assert_true(run_until(loop, log_called, &l, 5000));
    assert_int_equal(l.type, REDIS_REPLY_INTEGER);
    assert_int_equal(l.integer, receivers);
}

static void subscribe_receives_channel_and_pattern_messages(void **state)
{
    h2o_loop_t *loop = *state;
    char chan[128], pat[128], pchan[128];
    kr_redis_async *r = new_client(loop);
    msg_log logs[2] = {{.wanted = 1}, {.wanted = 1}};
    state_log st = {0};
    kr_redis_async_on_subscriptions(r, log_state, &st);

    assert_int_equal(kr_redis_async_subscribe(r, key(chan, sizeof(chan), "events"), false, log_message, &logs[0]), 0);
    assert_int_equal(kr_redis_async_subscribe(r, key(pat, sizeof(pat), "school:*"), true, log_message, &logs[1]), 0);
    assert_int_equal(kr_redis_async_subscribe(r, chan, false, log_message, &logs[0]), KR_REDIS_EEXIST);
    assert_int_equal(kr_redis_async_subscribe(r, "", false, log_message, &logs[0]), KR_REDIS_EINVAL);
    assert_true(run_until(loop, subs_up, &st, 5000));
    assert_int_equal(st.ups, 1);
    assert_true(run_until(loop, is_connected, r, 5000));

    static const char bin[] = {'h', 'i', '\0', '!'};
    publish(loop, r, chan, bin, sizeof(bin), 1);
    publish(loop, r, key(pchan, sizeof(pchan), "school:42"), "room-7", 6, 1);
    assert_true(run_until(loop, both_got_wanted, logs, 5000));

    assert_int_equal(logs[0].count, 1);
    assert_string_equal(logs[0].channel, chan);
    assert_string_equal(logs[0].pattern, "");
    assert_int_equal(logs[0].payload_len, sizeof(bin));
    assert_memory_equal(logs[0].payload, bin, sizeof(bin));

    assert_int_equal(logs[1].count, 1);
    assert_string_equal(logs[1].channel, pchan);
    assert_string_equal(logs[1].pattern, pat);
    assert_memory_equal(logs[1].payload, "room-7", 6);

    /* a subscription added while connected becomes active as well */
    char late[128];
    msg_log late_log = {.wanted = 1};
    assert_int_equal(kr_redis_async_subscribe(r, key(late, sizeof(late), "late"), false, log_message, &late_log), 0);
    assert_true(wait_subscribed(loop, r, late, 5000));
    publish(loop, r, late, "x", 1, 1);
    assert_true(run_until(loop, got_wanted, &late_log, 5000));
    assert_string_equal(late_log.channel, late);
    assert_int_equal(st.ups, 1);
    free_client();
}

static void reconnects_and_resubscribes_after_server_restart(void **state)
{
    if (!server.own)
        skip();
    h2o_loop_t *loop = *state;
    char chan[128], k[128];
    kr_redis_async *r = new_client(loop);
    msg_log ml = {.wanted = 1};
    state_log st = {0};
    kr_redis_async_on_subscriptions(r, log_state, &st);
    assert_int_equal(kr_redis_async_subscribe(r, key(chan, sizeof(chan), "restart"), false, log_message, &ml), 0);
    assert_true(run_until(loop, subs_up, &st, 5000));
    assert_true(run_until(loop, is_connected, r, 5000));

    /* a reply that will never come: the server dies first */
    reply_log blocked = {0};
    assert_int_equal(kr_redis_async_command(r, log_reply, &blocked, "BLPOP %s 30", key(k, sizeof(k), "never")), 0);
    assert_int_equal(h2o_evloop_run(loop, 0), 0);

    kr_test_redis_kill(&server);
    assert_true(run_until(loop, log_called, &blocked, 5000));
    assert_int_equal(blocked.null_replies, 1);
    assert_true(run_until(loop, subs_down, &st, 5000));
    assert_int_equal(st.downs, 1);
    assert_true(run_until(loop, is_disconnected, r, 5000));
    assert_string_not_equal(kr_redis_async_errstr(r), "");

    assert_int_equal(kr_test_redis_spawn(&server), 0);
    assert_true(run_until(loop, subs_up, &st, 10000));
    assert_int_equal(st.ups, 2);
    assert_true(run_until(loop, is_connected, r, 10000));

    /* subscriptions are renewed: the fresh server delivers at once */
    reply_log pub = {0};
    assert_int_equal(kr_redis_async_command(r, log_reply, &pub, "PUBLISH %s after-restart", chan), 0);
    assert_true(run_until(loop, log_called, &pub, 5000));
    assert_int_equal(pub.type, REDIS_REPLY_INTEGER);
    assert_int_equal(pub.integer, 1);
    assert_true(run_until(loop, got_wanted, &ml, 5000));
    assert_memory_equal(ml.payload, "after-restart", 13);

    reply_log set = {0}, get = {0};
    assert_int_equal(kr_redis_async_command(r, log_reply, &set, "SET %s v", k), 0);
    assert_int_equal(kr_redis_async_command(r, log_reply, &get, "GETDEL %s", k), 0);
    assert_true(run_until(loop, log_called, &get, 5000));
    assert_string_equal(get.str, "v");
    free_client();
}

static bool has_error(void *arg)
{
    return kr_redis_async_errstr(arg)[0] != '\0';
}

static void starts_while_server_down_and_connects_when_it_appears(void **state)
{
    if (!server.own)
        skip();
    h2o_loop_t *loop = *state;
    kr_test_redis_kill(&server);
    kr_redis_async *r = new_client(loop);
    assert_true(run_until(loop, has_error, r, 5000));
    assert_non_null(strstr(kr_redis_async_errstr(r), "cannot connect"));
    assert_false(kr_redis_async_is_connected(r));
    reply_log l = {0};
    /* between attempts there is no connection to queue on */
    assert_true(run_until(loop, is_disconnected, r, 100));
    int rc = kr_redis_async_command(r, log_reply, &l, "PING");
    if (rc == 0) {
        /* caught during an attempt: the attempt fails and reports NULL */
        assert_true(run_until(loop, log_called, &l, 5000));
        assert_int_equal(l.null_replies, 1);
    } else {
        assert_int_equal(rc, KR_REDIS_ENOTCONN);
        assert_int_equal(l.calls, 0);
    }

    assert_int_equal(kr_test_redis_spawn(&server), 0);
    assert_true(run_until(loop, is_connected, r, 10000));
    reply_log pong = {0};
    assert_int_equal(kr_redis_async_command(r, log_reply, &pong, "PING"), 0);
    assert_true(run_until(loop, log_called, &pong, 5000));
    assert_string_equal(pong.str, "PONG");
    free_client();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(new_and_attach_reject_bad_arguments, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(commands_queued_while_connecting_get_their_replies, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(large_values_cross_the_adapter_in_pieces, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(free_calls_pending_callbacks_with_null, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(subscribe_receives_channel_and_pattern_messages, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(reconnects_and_resubscribes_after_server_restart, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(starts_while_server_down_and_connects_when_it_appears, loop_setup, loop_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
