#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/hmac.h>
#include <openssl/rsa.h>

/* Included for its statics: the tests forge tokens with key_sign and
 * b64u_encode, and check the base64url and SipHash helpers directly. */
#include "kr_jwt.c"

#define T0 1750000000 /* a fixed "now" for every time check */

static char *ec_old_pem, *ec_new_pem, *rsa_pem, *ec_pub_pem, *rsa_pub_pem;

static char *public_pem(const char *priv)
{
    BIO *in = BIO_new_mem_buf(priv, -1);
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
    BIO *out = BIO_new(BIO_s_mem());
    assert_non_null(pk);
    assert_int_equal(PEM_write_bio_PUBKEY(out, pk), 1);
    char *data;
    long n = BIO_get_mem_data(out, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(in);
    BIO_free(out);
    EVP_PKEY_free(pk);
    return s;
}

static char *pem_of(EVP_PKEY *pk)
{
    BIO *out = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(out, pk, NULL, NULL, 0, NULL, NULL), 1);
    char *data;
    long n = BIO_get_mem_data(out, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(out);
    return s;
}

static int make_keys(void **state)
{
    if (kr_jwt_generate_es256_pem(&ec_old_pem) || kr_jwt_generate_es256_pem(&ec_new_pem))
        return -1;
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    if (!rsa)
        return -1;
    rsa_pem = pem_of(rsa);
    EVP_PKEY_free(rsa);
    ec_pub_pem = public_pem(ec_old_pem);
    rsa_pub_pem = public_pem(rsa_pem);
    return 0;
}

static int free_keys(void **state)
{
    free(ec_old_pem);
    free(ec_new_pem);
    free(rsa_pem);
    free(ec_pub_pem);
    free(rsa_pub_pem);
    return 0;
}

static kr_jwt_keyset *keyset_with(const char *kid, const char *pem)
{
    kr_jwt_keyset *ks = kr_jwt_keyset_new();
    char err[200];
    int rc = kr_jwt_keyset_add_pem(ks, kid, pem, strlen(pem), err, sizeof(err));
    if (rc)
        fail_msg("add %s: %s", kid, err);
    return ks;
}

static kr_jwt_claims sample_claims(void)
{
    kr_jwt_claims c = {
        .iss = "https://kreide.example",
        .sub = "0190b3c4-7d2e-7a11-9f00-0123456789ab",
        .aud = "portal",
        .jti = "jti-1",
        .scope = "openid profile",
        .sid = "sid-1",
        .client_id = "portal-client",
        .exp = T0 + 300,
        .iat = T0,
    };
    return c;
}

static const kr_jwt_verify_opts at_t0 = {.issuer = "https://kreide.example", .audience = "portal", .now = T0};

/* Not inlined: GCC 12 mistakes the inlined kr_jwt_sign's out-parameter for a
 * dangling pointer (-Wdangling-pointer). */
static __attribute__((noinline)) char *sign_or_fail(const kr_jwt_keyset *ks, const kr_jwt_claims *c)
{
    char *tok = NULL;
    int rc = kr_jwt_sign(ks, c, &tok);
    if (rc)
        fail_msg("sign: %s", kr_jwt_strerror(rc));
    return tok;
}

static int verify_str(const kr_jwt_keyset *ks, const char *tok, const kr_jwt_verify_opts *o)
{
    kr_jwt_claims out;
    int rc = kr_jwt_verify(ks, tok, strlen(tok), o, &out);
    kr_jwt_claims_clear(&out);
    return rc;
}

/* A token with the given header and payload JSON, signed with `kid`'s key
 * (or with `sig` as the signature part when `kid` is NULL). */
static char *forge(const kr_jwt_keyset *ks, const char *kid, const char *hdr, const char *payload, const char *sig)
{
    size_t hl = strlen(hdr), pl = strlen(payload);
    char *tok = calloc(1, b64u_len(hl) + b64u_len(pl) + b64u_len(SIG_MAX) + 8);
    size_t n = b64u_encode(tok, (const unsigned char *)hdr, hl);
    tok[n++] = '.';
    n += b64u_encode(tok + n, (const unsigned char *)payload, pl);
    if (kid) {
        unsigned char raw[SIG_MAX];
        size_t rl;
        assert_true(key_sign(find_key(ks, kid), (const unsigned char *)tok, n, raw, &rl));
        tok[n++] = '.';
        b64u_encode(tok + n, raw, rl);
    } else {
        tok[n++] = '.';
        assert_non_null(sig);
        strcpy(tok + n, sig ? sig : "");
    }
    return tok;
}

static json_t *decode_header(const char *tok)
{
    const char *dot = strchr(tok, '.');
    return decode_part(tok, (size_t)(dot - tok));
}

/* ------------------------------------------------------------ round trips */

static void round_trip(const char *kid, const char *pem, const char *alg)
{
    kr_jwt_keyset *ks = keyset_with(kid, pem);
    kr_jwt_claims c = sample_claims();
    c.extra = json_pack("{s:s, s:[s,s]}", "school", "s-1", "roles", "teacher", "admin");
    char *tok = sign_or_fail(ks, &c);
    json_decref(c.extra);

    json_t *h = decode_header(tok);
    assert_non_null(h);
    assert_string_equal(json_string_value(json_object_get(h, "alg")), alg);
    assert_string_equal(json_string_value(json_object_get(h, "kid")), kid);
    assert_string_equal(json_string_value(json_object_get(h, "typ")), "JWT");
    json_decref(h);

    kr_jwt_claims out;
    assert_int_equal(kr_jwt_verify(ks, tok, strlen(tok), &at_t0, &out), KR_JWT_OK);
    assert_string_equal(out.iss, c.iss);
    assert_string_equal(out.sub, c.sub);
    assert_string_equal(out.aud, c.aud);
    assert_string_equal(out.jti, c.jti);
    assert_string_equal(out.scope, c.scope);
    assert_string_equal(out.sid, c.sid);
    assert_string_equal(out.client_id, c.client_id);
    assert_int_equal(out.exp, T0 + 300);
    assert_int_equal(out.iat, T0);
    assert_int_equal(out.nbf, 0);
    assert_non_null(out.extra);
    assert_int_equal(json_object_size(out.extra), 2);
    assert_string_equal(json_string_value(json_object_get(out.extra, "school")), "s-1");
    assert_string_equal(json_string_value(json_array_get(json_object_get(out.extra, "roles"), 1)), "admin");
    kr_jwt_claims_clear(&out);
    assert_null(out.sub);

    /* The token need not be NUL-terminated: verify a copy without the NUL. */
    size_t n = strlen(tok);
    char *copy = malloc(n);
    memcpy(copy, tok, n);
    assert_int_equal(kr_jwt_verify(ks, copy, n, &at_t0, &out), KR_JWT_OK);
    kr_jwt_claims_clear(&out);
    free(copy);
    free(tok);
    kr_jwt_keyset_free(ks);
}

static void es256_round_trip(void **state)
{
    round_trip("ec1", ec_old_pem, "ES256");
}

static void rs256_round_trip(void **state)
{
    round_trip("rsa1", rsa_pem, "RS256");
}

static void es256_signature_is_raw_r_s(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    kr_jwt_claims c = sample_claims();
    char *tok = sign_or_fail(ks, &c);
    const char *sig = strrchr(tok, '.') + 1;
    assert_int_equal(strlen(sig), b64u_len(64));
    free(tok);
    kr_jwt_keyset_free(ks);
}

static void public_key_verifies_but_cannot_sign(void **state)
{
    kr_jwt_keyset *priv = keyset_with("ec1", ec_old_pem), *pub = keyset_with("ec1", ec_pub_pem);
    kr_jwt_claims c = sample_claims();
    char *tok = sign_or_fail(priv, &c), *t2 = NULL;
    assert_int_equal(verify_str(pub, tok, &at_t0), KR_JWT_OK);
    assert_int_equal(kr_jwt_sign(pub, &c, &t2), KR_JWT_ENOKEY);
    assert_null(t2);
    assert_null(kr_jwt_keyset_active_kid(pub));
    free(tok);
    kr_jwt_keyset_free(priv);
    kr_jwt_keyset_free(pub);
}

/* ----------------------------------------------------------- tampering */

static void tampered_payload_rejected(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    kr_jwt_claims c = sample_claims();
    char *tok = sign_or_fail(ks, &c);
    c.sub = "someone-else";
    char *other = sign_or_fail(ks, &c);
    /* header and signature of one token around the payload of another */
    char *dot1 = strchr(tok, '.'), *dot2 = strrchr(tok, '.');
    char *odot1 = strchr(other, '.'), *odot2 = strrchr(other, '.');
    char spliced[KR_JWT_MAX_TOKEN];
    snprintf(spliced, sizeof(spliced), "%.*s%.*s%s", (int)(dot1 - tok), tok, (int)(odot2 - odot1), odot1, dot2);
    assert_int_equal(verify_str(ks, spliced, &at_t0), KR_JWT_ESIGNATURE);
    free(tok);
    free(other);
    kr_jwt_keyset_free(ks);
}

static void tampered_signature_rejected(void **state)
{
    const char *pems[] = {ec_old_pem, rsa_pem};
    for (int i = 0; i < 2; i++) {
        kr_jwt_keyset *ks = keyset_with("k", pems[i]);
        kr_jwt_claims c = sample_claims();
        char *tok = sign_or_fail(ks, &c);
        char *sig = strrchr(tok, '.') + 1;
        sig[5] = sig[5] == 'A' ? 'B' : 'A';
        assert_int_equal(verify_str(ks, tok, &at_t0), KR_JWT_ESIGNATURE);
        sig[-1] = '\0'; /* no signature at all */
        strcat(tok, ".");
        assert_int_equal(verify_str(ks, tok, &at_t0), KR_JWT_ESIGNATURE);
        free(tok);
        kr_jwt_keyset_free(ks);
    }
}

static void alg_none_rejected(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    const char *payload = "{\"sub\":\"x\",\"exp\":1750000300}";
    const char *algs[] = {"none", "None", "NONE", ""};
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        char hdr[100];
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"kid\":\"ec1\",\"typ\":\"JWT\"}", algs[i]);
        char *tok = forge(ks, NULL, hdr, payload, "");
        assert_int_equal(verify_str(ks, tok, &at_t0), KR_JWT_EALG);
        free(tok);
    }
    /* libjwt's own unsigned encoding, as an attacker would produce it */
    jwt_t *j;
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_header(j, "kid", "ec1"), 0);
    assert_int_equal(jwt_add_grant(j, "sub", "x"), 0);
    assert_int_equal(jwt_add_grant_int(j, "exp", T0 + 300), 0);
    char *tok = jwt_encode_str(j);
    assert_non_null(tok);
    assert_int_equal(verify_str(ks, tok, NULL), KR_JWT_EALG);
    free(tok);
    jwt_free(j);
    kr_jwt_keyset_free(ks);
}

