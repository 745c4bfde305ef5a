/* What the OpenID Connect flow keeps in Redis: SSO sessions (a hash per
 * session under kreide:sso:<hex SHA-256 of the token>, expiring with the
 * session), and revocations of access tokens, recorded and broadcast the
 * way the gateway's /oidc/revoke does it so every gateway replica drops
 * them. Losing Redis ends every session (people sign in again); it never
 * loses a grant, which lives in PostgreSQL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

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

/* ------------------------------------------------- refresh token families
 *
 * The rotation state of every refresh token family (docs/oidc.md, "Refresh
 * tokens"): KEYS and what they hold are described in identity.h. Every
 * script reads the run_id of the Redis process it runs in and a family
 * remembers the run_id it was written under: a family read back by another
 * process (a restart from a snapshot or append-only file, a failover to a
 * replica) may be older than what was last answered, so it is never
 * trusted again — its tokens are refused, never a rotated one accepted. */

#define RUN_ID_LUA "local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') "

/* KEYS[1] the family, KEYS[2] the first token's key; ARGV: client, user,
 * scope, session id, auth_time, token hash, token expiry, TTL, pg_until. */
static const char family_put_script[] =
    RUN_ID_LUA "redis.call('HSET', KEYS[1], 'client', ARGV[1], 'user', ARGV[2], 'scope', ARGV[3], 'sid', ARGV[4], "
               "'auth_time', ARGV[5], 'cur', ARGV[6], 'exp', ARGV[7], 'pg_until', ARGV[9], 'ttl', ARGV[8], 'epoch', run) "
               "redis.call('EXPIRE', KEYS[1], ARGV[8]) "
               "redis.call('SET', KEYS[2], ARGV[10], 'EX', ARGV[8]) "
               "return 1";

/* KEYS[1] the presented token's key; ARGV: 1 client, 2 now, 3 the
 * narrowed scope ("" for none), 4 the presented token's hash, 5 the new
 * token's key, 6 its hash, 7 the TTL, 8 the new access jti, 9 its expiry.
 * Answers {verdict, grant id, user, scope, session id, auth_time,
 * pg_until} and, for "reused", the family's recorded access tokens. The
 * order of the checks is ident_refresh_judge's. */
static const char family_rotate_script[] =
    "local gid = redis.call('GET', KEYS[1]) "
    "if not gid then return {'unknown'} end "
    "local fk = '" IDENT_RT_FAMILY_PREFIX "' .. gid "
    "local jk = '" IDENT_RT_JTIS_PREFIX "' .. gid "
    "local f = redis.call('HMGET', fk, 'cur', 'exp', 'client', 'user', 'scope', 'sid', 'auth_time', 'revoked', 'epoch', "
    "'pg_until') " RUN_ID_LUA "if not f[1] then return {'unknown'} end "
    "if f[9] ~= run then return {'lost', gid} end "
    "if f[3] ~= ARGV[1] then return {'other_client'} end "
    "if f[8] then return {'revoked', gid, f[4], f[5], f[6], f[7], f[10]} end "
    "if f[1] ~= ARGV[4] then "
    "  redis.call('HSET', fk, 'revoked', 'refresh_reused') "
    "  local j = redis.call('LRANGE', jk, 0, -1) "
    "  redis.call('DEL', jk) "
    "  return {'reused', gid, f[4], f[5], f[6], f[7], f[10], j} "
    "end "
    "local now = tonumber(ARGV[2]) "
    "if tonumber(f[2]) <= now then redis.call('DEL', KEYS[1]) return {'expired'} end "
    "if ARGV[3] ~= '' then "
    "  local have = {} "
    "  for s in string.gmatch(f[5], '%S+') do have[s] = true end "
    "  for s in string.gmatch(ARGV[3], '%S+') do "
    "    if not have[s] then return {'scope_too_wide', gid, f[4], f[5], f[6], f[7], f[10]} end "
    "  end "
    "end "
    "local ttl, newkey, newhash, jti, jexp = tonumber(ARGV[7]), ARGV[5], ARGV[6], ARGV[8], ARGV[9] " KR_RT_ROTATE_LUA
    "return {'ok', gid, f[4], f[5], f[6], f[7], f[10]}";

/* KEYS[1] the family, KEYS[2] its access tokens; ARGV[1] the reason. Marks
 * the family revoked (keeping an earlier reason) and hands over the access
 * tokens recorded for it. */
static const char family_revoke_script[] = "if redis.call('EXISTS', KEYS[1]) == 1 then "
                                           "  redis.call('HSETNX', KEYS[1], 'revoked', ARGV[1]) "
                                           "end "
                                           "local j = redis.call('LRANGE', KEYS[2], 0, -1) "
                                           "redis.call('DEL', KEYS[2]) "
                                           "return j";

