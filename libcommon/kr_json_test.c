#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <locale.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kr_json.h"
#include "identity.pb-c.h"
#include "transcode.pb-c.h"

typedef Kreide__Test__AllTypes AllTypes;
#define ALL_DESC (&kreide__test__all_types__descriptor)

static AllTypes *decode_all(const char *json)
{
    kr_json_error err;
    AllTypes *m = (AllTypes *)kr_json_decode(ALL_DESC, json, strlen(json), &err);
    if (m == NULL)
        fail_msg("decode of %s failed: %s", json, err.message);
    return m;
}

/* Decodes `json`, expects failure, and checks the error's field path and
 * that the message contains `needle`. */
static void expect_error(const ProtobufCMessageDescriptor *desc, const char *json, const char *field, const char *needle)
{
    kr_json_error err;
    memset(&err, 'x', sizeof err);
    ProtobufCMessage *m = kr_json_decode(desc, json, strlen(json), &err);
    if (m != NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
        fail_msg("decode of %s succeeded, expected an error on '%s'", json, field);
    }
    assert_string_equal(err.field, field);
    if (strstr(err.message, needle) == NULL)
        fail_msg("error for %s is \"%s\", expected it to contain \"%s\"", json, err.message, needle);
}

static void expect_all_error(const char *json, const char *field, const char *needle)
{
    expect_error(ALL_DESC, json, field, needle);
}

static char *encode(const void *msg)
{
    size_t len = 0;
    char *s = kr_json_encode(msg, &len);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    return s;
}

/* Packs a message, for comparing two messages field by field on the wire. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(m, buf), *len);
    return buf;
}

/* JSON -> message -> JSON -> message must give the same packed bytes. */
static void assert_round_trip(const ProtobufCMessage *m)
{
    size_t len;
    char *json = kr_json_encode(m, &len);
    assert_non_null(json);
    kr_json_error err;
    ProtobufCMessage *again = kr_json_decode(m->descriptor, json, len, &err);
    if (again == NULL)
        fail_msg("re-decoding %s failed: %s", json, err.message);
    size_t a_len, b_len;
    uint8_t *a = pack(m, &a_len), *b = pack(again, &b_len);
    assert_int_equal(a_len, b_len);
    assert_memory_equal(a, b, a_len);
    free(a);
    free(b);
    free(json);
    protobuf_c_message_free_unpacked(again, NULL);
}

/* ------------------------------------------------------------ scalars */

