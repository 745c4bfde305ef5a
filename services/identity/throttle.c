/* Brute-force protection in Redis (see throttle.h). */
#include "throttle.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

ident_throttle_params ident_throttle_defaults(void)
{
    ident_throttle_params p = {
        .account_free = 5,
        .account_base_s = 1,
        .account_cap_s = 300,
        .account_forget_s = 3600,
        .addr_limit = 100,
        .addr_window_s = 900,
        .addr_block_s = 900,
    };
    return p;
}

bool ident_throttle_params_valid(const ident_throttle_params *p)
{
    const unsigned day = 24 * 3600;
    return p != NULL && p->account_free >= 1 && p->account_base_s >= 1 && p->account_cap_s >= p->account_base_s &&
           p->account_cap_s <= day && p->account_forget_s >= 1 && p->account_forget_s <= day && p->addr_limit >= 1 &&
           p->addr_window_s >= 1 && p->addr_window_s <= day && p->addr_block_s >= 1 && p->addr_block_s <= day;
}

const char *ident_throttle_strerror(int err)
{
    switch (err) {
    case IDENT_THROTTLE_OK:
        return "ok";
    case IDENT_THROTTLE_EINVAL:
        return "invalid argument";
    case IDENT_THROTTLE_EREDIS:
        return "redis unavailable";
    case IDENT_THROTTLE_EREPLY:
        return "unexpected reply from redis";
    default:
        return "unknown error";
    }
}

/* KEYS[1]: the account's key or "", KEYS[2]: the address's key or "".
 * ARGV[1]: now. Returns {seconds to wait, reason}. */
static const char check_lua[] = "local now = tonumber(ARGV[1])\n"
                                "local wait, why = 0, 0\n"
                                "if KEYS[1] ~= '' then\n"
                                "  local u = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')\n"
                                "  if u - now > wait then wait, why = u - now, 1 end\n"
                                "end\n"
                                "if KEYS[2] ~= '' then\n"
                                "  local u = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')\n"
                                "  if u - now > wait then wait, why = u - now, 2 end\n"
                                "end\n"
                                "return {wait, why}\n";

/* Same keys; ARGV: now, account_free, account_base_s, account_cap_s,
 * account_forget_s, addr_limit, addr_window_s, addr_block_s. Counts one
 * failure under each key and returns {seconds to wait, reason}. */
static const char fail_lua[] =
    "local now = tonumber(ARGV[1])\n"
    "local free, base, cap, forget = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local limit, window, block = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "local wait, why = 0, 0\n"
    "if KEYS[1] ~= '' then\n"
    "  local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')\n"
    "  local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')\n"
    "  if now - last >= forget then n = 0 end\n"
    "  n = n + 1\n"
    "  local u = 0\n"
    "  if n >= free then\n"
    "    local d = cap\n"
    "    if n - free < 31 then d = math.min(cap, base * 2 ^ (n - free)) end\n"
    "    u = now + d\n"
    "  end\n"
    "  redis.call('HMSET', KEYS[1], 'n', n, 'last', now, 'until', u)\n"
    "  redis.call('EXPIRE', KEYS[1], forget + cap)\n"
    "  if u - now > wait then wait, why = u - now, 1 end\n"
    "end\n"
    "if KEYS[2] ~= '' then\n"
    "  local n = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')\n"
    "  local start = tonumber(redis.call('HGET', KEYS[2], 'start') or '0')\n"
    "  local u = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')\n"
    "  if (u > 0 and now >= u) or (u == 0 and now - start >= window) then n, start, u = 0, now, 0 end\n"
    "  n = n + 1\n"
    "  if n >= limit and u == 0 then u = now + block end\n"
    "  redis.call('HMSET', KEYS[2], 'n', n, 'start', start, 'until', u)\n"
    "  redis.call('EXPIRE', KEYS[2], window + block)\n"
    "  if u - now > wait then wait, why = u - now, 2 end\n"
    "end\n"
    "return {wait, why}\n";

static char check_sha[41], fail_sha[41];
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;

static void sha1_hex(const char *text, char out[41])
{
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)text, strlen(text), d);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void compute_shas(void)
{
    sha1_hex(check_lua, check_sha);
    sha1_hex(fail_lua, fail_sha);
}

static bool name_ok(const char *s, size_t max)
{
    return s == NULL || strlen(s) <= max;
}

