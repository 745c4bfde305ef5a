/*
 * ws_announce — messaging's announcement of a log event read as text.
 *
 * The WebSocket hub (ws.c) forwards every announcement on
 * kreide.messaging.events (docs/messaging.md, "Realtime") to the sockets
 * of its members. For a log event it needs only the position, the members
 * and the event's own text, which goes to the sockets as messaging wrote
 * it: reading those spans out of the JSON text (RFC 8259) costs a fraction
 * of building the whole announcement as a tree and writing the event out
 * again. Anything this reader does not expect is left to the full parser.
 */
#ifndef GW_WS_ANNOUNCE_H
#define GW_WS_ANNOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Objects and arrays nested deeper than this are not read. */
#define GW_WS_ANNOUNCE_MAX_DEPTH 32

/* A log event's announcement; the pointers point into the text read. */
typedef struct {
    int64_t position;  /* > 0 */
    const char *event; /* the event object's text, from '{' to '}' */
    size_t event_len;
    const char *members; /* the members array's text, from '[' to ']' */
    size_t members_len;
} gw_ws_announcement;

/* Reads `len` bytes of `data` as one JSON object with the members of a log
 * event's announcement: `kind` a string other than "typing" and "report"
 * (the notices, which have no position), `position` a string of 1 to 18
 * digits above 0, `event` an object, `members` an array; other members are
 * skipped. Fills `out` and returns true; false when the text is not such an
 * object or is not well-formed (unbalanced, a control character in a
 * string, nested too deep, trailing bytes, an escaped member name), which
 * leaves `out` unspecified. Strings' escapes are not decoded. */
bool gw_ws_announcement_read(const char *data, size_t len, gw_ws_announcement *out);

/* Copies the strings of the array `members` (its text, as read by
 * gw_ws_announcement_read) into `out` one after another, each
 * NUL-terminated; `out` must hold `members_len` bytes, which is always
 * enough. Returns how many, or -1 when an element is not a string or holds
 * an escape (user ids never do). */
long gw_ws_members_copy(const char *members, size_t members_len, char *out);

#endif
