#include "kr_jwt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include "kr_id.h"

/* libjwt 1.10 takes integer claims as `long` (jwt_add_grant_int); NumericDate
 * values past 2038 need it to be 64 bits wide. */
_Static_assert(sizeof(long) >= 8, "kr_jwt needs a 64-bit long");

enum { ALG_ES256, ALG_RS256 };
static const char *const alg_names[] = {[ALG_ES256] = "ES256", [ALG_RS256] = "RS256"};

#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192
/* Largest signature either algorithm makes: an 8192-bit RSA signature. */
#define SIG_MAX (RSA_MAX_BITS / 8)
#define ES256_SIG_LEN 64
#define KEY_FILE_MAX (64 * 1024)
#define CACHE_MAX_CAPACITY (1u << 20)

/* ------------------------------------------------------------- helpers */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

static int set_err(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int set_err(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *kr_jwt_strerror(int err)
{
    switch (err) {
    case KR_JWT_OK:
        return "success";
    case KR_JWT_EINVAL:
        return "invalid argument";
    case KR_JWT_EKEY:
        return "unusable key";
    case KR_JWT_EEXIST:
        return "key id already in the key set";
    case KR_JWT_ENOKEY:
        return "no key available";
    case KR_JWT_EIO:
        return "cannot read key file";
    case KR_JWT_EMALFORMED:
        return "malformed token";
    case KR_JWT_EALG:
        return "token algorithm not allowed for its key";
    case KR_JWT_EKID:
        return "unknown key id";
    case KR_JWT_ESIGNATURE:
        return "bad signature";
    case KR_JWT_ECLAIMS:
        return "invalid claims";
    case KR_JWT_EEXPIRED:
        return "token expired";
    case KR_JWT_ENOTYET:
        return "token not yet valid";
    case KR_JWT_EISSUER:
        return "wrong issuer";
    case KR_JWT_EAUDIENCE:
        return "wrong audience";
    case KR_JWT_EREVOKED:
        return "token revoked";
    case KR_JWT_EFULL:
        return "revocation list full";
    }
    return "unknown error";
}

/* --------------------------------------------------------- base64url */

static const char b64u_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64u_len(size_t n)
{
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

/* Unpadded base64url (RFC 7515 section 2). Writes b64u_len(n) characters and a
 * NUL; returns the number of characters. */
static size_t b64u_encode(char *out, const unsigned char *in, size_t n)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64u_alphabet[v >> 18];
        out[o++] = b64u_alphabet[(v >> 12) & 63];
        out[o++] = b64u_alphabet[(v >> 6) & 63];
        out[o++] = b64u_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64u_alphabet[v >> 18];
        out[o++] = b64u_alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64u_alphabet[v >> 18];
        out[o++] = b64u_alphabet[(v >> 12) & 63];
        out[o++] = b64u_alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64u_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Strict decoding: the URL-safe alphabet only, no padding, no whitespace, and
 * zero leftover bits, so each byte string has exactly one accepted encoding.
 * `out` needs room for n / 4 * 3 + 2 bytes. */
static bool b64u_decode(unsigned char *out, size_t *outlen, const char *in, size_t n)
{
    if (n % 4 == 1)
        return false;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64u_value((unsigned char)in[i]);
        if (v < 0)
            return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return false;
    *outlen = o;
    return true;
}

/* ------------------------------------------------------------- siphash */

/* SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
 * 2012), keyed per cache so that bucket placement cannot be predicted. */
#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                                                   \
    do {                                                                                                                           \
        v0 += v1;                                                                                                                  \
        v1 = ROTL64(v1, 13);                                                                                                       \
        v1 ^= v0;                                                                                                                  \
        v0 = ROTL64(v0, 32);                                                                                                       \
        v2 += v3;                                                                                                                  \
        v3 = ROTL64(v3, 16);                                                                                                       \
        v3 ^= v2;                                                                                                                  \
        v0 += v3;                                                                                                                  \
        v3 = ROTL64(v3, 21);                                                                                                       \
        v3 ^= v0;                                                                                                                  \
        v2 += v1;                                                                                                                  \
        v1 = ROTL64(v1, 17);                                                                                                       \
        v1 ^= v2;                                                                                                                  \
        v2 = ROTL64(v2, 32);                                                                                                       \
    } while (0)

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t siphash24(const uint64_t key[2], const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t v0 = key[0] ^ 0x736f6d6570736575ULL, v1 = key[1] ^ 0x646f72616e646f6dULL;
    uint64_t v2 = key[0] ^ 0x6c7967656e657261ULL, v3 = key[1] ^ 0x7465646279746573ULL;
    size_t whole = n & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le64(p + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)n << 56;
    for (size_t i = 0; i < (n & 7); i++)
        b |= (uint64_t)p[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ------------------------------------------------------------------ keys */

struct kr_jwt_key {
    char kid[KR_JWT_MAX_KID + 1];
    int alg;
    bool has_private;
    EVP_PKEY *pkey;
    /* A signing context set up once (digest and signature fetched, key
     * attached); every signature works on a copy, which spares OpenSSL 3
     * fetching both again each time. NULL for public keys. */
    EVP_MD_CTX *sign_tmpl;
};

/* Copies of sign templates are made under this lock: OpenSSL promises
 * nothing about copying one context from several threads at once. */
static pthread_mutex_t sign_tmpl_lock = PTHREAD_MUTEX_INITIALIZER;

struct kr_jwt_keyset {
    struct kr_jwt_key keys[KR_JWT_MAX_KEYS]; /* sorted by kid (strcmp) */
    size_t n;
    char active[KR_JWT_MAX_KID + 1]; /* empty: the default rule */
    uint64_t serial;                 /* tells cache entries of different key sets apart */
};

static atomic_uint_fast64_t keyset_serial = 1;

static bool kid_valid(const char *kid, size_t n)
{
    if (n == 0 || n > KR_JWT_MAX_KID || kid[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)kid[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static const struct kr_jwt_key *find_key(const kr_jwt_keyset *ks, const char *kid)
{
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->keys[i].kid, kid) == 0)
            return &ks->keys[i];
    return NULL;
}

/* The private key of algorithm `alg` with the greatest kid, or NULL. */
static const struct kr_jwt_key *greatest_private(const kr_jwt_keyset *ks, int alg)
{
    for (size_t i = ks->n; i-- > 0;)
        if (ks->keys[i].has_private && ks->keys[i].alg == alg)
            return &ks->keys[i];
    return NULL;
}

/* The default rule prefers ES256: an RSA key kept beside the EC keys for
 * RS256 relying parties must not take over signing because its kid sorts
 * later ("rsa-..." after "2025-..."). */
static const struct kr_jwt_key *active_key(const kr_jwt_keyset *ks)
{
    if (ks->active[0])
        return find_key(ks, ks->active);
    const struct kr_jwt_key *k = greatest_private(ks, ALG_ES256);
    return k ? k : greatest_private(ks, ALG_RS256);
}

kr_jwt_keyset *kr_jwt_keyset_new(void)
{
    kr_jwt_keyset *ks = xcalloc(1, sizeof(*ks));
    ks->serial = atomic_fetch_add(&keyset_serial, 1);
    return ks;
}

void kr_jwt_keyset_free(kr_jwt_keyset *ks)
{
    if (!ks)
        return;
    for (size_t i = 0; i < ks->n; i++) {
        EVP_MD_CTX_free(ks->keys[i].sign_tmpl);
        EVP_PKEY_free(ks->keys[i].pkey);
    }
    free(ks);
}

size_t kr_jwt_keyset_count(const kr_jwt_keyset *ks)
{
    return ks ? ks->n : 0;
}

const char *kr_jwt_keyset_active_kid(const kr_jwt_keyset *ks)
{
    const struct kr_jwt_key *k = ks ? active_key(ks) : NULL;
    return k ? k->kid : NULL;
}

/* Signs `msg` the way JWS wants the signature: raw r||s for ES256 (RFC 7518
 * section 3.4), where OpenSSL produces DER; the PKCS#1 v1.5 block as is for
 * RS256. `sig` holds SIG_MAX bytes. */
static bool key_sign(const struct kr_jwt_key *k, const unsigned char *msg, size_t n, unsigned char *sig, size_t *siglen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md)
        abort();
    unsigned char der[SIG_MAX];
    size_t dlen = sizeof(der);
    pthread_mutex_lock(&sign_tmpl_lock);
    bool ok = k->sign_tmpl != NULL && EVP_MD_CTX_copy_ex(md, k->sign_tmpl) == 1;
    pthread_mutex_unlock(&sign_tmpl_lock);
    ok = ok && EVP_DigestSignUpdate(md, msg, n) == 1 && EVP_DigestSignFinal(md, der, &dlen) == 1;
    EVP_MD_CTX_free(md);
    if (ok && k->alg == ALG_RS256) {
        memcpy(sig, der, dlen);
        *siglen = dlen;
    } else if (ok) {
        const unsigned char *p = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
        const BIGNUM *r, *s;
        ok = es != NULL;
        if (ok) {
            ECDSA_SIG_get0(es, &r, &s);
            ok = BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32, 32) == 32;
            ECDSA_SIG_free(es);
        }
        *siglen = ES256_SIG_LEN;
    }
    if (!ok)
        ERR_clear_error();
    return ok;
}

static bool key_verify(const struct kr_jwt_key *k, const unsigned char *msg, size_t n, const unsigned char *sig, size_t siglen)
{
    unsigned char *der = NULL;
    const unsigned char *vsig = sig;
    size_t vlen = siglen;
    if (k->alg == ALG_ES256) {
        if (siglen != ES256_SIG_LEN)
            return false;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        if (!es || !r || !s)
            abort();
        ECDSA_SIG_set0(es, r, s);
        int dl = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        if (dl <= 0)
            abort();
        vsig = der;
        vlen = (size_t)dl;
    } else if (siglen != (size_t)EVP_PKEY_get_size(k->pkey)) {
        return false;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md)
        abort();
    bool ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k->pkey) == 1 && EVP_DigestVerify(md, vsig, vlen, msg, n) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    /* A failed verification leaves entries in this thread's OpenSSL error
     * queue, where the TLS code sharing the thread would find them. */
    if (!ok)
        ERR_clear_error();
    return ok;
}

static int pem_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

static int key_alg(EVP_PKEY *pk, char *err, size_t errlen)
{
    if (EVP_PKEY_is_a(pk, "EC")) {
        char group[80];
        size_t glen = 0;
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &glen) != 1)
            return -set_err(err, errlen, KR_JWT_EKEY, "EC key without a named curve");
        if (OBJ_sn2nid(group) != NID_X9_62_prime256v1)
            return -set_err(err, errlen, KR_JWT_EKEY, "EC key on curve %s, only P-256 is supported", group);
        return ALG_ES256;
    }
    if (EVP_PKEY_is_a(pk, "RSA")) {
        int bits = EVP_PKEY_get_bits(pk);
        if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS)
            return -set_err(err, errlen, KR_JWT_EKEY, "RSA key of %d bits, need %d to %d", bits, RSA_MIN_BITS, RSA_MAX_BITS);
        return ALG_RS256;
    }
    return -set_err(err, errlen, KR_JWT_EKEY, "key type %s is not supported (EC P-256 or RSA)", EVP_PKEY_get0_type_name(pk));
}

