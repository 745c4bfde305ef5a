/* Unit tests of policy.c: who may do what, decided from the sealed caller. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "identity.h"

#define SCHOOL_A "0190b3c4-7d2e-7a11-9f00-00000000000a"
#define SCHOOL_B "0190b3c4-7d2e-7a11-9f00-00000000000b"
#define CARRIER_A "0190b3c4-7d2e-7a11-9f00-0000000000ca"
#define CARRIER_B "0190b3c4-7d2e-7a11-9f00-0000000000cb"
#define PERSON "0190b3c4-7d2e-7a11-9f00-000000000001"

static const ident_school_ref school_a = {SCHOOL_A, CARRIER_A};
static const ident_school_ref school_b = {SCHOOL_B, ""};

/* A caller with installation roles `roles` (NULL-terminated) and, at school
 * A, the roles `at_a` (NULL-terminated, or NULL for no context). */
typedef struct {
    Kreide__Caller caller;
    Kreide__CallerSchool school;
    Kreide__CallerSchool *schools[1];
    char *roles[4];
    char *school_roles[4];
} fake_caller;

static Kreide__Caller *make(fake_caller *f, Kreide__Caller__Kind kind, const char *const *roles, const char *const *at_a)
{
    memset(f, 0, sizeof(*f));
    kreide__caller__init(&f->caller);
    kreide__caller_school__init(&f->school);
    f->caller.kind = kind;
    f->caller.user_id = PERSON;
    for (size_t i = 0; roles && roles[i]; i++)
        f->roles[f->caller.n_roles++] = (char *)roles[i];
    f->caller.roles = f->roles;
    if (at_a != NULL) {
        f->school.school_id = SCHOOL_A;
        for (size_t i = 0; at_a[i]; i++)
            f->school_roles[f->school.n_roles++] = (char *)at_a[i];
        f->school.roles = f->school_roles;
        f->schools[0] = &f->school;
        f->caller.schools = f->schools;
        f->caller.n_schools = 1;
    }
    return &f->caller;
}

#define ROLES(...) ((const char *const[]){__VA_ARGS__, NULL})
#define USER KREIDE__CALLER__KIND__USER
#define MEMBER KREIDE__IDENTITY__MEMBER_ROLE__MEMBER
#define LEADER KREIDE__IDENTITY__MEMBER_ROLE__LEADER

static void operators_may_do_everything(void **state)
{
    fake_caller f;
    Kreide__Caller *c = make(&f, USER, ROLES("operator"), NULL);
    assert_true(ident_is_operator(c));
    assert_true(ident_may_create_carrier(c));
    assert_true(ident_may_create_school(c, ""));
    assert_true(ident_may_manage_school(c, &school_a));
    assert_true(ident_may_manage_school(c, &school_b));
    assert_true(ident_may_change_member(c, &school_b, false, LEADER));
    assert_true(ident_directory_scope_for(c, &school_b).whole_school);
}

static void anonymous_callers_hold_no_rights_whatever_they_list(void **state)
{
    fake_caller f;
    Kreide__Caller *c =
        make(&f, KREIDE__CALLER__KIND__ANONYMOUS, ROLES("operator", "carrier_admin:" CARRIER_A), ROLES("school_admin"));
    assert_false(ident_is_operator(c));
    assert_false(ident_is_carrier_admin(c, CARRIER_A));
    assert_int_equal(ident_caller_roles_at(c, SCHOOL_A), 0);
    assert_false(ident_has_school_access(c, &school_a));
    assert_false(ident_directory_scope_any(ident_directory_scope_for(c, &school_a)));
}

