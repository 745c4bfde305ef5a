/* TOTP (RFC 6238) over HOTP (RFC 4226), base32 (RFC 4648), otpauth URIs. */
#include "totp.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "kr_id.h"

void ident_totp_secret_new(uint8_t out[IDENT_TOTP_SECRET_LEN])
{
    kr_random_bytes(out, IDENT_TOTP_SECRET_LEN);
}

int ident_hotp(const uint8_t *key, size_t keylen, uint64_t counter, unsigned digits, uint32_t *out)
{
    static const uint32_t pow10[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
    if (key == NULL || keylen == 0 || keylen > 1024 || digits < 6 || digits > 8 || out == NULL)
        return -1;
    uint8_t msg[8];
    for (int i = 7; i >= 0; i--) {
        msg[i] = (uint8_t)(counter & 0xff);
        counter >>= 8;
    }
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (HMAC(EVP_sha1(), key, (int)keylen, msg, sizeof(msg), mac, &maclen) == NULL || maclen != 20)
        return -1;
    /* dynamic truncation, RFC 4226 section 5.3 */
    unsigned off = mac[19] & 0x0f;
    uint32_t bin = ((uint32_t)(mac[off] & 0x7f) << 24) | ((uint32_t)mac[off + 1] << 16) | ((uint32_t)mac[off + 2] << 8) |
                   (uint32_t)mac[off + 3];
    *out = bin % pow10[digits];
    return 0;
}

int64_t ident_totp_step(int64_t unix_time)
{
    return unix_time < 0 ? 0 : unix_time / IDENT_TOTP_STEP_S;
}

ident_totp_result ident_totp_verify(const uint8_t *key, size_t keylen, const char *typed, int64_t now, int64_t last_step,
                                    int64_t *matched_step)
{
    if (typed == NULL)
        return IDENT_TOTP_MALFORMED;
    uint32_t value = 0;
    int n = 0;
    for (const char *p = typed; *p != '\0'; p++) {
        if (*p == ' ')
            continue;
        if (*p < '0' || *p > '9' || n == IDENT_TOTP_DIGITS)
            return IDENT_TOTP_MALFORMED;
        value = value * 10 + (uint32_t)(*p - '0');
        n++;
    }
    if (n != IDENT_TOTP_DIGITS)
        return IDENT_TOTP_MALFORMED;

    int64_t step = ident_totp_step(now);
    int64_t fresh = -1, stale = -1;
    for (int64_t s = step - IDENT_TOTP_WINDOW; s <= step + IDENT_TOTP_WINDOW; s++) {
        uint32_t want;
        if (s < 0 || ident_hotp(key, keylen, (uint64_t)s, IDENT_TOTP_DIGITS, &want) != 0)
            continue;
        /* the loop never stops at the first match, so the time taken does
         * not say which step matched */
        if (want == value) {
            if (last_step == IDENT_TOTP_NEVER || s > last_step)
                fresh = s;
            else
                stale = s;
        }
    }
    if (fresh >= 0) {
        if (matched_step != NULL)
            *matched_step = fresh;
        return IDENT_TOTP_OK;
    }
    return stale >= 0 ? IDENT_TOTP_REPLAYED : IDENT_TOTP_MISMATCH;
}

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

int ident_base32_encode(const uint8_t *in, size_t len, bool pad, char *out, size_t outlen)
{
    size_t groups = (len + 4) / 5;
    size_t need = (pad ? groups * 8 : (len * 8 + 4) / 5) + 1;
    if (out == NULL || outlen < need || (in == NULL && len > 0))
        return -1;
    size_t o = 0;
    uint32_t buf = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        buf = (buf << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = b32[(buf >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[o++] = b32[(buf << (5 - bits)) & 31];
    while (pad && o % 8 != 0)
        out[o++] = '=';
    out[o] = '\0';
    return 0;
}

int ident_base32_decode(const char *in, uint8_t *out, size_t outcap, size_t *outlen)
{
    if (in == NULL || outlen == NULL)
        return -1;
    size_t o = 0, chars = 0;
    uint32_t buf = 0;
    int bits = 0;
    bool padding = false;
    for (const char *p = in; *p != '\0'; p++) {
        char c = *p;
        if (c == ' ')
            continue;
        if (c == '=') {
            padding = true;
            continue;
        }
        if (padding)
            return -1; /* data after padding */
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        const char *at = strchr(b32, c);
        if (at == NULL || c == '\0')
            return -1;
        buf = (buf << 5) | (uint32_t)(at - b32);
        bits += 5;
        chars++;
        if (bits >= 8) {
            if (o == outcap)
                return -1;
            out[o++] = (uint8_t)(buf >> (bits - 8));
            bits -= 8;
        }
        buf &= (1u << bits) - 1;
    }
    /* a final group of 1, 3 or 6 characters cannot come from whole bytes,
     * and the bits left over must be zero */
    size_t rest = chars % 8;
    if (rest == 1 || rest == 3 || rest == 6 || buf != 0)
        return -1;
    *outlen = o;
    return 0;
}

/* Appends `s` percent-encoded (RFC 3986: unreserved characters stay). */
static bool put_escaped(char *out, size_t outlen, size_t *o, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
                     *p == '_' || *p == '~';
        size_t need = plain ? 1 : 3;
        if (*o + need >= outlen)
            return false;
        if (plain) {
            out[(*o)++] = (char)*p;
        } else {
            out[(*o)++] = '%';
            out[(*o)++] = hex[*p >> 4];
            out[(*o)++] = hex[*p & 15];
        }
    }
    return true;
}

static bool put_raw(char *out, size_t outlen, size_t *o, const char *s)
{
    size_t n = strlen(s);
    if (*o + n >= outlen)
        return false;
    memcpy(out + *o, s, n);
    *o += n;
    return true;
}

int ident_totp_uri(const char *issuer, const char *account, const uint8_t *secret, size_t len, char *out, size_t outlen)
{
    if (issuer == NULL || issuer[0] == '\0' || account == NULL || account[0] == '\0' || secret == NULL || len == 0 || len > 64 ||
        out == NULL || outlen == 0)
        return -1;
    char b[104];
    if (ident_base32_encode(secret, len, false, b, sizeof(b)) != 0)
        return -1;
    char tail[64];
    snprintf(tail, sizeof(tail), "&algorithm=SHA1&digits=%d&period=%d", IDENT_TOTP_DIGITS, IDENT_TOTP_STEP_S);
    size_t o = 0;
    bool ok = put_raw(out, outlen, &o, "otpauth://totp/") && put_escaped(out, outlen, &o, issuer) &&
              put_raw(out, outlen, &o, ":") && put_escaped(out, outlen, &o, account) && put_raw(out, outlen, &o, "?secret=") &&
              put_raw(out, outlen, &o, b) && put_raw(out, outlen, &o, "&issuer=") && put_escaped(out, outlen, &o, issuer) &&
              put_raw(out, outlen, &o, tail);
    if (!ok) {
        out[0] = '\0';
        return -1;
    }
    out[o] = '\0';
    return 0;
}
