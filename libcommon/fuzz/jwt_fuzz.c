/*
 * libFuzzer driver for bearer tokens: every byte string a client can put
 * after "Authorization: Bearer" goes through kr_jwt_verify and the
 * verified-token cache. A token is signed once at start, so inputs that
 * mutate a valid token reach the claim checks too; nothing may crash, leak,
 * or verify unless it is exactly the signed token.
 *
 *   make fuzz && build/fuzz/jwt_fuzz -max_total_time=60
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kr_jwt.h"

static kr_jwt_keyset *keys;
static kr_jwt_cache *cache;
static char *valid;

static void setup(void)
{
    char *pem = NULL;
    keys = kr_jwt_keyset_new();
    if (kr_jwt_generate_es256_pem(&pem) != 0 || kr_jwt_keyset_add_pem(keys, "f1", pem, strlen(pem), NULL, 0) != 0)
        abort();
    free(pem);
    cache = kr_jwt_cache_new(64);
    kr_jwt_claims c = {.iss = "https://kreide.example", .sub = "0190b3c4-7d2e-7a11-9f00-0123456789ab", .aud = "kreide",
                       .exp = (int64_t)time(NULL) + 3600};
    if (kr_jwt_sign(keys, &c, &valid) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (keys == NULL)
        setup();
    kr_jwt_verify_opts opts = {.issuer = "https://kreide.example", .audience = "kreide", .leeway = 30};
    kr_jwt_claims out;
    int rv = kr_jwt_verify(keys, (const char *)data, size, &opts, &out);
    bool is_valid = size == strlen(valid) && memcmp(data, valid, size) == 0;
    if (rv == KR_JWT_OK) {
        if (!is_valid)
            abort(); /* a token we never signed verified */
        kr_jwt_claims_clear(&out);
    }
    rv = kr_jwt_cache_verify(cache, keys, (const char *)data, size, &opts, &out);
    if (rv == KR_JWT_OK) {
        if (!is_valid)
            abort();
        kr_jwt_claims_clear(&out);
    }
    return 0;
}
