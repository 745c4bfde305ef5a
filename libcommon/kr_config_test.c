#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kr_config.h"

static char tmpdir[PATH_MAX];

static int make_tmpdir(void **state)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/kr_config_test.XXXXXX", base && base[0] ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    return remove(path);
}

static int remove_tmpdir(void **state)
{
    return nftw(tmpdir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Writes `len` bytes to a new file in the test directory; returns its path
 * in a static buffer. */
static const char *write_file(const char *name, const char *data, size_t len)
{
    static char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void clear_env(void)
{
    static const char *const vars[] = {"KR_T_STR",  "KR_T_REQ",        "KR_T_SECRET", "KR_T_SECRET_FILE", "KR_T_INT",
                                       "KR_T_BOOL", "KR_T_PLAIN_FILE", "KR_T_PLAIN",  "KR_T_A",           "KR_T_B"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
}

static int setup(void **state)
{
    clear_env();
    *state = kr_config_new();
    return 0;
}

static int teardown(void **state)
{
    kr_config_free(*state);
    clear_env();
    return 0;
}

/* The only recorded problem, failing the test unless there is exactly one. */
static const char *only_error(kr_config *cfg)
{
    if (kr_config_error_count(cfg) != 1)
        fail_msg("expected 1 problem, got %zu (first: %s)", kr_config_error_count(cfg),
                 kr_config_error_count(cfg) ? kr_config_error(cfg, 0) : "-");
    return kr_config_error(cfg, 0);
}

/* ---------------------------------------------------------------- strings */

static void str_returns_an_owned_copy_or_the_default(void **state)
{
    kr_config *cfg = *state;
    setenv("KR_T_STR", "hello", 1);
    const char *v = kr_config_str(cfg, "KR_T_STR", "def", 0);
    assert_string_equal(v, "hello");
    /* The copy outlives changes to the environment. */
    setenv("KR_T_STR", "changed", 1);
    unsetenv("KR_T_STR");
    assert_string_equal(v, "hello");

    assert_string_equal(kr_config_str(cfg, "KR_T_STR", "def", 0), "def");
    assert_null(kr_config_str(cfg, "KR_T_STR", NULL, 0));
    setenv("KR_T_STR", "", 1);
    assert_string_equal(kr_config_str(cfg, "KR_T_STR", "def", 0), "def");
    assert_int_equal(kr_config_error_count(cfg), 0);
}

static void required_str_missing_or_empty_is_an_error(void **state)
{
    kr_config *cfg = *state;
    assert_string_equal(kr_config_str(cfg, "KR_T_REQ", "fallback", KR_CFG_REQUIRED), "fallback");
    assert_string_equal(only_error(cfg), "KR_T_REQ: required, but not set");

    setenv("KR_T_REQ", "", 1);
    assert_null(kr_config_str(cfg, "KR_T_REQ", NULL, KR_CFG_REQUIRED));
    assert_int_equal(kr_config_error_count(cfg), 2);
    assert_string_equal(kr_config_error(cfg, 1), "KR_T_REQ: required, but not set");

    setenv("KR_T_REQ", "x", 1);
    assert_string_equal(kr_config_str(cfg, "KR_T_REQ", NULL, KR_CFG_REQUIRED), "x");
    assert_int_equal(kr_config_error_count(cfg), 2);
}

/* ---------------------------------------------------------------- secrets */

static void secret_comes_from_file_with_one_newline_stripped(void **state)
{
    kr_config *cfg = *state;
    setenv("KR_T_SECRET_FILE", write_file("s1", "s3cret\n", 7), 1);
    assert_string_equal(kr_config_str(cfg, "KR_T_SECRET", NULL, KR_CFG_SECRET | KR_CFG_REQUIRED), "s3cret");

    setenv("KR_T_SECRET_FILE", write_file("s2", "two\n\n", 5), 1);
    assert_string_equal(kr_config_str(cfg, "KR_T_SECRET", NULL, KR_CFG_SECRET), "two\n");

    setenv("KR_T_SECRET_FILE", write_file("s3", "crlf\r\n", 6), 1);
    assert_string_equal(kr_config_str(cfg, "KR_T_SECRET", NULL, KR_CFG_SECRET), "crlf");

    setenv("KR_T_SECRET_FILE", write_file("s4", "no newline ", 11), 1);
    assert_string_equal(kr_config_str(cfg, "KR_T_SECRET", NULL, KR_CFG_SECRET), "no newline ");

    /* Without the flag NAME_FILE means nothing. */
    setenv("KR_T_PLAIN_FILE", write_file("s5", "x", 1), 1);
    assert_string_equal(kr_config_str(cfg, "KR_T_PLAIN", "def", 0), "def");

    /* A secret may still come straight from the variable. */
    unsetenv("KR_T_SECRET_FILE");
    setenv("KR_T_SECRET", "direct", 1);
    assert_string_equal(kr_config_str(cfg, "KR_T_SECRET", NULL, KR_CFG_SECRET), "direct");
    assert_int_equal(kr_config_error_count(cfg), 0);
}

static void secret_set_twice_is_an_error_that_does_not_show_the_value(void **state)
{
    kr_config *cfg = *state;
    setenv("KR_T_SECRET", "topsecret", 1);
    setenv("KR_T_SECRET_FILE", write_file("both", "filesecret\n", 11), 1);
    assert_null(kr_config_str(cfg, "KR_T_SECRET", NULL, KR_CFG_SECRET));
    const char *e = only_error(cfg);
    assert_string_equal(e, "KR_T_SECRET: both KR_T_SECRET and KR_T_SECRET_FILE are set; set only one");
    assert_null(strstr(e, "topsecret"));
    assert_null(strstr(e, "filesecret"));
}

static void required_secret_names_both_variables(void **state)
{
    kr_config *cfg = *state;
    assert_null(kr_config_str(cfg, "KR_T_SECRET", NULL, KR_CFG_SECRET | KR_CFG_REQUIRED));
    assert_string_equal(only_error(cfg), "KR_T_SECRET: required, but neither KR_T_SECRET nor KR_T_SECRET_FILE is set");

    setenv("KR_T_SECRET_FILE", write_file("empty", "\n", 1), 1);
    assert_null(kr_config_str(cfg, "KR_T_SECRET", NULL, KR_CFG_SECRET | KR_CFG_REQUIRED));
    assert_int_equal(kr_config_error_count(cfg), 2);
    assert_string_equal(kr_config_error(cfg, 1), "KR_T_SECRET: required, but the file named by KR_T_SECRET_FILE is empty");
}

static void unreadable_or_oversized_secret_file_is_an_error(void **state)
{
    kr_config *cfg = *state;
    char missing[PATH_MAX + 32];
    snprintf(missing, sizeof(missing), "%s/does-not-exist", tmpdir);
    setenv("KR_T_SECRET_FILE", missing, 1);
    assert_string_equal(kr_config_str(cfg, "KR_T_SECRET", "def", KR_CFG_SECRET), "def");
    const char *e = only_error(cfg);
    assert_true(strncmp(e, "KR_T_SECRET_FILE: cannot open '", 31) == 0);
    assert_non_null(strstr(e, "does-not-exist"));
    assert_non_null(strstr(e, "No such file or directory"));

    /* A directory opens but cannot be read. */
    setenv("KR_T_SECRET_FILE", tmpdir, 1);
    assert_null(kr_config_str(cfg, "KR_T_SECRET", NULL, KR_CFG_SECRET));
    assert_int_equal(kr_config_error_count(cfg), 2);
    assert_true(strncmp(kr_config_error(cfg, 1), "KR_T_SECRET_FILE: cannot read '", 31) == 0);

    char *big = malloc(65537);
    assert_non_null(big);
    memset(big, 'k', 65537);
    setenv("KR_T_SECRET_FILE", write_file("full", big, 65536), 1);
    const char *v = kr_config_str(cfg, "KR_T_SECRET", NULL, KR_CFG_SECRET);
    assert_non_null(v);
    assert_int_equal(strlen(v), 65536);
    assert_int_equal(kr_config_error_count(cfg), 2);

    setenv("KR_T_SECRET_FILE", write_file("over", big, 65537), 1);
    assert_null(kr_config_str(cfg, "KR_T_SECRET", NULL, KR_CFG_SECRET));
    assert_int_equal(kr_config_error_count(cfg), 3);
    assert_non_null(strstr(kr_config_error(cfg, 2), "is larger than 65536 bytes"));
    assert_null(strstr(kr_config_error(cfg, 2), "kkkk"));
    free(big);

    setenv("KR_T_SECRET_FILE", write_file("nul", "a\0b", 3), 1);
    assert_null(kr_config_str(cfg, "KR_T_SECRET", NULL, KR_CFG_SECRET));
    assert_int_equal(kr_config_error_count(cfg), 4);
    assert_non_null(strstr(kr_config_error(cfg, 3), "contains a NUL byte"));
}

/* --------------------------------------------------------------- integers */

static void int_accepts_decimal_in_range(void **state)
{
    kr_config *cfg = *state;
    assert_int_equal(kr_config_int(cfg, "KR_T_INT", 8, 1, 256), 8);
    setenv("KR_T_INT", "", 1);
    assert_int_equal(kr_config_int(cfg, "KR_T_INT", 8, 1, 256), 8);
    setenv("KR_T_INT", "42", 1);
    assert_int_equal(kr_config_int(cfg, "KR_T_INT", 8, 1, 256), 42);
    setenv("KR_T_INT", "256", 1);
    assert_int_equal(kr_config_int(cfg, "KR_T_INT", 8, 1, 256), 256);
    setenv("KR_T_INT", "-10", 1);
    assert_int_equal(kr_config_int(cfg, "KR_T_INT", 0, -10, 10), -10);
    setenv("KR_T_INT", "+7", 1);
    assert_int_equal(kr_config_int(cfg, "KR_T_INT", 0, -10, 10), 7);
    setenv("KR_T_INT", "9223372036854775807", 1);
    assert_true(kr_config_int(cfg, "KR_T_INT", 0, INT64_MIN, INT64_MAX) == INT64_MAX);
    setenv("KR_T_INT", "-9223372036854775808", 1);
    assert_true(kr_config_int(cfg, "KR_T_INT", 0, INT64_MIN, INT64_MAX) == INT64_MIN);
    assert_int_equal(kr_config_error_count(cfg), 0);
}

static void int_rejects_junk_overflow_and_out_of_range(void **state)
{
    static const char *const bad[] = {"x", "12abc", " 1", "1 ", "0x10", "-", "+", "1.5", "99999999999999999999", "0", "257"};
    kr_config *cfg = *state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("KR_T_INT", bad[i], 1);
        assert_int_equal(kr_config_int(cfg, "KR_T_INT", 8, 1, 256), 8);
        assert_int_equal(kr_config_error_count(cfg), i + 1);
        char want[160];
        snprintf(want, sizeof(want), "KR_T_INT: expected an integer from 1 to 256, got '%s'", bad[i]);
        assert_string_equal(kr_config_error(cfg, i), want);
    }
}

static void bad_values_are_quoted_safely(void **state)
{
    kr_config *cfg = *state;
    setenv("KR_T_INT", "1\n2\x1b[31m", 1);
    kr_config_int(cfg, "KR_T_INT", 0, 0, 10);
    assert_string_equal(only_error(cfg), "KR_T_INT: expected an integer from 0 to 10, got '1\\x0a2\\x1b[31m'");

    char longval[200];
    memset(longval, 'z', sizeof(longval) - 1);
    longval[sizeof(longval) - 1] = '\0';
    setenv("KR_T_INT", longval, 1);
    kr_config_int(cfg, "KR_T_INT", 0, 0, 10);
    const char *e = kr_config_error(cfg, 1);
    assert_non_null(e);
    assert_non_null(strstr(e, "zzz...'"));
    assert_true(strlen(e) < 150);
}

/* --------------------------------------------------------------- booleans */

static void bool_accepts_the_usual_spellings(void **state)
{
    static const char *const yes[] = {"true", "TRUE", "1", "yes", "Yes", "on", "ON"};
    static const char *const no[] = {"false", "False", "0", "no", "NO", "off", "Off"};
    kr_config *cfg = *state;
    assert_true(kr_config_bool(cfg, "KR_T_BOOL", true));
    assert_false(kr_config_bool(cfg, "KR_T_BOOL", false));
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        setenv("KR_T_BOOL", yes[i], 1);
        assert_true(kr_config_bool(cfg, "KR_T_BOOL", false));
        setenv("KR_T_BOOL", no[i], 1);
        assert_false(kr_config_bool(cfg, "KR_T_BOOL", true));
    }
    assert_int_equal(kr_config_error_count(cfg), 0);

    setenv("KR_T_BOOL", "maybe", 1);
    assert_true(kr_config_bool(cfg, "KR_T_BOOL", true));
    assert_string_equal(only_error(cfg), "KR_T_BOOL: expected true/false, yes/no, on/off or 1/0, got 'maybe'");
}

/* ----------------------------------------------------- collecting problems */

static void fail_records_a_line_naming_the_variable(void **state)
{
    kr_config *cfg = *state;
    kr_config_fail(cfg, "KREIDE_HTTP_ADDR", "expected host:port, got '%s'", "x");
    assert_string_equal(only_error(cfg), "KREIDE_HTTP_ADDR: expected host:port, got 'x'");
    kr_config_fail(cfg, "KREIDE_X", "two\nlines");
    assert_string_equal(kr_config_error(cfg, 1), "KREIDE_X: two lines");
}

static char *check_output(kr_config *cfg, const char *program, size_t *count)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/stderr.txt", tmpdir);
    FILE *f = fopen(path, "w+");
    assert_non_null(f);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
    *count = kr_config_check(cfg, program);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    static char out[32768];
    rewind(f);
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    fclose(f);
    return out;
}

static void check_reports_every_problem_at_once(void **state)
{
    kr_config *cfg = *state;
    setenv("KR_T_INT", "many", 1);
    setenv("KR_T_BOOL", "perhaps", 1);
    kr_config_int(cfg, "KR_T_INT", 4, 1, 256);
    kr_config_str(cfg, "KR_T_REQ", NULL, KR_CFG_REQUIRED);
    kr_config_bool(cfg, "KR_T_BOOL", false);
    kr_config_str(cfg, "KR_T_STR", "ok", 0);
    assert_int_equal(kr_config_error_count(cfg), 3);

    size_t count;
    const char *out = check_output(cfg, "kreide-identity", &count);
    assert_int_equal(count, 3);
    assert_string_equal(out, "kreide-identity: KR_T_INT: expected an integer from 1 to 256, got 'many'\n"
                             "kreide-identity: KR_T_REQ: required, but not set\n"
                             "kreide-identity: KR_T_BOOL: expected true/false, yes/no, on/off or 1/0, got 'perhaps'\n");
}

static void check_of_a_valid_configuration_is_silent(void **state)
{
    kr_config *cfg = *state;
    setenv("KR_T_A", "3", 1);
    setenv("KR_T_B", "on", 1);
    assert_int_equal(kr_config_int(cfg, "KR_T_A", 1, 1, 5), 3);
    assert_true(kr_config_bool(cfg, "KR_T_B", false));
    size_t count;
    assert_string_equal(check_output(cfg, "prog", &count), "");
    assert_int_equal(count, 0);
}

static void problems_beyond_the_cap_are_counted(void **state)
{
    kr_config *cfg = *state;
    for (int i = 0; i < 300; i++)
        kr_config_fail(cfg, "KR_T_A", "problem %d", i);
    assert_int_equal(kr_config_error_count(cfg), 256);
    assert_string_equal(kr_config_error(cfg, 255), "KR_T_A: problem 255");
    size_t count;
    const char *out = check_output(cfg, "prog", &count);
    assert_int_equal(count, 300);
    assert_non_null(strstr(out, "prog: 44 more configuration problems not shown\n"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(str_returns_an_owned_copy_or_the_default),
        T(required_str_missing_or_empty_is_an_error),
        T(secret_comes_from_file_with_one_newline_stripped),
        T(secret_set_twice_is_an_error_that_does_not_show_the_value),
        T(required_secret_names_both_variables),
        T(unreadable_or_oversized_secret_file_is_an_error),
        T(int_accepts_decimal_in_range),
        T(int_rejects_junk_overflow_and_out_of_range),
        T(bad_values_are_quoted_safely),
        T(bool_accepts_the_usual_spellings),
        T(fail_records_a_line_naming_the_variable),
        T(check_reports_every_problem_at_once),
        T(check_of_a_valid_configuration_is_silent),
        T(problems_beyond_the_cap_are_counted),
    };
#undef T
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
