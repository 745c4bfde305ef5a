#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <string.h>

#include "oidc.h"

/* A teacher at two schools, one of them without a kennung, and a parent at
 * a third school: the person the tests ask about. */
typedef struct {
    Kreide__Identity__ClaimGroup g1, g2;
    Kreide__Identity__ClaimGroup *groups_a[2];
    Kreide__Identity__ClaimSchool a, b, c;
    Kreide__Identity__ClaimSchool *schools[3];
    Kreide__Identity__UserClaims uc;
} person;

static char *roles_teacher_head[] = {"teacher", "head"};
static char *sc_lehr_leit[] = {"Lehr", "Leit"};
static char *roles_teacher[] = {"teacher"};
static char *sc_lehr[] = {"Lehr"};
static char *roles_parent[] = {"parent"};
static char *sc_sorgber[] = {"SorgBer"};

static void person_init(person *p)
{
    memset(p, 0, sizeof(*p));
    kreide__identity__claim_group__init(&p->g1);
    p->g1.group_id = "0190b3c4-0000-7000-8000-0000000000a1";
    p->g1.name = "5a";
    p->g1.kind = "class";
    p->g1.role = "leader";
    kreide__identity__claim_group__init(&p->g2);
    p->g2.group_id = "0190b3c4-0000-7000-8000-0000000000a2";
    p->g2.name = "Chor";
    p->g2.kind = "club";
    p->g2.role = "member";
    p->groups_a[0] = &p->g1;
    p->groups_a[1] = &p->g2;

    kreide__identity__claim_school__init(&p->a);
    p->a.school_id = "0190b3c4-0000-7000-8000-00000000000a";
    p->a.name = "Grundschule am Park";
    p->a.kennung = "123456";
    p->a.roles = roles_teacher_head;
    p->a.n_roles = 2;
    p->a.schulconnex_roles = sc_lehr_leit;
    p->a.n_schulconnex_roles = 2;
    p->a.groups = p->groups_a;
    p->a.n_groups = 2;

    kreide__identity__claim_school__init(&p->b);
    p->b.school_id = "0190b3c4-0000-7000-8000-00000000000b";
    p->b.name = "Musikschule";
    p->b.kennung = ""; /* none */
    p->b.roles = roles_teacher;
    p->b.n_roles = 1;
    p->b.schulconnex_roles = sc_lehr;
    p->b.n_schulconnex_roles = 1;

    kreide__identity__claim_school__init(&p->c);
    p->c.school_id = "0190b3c4-0000-7000-8000-00000000000c";
    p->c.name = "Kita Regenbogen";
    p->c.kennung = "K-77";
    p->c.roles = roles_parent;
    p->c.n_roles = 1;
    p->c.schulconnex_roles = sc_sorgber;
    p->c.n_schulconnex_roles = 1;

    p->schools[0] = &p->a;
    p->schools[1] = &p->b;
    p->schools[2] = &p->c;
    kreide__identity__user_claims__init(&p->uc);
    p->uc.sub = "0190b3c4-7d2e-7a11-9f00-0123456789ab";
    p->uc.name = "Anna Weber";
    p->uc.given_name = "Anna";
    p->uc.family_name = "Weber";
    p->uc.preferred_username = "anna.weber";
    p->uc.schools = p->schools;
    p->uc.n_schools = 3;
}

static const char *str(json_t *o, const char *name)
{
    return json_string_value(json_object_get(o, name));
}

