#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kr_redis_testutil.h"
#include "throttle.h"

static kr_test_redis server;
static kr_redis *rc;

/* A name unique to this test process, so runs can share a server. */
static const char *name(char *buf, size_t len, const char *what)
{
    snprintf(buf, len, "test-%d-%s", (int)getpid(), what);
    return buf;
}

static long long hget_n(const char *kind, const char *who)
{
    redisReply *r = kr_redis_command(rc, KR_REDIS_IDEMPOTENT, "HGET " IDENT_THROTTLE_KEY_PREFIX "%s:%s n", kind, who);
    assert_non_null(r);
    long long n = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -1;
    freeReplyObject(r);
    return n;
}

static long long ttl(const char *kind, const char *who)
{
    redisReply *r = kr_redis_command(rc, KR_REDIS_IDEMPOTENT, "TTL " IDENT_THROTTLE_KEY_PREFIX "%s:%s", kind, who);
    assert_non_null(r);
    long long t = r->integer;
    freeReplyObject(r);
    return t;
}

static int group_setup(void **state)
{
    if (kr_test_redis_start(&server) != 0)
        return -1;
    rc = kr_redis_new(server.url, 2000);
    return rc == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    kr_redis_free(rc);
    kr_test_redis_cleanup(&server);
    return 0;
}

static ident_throttle_verdict fail_once(const ident_throttle_params *p, const char *acct, const char *addr, int64_t now)
{
    ident_throttle_verdict v;
    assert_int_equal(ident_throttle_fail(rc, p, acct, addr, now, &v), IDENT_THROTTLE_OK);
    return v;
}

static ident_throttle_verdict check(const char *acct, const char *addr, int64_t now)
{
    ident_throttle_verdict v;
    assert_int_equal(ident_throttle_check(rc, acct, addr, now, &v), IDENT_THROTTLE_OK);
    return v;
}

static void fresh_names_are_allowed(void **state)
{
    char a[64];
    ident_throttle_verdict v = check(name(a, sizeof(a), "fresh"), "192.0.2.1", 1000);
    assert_true(v.allowed);
    assert_int_equal(v.retry_after, 0);
    assert_int_equal(v.reason, IDENT_THROTTLE_NONE);
}

/* Defaults: four free failures, then 1 s doubling up to 300 s. */
static void account_delays_grow_to_a_cap(void **state)
{
    char a[64];
    name(a, sizeof(a), "grow");
    int64_t now = 100000;
    for (int i = 1; i <= 4; i++)
        assert_true(fail_once(NULL, a, NULL, now).allowed);
    ident_throttle_verdict v = fail_once(NULL, a, NULL, now);
    assert_false(v.allowed);
    assert_int_equal(v.retry_after, 1);
    assert_int_equal(v.reason, IDENT_THROTTLE_ACCOUNT);
    v = check(a, NULL, now);
    assert_false(v.allowed);
    assert_int_equal(v.retry_after, 1);
    assert_true(check(a, NULL, now + 1).allowed);

    const int64_t want[] = {2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        now += 1000;
        v = fail_once(NULL, a, NULL, now);
        assert_int_equal(v.retry_after, want[i]);
    }
    /* far past the cap in failures, still never more than the cap */
    for (int i = 0; i < 60; i++)
        v = fail_once(NULL, a, NULL, now);
    assert_int_equal(v.retry_after, 300);
    assert_false(check(a, NULL, now + 299).allowed);
    assert_true(check(a, NULL, now + 300).allowed);
}

static void account_counter_is_forgotten(void **state)
{
    char a[64];
    name(a, sizeof(a), "forget");
    int64_t now = 200000;
    for (int i = 0; i < 6; i++)
        fail_once(NULL, a, NULL, now);
    assert_int_equal(hget_n("acct", a), 6);
    /* an hour without failures: the next one counts as the first */
    ident_throttle_verdict v = fail_once(NULL, a, NULL, now + 3600);
    assert_true(v.allowed);
    assert_int_equal(hget_n("acct", a), 1);
}

