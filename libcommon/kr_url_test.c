#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kr_url.h"

static long dec(const char *s, char *out, size_t cap, unsigned flags)
{
    return kr_url_decode(s, strlen(s), out, cap, flags);
}

static void decodes_escapes_and_plus(void **state)
{
    char out[64];
    assert_int_equal(dec("a%20b%2Fc", out, sizeof(out), 0), 5);
    assert_string_equal(out, "a b/c");
    assert_int_equal(dec("M%C3%BCller+Kita", out, sizeof(out), KR_URL_FORM), 12);
    assert_string_equal(out, "Müller Kita");
    assert_int_equal(dec("a+b", out, sizeof(out), 0), 3);
    assert_string_equal(out, "a+b"); /* '+' is only a space in forms */
    assert_int_equal(dec("", out, sizeof(out), 0), 0);
    assert_string_equal(out, "");
}

static void refuses_malformed_and_dangerous_escapes(void **state)
{
    char out[64];
    assert_int_equal(dec("%", out, sizeof(out), 0), -1);
    assert_int_equal(dec("%4", out, sizeof(out), 0), -1);
    assert_int_equal(dec("ab%G1", out, sizeof(out), 0), -1);
    assert_int_equal(dec("%00", out, sizeof(out), 0), -1);
    assert_int_equal(dec("a%2fb", out, sizeof(out), KR_URL_NO_SLASH), -1);
    assert_int_equal(dec("a%2fb", out, sizeof(out), 0), 3);
}

static void never_writes_past_its_room(void **state)
{
    char out[4] = {'x', 'x', 'x', 'x'};
    assert_int_equal(dec("abcd", out, sizeof(out), 0), -1);
    assert_int_equal(dec("abc", out, sizeof(out), 0), 3);
    assert_int_equal(kr_url_decode("a", 1, out, 0, 0), -1);
    /* The escape at the very end of the input is not read past src. */
    const char buf[] = {'a', '%', '4'};
    assert_int_equal(kr_url_decode(buf, sizeof(buf), out, sizeof(out), 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes_escapes_and_plus),
        cmocka_unit_test(refuses_malformed_and_dangerous_escapes),
        cmocka_unit_test(never_writes_past_its_room),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
