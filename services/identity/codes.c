/* One-time enrollment and reset codes (see codes.h). */
#include "codes.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "kr_id.h"

_Static_assert(sizeof(IDENT_CODE_ALPHABET) - 1 == IDENT_CODE_ALPHABET_SIZE, "alphabet size");

/* Separates these MACs from any other use of the same secret. */
static const char domain[] = "kreide.identity.code.v1:";

const char *ident_code_verdict_name(ident_code_verdict v)
{
    switch (v) {
    case IDENT_CODE_VALID:
        return "valid";
    case IDENT_CODE_MALFORMED:
        return "malformed";
    case IDENT_CODE_MISMATCH:
        return "mismatch";
    case IDENT_CODE_WRONG_PURPOSE:
        return "wrong_purpose";
    case IDENT_CODE_EXPIRED:
        return "expired";
    case IDENT_CODE_USED:
        return "used";
    }
    return "unknown";
}

void ident_code_generate(ident_code_text *out, ident_code_canon *canon)
{
    /* Rejection sampling: only bytes below the largest multiple of the
     * alphabet's size are used, so `b % size` is uniform. */
    enum { LIMIT = 256 - 256 % IDENT_CODE_ALPHABET_SIZE };
    ident_code_canon c;
    size_t n = 0;
    while (n < IDENT_CODE_CHARS) {
        uint8_t buf[32];
        kr_random_bytes(buf, sizeof(buf));
        for (size_t i = 0; i < sizeof(buf) && n < IDENT_CODE_CHARS; i++) {
            if (buf[i] < LIMIT)
                c.s[n++] = IDENT_CODE_ALPHABET[buf[i] % IDENT_CODE_ALPHABET_SIZE];
        }
    }
    c.s[IDENT_CODE_CHARS] = '\0';
    ident_code_format(&c, out);
    if (canon != NULL)
        *canon = c;
}

void ident_code_format(const ident_code_canon *canon, ident_code_text *out)
{
    size_t o = 0;
    for (size_t i = 0; i < IDENT_CODE_CHARS; i++) {
        if (i > 0 && i % IDENT_CODE_GROUP_LEN == 0)
            out->s[o++] = '-';
        out->s[o++] = canon->s[i];
    }
    out->s[o] = '\0';
}

int ident_code_normalize(const char *typed, ident_code_canon *out)
{
    if (typed == NULL || strlen(typed) > IDENT_CODE_INPUT_MAX)
        return -1;
    size_t n = 0;
    for (const char *p = typed; *p != '\0'; p++) {
        char c = *p;
        if (c == ' ' || c == '-' || c == '.' || c == '_' || c == '\t')
            continue;
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c == '6')
            c = 'G';
        if (strchr(IDENT_CODE_ALPHABET, c) == NULL || c == '\0' || n == IDENT_CODE_CHARS)
            return -1;
        out->s[n++] = c;
    }
    if (n != IDENT_CODE_CHARS)
        return -1;
    out->s[n] = '\0';
    return 0;
}

int ident_code_hash(const uint8_t *pepper, size_t pepper_len, const ident_code_canon *canon, uint8_t out[IDENT_CODE_HASH_LEN])
{
    if (pepper == NULL || pepper_len < IDENT_CODE_PEPPER_MIN || pepper_len > 4096)
        return -1;
    uint8_t msg[sizeof(domain) - 1 + IDENT_CODE_CHARS];
    memcpy(msg, domain, sizeof(domain) - 1);
    memcpy(msg + sizeof(domain) - 1, canon->s, IDENT_CODE_CHARS);
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), pepper, (int)pepper_len, msg, sizeof(msg), out, &len) == NULL || len != IDENT_CODE_HASH_LEN)
        return -1;
    return 0;
}

ident_code_verdict ident_code_check(const ident_code_record *rec, const uint8_t *pepper, size_t pepper_len, const char *typed,
                                    ident_code_purpose purpose, int64_t now)
{
    ident_code_canon canon;
    if (ident_code_normalize(typed, &canon) != 0)
        return IDENT_CODE_MALFORMED;
    uint8_t mac[IDENT_CODE_HASH_LEN];
    if (ident_code_hash(pepper, pepper_len, &canon, mac) != 0)
        return IDENT_CODE_MISMATCH;
    if (CRYPTO_memcmp(mac, rec->hash, IDENT_CODE_HASH_LEN) != 0)
        return IDENT_CODE_MISMATCH;
    if (rec->purpose != purpose)
        return IDENT_CODE_WRONG_PURPOSE;
    if (rec->used_at != 0)
        return IDENT_CODE_USED;
    if (now >= rec->expires_at)
        return IDENT_CODE_EXPIRED;
    return IDENT_CODE_VALID;
}