int kr_jwt_keyset_add_pem(kr_jwt_keyset *ks, const char *kid, const char *pem, size_t len, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!ks || !kid || !pem)
        return set_err(err, errlen, KR_JWT_EINVAL, "NULL argument");
    if (!kid_valid(kid, strlen(kid)))
        return set_err(err, errlen, KR_JWT_EINVAL, "invalid kid");
    if (len > INT_MAX)
        return set_err(err, errlen, KR_JWT_EINVAL, "PEM too long");
    if (find_key(ks, kid))
        return set_err(err, errlen, KR_JWT_EEXIST, "kid %s already loaded", kid);
    if (ks->n == KR_JWT_MAX_KEYS)
        return set_err(err, errlen, KR_JWT_EINVAL, "key set full (%d keys)", KR_JWT_MAX_KEYS);

    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        abort();
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, pem_no_passphrase, NULL);
    bool priv = pk != NULL;
    BIO_free(bio);
    if (!pk) {
        bio = BIO_new_mem_buf(pem, (int)len);
        if (!bio)
            abort();
        pk = PEM_read_bio_PUBKEY(bio, NULL, pem_no_passphrase, NULL);
        BIO_free(bio);
    }
    ERR_clear_error();
    if (!pk)
        return set_err(err, errlen, KR_JWT_EKEY, "kid %s: no unencrypted PEM private key or PEM public key", kid);

    struct kr_jwt_key k = {.has_private = priv, .pkey = pk};
    snprintf(k.kid, sizeof(k.kid), "%s", kid);
    int alg = key_alg(pk, err, errlen);
    if (alg < 0) {
        EVP_PKEY_free(pk);
        return -alg;
    }
    k.alg = alg;
    if (priv) {
        k.sign_tmpl = EVP_MD_CTX_new();
        if (!k.sign_tmpl)
            abort();
        if (EVP_DigestSignInit(k.sign_tmpl, NULL, EVP_sha256(), NULL, pk) != 1) {
            ERR_clear_error();
            EVP_MD_CTX_free(k.sign_tmpl);
            EVP_PKEY_free(pk);
            return set_err(err, errlen, KR_JWT_EKEY, "kid %s: cannot set up signing", kid);
        }
        /* Catches a key whose private and public halves disagree at load time
         * rather than at the first login. */
        static const unsigned char probe[] = "kr_jwt self-test";
        unsigned char sig[SIG_MAX];
        size_t siglen = 0;
        if (!key_sign(&k, probe, sizeof(probe), sig, &siglen) || !key_verify(&k, probe, sizeof(probe), sig, siglen)) {
            EVP_MD_CTX_free(k.sign_tmpl);
            EVP_PKEY_free(pk);
            return set_err(err, errlen, KR_JWT_EKEY, "kid %s: sign/verify self-test failed", kid);
        }
    }

    size_t at = 0;
    while (at < ks->n && strcmp(ks->keys[at].kid, kid) < 0)
        at++;
    memmove(&ks->keys[at + 1], &ks->keys[at], (ks->n - at) * sizeof(ks->keys[0]));
    ks->keys[at] = k;
    ks->n++;
    return KR_JWT_OK;
}

