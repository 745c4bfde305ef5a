#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kr_oauth.h"

#define TEXT(s) (s), (sizeof(s) - 1)

/* The redirect rules themselves are tested through the gateway's wrappers in
 * gateway/oidc_proto_test.c; these cover what identity relies on. */
static void redirect_check_codes(void **state)
{
    assert_int_equal(kr_oauth_redirect_uri_check(TEXT("https://rp.example.org/cb")), KR_OAUTH_OK);
    assert_int_equal(kr_oauth_redirect_uri_check(TEXT("http://127.0.0.1:8000/cb")), KR_OAUTH_OK);
    assert_int_equal(kr_oauth_redirect_uri_check(TEXT("http://rp.example.org/cb")), KR_OAUTH_ESCHEME);
    assert_int_equal(kr_oauth_redirect_uri_check(TEXT("https://rp.example.org/cb#x")), KR_OAUTH_EFRAGMENT);
    assert_int_equal(kr_oauth_redirect_uri_check(TEXT("https://user@rp.example.org/cb")), KR_OAUTH_EMALFORMED);
    assert_int_equal(kr_oauth_redirect_uri_check(TEXT("https://RP.example.org/cb")), KR_OAUTH_EMALFORMED);
    assert_int_equal(kr_oauth_redirect_uri_check(TEXT("javascript:alert(1)")), KR_OAUTH_EMALFORMED);
    assert_int_equal(kr_oauth_redirect_uri_check("", 0), KR_OAUTH_EMALFORMED);
    assert_int_equal(kr_oauth_redirect_uri_check(NULL, 0), KR_OAUTH_EMALFORMED);
}

static void redirect_match_exact_and_loopback_port(void **state)
{
    const char *reg[] = {"https://rp.example.org/cb", "http://127.0.0.1:1234/native"};
    assert_int_equal(kr_oauth_redirect_uri_match(TEXT("https://rp.example.org/cb"), reg, 2), 0);
    assert_int_equal(kr_oauth_redirect_uri_match(TEXT("https://rp.example.org/cb/"), reg, 2), -1);
    assert_int_equal(kr_oauth_redirect_uri_match(TEXT("http://127.0.0.1:5555/native"), reg, 2), 1);
    assert_int_equal(kr_oauth_redirect_uri_match(TEXT("http://127.0.0.1:5555/other"), reg, 2), -1);
}

static void scope_tokens(void **state)
{
    assert_true(kr_oauth_scope_token_valid(TEXT("openid")));
    assert_true(kr_oauth_scope_token_valid(TEXT("directory:read")));
    assert_true(kr_oauth_scope_token_valid(TEXT("!#[]~")));
    assert_false(kr_oauth_scope_token_valid(TEXT("")));
    assert_false(kr_oauth_scope_token_valid(TEXT("a b")));
    assert_false(kr_oauth_scope_token_valid(TEXT("a\"b")));
    assert_false(kr_oauth_scope_token_valid(TEXT("a\\b")));
    assert_false(kr_oauth_scope_token_valid(TEXT("caf\xc3\xa9")));
    char longer[KR_OAUTH_SCOPE_MAX + 2];
    memset(longer, 'x', sizeof(longer));
    assert_true(kr_oauth_scope_token_valid(longer, KR_OAUTH_SCOPE_MAX));
    assert_false(kr_oauth_scope_token_valid(longer, KR_OAUTH_SCOPE_MAX + 1));
}

static void b64url_matches_rfc4648_vectors(void **state)
{
    /* RFC 4648 section 10, in the URL alphabet without padding. */
    char out[16];
    assert_int_equal(kr_oauth_b64url_encode((const unsigned char *)"f", 1, out), 2);
    assert_string_equal(out, "Zg");
    assert_int_equal(kr_oauth_b64url_encode((const unsigned char *)"fo", 2, out), 3);
    assert_string_equal(out, "Zm8");
    assert_int_equal(kr_oauth_b64url_encode((const unsigned char *)"foobar", 6, out), 8);
    assert_string_equal(out, "Zm9vYmFy");
    const unsigned char url[] = {0xfb, 0xff};
    kr_oauth_b64url_encode(url, 2, out);
    assert_string_equal(out, "-_8");
}

