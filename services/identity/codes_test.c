#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "codes.h"

static const uint8_t pepper[] = "0123456789abcdef0123456789abcdef";
#define PEPPER_LEN (sizeof(pepper) - 1)

static void generated_codes_have_the_printed_shape(void **state)
{
    for (int k = 0; k < 1000; k++) {
        ident_code_text t;
        ident_code_canon c;
        ident_code_generate(&t, &c);
        assert_int_equal(strlen(t.s), IDENT_CODE_TEXT_LEN);
        assert_int_equal(strlen(c.s), IDENT_CODE_CHARS);
        assert_true(t.s[4] == '-' && t.s[9] == '-');
        for (size_t i = 0; i < IDENT_CODE_CHARS; i++)
            assert_non_null(strchr(IDENT_CODE_ALPHABET, c.s[i]));
        ident_code_canon back;
        assert_int_equal(ident_code_normalize(t.s, &back), 0);
        assert_string_equal(back.s, c.s);
    }
}

/* The alphabet has no look-alikes. */
static void alphabet_leaves_out_look_alikes(void **state)
{
    const char *never = "0OQ1IL2Z5S68B";
    for (const char *p = never; *p != '\0'; p++) {
        if (strchr(IDENT_CODE_ALPHABET, *p) != NULL)
            fail_msg("'%c' is in the alphabet", *p);
    }
    assert_int_equal(strlen(IDENT_CODE_ALPHABET), IDENT_CODE_ALPHABET_SIZE);
}

/* Every character equally likely: 240,000 draws, each of the 23 characters
 * expected 10,435 times with a standard deviation of about 100. A generator
 * taking a random byte modulo 23 would give the first three characters about
 * 8 % more often, which the 4 % bound catches. */
static void characters_are_uniform(void **state)
{
    unsigned count[256] = {0};
    const int codes = 20000;
    for (int k = 0; k < codes; k++) {
        ident_code_canon c;
        ident_code_text t;
        ident_code_generate(&t, &c);
        for (size_t i = 0; i < IDENT_CODE_CHARS; i++)
            count[(unsigned char)c.s[i]]++;
    }
    double expected = (double)codes * IDENT_CODE_CHARS / IDENT_CODE_ALPHABET_SIZE;
    for (const char *p = IDENT_CODE_ALPHABET; *p != '\0'; p++) {
        double dev = (count[(unsigned char)*p] - expected) / expected;
        if (dev > 0.04 || dev < -0.04)
            fail_msg("'%c' drawn %u times, expected about %.0f", *p, count[(unsigned char)*p], expected);
    }
}

static void normalises_what_people_type(void **state)
{
    ident_code_canon c;
    const char *same[] = {"K7MR-3XWC-HTEA",    "k7mr-3xwc-htea", "K7MR 3XWC HTEA", " k7mr3xwchtea ",
                          "K7-MR-3X-WC-HT-EA", "k7mr.3xwc.htea", "K7MR_3XWC_HTEA"};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        if (ident_code_normalize(same[i], &c) != 0)
            fail_msg("'%s' refused", same[i]);
        assert_string_equal(c.s, "K7MR3XWCHTEA");
    }
    /* 6 is read as G */
    assert_int_equal(ident_code_normalize("6AAA-AAAA-AAA6", &c), 0);
    assert_string_equal(c.s, "GAAAAAAAAAAG");
}

static void refuses_what_is_not_a_code(void **state)
{
    ident_code_canon c;
    const char *bad[] = {
        "",
        "K7MR-3XWC-HTE",         /* 11 characters */
        "K7MR-3XWC-HTEAA",       /* 13 */
        "K7MR-3XWC-HTE0",        /* 0 is not in the alphabet and has no single partner */
        "K7MR-3XWC-HTEO",        /* O */
        "K7MR-3XWC-HTE1",        /* 1 */
        "K7MR-3XWC-HTEB",        /* B */
        "K7MR-3XWC-HTE\xc3\x84", /* Ä */
        "K7MR/3XWC/HTEA",
        "K7MR-3XWC-HTEA-K7MR-3XWC-HTEA-K7MR-3XWC-HTEA-K7MR-3XWC-HTEA-K7MR",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ident_code_normalize(bad[i], &c) == 0)
            fail_msg("'%s' accepted as %s", bad[i], c.s);
    }
    assert_int_equal(ident_code_normalize(NULL, &c), -1);
}

static void formats_in_groups(void **state)
{
    ident_code_canon c = {"K7MR3XWCHTEA"};
    ident_code_text t;
    ident_code_format(&c, &t);
    assert_string_equal(t.s, "K7MR-3XWC-HTEA");
}

/* HMAC-SHA256 with key "0123456789abcdef0123456789abcdef" over
 * "kreide.identity.code.v1:K7MR3XWCHTEA", computed independently. */
