/* Unit tests of policy.c: the presets' direct-chat matrices and room
 * creators, stored rules, callers' roles, and the permissions in a room. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "messaging.h"

#define PUPIL MSG_ROLE_PUPIL
#define TEACHER MSG_ROLE_TEACHER
#define PARENT MSG_ROLE_PARENT
#define STAFF MSG_ROLE_STAFF
#define HEAD MSG_ROLE_HEAD
#define ADMIN MSG_ROLE_SCHOOL_ADMIN

static void school_defaults(void **state)
{
    msg_policy p;
    msg_policy_defaults(MSG_PRESET_SCHOOL, &p);
    /* The defaults the product promises. */
    assert_false(msg_direct_allowed(&p, PUPIL, PUPIL));
    assert_true(msg_direct_allowed(&p, PUPIL, TEACHER));
    assert_true(msg_direct_allowed(&p, TEACHER, PUPIL));
    assert_true(msg_direct_allowed(&p, PARENT, TEACHER));
    assert_true(msg_direct_allowed(&p, TEACHER, PARENT));
    assert_false(msg_direct_allowed(&p, PARENT, PARENT));
    /* And the rest of the matrix. */
    assert_false(msg_direct_allowed(&p, PUPIL, PARENT));
    assert_false(msg_direct_allowed(&p, PARENT, PUPIL));
    assert_true(msg_direct_allowed(&p, PUPIL, STAFF));
    assert_true(msg_direct_allowed(&p, PARENT, ADMIN));
    assert_true(msg_direct_allowed(&p, TEACHER, TEACHER));
    assert_true(msg_direct_allowed(&p, HEAD, PARENT));
    /* Several roles: any allowed pair is enough. */
    assert_true(msg_direct_allowed(&p, PARENT | TEACHER, PARENT));
    assert_true(msg_direct_allowed(&p, PUPIL, PUPIL | TEACHER));
    assert_false(msg_direct_allowed(&p, 0, TEACHER));
    assert_false(msg_direct_allowed(&p, TEACHER, 0));
    /* Rooms: the school's people, not pupils or parents. */
    assert_true(msg_may_create_room(&p, TEACHER));
    assert_true(msg_may_create_room(&p, STAFF));
    assert_true(msg_may_create_room(&p, ADMIN));
    assert_false(msg_may_create_room(&p, PUPIL));
    assert_false(msg_may_create_room(&p, PARENT));
    assert_int_equal(p.retention_days, 0);
}

static void kita_and_community(void **state)
{
    msg_policy k;
    msg_policy_defaults(MSG_PRESET_KITA, &k);
    assert_false(msg_direct_allowed(&k, PUPIL, TEACHER));
    assert_false(msg_direct_allowed(&k, TEACHER, PUPIL));
    assert_true(msg_direct_allowed(&k, PARENT, STAFF));
    assert_true(msg_direct_allowed(&k, STAFF, PARENT));
    assert_false(msg_direct_allowed(&k, PARENT, PARENT));
    assert_false(msg_may_create_room(&k, PARENT));
    assert_true(msg_may_create_room(&k, STAFF));
    msg_policy c;
    msg_policy_defaults(MSG_PRESET_COMMUNITY, &c);
    assert_true(msg_direct_allowed(&c, PARENT, PARENT));
    assert_true(msg_direct_allowed(&c, PUPIL, PUPIL));
    assert_true(msg_may_create_room(&c, PARENT));
    assert_int_equal(msg_preset_for_school_kind(1), MSG_PRESET_SCHOOL);
    assert_int_equal(msg_preset_for_school_kind(2), MSG_PRESET_KITA);
    assert_int_equal(msg_preset_for_school_kind(3), MSG_PRESET_COMMUNITY);
    assert_int_equal(msg_preset_for_school_kind(0), MSG_PRESET_SCHOOL);
}

static void names_and_rules(void **state)
{
    for (int i = 0; i < MSG_NROLES; i++)
        assert_int_equal(msg_role_bit(msg_role_name(i)), 1u << i);
    assert_int_equal(msg_role_bit("operator"), 0);
    assert_int_equal(msg_role_bit("Pupil"), 0);
    assert_null(msg_role_name(MSG_NROLES));
    int from, to;
    assert_true(msg_direct_rule_parse("pupil>teacher", &from, &to));
    assert_int_equal(from, 0);
    assert_int_equal(to, 1);
    assert_true(msg_direct_rule_parse("school_admin>parent", &from, &to));
    assert_int_equal(from, 5);
    assert_int_equal(to, 2);
    assert_false(msg_direct_rule_parse("pupil", &from, &to));
    assert_false(msg_direct_rule_parse(">teacher", &from, &to));
    assert_false(msg_direct_rule_parse("pupil>", &from, &to));
    assert_false(msg_direct_rule_parse("pupil>god", &from, &to));
    msg_preset pr;
    assert_true(msg_preset_parse("kita", &pr));
    assert_int_equal(pr, MSG_PRESET_KITA);
    assert_false(msg_preset_parse("KITA", &pr));
    assert_string_equal(msg_preset_name(MSG_PRESET_COMMUNITY), "community");
    assert_int_equal(msg_room_kind_parse("announcement"), MSG_KIND_ANNOUNCEMENT);
    assert_int_equal(msg_room_kind_parse("nope"), 0);
    assert_string_equal(msg_room_kind_name(MSG_KIND_ROSTER), "roster");
}