static void carrier_admins_manage_only_their_carriers_schools(void **state)
{
    fake_caller f;
    Kreide__Caller *c = make(&f, USER, ROLES("carrier_admin:" CARRIER_A), NULL);
    assert_true(ident_is_carrier_admin(c, CARRIER_A));
    assert_false(ident_is_carrier_admin(c, CARRIER_B));
    assert_false(ident_is_carrier_admin(c, ""));
    assert_true(ident_may_create_school(c, CARRIER_A));
    assert_false(ident_may_create_school(c, CARRIER_B));
    assert_false(ident_may_create_school(c, ""));
    assert_false(ident_may_create_carrier(c));
    assert_true(ident_may_manage_school(c, &school_a));
    assert_false(ident_may_manage_school(c, &school_b));
    /* Upper-case ids in the token name the same carrier. */
    Kreide__Caller *upper = make(&f, USER, ROLES("carrier_admin:0190B3C4-7D2E-7A11-9F00-0000000000CA"), NULL);
    assert_true(ident_is_carrier_admin(upper, CARRIER_A));
    /* A bare or malformed carrier role is nothing. */
    Kreide__Caller *bare = make(&f, USER, ROLES("carrier_admin", "carrier_admin:", "carrier_admin:x"), NULL);
    assert_false(ident_may_manage_school(bare, &school_a));
}

static void school_admins_manage_their_school_only(void **state)
{
    fake_caller f;
    Kreide__Caller *c = make(&f, USER, NULL, ROLES("school_admin"));
    assert_true(ident_may_manage_school(c, &school_a));
    assert_false(ident_may_manage_school(c, &school_b));
    assert_false(ident_has_school_access(c, &school_b));
    assert_true(ident_may_change_member(c, &school_a, false, LEADER));
    assert_false(ident_may_change_member(c, &school_b, false, MEMBER));
    assert_false(ident_may_create_school(c, CARRIER_A));
    assert_false(ident_may_list_schools(c));
}

static void teachers_change_plain_members_of_groups_they_lead(void **state)
{
    fake_caller f;
    Kreide__Caller *c = make(&f, USER, NULL, ROLES("teacher"));
    assert_false(ident_may_manage_school(c, &school_a));
    assert_true(ident_may_read_school(c, &school_a));
    assert_true(ident_may_change_member(c, &school_a, true, MEMBER));
    assert_false(ident_may_change_member(c, &school_a, true, LEADER));
    assert_false(ident_may_change_member(c, &school_a, false, MEMBER));
    /* Leading a group somewhere is no right at a school where one is no teacher. */
    assert_false(ident_may_change_member(c, &school_b, true, MEMBER));
    /* A pupil who somehow leads a group (a class speaker) manages nobody. */
    Kreide__Caller *p = make(&f, USER, NULL, ROLES("pupil"));
    assert_false(ident_may_change_member(p, &school_a, true, MEMBER));
}

static void directory_scope_follows_the_role(void **state)
{
    fake_caller f;
    const char *const *whole[] = {ROLES("teacher"), ROLES("staff"), ROLES("head"), ROLES("school_admin")};
    for (size_t i = 0; i < 4; i++) {
        ident_directory_scope s = ident_directory_scope_for(make(&f, USER, NULL, whole[i]), &school_a);
        assert_true(s.whole_school);
    }
    ident_directory_scope pupil = ident_directory_scope_for(make(&f, USER, NULL, ROLES("pupil")), &school_a);
    assert_false(pupil.whole_school);
    assert_true(pupil.classmates_and_teachers);
    assert_false(pupil.childrens_teachers_and_staff);
    ident_directory_scope parent = ident_directory_scope_for(make(&f, USER, NULL, ROLES("parent")), &school_a);
    assert_false(parent.whole_school);
    assert_false(parent.classmates_and_teachers);
    assert_true(parent.childrens_teachers_and_staff);
    ident_directory_scope both = ident_directory_scope_for(make(&f, USER, NULL, ROLES("pupil", "parent")), &school_a);
    assert_true(both.classmates_and_teachers && both.childrens_teachers_and_staff);
    /* Roles at school A show nothing of school B. */
    assert_false(ident_directory_scope_any(ident_directory_scope_for(make(&f, USER, NULL, ROLES("teacher")), &school_b)));
    /* Unknown role names give no view at all. */
    assert_false(ident_directory_scope_any(ident_directory_scope_for(make(&f, USER, NULL, ROLES("Teacher", "admin")), &school_a)));
}

static void relative_views_need_a_person(void **state)
{
    fake_caller f;
    Kreide__Caller *c = make(&f, KREIDE__CALLER__KIND__SERVICE, NULL, ROLES("pupil"));
    assert_false(ident_directory_scope_any(ident_directory_scope_for(c, &school_a)));
    c = make(&f, USER, NULL, ROLES("parent"));
    f.caller.user_id = "";
    assert_false(ident_directory_scope_any(ident_directory_scope_for(c, &school_a)));
}

