/* RPC handlers of credentials: issuing one-time codes, setting a password
 * with one, and checking a password for the sign-in page
 * (docs/credentials.md).
 *
 * Passwords and codes are secrets of the person: they are never logged, and
 * never kept beyond the request (the arena is released after the reply).
 * Guessing is slowed by the throttle in Redis per account and per client
 * address; without Redis the guessable RPCs refuse with UNAVAILABLE rather
 * than run unthrottled. */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "identity.h"
#include "kr_id.h"
#include "kr_log.h"
#include "kr_redis.h"

#define REDIS_TIMEOUT_MS 500
#define MAX_REDIS_CLIENTS 1024

/* ------------------------------------------------- per-worker Redis clients */

struct st_ident_redis_pool_t {
    char *url;
    pthread_mutex_t lock; /* guards clients/n */
    kr_redis *clients[MAX_REDIS_CLIENTS];
    size_t n;
};

/* kr_redis is not thread-safe: each worker gets its own client on first use,
 * registered in the pool so ident_redis_pool_free closes it. */
static __thread kr_redis *tl_client;
static __thread const ident_redis_pool *tl_pool;

ident_redis_pool *ident_redis_pool_new(const char *url)
{
    ident_redis_pool *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->url = strdup(url)) == NULL)
        abort();
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

void ident_redis_pool_free(ident_redis_pool *pool)
{
    if (pool == NULL)
        return;
    for (size_t i = 0; i < pool->n; i++)
        kr_redis_free(pool->clients[i]);
    pthread_mutex_destroy(&pool->lock);
    free(pool->url);
    free(pool);
}

kr_redis *ident_redis_pool_get(ident_redis_pool *pool)
{
    if (pool == NULL)
        return NULL;
    if (tl_pool == pool && tl_client != NULL)
        return tl_client;
    kr_redis *r = kr_redis_new(pool->url, REDIS_TIMEOUT_MS);
    if (r == NULL)
        return NULL;
    pthread_mutex_lock(&pool->lock);
    if (pool->n == MAX_REDIS_CLIENTS) {
        pthread_mutex_unlock(&pool->lock);
        kr_redis_free(r);
        return NULL;
    }
    pool->clients[pool->n++] = r;
    pthread_mutex_unlock(&pool->lock);
    tl_client = r;
    tl_pool = pool;
    return r;
}

/* ------------------------------------------------------------------ helpers */

static const ident_app *app_of(kr_rpc_ctx *ctx)
{
    return ctx->app;
}

static int forbidden(kr_rpc_ctx *ctx, const char *why)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "identity.forbidden", NULL, "%s", why);
}

static int unavailable(kr_rpc_ctx *ctx)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__UNAVAILABLE, "identity.database", NULL, "the directory is temporarily unavailable");
}

static int throttle_unavailable(kr_rpc_ctx *ctx)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__UNAVAILABLE, "identity.throttle_unavailable", NULL,
                       "sign-in is unavailable for a moment; try again shortly");
}

static int check_uuid(kr_rpc_ctx *ctx, const char *id, const char *field)
{
    if (kr_uuid_valid(id))
        return 0;
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_id", field, "%s must be a UUID", field);
}

/* Who is guessing: the user name as stored (lower case) when it is one, and
 * the client's address when it is a plausible one. */
typedef struct {
    char account[IDENT_THROTTLE_ACCOUNT_MAX + 1]; /* "" when the name cannot be a user name */
    char addr[IDENT_THROTTLE_ADDR_MAX + 1];       /* "" when none was given */
    kr_redis *redis;
    const ident_throttle_params *params;
    int64_t now;
} attempt;

static void attempt_init(kr_rpc_ctx *ctx, attempt *a, const char *username, const char *client_address)
{
    memset(a, 0, sizeof(*a));
    size_t n = strlen(username);
    if (n <= 64) {
        for (size_t i = 0; i < n; i++)
            a->account[i] = (char)tolower((unsigned char)username[i]);
        if (!ident_username_valid(a->account))
            a->account[0] = '\0';
    }
    n = strlen(client_address);
    bool printable = n <= IDENT_THROTTLE_ADDR_MAX;
    for (size_t i = 0; printable && i < n; i++)
        printable = isgraph((unsigned char)client_address[i]) != 0;
    if (printable)
        memcpy(a->addr, client_address, n + 1);
    a->redis = ident_redis_pool_get(app_of(ctx)->redis);
    a->params = &app_of(ctx)->throttle;
    a->now = (int64_t)time(NULL);
}

