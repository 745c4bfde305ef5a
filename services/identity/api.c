/* RPC handlers of the identity service: validate input, ask policy, store.
 *
 * Tenant separation: a request naming a school the caller has no standing at
 * is refused with PERMISSION_DENIED (schools are public records, so naming
 * one reveals nothing). A group or user addressed by id that lies outside
 * every school the caller may see answers NOT_FOUND, exactly as an id that
 * does not exist, so ids never confirm what the caller may not know. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "identity.h"
#include "kr_id.h"
#include "kr_log.h"

#define LIST_DEFAULT_LIMIT 50
#define LIST_MAX_LIMIT 500
#define MAX_CONTEXTS 32

static int store_failure(kr_rpc_ctx *ctx, ident_store_result r, const char *what)
{
    switch (r) {
    case IDENT_STORE_NOT_FOUND:
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", NULL, "no such %s", what);
    case IDENT_STORE_CONFLICT:
        return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "identity.conflict", NULL, "%s already exists", what);
    case IDENT_STORE_PRECONDITION:
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "identity.precondition", NULL, "the %s cannot be made", what);
    default:
        return kr_rpc_fail(ctx, KREIDE__STATUS__UNAVAILABLE, "identity.database", NULL, "the directory is temporarily unavailable");
    }
}

static int forbidden(kr_rpc_ctx *ctx, const char *why)
{
    return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "identity.forbidden", NULL, "%s", why);
}

static bool kennung_valid(const char *k)
{
    size_t len = strlen(k);
    if (len > 32)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!isalnum((unsigned char)k[i]) && k[i] != '_' && k[i] != '.' && k[i] != '-')
            return false;
    }
    return true;
}

static int check_uuid(kr_rpc_ctx *ctx, const char *id, const char *field)
{
    if (kr_uuid_valid(id))
        return 0;
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_id", field, "%s must be a UUID", field);
}

static int check_name(kr_rpc_ctx *ctx, const char *s, const char *field)
{
    long len = ident_text_length(s);
    if (len >= 1 && len <= 200)
        return 0;
    return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_name", field,
                       "%s must be 1 to 200 characters of text", field);
}

/* Reads the paging input: limit (default 50, at most 500) and a cursor that
 * must be an id this service returned. */
static int page_args(kr_rpc_ctx *ctx, const Kreide__PageRequest *page, unsigned *limit, const char **cursor)
{
    *limit = page && page->limit ? page->limit : LIST_DEFAULT_LIMIT;
    if (*limit > LIST_MAX_LIMIT)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_limit", "page.limit",
                           "page.limit must be at most %d", LIST_MAX_LIMIT);
    *cursor = page ? page->cursor : "";
    if ((*cursor)[0] != '\0' && !kr_uuid_valid(*cursor))
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_cursor", "page.cursor",
                           "page.cursor is not a cursor this service returned");
    return 0;
}

static Kreide__PageInfo *page_info(kr_rpc_ctx *ctx, bool more, const char *last_id)
{
    Kreide__PageInfo *p = kr_arena_alloc(ctx->arena, sizeof(*p));
    kreide__page_info__init(p);
    p->next_cursor = more ? (char *)last_id : "";
    return p;
}

/* Looks up the school a request names. */
static int school_for(kr_rpc_ctx *ctx, const char *school_id, const char *field, ident_school_ref *ref)
{
    if (check_uuid(ctx, school_id, field) != 0)
        return -1;
    ident_store_result r = ident_store_school_ref(ctx, school_id, ref);
    if (r == IDENT_STORE_NOT_FOUND)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", field, "no such school");
    return r == IDENT_STORE_OK ? 0 : store_failure(ctx, r, "school");
}

/* Looks up the school of a group addressed by id; a group at a school the
 * caller has no standing at does not exist for the caller. */