static void success_clears_the_account_only(void **state)
{
    char a[64];
    name(a, sizeof(a), "success");
    const char *addr = "198.51.100.7";
    int64_t now = 300000;
    for (int i = 0; i < 7; i++)
        fail_once(NULL, a, addr, now);
    assert_false(check(a, NULL, now).allowed);
    assert_int_equal(ident_throttle_succeed(rc, a), IDENT_THROTTLE_OK);
    assert_true(check(a, NULL, now).allowed);
    assert_int_equal(hget_n("acct", a), -1);
    assert_true(hget_n("addr", addr) >= 7);
    /* clearing an account without failures is fine */
    assert_int_equal(ident_throttle_succeed(rc, a), IDENT_THROTTLE_OK);
}

/* Twenty failures from one address within 15 minutes block it for 15 minutes,
 * whichever accounts they tried; then the address starts from zero. */
static void address_blocks_for_a_while(void **state)
{
    ident_throttle_params p = ident_throttle_defaults();
    p.addr_limit = 20;
    char addr[64], a[64], other[64];
    name(addr, sizeof(addr), "203.0.113.5");
    int64_t now = 400000;
    for (int i = 0; i < 19; i++) {
        char acct[64];
        snprintf(acct, sizeof(acct), "test-%d-victim%d", (int)getpid(), i);
        assert_true(fail_once(&p, acct, addr, now + i).allowed);
    }
    ident_throttle_verdict v = fail_once(&p, name(a, sizeof(a), "victim19"), addr, now + 19);
    assert_false(v.allowed);
    assert_int_equal(v.reason, IDENT_THROTTLE_ADDRESS);
    assert_int_equal(v.retry_after, 900);
    /* any account from that address waits; the same account elsewhere does not */
    v = check(name(other, sizeof(other), "bystander"), addr, now + 100);
    assert_false(v.allowed);
    assert_int_equal(v.retry_after, 819);
    assert_true(check(other, "203.0.113.99", now + 100).allowed);
    /* more failures during the block do not make it longer */
    fail_once(&p, other, addr, now + 200);
    assert_int_equal(check(NULL, addr, now + 200).retry_after, 719);
    /* afterwards the address starts from zero */
    assert_true(check(NULL, addr, now + 19 + 900).allowed);
    assert_true(fail_once(&p, other, addr, now + 19 + 900).allowed);
    assert_int_equal(hget_n("addr", addr), 1);
}

static void address_window_slides_on(void **state)
{
    ident_throttle_params p = ident_throttle_defaults();
    p.addr_limit = 20;
    char addr[64];
    name(addr, sizeof(addr), "2001:db8::1");
    int64_t now = 500000;
    for (int i = 0; i < 19; i++)
        fail_once(&p, NULL, addr, now);
    /* the window is over: the 20th failure is the first of a new window */
    assert_true(fail_once(&p, NULL, addr, now + 900).allowed);
    assert_int_equal(hget_n("addr", addr), 1);
}

/* Both waits apply; the verdict names the longer. */
static void longer_wait_wins(void **state)
{
    ident_throttle_params p = ident_throttle_defaults();
    p.addr_limit = 8;
    char a[64], addr[64];
    name(a, sizeof(a), "both");
    name(addr, sizeof(addr), "both-addr");
    int64_t now = 600000;
    ident_throttle_verdict v;
    for (int i = 0; i < 7; i++)
        v = fail_once(&p, a, addr, now);
    assert_int_equal(v.reason, IDENT_THROTTLE_ACCOUNT);
    assert_int_equal(v.retry_after, 4);
    v = fail_once(&p, a, addr, now);
    assert_int_equal(v.reason, IDENT_THROTTLE_ADDRESS);
    assert_int_equal(v.retry_after, 900);
}

static void every_key_expires(void **state)
{
    char a[64], addr[64];
    name(a, sizeof(a), "expiry");
    name(addr, sizeof(addr), "expiry-addr");
    fail_once(NULL, a, addr, 700000);
    long long t1 = ttl("acct", a), t2 = ttl("addr", addr);
    assert_true(t1 > 0 && t1 <= 3600 + 300);
    assert_true(t2 > 0 && t2 <= 900 + 900);
}

