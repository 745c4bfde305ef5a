/* The SQL of credentials: password hashes and one-time codes. Parameterised
 * like store.c; a code's row carries the school it was issued at. Codes
 * travel as their HMAC only (bytea, sent as hex). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "kr_id.h"
#include "kr_log.h"
#include "kr_pg.h"

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
#define EPOCH(col) "coalesce(floor(extract(epoch FROM " col "))::bigint, 0)"

const char *ident_code_purpose_name(Kreide__Identity__CodePurpose p)
{
    switch (p) {
    case KREIDE__IDENTITY__CODE_PURPOSE__ENROLLMENT:
        return "enrollment";
    case KREIDE__IDENTITY__CODE_PURPOSE__RESET:
        return "reset";
    default:
        return NULL;
    }
}

static ident_store_result failed(kr_rpc_ctx *ctx, const char *what, const char *err)
{
    const char *state = kr_pg_sqlstate(ctx->pg);
    if (strcmp(state, "23505") == 0)
        return IDENT_STORE_CONFLICT;
    if (strcmp(state, "23503") == 0)
        return IDENT_STORE_NOT_FOUND;
    kr_log(KR_LOG_ERROR, "database statement failed", "statement", what, "error", err, "sqlstate", state, NULL);
    return IDENT_STORE_ERROR;
}

static ident_store_result run(kr_rpc_ctx *ctx, const char *what, const char *sql, int n, const char *const *params, PGresult **out)
{
    char err[256];
    *out = kr_pg_exec(ctx->pg, sql, n, params, err, sizeof(err));
    return *out == NULL ? failed(ctx, what, err) : IDENT_STORE_OK;
}

static char *col(kr_rpc_ctx *ctx, const PGresult *r, int row, int c)
{
    return kr_arena_strdup(ctx->arena, PQgetvalue(r, row, c));
}

/* bytea input in hex form: "\x" and two digits per byte. */
static void hash_hex(const uint8_t hash[IDENT_CODE_HASH_LEN], char out[2 * IDENT_CODE_HASH_LEN + 3])
{
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < IDENT_CODE_HASH_LEN; i++)
        snprintf(out + 2 + 2 * i, 3, "%02x", hash[i]);
}

/* bytea input in hex form of `n` bytes. */
static void bytes_hex(const uint8_t *in, size_t n, char *out)
{
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 + 2 * i, 3, "%02x", in[i]);
}

/* Lower-case hex (PostgreSQL's encode) of exactly `n` bytes into `out`;
 * false for anything else, including "" (no value). */
static bool hex_bytes(const char *hex, uint8_t *out, size_t n)
{
    if (strlen(hex) != 2 * n)
        return false;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = hex[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return false;
        out[i / 2] = (uint8_t)(i % 2 == 0 ? v << 4 : out[i / 2] | v);
    }
    return true;
}

static ident_store_result begin(kr_rpc_ctx *ctx)
{
    if (kr_pg_begin(ctx->pg) == 0)
        return IDENT_STORE_OK;
    kr_log(KR_LOG_ERROR, "cannot begin a transaction", "error", kr_pg_errmsg(ctx->pg), NULL);
    kr_pg_rollback(ctx->pg);
    return IDENT_STORE_ERROR;
}

/* Commits when everything went well, else rolls back; returns the outcome. */
static ident_store_result finish(kr_rpc_ctx *ctx, const char *what, ident_store_result res)
{
    if (res == IDENT_STORE_OK && kr_pg_commit(ctx->pg) != 0) {
        kr_log(KR_LOG_ERROR, "commit failed", "statement", what, "error", kr_pg_errmsg(ctx->pg), NULL);
        res = IDENT_STORE_ERROR;
    }
    if (res != IDENT_STORE_OK)
        kr_pg_rollback(ctx->pg);
    return res;
}