/* Refuses the attempt when Redis is missing or either counter holds it back. */
static int attempt_allowed(kr_rpc_ctx *ctx, attempt *a)
{
    if (a->redis == NULL)
        return throttle_unavailable(ctx);
    if (a->account[0] == '\0' && a->addr[0] == '\0')
        return 0; /* nothing to count: no account can match */
    ident_throttle_verdict v;
    int rc = ident_throttle_check(a->redis, a->account, a->addr, a->now, &v);
    if (rc != IDENT_THROTTLE_OK) {
        kr_log(KR_LOG_WARN, "throttle check failed", "error", ident_throttle_strerror(rc), NULL);
        return throttle_unavailable(ctx);
    }
    if (v.allowed)
        return 0;
    return kr_rpc_fail(ctx, KREIDE__STATUS__RESOURCE_EXHAUSTED, "identity.throttled", NULL,
                       "too many failed attempts; try again in %lld seconds", (long long)v.retry_after);
}

/* Counts a failed guess. A failure to count is logged; the next check then
 * fails closed if Redis stays away. */
static void attempt_failed(attempt *a)
{
    if (a->account[0] == '\0' && a->addr[0] == '\0')
        return;
    ident_throttle_verdict v;
    int rc = ident_throttle_fail(a->redis, a->params, a->account, a->addr, a->now, &v);
    if (rc != IDENT_THROTTLE_OK)
        kr_log(KR_LOG_WARN, "throttle failure not counted", "error", ident_throttle_strerror(rc), NULL);
}

/* A success clears the account's counter (the address's stays). */
static void attempt_succeeded(attempt *a)
{
    if (a->account[0] == '\0')
        return;
    int rc = ident_throttle_succeed(a->redis, a->account);
    if (rc != IDENT_THROTTLE_OK)
        kr_log(KR_LOG_WARN, "throttle counter not cleared", "error", ident_throttle_strerror(rc), NULL);
}

/* ------------------------------------------------------------- IssueCode */