/* KEYS[1] a token's key: {grant id, client, user, scope} of its family
 * and the claims counter, or nil. */
static const char family_find_script[] =
    "local gid = redis.call('GET', KEYS[1]) "
    "if not gid then return false end "
    "local f = redis.call('HMGET', '" IDENT_RT_FAMILY_PREFIX "' .. gid, 'client', 'user', 'scope') "
    "if not f[1] or not f[2] or not f[3] then return false end "
    "return {gid, f[1], f[2], f[3], redis.call('GET', '" IDENT_CLAIMS_VERSION_KEY "') or '0'}";

/* The hex SHA-1 of a script, as EVALSHA names it; remembered per thread for
 * the few scripts of this file. */
static const char *script_sha(const char *script)
{
    static __thread struct {
        const char *script;
        char sha[41];
    } known[8];
    size_t i = 0;
    for (; i < sizeof(known) / sizeof(known[0]) && known[i].script != NULL; i++)
        if (known[i].script == script)
            return known[i].sha;
    static __thread char spare[41];
    char *sha = i < sizeof(known) / sizeof(known[0]) ? known[i].sha : spare;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(script, strlen(script), md, &len, EVP_sha1(), NULL) != 1 || len != 20)
        abort();
    for (unsigned int k = 0; k < len; k++)
        snprintf(sha + 2 * k, 3, "%02x", md[k]);
    if (i < sizeof(known) / sizeof(known[0]))
        known[i].script = script;
    return sha;
}

/* Runs a script by its SHA-1 and loads it once when Redis does not know it
 * (a restart, SCRIPT FLUSH). */
static redisReply *run_script(kr_redis *r, kr_redis_retry retry, const char *script, int nkeys, int nargs, const char **args)
{
    const char *sha = script_sha(script);
    char nk[12];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    const char *argv[32];
    int argc = 0;
    argv[argc++] = "EVALSHA";
    argv[argc++] = sha;
    argv[argc++] = nk;
    for (int i = 0; i < nargs && argc < 32; i++)
        argv[argc++] = args[i];
    redisReply *reply = kr_redis_commandargv(r, retry, argc, argv, NULL);
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(reply);
        argv[0] = "EVAL";
        argv[1] = script;
        reply = kr_redis_commandargv(r, retry, argc, argv, NULL);
    }
    return reply;
}

void ident_rt_token_key(const uint8_t hash[32], char out[IDENT_RT_TOKEN_KEY_LEN + 1])
{
    memcpy(out, IDENT_RT_TOKEN_PREFIX, sizeof(IDENT_RT_TOKEN_PREFIX) - 1);
    static const char hexd[] = "0123456789abcdef";
    char *p = out + sizeof(IDENT_RT_TOKEN_PREFIX) - 1;
    for (size_t i = 0; i < 32; i++) {
        *p++ = hexd[hash[i] >> 4];
        *p++ = hexd[hash[i] & 15];
    }
    *p = '\0';
}

static void family_keys(const char *grant_id, char fk[128], char jk[128])
{
    snprintf(fk, 128, "%s%s", IDENT_RT_FAMILY_PREFIX, grant_id);
    snprintf(jk, 128, "%s%s", IDENT_RT_JTIS_PREFIX, grant_id);
}

ident_redis_result ident_family_put(kr_redis *r, const ident_grant_row *f, const char *token_key, int64_t expires_at, int64_t ttl_s,
                                    int64_t pg_until)
{
    char fk[128], jk[128], auth_time[24], exp[24], ttl[24], until[24];
    family_keys(f->grant_id, fk, jk);
    snprintf(auth_time, sizeof(auth_time), "%lld", (long long)f->auth_time);
    snprintf(exp, sizeof(exp), "%lld", (long long)expires_at);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s);
    snprintf(until, sizeof(until), "%lld", (long long)pg_until);
    const char *hash = token_key + sizeof(IDENT_RT_TOKEN_PREFIX) - 1;
    const char *args[] = {fk,        token_key, f->client_id, f->user_id, f->scope, f->session_id,
                          auth_time, hash,      exp,          ttl,        until,    f->grant_id};
    redisReply *reply = run_script(r, KR_REDIS_IDEMPOTENT, family_put_script, 2, (int)(sizeof(args) / sizeof(args[0])), args);
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER)
        return failed(r, "refresh family put", reply);
    freeReplyObject(reply);
    return IDENT_REDIS_OK;
}

static const char *str_at(const redisReply *a, size_t i)
{
    return i < a->elements && a->element[i]->type == REDIS_REPLY_STRING ? a->element[i]->str : NULL;
}

