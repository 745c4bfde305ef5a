#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
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

#define S(lit) lit, sizeof(lit) - 1

/* ------------------------------------------------------------------ PKCE */

/* The rules and their tests live in libcommon (kr_oauth_test.c); this checks
 * that the gateway's wrappers keep its error codes. RFC 7636 Appendix B. */
static const char rfc_verifier[] = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
static const char rfc_challenge[] = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

static void pkce_wrappers_keep_the_gateway_codes(void **state)
{
    assert_true(gw_oidc_pkce_challenge_valid(S(rfc_challenge)));
    assert_false(gw_oidc_pkce_challenge_valid(S("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN")));
    assert_int_equal(gw_oidc_pkce_verify(S(rfc_verifier), S(rfc_challenge)), GW_OIDC_OK);
    assert_int_equal(gw_oidc_pkce_verify(S(rfc_challenge), S(rfc_challenge)), GW_OIDC_EMISMATCH);
    assert_int_equal(gw_oidc_pkce_verify(rfc_verifier, 42, S(rfc_challenge)), GW_OIDC_EMALFORMED);
}

/* ---------------------------------------------------------- redirect URIs */

static void redirect_uri_check_accepts_https_and_loopback_http(void **state)
{
    const char *ok[] = {
        "https://rp.example.org/cb",
        "https://rp.example.org:8443/oidc/callback?tenant=a&x=%20y",
        "https://rp.example.org",
        "http://127.0.0.1/cb",
        "http://127.0.0.1:51004/cb",
        "http://[::1]:8080/cb",
        "http://localhost:3000/auth/callback",
        "https://[2001:db8::1]/cb",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_int_equal(gw_oidc_redirect_uri_check(ok[i], strlen(ok[i])), GW_OIDC_OK);
}

static void redirect_uri_check_refuses_the_rest(void **state)
{
    struct {
        const char *uri;
        int err;
    } bad[] = {
        {"https://rp.example.org/cb#frag", GW_OIDC_EFRAGMENT},
        {"https://rp.example.org/cb#", GW_OIDC_EFRAGMENT},
        {"http://rp.example.org/cb", GW_OIDC_ESCHEME},
        {"http://127.0.0.2/cb", GW_OIDC_ESCHEME},
        {"http://localhost.evil.example/cb", GW_OIDC_ESCHEME},
        {"http://127.0.0.1.evil.example/cb", GW_OIDC_ESCHEME},
        {"javascript://rp.example.org/%0aalert(1)", GW_OIDC_ESCHEME},
        {"ftp://rp.example.org/cb", GW_OIDC_ESCHEME},
        {"javascript:alert(1)", GW_OIDC_EMALFORMED},
        {"data:text/html,hi", GW_OIDC_EMALFORMED},
        {"/relative/cb", GW_OIDC_EMALFORMED},
        {"//rp.example.org/cb", GW_OIDC_EMALFORMED},
        {"HTTPS://rp.example.org/cb", GW_OIDC_EMALFORMED},
        {"https://RP.example.org/cb", GW_OIDC_EMALFORMED},
        {"https://user@rp.example.org/cb", GW_OIDC_EMALFORMED},
        {"https://rp.example.org@evil.example/cb", GW_OIDC_EMALFORMED},
        {"https:///cb", GW_OIDC_EMALFORMED},
        {"https://:443/cb", GW_OIDC_EMALFORMED},
        {"https://rp.example.org:/cb", GW_OIDC_EMALFORMED},
        {"https://rp.example.org:0/cb", GW_OIDC_EMALFORMED},
        {"https://rp.example.org:65536/cb", GW_OIDC_EMALFORMED},
        {"https://rp.example.org:44x/cb", GW_OIDC_EMALFORMED},
        {"https://rp.example.org/c b", GW_OIDC_EMALFORMED},
        {"https://rp.example.org/c\\b", GW_OIDC_EMALFORMED},
        {"https://rp.example.org/c\"b", GW_OIDC_EMALFORMED},
        {"https://rp.example.org/c<b", GW_OIDC_EMALFORMED},
        {"https://rp.example.org/cb%", GW_OIDC_EMALFORMED},
        {"https://rp.example.org/cb%4", GW_OIDC_EMALFORMED},
        {"https://rp.example.org/cb%zz", GW_OIDC_EMALFORMED},
        {"https://rp.example.org/c[b]", GW_OIDC_EMALFORMED},
        {"https://rp.exa\xc3\xa4mple.org/cb", GW_OIDC_EMALFORMED},
        {"https://rp.example.org/cb\r\nSet-Cookie:x", GW_OIDC_EMALFORMED},
        {"https://[::1/cb", GW_OIDC_EMALFORMED},
        {"https://[]/cb", GW_OIDC_EMALFORMED},
        {"", GW_OIDC_EMALFORMED},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rv = gw_oidc_redirect_uri_check(bad[i].uri, strlen(bad[i].uri));
        if (rv != bad[i].err)
            fail_msg("%s: got %d (%s), want %d", bad[i].uri, rv, gw_oidc_strerror(rv), bad[i].err);
    }
    char longuri[GW_OIDC_REDIRECT_URI_MAX + 2];
    memset(longuri, 'a', sizeof(longuri));
    memcpy(longuri, "https://rp.example.org/", 23);
    assert_int_equal(gw_oidc_redirect_uri_check(longuri, GW_OIDC_REDIRECT_URI_MAX), GW_OIDC_OK);
    assert_int_equal(gw_oidc_redirect_uri_check(longuri, GW_OIDC_REDIRECT_URI_MAX + 1), GW_OIDC_ETOOBIG);
}

static const char *const registered[] = {
    "https://rp.example.org/cb", "https://rp.example.org/cb?tenant=a", "http://127.0.0.1:8000/native",
    "http://[::1]/v6",           "http://localhost:3000/cb",
};
#define NREG (sizeof(registered) / sizeof(registered[0]))

static int match(const char *uri)
{
    return gw_oidc_redirect_uri_match(uri, strlen(uri), registered, NREG);
}

static void redirect_uri_match_is_byte_exact(void **state)
{
    assert_int_equal(match("https://rp.example.org/cb"), 0);
    assert_int_equal(match("https://rp.example.org/cb?tenant=a"), 1);
    assert_int_equal(match("https://rp.example.org/cb/"), -1);
    assert_int_equal(match("https://rp.example.org/c"), -1);
    assert_int_equal(match("https://rp.example.org/cb/../cb"), -1);
    assert_int_equal(match("https://rp.example.org/cbx"), -1);
    assert_int_equal(match("https://rp.example.org/CB"), -1);
    assert_int_equal(match("https://rp.example.org/c%62"), -1);
    assert_int_equal(match("https://rp.example.org:443/cb"), -1);
    assert_int_equal(match("https://rp.example.org/cb?tenant=b"), -1);
    assert_int_equal(match("https://rp.example.org/cb?"), -1);
    assert_int_equal(match("https://rp.example.org/cb?tenant=a&x=1"), -1);
    assert_int_equal(match("https://rp.example.org/cb#x"), -1);
    assert_int_equal(match("https://rp.example.org.evil.example/cb"), -1);
    assert_int_equal(match("http://rp.example.org/cb"), -1);
    assert_int_equal(match(""), -1);
    /* a registered URI is not matched by a longer request holding a NUL */
    assert_int_equal(gw_oidc_redirect_uri_match("https://rp.example.org/cb\0x", 27, registered, NREG), -1);
}

static void redirect_uri_match_lets_loopback_ip_ports_vary(void **state)
{
    assert_int_equal(match("http://127.0.0.1:8000/native"), 2);
    assert_int_equal(match("http://127.0.0.1:51234/native"), 2);
    assert_int_equal(match("http://127.0.0.1/native"), 2);
    assert_int_equal(match("http://127.0.0.1:51234/native2"), -1);
    assert_int_equal(match("http://127.0.0.1:51234/native?x=1"), -1);
    assert_int_equal(match("http://[::1]:9999/v6"), 3);
    assert_int_equal(match("http://[::1]:9999/v4"), -1);
    assert_int_equal(match("http://127.0.0.1:9999/v6"), -1);
    /* "localhost" is a name, not a loopback IP literal: exact only (RFC 8252 section 8.3) */
    assert_int_equal(match("http://localhost:3000/cb"), 4);
    assert_int_equal(match("http://localhost:3001/cb"), -1);
    /* https on loopback is its own URI */
    assert_int_equal(match("https://127.0.0.1:8000/native"), -1);
}

static void redirect_code_keeps_the_query_and_encodes(void **state)
{
    h2o_iovec_t r = gw_oidc_redirect_code(&pool, "https://rp.example.org/cb", "c0de", "xyz", "https://sso.example.org");
    assert_string_equal(r.base, "https://rp.example.org/cb?code=c0de&state=xyz&iss=https%3A%2F%2Fsso.example.org");
    assert_int_equal(r.len, strlen(r.base));

    r = gw_oidc_redirect_code(&pool, "https://rp.example.org/cb?tenant=a", "c", "a b&c=d#e+f%", "http://127.0.0.1:8080");
    assert_string_equal(
        r.base, "https://rp.example.org/cb?tenant=a&code=c&state=a%20b%26c%3Dd%23e%2Bf%25&iss=http%3A%2F%2F127.0.0.1%3A8080");

    r = gw_oidc_redirect_code(&pool, "https://rp.example.org/cb?", "c", NULL, "i");
    assert_string_equal(r.base, "https://rp.example.org/cb?code=c&iss=i");
    r = gw_oidc_redirect_code(&pool, "https://rp.example.org/cb?a=1&", "c", NULL, "i");
    assert_string_equal(r.base, "https://rp.example.org/cb?a=1&code=c&iss=i");

    /* UTF-8 is encoded byte by byte, unreserved characters stay */
    r = gw_oidc_redirect_code(&pool, "https://rp.example.org/cb", "A-z_0.9~", "\xc3\xa4", "i");
    assert_string_equal(r.base, "https://rp.example.org/cb?code=A-z_0.9~&state=%C3%A4&iss=i");
}

static void redirect_error_carries_state_and_iss(void **state)
{
    h2o_iovec_t r = gw_oidc_redirect_error(&pool, "https://rp.example.org/cb", "access_denied", "the user said no", "s1",
                                           "https://sso.example.org");
    assert_string_equal(r.base, "https://rp.example.org/cb?error=access_denied&error_description=the%20user%20said%20no&state=s1&"
                                "iss=https%3A%2F%2Fsso.example.org");
    r = gw_oidc_redirect_error(&pool, "https://rp.example.org/cb", "login_required", NULL, NULL, "i");
    assert_string_equal(r.base, "https://rp.example.org/cb?error=login_required&iss=i");
}

/* ------------------------------------------------------------ parameters */

static int parse(const char *text, gw_oidc_form *f, const char **bad)
{
    return gw_oidc_form_parse(&pool, text, strlen(text), NULL, f, bad);
}

static void form_parse_decodes_pairs(void **state)
{
    gw_oidc_form f;
    const char *bad = "x";
    assert_int_equal(parse("response_type=code&client_id=s6Bh&redirect_uri=https%3A%2F%2Frp.example.org%2Fcb&scope=openid+"
                           "profile&state=%C3%A4%2b",
                           &f, &bad),
                     GW_OIDC_OK);
    assert_null(bad);
    assert_int_equal(f.n, 5);
    assert_string_equal(f.params[0].name, "response_type");
    assert_string_equal(gw_oidc_form_get(&f, "redirect_uri"), "https://rp.example.org/cb");
    assert_string_equal(gw_oidc_form_get(&f, "scope"), "openid profile");
    assert_string_equal(gw_oidc_form_get(&f, "state"), "\xc3\xa4+");
    assert_null(gw_oidc_form_get(&f, "nonce"));
    assert_null(gw_oidc_form_get(&f, "Scope"));

    assert_int_equal(parse("", &f, NULL), GW_OIDC_OK);
    assert_int_equal(f.n, 0);
    assert_int_equal(parse("&&a=1&&", &f, NULL), GW_OIDC_OK);
    assert_int_equal(f.n, 1);
    assert_int_equal(parse("a=b=c", &f, NULL), GW_OIDC_OK);
    assert_string_equal(gw_oidc_form_get(&f, "a"), "b=c");
    assert_int_equal(parse("na%6De=v", &f, NULL), GW_OIDC_OK);
    assert_string_equal(gw_oidc_form_get(&f, "name"), "v");
}

static void form_parse_treats_empty_values_as_absent(void **state)
{
    gw_oidc_form f;
    assert_int_equal(parse("state=&prompt&nonce=n", &f, NULL), GW_OIDC_OK);
    assert_int_equal(f.n, 1);
    assert_null(gw_oidc_form_get(&f, "state"));
    assert_null(gw_oidc_form_get(&f, "prompt"));
    /* so an empty one next to a real one is no repetition */
    assert_int_equal(parse("state=&state=s", &f, NULL), GW_OIDC_OK);
    assert_string_equal(gw_oidc_form_get(&f, "state"), "s");
}

static void form_parse_refuses_repeated_parameters(void **state)
{
    gw_oidc_form f;
    const char *bad = NULL;
    assert_int_equal(parse("client_id=a&redirect_uri=x&client_id=b", &f, &bad), GW_OIDC_EDUPLICATE);
    assert_string_equal(bad, "client_id");
    /* the same name spelled with an escape is the same name */
    assert_int_equal(parse("scope=openid&sc%6Fpe=profile", &f, &bad), GW_OIDC_EDUPLICATE);
    assert_string_equal(bad, "scope");
    static const char *const repeatable[] = {"resource", NULL};
    assert_int_equal(gw_oidc_form_parse(&pool, S("resource=a&resource=b&x=1"), repeatable, &f, &bad), GW_OIDC_OK);
    assert_int_equal(f.n, 3);
    assert_int_equal(gw_oidc_form_parse(&pool, S("resource=a&x=1&x=2"), repeatable, &f, &bad), GW_OIDC_EDUPLICATE);
    assert_string_equal(bad, "x");
}

static void form_parse_refuses_bad_escapes_and_encodings(void **state)
{
    gw_oidc_form f;
    const char *bad = NULL;
    assert_int_equal(parse("a=%", &f, &bad), GW_OIDC_EMALFORMED);
    assert_string_equal(bad, "a");
    assert_int_equal(parse("a=%4", &f, NULL), GW_OIDC_EMALFORMED);
    assert_int_equal(parse("a=%4g", &f, NULL), GW_OIDC_EMALFORMED);
    assert_int_equal(parse("a%=1", &f, &bad), GW_OIDC_EMALFORMED);
    assert_null(bad);
    assert_int_equal(parse("=1", &f, NULL), GW_OIDC_EMALFORMED);
    assert_int_equal(parse("a=x%00y", &f, NULL), GW_OIDC_EENCODING);
    assert_int_equal(parse("a=%FF", &f, NULL), GW_OIDC_EENCODING);
    assert_int_equal(parse("a=%C0%AF", &f, NULL), GW_OIDC_EENCODING);       /* overlong '/' */
    assert_int_equal(parse("a=%ED%A0%80", &f, NULL), GW_OIDC_EENCODING);    /* a surrogate */
    assert_int_equal(parse("a=%F4%90%80%80", &f, NULL), GW_OIDC_EENCODING); /* above U+10FFFF */
    assert_int_equal(parse("a=%E2%82", &f, NULL), GW_OIDC_EENCODING);       /* cut short */
    assert_int_equal(parse("a=\xff", &f, NULL), GW_OIDC_EENCODING);
    assert_int_equal(parse("a=%F0%9F%99%82", &f, NULL), GW_OIDC_OK); /* four bytes are fine */
}

static void form_parse_is_bounded(void **state)
{
    gw_oidc_form f;
    char text[GW_OIDC_FORM_MAX_BYTES + 2];
    memset(text, 'a', sizeof(text));
    text[0] = 'x';
    text[1] = '=';
    assert_int_equal(gw_oidc_form_parse(&pool, text, GW_OIDC_FORM_MAX_BYTES, NULL, &f, NULL), GW_OIDC_OK);
    assert_int_equal(strlen(gw_oidc_form_get(&f, "x")), GW_OIDC_FORM_MAX_BYTES - 2);
    assert_int_equal(gw_oidc_form_parse(&pool, text, GW_OIDC_FORM_MAX_BYTES + 1, NULL, &f, NULL), GW_OIDC_ETOOBIG);

    char many[512] = "";
    for (int i = 0; i <= GW_OIDC_FORM_MAX_PARAMS; i++) {
        char one[16];
        snprintf(one, sizeof(one), "p%d=1&", i);
        strcat(many, one);
    }
    assert_int_equal(parse(many, &f, NULL), GW_OIDC_ETOOMANY);
    assert_int_equal(f.n, GW_OIDC_FORM_MAX_PARAMS);
}

/* ------------------------------------------------------ client credentials */

static int basic(const char *header, const char **id, const char **secret)
{
    return gw_oidc_client_basic(&pool, header, strlen(header), id, secret);
}

static void client_basic_reads_the_rfc_6749_example(void **state)
{
    const char *id, *secret;
    /* RFC 6749 section 2.3.1 */
    assert_int_equal(basic("Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3", &id, &secret), GW_OIDC_OK);
    assert_string_equal(id, "s6BhdRkqt3");
    assert_string_equal(secret, "7Fjfp0ZBr1KtDRbnfVdmIw");
    assert_int_equal(basic("basic  czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3 ", &id, &secret), GW_OIDC_OK);
    assert_int_equal(basic("BASIC czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3", &id, &secret), GW_OIDC_OK);
}

static void client_basic_form_decodes_both_parts(void **state)
{
    const char *id, *secret;
    /* "my%3Aclient:s%2Bcr%25t+x" */
    assert_int_equal(basic("Basic bXklM0FjbGllbnQ6cyUyQmNyJTI1dCt4", &id, &secret), GW_OIDC_OK);
    assert_string_equal(id, "my:client");
    assert_string_equal(secret, "s+cr%t x");
    /* "caf%C3%A9:x" */
    assert_int_equal(basic("Basic Y2FmJUMzJUE5Ong=", &id, &secret), GW_OIDC_OK);
    assert_string_equal(id, "caf\xc3\xa9");
    /* "id:" : an empty secret is the caller's to refuse */
    assert_int_equal(basic("Basic aWQ6", &id, &secret), GW_OIDC_OK);
    assert_string_equal(secret, "");
}

static void client_basic_refuses_malformed_headers(void **state)
{
    const char *id = "x", *secret = "x";
    assert_int_equal(basic("Bearer czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3", &id, &secret), GW_OIDC_EMALFORMED);
    assert_null(id);
    assert_null(secret);
    assert_int_equal(basic("Basic", &id, &secret), GW_OIDC_EMALFORMED);
    assert_int_equal(basic("Basic ", &id, &secret), GW_OIDC_EMALFORMED);
    assert_int_equal(basic("Basicczz", &id, &secret), GW_OIDC_EMALFORMED);
    assert_int_equal(basic("Basic bm9jb2xvbg==", &id, &secret), GW_OIDC_EMALFORMED); /* "nocolon" */
    assert_int_equal(basic("Basic OnNlY3JldA==", &id, &secret), GW_OIDC_EMALFORMED); /* ":secret" */
    assert_int_equal(basic("Basic aWQ6JVpa", &id, &secret), GW_OIDC_EMALFORMED);     /* "id:%ZZ" */
    assert_int_equal(basic("Basic aWQ6JTAw", &id, &secret), GW_OIDC_EENCODING);      /* "id:%00" */
    assert_int_equal(basic("Basic aWQ6/w==", &id, &secret), GW_OIDC_EENCODING);      /* "id:\xff" */
    assert_int_equal(basic("Basic aWQ6/x==", &id, &secret), GW_OIDC_EMALFORMED);     /* stray bits */
    assert_int_equal(basic("Basic YTpi=", &id, &secret), GW_OIDC_EMALFORMED);
    assert_int_equal(basic("Basic YTp", &id, &secret), GW_OIDC_EMALFORMED);
    assert_int_equal(basic("Basic YT=i", &id, &secret), GW_OIDC_EMALFORMED);
    assert_int_equal(basic("Basic ====", &id, &secret), GW_OIDC_EMALFORMED);
    assert_int_equal(basic("Basic YTpi YTpi", &id, &secret), GW_OIDC_EMALFORMED);
    assert_int_equal(basic("Basic YT-i", &id, &secret), GW_OIDC_EMALFORMED);
    char longh[GW_OIDC_BASIC_MAX + 8] = "Basic ";
    memset(longh + 6, 'Q', sizeof(longh) - 7);
    longh[sizeof(longh) - 1] = '\0';
    assert_int_equal(basic(longh, &id, &secret), GW_OIDC_ETOOBIG);
}

static void strerror_names_every_code(void **state)
{
    for (int e = GW_OIDC_OK; e <= GW_OIDC_EMISMATCH; e++)
        assert_string_not_equal(gw_oidc_strerror(e), "unknown error");
    assert_string_equal(gw_oidc_strerror(999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pkce_wrappers_keep_the_gateway_codes),
        cmocka_unit_test(redirect_uri_check_accepts_https_and_loopback_http),
        cmocka_unit_test(redirect_uri_check_refuses_the_rest),
        cmocka_unit_test(redirect_uri_match_is_byte_exact),
        cmocka_unit_test(redirect_uri_match_lets_loopback_ip_ports_vary),
        cmocka_unit_test(redirect_code_keeps_the_query_and_encodes),
        cmocka_unit_test(redirect_error_carries_state_and_iss),
        cmocka_unit_test(form_parse_decodes_pairs),
        cmocka_unit_test(form_parse_treats_empty_values_as_absent),
        cmocka_unit_test(form_parse_refuses_repeated_parameters),
        cmocka_unit_test(form_parse_refuses_bad_escapes_and_encodings),
        cmocka_unit_test(form_parse_is_bounded),
        cmocka_unit_test(client_basic_reads_the_rfc_6749_example),
        cmocka_unit_test(client_basic_form_decodes_both_parts),
        cmocka_unit_test(client_basic_refuses_malformed_headers),
        cmocka_unit_test(strerror_names_every_code),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
