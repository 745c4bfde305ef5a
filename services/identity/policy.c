/* Who may do what in the identity service. Every handler asks here before
 * it touches the store; nothing is decided by what a UI shows. These are pure
 * functions of the sealed caller and of facts the handler looked up. */
#include <string.h>
#include <strings.h>

#include "identity.h"
#include "kr_id.h"

#define CARRIER_ADMIN_PREFIX "carrier_admin:"

static const struct {
    const char *name;
    unsigned bit;
} role_names[] = {
    {"pupil", IDENT_ROLE_PUPIL}, {"teacher", IDENT_ROLE_TEACHER}, {"parent", IDENT_ROLE_PARENT},
    {"staff", IDENT_ROLE_STAFF}, {"head", IDENT_ROLE_HEAD},       {"school_admin", IDENT_ROLE_SCHOOL_ADMIN},
};

/* Only people and services hold rights; an anonymous caller holds none,
 * whatever its envelope lists. */
static bool may_hold_rights(const Kreide__Caller *caller)
{
    return caller->kind == KREIDE__CALLER__KIND__USER || caller->kind == KREIDE__CALLER__KIND__SERVICE;
}

bool ident_is_operator(const Kreide__Caller *caller)
{
    if (!may_hold_rights(caller))
        return false;
    for (size_t i = 0; i < caller->n_roles; i++) {
        if (strcmp(caller->roles[i], "operator") == 0)
            return true;
    }
    return false;
}

bool ident_is_carrier_admin(const Kreide__Caller *caller, const char *carrier_id)
{
    if (!may_hold_rights(caller) || carrier_id == NULL || !kr_uuid_valid(carrier_id))
        return false;
    size_t plen = strlen(CARRIER_ADMIN_PREFIX);
    for (size_t i = 0; i < caller->n_roles; i++) {
        const char *r = caller->roles[i];
        if (strncmp(r, CARRIER_ADMIN_PREFIX, plen) == 0 && strcasecmp(r + plen, carrier_id) == 0)
            return true;
    }
    return false;
}

unsigned ident_role_bit(const char *name)
{
    for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++) {
        if (strcmp(role_names[i].name, name) == 0)
            return role_names[i].bit;
    }
    return 0;
}

unsigned ident_caller_roles_at(const Kreide__Caller *caller, const char *school_id)
{
    unsigned bits = 0;
    if (!may_hold_rights(caller))
        return 0;
    for (size_t i = 0; i < caller->n_schools; i++) {
        const Kreide__CallerSchool *s = caller->schools[i];
        if (strcasecmp(s->school_id, school_id) != 0)
            continue;
        for (size_t j = 0; j < s->n_roles; j++)
            bits |= ident_role_bit(s->roles[j]);
    }
    return bits;
}

bool ident_is_self(const Kreide__Caller *caller, const char *user_id)
{
    return caller->kind == KREIDE__CALLER__KIND__USER && kr_uuid_valid(caller->user_id) &&
           strcasecmp(caller->user_id, user_id) == 0;
}

bool ident_may_create_carrier(const Kreide__Caller *caller)
{
    return ident_is_operator(caller);
}

bool ident_may_create_school(const Kreide__Caller *caller, const char *carrier_id)
{
    return ident_is_operator(caller) || ident_is_carrier_admin(caller, carrier_id);
}

bool ident_may_list_schools(const Kreide__Caller *caller)
{
    return ident_is_operator(caller);
}

bool ident_may_manage_school(const Kreide__Caller *caller, const ident_school_ref *school)
{
    return ident_is_operator(caller) || ident_is_carrier_admin(caller, school->carrier_id) ||
           (ident_caller_roles_at(caller, school->id) & IDENT_ROLE_SCHOOL_ADMIN) != 0;
}

bool ident_has_school_access(const Kreide__Caller *caller, const ident_school_ref *school)
{
    return ident_may_manage_school(caller, school) || ident_caller_roles_at(caller, school->id) != 0;
}

