#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kr_id.h"

static void uuid7_has_version_variant_and_time_prefix(void **state)
{
    kr_uuid_str u;
    kr_uuid7_at(&u, 0x0123456789abULL);
    assert_int_equal(strlen(u.s), KR_UUID_STRLEN);
    assert_memory_equal(u.s, "01234567-89ab-7", 15);
    assert_true(u.s[19] == '8' || u.s[19] == '9' || u.s[19] == 'a' || u.s[19] == 'b');
    assert_true(kr_uuid_valid(u.s));
}

static void uuid7_sorts_by_time_and_is_unique(void **state)
{
    kr_uuid_str a, b, c;
    kr_uuid7_at(&a, 1000);
    kr_uuid7_at(&b, 2000);
    kr_uuid7_at(&c, 2000);
    assert_true(strcmp(a.s, b.s) < 0);
    assert_string_not_equal(b.s, c.s);
}

static void uuid_valid_rejects_malformed(void **state)
{
    assert_true(kr_uuid_valid("0190b3c4-7d2e-7a11-9f00-0123456789AB"));
    assert_false(kr_uuid_valid(NULL));
    assert_false(kr_uuid_valid(""));
    assert_false(kr_uuid_valid("0190b3c4-7d2e-7a11-9f00-0123456789a"));
    assert_false(kr_uuid_valid("0190b3c4-7d2e-7a11-9f00-0123456789abc"));
    assert_false(kr_uuid_valid("0190b3c47d2e-7a11-9f00-0123456789abc"));
    assert_false(kr_uuid_valid("0190b3c4-7d2e-7a11-9f00-0123456789ag"));
    assert_false(kr_uuid_valid("'; drop table x; --1111111111111111111"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uuid7_has_version_variant_and_time_prefix),
        cmocka_unit_test(uuid7_sorts_by_time_and_is_unique),
        cmocka_unit_test(uuid_valid_rejects_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