static void callers(void **state)
{
    char *roles_a[] = {"teacher", "parent"};
    char *roles_b[] = {"pupil"};
    Kreide__CallerSchool a = KREIDE__CALLER_SCHOOL__INIT, b = KREIDE__CALLER_SCHOOL__INIT;
    a.school_id = "01a2025c-7cba-7c2f-b82b-5187887b1262";
    a.roles = roles_a;
    a.n_roles = 2;
    b.school_id = "01a2025c-7cba-7c2f-b82b-5187887b1263";
    b.roles = roles_b;
    b.n_roles = 1;
    Kreide__CallerSchool *schools[] = {&a, &b};
    Kreide__Caller c = KREIDE__CALLER__INIT;
    c.kind = KREIDE__CALLER__KIND__USER;
    c.user_id = "01a2025c-7cd0-76f7-aaf4-b9d806a7650a";
    c.schools = schools;
    c.n_schools = 2;
    assert_true(msg_caller_is_person(&c));
    assert_int_equal(msg_caller_roles_at(&c, a.school_id), TEACHER | PARENT);
    assert_int_equal(msg_caller_roles_at(&c, "01A2025C-7CBA-7C2F-B82B-5187887B1263"), PUPIL);
    assert_int_equal(msg_caller_roles_at(&c, "01a2025c-7cba-7c2f-b82b-5187887b1264"), 0);
    /* A service or anonymous caller holds no standing in rooms, whatever
     * its envelope lists. */
    c.kind = KREIDE__CALLER__KIND__SERVICE;
    assert_false(msg_caller_is_person(&c));
    assert_int_equal(msg_caller_roles_at(&c, a.school_id), 0);
    c.kind = KREIDE__CALLER__KIND__USER;
    c.user_id = "not-a-uuid";
    assert_int_equal(msg_caller_roles_at(&c, a.school_id), 0);
    char *op[] = {"operator"};
    c.roles = op;
    c.n_roles = 1;
    assert_true(msg_caller_is_operator(&c));
    c.kind = KREIDE__CALLER__KIND__ANONYMOUS;
    assert_false(msg_caller_is_operator(&c));
}

static void room_permissions(void **state)
{
    msg_standing member = {.joined = true};
    msg_standing muted = {.joined = true, .muted = true};
    msg_standing moderator = {.joined = true, .moderator = true};
    msg_standing outsider = {0};
    assert_true(msg_may_post(MSG_KIND_GROUP, false, &member));
    assert_false(msg_may_post(MSG_KIND_GROUP, true, &member));
    assert_true(msg_may_post(MSG_KIND_GROUP, true, &moderator));
    assert_false(msg_may_post(MSG_KIND_GROUP, false, &muted));
    assert_false(msg_may_post(MSG_KIND_GROUP, false, &outsider));
    assert_false(msg_may_post(MSG_KIND_ANNOUNCEMENT, false, &member));
    assert_true(msg_may_post(MSG_KIND_ANNOUNCEMENT, false, &moderator));
    assert_true(msg_may_post(MSG_KIND_DIRECT, false, &member));
    /* Announcement members react; locked rooms and muted members do not. */
    assert_true(msg_may_react(false, &member));
    assert_false(msg_may_react(true, &member));
    assert_false(msg_may_react(false, &muted));
    assert_false(msg_may_react(false, &outsider));
    assert_true(msg_may_pin(MSG_KIND_DIRECT, &member));
    assert_false(msg_may_pin(MSG_KIND_GROUP, &member));
    assert_true(msg_may_pin(MSG_KIND_ROSTER, &moderator));
    assert_true(msg_may_manage_members(MSG_KIND_GROUP, false, &moderator));
    assert_false(msg_may_manage_members(MSG_KIND_GROUP, false, &member));
    assert_false(msg_may_manage_members(MSG_KIND_ROSTER, true, &moderator));
    assert_false(msg_may_manage_members(MSG_KIND_ANNOUNCEMENT, true, &moderator));
    assert_true(msg_may_manage_members(MSG_KIND_ANNOUNCEMENT, false, &moderator));
    assert_false(msg_may_manage_members(MSG_KIND_DIRECT, false, &moderator));
    /* Moderation: the room's moderators, and the school's admins and heads
     * outside direct rooms. */
    assert_true(msg_may_moderate(MSG_KIND_GROUP, &moderator, 0));
    assert_false(msg_may_moderate(MSG_KIND_GROUP, &member, TEACHER));
    assert_true(msg_may_moderate(MSG_KIND_ROSTER, &outsider, ADMIN));
    assert_true(msg_may_moderate(MSG_KIND_ROSTER, &outsider, HEAD));
    assert_false(msg_may_moderate(MSG_KIND_DIRECT, &outsider, ADMIN));
    assert_false(msg_may_moderate(MSG_KIND_DIRECT, &moderator, ADMIN));
    assert_true(msg_is_school_moderator(ADMIN));
    assert_false(msg_is_school_moderator(TEACHER | STAFF));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(school_defaults), cmocka_unit_test(kita_and_community), cmocka_unit_test(names_and_rules),
        cmocka_unit_test(callers),         cmocka_unit_test(room_permissions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