static int group_for(kr_rpc_ctx *ctx, const char *group_id, ident_school_ref *ref)
{
    if (check_uuid(ctx, group_id, "group_id") != 0)
        return -1;
    ident_store_result r = ident_store_group_school(ctx, group_id, ref);
    if (r == IDENT_STORE_NOT_FOUND || (r == IDENT_STORE_OK && !ident_has_school_access(ctx->caller, ref)))
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", "group_id", "no such group");
    return r == IDENT_STORE_OK ? 0 : store_failure(ctx, r, "group");
}

static void publish(kr_rpc_ctx *ctx, const ident_event *ev)
{
    const ident_app *app = ctx->app;
    if (app != NULL)
        ident_events_publish(app->events, ev);
}

/* After a change that can alter a person's claims committed: the claims
 * refresh token families carry are stale now (identity.h,
 * IDENT_CLAIMS_VERSION_KEY). A failure is logged; carried claims then live
 * at most IDENT_CLAIMS_MAX_AGE_S longer. */
static void claims_changed(kr_rpc_ctx *ctx)
{
    const ident_app *app = ctx->app;
    kr_redis *r = app != NULL && app->redis != NULL ? ident_redis_pool_get(app->redis) : NULL;
    if (r != NULL && ident_claims_changed(r) != IDENT_REDIS_OK)
        kr_log(KR_LOG_ERROR, "claims counter not moved; carried claims hold until they age out", NULL);
}

/* ------------------------------------------------------------- schools */

static int create_school(kr_rpc_ctx *ctx, const Kreide__Identity__CreateSchoolRequest *in, Kreide__Identity__School *out)
{
    if (in->carrier_id[0] != '\0' && check_uuid(ctx, in->carrier_id, "carrier_id") != 0)
        return -1;
    if (!ident_may_create_school(ctx->caller, in->carrier_id))
        return forbidden(ctx, "only operators and the carrier's admins may create schools");
    long len = ident_text_length(in->name);
    if (len < 1 || len > 200)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_name", "name",
                           "name must be 1 to 200 characters of text");
    if (!kennung_valid(in->kennung))
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_kennung", "kennung",
                           "kennung must be at most 32 letters, digits, '_', '.' or '-'");
    if (in->kind == KREIDE__IDENTITY__SCHOOL_KIND__SCHOOL_KIND_UNSPECIFIED || in->kind > KREIDE__IDENTITY__SCHOOL_KIND__COMMUNITY)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_kind", "kind",
                           "kind must be SCHOOL, KITA or COMMUNITY");
    ident_store_result r = ident_store_create_school(ctx, in->name, in->kennung, in->kind, in->carrier_id, out);
    if (r == IDENT_STORE_CONFLICT)
        return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "identity.kennung_taken", "kennung",
                           "a school with kennung '%s' already exists", in->kennung);
    if (r == IDENT_STORE_NOT_FOUND)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", "carrier_id", "no such carrier");
    if (r != IDENT_STORE_OK)
        return store_failure(ctx, r, "school");
    kr_log(KR_LOG_INFO, "school created", "school_id", out->id, "by", ctx->caller->user_id, NULL);
    return 0;
}

static int get_school(kr_rpc_ctx *ctx, const Kreide__Identity__GetSchoolRequest *in, Kreide__Identity__School *out)
{
    if (check_uuid(ctx, in->id, "id") != 0)
        return -1;
    ident_store_result r = ident_store_get_school(ctx, in->id, out);
    return r == IDENT_STORE_OK ? 0 : store_failure(ctx, r, "school");
}

