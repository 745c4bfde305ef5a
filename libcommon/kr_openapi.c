#include "kr_openapi.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static json_t *must(json_t *v)
{
    if (v == NULL)
        abort();
    return v;
}

static json_t *ref_to(const ProtobufCMessageDescriptor *desc)
{
    return must(json_pack("{s:o}", "$ref", must(json_sprintf("#/components/schemas/%s", desc->name))));
}

/* The float and double forms: a number, or one of the three strings kr_json
 * writes for values JSON numbers cannot hold. */
static json_t *floating_schema(const char *format)
{
    return must(json_pack("{s:[{s:s, s:s}, {s:s, s:[s,s,s]}]}", "oneOf", "type", "number", "format", format, "type", "string",
                          "enum", "NaN", "Infinity", "-Infinity"));
}

static void add_message(const ProtobufCMessageDescriptor *desc, json_t *schemas);

static json_t *value_schema(const ProtobufCFieldDescriptor *f, json_t *schemas)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return must(json_pack("{s:s, s:s}", "type", "integer", "format", "int32"));
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        /* OpenAPI 3.0 names no unsigned 32-bit format; int64 holds it. */
        return must(json_pack("{s:s, s:s, s:i, s:I}", "type", "integer", "format", "int64", "minimum", 0, "maximum",
                              (json_int_t)UINT32_MAX));
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return must(json_pack("{s:s, s:s, s:s}", "type", "string", "format", "int64", "pattern", "^-?[0-9]+$"));
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return must(json_pack("{s:s, s:s, s:s}", "type", "string", "format", "uint64", "pattern", "^[0-9]+$"));
    case PROTOBUF_C_TYPE_FLOAT:
        return floating_schema("float");
    case PROTOBUF_C_TYPE_DOUBLE:
        return floating_schema("double");
    case PROTOBUF_C_TYPE_BOOL:
        return must(json_pack("{s:s}", "type", "boolean"));
    case PROTOBUF_C_TYPE_STRING:
        return must(json_pack("{s:s}", "type", "string"));
    case PROTOBUF_C_TYPE_BYTES:
        return must(json_pack("{s:s, s:s}", "type", "string", "format", "byte"));
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        json_t *names = must(json_array());
        for (unsigned i = 0; i < ed->n_values; i++)
            json_array_append_new(names, must(json_string(ed->values[i].name)));
        return must(json_pack("{s:s, s:o, s:s}", "type", "string", "enum", names, "title", ed->name));
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        add_message(f->descriptor, schemas);
        return ref_to(f->descriptor);
    }
    return must(json_object());
}

/* protobuf-c keeps no oneof names, only the shared case member: fields
 * with the same quantifier_offset form one oneof. */
static json_t *oneof_description(const ProtobufCMessageDescriptor *desc)
{
    json_t *text = NULL;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        bool first = true;
        for (unsigned k = 0; k < i; k++)
            if ((desc->fields[k].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && desc->fields[k].quantifier_offset == f->quantifier_offset)
                first = false;
        if (!first)
            continue;
        json_t *members = must(json_array());
        for (unsigned k = i; k < desc->n_fields; k++)
            if ((desc->fields[k].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && desc->fields[k].quantifier_offset == f->quantifier_offset)
                json_array_append_new(members, must(json_string(desc->fields[k].name)));
        if (text == NULL)
            text = must(json_string("At most one field of each group may be set:"));
        size_t n = json_array_size(members);
        for (size_t k = 0; k < n; k++) {
            const char *sep = k == 0 ? " " : k + 1 == n ? " or " : ", ";
            json_t *next =
                must(json_sprintf("%s%s%s", json_string_value(text), sep, json_string_value(json_array_get(members, k))));
            json_decref(text);
            text = next;
        }
        json_t *next = must(json_sprintf("%s.", json_string_value(text)));
        json_decref(text);
        text = next;
        json_decref(members);
    }
    return text;
}

static void add_message(const ProtobufCMessageDescriptor *desc, json_t *schemas)
{
    if (json_object_get(schemas, desc->name) != NULL)
        return;
    json_t *props = must(json_object());
    json_t *schema = must(
        json_pack("{s:s, s:s, s:o, s:b}", "type", "object", "title", desc->name, "properties", props, "additionalProperties", 0));
    /* Registered before its fields are walked so that a message referring
     * back to itself finds it and stops. */
    json_object_set_new(schemas, desc->name, schema);
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        json_t *v = value_schema(f, schemas);
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            v = must(json_pack("{s:s, s:o}", "type", "array", "items", v));
        json_object_set_new(props, f->name, v);
    }
    json_t *oneofs = oneof_description(desc);
    if (oneofs != NULL)
        json_object_set_new(schema, "description", oneofs);
}

json_t *kr_openapi_schema_ref(const ProtobufCMessageDescriptor *desc, json_t *schemas)
{
    add_message(desc, schemas);
    return ref_to(desc);
}
