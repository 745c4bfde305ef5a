#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "kr_seal.h"

/* 32 bytes of base64 each. */
#define K1 "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
#define K2 "k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="

static Kreide__Envelope *roundtrip(const kr_keyring *sealer, Kreide__Envelope *env, int64_t now)
{
    nng_msg *m;
    assert_int_equal(kr_seal_pack(sealer, env, now, &m), 0);
    Kreide__Envelope *u = kreide__envelope__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
    nng_msg_free(m);
    assert_non_null(u);
    return u;
}

static void sealed_envelope_verifies_and_forgeries_do_not(void **state)
{
    char err[128];
    kr_keyring *kr;
    assert_int_equal(kr_keyring_parse(K1, &kr, err, sizeof(err)), 0);

    Kreide__Caller caller = KREIDE__CALLER__INIT;
    caller.kind = KREIDE__CALLER__KIND__USER;
    caller.user_id = "0190b3c4-7d2e-7a11-9f00-0123456789ab";
    Kreide__Envelope env = KREIDE__ENVELOPE__INIT;
    env.method = "kreide.identity.Identity/GetSchool";
    env.request_id = "r1";
    env.deadline_ms = 10000;
    env.caller = &caller;
    env.body.data = (uint8_t *)"\x0a\x01x";
    env.body.len = 3;

    Kreide__Envelope *u = roundtrip(kr, &env, 5000);
    assert_int_equal(kr_seal_verify(kr, u, 5000), KR_SEAL_OK);
    assert_null(env.seal); /* the caller's envelope is left as it was */

    /* Change the caller after sealing: the forged identity is rejected. */
    u->caller->user_id[0] = '1';
    assert_int_equal(kr_seal_verify(kr, u, 5000), KR_SEAL_BAD_MAC);
    u->caller->user_id[0] = '0';
    u->body.data[2] = 'y';
    assert_int_equal(kr_seal_verify(kr, u, 5000), KR_SEAL_BAD_MAC);
    u->body.data[2] = 'x';
    assert_int_equal(kr_seal_verify(kr, u, 5000), KR_SEAL_OK);

    /* Time bounds. */
    assert_int_equal(kr_seal_verify(kr, u, 10001), KR_SEAL_EXPIRED);
    u->deadline_ms = 0;
    u->seal->sealed_at_ms = 5000; /* unchanged, but now the MAC covers deadline 10000 */
    assert_int_equal(kr_seal_verify(kr, u, 5000), KR_SEAL_BAD_MAC);
    kreide__envelope__free_unpacked(u, NULL);

    env.deadline_ms = 0;
    u = roundtrip(kr, &env, 5000);
    assert_int_equal(kr_seal_verify(kr, u, 5000 + KR_SEAL_MAX_AGE_MS + 1), KR_SEAL_STALE);
    assert_int_equal(kr_seal_verify(kr, u, 5000 - KR_SEAL_MAX_SKEW_MS - 1), KR_SEAL_STALE);
    kreide__envelope__free_unpacked(u, NULL);

    /* An unsealed envelope, as anyone could send it. */
    Kreide__Envelope bare = KREIDE__ENVELOPE__INIT;
    bare.method = "kreide.identity.Identity/CreateSchool";
    bare.caller = &caller;
    assert_int_equal(kr_seal_verify(kr, &bare, 5000), KR_SEAL_MISSING);
    kr_keyring_free(kr);
}

static void rotation_and_other_keys(void **state)
{
    char err[128];
    kr_keyring *old, *both, *other;
    assert_int_equal(kr_keyring_parse(K1, &old, err, sizeof(err)), 0);
    assert_int_equal(kr_keyring_parse(K2 "," K1, &both, err, sizeof(err)), 0);
    assert_int_equal(kr_keyring_parse("k1:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=", &other, err, sizeof(err)), 0);
    assert_string_equal(kr_keyring_active_id(both), "k2");

    Kreide__Envelope env = KREIDE__ENVELOPE__INIT;
    env.method = "m";
    Kreide__Envelope *u = roundtrip(old, &env, 1000);
    assert_int_equal(kr_seal_verify(both, u, 1000), KR_SEAL_OK);       /* old key still verifies */
    assert_int_equal(kr_seal_verify(other, u, 1000), KR_SEAL_BAD_MAC); /* same id, other secret */
    kreide__envelope__free_unpacked(u, NULL);

    u = roundtrip(both, &env, 1000);
    assert_string_equal(u->seal->key_id, "k2");
    assert_int_equal(kr_seal_verify(old, u, 1000), KR_SEAL_UNKNOWN_KEY);
    kreide__envelope__free_unpacked(u, NULL);
    kr_keyring_free(old);
    kr_keyring_free(both);
    kr_keyring_free(other);
}