static int list_schools(kr_rpc_ctx *ctx, const Kreide__Identity__ListSchoolsRequest *in, Kreide__Identity__ListSchoolsReply *out)
{
    if (!ident_may_list_schools(ctx->caller))
        return forbidden(ctx, "only operators may list all schools");
    unsigned limit = 0;
    const char *cursor = "";
    if (page_args(ctx, in->page, &limit, &cursor) != 0)
        return -1;
    if (ident_text_length(in->name_prefix) < 0 || strlen(in->name_prefix) > 200)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_prefix", "name_prefix",
                           "name_prefix must be at most 200 characters of text");
    bool more = false;
    ident_store_result r = ident_store_list_schools(ctx, in->name_prefix, cursor, limit, &out->schools, &out->n_schools, &more);
    if (r != IDENT_STORE_OK)
        return store_failure(ctx, r, "school");
    out->page = page_info(ctx, more, more ? out->schools[out->n_schools - 1]->id : "");
    return 0;
}

/* ------------------------------------------------------ carriers, people */

static int create_carrier(kr_rpc_ctx *ctx, const Kreide__Identity__CreateCarrierRequest *in, Kreide__Identity__Carrier *out)
{
    if (!ident_may_create_carrier(ctx->caller))
        return forbidden(ctx, "only operators may create carriers");
    if (check_name(ctx, in->name, "name") != 0)
        return -1;
    ident_store_result r = ident_store_create_carrier(ctx, in->name, out);
    if (r != IDENT_STORE_OK)
        return store_failure(ctx, r, "carrier");
    kr_log(KR_LOG_INFO, "carrier created", "carrier_id", out->id, "by", ctx->caller->user_id, NULL);
    return 0;
}

/* Checks a role and Schulconnex code; returns the code to store. */
static const char *context_code(kr_rpc_ctx *ctx, Kreide__Identity__PersonRole role, const char *code, const char *role_field,
                                const char *code_field)
{
    if (ident_person_role_name(role) == NULL) {
        kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_role", role_field,
                    "%s must be PUPIL, TEACHER, PARENT, STAFF, HEAD or SCHOOL_ADMIN", role_field);
        return NULL;
    }
    if (code[0] == '\0')
        return ident_schulconnex_default(role);
    if (!ident_schulconnex_valid(code)) {
        kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_schulconnex_role", code_field,
                    "%s must be Lern, Lehr, SorgBer, Leit, OrgAdmin or Extern", code_field);
        return NULL;
    }
    return code;
}

static int create_user(kr_rpc_ctx *ctx, const Kreide__Identity__CreateUserRequest *in, Kreide__Identity__User *out)
{
    bool is_operator = ident_is_operator(ctx->caller);
    if (in->n_contexts == 0 && !is_operator)
        return forbidden(ctx, "a user must be created with a context at a school the caller manages");
    if (in->n_contexts > MAX_CONTEXTS)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.too_many_contexts", "contexts",
                           "at most %d contexts at once", MAX_CONTEXTS);
    const char **codes = kr_arena_alloc(ctx->arena, sizeof(*codes) * (in->n_contexts ? in->n_contexts : 1));
    for (size_t i = 0; i < in->n_contexts; i++) {
        const Kreide__Identity__ContextGrant *g = in->contexts[i];
        char *field = kr_arena_printf(ctx->arena, "contexts[%zu].school_id", i);
        ident_school_ref school;
        if (school_for(ctx, g->school_id, field, &school) != 0)
            return -1;
        if (!ident_may_manage_school(ctx->caller, &school))
            return forbidden(ctx, "the caller does not manage every school of the new user's contexts");
        codes[i] = context_code(ctx, g->role, g->schulconnex_role, kr_arena_printf(ctx->arena, "contexts[%zu].role", i),
                                kr_arena_printf(ctx->arena, "contexts[%zu].schulconnex_role", i));
        if (codes[i] == NULL)
            return -1;
    }
    if (!ident_username_valid(in->username))
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_username", "username",
                           "username must be 3 to 64 of a-z, 0-9, '.', '_' and '-'");
    if (check_name(ctx, in->given_name, "given_name") != 0 || check_name(ctx, in->family_name, "family_name") != 0)
        return -1;
    const char *display =
        in->display_name[0] ? in->display_name : kr_arena_printf(ctx->arena, "%s %s", in->given_name, in->family_name);
    if (check_name(ctx, display, "display_name") != 0)
        return -1;
    size_t bad = SIZE_MAX;
    ident_store_result r = ident_store_create_user(ctx, in, display, codes, out, &bad);
    if (r == IDENT_STORE_CONFLICT && bad == SIZE_MAX)
        return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "identity.username_taken", "username", "the username '%s' is taken",
                           in->username);
    if (r == IDENT_STORE_CONFLICT)
        return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "identity.context_exists",
                           kr_arena_printf(ctx->arena, "contexts[%zu]", bad), "the same context is given twice");
    if (r != IDENT_STORE_OK)
        return store_failure(ctx, r, "user");
    kr_log(KR_LOG_INFO, "user created", "user_id", out->id, "by", ctx->caller->user_id, NULL);
    return 0;
}