static int issue_code(kr_rpc_ctx *ctx, const Kreide__Identity__IssueCodeRequest *in, Kreide__Identity__IssuedCode *out)
{
    const ident_app *app = app_of(ctx);
    if (check_uuid(ctx, in->school_id, "school_id") != 0 || check_uuid(ctx, in->user_id, "user_id") != 0)
        return -1;
    ident_school_ref school;
    ident_store_result r = ident_store_school_ref(ctx, in->school_id, &school);
    if (r == IDENT_STORE_NOT_FOUND)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", "school_id", "no such school");
    if (r != IDENT_STORE_OK)
        return unavailable(ctx);
    /* Callers who could not issue a code for anybody at this school (pupils,
     * parents, staff, strangers) are refused before anyone is looked up. */
    if (!ident_may_issue_code(ctx->caller, &school, KREIDE__IDENTITY__CODE_PURPOSE__RESET,
                              IDENT_ROLE_PUPIL | IDENT_ROLE_SCHOOL_ADMIN, true))
        return forbidden(ctx, "only the school's admins and teachers may issue codes");
    const char *purpose = ident_code_purpose_name(in->purpose);
    if (purpose == NULL)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_purpose", "purpose",
                           "purpose must be ENROLLMENT or RESET");
    unsigned target = 0;
    if (ident_store_roles_at(ctx, school.id, in->user_id, &target) != IDENT_STORE_OK)
        return unavailable(ctx);
    if (target == 0)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", "user_id", "no such user");
    bool leads = false;
    bool teacher_for_pupil = (ident_caller_roles_at(ctx->caller, school.id) & IDENT_ROLE_TEACHER) != 0 &&
                             (target & IDENT_ROLE_PUPIL) != 0 && ctx->caller->kind == KREIDE__CALLER__KIND__USER &&
                             kr_uuid_valid(ctx->caller->user_id);
    if (teacher_for_pupil && ident_store_leads_member(ctx, school.id, ctx->caller->user_id, in->user_id, &leads) != IDENT_STORE_OK)
        return unavailable(ctx);
    if (!ident_may_issue_code(ctx->caller, &school, in->purpose, target, leads))
        return forbidden(ctx, "the caller may not issue this code for this person");

    ident_code_text text;
    ident_code_canon canon;
    ident_code_generate(&text, &canon);
    uint8_t hash[IDENT_CODE_HASH_LEN];
    if (ident_code_hash(app->code_pepper, app->code_pepper_len, &canon, hash) != 0)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INTERNAL, "identity.internal", NULL, "the code cannot be made");
    int64_t ttl = in->purpose == KREIDE__IDENTITY__CODE_PURPOSE__ENROLLMENT ? app->enrollment_code_ttl_s : app->reset_code_ttl_s;
    const char *by =
        ctx->caller->kind == KREIDE__CALLER__KIND__USER && kr_uuid_valid(ctx->caller->user_id) ? ctx->caller->user_id : "";
    const char *expires_at = "";
    r = ident_store_issue_code(ctx, school.id, in->user_id, purpose, hash, by, ttl, &expires_at);
    if (r == IDENT_STORE_NOT_FOUND)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", "user_id", "no such user");
    if (r != IDENT_STORE_OK)
        return unavailable(ctx);
    out->code = kr_arena_strdup(ctx->arena, text.s);
    out->purpose = in->purpose;
    out->expires_at = (char *)expires_at;
    out->user_id = kr_arena_strdup(ctx->arena, in->user_id);
    kr_log(KR_LOG_INFO, "code issued", "user_id", in->user_id, "school_id", school.id, "purpose", purpose, "by", by, NULL);
    return 0;
}

/* -------------------------------------------------------- EnrollWithCode */

static int code_invalid(kr_rpc_ctx *ctx, attempt *a)
{
    attempt_failed(a);
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.code_invalid", "code",
                       "the user name or the code is not right");
}

static int enroll_with_code(kr_rpc_ctx *ctx, const Kreide__Identity__EnrollWithCodeRequest *in,
                            Kreide__Identity__EnrollWithCodeReply *out)
{
    const ident_app *app = app_of(ctx);
    attempt a;
    attempt_init(ctx, &a, in->username, in->client_address);
    if (attempt_allowed(ctx, &a) != 0)
        return -1;
    ident_login_user user;
    ident_store_result r = IDENT_STORE_NOT_FOUND;
    if (a.account[0] != '\0')
        r = ident_store_login_user(ctx, a.account, &user);
    if (r != IDENT_STORE_OK && r != IDENT_STORE_NOT_FOUND)
        return unavailable(ctx);
    ident_code_canon canon;
    if (r == IDENT_STORE_NOT_FOUND || ident_code_normalize(in->code, &canon) != 0)
        return code_invalid(ctx, &a);
    uint8_t hash[IDENT_CODE_HASH_LEN];
    if (ident_code_hash(app->code_pepper, app->code_pepper_len, &canon, hash) != 0)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INTERNAL, "identity.internal", NULL, "the code cannot be checked");
    ident_stored_code code;
    r = ident_store_find_code(ctx, user.id, hash, &code);
    if (r == IDENT_STORE_NOT_FOUND)
        return code_invalid(ctx, &a);
    if (r != IDENT_STORE_OK)
        return unavailable(ctx);
    /* An enrollment code only sets a first password: a slip found after the
     * person chose their own cannot take the account over. Reset codes work
     * either way. A used code is reported as used, whatever it was for. */
    ident_code_purpose expected = code.rec.purpose;
    if (user.password_hash != NULL && code.rec.used_at == 0)
        expected = IDENT_CODE_RESET;
    switch (ident_code_check(&code.rec, app->code_pepper, app->code_pepper_len, in->code, expected, a.now)) {
    case IDENT_CODE_VALID:
        break;
    case IDENT_CODE_WRONG_PURPOSE:
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.code_wrong_purpose", "code",
                           "this enrollment code cannot replace a password that is already set; ask for a reset code");
    case IDENT_CODE_EXPIRED:
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.code_expired", "code",
                           "the code has expired; ask for a new one");
    case IDENT_CODE_USED:
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.code_used", "code",
                           "the code has already been used or was replaced by a newer one");
    default:
        return code_invalid(ctx, &a);
    }
    ident_pwp_person person = {.username = user.username, .given_name = user.given_name, .family_name = user.family_name};
    ident_pwp_reason why = ident_password_policy_check(app->denylist, in->password, &person);
    if (why != IDENT_PWP_OK)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, ident_pwp_code(why), "password", "%s",
                           ident_pwp_message(why, "en"));
    char *encoded = kr_arena_alloc(ctx->arena, IDENT_PASSWORD_HASH_MAX);
    int rc = ident_password_hash(&app->argon2, in->password, strlen(in->password), encoded, IDENT_PASSWORD_HASH_MAX);
    if (rc != IDENT_PW_OK) {
        kr_log(KR_LOG_ERROR, "password hashing failed", "error", ident_pw_strerror(rc), NULL);
        return kr_rpc_fail(ctx, KREIDE__STATUS__INTERNAL, "identity.internal", NULL, "the password cannot be stored");
    }
    r = ident_store_use_code(ctx, code.id, user.id, encoded);
    if (r == IDENT_STORE_PRECONDITION)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.code_used", "code",
                           "the code has already been used or was replaced by a newer one");
    if (r != IDENT_STORE_OK)
        return unavailable(ctx);
    attempt_succeeded(&a);
    out->user_id = (char *)user.id;
    out->username = (char *)user.username;
    kr_log(KR_LOG_INFO, "password set with a code", "user_id", user.id, "purpose",
           code.rec.purpose == IDENT_CODE_RESET ? "reset" : "enrollment", NULL);
    return 0;
}

