/* The pure rules of the OpenID Connect flow (flow.c) and who may use TOTP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"

static kr_arena arena;

static int setup(void **state)
{
    kr_arena_init(&arena);
    return 0;
}

static int teardown(void **state)
{
    kr_arena_free(&arena);
    return 0;
}

static void scopes_parse_splits_dedupes_and_keeps_order(void **state)
{
    ident_scopes s;
    assert_int_equal(ident_scopes_parse(&arena, "openid profile  openid school ", &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.v[0], "openid");
    assert_string_equal(s.v[1], "profile");
    assert_string_equal(s.v[2], "school");
    assert_string_equal(ident_scopes_join(&arena, &s), "openid profile school");
    assert_true(ident_scopes_has(&s, "school"));
    assert_false(ident_scopes_has(&s, "schoo"));
    assert_false(ident_scopes_has(&s, "offline_access"));
    assert_int_equal(ident_scopes_parse(&arena, "", &s), 0);
    assert_int_equal(s.n, 0);
    assert_string_equal(ident_scopes_join(&arena, &s), "");
}

static void scopes_parse_refuses_bad_tokens_and_too_many(void **state)
{
    ident_scopes s;
    assert_int_equal(ident_scopes_parse(&arena, "openid \"profile\"", &s), -1);
    assert_int_equal(ident_scopes_parse(&arena, "openid a\\b", &s), -1);
    assert_int_equal(ident_scopes_parse(&arena, "openid\tprofile", &s), -1);
    assert_int_equal(ident_scopes_parse(&arena, "openid \xc3\xa4", &s), -1);
    char many[33 * 4 + 1] = "";
    for (int i = 0; i < 33; i++) {
        char w[16];
        snprintf(w, sizeof(w), "s%02d ", i);
        strcat(many, w);
    }
    assert_int_equal(ident_scopes_parse(&arena, many, &s), -1);
    many[32 * 4] = '\0'; /* exactly 32 */
    assert_int_equal(ident_scopes_parse(&arena, many, &s), 0);
    assert_int_equal(s.n, 32);
    /* repeats do not count against the limit */
    char repeated[40 * 7 + 1] = "";
    for (int i = 0; i < 40; i++)
        strcat(repeated, "openid ");
    assert_int_equal(ident_scopes_parse(&arena, repeated, &s), 0);
    assert_int_equal(s.n, 1);
}

static void scopes_within_and_remove(void **state)
{
    char *registered[] = {"openid", "profile", "offline_access"};
    ident_scopes s;
    assert_int_equal(ident_scopes_parse(&arena, "openid offline_access", &s), 0);
    assert_true(ident_scopes_within(&s, registered, 3));
    assert_int_equal(ident_scopes_parse(&arena, "openid school", &s), 0);
    assert_false(ident_scopes_within(&s, registered, 3));
    assert_int_equal(ident_scopes_parse(&arena, "openid offline_access profile", &s), 0);
    ident_scopes_remove(&s, "offline_access");
    assert_string_equal(ident_scopes_join(&arena, &s), "openid profile");
    ident_scopes_remove(&s, "absent");
    assert_int_equal(s.n, 2);
}

static void flow_tokens_are_43_base64url_characters(void **state)
{
    char a[IDENT_FLOW_TOKEN_LEN + 1], b[IDENT_FLOW_TOKEN_LEN + 1];
    ident_flow_token_new(a);
    ident_flow_token_new(b);
    assert_true(ident_flow_token_valid(a));
    assert_string_not_equal(a, b);
    assert_false(ident_flow_token_valid(""));
    assert_false(ident_flow_token_valid(NULL));
    a[42] = '=';
    assert_false(ident_flow_token_valid(a));
    a[42] = '\0';
    assert_false(ident_flow_token_valid(a));
    assert_true(ident_flow_token_valid("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-_"));
    assert_false(ident_flow_token_valid("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+/"));
}