/* Reads a user the caller may see: operators and the person see every
 * context; managers see the user when one of its contexts is at a school
 * they manage, and only those contexts. Anyone else: NOT_FOUND. */
static int visible_user(kr_rpc_ctx *ctx, const char *id, const char *field, Kreide__Identity__User *out)
{
    if (check_uuid(ctx, id, field) != 0)
        return -1;
    ident_school_ref *schools = NULL;
    ident_store_result r = ident_store_get_user(ctx, id, out, &schools);
    if (r != IDENT_STORE_OK && r != IDENT_STORE_NOT_FOUND)
        return store_failure(ctx, r, "user");
    if (r == IDENT_STORE_OK && (ident_is_operator(ctx->caller) || ident_is_self(ctx->caller, id)))
        return 0;
    size_t kept = 0;
    for (size_t i = 0; r == IDENT_STORE_OK && i < out->n_contexts; i++) {
        if (ident_may_manage_school(ctx->caller, &schools[i]))
            out->contexts[kept++] = out->contexts[i];
    }
    if (r == IDENT_STORE_NOT_FOUND || kept == 0)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", field, "no such user");
    out->n_contexts = kept;
    return 0;
}

static int get_user(kr_rpc_ctx *ctx, const Kreide__Identity__GetUserRequest *in, Kreide__Identity__User *out)
{
    return visible_user(ctx, in->id, "id", out);
}

static int add_person_context(kr_rpc_ctx *ctx, const Kreide__Identity__AddPersonContextRequest *in,
                              Kreide__Identity__PersonContext *out)
{
    ident_school_ref school;
    if (school_for(ctx, in->school_id, "school_id", &school) != 0)
        return -1;
    if (!ident_may_manage_school(ctx->caller, &school))
        return forbidden(ctx, "only the school's admins may add people to it");
    /* A user already at other schools joins this one only through someone
     * who may see them there: a new context never reveals a stranger. A user
     * without any context yet (created by an operator) may be placed. */
    Kreide__Identity__User user;
    if (check_uuid(ctx, in->user_id, "user_id") != 0)
        return -1;
    ident_school_ref *schools = NULL;
    ident_store_result r = ident_store_get_user(ctx, in->user_id, &user, &schools);
    if (r != IDENT_STORE_OK && r != IDENT_STORE_NOT_FOUND)
        return store_failure(ctx, r, "user");
    bool visible = r == IDENT_STORE_OK && (user.n_contexts == 0 || ident_is_operator(ctx->caller));
    for (size_t i = 0; r == IDENT_STORE_OK && i < user.n_contexts && !visible; i++)
        visible = ident_may_manage_school(ctx->caller, &schools[i]);
    if (!visible)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", "user_id", "no such user");
    const char *code = context_code(ctx, in->role, in->schulconnex_role, "role", "schulconnex_role");
    if (code == NULL)
        return -1;
    r = ident_store_add_context(ctx, school.id, in->user_id, ident_person_role_name(in->role), code, out);
    if (r == IDENT_STORE_CONFLICT)
        return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "identity.context_exists", "role",
                           "the user already has this role at the school");
    if (r != IDENT_STORE_OK)
        return store_failure(ctx, r, "user");
    claims_changed(ctx);
    kr_log(KR_LOG_INFO, "person context added", "school_id", school.id, "user_id", in->user_id, "role",
           ident_person_role_name(in->role), NULL);
    return 0;
}

