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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(redirect_check_codes),
        cmocka_unit_test(redirect_match_exact_and_loopback_port),
        cmocka_unit_test(scope_tokens),
        cmocka_unit_test(b64url_matches_rfc4648_vectors),
        cmocka_unit_test(random_ids_have_the_right_length_and_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
