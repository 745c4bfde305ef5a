/*
 * gw_client_cache — a short memory of successful client authentications,
 * one per event loop (not thread-safe), so that repeated token requests of
 * the same client need no AuthenticateClient call.
 *
 * An entry maps a client id and the SHA-256 of the secret that was presented
 * to the client record identity answered with, until `ttl_ms` after it was
 * stored. Only successes are ever stored (the caller's duty); a lookup with
 * another secret misses (the hashes are compared in constant time), and one
 * entry per client id is kept, so a later success with another secret
 * replaces it. When full, the entry stored longest ago gives way. The
 * record may be as old as the TTL: a client disabled or changed in identity
 * keeps working here as it was for at most that long.
 */
#ifndef GW_CLIENT_CACHE_H
#define GW_CLIENT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "identity.pb-c.h"

typedef struct gw_client_cache gw_client_cache;

/* A cache of at most `capacity` entries (at least 1) that keeps each for
 * `ttl_ms`; aborts on out-of-memory. */
gw_client_cache *gw_client_cache_new(size_t capacity, int64_t ttl_ms);

/* Frees the cache and every stored record. NULL is ignored. */
void gw_client_cache_free(gw_client_cache *cache);

/* The stored record of `client_id` when `secret` is the secret it was
 * stored with and the entry has not expired at `now_ms`; NULL otherwise.
 * The record stays owned by the cache and valid until the next
 * gw_client_cache_put or gw_client_cache_free. */
const Kreide__Identity__OidcClient *gw_client_cache_get(gw_client_cache *cache, const char *client_id, const char *secret,
                                                        int64_t now_ms);

/* Stores the record identity returned for a successful authentication of
 * `client_id` with `secret`: `packed`, `len` bytes of a packed OidcClient,
 * is unpacked into a copy of the cache's own. Does nothing when the bytes
 * do not unpack or name another client. */
void gw_client_cache_put(gw_client_cache *cache, const char *client_id, const char *secret, const uint8_t *packed, size_t len,
                         int64_t now_ms);

/* How many entries are stored, expired ones included (for tests). */
size_t gw_client_cache_size(const gw_client_cache *cache);

#endif