/* The classic confusion: a verifier that trusts the header's alg would check
 * HS256 with the public key's PEM text as the HMAC secret. */
static void hs256_with_public_key_as_secret_rejected(void **state)
{
    const char *kids[] = {"rsa1", "ec1"};
    const char *pubs[] = {rsa_pub_pem, ec_pub_pem};
    for (int i = 0; i < 2; i++) {
        kr_jwt_keyset *ks = keyset_with(kids[i], pubs[i]);
        char hdr[100];
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"kid\":\"%s\",\"typ\":\"JWT\"}", kids[i]);
        char *unsigned_tok = forge(ks, NULL, hdr, "{\"sub\":\"admin\",\"exp\":1750000300}", "");
        size_t n = strlen(unsigned_tok) - 1; /* without the trailing '.' */
        unsigned char mac[32];
        unsigned int maclen = 0;
        assert_non_null(HMAC(EVP_sha256(), pubs[i], (int)strlen(pubs[i]), (const unsigned char *)unsigned_tok, n, mac, &maclen));
        char *tok = malloc(n + 1 + b64u_len(maclen) + 1);
        memcpy(tok, unsigned_tok, n + 1);
        b64u_encode(tok + n + 1, mac, maclen);
        assert_int_equal(verify_str(ks, tok, NULL), KR_JWT_EALG);
        free(tok);
        free(unsigned_tok);
        kr_jwt_keyset_free(ks);
    }
}

static void alg_of_another_key_type_rejected(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    char *tok = forge(ks, "ec1", "{\"alg\":\"RS256\",\"kid\":\"ec1\"}", "{\"exp\":1750000300}", NULL);
    assert_int_equal(verify_str(ks, tok, &at_t0), KR_JWT_EALG);
    free(tok);
    kr_jwt_keyset_free(ks);
}

static void unknown_or_missing_kid_rejected(void **state)
{
    kr_jwt_keyset *a = keyset_with("a", ec_old_pem), *b = keyset_with("b", ec_old_pem);
    kr_jwt_claims c = sample_claims();
    char *tok = sign_or_fail(a, &c);
    assert_int_equal(verify_str(b, tok, &at_t0), KR_JWT_EKID);
    free(tok);
    tok = forge(a, "a", "{\"alg\":\"ES256\"}", "{\"exp\":1750000300}", NULL);
    assert_int_equal(verify_str(a, tok, &at_t0), KR_JWT_EKID);
    free(tok);
    kr_jwt_keyset_free(a);
    kr_jwt_keyset_free(b);
}