bool ident_may_read_school(const Kreide__Caller *caller, const ident_school_ref *school)
{
    return ident_may_manage_school(caller, school) || (ident_caller_roles_at(caller, school->id) & IDENT_ROLES_WHOLE_SCHOOL) != 0;
}

bool ident_may_change_member(const Kreide__Caller *caller, const ident_school_ref *school, bool caller_leads_group,
                             Kreide__Identity__MemberRole target_role)
{
    if (ident_may_manage_school(caller, school))
        return true;
    return caller_leads_group && (ident_caller_roles_at(caller, school->id) & IDENT_ROLE_TEACHER) != 0 &&
           target_role == KREIDE__IDENTITY__MEMBER_ROLE__MEMBER;
}

ident_directory_scope ident_directory_scope_for(const Kreide__Caller *caller, const ident_school_ref *school)
{
    ident_directory_scope scope = {false, false, false};
    if (ident_may_read_school(caller, school)) {
        scope.whole_school = true;
        return scope;
    }
    /* Narrower views are relative to the caller's own memberships and
     * children, so they need a person behind the call. */
    if (caller->kind != KREIDE__CALLER__KIND__USER || !kr_uuid_valid(caller->user_id))
        return scope;
    unsigned roles = ident_caller_roles_at(caller, school->id);
    scope.classmates_and_teachers = (roles & IDENT_ROLE_PUPIL) != 0;
    scope.childrens_teachers_and_staff = (roles & IDENT_ROLE_PARENT) != 0;
    return scope;
}

bool ident_directory_scope_any(ident_directory_scope scope)
{
    return scope.whole_school || scope.classmates_and_teachers || scope.childrens_teachers_and_staff;
}

bool ident_may_issue_code(const Kreide__Caller *caller, const ident_school_ref *school, Kreide__Identity__CodePurpose purpose,
                          unsigned target_roles, bool caller_leads_target)
{
    bool known_purpose = purpose == KREIDE__IDENTITY__CODE_PURPOSE__ENROLLMENT || purpose == KREIDE__IDENTITY__CODE_PURPOSE__RESET;
    if (!known_purpose || target_roles == 0)
        return false;
    if (ident_is_operator(caller))
        return true;
    unsigned roles = ident_caller_roles_at(caller, school->id);
    if ((roles & IDENT_ROLE_SCHOOL_ADMIN) != 0)
        return true;
    /* A carrier manages its schools through their admins: it may hand a
     * school admin a code, not every pupil. */
    if (ident_is_carrier_admin(caller, school->carrier_id) && (target_roles & IDENT_ROLE_SCHOOL_ADMIN) != 0)
        return true;
    return (roles & IDENT_ROLE_TEACHER) != 0 && purpose == KREIDE__IDENTITY__CODE_PURPOSE__RESET &&
           (target_roles & IDENT_ROLE_PUPIL) != 0 && caller_leads_target;
}

bool ident_may_use_totp(unsigned roles_anywhere)
{
    /* Children and parents sign in with a password only: a lost phone must
     * not lock a family out, and a second factor guards the accounts that
     * can see and change other people's data. */
    return (roles_anywhere & IDENT_ROLES_WHOLE_SCHOOL) != 0;
}

/* ------------------------------------------------- OpenID Connect clients */

bool ident_is_gateway(const Kreide__Caller *caller)
{
    return caller->kind == KREIDE__CALLER__KIND__SERVICE && strcmp(caller->client_id, IDENT_GATEWAY_CLIENT_ID) == 0 &&
           caller->user_id[0] == '\0';
}

bool ident_may_create_client(const Kreide__Caller *caller, const ident_school_ref *school)
{
    if (ident_is_operator(caller))
        return true;
    return school != NULL && ident_is_carrier_admin(caller, school->carrier_id);
}

bool ident_may_read_client(const Kreide__Caller *caller, const ident_school_ref *school, const char *client_id)
{
    if (ident_may_create_client(caller, school) || ident_is_gateway(caller))
        return true;
    /* A client reads its own registration with a token issued to it. */
    return caller->kind == KREIDE__CALLER__KIND__SERVICE && client_id[0] != '\0' && strcmp(caller->client_id, client_id) == 0;
}
