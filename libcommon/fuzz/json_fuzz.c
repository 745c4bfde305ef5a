/*
 * libFuzzer driver for kr_json: decodes arbitrary bytes as each of several
 * message types and, for whatever decodes, checks that encoding and decoding
 * again yields the same packed message and the same text. The same bytes are
 * also unpacked as protobuf, so the encoder sees messages the JSON decoder
 * never builds (unknown enum numbers, invalid UTF-8, NaN payloads); its
 * output must then still be valid JSON.
 *
 *   make fuzz && mkdir -p build/fuzz/json_corpus
 *   build/fuzz/json_fuzz -max_total_time=120 build/fuzz/json_corpus libcommon/fuzz/json_corpus
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.pb-c.h"
#include "identity.pb-c.h"
#include "kr_json.h"
#include "transcode.pb-c.h"

static const ProtobufCMessageDescriptor *const targets[] = {
    &kreide__test__all_types__descriptor,
    &kreide__test__inner__descriptor,
    &kreide__identity__school__descriptor,
    &kreide__identity__create_school_request__descriptor,
    &kreide__identity__list_schools_request__descriptor,
    &kreide__identity__list_schools_reply__descriptor,
    &kreide__envelope__descriptor,
    &kreide__reply__descriptor,
};

static void check(int ok, const char *what, const ProtobufCMessageDescriptor *desc, const char *detail)
{
    if (ok)
        return;
    fprintf(stderr, "json_fuzz: %s (%s): %s\n", what, desc->name, detail ? detail : "");
    abort();
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf == NULL)
        abort();
    protobuf_c_message_pack(m, buf);
    return buf;
}

static void round_trip(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t size)
{
    kr_json_error err;
    memset(&err, 0x5a, sizeof err);
    ProtobufCMessage *first = kr_json_decode(desc, (const char *)data, size, &err);
    if (first == NULL) {
        check(memchr(err.message, '\0', sizeof err.message) != NULL && err.message[0] != '\0', "error without a message", desc,
              NULL);
        check(memchr(err.field, '\0', sizeof err.field) != NULL, "error field not terminated", desc, NULL);
        return;
    }
    size_t text_len;
    char *text = kr_json_encode(first, &text_len);
    check(text != NULL, "a decoded message does not encode", desc, NULL);
    check(strlen(text) == text_len, "encoded length is wrong", desc, text);

    ProtobufCMessage *second = kr_json_decode(desc, text, text_len, &err);
    check(second != NULL, "encoder output does not decode", desc, err.message);

    size_t a_len, b_len;
    uint8_t *a = pack(first, &a_len), *b = pack(second, &b_len);
    check(a_len == b_len && memcmp(a, b, a_len) == 0, "re-decoded message differs", desc, text);

    char *again = kr_json_encode(second, NULL);
    check(again != NULL && strcmp(again, text) == 0, "encoding is not stable", desc, text);

    /* The packed form must also survive protobuf-c's own unpacker. */
    ProtobufCMessage *unpacked = protobuf_c_message_unpack(desc, NULL, a_len, a);
    check(unpacked != NULL, "packed message does not unpack", desc, text);
    protobuf_c_message_free_unpacked(unpacked, NULL);

    free(again);
    free(a);
    free(b);
    free(text);
    protobuf_c_message_free_unpacked(second, NULL);
    protobuf_c_message_free_unpacked(first, NULL);
}

static void encode_unpacked(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t size)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, size, data);
    if (m == NULL)
        return;
    size_t len;
    char *text = kr_json_encode(m, &len);
    if (text != NULL) {
        json_error_t je;
        json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        check(v != NULL, "encoder output is not valid JSON", desc, je.text);
        json_decref(v);
        free(text);
    }
    protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
        round_trip(targets[i], data, size);
    encode_unpacked(&kreide__test__all_types__descriptor, data, size);
    encode_unpacked(&kreide__envelope__descriptor, data, size);
    return 0;
}