/* --------------------------------------------------------------- groups */

static int create_group(kr_rpc_ctx *ctx, const Kreide__Identity__CreateGroupRequest *in, Kreide__Identity__Group *out)
{
    ident_school_ref school;
    if (school_for(ctx, in->school_id, "school_id", &school) != 0)
        return -1;
    if (!ident_may_manage_school(ctx->caller, &school))
        return forbidden(ctx, "only the school's admins may create groups");
    const char *kind = ident_group_kind_name(in->kind);
    if (kind == NULL)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_kind", "kind",
                           "kind must be CLASS, COURSE, CLUB, STAFF_ROOM or PARENTS");
    if (check_name(ctx, in->name, "name") != 0)
        return -1;
    if (!ident_school_year_valid(in->school_year))
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_school_year", "school_year",
                           "school_year must be like \"2026/27\" or empty");
    ident_store_result r = ident_store_create_group(ctx, school.id, kind, in->name, in->school_year, out);
    if (r == IDENT_STORE_CONFLICT)
        return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "identity.group_name_taken", "name",
                           "the school already has a group of that name in that school year");
    if (r != IDENT_STORE_OK)
        return store_failure(ctx, r, "group");
    ident_event ev = {.type = "group.created", .school_id = out->school_id, .group_id = out->id};
    publish(ctx, &ev);
    return 0;
}

static int list_groups(kr_rpc_ctx *ctx, const Kreide__Identity__ListGroupsRequest *in, Kreide__Identity__ListGroupsReply *out)
{
    ident_school_ref school;
    if (school_for(ctx, in->school_id, "school_id", &school) != 0)
        return -1;
    if (!ident_may_read_school(ctx->caller, &school))
        return forbidden(ctx, "only the school's teachers, staff and admins may list its groups");
    unsigned limit = 0;
    const char *cursor = "";
    if (page_args(ctx, in->page, &limit, &cursor) != 0)
        return -1;
    if (!ident_school_year_valid(in->school_year))
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_school_year", "school_year",
                           "school_year must be like \"2026/27\" or empty");
    bool more = false;
    ident_store_result r =
        ident_store_list_groups(ctx, school.id, in->school_year, cursor, limit, &out->groups, &out->n_groups, &more);
    if (r != IDENT_STORE_OK)
        return store_failure(ctx, r, "group");
    out->page = page_info(ctx, more, more ? out->groups[out->n_groups - 1]->id : "");
    return 0;
}

/* True when the caller leads the group today. */
static bool caller_leads(kr_rpc_ctx *ctx, const ident_school_ref *school, const char *group_id)
{
    if (ctx->caller->kind != KREIDE__CALLER__KIND__USER || !kr_uuid_valid(ctx->caller->user_id))
        return false;
    Kreide__Identity__MemberRole role = KREIDE__IDENTITY__MEMBER_ROLE__MEMBER_ROLE_UNSPECIFIED;
    return ident_store_member_role(ctx, school->id, group_id, ctx->caller->user_id, true, &role) == IDENT_STORE_OK &&
           role == KREIDE__IDENTITY__MEMBER_ROLE__LEADER;
}