static void assert_strings(json_t *a, const char *const *want, size_t n)
{
    assert_true(json_is_array(a));
    assert_int_equal(json_array_size(a), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(json_string_value(json_array_get(a, i)), want[i]);
}

static void scope_has_matches_whole_tokens(void **state)
{
    assert_true(gw_oidc_scope_has("openid profile school", "openid"));
    assert_true(gw_oidc_scope_has("openid profile school", "school"));
    assert_true(gw_oidc_scope_has("profile", "profile"));
    assert_false(gw_oidc_scope_has("openid profiles", "profile"));
    assert_false(gw_oidc_scope_has("openidx", "openid"));
    assert_false(gw_oidc_scope_has("xopenid", "openid"));
    assert_false(gw_oidc_scope_has("", "openid"));
    assert_false(gw_oidc_scope_has(NULL, "openid"));
    assert_false(gw_oidc_scope_has("openid", ""));
    assert_false(gw_oidc_scope_has("openid", NULL));
}

static void openid_alone_gives_sub_only(void **state)
{
    person p;
    person_init(&p);
    json_t *o = gw_oidc_person_claims(&p.uc, "openid");
    assert_int_equal(json_object_size(o), 1);
    assert_string_equal(str(o, "sub"), p.uc.sub);
    json_decref(o);
    /* offline_access adds nothing about the person */
    o = gw_oidc_person_claims(&p.uc, "openid offline_access");
    assert_int_equal(json_object_size(o), 1);
    json_decref(o);
}

static void profile_gives_names_and_leaves_out_empty_ones(void **state)
{
    person p;
    person_init(&p);
    json_t *o = gw_oidc_person_claims(&p.uc, "openid profile");
    assert_string_equal(str(o, "sub"), p.uc.sub);
    assert_string_equal(str(o, "name"), "Anna Weber");
    assert_string_equal(str(o, "given_name"), "Anna");
    assert_string_equal(str(o, "family_name"), "Weber");
    assert_string_equal(str(o, "preferred_username"), "anna.weber");
    assert_null(json_object_get(o, "schools"));
    assert_null(json_object_get(o, "urn:schulconnex:de:personenkontext:rolle"));
    assert_int_equal(json_object_size(o), 5);
    json_decref(o);

    p.uc.family_name = "";
    p.uc.given_name = NULL;
    o = gw_oidc_person_claims(&p.uc, "profile openid");
    assert_null(json_object_get(o, "family_name"));
    assert_null(json_object_get(o, "given_name"));
    assert_string_equal(str(o, "name"), "Anna Weber");
    json_decref(o);
}

static void school_scope_gives_schools_groups_and_schulconnex_claims(void **state)
{
    person p;
    person_init(&p);
    json_t *o = gw_oidc_person_claims(&p.uc, "openid school");
    assert_null(json_object_get(o, "name")); /* no profile scope */
    json_t *schools = json_object_get(o, "schools");
    assert_int_equal(json_array_size(schools), 3);

    json_t *a = json_array_get(schools, 0);
    assert_string_equal(str(a, "school_id"), p.a.school_id);
    assert_string_equal(str(a, "name"), "Grundschule am Park");
    assert_string_equal(str(a, "kennung"), "123456");
    const char *ra[] = {"teacher", "head"}, *sa[] = {"Lehr", "Leit"};
    assert_strings(json_object_get(a, "roles"), ra, 2);
    assert_strings(json_object_get(a, "schulconnex_roles"), sa, 2);
    json_t *groups = json_object_get(a, "groups");
    assert_int_equal(json_array_size(groups), 2);
    json_t *g = json_array_get(groups, 0);
    assert_string_equal(str(g, "group_id"), p.g1.group_id);
    assert_string_equal(str(g, "name"), "5a");
    assert_string_equal(str(g, "kind"), "class");
    assert_string_equal(str(g, "role"), "leader");
    assert_string_equal(str(json_array_get(groups, 1), "kind"), "club");

    json_t *b = json_array_get(schools, 1);
    assert_null(json_object_get(b, "kennung")); /* empty: left out */
    assert_int_equal(json_array_size(json_object_get(b, "groups")), 0);

    /* distinct codes in order of appearance; Lehr twice is named once */
    const char *roles[] = {"Lehr", "Leit", "SorgBer"};
    assert_strings(json_object_get(o, "urn:schulconnex:de:personenkontext:rolle"), roles, 3);
    /* the kennungen that are set */
    const char *kennungen[] = {"123456", "K-77"};
    assert_strings(json_object_get(o, "urn:schulconnex:de:personenkontext:organisation:kennung"), kennungen, 2);
    assert_null(json_object_get(o, "iss"));
    assert_null(json_object_get(o, "aud"));
    assert_null(json_object_get(o, "nonce"));
    json_decref(o);
}

static void school_scope_without_schools_gives_empty_arrays(void **state)
{
    person p;
    person_init(&p);
    p.uc.n_schools = 0;
    p.uc.schools = NULL;
    json_t *o = gw_oidc_person_claims(&p.uc, "openid school");
    assert_int_equal(json_array_size(json_object_get(o, "schools")), 0);
    assert_true(json_is_array(json_object_get(o, "urn:schulconnex:de:personenkontext:rolle")));
    assert_int_equal(json_array_size(json_object_get(o, "urn:schulconnex:de:personenkontext:organisation:kennung")), 0);
    json_decref(o);
}

static void access_schools_carry_ids_and_roles(void **state)
{
    person p;
    person_init(&p);
    json_t *a = gw_oidc_access_schools(&p.uc);
    assert_int_equal(json_array_size(a), 3);
    json_t *s0 = json_array_get(a, 0);
    assert_int_equal(json_object_size(s0), 2); /* no names, no groups: the token stays small */
    assert_string_equal(str(s0, "school_id"), p.a.school_id);
    const char *ra[] = {"teacher", "head"};
    assert_strings(json_object_get(s0, "roles"), ra, 2);
    json_decref(a);
    a = gw_oidc_access_schools(NULL);
    assert_int_equal(json_array_size(a), 0);
    json_decref(a);
}

static void grant_init(Kreide__Identity__Grant *g, person *p)
{
    kreide__identity__grant__init(g);
    g->claims = &p->uc;
    g->scope = "openid profile school";
    g->nonce = "n-0S6_WzA2Mj";
    g->auth_time = 1750000000;
    g->session_id = "0190b3c4-0000-7000-8000-0000000000ff";
    g->access_jti = "0190b3c4-0000-7000-8000-0000000000ee";
    g->access_expires_at = 1750000700;
    g->id_token_alg = "ES256";
}

static void access_token_claims_follow_the_grant(void **state)
{
    person p;
    person_init(&p);
    Kreide__Identity__Grant g;
    grant_init(&g, &p);
    kr_jwt_claims c;
    gw_oidc_access_token_claims(&g, "https://sso.example.org", "kreide", "client-1", 1750000100, &c);
    assert_string_equal(c.iss, "https://sso.example.org");
    assert_string_equal(c.sub, p.uc.sub);
    assert_string_equal(c.aud, "kreide");
    assert_string_equal(c.client_id, "client-1");
    assert_string_equal(c.scope, "openid profile school");
    assert_string_equal(c.sid, g.session_id);
    assert_string_equal(c.jti, g.access_jti);
    assert_int_equal(c.iat, 1750000100);
    assert_int_equal(c.exp, 1750000700);
    assert_int_equal(json_array_size(json_object_get(c.extra, "schools")), 3);
    assert_null(json_object_get(c.extra, "kind")); /* a person, not a service */
    json_decref(c.extra);
}

static void id_token_claims_carry_the_session_and_the_person(void **state)
{
    person p;
    person_init(&p);
    Kreide__Identity__Grant g;
    grant_init(&g, &p);
    const char *access = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln";
    kr_jwt_claims c;
    gw_oidc_id_token_claims(&g, "https://sso.example.org", "client-1", access, 1750000100, &c);
    assert_string_equal(c.iss, "https://sso.example.org");
    assert_string_equal(c.sub, p.uc.sub);
    assert_string_equal(c.aud, "client-1");
    assert_string_equal(c.sid, g.session_id);
    assert_null(c.jti);
    assert_null(c.scope);
    assert_null(c.client_id);
    assert_int_equal(c.iat, 1750000100);
    assert_int_equal(c.exp, 1750000100 + GW_OIDC_ID_TOKEN_TTL);
    assert_null(json_object_get(c.extra, "sub")); /* a named member, never extra */
    assert_string_equal(str(c.extra, "azp"), "client-1");
    assert_int_equal(json_integer_value(json_object_get(c.extra, "auth_time")), 1750000000);
    assert_string_equal(str(c.extra, "nonce"), "n-0S6_WzA2Mj");
    assert_string_equal(str(c.extra, "preferred_username"), "anna.weber");
    assert_int_equal(json_array_size(json_object_get(c.extra, "schools")), 3);

    /* at_hash: base64url of the left 16 bytes of SHA-256 of the token */
    unsigned char md[32];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(access, strlen(access), md, &n, EVP_sha256(), NULL), 1);
    char want[32];
    want[kr_oauth_b64url_encode(md, 16, want)] = '\0';
    assert_int_equal(strlen(want), 22);
    assert_string_equal(str(c.extra, "at_hash"), want);

    /* kr_jwt accepts the claims as they are */
    kr_jwt_keyset *ks = kr_jwt_keyset_new();
    char *pem = NULL, *tok = NULL;
    assert_int_equal(kr_jwt_generate_es256_pem(&pem), KR_JWT_OK);
    assert_int_equal(kr_jwt_keyset_add_pem(ks, "k1", pem, strlen(pem), NULL, 0), KR_JWT_OK);
    assert_int_equal(kr_jwt_sign(ks, &c, &tok), KR_JWT_OK);
    kr_jwt_verify_opts o = {.issuer = "https://sso.example.org", .audience = "client-1", .now = 1750000200};
    kr_jwt_claims back;
    assert_int_equal(kr_jwt_verify(ks, tok, strlen(tok), &o, &back), KR_JWT_OK);
    assert_string_equal(back.sub, p.uc.sub);
    assert_string_equal(json_string_value(json_object_get(back.extra, "azp")), "client-1");
    kr_jwt_claims_clear(&back);
    free(tok);
    free(pem);
    kr_jwt_keyset_free(ks);
    json_decref(c.extra);

    /* a refresh: no nonce, no profile without the scope */
    g.nonce = "";
    g.scope = "openid";
    gw_oidc_id_token_claims(&g, "https://sso.example.org", "client-1", NULL, 1750000100, &c);
    assert_null(json_object_get(c.extra, "nonce"));
    assert_null(json_object_get(c.extra, "at_hash"));
    assert_null(json_object_get(c.extra, "name"));
    assert_null(json_object_get(c.extra, "schools"));
    assert_int_equal(json_integer_value(json_object_get(c.extra, "auth_time")), 1750000000);
    json_decref(c.extra);
}

