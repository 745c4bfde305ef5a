#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "kr_redis.h"
#include "kr_redis_testutil.h"

static kr_test_redis server;

static const char *key(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "kr:test:%d:%s", (int)getpid(), name);
    return buf;
}

static int group_setup(void **state)
{
    return kr_test_redis_start(&server);
}

static int group_teardown(void **state)
{
    kr_test_redis_cleanup(&server);
    return 0;
}

/* ------------------------------------------------------------ URL parsing */

static void url_parse_accepts_valid_forms(void **state)
{
    kr_redis_target t;
    char err[256];

    assert_int_equal(kr_redis_url_parse("redis://localhost", &t, err, sizeof(err)), 0);
    assert_false(t.is_unix);
    assert_string_equal(t.host, "localhost");
    assert_int_equal(t.port, 6379);
    assert_int_equal(t.db, 0);
    assert_string_equal(t.password, "");

    assert_int_equal(kr_redis_url_parse("redis://:s3cret@redis.kreide.svc:6380/2", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "redis.kreide.svc");
    assert_int_equal(t.port, 6380);
    assert_int_equal(t.db, 2);
    assert_string_equal(t.user, "");
    assert_string_equal(t.password, "s3cret");

    assert_int_equal(kr_redis_url_parse("REDIS://gw:p%40ss%3Aw@[::1]:7000/15", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "::1");
    assert_int_equal(t.port, 7000);
    assert_int_equal(t.db, 15);
    assert_string_equal(t.user, "gw");
    assert_string_equal(t.password, "p@ss:w");

    assert_int_equal(kr_redis_url_parse("redis://10.0.0.7/", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "10.0.0.7");
    assert_int_equal(t.db, 0);

    assert_int_equal(kr_redis_url_parse("unix:///run/redis/redis.sock", &t, err, sizeof(err)), 0);
    assert_true(t.is_unix);
    assert_string_equal(t.path, "/run/redis/redis.sock");
    assert_int_equal(t.db, 0);

    assert_int_equal(kr_redis_url_parse("unix:///run/redis.sock?db=3&password=a%26b", &t, err, sizeof(err)), 0);
    assert_string_equal(t.path, "/run/redis.sock");
    assert_int_equal(t.db, 3);
    assert_string_equal(t.password, "a&b");
}

static void expect_bad(const char *url, const char *words)
{
    kr_redis_target t;
    char err[256] = "untouched";
    int rc = kr_redis_url_parse(url, &t, err, sizeof(err));
    if (rc != KR_REDIS_EINVAL || strstr(err, words) == NULL) {
        print_error("url %s: rc %d, message \"%s\", expected it to mention \"%s\"\n", url ? url : "(null)", rc, err, words);
        fail();
    }
}

static void url_parse_rejects_bad_input(void **state)
{
    char path[200], host[300], url[400];

    expect_bad(NULL, "empty");
    expect_bad("", "empty");
    expect_bad("http://localhost", "scheme");
    expect_bad("redis+unix:///run/redis.sock", "scheme");
    expect_bad("rediss://redis.example:6380", "TLS");
    expect_bad("redis://", "host is missing");
    expect_bad("redis://:6379", "host is missing");
    expect_bad("redis://host:0", "port");
    expect_bad("redis://host:65536", "port");
    expect_bad("redis://host:", "port");
    expect_bad("redis://host:63a9", "port");
    expect_bad("redis://host/abc", "database");
    expect_bad("redis://host/1/2", "database");
    expect_bad("redis://host/-1", "database");
    expect_bad("redis://host/99999999999", "database");
    expect_bad("redis://host?db=1", "query");
    expect_bad("redis://ho$t", "not allowed");
    expect_bad("redis://host name", "space");
    expect_bad("redis://[::1", "']'");
    expect_bad("redis://[::1]x", "after ']'");
    expect_bad("redis://secret@host", "[user]:password@");
    expect_bad("redis://:@host", "empty");
    expect_bad("redis://:bad%zzescape@host", "percent");
    expect_bad("redis://:nul%00@host", "percent");
    expect_bad("unix://run/redis.sock", "absolute");
    expect_bad("unix:///", "missing");
    expect_bad("unix:///run/", "missing");
    expect_bad("unix:///run/redis.sock?db=x", "db must be");
    expect_bad("unix:///run/redis.sock?timeout=3", "unknown query parameter");
    expect_bad("unix:///run/redis.sock?db", "key=value");

    memset(path, 'p', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    snprintf(url, sizeof(url), "unix:///%s", path);
    expect_bad(url, "longer than");

    memset(host, 'h', sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    snprintf(url, sizeof(url), "redis://%s", host);
    expect_bad(url, "longer than");

    /* the message never repeats the password */
    kr_redis_target t;
    char err[256];
    assert_int_equal(kr_redis_url_parse("redis://:hunter2@host:99999", &t, err, sizeof(err)), KR_REDIS_EINVAL);
    assert_null(strstr(err, "hunter2"));
}

static void new_rejects_bad_url_and_timeout(void **state)
{
    assert_null(kr_redis_new("rediss://x", 1000));
    assert_null(kr_redis_new("redis://x", 0));
    kr_redis *r = kr_redis_new("redis://x", 1000);
    assert_non_null(r);
    kr_redis_free(r);
    kr_redis_free(NULL);
}

/* --------------------------------------------------------------- commands */

static void commands_roundtrip_binary_and_error_replies(void **state)
{
    char k[128], l[128];
    kr_redis *r = kr_redis_new(server.url, 2000);
    assert_non_null(r);

    redisReply *rep = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "SET %s %s", key(k, sizeof(k), "plain"), "hello world");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STATUS);
    assert_string_equal(rep->str, "OK");
    freeReplyObject(rep);
    assert_int_equal(kr_redis_errcode(r), 0);
    assert_string_equal(kr_redis_errstr(r), "");

    rep = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "GET %s", k);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_string_equal(rep->str, "hello world");
    freeReplyObject(rep);

    static const char bin[] = {'a', '\0', 'b', '\r', '\n', 'c'};
    const char *argv[] = {"SET", key(l, sizeof(l), "binary"), bin};
    const size_t lens[] = {3, strlen(l), sizeof(bin)};
    rep = kr_redis_commandargv(r, KR_REDIS_IDEMPOTENT, 3, argv, lens);
    assert_non_null(rep);
    freeReplyObject(rep);
    rep = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "GET %b", l, strlen(l));
    assert_non_null(rep);
    assert_int_equal(rep->len, sizeof(bin));
    assert_memory_equal(rep->str, bin, sizeof(bin));
    freeReplyObject(rep);

    rep = kr_redis_command(r, KR_REDIS_ONCE, "INCR %s", key(l, sizeof(l), "counter"));
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    assert_int_equal(rep->integer, 1);
    freeReplyObject(rep);

    /* a Redis error is a reply, and the connection stays usable */
    rep = kr_redis_command(r, KR_REDIS_ONCE, "LPUSH %s x", k);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(rep->str, "WRONGTYPE"));
    freeReplyObject(rep);
    assert_int_equal(kr_redis_errcode(r), 0);

    assert_null(kr_redis_commandargv(r, KR_REDIS_ONCE, 0, argv, NULL));
    assert_int_equal(kr_redis_errcode(r), KR_REDIS_EINVAL);

    char m[128];
    key(l, sizeof(l), "binary");
    key(m, sizeof(m), "counter");
    rep = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "DEL %s %s %s", k, l, m);
    assert_non_null(rep);
    assert_int_equal(rep->integer, 3);
    freeReplyObject(rep);
    kr_redis_free(r);
}