static int add_member(kr_rpc_ctx *ctx, const Kreide__Identity__AddMemberRequest *in, Kreide__Identity__Membership *out)
{
    ident_school_ref school;
    if (group_for(ctx, in->group_id, &school) != 0)
        return -1;
    Kreide__Identity__MemberRole role = in->role ? in->role : KREIDE__IDENTITY__MEMBER_ROLE__MEMBER;
    if (ident_member_role_name(role) == NULL)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_role", "role", "role must be MEMBER or LEADER");
    if (!ident_may_change_member(ctx->caller, &school, caller_leads(ctx, &school, in->group_id), role))
        return forbidden(ctx, "only the school's admins, or a teacher leading the group, may add members");
    if (check_uuid(ctx, in->user_id, "user_id") != 0)
        return -1;
    if (!ident_date_valid(in->valid_from))
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_date", "valid_from",
                           "valid_from must be a date YYYY-MM-DD or empty");
    if (!ident_date_valid(in->valid_to))
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_date", "valid_to",
                           "valid_to must be a date YYYY-MM-DD or empty");
    if (in->valid_from[0] && in->valid_to[0] && strcmp(in->valid_from, in->valid_to) > 0)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_date", "valid_to",
                           "valid_to must not be before valid_from");
    ident_store_result r = ident_store_add_member(ctx, school.id, in->group_id, in->user_id, ident_member_role_name(role),
                                                  in->valid_from, in->valid_to, out);
    if (r == IDENT_STORE_PRECONDITION)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "identity.no_context", "user_id",
                           "the user has no context at the group's school");
    if (r == IDENT_STORE_CONFLICT)
        return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "identity.already_member", "user_id",
                           "the user is already a member of the group");
    if (r != IDENT_STORE_OK)
        return store_failure(ctx, r, "membership");
    ident_event ev = {.type = "membership.added",
                      .school_id = school.id,
                      .group_id = out->group_id,
                      .user_id = out->user_id,
                      .role = ident_member_role_name(out->role)};
    claims_changed(ctx);
    publish(ctx, &ev);
    return 0;
}

static int remove_member(kr_rpc_ctx *ctx, const Kreide__Identity__RemoveMemberRequest *in, Kreide__Empty *out)
{
    (void)out;
    ident_school_ref school;
    if (group_for(ctx, in->group_id, &school) != 0)
        return -1;
    bool leads = caller_leads(ctx, &school, in->group_id);
    if (!ident_may_change_member(ctx->caller, &school, leads, KREIDE__IDENTITY__MEMBER_ROLE__MEMBER))
        return forbidden(ctx, "only the school's admins, or a teacher leading the group, may remove members");
    if (check_uuid(ctx, in->user_id, "user_id") != 0)
        return -1;
    /* A leading teacher removes members, not fellow leaders. */
    Kreide__Identity__MemberRole target = KREIDE__IDENTITY__MEMBER_ROLE__MEMBER_ROLE_UNSPECIFIED;
    ident_store_result r = ident_store_member_role(ctx, school.id, in->group_id, in->user_id, false, &target);
    if (r == IDENT_STORE_OK && !ident_may_change_member(ctx->caller, &school, leads, target))
        return forbidden(ctx, "only the school's admins may remove a group's leaders");
    if (r == IDENT_STORE_OK)
        r = ident_store_remove_member(ctx, school.id, in->group_id, in->user_id, &target);
    if (r == IDENT_STORE_NOT_FOUND)
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_member", "user_id",
                           "the user is not a member of the group");
    if (r != IDENT_STORE_OK)
        return store_failure(ctx, r, "membership");
    ident_event ev = {.type = "membership.removed",
                      .school_id = school.id,
                      .group_id = in->group_id,
                      .user_id = in->user_id,
                      .role = ident_member_role_name(target)};
    claims_changed(ctx);
    publish(ctx, &ev);
    return 0;
}

