#include "kr_seal.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KR_SEAL_MAX_KEYS 8
#define KR_SEAL_MAX_KEY_BYTES 128
/* Keyed HMAC contexts kept per key for reuse, at most. */
#define MAC_POOL 16

/* Setting up an HMAC from its key costs far more than the MAC of an
 * envelope (OpenSSL 3 fetches the algorithm and hashes the key pads each
 * time), so each key keeps HMAC contexts that already hold it: a context is
 * taken from the pool, re-initialised (EVP_MAC_init with no key keeps the
 * key), used and put back. */
typedef struct {
    char id[33];
    unsigned char key[KR_SEAL_MAX_KEY_BYTES];
    size_t len;
    EVP_MAC_CTX *keyed; /* the key set, never used itself: copied */
    pthread_mutex_t lock;
    bool locked; /* the lock is initialised */
    EVP_MAC_CTX *spare[MAC_POOL];
    int nspare;
} seal_key;

struct st_kr_keyring_t {
    seal_key keys[KR_SEAL_MAX_KEYS];
    size_t n;
};

int64_t kr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int id_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* Strict standard base64 with padding; returns decoded length or -1. */
static long b64_decode(const char *in, size_t len, unsigned char *out, size_t outcap)
{
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > outcap + 2)
        return -1;
    unsigned char tmp[KR_SEAL_MAX_KEY_BYTES + 3];
    if (len / 4 * 3 > sizeof(tmp))
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/' ||
                 (c == '=' && i >= len - 2);
        if (!ok)
            return -1;
    }
    int n = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)len);
    if (n < 0)
        return -1;
    /* EVP_DecodeBlock counts padding as zero bytes. */
    if (in[len - 1] == '=')
        n--;
    if (in[len - 2] == '=')
        n--;
    if ((size_t)n > outcap)
        return -1;
    memcpy(out, tmp, (size_t)n);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return n;
}

/* Makes k->keyed: an HMAC-SHA256 context holding k's key. */
static int key_setup(seal_key *k)
{
    pthread_mutex_init(&k->lock, NULL);
    k->locked = true;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL)
        return -1;
    k->keyed = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0), OSSL_PARAM_construct_end()};
    if (k->keyed == NULL || EVP_MAC_init(k->keyed, k->key, k->len, params) != 1)
        return -1;
    return 0;
}

static void key_release(seal_key *k)
{
    if (!k->locked)
        return;
    for (int i = 0; i < k->nspare; i++)
        EVP_MAC_CTX_free(k->spare[i]);
    EVP_MAC_CTX_free(k->keyed);
    pthread_mutex_destroy(&k->lock);
}

/* HMAC-SHA256 of data under k's key into mac (32 bytes). */
static void key_mac(const seal_key *ck, const void *data, size_t len, unsigned char mac[32])
{
    seal_key *k = (seal_key *)ck; /* only the pool changes */
    pthread_mutex_lock(&k->lock);
    EVP_MAC_CTX *ctx = k->nspare > 0 ? k->spare[--k->nspare] : NULL;
    pthread_mutex_unlock(&k->lock);
    if (ctx == NULL && (ctx = EVP_MAC_CTX_dup(k->keyed)) == NULL)
        abort();
    size_t maclen = 0;
    if (EVP_MAC_init(ctx, NULL, 0, NULL) != 1 || EVP_MAC_update(ctx, data, len) != 1 || EVP_MAC_final(ctx, mac, &maclen, 32) != 1 ||
        maclen != 32)
        abort();
    pthread_mutex_lock(&k->lock);
    if (k->nspare < MAC_POOL) {
        k->spare[k->nspare++] = ctx;
        ctx = NULL;
    }
    pthread_mutex_unlock(&k->lock);
    EVP_MAC_CTX_free(ctx);
}

