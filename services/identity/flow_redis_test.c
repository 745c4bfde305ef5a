/* The refresh token families in Redis (flow_redis.c) against a real
 * redis-server: rotation, reuse revoking the family, revocation, and
 * failing closed when Redis loses the families or is restored from a
 * snapshot older than what was answered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "identity.h"
#include "kr_id.h"
#include "kr_redis_testutil.h"

#define TTL (30 * 86400)

static kr_test_redis server;
static kr_redis *rc;
static kr_arena arena;

static int group_setup(void **state)
{
    (void)state;
    if (kr_test_redis_start(&server) != 0)
        return -1;
    rc = kr_redis_new(server.url, 2000);
    kr_arena_init(&arena);
    return rc == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kr_arena_free(&arena);
    kr_redis_free(rc);
    kr_test_redis_cleanup(&server);
    return 0;
}

/* A fresh token's Redis key. */
static void new_key(char key[IDENT_RT_TOKEN_KEY_LEN + 1])
{
    char token[IDENT_FLOW_TOKEN_LEN + 1];
    ident_flow_token_new(token);
    uint8_t hash[32];
    ident_flow_token_hash(token, hash);
    ident_rt_token_key(hash, key);
}

/* A new family of client "wiki" whose current token has `key`. */
static const char *family(char key[IDENT_RT_TOKEN_KEY_LEN + 1], int64_t now)
{
    kr_uuid_str gid;
    kr_uuid7_new(&gid);
    const char *grant_id = kr_arena_strdup(&arena, gid.s);
    new_key(key);
    ident_grant_row g = {grant_id,
                         "wiki",
                         "0190b3c4-7d2e-7a11-9f00-000000000001",
                         "openid profile offline_access",
                         "0190b3c4-7d2e-7a11-9f00-000000000002",
                         1700000000};
    assert_int_equal(ident_family_put(rc, &g, key, now + TTL, TTL, now + 2 * TTL), IDENT_REDIS_OK);
    return grant_id;
}

/* Presents `key` as `client`; on OK the new token's key is in `next`. */
static ident_rt_rotated rotate(const char *key, const char *client, const char *narrow, int64_t now,
                               char next[IDENT_RT_TOKEN_KEY_LEN + 1], const char *jti)
{
    new_key(next);
    ident_rt_rotation in = {key, client, now, narrow, next, TTL, jti, now + 600};
    ident_rt_rotated out;
    assert_int_equal(ident_family_rotate(rc, &arena, &in, &out), IDENT_REDIS_OK);
    return out;
}

static void rotation_then_reuse_revokes_the_family(void **state)
{
    (void)state;
    int64_t now = 1800000000;
    char k1[IDENT_RT_TOKEN_KEY_LEN + 1], k2[IDENT_RT_TOKEN_KEY_LEN + 1], k3[IDENT_RT_TOKEN_KEY_LEN + 1],
        spare[IDENT_RT_TOKEN_KEY_LEN + 1];
    const char *gid = family(k1, now);
    ident_rt_rotated r = rotate(k1, "wiki", "", now, k2, "0190b3c4-7d2e-7a11-9f00-0000000000a1");
    assert_int_equal(r.verdict, IDENT_REFRESH_OK);
    assert_false(r.scope_too_wide);
    assert_string_equal(r.grant.grant_id, gid);
    assert_string_equal(r.grant.user_id, "0190b3c4-7d2e-7a11-9f00-000000000001");
    assert_string_equal(r.grant.scope, "openid profile offline_access");
    assert_string_equal(r.grant.session_id, "0190b3c4-7d2e-7a11-9f00-000000000002");
    assert_int_equal(r.grant.auth_time, 1700000000);
    assert_int_equal(r.pg_until, now + 2 * TTL);
    r = rotate(k2, "wiki", "", now + 1, k3, "0190b3c4-7d2e-7a11-9f00-0000000000a2");
    assert_int_equal(r.verdict, IDENT_REFRESH_OK);
    /* k1 again: reuse. The family is revoked and hands over what its
     * refreshes issued. */
    r = rotate(k1, "wiki", "", now + 2, spare, "0190b3c4-7d2e-7a11-9f00-0000000000a3");
    assert_int_equal(r.verdict, IDENT_REFRESH_REUSED);
    assert_string_equal(r.grant.grant_id, gid);
    assert_int_equal(r.nrevoke, 2);
    assert_string_equal(r.revoke[0].jti, "0190b3c4-7d2e-7a11-9f00-0000000000a1");
    assert_int_equal(r.revoke[0].expires_at, now + 600);
    assert_string_equal(r.revoke[1].jti, "0190b3c4-7d2e-7a11-9f00-0000000000a2");
    /* The newest token is dead too, and so is a second reuse. */
    r = rotate(k3, "wiki", "", now + 3, spare, "0190b3c4-7d2e-7a11-9f00-0000000000a4");
    assert_int_equal(r.verdict, IDENT_REFRESH_REVOKED);
    r = rotate(k2, "wiki", "", now + 3, spare, "0190b3c4-7d2e-7a11-9f00-0000000000a5");
    assert_int_equal(r.verdict, IDENT_REFRESH_REVOKED);
}

