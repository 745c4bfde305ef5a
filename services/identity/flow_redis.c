/* What the OpenID Connect flow keeps in Redis: SSO sessions (a hash per
 * session under kreide:sso:<hex SHA-256 of the token>, expiring with the
 * session), and revocations of access tokens, recorded and broadcast the
 * way the gateway's /oidc/revoke does it so every gateway replica drops
 * them. Losing Redis ends every session (people sign in again); it never
 * loses a grant, which lives in PostgreSQL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "kr_log.h"
#include "kr_redis.h"

/* Fields and expiry in one step, so a session never exists without its
 * expiry. ARGV[1] is the TTL, then the field values. */
static const char put_script[] = "redis.call('HSET', KEYS[1], 'user_id', ARGV[2], 'username', ARGV[3], 'session_id', ARGV[4], "
                                 "'auth_time', ARGV[5], 'amr', ARGV[6], 'expires_at', ARGV[7]) "
                                 "return redis.call('EXPIRE', KEYS[1], ARGV[1])";

/* The gateway's revocation script (gateway/oidc_token.c), byte for byte:
 * the record for introspection and the broadcast happen together. */
static const char revoke_script[] = "redis.call('SET', KEYS[1], '1', 'EX', ARGV[1]) "
                                    "return redis.call('PUBLISH', ARGV[2], ARGV[3])";

static ident_redis_result failed(kr_redis *r, const char *what, redisReply *reply)
{
    kr_log(KR_LOG_WARN, "redis command failed", "command", what, "error",
           reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply->str : kr_redis_errstr(r), NULL);
    if (reply != NULL)
        freeReplyObject(reply);
    return IDENT_REDIS_ERROR;
}

ident_redis_result ident_session_put(kr_redis *r, const char *key, const ident_session *s, int64_t ttl_s)
{
    char ttl[24], auth_time[24], expires_at[24];
    snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s);
    snprintf(auth_time, sizeof(auth_time), "%lld", (long long)s->auth_time);
    snprintf(expires_at, sizeof(expires_at), "%lld", (long long)s->expires_at);
    const char *argv[] = {"EVAL", put_script, "1", key, ttl, s->user_id, s->username, s->session_id, auth_time, s->amr, expires_at};
    redisReply *reply = kr_redis_commandargv(r, KR_REDIS_IDEMPOTENT, (int)(sizeof(argv) / sizeof(argv[0])), argv, NULL);
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER || reply->integer != 1)
        return failed(r, "session put", reply);
    freeReplyObject(reply);
    return IDENT_REDIS_OK;
}

static int64_t to_int(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    return end != s && *end == '\0' ? (int64_t)v : 0;
}

ident_redis_result ident_session_get(kr_redis *r, kr_arena *arena, const char *key, int64_t now, ident_session *out)
{
    redisReply *reply = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "HGETALL %s", key);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY)
        return failed(r, "session get", reply);
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *k = reply->element[i], *v = reply->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, "user_id") == 0)
            out->user_id = kr_arena_strdup(arena, v->str);
        else if (strcmp(k->str, "username") == 0)
            out->username = kr_arena_strdup(arena, v->str);
        else if (strcmp(k->str, "session_id") == 0)
            out->session_id = kr_arena_strdup(arena, v->str);
        else if (strcmp(k->str, "amr") == 0)
            out->amr = kr_arena_strdup(arena, v->str);
        else if (strcmp(k->str, "auth_time") == 0)
            out->auth_time = to_int(v->str);
        else if (strcmp(k->str, "expires_at") == 0)
            out->expires_at = to_int(v->str);
    }
    freeReplyObject(reply);
    /* The key's TTL ends the session; expires_at also guards against a
     * key whose TTL was lost (a restore without expiries). */
    if (out->user_id == NULL || out->username == NULL || out->session_id == NULL || out->amr == NULL || out->auth_time <= 0 ||
        out->expires_at <= now)
        return IDENT_REDIS_NOT_FOUND;
    return IDENT_REDIS_OK;
}

ident_redis_result ident_session_delete(kr_redis *r, const char *key)
{
    redisReply *reply = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "DEL %s", key);
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER)
        return failed(r, "session delete", reply);
    freeReplyObject(reply);
    return IDENT_REDIS_OK;
}

ident_redis_result ident_revoke_jti(kr_redis *r, const char *jti, int64_t until, int64_t now)
{
    char key[sizeof(IDENT_REVOKED_KEY_PREFIX) + 64], ttl[24];
    snprintf(key, sizeof(key), "%s%s", IDENT_REVOKED_KEY_PREFIX, jti);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)(until > now ? until - now : 1));
    char *payload = ident_revocation_json(jti, until);
    const char *argv[] = {"EVAL", revoke_script, "1", key, ttl, IDENT_REVOKED_CHANNEL, payload};
    /* Not re-sent after a broken connection: the caller logs the failure
     * and the token expires on its own within the access-token lifetime. */
    redisReply *reply = kr_redis_commandargv(r, KR_REDIS_ONCE, (int)(sizeof(argv) / sizeof(argv[0])), argv, NULL);
    free(payload);
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER)
        return failed(r, "revoke jti", reply);
    freeReplyObject(reply);
    return IDENT_REDIS_OK;
}