static void session_keys_are_the_hex_sha256_of_the_token(void **state)
{
    char key[IDENT_SSO_KEY_LEN + 1];
    /* SHA-256("abc"), FIPS 180-2 appendix B.1 */
    ident_session_key("abc", key);
    assert_string_equal(key, "kreide:sso:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(strlen(key), IDENT_SSO_KEY_LEN);
}

static void revocation_messages_match_the_gateways(void **state)
{
    char *m = ident_revocation_json("01a2025b-a8f6-7dfe-9e20-bb32fcf23035", 1795000000);
    assert_string_equal(m, "{\"jti\":\"01a2025b-a8f6-7dfe-9e20-bb32fcf23035\",\"until\":1795000000}");
    free(m);
}

/* RFC 7636 Appendix B. */
#define VERIFIER "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
#define CHALLENGE "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

static void code_verdicts_in_order(void **state)
{
    ident_authcode_facts f = {"client-a", "https://rp.example.org/cb", CHALLENGE, 1000, false};
    const char *cb = "https://rp.example.org/cb";
    assert_int_equal(ident_authcode_judge(&f, "client-a", cb, VERIFIER, 999), IDENT_AUTHCODE_OK);
    assert_int_equal(ident_authcode_judge(&f, "client-b", cb, VERIFIER, 999), IDENT_AUTHCODE_OTHER_CLIENT);
    assert_int_equal(ident_authcode_judge(&f, "client-a", cb, VERIFIER, 1000), IDENT_AUTHCODE_EXPIRED);
    assert_int_equal(ident_authcode_judge(&f, "client-a", "https://rp.example.org/cb/", VERIFIER, 999),
                     IDENT_AUTHCODE_WRONG_REDIRECT);
    assert_int_equal(ident_authcode_judge(&f, "client-a", cb, "", 999), IDENT_AUTHCODE_WRONG_VERIFIER);
    assert_int_equal(ident_authcode_judge(&f, "client-a", cb, CHALLENGE, 999), IDENT_AUTHCODE_WRONG_VERIFIER);
    /* another client learns nothing, not even that the code was used */
    f.used = true;
    assert_int_equal(ident_authcode_judge(&f, "client-b", cb, VERIFIER, 999), IDENT_AUTHCODE_OTHER_CLIENT);
    /* a replay is a replay, right or wrong in every other way, expired or not */
    assert_int_equal(ident_authcode_judge(&f, "client-a", cb, VERIFIER, 999), IDENT_AUTHCODE_REPLAYED);
    assert_int_equal(ident_authcode_judge(&f, "client-a", "https://x.example.org/", "", 5000), IDENT_AUTHCODE_REPLAYED);
}

static void codes_without_a_challenge_refuse_a_verifier(void **state)
{
    ident_authcode_facts f = {"c", "https://rp.example.org/cb", "", 1000, false};
    assert_int_equal(ident_authcode_judge(&f, "c", "https://rp.example.org/cb", "", 1), IDENT_AUTHCODE_OK);
    assert_int_equal(ident_authcode_judge(&f, "c", "https://rp.example.org/cb", VERIFIER, 1), IDENT_AUTHCODE_WRONG_VERIFIER);
    f.code_challenge = NULL;
    assert_int_equal(ident_authcode_judge(&f, "c", "https://rp.example.org/cb", "", 1), IDENT_AUTHCODE_OK);
}

static void refresh_verdicts_in_order(void **state)
{
    ident_refresh_facts f = {"client-a", 1000, false, false};
    assert_int_equal(ident_refresh_judge(&f, "client-a", 999), IDENT_REFRESH_OK);
    assert_int_equal(ident_refresh_judge(&f, "client-b", 999), IDENT_REFRESH_OTHER_CLIENT);
    assert_int_equal(ident_refresh_judge(&f, "client-a", 1000), IDENT_REFRESH_EXPIRED);
    f.used = true;
    assert_int_equal(ident_refresh_judge(&f, "client-a", 999), IDENT_REFRESH_REUSED);
    assert_int_equal(ident_refresh_judge(&f, "client-a", 5000), IDENT_REFRESH_REUSED);
    assert_int_equal(ident_refresh_judge(&f, "client-b", 999), IDENT_REFRESH_OTHER_CLIENT);
    f.revoked = true;
    assert_int_equal(ident_refresh_judge(&f, "client-a", 999), IDENT_REFRESH_REVOKED);
}

static void every_verdict_has_a_text(void **state)
{
    for (int v = IDENT_AUTHCODE_OK; v <= IDENT_AUTHCODE_WRONG_VERIFIER; v++)
        assert_string_not_equal(ident_authcode_verdict_text((ident_authcode_verdict)v), "the code is not valid");
    for (int v = IDENT_REFRESH_OK; v <= IDENT_REFRESH_EXPIRED; v++)
        assert_string_not_equal(ident_refresh_verdict_text((ident_refresh_verdict)v), "the refresh token is not valid");
}

static void totp_is_for_staff_not_for_pupils_and_parents(void **state)
{
    assert_true(ident_may_use_totp(IDENT_ROLE_TEACHER));
    assert_true(ident_may_use_totp(IDENT_ROLE_STAFF));
    assert_true(ident_may_use_totp(IDENT_ROLE_HEAD));
    assert_true(ident_may_use_totp(IDENT_ROLE_SCHOOL_ADMIN));
    assert_true(ident_may_use_totp(IDENT_ROLE_PARENT | IDENT_ROLE_TEACHER));
    assert_false(ident_may_use_totp(IDENT_ROLE_PUPIL));
    assert_false(ident_may_use_totp(IDENT_ROLE_PARENT));
    assert_false(ident_may_use_totp(IDENT_ROLE_PUPIL | IDENT_ROLE_PARENT));
    assert_false(ident_may_use_totp(0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scopes_parse_splits_dedupes_and_keeps_order),
        cmocka_unit_test(scopes_parse_refuses_bad_tokens_and_too_many),
        cmocka_unit_test(scopes_within_and_remove),
        cmocka_unit_test(flow_tokens_are_43_base64url_characters),
        cmocka_unit_test(session_keys_are_the_hex_sha256_of_the_token),
        cmocka_unit_test(revocation_messages_match_the_gateways),
        cmocka_unit_test(code_verdicts_in_order),
        cmocka_unit_test(codes_without_a_challenge_refuse_a_verifier),
        cmocka_unit_test(refresh_verdicts_in_order),
        cmocka_unit_test(every_verdict_has_a_text),
        cmocka_unit_test(totp_is_for_staff_not_for_pupils_and_parents),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
