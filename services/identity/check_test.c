/* Unit tests of check.c (input checks, stored names) and of the roster
 * event's JSON form (events.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "kr_metrics.h"

static void usernames(void **state)
{
    assert_true(ident_username_valid("abc"));
    assert_true(ident_username_valid("paul.schmidt-2_b"));
    assert_true(ident_username_valid("0123456789012345678901234567890123456789012345678901234567890123"));
    assert_false(ident_username_valid("01234567890123456789012345678901234567890123456789012345678901234"));
    assert_false(ident_username_valid("ab"));
    assert_false(ident_username_valid("Paul"));
    assert_false(ident_username_valid("paul schmidt"));
    assert_false(ident_username_valid("jürgen"));
    assert_false(ident_username_valid("a@b.de"));
    assert_false(ident_username_valid(""));
}

static void school_years(void **state)
{
    assert_true(ident_school_year_valid(""));
    assert_true(ident_school_year_valid("2026/27"));
    assert_true(ident_school_year_valid("2099/00"));
    assert_false(ident_school_year_valid("2026/28"));
    assert_false(ident_school_year_valid("2026/2027"));
    assert_false(ident_school_year_valid("2026-27"));
    assert_false(ident_school_year_valid("1899/00"));
    assert_false(ident_school_year_valid("20a6/27"));
}

static void dates(void **state)
{
    assert_true(ident_date_valid(""));
    assert_true(ident_date_valid("2026-08-01"));
    assert_true(ident_date_valid("2028-02-29"));
    assert_true(ident_date_valid("2000-02-29"));
    assert_false(ident_date_valid("2100-02-29"));
    assert_false(ident_date_valid("2027-02-29"));
    assert_false(ident_date_valid("2026-04-31"));
    assert_false(ident_date_valid("2026-13-01"));
    assert_false(ident_date_valid("2026-00-10"));
    assert_false(ident_date_valid("2026-1-01"));
    assert_false(ident_date_valid("01.08.2026"));
    assert_false(ident_date_valid("2026-08-01T00:00"));
}

static void text_lengths(void **state)
{
    assert_int_equal(ident_text_length("Jürgen"), 6);
    assert_int_equal(ident_text_length(""), 0);
    assert_int_equal(ident_text_length("a\tb"), -1);
    assert_int_equal(ident_text_length("\xc3"), -1);
}

static void stored_names_round_trip(void **state)
{
    for (int r = 1; r <= 6; r++) {
        const char *name = ident_person_role_name((Kreide__Identity__PersonRole)r);
        assert_non_null(name);
        assert_int_equal(ident_person_role_parse(name), r);
        assert_true(ident_schulconnex_valid(ident_schulconnex_default((Kreide__Identity__PersonRole)r)));
        /* Policy knows every role a person context can hold. */
        assert_int_not_equal(ident_role_bit(name), 0);
    }
    assert_null(ident_person_role_name(KREIDE__IDENTITY__PERSON_ROLE__PERSON_ROLE_UNSPECIFIED));
    assert_null(ident_person_role_name((Kreide__Identity__PersonRole)7));
    assert_string_equal(ident_schulconnex_default(KREIDE__IDENTITY__PERSON_ROLE__PARENT), "SorgBer");
    assert_string_equal(ident_schulconnex_default(KREIDE__IDENTITY__PERSON_ROLE__HEAD), "Leit");
    assert_false(ident_schulconnex_valid("lern"));
    assert_false(ident_schulconnex_valid("SysAdmin"));
    for (int k = 1; k <= 5; k++)
        assert_int_equal(ident_group_kind_parse(ident_group_kind_name((Kreide__Identity__GroupKind)k)), k);
    assert_string_equal(ident_group_kind_name(KREIDE__IDENTITY__GROUP_KIND__STAFF_ROOM), "staff");
    assert_int_equal(ident_group_kind_parse("nothing"), 0);
    assert_string_equal(ident_member_role_name(KREIDE__IDENTITY__MEMBER_ROLE__LEADER), "leader");
    assert_null(ident_member_role_name(KREIDE__IDENTITY__MEMBER_ROLE__MEMBER_ROLE_UNSPECIFIED));
}

static void event_json(void **state)
{
    ident_event e = {.type = "membership.added", .school_id = "s", .group_id = "g", .user_id = "u\"x", .role = "member"};
    char *s = ident_event_json(&e, 1790000000123LL);
    assert_string_equal(s, "{\"at\":\"2026-09-21T14:13:20.123Z\",\"group_id\":\"g\",\"role\":\"member\",\"school_id\":\"s\","
                           "\"type\":\"membership.added\",\"user_id\":\"u\\\"x\"}");
    free(s);
    ident_event g = {.type = "group.created", .school_id = "s", .group_id = "g"};
    s = ident_event_json(&g, 0);
    assert_non_null(strstr(s, "\"user_id\":\"\""));
    assert_non_null(strstr(s, "\"at\":\"1970-01-01T00:00:00.000Z\""));
    free(s);
}

static void events_off_without_a_url(void **state)
{
    ident_events *ev = ident_events_new(NULL, IDENT_EVENTS_CHANNEL);
    assert_false(ident_events_enabled(ev));
    ident_event e = {.type = "group.created", .school_id = "s", .group_id = "g"};
    ident_events_publish(ev, &e); /* does nothing, fails nothing */
    ident_events_free(ev);
    ev = ident_events_new("redis://127.0.0.1:1/0", IDENT_EVENTS_CHANNEL);
    assert_true(ident_events_enabled(ev));
    ident_events_publish(ev, &e); /* refused connection: logged and counted, no failure */
    ident_events_free(ev);
    size_t len = 0;
    char *text = kr_metrics_render(&len);
    assert_non_null(strstr(text, "kreide_identity_events_failed_total 1\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(usernames),
        cmocka_unit_test(school_years),
        cmocka_unit_test(dates),
        cmocka_unit_test(text_lengths),
        cmocka_unit_test(stored_names_round_trip),
        cmocka_unit_test(event_json),
        cmocka_unit_test(events_off_without_a_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
