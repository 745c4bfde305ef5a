/* The SQL of the OpenID Connect flow: consents, authorization codes, grants
 * with their recorded access tokens, a person's claims, and the cleanup of
 * what expired. Codes travel as their SHA-256 only (bytea, sent as hex). A
 * redemption is one transaction that locks the code's row first, so of two
 * requests with the same code exactly one gets the grant and the other is
 * treated as a replay. Refresh tokens rotate in Redis (flow_redis.c); here
 * the grant's first token starts its family, and a refresh reads the
 * grant's state with the person's claims in one statement. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "kr_id.h"
#include "kr_log.h"
#include "kr_pg.h"

#define EPOCH(col) "floor(extract(epoch FROM " col "))::bigint"

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

/* Every statement here is prepared once per connection under its `what`,
 * so each `what` in this file names exactly one SQL text. */
static ident_store_result run(kr_rpc_ctx *ctx, const char *what, const char *sql, int n, const char *const *params, PGresult **out)
{
    char err[256], name[64];
    snprintf(name, sizeof(name), "flow: %s", what);
    *out = kr_pg_exec_prepared(ctx->pg, name, sql, n, params, err, sizeof(err));
    return *out == NULL ? failed(ctx, what, err) : IDENT_STORE_OK;
}

/* Runs a statement whose rows nobody reads. */
static ident_store_result exec(kr_rpc_ctx *ctx, const char *what, const char *sql, int n, const char *const *params)
{
    PGresult *r;
    ident_store_result res = run(ctx, what, sql, n, params, &r);
    if (res == IDENT_STORE_OK)
        PQclear(r);
    return res;
}

static char *col(kr_rpc_ctx *ctx, const PGresult *r, int row, int c)
{
    return kr_arena_strdup(ctx->arena, PQgetvalue(r, row, c));
}

static int64_t col_int(const PGresult *r, int row, int c)
{
    return strtoll(PQgetvalue(r, row, c), NULL, 10);
}

/* bytea input in hex form: "\x" and two digits per byte. */
static void hash_hex(const uint8_t hash[32], char out[2 * 32 + 3])
{
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 2 + 2 * i, 3, "%02x", hash[i]);
}