static void another_client_and_a_wide_scope_change_nothing(void **state)
{
    (void)state;
    int64_t now = 1800000000;
    char k1[IDENT_RT_TOKEN_KEY_LEN + 1], k2[IDENT_RT_TOKEN_KEY_LEN + 1];
    family(k1, now);
    ident_rt_rotated r = rotate(k1, "rival", "", now, k2, "0190b3c4-7d2e-7a11-9f00-0000000000b1");
    assert_int_equal(r.verdict, IDENT_REFRESH_OTHER_CLIENT);
    r = rotate(k1, "wiki", "openid school", now, k2, "0190b3c4-7d2e-7a11-9f00-0000000000b2");
    assert_int_equal(r.verdict, IDENT_REFRESH_OK);
    assert_true(r.scope_too_wide);
    /* Narrowing within the grant rotates; k1 was never used up before. */
    r = rotate(k1, "wiki", "openid", now, k2, "0190b3c4-7d2e-7a11-9f00-0000000000b3");
    assert_int_equal(r.verdict, IDENT_REFRESH_OK);
    assert_false(r.scope_too_wide);
    assert_string_equal(r.grant.scope, "openid profile offline_access");
}

static void unknown_and_expired_tokens(void **state)
{
    (void)state;
    int64_t now = 1800000000;
    char k1[IDENT_RT_TOKEN_KEY_LEN + 1], k2[IDENT_RT_TOKEN_KEY_LEN + 1], k3[IDENT_RT_TOKEN_KEY_LEN + 1];
    new_key(k1);
    assert_int_equal(rotate(k1, "wiki", "", now, k2, "0190b3c4-7d2e-7a11-9f00-0000000000c1").verdict, IDENT_REFRESH_UNKNOWN);
    family(k1, now);
    ident_rt_rotated r = rotate(k1, "wiki", "", now + TTL, k2, "0190b3c4-7d2e-7a11-9f00-0000000000c2");
    assert_int_equal(r.verdict, IDENT_REFRESH_EXPIRED);
    /* Deleted on the spot. */
    r = rotate(k1, "wiki", "", now, k3, "0190b3c4-7d2e-7a11-9f00-0000000000c3");
    assert_int_equal(r.verdict, IDENT_REFRESH_UNKNOWN);
}