static int read_small_file(const char *path, char **out, size_t *outlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > KEY_FILE_MAX) {
        close(fd);
        return -1;
    }
    char *buf = xmalloc(KEY_FILE_MAX + 1);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, KEY_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || (r > 0 && n + (size_t)r > KEY_FILE_MAX)) {
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    *out = buf;
    *outlen = n;
    return 0;
}

int kr_jwt_keyset_load_dir(kr_jwt_keyset *ks, const char *dir, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!ks || !dir)
        return set_err(err, errlen, KR_JWT_EINVAL, "NULL argument");
    DIR *d = opendir(dir);
    if (!d)
        return set_err(err, errlen, KR_JWT_EIO, "cannot open %s: %s", dir, strerror(errno));
    int rc = KR_JWT_OK;
    size_t added = 0;
    struct dirent *de;
    while (rc == KR_JWT_OK && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        size_t nlen = strlen(name);
        if (name[0] == '.' || nlen <= 4 || strcmp(name + nlen - 4, ".pem") != 0)
            continue;
        char kid[KR_JWT_MAX_KID + 1];
        if (!kid_valid(name, nlen - 4)) {
            rc = set_err(err, errlen, KR_JWT_EINVAL, "%s: file name is not <kid>.pem with a valid kid", name);
            break;
        }
        memcpy(kid, name, nlen - 4);
        kid[nlen - 4] = '\0';
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
            rc = set_err(err, errlen, KR_JWT_EIO, "%s: path too long", name);
            break;
        }
        char *pem;
        size_t len;
        if (read_small_file(path, &pem, &len) != 0) {
            rc = set_err(err, errlen, KR_JWT_EIO, "%s: not a readable regular file of at most %d bytes", path, KEY_FILE_MAX);
            break;
        }
        rc = kr_jwt_keyset_add_pem(ks, kid, pem, len, err, errlen);
        OPENSSL_cleanse(pem, len);
        free(pem);
        if (rc == KR_JWT_OK)
            added++;
    }
    closedir(d);
    if (rc == KR_JWT_OK && added == 0)
        rc = set_err(err, errlen, KR_JWT_ENOKEY, "no <kid>.pem file in %s", dir);
    return rc;
}

int kr_jwt_keyset_set_active(kr_jwt_keyset *ks, const char *kid)
{
    if (!ks || !kid)
        return KR_JWT_EINVAL;
    const struct kr_jwt_key *k = find_key(ks, kid);
    if (!k)
        return KR_JWT_EKID;
    if (!k->has_private)
        return KR_JWT_ENOKEY;
    snprintf(ks->active, sizeof(ks->active), "%s", kid);
    return KR_JWT_OK;
}