static void url_db_selects_database(void **state)
{
    char k[128], url[sizeof(server.url) + 32];
    kr_redis_target t;
    assert_int_equal(kr_redis_url_parse(server.url, &t, NULL, 0), 0);
    if (t.db != 0)
        skip();
    if (t.is_unix)
        snprintf(url, sizeof(url), "%s%sdb=1", server.url, strchr(server.url, '?') ? "&" : "?");
    else
        snprintf(url, sizeof(url), "%s/1", server.url);

    kr_redis *db0 = kr_redis_new(server.url, 2000), *db1 = kr_redis_new(url, 2000);
    assert_non_null(db0);
    assert_non_null(db1);
    redisReply *rep = kr_redis_command(db1, KR_REDIS_IDEMPOTENT, "SET %s in-db-1", key(k, sizeof(k), "db"));
    assert_non_null(rep);
    freeReplyObject(rep);
    rep = kr_redis_command(db0, KR_REDIS_IDEMPOTENT, "EXISTS %s", k);
    assert_non_null(rep);
    assert_int_equal(rep->integer, 0);
    freeReplyObject(rep);
    rep = kr_redis_command(db1, KR_REDIS_IDEMPOTENT, "GETDEL %s", k);
    assert_non_null(rep);
    assert_string_equal(rep->str, "in-db-1");
    freeReplyObject(rep);
    kr_redis_free(db0);
    kr_redis_free(db1);
}