ident_store_result ident_store_roles_at(kr_rpc_ctx *ctx, const char *school_id, const char *user_id, unsigned *roles)
{
    const char *params[] = {school_id, user_id};
    PGresult *r;
    ident_store_result res =
        run(ctx, "select roles at school",
            "SELECT pc.role FROM identity.person_contexts pc WHERE pc.school_id = $1 AND pc.user_id = $2", 2, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    *roles = 0;
    for (int i = 0; i < PQntuples(r); i++)
        *roles |= ident_role_bit(PQgetvalue(r, i, 0));
    PQclear(r);
    return IDENT_STORE_OK;
}

ident_store_result ident_store_leads_member(kr_rpc_ctx *ctx, const char *school_id, const char *leader_id, const char *member_id,
                                            bool *leads)
{
    const char *params[] = {school_id, leader_id, member_id};
    PGresult *r;
    ident_store_result res =
        run(ctx, "select leads member",
            "SELECT EXISTS (SELECT 1 FROM identity.memberships l JOIN identity.memberships m "
            "ON m.school_id = l.school_id AND m.group_id = l.group_id "
            "WHERE l.school_id = $1 AND l.user_id = $2 AND l.role = 'leader' AND m.user_id = $3 AND m.role = 'member' "
            "AND (l.valid_from IS NULL OR l.valid_from <= current_date) AND (l.valid_to IS NULL OR l.valid_to >= current_date) "
            "AND (m.valid_from IS NULL OR m.valid_from <= current_date) AND (m.valid_to IS NULL OR m.valid_to >= current_date))",
            3, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    *leads = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return IDENT_STORE_OK;
}

ident_store_result ident_store_issue_code(kr_rpc_ctx *ctx, const char *school_id, const char *user_id, const char *purpose,
                                          const uint8_t *hash, const char *issued_by, int64_t ttl_s, const char **expires_at)
{
    kr_uuid_str id;
    kr_uuid7_new(&id);
    char hex[2 * IDENT_CODE_HASH_LEN + 3], ttl[24];
    hash_hex(hash, hex);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s);
    ident_store_result res = begin(ctx);
    if (res != IDENT_STORE_OK)
        return res;
    const char *retire[] = {user_id, purpose};
    PGresult *r;
    /* One live code per person and purpose, whichever school issued the
     * older one: the person has one account. */
    res = run(ctx, "retire code",
              "UPDATE identity.one_time_codes SET retired_at = now() WHERE user_id = $1 AND purpose = $2 "
              "AND used_at IS NULL AND retired_at IS NULL",
              2, retire, &r);
    if (res == IDENT_STORE_OK) {
        PQclear(r);
        const char *params[] = {id.s, school_id, user_id, purpose, hex, issued_by[0] ? issued_by : NULL, ttl};
        res = run(ctx, "insert code",
                  "INSERT INTO identity.one_time_codes (id, school_id, user_id, purpose, code_hash, issued_by, expires_at) "
                  "VALUES ($1, $2, $3, $4, $5::bytea, (SELECT u.id FROM identity.users u WHERE u.id = $6::uuid), "
                  "now() + make_interval(secs => $7::bigint)) RETURNING " TS("expires_at"),
                  7, params, &r);
        if (res == IDENT_STORE_OK) {
            *expires_at = col(ctx, r, 0, 0);
            PQclear(r);
        }
    }
    return finish(ctx, "issue code", res);
}

ident_store_result ident_store_login_user(kr_rpc_ctx *ctx, const char *username, ident_login_user *out)
{
    const char *params[] = {username};
    PGresult *r;
    ident_store_result res = run(ctx, "select login user",
                                 "SELECT u.id::text, u.username, u.given_name, u.family_name, u.display_name, u.password_hash, "
                                 "encode(u.totp_secret, 'hex'), u.totp_last_step "
                                 "FROM identity.users u WHERE u.username = $1",
                                 1, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    res = IDENT_STORE_NOT_FOUND;
    if (PQntuples(r) == 1) {
        out->id = col(ctx, r, 0, 0);
        out->username = col(ctx, r, 0, 1);
        out->given_name = col(ctx, r, 0, 2);
        out->family_name = col(ctx, r, 0, 3);
        out->display_name = col(ctx, r, 0, 4);
        out->password_hash = PQgetisnull(r, 0, 5) ? NULL : col(ctx, r, 0, 5);
        out->has_totp = hex_bytes(PQgetvalue(r, 0, 6), out->totp_secret, sizeof(out->totp_secret));
        out->totp_last_step = PQgetisnull(r, 0, 7) ? IDENT_TOTP_NEVER : strtoll(PQgetvalue(r, 0, 7), NULL, 10);
        res = IDENT_STORE_OK;
    }
    PQclear(r);
    return res;
}

ident_store_result ident_store_find_code(kr_rpc_ctx *ctx, const char *user_id, const uint8_t *hash, ident_stored_code *out)
{
    char hex[2 * IDENT_CODE_HASH_LEN + 3];
    hash_hex(hash, hex);
    const char *params[] = {user_id, hex};
    PGresult *r;
    ident_store_result res =
        run(ctx, "select code",
            "SELECT c.id::text, c.purpose, " EPOCH("c.expires_at") ", " EPOCH(
                "coalesce(c.used_at, c.retired_at)") " "
                                                     "FROM identity.one_time_codes c WHERE c.user_id = $1 AND c.code_hash = "
                                                     "$2::bytea ORDER BY c.created_at DESC LIMIT 1",
            2, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    res = IDENT_STORE_NOT_FOUND;
    if (PQntuples(r) == 1) {
        out->id = col(ctx, r, 0, 0);
        memcpy(out->rec.hash, hash, IDENT_CODE_HASH_LEN);
        out->rec.purpose = strcmp(PQgetvalue(r, 0, 1), "reset") == 0 ? IDENT_CODE_RESET : IDENT_CODE_ENROLLMENT;
        out->rec.expires_at = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
        out->rec.used_at = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
        res = IDENT_STORE_OK;
    }
    PQclear(r);
    return res;
}

ident_store_result ident_store_use_code(kr_rpc_ctx *ctx, const char *code_id, const char *user_id, const char *password_hash)
{
    ident_store_result res = begin(ctx);
    if (res != IDENT_STORE_OK)
        return res;
    const char *use[] = {code_id, user_id};
    PGresult *r;
    /* The conditions again, inside the transaction: of two requests racing
     * with the same code only one finds it unused. */
    res = run(ctx, "use code",
              "UPDATE identity.one_time_codes SET used_at = now() WHERE id = $1 AND user_id = $2 "
              "AND used_at IS NULL AND retired_at IS NULL AND expires_at > now()",
              2, use, &r);
    if (res == IDENT_STORE_OK) {
        if (strcmp(PQcmdTuples(r), "1") != 0)
            res = IDENT_STORE_PRECONDITION;
        PQclear(r);
    }
    if (res == IDENT_STORE_OK) {
        const char *set[] = {user_id, password_hash};
        res = run(ctx, "set password", "UPDATE identity.users SET password_hash = $2, password_set_at = now() WHERE id = $1", 2,
                  set, &r);
        if (res == IDENT_STORE_OK) {
            if (strcmp(PQcmdTuples(r), "1") != 0)
                res = IDENT_STORE_NOT_FOUND;
            PQclear(r);
        }
    }
    return finish(ctx, "use code", res);
}

ident_store_result ident_store_use_totp_step(kr_rpc_ctx *ctx, const char *user_id, int64_t step)
{
    char stepbuf[24];
    snprintf(stepbuf, sizeof(stepbuf), "%lld", (long long)step);
    const char *params[] = {user_id, stepbuf};
    PGresult *r;
    /* Conditioned on the step, so of two requests racing with one code only
     * one succeeds. */
    ident_store_result res = run(ctx, "use totp step",
                                 "UPDATE identity.users SET totp_last_step = $2::bigint WHERE id = $1 AND totp_secret IS NOT NULL "
                                 "AND (totp_last_step IS NULL OR totp_last_step < $2::bigint)",
                                 2, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    if (strcmp(PQcmdTuples(r), "1") != 0)
        res = IDENT_STORE_PRECONDITION;
    PQclear(r);
    return res;
}

ident_store_result ident_store_totp_state(kr_rpc_ctx *ctx, const char *user_id, ident_totp_state *out)
{
    const char *params[] = {user_id};
    PGresult *r;
    ident_store_result res =
        run(ctx, "select totp state",
            "SELECT u.username, encode(u.totp_secret, 'hex'), u.totp_last_step, encode(u.totp_pending_secret, 'hex'), " EPOCH(
                "u.totp_pending_at") ", "
                                     "coalesce((SELECT string_agg(DISTINCT pc.role, ' ') FROM identity.person_contexts pc "
                                     "WHERE pc.user_id = u.id), '') FROM identity.users u WHERE u.id = $1",
            1, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return IDENT_STORE_NOT_FOUND;
    }
    memset(out, 0, sizeof(*out));
    out->username = col(ctx, r, 0, 0);
    out->enabled = hex_bytes(PQgetvalue(r, 0, 1), out->secret, sizeof(out->secret));
    out->last_step = PQgetisnull(r, 0, 2) ? IDENT_TOTP_NEVER : strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    out->pending = hex_bytes(PQgetvalue(r, 0, 3), out->pending_secret, sizeof(out->pending_secret));
    out->pending_at = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
    char *roles = col(ctx, r, 0, 5), *save = NULL;
    for (char *w = strtok_r(roles, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save))
        out->roles_anywhere |= ident_role_bit(w);
    PQclear(r);
    return IDENT_STORE_OK;
}

/* Runs an UPDATE of one user row; PRECONDITION when its conditions left
 * nothing to update. */
static ident_store_result update_one(kr_rpc_ctx *ctx, const char *what, const char *sql, int n, const char *const *params)
{
    PGresult *r;
    ident_store_result res = run(ctx, what, sql, n, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    if (strcmp(PQcmdTuples(r), "1") != 0)
        res = IDENT_STORE_PRECONDITION;
    PQclear(r);
    return res;
}

ident_store_result ident_store_totp_set_pending(kr_rpc_ctx *ctx, const char *user_id, const uint8_t secret[IDENT_TOTP_SECRET_LEN])
{
    char hex[2 * IDENT_TOTP_SECRET_LEN + 3];
    bytes_hex(secret, IDENT_TOTP_SECRET_LEN, hex);
    const char *params[] = {user_id, hex};
    return update_one(ctx, "set pending totp",
                      "UPDATE identity.users SET totp_pending_secret = $2::bytea, totp_pending_at = now() "
                      "WHERE id = $1 AND totp_secret IS NULL",
                      2, params);
}

ident_store_result ident_store_totp_confirm(kr_rpc_ctx *ctx, const char *user_id, const uint8_t secret[IDENT_TOTP_SECRET_LEN],
                                            int64_t step)
{
    char hex[2 * IDENT_TOTP_SECRET_LEN + 3], stepbuf[24];
    bytes_hex(secret, IDENT_TOTP_SECRET_LEN, hex);
    snprintf(stepbuf, sizeof(stepbuf), "%lld", (long long)step);
    const char *params[] = {user_id, hex, stepbuf};
    return update_one(ctx, "confirm totp",
                      "UPDATE identity.users SET totp_secret = totp_pending_secret, totp_last_step = $3::bigint, "
                      "totp_enabled_at = now(), totp_pending_secret = NULL, totp_pending_at = NULL "
                      "WHERE id = $1 AND totp_secret IS NULL AND totp_pending_secret = $2::bytea",
                      3, params);
}

ident_store_result ident_store_totp_disable(kr_rpc_ctx *ctx, const char *user_id, int64_t step)
{
    char stepbuf[24];
    snprintf(stepbuf, sizeof(stepbuf), "%lld", (long long)step);
    const char *params[] = {user_id, stepbuf};
    return update_one(ctx, "disable totp",
                      "UPDATE identity.users SET totp_secret = NULL, totp_last_step = NULL, totp_enabled_at = NULL "
                      "WHERE id = $1 AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < $2::bigint)",
                      2, params);
}

ident_store_result ident_store_set_password_hash(kr_rpc_ctx *ctx, const char *user_id, const char *password_hash)
{
    const char *params[] = {user_id, password_hash};
    PGresult *r;
    ident_store_result res =
        run(ctx, "rehash password", "UPDATE identity.users SET password_hash = $2 WHERE id = $1", 2, params, &r);
    if (res == IDENT_STORE_OK)
        PQclear(r);
    return res;
}

ident_store_result ident_store_auth_schools(kr_rpc_ctx *ctx, const char *user_id, Kreide__Identity__AuthenticatedSchool ***out,
                                            size_t *n)
{
    const char *params[] = {user_id};
    PGresult *r;
    ident_store_result res = run(ctx, "select auth schools",
                                 "SELECT pc.school_id::text, coalesce(s.kennung, ''), pc.role, pc.schulconnex_role "
                                 "FROM identity.person_contexts pc JOIN identity.schools s ON s.id = pc.school_id "
                                 "WHERE pc.user_id = $1 ORDER BY pc.school_id, pc.role",
                                 1, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    int rows = PQntuples(r);
    Kreide__Identity__AuthenticatedSchool **list = kr_arena_alloc(ctx->arena, sizeof(*list) * (size_t)(rows ? rows : 1));
    size_t count = 0;
    for (int i = 0; i < rows; i++) {
        Kreide__Identity__AuthenticatedSchool *s = count ? list[count - 1] : NULL;
        if (s == NULL || strcmp(s->school_id, PQgetvalue(r, i, 0)) != 0) {
            s = kr_arena_alloc(ctx->arena, sizeof(*s));
            kreide__identity__authenticated_school__init(s);
            s->school_id = col(ctx, r, i, 0);
            s->kennung = col(ctx, r, i, 1);
            /* A person holds at most the six roles at one school. */
            s->roles = kr_arena_alloc(ctx->arena, sizeof(char *) * 6);
            s->schulconnex_roles = kr_arena_alloc(ctx->arena, sizeof(char *) * 6);
            list[count++] = s;
        }
        if (s->n_roles < 6) {
            s->roles[s->n_roles++] = col(ctx, r, i, 2);
            s->schulconnex_roles[s->n_schulconnex_roles++] = col(ctx, r, i, 3);
        }
    }
    PQclear(r);
    *out = list;
    *n = count;
    return IDENT_STORE_OK;
}
