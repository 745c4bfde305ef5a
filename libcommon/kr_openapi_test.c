#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kr_json.h"
#include "kr_openapi.h"
#include "identity.pb-c.h"
#include "transcode.pb-c.h"

static json_t *prop(json_t *schemas, const char *message, const char *field)
{
    json_t *p = json_object_get(json_object_get(json_object_get(schemas, message), "properties"), field);
    if (p == NULL)
        fail_msg("no property %s in %s", field, message);
    return p;
}

/* Compares a schema with the expected JSON text, key order ignored. */
static void assert_schema(json_t *schema, const char *expected_json)
{
    json_error_t je;
    json_t *expected = json_loads(expected_json, 0, &je);
    if (expected == NULL)
        fail_msg("bad expectation %s: %s", expected_json, je.text);
    if (!json_equal(schema, expected)) {
        char *got = json_dumps(schema, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("schema %s, expected %s", got, expected_json);
    }
    json_decref(expected);
}

static void ref_points_into_components(void **state)
{
    json_t *schemas = json_object();
    json_t *ref = kr_openapi_schema_ref(&kreide__identity__school__descriptor, schemas);
    assert_schema(ref, "{\"$ref\": \"#/components/schemas/kreide.identity.School\"}");
    assert_int_equal(json_object_size(schemas), 1);
    assert_schema(json_object_get(schemas, "kreide.identity.School"),
                  "{\"type\": \"object\", \"title\": \"kreide.identity.School\", \"additionalProperties\": false, \"properties\": {"
                  " \"id\": {\"type\": \"string\"}, \"name\": {\"type\": \"string\"}, \"kennung\": {\"type\": \"string\"},"
                  " \"kind\": {\"type\": \"string\", \"title\": \"kreide.identity.SchoolKind\","
                  "          \"enum\": [\"SCHOOL_KIND_UNSPECIFIED\", \"SCHOOL\", \"KITA\", \"COMMUNITY\"]},"
                  " \"created_at\": {\"type\": \"string\"}, \"carrier_id\": {\"type\": \"string\"}}}");
    json_decref(ref);
    json_decref(schemas);
}

static void every_field_kind_has_its_schema(void **state)
{
    json_t *schemas = json_object();
    json_decref(kr_openapi_schema_ref(&kreide__test__all_types__descriptor, schemas));
    const char *m = "kreide.test.AllTypes";
    const char *float_forms =
        "[{\"type\": \"number\", \"format\": \"%s\"}, {\"type\": \"string\", \"enum\": [\"NaN\", \"Infinity\", "
        "\"-Infinity\"]}]";
    char buf[256];
    snprintf(buf, sizeof buf, "{\"oneOf\": %s}", float_forms);
    char expected[300];
    snprintf(expected, sizeof expected, buf, "double");
    assert_schema(prop(schemas, m, "f_double"), expected);
    snprintf(expected, sizeof expected, buf, "float");
    assert_schema(prop(schemas, m, "f_float"), expected);
    const char *int32 = "{\"type\": \"integer\", \"format\": \"int32\"}";
    assert_schema(prop(schemas, m, "f_int32"), int32);
    assert_schema(prop(schemas, m, "f_sint32"), int32);
    assert_schema(prop(schemas, m, "f_sfixed32"), int32);
    const char *uint32 = "{\"type\": \"integer\", \"format\": \"int64\", \"minimum\": 0, \"maximum\": 4294967295}";
    assert_schema(prop(schemas, m, "f_uint32"), uint32);
    assert_schema(prop(schemas, m, "f_fixed32"), uint32);
    const char *int64 = "{\"type\": \"string\", \"format\": \"int64\", \"pattern\": \"^-?[0-9]+$\"}";
    assert_schema(prop(schemas, m, "f_int64"), int64);
    assert_schema(prop(schemas, m, "f_sint64"), int64);
    assert_schema(prop(schemas, m, "f_sfixed64"), int64);
    const char *uint64 = "{\"type\": \"string\", \"format\": \"uint64\", \"pattern\": \"^[0-9]+$\"}";
    assert_schema(prop(schemas, m, "f_uint64"), uint64);
    assert_schema(prop(schemas, m, "f_fixed64"), uint64);
    assert_schema(prop(schemas, m, "f_bool"), "{\"type\": \"boolean\"}");
    assert_schema(prop(schemas, m, "f_string"), "{\"type\": \"string\"}");
    assert_schema(prop(schemas, m, "f_bytes"), "{\"type\": \"string\", \"format\": \"byte\"}");
    /* protobuf-c lists enum values by number, so the names come in that order. */
    assert_schema(
        prop(schemas, m, "f_color"),
        "{\"type\": \"string\", \"title\": \"kreide.test.Color\", \"enum\": [\"INFRARED\", \"COLOR_UNSPECIFIED\", \"RED\","
        " \"GREEN\"]}");
    assert_schema(prop(schemas, m, "inner"), "{\"$ref\": \"#/components/schemas/kreide.test.Inner\"}");
    assert_schema(prop(schemas, m, "page"), "{\"$ref\": \"#/components/schemas/kreide.PageRequest\"}");
    assert_schema(prop(schemas, m, "r_int64"), "{\"type\": \"array\", \"items\": {\"type\": \"string\", \"format\": \"int64\","
                                               " \"pattern\": \"^-?[0-9]+$\"}}");
    assert_schema(prop(schemas, m, "r_bytes"), "{\"type\": \"array\", \"items\": {\"type\": \"string\", \"format\": \"byte\"}}");
    assert_schema(prop(schemas, m, "r_inner"),
                  "{\"type\": \"array\", \"items\": {\"$ref\": \"#/components/schemas/kreide.test.Inner\"}}");
    assert_schema(prop(schemas, m, "o_inner"), "{\"$ref\": \"#/components/schemas/kreide.test.Inner\"}");
    /* Property names are the proto names, one per field. */
    assert_int_equal(json_object_size(json_object_get(json_object_get(schemas, m), "properties")),
                     kreide__test__all_types__descriptor.n_fields);
    assert_non_null(prop(schemas, m, "name__with_gap"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(schemas, m), "description")),
                        "At most one field of each group may be set: o_string, o_int32, o_inner or o_bytes.");
    /* The recursive message refers to itself and is listed once. */
    assert_schema(prop(schemas, "kreide.test.Inner", "child"), "{\"$ref\": \"#/components/schemas/kreide.test.Inner\"}");
    assert_int_equal(json_object_size(schemas), 3);
    assert_null(json_object_get(json_object_get(schemas, "kreide.test.Inner"), "description"));
    json_decref(schemas);
}

