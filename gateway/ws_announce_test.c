#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "ws_announce.h"

/* An announcement as messaging writes it (events.c: compact, keys sorted). */
static char *announcement(const char *kind, const char *position, json_t *members)
{
    json_t *event = json_pack("{s:s, s:s, s:s, s:{s:s, s:[], s:o, s:{s:i}}}", "id", "01a2038e-0000-7000-8000-000000000001", "kind",
                              "MESSAGE", "position", position, "message", "text", "Grüße \"an\" \\ alle <3 \n ✓", "mentions",
                              "reactions", json_array(), "read_status", "audience", 29);
    json_t *o =
        json_pack("{s:s, s:o, s:s, s:s, s:o, s:s, s:s}", "created_at", "2026-11-22T08:25:45.532Z", "event", event, "kind", kind,
                  "position", position, "members", members, "room_id", "01a2038e-3845-78a9-9f06-f5eb50c62c77", "sender_id", "");
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    assert_non_null(s);
    return s;
}

static bool read_text(const char *s, gw_ws_announcement *a)
{
    return gw_ws_announcement_read(s, strlen(s), a);
}

static void reads_a_log_event_as_written(void **state)
{
    (void)state;
    char *s = announcement("message", "4711", json_pack("[s,s]", "a1", "b2"));
    gw_ws_announcement a;
    assert_true(read_text(s, &a));
    assert_int_equal(a.position, 4711);
    /* The event's text is exactly what the full parser writes out again. */
    json_t *o = json_loads(s, 0, NULL);
    char *event = json_dumps(json_object_get(o, "event"), JSON_COMPACT | JSON_SORT_KEYS);
    assert_int_equal(a.event_len, strlen(event));
    assert_memory_equal(a.event, event, a.event_len);
    free(event);
    json_decref(o);
    char ids[64];
    assert_true(a.members_len <= sizeof(ids));
    assert_int_equal(gw_ws_members_copy(a.members, a.members_len, ids), 2);
    assert_string_equal(ids, "a1");
    assert_string_equal(ids + 3, "b2");
    free(s);
}

static void reads_white_space_and_empty_members(void **state)
{
    (void)state;
    const char *s = " { \"members\" : [ ] ,\n\"kind\":\"member.left\", \"position\":\"9\",\t\"event\": { \"a\" : [ 1 , -2.5e3, "
                    "true, null ] } }\r\n";
    gw_ws_announcement a;
    assert_true(read_text(s, &a));
    assert_int_equal(a.position, 9);
    assert_int_equal(a.event_len, strlen("{ \"a\" : [ 1 , -2.5e3, true, null ] }"));
    char ids[8];
    assert_int_equal(gw_ws_members_copy(a.members, a.members_len, ids), 0);
    const char *m = "[ \"x\" ,\"yz\" ]";
    char out[16];
    assert_int_equal(gw_ws_members_copy(m, strlen(m), out), 2);
    assert_string_equal(out + 2, "yz");
}

static void leaves_notices_to_the_full_parser(void **state)
{
    (void)state;
    const char *typing = "{\"kind\":\"typing\",\"members\":[\"a\"],\"room_id\":\"r\",\"typing\":true,\"user_id\":\"u\"}";
    const char *report = "{\"event\":{},\"kind\":\"report\",\"members\":[\"a\"],\"position\":\"1\"}";
    gw_ws_announcement a;
    assert_false(read_text(typing, &a));
    assert_false(read_text(report, &a));
}

static void refuses_what_a_log_event_is_not(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "[]",
        "{}",
        "{\"event\":{},\"kind\":\"message\",\"members\":[],\"position\":\"0\"}",
        "{\"event\":{},\"kind\":\"message\",\"members\":[],\"position\":\"-1\"}",
        "{\"event\":{},\"kind\":\"message\",\"members\":[],\"position\":5}",
        "{\"event\":{},\"kind\":\"message\",\"members\":[],\"position\":\"1234567890123456789\"}",
        "{\"event\":[],\"kind\":\"message\",\"members\":[],\"position\":\"5\"}",
        "{\"event\":{},\"kind\":\"message\",\"members\":{},\"position\":\"5\"}",
        "{\"event\":{},\"kind\":7,\"members\":[],\"position\":\"5\"}",
        "{\"event\":{},\"members\":[],\"position\":\"5\"}",
        "{\"event\":{},\"kind\":\"message\",\"members\":[],\"position\":\"5\"} x",
        "{\"event\":{\"a\":},\"kind\":\"message\",\"members\":[],\"position\":\"5\"}",
        "{\"event\":{\"a\":1,},\"kind\":\"message\",\"members\":[],\"position\":\"5\"}",
        "{\"event\":{\"a\":\"b},\"kind\":\"message\",\"members\":[],\"position\":\"5\"}",
        "{\"event\":{\"a\":\"\x01\"},\"kind\":\"message\",\"members\":[],\"position\":\"5\"}",
        "{\"ev\\u0065nt\":{},\"kind\":\"message\",\"members\":[],\"position\":\"5\"}",
        "{\"event\":{},\"kind\":\"message\",\"members\":[],\"position\":\"5\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gw_ws_announcement a;
        if (read_text(bad[i], &a))
            fail_msg("read: %s", bad[i]);
    }
    /* A NUL inside is not part of any value. */
    const char nul[] = "{\"event\":{\"a\":1\0},\"kind\":\"message\",\"members\":[],\"position\":\"5\"}";
    gw_ws_announcement a;
    assert_false(gw_ws_announcement_read(nul, sizeof(nul) - 1, &a));
}

static void refuses_nesting_too_deep(void **state)
{
    (void)state;
    char s[512];
    size_t n = 0;
    n += (size_t)snprintf(s + n, sizeof(s) - n, "{\"kind\":\"message\",\"members\":[],\"position\":\"5\",\"event\":{\"a\":");
    for (int i = 0; i < GW_WS_ANNOUNCE_MAX_DEPTH + 1; i++)
        s[n++] = '[';
    for (int i = 0; i < GW_WS_ANNOUNCE_MAX_DEPTH + 1; i++)
        s[n++] = ']';
    n += (size_t)snprintf(s + n, sizeof(s) - n, "}}");
    gw_ws_announcement a;
    assert_false(gw_ws_announcement_read(s, n, &a));
}

static void members_must_be_plain_strings(void **state)
{
    (void)state;
    static const char *bad[] = {"[1]", "[\"a\",{}]", "[\"a\\\"b\"]", "[\"a\",]", "[\"a\" \"b\"]", "[", "\"a\""};
    char out[32];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (gw_ws_members_copy(bad[i], strlen(bad[i]), out) >= 0)
            fail_msg("copied: %s", bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_a_log_event_as_written),      cmocka_unit_test(reads_white_space_and_empty_members),
        cmocka_unit_test(leaves_notices_to_the_full_parser), cmocka_unit_test(refuses_what_a_log_event_is_not),
        cmocka_unit_test(refuses_nesting_too_deep),          cmocka_unit_test(members_must_be_plain_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
