#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "oidc.h"

static bool array_has(json_t *a, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) if (json_is_string(v) && strcmp(json_string_value(v), s) == 0) return true;
    return false;
}

static void discovery_names_every_endpoint_under_the_issuer(void **state)
{
    json_t *d = gw_oidc_discovery_build("https://sso.example.org");
    assert_string_equal(json_string_value(json_object_get(d, "issuer")), "https://sso.example.org");
    const struct {
        const char *field, *url;
    } endpoints[] = {
        {"authorization_endpoint", "https://sso.example.org/oidc/authorize"},
        {"token_endpoint", "https://sso.example.org/oidc/token"},
        {"userinfo_endpoint", "https://sso.example.org/oidc/userinfo"},
        {"jwks_uri", "https://sso.example.org/.well-known/jwks.json"},
        {"end_session_endpoint", "https://sso.example.org/oidc/logout"},
        {"revocation_endpoint", "https://sso.example.org/oidc/revoke"},
        {"introspection_endpoint", "https://sso.example.org/oidc/introspect"},
    };
    for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++)
        assert_string_equal(json_string_value(json_object_get(d, endpoints[i].field)), endpoints[i].url);
    json_decref(d);

    /* a trailing slash is kept in the issuer but not doubled in the URLs */
    d = gw_oidc_discovery_build("https://sso.example.org/");
    assert_string_equal(json_string_value(json_object_get(d, "issuer")), "https://sso.example.org/");
    assert_string_equal(json_string_value(json_object_get(d, "token_endpoint")), "https://sso.example.org/oidc/token");
    json_decref(d);
}

static void discovery_promises_only_what_is_planned(void **state)
{
    json_t *d = gw_oidc_discovery_build("http://127.0.0.1:8080");
    json_t *rt = json_object_get(d, "response_types_supported");
    assert_int_equal(json_array_size(rt), 1);
    assert_true(array_has(rt, "code"));
    json_t *pkce = json_object_get(d, "code_challenge_methods_supported");
    assert_int_equal(json_array_size(pkce), 1);
    assert_true(array_has(pkce, "S256"));
    assert_false(array_has(pkce, "plain"));
    json_t *algs = json_object_get(d, "id_token_signing_alg_values_supported");
    assert_true(array_has(algs, "ES256"));
    assert_true(array_has(algs, "RS256")); /* required by Discovery 1.0 section 3 */
    assert_false(array_has(algs, "none"));
    assert_false(array_has(algs, "HS256"));
    json_t *grants = json_object_get(d, "grant_types_supported");
    assert_int_equal(json_array_size(grants), 3);
    assert_false(array_has(grants, "implicit"));
    assert_false(array_has(grants, "password"));
    json_t *auth = json_object_get(d, "token_endpoint_auth_methods_supported");
    assert_true(array_has(auth, "client_secret_basic") && array_has(auth, "client_secret_post") && array_has(auth, "none"));
    json_t *claims = json_object_get(d, "claims_supported");
    assert_true(array_has(claims, "urn:schulconnex:de:personenkontext:rolle"));
    assert_true(array_has(claims, "urn:schulconnex:de:personenkontext:organisation:kennung"));
    assert_true(array_has(claims, "preferred_username"));
    assert_true(array_has(json_object_get(d, "scopes_supported"), "school"));
    assert_true(json_is_true(json_object_get(d, "authorization_response_iss_parameter_supported")));
    /* Discovery's default for this is true: it must be said */
    assert_true(json_is_false(json_object_get(d, "request_uri_parameter_supported")));
    assert_true(array_has(json_object_get(d, "subject_types_supported"), "public"));
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(discovery_names_every_endpoint_under_the_issuer),
        cmocka_unit_test(discovery_promises_only_what_is_planned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
