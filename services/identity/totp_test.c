#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "totp.h"

/* The SHA-1 seed of RFC 6238 appendix B and RFC 4226 appendix D. */
static const uint8_t rfc_key[] = "12345678901234567890";
#define RFC_KEY_LEN 20

/* RFC 4226 appendix D: HOTP values for counters 0..9. */
static void hotp_rfc4226_vectors(void **state)
{
    static const uint32_t want[] = {755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489};
    for (uint64_t c = 0; c < 10; c++) {
        uint32_t v;
        assert_int_equal(ident_hotp(rfc_key, RFC_KEY_LEN, c, 6, &v), 0);
        assert_int_equal(v, want[c]);
    }
    uint32_t v;
    assert_int_equal(ident_hotp(rfc_key, RFC_KEY_LEN, 0, 5, &v), -1);
    assert_int_equal(ident_hotp(rfc_key, RFC_KEY_LEN, 0, 9, &v), -1);
    assert_int_equal(ident_hotp(rfc_key, 0, 0, 6, &v), -1);
}

/* RFC 6238 appendix B, the SHA-1 rows (8 digits, 30-second steps). */
static void totp_rfc6238_vectors(void **state)
{
    static const struct {
        int64_t t;
        uint32_t code;
    } rows[] = {
        {59, 94287082},         {1111111109, 7081804},  {1111111111, 14050471},
        {1234567890, 89005924}, {2000000000, 69279037}, {20000000000LL, 65353130},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint32_t v;
        assert_int_equal(ident_hotp(rfc_key, RFC_KEY_LEN, (uint64_t)ident_totp_step(rows[i].t), 8, &v), 0);
        assert_int_equal(v, rows[i].code);
    }
    assert_int_equal(ident_totp_step(1111111109), 37037036);
    assert_int_equal(ident_totp_step(-5), 0);
}

/* The 6-digit code of the step holding `t`. */
static void code_at(int64_t t, char out[8])
{
    uint32_t v;
    assert_int_equal(ident_hotp(rfc_key, RFC_KEY_LEN, (uint64_t)ident_totp_step(t), 6, &v), 0);
    snprintf(out, 8, "%06u", v);
}

static void verify_accepts_one_step_either_side(void **state)
{
    const int64_t now = 1234567890; /* step 41152263 */
    char c[8];
    int64_t step = -1;
    code_at(now, c);
    assert_int_equal(ident_totp_verify(rfc_key, RFC_KEY_LEN, c, now, IDENT_TOTP_NEVER, &step), IDENT_TOTP_OK);
    assert_int_equal(step, 41152263);
    code_at(now - 30, c);
    assert_int_equal(ident_totp_verify(rfc_key, RFC_KEY_LEN, c, now, IDENT_TOTP_NEVER, &step), IDENT_TOTP_OK);
    assert_int_equal(step, 41152262);
    code_at(now + 30, c);
    assert_int_equal(ident_totp_verify(rfc_key, RFC_KEY_LEN, c, now, IDENT_TOTP_NEVER, &step), IDENT_TOTP_OK);
    assert_int_equal(step, 41152264);
    code_at(now - 60, c);
    assert_int_equal(ident_totp_verify(rfc_key, RFC_KEY_LEN, c, now, IDENT_TOTP_NEVER, &step), IDENT_TOTP_MISMATCH);
    code_at(now + 60, c);
    assert_int_equal(ident_totp_verify(rfc_key, RFC_KEY_LEN, c, now, IDENT_TOTP_NEVER, &step), IDENT_TOTP_MISMATCH);
}

static void verify_refuses_replays(void **state)
{
    const int64_t now = 1234567890;
    char c[8];
    int64_t step = -1;
    code_at(now, c);
    assert_int_equal(ident_totp_verify(rfc_key, RFC_KEY_LEN, c, now, IDENT_TOTP_NEVER, &step), IDENT_TOTP_OK);
    int64_t last = step;
    /* the same code again, still inside its window */
    assert_int_equal(ident_totp_verify(rfc_key, RFC_KEY_LEN, c, now + 5, last, &step), IDENT_TOTP_REPLAYED);
    /* an older code in the window */
    code_at(now - 30, c);
    assert_int_equal(ident_totp_verify(rfc_key, RFC_KEY_LEN, c, now, last, &step), IDENT_TOTP_REPLAYED);
    /* the next step's code is fine */
    code_at(now + 30, c);
    assert_int_equal(ident_totp_verify(rfc_key, RFC_KEY_LEN, c, now + 30, last, &step), IDENT_TOTP_OK);
    assert_int_equal(step, last + 1);
}

static void verify_refuses_malformed_input(void **state)
{
    int64_t step;
    const char *bad[] = {"", "12345", "1234567", "12345a", "-12345", "١٢٣٤٥٦"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ident_totp_verify(rfc_key, RFC_KEY_LEN, bad[i], 59, IDENT_TOTP_NEVER, &step), IDENT_TOTP_MALFORMED);
    assert_int_equal(ident_totp_verify(rfc_key, RFC_KEY_LEN, NULL, 59, IDENT_TOTP_NEVER, &step), IDENT_TOTP_MALFORMED);
    /* spaces inside are ignored: "287 082" is the code of step 1 (t = 59) */
    assert_int_equal(ident_totp_verify(rfc_key, RFC_KEY_LEN, "287 082", 59, IDENT_TOTP_NEVER, &step), IDENT_TOTP_OK);
    assert_int_equal(step, 1);
}

