/* A person's own TOTP second factor (RFC 6238, totp.h): SetupTotp makes a
 * new secret that waits, ConfirmTotp switches it on with the first code
 * from the app (which proves the app holds it), DisableTotp switches it off
 * with a current code. Only the person themself, signed in (a USER caller),
 * and only teachers, staff, heads and school admins: pupils and parents use
 * a password alone (policy.c, ident_may_use_totp).
 *
 * The secret leaves identity once, in SetupTotp's reply; it is never
 * logged. Codes are never logged either. */
#include <string.h>
#include <time.h>

#include "identity.h"
#include "kr_id.h"
#include "kr_log.h"

/* How long a secret from SetupTotp waits for its first code. */
#define PENDING_S 900
/* The issuer authenticator apps show beside the account. */
#define TOTP_ISSUER "Kreide"

static int database_failure(kr_rpc_ctx *ctx)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__UNAVAILABLE, "identity.database", NULL, "the directory is temporarily unavailable");
}

/* The signed-in person's state, or -1 after kr_rpc_fail. */
static int load(kr_rpc_ctx *ctx, ident_totp_state *st)
{
    const Kreide__Caller *c = ctx->caller;
    if (c->kind != KREIDE__CALLER__KIND__USER || !kr_uuid_valid(c->user_id))
        return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "identity.forbidden", NULL,
                           "a second factor belongs to a signed-in person");
    ident_store_result r = ident_store_totp_state(ctx, c->user_id, st);
    if (r == IDENT_STORE_NOT_FOUND) /* an operator's token names no person of the directory */
        return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "identity.forbidden", NULL,
                           "a second factor belongs to a person of the directory");
    if (r != IDENT_STORE_OK)
        return database_failure(ctx);
    return 0;
}

static int not_for_this_person(kr_rpc_ctx *ctx)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "identity.forbidden", NULL,
                       "only teachers, staff, heads and school admins use a second factor");
}

static int already_on(kr_rpc_ctx *ctx)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "identity.totp_enabled", NULL,
                       "the second factor is on already; switch it off first");
}

static int wrong_code(kr_rpc_ctx *ctx, ident_totp_result tr)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.totp_invalid", "code", "%s",
                       tr == IDENT_TOTP_MALFORMED  ? "the code is six digits from the authenticator app"
                       : tr == IDENT_TOTP_REPLAYED ? "this code was used already; wait for the next one"
                                                   : "the code is not right");
}

static int setup_totp(kr_rpc_ctx *ctx, const Kreide__Empty *in, Kreide__Identity__TotpSetup *out)
{
    (void)in;
    ident_totp_state st = {0};
    if (load(ctx, &st) != 0)
        return -1;
    if (!ident_may_use_totp(st.roles_anywhere))
        return not_for_this_person(ctx);
    if (st.enabled)
        return already_on(ctx);
    uint8_t secret[IDENT_TOTP_SECRET_LEN];
    ident_totp_secret_new(secret);
    char *b32 = kr_arena_alloc(ctx->arena, IDENT_TOTP_SECRET_B32_MAX);
    char *uri = kr_arena_alloc(ctx->arena, 512);
    if (ident_base32_encode(secret, sizeof(secret), false, b32, IDENT_TOTP_SECRET_B32_MAX) != 0 ||
        ident_totp_uri(TOTP_ISSUER, st.username, secret, sizeof(secret), uri, 512) != 0)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INTERNAL, "identity.internal", NULL, "the secret cannot be shown");
    ident_store_result r = ident_store_totp_set_pending(ctx, ctx->caller->user_id, secret);
    if (r == IDENT_STORE_PRECONDITION)
        return already_on(ctx);
    if (r != IDENT_STORE_OK)
        return database_failure(ctx);
    out->secret = b32;
    out->otpauth_uri = uri;
    kr_log(KR_LOG_INFO, "totp setup started", "user_id", ctx->caller->user_id, NULL);
    return 0;
}

static int confirm_totp(kr_rpc_ctx *ctx, const Kreide__Identity__TotpCodeRequest *in, Kreide__Empty *out)
{
    (void)out;
    ident_totp_state st = {0};
    if (load(ctx, &st) != 0)
        return -1;
    if (!ident_may_use_totp(st.roles_anywhere))
        return not_for_this_person(ctx);
    if (st.enabled)
        return already_on(ctx);
    int64_t now = (int64_t)time(NULL);
    if (!st.pending || now - st.pending_at > PENDING_S)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "identity.totp_not_pending", NULL,
                           "no second factor is being set up (or it took longer than 15 minutes); start again");
    int64_t step = 0;
    ident_totp_result tr = ident_totp_verify(st.pending_secret, sizeof(st.pending_secret), in->code, now, IDENT_TOTP_NEVER, &step);
    if (tr != IDENT_TOTP_OK)
        return wrong_code(ctx, tr);
    ident_store_result r = ident_store_totp_confirm(ctx, ctx->caller->user_id, st.pending_secret, step);
    if (r == IDENT_STORE_PRECONDITION)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "identity.totp_not_pending", NULL,
                           "the setup changed meanwhile; start again");
    if (r != IDENT_STORE_OK)
        return database_failure(ctx);
    kr_log(KR_LOG_INFO, "totp switched on", "user_id", ctx->caller->user_id, NULL);
    return 0;
}

static int disable_totp(kr_rpc_ctx *ctx, const Kreide__Identity__TotpCodeRequest *in, Kreide__Empty *out)
{
    (void)out;
    ident_totp_state st = {0};
    if (load(ctx, &st) != 0)
        return -1;
    if (!st.enabled)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "identity.totp_not_enabled", NULL, "the second factor is off");
    /* Whoever holds a stolen access token must not guess six digits at
     * leisure: the account's throttle counts wrong codes here as well. */
    if (ident_throttle_account_allowed(ctx, st.username) != 0)
        return -1;
    int64_t step = 0;
    ident_totp_result tr = ident_totp_verify(st.secret, sizeof(st.secret), in->code, (int64_t)time(NULL), st.last_step, &step);
    ident_store_result r = IDENT_STORE_PRECONDITION;
    if (tr == IDENT_TOTP_OK)
        r = ident_store_totp_disable(ctx, ctx->caller->user_id, step);
    if (r == IDENT_STORE_ERROR)
        return database_failure(ctx);
    if (r != IDENT_STORE_OK) {
        ident_throttle_account_failed(ctx, st.username);
        return wrong_code(ctx, tr == IDENT_TOTP_OK ? IDENT_TOTP_REPLAYED : tr);
    }
    kr_log(KR_LOG_INFO, "totp switched off", "user_id", ctx->caller->user_id, NULL);
    return 0;
}

KR_RPC_HANDLER(setup_totp, Kreide__Empty, Kreide__Identity__TotpSetup)
KR_RPC_HANDLER(confirm_totp, Kreide__Identity__TotpCodeRequest, Kreide__Empty)
KR_RPC_HANDLER(disable_totp, Kreide__Identity__TotpCodeRequest, Kreide__Empty)

const kr_rpc_method ident_totp_methods[] = {
    KR_RPC_ENTRY("SetupTotp", setup_totp, Kreide__Empty, Kreide__Identity__TotpSetup),
    KR_RPC_ENTRY("ConfirmTotp", confirm_totp, Kreide__Identity__TotpCodeRequest, Kreide__Empty),
    KR_RPC_ENTRY("DisableTotp", disable_totp, Kreide__Identity__TotpCodeRequest, Kreide__Empty),
};
const size_t ident_totp_nmethods = sizeof(ident_totp_methods) / sizeof(ident_totp_methods[0]);