static void revoked_family_refuses_and_find_names_it(void **state)
{
    (void)state;
    int64_t now = 1800000000;
    char k1[IDENT_RT_TOKEN_KEY_LEN + 1], k2[IDENT_RT_TOKEN_KEY_LEN + 1], k3[IDENT_RT_TOKEN_KEY_LEN + 1];
    const char *gid = family(k1, now);
    assert_int_equal(rotate(k1, "wiki", "", now, k2, "0190b3c4-7d2e-7a11-9f00-0000000000d1").verdict, IDENT_REFRESH_OK);
    ident_rt_found found;
    assert_int_equal(ident_family_find(rc, &arena, k1, &found), IDENT_REDIS_OK);
    assert_string_equal(found.grant_id, gid);
    assert_string_equal(found.client_id, "wiki");
    assert_string_equal(found.user_id, "0190b3c4-7d2e-7a11-9f00-000000000001");
    assert_string_equal(found.scope, "openid profile offline_access");
    assert_non_null(found.claims_version);
    ident_live_jti *jtis;
    size_t n;
    assert_int_equal(ident_family_revoke(rc, &arena, gid, "revoked_by_client", &jtis, &n), IDENT_REDIS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(jtis[0].jti, "0190b3c4-7d2e-7a11-9f00-0000000000d1");
    /* Again: nothing left to hand over, the first reason stays. */
    assert_int_equal(ident_family_revoke(rc, &arena, gid, "refresh_reused", &jtis, &n), IDENT_REDIS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(rotate(k2, "wiki", "", now, k3, "0190b3c4-7d2e-7a11-9f00-0000000000d2").verdict, IDENT_REFRESH_REVOKED);
    redisReply *reply = kr_redis_command(rc, KR_REDIS_IDEMPOTENT, "HGET %s%s revoked", IDENT_RT_FAMILY_PREFIX, gid);
    assert_non_null(reply);
    assert_string_equal(reply->str, "revoked_by_client");
    freeReplyObject(reply);
    new_key(k3);
    assert_int_equal(ident_family_find(rc, &arena, k3, &found), IDENT_REDIS_NOT_FOUND);
}

/* A snapshot taken before a rotation and restored into a new process would
 * make the rotated token current again; the family is refused instead. */
static void a_restored_snapshot_fails_closed(void **state)
{
    (void)state;
    if (!server.own) {
        skip(); /* a shared server cannot be restarted */
        return;
    }
    int64_t now = 1800000000;
    char k1[IDENT_RT_TOKEN_KEY_LEN + 1], k2[IDENT_RT_TOKEN_KEY_LEN + 1], k3[IDENT_RT_TOKEN_KEY_LEN + 1];
    const char *gid = family(k1, now);
    redisReply *reply = kr_redis_command(rc, KR_REDIS_IDEMPOTENT, "SAVE");
    assert_non_null(reply);
    freeReplyObject(reply);
    assert_int_equal(rotate(k1, "wiki", "", now, k2, "0190b3c4-7d2e-7a11-9f00-0000000000e1").verdict, IDENT_REFRESH_OK);
    kr_test_redis_kill(&server);
    assert_int_equal(kr_test_redis_spawn(&server), 0);
    /* The snapshot is back: k1 is its family's current token there. */
    reply = kr_redis_command(rc, KR_REDIS_IDEMPOTENT, "HGET %s%s cur", IDENT_RT_FAMILY_PREFIX, gid);
    assert_non_null(reply);
    assert_int_equal(reply->type, REDIS_REPLY_STRING);
    assert_string_equal(reply->str, k1 + sizeof(IDENT_RT_TOKEN_PREFIX) - 1);
    freeReplyObject(reply);
    ident_rt_rotated r = rotate(k1, "wiki", "", now + 1, k3, "0190b3c4-7d2e-7a11-9f00-0000000000e2");
    assert_int_equal(r.verdict, IDENT_REFRESH_UNKNOWN);
    assert_true(r.lost);
    assert_string_equal(r.grant.grant_id, gid);
    assert_int_equal(rotate(k2, "wiki", "", now + 1, k3, "0190b3c4-7d2e-7a11-9f00-0000000000e3").verdict, IDENT_REFRESH_UNKNOWN);
}

static void redis_down_is_an_error(void **state)
{
    (void)state;
    kr_redis *dead = kr_redis_new("unix:///nonexistent/redis.sock", 200);
    assert_non_null(dead);
    char k1[IDENT_RT_TOKEN_KEY_LEN + 1], k2[IDENT_RT_TOKEN_KEY_LEN + 1];
    new_key(k1);
    new_key(k2);
    ident_rt_rotation in = {k1, "wiki", 1800000000, "", k2, TTL, "0190b3c4-7d2e-7a11-9f00-0000000000f1", 1800000600};
    ident_rt_rotated out;
    assert_int_equal(ident_family_rotate(dead, &arena, &in, &out), IDENT_REDIS_ERROR);
    ident_grant_row g = {"0190b3c4-7d2e-7a11-9f00-0000000000f2", "wiki", "u", "openid", "s", 1};
    assert_int_equal(ident_family_put(dead, &g, k1, 1800000000 + TTL, TTL, 1800000000 + 2 * TTL), IDENT_REDIS_ERROR);
    kr_redis_free(dead);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rotation_then_reuse_revokes_the_family),
        cmocka_unit_test(another_client_and_a_wide_scope_change_nothing),
        cmocka_unit_test(unknown_and_expired_tokens),
        cmocka_unit_test(revoked_family_refuses_and_find_names_it),
        cmocka_unit_test(a_restored_snapshot_fails_closed),
        cmocka_unit_test(redis_down_is_an_error),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
