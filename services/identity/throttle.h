/*
 * throttle — brute-force protection for logins and codes, kept in Redis.
 *
 * Two counters slow down guessing, shared by every replica of the service:
 *
 *  - per account: the first failures cost nothing (people mistype); from the
 *    `account_free`-th failure on, the next attempt waits `account_base_s`
 *    seconds, doubling with each further failure up to `account_cap_s`. The
 *    counter is forgotten `account_forget_s` after the last failure and
 *    cleared by a successful login.
 *  - per client address: `addr_limit` failures within `addr_window_s` block
 *    the address for `addr_block_s`; then it starts from zero.
 *
 * Nothing here ever locks an account for good: the longest an attacker can
 * make a real user wait is `account_cap_s`, and every key expires.
 *
 * Each operation is one Lua script run atomically by Redis (EVALSHA, falling
 * back to EVAL after a Redis restart). Keys:
 *
 *     kreide:throttle:acct:<account>   hash: n, last, until
 *     kreide:throttle:addr:<address>   hash: n, start, until
 *
 * `account` is whatever names the account to the caller (for example the
 * school id and the lower-cased user name); unknown accounts are counted the
 * same way, so the answers do not tell which accounts exist. `now` is Unix
 * seconds from the caller, so the logic does not depend on Redis's clock.
 */
#ifndef IDENT_THROTTLE_H
#define IDENT_THROTTLE_H

#include <stdbool.h>
#include <stdint.h>

#include "kr_redis.h"

#define IDENT_THROTTLE_KEY_PREFIX "kreide:throttle:"
/* Longest accepted account name and address, in bytes. */
#define IDENT_THROTTLE_ACCOUNT_MAX 256
#define IDENT_THROTTLE_ADDR_MAX 64

/* The limits; see the module comment. */
typedef struct {
    unsigned account_free;     /* failures before delays start (default 5) */
    unsigned account_base_s;   /* the first delay (default 1 s) */
    unsigned account_cap_s;    /* the longest delay (default 300 s) */
    unsigned account_forget_s; /* counter forgotten after this long without failure (default 3600 s) */
    unsigned addr_limit;       /* failures from one address that block it (default 100) */
    unsigned addr_window_s;    /* within this time (default 900 s) */
    unsigned addr_block_s;     /* for this long (default 900 s) */
} ident_throttle_params;

/* The defaults above. */
ident_throttle_params ident_throttle_defaults(void);

/* True when every value is at least 1 and the delays fit in a day. */
bool ident_throttle_params_valid(const ident_throttle_params *p);

/* Which counter holds an attempt back. */
typedef enum {
    IDENT_THROTTLE_NONE = 0,
    IDENT_THROTTLE_ACCOUNT, /* the account's growing delay */
    IDENT_THROTTLE_ADDRESS, /* the address is blocked */
} ident_throttle_reason;

/* The answer for the next attempt. */
typedef struct {
    bool allowed;                 /* an attempt may be made now */
    int64_t retry_after;          /* seconds to wait when not allowed, else 0 */
    ident_throttle_reason reason; /* the longer of the two waits, NONE when allowed */
} ident_throttle_verdict;

/* Error codes; 0 is success. */
typedef enum {
    IDENT_THROTTLE_OK = 0,
    IDENT_THROTTLE_EINVAL, /* both names missing, a name too long, or bad parameters */
    IDENT_THROTTLE_EREDIS, /* no reply from Redis (kr_redis_errstr says why) */
    IDENT_THROTTLE_EREPLY, /* Redis answered with an error or an unexpected reply */
} ident_throttle_err;

/* A static text for an ident_throttle_err; never NULL. */
const char *ident_throttle_strerror(int err);

/* May an attempt for `account` from `addr` be made at `now`? Either name may
 * be NULL or "" (not counted), not both. Read-only. On an error *out says
 * allowed; the caller decides whether to fail closed (docs/credentials.md). */
__attribute__((warn_unused_result)) int ident_throttle_check(kr_redis *r, const char *account, const char *addr, int64_t now,
                                                             ident_throttle_verdict *out);

/* Counts a failed attempt for both names and says when the next attempt may
 * be made. `p` NULL means the defaults. Sent at most once (never re-sent
 * after a broken connection, so a failure is not counted twice). */
__attribute__((warn_unused_result)) int ident_throttle_fail(kr_redis *r, const ident_throttle_params *p, const char *account,
                                                            const char *addr, int64_t now, ident_throttle_verdict *out);

/* A successful login: clears the account's counter (the address's stays,
 * so one good password does not hide many guesses). */
__attribute__((warn_unused_result)) int ident_throttle_succeed(kr_redis *r, const char *account);

#endif