static char *bn_b64u(const BIGNUM *bn, int pad)
{
    unsigned char buf[SIG_MAX];
    int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    if (n < 0)
        abort();
    char *out = xmalloc(b64u_len((size_t)n) + 1);
    b64u_encode(out, buf, (size_t)n);
    return out;
}

static json_t *key_jwk(const struct kr_jwt_key *k)
{
    const char *na = k->alg == ALG_ES256 ? OSSL_PKEY_PARAM_EC_PUB_X : OSSL_PKEY_PARAM_RSA_N;
    const char *nb = k->alg == ALG_ES256 ? OSSL_PKEY_PARAM_EC_PUB_Y : OSSL_PKEY_PARAM_RSA_E;
    BIGNUM *a = NULL, *b = NULL;
    if (EVP_PKEY_get_bn_param(k->pkey, na, &a) != 1 || EVP_PKEY_get_bn_param(k->pkey, nb, &b) != 1)
        abort();
    char *sa = bn_b64u(a, k->alg == ALG_ES256 ? 32 : 0);
    char *sb = bn_b64u(b, k->alg == ALG_ES256 ? 32 : 0);
    json_t *jwk;
    if (k->alg == ALG_ES256)
        jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "x", sa, "y", sb, "kid", k->kid, "alg",
                        alg_names[k->alg], "use", "sig");
    else
        jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "n", sa, "e", sb, "kid", k->kid, "alg", alg_names[k->alg],
                        "use", "sig");
    if (!jwk)
        abort();
    free(sa);
    free(sb);
    BN_free(a);
    BN_free(b);
    return jwk;
}

json_t *kr_jwt_keyset_jwks(const kr_jwt_keyset *ks)
{
    json_t *keys = json_array();
    if (!keys)
        abort();
    for (size_t i = 0; ks && i < ks->n; i++)
        if (json_array_append_new(keys, key_jwk(&ks->keys[i])) != 0)
            abort();
    json_t *set = json_pack("{s:o}", "keys", keys);
    if (!set)
        abort();
    return set;
}

/* Writes `pk` (which it frees) as an unencrypted PKCS#8 PEM string. */
static int private_pem(EVP_PKEY *pk, char **pem_out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        abort();
    int rc = KR_JWT_EKEY;
    if (pk && PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL) == 1) {
        char *data = NULL;
        long n = BIO_get_mem_data(bio, &data);
        if (n > 0 && data) {
            *pem_out = xmalloc((size_t)n + 1);
            memcpy(*pem_out, data, (size_t)n);
            (*pem_out)[n] = '\0';
            OPENSSL_cleanse(data, (size_t)n);
            rc = KR_JWT_OK;
        }
    }
    BIO_free(bio);
    EVP_PKEY_free(pk);
    ERR_clear_error();
    return rc;
}

int kr_jwt_generate_es256_pem(char **pem_out)
{
    if (!pem_out)
        return KR_JWT_EINVAL;
    *pem_out = NULL;
    return private_pem(EVP_EC_gen("P-256"), pem_out);
}

int kr_jwt_generate_rs256_pem(char **pem_out)
{
    if (!pem_out)
        return KR_JWT_EINVAL;
    *pem_out = NULL;
    return private_pem(EVP_RSA_gen(2048), pem_out);
}

bool kr_jwt_keyset_can_sign(const kr_jwt_keyset *ks, const char *alg)
{
    if (!ks || !alg)
        return false;
    for (int a = ALG_ES256; a <= ALG_RS256; a++)
        if (strcmp(alg, alg_names[a]) == 0)
            return greatest_private(ks, a) != NULL;
    return false;
}

/* ---------------------------------------------------------------- claims */

static const char *const named_claims[] = {"iss", "sub", "aud", "jti", "scope", "sid", "client_id", "exp", "iat", "nbf"};

void kr_jwt_claims_clear(kr_jwt_claims *c)
{
    if (!c)
        return;
    free(c->iss);
    free(c->sub);
    free(c->aud);
    free(c->jti);
    free(c->scope);
    free(c->sid);
    free(c->client_id);
    json_decref(c->extra);
    memset(c, 0, sizeof(*c));
}

static void claims_copy(kr_jwt_claims *dst, const kr_jwt_claims *src)
{
    dst->iss = xstrdup(src->iss);
    dst->sub = xstrdup(src->sub);
    dst->aud = xstrdup(src->aud);
    dst->jti = xstrdup(src->jti);
    dst->scope = xstrdup(src->scope);
    dst->sid = xstrdup(src->sid);
    dst->client_id = xstrdup(src->client_id);
    dst->exp = src->exp;
    dst->iat = src->iat;
    dst->nbf = src->nbf;
    dst->extra = NULL;
    if (src->extra && !(dst->extra = json_deep_copy(src->extra)))
        abort();
}

static int add_str_grant(jwt_t *j, const char *name, const char *val)
{
    return val ? jwt_add_grant(j, name, val) : 0;
}

static int add_int_grant(jwt_t *j, const char *name, int64_t val)
{
    return val ? jwt_add_grant_int(j, name, (long)val) : 0;
}

/* libjwt builds the header and the claims set; the signature is ours. libjwt
 * 1.10 can only sign through jwt_encode_str, which parses the PEM key again
 * on every call, and with JWT_ALG_NONE it rewrites the header's alg to "none",
 * so the two JSON texts are taken with jwt_get_headers_json and
 * jwt_get_grants_json instead. */
