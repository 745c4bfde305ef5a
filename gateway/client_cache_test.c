#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_cache.h"

/* A packed OidcClient named `id` (malloc'd; *len set). */
static uint8_t *packed_client(const char *id, const char *school, size_t *len)
{
    Kreide__Identity__OidcClient c = KREIDE__IDENTITY__OIDC_CLIENT__INIT;
    c.client_id = (char *)id;
    c.school_id = (char *)school;
    c.type = KREIDE__IDENTITY__CLIENT_TYPE__CONFIDENTIAL;
    *len = protobuf_c_message_get_packed_size(&c.base);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    protobuf_c_message_pack(&c.base, buf);
    return buf;
}

static void put(gw_client_cache *cache, const char *id, const char *school, const char *secret, int64_t now)
{
    size_t len;
    uint8_t *buf = packed_client(id, school, &len);
    gw_client_cache_put(cache, id, secret, buf, len, now);
    free(buf);
}

static void hit_needs_the_same_id_and_secret(void **state)
{
    gw_client_cache *cache = gw_client_cache_new(8, 30000);
    assert_null(gw_client_cache_get(cache, "app", "s3cret", 1000));
    put(cache, "app", "school-a", "s3cret", 1000);
    const Kreide__Identity__OidcClient *c = gw_client_cache_get(cache, "app", "s3cret", 1001);
    assert_non_null(c);
    assert_string_equal(c->client_id, "app");
    assert_string_equal(c->school_id, "school-a");
    /* Another secret, a prefix of it, an empty one, another id: misses. */
    assert_null(gw_client_cache_get(cache, "app", "wrong", 1001));
    assert_null(gw_client_cache_get(cache, "app", "s3cre", 1001));
    assert_null(gw_client_cache_get(cache, "app", "", 1001));
    assert_null(gw_client_cache_get(cache, "ap", "s3cret", 1001));
    assert_null(gw_client_cache_get(cache, "app2", "s3cret", 1001));
    /* A miss does not spoil the entry. */
    assert_non_null(gw_client_cache_get(cache, "app", "s3cret", 1002));
    gw_client_cache_free(cache);
}

static void entries_expire_after_the_ttl(void **state)
{
    gw_client_cache *cache = gw_client_cache_new(8, 30000);
    put(cache, "app", "school-a", "s3cret", 1000);
    assert_non_null(gw_client_cache_get(cache, "app", "s3cret", 30999));
    assert_null(gw_client_cache_get(cache, "app", "s3cret", 31000));
    /* A clock that went back does not stretch an entry's life. */
    assert_null(gw_client_cache_get(cache, "app", "s3cret", 999));
    /* Stored again, it lives again, with the new record. */
    put(cache, "app", "school-b", "s3cret", 40000);
    const Kreide__Identity__OidcClient *c = gw_client_cache_get(cache, "app", "s3cret", 40001);
    assert_non_null(c);
    assert_string_equal(c->school_id, "school-b");
    assert_int_equal(gw_client_cache_size(cache), 1);
    gw_client_cache_free(cache);
}

static void one_entry_per_client_the_latest_secret(void **state)
{
    gw_client_cache *cache = gw_client_cache_new(8, 30000);
    put(cache, "app", "school-a", "old", 1000);
    put(cache, "app", "school-a", "new", 2000);
    assert_int_equal(gw_client_cache_size(cache), 1);
    assert_null(gw_client_cache_get(cache, "app", "old", 2001));
    assert_non_null(gw_client_cache_get(cache, "app", "new", 2001));
    gw_client_cache_free(cache);
}

static void full_cache_evicts_the_oldest(void **state)
{
    gw_client_cache *cache = gw_client_cache_new(3, 30000);
    put(cache, "a", "s", "x", 1000);
    put(cache, "b", "s", "x", 1001);
    put(cache, "c", "s", "x", 1002);
    put(cache, "a", "s", "x", 1003); /* refreshed: now the youngest */
    put(cache, "d", "s", "x", 1004); /* b goes */
    assert_int_equal(gw_client_cache_size(cache), 3);
    assert_null(gw_client_cache_get(cache, "b", "x", 1005));
    assert_non_null(gw_client_cache_get(cache, "a", "x", 1005));
    assert_non_null(gw_client_cache_get(cache, "c", "x", 1005));
    assert_non_null(gw_client_cache_get(cache, "d", "x", 1005));
    /* Many more clients never grow it past its capacity. */
    char id[16];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        put(cache, id, "s", "x", 2000 + i);
    }
    assert_int_equal(gw_client_cache_size(cache), 3);
    assert_non_null(gw_client_cache_get(cache, "c99", "x", 2100));
    assert_null(gw_client_cache_get(cache, "c96", "x", 2100));
    gw_client_cache_free(cache);
}

static void bad_records_are_not_stored(void **state)
{
    gw_client_cache *cache = gw_client_cache_new(8, 30000);
    /* Bytes that are no OidcClient. */
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    gw_client_cache_put(cache, "app", "s3cret", junk, sizeof(junk), 1000);
    assert_int_equal(gw_client_cache_size(cache), 0);
    /* A record of another client than the one authenticated. */
    size_t len;
    uint8_t *buf = packed_client("other", "s", &len);
    gw_client_cache_put(cache, "app", "s3cret", buf, len, 1000);
    free(buf);
    assert_int_equal(gw_client_cache_size(cache), 0);
    assert_null(gw_client_cache_get(cache, "app", "s3cret", 1001));
    assert_null(gw_client_cache_get(cache, "other", "s3cret", 1001));
    /* NULL arguments are refused quietly. */
    assert_null(gw_client_cache_get(cache, NULL, "s3cret", 1001));
    assert_null(gw_client_cache_get(cache, "app", NULL, 1001));
    assert_null(gw_client_cache_get(NULL, "app", "s3cret", 1001));
    gw_client_cache_free(cache);
    gw_client_cache_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hit_needs_the_same_id_and_secret),
        cmocka_unit_test(entries_expire_after_the_ttl),
        cmocka_unit_test(one_entry_per_client_the_latest_secret),
        cmocka_unit_test(full_cache_evicts_the_oldest),
        cmocka_unit_test(bad_records_are_not_stored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