static void url_password_is_sent_as_auth(void **state)
{
    if (!server.own)
        skip();
    char url[sizeof(server.url) + 64];
    kr_redis *admin = kr_redis_new(server.url, 2000);
    redisReply *rep = kr_redis_command(admin, KR_REDIS_IDEMPOTENT, "CONFIG SET requirepass %s", "s3cret");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);

    kr_redis *anon = kr_redis_new(server.url, 2000);
    rep = kr_redis_command(anon, KR_REDIS_IDEMPOTENT, "GET x");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_ERROR); /* NOAUTH */
    freeReplyObject(rep);
    kr_redis_free(anon);

    snprintf(url, sizeof(url), "%s?password=wrong-one", server.url);
    kr_redis *wrong = kr_redis_new(url, 2000);
    assert_null(kr_redis_command(wrong, KR_REDIS_IDEMPOTENT, "PING"));
    assert_int_equal(kr_redis_errcode(wrong), KR_REDIS_EAUTH);
    assert_non_null(strstr(kr_redis_errstr(wrong), "AUTH"));
    assert_null(strstr(kr_redis_errstr(wrong), "wrong-one"));
    kr_redis_free(wrong);

    snprintf(url, sizeof(url), "%s?password=s3cret", server.url);
    kr_redis *right = kr_redis_new(url, 2000);
    rep = kr_redis_command(right, KR_REDIS_IDEMPOTENT, "PING");
    assert_non_null(rep);
    assert_string_equal(rep->str, "PONG");
    freeReplyObject(rep);
    kr_redis_free(right);

    rep = kr_redis_command(admin, KR_REDIS_IDEMPOTENT, "CONFIG SET requirepass %s", "");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    kr_redis_free(admin);
}

/* ---------------------------------------------- failures and reconnecting */

/* The process keeps SIGPIPE's default action in these tests: writing to the
 * killed server's socket would end the test binary if the client did not
 * contain the signal. */

static void restart_server(void)
{
    kr_test_redis_kill(&server);
    assert_int_equal(kr_test_redis_spawn(&server), 0);
}

static void idempotent_command_survives_server_restart(void **state)
{
    if (!server.own)
        skip();
    char k[128];
    kr_redis *r = kr_redis_new(server.url, 2000);
    redisReply *rep = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "SET %s before", key(k, sizeof(k), "restart"));
    assert_non_null(rep);
    freeReplyObject(rep);

    restart_server();

    rep = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "SET %s after", k);
    if (rep == NULL)
        print_error("%s\n", kr_redis_errstr(r));
    assert_non_null(rep);
    if (rep == NULL)
        return;
    assert_string_equal(rep->str, "OK");
    freeReplyObject(rep);
    rep = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "GET %s", k);
    assert_non_null(rep);
    assert_string_equal(rep->str, "after");
    freeReplyObject(rep);
    kr_redis_free(r);
}

