#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oidc.h"

static h2o_mem_pool_t pool;

static int setup(void **state)
{
    h2o_mem_init_pool(&pool);
    return 0;
}

static int teardown(void **state)
{
    h2o_mem_clear_pool(&pool);
    return 0;
}

/* 32 bytes of base64 each. */
#define K1 "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
#define K2 "k.2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
#define K1_OTHER "k1:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="

#define CHALLENGE "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" /* RFC 7636 Appendix B */

static kr_keyring *keyring(const char *spec)
{
    kr_keyring *kr = NULL;
    char err[128];
    if (kr_keyring_parse(spec, &kr, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    return kr;
}

static gw_oidc_form form_of(const char *query)
{
    gw_oidc_form f;
    const char *bad;
    assert_int_equal(gw_oidc_form_parse(&pool, query, strlen(query), NULL, &f, &bad), GW_OIDC_OK);
    return f;
}

/* ------------------------------------------------------------- begin */

static void begin_needs_client_id_and_redirect_uri(void **state)
{
    gw_oidc_authz a;
    const char *why = NULL;
    gw_oidc_form f = form_of("redirect_uri=https%3A%2F%2Fa.example%2Fcb&state=s");
    assert_int_equal(gw_oidc_authz_begin(&f, &a, &why), -1);
    assert_string_equal(why, "client_id is required");
    f = form_of("client_id=abc");
    assert_int_equal(gw_oidc_authz_begin(&f, &a, &why), -1);
    assert_string_equal(why, "redirect_uri is required");
    f = form_of("client_id=a%20b&redirect_uri=x");
    assert_int_equal(gw_oidc_authz_begin(&f, &a, &why), -1);
    assert_string_equal(why, "client_id is malformed");
    f = form_of("client_id=%C3%BC&redirect_uri=x");
    assert_int_equal(gw_oidc_authz_begin(&f, &a, &why), -1);
    char longid[300] = "client_id=";
    memset(longid + 10, 'a', GW_OIDC_CLIENT_ID_MAX + 1);
    strcat(longid, "&redirect_uri=x");
    f = form_of(longid);
    assert_int_equal(gw_oidc_authz_begin(&f, &a, &why), -1);

    f = form_of("client_id=abc&redirect_uri=https%3A%2F%2Fa.example%2Fcb&state=s%201");
    assert_int_equal(gw_oidc_authz_begin(&f, &a, &why), 0);
    assert_string_equal(a.client_id, "abc");
    assert_string_equal(a.redirect_uri, "https://a.example/cb");
    assert_string_equal(a.state, "s 1");
    assert_int_equal(a.max_age, -1);
}

/* ------------------------------------------------------------- check */

static const char *const registered_scopes[] = {"openid", "profile", "school", "offline_access"};
static const gw_oidc_client_view confidential = {.authorization_code = true, .scopes = registered_scopes, .nscopes = 4};
static const gw_oidc_client_view public_client = {
    .is_public = true, .authorization_code = true, .scopes = registered_scopes, .nscopes = 4};

/* Runs begin and check on a query; returns the OAuth error or NULL. */
static const char *check(const char *query, const gw_oidc_client_view *client, gw_oidc_authz *a)
{
    gw_oidc_form f = form_of(query);
    const char *why = NULL, *error = NULL, *desc = NULL;
    assert_int_equal(gw_oidc_authz_begin(&f, a, &why), 0);
    int rv = gw_oidc_authz_check(&pool, &f, client, a, &error, &desc);
    if (rv == 0)
        return NULL;
    assert_int_equal(rv, -1);
    assert_non_null(desc);
    return error;
}

#define BASE "client_id=c&redirect_uri=https%3A%2F%2Fa.example%2Fcb&state=xyz&"

static void check_accepts_a_full_request(void **state)
{
    gw_oidc_authz a;
    assert_null(check(BASE "response_type=code&scope=openid%20profile%20openid&nonce=n-1&code_challenge=" CHALLENGE
                           "&code_challenge_method=S256&prompt=login%20consent&max_age=300&login_hint=mia.k&ui_locales=en%20de"
                           "&response_mode=query",
                      &public_client, &a));
    assert_string_equal(a.scope, "openid profile"); /* repeats dropped */
    assert_string_equal(a.nonce, "n-1");
    assert_string_equal(a.code_challenge, CHALLENGE);
    assert_string_equal(a.code_challenge_method, "S256");
    assert_int_equal(a.prompt, GW_OIDC_PROMPT_LOGIN | GW_OIDC_PROMPT_CONSENT);
    assert_int_equal(a.max_age, 300);
    assert_string_equal(a.login_hint, "mia.k");
    assert_string_equal(a.ui_locales, "en de");
    assert_string_equal(a.state, "xyz");

    /* the least a confidential client sends */
    assert_null(check("client_id=c&redirect_uri=x&response_type=code&scope=openid", &confidential, &a));
    assert_string_equal(a.scope, "openid");
    assert_null(a.state);
    assert_null(a.nonce);
    assert_null(a.code_challenge);
    assert_int_equal(a.prompt, 0);
    assert_int_equal(a.max_age, -1);
}

static void check_refuses_response_types_and_objects(void **state)
{
    gw_oidc_authz a;
    assert_string_equal(check(BASE "scope=openid", &confidential, &a), "invalid_request");
    assert_string_equal(a.state, "xyz"); /* goes back with the error */
    assert_string_equal(check(BASE "response_type=token&scope=openid", &confidential, &a), "unsupported_response_type");
    assert_string_equal(check(BASE "response_type=code%20id_token&scope=openid", &confidential, &a), "unsupported_response_type");
    assert_string_equal(check(BASE "response_type=code&scope=openid&response_mode=fragment", &confidential, &a), "invalid_request");
    assert_string_equal(check(BASE "response_type=code&scope=openid&request=eyJ", &confidential, &a), "request_not_supported");
    assert_string_equal(check(BASE "response_type=code&scope=openid&request_uri=https%3A%2F%2Fx", &confidential, &a),
                        "request_uri_not_supported");
    assert_string_equal(check(BASE "response_type=code&scope=openid&registration=%7B%7D", &confidential, &a),
                        "registration_not_supported");
    gw_oidc_client_view service_only = confidential;
    service_only.authorization_code = false;
    assert_string_equal(check(BASE "response_type=code&scope=openid", &service_only, &a), "unauthorized_client");
}

static void check_scope_needs_openid_and_registered_tokens(void **state)
{
    gw_oidc_authz a;
    assert_string_equal(check(BASE "response_type=code", &confidential, &a), "invalid_scope");
    assert_string_equal(check(BASE "response_type=code&scope=profile", &confidential, &a), "invalid_scope");
    assert_string_equal(check(BASE "response_type=code&scope=openid%20calendar", &confidential, &a), "invalid_scope");
    assert_string_equal(check(BASE "response_type=code&scope=openid%20%20profile", &confidential, &a), "invalid_scope");
    assert_string_equal(check(BASE "response_type=code&scope=openid%20", &confidential, &a), "invalid_scope");
    assert_string_equal(check(BASE "response_type=code&scope=openid%22", &confidential, &a), "invalid_scope");
    const char *const only_openid[] = {"openid"};
    gw_oidc_client_view narrow = {.authorization_code = true, .scopes = only_openid, .nscopes = 1};
    assert_string_equal(check(BASE "response_type=code&scope=openid%20profile", &narrow, &a), "invalid_scope");
    assert_null(check(BASE "response_type=code&scope=openid", &narrow, &a));
    gw_oidc_client_view none = {.authorization_code = true};
    assert_string_equal(check(BASE "response_type=code&scope=openid", &none, &a), "invalid_scope");
}

static void check_pkce_is_s256_and_required_for_public_clients(void **state)
{
    gw_oidc_authz a;
    assert_string_equal(check(BASE "response_type=code&scope=openid", &public_client, &a), "invalid_request");
    assert_string_equal(check(BASE "response_type=code&scope=openid&code_challenge=" CHALLENGE, &public_client, &a),
                        "invalid_request"); /* no method means plain */
    assert_string_equal(
        check(BASE "response_type=code&scope=openid&code_challenge=" CHALLENGE "&code_challenge_method=plain", &public_client, &a),
        "invalid_request");
    assert_string_equal(check(BASE "response_type=code&scope=openid&code_challenge_method=S256", &confidential, &a),
                        "invalid_request");
    assert_string_equal(
        check(BASE "response_type=code&scope=openid&code_challenge=short&code_challenge_method=S256", &confidential, &a),
        "invalid_request");
    assert_string_equal(
        check(BASE "response_type=code&scope=openid&code_challenge=" CHALLENGE "&code_challenge_method=s256", &confidential, &a),
        "invalid_request");
    /* a confidential client may use PKCE, and then it is checked */
    assert_null(
        check(BASE "response_type=code&scope=openid&code_challenge=" CHALLENGE "&code_challenge_method=S256", &confidential, &a));
    assert_string_equal(a.code_challenge, CHALLENGE);
}

static void check_prompt_and_max_age(void **state)
{
    gw_oidc_authz a;
    const struct {
        const char *prompt;
        unsigned bits; /* 99: refused */
    } cases[] = {
        {"none", GW_OIDC_PROMPT_NONE},
        {"login", GW_OIDC_PROMPT_LOGIN},
        {"consent", GW_OIDC_PROMPT_CONSENT},
        {"consent%20login", GW_OIDC_PROMPT_LOGIN | GW_OIDC_PROMPT_CONSENT},
        {"login%20login", GW_OIDC_PROMPT_LOGIN},
        {"none%20login", 99},
        {"consent%20none", 99},
        {"select_account", 99},
        {"Login", 99},
        {"login%20", 99},
        {"%20login", 99},
        {"login%20%20consent", 99},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char q[256];
        snprintf(q, sizeof(q), "%sresponse_type=code&scope=openid&prompt=%s", BASE, cases[i].prompt);
        const char *err = check(q, &confidential, &a);
        if (cases[i].bits == 99) {
            if (err == NULL || strcmp(err, "invalid_request") != 0)
                fail_msg("prompt=%s was accepted", cases[i].prompt);
        } else {
            if (err != NULL)
                fail_msg("prompt=%s was refused: %s", cases[i].prompt, err);
            assert_int_equal(a.prompt, cases[i].bits);
        }
    }
    assert_null(check(BASE "response_type=code&scope=openid&max_age=0", &confidential, &a));
    assert_int_equal(a.max_age, 0);
    assert_null(check(BASE "response_type=code&scope=openid&max_age=999999999999", &confidential, &a));
    assert_int_equal(a.max_age, GW_OIDC_MAX_AGE_MAX);
    const char *bad_ages[] = {"-1", "1.5", "%2B5", "1e3", "abc", "1%20", "9999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_ages) / sizeof(bad_ages[0]); i++) {
        char q[256];
        snprintf(q, sizeof(q), "%sresponse_type=code&scope=openid&max_age=%s", BASE, bad_ages[i]);
        const char *err = check(q, &confidential, &a);
        if (err == NULL || strcmp(err, "invalid_request") != 0)
            fail_msg("max_age=%s was accepted", bad_ages[i]);
    }
}

static void check_bounds_what_it_carries(void **state)
{
    gw_oidc_authz a;
    char *q = malloc(8192);
    /* an overlong state is refused and not echoed */
    int n = snprintf(q, 8192, "client_id=c&redirect_uri=x&response_type=code&scope=openid&state=");
    memset(q + n, 's', GW_OIDC_STATE_MAX + 1);
    q[n + GW_OIDC_STATE_MAX + 1] = '\0';
    assert_string_equal(check(q, &confidential, &a), "invalid_request");
    assert_null(a.state);
    q[n + GW_OIDC_STATE_MAX] = '\0';
    assert_null(check(q, &confidential, &a));
    assert_int_equal(strlen(a.state), GW_OIDC_STATE_MAX);
    /* an overlong nonce is refused */
    n = snprintf(q, 8192, "%sresponse_type=code&scope=openid&nonce=", BASE);
    memset(q + n, 'n', GW_OIDC_NONCE_MAX + 1);
    q[n + GW_OIDC_NONCE_MAX + 1] = '\0';
    assert_string_equal(check(q, &confidential, &a), "invalid_request");
    /* overlong hints are ignored */
    n = snprintf(q, 8192, "%sresponse_type=code&scope=openid&ui_locales=en&login_hint=", BASE);
    memset(q + n, 'h', GW_OIDC_LOGIN_HINT_MAX + 1);
    q[n + GW_OIDC_LOGIN_HINT_MAX + 1] = '\0';
    assert_null(check(q, &confidential, &a));
    assert_null(a.login_hint);
    assert_string_equal(a.ui_locales, "en");
    free(q);
}

/* ------------------------------------------------------------- sealing */

static gw_oidc_authz sample(void)
{
    gw_oidc_authz a = {
        .client_id = "c1",
        .client_name = "Moodle „Am Park“ <&>",
        .first_party = true,
        .redirect_uri = "https://moodle.example.org/cb?x=1&y=\"2\"",
        .scope = "openid profile",
        .state = "st\xc3\xa4te",
        .nonce = "n",
        .code_challenge = CHALLENGE,
        .code_challenge_method = "S256",
        .login_hint = "mia.k",
        .ui_locales = "en",
        .prompt = GW_OIDC_PROMPT_LOGIN,
        .max_age = 0,
    };
    return a;
}

static void assert_same(const gw_oidc_authz *x, const gw_oidc_authz *y)
{
#define SAME(f) assert_string_equal(x->f ? x->f : "(null)", y->f ? y->f : "(null)")
    SAME(client_id);
    SAME(client_name);
    SAME(redirect_uri);
    SAME(scope);
    SAME(state);
    SAME(nonce);
    SAME(code_challenge);
    SAME(code_challenge_method);
    SAME(login_hint);
    SAME(ui_locales);
#undef SAME
    assert_int_equal(x->first_party, y->first_party);
    assert_int_equal(x->prompt, y->prompt);
    assert_int_equal(x->max_age, y->max_age);
}

static void sealed_request_round_trips(void **state)
{
    kr_keyring *kr = keyring(K1);
    gw_oidc_authz a = sample(), b;
    h2o_iovec_t s = gw_oidc_authz_seal(&pool, kr, &a, 1000);
    assert_int_equal(strlen(s.base), s.len);
    assert_true(strncmp(s.base, "k1.", 3) == 0);
    /* only characters that need no escaping in a form or an attribute */
    assert_int_equal(strspn(s.base, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."), s.len);
    assert_int_equal(gw_oidc_authz_unseal(&pool, kr, s.base, s.len, 1000, &b), GW_OIDC_OK);
    assert_same(&a, &b);
    assert_int_equal(gw_oidc_authz_unseal(&pool, kr, s.base, s.len, 1000 + GW_OIDC_REQUEST_TTL - 1, &b), GW_OIDC_OK);

    /* what is absent stays absent */
    gw_oidc_authz min = {.client_id = "c", .redirect_uri = "https://a.example/cb", .scope = "openid", .max_age = -1};
    s = gw_oidc_authz_seal(&pool, kr, &min, 1000);
    assert_int_equal(gw_oidc_authz_unseal(&pool, kr, s.base, s.len, 1000, &b), GW_OIDC_OK);
    assert_same(&min, &b);
    kr_keyring_free(kr);
}

static void sealed_request_expires(void **state)
{
    kr_keyring *kr = keyring(K1);
    gw_oidc_authz a = sample(), b;
    h2o_iovec_t s = gw_oidc_authz_seal(&pool, kr, &a, 1000);
    assert_int_equal(gw_oidc_authz_unseal(&pool, kr, s.base, s.len, 1000 + GW_OIDC_REQUEST_TTL, &b), GW_OIDC_EEXPIRED);
    assert_null(b.client_id);
    kr_keyring_free(kr);
}

static void sealed_request_refuses_any_change(void **state)
{
    kr_keyring *kr = keyring(K1);
    gw_oidc_authz a = sample(), b;
    h2o_iovec_t s = gw_oidc_authz_seal(&pool, kr, &a, 1000);
    char *t = malloc(s.len + 8);
    /* every single character changed */
    for (size_t i = 0; i < s.len; i++) {
        memcpy(t, s.base, s.len + 1);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        int rv = gw_oidc_authz_unseal(&pool, kr, t, s.len, 1000, &b);
        if (rv == GW_OIDC_OK)
            fail_msg("changing character %zu went unnoticed", i);
        assert_null(b.client_id);
    }
    /* cut short, or longer */
    assert_int_not_equal(gw_oidc_authz_unseal(&pool, kr, s.base, s.len - 1, 1000, &b), GW_OIDC_OK);
    memcpy(t, s.base, s.len);
    memcpy(t + s.len, "AAAA", 5);
    assert_int_not_equal(gw_oidc_authz_unseal(&pool, kr, t, s.len + 4, 1000, &b), GW_OIDC_OK);
    /* a payload of its own under the same MAC */
    const char *dot1 = strchr(s.base, '.'), *dot2 = strrchr(s.base, '.');
    snprintf(t, s.len + 8, "k1.eyJ2IjoxfQ%s", dot2);
    assert_int_equal(gw_oidc_authz_unseal(&pool, kr, t, strlen(t), 1000, &b), GW_OIDC_EMISMATCH);
    (void)dot1;
    /* garbage */
    const char *junk[] = {"", "abc", "k1..", ".a.b", "k1.a.", "k1.a.b", "k1.e30.AAAA"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        assert_int_not_equal(gw_oidc_authz_unseal(&pool, kr, junk[i], strlen(junk[i]), 1000, &b), GW_OIDC_OK);
    assert_int_equal(gw_oidc_authz_unseal(&pool, kr, NULL, 0, 1000, &b), GW_OIDC_EMALFORMED);
    free(t);
    kr_keyring_free(kr);
}

static void sealed_request_follows_the_keys(void **state)
{
    kr_keyring *old = keyring(K1), *rotated = keyring(K2 "," K1), *other = keyring(K1_OTHER), *without = keyring(K2);
    gw_oidc_authz a = sample(), b;
    h2o_iovec_t s = gw_oidc_authz_seal(&pool, old, &a, 1000);
    /* a rotation keeps requests in flight working */
    assert_int_equal(gw_oidc_authz_unseal(&pool, rotated, s.base, s.len, 1000, &b), GW_OIDC_OK);
    /* another installation's key of the same name, or a dropped key: refused */
    assert_int_equal(gw_oidc_authz_unseal(&pool, other, s.base, s.len, 1000, &b), GW_OIDC_EMISMATCH);
    assert_int_equal(gw_oidc_authz_unseal(&pool, without, s.base, s.len, 1000, &b), GW_OIDC_EMISMATCH);
    /* new requests are sealed with the first key, whose id has a dot */
    s = gw_oidc_authz_seal(&pool, rotated, &a, 1000);
    assert_true(strncmp(s.base, "k.2.", 4) == 0);
    assert_int_equal(gw_oidc_authz_unseal(&pool, without, s.base, s.len, 1000, &b), GW_OIDC_OK);
    assert_same(&a, &b);
    /* the key id is covered by the MAC: claiming another refuses it */
    char *t = malloc(s.len + 1);
    memcpy(t, s.base, s.len + 1);
    t[0] = 'j';
    kr_keyring *both = keyring("j.2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=," K2);
    assert_int_equal(gw_oidc_authz_unseal(&pool, both, t, s.len, 1000, &b), GW_OIDC_EMISMATCH);
    free(t);
    /* a MAC made with the same key for another purpose is worthless here */
    const char *dot2 = strrchr(s.base, '.');
    unsigned char mac[KR_KEYRING_MAC_LEN];
    assert_int_equal(kr_keyring_mac(rotated, NULL, "oidc.logout", s.base, (size_t)(dot2 - s.base), mac), 0);
    char forged[GW_OIDC_SEALED_MAX];
    size_t n = (size_t)(dot2 - s.base) + 1;
    memcpy(forged, s.base, n);
    n += kr_oauth_b64url_encode(mac, sizeof(mac), forged + n);
    assert_int_equal(gw_oidc_authz_unseal(&pool, rotated, forged, n, 1000, &b), GW_OIDC_EMISMATCH);
    kr_keyring_free(old);
    kr_keyring_free(rotated);
    kr_keyring_free(other);
    kr_keyring_free(without);
    kr_keyring_free(both);
}

/* ---------------------------------------------------------------- CSRF */

static void csrf_tokens_compare_exactly(void **state)
{
    char a[GW_OIDC_CSRF_LEN + 1], b[GW_OIDC_CSRF_LEN + 1];
    gw_oidc_csrf_new(a);
    gw_oidc_csrf_new(b);
    assert_int_equal(strlen(a), GW_OIDC_CSRF_LEN);
    assert_string_not_equal(a, b);
    assert_true(gw_oidc_csrf_shape(a, strlen(a)));
    assert_true(gw_oidc_csrf_valid(a, strlen(a), a));
    assert_false(gw_oidc_csrf_valid(a, strlen(a), b));
    assert_false(gw_oidc_csrf_valid(a, strlen(a), NULL));
    assert_false(gw_oidc_csrf_valid(NULL, 0, a));
    assert_false(gw_oidc_csrf_valid("", 0, ""));
    /* a prefix, or the right length with other characters, is not enough */
    assert_false(gw_oidc_csrf_valid(a, strlen(a) - 1, a));
    char c[GW_OIDC_CSRF_LEN + 2];
    memcpy(c, a, sizeof(a));
    strcat(c, "x");
    assert_false(gw_oidc_csrf_valid(c, strlen(c), c));
    memcpy(c, a, sizeof(a));
    c[5] = '.';
    assert_false(gw_oidc_csrf_valid(c, strlen(c), c));
    assert_false(gw_oidc_csrf_shape(c, strlen(c)));
}

/* ------------------------------------------------------------- cookies */

static const char *find(const char *header, const char *name)
{
    h2o_iovec_t v;
    if (!gw_oidc_cookie_find(header, strlen(header), name, &v))
        return NULL;
    return h2o_strdup(&pool, v.base, v.len).base;
}

static void cookies_are_found_by_exact_name(void **state)
{
    assert_string_equal(find("kreide_sso=abc", "kreide_sso"), "abc");
    assert_string_equal(find("a=1; kreide_sso=abc; b=2", "kreide_sso"), "abc");
    assert_string_equal(find("a=1;kreide_sso=abc;b=2", "kreide_sso"), "abc");
    assert_string_equal(find("x_kreide_sso=no; kreide_sso=yes", "kreide_sso"), "yes");
    assert_string_equal(find("kreide_sso=first; kreide_sso=second", "kreide_sso"), "first");
    assert_string_equal(find("kreide_sso=\"quoted\"", "kreide_sso"), "quoted");
    assert_string_equal(find("kreide_sso=", "kreide_sso"), "");
    assert_string_equal(find("kreide_csrf=a=b", "kreide_csrf"), "a=b");
    assert_null(find("kreide_ssox=1; other=2", "kreide_sso"));
    assert_null(find("kreide_sso", "kreide_sso"));
    assert_null(find("", "kreide_sso"));
}

static void cookies_are_built_with_their_attributes(void **state)
{
    assert_string_equal(gw_oidc_cookie_build(&pool, "kreide_sso", "tok", "/", 43200, "Lax", false).base,
                        "kreide_sso=tok; Path=/; Max-Age=43200; HttpOnly; SameSite=Lax");
    assert_string_equal(gw_oidc_cookie_build(&pool, "kreide_sso", "", "/", 0, "Lax", true).base,
                        "kreide_sso=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure");
    assert_string_equal(gw_oidc_cookie_build(&pool, "kreide_csrf", "c", "/oidc", -1, "Strict", true).base,
                        "kreide_csrf=c; Path=/oidc; HttpOnly; SameSite=Strict; Secure");
}

/* --------------------------------------------------------- logout hints */

static kr_jwt_keyset *keys_with(const char *kid)
{
    char *pem = NULL;
    assert_int_equal(kr_jwt_generate_es256_pem(&pem), KR_JWT_OK);
    kr_jwt_keyset *ks = kr_jwt_keyset_new();
    char err[128];
    assert_int_equal(kr_jwt_keyset_add_pem(ks, kid, pem, strlen(pem), err, sizeof(err)), KR_JWT_OK);
    free(pem);
    return ks;
}

static char *id_token(const kr_jwt_keyset *ks, const char *iss, const char *aud, int64_t exp)
{
    kr_jwt_claims c = {
        .iss = (char *)iss, .sub = "0190b3c4-7d2e-7a11-9f00-0123456789ab", .aud = (char *)aud, .sid = "s1", .exp = exp};
    char *tok = NULL;
    assert_int_equal(kr_jwt_sign(ks, &c, &tok), KR_JWT_OK);
    return tok;
}

static void id_token_hint_may_be_old_but_must_be_ours(void **state)
{
    kr_jwt_keyset *ks = keys_with("a"), *theirs = keys_with("a");
    const char *iss = "https://sso.example.org";
    kr_jwt_claims c;
    char *old = id_token(ks, iss, "client-1", 1000); /* expired long ago */
    assert_int_equal(gw_oidc_id_token_hint(ks, iss, "kreide", old, "client-1", &c), KR_JWT_OK);
    assert_string_equal(c.aud, "client-1");
    assert_string_equal(c.sub, "0190b3c4-7d2e-7a11-9f00-0123456789ab");
    assert_string_equal(c.sid, "s1");
    kr_jwt_claims_clear(&c);
    /* without a client_id, the audience is read from it */
    assert_int_equal(gw_oidc_id_token_hint(ks, iss, "kreide", old, NULL, &c), KR_JWT_OK);
    assert_string_equal(c.aud, "client-1");
    kr_jwt_claims_clear(&c);
    /* another client's, another issuer's, another key's */
    assert_int_equal(gw_oidc_id_token_hint(ks, iss, "kreide", old, "client-2", &c), KR_JWT_EAUDIENCE);
    assert_null(c.sub);
    assert_int_equal(gw_oidc_id_token_hint(ks, "https://evil.example", "kreide", old, NULL, &c), KR_JWT_EISSUER);
    assert_int_not_equal(gw_oidc_id_token_hint(theirs, iss, "kreide", old, NULL, &c), KR_JWT_OK);
    /* an access token (aud = the API) is no ID token */
    char *access = id_token(ks, iss, "kreide", 1000);
    assert_int_equal(gw_oidc_id_token_hint(ks, iss, "kreide", access, NULL, &c), KR_JWT_EAUDIENCE);
    assert_null(c.sub);
    /* junk */
    assert_int_not_equal(gw_oidc_id_token_hint(ks, iss, "kreide", "a.b.c", NULL, &c), KR_JWT_OK);
    assert_int_not_equal(gw_oidc_id_token_hint(ks, iss, "kreide", NULL, NULL, &c), KR_JWT_OK);
    free(old);
    free(access);
    kr_jwt_keyset_free(ks);
    kr_jwt_keyset_free(theirs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(begin_needs_client_id_and_redirect_uri),
        cmocka_unit_test(check_accepts_a_full_request),
        cmocka_unit_test(check_refuses_response_types_and_objects),
        cmocka_unit_test(check_scope_needs_openid_and_registered_tokens),
        cmocka_unit_test(check_pkce_is_s256_and_required_for_public_clients),
        cmocka_unit_test(check_prompt_and_max_age),
        cmocka_unit_test(check_bounds_what_it_carries),
        cmocka_unit_test(sealed_request_round_trips),
        cmocka_unit_test(sealed_request_expires),
        cmocka_unit_test(sealed_request_refuses_any_change),
        cmocka_unit_test(sealed_request_follows_the_keys),
        cmocka_unit_test(csrf_tokens_compare_exactly),
        cmocka_unit_test(cookies_are_found_by_exact_name),
        cmocka_unit_test(cookies_are_built_with_their_attributes),
        cmocka_unit_test(id_token_hint_may_be_old_but_must_be_ours),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
