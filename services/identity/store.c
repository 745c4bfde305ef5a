/* Every SQL statement of the identity service. All statements are
 * parameterised; ids reaching here are validated UUIDs. */
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "kr_id.h"
#include "kr_log.h"
#include "kr_pg.h"

#define SCHOOL_COLUMNS                                                                                                             \
    "id::text, name, coalesce(kennung, ''), kind, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static void row_to_school(kr_rpc_ctx *ctx, const PGresult *r, int row, Kreide__Identity__School *s)
{
    kreide__identity__school__init(s);
    s->id = kr_arena_strdup(ctx->arena, PQgetvalue(r, row, 0));
    s->name = kr_arena_strdup(ctx->arena, PQgetvalue(r, row, 1));
    s->kennung = kr_arena_strdup(ctx->arena, PQgetvalue(r, row, 2));
    s->kind = (Kreide__Identity__SchoolKind)strtol(PQgetvalue(r, row, 3), NULL, 10);
    s->created_at = kr_arena_strdup(ctx->arena, PQgetvalue(r, row, 4));
}

static ident_store_result failed(kr_rpc_ctx *ctx, const char *what, const char *err)
{
    if (strcmp(kr_pg_sqlstate(ctx->pg), "23505") == 0)
        return IDENT_STORE_CONFLICT;
    kr_log(KR_LOG_ERROR, "database statement failed", "statement", what, "error", err, "sqlstate", kr_pg_sqlstate(ctx->pg), NULL);
    return IDENT_STORE_ERROR;
}

ident_store_result ident_store_create_school(kr_rpc_ctx *ctx, const char *name, const char *kennung,
                                             Kreide__Identity__SchoolKind kind, Kreide__Identity__School *out)
{
    kr_uuid_str id;
    kr_uuid7_new(&id);
    char kindbuf[8];
    snprintf(kindbuf, sizeof(kindbuf), "%d", (int)kind);
    const char *params[] = {id.s, name, kennung[0] ? kennung : NULL, kindbuf};
    char err[256];
    PGresult *r = kr_pg_exec(ctx->pg,
                             "INSERT INTO identity.schools (id, name, kennung, kind) VALUES ($1, $2, $3, $4) "
                             "RETURNING " SCHOOL_COLUMNS,
                             4, params, err, sizeof(err));
    if (r == NULL)
        return failed(ctx, "insert school", err);
    row_to_school(ctx, r, 0, out);
    PQclear(r);
    return IDENT_STORE_OK;
}

ident_store_result ident_store_get_school(kr_rpc_ctx *ctx, const char *id, Kreide__Identity__School *out)
{
    const char *params[] = {id};
    char err[256];
    PGresult *r = kr_pg_exec(ctx->pg, "SELECT " SCHOOL_COLUMNS " FROM identity.schools WHERE id = $1", 1, params, err, sizeof(err));
    if (r == NULL)
        return failed(ctx, "select school", err);
    ident_store_result res = IDENT_STORE_NOT_FOUND;
    if (PQntuples(r) == 1) {
        row_to_school(ctx, r, 0, out);
        res = IDENT_STORE_OK;
    }
    PQclear(r);
    return res;
}

ident_store_result ident_store_list_schools(kr_rpc_ctx *ctx, const char *prefix, const char *after_id, unsigned limit,
                                            Kreide__Identity__School ***out, size_t *n, bool *more)
{
    char limbuf[16];
    snprintf(limbuf, sizeof(limbuf), "%u", limit + 1);
    const char *params[] = {prefix, after_id[0] ? after_id : NULL, limbuf};
    char err[256];
    PGresult *r = kr_pg_exec(ctx->pg,
                             "SELECT " SCHOOL_COLUMNS " FROM identity.schools "
                             "WHERE starts_with(lower(name), lower($1)) AND ($2::uuid IS NULL OR id > $2::uuid) "
                             "ORDER BY id LIMIT $3",
                             3, params, err, sizeof(err));
    if (r == NULL)
        return failed(ctx, "list schools", err);
    size_t rows = (size_t)PQntuples(r);
    *more = rows > limit;
    if (*more)
        rows = limit;
    Kreide__Identity__School **list = kr_arena_alloc(ctx->arena, sizeof(*list) * (rows ? rows : 1));
    for (size_t i = 0; i < rows; i++) {
        list[i] = kr_arena_alloc(ctx->arena, sizeof(**list));
        row_to_school(ctx, r, (int)i, list[i]);
    }
    PQclear(r);
    *out = list;
    *n = rows;
    return IDENT_STORE_OK;
}