/* ------------------------------------------------------------ claims */

static void expiry_and_not_before(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    kr_jwt_claims c = sample_claims();
    c.nbf = T0 + 10;
    char *tok = sign_or_fail(ks, &c);
    kr_jwt_verify_opts o = {.now = T0 + 10};
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_OK);
    o.now = T0 + 9;
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_ENOTYET);
    o.leeway = 5;
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_OK);
    o = (kr_jwt_verify_opts){.now = T0 + 299};
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_OK);
    o.now = T0 + 300;
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_EEXPIRED);
    o.leeway = 30;
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_OK);
    o.now = T0 + 330;
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_EEXPIRED);
    /* without opts, the real clock: T0 + 300 lies in the past */
    assert_int_equal(verify_str(ks, tok, NULL), KR_JWT_EEXPIRED);
    free(tok);
    kr_jwt_keyset_free(ks);
}

/* A hint (id_token_hint at logout) may be long expired; everything else
 * about it is still checked. */
static void allow_expired_skips_only_the_expiry(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    kr_jwt_claims c = sample_claims();
    char *tok = sign_or_fail(ks, &c);
    kr_jwt_verify_opts o = {.now = T0 + 86400 * 30, .allow_expired = 1};
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_OK);
    o.allow_expired = 0;
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_EEXPIRED);
    /* issuer, audience and signature still count */
    o = (kr_jwt_verify_opts){.now = T0 + 86400, .allow_expired = 1, .issuer = "https://other.example.org"};
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_EISSUER);
    o = (kr_jwt_verify_opts){.now = T0 + 86400, .allow_expired = 1, .audience = "someone-else"};
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_EAUDIENCE);
    kr_jwt_keyset *other = keyset_with("ec1", ec_new_pem);
    o = (kr_jwt_verify_opts){.now = T0 + 86400, .allow_expired = 1};
    assert_int_equal(verify_str(other, tok, &o), KR_JWT_ESIGNATURE);
    /* not before is not waived */
    c.nbf = T0 + 10;
    char *later = sign_or_fail(ks, &c);
    o = (kr_jwt_verify_opts){.now = T0 + 5, .allow_expired = 1};
    assert_int_equal(verify_str(ks, later, &o), KR_JWT_ENOTYET);
    /* and a token without exp stays malformed */
    char *noexp = forge(ks, "ec1", "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", "{\"sub\":\"u\"}", NULL);
    assert_int_equal(verify_str(ks, noexp, &o), KR_JWT_ECLAIMS);
    free(tok);
    free(later);
    free(noexp);
    kr_jwt_keyset_free(other);
    kr_jwt_keyset_free(ks);
}

static void wrong_issuer_or_audience_rejected(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    kr_jwt_claims c = sample_claims();
    char *tok = sign_or_fail(ks, &c);
    kr_jwt_verify_opts o = at_t0;
    o.issuer = "https://evil.example";
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_EISSUER);
    o = at_t0;
    o.audience = "other-app";
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_EAUDIENCE);
    free(tok);

    c.iss = NULL;
    c.aud = NULL;
    tok = sign_or_fail(ks, &c);
    assert_int_equal(verify_str(ks, tok, &at_t0), KR_JWT_EISSUER);
    o = at_t0;
    o.issuer = NULL;
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_EAUDIENCE);
    free(tok);
    kr_jwt_keyset_free(ks);
}

static void audience_array_accepted(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    char *tok = forge(ks, "ec1", "{\"alg\":\"ES256\",\"kid\":\"ec1\"}",
                      "{\"iss\":\"https://kreide.example\",\"aud\":[\"api\",\"portal\"],\"exp\":1750000300}", NULL);
    kr_jwt_claims out;
    assert_int_equal(kr_jwt_verify(ks, tok, strlen(tok), &at_t0, &out), KR_JWT_OK);
    assert_string_equal(out.aud, "portal");
    assert_null(out.extra);
    kr_jwt_claims_clear(&out);
    assert_int_equal(kr_jwt_verify(ks, tok, strlen(tok), &(kr_jwt_verify_opts){.now = T0}, &out), KR_JWT_OK);
    assert_string_equal(out.aud, "api");
    kr_jwt_claims_clear(&out);
    kr_jwt_verify_opts o = at_t0;
    o.audience = "port";
    assert_int_equal(verify_str(ks, tok, &o), KR_JWT_EAUDIENCE);
    free(tok);
    kr_jwt_keyset_free(ks);
}