static int build_json(const struct kr_jwt_key *k, const kr_jwt_claims *c, char **hdr, char **payload)
{
    jwt_t *j = NULL;
    if (jwt_new(&j) != 0)
        abort();
    int rc = jwt_add_header(j, "alg", alg_names[k->alg]);
    rc = rc ? rc : jwt_add_header(j, "kid", k->kid);
    rc = rc ? rc : jwt_add_header(j, "typ", "JWT");
    if (!rc && c->extra) {
        char *extra = json_dumps(c->extra, JSON_COMPACT);
        if (!extra)
            abort();
        rc = jwt_add_grants_json(j, extra);
        free(extra);
    }
    rc = rc ? rc : add_str_grant(j, "iss", c->iss);
    rc = rc ? rc : add_str_grant(j, "sub", c->sub);
    rc = rc ? rc : add_str_grant(j, "aud", c->aud);
    rc = rc ? rc : add_str_grant(j, "jti", c->jti);
    rc = rc ? rc : add_str_grant(j, "scope", c->scope);
    rc = rc ? rc : add_str_grant(j, "sid", c->sid);
    rc = rc ? rc : add_str_grant(j, "client_id", c->client_id);
    rc = rc ? rc : add_int_grant(j, "exp", c->exp);
    rc = rc ? rc : add_int_grant(j, "iat", c->iat ? c->iat : (int64_t)time(NULL));
    rc = rc ? rc : add_int_grant(j, "nbf", c->nbf);
    if (rc == ENOMEM)
        abort();
    *hdr = rc ? NULL : jwt_get_headers_json(j, NULL);
    *payload = rc ? NULL : jwt_get_grants_json(j, NULL);
    jwt_free(j);
    if (rc)
        return KR_JWT_EINVAL;
    if (!*hdr || !*payload)
        abort();
    return KR_JWT_OK;
}

static const struct kr_jwt_key *signing_key(const kr_jwt_keyset *ks, const char *alg)
{
    const struct kr_jwt_key *k = active_key(ks);
    if (!alg || (k && strcmp(alg_names[k->alg], alg) == 0))
        return k;
    return greatest_private(ks, strcmp(alg, alg_names[ALG_ES256]) == 0 ? ALG_ES256 : ALG_RS256);
}

int kr_jwt_sign(const kr_jwt_keyset *ks, const kr_jwt_claims *c, char **token_out)
{
    return kr_jwt_sign_alg(ks, NULL, c, token_out);
}

int kr_jwt_sign_alg(const kr_jwt_keyset *ks, const char *alg, const kr_jwt_claims *c, char **token_out)
{
    if (!token_out)
        return KR_JWT_EINVAL;
    *token_out = NULL;
    if (!ks || !c || c->exp <= 0 || c->iat < 0 || c->nbf < 0)
        return KR_JWT_EINVAL;
    if (c->extra) {
        if (!json_is_object(c->extra))
            return KR_JWT_EINVAL;
        for (size_t i = 0; i < sizeof(named_claims) / sizeof(named_claims[0]); i++)
            if (json_object_get(c->extra, named_claims[i]))
                return KR_JWT_EINVAL;
    }
    if (alg && strcmp(alg, alg_names[ALG_ES256]) != 0 && strcmp(alg, alg_names[ALG_RS256]) != 0)
        return KR_JWT_EALG;
    const struct kr_jwt_key *k = signing_key(ks, alg);
    if (!k)
        return KR_JWT_ENOKEY;

    char *hdr, *payload;
    int rc = build_json(k, c, &hdr, &payload);
    if (rc)
        return rc;
    size_t hl = strlen(hdr), pl = strlen(payload);
    size_t cap = b64u_len(hl) + 1 + b64u_len(pl) + 1 + b64u_len(SIG_MAX) + 1;
    char *tok = xmalloc(cap);
    size_t n = b64u_encode(tok, (const unsigned char *)hdr, hl);
    tok[n++] = '.';
    n += b64u_encode(tok + n, (const unsigned char *)payload, pl);
    free(hdr);
    free(payload);

    unsigned char sig[SIG_MAX];
    size_t siglen;
    if (!key_sign(k, (const unsigned char *)tok, n, sig, &siglen)) {
        free(tok);
        return KR_JWT_EKEY;
    }
    tok[n++] = '.';
    n += b64u_encode(tok + n, sig, siglen);
    if (n > KR_JWT_MAX_TOKEN) {
        free(tok);
        return KR_JWT_EINVAL;
    }
    *token_out = tok;
    return KR_JWT_OK;
}

/* -------------------------------------------------------------- verify */