static int list_members(kr_rpc_ctx *ctx, const Kreide__Identity__ListMembersRequest *in, Kreide__Identity__ListMembersReply *out)
{
    ident_school_ref school;
    if (group_for(ctx, in->group_id, &school) != 0)
        return -1;
    if (!ident_may_read_school(ctx->caller, &school))
        return forbidden(ctx, "only the school's teachers, staff and admins may list a group's members");
    unsigned limit = 0;
    const char *cursor = "";
    if (page_args(ctx, in->page, &limit, &cursor) != 0)
        return -1;
    bool more = false;
    ident_store_result r =
        ident_store_list_members(ctx, school.id, in->group_id, cursor, limit, &out->members, &out->n_members, &more);
    if (r != IDENT_STORE_OK)
        return store_failure(ctx, r, "membership");
    out->page = page_info(ctx, more, more ? out->members[out->n_members - 1]->user_id : "");
    return 0;
}

static int add_guardianship(kr_rpc_ctx *ctx, const Kreide__Identity__AddGuardianshipRequest *in,
                            Kreide__Identity__Guardianship *out)
{
    ident_school_ref school;
    if (school_for(ctx, in->school_id, "school_id", &school) != 0)
        return -1;
    if (!ident_may_manage_school(ctx->caller, &school))
        return forbidden(ctx, "only the school's admins may link parents and children");
    if (check_uuid(ctx, in->parent_id, "parent_id") != 0 || check_uuid(ctx, in->child_id, "child_id") != 0)
        return -1;
    if (strcasecmp(in->parent_id, in->child_id) == 0)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_id", "child_id",
                           "a person cannot be their own guardian");
    ident_store_result r = ident_store_add_guardianship(ctx, school.id, in->parent_id, in->child_id, out);
    if (r == IDENT_STORE_PRECONDITION)
        return kr_rpc_fail(ctx, KREIDE__STATUS__FAILED_PRECONDITION, "identity.no_context", NULL,
                           "the parent needs a PARENT and the child a PUPIL context at the school");
    if (r == IDENT_STORE_CONFLICT)
        return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "identity.conflict", NULL, "the guardianship exists");
    return r == IDENT_STORE_OK ? 0 : store_failure(ctx, r, "guardianship");
}

static int search_directory(kr_rpc_ctx *ctx, const Kreide__Identity__SearchDirectoryRequest *in,
                            Kreide__Identity__SearchDirectoryReply *out)
{
    ident_school_ref school;
    if (school_for(ctx, in->school_id, "school_id", &school) != 0)
        return -1;
    ident_directory_scope scope = ident_directory_scope_for(ctx->caller, &school);
    if (!ident_directory_scope_any(scope))
        return forbidden(ctx, "the caller has no place in this school's directory");
    unsigned limit = 0;
    const char *cursor = "";
    if (page_args(ctx, in->page, &limit, &cursor) != 0)
        return -1;
    if (ident_text_length(in->q) < 0 || strlen(in->q) > 200)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_prefix", "q",
                           "q must be at most 200 characters of text");
    bool more = false;
    ident_store_result r =
        ident_store_search(ctx, school.id, in->q, scope, ctx->caller->user_id, cursor, limit, &out->people, &out->n_people, &more);
    if (r != IDENT_STORE_OK)
        return store_failure(ctx, r, "person");
    out->page = page_info(ctx, more, more ? out->people[out->n_people - 1]->user_id : "");
    return 0;
}