static void once_command_reports_lost_connection_instead_of_retrying(void **state)
{
    if (!server.own)
        skip();
    char k[128];
    kr_redis *r = kr_redis_new(server.url, 2000);
    redisReply *rep = kr_redis_command(r, KR_REDIS_ONCE, "INCR %s", key(k, sizeof(k), "once"));
    assert_non_null(rep);
    assert_int_equal(rep->integer, 1);
    freeReplyObject(rep);

    restart_server();

    assert_null(kr_redis_command(r, KR_REDIS_ONCE, "INCR %s", k));
    assert_int_equal(kr_redis_errcode(r), KR_REDIS_EIO);
    assert_non_null(strstr(kr_redis_errstr(r), "not retried"));

    /* the fresh server never saw the INCR: it was not silently re-sent */
    rep = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "GET %s", k);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_NIL);
    freeReplyObject(rep);
    kr_redis_free(r);
}

static void server_down_fails_fast_then_recovers(void **state)
{
    if (!server.own)
        skip();
    kr_redis *r = kr_redis_new(server.url, 2000);
    redisReply *rep = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "PING");
    assert_non_null(rep);
    freeReplyObject(rep);

    kr_test_redis_kill(&server);
    assert_null(kr_redis_command(r, KR_REDIS_IDEMPOTENT, "PING"));
    assert_int_equal(kr_redis_errcode(r), KR_REDIS_ECONNECT);
    assert_non_null(strstr(kr_redis_errstr(r), "cannot connect"));
    assert_null(kr_redis_command(r, KR_REDIS_IDEMPOTENT, "PING"));
    assert_int_equal(kr_redis_errcode(r), KR_REDIS_ECONNECT);

    assert_int_equal(kr_test_redis_spawn(&server), 0);
    rep = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "PING");
    assert_non_null(rep);
    assert_string_equal(rep->str, "PONG");
    freeReplyObject(rep);
    assert_int_equal(kr_redis_errcode(r), 0);
    kr_redis_free(r);
}

static void command_timeout_fails_and_drops_connection(void **state)
{
    char k[128];
    kr_redis *r = kr_redis_new(server.url, 200);
    redisReply *rep = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "PING");
    assert_non_null(rep);
    freeReplyObject(rep);

    /* BLPOP on an empty list holds the reply back for 3 s on the server */
    long long start = kr_test_now_ms();
    assert_null(kr_redis_command(r, KR_REDIS_ONCE, "BLPOP %s 3", key(k, sizeof(k), "never-filled")));
    long long took = kr_test_now_ms() - start;
    assert_int_equal(kr_redis_errcode(r), KR_REDIS_ETIMEDOUT);
    assert_non_null(strstr(kr_redis_errstr(r), "200 ms"));
    assert_true(took >= 190);
    assert_true(took < 2900);

    /* the next command gets its own reply, not the late one of BLPOP */
    rep = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "ECHO %s", "fresh");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_string_equal(rep->str, "fresh");
    freeReplyObject(rep);
    kr_redis_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(url_parse_accepts_valid_forms),
        cmocka_unit_test(url_parse_rejects_bad_input),
        cmocka_unit_test(new_rejects_bad_url_and_timeout),
        cmocka_unit_test(commands_roundtrip_binary_and_error_replies),
        cmocka_unit_test(url_db_selects_database),
        cmocka_unit_test(url_password_is_sent_as_auth),
        cmocka_unit_test(idempotent_command_survives_server_restart),
        cmocka_unit_test(once_command_reports_lost_connection_instead_of_retrying),
        cmocka_unit_test(server_down_fails_fast_then_recovers),
        cmocka_unit_test(command_timeout_fails_and_drops_connection),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