/* Decodes one base64url part into a JSON object. */
static json_t *decode_part(const char *s, size_t n)
{
    unsigned char buf[KR_JWT_MAX_TOKEN / 4 * 3 + 3];
    size_t len;
    if (!b64u_decode(buf, &len, s, n))
        return NULL;
    json_t *obj = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
    if (obj && !json_is_object(obj)) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* Takes a string claim out of `payload`. Strings cannot hold a NUL that C
 * code would cut them at: json_loadb refuses "\u0000" unless given
 * JSON_ALLOW_NUL. */
static int take_str(json_t *payload, const char *name, char **out)
{
    json_t *v = json_object_get(payload, name);
    if (!v)
        return KR_JWT_OK;
    if (!json_is_string(v))
        return KR_JWT_ECLAIMS;
    *out = xstrdup(json_string_value(v));
    json_object_del(payload, name);
    return KR_JWT_OK;
}

static int take_time(json_t *payload, const char *name, int64_t *out)
{
    json_t *v = json_object_get(payload, name);
    if (!v)
        return KR_JWT_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return KR_JWT_ECLAIMS;
    *out = json_integer_value(v);
    json_object_del(payload, name);
    return KR_JWT_OK;
}

/* Reads the claims of a verified payload into `out`; `aud_all` receives the
 * aud value as sent (string or array of strings), or NULL.
 *
 * The claims are read with jansson, not with libjwt's jwt_decode (which, with
 * a NULL key, does parse a signed token without checking it): libjwt 1.10's
 * jwt_get_grant_int returns 0 with errno 0 for `"exp": "123"`, and
 * jwt_get_grant returns NULL with errno 0 for a non-string sub, so a claim of
 * the wrong type cannot be told from a missing or zero one; array audiences
 * and the extra claims would only come back as JSON text to parse again. */
static int read_claims(json_t *payload, kr_jwt_claims *out, json_t **aud_all)
{
    int rc = take_str(payload, "iss", &out->iss);
    rc = rc ? rc : take_str(payload, "sub", &out->sub);
    rc = rc ? rc : take_str(payload, "jti", &out->jti);
    rc = rc ? rc : take_str(payload, "scope", &out->scope);
    rc = rc ? rc : take_str(payload, "sid", &out->sid);
    rc = rc ? rc : take_str(payload, "client_id", &out->client_id);
    rc = rc ? rc : take_time(payload, "exp", &out->exp);
    rc = rc ? rc : take_time(payload, "iat", &out->iat);
    rc = rc ? rc : take_time(payload, "nbf", &out->nbf);
    if (!rc && out->exp == 0)
        rc = KR_JWT_ECLAIMS;
    json_t *aud = json_object_get(payload, "aud");
    if (!rc && aud) {
        if (json_is_array(aud)) {
            size_t i;
            json_t *v;
            if (json_array_size(aud) == 0)
                rc = KR_JWT_ECLAIMS;
            json_array_foreach(aud, i, v)
            {
                if (!json_is_string(v))
                    rc = KR_JWT_ECLAIMS;
            }
            if (!rc)
                out->aud = xstrdup(json_string_value(json_array_get(aud, 0)));
        } else if (json_is_string(aud)) {
            out->aud = xstrdup(json_string_value(aud));
        } else {
            rc = KR_JWT_ECLAIMS;
        }
        if (!rc) {
            *aud_all = json_incref(aud);
            json_object_del(payload, "aud");
        }
    }
    if (!rc && json_object_size(payload) > 0)
        out->extra = json_incref(payload);
    return rc;
}

/* Checks signature and format and fills `out`; times, issuer and audience
 * are check_claims' job. */
static int verify_token(const kr_jwt_keyset *ks, const char *token, size_t len, kr_jwt_claims *out, json_t **aud_all)
{
    if (len > KR_JWT_MAX_TOKEN)
        return KR_JWT_EMALFORMED;
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return KR_JWT_EMALFORMED;

    json_t *hdr = decode_part(token, (size_t)(dot1 - token));
    if (!hdr)
        return KR_JWT_EMALFORMED;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    const char *kid = json_string_value(json_object_get(hdr, "kid"));
    int rc = KR_JWT_OK;
    const struct kr_jwt_key *k = NULL;
    if (!alg || json_object_get(hdr, "crit"))
        rc = KR_JWT_EMALFORMED;
    else if (strcmp(alg, alg_names[ALG_ES256]) != 0 && strcmp(alg, alg_names[ALG_RS256]) != 0)
        rc = KR_JWT_EALG; /* NOLINT(bugprone-branch-clone): none, HS256 and the rest are never accepted */
    else if (!kid || !(k = find_key(ks, kid)))
        rc = KR_JWT_EKID;
    else if (strcmp(alg, alg_names[k->alg]) != 0)
        rc = KR_JWT_EALG; /* a different reason, same answer */
    json_decref(hdr);
    if (rc)
        return rc;

    const char *s = dot2 + 1;
    size_t slen = len - (size_t)(s - token);
    if (slen > b64u_len(SIG_MAX))
        return KR_JWT_ESIGNATURE;
    unsigned char sig[SIG_MAX + 2];
    size_t siglen;
    if (!b64u_decode(sig, &siglen, s, slen))
        return KR_JWT_EMALFORMED;
    if (!key_verify(k, (const unsigned char *)token, (size_t)(dot2 - token), sig, siglen))
        return KR_JWT_ESIGNATURE;

    json_t *payload = decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (!payload)
        return KR_JWT_EMALFORMED;
    rc = read_claims(payload, out, aud_all);
    json_decref(payload);
    return rc;
}

static int64_t opts_now(const kr_jwt_verify_opts *opts)
{
    return opts && opts->now ? opts->now : (int64_t)time(NULL);
}

/* Leeway above a day is a configuration mistake; bounding it also keeps
 * now + leeway far from overflow. */
static int64_t opts_leeway(const kr_jwt_verify_opts *opts)
{
    if (!opts || opts->leeway <= 0)
        return 0;
    return opts->leeway > 86400 ? 86400 : opts->leeway;
}

static bool aud_contains(json_t *aud_all, const char *want)
{
    if (json_is_string(aud_all))
        return strcmp(json_string_value(aud_all), want) == 0;
    size_t i;
    json_t *v;
    json_array_foreach(aud_all, i, v)
    {
        if (strcmp(json_string_value(v), want) == 0)
            return true;
    }
    return false;
}

static int check_claims(const kr_jwt_claims *c, json_t *aud_all, const kr_jwt_verify_opts *opts)
{
    int64_t now = opts_now(opts), leeway = opts_leeway(opts);
    if (c->exp <= now - leeway && !(opts && opts->allow_expired))
        return KR_JWT_EEXPIRED;
    if (c->nbf && now + leeway < c->nbf)
        return KR_JWT_ENOTYET;
    if (opts && opts->issuer && (!c->iss || strcmp(c->iss, opts->issuer) != 0))
        return KR_JWT_EISSUER;
    if (opts && opts->audience && (!aud_all || !aud_contains(aud_all, opts->audience)))
        return KR_JWT_EAUDIENCE;
    return KR_JWT_OK;
}

/* When the expected audience was found in an array, report that one. */
static void pick_aud(kr_jwt_claims *out, json_t *aud_all, const kr_jwt_verify_opts *opts)
{
    if (opts && opts->audience && json_is_array(aud_all) && strcmp(out->aud, opts->audience) != 0) {
        free(out->aud);
        out->aud = xstrdup(opts->audience);
    }
}

int kr_jwt_verify(const kr_jwt_keyset *ks, const char *token, size_t len, const kr_jwt_verify_opts *opts, kr_jwt_claims *out)
{
    if (!out)
        return KR_JWT_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!ks || !token)
        return KR_JWT_EINVAL;
    json_t *aud_all = NULL;
    int rc = verify_token(ks, token, len, out, &aud_all);
    rc = rc ? rc : check_claims(out, aud_all, opts);
    if (rc)
        kr_jwt_claims_clear(out);
    else
        pick_aud(out, aud_all, opts);
    json_decref(aud_all);
    return rc;
}