/* After SCRIPT FLUSH (as after a Redis restart) the scripts are loaded again. */
static void scripts_survive_a_flush(void **state)
{
    char a[64];
    name(a, sizeof(a), "flush");
    fail_once(NULL, a, NULL, 800000);
    redisReply *r = kr_redis_command(rc, KR_REDIS_IDEMPOTENT, "SCRIPT FLUSH");
    assert_non_null(r);
    freeReplyObject(r);
    fail_once(NULL, a, NULL, 800000);
    assert_int_equal(hget_n("acct", a), 2);
    r = kr_redis_command(rc, KR_REDIS_IDEMPOTENT, "SCRIPT FLUSH");
    freeReplyObject(r);
    assert_true(check(a, NULL, 800000).allowed);
}

typedef struct {
    const char *url;
    const char *account;
    int n;
    int errors;
} worker_arg;

static void *hammer(void *p)
{
    worker_arg *w = p;
    kr_redis *r = kr_redis_new(w->url, 2000);
    for (int i = 0; i < w->n; i++) {
        ident_throttle_verdict v;
        if (ident_throttle_fail(r, NULL, w->account, NULL, 900000, &v) != IDENT_THROTTLE_OK)
            w->errors++;
    }
    kr_redis_free(r);
    return NULL;
}

/* Failures counted from several connections at once are all counted. */
static void concurrent_failures_are_all_counted(void **state)
{
    char a[64];
    name(a, sizeof(a), "concurrent");
    pthread_t t[4];
    worker_arg w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_arg){.url = server.url, .account = a, .n = 50};
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].errors, 0);
    }
    assert_int_equal(hget_n("acct", a), 200);
}

static void refuses_bad_arguments(void **state)
{
    ident_throttle_verdict v;
    char longname[IDENT_THROTTLE_ACCOUNT_MAX + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(ident_throttle_check(rc, NULL, NULL, 1, &v), IDENT_THROTTLE_EINVAL);
    assert_int_equal(ident_throttle_check(rc, "", "", 1, &v), IDENT_THROTTLE_EINVAL);
    assert_int_equal(ident_throttle_check(rc, longname, NULL, 1, &v), IDENT_THROTTLE_EINVAL);
    assert_int_equal(ident_throttle_fail(rc, NULL, longname, NULL, 1, &v), IDENT_THROTTLE_EINVAL);
    ident_throttle_params p = ident_throttle_defaults();
    p.account_free = 0;
    assert_int_equal(ident_throttle_fail(rc, &p, "someone", NULL, 1, &v), IDENT_THROTTLE_EINVAL);
    assert_int_equal(ident_throttle_succeed(rc, ""), IDENT_THROTTLE_EINVAL);
    p = ident_throttle_defaults();
    assert_true(ident_throttle_params_valid(&p));
}

static void redis_down_is_an_error(void **state)
{
    kr_redis *dead = kr_redis_new("unix:///nonexistent/redis.sock", 200);
    assert_non_null(dead);
    ident_throttle_verdict v;
    assert_int_equal(ident_throttle_check(dead, "someone", NULL, 1, &v), IDENT_THROTTLE_EREDIS);
    assert_int_equal(ident_throttle_fail(dead, NULL, "someone", NULL, 1, &v), IDENT_THROTTLE_EREDIS);
    assert_int_equal(ident_throttle_succeed(dead, "someone"), IDENT_THROTTLE_EREDIS);
    assert_string_equal(ident_throttle_strerror(IDENT_THROTTLE_EREDIS), "redis unavailable");
    kr_redis_free(dead);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fresh_names_are_allowed),
        cmocka_unit_test(account_delays_grow_to_a_cap),
        cmocka_unit_test(account_counter_is_forgotten),
        cmocka_unit_test(success_clears_the_account_only),
        cmocka_unit_test(address_blocks_for_a_while),
        cmocka_unit_test(address_window_slides_on),
        cmocka_unit_test(longer_wait_wins),
        cmocka_unit_test(every_key_expires),
        cmocka_unit_test(scripts_survive_a_flush),
        cmocka_unit_test(concurrent_failures_are_all_counted),
        cmocka_unit_test(refuses_bad_arguments),
        cmocka_unit_test(redis_down_is_an_error),
    };
    return cmocka_run_group_tests_name("throttle", tests, group_setup, group_teardown);
}
