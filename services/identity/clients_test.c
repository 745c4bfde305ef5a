/* The pure rules of OpenID Connect clients: ids, grant types, who may
 * register and read them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "identity.h"

#define CARRIER "0190b3c4-7d2e-7a11-9f00-0000000000c1"

static Kreide__Caller caller(Kreide__Caller__Kind kind, const char *user, const char *client, char **roles, size_t nroles)
{
    Kreide__Caller c = KREIDE__CALLER__INIT;
    c.kind = kind;
    c.user_id = (char *)user;
    c.client_id = (char *)client;
    c.roles = roles;
    c.n_roles = nroles;
    return c;
}

static void client_ids_are_22_base64url_characters(void **state)
{
    assert_true(ident_client_id_valid("AAAAAAAAAAAAAAAAAAAA-_"));
    assert_false(ident_client_id_valid("AAAAAAAAAAAAAAAAAAAA-"));
    assert_false(ident_client_id_valid("AAAAAAAAAAAAAAAAAAAA-_A"));
    assert_false(ident_client_id_valid("AAAAAAAAAAAAAAAAAAAA+/"));
    assert_false(ident_client_id_valid("gateway"));
    assert_false(ident_client_id_valid(""));
    assert_false(ident_client_id_valid(NULL));
}

static void grant_types_are_known_and_listed_once(void **state)
{
    char *ok[] = {"authorization_code", "refresh_token", "client_credentials"};
    assert_true(ident_grant_types_valid(ok, 3));
    assert_true(ident_grant_types_valid(ok, 0));
    char *twice[] = {"client_credentials", "client_credentials"};
    assert_false(ident_grant_types_valid(twice, 2));
    char *unknown[] = {"authorization_code", "implicit"};
    assert_false(ident_grant_types_valid(unknown, 2));
    char *password[] = {"password"};
    assert_false(ident_grant_types_valid(password, 1));
}

static void only_operators_and_the_carriers_admins_register(void **state)
{
    char *op[] = {"operator"}, *ca[] = {"carrier_admin:" CARRIER},
         *other[] = {"carrier_admin:0190b3c4-7d2e-7a11-9f00-0000000000c2"};
    ident_school_ref school = {.id = "0190b3c4-7d2e-7a11-9f00-0000000000a1", .carrier_id = CARRIER};
    Kreide__Caller o = caller(KREIDE__CALLER__KIND__USER, "0190b3c4-7d2e-7a11-9f00-000000000001", "", op, 1);
    Kreide__Caller a = caller(KREIDE__CALLER__KIND__USER, "0190b3c4-7d2e-7a11-9f00-000000000002", "", ca, 1);
    Kreide__Caller x = caller(KREIDE__CALLER__KIND__USER, "0190b3c4-7d2e-7a11-9f00-000000000003", "", other, 1);
    Kreide__Caller anon = caller(KREIDE__CALLER__KIND__ANONYMOUS, "", "", op, 1);
    assert_true(ident_may_create_client(&o, NULL));
    assert_true(ident_may_create_client(&o, &school));
    assert_false(ident_may_create_client(&a, NULL));
    assert_true(ident_may_create_client(&a, &school));
    assert_false(ident_may_create_client(&x, &school));
    assert_false(ident_may_create_client(&anon, &school));
}

static void a_client_reads_itself_and_the_gateway_reads_all(void **state)
{
    const char *id = "AAAAAAAAAAAAAAAAAAAA-_";
    Kreide__Caller self = caller(KREIDE__CALLER__KIND__SERVICE, id, id, NULL, 0);
    Kreide__Caller other = caller(KREIDE__CALLER__KIND__SERVICE, "BBBBBBBBBBBBBBBBBBBBBB", "BBBBBBBBBBBBBBBBBBBBBB", NULL, 0);
    Kreide__Caller gw = caller(KREIDE__CALLER__KIND__SERVICE, "", IDENT_GATEWAY_CLIENT_ID, NULL, 0);
    Kreide__Caller user_gw = caller(KREIDE__CALLER__KIND__USER, "", IDENT_GATEWAY_CLIENT_ID, NULL, 0);
    Kreide__Caller gw_with_sub = caller(KREIDE__CALLER__KIND__SERVICE, "x", IDENT_GATEWAY_CLIENT_ID, NULL, 0);
    assert_true(ident_may_read_client(&self, NULL, id));
    assert_false(ident_may_read_client(&other, NULL, id));
    assert_true(ident_may_read_client(&gw, NULL, id));
    assert_true(ident_is_gateway(&gw));
    assert_false(ident_is_gateway(&user_gw));
    assert_false(ident_is_gateway(&gw_with_sub));
    assert_false(ident_is_gateway(&self));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(client_ids_are_22_base64url_characters),
        cmocka_unit_test(grant_types_are_known_and_listed_once),
        cmocka_unit_test(only_operators_and_the_carriers_admins_register),
        cmocka_unit_test(a_client_reads_itself_and_the_gateway_reads_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