KR_RPC_HANDLER(create_school, Kreide__Identity__CreateSchoolRequest, Kreide__Identity__School)
KR_RPC_HANDLER(get_school, Kreide__Identity__GetSchoolRequest, Kreide__Identity__School)
KR_RPC_HANDLER(list_schools, Kreide__Identity__ListSchoolsRequest, Kreide__Identity__ListSchoolsReply)
KR_RPC_HANDLER(create_carrier, Kreide__Identity__CreateCarrierRequest, Kreide__Identity__Carrier)
KR_RPC_HANDLER(create_user, Kreide__Identity__CreateUserRequest, Kreide__Identity__User)
KR_RPC_HANDLER(get_user, Kreide__Identity__GetUserRequest, Kreide__Identity__User)
KR_RPC_HANDLER(add_person_context, Kreide__Identity__AddPersonContextRequest, Kreide__Identity__PersonContext)
KR_RPC_HANDLER(create_group, Kreide__Identity__CreateGroupRequest, Kreide__Identity__Group)
KR_RPC_HANDLER(list_groups, Kreide__Identity__ListGroupsRequest, Kreide__Identity__ListGroupsReply)
KR_RPC_HANDLER(add_member, Kreide__Identity__AddMemberRequest, Kreide__Identity__Membership)
KR_RPC_HANDLER(remove_member, Kreide__Identity__RemoveMemberRequest, Kreide__Empty)
KR_RPC_HANDLER(list_members, Kreide__Identity__ListMembersRequest, Kreide__Identity__ListMembersReply)
KR_RPC_HANDLER(add_guardianship, Kreide__Identity__AddGuardianshipRequest, Kreide__Identity__Guardianship)
KR_RPC_HANDLER(search_directory, Kreide__Identity__SearchDirectoryRequest, Kreide__Identity__SearchDirectoryReply)

const kr_rpc_method ident_methods[] = {
    KR_RPC_ENTRY("CreateSchool", create_school, Kreide__Identity__CreateSchoolRequest, Kreide__Identity__School),
    KR_RPC_ENTRY("GetSchool", get_school, Kreide__Identity__GetSchoolRequest, Kreide__Identity__School),
    KR_RPC_ENTRY("ListSchools", list_schools, Kreide__Identity__ListSchoolsRequest, Kreide__Identity__ListSchoolsReply),
    KR_RPC_ENTRY("CreateCarrier", create_carrier, Kreide__Identity__CreateCarrierRequest, Kreide__Identity__Carrier),
    KR_RPC_ENTRY("CreateUser", create_user, Kreide__Identity__CreateUserRequest, Kreide__Identity__User),
    KR_RPC_ENTRY("GetUser", get_user, Kreide__Identity__GetUserRequest, Kreide__Identity__User),
    KR_RPC_ENTRY("AddPersonContext", add_person_context, Kreide__Identity__AddPersonContextRequest,
                 Kreide__Identity__PersonContext),
    KR_RPC_ENTRY("CreateGroup", create_group, Kreide__Identity__CreateGroupRequest, Kreide__Identity__Group),
    KR_RPC_ENTRY("ListGroups", list_groups, Kreide__Identity__ListGroupsRequest, Kreide__Identity__ListGroupsReply),
    KR_RPC_ENTRY("AddMember", add_member, Kreide__Identity__AddMemberRequest, Kreide__Identity__Membership),
    KR_RPC_ENTRY("RemoveMember", remove_member, Kreide__Identity__RemoveMemberRequest, Kreide__Empty),
    KR_RPC_ENTRY("ListMembers", list_members, Kreide__Identity__ListMembersRequest, Kreide__Identity__ListMembersReply),
    KR_RPC_ENTRY("AddGuardianship", add_guardianship, Kreide__Identity__AddGuardianshipRequest, Kreide__Identity__Guardianship),
    KR_RPC_ENTRY("SearchDirectory", search_directory, Kreide__Identity__SearchDirectoryRequest,
                 Kreide__Identity__SearchDirectoryReply),
    /* OpenID Connect clients (api_clients.c) */
    KR_RPC_ENTRY("CreateClient", ident_create_client, Kreide__Identity__CreateClientRequest, Kreide__Identity__CreateClientReply),
    KR_RPC_ENTRY("GetClient", ident_get_client, Kreide__Identity__GetClientRequest, Kreide__Identity__OidcClient),
    KR_RPC_ENTRY("AuthenticateClient", ident_authenticate_client, Kreide__Identity__AuthenticateClientRequest,
                 Kreide__Identity__OidcClient),
};
const size_t ident_nmethods = sizeof(ident_methods) / sizeof(ident_methods[0]);