/* ----------------------------------------------------------------- cache */

/* Entries live in a fixed array and are chained into buckets by index. CLOCK
 * approximates LRU with one bit per entry and no list to update on a hit. */
struct cache_entry {
    char *token;
    size_t len;
    uint64_t hash;
    uint64_t serial; /* of the key set that verified it */
    int32_t next;    /* next entry in the bucket, -1 at the end */
    bool used;
    bool referenced;
    kr_jwt_claims claims;
    json_t *aud_all;
};

/* A revoked jti ("j:<jti>") or sid ("s:<sid>"), remembered until `until`.
 * Open addressing with linear probing; rebuilt, not deleted from. */
struct deny_entry {
    char *id;
    uint64_t hash;
    int64_t until;
};

struct kr_jwt_cache {
    uint64_t key[2];
    size_t capacity;
    struct cache_entry *entries;
    int32_t *buckets;
    size_t bucket_mask;
    int32_t *free_list;
    size_t nfree;
    size_t hand;
    struct deny_entry *deny;
    size_t deny_mask;
    size_t ndeny;
    kr_jwt_cache_stats stats;
};

static size_t pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

kr_jwt_cache *kr_jwt_cache_new(size_t capacity)
{
    if (capacity == 0 || capacity > CACHE_MAX_CAPACITY)
        return NULL;
    kr_jwt_cache *c = xcalloc(1, sizeof(*c));
    kr_random_bytes(c->key, sizeof(c->key));
    c->capacity = capacity;
    c->entries = xcalloc(capacity, sizeof(c->entries[0]));
    size_t nb = pow2_at_least(capacity * 2);
    c->buckets = xmalloc(nb * sizeof(c->buckets[0]));
    for (size_t i = 0; i < nb; i++)
        c->buckets[i] = -1;
    c->bucket_mask = nb - 1;
    c->free_list = xmalloc(capacity * sizeof(c->free_list[0]));
    for (size_t i = 0; i < capacity; i++)
        c->free_list[i] = (int32_t)(capacity - 1 - i);
    c->nfree = capacity;
    c->deny = xcalloc(nb, sizeof(c->deny[0]));
    c->deny_mask = nb - 1;
    c->stats.capacity = capacity;
    return c;
}

static void entry_release(struct cache_entry *e)
{
    free(e->token);
    kr_jwt_claims_clear(&e->claims);
    json_decref(e->aud_all);
    memset(e, 0, sizeof(*e));
    e->next = -1;
}

void kr_jwt_cache_free(kr_jwt_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->capacity; i++)
        if (c->entries[i].used)
            entry_release(&c->entries[i]);
    for (size_t i = 0; i <= c->deny_mask; i++)
        free(c->deny[i].id);
    free(c->entries);
    free(c->buckets);
    free(c->free_list);
    free(c->deny);
    free(c);
}

static void cache_remove(kr_jwt_cache *c, int32_t idx)
{
    struct cache_entry *e = &c->entries[idx];
    int32_t *link = &c->buckets[e->hash & c->bucket_mask];
    while (*link != idx)
        link = &c->entries[*link].next;
    *link = e->next;
    entry_release(e);
    c->free_list[c->nfree++] = idx;
    c->stats.size--;
}

static int32_t cache_find(kr_jwt_cache *c, const char *token, size_t len, uint64_t hash)
{
    for (int32_t i = c->buckets[hash & c->bucket_mask]; i >= 0; i = c->entries[i].next) {
        const struct cache_entry *e = &c->entries[i];
        if (e->hash == hash && e->len == len && memcmp(e->token, token, len) == 0)
            return i;
    }
    return -1;
}

static int32_t cache_slot(kr_jwt_cache *c)
{
    if (c->nfree > 0)
        return c->free_list[--c->nfree];
    for (;;) {
        size_t i = c->hand;
        c->hand = (c->hand + 1) % c->capacity;
        if (c->entries[i].referenced) {
            c->entries[i].referenced = false;
            continue;
        }
        cache_remove(c, (int32_t)i);
        c->stats.evictions++;
        return c->free_list[--c->nfree];
    }
}

static void cache_insert(kr_jwt_cache *c, const char *token, size_t len, uint64_t hash, uint64_t serial,
                         const kr_jwt_claims *claims, json_t *aud_all)
{
    int32_t idx = cache_slot(c);
    struct cache_entry *e = &c->entries[idx];
    e->token = xmalloc(len);
    memcpy(e->token, token, len);
    e->len = len;
    e->hash = hash;
    e->serial = serial;
    e->used = true;
    e->referenced = false;
    claims_copy(&e->claims, claims);
    e->aud_all = json_incref(aud_all);
    size_t b = hash & c->bucket_mask;
    e->next = c->buckets[b];
    c->buckets[b] = idx;
    c->stats.size++;
}