int kr_keyring_parse(const char *spec, kr_keyring **out, char *err, size_t errlen)
{
    if (spec == NULL || *spec == '\0') {
        snprintf(err, errlen, "no internal key given (expected kid:base64key)");
        return -1;
    }
    kr_keyring *kr = calloc(1, sizeof(*kr));
    if (kr == NULL)
        abort();
    const char *p = spec;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(end - p));
        size_t idlen = colon ? (size_t)(colon - p) : 0;
        if (colon == NULL || idlen == 0 || idlen > 32) {
            snprintf(err, errlen, "internal key %zu: expected kid:base64key with a kid of 1..32 characters", kr->n + 1);
            goto fail;
        }
        for (size_t i = 0; i < idlen; i++) {
            if (!id_char_ok(p[i])) {
                snprintf(err, errlen, "internal key %zu: kid may only contain letters, digits, '.', '_' and '-'", kr->n + 1);
                goto fail;
            }
        }
        if (kr->n == KR_SEAL_MAX_KEYS) {
            snprintf(err, errlen, "more than %d internal keys", KR_SEAL_MAX_KEYS);
            goto fail;
        }
        seal_key *k = &kr->keys[kr->n];
        memcpy(k->id, p, idlen);
        k->id[idlen] = '\0';
        for (size_t i = 0; i < kr->n; i++) {
            if (strcmp(kr->keys[i].id, k->id) == 0) {
                snprintf(err, errlen, "internal key id '%s' appears twice", k->id);
                goto fail;
            }
        }
        long n = b64_decode(colon + 1, (size_t)(end - colon - 1), k->key, sizeof(k->key));
        if (n < 0) {
            snprintf(err, errlen, "internal key '%s': not valid base64 (at most %d bytes)", k->id, KR_SEAL_MAX_KEY_BYTES);
            goto fail;
        }
        if (n < KR_SEAL_MIN_KEY_BYTES) {
            snprintf(err, errlen, "internal key '%s': %ld bytes, need at least %d", k->id, n, KR_SEAL_MIN_KEY_BYTES);
            goto fail;
        }
        k->len = (size_t)n;
        if (key_setup(k) != 0) {
            snprintf(err, errlen, "internal key '%s': OpenSSL cannot set up HMAC-SHA256", k->id);
            goto fail;
        }
        kr->n++;
        p = *end == ',' ? end + 1 : end;
    }
    *out = kr;
    return 0;
fail:
    kr_keyring_free(kr);
    return -1;
}

void kr_keyring_free(kr_keyring *kr)
{
    if (kr == NULL)
        return;
    for (size_t i = 0; i < KR_SEAL_MAX_KEYS; i++)
        key_release(&kr->keys[i]);
    OPENSSL_cleanse(kr, sizeof(*kr));
    free(kr);
}

const char *kr_keyring_active_id(const kr_keyring *kr)
{
    return kr->keys[0].id;
}

static const seal_key *find_key(const kr_keyring *kr, const char *id)
{
    for (size_t i = 0; i < kr->n; i++) {
        if (strcmp(kr->keys[i].id, id) == 0)
            return &kr->keys[i];
    }
    return NULL;
}

/* HMAC over the envelope packed with an empty MAC. */
static void compute_mac(const seal_key *k, const Kreide__Envelope *env, const Kreide__EnvelopeSeal *seal_no_mac,
                        unsigned char mac[32])
{
    Kreide__Envelope copy = *env;
    copy.seal = (Kreide__EnvelopeSeal *)seal_no_mac;
    size_t n = kreide__envelope__get_packed_size(&copy);
    uint8_t stackbuf[4096];
    uint8_t *buf = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
    if (buf == NULL)
        abort();
    kreide__envelope__pack(&copy, buf);
    key_mac(k, buf, n, mac);
    if (buf != stackbuf)
        free(buf);
}

/* Packs `env` sealed with the keyring's first key into `buf`, which holds
 * at least sealed_size() bytes; returns the length packed. */
static size_t seal_into(const kr_keyring *kr, Kreide__Envelope *env, int64_t now_ms, uint8_t *buf)
{
    const seal_key *k = &kr->keys[0];
    Kreide__EnvelopeSeal seal = KREIDE__ENVELOPE_SEAL__INIT;
    seal.key_id = (char *)k->id;
    seal.sealed_at_ms = now_ms;
    unsigned char mac[32];
    compute_mac(k, env, &seal, mac);
    seal.mac.data = mac;
    seal.mac.len = sizeof(mac);
    Kreide__EnvelopeSeal *saved = env->seal;
    env->seal = &seal;
    size_t n = kreide__envelope__pack(env, buf);
    env->seal = saved;
    return n;
}

/* The packed size of `env` once sealed: the seal's MAC is always 32 bytes
 * and its key id that of the first key, whatever the time. */
