/*
 * kr_seal — authenticating RPC envelopes between Kreide daemons.
 *
 * Anyone who can reach a service's socket could send an Envelope claiming any
 * caller. So the sender seals each envelope with an HMAC-SHA256 under an
 * internal key that only the gateway and the services hold, and a service
 * rejects every envelope whose seal does not verify before it looks at the
 * caller or the body.
 *
 * The MAC covers the packed Envelope with `seal.mac` empty (key id and seal
 * time included), so no field can be changed or moved between envelopes. A
 * seal is accepted for a bounded time (KR_SEAL_MAX_AGE_MS) and never after
 * the envelope's own deadline, which bounds replays by someone who can watch
 * the cluster network; TLS between pods (a service mesh) closes that too.
 *
 * Keys rotate by id: the keyring's first key seals, every key verifies, so a
 * new key is rolled out everywhere before it becomes first.
 */
#ifndef KR_SEAL_H
#define KR_SEAL_H

#include <nng/nng.h>
#include <stddef.h>
#include <stdint.h>

#include "common.pb-c.h"

#define KR_SEAL_MAX_AGE_MS (5 * 60 * 1000)
#define KR_SEAL_MAX_SKEW_MS (60 * 1000)
#define KR_SEAL_MIN_KEY_BYTES 32

typedef enum {
    KR_SEAL_OK = 0,
    KR_SEAL_MISSING,     /* no seal or no MAC */
    KR_SEAL_UNKNOWN_KEY, /* key id not in the keyring */
    KR_SEAL_BAD_MAC,     /* MAC does not match: forged or altered */
    KR_SEAL_STALE,       /* sealed too long ago, or in the future beyond skew */
    KR_SEAL_EXPIRED,     /* the envelope's deadline has passed */
} kr_seal_error;

/* A set of internal keys. Immutable once parsed; share it between threads. */
typedef struct st_kr_keyring_t kr_keyring;

/* Parses "kid:base64key[,kid:base64key...]" (standard base64, each key at
 * least KR_SEAL_MIN_KEY_BYTES bytes, ids of [A-Za-z0-9._-], 1..32 chars,
 * unique). On success *out owns a new keyring (free with kr_keyring_free). On
 * failure returns -1, writes a message naming the problem (never the key) to
 * err and leaves *out unchanged. */
int kr_keyring_parse(const char *spec, kr_keyring **out, char *err, size_t errlen) __attribute__((warn_unused_result));

/* Frees a keyring (NULL is allowed); key bytes are wiped first. */
void kr_keyring_free(kr_keyring *kr);

/* Id of the key that seals. */
const char *kr_keyring_active_id(const kr_keyring *kr);

/* Seals `env` with the keyring's first key at `now_ms` and packs it into a
 * new nng message. `env->seal` is pointed at internal storage during the call
 * and restored afterwards. On success *out is owned by the caller (or by nng
 * once sent). Returns 0, or an nng error code when the message cannot be
 * allocated. */
int kr_seal_pack(const kr_keyring *kr, Kreide__Envelope *env, int64_t now_ms, nng_msg **out) __attribute__((warn_unused_result));

/* Like kr_seal_pack, into a buffer from malloc: *out, which the caller
 * frees; returns its length. For envelopes that travel in a batch
 * (common.proto, Envelope.batch). */
size_t kr_seal_pack_buf(const kr_keyring *kr, Kreide__Envelope *env, int64_t now_ms, uint8_t **out);

/* Verifies the seal of an unpacked envelope at `now_ms`. */
kr_seal_error kr_seal_verify(const kr_keyring *kr, const Kreide__Envelope *env, int64_t now_ms) __attribute__((warn_unused_result));

/* Length of a kr_keyring_mac result. */
#define KR_KEYRING_MAC_LEN 32

/* HMAC-SHA256 of data[0..len) for one `purpose` (a fixed label such as
 * "oidc.authorize"), under a key derived from the keyring key `kid` (NULL:
 * the sealing key, kr_keyring_active_id): HMAC(HMAC(key, "kreide-purpose:"
 * purpose), data). Other purposes, and the envelope seals, get unrelated
 * MACs, so a value made for one use is worthless for any other. For state a
 * daemon hands out and must recognise later (the gateway's pending sign-in
 * requests); compare results with CRYPTO_memcmp. Returns 0, or -1 when the
 * keyring has no key `kid` (then `mac` is untouched). */
int kr_keyring_mac(const kr_keyring *kr, const char *kid, const char *purpose, const void *data, size_t len,
                   unsigned char mac[KR_KEYRING_MAC_LEN]) __attribute__((warn_unused_result));

/* A short English description of a kr_seal_error. */
const char *kr_seal_strerror(kr_seal_error e);

/* Current Unix time in milliseconds. */
int64_t kr_now_ms(void);

#endif