static void referenced_messages_are_added_once(void **state)
{
    json_t *schemas = json_object();
    json_decref(kr_openapi_schema_ref(&kreide__identity__list_schools_reply__descriptor, schemas));
    assert_int_equal(json_object_size(schemas), 3);
    assert_non_null(json_object_get(schemas, "kreide.identity.ListSchoolsReply"));
    assert_non_null(json_object_get(schemas, "kreide.identity.School"));
    assert_non_null(json_object_get(schemas, "kreide.PageInfo"));
    json_t *before = json_deep_copy(schemas);
    json_decref(kr_openapi_schema_ref(&kreide__identity__list_schools_request__descriptor, schemas));
    json_decref(kr_openapi_schema_ref(&kreide__identity__school__descriptor, schemas));
    assert_int_equal(json_object_size(schemas), 5);
    assert_non_null(json_object_get(schemas, "kreide.PageRequest"));
    /* Existing entries are not rebuilt or altered. */
    assert_true(json_equal(json_object_get(before, "kreide.identity.School"), json_object_get(schemas, "kreide.identity.School")));
    json_decref(before);
    json_decref(schemas);
}

/* --------------------------------------------------------------------
 * A small validator for the subset of JSON Schema the generator uses, so
 * the tests can show that what kr_json writes is what the schema allows. */

