/* Every SQL statement of the identity service. All statements are
 * parameterised; ids reaching here are validated UUIDs. Every statement on a
 * school's rows names that school. */
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "kr_id.h"
#include "kr_log.h"
#include "kr_pg.h"

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define DATE(col) "coalesce(to_char(" col ", 'YYYY-MM-DD'), '')"

#define SCHOOL_COLUMNS "id::text, name, coalesce(kennung, ''), kind, " TS("created_at") ", coalesce(carrier_id::text, '')"
#define USER_COLUMNS "u.id::text, u.username, u.given_name, u.family_name, u.display_name, " TS("u.created_at")
#define CONTEXT_COLUMNS "pc.user_id::text, pc.school_id::text, pc.role, pc.schulconnex_role, " TS("pc.created_at")
#define GROUP_COLUMNS "g.id::text, g.school_id::text, g.kind, g.name, g.school_year, " TS("g.created_at")
#define MEMBERSHIP_COLUMNS                                                                                                         \
    "m.group_id::text, m.school_id::text, m.user_id::text, m.role, " DATE("m.valid_from") ", " DATE("m.valid_to") ", " TS(         \
        "m.created_at")

/* A membership counts today when today lies within its validity. */
#define VALID_TODAY(m)                                                                                                             \
    "(" m ".valid_from IS NULL OR " m ".valid_from <= current_date) AND (" m ".valid_to IS NULL OR " m ".valid_to >= "             \
    "current_date)"

static char *col(kr_rpc_ctx *ctx, const PGresult *r, int row, int c)
{
    return kr_arena_strdup(ctx->arena, PQgetvalue(r, row, c));
}

static ident_store_result failed(kr_rpc_ctx *ctx, const char *what, const char *err)
{
    const char *state = kr_pg_sqlstate(ctx->pg);
    if (strcmp(state, "23505") == 0)
        return IDENT_STORE_CONFLICT;
    if (strcmp(state, "23503") == 0)
        return IDENT_STORE_NOT_FOUND; /* a referenced row is missing */
    kr_log(KR_LOG_ERROR, "database statement failed", "statement", what, "error", err, "sqlstate", state, NULL);
    return IDENT_STORE_ERROR;
}

/* Runs one statement; on success *out holds the result to PQclear. */
static ident_store_result run(kr_rpc_ctx *ctx, const char *what, const char *sql, int n, const char *const *params, PGresult **out)
{
    char err[256];
    *out = kr_pg_exec(ctx->pg, sql, n, params, err, sizeof(err));
    return *out == NULL ? failed(ctx, what, err) : IDENT_STORE_OK;
}

static void *alloc_list(kr_rpc_ctx *ctx, size_t n, size_t elem)
{
    return kr_arena_alloc(ctx->arena, elem * (n ? n : 1));
}

/* Rows beyond `limit` only tell that another page exists. */
static size_t page_rows(const PGresult *r, unsigned limit, bool *more)
{
    size_t rows = (size_t)PQntuples(r);
    *more = rows > limit;
    return *more ? limit : rows;
}

/* --------------------------------------------------------------- schools */

static void row_to_school(kr_rpc_ctx *ctx, const PGresult *r, int row, Kreide__Identity__School *s)
{
    kreide__identity__school__init(s);
    s->id = col(ctx, r, row, 0);
    s->name = col(ctx, r, row, 1);
    s->kennung = col(ctx, r, row, 2);
    s->kind = (Kreide__Identity__SchoolKind)strtol(PQgetvalue(r, row, 3), NULL, 10);
    s->created_at = col(ctx, r, row, 4);
    s->carrier_id = col(ctx, r, row, 5);
}