static struct deny_entry *deny_find(const kr_jwt_cache *c, const char *id, uint64_t hash)
{
    for (size_t i = hash & c->deny_mask;; i = (i + 1) & c->deny_mask) {
        struct deny_entry *d = &c->deny[i];
        if (!d->id || (d->hash == hash && strcmp(d->id, id) == 0))
            return d;
    }
}

static bool deny_has(const kr_jwt_cache *c, char prefix, const char *value, int64_t now)
{
    if (!value || c->ndeny == 0)
        return false;
    size_t n = strlen(value);
    char stackbuf[128];
    char *id = n + 3 <= sizeof(stackbuf) ? stackbuf : xmalloc(n + 3);
    id[0] = prefix;
    id[1] = ':';
    memcpy(id + 2, value, n + 1);
    const struct deny_entry *d = deny_find(c, id, siphash24(c->key, id, n + 2));
    bool denied = d->id && d->until > now;
    if (id != stackbuf)
        free(id);
    return denied;
}

/* Forgets revocations whose tokens have all expired, by rebuilding. */
static void deny_purge(kr_jwt_cache *c, int64_t now)
{
    size_t size = c->deny_mask + 1;
    struct deny_entry *old = c->deny;
    c->deny = xcalloc(size, sizeof(c->deny[0]));
    c->ndeny = 0;
    for (size_t i = 0; i < size; i++) {
        if (!old[i].id)
            continue;
        if (old[i].until <= now) {
            free(old[i].id);
            continue;
        }
        *deny_find(c, old[i].id, old[i].hash) = old[i];
        c->ndeny++;
    }
    free(old);
}

static int cache_revoke(kr_jwt_cache *c, char prefix, const char *value, int64_t until)
{
    if (!c || !value)
        return KR_JWT_EINVAL;
    for (size_t i = 0; i < c->capacity; i++) {
        struct cache_entry *e = &c->entries[i];
        const char *v = prefix == 'j' ? e->claims.jti : e->claims.sid;
        if (e->used && v && strcmp(v, value) == 0) {
            cache_remove(c, (int32_t)i);
            c->stats.revoked++;
        }
    }
    int64_t now = (int64_t)time(NULL);
    if (until <= now)
        return KR_JWT_OK;
    size_t n = strlen(value);
    char *id = xmalloc(n + 3);
    id[0] = prefix;
    id[1] = ':';
    memcpy(id + 2, value, n + 1);
    uint64_t hash = siphash24(c->key, id, n + 2);
    struct deny_entry *d = deny_find(c, id, hash);
    if (d->id) {
        free(id);
        if (until > d->until)
            d->until = until;
        return KR_JWT_OK;
    }
    if (c->ndeny >= c->capacity) {
        deny_purge(c, now);
        if (c->ndeny >= c->capacity) {
            free(id);
            return KR_JWT_EFULL;
        }
        d = deny_find(c, id, hash);
    }
    *d = (struct deny_entry){.id = id, .hash = hash, .until = until};
    c->ndeny++;
    return KR_JWT_OK;
}

int kr_jwt_cache_revoke_jti(kr_jwt_cache *c, const char *jti, int64_t until)
{
    return cache_revoke(c, 'j', jti, until);
}

int kr_jwt_cache_revoke_sid(kr_jwt_cache *c, const char *sid, int64_t until)
{
    return cache_revoke(c, 's', sid, until);
}

int kr_jwt_cache_verify(kr_jwt_cache *c, const kr_jwt_keyset *ks, const char *token, size_t len, const kr_jwt_verify_opts *opts,
                        kr_jwt_claims *out)
{
    if (!out)
        return KR_JWT_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!c || !ks || !token)
        return KR_JWT_EINVAL;
    if (len > KR_JWT_MAX_TOKEN)
        return KR_JWT_EMALFORMED;
    int64_t now = opts_now(opts);
    uint64_t hash = siphash24(c->key, token, len);
    int32_t idx = cache_find(c, token, len, hash);
    if (idx >= 0 && c->entries[idx].serial != ks->serial) {
        cache_remove(c, idx);
        idx = -1;
    }
    if (idx >= 0) {
        struct cache_entry *e = &c->entries[idx];
        c->stats.hits++;
        if (deny_has(c, 'j', e->claims.jti, now) || deny_has(c, 's', e->claims.sid, now))
            return KR_JWT_EREVOKED;
        int rc = check_claims(&e->claims, e->aud_all, opts);
        if (rc == KR_JWT_EEXPIRED) {
            cache_remove(c, idx);
            c->stats.expired++;
        }
        if (rc)
            return rc;
        e->referenced = true;
        claims_copy(out, &e->claims);
        pick_aud(out, e->aud_all, opts);
        return KR_JWT_OK;
    }

    c->stats.misses++;
    json_t *aud_all = NULL;
    int rc = verify_token(ks, token, len, out, &aud_all);
    if (!rc && (deny_has(c, 'j', out->jti, now) || deny_has(c, 's', out->sid, now)))
        rc = KR_JWT_EREVOKED;
    rc = rc ? rc : check_claims(out, aud_all, opts);
    if (!rc) {
        cache_insert(c, token, len, hash, ks->serial, out, aud_all);
        pick_aud(out, aud_all, opts);
    } else {
        kr_jwt_claims_clear(out);
    }
    json_decref(aud_all);
    return rc;
}

void kr_jwt_cache_stats_get(const kr_jwt_cache *c, kr_jwt_cache_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    if (c) {
        *out = c->stats;
        out->denied = c->ndeny;
    }
}