/* The recorded access tokens ("<jti> <exp>" each) into out (arena). */
static void jtis_of(kr_arena *arena, const redisReply *list, ident_live_jti **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (list == NULL || list->type != REDIS_REPLY_ARRAY || list->elements == 0)
        return;
    *out = kr_arena_alloc(arena, sizeof(**out) * list->elements);
    for (size_t i = 0; i < list->elements; i++) {
        const redisReply *e = list->element[i];
        const char *sp = e->type == REDIS_REPLY_STRING ? strchr(e->str, ' ') : NULL;
        if (sp == NULL)
            continue;
        (*out)[*n].jti = kr_arena_strndup(arena, e->str, (size_t)(sp - e->str));
        (*out)[*n].expires_at = to_int(sp + 1);
        (*n)++;
    }
}

ident_redis_result ident_family_rotate(kr_redis *r, kr_arena *arena, const ident_rt_rotation *in, ident_rt_rotated *out)
{
    memset(out, 0, sizeof(*out));
    char now[24], ttl[24], exp[24];
    snprintf(now, sizeof(now), "%lld", (long long)in->now);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)in->refresh_ttl_s);
    snprintf(exp, sizeof(exp), "%lld", (long long)in->access_expires_at);
    const char *args[] = {in->token_key,
                          in->client_id,
                          now,
                          in->narrow_scope,
                          in->token_key + sizeof(IDENT_RT_TOKEN_PREFIX) - 1,
                          in->new_token_key,
                          in->new_token_key + sizeof(IDENT_RT_TOKEN_PREFIX) - 1,
                          ttl,
                          in->access_jti,
                          exp};
    /* Never re-sent: a rotation that may have run once must not run again
     * with the same token, which would look like reuse. */
    redisReply *reply = run_script(r, KR_REDIS_ONCE, family_rotate_script, 1, (int)(sizeof(args) / sizeof(args[0])), args);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || str_at(reply, 0) == NULL)
        return failed(r, "refresh family rotate", reply);
    static const struct {
        const char *name;
        ident_refresh_verdict verdict;
    } verdicts[] = {
        {"ok", IDENT_REFRESH_OK},           {"unknown", IDENT_REFRESH_UNKNOWN},
        {"lost", IDENT_REFRESH_UNKNOWN},    {"other_client", IDENT_REFRESH_OTHER_CLIENT},
        {"revoked", IDENT_REFRESH_REVOKED}, {"reused", IDENT_REFRESH_REUSED},
        {"expired", IDENT_REFRESH_EXPIRED}, {"scope_too_wide", IDENT_REFRESH_OK},
    };
    const char *v = str_at(reply, 0);
    size_t i = 0;
    while (i < sizeof(verdicts) / sizeof(verdicts[0]) && strcmp(verdicts[i].name, v) != 0)
        i++;
    if (i == sizeof(verdicts) / sizeof(verdicts[0]))
        return failed(r, "refresh family rotate", reply);
    out->verdict = verdicts[i].verdict;
    out->lost = strcmp(v, "lost") == 0;
    out->scope_too_wide = strcmp(v, "scope_too_wide") == 0;
    if (str_at(reply, 1) != NULL)
        out->grant.grant_id = kr_arena_strdup(arena, str_at(reply, 1));
    bool with_grant =
        out->verdict == IDENT_REFRESH_OK || out->verdict == IDENT_REFRESH_REVOKED || out->verdict == IDENT_REFRESH_REUSED;
    if (with_grant && reply->elements < 7)
        return failed(r, "refresh family rotate: a family without its fields", reply);
    if (with_grant) {
        for (size_t k = 2; k < 7; k++)
            if (str_at(reply, k) == NULL) {
                out->grant.grant_id = NULL;
                return failed(r, "refresh family rotate: a family without its fields", reply);
            }
        out->grant.client_id = in->client_id;
        out->grant.user_id = kr_arena_strdup(arena, str_at(reply, 2));
        out->grant.scope = kr_arena_strdup(arena, str_at(reply, 3));
        out->grant.session_id = kr_arena_strdup(arena, str_at(reply, 4));
        out->grant.auth_time = to_int(str_at(reply, 5));
        out->pg_until = to_int(str_at(reply, 6));
    }
    if (out->verdict == IDENT_REFRESH_REUSED && reply->elements >= 8)
        jtis_of(arena, reply->element[7], &out->revoke, &out->nrevoke);
    freeReplyObject(reply);
    return IDENT_REDIS_OK;
}

ident_redis_result ident_family_revoke(kr_redis *r, kr_arena *arena, const char *grant_id, const char *reason,
                                       ident_live_jti **jtis, size_t *n)
{
    *jtis = NULL;
    *n = 0;
    char fk[128], jk[128];
    family_keys(grant_id, fk, jk);
    const char *args[] = {fk, jk, reason};
    redisReply *reply = run_script(r, KR_REDIS_IDEMPOTENT, family_revoke_script, 2, 3, args);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY)
        return failed(r, "refresh family revoke", reply);
    jtis_of(arena, reply, jtis, n);
    freeReplyObject(reply);
    return IDENT_REDIS_OK;
}

