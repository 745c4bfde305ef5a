/*
 * libFuzzer driver for what arrives on a service's socket: arbitrary bytes
 * are unpacked as an Envelope (as the RPC server does, into a request arena)
 * and their seal is checked, and so is each element of a batch. Nothing may
 * crash, and no input but a properly sealed envelope may pass the check.
 *
 *   make fuzz && build/fuzz/envelope_fuzz -max_total_time=60
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common.pb-c.h"
#include "kr_arena.h"
#include "kr_seal.h"

static kr_keyring *keys;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (keys == NULL && kr_keyring_parse("k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", &keys, NULL, 0) != 0)
        abort();
    kr_arena arena;
    kr_arena_init(&arena);
    ProtobufCAllocator al = kr_arena_allocator(&arena);
    Kreide__Envelope *env = kreide__envelope__unpack(&al, size, data);
    if (env != NULL) {
        /* A fuzzer cannot forge HMAC-SHA256; a pass would mean the check is broken. */
        if (kr_seal_verify(keys, env, kr_now_ms()) == KR_SEAL_OK)
            abort();
        for (size_t i = 0; i < env->n_batch; i++) {
            Kreide__Envelope *e = kreide__envelope__unpack(&al, env->batch[i].len, env->batch[i].data);
            if (e != NULL && kr_seal_verify(keys, e, kr_now_ms()) == KR_SEAL_OK)
                abort();
        }
    }
    kr_arena_free(&arena);
    return 0;
}