static void decodes_every_scalar_type(void **state)
{
    AllTypes *m =
        decode_all("{\"f_double\": 1.5, \"f_float\": -0.25, \"f_int32\": -2147483648, \"f_int64\": \"-9223372036854775808\","
                   " \"f_uint32\": 4294967295, \"f_uint64\": \"18446744073709551615\", \"f_sint32\": -7,"
                   " \"f_sint64\": \"-77\", \"f_fixed32\": 7, \"f_fixed64\": \"77\", \"f_sfixed32\": -8,"
                   " \"f_sfixed64\": \"-88\", \"f_bool\": true, \"f_string\": \"Grundschule Am See \\u00e4\","
                   " \"f_bytes\": \"AAEC/w==\", \"f_color\": \"GREEN\"}");
    assert_true(m->f_double == 1.5);
    assert_true(m->f_float == -0.25f);
    assert_int_equal(m->f_int32, INT32_MIN);
    assert_true(m->f_int64 == INT64_MIN);
    assert_int_equal(m->f_uint32, UINT32_MAX);
    assert_true(m->f_uint64 == UINT64_MAX);
    assert_int_equal(m->f_sint32, -7);
    assert_true(m->f_sint64 == -77);
    assert_int_equal(m->f_fixed32, 7);
    assert_true(m->f_fixed64 == 77);
    assert_int_equal(m->f_sfixed32, -8);
    assert_true(m->f_sfixed64 == -88);
    assert_true(m->f_bool);
    assert_string_equal(m->f_string, "Grundschule Am See \xc3\xa4");
    assert_int_equal(m->f_bytes.len, 4);
    assert_memory_equal(m->f_bytes.data, "\x00\x01\x02\xff", 4);
    assert_int_equal(m->f_color, KREIDE__TEST__COLOR__GREEN);
    assert_round_trip(&m->base);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void encodes_every_scalar_type_with_proto_names(void **state)
{
    AllTypes m = KREIDE__TEST__ALL_TYPES__INIT;
    uint8_t bytes[] = {0xfb, 0xff, 0x00};
    m.f_double = 0.1;
    m.f_float = 0.1f;
    m.f_int32 = -5;
    m.f_int64 = INT64_MAX;
    m.f_uint32 = 4000000000u;
    m.f_uint64 = UINT64_MAX;
    m.f_sint32 = -1;
    m.f_sint64 = -2;
    m.f_fixed32 = 3;
    m.f_fixed64 = 4;
    m.f_sfixed32 = -5;
    m.f_sfixed64 = -6;
    m.f_bool = 1;
    m.f_string = "a\"b\\c\n\x01";
    m.f_bytes.data = bytes;
    m.f_bytes.len = sizeof bytes;
    m.f_color = KREIDE__TEST__COLOR__INFRARED;
    m.x2_y = 9;
    char *s = encode(&m);
    assert_string_equal(s, "{\"f_double\":0.1,\"f_float\":0.1,\"f_int32\":-5,\"f_int64\":\"9223372036854775807\","
                           "\"f_uint32\":4000000000,\"f_uint64\":\"18446744073709551615\",\"f_sint32\":-1,\"f_sint64\":\"-2\","
                           "\"f_fixed32\":3,\"f_fixed64\":\"4\",\"f_sfixed32\":-5,\"f_sfixed64\":\"-6\",\"f_bool\":true,"
                           "\"f_string\":\"a\\\"b\\\\c\\n\\u0001\",\"f_bytes\":\"+/8A\",\"f_color\":\"INFRARED\","
                           "\"r_int32\":[],\"r_int64\":[],\"r_uint64\":[],\"r_double\":[],\"r_float\":[],\"r_bool\":[],"
                           "\"r_string\":[],\"r_bytes\":[],\"r_color\":[],\"r_inner\":[],\"x2_y\":9,\"name__with_gap\":\"\"}");
    free(s);
    assert_round_trip(&m.base);
}

static void defaults_are_emitted_and_unset_messages_omitted(void **state)
{
    Kreide__Identity__ListSchoolsReply r = KREIDE__IDENTITY__LIST_SCHOOLS_REPLY__INIT;
    char *s = encode(&r);
    assert_string_equal(s, "{\"schools\":[]}");
    free(s);

    Kreide__Identity__School school = KREIDE__IDENTITY__SCHOOL__INIT;
    char *t = encode(&school);
    assert_string_equal(t, "{\"id\":\"\",\"name\":\"\",\"kennung\":\"\",\"kind\":\"SCHOOL_KIND_UNSPECIFIED\",\"created_at\":\"\","
                           "\"carrier_id\":\"\"}");
    free(t);
}

static void int64_beyond_2_pow_53_survives(void **state)
{
    /* 2^53 + 1 is the first integer a double cannot hold. */
    AllTypes *m = decode_all("{\"f_int64\": \"9007199254740993\", \"f_uint64\": 9007199254740993,"
                             " \"f_sint64\": -9007199254740993, \"f_fixed64\": \"18446744073709551614\","
                             " \"r_int64\": [\"9223372036854775807\", -9223372036854775807], \"r_uint64\": [\"1e19\"]}");
    assert_true(m->f_int64 == INT64_C(9007199254740993));
    assert_true(m->f_uint64 == UINT64_C(9007199254740993));
    assert_true(m->f_sint64 == -INT64_C(9007199254740993));
    assert_true(m->f_fixed64 == UINT64_C(18446744073709551614));
    assert_int_equal(m->n_r_int64, 2);
    assert_true(m->r_int64[0] == INT64_MAX);
    assert_true(m->r_int64[1] == -INT64_MAX);
    assert_true(m->r_uint64[0] == UINT64_C(10000000000000000000));
    char *s = encode(m);
    assert_non_null(strstr(s, "\"f_int64\":\"9007199254740993\""));
    assert_non_null(strstr(s, "\"f_uint64\":\"9007199254740993\""));
    assert_non_null(strstr(s, "\"f_sint64\":\"-9007199254740993\""));
    assert_non_null(strstr(s, "\"r_int64\":[\"9223372036854775807\",\"-9223372036854775807\"]"));
    assert_non_null(strstr(s, "\"r_uint64\":[\"10000000000000000000\"]"));
    free(s);
    assert_round_trip(&m->base);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void integers_accept_numeric_strings_and_integral_forms(void **state)
{
    AllTypes *m = decode_all("{\"f_int32\": \"-12\", \"f_uint32\": \"4294967295\", \"f_sint32\": 1e3,"
                             " \"f_fixed32\": 2.0, \"f_sfixed32\": \"-1.5e1\", \"f_int64\": \"1.2345e4\","
                             " \"f_uint64\": \"-0\", \"f_sint64\": -0.0, \"f_fixed64\": \"0.000e5\","
                             " \"r_int32\": [0, \"7\", 7.0, \"70e-1\"]}");
    assert_int_equal(m->f_int32, -12);
    assert_int_equal(m->f_uint32, UINT32_MAX);
    assert_int_equal(m->f_sint32, 1000);
    assert_int_equal(m->f_fixed32, 2);
    assert_int_equal(m->f_sfixed32, -15);
    assert_true(m->f_int64 == 12345);
    assert_true(m->f_uint64 == 0);
    assert_true(m->f_sint64 == 0);
    assert_true(m->f_fixed64 == 0);
    assert_int_equal(m->n_r_int32, 4);
    for (size_t i = 1; i < 4; i++)
        assert_int_equal(m->r_int32[i], 7);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void integer_range_and_type_errors_name_the_field(void **state)
{
    expect_all_error("{\"f_int32\": 1.5}", "f_int32", "expected a 32-bit integer, got number 1.5 which has a fractional part");
    expect_all_error("{\"f_int32\": 2147483648}", "f_int32", "number 2147483648 is out of range for a 32-bit integer");
    expect_all_error("{\"f_int32\": -2147483649}", "f_int32", "out of range");
    expect_all_error("{\"f_uint32\": 4294967296}", "f_uint32", "number 4294967296 is out of range for an unsigned 32-bit integer");
    expect_all_error("{\"f_uint32\": -1}", "f_uint32", "out of range for an unsigned 32-bit integer");
    expect_all_error("{\"f_fixed32\": \"-1\"}", "f_fixed32", "out of range");
    expect_all_error("{\"f_uint32\": \"abc\"}", "f_uint32",
                     "field 'f_uint32': expected an unsigned 32-bit integer, got string \"abc\"");
    expect_all_error("{\"f_int32\": \" 1\"}", "f_int32", "got string \" 1\"");
    expect_all_error("{\"f_int32\": \"+1\"}", "f_int32", "expected a 32-bit integer");
    expect_all_error("{\"f_int32\": \"01\"}", "f_int32", "expected a 32-bit integer");
    expect_all_error("{\"f_int32\": \"0x10\"}", "f_int32", "expected a 32-bit integer");
    expect_all_error("{\"f_int32\": \"\"}", "f_int32", "expected a 32-bit integer, got string \"\"");
    expect_all_error("{\"f_int32\": true}", "f_int32", "expected a 32-bit integer, got true");
    expect_all_error("{\"f_int32\": [1]}", "f_int32", "got an array");
    expect_all_error("{\"f_int32\": {}}", "f_int32", "got an object");
    expect_all_error("{\"f_int64\": \"9223372036854775808\"}", "f_int64", "out of range for a 64-bit integer");
    expect_all_error("{\"f_int64\": \"-9223372036854775809\"}", "f_int64", "out of range");
    expect_all_error("{\"f_uint64\": \"18446744073709551616\"}", "f_uint64", "out of range for an unsigned 64-bit integer");
    expect_all_error("{\"f_uint64\": \"1e20\"}", "f_uint64", "out of range");
    expect_all_error("{\"f_uint64\": \"1e999999999999999999\"}", "f_uint64", "out of range");
    expect_all_error("{\"f_int64\": \"1e-999999999999999999\"}", "f_int64", "fractional part");
    expect_all_error("{\"f_int64\": 1e300}", "f_int64", "out of range");
    expect_all_error("{\"f_uint64\": \"-5\"}", "f_uint64", "out of range");
    expect_all_error("{\"f_sint64\": \"12.5\"}", "f_sint64", "fractional part");
    expect_all_error("{\"r_int32\": [1, 2, \"x\"]}", "r_int32[2]",
                     "field 'r_int32[2]': expected a 32-bit integer, got string \"x\"");
    expect_all_error("{\"r_int32\": [1, null]}", "r_int32[1]", "null is not allowed");
}

static void integer_text_of_many_digits_is_exact(void **state)
{
    /* Long zero runs on either side of the significant digits. */
    AllTypes *m = decode_all("{\"f_uint64\": \"0.00000000000000000000000000000000000000001e41\","
                             " \"f_int64\": \"100000000000000000000000000000000000e-35\"}");
    assert_true(m->f_uint64 == 1);
    assert_true(m->f_int64 == 1);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void floats_accept_special_values_and_strings(void **state)
{
    AllTypes *m =
        decode_all("{\"f_double\": \"NaN\", \"f_float\": \"-Infinity\", \"r_double\": [\"Infinity\", \"2.5\", 3, -0.0, 1e308],"
                   " \"r_float\": [\"NaN\", 3.4028234663852886e38, 1e-50]}");
    assert_true(isnan(m->f_double));
    assert_true(isinf(m->f_float) && m->f_float < 0);
    assert_int_equal(m->n_r_double, 5);
    assert_true(isinf(m->r_double[0]) && m->r_double[0] > 0);
    assert_true(m->r_double[1] == 2.5);
    assert_true(m->r_double[2] == 3.0);
    assert_true(m->r_double[3] == 0.0 && signbit(m->r_double[3]));
    assert_true(m->r_double[4] == 1e308);
    assert_true(isnan(m->r_float[0]));
    assert_true(m->r_float[1] == 3.4028234663852886e38f);
    assert_true(m->r_float[2] == 0.0f);
    char *s = encode(m);
    assert_non_null(strstr(s, "\"f_double\":\"NaN\",\"f_float\":\"-Infinity\""));
    assert_non_null(strstr(s, "\"r_double\":[\"Infinity\",2.5,3.0,-0.0,1e308]"));
    assert_non_null(strstr(s, "\"r_float\":[\"NaN\",3.4028235e38,0.0]"));
    free(s);
    assert_round_trip(&m->base);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    expect_all_error("{\"f_double\": \"nan\"}", "f_double", "expected a number, got string \"nan\"");
    expect_all_error("{\"f_double\": \"inf\"}", "f_double", "expected a number");
    expect_all_error("{\"f_double\": \"1e999\"}", "f_double", "out of range");
    expect_all_error("{\"f_double\": \"1.\"}", "f_double", "expected a number");
    expect_all_error("{\"f_double\": true}", "f_double", "expected a number, got true");
    expect_all_error("{\"f_float\": 1e39}", "f_float", "out of range for a number (32-bit float)");
    expect_all_error("{\"f_float\": \"-1e39\"}", "f_float", "out of range");
}

static void floats_print_shortest_round_tripping_form(void **state)
{
    AllTypes m = KREIDE__TEST__ALL_TYPES__INIT;
    float floats[] = {1.0f / 3.0f, 16777216.0f, 1e-45f, 123456.789f};
    double doubles[] = {1.0 / 3.0, 5e-324, 9007199254740993.0, 100.0};
    m.r_float = floats;
    m.n_r_float = 4;
    m.r_double = doubles;
    m.n_r_double = 4;
    char *s = encode(&m);
    assert_non_null(strstr(s, "\"r_double\":[0.3333333333333333,5e-324,9007199254740992.0,100.0]"));
    assert_non_null(strstr(s, "\"r_float\":[0.33333334,16777216.0,1e-45,123456.79]"));
    free(s);
    assert_round_trip(&m.base);
}

static void bool_accepts_only_true_and_false(void **state)
{
    AllTypes *m = decode_all("{\"f_bool\": false, \"r_bool\": [true, false, true]}");
    assert_false(m->f_bool);
    assert_int_equal(m->n_r_bool, 3);
    assert_true(m->r_bool[0] && !m->r_bool[1] && m->r_bool[2]);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    expect_all_error("{\"f_bool\": 1}", "f_bool", "expected true or false, got number 1");
    expect_all_error("{\"f_bool\": \"true\"}", "f_bool", "expected true or false, got string \"true\"");
    expect_all_error("{\"r_bool\": [true, 0]}", "r_bool[1]", "expected true or false");
}

/* -------------------------------------------------------------- strings */

static void strings_keep_unicode_and_refuse_nul(void **state)
{
    AllTypes *m = decode_all("{\"f_string\": \"\\ud83d\\ude00 \\\"q\\\" \\\\ \\/\", \"r_string\": [\"\", \"x\", \"\"]}");
    assert_string_equal(m->f_string, "\xf0\x9f\x98\x80 \"q\" \\ /");
    assert_int_equal(m->n_r_string, 3);
    assert_string_equal(m->r_string[0], "");
    assert_string_equal(m->r_string[2], "");
    assert_round_trip(&m->base);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    expect_all_error("{\"f_string\": 5}", "f_string", "expected a string, got number 5");
    expect_all_error("{\"r_string\": [\"a\", null]}", "r_string[1]", "null is not allowed");
    /* Jansson already refuses U+0000 in text; a built object must be
     * refused too, since protobuf-c strings would be cut there. */
    json_t *obj = json_pack("{s:s%}", "f_string", "a\0b", (size_t)3);
    assert_non_null(obj);
    kr_json_error err;
    assert_null(kr_json_decode_obj(ALL_DESC, obj, &err));
    assert_string_equal(err.field, "f_string");
    assert_non_null(strstr(err.message, "U+0000"));
    json_decref(obj);
    expect_all_error("{\"f_string\": \"a\\u0000b\"}", "", "malformed JSON");
}

static void invalid_utf8_is_replaced_on_output(void **state)
{
    AllTypes m = KREIDE__TEST__ALL_TYPES__INIT;
    m.f_string = "ok\xff\xc3(\xed\xa0\x80\xe2\x82\xac";
    char *s = encode(&m);
    assert_non_null(strstr(s, "\"f_string\":\"ok\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xe2\x82\xac\""));
    free(s);
}

/* ---------------------------------------------------------------- bytes */

static void bytes_accept_both_alphabets_with_or_without_padding(void **state)
{
    static const struct {
        const char *text;
        const char *bytes;
        size_t len;
    } cases[] = {
        {"", "", 0},
        {"+/+/", "\xfb\xff\xbf", 3},
        {"-_-_", "\xfb\xff\xbf", 3},
        {"AA==", "\x00", 1},
        {"AA", "\x00", 1},
        {"AAE=", "\x00\x01", 2},
        {"AAE", "\x00\x01", 2},
        {"_w", "\xff", 1},
        {"/w==", "\xff", 1},
        {"aGVsbG8gd29ybGQ", "hello world", 11},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"f_bytes\": \"%s\", \"r_bytes\": [\"%s\"]}", cases[i].text, cases[i].text);
        AllTypes *m = decode_all(json);
        assert_int_equal(m->f_bytes.len, cases[i].len);
        assert_int_equal(m->r_bytes[0].len, cases[i].len);
        if (cases[i].len) {
            assert_memory_equal(m->f_bytes.data, cases[i].bytes, cases[i].len);
            assert_memory_equal(m->r_bytes[0].data, cases[i].bytes, cases[i].len);
        }
        assert_round_trip(&m->base);
        protobuf_c_message_free_unpacked(&m->base, NULL);
    }
}

static void bytes_are_encoded_as_padded_standard_base64(void **state)
{
    AllTypes m = KREIDE__TEST__ALL_TYPES__INIT;
    ProtobufCBinaryData r[] = {{1, (uint8_t *)"\xff"}, {2, (uint8_t *)"\xfb\xff"}, {3, (uint8_t *)"abc"}, {0, NULL}};
    m.r_bytes = r;
    m.n_r_bytes = 4;
    char *s = encode(&m);
    assert_non_null(strstr(s, "\"f_bytes\":\"\""));
    assert_non_null(strstr(s, "\"r_bytes\":[\"/w==\",\"+/8=\",\"YWJj\",\"\"]"));
    free(s);
}

static void bytes_reject_malformed_base64(void **state)
{
    const char *bad[] = {
        "A", "A===", "AA=", "AA=A", "+_AA", "AB==", "AAF=", "AA AA", "AA\\nAA", "====", "AA==AA==", "*AAA", "AAE==", "AAAA="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[64];
        snprintf(json, sizeof json, "{\"inner\": {}, \"r_bytes\": [\"\", \"%s\"]}", bad[i]);
        expect_all_error(json, "r_bytes[1]", "expected base64");
    }
    expect_all_error("{\"f_bytes\": 12}", "f_bytes", "expected a base64 string, got number 12");
}

/* ---------------------------------------------------------------- enums */

static void enums_by_name_or_number(void **state)
{
    AllTypes *m = decode_all("{\"f_color\": -3, \"r_color\": [\"RED\", 2, \"COLOR_UNSPECIFIED\", \"INFRARED\"]}");
    assert_int_equal(m->f_color, KREIDE__TEST__COLOR__INFRARED);
    assert_int_equal(m->n_r_color, 4);
    assert_int_equal(m->r_color[0], KREIDE__TEST__COLOR__RED);
    assert_int_equal(m->r_color[1], KREIDE__TEST__COLOR__GREEN);
    assert_int_equal(m->r_color[3], KREIDE__TEST__COLOR__INFRARED);
    char *s = encode(m);
    assert_non_null(strstr(s, "\"f_color\":\"INFRARED\""));
    assert_non_null(strstr(s, "\"r_color\":[\"RED\",\"GREEN\",\"COLOR_UNSPECIFIED\",\"INFRARED\"]"));
    free(s);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    expect_all_error("{\"f_color\": \"PURPLE\"}", "f_color",
                     "field 'f_color': string \"PURPLE\" is not a value of enum kreide.test.Color");
    expect_all_error("{\"f_color\": \"red\"}", "f_color", "not a value of enum");
    expect_all_error("{\"f_color\": 7}", "f_color", "number 7 is not a value of enum kreide.test.Color");
    expect_all_error("{\"f_color\": 4294967297}", "f_color", "not a value of enum");
    expect_all_error("{\"f_color\": 1.0}", "f_color", "expected a value name of enum kreide.test.Color, got number 1");
    expect_all_error("{\"r_color\": [\"RED\", \"BLUE\"]}", "r_color[1]", "not a value of enum");
    expect_error(&kreide__identity__create_school_request__descriptor, "{\"kind\": \"SCHOOL_KIND_UNKNOWN\"}", "kind",
                 "is not a value of enum kreide.identity.SchoolKind");
}

static void unknown_enum_numbers_are_encoded_as_numbers(void **state)
{
    AllTypes m = KREIDE__TEST__ALL_TYPES__INIT;
    m.f_color = 42;
    char *s = encode(&m);
    assert_non_null(strstr(s, "\"f_color\":42"));
    free(s);
}

/* ------------------------------------------------------- messages, lists */

static void nested_and_repeated_messages(void **state)
{
    AllTypes *m = decode_all("{\"inner\": {\"a\": 1, \"b\": \"x\", \"child\": {\"a\": 2}},"
                             " \"r_inner\": [{}, {\"b\": \"y\"}, {\"child\": {\"child\": {\"b\": \"deep\"}}}],"
                             " \"page\": {\"limit\": 50, \"cursor\": \"abc\"}}");
    assert_int_equal(m->inner->a, 1);
    assert_string_equal(m->inner->b, "x");
    assert_int_equal(m->inner->child->a, 2);
    assert_null(m->inner->child->child);
    assert_int_equal(m->n_r_inner, 3);
    assert_int_equal(m->r_inner[0]->a, 0);
    assert_string_equal(m->r_inner[0]->b, "");
    assert_string_equal(m->r_inner[1]->b, "y");
    assert_string_equal(m->r_inner[2]->child->child->b, "deep");
    assert_int_equal(m->page->limit, 50);
    assert_string_equal(m->page->cursor, "abc");
    char *s = encode(m);
    assert_non_null(strstr(s, "\"inner\":{\"a\":1,\"b\":\"x\",\"child\":{\"a\":2,\"b\":\"\"}}"));
    assert_non_null(strstr(s, "\"r_inner\":[{\"a\":0,\"b\":\"\"},{\"a\":0,\"b\":\"y\"},"));
    assert_non_null(strstr(s, "\"page\":{\"limit\":50,\"cursor\":\"abc\"}"));
    free(s);
    assert_round_trip(&m->base);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void errors_carry_the_dotted_path(void **state)
{
    expect_error(&kreide__identity__list_schools_request__descriptor, "{\"page\": {\"limit\": \"abc\"}}", "page.limit",
                 "field 'page.limit': expected an unsigned 32-bit integer, got string \"abc\"");
    expect_error(&kreide__identity__list_schools_reply__descriptor, "{\"schools\": [{}, {}, {\"name\": 7}]}", "schools[2].name",
                 "field 'schools[2].name': expected a string, got number 7");
    expect_all_error("{\"r_inner\": [{\"child\": {\"child\": {\"a\": \"z\"}}}]}", "r_inner[0].child.child.a",
                     "expected a 32-bit integer");
    expect_all_error("{\"inner\": []}", "inner", "expected an object, got an array");
    expect_all_error("{\"inner\": \"x\"}", "inner", "expected an object, got string \"x\"");
    expect_all_error("{\"r_inner\": {}}", "r_inner", "expected an array, got an object");
    expect_all_error("{\"r_inner\": [[]]}", "r_inner[0]", "expected an object, got an array");
    expect_all_error("{\"r_int32\": 1}", "r_int32", "expected an array, got number 1");
    /* Paths use proto names even when the input used JSON names. */
    expect_all_error("{\"rInner\": [{\"child\": {\"a\": 1.25}}]}", "r_inner[0].child.a", "fractional part");
}

static void unknown_fields_are_rejected(void **state)
{
    expect_error(&kreide__identity__create_school_request__descriptor, "{\"nmae\": \"x\"}", "nmae", "unknown field 'nmae'");
    expect_error(&kreide__identity__list_schools_request__descriptor, "{\"page\": {\"limit\": 1, \"offset\": 2}}", "page.offset",
                 "unknown field 'page.offset'");
    expect_all_error("{\"r_inner\": [{}, {\"zz\": null}]}", "r_inner[1].zz", "unknown field 'r_inner[1].zz'");
    /* Near misses of the two accepted spellings. */
    expect_all_error("{\"FInt32\": 1}", "FInt32", "unknown field");
    expect_all_error("{\"f_Int32\": 1}", "f_Int32", "unknown field");
    expect_all_error("{\"fint32\": 1}", "fint32", "unknown field");
    expect_all_error("{\"\": 1}", "", "unknown field ''");
    /* Quotes and control characters in keys do not garble the message. */
    expect_all_error("{\"a'\\\"\\n\": 1}", "a???",
                     "unknown field 'a??"
                     "?'");
}

static void json_names_are_accepted(void **state)
{
    AllTypes *m = decode_all("{\"fInt32\": 3, \"fUint64\": \"4\", \"rString\": [\"s\"], \"x2Y\": 5, \"nameWithGap\": \"g\","
                             " \"inner\": {\"child\": {\"a\": 1}}, \"oInner\": {\"b\": \"o\"}}");
    assert_int_equal(m->f_int32, 3);
    assert_true(m->f_uint64 == 4);
    assert_string_equal(m->r_string[0], "s");
    assert_int_equal(m->x2_y, 5);
    assert_string_equal(m->name__with_gap, "g");
    assert_int_equal(m->choice_case, KREIDE__TEST__ALL_TYPES__CHOICE_O_INNER);
    assert_string_equal(m->o_inner->b, "o");
    protobuf_c_message_free_unpacked(&m->base, NULL);
    expect_all_error("{\"f_int32\": 1, \"fInt32\": 2}", "f_int32", "given twice, as 'f_int32' and as 'fInt32'");
    expect_all_error("{\"f_int32\": 1, \"f_int32\": 2}", "", "duplicate object key");
}

static void null_means_default(void **state)
{
    AllTypes *m = decode_all("{\"f_int32\": null, \"f_string\": null, \"f_bytes\": null, \"f_color\": null, \"inner\": null,"
                             " \"r_inner\": null, \"o_string\": null, \"o_int32\": 4, \"f_double\": null}");
    assert_int_equal(m->f_int32, 0);
    assert_string_equal(m->f_string, "");
    assert_int_equal(m->f_bytes.len, 0);
    assert_null(m->inner);
    assert_int_equal(m->n_r_inner, 0);
    assert_int_equal(m->choice_case, KREIDE__TEST__ALL_TYPES__CHOICE_O_INT32);
    assert_int_equal(m->o_int32, 4);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void oneof_sets_the_case_and_allows_one_member(void **state)
{
    AllTypes *m = decode_all("{\"o_string\": \"\"}");
    assert_int_equal(m->choice_case, KREIDE__TEST__ALL_TYPES__CHOICE_O_STRING);
    char *s = encode(m);
    assert_non_null(strstr(s, "\"o_string\":\"\""));
    assert_null(strstr(s, "o_int32"));
    free(s);
    assert_round_trip(&m->base);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    m = decode_all("{\"o_bytes\": \"AQ\"}");
    assert_int_equal(m->choice_case, KREIDE__TEST__ALL_TYPES__CHOICE_O_BYTES);
    assert_int_equal(m->o_bytes.len, 1);
    assert_round_trip(&m->base);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    m = decode_all("{}");
    s = encode(m);
    assert_null(strstr(s, "\"o_"));
    free(s);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    expect_all_error("{\"o_string\": \"a\", \"o_int32\": 1}", "o_int32", "only one of 'o_string' and 'o_int32' may be set");
    expect_all_error("{\"o_inner\": {\"b\": \"x\"}, \"oBytes\": \"\"}", "o_bytes", "same oneof");
    /* A partly decoded oneof member is freed with the message. */
    expect_all_error("{\"o_inner\": {\"b\": \"x\", \"a\": \"y\"}}", "o_inner.a", "expected a 32-bit integer");
    expect_all_error("{\"o_string\": 3}", "o_string", "expected a string");
}

static void nesting_depth_is_bounded(void **state)
{
    char buf[4096];
    size_t o = 0;
    /* KR_JSON_MAX_DEPTH levels in all: the top message and 31 inner ones. */
    o += (size_t)snprintf(buf + o, sizeof buf - o, "{\"inner\": ");
    for (int i = 0; i < KR_JSON_MAX_DEPTH - 2; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "{\"child\": ");
    o += (size_t)snprintf(buf + o, sizeof buf - o, "{\"a\": 1}");
    for (int i = 0; i < KR_JSON_MAX_DEPTH - 1; i++)
        buf[o++] = '}';
    buf[o] = '\0';
    AllTypes *m = decode_all(buf);
    assert_round_trip(&m->base);

    /* One level more than the encoder will write. */
    Kreide__Test__Inner extra = KREIDE__TEST__INNER__INIT;
    Kreide__Test__Inner *leaf = m->inner;
    while (leaf->child)
        leaf = leaf->child;
    leaf->child = &extra;
    size_t len = 99;
    assert_null(kr_json_encode(&m->base, &len));
    assert_int_equal(len, 99);
    assert_null(kr_json_encode_obj(&m->base));
    leaf->child = NULL;
    protobuf_c_message_free_unpacked(&m->base, NULL);

    /* And one level more than the decoder accepts. */
    o = 0;
    o += (size_t)snprintf(buf + o, sizeof buf - o, "{\"inner\": ");
    for (int i = 0; i < KR_JSON_MAX_DEPTH - 1; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "{\"child\": ");
    o += (size_t)snprintf(buf + o, sizeof buf - o, "{}");
    for (int i = 0; i < KR_JSON_MAX_DEPTH; i++)
        buf[o++] = '}';
    buf[o] = '\0';
    kr_json_error err;
    assert_null(kr_json_decode(ALL_DESC, buf, o, &err));
    assert_non_null(strstr(err.message, "nest deeper than 32 levels"));
    /* The path is too long to keep whole: its end, which names the field, is kept. */
    assert_int_equal(strncmp(err.field, "...", 3), 0);
    assert_int_equal(strlen(err.field), sizeof err.field - 1);
    assert_string_equal(err.field + strlen(err.field) - 12, ".child.child");

    /* Deep JSON that is not messages never reaches the message decoder. */
    o = 0;
    o += (size_t)snprintf(buf + o, sizeof buf - o, "{\"r_int32\": ");
    for (int i = 0; i < 1000; i++)
        buf[o++] = '[';
    for (int i = 0; i < 1000; i++)
        buf[o++] = ']';
    buf[o++] = '}';
    buf[o] = '\0';
    assert_null(kr_json_decode(ALL_DESC, buf, o, &err));
    assert_string_equal(err.field, "r_int32[0]");
}

/* ---------------------------------------------------------- top level */

static void top_level_must_be_one_object(void **state)
{
    expect_all_error("[]", "", "expected a JSON object for kreide.test.AllTypes, got an array");
    expect_all_error("\"x\"", "", "got string \"x\"");
    expect_all_error("null", "", "got null");
    expect_all_error("1", "", "got number 1");
    expect_all_error("", "", "malformed JSON at line 1 column 0");
    expect_all_error("{\"f_int32\": 1,}", "", "malformed JSON at line 1 column");
    expect_all_error("{} {}", "", "malformed JSON");
    expect_all_error("{\"f_int32\": 99999999999999999999}", "", "malformed JSON");
    expect_all_error("{\"f_string\": \"\xff\"}", "", "malformed JSON");
    kr_json_error err;
    assert_null(kr_json_decode_obj(ALL_DESC, NULL, &err));
    assert_null(kr_json_decode(ALL_DESC, "{\"f_int32\": 1}\0", 15, &err));
    assert_non_null(strstr(err.message, "malformed JSON"));
    /* A NULL error pointer is allowed. */
    assert_null(kr_json_decode(ALL_DESC, "[", 1, NULL));
    assert_null(kr_json_decode(ALL_DESC, "{\"x\": 1}", 8, NULL));
}

static void length_bounds_the_input(void **state)
{
    const char *text = "{\"f_int32\": 12}garbage";
    kr_json_error err;
    AllTypes *m = (AllTypes *)kr_json_decode(ALL_DESC, text, 15, &err);
    assert_non_null(m);
    assert_int_equal(m->f_int32, 12);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void decode_obj_leaves_the_callers_object_alone(void **state)
{
    json_t *obj = json_pack("{s:s, s:{s:i}}", "name_prefix", "Am", "page", "limit", 10);
    assert_non_null(obj);
    kr_json_error err;
    Kreide__Identity__ListSchoolsRequest *r =
        (Kreide__Identity__ListSchoolsRequest *)kr_json_decode_obj(&kreide__identity__list_schools_request__descriptor, obj, &err);
    assert_non_null(r);
    assert_string_equal(r->name_prefix, "Am");
    assert_int_equal(r->page->limit, 10);
    assert_int_equal(obj->refcount, 1);
    assert_int_equal(json_object_size(obj), 2);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    json_decref(obj);
}

static void encode_obj_matches_encode(void **state)
{
    Kreide__Identity__School s = KREIDE__IDENTITY__SCHOOL__INIT;
    s.name = "Schule";
    s.kind = KREIDE__IDENTITY__SCHOOL_KIND__KITA;
    json_t *obj = kr_json_encode_obj(&s.base);
    assert_non_null(obj);
    assert_string_equal(json_string_value(json_object_get(obj, "name")), "Schule");
    assert_string_equal(json_string_value(json_object_get(obj, "kind")), "KITA");
    char *a = json_dumps(obj, JSON_COMPACT);
    char *b = encode(&s);
    assert_string_equal(a, b);
    free(a);
    free(b);
    json_decref(obj);
}

/* Every failing decode frees what it built so far (checked by ASan's leak
 * detector when built with SAN=1): fail late, after strings, bytes, lists
 * and sub-messages have been allocated. */
static void failed_decodes_free_partial_messages(void **state)
{
    expect_all_error("{\"f_string\": \"s\", \"f_bytes\": \"AAAA\", \"r_string\": [\"a\", \"b\"], \"r_bytes\": [\"AA\"],"
                     " \"inner\": {\"b\": \"x\", \"child\": {\"b\": \"y\"}}, \"r_inner\": [{\"b\": \"z\"}],"
                     " \"o_string\": \"o\", \"zzz\": 1}",
                     "zzz", "unknown field");
    expect_all_error("{\"r_inner\": [{\"b\": \"z\"}, {\"b\": \"w\", \"child\": {\"b\": 1}}]}", "r_inner[1].child.b",
                     "expected a string");
    expect_all_error("{\"r_string\": [\"a\", \"b\", 3]}", "r_string[2]", "expected a string");
    expect_all_error("{\"r_bytes\": [\"AA\", \"!\"]}", "r_bytes[1]", "expected base64");
}

/* A thread whose locale writes ',' as decimal separator must still get
 * JSON numbers. Skipped where no such locale is installed. */
static void numbers_ignore_the_program_locale(void **state)
{
    const char *names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8"};
    locale_t comma = (locale_t)0;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && comma == (locale_t)0; i++)
        comma = newlocale(LC_NUMERIC_MASK, names[i], (locale_t)0);
    if (comma == (locale_t)0)
        skip();
    uselocale(comma);
    AllTypes *m = decode_all("{\"f_double\": \"2.5\", \"f_float\": 0.25}");
    char *s = kr_json_encode(&m->base, NULL);
    uselocale(LC_GLOBAL_LOCALE);
    freelocale(comma);
    assert_true(m->f_double == 2.5);
    assert_non_null(strstr(s, "\"f_double\":2.5,\"f_float\":0.25,"));
    free(s);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes_every_scalar_type),
        cmocka_unit_test(encodes_every_scalar_type_with_proto_names),
        cmocka_unit_test(defaults_are_emitted_and_unset_messages_omitted),
        cmocka_unit_test(int64_beyond_2_pow_53_survives),
        cmocka_unit_test(integers_accept_numeric_strings_and_integral_forms),
        cmocka_unit_test(integer_range_and_type_errors_name_the_field),
        cmocka_unit_test(integer_text_of_many_digits_is_exact),
        cmocka_unit_test(floats_accept_special_values_and_strings),
        cmocka_unit_test(floats_print_shortest_round_tripping_form),
        cmocka_unit_test(bool_accepts_only_true_and_false),
        cmocka_unit_test(strings_keep_unicode_and_refuse_nul),
        cmocka_unit_test(invalid_utf8_is_replaced_on_output),
        cmocka_unit_test(bytes_accept_both_alphabets_with_or_without_padding),
        cmocka_unit_test(bytes_are_encoded_as_padded_standard_base64),
        cmocka_unit_test(bytes_reject_malformed_base64),
        cmocka_unit_test(enums_by_name_or_number),
        cmocka_unit_test(unknown_enum_numbers_are_encoded_as_numbers),
        cmocka_unit_test(nested_and_repeated_messages),
        cmocka_unit_test(errors_carry_the_dotted_path),
        cmocka_unit_test(unknown_fields_are_rejected),
        cmocka_unit_test(json_names_are_accepted),
        cmocka_unit_test(null_means_default),
        cmocka_unit_test(oneof_sets_the_case_and_allows_one_member),
        cmocka_unit_test(nesting_depth_is_bounded),
        cmocka_unit_test(top_level_must_be_one_object),
        cmocka_unit_test(length_bounds_the_input),
        cmocka_unit_test(decode_obj_leaves_the_callers_object_alone),
        cmocka_unit_test(encode_obj_matches_encode),
        cmocka_unit_test(failed_decodes_free_partial_messages),
        cmocka_unit_test(numbers_ignore_the_program_locale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
