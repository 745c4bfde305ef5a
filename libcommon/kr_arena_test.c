#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kr_arena.h"
#include "common.pb-c.h"

static void alloc_is_aligned_zeroed_and_reusable(void **state)
{
    kr_arena a;
    kr_arena_init(&a);
    for (int round = 0; round < 3; round++) {
        for (size_t i = 1; i < 3000; i += 7) {
            unsigned char *p = kr_arena_alloc(&a, i);
            assert_int_equal((uintptr_t)p % 16, 0);
            for (size_t j = 0; j < i; j++)
                assert_int_equal(p[j], 0);
            memset(p, 0xab, i);
        }
        kr_arena_reset(&a);
        assert_int_equal(kr_arena_used(&a), 0);
    }
    kr_arena_free(&a);
}

static void large_allocations_get_own_chunk(void **state)
{
    kr_arena a = {0};
    char *small = kr_arena_strdup(&a, "before");
    char *big = kr_arena_alloc(&a, 1 << 20);
    memset(big, 1, 1 << 20);
    char *after = kr_arena_strdup(&a, "after");
    assert_string_equal(small, "before");
    assert_string_equal(after, "after");
    assert_true(kr_arena_used(&a) >= (1u << 20));
    kr_arena_free(&a);
}

static void strings_and_printf(void **state)
{
    kr_arena a = {0};
    assert_string_equal(kr_arena_strdup(&a, NULL), "");
    assert_string_equal(kr_arena_strndup(&a, "abcdef", 3), "abc");
    assert_string_equal(kr_arena_printf(&a, "%s-%d", "x", 42), "x-42");
    kr_arena_free(&a);
}

static void protobuf_unpack_into_arena(void **state)
{
    Kreide__Reply r = KREIDE__REPLY__INIT;
    r.status = KREIDE__STATUS__NOT_FOUND;
    r.error_code = "school.not_found";
    r.message = "no such school";
    uint8_t buf[128];
    size_t n = kreide__reply__pack(&r, buf);

    kr_arena a = {0};
    ProtobufCAllocator al = kr_arena_allocator(&a);
    Kreide__Reply *u = kreide__reply__unpack(&al, n, buf);
    assert_non_null(u);
    assert_int_equal(u->status, KREIDE__STATUS__NOT_FOUND);
    assert_string_equal(u->error_code, "school.not_found");
    assert_null(kreide__reply__unpack(&al, 3, (const uint8_t *)"\xff\xff\xff"));
    kr_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(alloc_is_aligned_zeroed_and_reusable),
        cmocka_unit_test(large_allocations_get_own_chunk),
        cmocka_unit_test(strings_and_printf),
        cmocka_unit_test(protobuf_unpack_into_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
