/* Unit tests of kreidectl's pure parts: escaping for paths and queries, the
 * command-line words for the API's enums, the human-readable lines and the
 * report of an API error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "kreidectl.h"

static void escaping(void **state)
{
    char out[32];
    assert_int_equal(ctl_escape("0192abcd-EF_.~", out, sizeof(out)), 14);
    assert_string_equal(out, "0192abcd-EF_.~");
    assert_int_equal(ctl_escape("a b/c?d&e=f", out, sizeof(out)), 21);
    assert_string_equal(out, "a%20b%2Fc%3Fd%26e%3Df");
    assert_true(ctl_escape("Füchse", out, sizeof(out)) > 0);
    assert_string_equal(out, "F%C3%BCchse");
    assert_int_equal(ctl_escape("", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    /* Exactly full (NUL included) fits; one byte less does not. */
    assert_int_equal(ctl_escape("abc", out, 4), 3);
    assert_int_equal(ctl_escape("abc", out, 3), -1);
    assert_int_equal(ctl_escape("a/", out, 4), -1);
}

static void enum_words(void **state)
{
    assert_string_equal(ctl_enum_name(ctl_school_kinds, "kita"), "KITA");
    assert_string_equal(ctl_enum_name(ctl_school_kinds, "SCHOOL"), "SCHOOL");
    assert_null(ctl_enum_name(ctl_school_kinds, "gymnasium"));
    assert_string_equal(ctl_enum_name(ctl_group_kinds, "staff"), "STAFF_ROOM");
    assert_string_equal(ctl_enum_name(ctl_group_kinds, "Staff_Room"), "STAFF_ROOM");
    assert_string_equal(ctl_enum_name(ctl_person_roles, "school_admin"), "SCHOOL_ADMIN");
    assert_null(ctl_enum_name(ctl_person_roles, "operator"));
    assert_string_equal(ctl_enum_name(ctl_code_purposes, "reset"), "RESET");
    assert_string_equal(ctl_enum_name(ctl_client_types, "public"), "PUBLIC");
    assert_null(ctl_enum_name(ctl_client_types, ""));
}

/* The line ctl_print_object writes for `json`. */
static char *line(ctl_obj kind, const char *json)
{
    json_t *o = json_loads(json, 0, NULL);
    assert_non_null(o);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ctl_print_object(f, kind, o);
    fclose(f);
    json_decref(o);
    return buf;
}

static void expect_line(ctl_obj kind, const char *json, const char *want)
{
    char *got = line(kind, json);
    assert_string_equal(got, want);
    free(got);
}

static void human_lines(void **state)
{
    expect_line(CTL_OBJ_SCHOOL,
                "{\"id\":\"s1\",\"name\":\"Kita Sonnenschein\",\"kind\":\"KITA\",\"kennung\":\"\",\"carrier_id\":\"\"}",
                "school s1 \"Kita Sonnenschein\" KITA\n");
    expect_line(CTL_OBJ_SCHOOL, "{\"id\":\"s1\",\"name\":\"GS\",\"kind\":\"SCHOOL\",\"kennung\":\"123\",\"carrier_id\":\"c1\"}",
                "school s1 \"GS\" SCHOOL kennung 123 carrier c1\n");
    /* Quotes, backslashes and line breaks in names stay on one line. */
    expect_line(CTL_OBJ_CARRIER, "{\"id\":\"c1\",\"name\":\"A \\\"B\\\" \\\\ C\\nD\"}",
                "carrier c1 \"A \\\"B\\\" \\\\ C\\x0aD\"\n");
    expect_line(CTL_OBJ_USER,
                "{\"id\":\"u1\",\"username\":\"anna.braun\",\"display_name\":\"Anna Braun\",\"contexts\":"
                "[{\"school_id\":\"s1\",\"role\":\"PARENT\"},{\"school_id\":\"s2\",\"role\":\"PARENT\"}]}",
                "user u1 anna.braun \"Anna Braun\" PARENT@s1 PARENT@s2\n");
    expect_line(CTL_OBJ_GROUP,
                "{\"id\":\"g1\",\"name\":\"1a\",\"kind\":\"CLASS\",\"school_year\":\"2026/27\",\"school_id\":\"s1\"}",
                "group g1 \"1a\" CLASS year 2026/27 school s1\n");
    expect_line(CTL_OBJ_MEMBERSHIP,
                "{\"user_id\":\"u1\",\"group_id\":\"g1\",\"role\":\"LEADER\",\"valid_from\":\"\",\"valid_to\":\"\"}",
                "member u1 of g1 LEADER\n");
    expect_line(CTL_OBJ_PERSON, "{\"user_id\":\"u1\",\"username\":\"t\",\"display_name\":\"T\",\"roles\":[\"TEACHER\",\"HEAD\"]}",
                "person u1 t \"T\" TEACHER,HEAD\n");
    expect_line(CTL_OBJ_CODE, "{\"code\":\"ABCD-EFGH-JKLM\",\"purpose\":\"ENROLLMENT\",\"expires_at\":\"2026-12-01T00:00:00Z\"}",
                "code ABCD-EFGH-JKLM ENROLLMENT expires 2026-12-01T00:00:00Z\n");
    expect_line(CTL_OBJ_CLIENT, "{\"client_id\":\"k1\",\"name\":\"Wiki\",\"type\":\"CONFIDENTIAL\",\"client_secret\":\"s3cr3t\"}",
                "client k1 \"Wiki\" CONFIDENTIAL\nsecret s3cr3t (shown once: keep it now)\n");
    expect_line(CTL_OBJ_CLIENT, "{\"client_id\":\"k2\",\"name\":\"App\",\"type\":\"PUBLIC\",\"client_secret\":\"\"}",
                "client k2 \"App\" PUBLIC\n");
    /* Missing members print as empty, never crash. */
    expect_line(CTL_OBJ_GUARDIANSHIP, "{}", "guardian  of  at \n");
}

/* ctl_report_error's line for a reply of `status` with `body`. */
static char *report(long status, const char *body)
{
    ctl_reply r = {.status = status, .body = (char *)body, .len = strlen(body)};
    r.json = json_loads(body, 0, NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ctl_report_error(f, "POST", "/api/v1/x", &r);
    fclose(f);
    json_decref(r.json);
    return buf;
}

static void error_reports(void **state)
{
    char *s = report(409, "{\"error\":{\"code\":\"identity.kennung_taken\",\"message\":\"taken\",\"field\":\"kennung\"}}");
    assert_string_equal(s, "kreidectl: taken (identity.kennung_taken, field kennung, HTTP 409)\n");
    free(s);
    s = report(404, "{\"error\":{\"code\":\"api.not_found\",\"message\":\"no such API endpoint\"}}");
    assert_string_equal(s, "kreidectl: no such API endpoint (api.not_found, HTTP 404)\n"
                           "kreidectl: this gateway has no route POST /api/v1/x; it is older than this kreidectl\n");
    free(s);
    /* A 404 of the service is about the object, not the route. */
    s = report(404, "{\"error\":{\"code\":\"identity.not_found\",\"message\":\"no such user\",\"field\":\"\"}}");
    assert_string_equal(s, "kreidectl: no such user (identity.not_found, HTTP 404)\n");
    free(s);
    /* Something in between that does not speak the API's errors. */
    s = report(502, "<html>Bad Gateway</html>\nmore");
    assert_string_equal(s, "kreidectl: POST /api/v1/x: HTTP 502: <html>Bad Gateway</html>\n");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escaping),
        cmocka_unit_test(enum_words),
        cmocka_unit_test(human_lines),
        cmocka_unit_test(error_reports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