static void roles_are_collected_per_school(void **state)
{
    fake_caller f;
    Kreide__Caller *c = make(&f, USER, NULL, ROLES("teacher", "parent", "nonsense"));
    assert_int_equal(ident_caller_roles_at(c, SCHOOL_A), IDENT_ROLE_TEACHER | IDENT_ROLE_PARENT);
    assert_int_equal(ident_caller_roles_at(c, SCHOOL_B), 0);
    assert_true(ident_is_self(c, PERSON));
    assert_false(ident_is_self(c, SCHOOL_A));
}

#define ENROLL KREIDE__IDENTITY__CODE_PURPOSE__ENROLLMENT
#define RESET KREIDE__IDENTITY__CODE_PURPOSE__RESET

static void codes_follow_the_issue_policy(void **state)
{
    (void)state;
    fake_caller f;
    const unsigned pupil = IDENT_ROLE_PUPIL, admin = IDENT_ROLE_SCHOOL_ADMIN, teacher = IDENT_ROLE_TEACHER;

    Kreide__Caller *c = make(&f, USER, ROLES("operator"), NULL);
    assert_true(ident_may_issue_code(c, &school_b, ENROLL, pupil, false));
    assert_false(ident_may_issue_code(c, &school_b, KREIDE__IDENTITY__CODE_PURPOSE__CODE_PURPOSE_UNSPECIFIED, pupil, false));
    assert_false(ident_may_issue_code(c, &school_b, ENROLL, 0, false)); /* nobody there */

    c = make(&f, USER, NULL, ROLES("school_admin"));
    assert_true(ident_may_issue_code(c, &school_a, ENROLL, pupil, false));
    assert_true(ident_may_issue_code(c, &school_a, RESET, teacher, false));
    assert_false(ident_may_issue_code(c, &school_b, ENROLL, pupil, false));

    c = make(&f, USER, ROLES("carrier_admin:" CARRIER_A), NULL);
    assert_true(ident_may_issue_code(c, &school_a, ENROLL, admin, false));
    assert_true(ident_may_issue_code(c, &school_a, RESET, admin | teacher, false));
    assert_false(ident_may_issue_code(c, &school_a, RESET, pupil, false));
    assert_false(ident_may_issue_code(c, &school_b, RESET, admin, false));

    c = make(&f, USER, NULL, ROLES("teacher"));
    assert_true(ident_may_issue_code(c, &school_a, RESET, pupil, true));
    assert_false(ident_may_issue_code(c, &school_a, RESET, pupil, false));  /* not in a group they lead */
    assert_false(ident_may_issue_code(c, &school_a, ENROLL, pupil, true));  /* reset only */
    assert_false(ident_may_issue_code(c, &school_a, RESET, teacher, true)); /* pupils only */

    c = make(&f, USER, NULL, ROLES("pupil"));
    assert_false(ident_may_issue_code(c, &school_a, RESET, pupil, true));
    c = make(&f, USER, NULL, ROLES("parent"));
    assert_false(ident_may_issue_code(c, &school_a, RESET, pupil, true));
    c = make(&f, USER, NULL, ROLES("staff", "head"));
    assert_false(ident_may_issue_code(c, &school_a, RESET, pupil, true));
    c = make(&f, KREIDE__CALLER__KIND__ANONYMOUS, ROLES("operator"), ROLES("school_admin"));
    assert_false(ident_may_issue_code(c, &school_a, ENROLL, pupil, true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(operators_may_do_everything),
        cmocka_unit_test(anonymous_callers_hold_no_rights_whatever_they_list),
        cmocka_unit_test(carrier_admins_manage_only_their_carriers_schools),
        cmocka_unit_test(school_admins_manage_their_school_only),
        cmocka_unit_test(teachers_change_plain_members_of_groups_they_lead),
        cmocka_unit_test(directory_scope_follows_the_role),
        cmocka_unit_test(relative_views_need_a_person),
        cmocka_unit_test(roles_are_collected_per_school),
        cmocka_unit_test(codes_follow_the_issue_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