/* ---------------------------------------------------------- Authenticate */

static int bad_credentials(kr_rpc_ctx *ctx, attempt *a)
{
    attempt_failed(a);
    return kr_rpc_fail(ctx, KREIDE__STATUS__UNAUTHENTICATED, "identity.bad_credentials", NULL,
                       "the user name or the password is not right");
}

/* The second factor, asked for only once the password was right, so the
 * question tells a guesser nothing a right password does not. A wrong or
 * reused code counts as a failed guess: six digits are few. */
static int check_totp(kr_rpc_ctx *ctx, attempt *a, const ident_login_user *user, const char *totp)
{
    if (totp[0] == '\0')
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "credentials.totp_required", "totp",
                           "this account needs the code from the authenticator app");
    int64_t step = 0;
    ident_totp_result tr =
        ident_totp_verify(user->totp_secret, sizeof(user->totp_secret), totp, a->now, user->totp_last_step, &step);
    ident_store_result r = IDENT_STORE_PRECONDITION;
    if (tr == IDENT_TOTP_OK)
        r = ident_store_use_totp_step(ctx, user->id, step);
    if (r == IDENT_STORE_OK)
        return 0;
    if (r == IDENT_STORE_ERROR)
        return unavailable(ctx);
    attempt_failed(a);
    return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "credentials.totp_required", "totp", "%s",
                       tr == IDENT_TOTP_REPLAYED || tr == IDENT_TOTP_OK ? "this code was used already; wait for the next one"
                                                                        : "the code from the authenticator app is not right");
}