ident_redis_result ident_family_find(kr_redis *r, kr_arena *arena, const char *token_key, ident_rt_found *out)
{
    memset(out, 0, sizeof(*out));
    const char *args[] = {token_key};
    redisReply *reply = run_script(r, KR_REDIS_IDEMPOTENT, family_find_script, 1, 1, args);
    if (reply == NULL || (reply->type != REDIS_REPLY_ARRAY && reply->type != REDIS_REPLY_NIL))
        return failed(r, "refresh family find", reply);
    if (reply->type == REDIS_REPLY_NIL || str_at(reply, 4) == NULL) {
        freeReplyObject(reply);
        return IDENT_REDIS_NOT_FOUND;
    }
    out->grant_id = kr_arena_strdup(arena, str_at(reply, 0));
    out->client_id = kr_arena_strdup(arena, str_at(reply, 1));
    out->user_id = kr_arena_strdup(arena, str_at(reply, 2));
    out->scope = kr_arena_strdup(arena, str_at(reply, 3));
    out->claims_version = kr_arena_strdup(arena, str_at(reply, 4));
    freeReplyObject(reply);
    return IDENT_REDIS_OK;
}

/* KEYS[1] the family; ARGV[1] the new pg_until. A family that expired
 * meanwhile is not started again as a stray hash. */
static const char family_extended_script[] = "if redis.call('EXISTS', KEYS[1]) == 1 then "
                                             "  redis.call('HSET', KEYS[1], 'pg_until', ARGV[1]) "
                                             "end "
                                             "return 1";

ident_redis_result ident_family_extended(kr_redis *r, const char *grant_id, int64_t until)
{
    char fk[128], jk[128], u[24];
    family_keys(grant_id, fk, jk);
    snprintf(u, sizeof(u), "%lld", (long long)until);
    const char *args[] = {fk, u};
    redisReply *reply = run_script(r, KR_REDIS_IDEMPOTENT, family_extended_script, 1, 2, args);
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER)
        return failed(r, "refresh family extended", reply);
    freeReplyObject(reply);
    return IDENT_REDIS_OK;
}

/* KEYS[1] the family; ARGV: the token that must still be current, the
 * packed claims, their version, until when they hold. A family rotated
 * meanwhile keeps what its newer rotation stored. */
static const char family_claims_script[] = "if redis.call('HGET', KEYS[1], 'cur') == ARGV[1] then "
                                           "  redis.call('HSET', KEYS[1], 'claims', ARGV[2], 'cver', ARGV[3], 'cuntil', ARGV[4]) "
                                           "end "
                                           "return 1";

ident_redis_result ident_family_claims(kr_redis *r, const char *grant_id, const char *token_key, const uint8_t *claims, size_t len,
                                       const char *version, int64_t until)
{
    char fk[128], jk[128], u[24], nk[4] = "1";
    family_keys(grant_id, fk, jk);
    snprintf(u, sizeof(u), "%lld", (long long)until);
    const char *argv[] = {"EVALSHA",
                          script_sha(family_claims_script),
                          nk,
                          fk,
                          token_key + sizeof(IDENT_RT_TOKEN_PREFIX) - 1,
                          (const char *)claims,
                          version,
                          u};
    size_t lens[] = {7, 40, 1, strlen(fk), 64, len, strlen(version), strlen(u)};
    redisReply *reply = kr_redis_commandargv(r, KR_REDIS_IDEMPOTENT, 8, argv, lens);
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(reply);
        argv[0] = "EVAL";
        argv[1] = family_claims_script;
        lens[0] = 4;
        lens[1] = strlen(family_claims_script);
        reply = kr_redis_commandargv(r, KR_REDIS_IDEMPOTENT, 8, argv, lens);
    }
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER)
        return failed(r, "refresh family claims", reply);
    freeReplyObject(reply);
    return IDENT_REDIS_OK;
}

ident_redis_result ident_claims_version(kr_redis *r, kr_arena *arena, const char **version)
{
    redisReply *reply = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "GET %s", IDENT_CLAIMS_VERSION_KEY);
    if (reply == NULL || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL))
        return failed(r, "claims version", reply);
    *version = kr_arena_strdup(arena, reply->type == REDIS_REPLY_STRING ? reply->str : "0");
    freeReplyObject(reply);
    return IDENT_REDIS_OK;
}

ident_redis_result ident_claims_changed(kr_redis *r)
{
    redisReply *reply = kr_redis_command(r, KR_REDIS_ONCE, "INCR %s", IDENT_CLAIMS_VERSION_KEY);
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER)
        return failed(r, "claims changed", reply);
    freeReplyObject(reply);
    return IDENT_REDIS_OK;
}