static bool matches_pattern(const char *pattern, const char *s)
{
    if (strcmp(pattern, "^-?[0-9]+$") == 0 && *s == '-')
        s++;
    else if (strcmp(pattern, "^[0-9]+$") != 0 && strcmp(pattern, "^-?[0-9]+$") != 0)
        fail_msg("validator does not know pattern %s", pattern);
    if (*s == '\0')
        return false;
    return strspn(s, "0123456789") == strlen(s);
}

static bool validate(json_t *schemas, json_t *schema, json_t *v);

static bool validate_type(const char *type, json_t *v)
{
    if (strcmp(type, "object") == 0)
        return json_is_object(v);
    if (strcmp(type, "array") == 0)
        return json_is_array(v);
    if (strcmp(type, "string") == 0)
        return json_is_string(v);
    if (strcmp(type, "integer") == 0)
        return json_is_integer(v);
    if (strcmp(type, "number") == 0)
        return json_is_number(v);
    if (strcmp(type, "boolean") == 0)
        return json_is_boolean(v);
    fail_msg("validator does not know type %s", type);
    return false;
}

static bool validate(json_t *schemas, json_t *schema, json_t *v)
{
    const char *key;
    json_t *kw;
    json_object_foreach(schema, key, kw)
    {
        if (strcmp(key, "$ref") == 0) {
            const char *prefix = "#/components/schemas/";
            assert_int_equal(strncmp(json_string_value(kw), prefix, strlen(prefix)), 0);
            json_t *target = json_object_get(schemas, json_string_value(kw) + strlen(prefix));
            assert_non_null(target);
            if (!validate(schemas, target, v))
                return false;
        } else if (strcmp(key, "type") == 0) {
            if (!validate_type(json_string_value(kw), v))
                return false;
        } else if (strcmp(key, "properties") == 0) {
            const char *name;
            json_t *pv;
            json_object_foreach(v, name, pv)
            {
                json_t *ps = json_object_get(kw, name);
                if (ps == NULL) {
                    if (json_is_false(json_object_get(schema, "additionalProperties")))
                        return false;
                } else if (!validate(schemas, ps, pv)) {
                    return false;
                }
            }
        } else if (strcmp(key, "items") == 0) {
            for (size_t i = 0; i < json_array_size(v); i++)
                if (!validate(schemas, kw, json_array_get(v, i)))
                    return false;
        } else if (strcmp(key, "enum") == 0) {
            bool found = false;
            for (size_t i = 0; i < json_array_size(kw); i++)
                found = found || json_equal(json_array_get(kw, i), v);
            if (!found)
                return false;
        } else if (strcmp(key, "oneOf") == 0) {
            int n = 0;
            for (size_t i = 0; i < json_array_size(kw); i++)
                n += validate(schemas, json_array_get(kw, i), v);
            if (n != 1)
                return false;
        } else if (strcmp(key, "minimum") == 0) {
            if (json_number_value(v) < json_number_value(kw))
                return false;
        } else if (strcmp(key, "maximum") == 0) {
            if (json_number_value(v) > json_number_value(kw))
                return false;
        } else if (strcmp(key, "pattern") == 0) {
            if (!matches_pattern(json_string_value(kw), json_string_value(v)))
                return false;
        } else if (strcmp(key, "format") != 0 && strcmp(key, "title") != 0 && strcmp(key, "description") != 0 &&
                   strcmp(key, "additionalProperties") != 0) {
            fail_msg("validator does not know keyword %s", key);
        }
    }
    return true;
}

static bool validates(json_t *schemas, const char *message, const char *json)
{
    json_t *v = json_loads(json, 0, NULL);
    assert_non_null(v);
    bool ok = validate(schemas, json_object_get(schemas, message), v);
    json_decref(v);
    return ok;
}