static void int_text(int64_t v, char out[24])
{
    snprintf(out, 24, "%lld", (long long)v);
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

/* A scope list as a JSON array text (malloc); aborts on out-of-memory. */
static char *scopes_json(const ident_scopes *s)
{
    json_t *a = json_array();
    for (size_t i = 0; i < s->n; i++)
        json_array_append_new(a, json_string(s->v[i]));
    char *text = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    if (text == NULL)
        abort();
    return text;
}

/* ---------------------------------------------------------------- consent */

ident_store_result ident_store_consent_covers(kr_rpc_ctx *ctx, const char *user_id, const char *client_id, const ident_scopes *s,
                                              bool *covers)
{
    char *list = scopes_json(s);
    const char *params[] = {user_id, client_id, list};
    PGresult *r;
    ident_store_result res = run(ctx, "select consent",
                                 "SELECT EXISTS (SELECT 1 FROM identity.oidc_consents c WHERE c.user_id = $1 AND c.client_id = $2 "
                                 "AND c.scopes @> ARRAY(SELECT jsonb_array_elements_text($3::jsonb)))",
                                 3, params, &r);
    free(list);
    if (res != IDENT_STORE_OK)
        return res;
    *covers = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return IDENT_STORE_OK;
}

ident_store_result ident_store_consent_merge(kr_rpc_ctx *ctx, const char *user_id, const char *client_id, const ident_scopes *s)
{
    char *list = scopes_json(s);
    const char *params[] = {user_id, client_id, list};
    ident_store_result res =
        exec(ctx, "merge consent",
             "INSERT INTO identity.oidc_consents AS c (user_id, client_id, scopes) "
             "VALUES ($1, $2, ARRAY(SELECT jsonb_array_elements_text($3::jsonb))) "
             "ON CONFLICT (user_id, client_id) DO UPDATE SET "
             "scopes = ARRAY(SELECT DISTINCT x FROM unnest(c.scopes || EXCLUDED.scopes) x ORDER BY x), updated_at = now()",
             3, params);
    free(list);
    return res;
}

/* ------------------------------------------------------------------ codes */

ident_store_result ident_store_insert_code(kr_rpc_ctx *ctx, const uint8_t hash[32], const ident_authcode_row *c)
{
    char hex[2 * 32 + 3], auth_time[24], expires_at[24];
    hash_hex(hash, hex);
    int_text(c->auth_time, auth_time);
    int_text(c->expires_at, expires_at);
    const char *params[] = {hex,      c->client_id,      c->user_id,    c->redirect_uri, c->scope,
                            c->nonce, c->code_challenge, c->session_id, auth_time,       expires_at};
    return exec(ctx, "insert code",
                "INSERT INTO identity.oidc_codes (code_hash, client_id, user_id, redirect_uri, scope, nonce, code_challenge, "
                "session_id, auth_time, expires_at) VALUES ($1::bytea, $2, $3, $4, $5, $6, NULLIF($7, ''), $8, $9::bigint, "
                "to_timestamp($10::bigint))",
                10, params);
}

/* Records a new access token of the grant, expiring at now + ttl. */
static ident_store_result record_access(kr_rpc_ctx *ctx, const char *grant_id, int64_t now, int64_t ttl, ident_issued *out)
{
    kr_uuid_str jti;
    kr_uuid7_new(&jti);
    out->access_jti = kr_arena_strdup(ctx->arena, jti.s);
    out->access_expires_at = now + ttl;
    char exp[24];
    int_text(out->access_expires_at, exp);
    const char *params[] = {jti.s, grant_id, exp};
    return exec(ctx, "insert access token",
                "INSERT INTO identity.oidc_access_tokens (jti, grant_id, expires_at) VALUES ($1, $2, to_timestamp($3::bigint))", 3,
                params);
}

/* Revokes a grant (kept if it already was) and lists its access tokens
 * that are still valid, for Redis. Inside the caller's transaction. */
static ident_store_result revoke_grant(kr_rpc_ctx *ctx, const char *grant_id, const char *reason, int64_t now,
                                       ident_live_jti **revoke, size_t *nrevoke)
{
    const char *params[] = {grant_id, reason};
    ident_store_result res = exec(ctx, "revoke grant",
                                  "UPDATE identity.oidc_grants SET revoked_at = now(), revoked_reason = $2 "
                                  "WHERE id = $1 AND revoked_at IS NULL",
                                  2, params);
    if (res != IDENT_STORE_OK)
        return res;
    char nowbuf[24];
    int_text(now, nowbuf);
    const char *live[] = {grant_id, nowbuf};
    PGresult *r;
    res = run(ctx, "select live access tokens",
              "SELECT a.jti::text, " EPOCH("a.expires_at") " FROM identity.oidc_access_tokens a "
                                                           "WHERE a.grant_id = $1 AND a.expires_at > to_timestamp($2::bigint)",
              2, live, &r);
    if (res != IDENT_STORE_OK)
        return res;
    int rows = PQntuples(r);
    *revoke = kr_arena_alloc(ctx->arena, sizeof(**revoke) * (size_t)(rows ? rows : 1));
    for (int i = 0; i < rows; i++) {
        (*revoke)[i].jti = col(ctx, r, i, 0);
        (*revoke)[i].expires_at = col_int(r, i, 1);
    }
    *nrevoke = (size_t)rows;
    PQclear(r);
    return IDENT_STORE_OK;
}

static bool scope_has(const char *scope, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = scope; (p = strstr(p, name)) != NULL; p += n)
        if ((p == scope || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

/* Issues the first refresh token of a new grant: its family starts in
 * Redis before the grant commits, so a grant never promises a token Redis
 * does not know (without Redis the redemption fails and the code stays
 * good). */
static ident_store_result start_family(kr_rpc_ctx *ctx, const char *grant_id, const ident_authcode_row *c, int64_t now, int64_t ttl,
                                       int64_t pg_until, ident_issued *out)
{
    const ident_app *app = ctx->app;
    kr_redis *r = ident_redis_pool_get(app->redis);
    if (r == NULL) {
        kr_log(KR_LOG_ERROR, "refresh tokens need Redis (KREIDE_REDIS_URL)", NULL);
        return IDENT_STORE_ERROR;
    }
    char *token = kr_arena_alloc(ctx->arena, IDENT_FLOW_TOKEN_LEN + 1);
    ident_flow_token_new(token);
    uint8_t hash[32];
    ident_flow_token_hash(token, hash);
    char key[IDENT_RT_TOKEN_KEY_LEN + 1];
    ident_rt_token_key(hash, key);
    ident_grant_row g = {grant_id, c->client_id, c->user_id, c->scope, c->session_id, c->auth_time};
    if (ident_family_put(r, &g, key, now + ttl, ttl, pg_until) != IDENT_REDIS_OK)
        return IDENT_STORE_ERROR;
    out->refresh_token = token;
    out->refresh_expires_at = now + ttl;
    return IDENT_STORE_OK;
}

ident_store_result ident_store_redeem_code(kr_rpc_ctx *ctx, const uint8_t hash[32], const char *client_id, const char *redirect_uri,
                                           const char *code_verifier, int64_t now, int64_t access_ttl_s, int64_t refresh_ttl_s,
                                           ident_redeemed *out)
{
    memset(out, 0, sizeof(*out));
    char hex[2 * 32 + 3];
    hash_hex(hash, hex);
    ident_store_result res = begin(ctx);
    if (res != IDENT_STORE_OK)
        return res;
    const char *params[] = {hex};
    PGresult *r;
    res = run(ctx, "select code for update",
              "SELECT c.client_id, c.user_id::text, c.redirect_uri, c.scope, c.nonce, coalesce(c.code_challenge, ''), "
              "c.session_id::text, c.auth_time, " EPOCH("c.expires_at") ", c.used_at IS NOT NULL, coalesce(c.grant_id::text, '') "
                                                                        "FROM identity.oidc_codes c WHERE c.code_hash = $1::bytea "
                                                                        "FOR UPDATE",
              1, params, &r);
    if (res != IDENT_STORE_OK)
        return finish(ctx, "redeem code", res);
    if (PQntuples(r) != 1) {
        PQclear(r);
        out->verdict = IDENT_AUTHCODE_UNKNOWN;
        kr_pg_rollback(ctx->pg);
        return IDENT_STORE_OK;
    }
    ident_authcode_row *c = &out->code;
    c->client_id = col(ctx, r, 0, 0);
    c->user_id = col(ctx, r, 0, 1);
    c->redirect_uri = col(ctx, r, 0, 2);
    c->scope = col(ctx, r, 0, 3);
    c->nonce = col(ctx, r, 0, 4);
    c->code_challenge = col(ctx, r, 0, 5);
    c->session_id = col(ctx, r, 0, 6);
    c->auth_time = col_int(r, 0, 7);
    c->expires_at = col_int(r, 0, 8);
    bool used = PQgetvalue(r, 0, 9)[0] == 't';
    const char *grant_id = col(ctx, r, 0, 10);
    PQclear(r);
    ident_authcode_facts facts = {c->client_id, c->redirect_uri, c->code_challenge, c->expires_at, used};
    out->verdict = ident_authcode_judge(&facts, client_id, redirect_uri, code_verifier, now);
    switch (out->verdict) {
    case IDENT_AUTHCODE_OK:
        break;
    case IDENT_AUTHCODE_REPLAYED:
        if (grant_id[0] != '\0') {
            out->grant_id = grant_id;
            res = revoke_grant(ctx, grant_id, "code_replayed", now, &out->revoke, &out->nrevoke);
        }
        return finish(ctx, "redeem code (replayed)", res);
    case IDENT_AUTHCODE_EXPIRED:
        res = exec(ctx, "delete expired code", "DELETE FROM identity.oidc_codes WHERE code_hash = $1::bytea", 1, params);
        return finish(ctx, "redeem code (expired)", res);
    case IDENT_AUTHCODE_WRONG_REDIRECT:
    case IDENT_AUTHCODE_WRONG_VERIFIER:
        /* Single use: a code presented wrongly is spent. */
        res = exec(ctx, "use code", "UPDATE identity.oidc_codes SET used_at = now() WHERE code_hash = $1::bytea", 1, params);
        return finish(ctx, "redeem code (refused)", res);
    default:
        kr_pg_rollback(ctx->pg); /* another client's code stays as it was */
        return IDENT_STORE_OK;
    }

    kr_uuid_str gid;
    kr_uuid7_new(&gid);
    out->issued.grant_id = kr_arena_strdup(ctx->arena, gid.s);
    bool refresh = refresh_ttl_s > 0 && scope_has(c->scope, "offline_access");
    /* PostgreSQL is told a family may refresh until twice its token's
     * lifetime; a rotation past that moves it on (docs/oidc.md). */
    int64_t pg_until = now + 2 * refresh_ttl_s;
    char auth_time[24], until[24];
    int_text(c->auth_time, auth_time);
    int_text(pg_until, until);
    const char *grant[] = {gid.s, c->client_id, c->user_id, c->scope, c->session_id, auth_time, refresh ? until : NULL};
    res = exec(ctx, "insert grant",
               "INSERT INTO identity.oidc_grants (id, client_id, user_id, scope, session_id, auth_time, refresh_until) "
               "VALUES ($1, $2, $3, $4, $5, $6::bigint, to_timestamp($7::bigint))",
               7, grant);
    if (res == IDENT_STORE_OK) {
        const char *use[] = {hex, gid.s};
        res = exec(ctx, "use code for grant",
                   "UPDATE identity.oidc_codes SET used_at = now(), grant_id = $2 WHERE code_hash = $1::bytea", 2, use);
    }
    if (res == IDENT_STORE_OK)
        res = record_access(ctx, gid.s, now, access_ttl_s, &out->issued);
    if (res == IDENT_STORE_OK && refresh)
        res = start_family(ctx, out->issued.grant_id, c, now, refresh_ttl_s, pg_until, &out->issued);
    return finish(ctx, "redeem code", res);
}

/* --------------------------------------------------------- refresh tokens */

ident_store_result ident_store_revoke_grant(kr_rpc_ctx *ctx, const char *grant_id, const char *reason, int64_t now,
                                            ident_live_jti **revoke, size_t *nrevoke)
{
    *revoke = NULL;
    *nrevoke = 0;
    return revoke_grant(ctx, grant_id, reason, now, revoke, nrevoke);
}

ident_store_result ident_store_redis_pending(kr_rpc_ctx *ctx, const char *grant_id, bool pending)
{
    const char *params[] = {grant_id, pending ? "t" : "f"};
    return exec(ctx, "mark grant redis pending", "UPDATE identity.oidc_grants SET redis_pending = $2::boolean WHERE id = $1", 2,
                params);
}

ident_store_result ident_store_list_redis_pending(kr_rpc_ctx *ctx, int limit, const char ***grant_ids, const char ***reasons,
                                                  size_t *n)
{
    *n = 0;
    char lim[24];
    int_text(limit, lim);
    const char *params[] = {lim};
    PGresult *r;
    ident_store_result res = run(ctx, "select grants redis pending",
                                 "SELECT g.id::text, coalesce(g.revoked_reason, 'revoked') FROM identity.oidc_grants g "
                                 "WHERE g.redis_pending LIMIT $1::int",
                                 1, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    int rows = PQntuples(r);
    *grant_ids = kr_arena_alloc(ctx->arena, sizeof(char *) * (size_t)(rows ? rows : 1));
    *reasons = kr_arena_alloc(ctx->arena, sizeof(char *) * (size_t)(rows ? rows : 1));
    for (int i = 0; i < rows; i++) {
        (*grant_ids)[i] = col(ctx, r, i, 0);
        (*reasons)[i] = col(ctx, r, i, 1);
    }
    *n = (size_t)rows;
    PQclear(r);
    return IDENT_STORE_OK;
}

ident_store_result ident_store_extend_grant(kr_rpc_ctx *ctx, const char *grant_id, int64_t until)
{
    char untilbuf[24];
    int_text(until, untilbuf);
    const char *params[] = {grant_id, untilbuf};
    return exec(ctx, "extend grant",
                "UPDATE identity.oidc_grants SET refresh_until = greatest(refresh_until, to_timestamp($2::bigint)) WHERE id = $1",
                2, params);
}

/* ----------------------------------------------------------------- claims */

/* The school entry of the school in row `row` (id, name, kennung from
 * column `c`) in the list, added when missing. */
static Kreide__Identity__ClaimSchool *school_entry(kr_rpc_ctx *ctx, Kreide__Identity__UserClaims *out, const PGresult *r, int row,
                                                   int c, size_t cap)
{
    const char *id = PQgetvalue(r, row, c);
    for (size_t i = 0; i < out->n_schools; i++)
        if (strcmp(out->schools[i]->school_id, id) == 0)
            return out->schools[i];
    if (out->n_schools == cap)
        return NULL;
    Kreide__Identity__ClaimSchool *s = kr_arena_alloc(ctx->arena, sizeof(*s));
    kreide__identity__claim_school__init(s);
    s->school_id = col(ctx, r, row, c);
    s->name = col(ctx, r, row, c + 1);
    s->kennung = col(ctx, r, row, c + 2);
    /* A person holds at most the six roles at one school. */
    s->roles = kr_arena_alloc(ctx->arena, sizeof(char *) * 6);
    s->schulconnex_roles = kr_arena_alloc(ctx->arena, sizeof(char *) * 6);
    out->schools[out->n_schools++] = s;
    return s;
}

/* Row kinds of the claims statement, in the order they come (groups, 2,
 * last). */
enum { CLAIM_USER = 0, CLAIM_SCHOOL = 1 };

/* The person, their roles at schools and their groups of memberships valid
 * today, in one statement: column 0 tells the kind of row, columns 2..6
 * carry it (user: id, user name, given, family and display name; school:
 * id, name, kennung, role, Schulconnex role; group: school id, group id,
 * name, kind, role); the rest only orders. */
static const char claims_sql[] =
    "SELECT 0 AS k, NULL::uuid AS ks, u.id::text, u.username::text, u.given_name::text, u.family_name::text, "
    "u.display_name::text, NULL::text AS o1, NULL::uuid AS o2 FROM identity.users u WHERE u.id = $1 "
    "UNION ALL SELECT 1, pc.school_id, pc.school_id::text, s.name::text, coalesce(s.kennung, '')::text, pc.role::text, "
    "pc.schulconnex_role::text, pc.role::text, NULL FROM identity.person_contexts pc "
    "JOIN identity.schools s ON s.id = pc.school_id WHERE pc.user_id = $1 "
    "UNION ALL SELECT 2, m.school_id, m.school_id::text, g.id::text, g.name::text, g.kind::text, m.role::text, g.name::text, g.id "
    "FROM identity.memberships m JOIN identity.groups g ON g.school_id = m.school_id AND g.id = m.group_id WHERE m.user_id = $1 "
    "AND (m.valid_from IS NULL OR m.valid_from <= current_date) AND (m.valid_to IS NULL OR m.valid_to >= current_date) "
    "ORDER BY 1, 2, 8, 9";

/* claims_sql for a refresh: the person's row comes only with the grant
 * $2 of client $3 and says besides whether the grant was revoked, whether
 * the client may still refresh, its ID token algorithm and the next
 * midnight (columns 9 to 12), so that a refresh asks PostgreSQL one
 * question. */
static const char grant_claims_sql[] =
    "SELECT 0 AS k, NULL::uuid AS ks, u.id::text, u.username::text, u.given_name::text, u.family_name::text, "
    "u.display_name::text, NULL::text AS o1, NULL::uuid AS o2, (g.revoked_at IS NOT NULL)::text, "
    "(c.disabled_at IS NULL AND 'refresh_token' = ANY (c.grant_types))::text, c.id_token_alg::text, "
    "floor(extract(epoch FROM (current_date + 1)::timestamptz))::bigint "
    "FROM identity.oidc_grants g JOIN identity.users u ON u.id = g.user_id JOIN identity.oidc_clients c ON c.id = g.client_id "
    "WHERE g.id = $2 AND g.client_id = $3 AND g.user_id = $1 "
    "UNION ALL SELECT 1, pc.school_id, pc.school_id::text, s.name::text, coalesce(s.kennung, '')::text, pc.role::text, "
    "pc.schulconnex_role::text, pc.role::text, NULL, NULL, NULL, NULL, NULL FROM identity.person_contexts pc "
    "JOIN identity.schools s ON s.id = pc.school_id WHERE pc.user_id = $1 "
    "UNION ALL SELECT 2, m.school_id, m.school_id::text, g.id::text, g.name::text, g.kind::text, m.role::text, g.name::text, g.id, "
    "NULL, NULL, NULL, NULL "
    "FROM identity.memberships m JOIN identity.groups g ON g.school_id = m.school_id AND g.id = m.group_id WHERE m.user_id = $1 "
    "AND (m.valid_from IS NULL OR m.valid_from <= current_date) AND (m.valid_to IS NULL OR m.valid_to >= current_date) "
    "ORDER BY 1, 2, 8, 9";

static ident_store_result claims_of(kr_rpc_ctx *ctx, PGresult *r, bool names, bool schools, Kreide__Identity__UserClaims *out);

ident_store_result ident_store_grant_claims(kr_rpc_ctx *ctx, const char *grant_id, const char *client_id, const char *user_id,
                                            bool names, Kreide__Identity__UserClaims *out, ident_grant_state *state)
{
    const char *params[] = {user_id, grant_id, client_id};
    PGresult *r;
    ident_store_result res = run(ctx, "select grant claims", grant_claims_sql, 3, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    if (PQntuples(r) == 0 || col_int(r, 0, 0) != CLAIM_USER) {
        PQclear(r);
        return IDENT_STORE_NOT_FOUND;
    }
    state->revoked = PQgetvalue(r, 0, 9)[0] == 't';
    state->client_ok = PQgetvalue(r, 0, 10)[0] == 't';
    state->id_token_alg = col(ctx, r, 0, 11);
    state->next_midnight = col_int(r, 0, 12);
    return claims_of(ctx, r, names, true, out);
}

ident_store_result ident_store_user_claims(kr_rpc_ctx *ctx, const char *user_id, bool names, bool schools,
                                           Kreide__Identity__UserClaims *out)
{
    const char *params[] = {user_id};
    PGresult *r;
    ident_store_result res =
        schools ? run(ctx, "select claims", claims_sql, 1, params, &r)
                : run(ctx, "select claim user",
                      "SELECT 0, NULL, u.id::text, u.username, u.given_name, u.family_name, u.display_name FROM identity.users u "
                      "WHERE u.id = $1",
                      1, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    return claims_of(ctx, r, names, schools, out);
}

/* Reads the rows of claims_sql (or its variants) into `out`; clears `r`. */
static ident_store_result claims_of(kr_rpc_ctx *ctx, PGresult *r, bool names, bool schools, Kreide__Identity__UserClaims *out)
{
    int rows = PQntuples(r);
    if (rows == 0 || col_int(r, 0, 0) != CLAIM_USER) {
        PQclear(r);
        return IDENT_STORE_NOT_FOUND;
    }
    out->sub = col(ctx, r, 0, 2);
    if (names) {
        out->preferred_username = col(ctx, r, 0, 3);
        out->given_name = col(ctx, r, 0, 4);
        out->family_name = col(ctx, r, 0, 5);
        out->name = col(ctx, r, 0, 6);
    }
    if (!schools) {
        PQclear(r);
        return IDENT_STORE_OK;
    }
    int first_group = 1;
    while (first_group < rows && col_int(r, first_group, 0) == CLAIM_SCHOOL)
        first_group++;
    size_t cap = (size_t)(first_group > 1 ? first_group - 1 : 1);
    out->schools = kr_arena_alloc(ctx->arena, sizeof(*out->schools) * cap);
    out->n_schools = 0;
    for (int i = 1; i < first_group; i++) {
        Kreide__Identity__ClaimSchool *s = school_entry(ctx, out, r, i, 2, cap);
        if (s != NULL && s->n_roles < 6) {
            s->roles[s->n_roles++] = col(ctx, r, i, 5);
            s->schulconnex_roles[s->n_schulconnex_roles++] = col(ctx, r, i, 6);
        }
    }
    /* Groups only at schools listed above. */
    for (size_t k = 0; k < out->n_schools; k++) {
        Kreide__Identity__ClaimSchool *s = out->schools[k];
        size_t n = 0;
        for (int i = first_group; i < rows; i++)
            n += strcmp(PQgetvalue(r, i, 2), s->school_id) == 0;
        s->groups = kr_arena_alloc(ctx->arena, sizeof(*s->groups) * (n ? n : 1));
        for (int i = first_group; i < rows; i++) {
            if (strcmp(PQgetvalue(r, i, 2), s->school_id) != 0)
                continue;
            Kreide__Identity__ClaimGroup *g = kr_arena_alloc(ctx->arena, sizeof(*g));
            kreide__identity__claim_group__init(g);
            g->group_id = col(ctx, r, i, 3);
            g->name = col(ctx, r, i, 4);
            g->kind = col(ctx, r, i, 5);
            g->role = col(ctx, r, i, 6);
            s->groups[s->n_groups++] = g;
        }
    }
    PQclear(r);
    return IDENT_STORE_OK;
}

/* ---------------------------------------------------------------- cleanup */

ident_store_result ident_store_flow_cleanup(kr_rpc_ctx *ctx, int limit)
{
    char lim[24];
    int_text(limit, lim);
    const char *params[] = {lim};
    /* Used codes stay while their grant lives, so a late replay still
     * revokes it. A grant whose family may still refresh (refresh_until,
     * moved on by rotations in Redis) stays, so that its revocation stays
     * on record. */
    static const struct {
        const char *what, *sql;
    } steps[] = {
        {"cleanup codes", "DELETE FROM identity.oidc_codes WHERE code_hash IN (SELECT code_hash FROM identity.oidc_codes "
                          "WHERE expires_at < now() AND grant_id IS NULL LIMIT $1::int FOR UPDATE SKIP LOCKED)"},
        {"cleanup access tokens",
         "DELETE FROM identity.oidc_access_tokens WHERE jti IN (SELECT jti FROM identity.oidc_access_tokens "
         "WHERE expires_at < now() LIMIT $1::int FOR UPDATE SKIP LOCKED)"},
        {"cleanup grants", "DELETE FROM identity.oidc_grants WHERE id IN (SELECT g.id FROM identity.oidc_grants g "
                           "WHERE g.created_at < now() - interval '1 minute' "
                           "AND (g.refresh_until IS NULL OR g.refresh_until < now()) "
                           "AND NOT EXISTS (SELECT 1 FROM identity.oidc_access_tokens a WHERE a.grant_id = g.id) "
                           "LIMIT $1::int FOR UPDATE SKIP LOCKED)"},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        ident_store_result res = exec(ctx, steps[i].what, steps[i].sql, 1, params);
        if (res != IDENT_STORE_OK)
            return res;
    }
    return IDENT_STORE_OK;
}