static size_t sealed_size(const kr_keyring *kr, Kreide__Envelope *env)
{
    Kreide__EnvelopeSeal seal = KREIDE__ENVELOPE_SEAL__INIT;
    unsigned char mac[32] = {0};
    seal.key_id = (char *)kr->keys[0].id;
    seal.sealed_at_ms = INT64_MAX; /* the longest varint a time can take */
    seal.mac.data = mac;
    seal.mac.len = sizeof(mac);
    Kreide__EnvelopeSeal *saved = env->seal;
    env->seal = &seal;
    size_t n = kreide__envelope__get_packed_size(env);
    env->seal = saved;
    return n;
}

int kr_seal_pack(const kr_keyring *kr, Kreide__Envelope *env, int64_t now_ms, nng_msg **out)
{
    nng_msg *m;
    size_t size = sealed_size(kr, env);
    int rv = nng_msg_alloc(&m, size);
    if (rv != 0)
        return rv;
    size_t n = seal_into(kr, env, now_ms, nng_msg_body(m));
    (void)nng_msg_chop(m, size - n); /* within the message: cannot fail */
    *out = m;
    return 0;
}

size_t kr_seal_pack_buf(const kr_keyring *kr, Kreide__Envelope *env, int64_t now_ms, uint8_t **out)
{
    uint8_t *buf = malloc(sealed_size(kr, env));
    if (buf == NULL)
        abort();
    *out = buf;
    return seal_into(kr, env, now_ms, buf);
}

kr_seal_error kr_seal_verify(const kr_keyring *kr, const Kreide__Envelope *env, int64_t now_ms)
{
    const Kreide__EnvelopeSeal *s = env->seal;
    if (s == NULL || s->mac.len != 32 || s->key_id == NULL)
        return KR_SEAL_MISSING;
    const seal_key *k = find_key(kr, s->key_id);
    if (k == NULL)
        return KR_SEAL_UNKNOWN_KEY;
    Kreide__EnvelopeSeal nomac = *s;
    nomac.mac.data = NULL;
    nomac.mac.len = 0;
    unsigned char mac[32];
    compute_mac(k, env, &nomac, mac);
    if (CRYPTO_memcmp(mac, s->mac.data, 32) != 0)
        return KR_SEAL_BAD_MAC;
    if (s->sealed_at_ms < now_ms - KR_SEAL_MAX_AGE_MS || s->sealed_at_ms > now_ms + KR_SEAL_MAX_SKEW_MS)
        return KR_SEAL_STALE;
    if (env->deadline_ms != 0 && env->deadline_ms < now_ms)
        return KR_SEAL_EXPIRED;
    return KR_SEAL_OK;
}

int kr_keyring_mac(const kr_keyring *kr, const char *kid, const char *purpose, const void *data, size_t len,
                   unsigned char mac[KR_KEYRING_MAC_LEN])
{
    const seal_key *k = kid != NULL ? find_key(kr, kid) : &kr->keys[0];
    if (k == NULL)
        return -1;
    /* A key of its own per purpose: no MAC made here equals an envelope's or
     * another purpose's, whatever the data. */
    static const char prefix[] = "kreide-purpose:";
    size_t plen = strlen(purpose);
    unsigned char label[sizeof(prefix) + 128], derived[32];
    if (plen > 128)
        abort(); /* purposes are fixed labels in the code */
    memcpy(label, prefix, sizeof(prefix) - 1);
    memcpy(label + sizeof(prefix) - 1, purpose, plen);
    unsigned int dlen = sizeof(derived), mlen = KR_KEYRING_MAC_LEN;
    if (HMAC(EVP_sha256(), k->key, (int)k->len, label, sizeof(prefix) - 1 + plen, derived, &dlen) == NULL ||
        HMAC(EVP_sha256(), derived, (int)dlen, data, len, mac, &mlen) == NULL)
        abort();
    OPENSSL_cleanse(derived, sizeof(derived));
    return 0;
}

const char *kr_seal_strerror(kr_seal_error e)
{
    switch (e) {
    case KR_SEAL_OK:
        return "seal valid";
    case KR_SEAL_MISSING:
        return "envelope is not sealed";
    case KR_SEAL_UNKNOWN_KEY:
        return "envelope sealed with an unknown key id";
    case KR_SEAL_BAD_MAC:
        return "envelope seal does not verify (forged or altered)";
    case KR_SEAL_STALE:
        return "envelope seal is too old or from the future";
    case KR_SEAL_EXPIRED:
        return "envelope deadline has passed";
    }
    return "unknown seal error";
}