static void error_text_keeps_to_the_allowed_characters(void **state)
{
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    assert_string_equal(gw_oidc_error_text(&pool, "the code was already used"), "the code was already used");
    assert_string_equal(gw_oidc_error_text(&pool, "say \"hi\" \\ bye"), "say 'hi' / bye");
    assert_string_equal(gw_oidc_error_text(&pool, "line\nbreak\ttab \xc3\xa4"), "line?break?tab ??");
    assert_string_equal(gw_oidc_error_text(&pool, NULL), "");
    char long_text[1000];
    memset(long_text, 'x', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    assert_int_equal(strlen(gw_oidc_error_text(&pool, long_text)), GW_OIDC_ERROR_TEXT_MAX);
    h2o_mem_clear_pool(&pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scope_has_matches_whole_tokens),
        cmocka_unit_test(openid_alone_gives_sub_only),
        cmocka_unit_test(profile_gives_names_and_leaves_out_empty_ones),
        cmocka_unit_test(school_scope_gives_schools_groups_and_schulconnex_claims),
        cmocka_unit_test(school_scope_without_schools_gives_empty_arrays),
        cmocka_unit_test(access_schools_carry_ids_and_roles),
        cmocka_unit_test(access_token_claims_follow_the_grant),
        cmocka_unit_test(id_token_claims_carry_the_session_and_the_person),
        cmocka_unit_test(error_text_keeps_to_the_allowed_characters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