static void encoder_output_validates_against_the_schema(void **state)
{
    const char *input = "{\"f_double\": \"NaN\", \"f_float\": 1.5, \"f_int32\": -3, \"f_int64\": \"-9007199254740993\","
                        " \"f_uint32\": 4294967295, \"f_uint64\": \"18446744073709551615\", \"f_sint32\": 1, \"f_sint64\": 2,"
                        " \"f_fixed32\": 3, \"f_fixed64\": 4, \"f_sfixed32\": -5, \"f_sfixed64\": -6, \"f_bool\": true,"
                        " \"f_string\": \"s\", \"f_bytes\": \"-_8\", \"f_color\": -3,"
                        " \"inner\": {\"a\": 1, \"child\": {\"b\": \"c\"}}, \"r_int32\": [1, 2], \"r_int64\": [3, \"-4\"],"
                        " \"r_uint64\": [5], \"r_double\": [\"Infinity\", 0.5], \"r_float\": [\"-Infinity\", 2],"
                        " \"r_bool\": [false], \"r_string\": [\"\"], \"r_bytes\": [\"AA\"], \"r_color\": [\"RED\", 2],"
                        " \"r_inner\": [{}, {\"child\": {}}], \"oInner\": {\"b\": \"o\"},"
                        " \"page\": {\"limit\": 10, \"cursor\": \"x\"}, \"x2Y\": 1, \"nameWithGap\": \"g\"}";
    kr_json_error err;
    ProtobufCMessage *msg = kr_json_decode(&kreide__test__all_types__descriptor, input, strlen(input), &err);
    if (msg == NULL)
        fail_msg("decode failed: %s", err.message);
    char *out = kr_json_encode(msg, NULL);
    assert_non_null(out);
    json_t *schemas = json_object();
    json_decref(kr_openapi_schema_ref(&kreide__test__all_types__descriptor, schemas));
    if (!validates(schemas, "kreide.test.AllTypes", out))
        fail_msg("encoder output %s does not match its schema", out);
    free(out);

    /* The default message, with every field at its default. */
    Kreide__Test__AllTypes empty = KREIDE__TEST__ALL_TYPES__INIT;
    out = kr_json_encode(&empty.base, NULL);
    assert_true(validates(schemas, "kreide.test.AllTypes", out));
    free(out);

    /* And the validator is not a yes-man: near misses of the output fail. */
    assert_false(validates(schemas, "kreide.test.AllTypes", "{\"f_int64\": 5}"));
    assert_false(validates(schemas, "kreide.test.AllTypes", "{\"f_int64\": \"5x\"}"));
    assert_false(validates(schemas, "kreide.test.AllTypes", "{\"f_uint64\": \"-5\"}"));
    assert_false(validates(schemas, "kreide.test.AllTypes", "{\"fInt32\": 5}"));
    assert_false(validates(schemas, "kreide.test.AllTypes", "{\"f_uint32\": -1}"));
    assert_false(validates(schemas, "kreide.test.AllTypes", "{\"f_uint32\": 4294967296}"));
    assert_false(validates(schemas, "kreide.test.AllTypes", "{\"f_int32\": \"1\"}"));
    assert_false(validates(schemas, "kreide.test.AllTypes", "{\"f_color\": 1}"));
    assert_false(validates(schemas, "kreide.test.AllTypes", "{\"f_double\": \"nan\"}"));
    assert_false(validates(schemas, "kreide.test.AllTypes", "{\"r_inner\": [{\"child\": {\"zz\": 1}}]}"));
    assert_false(validates(schemas, "kreide.test.AllTypes", "{\"page\": {\"limit\": \"1\"}}"));
    assert_false(validates(schemas, "kreide.test.AllTypes", "{\"r_bytes\": [1]}"));

    json_decref(schemas);
    protobuf_c_message_free_unpacked(msg, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ref_points_into_components),
        cmocka_unit_test(every_field_kind_has_its_schema),
        cmocka_unit_test(referenced_messages_are_added_once),
        cmocka_unit_test(encoder_output_validates_against_the_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
