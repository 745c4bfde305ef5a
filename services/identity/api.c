/* RPC handlers of the identity service: validate input, ask policy, store. */
#include <ctype.h>
#include <string.h>

#include "identity.h"
#include "kr_id.h"
#include "kr_log.h"

#define LIST_DEFAULT_LIMIT 50
#define LIST_MAX_LIMIT 500

static int store_failure(kr_rpc_ctx *ctx, ident_store_result r, const char *what)
{
    switch (r) {
    case IDENT_STORE_NOT_FOUND:
        return kr_rpc_fail(ctx, KREIDE__STATUS__NOT_FOUND, "identity.not_found", NULL, "no such %s", what);
    case IDENT_STORE_CONFLICT:
        return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "identity.conflict", NULL, "%s already exists", what);
    default:
        return kr_rpc_fail(ctx, KREIDE__STATUS__UNAVAILABLE, "identity.database", NULL, "the directory is temporarily unavailable");
    }
}

/* Counts UTF-8 characters; -1 when `s` is not valid UTF-8 or has control
 * characters, which never belong in a name. */
static long name_length(const char *s)
{
    long n = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int len = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
        if (len == 0 || (len == 1 && (*p < 0x20 || *p == 0x7f)))
            return -1;
        for (int i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return -1;
        }
        p += len;
        n++;
    }
    return n;
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

static int create_school(kr_rpc_ctx *ctx, const Kreide__Identity__CreateSchoolRequest *in, Kreide__Identity__School *out)
{
    if (!ident_may_create_school(ctx->caller))
        return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "identity.forbidden", NULL, "only operators may create schools");
    long len = name_length(in->name);
    if (len < 1 || len > 200)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_name", "name",
                           "name must be 1 to 200 characters of text");
    if (!kennung_valid(in->kennung))
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_kennung", "kennung",
                           "kennung must be at most 32 letters, digits, '_', '.' or '-'");
    if (in->kind == KREIDE__IDENTITY__SCHOOL_KIND__SCHOOL_KIND_UNSPECIFIED || in->kind > KREIDE__IDENTITY__SCHOOL_KIND__COMMUNITY)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_kind", "kind",
                           "kind must be SCHOOL, KITA or COMMUNITY");
    ident_store_result r = ident_store_create_school(ctx, in->name, in->kennung, in->kind, out);
    if (r == IDENT_STORE_CONFLICT)
        return kr_rpc_fail(ctx, KREIDE__STATUS__ALREADY_EXISTS, "identity.kennung_taken", "kennung",
                           "a school with kennung '%s' already exists", in->kennung);
    if (r != IDENT_STORE_OK)
        return store_failure(ctx, r, "school");
    kr_log(KR_LOG_INFO, "school created", "school_id", out->id, "by", ctx->caller->user_id, NULL);
    return 0;
}

static int get_school(kr_rpc_ctx *ctx, const Kreide__Identity__GetSchoolRequest *in, Kreide__Identity__School *out)
{
    if (!kr_uuid_valid(in->id))
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_id", "id", "id must be a UUID");
    ident_store_result r = ident_store_get_school(ctx, in->id, out);
    return r == IDENT_STORE_OK ? 0 : store_failure(ctx, r, "school");
}

static int list_schools(kr_rpc_ctx *ctx, const Kreide__Identity__ListSchoolsRequest *in, Kreide__Identity__ListSchoolsReply *out)
{
    if (!ident_may_list_schools(ctx->caller))
        return kr_rpc_fail(ctx, KREIDE__STATUS__PERMISSION_DENIED, "identity.forbidden", NULL,
                           "only operators may list all schools");
    unsigned limit = in->page && in->page->limit ? in->page->limit : LIST_DEFAULT_LIMIT;
    if (limit > LIST_MAX_LIMIT)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_limit", "page.limit",
                           "page.limit must be at most %d", LIST_MAX_LIMIT);
    const char *cursor = in->page ? in->page->cursor : "";
    if (cursor[0] != '\0' && !kr_uuid_valid(cursor))
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_cursor", "page.cursor",
                           "page.cursor is not a cursor this service returned");
    if (name_length(in->name_prefix) < 0 || strlen(in->name_prefix) > 200)
        return kr_rpc_fail(ctx, KREIDE__STATUS__INVALID_ARGUMENT, "identity.invalid_prefix", "name_prefix",
                           "name_prefix must be at most 200 characters of text");
    bool more = false;
    ident_store_result r = ident_store_list_schools(ctx, in->name_prefix, cursor, limit, &out->schools, &out->n_schools, &more);
    if (r != IDENT_STORE_OK)
        return store_failure(ctx, r, "school");
    out->page = kr_arena_alloc(ctx->arena, sizeof(*out->page));
    kreide__page_info__init(out->page);
    out->page->next_cursor = more ? out->schools[out->n_schools - 1]->id : "";
    return 0;
}

KR_RPC_HANDLER(create_school, Kreide__Identity__CreateSchoolRequest, Kreide__Identity__School)
KR_RPC_HANDLER(get_school, Kreide__Identity__GetSchoolRequest, Kreide__Identity__School)
KR_RPC_HANDLER(list_schools, Kreide__Identity__ListSchoolsRequest, Kreide__Identity__ListSchoolsReply)

const kr_rpc_method ident_methods[] = {
    KR_RPC_ENTRY("CreateSchool", create_school, Kreide__Identity__CreateSchoolRequest, Kreide__Identity__School),
    KR_RPC_ENTRY("GetSchool", get_school, Kreide__Identity__GetSchoolRequest, Kreide__Identity__School),
    KR_RPC_ENTRY("ListSchools", list_schools, Kreide__Identity__ListSchoolsRequest, Kreide__Identity__ListSchoolsReply),
};
const size_t ident_nmethods = sizeof(ident_methods) / sizeof(ident_methods[0]);
