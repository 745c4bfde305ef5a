#include "client_cache.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *client_id;
    uint64_t id_hash;
    unsigned char secret_sha[SHA256_DIGEST_LENGTH];
    int64_t stored_ms;
    Kreide__Identity__OidcClient *client;
} entry;

struct gw_client_cache {
    entry *v;
    size_t n, cap;
    int64_t ttl_ms;
};

/* FNV-1a: a quick first filter before the string comparison. */
static uint64_t id_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

gw_client_cache *gw_client_cache_new(size_t capacity, int64_t ttl_ms)
{
    gw_client_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    c->cap = capacity > 0 ? capacity : 1;
    c->v = calloc(c->cap, sizeof(*c->v));
    if (c->v == NULL)
        abort();
    c->ttl_ms = ttl_ms;
    return c;
}

static void clear_entry(entry *e)
{
    free(e->client_id);
    if (e->client != NULL)
        kreide__identity__oidc_client__free_unpacked(e->client, NULL);
    memset(e, 0, sizeof(*e));
}

void gw_client_cache_free(gw_client_cache *cache)
{
    if (cache == NULL)
        return;
    for (size_t i = 0; i < cache->n; i++)
        clear_entry(&cache->v[i]);
    free(cache->v);
    free(cache);
}

static entry *find(gw_client_cache *cache, const char *client_id)
{
    uint64_t h = id_hash(client_id);
    for (size_t i = 0; i < cache->n; i++)
        if (cache->v[i].id_hash == h && strcmp(cache->v[i].client_id, client_id) == 0)
            return &cache->v[i];
    return NULL;
}

/* The entry stored longest ago, which makes room when the cache is full;
 * NULL only for an empty cache. */
static entry *oldest_entry(gw_client_cache *cache)
{
    entry *o = NULL;
    for (size_t i = 0; i < cache->n; i++)
        if (o == NULL || cache->v[i].stored_ms < o->stored_ms)
            o = &cache->v[i];
    return o;
}

const Kreide__Identity__OidcClient *gw_client_cache_get(gw_client_cache *cache, const char *client_id, const char *secret,
                                                        int64_t now_ms)
{
    if (cache == NULL || client_id == NULL || secret == NULL)
        return NULL;
    entry *e = find(cache, client_id);
    if (e == NULL || now_ms - e->stored_ms >= cache->ttl_ms || now_ms < e->stored_ms)
        return NULL;
    unsigned char given[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)secret, strlen(secret), given);
    if (CRYPTO_memcmp(given, e->secret_sha, sizeof(given)) != 0)
        return NULL;
    return e->client;
}

void gw_client_cache_put(gw_client_cache *cache, const char *client_id, const char *secret, const uint8_t *packed, size_t len,
                         int64_t now_ms)
{
    if (cache == NULL || client_id == NULL || secret == NULL)
        return;
    Kreide__Identity__OidcClient *cl = kreide__identity__oidc_client__unpack(NULL, len, packed);
    if (cl == NULL)
        return;
    if (cl->client_id == NULL || strcmp(cl->client_id, client_id) != 0) {
        kreide__identity__oidc_client__free_unpacked(cl, NULL);
        return;
    }
    entry *e = find(cache, client_id);
    if (e == NULL && cache->n < cache->cap)
        e = &cache->v[cache->n++];
    if (e == NULL)
        e = oldest_entry(cache);
    if (e == NULL) {
        kreide__identity__oidc_client__free_unpacked(cl, NULL);
        return;
    }
    clear_entry(e);
    e->client_id = strdup(client_id);
    if (e->client_id == NULL)
        abort();
    e->id_hash = id_hash(client_id);
    SHA256((const unsigned char *)secret, strlen(secret), e->secret_sha);
    e->stored_ms = now_ms;
    e->client = cl;
}

size_t gw_client_cache_size(const gw_client_cache *cache)
{
    return cache != NULL ? cache->n : 0;
}
