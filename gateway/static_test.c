#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "gateway.h"
#include "static.h"

static gw_static_kind classify(const char *path)
{
    return gw_static_classify(path, strlen(path));
}

static void app_routes_get_the_index(void **state)
{
    const char *routes[] = {"/",      "/auth/callback", "/enroll", "/accounts",     "/class/0192abcd-ef01", "/admin/x/people",
                            "/chat/", "/apiary",        "/oidcx",  "/assetsmanager"};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (classify(routes[i]) != GW_STATIC_APP_ROUTE)
            fail_msg("%s should be an app route", routes[i]);
    }
}

static void the_gateways_own_paths_stay_404(void **state)
{
    const char *paths[] = {"/api",
                           "/api/v1/nothing",
                           "/oidc",
                           "/oidc/whatever",
                           "/.well-known/x",
                           "/assets",
                           "/assets/",
                           "/assets/a.js",
                           "/assets/missing",
                           "/healthz",
                           "/healthz/x",
                           "/readyz",
                           "/metrics",
                           "/portal-config.json",
                           "/portal-config.json/x",
                           "/favicon.ico",
                           "/sw.js",
                           "/x/y/icon.png",
                           "/.env"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if (classify(paths[i]) != GW_STATIC_NOT_FOUND)
            fail_msg("%s should not be an app route", paths[i]);
    }
}

static void odd_paths_are_refused(void **state)
{
    assert_int_equal(gw_static_classify("", 0), GW_STATIC_NOT_FOUND);
    assert_int_equal(classify("relative"), GW_STATIC_NOT_FOUND);
    assert_int_equal(classify("/with space"), GW_STATIC_NOT_FOUND);
    assert_int_equal(classify("/back\\slash"), GW_STATIC_NOT_FOUND);
    assert_int_equal(gw_static_classify("/a\0b", 4), GW_STATIC_NOT_FOUND);
    assert_int_equal(classify("/tab\there"), GW_STATIC_NOT_FOUND);
    char longpath[GW_STATIC_MAX_ROUTE + 2];
    memset(longpath, 'a', sizeof(longpath));
    longpath[0] = '/';
    assert_int_equal(gw_static_classify(longpath, GW_STATIC_MAX_ROUTE), GW_STATIC_APP_ROUTE);
    assert_int_equal(gw_static_classify(longpath, GW_STATIC_MAX_ROUTE + 1), GW_STATIC_NOT_FOUND);
}

static void hashed_assets_are_immutable_the_rest_revalidated(void **state)
{
    const char *a = "/assets/index-De9QEbt6.js";
    assert_string_equal(gw_static_cache_control(a, strlen(a)), "public, max-age=31536000, immutable");
    const char *others[] = {"/", "/index.html", "/sw.js", "/manifest.webmanifest", "/assets", "/assets/", "/assetsx/a.js"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        assert_string_equal(gw_static_cache_control(others[i], strlen(others[i])), "no-cache");
}

static void the_policy_allows_nothing_inline_or_foreign(void **state)
{
    assert_non_null(strstr(GW_PORTAL_CSP, "default-src 'none'"));
    assert_non_null(strstr(GW_PORTAL_CSP, "script-src 'self';"));
    assert_non_null(strstr(GW_PORTAL_CSP, "frame-ancestors 'none'"));
    assert_null(strstr(GW_PORTAL_CSP, "unsafe"));
    assert_null(strstr(GW_PORTAL_CSP, "http"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(app_routes_get_the_index),
        cmocka_unit_test(the_gateways_own_paths_stay_404),
        cmocka_unit_test(odd_paths_are_refused),
        cmocka_unit_test(hashed_assets_are_immutable_the_rest_revalidated),
        cmocka_unit_test(the_policy_allows_nothing_inline_or_foreign),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