/* Correctly signed tokens whose contents are still unacceptable. */
static void signed_but_malformed_contents_rejected(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    const char *hdr = "{\"alg\":\"ES256\",\"kid\":\"ec1\"}";
    struct {
        const char *hdr, *payload;
        int want;
    } cases[] = {
        {hdr, "{\"exp\":\"1750000300\"}", KR_JWT_ECLAIMS},
        {hdr, "{\"exp\":1750000300.5}", KR_JWT_ECLAIMS},
        {hdr, "{\"sub\":\"x\"}", KR_JWT_ECLAIMS},
        {hdr, "{\"exp\":1750000300,\"sub\":7}", KR_JWT_ECLAIMS},
        {hdr, "{\"exp\":1750000300,\"sub\":\"adm\\u0000in\"}", KR_JWT_EMALFORMED}, /* C would see "adm" */
        {hdr, "{\"exp\":1750000300,\"aud\":[]}", KR_JWT_ECLAIMS},
        {hdr, "{\"exp\":1750000300,\"aud\":[\"portal\",3]}", KR_JWT_ECLAIMS},
        {hdr, "{\"exp\":1750000300,\"iat\":-1}", KR_JWT_ECLAIMS},
        {hdr, "[\"exp\",1750000300]", KR_JWT_EMALFORMED},
        {hdr, "{\"exp\":1750000300", KR_JWT_EMALFORMED},
        {hdr, "{\"sub\":\"a\",\"sub\":\"b\",\"exp\":1750000300}", KR_JWT_EMALFORMED},
        {"{\"alg\":\"ES256\",\"kid\":\"ec1\",\"alg\":\"none\"}", "{\"exp\":1750000300}", KR_JWT_EMALFORMED},
        {"{\"alg\":\"ES256\",\"kid\":\"ec1\",\"crit\":[\"b64\"],\"b64\":false}", "{\"exp\":1750000300}", KR_JWT_EMALFORMED},
        {"{\"kid\":\"ec1\"}", "{\"exp\":1750000300}", KR_JWT_EMALFORMED},
        {"{\"alg\":\"ES256\",\"kid\":\"ec1\"}", "{\"exp\":1750000300}", KR_JWT_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *tok = forge(ks, "ec1", cases[i].hdr, cases[i].payload, NULL);
        int rc = verify_str(ks, tok, &(kr_jwt_verify_opts){.now = T0});
        if (rc != cases[i].want)
            fail_msg("case %zu (%s): got %s, want %s", i, cases[i].payload, kr_jwt_strerror(rc), kr_jwt_strerror(cases[i].want));
        free(tok);
    }
    kr_jwt_keyset_free(ks);
}

static void malformed_framing_rejected(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    kr_jwt_claims c = sample_claims();
    char *tok = sign_or_fail(ks, &c);
    char buf[KR_JWT_MAX_TOKEN + 8];
    const char *bad[] = {"", ".", "..", "...", "abc", "a.b", "a.b.c.d", "e30.e30.e30", "!!!.e30."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(verify_str(ks, bad[i], &at_t0), KR_JWT_EMALFORMED);
    snprintf(buf, sizeof(buf), "%s.", tok); /* a fourth part */
    assert_int_equal(verify_str(ks, buf, &at_t0), KR_JWT_EMALFORMED);
    snprintf(buf, sizeof(buf), " %s", tok);
    assert_int_equal(verify_str(ks, buf, &at_t0), KR_JWT_EMALFORMED);
    snprintf(buf, sizeof(buf), "%s=", tok); /* padding */
    assert_int_equal(verify_str(ks, buf, &at_t0), KR_JWT_EMALFORMED);
    free(tok);
    kr_jwt_keyset_free(ks);
}

static void huge_token_rejected_as_malformed(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    kr_jwt_cache *cache = kr_jwt_cache_new(4);
    size_t n = 100 * 1024;
    char *huge = malloc(n);
    memset(huge, 'A', n);
    huge[100] = '.';
    huge[n - 100] = '.';
    kr_jwt_claims out;
    assert_int_equal(kr_jwt_verify(ks, huge, n, NULL, &out), KR_JWT_EMALFORMED);
    assert_int_equal(kr_jwt_cache_verify(cache, ks, huge, n, NULL, &out), KR_JWT_EMALFORMED);
    assert_null(out.sub);
    free(huge);
    kr_jwt_cache_free(cache);
    kr_jwt_keyset_free(ks);
}

static void sign_refuses_unsignable_claims(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    kr_jwt_claims c = sample_claims();
    char *tok = (char *)1;
    c.exp = 0;
    assert_int_equal(kr_jwt_sign(ks, &c, &tok), KR_JWT_EINVAL);
    assert_null(tok);
    c = sample_claims();
    c.extra = json_pack("{s:s}", "sub", "shadow");
    assert_int_equal(kr_jwt_sign(ks, &c, &tok), KR_JWT_EINVAL);
    json_decref(c.extra);
    c.extra = json_array();
    assert_int_equal(kr_jwt_sign(ks, &c, &tok), KR_JWT_EINVAL);
    json_decref(c.extra);
    c = sample_claims();
    c.sub = "\xff\xfe not utf-8";
    assert_int_equal(kr_jwt_sign(ks, &c, &tok), KR_JWT_EINVAL);
    c = sample_claims();
    c.iat = 0;
    tok = sign_or_fail(ks, &c);
    kr_jwt_claims out;
    assert_int_equal(kr_jwt_verify(ks, tok, strlen(tok), &at_t0, &out), KR_JWT_OK);
    assert_true(out.iat >= T0 + 1000); /* filled with the real clock, well after T0 */
    kr_jwt_claims_clear(&out);
    free(tok);
    kr_jwt_keyset_free(ks);
}

/* -------------------------------------------------------------- keys */

static void rotation_keeps_old_tokens_valid(void **state)
{
    kr_jwt_keyset *before = keyset_with("2024-09", ec_old_pem);
    kr_jwt_claims c = sample_claims();
    char *old_tok = sign_or_fail(before, &c);

    kr_jwt_keyset *after = keyset_with("2024-09", ec_old_pem);
    char err[200];
    assert_int_equal(kr_jwt_keyset_add_pem(after, "2025-03", ec_new_pem, strlen(ec_new_pem), err, sizeof(err)), KR_JWT_OK);
    assert_int_equal(kr_jwt_keyset_add_pem(after, "rsa-legacy", rsa_pub_pem, strlen(rsa_pub_pem), err, sizeof(err)), KR_JWT_OK);
    assert_int_equal(kr_jwt_keyset_count(after), 3);
    /* the public-only "rsa-legacy" sorts last but cannot sign */
    assert_string_equal(kr_jwt_keyset_active_kid(after), "2025-03");
    assert_int_equal(verify_str(after, old_tok, &at_t0), KR_JWT_OK);

    char *new_tok = sign_or_fail(after, &c);
    json_t *h = decode_header(new_tok);
    assert_string_equal(json_string_value(json_object_get(h, "kid")), "2025-03");
    json_decref(h);
    assert_int_equal(verify_str(after, new_tok, &at_t0), KR_JWT_OK);
    assert_int_equal(verify_str(before, new_tok, &at_t0), KR_JWT_EKID);

    assert_int_equal(kr_jwt_keyset_set_active(after, "2024-09"), KR_JWT_OK);
    assert_string_equal(kr_jwt_keyset_active_kid(after), "2024-09");
    assert_int_equal(kr_jwt_keyset_set_active(after, "rsa-legacy"), KR_JWT_ENOKEY);
    assert_int_equal(kr_jwt_keyset_set_active(after, "nope"), KR_JWT_EKID);
    assert_string_equal(kr_jwt_keyset_active_kid(after), "2024-09");

    /* once the old key is retired, its tokens stop verifying */
    kr_jwt_keyset *retired = keyset_with("2025-03", ec_new_pem);
    assert_int_equal(verify_str(retired, old_tok, &at_t0), KR_JWT_EKID);
    assert_int_equal(verify_str(retired, new_tok, &at_t0), KR_JWT_OK);

    free(old_tok);
    free(new_tok);
    kr_jwt_keyset_free(before);
    kr_jwt_keyset_free(after);
    kr_jwt_keyset_free(retired);
}

static void sign_alg_picks_a_key_of_that_algorithm(void **state)
{
    kr_jwt_keyset *ks = keyset_with("2025-03", ec_new_pem);
    char err[200];
    assert_int_equal(kr_jwt_keyset_add_pem(ks, "rsa-a", rsa_pem, strlen(rsa_pem), err, sizeof(err)), KR_JWT_OK);
    assert_int_equal(kr_jwt_keyset_add_pem(ks, "rsa-b", rsa_pub_pem, strlen(rsa_pub_pem), err, sizeof(err)), KR_JWT_OK);
    assert_int_equal(kr_jwt_keyset_set_active(ks, "2025-03"), KR_JWT_OK);
    kr_jwt_claims c = sample_claims();
    const char *want_kid[] = {"2025-03", "rsa-a"}, *algs[] = {"ES256", "RS256"};
    for (int i = 0; i < 2; i++) {
        char *tok = NULL;
        assert_int_equal(kr_jwt_sign_alg(ks, algs[i], &c, &tok), KR_JWT_OK);
        json_t *h = decode_header(tok);
        assert_string_equal(json_string_value(json_object_get(h, "alg")), algs[i]);
        assert_string_equal(json_string_value(json_object_get(h, "kid")), want_kid[i]);
        json_decref(h);
        assert_int_equal(verify_str(ks, tok, &at_t0), KR_JWT_OK);
        free(tok);
    }
    char *tok = NULL;
    assert_int_equal(kr_jwt_sign_alg(ks, "HS256", &c, &tok), KR_JWT_EALG);
    assert_null(tok);
    kr_jwt_keyset *ec_only = keyset_with("ec", ec_old_pem);
    assert_int_equal(kr_jwt_sign_alg(ec_only, "RS256", &c, &tok), KR_JWT_ENOKEY);
    assert_null(tok);
    kr_jwt_keyset_free(ec_only);
    kr_jwt_keyset_free(ks);
}

/* Regression: an RSA key kept for RS256 clients, whose kid sorts after the
 * EC keys' ("rsa-..." > "2025-..."), became the default signer of every
 * access token. */
static void rsa_key_never_becomes_the_default_signer(void **state)
{
    kr_jwt_keyset *ks = keyset_with("2025-03", ec_new_pem);
    char err[200];
    assert_int_equal(kr_jwt_keyset_add_pem(ks, "2024-09", ec_old_pem, strlen(ec_old_pem), err, sizeof(err)), KR_JWT_OK);
    assert_int_equal(kr_jwt_keyset_add_pem(ks, "rsa-2026", rsa_pem, strlen(rsa_pem), err, sizeof(err)), KR_JWT_OK);
    assert_string_equal(kr_jwt_keyset_active_kid(ks), "2025-03");
    kr_jwt_claims c = sample_claims();
    char *tok = sign_or_fail(ks, &c);
    json_t *h = decode_header(tok);
    assert_string_equal(json_string_value(json_object_get(h, "alg")), "ES256");
    assert_string_equal(json_string_value(json_object_get(h, "kid")), "2025-03");
    json_decref(h);
    free(tok);
    /* RS256 when asked for, from the RSA key */
    assert_int_equal(kr_jwt_sign_alg(ks, "RS256", &c, &tok), KR_JWT_OK);
    h = decode_header(tok);
    assert_string_equal(json_string_value(json_object_get(h, "kid")), "rsa-2026");
    json_decref(h);
    free(tok);
    /* an explicit choice still wins */
    assert_int_equal(kr_jwt_keyset_set_active(ks, "rsa-2026"), KR_JWT_OK);
    assert_string_equal(kr_jwt_keyset_active_kid(ks), "rsa-2026");
    kr_jwt_keyset_free(ks);

    /* a set of RSA keys alone still signs */
    kr_jwt_keyset *rsa_only = keyset_with("r1", rsa_pem);
    assert_int_equal(kr_jwt_keyset_add_pem(rsa_only, "z-ec-public", ec_pub_pem, strlen(ec_pub_pem), err, sizeof(err)), KR_JWT_OK);
    assert_string_equal(kr_jwt_keyset_active_kid(rsa_only), "r1");
    kr_jwt_keyset_free(rsa_only);
}

static void can_sign_names_private_keys_by_algorithm(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec", ec_old_pem);
    assert_true(kr_jwt_keyset_can_sign(ks, "ES256"));
    assert_false(kr_jwt_keyset_can_sign(ks, "RS256"));
    char err[200];
    assert_int_equal(kr_jwt_keyset_add_pem(ks, "rsa-pub", rsa_pub_pem, strlen(rsa_pub_pem), err, sizeof(err)), KR_JWT_OK);
    assert_false(kr_jwt_keyset_can_sign(ks, "RS256")); /* a public key verifies only */
    assert_int_equal(kr_jwt_keyset_add_pem(ks, "rsa", rsa_pem, strlen(rsa_pem), err, sizeof(err)), KR_JWT_OK);
    assert_true(kr_jwt_keyset_can_sign(ks, "RS256"));
    assert_false(kr_jwt_keyset_can_sign(ks, "HS256"));
    assert_false(kr_jwt_keyset_can_sign(ks, NULL));
    assert_false(kr_jwt_keyset_can_sign(NULL, "ES256"));
    kr_jwt_keyset_free(ks);
}

static void generated_rsa_key_signs_rs256(void **state)
{
    char *pem = NULL;
    assert_int_equal(kr_jwt_generate_rs256_pem(&pem), KR_JWT_OK);
    assert_non_null(pem);
    if (pem == NULL)
        return;
    assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
    kr_jwt_keyset *ks = keyset_with("gen", pem);
    assert_true(kr_jwt_keyset_can_sign(ks, "RS256"));
    json_t *jwks = kr_jwt_keyset_jwks(ks);
    json_t *k = json_array_get(json_object_get(jwks, "keys"), 0);
    assert_string_equal(json_string_value(json_object_get(k, "kty")), "RSA");
    /* 2048 bits: a 256-byte modulus is 342 base64url characters */
    assert_int_equal(strlen(json_string_value(json_object_get(k, "n"))), 342);
    json_decref(jwks);
    kr_jwt_claims c = sample_claims();
    char *tok = NULL;
    assert_int_equal(kr_jwt_sign_alg(ks, "RS256", &c, &tok), KR_JWT_OK);
    assert_int_equal(verify_str(ks, tok, &at_t0), KR_JWT_OK);
    free(tok);
    kr_jwt_keyset_free(ks);
    free(pem);
    assert_int_equal(kr_jwt_generate_rs256_pem(NULL), KR_JWT_EINVAL);
}

static void unusable_keys_rejected(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ok", ec_old_pem);
    char err[200];
    const char *junk = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert_int_equal(kr_jwt_keyset_add_pem(ks, "j", junk, strlen(junk), err, sizeof(err)), KR_JWT_EKEY);
    assert_true(strlen(err) > 0);
    assert_int_equal(kr_jwt_keyset_add_pem(ks, "ok", ec_new_pem, strlen(ec_new_pem), err, sizeof(err)), KR_JWT_EEXIST);
    const char *bad_kids[] = {"", ".hidden", "a/b", "a b", "k\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad_kids) / sizeof(bad_kids[0]); i++)
        assert_int_equal(kr_jwt_keyset_add_pem(ks, bad_kids[i], ec_new_pem, strlen(ec_new_pem), err, sizeof(err)), KR_JWT_EINVAL);

    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    char *pem = pem_of(p384);
    assert_int_equal(kr_jwt_keyset_add_pem(ks, "p384", pem, strlen(pem), err, sizeof(err)), KR_JWT_EKEY);
    assert_non_null(strstr(err, "P-256"));
    free(pem);
    EVP_PKEY_free(p384);

    EVP_PKEY *small = EVP_RSA_gen(1024);
    pem = pem_of(small);
    assert_int_equal(kr_jwt_keyset_add_pem(ks, "rsa1024", pem, strlen(pem), err, sizeof(err)), KR_JWT_EKEY);
    free(pem);
    EVP_PKEY_free(small);

    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    pem = pem_of(ed);
    assert_int_equal(kr_jwt_keyset_add_pem(ks, "ed", pem, strlen(pem), err, sizeof(err)), KR_JWT_EKEY);
    free(pem);
    EVP_PKEY_free(ed);

    assert_int_equal(kr_jwt_keyset_count(ks), 1);
    assert_int_equal(ERR_peek_error(), 0);
    kr_jwt_keyset_free(ks);
}

static void jwks_shape(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    char err[200];
    assert_int_equal(kr_jwt_keyset_add_pem(ks, "rsa1", rsa_pem, strlen(rsa_pem), err, sizeof(err)), KR_JWT_OK);
    json_t *set = kr_jwt_keyset_jwks(ks);
    json_t *keys = json_object_get(set, "keys");
    assert_int_equal(json_object_size(set), 1);
    assert_int_equal(json_array_size(keys), 2);

    json_t *ec = json_array_get(keys, 0);
    assert_string_equal(json_string_value(json_object_get(ec, "kty")), "EC");
    assert_string_equal(json_string_value(json_object_get(ec, "crv")), "P-256");
    assert_string_equal(json_string_value(json_object_get(ec, "kid")), "ec1");
    assert_string_equal(json_string_value(json_object_get(ec, "alg")), "ES256");
    assert_string_equal(json_string_value(json_object_get(ec, "use")), "sig");
    assert_int_equal(strlen(json_string_value(json_object_get(ec, "x"))), 43);
    assert_int_equal(strlen(json_string_value(json_object_get(ec, "y"))), 43);
    assert_null(json_object_get(ec, "d"));
    assert_int_equal(json_object_size(ec), 7);

    json_t *rsa = json_array_get(keys, 1);
    assert_string_equal(json_string_value(json_object_get(rsa, "kty")), "RSA");
    assert_string_equal(json_string_value(json_object_get(rsa, "kid")), "rsa1");
    assert_string_equal(json_string_value(json_object_get(rsa, "alg")), "RS256");
    assert_string_equal(json_string_value(json_object_get(rsa, "use")), "sig");
    assert_string_equal(json_string_value(json_object_get(rsa, "e")), "AQAB");
    assert_int_equal(strlen(json_string_value(json_object_get(rsa, "n"))), b64u_len(256));
    assert_int_equal(json_object_size(rsa), 6);
    json_decref(set);

    /* x and y are the public point: the JWK of the public PEM is identical */
    kr_jwt_keyset *pub = keyset_with("ec1", ec_pub_pem);
    json_t *a = kr_jwt_keyset_jwks(pub), *b = kr_jwt_keyset_jwks(ks);
    json_array_remove(json_object_get(b, "keys"), 1);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    kr_jwt_keyset_free(pub);
    kr_jwt_keyset_free(ks);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void load_dir_reads_kid_pem_files(void **state)
{
    char dir[256], data[300], path[400];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/kr_jwt_test.XXXXXX", tmp && *tmp ? tmp : P_tmpdir);
    assert_non_null(mkdtemp(dir));
    kr_jwt_keyset *ks = kr_jwt_keyset_new();
    char err[300];
    assert_int_equal(kr_jwt_keyset_load_dir(ks, dir, err, sizeof(err)), KR_JWT_ENOKEY);

    /* the layout of a mounted Kubernetes Secret: files are links into ..data */
    snprintf(data, sizeof(data), "%s/..data", dir);
    assert_int_equal(mkdir(data, 0700), 0);
    snprintf(path, sizeof(path), "%s/2025-03.pem", data);
    write_file(path, ec_new_pem);
    snprintf(path, sizeof(path), "%s/2024-09.pem", data);
    write_file(path, ec_old_pem);
    snprintf(path, sizeof(path), "%s/2025-03.pem", dir);
    assert_int_equal(symlink("..data/2025-03.pem", path), 0);
    snprintf(path, sizeof(path), "%s/2024-09.pem", dir);
    assert_int_equal(symlink("..data/2024-09.pem", path), 0);
    snprintf(path, sizeof(path), "%s/README", dir);
    write_file(path, "not a key");

    int rc = kr_jwt_keyset_load_dir(ks, dir, err, sizeof(err));
    if (rc)
        fail_msg("load_dir: %s", err);
    assert_int_equal(kr_jwt_keyset_count(ks), 2);
    assert_string_equal(kr_jwt_keyset_active_kid(ks), "2025-03");

    kr_jwt_keyset *again = kr_jwt_keyset_new();
    snprintf(path, sizeof(path), "%s/bad name.pem", dir);
    write_file(path, ec_old_pem);
    assert_int_equal(kr_jwt_keyset_load_dir(again, dir, err, sizeof(err)), KR_JWT_EINVAL);
    assert_non_null(strstr(err, "bad name.pem"));
    unlink(path);
    kr_jwt_keyset_free(again);

    assert_int_equal(kr_jwt_keyset_load_dir(ks, "/nonexistent/kr_jwt", err, sizeof(err)), KR_JWT_EIO);

    snprintf(path, sizeof(path), "%s/2025-03.pem", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/2024-09.pem", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/2025-03.pem", data);
    unlink(path);
    snprintf(path, sizeof(path), "%s/2024-09.pem", data);
    unlink(path);
    snprintf(path, sizeof(path), "%s/README", dir);
    unlink(path);
    rmdir(data);
    rmdir(dir);
    kr_jwt_keyset_free(ks);
}

/* -------------------------------------------------------------- cache */

static void cache_hit_returns_same_claims(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    kr_jwt_cache *cache = kr_jwt_cache_new(8);
    kr_jwt_claims c = sample_claims();
    c.extra = json_pack("{s:s}", "school", "s-1");
    char *tok = sign_or_fail(ks, &c);
    json_decref(c.extra);

    kr_jwt_claims first, second;
    assert_int_equal(kr_jwt_cache_verify(cache, ks, tok, strlen(tok), &at_t0, &first), KR_JWT_OK);
    assert_int_equal(kr_jwt_cache_verify(cache, ks, tok, strlen(tok), &at_t0, &second), KR_JWT_OK);
    kr_jwt_cache_stats st;
    kr_jwt_cache_stats_get(cache, &st);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.size, 1);

    assert_string_equal(first.sub, second.sub);
    assert_string_equal(first.iss, second.iss);
    assert_string_equal(first.aud, second.aud);
    assert_string_equal(first.jti, second.jti);
    assert_string_equal(first.scope, second.scope);
    assert_string_equal(first.sid, second.sid);
    assert_string_equal(first.client_id, second.client_id);
    assert_int_equal(first.exp, second.exp);
    assert_int_equal(first.iat, second.iat);
    assert_true(json_equal(first.extra, second.extra));
    /* deep copies: the caller's struct shares nothing with the cache */
    assert_ptr_not_equal(first.sub, second.sub);
    assert_ptr_not_equal(first.extra, second.extra);
    kr_jwt_claims_clear(&first);
    kr_jwt_claims_clear(&second);

    /* a hit still checks the caller's expectations */
    kr_jwt_verify_opts o = at_t0;
    o.audience = "other";
    assert_int_equal(kr_jwt_cache_verify(cache, ks, tok, strlen(tok), &o, &first), KR_JWT_EAUDIENCE);
    assert_null(first.sub);

    /* same bytes under a key set without the key: not a hit */
    kr_jwt_keyset *other = keyset_with("ec2", ec_new_pem);
    assert_int_equal(kr_jwt_cache_verify(cache, other, tok, strlen(tok), &at_t0, &first), KR_JWT_EKID);

    /* a tampered token of the same length is not a hit */
    tok[strlen(tok) - 3] = tok[strlen(tok) - 3] == 'A' ? 'B' : 'A';
    assert_int_equal(kr_jwt_cache_verify(cache, ks, tok, strlen(tok), &at_t0, &first), KR_JWT_ESIGNATURE);
    free(tok);
    kr_jwt_keyset_free(other);
    kr_jwt_keyset_free(ks);
    kr_jwt_cache_free(cache);
}

static void cache_hit_respects_expiry(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    kr_jwt_cache *cache = kr_jwt_cache_new(8);
    kr_jwt_claims c = sample_claims(), out;
    char *tok = sign_or_fail(ks, &c);
    kr_jwt_verify_opts o = at_t0;
    assert_int_equal(kr_jwt_cache_verify(cache, ks, tok, strlen(tok), &o, &out), KR_JWT_OK);
    kr_jwt_claims_clear(&out);
    o.now = T0 + 299;
    assert_int_equal(kr_jwt_cache_verify(cache, ks, tok, strlen(tok), &o, &out), KR_JWT_OK);
    kr_jwt_claims_clear(&out);
    o.now = T0 + 300;
    assert_int_equal(kr_jwt_cache_verify(cache, ks, tok, strlen(tok), &o, &out), KR_JWT_EEXPIRED);
    kr_jwt_cache_stats st;
    kr_jwt_cache_stats_get(cache, &st);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.expired, 1);
    assert_int_equal(st.size, 0);
    free(tok);
    kr_jwt_keyset_free(ks);
    kr_jwt_cache_free(cache);
}

static void cache_capacity_is_bounded(void **state)
{
    enum { CAP = 4, N = 11 };
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    kr_jwt_cache *cache = kr_jwt_cache_new(CAP);
    char *toks[N];
    kr_jwt_claims out;
    for (int i = 0; i < N; i++) {
        kr_jwt_claims c = sample_claims();
        char jti[16];
        snprintf(jti, sizeof(jti), "jti-%d", i);
        c.jti = jti;
        toks[i] = sign_or_fail(ks, &c);
        assert_int_equal(kr_jwt_cache_verify(cache, ks, toks[i], strlen(toks[i]), &at_t0, &out), KR_JWT_OK);
        assert_string_equal(out.jti, jti);
        kr_jwt_claims_clear(&out);
        kr_jwt_cache_stats st;
        kr_jwt_cache_stats_get(cache, &st);
        assert_true(st.size <= CAP);
    }
    kr_jwt_cache_stats st;
    kr_jwt_cache_stats_get(cache, &st);
    assert_int_equal(st.size, CAP);
    assert_int_equal(st.capacity, CAP);
    assert_int_equal(st.evictions, N - CAP);
    assert_int_equal(st.misses, N);

    /* the newest token is still cached, the first was evicted */
    assert_int_equal(kr_jwt_cache_verify(cache, ks, toks[N - 1], strlen(toks[N - 1]), &at_t0, &out), KR_JWT_OK);
    kr_jwt_claims_clear(&out);
    kr_jwt_cache_stats_get(cache, &st);
    assert_int_equal(st.hits, 1);
    assert_int_equal(kr_jwt_cache_verify(cache, ks, toks[0], strlen(toks[0]), &at_t0, &out), KR_JWT_OK);
    kr_jwt_claims_clear(&out);
    kr_jwt_cache_stats_get(cache, &st);
    assert_int_equal(st.misses, N + 1);
    assert_int_equal(st.size, CAP);

    for (int i = 0; i < N; i++)
        free(toks[i]);
    assert_null(kr_jwt_cache_new(0));
    kr_jwt_keyset_free(ks);
    kr_jwt_cache_free(cache);
}

static void cache_revoke_drops_and_denies(void **state)
{
    kr_jwt_keyset *ks = keyset_with("ec1", ec_old_pem);
    kr_jwt_cache *cache = kr_jwt_cache_new(8);
    kr_jwt_claims c = sample_claims(), out;
    kr_jwt_verify_opts now = {.now = 0}; /* real clock: revocations expire by it */
    c.exp = (int64_t)time(NULL) + 600;
    c.iat = 0;
    char *a = sign_or_fail(ks, &c);
    c.jti = "jti-2";
    char *b = sign_or_fail(ks, &c);
    c.jti = "jti-3";
    c.sid = "sid-2";
    char *d = sign_or_fail(ks, &c);
    char *toks[] = {a, b, d};
    for (int i = 0; i < 3; i++) {
        assert_non_null(toks[i]);
        if (toks[i] == NULL)
            return;
        assert_int_equal(kr_jwt_cache_verify(cache, ks, toks[i], strlen(toks[i]), &now, &out), KR_JWT_OK);
        kr_jwt_claims_clear(&out);
    }
    kr_jwt_cache_stats st;
    kr_jwt_cache_stats_get(cache, &st);
    assert_int_equal(st.size, 3);

    assert_int_equal(kr_jwt_cache_revoke_jti(cache, "jti-1", c.exp), KR_JWT_OK);
    kr_jwt_cache_stats_get(cache, &st);
    assert_int_equal(st.size, 2);
    assert_int_equal(st.revoked, 1);
    assert_int_equal(st.denied, 1);
    assert_int_equal(kr_jwt_cache_verify(cache, ks, a, strlen(a), &now, &out), KR_JWT_EREVOKED);
    assert_int_equal(kr_jwt_cache_verify(cache, ks, b, strlen(b), &now, &out), KR_JWT_OK);
    kr_jwt_claims_clear(&out);

    assert_int_equal(kr_jwt_cache_revoke_sid(cache, "sid-1", c.exp), KR_JWT_OK);
    assert_int_equal(kr_jwt_cache_verify(cache, ks, b, strlen(b), &now, &out), KR_JWT_EREVOKED);
    assert_int_equal(kr_jwt_cache_verify(cache, ks, d, strlen(d), &now, &out), KR_JWT_OK);
    kr_jwt_claims_clear(&out);

    /* a revocation whose tokens are all expired drops entries, remembers nothing */
    assert_int_equal(kr_jwt_cache_revoke_sid(cache, "sid-2", 1), KR_JWT_OK);
    kr_jwt_cache_stats_get(cache, &st);
    assert_int_equal(st.size, 0);
    assert_int_equal(st.denied, 2);
    free(a);
    free(b);
    free(d);
    kr_jwt_keyset_free(ks);
    kr_jwt_cache_free(cache);
}

static void cache_revocation_list_is_bounded(void **state)
{
    kr_jwt_cache *cache = kr_jwt_cache_new(2);
    int64_t later = (int64_t)time(NULL) + 600;
    assert_int_equal(kr_jwt_cache_revoke_jti(cache, "a", later), KR_JWT_OK);
    assert_int_equal(kr_jwt_cache_revoke_jti(cache, "b", later), KR_JWT_OK);
    assert_int_equal(kr_jwt_cache_revoke_jti(cache, "a", later + 1), KR_JWT_OK); /* already known */
    assert_int_equal(kr_jwt_cache_revoke_jti(cache, "c", later), KR_JWT_EFULL);
    kr_jwt_cache_stats st;
    kr_jwt_cache_stats_get(cache, &st);
    assert_int_equal(st.denied, 2);
    kr_jwt_cache_free(cache);
}

/* ------------------------------------------------------------ helpers */

static void base64url_is_strict(void **state)
{
    unsigned char out[16];
    size_t n;
    char enc[32];
    assert_int_equal(b64u_encode(enc, (const unsigned char *)"\xfb\xff", 2), 3);
    assert_string_equal(enc, "-_8");
    assert_true(b64u_decode(out, &n, "-_8", 3));
    assert_int_equal(n, 2);
    assert_memory_equal(out, "\xfb\xff", 2);
    assert_false(b64u_decode(out, &n, "-_9", 3)); /* leftover bits set */
    assert_false(b64u_decode(out, &n, "+/8", 3)); /* standard alphabet */
    assert_false(b64u_decode(out, &n, "-_8=", 4));
    assert_false(b64u_decode(out, &n, "A", 1));
    assert_true(b64u_decode(out, &n, "", 0));
    assert_int_equal(n, 0);
}

/* Reference vectors from the SipHash paper's appendix. */
static void siphash_matches_reference(void **state)
{
    uint64_t key[2];
    unsigned char k[16], msg[15];
    for (int i = 0; i < 16; i++)
        k[i] = (unsigned char)i;
    for (int i = 0; i < 15; i++)
        msg[i] = (unsigned char)i;
    key[0] = load_le64(k);
    key[1] = load_le64(k + 8);
    assert_int_equal(siphash24(key, msg, 15), 0xa129ca6149be45e5ULL);
    assert_int_equal(siphash24(key, msg, 0), 0x726fdb47dd0e0e31ULL);
}

static void strerror_names_every_code(void **state)
{
    for (int e = KR_JWT_OK; e <= KR_JWT_EFULL; e++)
        assert_string_not_equal(kr_jwt_strerror(e), "unknown error");
    assert_string_equal(kr_jwt_strerror(9999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(es256_round_trip),
        cmocka_unit_test(rs256_round_trip),
        cmocka_unit_test(es256_signature_is_raw_r_s),
        cmocka_unit_test(public_key_verifies_but_cannot_sign),
        cmocka_unit_test(tampered_payload_rejected),
        cmocka_unit_test(tampered_signature_rejected),
        cmocka_unit_test(alg_none_rejected),
        cmocka_unit_test(hs256_with_public_key_as_secret_rejected),
        cmocka_unit_test(alg_of_another_key_type_rejected),
        cmocka_unit_test(unknown_or_missing_kid_rejected),
        cmocka_unit_test(expiry_and_not_before),
        cmocka_unit_test(allow_expired_skips_only_the_expiry),
        cmocka_unit_test(wrong_issuer_or_audience_rejected),
        cmocka_unit_test(audience_array_accepted),
        cmocka_unit_test(signed_but_malformed_contents_rejected),
        cmocka_unit_test(malformed_framing_rejected),
        cmocka_unit_test(huge_token_rejected_as_malformed),
        cmocka_unit_test(sign_refuses_unsignable_claims),
        cmocka_unit_test(rotation_keeps_old_tokens_valid),
        cmocka_unit_test(sign_alg_picks_a_key_of_that_algorithm),
        cmocka_unit_test(rsa_key_never_becomes_the_default_signer),
        cmocka_unit_test(can_sign_names_private_keys_by_algorithm),
        cmocka_unit_test(generated_rsa_key_signs_rs256),
        cmocka_unit_test(unusable_keys_rejected),
        cmocka_unit_test(jwks_shape),
        cmocka_unit_test(load_dir_reads_kid_pem_files),
        cmocka_unit_test(cache_hit_returns_same_claims),
        cmocka_unit_test(cache_hit_respects_expiry),
        cmocka_unit_test(cache_capacity_is_bounded),
        cmocka_unit_test(cache_revoke_drops_and_denies),
        cmocka_unit_test(cache_revocation_list_is_bounded),
        cmocka_unit_test(base64url_is_strict),
        cmocka_unit_test(siphash_matches_reference),
        cmocka_unit_test(strerror_names_every_code),
    };
    return cmocka_run_group_tests(tests, make_keys, free_keys);
}
