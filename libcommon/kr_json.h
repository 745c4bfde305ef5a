/*
 * kr_json — JSON <-> protobuf-c transcoding following the proto3 JSON
 * mapping ("ProtoJSON format", protobuf.dev), driven only by protobuf-c
 * message descriptors, so one codec serves every gateway endpoint.
 *
 * Decoding is strict, because its input is untrusted: unknown fields,
 * mistyped values, out-of-range numbers, duplicate keys and too deep nesting
 * are all rejected with an error that names the offending field by its dotted
 * path. Encoding always succeeds for messages of bounded depth and size.
 *
 * Mapping in brief (docs/transcoding.md has the details and the reasons):
 *   - output field names are the proto names (snake_case); input accepts the
 *     proto name and the lowerCamelCase JSON name;
 *   - 64-bit integers are emitted as JSON strings and accepted as strings or
 *     numbers; 32-bit integers are emitted as numbers and accepted as numbers
 *     or numeric strings; integral values written as 1.0 or 1e3 are accepted;
 *   - float/double accept numbers, numeric strings and "NaN", "Infinity",
 *     "-Infinity" (emitted for those values);
 *   - enums are emitted by value name, accepted by name or by the number of a
 *     defined value;
 *   - bytes are emitted as standard base64 with padding, accepted as standard
 *     or URL-safe base64, with or without padding;
 *   - null stands for the field's default; output includes scalar, string,
 *     enum and repeated fields even when they hold the default, omits unset
 *     sub-messages and unset oneof members.
 *
 * Thread safety: every function may be called from any thread at any time.
 * Results do not depend on the program's locale.
 */
#ifndef KR_JSON_H
#define KR_JSON_H

#include <stddef.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

/* Deepest message nesting accepted by the decoder and produced by the
 * encoder; the top-level message is at depth 1. */
#define KR_JSON_MAX_DEPTH 32

/* Largest text kr_json_encode produces, in bytes. */
#define KR_JSON_MAX_OUTPUT (64u * 1024u * 1024u)

/* Why a decode failed. Both strings are always NUL-terminated (truncated when
 * longer than the buffers). */
typedef struct {
    /* Dotted path of the offending field in proto (snake_case) names, with
     * list indexes, e.g. "page.limit" or "schools[2].name"; empty when the
     * error is not about one field (malformed JSON, top level not an object). */
    char field[128];
    /* One English sentence for people, e.g.
     * "field 'page.limit': expected an unsigned 32-bit integer, got string \"abc\"". */
    char message[256];
} kr_json_error;

/* Parses `len` bytes of JSON text, which must be one JSON object, into a new
 * message of type `desc`.
 *
 * Returns the message on success; the caller frees it with
 * protobuf_c_message_free_unpacked(msg, NULL), which releases every part of
 * it. Returns NULL on any error and, when `err` is not NULL, fills `err`.
 * The text need not be NUL-terminated; embedded NUL bytes are an error.
 * Integers written as JSON numbers must lie within the signed 64-bit range
 * (larger uint64 values must be sent as strings, as the encoder does). */
__attribute__((warn_unused_result)) ProtobufCMessage *kr_json_decode(const ProtobufCMessageDescriptor *desc, const char *json,
                                                                     size_t len, kr_json_error *err);

/* Same as kr_json_decode for an already parsed JSON value, e.g. a request
 * body the gateway has merged path and query parameters into. `obj` is only
 * read; the caller keeps its reference. A value that is not a JSON object is
 * an error. */
__attribute__((warn_unused_result)) ProtobufCMessage *kr_json_decode_obj(const ProtobufCMessageDescriptor *desc, const json_t *obj,
                                                                         kr_json_error *err);

/* Encodes `msg` as compact JSON text (UTF-8, NUL-terminated). Numbers are
 * written in their shortest form that reads back to the same value. Invalid
 * UTF-8 in string fields is replaced by U+FFFD.
 *
 * Returns a malloc'd string the caller frees with free(), and stores its
 * length (without the NUL) in `*len_out` when `len_out` is not NULL. Returns
 * NULL only when the message nests deeper than KR_JSON_MAX_DEPTH or the text
 * would exceed KR_JSON_MAX_OUTPUT. */
__attribute__((warn_unused_result)) char *kr_json_encode(const ProtobufCMessage *msg, size_t *len_out);

/* Encodes `msg` as a jansson object (a new reference the caller releases
 * with json_decref). Float fields hold the double nearest to the float's
 * shortest decimal form, so printing them with few digits is exact. Returns
 * NULL only when the message nests deeper than KR_JSON_MAX_DEPTH. */
__attribute__((warn_unused_result)) json_t *kr_json_encode_obj(const ProtobufCMessage *msg);

#endif