int ident_sign_in(kr_rpc_ctx *ctx, const char *username, const char *password, const char *totp, const char *client_address,
                  ident_signed_in *out)
{
    const ident_app *app = app_of(ctx);
    attempt a;
    attempt_init(ctx, &a, username, client_address);
    if (attempt_allowed(ctx, &a) != 0)
        return -1;
    ident_login_user user;
    ident_store_result r = IDENT_STORE_NOT_FOUND;
    if (a.account[0] != '\0')
        r = ident_store_login_user(ctx, a.account, &user);
    if (r != IDENT_STORE_OK && r != IDENT_STORE_NOT_FOUND)
        return unavailable(ctx);
    size_t len = strlen(password);
    if (r == IDENT_STORE_NOT_FOUND || user.password_hash == NULL) {
        /* The same work as for a real account, so the answer's timing does
         * not tell which user names exist or have a password. */
        int ignored = ident_password_verify(app->dummy_hash, password, len);
        (void)ignored;
        return bad_credentials(ctx, &a);
    }
    int rc = ident_password_verify(user.password_hash, password, len);
    if (rc == IDENT_PW_EFORMAT || rc == IDENT_PW_EINTERNAL)
        kr_log(KR_LOG_ERROR, "password check failed", "user_id", user.id, "error", ident_pw_strerror(rc), NULL);
    if (rc != IDENT_PW_OK)
        return bad_credentials(ctx, &a);
    if (user.has_totp && check_totp(ctx, &a, &user, totp) != 0)
        return -1;
    attempt_succeeded(&a);
    if (ident_password_needs_rehash(&app->argon2, user.password_hash)) {
        char *encoded = kr_arena_alloc(ctx->arena, IDENT_PASSWORD_HASH_MAX);
        if (ident_password_hash(&app->argon2, password, len, encoded, IDENT_PASSWORD_HASH_MAX) == IDENT_PW_OK &&
            ident_store_set_password_hash(ctx, user.id, encoded) == IDENT_STORE_OK)
            kr_log(KR_LOG_INFO, "password rehashed", "user_id", user.id, NULL);
    }
    out->user_id = user.id;
    out->username = user.username;
    out->given_name = user.given_name;
    out->family_name = user.family_name;
    out->display_name = user.display_name;
    out->auth_time = a.now;
    out->with_totp = user.has_totp;
    return 0;
}

int ident_throttle_account_allowed(kr_rpc_ctx *ctx, const char *username)
{
    attempt a;
    attempt_init(ctx, &a, username, "");
    return attempt_allowed(ctx, &a);
}

void ident_throttle_account_failed(kr_rpc_ctx *ctx, const char *username)
{
    attempt a;
    attempt_init(ctx, &a, username, "");
    if (a.redis != NULL)
        attempt_failed(&a);
}

static int authenticate(kr_rpc_ctx *ctx, const Kreide__Identity__AuthenticateRequest *in, Kreide__Identity__AuthenticateReply *out)
{
    ident_signed_in who = {0};
    if (ident_sign_in(ctx, in->username, in->password, in->totp, in->client_address, &who) != 0)
        return -1;
    if (ident_store_auth_schools(ctx, who.user_id, &out->schools, &out->n_schools) != IDENT_STORE_OK)
        return unavailable(ctx);
    out->user_id = (char *)who.user_id;
    out->username = (char *)who.username;
    out->given_name = (char *)who.given_name;
    out->family_name = (char *)who.family_name;
    out->display_name = (char *)who.display_name;
    out->auth_time = who.auth_time;
    kr_log(KR_LOG_INFO, "signed in", "user_id", who.user_id, NULL);
    return 0;
}

KR_RPC_HANDLER(issue_code, Kreide__Identity__IssueCodeRequest, Kreide__Identity__IssuedCode)
KR_RPC_HANDLER(enroll_with_code, Kreide__Identity__EnrollWithCodeRequest, Kreide__Identity__EnrollWithCodeReply)
KR_RPC_HANDLER(authenticate, Kreide__Identity__AuthenticateRequest, Kreide__Identity__AuthenticateReply)

const kr_rpc_method ident_credential_methods[] = {
    KR_RPC_ENTRY("IssueCode", issue_code, Kreide__Identity__IssueCodeRequest, Kreide__Identity__IssuedCode),
    KR_RPC_ENTRY("EnrollWithCode", enroll_with_code, Kreide__Identity__EnrollWithCodeRequest,
                 Kreide__Identity__EnrollWithCodeReply),
    KR_RPC_ENTRY("Authenticate", authenticate, Kreide__Identity__AuthenticateRequest, Kreide__Identity__AuthenticateReply),
};
const size_t ident_credential_nmethods = sizeof(ident_credential_methods) / sizeof(ident_credential_methods[0]);