static void secrets_are_random(void **state)
{
    uint8_t a[IDENT_TOTP_SECRET_LEN], b[IDENT_TOTP_SECRET_LEN];
    ident_totp_secret_new(a);
    ident_totp_secret_new(b);
    assert_memory_not_equal(a, b, sizeof(a));
}

/* RFC 4648 section 10. */
static void base32_rfc4648_vectors(void **state)
{
    static const char *const rows[][2] = {
        {"", ""},
        {"f", "MY======"},
        {"fo", "MZXQ===="},
        {"foo", "MZXW6==="},
        {"foob", "MZXW6YQ="},
        {"fooba", "MZXW6YTB"},
        {"foobar", "MZXW6YTBOI======"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char out[32];
        const char *in = rows[i][0];
        assert_int_equal(ident_base32_encode((const uint8_t *)in, strlen(in), true, out, sizeof(out)), 0);
        assert_string_equal(out, rows[i][1]);
        uint8_t back[16];
        size_t n = 99;
        assert_int_equal(ident_base32_decode(rows[i][1], back, sizeof(back), &n), 0);
        assert_int_equal(n, strlen(in));
        assert_memory_equal(back, in, n);
    }
    char out[32];
    assert_int_equal(ident_base32_encode((const uint8_t *)"foobar", 6, false, out, sizeof(out)), 0);
    assert_string_equal(out, "MZXW6YTBOI");
    assert_int_equal(ident_base32_encode((const uint8_t *)"foobar", 6, false, out, 10), -1);
    assert_int_equal(ident_base32_encode((const uint8_t *)"foobar", 6, false, out, 11), 0);
}

static void base32_decode_is_strict(void **state)
{
    uint8_t out[32];
    size_t n;
    assert_int_equal(ident_base32_decode("mzxw6ytboi", out, sizeof(out), &n), 0);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(ident_base32_decode("MZXW 6YTB OI", out, sizeof(out), &n), 0);
    assert_int_equal(ident_base32_decode("MZXW1YTB", out, sizeof(out), &n), -1); /* 1 is not base32 */
    assert_int_equal(ident_base32_decode("M", out, sizeof(out), &n), -1);        /* impossible length */
    assert_int_equal(ident_base32_decode("MZ=X", out, sizeof(out), &n), -1);     /* data after padding */
    assert_int_equal(ident_base32_decode("MZ", out, sizeof(out), &n), -1);       /* non-zero unused bits */
    assert_int_equal(ident_base32_decode("MZXW6YTBOI", out, 5, &n), -1);         /* no room */
    /* a 20-byte secret round-trips through 32 characters */
    uint8_t s[IDENT_TOTP_SECRET_LEN], back[IDENT_TOTP_SECRET_LEN];
    ident_totp_secret_new(s);
    char text[IDENT_TOTP_SECRET_B32_MAX];
    assert_int_equal(ident_base32_encode(s, sizeof(s), false, text, sizeof(text)), 0);
    assert_int_equal(strlen(text), 32);
    assert_int_equal(ident_base32_decode(text, back, sizeof(back), &n), 0);
    assert_int_equal(n, sizeof(s));
    assert_memory_equal(back, s, sizeof(s));
}

static void otpauth_uri(void **state)
{
    char uri[512];
    assert_int_equal(
        ident_totp_uri("Kreide Grundschule Am Park", "lisa.mueller@gs-am-park", rfc_key, RFC_KEY_LEN, uri, sizeof(uri)), 0);
    assert_string_equal(uri, "otpauth://totp/Kreide%20Grundschule%20Am%20Park:lisa.mueller%40gs-am-park"
                             "?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Kreide%20Grundschule%20Am%20Park"
                             "&algorithm=SHA1&digits=6&period=30");
    /* a colon in a name is encoded, so it cannot split the label */
    assert_int_equal(ident_totp_uri("A:B", "c", rfc_key, RFC_KEY_LEN, uri, sizeof(uri)), 0);
    assert_non_null(strstr(uri, "totp/A%3AB:c?"));
    assert_int_equal(ident_totp_uri("Kreide", "x", rfc_key, RFC_KEY_LEN, uri, 40), -1);
    assert_string_equal(uri, "");
    assert_int_equal(ident_totp_uri("", "x", rfc_key, RFC_KEY_LEN, uri, sizeof(uri)), -1);
    assert_int_equal(ident_totp_uri("Kreide", "", rfc_key, RFC_KEY_LEN, uri, sizeof(uri)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hotp_rfc4226_vectors),
        cmocka_unit_test(totp_rfc6238_vectors),
        cmocka_unit_test(verify_accepts_one_step_either_side),
        cmocka_unit_test(verify_refuses_replays),
        cmocka_unit_test(verify_refuses_malformed_input),
        cmocka_unit_test(secrets_are_random),
        cmocka_unit_test(base32_rfc4648_vectors),
        cmocka_unit_test(base32_decode_is_strict),
        cmocka_unit_test(otpauth_uri),
    };
    return cmocka_run_group_tests_name("totp", tests, NULL, NULL);
}