static void keyring_parse_errors_name_the_problem(void **state)
{
    char err[160];
    kr_keyring *kr = NULL;
    assert_int_equal(kr_keyring_parse("", &kr, err, sizeof(err)), -1);
    assert_int_equal(kr_keyring_parse("nokid", &kr, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "kid:base64key"));
    assert_int_equal(kr_keyring_parse("k1:c2hvcnQ=", &kr, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "need at least 32"));
    assert_int_equal(kr_keyring_parse("k1:***", &kr, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "base64"));
    assert_int_equal(kr_keyring_parse(K1 "," K1, &kr, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(kr_keyring_parse("b@d:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", &kr, err, sizeof(err)), -1);
    assert_null(kr);
}

static void keyring_mac_is_per_key_and_purpose(void **state)
{
    char err[128];
    kr_keyring *one, *both;
    assert_int_equal(kr_keyring_parse(K1, &one, err, sizeof(err)), 0);
    assert_int_equal(kr_keyring_parse(K2 "," K1, &both, err, sizeof(err)), 0);
    unsigned char a[KR_KEYRING_MAC_LEN], b[KR_KEYRING_MAC_LEN], c[KR_KEYRING_MAC_LEN];
    assert_int_equal(kr_keyring_mac(one, NULL, "oidc.authorize", "data", 4, a), 0);
    assert_int_equal(kr_keyring_mac(one, "k1", "oidc.authorize", "data", 4, b), 0);
    assert_memory_equal(a, b, sizeof(a)); /* NULL is the sealing key */
    /* a rotated keyring still recognises what the old key made */
    assert_int_equal(kr_keyring_mac(both, "k1", "oidc.authorize", "data", 4, c), 0);
    assert_memory_equal(a, c, sizeof(a));
    /* but makes new ones with its first key */
    assert_int_equal(kr_keyring_mac(both, NULL, "oidc.authorize", "data", 4, c), 0);
    assert_memory_not_equal(a, c, sizeof(a));
    /* another purpose or other data: another MAC */
    assert_int_equal(kr_keyring_mac(one, NULL, "oidc.logout", "data", 4, b), 0);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_int_equal(kr_keyring_mac(one, NULL, "oidc.authorize", "datA", 4, b), 0);
    assert_memory_not_equal(a, b, sizeof(a));
    /* not a plain HMAC with the key itself (K1's bytes) */
    unsigned int blen = sizeof(b);
    HMAC(EVP_sha256(), "0123456789abcdef0123456789abcdef", 32, (const unsigned char *)"data", 4, b, &blen);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_int_equal(kr_keyring_mac(one, NULL, "", "data", 4, c), 0);
    assert_memory_not_equal(c, b, sizeof(c));
    /* an unknown key id leaves the output alone */
    memset(b, 0x5a, sizeof(b));
    assert_int_equal(kr_keyring_mac(one, "k2", "oidc.authorize", "data", 4, b), -1);
    for (size_t i = 0; i < sizeof(b); i++)
        assert_int_equal(b[i], 0x5a);
    kr_keyring_free(one);
    kr_keyring_free(both);
}

/* The seal is the HMAC-SHA256 (RFC 2104) of the envelope packed with an
 * empty MAC, under the key's bytes; checked against OpenSSL's one-shot HMAC
 * so that reusing keyed contexts cannot drift from it, also when contexts
 * are taken from and put back to the key's pool many times over. */
static void seal_is_hmac_sha256_of_the_envelope(void **state)
{
    char err[128];
    kr_keyring *kr;
    assert_int_equal(kr_keyring_parse(K1, &kr, err, sizeof(err)), 0);
    for (int i = 0; i < 40; i++) {
        char rid[16];
        snprintf(rid, sizeof(rid), "r%d", i);
        Kreide__Envelope env = KREIDE__ENVELOPE__INIT;
        env.method = "kreide.test.Echo/Say";
        env.request_id = rid;
        env.deadline_ms = 90000 + i;
        uint8_t *buf;
        size_t n = kr_seal_pack_buf(kr, &env, 1000 + i, &buf);
        Kreide__Envelope *u = kreide__envelope__unpack(NULL, n, buf);
        free(buf);
        assert_non_null(u);
        assert_non_null(u->seal);
        assert_string_equal(u->seal->key_id, "k1");
        assert_int_equal(u->seal->sealed_at_ms, 1000 + i);
        assert_int_equal(u->seal->mac.len, 32);
        unsigned char got[32];
        memcpy(got, u->seal->mac.data, 32);
        u->seal->mac.len = 0;
        size_t m = kreide__envelope__get_packed_size(u);
        uint8_t *plain = malloc(m);
        assert_non_null(plain);
        kreide__envelope__pack(u, plain);
        unsigned char want[32];
        unsigned int wlen = 0;
        HMAC(EVP_sha256(), "0123456789abcdef0123456789abcdef", 32, plain, m, want, &wlen);
        assert_int_equal(wlen, 32);
        assert_memory_equal(got, want, 32);
        free(plain);
        u->seal->mac.len = 32;
        assert_int_equal(kr_seal_verify(kr, u, 1000 + i), KR_SEAL_OK);
        kreide__envelope__free_unpacked(u, NULL);
    }
    kr_keyring_free(kr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sealed_envelope_verifies_and_forgeries_do_not),
        cmocka_unit_test(seal_is_hmac_sha256_of_the_envelope),
        cmocka_unit_test(rotation_and_other_keys),
        cmocka_unit_test(keyring_parse_errors_name_the_problem),
        cmocka_unit_test(keyring_mac_is_per_key_and_purpose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