static void hash_is_hmac_sha256_with_the_pepper(void **state)
{
    static const uint8_t want[32] = {0x74, 0x3c, 0x19, 0x2b, 0x55, 0xcf, 0xd8, 0xe3, 0x2a, 0xec, 0x57,
                                     0x02, 0x24, 0x09, 0xde, 0xa2, 0x6c, 0x96, 0x75, 0x5a, 0xdc, 0xd2,
                                     0x1f, 0x0b, 0xb8, 0x8a, 0x59, 0x20, 0x6c, 0xbb, 0x1a, 0xa4};
    ident_code_canon c = {"K7MR3XWCHTEA"};
    uint8_t mac[IDENT_CODE_HASH_LEN];
    assert_int_equal(ident_code_hash(pepper, PEPPER_LEN, &c, mac), 0);
    assert_memory_equal(mac, want, sizeof(want));
    /* another pepper, another hash */
    static const uint8_t other[] = "fedcba9876543210fedcba9876543210";
    uint8_t mac2[IDENT_CODE_HASH_LEN];
    assert_int_equal(ident_code_hash(other, sizeof(other) - 1, &c, mac2), 0);
    assert_memory_not_equal(mac, mac2, sizeof(mac));
    /* a short pepper is refused */
    assert_int_equal(ident_code_hash(pepper, IDENT_CODE_PEPPER_MIN - 1, &c, mac2), -1);
}

static ident_code_record issue(const char *code, ident_code_purpose purpose, int64_t expires)
{
    ident_code_record r = {.purpose = purpose, .expires_at = expires};
    ident_code_canon c;
    assert_int_equal(ident_code_normalize(code, &c), 0);
    assert_int_equal(ident_code_hash(pepper, PEPPER_LEN, &c, r.hash), 0);
    return r;
}

static void check_accepts_the_right_code(void **state)
{
    ident_code_record r = issue("K7MR-3XWC-HTEA", IDENT_CODE_ENROLLMENT, 1000);
    assert_int_equal(ident_code_check(&r, pepper, PEPPER_LEN, "k7mr 3xwc htea", IDENT_CODE_ENROLLMENT, 999), IDENT_CODE_VALID);
}

static void check_refuses_each_way(void **state)
{
    ident_code_record r = issue("K7MR-3XWC-HTEA", IDENT_CODE_RESET, 1000);
    assert_int_equal(ident_code_check(&r, pepper, PEPPER_LEN, "K7MR-3XWC-HTEC", IDENT_CODE_RESET, 10), IDENT_CODE_MISMATCH);
    assert_int_equal(ident_code_check(&r, pepper, PEPPER_LEN, "K7MR-3XWC", IDENT_CODE_RESET, 10), IDENT_CODE_MALFORMED);
    assert_int_equal(ident_code_check(&r, pepper, PEPPER_LEN, "K7MR-3XWC-HTEA", IDENT_CODE_ENROLLMENT, 10),
                     IDENT_CODE_WRONG_PURPOSE);
    assert_int_equal(ident_code_check(&r, pepper, PEPPER_LEN, "K7MR-3XWC-HTEA", IDENT_CODE_RESET, 1000), IDENT_CODE_EXPIRED);
    static const uint8_t other[] = "fedcba9876543210fedcba9876543210";
    assert_int_equal(ident_code_check(&r, other, sizeof(other) - 1, "K7MR-3XWC-HTEA", IDENT_CODE_RESET, 10), IDENT_CODE_MISMATCH);
    assert_int_equal(ident_code_check(&r, pepper, 8, "K7MR-3XWC-HTEA", IDENT_CODE_RESET, 10), IDENT_CODE_MISMATCH);
    r.used_at = 500;
    assert_int_equal(ident_code_check(&r, pepper, PEPPER_LEN, "K7MR-3XWC-HTEA", IDENT_CODE_RESET, 600), IDENT_CODE_USED);
    /* a wrong code learns nothing about expiry or use */
    assert_int_equal(ident_code_check(&r, pepper, PEPPER_LEN, "K7MR-3XWC-HTEC", IDENT_CODE_RESET, 2000), IDENT_CODE_MISMATCH);
}

static void verdicts_have_names(void **state)
{
    assert_string_equal(ident_code_verdict_name(IDENT_CODE_VALID), "valid");
    assert_string_equal(ident_code_verdict_name(IDENT_CODE_EXPIRED), "expired");
    assert_string_equal(ident_code_verdict_name(IDENT_CODE_USED), "used");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(generated_codes_have_the_printed_shape),
        cmocka_unit_test(alphabet_leaves_out_look_alikes),
        cmocka_unit_test(characters_are_uniform),
        cmocka_unit_test(normalises_what_people_type),
        cmocka_unit_test(refuses_what_is_not_a_code),
        cmocka_unit_test(formats_in_groups),
        cmocka_unit_test(hash_is_hmac_sha256_with_the_pepper),
        cmocka_unit_test(check_accepts_the_right_code),
        cmocka_unit_test(check_refuses_each_way),
        cmocka_unit_test(verdicts_have_names),
    };
    return cmocka_run_group_tests_name("codes", tests, NULL, NULL);
}