ident_store_result ident_store_create_school(kr_rpc_ctx *ctx, const char *name, const char *kennung,
                                             Kreide__Identity__SchoolKind kind, const char *carrier_id,
                                             Kreide__Identity__School *out)
{
    kr_uuid_str id;
    kr_uuid7_new(&id);
    char kindbuf[8];
    snprintf(kindbuf, sizeof(kindbuf), "%d", (int)kind);
    const char *params[] = {id.s, name, kennung[0] ? kennung : NULL, kindbuf, carrier_id[0] ? carrier_id : NULL};
    PGresult *r;
    ident_store_result res = run(ctx, "insert school",
                                 "INSERT INTO identity.schools (id, name, kennung, kind, carrier_id) VALUES ($1, $2, $3, $4, $5) "
                                 "RETURNING " SCHOOL_COLUMNS,
                                 5, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    row_to_school(ctx, r, 0, out);
    PQclear(r);
    return IDENT_STORE_OK;
}

ident_store_result ident_store_get_school(kr_rpc_ctx *ctx, const char *id, Kreide__Identity__School *out)
{
    const char *params[] = {id};
    PGresult *r;
    ident_store_result res =
        run(ctx, "select school", "SELECT " SCHOOL_COLUMNS " FROM identity.schools WHERE id = $1", 1, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    res = IDENT_STORE_NOT_FOUND;
    if (PQntuples(r) == 1) {
        row_to_school(ctx, r, 0, out);
        res = IDENT_STORE_OK;
    }
    PQclear(r);
    return res;
}

ident_store_result ident_store_school_ref(kr_rpc_ctx *ctx, const char *id, ident_school_ref *out)
{
    const char *params[] = {id};
    PGresult *r;
    ident_store_result res =
        run(ctx, "select school ref", "SELECT id::text, coalesce(carrier_id::text, '') FROM identity.schools WHERE id = $1", 1,
            params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    res = IDENT_STORE_NOT_FOUND;
    if (PQntuples(r) == 1) {
        out->id = col(ctx, r, 0, 0);
        out->carrier_id = col(ctx, r, 0, 1);
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
    PGresult *r;
    ident_store_result res = run(ctx, "list schools",
                                 "SELECT " SCHOOL_COLUMNS " FROM identity.schools "
                                 "WHERE starts_with(lower(name), lower($1)) AND ($2::uuid IS NULL OR id > $2::uuid) "
                                 "ORDER BY id LIMIT $3",
                                 3, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    size_t rows = page_rows(r, limit, more);
    Kreide__Identity__School **list = alloc_list(ctx, rows, sizeof(*list));
    for (size_t i = 0; i < rows; i++) {
        list[i] = kr_arena_alloc(ctx->arena, sizeof(**list));
        row_to_school(ctx, r, (int)i, list[i]);
    }
    PQclear(r);
    *out = list;
    *n = rows;
    return IDENT_STORE_OK;
}

/* -------------------------------------------------------------- carriers */

ident_store_result ident_store_create_carrier(kr_rpc_ctx *ctx, const char *name, Kreide__Identity__Carrier *out)
{
    kr_uuid_str id;
    kr_uuid7_new(&id);
    const char *params[] = {id.s, name};
    PGresult *r;
    ident_store_result res =
        run(ctx, "insert carrier",
            "INSERT INTO identity.carriers (id, name) VALUES ($1, $2) RETURNING id::text, name, " TS("created_at"), 2, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    kreide__identity__carrier__init(out);
    out->id = col(ctx, r, 0, 0);
    out->name = col(ctx, r, 0, 1);
    out->created_at = col(ctx, r, 0, 2);
    PQclear(r);
    return IDENT_STORE_OK;
}

/* ----------------------------------------------------------------- users */

static void row_to_context(kr_rpc_ctx *ctx, const PGresult *r, int row, Kreide__Identity__PersonContext *pc)
{
    kreide__identity__person_context__init(pc);
    pc->user_id = col(ctx, r, row, 0);
    pc->school_id = col(ctx, r, row, 1);
    pc->role = ident_person_role_parse(PQgetvalue(r, row, 2));
    pc->schulconnex_role = col(ctx, r, row, 3);
    pc->created_at = col(ctx, r, row, 4);
}

static void row_to_user(kr_rpc_ctx *ctx, const PGresult *r, int row, Kreide__Identity__User *u)
{
    kreide__identity__user__init(u);
    u->id = col(ctx, r, row, 0);
    u->username = col(ctx, r, row, 1);
    u->given_name = col(ctx, r, row, 2);
    u->family_name = col(ctx, r, row, 3);
    u->display_name = col(ctx, r, row, 4);
    u->created_at = col(ctx, r, row, 5);
}

static ident_store_result insert_context(kr_rpc_ctx *ctx, const char *school_id, const char *user_id, const char *role,
                                         const char *schulconnex, Kreide__Identity__PersonContext *out)
{
    const char *params[] = {school_id, user_id, role, schulconnex};
    PGresult *r;
    ident_store_result res = run(ctx, "insert person context",
                                 "INSERT INTO identity.person_contexts AS pc (school_id, user_id, role, schulconnex_role) "
                                 "VALUES ($1, $2, $3, $4) RETURNING " CONTEXT_COLUMNS,
                                 4, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    row_to_context(ctx, r, 0, out);
    PQclear(r);
    return IDENT_STORE_OK;
}

ident_store_result ident_store_create_user(kr_rpc_ctx *ctx, const Kreide__Identity__CreateUserRequest *in, const char *display_name,
                                           const char *const *schulconnex, Kreide__Identity__User *out, size_t *failed_context)
{
    kr_uuid_str id;
    kr_uuid7_new(&id);
    *failed_context = SIZE_MAX;
    if (kr_pg_begin(ctx->pg) != 0) {
        kr_log(KR_LOG_ERROR, "cannot begin a transaction", "error", kr_pg_errmsg(ctx->pg), NULL);
        kr_pg_rollback(ctx->pg);
        return IDENT_STORE_ERROR;
    }
    const char *params[] = {id.s, in->username, in->given_name, in->family_name, display_name};
    PGresult *r;
    ident_store_result res = run(ctx, "insert user",
                                 "INSERT INTO identity.users AS u (id, username, given_name, family_name, display_name) "
                                 "VALUES ($1, $2, $3, $4, $5) RETURNING " USER_COLUMNS,
                                 5, params, &r);
    if (res == IDENT_STORE_OK) {
        row_to_user(ctx, r, 0, out);
        PQclear(r);
        out->contexts = alloc_list(ctx, in->n_contexts, sizeof(*out->contexts));
        for (size_t i = 0; i < in->n_contexts && res == IDENT_STORE_OK; i++) {
            const Kreide__Identity__ContextGrant *g = in->contexts[i];
            Kreide__Identity__PersonContext *pc = kr_arena_alloc(ctx->arena, sizeof(*pc));
            res = insert_context(ctx, g->school_id, out->id, ident_person_role_name(g->role), schulconnex[i], pc);
            if (res == IDENT_STORE_OK)
                out->contexts[out->n_contexts++] = pc;
            else
                *failed_context = i;
        }
    }
    if (res == IDENT_STORE_OK && kr_pg_commit(ctx->pg) != 0) {
        kr_log(KR_LOG_ERROR, "commit failed", "statement", "create user", "error", kr_pg_errmsg(ctx->pg), NULL);
        res = IDENT_STORE_ERROR;
    }
    if (res != IDENT_STORE_OK)
        kr_pg_rollback(ctx->pg);
    return res;
}

ident_store_result ident_store_get_user(kr_rpc_ctx *ctx, const char *id, Kreide__Identity__User *out, ident_school_ref **schools)
{
    const char *params[] = {id};
    PGresult *r;
    ident_store_result res =
        run(ctx, "select user", "SELECT " USER_COLUMNS " FROM identity.users u WHERE u.id = $1", 1, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return IDENT_STORE_NOT_FOUND;
    }
    row_to_user(ctx, r, 0, out);
    PQclear(r);
    res = run(ctx, "select user contexts",
              "SELECT " CONTEXT_COLUMNS ", coalesce(s.carrier_id::text, '') FROM identity.person_contexts pc "
              "JOIN identity.schools s ON s.id = pc.school_id WHERE pc.user_id = $1 ORDER BY pc.school_id, pc.role",
              1, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    size_t rows = (size_t)PQntuples(r);
    out->contexts = alloc_list(ctx, rows, sizeof(*out->contexts));
    *schools = alloc_list(ctx, rows, sizeof(**schools));
    for (size_t i = 0; i < rows; i++) {
        out->contexts[i] = kr_arena_alloc(ctx->arena, sizeof(**out->contexts));
        row_to_context(ctx, r, (int)i, out->contexts[i]);
        (*schools)[i].id = out->contexts[i]->school_id;
        (*schools)[i].carrier_id = col(ctx, r, (int)i, 5);
    }
    out->n_contexts = rows;
    PQclear(r);
    return IDENT_STORE_OK;
}

ident_store_result ident_store_add_context(kr_rpc_ctx *ctx, const char *school_id, const char *user_id, const char *role,
                                           const char *schulconnex, Kreide__Identity__PersonContext *out)
{
    return insert_context(ctx, school_id, user_id, role, schulconnex, out);
}

/* ---------------------------------------------------------------- groups */

static void row_to_group(kr_rpc_ctx *ctx, const PGresult *r, int row, Kreide__Identity__Group *g)
{
    kreide__identity__group__init(g);
    g->id = col(ctx, r, row, 0);
    g->school_id = col(ctx, r, row, 1);
    g->kind = ident_group_kind_parse(PQgetvalue(r, row, 2));
    g->name = col(ctx, r, row, 3);
    g->school_year = col(ctx, r, row, 4);
    g->created_at = col(ctx, r, row, 5);
}

ident_store_result ident_store_create_group(kr_rpc_ctx *ctx, const char *school_id, const char *kind, const char *name,
                                            const char *school_year, Kreide__Identity__Group *out)
{
    kr_uuid_str id;
    kr_uuid7_new(&id);
    const char *params[] = {id.s, school_id, kind, name, school_year};
    PGresult *r;
    ident_store_result res = run(ctx, "insert group",
                                 "INSERT INTO identity.groups AS g (id, school_id, kind, name, school_year) "
                                 "VALUES ($1, $2, $3, $4, $5) RETURNING " GROUP_COLUMNS,
                                 5, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    row_to_group(ctx, r, 0, out);
    PQclear(r);
    return IDENT_STORE_OK;
}

ident_store_result ident_store_group_school(kr_rpc_ctx *ctx, const char *group_id, ident_school_ref *out)
{
    const char *params[] = {group_id};
    PGresult *r;
    ident_store_result res = run(ctx, "select group school",
                                 "SELECT g.school_id::text, coalesce(s.carrier_id::text, '') FROM identity.groups g "
                                 "JOIN identity.schools s ON s.id = g.school_id WHERE g.id = $1",
                                 1, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    res = IDENT_STORE_NOT_FOUND;
    if (PQntuples(r) == 1) {
        out->id = col(ctx, r, 0, 0);
        out->carrier_id = col(ctx, r, 0, 1);
        res = IDENT_STORE_OK;
    }
    PQclear(r);
    return res;
}

ident_store_result ident_store_list_groups(kr_rpc_ctx *ctx, const char *school_id, const char *school_year, const char *after_id,
                                           unsigned limit, Kreide__Identity__Group ***out, size_t *n, bool *more)
{
    char limbuf[16];
    snprintf(limbuf, sizeof(limbuf), "%u", limit + 1);
    const char *params[] = {school_id, school_year[0] ? school_year : NULL, after_id[0] ? after_id : NULL, limbuf};
    PGresult *r;
    ident_store_result res = run(ctx, "list groups",
                                 "SELECT " GROUP_COLUMNS " FROM identity.groups g WHERE g.school_id = $1 "
                                 "AND ($2::text IS NULL OR g.school_year = $2) AND ($3::uuid IS NULL OR g.id > $3::uuid) "
                                 "ORDER BY g.id LIMIT $4",
                                 4, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    size_t rows = page_rows(r, limit, more);
    Kreide__Identity__Group **list = alloc_list(ctx, rows, sizeof(*list));
    for (size_t i = 0; i < rows; i++) {
        list[i] = kr_arena_alloc(ctx->arena, sizeof(**list));
        row_to_group(ctx, r, (int)i, list[i]);
    }
    PQclear(r);
    *out = list;
    *n = rows;
    return IDENT_STORE_OK;
}

/* ----------------------------------------------------------- memberships */

ident_store_result ident_store_member_role(kr_rpc_ctx *ctx, const char *school_id, const char *group_id, const char *user_id,
                                           bool today_only, Kreide__Identity__MemberRole *role)
{
    const char *params[] = {school_id, group_id, user_id, today_only ? "true" : "false"};
    PGresult *r;
    ident_store_result res = run(ctx, "select member role",
                                 "SELECT m.role FROM identity.memberships m WHERE m.school_id = $1 AND m.group_id = $2 "
                                 "AND m.user_id = $3 AND (NOT $4::bool OR (" VALID_TODAY("m") "))",
                                 4, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    res = IDENT_STORE_NOT_FOUND;
    if (PQntuples(r) == 1) {
        *role = ident_member_role_parse(PQgetvalue(r, 0, 0));
        res = IDENT_STORE_OK;
    }
    PQclear(r);
    return res;
}

static void row_to_membership(kr_rpc_ctx *ctx, const PGresult *r, int row, Kreide__Identity__Membership *m)
{
    kreide__identity__membership__init(m);
    m->group_id = col(ctx, r, row, 0);
    m->school_id = col(ctx, r, row, 1);
    m->user_id = col(ctx, r, row, 2);
    m->role = ident_member_role_parse(PQgetvalue(r, row, 3));
    m->valid_from = col(ctx, r, row, 4);
    m->valid_to = col(ctx, r, row, 5);
    m->created_at = col(ctx, r, row, 6);
}

ident_store_result ident_store_add_member(kr_rpc_ctx *ctx, const char *school_id, const char *group_id, const char *user_id,
                                          const char *role, const char *valid_from, const char *valid_to,
                                          Kreide__Identity__Membership *out)
{
    const char *params[] = {school_id, group_id, user_id, role, valid_from[0] ? valid_from : NULL, valid_to[0] ? valid_to : NULL};
    PGresult *r;
    /* Only people with a context at the group's school can join it. */
    ident_store_result res = run(ctx, "insert membership",
                                 "INSERT INTO identity.memberships AS m (school_id, group_id, user_id, role, valid_from, valid_to) "
                                 "SELECT $1, $2, $3, $4, $5::date, $6::date WHERE EXISTS "
                                 "(SELECT 1 FROM identity.person_contexts pc WHERE pc.school_id = $1 AND pc.user_id = $3) "
                                 "RETURNING " MEMBERSHIP_COLUMNS,
                                 6, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    res = IDENT_STORE_PRECONDITION;
    if (PQntuples(r) == 1) {
        row_to_membership(ctx, r, 0, out);
        res = IDENT_STORE_OK;
    }
    PQclear(r);
    return res;
}

ident_store_result ident_store_remove_member(kr_rpc_ctx *ctx, const char *school_id, const char *group_id, const char *user_id,
                                             Kreide__Identity__MemberRole *removed_role)
{
    const char *params[] = {school_id, group_id, user_id};
    PGresult *r;
    ident_store_result res = run(ctx, "delete membership",
                                 "DELETE FROM identity.memberships WHERE school_id = $1 AND group_id = $2 AND user_id = $3 "
                                 "RETURNING role",
                                 3, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    res = IDENT_STORE_NOT_FOUND;
    if (PQntuples(r) == 1) {
        *removed_role = ident_member_role_parse(PQgetvalue(r, 0, 0));
        res = IDENT_STORE_OK;
    }
    PQclear(r);
    return res;
}

ident_store_result ident_store_list_members(kr_rpc_ctx *ctx, const char *school_id, const char *group_id, const char *after_id,
                                            unsigned limit, Kreide__Identity__Member ***out, size_t *n, bool *more)
{
    char limbuf[16];
    snprintf(limbuf, sizeof(limbuf), "%u", limit + 1);
    const char *params[] = {school_id, group_id, after_id[0] ? after_id : NULL, limbuf};
    PGresult *r;
    ident_store_result res = run(ctx, "list members",
                                 "SELECT u.id::text, u.username, u.given_name, u.family_name, u.display_name, m.role, " DATE(
                                     "m.valid_from") ", " DATE("m.valid_to") " FROM identity.memberships m "
                                                                             "JOIN identity.users u ON u.id = m.user_id "
                                                                             "WHERE m.school_id = $1 AND m.group_id = $2 "
                                                                             "AND ($3::uuid IS NULL OR m.user_id > $3::uuid) "
                                                                             "ORDER BY m.user_id LIMIT $4",
                                 4, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    size_t rows = page_rows(r, limit, more);
    Kreide__Identity__Member **list = alloc_list(ctx, rows, sizeof(*list));
    for (size_t i = 0; i < rows; i++) {
        Kreide__Identity__Member *m = kr_arena_alloc(ctx->arena, sizeof(*m));
        kreide__identity__member__init(m);
        m->user_id = col(ctx, r, (int)i, 0);
        m->username = col(ctx, r, (int)i, 1);
        m->given_name = col(ctx, r, (int)i, 2);
        m->family_name = col(ctx, r, (int)i, 3);
        m->display_name = col(ctx, r, (int)i, 4);
        m->role = ident_member_role_parse(PQgetvalue(r, (int)i, 5));
        m->valid_from = col(ctx, r, (int)i, 6);
        m->valid_to = col(ctx, r, (int)i, 7);
        list[i] = m;
    }
    PQclear(r);
    *out = list;
    *n = rows;
    return IDENT_STORE_OK;
}

/* --------------------------------------------------------- guardianships */

ident_store_result ident_store_add_guardianship(kr_rpc_ctx *ctx, const char *school_id, const char *parent_id, const char *child_id,
                                                Kreide__Identity__Guardianship *out)
{
    const char *params[] = {school_id, parent_id, child_id};
    PGresult *r;
    /* A guardianship links a parent and a pupil of the same school. */
    ident_store_result res =
        run(ctx, "insert guardianship",
            "INSERT INTO identity.guardianships (school_id, parent_id, child_id) SELECT $1, $2, $3 "
            "WHERE EXISTS (SELECT 1 FROM identity.person_contexts WHERE school_id = $1 AND user_id = $2 AND role = 'parent') "
            "AND EXISTS (SELECT 1 FROM identity.person_contexts WHERE school_id = $1 AND user_id = $3 AND role = 'pupil') "
            "RETURNING school_id::text, parent_id::text, child_id::text, " TS("created_at"),
            3, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    res = IDENT_STORE_PRECONDITION;
    if (PQntuples(r) == 1) {
        kreide__identity__guardianship__init(out);
        out->school_id = col(ctx, r, 0, 0);
        out->parent_id = col(ctx, r, 0, 1);
        out->child_id = col(ctx, r, 0, 2);
        out->created_at = col(ctx, r, 0, 3);
        res = IDENT_STORE_OK;
    }
    PQclear(r);
    return res;
}

/* ------------------------------------------------------------- directory */

/* Who is visible, by the scope's three switches ($3, $4, $5) relative to the
 * caller $6: everyone with a context at school $1; people sharing a group
 * with the caller; leaders of the caller's children's groups and the staff.
 * Then the name prefix $2 and keyset paging by (family, given, id) after the
 * user $7. */
static const char search_sql[] =
    "WITH visible AS ("
    " SELECT pc.user_id FROM identity.person_contexts pc WHERE pc.school_id = $1 AND $3::bool"
    " UNION SELECT peer.user_id FROM identity.memberships mine"
    "  JOIN identity.memberships peer ON peer.group_id = mine.group_id AND peer.school_id = $1"
    "  WHERE $4::bool AND mine.school_id = $1 AND mine.user_id = $6::uuid AND " VALID_TODAY("mine") " AND " VALID_TODAY(
        "peer") " UNION SELECT lead.user_id FROM identity.guardianships gd"
                "  JOIN identity.memberships child ON child.school_id = $1 AND child.user_id = gd.child_id"
                "  JOIN identity.memberships lead ON lead.group_id = child.group_id AND lead.school_id = $1 AND lead.role = "
                "'leader'"
                "  WHERE $5::bool AND gd.school_id = $1 AND gd.parent_id = $6::uuid AND " VALID_TODAY("child") " AND " VALID_TODAY(
                    "lead") " UNION SELECT pc.user_id FROM identity.person_contexts pc WHERE $5::bool AND pc.school_id = $1 AND "
                            "pc.role = 'staff'"
                            "), after AS (SELECT lower(family_name) AS f, lower(given_name) AS g, id FROM identity.users WHERE id "
                            "= $7::uuid) "
                            "SELECT u.id::text, u.username, u.given_name, u.family_name, u.display_name,"
                            " (SELECT string_agg(pc.role, ',' ORDER BY pc.role) FROM identity.person_contexts pc"
                            "   WHERE pc.school_id = $1 AND pc.user_id = u.id) "
                            "FROM identity.users u JOIN visible v ON v.user_id = u.id "
                            "WHERE EXISTS (SELECT 1 FROM identity.person_contexts pc WHERE pc.school_id = $1 AND pc.user_id = u.id)"
                            " AND (starts_with(lower(u.given_name), lower($2)) OR starts_with(lower(u.family_name), lower($2))"
                            "      OR starts_with(u.username, lower($2)))"
                            " AND ($7::uuid IS NULL OR (lower(u.family_name), lower(u.given_name), u.id) > (SELECT f, g, id FROM "
                            "after)) "
                            "ORDER BY lower(u.family_name), lower(u.given_name), u.id LIMIT $8";

ident_store_result ident_store_search(kr_rpc_ctx *ctx, const char *school_id, const char *prefix, ident_directory_scope scope,
                                      const char *caller_id, const char *after_id, unsigned limit,
                                      Kreide__Identity__DirectoryEntry ***out, size_t *n, bool *more)
{
    char limbuf[16];
    snprintf(limbuf, sizeof(limbuf), "%u", limit + 1);
    const char *params[] = {
        school_id,
        prefix,
        scope.whole_school ? "true" : "false",
        scope.classmates_and_teachers ? "true" : "false",
        scope.childrens_teachers_and_staff ? "true" : "false",
        kr_uuid_valid(caller_id) ? caller_id : NULL,
        after_id[0] ? after_id : NULL,
        limbuf,
    };
    PGresult *r;
    ident_store_result res = run(ctx, "search directory", search_sql, 8, params, &r);
    if (res != IDENT_STORE_OK)
        return res;
    size_t rows = page_rows(r, limit, more);
    Kreide__Identity__DirectoryEntry **list = alloc_list(ctx, rows, sizeof(*list));
    for (size_t i = 0; i < rows; i++) {
        Kreide__Identity__DirectoryEntry *e = kr_arena_alloc(ctx->arena, sizeof(*e));
        kreide__identity__directory_entry__init(e);
        e->user_id = col(ctx, r, (int)i, 0);
        e->username = col(ctx, r, (int)i, 1);
        e->given_name = col(ctx, r, (int)i, 2);
        e->family_name = col(ctx, r, (int)i, 3);
        e->display_name = col(ctx, r, (int)i, 4);
        char *roles = col(ctx, r, (int)i, 5);
        size_t cap = 1;
        for (const char *p = roles; *p; p++)
            cap += *p == ',';
        e->roles = alloc_list(ctx, cap, sizeof(*e->roles));
        char *save = NULL;
        for (char *t = strtok_r(roles, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
            e->roles[e->n_roles++] = ident_person_role_parse(t);
        list[i] = e;
    }
    PQclear(r);
    *out = list;
    *n = rows;
    return IDENT_STORE_OK;
}
