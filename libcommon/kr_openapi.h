/*
 * kr_openapi — OpenAPI 3.0 schema objects for protobuf-c messages, matching
 * what kr_json emits: proto field names, 64-bit integers as strings, enums as
 * value names, bytes as base64 strings, no properties beyond the fields.
 *
 * The schemas describe the canonical form kr_json writes; kr_json also
 * reads a few more spellings (lowerCamelCase names, numbers for 64-bit
 * fields, enum numbers, URL-safe base64, null), which a client never needs.
 * The gateway builds the rest of the document (paths, operations).
 */
#ifndef KR_OPENAPI_H
#define KR_OPENAPI_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

/* Adds the schema of `desc`, and of every message it references directly or
 * indirectly, to the JSON object `schemas` (the document's
 * components.schemas), keyed by full message name such as
 * "kreide.identity.School". Messages already present are left unchanged, so
 * calling this once per route message builds each schema once, and
 * recursive messages terminate.
 *
 * Returns a new reference to {"$ref": "#/components/schemas/<full name>"};
 * the caller releases it (or hands it to json_object_set_new). Never fails:
 * aborts when out of memory. `schemas` must be a JSON object. */
__attribute__((warn_unused_result)) json_t *kr_openapi_schema_ref(const ProtobufCMessageDescriptor *desc, json_t *schemas);

#endif
