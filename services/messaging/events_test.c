/* Unit tests of events.c: the JSON form of an announcement, with the event
 * embedded as ListEvents encodes it and read by no one in particular. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kr_json.h"
#include "messaging.h"

#define EVENT_ID "01a2025c-7d3c-70d8-b43a-10d38fc6bb86"
#define ROOM_ID "01a2025c-7d26-75cf-b234-5ac009febd1b"
#define SCHOOL_ID "01a2025c-7cba-7c2f-b82b-5187887b1262"
#define SENDER_ID "01a2025c-7cba-7c2f-b82b-5187887b1263"
#define VOTER_ID "01a2025c-7cba-7c2f-b82b-5187887b1264"

static void appended(msg_appended *e)
{
    memset(e, 0, sizeof(*e));
    e->position = 9007199254740993LL;
    snprintf(e->id, sizeof(e->id), "%s", EVENT_ID);
    snprintf(e->room_id, sizeof(e->room_id), "%s", ROOM_ID);
    snprintf(e->school_id, sizeof(e->school_id), "%s", SCHOOL_ID);
    snprintf(e->kind, sizeof(e->kind), "%s", "message");
    snprintf(e->sender, sizeof(e->sender), "%s", SENDER_ID);
    snprintf(e->created_at, sizeof(e->created_at), "%s", "2026-11-22T08:25:45.532Z");
}

static void the_facts_members_and_the_event(void **state)
{
    msg_appended e;
    appended(&e);
    Kreide__Messaging__Event ev = KREIDE__MESSAGING__EVENT__INIT;
    ev.position = e.position;
    ev.id = EVENT_ID;
    ev.room_id = ROOM_ID;
    ev.school_id = SCHOOL_ID;
    ev.kind = KREIDE__MESSAGING__EVENT_KIND__MEMBER_JOINED;
    ev.user_id = VOTER_ID;
    ev.member_role = KREIDE__MESSAGING__MEMBER_ROLE__MODERATOR;
    ev.created_at = e.created_at;
    char *members[] = {"a", "b"};
    char *json = msg_event_json(&e, &ev, members, 2);
    assert_non_null(json);
    json_t *o = json_loads(json, 0, NULL);
    assert_non_null(o);
    /* The facts every gateway relies on keep their form. */
    assert_string_equal(json_string_value(json_object_get(o, "position")), "9007199254740993");
    assert_string_equal(json_string_value(json_object_get(o, "event_id")), EVENT_ID);
    assert_string_equal(json_string_value(json_object_get(o, "room_id")), ROOM_ID);
    assert_string_equal(json_string_value(json_object_get(o, "school_id")), SCHOOL_ID);
    assert_string_equal(json_string_value(json_object_get(o, "kind")), "message");
    assert_string_equal(json_string_value(json_object_get(o, "sender_id")), SENDER_ID);
    assert_string_equal(json_string_value(json_object_get(o, "created_at")), "2026-11-22T08:25:45.532Z");
    json_t *m = json_object_get(o, "members");
    assert_int_equal(json_array_size(m), 2);
    assert_string_equal(json_string_value(json_array_get(m, 1)), "b");
    /* The event is an object, exactly kr_json's encoding of it. */
    json_t *got = json_object_get(o, "event");
    assert_true(json_is_object(got));
    json_t *want = kr_json_encode_obj(&ev.base);
    assert_true(json_equal(got, want));
    assert_string_equal(json_string_value(json_object_get(got, "position")), "9007199254740993");
    assert_string_equal(json_string_value(json_object_get(got, "kind")), "MEMBER_JOINED");
    assert_string_equal(json_string_value(json_object_get(got, "member_role")), "MODERATOR");
    json_decref(want);
    json_decref(o);
    free(json);
}

static void read_by_no_one_in_particular(void **state)
{
    msg_appended e;
    appended(&e);
    Kreide__Messaging__ReactionCount rc = KREIDE__MESSAGING__REACTION_COUNT__INIT;
    rc.key = "+1";
    rc.count = 2;
    rc.mine = true;
    Kreide__Messaging__ReactionCount *rcs[] = {&rc};
    char *voters[] = {VOTER_ID};
    Kreide__Messaging__PollOption opt = KREIDE__MESSAGING__POLL_OPTION__INIT;
    opt.text = "Ja";
    opt.votes = 1;
    opt.mine = true;
    opt.voter_ids = voters;
    opt.n_voter_ids = 1;
    Kreide__Messaging__PollOption *opts[] = {&opt};
    Kreide__Messaging__Poll poll = KREIDE__MESSAGING__POLL__INIT;
    poll.options = opts;
    poll.n_options = 1;
    poll.voters = 1;
    Kreide__Messaging__ReadStatus rs = KREIDE__MESSAGING__READ_STATUS__INIT;
    rs.audience = 3;
    rs.confirmed = 1;
    rs.confirmed_by_me = true;
    Kreide__Messaging__Message msg = KREIDE__MESSAGING__MESSAGE__INIT;
    msg.id = EVENT_ID;
    msg.text = "Ausflug?";
    msg.reactions = rcs;
    msg.n_reactions = 1;
    msg.poll = &poll;
    msg.read_status = &rs;
    Kreide__Messaging__Event ev = KREIDE__MESSAGING__EVENT__INIT;
    ev.position = e.position;
    ev.kind = KREIDE__MESSAGING__EVENT_KIND__MESSAGE;
    ev.message = &msg;
    char *json = msg_event_json(&e, &ev, NULL, 0);
    assert_non_null(json);
    json_t *o = json_loads(json, 0, NULL);
    json_t *m = json_object_get(json_object_get(o, "event"), "message");
    assert_string_equal(json_string_value(json_object_get(m, "text")), "Ausflug?");
    json_t *r0 = json_array_get(json_object_get(m, "reactions"), 0);
    assert_int_equal(json_integer_value(json_object_get(r0, "count")), 2);
    assert_true(json_is_false(json_object_get(r0, "mine")));
    json_t *o0 = json_array_get(json_object_get(json_object_get(m, "poll"), "options"), 0);
    assert_true(json_is_false(json_object_get(o0, "mine")));
    /* A named poll's voters are everybody's to see. */
    assert_string_equal(json_string_value(json_array_get(json_object_get(o0, "voter_ids"), 0)), VOTER_ID);
    json_t *st = json_object_get(m, "read_status");
    assert_int_equal(json_integer_value(json_object_get(st, "confirmed")), 1);
    assert_true(json_is_false(json_object_get(st, "confirmed_by_me")));
    assert_int_equal(json_array_size(json_object_get(o, "members")), 0);
    json_decref(o);
    free(json);
    /* The reading itself is left alone: it is the reply to the sender. */
    assert_true(rc.mine);
    assert_true(opt.mine);
    assert_true(rs.confirmed_by_me);
}

static void nothing_to_announce_without_the_event(void **state)
{
    msg_appended e;
    appended(&e);
    assert_null(msg_event_json(&e, NULL, NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_facts_members_and_the_event),
        cmocka_unit_test(read_by_no_one_in_particular),
        cmocka_unit_test(nothing_to_announce_without_the_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