static void random_ids_have_the_right_length_and_differ(void **state)
{
    char a[KR_OAUTH_B64URL_LEN(32) + 1], b[KR_OAUTH_B64URL_LEN(32) + 1], id[KR_OAUTH_B64URL_LEN(16) + 1];
    kr_oauth_random_b64url(a, 32);
    kr_oauth_random_b64url(b, 32);
    kr_oauth_random_b64url(id, 16);
    assert_int_equal(strlen(a), 43);
    assert_int_equal(strlen(id), 22);
    assert_string_not_equal(a, b);
    for (size_t i = 0; i < strlen(a); i++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", a[i]));
    char big[KR_OAUTH_B64URL_LEN(100) + 1];
    kr_oauth_random_b64url(big, 100);
    assert_int_equal(strlen(big), KR_OAUTH_B64URL_LEN(100));
}

/* ------------------------------------------------------------------ PKCE */

/* RFC 7636 Appendix B. */
static const char rfc_verifier[] = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
static const char rfc_challenge[] = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

static void pkce_accepts_the_rfc_7636_example(void **state)
{
    assert_true(kr_oauth_pkce_challenge_valid(TEXT(rfc_challenge)));
    assert_int_equal(kr_oauth_pkce_verify(TEXT(rfc_verifier), TEXT(rfc_challenge)), KR_OAUTH_OK);
}

static void pkce_refuses_another_verifier(void **state)
{
    char v[] = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    v[0] = 'e';
    assert_int_equal(kr_oauth_pkce_verify(v, strlen(v), TEXT(rfc_challenge)), KR_OAUTH_EMISMATCH);
    v[0] = 'd';
    v[42] = 'j';
    assert_int_equal(kr_oauth_pkce_verify(v, strlen(v), TEXT(rfc_challenge)), KR_OAUTH_EMISMATCH);
    /* the challenge itself is not a verifier for itself (plain is not offered) */
    assert_int_equal(kr_oauth_pkce_verify(TEXT(rfc_challenge), TEXT(rfc_challenge)), KR_OAUTH_EMISMATCH);
}

static void pkce_verifier_length_is_43_to_128(void **state)
{
    char v[130];
    memset(v, 'a', sizeof(v));
    /* the shape is checked before the hash, so any valid challenge will do */
    assert_int_equal(kr_oauth_pkce_verify(v, 42, TEXT(rfc_challenge)), KR_OAUTH_EMALFORMED);
    assert_int_equal(kr_oauth_pkce_verify(v, 43, TEXT(rfc_challenge)), KR_OAUTH_EMISMATCH);
    assert_int_equal(kr_oauth_pkce_verify(v, 128, TEXT(rfc_challenge)), KR_OAUTH_EMISMATCH);
    assert_int_equal(kr_oauth_pkce_verify(v, 129, TEXT(rfc_challenge)), KR_OAUTH_EMALFORMED);
    assert_int_equal(kr_oauth_pkce_verify(NULL, 0, TEXT(rfc_challenge)), KR_OAUTH_EMALFORMED);
}

static void pkce_verifier_must_be_unreserved_characters(void **state)
{
    const char *bad[] = {
        "dBjftJeZ4CVP+mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "dBjftJeZ4CVP/mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "dBjftJeZ4CVP mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "dBjftJeZ4CVP=mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "dBjftJeZ4CVP%mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "dBjftJeZ4CVP\xc3\xa4mB92K27uhbUJU1p1r_wW1gFWFOEjX",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(kr_oauth_pkce_verify(bad[i], strlen(bad[i]), TEXT(rfc_challenge)), KR_OAUTH_EMALFORMED);
    /* all four punctuation characters RFC 7636 allows */
    const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-._~";
    assert_int_equal(kr_oauth_pkce_verify(TEXT(ok), TEXT(rfc_challenge)), KR_OAUTH_EMISMATCH);
    /* a NUL inside the counted length is not a short verifier in disguise */
    char nul[44];
    memcpy(nul, rfc_verifier, 43);
    nul[10] = '\0';
    assert_int_equal(kr_oauth_pkce_verify(nul, 43, TEXT(rfc_challenge)), KR_OAUTH_EMALFORMED);
}

static void pkce_challenge_shape(void **state)
{
    assert_false(kr_oauth_pkce_challenge_valid(NULL, 0));
    assert_false(kr_oauth_pkce_challenge_valid(rfc_challenge, 42));
    assert_false(kr_oauth_pkce_challenge_valid(TEXT("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM=")));
    assert_false(kr_oauth_pkce_challenge_valid(TEXT("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM")));
    assert_false(kr_oauth_pkce_challenge_valid(TEXT("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw/cM")));
    /* 'N' (13) leaves a stray bit set: no SHA-256 encodes to it */
    assert_false(kr_oauth_pkce_challenge_valid(TEXT("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN")));
    assert_int_equal(kr_oauth_pkce_verify(TEXT(rfc_verifier), TEXT("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN")),
                     KR_OAUTH_EMALFORMED);
}

static void strerror_names_every_code(void **state)
{
    for (int e = KR_OAUTH_OK; e <= KR_OAUTH_EMISMATCH; e++)
        assert_string_not_equal(kr_oauth_strerror(e), "unknown error");
    assert_string_equal(kr_oauth_strerror(999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(redirect_check_codes),
        cmocka_unit_test(redirect_match_exact_and_loopback_port),
        cmocka_unit_test(scope_tokens),
        cmocka_unit_test(b64url_matches_rfc4648_vectors),
        cmocka_unit_test(random_ids_have_the_right_length_and_differ),
        cmocka_unit_test(pkce_accepts_the_rfc_7636_example),
        cmocka_unit_test(pkce_refuses_another_verifier),
        cmocka_unit_test(pkce_verifier_length_is_43_to_128),
        cmocka_unit_test(pkce_verifier_must_be_unreserved_characters),
        cmocka_unit_test(pkce_challenge_shape),
        cmocka_unit_test(strerror_names_every_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