static bool present(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* Runs a script by its SHA1, loading it with EVAL when Redis does not know
 * it (after a restart or a SCRIPT FLUSH), and reads {wait, why}. */
static int run(kr_redis *r, kr_redis_retry retry, const char *script, const char *sha, const char *account, const char *addr,
               int nargs, const char **args, int64_t now, ident_throttle_verdict *out)
{
    pthread_once(&sha_once, compute_shas);
    char acct_key[sizeof(IDENT_THROTTLE_KEY_PREFIX) + 5 + IDENT_THROTTLE_ACCOUNT_MAX];
    char addr_key[sizeof(IDENT_THROTTLE_KEY_PREFIX) + 5 + IDENT_THROTTLE_ADDR_MAX];
    acct_key[0] = addr_key[0] = '\0';
    if (present(account))
        snprintf(acct_key, sizeof(acct_key), IDENT_THROTTLE_KEY_PREFIX "acct:%s", account);
    if (present(addr))
        snprintf(addr_key, sizeof(addr_key), IDENT_THROTTLE_KEY_PREFIX "addr:%s", addr);
    char nowbuf[24];
    snprintf(nowbuf, sizeof(nowbuf), "%lld", (long long)now);

    const char *argv[16];
    int argc = 0;
    argv[argc++] = "EVALSHA";
    argv[argc++] = sha;
    argv[argc++] = "2";
    argv[argc++] = acct_key;
    argv[argc++] = addr_key;
    argv[argc++] = nowbuf;
    for (int i = 0; i < nargs; i++)
        argv[argc++] = args[i];

    redisReply *rep = kr_redis_commandargv(r, retry, argc, argv, NULL);
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(rep);
        argv[0] = "EVAL";
        argv[1] = script;
        rep = kr_redis_commandargv(r, retry, argc, argv, NULL);
    }
    if (rep == NULL)
        return IDENT_THROTTLE_EREDIS;
    int rc = IDENT_THROTTLE_EREPLY;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 && rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_INTEGER) {
        long long wait = rep->element[0]->integer, why = rep->element[1]->integer;
        out->allowed = wait <= 0;
        out->retry_after = wait > 0 ? wait : 0;
        out->reason = wait <= 0 ? IDENT_THROTTLE_NONE : why == 1 ? IDENT_THROTTLE_ACCOUNT : IDENT_THROTTLE_ADDRESS;
        rc = IDENT_THROTTLE_OK;
    }
    freeReplyObject(rep);
    return rc;
}

static void allow(ident_throttle_verdict *out)
{
    out->allowed = true;
    out->retry_after = 0;
    out->reason = IDENT_THROTTLE_NONE;
}

int ident_throttle_check(kr_redis *r, const char *account, const char *addr, int64_t now, ident_throttle_verdict *out)
{
    allow(out);
    if (r == NULL || (!present(account) && !present(addr)) || !name_ok(account, IDENT_THROTTLE_ACCOUNT_MAX) ||
        !name_ok(addr, IDENT_THROTTLE_ADDR_MAX))
        return IDENT_THROTTLE_EINVAL;
    ident_throttle_verdict v;
    int rc = run(r, KR_REDIS_IDEMPOTENT, check_lua, check_sha, account, addr, 0, NULL, now, &v);
    if (rc == IDENT_THROTTLE_OK)
        *out = v;
    return rc;
}

int ident_throttle_fail(kr_redis *r, const ident_throttle_params *p, const char *account, const char *addr, int64_t now,
                        ident_throttle_verdict *out)
{
    allow(out);
    ident_throttle_params def = ident_throttle_defaults();
    if (p == NULL)
        p = &def;
    if (r == NULL || !ident_throttle_params_valid(p) || (!present(account) && !present(addr)) ||
        !name_ok(account, IDENT_THROTTLE_ACCOUNT_MAX) || !name_ok(addr, IDENT_THROTTLE_ADDR_MAX))
        return IDENT_THROTTLE_EINVAL;
    char v[7][12];
    const unsigned vals[7] = {p->account_free, p->account_base_s, p->account_cap_s, p->account_forget_s,
                              p->addr_limit,   p->addr_window_s,  p->addr_block_s};
    const char *args[7];
    for (int i = 0; i < 7; i++) {
        snprintf(v[i], sizeof(v[i]), "%u", vals[i]);
        args[i] = v[i];
    }
    ident_throttle_verdict verdict;
    int rc = run(r, KR_REDIS_ONCE, fail_lua, fail_sha, account, addr, 7, args, now, &verdict);
    if (rc == IDENT_THROTTLE_OK)
        *out = verdict;
    return rc;
}

int ident_throttle_succeed(kr_redis *r, const char *account)
{
    if (r == NULL || !present(account) || !name_ok(account, IDENT_THROTTLE_ACCOUNT_MAX))
        return IDENT_THROTTLE_EINVAL;
    char key[sizeof(IDENT_THROTTLE_KEY_PREFIX) + 5 + IDENT_THROTTLE_ACCOUNT_MAX];
    snprintf(key, sizeof(key), IDENT_THROTTLE_KEY_PREFIX "acct:%s", account);
    redisReply *rep = kr_redis_command(r, KR_REDIS_IDEMPOTENT, "DEL %s", key);
    if (rep == NULL)
        return IDENT_THROTTLE_EREDIS;
    int rc = rep->type == REDIS_REPLY_INTEGER ? IDENT_THROTTLE_OK : IDENT_THROTTLE_EREPLY;
    freeReplyObject(rep);
    return rc;
}
